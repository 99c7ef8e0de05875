// size_engine_min.cpp — the engine alone: create a heap, allocate, free (make size, "engine_min").
#include "capheap/heap.hpp"

#if defined(CAPHEAP_LINK_CHECK_INJECT)
extern "C" void capheap_link_check_injected(void);
#endif

namespace {
alignas(16) unsigned char g_region[8192];
}  // namespace

int main() {
#if defined(CAPHEAP_LINK_CHECK_INJECT)
  capheap_link_check_injected();
#endif
  capheap::Heap heap = capheap::Heap::create(g_region, sizeof g_region);
  void *volatile p = heap.allocate(100);
  heap.deallocate(p);
  return p != nullptr ? 0 : 1;
}
