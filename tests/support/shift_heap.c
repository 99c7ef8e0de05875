/* shift_heap.c — LD_PRELOAD shim of the address-shift run (scripts/shift-test.sh, docs/testing.md).
 *
 * Before main() it takes CAPHEAP_SHIFT_BYTES bytes from the host's malloc and never gives them
 * back, so every later allocation of the test process sits at other addresses than in a normal
 * run. A test whose answer depends on where the host put its buffers (an alignment that a region
 * happens to satisfy, a boundary it happens to straddle) then fails here instead of once in a
 * while in CI, where a different path length or build type moves the same buffers. */
#include <stdlib.h>

__attribute__((constructor)) static void capheap_shift_heap(void) {
  const char *s = getenv("CAPHEAP_SHIFT_BYTES");
  if (s == NULL) return;
  const long n = strtol(s, NULL, 10);
  if (n <= 0) return;
  /* volatile: the block must be taken, not optimised away */
  void *volatile keep = malloc((size_t)n);
  (void)keep;
}
