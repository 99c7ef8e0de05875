// engine_demo.cpp — capheap's engine alone, through the multi_heap API, on an ESP32-sized DRAM
// region (build/examples/capheap_engine_demo; `make demo` runs demo.c instead).
#include <cstdio>
#include <cstring>

#include "capheap.h"
#include "capheap/heap.hpp"
#include "multi_heap.h"

namespace {
alignas(16) unsigned char g_region[160 * 1024];

void print_info(const char *when, multi_heap_handle_t heap) {
  multi_heap_info_t i;
  multi_heap_get_info(heap, &i);
  std::printf("%-28s free %7zu  allocated %7zu  largest %7zu  min_free %7zu  blocks %zu/%zu\n",
              when, i.total_free_bytes, i.total_allocated_bytes, i.largest_free_block,
              i.minimum_free_bytes, i.allocated_blocks, i.free_blocks);
}
}  // namespace

int main() {
  std::printf("capheap demo: one 160 KiB region (ESP-IDF multi_heap API, granule 4)\n\n");
  capheap_heap_config_t cfg{};
  cfg.granule = 4;
  multi_heap_handle_t heap = capheap_heap_register(g_region, sizeof g_region, &cfg);
  if (heap == nullptr) return 1;
  print_info("after register", heap);

  // A typical firmware pattern: many small objects, a few packet buffers, then holes.
  void *small[64];
  for (int i = 0; i < 64; ++i)
    small[i] = multi_heap_malloc(heap, static_cast<size_t>(16 + 8 * (i % 12)));
  void *packets[8];
  for (int i = 0; i < 8; ++i)
    packets[i] = multi_heap_malloc(heap, 1600);
  print_info("64 objects + 8 packets", heap);

  for (int i = 0; i < 64; i += 2)
    multi_heap_free(heap, small[i]);
  for (int i = 0; i < 8; i += 2)
    multi_heap_free(heap, packets[i]);
  print_info("every other one freed", heap);

  void *dma = multi_heap_aligned_alloc(heap, 4096, 64);
  std::printf("\naligned 4096 B @64 -> %p (aligned: %s)\n", dma,
              (reinterpret_cast<uintptr_t>(dma) % 64) == 0 ? "yes" : "no");
  void *grown = multi_heap_realloc(heap, packets[1], 3000);
  std::printf("realloc packet 1600 -> 3000 B: %s\n", grown == packets[1] ? "in place" : "moved");
  packets[1] = grown;

  void *too_big = multi_heap_malloc(heap, sizeof g_region);
  std::printf("malloc(%zu) -> %p (expected NULL)\n", sizeof g_region, too_big);
  std::printf("multi_heap_check: %s\n\n", multi_heap_check(heap, true) ? "OK" : "CORRUPT");

  multi_heap_free(heap, dma);
  for (int i = 1; i < 64; i += 2)
    multi_heap_free(heap, small[i]);
  for (int i = 1; i < 8; i += 2)
    multi_heap_free(heap, packets[i]);
  print_info("everything freed", heap);
  std::printf("\nfirst blocks of a fresh heap, in ESP-IDF's dump format:\n");
  alignas(16) static unsigned char tiny[512];
  multi_heap_handle_t t = capheap_heap_register(tiny, sizeof tiny, &cfg);
  void *a = multi_heap_malloc(t, 32);
  void *b = multi_heap_malloc(t, 100);
  multi_heap_free(t, a);
  multi_heap_dump(t);
  multi_heap_free(t, b);
  return multi_heap_check(heap, true) ? 0 : 1;
}
