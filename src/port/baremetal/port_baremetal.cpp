// port_baremetal.cpp — the bare-metal implementation of the port contract in port/port.h.
//
// Freestanding: no libc I/O, no allocation, no OS. Locks call user hooks (typically "mask
// interrupts" / "restore"), console output goes to a user print hook (discarded without one) and a
// detected corruption calls the user fail hook, or traps. Formatting is a tiny built-in subset of
// printf (%s %d %u %x %X %p %c %%, width and zero padding) so dumps work without a C library.

#include "port/port.h"

#include <stdarg.h>

#include "capheap.h"

namespace {
capheap_lock_fn_t g_lock_acquire = nullptr;
capheap_lock_fn_t g_lock_release = nullptr;
capheap_fail_hook_t g_fail_hook = nullptr;
capheap_print_hook_t g_print_hook = nullptr;
capheap_task_hooks_t g_task_hooks = {};
uint32_t (*g_cycle_hook)(void) = nullptr;
uint64_t (*g_time_hook)(void) = nullptr;

struct Out {
  char buf[160];
  size_t len = 0;
  void flush() {
    if (len != 0 && g_print_hook != nullptr) g_print_hook(buf, len);
    len = 0;
  }
  void put(char ch) {
    if (len == sizeof buf) flush();
    buf[len++] = ch;
  }
};

}  // namespace

extern "C" {

void capheap_lock_init(capheap_lock_t *) {}
void capheap_lock_destroy(capheap_lock_t *) {}

void capheap_set_lock_hooks(capheap_lock_fn_t acquire, capheap_lock_fn_t release) {
  g_lock_acquire = acquire;
  g_lock_release = release;
}

void capheap_port_lock_acquire(void *lock) {
  if (g_lock_acquire != nullptr) g_lock_acquire(lock);
}

void capheap_port_lock_release(void *lock) {
  if (g_lock_release != nullptr) g_lock_release(lock);
}

capheap_fail_hook_t capheap_set_fail_hook(capheap_fail_hook_t hook) {
  capheap_fail_hook_t old = g_fail_hook;
  g_fail_hook = hook;
  return old;
}

void capheap_port_fail(const char *what, const void *addr, const void *heap) {
  if (g_fail_hook != nullptr) {
    g_fail_hook(what, addr, heap);
    return;
  }
  capheap_port_printf("CORRUPT HEAP: %s at %p (heap %p)\n", what, addr, heap);
  __builtin_trap();
}

void *capheap_port_current_task(void) {
  return g_task_hooks.current_owner != nullptr
             ? reinterpret_cast<void *>(static_cast<uintptr_t>(g_task_hooks.current_owner()))
             : nullptr;
}

void capheap_set_task_hooks(const capheap_task_hooks_t *hooks) {
  g_task_hooks = hooks != nullptr ? *hooks : capheap_task_hooks_t{};
}

uint32_t capheap_port_task_owner(void) {
  return g_task_hooks.current_owner != nullptr ? g_task_hooks.current_owner() : 0u;
}

size_t capheap_port_task_name(uint32_t owner, char *buf, size_t len) {
  if (g_task_hooks.name != nullptr) return g_task_hooks.name(owner, buf, len);
  char text[24];
  size_t n = 0;
  if (owner == 0) {
    for (const char *s = "Pre-scheduler"; *s != '\0'; ++s)
      text[n++] = *s;
  } else {
    for (const char *s = "task-0x"; *s != '\0'; ++s)
      text[n++] = *s;
    for (int shift = 28; shift >= 0; shift -= 4)
      text[n++] = "0123456789abcdef"[(owner >> shift) & 0xFu];
  }
  if (len > 0) {
    const size_t copy = n < len - 1 ? n : len - 1;
    for (size_t i = 0; i < copy; ++i)
      buf[i] = text[i];
    buf[copy] = '\0';
  }
  return n;
}

bool capheap_port_task_alive(uint32_t owner) {
  return owner == 0 || g_task_hooks.alive == nullptr || g_task_hooks.alive(owner);
}

void capheap_set_clock_hooks(uint32_t (*cycle_count)(void), uint64_t (*time_ns)(void)) {
  g_cycle_hook = cycle_count;
  g_time_hook = time_ns;
}

uint32_t capheap_port_cycle_count(void) {
  return g_cycle_hook != nullptr ? g_cycle_hook() : 0u;
}

uint32_t capheap_port_cpu_id(void) {
  return 0;
}

uint64_t capheap_port_time_ns(void) {
  return g_time_hook != nullptr ? g_time_hook() : 0u;
}

// Event timestamps are the clock hook's nanoseconds (no conversion needed).
uint64_t capheap_port_timestamp(void) {
  return g_time_hook != nullptr ? g_time_hook() : 0u;
}

uint64_t capheap_port_timestamp_ns(uint64_t stamp) {
  return stamp;
}

size_t capheap_port_backtrace(void **, size_t, size_t) {
  return 0;
}

void capheap_port_abort(const char *message) {
  capheap_port_printf("%s\n", message);
  __builtin_trap();
}

void capheap_set_print_hook(capheap_print_hook_t print) {
  g_print_hook = print;
}

// Numbers are formatted in the machine word (unsigned long: 32 bits on the MCUs): 64-bit division
// would pull libgcc's __udivmoddi4 (about 700 bytes on a Cortex-M) into every firmware image.
// One path for every number (%d %u %x %X %p): digits in reverse into a small buffer, then the
// sign, the padding and the digits in order.
void capheap_port_printf(const char *fmt, ...) {
  if (g_print_hook == nullptr) return;
  Out out;
  va_list ap;
  va_start(ap, fmt);
  for (char c; (c = *fmt++) != '\0';) {
    if (c != '%') {
      out.put(c);
      continue;
    }
    char pad = ' ';
    int width = 0;
    if (*fmt == '0') {
      pad = '0';
      ++fmt;
    }
    while (*fmt >= '0' && *fmt <= '9')
      width = width * 10 + (*fmt++ - '0');
    bool is_long = false;
    while (*fmt == 'l' || *fmt == 'z') {
      is_long = sizeof(long) != sizeof(int);  // (one argument type where they are the same)
      ++fmt;
    }
    c = *fmt;
    if (c == '\0') break;
    ++fmt;
    // The conversion's position in "diuxXpsc" (8: anything else).
    unsigned kind = 0;
    while (kind < 8 && "diuxXpsc"[kind] != c)
      ++kind;
    if (kind >= 6) {
      if (kind == 6) {
        for (const char *s = va_arg(ap, const char *); s != nullptr && *s != '\0'; ++s)
          out.put(*s);
        continue;
      }
      if (kind == 7) {
        c = static_cast<char>(va_arg(ap, int));
      } else if (c != '%') {
        out.put('%');
      }
      out.put(c);
      continue;
    }
    unsigned long v;
    bool negative = false;
    if (kind <= 1) {
      const long x = is_long ? va_arg(ap, long) : va_arg(ap, int);
      negative = x < 0;
      v = negative ? 0ul - static_cast<unsigned long>(x) : static_cast<unsigned long>(x);
    } else if (kind == 5) {
      out.put('0');
      out.put('x');
      v = static_cast<unsigned long>(reinterpret_cast<uintptr_t>(va_arg(ap, void *)));
      width = 8;
      pad = '0';
    } else {
      v = is_long ? va_arg(ap, unsigned long) : va_arg(ap, unsigned);
    }
    const unsigned base = kind <= 2 ? 10 : 16;
    char digits[24];
    int n = 0;
    do {
      const unsigned d = static_cast<unsigned>(v % base);
      digits[n++] = static_cast<char>(d < 10 ? '0' + d : (c == 'X' ? 'A' - 10 : 'a' - 10) + d);
      v /= base;
    } while (v != 0);
    if (negative) digits[n++] = '-';
    while (n < width--)
      out.put(pad);
    while (n > 0)
      out.put(digits[--n]);
  }
  va_end(ap);
  out.flush();
}

}  // extern "C"
