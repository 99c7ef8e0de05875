#include <gtest/gtest.h>
#include "capheap/heap.hpp"
TEST(Heap, Smoke) {
  alignas(16) static unsigned char buf[4096];
  capheap::HeapConfig cfg; cfg.granule = capheap::Granule::k4;
  auto h = capheap::Heap::create(buf, sizeof buf, cfg);
  ASSERT_TRUE(h);
  void* p = h.allocate(32);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(h.validate().ok());
  h.deallocate(p);
  EXPECT_TRUE(h.validate().ok());
}
