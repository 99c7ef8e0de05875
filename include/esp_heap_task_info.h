/*
 * esp_heap_task_info.h — per-task heap usage (ESP-IDF's CONFIG_HEAP_TASK_TRACKING API), implemented
 * by capheap.
 *
 * Same names, types and layouts as ESP-IDF's esp_heap_task_info.h: the legacy snapshot
 * heap_caps_get_per_task_info (a walk of the heaps' blocks by their owner words) and the newer
 * statistics API (heap_caps_get_all_task_stat and friends: current and peak usage per task and per
 * task and heap, kept up to date on every heap_caps_* allocation and free). capheap extensions are
 * prefixed capheap_ and listed at the end.
 *
 * Owner words. A heap created with task tracking (capheap_heap_config_t.task_tracking, the host
 * simulator's CAPHEAP_TASK_TRACKING) stores the allocating task's owner word
 * (capheap_port_task_owner) in 4 bytes just before the data of every allocation; with poisoning it
 * sits between the head canary and the data. Only such heaps are reported here: blocks of heaps
 * without owner words belong to no task and are skipped by every function below.
 *
 * Sizes. Every size this API reports for a block is ESP-IDF's allocated size of the block with
 * the owner word in it: the bytes the block takes in its heap less the engine's 4-byte block header
 * and less the poisoning decoration (head canary, stored size, tail canary and their padding), so
 * the requested size rounded up to the granule plus the owner word. malloc(36) on a tracking heap
 * with granule 4 reports 40, with or without poisoning (ESP-IDF's test expects 36 + 4).
 *
 * Tasks. TaskHandle_t is the task's owner word converted to a pointer,
 * (TaskHandle_t)(uintptr_t)owner: on a 32-bit MCU the owner word is the FreeRTOS handle itself, on
 * the host it is the thread's number (1, 2, ...; see capheap_port.h). NULL (owner 0) is the
 * "Pre-scheduler" task: allocations made before any task existed. When this header is compiled
 * after FreeRTOS's task.h, FreeRTOS's TaskHandle_t is used; otherwise capheap declares the same
 * type (a pointer to struct tskTaskControlBlock), so both orders compile.
 *
 * Streams. The print functions take a FILE * when <stdio.h> is available (hosted builds, and
 * freestanding builds whose C library ships it); otherwise their parameter is a `void *` that must
 * be NULL. A NULL stream prints through capheap_port_printf (host: stdout, ESP-IDF's "NULL =
 * stdout"; bare metal: the installed print hook). A non-NULL stream is written with fprintf when
 * the library was built hosted, else ignored in favour of capheap_port_printf. Define
 * CAPHEAP_TASK_INFO_NO_STDIO before including this header to force the `void *` form.
 *
 * Build switches (compile definitions of the capheap library; CMake options of the same name):
 *   CAPHEAP_TASK_TRACKING        1 (default) compiles the statistics engine in; 0 leaves a stub
 *                                with no storage and no per-event cost: the statistics functions
 *                                then report no tasks (get_*: ESP_OK with zero counts; single task:
 *                                ESP_FAIL) and heap_caps_get_per_task_info still works.
 *   CAPHEAP_TRACK_DELETED_TASKS  0 (default): a task's statistics are dropped once it has ended;
 *                                1: kept, with is_alive false (ESP-IDF's
 *                                CONFIG_HEAP_TRACK_DELETED_TASKS). Changeable at run time with
 *                                capheap_task_stats_track_deleted.
 *   CAPHEAP_TASK_STATS_MAX_TASKS       task records in the fixed pool (default 32)
 *   CAPHEAP_TASK_STATS_MAX_HEAP_ENTRIES  (task, heap) records in the fixed pool (default 128)
 *
 * Storage of the statistics (a capheap choice; ESP-IDF allocates list nodes from its largest
 * heap). capheap keeps them in a fixed pool inside the library, sized at compile time (above;
 * a task record and a (task, heap) record take 40 bytes each on a 64-bit host, 28 and 20 on a
 * 32-bit MCU: 6.25 KiB / 3.4 KiB with the defaults), for four reasons: the statistics are updated
 * from inside heap_caps_* calls, and allocating there would re-enter the heaps (taking a heap lock
 * under the statistics lock, the reverse of the query path's order) and perturb the very figures
 * being measured; the cost is bounded and known at link time; nothing can fail for lack of memory
 * in the middle of a free; and the pool works on freestanding builds before any heap exists.
 * Per-allocation details (heap_stat_t.alloc_stat) are not stored at all: they are read from the
 * heaps' owner words when asked for. When the pool is full, ended tasks' records are reclaimed
 * first (unless deleted tasks are tracked); what still does not fit is not recorded and counted
 * (capheap_task_stats_overflow; the print functions show the count).
 *
 * Enabling. The statistics are kept while capheap_task_stats_enable(true) is in effect (a call on
 * the host simulator's start-up when it creates tracking heaps, or by the application). Enabling
 * starts from the heaps' current contents: every live block of a tracking heap counts for its
 * owner, with peak = current. The legacy snapshot heap_caps_get_per_task_info needs no enabling.
 *
 * Threads and interrupts: every function is thread-safe (the statistics have their own lock,
 * taken through the port; heaps are walked under their own locks, always after the statistics
 * lock). None is ISR-safe: they walk heaps or print.
 *
 * Pure C (C99 and later), usable from C++.
 */
#ifndef ESP_HEAP_TASK_INFO_H
#define ESP_HEAP_TASK_INFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"

#if !defined(CAPHEAP_TASK_INFO_NO_STDIO) && defined(__has_include)
#if __has_include(<stdio.h>)
#include <stdio.h>
#define CAPHEAP_TASK_INFO_STREAM FILE
#endif
#endif
#ifndef CAPHEAP_TASK_INFO_STREAM
#define CAPHEAP_TASK_INFO_STREAM void
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* FreeRTOS's task handle. Its task.h (include guard INC_TASK_H) declares the identical type. */
#if !defined(INC_TASK_H) && !defined(CAPHEAP_TASK_HANDLE_DEFINED)
#define CAPHEAP_TASK_HANDLE_DEFINED 1
struct tskTaskControlBlock;
typedef struct tskTaskControlBlock *TaskHandle_t;
#endif

/* Bytes of task_stat_t.name: FreeRTOS's configMAX_TASK_NAME_LEN when it is known, else 16
 * (ESP-IDF's default). */
#ifdef configMAX_TASK_NAME_LEN
#define CAPHEAP_TASK_NAME_LEN configMAX_TASK_NAME_LEN
#else
#define CAPHEAP_TASK_NAME_LEN 16
#endif

/* ---- Legacy snapshot: heap_caps_get_per_task_info --------------------------------------------
 */

/* Number of capability buckets the totals are partitioned into. */
#define NUM_HEAP_TASK_CAPS 4

/* Totals of one task, per bucket. */
typedef struct {
  TaskHandle_t task;                /* the owner (NULL: Pre-scheduler) */
  size_t size[NUM_HEAP_TASK_CAPS];  /* bytes of its blocks in heaps of bucket i (see Sizes) */
  size_t count[NUM_HEAP_TASK_CAPS]; /* number of its blocks in heaps of bucket i */
} heap_task_totals_t;

/* One allocated block. */
typedef struct {
  TaskHandle_t task; /* its owner (NULL: Pre-scheduler) */
  void *address;     /* the pointer the application holds */
  uint32_t size;     /* bytes it takes in its heap (see Sizes) */
} heap_task_block_t;

/* Parameters of heap_caps_get_per_task_info. */
typedef struct {
  int32_t caps[NUM_HEAP_TASK_CAPS]; /* bucket i takes heaps with (heap caps & mask[i]) == caps[i] */
  int32_t mask[NUM_HEAP_TASK_CAPS];
  TaskHandle_t *tasks;        /* tasks whose blocks are listed; NULL: every task */
  size_t num_tasks;           /* entries of tasks */
  heap_task_totals_t *totals; /* per-task totals (NULL: none wanted) */
  size_t *num_totals;         /* in: entries of totals already populated; out: entries now */
  size_t max_totals;          /* capacity of totals */
  heap_task_block_t *blocks;  /* block list (NULL: none wanted) */
  size_t max_blocks;          /* capacity of blocks */
} heap_task_info_params_t;

/* Per-task totals and block lists of the tracking heaps, read from the blocks' owner words.
 * Effects, in this order:
 *   - the first *num_totals entries of totals (tasks from an earlier call, so that the order of
 *     tasks stays the same from call to call) have every size and count set to 0;
 *   - every registered heap with owner words is visited in heap list order, under its lock; its
 *     bucket is the first i in 0..3 with (OR of its three caps levels & (uint32_t)mask[i]) ==
 *     (uint32_t)caps[i] (caps[0] = mask[0] = 0: every heap is bucket 0); a heap in no bucket is
 *     skipped;
 *   - each used block of a visited heap adds its size and 1 to totals[j].size/count[bucket] for the
 *     entry j of its owner; an owner without an entry gets the next one (all buckets zeroed) while
 *     fewer than max_totals entries exist, else its block is not totalled;
 *   - and, while fewer than max_blocks entries were written, a block whose owner is in tasks
 *     (any owner when tasks is NULL) is appended to blocks.
 *   totals NULL: no totals; blocks NULL or max_blocks 0: no block list. num_totals NULL: no entry
 * is prepopulated and the final count is not reported. Blocks of ended tasks keep their owner's
 *   handle.
 * Returns: the number of entries written to blocks (0 for params NULL).
 * Complexity: O(blocks of the visited heaps x (entries of totals + num_tasks)). Allocates nothing.
 * Thread safety: yes (one heap locked at a time; a block list is consistent per heap). ISR: no. */
size_t heap_caps_get_per_task_info(heap_task_info_params_t *params);

/* ---- Statistics ------------------------------------------------------------------------------
 */

/* Usage of one heap by one task. */
typedef struct {
  const char *name;              /* the heap's memory type name ("DRAM", "SPIRAM", ...) */
  uint32_t caps;                 /* OR of the heap's three caps levels */
  size_t size;                   /* bytes of the heap's region */
  size_t current_usage;          /* bytes the task's live blocks take in this heap (see Sizes) */
  size_t peak_usage;             /* highest current_usage since the task was first seen */
  size_t alloc_count;            /* number of the task's live blocks in this heap */
  heap_task_block_t *alloc_stat; /* the blocks (alloc_count entries) inside the caller's array,
                                    or NULL when they did not fit (see the get functions) */
} heap_stat_t;

/* Usage of all heaps by one task. */
typedef struct {
  char name[CAPHEAP_TASK_NAME_LEN]; /* task name (capheap_port_task_name); "Pre-scheduler" */
  TaskHandle_t handle;              /* the task (NULL: Pre-scheduler) */
  bool is_alive;                    /* false once the task ended (deleted tasks tracked only) */
  size_t overall_peak_usage;        /* highest overall_current_usage since the task was seen */
  size_t overall_current_usage;     /* bytes of the task's live blocks in all tracking heaps */
  size_t heap_count;                /* heaps the task has allocated from since it was seen */
  heap_stat_t *heap_stat;           /* heap_count entries inside the caller's array, or NULL */
} task_stat_t;

/* One task's statistics, with the caller's arrays. */
typedef struct {
  task_stat_t stat;                    /* filled by heap_caps_get_single_task_stat */
  size_t heap_count;                   /* in: capacity of heap_stat_start; out: entries written */
  heap_stat_t *heap_stat_start;        /* caller's array of heap statistics */
  size_t alloc_count;                  /* in: capacity of alloc_stat_start; out: entries written */
  heap_task_block_t *alloc_stat_start; /* caller's array of block entries */
} heap_single_task_stat_t;

/* Every task's statistics, with the caller's arrays. */
typedef struct {
  size_t task_count;                   /* in: capacity of stat_arr; out: entries written */
  task_stat_t *stat_arr;               /* caller's array of task statistics */
  size_t heap_count;                   /* in: capacity of heap_stat_start; out: entries written */
  heap_stat_t *heap_stat_start;        /* caller's array of heap statistics */
  size_t alloc_count;                  /* in: capacity of alloc_stat_start; out: entries written */
  heap_task_block_t *alloc_stat_start; /* caller's array of block entries */
} heap_all_tasks_stat_t;

/* Statistics of every recorded task, in decreasing handle order (the newest host thread first,
 * Pre-scheduler last). Ended tasks are first dropped (or, when deleted tasks are tracked, marked
 * not alive).
 * Effects: while fewer than task_count entries were written, the next task's task_stat_t is copied
 *   to stat_arr. Its heap_stat points to the next heap_count entries of heap_stat_start (one per
 *   heap it used, in the order it first used them) if that many remain, else it is NULL and no heap
 *   entry is written for it. For each heap entry written, alloc_stat points to the next
 *   alloc_count entries of alloc_stat_start holding the task's live blocks in that heap (address
 *   order, read from the owner words under the heap's lock) if they all fit, else it is NULL and
 *   none is written. On return task_count, heap_count and alloc_count hold the entries written.
 * Returns: ESP_OK; ESP_ERR_INVALID_ARG (nothing written) if tasks_stat is NULL or an array is NULL
 *   with a non-zero capacity.
 * Complexity: O(tasks x heaps used x blocks of those heaps). Thread safety: yes. ISR: no. */
esp_err_t heap_caps_get_all_task_stat(heap_all_tasks_stat_t *tasks_stat);

/* Statistics of one task (task_handle NULL: the calling task).
 * Effects: task_stat->stat := the task's task_stat_t, with heap_stat = heap_stat_start; heap
 *   entries are written in first-use order while fewer than heap_count were written (a task using
 *   more heaps is truncated), each with alloc_stat filled as in heap_caps_get_all_task_stat; on
 *   return heap_count and alloc_count hold the entries written.
 * Returns: ESP_OK; ESP_ERR_INVALID_ARG if task_stat is NULL or an array is NULL with a non-zero
 *   capacity; ESP_FAIL if the task has no statistics (never allocated from a tracking heap while
 *   statistics were kept, or ended and dropped) — ESP-IDF's code returns ESP_FAIL there too.
 * Complexity: O(heaps used x blocks of those heaps). Thread safety: yes. ISR: no. */
esp_err_t heap_caps_get_single_task_stat(heap_single_task_stat_t *task_stat,
                                         TaskHandle_t task_handle);

/* Report formats (all numbers decimal; the name column is 16 characters wide, left-aligned; a
 * block line shows the chip address as in the other heap reports):
 *
 *   heap_caps_print_all_task_stat / heap_caps_print_single_task_stat, per task:
 *     TASK <name> (<handle as 0x%08x>) <ALIVE|DELETED>: current <n> peak <n> heaps <n>
 *       HEAP <name> caps 0x<%08x> size <n>: current <n> peak <n> allocs <n>
 *         ALLOC 0x<%08x> size <n>
 *   heap_caps_print_all_task_stat_overview / heap_caps_print_single_task_stat_overview, a table:
 *     TASK             HANDLE     STATUS    CURRENT       PEAK  HEAPS
 *     main             0x00000001 ALIVE          40         80      1
 *     (%-16s %-10s %-7s %10zu %10zu %6zu after the header line)
 * The all-task forms end with `(<n> events not recorded: statistics pool full)` when
 * capheap_task_stats_overflow() is not 0. An unknown single task prints nothing.
 * stream: see Streams above. Thread safety: yes (the report is one consistent snapshot).
 * ISR: no. */
void heap_caps_print_all_task_stat(CAPHEAP_TASK_INFO_STREAM *stream);
void heap_caps_print_all_task_stat_overview(CAPHEAP_TASK_INFO_STREAM *stream);
void heap_caps_print_single_task_stat(CAPHEAP_TASK_INFO_STREAM *stream, TaskHandle_t task_handle);
void heap_caps_print_single_task_stat_overview(CAPHEAP_TASK_INFO_STREAM *stream,
                                               TaskHandle_t task_handle);

/* Sizes and allocates the caller arrays for heap_caps_get_single_task_stat (task_handle NULL: the
 * calling task): heap_count := heaps the task used, alloc_count := its live blocks in them, and
 * arrays of exactly that many entries are allocated from the MALLOC_CAP_DEFAULT heaps (an empty
 * array stays NULL). The arrays are allocated without an allocation event and skipped by every
 * walk of this API, so they never show in the statistics they are meant to hold. At most 24
 * arrays (8 all-task sets) are live at once. A task without statistics gets zero counts and ESP_OK.
 * Returns: ESP_OK; ESP_ERR_INVALID_ARG if task_stat is NULL; ESP_FAIL if an array could not be
 *   allocated (no memory, or 24 arrays already live): the arrays allocated so far are freed, and
 *   the fields are NULL / 0.
 * Complexity: O(heaps used) plus the allocations. Thread safety: yes. ISR: no. */
esp_err_t heap_caps_alloc_single_task_stat_arrays(heap_single_task_stat_t *task_stat,
                                                  TaskHandle_t task_handle);

/* Frees the arrays of heap_caps_alloc_single_task_stat_arrays and sets them to NULL and their
 * counts to 0 (NULL task_stat: no-op). Arrays from these helpers must be freed here, not with
 * heap_caps_free. */
void heap_caps_free_single_task_stat_arrays(heap_single_task_stat_t *task_stat);

/* As heap_caps_alloc_single_task_stat_arrays for every recorded task: task_count := tasks,
 * heap_count := the sum of their heap counts, alloc_count := the sum of their live blocks.
 * Returns: ESP_OK; ESP_ERR_INVALID_ARG if tasks_stat is NULL; ESP_FAIL if an allocation failed
 * (nothing stays allocated; fields NULL / 0). */
esp_err_t heap_caps_alloc_all_task_stat_arrays(heap_all_tasks_stat_t *tasks_stat);

/* Frees the arrays of heap_caps_alloc_all_task_stat_arrays (NULL: no-op). */
void heap_caps_free_all_task_stat_arrays(heap_all_tasks_stat_t *tasks_stat);

/* ---- capheap extensions -----------------------------------------------------------------------
 */

/* Starts (true) or stops (false) keeping statistics. Starting forgets earlier statistics and the
 * overflow count, then records every live block of every tracking heap for its owner (current =
 * peak = what the heaps hold now); blocks allocated or freed by other threads while this runs may
 * be counted twice or not at all, so start when the heaps are quiet (at start-up). Stopping keeps
 * the figures (the get and print functions still report them) but stops updating them.
 * Without CAPHEAP_TASK_TRACKING: no effect.
 * Complexity: O(blocks of the tracking heaps). Thread safety: yes. ISR: no. */
void capheap_task_stats_enable(bool enable);

/* True while statistics are kept. O(1). */
bool capheap_task_stats_enabled(void);

/* Whether ended tasks keep their statistics (is_alive false) or are dropped (the default, or
 * CAPHEAP_TRACK_DELETED_TASKS). Applies from the next update or query. O(1). */
void capheap_task_stats_track_deleted(bool keep);

/* Number of allocations and tasks not recorded because the pool was full, since the last start.
 * O(1). */
size_t capheap_task_stats_overflow(void);

#ifdef __cplusplus
}
#endif

#endif /* ESP_HEAP_TASK_INFO_H */
