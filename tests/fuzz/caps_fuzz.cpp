// caps_fuzz.cpp — differential fuzzer of the heap_caps_* layer on the host simulator.
//
// Input: a chip (one of the bundled layouts) and host options, then a sequence of heap_caps_*
// calls with fuzzed capability masks (impossible combinations and MALLOC_CAP_INVALID included)
// and sizes, plus occasional heap_caps_add_region_with_caps of host memory. The oracle is
// ESP-IDF's selection rule written from the spec (esp-idf-heap-spec.md §2, §3.2-§3.4), not the
// registry's own walk: for prio 0, 1, 2, for each heap in list order, a heap is tried at the first
// level where it shares a requested bit, if its combined caps hold every requested bit. With each
// heap's largest free block taken before the call, a plain request must land in the first heap of
// that walk able to hold it (NULL if none); an aligned one in no heap after one that certainly
// could have held it.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <vector>

#include "capheap.h"
#include "capheap/caps.hpp"
#include "capheap_host.h"
#include "capi/capi_internal.hpp"
#include "esp_heap_caps.h"
#include "esp_heap_caps_init.h"
#include "fuzz_common.hpp"

namespace {

using capheap_fuzz::Reader;

[[noreturn]] void on_fail(const char *what, const void *addr, const void *heap) {
  std::fprintf(stderr, "capheap fail hook: %s at %p (heap %p)\n", what, addr, heap);
  capheap_fuzz::fail(__FILE__, __LINE__, "fail hook", "capheap reported corruption");
}

struct HeapSnap {
  std::uint32_t caps[CAPHEAP_PRIORITY_LEVELS];
  std::uint32_t all;
  std::uintptr_t start, end, iram_start;
  bool registered;
  std::size_t largest;
};

std::vector<HeapSnap> snapshot() {
  capheap::Registry &reg = capheap::capi::registry();
  std::vector<HeapSnap> s;
  for (unsigned i = 0; i < reg.count(); ++i) {
    const capheap::HeapView v = reg.view(i);
    HeapSnap h{};
    for (unsigned l = 0; l < CAPHEAP_PRIORITY_LEVELS; ++l)
      h.caps[l] = v.caps[l];
    h.all = v.caps[0] | v.caps[1] | v.caps[2];
    h.start = v.start;
    h.end = v.end;
    h.iram_start = v.iram_start;
    h.registered = v.registered && static_cast<bool>(v.heap);
    h.largest = h.registered ? v.heap.largest_free_block() : 0;
    s.push_back(h);
  }
  return s;
}

/// ESP-IDF's order of attempts for the requested caps (spec §3.2).
std::vector<unsigned> walk(const std::vector<HeapSnap> &heaps, std::uint32_t req) {
  std::vector<unsigned> order;
  std::vector<bool> tried(heaps.size(), false);
  for (unsigned prio = 0; prio < CAPHEAP_PRIORITY_LEVELS; ++prio)
    for (unsigned i = 0; i < heaps.size(); ++i) {
      const HeapSnap &h = heaps[i];
      if (tried[i] || !h.registered) continue;
      if ((h.caps[prio] & req) != 0 && (h.all & req) == req) {
        tried[i] = true;
        order.push_back(i);
      }
    }
  return order;
}

/// The heap (list position) holding p, resolving D/IRAM instruction aliases; -1 if none.
int owner_heap(const std::vector<HeapSnap> &heaps, const void *p) {
  capheap::Registry &reg = capheap::capi::registry();
  std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p);
  if (reg.is_iram_alias(p)) a = reinterpret_cast<std::uintptr_t>(reg.data_address_of_alias(p));
  int found = -1;
  std::uintptr_t best = 0;
  for (unsigned i = 0; i < heaps.size(); ++i) {
    // The innermost heap containing a (heaps can be added inside another heap's block).
    if (a >= heaps[i].start && a < heaps[i].end && (found < 0 || heaps[i].start >= best)) {
      found = static_cast<int>(i);
      best = heaps[i].start;
    }
  }
  return found;
}

/// What a request should do: NULL regardless, or the walk with each heap's needed size.
struct Expect {
  bool null = false;            // decided NULL (invalid arguments or impossible caps)
  bool exact = true;            // plain request: the result heap is fully determined
  std::uint32_t req = 0;        // caps after ESP-IDF's adjustments
  std::size_t size = 0;         // bytes the engine is asked for (rounded)
  std::size_t alignment = 0;    // address alignment the result must have (0/1: none)
  bool exec = false;            // EXEC: D/IRAM heaps hand out an instruction alias (size + 4)
  std::vector<unsigned> order;  // the walk
};

std::size_t round_up(std::size_t v, std::size_t a) {
  return (v + a - 1) / a * a;
}

bool is_pow2(std::size_t v) {
  return v != 0 && (v & (v - 1)) == 0;
}

Expect expect_malloc(const std::vector<HeapSnap> &heaps, std::size_t size, std::uint32_t caps) {
  Expect e;
  if (size == 0 || caps == 0 || (caps & MALLOC_CAP_INVALID) != 0) return e.null = true, e;
  if ((caps & MALLOC_CAP_EXEC) != 0) {
    if ((caps & (MALLOC_CAP_8BIT | MALLOC_CAP_DMA)) != 0) return e.null = true, e;
    caps |= MALLOC_CAP_32BIT;
    e.exec = true;
  }
  if (size > (std::size_t{1} << 31)) return e.null = true, e;  // larger than any region
  if ((caps & MALLOC_CAP_32BIT) != 0) size = round_up(size, 4);
  capheap::Caps adj(caps);
  const std::size_t hw = capheap::capi::registry().hw_alignment(adj);
  // DMA_DESC_* become DMA (spec §2), which executable memory never is (§3.3).
  if (e.exec && (adj.bits() & (MALLOC_CAP_8BIT | MALLOC_CAP_DMA)) != 0) return e.null = true, e;
  if (hw != 0) size = round_up(size, hw);
  e.req = adj.bits();
  e.size = size;
  e.alignment = hw;
  e.exact = hw == 0;
  e.order = walk(heaps, e.req);
  return e;
}

Expect expect_aligned(const std::vector<HeapSnap> &heaps, std::size_t alignment, std::size_t size,
                      std::uint32_t caps) {
  Expect e;
  if (!is_pow2(alignment) || size == 0 || caps == 0 || (caps & MALLOC_CAP_INVALID) != 0)
    return e.null = true, e;
  if (size > (std::size_t{1} << 31) || alignment > (std::size_t{1} << 31)) return e.null = true, e;
  capheap::Caps adj(caps);
  const std::size_t hw = capheap::capi::registry().hw_alignment(adj);
  if (hw > alignment) alignment = hw;
  // Hardware-alignment caps round the size to the larger alignment, even where the chip needs no
  // hardware alignment for them (spec §2).
  constexpr std::uint32_t kHwAlignCaps = MALLOC_CAP_DMA | MALLOC_CAP_DMA_DESC_AHB |
                                         MALLOC_CAP_DMA_DESC_AXI | MALLOC_CAP_CACHE_ALIGNED |
                                         MALLOC_CAP_SIMD;
  if ((caps & kHwAlignCaps) != 0) size = round_up(size, alignment);
  e.req = adj.bits();
  e.size = size;
  e.alignment = alignment;
  e.exact = alignment <= 4;
  e.order = walk(heaps, e.req);
  return e;
}

// Bytes heap h must have as its largest free block to hold the request for certain (exact: also
// the most it may have without holding it).
std::size_t needed(const Expect &e, const HeapSnap &h) {
  if (e.exact) return e.size + (e.exec && h.iram_start != 0 ? 4 : 0);
  return e.size + e.alignment + 64;
}

void check_result(const Expect &e, const std::vector<HeapSnap> &heaps, const void *p,
                  std::size_t granule) {
  if (e.null) {
    FUZZ_CHECK(p == nullptr, "request that must fail returned a block");
    return;
  }
  if (p == nullptr) {
    for (unsigned i : e.order)
      FUZZ_CHECK(heaps[i].largest < needed(e, heaps[i]),
                 "NULL although a heap in ESP-IDF's walk had room");
    return;
  }
  const int h = owner_heap(heaps, p);
  FUZZ_CHECK(h >= 0, "returned block lies in no heap");
  const HeapSnap &heap = heaps[static_cast<unsigned>(h)];
  FUZZ_CHECK((heap.all & e.req) == e.req, "returned block's heap lacks requested caps");
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  FUZZ_CHECK(a % 4 == 0, "returned pointer not 4-byte aligned");
  if (!capheap::capi::registry().is_iram_alias(p))
    FUZZ_CHECK(a % granule == 0, "returned pointer not granule-aligned");
  if (e.alignment > 1 && a % e.alignment != 0)
    std::fprintf(stderr, "pointer %p (alias %d) caps 0x%x size %zu alignment %zu heap %d\n", p,
                 capheap::capi::registry().is_iram_alias(p) ? 1 : 0, e.req, e.size, e.alignment, h);
  if (e.alignment > 1) FUZZ_CHECK(a % e.alignment == 0, "returned pointer misaligned");
  bool in_walk = false;
  for (unsigned i : e.order) {
    if (i == static_cast<unsigned>(h)) {
      in_walk = true;
      break;
    }
    FUZZ_CHECK(heaps[i].largest < needed(e, heaps[i]),
               "a heap earlier in ESP-IDF's walk could have satisfied the request");
  }
  FUZZ_CHECK(in_walk, "returned block's heap is not in ESP-IDF's walk for these caps");
  if (e.exact) FUZZ_CHECK(heap.largest >= needed(e, heap), "block from a heap without room");
}

struct Live {
  unsigned char *p;
  std::size_t size;
  std::uint32_t id;
};

unsigned char pattern(std::uint32_t id, std::size_t i) {
  return static_cast<unsigned char>((id * 29u + static_cast<std::uint32_t>(i) * 13u + 5u) & 0xFFu);
}

void fill(const Live &b) {
  for (std::size_t i = 0; i < b.size; ++i)
    b.p[i] = pattern(b.id, i);
}

bool intact(const Live &b, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    if (b.p[i] != pattern(b.id, i)) return false;
  return true;
}

std::uint32_t decode_caps(Reader &in) {
  static const std::uint32_t kCommon[] = {
      MALLOC_CAP_DEFAULT,
      MALLOC_CAP_8BIT,
      MALLOC_CAP_32BIT,
      MALLOC_CAP_EXEC,
      MALLOC_CAP_DMA,
      MALLOC_CAP_SPIRAM,
      MALLOC_CAP_INTERNAL,
      MALLOC_CAP_DEFAULT | MALLOC_CAP_INTERNAL,
      MALLOC_CAP_INTERNAL | MALLOC_CAP_8BIT,
      MALLOC_CAP_DMA | MALLOC_CAP_INTERNAL,
      MALLOC_CAP_SPIRAM | MALLOC_CAP_8BIT,
      MALLOC_CAP_DEFAULT | MALLOC_CAP_SPIRAM,
      MALLOC_CAP_DMA | MALLOC_CAP_SPIRAM,
      MALLOC_CAP_EXEC | MALLOC_CAP_8BIT,
      MALLOC_CAP_EXEC | MALLOC_CAP_32BIT,
      MALLOC_CAP_RTCRAM,
      MALLOC_CAP_RETENTION,
      MALLOC_CAP_SPM,
      MALLOC_CAP_DMA_DESC_AHB,
      MALLOC_CAP_DMA_DESC_AXI,
      MALLOC_CAP_CACHE_ALIGNED,
      MALLOC_CAP_CACHE_ALIGNED | MALLOC_CAP_SPIRAM,
      MALLOC_CAP_SIMD,
      MALLOC_CAP_INVALID,
      MALLOC_CAP_DEFAULT | MALLOC_CAP_INVALID,
      0,
      1u << 30,
      MALLOC_CAP_IRAM_8BIT,
  };
  constexpr unsigned kCount = sizeof kCommon / sizeof kCommon[0];
  const std::uint8_t sel = in.u8();
  if (sel < 200) return kCommon[sel % kCount];
  if (sel < 240) return kCommon[sel % kCount] | kCommon[in.u8() % kCount];
  return in.u32();
}

std::size_t decode_size(Reader &in) {
  const std::uint8_t sel = in.u8();
  switch (sel % 8) {
    case 0:
    case 1:
    case 2:
      return in.u8() % 80;
    case 3:
    case 4:
      return in.u16() % 8192;
    case 5:
      return in.u32() % (1u << 20);
    case 6:
      return 0;
    default: {
      static const std::size_t kOdd[] = {
          SIZE_MAX,    SIZE_MAX - 2, (std::size_t{1} << 31) + 1, std::size_t{1} << 31,
          0xFFFFFFFFu, 128 * 1024};
      return kOdd[in.u8() % (sizeof kOdd / sizeof kOdd[0])];
    }
  }
}

constexpr const char *kChips[] = {"esp32",     "esp32s2", "esp32s3",  "esp32c2",
                                  "esp32c3",   "esp32c6", "esp32h2",  "esp32p4",
                                  "imxrt1062", "rp2350",  "stm32h743"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  capheap_fuzz::count_execution("caps_fuzz");
  capheap_set_fail_hook(on_fail);
  Reader in(data, size);

  // ---- Chip and options ----
  const char *chip = kChips[in.u8() % (sizeof kChips / sizeof kChips[0])];
  const std::uint8_t o1 = in.u8();
  const std::uint8_t o2 = in.u8();
  capheap_host_config_t cfg = CAPHEAP_HOST_CONFIG_DEFAULT;
  switch (o1 % 4) {
    case 0:
      cfg.psram_size = 0;
      break;
    case 1:
      cfg.psram_size = CAPHEAP_HOST_DEFAULT_SIZE;
      break;
    default:
      cfg.psram_size = (std::size_t{o2} % 64 + 1) * 16384;  // 16 KiB .. 1 MiB
      break;
  }
  cfg.poisoning = static_cast<capheap_poisoning_t>((o1 / 4) % 3);
  static const std::size_t kGranules[] = {0, 4, 8, 16};
  cfg.granule = kGranules[(o1 / 12) % 4];
  cfg.chip_addresses = (o1 & 0x40) != 0;
  cfg.memory_protection = static_cast<capheap_memprot_t>((o2 >> 6) % 3);
  cfg.task_tracking = (o1 & 0x80) != 0;
  const esp_err_t init = capheap_host_init(chip, &cfg);
  if (init != ESP_OK) {
    FUZZ_CHECK(init == ESP_ERR_INVALID_ARG, "capheap_host_init failed unexpectedly");
    return 0;
  }
  const std::size_t granule = cfg.granule == 0 ? 4 : cfg.granule;
  capheap::Registry &reg = capheap::capi::registry();

  std::map<std::uintptr_t, std::size_t> start_free;  // heap start -> free bytes at the start
  auto record_free = [&]() {
    for (unsigned i = 0; i < reg.count(); ++i) {
      const capheap::HeapView v = reg.view(i);
      if (v.registered && v.heap && start_free.count(v.start) == 0)
        start_free[v.start] = v.heap.free_bytes();
    }
  };
  record_free();
  multi_heap_info_t base{};
  heap_caps_get_info(&base, 0);

  std::vector<Live> live;
  std::vector<void *> regions;  // host memory given to heap_caps_add_region_with_caps
  std::uint32_t next_id = 1;

  auto admit = [&](void *p, std::size_t n) {
    Live b{static_cast<unsigned char *>(p), n, next_id++};
    FUZZ_CHECK(heap_caps_get_allocated_size(p) >= n, "allocated size below the request");
    fill(b);
    live.push_back(b);
  };
  auto drop = [&](std::size_t index) {
    live[index] = live.back();
    live.pop_back();
  };

  for (unsigned n = 0; !in.empty() && n < 400; ++n) {
    capheap_fuzz::count_operation();
    const std::uint8_t op = in.u8();
    const std::vector<HeapSnap> before = snapshot();
    switch (op % 10) {
      case 0:
      case 1: {  // heap_caps_malloc
        const std::size_t want = decode_size(in);
        const std::uint32_t caps = decode_caps(in);
        void *p = heap_caps_malloc(want, caps);
        check_result(expect_malloc(before, want, caps), before, p, granule);
        if (p != nullptr) admit(p, want);
        break;
      }
      case 2: {  // heap_caps_calloc
        const std::size_t count = in.u8() % 5;
        const std::size_t each = decode_size(in);
        const std::uint32_t caps = decode_caps(in);
        void *p = heap_caps_calloc(count, each, caps);
        if (count != 0 && each > SIZE_MAX / count) {
          FUZZ_CHECK(p == nullptr, "calloc with an overflowing n * size returned a block");
          break;
        }
        check_result(expect_malloc(before, count * each, caps), before, p, granule);
        if (p != nullptr) {
          const auto *bytes = static_cast<const unsigned char *>(p);
          for (std::size_t i = 0; i < count * each; ++i)
            FUZZ_CHECK(bytes[i] == 0, "calloc block not zeroed");
          admit(p, count * each);
        }
        break;
      }
      case 3: {  // heap_caps_aligned_alloc
        const std::uint8_t sel = in.u8();
        const std::size_t alignment = sel < 220 ? std::size_t{1} << (sel % 13) : sel % 40u;
        const std::size_t want = decode_size(in);
        const std::uint32_t caps = decode_caps(in);
        void *p = heap_caps_aligned_alloc(alignment, want, caps);
        check_result(expect_aligned(before, alignment, want, caps), before, p, granule);
        if (p != nullptr) admit(p, want);
        break;
      }
      case 4: {  // heap_caps_realloc
        const std::uint8_t sel = in.u8();
        const std::size_t want = decode_size(in);
        const std::uint32_t caps = decode_caps(in);
        if (live.empty() || (sel & 0x80) != 0) {
          void *p = heap_caps_realloc(nullptr, want, caps);
          check_result(expect_malloc(before, want, caps), before, p, granule);
          if (p != nullptr) admit(p, want);
          break;
        }
        const std::size_t index = sel % live.size();
        const Live old = live[index];
        FUZZ_CHECK(intact(old, old.size), "payload changed before realloc");
        const int old_heap = owner_heap(before, old.p);
        void *p = heap_caps_realloc(old.p, want, caps);
        if (want == 0) {
          FUZZ_CHECK(p == nullptr, "realloc(p, 0) returned a block");
          drop(index);
          break;
        }
        if ((caps & MALLOC_CAP_INVALID) != 0) FUZZ_CHECK(p == nullptr, "realloc with INVALID");
        if (p == nullptr) {
          FUZZ_CHECK(intact(old, old.size), "failed realloc changed the payload");
          break;
        }
        const int h = owner_heap(before, p);
        FUZZ_CHECK(h >= 0, "realloc result lies in no heap");
        const std::uint32_t all = before[static_cast<unsigned>(h)].all;
        // Resized within its heap when that heap holds the caps as given (ESP-IDF's
        // heap_caps_match: caps 0 or EXEC|8BIT included), else moved as heap_caps_malloc would.
        if (!(h == old_heap && (all & caps) == caps)) {
          const Expect e = expect_malloc(before, want, caps);
          FUZZ_CHECK(!e.null, "realloc moved a block for caps malloc must refuse");
          FUZZ_CHECK((all & e.req) == e.req, "realloc result's heap lacks the requested caps");
        }
        const auto *bytes = static_cast<const unsigned char *>(p);
        for (std::size_t i = 0; i < std::min(old.size, want); ++i)
          FUZZ_CHECK(bytes[i] == pattern(old.id, i), "realloc lost payload bytes");
        drop(index);
        admit(p, want);
        break;
      }
      case 5:
      case 6: {  // heap_caps_free
        if (live.empty()) {
          heap_caps_free(nullptr);
          break;
        }
        const std::size_t index = in.u8() % live.size();
        FUZZ_CHECK(intact(live[index], live[index].size), "payload changed before free");
        heap_caps_free(live[index].p);
        drop(index);
        break;
      }
      case 7: {  // heap_caps_malloc_prefer with two or three caps lists
        const std::size_t want = decode_size(in);
        const std::uint32_t c1 = decode_caps(in), c2 = decode_caps(in), c3 = decode_caps(in);
        const bool three = (op & 0x80) != 0;
        void *p = three ? heap_caps_malloc_prefer(want, 3, c1, c2, c3)
                        : heap_caps_malloc_prefer(want, 2, c1, c2);
        // Each list in turn: the first that can succeed decides (a failed attempt changes nothing).
        const std::uint32_t lists[3] = {c1, c2, c3};
        bool decided = false;
        for (unsigned k = 0; k < (three ? 3u : 2u) && !decided; ++k) {
          const Expect e = expect_malloc(before, want, lists[k]);
          if (e.null) continue;
          if (!e.exact) {  // alignment: only "lands in a heap" is certain from here on
            decided = true;
            if (p != nullptr) FUZZ_CHECK(owner_heap(before, p) >= 0, "prefer: block in no heap");
            break;
          }
          bool can = false;
          for (unsigned i : e.order)
            can = can || before[i].largest >= needed(e, before[i]);
          if (can) {
            check_result(e, before, p, granule);
            decided = true;
          }
        }
        if (!decided) FUZZ_CHECK(p == nullptr, "prefer: no list could succeed, but a block came");
        if (p != nullptr) admit(p, want);
        break;
      }
      case 8: {  // heap_caps_add_region_with_caps of host memory
        if (regions.size() >= 4) break;
        const std::size_t bytes = (std::size_t{in.u8()} % 64 + 1) * 1024;
        const std::uint32_t caps[CAPHEAP_PRIORITY_LEVELS] = {decode_caps(in), decode_caps(in),
                                                             decode_caps(in)};
        void *mem = std::aligned_alloc(16, bytes);
        FUZZ_CHECK(mem != nullptr, "host aligned_alloc failed");
        const auto s = reinterpret_cast<intptr_t>(mem);
        const esp_err_t err =
            heap_caps_add_region_with_caps(caps, s, s + static_cast<intptr_t>(bytes));
        if (err != ESP_OK) {
          std::free(mem);
          break;
        }
        regions.push_back(mem);
        record_free();
        FUZZ_CHECK(start_free.count(static_cast<std::uintptr_t>(s)) == 1,
                   "added region is not a registered heap");
        break;
      }
      default: {  // public queries
        multi_heap_info_t all{};
        heap_caps_get_info(&all, 0);
        FUZZ_CHECK(all.allocated_blocks == base.allocated_blocks + live.size(),
                   "heap_caps_get_info: allocated blocks != live count");
        std::size_t free_sum = 0, largest = 0;
        for (unsigned i = 0; i < reg.count(); ++i) {
          const capheap::HeapView v = reg.view(i);
          if (!v.registered || !v.heap) continue;
          free_sum += v.heap.free_bytes();
          largest = std::max(largest, v.heap.largest_free_block());
        }
        FUZZ_CHECK(all.total_free_bytes == free_sum, "heap_caps_get_info: free bytes differ");
        FUZZ_CHECK(all.largest_free_block == largest, "heap_caps_get_info: largest differs");
        FUZZ_CHECK(heap_caps_get_free_size(0) == free_sum, "heap_caps_get_free_size(0) differs");
        break;
      }
    }
    FUZZ_CHECK(heap_caps_check_integrity_all(false), "heap_caps_check_integrity_all failed");
  }

  // ---- Free everything: every heap back to its starting free size ----
  for (const Live &b : live) {
    FUZZ_CHECK(intact(b, b.size), "payload changed before the final free");
    heap_caps_free(b.p);
  }
  FUZZ_CHECK(heap_caps_check_integrity_all(false), "integrity check failed after freeing all");
  for (unsigned i = 0; i < reg.count(); ++i) {
    const capheap::HeapView v = reg.view(i);
    if (!v.registered || !v.heap) continue;
    FUZZ_CHECK(v.heap.free_bytes() == start_free[v.start], "heap's free size not back to start");
  }
  capheap_host_deinit();
  for (void *mem : regions)
    std::free(mem);
  return 0;
}
