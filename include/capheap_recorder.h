/*
 * capheap_recorder.h — the event recorder: every heap_caps_* allocation and free as one line of
 * capheap's trace format (docs/trace-format.md), handed to a user callback.
 *
 * A recording replays with capheap's trace tools (src/sim/trace.hpp, capheap_trace_replay): it is
 * a `heap-trace v1` trace whose IDs are the blocks' addresses. Lines (one per heap_caps_* call that
 * succeeded or freed a block; failed allocations produce nothing):
 *
 *   a 0x3ffb1234 100 caps=0x1800 t=812345678 task=0x1 site=0x55d0c2a1b2c3 seq=17
 *   z 0x3ffb1300 1 64 caps=0x1800 ...        calloc: COUNT is always 1, SIZE is n * size
 *   m 0x3ffb2000 64 256 caps=0x80c ...       aligned allocation (and aligned calloc) of 256 at 64
 *   r 0x3ffb1234 200 caps=0x1800 ... to=0x3ffb4000
 *                                            realloc that moved the block: the result is bound to
 *                                            the `to=` ID (omitted when the block stayed in place;
 *                                            for realloc(NULL, n) the ID is the new block)
 *   f 0x3ffb4000 t=... task=0x1 site=0x55d0c2a1b2f0 seq=20
 *
 * Fields: caps= the capabilities the successful attempt used (hex); t= capheap_port_time_ns();
 * task= the calling task's owner word (capheap_port_task_owner, hex); site= the return address in
 * the caller of the heap_caps_* function (hex); seq= a process-wide sequence number (0, 1, 2 ...
 * from install). Addresses are the chip's (the host simulator's display mapping). Every line ends
 * in '\n' and is at most CAPHEAP_RECORDER_MAX_LINE bytes including it.
 *
 * Cost: each event is formatted into a stack buffer by a small hand-written formatter; no lock and
 * no allocation (one atomic increment for seq). The callback runs in the allocating thread, inside
 * the heap_caps_* call, and may run concurrently on several threads: lines of different threads
 * reach it in no guaranteed order (sort by seq). It must not allocate or free through capheap
 * (that would record, and re-enter, itself) and should be short.
 *
 * A recording that starts while blocks are live may free blocks whose allocation it never saw;
 * the trace parser rejects such an `f` (start recording before the allocations of interest, or
 * record the whole run on the host with CAPHEAP_TRACE_FILE, see capheap_host.h).
 *
 * Build option CAPHEAP_RECORDER (default 1): 0 compiles the recorder out; install then returns
 * ESP_ERR_NOT_SUPPORTED and allocation pays nothing.
 *
 * Pure C (C99 and later), usable from C++.
 */
#ifndef CAPHEAP_RECORDER_H
#define CAPHEAP_RECORDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The first line of a trace file; the recorder does not send it (the consumer writes its own
 * header, e.g. followed by `# key: value` metadata lines). */
#define CAPHEAP_RECORDER_HEADER "# heap-trace v1\n"

/* Longest line the callback receives, '\n' included. */
#define CAPHEAP_RECORDER_MAX_LINE 256

/* Receives one complete line (`len` bytes ending in '\n', not NUL-terminated). */
typedef void (*capheap_recorder_cb_t)(const char *line, size_t len, void *user);

/* Installs the recorder: from now on every event reaches `callback` with `user`; seq restarts at 0.
 * Returns ESP_OK; ESP_ERR_INVALID_ARG if callback is NULL; ESP_ERR_INVALID_STATE if a recorder is
 * installed; ESP_ERR_NOT_SUPPORTED when compiled out. Thread-safe. O(1). */
esp_err_t capheap_recorder_install(capheap_recorder_cb_t callback, void *user);

/* Removes the recorder. Calls already running on other threads may still finish after it returns.
 * Returns ESP_OK; ESP_ERR_INVALID_STATE if none is installed; ESP_ERR_NOT_SUPPORTED when compiled
 * out. Thread-safe. O(1). */
esp_err_t capheap_recorder_uninstall(void);

/* True while a recorder is installed. O(1). */
bool capheap_recorder_active(void);

#ifdef __cplusplus
}
#endif

#endif /* CAPHEAP_RECORDER_H */
