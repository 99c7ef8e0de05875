// checked_heap.hpp — a capheap::Heap wrapper for tests that checks everything around every call.
//
// - validate() before and after each operation (the full O(n) cross-check);
// - every returned pointer is granule-aligned, inside the region and overlaps no live block;
// - payloads carry a pattern derived from (address, id) at the head, the tail and a few words in
//   between; it is verified on free and realloc, so an allocator that scribbles on live data is
//   caught;
// - the largest-free-block contract after each operation: allocate(L) succeeds and
//   allocate(L + granule) fails, L = largest_free_block();
// - a text picture of the heap on failure (`used 32 | free 96 | ...`).
#ifndef CAPHEAP_TESTS_SUPPORT_CHECKED_HEAP_HPP
#define CAPHEAP_TESTS_SUPPORT_CHECKED_HEAP_HPP

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <sstream>
#include <string>

#include "capheap/heap.hpp"

namespace capheap {
namespace testing {

/// Text picture of a heap: one token per block, e.g. `used 32 | free 96`.
inline std::string picture(const Heap &heap, std::size_t max_blocks = 64) {
  std::ostringstream out;
  std::size_t n = 0;
  heap.for_each_block([&](const BlockView &b) {
    if (n++ >= max_blocks) {
      out << " | ...";
      return false;
    }
    if (n > 1) out << " | ";
    out << (b.used ? "used " : "free ") << b.size;
    return true;
  });
  return out.str();
}

class CheckedHeap {
 public:
  explicit CheckedHeap(Heap heap, bool check_largest = true)
      : heap_(heap), check_largest_(check_largest) {}

  Heap &heap() { return heap_; }
  std::size_t live_count() const { return live_.size(); }
  std::size_t live_bytes() const { return live_bytes_; }

  void *allocate(std::size_t size) {
    before();
    void *p = heap_.allocate(size);
    if (p != nullptr) adopt(p, size);
    after("allocate", size);
    return p;
  }

  void *allocate_aligned(std::size_t size, std::size_t alignment, std::size_t offset = 0) {
    before();
    void *p = heap_.allocate_aligned(size, alignment, offset);
    if (p != nullptr) {
      EXPECT_EQ((reinterpret_cast<std::uintptr_t>(p) + offset) % alignment, 0u)
          << "alignment " << alignment << " offset " << offset;
      adopt(p, size);
    }
    after("allocate_aligned", size);
    return p;
  }

  void deallocate(void *p) {
    before();
    if (p != nullptr) release(p);
    heap_.deallocate(p);
    after("deallocate", 0);
  }

  void *reallocate(void *p, std::size_t size) {
    before();
    std::size_t old_size = 0;
    std::uint32_t id = 0;
    if (p != nullptr) {
      auto it = live_.find(p);
      EXPECT_NE(it, live_.end());
      if (it != live_.end()) {
        old_size = it->second.size;
        id = it->second.id;
        verify(p, it->second);
      }
    }
    void *q = heap_.reallocate(p, size);
    if (p != nullptr && size == 0) {
      EXPECT_EQ(q, nullptr);
      forget(p);
    } else if (q == nullptr) {
      // Failure: the old block must be intact and still live.
      if (p != nullptr) verify(p, live_.at(p));
    } else {
      if (p != nullptr) {
        // The kept prefix moved (or stayed) unchanged: check it under the old pattern, then re-tag.
        const std::size_t keep = old_size < size ? old_size : size;
        check_prefix(q, p, id, keep);
        forget(p);
      }
      adopt(q, size);
    }
    after("reallocate", size);
    return q;
  }

  /// Frees every live block, checking each.
  void release_all() {
    while (!live_.empty())
      deallocate(live_.begin()->first);
  }

 private:
  struct Live {
    std::size_t size;
    std::uint32_t id;
  };

  static std::uint8_t pattern_byte(std::uint32_t id, std::size_t i) {
    return static_cast<std::uint8_t>((id * 131u) ^ (i * 7u) ^ 0x5Au);
  }
  /// Positions that carry the pattern: the first and last 32 bytes and every 4096th byte.
  template <class F>
  static void for_pattern_positions(std::size_t size, F f) {
    for (std::size_t i = 0; i < size && i < 32; ++i)
      f(i);
    for (std::size_t i = size > 32 ? size - 32 : 32; i < size; ++i)
      if (i >= 32) f(i);
    for (std::size_t i = 4096; i + 32 < size; i += 4096)
      f(i);
  }

  void adopt(void *p, std::size_t size) {
    const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p);
    EXPECT_EQ(a % heap_.granule(), 0u) << "pointer not granule-aligned";
    EXPECT_TRUE(heap_.contains(p));
    EXPECT_GE(heap_.usable_size(p), size);
    // No overlap with live neighbours.
    auto next = live_.lower_bound(p);
    if (next != live_.end()) {
      EXPECT_LE(a + size, reinterpret_cast<std::uintptr_t>(next->first)) << "overlaps next block";
    }
    if (next != live_.begin()) {
      auto prev = std::prev(next);
      EXPECT_LE(reinterpret_cast<std::uintptr_t>(prev->first) + prev->second.size, a)
          << "overlaps previous block";
    }
    const Live l{size, ++next_id_};
    live_[p] = l;
    live_bytes_ += size;
    auto *bytes = static_cast<std::uint8_t *>(p);
    for_pattern_positions(size, [&](std::size_t i) { bytes[i] = pattern_byte(l.id, i); });
  }

  void verify(void *p, const Live &l) {
    const auto *bytes = static_cast<const std::uint8_t *>(p);
    bool ok = true;
    for_pattern_positions(l.size, [&](std::size_t i) {
      if (ok && bytes[i] != pattern_byte(l.id, i)) {
        ADD_FAILURE() << "payload of block " << p << " (size " << l.size << ") damaged at byte "
                      << i;
        ok = false;
      }
    });
  }

  void check_prefix(const void *q, const void *old_p, std::uint32_t id, std::size_t keep) {
    (void)old_p;
    const auto *bytes = static_cast<const std::uint8_t *>(q);
    bool ok = true;
    for_pattern_positions(keep, [&](std::size_t i) {
      // Only positions that were patterned under the old size survive a copy.
      if (ok && i < 32 && bytes[i] != pattern_byte(id, i)) {
        ADD_FAILURE() << "realloc lost data at byte " << i;
        ok = false;
      }
    });
  }

  void release(void *p) {
    auto it = live_.find(p);
    ASSERT_NE(it, live_.end()) << "test bug: freeing an unknown pointer";
    verify(p, it->second);
    forget(p);
  }

  void forget(void *p) {
    auto it = live_.find(p);
    if (it == live_.end()) return;
    live_bytes_ -= it->second.size;
    live_.erase(it);
  }

  void before() {
    const Validation v = heap_.validate();
    ASSERT_TRUE(v.ok()) << "before op: " << fault_text(v.fault) << " at " << v.block << "\n"
                        << picture(heap_);
  }

  void after(const char *op, std::size_t size) {
    const Validation v = heap_.validate();
    ASSERT_TRUE(v.ok()) << "after " << op << "(" << size << "): " << fault_text(v.fault) << " at "
                        << v.block << "\n"
                        << picture(heap_);
    ASSERT_TRUE(heap_.invariants_hold()) << "after " << op;
    if (check_largest_) check_largest_contract();
  }

  void check_largest_contract() {
    const std::size_t largest = heap_.largest_free_block();
    const std::size_t free_before = heap_.free_bytes();
    void *too_big = heap_.allocate(largest + heap_.granule());
    EXPECT_EQ(too_big, nullptr) << "allocate(largest + granule) succeeded, largest=" << largest
                                << "\n"
                                << picture(heap_);
    if (too_big != nullptr) heap_.deallocate(too_big);
    if (largest == 0) return;
    void *p = heap_.allocate(largest);
    EXPECT_NE(p, nullptr) << "allocate(largest) failed, largest=" << largest << "\n"
                          << picture(heap_);
    if (p != nullptr) heap_.deallocate(p);
    EXPECT_EQ(heap_.free_bytes(), free_before);
  }

  Heap heap_;
  bool check_largest_;
  std::map<void *, Live> live_;
  std::size_t live_bytes_ = 0;
  std::uint32_t next_id_ = 0;
};

}  // namespace testing
}  // namespace capheap

#endif  // CAPHEAP_TESTS_SUPPORT_CHECKED_HEAP_HPP
