// check.hpp — capheap's three assertion tiers, named by their cost.
//
//   CAPHEAP_CHECK_ALWAYS(cond)      O(1), kept in every build (level >= 1). Guards the operations a
//                                   buggy application can drive into corruption: free/realloc of a
//                                   bad pointer, double free, a damaged neighbour or free-list
//                                   link.
//   CAPHEAP_ASSERT_DEBUG(cond)      O(1), level >= 2 (Debug builds by default): internal
//   invariants. CAPHEAP_ASSERT_PARANOID(cond)   O(n), level >= 3: e.g. a full validate() after
//   every operation.
//
// CAPHEAP_HARDENING_LEVEL (CMake cache variable of the same name) selects the tier. A disabled
// check still type-checks its condition without evaluating it, so it cannot rot.
//
// A failed check does not abort by itself: it reports through the port's fail hook
// (capheap_port_fail, which must not allocate and receives the address and the heap) and evaluates
// to false, so the caller refuses the operation. The default host hook aborts.
#ifndef CAPHEAP_CORE_CHECK_HPP
#define CAPHEAP_CORE_CHECK_HPP

#include "port/port.h"

#ifndef CAPHEAP_HARDENING_LEVEL
#define CAPHEAP_HARDENING_LEVEL 1
#endif

namespace capheap {
namespace detail {

/// Reports a failed check through the port and returns false.
CAPHEAP_COLD inline bool check_failed(const char *what, const void *addr,
                                      const void *heap) noexcept {
  capheap_port_fail(what, addr, heap);
  return false;
}

}  // namespace detail
}  // namespace capheap

/// Evaluates to true if cond holds; otherwise reports (what, addr, heap) and evaluates to false.
#define CAPHEAP_CHECK_ALWAYS(cond, what, addr, heap) \
  (CAPHEAP_LIKELY(cond) || ::capheap::detail::check_failed((what), (addr), (heap)))

#if CAPHEAP_HARDENING_LEVEL >= 2
#define CAPHEAP_ASSERT_DEBUG(cond, what, addr, heap) \
  (CAPHEAP_LIKELY(cond) || ::capheap::detail::check_failed((what), (addr), (heap)))
#else
#define CAPHEAP_ASSERT_DEBUG(cond, what, addr, heap) (static_cast<void>(sizeof(!(cond))), true)
#endif

#if CAPHEAP_HARDENING_LEVEL >= 3
#define CAPHEAP_ASSERT_PARANOID(cond, what, addr, heap) \
  (CAPHEAP_LIKELY(cond) || ::capheap::detail::check_failed((what), (addr), (heap)))
#else
#define CAPHEAP_ASSERT_PARANOID(cond, what, addr, heap) (static_cast<void>(sizeof(!(cond))), true)
#endif

#endif  // CAPHEAP_CORE_CHECK_HPP
