// ir_caps.cpp — fixed loops over the heap statistics, capability dispatch and free's heap lookup,
// for callgrind instruction counts (bench/callgrind_caps.py runs and reads them).
//
//   capheap_ir_caps info N K     the statistics with N live blocks (info_fixture.hpp's worst case):
//                                irloop_heap_caps_get_info, irloop_heap_caps_largest_free_block
//                                (both MALLOC_CAP_DEFAULT on the ESP32 model plus the test heap),
//                                irloop_multi_heap_get_info (locked heap), irloop_engine_info,
//                                irloop_engine_largest_free_block (capheap::Heap)
//   capheap_ir_caps dispatch K   irloop_heap_caps_pair_<caps>: heap_caps_malloc(64) +
//                                heap_caps_free on the ESP32 model; irloop_multi_heap_pair: the
//                                same on a locked multi_heap heap of the size of the model's first
//                                DEFAULT heap; irloop_engine_pair: capheap::Heap, no lock;
//                                irloop_registry_free_<N>: engine allocate + Registry::deallocate
//                                (address lookup, lock, engine free) with N = 2..64 heaps of 4 KiB,
//                                frees cycling over heaps spread across the table;
//                                irloop_engine_pair_4k: the same engine pair on one such heap
//
// Each loop makes K iterations; every call it makes is to a library function or to a never-inlined
// wrapper (ir_registry_free), so callgrind's arcs out of the loop are the API's own cost. Run as
//   valgrind --tool=callgrind --toggle-collect='*irloop_*' capheap_ir_caps info 1000 2000
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "capheap/caps.hpp"
#include "capheap/heap.hpp"
#include "capi/capi_internal.hpp"
#include "caps_info_state.hpp"

#if defined(__clang__)
#define IR_FN __attribute__((noinline))
#else
#define IR_FN __attribute__((noipa))
#endif

namespace {

using capheap::bench::CapsInfoState;
using capheap::bench::MultiHeapInfoState;

constexpr std::size_t kRequest = 64;

[[noreturn]] void die(const char *what) {
  std::fprintf(stderr, "capheap_ir_caps: %s\n", what);
  std::exit(1);
}

// ---- Statistics ---------------------------------------------------------------------------------

IR_FN std::size_t irloop_heap_caps_get_info(std::size_t k) {
  std::size_t sum = 0;
  for (std::size_t i = 0; i < k; ++i) {
    multi_heap_info_t info;
    heap_caps_get_info(&info, MALLOC_CAP_DEFAULT);
    sum += info.largest_free_block;
  }
  return sum;
}

IR_FN std::size_t irloop_heap_caps_largest_free_block(std::size_t k) {
  std::size_t sum = 0;
  for (std::size_t i = 0; i < k; ++i)
    sum += heap_caps_get_largest_free_block(MALLOC_CAP_DEFAULT);
  return sum;
}

IR_FN std::size_t irloop_multi_heap_get_info(multi_heap_handle_t h, std::size_t k) {
  std::size_t sum = 0;
  for (std::size_t i = 0; i < k; ++i) {
    multi_heap_info_t info;
    multi_heap_get_info(h, &info);
    sum += info.largest_free_block;
  }
  return sum;
}

IR_FN std::size_t irloop_engine_info(capheap::Heap h, std::size_t k) {
  std::size_t sum = 0;
  for (std::size_t i = 0; i < k; ++i)
    sum += h.info().largest_free_block;
  return sum;
}

IR_FN std::size_t irloop_engine_largest_free_block(capheap::Heap h, std::size_t k) {
  std::size_t sum = 0;
  for (std::size_t i = 0; i < k; ++i)
    sum += h.largest_free_block();
  return sum;
}

int run_info(std::size_t live, std::size_t k) {
  std::size_t sink = 0;
  {
    CapsInfoState caps;
    if (const char *err = caps.setup(live)) die(err);
    sink += irloop_heap_caps_get_info(k);
    sink += irloop_heap_caps_largest_free_block(k);
  }
  {
    MultiHeapInfoState mh;
    if (const char *err = mh.setup(live)) die(err);
    sink += irloop_multi_heap_get_info(mh.heap(), k);
  }
  {
    const std::size_t bytes = capheap::bench::info_region_bytes(live);
    void *mem = std::aligned_alloc(4096, bytes);
    capheap::HeapConfig cfg;
    cfg.granule = capheap::Granule::k4;
    capheap::Heap h = capheap::Heap::create(mem, bytes, cfg);
    std::vector<void *> keep;
    if (!h || !capheap::bench::fill_worst_case(
                  live, [h](std::size_t n) mutable { return h.allocate(n); },
                  [h](void *p) mutable { h.deallocate(p); }, [h] { return h.largest_free_block(); },
                  keep)) {
      die("engine heap setup failed");
    }
    sink += irloop_engine_info(h, k);
    sink += irloop_engine_largest_free_block(h, k);
    std::free(mem);
  }
  std::printf("mode info\nlive %zu\niterations %zu\nsink %zu\n", live, k, sink);
  return 0;
}

// ---- Dispatch and free's heap lookup
// --------------------------------------------------------------

// One loop function per capability set, each with its own body, so that each gets its own arcs in
// the profile.
#define IR_CAPS_LOOP(name, caps)                           \
  IR_FN void irloop_heap_caps_pair_##name(std::size_t k) { \
    for (std::size_t i = 0; i < k; ++i)                    \
      heap_caps_free(heap_caps_malloc(kRequest, caps));    \
  }
IR_CAPS_LOOP(default, MALLOC_CAP_DEFAULT)
IR_CAPS_LOOP(dma, MALLOC_CAP_DMA)
IR_CAPS_LOOP(32bit, MALLOC_CAP_32BIT)
IR_CAPS_LOOP(internal_8bit, MALLOC_CAP_INTERNAL | MALLOC_CAP_8BIT)

IR_FN void irloop_multi_heap_pair(multi_heap_handle_t h, std::size_t k) {
  for (std::size_t i = 0; i < k; ++i)
    multi_heap_free(h, multi_heap_malloc(h, kRequest));
}

IR_FN void irloop_engine_pair(capheap::Heap h, std::size_t k) {
  for (std::size_t i = 0; i < k; ++i)
    h.deallocate(h.allocate(kRequest));
}

IR_FN void irloop_engine_pair_4k(capheap::Heap h, std::size_t k) {
  for (std::size_t i = 0; i < k; ++i)
    h.deallocate(h.allocate(kRequest));
}

IR_FN void ir_registry_free(capheap::Registry &reg, void *p) {
  reg.deallocate(p);
}

#define IR_REGISTRY_LOOP(n)                                                         \
  IR_FN void irloop_registry_free_##n(capheap::Registry &reg, capheap::Heap *heaps, \
                                      std::size_t k) {                              \
    for (std::size_t i = 0; i < k; ++i)                                             \
      ir_registry_free(reg, heaps[i & 3].allocate(kRequest));                       \
  }
IR_REGISTRY_LOOP(2)
IR_REGISTRY_LOOP(4)
IR_REGISTRY_LOOP(8)
IR_REGISTRY_LOOP(16)
IR_REGISTRY_LOOP(32)
IR_REGISTRY_LOOP(64)

using RegistryLoop = void (*)(capheap::Registry &, capheap::Heap *, std::size_t);

void run_registry(unsigned n, RegistryLoop loop, std::size_t k) {
  static capheap::Registry reg;
  reg.init(4);
  std::vector<std::uint64_t> mem(n * 4096 / 8, 0);
  const std::uint32_t caps[3] = {MALLOC_CAP_8BIT | MALLOC_CAP_DEFAULT, 0, 0};
  const auto base = reinterpret_cast<std::uintptr_t>(mem.data());
  for (unsigned i = 0; i < n; ++i) {
    if (reg.add_region(caps, base + i * 4096, base + (i + 1) * 4096, capheap::Placement::kBoot) !=
        capheap::Status::kOk) {
      die("Registry::add_region failed");
    }
  }
  // Four heaps spread across the address order (2 heaps: alternating), so that consecutive frees
  // never hit the same heap and every free searches the table.
  capheap::Heap heaps[4];
  for (unsigned j = 0; j < 4; ++j) {
    const unsigned pos = n >= 4 ? j * n / 4 : j % n;
    heaps[j] = reg.view(pos).heap;
  }
  loop(reg, heaps, k);
  reg.init(4);
}

int run_dispatch(std::size_t k) {
  capheap_host_config_t cfg = CAPHEAP_HOST_CONFIG_DEFAULT;
  cfg.psram_size = 0;
  if (capheap_host_init("esp32", &cfg) != ESP_OK) die("capheap_host_init failed");
  // The heap serving DEFAULT first, for a multi_heap / engine heap of the same size.
  void *p0 = heap_caps_malloc(kRequest, MALLOC_CAP_DEFAULT);
  capheap::Registry &reg = capheap::capi::registry();
  const int pos = reg.find_heap(p0);
  heap_caps_free(p0);
  if (pos < 0) die("no heap serves MALLOC_CAP_DEFAULT");
  const capheap::HeapView v = reg.view(static_cast<unsigned>(pos));
  const std::size_t size = v.end - v.start;

  irloop_heap_caps_pair_default(k);
  irloop_heap_caps_pair_dma(k);
  irloop_heap_caps_pair_32bit(k);
  irloop_heap_caps_pair_internal_8bit(k);

  std::vector<std::uint64_t> mem(size / 8 + 2, 0);
  capheap_heap_config_t hc{};
  hc.granule = 4;
  // multi_heap keeps an 8-byte lock pointer in front of the engine's control structure.
  multi_heap_handle_t mh = capheap_heap_register(mem.data(), size + 8, &hc);
  static capheap_lock_t lock;
  capheap_lock_init(&lock);
  multi_heap_set_lock(mh, &lock);
  irloop_multi_heap_pair(mh, k);

  std::vector<std::uint64_t> mem2(size / 8 + 2, 0);
  capheap::HeapConfig ec;
  ec.granule = capheap::Granule::k4;
  irloop_engine_pair(capheap::Heap::create(mem2.data(), size, ec), k);
  std::vector<std::uint64_t> mem4k(4096 / 8, 0);
  irloop_engine_pair_4k(capheap::Heap::create(mem4k.data(), 4096, ec), k);

  run_registry(2, irloop_registry_free_2, k);
  run_registry(4, irloop_registry_free_4, k);
  run_registry(8, irloop_registry_free_8, k);
  run_registry(16, irloop_registry_free_16, k);
  run_registry(32, irloop_registry_free_32, k);
  run_registry(64, irloop_registry_free_64, k);
  capheap_host_deinit();
  std::printf("mode dispatch\niterations %zu\nheap_size %zu\n", k, size);
  return 0;
}

bool parse_count(const char *s, std::size_t &out) {
  char *end = nullptr;
  const unsigned long long v = std::strtoull(s, &end, 10);
  if (end == s || *end != '\0' || s[0] == '-' || v == 0) return false;
  out = static_cast<std::size_t>(v);
  return true;
}

}  // namespace

int main(int argc, char **argv) {
  std::size_t live = 0;
  std::size_t k = 0;
  if (argc == 4 && std::strcmp(argv[1], "info") == 0 && parse_count(argv[2], live) &&
      parse_count(argv[3], k)) {
    return run_info(live, k);
  }
  if (argc == 3 && std::strcmp(argv[1], "dispatch") == 0 && parse_count(argv[2], k)) {
    return run_dispatch(k);
  }
  std::fprintf(stderr,
               "usage: capheap_ir_caps info LIVE_BLOCKS ITERATIONS\n"
               "       capheap_ir_caps dispatch ITERATIONS\n");
  return 2;
}
