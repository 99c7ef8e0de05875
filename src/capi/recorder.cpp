// recorder.cpp — the event recorder (include/capheap_recorder.h).
//
// Producers (heap_caps_* callers, any task) store each event as a fixed-size binary record in a
// ring; a drain (one task at a time) formats the records into lines of the trace format and hands
// them to the user's callback.
//
// The ring: `g_head` = [63] closed | [62:48] install generation | [47:0] next ticket. A producer
// reserves ticket t with one compare-and-swap of head, only while t - g_tail < capacity (g_tail is
// the drain's position), fills record t & mask and publishes it by storing t + 1 into the record's
// `state` (release). The drain reads record c once its state is c + 1 (acquire) and hands the slot
// back by advancing g_tail (release), which a producer loads (acquire) before reusing the slot.
// A full ring makes the producer count a drop without taking a ticket, so the sequence has no
// holes and the drain never waits for a record that will not come. (A fetch_add reservation would
// hand out tickets it cannot honour when full; the drain could not tell such a hole from a record
// still being written.)
//
// Uninstall sets the closed bit (no reservation succeeds afterwards), waits for the records
// reserved before it, drains them and only then forgets the buffer. The generation makes a
// producer that read head before an uninstall + install fail its compare-and-swap.

#include "capheap_recorder.h"

#include "capi/capi_internal.hpp"
#include "capi/events.hpp"
#include "port/port.h"

#ifndef CAPHEAP_RECORDER
#define CAPHEAP_RECORDER 1
#endif

// Records in the built-in ring (host builds set it from CMake; 0: no built-in ring).
#ifndef CAPHEAP_RECORDER_DEFAULT_EVENTS
#define CAPHEAP_RECORDER_DEFAULT_EVENTS 0
#endif

#if CAPHEAP_RECORDER

namespace capheap {
namespace capi {
namespace {

/// One event as the producer stores it (CAPHEAP_RECORDER_EVENT_SIZE bytes).
struct alignas(8) Record {
  std::uint64_t state;      ///< ticket + 1 once complete (0: never written)
  std::uint64_t stamp;      ///< capheap_port_timestamp()
  std::uintptr_t id;        ///< display address of the block the line names
  std::uintptr_t to;        ///< kRealloc that moved: display address of the new block; else 0
  std::size_t size;         ///< requested bytes
  std::uintptr_t caller;    ///< return address in the application
  std::uint32_t caps;       ///< caps of the successful attempt
  std::uint32_t owner;      ///< capheap_port_task_owner()
  std::uint32_t alignment;  ///< aligned allocations: the alignment; else 0
  std::uint8_t op;          ///< EventOp
};
static_assert(sizeof(Record) == CAPHEAP_RECORDER_EVENT_SIZE, "record size");
static_assert(alignof(Record) <= CAPHEAP_RECORDER_BUFFER_ALIGN, "record alignment");

constexpr std::uint64_t kClosed = 1ull << 63;
constexpr int kGenShift = 48;
constexpr std::uint64_t kTicketMask = (1ull << kGenShift) - 1;
constexpr std::uint64_t kGenMask = ((1ull << 15) - 1) << kGenShift;
constexpr std::uint64_t kNoDrop = ~0ull;

// What producers read on every event, in one cache line with head (head changes on every event
// anyway; the rest changes only at install).
// The fields other than head are written at install, before head opens the ring (release), and
// read with relaxed loads (a producer holding a stale head may read them during a reinstall; its
// compare-and-swap then fails).
struct alignas(64) ProducerSide {
  std::uint64_t head = kClosed;
  Record *records = nullptr;
  std::uint64_t mask = 0;  ///< capacity - 1
  std::uint32_t flags = 0;
};
ProducerSide g_prod;

// Written by the drain (and by producers when they drop).
struct alignas(64) ConsumerSide {
  std::uint64_t tail = 0;           ///< next ticket to drain
  std::uint64_t dropped = 0;        ///< events dropped since install (producers add)
  std::uint64_t drop_at = kNoDrop;  ///< ticket before which the oldest unreported drop happened
  std::uint64_t dropped_reported = 0;
  std::uint64_t delivered = 0;
  capheap_recorder_cb_t callback = nullptr;
  void *user = nullptr;
  int lock = 0;  ///< held by the drain and by install / uninstall
};
ConsumerSide g_cons;

#if CAPHEAP_RECORDER_DEFAULT_EVENTS > 0
static_assert((CAPHEAP_RECORDER_DEFAULT_EVENTS & (CAPHEAP_RECORDER_DEFAULT_EVENTS - 1)) == 0,
              "CAPHEAP_RECORDER_DEFAULT_EVENTS must be a power of two");
Record g_default_records[CAPHEAP_RECORDER_DEFAULT_EVENTS];
#endif

inline bool try_lock() noexcept {
  return __atomic_exchange_n(&g_cons.lock, 1, __ATOMIC_ACQUIRE) == 0;
}
inline void lock() noexcept {
  while (!try_lock()) {
  }
}
inline void unlock() noexcept {
  __atomic_store_n(&g_cons.lock, 0, __ATOMIC_RELEASE);
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

/// Formats record `r` (a copy) with sequence number `seq` into buf; returns the length.
std::size_t format(const Record &r, std::uint64_t seq, char *buf) noexcept {
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
  w = put_dec(put(w, " t="), capheap_port_timestamp_ns(r.stamp));
  w = put_hex(put(w, " task="), r.owner);
  w = put_hex(put(w, " site="), r.caller);
  w = put_dec(put(w, " seq="), seq);
  if (r.to != 0) w = put_hex(put(w, " to="), r.to);
  *w++ = '\n';
  return static_cast<std::size_t>(w - buf);
}

/// Sends the dropped-events line if events were dropped before ticket `next` (all tickets below it
/// delivered) and not reported yet. Lock held.
void report_drops(std::uint64_t next) noexcept {
  if (__atomic_load_n(&g_cons.drop_at, __ATOMIC_RELAXED) > next) return;
  __atomic_store_n(&g_cons.drop_at, kNoDrop, __ATOMIC_RELAXED);
  // Drops counted after the store above are reported here too (a little early); their own drop_at
  // then leads to no line, as the count is already reported.
  const std::uint64_t dropped = __atomic_load_n(&g_cons.dropped, __ATOMIC_RELAXED);
  if (dropped == g_cons.dropped_reported) return;
  char buf[CAPHEAP_RECORDER_MAX_LINE];
  char *w = put_dec(put(buf, "# recorder: dropped "), dropped - g_cons.dropped_reported);
  w = put(w, " events (ring full)\n");
  g_cons.dropped_reported = dropped;
  g_cons.callback(buf, static_cast<std::size_t>(w - buf), g_cons.user);
}

/// Delivers up to max events in ticket order. Lock held, recorder installed.
std::size_t drain_locked(std::size_t max) noexcept {
  Record *const records = __atomic_load_n(&g_prod.records, __ATOMIC_RELAXED);
  const std::uint64_t mask = __atomic_load_n(&g_prod.mask, __ATOMIC_RELAXED);
  std::uint64_t tail = g_cons.tail;
  std::size_t n = 0;
  char buf[CAPHEAP_RECORDER_MAX_LINE];
  while (n < max) {
    const Record &slot = records[tail & mask];
    if (__atomic_load_n(&slot.state, __ATOMIC_ACQUIRE) != tail + 1) break;
    report_drops(tail);  // before the first record reserved after them
    const std::size_t len = format(slot, tail, buf);
    ++tail;
    __atomic_store_n(&g_cons.tail, tail, __ATOMIC_RELEASE);  // the slot is free again
    g_cons.callback(buf, len, g_cons.user);
    ++n;
  }
  report_drops(tail);
  __atomic_store_n(&g_cons.delivered, g_cons.delivered + n, __ATOMIC_RELAXED);
  return n;
}

/// The ring is full (or closed) for head value h: drop, or drain and retry. Returns true to retry.
CAPHEAP_COLD bool on_full(std::uint64_t h) noexcept {
  if ((h & kClosed) != 0) return false;
  if ((__atomic_load_n(&g_prod.flags, __ATOMIC_RELAXED) & CAPHEAP_RECORDER_FLUSH_WHEN_FULL) == 0) {
    __atomic_fetch_add(&g_cons.dropped, 1, __ATOMIC_RELAXED);
    std::uint64_t none = kNoDrop;
    __atomic_compare_exchange_n(&g_cons.drop_at, &none, h & kTicketMask, false, __ATOMIC_RELAXED,
                                __ATOMIC_RELAXED);
    return false;
  }
  if (try_lock()) {
    // Still the same installation (uninstall holds the lock while it closes the ring)?
    if ((__atomic_load_n(&g_prod.head, __ATOMIC_ACQUIRE) & (kClosed | kGenMask)) ==
        (h & (kClosed | kGenMask)))
      drain_locked(~std::size_t(0));
    unlock();
  }
  return true;
}

}  // namespace

void recorder_on_event(const AllocEvent &event) noexcept {
  // Read first: the counter's latency overlaps the reservation (the time is the event's either
  // way).
  const std::uint64_t stamp = capheap_port_timestamp();
  std::uint64_t h = __atomic_load_n(&g_prod.head, __ATOMIC_ACQUIRE);
  std::uint64_t t;
  std::uint64_t mask;
  for (;;) {
    t = h & kTicketMask;
    mask = __atomic_load_n(&g_prod.mask, __ATOMIC_RELAXED);
    if (CAPHEAP_LIKELY((h & kClosed) == 0 &&
                       t - __atomic_load_n(&g_cons.tail, __ATOMIC_ACQUIRE) <= mask)) {
      if (__atomic_compare_exchange_n(&g_prod.head, &h, h + 1, true, __ATOMIC_ACQUIRE,
                                      __ATOMIC_ACQUIRE))
        break;
    } else {
      if (!on_full(h)) return;
      h = __atomic_load_n(&g_prod.head, __ATOMIC_ACQUIRE);
    }
  }
  // The successful compare-and-swap read this installation's head: records and mask are its own.
  Record &r = __atomic_load_n(&g_prod.records, __ATOMIC_RELAXED)[t & mask];
  r.stamp = stamp;
  const bool realloc_from = event.op == EventOp::kRealloc && event.old_ptr != nullptr;
  r.id = display_address(realloc_from ? event.old_ptr : event.ptr);
  r.to = realloc_from && event.old_ptr != event.ptr ? display_address(event.ptr) : 0;
  r.size = event.size;
  r.caller = reinterpret_cast<std::uintptr_t>(event.caller);
  r.caps = event.caps;
  r.owner = capheap_port_task_owner();
  r.alignment = static_cast<std::uint32_t>(event.alignment);
  r.op = static_cast<std::uint8_t>(event.op);
  __atomic_store_n(&r.state, t + 1, __ATOMIC_RELEASE);
}

}  // namespace capi
}  // namespace capheap

using namespace capheap::capi;

extern "C" {

esp_err_t capheap_recorder_install_config(const capheap_recorder_config_t *config) {
  if (config == nullptr || config->callback == nullptr) return ESP_ERR_INVALID_ARG;
  Record *records = nullptr;
  std::size_t capacity = 0;
  if (config->buffer == nullptr) {
#if CAPHEAP_RECORDER_DEFAULT_EVENTS > 0
    records = g_default_records;
    capacity = CAPHEAP_RECORDER_DEFAULT_EVENTS;
#endif
  } else if (reinterpret_cast<std::uintptr_t>(config->buffer) % CAPHEAP_RECORDER_BUFFER_ALIGN ==
             0) {
    records = static_cast<Record *>(config->buffer);
    const std::size_t fit = config->buffer_size / sizeof(Record);
    capacity = fit == 0 ? 0 : std::size_t(1) << (63 - __builtin_clzll(fit));
  }
  if (records == nullptr || capacity < 2) return ESP_ERR_INVALID_ARG;

  lock();
  const std::uint64_t head = __atomic_load_n(&g_prod.head, __ATOMIC_RELAXED);
  if ((head & kClosed) == 0) {
    unlock();
    return ESP_ERR_INVALID_STATE;
  }
  for (std::size_t i = 0; i < capacity; ++i)
    __atomic_store_n(&records[i].state, std::uint64_t(0), __ATOMIC_RELAXED);
  __atomic_store_n(&g_prod.records, records, __ATOMIC_RELAXED);
  __atomic_store_n(&g_prod.mask, std::uint64_t(capacity - 1), __ATOMIC_RELAXED);
  __atomic_store_n(&g_prod.flags, config->flags, __ATOMIC_RELAXED);
  g_cons.callback = config->callback;
  g_cons.user = config->user;
  __atomic_store_n(&g_cons.tail, std::uint64_t(0), __ATOMIC_RELAXED);
  __atomic_store_n(&g_cons.dropped, std::uint64_t(0), __ATOMIC_RELAXED);
  __atomic_store_n(&g_cons.drop_at, kNoDrop, __ATOMIC_RELAXED);
  g_cons.dropped_reported = 0;
  __atomic_store_n(&g_cons.delivered, std::uint64_t(0), __ATOMIC_RELAXED);
  // Opens the ring: a new generation, ticket 0. Publishes everything above (release).
  const std::uint64_t gen = ((head & kGenMask) + (1ull << kGenShift)) & kGenMask;
  __atomic_store_n(&g_prod.head, gen, __ATOMIC_RELEASE);
  set_event_sink(kSinkRecorder, true);
  unlock();
  return ESP_OK;
}

esp_err_t capheap_recorder_install(capheap_recorder_cb_t callback, void *user) {
  const capheap_recorder_config_t config = {callback, user, nullptr, 0, 0};
  return capheap_recorder_install_config(&config);
}

esp_err_t capheap_recorder_uninstall(void) {
  lock();
  const std::uint64_t head = __atomic_fetch_or(&g_prod.head, kClosed, __ATOMIC_ACQ_REL);
  if ((head & kClosed) != 0) {
    unlock();
    return ESP_ERR_INVALID_STATE;
  }
  set_event_sink(kSinkRecorder, false);
  // Every ticket below `end` was reserved before the ring closed: wait for each and deliver it.
  const std::uint64_t end = head & kTicketMask;
  while (g_cons.tail != end)
    drain_locked(~std::size_t(0));
  report_drops(kNoDrop - 1);
  g_cons.callback = nullptr;
  g_cons.user = nullptr;
  unlock();
  return ESP_OK;
}

size_t capheap_recorder_drain(size_t max_events) {
  if (max_events == 0 || !try_lock()) return 0;
  std::size_t n = 0;
  if ((__atomic_load_n(&g_prod.head, __ATOMIC_ACQUIRE) & kClosed) == 0)
    n = drain_locked(max_events);
  unlock();
  return n;
}

size_t capheap_recorder_flush(void) {
  return capheap_recorder_drain(~std::size_t(0));
}

esp_err_t capheap_recorder_get_stats(capheap_recorder_stats_t *stats) {
  if (stats == nullptr) return ESP_ERR_INVALID_ARG;
  const std::uint64_t head = __atomic_load_n(&g_prod.head, __ATOMIC_ACQUIRE);
  if ((head & kClosed) != 0) return ESP_ERR_INVALID_STATE;
  stats->recorded = head & kTicketMask;
  stats->delivered = __atomic_load_n(&g_cons.delivered, __ATOMIC_RELAXED);
  stats->dropped = __atomic_load_n(&g_cons.dropped, __ATOMIC_RELAXED);
  stats->capacity = static_cast<std::size_t>(__atomic_load_n(&g_prod.mask, __ATOMIC_RELAXED) + 1);
  return ESP_OK;
}

bool capheap_recorder_active(void) {
  return (__atomic_load_n(&g_prod.head, __ATOMIC_ACQUIRE) & kClosed) == 0;
}

}  // extern "C"

#else  // !CAPHEAP_RECORDER

namespace capheap {
namespace capi {
void recorder_on_event(const AllocEvent &) noexcept {}
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
