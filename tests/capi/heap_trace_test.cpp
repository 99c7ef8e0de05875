// heap_trace_test.cpp — ESP-IDF heap tracing (include/esp_heap_trace.h) on the simulated chips:
// every error code, LEAKS vs ALL, alloc_pause, stop/resume, overflow and high-water mark, realloc
// as free-then-alloc, call stacks, heap_trace_dump's exact text (spec §4.6) held against the device
// samples S1 and S2 (shared/data/device-output/samples.txt) character for character, and
// heap_trace_dump_caps filtering. Built with the default CONFIG_HEAP_TRACING_STACK_DEPTH (2) and
// without the hash map; heap_trace_variant_test.cpp covers depth 0 with the hash map and
// debug_compiled_out_test.cpp the build without tracing and recorder.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "capheap.h"
#include "capheap_host.h"
#include "capheap/caps.hpp"
#include "capi/capi_internal.hpp"
#include "capi/heap_trace_internal.hpp"
#include "esp_heap_caps.h"
#include "esp_heap_caps_init.h"
#include "esp_heap_trace.h"

static_assert(CONFIG_HEAP_TRACING_STACK_DEPTH == 2, "this suite expects the default depth");

namespace {

constexpr std::uint32_t kDefault = MALLOC_CAP_DEFAULT;

std::string g_out;
bool g_allocate_in_print = false;
void capture(const char *text, std::size_t len) {
  g_out.append(text, len);
  if (g_allocate_in_print) {
    g_allocate_in_print = false;
    heap_caps_free(heap_caps_malloc(24, kDefault));  // traced while dumping
  }
}

std::string dump(std::uint32_t caps = MALLOC_CAP_INTERNAL | MALLOC_CAP_SPIRAM) {
  g_out.clear();
  capheap_set_print_hook(capture);
  heap_trace_dump_caps(caps);
  capheap_set_print_hook(nullptr);
  return g_out;
}

std::vector<std::string> lines_of(const std::string &text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    out.push_back(line);
  return out;
}

void *const kNull = nullptr;

// heap_trace_start with a mode that is not an enumerator, called from C (heap_trace_raw_mode.c):
// in C++ an out-of-range enum value is undefined behaviour (UBSan reports it).
extern "C" esp_err_t heap_trace_start_raw(int mode);
void *frame(std::uintptr_t a) {
  return reinterpret_cast<void *>(a);
}

// The return address in the test of the last traced_* call, = the second recorded frame.
void *g_outer = nullptr;
__attribute__((noinline)) void *traced_malloc(std::size_t n) {
  g_outer = __builtin_return_address(0);
  void *p = heap_caps_malloc(n, kDefault);
  __asm__ volatile("" ::: "memory");  // keep the call a call (no tail call)
  return p;
}
__attribute__((noinline)) void traced_free(void *p) {
  g_outer = __builtin_return_address(0);
  heap_caps_free(p);
  __asm__ volatile("" ::: "memory");
}
bool inside(const void *addr, void *fn) {
  const auto a = reinterpret_cast<std::uintptr_t>(addr);
  const auto f = reinterpret_cast<std::uintptr_t>(fn);
  return a > f && a < f + 256;
}

class HeapTrace : public ::testing::Test {
 protected:
  void SetUp() override { init("esp32", CAPHEAP_HOST_DEFAULT_SIZE); }
  void TearDown() override {
    (void)heap_trace_stop();
    capheap_set_print_hook(nullptr);
  }
  void init(const char *chip, std::size_t psram) {
    (void)heap_trace_stop();
    capheap_host_deinit();
    capheap_host_config_t cfg = CAPHEAP_HOST_CONFIG_DEFAULT;
    cfg.psram_size = psram;
    cfg.static_data_size = 4096;
    ASSERT_EQ(capheap_host_init(chip, &cfg), ESP_OK);
    ASSERT_EQ(heap_trace_init_standalone(records_.data(), records_.size()), ESP_OK);
  }
  heap_trace_record_t rec(std::size_t i) {
    heap_trace_record_t r{};
    EXPECT_EQ(heap_trace_get(i, &r), ESP_OK);
    return r;
  }
  heap_trace_summary_t summary() {
    heap_trace_summary_t s{};
    EXPECT_EQ(heap_trace_summary(&s), ESP_OK);
    return s;
  }
  std::vector<heap_trace_record_t> records_ = std::vector<heap_trace_record_t>(100);
};

// ---- Error codes ---------------------------------------------------------------------------

TEST_F(HeapTrace, ErrorCodes) {
  heap_trace_record_t r{};
  EXPECT_EQ(heap_trace_init_standalone(nullptr, 10), ESP_ERR_INVALID_ARG);
  EXPECT_EQ(heap_trace_init_standalone(records_.data(), 0), ESP_ERR_INVALID_ARG);
  EXPECT_EQ(heap_trace_init_tohost(), ESP_ERR_NOT_SUPPORTED);
  EXPECT_EQ(heap_trace_start_raw(7), ESP_ERR_INVALID_ARG);
  EXPECT_EQ(heap_trace_stop(), ESP_ERR_INVALID_STATE);         // not running
  EXPECT_EQ(heap_trace_alloc_pause(), ESP_ERR_INVALID_STATE);  // not running
  EXPECT_EQ(heap_trace_start(HEAP_TRACE_LEAKS), ESP_OK);
  EXPECT_EQ(heap_trace_start(HEAP_TRACE_LEAKS), ESP_OK);  // restart = reset
  EXPECT_EQ(heap_trace_resume(), ESP_ERR_INVALID_STATE);  // running
  EXPECT_EQ(heap_trace_init_standalone(records_.data(), 5), ESP_ERR_INVALID_STATE);
  EXPECT_EQ(heap_trace_init_tohost(), ESP_ERR_INVALID_STATE);
  EXPECT_EQ(heap_trace_alloc_pause(), ESP_OK);
  EXPECT_EQ(heap_trace_alloc_pause(), ESP_ERR_INVALID_STATE);  // already paused
  EXPECT_EQ(heap_trace_init_standalone(records_.data(), 5), ESP_ERR_INVALID_STATE);
  EXPECT_EQ(heap_trace_resume(), ESP_OK);
  EXPECT_EQ(heap_trace_stop(), ESP_OK);
  EXPECT_EQ(heap_trace_stop(), ESP_ERR_INVALID_STATE);
  EXPECT_EQ(heap_trace_resume(), ESP_OK);
  EXPECT_EQ(heap_trace_stop(), ESP_OK);
  EXPECT_EQ(heap_trace_get(0, nullptr), ESP_ERR_INVALID_STATE);
  EXPECT_EQ(heap_trace_get(0, &r), ESP_ERR_INVALID_ARG);  // no records
  EXPECT_EQ(heap_trace_summary(nullptr), ESP_ERR_INVALID_ARG);
  EXPECT_EQ(heap_trace_get_count(), 0u);
}

// ---- Modes -------------------------------------------------------------------------------------

// heap_caps_malloc and heap_caps_free check no event flag on their common path: the registry's
// fast paths are held off exactly while a trace (or any other event sink) runs.
TEST_F(HeapTrace, TracingHoldsTheRegistryFastPathsOffWhileItRuns) {
  capheap::Registry &reg = capheap::capi::registry();
  EXPECT_FALSE(reg.then_path_held());
  ASSERT_EQ(heap_trace_start(HEAP_TRACE_ALL), ESP_OK);
  EXPECT_TRUE(reg.then_path_held());
  void *a = traced_malloc(24);
  traced_free(a);
  ASSERT_EQ(heap_trace_stop(), ESP_OK);
  EXPECT_FALSE(reg.then_path_held());
  EXPECT_EQ(heap_trace_get_count(), 1u);
  EXPECT_EQ(rec(0).address, a);
  EXPECT_NE(rec(0).freed_by[0], kNull);
  // Not recorded once stopped, and the fast paths serve again.
  void *b = traced_malloc(24);
  traced_free(b);
  EXPECT_EQ(heap_trace_get_count(), 1u);
}

TEST_F(HeapTrace, LeaksModeKeepsOnlyUnfreedBlocksWithCallers) {
  ASSERT_EQ(heap_trace_start(HEAP_TRACE_LEAKS), ESP_OK);
  void *a = traced_malloc(100);
  void *b = traced_malloc(200);
  void *const b_outer = g_outer;
  traced_free(a);
  ASSERT_EQ(heap_trace_stop(), ESP_OK);
  ASSERT_EQ(heap_trace_get_count(), 1u);
  const heap_trace_record_t r = rec(0);
  EXPECT_EQ(r.address, b);
  EXPECT_EQ(r.size, 200u);
  EXPECT_TRUE(inside(r.alloced_by[0], reinterpret_cast<void *>(&traced_malloc)));
  EXPECT_EQ(r.alloced_by[1], b_outer);
  EXPECT_EQ(r.freed_by[0], kNull);
  EXPECT_EQ(r.freed_by[1], kNull);
  const heap_trace_summary_t s = summary();
  EXPECT_EQ(s.mode, HEAP_TRACE_LEAKS);
  EXPECT_EQ(s.total_allocations, 2u);
  EXPECT_EQ(s.total_frees, 1u);
  EXPECT_EQ(s.count, 1u);
  EXPECT_EQ(s.capacity, 100u);
  EXPECT_EQ(s.high_water_mark, 2u);
  EXPECT_FALSE(s.has_overflowed);
  heap_caps_free(b);
}

TEST_F(HeapTrace, AllModeKeepsFreedBlocksWithFreedBy) {
  ASSERT_EQ(heap_trace_start(HEAP_TRACE_ALL), ESP_OK);
  void *a = traced_malloc(100);
  void *b = traced_malloc(200);
  traced_free(a);
  void *const free_outer = g_outer;
  ASSERT_EQ(heap_trace_stop(), ESP_OK);
  ASSERT_EQ(heap_trace_get_count(), 2u);
  const heap_trace_record_t ra = rec(0), rb = rec(1);
  EXPECT_EQ(ra.address, a);
  EXPECT_EQ(ra.size, 100u);
  EXPECT_TRUE(inside(ra.freed_by[0], reinterpret_cast<void *>(&traced_free)));
  EXPECT_EQ(ra.freed_by[1], free_outer);
  EXPECT_EQ(rb.address, b);
  EXPECT_EQ(rb.freed_by[0], kNull);
  EXPECT_EQ(summary().total_frees, 1u);
  heap_caps_free(b);
}

TEST_F(HeapTrace, CallocAlignedAndPlainMallocAreRecordedWithRequestedSize) {
  ASSERT_EQ(heap_trace_start(HEAP_TRACE_LEAKS), ESP_OK);
  void *z = heap_caps_calloc(3, 40, kDefault);
  void *m = heap_caps_aligned_alloc(64, 100, kDefault);
  void *d = heap_caps_malloc_default(33);
  ASSERT_EQ(heap_trace_stop(), ESP_OK);
  ASSERT_EQ(heap_trace_get_count(), 3u);
  EXPECT_EQ(rec(0).address, z);
  EXPECT_EQ(rec(0).size, 120u);
  EXPECT_EQ(rec(1).address, m);
  EXPECT_EQ(rec(1).size, 100u);
  EXPECT_EQ(rec(2).address, d);
  EXPECT_EQ(rec(2).size, 33u);
  heap_caps_free(z);
  heap_caps_free(m);
  heap_caps_free(d);
}

TEST_F(HeapTrace, AllocPauseStillRecordsFrees) {
  ASSERT_EQ(heap_trace_start(HEAP_TRACE_LEAKS), ESP_OK);
  void *a = heap_caps_malloc(10, kDefault);
  void *b = heap_caps_malloc(20, kDefault);
  ASSERT_EQ(heap_trace_alloc_pause(), ESP_OK);
  void *c = heap_caps_malloc(30, kDefault);  // not recorded
  heap_caps_free(a);                         // removes a's record
  EXPECT_EQ(heap_trace_get_count(), 1u);
  EXPECT_EQ(rec(0).address, b);
  ASSERT_EQ(heap_trace_resume(), ESP_OK);
  void *d = heap_caps_malloc(40, kDefault);  // recorded again
  heap_caps_free(c);                         // counted, no record
  ASSERT_EQ(heap_trace_stop(), ESP_OK);
  void *e = heap_caps_malloc(50, kDefault);  // stopped: not recorded
  heap_caps_free(b);                         // stopped: not seen
  ASSERT_EQ(heap_trace_get_count(), 2u);
  EXPECT_EQ(rec(0).address, b);
  EXPECT_EQ(rec(1).address, d);
  const heap_trace_summary_t s = summary();
  EXPECT_EQ(s.total_allocations, 3u);
  EXPECT_EQ(s.total_frees, 2u);
  ASSERT_EQ(heap_trace_resume(), ESP_OK);  // records and mode kept
  heap_caps_free(d);
  EXPECT_EQ(heap_trace_get_count(), 1u);
  EXPECT_EQ(summary().mode, HEAP_TRACE_LEAKS);
  heap_caps_free(e);
}

TEST_F(HeapTrace, OverflowEvictsOldestAndKeepsHighWaterMark) {
  std::vector<heap_trace_record_t> small(3);
  ASSERT_EQ(heap_trace_init_standalone(small.data(), small.size()), ESP_OK);
  ASSERT_EQ(heap_trace_start(HEAP_TRACE_LEAKS), ESP_OK);
  void *p[5];
  for (std::size_t i = 0; i < 5; ++i)
    p[i] = heap_caps_malloc(16 * (i + 1), kDefault);
  heap_trace_summary_t s = summary();
  EXPECT_EQ(s.count, 3u);
  EXPECT_EQ(s.high_water_mark, 3u);
  EXPECT_TRUE(s.has_overflowed);
  EXPECT_EQ(s.total_allocations, 5u);
  EXPECT_EQ(rec(0).size, 48u);
  EXPECT_EQ(rec(1).size, 64u);
  EXPECT_EQ(rec(2).size, 80u);
  heap_caps_free(p[0]);  // evicted: no record to remove
  heap_caps_free(p[3]);
  s = summary();
  EXPECT_EQ(s.count, 2u);
  EXPECT_EQ(s.high_water_mark, 3u);
  EXPECT_EQ(s.total_frees, 2u);
  ASSERT_EQ(heap_trace_stop(), ESP_OK);
  const std::string out = dump();
  EXPECT_NE(out.find("records: 2 (3 capacity, 3 high water mark)\n"), std::string::npos) << out;
  EXPECT_NE(out.find("(NB: Internal Buffer has overflowed, so trace data is incomplete.)\n"
                     "================================\n"),
            std::string::npos)
      << out;
  // A restart clears the overflow, the counters and the high-water mark.
  ASSERT_EQ(heap_trace_start(HEAP_TRACE_ALL), ESP_OK);
  s = summary();
  EXPECT_EQ(s.count, 0u);
  EXPECT_EQ(s.high_water_mark, 0u);
  EXPECT_FALSE(s.has_overflowed);
  EXPECT_EQ(s.total_allocations, 0u);
  ASSERT_EQ(heap_trace_stop(), ESP_OK);
  for (void *q : {p[1], p[2], p[4]})
    heap_caps_free(q);
}

TEST_F(HeapTrace, HighWaterMarkIsThePeakCount) {
  ASSERT_EQ(heap_trace_start(HEAP_TRACE_LEAKS), ESP_OK);
  void *p[4];
  for (void *&q : p)
    q = heap_caps_malloc(8, kDefault);
  heap_caps_free(p[0]);
  heap_caps_free(p[1]);
  void *x = heap_caps_malloc(8, kDefault);
  const heap_trace_summary_t s = summary();
  EXPECT_EQ(s.count, 3u);
  EXPECT_EQ(s.high_water_mark, 4u);
  ASSERT_EQ(heap_trace_stop(), ESP_OK);
  heap_caps_free(p[2]);
  heap_caps_free(p[3]);
  heap_caps_free(x);
}

TEST_F(HeapTrace, ReallocIsTracedAsFreeThenAlloc) {
  ASSERT_EQ(heap_trace_start(HEAP_TRACE_LEAKS), ESP_OK);
  void *p = heap_caps_malloc(10, kDefault);
  void *blocker = heap_caps_malloc(10, kDefault);  // forces the realloc to move
  void *q = heap_caps_realloc(p, 5000, kDefault);
  ASSERT_NE(q, nullptr);
  ASSERT_NE(q, p);
  heap_trace_summary_t s = summary();
  EXPECT_EQ(s.total_allocations, 3u);
  EXPECT_EQ(s.total_frees, 1u);
  ASSERT_EQ(s.count, 2u);
  EXPECT_EQ(rec(0).address, blocker);
  EXPECT_EQ(rec(1).address, q);
  EXPECT_EQ(rec(1).size, 5000u);
  void *r = heap_caps_realloc(q, 4000, kDefault);  // in place: free + alloc of the same block
  EXPECT_EQ(r, q);
  s = summary();
  EXPECT_EQ(s.total_allocations, 4u);
  EXPECT_EQ(s.total_frees, 2u);
  EXPECT_EQ(rec(1).size, 4000u);
  EXPECT_EQ(heap_caps_realloc(r, 0, kDefault), nullptr);  // size 0: a free
  s = summary();
  EXPECT_EQ(s.total_frees, 3u);
  EXPECT_EQ(s.count, 1u);
  // ALL mode: the old block's record is kept with freed_by.
  ASSERT_EQ(heap_trace_start(HEAP_TRACE_ALL), ESP_OK);
  void *a = heap_caps_malloc(10, kDefault);
  void *b = heap_caps_malloc(10, kDefault);
  void *c = heap_caps_realloc(a, 3000, kDefault);
  ASSERT_NE(c, a);
  ASSERT_EQ(heap_trace_get_count(), 3u);
  EXPECT_EQ(rec(0).address, a);
  EXPECT_NE(rec(0).freed_by[0], kNull);
  EXPECT_EQ(rec(2).address, c);
  EXPECT_EQ(rec(2).freed_by[0], kNull);
  ASSERT_EQ(heap_trace_stop(), ESP_OK);
  heap_caps_free(blocker);
  heap_caps_free(b);
  heap_caps_free(c);
}

// Spec §4.6: the tracer wraps heap_caps_realloc_base too, and a realloc to size 0 is traced as a
// free. heap_caps_realloc_base(p, 0) freed p without an event: its record stayed as a leak and the
// free was not counted.
TEST_F(HeapTrace, ReallocBaseToSizeZeroIsTracedAsAFree) {
  ASSERT_EQ(heap_trace_start(HEAP_TRACE_LEAKS), ESP_OK);
  void *p = heap_caps_malloc_base(40, kDefault);
  void *q = heap_caps_realloc_base(nullptr, 24, kDefault);  // NULL: an allocation
  ASSERT_TRUE(p != nullptr && q != nullptr);
  EXPECT_EQ(heap_caps_realloc_base(p, 0, kDefault), nullptr);
  heap_trace_summary_t s = summary();
  EXPECT_EQ(s.total_allocations, 2u);
  EXPECT_EQ(s.total_frees, 1u);
  ASSERT_EQ(s.count, 1u);
  EXPECT_EQ(rec(0).address, q);
  EXPECT_EQ(rec(0).size, 24u);
  // ALL mode: the record is kept with freed_by.
  ASSERT_EQ(heap_trace_start(HEAP_TRACE_ALL), ESP_OK);
  void *r = heap_caps_malloc_base(16, kDefault);
  EXPECT_EQ(heap_caps_realloc_base(r, 0, kDefault), nullptr);
  ASSERT_EQ(heap_trace_stop(), ESP_OK);
  ASSERT_EQ(heap_trace_get_count(), 1u);
  EXPECT_EQ(rec(0).address, r);
  EXPECT_NE(rec(0).freed_by[0], kNull);
  EXPECT_EQ(summary().total_frees, 1u);
  heap_caps_free(q);
}

TEST_F(HeapTrace, SequentialAndRandomGetReturnTheSameRecords) {
  ASSERT_EQ(heap_trace_start(HEAP_TRACE_LEAKS), ESP_OK);
  std::vector<void *> p;
  for (std::size_t i = 0; i < 20; ++i)
    p.push_back(heap_caps_malloc(i + 1, kDefault));
  ASSERT_EQ(heap_trace_stop(), ESP_OK);
  for (std::size_t i = 0; i < 20; ++i)
    EXPECT_EQ(rec(i).size, i + 1);
  for (std::size_t i : {7u, 3u, 19u, 0u, 8u, 9u, 8u})
    EXPECT_EQ(rec(i).size, i + 1);
  heap_trace_record_t r{};
  EXPECT_EQ(heap_trace_get(20, &r), ESP_ERR_INVALID_ARG);
  for (void *q : p)
    heap_caps_free(q);
}

// The tracer's state was guarded by a spinlock that knew its holder by capheap_port_current_task:
// on a bare-metal port without task hooks every task has the same (null) identity, so a task that
// found another holding it went on without the lock as if re-entering (its events dropped, the API
// reading records under change), and an interrupt could spin on it for good. It now takes the
// port's lock (the firmware's hooks: a critical section or a recursive RTOS mutex), in pairs, on an
// object of its own; re-entry by the holder is still refused and not recorded.
struct TraceLockCounts {
  std::vector<const void *> heap_locks;
  int acquires = 0;  // of objects other than the heaps' locks
  int releases = 0;
  int depth = 0;
  int max_depth = 0;
  const void *object = nullptr;
};
TraceLockCounts g_trace_locks;
bool is_heap_lock(const void *lock) {
  for (const void *h : g_trace_locks.heap_locks)
    if (h == lock) return true;
  return false;
}
void trace_lock_acquire(void *lock) {
  if (is_heap_lock(lock)) return;
  ++g_trace_locks.acquires;
  g_trace_locks.max_depth = std::max(g_trace_locks.max_depth, ++g_trace_locks.depth);
  g_trace_locks.object = lock;
}
void trace_lock_release(void *lock) {
  if (is_heap_lock(lock)) return;
  ++g_trace_locks.releases;
  --g_trace_locks.depth;
}
TEST_F(HeapTrace, TracerStateIsGuardedByThePortLock) {
  ASSERT_EQ(heap_trace_start(HEAP_TRACE_LEAKS), ESP_OK);
  g_trace_locks = TraceLockCounts{};
  const capheap::Registry &reg = capheap::capi::registry();
  for (unsigned i = 0; i < reg.count(); ++i)
    g_trace_locks.heap_locks.push_back(reg.view(i).lock);
  capheap_set_lock_hooks(trace_lock_acquire, trace_lock_release);
  void *p = heap_caps_malloc(64, kDefault);          // 1 (the event)
  const std::size_t count = heap_trace_get_count();  // 2
  heap_caps_free(p);                                 // 3
  const int after_three = g_trace_locks.acquires;
  capheap_set_lock_hooks(nullptr, nullptr);
  EXPECT_EQ(count, 1u);
  EXPECT_EQ(after_three, 3);
  EXPECT_EQ(g_trace_locks.releases, 3);
  EXPECT_EQ(g_trace_locks.depth, 0);
  EXPECT_EQ(g_trace_locks.max_depth, 1);
  EXPECT_NE(g_trace_locks.object, nullptr);
  EXPECT_EQ(heap_trace_get_count(), 0u);  // LEAKS: the free removed the record
}

TEST_F(HeapTrace, ThreadsRecordEveryAllocationAndFree) {
  std::vector<heap_trace_record_t> big(4000);
  ASSERT_EQ(heap_trace_init_standalone(big.data(), big.size()), ESP_OK);
  ASSERT_EQ(heap_trace_start(HEAP_TRACE_LEAKS), ESP_OK);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([] {
      for (int i = 0; i < 500; ++i)
        heap_caps_free(heap_caps_malloc(32, kDefault));
    });
  }
  for (std::thread &t : threads)
    t.join();
  const heap_trace_summary_t s = summary();
  EXPECT_EQ(s.total_allocations, 2000u);
  EXPECT_EQ(s.total_frees, 2000u);
  EXPECT_EQ(s.count, 0u);
  ASSERT_EQ(heap_trace_stop(), ESP_OK);
}

// ---- heap_trace_dump text ------------------------------------------------------------------

/// Header and complete record lines of a device sample: from `header` on, the lines that look like
/// dump record lines, until the "[[NOTE" line that marks the stored copy's truncation. The line
/// just before the note is incomplete and dropped.
std::vector<std::string> sample_dump_lines(const std::string &header) {
  std::ifstream in(CAPHEAP_DEVICE_SAMPLES);
  EXPECT_TRUE(in.good()) << CAPHEAP_DEVICE_SAMPLES;
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);)
    lines.push_back(line);
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < lines.size() && lines[i] != header)
    ++i;
  EXPECT_LT(i, lines.size()) << header;
  if (i == lines.size()) return out;
  out.push_back(lines[i]);
  for (++i; i < lines.size() && lines[i].rfind("[[NOTE", 0) != 0; ++i) {
    const bool last = i + 1 < lines.size() && lines[i + 1].rfind("[[NOTE", 0) == 0;
    if (!last && lines[i].find(" bytes (@ 0x") != std::string::npos) out.push_back(lines[i]);
  }
  return out;
}

struct SampleRecord {
  std::size_t size;
  std::uintptr_t chip_address;
  std::uint32_t ccount;  // with the CPU in bit 0
  std::uintptr_t caller0, caller1;
};

std::vector<std::string> dump_injected(const std::vector<SampleRecord> &sample, std::size_t total) {
  EXPECT_EQ(heap_trace_start(HEAP_TRACE_LEAKS), ESP_OK);
  EXPECT_EQ(heap_trace_alloc_pause(), ESP_OK);  // the test's own allocations stay out
  EXPECT_EQ(heap_trace_resume(), ESP_OK);
  for (std::size_t i = 0; i < total; ++i) {
    const SampleRecord &r = sample[i < sample.size() ? i : sample.size() - 1];
    void *callers[2] = {frame(r.caller0), frame(r.caller1)};
    // Fillers past the sample's visible records sit 64 bytes apart after the last one.
    const std::uintptr_t chip =
        r.chip_address + (i < sample.size() ? 0 : 64 * (i - sample.size() + 1));
    capheap::capi::trace_record_alloc(capheap_host_from_chip(chip), r.size, callers, r.ccount);
  }
  EXPECT_EQ(heap_trace_stop(), ESP_OK);
  EXPECT_EQ(heap_trace_get_count(), total);
  return lines_of(dump());
}

TEST_F(HeapTrace, DumpMatchesDeviceSampleS1) {
  std::vector<heap_trace_record_t> buf(1000);
  ASSERT_EQ(heap_trace_init_standalone(buf.data(), buf.size()), ESP_OK);
  const std::vector<std::string> expected =
      sample_dump_lines("====== Heap Trace: 8 records (1000 capacity) ======");
  ASSERT_EQ(expected.size(), 4u);  // header + 3 complete records
  const std::vector<SampleRecord> sample = {
      {208, 0x3ffd6614, 0x3bbfc1f4, 0x4012789b, 0x4012792e},
      {16, 0x3ffc5710, 0x49293724, 0x4012789b, 0x4012792e},
      {16, 0x3ffc5724, 0x49296724, 0x4012789b, 0x4012792e},
  };
  const std::vector<std::string> got = dump_injected(sample, 8);
  ASSERT_GE(got.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i)
    EXPECT_EQ(got[i], expected[i]) << i;
}

TEST_F(HeapTrace, DumpMatchesDeviceSampleS2) {
  init("esp32s3", 0);
  const std::vector<std::string> expected =
      sample_dump_lines("====== Heap Trace: 13 records (100 capacity) ======");
  ASSERT_EQ(expected.size(), 5u);  // header + 4 complete records
  const std::vector<SampleRecord> sample = {
      {84, 0x3fca94d8, 0x042ac374, 0x40376183, 0x4037da9c},
      {84, 0x3fca9530, 0x042ae93c, 0x40376183, 0x4037da9c},
      {84, 0x3fca9988, 0x042dee78, 0x40376183, 0x4037da9c},
      {12, 0x3fcaa114, 0x04371de8, 0x40376183, 0x403761b8},
  };
  const std::vector<std::string> got = dump_injected(sample, 13);
  ASSERT_GE(got.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i)
    EXPECT_EQ(got[i], expected[i]) << i;
}

TEST_F(HeapTrace, DumpFollowsTheSpecRules) {
  init("esp32", 4 * 1024 * 1024);  // with PSRAM
  ASSERT_EQ(heap_trace_start(HEAP_TRACE_ALL), ESP_OK);
  void *in = capheap_host_from_chip(0x3ffe8000);
  void *ps = capheap_host_from_chip(0x3f800010);
  void *two[2] = {frame(0x400d1234), frame(0x400d5678)};
  void *one[2] = {frame(0x400d1234), nullptr};
  void *freer[2] = {frame(0x400e0001), frame(0x400e0002)};
  capheap::capi::trace_record_alloc(in, 100000, two, 0x12345679);  // CPU 1, ccount bits cleared
  capheap::capi::trace_record_alloc(ps, 7, one, 0x00000010);
  capheap::capi::trace_record_free(in, freer);
  ASSERT_EQ(heap_trace_stop(), ESP_OK);
  const std::string all = dump();
  EXPECT_EQ(all,
            "====== Heap Trace: 2 records (100 capacity) ======\n"
            "100000 bytes (@ 0x3ffe8000, Internal) allocated CPU 1 ccount 0x12345678 caller "
            "0x400d1234:0x400d5678\n"
            "freed by 0x400e0001:0x400e0002\n"
            "     7 bytes (@ 0x3f800010,    PSRAM) allocated CPU 0 ccount 0x00000010 caller "
            "0x400d1234:\n"
            "====== Heap Trace Summary ======\n"
            "Mode: Heap Trace All\n"
            "7 bytes alive in trace (1/2 allocations)\n"
            "records: 2 (100 capacity, 2 high water mark)\n"
            "total allocations: 2\n"
            "total frees: 1\n"
            "================================\n");
  // heap_trace_dump_caps filters by region; the summary counts what was printed.
  EXPECT_EQ(dump(MALLOC_CAP_SPIRAM),
            "====== Heap Trace: 2 records (100 capacity) ======\n"
            "     7 bytes (@ 0x3f800010,    PSRAM) allocated CPU 0 ccount 0x00000010 caller "
            "0x400d1234:\n"
            "====== Heap Trace Summary ======\n"
            "Mode: Heap Trace All\n"
            "7 bytes alive in trace (1/2 allocations)\n"
            "records: 2 (100 capacity, 2 high water mark)\n"
            "total allocations: 2\n"
            "total frees: 1\n"
            "================================\n");
  const std::string internal = dump(MALLOC_CAP_INTERNAL);
  EXPECT_NE(internal.find("0 bytes alive in trace (0/2 allocations)\n"), std::string::npos);
  EXPECT_NE(internal.find("(@ 0x3ffe8000, Internal)"), std::string::npos);
  EXPECT_EQ(internal.find("PSRAM)"), std::string::npos);
  const std::string none = dump(0);
  EXPECT_EQ(none.find(" bytes (@ "), std::string::npos);
  // LEAKS mode: the summary's wording; addresses outside every heap are never printed.
  ASSERT_EQ(heap_trace_start(HEAP_TRACE_LEAKS), ESP_OK);
  capheap::capi::trace_record_alloc(in, 100, two, 0x100);
  capheap::capi::trace_record_alloc(frame(0x10), 5, two, 0x104);
  ASSERT_EQ(heap_trace_stop(), ESP_OK);
  EXPECT_EQ(dump(),
            "====== Heap Trace: 2 records (100 capacity) ======\n"
            "   100 bytes (@ 0x3ffe8000, Internal) allocated CPU 0 ccount 0x00000100 caller "
            "0x400d1234:0x400d5678\n"
            "====== Heap Trace Summary ======\n"
            "Mode: Heap Trace Leaks\n"
            "100 bytes 'leaked' in trace (1 allocations)\n"
            "records: 2 (100 capacity, 2 high water mark)\n"
            "total allocations: 2\n"
            "total frees: 0\n"
            "================================\n");
}

// Spec §1.4 / §4.6: heap_trace_dump_caps filters and labels records by address. An EXEC block
// served from D/IRAM is handed out at its instruction-bus alias (spec §3.4), internal RAM: it is
// printed at that address as ", Internal" and counts toward the leaked bytes (it used to be left
// out of the dump, as if it were in no heap).
TEST_F(HeapTrace, DumpShowsExecBlocksAtTheirInstructionAddressAsInternal) {
  (void)heap_trace_stop();
  capheap_host_deinit();
  capheap_host_config_t cfg = CAPHEAP_HOST_CONFIG_DEFAULT;
  cfg.psram_size = 0;
  cfg.memory_protection = CAPHEAP_MEMPROT_OFF;  // EXEC may use D/IRAM
  ASSERT_EQ(capheap_host_init("esp32s3", &cfg), ESP_OK);
  ASSERT_EQ(heap_trace_init_standalone(records_.data(), records_.size()), ESP_OK);
  void *x = heap_caps_malloc(40, MALLOC_CAP_EXEC);
  ASSERT_NE(x, nullptr);
  const std::uintptr_t chip = capheap::capi::display_address(x);
  ASSERT_GE(chip, 0x40378000u);  // the instruction bus
  ASSERT_LT(chip, 0x403E0000u);
  ASSERT_EQ(heap_trace_start(HEAP_TRACE_LEAKS), ESP_OK);
  void *callers[2] = {frame(0x400d1234), frame(0x400d5678)};
  capheap::capi::trace_record_alloc(x, 40, callers, 0x100);
  ASSERT_EQ(heap_trace_stop(), ESP_OK);
  char addr[16];
  std::snprintf(addr, sizeof addr, "0x%08lx", static_cast<unsigned long>(chip));
  const std::string expected = std::string(
                                   "====== Heap Trace: 1 records (100 capacity) ======\n"
                                   "    40 bytes (@ ") +
                               addr +
                               ", Internal) allocated CPU 0 ccount 0x00000100 caller "
                               "0x400d1234:0x400d5678\n"
                               "====== Heap Trace Summary ======\n"
                               "Mode: Heap Trace Leaks\n"
                               "40 bytes 'leaked' in trace (1 allocations)\n"
                               "records: 1 (100 capacity, 1 high water mark)\n"
                               "total allocations: 1\n"
                               "total frees: 0\n"
                               "================================\n";
  EXPECT_EQ(dump(), expected);
  EXPECT_EQ(dump(MALLOC_CAP_INTERNAL), expected);
  EXPECT_EQ(dump(MALLOC_CAP_SPIRAM).find(" bytes (@ "), std::string::npos);
  // A traced free of the alias finds the record.
  ASSERT_EQ(heap_trace_resume(), ESP_OK);
  heap_caps_free(x);
  ASSERT_EQ(heap_trace_stop(), ESP_OK);
  EXPECT_EQ(heap_trace_get_count(), 0u);
}

// Spec §1.4 / §4.6: the region is the address's, not the caps of the heap that holds it. A heap
// added at run time inside a PSRAM buffer (spec §1.2, "strictly inside": a malloc'ed buffer turned
// into a heap with new caps) holds PSRAM even without MALLOC_CAP_SPIRAM in its caps, and one inside
// an internal buffer holds internal RAM whatever its caps claim (both were labelled by caps).
TEST_F(HeapTrace, DumpLabelsBlocksOfRuntimeHeapsByTheirAddress) {
  init("esp32", 4 * 1024 * 1024);
  void *ext = heap_caps_malloc(8192, MALLOC_CAP_SPIRAM);
  void *in = heap_caps_malloc(8192, MALLOC_CAP_INTERNAL | MALLOC_CAP_8BIT);
  ASSERT_TRUE(ext != nullptr && in != nullptr);
  const std::uint32_t caps_ext[3] = {MALLOC_CAP_PID2 | MALLOC_CAP_8BIT, 0, 0};
  const std::uint32_t caps_in[3] = {MALLOC_CAP_PID3 | MALLOC_CAP_8BIT | MALLOC_CAP_SPIRAM, 0, 0};
  const auto at = [](void *p) { return reinterpret_cast<intptr_t>(p); };
  ASSERT_EQ(heap_caps_add_region_with_caps(caps_ext, at(ext), at(ext) + 8192), ESP_OK);
  ASSERT_EQ(heap_caps_add_region_with_caps(caps_in, at(in), at(in) + 8192), ESP_OK);
  void *a = heap_caps_malloc(40, MALLOC_CAP_PID2);
  void *b = heap_caps_malloc(24, MALLOC_CAP_PID3);
  ASSERT_TRUE(a != nullptr && b != nullptr);
  ASSERT_EQ(heap_trace_start(HEAP_TRACE_LEAKS), ESP_OK);
  void *callers[2] = {frame(0x400d1234), frame(0x400d5678)};
  capheap::capi::trace_record_alloc(a, 40, callers, 0x100);
  capheap::capi::trace_record_alloc(b, 24, callers, 0x200);
  ASSERT_EQ(heap_trace_stop(), ESP_OK);
  char addr_a[16], addr_b[16];
  std::snprintf(addr_a, sizeof addr_a, "0x%08lx",
                static_cast<unsigned long>(capheap::capi::display_address(a)));
  std::snprintf(addr_b, sizeof addr_b, "0x%08lx",
                static_cast<unsigned long>(capheap::capi::display_address(b)));
  ASSERT_EQ(std::string(addr_a).substr(0, 6), "0x3f80");  // PSRAM (0x3f800000..)
  ASSERT_EQ(std::string(addr_b).substr(0, 5), "0x3ff");   // internal DRAM
  const std::string line_a = std::string("    40 bytes (@ ") + addr_a +
                             ",    PSRAM) allocated CPU 0 ccount 0x00000100 caller "
                             "0x400d1234:0x400d5678\n";
  const std::string line_b = std::string("    24 bytes (@ ") + addr_b +
                             ", Internal) allocated CPU 0 ccount 0x00000200 caller "
                             "0x400d1234:0x400d5678\n";
  const auto text = [](const std::string &lines, const char *leaked) {
    return "====== Heap Trace: 2 records (100 capacity) ======\n" + lines +
           "====== Heap Trace Summary ======\n"
           "Mode: Heap Trace Leaks\n" +
           leaked +
           "records: 2 (100 capacity, 2 high water mark)\n"
           "total allocations: 2\n"
           "total frees: 0\n"
           "================================\n";
  };
  EXPECT_EQ(dump(), text(line_a + line_b, "64 bytes 'leaked' in trace (2 allocations)\n"));
  EXPECT_EQ(dump(MALLOC_CAP_SPIRAM), text(line_a, "40 bytes 'leaked' in trace (1 allocations)\n"));
  EXPECT_EQ(dump(MALLOC_CAP_INTERNAL),
            text(line_b, "24 bytes 'leaked' in trace (1 allocations)\n"));
  heap_caps_free(a);
  heap_caps_free(b);
}

TEST_F(HeapTrace, DumpNotesEntriesTracedWhileDumping) {
  ASSERT_EQ(heap_trace_start(HEAP_TRACE_LEAKS), ESP_OK);
  void *p = heap_caps_malloc(64, kDefault);
  g_allocate_in_print = true;  // the print hook allocates (traced) during the dump
  const std::string out = dump();
  g_allocate_in_print = false;
  ASSERT_EQ(heap_trace_stop(), ESP_OK);
  EXPECT_NE(out.find("total allocations: 2\ntotal frees: 1\n(NB: New entries were traced while "
                     "dumping, so trace dump may have duplicate entries.)\n"
                     "================================\n"),
            std::string::npos)
      << out;
  heap_caps_free(p);
}

}  // namespace
