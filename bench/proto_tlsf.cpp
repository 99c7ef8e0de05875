// proto_tlsf.cpp — see proto_tlsf.hpp. The floor's layout (null node at offset 0, list heads that
// double as pseudo nodes, flat two-level bitmaps in the region) with a control block below the
// base, whose geometry and counters the hot paths load.
#include "proto_tlsf.hpp"

#include "tlsf_words.hpp"

#include <cstring>

namespace capheap::bench {
namespace {

using namespace tlsf_words;  // Word, Off, at/get/put, msb, ctz, all_but
using u32 = std::uint32_t;

constexpr Off kFree = 1;
constexpr Off kPrevFree = 2;
constexpr Off kNext = 4;
constexpr Off kPrev = 8;
constexpr Off kHeadAt = 12;
constexpr Off kMinBlock = 16;
constexpr Off kHighCarve = 12288;
constexpr unsigned kBits = sizeof(Off) * 8;

#define PROTO_INLINE TLSF_WORDS_INLINE

/// The control block, just below the base B.
struct Ctl {
  u32 first;     ///< offset of the first block
  u32 end;       ///< offset of the sentinel header
  u32 room_g;    ///< (end - first - 16) >> gl: free's range test
  u32 room4;     ///< (end - first - 16) >> 2: a list entry's range test
  u32 gl;        ///< log2 granule
  u32 s;         ///< second-level bits
  u32 mmin_bit;  ///< 1 << (s + gl): sizes below 2 << (s + gl) have granule-wide classes
  u32 k;         ///< (s + gl) << s
  u32 sl_off;    ///< offset of the bitmap words
  u32 free_bytes;
  u32 min_free;
  u32 used_blocks;
  u32 free_blocks;
  u32 reports;
};
constexpr Off kCtl = sizeof(Ctl);

PROTO_INLINE Ctl *ctl(unsigned char *b) noexcept {
  return reinterpret_cast<Ctl *>(b - kCtl);
}
/// kFixed: the geometry of every heap is granule 4, s 5 (compile-time constants).
template <bool kFixed = false>
PROTO_INLINE Off class_of(const Ctl *c, Off size) noexcept {
  if (kFixed) {
    const u32 m = msb(static_cast<u32>(size) | 128u);
    return Off{m << 5} + (size >> (m - 5)) - 224;
  }
  const u32 m = msb(static_cast<u32>(size) | c->mmin_bit);
  const u32 s = c->s;
  return (Off{m} << s) + (size >> (m - s)) - c->k;
}
PROTO_INLINE Off pseudo(Off idx) noexcept {
  return 4 * idx + 8;
}
/// t - from rotated right by 2 is at most room4: in range and 4-aligned.
PROTO_INLINE bool in4(Off t, Off from, Off room4) noexcept {
  const Off d = t - from;
  return ((d >> 2) | (d << (kBits - 2))) <= room4;
}

PROTO_INLINE void set_bit(unsigned char *b, const Ctl *c, Off idx) noexcept {
  at(b, c->sl_off + 4 * (idx >> 5)) |= 1u << (idx & 31);
  at(b, 0) |= 1u << (idx >> 5);
}
PROTO_INLINE void clear_bit(unsigned char *b, const Ctl *c, Off idx) noexcept {
  const Off wi = idx >> 5;
  if ((at(b, c->sl_off + 4 * wi) &= all_but(idx)) == 0) at(b, 0) &= all_but(wi);
}
template <bool kFixed = false>
PROTO_INLINE void insert(unsigned char *b, const Ctl *c, Off blk, Off size) noexcept {
  const Off ci = class_of<kFixed>(c, size);
  const Off h = get(b, 4 * ci + kHeadAt);
  put(b, blk + kNext, h);
  put(b, blk + kPrev, pseudo(ci));
  put(b, 4 * ci + kHeadAt, blk);
  if (h != 0) {
    put(b, h + kPrev, blk);
  } else {
    set_bit(b, c, ci);
  }
}
PROTO_INLINE void unlink(unsigned char *b, const Ctl *c, Off first, Off blk) noexcept {
  const Off nx = get(b, blk + kNext);
  const Off pv = get(b, blk + kPrev);
  put(b, pv + kNext, nx);
  put(b, nx + kPrev, pv);
  if (nx == 0 && pv < first) clear_bit(b, c, (pv - 8) >> 2);
}
/// The links of free block blk point back to it (a prev link may be a pseudo node: from 8 on).
PROTO_INLINE bool links_ok(unsigned char *b, Off first, Off end, Off blk) noexcept {
  const Off nx = get(b, blk + kNext);
  const Off pv = get(b, blk + kPrev);
  if (nx != 0 && (!in4(nx, first, (end - first - kMinBlock) >> 2) || get(b, nx + kPrev) != blk))
    return false;
  return in4(pv, 8, (end - 8 - kMinBlock) >> 2) && get(b, pv + kNext) == blk;
}

__attribute__((noinline, cold)) void *refuse(Ctl *c) noexcept {
  ++c->reports;
  return nullptr;
}
__attribute__((noinline, cold)) void bad_free(Ctl *c) noexcept {
  ++c->reports;
}

template <int kMode>
PROTO_INLINE void free_body(unsigned char *const B, void *p) noexcept {
  constexpr bool kLinkChecks = (kMode & 1) != 0;
  constexpr bool kFixed = (kMode & 2) != 0;
  Ctl *const c = ctl(B);
  const Off first = c->first, end = c->end;
  Off blk = static_cast<Off>(static_cast<unsigned char *>(p) - B) - 4;
  {
    const Off d = blk - first;
    const unsigned gl = kFixed ? 2 : c->gl;
    if (((d >> gl) | (d << ((kBits - gl) & (kBits - 1)))) > c->room_g) return bad_free(c);
  }
  const Off h = get(B, blk);
  Off size = h & ~Off{3};
  if ((h & kFree) != 0 || size - kMinBlock > end - blk - kMinBlock) return bad_free(c);
  const Off nb = blk + size;
  const Off hn = get(B, nb);
  if ((hn & kPrevFree) != 0) return bad_free(c);
  Off nsz = 0;
  if ((hn & kFree) != 0) {
    nsz = hn - kFree;
    if (nsz - kMinBlock > end - nb - kMinBlock) return bad_free(c);
    if (kLinkChecks && !links_ok(B, first, end, nb)) return bad_free(c);
  }
  Off ps = 0;
  if ((h & kPrevFree) != 0) {
    ps = get(B, blk - 4);
    if (ps < kMinBlock || ps > blk - first || get(B, blk - ps) != (ps | kFree)) return bad_free(c);
    if (kLinkChecks && !links_ok(B, first, end, blk - ps)) return bad_free(c);
  }
  c->free_bytes += static_cast<u32>(size);
  c->used_blocks -= 1;
  u32 fblocks = c->free_blocks + 1;
  if (nsz != 0) {
    unlink(B, c, first, nb);
    size += nsz;
    --fblocks;
  } else {
    put(B, nb, hn | kPrevFree);
  }
  if (ps != 0) {
    blk -= ps;
    unlink(B, c, first, blk);
    size += ps;
    --fblocks;
  }
  c->free_blocks = fblocks;
  put(B, blk, size | kFree);
  put(B, blk + size - 4, size);
  insert<kFixed>(B, c, blk, size);
}

}  // namespace

template <int kMode>
bool ProtoTlsf<kMode>::init(void *mem, std::size_t bytes, unsigned granule) noexcept {
  if (mem == nullptr || (reinterpret_cast<std::uintptr_t>(mem) & 3) != 0) return false;
  if (granule != 4 && granule != 8 && granule != 16) return false;
  if (bytes > (std::size_t{1} << 31)) bytes = std::size_t{1} << 31;
  if (bytes < kCtl + 512) return false;
  const u32 gl = msb(granule);
  unsigned char *const B = static_cast<unsigned char *>(mem) + kCtl;
  Ctl tmp{};
  const Off span = bytes - kCtl;
  u32 s = 0;
  for (Off limit = 256; s < 5 && span > limit;) {
    ++s;
    limit <<= s == 4 ? 4 : 2;
  }
  if ((kMode & 2) != 0) {
    if (granule != 4) return false;
    s = 5;
  }
  tmp.gl = gl;
  tmp.s = s;
  tmp.mmin_bit = 1u << (s + gl);
  tmp.k = (s + gl) << s;
  const Off classes = class_of(&tmp, span) + 1;
  const Off words = (classes + 31) / 32;
  tmp.sl_off = static_cast<u32>(kHeadAt + 4 * classes);
  Off first = tmp.sl_off + 4 * words;
  first += (0 - (reinterpret_cast<std::uintptr_t>(B) + first + 4)) & (granule - 1);
  if (first + 4 + 2 * kMinBlock > span) return false;
  const Off end = first + ((span - 4 - first) & ~Off{granule - 1});
  std::memset(B, 0, first);
  tmp.first = static_cast<u32>(first);
  tmp.end = static_cast<u32>(end);
  tmp.room_g = static_cast<u32>((end - first - kMinBlock) >> gl);
  tmp.room4 = static_cast<u32>((end - first - kMinBlock) >> 2);
  const Off size = end - first;
  tmp.free_bytes = tmp.min_free = static_cast<u32>(size);
  tmp.free_blocks = 1;
  std::memcpy(ctl(B), &tmp, sizeof tmp);
  put(B, first, size | kFree);
  put(B, first + size - 4, size);
  put(B, end, kPrevFree);
  insert(B, ctl(B), first, size);
  base_ = B;
  return true;
}

template <int kMode>
void *ProtoTlsf<kMode>::malloc(std::size_t n) noexcept {
  constexpr bool kLinkChecks = (kMode & 1) != 0;
  constexpr bool kFixed = (kMode & 2) != 0;
  unsigned char *const B = base_;
  Ctl *const c = ctl(B);
  const Off first = c->first, end = c->end;
  if (n - 1 >= end - first) return nullptr;  // also n == 0
  const unsigned gl = kFixed ? 2 : c->gl;
  Off size = (((n + 3) >> gl) + 1) << gl;  // n + header, rounded up to the granule
  if (size < kMinBlock) size = kMinBlock;
  if (size > end - first) return nullptr;
  Off idx = class_of<kFixed>(c, size);
  Off blk = get(B, 4 * idx + kHeadAt);
  Off hb;
  if (blk == 0 || (hb = get(B, blk)) < size) {
    Off wi = idx >> 5;
    u32 word = at(B, c->sl_off + 4 * wi) & (~1u << (idx & 31));
    if (word == 0) {
      const u32 f = at(B, 0) & (~1u << wi);
      if (f == 0) return nullptr;
      wi = ctz(f);
      word = at(B, c->sl_off + 4 * wi);
    }
    idx = (wi << 5) | ctz(word);
    blk = get(B, 4 * idx + kHeadAt);
    hb = get(B, blk);
  }
  // The entry is a sane free block: in range, free with its previous block in use, fits.
  const Off bsize = hb - kFree;
  if (!in4(blk, first, c->room4) || (hb & 3) != kFree || bsize - kMinBlock > end - blk - kMinBlock)
    return refuse(c);
  const Off nx = get(B, blk + kNext);
  if (kLinkChecks && nx != 0 && (!in4(nx, first, c->room4) || get(B, nx + kPrev) != blk))
    return refuse(c);
  // Pop the head of class idx.
  put(B, 4 * idx + kHeadAt, nx);
  put(B, nx + kPrev, pseudo(idx));
  if (nx == 0) clear_bit(B, c, idx);
  const Off rest = bsize - size;
  Off taken = size;
  Off at_off = blk;
  if (rest >= kMinBlock) {
    Off fresh = blk + size;
    if (size >= kHighCarve) {
      fresh = blk;
      at_off = blk + rest;
      put(B, blk + bsize, get(B, blk + bsize) & ~kPrevFree);
      put(B, at_off, size | kPrevFree);
    } else {
      put(B, blk, size);
    }
    put(B, fresh, rest | kFree);
    put(B, fresh + rest - 4, rest);
    insert<kFixed>(B, c, fresh, rest);
  } else {
    taken = bsize;
    put(B, blk, bsize);
    put(B, blk + bsize, get(B, blk + bsize) & ~kPrevFree);
    c->free_blocks -= 1;
  }
  c->used_blocks += 1;
  const u32 fb = c->free_bytes - static_cast<u32>(taken);
  c->free_bytes = fb;
  if (fb < c->min_free) c->min_free = fb;
  return B + at_off + 4;
}

template <int kMode>
void ProtoTlsf<kMode>::free(void *p) noexcept {
  if (p == nullptr) return;
  free_body<kMode>(base_, p);
}

template <int kMode>
std::size_t ProtoTlsf<kMode>::usable(void *p) const noexcept {
  return (get(static_cast<unsigned char *>(p), -Off{4}) & ~Off{3}) - 4;
}

template <int kMode>
std::size_t ProtoTlsf<kMode>::free_bytes() const noexcept {
  return ctl(base_)->free_bytes;
}

template <int kMode>
std::size_t ProtoTlsf<kMode>::reports() const noexcept {
  return ctl(base_)->reports;
}

template <int kMode>
void *ProtoTlsf<kMode>::calloc(std::size_t count, std::size_t size) noexcept {
  if (count != 0 && size > SIZE_MAX / count) return nullptr;
  void *p = malloc(count * size);
  if (p != nullptr) std::memset(p, 0, count * size);
  return p;
}

template <int kMode>
void *ProtoTlsf<kMode>::realloc(void *p, std::size_t n) noexcept {
  if (p == nullptr) return malloc(n);
  if (n == 0) {
    free_body<kMode>(base_, p);
    return nullptr;
  }
  void *q = malloc(n);
  if (q == nullptr) return nullptr;
  const std::size_t old = usable(p);
  std::memcpy(q, p, old < n ? old : n);
  free_body<kMode>(base_, p);
  return q;
}

/// Over-allocates by align + kMinBlock and gives the leading gap back through free.
template <int kMode>
void *ProtoTlsf<kMode>::aligned(std::size_t align, std::size_t n) noexcept {
  if (align == 0 || (align & (align - 1)) != 0 || n == 0) return nullptr;
  unsigned char *const B = base_;
  Ctl *const c = ctl(B);
  if (align <= (Off{1} << c->gl)) return malloc(n);
  if (n >= (Off{1} << 30) || align >= (Off{1} << 30)) return nullptr;
  auto *p = static_cast<unsigned char *>(malloc(n + align + kMinBlock));
  if (p == nullptr) return nullptr;
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  if ((addr & (align - 1)) == 0) return p;
  const std::uintptr_t q = (addr + kMinBlock + align - 1) & ~(std::uintptr_t{align} - 1);
  const Off blk = addr - reinterpret_cast<std::uintptr_t>(B) - 4;
  const Off nblk = q - reinterpret_cast<std::uintptr_t>(B) - 4;
  const Off h = get(B, blk);
  const Off gap = nblk - blk;
  put(B, nblk, (h & ~Off{3}) - gap);
  put(B, blk, gap | (h & kPrevFree));
  c->used_blocks += 1;  // the gap's free below counts one block out
  free_body<kMode>(B, B + blk + 4);
  return reinterpret_cast<void *>(q);
}

template class ProtoTlsf<0>;
template class ProtoTlsf<1>;
template class ProtoTlsf<2>;
template class ProtoTlsf<3>;

}  // namespace capheap::bench
