// tlsf_model.hpp — a bench-only model of ESP-IDF multi_heap's memory behaviour (TLSF backend).
//
// TlsfModel is a real allocator over a caller-given region that places blocks exactly where
// ESP-IDF's multi_heap (v5.x: multi_heap.c on the espressif/tlsf per-pool configuration, a TLSF 3.1
// derivative) would place them on a 32-bit target, so that its fragmentation, and hence the
// smallest region that replays a trace, can be compared with capheap's (capheap_trace_replay's
// `esp_idf_model` column, docs/performance.md "ESP-IDF model"). Written from the facts in
// shared/reference/esp-idf-heap-spec.md §4.1-4.3 and the TLSF papers (Masmano, Ripoll, Crespo,
// Real: ECRTS 2004; SPE 2008); no ESP-IDF or TLSF code was used.
//
// The 32-bit layout is kept on any host: every header word, link and bitmap is a 32-bit word stored
// in the region (links are offsets from the region start), so a block occupies exactly the bytes
// it would on the device:
//
//   region:  [heap header 20][TLSF control C][size word of block 1][block 1 data ...]...[0-size
//   sentinel] block b (b = offset of its prev_phys word, the last word of the previous block):
//     b+0  prev_phys   valid only while the previous block is free (else it is that block's data)
//     b+4  size word   bytes of data | bit 0 this block free | bit 1 previous block free
//     b+8  data (user pointer); while free: next_free at b+8, prev_free at b+12
//     the next block's header is at b + 4 + size
//
// What is modelled: the pool configuration and control size, request adjustment, the two-level
// mapping, good-fit search, LIFO lists, splitting, immediate coalescing, realloc in place and by
// move, memalign with a leading free gap, multi_heap's 20-byte header and free / minimum-free
// counters. What is not: locking, poisoning, task tracking, heap_caps' selection among heaps,
// tlsf_malloc_addr, the ROM copy of TLSF, several pools per control structure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace capheap::bench {

/// The per-pool TLSF configuration of a pool of `pool_bytes` bytes (espressif/tlsf since 2022-10;
/// spec §4.1) and the size of its control structure.
struct TlsfConfig {
  std::uint32_t pool_bytes = 0;        ///< B: the bytes the configuration was sized for
  unsigned fl_max = 0;                 ///< bit length of B; adjusted requests must be < 2^fl_max
  unsigned sl_log2 = 0;                ///< 3 (B <= 16 KiB), 4 (<= 256 KiB) or 5
  unsigned fl_shift = 0;               ///< sl_log2 + 2
  unsigned fl_count = 0;               ///< fl_max - fl_shift + 1 first levels
  unsigned sl_count = 0;               ///< 2^sl_log2 second levels per first level
  std::uint32_t small_block_size = 0;  ///< 2^fl_shift: below it, first level 0, 4-byte classes
  std::uint32_t control_size = 0;      ///< 36 + 4 fl_count + 4 fl_count sl_count
};

/// The configuration for a pool of B bytes; fl_count 0 if B is too small for any (B < 2^fl_shift).
TlsfConfig tlsf_config(std::size_t pool_bytes);

/// A (first level, second level) free-list index.
struct TlsfIndex {
  unsigned fl = 0;
  unsigned sl = 0;
  bool operator==(const TlsfIndex &o) const { return fl == o.fl && sl == o.sl; }
};

/// The list a free block of `size` bytes is kept in (TLSF's insert mapping).
TlsfIndex tlsf_mapping_insert(const TlsfConfig &c, std::uint64_t size);

/// The size a search for `size` bytes starts from: sizes >= small_block_size rounded up to the
/// next second-level boundary ("good fit": every block of the list found then fits).
std::uint64_t tlsf_search_size(const TlsfConfig &c, std::uint64_t size);

class TlsfModel {
 public:
  // 32-bit target constants (spec §4.1, §4.2).
  static constexpr std::uint32_t kHeapHeader = 20;    ///< multi_heap's heap_t at the region start
  static constexpr std::uint32_t kAlign = 4;          ///< ALIGN_SIZE: sizes and addresses
  static constexpr std::uint32_t kBlockOverhead = 4;  ///< a used block's size word
  static constexpr std::uint32_t kHeaderSize = 16;    ///< prev_phys, size, next_free, prev_free
  static constexpr std::uint32_t kMinBlock = 12;      ///< header minus one pointer
  static constexpr std::uint32_t kPoolOverhead = 8;   ///< first size word + 0-size sentinel
  static constexpr std::uint32_t kControlFixed = 36;  ///< sizeof(control_t) without the arrays

  struct Options {
    /// memalign's search size. true (default): request + align + 16 rounded up to a multiple of
    /// the alignment, as TLSF 3.1's memalign (and espressif/tlsf's memalign_offs) computes it:
    /// the size with gap goes through the same request adjustment, aligned to `align` (checked in
    /// the public TLSF 3.1 sources, session 3; the spec states only the sum). false: the sum
    /// unrounded, the spec's wording (less waste on large alignments).
    bool round_aligned_search = true;
  };

  /// Counters and a physical walk's totals (multi_heap_get_info's inputs).
  struct Check {
    bool ok = true;
    std::string error;            ///< the first inconsistency found
    std::size_t used_blocks = 0;  ///< excluding the sentinel
    std::size_t free_blocks = 0;
    std::size_t used_bytes = 0;    ///< sum of used blocks' sizes (usable bytes)
    std::size_t free_bytes = 0;    ///< sum of free blocks' sizes
    std::size_t largest_free = 0;  ///< largest free block's size
  };

  TlsfModel() = default;
  TlsfModel(const TlsfModel &) = delete;
  TlsfModel &operator=(const TlsfModel &) = delete;
  TlsfModel(TlsfModel &&o) noexcept { *this = static_cast<TlsfModel &&>(o); }
  TlsfModel &operator=(TlsfModel &&o) noexcept;

  /// multi_heap_register over [region, region + size): false (and an unusable model) if the
  /// region is not 4-byte aligned, is 4 GiB or more, or cannot hold the heap header, the control
  /// structure, the pool overhead and one minimum block.
  bool create(void *region, std::size_t size, Options options);
  bool create(void *region, std::size_t size) { return create(region, size, Options{}); }
  explicit operator bool() const { return base_ != nullptr; }

  void *malloc(std::size_t size);
  void *calloc(std::size_t count, std::size_t size);
  void *realloc(void *p, std::size_t size);
  /// multi_heap_aligned_alloc: NULL unless align is a power of two; align <= 4 is a plain malloc.
  void *memalign(std::size_t align, std::size_t size);
  void free(void *p);

  /// multi_heap_get_allocated_size: the block's size (usable bytes).
  std::size_t usable_size(const void *p) const;

  /// tlsf_check + tlsf_check_pool: physical walk from the first block to the sentinel (sizes,
  /// flags, prev_phys links, no two adjacent free blocks, the end exactly where the pool ends),
  /// every list against the bitmaps and its mapping, the listed blocks against the walk's free
  /// blocks, and multi_heap's free counter against the walk.
  Check check() const;

  /// multi_heap_walk: calls fn(data offset from the region start, block size, used, user) for
  /// every block from the first to the one before the sentinel, until fn returns false.
  using WalkFn = bool (*)(std::size_t offset, std::size_t size, bool used, void *user);
  void walk(WalkFn fn, void *user) const;

  const TlsfConfig &config() const { return cfg_; }
  /// Bytes of TLSF's control structure.
  std::size_t control_size() const { return cfg_.control_size; }
  /// Offset of the first block's data from the region start (20 + control + 4).
  std::size_t first_data_offset() const { return first_ + 8; }
  /// Size of the one free block of a fresh heap.
  std::size_t initial_block_size() const { return initial_block_; }
  /// multi_heap_free_size / multi_heap_minimum_free_size.
  std::size_t free_size() const { return free_bytes_; }
  std::size_t minimum_free_size() const { return minimum_free_; }
  /// Bytes between the region start and p (for tests).
  std::size_t offset_of(const void *p) const {
    return static_cast<std::size_t>(static_cast<const unsigned char *>(p) - base_);
  }

 private:
  using u32 = std::uint32_t;
  static constexpr u32 kNull = 0;  ///< no block (offset 0 is the heap header, never a block)
  static constexpr u32 kFreeBit = 1;
  static constexpr u32 kPrevFreeBit = 2;

  u32 load(u32 off) const;
  void store(u32 off, u32 v);
  u32 size_word(u32 b) const { return load(b + 4); }
  u32 bsize(u32 b) const { return size_word(b) & ~u32{3}; }
  bool is_free(u32 b) const { return (size_word(b) & kFreeBit) != 0; }
  bool prev_is_free(u32 b) const { return (size_word(b) & kPrevFreeBit) != 0; }
  void set_size_word(u32 b, u32 size, bool free, bool prev_free) {
    store(b + 4, size | (free ? kFreeBit : 0) | (prev_free ? kPrevFreeBit : 0));
  }
  void set_prev_free_bit(u32 b, bool prev_free);
  u32 next_phys(u32 b) const { return b + 4 + bsize(b); }
  u32 head(unsigned fl, unsigned sl) const;
  void set_head(unsigned fl, unsigned sl, u32 b);
  u32 sl_bitmap(unsigned fl) const;
  void set_sl_bitmap(unsigned fl, u32 v);
  u32 fl_bitmap() const;
  void set_fl_bitmap(u32 v);

  void insert_free(u32 b);
  void remove_free(u32 b);
  u32 locate_free(std::uint64_t size);
  void *prepare_used(u32 b, u32 size);
  u32 split_tail(u32 b, u32 size, bool b_free);
  u32 absorb_next(u32 b);
  void note_alloc(u32 block_size);
  void *ptr_of(u32 b) const { return base_ + b + 8; }
  u32 block_of(const void *p) const {
    return static_cast<u32>(static_cast<const unsigned char *>(p) - base_) - 8;
  }
  std::uint64_t adjust(std::size_t size) const;

  unsigned char *base_ = nullptr;
  u32 size_ = 0;
  Options opt_;
  TlsfConfig cfg_;
  u32 control_ = 0;        ///< offset of the control structure
  u32 first_ = 0;          ///< first block (its size word is at first_ + 4)
  u32 sentinel_ = 0;       ///< the 0-size used block at the pool's end
  u32 initial_block_ = 0;  ///< size of the first free block of a fresh heap
  std::size_t free_bytes_ = 0;
  std::size_t minimum_free_ = 0;
  std::size_t counter_slack_ = 0;  ///< free counter - sum over free blocks of (size + 4)
};

}  // namespace capheap::bench
