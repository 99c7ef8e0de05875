// concurrency_stress_test.cpp — N threads (8; CAPHEAP_STRESS_THREADS) on the shared heaps of the
// simulated ESP32 with PSRAM, mixing every operation: malloc / calloc / realloc / aligned_alloc /
// free with mixed capabilities, frees of blocks other threads allocated (through a shared
// exchange), heap_caps_get_info / free-size queries, incremental integrity steps and, now and then,
// heap_caps_add_region_with_caps of a fresh host buffer. Every block carries a pattern derived
// from its owner and serial, verified before it is resized or freed. At the end every heap
// validates and its free size equals its starting free size (runtime-added heaps: their own size
// right after they were added). Variants: no poisoning, light poisoning.
//
// Seeded: the seed is printed; CAPHEAP_SEED replays it (thread t uses seed + t; the interleaving
// is the scheduler's). Also run under ThreadSanitizer by `make tsan` (docs/testing.md).

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "capheap.h"
#include "capheap/caps.hpp"
#include "capheap_host.h"
#include "capi/capi_internal.hpp"
#include "esp_heap_caps.h"
#include "esp_heap_caps_init.h"
#include "support/decoration_support.hpp"

namespace {

constexpr std::uint32_t kCapsMix[] = {
    MALLOC_CAP_DEFAULT,
    MALLOC_CAP_8BIT,
    MALLOC_CAP_32BIT,
    MALLOC_CAP_DMA,
    MALLOC_CAP_INTERNAL | MALLOC_CAP_8BIT,
    MALLOC_CAP_SPIRAM,
    MALLOC_CAP_DEFAULT | MALLOC_CAP_SPIRAM,
    MALLOC_CAP_DMA | MALLOC_CAP_INTERNAL,
};
constexpr std::size_t kNumCaps = sizeof kCapsMix / sizeof kCapsMix[0];
// A capability only the runtime-added regions have (no chip memory has bit 30).
constexpr std::uint32_t kAddedCap = 1u << 30;
constexpr int kOpsPerThread = 20000;
constexpr int kMaxAddedRegions = 4;
constexpr std::size_t kAddedRegionBytes = 16 * 1024;

unsigned thread_count() {
  const char *env = std::getenv("CAPHEAP_STRESS_THREADS");
  if (env == nullptr) return 8;
  const long n = std::strtol(env, nullptr, 0);
  return n >= 1 && n <= 64 ? static_cast<unsigned>(n) : 8;
}

std::uint64_t seed_value() {
  const char *env = std::getenv("CAPHEAP_SEED");
  return env != nullptr ? std::strtoull(env, nullptr, 0) : 0xC0FFEEu;
}

// A block: where it is, how many bytes the pattern covers, and the pattern's key.
struct Block {
  unsigned char *p = nullptr;
  std::size_t size = 0;
  std::uint32_t key = 0;
};

unsigned char pattern_byte(std::uint32_t key, std::size_t i) {
  return static_cast<unsigned char>((key >> ((i & 3u) * 8)) + i / 4);
}
void fill(const Block &b) {
  for (std::size_t i = 0; i < b.size; ++i)
    b.p[i] = pattern_byte(b.key, i);
}
bool intact(const Block &b, std::size_t n) {
  for (std::size_t i = 0; i < n && i < b.size; ++i)
    if (b.p[i] != pattern_byte(b.key, i)) return false;
  return true;
}

// Blocks handed from one thread to another (the other one frees or reallocates them).
class Exchange {
 public:
  void put(const Block &b) {
    std::lock_guard<std::mutex> g(m_);
    q_.push_back(b);
  }
  bool take(Block &out) {
    std::lock_guard<std::mutex> g(m_);
    if (q_.empty()) return false;
    out = q_.back();
    q_.pop_back();
    return true;
  }
  std::vector<Block> drain() {
    std::lock_guard<std::mutex> g(m_);
    return std::move(q_);
  }

 private:
  std::mutex m_;
  std::vector<Block> q_;
};

struct AddedRegion {
  std::unique_ptr<std::uint32_t[]> mem;
  std::uintptr_t start = 0;
  std::size_t free_at_start = 0;
};

class ConcurrencyStress : public ::testing::TestWithParam<capheap_poisoning_t> {
 protected:
  void SetUp() override {
    CAPHEAP_SKIP_IF_NO_DECORATION(GetParam() != CAPHEAP_POISONING_NONE);
    capheap_host_deinit();
    capheap_host_config_t cfg = CAPHEAP_HOST_CONFIG_DEFAULT;
    cfg.psram_size = 4u << 20;
    cfg.poisoning = GetParam();
    ASSERT_EQ(capheap_host_init("esp32", &cfg), ESP_OK);
  }
  void TearDown() override { capheap_host_deinit(); }
};

INSTANTIATE_TEST_SUITE_P(Poisoning, ConcurrencyStress,
                         ::testing::Values(CAPHEAP_POISONING_NONE, CAPHEAP_POISONING_LIGHT),
                         [](const ::testing::TestParamInfo<capheap_poisoning_t> &i) {
                           return std::string(i.param == CAPHEAP_POISONING_NONE ? "None" : "Light");
                         });

TEST_P(ConcurrencyStress, MixedOperationsReturnEveryByte) {
  capheap::Registry &reg = capheap::capi::registry();
  // Starting free size of every boot heap, by start address.
  std::vector<std::pair<std::uintptr_t, std::size_t>> start_free;
  for (unsigned i = 0; i < reg.count(); ++i)
    start_free.emplace_back(reg.view(i).start, reg.view(i).heap.free_bytes());

  const unsigned n_threads = thread_count();
  const std::uint64_t seed = seed_value();
  std::printf("[ stress ] seed 0x%llx, %u threads (CAPHEAP_SEED / CAPHEAP_STRESS_THREADS)\n",
              static_cast<unsigned long long>(seed), n_threads);
  std::fflush(stdout);

  Exchange exchange;
  std::mutex regions_mutex;
  std::vector<AddedRegion> regions;
  std::atomic<unsigned> corrupt{0}, wrong_caps{0}, bad_alignment{0}, bad_queries{0},
      check_failures{0}, add_failures{0};
  std::atomic<std::uint32_t> serial{0};
  std::atomic<std::size_t> ops{0};

  auto worker = [&](unsigned t) {
    std::mt19937_64 rng(seed + t);
    std::vector<Block> mine;
    capheap_integrity_cursor_t cursor = CAPHEAP_INTEGRITY_CURSOR_INIT(MALLOC_CAP_INVALID);
    const auto new_key = [&] { return (t << 24) ^ (serial.fetch_add(1) * 2654435761u); };
    const auto check_caps = [&](const void *p, std::uint32_t caps) {
      const void *data = reg.is_iram_alias(p) ? reg.data_address_of_alias(p) : p;
      // One consistent pass: a region added by another thread between the lookup and the caps
      // check would shift list positions and make the check look at another heap.
      const bool ok = reg.consistent([&] {
        const int h = reg.find_heap(data);
        return h >= 0 && reg.heap_matches(static_cast<unsigned>(h), capheap::Caps(caps));
      });
      if (!ok) ++wrong_caps;
    };
    for (int i = 0; i < kOpsPerThread; ++i) {
      ++ops;
      const unsigned op = static_cast<unsigned>(rng() % 100);
      const std::uint32_t caps = kCapsMix[rng() % kNumCaps];
      const std::size_t size =
          1 + static_cast<std::size_t>(rng() % ((rng() % 16 == 0) ? 4096 : 200));
      if (op < 30 || mine.empty()) {  // malloc / calloc / aligned
        Block b;
        b.size = size;
        b.key = new_key();
        const unsigned kind = static_cast<unsigned>(rng() % 4);
        if (kind == 0) {
          b.p = static_cast<unsigned char *>(heap_caps_calloc(1 + size / 16, 16, caps));
          b.size = (1 + size / 16) * 16;
          if (b.p != nullptr)
            for (std::size_t j = 0; j < b.size; ++j)
              if (b.p[j] != 0) {
                ++corrupt;
                break;
              }
        } else if (kind == 1) {
          const std::size_t al = std::size_t(1) << (rng() % 9);  // 1 .. 256
          b.p = static_cast<unsigned char *>(heap_caps_aligned_alloc(al, size, caps));
          if (b.p != nullptr && reinterpret_cast<std::uintptr_t>(b.p) % al != 0) ++bad_alignment;
        } else {
          b.p = static_cast<unsigned char *>(heap_caps_malloc(size, caps));
        }
        if (b.p == nullptr) continue;
        check_caps(b.p, caps);
        fill(b);
        mine.push_back(b);
      } else if (op < 45) {  // realloc (maybe to other caps)
        const std::size_t k = static_cast<std::size_t>(rng() % mine.size());
        Block &b = mine[k];
        if (!intact(b, b.size)) ++corrupt;
        auto *q = static_cast<unsigned char *>(heap_caps_realloc(b.p, size, caps));
        if (q == nullptr) continue;  // the old block stays
        Block nb{q, size, 0};
        if (!intact(Block{q, size < b.size ? size : b.size, b.key}, size)) ++corrupt;
        check_caps(q, caps);
        nb.key = new_key();
        fill(nb);
        b = nb;
      } else if (op < 70) {  // free one of ours
        const std::size_t k = static_cast<std::size_t>(rng() % mine.size());
        if (!intact(mine[k], mine[k].size)) ++corrupt;
        heap_caps_free(mine[k].p);
        mine[k] = mine.back();
        mine.pop_back();
      } else if (op < 80) {  // hand one over / take one from another thread
        if (rng() % 2 == 0) {
          const std::size_t k = static_cast<std::size_t>(rng() % mine.size());
          exchange.put(mine[k]);
          mine[k] = mine.back();
          mine.pop_back();
        } else {
          Block b;
          if (exchange.take(b)) {
            if (!intact(b, b.size)) ++corrupt;
            if (rng() % 4 == 0) {
              auto *q = static_cast<unsigned char *>(heap_caps_realloc(b.p, size, caps));
              if (q == nullptr) {
                mine.push_back(b);
              } else {
                Block nb{q, size, new_key()};
                fill(nb);
                mine.push_back(nb);
              }
            } else {
              heap_caps_free(b.p);
            }
          }
        }
      } else if (op < 90) {  // queries
        multi_heap_info_t info;
        heap_caps_get_info(&info, caps);
        // Only what one call guarantees: sums across heaps taken at different moments are not
        // comparable while other threads allocate. Each sum is one consistent pass over the heap
        // list (a heap added meanwhile restarts it), so no heap is counted twice.
        if (info.largest_free_block > info.total_free_bytes ||
            info.total_blocks != info.allocated_blocks + info.free_blocks)
          ++bad_queries;
        // Free bytes of a heap never exceed its size: a free-size sum above the total-size sum of
        // the same heaps would mean a heap counted twice (added regions are never removed, so a
        // total taken after the free sum is at least the total at the free sum's time).
        const std::size_t free_sum = heap_caps_get_free_size(caps);
        if (free_sum > heap_caps_get_total_size(caps)) ++bad_queries;
        (void)heap_caps_get_largest_free_block(caps);
        (void)heap_caps_get_minimum_free_size(caps);
      } else if (op < 99) {  // incremental integrity check
        if (!capheap_check_integrity_step(&cursor, 1 + rng() % 32, true)) ++check_failures;
      } else {  // a fresh region
        std::lock_guard<std::mutex> g(regions_mutex);
        if (regions.size() < kMaxAddedRegions) {
          AddedRegion r;
          r.mem.reset(new std::uint32_t[kAddedRegionBytes / 4]());
          r.start = reinterpret_cast<std::uintptr_t>(r.mem.get());
          // Only kAddedCap requests reach the new heap, and they are made under regions_mutex
          // only: its free size right after the add is its starting free size.
          const std::uint32_t rcaps[CAPHEAP_PRIORITY_LEVELS] = {kAddedCap, 0, 0};
          if (heap_caps_add_region_with_caps(rcaps, static_cast<intptr_t>(r.start),
                                             static_cast<intptr_t>(r.start + kAddedRegionBytes)) !=
              ESP_OK) {
            ++add_failures;
          } else {
            const int h = reg.find_heap(r.mem.get());
            if (h < 0) {
              ++add_failures;
            } else {
              r.free_at_start = reg.view(static_cast<unsigned>(h)).heap.free_bytes();
              regions.push_back(std::move(r));
            }
          }
        }
        // Use the new capability now and then.
        if (!regions.empty()) {
          Block b;
          b.size = size;
          b.key = new_key();
          b.p = static_cast<unsigned char *>(heap_caps_malloc(size, kAddedCap));
          if (b.p != nullptr) {
            fill(b);
            mine.push_back(b);
          }
        }
      }
    }
    for (const Block &b : mine) {
      if (!intact(b, b.size)) ++corrupt;
      heap_caps_free(b.p);
    }
  };

  std::vector<std::thread> threads;
  for (unsigned t = 0; t < n_threads; ++t)
    threads.emplace_back(worker, t);
  for (std::thread &th : threads)
    th.join();
  for (const Block &b : exchange.drain()) {
    if (!intact(b, b.size)) ++corrupt;
    heap_caps_free(b.p);
  }

  EXPECT_EQ(corrupt.load(), 0u);
  EXPECT_EQ(wrong_caps.load(), 0u);
  EXPECT_EQ(bad_alignment.load(), 0u);
  EXPECT_EQ(bad_queries.load(), 0u);
  EXPECT_EQ(check_failures.load(), 0u);
  EXPECT_EQ(add_failures.load(), 0u);
  EXPECT_EQ(ops.load(), std::size_t(n_threads) * kOpsPerThread);
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
  unsigned matched = 0;
  for (unsigned i = 0; i < reg.count(); ++i) {
    const capheap::HeapView v = reg.view(i);
    EXPECT_TRUE(v.heap.validate().ok()) << v.name;
    bool known = false;
    for (const auto &sf : start_free)
      if (sf.first == v.start) {
        EXPECT_EQ(v.heap.free_bytes(), sf.second) << v.name;
        known = true;
        ++matched;
      }
    if (!known) {
      bool added = false;
      for (const AddedRegion &r : regions)
        if (r.start == v.start) {
          EXPECT_EQ(v.heap.free_bytes(), r.free_at_start) << v.name;
          added = true;
        }
      EXPECT_TRUE(added) << "unexpected heap " << v.name;
    }
  }
  EXPECT_EQ(matched, start_free.size());
  EXPECT_EQ(reg.count(), start_free.size() + regions.size());
  EXPECT_GE(regions.size(), 1u);
}

}  // namespace
