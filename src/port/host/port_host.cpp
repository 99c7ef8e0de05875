// port_host.cpp — the host (Linux/POSIX) implementation of the port contract in port/port.h.
//
// Locks are recursive pthread mutexes living in capheap_lock_t storage; the fail hook prints to
// stderr and aborts; console output goes to stdout. Every hook can be replaced at run time (tests
// install a recording fail hook to check misuse reports without dying).

#include "port/port.h"

#include <pthread.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "capheap.h"

static_assert(sizeof(pthread_mutex_t) <= sizeof(capheap_lock_t),
              "capheap_lock_t must be able to hold a pthread mutex");

namespace {
std::atomic<capheap_lock_fn_t> g_lock_acquire{nullptr};
std::atomic<capheap_lock_fn_t> g_lock_release{nullptr};
std::atomic<capheap_fail_hook_t> g_fail_hook{nullptr};
std::atomic<capheap_print_hook_t> g_print_hook{nullptr};

pthread_mutex_t *mutex_of(void *lock) {
  return static_cast<pthread_mutex_t *>(lock);
}
}  // namespace

extern "C" {

void capheap_lock_init(capheap_lock_t *lock) {
  std::memset(lock, 0, sizeof *lock);
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
  pthread_mutex_init(mutex_of(lock), &attr);
  pthread_mutexattr_destroy(&attr);
}

void capheap_lock_destroy(capheap_lock_t *lock) {
  pthread_mutex_destroy(mutex_of(lock));
}

void capheap_set_lock_hooks(capheap_lock_fn_t acquire, capheap_lock_fn_t release) {
  g_lock_acquire.store(acquire);
  g_lock_release.store(release);
}

void capheap_port_lock_acquire(void *lock) {
  if (capheap_lock_fn_t fn = g_lock_acquire.load(std::memory_order_relaxed)) {
    fn(lock);
    return;
  }
  pthread_mutex_lock(mutex_of(lock));
}

void capheap_port_lock_release(void *lock) {
  if (capheap_lock_fn_t fn = g_lock_release.load(std::memory_order_relaxed)) {
    fn(lock);
    return;
  }
  pthread_mutex_unlock(mutex_of(lock));
}

capheap_fail_hook_t capheap_set_fail_hook(capheap_fail_hook_t hook) {
  return g_fail_hook.exchange(hook);
}

void capheap_port_fail(const char *what, const void *addr, const void *heap) {
  if (capheap_fail_hook_t hook = g_fail_hook.load()) {
    hook(what, addr, heap);
    return;
  }
  // Not printf: stdio may allocate. One write of a preformatted buffer.
  char buf[256];
  const int n =
      std::snprintf(buf, sizeof buf, "CORRUPT HEAP: %s at %p (heap %p)\n", what, addr, heap);
  if (n > 0) {
    const size_t len =
        static_cast<size_t>(n) < sizeof buf ? static_cast<size_t>(n) : sizeof buf - 1;
    std::fwrite(buf, 1, len, stderr);
    std::fflush(stderr);
  }
  std::abort();
}

void *capheap_port_current_task(void) {
  static thread_local char marker;
  return &marker;
}

void capheap_port_abort(const char *message) {
  std::fputs(message, stderr);
  std::fputc('\n', stderr);
  std::fflush(stderr);
  std::abort();
}

void capheap_set_print_hook(capheap_print_hook_t print) {
  g_print_hook.store(print);
}

void capheap_port_printf(const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  const int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  const size_t len = static_cast<size_t>(n) < sizeof buf ? static_cast<size_t>(n) : sizeof buf - 1;
  if (capheap_print_hook_t hook = g_print_hook.load(std::memory_order_relaxed)) {
    hook(buf, len);
    return;
  }
  std::fwrite(buf, 1, len, stdout);
}

}  // extern "C"
