// capheap/heap.hpp — the C++ API of capheap's region allocator.
//
// A Heap turns one contiguous block of RAM into an allocator with O(1) allocate, deallocate,
// in-place reallocate and aligned allocation (a two-level segregated-fit engine; see
// docs/design.md). The control structure lives at the start of the region itself, so a Heap object
// is only a handle: copying it copies the reference, and the heap lives as long as its memory.
//
// The engine is not synchronised: callers serialise access (the C API's multi_heap_set_lock and the
// capabilities layer do that). Nothing here allocates, throws or prints; corruption found on the
// way goes to the port's fail hook (capheap_set_fail_hook), after which the operation is refused.
//
// Freestanding: usable with -ffreestanding -fno-exceptions -fno-rtti.
#ifndef CAPHEAP_HEAP_HPP
#define CAPHEAP_HEAP_HPP

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace capheap {

namespace detail {
struct Control;  // the in-region control structure (src/core/block_layout.hpp)
}  // namespace detail

/// Alignment granule of a heap: every pointer it returns and every block size is a multiple of it.
enum class Granule : std::uint8_t {
  kPlatformDefault = 0,  ///< alignof(max_align_t) on 64-bit builds, 4 on 32-bit ones (ESP-IDF's)
  k4 = 4,                ///< ESP-IDF-compatible
  k8 = 8,
  k16 = 16,
};

/// Heap poisoning (ESP-IDF's CONFIG_HEAP_POISONING_*), chosen per heap when it is created.
enum class Poisoning : std::uint8_t {
  kNone = 0,           ///< no canaries, no fill: the engine's own O(1) checks only
  kLight = 1,          ///< head canary 0xABBA1234 + requested size before the data, tail canary
                       ///< 0xBAAD5678 after it; checked on free, realloc and integrity checks
  kComprehensive = 2,  ///< light + free memory filled with 0xFE (verified when handed out and by
                       ///< integrity checks), new allocations filled with 0xCE
};

/// Options for Heap::create. Every default is the documented default.
struct HeapConfig {
  Granule granule = Granule::kPlatformDefault;
  Poisoning poisoning = Poisoning::kNone;
  /// Store the allocating task's owner word (capheap_port_task_owner) in every allocation, just
  /// before the data (ESP-IDF's CONFIG_HEAP_TASK_TRACKING): 4 more bytes per block.
  bool track_owner = false;
  /// Bytes just before `start` that belong to the heap's owner (0 or 8; the multi_heap C API keeps
  /// its lock pointer there). Corruption reports then name (start - reserved_prefix) as the heap.
  std::uint8_t reserved_prefix = 0;
};

/// Statistics of one heap, with the same meaning as ESP-IDF's multi_heap_info_t (see multi_heap.h).
struct HeapInfo {
  std::size_t total_free_bytes = 0;
  std::size_t total_allocated_bytes = 0;
  std::size_t largest_free_block = 0;
  std::size_t minimum_free_bytes = 0;
  std::size_t allocated_blocks = 0;
  std::size_t free_blocks = 0;
  std::size_t total_blocks = 0;
};

/// Why validate() rejected a heap. Stable numbering (reported in diagnostics).
enum class Fault : std::uint8_t {
  kNone = 0,
  kBadControl,        ///< control structure magic or configuration damaged
  kBadBlockSize,      ///< a block size is zero, unaligned, below the minimum or runs past the end
  kBadPrevFreeFlag,   ///< a block's "previous is free" flag disagrees with the previous block
  kAdjacentFree,      ///< two free blocks touch (coalescing invariant broken)
  kBadFooter,         ///< a free block's trailing size copy disagrees with its header
  kBadSentinel,       ///< the end-of-heap marker is damaged
  kBadFreeLink,       ///< a free-list link points outside the heap or to a non-free block
  kBadFreeListClass,  ///< a free block sits in the list of another size class
  kBadBitmap,         ///< a bitmap bit disagrees with its list's emptiness
  kFreeListMismatch,  ///< the lists hold a different number of blocks than the physical chain
  kBadCounters,       ///< free-byte or block counters disagree with the heap's contents
  kBadHeadCanary,     ///< poisoning: the head canary of an allocation is not 0xABBA1234
  kBadTailCanary,     ///< poisoning: the tail canary after an allocation is not 0xBAAD5678
  kBadAllocSize,      ///< poisoning: the stored requested size does not fit the block
  kBadFreeFill,       ///< comprehensive poisoning: free memory is not all 0xFE
};

/// Human-readable text for a Fault (static storage).
const char *fault_text(Fault fault) noexcept;

/// Result of Heap::validate(): ok, or the first bad block (its data address) and why.
struct Validation {
  Fault fault = Fault::kNone;
  const void *block = nullptr;  ///< data address of the first bad block, or the control structure
  const void *at = nullptr;     ///< exact address of the bad word or byte (canaries, fill, sizes)
  /// Block faults: the data address of the block walked just before `block` (the one whose size
  /// or link led there), or null. A damaged size sends a walk into the middle of a later block:
  /// then this names the culprit.
  const void *previous = nullptr;
  std::uint32_t expected = 0;  ///< for canary, size and fill faults: what should have been there
  std::uint32_t found = 0;     ///< ... and what was
  constexpr bool ok() const noexcept { return fault == Fault::kNone; }
  constexpr explicit operator bool() const noexcept { return ok(); }
};

/// One physical block as seen by walk(): data address, usable bytes, allocated or not.
struct BlockView {
  void *data = nullptr;  ///< the engine's data address (block header + 4)
  std::size_t size = 0;  ///< the engine's usable bytes (block size - 4)
  bool used = false;
  void *user = nullptr;  ///< used blocks: the pointer the application holds (data + decoration)
  std::size_t requested = 0;  ///< used blocks: bytes the application may use at `user`
                              ///< (poisoning: exactly the size it asked for)
  std::uint32_t owner = 0;    ///< used blocks of an owner-tracking heap: the owner word
};

/// Result of one Heap::validate_step call.
struct StepResult {
  Validation validation;        ///< ok, or the first problem found in this step
  std::size_t visited = 0;      ///< blocks examined in this step (<= max_blocks)
  bool cycle_complete = false;  ///< the step reached the end of the heap (the next one restarts)
};

/// Walk callback: return false to stop.
using WalkFn = bool (*)(const BlockView &block, void *user);

/// Handle to a heap laid over one region.
///
/// Precondition of the operations that allocate, free or resize (allocate, allocate_aligned,
/// deallocate, allocate_from, deallocate_to, reallocate, verify_live): a handle returned by
/// create() or attach() that is not null. Their O(1) paths do not test for a null handle (check
/// the result of create() or attach() once); the queries below return 0 (or an empty result) on
/// a null handle.
class Heap {
 public:
  /// A null handle (operator bool is false).
  constexpr Heap() noexcept = default;

  /// Creates a heap over [start, start + size).
  /// Effects: writes the control structure (sized to the region) at `start` and one free block over
  ///   the rest (comprehensive poisoning: fills that block with 0xFE). Returns: the handle, or a
  ///   null handle if and only if start is null or not 4-byte aligned, the granule is not
  ///   4/8/16/default, reserved_prefix is not 0 or 8, poisoning is not a Poisoning value, poisoning
  ///   or track_owner is asked of a build without decoration support (CAPHEAP_DECORATION=OFF), or
  ///   the region cannot hold the control structure plus one minimum block (region sizes above
  ///   4 GiB - 64 use only their first 4 GiB - 64 bytes). Nothing is written when it fails.
  /// Complexity: O(log size); O(size) with comprehensive poisoning. Thread safety: the region must
  ///   be private to the caller.
  static Heap create(void *start, std::size_t size, const HeapConfig &config = {}) noexcept;

  /// Adopts an already-created heap from its start address (what create() returned .start()).
  /// Returns a null handle if no intact control structure is found there. O(1).
  static Heap attach(void *start) noexcept;

  constexpr explicit operator bool() const noexcept { return control_ != nullptr; }
  constexpr bool operator==(const Heap &other) const noexcept { return control_ == other.control_; }
  constexpr bool operator!=(const Heap &other) const noexcept { return control_ != other.control_; }

  /// Allocates `size` bytes aligned to the granule from the head of the request's own size class
  /// if that block is large enough, else from the head of the first non-empty larger class (all
  /// of whose blocks fit). Returns null if size is 0 or neither can hold it; a fitting block
  /// behind the head of the own class is not looked at (design.md 2.4), so every size up to
  /// largest_free_block() succeeds and a larger one fails. O(1).
  void *allocate(std::size_t size) noexcept;

  /// Allocates `size` bytes such that (result + offset) is a multiple of `alignment`. Looks at up
  /// to 4 blocks of the request's own size class (best fit) before the first non-empty larger
  /// class, so it may succeed above largest_free_block() (the bound of allocate()), never above
  /// the largest free block's usable bytes.
  /// Returns null if size is 0, alignment is 0 or not a power of two, offset is not a multiple of
  /// 4, no address in this granule can satisfy it, alignment exceeds the heap's span (whatever
  /// the addresses, so a host test answers as the device would), or no block it looks at is large
  /// enough. O(1).
  void *allocate_aligned(std::size_t size, std::size_t alignment, std::size_t offset = 0) noexcept;

  /// Frees p (null: no-op). A pointer that is not a live block of this heap is reported through the
  /// fail hook and ignored. Coalesces immediately. O(1).
  void deallocate(void *p) noexcept;

  /// allocate(size) and deallocate(p) of heap `h`, taken by value: the handle travels in a
  /// register, so a caller that has just loaded it pays no store and reload. Same contracts.
  static void *allocate_from(Heap h, std::size_t size) noexcept;
  static void deallocate_to(Heap h, void *p) noexcept;

  /// Resizes p: null p allocates; size 0 frees and returns null; shrinks in place or grows into a
  /// free successor in place, else moves within this heap (copying min(old usable, size) bytes).
  /// The low-water mark follows the net change (old block - new block), also when it moves.
  /// Returns null on failure with p untouched. O(1) plus the copy.
  void *reallocate(void *p, std::size_t size) noexcept;

  /// The O(1) checks reallocate() makes on p before changing anything (a live block of this heap,
  /// neighbours that agree with it, intact canaries and size with poisoning), reporting a failure
  /// through the fail hook exactly as reallocate() would. True if p may be reallocated. Lets a
  /// caller that may move p elsewhere refuse a bad pointer before allocating. O(1).
  bool verify_live(void *p) noexcept;

  /// Usable bytes of the live block at p (0 for null or a pointer that is not a live block). O(1).
  std::size_t usable_size(const void *p) const noexcept;

  /// ESP-IDF's allocated size of the live block at p (multi_heap_get_allocated_size,
  /// heap_caps_get_allocated_size): usable_size(p), except on a poisoned heap the block less its
  /// header and decoration, which is up to 3 bytes more than requested (the first bytes of the
  /// unaligned tail canary; usable_size() stays the bytes that may be written). 0 as usable_size.
  /// O(1).
  std::size_t allocated_size(const void *p) const noexcept;

  /// Total bytes of the block holding the allocation p: the engine's usable size plus its 4-byte
  /// header (decoration included). O(1).
  std::size_t block_size(const void *p) const noexcept;

  /// True if p lies inside this heap's region (not necessarily at a block). O(1).
  bool contains(const void *p) const noexcept;

  /// Statistics (O(1): every figure is a maintained counter or a bounded lookup).
  HeapInfo info() const noexcept;
  std::size_t free_bytes() const noexcept;
  std::size_t minimum_free_bytes() const noexcept;
  /// Largest L with allocate(L) succeeding now; allocate(L + granule) fails. O(1).
  std::size_t largest_free_block() const noexcept;
  /// Sets the low-water mark to the current free size; returns the previous mark as
  /// minimum_free_bytes() reported it (decorated heaps: without one allocation's decoration). O(1).
  std::size_t reset_minimum_free_bytes() noexcept;
  /// Low-water mark := min(mark, value), value in minimum_free_bytes()'s units: afterwards
  /// minimum_free_bytes() is min(its previous value, value). O(1).
  void restore_minimum_free_bytes(std::size_t value) noexcept;

  /// Full O(n) cross-check of the physical chain, the free lists, both bitmap levels and the
  /// counters. Allocates nothing. Returns the first bad block and why.
  Validation validate() const noexcept;

  /// Incremental check: examines at most max_blocks blocks (at least 1) from the heap's check
  /// position (kept in the control structure), as validate() does for each (header, neighbours'
  /// flags, free-list links and class, footer, canaries, free fill), and moves the position on.
  /// On reaching the end it runs invariants_hold() and restarts at the first block next time.
  /// Changes between steps are safe: splitting a block leaves the position on a block boundary and
  /// merging a block away moves the position back to the merged block, so a full cycle visits
  /// every block that exists throughout it (blocks created behind the position wait for the next
  /// cycle). Totals (free bytes, counts) are cross-checked only by validate(). O(max_blocks), plus
  /// the bytes of visited free blocks with comprehensive poisoning.
  StepResult validate_step(std::size_t max_blocks) noexcept;

  /// Moves the incremental check back to the first block (a new cycle starts at the next step).
  /// O(1).
  void restart_validate_step() noexcept;

  /// O(1) self-test of counters, bitmaps, the sentinel and the first block.
  bool invariants_hold() const noexcept;

  /// The heap's poisoning level and whether it stores owner words.
  Poisoning poisoning() const noexcept;
  bool tracks_owner() const noexcept;
  /// Owner word of the live allocation at p (a pointer allocate() returned); 0 if the heap does
  /// not track owners or p is not a live block. O(1).
  std::uint32_t owner_of(const void *p) const noexcept;
  /// Bytes of decoration (pad, canaries, owner word) before the data of every allocation, and the
  /// total per allocation (before + tail canary).
  std::size_t decoration_before() const noexcept;
  std::size_t decoration_total() const noexcept;

  /// Visits every block in address order until fn returns false. O(n).
  void walk(WalkFn fn, void *user) const noexcept;

  /// Calls f(const BlockView&) -> bool for every block in address order until it returns false.
  template <class F>
  void for_each_block(F &&f) const noexcept {
    using Fn = std::remove_reference_t<F>;
    walk([](const BlockView &b, void *u) -> bool { return (*static_cast<Fn *>(u))(b); },
         const_cast<void *>(static_cast<const void *>(&f)));
  }

  /// Region start (the control structure) and the granule.
  void *start() const noexcept;
  std::size_t granule() const noexcept;
  /// Bytes of the region in use by the heap (control, blocks and end marker).
  std::size_t region_size() const noexcept;
  /// Bytes taken by the control structure (the fixed cost of this heap).
  std::size_t control_size() const noexcept;

  /// Internal access for the C API and tools (src/core/block_layout.hpp).
  detail::Control *control() const noexcept { return control_; }
  static Heap from_control(detail::Control *control) noexcept { return Heap(control); }

 private:
  constexpr explicit Heap(detail::Control *control) noexcept : control_(control) {}
  detail::Control *control_ = nullptr;
};

}  // namespace capheap

#endif  // CAPHEAP_HEAP_HPP
