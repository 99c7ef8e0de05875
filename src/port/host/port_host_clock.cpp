// port_host_clock.cpp — the host port's cheap event timestamps (capheap_port_timestamp): the CPU's
// counter where there is one (x86-64 TSC, aarch64 CNTVCT_EL0), converted to CLOCK_MONOTONIC
// nanoseconds with a rate measured once, when the first timestamp is converted (off the
// allocation path). Elsewhere the timestamp is CLOCK_MONOTONIC itself.

#include <time.h>

#include <cstdint>

#include "port/port.h"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define CAPHEAP_HOST_COUNTER 1
#elif defined(__aarch64__)
#define CAPHEAP_HOST_COUNTER 1
#else
#define CAPHEAP_HOST_COUNTER 0
#endif

namespace {

std::uint64_t monotonic_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

#if CAPHEAP_HOST_COUNTER

inline std::uint64_t counter() noexcept {
#if defined(__aarch64__)
  std::uint64_t v;
  __asm__ __volatile__("mrs %0, cntvct_el0" : "=r"(v));
  return v;
#else
  return __rdtsc();
#endif
}

/// One (counter, nanoseconds) pair read as close together as possible.
struct Pair {
  std::uint64_t ticks;
  std::uint64_t ns;
};

Pair sample() noexcept {
  const std::uint64_t a = counter();
  const std::uint64_t ns = monotonic_ns();
  const std::uint64_t b = counter();
  return Pair{a + (b - a) / 2, ns};
}

// Taken at program start, so that the calibration interval has usually long passed by the time the
// first event is formatted.
const Pair g_start = sample();

struct Calibration {
  Pair anchor;
  double ns_per_tick;
};

/// Measures the counter's rate over at least 20 ms since program start (spins for the rest).
Calibration calibrate() noexcept {
  constexpr std::uint64_t kMinInterval = 20000000;  // ns
  Pair now = sample();
  while (now.ns - g_start.ns < kMinInterval || now.ticks == g_start.ticks)
    now = sample();
  return Calibration{now, static_cast<double>(now.ns - g_start.ns) /
                              static_cast<double>(now.ticks - g_start.ticks)};
}

#endif  // CAPHEAP_HOST_COUNTER

}  // namespace

extern "C" {

uint64_t capheap_port_timestamp(void) {
#if CAPHEAP_HOST_COUNTER
  return counter();
#else
  return monotonic_ns();
#endif
}

uint64_t capheap_port_timestamp_ns(uint64_t stamp) {
#if CAPHEAP_HOST_COUNTER
  static const Calibration cal = calibrate();
  const auto delta = static_cast<double>(static_cast<std::int64_t>(stamp - cal.anchor.ticks));
  const double ns = static_cast<double>(cal.anchor.ns) + delta * cal.ns_per_tick;
  return ns <= 0 ? 0u : static_cast<std::uint64_t>(ns);
#else
  return stamp;
#endif
}

}  // extern "C"
