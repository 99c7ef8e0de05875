// ir_pair.cpp — a fixed malloc+free workload on one engine heap, for callgrind instruction counts.
//
//   valgrind --tool=callgrind --toggle-collect='loop_pairs*' BUILD/bench/capheap_ir_pair
//   [poisoning]
//
// Collected instructions / 100 000 = instructions per free+malloc pair (8 live slots cycling
// through 8 sizes, 100 long-lived blocks around them). bench/callgrind_pair.sh compares two builds
// (e.g. CAPHEAP_DECORATION=ON and OFF). Argument: none | light | comprehensive (heap poisoning).
#include "capheap/heap.hpp"
#include <cstdint>
#include <cstdlib>
#include <cstring>
static unsigned char buf[1 << 20] __attribute__((aligned(16)));
__attribute__((noinline)) void loop_pairs(capheap::Heap h, int n, const std::size_t *sizes) {
  void *keep[8];
  for (int i = 0; i < 8; ++i)
    keep[i] = h.allocate(sizes[i]);
  for (int i = 0; i < n; ++i) {
    const int k = i & 7;
    h.deallocate(keep[k]);
    keep[k] = h.allocate(sizes[(i * 7) & 7]);
  }
  for (int i = 0; i < 8; ++i)
    h.deallocate(keep[i]);
}
int main(int argc, char **argv) {
  capheap::HeapConfig cfg;
  cfg.granule = capheap::Granule::k4;
  if (argc > 1 && std::strcmp(argv[1], "light") == 0) cfg.poisoning = capheap::Poisoning::kLight;
  if (argc > 1 && std::strcmp(argv[1], "comprehensive") == 0)
    cfg.poisoning = capheap::Poisoning::kComprehensive;
  capheap::Heap h = capheap::Heap::create(buf, sizeof buf, cfg);
  static const std::size_t sizes[8] = {16, 24, 40, 64, 100, 200, 32, 48};
  for (std::size_t i = 0; i < 100; ++i)
    h.allocate(32 + i);  // some live blocks
  loop_pairs(h, 100000, sizes);
  return 0;
}
