/*
 * capheap_recorder.h — the event recorder: every heap_caps_* allocation and free, stored as a
 * compact binary record by the allocating task and turned into one line of capheap's trace format
 * (docs/trace-format.md) later, by whoever drains the recorder (an idle task on a device, a
 * background thread for CAPHEAP_TRACE_FILE on the host), which hands each line to a user callback.
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
 *   # recorder: dropped 12 events (ring full)
 *
 * Fields: caps= the capabilities the successful attempt used (hex); t= nanoseconds when the event
 * was recorded: on hosts a coarse clock (CLOCK_MONOTONIC refreshed every 1 ms by a ticker while the
 * recorder is installed, a thread that glibc does not see on Linux so that a single-threaded
 * program stays single-threaded for glibc; elsewhere a pthread or a per-event
 * CLOCK_MONOTONIC_COARSE read: about 1 ms resolution, never going back within a thread), on bare
 * metal capheap_port_timestamp_ns() of capheap_port_timestamp();
 * task= the calling task's owner word (capheap_port_task_owner, hex); site= the return address in
 * the caller of the heap_caps_* function (hex); seq= the line's number in the output (0, 1, 2 ...
 * from install), see "Drain" below. Addresses are the chip's (the host simulator's display mapping,
 * applied when the line is formatted; initialising or tearing down the simulator first delivers
 * every pending event, so each line uses the mapping its event happened under; the callback may
 * therefore also run inside capheap_host_init / capheap_host_deinit). Lines come out in seq order.
 * Every line ends in '\n' and is at most CAPHEAP_RECORDER_MAX_LINE bytes including it.
 *
 * Recording (inside heap_caps_*, any task, also concurrently on several cores): host builds give
 * each thread its own ring (single producer, plain stores published by one release store of the
 * event's order, taken with one relaxed fetch-add; see CAPHEAP_RECORDER_RING_EVENTS_LOG2);
 * bare-metal builds share one ring in which one compare-and-swap reserves the next record. No
 * formatting, no lock, no allocation; a drain never reads a half-written record.
 *
 * Drain: the rings are merged by the events' order (host: a global counter; bare metal: the shared
 * ring's ticket), which agrees with causality: an allocation takes it after the memory was
 * acquired, a free before the memory is released. A free is never emitted before the event that
 * produced its address when that event was recorded (a live-address table carved from the buffer,
 * or a built-in one; when it is full, ordering falls back to the event order for the addresses it
 * could not hold). seq= numbers the output.
 *
 * Overflow: when every record of a thread's ring holds an event not yet drained, that thread's new
 * events are dropped (the oldest are kept) and counted (also when no ring is free for a thread);
 * the next drain reports them with the comment line
 * `# recorder: dropped N events (ring full)` at the place in the output where they were lost, and
 * capheap_recorder_get_stats() counts them. With CAPHEAP_RECORDER_FLUSH_WHEN_FULL the allocating
 * task drains the ring itself instead (the callback then runs inside heap_caps_*; see below).
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

/* Bytes one event record takes in the ring (64 on 64-bit targets, 48 on 32-bit ones). */
#define CAPHEAP_RECORDER_EVENT_SIZE (sizeof(void *) == 8 ? 64u : 48u)

/* Alignment the ring's memory must have. */
#define CAPHEAP_RECORDER_BUFFER_ALIGN 8u

/* Receives one complete line (`len` bytes ending in '\n', not NUL-terminated). Runs in the task
 * that drains (capheap_recorder_drain / _flush / _uninstall; on the host also capheap_host_init /
 * _deinit, which deliver what is pending first), never concurrently with itself. */
typedef void (*capheap_recorder_cb_t)(const char *line, size_t len, void *user);

/* capheap_recorder_config_t.flags */
#define CAPHEAP_RECORDER_FLUSH_WHEN_FULL                      \
  0x1u /* a task that finds the ring full drains it (calling  \
        * the callback inside heap_caps_*; the callback must  \
        * not allocate through capheap) and then records its  \
        * event, instead of dropping it. Nothing is lost; the \
        * task may wait for a drain running elsewhere, so do  \
        * not use it where a producer can preempt the drainer \
        * on the same core. */

/* Per-thread rings (host builds, see below): flags |= CAPHEAP_RECORDER_RING_EVENTS_LOG2(k) splits
 * the buffer into rings of 2^k records each (1 <= k <= 30), one per recording thread (at most 64
 * rings), after reserving the last eighth of the buffer for the drain's live-address table. Without
 * it the whole buffer is one ring: the first thread that records owns it and the events of other
 * threads are dropped and counted. Ignored by builds with one shared ring. */
#define CAPHEAP_RECORDER_RING_EVENTS_LOG2(k) ((uint32_t)(k) << 8)
#define CAPHEAP_RECORDER_RING_EVENTS_MASK 0xff00u

typedef struct {
  capheap_recorder_cb_t callback; /* required */
  void *user;                     /* passed to callback */
  void *buffer;       /* ring memory, CAPHEAP_RECORDER_BUFFER_ALIGN-aligned; NULL: the built-in
                       * buffer (host builds: 16384 events; builds without one: INVALID_ARG) */
  size_t buffer_size; /* bytes at buffer; the ring uses the largest power of two of records that
                       * fits (at least 2). Ignored when buffer is NULL */
  uint32_t flags;     /* CAPHEAP_RECORDER_* flags, 0 for the defaults */
} capheap_recorder_config_t;

typedef struct {
  uint64_t recorded;     /* events stored since install (each has a seq) */
  uint64_t delivered;    /* events formatted and handed to the callback */
  uint64_t dropped;      /* events lost because the ring was full */
  size_t capacity;       /* records in one ring */
  size_t rings;          /* rings in the pool (1 in builds with one shared ring) */
  size_t rings_attached; /* rings handed to threads since install (recycled ones count once) */
} capheap_recorder_stats_t;

/* Installs the recorder with `config` (copied): from now on every event is recorded; seq restarts
 * at 0 and the counters at 0. The ring's records are cleared (O(capacity)).
 * Returns ESP_OK; ESP_ERR_INVALID_ARG if config or its callback is NULL, flags has a bit that no
 * CAPHEAP_RECORDER_* flag defines (CAPHEAP_RECORDER_RING_EVENTS_LOG2(k) with k > 255 among them),
 * the buffer is misaligned or holds fewer than 2 records, or buffer is NULL and the build has no
 * built-in buffer, and in builds with per-thread rings if flags ask for
 * CAPHEAP_RECORDER_RING_EVENTS_LOG2(k) with k > 30 or the buffer less its live-address table (the
 * last eighth) cannot hold one ring of 2^k records; ESP_ERR_INVALID_STATE if a recorder is
 * installed; ESP_ERR_NOT_SUPPORTED when compiled out. Nothing is installed on failure. Thread-safe
 * (not from an ISR). */
esp_err_t capheap_recorder_install_config(const capheap_recorder_config_t *config);

/* The same with the built-in buffer and no flags: {callback, user, NULL, 0, 0}. */
esp_err_t capheap_recorder_install(capheap_recorder_cb_t callback, void *user);

/* Stops recording, waits for the events whose record was already reserved, drains every pending
 * event to the callback (and a dropped-events line if any), then removes the recorder; after it
 * returns, nothing touches the buffer or calls the callback. Returns ESP_OK; ESP_ERR_INVALID_STATE
 * if none is installed; ESP_ERR_NOT_SUPPORTED when compiled out. Thread-safe; waits for a drain
 * running on another task. Not from an ISR or from the callback. O(pending events). */
esp_err_t capheap_recorder_uninstall(void);

/* Formats at most `max_events` pending events, in seq order, and hands each line to the callback
 * (preceded by a `# recorder: dropped N events (ring full)` line when events were dropped since the
 * last one; that line does not count). Stops early at an event whose record is still being
 * written. Returns the number of events delivered: 0 when nothing is pending, when no recorder is
 * installed, when compiled out, or when another task is draining (it does not wait). Call it from
 * an idle task or a timer on a device. Thread-safe; not from an ISR or from the callback.
 * O(max_events), about one line's formatting per event. */
size_t capheap_recorder_drain(size_t max_events);

/* capheap_recorder_drain(SIZE_MAX): delivers everything pending. */
size_t capheap_recorder_flush(void);

/* Copies the counters into *stats. Returns ESP_OK; ESP_ERR_INVALID_ARG if stats is NULL;
 * ESP_ERR_INVALID_STATE if no recorder is installed; ESP_ERR_NOT_SUPPORTED when compiled out.
 * Thread-safe, ISR-safe, O(1). */
esp_err_t capheap_recorder_get_stats(capheap_recorder_stats_t *stats);

/* True while a recorder is installed. ISR-safe, O(1). */
bool capheap_recorder_active(void);

#ifdef __cplusplus
}
#endif

#endif /* CAPHEAP_RECORDER_H */
