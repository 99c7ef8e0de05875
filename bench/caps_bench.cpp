// caps_bench.cpp — the cost of capability dispatch and of free's heap lookup.
//
//   BM_MultiHeap_MallocFree          multi_heap_malloc + multi_heap_free on one heap of the size of
//                                    the ESP32 model's main DRAM heap, with a lock set (as every
//                                    heap_caps heap has one)
//   BM_HeapCaps_MallocFree/caps      heap_caps_malloc + heap_caps_free on the simulated ESP32
//                                    (DEFAULT, DMA, 32BIT, INTERNAL|8BIT)
//   BM_Registry_Free_Heaps/N         free through the registry with N registered heaps (2..64):
//                                    the allocation is made directly in the engine, so the item is
//                                    engine allocate + free's lookup, lock and engine free
//   BM_Engine_MallocFree             the engine alone (capheap::Heap), for reference
//
// bench/callgrind_caps.py measures the same pairs and lookups in instructions (exact).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <vector>

#include "capheap.h"
#include "capheap/caps.hpp"
#include "capheap/heap.hpp"
#include "capheap_host.h"
#include "capi/capi_internal.hpp"
#include "esp_heap_caps.h"
#include "esp_heap_caps_init.h"
#include "multi_heap.h"

namespace {

constexpr std::size_t kRequest = 64;

void ensure_chip() {
  static bool done = [] {
    capheap_host_config_t cfg = CAPHEAP_HOST_CONFIG_DEFAULT;
    cfg.psram_size = 0;
    return capheap_host_init("esp32", &cfg) == ESP_OK;
  }();
  if (!done) std::abort();
}

/// Size of the heap that serves heap_caps_malloc(kRequest, caps) first on the simulated chip, so
/// that the multi_heap comparison runs the engine on a heap of the same size (same engine path).
std::size_t first_heap_size(std::uint32_t caps) {
  ensure_chip();
  void *p = heap_caps_malloc(kRequest, caps);
  capheap::Registry &reg = capheap::capi::registry();
  const int pos = reg.find_heap(p);
  heap_caps_free(p);
  if (pos < 0) std::abort();
  const capheap::HeapView v = reg.view(static_cast<unsigned>(pos));
  return v.end - v.start;
}

void BM_MultiHeap_MallocFree(benchmark::State &state) {
  // A heap of the same size as the ESP32 model's first DEFAULT heap (the 6 KiB DRAM heap at
  // 0x3FFAE6E0), with a lock set as every heap_caps heap has one (range(0) = 0: no lock).
  static std::vector<std::uint64_t> mem;
  const std::size_t size = first_heap_size(MALLOC_CAP_DEFAULT);
  mem.assign(size / 8 + 1, 0);
  capheap_heap_config_t cfg{};
  cfg.granule = 4;
  // multi_heap keeps an 8-byte lock pointer in front of the engine's control structure.
  multi_heap_handle_t heap = capheap_heap_register(mem.data(), size + 8, &cfg);
  static capheap_lock_t lock;
  capheap_lock_init(&lock);
  if (state.range(0) != 0) multi_heap_set_lock(heap, &lock);
  for (auto _ : state) {
    void *p = multi_heap_malloc(heap, kRequest);
    benchmark::DoNotOptimize(p);
    multi_heap_free(heap, p);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 2);
}
BENCHMARK(BM_MultiHeap_MallocFree)->Arg(0)->Arg(1)->ArgName("locked");

void BM_HeapCaps_MallocFree(benchmark::State &state) {
  ensure_chip();
  const auto caps = static_cast<std::uint32_t>(state.range(0));
  for (auto _ : state) {
    void *p = heap_caps_malloc(kRequest, caps);
    benchmark::DoNotOptimize(p);
    heap_caps_free(p);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 2);
}
BENCHMARK(BM_HeapCaps_MallocFree)
    ->Arg(MALLOC_CAP_DEFAULT)
    ->Arg(MALLOC_CAP_DMA)
    ->Arg(MALLOC_CAP_32BIT)
    ->Arg(MALLOC_CAP_INTERNAL | MALLOC_CAP_8BIT)
    ->ArgName("caps");

/// A registry of N heaps over host memory. Each iteration allocates in the engine directly and
/// frees through the registry, cycling over four heaps spread across the address order (two heaps:
/// alternating), so that every free searches the address table (consecutive frees never hit the
/// same heap).
void BM_Registry_Free_Heaps(benchmark::State &state) {
  const auto n = static_cast<unsigned>(state.range(0));
  static std::vector<std::uint64_t> mem;
  mem.assign(n * 4096 / 8, 0);
  static capheap::Registry reg;
  reg.init(4);
  const std::uint32_t caps[3] = {MALLOC_CAP_8BIT | MALLOC_CAP_DEFAULT, 0, 0};
  const auto base = reinterpret_cast<std::uintptr_t>(mem.data());
  for (unsigned i = 0; i < n; ++i) {
    if (reg.add_region(caps, base + i * 4096, base + (i + 1) * 4096, capheap::Placement::kBoot) !=
        capheap::Status::kOk) {
      state.SkipWithError("add_region failed");
      return;
    }
  }
  capheap::Heap heaps[4];
  for (unsigned j = 0; j < 4; ++j)
    heaps[j] = reg.view(n >= 4 ? j * n / 4 : j % n).heap;
  unsigned k = 0;
  for (auto _ : state) {
    void *p = heaps[k++ & 3].allocate(kRequest);
    reg.deallocate(p);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_Registry_Free_Heaps)
    ->Arg(2)
    ->Arg(4)
    ->Arg(8)
    ->Arg(16)
    ->Arg(32)
    ->Arg(64)
    ->ArgName("heaps");

void BM_Engine_MallocFree(benchmark::State &state) {
  static std::vector<std::uint64_t> mem(180 * 1024 / 8);
  capheap::HeapConfig cfg;
  cfg.granule = capheap::Granule::k4;
  capheap::Heap heap = capheap::Heap::create(mem.data(), mem.size() * 8, cfg);
  for (auto _ : state) {
    void *p = heap.allocate(kRequest);
    benchmark::DoNotOptimize(p);
    heap.deallocate(p);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 2);
}
BENCHMARK(BM_Engine_MallocFree);

}  // namespace

namespace {
/// The engine alone on the simulated chip's first DEFAULT heap (its memory is a memfd mapping),
/// to separate the cost of the memory from the cost of dispatch.
/// The chip's first DEFAULT heap through multi_heap-style locking with its own registry lock:
/// the lock and engine share of BM_HeapCaps_MallocFree/caps:4096, without the dispatch.
void BM_OnChip_LockedEngine(benchmark::State &state) {
  ensure_chip();
  void *p0 = heap_caps_malloc(kRequest, MALLOC_CAP_DEFAULT);
  capheap::Registry &reg = capheap::capi::registry();
  const capheap::HeapView v = reg.view(static_cast<unsigned>(reg.find_heap(p0)));
  capheap::Heap heap = v.heap;
  heap_caps_free(p0);
  for (auto _ : state) {
    capheap_port_lock_acquire(v.lock);
    void *p = heap.allocate(kRequest);
    capheap_port_lock_release(v.lock);
    benchmark::DoNotOptimize(p);
    capheap_port_lock_acquire(v.lock);
    heap.deallocate(p);
    capheap_port_lock_release(v.lock);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 2);
}
BENCHMARK(BM_OnChip_LockedEngine);

/// The registry's C++ entry points (dispatch, lookup, lock, engine) without the C API layer.
void BM_Registry_MallocFree(benchmark::State &state) {
  ensure_chip();
  capheap::Registry &reg = capheap::capi::registry();
  for (auto _ : state) {
    void *p = reg.allocate(kRequest, capheap::Caps(MALLOC_CAP_DEFAULT));
    benchmark::DoNotOptimize(p);
    reg.deallocate(p);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 2);
}
BENCHMARK(BM_Registry_MallocFree);

void BM_Engine_OnChipHeap(benchmark::State &state) {
  ensure_chip();
  void *p0 = heap_caps_malloc(kRequest, MALLOC_CAP_DEFAULT);
  capheap::Registry &reg = capheap::capi::registry();
  capheap::Heap heap = reg.view(static_cast<unsigned>(reg.find_heap(p0))).heap;
  heap_caps_free(p0);
  for (auto _ : state) {
    void *p = heap.allocate(kRequest);
    benchmark::DoNotOptimize(p);
    heap.deallocate(p);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 2);
}
BENCHMARK(BM_Engine_OnChipHeap);
}  // namespace

BENCHMARK_MAIN();
