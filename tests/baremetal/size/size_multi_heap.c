/* size_multi_heap.c — every function of the multi_heap C API is linked (make size,
 * "multi_heap_api"): their addresses are taken, so nothing is left out by --gc-sections. */
#include <stdint.h>

#include "capheap.h"
#include "multi_heap.h"

#if defined(CAPHEAP_LINK_CHECK_INJECT)
void capheap_link_check_injected(void);
#endif

static const uintptr_t g_api[] = {
#include "multi_heap_api.inc"
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
