// proto_tlsf.hpp — bench-only prototype of an engine in the floor's shape (floor_tlsf.hpp) that
// keeps what capheap's engine must keep, to measure before rewriting the engine whether that shape
// meets issue 6's 110 / 75 instructions per malloc / free:
//   * per-heap geometry loaded at run time (granule, second-level bits, class offset), chosen from
//     the region size as capheap chooses it, so small heaps keep small tables;
//   * the always-on checks of the foundation's contract on free: bad pointer (range, granule
//     alignment), double free, damaged neighbours (the next block agrees this one is used; a free
//     neighbour's size fits the region; a free previous block's footer and header agree); on
//     malloc, the list entry taken is a sane free block;
//   * free-list link checks (kLinkChecks: the links of a block unlinked point back to it);
//   * statistics: free bytes, low-water mark, used and free block counts;
//   * capheap's high-end carving of large requests.
// Not a library allocator: no locking, no decoration, aligned / realloc in their simplest form.
#pragma once

#include <cstddef>
#include <cstdint>

namespace capheap::bench {

/// kMode bit 0: free-list link checks; bit 1: compile-time geometry (granule 4, s 5).
template <int kMode>
class ProtoTlsf {
 public:
  ProtoTlsf() = default;
  /// Takes [mem, mem + bytes) (4-aligned). Granule 4, 8 or 16. False if unusable.
  bool init(void *mem, std::size_t bytes, unsigned granule = 4) noexcept;

  void *malloc(std::size_t n) noexcept;
  void free(void *p) noexcept;
  void *calloc(std::size_t count, std::size_t size) noexcept;
  void *realloc(void *p, std::size_t n) noexcept;
  void *aligned(std::size_t align, std::size_t n) noexcept;
  std::size_t usable(void *p) const noexcept;
  std::size_t free_bytes() const noexcept;
  std::size_t reports() const noexcept;

 private:
  unsigned char *base_ = nullptr;  ///< B: offsets (links) are from here; the control sits below
};

extern template class ProtoTlsf<0>;
extern template class ProtoTlsf<1>;
extern template class ProtoTlsf<2>;
extern template class ProtoTlsf<3>;

}  // namespace capheap::bench
