/* size_heap_caps.c — the whole heap_caps layer and the multi_heap C API are linked (make size,
 * "heap_caps"): every function of esp_heap_caps.h, esp_heap_caps_init.h and multi_heap.h, plus
 * capheap_set_layout, which firmware calls before heap_caps_init. */
#include <stdint.h>

#include "capheap.h"
#include "esp_heap_caps.h"
#include "esp_heap_caps_init.h"
#include "multi_heap.h"

#if defined(CAPHEAP_LINK_CHECK_INJECT)
void capheap_link_check_injected(void);
#endif

static const uintptr_t g_api[] = {
    (uintptr_t)&capheap_set_layout,
    (uintptr_t)&heap_caps_init,
    (uintptr_t)&heap_caps_enable_nonos_stack_heaps,
    (uintptr_t)&heap_caps_add_region,
    (uintptr_t)&heap_caps_add_region_with_caps,
    (uintptr_t)&heap_caps_register_failed_alloc_callback,
    (uintptr_t)&heap_caps_malloc,
    (uintptr_t)&heap_caps_free,
    (uintptr_t)&heap_caps_realloc,
    (uintptr_t)&heap_caps_aligned_alloc,
    (uintptr_t)&heap_caps_aligned_free,
    (uintptr_t)&heap_caps_aligned_calloc,
    (uintptr_t)&heap_caps_calloc,
    (uintptr_t)&heap_caps_malloc_prefer,
    (uintptr_t)&heap_caps_realloc_prefer,
    (uintptr_t)&heap_caps_calloc_prefer,
    (uintptr_t)&heap_caps_malloc_extmem_enable,
    (uintptr_t)&heap_caps_get_total_size,
    (uintptr_t)&heap_caps_get_free_size,
    (uintptr_t)&heap_caps_get_minimum_free_size,
    (uintptr_t)&heap_caps_get_largest_free_block,
    (uintptr_t)&heap_caps_get_info,
    (uintptr_t)&heap_caps_print_heap_info,
    (uintptr_t)&heap_caps_monitor_local_minimum_free_size_start,
    (uintptr_t)&heap_caps_monitor_local_minimum_free_size_stop,
    (uintptr_t)&heap_caps_check_integrity_all,
    (uintptr_t)&heap_caps_check_integrity,
    (uintptr_t)&heap_caps_check_integrity_addr,
    (uintptr_t)&heap_caps_dump,
    (uintptr_t)&heap_caps_dump_all,
    (uintptr_t)&heap_caps_get_allocated_size,
    (uintptr_t)&heap_caps_get_containing_block_size,
    (uintptr_t)&heap_caps_walk,
    (uintptr_t)&heap_caps_walk_all,
#include "multi_heap_api.inc"
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
