/*
 * multi_heap_c11.c — proves that multi_heap.h and capheap.h are pure ISO C.
 *
 * Compiled as strict C11 (-std=c11 -pedantic -Werror) and, as a syntax check, as strict C99 (see
 * CMakeLists.txt). It drives the C API from C and returns plain codes / figures that the C++ test
 * (multi_heap_test.cpp) checks exactly.
 */
#include "multi_heap.h"
#include "capheap.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
_Static_assert(sizeof(multi_heap_info_t) == 7 * sizeof(size_t), "seven size_t fields");
_Static_assert(sizeof(capheap_lock_t) == 64, "capheap_lock_t is 64 bytes of storage");
_Static_assert(offsetof(capheap_heap_config_t, granule) == 0 &&
                   offsetof(capheap_heap_config_t, poisoning) == sizeof(size_t),
               "fields are only appended");
#endif

/* Prototypes (the C++ side declares the same ones with extern "C"). */
int c11_roundtrip(void *buf, size_t size);
size_t c11_sizeof_info(void);
size_t c11_sizeof_lock(void);
size_t c11_sizeof_config(void);
multi_heap_handle_t c11_register(void *buf, size_t size, size_t granule);
size_t c11_walk_summary(multi_heap_handle_t heap, size_t *used_blocks, size_t *free_blocks,
                        size_t *used_bytes);
int c11_locked_roundtrip(void *buf, size_t size);

typedef struct walk_tally {
  size_t used_blocks;
  size_t free_blocks;
  size_t used_bytes;
  size_t visits;
  size_t stop_after; /* 0 = never stop */
  uintptr_t last_addr;
  int out_of_order;
} walk_tally;

static bool tally_block(void *block_ptr, size_t block_size, int block_used, void *user_data) {
  walk_tally *t = (walk_tally *)user_data;
  const uintptr_t addr = (uintptr_t)block_ptr;
  if (t->visits != 0 && addr <= t->last_addr) t->out_of_order = 1;
  t->last_addr = addr;
  t->visits++;
  if (block_used) {
    t->used_blocks++;
    t->used_bytes += block_size;
  } else {
    t->free_blocks++;
  }
  return t->stop_after == 0 || t->visits < t->stop_after;
}

static int all_bytes_are(const unsigned char *p, size_t n, unsigned char v) {
  size_t i;
  for (i = 0; i < n; ++i) {
    if (p[i] != v) return 0;
  }
  return 1;
}

size_t c11_sizeof_info(void) {
  return sizeof(multi_heap_info_t);
}
size_t c11_sizeof_lock(void) {
  return sizeof(capheap_lock_t);
}
size_t c11_sizeof_config(void) {
  return sizeof(capheap_heap_config_t);
}

multi_heap_handle_t c11_register(void *buf, size_t size, size_t granule) {
  capheap_heap_config_t cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.granule = granule;
  return capheap_heap_register(buf, size, &cfg);
}

size_t c11_walk_summary(multi_heap_handle_t heap, size_t *used_blocks, size_t *free_blocks,
                        size_t *used_bytes) {
  walk_tally t;
  memset(&t, 0, sizeof t);
  multi_heap_walk(heap, tally_block, &t);
  *used_blocks = t.used_blocks;
  *free_blocks = t.free_blocks;
  *used_bytes = t.used_bytes;
  return t.out_of_order ? 0 : t.visits;
}

/*
 * Registers a granule-4 heap over buf and exercises the API from C. Returns 0 when every step gave
 * the exact expected figure, otherwise the number of the first step that did not.
 * Needs size >= 1024 and buf 4-byte aligned.
 */
int c11_roundtrip(void *buf, size_t size) {
  multi_heap_handle_t h;
  multi_heap_info_t info;
  walk_tally t;
  size_t free0;
  unsigned char *p;
  unsigned char *q;
  unsigned char *a;

  h = c11_register(buf, size, 4);
  if (h == NULL) return 1;
  if (capheap_heap_granule(h) != 4) return 2;

  free0 = multi_heap_free_size(h);
  multi_heap_get_info(h, &info);
  if (info.total_free_bytes != free0 || info.free_blocks != 1 || info.allocated_blocks != 0 ||
      info.total_blocks != 1 || info.largest_free_block != free0 - 4 ||
      info.minimum_free_bytes != free0 || info.total_allocated_bytes != 0)
    return 3;

  /* 10 bytes take the 16-byte minimum block: 12 usable bytes. */
  p = (unsigned char *)multi_heap_malloc(h, 10);
  if (p == NULL || multi_heap_get_allocated_size(h, p) != 12 ||
      multi_heap_get_full_block_size(h, p) != 16 || multi_heap_free_size(h) != free0 - 16)
    return 4;
  memset(p, 0x5A, 10);

  q = (unsigned char *)multi_heap_realloc(h, p, 100);
  if (q == NULL || multi_heap_get_allocated_size(h, q) != 100 || !all_bytes_are(q, 10, 0x5A) ||
      multi_heap_free_size(h) != free0 - 104)
    return 5;

  a = (unsigned char *)multi_heap_aligned_alloc(h, 24, 64);
  if (a == NULL || ((uintptr_t)a & 63u) != 0 || multi_heap_get_allocated_size(h, a) != 24) return 6;
  memset(a, 0xC3, 24);

  multi_heap_get_info(h, &info);
  if (info.allocated_blocks != 2 || info.total_allocated_bytes != 124 ||
      info.total_blocks != info.allocated_blocks + info.free_blocks)
    return 7;

  if (!multi_heap_check(h, false)) return 8;

  memset(&t, 0, sizeof t);
  multi_heap_walk(h, tally_block, &t);
  if (t.used_blocks != 2 || t.used_bytes != 124 || t.free_blocks != info.free_blocks ||
      t.out_of_order)
    return 9;
  memset(&t, 0, sizeof t);
  t.stop_after = 1;
  multi_heap_walk(h, tally_block, &t);
  if (t.visits != 1) return 10;

  if (multi_heap_find_containing_block(h, q + 50) != q) return 11;

  multi_heap_free(h, q);
  multi_heap_aligned_free(h, a);
  multi_heap_free(h, NULL);
  multi_heap_get_info(h, &info);
  if (multi_heap_free_size(h) != free0 || info.free_blocks != 1 || info.allocated_blocks != 0 ||
      multi_heap_minimum_free_size(h) >= free0)
    return 12;

  if (multi_heap_malloc(h, 0) != NULL || multi_heap_malloc(NULL, 8) != NULL ||
      multi_heap_aligned_alloc(h, 8, 3) != NULL || multi_heap_realloc(NULL, NULL, 8) != NULL)
    return 13;

  if (!multi_heap_check(h, true) || !capheap_heap_invariants_hold(h)) return 14;
  return 0;
}

/* Same heap life with a real host lock attached, still from C. Returns 0 or the failing step. */
int c11_locked_roundtrip(void *buf, size_t size) {
  capheap_lock_t lock;
  multi_heap_handle_t h;
  void *p;
  size_t free0;

  h = c11_register(buf, size, 0);
  if (h == NULL) return 1;
  capheap_lock_init(&lock);
  multi_heap_set_lock(h, &lock);
  free0 = multi_heap_free_size(h);
  multi_heap_internal_lock(h);
  p = multi_heap_malloc(h, 40); /* the lock is recursive */
  multi_heap_internal_unlock(h);
  if (p == NULL) return 2;
  p = multi_heap_realloc(h, p, 400);
  if (p == NULL) return 3;
  multi_heap_free(h, p);
  if (multi_heap_free_size(h) != free0 || !multi_heap_check(h, false)) return 4;
  multi_heap_set_lock(h, NULL);
  capheap_lock_destroy(&lock);
  return 0;
}
