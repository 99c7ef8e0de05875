// registry_test.cpp — the capabilities layer (capheap::Registry) on hand-made layouts in host
// memory.
//
// These tests pin ESP-IDF's selection rules independently of any chip model: the priority walk,
// the "shares a bit at this level and has all bits" rule, runtime heaps at the head of the list,
// EXEC/32BIT rules, D/IRAM aliases (plain and inverted), the overlap rules of add_region, the
// owner lookup with nested heaps, and the hardware alignment adjustment.

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "capheap.h"
#include "capheap/caps.hpp"
#include "esp_heap_caps.h"

namespace {

using capheap::Caps;
using capheap::Placement;
using capheap::Registry;
using capheap::Status;

constexpr std::uint32_t k8 = MALLOC_CAP_8BIT, k32 = MALLOC_CAP_32BIT, kD = MALLOC_CAP_DEFAULT,
                        kI = MALLOC_CAP_INTERNAL, kDma = MALLOC_CAP_DMA, kX = MALLOC_CAP_EXEC,
                        kS = MALLOC_CAP_SPIRAM;

/// Host memory for a fake chip: one buffer carved into regions.
struct Arena {
  explicit Arena(std::size_t n) : mem(new std::uint64_t[n / 8 + 2]), size(n) {}
  std::uintptr_t at(std::size_t off) const {
    return reinterpret_cast<std::uintptr_t>(mem.get()) + off;
  }
  std::unique_ptr<std::uint64_t[]> mem;
  std::size_t size;
};

// ESP32-like types: DRAM, D/IRAM, IRAM (the spec's table).
const capheap_memory_type_t kTypes[] = {
    {"DRAM", {k8 | kD, kI | kDma | k32, 0}},
    {"D/IRAM", {0, kDma | k8 | kI | kD, k32 | kX}},
    {"IRAM", {kI | kX | k32, 0, 0}},
};

struct Fixture {
  Arena arena{4 * 65536 + 65536};
  std::vector<capheap_memory_region_t> regions;
  capheap_layout_t layout{};
  Registry reg;

  // dram: [0, 64K), diram: [64K, 128K) with alias at iram window, iram: [128K, 192K)
  explicit Fixture(bool with_alias = true) {
    regions = {
        {arena.at(0), 65536, 0, false, 0},
        {arena.at(65536), 65536, 1, false, with_alias ? arena.at(3 * 65536) : 0},
        {arena.at(2 * 65536), 65536, 2, false, 0},
    };
    layout.chip = "fake";
    layout.types = kTypes;
    layout.type_count = 3;
    layout.regions = regions.data();
    layout.region_count = regions.size();
    layout.ext_ram_type = -1;
    reg.init(4);
    EXPECT_EQ(reg.build_from_layout(layout), Status::kOk);
  }
  int heap_of(const void *p) const { return reg.find_heap(p); }
  std::string name_of(const void *p) const {
    const int i = reg.find_heap(p);
    return i < 0 ? "none" : reg.view(static_cast<unsigned>(i)).name;
  }
};

TEST(Registry, BuildsOneHeapPerRegionInAddressOrder) {
  Fixture f;
  ASSERT_EQ(f.reg.count(), 3u);
  EXPECT_STREQ(f.reg.view(0).name, "DRAM");
  EXPECT_STREQ(f.reg.view(1).name, "D/IRAM");
  EXPECT_STREQ(f.reg.view(2).name, "IRAM");
  for (unsigned i = 0; i < 3; ++i)
    EXPECT_TRUE(f.reg.view(i).registered);
}

TEST(Registry, PriorityWalkFollowsEspIdfOrder) {
  Fixture f;
  // DEFAULT: DRAM at level 0, D/IRAM at level 1.
  void *a = f.reg.allocate(100, Caps(kD));
  EXPECT_EQ(f.name_of(a), "DRAM");
  // 32BIT: IRAM (level 0) before DRAM (level 1) before D/IRAM (level 2).
  void *b = f.reg.allocate(100, Caps(k32));
  EXPECT_EQ(f.name_of(b), "IRAM");
  // DMA: DRAM (level 1) and D/IRAM (level 1): list order, DRAM first.
  void *c = f.reg.allocate(100, Caps(kDma));
  EXPECT_EQ(f.name_of(c), "DRAM");
  // EXEC: IRAM first.
  void *d = f.reg.allocate(100, Caps(kX));
  EXPECT_EQ(f.name_of(d), "IRAM");
  // 8BIT|32BIT must have both: IRAM lacks 8BIT so DRAM.
  void *e = f.reg.allocate(100, Caps(k8 | k32));
  EXPECT_EQ(f.name_of(e), "DRAM");
  for (void *p : {a, b, c, d, e})
    f.reg.deallocate(p);
}

TEST(Registry, FallsBackWhenTheFirstHeapIsFull) {
  Fixture f;
  // Fill DRAM, then DEFAULT goes to D/IRAM.
  std::vector<void *> ptrs;
  while (true) {
    void *p = f.reg.allocate(4096, Caps(kD));
    ASSERT_NE(p, nullptr);
    ptrs.push_back(p);
    if (f.name_of(p) != "DRAM") break;
  }
  EXPECT_EQ(f.name_of(ptrs.back()), "D/IRAM");
  // 32BIT after IRAM and DRAM fill up ends in D/IRAM (level 2).
  while (void *p = f.reg.allocate(4096, Caps(k32))) {
    ptrs.push_back(p);
    if (f.name_of(p) == "D/IRAM") break;
  }
  for (void *p : ptrs)
    f.reg.deallocate(p);
}

TEST(Registry, ImpossibleRequestsReturnNull) {
  Fixture f;
  EXPECT_EQ(f.reg.allocate(100, Caps(0)), nullptr);
  EXPECT_EQ(f.reg.allocate(100, Caps(MALLOC_CAP_INVALID)), nullptr);
  EXPECT_EQ(f.reg.allocate(100, Caps(kX | k8)), nullptr);
  EXPECT_EQ(f.reg.allocate(100, Caps(kX | kDma)), nullptr);
  EXPECT_EQ(f.reg.allocate(100, Caps(kS)), nullptr);  // no PSRAM heap
  EXPECT_EQ(f.reg.allocate(0, Caps(kD)), nullptr);
  EXPECT_EQ(f.reg.allocate(1u << 20, Caps(kD)), nullptr);
  EXPECT_EQ(f.reg.allocate(SIZE_MAX, Caps(kD)), nullptr);
  // DMA descriptor bits are DMA once adjusted: executable memory never has them, although the
  // D/IRAM heap has EXEC and DMA (at different levels).
  EXPECT_EQ(f.reg.allocate(100, Caps(kX | MALLOC_CAP_DMA_DESC_AHB)), nullptr);
  EXPECT_EQ(f.reg.allocate(100, Caps(kX | MALLOC_CAP_DMA_DESC_AXI)), nullptr);
  // allocate_aligned: alignment 0, not a power of two or above 2^31, size 0 or above 2^31.
  EXPECT_EQ(f.reg.allocate_aligned(0, 100, Caps(kD)), nullptr);
  EXPECT_EQ(f.reg.allocate_aligned(24, 100, Caps(kD)), nullptr);
  // (The top bit of size_t: 2^63 on 64-bit hosts, 2^31 on 32-bit targets, where no heap holds it.)
  EXPECT_EQ(f.reg.allocate_aligned(std::size_t(1) << (sizeof(std::size_t) * 8 - 1), 100, Caps(kD)),
            nullptr);
  EXPECT_EQ(f.reg.allocate_aligned(16, 0, Caps(kD)), nullptr);
  EXPECT_EQ(f.reg.allocate_aligned(16, (std::size_t(1) << 31) + 1, Caps(kD)), nullptr);
  EXPECT_EQ(f.reg.allocate_aligned(16, 100, Caps(0)), nullptr);
  EXPECT_EQ(f.reg.allocate_aligned(16, 100, Caps(MALLOC_CAP_INVALID | kD)), nullptr);
  for (unsigned i = 0; i < f.reg.count(); ++i)
    EXPECT_EQ(f.reg.view(i).heap.info().allocated_blocks, 0u) << i;
}

// The inline fast path has no size check of its own: sizes the engine cannot hold, and 32BIT's
// rounding of a size near SIZE_MAX (which wraps to 0), must still fail.
TEST(Registry, HugeRequestsFailOnTheFastPathToo) {
  Fixture f;
  for (const std::uint32_t caps : {kD, k32, k8, kI, kD | kI, k32 | kI}) {
    SCOPED_TRACE(caps);
    for (const std::size_t size :
         {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 2, SIZE_MAX - 3, SIZE_MAX - 4, std::size_t(1) << 31,
          (std::size_t(1) << 30) + 1, std::size_t(65536)}) {
      SCOPED_TRACE(size);
      EXPECT_EQ(f.reg.allocate(size, Caps(caps)), nullptr);
    }
  }
  // Nothing was taken: a request of most of a heap still succeeds.
  void *p = f.reg.allocate(60000, Caps(kD));
  EXPECT_NE(p, nullptr);
  f.reg.deallocate(p);
}

// set_fast_path(false) sends every request through allocate()'s before_slow hook and the general
// walk, which chooses the same heaps; init() keeps the setting.
TEST(Registry, FastPathSwitchKeepsTheChoiceAndRunsTheSlowHook) {
  Fixture f;
  int slow = 0;
  const auto count = [&slow] { ++slow; };
  std::vector<int> chosen_fast, chosen_slow;
  const std::uint32_t sets[] = {kD, k8, k32, kI, kDma, kD | kI, kI | k8, kDma | kI, kX};
  for (const std::uint32_t caps : sets) {
    void *p = f.reg.allocate(100, Caps(caps), count);
    ASSERT_NE(p, nullptr) << caps;
    chosen_fast.push_back(f.reg.find_heap(p));
    f.reg.deallocate(p);
  }
  // EXEC only (alias work): every other set took the fast path. (Firmware built for size has no
  // inline fast path: every request takes the hook.)
  const int sets_count = static_cast<int>(sizeof sets / sizeof sets[0]);
  EXPECT_EQ(slow, CAPHEAP_CAPS_TABLES ? 1 : sets_count);
  f.reg.set_fast_path(false);
  slow = 0;
  for (const std::uint32_t caps : sets) {
    void *p = f.reg.allocate(100, Caps(caps), count);
    ASSERT_NE(p, nullptr) << caps;
    chosen_slow.push_back(f.reg.find_heap(p));
    f.reg.deallocate(p);
  }
  EXPECT_EQ(slow, sets_count);
  EXPECT_EQ(chosen_fast, chosen_slow);
  // init() keeps the switch off; the layout's heaps come back, still through the slow path.
  f.reg.init(4);
  ASSERT_EQ(f.reg.build_from_layout(f.layout), Status::kOk);
  slow = 0;
  void *p = f.reg.allocate(100, Caps(kD), count);
  EXPECT_NE(p, nullptr);
  EXPECT_EQ(slow, 1);
  f.reg.deallocate(p);
  f.reg.set_fast_path(true);
  slow = 0;
  p = f.reg.allocate(100, Caps(kD), count);
  EXPECT_NE(p, nullptr);
  EXPECT_EQ(slow, CAPHEAP_CAPS_TABLES ? 0 : 1);
  f.reg.deallocate(p);
}

#if CAPHEAP_THEN_TABLES  // (firmware built for size has only the plain fast path)
// allocate_then's miss handler: counts its calls, remembers its arguments, then takes the general
// walk as the contract asks.
int g_then_misses = 0;
unsigned g_then_tried = 0;
void *g_then_caller = nullptr;
void *then_miss(Registry &self, std::size_t size, Caps caps, unsigned tried, void *caller) {
  ++g_then_misses;
  g_then_tried = tried;
  g_then_caller = caller;
  return self.allocate_general(size, caps, tried);
}

// Fills the heap that serves 16-byte requests of `caps` first (*first: its list position) with
// 16-byte blocks, which it returns; the next such request must go elsewhere.
std::vector<void *> fill_first_heap(Registry &reg, std::uint32_t caps, int *first) {
  void *probe = reg.allocate(16, Caps(caps));
  *first = reg.find_heap(probe);
  reg.deallocate(probe);
  std::vector<void *> blocks;
  while (void *p = reg.allocate(16, Caps(caps))) {
    if (reg.find_heap(p) != *first) {
      reg.deallocate(p);
      break;
    }
    blocks.push_back(p);
  }
  return blocks;
}

// Calls of then_miss by one allocate_then<then_miss>(100, caps) (the block is freed again).
int then_misses_of(Registry &reg, std::uint32_t caps, void *caller) {
  g_then_misses = 0;
  void *p = reg.allocate_then<then_miss>(100, Caps(caps), [caller] { return caller; });
  EXPECT_NE(p, nullptr) << caps;
  reg.deallocate(p);
  return g_then_misses;
}

TEST(Registry, AllocateThenMakesAllocatesChoiceAndHoldSendsEveryRequestToTheHandler) {
  Fixture f;
  const std::uint32_t sets[] = {kD, k8, k32, kI, kDma, kD | kI, kI | k8, kDma | kI, kX};
  int token = 0;
  void *const caller = &token;
  for (const bool held : {false, true, false}) {
    f.reg.hold_then_path(held);
    for (const std::uint32_t caps : sets) {
      void *a = f.reg.allocate(100, Caps(caps));
      ASSERT_NE(a, nullptr) << caps;
      const int want = f.reg.find_heap(a);
      f.reg.deallocate(a);
      g_then_misses = 0;
      g_then_caller = nullptr;
      void *p = f.reg.allocate_then<then_miss>(100, Caps(caps), [caller] { return caller; });
      ASSERT_NE(p, nullptr) << caps;
      EXPECT_EQ(f.reg.find_heap(p), want) << caps;
      // Held: every request reaches the handler with the caller and nothing tried. Not held: only
      // EXEC (alias work) does.
      const int expected = held || caps == kX ? 1 : 0;
      EXPECT_EQ(g_then_misses, expected) << caps << " held " << held;
      if (expected == 1) {
        EXPECT_EQ(g_then_caller, caller);
        EXPECT_EQ(g_then_tried, 0u);
      }
      f.reg.deallocate(p);
    }
  }
  // A full first heap: the fast path asked it, so the handler gets it as tried, without a caller.
  int first = -1;
  const std::vector<void *> held_blocks = fill_first_heap(f.reg, kDma, &first);
  g_then_misses = 0;
  void *p = f.reg.allocate_then<then_miss>(16, Caps(kDma), [caller] { return caller; });
  ASSERT_NE(p, nullptr);
  EXPECT_NE(f.reg.find_heap(p), first);
  EXPECT_EQ(g_then_misses, 1);
  EXPECT_NE(g_then_tried, 0u);
  EXPECT_EQ(g_then_caller, nullptr);
  f.reg.deallocate(p);
  for (void *b : held_blocks)
    f.reg.deallocate(b);
  // Holding survives the fast path's own switch, and only the then path is held.
  f.reg.hold_then_path(true);
  f.reg.set_fast_path(false);
  f.reg.set_fast_path(true);
  int slow = 0;
  p = f.reg.allocate(100, Caps(kD), [&slow] { ++slow; });
  EXPECT_EQ(slow, 0);
  f.reg.deallocate(p);
  EXPECT_EQ(then_misses_of(f.reg, kD, caller), 1);
  f.reg.hold_then_path(false);
  EXPECT_EQ(then_misses_of(f.reg, kD, caller), 0);
}

// allocate_then's Held handler and allocate_done's Done handler (the C API's event recorder uses
// them while the then path is held): they count their calls and remember their arguments.
Registry *g_held_registry = nullptr;
int g_held_calls = 0;
int g_done_calls = 0;
void *g_done_p = nullptr;
std::size_t g_done_size = 0;
std::uint32_t g_done_caps = 0;
void *g_done_caller = nullptr;
void *then_done(void *p, std::size_t size, std::uint32_t caps, void *caller) {
  ++g_done_calls;
  g_done_p = p;
  g_done_size = size;
  g_done_caps = caps;
  g_done_caller = caller;
  return p;
}
// allocate_done's Slow handler: then_miss on the registry of the test.
void *then_slow(std::size_t size, Caps caps, unsigned tried, void *caller) {
  return then_miss(*g_held_registry, size, caps, tried, caller);
}
void *then_held(Registry::Choice first, std::size_t size, void *caller, Caps caps) {
  ++g_held_calls;
  return Registry::allocate_done_in<then_done, then_slow>(first, size, caller, caps);
}

TEST(Registry, HeldSingleBitRequestsReachTheHeldHandlerWithTheFirstHeapAndDoneSeesTheBlock) {
  Fixture f;
  g_held_registry = &f.reg;
  const std::uint32_t singles[] = {kD, k8, k32, kI, kDma};
  const std::uint32_t others[] = {kD | kI, kI | k8, kDma | kI, kX};
  int token = 0;
  void *const caller = &token;
  for (const bool held : {false, true, false}) {
    f.reg.hold_then_path(held);
    for (const std::uint32_t caps : singles) {
      void *a = f.reg.allocate(101, Caps(caps));
      ASSERT_NE(a, nullptr) << caps;
      const int want = f.reg.find_heap(a);
      const std::size_t usable = f.reg.usable_size(a);
      f.reg.deallocate(a);
      g_held_calls = g_done_calls = g_then_misses = 0;
      void *p =
          f.reg.allocate_then<then_miss, then_held>(101, Caps(caps), [caller] { return caller; });
      ASSERT_NE(p, nullptr) << caps;
      EXPECT_EQ(f.reg.find_heap(p), want) << caps;
      // (32BIT rounds the size as the fast path does: the same usable size.)
      EXPECT_EQ(f.reg.usable_size(p), usable) << caps;
      EXPECT_EQ(g_then_misses, 0) << caps;
      EXPECT_EQ(g_held_calls, held ? 1 : 0) << caps;
      EXPECT_EQ(g_done_calls, held ? 1 : 0) << caps;
      if (held) {
        EXPECT_EQ(g_done_p, p);
        EXPECT_EQ(g_done_size, 101u);
        EXPECT_EQ(g_done_caps, caps);
        EXPECT_EQ(g_done_caller, caller);
      }
      f.reg.deallocate(p);
    }
    for (const std::uint32_t caps : others) {
      g_held_calls = g_done_calls = g_then_misses = 0;
      void *p =
          f.reg.allocate_then<then_miss, then_held>(100, Caps(caps), [caller] { return caller; });
      ASSERT_NE(p, nullptr) << caps;
      EXPECT_EQ(g_held_calls, 0) << caps;
      EXPECT_EQ(g_then_misses, held || caps == kX ? 1 : 0) << caps;
      f.reg.deallocate(p);
    }
  }
  // allocate_done: Done for what the inline choice serves (also two-bit requests, also while
  // held), Slow with nothing tried for the rest.
  f.reg.hold_then_path(true);
  for (const std::uint32_t caps : {kD, kDma, kD | kI, kI | k8, kX}) {
    g_done_calls = g_then_misses = 0;
    g_then_tried = 99;
    void *p = f.reg.allocate_done<then_done, then_slow>(100, Caps(caps), caller);
    ASSERT_NE(p, nullptr) << caps;
    EXPECT_EQ(g_done_calls, caps == kX ? 0 : 1) << caps;
    EXPECT_EQ(g_then_misses, caps == kX ? 1 : 0) << caps;
    if (caps == kX) {
      EXPECT_EQ(g_then_tried, 0u);
    }
    f.reg.deallocate(p);
  }
  // The first heap full: Slow gets it as tried, with the caller (unlike allocate_then's refusal).
  int first = -1;
  const std::vector<void *> blocks = fill_first_heap(f.reg, kDma, &first);
  g_held_calls = g_done_calls = g_then_misses = 0;
  g_then_tried = 0;
  g_then_caller = nullptr;
  void *p = f.reg.allocate_then<then_miss, then_held>(16, Caps(kDma), [caller] { return caller; });
  ASSERT_NE(p, nullptr);
  EXPECT_NE(f.reg.find_heap(p), first);
  EXPECT_EQ(g_held_calls, 1);
  EXPECT_EQ(g_done_calls, 0);
  EXPECT_EQ(g_then_misses, 1);
  EXPECT_NE(g_then_tried, 0u);
  EXPECT_EQ(g_then_caller, caller);
  f.reg.deallocate(p);
  for (void *b : blocks)
    f.reg.deallocate(b);
  f.reg.hold_then_path(false);
}

// deallocate_then's miss handler: counts its calls, then frees as the contract asks.
int g_free_misses = 0;
void *g_free_caller = nullptr;
Registry *g_free_registry = nullptr;
void free_then_miss(void *ptr, void *caller) {
  ++g_free_misses;
  g_free_caller = caller;
  g_free_registry->deallocate(ptr);
}

TEST(Registry, DeallocateThenSendsFreesToTheHandlerExactlyWhileHeld) {
  Fixture f;
  g_free_registry = &f.reg;
  int token = 0;
  void *const caller = &token;
  const std::uint32_t sets[] = {kD, kDma, kI | k8, k32, kX};
  for (const bool held : {false, true, false, true, false}) {
    f.reg.hold_then_path(held);
    // Frees that move the hint between heaps (and so take the slow lookup) keep the hold.
    std::vector<void *> blocks;
    for (const std::uint32_t caps : sets) {
      void *p = f.reg.allocate(64, Caps(caps));
      ASSERT_NE(p, nullptr) << caps;
      blocks.push_back(p);
    }
    g_free_misses = 0;
    g_free_caller = nullptr;
    for (void *p : blocks)
      f.reg.deallocate_then<free_then_miss>(p, [caller] { return caller; });
    EXPECT_EQ(g_free_misses, held ? 5 : 0);
    EXPECT_EQ(g_free_caller, held ? caller : nullptr);
    // Every block went back: the heaps are as empty as the fixture left them.
    for (unsigned i = 0; i < f.reg.count(); ++i) {
      const capheap::HeapView v = f.reg.view(i);
      if (v.registered) {
        EXPECT_EQ(v.heap.info().allocated_blocks, 0u) << i;
      }
    }
  }
}

}  // namespace

namespace capheap {
// The fast paths load a table's record and its heap separately; a writer may be between the two
// stores. These plant such a torn pair.
struct RegistryTestAccess {
  static void set_then_heap(Registry &r, unsigned bit, Heap h) { r.then_heap_[bit] = h; }
  static void set_hint(Registry &r, unsigned record, Heap h) {
    r.free_hint_ = (r.free_hint_ & Registry::kHintHeld) | record;
    r.hint_heap_ = h;
  }
  static Heap heap_of_record(const Registry &r, unsigned record) { return r.records_[record].heap; }
};
}  // namespace capheap

namespace {
using capheap::RegistryTestAccess;

TEST(Registry, TornTableReadsTakeTheSlowPathsAndStillUseTheRightHeap) {
  Fixture f;
  int token = 0;
  void *const caller = &token;
  const unsigned bit = static_cast<unsigned>(__builtin_ctz(kD));
  void *a = f.reg.allocate(100, Caps(kD));
  unsigned rec = 0;
  const int want = f.reg.find_heap(a, &rec);
  f.reg.deallocate(a);
  // Another heap's handle in the heap table: the fast path must not use it.
  unsigned other = rec == 0 ? 1u : 0u;
  const capheap::Heap wrong = RegistryTestAccess::heap_of_record(f.reg, other);
  ASSERT_NE(wrong, RegistryTestAccess::heap_of_record(f.reg, rec));
  RegistryTestAccess::set_then_heap(f.reg, bit, wrong);
  g_then_misses = 0;
  void *p = f.reg.allocate_then<then_miss>(100, Caps(kD), [caller] { return caller; });
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(g_then_misses, 1);
  EXPECT_EQ(f.reg.find_heap(p), want);
  EXPECT_EQ(f.reg.view(static_cast<unsigned>(want)).heap.info().allocated_blocks, 1u);
  // The free hint names p's record but carries another heap: the free must search, and the block
  // goes back to its own heap.
  g_free_registry = &f.reg;
  g_free_misses = 0;
  RegistryTestAccess::set_hint(f.reg, rec, wrong);
  f.reg.deallocate_then<free_then_miss>(p, [caller] { return caller; });
  EXPECT_EQ(g_free_misses, 0);
  EXPECT_EQ(f.reg.view(static_cast<unsigned>(want)).heap.info().allocated_blocks, 0u);
  for (unsigned i = 0; i < f.reg.count(); ++i) {
    const capheap::HeapView v = f.reg.view(i);
    if (v.registered) {
      EXPECT_EQ(v.heap.info().allocated_blocks, 0u) << i;
      EXPECT_TRUE(v.heap.validate().ok()) << i;
    }
  }
  // A table change republishes consistent pairs: the fast path serves again.
  f.reg.hold_then_path(true);
  f.reg.hold_then_path(false);
  EXPECT_EQ(then_misses_of(f.reg, kD, caller), 0);
}

#endif  // CAPHEAP_THEN_TABLES

TEST(Registry, Bit32RoundsSizesToWords) {
  Fixture f;
  void *p = f.reg.allocate(13, Caps(k32));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(f.reg.usable_size(p), 16u);
  f.reg.deallocate(p);
}

TEST(Registry, ExecFromDiramReturnsAnAliasWithAHiddenWord) {
  Fixture f;
  // Exhaust IRAM so EXEC must come from D/IRAM (level 2).
  std::vector<void *> iram;
  while (void *p = f.reg.allocate(1024, Caps(kX))) {
    if (f.reg.is_iram_alias(p)) {
      // The alias lies in the instruction window; the hidden word holds the data address.
      void *data = f.reg.data_address_of_alias(p);
      EXPECT_EQ(f.name_of(data), "D/IRAM");
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) - f.arena.at(3 * 65536),
                reinterpret_cast<std::uintptr_t>(data) - f.arena.at(65536) + 4);
      EXPECT_EQ(f.reg.usable_size(p), 1024u);
      f.reg.deallocate(p);
      const std::size_t free_after = f.reg.view(1).heap.free_bytes();
      EXPECT_EQ(free_after, f.reg.view(1).heap.info().total_free_bytes);
      for (void *q : iram)
        f.reg.deallocate(q);
      EXPECT_TRUE(f.reg.view(1).heap.validate().ok());
      return;
    }
    EXPECT_EQ(f.name_of(p), "IRAM");
    iram.push_back(p);
  }
  FAIL() << "never reached D/IRAM";
}

// Inverted D/IRAM (ESP32): a heap that stops short of its region's end (a reservation at the top)
// has its instruction range at the top of the region's range. The registry took the region's alias
// (the low end of the whole region's range) as the heap's, so its alias window missed the heap's
// real aliases: every EXEC pointer from such a heap was taken for a data pointer, and freeing it
// reported "outside heap areas" and leaked the block.
TEST(Registry, InvertedAliasWindowCoversAHeapThatStopsShortOfItsRegionEnd) {
  Arena arena{4 * 65536};
  const std::uintptr_t dram_low = arena.at(0), dram_high = arena.at(65536);
  const std::uintptr_t iram_low = arena.at(2 * 65536), iram_high = arena.at(3 * 65536);
  // The region's alias: where its end lands (iram_high - (end - dram_low)), here iram_low.
  const capheap_memory_region_t regions[] = {{dram_low, 65536, 1, false, iram_low}};
  const capheap_reserved_range_t reserved[] = {{dram_low + 32768, dram_high, "top"}};
  capheap_layout_t layout{};
  layout.chip = "inverted";
  layout.types = kTypes;
  layout.type_count = 3;
  layout.regions = regions;
  layout.region_count = 1;
  layout.reserved = reserved;
  layout.reserved_count = 1;
  layout.diram_inverted = true;
  layout.diram_dram_low = dram_low;
  layout.diram_dram_high = dram_high;
  layout.diram_iram_low = iram_low;
  layout.diram_iram_high = iram_high;
  layout.ext_ram_type = -1;
  Registry reg;
  reg.init(4);
  ASSERT_EQ(reg.build_from_layout(layout), Status::kOk);
  ASSERT_EQ(reg.count(), 1u);
  const std::size_t free_before = reg.view(0).heap.free_bytes();

  void *p = reg.allocate(64, Caps(kX));
  ASSERT_NE(p, nullptr);
  // The heap's data [dram_low, dram_low + 32K) is seen at [iram_high - 32K, iram_high).
  const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p);
  EXPECT_GE(a, iram_high - 32768);
  EXPECT_LT(a, iram_high);
  ASSERT_TRUE(reg.is_iram_alias(p));
  const std::uintptr_t data = reinterpret_cast<std::uintptr_t>(reg.data_address_of_alias(p));
  // The block's last data word is the one the alias's hidden word sits at (the buses reversed).
  EXPECT_EQ(a - 4, iram_low + (dram_high - data - 68));
  EXPECT_EQ(reg.usable_size(p), 64u);
  reg.deallocate(p);
  EXPECT_EQ(reg.view(0).heap.free_bytes(), free_before);
  EXPECT_TRUE(reg.view(0).heap.validate().ok());
}

TEST(Registry, RuntimeRegionsGoToTheHeadAndFollowOverlapRules) {
  Fixture f;
  Arena extra(65536);
  const std::uint32_t caps[3] = {kD | k8, 0, 0};
  EXPECT_EQ(f.reg.add_region(caps, extra.at(0), extra.at(32768)), Status::kOk);
  EXPECT_EQ(f.reg.count(), 4u);
  EXPECT_TRUE(f.reg.view(0).runtime);
  // DEFAULT now prefers the runtime heap (level 0, head of the list).
  void *p = f.reg.allocate(64, Caps(kD));
  EXPECT_EQ(f.reg.find_heap(p), 0);
  f.reg.deallocate(p);
  // Overlap rules: straddling either end or equal range fails; disjoint is fine.
  EXPECT_EQ(f.reg.add_region(caps, extra.at(0), extra.at(32768)), Status::kFail);
  EXPECT_EQ(f.reg.add_region(caps, extra.at(16384), extra.at(40000)), Status::kFail);
  EXPECT_EQ(f.reg.add_region(caps, extra.at(32768), extra.at(65536)), Status::kOk);
  EXPECT_EQ(f.reg.add_region(nullptr, extra.at(0), extra.at(10)), Status::kInvalidArg);
  EXPECT_EQ(f.reg.add_region(caps, 0, extra.at(10)), Status::kInvalidArg);
  EXPECT_EQ(f.reg.add_region(caps, extra.at(10), extra.at(10)), Status::kInvalidArg);
}

// Every failure case of add_region (esp_heap_caps_init.h, heap_caps_add_region_with_caps) with
// its exact status, nothing added on failure: a start that is not 4-byte aligned is refused like a
// range too small for a heap (ESP_ERR_INVALID_SIZE, as ESP-IDF's TLSF refuses such a pool), and
// a full table gives kNoMem. build_from_layout returns kNoMem for a layout with more heaps than
// the table holds.
TEST(Registry, AddRegionFailuresReturnTheirExactStatusAndAddNothing) {
  Fixture f;
  Arena extra(Registry::kMaxHeaps * 1024 + 4096);
  const std::uint32_t caps[3] = {kD | k8, 0, 0};
  const unsigned n0 = f.reg.count();
  EXPECT_EQ(f.reg.add_region(caps, extra.at(0), 0), Status::kInvalidArg);
  EXPECT_EQ(f.reg.add_region(caps, extra.at(100), extra.at(50)), Status::kInvalidArg);
  EXPECT_EQ(f.reg.add_region(caps, extra.at(2), extra.at(4096)), Status::kInvalidSize);
  EXPECT_EQ(f.reg.add_region(caps, extra.at(1), extra.at(4096)), Status::kInvalidSize);
  EXPECT_EQ(f.reg.add_region(caps, extra.at(0), extra.at(40)), Status::kInvalidSize);
  EXPECT_EQ(f.reg.count(), n0);
  // Fill the table; the next add fails with kNoMem and changes nothing.
  unsigned added = 0;
  while (f.reg.count() < Registry::kMaxHeaps) {
    ASSERT_EQ(f.reg.add_region(caps, extra.at(added * 1024), extra.at(added * 1024 + 1024)),
              Status::kOk);
    ++added;
  }
  EXPECT_EQ(f.reg.add_region(caps, extra.at(added * 1024), extra.at(added * 1024 + 1024)),
            Status::kNoMem);
  EXPECT_EQ(f.reg.count(), Registry::kMaxHeaps);
  void *p = f.reg.allocate(64, Caps(kD));
  ASSERT_NE(p, nullptr);
  f.reg.deallocate(p);

  // A layout with one region more than the table holds: kNoMem, the first kMaxHeaps are heaps.
  Arena chip((Registry::kMaxHeaps + 1) * 2048);
  std::vector<capheap_memory_region_t> regions;
  for (unsigned i = 0; i <= Registry::kMaxHeaps; ++i)  // types alternate: no two merge
    regions.push_back(
        {chip.at(i * 2048), 2048, static_cast<std::uint16_t>(i % 2 == 0 ? 0 : 2), false, 0});
  capheap_layout_t layout{};
  layout.chip = "too-many";
  layout.types = kTypes;
  layout.type_count = 3;
  layout.regions = regions.data();
  layout.region_count = regions.size();
  layout.ext_ram_type = -1;
  Registry reg;
  reg.init(4);
  EXPECT_EQ(reg.build_from_layout(layout), Status::kNoMem);
  EXPECT_EQ(reg.count(), Registry::kMaxHeaps);
}

TEST(Registry, HeapNestedInAnAllocationOwnsItsPointers) {
  Fixture f;
  // Turn a DRAM allocation into a heap with a new capability (ESP-IDF's "strictly inside" case).
  const std::uint32_t custom = 1u << 30;
  void *buf = f.reg.allocate(8192, Caps(kD));
  ASSERT_NE(buf, nullptr);
  const std::uint32_t caps[3] = {custom, 0, 0};
  const auto s = reinterpret_cast<std::uintptr_t>(buf);
  ASSERT_EQ(f.reg.add_region(caps, s, s + 8192), Status::kOk);
  void *p = f.reg.allocate(100, Caps(custom));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(f.reg.find_heap(p), 0);         // the nested heap
  void *q = f.reg.allocate(100, Caps(kD));  // DRAM, outside the nested range
  EXPECT_STREQ(f.reg.view(static_cast<unsigned>(f.reg.find_heap(q))).name, "DRAM");
  f.reg.deallocate(p);
  f.reg.deallocate(q);
  EXPECT_TRUE(f.reg.view(0).heap.validate().ok());
}

TEST(Registry, FindHeapIsExactAtBoundaries) {
  Fixture f;
  for (unsigned i = 0; i < f.reg.count(); ++i) {
    const auto v = f.reg.view(i);
    EXPECT_EQ(f.reg.find_heap(reinterpret_cast<void *>(v.start)), static_cast<int>(i));
    EXPECT_EQ(f.reg.find_heap(reinterpret_cast<void *>(v.end - 1)), static_cast<int>(i));
  }
  EXPECT_EQ(f.reg.find_heap(reinterpret_cast<void *>(f.arena.at(3 * 65536))), -1);
  EXPECT_EQ(f.reg.find_heap(nullptr), -1);
}

TEST(Registry, ReallocMovesBetweenCapabilities) {
  Fixture f;
  auto *p = static_cast<unsigned char *>(f.reg.allocate(200, Caps(kD)));
  ASSERT_EQ(f.name_of(p), "DRAM");
  for (int i = 0; i < 200; ++i)
    p[i] = static_cast<unsigned char>(i);
  // DRAM lacks EXEC: the block moves to IRAM with its content.
  auto *q = static_cast<unsigned char *>(f.reg.reallocate(p, 400, Caps(kX)));
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(f.name_of(q), "IRAM");
  for (int i = 0; i < 200; ++i)
    ASSERT_EQ(q[i], static_cast<unsigned char>(i));
  // And back to DRAM with DEFAULT.
  auto *r = static_cast<unsigned char *>(f.reg.reallocate(q, 100, Caps(kD)));
  EXPECT_EQ(f.name_of(r), "DRAM");
  for (int i = 0; i < 100; ++i)
    ASSERT_EQ(r[i], static_cast<unsigned char>(i));
  // In place when the heap qualifies.
  EXPECT_EQ(f.reg.reallocate(r, 120, Caps(kD)), r);
  f.reg.deallocate(r);
  for (unsigned i = 0; i < f.reg.count(); ++i)
    EXPECT_EQ(f.reg.view(i).heap.info().allocated_blocks, 0u);
}

TEST(Registry, HardwareAlignmentAdjustsDmaAndCacheRequests) {
  Fixture f;
  f.layout.align.dma_internal = 4;
  f.layout.align.cache_line_int = 0;
  f.layout.align.cache_line_ext = 64;
  f.layout.align.simd = 16;
  Caps c(kDma | MALLOC_CAP_DMA_DESC_AXI);
  EXPECT_EQ(f.reg.hw_alignment(c), 8u);
  EXPECT_EQ(c, Caps(kDma));
  c = Caps(kS | kDma);
  EXPECT_EQ(f.reg.hw_alignment(c), 64u);
  EXPECT_EQ(c, Caps(kS));  // DMA dropped: PSRAM DMA means cache-aligned PSRAM
  c = Caps(MALLOC_CAP_SIMD | kD);
  EXPECT_EQ(f.reg.hw_alignment(c), 16u);
  c = Caps(MALLOC_CAP_CACHE_ALIGNED | kD);
  EXPECT_EQ(f.reg.hw_alignment(c), 0u);  // no internal cache on this fake chip
  EXPECT_EQ(c, Caps(kD));
  // SIMD stays a heap capability (ESP-IDF keeps it): no heap of this chip has it.
  EXPECT_EQ(f.reg.allocate(30, Caps(MALLOC_CAP_SIMD | kD)), nullptr);
  // With a 32-byte cache line in front of internal RAM, DMA buffers are aligned and sized to it.
  // (Hardware facts are read when the heaps are built: rebuild with the new layout.)
  f.layout.align.cache_line_int = 32;
  f.reg.init(4);
  ASSERT_EQ(f.reg.build_from_layout(f.layout), Status::kOk);
  for (std::size_t size : {1u, 30u, 33u, 100u}) {
    void *p = f.reg.allocate(size, Caps(kDma));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 32, 0u) << size;
    EXPECT_EQ(f.reg.usable_size(p) % 32, 0u) << size;
    EXPECT_GE(f.reg.usable_size(p), (size + 31) / 32 * 32);
    f.reg.deallocate(p);
  }
}

TEST(Registry, ReservedRangesSplitRegionsAndTinyPiecesAreDropped) {
  Arena arena(65536);
  const capheap_memory_region_t regions[] = {{arena.at(0), 65536, 0, false, 0}};
  const capheap_reserved_range_t reserved[] = {
      {arena.at(1000), arena.at(2001), "rom data"},              // widened to [1000, 2004)
      {arena.at(2004 + 12), arena.at(3000), "tiny gap before"},  // leaves a 12-byte piece: dropped
  };
  capheap_layout_t layout{};
  layout.types = kTypes;
  layout.type_count = 3;
  layout.regions = regions;
  layout.region_count = 1;
  layout.reserved = reserved;
  layout.reserved_count = 2;
  layout.ext_ram_type = -1;
  Registry reg;
  reg.init(4);
  ASSERT_EQ(reg.build_from_layout(layout), Status::kOk);
  ASSERT_EQ(reg.count(), 2u);
  EXPECT_EQ(reg.view(0).start, arena.at(0));
  EXPECT_EQ(reg.view(0).end, arena.at(1000));
  EXPECT_EQ(reg.view(1).start, arena.at(3000));
  EXPECT_EQ(reg.view(1).end, arena.at(65536));
}

TEST(Registry, AdjacentRegionsOfOneTypeMergeIntoOneHeap) {
  Arena arena(65536);
  const capheap_memory_region_t regions[] = {
      {arena.at(0), 16384, 0, false, 0},
      {arena.at(16384), 16384, 0, false, 0},
      {arena.at(32768), 16384, 2, false, 0},
      {arena.at(49152), 16384, 0, true, 0},  // startup stack: separate, unregistered
  };
  capheap_layout_t layout{};
  layout.types = kTypes;
  layout.type_count = 3;
  layout.regions = regions;
  layout.region_count = 4;
  layout.ext_ram_type = -1;
  Registry reg;
  reg.init(4);
  ASSERT_EQ(reg.build_from_layout(layout), Status::kOk);
  ASSERT_EQ(reg.count(), 3u);
  EXPECT_EQ(reg.view(0).end - reg.view(0).start, 32768u);
  EXPECT_FALSE(reg.view(2).registered);
  EXPECT_EQ(reg.allocate(20000, Caps(kD)) != nullptr, true);
  EXPECT_EQ(reg.allocate(15000, Caps(kD)), nullptr);  // stack heap not usable yet
  reg.enable_startup_stack_heaps();
  EXPECT_TRUE(reg.view(2).registered);
  EXPECT_NE(reg.allocate(15000, Caps(kD)), nullptr);
}

// A startup-stack region is no heap until enable_startup_stack_heaps (spec §3.1: heap pointer
// NULL, §3.2: skipped): a pointer into it is outside every heap for free, realloc and the size
// query, which report it (spec §1.1) instead of handing it to a heap that does not exist.
std::vector<std::string> g_reports;
void record_report(const char *what, const void *, const void *) {
  g_reports.emplace_back(what);
}

TEST(Registry, PointersIntoAStartupStackRegionAreOutsideEveryHeap) {
  Arena arena(65536);
  const capheap_memory_region_t regions[] = {
      {arena.at(0), 32768, 0, false, 0},
      {arena.at(32768), 32768, 0, true, 0},  // startup stack: not registered yet
  };
  capheap_layout_t layout{};
  layout.types = kTypes;
  layout.type_count = 3;
  layout.regions = regions;
  layout.region_count = 2;
  layout.ext_ram_type = -1;
  Registry reg;
  reg.init(4);
  ASSERT_EQ(reg.build_from_layout(layout), Status::kOk);
  const capheap_fail_hook_t old = capheap_set_fail_hook(record_report);
  g_reports.clear();
  void *stack_ptr = reinterpret_cast<void *>(arena.at(32768 + 1024));
  reg.deallocate(stack_ptr);
  EXPECT_EQ(reg.reallocate(stack_ptr, 64, Caps(k8)), nullptr);
  EXPECT_EQ(reg.usable_size(stack_ptr), 0u);
  EXPECT_EQ(g_reports, (std::vector<std::string>{"free() target pointer is outside heap areas",
                                                 "realloc() pointer is outside heap areas",
                                                 "pointer is outside heap areas"}));
  capheap_set_fail_hook(old);
  reg.enable_startup_stack_heaps();
  void *first = reg.allocate(30000, Caps(kD));
  void *p = reg.allocate(30000, Caps(kD));  // only the stack region's heap has room left
  ASSERT_NE(first, nullptr);
  ASSERT_NE(p, nullptr);
  EXPECT_GE(reinterpret_cast<std::uintptr_t>(p), arena.at(32768));
  reg.deallocate(p);
  reg.deallocate(first);
  EXPECT_EQ(reg.allocate(30000, Caps(kD)), first);
  EXPECT_EQ(reg.allocate(30000, Caps(kD)), p);
}

}  // namespace
