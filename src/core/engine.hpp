// engine.hpp — internal entry points shared by the engine's translation units.
//
// heap.cpp holds the undecorated ("raw") engine; decoration.cpp wraps it for heaps with poisoning
// or owner words (Control::debug != 0) and holds the integrity checks that look inside blocks.
// Heap's public methods dispatch on Control::debug, so heaps without decoration never leave the
// raw fast path.
#ifndef CAPHEAP_CORE_ENGINE_HPP
#define CAPHEAP_CORE_ENGINE_HPP

#include <cstddef>
#include <cstdint>

#include "capheap/heap.hpp"
#include "core/block_layout.hpp"

namespace capheap {
namespace detail {

// What the fail hook receives for a pointer that is not a block of the heap (also the operation's
// name: the reports of free and realloc differ).
inline constexpr char kFreeOfBadPointer[] = "free of a pointer that is not a block of this heap";
inline constexpr char kReallocOfBadPointer[] =
    "realloc of a pointer that is not a block of this heap";
inline constexpr char kDoubleFree[] = "double free (block is already free)";
inline constexpr char kReallocOfFreedBlock[] = "realloc of a freed block (block is already free)";

/// The reports of one operation on a pointer: it is not a live block of the heap, or its block is
/// already free. Passed as a whole so that a firmware image links only the texts of the operations
/// it calls.
struct OpTexts {
  const char *bad_pointer;
  const char *already_free;
};
inline constexpr OpTexts kFreeTexts{kFreeOfBadPointer, kDoubleFree};
inline constexpr OpTexts kReallocTexts{kReallocOfBadPointer, kReallocOfFreedBlock};

// ---- Raw engine (heap.cpp): blocks exactly as block_layout.hpp describes them -------------------
void *raw_allocate(Control *c, std::size_t size) noexcept;
void *raw_allocate_aligned(Control *c, std::size_t size, std::size_t alignment,
                           std::size_t offset) noexcept;
void raw_deallocate(Control *c, void *p) noexcept;
void *raw_reallocate(Control *c, void *p, std::size_t size) noexcept;
/// Usable bytes of the live engine block whose data is p (0 if p is not one).
std::size_t raw_usable_size(const Control *c, const void *p) noexcept;
/// Header offset of the live engine block whose data is p after the always-on O(1) checks, or 0
/// after reporting through the fail hook with `report_addr` and one of `op`'s texts.
u32 raw_checked_block(const Control *c, const void *p, const void *report_addr,
                      const OpTexts &op) noexcept;

// ---- Decoration (decoration.cpp) ----------------------------------------------------------------
/// The checks deco_reallocate makes before touching p (live block, neighbours, canaries and size),
/// reporting a failure through the fail hook. True if p may be reallocated.
bool deco_verify_live(Control *c, void *p) noexcept;
void *deco_allocate(Control *c, std::size_t size) noexcept;
void *deco_allocate_aligned(Control *c, std::size_t size, std::size_t alignment,
                            std::size_t offset) noexcept;
void deco_deallocate(Control *c, void *p) noexcept;
void *deco_reallocate(Control *c, void *p, std::size_t size) noexcept;
std::size_t deco_usable_size(const Control *c, const void *p) noexcept;
/// Fills a BlockView's user, requested and owner fields for the block at header offset blk.
void deco_view(const Control *c, u32 blk, BlockView &view) noexcept;
/// Checks one block's decoration (used: canaries and size; free: the fill). ok() if fine.
Validation deco_check_block(const Control *c, u32 blk) noexcept;
/// Prepares a new region for its decoration (comprehensive: fills free memory with 0xFE).
void deco_init(Control *c) noexcept;

}  // namespace detail
}  // namespace capheap

#endif  // CAPHEAP_CORE_ENGINE_HPP
