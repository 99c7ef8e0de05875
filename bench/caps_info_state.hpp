// caps_info_state.hpp — the simulated ESP32 and a multi_heap heap in the worst-case statistics
// layout (info_fixture.hpp), for info_bench.cpp and ir_caps.cpp. Links capheap_host.
#ifndef CAPHEAP_BENCH_CAPS_INFO_STATE_HPP
#define CAPHEAP_BENCH_CAPS_INFO_STATE_HPP

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "capheap.h"
#include "capheap_host.h"
#include "esp_heap_caps.h"
#include "esp_heap_caps_init.h"
#include "info_fixture.hpp"
#include "multi_heap.h"

namespace capheap::bench {

/// The capability only the test heap has (the ESP32 model has no RETENTION memory): allocations
/// with it land there, while the measured calls ask for MALLOC_CAP_DEFAULT as applications do and
/// so also visit the model's own DEFAULT heaps.
constexpr std::uint32_t kTestHeapCap = MALLOC_CAP_RETENTION;
constexpr std::uint32_t kTestHeapCaps =
    kTestHeapCap | MALLOC_CAP_DEFAULT | MALLOC_CAP_8BIT | MALLOC_CAP_32BIT;

/// The ESP32 model (no PSRAM) plus one heap_caps heap of host memory, added at run time, holding
/// the worst-case layout with `live` live blocks. Re-initialises the simulator on every setup.
class CapsInfoState {
 public:
  CapsInfoState() = default;
  CapsInfoState(const CapsInfoState &) = delete;
  CapsInfoState &operator=(const CapsInfoState &) = delete;
  ~CapsInfoState() { teardown(); }

  /// Returns an error text, or nullptr on success.
  const char *setup(std::size_t live) {
    teardown();
    capheap_host_config_t cfg = CAPHEAP_HOST_CONFIG_DEFAULT;
    cfg.psram_size = 0;
    if (capheap_host_init("esp32", &cfg) != ESP_OK) return "capheap_host_init failed";
    initialised_ = true;
    const std::size_t bytes = info_region_bytes(live);
    mem_ = static_cast<unsigned char *>(std::aligned_alloc(4096, bytes));
    if (mem_ == nullptr) return "out of host memory";
    const std::uint32_t caps[3] = {kTestHeapCaps, 0, 0};
    const auto start = reinterpret_cast<intptr_t>(mem_);
    if (heap_caps_add_region_with_caps(caps, start, start + static_cast<intptr_t>(bytes)) !=
        ESP_OK) {
      return "heap_caps_add_region_with_caps failed";
    }
    keep_.clear();
    const bool ok = fill_worst_case(
        live, [](std::size_t n) { return heap_caps_malloc(n, kTestHeapCap); },
        [](void *p) { heap_caps_free(p); },
        [] { return heap_caps_get_largest_free_block(kTestHeapCap); }, keep_);
    if (!ok) return "heap_caps_malloc failed while filling the heap";
    for (void *p : keep_) {
      const auto *q = static_cast<unsigned char *>(p);
      if (q < mem_ || q >= mem_ + bytes) return "an allocation missed the test heap";
    }
    return nullptr;
  }

  void teardown() {
    if (initialised_) capheap_host_deinit();
    initialised_ = false;
    std::free(mem_);
    mem_ = nullptr;
    keep_.clear();
  }

 private:
  bool initialised_ = false;
  unsigned char *mem_ = nullptr;
  std::vector<void *> keep_;
};

/// A multi_heap heap (capheap_heap_register, granule 4, with a lock as heap_caps heaps have) in
/// the worst-case layout with `live` live blocks.
class MultiHeapInfoState {
 public:
  MultiHeapInfoState() = default;
  MultiHeapInfoState(const MultiHeapInfoState &) = delete;
  MultiHeapInfoState &operator=(const MultiHeapInfoState &) = delete;
  ~MultiHeapInfoState() { teardown(); }

  /// Returns an error text, or nullptr on success.
  const char *setup(std::size_t live) {
    teardown();
    const std::size_t bytes = info_region_bytes(live);
    mem_ = std::aligned_alloc(4096, bytes);
    if (mem_ == nullptr) return "out of host memory";
    capheap_heap_config_t cfg{};
    cfg.granule = 4;
    heap_ = capheap_heap_register(mem_, bytes, &cfg);
    if (heap_ == nullptr) return "capheap_heap_register failed";
    capheap_lock_init(&lock_);
    lock_live_ = true;
    multi_heap_set_lock(heap_, &lock_);
    std::vector<void *> keep;
    multi_heap_handle_t h = heap_;
    const bool ok = fill_worst_case(
        live, [h](std::size_t n) { return multi_heap_malloc(h, n); },
        [h](void *p) { multi_heap_free(h, p); },
        [h] {
          multi_heap_info_t info;
          multi_heap_get_info(h, &info);
          return info.largest_free_block;
        },
        keep);
    return ok ? nullptr : "multi_heap_malloc failed while filling the heap";
  }

  multi_heap_handle_t heap() const { return heap_; }

  void teardown() {
    if (lock_live_) capheap_lock_destroy(&lock_);
    lock_live_ = false;
    std::free(mem_);
    mem_ = nullptr;
    heap_ = nullptr;
  }

 private:
  void *mem_ = nullptr;
  multi_heap_handle_t heap_ = nullptr;
  capheap_lock_t lock_{};
  bool lock_live_ = false;
};

}  // namespace capheap::bench

#endif  // CAPHEAP_BENCH_CAPS_INFO_STATE_HPP
