// tlsf_model.cpp — ESP-IDF multi_heap / TLSF memory-behaviour model (see tlsf_model.hpp).
//
// Where the spec (shared/reference/esp-idf-heap-spec.md §4.1-4.3) is silent, the choices follow
// TLSF as published (Masmano et al., "TLSF: a New Dynamic Memory Allocator for Real-Time Systems",
// ECRTS 2004; "Implementation of a constant-time dynamic storage allocator", SPE 2008) and TLSF
// 3.1's documented behaviour; each such place says so.
#include "tlsf_model.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

namespace capheap::bench {

namespace {

/// Index of the highest set bit (floor(log2 v)); v != 0.
unsigned fls(std::uint64_t v) {
  return 63u - static_cast<unsigned>(__builtin_clzll(v));
}

/// Index of the lowest set bit; v != 0.
unsigned ffs(std::uint32_t v) {
  return static_cast<unsigned>(__builtin_ctz(v));
}

}  // namespace

// ================================================================================================
// Configuration and mapping
// ================================================================================================

TlsfConfig tlsf_config(std::size_t pool_bytes) {
  TlsfConfig c;
  c.pool_bytes = static_cast<std::uint32_t>(pool_bytes);
  if (pool_bytes == 0 || pool_bytes > 0xFFFFFFFFu) return c;
  c.fl_max = fls(pool_bytes) + 1;  // bit length: 32 - clz(B) on the 32-bit target
  c.sl_log2 = pool_bytes <= 16u * 1024u ? 3u : pool_bytes <= 256u * 1024u ? 4u : 5u;
  c.fl_shift = c.sl_log2 + 2;  // + ALIGN_SIZE_LOG2
  c.sl_count = 1u << c.sl_log2;
  c.small_block_size = 1u << c.fl_shift;
  if (c.fl_max < c.fl_shift) return c;  // fl_count stays 0: no configuration
  c.fl_count = c.fl_max - c.fl_shift + 1;
  c.control_size = TlsfModel::kControlFixed + 4 * c.fl_count + 4 * c.fl_count * c.sl_count;
  return c;
}

TlsfIndex tlsf_mapping_insert(const TlsfConfig &c, std::uint64_t size) {
  TlsfIndex ix;
  if (size < c.small_block_size) {
    ix.sl = static_cast<unsigned>(size / TlsfModel::kAlign);  // linear 4-byte classes
    return ix;
  }
  const unsigned top = fls(size);
  ix.sl = static_cast<unsigned>((size >> (top - c.sl_log2)) ^ (std::uint64_t{1} << c.sl_log2));
  ix.fl = top - (c.fl_shift - 1);
  return ix;
}

std::uint64_t tlsf_search_size(const TlsfConfig &c, std::uint64_t size) {
  if (size < c.small_block_size) return size;
  return size + (std::uint64_t{1} << (fls(size) - c.sl_log2)) - 1;
}

// ================================================================================================
// Region words
// ================================================================================================

TlsfModel &TlsfModel::operator=(TlsfModel &&o) noexcept {
  base_ = o.base_;
  size_ = o.size_;
  opt_ = o.opt_;
  cfg_ = o.cfg_;
  control_ = o.control_;
  first_ = o.first_;
  sentinel_ = o.sentinel_;
  initial_block_ = o.initial_block_;
  free_bytes_ = o.free_bytes_;
  minimum_free_ = o.minimum_free_;
  counter_slack_ = o.counter_slack_;
  o.base_ = nullptr;
  return *this;
}

TlsfModel::u32 TlsfModel::load(u32 off) const {
  u32 v;
  std::memcpy(&v, base_ + off, sizeof v);
  return v;
}

void TlsfModel::store(u32 off, u32 v) {
  std::memcpy(base_ + off, &v, sizeof v);
}

void TlsfModel::set_prev_free_bit(u32 b, bool prev_free) {
  const u32 w = size_word(b);
  store(b + 4, prev_free ? (w | kPrevFreeBit) : (w & ~kPrevFreeBit));
}

// Control structure: the 36 fixed bytes (block_null 16, packed configuration word, size,
// fl_bitmap, the two array pointers), then one SL bitmap per first level, then the list heads.
// Only its size is the spec's; where each field sits inside it is this model's choice.
TlsfModel::u32 TlsfModel::fl_bitmap() const {
  return load(control_ + 24);
}
void TlsfModel::set_fl_bitmap(u32 v) {
  store(control_ + 24, v);
}
TlsfModel::u32 TlsfModel::sl_bitmap(unsigned fl) const {
  return load(control_ + kControlFixed + 4 * fl);
}
void TlsfModel::set_sl_bitmap(unsigned fl, u32 v) {
  store(control_ + kControlFixed + 4 * fl, v);
}
TlsfModel::u32 TlsfModel::head(unsigned fl, unsigned sl) const {
  return load(control_ + kControlFixed + 4 * cfg_.fl_count + 4 * (fl * cfg_.sl_count + sl));
}
void TlsfModel::set_head(unsigned fl, unsigned sl, u32 b) {
  store(control_ + kControlFixed + 4 * cfg_.fl_count + 4 * (fl * cfg_.sl_count + sl), b);
}

// ================================================================================================
// Heap creation
// ================================================================================================

bool TlsfModel::create(void *region, std::size_t size, Options options) {
  base_ = nullptr;
  if (region == nullptr || reinterpret_cast<std::uintptr_t>(region) % kAlign != 0) return false;
  if (size >= (std::size_t{1} << 32) || size <= kHeapHeader) return false;
  // multi_heap_register: the heap header, then tlsf_create_with_pool on the rest with max_bytes
  // 0, i.e. the configuration sized for B = region - 20 (the bytes handed to TLSF, control
  // included), the control structure at its start and the pool right behind it.
  const auto b_bytes = static_cast<u32>(size - kHeapHeader);
  const TlsfConfig c = tlsf_config(b_bytes);
  if (c.fl_count == 0 || c.fl_count > 32 || b_bytes < c.control_size) return false;
  const u32 pool = b_bytes - c.control_size;  // what tlsf_add_pool receives
  if (pool < kPoolOverhead + kMinBlock) return false;
  const u32 block_size = (pool - kPoolOverhead) / kAlign * kAlign;
  if (block_size < kMinBlock || block_size >= (std::uint64_t{1} << c.fl_max)) return false;

  base_ = static_cast<unsigned char *>(region);
  size_ = static_cast<u32>(size);
  opt_ = options;
  cfg_ = c;
  control_ = kHeapHeader;
  std::memset(base_, 0, kHeapHeader + c.control_size);  // header, bitmaps and heads all empty
  store(control_ + 20, c.control_size);
  const u32 pool_start = kHeapHeader + c.control_size;
  // The first block's prev_phys word would lie 4 bytes before the pool (the control's last word);
  // it is never read, since the first block's prev-free bit stays clear.
  first_ = pool_start - 4;
  set_size_word(first_, block_size, true, false);
  sentinel_ = next_phys(first_);
  store(sentinel_, first_);                  // prev_phys
  set_size_word(sentinel_, 0, false, true);  // used, 0 bytes, previous free
  insert_free(first_);
  initial_block_ = block_size;
  // multi_heap's counters: region - header - control. With the walk: counter = sum over free
  // blocks of (size + 4) + counter_slack_ (4 plus the pool's alignment remainder).
  free_bytes_ = b_bytes - c.control_size;
  minimum_free_ = free_bytes_;
  counter_slack_ = free_bytes_ - (block_size + kBlockOverhead);
  // The heap header's words (lock, free, minimum free, pool size, TLSF handle), for completeness.
  store(4, static_cast<u32>(free_bytes_));
  store(8, static_cast<u32>(minimum_free_));
  store(12, b_bytes);
  store(16, control_);
  return true;
}

// ================================================================================================
// Free lists
// ================================================================================================

// LIFO: a freed or split-off block goes to the head of its list (TLSF 3.1; the papers leave the
// order open, and any order is O(1)).
void TlsfModel::insert_free(u32 b) {
  const TlsfIndex ix = tlsf_mapping_insert(cfg_, bsize(b));
  const u32 old = head(ix.fl, ix.sl);
  store(b + 8, old);     // next_free
  store(b + 12, kNull);  // prev_free
  if (old != kNull) store(old + 12, b);
  set_head(ix.fl, ix.sl, b);
  set_fl_bitmap(fl_bitmap() | (u32{1} << ix.fl));
  set_sl_bitmap(ix.fl, sl_bitmap(ix.fl) | (u32{1} << ix.sl));
}

void TlsfModel::remove_free(u32 b) {
  const TlsfIndex ix = tlsf_mapping_insert(cfg_, bsize(b));
  const u32 next = load(b + 8);
  const u32 prev = load(b + 12);
  if (next != kNull) store(next + 12, prev);
  if (prev != kNull) {
    store(prev + 8, next);
  } else {
    set_head(ix.fl, ix.sl, next);
    if (next == kNull) {
      const u32 sl_map = sl_bitmap(ix.fl) & ~(u32{1} << ix.sl);
      set_sl_bitmap(ix.fl, sl_map);
      if (sl_map == 0) set_fl_bitmap(fl_bitmap() & ~(u32{1} << ix.fl));
    }
  }
}

/// Good-fit search (spec §4.1; TLSF papers, "mapping_search" + "find_suitable_block"): round the
/// size up to its second-level boundary, take the head of the first non-empty list at or above
/// that index, in the same first level through the SL bitmap, else in the next non-empty first
/// level through the FL bitmap. The block is taken off its list.
TlsfModel::u32 TlsfModel::locate_free(std::uint64_t size) {
  TlsfIndex ix = tlsf_mapping_insert(cfg_, tlsf_search_size(cfg_, size));
  if (ix.fl >= cfg_.fl_count) return kNull;
  u32 sl_map = sl_bitmap(ix.fl) & (~u32{0} << ix.sl);
  if (sl_map == 0) {
    const u32 fl_map = ix.fl + 1 >= 32 ? 0 : fl_bitmap() & (~u32{0} << (ix.fl + 1));
    if (fl_map == 0) return kNull;
    ix.fl = ffs(fl_map);
    sl_map = sl_bitmap(ix.fl);
  }
  ix.sl = ffs(sl_map);
  const u32 b = head(ix.fl, ix.sl);
  remove_free(b);
  return b;
}

// ================================================================================================
// Blocks
// ================================================================================================

/// Splits the tail off b if b has room for `size` bytes plus a whole header (TLSF's split test:
/// block size >= size + 16, which leaves a tail of at least the 12-byte minimum). The tail is
/// marked free with its successor linked back to it; b keeps its free bit (b_free) and its own
/// prev-free bit. Returns the tail or kNull. The tail is not inserted.
TlsfModel::u32 TlsfModel::split_tail(u32 b, u32 size, bool b_free) {
  const u32 have = bsize(b);
  if (have < size + kHeaderSize) return kNull;
  const u32 tail = b + 4 + size;
  set_size_word(tail, have - size - kBlockOverhead, true, b_free);
  set_size_word(b, size, b_free, prev_is_free(b));
  const u32 after = next_phys(tail);
  store(after, tail);  // prev_phys
  set_prev_free_bit(after, true);
  return tail;
}

/// Merges b with its free successor (which the caller has taken off its list); b keeps its flags.
TlsfModel::u32 TlsfModel::absorb_next(u32 b) {
  const u32 n = next_phys(b);
  const u32 w = size_word(b);
  store(b + 4, (w & 3u) | ((w & ~u32{3}) + bsize(n) + kBlockOverhead));
  const u32 after = next_phys(b);
  if (is_free(b)) store(after, b);
  return b;
}

/// TLSF's "prepare used": split off what the request does not need, mark b used.
void *TlsfModel::prepare_used(u32 b, u32 size) {
  const u32 tail = split_tail(b, size, true);
  if (tail != kNull) {
    set_prev_free_bit(tail, false);  // b is about to be used
    insert_free(tail);
  } else {
    set_prev_free_bit(next_phys(b), false);
  }
  set_size_word(b, bsize(b), false, prev_is_free(b));
  return ptr_of(b);
}

/// Request adjustment (spec §4.1): 0 stays 0 (no block); round up to 4, at least 12; 0 if the
/// result is not below 2^fl_max.
std::uint64_t TlsfModel::adjust(std::size_t size) const {
  if (size == 0) return 0;
  const std::uint64_t a = (static_cast<std::uint64_t>(size) + kAlign - 1) / kAlign * kAlign;
  if (size > (std::uint64_t{1} << 62) || a >= (std::uint64_t{1} << cfg_.fl_max)) return 0;
  return std::max<std::uint64_t>(a, kMinBlock);
}

/// multi_heap's counters on an allocation: free -= block size + 4; the minimum follows.
void TlsfModel::note_alloc(u32 block_size) {
  free_bytes_ -= block_size + kBlockOverhead;
  minimum_free_ = std::min(minimum_free_, free_bytes_);
}

// ================================================================================================
// Public operations
// ================================================================================================

void *TlsfModel::malloc(std::size_t size) {
  if (base_ == nullptr) return nullptr;
  const std::uint64_t adj = adjust(size);
  if (adj == 0) return nullptr;
  const u32 b = locate_free(adj);
  if (b == kNull) return nullptr;
  void *p = prepare_used(b, static_cast<u32>(adj));
  note_alloc(bsize(b));
  return p;
}

void *TlsfModel::calloc(std::size_t count, std::size_t size) {
  // heap_caps_calloc: overflow check, malloc, zero fill (multi_heap has no calloc of its own).
  if (count != 0 && size > SIZE_MAX / count) return nullptr;
  void *p = malloc(count * size);
  if (p != nullptr) std::memset(p, 0, count * size);
  return p;
}

void TlsfModel::free(void *p) {
  if (p == nullptr || base_ == nullptr) return;
  u32 b = block_of(p);
  free_bytes_ += bsize(b) + kBlockOverhead;
  // Mark free: the successor learns that its predecessor is free and where it starts.
  set_size_word(b, bsize(b), true, prev_is_free(b));
  u32 n = next_phys(b);
  store(n, b);
  set_prev_free_bit(n, true);
  // Immediate coalescing (TLSF papers): with the previous block, then with the next.
  if (prev_is_free(b)) {
    const u32 prev = load(b);
    remove_free(prev);
    b = absorb_next(prev);
  }
  n = next_phys(b);
  if (is_free(n)) {
    remove_free(n);
    absorb_next(b);
  }
  insert_free(b);
}

void *TlsfModel::realloc(void *p, std::size_t size) {
  if (p == nullptr) return malloc(size);
  if (size == 0) {
    free(p);
    return nullptr;
  }
  const u32 b = block_of(p);
  const u32 cur = bsize(b);
  const u32 n = next_phys(b);
  const std::uint64_t adj = adjust(size);
  // Too big: NULL, the block unchanged (espressif/tlsf; TLSF 3.1 itself did not check this).
  if (adj == 0) return nullptr;
  const std::uint64_t combined = std::uint64_t{cur} + bsize(n) + kBlockOverhead;
  if (adj > cur && (!is_free(n) || adj > combined)) {
    // Cannot stay: malloc a new block while the old one is still allocated, copy, free the old.
    // multi_heap adjusts its counters once, after TLSF's realloc: the minimum never sees the
    // moment when both blocks are allocated.
    const std::size_t minimum = minimum_free_;
    void *q = malloc(size);
    if (q != nullptr) {
      std::memcpy(q, p, std::min<std::size_t>(cur, size));
      free(p);
    }
    minimum_free_ = std::min(minimum, free_bytes_);
    return q;
  }
  if (adj > cur) {  // grow into the free successor
    remove_free(n);
    absorb_next(b);
    set_prev_free_bit(next_phys(b), false);
  }
  // Shrink (or trim what the growth did not need): the tail is freed and merged with a free
  // successor.
  const u32 tail = split_tail(b, static_cast<u32>(adj), false);
  if (tail != kNull) {
    const u32 after = next_phys(tail);
    if (is_free(after)) {
      remove_free(after);
      absorb_next(tail);
    }
    insert_free(tail);
  }
  // multi_heap: free += old block size - new block size.
  free_bytes_ = free_bytes_ + cur - bsize(b);
  minimum_free_ = std::min(minimum_free_, free_bytes_);
  return p;
}

void *TlsfModel::memalign(std::size_t align, std::size_t size) {
  if (base_ == nullptr || align == 0 || (align & (align - 1)) != 0) return nullptr;
  if (align <= kAlign) return malloc(size);
  const std::uint64_t adj = adjust(size);
  if (adj == 0 || align >= (std::uint64_t{1} << cfg_.fl_max)) return nullptr;
  // Room for the request, the worst alignment shift and a leading gap of a whole header (16), so
  // that a gap too small for a block of its own can be pushed to the next aligned address.
  std::uint64_t want = adj + align + kHeaderSize;
  if (opt_.round_aligned_search) want = (want + align - 1) / align * align;
  if (want >= (std::uint64_t{1} << cfg_.fl_max)) return nullptr;
  u32 b = locate_free(want);
  if (b == kNull) return nullptr;
  // The data address that is aligned on the device: the region's own address bits stand in for
  // the device's (the replay's regions are 4096-aligned, as is the search's every region).
  const auto addr = reinterpret_cast<std::uintptr_t>(ptr_of(b));
  const std::uintptr_t mask = align - 1;
  std::uintptr_t gap = ((addr + mask) & ~mask) - addr;
  // A gap of 4..12 bytes cannot become a block: take the first aligned address at least a header
  // past the data (TLSF 3.1's memalign does the same).
  if (gap != 0 && gap < kHeaderSize) gap = ((addr + kHeaderSize + mask) & ~mask) - addr;
  if (gap != 0) {
    // The leading gap becomes a free block of gap - 4 bytes (>= 12); the aligned block starts at
    // b + gap (its prev_phys word is the gap block's last word).
    const u32 have = bsize(b);
    const auto g = static_cast<u32>(gap);
    const u32 lead = b;
    b = lead + g;
    set_size_word(b, have - g, true, true);
    set_size_word(lead, g - kBlockOverhead, true, prev_is_free(lead));
    store(b, lead);
    insert_free(lead);
  }
  void *p = prepare_used(b, static_cast<u32>(adj));
  note_alloc(bsize(b));
  return p;
}

std::size_t TlsfModel::usable_size(const void *p) const {
  return p == nullptr ? 0 : bsize(block_of(p));
}

void TlsfModel::walk(WalkFn fn, void *user) const {
  if (base_ == nullptr) return;
  for (u32 b = first_; b < sentinel_; b = next_phys(b)) {
    if (!fn(b + 8, bsize(b), !is_free(b), user)) return;
  }
}

// ================================================================================================
// Check
// ================================================================================================

TlsfModel::Check TlsfModel::check() const {
  Check r;
  auto fail = [&r](const char *fmt, unsigned long a, unsigned long b2) {
    if (!r.ok) return;
    char buf[160];
    std::snprintf(buf, sizeof buf, fmt, a, b2);
    r.ok = false;
    r.error = buf;
  };
  if (base_ == nullptr) {
    r.ok = false;
    r.error = "no heap";
    return r;
  }
  // Physical walk.
  std::vector<u32> free_list_of_walk;
  u32 b = first_;
  bool prev_free = false;
  u32 prev = kNull;
  std::size_t guard = 0;
  while (b != sentinel_) {
    if (b > sentinel_ || ++guard > size_) {
      fail("walk left the pool at block %lu (sentinel %lu)", b, sentinel_);
      return r;
    }
    const u32 s = bsize(b);
    if (s < kMinBlock) fail("block %lu: size %lu below the minimum", b, s);
    if (prev_is_free(b) != prev_free) fail("block %lu: prev-free bit %lu is wrong", b, !prev_free);
    if (prev_free && load(b) != prev) fail("block %lu: prev_phys %lu is wrong", b, load(b));
    if (is_free(b)) {
      if (prev_free) fail("blocks %lu and %lu: two adjacent free blocks", prev, b);
      ++r.free_blocks;
      r.free_bytes += s;
      r.largest_free = std::max<std::size_t>(r.largest_free, s);
      free_list_of_walk.push_back(b);
    } else {
      ++r.used_blocks;
      r.used_bytes += s;
    }
    if (!r.ok) return r;
    prev_free = is_free(b);
    prev = b;
    b = next_phys(b);
  }
  if (bsize(sentinel_) != 0 || is_free(sentinel_))
    fail("sentinel %lu damaged (word %lu)", sentinel_, size_word(sentinel_));
  if (prev_is_free(sentinel_) != prev_free) fail("sentinel %lu: prev-free bit %lu", sentinel_, 0);
  if (prev_free && load(sentinel_) != prev) fail("sentinel %lu: prev_phys %lu", sentinel_, 0);
  if (sentinel_ + 8 > size_) fail("sentinel %lu past the region (%lu)", sentinel_, size_);
  // Lists and bitmaps.
  std::size_t listed = 0;
  const u32 flm = fl_bitmap();
  if (cfg_.fl_count < 32 && (flm >> cfg_.fl_count) != 0)
    fail("FL bitmap %lx beyond %lu", flm, cfg_.fl_count);
  for (unsigned fl = 0; fl < cfg_.fl_count && r.ok; ++fl) {
    const u32 slm = sl_bitmap(fl);
    if (((flm >> fl) & 1u) != (slm != 0 ? 1u : 0u))
      fail("FL bit %lu disagrees (SL map %lx)", fl, slm);
    if (cfg_.sl_count < 32 && (slm >> cfg_.sl_count) != 0) fail("SL map %lu: %lx", fl, slm);
    for (unsigned sl = 0; sl < cfg_.sl_count && r.ok; ++sl) {
      u32 x = head(fl, sl);
      if (((slm >> sl) & 1u) != (x != kNull ? 1u : 0u)) fail("SL bit %lu.%lu disagrees", fl, sl);
      u32 back = kNull;
      while (x != kNull && r.ok) {
        if (x < first_ || x >= sentinel_ || x % kAlign != 0) {
          fail("list %lu: link %lu outside the pool", fl * 64 + sl, x);
          break;
        }
        if (!is_free(x)) fail("listed block %lu is not free (list %lu)", x, fl * 64 + sl);
        if (load(x + 12) != back) fail("block %lu: prev_free link %lu", x, load(x + 12));
        if (!(tlsf_mapping_insert(cfg_, bsize(x)) == TlsfIndex{fl, sl})) {
          fail("block %lu of size %lu is in the wrong list", x, bsize(x));
        }
        if (!std::binary_search(free_list_of_walk.begin(), free_list_of_walk.end(), x)) {
          fail("listed block %lu is not a block of the walk (list %lu)", x, fl * 64 + sl);
        }
        if (++listed > r.free_blocks) {
          fail("more listed blocks than free blocks (%lu), list %lu", r.free_blocks, fl * 64 + sl);
        }
        back = x;
        x = load(x + 8);
      }
    }
  }
  if (r.ok && listed != r.free_blocks) fail("%lu blocks listed, %lu free", listed, r.free_blocks);
  const std::size_t expect = r.free_bytes + kBlockOverhead * r.free_blocks + counter_slack_;
  if (free_bytes_ != expect) fail("free counter %lu, walk says %lu", free_bytes_, expect);
  if (minimum_free_ > free_bytes_)
    fail("minimum free %lu above free %lu", minimum_free_, free_bytes_);
  return r;
}

}  // namespace capheap::bench
