// heap_trace_internal.hpp — the heap tracer's recording entry points below the event seam, for
// tests that must reproduce exact records (device samples: fixed cycle counts and call stacks).
#ifndef CAPHEAP_CAPI_HEAP_TRACE_INTERNAL_HPP
#define CAPHEAP_CAPI_HEAP_TRACE_INTERNAL_HPP

#include <cstddef>
#include <cstdint>

namespace capheap {
namespace capi {

/// Records an allocation as if traced, with the given call stack (CONFIG_HEAP_TRACING_STACK_DEPTH
/// entries; nullptr = all zero) and record cycle count (stored as given: bit 0 is the CPU).
/// Does nothing unless tracing records allocations.
void trace_record_alloc(void *ptr, std::size_t size, void *const *callers,
                        std::uint32_t ccount) noexcept;

/// Records a free as if traced (callers as above). Does nothing while tracing is stopped.
void trace_record_free(void *ptr, void *const *callers) noexcept;

}  // namespace capi
}  // namespace capheap

#endif  // CAPHEAP_CAPI_HEAP_TRACE_INTERNAL_HPP
