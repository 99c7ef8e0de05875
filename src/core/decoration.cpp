// decoration.cpp — poisoning and owner words around the raw engine, and the checks that look
// inside blocks (canaries, requested sizes, the fill of free memory).
//
// The layout is drawn in block_layout.hpp ("Decoration"). A decorated heap asks the raw engine for
// requested + head + tail bytes and hands out data + head. Only heaps created with decoration get
// here (Heap's methods test Control::debug first), so undecorated heaps pay one byte test.
//
// Corruption found on the way is reported through the fail hook with the exact address, the heap
// and what was expected and found; the operation is then refused (free ignored, NULL returned), so
// the evidence stays in memory.

#include "capheap/heap.hpp"
#include "core/block_layout.hpp"
#include "core/check.hpp"
#include "core/engine.hpp"
#include "port/port.h"

namespace capheap {
namespace detail {
namespace {

inline std::uintptr_t addr_of(const void *p) noexcept {
  return reinterpret_cast<std::uintptr_t>(p);
}

/// The decoration of one heap, derived from Control::debug and the granule.
struct Deco {
  u32 head;         ///< bytes before the application's data
  u32 tail;         ///< bytes after it (tail canary)
  u32 owner_bytes;  ///< 4 with owner words
  std::uint8_t level;
  explicit Deco(const Control *c) noexcept
      : head(head_bytes(c->debug, granule_of(c))),
        tail(tail_bytes(c->debug)),
        owner_bytes((c->debug & kDebugOwner) != 0 ? kOwnerBytes : 0u),
        level(static_cast<std::uint8_t>(c->debug & kDebugPoisonMask)) {}
  bool poisoned() const noexcept { return level != 0; }
  bool comprehensive() const noexcept { return level == 2; }
  u32 total() const noexcept { return head + tail; }
};

inline u32 read_u32(const unsigned char *p) noexcept {
  u32 v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
inline void write_u32(unsigned char *p, u32 v) noexcept {
  __builtin_memcpy(p, &v, sizeof v);
}

// ---- Reports ------------------------------------------------------------------------------------

/// Fixed-size text builder (the fail hook must not allocate; no libc formatting in the core).
struct Msg {
  char buf[96];
  unsigned n = 0;
  Msg &text(const char *s) noexcept {
    while (*s != '\0' && n + 1 < sizeof buf)
      buf[n++] = *s++;
    buf[n] = '\0';
    return *this;
  }
  Msg &hex(u32 v, int digits) noexcept {
    text("0x");
    for (int i = digits - 1; i >= 0; --i) {
      if (n + 1 < sizeof buf) buf[n++] = "0123456789abcdef"[(v >> (4 * i)) & 0xFu];
    }
    buf[n] = '\0';
    return *this;
  }
};

/// Reports a Validation through the fail hook: "<what>: expected <e> got <f>" at v.at.
CAPHEAP_COLD void report(const Control *c, const Validation &v) noexcept {
  Msg m;
  m.text(fault_text(v.fault));
  const int digits = v.fault == Fault::kBadFreeFill ? 2 : 8;
  if (v.fault == Fault::kBadAllocSize) {
    m.text(": expected <=").hex(v.expected, 8);
  } else {
    m.text(": expected ").hex(v.expected, digits);
  }
  m.text(" got ").hex(v.found, digits);
  check_failed(m.buf, v.at, heap_id(c));
}

// ---- Fill patterns ------------------------------------------------------------------------------

/// First byte in [p, p + n) that is not `pattern`, or null. Word-at-a-time in the middle.
const unsigned char *find_not(const unsigned char *p, std::size_t n,
                              unsigned char pattern) noexcept {
  const unsigned char *end = p + n;
  while (p < end && (addr_of(p) & 3u) != 0) {
    if (*p != pattern) return p;
    ++p;
  }
  const u32 word = 0x01010101u * pattern;
  while (end - p >= 4) {
    if (read_u32(p) != word) break;
    p += 4;
  }
  for (; p < end; ++p)
    if (*p != pattern) return p;
  return nullptr;
}

Validation fill_fault(const Control *c, u32 blk, const unsigned char *bad) noexcept {
  Validation v;
  v.fault = Fault::kBadFreeFill;
  v.block = data_of(c, blk);
  v.at = bad;
  v.expected = kFillFree;
  v.found = *bad;
  return v;
}

/// The bytes of a free block comprehensive poisoning keeps at 0xFE: all but header, links, footer.
inline void free_fill_range(const Control *c, u32 blk, u32 size, const unsigned char *&from,
                            std::size_t &n) noexcept {
  from = bytes_of(c) + blk + kFreeFillStart;
  n = size > kFreeFillStart + 4 ? size - kFreeFillStart - 4 : 0;
}

// ---- Per-allocation decoration -----------------------------------------------------------------

/// Checks the canaries and stored size of the allocation whose engine data is `data` (usable
/// `usable` bytes). ok() if intact.
Validation check_used(const Deco &d, unsigned char *data, u32 usable) noexcept {
  Validation v;
  if (!d.poisoned()) return v;
  unsigned char *user = data + d.head;
  unsigned char *head = user - d.owner_bytes - kPoisonHeadBytes;
  v.block = data;
  const u32 canary = read_u32(head);
  if (canary != kHeadCanary) {
    v.fault = Fault::kBadHeadCanary;
    v.at = head;
    v.expected = kHeadCanary;
    v.found = canary;
    return v;
  }
  const u32 requested = read_u32(head + 4);
  const u32 limit = usable - d.total();
  if (requested > limit) {
    v.fault = Fault::kBadAllocSize;
    v.at = head + 4;
    v.expected = limit;
    v.found = requested;
    return v;
  }
  const u32 tail = read_u32(user + requested);
  if (tail != kTailCanary) {
    v.fault = Fault::kBadTailCanary;
    v.at = user + requested;
    v.expected = kTailCanary;
    v.found = tail;
  }
  return v;
}

/// Writes the decoration of a fresh allocation of `size` bytes at engine data `data`; returns the
/// application's pointer.
void *decorate(const Deco &d, unsigned char *data, std::size_t size) noexcept {
  unsigned char *user = data + d.head;
  if (d.poisoned()) {
    unsigned char *head = user - d.owner_bytes - kPoisonHeadBytes;
    write_u32(head, kHeadCanary);
    write_u32(head + 4, static_cast<u32>(size));
    write_u32(user + size, kTailCanary);  // unaligned when size is not a multiple of 4
    if (d.comprehensive()) __builtin_memset(user, kFillAlloc, size);
  }
  if (d.owner_bytes != 0) write_u32(user - kOwnerBytes, capheap_port_task_owner());
  return user;
}

/// Comprehensive: frees a block that the engine just handed out, back into the 0xFE fill, leaving
/// its data bytes as they are. The bytes that held the free block's links and footer (its first 8
/// and last 4), and the neighbours' headers, links and footers a merge absorbs, become 0xFE, as
/// deco_deallocate does.
void give_back(Control *c, unsigned char *data, u32 usable) noexcept {
  const u32 blk = static_cast<u32>(addr_of(data) - addr_of(c)) - kHeaderBytes;
  const u32 size = usable + kHeaderBytes;
  const bool prev_free = header_prev_free(load_word(c, blk));
  const bool next_free = header_is_free(load_word(c, blk + size));
  __builtin_memset(data, kFillFree, 8);
  __builtin_memset(data + usable - 4, kFillFree, 4);
  raw_deallocate(c, data);
  unsigned char *base = bytes_of(c);
  if (prev_free) __builtin_memset(base + blk - 4, kFillFree, 8);
  if (next_free) __builtin_memset(base + blk + size, kFillFree, kFreeFillStart);
}

/// Comprehensive: a block just handed out by the engine must still be 0xFE where free memory was
/// (all but its first 8 data bytes, which held free-list links, and its last 4, possibly the old
/// footer). Otherwise reports the first bad byte, returns the block to the free memory (the heap is
/// as it was: multi_heap_check still finds the same byte) and returns false.
bool verify_handed_out(Control *c, unsigned char *data, u32 usable) noexcept {
  if (usable <= 12) return true;
  const unsigned char *bad = find_not(data + 8, usable - 12, kFillFree);
  if (bad == nullptr) return true;
  const u32 blk = static_cast<u32>(addr_of(data) - addr_of(c)) - kHeaderBytes;
  report(c, fill_fault(c, blk, bad));
  give_back(c, data, usable);
  return false;
}

/// Engine data pointer of a decorated allocation after the O(1) live-block checks (null after a
/// report). `op` holds the operation's report texts.
unsigned char *checked_data(Control *c, const Deco &d, void *p, const OpTexts &op) noexcept {
  if (addr_of(p) < d.head) {
    check_failed(op.bad_pointer, p, heap_id(c));
    return nullptr;
  }
  unsigned char *data = static_cast<unsigned char *>(p) - d.head;
  if (raw_checked_block(c, data, p, op) == 0) return nullptr;
  return data;
}

inline u32 usable_of(const Control *c, const unsigned char *data) noexcept {
  return header_size(load_word(c, static_cast<u32>(addr_of(data) - addr_of(c)) - kHeaderBytes)) -
         kHeaderBytes;
}

}  // namespace

void deco_init(Control *c) noexcept {
  if ((c->debug & kDebugPoisonMask) != 2) return;
  const u32 blk = c->first;
  const unsigned char *from;
  std::size_t n;
  free_fill_range(c, blk, header_size(load_word(c, blk)), from, n);
  __builtin_memset(const_cast<unsigned char *>(from), kFillFree, n);
}

void *deco_allocate(Control *c, std::size_t size) noexcept {
  const Deco d(c);
  if (size == 0 || size > ~std::size_t(0) - d.total()) return nullptr;
  auto *data = static_cast<unsigned char *>(raw_allocate(c, size + d.total()));
  if (data == nullptr) return nullptr;
  if (d.comprehensive() && !verify_handed_out(c, data, usable_of(c, data))) return nullptr;
  return decorate(d, data, size);
}

void *deco_allocate_aligned(Control *c, std::size_t size, std::size_t alignment,
                            std::size_t offset) noexcept {
  const Deco d(c);
  if (size == 0 || size > ~std::size_t(0) - d.total() || offset > ~std::size_t(0) - d.head)
    return nullptr;
  auto *data = static_cast<unsigned char *>(
      raw_allocate_aligned(c, size + d.total(), alignment, offset + d.head));
  if (data == nullptr) return nullptr;
  if (d.comprehensive() && !verify_handed_out(c, data, usable_of(c, data))) return nullptr;
  return decorate(d, data, size);
}

void deco_deallocate(Control *c, void *p) noexcept {
  const Deco d(c);
  unsigned char *data = checked_data(c, d, p, kFreeTexts);
  if (data == nullptr) return;
  const u32 usable = usable_of(c, data);
  const Validation v = check_used(d, data, usable);
  if (!v.ok()) {
    report(c, v);
    return;
  }
  if (!d.comprehensive()) {
    raw_deallocate(c, data);
    return;
  }
  // Comprehensive: the whole block becomes 0xFE, and so do the headers, links and footers that
  // merging with free neighbours leaves inside the merged block.
  const u32 blk = static_cast<u32>(addr_of(data) - addr_of(c)) - kHeaderBytes;
  const u32 size = usable + kHeaderBytes;
  const bool prev_free = header_prev_free(load_word(c, blk));
  const bool next_free = header_is_free(load_word(c, blk + size));
  __builtin_memset(data, kFillFree, usable);
  raw_deallocate(c, data);
  unsigned char *base = bytes_of(c);
  if (prev_free) __builtin_memset(base + blk - 4, kFillFree, 8);  // prev's footer + our header
  if (next_free)
    __builtin_memset(base + blk + size, kFillFree, kFreeFillStart);  // next's header
                                                                     // and links
}

bool deco_verify_live(Control *c, void *p) noexcept {
  const Deco d(c);
  unsigned char *data = checked_data(c, d, p, kReallocTexts);
  if (data == nullptr) return false;
  const Validation v = check_used(d, data, usable_of(c, data));
  if (v.ok()) return true;
  report(c, v);
  return false;
}

void *deco_reallocate(Control *c, void *p, std::size_t size) noexcept {
  if (p == nullptr) return deco_allocate(c, size);
  if (size == 0) {
    deco_deallocate(c, p);
    return nullptr;
  }
  const Deco d(c);
  unsigned char *data = checked_data(c, d, p, kReallocTexts);
  if (data == nullptr) return nullptr;
  const u32 usable = usable_of(c, data);
  const Validation v = check_used(d, data, usable);
  if (!v.ok()) {
    report(c, v);
    return nullptr;
  }
  if (size > ~std::size_t(0) - d.total()) return nullptr;
  if (d.comprehensive()) {
    // Never in place: new memory must come out of the free fill, old memory go back to it.
    void *q = deco_allocate(c, size);
    if (q == nullptr) return nullptr;
    const std::size_t old = read_u32(static_cast<unsigned char *>(p) - d.owner_bytes - 4);
    __builtin_memcpy(q, p, old < size ? old : size);
    deco_deallocate(c, p);
    return q;
  }
  auto *moved = static_cast<unsigned char *>(raw_reallocate(c, data, size + d.total()));
  if (moved == nullptr) return nullptr;
  unsigned char *user = moved + d.head;
  if (d.poisoned()) {
    write_u32(user - d.owner_bytes - 4, static_cast<u32>(size));
    write_u32(user + size, kTailCanary);
  }
  if (d.owner_bytes != 0) write_u32(user - kOwnerBytes, capheap_port_task_owner());
  return user;
}

std::size_t deco_usable_size(const Control *c, const void *p) noexcept {
  const Deco d(c);
  if (addr_of(p) < d.head) return 0;
  const unsigned char *data = static_cast<const unsigned char *>(p) - d.head;
  const std::size_t usable = raw_usable_size(c, data);
  if (usable == 0) return 0;
  const std::size_t room = usable > d.total() ? usable - d.total() : 0;
  if (!d.poisoned()) return room;
  const u32 requested = read_u32(static_cast<const unsigned char *>(p) - d.owner_bytes - 4);
  return requested < room ? requested : room;
}

void deco_view(const Control *c, u32 blk, BlockView &view) noexcept {
  const Deco d(c);
  auto *data = static_cast<unsigned char *>(view.data);
  const u32 usable = header_size(load_word(c, blk)) - kHeaderBytes;
  if (usable < d.total()) return;  // damaged: leave the raw view
  unsigned char *user = data + d.head;
  view.user = user;
  view.requested = usable - d.total();
  if (d.poisoned()) {
    const u32 requested = read_u32(user - d.owner_bytes - 4);
    if (requested < view.requested) view.requested = requested;
  }
  if (d.owner_bytes != 0) view.owner = read_u32(user - kOwnerBytes);
}

Validation deco_check_block(const Control *c, u32 blk) noexcept {
  const Deco d(c);
  const u32 h = load_word(c, blk);
  const u32 size = header_size(h);
  if (!header_is_free(h)) {
    if (size - kHeaderBytes < d.total()) {
      Validation v;
      v.fault = Fault::kBadBlockSize;
      v.block = data_of(c, blk);
      v.at = bytes_of(c) + blk;
      return v;
    }
    return check_used(d, bytes_of(const_cast<Control *>(c)) + blk + kHeaderBytes,
                      size - kHeaderBytes);
  }
  if (!d.comprehensive()) return {};
  const unsigned char *from;
  std::size_t n;
  free_fill_range(c, blk, size, from, n);
  const unsigned char *bad = find_not(from, n, kFillFree);
  return bad == nullptr ? Validation{} : fill_fault(c, blk, bad);
}

}  // namespace detail
}  // namespace capheap
