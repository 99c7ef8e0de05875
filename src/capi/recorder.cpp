// recorder.cpp — the event recorder. (Placeholder until the recorder lands.)
#include "capi/events.hpp"
namespace capheap {
namespace capi {
void recorder_on_event(const AllocEvent &) noexcept {}
}  // namespace capi
}  // namespace capheap
