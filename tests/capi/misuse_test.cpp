// misuse_test.cpp — the misuse suite (issue 5): every way an application can misuse the heap,
// through multi_heap_* and heap_caps_* (on the simulated ESP32), at every poisoning level.
//
// Per ESP-IDF's contract each misuse is detected or refused, never silent: a recording fail hook
// (capheap_set_fail_hook) receives the exact text, the address and the heap; refused operations
// leave the heap validating with its free size unchanged. Death tests cover the default host hook
// ("CORRUPT HEAP: <what> at <addr> (heap <heap>)" on stderr, then abort). Sizes at and near the
// limits return NULL and run the failed-allocation callback with ESP-IDF's size, caps and function
// name. docs/testing.md ("Misuse suite") lists every case and how it is detected.

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "capheap.h"
#include "capheap/caps.hpp"
#include "capheap_host.h"
#include "capi/capi_internal.hpp"
#include "esp_heap_caps.h"
#include "multi_heap.h"
#include "support/decoration_support.hpp"

namespace {

/// 2^bits as a size_t, or SIZE_MAX where size_t is narrower (32-bit builds).
constexpr std::size_t pow2_or_max(unsigned bits) {
  return bits < sizeof(std::size_t) * 8 ? std::size_t(1) << (bits % (sizeof(std::size_t) * 8))
                                        : ~std::size_t(0);
}

// ---- Recording hooks ----------------------------------------------------------------------------

struct Report {
  std::string what;
  const void *addr;
  const void *heap;
};
std::vector<Report> g_reports;
void record_fail(const char *what, const void *addr, const void *heap) {
  g_reports.push_back(Report{what != nullptr ? what : "(null)", addr, heap});
}

std::string g_out;
void capture(const char *text, std::size_t len) {
  g_out.append(text, len);
}

struct AllocFailure {
  std::size_t size;
  std::uint32_t caps;
  std::string function;
};
std::vector<AllocFailure> g_alloc_failures;
void on_alloc_failed(size_t size, uint32_t caps, const char *function_name) {
  g_alloc_failures.push_back(AllocFailure{size, caps, function_name});
}

std::string ptr_text(const void *p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", p);
  return buf;
}
std::string chip_text(const void *p) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", static_cast<unsigned>(capheap_host_to_chip(p)));
  return buf;
}

void put_u32(void *p, std::uint32_t v) {
  std::memcpy(p, &v, 4);
}
std::uint32_t get_u32(const void *p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

const char *level_name(capheap_poisoning_t level) {
  switch (level) {
    case CAPHEAP_POISONING_NONE:
      return "None";
    case CAPHEAP_POISONING_LIGHT:
      return "Light";
    case CAPHEAP_POISONING_COMPREHENSIVE:
      return "Comprehensive";
  }
  return "?";
}

// Exact texts of the engine's reports.
constexpr const char *kFreeBad = "free of a pointer that is not a block of this heap";
constexpr const char *kReallocBad = "realloc of a pointer that is not a block of this heap";
constexpr const char *kDoubleFree = "double free (block is already free)";
constexpr const char *kReallocFreed = "realloc of a freed block (block is already free)";

// ================================================================================================
// multi_heap_*: one 4096-byte heap, granule 4, at each poisoning level
// ================================================================================================

class MultiHeapMisuseSuite : public ::testing::TestWithParam<capheap_poisoning_t> {
 protected:
  void SetUp() override {
    CAPHEAP_SKIP_IF_NO_DECORATION(GetParam() != CAPHEAP_POISONING_NONE);
    g_reports.clear();
    g_out.clear();
    old_ = capheap_set_fail_hook(record_fail);
    capheap_set_print_hook(capture);
    capheap_heap_config_t cfg{};
    cfg.granule = 4;
    cfg.poisoning = GetParam();
    h_ = capheap_heap_register(mem_, sizeof mem_, &cfg);
    ASSERT_NE(h_, nullptr);
    // a | b | c | d | free tail: a..d in use, 32 bytes each, filled with a non-pattern.
    for (unsigned char *&p : blocks_) {
      p = static_cast<unsigned char *>(multi_heap_malloc(h_, 32));
      ASSERT_NE(p, nullptr);
      std::memset(p, 0x11, 32);
    }
    start_free_ = multi_heap_free_size(h_);
  }
  void TearDown() override {
    capheap_set_print_hook(nullptr);
    capheap_set_fail_hook(old_);
  }

  bool poisoned() const { return GetParam() != CAPHEAP_POISONING_NONE; }
  bool comprehensive() const { return GetParam() == CAPHEAP_POISONING_COMPREHENSIVE; }
  unsigned char *a() const { return blocks_[0]; }
  unsigned char *b() const { return blocks_[1]; }
  unsigned char *c() const { return blocks_[2]; }
  // Bytes between the application's data and the engine's block header: the poisoning head.
  std::size_t head() const { return poisoned() ? 8 : 0; }
  // Address of the engine header word of the allocation at p.
  unsigned char *header_of(unsigned char *p) const { return p - head() - 4; }

  // Exactly one report, with this text, address and the heap's handle as the heap.
  void expect_one_report(const std::string &what, const void *addr) {
    ASSERT_EQ(g_reports.size(), 1u) << (g_reports.empty() ? "" : g_reports[0].what);
    EXPECT_EQ(g_reports[0].what, what);
    EXPECT_EQ(g_reports[0].addr, addr);
    EXPECT_EQ(g_reports[0].heap, static_cast<const void *>(h_));
    g_reports.clear();
  }
  // The heap validates, prints nothing and its free size is `free`.
  void expect_intact(std::size_t free) {
    EXPECT_TRUE(multi_heap_check(h_, true)) << g_out;
    EXPECT_EQ(g_out, "");
    EXPECT_EQ(multi_heap_free_size(h_), free);
    EXPECT_TRUE(g_reports.empty());
  }
  // multi_heap_check fails and prints exactly `line`.
  void expect_check_prints(const std::string &line) {
    g_out.clear();
    EXPECT_FALSE(multi_heap_check(h_, true));
    EXPECT_EQ(g_out, line);
    g_out.clear();
  }
  std::string corrupt(const std::string &what, const void *at) const {
    return "CORRUPT HEAP: " + what + " at " + ptr_text(at) + " (heap " + ptr_text(h_) + ")\n";
  }

  alignas(16) unsigned char mem_[4096];
  multi_heap_handle_t h_ = nullptr;
  unsigned char *blocks_[4] = {};
  std::size_t start_free_ = 0;
  capheap_fail_hook_t old_ = nullptr;
};

INSTANTIATE_TEST_SUITE_P(Levels, MultiHeapMisuseSuite,
                         ::testing::Values(CAPHEAP_POISONING_NONE, CAPHEAP_POISONING_LIGHT,
                                           CAPHEAP_POISONING_COMPREHENSIVE),
                         [](const ::testing::TestParamInfo<capheap_poisoning_t> &i) {
                           return std::string(level_name(i.param));
                         });

TEST_P(MultiHeapMisuseSuite, DoubleFreeIsRefused) {
  multi_heap_free(h_, b());  // between two blocks in use: it stays a block of its own
  const std::size_t free = multi_heap_free_size(h_);
  multi_heap_free(h_, b());
  expect_one_report(kDoubleFree, b());
  expect_intact(free);
}

TEST_P(MultiHeapMisuseSuite, DoubleFreeOfAMergedBlockIsRefused) {
  multi_heap_free(h_, a());
  multi_heap_free(h_, b());  // merges into a's block: b's header is gone
  const std::size_t free = multi_heap_free_size(h_);
  multi_heap_free(h_, b());
  ASSERT_EQ(g_reports.size(), 1u);
  EXPECT_EQ(g_reports[0].addr, b());
  EXPECT_EQ(g_reports[0].heap, static_cast<const void *>(h_));
  EXPECT_EQ(g_reports[0].what, kDoubleFree);
  g_reports.clear();
  expect_intact(free);
}

TEST_P(MultiHeapMisuseSuite, FreeOutsideTheHeapIsRefused) {
  int local = 0;
  unsigned char other[64] = {};
  for (void *x : {static_cast<void *>(&local), static_cast<void *>(other + 16),
                  static_cast<void *>(mem_ + 8), static_cast<void *>(mem_ + sizeof mem_ + 64)}) {
    multi_heap_free(h_, x);
    expect_one_report(kFreeBad, x);
    EXPECT_EQ(multi_heap_realloc(h_, x, 16), nullptr);
    expect_one_report(kReallocBad, x);
    expect_intact(start_free_);
  }
}

TEST_P(MultiHeapMisuseSuite, InteriorPointerIsRefused) {
  for (std::size_t off : {1u, 2u, 4u, 8u, 12u, 16u, 28u}) {
    SCOPED_TRACE(off);
    multi_heap_free(h_, b() + off);
    expect_one_report(kFreeBad, b() + off);
    EXPECT_EQ(multi_heap_realloc(h_, b() + off, 64), nullptr);
    expect_one_report(kReallocBad, b() + off);
    expect_intact(start_free_);
    EXPECT_EQ(multi_heap_get_allocated_size(h_, b()), 32u);
  }
}

TEST_P(MultiHeapMisuseSuite, ReallocOfAFreedBlockIsRefused) {
  multi_heap_free(h_, b());
  const std::size_t free = multi_heap_free_size(h_);
  for (std::size_t size : {8u, 32u, 100u}) {
    EXPECT_EQ(multi_heap_realloc(h_, b(), size), nullptr);
    expect_one_report(kReallocFreed, b());
    expect_intact(free);
  }
}

// Without poisoning the first damage is the next block's header: the free of that neighbour, the
// free of the overflowing block itself and multi_heap_check all find it.
TEST_P(MultiHeapMisuseSuite, OverflowIntoTheNextBlock) {
  const std::size_t usable = multi_heap_get_allocated_size(h_, a());
  ASSERT_EQ(usable, 32u);
  if (!poisoned()) {
    unsigned char saved[4];
    std::memcpy(saved, a() + 32, 4);  // b's header
    std::memset(a() + 32, 0x41, 4);
    expect_check_prints(corrupt("bad block size", b()));
    multi_heap_free(h_, b());
    expect_one_report("bad block header (corrupted size)", b());
    multi_heap_free(h_, a());
    expect_one_report("next free block corrupted", a());
    EXPECT_EQ(multi_heap_realloc(h_, a(), 200), nullptr);
    expect_one_report("next free block corrupted", a());
    std::memcpy(a() + 32, saved, 4);
    expect_intact(start_free_);
    return;
  }
  // Poisoning: the tail canary right after the 32 requested bytes takes the first overflowing byte.
  a()[32] = 0x41;
  expect_check_prints("CORRUPT HEAP: Bad tail at " + ptr_text(a() + 32) +
                      ". Expected 0xbaad5678 got 0xbaad5641 (heap " + ptr_text(h_) + ")\n");
  multi_heap_free(h_, a());
  expect_one_report("Bad tail: expected 0xbaad5678 got 0xbaad5641", a() + 32);
  EXPECT_EQ(multi_heap_realloc(h_, a(), 8), nullptr);
  expect_one_report("Bad tail: expected 0xbaad5678 got 0xbaad5641", a() + 32);
  a()[32] = 0x78;
  expect_intact(start_free_);
  // Further: past the canary into b's header word (engine size field): b's own free finds it.
  unsigned char *hb = header_of(b());
  const std::uint32_t saved = get_u32(hb);
  put_u32(hb, 0x41414141u);
  expect_check_prints(corrupt("bad block size", b() - head()));
  multi_heap_free(h_, b());
  expect_one_report("bad block header (corrupted size)", b());
  put_u32(hb, saved);
  expect_intact(start_free_);
}

TEST_P(MultiHeapMisuseSuite, WriteAfterFreeIsFoundByCheckAndWhenHandedOutAgain) {
  if (!comprehensive()) GTEST_SKIP() << "only comprehensive poisoning keeps free memory filled";
  multi_heap_free(h_, b());
  const std::size_t free = multi_heap_free_size(h_);
  b()[20] = 0x42;
  expect_check_prints("CORRUPT HEAP: Invalid data at " + ptr_text(b() + 20) +
                      ". Expected 0xfefefefe got 0xfefefe42 (heap " + ptr_text(h_) + ")\n");
  // The same size gets the same block: refused, and the block stays free with the evidence.
  EXPECT_EQ(multi_heap_malloc(h_, 32), nullptr);
  expect_one_report("Invalid data: expected 0xfe got 0x42", b() + 20);
  EXPECT_EQ(multi_heap_free_size(h_), free);
  expect_check_prints("CORRUPT HEAP: Invalid data at " + ptr_text(b() + 20) +
                      ". Expected 0xfefefefe got 0xfefefe42 (heap " + ptr_text(h_) + ")\n");
  b()[20] = 0xFE;
  expect_intact(free);
  void *again = multi_heap_malloc(h_, 32);
  EXPECT_EQ(again, b());
  multi_heap_free(h_, again);
  expect_intact(free);
}

// The header of a block in use: multi_heap_check names the block; free and realloc of it are
// refused with the reason.
TEST_P(MultiHeapMisuseSuite, CorruptedHeaderIsFoundByCheckAndTheNextOperation) {
  unsigned char *hb = header_of(b());
  const std::uint32_t saved = get_u32(hb);
  put_u32(hb, 0x7FFFFFF0u);  // a size larger than the heap
  expect_check_prints(corrupt("bad block size", b() - head()));
  multi_heap_free(h_, b());
  expect_one_report("bad block header (corrupted size)", b());
  EXPECT_EQ(multi_heap_realloc(h_, b(), 16), nullptr);
  expect_one_report("bad block header (corrupted size)", b());
  put_u32(hb, saved | 2u);  // "previous block free", but a is in use
  expect_check_prints(corrupt("previous-block-free flag is wrong", b() - head()));
  multi_heap_free(h_, b());
  expect_one_report("bad previous free block (footer, header or links corrupted)", b());
  put_u32(hb, saved);
  expect_intact(start_free_);
}

// A free block's links: check names the block, and allocation from its list or a merge with it
// refuses instead of following the bad link.
TEST_P(MultiHeapMisuseSuite, CorruptedFreeListLinkIsFoundByCheckAndTheNextOperation) {
  multi_heap_free(h_, b());
  const std::size_t free = multi_heap_free_size(h_);
  unsigned char *link = header_of(b()) + 4;  // next-free link of b's free block
  const std::uint32_t saved = get_u32(link);
  put_u32(link, 0x00FF0000u);
  expect_check_prints(corrupt("free list link points to an invalid block", b() - head()));
  EXPECT_EQ(multi_heap_malloc(h_, 32), nullptr);
  expect_one_report("free list link points to an invalid block", b() - head());
  multi_heap_free(h_, a());  // merges with b
  expect_one_report("next free block corrupted", a());
  multi_heap_free(h_, c());  // merges with b
  expect_one_report("bad previous free block (footer, header or links corrupted)", c());
  EXPECT_EQ(multi_heap_free_size(h_), free);
  put_u32(link, saved);
  expect_intact(free);
}

TEST_P(MultiHeapMisuseSuite, CorruptedFooterIsFoundByCheckAndTheNextOperation) {
  multi_heap_free(h_, b());
  const std::size_t free = multi_heap_free_size(h_);
  const std::size_t block = multi_heap_get_full_block_size(h_, a());  // b's block is as large
  unsigned char *footer = header_of(b()) + block - 4;
  const std::uint32_t saved = get_u32(footer);
  put_u32(footer, saved + 8);
  expect_check_prints(corrupt("free block footer does not match its header", b() - head()));
  multi_heap_free(h_, c());  // c's predecessor is b: its footer leads to a wrong header
  expect_one_report("bad previous free block (footer, header or links corrupted)", c());
  EXPECT_EQ(multi_heap_free_size(h_), free);
  put_u32(footer, saved);
  expect_intact(free);
}

TEST_P(MultiHeapMisuseSuite, HugeSizesAndBadAlignmentsReturnNull) {
  const std::size_t sizes[] = {
      SIZE_MAX,        SIZE_MAX - 1,         SIZE_MAX - 15, SIZE_MAX / 2 + 1,
      pow2_or_max(32), std::size_t(1) << 31, sizeof mem_,   multi_heap_free_size(h_) + 1};
  for (std::size_t s : sizes) {
    SCOPED_TRACE(s);
    EXPECT_EQ(multi_heap_malloc(h_, s), nullptr);
    EXPECT_EQ(multi_heap_aligned_alloc(h_, s, 16), nullptr);
    EXPECT_EQ(multi_heap_aligned_alloc_offs(h_, s, 16, 8), nullptr);
    EXPECT_EQ(multi_heap_realloc(h_, a(), s), nullptr);
    EXPECT_EQ(multi_heap_realloc(h_, nullptr, s), nullptr);
  }
  for (std::size_t al : {std::size_t(0), std::size_t(3), std::size_t(24), std::size_t(100),
                         SIZE_MAX, std::size_t(1) << 20, pow2_or_max(63)}) {
    SCOPED_TRACE(al);
    EXPECT_EQ(multi_heap_aligned_alloc(h_, 16, al), nullptr);
    EXPECT_EQ(multi_heap_aligned_alloc_offs(h_, 16, al, 4), nullptr);
  }
  EXPECT_EQ(multi_heap_aligned_alloc_offs(h_, 16, 16, SIZE_MAX), nullptr);
  EXPECT_EQ(multi_heap_aligned_alloc_offs(h_, 16, 16, SIZE_MAX - 3), nullptr);
  for (int i = 0; i < 32; ++i)
    EXPECT_EQ(a()[i], 0x11) << "realloc failure must keep the block";
  expect_intact(start_free_);
}

// ================================================================================================
// heap_caps_*: the simulated ESP32, with each poisoning level
// ================================================================================================

constexpr std::uint32_t k8 = MALLOC_CAP_8BIT, k32 = MALLOC_CAP_32BIT, kI = MALLOC_CAP_INTERNAL,
                        kDma = MALLOC_CAP_DMA, kD = MALLOC_CAP_DEFAULT;

// The engine heap (its start, which the fail hook receives) of the heap_caps heap holding p, and
// the heap's region start (what heap_caps_check_integrity prints).
const void *heap_of(const void *p) {
  capheap::Registry &reg = capheap::capi::registry();
  const int i = reg.find_heap(p);
  return i < 0 ? nullptr : reg.view(static_cast<unsigned>(i)).heap.start();
}
const void *region_of(const void *p) {
  capheap::Registry &reg = capheap::capi::registry();
  const int i = reg.find_heap(p);
  return i < 0 ? nullptr : reinterpret_cast<const void *>(reg.view(static_cast<unsigned>(i)).start);
}

class CapsMisuseSuite : public ::testing::TestWithParam<capheap_poisoning_t> {
 protected:
  void SetUp() override {
    CAPHEAP_SKIP_IF_NO_DECORATION(GetParam() != CAPHEAP_POISONING_NONE);
    capheap_host_deinit();
    capheap_host_config_t cfg = CAPHEAP_HOST_CONFIG_DEFAULT;
    cfg.psram_size = 0;
    cfg.poisoning = GetParam();
    ASSERT_EQ(capheap_host_init("esp32", &cfg), ESP_OK);
    g_reports.clear();
    g_out.clear();
    g_alloc_failures.clear();
    old_ = capheap_set_fail_hook(record_fail);
    capheap_set_print_hook(capture);
    ASSERT_EQ(heap_caps_register_failed_alloc_callback(on_alloc_failed), ESP_OK);
    for (unsigned char *&p : blocks_) {
      p = static_cast<unsigned char *>(heap_caps_malloc(32, kI | k8));
      ASSERT_NE(p, nullptr);
      std::memset(p, 0x11, 32);
    }
    start_free_ = heap_caps_get_free_size(kD);
  }
  void TearDown() override {
    capheap_set_print_hook(nullptr);
    capheap_set_fail_hook(old_);
    capheap_host_deinit();
  }
  bool poisoned() const { return GetParam() != CAPHEAP_POISONING_NONE; }
  bool comprehensive() const { return GetParam() == CAPHEAP_POISONING_COMPREHENSIVE; }
  unsigned char *a() const { return blocks_[0]; }
  unsigned char *b() const { return blocks_[1]; }
  unsigned char *c() const { return blocks_[2]; }
  std::size_t head() const { return poisoned() ? 8 : 0; }
  unsigned char *header_of(unsigned char *p) const { return p - head() - 4; }
  void expect_one_report(const std::string &what, const void *addr, const void *heap) {
    ASSERT_EQ(g_reports.size(), 1u) << (g_reports.empty() ? "" : g_reports[0].what);
    EXPECT_EQ(g_reports[0].what, what);
    EXPECT_EQ(g_reports[0].addr, addr);
    EXPECT_EQ(g_reports[0].heap, heap);
    g_reports.clear();
  }
  void expect_intact(std::size_t free) {
    EXPECT_TRUE(heap_caps_check_integrity_all(true)) << g_out;
    EXPECT_EQ(g_out, "");
    EXPECT_EQ(heap_caps_get_free_size(kD), free);
    EXPECT_TRUE(g_reports.empty());
  }
  void expect_no_alloc_failure() {
    EXPECT_TRUE(g_alloc_failures.empty())
        << g_alloc_failures[0].function << " size " << g_alloc_failures[0].size;
    g_alloc_failures.clear();
  }
  void expect_one_alloc_failure(std::size_t size, std::uint32_t caps, const char *function) {
    ASSERT_EQ(g_alloc_failures.size(), 1u);
    EXPECT_EQ(g_alloc_failures[0].size, size);
    EXPECT_EQ(g_alloc_failures[0].caps, caps);
    EXPECT_EQ(g_alloc_failures[0].function, function);
    g_alloc_failures.clear();
  }

  unsigned char *blocks_[4] = {};
  std::size_t start_free_ = 0;
  capheap_fail_hook_t old_ = nullptr;
};

INSTANTIATE_TEST_SUITE_P(Levels, CapsMisuseSuite,
                         ::testing::Values(CAPHEAP_POISONING_NONE, CAPHEAP_POISONING_LIGHT,
                                           CAPHEAP_POISONING_COMPREHENSIVE),
                         [](const ::testing::TestParamInfo<capheap_poisoning_t> &i) {
                           return std::string(level_name(i.param));
                         });

TEST_P(CapsMisuseSuite, DoubleFreeIsRefused) {
  heap_caps_free(b());
  const std::size_t free = heap_caps_get_free_size(kD);
  heap_caps_free(b());
  expect_one_report(kDoubleFree, b(), heap_of(b()));
  expect_intact(free);
}

TEST_P(CapsMisuseSuite, FreeOutsideEveryHeapIsRefused) {
  int local = 0;
  static unsigned char other[64];
  for (void *x : {static_cast<void *>(&local), static_cast<void *>(other + 16)}) {
    heap_caps_free(x);
    expect_one_report("free() target pointer is outside heap areas", x, nullptr);
    EXPECT_EQ(heap_caps_realloc(x, 16, k8), nullptr);
    expect_one_report("realloc() pointer is outside heap areas", x, nullptr);
    expect_one_alloc_failure(16, k8, "heap_caps_realloc");
    expect_intact(start_free_);
  }
}

TEST_P(CapsMisuseSuite, InteriorPointerIsRefused) {
  for (std::size_t off : {1u, 4u, 8u, 16u}) {
    SCOPED_TRACE(off);
    heap_caps_free(b() + off);
    expect_one_report(kFreeBad, b() + off, heap_of(b()));
    EXPECT_EQ(heap_caps_realloc(b() + off, 64, k8), nullptr);
    expect_one_report(kReallocBad, b() + off, heap_of(b()));
    expect_one_alloc_failure(64, k8, "heap_caps_realloc");
    // Caps the block's heap does not have: the move path refuses the same way.
    EXPECT_EQ(heap_caps_realloc(b() + off, 64, kDma), nullptr);
    expect_one_report(kReallocBad, b() + off, heap_of(b()));
    expect_one_alloc_failure(64, kDma, "heap_caps_realloc");
    expect_intact(start_free_);
  }
}

TEST_P(CapsMisuseSuite, ReallocOfAFreedBlockIsRefused) {
  heap_caps_free(b());
  const std::size_t free = heap_caps_get_free_size(kD);
  for (std::uint32_t caps : {k8, kDma, k32}) {
    SCOPED_TRACE(caps);
    EXPECT_EQ(heap_caps_realloc(b(), 64, caps), nullptr);
    expect_one_report(kReallocFreed, b(), heap_of(b()));
    expect_one_alloc_failure(64, caps, "heap_caps_realloc");
    expect_intact(free);
  }
}

TEST_P(CapsMisuseSuite, OverflowIsFoundOnFree) {
  if (!poisoned()) {
    unsigned char *hb = header_of(b());
    const std::uint32_t saved = get_u32(hb);
    std::memset(a() + 32, 0x41, 4);  // b's header
    EXPECT_FALSE(heap_caps_check_integrity_all(true));
    EXPECT_EQ(g_out, "CORRUPT HEAP: bad block size at " + chip_text(b()) + " (heap " +
                         chip_text(region_of(b())) + ")\n");
    g_out.clear();
    heap_caps_free(b());
    expect_one_report("bad block header (corrupted size)", b(), heap_of(b()));
    heap_caps_free(a());
    expect_one_report("next free block corrupted", a(), heap_of(a()));
    put_u32(hb, saved);
    expect_intact(start_free_);
    return;
  }
  a()[32] = 0x41;
  EXPECT_FALSE(heap_caps_check_integrity_all(true));
  EXPECT_EQ(g_out, "CORRUPT HEAP: Bad tail at " + chip_text(a() + 32) +
                       ". Expected 0xbaad5678 got 0xbaad5641 (heap " + chip_text(region_of(a())) +
                       ")\n");
  g_out.clear();
  heap_caps_free(a());
  expect_one_report("Bad tail: expected 0xbaad5678 got 0xbaad5641", a() + 32, heap_of(a()));
  EXPECT_EQ(heap_caps_realloc(a(), 64, k8), nullptr);
  expect_one_report("Bad tail: expected 0xbaad5678 got 0xbaad5641", a() + 32, heap_of(a()));
  expect_one_alloc_failure(64, k8, "heap_caps_realloc");
  a()[32] = 0x78;
  expect_intact(start_free_);
}

TEST_P(CapsMisuseSuite, WriteAfterFreeIsFoundByCheckAndWhenHandedOutAgain) {
  if (!comprehensive()) GTEST_SKIP() << "only comprehensive poisoning keeps free memory filled";
  heap_caps_free(b());
  const std::size_t free = heap_caps_get_free_size(kD);
  b()[20] = 0x42;
  const std::string line = "CORRUPT HEAP: Invalid data at " + chip_text(b() + 20) +
                           ". Expected 0xfefefefe got 0xfefefe42 (heap " +
                           chip_text(region_of(b())) + ")\n";
  EXPECT_FALSE(heap_caps_check_integrity_all(true));
  EXPECT_EQ(g_out, line);
  g_out.clear();
  capheap_integrity_cursor_t cur = CAPHEAP_INTEGRITY_CURSOR_INIT(MALLOC_CAP_INVALID);
  bool found = false;
  for (int i = 0; i < 100 && !found; ++i)
    found = !capheap_check_integrity_step(&cur, 16, true);
  EXPECT_TRUE(found);
  EXPECT_EQ(g_out, line);
  g_out.clear();
  // Handed out again: reported once, and the allocation is served by another block.
  void *p = heap_caps_malloc(32, kI | k8);
  expect_one_report("Invalid data: expected 0xfe got 0x42", b() + 20, heap_of(b()));
  ASSERT_NE(p, nullptr);
  EXPECT_NE(p, b());
  heap_caps_free(p);
  EXPECT_EQ(heap_caps_get_free_size(kD), free);
  b()[20] = 0xFE;
  expect_intact(free);
}

TEST_P(CapsMisuseSuite, HugeSizesReturnNullWithTheCallback) {
  const std::size_t kMax = std::size_t(1) << 31;  // ESP-IDF's HEAP_SIZE_MAX
  for (std::size_t s : {SIZE_MAX, SIZE_MAX - 3, kMax + 1, kMax, std::size_t(4) << 20}) {
    SCOPED_TRACE(s);
    EXPECT_EQ(heap_caps_malloc(s, k8), nullptr);
    expect_one_alloc_failure(s, k8, "heap_caps_malloc");
    EXPECT_EQ(heap_caps_malloc(s, k32), nullptr);
    expect_one_alloc_failure(s, k32, "heap_caps_malloc");
    EXPECT_EQ(heap_caps_calloc(1, s, k8), nullptr);
    expect_one_alloc_failure(s, k8, "heap_caps_calloc");
    EXPECT_EQ(heap_caps_realloc(nullptr, s, k8), nullptr);
    expect_one_alloc_failure(s, k8, "heap_caps_realloc");
    EXPECT_EQ(heap_caps_realloc(a(), s, kDma), nullptr);
    expect_one_alloc_failure(s, kDma, "heap_caps_realloc");
    EXPECT_EQ(heap_caps_aligned_alloc(16, s, k8), nullptr);
    expect_one_alloc_failure(s, k8, "heap_caps_aligned_alloc");
    EXPECT_EQ(heap_caps_aligned_calloc(16, 1, s, k8), nullptr);
    expect_one_alloc_failure(s, k8, "heap_caps_aligned_alloc");
    EXPECT_EQ(heap_caps_malloc_prefer(s, 2, kDma, k8), nullptr);
    expect_one_alloc_failure(s, k8, "heap_caps_malloc_prefer");
    EXPECT_EQ(heap_caps_calloc_prefer(1, s, 2, kDma, k8), nullptr);
    expect_one_alloc_failure(s, k8, "heap_caps_calloc_prefer");
    EXPECT_EQ(heap_caps_realloc_prefer(a(), s, 2, kDma, k8), nullptr);
    expect_one_alloc_failure(s, k8, "heap_caps_realloc_prefer");
    EXPECT_EQ(heap_caps_malloc_default(s), nullptr);
    expect_one_alloc_failure(s, kD | kI, "heap_caps_malloc");
    EXPECT_EQ(heap_caps_realloc_default(a(), s), nullptr);
    expect_one_alloc_failure(s, kD | kI, "heap_caps_realloc");
    EXPECT_EQ(heap_caps_aligned_alloc_default(16, s), nullptr);
    expect_one_alloc_failure(s, kD | kI, "heap_caps_aligned_alloc");
    // The *_base entry points never run the callback.
    EXPECT_EQ(heap_caps_malloc_base(s, k8), nullptr);
    EXPECT_EQ(heap_caps_calloc_base(1, s, k8), nullptr);
    EXPECT_EQ(heap_caps_realloc_base(a(), s, k8), nullptr);
    EXPECT_EQ(heap_caps_aligned_alloc_base(16, s, k8), nullptr);
    expect_no_alloc_failure();
  }
  for (int i = 0; i < 32; ++i)
    ASSERT_EQ(a()[i], 0x11) << "a failed realloc keeps the block";
  EXPECT_TRUE(g_reports.empty());
  expect_intact(start_free_);
}

// heap_caps_calloc reports an overflowing n * size like any NULL result with size > 0 (spec §1.1:
// the report tests only size > 0), with the wrapped product; the other calloc variants return
// before allocating, without a callback.
TEST_P(CapsMisuseSuite, CallocOverflowReturnsNull) {
  const std::size_t half = SIZE_MAX / 2 + 1;
  for (std::size_t n :
       {half, SIZE_MAX, (pow2_or_max(63) == SIZE_MAX ? SIZE_MAX / 2 + 2 : pow2_or_max(63) + 1)}) {
    SCOPED_TRACE(n);
    EXPECT_EQ(heap_caps_calloc(n, 2, k8), nullptr);
    expect_one_alloc_failure(n * 2, k8, "heap_caps_calloc");
    EXPECT_EQ(heap_caps_calloc(2, n, k8), nullptr);
    expect_one_alloc_failure(2 * n, k8, "heap_caps_calloc");
    EXPECT_EQ(heap_caps_calloc(n, n, k8), nullptr);
    expect_one_alloc_failure(n * n, k8, "heap_caps_calloc");
    EXPECT_EQ(heap_caps_calloc_prefer(n, 2, 2, kDma, k8), nullptr);  // the caps tried last
    expect_one_alloc_failure(n * 2, k8, "heap_caps_calloc_prefer");
    EXPECT_EQ(heap_caps_aligned_calloc(16, n, 4, k8), nullptr);
    EXPECT_EQ(heap_caps_calloc_base(n, 4, k8), nullptr);
  }
  expect_no_alloc_failure();
  expect_intact(start_free_);
}

TEST_P(CapsMisuseSuite, BadAlignmentsReturnNull) {
  for (std::size_t al :
       {std::size_t(0), std::size_t(3), std::size_t(12), std::size_t(1000), SIZE_MAX}) {
    SCOPED_TRACE(al);
    EXPECT_EQ(heap_caps_aligned_alloc(al, 64, k8), nullptr);
    EXPECT_EQ(heap_caps_aligned_calloc(al, 4, 16, k8), nullptr);
    EXPECT_EQ(heap_caps_aligned_alloc_default(al, 64), nullptr);
    EXPECT_EQ(heap_caps_aligned_alloc_base(al, 64, k8), nullptr);
  }
  expect_no_alloc_failure();  // argument errors: no callback (as in ESP-IDF)
  // Powers of two larger than every heap: a valid request that fails, with the callback.
  for (std::size_t al :
       {std::size_t(1) << 20, std::size_t(1) << 31, pow2_or_max(40), pow2_or_max(63)}) {
    SCOPED_TRACE(al);
    EXPECT_EQ(heap_caps_aligned_alloc(al, 64, k8), nullptr);
    expect_one_alloc_failure(64, k8, "heap_caps_aligned_alloc");
    EXPECT_EQ(heap_caps_aligned_calloc(al, 4, 16, k8), nullptr);
    expect_one_alloc_failure(64, k8, "heap_caps_aligned_alloc");
    EXPECT_EQ(heap_caps_aligned_alloc_default(al, 64), nullptr);
    expect_one_alloc_failure(64, kD | kI, "heap_caps_aligned_alloc");
  }
  EXPECT_TRUE(g_reports.empty());
  expect_intact(start_free_);
}

// ================================================================================================
// The default host fail hook: prints the report and aborts
// ================================================================================================

std::string regex_escape(const std::string &s) {
  std::string out;
  for (char ch : s) {
    if (std::strchr("\\^$.|?*+()[]{}", ch) != nullptr) out += '\\';
    out += ch;
  }
  return out;
}

TEST(MisuseDeathTest, DoubleFreeAbortsWithTheDefaultHook) {
  ::testing::FLAGS_gtest_death_test_style = "fast";  // fork: the child has the same addresses
  alignas(16) static unsigned char mem[2048];
  multi_heap_handle_t h = multi_heap_register(mem, sizeof mem);
  ASSERT_NE(h, nullptr);
  void *p = multi_heap_malloc(h, 32);
  void *q = multi_heap_malloc(h, 32);
  multi_heap_free(h, p);
  const std::string expected = "CORRUPT HEAP: double free \\(block is already free\\) at " +
                               regex_escape(ptr_text(p)) + " \\(heap " + regex_escape(ptr_text(h)) +
                               "\\)";
  EXPECT_DEATH(multi_heap_free(h, p), expected);
  multi_heap_free(h, q);
  EXPECT_TRUE(multi_heap_check(h, true));
}

TEST(MisuseDeathTest, OutsideEveryHeapAbortsWithTheDefaultHook) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);               // its second half is a poisoning report
  ::testing::FLAGS_gtest_death_test_style = "fast";  // fork: the child has the same addresses
  capheap_host_deinit();
  capheap_host_config_t cfg = CAPHEAP_HOST_CONFIG_DEFAULT;
  cfg.psram_size = 0;
  cfg.poisoning = CAPHEAP_POISONING_LIGHT;
  ASSERT_EQ(capheap_host_init("esp32", &cfg), ESP_OK);
  int local = 0;
  EXPECT_DEATH(heap_caps_free(&local),
               "CORRUPT HEAP: free\\(\\) target pointer is outside heap areas at " +
                   regex_escape(ptr_text(&local)) + " \\(heap \\(nil\\)\\)");
  auto *p = static_cast<unsigned char *>(heap_caps_malloc(10, k8));
  ASSERT_NE(p, nullptr);
  p[10] = 0;
  EXPECT_DEATH(heap_caps_free(p), "CORRUPT HEAP: Bad tail: expected 0xbaad5678 got 0xbaad5600 at " +
                                      regex_escape(ptr_text(p + 10)) + " \\(heap " +
                                      regex_escape(ptr_text(heap_of(p))) + "\\)");
  p[10] = 0x78;
  heap_caps_free(p);
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
  capheap_host_deinit();
}

}  // namespace
