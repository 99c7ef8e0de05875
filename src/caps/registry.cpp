// registry.cpp — the heap registry: capability matching, heap choice, owner lookup, locking.
//
// Choosing heaps without re-evaluating them. For every capability bit b the registry keeps bitmasks
// over list positions: masks_[l][b] (heaps with b at priority level l) and masks_[kAny][b] (heaps
// with b at any level). For a request with bits R:
//   eligible   = AND over b in R of masks_[kAny][b]        (heaps with every requested bit)
//   at level l = eligible & OR over b in R of masks_[l][b], minus heaps already tried
// and the set bits of each level's mask, in ascending position, are ESP-IDF's list order. The cost
// depends on the number of requested bits, not on the number of heaps.
//
// Finding a pointer's heap: by_addr_ lists positions sorted by start address; a binary search finds
// the heap in O(log heaps).
//
// Firmware built for size (CAPHEAP_COMPACT, CAPHEAP_CAPS_TABLES 0) keeps none of these tables: the
// choice walks the records in list order level by level, as ESP-IDF does, and the lookup scans
// them (O(heaps) both; same choices and results).
//
// Concurrency. Tables change only when heaps are added (init, enabling startup-stack heaps,
// add_region), under table_lock_. Readers (allocation, free) take no table lock: they read under a
// sequence counter (seqlock) and retry if a change overlapped. Every table word is read and written
// with relaxed atomics; seq_ with acquire/release. Each heap has its own lock (port lock), taken
// only around the engine call.

#include "capheap/caps.hpp"

#include "core/check.hpp"
#include "port/port.h"

#ifndef CAPHEAP_COMPACT
#define CAPHEAP_COMPACT 0
#endif

namespace capheap {

namespace {

using u32 = std::uint32_t;

template <class T>
__attribute__((always_inline)) inline T ld(const T &x) noexcept {
  return __atomic_load_n(&x, __ATOMIC_RELAXED);
}
template <class T>
__attribute__((always_inline)) inline void st(T &x, T v) noexcept {
  __atomic_store_n(&x, v, __ATOMIC_RELAXED);
}

// ESP32's D/IRAM window: the buses see it in opposite word order (layout.diram_inverted).
/// True if data address a lies in a word-reversed D/IRAM window, [dram_low, dram_high). An alias
/// outside it (ESP32's RTC fast memory) runs in bus order.
inline bool in_reversed_window(const capheap_layout_t &l, std::uintptr_t a) noexcept {
  return l.diram_inverted && a >= l.diram_dram_low && a < l.diram_dram_high;
}
/// Where a boundary d (dram_low <= d <= dram_high) of the word-reversed window lands on the
/// instruction bus.
inline std::uintptr_t reversed_alias(const capheap_layout_t &l, std::uintptr_t d) noexcept {
  return l.diram_iram_low + (l.diram_dram_high - d);
}

inline std::size_t align_up(std::size_t v, std::size_t a) noexcept {
  return (v + a - 1) & ~(a - 1);
}
inline u32 lsb(u32 v) noexcept {
  return static_cast<u32>(__builtin_ctz(v));
}

constexpr u32 kExecForbidden = MALLOC_CAP_8BIT | MALLOC_CAP_DMA;
constexpr u32 kHwAlignCaps = MALLOC_CAP_DMA | MALLOC_CAP_DMA_DESC_AHB | MALLOC_CAP_DMA_DESC_AXI |
                             MALLOC_CAP_CACHE_ALIGNED | MALLOC_CAP_SIMD;
constexpr std::size_t kAliasWord = 4;  // the hidden data address before an EXEC alias pointer

}  // namespace

// ================================================================================================
// Locks and the sequence counter
// ================================================================================================

void Registry::lock_table() noexcept {
  if (table_lock_ready_) capheap_port_lock_acquire(&table_lock_);
}
void Registry::unlock_table() noexcept {
  if (table_lock_ready_) capheap_port_lock_release(&table_lock_);
}

void Registry::lock_all() noexcept {
  lock_table();
  for (unsigned i = 0; i < count_; ++i)
    lock(records_[i]);
}
void Registry::unlock_all() noexcept {
  for (unsigned i = count_; i > 0; --i)
    unlock(records_[i - 1]);
  unlock_table();
}
void Registry::reset_locks_in_child() noexcept {
  if (table_lock_ready_) capheap_lock_init(&table_lock_);
#if CAPHEAP_LOCK_STORAGE
  for (unsigned i = 0; i < count_; ++i)
    capheap_lock_init(&records_[i].lock_storage);
#endif
}

// ================================================================================================
// Setup
// ================================================================================================

void Registry::init(std::size_t granule) noexcept {
  HeapConfig cfg;
  cfg.granule = granule == 16 ? Granule::k16 : granule == 8 ? Granule::k8 : Granule::k4;
  init(cfg);
}

void Registry::init(const HeapConfig &heap_config) noexcept {
#if CAPHEAP_LOCK_STORAGE
  for (unsigned i = 0; i < count_; ++i)
    capheap_lock_destroy(&records_[i].lock_storage);
#endif
  if (table_lock_ready_) capheap_lock_destroy(&table_lock_);
  // Forget every record, not just the count: free's hint checks a record's own bounds, so a stale
  // record from before (its memory may now belong to new heaps) must never match a pointer. The
  // fast path's first-heap tables name records: none until a heap is registered. Unused entries
  // of addr_start_ hold the largest address (all bits set).
  __builtin_memset(static_cast<void *>(records_), 0, sizeof records_);
#if CAPHEAP_CAPS_TABLES
  __builtin_memset(static_cast<void *>(masks_), 0, sizeof masks_);
  __builtin_memset(static_cast<void *>(first_single_), 0, sizeof first_single_);
  __builtin_memset(static_cast<void *>(first_pair_), 0, sizeof first_pair_);
  __builtin_memset(static_cast<void *>(addr_start_), 0xFF, sizeof addr_start_);
  registered_ = Mask{};
#endif
  free_hint_ = __atomic_load_n(&then_held_, __ATOMIC_SEQ_CST) ? kHintHeld : 0u;
#if CAPHEAP_THEN_TABLES
  hint_heap_ = Heap{};
#endif
  count_ = 0;
  iram_low_ = iram_high_ = iram_span_ = 0;
  layout_ = nullptr;
  heap_config_ = heap_config;
  if (heap_config_.granule == Granule::kPlatformDefault) heap_config_.granule = Granule::k4;
  heap_config_.reserved_prefix = 0;
  capheap_lock_init(&table_lock_);
  table_lock_ready_ = true;
#if CAPHEAP_CAPS_TABLES
  fast_caps_base_ = ~(MALLOC_CAP_EXEC | MALLOC_CAP_INVALID | MALLOC_CAP_DMA_DESC_AHB |
                      MALLOC_CAP_DMA_DESC_AXI | MALLOC_CAP_CACHE_ALIGNED | MALLOC_CAP_SIMD);
  publish_fast_caps();
#endif
}

#if CAPHEAP_CAPS_TABLES
void Registry::set_fast_path(bool on) noexcept {
  fast_off_ = !on;
  publish_fast_caps();
}
#endif

void Registry::hold_then_path(bool hold) noexcept {
  __atomic_store_n(&then_held_, hold, __ATOMIC_SEQ_CST);
#if CAPHEAP_THEN_TABLES
  // The hint's hold bit follows then_held_ (again if a concurrent call changed it meanwhile).
  for (;;) {
    const bool h = __atomic_load_n(&then_held_, __ATOMIC_SEQ_CST);
    std::uint32_t w = __atomic_load_n(&free_hint_, __ATOMIC_SEQ_CST);
    while (!__atomic_compare_exchange_n(&free_hint_, &w, h ? (w | kHintHeld) : (w & ~kHintHeld),
                                        true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    }
    if (__atomic_load_n(&then_held_, __ATOMIC_SEQ_CST) == h) break;
  }
#endif
#if CAPHEAP_CAPS_TABLES
  publish_fast_caps();
#endif
}

#if CAPHEAP_CAPS_TABLES
void Registry::publish_fast_caps() noexcept {
  // Writers: rebuild_tables (under the table lock), set_fast_path and hold_then_path (not). Each
  // stores what the settings say, then checks that every value still matches them; the last
  // writer to store therefore leaves values that match the final settings.
#if CAPHEAP_THEN_TABLES
  const auto then_entry = [this](unsigned b, std::uint32_t t) {
    return b < kCapBits && (t & (1u << b)) != 0
               ? __atomic_load_n(&first_single_[b], __ATOMIC_ACQUIRE)
               : nullptr;
  };
  const auto then_pair = [this](unsigned b0, unsigned b1, std::uint32_t t) {
    const std::uint32_t c = (1u << b0) | (1u << b1);
    return b0 < b1 && (t & c) == c &&
                   (c & (MALLOC_CAP_DMA | MALLOC_CAP_SPIRAM)) !=
                       (MALLOC_CAP_DMA | MALLOC_CAP_SPIRAM)
               ? pair_entry(records_, __atomic_load_n(&first_pair_[b0][b1], __ATOMIC_ACQUIRE))
               : pair_entry(records_, 0);
  };
  for (;;) {
    const std::uint32_t v = fast_caps_value();
    const bool held = __atomic_load_n(&then_held_, __ATOMIC_SEQ_CST);
    const std::uint32_t t = held ? 0u : v;
    __atomic_store_n(&fast_caps_, v, __ATOMIC_SEQ_CST);
    // While held, then_single_ keeps its records (allocate_done reads them) and then_heap_ is
    // empty, so that allocate_then's check of the pair fails and it takes its miss handler.
    for (unsigned b = 0; b < 32; ++b) {
      Record *const r = then_entry(b, v);
      Heap h = r != nullptr && !held ? r->heap : Heap{};
      __atomic_store(&then_heap_[b], &h, __ATOMIC_SEQ_CST);
      __atomic_store_n(&then_single_[b], r, __ATOMIC_SEQ_CST);
    }
    for (unsigned b0 = 0; b0 < kPairBits; ++b0)
      for (unsigned b1 = 0; b1 < kPairBits; ++b1)
        __atomic_store_n(&then_pair_[b0][b1], then_pair(b0, b1, t), __ATOMIC_SEQ_CST);
    bool same = fast_caps_value() == v && __atomic_load_n(&then_held_, __ATOMIC_SEQ_CST) == held;
    for (unsigned b = 0; same && b < 32; ++b) {
      Record *const r = __atomic_load_n(&then_single_[b], __ATOMIC_SEQ_CST);
      Heap h;
      __atomic_load(&then_heap_[b], &h, __ATOMIC_SEQ_CST);
      same = r == then_entry(b, v) && (r == nullptr || (held ? !h : r->heap == h));
    }
    for (unsigned b0 = 0; same && b0 < kPairBits; ++b0)
      for (unsigned b1 = 0; same && b1 < kPairBits; ++b1)
        same = __atomic_load_n(&then_pair_[b0][b1], __ATOMIC_SEQ_CST) == then_pair(b0, b1, t);
    if (same) return;
  }
#endif
}
#endif  // CAPHEAP_CAPS_TABLES

bool Registry::register_heap(Record &r) noexcept {
  r.heap = Heap::create(reinterpret_cast<void *>(r.start), r.end - r.start, heap_config_);
  // (release: a reader that sees the flag through deallocate_slow / owner_of sees the heap.)
  __atomic_store_n(&r.registered, static_cast<bool>(r.heap), __ATOMIC_RELEASE);
  return r.registered;
}

Registry::Record Registry::make_record(const u32 caps[CAPHEAP_PRIORITY_LEVELS], u32 keep,
                                       std::uintptr_t start, std::uintptr_t end) noexcept {
  Record r;
  for (unsigned l = 0; l < CAPHEAP_PRIORITY_LEVELS; ++l) {
    r.caps[l] = caps[l] & keep;
    r.caps[kAny] |= r.caps[l];
  }
  r.start = start;
  r.end = end;
  r.hint_span = end - start <= 0xFFFFFFFFu ? static_cast<std::uint32_t>(end - start) : 0u;
  return r;
}

#if CAPHEAP_CAPS_TABLES
u32 Registry::eligible_in(u32 req, unsigned w) const noexcept {
  u32 m = ld(registered_.w[w]);
  for (u32 bits = req; bits != 0; bits &= bits - 1)
    m &= ld(masks_[kAny][lsb(bits)].w[w]);
  return m;
}

u32 Registry::level_in(u32 req, unsigned l, unsigned w) const noexcept {
  u32 m = 0;
  for (u32 bits = req; bits != 0; bits &= bits - 1)
    m |= ld(masks_[l][lsb(bits)].w[w]);
  return m;
}

unsigned Registry::first_choice(u32 req) const noexcept {
  for (unsigned l = 0; l < CAPHEAP_PRIORITY_LEVELS; ++l)
    for (unsigned w = 0; w < kWords; ++w)
      if (const u32 m = eligible_in(req, w) & level_in(req, l, w))
        return order_[w * 32 + lsb(m)] + 1u;
  return 0;
}

void Registry::rebuild_tables(unsigned added, Placement where) noexcept {
  __atomic_store_n(&seq_, seq_ + 1, __ATOMIC_RELAXED);  // odd: tables changing
  CAPHEAP_SEQ_FENCE(__ATOMIC_RELEASE);
  // Release stores (not only the fence above): readers that walk positions (heap_caps queries)
  // load order_ and count_ with acquire and then read the record, without the sequence check.
  if (added != kMaxHeaps) {
    // Runtime heaps go to the head of the list, boot heaps to its end.
    const unsigned at = where == Placement::kRuntime ? 0 : count_;
    for (unsigned p = count_; p > at; --p)
      __atomic_store_n(&order_[p], order_[p - 1], __ATOMIC_RELEASE);
    __atomic_store_n(&order_[at], static_cast<std::uint8_t>(added), __ATOMIC_RELEASE);
    __atomic_store_n(&count_, count_ + 1, __ATOMIC_RELEASE);
  }
  const unsigned n = count_;
  // Capability masks: every heap's bits at each level and at any level (bit 31, INVALID, is never
  // a heap capability).
  Mask *const masks = &masks_[0][0];
  for (unsigned k = 0; k < (kAny + 1) * kCapBits; ++k)
    for (unsigned w = 0; w < kWords; ++w)
      st(masks[k].w[w], u32(0));
  Mask reg{};
  std::uintptr_t low = 0, high = 0;
  Record *at[kMaxHeaps];  // the record at each list position
  for (unsigned pos = 0; pos < n; ++pos) {
    const Record &r = *(at[pos] = &records_[order_[pos]]);
    const u32 word = pos / 32, bit = 1u << (pos % 32);
    if (r.registered) reg.w[word] |= bit;
    for (unsigned l = 0; l <= kAny; ++l)
      for (u32 c = r.caps[l] & ~u32(MALLOC_CAP_INVALID); c != 0; c &= c - 1) {
        u32 &m = masks_[l][lsb(c)].w[word];
        st(m, ld(m) | bit);
      }
    if (r.iram_start != 0) {
      const std::uintptr_t e = to_iram(r, r.end);
      const std::uintptr_t lo = e < r.iram_start ? e : r.iram_start;
      if (low == 0 || lo < low) low = lo;
      if (lo + (r.end - r.start) > high) high = lo + (r.end - r.start);
    }
  }
  for (unsigned w = 0; w < kWords; ++w)
    st(registered_.w[w], reg.w[w]);
  st(iram_low_, low);
  st(iram_high_, high);
  st(iram_span_, high - low);
  // First heap of the walk for each single-bit request and for each pair of the low 16 bits.
  // (release: pairs with the acquire loads of the inline fast path.)
  for (unsigned b0 = 0; b0 < kCapBits; ++b0) {
    const unsigned first = first_choice(1u << b0);
    __atomic_store_n(&first_single_[b0], first != 0 ? &records_[first - 1] : nullptr,
                     __ATOMIC_RELEASE);
    for (unsigned b1 = b0 + 1; b0 < kPairBits && b1 < kPairBits; ++b1)
      __atomic_store_n(&first_pair_[b0][b1],
                       static_cast<std::uint8_t>(first_choice((1u << b0) | (1u << b1))),
                       __ATOMIC_RELEASE);
  }
  // The inline fast path reads one table word: it is off while more than 32 heaps exist.
  publish_fast_caps();

  // by_addr_: positions sorted by start, ties by larger end first, so an enclosing heap precedes
  // the heaps nested in it (insertion sort: count_ <= kMaxHeaps, runs rarely).
  std::uint8_t sorted[kMaxHeaps];
  for (unsigned i = 0; i < n; ++i) {
    const Record &a = *at[i];
    unsigned j = i;
    for (; j > 0; --j) {
      const Record &b = *at[sorted[j - 1]];
      if (!(a.start < b.start || (a.start == b.start && a.end > b.end))) break;
      sorted[j] = sorted[j - 1];
    }
    sorted[j] = static_cast<std::uint8_t>(i);
  }
  // Unused entries sort last: the lookup searches the whole table without a bound.
  for (unsigned k = 0; k < kMaxHeaps; ++k) {
    if (k >= n) {
      st(addr_start_[k], ~std::uintptr_t(0));
      continue;
    }
    const Record &r = *at[sorted[k]];
    std::uint8_t parent = 0;
    for (unsigned j = k; j > 0 && parent == 0; --j) {
      const Record &o = *at[sorted[j - 1]];
      if (o.start <= r.start && r.end <= o.end) parent = static_cast<std::uint8_t>(j);
    }
    st(by_addr_[k], sorted[k]);
    st(parent_[k], parent);
    st(addr_start_[k], r.start);
    st(addr_end_[k], r.end);
    // A heap inside another: frees of the outer heap's range must search (the pointer may be the
    // inner heap's). Set before the tables are published; never cleared (heaps are not removed).
    if (parent != 0)
      __atomic_store_n(&at[sorted[parent - 1]]->hint_span, std::uint32_t(0), __ATOMIC_RELEASE);
  }
  __atomic_store_n(&seq_, seq_ + 1, __ATOMIC_RELEASE);  // even again
}
#else   // !CAPHEAP_CAPS_TABLES

// Firmware built for size: the list order, the alias window and the nesting flags are all there is
// to publish; allocation and lookups walk the records.
void Registry::rebuild_tables(unsigned added, Placement where) noexcept {
  __atomic_store_n(&seq_, seq_ + 1, __ATOMIC_RELAXED);  // odd: tables changing
  CAPHEAP_SEQ_FENCE(__ATOMIC_RELEASE);
  if (added != kMaxHeaps) {
    // A heap inside another (either way round; heaps are nested or disjoint): frees of the outer
    // heap's range must search, since the pointer may be the inner heap's. Set before the heap is
    // published; never cleared (heaps are not removed).
    Record &a = records_[added];
    for (unsigned i = 0; i < count_; ++i) {
      Record &o = records_[i];
      // (Never both: add_region refuses a range equal to an existing one.)
      Record *const outer = o.start <= a.start && a.end <= o.end   ? &o
                            : a.start <= o.start && o.end <= a.end ? &a
                                                                   : nullptr;
      if (outer != nullptr) {
        outer->outer = true;
        __atomic_store_n(&outer->hint_span, std::uint32_t(0), __ATOMIC_RELEASE);
      }
    }
    // Runtime heaps go to the head of the list, boot heaps to its end. (Release stores: readers
    // load order_ and count_ with acquire and then read the record.)
    const unsigned at = where == Placement::kRuntime ? 0 : count_;
    for (unsigned p = count_; p > at; --p)
      __atomic_store_n(&order_[p], order_[p - 1], __ATOMIC_RELEASE);
    __atomic_store_n(&order_[at], static_cast<std::uint8_t>(added), __ATOMIC_RELEASE);
    __atomic_store_n(&count_, count_ + 1, __ATOMIC_RELEASE);
    // The alias window spans every record's alias (registered or not). Records are only added
    // (init clears the window) and keep their alias: widening it by the new one's is the update.
    if (a.iram_start != 0) {
      const std::uintptr_t e = to_iram(a, a.end);
      const std::uintptr_t lo = e < a.iram_start ? e : a.iram_start;
      std::uintptr_t low = iram_low_, high = iram_high_;
      if (low == 0 || lo < low) low = lo;
      if (lo + (a.end - a.start) > high) high = lo + (a.end - a.start);
      st(iram_low_, low);
      st(iram_high_, high);
      st(iram_span_, high - low);
    }
  }
  __atomic_store_n(&seq_, seq_ + 1, __ATOMIC_RELEASE);  // even again
}

int Registry::find_heap(const void *p, unsigned *record_index) const noexcept {
  const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p);
  for (;;) {
    const u32 seq = read_seq_begin();
    // The innermost heap containing a: heaps are nested or disjoint (a nested heap is strictly
    // smaller), so it is the smallest one (equal ones, which add_region refuses: the last in
    // list order).
    int found = -1;
    unsigned rec = 0;
    std::uintptr_t best_span = ~std::uintptr_t(0);  // (no heap spans the whole address space)
    const unsigned n = __atomic_load_n(&count_, __ATOMIC_ACQUIRE);
    for (unsigned pos = 0; pos < n; ++pos) {
      const unsigned idx = __atomic_load_n(&order_[pos], __ATOMIC_ACQUIRE);
      const Record &r = records_[idx];
      const std::uintptr_t span = r.end - r.start;
      if (a - r.start < span && span <= best_span) {
        found = static_cast<int>(pos);
        rec = idx;
        best_span = span;
      }
    }
    if (!read_seq_retry(seq)) {
      if (found >= 0 && record_index != nullptr) *record_index = rec;
      return found;
    }
  }
}
#endif  // CAPHEAP_CAPS_TABLES

Status Registry::insert(Record &r, Placement where) noexcept {
  if (count_ >= kMaxHeaps) return Status::kNoMem;
  const unsigned idx = count_;
  records_[idx] = r;
  records_[idx].index = static_cast<std::uint8_t>(idx);
  // A startup-stack region is no heap yet: free's hint never matches it (its span is set when it
  // is registered).
  if (!r.registered) records_[idx].hint_span = 0;
#if CAPHEAP_LOCK_STORAGE
  capheap_lock_init(&records_[idx].lock_storage);
#endif
  rebuild_tables(idx, where);
  return Status::kOk;
}

Status Registry::add_region(const u32 caps[CAPHEAP_PRIORITY_LEVELS], std::uintptr_t start,
                            std::uintptr_t end, Placement where, const char *name) noexcept {
  if (caps == nullptr || start == 0 || end == 0 || end <= start) return Status::kInvalidArg;
  Record r = make_record(caps, ~u32(MALLOC_CAP_INVALID), start, end);
  r.name = name != nullptr ? name : (where == Placement::kRuntime ? "runtime" : "region");
  r.runtime = where == Placement::kRuntime;
  // A heap registers before it becomes visible; a too-small range fails here without side effects
  // beyond writing the (unused) memory.
  lock_table();
  Status s = count_ >= kMaxHeaps ? Status::kNoMem : Status::kOk;
  for (unsigned i = 0; i < count_; ++i) {
    const Record &o = records_[i];
    // Disjoint, or strictly inside (contained and smaller): anything else overlaps.
    if (end > o.start && start < o.end &&
        !(start >= o.start && end <= o.end && end - start < o.end - o.start)) {
      s = Status::kFail;
      break;
    }
  }
  if (s == Status::kOk) s = register_heap(r) ? insert(r, where) : Status::kInvalidSize;
  unlock_table();
  return s;
}

Status Registry::build_from_layout(const capheap_layout_t &layout) noexcept {
  layout_ = &layout;
#if CAPHEAP_CAPS_TABLES
  // DMA requests need the slow path when this chip aligns internal DMA buffers.
  if (layout.align.dma_internal > 4 || layout.align.cache_line_int > 4) {
    fast_caps_base_ &= ~u32(MALLOC_CAP_DMA);
    publish_fast_caps();
  }
#endif
  // 1. Reserved ranges, widened to 4-byte boundaries, subtracted from each region; 2. adjacent
  // pieces of the same type, stack flag and alias continuity merged; pieces <= 16 bytes dropped.
  struct Piece {
    std::uintptr_t start, end, iram;
    unsigned type;
    bool stack;
  };
  // (No pending piece yet: an empty one, which a piece only joins if it is one, and which flush
  // drops.)
  Piece pending{};
  Status result = Status::kOk;

  auto flush = [&](const Piece &p) {
    if (p.end - p.start <= 16) return;
    const capheap_memory_type_t &t = layout.types[p.type];
    Record r = make_record(t.caps, ~u32(0), p.start, p.end);
    r.iram_start = p.iram;
    r.name = t.name;
    if (!p.stack && !register_heap(r)) return;  // too small to hold a heap: not a heap
    if (insert(r, Placement::kBoot) != Status::kOk) result = Status::kNoMem;
  };
  auto emit = [&](Piece p) {
    if (p.end - p.start <= 16) return;
    // A piece continues the pending one's alias downwards inside the word-reversed window,
    // upwards elsewhere.
    const std::uintptr_t len = pending.end - pending.start;
    const bool rev = in_reversed_window(layout, p.start);
    if (pending.type == p.type && pending.stack == p.stack && pending.end == p.start &&
        ((pending.iram == 0 && p.iram == 0) ||
         (pending.iram != 0 && p.iram != 0 && in_reversed_window(layout, pending.start) == rev &&
          (rev ? p.iram + len == pending.iram : pending.iram + len == p.iram)))) {
      pending.end = p.end;
      return;
    }
    flush(pending);
    pending = p;
  };

  lock_table();
  for (std::size_t i = 0; i < layout.region_count; ++i) {
    const capheap_memory_region_t &reg = layout.regions[i];
    if (reg.type >= layout.type_count) continue;
    std::uintptr_t cur = reg.start;
    const std::uintptr_t reg_end = reg.start + reg.size;
    // Cut out every reserved range overlapping [cur, reg_end), in address order.
    while (cur < reg_end) {
      std::uintptr_t cut_start = reg_end, cut_end = reg_end;
      for (std::size_t k = 0; k < layout.reserved_count; ++k) {
        const std::uintptr_t rs = layout.reserved[k].start & ~std::uintptr_t(3);
        const std::uintptr_t re = (layout.reserved[k].end + 3) & ~std::uintptr_t(3);
        if (re <= cur || rs >= reg_end) continue;
        const std::uintptr_t s = rs < cur ? cur : rs;
        if (s < cut_start) {
          cut_start = s;
          cut_end = re;
        }
      }
      if (cut_start > cur) {
        // A region whose instruction address equals its data address (C6, H2, P4) has no alias.
        const bool aliased = reg.iram_address != 0 && reg.iram_address != reg.start;
        // In an inverted window the region's alias names the low end of the whole region's
        // instruction range; a piece's own is where its start lands as a boundary (to_iram), the
        // high end of its range, so that the alias window covers the piece's range also when it
        // stops short of the region's end.
        const std::uintptr_t iram = !aliased ? 0
                                    : in_reversed_window(layout, cur)
                                        ? reversed_alias(layout, cur)
                                        : reg.iram_address + (cur - reg.start);
        emit(Piece{cur, cut_start, iram, reg.type, reg.startup_stack});
      }
      cur = cut_end > cut_start ? cut_end : reg_end;
    }
  }
  flush(pending);
  unlock_table();
  return result;
}

void Registry::enable_startup_stack_heaps() noexcept {
  lock_table();
  bool changed = false;
  for (unsigned i = 0; i < count_; ++i) {
    Record &r = records_[i];
    if (r.registered || !register_heap(r)) continue;
    changed = true;
    // Free's hint may take it now, unless another heap lies inside it (that one may own the
    // pointer) or it is too large for the hint's 32 bits. (release: the heap is published first.)
    bool outer = r.end - r.start > 0xFFFFFFFFu;
#if CAPHEAP_CAPS_TABLES
    for (unsigned j = 0; j < count_ && !outer; ++j)
      outer = j != i && records_[j].start >= r.start && records_[j].end <= r.end;
#else
    outer = outer || r.outer;  // (rebuild_tables found the nesting when the heaps were added)
#endif
    if (!outer)
      __atomic_store_n(&r.hint_span, static_cast<std::uint32_t>(r.end - r.start), __ATOMIC_RELEASE);
  }
  if (changed) rebuild_tables(kMaxHeaps, Placement::kBoot);
  unlock_table();
}

bool Registry::layout_caps_at(std::uintptr_t addr,
                              u32 out[CAPHEAP_PRIORITY_LEVELS]) const noexcept {
  if (layout_ == nullptr) return false;
  const capheap_layout_t &layout = *layout_;
  long type = -1;  // index into layout.types
  for (std::size_t i = 0; i < layout.region_count; ++i) {
    const capheap_memory_region_t &reg = layout.regions[i];
    if (addr >= reg.start && addr < reg.start + reg.size && reg.type < layout.type_count) {
      type = reg.type;
      break;
    }
  }
  // External RAM belongs to the chip's region table too (ESP-IDF lists PSRAM there with
  // CONFIG_SPIRAM), although capheap adds its heap at run time.
  if (type < 0 && layout.ext_ram_type >= 0 &&
      static_cast<std::size_t>(layout.ext_ram_type) < layout.type_count &&
      addr >= layout.ext_ram_start && addr - layout.ext_ram_start < layout.ext_ram_max_size)
    type = layout.ext_ram_type;
  if (type < 0) return false;
  for (unsigned l = 0; l < CAPHEAP_PRIORITY_LEVELS; ++l)
    out[l] = layout.types[type].caps[l];
  return true;
}

// ================================================================================================
// Address translation for EXEC allocations served from D/IRAM
// ================================================================================================

std::uintptr_t Registry::to_iram(const Record &r, std::uintptr_t d) const noexcept {
  // (d is a boundary, so it may be the window's end: inclusive.)
  if (layout_ != nullptr && layout_->diram_inverted && d >= layout_->diram_dram_low &&
      d <= layout_->diram_dram_high)
    return reversed_alias(*layout_, d);
  return r.iram_start + (d - r.start);
}

void *Registry::data_address_of_alias(const void *p) const noexcept {
  // The hidden word is 32 bits (the device's address width). On a 64-bit host the upper half comes
  // from the D/IRAM heap that owns the alias window (a region never straddles a 4 GiB boundary).
  u32 word;
  __builtin_memcpy(&word, static_cast<const unsigned char *>(p) - kAliasWord, sizeof word);
  std::uintptr_t data = word;
  if (sizeof(std::uintptr_t) > sizeof(u32)) {
    const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p);
    const unsigned n = ld(count_);
    for (unsigned i = 0; i < n; ++i) {
      const Record &r = records_[i];
      if (r.iram_start == 0) continue;
      const std::uintptr_t lo = to_iram(r, r.end) < r.iram_start ? to_iram(r, r.end) : r.iram_start;
      if (a >= lo && a <= lo + (r.end - r.start)) {
        const std::uintptr_t high = r.start & ~std::uintptr_t(0xFFFFFFFFu);
        data = high | word;
        break;
      }
    }
  }
  return reinterpret_cast<void *>(data);
}

// ================================================================================================
// Allocation
// ================================================================================================

std::size_t Registry::hw_alignment(Caps &caps) const noexcept {
  u32 c = caps.bits();
  if ((c & kHwAlignCaps) == 0) return 0;
  std::size_t a = 0;
  const capheap_hw_alignment_t hw = layout_ != nullptr ? layout_->align : capheap_hw_alignment_t{};
  const bool ext = (c & MALLOC_CAP_SPIRAM) != 0;
  const bool wants_cache = (c & (MALLOC_CAP_DMA | MALLOC_CAP_DMA_DESC_AHB |
                                 MALLOC_CAP_DMA_DESC_AXI | MALLOC_CAP_CACHE_ALIGNED)) != 0;
  if (wants_cache) {
    const std::size_t line = ext ? hw.cache_line_ext : hw.cache_line_int;
    if (line > a) a = line;
    if (!ext && (c & (MALLOC_CAP_DMA | MALLOC_CAP_DMA_DESC_AHB | MALLOC_CAP_DMA_DESC_AXI)) != 0 &&
        hw.dma_internal > a)
      a = hw.dma_internal;
  }
  if ((c & MALLOC_CAP_DMA_DESC_AXI) != 0) {
    const std::size_t axi = hw.dma_desc_axi != 0 ? hw.dma_desc_axi : 8;
    if (axi > a) a = axi;
  }
  if ((c & MALLOC_CAP_SIMD) != 0 && hw.simd > a) a = hw.simd;
  if ((c & (MALLOC_CAP_DMA_DESC_AHB | MALLOC_CAP_DMA_DESC_AXI)) != 0) {
    c &= ~u32(MALLOC_CAP_DMA_DESC_AHB | MALLOC_CAP_DMA_DESC_AXI);
    c |= MALLOC_CAP_DMA;
  }
  if (ext) c &= ~u32(MALLOC_CAP_DMA);  // no heap is DMA|SPIRAM: PSRAM DMA means cache-aligned PSRAM
  c &= ~u32(MALLOC_CAP_CACHE_ALIGNED);
  caps = Caps(c);
  return a > 4 ? a : 0;
}

void *Registry::alloc_in(Record &r, std::size_t size, std::size_t alignment,
                         bool exec_alias) noexcept {
  void *p;
  lock(r);
  if (exec_alias) {
    // Allocate one more word in the data heap; hand out the instruction-bus alias past a hidden
    // word that holds the data address (so free can find the block).
    p = r.heap.allocate(size + kAliasWord);
    unlock(r);
    if (p == nullptr) return nullptr;
    const std::uintptr_t dstart = reinterpret_cast<std::uintptr_t>(p);
    // The word-reversed window (ESP32's D/IRAM) puts the hidden word at the alias of the block's
    // last word; an alias outside it (ESP32's RTC fast memory) is in bus order.
    const bool reversed = layout_ != nullptr && in_reversed_window(*layout_, dstart);
    const std::uintptr_t istart = to_iram(r, reversed ? dstart + size + kAliasWord : dstart);
    const u32 word = static_cast<u32>(dstart);
    __builtin_memcpy(reinterpret_cast<void *>(istart), &word, sizeof word);
    return reinterpret_cast<void *>(istart + kAliasWord);
  }
  p = alignment > 0 ? r.heap.allocate_aligned(size, alignment) : r.heap.allocate(size);
  unlock(r);
  return p;
}

#if CAPHEAP_CAPS_TABLES
void *Registry::try_heaps(std::size_t size, Caps caps, std::size_t alignment, bool exec,
                          unsigned tried) noexcept {
  const u32 req = caps.bits();
restart:
  const u32 seq = read_seq_begin();
  // (One word when it is the only one: the compiler cannot tell that words <= kWords, and warns
  // about eligible[0] with CAPHEAP_MAX_HEAPS <= 32. An empty registry's word is 0.)
  const unsigned words = kWords == 1 ? 1u : (ld(count_) + 31) / 32;
  // Heaps with every requested bit somewhere.
  u32 eligible[kWords];
  for (unsigned w = 0; w < words; ++w)
    eligible[w] = eligible_in(req, w);
  // Level by level, the heaps sharing a requested bit there, in list order (ascending position).
  // Each heap is tried once, at the first level where it qualifies. The record index is read and
  // the sequence checked before each attempt, so an attempt never uses a stale table.
  for (unsigned l = 0; l < CAPHEAP_PRIORITY_LEVELS; ++l) {
    for (unsigned w = 0; w < words; ++w) {
      u32 m = level_in(req, l, w) & eligible[w];
      eligible[w] &= ~m;
      for (; m != 0; m &= m - 1) {
        const unsigned idx = ld(order_[w * 32 + lsb(m)]);
        if (read_seq_retry(seq)) goto restart;  // the tables changed under us
        if (idx + 1 == tried) continue;
        Record &r = records_[idx];
        if (void *p = alloc_in(r, size, alignment, exec && r.iram_start != 0)) return p;
      }
    }
  }
  return nullptr;
}
#else
// Firmware built for size: ESP-IDF's walk over the records in list order, level by level. A heap
// qualifies when it is registered and has every requested bit at some level; it is tried at the
// first level where it shares a requested bit (once: the table form's order exactly).
void *Registry::try_heaps(std::size_t size, Caps caps, std::size_t alignment, bool exec,
                          unsigned tried) noexcept {
  const u32 req = caps.bits();
restart:
  const u32 seq = read_seq_begin();
  const unsigned n = __atomic_load_n(&count_, __ATOMIC_ACQUIRE);
  for (unsigned l = 0; l < CAPHEAP_PRIORITY_LEVELS; ++l) {
    for (unsigned pos = 0; pos < n; ++pos) {
      const unsigned idx = __atomic_load_n(&order_[pos], __ATOMIC_ACQUIRE);
      Record &r = records_[idx];
      unsigned first = 0;  // the first level where r shares a requested bit (kAny: none)
      while (first < kAny && (r.caps[first] & req) == 0)
        ++first;
      if (first != l || (r.caps[kAny] & req) != req ||
          !__atomic_load_n(&r.registered, __ATOMIC_ACQUIRE) || idx + 1 == tried)
        continue;
      if (read_seq_retry(seq)) goto restart;  // the tables changed under us
      if (void *p = alloc_in(r, size, alignment, exec && r.iram_start != 0)) return p;
    }
  }
  return nullptr;
}
#endif

void *Registry::allocate_slow(std::size_t size, Caps caps, unsigned tried,
                              std::size_t alignment) noexcept {
  u32 c = caps.bits();
  if (size == 0 || c == 0 || (c & MALLOC_CAP_INVALID) != 0) return nullptr;
  // Aligned requests (alignment != 0) have no EXEC rule and no 32BIT rounding (spec §1.1).
  const bool exec = alignment == 0 && (c & MALLOC_CAP_EXEC) != 0;
  if (exec) {
    if ((c & kExecForbidden) != 0) return nullptr;  // executable memory is never 8-bit or DMA
    c |= MALLOC_CAP_32BIT;
  }
  // No region is that large; keeps sums exact.
  if (size > (std::size_t(1) << 31) || alignment > (std::size_t(1) << 31)) return nullptr;
  if (alignment == 0 && (c & MALLOC_CAP_32BIT) != 0) size = align_up(size, 4);
  Caps adj(c);
  const std::size_t hw = hw_alignment(adj);
  // DMA_DESC_* requests are DMA requests once adjusted (spec §2): executable memory is never DMA.
  if (exec && (adj.bits() & kExecForbidden) != 0) return nullptr;
  // A hardware-alignment request (spec §2) takes the larger of the two alignments and rounds its
  // size to that one, whichever set it. (hw is 0 without such a request, else above 4.)
  if (hw > alignment) alignment = hw;
  if (alignment != 0 && (c & kHwAlignCaps) != 0) size = align_up(size, alignment);
  return try_heaps(size, adj, alignment <= 4 ? 0 : alignment, exec, tried);
}

#if CAPHEAP_CAPS_TABLES
void *Registry::allocate_in(Record &r, std::size_t size) noexcept {
  lock(r);
  void *p = r.heap.allocate(size);
  unlock(r);
  return p;
}
#endif

void Registry::free_in_heap(Record &r, Heap h, void *ptr) noexcept {
  lock(r);
  Heap::deallocate_to(h, ptr);
  unlock(r);
}

void Registry::free_in(Record &r, void *ptr) noexcept {
  free_in_heap(r, r.heap, ptr);
}

void Registry::deallocate_slow(void *ptr) noexcept {
  if (ptr == nullptr) return;
#if CAPHEAP_COMPACT
  // (Firmware built for size: owner_of's lookup; an alias is the pointer whose data address
  // differs from it. No reader of the hint's hold bit in these builds. The record's own index
  // field names it: no division by the record size.)
  void *data;
  Record *const r = owner_of(ptr, data, "free() target pointer is outside heap areas");
  if (r == nullptr) return;
  if (data == ptr) __atomic_store_n(&free_hint_, std::uint32_t{r->index}, __ATOMIC_RELEASE);
  free_in(*r, data);
#else
  void *data = ptr;
  const bool alias = is_iram_alias(ptr);
  if (alias) data = data_address_of_alias(ptr);
  // The record index comes from inside find_heap's sequence window: a list position read there
  // may name another heap by the time it is used (positions shift when a heap is added).
  unsigned rec = 0;
  if (find_heap(data, &rec) < 0 || !__atomic_load_n(&records_[rec].registered, __ATOMIC_ACQUIRE)) {
    capheap_port_fail("free() target pointer is outside heap areas", ptr, nullptr);
    return;
  }
  // Consecutive frees mostly hit the same heap: the next one checks this record first. (release:
  // pairs with the acquire load in deallocate.)
  if (!alias) {
    // The heap first: a reader that sees the new index with the old heap (or the reverse) finds
    // that they disagree and searches. The hold bit stays as it is.
    Heap h = records_[rec].heap;
    __atomic_store(&hint_heap_, &h, __ATOMIC_RELEASE);
    std::uint32_t hint = __atomic_load_n(&free_hint_, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(&free_hint_, &hint, (hint & kHintHeld) | rec, true,
                                        __ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
    }
  }
  free_in(records_[rec], data);
#endif
}

Registry::Record *Registry::owner_of(const void *p, void *&data, const char *what) const noexcept {
  data = const_cast<void *>(p);
  if (is_iram_alias(p)) data = data_address_of_alias(p);
  // The record index comes from inside find_heap's sequence window: a list position read there
  // may name another heap by the time it is used (positions shift when a heap is added).
  unsigned rec = 0;
  if (find_heap(data, &rec) < 0 || !__atomic_load_n(&records_[rec].registered, __ATOMIC_ACQUIRE)) {
    capheap_port_fail(what, p, nullptr);
    return nullptr;
  }
  return const_cast<Record *>(&records_[rec]);
}

std::size_t Registry::usable_size(const void *p) const noexcept {
  return block_figure(p, false);
}

std::size_t Registry::allocated_size(const void *p) const noexcept {
  return block_figure(p, true);
}

std::size_t Registry::block_figure(const void *p, bool allocated) const noexcept {
  if (p == nullptr) return 0;
  void *data;
  Record *r = owner_of(p, data, "pointer is outside heap areas");
  if (r == nullptr) return 0;
  lock(*r);
  const std::size_t s = allocated ? r->heap.allocated_size(data) : r->heap.usable_size(data);
  unlock(*r);
  if (s == 0) {
    capheap_port_fail("pointer is not a live block", p, r->heap.control());
    return 0;
  }
  return s - (data != p ? kAliasWord : 0);
}

void *Registry::reallocate(void *ptr, std::size_t size, Caps caps) noexcept {
  // (allocate_slow and deallocate_slow apply the same rules as the inline paths.)
  if (ptr == nullptr) return allocate_slow(size, caps);
  if (size == 0) {
    deallocate_slow(ptr);
    return nullptr;
  }
  void *data;
  Record *r = owner_of(ptr, data, "realloc() pointer is outside heap areas");
  if (r == nullptr) return nullptr;
  const bool alias = data != ptr;
  const u32 c = caps.bits();
  if ((c & MALLOC_CAP_INVALID) != 0) return nullptr;
  // A pointer that is not a live, intact block is reported once (by the heap, with its exact
  // reason) and refused, whichever path below would have taken it. If the current heap qualifies,
  // resize within it (in place when possible); otherwise (or if that fails) move: new block with
  // the requested caps, copy, free the old one. Only requests that need a hardware alignment
  // beyond the granule skip the in-heap attempt (spec §1.1: caps the heap has, not an alias), so
  // e.g. DMA on a chip without DMA alignment rules resizes in place like any other request.
  Caps adj(c);
  const bool needs_alignment = hw_alignment(adj) != 0;
  void *q = nullptr;
  std::size_t old_usable = 0;
  lock(*r);
  const bool live = r->heap.verify_live(data);
  if (live && !alias && (r->caps[kAny] & c) == c && !needs_alignment)
    q = r->heap.reallocate(
        ptr, (c & (MALLOC_CAP_32BIT | MALLOC_CAP_EXEC)) != 0 ? align_up(size, 4) : size);
  if (live && q == nullptr) old_usable = r->heap.usable_size(data) - (alias ? kAliasWord : 0);
  unlock(*r);
  if (!live || q != nullptr) return q;
  q = allocate_slow(size, caps);
  if (q == nullptr) return nullptr;
  __builtin_memcpy(q, ptr, old_usable < size ? old_usable : size);
  free_in(*r, data);
  return q;
}

// ================================================================================================
// Views
// ================================================================================================

HeapView Registry::view(unsigned i) const noexcept {
  if (i >= ld(count_)) return HeapView{};
  return view_of_record(record(i));
}

HeapView Registry::view_of(const void *p) const noexcept {
  unsigned rec = 0;
  if (find_heap(p, &rec) < 0) return HeapView{};
  return view_of_record(records_[rec]);
}

HeapView Registry::view_of_record(const Record &r) const noexcept {
  HeapView v;
  v.name = r.name;
  __builtin_memcpy(v.caps, r.caps, sizeof v.caps);
  v.start = r.start;
  v.end = r.end;
  v.iram_start = r.iram_start;
  v.registered = r.registered;
  v.runtime = r.runtime;
  v.heap = r.heap;
  v.lock = const_cast<Record &>(r).lock_object();
  return v;
}

bool Registry::heap_matches(unsigned i, Caps caps) const noexcept {
  if (i >= ld(count_)) return false;
  const Record &r = record(i);
  return r.registered && (r.caps[kAny] & caps.bits()) == caps.bits();
}

}  // namespace capheap
