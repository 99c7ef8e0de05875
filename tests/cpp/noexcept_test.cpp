// noexcept_test.cpp — capheap/caps_allocator.hpp in a build without exceptions (-fno-exceptions,
// the usual firmware setting): every failure that throws std::bad_alloc elsewhere returns nullptr
// or a null unique_ptr here, and CapsResource is not offered.
//
// Its own executable: the header's inline functions differ with and without exceptions, so they
// must not meet another translation unit's copies in one program.

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <type_traits>

#include "capheap/caps_allocator.hpp"
#include "capheap/caps_resource.hpp"
#include "capheap_host.h"
#include "capi/capi_internal.hpp"
#include "esp_heap_caps.h"

#if defined(__cpp_exceptions)
#error "this file must be compiled with -fno-exceptions"
#endif
#ifdef CAPHEAP_HAS_CAPS_RESOURCE
#error "CapsResource needs exceptions"
#endif

namespace {

using capheap::Caps;
using capheap::caps_allocator;
using capheap::make_unique_caps;

constexpr std::uint32_t kInternal8 = MALLOC_CAP_INTERNAL | MALLOC_CAP_8BIT;
constexpr std::uint32_t kImpossible = MALLOC_CAP_EXEC | MALLOC_CAP_8BIT;

struct Counted {
  static int live;
  int v;
  explicit Counted(int x = 5) : v(x) { ++live; }
  ~Counted() { --live; }
};
int Counted::live = 0;

// The exception mode selects the inline namespace (no ODR clash with exception-enabled code).
static_assert(
    std::is_same<caps_allocator<int>, capheap::cxx_no_exceptions::caps_allocator<int>>::value,
    "inline namespace");

TEST(cpp_NoExceptions, AllocatorReturnsNullOnFailure) {
  caps_allocator<int> a{Caps(kInternal8)};
  EXPECT_EQ(a.allocate(a.max_size() + 1), nullptr);      // overflow
  EXPECT_EQ(a.allocate(std::size_t(1) << 28), nullptr);  // 1 GiB of internal RAM
  EXPECT_EQ(caps_allocator<int>(Caps(kImpossible)).allocate(1), nullptr);
  int *p = a.allocate(10);
  ASSERT_NE(p, nullptr);
  EXPECT_GE(heap_caps_get_allocated_size(p), 10 * sizeof(int));
  EXPECT_GE(capheap::capi::registry().find_heap(p), 0);
  a.deallocate(p, 10);
}

TEST(cpp_NoExceptions, MakeUniqueCapsReturnsNullOnFailure) {
  Counted::live = 0;
  EXPECT_FALSE(make_unique_caps<Counted>(Caps(kImpossible), 1));
  EXPECT_FALSE(make_unique_caps<Counted[]>(Caps(kImpossible), 3));
  EXPECT_FALSE(make_unique_caps<int[]>(Caps(kInternal8), std::numeric_limits<std::size_t>::max()));
  EXPECT_FALSE(make_unique_caps<int[]>(Caps(kInternal8), std::size_t(1) << 28));
  EXPECT_EQ(Counted::live, 0);  // nothing was constructed

  auto one = make_unique_caps<Counted>(Caps(kInternal8), 9);
  ASSERT_TRUE(one);
  EXPECT_EQ(one->v, 9);
  auto many = make_unique_caps<Counted[]>(Caps(kInternal8), 4);
  ASSERT_TRUE(many);
  EXPECT_EQ(Counted::live, 5);
  one.reset();
  many.reset();
  EXPECT_EQ(Counted::live, 0);
}

}  // namespace
