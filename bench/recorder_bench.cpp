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
// CAPHEAP_BENCH_RATIO=ROUNDS: instead of the benchmarks, the recorder's cost as the median of
// per-round ratios (recording / off, timed side by side; see ratio_mode). With
// CAPHEAP_BENCH_THREADS=1 an idle second thread exists throughout.
//
// CAPHEAP_BENCH_PAIRS=N in the environment: instead of the benchmarks, runs N malloc + free pairs
// with the recorder on (drained every 4096 pairs) and N with it off, for callgrind
// (`valgrind --tool=callgrind --toggle-collect=...`, see docs/debugging.md).

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <algorithm>
#include <cstdio>
#include <atomic>
#include <chrono>
#include <thread>

#include "capheap_recorder.h"
#include "esp_heap_caps.h"
#include "port/port.h"

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

/// CAPHEAP_BENCH_RATIO=ROUNDS: the recorder's cost as a ratio measured side by side. Each round
/// times kBatch pairs with the recorder off and kBatch pairs recording (installed before, drained
/// and uninstalled after the timed part), in alternating order; prints the median and quartiles of
/// the per-round ratio. Robust against this machine's speed drift, unlike two benchmarks run one
/// after the other.
int ratio_mode(long rounds) {
  init();
  std::vector<double> ratio, off_ns, on_ns;
  const auto time_pairs = [](long n) {
    const auto t0 = std::chrono::steady_clock::now();
    pairs_recorder_off(n);
    const auto t1 = std::chrono::steady_clock::now();
    return std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(n);
  };
  const auto time_recording = [](long n) {
    capheap_recorder_install(append, &g_sink);
    pair();  // attaches the thread's ring (clears it): not part of the per-pair cost
    const auto t0 = std::chrono::steady_clock::now();
    pairs_recorder_on(n);
    const auto t1 = std::chrono::steady_clock::now();
    capheap_recorder_uninstall();  // delivers everything
    return std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(n);
  };
  time_pairs(kBatch);
  time_recording(kBatch);
  for (long r = 0; r < rounds; ++r) {
    double off, on;
    if (r % 2 == 0) {
      off = time_pairs(kBatch);
      on = time_recording(kBatch);
    } else {
      on = time_recording(kBatch);
      off = time_pairs(kBatch);
    }
    ratio.push_back(on / off);
    off_ns.push_back(off);
    on_ns.push_back(on);
  }
  const auto q = [](std::vector<double> v, double f) {
    std::sort(v.begin(), v.end());
    return v[static_cast<std::size_t>(f * static_cast<double>(v.size() - 1) + 0.5)];
  };
  std::printf(
      "recorder on / off, %ld rounds of %d pairs: ratio p25 %.3f median %.3f p75 %.3f; "
      "off %.1f ns, on %.1f ns per pair (medians); threads: %s\n",
      rounds, kBatch, q(ratio, 0.25), q(ratio, 0.5), q(ratio, 0.75), q(off_ns, 0.5), q(on_ns, 0.5),
      capheap_port_single_threaded() ? "one" : "several");
  return 0;
}

// CAPHEAP_BENCH_THREADS=1: a second (idle) thread exists while the measurement runs, as in a
// program that already has threads: the baseline then pays glibc's multi-threaded locking too.
class IdleThread {
 public:
  IdleThread() {
    if (const char *t = std::getenv("CAPHEAP_BENCH_THREADS"); t != nullptr && std::atoi(t) != 0)
      thread_ = std::thread([this] {
        while (!stop_.load())
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
      });
  }
  ~IdleThread() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  IdleThread(const IdleThread &) = delete;
  IdleThread &operator=(const IdleThread &) = delete;

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

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
  const IdleThread idle;
  if (const char *rounds = std::getenv("CAPHEAP_BENCH_RATIO"))
    return ratio_mode(std::atol(rounds) > 0 ? std::atol(rounds) : 41);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
