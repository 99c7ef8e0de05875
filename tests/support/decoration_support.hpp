// decoration_support.hpp — tests that need poisoning or owner words skip themselves in a build
// configured with -DCAPHEAP_DECORATION=OFF, where Heap::create and the C API refuse decorated
// heaps by contract (design.md section 2.1.1): the rest of the suite still runs in that build.
#ifndef CAPHEAP_TESTS_SUPPORT_DECORATION_SUPPORT_HPP
#define CAPHEAP_TESTS_SUPPORT_DECORATION_SUPPORT_HPP

#include <gtest/gtest.h>

namespace capheap {
namespace testing {

#if defined(CAPHEAP_WITH_DECORATION) && CAPHEAP_WITH_DECORATION == 0
constexpr bool kDecorationBuilt = false;
#else
constexpr bool kDecorationBuilt = true;
#endif

/// True when a heap with poisoning or owner words (`decorated`) cannot exist in this build: the
/// loops of tests that go through several configurations skip those.
constexpr bool decoration_missing(bool decorated) {
  return decorated && !kDecorationBuilt;
}

}  // namespace testing
}  // namespace capheap

/// Skips the current test (call it from the test body or SetUp) when `needed` is true and the
/// build has no decoration support.
#define CAPHEAP_SKIP_IF_NO_DECORATION(needed)                                   \
  do {                                                                          \
    if (::capheap::testing::decoration_missing(needed))                         \
      GTEST_SKIP() << "needs poisoning / owner words (CAPHEAP_DECORATION=OFF)"; \
  } while (0)

#endif  // CAPHEAP_TESTS_SUPPORT_DECORATION_SUPPORT_HPP
