/*
 * capheap_host.h — the host simulator: a chip's heaps, with their capabilities, inside a host
 * process (link capheap::host).
 *
 * On the host, the first heap_caps_* call initialises the chip named by the environment variable
 * CAPHEAP_CHIP (default "esp32"; a layout file path also works) unless the program called
 * capheap_host_init first; if that automatic initialisation fails, the reason is printed to stderr
 * and the program aborts (malloc has no way to report it).
 *
 * What initialisation builds is the heap list app code sees on a device:
 *   - heap_caps_init over the chip's layout (reserved ranges and static data subtracted);
 *   - with external RAM (psram_size > 0), what ESP-IDF's PSRAM driver does at startup with
 *     CONFIG_SPIRAM_USE_MALLOC: the PSRAM becomes a heap at the head of the list (memory type caps
 *     of the layout's ext_ram type), heap_caps_malloc_extmem_enable(extmem_threshold) sets the
 *     malloc() policy, and internal_reserve bytes of internal DMA RAM are set aside as in
 *     capheap_reserve_internal_pool (both values are the layout's options);
 *   - heap_caps_enable_nonos_stack_heaps: app code always runs after the scheduler started, when
 *     the startup-stack regions are heaps already.
 *
 * Addresses. Each region of the chip is mapped at the chip's real address when that address range
 * is free in the process (MAP_FIXED_NOREPLACE), so pointers equal the device's. If any range is not
 * free (or lies below vm.mmap_min_addr, e.g. a Cortex-M ITCM at 0), the whole chip is mapped
 * elsewhere with its relative layout kept — at a host address whose low 32 bits are the chip
 * address — and printed reports (heap_caps_print_heap_info, heap_caps_dump, integrity errors) still
 * show chip addresses; capheap_host_to_chip / capheap_host_from_chip translate.
 *
 * D/IRAM. Regions with an instruction-bus alias are mapped twice onto the same memory, so code
 * written through the instruction alias reads back through the data address (ESP32-S2/S3/C2/C3).
 * ESP32's D/IRAM is word-reversed between the buses (SOC_DIRAM_INVERTED), which page mappings
 * cannot reproduce: the alias addresses and the hidden word heap_caps stores before an EXEC
 * pointer are exactly the device's, but the instruction window has its own memory, so bytes
 * written through one bus are not visible through the other. Chips whose buses share one address
 * (ESP32-C6/H2/P4) need no alias. Memory protection (the layout's memprot option, on by default
 * where the chip has it) makes D/IRAM data-only, so EXEC allocations fail there as on a device.
 *
 * Environment (read by the automatic initialisation, and by capheap_host_init for fields the
 * config leaves at their "default" value; an empty variable counts as unset; a bad value is
 * reported as "capheap: bad NAME value 'VALUE': expected ..." and gives ESP_ERR_INVALID_ARG):
 *   CAPHEAP_CHIP=esp32s3 | path/to/layout.json
 *   CAPHEAP_PSRAM=4M             external RAM size: decimal or 0x hex bytes, optional K or M
 *                                suffix; 0 = none
 *   CAPHEAP_STATIC_DATA=64K      the application's static data carved from internal RAM (same
 *                                syntax)
 *   CAPHEAP_POISONING=none|light|comprehensive
 *   CAPHEAP_CHIP_ADDRESSES=0|1   0: map regions anywhere (reports still print chip addresses)
 *   CAPHEAP_GRANULE=4|8|16       allocation granule (default 4, ESP-IDF's)
 *   CAPHEAP_MEMPROT=0|1          memory protection (D/IRAM data-only) where the chip has it
 *   CAPHEAP_TASK_TRACKING=0|1    owner words in every heap and per-task statistics
 *                                (esp_heap_task_info.h)
 *   CAPHEAP_TRACE_FILE=path      record every heap_caps_* allocation and free of the run into this
 *                                file (capheap's trace format, docs/trace-format.md; created or
 *                                truncated; buffered, written every 60 KiB, at capheap_host_deinit
 *                                and at exit). A file that cannot be created is reported as
 *                                "capheap: cannot open CAPHEAP_TRACE_FILE 'path': REASON" and
 *                                gives ESP_ERR_INVALID_ARG. A write that fails later (disk
 *                                full) ends the file at the last complete line and is reported
 *                                on stderr when the file is closed ("capheap: CAPHEAP_TRACE_FILE
 *                                'path': write failed: REASON; the recording is incomplete").
 *                                The file is the recording process's own: a child of fork()
 *                                writes nothing to it (its events are discarded), so a program
 *                                that forks leaves a file with its run only (a child that
 *                                execs a program which reads the variable again records over
 *                                it, as any writer of the same path would).
 *                                See capheap_recorder.h.
 * Also read: CAPHEAP_LAYOUT_DIR (directories searched for CHIP.json before the bundled layouts,
 * docs/layouts.md section 1) and, when capheap::malloc is linked, CAPHEAP_MALLOC=0 (malloc and
 * operator new stay in glibc).
 *
 * Host-only (Linux: memfd_create, MAP_FIXED_NOREPLACE).
 * Pure C (C99 and later), usable from C++.
 */
#ifndef CAPHEAP_HOST_H
#define CAPHEAP_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "capheap.h"
#include "esp_err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Memory protection setting (0, the zero value, means the chip's default). */
typedef enum {
  CAPHEAP_MEMPROT_DEFAULT = 0, /* the chip's default, or CAPHEAP_MEMPROT from the environment */
  CAPHEAP_MEMPROT_ON = 1,
  CAPHEAP_MEMPROT_OFF = 2,
} capheap_memprot_t;

/* "Use the chip's default" for the size fields below. */
#define CAPHEAP_HOST_DEFAULT_SIZE ((size_t)-1)

typedef struct capheap_host_config {
  /* Bytes of external RAM (PSRAM); 0 = none; CAPHEAP_HOST_DEFAULT_SIZE = the chip's default. */
  size_t psram_size;
  size_t static_data_size;       /* 0 or CAPHEAP_HOST_DEFAULT_SIZE = chip default */
  capheap_poisoning_t poisoning; /* CAPHEAP_POISONING_NONE by default */
  bool chip_addresses;           /* map regions at the chip's addresses when free (default true) */
  size_t granule;                /* 4 (default, ESP-IDF's), 8 or 16; 0 = default */
  /* Memory protection (ESP32-S2/S3/C3 CONFIG_ESP_SYSTEM_MEMPROT_FEATURE, C6/H2/P4 PMP I/D split):
   * when on, D/IRAM is data-only and EXEC requests cannot use it. Chips without the feature reject
   * ON/OFF with ESP_ERR_INVALID_ARG. */
  capheap_memprot_t memory_protection;
  /* Owner words in every heap (esp_heap_task_info.h); false = CAPHEAP_TASK_TRACKING from the
   * environment ("1"/"0"), else off. */
  bool task_tracking;
} capheap_host_config_t;

/* The defaults: chip-default sizes, no poisoning, chip addresses, granule 4. */
#define CAPHEAP_HOST_CONFIG_DEFAULT                                                        \
  {                                                                                        \
    CAPHEAP_HOST_DEFAULT_SIZE, CAPHEAP_HOST_DEFAULT_SIZE, CAPHEAP_POISONING_NONE, true, 0, \
        CAPHEAP_MEMPROT_DEFAULT, false                                                     \
  }

/* Builds the heaps of `chip_or_path` (a bundled chip name such as "esp32s3", or a layout JSON path;
 * NULL = CAPHEAP_CHIP or "esp32") with cfg (NULL = defaults and environment).
 * Returns ESP_OK; ESP_ERR_INVALID_STATE if already initialised (call capheap_host_deinit first) or
 * if heap_caps_init already ran without the simulator; ESP_ERR_NOT_FOUND if the chip or file is
 * unknown or the file is invalid (the reason is printed to stderr with file and field);
 * ESP_ERR_INVALID_ARG for a bad config or environment value, or an option the chip rejects (more
 * PSRAM than its window, PSRAM on a chip without external RAM; the layout loader's message is
 * printed); ESP_ERR_NO_MEM if host memory could not be mapped, the internal DMA reserve does not
 * fit or the layout yields more heaps than CAPHEAP_MAX_HEAPS. On failure nothing stays initialised
 * or mapped.
 * Not thread-safe: call before other threads allocate. */
esp_err_t capheap_host_init(const char *chip_or_path, const capheap_host_config_t *cfg);

/* Releases every heap and mapping and forgets all heap_caps state; the next heap_caps_* call (or
 * capheap_host_init) starts afresh. Every pointer into the simulated chip becomes invalid. */
void capheap_host_deinit(void);

/* The chip in use ("esp32", ...) or NULL before initialisation. */
const char *capheap_host_chip(void);

/* True if every region is mapped at its chip address. */
bool capheap_host_uses_chip_addresses(void);

/* Translates between host pointers and chip addresses (identity when regions sit at chip
 * addresses). Returns 0 / NULL for addresses outside the simulated chip. */
uintptr_t capheap_host_to_chip(const void *host_ptr);
void *capheap_host_from_chip(uintptr_t chip_address);

#ifdef __cplusplus
}
#endif

#endif /* CAPHEAP_HOST_H */
