/*
 * capheap_host.h — the host simulator: a chip's heaps, with their capabilities, inside a host
 * process (link capheap::host).
 *
 * On the host, the first heap_caps_* call initialises the chip named by the environment variable
 * CAPHEAP_CHIP (default "esp32"; a layout file path also works) unless the program called
 * capheap_host_init first. Each region of the chip is mapped at the chip's real address when that
 * address range is free in the process, so pointers equal the device's; otherwise it is mapped
 * anywhere and printed reports still show chip addresses. D/IRAM regions are mapped twice onto the
 * same memory, so data written through the instruction alias reads back through the data address.
 *
 * Environment (read by the automatic initialisation, and by capheap_host_init for fields the
 * config leaves at their "default" value):
 *   CAPHEAP_CHIP=esp32s3 | path/to/layout.json
 *   CAPHEAP_PSRAM=4M             external RAM size (K/M suffixes), 0 = none
 *   CAPHEAP_STATIC_DATA=64K      the application's static data carved from internal RAM
 *   CAPHEAP_POISONING=none|light|comprehensive
 *   CAPHEAP_CHIP_ADDRESSES=0     map regions anywhere (reports still print chip addresses)
 *   CAPHEAP_GRANULE=4|8|16       allocation granule (default 4, ESP-IDF's)
 *
 * Pure C (C99 and later), usable from C++.
 */
#ifndef CAPHEAP_HOST_H
#define CAPHEAP_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Heap poisoning level (honoured once the debugging features land; stored until then). */
typedef enum {
  CAPHEAP_POISONING_NONE = 0,
  CAPHEAP_POISONING_LIGHT = 1,
  CAPHEAP_POISONING_COMPREHENSIVE = 2,
} capheap_poisoning_t;

/* "Use the chip's default" for the size fields below. */
#define CAPHEAP_HOST_DEFAULT_SIZE ((size_t)-1)

typedef struct capheap_host_config {
  size_t psram_size;              /* bytes of external RAM; 0 = none; CAPHEAP_HOST_DEFAULT_SIZE = chip default */
  size_t static_data_size;        /* 0 or CAPHEAP_HOST_DEFAULT_SIZE = chip default */
  capheap_poisoning_t poisoning;  /* CAPHEAP_POISONING_NONE by default */
  bool chip_addresses;            /* map regions at the chip's addresses when free (default true) */
  size_t granule;                 /* 4 (default, ESP-IDF's), 8 or 16; 0 = default */
} capheap_host_config_t;

/* The defaults: chip-default sizes, no poisoning, chip addresses, granule 4. */
#define CAPHEAP_HOST_CONFIG_DEFAULT \
  { CAPHEAP_HOST_DEFAULT_SIZE, CAPHEAP_HOST_DEFAULT_SIZE, CAPHEAP_POISONING_NONE, true, 0 }

/* Builds the heaps of `chip_or_path` (a bundled chip name such as "esp32s3", or a layout JSON path;
 * NULL = CAPHEAP_CHIP or "esp32") with cfg (NULL = defaults and environment).
 * Returns ESP_OK; ESP_ERR_INVALID_STATE if already initialised (call capheap_host_deinit first);
 * ESP_ERR_NOT_FOUND if the chip or file is unknown (the reason is printed to stderr with file and
 * field); ESP_ERR_INVALID_ARG for a bad config value; ESP_ERR_NO_MEM if host memory could not be
 * mapped. Not thread-safe: call before other threads allocate. */
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
