// capi_internal.hpp — what the layers above capi (the host simulator, tools, tests) may reach
// inside the C API: the global registry, the initialisation state and the address display mapping.
#ifndef CAPHEAP_CAPI_INTERNAL_HPP
#define CAPHEAP_CAPI_INTERNAL_HPP

#include <cstdint>

#include "capheap/caps.hpp"

namespace capheap {
namespace capi {

/// The registry behind every heap_caps_* function (hidden: a shared build of the library, such as
/// the malloc replacement, reaches it without a GOT load).
extern Registry g_registry __attribute__((visibility("hidden")));
inline Registry &registry() noexcept {
  return g_registry;
}

/// Maps a host address to the address the chip would show (identity unless the simulator had to
/// place a region elsewhere). Used by every printed report.
using DisplayMapper = std::uintptr_t (*)(std::uintptr_t host_address);
void set_display_mapper(DisplayMapper mapper) noexcept;
extern DisplayMapper g_mapper;
inline std::uintptr_t display_address(const void *p) noexcept {
  const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p);
  const DisplayMapper m = g_mapper;
  return m != nullptr ? m(a) : a;
}

/// Prints a failed validation as ESP-IDF's integrity check does ("CORRUPT HEAP: Bad head at ...
/// Expected 0x... got 0x..."), naming the heap. chip_addresses: print 32-bit chip addresses through
/// display_address (heap_caps_*), else host pointers with %p (multi_heap_*).
void print_corruption(const Validation &v, const void *heap, bool chip_addresses) noexcept;

/// The data address of the allocated block of h whose usable bytes contain p, or null (p in a
/// free block, a header or outside h); size (if not null) receives its usable bytes (0 if none).
/// O(n); the caller holds the heap's lock.
void *containing_block(Heap h, const void *p, std::size_t *size) noexcept;

/// The public walkers' view of h (heap_caps_walk, multi_heap_walk): fn(data, size, used, user) for
/// every block in address order until it returns false. A block whose size word is impossible
/// (below the minimum block or past the heap's end) is handed to fn as read — its data address and
/// the usable size its word gives — and the walk of h ends there, whatever fn returns: as in
/// ESP-IDF, where a walker callback is how an application sees such a corruption (test_walker.c,
/// "heap walker corrupted heap detection"). The caller holds the heap's lock.
using RawWalkFn = bool (*)(void *data, std::size_t size, bool used, void *user);
void walk_blocks(Heap h, RawWalkFn fn, void *user) noexcept;

/// Forgets every heap and every setting (failure callback, extmem limit, monitor), so that a new
/// heap_caps_init can run (the host simulator's deinit). Not thread-safe.
void reset() noexcept;

/// True once heap_caps_init has run.
bool initialised() noexcept;

/// What the last heap_caps_init made of the layout: Status::kOk, or Status::kNoMem when the layout
/// yields more heaps than CAPHEAP_MAX_HEAPS (the heaps past the table's end were left out, as
/// heap_caps_init cannot report it). reset() sets it back to kOk.
Status boot_status() noexcept;

}  // namespace capi
}  // namespace capheap

/// Defined by the host simulator (capheap::host); called on the first heap_caps_* use when
/// heap_caps_init has not run. Weak: without the simulator nothing happens.
extern "C" void capheap_host_autoinit(void) __attribute__((weak));

#endif  // CAPHEAP_CAPI_INTERNAL_HPP
