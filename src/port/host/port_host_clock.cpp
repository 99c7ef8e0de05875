// port_host_clock.cpp — the host port's cheap event timestamps (capheap_port_timestamp): the CPU's
// counter where there is one (x86-64 TSC, aarch64 CNTVCT_EL0), converted to CLOCK_MONOTONIC
// nanoseconds with a rate measured once, when the first timestamp is converted (off the
// allocation path). Elsewhere the timestamp is CLOCK_MONOTONIC itself.
//
// Also the event recorder's coarse clock (port/port.h): in a process with several threads a ticker
// thread stores CLOCK_MONOTONIC into capheap_port_coarse_ns every millisecond while the recorder
// is installed, so that recording an event costs one load instead of a (virtualised) counter read;
// a single-threaded process gets no ticker (a thread would switch glibc to its atomic paths) and
// reads CLOCK_MONOTONIC_COARSE per event instead; and the process-wide memory
// barrier (membarrier) that lets the recorder's producers do without atomic read-modify-writes.

#include <linux/membarrier.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

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

/// A (counter, CLOCK_MONOTONIC) pair read together: of several tries, the one with the tightest
/// counter bracket around the clock read, so that a preemption in the middle (which can last
/// milliseconds on a loaded machine) does not skew the calibration.
Pair sample() noexcept {
  Pair best{0, 0};
  std::uint64_t best_width = ~std::uint64_t(0);
  for (int i = 0; i < 16; ++i) {
    const std::uint64_t a = counter();
    const std::uint64_t ns = monotonic_ns();
    const std::uint64_t b = counter();
    if (b - a < best_width) {
      best_width = b - a;
      best = Pair{a + (b - a) / 2, ns};
    }
  }
  return best;
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

pthread_mutex_t g_ticker_mutex = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t g_ticker_cond = PTHREAD_COND_INITIALIZER;
int g_ticker_users = 0;  // outstanding starts
bool g_ticker_stop = false;
bool g_ticker_running = false;
pthread_t g_ticker;

void *ticker(void *) {
  pthread_mutex_lock(&g_ticker_mutex);
  while (!g_ticker_stop) {
    __atomic_store_n(&capheap_port_coarse_ns, monotonic_ns(), __ATOMIC_RELAXED);
    timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += static_cast<long>(CAPHEAP_PORT_COARSE_PERIOD_NS);
    if (until.tv_nsec >= 1000000000) {
      until.tv_nsec -= 1000000000;
      ++until.tv_sec;
    }
    pthread_cond_timedwait(&g_ticker_cond, &g_ticker_mutex, &until);
  }
  pthread_mutex_unlock(&g_ticker_mutex);
  return nullptr;
}

pthread_condattr_t monotonic_condattr() noexcept {
  pthread_condattr_t a;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  return a;
}

enum class Barrier { kUnknown, kExpedited, kGlobal, kNone };
Barrier g_barrier = Barrier::kUnknown;  // under g_ticker_mutex

long membarrier(int cmd) noexcept {
  return syscall(__NR_membarrier, cmd, 0, 0);
}

}  // namespace

extern "C" {

uint64_t capheap_port_coarse_ns = 0;
int capheap_port_coarse_direct = 0;

uint64_t capheap_port_coarse_read(void) {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

void capheap_port_coarse_clock_start(void) {
  pthread_mutex_lock(&g_ticker_mutex);
  if (g_ticker_users == 0 && capheap_port_single_threaded()) {
    // No ticker: see port/port.h. The value stays readable for code that loads it directly.
    ++g_ticker_users;
    __atomic_store_n(&capheap_port_coarse_ns, capheap_port_coarse_read(), __ATOMIC_RELAXED);
    __atomic_store_n(&capheap_port_coarse_direct, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&g_ticker_mutex);
    return;
  }
  if (g_ticker_users++ == 0) {
    __atomic_store_n(&capheap_port_coarse_direct, 0, __ATOMIC_RELAXED);
    static bool cond_ready = [] {
      pthread_condattr_t a = monotonic_condattr();
      pthread_cond_destroy(&g_ticker_cond);
      pthread_cond_init(&g_ticker_cond, &a);
      pthread_condattr_destroy(&a);
      return true;
    }();
    (void)cond_ready;
    const std::uint64_t now = monotonic_ns();
    if (now > __atomic_load_n(&capheap_port_coarse_ns, __ATOMIC_RELAXED))
      __atomic_store_n(&capheap_port_coarse_ns, now, __ATOMIC_RELAXED);
    g_ticker_stop = false;
    // Without the thread the clock stays at the start value (events keep their order by seq).
    g_ticker_running = pthread_create(&g_ticker, nullptr, ticker, nullptr) == 0;
  }
  pthread_mutex_unlock(&g_ticker_mutex);
}

void capheap_port_coarse_clock_stop(void) {
  pthread_mutex_lock(&g_ticker_mutex);
  if (g_ticker_users == 0 || --g_ticker_users != 0) {
    pthread_mutex_unlock(&g_ticker_mutex);
    return;
  }
  const bool running = g_ticker_running;
  g_ticker_running = false;
  __atomic_store_n(&capheap_port_coarse_direct, 0, __ATOMIC_RELAXED);
  g_ticker_stop = true;
  pthread_cond_signal(&g_ticker_cond);
  pthread_mutex_unlock(&g_ticker_mutex);
  if (running) pthread_join(g_ticker, nullptr);
}

void capheap_port_thread_barrier(void) {
  pthread_mutex_lock(&g_ticker_mutex);
  if (g_barrier == Barrier::kUnknown) {
    const long cmds = membarrier(MEMBARRIER_CMD_QUERY);
    if (cmds >= 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 &&
        membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0)
      g_barrier = Barrier::kExpedited;
    else if (cmds >= 0 && (cmds & MEMBARRIER_CMD_GLOBAL) != 0)
      g_barrier = Barrier::kGlobal;
    else
      g_barrier = Barrier::kNone;
  }
  const Barrier b = g_barrier;
  pthread_mutex_unlock(&g_ticker_mutex);
  if (b == Barrier::kExpedited) (void)membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED);
  if (b == Barrier::kGlobal) (void)membarrier(MEMBARRIER_CMD_GLOBAL);
  static unsigned fence_word = 0;  // a locked read-modify-write: a full barrier here too
  (void)__atomic_fetch_add(&fence_word, 0u, __ATOMIC_SEQ_CST);
  // kNone (a kernel without membarrier): a short sleep lets producers that are between their flag
  // store and their check finish (best effort; documented in docs/debugging.md).
  if (b == Barrier::kNone) {
    const timespec ms = {0, 1000000};
    nanosleep(&ms, nullptr);
  }
}

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
