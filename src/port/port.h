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

/* Coarse event clock: CLOCK_MONOTONIC nanoseconds refreshed by a ticker thread every
 * CAPHEAP_PORT_COARSE_PERIOD_NS while at least one start is outstanding. Read with one relaxed
 * load; monotonic (one writer). */
#define CAPHEAP_PORT_COARSE_PERIOD_NS 1000000u
extern uint64_t capheap_port_coarse_ns;
/* Counted: the first start sets the value and starts the ticker, the last stop joins it. */
void capheap_port_coarse_clock_start(void);
void capheap_port_coarse_clock_stop(void);

/* Makes every running thread of the process execute a full memory barrier before it returns
 * (Linux membarrier). Lets producers publish with plain stores on their side. */
void capheap_port_thread_barrier(void);

#ifdef __cplusplus
}
#endif

#endif
