// size_ram.cpp — the RAM a heap costs on the target (make size): the engine's control structure at
// the start of 8 KiB, 64 KiB and 4 MiB regions (granule 4, ESP-IDF's), the multi_heap lock prefix,
// and the static RAM of the heap_caps registry. Runs under QEMU (ctest size_ram) and prints one
// `ram-per-heap:` line that scripts/size-report.sh reads.
#include <stdio.h>

#include <cstdint>

#include "capheap/caps.hpp"
#include "capheap/heap.hpp"

namespace {
alignas(16) unsigned char g_small[64 * 1024];
}

int main() {
  capheap::HeapConfig cfg;
  cfg.granule = capheap::Granule::k4;
  const capheap::Heap h8 = capheap::Heap::create(g_small, 8 * 1024, cfg);
  const std::size_t c8 = h8.control_size();
  const capheap::Heap h64 = capheap::Heap::create(g_small, 64 * 1024, cfg);
  const std::size_t c64 = h64.control_size();
#if defined(CAPHEAP_TARGET_EXT_RAM_START)
  void *big_region = reinterpret_cast<void *>(std::uintptr_t(CAPHEAP_TARGET_EXT_RAM_START));
  const capheap::Heap h4m = capheap::Heap::create(big_region, 4u << 20, cfg);
  const std::size_t c4m = h4m.control_size();
#else
  const std::size_t c4m = 0;
#endif
  printf(
      "ram-per-heap: control_8k=%lu control_64k=%lu control_4m=%lu multi_heap_prefix=8 "
      "registry=%lu max_heaps=%u\n",
      static_cast<unsigned long>(c8), static_cast<unsigned long>(c64),
      static_cast<unsigned long>(c4m), static_cast<unsigned long>(sizeof(capheap::Registry)),
      static_cast<unsigned>(capheap::Registry::kMaxHeaps));
  return c8 != 0 && c64 != 0 && c4m != 0 ? 0 : 1;
}
