// cpp_example.cpp — the README's C++ example, built and run by `make test` (ctest: example_cpp).
#include <cstdio>

#include <capheap/heap.hpp>

alignas(16) static unsigned char region[32 * 1024];

int main() {
  capheap::HeapConfig cfg;
  cfg.granule = capheap::Granule::k4;
  capheap::Heap heap = capheap::Heap::create(region, sizeof region, cfg);

  void *p = heap.allocate(200);
  p = heap.reallocate(p, 400);                      // grows in place when the next block is free
  std::size_t largest = heap.largest_free_block();  // allocate(largest) is guaranteed to succeed
  std::printf("largest free block: %zu\n", largest);

  heap.for_each_block([](const capheap::BlockView &b) {
    std::printf("%p %zu %s\n", b.data, b.size, b.used ? "used" : "free");
    return true;
  });
  heap.deallocate(p);
  return heap.validate().ok() ? 0 : 1;  // full O(n) cross-check; names the bad block
}
