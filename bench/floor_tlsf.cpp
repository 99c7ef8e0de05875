// floor_tlsf.cpp — see floor_tlsf.hpp. Written for the fewest instructions per malloc / free;
// the helpers are forced inline so that malloc and free are each one leaf function.
#include "floor_tlsf.hpp"

#include "tlsf_words.hpp"

#include <cstring>

namespace capheap::bench {
namespace {

using namespace tlsf_words;  // Word, Off, at/get/put, msb, ctz, all_but

constexpr Off kFree = 1;
constexpr Off kPrevFree = 2;

#define FLOOR_INLINE TLSF_WORDS_INLINE

/// The word at pointer q (block fields addressed from a block pointer held in a register).
FLOOR_INLINE Word &w(unsigned char *q) noexcept {
  return *reinterpret_cast<Word *>(q);
}
// Fields of block blk: header, next / prev free links.
constexpr Off kNext = 4;
constexpr Off kPrev = 8;

/// Class of a block size (multiple of 4, >= 16): exact 4-byte classes below 256, then 32
/// classes per power of two.
FLOOR_INLINE Off class_of(Off size) noexcept {
  const std::uint32_t m = msb(static_cast<std::uint32_t>(size) | 128u);
  return Off{m << 5} + (size >> (m - 5)) - 224;
}

/// Class from which every block is at least size (TLSF's good fit): size rounded up to the next
/// class boundary. (size + w - 1) >> sh may reach 64, which is the next row's class 0.
FLOOR_INLINE Off class_up(Off size) noexcept {
  const std::uint32_t m = msb(static_cast<std::uint32_t>(size) | 128u);
  const std::uint32_t sh = m - 5;
  return Off{m << 5} + ((size + (Off{1} << sh) - 1) >> sh) - 224;
}

/// Offset of class idx's pseudo node (its next field, at 4 * idx + 12, is the list head).
FLOOR_INLINE Off pseudo(Off idx) noexcept {
  return 4 * idx + 8;
}
constexpr Off kHeadAt = 12;  // head(idx) is at 4 * idx + kHeadAt
// The geometry does not depend on the variant.
constexpr Off kSl = FloorTlsf<false>::kSl;
constexpr Off kFirst = FloorTlsf<false>::kFirst;

}  // namespace

// The bitmaps live in the region too (first level at offset 0, the null node's unused header
// word; second level at kSl), so that malloc and free need only the base in a register.
#define FLOOR_SL(B, fl) at(B, 4 * (fl) + kSl)
#define FLOOR_FL(B) at(B, 0)

#define FLOOR_SET_BIT(B, idx)                    \
  do {                                           \
    FLOOR_SL(B, (idx) >> 5) |= 1u << ((idx)&31); \
    FLOOR_FL(B) |= 1u << ((idx) >> 5);           \
  } while (0)

#define FLOOR_CLEAR_BIT(B, idx)                                               \
  do {                                                                        \
    const Off fl_ = (idx) >> 5;                                               \
    if ((FLOOR_SL(B, fl_) &= all_but(idx)) == 0) FLOOR_FL(B) &= all_but(fl_); \
  } while (0)

/// Puts free block bp (offset blk; header and footer already written) at the head of its class.
#define FLOOR_INSERT(B, bp, blk, size)                         \
  do {                                                         \
    const Off ci_ = class_of(size);                            \
    const Off h_ = get(B, 4 * ci_ + kHeadAt);                  \
    w((bp) + kNext) = static_cast<std::uint32_t>(h_);          \
    w((bp) + kPrev) = static_cast<std::uint32_t>(pseudo(ci_)); \
    put(B, 4 * ci_ + kHeadAt, blk);                            \
    if (h_ != 0) {                                             \
      put(B, h_ + kPrev, blk);                                 \
    } else {                                                   \
      FLOOR_SET_BIT(B, ci_);                                   \
    }                                                          \
  } while (0)

/// Takes free block bp out of its list. The null node and the pseudo nodes absorb the stores at
/// the list ends; the list became empty iff the next link is null and the prev link a pseudo node.
#define FLOOR_UNLINK(B, bp)           \
  do {                                \
    const Off nx_ = w((bp) + kNext);  \
    const Off pv_ = w((bp) + kPrev);  \
    put(B, pv_ + kNext, nx_);         \
    put(B, nx_ + kPrev, pv_);         \
    if (nx_ == 0 && pv_ < kFirst) {   \
      const Off ei_ = (pv_ - 8) >> 2; \
      FLOOR_CLEAR_BIT(B, ei_);        \
    }                                 \
  } while (0)

template <bool kGoodFit>
bool FloorTlsf<kGoodFit>::init(void *mem, std::size_t bytes) noexcept {
  if (mem == nullptr || (reinterpret_cast<std::uintptr_t>(mem) & 3) != 0) return false;
  bytes &= ~std::size_t{3};
  if (bytes < kFirst + 2 * kMinBlock || bytes >= kMaxRegion) return false;
  base_ = static_cast<unsigned char *>(mem);
  std::memset(base_, 0, kFirst);
  unsigned char *const B = base_;
  const Off end = bytes - 4;  // epilogue header
  const Off blk = kFirst;
  const Off size = end - blk;
  put(B, blk, size | kFree);
  put(B, blk + size - 4, size);
  put(B, end, kPrevFree);
  FLOOR_INSERT(B, B + blk, blk, size);
  return true;
}

template <bool kGoodFit>
void *FloorTlsf<kGoodFit>::malloc(std::size_t n) noexcept {
  if (n - 1 >= kMaxRequest) return nullptr;  // also n == 0
  Off size = (n + 7) & ~Off{3};
  if (size < kMinBlock) size = kMinBlock;
  unsigned char *const B = base_;
  Off idx;
  Off blk;
  Off hb;
  // The bitmap search is written out in both variants: as one shared helper (a search from or
  // above idx, reporting failure) it cost the floor 0.1-1.2 instructions per malloc, and this
  // file exists to be the lower bound.
  if constexpr (kGoodFit) {
    idx = class_up(size);
    const Off fl = idx >> 5;
    const std::uint32_t w = FLOOR_SL(B, fl) & (~0u << (idx & 31));
    if (w != 0) {
      idx = (idx & ~Off{31}) | ctz(w);
    } else {
      const std::uint32_t f = FLOOR_FL(B) & (~1u << fl);
      if (f == 0) return nullptr;
      const Off fl2 = ctz(f);
      idx = (fl2 << 5) | ctz(FLOOR_SL(B, fl2));
    }
    blk = get(B, 4 * idx + kHeadAt);
    hb = get(B, blk);
  } else {
    idx = class_of(size);
    blk = get(B, 4 * idx + kHeadAt);
    // FREE in the header's bit 0, size a multiple of 4; the null node's header word (the first-
    // level bitmap) is never read as a header.
    if (blk == 0 || (hb = get(B, blk)) < size) {
      const Off fl = idx >> 5;
      const std::uint32_t w = FLOOR_SL(B, fl) & (~1u << (idx & 31));
      if (w != 0) {
        idx = (idx & ~Off{31}) | ctz(w);
      } else {
        const std::uint32_t f = FLOOR_FL(B) & (~1u << fl);
        if (f == 0) return nullptr;
        const Off fl2 = ctz(f);
        idx = (fl2 << 5) | ctz(FLOOR_SL(B, fl2));
      }
      blk = get(B, 4 * idx + kHeadAt);
      hb = get(B, blk);
    }
  }
  // Pop the head of class idx.
  unsigned char *const bp = B + blk;
  const Off nx = w(bp + kNext);
  put(B, 4 * idx + kHeadAt, nx);
  put(B, nx + kPrev, pseudo(idx));
  if (nx == 0) FLOOR_CLEAR_BIT(B, idx);
  // A free block's prev is in use: its header is bsize | kFree.
  const Off bsize = hb - kFree;
  const Off rest = bsize - size;
  if (rest >= kMinBlock) {
    w(bp) = static_cast<std::uint32_t>(size);
    unsigned char *const rp = bp + size;
    w(rp) = static_cast<std::uint32_t>(rest | kFree);
    w(bp + bsize - 4) = static_cast<std::uint32_t>(rest);  // the next block keeps PREV_FREE
    FLOOR_INSERT(B, rp, blk + size, rest);
  } else {
    w(bp) = static_cast<std::uint32_t>(bsize);
    w(bp + bsize) &= ~static_cast<std::uint32_t>(kPrevFree);
  }
  return bp + 4;
}

namespace {

/// free's body. kCase < 0: the real free (tests both neighbours); 0..3 (bit 0: the next block is
/// free, bit 1: the previous one is): that case only, for FLOOR_SPLIT_FREE_CASES builds.
template <int kCase>
FLOOR_INLINE void free_body(unsigned char *const B, unsigned char *bp) noexcept {
  const Off h = w(bp);
  Off size = h & ~Off{3};
  unsigned char *const np = bp + size;
  const Off hn = w(np);
  if (kCase < 0 ? (hn & kFree) != 0 : (kCase & 1) != 0) {
    FLOOR_UNLINK(B, np);
    size += hn - kFree;  // np's prev (bp) was in use
  } else {
    w(np) = static_cast<std::uint32_t>(hn | kPrevFree);
  }
  if (kCase < 0 ? (h & kPrevFree) != 0 : (kCase & 2) != 0) {
    const Off ps = w(bp - 4);
    bp -= ps;
    FLOOR_UNLINK(B, bp);
    size += ps;
  }
  w(bp) = static_cast<std::uint32_t>(size | kFree);
  w(bp + size - 4) = static_cast<std::uint32_t>(size);
  FLOOR_INSERT(B, bp, static_cast<Off>(bp - B), size);
}

#ifdef FLOOR_SPLIT_FREE_CASES
// Instrumented build only: one never-inlined function per case, so callgrind counts each.
__attribute__((noipa)) void floor_free_no_merge(unsigned char *B, unsigned char *bp) noexcept {
  free_body<0>(B, bp);
}
__attribute__((noipa)) void floor_free_merge_next(unsigned char *B, unsigned char *bp) noexcept {
  free_body<1>(B, bp);
}
__attribute__((noipa)) void floor_free_merge_prev(unsigned char *B, unsigned char *bp) noexcept {
  free_body<2>(B, bp);
}
__attribute__((noipa)) void floor_free_merge_both(unsigned char *B, unsigned char *bp) noexcept {
  free_body<3>(B, bp);
}
#endif

}  // namespace

template <bool kGoodFit>
void FloorTlsf<kGoodFit>::free(void *p) noexcept {
  if (p == nullptr) return;
  // The block is addressed from the caller's pointer; only the links (offsets) need the base.
  unsigned char *const bp = static_cast<unsigned char *>(p) - 4;
#ifdef FLOOR_SPLIT_FREE_CASES
  const Off h = w(bp);
  const Off hn = w(bp + (h & ~Off{3}));
  switch ((hn & kFree) | (h & kPrevFree)) {
    case 0:
      floor_free_no_merge(base_, bp);
      break;
    case 1:
      floor_free_merge_next(base_, bp);
      break;
    case 2:
      floor_free_merge_prev(base_, bp);
      break;
    default:
      floor_free_merge_both(base_, bp);
      break;
  }
#else
  free_body<-1>(base_, bp);
#endif
}

template <bool kGoodFit>
std::size_t FloorTlsf<kGoodFit>::usable(void *p) const noexcept {
  const auto blk = static_cast<Off>(static_cast<unsigned char *>(p) - base_) - 4;
  return (get(base_, blk) & ~Off{3}) - 4;
}

template <bool kGoodFit>
void *FloorTlsf<kGoodFit>::calloc(std::size_t count, std::size_t size) noexcept {
  if (count != 0 && size > SIZE_MAX / count) return nullptr;
  void *p = malloc(count * size);
  if (p != nullptr) std::memset(p, 0, count * size);
  return p;
}

template <bool kGoodFit>
void *FloorTlsf<kGoodFit>::realloc(void *p, std::size_t n) noexcept {
  if (p == nullptr) return malloc(n);
  if (n == 0) {
    free_body<-1>(base_, static_cast<unsigned char *>(p) - 4);
    return nullptr;
  }
  void *q = malloc(n);
  if (q == nullptr) return nullptr;
  const std::size_t old = usable(p);
  std::memcpy(q, p, old < n ? old : n);
  free_body<-1>(base_, static_cast<unsigned char *>(p) - 4);  // not the measured free
  return q;
}

/// Over-allocates by align + kMinBlock and gives the leading gap back as its own free block.
template <bool kGoodFit>
void *FloorTlsf<kGoodFit>::aligned(std::size_t align, std::size_t n) noexcept {
  if (align == 0 || (align & (align - 1)) != 0 || n == 0) return nullptr;
  if (align <= 4) return malloc(n);
  if (n >= kMaxRequest || align >= kMaxRequest) return nullptr;
  auto *p = static_cast<unsigned char *>(malloc(n + align + kMinBlock));
  if (p == nullptr) return nullptr;
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  if ((addr & (align - 1)) == 0) return p;  // the tail stays with the block
  std::uintptr_t q = (addr + kMinBlock + align - 1) & ~(std::uintptr_t{align} - 1);
  unsigned char *const B = base_;
  const Off blk = addr - reinterpret_cast<std::uintptr_t>(B) - 4;
  const Off nblk = q - reinterpret_cast<std::uintptr_t>(B) - 4;
  const Off h = get(B, blk);
  const Off gap = nblk - blk;
  put(B, nblk, (h & ~Off{3}) - gap);  // in use, prev (the gap) in use until the gap is freed
  put(B, blk, gap | (h & kPrevFree));
  // The gap: coalesces with a free previous block, marks nblk PREV_FREE.
  free_body<-1>(B, blk + B);
  return reinterpret_cast<void *>(q);
}

template class FloorTlsf<false>;
template class FloorTlsf<true>;

}  // namespace capheap::bench
