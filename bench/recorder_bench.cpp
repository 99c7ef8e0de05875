// recorder_bench.cpp — cost of the event recorder (capheap_recorder.h) per malloc + free on the
// simulated ESP32: recorder off vs a recorder whose callback appends each line to a memory buffer.
// Acceptance (docs/debugging.md "Event recorder"): < 25 % extra time per malloc + free.
//
//   taskset -c 0 build/bench/capheap_recorder_bench --benchmark_repetitions=9
//       --benchmark_report_aggregates_only=true      (one command line)

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstring>
#include <vector>

#include "capheap_recorder.h"
#include "esp_heap_caps.h"

namespace {

struct Sink {
  std::vector<char> buf = std::vector<char>(std::size_t(64) << 20);
  std::size_t used = 0;
};

void append(const char *line, std::size_t len, void *user) {
  Sink &s = *static_cast<Sink *>(user);
  if (s.used + len > s.buf.size()) s.used = 0;  // wrap: the memory stays hot and bounded
  std::memcpy(s.buf.data() + s.used, line, len);
  s.used += len;
}

void malloc_free(benchmark::State &state, bool record) {
  static Sink sink;
  heap_caps_free(heap_caps_malloc(1, MALLOC_CAP_DEFAULT));  // initialise the simulator
  if (record) capheap_recorder_install(append, &sink);
  for (auto _ : state) {
    void *p = heap_caps_malloc(64, MALLOC_CAP_DEFAULT);
    benchmark::DoNotOptimize(p);
    heap_caps_free(p);
  }
  if (record) capheap_recorder_uninstall();
}

void BM_MallocFree_RecorderOff(benchmark::State &state) {
  malloc_free(state, false);
}
void BM_MallocFree_RecorderToMemory(benchmark::State &state) {
  malloc_free(state, true);
}
BENCHMARK(BM_MallocFree_RecorderOff);
BENCHMARK(BM_MallocFree_RecorderToMemory);

}  // namespace

BENCHMARK_MAIN();
