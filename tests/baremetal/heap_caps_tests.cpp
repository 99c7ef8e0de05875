// heap_caps_tests.cpp — ESP-IDF's heap_caps semantics on the target, on an ESP32-like chip layout
// whose regions are placed in the target's own RAM (a static arena; the "SPIRAM" in the target's
// external RAM) and registered through capheap_set_layout + heap_caps_init, as firmware does.
//
//   types   DRAM     {8BIT|DEFAULT, INTERNAL|DMA|32BIT, 0}          (ESP32's memory types)
//           D/IRAM   {0, DMA|8BIT|INTERNAL|DEFAULT, 32BIT|EXEC}
//           IRAM     {INTERNAL|EXEC|32BIT, 0, 0}
//           SPIRAM   {SPIRAM|DEFAULT, 0, 8BIT|32BIT}
//   regions (offsets into the arena)
//           DRAM    [0x00000, 0x02000)  reserved [0x0000, 0x06E0) "rom_data"
//           DRAM    [0x02000, 0x06000)  merged with the piece before it
//           DRAM    [0x06000, 0x08000)  reserved [0x7000, 0x7100) splits it
//           D/IRAM  [0x08000, 0x0C000)  instruction alias (inverted, like the ESP32's)
//           D/IRAM  [0x0C000, 0x10000)  startup stack: a heap only after enable_nonos_stack_heaps
//           IRAM    [0x10000, 0x14000)
//           SPIRAM  64 KiB of external RAM, added at run time with heap_caps_add_region
//   heaps   DRAM [0x06E0, 0x7000), DRAM [0x7100, 0x8000), D/IRAM [0x8000, 0xC000),
//           IRAM [0x10000, 0x14000); later D/IRAM [0xC000, 0x10000) and SPIRAM
//
// The instruction-bus window of the D/IRAM regions is a second static array: the registry writes
// the EXEC allocations' hidden word through it and reads it back, exactly as on the chip.
#include <cstring>
#include <initializer_list>

#include "capheap.h"
#include "capi/capi_internal.hpp"
#include "esp_heap_caps.h"
#include "esp_heap_caps_init.h"
#include "fail_capture.hpp"
#include "harness.hpp"
#include "target_memory.hpp"

namespace {

constexpr std::uint32_t k8 = MALLOC_CAP_8BIT, k32 = MALLOC_CAP_32BIT, kX = MALLOC_CAP_EXEC,
                        kDma = MALLOC_CAP_DMA, kI = MALLOC_CAP_INTERNAL, kD = MALLOC_CAP_DEFAULT,
                        kS = MALLOC_CAP_SPIRAM;

alignas(16) unsigned char g_ram[0x14000];
alignas(16) unsigned char g_iram_window[0x8000];
constexpr std::size_t kSpiramSize = 0x10000;

std::uintptr_t ram(std::uintptr_t offset) {
  return reinterpret_cast<std::uintptr_t>(g_ram) + offset;
}
unsigned char *spiram() {
  return capheap_target::ext_ram() + (4u << 20);  // above the engine tests' 4 MiB heap
}

const capheap_memory_type_t kTypes[] = {
    {"DRAM", {k8 | kD, kI | kDma | k32, 0}},
    {"D/IRAM", {0, kDma | k8 | kI | kD, k32 | kX}},
    {"IRAM", {kI | kX | k32, 0, 0}},
    {"SPIRAM", {kS | kD, 0, k8 | k32}},
};

capheap_memory_region_t g_regions[6];
capheap_reserved_range_t g_reserved[2];
capheap_layout_t g_layout;

// Failed-allocation callbacks.
unsigned g_failures = 0;
std::size_t g_fail_size = 0;
std::uint32_t g_fail_caps = 0;
const char *g_fail_function = "";
void on_failure(size_t size, uint32_t caps, const char *function) {
  ++g_failures;
  g_fail_size = size;
  g_fail_caps = caps;
  g_fail_function = function;
}
bool one_failure(std::size_t size, std::uint32_t caps, const char *function) {
  const bool ok = g_failures == 1 && g_fail_size == size && g_fail_caps == caps &&
                  std::strcmp(g_fail_function, function) == 0;
  g_failures = 0;
  return ok;
}

/// A fresh system: the layout, heap_caps_init, the failure callback.
void start() {
  const std::uintptr_t iw = reinterpret_cast<std::uintptr_t>(g_iram_window);
  g_regions[0] = {ram(0x0000), 0x2000, 0, false, 0};
  g_regions[1] = {ram(0x2000), 0x4000, 0, false, 0};
  g_regions[2] = {ram(0x6000), 0x2000, 0, false, 0};
  // Inverted D/IRAM (ESP32): the region at the low data address has the high instruction address.
  g_regions[3] = {ram(0x8000), 0x4000, 1, false, iw + 0x4000};
  g_regions[4] = {ram(0xC000), 0x4000, 1, true, iw + 0x0000};
  g_regions[5] = {ram(0x10000), 0x4000, 2, false, 0};
  g_reserved[0] = {ram(0x0000), ram(0x06E0), "rom_data"};
  g_reserved[1] = {ram(0x7000), ram(0x7100), "static_data"};
  g_layout = {};
  g_layout.chip = "esp32-like";
  g_layout.types = kTypes;
  g_layout.type_count = 4;
  g_layout.regions = g_regions;
  g_layout.region_count = 6;
  g_layout.reserved = g_reserved;
  g_layout.reserved_count = 2;
  g_layout.align.dma_internal = 4;
  g_layout.align.cache_line_ext = 32;
  g_layout.diram_inverted = true;
  g_layout.diram_dram_low = ram(0x8000);
  g_layout.diram_dram_high = ram(0x10000);
  g_layout.diram_iram_low = iw;
  g_layout.diram_iram_high = iw + 0x8000;
  g_layout.ext_ram_start = reinterpret_cast<std::uintptr_t>(spiram());
  g_layout.ext_ram_max_size = kSpiramSize;
  g_layout.ext_ram_type = 3;
  capheap::capi::reset();
  capheap_set_layout(&g_layout);
  heap_caps_init();
  heap_caps_register_failed_alloc_callback(on_failure);
  g_failures = 0;
}

void add_spiram() {
  const auto s = reinterpret_cast<intptr_t>(spiram());
  CHECK_EQ(heap_caps_add_region(s, s + static_cast<intptr_t>(kSpiramSize)), ESP_OK);
}

bool in(const void *p, std::uintptr_t start, std::uintptr_t end) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  return a >= start && a < end;
}
bool in_ram(const void *p, std::uintptr_t lo, std::uintptr_t hi) {
  return in(p, ram(lo), ram(hi));
}

struct HeapList {
  std::uintptr_t start[8];
  std::uintptr_t end[8];
  unsigned n = 0;
};
bool collect(walker_heap_into_t heap, walker_block_info_t, void *user) {
  auto *l = static_cast<HeapList *>(user);
  const auto start = static_cast<std::uintptr_t>(heap.start);
  if (l->n == 0 || l->start[l->n - 1] != start) {
    if (l->n < 8) {
      l->start[l->n] = start;
      l->end[l->n] = static_cast<std::uintptr_t>(heap.end);
    }
    ++l->n;
  }
  return true;
}

}  // namespace

// heap_caps_init's algorithm: reserved ranges cut out, adjacent pieces of one type merged, the
// startup-stack region left out until heap_caps_enable_nonos_stack_heaps; list order by address.
TARGET_TEST(HeapCaps, HeapsFromTheLayout) {
  start();
  HeapList l;
  heap_caps_walk_all(collect, &l);
  REQUIRE_EQ(l.n, 4u);
  CHECK_EQ(l.start[0], ram(0x06E0));
  CHECK_EQ(l.end[0], ram(0x7000));
  CHECK_EQ(l.start[1], ram(0x7100));
  CHECK_EQ(l.end[1], ram(0x8000));
  CHECK_EQ(l.start[2], ram(0x8000));
  CHECK_EQ(l.end[2], ram(0xC000));
  CHECK_EQ(l.start[3], ram(0x10000));
  CHECK_EQ(l.end[3], ram(0x14000));
  CHECK_EQ(heap_caps_get_total_size(k8), 0x6920u + 0xF00u + 0x4000u);
  CHECK_EQ(heap_caps_get_total_size(kX), 0x8000u);
  CHECK_EQ(heap_caps_get_total_size(kS), 0u);
  heap_caps_enable_nonos_stack_heaps();
  heap_caps_enable_nonos_stack_heaps();  // idempotent
  CHECK_EQ(heap_caps_get_total_size(k8), 0x6920u + 0xF00u + 0x8000u);
  add_spiram();
  CHECK_EQ(heap_caps_get_total_size(kS), kSpiramSize);
  // The run-time heap goes to the head of the list.
  HeapList l2;
  heap_caps_walk_all(collect, &l2);
  REQUIRE_EQ(l2.n, 6u);
  CHECK_EQ(l2.start[0], reinterpret_cast<std::uintptr_t>(spiram()));
  CHECK(heap_caps_check_integrity_all(true));
}

// The first heap each capability lands in, by ESP-IDF's priority levels and list order.
TARGET_TEST(HeapCaps, FirstChoicesFollowThePriorityLevels) {
  start();
  struct {
    std::uint32_t caps;
    std::uintptr_t lo, hi;
  } const firsts[] = {
      {kD, 0x06E0, 0x7000},       // DRAM has DEFAULT at level 0
      {k8, 0x06E0, 0x7000},       // so has 8BIT
      {k32, 0x10000, 0x14000},    // IRAM has 32BIT at level 0, DRAM only at level 1
      {kDma, 0x06E0, 0x7000},     // level 1: DRAM before D/IRAM in list order
      {kI, 0x10000, 0x14000},     // IRAM has INTERNAL at level 0 (not byte-accessible!)
      {kI | k8, 0x06E0, 0x7000},  // the usual internal request
  };
  for (const auto &f : firsts) {
    void *p = heap_caps_malloc(64, f.caps);
    REQUIRE(p != nullptr);
    CHECK(in_ram(p, f.lo, f.hi));
    heap_caps_free(p);
  }
  // With PSRAM, DEFAULT goes to external memory first (SPIRAM|DEFAULT at level 0, run-time heap at
  // the head of the list); malloc()'s policy keeps small requests internal.
  add_spiram();
  void *d = heap_caps_malloc(64, kD);
  CHECK(in(d, reinterpret_cast<std::uintptr_t>(spiram()),
           reinterpret_cast<std::uintptr_t>(spiram()) + kSpiramSize));
  heap_caps_free(d);
  heap_caps_malloc_extmem_enable(1024);
  void *small = heap_caps_malloc_default(100);
  CHECK(in_ram(small, 0x06E0, 0x7000));
  void *large = heap_caps_malloc_default(2000);
  CHECK(in(large, reinterpret_cast<std::uintptr_t>(spiram()),
           reinterpret_cast<std::uintptr_t>(spiram()) + kSpiramSize));
  heap_caps_free(small);
  heap_caps_free(large);
  CHECK_EQ(g_failures, 0u);
}

TARGET_TEST(HeapCaps, ImpossibleRequestsCallBackOnce) {
  start();
  const std::uint32_t impossible[] = {kX | k8, kX | kDma, 0, MALLOC_CAP_INVALID, kS, kS | kI};
  for (std::uint32_t caps : impossible) {
    CHECK(heap_caps_malloc(100, caps) == nullptr);
    CHECK(one_failure(100, caps, "heap_caps_malloc"));
  }
  const std::size_t too_big = heap_caps_get_total_size(0) + 1;
  CHECK(heap_caps_malloc(too_big, k8) == nullptr);
  CHECK(one_failure(too_big, k8, "heap_caps_malloc"));
  CHECK(heap_caps_malloc(SIZE_MAX, k8) == nullptr);
  CHECK(one_failure(SIZE_MAX, k8, "heap_caps_malloc"));
  // size 0 never calls back; calloc overflow does, with the wrapped n * size (ESP-IDF reports
  // every NULL calloc on size > 0), and so does calloc(0, n) (the same quirk).
  CHECK(heap_caps_malloc(0, k8) == nullptr);
  CHECK_EQ(g_failures, 0u);
  CHECK(heap_caps_calloc(SIZE_MAX / 2 + 2, 2, k8) == nullptr);
  CHECK(one_failure(static_cast<std::size_t>((SIZE_MAX / 2 + 2) * 2u), k8, "heap_caps_calloc"));
  CHECK(heap_caps_calloc(0, 16, k8) == nullptr);
  CHECK(one_failure(0, k8, "heap_caps_calloc"));
  CHECK(heap_caps_calloc(4, 25, kX | k8) == nullptr);
  CHECK(one_failure(100, kX | k8, "heap_caps_calloc"));
  auto *z = static_cast<unsigned char *>(heap_caps_calloc(7, 9, k8));
  REQUIRE(z != nullptr);
  bool zero = true;
  for (int i = 0; i < 63; ++i)
    zero = zero && z[i] == 0;
  CHECK(zero);
  heap_caps_free(z);
  // aligned_alloc: bad alignments fail quietly.
  for (std::size_t a : {std::size_t(0), std::size_t(3), std::size_t(24)})
    CHECK(heap_caps_aligned_alloc(a, 64, k8) == nullptr);
  CHECK_EQ(g_failures, 0u);
  void *al = heap_caps_aligned_alloc(256, 64, kDma);
  REQUIRE(al != nullptr);
  CHECK_EQ(reinterpret_cast<std::uintptr_t>(al) % 256, 0u);
  heap_caps_aligned_free(al);
}

// 32BIT requests are rounded to 4 bytes; free sizes move by the block size (request + 4-byte
// header, granule 4), exactly.
TARGET_TEST(HeapCaps, ExactSizesAndFreeFigures) {
  start();
  const std::size_t free8 = heap_caps_get_free_size(k8);
  void *p = heap_caps_malloc(64, k8);
  REQUIRE(p != nullptr);
  CHECK_EQ(heap_caps_get_allocated_size(p), 64u);
  CHECK_EQ(heap_caps_get_free_size(k8), free8 - 68u);
  void *q = heap_caps_malloc(5, k32);
  REQUIRE(q != nullptr);
  CHECK_EQ(heap_caps_get_allocated_size(q), 12u);  // rounded to 8, in a 16-byte minimum block
  CHECK(in_ram(q, 0x10000, 0x14000));
  multi_heap_info_t info;
  heap_caps_get_info(&info, k8);
  CHECK_EQ(info.total_free_bytes, free8 - 68u);
  CHECK_EQ(info.allocated_blocks, 1u);
  CHECK_EQ(heap_caps_get_minimum_free_size(k8), free8 - 68u);
  heap_caps_free(p);
  heap_caps_free(q);
  CHECK_EQ(heap_caps_get_free_size(k8), free8);
  CHECK(heap_caps_get_largest_free_block(k8) < free8);
  CHECK(heap_caps_check_integrity_all(true));
}

// EXEC from D/IRAM comes back through the instruction window (IRAM full): the hidden word before
// the alias holds the data address, and the alias is the instruction address of the block's last
// word (inverted buses), plus 4.
TARGET_TEST(HeapCaps, ExecThroughTheInvertedInstructionAlias) {
  start();
  const std::size_t iram_largest = heap_caps_get_largest_free_block(kI | kX | k32);
  void *filler = heap_caps_malloc(iram_largest, kX);
  REQUIRE(filler != nullptr);
  CHECK(in_ram(filler, 0x10000, 0x14000));
  const std::size_t diram_free = heap_caps_get_free_size(kDma | kX);
  auto *p = static_cast<unsigned char *>(heap_caps_malloc(64, kX));
  REQUIRE(p != nullptr);
  const auto alias = reinterpret_cast<std::uintptr_t>(p);
  const auto iw = reinterpret_cast<std::uintptr_t>(g_iram_window);
  CHECK(alias >= iw && alias < iw + sizeof g_iram_window);
  std::uint32_t word;
  std::memcpy(&word, p - 4, 4);
  CHECK(word >= ram(0x8000) && word < ram(0xC000));
  CHECK_EQ(alias - 4, iw + (ram(0x10000) - (std::uintptr_t(word) + 64u + 4u)));
  CHECK_EQ(heap_caps_get_allocated_size(p), 64u);
  CHECK_EQ(heap_caps_get_free_size(kDma | kX), diram_free - 72u);
  auto *q = static_cast<unsigned char *>(heap_caps_realloc(p, 48, kX));  // always moves
  REQUIRE(q != nullptr);
  CHECK(q != p);
  heap_caps_free(q);
  CHECK_EQ(heap_caps_get_free_size(kDma | kX), diram_free);
  heap_caps_free(filler);
  CHECK(heap_caps_check_integrity_all(true));
  CHECK_EQ(g_failures, 0u);
}

// realloc keeps a block where it is if its heap has the requested caps, else moves it to the first
// heap of the request's order, with the data.
TARGET_TEST(HeapCaps, ReallocMovesBetweenCapabilities) {
  start();
  add_spiram();
  auto *p = static_cast<unsigned char *>(heap_caps_malloc(100, k8 | kI));
  REQUIRE(p != nullptr);
  for (int i = 0; i < 100; ++i)
    p[i] = static_cast<unsigned char>(i ^ 0x5A);
  auto *s = static_cast<unsigned char *>(heap_caps_realloc(p, 200, kS));
  REQUIRE(s != nullptr);
  CHECK(in(s, reinterpret_cast<std::uintptr_t>(spiram()),
           reinterpret_cast<std::uintptr_t>(spiram()) + kSpiramSize));
  auto *x = static_cast<unsigned char *>(heap_caps_realloc(s, 100, kX));
  REQUIRE(x != nullptr);
  CHECK(in_ram(x, 0x10000, 0x14000));
  auto *back = static_cast<unsigned char *>(heap_caps_realloc(x, 120, k8 | kI));
  REQUIRE(back != nullptr);
  CHECK(in_ram(back, 0x06E0, 0x7000));
  bool same = true;
  for (int i = 0; i < 100; ++i)
    same = same && back[i] == static_cast<unsigned char>(i ^ 0x5A);
  CHECK(same);
  heap_caps_free(back);
  CHECK_EQ(g_failures, 0u);
}

// heap_caps_add_region_with_caps: overlap rules, a heap inside an allocated buffer, a full table.
TARGET_TEST(HeapCaps, RuntimeRegions) {
  start();
  const std::uint32_t caps[3] = {MALLOC_CAP_PID7, 0, 0};
  void *buf = heap_caps_malloc(4096, k8);
  REQUIRE(buf != nullptr);
  const auto b = reinterpret_cast<intptr_t>(buf);
  CHECK_EQ(heap_caps_add_region_with_caps(caps, b, b + 4096), ESP_OK);  // strictly inside DRAM
  void *p = heap_caps_malloc(100, MALLOC_CAP_PID7);
  CHECK(in(p, static_cast<std::uintptr_t>(b), static_cast<std::uintptr_t>(b) + 4096));
  heap_caps_free(p);
  CHECK_EQ(heap_caps_add_region_with_caps(caps, b, b + 4096), ESP_FAIL);     // equal
  CHECK_EQ(heap_caps_add_region_with_caps(caps, b - 16, b + 16), ESP_FAIL);  // straddles
  CHECK_EQ(heap_caps_add_region_with_caps(nullptr, b, b + 4096), ESP_ERR_INVALID_ARG);
  CHECK_EQ(heap_caps_add_region_with_caps(caps, b + 64, b + 32), ESP_ERR_INVALID_ARG);
  CHECK_EQ(heap_caps_add_region(1, 2), ESP_ERR_NOT_FOUND);
  CHECK(heap_caps_check_integrity_all(true));
}

// Misuse through heap_caps: a pointer in no heap and a double free go to the fail hook.
TARGET_TEST(HeapCaps, MisuseReports) {
  start();
  capheap_target::FailCapture fails;
  static unsigned char outside[32];
  heap_caps_free(outside + 4);
  CHECK_EQ(fails.count(), 1u);
  CHECK(fails.last_is("free() target pointer is outside heap areas"));
  CHECK(fails.heap() == nullptr);
  heap_caps_free(nullptr);
  CHECK_EQ(fails.count(), 1u);
  void *p = heap_caps_malloc(40, k8);
  REQUIRE(p != nullptr);
  heap_caps_free(p);
  heap_caps_free(p);
  CHECK_EQ(fails.count(), 2u);
  CHECK(fails.last_is("double free (block is already free)"));
  CHECK(heap_caps_check_integrity_all(true));
}

// The local minimum monitor and the minimum free size, per heap.
TARGET_TEST(HeapCaps, MinimumFreeSize) {
  start();
  const std::size_t free8 = heap_caps_get_free_size(k8);
  void *p = heap_caps_malloc(1000, k8 | kI);
  REQUIRE(p != nullptr);
  heap_caps_free(p);
  CHECK_EQ(heap_caps_get_minimum_free_size(k8), free8 - 1004u);
  // The monitor keeps its table (one {heap, minimum} pair of 8 bytes per heap record: 5) in a
  // 44-byte block of the first DRAM heap; each heap's mark restarts at its current free size.
  CHECK_EQ(heap_caps_monitor_local_minimum_free_size_start(), ESP_OK);
  CHECK_EQ(heap_caps_get_free_size(k8), free8 - 44u);
  CHECK_EQ(heap_caps_get_minimum_free_size(k8), free8 - 44u);
  void *q = heap_caps_malloc(100, k8 | kI);
  heap_caps_free(q);
  CHECK_EQ(heap_caps_get_minimum_free_size(k8), free8 - 44u - 104u);
  CHECK_EQ(heap_caps_monitor_local_minimum_free_size_stop(), ESP_OK);
  CHECK_EQ(heap_caps_get_minimum_free_size(k8), free8 - 1004u);
  CHECK_EQ(heap_caps_get_free_size(k8), free8);
}
