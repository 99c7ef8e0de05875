// fail_recorder.hpp — a fail hook that records the last report instead of aborting, and a test
// fixture that installs it: for tests of misuse and corruption reports (what, address, heap).
#ifndef CAPHEAP_TESTS_SUPPORT_FAIL_RECORDER_HPP
#define CAPHEAP_TESTS_SUPPORT_FAIL_RECORDER_HPP

#include <gtest/gtest.h>

#include <string>

#include "capheap.h"

namespace capheap {
namespace testing {

/// The last report and how many there were.
struct FailRecord {
  int calls = 0;
  std::string what;
  const void *addr = nullptr;
  const void *heap = nullptr;
};

inline FailRecord g_fail;

inline void record_fail(const char *what, const void *addr, const void *heap) {
  ++g_fail.calls;
  g_fail.what = what;
  g_fail.addr = addr;
  g_fail.heap = heap;
}

/// Clears g_fail and installs record_fail for the test; restores the previous hook after it.
class FailRecorderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    g_fail = FailRecord{};
    old_ = capheap_set_fail_hook(record_fail);
  }
  void TearDown() override { capheap_set_fail_hook(old_); }
  capheap_fail_hook_t old_ = nullptr;
};

}  // namespace testing
}  // namespace capheap

#endif  // CAPHEAP_TESTS_SUPPORT_FAIL_RECORDER_HPP
