// recorder_internal.hpp — a seam into the recorder's drain for tests that must reproduce a race
// deterministically (a producer publishing while the drain scans the rings).
#ifndef CAPHEAP_CAPI_RECORDER_INTERNAL_HPP
#define CAPHEAP_CAPI_RECORDER_INTERNAL_HPP

#include <cstddef>

namespace capheap {
namespace capi {

/// Called by every merge scan of a drain just before it reads ring `ring`'s head (drain lock held;
/// the hook may record events, which never takes that lock). nullptr (the default) turns it off.
/// Not thread-safe: set it while no drain runs.
using RecorderScanHook = void (*)(std::size_t ring, void *user);
void recorder_set_scan_hook(RecorderScanHook hook, void *user) noexcept;

}  // namespace capi
}  // namespace capheap

#endif  // CAPHEAP_CAPI_RECORDER_INTERNAL_HPP
