// recorder_test.cpp — the event recorder (include/capheap_recorder.h) and CAPHEAP_TRACE_FILE:
// error codes, the exact line format, and a recorded host run that parses with the trace parser
// (src/sim/trace.hpp) and replays — on heap_caps with the recorder on, and with
// capheap_trace_replay — to the same sequence of (operation, size, caps).

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <regex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "capheap.h"
#include "capheap_host.h"
#include "capi/recorder_internal.hpp"
#include "capheap_port.h"
#include "capheap_recorder.h"
#include "esp_heap_caps.h"
#include "port/port.h"
#include "sim/trace.hpp"

namespace capheap::sim {
namespace {

constexpr std::uint32_t kInt = MALLOC_CAP_INTERNAL | MALLOC_CAP_8BIT;
using Step = std::tuple<OpKind, std::size_t, std::uint32_t>;

std::string g_lines;
void to_string(const char *line, std::size_t len, void *user) {
  static_cast<std::string *>(user)->append(line, len);
}

void reinit() {
  capheap_host_deinit();
  ASSERT_EQ(capheap_host_init("esp32", nullptr), ESP_OK);
}

/// The workload: every kind of call, a realloc that moves and one that stays, a free of NULL.
void workload() {
  void *a = heap_caps_malloc(100, MALLOC_CAP_DEFAULT);
  void *z = heap_caps_calloc(4, 25, kInt);
  void *m = heap_caps_aligned_alloc(64, 200, MALLOC_CAP_DMA);
  void *blocker = heap_caps_malloc(8, MALLOC_CAP_DEFAULT);
  void *r = heap_caps_realloc(a, 3000, MALLOC_CAP_DEFAULT);  // moves past the blocker
  r = heap_caps_realloc(r, 1000, MALLOC_CAP_DEFAULT);        // shrinks in place
  void *d = heap_caps_malloc_default(40);
  void *n = heap_caps_realloc(nullptr, 16, kInt);
  heap_caps_free(nullptr);
  heap_caps_free(z);
  heap_caps_free(m);
  heap_caps_free(blocker);
  heap_caps_free(r);
  heap_caps_free(d);
  heap_caps_free(n);
}

const std::vector<Step> kExpected = {
    {OpKind::kMalloc, 100, MALLOC_CAP_DEFAULT},
    {OpKind::kCalloc, 100, kInt},
    {OpKind::kAlignedAlloc, 200, MALLOC_CAP_DMA},
    {OpKind::kMalloc, 8, MALLOC_CAP_DEFAULT},
    {OpKind::kRealloc, 3000, MALLOC_CAP_DEFAULT},
    {OpKind::kRealloc, 1000, MALLOC_CAP_DEFAULT},
    {OpKind::kMalloc, 40, MALLOC_CAP_DEFAULT | MALLOC_CAP_INTERNAL},
    {OpKind::kRealloc, 16, kInt},
    {OpKind::kFree, 0, MALLOC_CAP_DEFAULT},
    {OpKind::kFree, 0, MALLOC_CAP_DEFAULT},
    {OpKind::kFree, 0, MALLOC_CAP_DEFAULT},
    {OpKind::kFree, 0, MALLOC_CAP_DEFAULT},
    {OpKind::kFree, 0, MALLOC_CAP_DEFAULT},
    {OpKind::kFree, 0, MALLOC_CAP_DEFAULT},
};

std::vector<Step> steps_of(const Trace &t) {
  std::vector<Step> out;
  for (const Op &op : t.ops)
    out.emplace_back(op.kind, requested_bytes(op), op.caps);
  return out;
}

/// Replays a trace through heap_caps_* (caps included), as the recorder saw it.
void replay_on_heap_caps(const Trace &t) {
  std::vector<void *> slots(t.slot_count(), nullptr);
  for (const Op &op : t.ops) {
    void *&s = slots[op.slot];
    switch (op.kind) {
      case OpKind::kMalloc:
        s = heap_caps_malloc(op.size, op.caps);
        break;
      case OpKind::kCalloc:
        s = heap_caps_calloc(op.count, op.size, op.caps);
        break;
      case OpKind::kAlignedAlloc:
        s = heap_caps_aligned_alloc(op.align, op.size, op.caps);
        break;
      case OpKind::kRealloc: {
        void *p = heap_caps_realloc(s, op.size, op.caps);
        s = nullptr;
        slots[op.to_slot != kNoSlot ? op.to_slot : op.slot] = p;
        break;
      }
      case OpKind::kFree:
        heap_caps_free(s);
        s = nullptr;
        break;
    }
  }
}

TEST(Recorder, ErrorCodes) {
  std::string lines;
  EXPECT_EQ(capheap_recorder_install(nullptr, nullptr), ESP_ERR_INVALID_ARG);
  EXPECT_EQ(capheap_recorder_uninstall(), ESP_ERR_INVALID_STATE);
  EXPECT_FALSE(capheap_recorder_active());
  EXPECT_EQ(capheap_recorder_install(to_string, &lines), ESP_OK);
  EXPECT_TRUE(capheap_recorder_active());
  EXPECT_EQ(capheap_recorder_install(to_string, &lines), ESP_ERR_INVALID_STATE);
  EXPECT_EQ(capheap_recorder_uninstall(), ESP_OK);
  EXPECT_EQ(capheap_recorder_uninstall(), ESP_ERR_INVALID_STATE);
}

TEST(Recorder, LinesHaveTheDocumentedFields) {
  reinit();
  std::string lines;
  ASSERT_EQ(capheap_recorder_install(to_string, &lines), ESP_OK);
  void *p = heap_caps_malloc(100, MALLOC_CAP_DEFAULT);
  heap_caps_free(p);
  ASSERT_EQ(capheap_recorder_uninstall(), ESP_OK);
  char id[32];
  std::snprintf(id, sizeof id, "0x%llx", static_cast<unsigned long long>(capheap_host_to_chip(p)));
  const std::regex line_a(std::string("a ") + id +
                          " 100 caps=0x1000 t=[0-9]+ task=0x[0-9a-f]+ site=0x[0-9a-f]+ seq=0\n");
  const std::regex line_f(std::string("f ") + id +
                          " t=[0-9]+ task=0x[0-9a-f]+ site=0x[0-9a-f]+ seq=1\n");
  const std::size_t nl = lines.find('\n');
  ASSERT_NE(nl, std::string::npos);
  EXPECT_TRUE(std::regex_match(lines.substr(0, nl + 1), line_a)) << lines;
  EXPECT_TRUE(std::regex_match(lines.substr(nl + 1), line_f)) << lines;
}

TEST(Recorder, RecordedHostRunReplaysToTheSameSequence) {
  const std::string path = ::testing::TempDir() + "capheap_recorder_test.trace";
  ASSERT_EQ(setenv("CAPHEAP_TRACE_FILE", path.c_str(), 1), 0);
  reinit();
  ASSERT_TRUE(capheap_recorder_active());
  workload();
  capheap_host_deinit();  // completes the file
  unsetenv("CAPHEAP_TRACE_FILE");
  EXPECT_FALSE(capheap_recorder_active());

  const ParseResult rec = load_trace_file(path);
  ASSERT_TRUE(rec.ok()) << rec.error;
  ASSERT_NE(rec.trace.find_metadata("chip"), nullptr);
  EXPECT_EQ(*rec.trace.find_metadata("chip"), "esp32");
  EXPECT_EQ(steps_of(rec.trace), kExpected);
  EXPECT_NE(rec.trace.ops[4].to_slot, kNoSlot);  // the moving realloc
  EXPECT_EQ(rec.trace.ops[5].to_slot, kNoSlot);  // in place
  for (std::size_t i = 0; i < rec.trace.ops.size(); ++i) {
    EXPECT_TRUE(rec.trace.ops[i].has_seq);
    EXPECT_EQ(rec.trace.ops[i].seq, i);
  }
  EXPECT_EQ(compute_stats(rec.trace).final_live_blocks, 0u);

  // Replaying the recording on heap_caps records the same sequence again.
  reinit();
  std::string lines = CAPHEAP_RECORDER_HEADER;
  ASSERT_EQ(capheap_recorder_install(to_string, &lines), ESP_OK);
  replay_on_heap_caps(rec.trace);
  ASSERT_EQ(capheap_recorder_uninstall(), ESP_OK);
  const ParseResult again = parse_trace(lines, "replayed");
  ASSERT_TRUE(again.ok()) << again.error;
  EXPECT_EQ(steps_of(again.trace), kExpected);

#ifdef CAPHEAP_TRACE_REPLAY_BIN
  // The benchmark's replay tool reads and replays the recording without a failure.
  const std::string cmd = std::string(CAPHEAP_TRACE_REPLAY_BIN) + " " + path + " > /dev/null";
  const int status = std::system(cmd.c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << cmd;
#endif
}

/// The lines of `text` (without their '\n').
std::vector<std::string> split_lines(const std::string &text) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at < text.size()) {
    const std::size_t nl = text.find('\n', at);
    out.push_back(text.substr(at, nl - at));
    at = nl + 1;
  }
  return out;
}

/// The value of ` key=` in a line (empty if absent).
std::string field(const std::string &line, const std::string &key) {
  const std::size_t at = line.find(" " + key + "=");
  if (at == std::string::npos) return "";
  const std::size_t from = at + key.size() + 2;
  return line.substr(from, line.find(' ', from) - from);
}

std::string hex(std::uintptr_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

/// A caller-provided ring of `events` records.
struct Ring {
  explicit Ring(std::size_t events) : mem(events * CAPHEAP_RECORDER_EVENT_SIZE / 8) {}
  std::vector<std::uint64_t> mem;
  capheap_recorder_config_t config(std::string *out, std::uint32_t flags = 0) {
    return capheap_recorder_config_t{to_string, out, mem.data(), mem.size() * 8, flags};
  }
};

TEST(Recorder, InstallConfigErrors) {
  std::string lines;
  Ring ring(4);
  capheap_recorder_config_t c = ring.config(&lines);
  EXPECT_EQ(capheap_recorder_install_config(nullptr), ESP_ERR_INVALID_ARG);
  c.callback = nullptr;
  EXPECT_EQ(capheap_recorder_install_config(&c), ESP_ERR_INVALID_ARG);
  c = ring.config(&lines);
  c.buffer_size = 2 * CAPHEAP_RECORDER_EVENT_SIZE - 1;  // one record
  EXPECT_EQ(capheap_recorder_install_config(&c), ESP_ERR_INVALID_ARG);
  c = ring.config(&lines);
  c.buffer = reinterpret_cast<char *>(ring.mem.data()) + 4;  // misaligned
  EXPECT_EQ(capheap_recorder_install_config(&c), ESP_ERR_INVALID_ARG);
  EXPECT_FALSE(capheap_recorder_active());
  capheap_recorder_stats_t st;
  EXPECT_EQ(capheap_recorder_get_stats(&st), ESP_ERR_INVALID_STATE);
  EXPECT_EQ(capheap_recorder_get_stats(nullptr), ESP_ERR_INVALID_ARG);
  EXPECT_EQ(capheap_recorder_flush(), 0u);

  // 3 records' worth of memory: the ring uses 2.
  c = ring.config(&lines);
  c.buffer_size = 3 * CAPHEAP_RECORDER_EVENT_SIZE + 7;
  ASSERT_EQ(capheap_recorder_install_config(&c), ESP_OK);
  ASSERT_EQ(capheap_recorder_get_stats(&st), ESP_OK);
  EXPECT_EQ(st.capacity, 2u);
  EXPECT_EQ(st.recorded, 0u);
  EXPECT_EQ(capheap_recorder_install_config(&c), ESP_ERR_INVALID_STATE);
  EXPECT_EQ(capheap_recorder_uninstall(), ESP_OK);

  // The built-in ring.
  ASSERT_EQ(capheap_recorder_install(to_string, &lines), ESP_OK);
  ASSERT_EQ(capheap_recorder_get_stats(&st), ESP_OK);
  EXPECT_EQ(st.capacity, 16384u);
  EXPECT_EQ(capheap_recorder_uninstall(), ESP_OK);
  EXPECT_EQ(lines, "");
}

TEST(Recorder, FlushWhenEmptyDeliversNothing) {
  reinit();
  std::string lines;
  Ring ring(8);
  capheap_recorder_config_t c = ring.config(&lines);
  ASSERT_EQ(capheap_recorder_install_config(&c), ESP_OK);
  EXPECT_EQ(capheap_recorder_flush(), 0u);
  EXPECT_EQ(capheap_recorder_drain(5), 0u);
  EXPECT_EQ(lines, "");
  heap_caps_free(heap_caps_malloc(10, MALLOC_CAP_DEFAULT));
  EXPECT_EQ(lines, "");  // nothing is formatted on the allocation path
  EXPECT_EQ(capheap_recorder_drain(0), 0u);
  EXPECT_EQ(capheap_recorder_drain(1), 1u);
  EXPECT_EQ(split_lines(lines).size(), 1u);
  EXPECT_EQ(capheap_recorder_flush(), 1u);
  EXPECT_EQ(capheap_recorder_flush(), 0u);
  capheap_recorder_stats_t st;
  ASSERT_EQ(capheap_recorder_get_stats(&st), ESP_OK);
  EXPECT_EQ(st.recorded, 2u);
  EXPECT_EQ(st.delivered, 2u);
  EXPECT_EQ(st.dropped, 0u);
  EXPECT_EQ(capheap_recorder_uninstall(), ESP_OK);
  EXPECT_EQ(split_lines(lines).size(), 2u);
}

// The recorder stores host pointers and maps them to chip addresses when it formats a line: events
// still pending when the simulator goes away (or is set up again) are delivered first, under the
// mapping they were recorded with; events after a new init use the new one.
TEST(Recorder, PendingEventsKeepTheChipAddressesOfTheirSimulator) {
  capheap_host_deinit();
  capheap_host_config_t cfg = CAPHEAP_HOST_CONFIG_DEFAULT;
  cfg.chip_addresses = false;  // regions elsewhere: lines need the mapping
  cfg.psram_size = 1u << 20;
  ASSERT_EQ(capheap_host_init("esp32", &cfg), ESP_OK);
  std::string lines;
  Ring ring(16);
  capheap_recorder_config_t c = ring.config(&lines);
  ASSERT_EQ(capheap_recorder_install_config(&c), ESP_OK);
  void *p = heap_caps_malloc(100, MALLOC_CAP_DEFAULT);
  ASSERT_NE(p, nullptr);
  const std::string chip_p = hex(capheap_host_to_chip(p));
  ASSERT_NE(chip_p, hex(reinterpret_cast<std::uintptr_t>(p)));  // the host pointer differs
  heap_caps_free(p);
  EXPECT_TRUE(lines.empty());  // nothing drained yet
  capheap_host_deinit();
  std::vector<std::string> got = split_lines(lines);
  ASSERT_EQ(got.size(), 2u) << lines;
  EXPECT_EQ(got[0].substr(0, 2 + chip_p.size() + 4), "a " + chip_p + " 100") << got[0];
  EXPECT_EQ(got[1].substr(0, 2 + chip_p.size()), "f " + chip_p) << got[1];
  ASSERT_EQ(capheap_host_init("esp32s3", &cfg), ESP_OK);
  void *q = heap_caps_malloc(24, MALLOC_CAP_SPIRAM);
  ASSERT_NE(q, nullptr);
  const std::string chip_q = hex(capheap_host_to_chip(q));
  heap_caps_free(q);
  ASSERT_EQ(capheap_recorder_uninstall(), ESP_OK);
  got = split_lines(lines);
  ASSERT_EQ(got.size(), 4u) << lines;
  EXPECT_EQ(got[2].substr(0, 2 + chip_q.size() + 3), "a " + chip_q + " 24") << got[2];
  EXPECT_EQ(got[3].substr(0, 2 + chip_q.size()), "f " + chip_q) << got[3];
  reinit();
}

TEST(Recorder, ExactLinesInSeqOrder) {
  reinit();
  std::string lines;
  Ring ring(16);
  capheap_recorder_config_t c = ring.config(&lines);
  ASSERT_EQ(capheap_recorder_install_config(&c), ESP_OK);
  void *a = heap_caps_malloc(100, MALLOC_CAP_DEFAULT);
  void *z = heap_caps_calloc(3, 20, kInt);
  void *m = heap_caps_aligned_alloc(64, 200, MALLOC_CAP_DMA);
  void *blocker = heap_caps_malloc(8, MALLOC_CAP_DEFAULT);
  void *r = heap_caps_realloc(a, 3000, MALLOC_CAP_DEFAULT);
  ASSERT_NE(r, a);
  heap_caps_free(r);
  heap_caps_free(blocker);
  heap_caps_free(m);
  heap_caps_free(z);
  ASSERT_EQ(capheap_recorder_uninstall(), ESP_OK);  // delivers everything
  const std::vector<std::string> got = split_lines(lines);
  ASSERT_EQ(got.size(), 9u) << lines;
  const std::string task = hex(capheap_port_task_owner());
  const auto chip = [](void *p) { return hex(capheap_host_to_chip(p)); };
  const std::vector<std::string> want = {
      "a " + chip(a) + " 100 caps=0x1000",
      "z " + chip(z) + " 1 60 caps=0x804",
      "m " + chip(m) + " 64 200 caps=0x8",
      "a " + chip(blocker) + " 8 caps=0x1000",
      "r " + chip(a) + " 3000 caps=0x1000",
      "f " + chip(r),
      "f " + chip(blocker),
      "f " + chip(m),
      "f " + chip(z),
  };
  std::uint64_t last_t = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const std::string &line = got[i];
    const std::string t = field(line, "t");
    const std::string expect_tail = " t=" + t + " task=" + task + " site=" + field(line, "site") +
                                    " seq=" + std::to_string(i) +
                                    (i == 4 ? " to=" + chip(r) : std::string());
    EXPECT_EQ(line, want[i] + expect_tail);
    ASSERT_FALSE(t.empty());
    const std::uint64_t tv = std::stoull(t);
    EXPECT_GE(tv, last_t) << line;  // one thread: time does not go back
    last_t = tv;
    EXPECT_EQ(field(line, "site").rfind("0x", 0), 0u);
  }
}

TEST(Recorder, TimestampsAreMonotonicNanoseconds) {
  const std::uint64_t before = capheap_port_time_ns();
  const std::uint64_t stamp = capheap_port_timestamp();
  const std::uint64_t after = capheap_port_time_ns();
  const std::uint64_t ns = capheap_port_timestamp_ns(stamp);
  // Calibrated against CLOCK_MONOTONIC: within 1 ms of the bracketing readings.
  EXPECT_GE(ns + 1000000, before);
  EXPECT_LE(ns, after + 1000000);
}

TEST(Recorder, OverflowDropsNewestAndReportsThem) {
  reinit();
  std::string lines;
  Ring ring(4);
  capheap_recorder_config_t c = ring.config(&lines);
  ASSERT_EQ(capheap_recorder_install_config(&c), ESP_OK);
  void *p[5];
  for (int i = 0; i < 5; ++i)
    p[i] = heap_caps_malloc(static_cast<std::size_t>(10 + i), MALLOC_CAP_DEFAULT);
  for (int i = 0; i < 5; ++i)
    heap_caps_free(p[i]);  // 10 events, 4 records: 6 dropped
  capheap_recorder_stats_t st;
  ASSERT_EQ(capheap_recorder_get_stats(&st), ESP_OK);
  EXPECT_EQ(st.recorded, 4u);
  EXPECT_EQ(st.dropped, 6u);
  EXPECT_EQ(st.delivered, 0u);
  EXPECT_EQ(capheap_recorder_flush(), 4u);
  void *q = heap_caps_malloc(77, MALLOC_CAP_DEFAULT);  // room again: seq continues at 4
  heap_caps_free(q);
  ASSERT_EQ(capheap_recorder_get_stats(&st), ESP_OK);
  EXPECT_EQ(st.recorded, 6u);
  EXPECT_EQ(st.dropped, 6u);
  EXPECT_EQ(st.delivered, 4u);
  ASSERT_EQ(capheap_recorder_uninstall(), ESP_OK);
  const std::vector<std::string> got = split_lines(lines);
  ASSERT_EQ(got.size(), 7u) << lines;
  for (int i = 0; i < 4; ++i) {  // the oldest four are kept
    EXPECT_EQ(got[static_cast<std::size_t>(i)].substr(0, 2), "a ");
    EXPECT_EQ(field(got[static_cast<std::size_t>(i)], "seq"), std::to_string(i));
  }
  EXPECT_EQ(got[4], "# recorder: dropped 6 events (ring full)");
  EXPECT_EQ(got[5].substr(0, 2 + hex(capheap_host_to_chip(q)).size() + 3),
            "a " + hex(capheap_host_to_chip(q)) + " 77");
  EXPECT_EQ(field(got[5], "seq"), "4");
  EXPECT_EQ(field(got[6], "seq"), "5");
}

TEST(Recorder, FlushWhenFullLosesNothing) {
  reinit();
  std::string lines;
  Ring ring(2);
  capheap_recorder_config_t c = ring.config(&lines, CAPHEAP_RECORDER_FLUSH_WHEN_FULL);
  ASSERT_EQ(capheap_recorder_install_config(&c), ESP_OK);
  for (int i = 0; i < 10; ++i)
    heap_caps_free(heap_caps_malloc(16, MALLOC_CAP_DEFAULT));
  capheap_recorder_stats_t st;
  ASSERT_EQ(capheap_recorder_get_stats(&st), ESP_OK);
  EXPECT_EQ(st.recorded, 20u);
  EXPECT_EQ(st.dropped, 0u);
  EXPECT_EQ(st.delivered, 18u);  // drained by the allocations that found the ring full
  ASSERT_EQ(capheap_recorder_uninstall(), ESP_OK);
  const std::vector<std::string> got = split_lines(lines);
  ASSERT_EQ(got.size(), 20u);
  for (std::size_t i = 0; i < got.size(); ++i)
    EXPECT_EQ(field(got[i], "seq"), std::to_string(i));
}

/// Runs body in a child process (fork: a process of its own, single-threaded unless the parent
/// had threads) and expects it to return 0; its other return values number the check that failed,
/// except 3: "the process is not single-threaded", which skips the test (the gtest process may
/// already have threads; ctest runs each test in a process of its own).
void run_in_child(int (*body)()) {
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) _exit(body());
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 3) GTEST_SKIP() << "the process is not single-threaded here";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "check number " << WEXITSTATUS(status) << " failed";
}

/// The single-threaded fast path writes the lines the general path would: every field of a long
/// run of mallocs (single-bit, two-bit and 32BIT requests) and frees, with a small ring that the
/// allocating thread drains again and again (CAPHEAP_RECORDER_FLUSH_WHEN_FULL: the fast path's
/// window ends at the ring's end and where the ring is full). 0 when it holds.
int fast_path_lines() {
  if (!capheap_port_single_threaded()) return 3;
  reinit();
  std::string lines;
  Ring ring(64);
  capheap_recorder_config_t c = ring.config(&lines, CAPHEAP_RECORDER_FLUSH_WHEN_FULL);
  if (capheap_recorder_install_config(&c) != ESP_OK) return 4;
  // Builds with a sanitizer start no ticker and read the clock per event on the general path: let
  // them take the fast path too (their t= then stays at the install's value).
  __atomic_store_n(&capheap_port_coarse_direct, 0, __ATOMIC_RELAXED);
  const std::uint32_t caps_list[] = {MALLOC_CAP_DEFAULT, MALLOC_CAP_DMA, MALLOC_CAP_32BIT, kInt,
                                     MALLOC_CAP_INTERNAL};
  std::vector<std::string> want;
  std::deque<void *> live;
  const auto free_oldest = [&] {
    want.push_back("f " + hex(capheap_host_to_chip(live.front())) + " t=");
    heap_caps_free(live.front());
    live.pop_front();
  };
  for (std::size_t i = 0; i < 300; ++i) {
    const std::uint32_t caps = caps_list[i % 5];
    const std::size_t size = 8 + i;
    void *p = heap_caps_malloc(size, caps);
    if (p == nullptr) return 5;
    want.push_back("a " + hex(capheap_host_to_chip(p)) + " " + std::to_string(size) +
                   " caps=" + hex(caps) + " t=");
    live.push_back(p);
    if (i % 3 == 2) free_oldest();
  }
  while (!live.empty())
    free_oldest();
  if (capheap_recorder_uninstall() != ESP_OK) return 6;
  const std::vector<std::string> got = split_lines(lines);
  if (got.size() != want.size()) return 7;
  const std::string task = hex(capheap_port_task_owner());
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (got[i].compare(0, want[i].size(), want[i]) != 0) return 8;
    if (field(got[i], "seq") != std::to_string(i)) return 9;
    if (field(got[i], "task") != task || field(got[i], "site").empty()) return 10;
  }
  return 0;
}

TEST(Recorder, FastPathLinesMatchEveryFieldThroughRingWraps) {
  run_in_child(fast_path_lines);
}

/// Steady recording with regular drains keeps the fast path: a small ring drained after every 32
/// events takes the general path about once per trip around the ring (the fast path's window ends
/// at the ring's end), not for every event. 0 when it holds.
int steady_fast_path() {
  if (!capheap_port_single_threaded()) return 3;
  reinit();
  std::string lines;
  Ring ring(64);
  capheap_recorder_config_t c = ring.config(&lines);
  if (capheap_recorder_install_config(&c) != ESP_OK) return 4;
  __atomic_store_n(&capheap_port_coarse_direct, 0, __ATOMIC_RELAXED);  // (see fast_path_lines)
  const std::uint64_t before = capheap::capi::recorder_general_events();
  for (int round = 0; round < 50; ++round) {
    for (int i = 0; i < 16; ++i)
      heap_caps_free(heap_caps_malloc(32, MALLOC_CAP_DEFAULT));
    if (capheap_recorder_flush() != 32) return 5;
  }
  const std::uint64_t general = capheap::capi::recorder_general_events() - before;
  capheap_recorder_stats_t st;
  if (capheap_recorder_get_stats(&st) != ESP_OK || st.dropped != 0 || st.recorded != 1600) return 6;
  if (capheap_recorder_uninstall() != ESP_OK) return 7;
  if (split_lines(lines).size() != 1600) return 8;
  // 1600 events, 25 trips around a 64-record ring: one general event each, plus the first event.
  return general <= 30 ? 0 : 9;
}

TEST(Recorder, SteadyRecordingWithDrainsKeepsTheFastPath) {
  run_in_child(steady_fast_path);
}

TEST(Recorder, ReinstallRestartsSeqAndCounters) {
  reinit();
  for (int round = 0; round < 3; ++round) {
    std::string lines;
    Ring ring(8);
    capheap_recorder_config_t c = ring.config(&lines);
    ASSERT_EQ(capheap_recorder_install_config(&c), ESP_OK);
    for (int i = 0; i < 3 + round; ++i)
      heap_caps_free(heap_caps_malloc(16, MALLOC_CAP_DEFAULT));
    capheap_recorder_stats_t st;
    ASSERT_EQ(capheap_recorder_get_stats(&st), ESP_OK);
    const std::uint64_t events = 2u * static_cast<std::uint64_t>(3 + round);  // 6, 8, 10
    EXPECT_EQ(st.recorded, events < 8 ? events : 8u);
    EXPECT_EQ(st.dropped, events > 8 ? events - 8 : 0u);
    ASSERT_EQ(capheap_recorder_uninstall(), ESP_OK);
    const std::vector<std::string> got = split_lines(lines);
    ASSERT_FALSE(got.empty());
    EXPECT_EQ(field(got[0], "seq"), "0");
    EXPECT_EQ(got[0].substr(0, 2), "a ");
  }
  heap_caps_free(heap_caps_malloc(16, MALLOC_CAP_DEFAULT));  // uninstalled: nothing recorded
  EXPECT_FALSE(capheap_recorder_active());
}

// Producers on several threads, one draining concurrently (run under TSan by `make tsan`, whose
// filter selects "Thread" in the name).
TEST(RecorderThreaded, ProducersWithConcurrentDrain) {
  reinit();
  constexpr int kThreads = 4;
  constexpr int kPairs = 3000;
  std::string lines;
  Ring ring(256);
  capheap_recorder_config_t c = ring.config(&lines);
  ASSERT_EQ(capheap_recorder_install_config(&c), ESP_OK);
  std::atomic<int> running{kThreads};
  std::thread drainer([&] {
    while (running.load() > 0)
      capheap_recorder_drain(64);
  });
  std::vector<std::thread> producers;
  for (int t = 0; t < kThreads; ++t) {
    producers.emplace_back([&running, t] {
      for (int i = 0; i < kPairs; ++i) {
        void *p = heap_caps_malloc(static_cast<std::size_t>(8 + t), MALLOC_CAP_DEFAULT);
        heap_caps_free(p);
      }
      running.fetch_sub(1);
    });
  }
  for (std::thread &p : producers)
    p.join();
  drainer.join();
  capheap_recorder_stats_t st;
  ASSERT_EQ(capheap_recorder_get_stats(&st), ESP_OK);
  ASSERT_EQ(capheap_recorder_uninstall(), ESP_OK);
  EXPECT_EQ(st.recorded + st.dropped, 2u * kThreads * kPairs);

  // Every event line is complete and seq counts 0, 1, 2 ... without a gap.
  std::uint64_t next_seq = 0, events = 0, dropped = 0;
  for (const std::string &line : split_lines(lines)) {
    if (line[0] == '#') {
      unsigned long long n = 0;
      ASSERT_EQ(std::sscanf(line.c_str(), "# recorder: dropped %llu events (ring full)", &n), 1)
          << line;
      dropped += n;
      continue;
    }
    ASSERT_EQ(field(line, "seq"), std::to_string(next_seq)) << line;
    ++next_seq;
    ++events;
    ASSERT_FALSE(field(line, "t").empty());
    ASSERT_FALSE(field(line, "task").empty());
    ASSERT_FALSE(field(line, "site").empty());
    ASSERT_TRUE(line[0] == 'a' || line[0] == 'f') << line;
  }
  EXPECT_EQ(events, st.recorded);
  EXPECT_EQ(dropped, st.dropped);
}

/// A pool of per-thread rings of 2^log2 records: `rings` of them plus the live-address table.
struct Pool {
  Pool(unsigned log2, std::size_t rings)
      : mem(((std::size_t(1) << log2) * CAPHEAP_RECORDER_EVENT_SIZE * rings) * 8 / 7 / 8 + 64),
        log2_(log2) {}
  std::vector<std::uint64_t> mem;
  unsigned log2_;
  capheap_recorder_config_t config(std::string *out, std::uint32_t flags = 0) {
    return capheap_recorder_config_t{to_string, out, mem.data(), mem.size() * 8,
                                     flags | CAPHEAP_RECORDER_RING_EVENTS_LOG2(log2_)};
  }
};

/// Checks the binding rules of the recorded lines: an `a`/`z`/`m` names an unbound ID, an `f` a
/// bound one, `r ... to=` a bound source and an unbound target. Returns the number of events.
std::size_t check_bindings(const std::string &lines) {
  std::set<std::string> bound;
  std::size_t events = 0;
  for (const std::string &line : split_lines(lines)) {
    if (line[0] == '#') continue;
    const std::string id = line.substr(2, line.find(' ', 2) - 2);
    EXPECT_EQ(field(line, "seq"), std::to_string(events)) << line;
    ++events;
    if (line[0] == 'f') {
      EXPECT_EQ(bound.erase(id), 1u) << "freed before produced: " << line;
    } else if (line[0] == 'r' && !field(line, "to").empty()) {
      EXPECT_EQ(bound.erase(id), 1u) << line;
      EXPECT_TRUE(bound.insert(field(line, "to")).second) << line;
    } else if (line[0] != 'r') {
      EXPECT_TRUE(bound.insert(id).second) << "produced while live: " << line;
    }
  }
  return events;
}

// Blocks allocated on producer threads are freed on consumer threads while a
// drain runs: the merged output never frees an address before the event that produced it, seq
// counts the output, and the trace parser (and capheap_trace_replay's parser) accepts it.
TEST(RecorderThreaded, CrossThreadFreesFollowTheirAllocation) {
  reinit();
  constexpr int kProducers = 2, kConsumers = 2, kBlocks = 3000;
  std::string lines;
  Pool pool(14, 8);
  capheap_recorder_config_t c = pool.config(&lines);
  ASSERT_EQ(capheap_recorder_install_config(&c), ESP_OK);
  std::mutex m;
  std::deque<void *> queue;
  std::atomic<int> producing{kProducers}, running{kProducers + kConsumers};
  // What really happened, in an order consistent with causality (an allocation is noted after it
  // returned, a free before it is called): "a"/"f" and the task, per address.
  std::mutex truth_lock;
  std::map<std::string, std::vector<std::string>> truth;
  const auto note = [&](char op, void *p) {
    const std::string task = hex(capheap_port_task_owner());
    std::lock_guard<std::mutex> g(truth_lock);
    truth[hex(capheap_host_to_chip(p))].push_back(std::string(1, op) + " task=" + task);
  };
  std::thread drainer([&] {
    while (running.load() > 0)
      capheap_recorder_drain(128);
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kProducers; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kBlocks; ++i) {
        void *p = heap_caps_malloc(static_cast<std::size_t>(16 + (i + t) % 48), MALLOC_CAP_DEFAULT);
        if (p == nullptr) continue;
        note('a', p);
        std::lock_guard<std::mutex> g(m);
        queue.push_back(p);
      }
      producing.fetch_sub(1);
      running.fetch_sub(1);
    });
  for (int t = 0; t < kConsumers; ++t)
    threads.emplace_back([&] {
      for (;;) {
        void *p = nullptr;
        {
          std::lock_guard<std::mutex> g(m);
          if (!queue.empty()) {
            p = queue.front();
            queue.pop_front();
          }
        }
        if (p == nullptr) {
          if (producing.load() == 0) {
            std::lock_guard<std::mutex> g(m);
            if (queue.empty()) break;
          }
          continue;
        }
        note('f', p);
        heap_caps_free(p);
      }
      running.fetch_sub(1);
    });
  for (std::thread &t : threads)
    t.join();
  drainer.join();
  capheap_recorder_stats_t st;
  ASSERT_EQ(capheap_recorder_get_stats(&st), ESP_OK);
  EXPECT_EQ(st.dropped, 0u);
  EXPECT_GE(st.rings, 4u);
  EXPECT_GE(st.rings_attached, 2u);  // producers, consumers that freed (ended ones are reused)
  EXPECT_LE(st.rings_attached, 4u);
  ASSERT_EQ(capheap_recorder_uninstall(), ESP_OK);
  const std::size_t events = check_bindings(lines);
  // Per address, the output tells the same story as what happened (a reused address is the case
  // address-based checks cannot see: two frees of it by different threads, close together).
  std::map<std::string, std::vector<std::string>> told;
  for (const std::string &line : split_lines(lines))
    if (line[0] != '#')
      told[line.substr(2, line.find(' ', 2) - 2)].push_back(line.substr(0, 1) +
                                                            " task=" + field(line, "task"));
  std::size_t differ = 0;
  for (const auto &kv : truth)
    if (told[kv.first] != kv.second && ++differ <= 3)
      ADD_FAILURE() << "address " << kv.first << ": output differs from what happened";
  EXPECT_EQ(differ, 0u);
  EXPECT_EQ(events, st.recorded);
  EXPECT_EQ(events, 2u * kProducers * kBlocks);  // a + f each
  const ParseResult parsed = parse_trace(CAPHEAP_RECORDER_HEADER + lines, "cross-thread");
  ASSERT_TRUE(parsed.ok()) << parsed.error;
  EXPECT_EQ(compute_stats(parsed.trace).final_live_blocks, 0u);
}

/// A thread that runs the jobs it is given, one at a time; run() returns when the job is done.
class Worker {
 public:
  Worker() : thread_([this] { loop(); }) {}
  ~Worker() {
    run(nullptr);
    thread_.join();
  }
  void run(std::function<void()> job) {
    std::unique_lock<std::mutex> lock(m_);
    job_ = std::move(job);
    quit_ = !job_;
    pending_ = true;
    cv_.notify_all();
    cv_.wait(lock, [this] { return !pending_; });
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lock(m_);
    for (;;) {
      cv_.wait(lock, [this] { return pending_; });
      if (quit_) {
        pending_ = false;
        cv_.notify_all();
        return;
      }
      job_();
      pending_ = false;
      cv_.notify_all();
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::function<void()> job_;
  bool pending_ = false, quit_ = false;
  std::thread thread_;
};

// Regression (a CI run of CrossThreadFreesFollowTheirAllocation): a drain's scan of the rings is
// not a snapshot. Ring 0 was read with nothing published; then its thread allocated p, another
// thread freed p, and the scan reached that thread's ring 1: "f p" with p unknown was the only
// head, and went out before "a p". The hook reproduces that interleaving exactly.
TEST(RecorderThreaded, FreePublishedDuringAScanWaitsForItsAllocation) {
  reinit();
  std::string lines;
  Pool pool(6, 4);
  capheap_recorder_config_t c = pool.config(&lines);
  ASSERT_EQ(capheap_recorder_install_config(&c), ESP_OK);
  heap_caps_free(heap_caps_malloc(16, MALLOC_CAP_DEFAULT));  // this thread: ring 0
  Worker worker;
  worker.run([] { heap_caps_free(heap_caps_malloc(16, MALLOC_CAP_DEFAULT)); });  // ring 1
  EXPECT_EQ(capheap_recorder_flush(), 4u);
  lines.clear();

  struct Race {
    Worker *worker;
    void *p = nullptr;
    int fired = 0;
  } race{&worker};
  capheap::capi::recorder_set_scan_hook(
      [](std::size_t ring, void *user) {
        Race &r = *static_cast<Race *>(user);
        if (ring != 1 || r.fired++ != 0) return;
        r.p = heap_caps_malloc(40, MALLOC_CAP_DEFAULT);  // ring 0, already scanned
        void *p = r.p;
        r.worker->run([p] { heap_caps_free(p); });  // ring 1, about to be scanned
      },
      &race);
  const std::size_t drained = capheap_recorder_drain(16);
  capheap::capi::recorder_set_scan_hook(nullptr, nullptr);
  EXPECT_EQ(drained, 2u);
  EXPECT_EQ(race.fired > 0, true);
  ASSERT_EQ(capheap_recorder_uninstall(), ESP_OK);
  const std::vector<std::string> out = split_lines(lines);
  ASSERT_EQ(out.size(), 2u) << lines;
  EXPECT_EQ(out[0].substr(0, 2), "a ") << lines;
  EXPECT_EQ(out[1].substr(0, 2), "f ") << lines;
  EXPECT_EQ(out[0].substr(2, out[0].find(' ', 2) - 2), out[1].substr(2, out[1].find(' ', 2) - 2));
  EXPECT_EQ(field(out[0], "seq"), "4");
  EXPECT_EQ(field(out[1], "seq"), "5");
}

// Each thread's ring overflows on its own: drop-newest per ring, counted per ring and in total.
TEST(RecorderThreaded, OverflowIsCountedPerThreadRing) {
  reinit();
  std::string lines;
  Pool pool(2, 4);  // rings of 4 records
  capheap_recorder_config_t c = pool.config(&lines);
  ASSERT_EQ(capheap_recorder_install_config(&c), ESP_OK);
  const auto five_pairs = [](std::size_t size) {
    void *p[5];
    for (auto &q : p)
      q = heap_caps_malloc(size, MALLOC_CAP_DEFAULT);
    for (auto &q : p)
      heap_caps_free(q);  // 10 events, 4 records: 6 dropped
  };
  std::thread a(five_pairs, 24), b(five_pairs, 40);
  a.join();
  b.join();
  capheap_recorder_stats_t st;
  ASSERT_EQ(capheap_recorder_get_stats(&st), ESP_OK);
  EXPECT_EQ(st.capacity, 4u);
  EXPECT_EQ(st.rings_attached, 2u);
  EXPECT_EQ(st.recorded, 8u);
  EXPECT_EQ(st.dropped, 12u);
  ASSERT_EQ(capheap_recorder_uninstall(), ESP_OK);
  std::size_t drop_lines = 0, events = 0;
  for (const std::string &line : split_lines(lines)) {
    if (line[0] == '#') {
      EXPECT_EQ(line, "# recorder: dropped 6 events (ring full)");
      ++drop_lines;
    } else {
      EXPECT_EQ(line.substr(0, 2), "a ") << line;  // the oldest four of each thread
      ++events;
    }
  }
  EXPECT_EQ(drop_lines, 2u);
  EXPECT_EQ(events, 8u);
}

// capheap_recorder.h: with CAPHEAP_RECORDER_RING_EVENTS_LOG2(k), install_config refuses (exactly
// ESP_ERR_INVALID_ARG, nothing installed) k above 30 and a buffer that, less the live-address
// table (its last eighth), holds no ring of 2^k records; the rings it makes are as many as fit.
TEST(RecorderThreaded, PerThreadRingConfigErrors) {
  reinit();
  std::string lines;
  Pool pool(4, 2);  // rings of 16 records, room for 2
  capheap_recorder_config_t c = pool.config(&lines);
  c.flags = CAPHEAP_RECORDER_RING_EVENTS_LOG2(31);
  EXPECT_EQ(capheap_recorder_install_config(&c), ESP_ERR_INVALID_ARG);
  c.flags = CAPHEAP_RECORDER_RING_EVENTS_LOG2(255);
  EXPECT_EQ(capheap_recorder_install_config(&c), ESP_ERR_INVALID_ARG);
  // k > 255 shifted past the mask: the request read as "no rings" and was installed as one ring.
  c.flags = CAPHEAP_RECORDER_RING_EVENTS_LOG2(256);
  EXPECT_EQ(capheap_recorder_install_config(&c), ESP_ERR_INVALID_ARG);
  c.flags = CAPHEAP_RECORDER_RING_EVENTS_LOG2(4) | 0x2u;  // a flag bit that means nothing
  EXPECT_EQ(capheap_recorder_install_config(&c), ESP_ERR_INVALID_ARG);
  EXPECT_FALSE(capheap_recorder_active());
  c = pool.config(&lines);
  c.buffer_size = 16 * CAPHEAP_RECORDER_EVENT_SIZE;  // one ring's records, but the table takes 1/8
  EXPECT_EQ(capheap_recorder_install_config(&c), ESP_ERR_INVALID_ARG);
  c.buffer_size = 15;  // not even a live-address table of 2 slots
  EXPECT_EQ(capheap_recorder_install_config(&c), ESP_ERR_INVALID_ARG);
  EXPECT_FALSE(capheap_recorder_active());

  c = pool.config(&lines);
  ASSERT_EQ(capheap_recorder_install_config(&c), ESP_OK);
  capheap_recorder_stats_t st;
  ASSERT_EQ(capheap_recorder_get_stats(&st), ESP_OK);
  EXPECT_EQ(st.capacity, 16u);
  EXPECT_EQ(st.rings, 2u);
  EXPECT_EQ(capheap_recorder_uninstall(), ESP_OK);
  EXPECT_EQ(lines, "");
}

// A thread that ends with events still in its ring: they are delivered by the next drain, and its
// ring then goes back to the pool for the next thread.
TEST(RecorderThreaded, ThreadExitWithUndrainedEvents) {
  reinit();
  std::string lines;
  Pool pool(4, 1);  // one ring
  capheap_recorder_config_t c = pool.config(&lines);
  ASSERT_EQ(capheap_recorder_install_config(&c), ESP_OK);
  std::uint32_t owner1 = 0, owner2 = 0;
  std::thread([&] {
    owner1 = capheap_port_task_owner();
    for (int i = 0; i < 3; ++i)
      heap_caps_free(heap_caps_malloc(32, MALLOC_CAP_DEFAULT));
  }).join();
  EXPECT_EQ(lines, "");
  EXPECT_EQ(capheap_recorder_flush(), 6u);  // and recycles the ended thread's ring
  std::thread([&] {
    owner2 = capheap_port_task_owner();
    heap_caps_free(heap_caps_malloc(48, MALLOC_CAP_DEFAULT));
  }).join();
  capheap_recorder_stats_t st;
  ASSERT_EQ(capheap_recorder_get_stats(&st), ESP_OK);
  EXPECT_EQ(st.rings, 1u);
  EXPECT_EQ(st.rings_attached, 1u);
  EXPECT_EQ(st.recorded, 8u);
  EXPECT_EQ(st.dropped, 0u);
  ASSERT_EQ(capheap_recorder_uninstall(), ESP_OK);
  const std::vector<std::string> got = split_lines(lines);
  ASSERT_EQ(got.size(), 8u) << lines;
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(field(got[i], "task"), hex(i < 6 ? owner1 : owner2)) << got[i];
    EXPECT_EQ(field(got[i], "seq"), std::to_string(i));
  }
}

// The coarse clock: t= never goes back within a thread's events and stays within a few ticks of
// CLOCK_MONOTONIC.
TEST(RecorderThreaded, CoarseClockIsMonotonicPerThread) {
  reinit();
  std::string lines;
  Pool pool(13, 4);
  capheap_recorder_config_t c = pool.config(&lines);
  ASSERT_EQ(capheap_recorder_install_config(&c), ESP_OK);
  const std::uint64_t before = capheap_port_time_ns();
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t)
    threads.emplace_back([] {
      for (int i = 0; i < 1000; ++i) {
        heap_caps_free(heap_caps_malloc(64, MALLOC_CAP_DEFAULT));
        if (i % 100 == 0) std::this_thread::sleep_for(std::chrono::microseconds(300));
      }
    });
  for (std::thread &t : threads)
    t.join();
  const std::uint64_t after = capheap_port_time_ns();
  ASSERT_EQ(capheap_recorder_uninstall(), ESP_OK);
  std::map<std::string, std::uint64_t> last;
  std::size_t events = 0;
  for (const std::string &line : split_lines(lines)) {
    ASSERT_NE(line[0], '#') << line;
    const std::uint64_t t = std::stoull(field(line, "t"));
    std::uint64_t &prev = last[field(line, "task")];
    EXPECT_GE(t, prev) << line;
    prev = t;
    // (The ticker may trail by a scheduling delay on a loaded machine: within a second.)
    EXPECT_GE(t + 2 * CAPHEAP_PORT_COARSE_PERIOD_NS + 1000000000u, before) << line;
    EXPECT_LE(t, after) << line;
    ++events;
  }
  EXPECT_EQ(events, 6000u);
  EXPECT_EQ(last.size(), 3u);
}

// A single-threaded program stays single-threaded for glibc (a pthread would switch glibc to its
// atomic multi-threaded paths for good): installing starts the host port's raw ticker (a clone
// glibc does not know about; without it, a per-event CLOCK_MONOTONIC_COARSE read), the events'
// time advances across a sleep and never goes back, their order comes from a plain counter, and a
// thread started while recording (the process is multi-threaded from then on) still gets orders
// after everything before it. Runs in its own process (death-test style fork), since the gtest
// process may already have threads.
/// The body of SingleThreadedProcessStaysSingleThreadedForGlibc (in a child process); 0 when it
/// holds, else the number of the check that failed.
int single_threaded_recording() {
  const auto threads_now = [] {
    std::size_t n = 0;
    std::ifstream status("/proc/self/status");
    for (std::string l; std::getline(status, l);)
      if (l.rfind("Threads:", 0) == 0) n = std::stoul(l.substr(8));
    return n;
  };
  if (threads_now() != 1 || !capheap_port_single_threaded()) return 3;
  reinit();
  std::string lines;
  Pool pool(13, 4);
  capheap_recorder_config_t c = pool.config(&lines);
  if (capheap_recorder_install_config(&c) != ESP_OK) return 4;
  // The ticker, if any, is invisible to glibc: one kernel thread more at most.
  if (!capheap_port_single_threaded() || threads_now() > 2) return 5;
  const std::uint64_t before = capheap_port_time_ns();
  for (int i = 0; i < 10; ++i)
    heap_caps_free(heap_caps_malloc(64, MALLOC_CAP_DEFAULT));
  // (Margins are wide: the recorder's clock may lag under load, see check 10.)
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  for (int i = 0; i < 10; ++i)
    heap_caps_free(heap_caps_malloc(64, MALLOC_CAP_DEFAULT));
  std::thread([] {
    for (int i = 0; i < 10; ++i)
      heap_caps_free(heap_caps_malloc(32, MALLOC_CAP_DEFAULT));
  }).join();
  heap_caps_free(heap_caps_malloc(16, MALLOC_CAP_DEFAULT));
  const std::uint64_t after = capheap_port_time_ns();
  if (capheap_recorder_uninstall() != ESP_OK) return 6;
  const std::vector<std::string> got = split_lines(lines);
  if (got.size() != 62) return 7;
  std::uint64_t first_t = 0, last_t = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const std::uint64_t t = std::stoull(field(got[i], "t"));
    if (field(got[i], "seq") != std::to_string(i)) return 8;
    if (i < 40 && t < last_t) return 9;  // the main thread's first 40 events
    // The clock the recorder reads may trail the port's by a scheduling delay (a ticker thread on
    // a loaded machine): a timestamp from this run is within a second before `before`.
    if (t + 1000000000u < before || t > after) return 10;
    if (i == 0) first_t = t;
    if (i < 40) last_t = t;
  }
  // The 100 ms sleep shows (by at least a tick's worth even if the ticker ran late throughout).
  if (last_t < first_t + CAPHEAP_PORT_COARSE_PERIOD_NS) return 11;
  // Program order across the thread start: 64-byte lines, then 32, then 16.
  for (std::size_t i = 0; i < got.size(); i += 2) {
    const char *want = i < 40 ? " 64 " : i < 60 ? " 32 " : " 16 ";
    if (got[i].find(want) == std::string::npos) return 12;
  }
  return 0;
}

/// A child of fork has none of its parent's threads, the ticker included: a recording that goes
/// on in the child still gets the time (it advances across a sleep). 0 when it holds.
int recording_across_fork() {
  reinit();
  std::string lines;
  Pool pool(13, 4);
  capheap_recorder_config_t c = pool.config(&lines);
  if (capheap_recorder_install_config(&c) != ESP_OK) return 4;
  heap_caps_free(heap_caps_malloc(64, MALLOC_CAP_DEFAULT));
  const pid_t pid = fork();
  if (pid < 0) return 5;
  if (pid == 0) {
    heap_caps_free(heap_caps_malloc(48, MALLOC_CAP_DEFAULT));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    heap_caps_free(heap_caps_malloc(40, MALLOC_CAP_DEFAULT));
    if (capheap_recorder_uninstall() != ESP_OK) _exit(6);
    const std::vector<std::string> got = split_lines(lines);
    if (got.size() != 6) _exit(7);
    const std::uint64_t t48 = std::stoull(field(got[2], "t"));
    const std::uint64_t t40 = std::stoull(field(got[4], "t"));
    if (got[2].find(" 48 ") == std::string::npos || got[4].find(" 40 ") == std::string::npos)
      _exit(8);
    _exit(t40 >= t48 + 20000000u ? 0 : 9);  // the 100 ms sleep shows
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return 10;
  if (capheap_recorder_uninstall() != ESP_OK) return 11;
  return WEXITSTATUS(status);
}

TEST(Recorder, TimeKeepsGoingInAForkedChild) {
  run_in_child(recording_across_fork);
}

TEST(Recorder, SingleThreadedProcessStaysSingleThreadedForGlibc) {
  run_in_child(single_threaded_recording);
}

// The heap_caps_malloc that starts the automatic initialisation (which installs the recorder for
// CAPHEAP_TRACE_FILE) is the run's first event: it is in the file like every later one.
TEST(Recorder, TraceFileRecordsTheCallThatInitialisesTheSimulator) {
  const std::string path = ::testing::TempDir() + "capheap_recorder_autoinit.trace";
  capheap_host_deinit();
  ASSERT_EQ(setenv("CAPHEAP_TRACE_FILE", path.c_str(), 1), 0);
  void *p = heap_caps_malloc(100, MALLOC_CAP_8BIT);  // initialises the simulator
  unsetenv("CAPHEAP_TRACE_FILE");
  ASSERT_NE(p, nullptr);
  ASSERT_TRUE(capheap_recorder_active());
  heap_caps_free(p);
  capheap_host_deinit();  // completes the file

  const ParseResult rec = load_trace_file(path);
  ASSERT_TRUE(rec.ok()) << rec.error;
  ASSERT_EQ(rec.trace.ops.size(), 2u);
  EXPECT_EQ(rec.trace.ops[0].kind, OpKind::kMalloc);
  EXPECT_EQ(rec.trace.ops[0].size, 100u);
  EXPECT_EQ(rec.trace.ops[1].kind, OpKind::kFree);
  EXPECT_EQ(rec.trace.ops[1].slot, rec.trace.ops[0].slot);
  EXPECT_EQ(compute_stats(rec.trace).final_live_blocks, 0u);
  reinit();
}

TEST(Recorder, BadTraceFileFailsInitialisation) {
  ASSERT_EQ(setenv("CAPHEAP_TRACE_FILE", "/nonexistent-dir/x.trace", 1), 0);
  capheap_host_deinit();
  EXPECT_EQ(capheap_host_init("esp32", nullptr), ESP_ERR_INVALID_ARG);
  unsetenv("CAPHEAP_TRACE_FILE");
  EXPECT_FALSE(capheap_recorder_active());
  EXPECT_EQ(capheap_host_init("esp32", nullptr), ESP_OK);
}

// A write that failed (disk full) was dropped without a word: the run ended normally with an empty
// or cut recording. Now the close reports it.
TEST(Recorder, TraceFileWriteFailureIsReported) {
  if (access("/dev/full", W_OK) != 0) GTEST_SKIP() << "no /dev/full";
  ASSERT_EQ(setenv("CAPHEAP_TRACE_FILE", "/dev/full", 1), 0);
  capheap_host_deinit();
  ASSERT_EQ(capheap_host_init("esp32", nullptr), ESP_OK);
  unsetenv("CAPHEAP_TRACE_FILE");
  workload();
  ::testing::internal::CaptureStderr();
  capheap_host_deinit();
  EXPECT_EQ(::testing::internal::GetCapturedStderr(),
            "capheap: CAPHEAP_TRACE_FILE '/dev/full': write failed: No space left on device; the "
            "recording is incomplete\n");
  // The next recording starts with a clean slate.
  const std::string path = ::testing::TempDir() + "capheap_recorder_after_full.trace";
  ASSERT_EQ(setenv("CAPHEAP_TRACE_FILE", path.c_str(), 1), 0);
  reinit();
  unsetenv("CAPHEAP_TRACE_FILE");
  workload();
  ::testing::internal::CaptureStderr();
  capheap_host_deinit();
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
  const ParseResult rec = load_trace_file(path);
  ASSERT_TRUE(rec.ok()) << rec.error;
  EXPECT_EQ(steps_of(rec.trace), kExpected);
  reinit();
}

/// A child of fork that ends with exit() (a shell's subshell, a daemon's worker) wrote its copy of
/// the recording into the parent's CAPHEAP_TRACE_FILE at exit: the lines buffered before fork again
/// (second header, same seq and IDs) and its own events, interleaved with the parent's, so the file
/// no longer parsed. The file holds the parent's run only. 0 when it holds.
int trace_file_across_fork() {
  const std::string path = ::testing::TempDir() + "capheap_recorder_fork.trace";
  if (setenv("CAPHEAP_TRACE_FILE", path.c_str(), 1) != 0) return 10;
  capheap_host_deinit();
  if (capheap_host_init("esp32", nullptr) != ESP_OK) return 11;
  unsetenv("CAPHEAP_TRACE_FILE");
  void *a = heap_caps_malloc(100, MALLOC_CAP_8BIT);
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return 12;
  if (pid == 0) {
    heap_caps_free(heap_caps_malloc(48, MALLOC_CAP_8BIT));
    std::exit(0);  // atexit handlers run, the trace file's among them
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return 13;
  heap_caps_free(heap_caps_malloc(40, MALLOC_CAP_8BIT));
  heap_caps_free(a);
  capheap_host_deinit();
  const ParseResult rec = load_trace_file(path);
  if (!rec.ok()) {
    std::fprintf(stderr, "%s\n", rec.error.c_str());
    return 14;
  }
  const std::vector<Step> want = {{OpKind::kMalloc, 100, MALLOC_CAP_8BIT},
                                  {OpKind::kMalloc, 40, MALLOC_CAP_8BIT},
                                  {OpKind::kFree, 0, MALLOC_CAP_DEFAULT},
                                  {OpKind::kFree, 0, MALLOC_CAP_DEFAULT}};
  if (steps_of(rec.trace) != want) return 15;
  for (std::size_t i = 0; i < rec.trace.ops.size(); ++i)
    if (rec.trace.ops[i].seq != i) return 16;
  return 0;
}

TEST(Recorder, TraceFileHoldsTheParentsRunAcrossFork) {
  run_in_child(trace_file_across_fork);
}

/// A recording cut by the file size limit (RLIMIT_FSIZE): the file ends at a line's end, so what
/// was written parses as a prefix of the run, and the failure is reported. 0 when it holds.
constexpr rlim_t kSizeLimit = 70001;  // past the first 60 KiB flush, inside the second
int cut_recording() {
  const std::string path = ::testing::TempDir() + "capheap_recorder_cut.trace";
  const std::string err = ::testing::TempDir() + "capheap_recorder_cut.err";
  if (std::freopen(err.c_str(), "w", stderr) == nullptr) return 10;
  if (setenv("CAPHEAP_TRACE_FILE", path.c_str(), 1) != 0) return 11;
  capheap_host_deinit();
  if (capheap_host_init("esp32", nullptr) != ESP_OK) return 12;
  // (After the initialisation: the limit applies to the chip's memfds too.)
  std::signal(SIGXFSZ, SIG_IGN);
  const rlimit limit{kSizeLimit, kSizeLimit};
  if (setrlimit(RLIMIT_FSIZE, &limit) != 0) return 13;
  for (int i = 0; i < 5000; ++i)
    heap_caps_free(heap_caps_malloc(static_cast<std::size_t>(16 + i % 100), MALLOC_CAP_8BIT));
  capheap_host_deinit();
  std::fflush(stderr);
  return 0;
}

TEST(Recorder, TraceFileCutByAWriteFailureEndsAtALineEnd) {
  run_in_child(cut_recording);
  std::ifstream in(::testing::TempDir() + "capheap_recorder_cut.trace", std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(text.size(), 60u * 1024);
  EXPECT_LT(text.size(), kSizeLimit);
  EXPECT_EQ(text.back(), '\n');
  const ParseResult rec = parse_trace(text, "cut.trace");
  ASSERT_TRUE(rec.ok()) << rec.error;
  for (std::size_t i = 0; i < rec.trace.ops.size(); ++i)
    ASSERT_EQ(rec.trace.ops[i].seq, i);
  std::ifstream err_in(::testing::TempDir() + "capheap_recorder_cut.err");
  const std::string err((std::istreambuf_iterator<char>(err_in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(err, "capheap: CAPHEAP_TRACE_FILE '" + ::testing::TempDir() +
                     "capheap_recorder_cut.trace': write failed: File too large; the recording is "
                     "incomplete\n");
}

}  // namespace
}  // namespace capheap::sim
