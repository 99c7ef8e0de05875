// engine_tests.cpp — the engine (capheap::Heap) on the target: the documented geometry with exact
// figures (the same on every 32-bit target as on a 64-bit host: offsets, not pointers), allocation
// and free at exact offsets, realloc, aligned allocation, the always-on checks, validate()'s
// damage detection, decoration with odd sizes (bytewise canaries: an unaligned word access would
// fault on the Cortex-M0+), and the seeded stress rig with validate() around every operation.
#include <cstring>
#include <initializer_list>

#include "capheap/heap.hpp"
#include "fail_capture.hpp"
#include "harness.hpp"
#include "target_memory.hpp"

namespace {

using capheap::Granule;
using capheap::Heap;
using capheap::HeapConfig;
using capheap::Poisoning;
using capheap_target::FailCapture;
using capheap_target::Rng;

// 1024-aligned, so that aligned allocations land at the same offsets on every target.
alignas(1024) unsigned char g_region[256 * 1024 + 64];

HeapConfig config(Granule g, Poisoning p = Poisoning::kNone, bool owner = false) {
  HeapConfig c;
  c.granule = g;
  c.poisoning = p;
  c.track_owner = owner;
  return c;
}

std::size_t offset_of(const void *p, const void *base) {
  return static_cast<std::size_t>(static_cast<const unsigned char *>(p) -
                                  static_cast<const unsigned char *>(base));
}

}  // namespace

// Control structure and free space for regions of every size class, as on the host (the design's
// "same layout on a 32-bit MCU and a 64-bit host").
TARGET_TEST(Engine, GeometryMatchesTheHost) {
  struct Row {
    std::size_t region;
    Granule g;
    std::size_t control, free_bytes;
  } const rows[] = {
      {88, Granule::k4, 52, 28},         {88, Granule::k16, 52, 16},
      {4096, Granule::k4, 176, 3916},    {4096, Granule::k16, 160, 3920},
      {8192, Granule::k4, 344, 7844},    {8192, Granule::k8, 308, 7880},
      {8192, Granule::k16, 276, 7904},   {65536, Granule::k4, 772, 64760},
      {65536, Granule::k16, 640, 64880}, {262144, Granule::k4, 904, 261236},
  };
  for (const Row &r : rows) {
    Heap h = Heap::create(g_region, r.region, config(r.g));
    REQUIRE(h);
    CHECK_EQ(h.control_size(), r.control);
    CHECK_EQ(h.free_bytes(), r.free_bytes);
    CHECK_EQ(h.largest_free_block(), r.free_bytes - 4);
    CHECK_EQ(h.minimum_free_bytes(), r.free_bytes);
    CHECK(h.validate().ok());
  }
  // A 4 MiB region (external RAM): the largest table.
  Heap big = Heap::create(capheap_target::ext_ram(), 4u << 20, config(Granule::k4));
  REQUIRE(big);
  CHECK_EQ(big.control_size(), 2156u);
  CHECK_EQ(big.free_bytes(), 4192144u);
  CHECK_EQ(big.largest_free_block(), 4192140u);
  void *p = big.allocate(3u << 20);
  REQUIRE(p != nullptr);
  CHECK_EQ(big.usable_size(p), 3u << 20);
  big.deallocate(p);
  CHECK(big.validate().ok());
  // Too small or misaligned: refused.
  CHECK(!Heap::create(g_region, 60, config(Granule::k4)));
  CHECK(!Heap::create(g_region + 2, 4096, config(Granule::k4)));
  CHECK(!Heap::create(nullptr, 4096, config(Granule::k4)));
}

TARGET_TEST(Engine, AllocationsLandAtExactOffsets) {
  Heap h = Heap::create(g_region, 8192, config(Granule::k4));
  REQUIRE(h);
  void *a = h.allocate(100);
  void *b = h.allocate(1);
  void *d = h.allocate(13);
  REQUIRE(a != nullptr && b != nullptr && d != nullptr);
  CHECK_EQ(offset_of(a, g_region), 348u);  // control 344 + header 4
  CHECK_EQ(offset_of(b, g_region), 452u);  // a's block: 104 bytes
  CHECK_EQ(offset_of(d, g_region), 468u);  // b's block: the 16-byte minimum
  CHECK_EQ(h.usable_size(a), 100u);
  CHECK_EQ(h.usable_size(b), 12u);
  CHECK_EQ(h.usable_size(d), 16u);
  CHECK_EQ(h.free_bytes(), 7704u);
  // The next free data address is offset 488: aligning to 1024 leaves a 536-byte gap in front,
  // which becomes a free block of its own.
  void *e = h.allocate_aligned(64, 1024);
  REQUIRE(e != nullptr);
  CHECK_EQ(reinterpret_cast<std::uintptr_t>(e) % 1024, 0u);
  CHECK_EQ(offset_of(e, g_region), 1024u);
  const capheap::HeapInfo i = h.info();
  CHECK_EQ(i.total_free_bytes, 7636u);
  CHECK_EQ(i.total_allocated_bytes, 192u);
  CHECK_EQ(i.largest_free_block, 7096u);  // 7704 - 536 (gap) - 68 (e) - 4 (header)
  CHECK_EQ(i.minimum_free_bytes, 7636u);
  CHECK_EQ(i.allocated_blocks, 4u);
  CHECK_EQ(i.free_blocks, 2u);
  CHECK_EQ(i.total_blocks, 6u);
  for (void *p : {a, b, d, e})
    h.deallocate(p);
  CHECK_EQ(h.free_bytes(), 7844u);
  CHECK_EQ(h.info().free_blocks, 1u);
  CHECK_EQ(h.minimum_free_bytes(), 7636u);
  CHECK(h.validate().ok());
  // Nothing left for a request one granule above the largest block.
  CHECK(h.allocate(7841) == nullptr);
  void *all = h.allocate(7840);
  CHECK(all != nullptr);
  CHECK_EQ(h.free_bytes(), 0u);
  h.deallocate(all);
  CHECK(h.allocate(0) == nullptr);
}

TARGET_TEST(Engine, ReallocGrowsShrinksAndMoves) {
  Heap h = Heap::create(g_region, 4096, config(Granule::k4));
  REQUIRE(h);
  auto *p = static_cast<unsigned char *>(h.allocate(40));
  REQUIRE(p != nullptr);
  for (int i = 0; i < 40; ++i)
    p[i] = static_cast<unsigned char>(i + 1);
  // Grows in place into the free successor.
  CHECK(h.reallocate(p, 400) == p);
  CHECK_EQ(h.usable_size(p), 400u);
  // Shrinks in place; the tail returns to the free lists.
  CHECK(h.reallocate(p, 20) == p);
  CHECK_EQ(h.usable_size(p), 20u);
  CHECK_EQ(h.free_bytes(), 3916u - 24u);
  // A neighbour in the way: realloc moves and keeps the data.
  void *q = h.allocate(16);
  REQUIRE(q != nullptr);
  auto *r = static_cast<unsigned char *>(h.reallocate(p, 1000));
  REQUIRE(r != nullptr);
  CHECK(r != p);
  bool same = true;
  for (int i = 0; i < 20; ++i)
    same = same && r[i] == static_cast<unsigned char>(i + 1);
  CHECK(same);
  // Failure leaves the block alone.
  CHECK(h.reallocate(r, 100000) == nullptr);
  CHECK_EQ(h.usable_size(r), 1000u);
  CHECK(h.reallocate(r, 0) == nullptr);  // frees
  h.deallocate(q);
  CHECK_EQ(h.free_bytes(), 3916u);
  CHECK(h.validate().ok());
}

// The always-on checks: double free, a pointer inside a block, a foreign pointer. The hook returns,
// so each operation is refused and the heap stays valid.
TARGET_TEST(Engine, AlwaysOnChecksReportMisuse) {
  FailCapture fails;
  Heap h = Heap::create(g_region, 4096, config(Granule::k4));
  REQUIRE(h);
  void *a = h.allocate(32);
  void *b = h.allocate(32);
  REQUIRE(a != nullptr && b != nullptr);
  h.deallocate(a);
  const std::size_t free_before = h.free_bytes();
  h.deallocate(a);
  CHECK_EQ(fails.count(), 1u);
  CHECK(fails.last_is("double free (block is already free)"));
  CHECK(fails.addr() == a);
  CHECK(fails.heap() == g_region);
  CHECK_EQ(h.free_bytes(), free_before);
  h.deallocate(static_cast<unsigned char *>(b) + 8);
  CHECK_EQ(fails.count(), 2u);
  CHECK(fails.last_is("free of a pointer that is not a block of this heap"));
  static unsigned char elsewhere[16];
  CHECK(h.reallocate(elsewhere, 8) == nullptr);
  CHECK_EQ(fails.count(), 3u);
  CHECK(fails.last_is("realloc of a pointer that is not a block of this heap"));
  CHECK(h.validate().ok());
  h.deallocate(b);
  CHECK_EQ(h.free_bytes(), 3916u);
}

// validate() names the damage: a header's size, a free block's footer, a free-list link.
TARGET_TEST(Engine, ValidateFindsDamage) {
  Heap h = Heap::create(g_region, 4096, config(Granule::k4));
  REQUIRE(h);
  auto *a = static_cast<unsigned char *>(h.allocate(32));
  auto *b = static_cast<unsigned char *>(h.allocate(64));
  auto *c = static_cast<unsigned char *>(h.allocate(32));
  REQUIRE(a != nullptr && b != nullptr && c != nullptr);
  h.deallocate(b);  // a free block between two used ones
  std::uint32_t saved;
  // b's header (4 bytes before it) gets a size that runs past its end.
  std::memcpy(&saved, b - 4, 4);
  const std::uint32_t bad = saved + 16;
  std::memcpy(b - 4, &bad, 4);
  capheap::Validation v = h.validate();
  CHECK_EQ(v.fault, capheap::Fault::kBadFooter);
  CHECK(v.block == b);
  std::memcpy(b - 4, &saved, 4);
  CHECK(h.validate().ok());
  // The footer (last word of b's 68-byte block).
  std::memcpy(&saved, b + 60, 4);
  const std::uint32_t wrong = 1234;
  std::memcpy(b + 60, &wrong, 4);
  v = h.validate();
  CHECK_EQ(v.fault, capheap::Fault::kBadFooter);
  std::memcpy(b + 60, &saved, 4);
  // The free-list link after the header.
  std::memcpy(&saved, b, 4);
  const std::uint32_t link = 6;
  std::memcpy(b, &link, 4);
  v = h.validate();
  CHECK_EQ(v.fault, capheap::Fault::kBadFreeLink);
  std::memcpy(b, &saved, 4);
  CHECK(h.validate().ok());
  CHECK(h.invariants_hold());
  CHECK_EQ(std::strcmp(capheap::fault_text(capheap::Fault::kBadFooter),
                       "free block footer does not match its header"),
           0);
}

// Poisoning with odd request sizes: the tail canary is stored bytewise at any address. On the
// Cortex-M0+ an unaligned word access would end the run with a HardFault.
TARGET_TEST(Engine, PoisoningWithOddSizesAndOwnerWords) {
  FailCapture fails;
  Heap h = Heap::create(g_region + 4, 8192, config(Granule::k8, Poisoning::kComprehensive, true));
  REQUIRE(h);
  void *live[16];
  for (std::size_t i = 0; i < 16; ++i) {
    live[i] = h.allocate(1 + i);
    REQUIRE(live[i] != nullptr);
    CHECK_EQ(reinterpret_cast<std::uintptr_t>(live[i]) % 8, 0u);
    CHECK_EQ(h.usable_size(live[i]), 1 + i);
    auto *bytes = static_cast<const unsigned char *>(live[i]);
    CHECK_EQ(bytes[0], 0xCEu);  // comprehensive: new data is filled with 0xCE
  }
  CHECK(h.validate().ok());
  // Overrun one allocation by one byte: the tail canary reports it on free.
  auto *p = static_cast<unsigned char *>(live[6]);  // 7 bytes
  const unsigned char old = p[7];
  p[7] = 0x00;
  CHECK_EQ(h.validate().fault, capheap::Fault::kBadTailCanary);
  h.deallocate(p);
  CHECK_EQ(fails.count(), 1u);
  CHECK(std::strncmp(fails.last(), "Bad tail", 8) == 0);
  p[7] = old;
  for (void *q : live)
    h.deallocate(q);
  CHECK_EQ(fails.count(), 1u);
  CHECK(h.validate().ok());
  CHECK_EQ(h.info().allocated_blocks, 0u);
}

// ---- Stress rig ---------------------------------------------------------------------------------

namespace {

struct Live {
  void *p;
  std::uint32_t size;
  std::uint32_t tag;
};

std::uint8_t pattern(std::uint32_t tag, std::uint32_t i) {
  return static_cast<std::uint8_t>((tag * 131u) ^ (i * 7u) ^ 0x5Au);
}
void fill(const Live &l) {
  auto *b = static_cast<unsigned char *>(l.p);
  for (std::uint32_t i = 0; i < l.size && i < 24; ++i)
    b[i] = pattern(l.tag, i);
  for (std::uint32_t i = l.size > 8 ? l.size - 8 : 0; i < l.size; ++i)
    b[i] = pattern(l.tag, i);
}
bool intact(const Live &l) {
  const auto *b = static_cast<const unsigned char *>(l.p);
  for (std::uint32_t i = 0; i < l.size && i < 24; ++i)
    if (b[i] != pattern(l.tag, i)) return false;
  for (std::uint32_t i = l.size > 8 ? l.size - 8 : 0; i < l.size; ++i)
    if (b[i] != pattern(l.tag, i)) return false;
  return true;
}

std::uint32_t draw_size(Rng &rng, std::uint32_t region) {
  const std::uint32_t kind = rng.below(100);
  std::uint32_t cap = kind < 70 ? 256u : kind < 95 ? region / 16 : region / 2;
  if (cap < 1) cap = 1;
  if (kind == 99) return 1 + rng.below(12);
  return 1 + rng.below(cap);
}

/// Random operations with validate() and the largest-free-block contract after each; payload
/// patterns checked on realloc and free. Returns false after the first failed check.
bool stress(std::uint32_t region, Granule g, std::uint32_t at, Poisoning poison, bool owner,
            std::uint64_t seed, std::uint32_t ops) {
  Rng rng(seed);
  Heap h = Heap::create(g_region + at, region, config(g, poison, owner));
  if (!h) {
    CHECK(h);
    return false;
  }
  const std::size_t initial = h.free_bytes();
  constexpr std::uint32_t kMaxLive = 96;
  Live live[kMaxLive];
  std::uint32_t n = 0, tag = 0;
  for (std::uint32_t i = 0; i < ops; ++i) {
    const std::uint32_t op = rng.below(100);
    if ((op < 40 || n == 0) && n < kMaxLive) {
      const std::uint32_t size = draw_size(rng, region);
      void *p = h.allocate(size);
      if (p != nullptr) {
        live[n] = {p, size, ++tag};
        fill(live[n++]);
      }
    } else if (op < 50 && n < kMaxLive) {
      const std::uint32_t align = 1u << rng.below(11);
      const std::uint32_t size = draw_size(rng, region);
      void *p = h.allocate_aligned(size, align);
      if (p != nullptr) {
        if (reinterpret_cast<std::uintptr_t>(p) % align != 0) {
          CHECK_EQ(reinterpret_cast<std::uintptr_t>(p) % align, 0u);
          return false;
        }
        live[n] = {p, size, ++tag};
        fill(live[n++]);
      }
    } else if (op < 65 && n > 0) {
      Live &l = live[rng.below(n)];
      if (!intact(l)) {
        CHECK(intact(l));
        return false;
      }
      const std::uint32_t size = draw_size(rng, region);
      void *q = h.reallocate(l.p, size);
      if (q != nullptr) {
        l = {q, size, ++tag};
        fill(l);
      } else if (!intact(l)) {
        CHECK(intact(l));  // a failed realloc keeps the block as it was
        return false;
      }
    } else if (n > 0) {
      const std::uint32_t k = rng.below(n);
      if (!intact(live[k])) {
        CHECK(intact(live[k]));
        return false;
      }
      h.deallocate(live[k].p);
      live[k] = live[--n];
    }
    const capheap::Validation v = h.validate();
    if (!v.ok()) {
      capheap_target::print("    op %lu: validate fault %u at %p\n", static_cast<unsigned long>(i),
                            static_cast<unsigned>(v.fault), v.block);
      CHECK(v.ok());
      return false;
    }
    const std::size_t largest = h.largest_free_block();
    void *too_big = h.allocate(largest + static_cast<std::size_t>(g));
    if (too_big != nullptr) {
      CHECK(too_big == nullptr);
      return false;
    }
    if (largest != 0) {
      void *fits = h.allocate(largest);
      if (fits == nullptr) {
        CHECK(fits != nullptr);
        return false;
      }
      h.deallocate(fits);
    }
    if (!h.validate_step(1 + rng.below(4)).validation.ok()) {
      CHECK(false);
      return false;
    }
  }
  while (n > 0)
    h.deallocate(live[--n].p);
  CHECK_EQ(h.free_bytes(), initial);
  CHECK_EQ(h.info().free_blocks, 1u);
  return h.validate().ok();
}

}  // namespace

TARGET_TEST(Engine, StressWithValidation) {
  const std::uint64_t seed = capheap_target::seed();
  capheap_target::print("    stress seed 0x%08lx%08lx (CAPHEAP_TARGET_SEED replays it)\n",
                        static_cast<unsigned long>(seed >> 32),
                        static_cast<unsigned long>(seed & 0xFFFFFFFFu));
  const std::uint32_t regions[] = {96, 256, 1024, 4096, 65536, 262144};
  const Granule granules[] = {Granule::k4, Granule::k8, Granule::k16};
  std::uint32_t configs = 0;
  for (std::uint32_t r : regions)
    for (Granule g : granules)
      for (std::uint32_t at : {0u, 4u, 8u, 12u}) {
        if (at != 0 && r > 4096) continue;
        const std::uint64_t s = seed ^ (std::uint64_t(r) * 31u) ^ static_cast<unsigned>(g) ^ at;
        if (!stress(r, g, at, Poisoning::kNone, false, s, r >= 65536 ? 600 : 1500)) {
          capheap_target::print("    failed: region %lu granule %u at +%lu\n",
                                static_cast<unsigned long>(r), static_cast<unsigned>(g),
                                static_cast<unsigned long>(at));
          return;
        }
        ++configs;
      }
  // Decorated heaps (canaries, owner words, fills), at a start that is only 4-byte aligned.
  for (Poisoning p : {Poisoning::kLight, Poisoning::kComprehensive})
    for (bool owner : {false, true})
      for (Granule g : {Granule::k4, Granule::k16}) {
        if (!stress(4096, g, 4, p, owner, seed + configs, 800)) {
          capheap_target::print("    failed: poisoning %u owner %d granule %u\n",
                                static_cast<unsigned>(p), owner ? 1 : 0, static_cast<unsigned>(g));
          return;
        }
        ++configs;
      }
  CHECK_EQ(configs, 62u);
}
