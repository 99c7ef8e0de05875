// hooks_test.cpp — CAPHEAP_USE_HOOKS (ESP-IDF CONFIG_HEAP_USE_HOOKS, spec §1.1 / §4.8): this
// executable compiles heap_caps.cpp itself with CAPHEAP_USE_HOOKS=1 (its object replaces the
// library's) and defines the two hooks.

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "capheap.h"
#include "esp_heap_caps.h"

namespace {
struct Call {
  char kind;  // 'a' or 'f'
  void *ptr;
  std::size_t size;
  std::uint32_t caps;
};
std::vector<Call> g_calls;
bool g_on = false;
}  // namespace

extern "C" void esp_heap_trace_alloc_hook(void *ptr, size_t size, uint32_t caps) {
  if (g_on) g_calls.push_back({'a', ptr, size, caps});
}
extern "C" void esp_heap_trace_free_hook(void *ptr) {
  if (g_on) g_calls.push_back({'f', ptr, 0, 0});
}

namespace {

TEST(Hooks, EveryAllocationAndFreeCallsItsHook) {
  heap_caps_free(heap_caps_malloc(1, MALLOC_CAP_DEFAULT));  // initialise
  g_calls.reserve(64);
  g_on = true;
  void *a = heap_caps_malloc(100, MALLOC_CAP_DEFAULT);
  void *z = heap_caps_calloc(2, 8, MALLOC_CAP_8BIT);
  void *m = heap_caps_aligned_alloc(32, 40, MALLOC_CAP_DEFAULT);
  void *blocker = heap_caps_malloc(4, MALLOC_CAP_DEFAULT);
  void *r = heap_caps_realloc(a, 4000, MALLOC_CAP_DEFAULT);     // moves: alloc hook + free hook
  void *s = heap_caps_realloc(r, 3000, MALLOC_CAP_DEFAULT);     // in place: alloc hook only
  EXPECT_EQ(heap_caps_malloc(0, MALLOC_CAP_DEFAULT), nullptr);  // failures: no hook
  EXPECT_EQ(heap_caps_malloc(1, MALLOC_CAP_INVALID), nullptr);
  heap_caps_free(nullptr);  // no hook
  heap_caps_free(z);
  heap_caps_free(m);
  heap_caps_free(blocker);
  EXPECT_EQ(heap_caps_realloc(s, 0, MALLOC_CAP_DEFAULT), nullptr);  // a free
  g_on = false;
  ASSERT_NE(r, a);
  ASSERT_EQ(s, r);
  // A moving realloc allocates (and fills) the new block before freeing the old one (spec §1.1):
  // its alloc hook comes first.
  const std::vector<std::string> expected = {"a100",  "a16", "a40", "a4", "a4000", "f",
                                             "a3000", "f",   "f",   "f",  "f"};
  ASSERT_EQ(g_calls.size(), expected.size());
  const void *ptrs[] = {a, z, m, blocker, r, a, r, z, m, blocker, r};
  const std::uint32_t caps[] = {MALLOC_CAP_DEFAULT,
                                MALLOC_CAP_8BIT,
                                MALLOC_CAP_DEFAULT,
                                MALLOC_CAP_DEFAULT,
                                MALLOC_CAP_DEFAULT,
                                0,
                                MALLOC_CAP_DEFAULT,
                                0,
                                0,
                                0,
                                0};
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const Call &c = g_calls[i];
    std::string got(1, c.kind);
    if (c.kind == 'a') got += std::to_string(c.size);
    EXPECT_EQ(got, expected[i]) << i;
    EXPECT_EQ(c.ptr, ptrs[i]) << i;
    EXPECT_EQ(c.caps, caps[i]) << i;
  }
}

// heap_caps_realloc_base(p, 0) frees p (spec §1.1: realloc to size 0 frees): its free hook runs,
// as for heap_caps_realloc (it used to free without the hook).
TEST(Hooks, ReallocBaseToSizeZeroCallsTheFreeHook) {
  heap_caps_free(heap_caps_malloc(1, MALLOC_CAP_DEFAULT));  // initialise
  g_calls.clear();
  g_on = true;
  void *p = heap_caps_realloc_base(nullptr, 32, MALLOC_CAP_DEFAULT);
  EXPECT_EQ(heap_caps_realloc_base(p, 0, MALLOC_CAP_DEFAULT), nullptr);
  EXPECT_EQ(heap_caps_realloc_base(nullptr, 0, MALLOC_CAP_DEFAULT), nullptr);  // nothing
  g_on = false;
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(g_calls.size(), 2u);
  EXPECT_EQ(g_calls[0].kind, 'a');
  EXPECT_EQ(g_calls[0].ptr, p);
  EXPECT_EQ(g_calls[0].size, 32u);
  EXPECT_EQ(g_calls[1].kind, 'f');
  EXPECT_EQ(g_calls[1].ptr, p);
}

TEST(Hooks, AnExecAllocationReportsTheAdjustedCaps) {
  // ESP-IDF adds 32BIT to an EXEC request before it walks the heaps (spec §3.3) and hands the hook
  // the adjusted caps (spec §1.1); the size is the one requested.
  heap_caps_free(heap_caps_malloc(1, MALLOC_CAP_DEFAULT));  // initialise
  g_calls.clear();
  g_on = true;
  void *x = heap_caps_malloc(64, MALLOC_CAP_EXEC);
  void *y = heap_caps_malloc(40, MALLOC_CAP_32BIT);
  g_on = false;
  ASSERT_NE(x, nullptr);
  ASSERT_NE(y, nullptr);
  ASSERT_EQ(g_calls.size(), 2u);
  EXPECT_EQ(g_calls[0].ptr, x);
  EXPECT_EQ(g_calls[0].size, 64u);
  EXPECT_EQ(g_calls[0].caps, MALLOC_CAP_EXEC | MALLOC_CAP_32BIT);
  EXPECT_EQ(g_calls[1].ptr, y);
  EXPECT_EQ(g_calls[1].caps, MALLOC_CAP_32BIT);
  heap_caps_free(x);
  heap_caps_free(y);
}

TEST(Hooks, AnAlignedExecAllocationReportsTheCapsAsRequested) {
  // heap_caps_aligned_alloc has no EXEC special case (spec §1.1): its caps are not adjusted, and
  // the hook gets them as requested (it used to get 32BIT added as for heap_caps_malloc).
  heap_caps_free(heap_caps_malloc(1, MALLOC_CAP_DEFAULT));  // initialise
  g_calls.clear();
  g_on = true;
  void *x = heap_caps_aligned_alloc(16, 64, MALLOC_CAP_EXEC);
  void *z = heap_caps_aligned_calloc(16, 2, 32, MALLOC_CAP_EXEC);
  g_on = false;
  ASSERT_NE(x, nullptr);
  ASSERT_NE(z, nullptr);
  ASSERT_EQ(g_calls.size(), 2u);
  EXPECT_EQ(g_calls[0].ptr, x);
  EXPECT_EQ(g_calls[0].size, 64u);
  EXPECT_EQ(g_calls[0].caps, MALLOC_CAP_EXEC);
  EXPECT_EQ(g_calls[1].ptr, z);
  EXPECT_EQ(g_calls[1].size, 64u);
  EXPECT_EQ(g_calls[1].caps, MALLOC_CAP_EXEC);
  heap_caps_free(x);
  heap_caps_free(z);
}

}  // namespace
