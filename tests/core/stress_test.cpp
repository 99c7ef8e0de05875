// stress_test.cpp — seeded random stress rig for the engine.
//
// Every operation goes through CheckedHeap (tests/support/checked_heap.hpp): validate() around it,
// payload patterns verified on free, no overlap, and the largest-free-block contract after each
// step. Runs over regions from 88 B to 64 MiB and every granule. The seed is printed; set
// CAPHEAP_SEED to replay one, CAPHEAP_STRESS_OPS to change the operation count.

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "capheap/heap.hpp"
#include "support/checked_heap.hpp"
#include "support/decoration_support.hpp"

namespace {

using capheap::Granule;
using capheap::Heap;
using capheap::HeapConfig;
using capheap::testing::CheckedHeap;

std::uint64_t seed_from_env(std::uint64_t fallback) {
  const char *s = std::getenv("CAPHEAP_SEED");
  return s != nullptr ? std::strtoull(s, nullptr, 0) : fallback;
}

std::size_t ops_from_env(std::size_t fallback) {
  const char *s = std::getenv("CAPHEAP_STRESS_OPS");
  return s != nullptr ? static_cast<std::size_t>(std::strtoull(s, nullptr, 0)) : fallback;
}

struct StressParam {
  std::size_t region;
  Granule granule;
  std::size_t base_offset;  ///< region start modulo 16 (0, 4, 8 or 12): granules are absolute
  capheap::Poisoning poisoning = capheap::Poisoning::kNone;
  bool track_owner = false;
};

std::string param_name(const ::testing::TestParamInfo<StressParam> &info) {
  static const char *const kPoison[] = {"", "_light", "_comprehensive"};
  return "region" + std::to_string(info.param.region) + "_g" +
         std::to_string(static_cast<int>(info.param.granule)) + "_at" +
         std::to_string(info.param.base_offset) + kPoison[static_cast<int>(info.param.poisoning)] +
         (info.param.track_owner ? "_owner" : "");
}

class Stress : public ::testing::TestWithParam<StressParam> {};

/// Draws a request size suited to the region: mostly small, sometimes a sizeable share of it.
std::size_t draw_size(std::mt19937_64 &rng, std::size_t region) {
  const unsigned kind = static_cast<unsigned>(rng() % 100);
  std::size_t cap;
  if (kind < 70) {
    cap = 256;
  } else if (kind < 95) {
    cap = region / 16;
  } else {
    cap = region / 2;
  }
  if (cap < 1) cap = 1;
  if (kind == 99) return 1 + static_cast<std::size_t>(rng() % 12);  // minimum-size blocks
  return 1 + static_cast<std::size_t>(rng() % cap);
}

TEST_P(Stress, RandomOperationsKeepEveryInvariant) {
  CAPHEAP_SKIP_IF_NO_DECORATION(GetParam().poisoning != capheap::Poisoning::kNone ||
                                GetParam().track_owner);
  const StressParam p = GetParam();
  const std::uint64_t seed =
      seed_from_env(0xC0FFEEull ^ (p.region * 31u) ^ static_cast<unsigned>(p.granule));
  std::printf("[ stress ] region %zu granule %d seed 0x%llx\n", p.region,
              static_cast<int>(p.granule), static_cast<unsigned long long>(seed));
  SCOPED_TRACE("seed " + std::to_string(seed) + " (replay with CAPHEAP_SEED)");
  std::mt19937_64 rng(seed);

  // 16-aligned storage so that every granule lays out the same way on every run.
  std::unique_ptr<std::uint64_t[]> storage(new std::uint64_t[p.region / 8 + 4]);
  auto *aligned = reinterpret_cast<unsigned char *>(
      (reinterpret_cast<std::uintptr_t>(storage.get()) + 15) & ~std::uintptr_t(15));
  void *mem = aligned + p.base_offset;
  HeapConfig cfg;
  cfg.granule = p.granule;
  cfg.poisoning = p.poisoning;
  cfg.track_owner = p.track_owner;
  Heap heap = Heap::create(mem, p.region, cfg);
  // 88 bytes (the smallest region here) hold control (52) + padding + one 16-byte block + the end
  // marker for every granule and start offset.
  ASSERT_TRUE(heap) << "region " << p.region;
  CheckedHeap h(heap);
  const std::size_t initial_free = heap.free_bytes();

  // Large regions get fewer operations: each one validates the whole heap.
  const std::size_t ops = ops_from_env(p.region >= (16u << 20) ? 1500 : 4000);
  std::vector<void *> live;
  std::size_t failures = 0;
  for (std::size_t i = 0; i < ops && !::testing::Test::HasFailure(); ++i) {
    const unsigned op = static_cast<unsigned>(rng() % 100);
    if (op < 40 || live.empty()) {
      void *q = h.allocate(draw_size(rng, p.region));
      if (q != nullptr)
        live.push_back(q);
      else
        ++failures;
    } else if (op < 50) {
      const std::size_t align = std::size_t(1) << (rng() % 13);  // 1 .. 4096
      const std::size_t offset = 4 * (rng() % 4);
      void *q = h.allocate_aligned(draw_size(rng, p.region), align, offset);
      if (q != nullptr)
        live.push_back(q);
      else
        ++failures;
    } else if (op < 65) {
      const std::size_t k = static_cast<std::size_t>(rng() % live.size());
      void *q = h.reallocate(live[k], draw_size(rng, p.region));
      if (q != nullptr) live[k] = q;
    } else {
      const std::size_t k = static_cast<std::size_t>(rng() % live.size());
      h.deallocate(live[k]);
      live[k] = live.back();
      live.pop_back();
    }
    // An incremental check between operations: it must never see a problem, and validate() (run
    // by CheckedHeap) confirms that its position stays on a block boundary however blocks merge.
    const capheap::StepResult step = heap.validate_step(1 + static_cast<std::size_t>(rng() % 5));
    ASSERT_TRUE(step.validation.ok()) << "step fault " << static_cast<int>(step.validation.fault);
  }
  h.release_all();
  EXPECT_EQ(heap.free_bytes(), initial_free) << "memory not returned";
  EXPECT_EQ(heap.info().free_blocks, 1u);
  EXPECT_EQ(heap.info().allocated_blocks, 0u);
  std::printf("[ stress ] %zu ops, %zu failed allocations\n", ops, failures);
}

std::vector<StressParam> stress_params() {
  std::vector<StressParam> v;
  const std::size_t regions[] = {88,   96,    128,      256,       1024,
                                 4096, 65536, 1u << 20, 16u << 20, 64u << 20};
  for (std::size_t r : regions)
    for (Granule g : {Granule::k4, Granule::k8, Granule::k16})
      for (std::size_t at : {0u, 4u, 8u, 12u})
        if (at == 0 || r <= (1u << 20)) v.push_back({r, g, at});
  // Decorated heaps: poisoning levels and owner words (each validate() also checks canaries and,
  // comprehensive, every free byte).
  for (std::size_t r : {std::size_t{256}, std::size_t{4096}, std::size_t{65536}})
    for (Granule g : {Granule::k4, Granule::k16})
      for (capheap::Poisoning poison : {capheap::Poisoning::kNone, capheap::Poisoning::kLight,
                                        capheap::Poisoning::kComprehensive})
        for (bool owner : {false, true})
          if (poison != capheap::Poisoning::kNone || owner) v.push_back({r, g, 4, poison, owner});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Regions, Stress, ::testing::ValuesIn(stress_params()), param_name);

// A fill-to-exhaustion pattern: many minimum blocks, then free in random order.
TEST(StressFill, MinimumBlocksUntilExhaustionThenRandomFree) {
  const std::uint64_t seed = seed_from_env(12345);
  std::printf("[ stress ] fill seed 0x%llx\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  for (Granule g : {Granule::k4, Granule::k8, Granule::k16}) {
    alignas(16) static unsigned char buf[8192];
    HeapConfig cfg;
    cfg.granule = g;
    Heap heap = Heap::create(buf, sizeof buf, cfg);
    ASSERT_TRUE(heap);
    CheckedHeap h(heap, false);
    const std::size_t initial = heap.free_bytes();
    std::vector<void *> ptrs;
    while (void *p = h.allocate(1))
      ptrs.push_back(p);
    // Every block is the 16-byte minimum rounded to the granule: the heap is exactly full.
    const std::size_t block = static_cast<std::size_t>(g) > 16 ? static_cast<std::size_t>(g) : 16;
    EXPECT_EQ(ptrs.size(), initial / block);
    EXPECT_LT(heap.free_bytes(), block);
    std::shuffle(ptrs.begin(), ptrs.end(), rng);
    for (void *p : ptrs)
      h.deallocate(p);
    EXPECT_EQ(heap.free_bytes(), initial);
    EXPECT_EQ(heap.info().free_blocks, 1u);
  }
}

}  // namespace
