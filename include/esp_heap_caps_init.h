/*
 * esp_heap_caps_init.h — ESP-IDF's heap initialisation and run-time region API, implemented by
 * capheap. Pure C (C99 and later), usable from C++.
 */
#ifndef ESP_HEAP_CAPS_INIT_H
#define ESP_HEAP_CAPS_INIT_H

#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"
#include "esp_heap_caps.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Builds every heap from the chip layout given to capheap_set_layout (capheap.h): reserved ranges
 * are subtracted (each widened to 4-byte boundaries; a range inside a region splits it; pieces of
 * 16 bytes or less are dropped), adjacent pieces of the same type are merged into one heap, and
 * startup-stack regions are left unregistered until heap_caps_enable_nonos_stack_heaps. Call once,
 * before any other heap_caps function and before other threads run; it runs once: a later call
 * (or the call after a heap_caps_* call that already initialised from the layout) changes
 * nothing, so no heap is duplicated or rebuilt over live blocks (ESP-IDF: never call it again).
 * On the host the simulator calls it (capheap_host.h). */
void heap_caps_init(void);

/* Registers the heaps of startup-stack regions once those stacks are no longer used. Idempotent. */
void heap_caps_enable_nonos_stack_heaps(void);

/* Adds [start, end) as a heap with the capabilities of the memory type of the layout region
 * containing start or, outside every region, of the layout's external RAM window (ext_ram_start,
 * ext_ram_max_size, ext_ram_type: how PSRAM or SDRAM is added once it is up).
 * Returns ESP_ERR_INVALID_ARG if start is 0, ESP_ERR_NOT_FOUND if start is in no layout region and
 * not in the external RAM window, otherwise what heap_caps_add_region_with_caps returns. The memory
 * must be unused. */
esp_err_t heap_caps_add_region(intptr_t start, intptr_t end);

/* Adds [start, end) as a heap with the three priority masks caps[0..2] (copied; the array need not
 * outlive the call). The new heap goes to the head of the heap list, so it is tried before boot
 * heaps at the same priority.
 * Returns ESP_ERR_INVALID_ARG if caps is NULL, start or end is 0, or end <= start (compared as the
 * signed intptr_t values, as ESP-IDF does: a negative end is below a positive start); ESP_FAIL if
 * the range straddles the start or end of an existing heap or equals an existing heap's range (a
 * range strictly inside an existing heap is allowed: it turns an allocated buffer into a heap);
 * ESP_ERR_NO_MEM if the heap table is full (CAPHEAP_MAX_HEAPS heaps, default 64) or
 * heap_caps_init has not run yet (no heap exists: ESP-IDF takes the new heap's descriptor from an
 * INTERNAL|8BIT heap);
 * ESP_ERR_INVALID_SIZE if the range is too small for a heap or start is not 4-byte aligned (as
 * ESP-IDF's TLSF refuses such a pool). Checked in that order; on failure nothing is added.
 * Thread-safe (allocations may run meanwhile); not ISR-safe. */
esp_err_t heap_caps_add_region_with_caps(const uint32_t caps[], intptr_t start, intptr_t end);

#ifdef __cplusplus
}
#endif

#endif /* ESP_HEAP_CAPS_INIT_H */
