// events.cpp — dispatch of allocation events to the debugging features (see events.hpp).

#include "capi/events.hpp"

#include "capi/capi_internal.hpp"

namespace capheap {
namespace capi {

#if CAPHEAP_WITH_EVENTS
std::uint32_t g_event_sinks = 0;
#endif

void set_event_sink(EventSink sink, bool on) noexcept {
#if CAPHEAP_WITH_EVENTS
  if (on)
    __atomic_fetch_or(&g_event_sinks, static_cast<std::uint32_t>(sink), __ATOMIC_ACQ_REL);
  else
    __atomic_fetch_and(&g_event_sinks, ~static_cast<std::uint32_t>(sink), __ATOMIC_ACQ_REL);
  // heap_caps_malloc's common path has no event check: the registry's allocate_then fast path is
  // held off while any sink is on (again if another sink changed meanwhile).
  bool held;
  do {
    held = __atomic_load_n(&g_event_sinks, __ATOMIC_ACQUIRE) != 0;
    registry().hold_then_path(held);
  } while ((__atomic_load_n(&g_event_sinks, __ATOMIC_ACQUIRE) != 0) != held);
#else
  (void)sink;
  (void)on;
#endif
}

Released capture_release_slow(void *ptr) noexcept {
  Released r;
  if (ptr == nullptr) return r;
  Registry &reg = registry();
  const capheap::HeapView v = reg.view_of(ptr);
  if (!v.heap) return r;
  const Heap heap = v.heap;
  // Under the heap's lock: a neighbour's free or allocation rewrites flag bits in this block's
  // header, which owner_of / block_size read.
  std::size_t block = 0;
  reg.with_heap_locked(v, [&] {
    r.owner = heap.owner_of(ptr);
    block = heap.block_size(ptr);
  });
  if (block < 4) return Released{};
  r.ptr = ptr;
  r.heap = v.start;
  r.bytes = task_bytes(heap, block - 4);
  return r;
}

void emit(const AllocEvent &event, const Released &released) noexcept {
#if CAPHEAP_WITH_EVENTS
  const std::uint32_t sinks = __atomic_load_n(&g_event_sinks, __ATOMIC_ACQUIRE);
  if (CAPHEAP_LIKELY(sinks == kSinkRecorder)) {  // the field configuration: straight through
    recorder_on_event(event);
    return;
  }
  if ((sinks & kSinkTaskStats) != 0) task_stats_on_event(event, released);
  if ((sinks & kSinkTrace) != 0) trace_on_event(event);
  if ((sinks & kSinkRecorder) != 0) recorder_on_event(event);
#else
  (void)event;
  (void)released;
#endif
}

}  // namespace capi
}  // namespace capheap
