/*
 * capheap.h — capheap's own C extensions next to the ESP-IDF-compatible headers.
 *
 * Pure C (C99 and later) and C++-compatible. Everything here is a capheap addition; the ESP-IDF
 * names live in multi_heap.h, esp_heap_caps.h and friends.
 */
#ifndef CAPHEAP_H
#define CAPHEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "capheap_layout.h"
#include "esp_err.h"
#include "multi_heap.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Heap configuration -----------------------------------------------------------------------
 */

/* Heap poisoning level (ESP-IDF's CONFIG_HEAP_POISONING_*), chosen per heap when it is created.
 * LIGHT: every allocation carries a head canary 0xABBA1234 with its requested size and a tail
 * canary 0xBAAD5678 (12 bytes with granule 4), checked on free, realloc and integrity checks.
 * COMPREHENSIVE: LIGHT, plus free memory is kept at 0xFE (verified when handed out and by
 * integrity checks) and new allocations are filled with 0xCE; realloc always moves. */
typedef enum {
  CAPHEAP_POISONING_NONE = 0,
  CAPHEAP_POISONING_LIGHT = 1,
  CAPHEAP_POISONING_COMPREHENSIVE = 2,
} capheap_poisoning_t;

/* Options for capheap_heap_register. Zero-initialise and set what you need: every field's zero
 * value means "the default". Later versions only append fields. */
typedef struct capheap_heap_config {
  /* Alignment granule in bytes: 4, 8 or 16; 0 = platform default (alignof(max_align_t) on 64-bit
   * builds, 4 on 32-bit ones: MCUs and 32-bit hosts alike). Every returned pointer is a multiple of
   * it and every block size is rounded to it. 4 is ESP-IDF's behaviour. */
  size_t granule;
  /* Poisoning level (default none). Builds configured without decoration support
   * (CAPHEAP_DECORATION=OFF) refuse anything but NONE. */
  capheap_poisoning_t poisoning;
  /* Store the allocating task's owner word (capheap_port_task_owner) in each allocation, 4 bytes
   * just before the data (ESP-IDF's CONFIG_HEAP_TASK_TRACKING); esp_heap_task_info.h reads it. */
  bool task_tracking;
} capheap_heap_config_t;

/* Registers [start, start + size) as a heap with explicit options.
 * Effects: lays a control structure sized to the region at `start` and one free block over the
 * rest. Returns: the heap handle, or NULL if and only if start is NULL or not 4-byte aligned,
 * cfg->granule is not 0/4/8/16, cfg->poisoning is not a capheap_poisoning_t value, poisoning or
 * task tracking is asked of a build without decoration support (CAPHEAP_DECORATION=OFF), or the
 * region cannot hold the 8-byte lock prefix, the control structure and one minimum block
 * (cfg NULL: every default). Regions larger than 4 GiB - 64 use only their first 4 GiB - 64 bytes
 * (offsets are 32-bit).
 * Complexity: O(log size) (the control structure is zeroed); O(size) with comprehensive poisoning
 *   (the free block is filled with 0xFE). Thread safety: the region must not be in use by anyone
 *   else. Not ISR-safe. */
multi_heap_handle_t capheap_heap_register(void *start, size_t size,
                                          const capheap_heap_config_t *cfg);

/* The granule a heap was registered with (4, 8 or 16); 0 for NULL. O(1). */
size_t capheap_heap_granule(multi_heap_handle_t heap);

/* O(1) self-test of the heap's bookkeeping (counters, bitmaps, sentinel, first block): true when
 * nothing inconsistent is found. Cheap enough for a periodic safety self-test; the full O(n) check
 * is multi_heap_check. */
bool capheap_heap_invariants_hold(multi_heap_handle_t heap);

/* ---- Locks ------------------------------------------------------------------------------------
 */

/* Storage for a host lock (a recursive mutex on hosted ports). Initialise with capheap_lock_init
 * before passing its address to multi_heap_set_lock. Bare-metal ports take any user object instead
 * (see capheap_set_lock_hooks). */
typedef union capheap_lock {
  unsigned char opaque[64];
  uint64_t align_u64;
  void *align_ptr;
} capheap_lock_t;

/* Host ports: initialise / destroy a capheap_lock_t. Bare-metal ports: no-ops. */
void capheap_lock_init(capheap_lock_t *lock);
void capheap_lock_destroy(capheap_lock_t *lock);

/* Installs lock callbacks used for every heap lock object (`lock` is what was given to
 * multi_heap_set_lock). NULL for both restores the port's default. Call before any heap is shared.
 */
typedef void (*capheap_lock_fn_t)(void *lock);
void capheap_set_lock_hooks(capheap_lock_fn_t acquire, capheap_lock_fn_t release);

/* ---- Failure and output hooks -----------------------------------------------------------------
 */

/* Called when capheap detects heap corruption or misuse (see src/port/port.h). Must not allocate.
 * If it returns, the detecting operation is refused (free ignored, allocation returns NULL).
 * NULL restores the default (host: print to stderr and abort). Returns the previous hook. */
typedef void (*capheap_fail_hook_t)(const char *what, const void *addr, const void *heap);
capheap_fail_hook_t capheap_set_fail_hook(capheap_fail_hook_t hook);

/* Redirects dump/report output. `print` receives complete formatted text pieces. NULL restores the
 * default (host: stdout; bare metal: discard). */
typedef void (*capheap_print_hook_t)(const char *text, size_t len);
void capheap_set_print_hook(capheap_print_hook_t print);

/* ---- Tasks and clocks (bare-metal ports; hosted ports answer these themselves) -------------- */

/* How a bare-metal port learns about tasks. Every member may be NULL (then: owner 0, name
 * "Pre-scheduler"/"task-0x%08x", alive). Hosted ports ignore the hooks. The struct is copied. */
typedef struct capheap_task_hooks {
  uint32_t (*current_owner)(void);                       /* owner word of the calling task */
  size_t (*name)(uint32_t owner, char *buf, size_t len); /* as capheap_port_task_name */
  bool (*alive)(uint32_t owner);
} capheap_task_hooks_t;
void capheap_set_task_hooks(const capheap_task_hooks_t *hooks);

/* Clock for trace records on bare-metal ports: a cycle counter and a nanosecond clock (either may
 * be NULL). Hosted ports use their own clocks. */
void capheap_set_clock_hooks(uint32_t (*cycle_count)(void), uint64_t (*time_ns)(void));

/* ---- Incremental integrity checks ------------------------------------------------------------ */

/* Examines at most max_blocks (>= 1; 0 counts as 1) blocks of one heap from where the previous
 * step stopped, under the heap's lock, with the checks multi_heap_check makes per block (header,
 * neighbours, free-list links and class, footer, canaries, free fill), and resumes there next time.
 * The position lives in the heap: merges move it back onto the merged block, so the heap may change
 * freely between steps. Guarantee: a full cycle (from a step that reports *cycle_complete until the
 * next such step) examines every block that exists throughout that cycle, so a corruption present
 * for a whole cycle is found in it; blocks created behind the position wait for the next cycle.
 * Totals (free bytes, counts) are only cross-checked by multi_heap_check.
 * Returns true if nothing was wrong; on a problem prints it like multi_heap_check when
 * print_errors, stays on the bad block and returns false. visited / cycle_complete (may be NULL)
 * receive the number of blocks examined and whether the step reached the end of the heap.
 * Complexity: O(max_blocks), plus the bytes of visited free blocks with comprehensive poisoning.
 * Thread-safe (takes the heap's lock); not ISR-safe. */
bool capheap_heap_check_step(multi_heap_handle_t heap, size_t max_blocks, bool print_errors,
                             size_t *visited, bool *cycle_complete);

/* Where an incremental check of the heap_caps heaps stands. Initialise with
 * CAPHEAP_INTEGRITY_CURSOR_INIT(caps); caps selects heaps as heap_caps_check_integrity does
 * (MALLOC_CAP_INVALID = every heap). */
typedef struct capheap_integrity_cursor {
  uint32_t caps;         /* heaps to check */
  uintptr_t heap;        /* start of the heap being checked (0 = begin with the first match) */
  size_t blocks_visited; /* blocks examined by the last step */
  size_t cycles;         /* completed passes over every matching heap, first block to last */
} capheap_integrity_cursor_t;
#define CAPHEAP_INTEGRITY_CURSOR_INIT(caps) \
  { (caps), 0, 0, 0 }

/* One step of an incremental check over every heap matching cursor->caps, for an idle task: at
 * most max_blocks blocks in all, holding one heap's lock at a time for at most that many blocks.
 * Heaps are visited in heap_caps order; entering a heap restarts that heap's position, so a cycle
 * checks each matching heap from its first block to its last (see capheap_heap_check_step for the
 * guarantee when heaps change between steps). One incremental checker per heap at a time: two
 * would share the heap's position. Heaps added or removed between steps are picked up or skipped.
 * Returns true if this step found nothing wrong (printing problems as heap_caps_check_integrity
 * does when print_errors), false on corruption (the next step resumes at the same block) or a
 * NULL cursor. Complexity: O(max_blocks + number of heaps). Not ISR-safe. */
bool capheap_check_integrity_step(capheap_integrity_cursor_t *cursor, size_t max_blocks,
                                  bool print_errors);

/* ---- Capabilities layer extensions --------------------------------------------------------- */

/* Sets the chip layout heap_caps_init builds heaps from (firmware: a generated constant table;
 * host: the simulator sets it). The layout must outlive every heap. O(1). */
void capheap_set_layout(const capheap_layout_t *layout);

/* Granule of the heaps heap_caps_init and heap_caps_add_region* create: 4 (ESP-IDF, the default),
 * 8 or 16. Call before heap_caps_init. Returns ESP_ERR_INVALID_ARG for other values. */
esp_err_t capheap_set_caps_granule(size_t granule);

/* Options (granule, poisoning, task tracking) of every heap heap_caps_init and
 * heap_caps_add_region* create from now on; call before heap_caps_init. NULL restores the defaults
 * (granule 4, no poisoning, no task tracking). Returns ESP_ERR_INVALID_ARG (nothing changed) for a
 * granule other than 0/4/8/16 (0 = 4), a poisoning value outside capheap_poisoning_t, or
 * poisoning/task tracking in a build without decoration support. Not thread-safe. */
esp_err_t capheap_set_caps_heap_config(const capheap_heap_config_t *cfg);

/* Sets aside `size` bytes of internal DMA-capable RAM that only explicit MALLOC_CAP_DMA or
 * MALLOC_CAP_INTERNAL requests can use (never plain malloc): ESP-IDF's
 * CONFIG_SPIRAM_MALLOC_RESERVE_INTERNAL. The memory is taken in chunks (largest first) from
 * DMA|INTERNAL heaps, totalling exactly `size` bytes (rounded up to 4), and added back as heaps
 * with ESP-IDF's caps {0, DMA|INTERNAL, 8BIT|32BIT}: no bit at priority 0, so a request that some
 * heap serves at priority 0 (INTERNAL|8BIT: DRAM) uses that heap first, while a request first
 * served at priority 1 (DMA) takes the pool first, as the head of the list. Each chunk's control
 * structure counts toward the size, as on the device. Returns ESP_OK, ESP_ERR_NO_MEM if the
 * internal memory cannot provide it, or ESP_ERR_INVALID_ARG for size 0. */
esp_err_t capheap_reserve_internal_pool(size_t size);

/* When enabled, a failed allocation (after the callback) prints
 * `Mem alloc fail. size 0x%08x caps 0x%08x` and aborts: ESP-IDF's
 * CONFIG_HEAP_ABORT_WHEN_ALLOCATION_FAILS, selectable at run time. */
void capheap_set_abort_on_alloc_failure(bool enable);

/* Explains, in one line of text, why heap_caps_malloc(size, caps) fails (or would fail) now:
 * an impossible combination ("EXEC cannot be combined with 8BIT or DMA"), no heap with every
 * requested capability, the size limit, or the largest block the matching heaps can still give
 * next to their total free bytes (fragmentation). Writes at most len bytes including the NUL;
 * returns the length of the full text (snprintf-like). Meant for failure callbacks; O(heaps). */
size_t capheap_describe_alloc_failure(size_t size, uint32_t caps, char *buf, size_t len);

/* ESP-IDF's private allocation entry points used by its libc glue (heap_private.h): the malloc()
 * policy (internal first, or external first above the heap_caps_malloc_extmem_enable limit, both
 * falling back to any DEFAULT heap) and the *_base functions that never run the failure callback.
 * ISR: yes, on the terms of esp_heap_caps.h (ESP-IDF lists heap_caps_malloc_default and
 * heap_caps_realloc_default among its ISR-callable functions; so the bare-metal malloc, realloc
 * and free over them are too).
 */
void *heap_caps_malloc_default(size_t size);
void *heap_caps_realloc_default(void *ptr, size_t size);
void *heap_caps_aligned_alloc_default(size_t alignment, size_t size);
void *heap_caps_malloc_base(size_t size, uint32_t caps);
void *heap_caps_realloc_base(void *ptr, size_t size, uint32_t caps);
void *heap_caps_calloc_base(size_t n, size_t size, uint32_t caps);
void *heap_caps_aligned_alloc_base(size_t alignment, size_t size, uint32_t caps);

#ifdef __cplusplus
}
#endif

#endif /* CAPHEAP_H */
