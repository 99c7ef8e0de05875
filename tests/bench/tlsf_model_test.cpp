// tlsf_model_test.cpp — exact values of the ESP-IDF multi_heap / TLSF model (bench/tlsf_model.hpp):
// pool configuration and control sizes, block placement and the minimum block, the split
// threshold, good-fit rounding, LIFO lists, coalescing, realloc in place and by move, memalign's
// leading gap, multi_heap's counters; then a randomised stress against the model's own walk
// (seed printed; CAPHEAP_TLSF_SEED=N repeats a run).

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <deque>
#include <iterator>
#include <map>
#include <random>
#include <utility>
#include <vector>

#include "tlsf_model.hpp"

namespace {

using capheap::bench::tlsf_config;
using capheap::bench::tlsf_mapping_insert;
using capheap::bench::tlsf_search_size;
using capheap::bench::TlsfConfig;
using capheap::bench::TlsfIndex;
using capheap::bench::TlsfModel;

/// A 4096-aligned, zeroed region (the replay's regions are 4096-aligned too).
struct Region {
  explicit Region(std::size_t n) : size(n) {
    mem = static_cast<unsigned char *>(std::aligned_alloc(4096, (n + 4095) / 4096 * 4096));
    std::memset(mem, 0, n);
  }
  ~Region() { std::free(mem); }
  Region(const Region &) = delete;
  Region &operator=(const Region &) = delete;
  std::size_t size;
  unsigned char *mem;
};

::testing::AssertionResult Valid(const TlsfModel &m) {
  const TlsfModel::Check c = m.check();
  if (c.ok) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << c.error;
}

// ---- Configuration -------------------------------------------------------------------------

TEST(TlsfConfig, ControlSizesOfTheSpec) {
  // Derived examples of spec §4.1 and §7.
  const TlsfConfig k256 = tlsf_config(256 * 1024);
  EXPECT_EQ(k256.fl_max, 19u);
  EXPECT_EQ(k256.sl_log2, 4u);
  EXPECT_EQ(k256.sl_count, 16u);
  EXPECT_EQ(k256.fl_shift, 6u);
  EXPECT_EQ(k256.fl_count, 14u);
  EXPECT_EQ(k256.small_block_size, 64u);
  EXPECT_EQ(k256.control_size, 988u);
  const TlsfConfig m4 = tlsf_config(4 * 1024 * 1024);
  EXPECT_EQ(m4.fl_max, 23u);
  EXPECT_EQ(m4.sl_count, 32u);
  EXPECT_EQ(m4.fl_count, 17u);
  EXPECT_EQ(m4.control_size, 2280u);
  EXPECT_EQ(tlsf_config(8 * 1024).control_size, 396u);  // "~396 B for an 8 KiB pool"
}

TEST(TlsfConfig, SecondLevelThresholds) {
  EXPECT_EQ(tlsf_config(16 * 1024).sl_log2, 3u);
  EXPECT_EQ(tlsf_config(16 * 1024 + 4).sl_log2, 4u);
  EXPECT_EQ(tlsf_config(256 * 1024).sl_log2, 4u);
  EXPECT_EQ(tlsf_config(256 * 1024 + 4).sl_log2, 5u);
  // 16 KiB: bit length 15, FL_shift 5, 11 first levels of 8: 36 + 44 + 352.
  EXPECT_EQ(tlsf_config(16 * 1024).control_size, 432u);
  // 300 000 bytes: bit length 19, SL 32, FL_shift 7, 13 first levels: 36 + 52 + 1664.
  EXPECT_EQ(tlsf_config(300000).control_size, 1752u);
  // The largest configuration stays within the on-target test's budget (HEAP_OVERHEAD_MAX 3248)
  // for ESP32-sized heaps (up to 4 MiB of PSRAM): 20 + control + 8.
  EXPECT_LE(20 + tlsf_config(4 * 1024 * 1024 - 20).control_size + 8, 3248u);
}

TEST(TlsfConfig, Mapping) {
  const TlsfConfig c = tlsf_config(256 * 1024);  // SL 16, small blocks below 64
  EXPECT_EQ(tlsf_mapping_insert(c, 12), (TlsfIndex{0, 3}));
  EXPECT_EQ(tlsf_mapping_insert(c, 60), (TlsfIndex{0, 15}));
  EXPECT_EQ(tlsf_mapping_insert(c, 64), (TlsfIndex{1, 0}));
  EXPECT_EQ(tlsf_mapping_insert(c, 68), (TlsfIndex{1, 1}));
  EXPECT_EQ(tlsf_mapping_insert(c, 127), (TlsfIndex{1, 15}));
  EXPECT_EQ(tlsf_mapping_insert(c, 128), (TlsfIndex{2, 0}));
  EXPECT_EQ(tlsf_mapping_insert(c, 136), (TlsfIndex{2, 1}));
  EXPECT_EQ(tlsf_mapping_insert(c, 143), (TlsfIndex{2, 1}));
  EXPECT_EQ(tlsf_mapping_insert(c, 144), (TlsfIndex{2, 2}));
  EXPECT_EQ(tlsf_mapping_insert(c, (1u << 18) + 1), (TlsfIndex{13, 0}));
  // Good fit: below the small block size nothing is rounded; above, to the next SL boundary.
  EXPECT_EQ(tlsf_search_size(c, 60), 60u);
  EXPECT_EQ(tlsf_search_size(c, 64), 67u);    // 64 + 4 - 1: class (1,0) holds only 64..67
  EXPECT_EQ(tlsf_search_size(c, 140), 147u);  // 140 + 8 - 1 -> class (2,2)
  EXPECT_EQ(tlsf_mapping_insert(c, tlsf_search_size(c, 136)), (TlsfIndex{2, 1}));
  EXPECT_EQ(tlsf_mapping_insert(c, tlsf_search_size(c, 137)), (TlsfIndex{2, 2}));
}

// ---- Layout --------------------------------------------------------------------------------

TEST(TlsfModel, CreateLayout) {
  Region r(256 * 1024 + 20);
  TlsfModel m;
  ASSERT_TRUE(m.create(r.mem, r.size));
  EXPECT_EQ(m.control_size(), 988u);
  EXPECT_EQ(m.first_data_offset(), 20u + 988u + 4u);
  EXPECT_EQ(m.initial_block_size(), 256u * 1024u - 988u - 8u);
  EXPECT_EQ(m.free_size(), 256u * 1024u - 988u);  // multi_heap: region - 20 - control
  EXPECT_TRUE(Valid(m));
  // Too small for header + control + pool overhead + a minimum block; misaligned.
  Region tiny(64);
  EXPECT_FALSE(m.create(tiny.mem, 20));
  EXPECT_FALSE(m.create(tiny.mem + 2, 60));
  const std::size_t need = 20 + tlsf_config(200).control_size + 8 + 12;  // B = 200: control 180
  Region small(need);
  EXPECT_TRUE(m.create(small.mem, need));
  EXPECT_EQ(m.initial_block_size(), 12u);
  EXPECT_FALSE(m.create(small.mem, need - 4));
}

TEST(TlsfModel, MinimumBlockAndPlacement) {
  Region r(8192);
  TlsfModel m;
  ASSERT_TRUE(m.create(r.mem, r.size));
  const std::size_t first = m.first_data_offset();
  void *a = m.malloc(1);
  void *b = m.malloc(12);
  void *c = m.malloc(13);
  void *d = m.malloc(2);
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(m.offset_of(a), first);
  EXPECT_EQ(m.usable_size(a), 12u);       // round up to 4, at least 12
  EXPECT_EQ(m.offset_of(b), first + 16);  // 12 + one size word
  EXPECT_EQ(m.usable_size(c), 16u);
  EXPECT_EQ(m.offset_of(c), first + 32);
  EXPECT_EQ(m.offset_of(d), first + 52);
  EXPECT_EQ(m.malloc(0), nullptr);
  EXPECT_EQ(m.malloc(SIZE_MAX), nullptr);
  EXPECT_EQ(m.malloc(8192), nullptr);
  // Adjusted size must stay below 2^fl_max (8172 bytes -> fl_max 13: 8192).
  EXPECT_EQ(m.config().fl_max, 13u);
  EXPECT_TRUE(Valid(m));
}

TEST(TlsfModel, SplitThreshold) {
  Region r(8192);  // SL 8: sizes below 32 have exact 4-byte classes
  TlsfModel m;
  ASSERT_TRUE(m.create(r.mem, r.size));
  // Free blocks of 28 and 24 bytes, each between used blocks.
  void *a = m.malloc(28);
  void *g1 = m.malloc(12);
  void *b = m.malloc(24);
  void *g2 = m.malloc(12);
  ASSERT_NE(g2, nullptr);
  m.free(a);
  // 28 >= 12 + 16: split, a 12-byte free tail stays behind (and is the next 12-byte block).
  void *p = m.malloc(12);
  EXPECT_EQ(p, a);
  EXPECT_EQ(m.usable_size(p), 12u);
  void *t = m.malloc(12);
  EXPECT_EQ(m.offset_of(t), m.offset_of(a) + 16);
  EXPECT_EQ(m.usable_size(t), 12u);
  // 24 < 12 + 16: the whole block is taken.
  m.free(b);
  void *q = m.malloc(12);
  EXPECT_EQ(q, b);
  EXPECT_EQ(m.usable_size(q), 24u);
  EXPECT_TRUE(Valid(m));
  (void)g1;
}

TEST(TlsfModel, GoodFitSkipsTheOwnClass) {
  Region r(64 * 1024);  // SL 16, small blocks below 64
  TlsfModel m;
  ASSERT_TRUE(m.create(r.mem, r.size));
  void *a = m.malloc(140);  // class (2,1): 136..143
  void *g = m.malloc(16);
  ASSERT_NE(g, nullptr);
  m.free(a);
  // 140 rounds up to the search size 147, class (2,2): the 140-byte block in (2,1) would fit but
  // is not looked at; the block comes from the large remainder behind g.
  void *p = m.malloc(140);
  EXPECT_NE(p, a);
  EXPECT_GT(m.offset_of(p), m.offset_of(g));
  // 136 searches from (2,1): every block there fits; a is taken whole (140 < 136 + 16).
  void *q = m.malloc(136);
  EXPECT_EQ(q, a);
  EXPECT_EQ(m.usable_size(q), 140u);
  EXPECT_TRUE(Valid(m));
}

TEST(TlsfModel, ListsAreLifo) {
  Region r(8192);
  TlsfModel m;
  ASSERT_TRUE(m.create(r.mem, r.size));
  void *a = m.malloc(20);
  void *g1 = m.malloc(12);
  void *b = m.malloc(20);
  void *g2 = m.malloc(12);
  ASSERT_NE(g2, nullptr);
  m.free(a);
  m.free(b);
  EXPECT_EQ(m.malloc(20), b);
  EXPECT_EQ(m.malloc(20), a);
  EXPECT_TRUE(Valid(m));
  (void)g1;
}

TEST(TlsfModel, ImmediateCoalescing) {
  Region r(8192);
  TlsfModel m;
  ASSERT_TRUE(m.create(r.mem, r.size));
  void *a = m.malloc(40);
  void *b = m.malloc(40);
  void *c = m.malloc(40);
  void *g = m.malloc(40);
  ASSERT_NE(g, nullptr);
  m.free(a);
  m.free(c);
  EXPECT_EQ(m.check().free_blocks, 3u);  // a, c, the remainder
  m.free(b);                             // merges with both neighbours
  TlsfModel::Check k = m.check();
  ASSERT_TRUE(k.ok) << k.error;
  EXPECT_EQ(k.free_blocks, 2u);
  // The merged block: three blocks of 40 and the two size words between them.
  void *p = m.malloc(128);
  EXPECT_EQ(p, a);
  EXPECT_EQ(m.usable_size(p), 128u);
  m.free(p);
  m.free(g);  // everything merges back into the initial block
  k = m.check();
  ASSERT_TRUE(k.ok) << k.error;
  EXPECT_EQ(k.free_blocks, 1u);
  EXPECT_EQ(k.largest_free, m.initial_block_size());
  EXPECT_EQ(m.free_size(), 8192u - 20u - m.control_size());
}

TEST(TlsfModel, ReallocInPlace) {
  Region r(8192);
  TlsfModel m;
  ASSERT_TRUE(m.create(r.mem, r.size));
  auto *a = static_cast<unsigned char *>(m.malloc(100));
  void *b = m.malloc(100);
  void *g = m.malloc(16);
  ASSERT_NE(g, nullptr);
  for (int i = 0; i < 100; ++i)
    a[i] = static_cast<unsigned char>(i);
  m.free(b);
  // Grow into the free successor: 100 + 100 + 4 = 204 combined, 152 used, a 48-byte tail freed.
  EXPECT_EQ(m.realloc(a, 150), a);
  EXPECT_EQ(m.usable_size(a), 152u);
  EXPECT_TRUE(Valid(m));
  // Shrink: the tail is freed and merges with the free 48-byte block behind it.
  EXPECT_EQ(m.realloc(a, 40), a);
  EXPECT_EQ(m.usable_size(a), 40u);
  TlsfModel::Check k = m.check();
  ASSERT_TRUE(k.ok) << k.error;
  EXPECT_EQ(k.free_blocks, 2u);  // a's tail (merged), the remainder behind g
  void *t = m.malloc(160);       // exactly the merged tail: 204 - 40 - 4
  EXPECT_EQ(m.offset_of(t), m.offset_of(a) + 44);
  EXPECT_EQ(m.usable_size(t), 160u);
  // A shrink by less than a whole block stays as it is.
  EXPECT_EQ(m.realloc(a, 30), a);
  EXPECT_EQ(m.usable_size(a), 40u);
  for (int i = 0; i < 30; ++i)
    EXPECT_EQ(a[i], i);
  // No room behind (t is used): moved, the first bytes copied, the old block freed.
  auto *p = static_cast<unsigned char *>(m.realloc(a, 64));
  ASSERT_NE(p, nullptr);
  EXPECT_NE(p, a);
  for (int i = 0; i < 30; ++i)
    EXPECT_EQ(p[i], i);
  EXPECT_TRUE(Valid(m));
  // Too big: NULL, the block unchanged.
  EXPECT_EQ(m.realloc(p, 1u << 20), nullptr);
  EXPECT_EQ(m.usable_size(p), 64u);
  EXPECT_EQ(m.realloc(p, 0), nullptr);  // frees
  EXPECT_TRUE(Valid(m));
}

TEST(TlsfModel, MemalignGap) {
  Region r(8192);  // B 8172: control 360, first data at 20 + 360 + 4 = 384
  TlsfModel m;
  ASSERT_TRUE(m.create(r.mem, r.size));
  ASSERT_EQ(m.control_size(), 360u);
  ASSERT_EQ(m.first_data_offset(), 384u);
  // 384 is 128-aligned: no gap.
  void *a = m.memalign(128, 40);
  EXPECT_EQ(m.offset_of(a), 384u);
  m.free(a);
  // 256: the next aligned address is 512; the 128-byte gap becomes a free block of 124.
  void *b = m.memalign(256, 40);
  EXPECT_EQ(m.offset_of(b), 512u);
  TlsfModel::Check k = m.check();
  ASSERT_TRUE(k.ok) << k.error;
  EXPECT_EQ(k.free_blocks, 2u);
  void *lead = m.malloc(120);  // searches class [120, 128): the gap block of 124 fits whole
  EXPECT_EQ(m.offset_of(lead), 384u);
  EXPECT_EQ(m.usable_size(lead), 124u);
  m.free(lead);
  m.free(b);
  // A gap of 4 cannot hold a block: the next aligned address at least 16 bytes on is taken.
  void *x = m.malloc(56);  // next data at 384 + 60 = 444 = 64 * 6 + 60
  void *c = m.memalign(64, 32);
  EXPECT_EQ(m.offset_of(c), 512u);  // 444 + 16 = 460 -> 512; gap 68, a free block of 64
  EXPECT_EQ(m.usable_size(c), 32u);
  k = m.check();
  ASSERT_TRUE(k.ok) << k.error;
  EXPECT_EQ(k.free_blocks, 2u);
  EXPECT_EQ(m.offset_of(m.malloc(64)), 444u);
  // align <= 4 is plain malloc; non-powers of two are refused.
  EXPECT_EQ(m.memalign(24, 8), nullptr);
  EXPECT_EQ(m.memalign(0, 8), nullptr);
  void *y = m.memalign(4, 8);
  EXPECT_EQ(m.usable_size(y), 12u);
  EXPECT_TRUE(Valid(m));
  (void)x;
}

TEST(TlsfModel, MemalignSearchSize) {
  // The search asks for size + align + 16: with a 6036-byte free block, a 4096-aligned 100-byte
  // request fits (4212 bytes searched); rounding the search up to the alignment (TLSF 3.1's
  // memalign, Options::round_aligned_search) asks for 8192 and fails.
  Region r(6424);  // B 6404: control 360, one free block of 6036
  for (const bool round : {false, true}) {
    TlsfModel m;
    TlsfModel::Options o;
    o.round_aligned_search = round;
    ASSERT_TRUE(m.create(r.mem, r.size, o));
    void *p = m.memalign(4096, 100);
    if (round) {
      EXPECT_EQ(p, nullptr);
    } else {
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 4096, 0u);
    }
    EXPECT_TRUE(Valid(m));
  }
}

TEST(TlsfModel, MultiHeapCounters) {
  Region r(32 * 1024);
  TlsfModel m;
  ASSERT_TRUE(m.create(r.mem, r.size));
  const std::size_t before = m.free_size();
  void *p = m.malloc(32);
  // ESP-IDF's host test: one 32-byte malloc, total_allocated_bytes 32, where total_allocated =
  // (pool size - control) - free - 4 * allocated blocks and the pool size is region - 20.
  const std::size_t total_allocated = (r.size - 20 - m.control_size()) - m.free_size() - 4 * 1;
  EXPECT_EQ(total_allocated, 32u);
  EXPECT_LT(m.minimum_free_size(), before);
  const std::size_t minimum = m.minimum_free_size();
  m.free(p);
  EXPECT_EQ(m.free_size(), before);
  EXPECT_EQ(m.minimum_free_size(), minimum);
  EXPECT_TRUE(Valid(m));
}

// ---- Differential: the same policy written naively -----------------------------------------

/// The policy of the spec written the slow, obvious way: blocks in an ordered map by data offset,
/// one deque per (fl, sl) class, classes searched in order from the good-fit class up. Shares only
/// tlsf_config with TlsfModel (checked by exact values above). Offsets are data offsets from the
/// region start; a block's size word sits 4 bytes before its data.
class NaiveTlsf {
 public:
  NaiveTlsf(std::uintptr_t base, std::size_t region, bool round_aligned)
      : base_(base), round_(round_aligned) {
    cfg_ = tlsf_config(region - 20);
    const std::size_t pool = region - 20 - cfg_.control_size;
    const std::size_t first = 20 + cfg_.control_size + 4;
    add_free(first, (pool - 8) / 4 * 4);
  }
  std::size_t malloc(std::size_t n) {
    const std::size_t a = adjust(n);
    if (a == 0) return 0;
    const std::size_t d = take(a);
    return d == 0 ? 0 : use(d, a);
  }
  std::size_t memalign(std::size_t align, std::size_t n) {
    if (align <= 4) return malloc(n);
    const std::size_t a = adjust(n);
    if (a == 0) return 0;
    std::size_t want = a + align + 16;
    if (round_) want = (want + align - 1) / align * align;
    if (want >= (std::size_t{1} << cfg_.fl_max)) return 0;
    std::size_t d = take(want);
    if (d == 0) return 0;
    std::size_t target = d;
    while ((base_ + target) % align != 0 || (target != d && target - d < 16))
      target += 4;
    if (target != d) {  // leading gap: a free block of gap - 4
      const std::size_t size = blocks_[d].size;
      blocks_[d].size = target - d - 4;
      add_list(d);
      blocks_[target] = {size - (target - d), false};
      d = target;
    }
    return use(d, a);
  }
  void free(std::size_t d) {
    blocks_[d].free = true;
    auto it = blocks_.find(d);
    if (it != blocks_.begin()) {
      auto prev = std::prev(it);
      if (prev->second.free) {
        remove_list(prev->first);
        prev->second.size += it->second.size + 4;
        blocks_.erase(it);
        it = prev;
      }
    }
    auto next = std::next(it);
    if (next != blocks_.end() && next->second.free) {
      remove_list(next->first);
      it->second.size += next->second.size + 4;
      blocks_.erase(next);
    }
    add_list(it->first);
  }
  std::size_t realloc(std::size_t d, std::size_t n) {
    const std::size_t a = adjust(n);
    if (a == 0) return 0;
    auto it = blocks_.find(d);
    auto next = std::next(it);
    const bool next_free = next != blocks_.end() && next->second.free;
    const std::size_t cur = it->second.size;
    if (a > cur && (!next_free || a > cur + next->second.size + 4)) {
      const std::size_t q = malloc(n);
      if (q != 0) free(d);
      return q;
    }
    if (a > cur) {
      remove_list(next->first);
      it->second.size += next->second.size + 4;
      blocks_.erase(next);
    }
    if (it->second.size >= a + 16) {
      const std::size_t tail = d + a + 4;
      blocks_[tail] = {it->second.size - a - 4, false};
      it->second.size = a;
      free(tail);  // merges with a free successor
    }
    return d;
  }
  std::size_t size_of(std::size_t d) const { return blocks_.at(d).size; }
  /// (data offset, size) of every free block, in address order.
  std::vector<std::pair<std::size_t, std::size_t>> free_blocks() const {
    std::vector<std::pair<std::size_t, std::size_t>> out;
    for (const auto &b : blocks_)
      if (b.second.free) out.emplace_back(b.first, b.second.size);
    return out;
  }

 private:
  struct Block {
    std::size_t size;
    bool free;
  };
  std::size_t adjust(std::size_t n) const {
    if (n == 0 || n > (std::size_t{1} << 40)) return 0;
    const std::size_t a = std::max<std::size_t>((n + 3) / 4 * 4, 12);
    return a >= (std::size_t{1} << cfg_.fl_max) ? 0 : a;
  }
  /// Class number of a size: (fl, sl) flattened; the top bit found by a loop.
  std::size_t class_of(std::size_t size) const {
    if (size < cfg_.small_block_size) return size / 4;
    unsigned top = 0;
    while ((std::size_t{2} << top) <= size)
      ++top;
    const std::size_t sl = (size - (std::size_t{1} << top)) >> (top - cfg_.sl_log2);
    return (top - cfg_.fl_shift + 1) * cfg_.sl_count + sl;
  }
  /// Good fit: the class of the smallest class boundary at or above size.
  std::size_t search_class(std::size_t size) const {
    if (size < cfg_.small_block_size) return size / 4;
    unsigned top = 0;
    while ((std::size_t{2} << top) <= size)
      ++top;
    const std::size_t step = std::size_t{1} << (top - cfg_.sl_log2);
    return class_of((size + step - 1) / step * step);
  }
  std::size_t take(std::size_t size) {
    const std::size_t limit = cfg_.fl_count * cfg_.sl_count;
    for (std::size_t c = search_class(size); c < limit; ++c) {
      auto it = lists_.find(c);
      if (it == lists_.end() || it->second.empty()) continue;
      const std::size_t d = it->second.front();
      it->second.pop_front();
      blocks_[d].free = false;
      return d;
    }
    return 0;
  }
  std::size_t use(std::size_t d, std::size_t a) {
    Block &b = blocks_[d];
    b.free = false;
    if (b.size >= a + 16) {
      const std::size_t tail = d + a + 4;
      blocks_[tail] = {b.size - a - 4, true};
      b.size = a;
      add_list(tail);
    }
    return d;
  }
  void add_free(std::size_t d, std::size_t size) {
    blocks_[d] = {size, true};
    add_list(d);
  }
  void add_list(std::size_t d) {
    blocks_[d].free = true;
    lists_[class_of(blocks_[d].size)].push_front(d);
  }
  void remove_list(std::size_t d) {
    auto &l = lists_[class_of(blocks_[d].size)];
    l.erase(std::find(l.begin(), l.end(), d));
  }

  std::uintptr_t base_;
  bool round_;
  TlsfConfig cfg_;
  std::map<std::size_t, Block> blocks_;
  std::map<std::size_t, std::deque<std::size_t>> lists_;
};

std::vector<std::pair<std::size_t, std::size_t>> model_free_blocks(const TlsfModel &m) {
  std::vector<std::pair<std::size_t, std::size_t>> out;
  m.walk(
      [](std::size_t off, std::size_t size, bool used, void *u) {
        if (!used) {
          static_cast<std::vector<std::pair<std::size_t, std::size_t>> *>(u)->emplace_back(off,
                                                                                           size);
        }
        return true;
      },
      &out);
  return out;
}

TEST(TlsfModel, MatchesNaivePolicy) {
  std::uint64_t seed = std::random_device{}();
  if (const char *s = std::getenv("CAPHEAP_TLSF_SEED")) seed = std::strtoull(s, nullptr, 0);
  std::printf("TlsfModel differential seed %llu (CAPHEAP_TLSF_SEED to repeat)\n",
              static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  // Pools with 8, 16 and 32 second-level classes.
  for (const std::size_t region : {std::size_t{6000}, std::size_t{90000}, std::size_t{400000}}) {
    for (const bool round : {false, true}) {
      Region r(region);
      TlsfModel m;
      TlsfModel::Options o;
      o.round_aligned_search = round;
      ASSERT_TRUE(m.create(r.mem, r.size, o));
      NaiveTlsf n(reinterpret_cast<std::uintptr_t>(r.mem), region, round);
      std::vector<std::size_t> live;
      auto size_of = [&]() -> std::size_t {
        switch (rng() % 4) {
          case 0:
            return 1 + rng() % 64;
          case 1:
            return 1 + rng() % 600;
          case 2:
            return 1 + rng() % 5000;
          default:
            return 1 + rng() % (region / 3);
        }
      };
      for (int op = 0; op < 6000; ++op) {
        const unsigned kind = static_cast<unsigned>(rng() % 10);
        std::size_t got = 0;
        std::size_t want = 0;
        if (kind < 4 || live.empty()) {
          const std::size_t sz = size_of();
          void *p = m.malloc(sz);
          got = p == nullptr ? 0 : m.offset_of(p);
          want = n.malloc(sz);
          if (got != 0) live.push_back(got);
        } else if (kind < 5) {
          const std::size_t align = std::size_t{8} << (rng() % 10);
          const std::size_t sz = size_of();
          void *p = m.memalign(align, sz);
          got = p == nullptr ? 0 : m.offset_of(p);
          want = n.memalign(align, sz);
          if (got != 0) live.push_back(got);
        } else if (kind < 7) {
          const std::size_t i = rng() % live.size();
          const std::size_t sz = size_of();
          void *p = m.realloc(r.mem + live[i], sz);
          got = p == nullptr ? 0 : m.offset_of(p);
          want = n.realloc(live[i], sz);
          if (got != 0) live[i] = got;
        } else {
          const std::size_t i = rng() % live.size();
          m.free(r.mem + live[i]);
          n.free(live[i]);
          live[i] = live.back();
          live.pop_back();
        }
        ASSERT_EQ(got, want) << "op " << op << " kind " << kind << " region " << region << " seed "
                             << seed;
        if (got != 0) {
          ASSERT_EQ(m.usable_size(r.mem + got), n.size_of(got)) << "op " << op;
        }
        if (op % 50 == 0) {
          ASSERT_EQ(model_free_blocks(m), n.free_blocks()) << "op " << op << " seed " << seed;
          ASSERT_TRUE(Valid(m));
        }
      }
    }
  }
}

// ---- Randomised stress ---------------------------------------------------------------------

struct Live {
  unsigned char *p;
  std::size_t n;
  unsigned char fill;
};

void expect_intact(const Live &l) {
  for (std::size_t i = 0; i < l.n; i += 1 + l.n / 8) {
    if (l.p[i] != l.fill) {
      ADD_FAILURE() << "block " << static_cast<void *>(l.p) << " byte " << i << " overwritten";
      return;
    }
  }
  if (l.n != 0 && l.p[l.n - 1] != l.fill) ADD_FAILURE() << "last byte overwritten";
}

TEST(TlsfModel, RandomisedStress) {
  std::uint64_t seed = std::random_device{}();
  if (const char *s = std::getenv("CAPHEAP_TLSF_SEED")) seed = std::strtoull(s, nullptr, 0);
  std::printf("TlsfModel stress seed %llu (CAPHEAP_TLSF_SEED to repeat)\n",
              static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  for (const std::size_t region : {std::size_t{3000}, std::size_t{40000}, std::size_t{300000}}) {
    Region r(region);
    TlsfModel m;
    TlsfModel::Options o;
    o.round_aligned_search = (rng() & 1) != 0;
    ASSERT_TRUE(m.create(r.mem, r.size, o));
    std::vector<Live> live;
    auto size_of = [&]() -> std::size_t {
      switch (rng() % 4) {
        case 0:
          return rng() % 16;
        case 1:
          return rng() % 200;
        case 2:
          return rng() % 2000;
        default:
          return rng() % (region / 4);
      }
    };
    for (int op = 0; op < 20000; ++op) {
      const unsigned kind = static_cast<unsigned>(rng() % 10);
      const auto fill = static_cast<unsigned char>(rng());
      if (kind < 3 || live.empty()) {
        const std::size_t n = size_of();
        auto *p = static_cast<unsigned char *>(m.malloc(n));
        if (p != nullptr) {
          ASSERT_NE(n, 0u);
          ASSERT_GE(m.usable_size(p), n);
          ASSERT_EQ(reinterpret_cast<std::uintptr_t>(p) % 4, 0u);
          std::memset(p, fill, n);
          live.push_back({p, n, fill});
        }
      } else if (kind < 4) {
        const std::size_t align = std::size_t{1} << (rng() % 13);
        const std::size_t n = size_of();
        auto *p = static_cast<unsigned char *>(m.memalign(align, n));
        if (p != nullptr) {
          ASSERT_EQ(reinterpret_cast<std::uintptr_t>(p) % align, 0u) << "align " << align;
          ASSERT_GE(m.usable_size(p), n);
          std::memset(p, fill, n);
          live.push_back({p, n, fill});
        }
      } else if (kind < 5) {
        const std::size_t n = rng() % 64;
        auto *p = static_cast<unsigned char *>(m.calloc(rng() % 4, n));
        if (p != nullptr) live.push_back({p, 0, 0});
      } else if (kind < 7) {
        const std::size_t i = rng() % live.size();
        Live &l = live[i];
        expect_intact(l);
        const std::size_t n = size_of() + 1;
        auto *q = static_cast<unsigned char *>(m.realloc(l.p, n));
        if (q != nullptr) {
          for (std::size_t k = 0; k < std::min(n, l.n); ++k)
            ASSERT_EQ(q[k], l.fill) << "realloc lost byte " << k;
          std::memset(q, fill, n);
          l = {q, n, fill};
        } else {
          expect_intact(l);  // failure leaves the block
        }
      } else {
        const std::size_t i = rng() % live.size();
        expect_intact(live[i]);
        m.free(live[i].p);
        live[i] = live.back();
        live.pop_back();
      }
      if (op % 97 == 0) {
        const TlsfModel::Check k = m.check();
        ASSERT_TRUE(k.ok) << "op " << op << ": " << k.error << " (seed " << seed << ")";
        ASSERT_EQ(k.used_blocks, live.size());
      }
    }
    for (const Live &l : live) {
      expect_intact(l);
      m.free(l.p);
    }
    const TlsfModel::Check k = m.check();
    ASSERT_TRUE(k.ok) << k.error << " (seed " << seed << ")";
    EXPECT_EQ(k.free_blocks, 1u);
    EXPECT_EQ(k.largest_free, m.initial_block_size());
  }
}

}  // namespace
