/*
 * multi_heap.h — ESP-IDF's per-region heap API, implemented by capheap.
 *
 * Same names, types, signatures and behaviour as ESP-IDF's `multi_heap.h` (TLSF era). Each function
 * below documents its effects, exact failure cases, complexity and thread/ISR safety.
 *
 * Locking: functions marked "locks" take the lock given to multi_heap_set_lock (none by default).
 * They are safe from several threads once a lock is set. From an interrupt they are safe only on a
 * port whose lock masks interrupts (the bare-metal port's hooks decide); with the host port they
 * are not ISR-safe.
 *
 * Pure C header (C99 and later), usable from C++.
 */
#ifndef MULTI_HEAP_H
#define MULTI_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Opaque handle to a registered heap. A typed incomplete struct, as in ESP-IDF. */
typedef struct multi_heap_info *multi_heap_handle_t;

/* Opaque handle to one physical block of a heap (block-level helpers below). */
typedef const struct block_header_t *multi_heap_block_handle_t;

/* Statistics of one heap (ESP-IDF's field meanings).
 *   total_free_bytes      bytes in free blocks, block headers included (what multi_heap_free_size
 *                         reports); an allocation of s bytes lowers it by the block it takes
 *   total_allocated_bytes usable bytes of allocated blocks (block size minus its header)
 *   largest_free_block    largest L such that multi_heap_malloc(heap, L) succeeds now; malloc of
 *                         L + granule fails in the same state
 *   minimum_free_bytes    lifetime low-water mark of total_free_bytes
 *   allocated_blocks, free_blocks, total_blocks (= allocated + free; the end sentinel is excluded)
 */
typedef struct {
  size_t total_free_bytes;
  size_t total_allocated_bytes;
  size_t largest_free_block;
  size_t minimum_free_bytes;
  size_t allocated_blocks;
  size_t free_blocks;
  size_t total_blocks;
} multi_heap_info_t;

/* Walker callback: block data pointer, usable size, 1 if allocated, user data. Return false to
 * stop. */
typedef bool (*multi_heap_walker_cb_t)(void *block_ptr, size_t block_size, int block_used,
                                       void *user_data);

/* ---- Registration -----------------------------------------------------------------------------
 */

/* Registers [start, start + size) as a heap with the platform's default granule
 * (alignof(max_align_t) on 64-bit hosts, 4 on 32-bit targets; see capheap_heap_register to choose).
 * Returns: the handle, or NULL if start is NULL, not 4-byte aligned, or the region is too small for
 *   the 8-byte lock prefix, the control structure and one minimum block. There is no
 *   deregistration: once every block is free the memory may simply be reused.
 * Complexity: O(log size). Not thread-safe, not ISR-safe (the region must be private to the
 * caller). */
multi_heap_handle_t multi_heap_register(void *start, size_t size);

/* Associates a recursive lock object with the heap (NULL, the initial value, means no locking). On
 * the host port `lock` is a capheap_lock_t* (capheap.h); on bare metal it is passed to the lock
 * hooks. O(1). Call before the heap is shared. */
void multi_heap_set_lock(multi_heap_handle_t heap, void *lock);

/* ---- Allocation -------------------------------------------------------------------------------
 */

/* Allocates size bytes, aligned to the heap's granule.
 * Returns NULL if heap is NULL, size is 0, or size is above the heap's largest_free_block (the
 * block it takes is the head of the request's own size class or of the first non-empty larger
 * class: a fitting block behind a head that is too small is not looked at).
 * Complexity: O(1). Locks. */
void *multi_heap_malloc(multi_heap_handle_t heap, size_t size);

/* Allocates size bytes aligned to `alignment`.
 * Returns NULL if heap is NULL, size is 0, alignment is 0 or not a power of two, alignment is
 * larger than the heap (whatever the addresses, as in ESP-IDF), or none of the blocks it looks
 * at (up to 4 of the request's own size class, then the first non-empty larger class) can hold
 * the aligned allocation; it may succeed above largest_free_block, never above the largest free
 * block. Free the result with multi_heap_free.
 * Complexity: O(1). Locks. */
void *multi_heap_aligned_alloc(multi_heap_handle_t heap, size_t size, size_t alignment);

/* Like multi_heap_aligned_alloc, but aligns p + offset instead of p (offset is rounded up to 4, as
 * in ESP-IDF). Used to align user data that sits behind a header of `offset` bytes. Returns NULL
 * also when no address can satisfy the request in this heap's granule (e.g. granule 8, alignment 8,
 * offset 4). O(1). Locks. */
void *multi_heap_aligned_alloc_offs(multi_heap_handle_t heap, size_t size, size_t alignment,
                                    size_t offset);

/* Frees p (NULL: no-op). p must have been returned by this heap and not freed since; a pointer
 * outside the heap, not at a block start, or already free is reported through the fail hook
 * (default: abort) and otherwise ignored. Coalesces with free neighbours immediately.
 * Complexity: O(1). Locks. */
void multi_heap_free(multi_heap_handle_t heap, void *p);

/* Deprecated alias of multi_heap_free (kept for ESP-IDF compatibility). */
void multi_heap_aligned_free(multi_heap_handle_t heap, void *p);

/* Resizes the allocation at p.
 * p NULL: same as multi_heap_malloc. size 0 (p non-NULL): frees p and returns NULL.
 * Shrinks in place, or grows in place into a free following block; otherwise allocates a new block
 * in this heap, copies min(old usable size, size) bytes and frees p. Returns the (possibly moved)
 * pointer, or NULL on failure, in which case p is untouched and still allocated. heap NULL returns
 * NULL. The free size changes by old block - new block and the minimum-free mark follows that net
 * change, also when the block moves (ESP-IDF's accounting; comprehensive poisoning, which always
 * moves, counts both blocks as ESP-IDF does). Complexity: O(1) plus the copy. Locks. */
void *multi_heap_realloc(multi_heap_handle_t heap, void *p, size_t size);

/* Usable size of the allocation at p (≥ the requested size; poisoned heaps: the block less header
 * and decoration, up to 3 bytes more than requested). 0 for NULL p or heap and for a pointer that
 * is not a live block of the heap (freed, interior, outside it), without a report. O(1). */
size_t multi_heap_get_allocated_size(multi_heap_handle_t heap, void *p);

/* ---- Inspection -------------------------------------------------------------------------------
 */

/* Full integrity check: physical block chain, free lists, bitmaps and counters (O(n) in blocks).
 * Returns true if the heap is consistent. With print_errors, prints `CORRUPT HEAP: ...` naming the
 * first bad block's address and the reason. Locks. NULL heap: false. */
bool multi_heap_check(multi_heap_handle_t heap, bool print_errors);

/* Prints every block in ESP-IDF's format: `Showing data for heap: <heap> ` then one line per block
 * `Block <data> data, size: <usable> bytes, Free: Yes|No `. O(n). Locks. */
void multi_heap_dump(multi_heap_handle_t heap);

/* Bytes in free blocks (headers included); 0 for NULL. O(1), lock-free read. */
size_t multi_heap_free_size(multi_heap_handle_t heap);

/* Lifetime minimum of multi_heap_free_size; 0 for NULL. O(1). */
size_t multi_heap_minimum_free_size(multi_heap_handle_t heap);

/* Fills *info (zeroed first; stays zero for a NULL heap). O(1) in capheap (counters kept
 * incrementally; ESP-IDF walks the heap). Locks. */
void multi_heap_get_info(multi_heap_handle_t heap, multi_heap_info_t *info);

/* Sets the minimum-free mark to the current free size and returns the previous mark, the value
 * multi_heap_minimum_free_size returned (poisoned heaps: without one allocation's decoration). 0
 * for NULL. O(1). Locks. */
size_t multi_heap_reset_minimum_free_bytes(multi_heap_handle_t heap);

/* Sets the minimum-free mark to min(current mark, new_minimum_free_bytes_value), in
 * multi_heap_minimum_free_size's units: that function then returns the smaller of its previous
 * value and new_minimum_free_bytes_value. NULL heap: no-op. O(1). Locks. */
void multi_heap_restore_minimum_free_bytes(multi_heap_handle_t heap,
                                           const size_t new_minimum_free_bytes_value);

/* Calls walker_func for every block in address order (data pointer, usable size, used flag), under
 * the heap lock, until it returns false. A block whose size word is impossible (corrupted) is
 * passed as read, with the size its word gives, and the walk ends there. The callback must not
 * call into the same heap. O(n). */
void multi_heap_walk(multi_heap_handle_t heap, multi_heap_walker_cb_t walker_func, void *user_data);

/* ---- Block-level helpers (used by heap_caps and task tracking) ---------------------------------
 */

/* Total size of the block holding allocation p: usable size plus the block header (and, on a
 * poisoned heap, the decoration). 0 for NULL p or heap and for a pointer that is not a live block
 * of the heap, without a report. O(1). */
size_t multi_heap_get_full_block_size(multi_heap_handle_t heap, void *p);

/* Data pointer of the allocated block containing the address p (p may point inside it), or NULL if
 * p lies in no allocated block. O(n) physical walk. Locks. */
void *multi_heap_find_containing_block(multi_heap_handle_t heap, void *p);

/* First block of the heap, and the block after `block` (NULL after the last one). Not locked: use
 * multi_heap_internal_lock around a walk. O(1). */
multi_heap_block_handle_t multi_heap_get_first_block(multi_heap_handle_t heap);
multi_heap_block_handle_t multi_heap_get_next_block(multi_heap_handle_t heap,
                                                    multi_heap_block_handle_t block);

/* True if the block is free. O(1). */
bool multi_heap_is_free(const multi_heap_block_handle_t block);

/* Data address of a block: for an allocation, what malloc returned for it (past the poisoning head
 * and owner word of a decorated heap). O(1) for heap_caps heaps and up to 32 decorated heaps
 * registered with capheap_heap_register; others: O(1) without decoration. */
void *multi_heap_get_block_address(multi_heap_block_handle_t block);

/* Owner of an allocation in a heap with task tracking (capheap_heap_config_t.task_tracking): the
 * task's handle (the owner word as a pointer; NULL = before the scheduler). NULL for free blocks
 * and heaps without task tracking. */
void *multi_heap_get_block_owner(multi_heap_block_handle_t block);

/* Take / release the heap's lock around a sequence of block-level calls. */
void multi_heap_internal_lock(multi_heap_handle_t heap);
void multi_heap_internal_unlock(multi_heap_handle_t heap);

#ifdef __cplusplus
}
#endif

#endif /* MULTI_HEAP_H */
