/* size_multi_heap.c — every function of the multi_heap C API is linked (make size,
 * "multi_heap_api"): their addresses are taken, so nothing is left out by --gc-sections. */
#include <stdint.h>

#include "capheap.h"
#include "multi_heap.h"

#if defined(CAPHEAP_LINK_CHECK_INJECT)
void capheap_link_check_injected(void);
#endif

static const uintptr_t g_api[] = {
    (uintptr_t)&multi_heap_register,
    (uintptr_t)&multi_heap_set_lock,
    (uintptr_t)&multi_heap_malloc,
    (uintptr_t)&multi_heap_aligned_alloc,
    (uintptr_t)&multi_heap_aligned_alloc_offs,
    (uintptr_t)&multi_heap_free,
    (uintptr_t)&multi_heap_aligned_free,
    (uintptr_t)&multi_heap_realloc,
    (uintptr_t)&multi_heap_get_allocated_size,
    (uintptr_t)&multi_heap_check,
    (uintptr_t)&multi_heap_dump,
    (uintptr_t)&multi_heap_free_size,
    (uintptr_t)&multi_heap_minimum_free_size,
    (uintptr_t)&multi_heap_get_info,
    (uintptr_t)&multi_heap_reset_minimum_free_bytes,
    (uintptr_t)&multi_heap_restore_minimum_free_bytes,
    (uintptr_t)&multi_heap_walk,
    (uintptr_t)&multi_heap_get_full_block_size,
    (uintptr_t)&multi_heap_find_containing_block,
    (uintptr_t)&multi_heap_get_first_block,
    (uintptr_t)&multi_heap_get_next_block,
    (uintptr_t)&multi_heap_is_free,
    (uintptr_t)&multi_heap_get_block_address,
    (uintptr_t)&multi_heap_get_block_owner,
    (uintptr_t)&multi_heap_internal_lock,
    (uintptr_t)&multi_heap_internal_unlock,
    (uintptr_t)&capheap_heap_register,
};

int main(void) {
#if defined(CAPHEAP_LINK_CHECK_INJECT)
  capheap_link_check_injected();
#endif
  uintptr_t sum = 0;
  for (unsigned i = 0; i < sizeof g_api / sizeof g_api[0]; ++i)
    sum += ((const volatile uintptr_t *)g_api)[i];
  return (int)(sum & 1u);
}
