// misuse_test.cpp — engine-level cases of the misuse suite (tests/capi/misuse_test.cpp has the C
// API ones; docs/testing.md lists them all): damaged free-list links are refused by every path that
// would follow them (allocation, aligned allocation, merge on free, grow in place on realloc), the
// reports of interior pointers and of double frees after a merge, Heap::verify_live, and the
// comprehensive free fill found when a block is handed out again, at every granule.

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "capheap.h"
#include "capheap/heap.hpp"
#include "support/decoration_support.hpp"

namespace {

using capheap::Fault;
using capheap::Granule;
using capheap::Heap;
using capheap::HeapConfig;
using capheap::Poisoning;

struct Report {
  std::string what;
  const void *addr;
  const void *heap;
};
std::vector<Report> g_reports;
void record_fail(const char *what, const void *addr, const void *heap) {
  g_reports.push_back(Report{what, addr, heap});
}

std::uint32_t get_u32(const void *p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
void put_u32(void *p, std::uint32_t v) {
  std::memcpy(p, &v, 4);
}

class CoreMisuse : public ::testing::TestWithParam<Granule> {
 protected:
  void SetUp() override {
    g_reports.clear();
    old_ = capheap_set_fail_hook(record_fail);
  }
  void TearDown() override { capheap_set_fail_hook(old_); }
  Heap make(Poisoning p = Poisoning::kNone) {
    std::memset(mem_, 0, sizeof mem_);
    HeapConfig cfg;
    cfg.granule = GetParam();
    cfg.poisoning = p;
    return Heap::create(mem_, sizeof mem_, cfg);
  }
  void expect_one_report(const Heap &h, const std::string &what, const void *addr) {
    ASSERT_EQ(g_reports.size(), 1u) << (g_reports.empty() ? "" : g_reports[0].what);
    EXPECT_EQ(g_reports[0].what, what);
    EXPECT_EQ(g_reports[0].addr, addr);
    EXPECT_EQ(g_reports[0].heap, h.start());
    g_reports.clear();
  }

  alignas(16) unsigned char mem_[8192];
  capheap_fail_hook_t old_ = nullptr;
};

INSTANTIATE_TEST_SUITE_P(Granules, CoreMisuse,
                         ::testing::Values(Granule::k4, Granule::k8, Granule::k16),
                         [](const ::testing::TestParamInfo<Granule> &i) {
                           return "g" + std::to_string(static_cast<int>(i.param));
                         });

// a | b (free, its own list entry) | c | free tail. b's next link is damaged.
TEST_P(CoreMisuse, DamagedFreeListLinkIsNeverFollowed) {
  Heap h = make();
  auto *a = static_cast<unsigned char *>(h.allocate(40));
  auto *b = static_cast<unsigned char *>(h.allocate(40));
  auto *c = static_cast<unsigned char *>(h.allocate(40));
  ASSERT_TRUE(a && b && c);
  h.deallocate(b);
  const std::size_t free = h.free_bytes();
  const std::uint32_t saved = get_u32(b);  // next-free link: the first data word of a free block
  for (std::uint32_t bad : {0x00FF0000u, 0xFFFFFFF0u, static_cast<std::uint32_t>(c - mem_)}) {
    SCOPED_TRACE(bad);
    put_u32(b, bad);
    const capheap::Validation v = h.validate();
    EXPECT_EQ(v.fault, Fault::kBadFreeLink);
    EXPECT_EQ(v.block, b);
    EXPECT_EQ(h.allocate(40), nullptr);  // b is the exact fit
    expect_one_report(h, "free list link points to an invalid block", b);
    EXPECT_EQ(h.allocate_aligned(40, h.granule()), nullptr);
    expect_one_report(h, "free list link points to an invalid block", b);
    h.deallocate(a);  // would merge with b
    expect_one_report(h, "next free block corrupted", a);
    h.deallocate(c);  // would merge with b
    expect_one_report(h, "bad previous free block (footer, header or links corrupted)", c);
    EXPECT_EQ(h.reallocate(a, 60), nullptr);  // would grow into b
    expect_one_report(h, "next free block corrupted", a);
    EXPECT_FALSE(h.verify_live(a));
    expect_one_report(h, "next free block corrupted", a);
    EXPECT_EQ(h.free_bytes(), free);
  }
  put_u32(b, saved);
  EXPECT_TRUE(h.validate().ok());
  EXPECT_TRUE(h.verify_live(a));
  EXPECT_TRUE(g_reports.empty());
  h.deallocate(a);
  h.deallocate(c);
  EXPECT_EQ(h.info().free_blocks, 1u);
  EXPECT_TRUE(h.validate().ok());
  EXPECT_TRUE(g_reports.empty());
}

TEST_P(CoreMisuse, InteriorPointersAndDoubleFreesAfterAMergeAreNamedAsSuch) {
  Heap h = make();
  auto *a = static_cast<unsigned char *>(h.allocate(64));
  auto *b = static_cast<unsigned char *>(h.allocate(64));
  ASSERT_TRUE(a && b);
  std::memset(a, 0xFF, 64);  // data that looks like "free" headers
  const std::size_t g = h.granule();
  for (std::size_t off = g; off < 64; off += g) {
    h.deallocate(a + off);
    expect_one_report(h, "free of a pointer that is not a block of this heap", a + off);
    EXPECT_EQ(h.reallocate(a + off, 8), nullptr);
    expect_one_report(h, "realloc of a pointer that is not a block of this heap", a + off);
    EXPECT_FALSE(h.verify_live(a + off));
    expect_one_report(h, "realloc of a pointer that is not a block of this heap", a + off);
  }
  h.deallocate(a);
  h.deallocate(b);  // merges into a's block and the tail: b's header is inside a free block now
  const std::size_t free = h.free_bytes();
  h.deallocate(b);
  expect_one_report(h, "double free (block is already free)", b);
  EXPECT_EQ(h.reallocate(b, 8), nullptr);
  expect_one_report(h, "realloc of a freed block (block is already free)", b);
  EXPECT_EQ(h.free_bytes(), free);
  EXPECT_TRUE(h.validate().ok());
}

TEST_P(CoreMisuse, WriteAfterFreeFoundWhenHandedOutLeavesTheHeapAsItWas) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  Heap h = make(Poisoning::kComprehensive);
  auto *a = static_cast<unsigned char *>(h.allocate(64));
  auto *b = static_cast<unsigned char *>(h.allocate(64));
  auto *c = static_cast<unsigned char *>(h.allocate(64));
  ASSERT_TRUE(a && b && c);
  h.deallocate(b);
  const std::size_t free = h.free_bytes();
  const capheap::HeapInfo before = h.info();
  b[40] = 0x00;
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(h.allocate(64), nullptr);
    expect_one_report(h, "Invalid data: expected 0xfe got 0x00", b + 40);
    EXPECT_EQ(h.free_bytes(), free);
    EXPECT_EQ(h.info().free_blocks, before.free_blocks);
    const capheap::Validation v = h.validate();
    EXPECT_EQ(v.fault, Fault::kBadFreeFill);
    EXPECT_EQ(v.at, b + 40);
  }
  // A smaller request takes the front of the block, short of the bad byte: served; freed again, the
  // pieces merge and the bad byte is still found.
  void *small = h.allocate(20);
  EXPECT_EQ(small, b);
  EXPECT_TRUE(g_reports.empty());
  h.deallocate(small);
  EXPECT_EQ(h.validate().at, b + 40);
  EXPECT_EQ(h.free_bytes(), free);
  b[40] = 0xFE;
  EXPECT_TRUE(h.validate().ok());
  EXPECT_EQ(h.free_bytes(), free);
  EXPECT_EQ(h.allocate(64), b);
  EXPECT_TRUE(g_reports.empty());
}

TEST_P(CoreMisuse, VerifyLiveChecksCanariesLikeRealloc) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  Heap h = make(Poisoning::kLight);
  auto *p = static_cast<unsigned char *>(h.allocate(10));
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(h.verify_live(p));
  p[10] = 0x11;
  EXPECT_FALSE(h.verify_live(p));
  expect_one_report(h, "Bad tail: expected 0xbaad5678 got 0xbaad5611", p + 10);
  p[10] = 0x78;
  EXPECT_TRUE(h.verify_live(p));
  h.deallocate(p);
  EXPECT_FALSE(h.verify_live(p));
  expect_one_report(h, "realloc of a freed block (block is already free)", p);
  EXPECT_FALSE(h.verify_live(nullptr));
  EXPECT_TRUE(g_reports.empty());
}

}  // namespace
