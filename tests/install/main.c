/* Smoke test of an installed capheap from C: register a heap on a static buffer, allocate, inspect,
 * free. Exits 0 on success and prints the first failed check otherwise. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <capheap.h>
#include <multi_heap.h>

#define CHECK(cond)                                                               \
  do {                                                                            \
    if (!(cond)) {                                                                \
      fprintf(stderr, "consumer: check failed: %s (line %d)\n", #cond, __LINE__); \
      return 1;                                                                   \
    }                                                                             \
  } while (0)

static _Alignas(16) uint8_t region[16 * 1024];

int main(void) {
  multi_heap_handle_t heap = multi_heap_register(region, sizeof region);
  CHECK(heap != NULL);

  multi_heap_info_t before;
  multi_heap_get_info(heap, &before);
  CHECK(before.total_free_bytes > 0);
  CHECK(before.total_free_bytes <= sizeof region);
  CHECK(before.allocated_blocks == 0);

  char *p = multi_heap_malloc(heap, 100);
  CHECK(p != NULL);
  memset(p, 0x5a, 100);
  CHECK(multi_heap_get_allocated_size(heap, p) >= 100);

  multi_heap_info_t during;
  multi_heap_get_info(heap, &during);
  CHECK(during.allocated_blocks == 1);
  CHECK(during.total_allocated_bytes >= 100);
  CHECK(during.total_free_bytes < before.total_free_bytes);
  CHECK(multi_heap_check(heap, true));

  multi_heap_free(heap, p);

  multi_heap_info_t after;
  multi_heap_get_info(heap, &after);
  CHECK(after.allocated_blocks == 0);
  CHECK(after.total_free_bytes == before.total_free_bytes);
  CHECK(multi_heap_check(heap, true));

  printf("consumer: OK (free %zu bytes, largest block %zu)\n", after.total_free_bytes,
         after.largest_free_block);
  return 0;
}
