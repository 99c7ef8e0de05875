// heap_trace.cpp — ESP-IDF heap tracing in standalone mode (include/esp_heap_trace.h).
//
// The tracer is a sink of the event seam (events.hpp): every heap_caps_* allocation reaches
// trace_on_event once, a realloc as a free of the old block followed by an allocation of the new
// one (ESP-IDF traces realloc as free-then-alloc; a realloc to size 0 arrives as a free).
//
// Records live in the user's buffer, on two lists threaded through the records' private links:
// the used list (oldest first) and a stack of unused records. When every record is used, a new
// allocation evicts the oldest record and sets has_overflowed. In LEAKS mode a free removes its
// record; in ALL mode it fills freed_by. A free finds its record by a newest-first search, or
// through a hash map of bucket lists (CONFIG_HEAP_TRACE_HASH_MAP), which holds the records of
// blocks not freed yet.
//
// One lock, the port's (see "Lock" below), guards everything. A thread that re-enters the tracer
// while holding it (glibc's backtrace() allocating on first use, a hook that allocates) is not
// recorded instead of corrupting the lists. heap_trace_dump prints outside the lock.

#include "esp_heap_trace.h"

#include <type_traits>

#include "capheap/caps.hpp"
#include "capi/capi_internal.hpp"
#include "capi/events.hpp"
#include "capi/heap_trace_internal.hpp"
#include "capi/text_out.hpp"
#include "esp_heap_caps.h"
#include "port/port.h"

static_assert(CONFIG_HEAP_TRACING_STACK_DEPTH >= 0 && CONFIG_HEAP_TRACING_STACK_DEPTH <= 10,
              "CONFIG_HEAP_TRACING_STACK_DEPTH must be between 0 and 10");

#if CAPHEAP_HEAP_TRACE

namespace capheap {
namespace capi {
namespace {

constexpr int kDepth = CONFIG_HEAP_TRACING_STACK_DEPTH;
constexpr int kSlots = CAPHEAP_HEAP_TRACE_SLOTS;

enum State : int { kStopped = 0, kRunning = 1, kAllocPaused = 2 };

struct Tracer {
  heap_trace_record_t *buffer = nullptr;
  std::size_t capacity = 0;
  heap_trace_record_t *head = nullptr;    // oldest used record
  heap_trace_record_t *tail = nullptr;    // newest used record
  heap_trace_record_t *unused = nullptr;  // stack of unused records (list_next)
  std::size_t count = 0;
  std::size_t high_water_mark = 0;
  std::size_t total_allocations = 0;
  std::size_t total_frees = 0;
  bool has_overflowed = false;
  heap_trace_mode_t mode = HEAP_TRACE_ALL;
  int state = kStopped;
  // heap_trace_get's sequential-access cache, valid while `generation` is unchanged.
  std::uint64_t generation = 0;
  std::uint64_t cache_generation = ~std::uint64_t(0);
  std::size_t cache_index = 0;
  heap_trace_record_t *cache_record = nullptr;
#if CONFIG_HEAP_TRACE_HASH_MAP
  heap_trace_record_t *buckets[CONFIG_HEAP_TRACE_HASH_MAP_SIZE] = {};
  std::size_t hits = 0;
  std::size_t misses = 0;
#endif
};

Tracer g_tracer;

// ---- Lock --------------------------------------------------------------------------------------
// The port's lock (capheap_port_lock_acquire on a lock object of the tracer's own): on the host a
// recursive mutex, on bare metal the lock hooks the firmware installed for the heaps (a critical
// section masking interrupts, or a recursive RTOS mutex), as ESP-IDF guards its tracer with a
// critical section. It was a spinlock that recognised re-entry by capheap_port_current_task: on a
// bare-metal port without task hooks every task has the same (null) identity, so a task that found
// the lock held by another treated it as its own re-entry and went on without it (heap_trace_get
// and the other API functions then read and wrote the records concurrently with the holder, and the
// events of that task were dropped), and nothing kept an interrupt from spinning on a lock held by
// the task it interrupted. The holder's re-entry (glibc's backtrace() allocating on first use, a
// hook that allocates) is refused by the depth count, which only the holder reads.

#if CAPHEAP_LOCK_STORAGE  // (capheap/caps.hpp: 0 on bare-metal ports)
capheap_lock_t g_lock_storage{};
#else
// Bare-metal ports: the lock hooks take any object's address (as the registry's records), and
// capheap_lock_init does nothing, so a word names the lock instead of 64 bytes of storage.
std::uint32_t g_lock_storage = 0;
#endif
int g_lock_state = 0;  // 0: not initialised, 1: being initialised, 2: ready
int g_lock_depth = 0;  // 1 while held (guarded by the lock)

void *trace_lock_object() noexcept {
  if (__atomic_load_n(&g_lock_state, __ATOMIC_ACQUIRE) != 2) {
    int expected = 0;
    if (__atomic_compare_exchange_n(&g_lock_state, &expected, 1, false, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE)) {
#if CAPHEAP_LOCK_STORAGE
      capheap_lock_init(&g_lock_storage);
#endif
      __atomic_store_n(&g_lock_state, 2, __ATOMIC_RELEASE);
    } else {
      while (__atomic_load_n(&g_lock_state, __ATOMIC_ACQUIRE) != 2) {
      }
    }
  }
  return &g_lock_storage;
}

/// Takes the lock; false (lock not taken) if the calling thread holds it already.
bool lock_enter() noexcept {
  void *const lock = trace_lock_object();
  capheap_port_lock_acquire(lock);
  if (g_lock_depth != 0) {  // the holder re-entered (the lock is recursive)
    capheap_port_lock_release(lock);
    return false;
  }
  g_lock_depth = 1;
  return true;
}

void lock_exit() noexcept {
  g_lock_depth = 0;
  capheap_port_lock_release(&g_lock_storage);
}

/// Scoped lock; `held()` is false when the thread re-entered the tracer.
class Guard {
 public:
  Guard() noexcept : held_(lock_enter()) {}
  ~Guard() {
    if (held_) lock_exit();
  }
  Guard(const Guard &) = delete;
  Guard &operator=(const Guard &) = delete;
  bool held() const noexcept { return held_; }

 private:
  bool held_;
};

int state() noexcept {
  return __atomic_load_n(&g_tracer.state, __ATOMIC_ACQUIRE);
}

void set_state(int s) noexcept {
  __atomic_store_n(&g_tracer.state, s, __ATOMIC_RELEASE);
  set_event_sink(kSinkTrace, s != kStopped);
}

// ---- Call stacks -------------------------------------------------------------------------------

/// Fills callers[0..kDepth): the caller of the heap_caps_* function, then its callers (found in a
/// backtrace of this thread by locating `caller` in it). Unused entries are 0.
void capture_stack(void *caller, void **callers) noexcept {
  for (int i = 0; i < kSlots; ++i)
    callers[i] = nullptr;
  if (kDepth == 0) return;
  callers[0] = caller;
  if (kDepth == 1) return;
  // Frames between here and the application, at most (an unoptimised build with events on and
  // the recorder compiled in goes through about 14).
  constexpr std::size_t kSearch = 24;
  void *frames[kSearch + kDepth];
  const std::size_t n = capheap_port_backtrace(frames, kSearch + kDepth, 0);
  for (std::size_t i = 0; i < n; ++i) {
    if (frames[i] != caller) continue;
    for (std::size_t j = 1; j < static_cast<std::size_t>(kDepth) && i + j < n; ++j)
      callers[j] = frames[i + j];
    return;
  }
}

/// glibc's backtrace() loads its unwinder (and allocates) on first use: do that outside any
/// allocation path.
void prime_backtrace() noexcept {
  if (kDepth > 1) {
    void *frame[1];
    (void)capheap_port_backtrace(frame, 1, 0);
  }
}

// ---- Lists and hash map (lock held) ------------------------------------------------------------

#if CONFIG_HEAP_TRACE_HASH_MAP
std::size_t bucket_of(const void *p) noexcept {
  const auto a = static_cast<std::uint32_t>(reinterpret_cast<std::uintptr_t>(p));
  return static_cast<std::size_t>(((a >> 3) + (a >> 5) + (a >> 7)) * 16777619u %
                                  CONFIG_HEAP_TRACE_HASH_MAP_SIZE);
}
#endif

void hash_insert(heap_trace_record_t *r) noexcept {
#if CONFIG_HEAP_TRACE_HASH_MAP
  heap_trace_record_t *&b = g_tracer.buckets[bucket_of(r->address)];
  r->hash_prev = nullptr;
  r->hash_next = b;
  if (b != nullptr) b->hash_prev = r;
  b = r;
#else
  (void)r;
#endif
}

/// Removes r from the hash map if it is in it.
void hash_remove(heap_trace_record_t *r) noexcept {
#if CONFIG_HEAP_TRACE_HASH_MAP
  heap_trace_record_t *&b = g_tracer.buckets[bucket_of(r->address)];
  if (r->hash_prev == nullptr && b != r) return;  // not in the map
  if (r->hash_prev != nullptr)
    r->hash_prev->hash_next = r->hash_next;
  else
    b = r->hash_next;
  if (r->hash_next != nullptr) r->hash_next->hash_prev = r->hash_prev;
  r->hash_prev = r->hash_next = nullptr;
#else
  (void)r;
#endif
}

void unlink_used(heap_trace_record_t *r) noexcept {
  Tracer &t = g_tracer;
  if (r->list_prev != nullptr)
    r->list_prev->list_next = r->list_next;
  else
    t.head = r->list_next;
  if (r->list_next != nullptr)
    r->list_next->list_prev = r->list_prev;
  else
    t.tail = r->list_prev;
  hash_remove(r);
  r->address = nullptr;
  r->list_prev = nullptr;
  r->list_next = t.unused;
  t.unused = r;
  --t.count;
  ++t.generation;
}

void clear_records() noexcept {
  Tracer &t = g_tracer;
  t.head = t.tail = t.unused = nullptr;
  for (std::size_t i = t.capacity; i-- > 0;) {
    heap_trace_record_t &r = t.buffer[i];
    r = heap_trace_record_t{};
    r.list_next = t.unused;
    t.unused = &r;
  }
  t.count = 0;
  t.high_water_mark = 0;
  t.total_allocations = 0;
  t.total_frees = 0;
  t.has_overflowed = false;
  ++t.generation;
#if CONFIG_HEAP_TRACE_HASH_MAP
  for (heap_trace_record_t *&b : t.buckets)
    b = nullptr;
  t.hits = t.misses = 0;
#endif
}

void add_record(void *ptr, std::size_t size, void *const *callers, std::uint32_t ccount) noexcept {
  Tracer &t = g_tracer;
  if (t.capacity == 0) return;
  if (t.count == t.capacity) {
    unlink_used(t.head);
    t.has_overflowed = true;
  }
  heap_trace_record_t *r = t.unused;
  t.unused = r->list_next;
  r->ccount = ccount;
  r->address = ptr;
  r->size = size;
  for (int i = 0; i < kSlots; ++i) {
    r->alloced_by[i] = callers != nullptr ? callers[i] : nullptr;
    r->freed_by[i] = nullptr;
  }
  r->list_next = nullptr;
  r->list_prev = t.tail;
  if (t.tail != nullptr)
    t.tail->list_next = r;
  else
    t.head = r;
  t.tail = r;
  hash_insert(r);
  ++t.count;
  ++t.generation;
  if (t.count > t.high_water_mark) t.high_water_mark = t.count;
  ++t.total_allocations;
}

/// The record of the live block at ptr, or nullptr.
heap_trace_record_t *find_live(void *ptr) noexcept {
  Tracer &t = g_tracer;
#if CONFIG_HEAP_TRACE_HASH_MAP
  for (heap_trace_record_t *r = t.buckets[bucket_of(ptr)]; r != nullptr; r = r->hash_next) {
    if (r->address == ptr) {
      ++t.hits;
      return r;
    }
  }
  ++t.misses;
  return nullptr;
#else
  for (heap_trace_record_t *r = t.tail; r != nullptr; r = r->list_prev) {
    // In ALL mode a freed record stays: skip it (a newer record may hold a reused address).
    if (r->address == ptr && (kDepth == 0 || t.mode != HEAP_TRACE_ALL || r->freed_by[0] == nullptr))
      return r;
  }
  return nullptr;
#endif
}

/// Handles a free while the lock is held; `caller` is used when callers is null.
void free_record(void *ptr, void *const *callers, void *caller) noexcept {
  Tracer &t = g_tracer;
  ++t.total_frees;
  heap_trace_record_t *r = find_live(ptr);
  if (r == nullptr) return;
  if (t.mode == HEAP_TRACE_LEAKS) {
    unlink_used(r);
    return;
  }
  void *stack[kSlots];
  if (callers == nullptr) {
    capture_stack(caller, stack);
    callers = stack;
  }
  for (int i = 0; i < kSlots; ++i)
    r->freed_by[i] = callers[i];
  hash_remove(r);  // freed: a later free of a reused address must not find it
  ++t.generation;
}

/// Record `index` (lock held), using and updating the sequential-access cache.
heap_trace_record_t *record_at(std::size_t index) noexcept {
  Tracer &t = g_tracer;
  if (index >= t.count) return nullptr;
  heap_trace_record_t *r;
  if (t.cache_generation == t.generation && t.cache_record != nullptr &&
      index == t.cache_index + 1) {
    r = t.cache_record->list_next;
  } else if (t.cache_generation == t.generation && t.cache_record != nullptr &&
             index == t.cache_index) {
    r = t.cache_record;
  } else if (index == t.count - 1) {
    r = t.tail;
  } else {
    r = t.head;
    for (std::size_t i = 0; i < index; ++i)
      r = r->list_next;
  }
  t.cache_generation = t.generation;
  t.cache_index = index;
  t.cache_record = r;
  return r;
}

void copy_out(const heap_trace_record_t &r, heap_trace_record_t *out) noexcept {
  *out = r;
  out->list_prev = out->list_next = nullptr;
#if CONFIG_HEAP_TRACE_HASH_MAP
  out->hash_prev = out->hash_next = nullptr;
#endif
}

// ---- Dump --------------------------------------------------------------------------------------

enum class Region { kNone, kInternal, kPsram };

/// Internal or external RAM by the block's address, as ESP-IDF decides it (spec §1.4, §4.6): an
/// EXEC block's instruction-bus alias is internal memory, and an address the chip's memory layout
/// describes has the kind of its region whatever the caps of the heap holding it (a heap added at
/// run time inside a PSRAM buffer holds PSRAM). Addresses the layout does not know (heaps in host
/// memory, builds without a layout) take the kind of their heap; outside every heap: kNone.
Region region_of(const void *p) noexcept {
  Registry &reg = registry();
  if (reg.is_iram_alias(p)) return Region::kInternal;
  std::uint32_t caps[CAPHEAP_PRIORITY_LEVELS] = {};
  if (!reg.layout_caps_at(reinterpret_cast<std::uintptr_t>(p), caps)) {
    const HeapView v = reg.view_of(p);
    if (!v.heap) return Region::kNone;
    for (unsigned l = 0; l < CAPHEAP_PRIORITY_LEVELS; ++l)
      caps[l] = v.caps[l];
  }
  for (std::uint32_t c : caps) {
    if ((c & MALLOC_CAP_SPIRAM) != 0) return Region::kPsram;
  }
  return Region::kInternal;
}

void print(const TextOut &out) noexcept {
  capheap_port_printf("%s", out.c_str());
}

}  // namespace

// ---- Event sink and injection ------------------------------------------------------------------

void trace_record_alloc(void *ptr, std::size_t size, void *const *callers,
                        std::uint32_t ccount) noexcept {
  if (ptr == nullptr || state() != kRunning) return;
  Guard g;
  if (!g.held() || state() != kRunning) return;
  add_record(ptr, size, callers, ccount);
}

void trace_record_free(void *ptr, void *const *callers) noexcept {
  if (ptr == nullptr || state() == kStopped) return;
  Guard g;
  if (!g.held() || state() == kStopped) return;
  void *zeros[kSlots] = {};
  free_record(ptr, callers != nullptr ? callers : zeros, nullptr);
}

namespace {

void on_alloc(void *ptr, std::size_t size, void *caller) noexcept {
  if (ptr == nullptr || state() != kRunning) return;
  Guard g;
  if (!g.held() || state() != kRunning) return;
  void *callers[kSlots];
  capture_stack(caller, callers);
  const std::uint32_t ccount = (capheap_port_cycle_count() & ~3u) | (capheap_port_cpu_id() & 1u);
  add_record(ptr, size, callers, ccount);
}

void on_free(void *ptr, void *caller) noexcept {
  if (ptr == nullptr || state() == kStopped) return;
  Guard g;
  if (!g.held() || state() == kStopped) return;
  free_record(ptr, nullptr, caller);
}

}  // namespace

void trace_on_event(const AllocEvent &event) noexcept {
  switch (event.op) {
    case EventOp::kMalloc:
    case EventOp::kCalloc:
    case EventOp::kAlignedAlloc:
      on_alloc(event.ptr, event.size, event.caller);
      break;
    case EventOp::kRealloc:
      on_free(event.old_ptr, event.caller);
      on_alloc(event.ptr, event.size, event.caller);
      break;
    case EventOp::kFree:
      on_free(event.ptr, event.caller);
      break;
  }
}

}  // namespace capi
}  // namespace capheap

using capheap::capi::g_tracer;
using capheap::capi::Guard;

extern "C" {

esp_err_t heap_trace_init_standalone(heap_trace_record_t *record_buffer, size_t num_records) {
  capheap::capi::prime_backtrace();
  Guard g;
  if (g_tracer.state != capheap::capi::kStopped) return ESP_ERR_INVALID_STATE;
  if (record_buffer == nullptr || num_records == 0) return ESP_ERR_INVALID_ARG;
  g_tracer.buffer = record_buffer;
  g_tracer.capacity = num_records;
  capheap::capi::clear_records();
  return ESP_OK;
}

esp_err_t heap_trace_init_tohost(void) {
  return capheap::capi::state() != capheap::capi::kStopped ? ESP_ERR_INVALID_STATE
                                                           : ESP_ERR_NOT_SUPPORTED;
}

esp_err_t heap_trace_start(heap_trace_mode_t mode) {
  // C callers may pass any integer: inspect its bytes, never use an out-of-range enum value in C++.
  // The enum's size is the ABI's: an int on most targets, one byte with arm-none-eabi's short
  // enums.
  std::underlying_type_t<heap_trace_mode_t> raw;
  static_assert(sizeof raw == sizeof mode, "raw holds the enum's bytes");
  __builtin_memcpy(&raw, &mode, sizeof raw);
  if (raw != HEAP_TRACE_ALL && raw != HEAP_TRACE_LEAKS) return ESP_ERR_INVALID_ARG;
  capheap::capi::prime_backtrace();
  Guard g;
  if (g_tracer.buffer == nullptr) return ESP_ERR_INVALID_STATE;
  capheap::capi::set_state(capheap::capi::kStopped);
  capheap::capi::clear_records();
  g_tracer.mode = mode;
  capheap::capi::set_state(capheap::capi::kRunning);
  return ESP_OK;
}

esp_err_t heap_trace_stop(void) {
  Guard g;
  if (g_tracer.state == capheap::capi::kStopped) return ESP_ERR_INVALID_STATE;
  capheap::capi::set_state(capheap::capi::kStopped);
  return ESP_OK;
}

esp_err_t heap_trace_resume(void) {
  Guard g;
  if (g_tracer.state == capheap::capi::kRunning || g_tracer.buffer == nullptr)
    return ESP_ERR_INVALID_STATE;
  capheap::capi::set_state(capheap::capi::kRunning);
  return ESP_OK;
}

esp_err_t heap_trace_alloc_pause(void) {
  Guard g;
  if (g_tracer.state != capheap::capi::kRunning) return ESP_ERR_INVALID_STATE;
  capheap::capi::set_state(capheap::capi::kAllocPaused);
  return ESP_OK;
}

size_t heap_trace_get_count(void) {
  Guard g;
  return g_tracer.count;
}

esp_err_t heap_trace_get(size_t index, heap_trace_record_t *record_out) {
  if (record_out == nullptr) return ESP_ERR_INVALID_STATE;
  Guard g;
  const heap_trace_record_t *r = capheap::capi::record_at(index);
  if (r == nullptr) return ESP_ERR_INVALID_ARG;
  capheap::capi::copy_out(*r, record_out);
  return ESP_OK;
}

esp_err_t heap_trace_summary(heap_trace_summary_t *summary) {
  if (summary == nullptr) return ESP_ERR_INVALID_ARG;
  Guard g;
  summary->mode = g_tracer.mode;
  summary->total_allocations = g_tracer.total_allocations;
  summary->total_frees = g_tracer.total_frees;
  summary->count = g_tracer.count;
  summary->capacity = g_tracer.capacity;
  summary->high_water_mark = g_tracer.high_water_mark;
  summary->has_overflowed = g_tracer.has_overflowed;
#if CONFIG_HEAP_TRACE_HASH_MAP
  summary->total_hashmap_hits = g_tracer.hits;
  summary->total_hashmap_miss = g_tracer.misses;
#endif
  return ESP_OK;
}

void heap_trace_dump(void) {
  heap_trace_dump_caps(MALLOC_CAP_INTERNAL | MALLOC_CAP_SPIRAM);
}

void heap_trace_dump_caps(uint32_t caps) {
  using capheap::capi::Region;
  using capheap::capi::TextOut;
  constexpr int kDepth = CONFIG_HEAP_TRACING_STACK_DEPTH;
  heap_trace_summary_t before{};
  (void)heap_trace_summary(&before);
  char buf[512];
  {
    TextOut out(buf, sizeof buf);
    out.str("====== Heap Trace: ").dec(before.count).str(" records (").dec(before.capacity);
    capheap::capi::print(out.str(" capacity) ======\n"));
  }
  std::uint64_t alive_bytes = 0;
  std::size_t alive_blocks = 0;
  for (std::size_t i = 0; i < before.count; ++i) {
    heap_trace_record_t rec;
    if (heap_trace_get(i, &rec) != ESP_OK) break;
    if (rec.address == nullptr) continue;
    const Region region = capheap::capi::region_of(rec.address);
    const bool wanted = (region == Region::kInternal && (caps & MALLOC_CAP_INTERNAL) != 0) ||
                        (region == Region::kPsram && (caps & MALLOC_CAP_SPIRAM) != 0);
    if (!wanted) continue;
    TextOut out(buf, sizeof buf);
    out.dec(rec.size, 6).str(" bytes (@ ").ptr(capheap::capi::display_address(rec.address));
    out.str(region == Region::kPsram ? ",    PSRAM" : ", Internal");
    out.str(") allocated CPU ").dec(rec.ccount & 1u).str(" ccount 0x").hex(rec.ccount & ~3u, 8);
    out.str(" caller ");
    for (int j = 0; j < kDepth && rec.alloced_by[j] != nullptr; ++j) {
      out.ptr(reinterpret_cast<std::uintptr_t>(rec.alloced_by[j]));
      if (j < kDepth - 1) out.ch(':');
    }
    if (before.mode != HEAP_TRACE_ALL || kDepth == 0 || rec.freed_by[0] == nullptr) {
      alive_bytes += rec.size;
      ++alive_blocks;
      out.ch('\n');
    } else {
      out.str("\nfreed by ");
      for (int j = 0; j < kDepth; ++j) {
        out.ptr(reinterpret_cast<std::uintptr_t>(rec.freed_by[j]));
        if (j < kDepth - 1) out.ch(':');
      }
      out.ch('\n');
    }
    capheap::capi::print(out);
  }
  heap_trace_summary_t after{};
  (void)heap_trace_summary(&after);
  TextOut out(buf, sizeof buf);
  out.str("====== Heap Trace Summary ======\n");
  if (before.mode == HEAP_TRACE_ALL) {
    out.str("Mode: Heap Trace All\n").dec(alive_bytes).str(" bytes alive in trace (");
    out.dec(alive_blocks).ch('/').dec(before.count).str(" allocations)\n");
  } else {
    out.str("Mode: Heap Trace Leaks\n").dec(alive_bytes).str(" bytes 'leaked' in trace (");
    out.dec(alive_blocks).str(" allocations)\n");
  }
  out.str("records: ").dec(after.count).str(" (").dec(after.capacity).str(" capacity, ");
  out.dec(after.high_water_mark).str(" high water mark)\n");
#if CONFIG_HEAP_TRACE_HASH_MAP
  out.str("hashmap: ").dec(CONFIG_HEAP_TRACE_HASH_MAP_SIZE).str(" capacity (");
  out.dec(after.total_hashmap_hits).str(" hits, ").dec(after.total_hashmap_miss);
  out.str(" misses)\n");
#endif
  out.str("total allocations: ").dec(after.total_allocations).ch('\n');
  out.str("total frees: ").dec(after.total_frees).ch('\n');
  if (after.total_allocations != before.total_allocations)
    out.str(
        "(NB: New entries were traced while dumping, so trace dump may have duplicate "
        "entries.)\n");
  if (after.has_overflowed)
    out.str("(NB: Internal Buffer has overflowed, so trace data is incomplete.)\n");
  out.str("================================\n");
  capheap::capi::print(out);
}

}  // extern "C"

#else  // !CAPHEAP_HEAP_TRACE: the API exists and reports that tracing is not built in.

namespace capheap {
namespace capi {
void trace_on_event(const AllocEvent &) noexcept {}
void trace_record_alloc(void *, std::size_t, void *const *, std::uint32_t) noexcept {}
void trace_record_free(void *, void *const *) noexcept {}
}  // namespace capi
}  // namespace capheap

extern "C" {
esp_err_t heap_trace_init_standalone(heap_trace_record_t *, size_t) {
  return ESP_ERR_NOT_SUPPORTED;
}
esp_err_t heap_trace_init_tohost(void) {
  return ESP_ERR_NOT_SUPPORTED;
}
esp_err_t heap_trace_start(heap_trace_mode_t) {
  return ESP_ERR_NOT_SUPPORTED;
}
esp_err_t heap_trace_stop(void) {
  return ESP_ERR_NOT_SUPPORTED;
}
esp_err_t heap_trace_resume(void) {
  return ESP_ERR_NOT_SUPPORTED;
}
esp_err_t heap_trace_alloc_pause(void) {
  return ESP_ERR_NOT_SUPPORTED;
}
size_t heap_trace_get_count(void) {
  return 0;
}
esp_err_t heap_trace_get(size_t, heap_trace_record_t *) {
  return ESP_ERR_NOT_SUPPORTED;
}
esp_err_t heap_trace_summary(heap_trace_summary_t *) {
  return ESP_ERR_NOT_SUPPORTED;
}
void heap_trace_dump(void) {}
void heap_trace_dump_caps(uint32_t) {}
}  // extern "C"

#endif  // CAPHEAP_HEAP_TRACE
