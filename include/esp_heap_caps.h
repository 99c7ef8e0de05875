/*
 * esp_heap_caps.h — ESP-IDF's capabilities-based heap API, implemented by capheap.
 *
 * Same names, values, types and behaviour as ESP-IDF's esp_heap_caps.h. Where ESP-IDF's code and
 * documentation disagree, capheap follows the code; each such choice is noted below ("ESP-IDF
 * code:"). Every function states its effects, exact failure cases, complexity and thread/ISR
 * safety.
 *
 * Heap selection (heap_caps_malloc and friends): for priority level 0, 1, 2 in turn, the heaps are
 * tried in list order (heaps added at run time first, newest first; then boot heaps by ascending
 * address). A heap is tried at a level if it has at least one requested bit at that level and all
 * requested bits over its three levels. The first heap that can satisfy the request wins.
 *
 * Threads and interrupts: every function is thread-safe (each heap has its own lock, taken
 * through the port). On a bare-metal port whose lock hooks mask interrupts, the allocation and
 * free functions marked "ISR: yes" may be called from an interrupt; the rest may not (they walk
 * heaps or print). On the host port nothing is ISR-safe.
 *
 * Pure C (C99 and later), usable from C++.
 */
#ifndef ESP_HEAP_CAPS_H
#define ESP_HEAP_CAPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"
#include "multi_heap.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Capability flags (ESP-IDF's values) ------------------------------------------------------
 */

#define MALLOC_CAP_EXEC (1 << 0)  /* executable memory; implies 32BIT; excludes 8BIT, DMA */
#define MALLOC_CAP_32BIT (1 << 1) /* 32-bit aligned access only; sizes round up to 4 */
#define MALLOC_CAP_8BIT (1 << 2)  /* byte-addressable */
#define MALLOC_CAP_DMA (1 << 3)   /* reachable by DMA; never external RAM */
#define MALLOC_CAP_PID2 (1 << 4)
#define MALLOC_CAP_PID3 (1 << 5)
#define MALLOC_CAP_PID4 (1 << 6)
#define MALLOC_CAP_PID5 (1 << 7)
#define MALLOC_CAP_PID6 (1 << 8)
#define MALLOC_CAP_PID7 (1 << 9)
#define MALLOC_CAP_SPIRAM (1 << 10)        /* external SPI RAM */
#define MALLOC_CAP_INTERNAL (1 << 11)      /* internal memory, usable with caches off */
#define MALLOC_CAP_DEFAULT (1 << 12)       /* eligible for malloc() */
#define MALLOC_CAP_IRAM_8BIT (1 << 13)     /* IRAM with 8-bit access */
#define MALLOC_CAP_RETENTION (1 << 14)     /* reachable by retention (sleep backup) DMA */
#define MALLOC_CAP_RTCRAM (1 << 15)        /* RTC fast memory / LP RAM */
#define MALLOC_CAP_SPM (1 << 16)           /* SPM / TCM memory */
#define MALLOC_CAP_TCM MALLOC_CAP_SPM      /* deprecated alias */
#define MALLOC_CAP_DMA_DESC_AHB (1 << 17)  /* can hold AHB DMA descriptors */
#define MALLOC_CAP_DMA_DESC_AXI (1 << 18)  /* can hold AXI DMA descriptors (8-byte aligned) */
#define MALLOC_CAP_CACHE_ALIGNED (1 << 19) /* address and size aligned to the cache line */
#define MALLOC_CAP_SIMD (1 << 20)          /* aligned for SIMD instructions */
#define MALLOC_CAP_SPIRAM_NO_ENC (1 << 21) /* PSRAM exempt from flash encryption */
#define MALLOC_CAP_INVALID (1u << 31)      /* no heap has it; in queries it means "all heaps" */

/* Functions placed in fast RAM on targets (a port may define CAPHEAP_IRAM_ATTR). */
#ifndef HEAP_IRAM_ATTR
#define HEAP_IRAM_ATTR
#endif

/* ---- Types ------------------------------------------------------------------------------------
 */

/* Called on every failed allocation of a non-zero size: requested size, caps, function name. */
typedef void (*esp_alloc_failed_hook_t)(size_t size, uint32_t caps, const char *function_name);

/* A heap's address range as seen by heap_caps_walk (the name's typo is ESP-IDF's). */
typedef struct walker_heap_info {
  intptr_t start;
  intptr_t end;
} walker_heap_into_t;

/* One block as seen by heap_caps_walk: data pointer, usable size, allocated or not. */
typedef struct walker_block_info {
  void *ptr;
  size_t size;
  bool used;
} walker_block_info_t;

/* Walker callback; return false to stop walking the current heap (the walk goes on with the next).
 */
typedef bool (*heap_caps_walker_cb_t)(walker_heap_into_t heap_info, walker_block_info_t block_info,
                                      void *user_data);

/* ---- Failure callback -------------------------------------------------------------------------
 */

/* Registers the callback run on every failed allocation with size > 0 (replaces the previous one).
 * Returns ESP_ERR_INVALID_ARG for NULL, else ESP_OK. O(1). Not ISR-safe. */
esp_err_t heap_caps_register_failed_alloc_callback(esp_alloc_failed_hook_t callback);

/* ---- Allocation -------------------------------------------------------------------------------
 */

/* Allocates size bytes from a heap that has every capability in caps (selection above).
 * Returns NULL (and runs the failure callback) if caps is 0, contains MALLOC_CAP_INVALID, asks for
 * EXEC with 8BIT or DMA, or no heap can satisfy it. size 0 returns NULL without the callback.
 * EXEC implies 32BIT; 32BIT rounds size up to 4; DMA, DMA_DESC_*, CACHE_ALIGNED and SIMD align
 * address and size to the chip's hardware requirement. An EXEC request served from D/IRAM returns
 * an instruction-bus address. O(1) per heap tried (no heap is evaluated twice). ISR: yes. */
void *heap_caps_malloc(size_t size, uint32_t caps);

/* Frees memory from any heap_caps allocation function (NULL: no-op). Instruction-bus aliases are
 * translated back. A pointer outside every heap or not a live block is reported through the fail
 * hook (default: abort, ESP-IDF's "free() target pointer is outside heap areas"). Finds the owning
 * heap in O(log heaps). ISR: yes. */
void heap_caps_free(void *ptr);

/* Resizes ptr to size bytes with caps (ptr NULL: heap_caps_malloc; size 0: frees, returns NULL, no
 * callback). Resizes within the current heap when that heap has all of caps and ptr is not an
 * instruction alias; otherwise allocates with caps, copies min(old usable, size) and frees ptr.
 * Returns NULL on failure with ptr untouched, running the callback. ISR: yes. */
void *heap_caps_realloc(void *ptr, size_t size, uint32_t caps);

/* Allocates size bytes aligned to alignment with caps. Returns NULL without the callback if
 * alignment is 0 or not a power of two, or size is 0; with the callback if no heap can serve it.
 * ESP-IDF code: unlike heap_caps_malloc there is no EXEC rule here (EXEC is not refused with 8BIT
 * or DMA, does not imply 32BIT, and a D/IRAM heap serves it at its data address, not through the
 * instruction bus). Free with heap_caps_free. ISR: yes. */
void *heap_caps_aligned_alloc(size_t alignment, size_t size, uint32_t caps);

/* Deprecated: identical to heap_caps_free. ISR: yes. */
void heap_caps_aligned_free(void *ptr);

/* heap_caps_aligned_alloc of n * size bytes, zero-filled; NULL without the callback on n * size
 * overflow. ISR: yes. */
void *heap_caps_aligned_calloc(size_t alignment, size_t n, size_t size, uint32_t caps);

/* heap_caps_malloc of n * size bytes, zero-filled; NULL on overflow. ESP-IDF code: every NULL
 * result with size > 0 runs the callback (n == 0 and an overflowing n * size included); the
 * callback receives n * size (wrapped on overflow). ISR: yes. */
void *heap_caps_calloc(size_t n, size_t size, uint32_t caps);

/* Tries each of the num caps masks (variadic uint32_t) in order; the first success wins. On
 * failure runs the callback once with the last caps tried (MALLOC_CAP_DEFAULT if num is 0).
 * size 0 returns NULL. heap_caps_realloc_prefer with size 0 frees ptr on its first attempt (so
 * not at all if num is 0: ptr then stays allocated). ISR: yes. */
void *heap_caps_malloc_prefer(size_t size, size_t num, ...);
void *heap_caps_realloc_prefer(void *ptr, size_t size, size_t num, ...);
/* heap_caps_calloc over each caps in turn: a NULL result with size > 0 (n == 0 and an overflowing
 * n * size included) runs the callback once with n * size and the last caps. ISR: yes. */
void *heap_caps_calloc_prefer(size_t n, size_t size, size_t num, ...);

/* From now on plain malloc() (heap_caps_malloc_default) puts requests of at most `limit` bytes in
 * internal memory first and larger ones in external memory first; both fall back to any DEFAULT
 * heap. The limit is kept as ESP-IDF's int (its low 32 bits, signed): -1, e.g. 0xFFFFFFFF or
 * SIZE_MAX, disables external allocations again (internal memory only). O(1). */
void heap_caps_malloc_extmem_enable(size_t limit);

/* ---- Queries ------------------------------------------------------------------------------------
 */

/* Queries use "has all of caps" (caps 0 matches every heap; MALLOC_CAP_INVALID in caps matches
 * every heap for check/dump/walk). O(heaps), no block walk unless stated. Not ISR-safe. */

/* Sum of the region sizes (end - start) of matching heaps. */
size_t heap_caps_get_total_size(uint32_t caps);
/* Sum of the free bytes of matching heaps (fragmentation not reflected). */
size_t heap_caps_get_free_size(uint32_t caps);
/* Sum of the lifetime minimum free bytes of matching heaps (reached at different times, so a
 * pessimistic bound). Heaps added at run time are counted, as ESP-IDF's code does (its 2025 header
 * says they are not). */
size_t heap_caps_get_minimum_free_size(uint32_t caps);
/* The largest free block of the matching heaps, heap_caps_get_info's largest_free_block (ESP-IDF's
 * figure): the largest size heap_caps_malloc(size, caps) could return now, except that an EXEC
 * request served through a D/IRAM alias needs 4 bytes more and a DMA / cache-aligned / SIMD request
 * has its size rounded up to the hardware alignment, as on ESP-IDF. O(heaps). */
size_t heap_caps_get_largest_free_block(uint32_t caps);
/* Sums the statistics of matching heaps into *info (largest_free_block is the maximum).
 * O(heaps): capheap keeps every figure as a counter (ESP-IDF walks every block). */
void heap_caps_get_info(multi_heap_info_t *info, uint32_t caps);
/* Prints ESP-IDF's "Heap summary for capabilities 0x%08X:" report for matching heaps. */
void heap_caps_print_heap_info(uint32_t caps);

/* Starts a local low-water-mark window: every heap's minimum restarts from its current free size
 * (the lifetime minimum is kept aside). ESP-IDF code: calling it while active re-snapshots and
 * returns ESP_OK. Returns ESP_ERR_NO_MEM if no bookkeeping memory is available. */
esp_err_t heap_caps_monitor_local_minimum_free_size_start(void);
/* Ends the window: each minimum becomes min(local minimum, lifetime minimum). ESP_FAIL if no
 * window is active. */
esp_err_t heap_caps_monitor_local_minimum_free_size_stop(void);

/* Full integrity check of every heap (O(blocks)); prints `CORRUPT HEAP: ...` when print_errors.
 * Checks every heap even after a failure. Returns true if all pass. */
bool heap_caps_check_integrity_all(bool print_errors);
bool heap_caps_check_integrity(uint32_t caps, bool print_errors);
/* Checks the heap containing addr; false if no heap contains it. */
bool heap_caps_check_integrity_addr(intptr_t addr, bool print_errors);

/* Prints every block of matching heaps / of all heaps in multi_heap_dump's format. O(blocks). */
void heap_caps_dump(uint32_t caps);
void heap_caps_dump_all(void);

/* Usable size of the allocation at ptr (>= requested size). A pointer in no heap is reported
 * through the fail hook (ESP-IDF asserts) and 0 is returned. O(log heaps). */
size_t heap_caps_get_allocated_size(void *ptr);
/* Size of the allocated block containing the (possibly interior) pointer ptr; reported through the
 * fail hook and 0 if ptr is in no allocated block. O(blocks of that heap). */
size_t heap_caps_get_containing_block_size(void *ptr);

/* Walks every block of matching heaps (all heaps with MALLOC_CAP_INVALID) under each heap's lock.
 * A block whose size word is impossible (corrupted) is passed to the callback as read, with the
 * size its word gives (so block.ptr + block.size goes past heap_info.end), and the walk of that
 * heap ends there. The callback must not allocate or free. */
void heap_caps_walk(uint32_t caps, heap_caps_walker_cb_t walker_func, void *user_data);
void heap_caps_walk_all(heap_caps_walker_cb_t walker_func, void *user_data);

/* ---- Hooks (CAPHEAP_USE_HOOKS / CONFIG_HEAP_USE_HOOKS builds) ----------------------------------
 */

/* Weak, user-provided: called after every successful allocation / every free when hooks are built
 * in. Run in the caller's context: keep them short, no locking, no allocation. */
void esp_heap_trace_alloc_hook(void *ptr, size_t size, uint32_t caps);
void esp_heap_trace_free_hook(void *ptr);

#ifdef __cplusplus
}
#endif

#endif /* ESP_HEAP_CAPS_H */
