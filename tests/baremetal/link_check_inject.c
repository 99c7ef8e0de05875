/* link_check_inject.c — compiled into libcapheap only with
 * -DCAPHEAP_LINK_CHECK_INJECT=printf|malloc (tests/baremetal/link_check_selftest.sh): a deliberate
 * use of stdio or the heap that the link check (cmake/CapheapLinkCheck.cmake) must reject, failing
 * the build. */
#include <stdio.h>
#include <stdlib.h>

void capheap_link_check_injected(void);
void capheap_link_check_injected(void) {
#if defined(CAPHEAP_INJECT_printf)
  static volatile int n = 1;
  printf("injected %d\n", n); /* with an argument: stays a printf call */
#elif defined(CAPHEAP_INJECT_malloc)
  void *volatile p = malloc(16); /* volatile: the pair is not optimised away */
  free(p);
#endif
}
