// heap_trace.cpp — ESP-IDF heap tracing (esp_heap_trace.h). (Placeholder until tracing lands.)
#include "capi/events.hpp"
namespace capheap {
namespace capi {
void trace_on_event(const AllocEvent &) noexcept {}
}  // namespace capi
}  // namespace capheap
