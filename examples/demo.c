/*
 * demo.c — what `make demo` runs: ESP-IDF heap code, unmodified, on capheap's simulated ESP32
 * with 4 MiB of PSRAM. Written only against ESP-IDF's headers plus capheap_host.h for setup.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "capheap.h"
#include "capheap_host.h"
#include "esp_heap_caps.h"

static void on_alloc_failed(size_t size, uint32_t caps, const char *function_name) {
  char why[200];
  capheap_describe_alloc_failure(size, caps, why, sizeof why);
  printf("  ! %s failed: %s\n", function_name, why);
}

static void show(const char *what, const void *p) {
  printf("  %-44s %p  (allocated size %u)\n", what, p,
         p ? (unsigned)heap_caps_get_allocated_size((void *)p) : 0u);
}

int main(void) {
  capheap_host_config_t cfg = CAPHEAP_HOST_CONFIG_DEFAULT;
  cfg.psram_size = 4u << 20;
  if (capheap_host_init("esp32", &cfg) != ESP_OK) return 1;
  heap_caps_register_failed_alloc_callback(on_alloc_failed);
  printf("capheap demo: the ESP32 model (%s addresses) with 4 MiB PSRAM\n\n",
         capheap_host_uses_chip_addresses() ? "real chip" : "relocated");

  heap_caps_print_heap_info(MALLOC_CAP_DEFAULT);

  printf("\nAllocations by capability:\n");
  void *dma = heap_caps_malloc(1536, MALLOC_CAP_DMA);
  show("1536 B DMA-capable buffer (internal DRAM)", dma);

  /* EXEC memory comes from IRAM first. Fill IRAM so that the next EXEC request is served from
   * D/IRAM through the instruction bus (0x400A0000..0x400C0000 on the ESP32), with a hidden word
   * before it that leads heap_caps_free back to the data-bus block. */
  static void *iram_fill[1024];
  size_t filled = 0;
  uint32_t *code = NULL;
  while (filled < 1024) {
    void *p = heap_caps_malloc(256, MALLOC_CAP_EXEC);
    if (p == NULL || (uintptr_t)p >= 0x400A0000u) {
      code = p;
      break;
    }
    iram_fill[filled++] = p;
  }
  printf("  (%u EXEC blocks of 256 B filled IRAM first)\n", (unsigned)filled);
  show("256 B EXEC buffer via D/IRAM (instruction bus)", code);
  if (code != NULL) code[0] = 0x004136u; /* an Xtensa `entry a1, 32`, stored as 32-bit words */

  void *psram = heap_caps_malloc(1024 * 1024, MALLOC_CAP_SPIRAM);
  show("1 MiB frame buffer in PSRAM", psram);
  /* heap_caps_malloc_default is what malloc() calls (link capheap::malloc to route libc's malloc).
   */
  void *big = heap_caps_malloc_default(64 * 1024);
  show("malloc(64 KiB): above the 16 KiB threshold: PSRAM", big);
  void *small = heap_caps_malloc_default(100);
  show("malloc(100): internal RAM first", small);

  printf("\nA request the chip cannot serve:\n");
  void *impossible = heap_caps_malloc(200 * 1024, MALLOC_CAP_DMA);
  void *bad_combo = heap_caps_malloc(64, MALLOC_CAP_EXEC | MALLOC_CAP_8BIT);

  printf("\n");
  heap_caps_print_heap_info(MALLOC_CAP_DEFAULT);

  heap_caps_free(small);
  heap_caps_free(big);
  heap_caps_free(psram);
  heap_caps_free(code);
  for (size_t i = 0; i < filled; ++i)
    heap_caps_free(iram_fill[i]);
  heap_caps_free(dma);
  int ok = dma && code && psram && big && small && !impossible && !bad_combo &&
           heap_caps_check_integrity_all(true);
  printf("\nintegrity after freeing everything: %s\n", ok ? "OK" : "FAILED");
  capheap_host_deinit();
  return ok ? 0 : 1;
}
