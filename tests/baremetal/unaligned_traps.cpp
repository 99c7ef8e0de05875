// unaligned_traps.cpp — an unaligned 32-bit load, for the Cortex-M0+ build only: must end the run
// with a fault (exit status 1 from picolibc's semihost fault handler), proving that the target
// tests would catch an unaligned access in capheap (ctest target_unaligned_traps expects the
// failure).
#include <cstdint>
#include <cstdio>

#include "harness.hpp"

namespace {
alignas(4) volatile unsigned char g_bytes[8] = {1, 2, 3, 4, 5, 6, 7, 8};
}

int main() {
  capheap_target::trap_unaligned_accesses();
  std::uintptr_t addr = reinterpret_cast<std::uintptr_t>(g_bytes) + 1;
  __asm__ volatile("" : "+r"(addr));  // hide the misalignment: the compiler must emit one LDR
  const auto *word = reinterpret_cast<const volatile std::uint32_t *>(addr);
  const std::uint32_t v = *word;
  std::printf("unaligned access did not trap (read 0x%08lx)\n", static_cast<unsigned long>(v));
  return 0;
}
