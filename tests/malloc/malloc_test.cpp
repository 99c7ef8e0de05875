// malloc_test.cpp — the C library's allocation functions routed to heap_caps (src/malloc,
// capheap::malloc) inside a host process running the simulated ESP32 (capheap::host, default
// chip). Everything this program allocates — gtest included — comes from the chip once
// capheap_malloc's start-up constructor has initialised it; a block made before (in
// .preinit_array) comes from glibc and must still be usable and freeable.
//
// Not built with sanitizers (they replace malloc themselves). Suite names start with "malloc_"
// (ctest -R malloc).

#include <gtest/gtest.h>

#include <malloc.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "capheap/caps.hpp"
#include "capheap_host.h"
#include "capi/capi_internal.hpp"
#include "esp_heap_caps.h"

extern "C" void *__libc_malloc(std::size_t size);

namespace {

// ESP32 internal data RAM (DRAM and D/IRAM data addresses) in chip addresses.
constexpr std::uintptr_t kEsp32DramLow = 0x3FFAE000;
constexpr std::uintptr_t kEsp32DramHigh = 0x40000000;

// A block allocated before any constructor: the chip is not initialised yet, so glibc serves it.
void *g_preinit_block = nullptr;
bool g_preinit_ran = false;
void PreinitAlloc(int, char **, char **) {
  g_preinit_ran = true;
  g_preinit_block = std::malloc(64);
  if (g_preinit_block != nullptr) std::memset(g_preinit_block, 0x5A, 64);
}
__attribute__((section(".preinit_array"), used)) void (*const g_preinit)(int, char **,
                                                                         char **) = PreinitAlloc;

// Made by an ordinary dynamic initialiser, after capheap_malloc's priority-101 constructor.
std::string *g_static_init_string = new std::string(200, 's');

/// Keeps the compiler from eliding an allocation whose result is otherwise unused.
template <class T>
T *Escape(T *p) {
  asm volatile("" : : "g"(p) : "memory");
  return p;
}

/// Hides a constant from the compiler's allocation-size warnings.
std::size_t Opaque(std::size_t v) {
  volatile std::size_t x = v;
  return x;
}

bool InChip(const void *p) {
  return p != nullptr && capheap::capi::registry().find_heap(p) >= 0;
}

/// Success if p is a live block of a DEFAULT heap of the ESP32's internal data RAM.
::testing::AssertionResult InEsp32Dram(const void *p) {
  if (p == nullptr) return ::testing::AssertionFailure() << "null";
  const capheap::Registry &r = capheap::capi::registry();
  const int pos = r.find_heap(p);
  if (pos < 0) return ::testing::AssertionFailure() << p << " is not in the simulated chip";
  const std::uintptr_t chip = capheap_host_to_chip(p);
  if (chip < kEsp32DramLow || chip >= kEsp32DramHigh) {
    char text[64];
    std::snprintf(text, sizeof text, "chip address 0x%08llX",
                  static_cast<unsigned long long>(chip));
    return ::testing::AssertionFailure() << p << " is " << text << ", outside DRAM";
  }
  if (capheap_host_uses_chip_addresses() && reinterpret_cast<std::uintptr_t>(p) != chip) {
    return ::testing::AssertionFailure() << p << " is not at its chip address";
  }
  if (!r.heap_matches(static_cast<unsigned>(pos), capheap::Caps::default_())) {
    return ::testing::AssertionFailure() << p << " is in a heap without MALLOC_CAP_DEFAULT";
  }
  return ::testing::AssertionSuccess();
}

/// Success if p is a live block of a MALLOC_CAP_DEFAULT heap of the simulated chip (internal RAM,
/// or PSRAM when the chip has some: memalign & co. ask for MALLOC_CAP_DEFAULT, which prefers the
/// external RAM heap at the head of the list, and large malloc requests go there by policy).
::testing::AssertionResult InChipDefault(const void *p) {
  if (p == nullptr) return ::testing::AssertionFailure() << "null";
  const capheap::Registry &r = capheap::capi::registry();
  const int pos = r.find_heap(p);
  if (pos < 0) return ::testing::AssertionFailure() << p << " is not in the simulated chip";
  if (!r.heap_matches(static_cast<unsigned>(pos), capheap::Caps::default_())) {
    return ::testing::AssertionFailure() << p << " is in a heap without MALLOC_CAP_DEFAULT";
  }
  if (heap_caps_get_allocated_size(const_cast<void *>(p)) == 0) {
    return ::testing::AssertionFailure() << p << " is not a live block";
  }
  return ::testing::AssertionSuccess();
}

bool HostAligned(const void *p, std::size_t a = alignof(std::max_align_t)) {
  return reinterpret_cast<std::uintptr_t>(p) % a == 0;
}

class malloc_Routing : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(capheap::capi::initialised()) << "capheap_malloc did not initialise the chip";
    ASSERT_NE(capheap_host_chip(), nullptr);
    if (std::strcmp(capheap_host_chip(), "esp32") != 0) GTEST_SKIP() << "needs CAPHEAP_CHIP=esp32";
  }
};

TEST_F(malloc_Routing, MallocReturnsEsp32Dram) {
  void *p = Escape(std::malloc(100));
  const bool in_dram = InEsp32Dram(p);
  const std::size_t usable = heap_caps_get_allocated_size(p);
  std::free(p);
  EXPECT_TRUE(in_dram);
  EXPECT_GE(usable, 100u);
  EXPECT_TRUE(HostAligned(p));
  if (capheap_host_uses_chip_addresses()) {
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    EXPECT_GE(a, kEsp32DramLow);
    EXPECT_LT(a, kEsp32DramHigh);
  }
}

TEST_F(malloc_Routing, FreeGivesTheMemoryBack) {
  const std::size_t before = heap_caps_get_free_size(MALLOC_CAP_DEFAULT);
  void *p = Escape(std::malloc(1000));
  const std::size_t during = heap_caps_get_free_size(MALLOC_CAP_DEFAULT);
  std::free(p);
  const std::size_t after = heap_caps_get_free_size(MALLOC_CAP_DEFAULT);
  EXPECT_LE(during + 1000, before);
  EXPECT_EQ(after, before);
  std::free(nullptr);  // no-op
  EXPECT_EQ(heap_caps_get_free_size(MALLOC_CAP_DEFAULT), before);
}

TEST_F(malloc_Routing, ZeroSizeGivesAUniqueBlock) {
  void *a = Escape(std::malloc(0));
  void *b = Escape(std::malloc(0));
  const bool a_in = InChip(a), b_in = InChip(b);
  const bool distinct = a != b;
  std::free(a);
  std::free(b);
  EXPECT_TRUE(a_in);
  EXPECT_TRUE(b_in);
  EXPECT_TRUE(distinct);
}

TEST_F(malloc_Routing, CallocZeroesAndChecksOverflow) {
  const std::size_t half = std::numeric_limits<std::size_t>::max() / 2 + 1;
  errno = 0;
  void *overflow = std::calloc(Opaque(half), Opaque(2));
  EXPECT_EQ(overflow, nullptr);
  EXPECT_EQ(errno, ENOMEM);

  // Dirty a block, free it, and calloc the same size: the memory is likely reused, and must be 0.
  auto *dirty = static_cast<unsigned char *>(Escape(std::malloc(400)));
  ASSERT_NE(dirty, nullptr);
  std::memset(dirty, 0xFF, 400);
  std::free(dirty);
  auto *z = static_cast<unsigned char *>(Escape(std::calloc(100, 4)));
  ASSERT_NE(z, nullptr);
  bool all_zero = true;
  for (std::size_t i = 0; i < 400; ++i)
    all_zero = all_zero && z[i] == 0;
  const bool in_dram = InEsp32Dram(z);
  std::free(z);
  EXPECT_TRUE(all_zero);
  EXPECT_TRUE(in_dram);

  errno = 0;
  void *huge = std::calloc(Opaque(1) << 20, Opaque(1024));  // 1 GiB: no heap has it
  EXPECT_EQ(huge, nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TEST_F(malloc_Routing, PosixMemalignRules) {
  int sentinel = 0;
  void *out = &sentinel;
  // Size 0: *out = NULL and success (ESP-IDF).
  EXPECT_EQ(posix_memalign(&out, 16, 0), 0);
  EXPECT_EQ(out, nullptr);
  // Alignment not a power of two, or not a multiple of sizeof(void *): EINVAL, *out untouched.
  for (std::size_t bad : {std::size_t(0), std::size_t(3), std::size_t(24), sizeof(void *) / 2}) {
    out = &sentinel;
    EXPECT_EQ(posix_memalign(&out, Opaque(bad), 16), EINVAL) << "alignment " << bad;
    EXPECT_EQ(out, &sentinel);
  }
  // Failure: ENOMEM as the result, *out and errno untouched.
  out = &sentinel;
  errno = 1234;
  EXPECT_EQ(posix_memalign(&out, 64, Opaque(std::size_t(1) << 30)), ENOMEM);
  EXPECT_EQ(out, &sentinel);
  EXPECT_EQ(errno, 1234);
  // Success.
  for (std::size_t a : {sizeof(void *), std::size_t(64), std::size_t(256), std::size_t(4096)}) {
    out = nullptr;
    ASSERT_EQ(posix_memalign(&out, a, 200), 0) << "alignment " << a;
    const bool aligned = HostAligned(out, a);
    const bool in_chip = InChipDefault(out);
    const std::size_t usable = malloc_usable_size(out);
    std::free(out);
    EXPECT_TRUE(aligned) << "alignment " << a;
    EXPECT_TRUE(in_chip);
    EXPECT_GE(usable, 200u);
  }
}

TEST_F(malloc_Routing, MemalignAlignedAllocVallocPvalloc) {
  void *m = Escape(memalign(128, 300));
  void *a = Escape(std::aligned_alloc(64, 128));
  void *v = Escape(valloc(100));
  void *pv = Escape(pvalloc(1));
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  EXPECT_TRUE(HostAligned(m, 128));
  EXPECT_TRUE(HostAligned(a, 64));
  EXPECT_TRUE(HostAligned(v, page));
  EXPECT_TRUE(HostAligned(pv, page));
  EXPECT_GE(malloc_usable_size(pv), page);
  for (void *p : {m, a, v, pv})
    EXPECT_TRUE(InChipDefault(p));
  for (void *p : {m, a, v, pv})
    std::free(p);

  errno = 0;
  EXPECT_EQ(memalign(Opaque(3), 10), nullptr);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(memalign(64, Opaque(std::size_t(1) << 30)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TEST_F(malloc_Routing, ReallocKeepsTheData) {
  auto *p = static_cast<unsigned char *>(Escape(std::malloc(10)));
  ASSERT_NE(p, nullptr);
  for (unsigned i = 0; i < 10; ++i)
    p[i] = static_cast<unsigned char>(i);
  bool ok = true;
  std::size_t prev = 10;
  for (std::size_t n : {std::size_t(1000), std::size_t(50000), std::size_t(3000), std::size_t(20),
                        std::size_t(70000)}) {
    auto *q = static_cast<unsigned char *>(std::realloc(p, n));
    ASSERT_NE(q, nullptr) << n;
    p = q;
    const std::size_t keep = prev < n ? prev : n;
    for (std::size_t i = 0; i < keep; ++i)
      ok = ok && p[i] == static_cast<unsigned char>(i);
    for (std::size_t i = keep; i < n; ++i)
      p[i] = static_cast<unsigned char>(i);
    EXPECT_TRUE(n <= 1000 ? InEsp32Dram(p) : InChipDefault(p)) << n;
    EXPECT_TRUE(HostAligned(p)) << n;
    EXPECT_GE(malloc_usable_size(p), n);
    prev = n;
  }
  EXPECT_TRUE(ok);

  // Failure keeps the block.
  errno = 0;
  EXPECT_EQ(std::realloc(p, Opaque(std::size_t(1) << 30)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(p[5], 5);

  // realloc(p, 0) frees; realloc(NULL, n) allocates.
  const std::size_t before_free = heap_caps_get_free_size(MALLOC_CAP_DEFAULT);
  EXPECT_EQ(std::realloc(p, Opaque(0)), nullptr);
  EXPECT_GT(heap_caps_get_free_size(MALLOC_CAP_DEFAULT), before_free);
  void *fresh = Escape(std::realloc(nullptr, 30));
  EXPECT_TRUE(InEsp32Dram(fresh));
  std::free(fresh);
}

TEST_F(malloc_Routing, MallocUsableSize) {
  for (std::size_t n : {1u, 12u, 37u, 100u, 4000u}) {
    void *p = Escape(std::malloc(n));
    const std::size_t usable = malloc_usable_size(p);
    const std::size_t caps_usable = heap_caps_get_allocated_size(p);
    std::free(p);
    EXPECT_GE(usable, n);
    EXPECT_EQ(usable, caps_usable);
  }
  EXPECT_EQ(malloc_usable_size(nullptr), 0u);
}

TEST_F(malloc_Routing, GlibcBlocksStayWithGlibc) {
  // The block made in .preinit_array, before any constructor ran (consumed by the first run of
  // this test; with --gtest_repeat a fresh glibc block stands in).
  ASSERT_TRUE(g_preinit_ran);
  unsigned char *early = static_cast<unsigned char *>(g_preinit_block);
  g_preinit_block = nullptr;
  if (early == nullptr) {
    early = static_cast<unsigned char *>(__libc_malloc(64));
    ASSERT_NE(early, nullptr);
    std::memset(early, 0x5A, 64);
  }
  EXPECT_FALSE(InChip(early));
  EXPECT_GE(malloc_usable_size(early), 64u);
  auto *grown = static_cast<unsigned char *>(std::realloc(early, 4000));
  ASSERT_NE(grown, nullptr);
  EXPECT_FALSE(InChip(grown));  // a glibc block is resized by glibc
  EXPECT_EQ(grown[63], 0x5A);
  const std::size_t chip_free = heap_caps_get_free_size(MALLOC_CAP_DEFAULT);
  std::free(grown);
  EXPECT_EQ(heap_caps_get_free_size(MALLOC_CAP_DEFAULT), chip_free);
}

TEST_F(malloc_Routing, FreeTakesInstructionBusAliases) {
  // EXEC requests go to IRAM first, then to D/IRAM, which returns instruction-bus aliases: plain
  // free() and malloc_usable_size() must recognise those as chip blocks too.
  const capheap::Registry &r = capheap::capi::registry();
  std::vector<void *> iram;
  iram.reserve(1024);  // (the vector's own buffer comes from the chip too)
  const std::size_t before = heap_caps_get_free_size(0);
  void *alias = nullptr;
  for (int i = 0; i < 1024 && alias == nullptr; ++i) {
    void *p = heap_caps_malloc(1024, MALLOC_CAP_EXEC);
    if (p == nullptr) break;
    if (r.is_iram_alias(p)) {
      alias = p;
    } else {
      iram.push_back(p);
    }
  }
  for (void *p : iram)
    std::free(p);
  if (alias == nullptr) GTEST_SKIP() << "no EXEC allocation reached D/IRAM";
  EXPECT_EQ(r.find_heap(alias), -1);  // not a data-bus address
  EXPECT_GE(malloc_usable_size(alias), 1024u);
  std::free(alias);
  EXPECT_EQ(heap_caps_get_free_size(0), before);
}

TEST_F(malloc_Routing, StaticInitialisationUsesTheChip) {
  ASSERT_NE(g_static_init_string, nullptr);
  EXPECT_TRUE(InChip(g_static_init_string));
  EXPECT_TRUE(InEsp32Dram(g_static_init_string->data()));
}

TEST_F(malloc_Routing, HostAlignmentForEverySize) {
  std::vector<void *> blocks;
  blocks.reserve(200);
  for (std::size_t n = 1; n <= 200; ++n)
    blocks.push_back(std::malloc(n));
  bool aligned = true, inside = true;
  for (void *p : blocks) {
    aligned = aligned && HostAligned(p);
    inside = inside && InChip(p);
  }
  for (void *p : blocks)
    std::free(p);
  EXPECT_TRUE(aligned);
  EXPECT_TRUE(inside);
}

struct alignas(64) Line {
  unsigned char b[64];
};

TEST_F(malloc_Routing, CxxRuntimeAllocatesFromTheChip) {
  std::vector<int> v(1000, 7);
  EXPECT_TRUE(InEsp32Dram(v.data()));
  std::string s(500, 'x');
  EXPECT_TRUE(InEsp32Dram(s.data()));
  s += std::string(300, 'y');
  EXPECT_TRUE(InEsp32Dram(s.data()));
  auto shared = std::make_shared<std::map<int, std::string>>();
  (*shared)[1] = std::string(100, 'a');
  EXPECT_TRUE(InEsp32Dram(shared.get()));
  EXPECT_TRUE(InEsp32Dram((*shared)[1].data()));
  std::unique_ptr<int[]> arr(new int[64]());
  EXPECT_TRUE(InEsp32Dram(arr.get()));
  std::unique_ptr<Line> line(new Line());  // aligned operator new: aligned_alloc
  EXPECT_TRUE(HostAligned(line.get(), 64));
  EXPECT_TRUE(InChipDefault(line.get()));
  // The C library's own allocations go through the same functions.
  char *dup = strdup("capheap");
  EXPECT_TRUE(InEsp32Dram(dup));
  auto *grown = static_cast<char *>(reallocarray(dup, 100, 4));
  ASSERT_NE(grown, nullptr);
  EXPECT_TRUE(InEsp32Dram(grown));
  EXPECT_STREQ(grown, "capheap");
  std::free(grown);
  char *text = nullptr;
  ASSERT_GT(asprintf(&text, "%s-%d", "capheap", 42), 0);
  EXPECT_TRUE(InEsp32Dram(text));
  EXPECT_STREQ(text, "capheap-42");
  std::free(text);
}

TEST_F(malloc_Routing, ContainersGiveEverythingBack) {
  const std::size_t before = heap_caps_get_free_size(MALLOC_CAP_DEFAULT);
  {
    std::vector<std::string> words;
    for (int i = 0; i < 200; ++i)
      words.push_back(std::string(static_cast<std::size_t>(i), 'w'));
    std::map<int, std::vector<int>> m;
    for (int i = 0; i < 100; ++i)
      m[i].assign(static_cast<std::size_t>(i), i);
  }
  EXPECT_EQ(heap_caps_get_free_size(MALLOC_CAP_DEFAULT), before);
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
}

TEST(malloc_Threads, ConcurrentMallocFree) {
  ASSERT_TRUE(capheap::capi::initialised());
  constexpr int kThreads = 4;
  constexpr int kIterations = 20000;
  std::atomic<int> outside{0}, corrupted{0}, failed{0};
  auto worker = [&](unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<std::size_t> size_of(1, 512);
    struct Live {
      unsigned char *p;
      std::size_t n;
      unsigned char tag;
    };
    Live live[32] = {};
    for (int it = 0; it < kIterations; ++it) {
      Live &slot = live[rng() % 32];
      if (slot.p != nullptr) {
        for (std::size_t i = 0; i < slot.n; ++i)
          if (slot.p[i] != slot.tag) {
            ++corrupted;
            break;
          }
        if (rng() % 4 == 0) {
          const std::size_t n = size_of(rng);
          auto *q = static_cast<unsigned char *>(std::realloc(slot.p, n));
          if (q == nullptr) {
            ++failed;
            continue;
          }
          slot.p = q;
          slot.n = n;
          std::memset(q, slot.tag, n);
          continue;
        }
        std::free(slot.p);
        slot.p = nullptr;
        continue;
      }
      const std::size_t n = size_of(rng);
      auto *p = static_cast<unsigned char *>(rng() % 8 == 0 ? std::calloc(1, n) : std::malloc(n));
      if (p == nullptr) {
        ++failed;
        continue;
      }
      if (!InChip(p)) ++outside;
      slot = Live{p, n, static_cast<unsigned char>(rng())};
      std::memset(p, slot.tag, n);
    }
    for (Live &l : live)
      std::free(l.p);
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back(worker, 1000u + static_cast<unsigned>(t));
  for (std::thread &t : threads)
    t.join();
  EXPECT_EQ(outside.load(), 0);
  EXPECT_EQ(corrupted.load(), 0);
  EXPECT_EQ(failed.load(), 0);
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
}

}  // namespace
