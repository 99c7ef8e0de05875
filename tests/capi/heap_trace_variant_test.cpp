// heap_trace_variant_test.cpp — heap tracing built with CONFIG_HEAP_TRACING_STACK_DEPTH=0 and
// CONFIG_HEAP_TRACE_HASH_MAP=1 (size 10): src/capi/heap_trace.cpp is compiled into this test with
// those values (its object takes the place of the library's). Hash-map hits and misses, the dump's
// `hashmap:` line and the depth-0 record lines ("caller " followed by nothing).

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "capheap.h"
#include "capheap_host.h"
#include "capi/heap_trace_internal.hpp"
#include "esp_heap_caps.h"
#include "esp_heap_trace.h"

static_assert(CONFIG_HEAP_TRACING_STACK_DEPTH == 0, "this suite is the depth-0 variant");
static_assert(CONFIG_HEAP_TRACE_HASH_MAP == 1, "this suite is the hash-map variant");
static_assert(CONFIG_HEAP_TRACE_HASH_MAP_SIZE == 10, "this suite expects 10 buckets");

namespace {

std::string g_out;
void capture(const char *text, std::size_t len) {
  g_out.append(text, len);
}

std::string dump() {
  g_out.clear();
  capheap_set_print_hook(capture);
  heap_trace_dump();
  capheap_set_print_hook(nullptr);
  return g_out;
}

class HeapTraceVariant : public ::testing::Test {
 protected:
  void SetUp() override {
    capheap_host_deinit();
    ASSERT_EQ(capheap_host_init("esp32", nullptr), ESP_OK);
    records_.assign(100, heap_trace_record_t{});
    ASSERT_EQ(heap_trace_init_standalone(records_.data(), records_.size()), ESP_OK);
  }
  void TearDown() override {
    (void)heap_trace_stop();
    capheap_host_deinit();
  }
  std::vector<heap_trace_record_t> records_;
};

TEST_F(HeapTraceVariant, HashMapCountsHitsAndMisses) {
  ASSERT_EQ(heap_trace_start(HEAP_TRACE_LEAKS), ESP_OK);
  std::vector<void *> blocks;
  for (int i = 0; i < 25; ++i)  // more blocks than buckets: chains
    blocks.push_back(heap_caps_malloc(static_cast<std::size_t>(16 + i), MALLOC_CAP_DEFAULT));
  for (std::size_t i = 0; i < blocks.size(); i += 2)
    heap_caps_free(blocks[i]);  // 13 hits
  ASSERT_EQ(heap_trace_stop(), ESP_OK);
  // Blocks allocated while stopped are unknown to the map: their frees are misses once resumed.
  void *untraced = heap_caps_malloc(40, MALLOC_CAP_DEFAULT);
  void *untraced2 = heap_caps_malloc(40, MALLOC_CAP_DEFAULT);
  ASSERT_EQ(heap_trace_resume(), ESP_OK);
  heap_caps_free(untraced);
  heap_caps_free(untraced2);
  heap_caps_free(blocks[1]);  // 14th hit
  ASSERT_EQ(heap_trace_stop(), ESP_OK);
  heap_trace_summary_t s{};
  ASSERT_EQ(heap_trace_summary(&s), ESP_OK);
  EXPECT_EQ(s.total_hashmap_hits, 14u);
  EXPECT_EQ(s.total_hashmap_miss, 2u);
  EXPECT_EQ(s.count, 25u - 14u);
  EXPECT_EQ(s.total_allocations, 25u);
  EXPECT_EQ(s.total_frees, 16u);
  for (std::size_t i = 3; i < blocks.size(); i += 2)
    heap_caps_free(blocks[i]);
  // A restart clears the map and its counters.
  ASSERT_EQ(heap_trace_start(HEAP_TRACE_LEAKS), ESP_OK);
  ASSERT_EQ(heap_trace_summary(&s), ESP_OK);
  EXPECT_EQ(s.total_hashmap_hits, 0u);
  EXPECT_EQ(s.total_hashmap_miss, 0u);
}

TEST_F(HeapTraceVariant, DumpAtDepthZeroWithTheHashMapLine) {
  ASSERT_EQ(heap_trace_start(HEAP_TRACE_LEAKS), ESP_OK);
  void *in = capheap_host_from_chip(0x3ffe8000);
  void *in2 = capheap_host_from_chip(0x3ffe9000);
  capheap::capi::trace_record_alloc(in, 100, nullptr, 0x101);  // CPU 1
  capheap::capi::trace_record_alloc(in2, 50, nullptr, 0x104);
  capheap::capi::trace_record_free(in2, nullptr);                                 // hit
  capheap::capi::trace_record_free(capheap_host_from_chip(0x3ffea000), nullptr);  // miss
  ASSERT_EQ(heap_trace_stop(), ESP_OK);
  EXPECT_EQ(dump(),
            "====== Heap Trace: 1 records (100 capacity) ======\n"
            "   100 bytes (@ 0x3ffe8000, Internal) allocated CPU 1 ccount 0x00000100 caller \n"
            "====== Heap Trace Summary ======\n"
            "Mode: Heap Trace Leaks\n"
            "100 bytes 'leaked' in trace (1 allocations)\n"
            "records: 1 (100 capacity, 2 high water mark)\n"
            "hashmap: 10 capacity (1 hits, 1 misses)\n"
            "total allocations: 2\n"
            "total frees: 2\n"
            "================================\n");
  // ALL mode at depth 0: no "freed by" line (no frames to show); freed records are not kept.
  ASSERT_EQ(heap_trace_start(HEAP_TRACE_ALL), ESP_OK);
  capheap::capi::trace_record_alloc(in, 8, nullptr, 0x200);
  capheap::capi::trace_record_free(in, nullptr);
  ASSERT_EQ(heap_trace_stop(), ESP_OK);
  const std::string all = dump();
  EXPECT_EQ(all.find("freed by"), std::string::npos) << all;
  EXPECT_NE(all.find("hashmap: 10 capacity (1 hits, 0 misses)\n"), std::string::npos) << all;
}

}  // namespace
