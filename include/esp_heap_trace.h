/*
 * esp_heap_trace.h — ESP-IDF's heap tracing API (standalone mode) on capheap.
 *
 * Heap tracing records the allocations and frees made through heap_caps_* (and so malloc/free
 * when the C library is mapped onto heap_caps) into a record buffer the application provides,
 * and prints them in ESP-IDF v5's text format (heap_trace_dump). Typical use:
 *
 *   static heap_trace_record_t records[100];
 *   heap_trace_init_standalone(records, 100);
 *   heap_trace_start(HEAP_TRACE_LEAKS);
 *   ... code under suspicion ...
 *   heap_trace_stop();
 *   heap_trace_dump();
 *
 * Build options (capheap's spelling of ESP-IDF's Kconfig, docs/debugging.md "Heap tracing"):
 *   CAPHEAP_HEAP_TRACE              1 (default) builds tracing; 0 compiles it out: every function
 *                                   below then returns ESP_ERR_NOT_SUPPORTED (void ones do nothing,
 *                                   heap_trace_get_count returns 0) and allocation pays nothing.
 *   CONFIG_HEAP_TRACING_STACK_DEPTH frames recorded per allocation and per free, 0..10, default 2.
 *                                   Frame 0 is the caller of the heap_caps_* function; deeper
 *                                   frames come from capheap_port_backtrace (0 on bare metal).
 *   CONFIG_HEAP_TRACE_HASH_MAP      1: frees find their record through a hash map of
 *                                   CONFIG_HEAP_TRACE_HASH_MAP_SIZE buckets (default 10, 1..10000)
 *                                   instead of a newest-first search of the records.
 * The application and the library must be built with the same values (the record layout depends
 * on them).
 *
 * Host-based tracing (ESP-IDF's CONFIG_HEAP_TRACING_TOHOST, JTAG + SystemView) does not exist in
 * capheap: heap_trace_init_tohost returns ESP_ERR_NOT_SUPPORTED. capheap's event recorder
 * (capheap_recorder.h) is the host-side equivalent.
 *
 * Thread and ISR safety: every function may be called from any thread; all state is guarded by
 * one lock of the tracer's own (not the heaps' locks), taken through the port as the heaps' locks
 * are (host: a recursive mutex; bare metal: the lock hooks of capheap_set_lock_hooks, so with
 * interrupt-masking hooks the tracing of an allocation made in an interrupt is as safe as the
 * allocation). Allocations that a thread makes while it holds that lock (glibc's backtrace()
 * allocates on its first use) are not recorded.
 *
 * Pure C (C99 and later), usable from C++.
 */
#ifndef ESP_HEAP_TRACE_H
#define ESP_HEAP_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef CAPHEAP_HEAP_TRACE
#define CAPHEAP_HEAP_TRACE 1
#endif

#ifndef CONFIG_HEAP_TRACING_STACK_DEPTH
#define CONFIG_HEAP_TRACING_STACK_DEPTH 2
#endif
#if CONFIG_HEAP_TRACING_STACK_DEPTH < 0 || CONFIG_HEAP_TRACING_STACK_DEPTH > 10
#error "CONFIG_HEAP_TRACING_STACK_DEPTH must be between 0 and 10"
#endif

#ifndef CONFIG_HEAP_TRACE_HASH_MAP
#define CONFIG_HEAP_TRACE_HASH_MAP 0
#endif
#ifndef CONFIG_HEAP_TRACE_HASH_MAP_SIZE
#define CONFIG_HEAP_TRACE_HASH_MAP_SIZE 10
#endif
#if CONFIG_HEAP_TRACE_HASH_MAP_SIZE < 1 || CONFIG_HEAP_TRACE_HASH_MAP_SIZE > 10000
#error "CONFIG_HEAP_TRACE_HASH_MAP_SIZE must be between 1 and 10000"
#endif

/* ISO C has no zero-length arrays: with depth 0 the caller arrays keep one unused slot, which
 * stays 0 and is never printed. */
#if CONFIG_HEAP_TRACING_STACK_DEPTH > 0
#define CAPHEAP_HEAP_TRACE_SLOTS CONFIG_HEAP_TRACING_STACK_DEPTH
#else
#define CAPHEAP_HEAP_TRACE_SLOTS 1
#endif

/* What heap_trace_start records. */
typedef enum {
  HEAP_TRACE_ALL = 0, /* every allocation; a free fills the record's freed_by */
  HEAP_TRACE_LEAKS,   /* only allocations not freed yet: a free removes the record */
} heap_trace_mode_t;

/* One traced allocation. An address of NULL marks an empty record. */
typedef struct heap_trace_record_t {
  uint32_t ccount; /* cycle count at allocation with the low 2 bits cleared; bit 0 = CPU number */
  void *address;   /* the allocated block (user pointer) */
  size_t size;     /* requested size */
  void *alloced_by[CAPHEAP_HEAP_TRACE_SLOTS]; /* allocating call stack, innermost first; 0 = none */
  void *freed_by[CAPHEAP_HEAP_TRACE_SLOTS]; /* freeing call stack (HEAP_TRACE_ALL); 0 = not freed */
  /* Private to the tracer: links of the record lists (and of the hash map). */
  struct heap_trace_record_t *list_prev, *list_next;
#if CONFIG_HEAP_TRACE_HASH_MAP
  struct heap_trace_record_t *hash_prev, *hash_next;
#endif
} heap_trace_record_t;

/* Figures of the current trace (heap_trace_summary). */
typedef struct {
  heap_trace_mode_t mode;   /* mode given to the last heap_trace_start */
  size_t total_allocations; /* allocations recorded since heap_trace_start (incl. evicted) */
  size_t total_frees;       /* frees seen while tracing (recorded block or not) */
  size_t count;             /* records in use */
  size_t capacity;          /* records in the buffer */
  size_t high_water_mark;   /* most records in use at once since heap_trace_start */
  bool has_overflowed;      /* an old record was evicted to make room for a new one */
#if CONFIG_HEAP_TRACE_HASH_MAP
  size_t total_hashmap_hits; /* frees whose record the hash map found */
  size_t total_hashmap_miss; /* frees whose block had no record in the hash map */
#endif
} heap_trace_summary_t;

/* Gives the tracer its record buffer (`num_records` records at `record_buffer`, which must stay
 * valid while tracing is possible) and forgets any previous trace.
 * Returns ESP_OK; ESP_ERR_INVALID_STATE while tracing runs (or is paused for allocations);
 * ESP_ERR_INVALID_ARG for a NULL buffer or 0 records; ESP_ERR_NOT_SUPPORTED when tracing is
 * compiled out. O(1). */
esp_err_t heap_trace_init_standalone(heap_trace_record_t *record_buffer, size_t num_records);

/* ESP-IDF's host-based (JTAG) mode: not available in capheap.
 * Returns ESP_ERR_INVALID_STATE while tracing runs, otherwise ESP_ERR_NOT_SUPPORTED. */
esp_err_t heap_trace_init_tohost(void);

/* Clears the records, the counters, the high-water mark, the overflow flag and the hash map, then
 * starts recording in `mode` (restarting a running trace resets it the same way).
 * Returns ESP_OK; ESP_ERR_INVALID_STATE if no buffer was given (heap_trace_init_standalone);
 * ESP_ERR_INVALID_ARG for a mode other than HEAP_TRACE_ALL / HEAP_TRACE_LEAKS;
 * ESP_ERR_NOT_SUPPORTED when compiled out. O(capacity + hash map size). */
esp_err_t heap_trace_start(heap_trace_mode_t mode);

/* Stops recording (records and counters are kept).
 * Returns ESP_OK; ESP_ERR_INVALID_STATE if tracing is already stopped; ESP_ERR_NOT_SUPPORTED when
 * compiled out. O(1). */
esp_err_t heap_trace_stop(void);

/* Resumes recording after heap_trace_stop or heap_trace_alloc_pause, keeping the records and the
 * mode of the last heap_trace_start.
 * Returns ESP_OK; ESP_ERR_INVALID_STATE if tracing is running (allocations not paused) or no
 * buffer was given; ESP_ERR_NOT_SUPPORTED when compiled out. O(1). */
esp_err_t heap_trace_resume(void);

/* Stops recording allocations while frees keep updating the records (LEAKS: removing them; ALL:
 * filling freed_by). heap_trace_resume records allocations again; heap_trace_stop stops all.
 * Returns ESP_OK; ESP_ERR_INVALID_STATE unless tracing is running with allocations recorded;
 * ESP_ERR_NOT_SUPPORTED when compiled out. O(1). */
esp_err_t heap_trace_alloc_pause(void);

/* Number of records in use (0 when compiled out). O(1). */
size_t heap_trace_get_count(void);

/* Copies record `index` (0 = oldest) into *record_out (the private links are returned NULL).
 * Returns ESP_OK; ESP_ERR_INVALID_STATE if record_out is NULL; ESP_ERR_INVALID_ARG if index >=
 * heap_trace_get_count(); ESP_ERR_NOT_SUPPORTED when compiled out.
 * O(1) for index 0, the last record and the index after the previous call (sequential access),
 * O(count) otherwise. */
esp_err_t heap_trace_get(size_t index, heap_trace_record_t *record_out);

/* Fills *summary with the current figures.
 * Returns ESP_OK; ESP_ERR_INVALID_ARG if summary is NULL; ESP_ERR_NOT_SUPPORTED when compiled
 * out. O(1). */
esp_err_t heap_trace_summary(heap_trace_summary_t *summary);

/* heap_trace_dump_caps(MALLOC_CAP_INTERNAL | MALLOC_CAP_SPIRAM). */
void heap_trace_dump(void);

/* clang-format off */
/* Prints the records whose block lies in internal RAM (caps has MALLOC_CAP_INTERNAL) and/or in
 * external RAM (caps has MALLOC_CAP_SPIRAM), decided by the block's address: the kind of the chip
 * layout's region holding it (external when its memory type has MALLOC_CAP_SPIRAM), whatever the
 * caps of its heap; an EXEC block's instruction-bus alias is internal; an address the layout does
 * not know takes its heap's kind (external when the heap's caps include MALLOC_CAP_SPIRAM). Then
 * the summary, through capheap_port_printf (capheap_set_print_hook on the host), in ESP-IDF v5's
 * format:
 *
 *   ====== Heap Trace: 2 records (100 capacity) ======
 *       84 bytes (@ 0x3fca94d8, Internal) allocated CPU 0 ccount 0x042ac374 caller 0x40376183:0x4037da9c
 *      512 bytes (@ 0x3f800010,    PSRAM) allocated CPU 1 ccount 0x04371de8 caller 0x40376183:0x403761b8
 *   freed by 0x40376190:0x4037dab0
 *   ====== Heap Trace Summary ======
 *   Mode: Heap Trace All
 *   84 bytes alive in trace (1/2 allocations)
 *   records: 2 (100 capacity, 2 high water mark)
 *   total allocations: 2
 *   total frees: 1
 *   ================================
 *
 * Addresses are the chip's (the host simulator's display mapping); callers are printed as
 * recorded. The "freed by" line appears in HEAP_TRACE_ALL mode for freed records when the stack
 * depth is not 0; a line "hashmap: N capacity (H hits, M misses)" follows "records:" in hash-map
 * builds; "(NB: New entries were traced while dumping, so trace dump may have duplicate entries.)"
 * and "(NB: Internal Buffer has overflowed, so trace data is incomplete.)" precede the closing
 * line when they apply. The records are printed outside the tracer's lock, one copied record at a
 * time, so the print hook may allocate; allocations traced while dumping (by any thread) shift the
 * records and produce the first NB line.
 * Does nothing when compiled out. O(count). */
/* clang-format on */
void heap_trace_dump_caps(uint32_t caps);

#ifdef __cplusplus
}
#endif

#endif /* ESP_HEAP_TRACE_H */
