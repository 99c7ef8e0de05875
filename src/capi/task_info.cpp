// task_info.cpp — per-task heap usage (esp_heap_task_info.h).
//
// Two parts:
//   * the legacy snapshot heap_caps_get_per_task_info, a walk of the tracking heaps' used blocks
//     by owner word (no state of its own);
//   * the statistics engine behind the newer API: per task the overall current/peak bytes, per
//     (task, heap) the current/peak bytes and live block count, updated from the event seam
//     (events.hpp) on every heap_caps_* allocation and free. Per-block details are not stored: they
//     are read back from the owner words when asked for.
//
// Storage is a fixed pool (see the header for why): kMaxTasks task records and kMaxEntries
// (task, heap) records, linked through indices. Everything is guarded by g_lock (a port lock);
// heaps are walked under their own lock, always taken after g_lock. The event path reads the new
// block's owner and size under its heap's lock first and takes g_lock afterwards, so the two locks
// are never held in the opposite order.
//
// Heaps are identified by their region start address, not by their list position: a heap added at
// run time goes to the head of the list and shifts every position.

#include "esp_heap_task_info.h"

#include <cstddef>
#include <cstdint>

#include "capheap.h"
#include "capheap_port.h"
#include "capi/capi_internal.hpp"
#include "capi/events.hpp"
#include "esp_heap_caps.h"

#ifndef CAPHEAP_TASK_TRACKING
#define CAPHEAP_TASK_TRACKING 1
#endif
#ifndef CAPHEAP_TRACK_DELETED_TASKS
#define CAPHEAP_TRACK_DELETED_TASKS 0
#endif
#ifndef CAPHEAP_TASK_STATS_MAX_TASKS
#define CAPHEAP_TASK_STATS_MAX_TASKS 32
#endif
#ifndef CAPHEAP_TASK_STATS_MAX_HEAP_ENTRIES
#define CAPHEAP_TASK_STATS_MAX_HEAP_ENTRIES 128
#endif

// Streams: fprintf only where the header declared FILE and the library is hosted.
#if defined(__STDC_HOSTED__) && __STDC_HOSTED__ == 1 && defined(EOF) && \
    !defined(CAPHEAP_TASK_INFO_NO_STDIO)
#define CAPHEAP_TASK_INFO_FILE_OUTPUT 1
#else
#define CAPHEAP_TASK_INFO_FILE_OUTPUT 0
#endif

#if CAPHEAP_TASK_INFO_FILE_OUTPUT
#define TI_PRINT(stream, ...)                                                 \
  do {                                                                        \
    if ((stream) != nullptr)                                                  \
      fprintf(static_cast<FILE *>(static_cast<void *>(stream)), __VA_ARGS__); \
    else                                                                      \
      capheap_port_printf(__VA_ARGS__);                                       \
  } while (0)
#else
#define TI_PRINT(stream, ...)         \
  do {                                \
    (void)(stream);                   \
    capheap_port_printf(__VA_ARGS__); \
  } while (0)
#endif

namespace {

using capheap::BlockView;
using capheap::HeapView;
using capheap::Registry;
using capheap::capi::registry;

TaskHandle_t handle_of(std::uint32_t owner) noexcept {
  return reinterpret_cast<TaskHandle_t>(static_cast<std::uintptr_t>(owner));
}

[[maybe_unused]] std::uint32_t owner_of_handle(TaskHandle_t handle) noexcept {
  return static_cast<std::uint32_t>(reinterpret_cast<std::uintptr_t>(handle));
}

std::uint32_t all_caps(const HeapView &v) noexcept {
  std::uint32_t caps = 0;
  for (unsigned l = 0; l < CAPHEAP_PRIORITY_LEVELS; ++l)
    caps |= v.caps[l];
  return caps;
}

// ---- Excluded blocks: the statistics arrays capheap allocates for the caller ------------------
// They are allocated without events (so they do not show in the counters) and skipped by every
// walk (so they do not show in block lists either). A small fixed table, under g_lock.

constexpr std::size_t kMaxExcluded = 24;  // 8 sets of all-task arrays
void *g_excluded[kMaxExcluded] = {};

bool is_excluded(const void *p) noexcept {
  for (void *e : g_excluded)
    if (e != nullptr && e == p) return true;
  return false;
}

// ---- The statistics lock ------------------------------------------------------------------------

capheap_lock_t g_lock_storage{};
int g_lock_state = 0;  // 0: not initialised, 1: being initialised, 2: ready

void stats_lock() noexcept {
  if (__atomic_load_n(&g_lock_state, __ATOMIC_ACQUIRE) != 2) {
    int expected = 0;
    if (__atomic_compare_exchange_n(&g_lock_state, &expected, 1, false, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE)) {
      capheap_lock_init(&g_lock_storage);
      __atomic_store_n(&g_lock_state, 2, __ATOMIC_RELEASE);
    } else {
      while (__atomic_load_n(&g_lock_state, __ATOMIC_ACQUIRE) != 2) {
      }
    }
  }
  capheap_port_lock_acquire(&g_lock_storage);
}

void stats_unlock() noexcept {
  capheap_port_lock_release(&g_lock_storage);
}

struct StatsLock {
  StatsLock() noexcept { stats_lock(); }
  ~StatsLock() { stats_unlock(); }
  StatsLock(const StatsLock &) = delete;
  StatsLock &operator=(const StatsLock &) = delete;
};

// The position of the heap whose region starts at `start`, or -1 (it went away).
[[maybe_unused]] int position_of(std::uintptr_t start) noexcept {
  Registry &reg = registry();
  for (unsigned i = 0; i < reg.count(); ++i) {
    const HeapView v = reg.view(i);
    if (v.start == start && v.registered && v.heap) return static_cast<int>(i);
  }
  return -1;
}

// Visits the used, non-excluded blocks of heap `pos` under its lock: f(const BlockView&, user)
// -> bool, with the view's size replaced by what the block counts for (task_bytes).
template <class F>
void walk_used(unsigned pos, F &&f) noexcept {
  Registry &reg = registry();
  const HeapView v = reg.view(pos);
  if (!v.registered || !v.heap) return;
  reg.with_heap_locked(v, [&] {
    v.heap.for_each_block([&](const BlockView &b) {
      if (!b.used) return true;
      void *user = b.user != nullptr ? b.user : b.data;
      if (is_excluded(user)) return true;
      BlockView counted = b;
      counted.size = capheap::capi::task_bytes(v.heap, b.size);
      return f(counted, user);
    });
  });
}

}  // namespace

// ================================================================================================
// Statistics engine
// ================================================================================================

#if CAPHEAP_TASK_TRACKING

namespace {

constexpr std::uint32_t kNone = 0xFFFFFFFFu;
constexpr std::size_t kMaxTasks = CAPHEAP_TASK_STATS_MAX_TASKS;
constexpr std::size_t kMaxEntries = CAPHEAP_TASK_STATS_MAX_HEAP_ENTRIES;
static_assert(kMaxTasks > 0 && kMaxTasks < kNone, "CAPHEAP_TASK_STATS_MAX_TASKS out of range");
static_assert(kMaxEntries > 0 && kMaxEntries < kNone,
              "CAPHEAP_TASK_STATS_MAX_HEAP_ENTRIES out of range");

struct HeapEntry {
  std::uintptr_t heap_start = 0;
  std::size_t current = 0;
  std::size_t peak = 0;
  std::size_t count = 0;
  std::uint32_t next = kNone;  // next entry of the same task (first-use order), or free list
};

struct TaskRecord {
  bool used = false;
  bool alive = true;
  std::uint32_t owner = 0;
  std::size_t current = 0;
  std::size_t peak = 0;
  std::size_t heap_count = 0;
  std::uint32_t first = kNone;  // its heap entries
  std::uint32_t last = kNone;
};

// The pools live in zero-initialised storage (.bss): their elements' defaults are not all zero,
// and arrays of them would be constant-initialised into .data (flash as well as RAM on a device:
// 3.4 KiB). Every element is used only after pool_reset() assigned it its default, which begins
// its lifetime as the union's member; g_pool_ready guards the queries.
template <class T, std::size_t N>
union ZeroPool {
  constexpr ZeroPool() noexcept : raw{} {}
  unsigned char raw[sizeof(T) * N];
  T items[N];
};
ZeroPool<TaskRecord, kMaxTasks> g_task_pool;
ZeroPool<HeapEntry, kMaxEntries> g_entry_pool;
constexpr TaskRecord (&g_tasks)[kMaxTasks] = g_task_pool.items;
constexpr HeapEntry (&g_entries)[kMaxEntries] = g_entry_pool.items;
std::uint32_t g_free_entries = kNone;
bool g_pool_ready = false;
bool g_enabled = false;
bool g_keep_deleted = CAPHEAP_TRACK_DELETED_TASKS != 0;
std::size_t g_overflow = 0;

// All under g_lock. -------------------------------------------------------------------------------

void pool_reset() noexcept {
  for (TaskRecord &t : g_tasks)
    t = TaskRecord{};
  for (std::size_t i = 0; i < kMaxEntries; ++i) {
    g_entries[i] = HeapEntry{};
    g_entries[i].next = i + 1 < kMaxEntries ? static_cast<std::uint32_t>(i + 1) : kNone;
  }
  g_free_entries = 0;
  g_overflow = 0;
  g_pool_ready = true;
}

void drop_task(TaskRecord &t) noexcept {
  std::uint32_t e = t.first;
  while (e != kNone) {
    const std::uint32_t next = g_entries[e].next;
    g_entries[e] = HeapEntry{};
    g_entries[e].next = g_free_entries;
    g_free_entries = e;
    e = next;
  }
  t = TaskRecord{};
}

// Applies task liveness: ended tasks are marked, and dropped unless deleted tasks are kept.
void sweep_dead() noexcept {
  for (TaskRecord &t : g_tasks) {
    if (!t.used || !t.alive) {
      if (t.used && !g_keep_deleted) drop_task(t);
      continue;
    }
    if (capheap_port_task_alive(t.owner)) continue;
    t.alive = false;
    if (!g_keep_deleted) drop_task(t);
  }
}

TaskRecord *find_task(std::uint32_t owner) noexcept {
  for (TaskRecord &t : g_tasks)
    if (t.used && t.owner == owner) return &t;
  return nullptr;
}

TaskRecord *find_or_add_task(std::uint32_t owner) noexcept {
  if (TaskRecord *t = find_task(owner)) return t;
  for (int attempt = 0; attempt < 2; ++attempt) {
    for (TaskRecord &t : g_tasks) {
      if (t.used) continue;
      t = TaskRecord{};
      t.used = true;
      t.owner = owner;
      t.alive = true;
      return &t;
    }
    if (attempt == 0) sweep_dead();  // reclaim ended tasks' records, then retry once
  }
  return nullptr;
}

HeapEntry *find_entry(const TaskRecord &t, std::uintptr_t heap_start) noexcept {
  for (std::uint32_t e = t.first; e != kNone; e = g_entries[e].next)
    if (g_entries[e].heap_start == heap_start) return &g_entries[e];
  return nullptr;
}

HeapEntry *find_or_add_entry(TaskRecord &t, std::uintptr_t heap_start) noexcept {
  if (HeapEntry *h = find_entry(t, heap_start)) return h;
  if (g_free_entries == kNone) return nullptr;
  const std::uint32_t e = g_free_entries;
  g_free_entries = g_entries[e].next;
  g_entries[e] = HeapEntry{};
  g_entries[e].heap_start = heap_start;
  if (t.last == kNone)
    t.first = e;
  else
    g_entries[t.last].next = e;
  t.last = e;
  ++t.heap_count;
  return &g_entries[e];
}

void record_alloc(std::uint32_t owner, std::uintptr_t heap_start, std::size_t bytes) noexcept {
  TaskRecord *t = find_or_add_task(owner);
  HeapEntry *h = t != nullptr ? find_or_add_entry(*t, heap_start) : nullptr;
  if (h == nullptr) {
    ++g_overflow;
    return;
  }
  t->current += bytes;
  if (t->current > t->peak) t->peak = t->current;
  h->current += bytes;
  ++h->count;
  if (h->current > h->peak) h->peak = h->current;
}

// A free is accounted to the block's owner (whoever frees it); unknown owners are ignored.
void record_free(std::uint32_t owner, std::uintptr_t heap_start, std::size_t bytes) noexcept {
  TaskRecord *t = find_task(owner);
  if (t == nullptr) return;
  HeapEntry *h = find_entry(*t, heap_start);
  if (h == nullptr || h->count == 0) return;
  const std::size_t b = bytes < h->current ? bytes : h->current;
  h->current -= b;
  --h->count;
  t->current -= b < t->current ? b : t->current;
}

// Task records in report order: decreasing owner word (ESP-IDF sorts by decreasing handle).
std::size_t sorted_tasks(std::uint32_t (&order)[kMaxTasks]) noexcept {
  std::size_t n = 0;
  for (std::uint32_t i = 0; i < kMaxTasks; ++i) {
    if (!g_tasks[i].used) continue;
    std::size_t k = n++;
    while (k > 0 && g_tasks[order[k - 1]].owner < g_tasks[i].owner) {
      order[k] = order[k - 1];
      --k;
    }
    order[k] = i;
  }
  return n;
}

void fill_task_stat(const TaskRecord &t, task_stat_t &out) noexcept {
  capheap_port_task_name(t.owner, out.name, sizeof out.name);
  out.handle = handle_of(t.owner);
  out.is_alive = t.alive;
  out.overall_peak_usage = t.peak;
  out.overall_current_usage = t.current;
  out.heap_count = t.heap_count;
  out.heap_stat = nullptr;
}

void fill_heap_stat(const HeapEntry &h, heap_stat_t &out) noexcept {
  out.name = nullptr;
  out.caps = 0;
  out.size = 0;
  const int pos = position_of(h.heap_start);
  if (pos >= 0) {
    const HeapView v = registry().view(static_cast<unsigned>(pos));
    out.name = v.name;
    out.caps = all_caps(v);
    out.size = v.end - v.start;
  }
  out.current_usage = h.current;
  out.peak_usage = h.peak;
  out.alloc_count = h.count;
  out.alloc_stat = nullptr;
}

// Writes the task's live blocks of heap entry h into out[0..room); returns how many, or
// (size_t)-1 if they do not all fit.
std::size_t collect_blocks(std::uint32_t owner, const HeapEntry &h, heap_task_block_t *out,
                           std::size_t room) noexcept {
  const int pos = position_of(h.heap_start);
  if (pos < 0) return 0;
  std::size_t n = 0;
  bool overflow = false;
  walk_used(static_cast<unsigned>(pos), [&](const BlockView &b, void *user) {
    if (b.owner != owner) return true;
    if (n == room) {
      overflow = true;
      return false;
    }
    out[n].task = handle_of(owner);
    out[n].address = user;
    out[n].size = static_cast<std::uint32_t>(b.size);
    ++n;
    return true;
  });
  return overflow ? static_cast<std::size_t>(-1) : n;
}

// Fills heap entries of t into heaps[0..heap_room) and their blocks into allocs; returns the
// number of heap entries written and advances *alloc_used. Stops at heap_room entries.
std::size_t fill_heaps(const TaskRecord &t, heap_stat_t *heaps, std::size_t heap_room,
                       heap_task_block_t *allocs, std::size_t alloc_room,
                       std::size_t *alloc_used) noexcept {
  std::size_t n = 0;
  for (std::uint32_t e = t.first; e != kNone && n < heap_room; e = g_entries[e].next, ++n) {
    heap_stat_t &hs = heaps[n];
    fill_heap_stat(g_entries[e], hs);
    const std::size_t got =
        collect_blocks(t.owner, g_entries[e], allocs + *alloc_used, alloc_room - *alloc_used);
    if (got != static_cast<std::size_t>(-1) && got > 0) {
      hs.alloc_stat = allocs + *alloc_used;
      hs.alloc_count = got;
      *alloc_used += got;
    } else if (got == 0) {
      hs.alloc_count = 0;
    }
  }
  return n;
}

std::size_t live_blocks(const TaskRecord &t) noexcept {
  std::size_t n = 0;
  for (std::uint32_t e = t.first; e != kNone; e = g_entries[e].next)
    n += g_entries[e].count;
  return n;
}

void seed_from_heaps() noexcept {
  Registry &reg = registry();
  for (unsigned i = 0; i < reg.count(); ++i) {
    const HeapView v = reg.view(i);
    if (!v.registered || !v.heap || !v.heap.tracks_owner()) continue;
    walk_used(i, [&](const BlockView &b, void *) {
      record_alloc(b.owner, v.start, b.size);
      return true;
    });
  }
}

}  // namespace

namespace capheap {
namespace capi {

void task_stats_on_event(const AllocEvent &event, const Released &released) noexcept {
  // The new block (not for kFree): its heap, owner word and size, read under the heap's lock.
  bool added = false;
  std::uintptr_t add_heap = 0;
  std::uint32_t add_owner = 0;
  std::size_t add_bytes = 0;
  Registry &reg = registry();
  if (event.op != EventOp::kFree && event.ptr != nullptr) {
    {
      const HeapView v = reg.view_of(event.ptr);
      if (v.heap && v.heap.tracks_owner()) {
        reg.with_heap_locked(v, [&] {
          const std::size_t block = v.heap.block_size(event.ptr);
          if (block >= 4) {
            added = true;
            add_heap = v.start;
            add_owner = v.heap.owner_of(event.ptr);
            add_bytes = task_bytes(v.heap, block - 4);
          }
        });
      }
    }
  }
  bool removed = false;
  std::uintptr_t rel_heap = 0;
  if (released.ptr != nullptr && released.heap != 0) {
    const HeapView v = reg.view_of(released.ptr);
    if (v.heap && v.heap.tracks_owner() && v.start == released.heap) {
      removed = true;
      rel_heap = v.start;
    }
  }
  if (!added && !removed) return;
  StatsLock lock;
  if (!g_enabled) return;
  if (removed) record_free(released.owner, rel_heap, released.bytes);
  if (added) record_alloc(add_owner, add_heap, add_bytes);
}

}  // namespace capi
}  // namespace capheap

extern "C" {

void capheap_task_stats_enable(bool enable) {
  StatsLock lock;
  if (!enable) {
    g_enabled = false;
    capheap::capi::set_event_sink(capheap::capi::kSinkTaskStats, false);
    return;
  }
  pool_reset();
  g_enabled = true;
  capheap::capi::set_event_sink(capheap::capi::kSinkTaskStats, true);
  seed_from_heaps();
}

bool capheap_task_stats_enabled(void) {
  StatsLock lock;
  return g_enabled;
}

void capheap_task_stats_track_deleted(bool keep) {
  StatsLock lock;
  g_keep_deleted = keep;
}

size_t capheap_task_stats_overflow(void) {
  StatsLock lock;
  return g_overflow;
}

esp_err_t heap_caps_get_all_task_stat(heap_all_tasks_stat_t *s) {
  if (s == nullptr || (s->stat_arr == nullptr && s->task_count != 0) ||
      (s->heap_stat_start == nullptr && s->heap_count != 0) ||
      (s->alloc_stat_start == nullptr && s->alloc_count != 0))
    return ESP_ERR_INVALID_ARG;
  StatsLock lock;
  std::size_t tasks = 0, heaps = 0, allocs = 0;
  if (g_pool_ready) {
    sweep_dead();
    std::uint32_t order[kMaxTasks];
    const std::size_t n = sorted_tasks(order);
    for (std::size_t k = 0; k < n && tasks < s->task_count; ++k) {
      const TaskRecord &t = g_tasks[order[k]];
      task_stat_t &ts = s->stat_arr[tasks++];
      fill_task_stat(t, ts);
      if (heaps + t.heap_count > s->heap_count) continue;  // heap_stat stays NULL
      ts.heap_stat = s->heap_stat_start + heaps;
      heaps +=
          fill_heaps(t, ts.heap_stat, t.heap_count, s->alloc_stat_start, s->alloc_count, &allocs);
    }
  }
  s->task_count = tasks;
  s->heap_count = heaps;
  s->alloc_count = allocs;
  return ESP_OK;
}

esp_err_t heap_caps_get_single_task_stat(heap_single_task_stat_t *s, TaskHandle_t task_handle) {
  if (s == nullptr || (s->heap_stat_start == nullptr && s->heap_count != 0) ||
      (s->alloc_stat_start == nullptr && s->alloc_count != 0))
    return ESP_ERR_INVALID_ARG;
  const std::uint32_t owner =
      task_handle != nullptr ? owner_of_handle(task_handle) : capheap_port_task_owner();
  StatsLock lock;
  if (!g_pool_ready) return ESP_FAIL;
  sweep_dead();
  const TaskRecord *t = find_task(owner);
  if (t == nullptr) return ESP_FAIL;
  fill_task_stat(*t, s->stat);
  s->stat.heap_stat = s->heap_stat_start;
  std::size_t allocs = 0;
  s->heap_count = fill_heaps(*t, s->heap_stat_start, s->heap_count, s->alloc_stat_start,
                             s->alloc_count, &allocs);
  s->alloc_count = allocs;
  return ESP_OK;
}

// ---- Printing -----------------------------------------------------------------------------------

namespace {

unsigned long chip32(const void *p) noexcept {
  return static_cast<unsigned long>(capheap::capi::display_address(p) & 0xFFFFFFFFu);
}

void print_task(CAPHEAP_TASK_INFO_STREAM *stream, const TaskRecord &t) noexcept {
  task_stat_t ts;
  fill_task_stat(t, ts);
  TI_PRINT(stream, "TASK %-16s (0x%08lx) %s: current %lu peak %lu heaps %lu\n", ts.name,
           static_cast<unsigned long>(t.owner), t.alive ? "ALIVE" : "DELETED",
           static_cast<unsigned long>(t.current), static_cast<unsigned long>(t.peak),
           static_cast<unsigned long>(t.heap_count));
  for (std::uint32_t e = t.first; e != kNone; e = g_entries[e].next) {
    heap_stat_t hs;
    fill_heap_stat(g_entries[e], hs);
    TI_PRINT(stream, "  HEAP %-16s caps 0x%08lx size %lu: current %lu peak %lu allocs %lu\n",
             hs.name != nullptr ? hs.name : "(gone)", static_cast<unsigned long>(hs.caps),
             static_cast<unsigned long>(hs.size), static_cast<unsigned long>(hs.current_usage),
             static_cast<unsigned long>(hs.peak_usage), static_cast<unsigned long>(hs.alloc_count));
    const int pos = position_of(g_entries[e].heap_start);
    if (pos < 0) continue;
    walk_used(static_cast<unsigned>(pos), [&](const BlockView &b, void *user) {
      if (b.owner == t.owner)
        TI_PRINT(stream, "    ALLOC 0x%08lx size %lu\n", chip32(user),
                 static_cast<unsigned long>(b.size));
      return true;
    });
  }
}

void print_overview_header(CAPHEAP_TASK_INFO_STREAM *stream) noexcept {
  TI_PRINT(stream, "%-16s %-10s %-7s %10s %10s %6s\n", "TASK", "HANDLE", "STATUS", "CURRENT",
           "PEAK", "HEAPS");
}

void print_overview_row(CAPHEAP_TASK_INFO_STREAM *stream, const TaskRecord &t) noexcept {
  char name[CAPHEAP_TASK_NAME_LEN];
  capheap_port_task_name(t.owner, name, sizeof name);
  TI_PRINT(stream, "%-16s 0x%08lx %-7s %10lu %10lu %6lu\n", name,
           static_cast<unsigned long>(t.owner), t.alive ? "ALIVE" : "DELETED",
           static_cast<unsigned long>(t.current), static_cast<unsigned long>(t.peak),
           static_cast<unsigned long>(t.heap_count));
}

void print_overflow(CAPHEAP_TASK_INFO_STREAM *stream) noexcept {
  if (g_overflow != 0)
    TI_PRINT(stream, "(%lu events not recorded: statistics pool full)\n",
             static_cast<unsigned long>(g_overflow));
}

}  // namespace

void heap_caps_print_all_task_stat(CAPHEAP_TASK_INFO_STREAM *stream) {
  StatsLock lock;
  if (!g_pool_ready) return;
  sweep_dead();
  std::uint32_t order[kMaxTasks];
  const std::size_t n = sorted_tasks(order);
  for (std::size_t k = 0; k < n; ++k)
    print_task(stream, g_tasks[order[k]]);
  print_overflow(stream);
}

void heap_caps_print_all_task_stat_overview(CAPHEAP_TASK_INFO_STREAM *stream) {
  StatsLock lock;
  if (!g_pool_ready) return;
  sweep_dead();
  std::uint32_t order[kMaxTasks];
  const std::size_t n = sorted_tasks(order);
  print_overview_header(stream);
  for (std::size_t k = 0; k < n; ++k)
    print_overview_row(stream, g_tasks[order[k]]);
  print_overflow(stream);
}

void heap_caps_print_single_task_stat(CAPHEAP_TASK_INFO_STREAM *stream, TaskHandle_t task_handle) {
  const std::uint32_t owner =
      task_handle != nullptr ? owner_of_handle(task_handle) : capheap_port_task_owner();
  StatsLock lock;
  if (!g_pool_ready) return;
  sweep_dead();
  if (const TaskRecord *t = find_task(owner)) print_task(stream, *t);
}

void heap_caps_print_single_task_stat_overview(CAPHEAP_TASK_INFO_STREAM *stream,
                                               TaskHandle_t task_handle) {
  const std::uint32_t owner =
      task_handle != nullptr ? owner_of_handle(task_handle) : capheap_port_task_owner();
  StatsLock lock;
  if (!g_pool_ready) return;
  sweep_dead();
  if (const TaskRecord *t = find_task(owner)) {
    print_overview_header(stream);
    print_overview_row(stream, *t);
  }
}

}  // extern "C"

namespace {
// Sizes for the array helpers: (tasks, heaps, blocks) of one task or of all.
void count_for(const TaskRecord &t, std::size_t &heaps, std::size_t &blocks) noexcept {
  heaps += t.heap_count;
  blocks += live_blocks(t);
}
}  // namespace

#else  // !CAPHEAP_TASK_TRACKING — stubs without storage

namespace capheap {
namespace capi {
void task_stats_on_event(const AllocEvent &, const Released &) noexcept {}
}  // namespace capi
}  // namespace capheap

extern "C" {
void capheap_task_stats_enable(bool) {}
bool capheap_task_stats_enabled(void) {
  return false;
}
void capheap_task_stats_track_deleted(bool) {}
size_t capheap_task_stats_overflow(void) {
  return 0;
}
esp_err_t heap_caps_get_all_task_stat(heap_all_tasks_stat_t *s) {
  if (s == nullptr || (s->stat_arr == nullptr && s->task_count != 0) ||
      (s->heap_stat_start == nullptr && s->heap_count != 0) ||
      (s->alloc_stat_start == nullptr && s->alloc_count != 0))
    return ESP_ERR_INVALID_ARG;
  s->task_count = s->heap_count = s->alloc_count = 0;
  return ESP_OK;
}
esp_err_t heap_caps_get_single_task_stat(heap_single_task_stat_t *s, TaskHandle_t) {
  if (s == nullptr || (s->heap_stat_start == nullptr && s->heap_count != 0) ||
      (s->alloc_stat_start == nullptr && s->alloc_count != 0))
    return ESP_ERR_INVALID_ARG;
  return ESP_FAIL;
}
void heap_caps_print_all_task_stat(CAPHEAP_TASK_INFO_STREAM *) {}
void heap_caps_print_all_task_stat_overview(CAPHEAP_TASK_INFO_STREAM *) {}
void heap_caps_print_single_task_stat(CAPHEAP_TASK_INFO_STREAM *, TaskHandle_t) {}
void heap_caps_print_single_task_stat_overview(CAPHEAP_TASK_INFO_STREAM *, TaskHandle_t) {}
}  // extern "C"

#endif  // CAPHEAP_TASK_TRACKING

// ================================================================================================
// Array helpers (both builds: without the engine they size everything 0)
// ================================================================================================

namespace {

// Allocates `bytes` for a statistics array without an event, and excludes it from the walks.
// Caller holds g_lock. Null if no heap has room or the exclusion table is full.
void *alloc_array(std::size_t bytes, std::size_t alignment) noexcept {
  std::size_t slot = kMaxExcluded;
  for (std::size_t i = 0; i < kMaxExcluded; ++i)
    if (g_excluded[i] == nullptr) {
      slot = i;
      break;
    }
  if (slot == kMaxExcluded) return nullptr;
  // Aligned for the element type: a granule-4 heap hands out 4-aligned blocks, and the arrays
  // hold pointers and size_t.
  void *p = registry().allocate_aligned(alignment, bytes, capheap::Caps(MALLOC_CAP_DEFAULT));
  if (p != nullptr) g_excluded[slot] = p;
  return p;
}

void free_array(void *p) noexcept {
  if (p == nullptr) return;
  for (void *&e : g_excluded)
    if (e == p) e = nullptr;
  registry().deallocate(p);
}

template <class T>
bool alloc_n(T *&out, std::size_t n) noexcept {
  out = nullptr;
  if (n == 0) return true;
  if (n > static_cast<std::size_t>(-1) / sizeof(T)) return false;
  out = static_cast<T *>(alloc_array(n * sizeof(T), alignof(T)));
  return out != nullptr;
}

}  // namespace

extern "C" {

esp_err_t heap_caps_alloc_single_task_stat_arrays(heap_single_task_stat_t *s,
                                                  TaskHandle_t task_handle) {
  if (s == nullptr) return ESP_ERR_INVALID_ARG;
  s->heap_stat_start = nullptr;
  s->alloc_stat_start = nullptr;
  s->heap_count = 0;
  s->alloc_count = 0;
  std::size_t heaps = 0, blocks = 0;
  StatsLock lock;
#if CAPHEAP_TASK_TRACKING
  const std::uint32_t owner =
      task_handle != nullptr ? owner_of_handle(task_handle) : capheap_port_task_owner();
  if (g_pool_ready) {
    sweep_dead();
    if (const TaskRecord *t = find_task(owner)) count_for(*t, heaps, blocks);
  }
#else
  (void)task_handle;
#endif
  if (!alloc_n(s->heap_stat_start, heaps) || !alloc_n(s->alloc_stat_start, blocks)) {
    free_array(s->heap_stat_start);
    free_array(s->alloc_stat_start);
    s->heap_stat_start = nullptr;
    s->alloc_stat_start = nullptr;
    return ESP_FAIL;
  }
  s->heap_count = heaps;
  s->alloc_count = blocks;
  return ESP_OK;
}

void heap_caps_free_single_task_stat_arrays(heap_single_task_stat_t *s) {
  if (s == nullptr) return;
  StatsLock lock;
  free_array(s->heap_stat_start);
  free_array(s->alloc_stat_start);
  s->heap_stat_start = nullptr;
  s->alloc_stat_start = nullptr;
  s->heap_count = 0;
  s->alloc_count = 0;
}

esp_err_t heap_caps_alloc_all_task_stat_arrays(heap_all_tasks_stat_t *s) {
  if (s == nullptr) return ESP_ERR_INVALID_ARG;
  s->stat_arr = nullptr;
  s->heap_stat_start = nullptr;
  s->alloc_stat_start = nullptr;
  s->task_count = 0;
  s->heap_count = 0;
  s->alloc_count = 0;
  std::size_t tasks = 0, heaps = 0, blocks = 0;
  StatsLock lock;
#if CAPHEAP_TASK_TRACKING
  if (g_pool_ready) {
    sweep_dead();
    for (const TaskRecord &t : g_tasks) {
      if (!t.used) continue;
      ++tasks;
      count_for(t, heaps, blocks);
    }
  }
#endif
  if (!alloc_n(s->stat_arr, tasks) || !alloc_n(s->heap_stat_start, heaps) ||
      !alloc_n(s->alloc_stat_start, blocks)) {
    free_array(s->stat_arr);
    free_array(s->heap_stat_start);
    free_array(s->alloc_stat_start);
    s->stat_arr = nullptr;
    s->heap_stat_start = nullptr;
    s->alloc_stat_start = nullptr;
    return ESP_FAIL;
  }
  s->task_count = tasks;
  s->heap_count = heaps;
  s->alloc_count = blocks;
  return ESP_OK;
}

void heap_caps_free_all_task_stat_arrays(heap_all_tasks_stat_t *s) {
  if (s == nullptr) return;
  StatsLock lock;
  free_array(s->stat_arr);
  free_array(s->heap_stat_start);
  free_array(s->alloc_stat_start);
  s->stat_arr = nullptr;
  s->heap_stat_start = nullptr;
  s->alloc_stat_start = nullptr;
  s->task_count = 0;
  s->heap_count = 0;
  s->alloc_count = 0;
}

// ================================================================================================
// Legacy snapshot
// ================================================================================================

size_t heap_caps_get_per_task_info(heap_task_info_params_t *p) {
  if (p == nullptr) return 0;
  std::size_t count = p->num_totals != nullptr ? *p->num_totals : 0;
  if (p->totals == nullptr) count = 0;
  if (count > p->max_totals) count = p->max_totals;
  for (std::size_t i = 0; i < count; ++i)
    for (std::size_t b = 0; b < NUM_HEAP_TASK_CAPS; ++b) {
      p->totals[i].size[b] = 0;
      p->totals[i].count[b] = 0;
    }
  heap_task_block_t *const blocks = p->blocks;
  const std::size_t max_blocks = blocks != nullptr ? p->max_blocks : 0;
  std::size_t written = 0;

  // The exclusion table (statistics arrays) is read under g_lock, like the statistics' walks.
  StatsLock lock;
  Registry &reg = registry();
  for (unsigned i = 0; i < reg.count(); ++i) {
    const HeapView v = reg.view(i);
    if (!v.registered || !v.heap || !v.heap.tracks_owner()) continue;
    const std::uint32_t caps = all_caps(v);
    std::size_t bucket = 0;
    while (bucket < NUM_HEAP_TASK_CAPS && (caps & static_cast<std::uint32_t>(p->mask[bucket])) !=
                                              static_cast<std::uint32_t>(p->caps[bucket]))
      ++bucket;
    if (bucket == NUM_HEAP_TASK_CAPS) continue;
    walk_used(i, [&](const BlockView &b, void *user) {
      const TaskHandle_t task = handle_of(b.owner);
      if (p->totals != nullptr) {
        std::size_t j = 0;
        while (j < count && p->totals[j].task != task)
          ++j;
        if (j == count && count < p->max_totals) {
          heap_task_totals_t &t = p->totals[count++];
          t.task = task;
          for (std::size_t k = 0; k < NUM_HEAP_TASK_CAPS; ++k) {
            t.size[k] = 0;
            t.count[k] = 0;
          }
        }
        if (j < count) {
          p->totals[j].size[bucket] += b.size;
          p->totals[j].count[bucket] += 1;
        }
      }
      if (written < max_blocks) {
        bool wanted = p->tasks == nullptr;
        for (std::size_t k = 0; !wanted && k < p->num_tasks; ++k)
          wanted = p->tasks[k] == task;
        if (wanted) {
          blocks[written].task = task;
          blocks[written].address = user;
          blocks[written].size = static_cast<std::uint32_t>(b.size);
          ++written;
        }
      }
      return true;
    });
  }
  if (p->num_totals != nullptr) *p->num_totals = count;
  return written;
}

}  // extern "C"
