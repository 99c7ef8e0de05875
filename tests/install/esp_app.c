/* esp_app.c — application code written only against ESP-IDF's heap headers, built against an
 * installed capheap with capheap::host (the simulator initialises itself from CAPHEAP_CHIP on the
 * first heap_caps_* call). Checks device behaviour that holds on the ESP32 and the ESP32-S3.
 * Exits 0 on success, prints the first failed check otherwise. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "esp_heap_caps.h"

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      fprintf(stderr, "esp_app: check failed: %s (line %d)\n", #cond, __LINE__); \
      return 1;                                                                  \
    }                                                                            \
  } while (0)

static int failures_seen;
static uint32_t failed_caps;
static void on_fail(size_t size, uint32_t caps, const char *fn) {
  (void)size;
  (void)fn;
  ++failures_seen;
  failed_caps = caps;
}

int main(void) {
  CHECK(heap_caps_register_failed_alloc_callback(on_fail) == ESP_OK);

  /* Internal DMA-capable memory lives in the 0x3FFxxxxx (ESP32) / 0x3FCxxxxx (S3) data bus. */
  const size_t free_before = heap_caps_get_free_size(MALLOC_CAP_DMA);
  uint8_t *dma = heap_caps_malloc(100, MALLOC_CAP_DMA);
  CHECK(dma != NULL);
  CHECK(((uintptr_t)dma >> 24) == 0x3F);
  CHECK(heap_caps_get_free_size(MALLOC_CAP_DMA) < free_before);
  memset(dma, 0xAB, 100);
  heap_caps_free(dma);
  CHECK(heap_caps_get_free_size(MALLOC_CAP_DMA) == free_before);

  /* Impossible combinations fail and report. */
  CHECK(heap_caps_malloc(64, MALLOC_CAP_EXEC | MALLOC_CAP_8BIT) == NULL);
  CHECK(failures_seen == 1 && failed_caps == (MALLOC_CAP_EXEC | MALLOC_CAP_8BIT));
  CHECK(heap_caps_malloc(0, MALLOC_CAP_DEFAULT) == NULL);
  CHECK(failures_seen == 1); /* size 0: no callback */
  CHECK(heap_caps_malloc(SIZE_MAX / 2, MALLOC_CAP_DEFAULT) == NULL);
  CHECK(failures_seen == 2);

  /* Without PSRAM there is no SPIRAM heap. */
  CHECK(heap_caps_get_total_size(MALLOC_CAP_SPIRAM) == 0);
  CHECK(heap_caps_malloc(16, MALLOC_CAP_SPIRAM) == NULL);

  /* calloc zero-fills; realloc keeps data when moving to other capabilities. */
  uint32_t *words = heap_caps_calloc(16, sizeof(uint32_t), MALLOC_CAP_8BIT);
  CHECK(words != NULL);
  for (int i = 0; i < 16; ++i)
    CHECK(words[i] == 0);
  for (int i = 0; i < 16; ++i)
    words[i] = (uint32_t)i * 7u;
  words = heap_caps_realloc(words, 200, MALLOC_CAP_INTERNAL | MALLOC_CAP_8BIT);
  CHECK(words != NULL);
  for (int i = 0; i < 16; ++i)
    CHECK(words[i] == (uint32_t)i * 7u);
  heap_caps_free(words);

  /* Aligned allocations. */
  for (size_t a = 1; a <= 1024; a *= 2) {
    void *p = heap_caps_aligned_alloc(a, 33, MALLOC_CAP_DEFAULT);
    CHECK(p != NULL && ((uintptr_t)p % a) == 0);
    heap_caps_free(p);
  }
  CHECK(heap_caps_aligned_alloc(3, 33, MALLOC_CAP_DEFAULT) == NULL);

  /* Queries agree with each other. */
  multi_heap_info_t info;
  heap_caps_get_info(&info, MALLOC_CAP_DEFAULT);
  CHECK(info.total_free_bytes == heap_caps_get_free_size(MALLOC_CAP_DEFAULT));
  CHECK(info.largest_free_block == heap_caps_get_largest_free_block(MALLOC_CAP_DEFAULT));
  void *largest = heap_caps_malloc(info.largest_free_block, MALLOC_CAP_DEFAULT);
  CHECK(largest != NULL);
  heap_caps_free(largest);
  CHECK(heap_caps_check_integrity_all(true));
  printf("esp_app: OK (DEFAULT free %u bytes, largest %u)\n", (unsigned)info.total_free_bytes,
         (unsigned)info.largest_free_block);
  return 0;
}
