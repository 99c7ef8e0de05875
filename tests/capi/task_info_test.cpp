// task_info_test.cpp — esp_heap_task_info.h: the legacy snapshot heap_caps_get_per_task_info and
// the per-task statistics (heap_caps_get_all_task_stat and friends) on the host simulator.
//
// Every test runs on a simulated ESP32 (no PSRAM) whose boot heaps do not track tasks, plus two
// runtime heaps added with owner words: A with MALLOC_CAP_PID2 and B with MALLOC_CAP_PID3 (bits no
// boot heap has), so allocations with PID2 / PID3 land in exactly one known heap and nothing else
// in the process shows in the figures. Threads stand for tasks (named with pthread_setname_np
// before their first allocation). Granule 4: malloc(n) takes round4(n) + 4 bytes (owner word).

#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "capheap.h"
#include "capheap_host.h"
#include "capheap_port.h"
#include "capi/capi_internal.hpp"
#include "esp_heap_caps.h"
#include "esp_heap_caps_init.h"
#include "esp_heap_task_info.h"
#include "support/decoration_support.hpp"

namespace {

constexpr std::uint32_t kA = MALLOC_CAP_PID2;
constexpr std::uint32_t kB = MALLOC_CAP_PID3;
constexpr std::size_t kRegion = 16 * 1024;
alignas(16) unsigned char g_region_a[kRegion];
alignas(16) unsigned char g_region_b[kRegion];

TaskHandle_t handle(std::uint32_t owner) {
  return reinterpret_cast<TaskHandle_t>(static_cast<std::uintptr_t>(owner));
}

std::uint32_t me() {
  return capheap_port_task_owner();
}

// Runs f on a new thread named `name`, which then waits until release() before it ends.
class Task {
 public:
  explicit Task(const char *name) : name_(name) {}
  ~Task() {
    release();
    join();
  }
  // Runs f on the task's thread and waits for it.
  void run(std::function<void()> f) {
    if (!thread_.joinable()) start();
    std::unique_lock<std::mutex> lock(m_);
    job_ = std::move(f);
    cv_.notify_all();
    cv_.wait(lock, [&] { return !job_; });
  }
  std::uint32_t owner() {
    std::uint32_t o = 0;
    run([&] { o = me(); });
    return o;
  }
  void release() {
    std::lock_guard<std::mutex> lock(m_);
    done_ = true;
    cv_.notify_all();
  }
  void join() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  void start() {
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), name_.c_str());
      std::unique_lock<std::mutex> lock(m_);
      for (;;) {
        cv_.wait(lock, [&] { return done_ || job_; });
        if (job_) {
          job_();
          job_ = nullptr;
          cv_.notify_all();
          continue;
        }
        return;
      }
    });
  }
  std::string name_;
  std::thread thread_;
  std::mutex m_;
  std::condition_variable cv_;
  std::function<void()> job_;
  bool done_ = false;
};

class TaskInfo : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char *v :
         {"CAPHEAP_CHIP", "CAPHEAP_PSRAM", "CAPHEAP_STATIC_DATA", "CAPHEAP_POISONING",
          "CAPHEAP_CHIP_ADDRESSES", "CAPHEAP_GRANULE", "CAPHEAP_TASK_TRACKING"})
      unsetenv(v);
    pthread_setname_np(pthread_self(), "tester");
    (void)me();  // the test thread gets its owner word first: every Task is newer (larger)
  }

  // A simulated ESP32 whose heaps (boot heaps, and A with PID2 and B with PID3 added at run time)
  // all carry owner words (tracking) and the poisoning given; statistics restarted.
  void add_tracking_heaps(capheap_poisoning_t poisoning = CAPHEAP_POISONING_NONE,
                          bool tracking = true) {
    capheap_host_config_t cfg = CAPHEAP_HOST_CONFIG_DEFAULT;
    cfg.psram_size = 0;
    cfg.poisoning = poisoning;
    cfg.task_tracking = tracking;
    ASSERT_EQ(capheap_host_init("esp32", &cfg), ESP_OK);
    EXPECT_EQ(capheap_task_stats_enabled(), tracking);
    const std::uint32_t caps_a[3] = {kA | MALLOC_CAP_8BIT, 0, 0};
    const std::uint32_t caps_b[3] = {kB | MALLOC_CAP_8BIT, 0, 0};
    ASSERT_EQ(heap_caps_add_region_with_caps(caps_a, reinterpret_cast<intptr_t>(g_region_a),
                                             reinterpret_cast<intptr_t>(g_region_a + kRegion)),
              ESP_OK);
    ASSERT_EQ(heap_caps_add_region_with_caps(caps_b, reinterpret_cast<intptr_t>(g_region_b),
                                             reinterpret_cast<intptr_t>(g_region_b + kRegion)),
              ESP_OK);
    capheap_task_stats_enable(true);
  }

  void TearDown() override {
    capheap_task_stats_track_deleted(false);
    capheap_host_deinit();
    EXPECT_FALSE(capheap_task_stats_enabled());
  }
};

// The caps a report shows for A and B (OR of the three levels).
constexpr std::uint32_t kCapsA = kA | MALLOC_CAP_8BIT;
constexpr std::uint32_t kCapsB = kB | MALLOC_CAP_8BIT;

// ================================================================================================
// Legacy snapshot
// ================================================================================================

TEST_F(TaskInfo, LegacyBucketsTotalsAndBlocks) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  add_tracking_heaps();
  Task worker("worker");
  const std::uint32_t w = worker.owner();
  void *m36 = heap_caps_malloc(36, kA);    // 40
  void *m100 = heap_caps_malloc(100, kB);  // 104
  void *w20a = nullptr, *w20b = nullptr;
  worker.run([&] {
    w20a = heap_caps_malloc(20, kA);  // 24
    w20b = heap_caps_malloc(20, kA);  // 24
  });
  ASSERT_TRUE(m36 && m100 && w20a && w20b);

  heap_task_totals_t totals[4] = {};
  size_t num_totals = 0;
  heap_task_block_t blocks[8] = {};
  heap_task_info_params_t p{};
  p.caps[0] = static_cast<int32_t>(kA);
  p.mask[0] = static_cast<int32_t>(kA);
  p.caps[1] = static_cast<int32_t>(kB);
  p.mask[1] = static_cast<int32_t>(kB);
  p.caps[2] = p.mask[2] = -1;  // matches no heap (INVALID is never a heap cap)
  p.caps[3] = p.mask[3] = -1;
  p.totals = totals;
  p.num_totals = &num_totals;
  p.max_totals = 4;
  p.blocks = blocks;
  p.max_blocks = 8;
  // Heap list order: B (added last, runtime heaps go first), then A; blocks in address order.
  ASSERT_EQ(heap_caps_get_per_task_info(&p), 4u);
  ASSERT_EQ(num_totals, 2u);
  EXPECT_EQ(totals[0].task, handle(me()));
  EXPECT_EQ(totals[0].size[0], 40u);
  EXPECT_EQ(totals[0].count[0], 1u);
  EXPECT_EQ(totals[0].size[1], 104u);
  EXPECT_EQ(totals[0].count[1], 1u);
  EXPECT_EQ(totals[0].size[2] + totals[0].size[3] + totals[0].count[2] + totals[0].count[3], 0u);
  EXPECT_EQ(totals[1].task, handle(w));
  EXPECT_EQ(totals[1].size[0], 48u);
  EXPECT_EQ(totals[1].count[0], 2u);
  EXPECT_EQ(totals[1].size[1], 0u);
  EXPECT_EQ(totals[1].count[1], 0u);
  EXPECT_EQ(blocks[0].task, handle(me()));
  EXPECT_EQ(blocks[0].address, m100);
  EXPECT_EQ(blocks[0].size, 104u);
  EXPECT_EQ(blocks[1].address, m36);
  EXPECT_EQ(blocks[1].size, 40u);
  EXPECT_EQ(blocks[2].task, handle(w));
  EXPECT_EQ(blocks[2].address, w20a);
  EXPECT_EQ(blocks[2].size, 24u);
  EXPECT_EQ(blocks[3].address, w20b);

  // Second call with the totals left populated: the order of tasks is kept, sums restart from 0;
  // only the worker's blocks are listed; bucket 1 removed (B is then in no bucket: skipped).
  heap_caps_free(m36);
  TaskHandle_t only[1] = {handle(w)};
  p.tasks = only;
  p.num_tasks = 1;
  p.caps[1] = p.mask[1] = -1;
  std::memset(blocks, 0, sizeof blocks);
  ASSERT_EQ(heap_caps_get_per_task_info(&p), 2u);
  ASSERT_EQ(num_totals, 2u);
  EXPECT_EQ(totals[0].task, handle(me()));
  EXPECT_EQ(totals[0].size[0], 0u);
  EXPECT_EQ(totals[0].count[0], 0u);
  EXPECT_EQ(totals[0].size[1], 0u);
  EXPECT_EQ(totals[1].task, handle(w));
  EXPECT_EQ(totals[1].size[0], 48u);
  EXPECT_EQ(blocks[0].address, w20a);
  EXPECT_EQ(blocks[1].address, w20b);

  // caps[0] = mask[0] = 0: no partitioning; max_totals 1 drops the second task; max_blocks 1.
  heap_task_info_params_t q{};
  heap_task_totals_t one[1] = {};
  size_t n_one = 0;
  heap_task_block_t b1[1] = {};
  q.totals = one;
  q.num_totals = &n_one;
  q.max_totals = 1;
  q.blocks = b1;
  q.max_blocks = 1;
  ASSERT_EQ(heap_caps_get_per_task_info(&q), 1u);
  EXPECT_EQ(n_one, 1u);
  EXPECT_EQ(one[0].task, handle(me()));
  EXPECT_EQ(one[0].size[0], 104u);  // m100 only (m36 freed)
  EXPECT_EQ(one[0].count[0], 1u);
  EXPECT_EQ(b1[0].address, m100);

  // No totals, no blocks, NULL params.
  heap_task_info_params_t none{};
  EXPECT_EQ(heap_caps_get_per_task_info(&none), 0u);
  EXPECT_EQ(heap_caps_get_per_task_info(nullptr), 0u);

  heap_caps_free(m100);
  worker.run([&] {
    heap_caps_free(w20a);
    heap_caps_free(w20b);
  });
}

TEST_F(TaskInfo, LegacySizesIncludeOwnerWord) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  add_tracking_heaps();
  void *p = heap_caps_malloc(36, kA);
  heap_task_block_t b[1] = {};
  heap_task_info_params_t params{};
  params.blocks = b;
  params.max_blocks = 1;
  ASSERT_EQ(heap_caps_get_per_task_info(&params), 1u);
  EXPECT_EQ(b[0].size, 40u);
  EXPECT_EQ(b[0].address, p);
  EXPECT_EQ(b[0].task, handle(me()));
  heap_caps_free(p);
  EXPECT_EQ(heap_caps_get_per_task_info(&params), 0u);
}

// Spec §1.5: ESP-IDF's test expects 36 + 4 with poisoning on (task tracking needs it in the
// Kconfig read, §4.10): a block counts its allocated size (§1.3: the block less the poisoning
// overhead) with the owner word in it. The canaries and the stored size used to be counted too
// (52).
TEST_F(TaskInfo, LegacySizesWithLightPoisoning) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  add_tracking_heaps(CAPHEAP_POISONING_LIGHT);
  void *p = heap_caps_malloc(36, kA);
  heap_task_block_t b[1] = {};
  heap_task_totals_t t[2] = {};
  size_t num_totals = 0;
  heap_task_info_params_t params{};
  params.caps[0] = static_cast<int32_t>(kA);
  params.mask[0] = static_cast<int32_t>(kA);
  params.totals = t;
  params.num_totals = &num_totals;
  params.max_totals = 2;
  params.blocks = b;
  params.max_blocks = 1;
  ASSERT_EQ(heap_caps_get_per_task_info(&params), 1u);
  // data 36 + owner 4; the head canary, the stored size and the tail canary are not counted
  EXPECT_EQ(b[0].size, 40u);
  EXPECT_EQ(b[0].address, p);
  ASSERT_EQ(num_totals, 1u);
  EXPECT_EQ(t[0].size[0], 40u);
  EXPECT_EQ(t[0].count[0], 1u);
  heap_caps_free(p);
}

TEST_F(TaskInfo, LegacySizesWithComprehensivePoisoning) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  add_tracking_heaps(CAPHEAP_POISONING_COMPREHENSIVE);
  void *p = heap_caps_malloc(37, kA);
  heap_task_block_t b[1] = {};
  heap_task_info_params_t params{};
  params.blocks = b;
  params.max_blocks = 1;
  ASSERT_EQ(heap_caps_get_per_task_info(&params), 1u);
  // owner 4 + 37, rounded up to the granule (the poisoning's 12 bytes are not counted)
  EXPECT_EQ(b[0].size, 44u);
  heap_caps_free(p);
}

TEST_F(TaskInfo, HeapsWithoutOwnerWordsAreNotReported) {
  add_tracking_heaps(CAPHEAP_POISONING_NONE, /*tracking=*/false);
  void *d = heap_caps_malloc(64, kA);
  heap_task_totals_t t[2] = {};
  size_t n = 0;
  heap_task_block_t b[2] = {};
  heap_task_info_params_t params{};
  params.totals = t;
  params.num_totals = &n;
  params.max_totals = 2;
  params.blocks = b;
  params.max_blocks = 2;
  EXPECT_EQ(heap_caps_get_per_task_info(&params), 0u);
  EXPECT_EQ(n, 0u);
  heap_all_tasks_stat_t all{};
  EXPECT_EQ(heap_caps_get_all_task_stat(&all), ESP_OK);
  EXPECT_EQ(all.task_count, 0u);
  heap_caps_free(d);
}

// ================================================================================================
// Statistics
// ================================================================================================

struct Snapshot {
  std::vector<task_stat_t> tasks;
  std::vector<heap_stat_t> heaps;
  std::vector<heap_task_block_t> blocks;
};

Snapshot all_stats() {
  Snapshot s;
  s.tasks.resize(16);
  s.heaps.resize(32);
  s.blocks.resize(64);
  heap_all_tasks_stat_t st{};
  st.task_count = s.tasks.size();
  st.stat_arr = s.tasks.data();
  st.heap_count = s.heaps.size();
  st.heap_stat_start = s.heaps.data();
  st.alloc_count = s.blocks.size();
  st.alloc_stat_start = s.blocks.data();
  EXPECT_EQ(heap_caps_get_all_task_stat(&st), ESP_OK);
  s.tasks.resize(st.task_count);
  s.heaps.resize(st.heap_count);
  s.blocks.resize(st.alloc_count);
  return s;
}

void expect_heap(const heap_stat_t &h, std::uint32_t caps, std::size_t current, std::size_t peak,
                 std::size_t count) {
  EXPECT_STREQ(h.name, "runtime");
  EXPECT_EQ(h.caps, caps);
  EXPECT_EQ(h.size, kRegion);
  EXPECT_EQ(h.current_usage, current);
  EXPECT_EQ(h.peak_usage, peak);
  EXPECT_EQ(h.alloc_count, count);
}

TEST_F(TaskInfo, CurrentAndPeakPerTaskAndHeap) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  add_tracking_heaps();
  Task worker("worker");
  const std::uint32_t w = worker.owner();
  void *a1 = heap_caps_malloc(36, kA);   // A 40
  void *a2 = heap_caps_malloc(100, kA);  // A 104: A 144 (peak)
  heap_caps_free(a1);                    // A 104
  void *b1 = heap_caps_malloc(60, kB);   // B 64: overall 168 (peak)
  void *w1 = nullptr;
  worker.run([&] {
    w1 = heap_caps_malloc(20, kA);         // A 24
    void *w2 = heap_caps_malloc(200, kB);  // B 204: overall 228 (peak)
    heap_caps_free(w2);                    // B 0
  });

  const Snapshot s = all_stats();
  ASSERT_EQ(s.tasks.size(), 2u);
  ASSERT_EQ(s.heaps.size(), 4u);
  ASSERT_EQ(s.blocks.size(), 3u);
  // Decreasing handle: the worker (newer thread) first.
  const task_stat_t &tw = s.tasks[0];
  EXPECT_STREQ(tw.name, "worker");
  EXPECT_EQ(tw.handle, handle(w));
  EXPECT_TRUE(tw.is_alive);
  EXPECT_EQ(tw.overall_current_usage, 24u);
  EXPECT_EQ(tw.overall_peak_usage, 228u);
  EXPECT_EQ(tw.heap_count, 2u);
  ASSERT_EQ(tw.heap_stat, &s.heaps[0]);
  expect_heap(tw.heap_stat[0], kCapsA, 24, 24, 1);
  ASSERT_NE(tw.heap_stat[0].alloc_stat, nullptr);
  EXPECT_EQ(tw.heap_stat[0].alloc_stat[0].address, w1);
  EXPECT_EQ(tw.heap_stat[0].alloc_stat[0].size, 24u);
  EXPECT_EQ(tw.heap_stat[0].alloc_stat[0].task, handle(w));
  expect_heap(tw.heap_stat[1], kCapsB, 0, 204, 0);
  EXPECT_EQ(tw.heap_stat[1].alloc_stat, nullptr);

  const task_stat_t &tm = s.tasks[1];
  EXPECT_STREQ(tm.name, "tester");
  EXPECT_EQ(tm.handle, handle(me()));
  EXPECT_TRUE(tm.is_alive);
  EXPECT_EQ(tm.overall_current_usage, 168u);
  EXPECT_EQ(tm.overall_peak_usage, 168u);
  EXPECT_EQ(tm.heap_count, 2u);
  ASSERT_EQ(tm.heap_stat, &s.heaps[2]);
  expect_heap(tm.heap_stat[0], kCapsA, 104, 144, 1);
  EXPECT_EQ(tm.heap_stat[0].alloc_stat, &s.blocks[1]);
  EXPECT_EQ(tm.heap_stat[0].alloc_stat[0].address, a2);
  EXPECT_EQ(tm.heap_stat[0].alloc_stat[0].size, 104u);
  expect_heap(tm.heap_stat[1], kCapsB, 64, 64, 1);
  EXPECT_EQ(tm.heap_stat[1].alloc_stat, &s.blocks[2]);
  EXPECT_EQ(tm.heap_stat[1].alloc_stat[0].address, b1);

  // Single task: NULL = the caller.
  heap_stat_t hs[4];
  heap_task_block_t bs[4];
  heap_single_task_stat_t one{};
  one.heap_count = 4;
  one.heap_stat_start = hs;
  one.alloc_count = 4;
  one.alloc_stat_start = bs;
  ASSERT_EQ(heap_caps_get_single_task_stat(&one, nullptr), ESP_OK);
  EXPECT_EQ(one.stat.handle, handle(me()));
  EXPECT_EQ(one.stat.overall_current_usage, 168u);
  EXPECT_EQ(one.stat.heap_stat, hs);
  EXPECT_EQ(one.heap_count, 2u);
  EXPECT_EQ(one.alloc_count, 2u);
  expect_heap(hs[0], kCapsA, 104, 144, 1);
  EXPECT_EQ(bs[0].address, a2);
  EXPECT_EQ(bs[1].address, b1);

  // Truncation: room for one heap entry only (first-use order), no room for blocks.
  heap_single_task_stat_t small{};
  small.heap_count = 1;
  small.heap_stat_start = hs;
  ASSERT_EQ(heap_caps_get_single_task_stat(&small, handle(w)), ESP_OK);
  EXPECT_EQ(small.heap_count, 1u);
  EXPECT_EQ(small.alloc_count, 0u);
  expect_heap(hs[0], kCapsA, 24, 24, 1);
  EXPECT_EQ(hs[0].alloc_stat, nullptr);

  // All tasks with room for one task and one heap entry: the worker's two entries do not fit.
  task_stat_t ts[1];
  heap_all_tasks_stat_t trunc{};
  trunc.task_count = 1;
  trunc.stat_arr = ts;
  trunc.heap_count = 1;
  trunc.heap_stat_start = hs;
  ASSERT_EQ(heap_caps_get_all_task_stat(&trunc), ESP_OK);
  EXPECT_EQ(trunc.task_count, 1u);
  EXPECT_EQ(trunc.heap_count, 0u);
  EXPECT_EQ(trunc.alloc_count, 0u);
  EXPECT_EQ(ts[0].handle, handle(w));
  EXPECT_EQ(ts[0].heap_stat, nullptr);

  heap_caps_free(a2);
  heap_caps_free(b1);
  worker.run([&] { heap_caps_free(w1); });
}

TEST_F(TaskInfo, InvalidArguments) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  add_tracking_heaps();
  EXPECT_EQ(heap_caps_get_all_task_stat(nullptr), ESP_ERR_INVALID_ARG);
  heap_all_tasks_stat_t a{};
  a.task_count = 1;
  EXPECT_EQ(heap_caps_get_all_task_stat(&a), ESP_ERR_INVALID_ARG);
  a = heap_all_tasks_stat_t{};
  a.heap_count = 1;
  EXPECT_EQ(heap_caps_get_all_task_stat(&a), ESP_ERR_INVALID_ARG);
  a = heap_all_tasks_stat_t{};
  a.alloc_count = 1;
  EXPECT_EQ(heap_caps_get_all_task_stat(&a), ESP_ERR_INVALID_ARG);
  EXPECT_EQ(heap_caps_get_single_task_stat(nullptr, nullptr), ESP_ERR_INVALID_ARG);
  heap_single_task_stat_t s{};
  s.heap_count = 1;
  EXPECT_EQ(heap_caps_get_single_task_stat(&s, nullptr), ESP_ERR_INVALID_ARG);
  s = heap_single_task_stat_t{};
  s.alloc_count = 1;
  EXPECT_EQ(heap_caps_get_single_task_stat(&s, nullptr), ESP_ERR_INVALID_ARG);
  // A task that never allocated from a tracking heap.
  s = heap_single_task_stat_t{};
  EXPECT_EQ(heap_caps_get_single_task_stat(&s, nullptr), ESP_FAIL);
  EXPECT_EQ(heap_caps_alloc_single_task_stat_arrays(nullptr, nullptr), ESP_ERR_INVALID_ARG);
  EXPECT_EQ(heap_caps_alloc_all_task_stat_arrays(nullptr), ESP_ERR_INVALID_ARG);
  heap_caps_free_single_task_stat_arrays(nullptr);
  heap_caps_free_all_task_stat_arrays(nullptr);
  // Empty but valid.
  a = heap_all_tasks_stat_t{};
  EXPECT_EQ(heap_caps_get_all_task_stat(&a), ESP_OK);
  EXPECT_EQ(a.task_count, 0u);
}

TEST_F(TaskInfo, ReallocMovingBetweenHeaps) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  add_tracking_heaps();
  void *p = heap_caps_malloc(36, kA);        // A 40
  void *q = heap_caps_realloc(p, 1000, kB);  // moves: A 0, B 1004
  ASSERT_NE(q, nullptr);
  ASSERT_GE(reinterpret_cast<unsigned char *>(q), g_region_b);
  ASSERT_LT(reinterpret_cast<unsigned char *>(q), g_region_b + kRegion);
  void *r = heap_caps_realloc(q, 12, kB);  // in place or not: B 16
  ASSERT_NE(r, nullptr);
  const Snapshot s = all_stats();
  ASSERT_EQ(s.tasks.size(), 1u);
  EXPECT_EQ(s.tasks[0].overall_current_usage, 16u);
  EXPECT_EQ(s.tasks[0].overall_peak_usage, 1004u);  // the old block is released first
  ASSERT_EQ(s.heaps.size(), 2u);
  expect_heap(s.heaps[0], kCapsA, 0, 40, 0);
  expect_heap(s.heaps[1], kCapsB, 16, 1004, 1);
  ASSERT_EQ(s.blocks.size(), 1u);
  EXPECT_EQ(s.blocks[0].address, r);
  heap_caps_realloc(r, 0, kB);  // frees
  const Snapshot e = all_stats();
  EXPECT_EQ(e.tasks[0].overall_current_usage, 0u);
  expect_heap(e.heaps[1], kCapsB, 0, 1004, 0);
}

TEST_F(TaskInfo, FreeByAnotherTaskIsChargedToTheOwner) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  add_tracking_heaps();
  Task other("other");
  void *p = heap_caps_malloc(36, kA);
  void *q = heap_caps_calloc(2, 10, kB);  // 20 -> 24
  other.run([&] {
    heap_caps_free(p);
    heap_caps_free(q);
  });
  const Snapshot s = all_stats();
  ASSERT_EQ(s.tasks.size(), 1u);  // "other" never allocated
  EXPECT_EQ(s.tasks[0].handle, handle(me()));
  EXPECT_EQ(s.tasks[0].overall_current_usage, 0u);
  EXPECT_EQ(s.tasks[0].overall_peak_usage, 64u);
  expect_heap(s.heaps[0], kCapsA, 0, 40, 0);
  expect_heap(s.heaps[1], kCapsB, 0, 24, 0);
  heap_single_task_stat_t none{};
  EXPECT_EQ(heap_caps_get_single_task_stat(&none, handle(other.owner())), ESP_FAIL);
}

TEST_F(TaskInfo, EndedTasksAreDroppedByDefault) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  add_tracking_heaps();
  void *left = nullptr;
  std::uint32_t w = 0;
  {
    Task gone("gone");
    w = gone.owner();
    gone.run([&] { left = heap_caps_malloc(20, kA); });
  }  // the thread has ended
  EXPECT_FALSE(capheap_port_task_alive(w));
  void *mine = heap_caps_malloc(8, kA);
  Snapshot s = all_stats();
  ASSERT_EQ(s.tasks.size(), 1u);
  EXPECT_EQ(s.tasks[0].handle, handle(me()));
  heap_single_task_stat_t st{};
  EXPECT_EQ(heap_caps_get_single_task_stat(&st, handle(w)), ESP_FAIL);
  // Its block is still there and still names it (legacy snapshot).
  heap_task_block_t b[2] = {};
  heap_task_info_params_t params{};
  TaskHandle_t only[1] = {handle(w)};
  params.tasks = only;
  params.num_tasks = 1;
  params.blocks = b;
  params.max_blocks = 2;
  ASSERT_EQ(heap_caps_get_per_task_info(&params), 1u);
  EXPECT_EQ(b[0].address, left);
  heap_caps_free(left);  // no record: ignored
  s = all_stats();
  ASSERT_EQ(s.tasks.size(), 1u);
  EXPECT_EQ(s.tasks[0].overall_current_usage, 12u);
  heap_caps_free(mine);
}

TEST_F(TaskInfo, EndedTasksKeptWhenTrackingDeleted) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  add_tracking_heaps();
  capheap_task_stats_track_deleted(true);
  void *left = nullptr;
  std::uint32_t w = 0;
  {
    Task gone("gone");
    w = gone.owner();
    gone.run([&] { left = heap_caps_malloc(20, kA); });
  }
  void *mine = heap_caps_malloc(8, kA);
  Snapshot s = all_stats();
  ASSERT_EQ(s.tasks.size(), 2u);
  EXPECT_STREQ(s.tasks[0].name, "gone");
  EXPECT_EQ(s.tasks[0].handle, handle(w));
  EXPECT_FALSE(s.tasks[0].is_alive);
  EXPECT_EQ(s.tasks[0].overall_current_usage, 24u);
  EXPECT_TRUE(s.tasks[1].is_alive);
  heap_caps_free(left);  // charged to the ended task
  s = all_stats();
  ASSERT_EQ(s.tasks.size(), 2u);
  EXPECT_EQ(s.tasks[0].overall_current_usage, 0u);
  EXPECT_EQ(s.tasks[0].overall_peak_usage, 24u);
  expect_heap(s.tasks[0].heap_stat[0], kCapsA, 0, 24, 0);
  // Switching back drops it at the next query.
  capheap_task_stats_track_deleted(false);
  s = all_stats();
  ASSERT_EQ(s.tasks.size(), 1u);
  EXPECT_EQ(s.tasks[0].handle, handle(me()));
  heap_caps_free(mine);
}

TEST_F(TaskInfo, EnablingCountsWhatTheHeapsHold) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  add_tracking_heaps();
  capheap_task_stats_enable(false);
  EXPECT_FALSE(capheap_task_stats_enabled());
  void *a = heap_caps_malloc(36, kA);  // not seen as an event
  void *b = heap_caps_malloc(8, kB);   // 8 + 4 = 12 (the smallest block)
  capheap_task_stats_enable(true);
  EXPECT_TRUE(capheap_task_stats_enabled());
  Snapshot s = all_stats();
  ASSERT_EQ(s.tasks.size(), 1u);
  EXPECT_EQ(s.tasks[0].overall_current_usage, 52u);
  EXPECT_EQ(s.tasks[0].overall_peak_usage, 52u);
  ASSERT_EQ(s.heaps.size(), 2u);
  // Seeded in heap list order: B first.
  expect_heap(s.heaps[0], kCapsB, 12, 12, 1);
  expect_heap(s.heaps[1], kCapsA, 40, 40, 1);
  heap_caps_free(a);
  heap_caps_free(b);
  EXPECT_EQ(capheap_task_stats_overflow(), 0u);
}

// The statistics count a poisoned block as the legacy snapshot does (spec §1.5: 36 + 4), on
// allocation, on free and when enabling reads the heaps (they counted the poisoning's 12 bytes).
TEST_F(TaskInfo, StatisticsWithPoisoningCountTheAllocatedSizeWithTheOwnerWord) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  add_tracking_heaps(CAPHEAP_POISONING_LIGHT);
  void *a = heap_caps_malloc(36, kA);
  Snapshot s = all_stats();
  ASSERT_EQ(s.tasks.size(), 1u);
  EXPECT_EQ(s.tasks[0].overall_current_usage, 40u);
  EXPECT_EQ(s.tasks[0].overall_peak_usage, 40u);
  ASSERT_EQ(s.heaps.size(), 1u);
  expect_heap(s.heaps[0], kCapsA, 40, 40, 1);
  ASSERT_EQ(s.blocks.size(), 1u);
  EXPECT_EQ(s.blocks[0].address, a);
  EXPECT_EQ(s.blocks[0].size, 40u);
  void *b = heap_caps_realloc(a, 100, kA);  // 100 + 4
  ASSERT_NE(b, nullptr);
  s = all_stats();
  ASSERT_EQ(s.tasks.size(), 1u);
  EXPECT_EQ(s.tasks[0].overall_current_usage, 104u);
  EXPECT_EQ(s.tasks[0].overall_peak_usage, 104u);
  capheap_task_stats_enable(true);  // restart from the heaps' contents
  s = all_stats();
  ASSERT_EQ(s.tasks.size(), 1u);
  EXPECT_EQ(s.tasks[0].overall_current_usage, 104u);
  heap_caps_free(b);
  s = all_stats();
  ASSERT_EQ(s.tasks.size(), 1u);
  EXPECT_EQ(s.tasks[0].overall_current_usage, 0u);
  EXPECT_EQ(s.tasks[0].overall_peak_usage, 104u);
  EXPECT_EQ(capheap_task_stats_overflow(), 0u);
}

// heap_caps_realloc_base(p, 0) frees p: the statistics release it (they kept counting it).
TEST_F(TaskInfo, ReallocBaseToSizeZeroReleasesTheBlock) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  add_tracking_heaps();
  void *p = heap_caps_malloc(36, kA);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(heap_caps_realloc_base(p, 0, kA), nullptr);
  const Snapshot s = all_stats();
  ASSERT_EQ(s.tasks.size(), 1u);
  EXPECT_EQ(s.tasks[0].overall_current_usage, 0u);
  EXPECT_EQ(s.tasks[0].overall_peak_usage, 40u);
  ASSERT_EQ(s.heaps.size(), 1u);
  expect_heap(s.heaps[0], kCapsA, 0, 40, 0);
}

TEST_F(TaskInfo, ArrayHelpers) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  add_tracking_heaps();
  Task worker("worker");
  void *m1 = heap_caps_malloc(36, kA);
  void *m2 = heap_caps_malloc(36, kB);
  void *m3 = heap_caps_malloc(36, kB);
  void *w1 = nullptr;
  worker.run([&] { w1 = heap_caps_malloc(20, kA); });

  heap_all_tasks_stat_t all{};
  ASSERT_EQ(heap_caps_alloc_all_task_stat_arrays(&all), ESP_OK);
  EXPECT_EQ(all.task_count, 2u);
  EXPECT_EQ(all.heap_count, 3u);
  EXPECT_EQ(all.alloc_count, 4u);
  ASSERT_NE(all.stat_arr, nullptr);
  ASSERT_NE(all.heap_stat_start, nullptr);
  ASSERT_NE(all.alloc_stat_start, nullptr);
  ASSERT_EQ(heap_caps_get_all_task_stat(&all), ESP_OK);
  EXPECT_EQ(all.task_count, 2u);
  EXPECT_EQ(all.heap_count, 3u);
  EXPECT_EQ(all.alloc_count, 4u);  // the arrays themselves are not counted
  EXPECT_EQ(all.stat_arr[1].heap_stat[1].alloc_stat[0].address, m2);
  EXPECT_EQ(all.stat_arr[1].heap_stat[1].alloc_stat[1].address, m3);
  heap_caps_free_all_task_stat_arrays(&all);
  EXPECT_EQ(all.stat_arr, nullptr);
  EXPECT_EQ(all.heap_stat_start, nullptr);
  EXPECT_EQ(all.alloc_stat_start, nullptr);
  EXPECT_EQ(all.task_count + all.heap_count + all.alloc_count, 0u);

  heap_single_task_stat_t one{};
  ASSERT_EQ(heap_caps_alloc_single_task_stat_arrays(&one, nullptr), ESP_OK);
  EXPECT_EQ(one.heap_count, 2u);
  EXPECT_EQ(one.alloc_count, 3u);
  ASSERT_EQ(heap_caps_get_single_task_stat(&one, nullptr), ESP_OK);
  EXPECT_EQ(one.heap_count, 2u);
  EXPECT_EQ(one.alloc_count, 3u);
  EXPECT_EQ(one.alloc_stat_start[0].address, m1);
  heap_caps_free_single_task_stat_arrays(&one);
  EXPECT_EQ(one.heap_stat_start, nullptr);
  EXPECT_EQ(one.alloc_stat_start, nullptr);
  EXPECT_EQ(one.heap_count + one.alloc_count, 0u);

  // A task without statistics: nothing to allocate.
  Task idle("idle");
  heap_single_task_stat_t empty{};
  ASSERT_EQ(heap_caps_alloc_single_task_stat_arrays(&empty, handle(idle.owner())), ESP_OK);
  EXPECT_EQ(empty.heap_stat_start, nullptr);
  EXPECT_EQ(empty.heap_count, 0u);

  // ESP_FAIL: no DEFAULT memory left for the arrays.
  std::vector<void *> fill;
  for (size_t big; (big = heap_caps_get_largest_free_block(MALLOC_CAP_DEFAULT)) > 0;) {
    void *f = heap_caps_malloc(big, MALLOC_CAP_DEFAULT);
    if (f == nullptr) break;
    fill.push_back(f);
  }
  ASSERT_EQ(heap_caps_get_largest_free_block(MALLOC_CAP_DEFAULT), 0u);
  heap_all_tasks_stat_t fail{};
  EXPECT_EQ(heap_caps_alloc_all_task_stat_arrays(&fail), ESP_FAIL);
  EXPECT_EQ(fail.stat_arr, nullptr);
  EXPECT_EQ(fail.heap_stat_start, nullptr);
  EXPECT_EQ(fail.alloc_stat_start, nullptr);
  EXPECT_EQ(fail.task_count + fail.heap_count + fail.alloc_count, 0u);
  heap_single_task_stat_t fail1{};
  EXPECT_EQ(heap_caps_alloc_single_task_stat_arrays(&fail1, nullptr), ESP_FAIL);
  EXPECT_EQ(fail1.heap_stat_start, nullptr);
  EXPECT_EQ(fail1.alloc_stat_start, nullptr);
  EXPECT_EQ(fail1.heap_count + fail1.alloc_count, 0u);
  for (void *f : fill)
    heap_caps_free(f);

  heap_caps_free(m1);
  heap_caps_free(m2);
  heap_caps_free(m3);
  worker.run([&] { heap_caps_free(w1); });
}

std::string print_to_string(const std::function<void(FILE *)> &f) {
  FILE *tmp = std::tmpfile();
  f(tmp);
  std::fflush(tmp);
  std::rewind(tmp);
  std::string out;
  char buf[256];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, tmp)) > 0)
    out.append(buf, n);
  std::fclose(tmp);
  return out;
}

std::string format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

unsigned long chip(const void *p) {
  return static_cast<unsigned long>(capheap::capi::display_address(p) & 0xFFFFFFFFu);
}

TEST_F(TaskInfo, PrintFormats) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  add_tracking_heaps();
  Task worker("worker");
  const std::uint32_t w = worker.owner();
  void *m = heap_caps_malloc(36, kA);
  void *x = nullptr;
  worker.run([&] { x = heap_caps_malloc(100, kB); });
  const unsigned long caps_a = kCapsA, caps_b = kCapsB;
  const std::string worker_block = format(
      "TASK %-16s (0x%08lx) ALIVE: current 104 peak 104 heaps 1\n"
      "  HEAP %-16s caps 0x%08lx size 16384: current 104 peak 104 allocs 1\n"
      "    ALLOC 0x%08lx size 104\n",
      "worker", static_cast<unsigned long>(w), "runtime", caps_b, chip(x));
  const std::string my_block = format(
      "TASK %-16s (0x%08lx) ALIVE: current 40 peak 40 heaps 1\n"
      "  HEAP %-16s caps 0x%08lx size 16384: current 40 peak 40 allocs 1\n"
      "    ALLOC 0x%08lx size 40\n",
      "tester", static_cast<unsigned long>(me()), "runtime", caps_a, chip(m));
  EXPECT_EQ(print_to_string([](FILE *f) { heap_caps_print_all_task_stat(f); }),
            worker_block + my_block);
  EXPECT_EQ(print_to_string([&](FILE *f) { heap_caps_print_single_task_stat(f, handle(w)); }),
            worker_block);
  const std::string header = "TASK             HANDLE     STATUS     CURRENT       PEAK  HEAPS\n";
  const std::string row_w = format("%-16s 0x%08lx %-7s %10d %10d %6d\n", "worker",
                                   static_cast<unsigned long>(w), "ALIVE", 104, 104, 1);
  const std::string row_m = format("%-16s 0x%08lx %-7s %10d %10d %6d\n", "tester",
                                   static_cast<unsigned long>(me()), "ALIVE", 40, 40, 1);
  EXPECT_EQ(print_to_string([](FILE *f) { heap_caps_print_all_task_stat_overview(f); }),
            header + row_w + row_m);
  EXPECT_EQ(print_to_string([](FILE *f) { heap_caps_print_single_task_stat_overview(f, nullptr); }),
            header + row_m);
  // Unknown task: nothing.
  EXPECT_EQ(print_to_string([](FILE *f) { heap_caps_print_single_task_stat(f, handle(99999)); }),
            "");
  // NULL stream: stdout.
  testing::internal::CaptureStdout();
  heap_caps_print_single_task_stat_overview(nullptr, nullptr);
  EXPECT_EQ(testing::internal::GetCapturedStdout(), header + row_m);
  heap_caps_free(m);
  worker.run([&] { heap_caps_free(x); });
}

// Several tasks allocate and free concurrently while another thread reads the statistics; each
// task's figures depend only on its own sequence, so they are exact at the end. (TSan: make tsan.)
TEST_F(TaskInfo, ThreadedUpdatesAndQueries) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  add_tracking_heaps();
  constexpr int kThreads = 4, kRounds = 50, kLive = 8;
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    std::vector<task_stat_t> ts(8);
    std::vector<heap_stat_t> hs(16);
    std::vector<heap_task_block_t> bs(128);
    while (!stop.load()) {
      heap_all_tasks_stat_t st{ts.size(), ts.data(), hs.size(), hs.data(), bs.size(), bs.data()};
      EXPECT_EQ(heap_caps_get_all_task_stat(&st), ESP_OK);
      heap_task_totals_t totals[8];
      size_t n = 0;
      heap_task_info_params_t p{};
      p.totals = totals;
      p.num_totals = &n;
      p.max_totals = 8;
      heap_caps_get_per_task_info(&p);
    }
  });
  std::vector<std::unique_ptr<Task>> tasks;
  std::vector<std::uint32_t> owners;
  for (int t = 0; t < kThreads; ++t) {
    tasks.push_back(std::make_unique<Task>(("t" + std::to_string(t)).c_str()));
    owners.push_back(tasks.back()->owner());
  }
  std::vector<std::thread> runners;
  for (int t = 0; t < kThreads; ++t)
    runners.emplace_back([&, t] {
      tasks[static_cast<std::size_t>(t)]->run([&] {
        void *live[kLive];
        for (int r = 0; r < kRounds; ++r) {
          for (int i = 0; i < kLive; ++i)
            live[i] = heap_caps_malloc(36, (i & 1) != 0 ? kB : kA);
          for (int i = 0; i < kLive; ++i)
            heap_caps_free(live[i]);
        }
      });
    });
  for (std::thread &r : runners)
    r.join();
  stop.store(true);
  reader.join();
  const Snapshot s = all_stats();
  ASSERT_EQ(s.tasks.size(), static_cast<std::size_t>(kThreads));
  for (int k = 0; k < kThreads; ++k) {
    const task_stat_t &t = s.tasks[static_cast<std::size_t>(k)];
    EXPECT_EQ(t.handle, handle(owners[static_cast<std::size_t>(kThreads - 1 - k)]));
    EXPECT_EQ(t.overall_current_usage, 0u);
    EXPECT_EQ(t.overall_peak_usage, 320u);
    ASSERT_EQ(t.heap_count, 2u);
    expect_heap(t.heap_stat[0], kCapsA, 0, 160, 0);
    expect_heap(t.heap_stat[1], kCapsB, 0, 160, 0);
  }
  EXPECT_EQ(capheap_task_stats_overflow(), 0u);
}

}  // namespace
