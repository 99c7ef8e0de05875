// caps_rules_test.cpp — heap selection and capability rules of the ESP-IDF heap reference (spec
// §2, §3) pinned with exact values on the simulated chips.

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "failure_capture.hpp"
#include "capheap.h"
#include "capheap_host.h"
#include "esp_heap_caps.h"
#include "esp_heap_caps_init.h"

namespace {

using capheap_test::expect_one_failure;
using capheap_test::g_failures;
using capheap_test::on_failure;

class CapsRules : public ::testing::Test {
 protected:
  void TearDown() override { capheap_host_deinit(); }
  void start(const char *chip, std::size_t psram = 0) {
    capheap_host_deinit();
    capheap_host_config_t hc = CAPHEAP_HOST_CONFIG_DEFAULT;
    hc.psram_size = psram;
    ASSERT_EQ(capheap_host_init(chip, &hc), ESP_OK);
    ASSERT_EQ(heap_caps_register_failed_alloc_callback(on_failure), ESP_OK);
    g_failures.clear();
  }
};

// §2 hardware alignment: for a request with DMA, DMA_DESC_*, CACHE_ALIGNED or SIMD, the alignment
// becomes max(requested, the hardware's) and the size is rounded up to THAT alignment, so
// heap_caps_aligned_alloc's own alignment rounds the size too when it is the larger one (it was
// rounded to the hardware figure only: 64 bytes for 128- or 256-byte aligned DMA buffers on the
// ESP32-P4, and not at all on chips without a DMA alignment of their own).
TEST_F(CapsRules, AlignedDmaSizeIsRoundedToTheCombinedAlignment) {
  start("esp32p4");  // internal DMA buffers: 64-byte cache line
  const std::size_t expected_p4[][2] = {{4, 64}, {16, 64}, {64, 64}, {128, 128}, {256, 256}};
  for (const auto &e : expected_p4) {
    SCOPED_TRACE(e[0]);
    void *p = heap_caps_aligned_alloc(e[0], 10, MALLOC_CAP_DMA);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % e[1], 0u);
    EXPECT_EQ(heap_caps_get_allocated_size(p), e[1]);
    heap_caps_free(p);
    // Without a hardware-alignment capability the size is the request's (rounded to 4).
    p = heap_caps_aligned_alloc(e[0], 10, MALLOC_CAP_8BIT);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(heap_caps_get_allocated_size(p), 12u);
    heap_caps_free(p);
  }
  start("esp32");  // no DMA alignment beyond 4 bytes: the requested alignment decides
  const std::size_t expected_esp32[][2] = {{4, 12}, {16, 16}, {64, 64}};
  for (const auto &e : expected_esp32) {
    SCOPED_TRACE(e[0]);
    void *p = heap_caps_aligned_alloc(e[0], 10, MALLOC_CAP_DMA);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(heap_caps_get_allocated_size(p), e[1]);
    heap_caps_free(p);
  }
  void *p = heap_caps_malloc(10, MALLOC_CAP_DMA);  // malloc: no requested alignment
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(heap_caps_get_allocated_size(p), 12u);
  heap_caps_free(p);
  EXPECT_TRUE(g_failures.empty());
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
}

// §3.2: level by level (0, 1, 2), heaps in list order (runtime heaps newest first, then boot
// heaps); a heap is a candidate at a level where it has ANY requested bit, and only if its three
// levels together hold ALL of them. Four runtime heaps inside one internal buffer, each 2 KiB.
TEST_F(CapsRules, WalkOrderAcrossLevelsAndRuntimeHeaps) {
  start("esp32");
  constexpr std::uint32_t kA = 1u << 30, kB = 1u << 29;
  auto *buf = static_cast<unsigned char *>(heap_caps_malloc(4 * 2048, MALLOC_CAP_8BIT));
  ASSERT_NE(buf, nullptr);
  const auto at = [buf](int i) { return reinterpret_cast<intptr_t>(buf + i * 2048); };
  const std::uint32_t h0[3] = {0, kA, 0};   // added first: last in the list
  const std::uint32_t h1[3] = {0, kA, 0};   // same levels, newer: tried before h0
  const std::uint32_t h2[3] = {0, 0, kA};   // newer still, but A only at level 2
  const std::uint32_t h3[3] = {kB, 0, kA};  // newest: B at level 0, A at level 2
  ASSERT_EQ(heap_caps_add_region_with_caps(h0, at(0), at(1)), ESP_OK);
  ASSERT_EQ(heap_caps_add_region_with_caps(h1, at(1), at(2)), ESP_OK);
  ASSERT_EQ(heap_caps_add_region_with_caps(h2, at(2), at(3)), ESP_OK);
  ASSERT_EQ(heap_caps_add_region_with_caps(h3, at(3), at(4)), ESP_OK);
  const auto heap_of = [&](const void *p) -> int {
    const intptr_t a = reinterpret_cast<intptr_t>(p);
    return p == nullptr || a < at(0) || a >= at(4) ? -1 : static_cast<int>((a - at(0)) / 2048);
  };
  // A: level 1 first (h1, then h0), then level 2 (h3, then h2).
  std::vector<int> order;
  std::vector<void *> blocks;
  for (;;) {
    void *p = heap_caps_malloc(256, kA);
    if (p == nullptr) break;
    blocks.push_back(p);
    if (order.empty() || order.back() != heap_of(p)) order.push_back(heap_of(p));
  }
  EXPECT_EQ(order, (std::vector<int>{1, 0, 3, 2}));
  for (void *p : blocks)
    heap_caps_free(p);
  // A|B: only h3 has both; it shares B at level 0.
  void *ab = heap_caps_malloc(64, kA | kB);
  EXPECT_EQ(heap_of(ab), 3);
  heap_caps_free(ab);
  // A|8BIT: no heap has both (the buffer's DRAM heap has 8BIT, the runtime heaps A): NULL and one
  // callback with the caller's caps.
  g_failures.clear();
  EXPECT_EQ(heap_caps_malloc(64, kA | MALLOC_CAP_8BIT), nullptr);
  ASSERT_EQ(g_failures.size(), 1u);
  EXPECT_EQ(g_failures[0].caps, kA | MALLOC_CAP_8BIT);
  EXPECT_EQ(g_failures[0].function, "heap_caps_malloc");
  // Queries count heaps whose combined caps hold every requested bit, at any level.
  EXPECT_EQ(heap_caps_get_total_size(kA), 4u * 2048u);
  EXPECT_EQ(heap_caps_get_total_size(kB), 2048u);
  EXPECT_EQ(heap_caps_get_total_size(kA | kB), 2048u);
  EXPECT_EQ(heap_caps_get_total_size(kA | MALLOC_CAP_8BIT), 0u);
  multi_heap_info_t info;
  heap_caps_get_info(&info, kA | kB);
  EXPECT_EQ(info.total_free_bytes, heap_caps_get_free_size(kA | kB));
  EXPECT_EQ(info.largest_free_block, heap_caps_get_largest_free_block(kA | kB));
  EXPECT_EQ(info.allocated_blocks, 0u);
  // A runtime heap with DEFAULT at level 0 comes before the boot DRAM heaps for malloc().
  auto *buf2 = static_cast<unsigned char *>(heap_caps_malloc(4096, MALLOC_CAP_8BIT));
  ASSERT_NE(buf2, nullptr);
  const std::uint32_t hd[3] = {MALLOC_CAP_DEFAULT, 0, MALLOC_CAP_8BIT | MALLOC_CAP_INTERNAL};
  ASSERT_EQ(heap_caps_add_region_with_caps(hd, reinterpret_cast<intptr_t>(buf2),
                                           reinterpret_cast<intptr_t>(buf2 + 4096)),
            ESP_OK);
  void *d = heap_caps_malloc_default(100);
  EXPECT_GE(static_cast<unsigned char *>(d), buf2);
  EXPECT_LT(static_cast<unsigned char *>(d), buf2 + 4096);
  // ... but for 8BIT it shares a bit only at level 2: DRAM (8BIT at level 0) goes first.
  void *e = heap_caps_malloc(100, MALLOC_CAP_8BIT);
  EXPECT_TRUE(static_cast<unsigned char *>(e) < buf2 ||
              static_cast<unsigned char *>(e) >= buf2 + 4096);
  heap_caps_free(d);
  heap_caps_free(e);
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
}

// §3.6: the default policy's failure reports. External allocations disabled: malloc_default,
// realloc_default and aligned_alloc_default are heap_caps_malloc / heap_caps_realloc /
// heap_caps_aligned_alloc over DEFAULT|INTERNAL (their names and caps). Enabled: one report with
// caps DEFAULT under the _default function's own name. Size 0 never reports.
TEST_F(CapsRules, DefaultPolicyFailureReports) {
  constexpr std::uint32_t kDI = MALLOC_CAP_DEFAULT | MALLOC_CAP_INTERNAL;
  for (const bool external : {false, true}) {
    SCOPED_TRACE(external);
    start("esp32", external ? 2 * 1024 * 1024 : 0);
    const std::size_t huge = heap_caps_get_total_size(0);
    void *p = heap_caps_malloc_default(64);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(heap_caps_malloc_default(huge), nullptr);
    expect_one_failure(huge, external ? MALLOC_CAP_DEFAULT : kDI,
                       external ? "heap_caps_malloc_default" : "heap_caps_malloc");
    EXPECT_EQ(heap_caps_realloc_default(p, huge), nullptr);
    expect_one_failure(huge, external ? MALLOC_CAP_DEFAULT : kDI,
                       external ? "heap_caps_realloc_default" : "heap_caps_realloc");
    EXPECT_EQ(heap_caps_aligned_alloc_default(16, huge), nullptr);
    expect_one_failure(huge, external ? MALLOC_CAP_DEFAULT : kDI,
                       external ? "heap_caps_aligned_alloc_default" : "heap_caps_aligned_alloc");
    EXPECT_EQ(heap_caps_malloc_default(0), nullptr);
    EXPECT_EQ(heap_caps_aligned_alloc_default(16, 0), nullptr);
    EXPECT_EQ(heap_caps_aligned_alloc_default(24, 16), nullptr);  // not a power of two
    EXPECT_EQ(heap_caps_realloc_default(nullptr, 0), nullptr);
    EXPECT_EQ(heap_caps_realloc_default(p, 0), nullptr);  // frees
    EXPECT_TRUE(g_failures.empty());
    EXPECT_TRUE(heap_caps_check_integrity_all(true));
  }
}

}  // namespace
