/* port/port.h — the port contract is public (include/capheap_port.h): ports implement it. */
#ifndef CAPHEAP_PORT_PORT_H
#define CAPHEAP_PORT_PORT_H
#include "capheap_port.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Host-only internals of the event recorder's per-thread rings (src/port/host) -------------
 * Used by src/capi/recorder.cpp only when CAPHEAP_RECORDER_THREAD_RINGS is 1 (host builds); bare-
 * metal ports need not define them. */

/* Coarse event clock, CLOCK_MONOTONIC nanoseconds at about 1 ms resolution, while at least one
 * start is outstanding; read it with capheap_port_coarse_now(). Modes, chosen by the first start:
 * - Linux on x86-64 / aarch64 without sanitizers: a ticker thread that glibc does not know about
 *   (clone(2), no thread-local storage, every signal blocked) stores CLOCK_MONOTONIC into
 *   capheap_port_coarse_ns every CAPHEAP_PORT_COARSE_PERIOD_NS; a read is one relaxed load. A
 *   single-threaded program stays single-threaded for glibc (__libc_single_threaded), so its
 *   pthread mutexes and stdio keep their lock-free paths;
 * - elsewhere, a process that already has several threads: the same with a pthread;
 * - elsewhere, a single-threaded process: no thread (a pthread would switch glibc to its atomic
 *   multi-threaded paths for the rest of the program, which costs more than the clock); a read is
 *   CLOCK_MONOTONIC_COARSE (the vDSO: no system call). capheap_port_coarse_direct is 1.
 * A child of fork has no ticker: it reads the clock per event (capheap_port_coarse_direct 1) while
 * the clock stays started. Monotonic within a thread in every mode. */
#define CAPHEAP_PORT_COARSE_PERIOD_NS 1000000u
/* (Hidden: read on every recorded event; -fPIC code then needs no address load first.) */
extern uint64_t capheap_port_coarse_ns __attribute__((visibility("hidden")));
extern int capheap_port_coarse_direct /* 1: no ticker, a clock read per event */
    __attribute__((visibility("hidden")));
uint64_t capheap_port_coarse_read(void);
static inline uint64_t capheap_port_coarse_now(void) {
  if (__atomic_load_n(&capheap_port_coarse_direct, __ATOMIC_RELAXED) != 0)
    return capheap_port_coarse_read();
  return __atomic_load_n(&capheap_port_coarse_ns, __ATOMIC_RELAXED);
}
/* Counted: the first start chooses the mode, sets the value and starts the ticker if any; the last
 * stop joins it. */
void capheap_port_coarse_clock_start(void);
void capheap_port_coarse_clock_stop(void);

/* True while the process has a single thread (glibc's __libc_single_threaded; false where that is
 * unknown). While it is true no other thread can run, so shared counters need no atomic
 * read-modify-write; it turns false (for good) before a second thread starts. */
static inline int capheap_port_single_threaded(void);

#if defined(__has_include)
#if __has_include(<sys/single_threaded.h>)
#include <sys/single_threaded.h>
#define CAPHEAP_PORT_HAVE_SINGLE_THREADED 1
#endif
#endif
static inline int capheap_port_single_threaded(void) {
#if defined(CAPHEAP_PORT_HAVE_SINGLE_THREADED)
  return __libc_single_threaded != 0;
#else
  return 0;
#endif
}

/* Makes every running thread of the process execute a full memory barrier before it returns
 * (Linux membarrier). Lets producers publish with plain stores on their side. */
void capheap_port_thread_barrier(void);

#ifdef __cplusplus
}
#endif

#endif
