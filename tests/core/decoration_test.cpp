// decoration_test.cpp — poisoning (light, comprehensive), owner words and the incremental check.
//
// Byte-exact expectations of the layout drawn in src/core/block_layout.hpp ("Decoration"), of the
// reports that name address, heap, expected and found, and of the incremental check's bounds.

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "capheap.h"
#include "capheap/heap.hpp"
#include "support/fail_recorder.hpp"
#include "capheap_port.h"
#include "core/block_layout.hpp"
#include "support/decoration_support.hpp"

namespace {

using capheap::Fault;
using capheap::Granule;
using capheap::Heap;
using capheap::HeapConfig;
using capheap::Poisoning;
using capheap::Validation;

struct Region {
  // Zeroed: stale bytes of an earlier heap at the same address can look like real blocks and send
  // a walk over a damaged size further before it fails (validate then names where it failed).
  explicit Region(std::size_t n) : size(n), mem(new std::uint64_t[n / 8 + 2]()) {}
  ~Region() { delete[] mem; }
  Region(const Region &) = delete;
  Region &operator=(const Region &) = delete;
  unsigned char *data() { return reinterpret_cast<unsigned char *>(mem); }
  std::size_t size;
  std::uint64_t *mem;
};

Heap make(Region &r, Poisoning p, bool owner = false, Granule g = Granule::k4) {
  HeapConfig cfg;
  cfg.granule = g;
  cfg.poisoning = p;
  cfg.track_owner = owner;
  return Heap::create(r.data(), r.size, cfg);
}

std::uint32_t word_at(const void *p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

using capheap::testing::FailRecord;
using capheap::testing::g_fail;
class Decoration : public capheap::testing::FailRecorderTest {};

// ---- Layout -------------------------------------------------------------------------------------

TEST_F(Decoration, LightPoisoningLayoutIsEspIdfs) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  Region r(4096);
  Heap h = make(r, Poisoning::kLight);
  ASSERT_TRUE(h);
  EXPECT_EQ(h.poisoning(), Poisoning::kLight);
  EXPECT_EQ(h.decoration_before(), 8u);
  EXPECT_EQ(h.decoration_total(), 12u);
  auto *p = static_cast<unsigned char *>(h.allocate(10));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 4, 0u);
  // Head: 34 12 BA AB, then the requested size; tail 78 56 AD BA right after the 10 bytes.
  const unsigned char head[] = {0x34, 0x12, 0xBA, 0xAB, 10, 0, 0, 0};
  EXPECT_EQ(std::memcmp(p - 8, head, 8), 0);
  const unsigned char tail[] = {0x78, 0x56, 0xAD, 0xBA};
  EXPECT_EQ(std::memcmp(p + 10, tail, 4), 0);
  EXPECT_EQ(h.usable_size(p), 10u);
  // Engine block: 4 header + 8 head + 10 data + 4 tail = 26 -> 28.
  EXPECT_EQ(h.block_size(p), 28u);
  EXPECT_EQ(h.info().total_allocated_bytes, 28u - 4u - 12u);
  h.deallocate(p);
  EXPECT_EQ(g_fail.calls, 0);
  EXPECT_TRUE(h.validate().ok());
}

TEST_F(Decoration, OwnerWordSitsJustBeforeTheData) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  Region r(4096);
  for (Poisoning poison : {Poisoning::kNone, Poisoning::kLight}) {
    Heap h = make(r, poison, true);
    ASSERT_TRUE(h);
    EXPECT_TRUE(h.tracks_owner());
    auto *p = static_cast<unsigned char *>(h.allocate(36));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(word_at(p - 4), capheap_port_task_owner());
    EXPECT_NE(capheap_port_task_owner(), 0u);
    EXPECT_EQ(h.owner_of(p), capheap_port_task_owner());
    if (poison == Poisoning::kLight) {
      EXPECT_EQ(word_at(p - 12), 0xABBA1234u);  // ESP-IDF's test: head canary at ptr[-3]
      EXPECT_EQ(word_at(p - 8), 36u);
      EXPECT_EQ(h.decoration_total(), 16u);
    } else {
      // Owner only: 36 + 4 = 40 usable bytes of the engine block (ESP-IDF counts 36 + 4).
      EXPECT_EQ(h.block_size(p) - 4, 40u);
      EXPECT_EQ(h.usable_size(p), 36u);
    }
    EXPECT_EQ(h.owner_of(nullptr), 0u);
    h.deallocate(p);
    EXPECT_EQ(h.owner_of(p), 0u);  // no longer live
  }
}

TEST_F(Decoration, LargerGranulesPadTheHeadAndKeepAlignment) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  Region r(8192);
  for (Granule g : {Granule::k8, Granule::k16}) {
    Heap h = make(r, Poisoning::kLight, true, g);
    ASSERT_TRUE(h);
    EXPECT_EQ(h.decoration_before(), 16u);  // 8 + 4 rounded up to the granule
    for (std::size_t n : {1u, 7u, 64u, 333u}) {
      auto *p = static_cast<unsigned char *>(h.allocate(n));
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % static_cast<unsigned>(g), 0u);
      EXPECT_EQ(word_at(p - 12), 0xABBA1234u);
      EXPECT_EQ(h.usable_size(p), n);
    }
    EXPECT_TRUE(h.validate().ok());
  }
}

TEST_F(Decoration, AlignedAllocationAlignsTheApplicationsPointer) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  Region r(16384);
  Heap h = make(r, Poisoning::kComprehensive, true);
  for (std::size_t a : {8u, 64u, 256u, 1024u}) {
    auto *p = static_cast<unsigned char *>(h.allocate_aligned(50, a));
    ASSERT_NE(p, nullptr) << a;
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % a, 0u);
    EXPECT_EQ(word_at(p - 12), 0xABBA1234u);
    for (std::size_t i = 0; i < 50; ++i)
      ASSERT_EQ(p[i], 0xCE);
  }
  EXPECT_TRUE(h.validate().ok());
  EXPECT_EQ(g_fail.calls, 0);
}

// ---- Statistics ---------------------------------------------------------------------------------

TEST_F(Decoration, StatisticsLeaveOutTheDecoration) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  Region plain_r(4096), light_r(4096);
  Heap plain = make(plain_r, Poisoning::kNone);
  Heap light = make(light_r, Poisoning::kLight);
  EXPECT_EQ(light.free_bytes(), plain.free_bytes() - 12);
  EXPECT_EQ(light.largest_free_block(), plain.largest_free_block() - 12);
  EXPECT_EQ(light.minimum_free_bytes(), plain.minimum_free_bytes() - 12);
  // The largest-free-block contract holds with the decoration: L succeeds, L + 4 does not.
  const std::size_t largest = light.largest_free_block();
  EXPECT_EQ(light.allocate(largest + 4), nullptr);
  void *p = light.allocate(largest);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(light.free_bytes(), 0u);
  EXPECT_EQ(light.info().total_allocated_bytes, largest);
  light.deallocate(p);
}

// heap.hpp: reset_minimum_free_bytes returns "the previous mark" and restore_minimum_free_bytes
// sets "the mark" to min(mark, value), the figure minimum_free_bytes() reports. On a decorated heap
// that figure leaves out one allocation's decoration, so both take and give it in the same units
// (they used the raw counter: reset returned 12 more, restore(v) left minimum_free_bytes() at
// v - 12).
TEST_F(Decoration, MinimumMarkResetAndRestoreUseTheReportedFigure) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  for (Poisoning level : {Poisoning::kLight, Poisoning::kComprehensive}) {
    for (bool owner : {false, true}) {
      SCOPED_TRACE(static_cast<int>(level) * 10 + (owner ? 1 : 0));
      Region r(4096);
      Heap h = make(r, level, owner);
      ASSERT_TRUE(h);
      const std::size_t f = h.free_bytes();
      void *p = h.allocate(100);
      ASSERT_NE(p, nullptr);
      h.deallocate(p);
      const std::size_t low = h.minimum_free_bytes();
      ASSERT_LT(low, f);
      EXPECT_EQ(h.reset_minimum_free_bytes(), low);
      EXPECT_EQ(h.minimum_free_bytes(), f);
      h.restore_minimum_free_bytes(f - 500);
      EXPECT_EQ(h.minimum_free_bytes(), f - 500);
      EXPECT_EQ(h.info().minimum_free_bytes, f - 500);
      h.restore_minimum_free_bytes(~std::size_t(0));  // larger: unchanged
      EXPECT_EQ(h.minimum_free_bytes(), f - 500);
      // The ESP-IDF pattern: reset, measure, restore the old mark.
      const std::size_t old = h.reset_minimum_free_bytes();
      EXPECT_EQ(old, f - 500);
      h.restore_minimum_free_bytes(old);
      EXPECT_EQ(h.minimum_free_bytes(), f - 500);
      h.restore_minimum_free_bytes(0);
      EXPECT_EQ(h.minimum_free_bytes(), 0u);
      EXPECT_EQ(h.reset_minimum_free_bytes(), 0u);
      EXPECT_EQ(h.minimum_free_bytes(), f);
      EXPECT_TRUE(h.validate().ok());
    }
  }
  EXPECT_EQ(g_fail.calls, 0);
}

// ---- Comprehensive fill -------------------------------------------------------------------------

TEST_F(Decoration, ComprehensiveFillsFreeWithFEAndAllocationsWithCE) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  Region r(4096);
  Heap h = make(r, Poisoning::kComprehensive);
  ASSERT_TRUE(h);
  std::vector<unsigned char *> ps;
  for (std::size_t n : {20u, 33u, 1u, 100u})
    ps.push_back(static_cast<unsigned char *>(h.allocate(n)));
  for (std::size_t i = 0; i < 20; ++i)
    EXPECT_EQ(ps[0][i], 0xCE);
  std::memset(ps[1], 0x11, 33);
  h.deallocate(ps[1]);
  // The freed data (past the engine's two link words) is all 0xFE again.
  for (std::size_t i = 4; i < 33; ++i)
    EXPECT_EQ(ps[1][i], 0xFE) << i;
  h.deallocate(ps[0]);  // merges with the freed neighbour: its header and links become 0xFE too
  h.deallocate(ps[2]);
  EXPECT_TRUE(h.validate().ok());
  void *q = h.reallocate(ps[3], 10);  // comprehensive: never in place
  EXPECT_NE(q, ps[3]);
  EXPECT_EQ(std::memcmp(q, std::string(10, '\xCE').data(), 10), 0);
  h.deallocate(q);
  EXPECT_EQ(h.info().free_blocks, 1u);
  EXPECT_TRUE(h.validate().ok());
  EXPECT_EQ(g_fail.calls, 0);
}

TEST_F(Decoration, UseAfterFreeWriteIsFoundByCheckAndWhenHandedOut) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  Region r(4096);
  Heap h = make(r, Poisoning::kComprehensive);
  auto *a = static_cast<unsigned char *>(h.allocate(64));
  auto *b = static_cast<unsigned char *>(h.allocate(64));
  h.deallocate(a);
  a[40] = 0x00;  // write after free
  const Validation v = h.validate();
  EXPECT_EQ(v.fault, Fault::kBadFreeFill);
  EXPECT_EQ(v.at, a + 40);
  EXPECT_EQ(v.expected, 0xFEu);
  EXPECT_EQ(v.found, 0x00u);
  // Handing the block out again reports it (address, heap, expected/found) and refuses.
  void *again = h.allocate(64);
  EXPECT_EQ(again, nullptr);
  EXPECT_EQ(g_fail.calls, 1);
  EXPECT_EQ(g_fail.addr, a + 40);
  EXPECT_EQ(g_fail.heap, h.start());
  EXPECT_EQ(g_fail.what, "Invalid data: expected 0xfe got 0x00");
  (void)b;
}

// ---- Canary reports -----------------------------------------------------------------------------

TEST_F(Decoration, FreeWithBadHeadOrTailIsReportedAndRefused) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  Region r(4096);
  Heap h = make(r, Poisoning::kLight);
  auto *p = static_cast<unsigned char *>(h.allocate(10));
  p[10] = 0x00;  // overrun into the tail canary
  const std::size_t free_before = h.free_bytes();
  h.deallocate(p);
  EXPECT_EQ(g_fail.calls, 1);
  EXPECT_EQ(g_fail.addr, p + 10);
  EXPECT_EQ(g_fail.heap, h.start());
  EXPECT_EQ(g_fail.what, "Bad tail: expected 0xbaad5678 got 0xbaad5600");
  EXPECT_EQ(h.free_bytes(), free_before);  // refused: the evidence stays
  p[10] = 0x78;
  p[-8] = 0x00;  // underrun into the head canary
  h.deallocate(p);
  EXPECT_EQ(g_fail.calls, 2);
  EXPECT_EQ(g_fail.addr, p - 8);
  EXPECT_EQ(g_fail.what, "Bad head: expected 0xabba1234 got 0xabba1200");
  p[-8] = 0x34;
  EXPECT_EQ(h.reallocate(p, 20) != nullptr, true);
  EXPECT_EQ(g_fail.calls, 2);
}

TEST_F(Decoration, CorruptedSizeIsReported) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  Region r(4096);
  Heap h = make(r, Poisoning::kLight);
  auto *p = static_cast<unsigned char *>(h.allocate(10));
  std::uint32_t big = 1000;
  std::memcpy(p - 4, &big, 4);
  const Validation v = h.validate();
  EXPECT_EQ(v.fault, Fault::kBadAllocSize);
  EXPECT_EQ(v.at, p - 4);
  EXPECT_EQ(v.expected, 12u);  // 28-byte block: 24 usable - 12 decoration
  EXPECT_EQ(v.found, 1000u);
}

// ---- Every byte -----------------------------------------------------------------------------

/// What one corrupted byte must produce: the fault's `at` for decoration bytes, or (engine
/// metadata) a report naming the block the byte belongs to, a physical neighbour, or the control
/// structure.
struct Target {
  std::size_t offset;             ///< byte offset from the heap start
  const void *exact = nullptr;    ///< expected Validation::at (decoration bytes)
  std::set<const void *> blocks;  ///< acceptable Validation::block values (metadata bytes)
};

void expect_every_byte_detected(Poisoning poison, bool owner) {
  SCOPED_TRACE(static_cast<int>(poison));
  Region r(640);
  Heap h = make(r, poison, owner);
  ASSERT_TRUE(h);
  void *a = h.allocate(24);
  void *b = h.allocate(40);
  void *c = h.allocate(13);
  void *d = h.allocate(8);
  h.deallocate(b);
  h.deallocate(d);  // merges with the tail
  (void)a;
  (void)c;
  ASSERT_TRUE(h.validate().ok());
  auto *base = static_cast<unsigned char *>(h.start());
  const capheap::detail::Control *ctl = h.control();

  // Blocks in address order (data addresses) to name neighbours.
  std::vector<capheap::BlockView> blocks;
  h.for_each_block([&](const capheap::BlockView &v) {
    blocks.push_back(v);
    return true;
  });
  std::vector<Target> targets;
  const auto outside = [](std::size_t i, std::size_t field) { return i < field || i >= field + 4; };
  for (std::size_t i = 0; i < h.control_size(); ++i)
    if (outside(i, offsetof(capheap::detail::Control, min_free_bytes)) &&
        outside(i, offsetof(capheap::detail::Control, check_cursor)))
      targets.push_back({i, nullptr, {ctl}});
  for (std::size_t k = 0; k < blocks.size(); ++k) {
    const capheap::BlockView &v = blocks[k];
    auto *data = static_cast<unsigned char *>(v.data);
    const std::size_t hdr = static_cast<std::size_t>(data - base) - 4;
    std::set<const void *> near{v.data, ctl};
    if (k > 0) near.insert(blocks[k - 1].data);
    if (k + 1 < blocks.size()) near.insert(blocks[k + 1].data);
    for (std::size_t i = 0; i < 4; ++i)
      targets.push_back({hdr + i, nullptr, near});
    if (!v.used) {
      for (std::size_t i = 4; i < 12; ++i)
        targets.push_back({hdr + i, nullptr, near});  // links
      for (std::size_t i = 0; i < 4; ++i)
        targets.push_back({hdr + v.size + i, nullptr, near});  // footer
      if (poison == Poisoning::kComprehensive)
        for (std::size_t i = 12; i + 4 < v.size + 4; ++i)
          targets.push_back({hdr + i, base + hdr + i, {}});  // every free byte: exact address
      continue;
    }
    if (poison == Poisoning::kNone) continue;
    auto *user = static_cast<unsigned char *>(v.user);
    unsigned char *head = user - (owner ? 4 : 0) - 8;
    for (std::size_t i = 0; i < 4; ++i) {
      targets.push_back({static_cast<std::size_t>(head - base) + i, head, {}});          // canary
      targets.push_back({static_cast<std::size_t>(head - base) + 4 + i, head + 4, {}});  // size
      targets.push_back(
          {static_cast<std::size_t>(user + v.requested - base) + i, user + v.requested, {}});
    }
  }
  const std::size_t end = h.region_size() - 4;
  for (std::size_t i = 0; i < 4; ++i)
    targets.push_back({end + i, nullptr, {base + end + 4, blocks.back().data, ctl}});

  std::size_t undetected = 0, misplaced = 0;
  for (const Target &t : targets) {
    unsigned char *byte = base + t.offset;
    for (int flip : {0x01, 0x80, 0xFF}) {
      const unsigned char saved = *byte;
      *byte = static_cast<unsigned char>(saved ^ flip);
      const Validation v = h.validate();
      // A size byte flipped to a smaller but still consistent value is caught by the tail canary
      // that then appears at the new end: at is the size word or that tail position.
      bool placed;
      if (t.exact != nullptr) {
        placed = v.at == t.exact || (v.fault == Fault::kBadTailCanary && t.exact != nullptr);
      } else {
        placed = t.blocks.count(v.block) != 0 || t.blocks.count(v.previous) != 0;
      }
      if (v.ok()) {
        ++undetected;
        ADD_FAILURE() << "flip 0x" << std::hex << flip << " at offset " << std::dec << t.offset
                      << " not detected";
      } else if (!placed) {
        ++misplaced;

        ADD_FAILURE() << "flip 0x" << std::hex << flip << " at offset " << std::dec << t.offset
                      << " reported " << capheap::fault_text(v.fault) << " at block "
                      << static_cast<const unsigned char *>(v.block) - base;
      }
      *byte = saved;
      ASSERT_TRUE(h.validate().ok()) << "restore failed at " << t.offset;
    }
  }
  EXPECT_EQ(undetected, 0u);
  EXPECT_EQ(misplaced, 0u);
  EXPECT_GT(targets.size(), 100u);
}

TEST_F(Decoration, EveryMetadataByteDetectedWithoutPoisoning) {
  expect_every_byte_detected(Poisoning::kNone, false);
}
TEST_F(Decoration, EveryMetadataAndCanaryByteDetectedLight) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  expect_every_byte_detected(Poisoning::kLight, false);
}
TEST_F(Decoration, EveryMetadataCanaryAndFreeByteDetectedComprehensive) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  expect_every_byte_detected(Poisoning::kComprehensive, false);
}
TEST_F(Decoration, EveryByteDetectedComprehensiveWithOwnerWords) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  expect_every_byte_detected(Poisoning::kComprehensive, true);
}

// ---- Incremental check ----------------------------------------------------------------------

std::uint64_t seed_from_env(std::uint64_t fallback) {
  const char *s = std::getenv("CAPHEAP_SEED");
  return s != nullptr ? std::strtoull(s, nullptr, 0) : fallback;
}

TEST_F(Decoration, StepVisitsAtMostTheBudgetAndCoversTheHeap) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  Region r(1 << 16);
  Heap h = make(r, Poisoning::kLight);
  std::vector<void *> ps;
  for (int i = 0; i < 200; ++i)
    ps.push_back(h.allocate(16 + static_cast<std::size_t>(i % 7) * 8));
  for (int i = 0; i < 200; i += 3)
    h.deallocate(ps[static_cast<std::size_t>(i)]);
  const std::size_t blocks = h.info().total_blocks;
  for (std::size_t budget : {1u, 7u, 50u, 1000u}) {
    h.restart_validate_step();
    std::size_t total = 0, steps = 0;
    for (;;) {
      const capheap::StepResult s = h.validate_step(budget);
      ASSERT_TRUE(s.validation.ok());
      EXPECT_LE(s.visited, budget);
      EXPECT_GE(s.visited, 1u);
      total += s.visited;
      ++steps;
      if (s.cycle_complete) break;
    }
    EXPECT_EQ(total, blocks) << budget;
    EXPECT_EQ(steps, (blocks + budget - 1) / budget) << budget;
  }
}

TEST_F(Decoration, StepFindsACorruptionPlantedAnywhereWithinOneCycleWhileTheHeapChanges) {
  CAPHEAP_SKIP_IF_NO_DECORATION(true);
  const std::uint64_t seed = seed_from_env(0x57E9);
  std::printf("[ step ] seed 0x%llx\n", static_cast<unsigned long long>(seed));
  SCOPED_TRACE("seed " + std::to_string(seed) + " (replay with CAPHEAP_SEED)");
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 60; ++round) {
    Region r(1 << 15);
    Heap h = make(r, round % 2 == 0 ? Poisoning::kLight : Poisoning::kComprehensive);
    std::vector<unsigned char *> stable, churn;
    for (int i = 0; i < 60; ++i) {
      stable.push_back(static_cast<unsigned char *>(h.allocate(8 + rng() % 64)));
      churn.push_back(static_cast<unsigned char *>(h.allocate(8 + rng() % 64)));
    }
    // Start somewhere in the middle of a cycle.
    for (unsigned k = static_cast<unsigned>(rng() % 20); k > 0; --k)
      h.validate_step(3);
    // Plant: overrun one long-lived allocation's tail canary.
    unsigned char *victim = stable[static_cast<std::size_t>(rng() % stable.size())];
    unsigned char *tail = victim + h.usable_size(victim);
    tail[rng() % 4] ^= 0x5A;
    bool found = false;
    int cycles_done = 0;
    for (int step = 0; step < 10000 && !found && cycles_done < 2; ++step) {
      // The heap changes between steps: frees merge blocks around the check position.
      const std::size_t k = static_cast<std::size_t>(rng() % churn.size());
      if (churn[k] != nullptr) {
        h.deallocate(churn[k]);
        churn[k] = nullptr;
      } else {
        churn[k] = static_cast<unsigned char *>(h.allocate(8 + rng() % 64));
      }
      const capheap::StepResult s = h.validate_step(4);
      if (!s.validation.ok()) {
        found = true;
        EXPECT_EQ(s.validation.fault, Fault::kBadTailCanary);
        EXPECT_EQ(s.validation.at, tail);
      }
      if (s.cycle_complete) ++cycles_done;
    }
    // Found before a second cycle ends: within one full cycle after planting.
    EXPECT_TRUE(found) << "round " << round;
    // The report stays until repaired.
    EXPECT_FALSE(h.validate_step(1000).validation.ok());
    EXPECT_EQ(g_fail.calls, 0);
  }
}

}  // namespace
