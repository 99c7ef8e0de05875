// recorder_test.cpp — the event recorder (include/capheap_recorder.h) and CAPHEAP_TRACE_FILE:
// error codes, the exact line format, and a recorded host run that parses with the trace parser
// (src/sim/trace.hpp) and replays — on heap_caps with the recorder on, and with
// capheap_trace_replay — to the same sequence of (operation, size, caps).

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <regex>
#include <string>
#include <tuple>
#include <vector>

#include "capheap.h"
#include "capheap_host.h"
#include "capheap_recorder.h"
#include "esp_heap_caps.h"
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

TEST(Recorder, BadTraceFileFailsInitialisation) {
  ASSERT_EQ(setenv("CAPHEAP_TRACE_FILE", "/nonexistent-dir/x.trace", 1), 0);
  capheap_host_deinit();
  EXPECT_EQ(capheap_host_init("esp32", nullptr), ESP_ERR_INVALID_ARG);
  unsetenv("CAPHEAP_TRACE_FILE");
  EXPECT_FALSE(capheap_recorder_active());
  EXPECT_EQ(capheap_host_init("esp32", nullptr), ESP_OK);
}

}  // namespace
}  // namespace capheap::sim
