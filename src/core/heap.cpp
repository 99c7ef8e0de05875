// heap.cpp — capheap's region allocator engine (two-level segregated fit, 32-bit offsets).
//
// The layout it manipulates is declared and drawn in block_layout.hpp; read that first. Every
// operation here is O(1): a class lookup, at most kFitScan list entries, two bit scans and a
// constant number of neighbour updates. Only validate() and walk() visit every block.
//
// No locks (callers serialise), no allocation, no I/O. Detected corruption goes through the port's
// fail hook (check.hpp) and the operation is refused before anything is modified.

#include "capheap/heap.hpp"

#include "core/block_layout.hpp"
#include "core/engine.hpp"
#include "core/check.hpp"

namespace capheap {

using detail::Control;
using detail::kFitScan;
using detail::kFree;
using detail::kHeaderBytes;
using detail::kHighCarveBytes;
using detail::kMallocScan;
using detail::kMinBlockBytes;
using detail::kNextFreeField;
using detail::kPrevFree;
using detail::kPrevFreeField;
using detail::kSizeMask;
using detail::load_word;
using detail::SizeClass;
using detail::store_word;
using detail::u32;

namespace {

// ================================================================================================
// Small helpers
// ================================================================================================

// Forced inlining of the hot-path helpers (host speed). Firmware builds optimised for size define
// CAPHEAP_INLINE as plain `inline` (CMake option CAPHEAP_FORCE_INLINE=OFF, docs/porting.md).
#ifndef CAPHEAP_INLINE
#define CAPHEAP_INLINE inline __attribute__((always_inline))
#endif
// Compact forms (CMake: CAPHEAP_FORCE_INLINE=OFF defines CAPHEAP_COMPACT=1): where the host build
// keeps a copy of a routine specialised for each case, firmware builds run one shared routine
// with the same results (the same blocks, list order, counters, checks and reports).
#ifndef CAPHEAP_COMPACT
#define CAPHEAP_COMPACT 0
#endif
// Detailed corruption reports (CMake CAPHEAP_DETAILED_REPORTS, ON on hosts): a failed live-block
// check walks the chain to name the cause; 0 reports one text per kind of failure.
#ifndef CAPHEAP_DETAILED_REPORTS
#define CAPHEAP_DETAILED_REPORTS 1
#endif

#ifndef CAPHEAP_WITH_DECORATION
#define CAPHEAP_WITH_DECORATION 1
#endif
#if CAPHEAP_WITH_DECORATION
#define CAPHEAP_DECORATED(c) CAPHEAP_UNLIKELY((c)->debug != 0)
#else
#define CAPHEAP_DECORATED(c) false
#endif

CAPHEAP_INLINE u32 msb_index(u32 v) noexcept {
  return 31u - static_cast<u32>(__builtin_clz(v));
}
CAPHEAP_INLINE u32 lsb_index(u32 v) noexcept {
  return static_cast<u32>(__builtin_ctz(v));
}
inline bool is_pow2(std::size_t v) noexcept {
  return v != 0 && (v & (v - 1)) == 0;
}
CAPHEAP_INLINE std::uintptr_t addr_of(const void *p) noexcept {
  return reinterpret_cast<std::uintptr_t>(p);
}

// free_bytes and min_free_bytes are written under the heap's lock but read without it
// (multi_heap_free_size, heap_caps_get_free_size and friends): relaxed atomic stores and loads
// (plain moves on every target) make those reads well-defined.
CAPHEAP_INLINE void set_counter(u32 &field, u32 v) noexcept {
  __atomic_store_n(&field, v, __ATOMIC_RELAXED);
}
CAPHEAP_INLINE u32 read_counter(const u32 &field) noexcept {
  return __atomic_load_n(&field, __ATOMIC_RELAXED);
}

/// The heap for one operation: the control structure's address, from which every geometry field
/// and table is read where it is used. Metadata stores go through byte pointers that may alias the
/// control structure, so the compiler reloads a field after a store (one load), where copies in
/// locals were kept in registers across the whole operation and spilled to the stack (measured:
/// 5-7 instructions more per call). One pointer, so helpers that are not inlined (firmware builds
/// optimised for size) take it by value in a register.
struct Ctx {
  Control *c;

  CAPHEAP_INLINE explicit Ctx(const Control *control) noexcept
      : c(const_cast<Control *>(control)) {}

  CAPHEAP_INLINE unsigned char *base() const noexcept { return detail::bytes_of(c); }
  CAPHEAP_INLINE u32 *heads() const noexcept { return detail::list_heads(c); }
  CAPHEAP_INLINE u32 *bits() const noexcept { return heads() + (u32(c->fl_count) << sl_log2()); }
  CAPHEAP_INLINE u32 first() const noexcept { return c->first; }
  CAPHEAP_INLINE u32 end() const noexcept { return c->end; }
  CAPHEAP_INLINE u32 g_log2() const noexcept { return c->granule_log2; }
  CAPHEAP_INLINE u32 sl_log2() const noexcept { return c->sl_log2; }
  CAPHEAP_INLINE u32 small_log2() const noexcept { return c->small_log2; }
  CAPHEAP_INLINE u32 fl_shift() const noexcept { return c->fl_shift; }

  CAPHEAP_INLINE u32 span() const noexcept { return end() - first(); }
  CAPHEAP_INLINE u32 granule() const noexcept { return 1u << g_log2(); }
  CAPHEAP_INLINE u32 word(u32 off) const noexcept {
    u32 v;
    __builtin_memcpy(&v, __builtin_assume_aligned(base() + off, 4), sizeof v);
    return v;
  }
  CAPHEAP_INLINE void set_word(u32 off, u32 v) const noexcept {
    __builtin_memcpy(__builtin_assume_aligned(base() + off, 4), &v, sizeof v);
  }
  CAPHEAP_INLINE u32 header(u32 blk) const noexcept { return word(blk); }
  CAPHEAP_INLINE void set_header(u32 blk, u32 h) const noexcept { set_word(blk, h); }
  CAPHEAP_INLINE u32 size_at(u32 blk) const noexcept { return word(blk) & kSizeMask; }
  CAPHEAP_INLINE u32 next_free(u32 blk) const noexcept { return word(blk + kNextFreeField); }
  CAPHEAP_INLINE u32 prev_free(u32 blk) const noexcept { return word(blk + kPrevFreeField); }
  CAPHEAP_INLINE void set_footer(u32 blk, u32 size) const noexcept {
    set_word(blk + size - 4, size);
  }
  CAPHEAP_INLINE void *data(u32 blk) const noexcept { return base() + blk + kHeaderBytes; }
  CAPHEAP_INLINE const void *id() const noexcept { return detail::heap_id(c); }
};

// The operations on a Ctx are free functions taking it by value: a helper that is not inlined
// (firmware builds optimised for size) receives the control structure's address in a register.

/// The size class a block of `size` bytes is filed under.
CAPHEAP_INLINE SizeClass class_of(Ctx x, u32 size) noexcept {
  if (size < (1u << x.small_log2())) return {0, size >> x.g_log2()};
  const u32 m = msb_index(size);
  return {m - x.fl_shift(), (size >> (m - x.sl_log2())) ^ (1u << x.sl_log2())};
}
CAPHEAP_INLINE u32 list_index(Ctx x, SizeClass k) noexcept {
  return (k.fl << x.sl_log2()) + k.sl;
}

/// list_index(class_of(size)) without a branch. With m = floor(log2(size | 2^small_log2)):
/// sizes at or above 2^small_log2 keep their own m and get the two-level index (first level
/// m - fl_shift, second level the sl_log2 bits below the top one, whose top bit SL the final
/// "- SL" removes). Sizes in the linear row (only where it exists: small_log2 = sl_log2 + g_log2,
/// fl_shift = small_log2 - 1) get m = small_log2, so the first term is SL and the second is
/// size >> g_log2: the row's own index. "(a << sl_log2) - SL" is computed as (a - 1) << sl_log2
/// (equal modulo 2^32), one use of sl_log2 and one subtraction fewer.
CAPHEAP_INLINE u32 index_from_m(u32 size, u32 m, u32 fl_shift, u32 sl_log2) noexcept {
  return ((m - fl_shift - 1) << sl_log2) + (size >> (m - sl_log2));
}
CAPHEAP_INLINE u32 index_of(Ctx x, u32 size) noexcept {
  const u32 m = msb_index(size | (1u << x.small_log2()));
  return index_from_m(size, m, x.fl_shift(), x.sl_log2());
}

/// Block size for a request of `request` usable bytes; 0 if no block of this heap can hold it.
CAPHEAP_INLINE u32 block_for_request(Ctx x, std::size_t request) noexcept {
  // Keeps the arithmetic below far from overflow. The compact form refuses 0 too (its malloc
  // needs no test of its own; the other callers refuse 0 first).
#if CAPHEAP_COMPACT
  if (request - 1 >= x.span()) return 0;
#else
  if (request > x.span()) return 0;
#endif
  const u32 g = x.granule();
  u32 b = (static_cast<u32>(request) + kHeaderBytes + g - 1) & ~(g - 1);
  if (b < kMinBlockBytes) b = kMinBlockBytes;
  return b > x.span() ? 0 : b;
}

/// Header offset of the block whose data pointer is p, or 0 if p cannot be a block of this heap
/// (outside the block area or misaligned). Does not look at memory.
CAPHEAP_INLINE u32 block_of_pointer(Ctx x, const void *p) noexcept {
  const std::uintptr_t rel = addr_of(p) - addr_of(x.base()) - kHeaderBytes - x.first();
  if (rel >= x.span() || (addr_of(p) & (x.granule() - 1)) != 0) return 0;
  return x.first() + static_cast<u32>(rel);
}

/// O(1) sanity check of a free-list entry before trusting it: inside the block area, 4-aligned,
/// marked free, with a size that fits. (Firmware built for size runs entry_ok()'s copy instead.)
#if !CAPHEAP_COMPACT
CAPHEAP_INLINE bool free_entry_ok(Ctx x, u32 blk) noexcept {
  if (blk - x.first() >= x.span() || (blk & 3u) != 0) return false;
  const u32 h = x.header(blk);
  const u32 size = h & kSizeMask;
  return (h & kFree) != 0 && size >= kMinBlockBytes && size <= x.end() - blk;
}
#endif

/// True if a free-list link may be followed: a 4-aligned header offset with room for a whole
/// free block (header, links, footer) before the sentinel, so reading or writing its links stays
/// inside the region. Whether it really is a free block is not looked at: links_ok() asks that it
/// points back, which a damaged link practically never does.
[[maybe_unused]] CAPHEAP_INLINE bool link_target_ok(Ctx x, u32 t) noexcept {
  return t - x.first() <= x.span() - kMinBlockBytes && (t & 3u) == 0;
}

// Free-list link checks (next_link_ok, links_ok_at): part of the always-on tier. Firmware built for
// size (CAPHEAP_COMPACT) may define CAPHEAP_LINK_CHECKS=0 to drop them (about 100 bytes of
// Cortex-M4 code; design.md section 3); host builds always run them.
#ifndef CAPHEAP_LINK_CHECKS
#define CAPHEAP_LINK_CHECKS 1
#endif

/// O(1) check of a listed free block's links (filed under list idx) before anything follows
/// them: its successor points back to it, and its predecessor points to it (or, without one, its
/// class's list starts at it). What unlinking relies on, and nothing more (the hot paths pay for
/// it on every split and merge).
#if CAPHEAP_COMPACT
// Firmware built for size runs every check of a listed free block through one routine, entry_ok():
// the entry itself (free_entry_ok), then as much of its links as `what` asks for.
constexpr u32 kEntryOnly = ~0u;  ///< entry_ok(): free_entry_ok() only
constexpr u32 kNextLink = ~1u;   ///< entry_ok(): and the successor link (a list head's check)

/// free_entry_ok(blk), then (unless `what` is kEntryOnly) its successor is 0 or points back to it,
/// then (unless `what` is kNextLink; `what` is then the list blk is filed under) its predecessor
/// points to it, or without one the list starts at it.
bool entry_ok(Ctx x, u32 blk, u32 what) noexcept {
  // (The entry itself: the compact form of free_entry_ok() is this routine with kEntryOnly.)
  if (blk - x.first() >= x.span() || (blk & 3u) != 0) return false;
  const u32 h = x.header(blk);
  const u32 size = h & kSizeMask;
  if ((h & kFree) == 0 || size < kMinBlockBytes || size > x.end() - blk) return false;
#if CAPHEAP_LINK_CHECKS
  if (what == kEntryOnly) return true;
  // The successor's predecessor link (its field 8), then the predecessor's successor link (its
  // field 4), must name blk: field f of blk names a block whose field 12 - f names blk.
  for (u32 f = kNextFreeField;; f = kPrevFreeField) {
    const u32 t = x.word(blk + f);
    if (t != 0) {
      if (!link_target_ok(x, t) || x.word(t + (kNextFreeField + kPrevFreeField - f)) != blk)
        return false;
    } else if (f == kPrevFreeField) {
      return x.heads()[what] == blk;  // no predecessor: blk heads its list
    }
    if (f == kPrevFreeField || what == kNextLink) return true;
  }
#else
  static_cast<void>(what);
  return true;
#endif
}
/// free_entry_ok() of the host form: entry_ok()'s first part, so that the check exists once.
CAPHEAP_INLINE bool free_entry_ok(Ctx x, u32 blk) noexcept {
  return entry_ok(x, blk, kEntryOnly);
}
/// links_ok_at() of the host form: entry_ok() with the links of the list idx (used where the
/// entry is known to be sane, so the result is the links' alone).
CAPHEAP_INLINE bool links_ok_at(Ctx x, u32 blk, u32 idx) noexcept {
  return entry_ok(x, blk, idx);
}
#else
CAPHEAP_INLINE bool links_ok_at(Ctx x, u32 blk, u32 idx) noexcept {
  const u32 nf = x.next_free(blk), pf = x.prev_free(blk);
  if (nf != 0 && (!link_target_ok(x, nf) || x.prev_free(nf) != blk)) return false;
  if (pf == 0) return x.heads()[idx] == blk;
  return link_target_ok(x, pf) && x.next_free(pf) == blk;
}
#endif
/// links_ok_at() for a block of `size` (sane) bytes.
[[maybe_unused]] CAPHEAP_INLINE bool links_ok(Ctx x, u32 blk, u32 size) noexcept {
  return links_ok_at(x, blk, index_of(x, size));
}

// ---- Free lists (by flat list index: first level idx >> sl_log2, second idx & (SL - 1)) -------

#if !CAPHEAP_COMPACT
CAPHEAP_INLINE void set_class_bit(Ctx x, u32 idx) noexcept {
  x.bits()[idx / 32] |= 1u << (idx % 32);
  x.c->word_bitmap |= 1u << (idx / 32);
}
CAPHEAP_INLINE void clear_class_bit(Ctx x, u32 idx) noexcept {
  u32 &w = x.bits()[idx / 32];
  w &= ~(1u << (idx % 32));
  if (w == 0) x.c->word_bitmap &= ~(1u << (idx / 32));
}
#endif

#if CAPHEAP_COMPACT
// Firmware built for size: every list change is made of connect() steps. A listed block is always
// filed under the list of its size, so the list to unlink from is computed here, not by callers.

/// a's successor becomes b (a == 0: b heads list idx); b's predecessor becomes a (b == 0: none).
void connect(Ctx x, u32 a, u32 b, u32 idx) noexcept {
  if (a != 0) {
    x.set_word(a + kNextFreeField, b);
  } else {
    x.heads()[idx] = b;
  }
  if (b != 0) x.set_word(b + kPrevFreeField, a);
}

/// set_class_bit() (on) or clear_class_bit() (!on) in one routine.
__attribute__((noinline)) void class_bit(Ctx x, u32 idx, bool on) noexcept {
  u32 &w = x.bits()[idx / 32];
  const u32 m = 1u << (idx % 32), wm = 1u << (idx / 32);
  if (on) {
    w |= m;
    x.c->word_bitmap |= wm;
    return;
  }
  w &= ~m;
  if (w == 0) x.c->word_bitmap &= ~wm;
}

/// Unlinks the listed free block blk from the list of its size; returns that list.
u32 list_remove(Ctx x, u32 blk) noexcept {
  const u32 idx = index_of(x, x.size_at(blk));
  connect(x, x.prev_free(blk), x.next_free(blk), idx);
  if (x.heads()[idx] == 0) class_bit(x, idx, false);
  return idx;
}
/// list_remove() with the list the caller knows (it is the list of blk's size).
CAPHEAP_INLINE void list_remove(Ctx x, u32 blk, u32) noexcept {
  list_remove(x, blk);
}

/// Links blk into list idx after the listed block prev (0: at the head).
void list_insert_after(Ctx x, u32 blk, u32 idx, u32 prev) noexcept {
  const u32 next = prev != 0 ? x.next_free(prev) : x.heads()[idx];
  connect(x, prev, blk, idx);
  connect(x, blk, next, idx);
  if ((prev | next) == 0) class_bit(x, idx, true);  // the list was empty
}
#else
CAPHEAP_INLINE void list_insert(Ctx x, u32 blk, u32 idx) noexcept {
  const u32 old = x.heads()[idx];
  x.set_word(blk + kNextFreeField, old);
  x.set_word(blk + kPrevFreeField, 0);
  x.heads()[idx] = blk;
  if (old != 0) {
    x.set_word(old + kPrevFreeField, blk);  // the list was not empty: its bits are set already
    return;
  }
  set_class_bit(x, idx);
}

/// Unlinks blk from list idx, given its predecessor `prev` (0: blk heads the list).
CAPHEAP_INLINE void list_unlink(Ctx x, u32 blk, u32 idx, u32 prev) noexcept {
  const u32 next = x.next_free(blk);
  if (prev != 0) {
    x.set_word(prev + kNextFreeField, next);
    if (next != 0) x.set_word(next + kPrevFreeField, prev);
    return;
  }
  x.heads()[idx] = next;
  if (next != 0) {
    x.set_word(next + kPrevFreeField, 0);
    return;
  }
  clear_class_bit(x, idx);
}
CAPHEAP_INLINE void list_remove(Ctx x, u32 blk, u32 idx) noexcept {
  list_unlink(x, blk, idx, x.prev_free(blk));
}

/// Puts free block `fresh` in the list position of `old` (both filed under idx): what a split or
/// a merge that stays within one class needs, without touching the bitmaps.
CAPHEAP_INLINE void list_replace(Ctx x, u32 old, u32 fresh, u32 idx) noexcept {
  const u32 next = x.next_free(old);
  const u32 prev = x.prev_free(old);
  x.set_word(fresh + kNextFreeField, next);
  x.set_word(fresh + kPrevFreeField, prev);
  if (next != 0) x.set_word(next + kPrevFreeField, fresh);
  if (prev != 0) {
    x.set_word(prev + kNextFreeField, fresh);
  } else {
    x.heads()[idx] = fresh;
  }
}
#endif

CAPHEAP_INLINE void note_allocation(Ctx x, u32 taken) noexcept {
  Control *c = x.c;
  const u32 f = c->free_bytes - taken;
  set_counter(c->free_bytes, f);
  if (f < c->min_free_bytes) set_counter(c->min_free_bytes, f);
}

inline bool same_class(SizeClass a, SizeClass b) noexcept {
  return a.fl == b.fl && a.sl == b.sl;
}

/// A merge removed the block header at `absorbed`: an incremental check positioned there resumes
/// at the merged block `into` instead (see Heap::validate_step).
CAPHEAP_INLINE void retarget_cursor(Control *c, u32 absorbed, u32 into) noexcept {
  if (CAPHEAP_UNLIKELY(c->check_cursor == absorbed)) c->check_cursor = into;
}

// Control-based forms for the cold paths (creation, validation, walks).
inline u32 header(const Control *c, u32 blk) noexcept {
  return load_word(c, blk);
}
inline u32 size_at(const Control *c, u32 blk) noexcept {
  return header(c, blk) & kSizeMask;
}
inline u32 next_free(const Control *c, u32 blk) noexcept {
  return load_word(c, blk + kNextFreeField);
}
inline u32 prev_free(const Control *c, u32 blk) noexcept {
  return load_word(c, blk + kPrevFreeField);
}
inline SizeClass class_of(const Control *c, u32 size) noexcept {
  return class_of(Ctx(c), size);
}
inline bool free_entry_ok(const Control *c, u32 blk) noexcept {
  return free_entry_ok(Ctx(c), blk);
}

// ================================================================================================
// Allocation and free internals
// ================================================================================================

/// A free block found for a request, with the list that holds it.
struct Found {
  u32 blk;    ///< header offset; 0 if none
  u32 idx;    ///< its list
  u32 size;   ///< its size (valid when blk != 0 and !bad)
  bool head;  ///< blk is the first block of its list
  bool bad;   ///< a list entry or its links failed their sanity check (blk: the entry to blame)
};

#if CAPHEAP_COMPACT
CAPHEAP_COLD void report_bad_free_entry(const Control *c, u32 blk) noexcept;

/// Finds a free block of at least `b` bytes: the host form below (`scan` entries of the own list:
/// kMallocScan or kFitScan, a bounded best fit; then the head of the first non-empty larger list,
/// all of whose blocks fit).
/// Returns the block, or 0 if none fits or a list entry or its links failed their sanity check
/// (then reported through the fail hook). Its list and size are read again by the
/// caller.
u32 find_free_compact(Ctx x, u32 b, u32 scan) noexcept {
  u32 idx = index_of(x, b);
  u32 blk = x.heads()[idx], best = 0, best_size = ~0u, blame;
  if (blk != 0) {
    // The head is to blame itself, and must also have a successor that points back to it (its
    // own predecessor link is not followed: a head has none). A bad entry past the head: the link
    // of the entry before it is what is damaged.
    u32 prev = 0;
    for (u32 what = kNextLink;; what = kEntryOnly) {
      if (CAPHEAP_UNLIKELY(!entry_ok(x, blk, what))) {
        blame = prev != 0 ? prev : blk;
        goto bad;
      }
      const u32 s = x.size_at(blk);
      if (s >= b && s < best_size) {
        best = blk;
        best_size = s;
        if (s - b < kMinBlockBytes) break;  // nothing better than a block we will not split
      }
      if (--scan == 0) break;
      prev = blk;
      blk = x.next_free(blk);
      if (blk == 0) break;
    }
  }
  if (best == 0) {
    // The head of the first non-empty list above idx, all of whose blocks fit. ~1u << i keeps
    // the bits above i (and is 0 for i = 31).
    const u32 *bits = x.bits();
    u32 w = idx / 32;
    u32 word = bits[w] & (~1u << (idx % 32));
    if (word == 0) {
      const u32 words = x.c->word_bitmap & (~1u << w);
      if (words == 0) return 0;
      w = lsb_index(words);
      word = bits[w];
    }
    idx = w * 32 + lsb_index(word);
    best = x.heads()[idx];
    if (best == 0) return 0;  // (a set bit over an empty list)
  }
  // The block taken: its links are followed by the unlink (a head's predecessor link too, which
  // must then be 0: one check for every case, where the host form skips a head's). One report
  // for both kinds of bad entry.
  if (CAPHEAP_LIKELY(entry_ok(x, best, idx))) return best;
  blame = best;
bad:
  report_bad_free_entry(x.c, blame);
  return 0;
}

/// find_free_compact() as a Found (the aligned allocation's form; bad is always false, a bad
/// entry having been reported).
CAPHEAP_INLINE Found find_free(Ctx x, u32 b, u32 scan) noexcept {
  const u32 blk = find_free_compact(x, b, scan);
  return {blk, 0, blk != 0 ? x.size_at(blk) : 0u, false, false};
}
#else
/// The first block of list idx, checked before it is used: a sane free block whose successor
/// points back to it (its own predecessor link is not followed: a head has none).
CAPHEAP_INLINE Found list_head(Ctx x, u32 idx) noexcept {
  const u32 blk = x.heads()[idx];
  if (CAPHEAP_UNLIKELY(!free_entry_ok(x, blk))) return {blk, idx, 0, true, true};
  const u32 nf = x.next_free(blk);
  const bool bad = nf != 0 && (!link_target_ok(x, nf) || x.prev_free(nf) != blk);
  return {blk, idx, x.size_at(blk), true, bad};
}

/// Finds a free block of at least `b` bytes: the head of b's own list when it fits closely, else a
/// bounded best fit over `scan` entries of that list (its blocks may be smaller than b; scan 1:
/// the head if it fits at all), else the head of the first
/// non-empty larger list (all of whose blocks are at least b). The chosen block's links are
/// checked, as take() and carve() follow them.
CAPHEAP_INLINE Found find_free(Ctx x, u32 b, u32 scan) noexcept {
  const u32 idx = index_of(x, b);
  const u32 first = x.heads()[idx];
  if (first != 0) {
    const Found h = list_head(x, idx);
    if (h.bad || (h.size >= b && h.size - b < kMinBlockBytes)) return h;  // the usual case
    u32 best = h.size >= b ? first : 0;
    u32 best_size = h.size >= b ? h.size : ~0u;
    u32 prev = first;
    u32 blk = x.next_free(first);
    for (u32 n = 1; blk != 0 && n < scan; ++n) {
      // A bad entry past the head: the link of the entry before it is what is damaged.
      if (CAPHEAP_UNLIKELY(!free_entry_ok(x, blk))) return {prev, idx, 0, false, true};
      const u32 s = x.size_at(blk);
      if (s >= b && s < best_size) {
        best = blk;
        best_size = s;
        if (s - b < kMinBlockBytes) break;  // nothing better than a block we will not split
      }
      prev = blk;
      blk = x.next_free(blk);
    }
    if (best == first) return h;
    if (best != 0) return {best, idx, best_size, false, !links_ok_at(x, best, idx)};
  }
  // The first non-empty class above idx. ~1u << i keeps the bits above i (and is 0 for i = 31).
  const u32 *bits = x.bits();
  u32 w = idx / 32;
  u32 word = bits[w] & (~1u << (idx % 32));
  if (word == 0) {
    const u32 words = x.c->word_bitmap & (~1u << w);
    if (words == 0) return {0, idx, 0, false, false};
    w = lsb_index(words);
    word = bits[w];
  }
  return list_head(x, w * 32 + lsb_index(word));
}
#endif

/// The free block `fresh` of `size` bytes takes the place of the listed free block `old` (0: none):
/// it takes old's list position when it files under old's list, else old leaves its list and
/// fresh heads its own. Writes fresh's header (free, previous block in use) and footer. Old's
/// header must still be intact (its list is computed from it).
#if CAPHEAP_COMPACT
// (The same list order: a block that stays in old's list is linked where old was, after old's
// predecessor; otherwise at the head of its list.)
void relist(Ctx x, u32 old, u32 fresh, u32 size) noexcept {
  const u32 fi = index_of(x, size);
  u32 prev = 0;
  if (old == 0) {
    ++x.c->free_blocks;
  } else {
    const u32 old_prev = x.prev_free(old);
    if (list_remove(x, old) == fi) prev = old_prev;
  }
  list_insert_after(x, fresh, fi, prev);
  x.set_header(fresh, size | kFree);
  x.set_footer(fresh, size);
}
#else
void relist(Ctx x, u32 old, u32 fresh, u32 size) noexcept {
  const u32 fi = index_of(x, size);
  if (old == 0) {
    ++x.c->free_blocks;
    list_insert(x, fresh, fi);
  } else if (const u32 oi = index_of(x, x.size_at(old)); oi == fi) {
    list_replace(x, old, fresh, fi);
  } else {
    list_remove(x, old, oi);
    list_insert(x, fresh, fi);
  }
  x.set_header(fresh, size | kFree);
  x.set_footer(fresh, size);
}
#endif

#if CAPHEAP_COMPACT
/// carve(): the allocation is taken from the high end of a block that splits.
constexpr u32 kCarveHigh = 1u;

/// Turns the free block `blk` (already off its list, its size in its header, previous block in
/// use) into an allocated block of `b` bytes, returning any rest of at least kMinBlockBytes to the
/// lists, and returns the allocated block's header offset. `how`: kPrevFree, the bit the allocated
/// block's header must carry, and kCarveHigh: a rest is left at the low end (keeping blk's
/// header) and the allocation follows it; its other bits (a multiple of 4, never with kCarveHigh)
/// are bytes of the block that were allocated already (realloc in place: the old block, whose
/// bytes free_bytes does not count). (Plain allocation takes the head of its list: unlinking
/// it and filing the rest at the head of the rest's list gives the host form's list order, where
/// the rest takes the block's list position when it stays in its list.)
u32 carve(Ctx x, u32 blk, u32 b, u32 how) noexcept {
  u32 size = x.size_at(blk);
  const u32 rest = size - b;
  if (rest >= kMinBlockBytes) {
    u32 fresh = blk + b;  // a low-end allocation: the block after the rest keeps its kPrevFree
    if ((how & kCarveHigh) != 0) {
      fresh = blk;
      blk += rest;
      how = kPrevFree;
    }
    relist(x, 0, fresh, rest);
    size = b;
  }
  // The block after the allocation: its previous block is in use now (after a low-end split this
  // is the rest, whose fresh header has no kPrevFree).
  const u32 next = blk + size;
  x.set_header(next, x.header(next) & ~kPrevFree);
  x.set_header(blk, size | (how & kPrevFree));
  --x.c->free_blocks;
  ++x.c->used_blocks;
  note_allocation(x, size - (how & kSizeMask));
  return blk;
}
#else
/// Turns the free block `blk` (already off its list, `size` bytes, previous block in use) into an
/// allocated block of `b` bytes, returning any tail of at least kMinBlockBytes to the lists.
/// `prev_flag` is the kPrevFree bit the new allocated block's header must carry.
void carve(Ctx x, u32 blk, u32 size, u32 b, u32 prev_flag) noexcept {
  const u32 rest = size - b;
  if (rest >= kMinBlockBytes) {
    // (The block after the tail already has kPrevFree set.)
    const u32 tail = blk + b;
    x.set_header(tail, rest | kFree);
    x.set_footer(tail, rest);
    list_insert(x, tail, index_of(x, rest));
    ++x.c->free_blocks;
    size = b;
  } else {
    const u32 next = blk + size;
    x.set_header(next, x.header(next) & ~kPrevFree);
  }
  x.set_header(blk, size | prev_flag);
  --x.c->free_blocks;
  ++x.c->used_blocks;
  note_allocation(x, size);
}
#endif

/// fault_text(Fault::kBadFreeLink), which the allocation path reports: the one copy of the text.
constexpr char kBadFreeLinkText[] = "free list link points to an invalid block";

#if CAPHEAP_DETAILED_REPORTS
const char *const kBadFreeEntry = "free list entry is not a valid free block";

/// Reports a free-list entry that find_free refused: a block that is not a sane free block, or a
/// sane one whose links are damaged (the same text as multi_heap_check's, at the same address).
// Cold paths take the Control pointer, not the hot path's Ctx: a Ctx passed by reference would
// have to live in memory, and the hot paths would build it on the stack on every call.
CAPHEAP_COLD void report_bad_free_entry(const Control *c, u32 blk) noexcept {
  const Ctx x(c);
  detail::check_failed(free_entry_ok(x, blk) ? kBadFreeLinkText : kBadFreeEntry, x.data(blk),
                       x.id());
}

/// Where the header offset blk lies in the physical chain (cold: a walk from the first block).
enum class Place { kBlockStart, kInsideUsed, kInsideFree, kUnknown };
CAPHEAP_COLD Place locate(Ctx x, u32 blk) noexcept {
  for (u32 b = x.first(); b < x.end();) {
    const u32 h = x.header(b);
    const u32 size = h & kSizeMask;
    if (size < kMinBlockBytes || size > x.end() - b) return Place::kUnknown;  // damaged: stop
    if (b == blk) return Place::kBlockStart;
    if (blk < b + size) return (h & kFree) != 0 ? Place::kInsideFree : Place::kInsideUsed;
    b += size;
  }
  return Place::kUnknown;
}

/// Reports why the block at p failed the live-block check (cold: only on misuse or corruption).
/// The O(1) check only saw the words around p; here, off the fast path, the chain is walked to
/// tell a pointer into the middle of a block (or into memory freed and merged since) from a
/// damaged header.
CAPHEAP_COLD void report_bad_live_block(const Control *c, const void *p, u32 blk,
                                        const detail::OpTexts &op) noexcept {
  const Ctx x(c);
  const char *const already_free = op.already_free;
  const char *what = op.bad_pointer;
  const Place place = blk == 0 ? Place::kUnknown : locate(x, blk);
  if (place == Place::kInsideFree) {
    what = already_free;  // freed, then merged into a free neighbour
  } else if (blk != 0 && place != Place::kInsideUsed) {
    const u32 h = x.header(blk);
    const u32 size = h & kSizeMask;
    const u32 next = blk + size;
    if (size < kMinBlockBytes || size > x.end() - blk || (size & (x.granule() - 1)) != 0) {
      what = "bad block header (corrupted size)";
    } else if ((h & kFree) != 0) {
      what = already_free;
    } else if ((x.header(next) & kPrevFree) != 0) {
      what = "bad block header (next block says this one is free)";
    } else if (const u32 next_h = x.header(next), next_size = next_h & kSizeMask;
               (next_h & kFree) != 0 &&
               !(next_size >= kMinBlockBytes && next_size <= x.end() - next &&
                 links_ok(x, next, next_size))) {
      what = "next free block corrupted";
    } else {
      what = "bad previous free block (footer, header or links corrupted)";
    }
  }
  detail::check_failed(what, p, x.id());
}
#else
// Terse reports (CAPHEAP_DETAILED_REPORTS=0, the firmware default): one text per kind of failure,
// at the same address and heap as the detailed ones, without the walk that tells the causes apart.

/// Reports a free-list entry that find_free refused (a block that is not a sane free block, or a
/// sane one whose links are damaged).
CAPHEAP_COLD void report_bad_free_entry(const Control *c, u32 blk) noexcept {
  const Ctx x(c);
  detail::check_failed(kBadFreeLinkText, x.data(blk), x.id());
}

/// Reports why the block at p failed the live-block check: already free if its header says so,
/// else the operation's text for a pointer that is not a live block.
CAPHEAP_COLD void report_bad_live_block(const Control *c, const void *p, u32 blk,
                                        const detail::OpTexts &op) noexcept {
  const Ctx x(c);
  const bool freed = blk != 0 && (x.header(blk) & kFree) != 0;
  detail::check_failed(freed ? op.already_free : op.bad_pointer, p, x.id());
}
#endif

/// A live block and its neighbours, as checked_live_block() found them.
struct Live {
  u32 blk;        ///< header offset (0: the check failed and was reported)
  u32 h;          ///< its header
  u32 size;       ///< its size
  u32 next_size;  ///< size of the next block if it is free, else 0
  u32 next_idx;   ///< list of the next block if it is free
  u32 prev_size;  ///< size of the previous block if it is free, else 0
  u32 prev_idx;   ///< list of the previous block if it is free
};

#if CAPHEAP_COMPACT
/// A free neighbour at nb claiming `size` bytes may be merged with: a sane free block (inside the
/// block area, 4-aligned, sane size) whose header says so, with sane links.
bool free_neighbour_ok(Ctx x, u32 nb, u32 size) noexcept {
  return entry_ok(x, nb, index_of(x, size)) && x.header(nb) == (size | kFree);
}

/// The checks of the host form below, with one routine for both neighbours: the live block's
/// header offset, or 0 after the report. Callers read the block's and its neighbours' headers
/// again.
u32 live_block(Ctx x, const void *p, const detail::OpTexts &op, const void *report) noexcept {
  const u32 blk = block_of_pointer(x, p);
  if (blk != 0) {
    const u32 h = x.header(blk);
    const u32 size = h & kSizeMask;
    // One test for "not free" and "size is a multiple of the granule" (bit 1 is kPrevFree).
    if ((h & ((x.granule() - 1) & ~kPrevFree)) == 0 && size >= kMinBlockBytes &&
        size <= x.end() - blk) {
      const u32 next_h = x.header(blk + size);
      bool ok = (next_h & kPrevFree) == 0;
      // (A free next block: its header is next_h, whose kPrevFree is clear.)
      if (ok && (next_h & kFree) != 0)
        ok = entry_ok(x, blk + size, index_of(x, next_h & kSizeMask));
      if (ok && (h & kPrevFree) != 0) {
        const u32 prev_size = x.word(blk - 4);
        ok = free_neighbour_ok(x, blk - prev_size, prev_size);
      }
      if (ok) return blk;
    }
  }
  report_bad_live_block(x.c, report, blk, op);
  return 0;
}

/// live_block() with the fields of Live that realloc reads (h, size, next_size, next_idx).
CAPHEAP_INLINE Live checked_live_block(Ctx x, const void *p, const detail::OpTexts &op,
                                       const void *report) noexcept {
  Live l;
  l.blk = live_block(x, p, op, report);
  if (l.blk == 0) return l;
  l.h = x.header(l.blk);
  l.size = l.h & kSizeMask;
  const u32 next_h = x.header(l.blk + l.size);
  l.next_size = (next_h & kFree) != 0 ? next_h & kSizeMask : 0u;
  l.next_idx = 0;  // (list_remove() finds the list from the block's size)
  return l;
}
#else
/// O(1) checks (always on) that p is a live block of this heap whose neighbours agree with it:
/// inside the block area and granule-aligned; not free; a sane size; the next block does not think
/// this one is free and, if free itself, has a sane size and links; a free previous block's footer
/// and header agree and its links are sane. On failure reports through the fail hook and returns
/// blk == 0. The neighbours' lists are computed once here for the caller's merges.
CAPHEAP_INLINE Live checked_live_block(Ctx x, const void *p, const detail::OpTexts &op,
                                       const void *report) noexcept {
  Live l{block_of_pointer(x, p), 0, 0, 0, 0, 0, 0};
  const u32 blk = l.blk;
  if (CAPHEAP_LIKELY(blk != 0)) {
    l.h = x.header(blk);
    l.size = l.h & kSizeMask;
    // One test for "not free" and "size is a multiple of the granule" (bit 1 is kPrevFree).
    bool ok = (l.h & ((x.granule() - 1) & ~kPrevFree)) == 0 && l.size >= kMinBlockBytes &&
              l.size <= x.end() - blk;
    if (CAPHEAP_LIKELY(ok)) {
      const u32 next = blk + l.size;
      const u32 next_h = x.header(next);
      ok = (next_h & kPrevFree) == 0;
      // A free neighbour is merged with: its size and links must be sane before they are used.
      if ((next_h & kFree) != 0) {
        l.next_size = next_h & kSizeMask;
        l.next_idx = index_of(x, l.next_size);
        ok = ok && l.next_size >= kMinBlockBytes && l.next_size <= x.end() - next &&
             links_ok_at(x, next, l.next_idx);
      }
      if (ok && (l.h & kPrevFree) != 0) {
        const u32 psize = x.word(blk - 4);
        l.prev_size = psize;
        l.prev_idx = index_of(x, psize);
        ok = psize >= kMinBlockBytes && psize <= blk - x.first() &&
             x.header(blk - psize) == (psize | kFree) && links_ok_at(x, blk - psize, l.prev_idx);
      }
      if (CAPHEAP_LIKELY(ok)) return l;
    }
  }
  report_bad_live_block(x.c, report, blk, op);
  l.blk = 0;
  return l;
}
#endif

/// log2 of the platform's default granule: alignof(max_align_t) on 64-bit builds, 4 on 32-bit ones.
constexpr u32 kDefaultGranuleLog2 =
    sizeof(void *) >= 8 ? (alignof(std::max_align_t) >= 16 ? 4u : 3u) : 2u;

}  // namespace

// ================================================================================================
// Creation
// ================================================================================================

Heap Heap::create(void *start, std::size_t size, const HeapConfig &config) noexcept {
  const std::uintptr_t base = addr_of(start);
  // One test for a misaligned start and every bad option (reserved_prefix 0 or 8: valid_prefix).
  static_assert(detail::valid_prefix(0) && detail::valid_prefix(8) && !detail::valid_prefix(16),
                "the test below keeps valid_prefix's values");
  u32 bad = static_cast<u32>(base & 3u) | (config.reserved_prefix & ~8u);
#if CAPHEAP_WITH_DECORATION
  bad |= static_cast<unsigned>(config.poisoning) > 2 ? 1u : 0u;
#else
  bad |= static_cast<u32>(config.poisoning) | static_cast<u32>(config.track_owner);
#endif
  if (start == nullptr || bad != 0) return Heap();
  // Granule::k4/k8/k16 are the granules' byte values; 0 is the platform default.
  const u32 gv = static_cast<u32>(config.granule);
  if (gv > 16 || ((0x10111u >> gv) & 1u) == 0) return Heap();
  const u32 g_log2 = gv == 0 ? kDefaultGranuleLog2 : lsb_index(gv);
  const u32 g = 1u << g_log2;
  if (size > detail::kMaxRegionBytes) size = detail::kMaxRegionBytes;
  // (32-bit targets: a region cannot run past the end of the address space.)
  if (size > ~std::uintptr_t(0) - base) size = ~std::uintptr_t(0) - base;
  const u32 region = static_cast<u32>(size);
  if (region < sizeof(Control) + 8 + kMinBlockBytes + kHeaderBytes) return Heap();

  // Table geometry from an upper bound of the block area (refined below). sl_log2: 0 up to 256
  // bytes, then one more per factor 4 up to 16 KiB, 4 up to 256 KiB, 5 above: small regions get
  // small tables (fixed cost), large regions finer classes (less rounding of searched sizes).
  const u32 span_bound = region - static_cast<u32>(sizeof(Control));
  u32 sl_log2 = 0;
  for (u32 limit = 256; sl_log2 < detail::kMaxSlLog2 && span_bound > limit;) {
    ++sl_log2;
    limit <<= sl_log2 == 4 ? 4 : 2;
  }
  const bool linear = sl_log2 + g_log2 > 4;  // (1 << (sl_log2 + g_log2)) > kMinBlockBytes
  const u32 small_log2 = linear ? sl_log2 + g_log2 : 4u;
  const u32 fl_shift = linear ? small_log2 - 1 : 4u;
  // Number of first levels a block area of `a` bytes needs: 1 below 2^small_log2 (where
  // small_log2 - 1 <= fl_shift <= small_log2), else floor(log2 a) - fl_shift + 1.
  const auto levels = [=](u32 a) { return msb_index(a | (1u << fl_shift)) - fl_shift + 1; };

  // First block: its data must be granule-aligned in absolute terms. The block area depends on the
  // table size and the table size on the largest block, so lay out with the bound's first-level
  // count, then shrink the table if the real area needs fewer levels (it is a little smaller than
  // the bound), capping the area to what the smaller table can file.
  u32 fl_count = levels(span_bound);
  u32 ctl_bytes, first, area;
  for (bool again = false;; again = true) {
    ctl_bytes = detail::control_bytes(fl_count, sl_log2);
    // The first header is 4 bytes below the first granule boundary after the tables + a header.
    first = ctl_bytes + ((0u - (static_cast<u32>(base) + ctl_bytes + kHeaderBytes)) & (g - 1));
    u32 fewer;
    if (first + kMinBlockBytes + kHeaderBytes > region) {
      if (again || fl_count == 1) return Heap();
      fewer = fl_count - 1;  // a smaller table may still leave room for one block
    } else {
      area = (region - first - kHeaderBytes) & ~(g - 1);
      if (again) break;
      fewer = levels(area);
      if (fewer >= fl_count) break;
    }
    fl_count = fewer;
  }
  // Largest block the table can file: below 2^(fl_count + fl_shift).
  if (fl_count + fl_shift < 32) {
    const u32 cap = (1u << (fl_count + fl_shift)) - g;
    if (area > cap) area = cap;
  }
  if (area < kMinBlockBytes) return Heap();

  Control *c = static_cast<Control *>(start);
  __builtin_memset(start, 0, ctl_bytes);
  c->magic = detail::kControlMagic;
  c->granule_log2 = static_cast<std::uint8_t>(g_log2);
  c->sl_log2 = static_cast<std::uint8_t>(sl_log2);
  c->fl_count = static_cast<std::uint8_t>(fl_count);
  c->fl_shift = static_cast<std::uint8_t>(fl_shift);
  c->small_log2 = static_cast<std::uint8_t>(small_log2);
  c->prefix_bytes = config.reserved_prefix;
  c->first = first;
  c->end = first + area;
#if CAPHEAP_WITH_DECORATION
  const std::uint8_t debug = static_cast<std::uint8_t>(
      static_cast<unsigned>(config.poisoning) | (config.track_owner ? detail::kDebugOwner : 0u));
  c->debug = debug;
#endif

  const Ctx x(c);
  x.set_header(first + area, kPrevFree);  // sentinel: size 0, in use, previous block free
  relist(x, 0, first, area);
  c->free_bytes = area;
  c->min_free_bytes = area;
  c->geometry_check = detail::geometry_word(c);
#if CAPHEAP_WITH_DECORATION
  if (debug != 0) detail::deco_init(c);
#endif
  return Heap(c);
}

Heap Heap::attach(void *start) noexcept {
  if (start == nullptr || (addr_of(start) & 3u) != 0) return Heap();
  Control *c = static_cast<Control *>(start);
  if (c->magic != detail::kControlMagic || c->granule_log2 < 2 || c->granule_log2 > 4 ||
      c->sl_log2 > detail::kMaxSlLog2 || c->fl_count == 0 || c->fl_count > 32 ||
      c->geometry_check != detail::geometry_word(c))
    return Heap();
  return Heap(c);
}

// ================================================================================================
// Allocation
// ================================================================================================

namespace {

#if !CAPHEAP_COMPACT
// ---- The plain allocation's host form ---------------------------------------------------------
// find_free(b, kMallocScan) and taking the head it returns, written for the fewest instructions:
// offsets and sizes are 64-bit locals (Off), so that base + offset + constant is one addressing
// mode where u32 arithmetic needs a zero-extension per access, and the common path fits the
// caller-saved registers (no pushes). Same blocks, list order, counters, checks and reports.

using Off = std::size_t;

/// The 32-bit metadata word at q, widened to a register-sized offset.
CAPHEAP_INLINE Off load32(const unsigned char *q) noexcept {
  u32 v;
  __builtin_memcpy(&v, __builtin_assume_aligned(q, 4), sizeof v);
  return v;
}
CAPHEAP_INLINE void store32(unsigned char *q, Off v) noexcept {
  const u32 w = static_cast<u32>(v);
  __builtin_memcpy(__builtin_assume_aligned(q, 4), &w, sizeof w);
}

/// (span - kMinBlockBytes) / 4 for target_ok().
CAPHEAP_INLINE Off room4(Off first, Off end) noexcept {
  return (end - first - kMinBlockBytes) >> 2;
}

/// link_target_ok() in one compare (free_entry_ok()'s range test too: a header closer than 16
/// bytes to the sentinel cannot hold a size of 16, so asking for room for a whole block refuses
/// nothing more): t - first rotated right by 2 is at most room4 iff t - first <= span - 16 and t
/// is 4-aligned (first is, so a misaligned t leaves low bits at the top of the rotated distance).
CAPHEAP_INLINE bool target_ok(Off t, Off first, Off room4) noexcept {
  const Off d = t - first;
  return ((d >> 2) | (d << (sizeof(Off) * 8 - 2))) <= room4;
}

/// clear_class_bit() with the mask built by one rotate (~(1 << k) is -2 rotated left by k).
CAPHEAP_INLINE void clear_bit_at(Control *c, Off idx) noexcept {
  u32 &w = Ctx(c).bits()[idx / 32];
  const unsigned k = static_cast<unsigned>(idx) & 31u;
  w &= (0xFFFFFFFEu << k) | (0xFFFFFFFEu >> ((32u - k) & 31u));
  if (w == 0) {
    const unsigned j = static_cast<unsigned>(idx / 32) & 31u;
    c->word_bitmap &= (0xFFFFFFFEu << j) | (0xFFFFFFFEu >> ((32u - j) & 31u));
  }
}

/// list_insert() of the 64-bit form.
CAPHEAP_INLINE void insert_at(Control *c, Off blk, Off idx) noexcept {
  unsigned char *const base = detail::bytes_of(c);
  u32 *const heads = detail::list_heads(c);
  const Off old = heads[idx];
  store32(base + blk + kNextFreeField, old);
  store32(base + blk + kPrevFreeField, 0);
  heads[idx] = static_cast<u32>(blk);
  if (old != 0) {
    store32(base + old + kPrevFreeField, blk);
    return;
  }
  set_class_bit(Ctx(c), static_cast<u32>(idx));
}

/// list_unlink() of the 64-bit form, for a free block whose links are nf and pf; its list index
/// is computed only when it heads its list (idx_of: the list it is filed under).
template <typename IdxOf>
CAPHEAP_INLINE void unlink_at(Control *c, Off nf, Off pf, IdxOf idx_of) noexcept {
  unsigned char *const base = detail::bytes_of(c);
  if (pf != 0) {
    store32(base + pf + kNextFreeField, nf);
    if (nf != 0) store32(base + nf + kPrevFreeField, pf);
    return;
  }
  const Off idx = idx_of();
  detail::list_heads(c)[idx] = static_cast<u32>(nf);
  if (nf != 0) {
    store32(base + nf + kPrevFreeField, 0);
    return;
  }
  clear_bit_at(c, idx);
}

/// links_ok_at() of the 64-bit form, for the free block at b whose links are nf and pf (room4:
/// see target_ok()); the list index is computed only when b heads its list.
template <typename IdxOf>
CAPHEAP_INLINE bool links_ok_off(Control *c, Off b, Off nf, Off pf, Off first, Off room,
                                 IdxOf idx_of) noexcept {
  const unsigned char *const base = detail::bytes_of(c);
  if (nf != 0 && (!target_ok(nf, first, room) || load32(base + nf + kPrevFreeField) != b))
    return false;
  if (pf == 0) return detail::list_heads(c)[idx_of()] == b;
  return target_ok(pf, first, room) && load32(base + pf + kNextFreeField) == b;
}

/// Reports a bad free-list entry for the plain allocation (a tail call: the hot path keeps no frame
/// for it).
CAPHEAP_COLD void *refuse_bad_entry(const Control *c, u32 blk) noexcept {
  report_bad_free_entry(c, blk);
  return nullptr;
}

/// Allocates b bytes from blk (bsize bytes, previous block in use), the head of list idx whose
/// successor is nf. A remainder of at least kMinBlockBytes stays free, at the head of its list;
/// when that is blk's list it simply takes the block's place there (a high-end rest is blk
/// itself: the stores then rewrite what is there). kHigh (a plain allocation, not realloc's
/// move) and a block of at least kHighCarveBytes: the allocation takes the high end and the free
/// rest keeps blk's header. One path for both ends: large requests are rare, and a separate
/// routine for them ran cold (instruction cache, branch predictors) on every call, 2-3x the
/// latency of this one. The allocation's header and counters are written first, so that b and
/// the allocation's offset are dead when the rest's list is computed: its own function, entered
/// by a tail call, then fits the caller-saved registers.
template <bool kHigh>
CAPHEAP_INLINE void *take_head_body(Control *c, Off blk, Off bsize, Off b, Off idx,
                                    Off nf) noexcept {
  unsigned char *const base = detail::bytes_of(c);
  const Off rest = bsize - b;
  if (rest >= kMinBlockBytes) {
    Off fresh = blk + b;  // the free rest
    void *p = base + blk + kHeaderBytes;
    if (kHigh && b >= kHighCarveBytes) {
      // The block after blk follows the allocation now, and the allocation follows a free block.
      fresh = blk;
      store32(base + blk + bsize, load32(base + blk + bsize) & ~Off{kPrevFree});
      store32(base + blk + rest, b | kPrevFree);
      p = base + blk + rest + kHeaderBytes;
    } else {
      store32(base + blk, b);  // a low-end rest: the block after it keeps its kPrevFree flag
    }
    ++c->used_blocks;
    note_allocation(Ctx(c), static_cast<u32>(b));
    store32(base + fresh, rest | kFree);
    store32(base + fresh + rest - 4, rest);
    const u32 ri = index_of(Ctx(c), static_cast<u32>(rest));
    if (ri == idx) {
      store32(base + fresh + kNextFreeField, nf);
      store32(base + fresh + kPrevFreeField, 0);
      if (nf != 0) store32(base + nf + kPrevFreeField, fresh);
      detail::list_heads(c)[idx] = static_cast<u32>(fresh);
    } else {
      unlink_at(c, nf, 0, [idx] { return idx; });
      insert_at(c, fresh, ri);
    }
    return p;
  }
  unlink_at(c, nf, 0, [idx] { return idx; });
  store32(base + blk + bsize, load32(base + blk + bsize) & ~Off{kPrevFree});
  --c->free_blocks;
  store32(base + blk, bsize);
  ++c->used_blocks;
  note_allocation(Ctx(c), static_cast<u32>(bsize));
  return base + blk + kHeaderBytes;
}

/// The free-list entry blk is a sane free block (free_entry_ok()) whose successor points back to
/// it, as list_head() checks (the predecessor link of a head is not followed: it has none). Sets
/// h to its header and nf to its successor.
CAPHEAP_INLINE bool head_ok(const unsigned char *base, Off first, Off end, Off blk, Off &h,
                            Off &nf) noexcept {
  const Off room = room4(first, end);
  if (!target_ok(blk, first, room)) return false;
  h = load32(base + blk);
  const Off s = h & kSizeMask;
  if ((h & kFree) == 0 || s < kMinBlockBytes || s > end - blk) return false;
  nf = load32(base + blk + kNextFreeField);
  return nf == 0 || (target_ok(nf, first, room) && load32(base + nf + kPrevFreeField) == blk);
}

/// The plain allocation's take: its own function for malloc (see take_head_body); realloc's move
/// (kHigh false) inlines it, as its frame is already set up for the copy.
template <bool kHigh>
__attribute__((noinline)) void *take_head_call(Control *c, Off blk, Off bsize, Off b, Off idx,
                                               Off nf) noexcept {
  return take_head_body<kHigh>(c, blk, bsize, b, idx, nf);
}
template <bool kHigh>
CAPHEAP_INLINE void *take_head(Control *c, Off blk, Off bsize, Off b, Off idx, Off nf) noexcept {
  if (kHigh) return take_head_call<kHigh>(c, blk, bsize, b, idx, nf);
  return take_head_body<kHigh>(c, blk, bsize, b, idx, nf);
}

/// The plain allocation of b bytes from the first non-empty list above idx (whose blocks all fit):
/// malloc enters it by a tail call (take_larger_call), so that neither part of the search needs a
/// frame; realloc's move inlines it.
template <bool kHigh>
CAPHEAP_INLINE void *take_larger_body(Control *c, Off b, u32 idx) noexcept {
  // ~1u << i keeps the bits above i (and is 0 for i = 31).
  const u32 *const bits = Ctx(c).bits();
  u32 w = idx / 32;
  u32 word = bits[w] & (~1u << (idx % 32));
  if (word == 0) {
    const u32 words = c->word_bitmap & (~1u << w);
    if (words == 0) return nullptr;
    w = lsb_index(words);
    word = bits[w];
  }
  idx = w * 32 + lsb_index(word);
  const Off blk = detail::list_heads(c)[idx];
  if (blk == 0) return nullptr;
  Off h = 0, nf = 0;
  if (CAPHEAP_UNLIKELY(!head_ok(detail::bytes_of(c), c->first, c->end, blk, h, nf)))
    return refuse_bad_entry(c, static_cast<u32>(blk));
  return take_head<kHigh>(c, blk, h & kSizeMask, b, idx, nf);
}

template <bool kHigh>
__attribute__((noinline)) void *take_larger_call(Control *c, Off b, u32 idx) noexcept {
  return take_larger_body<kHigh>(c, b, idx);
}
template <bool kHigh>
CAPHEAP_INLINE void *take_larger(Control *c, Off b, u32 idx) noexcept {
  if (kHigh) return take_larger_call<kHigh>(c, b, idx);
  return take_larger_body<kHigh>(c, b, idx);
}

/// allocate_impl()'s host form (see above): find_free(b, kMallocScan), then take_head().
template <bool kHigh>
CAPHEAP_INLINE void *allocate_plain(Control *c, std::size_t size) noexcept {
  const Off first = c->first, end = c->end;
  const Off span = end - first;
  if (size - 1 >= span) return nullptr;  // 0, or more than the block area
  const unsigned g_log2 = c->granule_log2;
  Off b = (((size + kHeaderBytes - 1) >> g_log2) + 1) << g_log2;  // size + header, rounded up
  if (b < kMinBlockBytes) b = kMinBlockBytes;
  if (b > span) return nullptr;
  const u32 idx = index_of(Ctx(c), static_cast<u32>(b));
  const Off blk = detail::list_heads(c)[idx];
  if (blk == 0) return take_larger<kHigh>(c, b, idx);
  Off h = 0, nf = 0;
  if (CAPHEAP_UNLIKELY(!head_ok(detail::bytes_of(c), first, end, blk, h, nf)))
    return refuse_bad_entry(c, static_cast<u32>(blk));
  if ((h & kSizeMask) < b) return take_larger<kHigh>(c, b, idx);
  return take_head<kHigh>(c, blk, h & kSizeMask, b, idx, nf);
}
#endif

/// `high_ok`: a block of at least kHighCarveBytes is carved from the high end of the free block
/// found (realloc's move passes false: the moved block keeps room to grow into the rest).
CAPHEAP_INLINE void *allocate_impl(Control *control_, std::size_t size,
                                   bool high_ok = true) noexcept {
  const Ctx x(control_);
#if CAPHEAP_COMPACT
  const u32 b = block_for_request(x, size);  // (0 for size 0)
  if (b == 0) return nullptr;
  const u32 blk = find_free_compact(x, b, kMallocScan);
  if (blk == 0) return nullptr;
  list_remove(x, blk);
  void *const p = x.data(carve(x, blk, b, high_ok && b >= kHighCarveBytes ? kCarveHigh : 0u));
#else
  void *const p =
      high_ok ? allocate_plain<true>(control_, size) : allocate_plain<false>(control_, size);
  if (p == nullptr) return nullptr;
#endif
  CAPHEAP_ASSERT_PARANOID(Heap::from_control(control_).validate().ok(),
                          "heap invalid after allocate", p, x.id());
  return p;
}

/// The aligned allocation's leading gap in block blk: the distance from its data to the first
/// position at which data + offset is a multiple of a and the gap is 0 or can be a free block.
CAPHEAP_INLINE u32 aligned_gap(Ctx x, u32 blk, std::size_t offset, u32 a) noexcept {
  const std::uintptr_t data = addr_of(x.data(blk));
  std::uintptr_t target = ((data + offset + a - 1) & ~std::uintptr_t(a - 1)) - offset;
  while (target != data && target - data < kMinBlockBytes)
    target += a;
  return static_cast<u32>(target - data);
}

void *allocate_aligned_impl(Control *control_, std::size_t size, std::size_t alignment,
                            std::size_t offset) noexcept {
  const Ctx x(control_);
  // (The compact block_for_request() refuses 0 itself, and every path below asks it first.)
  if ((!CAPHEAP_COMPACT && size == 0) || !is_pow2(alignment) || (offset & 3u) != 0) return nullptr;
  const u32 g = x.granule();
  if (alignment <= g && (offset & (alignment - 1)) == 0) return allocate_impl(control_, size);
  // Data pointers are multiples of g: (p + offset) can only be a multiple of alignment (>= g here,
  // or offset not a multiple of it) when offset is a multiple of g.
  if ((offset & (g - 1)) != 0 || offset > x.end()) return nullptr;
  const u32 b = block_for_request(x, size);
  if (b == 0) return nullptr;
  const std::size_t span = x.span();
  // No block can hold b + alignment bytes: fail whatever the addresses, as ESP-IDF's search for
  // that size does. (A block whose data happened to sit on such a boundary used to be returned,
  // which made the answer depend on where the host's malloc put the region, unlike the device.)
  if (alignment > span) return nullptr;
  const u32 a = static_cast<u32>(alignment);

#if CAPHEAP_COMPACT
  // The host form's two searches below as one loop (find_free_compact() reports a bad entry
  // itself and returns 0): the request's own size, then once the padded size.
  u32 blk, gap;
  for (u32 want = b;;) {
    blk = find_free_compact(x, want, kFitScan);
    if (blk == 0) return nullptr;
    gap = aligned_gap(x, blk, offset, a);
    if (std::size_t(gap) + b <= x.size_at(blk)) break;
    const std::size_t padded = std::size_t(b) + a + kMinBlockBytes;
    if (want != b || padded > span) return nullptr;  // (padded > b: want != b after the first)
    want = static_cast<u32>(padded);
  }
  const u32 size_found = x.size_at(blk);
  list_remove(x, blk);
#else
  // First the request's own size: a block found for it may hold the aligned block (its data
  // aligned already, or room for the gap), which wastes less than a block found for the padded
  // size. Else any free block of b + a + kMinBlockBytes bytes, which always holds it.
  Found f = find_free(x, b, kFitScan);
  if (f.blk != 0 && !f.bad && std::size_t(aligned_gap(x, f.blk, offset, a)) + b > f.size) {
    const std::size_t padded = std::size_t(b) + a + kMinBlockBytes;
    f = padded <= span ? find_free(x, static_cast<u32>(padded), kFitScan)
                       : Found{0, 0, 0, false, false};
  }
  const u32 blk = f.blk;
  if (blk == 0) return nullptr;
  if (CAPHEAP_UNLIKELY(f.bad)) {
    report_bad_free_entry(x.c, blk);
    return nullptr;
  }

  const u32 size_found = f.size;
  const u32 gap = aligned_gap(x, blk, offset, a);
  if (std::size_t(gap) + b > size_found) return nullptr;

  list_remove(x, blk, f.idx);
#endif
  u32 prev_flag = 0;
  u32 at = blk;
  u32 avail = size_found;
  if (gap != 0) {
    // The leading gap becomes a free block; its previous block is in use (blk was free).
#if CAPHEAP_COMPACT
    relist(x, 0, blk, gap);
#else
    x.set_header(blk, gap | kFree);
    x.set_footer(blk, gap);
    list_insert(x, blk, index_of(x, gap));
    ++x.c->free_blocks;
#endif
    at = blk + gap;
    avail = size_found - gap;
    prev_flag = kPrevFree;
  }
#if CAPHEAP_COMPACT
  x.set_header(at, avail);  // (carve() reads the size from the header)
  carve(x, at, b, prev_flag);
#else
  carve(x, at, avail, b, prev_flag);
#endif
  return x.data(at);
}

// ================================================================================================
// Free
// ================================================================================================

#if !CAPHEAP_COMPACT
// ---- Host free ----------------------------------------------------------------------------------
// The host build's free, written for the fewest instructions: offsets held in registers are
// size_t, so base + offset + field is one x86 addressing mode (a u32 offset costs a
// zero-extension per access), and each merge case is its own routine that does the stores needing
// no size class first, so that few values stay live across the class computations (the geometry
// bytes are read again after a store: one load each, where values kept in locals were spilled).
// A list index is computed only where a block heads its list. The checks and the resulting
// blocks, list order, counters and reports are those of the compact form (deallocate_impl,
// relist, live_block).

CAPHEAP_COLD void report_bad_free(Control *c, Off blk) noexcept {
  const Ctx x(c);
  report_bad_live_block(c, x.data(static_cast<u32>(blk)), static_cast<u32>(blk),
                        detail::kFreeTexts);
}

/// The free block after blk (at next, size ns from its header): a sane size and sane links, which
/// it returns in nf and pf. The list index of a block heading its list is computed only then
/// (idx_of: the list next is filed under).
template <typename IdxOf>
CAPHEAP_INLINE bool next_ok(Control *c, Off next, Off ns, Off &nf, Off &pf, IdxOf idx_of) noexcept {
  if (ns < kMinBlockBytes || ns > c->end - next) return false;
  unsigned char *const q = detail::bytes_of(c) + next;
  nf = load32(q + kNextFreeField);
  pf = load32(q + kPrevFreeField);
  return links_ok_off(c, next, nf, pf, c->first, room4(c->first, c->end), idx_of);
}

/// The free block before blk (its footer holds ps): a sane size, a header that agrees, and sane
/// links, which it returns in nf and pf.
CAPHEAP_INLINE bool prev_ok(Control *c, Off blk, Off ps, Off &nf, Off &pf) noexcept {
  const Off first = c->first;
  if (ps < kMinBlockBytes || ps > blk - first) return false;
  unsigned char *const pp = detail::bytes_of(c) + blk - ps;
  if (load32(pp) != (ps | kFree)) return false;
  nf = load32(pp + kNextFreeField);
  pf = load32(pp + kPrevFreeField);
  return links_ok_off(c, blk - ps, nf, pf, first, room4(first, c->end),
                      [&] { return index_of(Ctx(c), static_cast<u32>(ps)); });
}

/// A free block of `old` bytes grown to `total` (m: msb_index of total | 2^small_log2) stays in
/// its class iff the sizes agree above index_of()'s shift (a class is exactly those sizes).
CAPHEAP_INLINE bool same_class(const Control *c, Off old, Off total, u32 m) noexcept {
  return ((old ^ total) >> (m - c->sl_log2)) == 0;
}
CAPHEAP_INLINE u32 class_msb(const Control *c, Off total) noexcept {
  return msb_index(static_cast<u32>(total) | (1u << c->small_log2));
}
CAPHEAP_INLINE Off index_for_msb(const Control *c, Off total, u32 m) noexcept {
  return index_from_m(static_cast<u32>(total), m, c->fl_shift, c->sl_log2);
}

/// free | blk | used  ->  the previous block grows in place (its list position kept when its
/// class is unchanged). nh: the next block's header.
__attribute__((noinline)) void merge_prev(Control *c, Off blk, Off size, Off nh) noexcept {
  unsigned char *const B = detail::bytes_of(c);
  const Off ps = load32(B + blk - 4);
  Off nf = 0, pf = 0;
  if (CAPHEAP_UNLIKELY(!prev_ok(c, blk, ps, nf, pf))) return report_bad_free(c, blk);
  const Off prev = blk - ps;
  unsigned char *const pp = B + prev;
  // The stores that need no class first: fewer values stay live across the class computations.
  set_counter(c->free_bytes, c->free_bytes + static_cast<u32>(size));
  --c->used_blocks;
  store32(B + blk + size, nh | kPrevFree);
  retarget_cursor(c, static_cast<u32>(blk), static_cast<u32>(prev));
  const Off total = ps + size;
  const u32 m = class_msb(c, total);
  if (!same_class(c, ps, total, m)) {
    const Off ti = index_for_msb(c, total, m);
    unlink_at(c, nf, pf, [&] { return index_of(Ctx(c), static_cast<u32>(ps)); });
    insert_at(c, prev, ti);
  }
  store32(pp, total | kFree);
  store32(pp + total - 4, total);
  CAPHEAP_ASSERT_PARANOID(Heap::from_control(c).validate().ok(), "heap invalid after free",
                          pp + ps + kHeaderBytes, detail::heap_id(c));
}

/// used | blk | free  ->  one block at blk, in the next block's list position if it files there.
__attribute__((noinline)) void merge_next(Control *c, Off blk, Off size, Off nh) noexcept {
  unsigned char *const B = detail::bytes_of(c);
  const Off next = blk + size, ns = nh & kSizeMask;
  Off nf = 0, pf = 0;
  // The next block's list, needed only when it heads it (the head check, then the unlink).
  Off ni = 0;
  if (CAPHEAP_UNLIKELY(!next_ok(c, next, ns, nf, pf,
                                [&] { return ni = index_of(Ctx(c), static_cast<u32>(ns)); })))
    return report_bad_free(c, blk);
  set_counter(c->free_bytes, c->free_bytes + static_cast<u32>(size));
  --c->used_blocks;
  const Off total = size + ns;
  unsigned char *const bp = B + blk;
  store32(bp, total | kFree);
  store32(bp + total - 4, total);
  retarget_cursor(c, static_cast<u32>(next), static_cast<u32>(blk));
  const u32 m = class_msb(c, total);
  const Off ti = index_for_msb(c, total, m);
  if (same_class(c, ns, total, m)) {
    store32(bp + kNextFreeField, nf);
    store32(bp + kPrevFreeField, pf);
    if (nf != 0) store32(B + nf + kPrevFreeField, blk);
    if (pf != 0) {
      store32(B + pf + kNextFreeField, blk);
    } else {
      detail::list_heads(c)[ti] = static_cast<u32>(blk);
    }
  } else {
    unlink_at(c, nf, pf, [&] { return ni; });
    insert_at(c, blk, ti);
  }
  CAPHEAP_ASSERT_PARANOID(Heap::from_control(c).validate().ok(), "heap invalid after free",
                          bp + kHeaderBytes, detail::heap_id(c));
}

/// free | blk | free  ->  one block at the previous one: the next block is unlinked, then the
/// previous one grows as in merge_prev.
__attribute__((noinline)) void merge_both(Control *c, Off blk, Off size, Off nh) noexcept {
  unsigned char *const B = detail::bytes_of(c);
  const Off next = blk + size, ns = nh & kSizeMask;
  const auto next_idx = [&] { return index_of(Ctx(c), static_cast<u32>(ns)); };
  Off nnf = 0, npf = 0, pnf = 0, ppf = 0;
  if (CAPHEAP_UNLIKELY(!next_ok(c, next, ns, nnf, npf, next_idx))) return report_bad_free(c, blk);
  const Off ps = load32(B + blk - 4);
  if (CAPHEAP_UNLIKELY(!prev_ok(c, blk, ps, pnf, ppf))) return report_bad_free(c, blk);
  const Off prev = blk - ps;
  unsigned char *const pp = B + prev;
  set_counter(c->free_bytes, c->free_bytes + static_cast<u32>(size));
  --c->used_blocks;
  --c->free_blocks;
  retarget_cursor(c, static_cast<u32>(blk), static_cast<u32>(prev));
  retarget_cursor(c, static_cast<u32>(next), static_cast<u32>(prev));
  unlink_at(c, nnf, npf, next_idx);
  const Off total = ps + size + ns;
  const u32 m = class_msb(c, total);
  if (!same_class(c, ps, total, m)) {
    const Off ti = index_for_msb(c, total, m);
    // The previous block's links are read again: the next block may have been its neighbour in
    // its list.
    unlink_at(c, load32(pp + kNextFreeField), load32(pp + kPrevFreeField),
              [&] { return index_of(Ctx(c), static_cast<u32>(ps)); });
    insert_at(c, prev, ti);
  }
  store32(pp, total | kFree);
  store32(pp + total - 4, total);
  CAPHEAP_ASSERT_PARANOID(Heap::from_control(c).validate().ok(), "heap invalid after free",
                          pp + ps + kHeaderBytes, detail::heap_id(c));
}

/// Reports a free the fast path refused (any of its checks): as the compact form does, with the
/// block offset block_of_pointer() gives.
CAPHEAP_COLD void report_refused_free(Control *c, void *p) noexcept {
  report_bad_live_block(c, p, block_of_pointer(Ctx(c), p), detail::kFreeTexts);
}
#endif

CAPHEAP_INLINE void deallocate_impl(Control *control_, void *p) noexcept {
  const Ctx x(control_);
  Control *c = x.c;
#if CAPHEAP_COMPACT
  // The host form's four cases in one: the merged block starts at the free previous block or at
  // this one, and takes the list position of the free neighbour it grows from (the previous one,
  // else the next one) when it files under that neighbour's list. live_block verified both
  // neighbours' sizes, links and the previous block's footer.
  const u32 blk = live_block(x, p, detail::kFreeTexts, p);
  if (blk == 0) return;
  const u32 h = x.header(blk);
  const u32 size = h & kSizeMask;
  set_counter(c->free_bytes, c->free_bytes + size);
  --c->used_blocks;
  const u32 next = blk + size;
  const u32 next_h = x.header(next);
  u32 start = blk, total = size, anchor = 0;
  if ((next_h & kFree) != 0) {
    total += next_h & kSizeMask;
    anchor = next;
    retarget_cursor(c, next, blk);
  } else {
    x.set_header(next, next_h | kPrevFree);
  }
  if ((h & kPrevFree) != 0) {
    const u32 prev_size = x.word(blk - 4);
    start = blk - prev_size;
    total += prev_size;
    if (anchor != 0) {
      list_remove(x, next);
      --c->free_blocks;
    }
    anchor = start;
    retarget_cursor(c, blk, start);
  }
  relist(x, anchor, start, total);
  CAPHEAP_ASSERT_PARANOID(Heap::from_control(control_).validate().ok(), "heap invalid after free",
                          p, x.id());
#else
  // The usual free merges with nothing: it is done here with few live values (no frame). A free
  // with a free neighbour continues in its case's merge routine. The block's words are addressed
  // from p (no other pointer held).
  unsigned char *const B = detail::bytes_of(c);
  unsigned char *const bp = static_cast<unsigned char *>(p) - kHeaderBytes;
  const u32 first = c->first, end = c->end;
  const Off mask = (Off{1} << c->granule_log2) - 1;
  const Off blk = addr_of(bp) - addr_of(B);
  if (CAPHEAP_LIKELY(blk - first < u32(end - first) && (addr_of(p) & mask) == 0)) {
    const Off h = load32(bp);
    const Off size = h & kSizeMask;
    // One test for "not free" and "size is a multiple of the granule" (bit 1 is kPrevFree);
    // blk < end, so size <= end - blk is blk + size <= end.
    if ((h & mask & ~Off{kPrevFree}) == 0 && size >= kMinBlockBytes && blk + size <= end) {
      const Off nh = load32(bp + size);
      if (CAPHEAP_UNLIKELY(((nh & detail::kFlagMask) | (h & kPrevFree)) != 0)) {
        if ((nh & kPrevFree) != 0) return report_refused_free(c, p);
        if ((nh & kFree) == 0) return merge_prev(c, blk, size, nh);
        if ((h & kPrevFree) != 0) return merge_both(c, blk, size, nh);
        return merge_next(c, blk, size, nh);
      }
      set_counter(c->free_bytes, c->free_bytes + static_cast<u32>(size));
      --c->used_blocks;
      store32(bp + size, nh | kPrevFree);
      ++c->free_blocks;
      store32(bp, size | kFree);
      store32(bp + size - 4, size);
      // The class after the stores: reading the geometry bytes again costs less than the
      // callee-saved registers that an index held across them needed (3 more pushes, 6.5 Ir).
      insert_at(c, blk, index_of(Ctx(c), static_cast<u32>(size)));
      CAPHEAP_ASSERT_PARANOID(Heap::from_control(control_).validate().ok(),
                              "heap invalid after free", p, x.id());
      return;
    }
  }
  report_refused_free(c, p);
#endif
}

// ================================================================================================
// Realloc
// ================================================================================================

void *reallocate_impl(Control *control_, void *p, std::size_t size) noexcept {
  if (p == nullptr) return allocate_impl(control_, size);
  if (size == 0) {
    deallocate_impl(control_, p);
    return nullptr;
  }
  const Ctx x(control_);
  const Live l = checked_live_block(x, p, detail::kReallocTexts, p);
  const u32 blk = l.blk;
  if (blk == 0) return nullptr;
  const u32 b = block_for_request(x, size);
  if (b == 0) return nullptr;
  Control *c = x.c;
  const u32 cur = l.size;
  const u32 prev_flag = l.h & kPrevFree;
  const u32 next = blk + cur;
  const u32 next_size = l.next_size;

#if CAPHEAP_COMPACT
  // Shrink or grow in place (the host form's two cases in one): the block and a free successor
  // make `total` bytes; the allocation keeps b of them and a rest of at least kMinBlockBytes
  // becomes a free block after it (the successor's header, absorbed, moves the incremental check
  // to the block that now covers it). A shrink whose rest is too small changes nothing. The
  // split is carve()'s: the `total` bytes are handed to it as one free block (off the lists,
  // counted as a free block, the block after it marked as following a free block), with the
  // block's old size as bytes it held already, so that free_bytes changes once, by now - cur.
  if (const u32 total = cur + next_size; b <= total) {
    if (next_size != 0) {
      list_remove(x, next);
      retarget_cursor(c, next, b > cur ? blk : blk + b);
    } else {
      ++c->free_blocks;
    }
    --c->used_blocks;
    const u32 after = blk + total;
    x.set_header(after, x.header(after) | kPrevFree);  // (carve() clears it unless it splits)
    x.set_header(blk, total);
    carve(x, blk, b, cur | prev_flag);  // (cur: the bytes the block held already)
    return p;
  }
#else
  if (b <= cur) {
    // Shrink in place. The freed tail joins a free successor, or stands alone if big enough.
    const u32 rest = cur - b + next_size;
    if (rest >= kMinBlockBytes) {
      if (next_size != 0) {
        list_remove(x, next, l.next_idx);
        --c->free_blocks;
        retarget_cursor(c, next, blk + b);
      } else {
        x.set_header(next, x.header(next) | kPrevFree);
      }
      const u32 tail = blk + b;
      x.set_header(tail, rest | kFree);
      x.set_footer(tail, rest);
      list_insert(x, tail, index_of(x, rest));
      ++c->free_blocks;
      x.set_header(blk, b | prev_flag);
      set_counter(c->free_bytes, c->free_bytes + (cur - b));
    }
    return p;
  }

  if (next_size != 0 && cur + next_size >= b) {
    // Grow in place into the free successor.
    list_remove(x, next, l.next_idx);
    retarget_cursor(c, next, blk);
    const u32 total = cur + next_size;
    const u32 rest = total - b;
    u32 now = total;
    if (rest >= kMinBlockBytes) {
      const u32 tail = blk + b;
      x.set_header(tail, rest | kFree);  // the block after it keeps its kPrevFree flag
      x.set_footer(tail, rest);
      list_insert(x, tail, index_of(x, rest));
      now = b;
    } else {
      x.set_header(blk + total, x.header(blk + total) & ~kPrevFree);
      --c->free_blocks;
    }
    x.set_header(blk, now | prev_flag);
    note_allocation(x, now - cur);
    return p;
  }

#endif

  // Move: allocate, copy, free. On failure the old block stays as it was. The low-water mark
  // takes the net change only (ESP-IDF's multi_heap counts a realloc as old block - new block),
  // not the moment both blocks were held.
  const u32 mark = c->min_free_bytes;
  void *q = allocate_impl(control_, size, false);
  if (q == nullptr) return nullptr;
  const std::size_t keep = (cur - kHeaderBytes) < size ? (cur - kHeaderBytes) : size;
  __builtin_memcpy(q, p, keep);
  deallocate_impl(control_, p);
  set_counter(c->min_free_bytes, c->free_bytes < mark ? c->free_bytes : mark);
  return q;
}

std::size_t usable_size_impl(const Control *control_, const void *p) noexcept {
  const Ctx x(control_);
  const u32 blk = block_of_pointer(x, p);
  if (blk == 0) return 0;
  const u32 h = x.header(blk);
  const u32 size = h & kSizeMask;
  if ((h & kFree) != 0 || size < kMinBlockBytes || size > x.end() - blk) return 0;
  return size - kHeaderBytes;
}

}  // namespace

namespace detail {
void *raw_allocate(Control *c, std::size_t size) noexcept {
  return allocate_impl(c, size);
}
void *raw_allocate_aligned(Control *c, std::size_t size, std::size_t alignment,
                           std::size_t offset) noexcept {
  return allocate_aligned_impl(c, size, alignment, offset);
}
void raw_deallocate(Control *c, void *p) noexcept {
  deallocate_impl(c, p);
}
void *raw_reallocate(Control *c, void *p, std::size_t size) noexcept {
  return reallocate_impl(c, p, size);
}
std::size_t raw_usable_size(const Control *c, const void *p) noexcept {
  return usable_size_impl(c, p);
}
u32 raw_checked_block(const Control *c, const void *p, const void *report_addr,
                      const OpTexts &op) noexcept {
#if CAPHEAP_COMPACT
  return live_block(Ctx(c), p, op, report_addr);
#else
  return checked_live_block(Ctx(c), p, op, report_addr).blk;
#endif
}
}  // namespace detail

// ================================================================================================
// Public entry points: heaps with decoration (Control::debug != 0) take the decorated paths.
// ================================================================================================

namespace {
// The public entry points' one body each (member and by-value forms), inlined into both (in
// compact builds too: without decoration the body is one tail call, which each form makes itself).
inline __attribute__((always_inline)) void *allocate_entry(detail::Control *c,
                                                           std::size_t size) noexcept {
  if (CAPHEAP_DECORATED(c)) return detail::deco_allocate(c, size);
  return allocate_impl(c, size);
}
CAPHEAP_INLINE void deallocate_entry(detail::Control *c, void *p) noexcept {
  if (p == nullptr) return;
  if (CAPHEAP_DECORATED(c)) return detail::deco_deallocate(c, p);
  deallocate_impl(c, p);
}
}  // namespace

CAPHEAP_HOT void *Heap::allocate(std::size_t size) noexcept {
  return allocate_entry(control_, size);
}

CAPHEAP_HOT void Heap::deallocate(void *p) noexcept {
  deallocate_entry(control_, p);
}

CAPHEAP_HOT void *Heap::allocate_from(Heap h, std::size_t size) noexcept {
  return allocate_entry(h.control_, size);
}

CAPHEAP_HOT void Heap::deallocate_to(Heap h, void *p) noexcept {
  deallocate_entry(h.control_, p);
}

void *Heap::allocate_aligned(std::size_t size, std::size_t alignment, std::size_t offset) noexcept {
  if (CAPHEAP_DECORATED(control_))
    return detail::deco_allocate_aligned(control_, size, alignment, offset);
  return allocate_aligned_impl(control_, size, alignment, offset);
}

void *Heap::reallocate(void *p, std::size_t size) noexcept {
  if (CAPHEAP_DECORATED(control_)) return detail::deco_reallocate(control_, p, size);
  return reallocate_impl(control_, p, size);
}

bool Heap::verify_live(void *p) noexcept {
  if (p == nullptr || control_ == nullptr) return false;
  if (CAPHEAP_DECORATED(control_)) return detail::deco_verify_live(control_, p);
#if CAPHEAP_COMPACT
  return live_block(Ctx(control_), p, detail::kReallocTexts, p) != 0;
#else
  return checked_live_block(Ctx(control_), p, detail::kReallocTexts, p).blk != 0;
#endif
}

// ================================================================================================
// Queries
// ================================================================================================

std::size_t Heap::usable_size(const void *p) const noexcept {
  if (p == nullptr || control_ == nullptr) return 0;
  if (CAPHEAP_DECORATED(control_)) return detail::deco_usable_size(control_, p);
  return usable_size_impl(control_, p);
}

std::size_t Heap::allocated_size(const void *p) const noexcept {
  const std::size_t usable = usable_size(p);
  if (!CAPHEAP_WITH_DECORATION || usable == 0 || poisoning() == Poisoning::kNone) return usable;
  return block_size(p) - kHeaderBytes - decoration_total();
}

std::size_t Heap::block_size(const void *p) const noexcept {
  if (p == nullptr || control_ == nullptr) return 0;
  const std::size_t before = decoration_before();
  if (before > reinterpret_cast<std::uintptr_t>(p)) return 0;
  const std::size_t usable =
      usable_size_impl(control_, static_cast<const unsigned char *>(p) - before);
  return usable == 0 ? 0 : usable + kHeaderBytes;
}

bool Heap::contains(const void *p) const noexcept {
  if (control_ == nullptr) return false;
  const std::uintptr_t base = addr_of(control_);
  return addr_of(p) >= base && addr_of(p) < base + control_->end + kHeaderBytes;
}

namespace {
/// Bytes a decorated heap's every allocation spends on decoration (0 without decoration).
/// (Without decoration support no heap is decorated: Heap::create refuses poisoning and owner
/// words, so every figure is the raw engine's.)
inline std::size_t decoration_of(const Control *c) noexcept {
  if (!CAPHEAP_WITH_DECORATION) return 0;
  return c->debug == 0 ? 0
                       : std::size_t(detail::head_bytes(c->debug, detail::granule_of(c))) +
                             detail::tail_bytes(c->debug);
}
inline std::size_t minus_clamped(std::size_t v, std::size_t d) noexcept {
  return v > d ? v - d : 0;
}
}  // namespace

std::size_t Heap::decoration_before() const noexcept {
  return !CAPHEAP_WITH_DECORATION || control_ == nullptr || control_->debug == 0
             ? 0
             : detail::head_bytes(control_->debug, detail::granule_of(control_));
}
std::size_t Heap::decoration_total() const noexcept {
  return control_ == nullptr ? 0 : decoration_of(control_);
}
Poisoning Heap::poisoning() const noexcept {
  return control_ == nullptr ? Poisoning::kNone
                             : static_cast<Poisoning>(control_->debug & detail::kDebugPoisonMask);
}
bool Heap::tracks_owner() const noexcept {
  return control_ != nullptr && (control_->debug & detail::kDebugOwner) != 0;
}
std::uint32_t Heap::owner_of(const void *p) const noexcept {
  if (!tracks_owner() || usable_size(p) == 0) return 0;
  return load_word(control_, static_cast<u32>(addr_of(p) - addr_of(control_)) - 4u);
}

std::size_t Heap::largest_free_block() const noexcept {
  const Control *c = control_;
  if (c == nullptr || c->word_bitmap == 0) return 0;
  // Only the top non-empty class can hold the largest fitting block, and allocate() looks at no
  // more than its first kMallocScan entries, so neither does this (see the contract in heap.hpp).
  const u32 w = msb_index(c->word_bitmap);
  u32 blk = detail::list_heads(c)[w * 32 + msb_index(detail::class_bits(c)[w])];
  u32 best = 0;
  for (u32 n = 0; blk != 0 && n < kMallocScan; ++n) {
    if (!free_entry_ok(c, blk)) break;
    const u32 s = size_at(c, blk);
    if (s > best) best = s;
    blk = next_free(c, blk);
  }
  // Decorated heaps: the largest request is the block's usable size less the decoration.
  return best < kMinBlockBytes ? 0 : minus_clamped(best - kHeaderBytes, decoration_of(c));
}

// Decorated heaps report free bytes less one allocation's decoration, as ESP-IDF's poisoning does,
// so that no figure suggests a request that cannot succeed.
std::size_t Heap::free_bytes() const noexcept {
  return control_ ? minus_clamped(read_counter(control_->free_bytes), decoration_of(control_)) : 0;
}
std::size_t Heap::minimum_free_bytes() const noexcept {
  return control_ ? minus_clamped(read_counter(control_->min_free_bytes), decoration_of(control_))
                  : 0;
}

// The mark in minimum_free_bytes()'s units (a decorated heap's leaves out one allocation's
// decoration), so that reset's result, restore's argument and minimum_free_bytes() agree.
std::size_t Heap::reset_minimum_free_bytes() noexcept {
  if (control_ == nullptr) return 0;
  const std::size_t old = minimum_free_bytes();
  set_counter(control_->min_free_bytes, control_->free_bytes);
  return old;
}

void Heap::restore_minimum_free_bytes(std::size_t value) noexcept {
  if (control_ == nullptr) return;
  // A reported mark of v is a counter of v + decoration (or any counter up to the decoration for
  // v = 0, which minimum_free_bytes() reports as 0).
  const std::size_t deco = decoration_of(control_);
  const std::size_t raw = value == 0 ? 0 : value > ~std::size_t(0) - deco ? value : value + deco;
  if (raw < control_->min_free_bytes) set_counter(control_->min_free_bytes, static_cast<u32>(raw));
}

HeapInfo Heap::info() const noexcept {
  HeapInfo i;
  const Control *c = control_;
  if (c == nullptr) return i;
  const std::size_t deco = decoration_of(c);
  i.total_free_bytes = minus_clamped(c->free_bytes, deco);
  i.allocated_blocks = c->used_blocks;
  i.free_blocks = c->free_blocks;
  i.total_blocks = std::size_t(c->used_blocks) + c->free_blocks;
  i.total_allocated_bytes = std::size_t(c->end - c->first - c->free_bytes) -
                            (std::size_t(kHeaderBytes) + deco) * c->used_blocks;
  i.largest_free_block = largest_free_block();
  i.minimum_free_bytes = minus_clamped(c->min_free_bytes, deco);
  return i;
}

void *Heap::start() const noexcept {
  return control_;
}
std::size_t Heap::granule() const noexcept {
  return control_ ? detail::granule_of(control_) : 0;
}
std::size_t Heap::region_size() const noexcept {
  return control_ ? std::size_t(control_->end) + kHeaderBytes : 0;
}
std::size_t Heap::control_size() const noexcept {
  return control_ ? detail::control_bytes(control_->fl_count, control_->sl_log2) : 0;
}

// ================================================================================================
// Walk, validate, invariants
// ================================================================================================

void Heap::walk(WalkFn fn, void *user) const noexcept {
  Control *c = control_;
  if (c == nullptr || fn == nullptr) return;
  u32 blk = c->first;
  while (blk < c->end) {
    const u32 h = header(c, blk);
    const u32 size = h & kSizeMask;
    if (size < kMinBlockBytes || size > c->end - blk) return;  // corrupt: stop, never loop
    BlockView view;
    view.data = detail::data_of(c, blk);
    view.size = size - kHeaderBytes;
    view.used = (h & kFree) == 0;
    if (view.used) {
      view.user = view.data;
      view.requested = view.size;
      if (CAPHEAP_DECORATED(c)) detail::deco_view(c, blk, view);
    }
    if (!fn(view, user)) return;
    blk += size;
  }
}

const char *fault_text(Fault fault) noexcept {
  // Every text in Fault order in one string, each ended by its NUL, found by counting NULs: a
  // table of pointers would add 4 bytes per text. kBadFreeLink's text is only a place in it: it
  // is the literal that the allocation path's report uses (linked alone into firmware that never
  // calls validate()), so that it is stored once.
  static constexpr char kTexts[] =
      "no fault\0"
      "control structure damaged\0"
      "bad block size\0"
      "previous-block-free flag is wrong\0"
      "two adjacent free blocks\0"
      "free block footer does not match its header\0"
      "end-of-heap marker damaged\0"
      "\0"  // (kBadFreeLink: kBadFreeLinkText)
      "free block in the wrong size-class list\0"
      "free-list bitmap disagrees with the lists\0"
      "free lists and block chain disagree\0"
      "free byte or block counters are wrong\0"
      "Bad head\0"
      "Bad tail\0"
      "Bad allocation size\0"
      "Invalid data\0"
      "unknown fault";
  static_assert(
      static_cast<u32>(Fault::kBadFreeLink) == 7 && static_cast<u32>(Fault::kBadFreeFill) == 15,
      "kTexts follows Fault's order");
  u32 n = static_cast<u32>(fault);
  if (n == static_cast<u32>(Fault::kBadFreeLink)) return kBadFreeLinkText;
  if (n > 16) n = 16;  // ("unknown fault")
  const char *s = kTexts;
  for (; n != 0; --n)
    while (*s++ != 0) {
    }
  return s;
}

namespace {
/// validate()'s result for a fault: one out-of-line constructor for its many exits.
CAPHEAP_NOINLINE Validation fault_at(Fault fault, const void *block,
                                     const void *previous = nullptr) noexcept {
  Validation v;
  v.fault = fault;
  v.block = block;
  v.previous = previous;
  return v;
}
}  // namespace

namespace {
/// The control structure's fields describe a geometry create() can make (whatever the check word
/// says: damage to both a geometry byte and the check word can leave them agreeing, and a table
/// index from an unchecked geometry would read outside the tables).
bool control_fields_ok(const Control *c) noexcept {
  if (c->geometry_check != detail::geometry_word(c) || c->magic != detail::kControlMagic ||
      c->granule_log2 < 2 || c->granule_log2 > 4 || c->sl_log2 > detail::kMaxSlLog2 ||
      c->fl_count == 0 || c->fl_count > 32 ||
      c->first < detail::control_bytes(c->fl_count, c->sl_log2) || c->end <= c->first ||
      ((c->end - c->first) & (detail::granule_of(c) - 1)) != 0)
    return false;
  // (As create() derives them: a linear row where 1 << (sl_log2 + granule_log2) exceeds 16.)
  const u32 sg = u32(c->sl_log2) + c->granule_log2;
  const u32 small_log2 = sg > 4 ? sg : 4u;
  return c->small_log2 == small_log2 && c->fl_shift == (sg > 4 ? sg - 1 : 4u) &&
         detail::valid_prefix(c->prefix_bytes) &&
         (c->debug & ~(detail::kDebugPoisonMask | detail::kDebugOwner)) == 0 &&
         (c->debug & detail::kDebugPoisonMask) != detail::kDebugPoisonMask;
}
}  // namespace

Validation Heap::validate() const noexcept {
  const Control *c = control_;
  if (c == nullptr) return fault_at(Fault::kBadControl, nullptr);
  if (!control_fields_ok(c)) return fault_at(Fault::kBadControl, c);
  const u32 g = detail::granule_of(c);

  // 1. Physical chain.
  u32 blk = c->first;
  u32 prev_free_flag = 0;  // kPrevFree if the block walked last was free
  u32 free_count = 0, used_count = 0, free_sum = 0;
  bool cursor_seen = false;
  const void *previous = nullptr;
  while (blk < c->end) {
    const u32 h = header(c, blk);
    const u32 size = h & kSizeMask;
    const void *where = detail::data_of(c, blk);
    const bool is_free = (h & kFree) != 0;
    // (One report for the block's faults: fewer calls in firmware builds.)
    Fault f = Fault::kNone;
    const void *culprit = previous;
    if (size < kMinBlockBytes || (size & (g - 1)) != 0 || size > c->end - blk) {
      f = Fault::kBadBlockSize;
    } else if ((h & kPrevFree) != prev_free_flag) {
      f = Fault::kBadPrevFreeFlag;
    } else if (is_free) {
      if (prev_free_flag != 0) {
        f = Fault::kAdjacentFree;
      } else if (load_word(c, blk + size - 4) != size) {
        f = Fault::kBadFooter;
      } else {
        // A real free block is on its class's list: its predecessor links to it, or it heads the
        // list. Catches a walk that a damaged size sent into stale bytes that look like a block.
        const u32 pf = prev_free(c, blk);
        const Ctx x(c);
        const bool linked = pf == 0 ? detail::list_heads(c)[index_of(x, size)] == blk
                                    : (free_entry_ok(x, pf) && next_free(c, pf) == blk);
        if (!linked) {
          f = Fault::kBadFreeLink;
          if (pf == 0) culprit = c;
        }
      }
    }
    if (f != Fault::kNone) return fault_at(f, where, culprit);
    if (is_free) {
      ++free_count;
      free_sum += size;
    } else {
      ++used_count;
    }
    // Decoration right away: a canary that fails here also tells a walk that went astray (a damaged
    // size) from a real block, and `previous` then names the culprit.
    if (CAPHEAP_DECORATED(c)) {
      Validation v = detail::deco_check_block(c, blk);
      if (!v.ok()) {
        v.previous = previous;
        return v;
      }
    }
    prev_free_flag = is_free ? kPrevFree : 0u;
    if (blk == c->check_cursor) cursor_seen = true;
    previous = where;
    blk += size;
  }
  if (!cursor_seen && c->check_cursor != 0 && c->check_cursor != c->end)
    return fault_at(Fault::kBadControl, c);
  const u32 sentinel = header(c, c->end);
  if (sentinel != prev_free_flag)  // (size 0, not free, kPrevFree as the last block was)
    return fault_at(Fault::kBadSentinel, detail::data_of(c, c->end), previous);

  // 2. Free lists and bitmaps.
  const u32 *heads = detail::list_heads(c);
  const u32 *bits = detail::class_bits(c);
  const u32 classes = u32(c->fl_count) << c->sl_log2;
  const u32 words = detail::bitmap_words(c->fl_count, c->sl_log2);
  // (Bits of word_bitmap from `words` on must be clear: one loop over all 32.)
  for (u32 w = 0; w < 32; ++w)
    if (((c->word_bitmap >> w) & 1u) != (w < words && bits[w] != 0 ? 1u : 0u))
      return fault_at(Fault::kBadBitmap, c);
  if (classes % 32 != 0 && (bits[words - 1] >> (classes % 32)) != 0)
    return fault_at(Fault::kBadBitmap, c);
  u32 listed = 0;
  // (List i holds class i: list_index(class_of(size)) is index_of(size), one-to-one on classes.)
  for (u32 i = 0; i < classes; ++i) {
    u32 e = heads[i];
    if (((bits[i / 32] >> (i % 32)) & 1u) != (e != 0 ? 1u : 0u))
      return fault_at(Fault::kBadBitmap, c);
    u32 back = 0;
    const void *before = c;  // (the data of `back`, or the control structure for a list's head)
    while (e != 0) {
      if (listed >= free_count)
        return fault_at(Fault::kFreeListMismatch, detail::data_of(c, e), before);
      // (free_entry_ok() keeps e inside the block area.)
      if (((addr_of(c) + e + kHeaderBytes) & (g - 1)) != 0 || !free_entry_ok(c, e) ||
          load_word(c, e + size_at(c, e) - 4) != size_at(c, e) || prev_free(c, e) != back)
        return fault_at(Fault::kBadFreeLink, before);
      // In the list of another class; or the block after it does not say its predecessor is
      // free (ties the list entry to the physical chain).
      const u32 size = size_at(c, e);
      const Fault f = index_of(Ctx(c), size) != i              ? Fault::kBadFreeListClass
                      : (header(c, e + size) & kPrevFree) == 0 ? Fault::kBadFreeLink
                                                               : Fault::kNone;
      if (f != Fault::kNone) return fault_at(f, detail::data_of(c, e), before);
      ++listed;
      back = e;
      before = detail::data_of(c, e);
      e = next_free(c, e);
    }
  }
  if (listed != free_count) return fault_at(Fault::kFreeListMismatch, c);

  // 3. Counters.
  if (c->free_bytes != free_sum || c->free_blocks != free_count || c->used_blocks != used_count ||
      c->min_free_bytes > c->free_bytes)
    return fault_at(Fault::kBadCounters, c);

  return fault_at(Fault::kNone, nullptr);  // (the same as {}, without a second constructor)
}

namespace {

/// One block of the incremental check: what validate() checks for it that needs no walk from the
/// start (header, neighbours' flags, free-list links and class, footer, decoration).
Validation check_one_block(const Control *c, u32 blk) noexcept {
  const u32 g = detail::granule_of(c);
  const u32 h = header(c, blk);
  const u32 size = h & kSizeMask;
  const void *where = detail::data_of(c, blk);
  if (size < kMinBlockBytes || (size & (g - 1)) != 0 || size > c->end - blk)
    return {Fault::kBadBlockSize, where};
  if ((h & kPrevFree) != 0) {
    const u32 psize = load_word(c, blk - 4);
    if (blk == c->first || psize < kMinBlockBytes || psize > blk - c->first ||
        header(c, blk - psize) != (psize | kFree))
      return {Fault::kBadPrevFreeFlag, where};
  }
  const u32 next_h = header(c, blk + size);
  const bool is_free = (h & kFree) != 0;
  if (((next_h & kPrevFree) != 0) != is_free) return {Fault::kBadPrevFreeFlag, where};
  if (is_free) {
    if ((next_h & kFree) != 0) return {Fault::kAdjacentFree, where};
    if (load_word(c, blk + size - 4) != size) return {Fault::kBadFooter, where};
    const u32 nf = next_free(c, blk), pf = prev_free(c, blk);
    const Ctx x(c);
    if (nf != 0 && (!free_entry_ok(x, nf) || prev_free(c, nf) != blk))
      return {Fault::kBadFreeLink, where};
    const SizeClass k = class_of(c, size);
    if (pf != 0) {
      if (!free_entry_ok(x, pf) || next_free(c, pf) != blk) return {Fault::kBadFreeLink, where};
      if (!same_class(class_of(c, size_at(c, pf)), k)) return {Fault::kBadFreeListClass, where};
    } else if (detail::list_heads(c)[list_index(x, k)] != blk) {
      return {Fault::kBadFreeListClass, where};
    }
    const u32 i = list_index(x, k);
    if (((detail::class_bits(c)[i / 32] >> (i % 32)) & 1u) == 0 ||
        ((c->word_bitmap >> (i / 32)) & 1u) == 0)
      return {Fault::kBadBitmap, where};
  }
  if (CAPHEAP_DECORATED(c)) return detail::deco_check_block(c, blk);
  return {};
}

}  // namespace

void Heap::restart_validate_step() noexcept {
  if (control_ != nullptr) control_->check_cursor = 0;
}

StepResult Heap::validate_step(std::size_t max_blocks) noexcept {
  StepResult r;
  Control *c = control_;
  if (c == nullptr) {
    r.validation = {Fault::kBadControl, nullptr};
    return r;
  }
  if (max_blocks == 0) max_blocks = 1;
  u32 blk = c->check_cursor == 0 ? c->first : c->check_cursor;
  if (blk < c->first || blk > c->end || !invariants_hold()) {
    r.validation = {Fault::kBadControl, c};
    return r;
  }
  while (r.visited < max_blocks && blk < c->end) {
    ++r.visited;
    const Validation v = check_one_block(c, blk);
    if (!v.ok()) {
      r.validation = v;  // stay here: the next step reports it again until it is repaired
      c->check_cursor = blk;
      return r;
    }
    blk += size_at(c, blk);
  }
  if (blk >= c->end) {
    const u32 sentinel = header(c, c->end);
    if ((sentinel & (kSizeMask | kFree)) != 0) {
      r.validation = {Fault::kBadSentinel, detail::data_of(c, c->end)};
      c->check_cursor = c->end;
      return r;
    }
    r.cycle_complete = true;
    blk = 0;
  }
  c->check_cursor = blk;
  return r;
}

bool Heap::invariants_hold() const noexcept {
  const Control *c = control_;
  if (c == nullptr || !control_fields_ok(c)) return false;
  const u32 span = c->end - c->first;
  if (c->free_bytes > span || c->min_free_bytes > c->free_bytes) return false;
  if ((c->free_blocks == 0) != (c->word_bitmap == 0)) return false;
  const u32 words = detail::bitmap_words(c->fl_count, c->sl_log2);
  if (words < 32 && (c->word_bitmap >> words) != 0) return false;
  if (std::size_t(c->free_blocks) * kMinBlockBytes > span) return false;
  if (std::size_t(c->used_blocks) * kMinBlockBytes + c->free_bytes > span) return false;
  const u32 sentinel = header(c, c->end);
  if ((sentinel & (kSizeMask | kFree)) != 0) return false;
  const u32 first_h = header(c, c->first);
  const u32 first_size = first_h & kSizeMask;
  if (first_size < kMinBlockBytes || first_size > span || (first_h & kPrevFree) != 0) return false;
  if (c->word_bitmap != 0) {
    const u32 w = msb_index(c->word_bitmap);
    const u32 word = detail::class_bits(c)[w];
    if (word == 0) return false;
    const u32 top = detail::list_heads(c)[w * 32 + msb_index(word)];
    if (!free_entry_ok(c, top)) return false;
  }
  return true;
}

}  // namespace capheap
