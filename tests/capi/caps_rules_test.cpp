// caps_rules_test.cpp — heap selection and capability rules of the ESP-IDF heap reference (spec
// §2, §3) pinned with exact values on the simulated chips.

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "capheap.h"
#include "capheap_host.h"
#include "esp_heap_caps.h"
#include "esp_heap_caps_init.h"

namespace {

struct Failure {
  std::size_t size;
  std::uint32_t caps;
  std::string function;
};
std::vector<Failure> g_failures;
void on_failure(size_t size, uint32_t caps, const char *function_name) {
  g_failures.push_back({size, caps, function_name != nullptr ? function_name : "(null)"});
}

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

}  // namespace
