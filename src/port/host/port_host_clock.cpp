// port_host_clock.cpp — the host port's cheap event timestamps (capheap_port_timestamp): the CPU's
// counter where there is one (x86-64 TSC, aarch64 CNTVCT_EL0), converted to CLOCK_MONOTONIC
// nanoseconds with a rate measured once, when the first timestamp is converted (off the
// allocation path). Elsewhere the timestamp is CLOCK_MONOTONIC itself.
//
// Also the event recorder's coarse clock (port/port.h): a ticker stores CLOCK_MONOTONIC into
// capheap_port_coarse_ns every millisecond while the recorder is installed, so that recording an
// event costs one load instead of a (virtualised) counter read. On Linux the ticker is a raw
// clone(2) thread that glibc does not know about (see "The raw ticker" below), so a
// single-threaded program stays single-threaded for glibc (a pthread would switch glibc to its
// atomic paths for good); elsewhere a process with several threads gets a pthread ticker and a
// single-threaded one reads CLOCK_MONOTONIC_COARSE per event. And the process-wide memory barrier
// (membarrier) that lets the recorder's producers do without atomic read-modify-writes.

#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <signal.h>
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

/// How the coarse value is kept while started (under g_ticker_mutex).
enum class Ticker { kNone, kRaw, kPthread, kDirect };
Ticker g_mode = Ticker::kNone;
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

bool pthread_ticker_start() noexcept {
  static bool cond_ready = [] {
    pthread_condattr_t a = monotonic_condattr();
    pthread_cond_destroy(&g_ticker_cond);
    pthread_cond_init(&g_ticker_cond, &a);
    pthread_condattr_destroy(&a);
    return true;
  }();
  (void)cond_ready;
  g_ticker_stop = false;
  return pthread_create(&g_ticker, nullptr, ticker, nullptr) == 0;
}

// ---- The raw ticker ---------------------------------------------------------------------------
// A thread made with clone(2) directly rather than pthread_create, so that glibc does not learn of
// it: __libc_single_threaded stays true and a single-threaded program keeps glibc's lock-free
// mutex and stdio paths (a pthread would cost more per malloc + free than the clock it saves).
// That is sound because the thread touches nothing glibc or the program owns: it shares the
// creator's thread pointer, so it must not use thread-local storage (no errno, no cancellation
// points: its sleep is a raw futex system call; clock_gettime is the vDSO and writes errno only on
// failure, which CLOCK_MONOTONIC does not have); it runs with every signal blocked, so no handler
// ever runs on it; its stack is static. It stores the clock into capheap_port_coarse_ns, sleeps on
// a futex word for one period, and exits through the clone wrapper's exit system call when told
// to; the kernel clears g_raw_tid at its exit (CLONE_CHILD_CLEARTID), which is what stop waits
// for. Not with sanitizers (their runtimes must know every thread) and not after fork (the child
// has no ticker: it reads the clock per event, see on_fork_child).
#if defined(__linux__) && (defined(__x86_64__) || defined(__aarch64__)) && \
    !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define CAPHEAP_RAW_TICKER 0
#endif
#endif
#ifndef CAPHEAP_RAW_TICKER
#define CAPHEAP_RAW_TICKER 1
#endif
#else
#define CAPHEAP_RAW_TICKER 0
#endif

#if CAPHEAP_RAW_TICKER
alignas(64) unsigned char g_raw_stack[16384];
pid_t g_raw_tid = 0;  // the ticker's thread id while it runs; the kernel zeroes it at exit
int g_raw_stop = 0;   // futex word: 1 asks the ticker to exit

/// futex(addr, op, val, timeout) without glibc (no errno, no cancellation point).
long raw_futex(int *addr, int op, int val, const timespec *timeout) noexcept {
#if defined(__x86_64__)
  long ret;
  register long r10 __asm__("r10") = reinterpret_cast<long>(timeout);
  __asm__ __volatile__("syscall"
                       : "=a"(ret)
                       : "0"(static_cast<long>(SYS_futex)), "D"(addr), "S"(static_cast<long>(op)),
                         "d"(static_cast<long>(val)), "r"(r10)
                       : "rcx", "r11", "memory");
  return ret;
#else
  register long x8 __asm__("x8") = SYS_futex;
  register long x0 __asm__("x0") = reinterpret_cast<long>(addr);
  register long x1 __asm__("x1") = op;
  register long x2 __asm__("x2") = val;
  register long x3 __asm__("x3") = reinterpret_cast<long>(timeout);
  __asm__ __volatile__("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
  return x0;
#endif
}

int raw_ticker(void *) {
  while (__atomic_load_n(&g_raw_stop, __ATOMIC_ACQUIRE) == 0) {
    __atomic_store_n(&capheap_port_coarse_ns, monotonic_ns(), __ATOMIC_RELAXED);
    const timespec period = {0, static_cast<long>(CAPHEAP_PORT_COARSE_PERIOD_NS)};
    raw_futex(&g_raw_stop, FUTEX_WAIT_PRIVATE, 0, &period);
  }
  return 0;
}

bool raw_ticker_start() noexcept {
  __atomic_store_n(&g_raw_stop, 0, __ATOMIC_RELAXED);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);  // the ticker inherits the full mask
  const int flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |
                    CLONE_SYSVSEM | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID;
  const int tid = clone(raw_ticker, g_raw_stack + sizeof g_raw_stack, flags, nullptr, &g_raw_tid,
                        nullptr, &g_raw_tid);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return tid > 0;
}

void raw_ticker_stop() noexcept {
  __atomic_store_n(&g_raw_stop, 1, __ATOMIC_RELEASE);
  syscall(SYS_futex, &g_raw_stop, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
  // The kernel's wake at the ticker's exit is a shared-futex wake: wait without _PRIVATE.
  for (pid_t t; (t = __atomic_load_n(&g_raw_tid, __ATOMIC_ACQUIRE)) != 0;)
    syscall(SYS_futex, &g_raw_tid, FUTEX_WAIT, t, nullptr, nullptr, 0);
}
#else
bool raw_ticker_start() noexcept {
  return false;
}
void raw_ticker_stop() noexcept {}
#endif

/// A child of fork has none of the parent's threads: while the clock is started there it reads
/// the clock per event.
void on_fork_child() {
  pthread_mutex_init(&g_ticker_mutex, nullptr);
#if CAPHEAP_RAW_TICKER
  g_raw_tid = 0;
#endif
  if (g_mode == Ticker::kRaw || g_mode == Ticker::kPthread) {
    g_mode = Ticker::kDirect;
    __atomic_store_n(&capheap_port_coarse_direct, 1, __ATOMIC_RELAXED);
  }
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
  static const int fork_handler = pthread_atfork(nullptr, nullptr, on_fork_child);
  (void)fork_handler;
  pthread_mutex_lock(&g_ticker_mutex);
  if (g_ticker_users++ == 0) {
    const std::uint64_t now = monotonic_ns();
    if (now > __atomic_load_n(&capheap_port_coarse_ns, __ATOMIC_RELAXED))
      __atomic_store_n(&capheap_port_coarse_ns, now, __ATOMIC_RELAXED);
    if (raw_ticker_start()) {
      g_mode = Ticker::kRaw;
    } else if (capheap_port_single_threaded()) {
      // No pthread ticker in a single-threaded process (see port/port.h): a read per event.
      g_mode = Ticker::kDirect;
    } else {
      // Without the thread the clock stays at the start value (events keep their order by seq).
      g_mode = pthread_ticker_start() ? Ticker::kPthread : Ticker::kNone;
    }
    __atomic_store_n(&capheap_port_coarse_direct, g_mode == Ticker::kDirect ? 1 : 0,
                     __ATOMIC_RELAXED);
  }
  pthread_mutex_unlock(&g_ticker_mutex);
}

void capheap_port_coarse_clock_stop(void) {
  pthread_mutex_lock(&g_ticker_mutex);
  if (g_ticker_users == 0 || --g_ticker_users != 0) {
    pthread_mutex_unlock(&g_ticker_mutex);
    return;
  }
  const Ticker mode = g_mode;
  g_mode = Ticker::kNone;
  __atomic_store_n(&capheap_port_coarse_direct, 0, __ATOMIC_RELAXED);
  if (mode == Ticker::kRaw) raw_ticker_stop();
  g_ticker_stop = true;
  pthread_cond_signal(&g_ticker_cond);
  pthread_mutex_unlock(&g_ticker_mutex);
  if (mode == Ticker::kPthread) pthread_join(g_ticker, nullptr);
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
