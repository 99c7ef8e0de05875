// libc_malloc_tests.cpp — the C library's allocation functions of src/malloc/libc_malloc.cpp on
// bare metal (reference spec §1.6, ESP-IDF's components/newlib/heap.c mapping), linked into the
// program as firmware does: malloc and friends over heap_caps_*, the newlib/picolibc stubs.
// Exact results only; errno is left out where the file documents its POSIX choice.
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include <malloc.h>  // picolibc and newlib: memalign, pvalloc, cfree, mallinfo and the stubs

#include "capheap.h"
#include "capi/capi_internal.hpp"
#include "esp_heap_caps.h"
#include "esp_heap_caps_init.h"
#include "harness.hpp"

// POSIX, hidden by the C library's headers in strict C++ modes.
extern "C" int posix_memalign(void **out, std::size_t alignment, std::size_t size);

namespace {

constexpr std::uint32_t kD = MALLOC_CAP_DEFAULT;

alignas(16) unsigned char g_ram[0x4000];

const capheap_memory_type_t kTypes[] = {
    {"DRAM", {MALLOC_CAP_8BIT | kD, MALLOC_CAP_INTERNAL | MALLOC_CAP_32BIT, 0}},
};
capheap_memory_region_t g_region;
capheap_layout_t g_layout;

/// One 16 KiB DEFAULT heap, as the startup code sets it up.
void start() {
  g_region = {reinterpret_cast<std::uintptr_t>(g_ram), sizeof g_ram, 0, false, 0};
  g_layout = {};
  g_layout.chip = "one-dram";
  g_layout.types = kTypes;
  g_layout.type_count = 1;
  g_layout.regions = &g_region;
  g_layout.region_count = 1;
  g_layout.align.dma_internal = 4;
  capheap::capi::reset();
  capheap_set_layout(&g_layout);
  heap_caps_init();
}

// Opaque to the optimiser: the compiler knows malloc's contract and may fold calls with constants.
template <class T>
T opaque(T v) {
  __asm__ volatile("" : "+r"(v));
  return v;
}

std::size_t free_now() {
  return heap_caps_get_free_size(kD);
}

}  // namespace

TARGET_TEST(LibcMalloc, MallocFreeCfreeAndZeroSize) {
  start();
  const std::size_t f = free_now();
  CHECK(malloc(opaque<std::size_t>(0)) == nullptr);  // heap_caps_malloc_default(0)
  void *p = malloc(opaque<std::size_t>(100));
  REQUIRE(p != nullptr);
  CHECK_EQ(reinterpret_cast<std::uintptr_t>(p) % 4, 0u);
  CHECK_EQ(free_now(), f - 104);
  free(p);
  CHECK_EQ(free_now(), f);
  free(nullptr);
  p = malloc(opaque<std::size_t>(40));
  REQUIRE(p != nullptr);
  cfree(p);  // alias of free
  CHECK_EQ(free_now(), f);
  CHECK(malloc(opaque<std::size_t>(sizeof g_ram)) == nullptr);
}

TARGET_TEST(LibcMalloc, CallocChecksOverflowAndZeroes) {
  start();
  const std::size_t f = free_now();
  auto *p = static_cast<unsigned char *>(malloc(opaque<std::size_t>(64)));
  REQUIRE(p != nullptr);
  std::memset(p, 0xA5, 64);
  free(p);
  auto *q = static_cast<unsigned char *>(calloc(opaque<std::size_t>(8), opaque<std::size_t>(8)));
  REQUIRE(q != nullptr);
  bool zero = true;
  for (std::size_t i = 0; i < 64; ++i)
    zero = zero && q[i] == 0;
  CHECK(zero);
  free(q);
  CHECK(calloc(opaque<std::size_t>(SIZE_MAX / 2 + 1), opaque<std::size_t>(2)) == nullptr);
  CHECK(calloc(opaque<std::size_t>(0), opaque<std::size_t>(8)) == nullptr);
  CHECK_EQ(free_now(), f);
}

TARGET_TEST(LibcMalloc, ReallocIsHeapCapsReallocDefault) {
  start();
  const std::size_t f = free_now();
  auto *p = static_cast<unsigned char *>(realloc(nullptr, opaque<std::size_t>(20)));
  REQUIRE(p != nullptr);
  CHECK_EQ(free_now(), f - 24);
  for (unsigned i = 0; i < 20; ++i)
    p[i] = static_cast<unsigned char>(i);
  auto *q = static_cast<unsigned char *>(realloc(p, opaque<std::size_t>(200)));
  REQUIRE(q != nullptr);
  bool kept = true;
  for (unsigned i = 0; i < 20; ++i)
    kept = kept && q[i] == i;
  CHECK(kept);
  CHECK(realloc(q, opaque<std::size_t>(sizeof g_ram)) == nullptr);  // fails, q intact
  CHECK_EQ(heap_caps_get_allocated_size(q), 200u);
  CHECK(realloc(q, opaque<std::size_t>(0)) == nullptr);  // frees
  CHECK_EQ(free_now(), f);
}

TARGET_TEST(LibcMalloc, MemalignVallocPvalloc) {
  start();
  const std::size_t f = free_now();
  void *p = memalign(opaque<std::size_t>(64), opaque<std::size_t>(100));
  REQUIRE(p != nullptr);
  CHECK_EQ(reinterpret_cast<std::uintptr_t>(p) % 64, 0u);
  free(p);
  CHECK(memalign(opaque<std::size_t>(64), opaque<std::size_t>(0)) == nullptr);
  CHECK(memalign(opaque<std::size_t>(24), opaque<std::size_t>(16)) == nullptr);
  CHECK(memalign(opaque<std::size_t>(0), opaque<std::size_t>(16)) == nullptr);
  // valloc / pvalloc alias malloc on ESP-IDF: no page alignment, NULL for 0.
  CHECK(valloc(opaque<std::size_t>(0)) == nullptr);
  CHECK(pvalloc(opaque<std::size_t>(0)) == nullptr);
  p = valloc(opaque<std::size_t>(100));
  REQUIRE(p != nullptr);
  CHECK_EQ(free_now(), f - 104);
  free(p);
  p = pvalloc(opaque<std::size_t>(100));
  REQUIRE(p != nullptr);
  CHECK_EQ(free_now(), f - 104);
  free(p);
  CHECK_EQ(free_now(), f);
}

// Spec §1.6: "posix_memalign: size 0 -> *out = NULL and returns 0; failure returns ENOMEM (not via
// errno) and leaves *out unchanged" — the result of heap_caps_aligned_alloc(a, n, DEFAULT), so
// an alignment it refuses is ENOMEM too, and one it accepts succeeds.
TARGET_TEST(LibcMalloc, PosixMemalignFollowsEspIdf) {
  start();
  const std::size_t f = free_now();
  void *const sentinel = &g_layout;
  void *out = sentinel;
  errno = 0;
  CHECK_EQ(posix_memalign(&out, opaque<std::size_t>(16), opaque<std::size_t>(0)), 0);
  CHECK(out == nullptr);
  out = sentinel;
  CHECK_EQ(posix_memalign(&out, opaque<std::size_t>(3), opaque<std::size_t>(0)), 0);
  CHECK(out == nullptr);
  out = sentinel;
  CHECK_EQ(posix_memalign(&out, opaque<std::size_t>(64), opaque<std::size_t>(sizeof g_ram)),
           ENOMEM);
  CHECK(out == sentinel);
  CHECK_EQ(posix_memalign(&out, opaque<std::size_t>(3), opaque<std::size_t>(16)), ENOMEM);
  CHECK(out == sentinel);
  CHECK_EQ(posix_memalign(&out, opaque<std::size_t>(0), opaque<std::size_t>(16)), ENOMEM);
  CHECK(out == sentinel);
  CHECK_EQ(errno, 0);  // reported through the result only
  for (std::size_t a : {std::size_t(1), std::size_t(2), std::size_t(4), std::size_t(128)}) {
    out = sentinel;
    CHECK_EQ(posix_memalign(&out, opaque(a), opaque<std::size_t>(50)), 0);
    REQUIRE(out != sentinel && out != nullptr);
    CHECK_EQ(reinterpret_cast<std::uintptr_t>(out) % a, 0u);
    free(out);
  }
  CHECK_EQ(free_now(), f);
}

TARGET_TEST(LibcMalloc, StubsOfTheCLibrarysAllocator) {
  start();
  CHECK_EQ(malloc_trim(opaque<std::size_t>(0)), 0);
  CHECK_EQ(malloc_trim(opaque<std::size_t>(4096)), 0);
  CHECK_EQ(mallopt(opaque(1), opaque(2)), 0);
  malloc_stats();
  const struct mallinfo mi = mallinfo();
  CHECK_EQ(mi.arena, 0u);
  CHECK_EQ(mi.ordblks, 0u);
  CHECK_EQ(mi.uordblks, 0u);
  CHECK_EQ(mi.fordblks, 0u);
  CHECK_EQ(mi.keepcost, 0u);
}
