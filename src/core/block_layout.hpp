// block_layout.hpp — the one declaration of capheap's in-region memory layout.
//
// Every part of capheap that looks at heap memory (the engine, the C API, the tests, the tools)
// uses this header; nothing re-declares these structures.
//
// ## Map of a region
//
//   start (4-byte aligned)
//   |
//   v
//   +------------------+-------------------------+---------------+-----+----------+----------+----+
//   | Control (44 B)   | heads[L]                | class_bits[W] | pad | block 0  | block 1  |....|
//   +------------------+-------------------------+---------------+-----+----------+----------+----+
//   ^ offset 0          u32 offsets, 0 = empty    u32 each              ^ first               ^ end
//                       L = F << sl_log2 lists    W = ceil(L / 32)                (sentinel header)
//
// Every position inside a region is a 32-bit byte offset from `start`. Offsets and sizes are the
// same on a 32-bit MCU and a 64-bit host, so a heap's layout, overhead and fragmentation are
// identical. Offset 0 is the control structure, so 0 doubles as "no block" in free-list links.
//
// ## A block
//
//   used block                               free block
//   +0   header: size | flags                 +0       header: size | kFree | flags
//   +4   data ... (returned pointer)          +4       next_free (offset, 0 = none)
//   ...                                       +8       prev_free (offset, 0 = none)
//   +size-1                                   ...      (stale bytes)
//                                             +size-4  footer: size (copy of the header's size)
//
// - `size` is the whole block including its 4-byte header: the distance to the next header. It is a
//   multiple of the granule G (4, 8 or 16) and at least kMinBlockBytes (16), so the low two bits of
//   the header are free for flags. A block's data starts at header + 4 and is G-aligned; hence
//   every header sits at an address that is 4 below a multiple of G.
// - The usable size of an allocated block is size - 4: the per-block overhead is one 32-bit word.
// - kFree: this block is free. kPrevFree: the physically previous block is free, so the word just
//   before this header is that block's footer (its size), which is how free() finds the previous
//   block in O(1) without storing a back pointer in used blocks (the boundary-tag idea).
// - Free blocks are never adjacent (immediate coalescing). The last header of the region, at `end`,
//   is a sentinel: size 0, not free, so walks and coalescing stop there.
//
// ## Decoration (poisoning and owner words; Control::debug, chosen when the heap is created)
//
// With poisoning or owner tracking, every allocation's engine block carries extra bytes around the
// application's data ("decoration"); the pointer handed out is data + head_bytes:
//
//   +0   header: size | flags                (engine)
//   +4   pad (only when the granule is 8 or 16: head_bytes is rounded up to the granule)
//        head canary 0xABBA1234              (poisoning)        = user - 8 - owner bytes
//        requested size (u32)                (poisoning)        = user - 4 - owner bytes
//        owner word (u32)                    (owner tracking)   = user - 4
//   user application data (requested bytes)
//        tail canary 0xBAAD5678, stored bytewise (poisoning; may be unaligned) = user + requested
//        slack up to the block end
//
// With granule 4 the head is 8 (poisoning), 4 (owner) or 12 (both) bytes: ESP-IDF's layout, with
// its 12 bytes of poisoning overhead. Comprehensive poisoning keeps every byte of a free block
// other than its header, links and footer at 0xFE, and fills new allocations with 0xCE.
//
// ## Size classes (two-level segregated fit, after Masmano et al., "TLSF: a new dynamic memory
// allocator for real-time systems", ECRTS 2004)
//
// Free blocks are kept in LIFO lists, one per size class. Classes are numbered by a flat index,
// (first level << sl_log2) + second level, which orders them by size. One bit per class (bit i of
// class_bits[i / 32]) marks the non-empty lists, and Control::word_bitmap has bit w set iff
// class_bits[w] != 0, so the first non-empty class above any class is found with two
// count-trailing-zeros, using only shifts by constants (where a bitmap per first level would
// shift by sl_log2).
// - SL = 1 << sl_log2 second-level classes per first level (sl_log2 0..5, chosen from the
//   region size so that small regions do not pay for a large table).
// - Linear row: when SL * G > 16, block sizes below T = SL * G ("small_log2" = log2 T) go to first
//   level 0 with one class per granule step (exact sizes). Otherwise there is no linear row and
//   small_log2 is 4 (no block is smaller than 16).
// - Sizes b >= T: with m = floor(log2 b), first level = m - fl_shift and second level = the next
//   sl_log2 bits of b below its top bit. fl_shift is small_log2 - 1 with a linear row, else 4.
//
// Allocation takes the head of the request's own class when it fits (aligned requests: the tightest
// of up to kFitScan entries) and otherwise the head of the first non-empty larger class, whose
// blocks all fit. See design.md 2.4.
#ifndef CAPHEAP_CORE_BLOCK_LAYOUT_HPP
#define CAPHEAP_CORE_BLOCK_LAYOUT_HPP

#include <cstddef>
#include <cstdint>

namespace capheap {
namespace detail {

using u32 = std::uint32_t;

// ---- Strong types -------------------------------------------------------------------------------

/// Byte offset of a position from the region start.
struct Offset {
  u32 value;
  constexpr explicit Offset(u32 v = 0) noexcept : value(v) {}
  constexpr bool is_null() const noexcept { return value == 0; }
  friend constexpr bool operator==(Offset a, Offset b) noexcept { return a.value == b.value; }
  friend constexpr bool operator!=(Offset a, Offset b) noexcept { return a.value != b.value; }
};

/// Whole size of a block in bytes (header included).
struct BlockBytes {
  u32 value;
  constexpr explicit BlockBytes(u32 v = 0) noexcept : value(v) {}
};

/// A size class: first-level and second-level index.
struct SizeClass {
  u32 fl;
  u32 sl;
};

// ---- Constants ----------------------------------------------------------------------------------

constexpr u32 kHeaderBytes = 4;     ///< one 32-bit header word per block
constexpr u32 kMinBlockBytes = 16;  ///< header + next + prev + footer of a free block
constexpr u32 kFree = 1u;           ///< header flag: this block is free
constexpr u32 kPrevFree = 2u;       ///< header flag: the previous block is free
constexpr u32 kFlagMask = 3u;
constexpr u32 kSizeMask = ~kFlagMask;
constexpr std::uint8_t kControlMagic = 0xC9u;
constexpr u32 kMaxSlLog2 = 5;   ///< SL <= 32 so a second-level bitmap is one u32
constexpr u32 kFitScan = 4;     ///< own-class entries an aligned allocation examines (best fit)
constexpr u32 kMallocScan = 1;  ///< own-class entries a plain allocation examines (the head)
/// Blocks of at least this many bytes are carved from the high end of the free block found (the
/// free rest stays at its low end), except a realloc's move: large buffers then collect at the
/// high ends and leave the low ends to small blocks (design.md 2.4).
constexpr u32 kHighCarveBytes = 12288;
/// Largest region capheap manages (offsets are 32-bit; 64 bytes of slack keep every sum in range).
constexpr std::size_t kMaxRegionBytes = 0xFFFFFFC0u;

// Offsets of a free block's fields from its header.
constexpr u32 kNextFreeField = 4;
constexpr u32 kPrevFreeField = 8;

// ---- Control structure --------------------------------------------------------------------

/// The heap's control structure at offset 0 of its region. Followed in memory by
/// `u32 heads[fl_count << sl_log2]` and `u32 class_bits[bitmap_words(fl_count, sl_log2)]`.
struct Control {
  std::uint8_t magic;         ///< kControlMagic
  std::uint8_t debug;         ///< decoration: kDebugPoisonMask level | kDebugOwner (0 = none)
  std::uint8_t granule_log2;  ///< 2, 3 or 4
  std::uint8_t sl_log2;       ///< 0..kMaxSlLog2
  std::uint8_t fl_count;      ///< number of first levels (1..32)
  std::uint8_t fl_shift;      ///< first level = floor(log2 size) - fl_shift for sizes >= small
  std::uint8_t small_log2;    ///< sizes below 1 << small_log2 use the linear row (first level 0)
  std::uint8_t prefix_bytes;  ///< bytes the heap's owner keeps just before offset 0 (0 or 8);
                              ///< reports name (control - prefix_bytes) as the heap
  u32 first;                  ///< offset of the first block header
  u32 end;                    ///< offset of the sentinel header
  u32 free_bytes;             ///< sum of the sizes of free blocks (headers included)
  u32 min_free_bytes;         ///< low-water mark of free_bytes
  u32 free_blocks;            ///< number of free blocks
  u32 used_blocks;            ///< number of allocated blocks
  u32 word_bitmap;            ///< bit w set iff class_bits[w] != 0
  u32 check_cursor;           ///< header offset where the next incremental check step starts
                              ///< (0 = the first block); always a block boundary (see
                              ///< Heap::validate_step: merges move it back to the merged block)
  u32 geometry_check;         ///< geometry_word() of the fields above that never change after
                              ///< creation (bytes 0-7, first, end): lets a check blame a damaged
                              ///< control structure instead of the blocks it mis-describes
};

static_assert(sizeof(Control) == 44, "Control must stay 44 bytes on every target");
static_assert(alignof(Control) == 4, "Control needs only 4-byte alignment");
static_assert(sizeof(u32) == kHeaderBytes, "a header is one 32-bit word");
static_assert(kMinBlockBytes == kHeaderBytes + 2 * sizeof(u32) + sizeof(u32),
              "a free block holds header, two links and a footer");
static_assert((kMinBlockBytes & kFlagMask) == 0, "block sizes leave the flag bits free");
static_assert((1u << kMaxSlLog2) <= 32, "a second-level bitmap must fit a u32");

/// Words of the class bitmap for a configuration (one bit per size class).
constexpr u32 bitmap_words(u32 fl_count, u32 sl_log2) noexcept {
  return ((fl_count << sl_log2) + 31u) / 32u;
}

/// Bytes of the control structure for a configuration (Control + list heads + class bitmap).
constexpr u32 control_bytes(u32 fl_count, u32 sl_log2) noexcept {
  return static_cast<u32>(sizeof(Control)) + 4u * (fl_count << sl_log2) +
         4u * bitmap_words(fl_count, sl_log2);
}

// ---- Decoration constants ------------------------------------------------------------------

constexpr std::uint8_t kDebugPoisonMask = 3u;  ///< Control::debug bits 0-1: Poisoning level
constexpr std::uint8_t kDebugOwner = 4u;       ///< Control::debug bit 2: owner words
constexpr u32 kHeadCanary = 0xABBA1234u;
constexpr u32 kTailCanary = 0xBAAD5678u;
constexpr unsigned char kFillFree = 0xFEu;
constexpr unsigned char kFillAlloc = 0xCEu;
constexpr u32 kPoisonHeadBytes = 8;  ///< head canary + requested size
constexpr u32 kPoisonTailBytes = 4;
constexpr u32 kOwnerBytes = 4;
/// First byte of a free block's data that comprehensive poisoning keeps at kFillFree (after the
/// header's two free-list links); the last 4 bytes (footer) are excluded too.
constexpr u32 kFreeFillStart = 12;

/// Bytes of decoration before the application's data for a debug byte and granule.
constexpr u32 head_bytes(std::uint8_t debug, u32 granule) noexcept {
  const u32 raw = ((debug & kDebugPoisonMask) != 0 ? kPoisonHeadBytes : 0u) +
                  ((debug & kDebugOwner) != 0 ? kOwnerBytes : 0u);
  return (raw + granule - 1) & ~(granule - 1);
}
/// Bytes of decoration after the application's data.
constexpr u32 tail_bytes(std::uint8_t debug) noexcept {
  return (debug & kDebugPoisonMask) != 0 ? kPoisonTailBytes : 0u;
}
static_assert(head_bytes(1, 4) + tail_bytes(1) == 12, "ESP-IDF's poisoning overhead is 12 bytes");
static_assert(head_bytes(kDebugOwner, 4) == 4 && head_bytes(1 | kDebugOwner, 4) == 12,
              "owner word layout (granule 4)");
static_assert(head_bytes(1 | kDebugOwner, 16) == 16 && head_bytes(kDebugOwner, 8) == 8,
              "heads keep the application's data granule-aligned");

/// Check word over the fields of Control fixed at creation. Any change of a single one of those
/// fields changes the result (each field enters through a bijection and the results are XORed).
inline u32 geometry_word(const Control *c) noexcept {
  u32 head;
  __builtin_memcpy(&head, c, sizeof head);
  u32 head2;
  __builtin_memcpy(&head2, reinterpret_cast<const unsigned char *>(c) + 4, sizeof head2);
  const auto rotl = [](u32 v, unsigned r) { return (v << r) | (v >> (32u - r)); };
  return ~(head ^ rotl(head2, 5) ^ rotl(c->first, 11) ^ rotl(c->end, 19)) ^ 0x5EEDC0DEu;
}

/// Allowed values of Control::prefix_bytes.
constexpr bool valid_prefix(std::uint32_t v) noexcept {
  return v == 0 || v == 8;
}

inline unsigned char *bytes_of(Control *c) noexcept {
  return static_cast<unsigned char *>(static_cast<void *>(c));
}
inline const unsigned char *bytes_of(const Control *c) noexcept {
  return static_cast<const unsigned char *>(static_cast<const void *>(c));
}

// ---- Raw access ---------------------------------------------------------------------------
// All heap metadata is read and written through these helpers: 4-byte-aligned 32-bit words at an
// offset from the control structure. memcpy keeps the accesses free of type-punning problems (user
// data may have been stored there with any type); compilers emit one aligned load or store.

inline u32 load_word(const Control *c, u32 off) noexcept {
  u32 v;
  __builtin_memcpy(&v, __builtin_assume_aligned(bytes_of(c) + off, 4), sizeof v);
  return v;
}
inline void store_word(Control *c, u32 off, u32 v) noexcept {
  __builtin_memcpy(__builtin_assume_aligned(bytes_of(c) + off, 4), &v, sizeof v);
}

inline u32 *list_heads(Control *c) noexcept {
  return static_cast<u32 *>(static_cast<void *>(bytes_of(c) + sizeof(Control)));
}
inline const u32 *list_heads(const Control *c) noexcept {
  return static_cast<const u32 *>(static_cast<const void *>(bytes_of(c) + sizeof(Control)));
}
inline u32 *class_bits(Control *c) noexcept {
  return list_heads(c) + (u32(c->fl_count) << c->sl_log2);
}
inline const u32 *class_bits(const Control *c) noexcept {
  return list_heads(c) + (u32(c->fl_count) << c->sl_log2);
}

inline u32 header_size(u32 header) noexcept {
  return header & kSizeMask;
}
inline bool header_is_free(u32 header) noexcept {
  return (header & kFree) != 0;
}
inline bool header_prev_free(u32 header) noexcept {
  return (header & kPrevFree) != 0;
}

/// Data pointer of the block whose header is at `off`.
inline void *data_of(Control *c, u32 off) noexcept {
  return bytes_of(c) + off + kHeaderBytes;
}
inline const void *data_of(const Control *c, u32 off) noexcept {
  return bytes_of(c) + off + kHeaderBytes;
}

/// The address that names this heap in reports: the start of its owner's region.
inline const void *heap_id(const Control *c) noexcept {
  return bytes_of(c) - c->prefix_bytes;
}

/// Granule in bytes.
inline u32 granule_of(const Control *c) noexcept {
  return 1u << c->granule_log2;
}

}  // namespace detail
}  // namespace capheap

#endif  // CAPHEAP_CORE_BLOCK_LAYOUT_HPP
