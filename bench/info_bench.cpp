// info_bench.cpp — the cost of the heap statistics against the number of blocks in the heap.
//
//   BM_HeapCaps_GetInfo/N            heap_caps_get_info(&info, MALLOC_CAP_DEFAULT)
//   BM_HeapCaps_LargestFreeBlock/N   heap_caps_get_largest_free_block(MALLOC_CAP_DEFAULT)
//   BM_MultiHeap_GetInfo/N           multi_heap_get_info on a heap with a lock
//
// N = 10 .. 100 000 live blocks in the worst-case layout of info_fixture.hpp (N live and N free
// 20-byte blocks in the top size class, the rest of the heap one live block). The heap_caps
// families run on the simulated ESP32 (no PSRAM) with one more heap of host memory that holds the
// blocks; the query visits every DEFAULT heap of the model as well, a constant part. The acceptance
// figure is the ratio N = 100 000 / N = 10 (bench/report.py); bench/callgrind_caps.py measures the
// same calls in instructions, which is exact.
#include <benchmark/benchmark.h>

#include "caps_info_state.hpp"

namespace {

using capheap::bench::CapsInfoState;
using capheap::bench::MultiHeapInfoState;

void BM_HeapCaps_GetInfo(benchmark::State &state) {
  CapsInfoState s;
  if (const char *err = s.setup(static_cast<std::size_t>(state.range(0)))) {
    state.SkipWithError(err);
    return;
  }
  for (auto _ : state) {
    multi_heap_info_t info;
    heap_caps_get_info(&info, MALLOC_CAP_DEFAULT);
    benchmark::DoNotOptimize(info);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_HeapCaps_LargestFreeBlock(benchmark::State &state) {
  CapsInfoState s;
  if (const char *err = s.setup(static_cast<std::size_t>(state.range(0)))) {
    state.SkipWithError(err);
    return;
  }
  for (auto _ : state) {
    std::size_t largest = heap_caps_get_largest_free_block(MALLOC_CAP_DEFAULT);
    benchmark::DoNotOptimize(largest);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_MultiHeap_GetInfo(benchmark::State &state) {
  MultiHeapInfoState s;
  if (const char *err = s.setup(static_cast<std::size_t>(state.range(0)))) {
    state.SkipWithError(err);
    return;
  }
  for (auto _ : state) {
    multi_heap_info_t info;
    multi_heap_get_info(s.heap(), &info);
    benchmark::DoNotOptimize(info);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void counts(benchmark::internal::Benchmark *b) {
  for (std::size_t n : capheap::bench::kInfoCounts)
    b->Arg(static_cast<std::int64_t>(n));
  b->ArgName("live");
}

BENCHMARK(BM_HeapCaps_GetInfo)->Apply(counts);
BENCHMARK(BM_HeapCaps_LargestFreeBlock)->Apply(counts);
BENCHMARK(BM_MultiHeap_GetInfo)->Apply(counts);

}  // namespace

BENCHMARK_MAIN();
