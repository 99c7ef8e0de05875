// poisoning_test.cpp — poisoning and integrity checks through the C APIs: capheap_heap_register
// with a poisoning level, heap_caps heaps on a simulated chip (capheap_host_config_t.poisoning and
// CAPHEAP_POISONING), ESP-IDF's CORRUPT HEAP texts, and the incremental checks
// (capheap_heap_check_step, capheap_check_integrity_step).

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "capheap.h"
#include "capheap_host.h"
#include "capheap_port.h"
#include "esp_heap_caps.h"
#include "multi_heap.h"
#include "support/decoration_support.hpp"

namespace {

std::string g_out;
void capture(const char *text, std::size_t len) {
  g_out.append(text, len);
}

std::string hex_ptr(const void *p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", p);
  return buf;
}
std::string chip_addr(const void *p) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", static_cast<unsigned>(capheap_host_to_chip(p)));
  return buf;
}

std::uint32_t word_at(const void *p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

int g_fails = 0;
void count_fail(const char *, const void *, const void *) {
  ++g_fails;
}

struct Region {
  explicit Region(std::size_t n) : size(n), mem(new std::uint64_t[n / 8 + 2]()) {}
  ~Region() { delete[] mem; }
  Region(const Region &) = delete;
  Region &operator=(const Region &) = delete;
  void *data() { return mem; }
  std::size_t size;
  std::uint64_t *mem;
};

class MultiHeapPoisoning : public ::testing::Test {
 protected:
  void SetUp() override {
    g_out.clear();
    g_fails = 0;
    capheap_set_print_hook(capture);
    old_ = capheap_set_fail_hook(count_fail);
  }
  void TearDown() override {
    capheap_set_print_hook(nullptr);
    capheap_set_fail_hook(old_);
  }
  multi_heap_handle_t make(Region &r, capheap_poisoning_t level, bool tracking = false) {
    capheap_heap_config_t cfg{};
    cfg.granule = 4;
    cfg.poisoning = level;
    cfg.task_tracking = tracking;
    return capheap_heap_register(r.data(), r.size, &cfg);
  }
  capheap_fail_hook_t old_ = nullptr;
};

TEST_F(MultiHeapPoisoning, RegisterRejectsAnUnknownLevel) {
  Region r(4096);
  capheap_heap_config_t cfg{};
  cfg.poisoning = static_cast<capheap_poisoning_t>(3);
  EXPECT_EQ(capheap_heap_register(r.data(), r.size, &cfg), nullptr);
}

TEST_F(MultiHeapPoisoning, LightAllocationCarriesEspIdfCanariesAndSizes) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  Region plain_r(4096), r(4096);
  multi_heap_handle_t plain = make(plain_r, CAPHEAP_POISONING_NONE);
  multi_heap_handle_t h = make(r, CAPHEAP_POISONING_LIGHT);
  ASSERT_NE(h, nullptr);
  auto *p = static_cast<unsigned char *>(multi_heap_malloc(h, 10));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(word_at(p - 8), 0xABBA1234u);
  EXPECT_EQ(word_at(p - 4), 10u);
  const unsigned char tail[] = {0x78, 0x56, 0xAD, 0xBA};
  EXPECT_EQ(std::memcmp(p + 10, tail, 4), 0);
  // ESP-IDF (spec §1.3): the block less its header and the 12 bytes of poisoning (28 - 4 - 12),
  // not the requested size.
  EXPECT_EQ(multi_heap_get_allocated_size(h, p), 12u);
  multi_heap_info_t pi, hi;
  void *q = multi_heap_malloc(plain, 10);
  multi_heap_get_info(plain, &pi);
  multi_heap_get_info(h, &hi);
  // 12 bytes more per block; free figures lose one allocation's 12 bytes of decoration.
  EXPECT_EQ(hi.total_free_bytes, pi.total_free_bytes - 12 - 12);
  EXPECT_EQ(hi.largest_free_block, pi.largest_free_block - 12 - 12);
  EXPECT_EQ(hi.total_allocated_bytes, 12u);  // 28-byte block: 24 usable - 12
  EXPECT_EQ(pi.total_allocated_bytes, 12u);  // 16-byte block: 12 usable
  EXPECT_TRUE(multi_heap_check(h, true));
  EXPECT_EQ(g_out, "");
  multi_heap_free(h, p);
  multi_heap_free(plain, q);
  EXPECT_EQ(g_fails, 0);
}

// Spec 4.3 with poisoning: total_free, largest and minimum each lose 12 bytes, floored at 0.
TEST_F(MultiHeapPoisoning, FreeFiguresAreFlooredAtZeroWhenTheHeapIsFull) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  Region r(4096);
  multi_heap_handle_t h = make(r, CAPHEAP_POISONING_LIGHT);
  ASSERT_NE(h, nullptr);
  multi_heap_info_t i;
  multi_heap_get_info(h, &i);
  void *p = multi_heap_malloc(h, i.largest_free_block);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(multi_heap_free_size(h), 0u);
  EXPECT_EQ(multi_heap_minimum_free_size(h), 0u);
  multi_heap_get_info(h, &i);
  EXPECT_EQ(i.total_free_bytes, 0u);
  EXPECT_EQ(i.largest_free_block, 0u);
  EXPECT_EQ(i.minimum_free_bytes, 0u);
  EXPECT_EQ(i.free_blocks, 0u);
  EXPECT_EQ(i.allocated_blocks, 1u);
  multi_heap_free(h, p);
  multi_heap_get_info(h, &i);
  EXPECT_GT(i.total_free_bytes, 0u);
  EXPECT_EQ(i.minimum_free_bytes, 0u);  // the low mark stays
  EXPECT_EQ(g_fails, 0);
}

// Spec 4.2 / 4.5: light poisoning resizes with multi_heap's realloc (the minimum follows the net
// change old - new block); comprehensive poisoning reallocates as malloc, copy, free, so its
// minimum counts both blocks.
TEST_F(MultiHeapPoisoning, ReallocMinimumIsNetForLightAndPeakForComprehensive) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  for (capheap_poisoning_t level : {CAPHEAP_POISONING_LIGHT, CAPHEAP_POISONING_COMPREHENSIVE}) {
    SCOPED_TRACE(level);
    Region r(4096);
    multi_heap_handle_t h = make(r, level);
    ASSERT_NE(h, nullptr);
    void *a = multi_heap_malloc(h, 64);  // block 4 + 12 + 64 = 80
    void *b = multi_heap_malloc(h, 64);  // keeps a from growing in place
    ASSERT_TRUE(a != nullptr && b != nullptr);
    const std::size_t f1 = multi_heap_free_size(h);
    ASSERT_EQ(multi_heap_minimum_free_size(h), f1);
    void *q = multi_heap_realloc(h, a, 200);  // block 216
    ASSERT_NE(q, nullptr);
    EXPECT_NE(q, a);
    EXPECT_EQ(multi_heap_free_size(h), f1 + 80 - 216);
    EXPECT_EQ(multi_heap_minimum_free_size(h),
              level == CAPHEAP_POISONING_LIGHT ? f1 + 80 - 216 : f1 - 216);
    EXPECT_TRUE(multi_heap_check(h, true));
    multi_heap_free(h, q);
    multi_heap_free(h, b);
  }
  EXPECT_EQ(g_fails, 0);
}

// multi_heap.h: reset returns the mark multi_heap_minimum_free_size reported, and restore takes a
// value in those units (both used the raw counter, 12 bytes of decoration apart).
TEST_F(MultiHeapPoisoning, ResetAndRestoreMinimumUseMinimumFreeSizesFigure) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  Region r(4096);
  multi_heap_handle_t h = make(r, CAPHEAP_POISONING_LIGHT);
  ASSERT_NE(h, nullptr);
  const std::size_t f = multi_heap_free_size(h);
  void *p = multi_heap_malloc(h, 100);  // block 4 + 12 + 100 = 116
  ASSERT_NE(p, nullptr);
  multi_heap_free(h, p);
  ASSERT_EQ(multi_heap_minimum_free_size(h), f - 116);
  EXPECT_EQ(multi_heap_reset_minimum_free_bytes(h), f - 116);
  EXPECT_EQ(multi_heap_minimum_free_size(h), f);
  multi_heap_restore_minimum_free_bytes(h, f - 500);
  EXPECT_EQ(multi_heap_minimum_free_size(h), f - 500);
  multi_heap_info_t i;
  multi_heap_get_info(h, &i);
  EXPECT_EQ(i.minimum_free_bytes, f - 500);
  EXPECT_EQ(multi_heap_reset_minimum_free_bytes(h), f - 500);
  EXPECT_TRUE(multi_heap_check(h, true));
  EXPECT_EQ(g_fails, 0);
}

TEST_F(MultiHeapPoisoning, CheckPrintsEspIdfsTextsWithTheHeap) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  Region r(4096);
  multi_heap_handle_t h = make(r, CAPHEAP_POISONING_COMPREHENSIVE);
  auto *p = static_cast<unsigned char *>(multi_heap_malloc(h, 10));
  auto *q = static_cast<unsigned char *>(multi_heap_malloc(h, 40));
  p[11] = 0x00;  // tail canary byte 1 (0x56)
  EXPECT_FALSE(multi_heap_check(h, true));
  EXPECT_EQ(g_out, "CORRUPT HEAP: Bad tail at " + hex_ptr(p + 10) +
                       ". Expected 0xbaad5678 got 0xbaad0078 (heap " + hex_ptr(h) + ")\n");
  p[11] = 0x56;
  g_out.clear();
  p[-8] = 0x35;
  EXPECT_FALSE(multi_heap_check(h, true));
  EXPECT_EQ(g_out, "CORRUPT HEAP: Bad head at " + hex_ptr(p - 8) +
                       ". Expected 0xabba1234 got 0xabba1235 (heap " + hex_ptr(h) + ")\n");
  p[-8] = 0x34;
  g_out.clear();
  multi_heap_free(h, q);
  q[20] = 0x42;  // write after free
  EXPECT_FALSE(multi_heap_check(h, true));
  EXPECT_EQ(g_out, "CORRUPT HEAP: Invalid data at " + hex_ptr(q + 20) +
                       ". Expected 0xfefefefe got 0xfefefe42 (heap " + hex_ptr(h) + ")\n");
  q[20] = 0xFE;
  g_out.clear();
  q[23] = 0x42;  // last byte of a word: the line still names the word (little-endian value)
  EXPECT_FALSE(multi_heap_check(h, true));
  EXPECT_EQ(g_out, "CORRUPT HEAP: Invalid data at " + hex_ptr(q + 20) +
                       ". Expected 0xfefefefe got 0x42fefefe (heap " + hex_ptr(h) + ")\n");
  q[23] = 0xFE;
  g_out.clear();
  const std::uint32_t big = 0x100;
  std::memcpy(p - 4, &big, 4);
  EXPECT_FALSE(multi_heap_check(h, true));
  EXPECT_EQ(g_out, "CORRUPT HEAP: Size at " + hex_ptr(p - 4) +
                       " expected <=0x0000000c got 0x00000100 (heap " + hex_ptr(h) + ")\n");
  const std::uint32_t ten = 10;
  std::memcpy(p - 4, &ten, 4);
  g_out.clear();
  EXPECT_TRUE(multi_heap_check(h, true));
  EXPECT_EQ(g_out, "");
  EXPECT_FALSE(multi_heap_check(h, false) == false);
}

TEST_F(MultiHeapPoisoning, BlockHandlesGiveTheApplicationsAddressAndOwner) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  Region r(4096), plain_r(4096);
  multi_heap_handle_t h = make(r, CAPHEAP_POISONING_LIGHT, true);
  multi_heap_handle_t plain = make(plain_r, CAPHEAP_POISONING_NONE);
  void *p = multi_heap_malloc(h, 24);
  void *q = multi_heap_malloc(plain, 24);
  multi_heap_block_handle_t b = multi_heap_get_first_block(h);
  ASSERT_NE(b, nullptr);
  EXPECT_FALSE(multi_heap_is_free(b));
  EXPECT_EQ(multi_heap_get_block_address(b), p);
  EXPECT_EQ(multi_heap_get_block_owner(b),
            reinterpret_cast<void *>(static_cast<std::uintptr_t>(capheap_port_task_owner())));
  multi_heap_block_handle_t rest = multi_heap_get_next_block(h, b);
  ASSERT_NE(rest, nullptr);
  EXPECT_TRUE(multi_heap_is_free(rest));
  EXPECT_EQ(multi_heap_get_block_owner(rest), nullptr);
  multi_heap_block_handle_t pb = multi_heap_get_first_block(plain);
  EXPECT_EQ(multi_heap_get_block_address(pb), q);
  EXPECT_EQ(multi_heap_get_block_owner(pb), nullptr);
  multi_heap_free(h, p);
  multi_heap_free(plain, q);
}

// Memory that held a poisoned heap registered again as a plain heap (a heap may be registered
// over any memory no heap uses any more): its block handles give the plain heap's addresses.
TEST_F(MultiHeapPoisoning, BlockHandlesOfAPlainHeapOverAnOldPoisonedHeapsMemory) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  Region r(8192);
  multi_heap_handle_t old = make(r, CAPHEAP_POISONING_LIGHT, true);
  ASSERT_NE(old, nullptr);
  multi_heap_handle_t h =
      capheap_heap_register(static_cast<unsigned char *>(r.data()) + 256, r.size - 256, nullptr);
  ASSERT_NE(h, nullptr);
  void *p = multi_heap_malloc(h, 24);
  multi_heap_block_handle_t b = multi_heap_get_first_block(h);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(multi_heap_get_block_address(b), p);
  EXPECT_EQ(multi_heap_get_block_owner(b), nullptr);
  multi_heap_free(h, p);
}

TEST_F(MultiHeapPoisoning, ComprehensiveFillsAndNeverReallocsInPlace) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  Region r(4096);
  multi_heap_handle_t h = make(r, CAPHEAP_POISONING_COMPREHENSIVE);
  auto *p = static_cast<unsigned char *>(multi_heap_malloc(h, 32));
  for (int i = 0; i < 32; ++i)
    ASSERT_EQ(p[i], 0xCE) << i;
  std::memset(p, 0x5A, 32);
  auto *q = static_cast<unsigned char *>(multi_heap_realloc(h, p, 16));
  ASSERT_NE(q, nullptr);
  EXPECT_NE(q, p);
  for (int i = 0; i < 16; ++i)
    ASSERT_EQ(q[i], 0x5A);
  EXPECT_EQ(multi_heap_get_allocated_size(h, q), 16u);
  EXPECT_TRUE(multi_heap_check(h, true));
  multi_heap_free(h, q);
  EXPECT_TRUE(multi_heap_check(h, true));
  EXPECT_EQ(g_fails, 0);
}

TEST_F(MultiHeapPoisoning, HeapCheckStepIsBoundedAndFindsCorruption) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  Region r(32768);
  multi_heap_handle_t h = make(r, CAPHEAP_POISONING_LIGHT);
  std::vector<unsigned char *> ps;
  for (int i = 0; i < 100; ++i)
    ps.push_back(static_cast<unsigned char *>(multi_heap_malloc(h, 20)));
  multi_heap_info_t info;
  multi_heap_get_info(h, &info);
  ASSERT_EQ(info.total_blocks, 101u);
  std::size_t visited = 0, total = 0;
  bool done = false;
  int steps = 0;
  while (!done) {
    ASSERT_TRUE(capheap_heap_check_step(h, 10, true, &visited, &done));
    EXPECT_LE(visited, 10u);
    total += visited;
    ++steps;
  }
  EXPECT_EQ(total, 101u);
  EXPECT_EQ(steps, 11);
  ps[77][20] ^= 0xFF;  // tail canary of block 77
  bool found = false;
  for (int s = 0; s < 11 && !found; ++s)
    found = !capheap_heap_check_step(h, 10, true, &visited, &done);
  EXPECT_TRUE(found);
  EXPECT_EQ(g_out, "CORRUPT HEAP: Bad tail at " + hex_ptr(ps[77] + 20) +
                       ". Expected 0xbaad5678 got 0xbaad5687 (heap " + hex_ptr(h) + ")\n");
  EXPECT_FALSE(capheap_heap_check_step(nullptr, 1, false, &visited, &done));
  EXPECT_EQ(visited, 0u);
}

// ---- heap_caps on the simulated ESP32 --------------------------------------------------------

class CapsPoisoning : public ::testing::Test {
 protected:
  void SetUp() override {
    CAPHEAP_SKIP_IF_NO_DECORATION(true);
    unsetenv("CAPHEAP_POISONING");
    unsetenv("CAPHEAP_TASK_TRACKING");
    capheap_host_deinit();
    g_out.clear();
  }
  void TearDown() override {
    capheap_set_print_hook(nullptr);
    capheap_host_deinit();
    unsetenv("CAPHEAP_POISONING");
  }
  void start(capheap_poisoning_t level) {
    capheap_host_config_t cfg = CAPHEAP_HOST_CONFIG_DEFAULT;
    cfg.psram_size = 0;
    cfg.poisoning = level;
    ASSERT_EQ(capheap_host_init("esp32", &cfg), ESP_OK);
    capheap_set_print_hook(capture);
  }
};

TEST_F(CapsPoisoning, HostConfigPoisonsEveryHeap) {
  start(CAPHEAP_POISONING_LIGHT);
  for (std::uint32_t caps : {std::uint32_t{MALLOC_CAP_DEFAULT}, std::uint32_t{MALLOC_CAP_DMA},
                             std::uint32_t{MALLOC_CAP_32BIT}}) {
    auto *p = static_cast<unsigned char *>(heap_caps_malloc(13, caps));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(word_at(p - 8), 0xABBA1234u);
    // ESP-IDF's figure: the 32-byte block less its header and the poisoning (13 + 12 rounded to
    // 28, + 4), 16 also for 32BIT requests, which are rounded up to whole words first.
    EXPECT_EQ(heap_caps_get_allocated_size(p), 16u);
    heap_caps_free(p);
  }
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
  EXPECT_EQ(g_out, "");
}

TEST_F(CapsPoisoning, EnvironmentSelectsComprehensive) {
  setenv("CAPHEAP_POISONING", "comprehensive", 1);
  capheap_host_config_t cfg = CAPHEAP_HOST_CONFIG_DEFAULT;
  cfg.psram_size = 0;
  ASSERT_EQ(capheap_host_init("esp32", &cfg), ESP_OK);
  auto *p = static_cast<unsigned char *>(heap_caps_malloc(64, MALLOC_CAP_8BIT));
  ASSERT_NE(p, nullptr);
  for (int i = 0; i < 64; ++i)
    ASSERT_EQ(p[i], 0xCE);
  heap_caps_free(p);
  EXPECT_EQ(p[30], 0xFE);  // freed memory is refilled
}

TEST_F(CapsPoisoning, IntegrityCheckPrintsChipAddresses) {
  start(CAPHEAP_POISONING_LIGHT);
  auto *p = static_cast<unsigned char *>(heap_caps_malloc(100, MALLOC_CAP_INTERNAL));
  p[100] = 0;  // overrun by one byte
  EXPECT_FALSE(heap_caps_check_integrity(MALLOC_CAP_INTERNAL, true));
  ASSERT_EQ(g_out.rfind("CORRUPT HEAP: Bad tail at " + chip_addr(p + 100) +
                            ". Expected 0xbaad5678 got 0xbaad5600 (heap 0x",
                        0),
            0u)
      << g_out;
  g_out.clear();
  EXPECT_FALSE(heap_caps_check_integrity_addr(reinterpret_cast<intptr_t>(p), false));
  EXPECT_EQ(g_out, "");
  p[100] = 0x78;
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
  heap_caps_free(p);
}

TEST_F(CapsPoisoning, IntegrityStepCoversEveryHeapWithinItsBudget) {
  start(CAPHEAP_POISONING_LIGHT);
  std::vector<unsigned char *> ps;
  for (int i = 0; i < 300; ++i)
    ps.push_back(static_cast<unsigned char *>(
        heap_caps_malloc(24, i % 2 ? MALLOC_CAP_DMA : MALLOC_CAP_32BIT)));
  // Blocks of every heap the step should visit in one cycle.
  std::size_t expected = 0;
  heap_caps_walk_all(
      [](walker_heap_into_t, walker_block_info_t, void *u) {
        ++*static_cast<std::size_t *>(u);
        return true;
      },
      &expected);
  capheap_integrity_cursor_t cur = CAPHEAP_INTEGRITY_CURSOR_INIT(MALLOC_CAP_INVALID);
  std::size_t total = 0;
  int steps = 0;
  while (cur.cycles == 0) {
    ASSERT_TRUE(capheap_check_integrity_step(&cur, 16, true));
    EXPECT_LE(cur.blocks_visited, 16u);
    total += cur.blocks_visited;
    ++steps;
    ASSERT_LT(steps, 10000);
  }
  // The step that completes a cycle may already have started the next one with its leftover
  // budget, so the total is at least every block once.
  EXPECT_GE(total, expected);
  EXPECT_LE(total, expected + 16);
  // A corruption planted anywhere is found within one more cycle.
  unsigned char *victim = ps[211];
  victim[24] ^= 0x01;
  const std::size_t cycles = cur.cycles;
  bool found = false;
  while (!found && cur.cycles <= cycles + 1)
    found = !capheap_check_integrity_step(&cur, 16, true);
  EXPECT_TRUE(found);
  EXPECT_EQ(g_out.rfind("CORRUPT HEAP: Bad tail at " + chip_addr(victim + 24), 0), 0u) << g_out;
  victim[24] ^= 0x01;
  EXPECT_TRUE(capheap_check_integrity_step(&cur, 16, true));
  EXPECT_FALSE(capheap_check_integrity_step(nullptr, 16, true));
  for (void *p : ps)
    heap_caps_free(p);
}

}  // namespace
