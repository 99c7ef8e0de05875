// floor_tlsf.hpp — a minimal, speed-first TLSF for measuring the instruction-count floor of a
// two-level segregated-fit allocator with immediate coalescing (bench only; never used by the
// library). Written from the published algorithm (Masmano, Ripoll, Crespo, Real: "TLSF: a new
// dynamic memory allocator for real-time systems", ECRTS 2004), deliberately WITHOUT any checks
// (no double-free / pointer / header validation), statistics, locking or poisoning: it is a lower
// bound for what such an allocator costs per call, not an allocator to use.
//
// Geometry (compile-time constants, the 32-bit-target layout on the 64-bit host):
//   * block sizes are multiples of 4 and include a 4-byte header word: size | FREE (bit 0) |
//     PREV_FREE (bit 1); the payload starts right after the header (4-byte aligned);
//   * a free block holds next / prev free-list links as 32-bit offsets from the region base at
//     +4 / +8 and its size in its last word (footer), so free finds a free previous block in
//     O(1) through the PREV_FREE flag of its own header; minimum block 16 bytes;
//   * classes: sizes below 256 bytes in exact 4-byte classes (the linear row), above that 32
//     second-level classes (sl_log2 = 5) per power of two; flat class index
//       m = max(msb(size), 7); idx = 32*m + (size >> (m - 5)) - 224;
//     kFirstLevels = 20 first-level rows cover blocks below 64 MiB;
//   * two-level bitmap (first-level word, 32-bit second-level words), in the region.
//
// Region layout (offsets from the base, which is what a link holds; 0 is the null link):
//   [0, 12)          the null node: a scratch block whose next/prev fields absorb the stores to
//                    "next of the last block" / "prev of the null link", so unlinking needs no
//                    branch for the list ends; its header word is the first-level bitmap
//   [12, 12 + 4*C)   the list heads; head i doubles as the next field of a pseudo node at offset
//                    12 + 4*i - 4, which is the prev link of a list's first block, so unlinking a
//                    head needs no class computation either (and its offset gives the class)
//   [kSl, kFirst)    the second-level bitmaps (kFirstLevels words)
//   [kFirst, end-4)  the blocks; the last word of the region is an epilogue header (size 0, used)
//
// Variants (template parameter kGoodFit):
//   false  "head check": map the request to its own class; take that class's head if it is
//          large enough (always true below 256 bytes, where classes are exact), else the first
//          non-empty larger class from the bitmaps
//   true   TLSF's classic good fit: round the request up to the next class boundary so every
//          block of the class found fits, then search the bitmaps from there (no head check)
#pragma once

#include <cstddef>
#include <cstdint>

namespace capheap::bench {

template <bool kGoodFit>
class FloorTlsf {
 public:
  static constexpr std::uint32_t kFirstLevels = 20;
  static constexpr std::uint32_t kClasses = kFirstLevels * 32;
  static constexpr std::uint32_t kHeads = 12;
  static constexpr std::uint32_t kSl = kHeads + 4 * kClasses;
  static constexpr std::uint32_t kFirst = kSl + 4 * kFirstLevels;
  static constexpr std::uint32_t kMinBlock = 16;
  static constexpr std::size_t kMaxRegion = std::size_t{1} << 26;
  /// Requests from this size on fail at once (with n - 1: also malloc(0)).
  static constexpr std::size_t kMaxRequest = std::size_t{1} << 25;

  FloorTlsf() = default;
  /// Takes [mem, mem + bytes) (4-aligned, kFirst + 32 <= bytes < kMaxRegion). False if unusable.
  bool init(void *mem, std::size_t bytes) noexcept;

  void *malloc(std::size_t n) noexcept;
  void free(void *p) noexcept;
  // Not measured: the simplest correct versions.
  void *calloc(std::size_t count, std::size_t size) noexcept;
  void *realloc(void *p, std::size_t n) noexcept;
  void *aligned(std::size_t align, std::size_t n) noexcept;
  std::size_t usable(void *p) const noexcept;

 private:
  unsigned char *base_ = nullptr;
};

extern template class FloorTlsf<false>;
extern template class FloorTlsf<true>;

}  // namespace capheap::bench
