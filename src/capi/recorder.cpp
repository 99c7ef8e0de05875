// recorder.cpp — the event recorder (include/capheap_recorder.h).
//
// Producers (heap_caps_* callers) store each event as a fixed-size binary record in a ring; a drain
// (one task at a time) merges the rings, formats the records into lines of the trace format and
// hands them to the user's callback.
//
// Two producer schemes, chosen at build time:
//
// CAPHEAP_RECORDER_THREAD_RINGS=1 (host builds): every thread appends to a ring of its own (single
// producer). A thread_local pointer names it; the first event of a thread (or the first after a
// reinstall) attaches a free ring from the pool under a small spin lock. An event is written with
// plain stores and published by a release store of its order into the record's `state`; the
// order is one relaxed fetch-add on a global counter (g_order), the only read-modify-write of an
// event (a plain increment while the process is single-threaded). The ring's head is advanced with
// a relaxed store. The time is the port's coarse clock (capheap_port_coarse_now: a load of the
// ticker's value, or a CLOCK_MONOTONIC_COARSE read where the port runs no ticker): too coarse to
// order events, which is why the counter exists.
// In a single-threaded process with a ticker, record_single (inline in the entry points, no call,
// no frame) writes a malloc or a free into a window of the thread's ring that the general path
// computed after its last event (thread-local `next` / `limit`): no busy word, no re-checks, no
// atomic read-modify-write, only the fields that line reads. Records hold host pointers; the drain
// maps them to chip addresses as it formats (recorder_before_remap drains first when the mapping
// changes) and takes the task from the ring's owner.
// Uninstall and ring recycling need to know that no producer is inside an event: a producer sets
// its ring's `busy` word, then (after a compiler barrier only) re-checks the global state and its
// ring's owner; the other side changes the state or owner, runs capheap_port_thread_barrier()
// (membarrier: every thread executes a full barrier) and then waits for `busy` to be 0. Rings of
// threads that ended are recycled by the drain once they are empty (orders only grow, so a stale
// record can never look published).
//
// CAPHEAP_RECORDER_THREAD_RINGS=0 (bare metal, no thread API in capi): one ring shared by every
// task: `head` = [63] closed | [62:48] install generation | [47:0] next ticket; a producer reserves
// ticket t with one compare-and-swap while t - tail < capacity, and its order is t + 1. The clock
// is the port's capheap_port_timestamp() (the clock hook; a cycle counter read is cheap there).
//
// The drain is a k-way merge over the rings' heads by order; within a ring the order is the
// ticket order. A record is published when its state exceeds the ring's `last` (the state of the
// record the drain took before). Orders are consistent with causality: an allocation takes its
// order after the memory was acquired, a free before it is released, so an event that depends on
// another (the same address) has the higher order. One scan of the heads is not a snapshot, so
// before a chosen head goes out, the rings that were empty when read are read again; if one has
// published since (perhaps the event the head depends on), the scan is repeated.
//
// The merge is also dependency-aware, for what the order cannot settle: a table of the addresses
// live in the output so far (open addressing, in the recorder's memory) holds back a head that
// frees (or reallocs from) an address not yet produced in the output, or produces an address still
// live there (a realloc records its move after the fact, so its order can be later than that of a
// reuse of its old block); the merge takes from the other rings first. When every available head
// is held back (a block allocated before recording started, a dropped event), the earliest is
// emitted anyway. The output's seq= is the output order.

#include "capheap_recorder.h"

#include "capi/capi_internal.hpp"
#include "capi/events.hpp"
#include "capi/recorder_internal.hpp"
#include "port/port.h"

#ifndef CAPHEAP_RECORDER
#define CAPHEAP_RECORDER 1
#endif

#ifndef CAPHEAP_RECORDER_THREAD_RINGS
#define CAPHEAP_RECORDER_THREAD_RINGS 0
#endif

// Records per ring of the built-in pool (host builds set it from CMake; 0: no built-in pool).
#ifndef CAPHEAP_RECORDER_DEFAULT_EVENTS
#define CAPHEAP_RECORDER_DEFAULT_EVENTS 0
#endif
// Rings in the built-in pool, and the most rings any pool has.
#ifndef CAPHEAP_RECORDER_DEFAULT_RINGS
#define CAPHEAP_RECORDER_DEFAULT_RINGS 16
#endif
#ifndef CAPHEAP_RECORDER_MAX_RINGS
#define CAPHEAP_RECORDER_MAX_RINGS 64
#endif
// Entries of the built-in live-address table.
#ifndef CAPHEAP_RECORDER_DEFAULT_LIVE_SLOTS
#define CAPHEAP_RECORDER_DEFAULT_LIVE_SLOTS 65536
#endif

#if CAPHEAP_RECORDER

namespace capheap {
namespace capi {
namespace {

/// One event as the producer stores it (CAPHEAP_RECORDER_EVENT_SIZE bytes).
struct alignas(8) Record {
  std::uint64_t state;      ///< the event's order once complete (see g_order; 0: never written)
  std::uint64_t stamp;      ///< event time (coarse ns on thread-ring hosts, else port timestamp)
  std::uintptr_t id;        ///< address (host pointer) of the block the line names
  std::uintptr_t to;        ///< kRealloc that moved: address of the new block; else 0
  std::size_t size;         ///< requested bytes
  std::uintptr_t caller;    ///< return address in the application
  std::uint32_t caps;       ///< caps of the successful attempt
  std::uint32_t owner;      ///< capheap_port_task_owner() (thread rings: the ring's, at the drain)
  std::uint32_t alignment;  ///< aligned allocations: the alignment; else 0
  std::uint8_t op;          ///< EventOp
  std::uint8_t from_null;   ///< kRealloc of NULL (the line's ID is the new block)
};
static_assert(sizeof(Record) == CAPHEAP_RECORDER_EVENT_SIZE, "record size");
static_assert(alignof(Record) <= CAPHEAP_RECORDER_BUFFER_ALIGN, "record alignment");

constexpr std::uint64_t kClosed = 1ull << 63;
constexpr int kGenShift = 48;
constexpr std::uint64_t kTicketMask = (1ull << kGenShift) - 1;
constexpr std::uint64_t kGenMask = ((1ull << 15) - 1) << kGenShift;
constexpr std::uint64_t kNoDrop = ~0ull;
constexpr std::uint64_t kPrefetchAhead = 8;  ///< records

#if CAPHEAP_RECORDER_THREAD_RINGS
constexpr std::size_t kMaxRings = CAPHEAP_RECORDER_MAX_RINGS;
static_assert(kMaxRings <= 64, "the drain keeps a 64-bit mask of rings");
#else
constexpr std::size_t kMaxRings = 1;
#endif

/// One ring: the producer's line, then the drain's.
struct alignas(64) Ring {
  std::uint64_t head = 0;           ///< next ticket (shared ring: closed | generation | ticket)
  std::uint64_t tail_seen = 0;      ///< thread ring: the producer's copy of tail
  std::uint64_t dropped = 0;        ///< events this ring's producer(s) dropped
  std::uint64_t drop_at = kNoDrop;  ///< ticket of the oldest unreported drop
  Record *records = nullptr;
  std::uint32_t owner = 0;  ///< thread ring: the owner word of the attached thread; 0: free
  std::uint32_t busy = 0;   ///< thread ring: 1 while the owner records an event
  std::uint32_t used = 0;   ///< attached since install (its records are cleared)
  alignas(64) std::uint64_t tail = 0;  ///< next ticket to drain
  std::uint64_t last = 0;              ///< state of the last record delivered (published: > last)
  std::uint64_t dropped_reported = 0;
};

/// Read by producers on every event; written at install (before state opens, release).
struct alignas(64) Global {
  std::uint64_t state = kClosed;  ///< thread rings: closed | generation
  std::uint64_t mask = 0;         ///< ring capacity - 1
  std::uint32_t flags = 0;
  std::uint32_t rings = 0;  ///< rings in the pool
};
Global g;

Ring g_rings[kMaxRings];

#if CAPHEAP_RECORDER_THREAD_RINGS
/// The order of events over all rings: every event takes the next value (one relaxed fetch-add)
/// and stores it in its record's state. It is never reset, so a record left from an earlier owner
/// of a ring is always <= the ring's `last`.
alignas(64) std::uint64_t g_order = 0;
#endif

// Drain side (lock held), install and stats.
struct alignas(64) ConsumerSide {
  std::uint64_t delivered = 0;
  std::uint64_t orphan_dropped = 0;  ///< events of threads that found no free ring
  std::uint64_t orphan_reported = 0;
  std::uint32_t rings_seen = 0;  ///< 1 + highest ring index attached since install
  capheap_recorder_cb_t callback = nullptr;
  void *user = nullptr;
  std::uintptr_t *live = nullptr;  ///< live-address table (null: single ring, no ordering needed)
  std::size_t live_mask = 0;
  std::size_t live_count = 0;
  bool live_overflow = false;  ///< an address did not fit: unknown frees are not held back
  int lock = 0;                ///< held by the drain and by install / uninstall
  int attach_lock = 0;         ///< thread rings: attaching and recycling
};
ConsumerSide g_cons;

RecorderScanHook g_scan_hook = nullptr;  ///< tests only (recorder_internal.hpp)
void *g_scan_hook_user = nullptr;

#if CAPHEAP_RECORDER_DEFAULT_EVENTS > 0
static_assert((CAPHEAP_RECORDER_DEFAULT_EVENTS & (CAPHEAP_RECORDER_DEFAULT_EVENTS - 1)) == 0,
              "CAPHEAP_RECORDER_DEFAULT_EVENTS must be a power of two");
#if CAPHEAP_RECORDER_THREAD_RINGS
constexpr std::size_t kDefaultRings = CAPHEAP_RECORDER_DEFAULT_RINGS;
static_assert(kDefaultRings <= kMaxRings, "too many default rings");
std::uintptr_t g_default_live[CAPHEAP_RECORDER_DEFAULT_LIVE_SLOTS];
#else
constexpr std::size_t kDefaultRings = 1;
#endif
Record g_default_records[CAPHEAP_RECORDER_DEFAULT_EVENTS * kDefaultRings];
#endif

inline bool try_lock(int &l) noexcept {
  return __atomic_exchange_n(&l, 1, __ATOMIC_ACQUIRE) == 0;
}
inline void lock(int &l) noexcept {
  while (!try_lock(l)) {
  }
}
inline void unlock(int &l) noexcept {
  __atomic_store_n(&l, 0, __ATOMIC_RELEASE);
}

template <typename T>
inline T ld(const T &v) noexcept {
  return __atomic_load_n(&v, __ATOMIC_RELAXED);
}
template <typename T>
inline void st(T &v, T x) noexcept {
  __atomic_store_n(&v, x, __ATOMIC_RELAXED);
}

// ---- Formatting ---------------------------------------------------------------------------------
// The line is written with raw stores into a buffer sized for the longest line: every field has a
// bounded width (hex up to 16 digits, decimal up to 20), so no bounds checks are needed.

/// Appends a literal (without its NUL).
template <std::size_t N>
__attribute__((always_inline)) inline char *put(char *w, const char (&text)[N]) noexcept {
  __builtin_memcpy(w, text, N - 1);
  return w + N - 1;
}

/// Appends `0x` and lower-case hex without padding.
__attribute__((always_inline)) inline char *put_hex(char *w, std::uint64_t v) noexcept {
  static const char kDigits[] = "0123456789abcdef";
  const int digits = v == 0 ? 1 : (67 - __builtin_clzll(v)) / 4;
  w[0] = '0';
  w[1] = 'x';
  char *end = w + 2 + digits;
  char *d = end;
  do {
    *--d = kDigits[v & 0xFu];
    v >>= 4;
  } while (d != w + 2);
  return end;
}

/// Appends unsigned decimal (two digits per step).
__attribute__((always_inline)) inline char *put_dec(char *w, std::uint64_t v) noexcept {
  static const char kPairs[] =
      "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
      "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
      "8081828384858687888990919293949596979899";
  char tmp[20];
  char *t = tmp + sizeof tmp;
  while (v >= 100) {
    const auto pair = static_cast<std::size_t>(v % 100) * 2;
    v /= 100;
    t -= 2;
    __builtin_memcpy(t, kPairs + pair, 2);
  }
  if (v >= 10) {
    t -= 2;
    __builtin_memcpy(t, kPairs + v * 2, 2);
  } else {
    *--t = static_cast<char>('0' + v);
  }
  const auto n = static_cast<std::size_t>(tmp + sizeof tmp - t);
  __builtin_memcpy(w, t, n);
  return w + n;
}

// Longest line: "r " + ID (18) + " " + SIZE (20) + " caps=" (6) + 10 + " t=" (3) + 20 + " task="
// (6) + 10 + " site=" (6) + 18 + " seq=" (5) + 20 + " to=" (4) + 18 + "\n" < 200.
static_assert(CAPHEAP_RECORDER_MAX_LINE >= 200, "line buffer too small");

/// Nanoseconds of a record's stamp.
inline std::uint64_t stamp_ns(std::uint64_t stamp) noexcept {
#if CAPHEAP_RECORDER_THREAD_RINGS
  return stamp;  // the coarse clock is in nanoseconds already
#else
  return capheap_port_timestamp_ns(stamp);
#endif
}

/// Formats record `r` (a copy) with sequence number `seq` into buf; returns the length.
std::size_t format(const Record &rec, std::uint64_t seq, char *buf) noexcept {
  // Producers store host pointers: the display mapping happens here, off the allocation path
  // (recorder_before_remap drains whatever was recorded under a mapping before it changes).
  Record r = rec;
  r.id = display_address(reinterpret_cast<const void *>(rec.id));
  if (static_cast<EventOp>(rec.op) == EventOp::kRealloc && rec.to != 0)
    r.to = display_address(reinterpret_cast<const void *>(rec.to));
  char *w = buf;
  switch (static_cast<EventOp>(r.op)) {
    case EventOp::kMalloc:
      w = put_dec(put(put_hex(put(w, "a "), r.id), " "), r.size);
      break;
    case EventOp::kCalloc:
      if (r.alignment != 0) {
        w = put_hex(put(w, "m "), r.id);
        w = put_dec(put(put_dec(put(w, " "), r.alignment), " "), r.size);
      } else {
        w = put_dec(put(put_hex(put(w, "z "), r.id), " 1 "), r.size);
      }
      break;
    case EventOp::kAlignedAlloc:
      w = put_hex(put(w, "m "), r.id);
      w = put_dec(put(put_dec(put(w, " "), r.alignment), " "), r.size);
      break;
    case EventOp::kRealloc:
      w = put_dec(put(put_hex(put(w, "r "), r.id), " "), r.size);
      break;
    case EventOp::kFree:
      w = put_hex(put(w, "f "), r.id);
      break;
  }
  if (static_cast<EventOp>(r.op) != EventOp::kFree) w = put_hex(put(w, " caps="), r.caps);
  w = put_dec(put(w, " t="), stamp_ns(r.stamp));
  w = put_hex(put(w, " task="), r.owner);
  w = put_hex(put(w, " site="), r.caller);
  w = put_dec(put(w, " seq="), seq);
  if (static_cast<EventOp>(r.op) == EventOp::kRealloc && r.to != 0)
    w = put_hex(put(w, " to="), r.to);
  *w++ = '\n';
  return static_cast<std::size_t>(w - buf);
}

// ---- Live-address table (drain only) -------------------------------------------------------
// Linear probing, key 0 = empty, deletion by backward shift (no tombstones).

inline std::size_t live_hash(std::uintptr_t a) noexcept {
  return static_cast<std::size_t>((static_cast<std::uint64_t>(a) * 0x9e3779b97f4a7c15ull) >> 32) &
         g_cons.live_mask;
}

bool live_has(std::uintptr_t a) noexcept {
  for (std::size_t i = live_hash(a);; i = (i + 1) & g_cons.live_mask) {
    const std::uintptr_t k = g_cons.live[i];
    if (k == a) return true;
    if (k == 0) return false;
  }
}

void live_insert(std::uintptr_t a) noexcept {
  if (a == 0) return;
  // Kept at most 3/4 full; beyond that addresses go untracked.
  if (4 * (g_cons.live_count + 1) > 3 * (g_cons.live_mask + 1)) {
    if (!live_has(a)) g_cons.live_overflow = true;
    return;
  }
  std::size_t i = live_hash(a);
  while (g_cons.live[i] != 0) {
    if (g_cons.live[i] == a) return;
    i = (i + 1) & g_cons.live_mask;
  }
  g_cons.live[i] = a;
  ++g_cons.live_count;
}

void live_erase(std::uintptr_t a) noexcept {
  const std::size_t mask = g_cons.live_mask;
  std::size_t i = live_hash(a);
  for (;; i = (i + 1) & mask) {
    if (g_cons.live[i] == 0) return;
    if (g_cons.live[i] == a) break;
  }
  --g_cons.live_count;
  // Backward shift: move later members of the probe run into the hole where allowed.
  std::size_t hole = i;
  for (std::size_t j = (i + 1) & mask; g_cons.live[j] != 0; j = (j + 1) & mask) {
    const std::size_t home = live_hash(g_cons.live[j]);
    // j may move to hole if home is not cyclically in (hole, j].
    const bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
    if (stays) continue;
    g_cons.live[hole] = g_cons.live[j];
    hole = j;
  }
  g_cons.live[hole] = 0;
}

/// Why emitting r now would break a dependency in the output (see the top of the file).
enum Hold { kFree = 0, kSourceUnknown = 1, kTargetLive = 2 };
Hold held_back(const Record &r) noexcept {
  const auto op = static_cast<EventOp>(r.op);
  const bool unknown_ok = g_cons.live_overflow;
  if (op == EventOp::kFree) return !unknown_ok && !live_has(r.id) ? kSourceUnknown : kFree;
  if (op == EventOp::kRealloc && r.from_null == 0) {
    if (!unknown_ok && !live_has(r.id)) return kSourceUnknown;
    return r.to != 0 && live_has(r.to) ? kTargetLive : kFree;
  }
  return live_has(r.id) ? kTargetLive : kFree;  // produces r.id
}

void live_apply(const Record &r) noexcept {
  const auto op = static_cast<EventOp>(r.op);
  if (op == EventOp::kFree) {
    live_erase(r.id);
  } else if (op == EventOp::kRealloc && r.from_null == 0) {
    if (r.to != 0) {
      live_erase(r.id);
      live_insert(r.to);
    }
  } else {
    live_insert(r.id);
  }
}

// ---- Drain --------------------------------------------------------------------------------------

void send_drop_line(std::uint64_t n) noexcept {
  char buf[CAPHEAP_RECORDER_MAX_LINE];
  char *w = put_dec(put(buf, "# recorder: dropped "), n);
  w = put(w, " events (ring full)\n");
  g_cons.callback(buf, static_cast<std::size_t>(w - buf), g_cons.user);
}

/// Sends the dropped-events line for ring r if events were dropped before ticket `next` (all its
/// tickets below it delivered) and not reported yet. Lock held.
void report_drops(Ring &r, std::uint64_t next) noexcept {
  const std::uint64_t at = __atomic_load_n(&r.drop_at, __ATOMIC_RELAXED);
  if (at > next) return;
  __atomic_store_n(&r.drop_at, kNoDrop, __ATOMIC_RELAXED);
  // Drops counted after the store above are reported here too (a little early); their own drop_at
  // then leads to no line, as the count is already reported.
  const std::uint64_t dropped = __atomic_load_n(&r.dropped, __ATOMIC_RELAXED);
  if (dropped == r.dropped_reported) return;
  const std::uint64_t n = dropped - r.dropped_reported;
  r.dropped_reported = dropped;
  send_drop_line(n);
}

void report_orphans() noexcept {
  const std::uint64_t dropped = __atomic_load_n(&g_cons.orphan_dropped, __ATOMIC_RELAXED);
  if (dropped == g_cons.orphan_reported) return;
  const std::uint64_t n = dropped - g_cons.orphan_reported;
  g_cons.orphan_reported = dropped;
  send_drop_line(n);
}

inline std::uint64_t ticket_of(std::uint64_t head) noexcept {
  return head & kTicketMask;
}

#if CAPHEAP_RECORDER_THREAD_RINGS
void recycle_dead_rings() noexcept;
#endif

/// True if a ring that had nothing published when a scan read it (bit i of `empty`), or one
/// attached since (beyond `rings`), has published since. One scan is not a snapshot: an event
/// published into a ring read early may be one the chosen head depends on (it happened before the
/// head, whose publication the scan acquired, so a read after the scan sees it), and the choice is
/// made again.
bool published_since(std::uint64_t empty, std::size_t rings, std::uint64_t mask) noexcept {
  if (__atomic_load_n(&g_cons.rings_seen, __ATOMIC_ACQUIRE) != rings) return true;
  for (; empty != 0; empty &= empty - 1) {
    const Ring &r = g_rings[__builtin_ctzll(empty)];
    if (__atomic_load_n(&r.records[r.tail & mask].state, __ATOMIC_ACQUIRE) > r.last) return true;
  }
  return false;
}

/// Delivers up to max events, merged over the rings. Lock held, recorder installed. When every
/// available head is held back: the earliest that frees an unknown address goes out (a block from
/// before the recording); heads that would produce a still-live address wait for the event that
/// releases it (a realloc records its move after the fact) unless `final`.
std::size_t drain_locked(std::size_t max, bool final = false) noexcept {
  const std::uint64_t mask = ld(g.mask);
  std::size_t n = 0;
  char buf[CAPHEAP_RECORDER_MAX_LINE];
  while (n < max) {
    const std::size_t rings = __atomic_load_n(&g_cons.rings_seen, __ATOMIC_ACQUIRE);
    std::uint64_t empty = 0;  // rings with nothing published when scanned
    std::size_t best = kMaxRings, any = kMaxRings, unknown = kMaxRings;
    std::uint64_t best_key = 0, any_key = 0, unknown_key = 0;
    for (std::size_t i = 0; i < rings; ++i) {
      if (CAPHEAP_UNLIKELY(g_scan_hook != nullptr)) g_scan_hook(i, g_scan_hook_user);
      const Ring &r = g_rings[i];
      const Record &rec = r.records[r.tail & mask];
      const std::uint64_t key = __atomic_load_n(&rec.state, __ATOMIC_ACQUIRE);
      if (key <= r.last) {
        empty |= std::uint64_t(1) << i;
        continue;
      }
      if (any == kMaxRings || key < any_key) {
        any = i;
        any_key = key;
      }
      if (g_cons.live == nullptr) continue;
      const Hold hold = held_back(rec);
      if (hold == kFree && (best == kMaxRings || key < best_key)) {
        best = i;
        best_key = key;
      } else if (hold == kSourceUnknown && (unknown == kMaxRings || key < unknown_key)) {
        unknown = i;
        unknown_key = key;
      }
    }
    if (any == kMaxRings) break;
    std::size_t pick = any;
    if (g_cons.live != nullptr) {
      pick = best != kMaxRings ? best : unknown != kMaxRings ? unknown : final ? any : kMaxRings;
      if (pick == kMaxRings) break;
      if (CAPHEAP_UNLIKELY(published_since(empty, rings, mask))) continue;
    }
    Ring &r = g_rings[pick];
    const std::uint64_t t = r.tail;
    report_drops(r, t);  // before the first record reserved after them
    Record rec = r.records[t & mask];
#if CAPHEAP_RECORDER_THREAD_RINGS
    rec.owner = ld(r.owner);  // (record_single does not store it: every record is the owner's)
#endif
    r.last = rec.state;
    __atomic_store_n(&r.tail, t + 1, __ATOMIC_RELEASE);  // the slot is free again
    if (g_cons.live != nullptr) live_apply(rec);
    const std::size_t len = format(rec, g_cons.delivered + n, buf);
    g_cons.callback(buf, len, g_cons.user);
    ++n;
  }
  const std::size_t rings = __atomic_load_n(&g_cons.rings_seen, __ATOMIC_ACQUIRE);
  for (std::size_t i = 0; i < rings; ++i)
    report_drops(g_rings[i], g_rings[i].tail);
  report_orphans();
  __atomic_store_n(&g_cons.delivered, g_cons.delivered + n, __ATOMIC_RELAXED);
#if CAPHEAP_RECORDER_THREAD_RINGS
  recycle_dead_rings();
#endif
  return n;
}

// ---- Producers ----------------------------------------------------------------------------------

inline void fill(Record &r, const AllocEvent &event, std::uint64_t stamp,
                 std::uint32_t owner) noexcept {
  r.stamp = stamp;
  const bool realloc_from = event.op == EventOp::kRealloc && event.old_ptr != nullptr;
  r.id = reinterpret_cast<std::uintptr_t>(realloc_from ? event.old_ptr : event.ptr);
  r.to =
      realloc_from && event.old_ptr != event.ptr ? reinterpret_cast<std::uintptr_t>(event.ptr) : 0;
  r.size = event.size;
  r.caller = reinterpret_cast<std::uintptr_t>(event.caller);
  r.caps = event.caps;
  r.owner = owner;
  r.alignment = static_cast<std::uint32_t>(event.alignment);
  r.op = static_cast<std::uint8_t>(event.op);
  r.from_null = event.op == EventOp::kRealloc && !realloc_from ? 1 : 0;
}

/// Counts a dropped event of ring r at ticket t (its producer, or under the CAS of a shared ring).
CAPHEAP_COLD void count_drop(Ring &r, std::uint64_t t) noexcept {
#if CAPHEAP_RECORDER_THREAD_RINGS
  __atomic_store_n(&r.dropped, ld(r.dropped) + 1, __ATOMIC_RELAXED);  // one writer
  if (ld(r.drop_at) == kNoDrop) st(r.drop_at, t);
#else
  __atomic_fetch_add(&r.dropped, 1, __ATOMIC_RELAXED);
  std::uint64_t none = kNoDrop;
  __atomic_compare_exchange_n(&r.drop_at, &none, t, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
#endif
}

/// CAPHEAP_RECORDER_FLUSH_WHEN_FULL: drains everything if still installation `state` (for a
/// shared ring: if head still has its closed bit and generation).
CAPHEAP_COLD void drain_in_place(std::uint64_t state, std::uint64_t state_mask,
                                 const std::uint64_t *word) noexcept {
  if (try_lock(g_cons.lock)) {
    if ((__atomic_load_n(word, __ATOMIC_ACQUIRE) & state_mask) == (state & state_mask))
      drain_locked(~std::size_t(0), true);
    unlock(g_cons.lock);
  }
}

#if CAPHEAP_RECORDER_THREAD_RINGS

struct ThreadRing {
  Ring *ring;
  std::uint64_t gen;  ///< the g.state the ring was attached under (never matches a closed state)
  std::uint32_t owner;
  /// record_single's window: the record of the ring's next event, and the end of the records it
  /// may write without the general path's checks (before the end of the array, and without
  /// passing the producer's copy of tail by a whole ring). Equal (null) until the general path has
  /// written an event into the ring attached.
  Record *next;
  Record *limit;
};
__attribute__((tls_model("initial-exec"))) thread_local ThreadRing t_ring = {nullptr, kClosed, 0,
                                                                             nullptr, nullptr};

/// Attaches a ring of installation `state` to the calling thread. False: none free (the event is
/// counted as dropped) or the recorder closed meanwhile.
CAPHEAP_COLD bool attach(std::uint64_t state) noexcept {
  const std::uint32_t owner = capheap_port_task_owner();
  lock(g_cons.attach_lock);
  if (__atomic_load_n(&g.state, __ATOMIC_ACQUIRE) != state) {
    unlock(g_cons.attach_lock);
    return false;
  }
  const std::uint32_t rings = ld(g.rings);
  Ring *found = nullptr;
  std::uint32_t index = 0;
  for (std::uint32_t i = 0; i < rings && found == nullptr; ++i) {
    if (ld(g_rings[i].owner) == 0) {
      found = &g_rings[i];
      index = i;
    }
  }
  if (found != nullptr) {
    if (ld(found->used) == 0) {
      // First use since install: clear the records (a drain never looks at a ring it has not seen
      // in rings_seen, which is raised only below).
      const std::uint64_t cap = ld(g.mask) + 1;
      for (std::uint64_t i = 0; i < cap; ++i)
        st(found->records[i].state, std::uint64_t(0));
      st(found->used, 1u);
    }
    st(found->owner, owner);
    if (index + 1 > ld(g_cons.rings_seen))
      __atomic_store_n(&g_cons.rings_seen, index + 1, __ATOMIC_RELEASE);
    t_ring.ring = found;
    t_ring.gen = state;
    t_ring.owner = owner;
    t_ring.next = t_ring.limit = nullptr;
  } else {
    __atomic_fetch_add(&g_cons.orphan_dropped, 1, __ATOMIC_RELAXED);
  }
  unlock(g_cons.attach_lock);
  return found != nullptr;
}

/// Waits until no producer is inside an event on ring r. Call after changing g.state or r.owner
/// and capheap_port_thread_barrier().
void wait_idle(const Ring &r) noexcept {
  while (__atomic_load_n(&r.busy, __ATOMIC_ACQUIRE) != 0) {
  }
}

/// Frees the rings of threads that ended once everything they recorded is delivered. Lock held.
void recycle_dead_rings() noexcept {
  const std::size_t rings = ld(g_cons.rings_seen);
  for (std::size_t i = 0; i < rings; ++i) {
    Ring &r = g_rings[i];
    const std::uint32_t owner = ld(r.owner);
    if (owner == 0 || capheap_port_task_alive(owner)) continue;
    if (ld(r.head) != r.tail || ld(r.dropped) != r.dropped_reported) continue;
    lock(g_cons.attach_lock);
    st(r.owner, std::uint32_t{0});
    capheap_port_thread_barrier();
    // A thread still running after its owner word ended (its other thread_local destructors)
    // finishes its event first; if it is inside one, keep the ring for it this time.
    if (__atomic_load_n(&r.busy, __ATOMIC_ACQUIRE) != 0) st(r.owner, owner);
    unlock(g_cons.attach_lock);
  }
}

/// The common case of an event, inline in the entry points: a single-threaded process (nothing
/// can run concurrently with this event: no drain, uninstall or ring recycling on another thread,
/// and this thread's ring is never recycled while it lives, so the busy word, the re-checks and the
/// atomic counter are not needed), an attached ring with room, and a ticker keeping the clock (one
/// load). False: record_general must take the event. No call on this path, so that the entry
/// points need no frame.
__attribute__((always_inline)) inline bool record_single(EventOp op, void *ptr, std::size_t size,
                                                         std::uint32_t caps,
                                                         void *caller) noexcept {
  if (CAPHEAP_LIKELY(capheap_port_single_threaded() && ld(g.state) == t_ring.gen &&
                     __atomic_load_n(&capheap_port_coarse_direct, __ATOMIC_RELAXED) == 0)) {
    Record *const rec = t_ring.next;
    if (CAPHEAP_LIKELY(rec != t_ring.limit)) {
      t_ring.next = rec + 1;
      // Only the fields a malloc or a free line reads (the drain looks at `to`, `alignment` and
      // `from_null` for other operations only, and takes `owner` from the ring).
      rec->stamp = __atomic_load_n(&capheap_port_coarse_ns, __ATOMIC_RELAXED);
      rec->id = reinterpret_cast<std::uintptr_t>(ptr);
      rec->caller = reinterpret_cast<std::uintptr_t>(caller);
      rec->op = static_cast<std::uint8_t>(op);
      if (op != EventOp::kFree) {
        rec->size = size;
        rec->caps = caps;
      }
      const std::uint64_t order = ld(g_order) + 1;
      st(g_order, order);
      __atomic_store_n(&rec->state, order, __ATOMIC_RELEASE);
      Ring &r = *t_ring.ring;
      st(r.head, ld(r.head) + 1);
      return true;
    }
  }
  return false;
}

/// Every other case: several threads (busy word, re-checks, atomic order), attaching a ring, a
/// full ring, a closed or changed installation, a clock read per event.
std::uint64_t g_general_events = 0;  ///< recorder_general_events() (tests)

CAPHEAP_NOINLINE void record_general(const AllocEvent &event) noexcept {
  for (;;) {
    const std::uint64_t state = __atomic_load_n(&g.state, __ATOMIC_ACQUIRE);
    if (CAPHEAP_UNLIKELY(state != t_ring.gen)) {
      if ((state & kClosed) != 0 || !attach(state)) return;
      continue;
    }
    Ring &r = *t_ring.ring;
    st(r.busy, 1u);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);  // the other side runs a process-wide barrier
    if (CAPHEAP_UNLIKELY(ld(g.state) != state || ld(r.owner) != t_ring.owner)) {
      __atomic_store_n(&r.busy, 0u, __ATOMIC_RELEASE);
      t_ring.gen = kClosed;  // attach again (or stop, if closed)
      continue;
    }
    const std::uint64_t h = ld(r.head);
    const std::uint64_t mask = ld(g.mask);
    if (CAPHEAP_UNLIKELY(h - ld(r.tail_seen) > mask)) {
      st(r.tail_seen, __atomic_load_n(&r.tail, __ATOMIC_ACQUIRE));
      if (h - ld(r.tail_seen) > mask) {
        __atomic_store_n(&r.busy, 0u, __ATOMIC_RELEASE);
        if ((ld(g.flags) & CAPHEAP_RECORDER_FLUSH_WHEN_FULL) == 0) {
          count_drop(r, h);
          return;
        }
        drain_in_place(state, ~0ull, &g.state);
        continue;
      }
    }
    // The record's line is usually cold (the ring streams through memory): fetch a later one for
    // writing now, so that its store does not wait for the line (a locked instruction right after,
    // such as the heap's mutex, would wait for the store buffer to drain).
    __builtin_prefetch(&r.records[(h + kPrefetchAhead) & mask], 1, 3);
    Record &rec = r.records[h & mask];
    fill(rec, event, capheap_port_coarse_now(), t_ring.owner);
    // While the process has one thread nothing can race the counter: a plain increment (a locked
    // one costs more than the rest of the event). The flag turns false before a second thread
    // starts, and what this thread did before happens-before that thread's first event.
    std::uint64_t order;
    if (capheap_port_single_threaded()) {  // (a full ring or a new attachment)
      order = ld(g_order) + 1;
      st(g_order, order);
    } else {
      order = __atomic_fetch_add(&g_order, 1, __ATOMIC_RELAXED) + 1;
    }
    __atomic_store_n(&rec.state, order, __ATOMIC_RELEASE);
    st(r.head, h + 1);
    __atomic_store_n(&r.busy, 0u, __ATOMIC_RELEASE);
    // record_single's window from here (only a single-threaded process uses it): up to the end of
    // the array, and no further than a whole ring past the drain's tail, read afresh (the copy
    // from the last time the ring was full would make the window shorter than it can be).
    if (capheap_port_single_threaded()) {
      st(g_general_events, ld(g_general_events) + 1);  // (tests; no other thread: no race)
      st(r.tail_seen, __atomic_load_n(&r.tail, __ATOMIC_ACQUIRE));
      const std::uint64_t room = ld(r.tail_seen) + mask + 1 - (h + 1);
      const std::uint64_t to_end = mask + 1 - ((h + 1) & mask);
      t_ring.next = &r.records[(h + 1) & mask];
      t_ring.limit = t_ring.next + (room < to_end ? room : to_end);
    }
    return;
  }
}

CAPHEAP_NOINLINE void record_alloc_general(EventOp op, void *ptr, std::size_t size,
                                           std::size_t alignment, std::uint32_t caps,
                                           void *caller) noexcept {
  record_general(AllocEvent{op, ptr, nullptr, size, alignment, caps, caller});
}

CAPHEAP_NOINLINE void record_free_general(void *ptr, void *caller) noexcept {
  record_general(AllocEvent{EventOp::kFree, ptr, nullptr, 0, 0, 0, caller});
}

__attribute__((always_inline)) inline void record(const AllocEvent &event) noexcept {
  if (event.op == EventOp::kMalloc &&
      record_single(EventOp::kMalloc, event.ptr, event.size, event.caps, event.caller))
    return;
  if (event.op == EventOp::kFree && record_single(EventOp::kFree, event.ptr, 0, 0, event.caller))
    return;
  record_general(event);
}

#else  // !CAPHEAP_RECORDER_THREAD_RINGS: one ring shared by every task

__attribute__((always_inline)) inline void record(const AllocEvent &event) noexcept {
  // Read first: the counter's latency overlaps the reservation.
  const std::uint64_t stamp = capheap_port_timestamp();
  Ring &ring = g_rings[0];
  std::uint64_t h = __atomic_load_n(&ring.head, __ATOMIC_ACQUIRE);
  std::uint64_t t;
  std::uint64_t mask;
  for (;;) {
    t = h & kTicketMask;
    mask = ld(g.mask);
    if (CAPHEAP_LIKELY((h & kClosed) == 0 &&
                       t - __atomic_load_n(&ring.tail, __ATOMIC_ACQUIRE) <= mask)) {
      if (__atomic_compare_exchange_n(&ring.head, &h, h + 1, true, __ATOMIC_ACQUIRE,
                                      __ATOMIC_ACQUIRE))
        break;
    } else {
      if ((h & kClosed) != 0) return;
      if ((ld(g.flags) & CAPHEAP_RECORDER_FLUSH_WHEN_FULL) == 0) {
        count_drop(ring, t);
        return;
      }
      drain_in_place(h, kClosed | kGenMask, &ring.head);
      h = __atomic_load_n(&ring.head, __ATOMIC_ACQUIRE);
    }
  }
  // The successful compare-and-swap read this installation's head: records and mask are its own.
  Record &r = ld(ring.records)[t & mask];
  fill(r, event, stamp, capheap_port_task_owner());
  __atomic_store_n(&r.state, t + 1, __ATOMIC_RELEASE);
}

#endif  // CAPHEAP_RECORDER_THREAD_RINGS

__attribute__((always_inline)) inline void *recorder_on_malloc_inline(void *p, std::size_t size,
                                                                      std::uint32_t caps,
                                                                      void *caller) noexcept {
#if CAPHEAP_RECORDER_THREAD_RINGS
  if (CAPHEAP_LIKELY(record_single(EventOp::kMalloc, p, size, caps, caller))) return p;
  record_alloc_general(EventOp::kMalloc, p, size, 0, caps, caller);
#else
  record(AllocEvent{EventOp::kMalloc, p, nullptr, size, 0, caps, caller});
#endif
  return p;
}

}  // namespace

void recorder_on_event(const AllocEvent &event) noexcept {
  record(event);
}

void recorder_on_alloc(EventOp op, void *ptr, std::size_t size, std::size_t alignment,
                       std::uint32_t caps, void *caller) noexcept {
#if CAPHEAP_RECORDER_THREAD_RINGS
  // (The general path in a call of its own with the same arguments: a tail call, no frame here.)
  if (op == EventOp::kMalloc && record_single(op, ptr, size, caps, caller)) return;
  record_alloc_general(op, ptr, size, alignment, caps, caller);
#else
  record(AllocEvent{op, ptr, nullptr, size, alignment, caps, caller});
#endif
}

void *recorder_on_malloc(void *p, std::size_t size, std::uint32_t caps, void *caller) noexcept {
  return recorder_on_malloc_inline(p, size, caps, caller);
}

#if CAPHEAP_THEN_TABLES
void *recorder_malloc(Registry &reg, std::size_t size, Caps caps, void *caller) noexcept {
  return reg.allocate_done<recorder_on_malloc_inline, malloc_events>(size, caps, caller);
}

void *recorder_held_malloc(Registry::Choice first, std::size_t size, void *caller,
                           Caps caps) noexcept {
#if !CAPHEAP_USE_HOOKS
  if (CAPHEAP_LIKELY(recorder_only()))
    return Registry::allocate_done_in<recorder_on_malloc_inline, malloc_events>(first, size, caller,
                                                                                caps);
#endif
  return heap_caps_malloc_miss(size, caps, caller);
}

#if CAPHEAP_RECORDER_THREAD_RINGS
namespace {
CAPHEAP_NOINLINE void record_general_and_free(void *ptr, void *caller) noexcept {
  record_free_general(ptr, caller);
  g_registry.deallocate(ptr);
}
}  // namespace
#endif

void recorder_free_miss(void *ptr, void *caller) noexcept {
#if !CAPHEAP_USE_HOOKS
  if (CAPHEAP_LIKELY(recorder_only())) {
    if (CAPHEAP_LIKELY(ptr != nullptr)) {
#if CAPHEAP_RECORDER_THREAD_RINGS
      // (Both ends in a tail call: no frame on the common path.)
      if (CAPHEAP_UNLIKELY(!record_single(EventOp::kFree, ptr, 0, 0, caller)))
        return record_general_and_free(ptr, caller);
#else
      record(AllocEvent{EventOp::kFree, ptr, nullptr, 0, 0, 0, caller});
#endif
    }
    return g_registry.deallocate(ptr);
  }
#endif
  heap_caps_free_miss(ptr, caller);
}
#endif

void recorder_on_free(void *ptr, void *caller) noexcept {
#if CAPHEAP_RECORDER_THREAD_RINGS
  if (record_single(EventOp::kFree, ptr, 0, 0, caller)) return;
  record_free_general(ptr, caller);
#else
  record(AllocEvent{EventOp::kFree, ptr, nullptr, 0, 0, 0, caller});
#endif
}

void recorder_before_remap() noexcept {
  if (capheap_recorder_active()) (void)capheap_recorder_flush();
}

std::uint64_t recorder_general_events() noexcept {
#if CAPHEAP_RECORDER_THREAD_RINGS
  return ld(g_general_events);
#else
  return 0;
#endif
}

void recorder_set_scan_hook(RecorderScanHook hook, void *user) noexcept {
  g_scan_hook = hook;
  g_scan_hook_user = user;
}

}  // namespace capi
}  // namespace capheap

using namespace capheap::capi;

extern "C" {

esp_err_t capheap_recorder_install_config(const capheap_recorder_config_t *config) {
  if (config == nullptr || config->callback == nullptr) return ESP_ERR_INVALID_ARG;
  // Bits that no flag defines: among them CAPHEAP_RECORDER_RING_EVENTS_LOG2(k) for k > 255, which
  // the mask would otherwise read as "no rings".
  if ((config->flags & ~(CAPHEAP_RECORDER_FLUSH_WHEN_FULL | CAPHEAP_RECORDER_RING_EVENTS_MASK)) !=
      0)
    return ESP_ERR_INVALID_ARG;
  Record *records = nullptr;
  std::size_t capacity = 0;  // per ring
  std::size_t rings = 1;
  std::uintptr_t *live = nullptr;
  std::size_t live_slots = 0;
  if (config->buffer == nullptr) {
#if CAPHEAP_RECORDER_DEFAULT_EVENTS > 0
    records = g_default_records;
    capacity = CAPHEAP_RECORDER_DEFAULT_EVENTS;
    rings = kDefaultRings;
#if CAPHEAP_RECORDER_THREAD_RINGS
    live = g_default_live;
    live_slots = CAPHEAP_RECORDER_DEFAULT_LIVE_SLOTS;
#endif
#endif
  } else if (reinterpret_cast<std::uintptr_t>(config->buffer) % CAPHEAP_RECORDER_BUFFER_ALIGN ==
             0) {
    const auto floor2 = [](std::size_t v) {
      return v == 0 ? std::size_t(0) : std::size_t(1) << (63 - __builtin_clzll(v));
    };
    records = static_cast<Record *>(config->buffer);
    std::size_t bytes = config->buffer_size;
#if CAPHEAP_RECORDER_THREAD_RINGS
    const std::uint32_t log2 = (config->flags & CAPHEAP_RECORDER_RING_EVENTS_MASK) >> 8;
    if (log2 != 0) {
      capacity = log2 <= 30 ? std::size_t(1) << log2 : 0;
      live_slots = floor2(bytes / 8 / sizeof(std::uintptr_t));
      if (live_slots < 2) {
        records = nullptr;
      } else {
        bytes -= live_slots * sizeof(std::uintptr_t);
        live = reinterpret_cast<std::uintptr_t *>(static_cast<unsigned char *>(config->buffer) +
                                                  bytes);
        rings = capacity < 2 ? 0 : bytes / (capacity * sizeof(Record));
        if (rings > kMaxRings) rings = kMaxRings;
      }
    } else {
      capacity = floor2(bytes / sizeof(Record));
    }
#else
    capacity = floor2(bytes / sizeof(Record));
#endif
  }
  if (records == nullptr || capacity < 2 || rings < 1) return ESP_ERR_INVALID_ARG;

#if CAPHEAP_RECORDER_THREAD_RINGS
  capheap_port_coarse_clock_start();  // before the lock: it may create a thread (and allocate)
#endif
  lock(g_cons.lock);
  const std::uint64_t state = ld(g.state);
  if ((state & kClosed) == 0) {
    unlock(g_cons.lock);
#if CAPHEAP_RECORDER_THREAD_RINGS
    capheap_port_coarse_clock_stop();
#endif
    return ESP_ERR_INVALID_STATE;
  }
  lock(g_cons.attach_lock);
  for (std::size_t i = 0; i < kMaxRings; ++i) {
    Ring &r = g_rings[i];
    st(r.head, std::uint64_t(0));
    st(r.tail_seen, std::uint64_t(0));
    st(r.dropped, std::uint64_t(0));
    st(r.drop_at, kNoDrop);
    st(r.records, i < rings ? records + i * capacity : static_cast<Record *>(nullptr));
    st(r.owner, std::uint32_t{0});
    st(r.busy, std::uint32_t{0});
    st(r.used, std::uint32_t{0});
    st(r.tail, std::uint64_t(0));
    r.last = 0;
    r.dropped_reported = 0;
  }
  st(g.mask, std::uint64_t(capacity - 1));
  st(g.flags, config->flags);
  st(g.rings, static_cast<std::uint32_t>(rings));
  g_cons.callback = config->callback;
  g_cons.user = config->user;
  st(g_cons.delivered, std::uint64_t(0));
  st(g_cons.orphan_dropped, std::uint64_t(0));
  g_cons.orphan_reported = 0;
  g_cons.live = live;
  g_cons.live_mask = live_slots == 0 ? 0 : live_slots - 1;
  g_cons.live_count = 0;
  g_cons.live_overflow = false;
  for (std::size_t i = 0; i < live_slots; ++i)
    live[i] = 0;
  const std::uint64_t gen = ((state & kGenMask) + (1ull << kGenShift)) & kGenMask;
#if CAPHEAP_RECORDER_THREAD_RINGS
  st(g_cons.rings_seen, 0u);
  unlock(g_cons.attach_lock);
  __atomic_store_n(&g.state, gen, __ATOMIC_RELEASE);  // opens: publishes everything above
#else
  for (std::uint64_t i = 0; i < capacity; ++i)
    st(records[i].state, std::uint64_t(0));
  st(g_cons.rings_seen, std::uint32_t{1});
  unlock(g_cons.attach_lock);
  __atomic_store_n(&g.state, gen, __ATOMIC_RELEASE);
  __atomic_store_n(&g_rings[0].head, gen, __ATOMIC_RELEASE);  // opens the shared ring
#endif
  set_event_sink(kSinkRecorder, true);
  unlock(g_cons.lock);
  return ESP_OK;
}

esp_err_t capheap_recorder_install(capheap_recorder_cb_t callback, void *user) {
  capheap_recorder_config_t config = {};
  config.callback = callback;
  config.user = user;
  return capheap_recorder_install_config(&config);
}

esp_err_t capheap_recorder_uninstall(void) {
  lock(g_cons.lock);
  const std::uint64_t state = ld(g.state);
  if ((state & kClosed) != 0) {
    unlock(g_cons.lock);
    return ESP_ERR_INVALID_STATE;
  }
  __atomic_store_n(&g.state, state | kClosed, __ATOMIC_SEQ_CST);
  set_event_sink(kSinkRecorder, false);
#if CAPHEAP_RECORDER_THREAD_RINGS
  // No producer starts an event after the barrier; wait for those inside one.
  capheap_port_thread_barrier();
  const std::size_t rings = __atomic_load_n(&g_cons.rings_seen, __ATOMIC_ACQUIRE);
  for (std::size_t i = 0; i < rings; ++i)
    wait_idle(g_rings[i]);
  drain_locked(~std::size_t(0), true);
#else
  // Every ticket below `end` was reserved before the ring closed: wait for each and deliver it.
  const std::uint64_t head = __atomic_fetch_or(&g_rings[0].head, kClosed, __ATOMIC_ACQ_REL);
  const std::uint64_t end = head & kTicketMask;
  while (g_rings[0].tail != end)
    drain_locked(~std::size_t(0));
#endif
  for (std::size_t i = 0; i < kMaxRings; ++i)
    report_drops(g_rings[i], kNoDrop - 1);
  report_orphans();
  g_cons.callback = nullptr;
  g_cons.user = nullptr;
  unlock(g_cons.lock);
#if CAPHEAP_RECORDER_THREAD_RINGS
  capheap_port_coarse_clock_stop();
#endif
  return ESP_OK;
}

size_t capheap_recorder_drain(size_t max_events) {
  if (max_events == 0 || !try_lock(g_cons.lock)) return 0;
  std::size_t n = 0;
  if ((__atomic_load_n(&g.state, __ATOMIC_ACQUIRE) & kClosed) == 0) n = drain_locked(max_events);
  unlock(g_cons.lock);
  return n;
}

size_t capheap_recorder_flush(void) {
  return capheap_recorder_drain(~std::size_t(0));
}

esp_err_t capheap_recorder_get_stats(capheap_recorder_stats_t *stats) {
  if (stats == nullptr) return ESP_ERR_INVALID_ARG;
  if ((__atomic_load_n(&g.state, __ATOMIC_ACQUIRE) & kClosed) != 0) return ESP_ERR_INVALID_STATE;
  std::uint64_t recorded = 0, dropped = __atomic_load_n(&g_cons.orphan_dropped, __ATOMIC_RELAXED);
  const std::size_t rings = __atomic_load_n(&g_cons.rings_seen, __ATOMIC_ACQUIRE);
  for (std::size_t i = 0; i < rings; ++i) {
    recorded += ticket_of(__atomic_load_n(&g_rings[i].head, __ATOMIC_RELAXED));
    dropped += __atomic_load_n(&g_rings[i].dropped, __ATOMIC_RELAXED);
  }
  stats->recorded = recorded;
  stats->delivered = __atomic_load_n(&g_cons.delivered, __ATOMIC_RELAXED);
  stats->dropped = dropped;
  stats->capacity = static_cast<std::size_t>(ld(g.mask) + 1);
  stats->rings = ld(g.rings);
  stats->rings_attached = rings;
  return ESP_OK;
}

bool capheap_recorder_active(void) {
  return (__atomic_load_n(&g.state, __ATOMIC_ACQUIRE) & kClosed) == 0;
}

}  // extern "C"

#else  // !CAPHEAP_RECORDER

namespace capheap {
namespace capi {
void recorder_on_event(const AllocEvent &) noexcept {}
void recorder_on_alloc(EventOp, void *, std::size_t, std::size_t, std::uint32_t, void *) noexcept {}
void recorder_on_free(void *, void *) noexcept {}
void *recorder_on_malloc(void *p, std::size_t, std::uint32_t, void *) noexcept {
  return p;
}
#if CAPHEAP_THEN_TABLES
void *recorder_malloc(Registry &, std::size_t size, Caps caps, void *caller) noexcept {
  return malloc_events(size, caps, 0, caller);
}
void *recorder_held_malloc(Registry::Choice, std::size_t size, void *caller, Caps caps) noexcept {
  return heap_caps_malloc_miss(size, caps, caller);
}
void recorder_free_miss(void *ptr, void *caller) noexcept {
  heap_caps_free_miss(ptr, caller);
}
#endif
void recorder_before_remap() noexcept {}
void recorder_set_scan_hook(RecorderScanHook, void *) noexcept {}
std::uint64_t recorder_general_events() noexcept {
  return 0;
}
}  // namespace capi
}  // namespace capheap

extern "C" {
esp_err_t capheap_recorder_install_config(const capheap_recorder_config_t *) {
  return ESP_ERR_NOT_SUPPORTED;
}
esp_err_t capheap_recorder_install(capheap_recorder_cb_t, void *) {
  return ESP_ERR_NOT_SUPPORTED;
}
esp_err_t capheap_recorder_uninstall(void) {
  return ESP_ERR_NOT_SUPPORTED;
}
size_t capheap_recorder_drain(size_t) {
  return 0;
}
size_t capheap_recorder_flush(void) {
  return 0;
}
esp_err_t capheap_recorder_get_stats(capheap_recorder_stats_t *) {
  return ESP_ERR_NOT_SUPPORTED;
}
bool capheap_recorder_active(void) {
  return false;
}
}  // extern "C"

#endif  // CAPHEAP_RECORDER
