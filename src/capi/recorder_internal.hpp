// recorder_internal.hpp — seams into the recorder for tests: the drain's scan (to reproduce a race
// deterministically: a producer publishing while the drain scans the rings) and a count of the
// events that took the producers' general path (the single-threaded fast path must carry the rest).
#ifndef CAPHEAP_CAPI_RECORDER_INTERNAL_HPP
#define CAPHEAP_CAPI_RECORDER_INTERNAL_HPP

#include <cstddef>
#include <cstdint>

namespace capheap {
namespace capi {

/// Called by every merge scan of a drain just before it reads ring `ring`'s head (drain lock held;
/// the hook may record events, which never takes that lock). nullptr (the default) turns it off.
/// Not thread-safe: set it while no drain runs.
using RecorderScanHook = void (*)(std::size_t ring, void *user);
void recorder_set_scan_hook(RecorderScanHook hook, void *user) noexcept;

/// Events the producers' general path stored while the process was single-threaded, since the
/// program started (host builds with per-thread rings; 0 elsewhere). Not counted with several
/// threads, so that their recording pays nothing for this seam.
std::uint64_t recorder_general_events() noexcept;

}  // namespace capi
}  // namespace capheap

#endif  // CAPHEAP_CAPI_RECORDER_INTERNAL_HPP
