// heap_bench.cpp — Google Benchmark micro-benchmarks of capheap's engine (capheap::Heap).
//
// Families (bench/constant_time_check.py judges the first two):
//   BM_MallocFree_RegionSize/R   one 64-byte allocate+deallocate pair per iteration in a heap of R
//                                bytes holding the same 16 blocks (every other one freed) in every
//                                region size, the rest one large free block
//   BM_MallocFree_SplitMerge/R   the longest path: split the large free block, merge it back
//   BM_MallocFree_LiveBlocks/N   random-size (16..256 B) allocate+deallocate with N live blocks
//                                left by allocating 2N and freeing a random half (64 MiB region)
//   BM_MallocFree_SizeClass/S    allocate(S)+deallocate(S) when S's own size class holds free
//                                blocks of exactly that size between live ones (the common path:
//                                no split, no merge), S = 8 B .. 64 KiB
//   BM_Free_Coalesce3            three neighbours freed, the last merging on both sides, then
//                                allocated again by splitting the merged block (6 items)
//   BM_AlignedAlloc/A            allocate_aligned(100, A) + deallocate among 1000 live blocks
//   BM_Realloc_InPlace           grow 64→256 into the free successor and shrink back (2 items)
//   BM_Realloc_Move              realloc 64→256 that must move, then malloc+free to restore
//   BM_Info/N, BM_LargestFreeBlock/N
//                                info() / largest_free_block() with N = 10 .. 100 000 live blocks
//                                in info_fixture.hpp's worst case (N free blocks in the top class)
//   BM_System_*                  the same malloc/free patterns on the system allocator
// All random choices use fixed seeds; items processed = allocator calls measured.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "capheap/heap.hpp"
#include "info_fixture.hpp"

namespace {

using capheap::Granule;
using capheap::Heap;
using capheap::HeapConfig;

constexpr std::size_t kBigRegion = std::size_t{64} << 20;
constexpr std::uint32_t kSeed = 0xC0FFEEu;

/// One 64 MiB buffer shared by every benchmark (each starts a fresh heap over a prefix of it).
unsigned char *region_memory() {
  static unsigned char *memory = [] {
    auto *p = static_cast<unsigned char *>(std::aligned_alloc(64, kBigRegion));
    if (p == nullptr) {
      std::fprintf(stderr, "heap_bench: cannot allocate the 64 MiB region\n");
      std::abort();
    }
    return p;
  }();
  return memory;
}

Heap fresh_heap(std::size_t size) {
  HeapConfig config;
  config.granule = Granule::k4;  // ESP-IDF's granule
  return Heap::create(region_memory(), size, config);
}

std::vector<std::size_t> random_sizes(std::size_t n, std::size_t lo, std::size_t hi,
                                      std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<std::size_t> dist(lo, hi);
  std::vector<std::size_t> sizes(n);
  for (std::size_t &s : sizes)
    s = dist(rng);
  return sizes;
}

/// Leaves `live` random-size blocks in the heap, interleaved with as many freed holes.
bool populate_live(Heap &heap, std::size_t live, std::vector<void *> &blocks) {
  const std::vector<std::size_t> sizes = random_sizes(2 * live, 16, 256, kSeed);
  blocks.clear();
  for (std::size_t s : sizes) {
    void *p = heap.allocate(s);
    if (p == nullptr) return false;
    blocks.push_back(p);
  }
  std::mt19937 rng(kSeed + 1);
  std::shuffle(blocks.begin(), blocks.end(), rng);
  for (std::size_t i = live; i < blocks.size(); ++i)
    heap.deallocate(blocks[i]);
  blocks.resize(live);
  return true;
}

// ---- capheap ---------------------------------------------------------------------------------

void BM_MallocFree_RegionSize(benchmark::State &state) {
  const auto region = static_cast<std::size_t>(state.range(0));
  Heap heap = fresh_heap(region);
  if (!heap) {
    state.SkipWithError("Heap::create failed");
    return;
  }
  // The same state in every region size: 16 blocks of 16..256 B (fixed seed), every other one
  // freed, and the rest of the region one large free block. Only the region size changes, so the
  // operation takes the same path everywhere and any difference is the cost of the size itself.
  std::mt19937 rng(kSeed);
  std::uniform_int_distribution<std::size_t> dist(16, 256);
  std::vector<void *> blocks;
  for (int i = 0; i < 16; ++i) {
    void *p = heap.allocate(dist(rng));
    if (p == nullptr) break;
    blocks.push_back(p);
  }
  for (std::size_t i = 0; i < blocks.size(); i += 2)
    heap.deallocate(blocks[i]);
  for (auto _ : state) {
    void *p = heap.allocate(64);
    benchmark::DoNotOptimize(p);
    if (p == nullptr) {
      state.SkipWithError("allocate(64) failed");
      break;
    }
    heap.deallocate(p);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 2);
  state.counters["live_blocks"] = static_cast<double>(blocks.size() / 2);
}

/// The longest path: the request's class is empty, so allocation splits the large free block, and
/// free merges the block back into it (both with the block moving between size classes when the
/// region is small enough for the remainder to change class; the same lists otherwise).
void BM_MallocFree_SplitMerge(benchmark::State &state) {
  const auto region = static_cast<std::size_t>(state.range(0));
  Heap heap = fresh_heap(region);
  if (!heap) {
    state.SkipWithError("Heap::create failed");
    return;
  }
  for (auto _ : state) {
    void *p = heap.allocate(200);
    benchmark::DoNotOptimize(p);
    heap.deallocate(p);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 2);
}
BENCHMARK(BM_MallocFree_SplitMerge)
    ->Arg(4 << 10)
    ->Arg(64 << 10)
    ->Arg(1 << 20)
    ->Arg(16 << 20)
    ->Arg(64 << 20);

BENCHMARK(BM_MallocFree_RegionSize)
    ->Arg(4 << 10)
    ->Arg(64 << 10)
    ->Arg(1 << 20)
    ->Arg(16 << 20)
    ->Arg(64 << 20);

constexpr std::size_t kSizeRing = 1024;  // power of two: index with & (kSizeRing - 1)

void BM_MallocFree_LiveBlocks(benchmark::State &state) {
  const auto live = static_cast<std::size_t>(state.range(0));
  Heap heap = fresh_heap(kBigRegion);
  std::vector<void *> blocks;
  if (!heap || !populate_live(heap, live, blocks)) {
    state.SkipWithError("setup failed");
    return;
  }
  const std::vector<std::size_t> sizes = random_sizes(kSizeRing, 16, 256, kSeed + 2);
  std::size_t i = 0;
  for (auto _ : state) {
    void *p = heap.allocate(sizes[i++ & (kSizeRing - 1)]);
    benchmark::DoNotOptimize(p);
    heap.deallocate(p);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 2);
}
BENCHMARK(BM_MallocFree_LiveBlocks)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000)->Arg(100000);

// The size classes of BM_MallocFree_SizeClass: small classes densely, then powers of two.
void size_classes(benchmark::internal::Benchmark *b) {
  for (std::int64_t s : {8, 12, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024, 4096, 16384, 65536})
    b->Arg(s);
  b->ArgName("size");
}

constexpr int kClassHoles = 64;  ///< free blocks of the measured size, each between live pins

void BM_MallocFree_SizeClass(benchmark::State &state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  Heap heap = fresh_heap(16 << 20);
  std::vector<void *> holes;
  for (int i = 0; i < kClassHoles && heap; ++i) {
    holes.push_back(heap.allocate(size));
    if (heap.allocate(16) == nullptr) holes.push_back(nullptr);  // pin: keeps the holes apart
  }
  for (void *p : holes) {
    if (p == nullptr) {
      state.SkipWithError("setup failed");
      return;
    }
    heap.deallocate(p);
  }
  for (auto _ : state) {
    void *p = heap.allocate(size);
    benchmark::DoNotOptimize(p);
    heap.deallocate(p);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 2);
}
BENCHMARK(BM_MallocFree_SizeClass)->Apply(size_classes);

/// Free's longest path: a block whose both neighbours are free (three blocks merge into one);
/// the three blocks are then allocated again from the merged block (each a split), which restores
/// the layout. One iteration = 3 frees + 3 mallocs.
void BM_Free_Coalesce3(benchmark::State &state) {
  Heap heap = fresh_heap(1 << 20);
  constexpr std::size_t kSizes[3] = {72, 136, 200};
  void *blocks[3];
  for (std::size_t s : random_sizes(100, 16, 256, kSeed))  // some live blocks before
    heap.allocate(s);
  for (int i = 0; i < 3; ++i)
    blocks[i] = heap.allocate(kSizes[i]);
  void *after = heap.allocate(16);  // keeps the merged block from joining the free tail
  if (!heap || after == nullptr || blocks[2] == nullptr) {
    state.SkipWithError("setup failed");
    return;
  }
  for (auto _ : state) {
    heap.deallocate(blocks[0]);
    heap.deallocate(blocks[2]);
    heap.deallocate(blocks[1]);  // merges with both neighbours
    for (int i = 0; i < 3; ++i) {
      void *p = heap.allocate(kSizes[i]);
      benchmark::DoNotOptimize(p);
      if (p != blocks[i]) {
        state.SkipWithError("the layout was not restored");
        return;
      }
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 6);
  state.SetLabel("item = 1 of 3 frees (last merges both sides) + 3 splitting mallocs");
}
BENCHMARK(BM_Free_Coalesce3);

void BM_AlignedAlloc(benchmark::State &state) {
  const auto align = static_cast<std::size_t>(state.range(0));
  Heap heap = fresh_heap(16 << 20);
  std::vector<void *> blocks;
  if (!heap || !populate_live(heap, 1000, blocks)) {
    state.SkipWithError("setup failed");
    return;
  }
  for (auto _ : state) {
    void *p = heap.allocate_aligned(100, align);
    benchmark::DoNotOptimize(p);
    if (p == nullptr || (reinterpret_cast<std::uintptr_t>(p) & (align - 1)) != 0) {
      state.SkipWithError("allocate_aligned failed or misaligned");
      break;
    }
    heap.deallocate(p);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 2);
}
BENCHMARK(BM_AlignedAlloc)->Arg(8)->Arg(64)->Arg(512)->Arg(4096);

void BM_Realloc_InPlace(benchmark::State &state) {
  Heap heap = fresh_heap(1 << 20);
  // 1000 live blocks without holes, so the next block is carved from the free tail of the region
  // and its successor is that free tail.
  for (std::size_t s : random_sizes(1000, 16, 256, kSeed)) {
    if (heap.allocate(s) == nullptr) {
      state.SkipWithError("setup failed");
      return;
    }
  }
  void *p = heap.allocate(64);
  void *const first = p;
  for (auto _ : state) {
    p = heap.reallocate(p, 256);
    benchmark::DoNotOptimize(p);
    p = heap.reallocate(p, 64);
    benchmark::DoNotOptimize(p);
    if (p != first) {
      state.SkipWithError("realloc moved the block");
      break;
    }
  }
  heap.deallocate(p);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 2);
}
BENCHMARK(BM_Realloc_InPlace);

void BM_Realloc_Move(benchmark::State &state) {
  Heap heap = fresh_heap(1 << 20);
  std::vector<void *> blocks;
  if (!heap || !populate_live(heap, 1000, blocks)) {
    state.SkipWithError("setup failed");
    return;
  }
  void *p = heap.allocate(64);
  void *blocker = heap.allocate(16);  // keeps p from growing in place
  for (auto _ : state) {
    void *q = heap.reallocate(p, 256);  // must move: the successor is live
    benchmark::DoNotOptimize(q);
    if (q == p || q == nullptr) {
      state.SkipWithError("realloc did not move");
      break;
    }
    p = heap.allocate(64);  // takes the hole q left, restoring the layout
    heap.deallocate(q);
  }
  heap.deallocate(p);
  heap.deallocate(blocker);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  state.SetLabel("item = realloc(move) + malloc + free");
}
BENCHMARK(BM_Realloc_Move);

/// info_fixture.hpp's worst case with `live` live blocks in a 64 MiB region.
bool populate_worst_case(Heap &heap, std::size_t live) {
  std::vector<void *> keep;
  return capheap::bench::fill_worst_case(
      live, [&heap](std::size_t n) { return heap.allocate(n); },
      [&heap](void *p) { heap.deallocate(p); }, [&heap] { return heap.largest_free_block(); },
      keep);
}

void info_counts(benchmark::internal::Benchmark *b) {
  for (std::size_t n : capheap::bench::kInfoCounts)
    b->Arg(static_cast<std::int64_t>(n));
}

void BM_Info(benchmark::State &state) {
  Heap heap = fresh_heap(kBigRegion);
  if (!heap || !populate_worst_case(heap, static_cast<std::size_t>(state.range(0)))) {
    state.SkipWithError("setup failed");
    return;
  }
  for (auto _ : state) {
    capheap::HeapInfo info = heap.info();
    benchmark::DoNotOptimize(info);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_Info)->Apply(info_counts);

void BM_LargestFreeBlock(benchmark::State &state) {
  Heap heap = fresh_heap(kBigRegion);
  if (!heap || !populate_worst_case(heap, static_cast<std::size_t>(state.range(0)))) {
    state.SkipWithError("setup failed");
    return;
  }
  for (auto _ : state) {
    std::size_t largest = heap.largest_free_block();
    benchmark::DoNotOptimize(largest);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_LargestFreeBlock)->Apply(info_counts);

// ---- System allocator (reference) --------------------------------------------------------------

void BM_System_MallocFree64(benchmark::State &state) {
  for (auto _ : state) {
    void *p = std::malloc(64);
    benchmark::DoNotOptimize(p);
    std::free(p);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 2);
}
BENCHMARK(BM_System_MallocFree64);

void BM_System_MallocFree_SizeClass(benchmark::State &state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  std::vector<void *> holes;
  std::vector<void *> pins;
  for (int i = 0; i < kClassHoles; ++i) {
    holes.push_back(std::malloc(size));
    pins.push_back(std::malloc(16));
  }
  for (void *p : holes)
    std::free(p);
  for (auto _ : state) {
    void *p = std::malloc(size);
    benchmark::DoNotOptimize(p);
    std::free(p);
  }
  for (void *p : pins)
    std::free(p);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 2);
}
BENCHMARK(BM_System_MallocFree_SizeClass)->Apply(size_classes);

void BM_System_MallocFree_LiveBlocks(benchmark::State &state) {
  const auto live = static_cast<std::size_t>(state.range(0));
  const std::vector<std::size_t> setup = random_sizes(2 * live, 16, 256, kSeed);
  std::vector<void *> blocks;
  for (std::size_t s : setup)
    blocks.push_back(std::malloc(s));
  std::mt19937 rng(kSeed + 1);
  std::shuffle(blocks.begin(), blocks.end(), rng);
  for (std::size_t i = live; i < blocks.size(); ++i)
    std::free(blocks[i]);
  blocks.resize(live);
  const std::vector<std::size_t> sizes = random_sizes(kSizeRing, 16, 256, kSeed + 2);
  std::size_t i = 0;
  for (auto _ : state) {
    void *p = std::malloc(sizes[i++ & (kSizeRing - 1)]);
    benchmark::DoNotOptimize(p);
    std::free(p);
  }
  for (void *p : blocks)
    std::free(p);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 2);
}
BENCHMARK(BM_System_MallocFree_LiveBlocks)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000)->Arg(100000);

}  // namespace

BENCHMARK_MAIN();
