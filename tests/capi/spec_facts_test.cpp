// spec_facts_test.cpp — single facts of the ESP-IDF heap reference (spec §1.1, §1.3, §4.3, §4.5)
// pinned with exact values on the simulated ESP32: failure-callback arguments for oversize
// requests, the _prefer variants' reported caps, query results for MALLOC_CAP_INVALID, the local
// minimum monitor's repeated start, heap_caps_walk's per-heap stop, raw block sizes under
// poisoning and task tracking, the abort-on-failure text and multi_heap's NULL-handle answers.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "failure_capture.hpp"
#include "capheap.h"
#include "capheap_host.h"
#include "esp_heap_caps.h"
#include "multi_heap.h"
#include "support/decoration_support.hpp"

namespace {

using capheap_test::expect_one_failure;
using capheap_test::g_failures;
using capheap_test::on_failure;

/// The simulated ESP32 (no PSRAM) with the given poisoning and task tracking.
class SpecFacts : public ::testing::Test {
 protected:
  void SetUp() override { start(CAPHEAP_POISONING_NONE, false); }
  void TearDown() override { capheap_host_deinit(); }
  void start(capheap_poisoning_t poisoning, bool tracking) {
    capheap_host_deinit();
    capheap_host_config_t hc = CAPHEAP_HOST_CONFIG_DEFAULT;
    hc.psram_size = 0;
    hc.poisoning = poisoning;
    hc.task_tracking = tracking;
    ASSERT_EQ(capheap_host_init("esp32", &hc), ESP_OK);
    ASSERT_EQ(heap_caps_register_failed_alloc_callback(on_failure), ESP_OK);
    g_failures.clear();
  }
};

// §1.1: a size above HEAP_SIZE_MAX returns NULL and still runs the callback (size > 0), with the
// caller's size and caps and the public function's name.
TEST_F(SpecFacts, OversizeRequestsReturnNullAndReportTheirArguments) {
  EXPECT_EQ(heap_caps_malloc(SIZE_MAX, MALLOC_CAP_8BIT), nullptr);
  expect_one_failure(SIZE_MAX, MALLOC_CAP_8BIT, "heap_caps_malloc");
  EXPECT_EQ(heap_caps_malloc(SIZE_MAX - 2, MALLOC_CAP_32BIT), nullptr);  // no rounding overflow
  expect_one_failure(SIZE_MAX - 2, MALLOC_CAP_32BIT, "heap_caps_malloc");
  EXPECT_EQ(heap_caps_aligned_alloc(16, SIZE_MAX, MALLOC_CAP_8BIT), nullptr);
  expect_one_failure(SIZE_MAX, MALLOC_CAP_8BIT, "heap_caps_aligned_alloc");
  auto *p = static_cast<unsigned char *>(heap_caps_malloc(10, MALLOC_CAP_8BIT));
  ASSERT_NE(p, nullptr);
  std::memset(p, 0x5A, 10);
  EXPECT_EQ(heap_caps_realloc(p, SIZE_MAX, MALLOC_CAP_8BIT), nullptr);
  expect_one_failure(SIZE_MAX, MALLOC_CAP_8BIT, "heap_caps_realloc");
  for (unsigned i = 0; i < 10; ++i)
    EXPECT_EQ(p[i], 0x5A) << i;  // the original block is untouched
  heap_caps_free(p);
  EXPECT_EQ(heap_caps_malloc_default(SIZE_MAX), nullptr);  // external malloc disabled
  expect_one_failure(SIZE_MAX, MALLOC_CAP_DEFAULT | MALLOC_CAP_INTERNAL, "heap_caps_malloc");
  EXPECT_EQ(heap_caps_realloc_default(nullptr, SIZE_MAX), nullptr);
  expect_one_failure(SIZE_MAX, MALLOC_CAP_DEFAULT | MALLOC_CAP_INTERNAL, "heap_caps_realloc");
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
}

// §1.1 heap_caps_malloc_prefer: one callback with the caps tried last, or MALLOC_CAP_DEFAULT when
// no caps were given.
TEST_F(SpecFacts, PreferFailureReportsTheLastCapsTried) {
  EXPECT_EQ(heap_caps_malloc_prefer(SIZE_MAX, 2, MALLOC_CAP_8BIT, MALLOC_CAP_32BIT), nullptr);
  expect_one_failure(SIZE_MAX, MALLOC_CAP_32BIT, "heap_caps_malloc_prefer");
  EXPECT_EQ(heap_caps_malloc_prefer(100, 0), nullptr);
  expect_one_failure(100, MALLOC_CAP_DEFAULT, "heap_caps_malloc_prefer");
  // size 0 frees on the first attempt, without a callback.
  void *p = heap_caps_malloc(40, MALLOC_CAP_8BIT);
  ASSERT_NE(p, nullptr);
  const std::size_t free_with_p = heap_caps_get_free_size(MALLOC_CAP_8BIT);
  EXPECT_EQ(heap_caps_realloc_prefer(p, 0, 2, MALLOC_CAP_8BIT, MALLOC_CAP_32BIT), nullptr);
  EXPECT_EQ(heap_caps_get_free_size(MALLOC_CAP_8BIT), free_with_p + 44);
  EXPECT_TRUE(g_failures.empty());
}

// §1.1 heap_caps_realloc_prefer: size 0 frees "on the first attempt"; with no caps given (num 0)
// there is no attempt, so the block stays allocated and intact, and NULL comes back without a
// callback (size 0). With a size, num 0 reports MALLOC_CAP_DEFAULT and keeps the block too.
TEST_F(SpecFacts, ReallocPreferWithNoCapsLeavesTheBlockAllocated) {
  auto *p = static_cast<unsigned char *>(heap_caps_malloc(40, MALLOC_CAP_8BIT));
  ASSERT_NE(p, nullptr);
  std::memset(p, 0x3C, 40);
  const std::size_t free_with_p = heap_caps_get_free_size(MALLOC_CAP_8BIT);
  EXPECT_EQ(heap_caps_realloc_prefer(p, 0, 0), nullptr);
  EXPECT_TRUE(g_failures.empty());
  EXPECT_EQ(heap_caps_get_free_size(MALLOC_CAP_8BIT), free_with_p);
  EXPECT_EQ(heap_caps_get_allocated_size(p), 40u);
  EXPECT_EQ(heap_caps_realloc_prefer(p, 100, 0), nullptr);
  expect_one_failure(100, MALLOC_CAP_DEFAULT, "heap_caps_realloc_prefer");
  EXPECT_EQ(heap_caps_get_free_size(MALLOC_CAP_8BIT), free_with_p);
  for (unsigned i = 0; i < 40; ++i)
    EXPECT_EQ(p[i], 0x3C) << i;
  heap_caps_free(p);
  EXPECT_EQ(heap_caps_get_free_size(MALLOC_CAP_8BIT), free_with_p + 44);
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
}

// §1.1 / §2: MALLOC_CAP_INVALID matches no heap in the size and info queries, and every heap in
// check/dump/walk; an address outside every heap fails heap_caps_check_integrity_addr.
TEST_F(SpecFacts, InvalidCapsInQueriesAndIntegrityOfUnknownAddresses) {
  multi_heap_info_t info;
  std::memset(&info, 0xFF, sizeof info);
  heap_caps_get_info(&info, MALLOC_CAP_INVALID);
  EXPECT_EQ(info.total_free_bytes, 0u);
  EXPECT_EQ(info.total_allocated_bytes, 0u);
  EXPECT_EQ(info.largest_free_block, 0u);
  EXPECT_EQ(info.minimum_free_bytes, 0u);
  EXPECT_EQ(info.allocated_blocks, 0u);
  EXPECT_EQ(info.free_blocks, 0u);
  EXPECT_EQ(info.total_blocks, 0u);
  EXPECT_EQ(heap_caps_get_free_size(MALLOC_CAP_INVALID), 0u);
  EXPECT_EQ(heap_caps_get_total_size(MALLOC_CAP_INVALID), 0u);
  EXPECT_EQ(heap_caps_get_largest_free_block(MALLOC_CAP_INVALID), 0u);
  EXPECT_GT(heap_caps_get_free_size(0), 0u);  // caps 0: every heap
  EXPECT_TRUE(heap_caps_check_integrity(MALLOC_CAP_INVALID, true));
  static int not_heap_memory;
  EXPECT_FALSE(heap_caps_check_integrity_addr(reinterpret_cast<intptr_t>(&not_heap_memory), true));
}

// §1.1: the 2024 implementation answers ESP_OK to a second start (a new snapshot); stop without
// an active window is ESP_FAIL.
TEST_F(SpecFacts, LocalMinimumMonitorRestartIsOk) {
  EXPECT_EQ(heap_caps_monitor_local_minimum_free_size_stop(), ESP_FAIL);
  EXPECT_EQ(heap_caps_monitor_local_minimum_free_size_start(), ESP_OK);
  EXPECT_EQ(heap_caps_monitor_local_minimum_free_size_start(), ESP_OK);
  EXPECT_EQ(heap_caps_monitor_local_minimum_free_size_stop(), ESP_OK);
  EXPECT_EQ(heap_caps_monitor_local_minimum_free_size_stop(), ESP_FAIL);
}

// §1.1 heap_caps_walk: a callback returning false stops the current heap only; the walk goes on
// with the next heap.
TEST_F(SpecFacts, WalkerReturningFalseStopsOnlyTheCurrentHeap) {
  struct Seen {
    std::vector<intptr_t> heaps;  // heap of each block the callback saw
  };
  const auto record = [](walker_heap_into_t heap, walker_block_info_t, void *user) {
    static_cast<Seen *>(user)->heaps.push_back(heap.start);
    return true;
  };
  const auto record_and_stop = [](walker_heap_into_t heap, walker_block_info_t, void *user) {
    static_cast<Seen *>(user)->heaps.push_back(heap.start);
    return false;
  };
  void *a = heap_caps_malloc(100, MALLOC_CAP_8BIT);  // a heap of several blocks
  void *b = heap_caps_malloc(100, MALLOC_CAP_8BIT);
  ASSERT_TRUE(a != nullptr && b != nullptr);
  Seen all, stopped;
  heap_caps_walk_all(record, &all);
  heap_caps_walk_all(record_and_stop, &stopped);
  std::vector<intptr_t> distinct;
  for (intptr_t h : all.heaps)
    if (distinct.empty() || distinct.back() != h) distinct.push_back(h);
  ASSERT_GT(distinct.size(), 1u);
  EXPECT_GT(all.heaps.size(), distinct.size());
  EXPECT_EQ(stopped.heaps, distinct);  // exactly one block of every heap, in list order
  multi_heap_info_t info;
  heap_caps_get_info(&info, 0);
  EXPECT_EQ(all.heaps.size(), info.total_blocks);
  heap_caps_free(a);
  heap_caps_free(b);
}

// §1.1 heap_caps_walk and heap_caps_get_containing_block_size report the raw block (poison head
// and tail, owner word included: 16 + 8 + 4 with poisoning, + 4 with task tracking), while
// heap_caps_get_allocated_size stays the usable size.
TEST_F(SpecFacts, RawBlockFiguresIncludeDecoration) {
  struct Mode {
    capheap_poisoning_t poisoning;
    bool tracking;
    std::size_t head;  // bytes between the raw block and the user pointer
    std::size_t raw;   // raw block size of a 16-byte allocation
  };
  for (const Mode m :
       {Mode{CAPHEAP_POISONING_NONE, false, 0, 16}, Mode{CAPHEAP_POISONING_LIGHT, false, 8, 28},
        Mode{CAPHEAP_POISONING_NONE, true, 4, 20}, Mode{CAPHEAP_POISONING_LIGHT, true, 12, 32}}) {
    if (capheap::testing::decoration_missing(m.poisoning != CAPHEAP_POISONING_NONE || m.tracking))
      continue;  // a build without decoration support refuses these heaps
    SCOPED_TRACE(std::to_string(m.poisoning) + (m.tracking ? " tracking" : ""));
    ASSERT_NO_FATAL_FAILURE(start(m.poisoning, m.tracking));
    void *p = heap_caps_malloc(16, MALLOC_CAP_8BIT);
    ASSERT_NE(p, nullptr);
    struct Found {
      const unsigned char *user;
      const unsigned char *block = nullptr;
      std::size_t size = 0;
    } found{static_cast<unsigned char *>(p)};
    heap_caps_walk_all(
        [](walker_heap_into_t, walker_block_info_t b, void *user) {
          auto *f = static_cast<Found *>(user);
          const auto *start = static_cast<const unsigned char *>(b.ptr);
          if (b.used && f->user >= start && f->user < start + b.size) {
            f->block = start;
            f->size = b.size;
          }
          return true;
        },
        &found);
    ASSERT_NE(found.block, nullptr);
    EXPECT_EQ(static_cast<std::size_t>(found.user - found.block), m.head);
    EXPECT_EQ(found.size, m.raw);
    EXPECT_EQ(heap_caps_get_containing_block_size(p), m.raw);
    EXPECT_EQ(heap_caps_get_containing_block_size(static_cast<char *>(p) + 15), m.raw);
    EXPECT_EQ(heap_caps_get_allocated_size(p), 16u);
    // §4.3: the allocated bytes leave the decoration out.
    multi_heap_info_t before, after;
    heap_caps_free(p);
    heap_caps_get_info(&before, MALLOC_CAP_8BIT);
    p = heap_caps_malloc(32, MALLOC_CAP_8BIT);
    heap_caps_get_info(&after, MALLOC_CAP_8BIT);
    EXPECT_EQ(after.total_allocated_bytes - before.total_allocated_bytes, 32u);
    EXPECT_EQ(after.allocated_blocks - before.allocated_blocks, 1u);
    EXPECT_EQ(before.total_free_bytes - after.total_free_bytes, 32u + 4u + (m.raw - 16u));
    heap_caps_free(p);
    EXPECT_TRUE(heap_caps_check_integrity_all(true));
  }
}

// test_malloc.c "test get allocated size" (spec §6.2, §1.1, §1.3): for 1035, 1064 and 1541 bytes
// of MALLOC_CAP_DEFAULT, heap_caps_get_allocated_size is the size rounded up to 4, exactly, at
// every poisoning level (ESP-IDF runs it in every configuration) and with task tracking: the figure
// leaves the poisoning and the owner word out, it is not the requested size.
TEST_F(SpecFacts, AllocatedSizeIsTheRequestRoundedUpTo4AtEveryLevel) {
  for (const capheap_poisoning_t level :
       {CAPHEAP_POISONING_NONE, CAPHEAP_POISONING_LIGHT, CAPHEAP_POISONING_COMPREHENSIVE})
    for (const bool tracking : {false, true}) {
      if (capheap::testing::decoration_missing(level != CAPHEAP_POISONING_NONE || tracking))
        continue;  // a build without decoration support refuses these heaps
      SCOPED_TRACE(std::to_string(level) + (tracking ? " tracking" : ""));
      ASSERT_NO_FATAL_FAILURE(start(level, tracking));
      for (const std::size_t size : {std::size_t{1035}, std::size_t{1064}, std::size_t{1541}}) {
        void *p = heap_caps_malloc(size, MALLOC_CAP_DEFAULT);
        ASSERT_NE(p, nullptr);
        EXPECT_EQ(heap_caps_get_allocated_size(p), (size + 3) & ~std::size_t{3}) << size;
        heap_caps_free(p);
      }
      // Small and odd sizes: at least 12 usable bytes without poisoning (the minimum block),
      // the rounded size with it (the 12 bytes of poisoning fill the minimum block).
      for (const std::size_t size : {std::size_t{1}, std::size_t{5}, std::size_t{13}}) {
        void *p = heap_caps_malloc(size, MALLOC_CAP_DEFAULT);
        ASSERT_NE(p, nullptr);
        const std::size_t rounded = (size + 3) & ~std::size_t{3};
        const bool bare = level == CAPHEAP_POISONING_NONE && !tracking;
        EXPECT_EQ(heap_caps_get_allocated_size(p), bare ? std::max<std::size_t>(rounded, 12)
                                                   : level == CAPHEAP_POISONING_NONE
                                                       ? std::max<std::size_t>(rounded, 8)
                                                       : rounded)
            << size;
        heap_caps_free(p);
      }
      EXPECT_TRUE(heap_caps_check_integrity_all(true));
    }
}

// test_walker.c "heap walker corrupted heap detection" (spec §6.2, §1.1 heap_caps_walk): the size
// word of a block is overwritten with a size larger than the heap (0xFF000000). The walk hands that
// block to the callback as it reads it, so a callback that checks block.ptr + block.size against
// the heap's end sees the corruption and returns false; the walk then leaves that heap (never
// following the bad size) and goes on with the next heaps. At every poisoning level, with and
// without task tracking.
TEST_F(SpecFacts, WalkerHandsACorruptedBlockToTheCallback) {
  struct Mode {
    capheap_poisoning_t poisoning;
    bool tracking;
    std::size_t head;  // bytes between the size word's end and the user pointer
  };
  for (const Mode m :
       {Mode{CAPHEAP_POISONING_NONE, false, 0}, Mode{CAPHEAP_POISONING_LIGHT, false, 8},
        Mode{CAPHEAP_POISONING_COMPREHENSIVE, false, 8}, Mode{CAPHEAP_POISONING_NONE, true, 4},
        Mode{CAPHEAP_POISONING_LIGHT, true, 12}}) {
    if (capheap::testing::decoration_missing(m.poisoning != CAPHEAP_POISONING_NONE || m.tracking))
      continue;  // a build without decoration support refuses these heaps
    SCOPED_TRACE(std::to_string(m.poisoning) + (m.tracking ? " tracking" : ""));
    ASSERT_NO_FATAL_FAILURE(start(m.poisoning, m.tracking));
    auto *p = static_cast<unsigned char *>(heap_caps_malloc(16, MALLOC_CAP_DEFAULT));
    ASSERT_NE(p, nullptr);
    const std::uint32_t pass = 0x9876BAABu;
    std::memcpy(p, &pass, 4);
    struct Seen {
      Seen(const unsigned char *u, std::size_t h) : user(u), head(h) {}
      const unsigned char *user;
      std::size_t head;
      intptr_t bad_heap = 0;
      std::size_t bad_size = 0;
      const void *bad_ptr = nullptr;
      std::size_t found = 0;             // the test's block seen intact
      std::vector<intptr_t> heaps;       // every heap the walk entered, in order
      std::size_t blocks_after_bad = 0;  // blocks of the corrupted heap after the bad one
    };
    const auto walker = [](walker_heap_into_t heap, walker_block_info_t b, void *user) {
      auto *s = static_cast<Seen *>(user);
      if (s->heaps.empty() || s->heaps.back() != heap.start) s->heaps.push_back(heap.start);
      if (s->bad_heap == heap.start) ++s->blocks_after_bad;
      const auto start = reinterpret_cast<intptr_t>(b.ptr);
      if (b.size > static_cast<std::size_t>(heap.end - start)) {
        s->bad_heap = heap.start;
        s->bad_size = b.size;
        s->bad_ptr = b.ptr;
        return false;
      }
      if (b.used && b.ptr == s->user - s->head) ++s->found;
      return true;
    };
    Seen intact{p, m.head};
    heap_caps_walk_all(walker, &intact);
    EXPECT_EQ(intact.found, 1u);
    EXPECT_EQ(intact.bad_ptr, nullptr);
    const std::vector<intptr_t> all_heaps = intact.heaps;

    unsigned char *size_word = p - m.head - 4;
    std::uint32_t saved;
    std::memcpy(&saved, size_word, 4);
    const std::uint32_t huge = 0xFF000000u;
    std::memcpy(size_word, &huge, 4);
    Seen bad{p, m.head};
    heap_caps_walk_all(walker, &bad);
    EXPECT_EQ(bad.bad_ptr, static_cast<const void *>(p - m.head));
    EXPECT_EQ(bad.bad_size, std::size_t{0xFF000000u} - 4);  // the raw size, less the size word
    EXPECT_EQ(bad.blocks_after_bad, 0u);  // the callback said stop: nothing more of that heap
    EXPECT_EQ(bad.heaps, all_heaps);      // and the walk went on with the others
    EXPECT_EQ(bad.found, 0u);
    // heap_caps_walk of the block's caps, and multi_heap_walk, see it the same way.
    Seen by_caps{p, m.head};
    heap_caps_walk(MALLOC_CAP_DEFAULT, walker, &by_caps);
    EXPECT_EQ(by_caps.bad_ptr, static_cast<const void *>(p - m.head));
    EXPECT_FALSE(heap_caps_check_integrity_all(false));
    std::memcpy(size_word, &saved, 4);
    EXPECT_TRUE(heap_caps_check_integrity_all(true));
    heap_caps_free(p);
  }
}

// §1.1: with CONFIG_HEAP_ABORT_WHEN_ALLOCATION_FAILS the callback runs, then the system aborts
// with "Mem alloc fail. size 0x<8 hex> caps 0x<8 hex>" (lower-case hex).
TEST_F(SpecFacts, AbortOnFailurePrintsSizeAndCapsInLowerCaseHex) {
  EXPECT_DEATH(
      {
        capheap_set_abort_on_alloc_failure(true);
        (void)heap_caps_malloc(0x7fffffab, MALLOC_CAP_SPIRAM | MALLOC_CAP_EXEC);
      },
      "Mem alloc fail\\. size 0x7fffffab caps 0x00000401");
  capheap_set_abort_on_alloc_failure(false);
}

// §4.2: realloc changes a heap's free bytes by old block - new block and the minimum follows that
// net change; heap_caps_realloc resizing inside the pointer's heap (multi_heap_realloc) keeps it,
// even when the block moves. (Moves to another heap are malloc, copy, free in ESP-IDF too.)
TEST_F(SpecFacts, ReallocInsideTheHeapLowersTheMinimumByTheNetChangeOnly) {
  void *a = heap_caps_malloc(64, MALLOC_CAP_8BIT);  // block 68
  void *b = heap_caps_malloc(64, MALLOC_CAP_8BIT);  // right behind a: a cannot grow in place
  ASSERT_TRUE(a != nullptr && b != nullptr);
  ASSERT_EQ(static_cast<unsigned char *>(b), static_cast<unsigned char *>(a) + 68);
  const std::size_t f1 = heap_caps_get_free_size(MALLOC_CAP_8BIT);
  ASSERT_EQ(heap_caps_get_minimum_free_size(MALLOC_CAP_8BIT), f1);
  void *q = heap_caps_realloc(a, 200, MALLOC_CAP_8BIT);  // block 204, same heap
  ASSERT_NE(q, nullptr);
  EXPECT_NE(q, a);
  EXPECT_EQ(heap_caps_get_free_size(MALLOC_CAP_8BIT), f1 + 68 - 204);
  EXPECT_EQ(heap_caps_get_minimum_free_size(MALLOC_CAP_8BIT), f1 + 68 - 204);
  q = heap_caps_realloc(q, 100, MALLOC_CAP_8BIT);  // shrinks in place: the mark stays
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(heap_caps_get_minimum_free_size(MALLOC_CAP_8BIT), f1 + 68 - 204);
  heap_caps_free(q);
  heap_caps_free(b);
}

// §1.3: NULL handles and bad arguments of the multi_heap API.
TEST(SpecFactsMultiHeap, NullHandlesAndArgumentErrors) {
  alignas(16) static unsigned char region[8192];
  EXPECT_EQ(multi_heap_register(region + 1, 4096), nullptr);  // not 4-byte aligned
  EXPECT_EQ(multi_heap_register(region, 16), nullptr);        // too small
  multi_heap_handle_t h = multi_heap_register(region, sizeof region);
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(multi_heap_malloc(h, 0), nullptr);
  EXPECT_EQ(multi_heap_malloc(nullptr, 10), nullptr);
  EXPECT_EQ(multi_heap_aligned_alloc(h, 10, 0), nullptr);
  EXPECT_EQ(multi_heap_aligned_alloc(h, 10, 24), nullptr);
  EXPECT_EQ(multi_heap_aligned_alloc(h, 0, 8), nullptr);
  multi_heap_free(h, nullptr);
  multi_heap_free(nullptr, nullptr);
  EXPECT_EQ(multi_heap_free_size(nullptr), 0u);
  EXPECT_EQ(multi_heap_minimum_free_size(nullptr), 0u);
  multi_heap_info_t info;
  std::memset(&info, 0xFF, sizeof info);
  multi_heap_get_info(nullptr, &info);  // zeroed, stays zero
  EXPECT_EQ(info.total_free_bytes, 0u);
  EXPECT_EQ(info.total_allocated_bytes, 0u);
  EXPECT_EQ(info.largest_free_block, 0u);
  EXPECT_EQ(info.minimum_free_bytes, 0u);
  EXPECT_EQ(info.allocated_blocks, 0u);
  EXPECT_EQ(info.free_blocks, 0u);
  EXPECT_EQ(info.total_blocks, 0u);
  // reset returns the old minimum and sets it to the current free size; restore keeps the lower.
  void *big = multi_heap_malloc(h, 1000);
  ASSERT_NE(big, nullptr);
  multi_heap_free(h, big);
  const std::size_t low = multi_heap_minimum_free_size(h);
  const std::size_t now = multi_heap_free_size(h);
  ASSERT_LT(low, now);
  EXPECT_EQ(multi_heap_reset_minimum_free_bytes(h), low);
  EXPECT_EQ(multi_heap_minimum_free_size(h), now);
  multi_heap_restore_minimum_free_bytes(h, now + 100);
  EXPECT_EQ(multi_heap_minimum_free_size(h), now);
  multi_heap_restore_minimum_free_bytes(h, low);
  EXPECT_EQ(multi_heap_minimum_free_size(h), low);
  EXPECT_EQ(multi_heap_reset_minimum_free_bytes(nullptr), 0u);
}

}  // namespace
