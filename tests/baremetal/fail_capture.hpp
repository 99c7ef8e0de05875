// fail_capture.hpp — records the reports of capheap's fail hook for the scope of a test (the hook
// returns, so the reporting operation is refused and the test goes on).
#ifndef CAPHEAP_TESTS_BAREMETAL_FAIL_CAPTURE_HPP
#define CAPHEAP_TESTS_BAREMETAL_FAIL_CAPTURE_HPP

#include <cstring>

#include "capheap.h"

namespace capheap_target {

class FailCapture {
 public:
  FailCapture() noexcept {
    count_ = 0;
    what_[0] = '\0';
    addr_ = nullptr;
    heap_ = nullptr;
    previous_ = capheap_set_fail_hook(&FailCapture::hook);
  }
  ~FailCapture() { capheap_set_fail_hook(previous_); }
  FailCapture(const FailCapture &) = delete;
  FailCapture &operator=(const FailCapture &) = delete;

  unsigned count() const noexcept { return count_; }
  const void *addr() const noexcept { return addr_; }
  const void *heap() const noexcept { return heap_; }
  /// True if the last report's text is exactly `text`.
  bool last_is(const char *text) const noexcept { return std::strcmp(what_, text) == 0; }
  const char *last() const noexcept { return what_; }
  void clear() noexcept { count_ = 0; }

 private:
  static void hook(const char *what, const void *addr, const void *heap) {
    ++count_;
    std::size_t n = std::strlen(what);
    if (n >= sizeof what_) n = sizeof what_ - 1;
    std::memcpy(what_, what, n);
    what_[n] = '\0';
    addr_ = addr;
    heap_ = heap;
  }
  static inline unsigned count_ = 0;
  static inline char what_[128] = {};
  static inline const void *addr_ = nullptr;
  static inline const void *heap_ = nullptr;
  capheap_fail_hook_t previous_;
};

}  // namespace capheap_target

#endif
