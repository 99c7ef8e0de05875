/* c_example.c — the README's C example, built and run by `make test` (ctest: example_c). */
#include <stdint.h>
#include <stdio.h>

#include <capheap.h>
#include <multi_heap.h>

static uint8_t region[32 * 1024] __attribute__((aligned(16)));

int main(void) {
  multi_heap_handle_t heap = multi_heap_register(region, sizeof region);
  void *buf = multi_heap_malloc(heap, 1500);
  void *dma = multi_heap_aligned_alloc(heap, 4096, 64);

  multi_heap_info_t info;
  multi_heap_get_info(heap, &info); /* O(1): counters, not a heap walk */
  printf("free %zu, largest %zu\n", info.total_free_bytes, info.largest_free_block);

  multi_heap_free(heap, dma);
  multi_heap_free(heap, buf);

  capheap_heap_config_t cfg = {.granule = 4};
  static uint8_t region4[4096] __attribute__((aligned(16)));
  multi_heap_handle_t heap4 = capheap_heap_register(region4, sizeof region4, &cfg);
  size_t before = multi_heap_free_size(heap4);
  void *p = multi_heap_malloc(heap4, 30);
  int overhead_ok = before - multi_heap_free_size(heap4) == 32 + 4;
  multi_heap_free(heap4, p);
  return (buf && dma && overhead_ok && multi_heap_check(heap, true)) ? 0 : 1;
}
