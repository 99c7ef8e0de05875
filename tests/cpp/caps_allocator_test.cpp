// caps_allocator_test.cpp — the C++ API over heap_caps (capheap/caps_allocator.hpp,
// capheap/caps_resource.hpp) on a simulated ESP32 with 4 MiB of PSRAM: memory lands in heaps that
// have the requested caps, over-aligned types are aligned, every block goes back, and the failure
// paths throw std::bad_alloc (this file is built with exceptions; noexcept_test.cpp covers
// -fno-exceptions).
//
// Suite names start with "cpp_" so that `ctest -R cpp` selects them.

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <list>
#include <map>
#include <memory_resource>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "capheap/caps.hpp"
#include "capheap/caps_allocator.hpp"
#include "capheap/caps_resource.hpp"
#include "capheap_host.h"
#include "capi/capi_internal.hpp"
#include "esp_heap_caps.h"

#ifndef CAPHEAP_HAS_CAPS_RESOURCE
#error "CapsResource must be available in a hosted build with exceptions"
#endif

namespace {

using capheap::Caps;
using capheap::caps_allocator;
using capheap::CapsResource;
using capheap::make_unique_caps;

constexpr std::uint32_t kDma8 = MALLOC_CAP_DMA | MALLOC_CAP_8BIT;
constexpr std::uint32_t kSpiram = MALLOC_CAP_SPIRAM;
constexpr std::uint32_t kInternal8 = MALLOC_CAP_INTERNAL | MALLOC_CAP_8BIT;
constexpr std::uint32_t kImpossible = MALLOC_CAP_EXEC | MALLOC_CAP_8BIT;

static_assert(
    std::is_same<caps_allocator<int>, capheap::cxx_exceptions::caps_allocator<int>>::value,
    "the exception mode selects the inline namespace");

/// A simulated ESP32 with PSRAM for the whole test program.
class ChipEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    capheap_host_deinit();  // in case something initialised the default chip already
    capheap_host_config_t cfg = CAPHEAP_HOST_CONFIG_DEFAULT;
    cfg.psram_size = 4u << 20;
    ASSERT_EQ(capheap_host_init("esp32", &cfg), ESP_OK);
  }
  void TearDown() override { capheap_host_deinit(); }
};

const ::testing::Environment *const g_env =
    ::testing::AddGlobalTestEnvironment(new ChipEnvironment);

/// Success if p lies in a heap that has every capability in `caps` and, when bytes > 0, is a live
/// heap_caps block of at least `bytes` usable bytes (bytes == 0: p may point inside a block).
::testing::AssertionResult InHeapWithCaps(const void *p, std::uint32_t caps, std::size_t bytes) {
  if (p == nullptr) return ::testing::AssertionFailure() << "null pointer";
  const capheap::Registry &r = capheap::capi::registry();
  const int pos = r.find_heap(p);
  if (pos < 0) return ::testing::AssertionFailure() << p << " is in no heap";
  const capheap::HeapView v = r.view(static_cast<unsigned>(pos));
  if (!r.heap_matches(static_cast<unsigned>(pos), Caps(caps))) {
    return ::testing::AssertionFailure()
           << p << " is in heap " << v.name << " (caps 0x" << std::hex << v.caps[0] << " 0x"
           << v.caps[1] << " 0x" << v.caps[2] << "), which lacks some of 0x" << caps;
  }
  if (bytes == 0) return ::testing::AssertionSuccess();
  const std::size_t usable = heap_caps_get_allocated_size(const_cast<void *>(p));
  if (usable < bytes) {
    return ::testing::AssertionFailure()
           << p << " has " << usable << " usable bytes, fewer than " << bytes;
  }
  return ::testing::AssertionSuccess();
}

bool AlignedTo(const void *p, std::size_t a) {
  return reinterpret_cast<std::uintptr_t>(p) % a == 0;
}

/// Records every failed allocation reported through heap_caps' failure callback.
int g_failures = 0;
void CountFailure(std::size_t, std::uint32_t, const char *) {
  ++g_failures;
}

/// Checks that the free bytes of the heaps with `caps` are back where they were at construction.
class FreeSizeGuard {
 public:
  explicit FreeSizeGuard(std::uint32_t caps)
      : caps_(caps), before_(heap_caps_get_free_size(caps)) {}
  ~FreeSizeGuard() {
    EXPECT_EQ(heap_caps_get_free_size(caps_), before_) << "caps 0x" << std::hex << caps_;
  }
  FreeSizeGuard(const FreeSizeGuard &) = delete;
  FreeSizeGuard &operator=(const FreeSizeGuard &) = delete;

 private:
  std::uint32_t caps_;
  std::size_t before_;
};

struct alignas(64) CacheLine {
  unsigned char bytes[64];
  CacheLine() { std::memset(bytes, 0xA5, sizeof bytes); }
};

/// Counts constructions and destructions; throws from the constructor when asked.
struct Tracked {
  static int live;
  static int constructed;
  static int throw_at;  // the construction number (1-based) that throws; 0 = never
  int value;
  explicit Tracked(int v = 7) : value(v) {
    if (throw_at != 0 && constructed + 1 == throw_at) throw std::runtime_error("Tracked");
    ++constructed;
    ++live;
  }
  ~Tracked() { --live; }
  Tracked(const Tracked &) = delete;
  Tracked &operator=(const Tracked &) = delete;
};
int Tracked::live = 0;
int Tracked::constructed = 0;
int Tracked::throw_at = 0;

void ResetTracked() {
  Tracked::live = 0;
  Tracked::constructed = 0;
  Tracked::throw_at = 0;
}

// ================================================================================================
// caps_allocator
// ================================================================================================

TEST(cpp_CapsAllocator, VectorOfIntLivesInDmaMemory) {
  FreeSizeGuard guard(kDma8);
  {
    std::vector<int, caps_allocator<int>> v{caps_allocator<int>(Caps(kDma8))};
    for (int i = 0; i < 1000; ++i)
      v.push_back(i);  // several reallocations
    EXPECT_TRUE(InHeapWithCaps(v.data(), kDma8, v.capacity() * sizeof(int)));
    for (int i = 0; i < 1000; ++i)
      ASSERT_EQ(v[static_cast<std::size_t>(i)], i);
    EXPECT_EQ(v.get_allocator().caps(), Caps(kDma8));
  }
}

TEST(cpp_CapsAllocator, VectorInSpiram) {
  FreeSizeGuard guard(kSpiram);
  std::vector<std::uint32_t, caps_allocator<std::uint32_t>> v(
      50000, 0xDEADBEEFu, caps_allocator<std::uint32_t>(Caps::spiram()));
  EXPECT_TRUE(InHeapWithCaps(v.data(), kSpiram, 50000 * sizeof(std::uint32_t)));
  EXPECT_EQ(v.back(), 0xDEADBEEFu);
}

TEST(cpp_CapsAllocator, BasicStringWithCaps) {
  using DmaString = std::basic_string<char, std::char_traits<char>, caps_allocator<char>>;
  FreeSizeGuard dma(kDma8);
  FreeSizeGuard spiram(kSpiram);
  {
    DmaString s(300, 'x', caps_allocator<char>(Caps(kDma8)));
    EXPECT_TRUE(InHeapWithCaps(s.data(), kDma8, 301));
    s += " and more text to force a reallocation of the buffer, which must keep its caps";
    EXPECT_TRUE(InHeapWithCaps(s.data(), kDma8, s.size() + 1));
    EXPECT_EQ(s.substr(0, 3), "xxx");

    DmaString t("a string long enough to leave the small-string buffer behind",
                caps_allocator<char>(Caps::spiram()));
    EXPECT_TRUE(InHeapWithCaps(t.data(), kSpiram, t.size() + 1));
    EXPECT_NE(s.get_allocator(), t.get_allocator());
  }
}

TEST(cpp_CapsAllocator, RebindKeepsCapsAndNodesLiveInTheHeap) {
  caps_allocator<int> a{Caps(kInternal8)};
  caps_allocator<double> b(a);
  EXPECT_EQ(b.caps(), Caps(kInternal8));
  EXPECT_TRUE(a == b);
  EXPECT_FALSE(a != b);
  EXPECT_NE(a, caps_allocator<int>(Caps::spiram()));
  using Rebound = std::allocator_traits<caps_allocator<int>>::rebind_alloc<long>;
  static_assert(std::is_same<Rebound, caps_allocator<long>>::value, "rebind");

  FreeSizeGuard guard(kSpiram);
  {
    // std::list and std::map allocate nodes through a rebound allocator.
    std::list<int, caps_allocator<int>> l{caps_allocator<int>(Caps::spiram())};
    for (int i = 0; i < 10; ++i)
      l.push_back(i);
    for (const int &x : l)
      EXPECT_TRUE(InHeapWithCaps(&x, kSpiram, 0));  // inside a node

    using Pair = std::pair<const int, int>;
    std::map<int, int, std::less<int>, caps_allocator<Pair>> m{
        caps_allocator<Pair>(Caps::spiram())};
    for (int i = 0; i < 10; ++i)
      m[i] = i * i;
    for (const Pair &kv : m)
      EXPECT_TRUE(InHeapWithCaps(&kv, kSpiram, 0));
  }
}

TEST(cpp_CapsAllocator, DefaultConstructedUsesDefaultCaps) {
  caps_allocator<int> a;
  EXPECT_EQ(a.caps(), Caps::default_());
  std::vector<int, caps_allocator<int>> v(100);
  EXPECT_TRUE(InHeapWithCaps(v.data(), MALLOC_CAP_DEFAULT, 100 * sizeof(int)));
}

TEST(cpp_CapsAllocator, OverAlignedTypesAreAligned) {
  static_assert(alignof(CacheLine) == 64, "test type");
  FreeSizeGuard guard(kDma8);
  {
    caps_allocator<CacheLine> a{Caps(kDma8)};
    std::vector<CacheLine *> blocks;
    for (std::size_t n = 1; n <= 9; ++n) {
      CacheLine *p = a.allocate(n);
      EXPECT_TRUE(AlignedTo(p, 64)) << p;
      EXPECT_TRUE(InHeapWithCaps(p, kDma8, n * sizeof(CacheLine)));
      blocks.push_back(p);
    }
    for (std::size_t i = 0; i < blocks.size(); ++i)
      a.deallocate(blocks[i], i + 1);

    std::vector<CacheLine, caps_allocator<CacheLine>> v(5, caps_allocator<CacheLine>(Caps(kDma8)));
    EXPECT_TRUE(AlignedTo(v.data(), 64));
    EXPECT_EQ(v[4].bytes[63], 0xA5);
  }
  // 8-byte types (pointers, double) need more than heap_caps_malloc's 4-byte granule too.
  caps_allocator<double> d{Caps(kSpiram)};
  double *p = d.allocate(3);
  EXPECT_TRUE(AlignedTo(p, alignof(double)));
  d.deallocate(p, 3);
}

TEST(cpp_CapsAllocator, ZeroElementsGiveAUniqueBlock) {
  caps_allocator<int> a{Caps(kInternal8)};
  int *p = a.allocate(0);
  int *q = a.allocate(0);
  ASSERT_NE(p, nullptr);
  ASSERT_NE(q, nullptr);
  EXPECT_NE(p, q);
  a.deallocate(p, 0);
  a.deallocate(q, 0);
}

TEST(cpp_CapsAllocator, OverflowThrowsBadArrayNewLength) {
  caps_allocator<int> a{Caps(kInternal8)};
  EXPECT_EQ(a.max_size(), std::numeric_limits<std::size_t>::max() / sizeof(int));
  EXPECT_THROW(a.allocate(a.max_size() + 1), std::bad_array_new_length);
  EXPECT_THROW(a.allocate(std::numeric_limits<std::size_t>::max()), std::bad_alloc);
}

TEST(cpp_CapsAllocator, ExhaustionThrowsBadAllocAfterTheCallback) {
  ASSERT_EQ(heap_caps_register_failed_alloc_callback(CountFailure), ESP_OK);
  caps_allocator<int> a{Caps(kDma8)};
  const int before = g_failures;
  EXPECT_THROW(a.allocate(std::size_t(1) << 28), std::bad_alloc);  // 1 GiB of DMA memory
  EXPECT_EQ(g_failures, before + 1);
  std::vector<int, caps_allocator<int>> v(a);
  EXPECT_THROW(v.resize(std::size_t(1) << 28), std::bad_alloc);
  EXPECT_TRUE(v.empty());
}

TEST(cpp_CapsAllocator, ImpossibleCapsThrowBadAlloc) {
  caps_allocator<int> exec8{Caps(kImpossible)};
  EXPECT_THROW(exec8.allocate(1), std::bad_alloc);
  caps_allocator<int> none{Caps(0)};
  EXPECT_THROW(none.allocate(1), std::bad_alloc);
  caps_allocator<int> invalid{Caps::invalid()};
  EXPECT_THROW(invalid.allocate(1), std::bad_alloc);
  std::vector<int, caps_allocator<int>> v{exec8};
  EXPECT_THROW(v.push_back(1), std::bad_alloc);
}

// caps_allocator.hpp: caps heap_caps_malloc refuses fail "whatever the alignment". EXEC with a DMA
// descriptor bit is such a set (heap_caps_malloc maps DMA_DESC_* to DMA, which executable memory
// never is), but over-aligned types went to heap_caps_aligned_alloc, which served it from the
// ESP32's D/IRAM (EXEC and DMA at different levels).
TEST(cpp_CapsAllocator, ExecWithDmaDescriptorCapsFailWhateverTheAlignment) {
  struct alignas(16) Wide {
    unsigned char bytes[16];
  };
  for (std::uint32_t desc :
       {std::uint32_t{MALLOC_CAP_DMA_DESC_AHB}, std::uint32_t{MALLOC_CAP_DMA_DESC_AXI}}) {
    SCOPED_TRACE(desc);
    const std::uint32_t caps = MALLOC_CAP_EXEC | desc;
    ASSERT_EQ(heap_caps_malloc(16, caps), nullptr);
    caps_allocator<int> narrow{Caps(caps)};
    EXPECT_THROW(narrow.allocate(4), std::bad_alloc);
    caps_allocator<Wide> wide{Caps(caps)};
    EXPECT_THROW(wide.allocate(1), std::bad_alloc);
    EXPECT_THROW(make_unique_caps<Wide>(Caps(caps)), std::bad_alloc);
    EXPECT_THROW(make_unique_caps<Wide[]>(Caps(caps), 2), std::bad_alloc);
    CapsResource resource{Caps(caps)};
    EXPECT_THROW((void)resource.allocate(16, 16), std::bad_alloc);
  }
}

TEST(cpp_CapsAllocator, AssignmentAndSwapCarryTheCaps) {
  using Vec = std::vector<int, caps_allocator<int>>;
  Vec dma(10, 1, caps_allocator<int>(Caps(kDma8)));
  Vec ext(10, 2, caps_allocator<int>(Caps::spiram()));
  const int *ext_data = ext.data();
  dma.swap(ext);  // propagate_on_container_swap: O(1), no element copies
  EXPECT_EQ(dma.data(), ext_data);
  EXPECT_EQ(dma.get_allocator().caps(), Caps::spiram());
  EXPECT_EQ(ext.get_allocator().caps(), Caps(kDma8));
  Vec moved{caps_allocator<int>(Caps(kInternal8))};
  moved = std::move(dma);  // propagate_on_container_move_assignment
  EXPECT_EQ(moved.data(), ext_data);
  EXPECT_EQ(moved.get_allocator().caps(), Caps::spiram());
  Vec copy{caps_allocator<int>(Caps(kInternal8))};
  copy = ext;  // propagate_on_container_copy_assignment
  EXPECT_EQ(copy.get_allocator().caps(), Caps(kDma8));
  EXPECT_TRUE(InHeapWithCaps(copy.data(), kDma8, 10 * sizeof(int)));
}

// ================================================================================================
// CapsResource
// ================================================================================================

TEST(cpp_CapsResource, PmrVectorAndStringLiveInTheHeap) {
  FreeSizeGuard guard(kDma8);
  {
    CapsResource dma{Caps(kDma8)};
    EXPECT_EQ(dma.caps(), Caps(kDma8));
    std::pmr::vector<int> v(&dma);
    for (int i = 0; i < 500; ++i)
      v.push_back(i);
    EXPECT_TRUE(InHeapWithCaps(v.data(), kDma8, v.capacity() * sizeof(int)));
    std::pmr::string s("a pmr string that is certainly longer than the small buffer", &dma);
    EXPECT_TRUE(InHeapWithCaps(s.data(), kDma8, s.size() + 1));
    std::pmr::vector<std::pmr::string> nested(&dma);
    nested.emplace_back("the inner string gets the same resource through uses-allocator");
    EXPECT_TRUE(InHeapWithCaps(nested[0].data(), kDma8, nested[0].size() + 1));
  }
}

TEST(cpp_CapsResource, AlignmentIsHonoured) {
  CapsResource ext{Caps::spiram()};
  for (std::size_t a = 1; a <= 256; a *= 2) {
    void *p = ext.allocate(100, a);
    EXPECT_TRUE(AlignedTo(p, a)) << "alignment " << a;
    EXPECT_TRUE(InHeapWithCaps(p, kSpiram, 100));
    ext.deallocate(p, 100, a);
  }
  void *z = ext.allocate(0, 8);
  EXPECT_NE(z, nullptr);
  ext.deallocate(z, 0, 8);
  std::pmr::vector<CacheLine> lines(3, &ext);
  EXPECT_TRUE(AlignedTo(lines.data(), 64));
}

TEST(cpp_CapsResource, FailuresThrowBadAlloc) {
  CapsResource dma{Caps(kDma8)};
  EXPECT_THROW((void)dma.allocate(std::size_t(1) << 30), std::bad_alloc);
  EXPECT_THROW((void)dma.allocate(std::numeric_limits<std::size_t>::max()), std::bad_alloc);
  CapsResource impossible{Caps(kImpossible)};
  EXPECT_THROW((void)impossible.allocate(16), std::bad_alloc);
  std::pmr::vector<int> v(&impossible);
  EXPECT_THROW(v.push_back(1), std::bad_alloc);
}

TEST(cpp_CapsResource, EqualityIsTypeAndCaps) {
  struct Derived : CapsResource {
    using CapsResource::CapsResource;
  };
  CapsResource a{Caps(kDma8)}, b{Caps(kDma8)}, c{Caps::spiram()};
  Derived d{Caps(kDma8)};
  EXPECT_TRUE(a.is_equal(a));
  EXPECT_TRUE(a.is_equal(b));
  EXPECT_TRUE(a == b);
  EXPECT_FALSE(a.is_equal(c));
  EXPECT_FALSE(a.is_equal(d));  // same caps, other dynamic type
  EXPECT_FALSE(d.is_equal(a));
  EXPECT_TRUE(d.is_equal(d));
  EXPECT_FALSE(a.is_equal(*std::pmr::new_delete_resource()));
  // Equal resources free each other's memory.
  void *p = a.allocate(64, 8);
  b.deallocate(p, 64, 8);
}

// ================================================================================================
// make_unique_caps
// ================================================================================================

TEST(cpp_MakeUniqueCaps, SingleObject) {
  ResetTracked();
  FreeSizeGuard guard(kSpiram);
  {
    auto p = make_unique_caps<Tracked>(Caps::spiram(), 42);
    static_assert(std::is_same<decltype(p), capheap::unique_caps_ptr<Tracked>>::value, "type");
    ASSERT_TRUE(p);
    EXPECT_EQ(p->value, 42);
    EXPECT_EQ(Tracked::live, 1);
    EXPECT_TRUE(InHeapWithCaps(p.get(), kSpiram, sizeof(Tracked)));
    p.reset();
    EXPECT_EQ(Tracked::live, 0);

    auto line = make_unique_caps<CacheLine>(Caps(kDma8));
    EXPECT_TRUE(AlignedTo(line.get(), 64));
    EXPECT_EQ(line->bytes[0], 0xA5);

    auto s = make_unique_caps<std::string>(Caps::spiram(), std::size_t(3), 'z');
    EXPECT_EQ(*s, "zzz");
  }
}

TEST(cpp_MakeUniqueCaps, ArrayIsValueInitialised) {
  ResetTracked();
  FreeSizeGuard guard(kInternal8);
  {
    auto ints = make_unique_caps<int[]>(Caps(kInternal8), 100);
    static_assert(
        std::is_same<decltype(ints), std::unique_ptr<int[], capheap::caps_deleter<int[]>>>::value,
        "type");
    ASSERT_TRUE(ints);
    EXPECT_EQ(ints.get_deleter().count(), 100u);
    for (std::size_t i = 0; i < 100; ++i)
      ASSERT_EQ(ints[i], 0);
    EXPECT_TRUE(InHeapWithCaps(ints.get(), kInternal8, 100 * sizeof(int)));

    auto objs = make_unique_caps<Tracked[]>(Caps(kInternal8), 5);
    EXPECT_EQ(Tracked::live, 5);
    EXPECT_EQ(objs[4].value, 7);
    objs.reset();
    EXPECT_EQ(Tracked::live, 0);

    auto lines = make_unique_caps<CacheLine[]>(Caps(kDma8), 3);
    EXPECT_TRUE(AlignedTo(lines.get(), 64));

    auto empty = make_unique_caps<int[]>(Caps(kInternal8), 0);
    EXPECT_NE(empty.get(), nullptr);
  }
}

TEST(cpp_MakeUniqueCaps, FailuresThrowBadAlloc) {
  EXPECT_THROW(make_unique_caps<int>(Caps(kImpossible)), std::bad_alloc);
  EXPECT_THROW(make_unique_caps<int[]>(Caps(kImpossible), 4), std::bad_alloc);
  EXPECT_THROW(make_unique_caps<int[]>(Caps(kInternal8), std::size_t(1) << 28), std::bad_alloc);
  EXPECT_THROW(make_unique_caps<int[]>(Caps(kInternal8), std::numeric_limits<std::size_t>::max()),
               std::bad_array_new_length);
  struct Big {
    unsigned char b[1 << 20];
  };
  EXPECT_THROW(make_unique_caps<Big>(Caps(kInternal8)), std::bad_alloc);  // no 1 MiB internal
}

TEST(cpp_MakeUniqueCaps, ThrowingConstructorsLeakNothing) {
  FreeSizeGuard guard(kInternal8);
  ResetTracked();
  Tracked::throw_at = 1;
  EXPECT_THROW(make_unique_caps<Tracked>(Caps(kInternal8), 1), std::runtime_error);
  EXPECT_EQ(Tracked::live, 0);
  ResetTracked();
  Tracked::throw_at = 4;  // the fourth element throws: three were built and must be destroyed
  EXPECT_THROW(make_unique_caps<Tracked[]>(Caps(kInternal8), 10), std::runtime_error);
  EXPECT_EQ(Tracked::constructed, 3);
  EXPECT_EQ(Tracked::live, 0);
  ResetTracked();
}

struct Base1 {
  virtual ~Base1() = default;
  int a = 1;
};
struct Base2 {
  virtual ~Base2() = default;
  int b = 2;
};
struct Derived : Base1, Base2 {
  static int destroyed;
  ~Derived() override { ++destroyed; }
  long c = 3;
};
int Derived::destroyed = 0;

TEST(cpp_MakeUniqueCaps, DeleterConvertsToBasesAndFreesTheWholeBlock) {
  FreeSizeGuard guard(kSpiram);
  Derived::destroyed = 0;
  {
    capheap::unique_caps_ptr<Base2> p = make_unique_caps<Derived>(Caps::spiram());
    ASSERT_TRUE(p);
    EXPECT_EQ(p->b, 2);
    // A non-first base sits inside the block, not at its start: the deleter must free the block.
    capheap::unique_caps_ptr<Base1> q = make_unique_caps<Derived>(Caps::spiram());
    EXPECT_EQ(q->a, 1);
  }
  EXPECT_EQ(Derived::destroyed, 2);
}

}  // namespace
