// heap_caps_init_test.cpp — heap_caps_init on bare-metal terms (spec §1.2, §3.1): a program linked
// without the host simulator, whose startup code sets its own layout and calls heap_caps_init,
// possibly after heap_caps_* calls made before it (C library or C++ start-up code).
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "capheap.h"
#include "capi/capi_internal.hpp"
#include "esp_heap_caps.h"
#include "esp_heap_caps_init.h"
#include "failure_capture.hpp"

namespace {

constexpr std::uint32_t kD = MALLOC_CAP_DEFAULT;
constexpr std::uint32_t k8 = MALLOC_CAP_8BIT;

alignas(16) unsigned char g_ram[0x4000];

const capheap_memory_type_t kTypes[] = {
    {"DRAM", {k8 | kD, MALLOC_CAP_INTERNAL | MALLOC_CAP_32BIT, 0}},
};
capheap_memory_region_t g_region;
capheap_layout_t g_layout;

using capheap_test::expect_one_failure;
using capheap_test::g_failures;
using capheap_test::on_failure;

/// One 16 KiB DRAM region, as firmware describes its RAM.
void set_layout() {
  g_region = {reinterpret_cast<std::uintptr_t>(g_ram), sizeof g_ram, 0, false, 0};
  g_layout = {};
  g_layout.chip = "one-dram";
  g_layout.types = kTypes;
  g_layout.type_count = 1;
  g_layout.regions = &g_region;
  g_layout.region_count = 1;
  g_layout.align.dma_internal = 4;
  capheap_set_layout(&g_layout);
}

/// What slow_paths() gives for a request the inline fast path serves: 0, or 1 in firmware built for
/// size (CAPHEAP_COMPACT), whose registry has no inline fast path (every request takes the hook).
constexpr int kServedFast = CAPHEAP_CAPS_TABLES ? 0 : 1;

/// Number of allocate() calls of 100 bytes with `caps` that left the registry's inline fast path.
int slow_paths(std::uint32_t caps) {
  int slow = 0;
  void *p = capheap::capi::registry().allocate(100, capheap::Caps(caps), [&slow] { ++slow; });
  EXPECT_NE(p, nullptr);
  capheap::capi::registry().deallocate(p);
  return slow;
}

class HeapCapsInit : public ::testing::Test {
 protected:
  void SetUp() override {
    capheap::capi::reset();
    g_failures.clear();
  }
  void TearDown() override { capheap::capi::reset(); }
};

TEST_F(HeapCapsInit, InitOpensTheFastPath) {
  set_layout();
  heap_caps_init();
  EXPECT_EQ(slow_paths(kD), kServedFast);
  EXPECT_EQ(slow_paths(k8), kServedFast);
}

// Before heap_caps_init (no layout yet) there is no heap: NULL and the failure callback, as on
// ESP-IDF with an empty heap list. The heap_caps_init that follows builds the heaps and, as without
// the early call, serves plain requests from the registry's fast path (the early call had marked
// the API initialised, and heap_caps_init used to leave the fast path closed for good).
TEST_F(HeapCapsInit, CallsBeforeInitFindNoHeapAndInitStillOpensTheFastPath) {
  ASSERT_EQ(heap_caps_register_failed_alloc_callback(on_failure), ESP_OK);
  EXPECT_EQ(heap_caps_malloc(10, k8), nullptr);
  expect_one_failure(10, k8, "heap_caps_malloc");  // (clears the record)
  EXPECT_EQ(heap_caps_get_total_size(0), 0u);
  set_layout();
  heap_caps_init();
  EXPECT_EQ(heap_caps_get_total_size(0), sizeof g_ram);
  EXPECT_EQ(slow_paths(kD), kServedFast);
  EXPECT_EQ(slow_paths(k8), kServedFast);
  void *p = heap_caps_malloc(10, k8);
  ASSERT_NE(p, nullptr);
  heap_caps_free(p);
  EXPECT_TRUE(g_failures.empty());  // no failure since the early call
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
}

// Reports of the fail hook (a pointer that is not a live block, ...), counted instead of aborting.
int g_fail_reports = 0;
void count_fail(const char *, const void *, const void *) {
  ++g_fail_reports;
}

alignas(16) unsigned char g_extra[0x1000];
const std::uint32_t kExtraCaps[3] = {k8 | kD, 0, 0};

esp_err_t add_extra() {
  return heap_caps_add_region_with_caps(kExtraCaps, reinterpret_cast<intptr_t>(g_extra),
                                        reinterpret_cast<intptr_t>(g_extra + sizeof g_extra));
}

// Before heap_caps_init there is no heap, and ESP-IDF takes a new heap's descriptor from an
// INTERNAL|8BIT heap: heap_caps_add_region_with_caps answers ESP_ERR_NO_MEM (argument errors
// first) and adds nothing. It used to add the heap, which the later heap_caps_init forgot: its
// blocks then were "outside heap areas".
TEST_F(HeapCapsInit, AddRegionBeforeInitIsRefusedWithNoMem) {
  EXPECT_EQ(add_extra(), ESP_ERR_NO_MEM);
  EXPECT_EQ(heap_caps_add_region_with_caps(nullptr, reinterpret_cast<intptr_t>(g_extra),
                                           reinterpret_cast<intptr_t>(g_extra + 64)),
            ESP_ERR_INVALID_ARG);
  EXPECT_EQ(heap_caps_get_total_size(0), 0u);
  EXPECT_EQ(heap_caps_malloc(10, k8), nullptr);
  set_layout();
  heap_caps_init();
  EXPECT_EQ(heap_caps_get_total_size(0), sizeof g_ram);
  EXPECT_EQ(add_extra(), ESP_OK);
  EXPECT_EQ(heap_caps_get_total_size(0), sizeof g_ram + sizeof g_extra);
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
}

// heap_caps_init runs once (ESP-IDF: "never call it again"): a second call, or the explicit call
// after a heap_caps_* call already initialised from the layout, changes nothing. It used to
// rebuild every heap over live blocks and forget the heaps added at run time.
TEST_F(HeapCapsInit, SecondInitKeepsHeapsAndBlocks) {
  const capheap_fail_hook_t old_hook = capheap_set_fail_hook(count_fail);
  g_fail_reports = 0;
  set_layout();
  void *early = heap_caps_malloc(100, k8);  // initialises from the layout
  ASSERT_NE(early, nullptr);
  heap_caps_init();
  ASSERT_EQ(add_extra(), ESP_OK);
  void *late = heap_caps_malloc(200, k8);
  ASSERT_NE(late, nullptr);
  const std::size_t total = heap_caps_get_total_size(0), free_now = heap_caps_get_free_size(0);
  EXPECT_EQ(total, sizeof g_ram + sizeof g_extra);
  heap_caps_init();
  EXPECT_EQ(heap_caps_get_total_size(0), total);
  EXPECT_EQ(heap_caps_get_free_size(0), free_now);
  EXPECT_EQ(heap_caps_get_allocated_size(early), 100u);
  EXPECT_EQ(heap_caps_get_allocated_size(late), 200u);
  heap_caps_free(early);
  heap_caps_free(late);
  EXPECT_EQ(g_fail_reports, 0);
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
  capheap_set_fail_hook(old_hook);
}

}  // namespace
