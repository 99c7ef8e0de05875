// fail_on_purpose.cpp — one deliberately failing check. Built into capheap_target_fail_on_purpose,
// which ctest expects to FAIL (WILL_FAIL): proves that a failed check makes the emulated run exit
// with a non-zero status, on every target.
#include "harness.hpp"

TARGET_TEST(Harness, ThisCheckFailsOnPurpose) {
  const unsigned two = 2;
  CHECK_EQ(two + 1u, 4u);
}
