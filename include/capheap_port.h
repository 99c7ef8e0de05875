/*
 * capheap_port.h — capheap's port contract: the only seam between capheap and the platform it runs
 * on.
 *
 * Every layer above (core, caps, capi) reaches the outside world only through the functions and
 * macros declared here. Two implementations ship: `src/port/host` (pthread mutex, stderr, abort)
 * and `src/port/baremetal` (user-supplied callbacks, silent by default, trap on failure). A new
 * platform provides one translation unit defining these functions; see docs/porting.md.
 *
 * This header is C-compatible and freestanding: it includes only <stddef.h> and <stdint.h>.
 */
#ifndef CAPHEAP_PORT_H
#define CAPHEAP_PORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Placement and path attributes ---------------------------------------------------------- */

/* CAPHEAP_IRAM_ATTR places a function in fast, always-mapped RAM (ESP-IDF's IRAM_ATTR idea). A port
 * or the build may predefine it (e.g. `__attribute__((section(".iram1")))`); default: nothing. */
#ifndef CAPHEAP_IRAM_ATTR
#define CAPHEAP_IRAM_ATTR
#endif

#if defined(__GNUC__) || defined(__clang__)
#define CAPHEAP_HOT __attribute__((hot))
#define CAPHEAP_COLD __attribute__((cold, noinline))
#define CAPHEAP_NOINLINE __attribute__((noinline))
#define CAPHEAP_LIKELY(x) __builtin_expect(!!(x), 1)
#define CAPHEAP_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define CAPHEAP_PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define CAPHEAP_HOT
#define CAPHEAP_COLD
#define CAPHEAP_NOINLINE
#define CAPHEAP_LIKELY(x) (x)
#define CAPHEAP_UNLIKELY(x) (x)
#define CAPHEAP_PRINTF_LIKE(f, a)
#endif

/* ---- Locks ------------------------------------------------------------------------------------
 */

/* Acquire / release the lock object a user attached to a heap (multi_heap_set_lock). `lock` is
 * never NULL here (callers skip locking for NULL). The lock must be recursive. Host: `lock` points
 * to a capheap_lock_t initialised with capheap_lock_init (a recursive pthread mutex) unless hooks
 * were installed with capheap_set_lock_hooks (capheap.h). Bare metal: calls the installed hooks;
 * without hooks, locking is a no-op (single-threaded use). */
void capheap_port_lock_acquire(void *lock);
void capheap_port_lock_release(void *lock);

/* ---- Tasks ------------------------------------------------------------------------------------
 */

/* An identity of the calling thread or task, stable while it lives and distinct between live
 * threads (host: one per thread; bare metal: what the installed task hook returns, else NULL for a
 * single-threaded system). Used to let an initialising thread re-enter the API and to attribute
 * allocations to tasks. Must not allocate. */
void *capheap_port_current_task(void);

/* Owner word of the calling task: the 32-bit value capheap stores in each allocation of a heap
 * with task tracking (capheap_heap_config_t.task_tracking) and the key of the per-task statistics.
 * 0 means "no task" (before the scheduler starts; ESP-IDF's "Pre-scheduler"). 32-bit MCUs: the
 * task handle itself. Host: a small number given to each thread on first use (1, 2, ...), never
 * reused. Bare metal: the installed task hook (capheap_set_task_hooks), else 0. Must not allocate;
 * callable from any context the allocator is. */
uint32_t capheap_port_task_owner(void);

/* Writes the name of the task with this owner word into buf (NUL-terminated, truncated to len) and
 * returns the length of the full name; "Pre-scheduler" for owner 0. Host: the thread's name
 * (pthread_getname_np) remembered while it lived, else "thread-<owner>". Must not allocate. */
size_t capheap_port_task_name(uint32_t owner, char *buf, size_t len);

/* True while the task with this owner word exists (owner 0: always true). Host: until the thread
 * exits. Bare metal: the installed hook, else true. */
bool capheap_port_task_alive(uint32_t owner);

/* ---- Time and call sites ----------------------------------------------------------------------
 */

/* A free-running 32-bit cycle counter (Xtensa CCOUNT, RISC-V mcycle, Cortex-M DWT->CYCCNT); host:
 * derived from a monotonic clock. Bare metal: the installed clock hook, else 0. */
uint32_t capheap_port_cycle_count(void);

/* Number of the CPU core running the caller (0 on single-core systems and on hosts without it). */
uint32_t capheap_port_cpu_id(void);

/* Monotonic time in nanoseconds (host: CLOCK_MONOTONIC; bare metal: the clock hook, else 0). */
uint64_t capheap_port_time_ns(void);

/* A cheap raw timestamp for event records (the recorder reads one per event), monotonic per CPU,
 * in a unit of the port's choosing. Host x86-64: the time-stamp counter (rdtsc); aarch64: the
 * virtual counter (CNTVCT_EL0); other hosts: CLOCK_MONOTONIC nanoseconds. Bare metal: the clock
 * hook's nanoseconds, else 0. Must not allocate; callable from any context the allocator is. */
uint64_t capheap_port_timestamp(void);

/* Converts a capheap_port_timestamp() value into nanoseconds of capheap_port_time_ns()'s clock
 * (host: the counter is calibrated against CLOCK_MONOTONIC on the first call, which may take a few
 * milliseconds). Only called when events are formatted, never on the allocation path. */
uint64_t capheap_port_timestamp_ns(uint64_t stamp);

/* Fills frames[0..depth) with return addresses of the calling stack, skipping `skip` frames above
 * the caller of this function, and returns how many were written. Host: backtrace(3). Bare metal:
 * 0 (capheap records the immediate caller itself). Must not allocate after the first call. */
size_t capheap_port_backtrace(void **frames, size_t depth, size_t skip);

/* ---- Failure hook -----------------------------------------------------------------------------
 */

/* Reports a detected heap corruption or misuse. Must not allocate.
 *   what : text naming the problem ("double free", "Bad tail: expected 0xbaad5678 got
 *          0xbaad5600", ...); valid only during the call (copy it to keep it)
 *   addr : the address where the problem was detected (block or user pointer)
 *   heap : the heap's start address (NULL if unknown)
 * The default host hook prints `CORRUPT HEAP: <what> at <addr> (heap <heap>)` to stderr and aborts.
 * An installed hook may return: the operation that detected the problem is then refused (free
 * becomes a no-op, allocation returns NULL), so the heap is never modified on top of corruption. */
void capheap_port_fail(const char *what, const void *addr, const void *heap);

/* Ends the program after an unrecoverable condition the user asked to stop on (abort on allocation
 * failure). Host: message to stderr, abort(). Bare metal: message to the print hook, trap. */
void capheap_port_abort(const char *message);

/* ---- Console output ---------------------------------------------------------------------------
 */

/* printf-style output for dumps and reports (multi_heap_dump, multi_heap_check with print_errors).
 * Host: stdout. Bare metal: the installed print hook, or nothing. */
void capheap_port_printf(const char *fmt, ...) CAPHEAP_PRINTF_LIKE(1, 2);

#ifdef __cplusplus
}
#endif

#endif /* CAPHEAP_PORT_H */
