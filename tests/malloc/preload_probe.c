/*
 * preload_probe.c — run with LD_PRELOAD=libcapheap_malloc_preload.so: checks from a plain C
 * program (which knows nothing of capheap) that malloc, strdup (glibc calling malloc internally)
 * and realloc return memory inside the simulated ESP32's internal data RAM, and that free works.
 * Exit status: 0 ok, 1 wrong memory, 2 the library is not preloaded.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uintptr_t (*to_chip_fn)(const void *);

static int in_dram(to_chip_fn to_chip, const void *p) {
  const uintptr_t c = to_chip(p);
  return c >= 0x3FFAE000u && c < 0x40000000u;
}

int main(void) {
  to_chip_fn to_chip;
  void *sym = dlsym(RTLD_DEFAULT, "capheap_host_to_chip");
  if (sym == NULL) {
    fprintf(stderr, "preload_probe: capheap_malloc_preload is not preloaded\n");
    return 2;
  }
  memcpy(&to_chip, &sym, sizeof to_chip);

  char *p = malloc(100);
  char *d = strdup("capheap");
  if (p == NULL || d == NULL) return 1;
  strcpy(p, "hello");
  int ok = in_dram(to_chip, p) && in_dram(to_chip, d);
  printf("malloc -> chip 0x%08lx, strdup -> chip 0x%08lx\n", (unsigned long)to_chip(p),
         (unsigned long)to_chip(d));
  char *q = realloc(p, 5000);
  if (q == NULL) return 1;
  ok = ok && strcmp(q, "hello") == 0 && in_dram(to_chip, q);
  free(q);
  free(d);
  return ok ? 0 : 1;
}
