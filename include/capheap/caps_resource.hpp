// capheap/caps_resource.hpp — a std::pmr::memory_resource that takes memory from heaps with a
// given set of MALLOC_CAP_* capabilities.
//
//   capheap::CapsResource dma(capheap::Caps::dma() | capheap::Caps::bit8());
//   std::pmr::vector<std::uint8_t> frame(1536, &dma);
//   std::pmr::string name("long enough to leave the small-string buffer", &dma);
//
// Hosted builds only: CapsResource exists when <memory_resource> is available and exceptions are
// enabled (memory_resource::allocate must throw on failure; a resource that cannot throw would
// break every pmr container). Check with `#ifdef CAPHEAP_HAS_CAPS_RESOURCE`. Firmware built with
// -fno-exceptions uses caps_allocator / make_unique_caps (capheap/caps_allocator.hpp) instead.
#ifndef CAPHEAP_CAPS_RESOURCE_HPP
#define CAPHEAP_CAPS_RESOURCE_HPP

#if __has_include(<memory_resource>) && defined(__cpp_exceptions)

#include <cstddef>
#include <memory_resource>
#include <new>
#if defined(__cpp_rtti) || defined(__GXX_RTTI)
#include <typeinfo>
#endif

#include "capheap/caps.hpp"
#include "capheap/caps_allocator.hpp"
#include "esp_heap_caps.h"

#define CAPHEAP_HAS_CAPS_RESOURCE 1

namespace capheap {

/// A memory resource over heap_caps_aligned_alloc / heap_caps_malloc / heap_caps_free for one
/// capability mask. It owns nothing: each block lives in a heap and goes back with heap_caps_free,
/// so a CapsResource may be destroyed while its memory is still in use (unlike pool resources),
/// and any CapsResource can free any other's memory.
///
/// Thread safety: every member is thread-safe (the resource is immutable; heap_caps_* lock each
/// heap), so one CapsResource may serve containers in several threads. Not ISR-safe (throws).
class CapsResource : public std::pmr::memory_resource {
 public:
  /// A resource for memory with every capability in `caps`. Impossible caps (0, MALLOC_CAP_INVALID,
  /// EXEC with 8BIT, DMA or DMA_DESC_*) are accepted; every allocation then throws. O(1), noexcept.
  explicit CapsResource(Caps caps) noexcept : caps_(caps) {}
  CapsResource(const CapsResource &) = default;
  CapsResource &operator=(const CapsResource &) = delete;  // as std::pmr resources
  ~CapsResource() override = default;

  /// The capabilities this resource asks for.
  Caps caps() const noexcept { return caps_; }

 protected:
  /// Allocates `bytes` bytes aligned to at least `alignment` from a heap with every capability in
  /// caps(): heap_caps_malloc when alignment <= 4 (every heap_caps block is 4-byte aligned),
  /// heap_caps_aligned_alloc otherwise (pmr containers ask for alignof(T); allocate() without an
  /// alignment asks for alignof(max_align_t)). bytes == 0 allocates a 1-byte block (a unique
  /// pointer). Caps that heap_caps_malloc refuses (0, MALLOC_CAP_INVALID, EXEC with 8BIT, DMA or
  /// DMA_DESC_*) fail whatever the alignment. EXEC requests with alignment > 4 get data-bus
  /// addresses (heap_caps_aligned_alloc makes no instruction-bus alias), as in caps_allocator.
  /// Returns: the block. Throws std::bad_alloc when alignment is not a power of two or no heap with
  ///   those caps can serve the request (heap_caps_*'s failure callback ran first).
  /// Complexity: O(1) per heap tried. Thread-safe.
  void *do_allocate(std::size_t bytes, std::size_t alignment) override {
    if (alignment == 0 || (alignment & (alignment - 1)) != 0) throw std::bad_alloc();
    void *p = caps_detail::caps_alloc_bytes(bytes, alignment, caps_);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }

  /// Frees a block from do_allocate of any CapsResource (heap_caps_free; size and alignment are
  /// not needed). O(log heaps). Thread-safe. Never throws.
  void do_deallocate(void *p, std::size_t /*bytes*/, std::size_t /*alignment*/) override {
    heap_caps_free(p);
  }

  /// True if `other` is this object, or an object of the same dynamic type whose caps are equal
  /// (then memory from either can be freed by the other and new memory comes from the same heaps).
  /// Without RTTI only identity counts (a conservative but valid answer). O(1). noexcept.
  bool do_is_equal(const std::pmr::memory_resource &other) const noexcept override {
    if (this == &other) return true;
#if defined(__cpp_rtti) || defined(__GXX_RTTI)
    if (typeid(*this) != typeid(other)) return false;
    return static_cast<const CapsResource &>(other).caps_ == caps_;
#else
    return false;
#endif
  }

 private:
  Caps caps_;
};

}  // namespace capheap

#endif  // __has_include(<memory_resource>) && defined(__cpp_exceptions)

#endif  // CAPHEAP_CAPS_RESOURCE_HPP
