// task_info.cpp — per-task heap statistics (esp_heap_task_info.h). (Placeholder.)
#include "capi/events.hpp"
namespace capheap {
namespace capi {
void task_stats_on_event(const AllocEvent &, const Released &) noexcept {}
}  // namespace capi
}  // namespace capheap
