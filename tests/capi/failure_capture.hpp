// failure_capture.hpp — the failed-allocation callback's calls, recorded for exact assertions
// (heap_caps_register_failed_alloc_callback(on_failure), then expect_one_failure).
#ifndef CAPHEAP_TESTS_CAPI_FAILURE_CAPTURE_HPP
#define CAPHEAP_TESTS_CAPI_FAILURE_CAPTURE_HPP

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace capheap_test {

struct Failure {
  std::size_t size;
  std::uint32_t caps;
  std::string function;
};
inline std::vector<Failure> g_failures;

inline void on_failure(size_t size, uint32_t caps, const char *function_name) {
  g_failures.push_back({size, caps, function_name != nullptr ? function_name : "(null)"});
}

/// Exactly one callback since the last clear, with these arguments; clears the record.
inline void expect_one_failure(std::size_t size, std::uint32_t caps, const char *function) {
  ASSERT_EQ(g_failures.size(), 1u);
  EXPECT_EQ(g_failures[0].size, size);
  EXPECT_EQ(g_failures[0].caps, caps);
  EXPECT_EQ(g_failures[0].function, function);
  g_failures.clear();
}

}  // namespace capheap_test

#endif  // CAPHEAP_TESTS_CAPI_FAILURE_CAPTURE_HPP
