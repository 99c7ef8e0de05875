// recorder_bench.cpp — cost of the event recorder (capheap_recorder.h) per malloc + free on the
// simulated ESP32. Acceptance (docs/debugging.md "Event recorder"): the recording path costs
// < 25 % extra time per malloc + free.
//
//   BM_MallocFree_RecorderOff          no recorder
//   BM_MallocFree_RecorderOffPaused    no recorder, the Record loop's pauses (the harness's share)
//   BM_MallocFree_RecorderRecord       recorder on; the ring is drained (to memory) every 4096
//                                      pairs with the timer paused: what the allocating task pays
//   BM_MallocFree_RecorderEndToEnd     the same with the drains timed: allocating task + idle task
//   BM_Recorder_DrainToMemory          formatting alone: one drain of 8192 pending events per
//                                      iteration; the `event` counter is the time per event
//
//   taskset -c 0 build/bench/capheap_recorder_bench --benchmark_repetitions=9
//       --benchmark_report_aggregates_only=true      (one command line)
//
// CAPHEAP_BENCH_PAIRS=N in the environment: instead of the benchmarks, runs N malloc + free pairs
// with the recorder on (drained every 4096 pairs) and N with it off, for callgrind
// (`valgrind --tool=callgrind --toggle-collect=...`, see docs/debugging.md).

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <atomic>
#include <chrono>
#include <thread>

#include "capheap_recorder.h"
#include "esp_heap_caps.h"

namespace {

// Pairs between drains (default 4096: 8192 events, half the built-in ring). CAPHEAP_BENCH_BATCH
// overrides it: a small batch keeps the ring and the sink cache-resident, as an idle task draining
// often would.
int batch_from_env() {
  const char *s = std::getenv("CAPHEAP_BENCH_BATCH");
  const int v = s != nullptr ? std::atoi(s) : 0;
  return v > 0 ? v : 4096;
}
const int kBatch = batch_from_env();

std::size_t sink_bytes() {
  const char *s = std::getenv("CAPHEAP_BENCH_SINK_KIB");
  const long v = s != nullptr ? std::atol(s) : 0;
  return v > 0 ? static_cast<std::size_t>(v) << 10 : std::size_t(64) << 20;
}

struct Sink {
  // 64 MiB by default; CAPHEAP_BENCH_SINK_KIB shrinks it (a sink that stays in cache).
  std::vector<char> buf = std::vector<char>(sink_bytes());
  std::size_t used = 0;
};
Sink g_sink;

void append(const char *line, std::size_t len, void *user) {
  Sink &s = *static_cast<Sink *>(user);
  if (s.used + len > s.buf.size()) s.used = 0;  // wrap: the memory stays hot and bounded
  std::memcpy(s.buf.data() + s.used, line, len);
  s.used += len;
}

void init() {
  heap_caps_free(heap_caps_malloc(1, MALLOC_CAP_DEFAULT));  // initialise the simulator
}

__attribute__((noinline)) void pair() {
  void *p = heap_caps_malloc(64, MALLOC_CAP_DEFAULT);
  benchmark::DoNotOptimize(p);
  heap_caps_free(p);
}

void BM_MallocFree_RecorderOff(benchmark::State &state) {
  init();
  for (auto _ : state)
    pair();
}

// The Record benchmark's loop (a pause every kBatch pairs) without the recorder: the harness's
// share, to compare Record against.
void BM_MallocFree_RecorderOffPaused(benchmark::State &state) {
  init();
  int n = 0;
  for (auto _ : state) {
    pair();
    if (++n == kBatch) {
      state.PauseTiming();
      benchmark::ClobberMemory();
      state.ResumeTiming();
      n = 0;
    }
  }
}

void BM_MallocFree_RecorderRecord(benchmark::State &state) {
  init();
  capheap_recorder_install(append, &g_sink);
  int n = 0;
  for (auto _ : state) {
    pair();
    if (++n == kBatch) {
      state.PauseTiming();
      capheap_recorder_flush();
      state.ResumeTiming();
      n = 0;
    }
  }
  capheap_recorder_stats_t st;
  capheap_recorder_get_stats(&st);
  if (st.dropped != 0) state.SkipWithError("events dropped");
  capheap_recorder_uninstall();
}

void BM_MallocFree_RecorderEndToEnd(benchmark::State &state) {
  init();
  capheap_recorder_install(append, &g_sink);
  int n = 0;
  for (auto _ : state) {
    pair();
    if (++n == kBatch) {
      capheap_recorder_flush();
      n = 0;
    }
  }
  capheap_recorder_uninstall();
}

void BM_Recorder_DrainToMemory(benchmark::State &state) {
  init();
  capheap_recorder_install(append, &g_sink);
  for (auto _ : state) {
    state.PauseTiming();
    for (int i = 0; i < kBatch; ++i)
      pair();
    state.ResumeTiming();
    benchmark::DoNotOptimize(capheap_recorder_flush());
  }
  state.counters["event"] = benchmark::Counter(
      2.0 * kBatch, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  capheap_recorder_uninstall();
}

BENCHMARK(BM_MallocFree_RecorderOff);
BENCHMARK(BM_MallocFree_RecorderOffPaused);
BENCHMARK(BM_MallocFree_RecorderRecord);
BENCHMARK(BM_MallocFree_RecorderEndToEnd);
BENCHMARK(BM_Recorder_DrainToMemory);

// For callgrind: the pairs of each mode in their own function (--toggle-collect); noipa keeps the
// compiler from folding the two identical bodies into one.
__attribute__((noinline, noipa)) void pairs_recorder_on(long n) {
  for (long i = 0; i < n; ++i)
    pair();
}
__attribute__((noinline, noipa)) void pairs_recorder_off(long n) {
  for (long i = 0; i < n; ++i)
    pair();
}

}  // namespace

int main(int argc, char **argv) {
  if (const char *pairs = std::getenv("CAPHEAP_BENCH_PAIRS")) {
    const long n = std::atol(pairs);
    init();
    pairs_recorder_off(n);
    capheap_recorder_install(append, &g_sink);
    for (long done = 0; done < n; done += kBatch) {
      pairs_recorder_on(kBatch);
      capheap_recorder_flush();
    }
    capheap_recorder_uninstall();
    return 0;
  }
  // CAPHEAP_BENCH_THREADS=1: a second (idle) thread exists while every benchmark runs, as in a
  // program that already has threads: the baseline then pays glibc's multi-threaded locking too.
  std::thread idle;
  std::atomic<bool> stop{false};
  if (const char *t = std::getenv("CAPHEAP_BENCH_THREADS"); t != nullptr && std::atoi(t) != 0)
    idle = std::thread([&stop] {
      while (!stop.load())
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    });
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  stop.store(true);
  if (idle.joinable()) idle.join();
  return 0;
}
