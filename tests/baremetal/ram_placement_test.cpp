// ram_placement_test.cpp — part of target_in_ram only: the engine, the registry and the C API run
// from RAM (their code sections renamed into .data by cmake/CapheapRamFunctions.cmake, copied to
// RAM by the startup code), and the engine and heap_caps tests linked with them pass there.
#include <cstdint>

#include "capheap/heap.hpp"
#include "esp_heap_caps.h"
#include "harness.hpp"
#include "multi_heap.h"

// The initialised-RAM image of picolibc's linker script (and of most vendor scripts).
extern "C" char __data_start[], __data_end[];

namespace {
template <class F>
bool in_ram(F *fn) {
  // Thumb function addresses carry bit 0: clear it.
  const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(fn) & ~std::uintptr_t(1);
  return a >= reinterpret_cast<std::uintptr_t>(__data_start) &&
         a < reinterpret_cast<std::uintptr_t>(__data_end);
}
}  // namespace

TARGET_TEST(RamPlacement, HotPathRunsFromRam) {
  CHECK(in_ram(&capheap::fault_text));  // src/core/heap.cpp
  CHECK(in_ram(&heap_caps_malloc));     // src/capi/heap_caps.cpp
  CHECK(in_ram(&heap_caps_free));
  CHECK(in_ram(&multi_heap_malloc));  // src/capi/multi_heap.cpp
  CHECK(in_ram(&multi_heap_free));
  // Code that was not moved stays in flash.
  CHECK(!in_ram(&capheap_target::run_all_tests));
}
