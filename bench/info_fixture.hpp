// info_fixture.hpp — heap states with N live blocks for the statistics benchmarks (heap_bench.cpp,
// info_bench.cpp, ir_caps.cpp).
//
// fill_worst_case() lays out what is hardest for statistics that are not O(1): 2N blocks of 16
// bytes, the rest of the heap in one live filler block, then every other small block freed. The
// heap then holds N + 1 live blocks and N free blocks that cannot merge, all of one size and so in
// one size class, which is the highest non-empty one. A walk of the heap (ESP-IDF's
// multi_heap_get_info) visits 2N + 1 blocks; a scan of the top class for the largest block sees N.
#ifndef CAPHEAP_BENCH_INFO_FIXTURE_HPP
#define CAPHEAP_BENCH_INFO_FIXTURE_HPP

#include <cstddef>
#include <vector>

namespace capheap::bench {

/// Request size of the small blocks.
constexpr std::size_t kInfoBlock = 16;

/// The live-block counts the statistics families run with.
constexpr std::size_t kInfoCounts[] = {10, 100, 1000, 10000, 100000};

/// A region size that holds the layout for `live` blocks with room to spare (the filler takes
/// whatever is left), a multiple of 4096.
constexpr std::size_t info_region_bytes(std::size_t live) {
  return (2 * live * 32 + (64u << 10) + 4095) / 4096 * 4096;
}

/// Lays out the worst case described above. alloc(n) -> void * allocates from the heap under
/// test, release(p) frees, largest() -> std::size_t is the largest request that can succeed now.
/// `keep` receives every block left live (the caller frees them or drops the heap). Returns false
/// if an allocation failed.
template <class Alloc, class Release, class Largest>
bool fill_worst_case(std::size_t live, Alloc alloc, Release release, Largest largest,
                     std::vector<void *> &keep) {
  std::vector<void *> small;
  small.reserve(2 * live);
  for (std::size_t i = 0; i < 2 * live; ++i) {
    void *p = alloc(kInfoBlock);
    if (p == nullptr) return false;
    small.push_back(p);
  }
  const std::size_t rest = largest();
  if (rest != 0) {
    void *filler = alloc(rest);
    if (filler == nullptr) return false;
    keep.push_back(filler);
  }
  for (std::size_t i = 0; i < small.size(); ++i) {
    if (i % 2 == 0) {
      release(small[i]);
    } else {
      keep.push_back(small[i]);
    }
  }
  return true;
}

}  // namespace capheap::bench

#endif  // CAPHEAP_BENCH_INFO_FIXTURE_HPP
