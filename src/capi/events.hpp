// events.hpp — the one seam through which heap_caps_* reports allocations and frees to the
// debugging features: heap tracing (heap_trace.cpp), the event recorder (recorder.cpp) and per-task
// statistics (task_info.cpp).
//
// Every public allocation function emits exactly one event for what it did (a realloc that moved
// is one kRealloc event, not a malloc plus a free), after the fact for allocations and before the
// memory is released for frees, with the caller's return address. Internal compositions (calloc
// over malloc, the default policy's second attempt) emit nothing themselves.
//
// Cost when no feature is active: one relaxed load and a not-taken branch per call. Builds that
// define CAPHEAP_WITH_EVENTS=0 compile the seam out entirely.
#ifndef CAPHEAP_CAPI_EVENTS_HPP
#define CAPHEAP_CAPI_EVENTS_HPP

#include <cstddef>
#include <cstdint>

#include "capheap/caps.hpp"
#include "port/port.h"

#ifndef CAPHEAP_WITH_EVENTS
#define CAPHEAP_WITH_EVENTS 1
#endif
// ESP-IDF's weak esp_heap_trace_alloc_hook / _free_hook (heap_caps.cpp); 0: compiled out.
#ifndef CAPHEAP_USE_HOOKS
#define CAPHEAP_USE_HOOKS 0
#endif

namespace capheap {
namespace capi {

/// Consumers of events; a bit is set while that feature wants events.
enum EventSink : std::uint32_t {
  kSinkTrace = 1u,      ///< heap tracing is running
  kSinkRecorder = 2u,   ///< the event recorder is installed
  kSinkTaskStats = 4u,  ///< per-task statistics are being kept
};

enum class EventOp : std::uint8_t { kMalloc, kCalloc, kRealloc, kAlignedAlloc, kFree };

/// A successful allocation (kMalloc, kCalloc, kAlignedAlloc, kRealloc) or a free (kFree).
struct AllocEvent {
  EventOp op;
  void *ptr;              ///< the new block (kFree: the block being freed)
  void *old_ptr;          ///< kRealloc: the block given to realloc (may equal ptr); else null
  std::size_t size;       ///< requested bytes (kCalloc: n * size; kFree: 0)
  std::size_t alignment;  ///< kAlignedAlloc: the alignment; else 0
  std::uint32_t caps;     ///< the caps the successful attempt used (kFree: 0)
  void *caller;           ///< return address into the application
};

/// A block about to be released (free, or the source of a realloc), captured before the release.
struct Released {
  void *ptr = nullptr;      ///< user pointer (null: nothing captured)
  std::uintptr_t heap = 0;  ///< start of its heap (0: none)
  std::uint32_t owner = 0;  ///< owner word (0 when the heap does not track tasks)
  std::size_t bytes = 0;    ///< what task statistics count for the block (task_bytes)
};

#if CAPHEAP_WITH_EVENTS
extern std::uint32_t g_event_sinks
    __attribute__((visibility("hidden")));  // (hidden: no address load)
inline bool events_on() noexcept {
  return CAPHEAP_UNLIKELY(__atomic_load_n(&g_event_sinks, __ATOMIC_RELAXED) != 0);
}
#else
constexpr bool events_on() noexcept {
  return false;
}
#endif

/// Turns a sink on or off (thread-safe).
void set_event_sink(EventSink sink, bool on) noexcept;

/// Bytes a block of h with `usable` engine bytes counts for in the task-tracking API
/// (esp_heap_task_info.h, "Sizes"): ESP-IDF's allocated size of a block that holds the owner word,
/// i.e. the usable bytes less the poisoning decoration (canaries, stored size and their padding);
/// the owner word stays in. O(1).
inline std::size_t task_bytes(const Heap &h, std::size_t usable) noexcept {
  if (h.poisoning() == Poisoning::kNone) return usable;
  const std::size_t poison = h.decoration_total() - (h.tracks_owner() ? 4u : 0u);
  return usable > poison ? usable - poison : 0;
}

/// Describes the live block at ptr for a later release event (Released{} for null / unknown).
/// Only per-task statistics use it: while they are off it returns Released{} without the lookup.
Released capture_release_slow(void *ptr) noexcept;
inline Released capture_release(void *ptr) noexcept {
#if CAPHEAP_WITH_EVENTS
  if ((__atomic_load_n(&g_event_sinks, __ATOMIC_RELAXED) & kSinkTaskStats) == 0) return Released{};
  return capture_release_slow(ptr);
#else
  (void)ptr;
  return Released{};
#endif
}

/// Dispatch (call only when events_on()). `released` is what capture_release returned before a
/// kFree or kRealloc; for other ops it is empty.
void emit(const AllocEvent &event, const Released &released) noexcept;

// ---- Sink entry points, one set per feature (each defined in its feature's file) -------------
void trace_on_event(const AllocEvent &event) noexcept;
void recorder_on_event(const AllocEvent &event) noexcept;
/// The recorder alone (the field configuration): the same without an AllocEvent in memory.
void recorder_on_alloc(EventOp op, void *ptr, std::size_t size, std::size_t alignment,
                       std::uint32_t caps, void *caller) noexcept;
void recorder_on_free(void *ptr, void *caller) noexcept;
/// recorder_on_alloc(EventOp::kMalloc, p, size, 0, caps, caller), returning p (for a tail call).
void *recorder_on_malloc(void *p, std::size_t size, std::uint32_t caps, void *caller) noexcept;
/// heap_caps_malloc while events are on (heap_caps.cpp): the allocation, then its event or the
/// failure report; `tried` as in Registry::SlowHandler (0, or 1 + a record that refused already).
void *malloc_events(std::size_t size, Caps caps, unsigned tried, void *caller) noexcept;
#if CAPHEAP_THEN_TABLES
/// heap_caps_malloc's and heap_caps_free's miss handlers for the registry's allocate_then /
/// deallocate_then (heap_caps.cpp): whatever the inline fast path did not serve, with events.
void *heap_caps_malloc_miss(std::size_t size, Caps caps, void *caller) noexcept;
void heap_caps_free_miss(void *ptr, void *caller) noexcept;
/// The recorder's handlers, which the registry calls while it holds its fast paths off (events
/// on): when the recorder is the only sink, the first heap, the locked engine call and the event
/// in one chain of calls (the event stored inline); anything else goes to heap_caps_malloc_miss /
/// heap_caps_free_miss. recorder_held_malloc is allocate_then's Held handler (single-bit requests),
/// recorder_malloc serves the other requests for heap_caps.cpp's malloc_miss, recorder_free_miss is
/// deallocate_then's miss handler (the event of a non-null ptr, then the free).
void *recorder_held_malloc(Registry::Choice first, std::size_t size, void *caller,
                           Caps caps) noexcept;
void *recorder_malloc(Registry &reg, std::size_t size, Caps caps, void *caller) noexcept;
void recorder_free_miss(void *ptr, void *caller) noexcept;
#endif
/// Delivers every pending recorded event while the display mapping (set_display_mapper) is still
/// the one they were recorded under: the recorder stores host pointers and maps them when it
/// formats. Called before the mapping changes.
void recorder_before_remap() noexcept;

/// True if the recorder is the only sink (heap_caps_* then calls recorder_on_alloc / _free).
inline bool recorder_only() noexcept {
#if CAPHEAP_WITH_EVENTS
  return __atomic_load_n(&g_event_sinks, __ATOMIC_RELAXED) == kSinkRecorder;
#else
  return false;
#endif
}
void task_stats_on_event(const AllocEvent &event, const Released &released) noexcept;

}  // namespace capi
}  // namespace capheap

#endif  // CAPHEAP_CAPI_EVENTS_HPP
