/*
 * capheap_layout.h — a chip's memory as data: memory types with three priority levels of
 * capabilities, regions, reserved ranges and hardware alignment facts.
 *
 * The host simulator builds one of these from a JSON file in layouts/ (docs/layouts.md); firmware
 * builds compile the same data into constant tables (tools generate them from the JSON) and hand
 * it to heap_caps_init through capheap_set_layout. The structures mirror ESP-IDF's
 * soc_memory_types / soc_memory_regions / SOC_RESERVE_MEMORY_REGION idea in capheap's own form.
 *
 * Pure C (C99 and later), usable from C++.
 */
#ifndef CAPHEAP_LAYOUT_H
#define CAPHEAP_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Number of capability priority levels per memory type (ESP-IDF's SOC_MEMORY_TYPE_NO_PRIOS). */
#define CAPHEAP_PRIORITY_LEVELS 3

/* A kind of memory: a name ("DRAM", "D/IRAM", "SPIRAM", ...) and its MALLOC_CAP_* masks per
 * priority level (level 0 is tried first). */
typedef struct capheap_memory_type {
  const char *name;
  uint32_t caps[CAPHEAP_PRIORITY_LEVELS];
} capheap_memory_type_t;

/* One contiguous range of a memory type, in the chip's data-bus addresses. */
typedef struct capheap_memory_region {
  uintptr_t start; /* data-bus start address */
  size_t size;     /* bytes */
  uint16_t type;   /* index into capheap_layout_t.types */
  bool
      startup_stack; /* in use as startup stack: registered by heap_caps_enable_nonos_stack_heaps */
  /* Instruction-bus alias of `start` (D/IRAM), 0 (or `start` itself) if none. The caps layer
   * takes every address from the lowest alias to the end of the highest for an alias: no region
   * and no external RAM may lie there (the layout loader refuses such files). */
  uintptr_t iram_address;
} capheap_memory_region_t;

/* A range that is never part of a heap (ROM data, static data, caches, trace memory, ...).
 * Reserved ranges are subtracted from the regions before heaps are built. */
typedef struct capheap_reserved_range {
  uintptr_t start;
  uintptr_t end; /* exclusive */
  const char *name;
} capheap_reserved_range_t;

/* Hardware facts that steer allocation. Zero means "no requirement". */
typedef struct capheap_hw_alignment {
  uint32_t dma_internal;   /* alignment (address and size) for MALLOC_CAP_DMA in internal RAM */
  uint32_t cache_line_ext; /* cache line of external memory (PSRAM): CACHE_ALIGNED / DMA|SPIRAM */
  uint32_t cache_line_int; /* cache line in front of internal RAM (L2-cached chips), else 0 */
  uint32_t simd;           /* preferred alignment for MALLOC_CAP_SIMD */
  uint32_t dma_desc_axi;   /* minimum alignment of AXI DMA descriptors (8 when present) */
} capheap_hw_alignment_t;

/* A complete chip model. */
typedef struct capheap_layout {
  const char *chip; /* "esp32", "esp32s3", "stm32h743", ... */
  const capheap_memory_type_t *types;
  size_t type_count;
  const capheap_memory_region_t *regions; /* in table order: the boot heaps' list order */
  size_t region_count;
  const capheap_reserved_range_t *reserved;
  size_t reserved_count;
  capheap_hw_alignment_t align;
  /* Instruction and data buses see D/IRAM in reverse order (ESP32: SOC_DIRAM_INVERTED). */
  bool diram_inverted;
  /* Bounds of the D/IRAM windows (both buses) used to translate aliases; 0 when unused. With
   * diram_inverted the word at data address d is the word at instruction address
   * diram_iram_high - 4 - (d - diram_dram_low); otherwise a region's data address d is
   * iram_address + (d - start). */
  uintptr_t diram_dram_low, diram_dram_high, diram_iram_low, diram_iram_high;
  /* External RAM (PSRAM): where it appears and its memory type. It is not in `regions`: like
   * ESP-IDF's PSRAM driver, the host simulator adds it at run time with
   * heap_caps_add_region_with_caps, so it goes to the head of the heap list. */
  uintptr_t ext_ram_start;
  size_t ext_ram_max_size;
  int ext_ram_type; /* index into types, or -1 if the chip has no external RAM */
} capheap_layout_t;

#ifdef __cplusplus
}
#endif

#endif /* CAPHEAP_LAYOUT_H */
