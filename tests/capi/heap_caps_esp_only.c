/*
 * heap_caps_esp_only.c — application code written only against ESP-IDF's heap headers.
 *
 * This file includes nothing from capheap but ESP-IDF's own public header names
 * (esp_heap_caps.h, esp_heap_caps_init.h) and uses only ESP-IDF's functions and MALLOC_CAP_*
 * flags, the way an ESP-IDF component would. It is compiled as strict ISO C11 with -Wall -Wextra
 * -Werror and linked, unmodified, against capheap's host simulator by heap_caps_chip_test.cpp.
 *
 * Each exported function is one scenario in the spirit of ESP-IDF's on-target heap tests (spec
 * §6.2), written from scratch: it returns 0 when every step behaved as on a device, otherwise the
 * number of the first failing step (documented next to each function), so the C++ test can check
 * the exact result and name the step that failed.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "esp_heap_caps.h"
#include "esp_heap_caps_init.h"

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
_Static_assert(MALLOC_CAP_EXEC == 0x1 && MALLOC_CAP_DEFAULT == 0x1000, "ESP-IDF flag values");
_Static_assert(sizeof(walker_block_info_t) >= sizeof(void *) + sizeof(size_t), "walker block info");
#endif

/* A capability bit no ESP-IDF memory has (ESP-IDF's own runtime-heap test invents bit 30 too). */
#define MY_INVENTED_CAP (1u << 30)

/* ---- Prototypes (heap_caps_chip_test.cpp declares the same with extern "C") ----------------- */

esp_err_t esp_only_install_failure_recorder(void);
void esp_only_reset_failures(void);
int esp_only_failure_count(void);
size_t esp_only_last_failure_size(void);
uint32_t esp_only_last_failure_caps(void);
const char *esp_only_last_failure_function(void);

int esp_only_register_null_callback_is_rejected(void);
int esp_only_alloc_free_restores(size_t size, uint32_t caps);
int esp_only_impossible_exec_combinations(void);
int esp_only_invalid_and_zero_caps(void);
int esp_only_zero_sizes_do_not_call_back(void);
int esp_only_calloc_zero_fills(size_t n, size_t size, uint32_t caps);
int esp_only_calloc_overflow_and_quirk(void);
int esp_only_aligned_alloc_sweep(uint32_t caps, size_t max_alignment, size_t *allocated);
int esp_only_allocated_size_is_exact(uint32_t caps, size_t max_size);
int esp_only_realloc_chain(const uint32_t *caps, size_t steps, size_t size, uintptr_t *addrs);
int esp_only_realloc_failure_keeps_block(uint32_t caps);
int esp_only_custom_capability_heap(size_t buf_size, uintptr_t *heap_start);
int esp_only_add_region_argument_errors(void);
int esp_only_queries_agree(uint32_t caps);
int esp_only_walk_tally(uint32_t caps, size_t *heaps, size_t *used, size_t *free_blocks);
int esp_only_monitor_local_minimum(uint32_t caps);
void *esp_only_malloc_prefer2(size_t size, uint32_t first, uint32_t second);
void *esp_only_calloc_prefer2(size_t n, size_t size, uint32_t first, uint32_t second);
void *esp_only_realloc_prefer2(void *ptr, size_t size, uint32_t first, uint32_t second);
void esp_only_print_and_dump(uint32_t caps);

/* ---- The failed-allocation callback ----------------------------------------------------------
 */

static int s_fail_count;
static size_t s_fail_size;
static uint32_t s_fail_caps;
static char s_fail_function[64];

static void record_alloc_failure(size_t size, uint32_t caps, const char *function_name) {
  size_t n = 0;
  s_fail_count++;
  s_fail_size = size;
  s_fail_caps = caps;
  if (function_name != NULL) {
    n = strlen(function_name);
    if (n >= sizeof s_fail_function) n = sizeof s_fail_function - 1;
    memcpy(s_fail_function, function_name, n);
  }
  s_fail_function[n] = '\0';
}

esp_err_t esp_only_install_failure_recorder(void) {
  esp_only_reset_failures();
  return heap_caps_register_failed_alloc_callback(record_alloc_failure);
}

void esp_only_reset_failures(void) {
  s_fail_count = 0;
  s_fail_size = 0;
  s_fail_caps = 0;
  s_fail_function[0] = '\0';
}

int esp_only_failure_count(void) {
  return s_fail_count;
}
size_t esp_only_last_failure_size(void) {
  return s_fail_size;
}
uint32_t esp_only_last_failure_caps(void) {
  return s_fail_caps;
}
const char *esp_only_last_failure_function(void) {
  return s_fail_function;
}

/* True if exactly one failure was recorded since the last reset, with these arguments. */
static bool one_failure(size_t size, uint32_t caps, const char *function_name) {
  return s_fail_count == 1 && s_fail_size == size && s_fail_caps == caps &&
         strcmp(s_fail_function, function_name) == 0;
}

static bool bytes_are(const unsigned char *p, size_t n, unsigned char v) {
  size_t i;
  for (i = 0; i < n; ++i)
    if (p[i] != v) return false;
  return true;
}

static bool pattern_ok(const unsigned char *p, size_t n, unsigned seed) {
  size_t i;
  for (i = 0; i < n; ++i)
    if (p[i] != (unsigned char)(seed + i * 7u)) return false;
  return true;
}

static void fill_pattern(unsigned char *p, size_t n, unsigned seed) {
  size_t i;
  for (i = 0; i < n; ++i)
    p[i] = (unsigned char)(seed + i * 7u);
}

/* ---- Scenarios --------------------------------------------------------------------------------
 */

/* heap_caps_register_failed_alloc_callback(NULL) is refused and leaves the recorder installed.
 * 1: NULL not ESP_ERR_INVALID_ARG; 2: the recorder was replaced. */
int esp_only_register_null_callback_is_rejected(void) {
  void *p;
  if (heap_caps_register_failed_alloc_callback(NULL) != ESP_ERR_INVALID_ARG) return 1;
  esp_only_reset_failures();
  p = heap_caps_malloc(8, MALLOC_CAP_EXEC | MALLOC_CAP_8BIT);
  if (p != NULL || !one_failure(8, MALLOC_CAP_EXEC | MALLOC_CAP_8BIT, "heap_caps_malloc")) return 2;
  return 0;
}

/* "Allocate, see the free size drop, free, see it restored": 1 NULL; 2 free size did not drop by
 * at least `size`; 3 allocated size below size; 4 free size not restored; 5 integrity check
 * failed; 6 a failure was reported. */
int esp_only_alloc_free_restores(size_t size, uint32_t caps) {
  const size_t before = heap_caps_get_free_size(caps);
  unsigned char *p;
  esp_only_reset_failures();
  p = (unsigned char *)heap_caps_malloc(size, caps);
  if (p == NULL) return 1;
  if (heap_caps_get_free_size(caps) + size > before) return 2;
  if (heap_caps_get_allocated_size(p) < size) return 3;
  memset(p, 0x5A, size);
  heap_caps_free(p);
  if (heap_caps_get_free_size(caps) != before) return 4;
  if (!heap_caps_check_integrity_all(true)) return 5;
  if (s_fail_count != 0) return 6;
  return 0;
}

/* Executable memory is never byte-accessible or DMA-capable (spec §3.3): each impossible request
 * returns NULL and runs the callback once with the caller's size, caps and "heap_caps_malloc".
 * 1/2: EXEC|8BIT; 3/4: EXEC|DMA; 5/6: EXEC|8BIT|INTERNAL through heap_caps_calloc (callback gets
 * n * size and "heap_caps_calloc"); 7/8: heap_caps_realloc(NULL, ...) with EXEC|DMA. */
int esp_only_impossible_exec_combinations(void) {
  void *p;
  esp_only_reset_failures();
  p = heap_caps_malloc(100, MALLOC_CAP_EXEC | MALLOC_CAP_8BIT);
  if (p != NULL) return 1;
  if (!one_failure(100, MALLOC_CAP_EXEC | MALLOC_CAP_8BIT, "heap_caps_malloc")) return 2;
  esp_only_reset_failures();
  p = heap_caps_malloc(64, MALLOC_CAP_EXEC | MALLOC_CAP_DMA);
  if (p != NULL) return 3;
  if (!one_failure(64, MALLOC_CAP_EXEC | MALLOC_CAP_DMA, "heap_caps_malloc")) return 4;
  esp_only_reset_failures();
  p = heap_caps_calloc(4, 10, MALLOC_CAP_EXEC | MALLOC_CAP_8BIT | MALLOC_CAP_INTERNAL);
  if (p != NULL) return 5;
  if (!one_failure(40, MALLOC_CAP_EXEC | MALLOC_CAP_8BIT | MALLOC_CAP_INTERNAL, "heap_caps_calloc"))
    return 6;
  esp_only_reset_failures();
  p = heap_caps_realloc(NULL, 32, MALLOC_CAP_EXEC | MALLOC_CAP_DMA);
  if (p != NULL) return 7;
  if (!one_failure(32, MALLOC_CAP_EXEC | MALLOC_CAP_DMA, "heap_caps_realloc")) return 8;
  return 0;
}

/* caps 0 matches no heap when allocating, MALLOC_CAP_INVALID is refused; both run the callback
 * (spec §1.1). 1/2: caps 0; 3/4: INVALID; 5/6: INVALID|8BIT; 7: but queries with caps 0 see every
 * heap (total size > 0) and with INVALID none (0). */
int esp_only_invalid_and_zero_caps(void) {
  void *p;
  esp_only_reset_failures();
  p = heap_caps_malloc(10, 0);
  if (p != NULL) return 1;
  if (!one_failure(10, 0, "heap_caps_malloc")) return 2;
  esp_only_reset_failures();
  p = heap_caps_malloc(10, MALLOC_CAP_INVALID);
  if (p != NULL) return 3;
  if (!one_failure(10, MALLOC_CAP_INVALID, "heap_caps_malloc")) return 4;
  esp_only_reset_failures();
  p = heap_caps_malloc(10, MALLOC_CAP_INVALID | MALLOC_CAP_8BIT);
  if (p != NULL) return 5;
  if (!one_failure(10, MALLOC_CAP_INVALID | MALLOC_CAP_8BIT, "heap_caps_malloc")) return 6;
  if (heap_caps_get_total_size(0) == 0 || heap_caps_get_total_size(MALLOC_CAP_INVALID) != 0)
    return 7;
  return 0;
}

/* "malloc/calloc(0) should not call the failure callback" and friends: every zero-size request
 * returns NULL without a callback. Step n returns n. */
int esp_only_zero_sizes_do_not_call_back(void) {
  void *keep;
  esp_only_reset_failures();
  if (heap_caps_malloc(0, MALLOC_CAP_8BIT) != NULL) return 1;
  if (heap_caps_malloc(0, MALLOC_CAP_EXEC | MALLOC_CAP_8BIT) != NULL) return 2;
  if (heap_caps_calloc(1, 0, MALLOC_CAP_8BIT) != NULL) return 3;
  if (heap_caps_calloc(0, 0, MALLOC_CAP_8BIT) != NULL) return 4;
  if (heap_caps_realloc(NULL, 0, MALLOC_CAP_8BIT) != NULL) return 5;
  if (heap_caps_aligned_alloc(16, 0, MALLOC_CAP_8BIT) != NULL) return 6;
  if (heap_caps_aligned_calloc(16, 0, 8, MALLOC_CAP_8BIT) != NULL) return 7;
  if (heap_caps_malloc_prefer(0, 2, MALLOC_CAP_8BIT, MALLOC_CAP_DEFAULT) != NULL) return 8;
  keep = heap_caps_malloc(24, MALLOC_CAP_8BIT);
  if (keep == NULL) return 9;
  if (heap_caps_realloc(keep, 0, MALLOC_CAP_8BIT) != NULL) return 10; /* frees it */
  if (s_fail_count != 0) return 11;
  return 0;
}

/* calloc returns zeroed memory even where a dirty block was just freed. 1: malloc failed; 2: calloc
 * failed; 3: not zero; 4: callback ran. */
int esp_only_calloc_zero_fills(size_t n, size_t size, uint32_t caps) {
  unsigned char *dirty, *clean;
  esp_only_reset_failures();
  dirty = (unsigned char *)heap_caps_malloc(n * size, caps);
  if (dirty == NULL) return 1;
  memset(dirty, 0xA5, n * size);
  heap_caps_free(dirty);
  clean = (unsigned char *)heap_caps_calloc(n, size, caps);
  if (clean == NULL) return 2;
  if (!bytes_are(clean, n * size, 0)) {
    heap_caps_free(clean);
    return 3;
  }
  heap_caps_free(clean);
  if (s_fail_count != 0) return 4;
  return 0;
}

/* 1: n * size overflow returns NULL; 2: heap_caps_calloc still runs the callback once, with the
 * wrapped n * size (its failure report tests only `size > 0`, spec §1.1); 3:
 * heap_caps_aligned_calloc returns before allocating, without a callback; 4/5: calloc(0, 8) returns
 * NULL and still runs the callback with n * size = 0 (ESP-IDF code tests `size > 0`, spec §1.1). */
int esp_only_calloc_overflow_and_quirk(void) {
  const size_t half = ((size_t)-1) / 2 + 2;
  esp_only_reset_failures();
  if (heap_caps_calloc(half, 2, MALLOC_CAP_8BIT) != NULL) return 1;
  if (!one_failure((size_t)(half * 2u), MALLOC_CAP_8BIT, "heap_caps_calloc")) return 2;
  esp_only_reset_failures();
  if (heap_caps_aligned_calloc(8, half, 4, MALLOC_CAP_8BIT) != NULL || s_fail_count != 0) return 3;
  if (heap_caps_calloc(0, 8, MALLOC_CAP_8BIT) != NULL) return 4;
  if (!one_failure(0, MALLOC_CAP_8BIT, "heap_caps_calloc")) return 5;
  return 0;
}

/* "Capabilities aligned allocator test": every alignment 0..max_alignment. Non-powers of two and 0
 * return NULL without a callback; powers of two return a block aligned to them that can be written
 * in full and freed; the free size is restored afterwards. Returns 0, or alignment * 16 + step
 * (step 1: bad alignment not refused; 2: callback for a bad alignment; 3: NULL; 4: misaligned;
 * 5: allocated size below the request; 6: aligned_calloc not zeroed / NULL; 7: free size not
 * restored at the end). *allocated counts the successful allocations. */
int esp_only_aligned_alloc_sweep(uint32_t caps, size_t max_alignment, size_t *allocated) {
  const size_t before = heap_caps_get_free_size(caps);
  size_t a;
  *allocated = 0;
  esp_only_reset_failures();
  for (a = 0; a <= max_alignment; ++a) {
    const bool pow2 = a != 0 && (a & (a - 1)) == 0;
    const size_t size = 10 + a / 2;
    unsigned char *p = (unsigned char *)heap_caps_aligned_alloc(a, size, caps);
    if (!pow2) {
      if (p != NULL) return (int)(a * 16 + 1);
      if (s_fail_count != 0) return (int)(a * 16 + 2);
      continue;
    }
    if (p == NULL) return (int)(a * 16 + 3);
    if (((uintptr_t)p & (a - 1)) != 0) return (int)(a * 16 + 4);
    if (heap_caps_get_allocated_size(p) < size) return (int)(a * 16 + 5);
    memset(p, 0xEE, size);
    heap_caps_aligned_free(p);
    ++*allocated;
    p = (unsigned char *)heap_caps_aligned_calloc(a, 3, size, caps);
    if (p == NULL || ((uintptr_t)p & (a - 1)) != 0 || !bytes_are(p, 3 * size, 0))
      return (int)(a * 16 + 6);
    heap_caps_free(p);
    ++*allocated;
  }
  if (heap_caps_get_free_size(caps) != before) return (int)(max_alignment * 16 + 7);
  return 0;
}

/* "test get allocated size": on a fresh heap the usable size of a request of s bytes is
 * max(12, s rounded up to 4) (TLSF's adjustment: 4-byte granule, 12-byte minimum block).
 * Returns 0 or the first size whose figure differs. */
int esp_only_allocated_size_is_exact(uint32_t caps, size_t max_size) {
  size_t s;
  for (s = 1; s <= max_size; ++s) {
    void *p = heap_caps_malloc(s, caps);
    size_t want = (s + 3) & ~(size_t)3;
    if (want < 12) want = 12;
    if (p == NULL) return (int)s;
    if (heap_caps_get_allocated_size(p) != want) {
      heap_caps_free(p);
      return (int)s;
    }
    heap_caps_free(p);
  }
  return 0;
}

/* "realloc move data to a new heap type": allocates `size` bytes with caps[0], writes a pattern,
 * then reallocates with caps[1], caps[2], ... keeping the size; after each step the pattern must
 * be intact. addrs[i] receives the pointer after step i. Everything is freed at the end.
 * Returns 0, or 100 * step + (1: NULL, 2: content lost, 3: integrity check failed). */
int esp_only_realloc_chain(const uint32_t *caps, size_t steps, size_t size, uintptr_t *addrs) {
  unsigned char *p = (unsigned char *)heap_caps_malloc(size, caps[0]);
  size_t i;
  if (p == NULL) return 1;
  addrs[0] = (uintptr_t)p;
  fill_pattern(p, size, 0x21);
  for (i = 1; i < steps; ++i) {
    unsigned char *q = (unsigned char *)heap_caps_realloc(p, size, caps[i]);
    if (q == NULL) {
      heap_caps_free(p);
      return (int)(100 * i + 1);
    }
    p = q;
    addrs[i] = (uintptr_t)p;
    if (!pattern_ok(p, size, 0x21)) {
      heap_caps_free(p);
      return (int)(100 * i + 2);
    }
    if (!heap_caps_check_integrity_all(true)) {
      heap_caps_free(p);
      return (int)(100 * i + 3);
    }
  }
  heap_caps_free(p);
  return 0;
}

/* A realloc that cannot be satisfied returns NULL, runs the callback once with the new size, caps
 * and "heap_caps_realloc", and leaves the block and its content untouched. 1: setup; 2: not NULL;
 * 3: callback; 4: content; 5: allocated size changed. */
int esp_only_realloc_failure_keeps_block(uint32_t caps) {
  const size_t huge = heap_caps_get_total_size(0) + 4096;
  unsigned char *p = (unsigned char *)heap_caps_malloc(100, caps);
  size_t usable;
  if (p == NULL) return 1;
  usable = heap_caps_get_allocated_size(p);
  fill_pattern(p, 100, 3);
  esp_only_reset_failures();
  if (heap_caps_realloc(p, huge, caps) != NULL) return 2;
  if (!one_failure(huge, caps, "heap_caps_realloc")) return 3;
  if (!pattern_ok(p, 100, 3)) return 4;
  if (heap_caps_get_allocated_size(p) != usable) return 5;
  heap_caps_free(p);
  return 0;
}

/* "Allocate new heap with new capability": no memory has MY_INVENTED_CAP (NULL + callback), a
 * buffer taken from 8-bit memory becomes a heap with only that capability, which then serves it
 * and nothing else. *heap_start receives the buffer. Steps: 1/2 NULL + callback before; 3 buffer;
 * 4 add_region_with_caps; 5 allocation NULL; 6 allocation outside the buffer; 7 INVENTED|8BIT not
 * refused; 8 total size; 9 free size; 10 free size not restored; 11 integrity; 12 add the same
 * range again not ESP_FAIL. */
int esp_only_custom_capability_heap(size_t buf_size, uintptr_t *heap_start) {
  uint32_t caps[3] = {MY_INVENTED_CAP, 0, 0};
  unsigned char *buf, *p;
  size_t free_after_add;
  esp_only_reset_failures();
  if (heap_caps_malloc(32, MY_INVENTED_CAP) != NULL) return 1;
  if (!one_failure(32, MY_INVENTED_CAP, "heap_caps_malloc")) return 2;
  buf = (unsigned char *)heap_caps_malloc(buf_size, MALLOC_CAP_8BIT);
  if (buf == NULL) return 3;
  *heap_start = (uintptr_t)buf;
  if (heap_caps_add_region_with_caps(caps, (intptr_t)buf, (intptr_t)(buf + buf_size)) != ESP_OK)
    return 4;
  caps[0] = 0; /* the registry copied the array: changing ours must not matter */
  free_after_add = heap_caps_get_free_size(MY_INVENTED_CAP);
  p = (unsigned char *)heap_caps_malloc(64, MY_INVENTED_CAP);
  if (p == NULL) return 5;
  if (p < buf || p + 64 > buf + buf_size) return 6;
  memset(p, 0x3C, 64);
  if (heap_caps_malloc(8, MY_INVENTED_CAP | MALLOC_CAP_8BIT) != NULL) return 7;
  if (heap_caps_get_total_size(MY_INVENTED_CAP) != buf_size) return 8;
  if (free_after_add == 0 || free_after_add >= buf_size) return 9;
  heap_caps_free(p);
  if (heap_caps_get_free_size(MY_INVENTED_CAP) != free_after_add) return 10;
  if (!heap_caps_check_integrity_all(true)) return 11;
  caps[0] = MY_INVENTED_CAP;
  if (heap_caps_add_region_with_caps(caps, (intptr_t)buf, (intptr_t)(buf + buf_size)) != ESP_FAIL)
    return 12;
  return 0;
}

/* heap_caps_add_region(_with_caps) argument checks (spec §1.2). Step n returns n. */
int esp_only_add_region_argument_errors(void) {
  const uint32_t caps[3] = {MALLOC_CAP_8BIT, 0, 0};
  static uint32_t not_chip_memory[64];
  const intptr_t s = (intptr_t)not_chip_memory;
  if (heap_caps_add_region(0, 4096) != ESP_ERR_INVALID_ARG) return 1;
  if (heap_caps_add_region_with_caps(NULL, s, s + 256) != ESP_ERR_INVALID_ARG) return 2;
  if (heap_caps_add_region_with_caps(caps, 0, 256) != ESP_ERR_INVALID_ARG) return 3;
  if (heap_caps_add_region_with_caps(caps, s, 0) != ESP_ERR_INVALID_ARG) return 4;
  if (heap_caps_add_region_with_caps(caps, s, s) != ESP_ERR_INVALID_ARG) return 5;
  if (heap_caps_add_region_with_caps(caps, s + 64, s) != ESP_ERR_INVALID_ARG) return 6;
  /* This process's own static memory lies in no region of the chip. */
  if (heap_caps_add_region(s, s + (intptr_t)sizeof not_chip_memory) != ESP_ERR_NOT_FOUND) return 7;
  return 0;
}

/* Every query agrees with heap_caps_get_info for `caps`. Step n returns n. */
int esp_only_queries_agree(uint32_t caps) {
  multi_heap_info_t info;
  memset(&info, 0xFF, sizeof info);
  heap_caps_get_info(&info, caps);
  if (info.total_free_bytes != heap_caps_get_free_size(caps)) return 1;
  if (info.minimum_free_bytes != heap_caps_get_minimum_free_size(caps)) return 2;
  if (info.largest_free_block != heap_caps_get_largest_free_block(caps)) return 3;
  if (info.allocated_blocks + info.free_blocks != info.total_blocks) return 4;
  if (info.total_free_bytes > heap_caps_get_total_size(caps)) return 5;
  if (info.largest_free_block > info.total_free_bytes) return 6;
  if (info.minimum_free_bytes > info.total_free_bytes) return 7;
  if (!heap_caps_check_integrity(caps, true)) return 8;
  return 0;
}

typedef struct tally {
  intptr_t last_heap;
  size_t heaps, used, free_blocks;
} tally;

static bool count_block(walker_heap_into_t heap, walker_block_info_t block, void *user) {
  tally *t = (tally *)user;
  if (heap.start != t->last_heap) {
    t->heaps++;
    t->last_heap = heap.start;
  }
  if (block.used)
    t->used++;
  else
    t->free_blocks++;
  return true;
}

/* heap_caps_walk from C: counts heaps and blocks. Returns 0, or 1 if the counts disagree with
 * heap_caps_get_info. */
int esp_only_walk_tally(uint32_t caps, size_t *heaps, size_t *used, size_t *free_blocks) {
  tally t = {0, 0, 0, 0};
  multi_heap_info_t info;
  heap_caps_walk(caps, count_block, &t);
  *heaps = t.heaps;
  *used = t.used;
  *free_blocks = t.free_blocks;
  heap_caps_get_info(&info, caps);
  if ((caps & MALLOC_CAP_INVALID) == 0 &&
      (info.allocated_blocks != t.used || info.free_blocks != t.free_blocks))
    return 1;
  return 0;
}

/* Local minimum monitoring (spec §1.1): stop without start is ESP_FAIL; after start the minimum is
 * the current free size; an allocation lowers it; stop keeps the lower of local and lifetime
 * minimum; a second stop is ESP_FAIL. Step n returns n. */
int esp_only_monitor_local_minimum(uint32_t caps) {
  void *big, *small;
  size_t lifetime, local;
  if (heap_caps_monitor_local_minimum_free_size_stop() != ESP_FAIL) return 1;
  /* Push the lifetime minimum down, then release. */
  big = heap_caps_malloc(4096, caps);
  if (big == NULL) return 2;
  heap_caps_free(big);
  lifetime = heap_caps_get_minimum_free_size(caps);
  if (lifetime >= heap_caps_get_free_size(caps)) return 3;
  if (heap_caps_monitor_local_minimum_free_size_start() != ESP_OK) return 4;
  if (heap_caps_get_minimum_free_size(caps) != heap_caps_get_free_size(caps)) return 5;
  small = heap_caps_malloc(512, caps);
  if (small == NULL) return 6;
  local = heap_caps_get_minimum_free_size(caps);
  if (local != heap_caps_get_free_size(caps)) return 7;
  heap_caps_free(small);
  if (heap_caps_get_minimum_free_size(caps) != local) return 8;
  if (heap_caps_monitor_local_minimum_free_size_start() != ESP_OK) return 9; /* re-snapshot */
  if (heap_caps_monitor_local_minimum_free_size_stop() != ESP_OK) return 10;
  if (heap_caps_get_minimum_free_size(caps) > lifetime) return 11;
  if (heap_caps_monitor_local_minimum_free_size_stop() != ESP_FAIL) return 12;
  return 0;
}

void *esp_only_malloc_prefer2(size_t size, uint32_t first, uint32_t second) {
  return heap_caps_malloc_prefer(size, 2, first, second);
}

void *esp_only_calloc_prefer2(size_t n, size_t size, uint32_t first, uint32_t second) {
  return heap_caps_calloc_prefer(n, size, 2, first, second);
}

void *esp_only_realloc_prefer2(void *ptr, size_t size, uint32_t first, uint32_t second) {
  return heap_caps_realloc_prefer(ptr, size, 2, first, second);
}

void esp_only_print_and_dump(uint32_t caps) {
  heap_caps_print_heap_info(caps);
  heap_caps_dump(caps);
}
