// heap_caps_chip_test.cpp — ESP-IDF application behaviour of heap_caps_* on simulated ESP32 and
// ESP32-S3 chips (with and without PSRAM), and every query on every bundled chip.
//
// What is proven here, per chip configuration:
//   * the heap list is ESP-IDF's (spec §3.1, §3.2, §5): runtime heaps first (the internal DMA
//     reserve pool, then PSRAM: newest first), then the boot heaps in the order of ESP-IDF's region
//     table, each with the memory type's three priority masks;
//   * heap_caps_malloc fills heaps in exactly ESP-IDF's order for DEFAULT, 8BIT, 32BIT, EXEC, DMA,
//     INTERNAL, SPIRAM, RTCRAM and combinations. The expected order is derived here, independently
//     of the library, from a hand-written model of the chip (boot heaps transcribed from the spec
//     and the layout files, runtime heaps from ESP-IDF's PSRAM start-up) and ESP-IDF's selection
//     rule (priority levels 0 → 2; within a level the heap list; a heap qualifies at a level if it
//     shares a requested bit there and has every requested bit; EXEC implies 32BIT);
//   * impossible requests return NULL and run the failure callback exactly once with ESP-IDF's
//     arguments; size 0 never runs it; calloc overflow and the calloc(0, n) quirk; aligned_alloc
//     argument errors;
//   * D/IRAM instruction aliases (ESP32-S3 shared pages, ESP32 inverted window), realloc moving
//     data between capabilities, runtime regions and their overlap rules, the malloc() policy with
//     the external-memory threshold, the _prefer variants and the internal DMA reserve;
//   * the C file heap_caps_esp_only.c — written only against ESP-IDF's headers — compiles as C11,
//     links and passes its scenarios on every configuration.
//
// Random choices (free order) print their seed; set CAPHEAP_TEST_SEED to replay one.

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "capheap.h"
#include "capheap_host.h"
#include "capi/capi_internal.hpp"
#include "esp_heap_caps.h"
#include "esp_heap_caps_init.h"
#include "sim/layout.hpp"
#include "support/decoration_support.hpp"

// The ESP-IDF-only C scenarios (heap_caps_esp_only.c).
extern "C" {
esp_err_t esp_only_install_failure_recorder(void);
void esp_only_reset_failures(void);
int esp_only_failure_count(void);
size_t esp_only_last_failure_size(void);
uint32_t esp_only_last_failure_caps(void);
const char *esp_only_last_failure_function(void);
int esp_only_register_null_callback_is_rejected(void);
int esp_only_alloc_free_restores(size_t size, uint32_t caps);
int esp_only_impossible_exec_combinations(void);
int esp_only_invalid_and_zero_caps(void);
int esp_only_zero_sizes_do_not_call_back(void);
int esp_only_calloc_zero_fills(size_t n, size_t size, uint32_t caps);
int esp_only_calloc_overflow_and_quirk(void);
int esp_only_aligned_alloc_sweep(uint32_t caps, size_t max_alignment, size_t *allocated);
int esp_only_allocated_size_is_exact(uint32_t caps, size_t max_size);
int esp_only_realloc_chain(const uint32_t *caps, size_t steps, size_t size, uintptr_t *addrs);
int esp_only_realloc_failure_keeps_block(uint32_t caps);
int esp_only_custom_capability_heap(size_t buf_size, uintptr_t *heap_start);
int esp_only_add_region_argument_errors(void);
int esp_only_queries_agree(uint32_t caps);
int esp_only_walk_tally(uint32_t caps, size_t *heaps, size_t *used, size_t *free_blocks);
int esp_only_monitor_local_minimum(uint32_t caps);
void *esp_only_malloc_prefer2(size_t size, uint32_t first, uint32_t second);
void *esp_only_calloc_prefer2(size_t n, size_t size, uint32_t first, uint32_t second);
void *esp_only_realloc_prefer2(void *ptr, size_t size, uint32_t first, uint32_t second);
}

namespace {

constexpr std::uint32_t kX = MALLOC_CAP_EXEC, k32 = MALLOC_CAP_32BIT, k8 = MALLOC_CAP_8BIT,
                        kDma = MALLOC_CAP_DMA, kS = MALLOC_CAP_SPIRAM, kI = MALLOC_CAP_INTERNAL,
                        kD = MALLOC_CAP_DEFAULT, kRet = MALLOC_CAP_RETENTION,
                        kRtc = MALLOC_CAP_RTCRAM, kInv = MALLOC_CAP_INVALID;
constexpr std::uint32_t kInvented = 1u << 30;  // no chip memory has it (ESP-IDF's tests use it too)
constexpr std::size_t kPsram = 4u << 20;

const char *const kEnvVars[] = {"CAPHEAP_CHIP",           "CAPHEAP_PSRAM",
                                "CAPHEAP_STATIC_DATA",    "CAPHEAP_POISONING",
                                "CAPHEAP_CHIP_ADDRESSES", "CAPHEAP_GRANULE"};

std::string hex(std::uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%08llX", static_cast<unsigned long long>(v));
  return b;
}

// ================================================================================================
// The failure callback as the application sees it
// ================================================================================================

struct Failure {
  std::size_t size;
  std::uint32_t caps;
  std::string function;
  bool operator==(const Failure &o) const {
    return size == o.size && caps == o.caps && function == o.function;
  }
};
std::ostream &operator<<(std::ostream &os, const Failure &f) {
  return os << "{size " << f.size << ", caps " << hex(f.caps) << ", \"" << f.function << "\"}";
}

std::vector<Failure> g_failures;
void on_alloc_failed(size_t size, uint32_t caps, const char *function_name) {
  g_failures.push_back(Failure{size, caps, function_name != nullptr ? function_name : "(null)"});
}

// ================================================================================================
// Chip configurations and the independent model of each one's heap list
// ================================================================================================

enum class Variant {
  kDefault,    // the layout file's defaults
  kRtcHeap,    // ESP32 with CONFIG_ESP_SYSTEM_ALLOW_RTC_FAST_MEM_AS_HEAP (single-core builds)
  kNoMemprot,  // ESP32-S3 without CONFIG_ESP_SYSTEM_MEMPROT_FEATURE: D/IRAM keeps EXEC
};

struct ChipConfig {
  const char *id;  // test-name suffix
  const char *chip;
  Variant variant;
  std::size_t psram;
};

const ChipConfig kConfigs[] = {
    {"esp32", "esp32", Variant::kDefault, 0},
    {"esp32_psram", "esp32", Variant::kDefault, kPsram},
    {"esp32_rtcheap", "esp32", Variant::kRtcHeap, 0},
    {"esp32s3", "esp32s3", Variant::kDefault, 0},
    {"esp32s3_psram", "esp32s3", Variant::kDefault, kPsram},
    {"esp32s3_nomemprot", "esp32s3", Variant::kNoMemprot, 0},
    {"esp32s3_nomemprot_psram", "esp32s3", Variant::kNoMemprot, kPsram},
};

void PrintTo(const ChipConfig &c, std::ostream *os) {
  *os << c.id;
}

bool is_esp32(const ChipConfig &c) {
  return std::strcmp(c.chip, "esp32") == 0;
}

/// The layout to load: the bundled chip, or a copy of its file with one option flipped (the host
/// config has no field for rtc_fast_heap / memprot; a layout path does the job).
std::string layout_for(const ChipConfig &c) {
  if (c.variant == Variant::kDefault) return c.chip;
  const capheap::sim::LoadResult r = capheap::sim::load_layout(c.chip);
  if (!r.ok()) return c.chip;
  std::ifstream in(r.layout->path());
  std::stringstream text;
  text << in.rdbuf();
  std::string json = text.str();
  const std::string from =
      c.variant == Variant::kRtcHeap ? "\"rtc_fast_heap\": false" : "\"memprot\": true";
  const std::string to =
      c.variant == Variant::kRtcHeap ? "\"rtc_fast_heap\": true" : "\"memprot\": false";
  const std::size_t at = json.find(from);
  if (at == std::string::npos) return "(option not found in " + r.layout->path() + ")";
  json.replace(at, from.size(), to);
  const std::string path =
      ::testing::TempDir() + "capheap-" + c.id + "-" + std::to_string(getpid()) + ".json";
  std::ofstream(path) << json;
  return path;
}

/// One heap of the model: what ESP-IDF's heap list holds on the device.
struct ModelHeap {
  std::string name;
  std::uint32_t start;  // chip address; 0 = placed at run time (the reserve pool)
  std::uint32_t len;    // 0 = known only at run time
  std::uint32_t caps[3];
  std::uint32_t all() const { return caps[0] | caps[1] | caps[2]; }
};

// ESP-IDF memory types (spec §5), [priority 0 | 1 | 2].
constexpr std::uint32_t kDramCaps[3] = {k8 | kD, kI | kDma | k32, 0};
constexpr std::uint32_t kEsp32DiramCaps[3] = {0, kDma | k8 | kI | kD, k32 | kX};
constexpr std::uint32_t kIramCaps[3] = {kI | kX | k32, 0, 0};
constexpr std::uint32_t kSpiramCaps[3] = {kS | kD, 0, k8 | k32};
constexpr std::uint32_t kEsp32RtcCaps[3] = {kRtc, k8 | kD, kI | k32 | kX};
constexpr std::uint32_t kS3StackDramCaps[3] = {k8 | kD | kRet, kI | kDma | k32, 0};
constexpr std::uint32_t kS3DiramCaps[3] = {0, kDma | k8 | kI | kD, k32 | kX | kRet};
constexpr std::uint32_t kS3StackDiramCaps[3] = {k8 | kD | kRet, kX | kI | kDma | k32, 0};
constexpr std::uint32_t kS3RtcCaps[3] = {kRtc, k8 | kD, kI | k32};
// CONFIG_SPIRAM_MALLOC_RESERVE_INTERNAL's pool (ESP-IDF's PSRAM driver).
constexpr std::uint32_t kPoolCaps[3] = {0, kDma | kI, k8 | k32};

/// D/IRAM types, and RTC fast memory where it is executable (ESP32, seen at 0x400C0000 by the
/// instruction bus): EXEC allocations from them return instruction-bus aliases (spec §3.4).
bool executable_diram(const ModelHeap &h) {
  return h.name == "D/IRAM" || h.name == "STACK/DIRAM" ||
         (h.name == "RTCRAM" && (h.all() & kX) != 0);
}

ModelHeap mh(const char *name, std::uint32_t start, std::uint32_t len, const std::uint32_t c[3]) {
  return ModelHeap{name, start, len, {c[0], c[1], c[2]}};
}

/// The heap list in ESP-IDF's order: runtime heaps newest first (the DMA reserve pool is added
/// after PSRAM), then boot heaps in the order of ESP-IDF's region table. The boot heaps are the
/// boot logs of the spec (§5) and the layout files' documented defaults (docs/layouts.md §7.3).
std::vector<ModelHeap> model_heaps(const ChipConfig &c) {
  std::vector<ModelHeap> m;
  if (c.psram > 0) {
    m.push_back(mh("pool", 0, 0, kPoolCaps));
    m.push_back(mh("SPIRAM", is_esp32(c) ? 0x3F800000u : 0x3C000000u,
                   static_cast<std::uint32_t>(c.psram), kSpiramCaps));
  }
  if (is_esp32(c)) {
    m.push_back(mh("DRAM", 0x3FFAE6E0, 0x1920, kDramCaps));
    m.push_back(mh("DRAM", 0x3FFB2EC8, 0x2D138, kDramCaps));
    m.push_back(mh("D/IRAM", 0x3FFE0440, 0x3AE0, kEsp32DiramCaps));
    m.push_back(mh("D/IRAM", 0x3FFE4350, 0x1BCB0, kEsp32DiramCaps));
    m.push_back(mh("IRAM", 0x4008944C, 0x16BB4, kIramCaps));
    // ESP-IDF's ESP32 region table lists RTC fast memory last (spec §5 and §3.2: "RTC RAM (prio
    // 1, listed last)"; earlier tables listed it first), soc_get_available_memory_regions keeps
    // the table's order and heap_caps_init links the heaps in that order: RTC RAM is the last boot
    // heap, so plain malloc() reaches it only after D/IRAM.
    if (c.variant == Variant::kRtcHeap)
      m.push_back(mh("RTCRAM", 0x3FF80000, 0x2000, kEsp32RtcCaps));
  } else {
    const bool mp = c.variant != Variant::kNoMemprot;
    m.push_back(mh(mp ? "DRAM" : "D/IRAM", 0x3FC94978, 0x54D98, mp ? kDramCaps : kS3DiramCaps));
    m.push_back(mh(mp ? "STACK/DRAM" : "STACK/DIRAM", 0x3FCE9710, 0x5724,
                   mp ? kS3StackDramCaps : kS3StackDiramCaps));
    m.push_back(mh("DRAM", 0x3FCF0000, 0x8000, kDramCaps));
    m.push_back(mh("RTCRAM", 0x600FE010, 0x1FD8, kS3RtcCaps));
  }
  return m;
}

/// ESP-IDF's allocation order for `caps` over the model list (indices into it).
std::vector<std::size_t> expected_order(const std::vector<ModelHeap> &m, std::uint32_t caps) {
  std::vector<std::size_t> order;
  if (caps == 0 || (caps & kInv) != 0) return order;
  if ((caps & kX) != 0) {
    if ((caps & (k8 | kDma)) != 0) return order;
    caps |= k32;
  }
  // Hardware alignment rule: no table entry is DMA|SPIRAM, DMA is dropped (spec §2).
  if ((caps & kS) != 0) caps &= ~kDma;
  for (int level = 0; level < 3; ++level)
    for (std::size_t k = 0; k < m.size(); ++k)
      if ((m[k].caps[level] & caps) != 0 && (m[k].all() & caps) == caps &&
          std::find(order.begin(), order.end(), k) == order.end())
        order.push_back(k);
  return order;
}

// Instruction-bus window of the D/IRAM alias (both chips): pointers in it carry the data address
// in the word before them (spec §3.4).
struct IramWindow {
  std::uint32_t lo, hi;
};
IramWindow iram_window(const ChipConfig &c) {
  // ESP32: the inverted D/IRAM window, then RTC fast memory's instruction addresses.
  return is_esp32(c) ? IramWindow{0x400A0000, 0x400C2000} : IramWindow{0x40378000, 0x403E0000};
}

capheap::Registry &reg() {
  return capheap::capi::registry();
}

std::uint32_t chip_of(const void *p) {
  return static_cast<std::uint32_t>(capheap_host_to_chip(p));
}

// ================================================================================================
// The fixture
// ================================================================================================

unsigned test_seed() {
  if (const char *s = std::getenv("CAPHEAP_TEST_SEED")) return static_cast<unsigned>(std::atoi(s));
  return std::random_device{}();
}

class ChipTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char *v : kEnvVars)
      unsetenv(v);
    capheap_host_deinit();
    g_failures.clear();
  }
  void TearDown() override {
    capheap_host_deinit();
    capheap_set_print_hook(nullptr);
  }

  /// Initialises the simulator for c, registers the failure recorder and maps the model onto the
  /// registry (model index → list position).
  void start(const ChipConfig &c) {
    cfg_ = c;
    capheap_host_config_t hc = CAPHEAP_HOST_CONFIG_DEFAULT;
    hc.psram_size = c.psram;
    hc.poisoning = poisoning_;
    const std::string layout = layout_for(c);
    const esp_err_t init = capheap_host_init(layout.c_str(), &hc);
    if (c.variant != Variant::kDefault) std::remove(layout.c_str());  // loaded: no longer needed
    ASSERT_EQ(init, ESP_OK) << layout;
    ASSERT_EQ(heap_caps_register_failed_alloc_callback(on_alloc_failed), ESP_OK);
    model_ = model_heaps(c);
    pos_.assign(model_.size(), -1);
    std::set<unsigned> used;
    for (std::size_t k = 0; k < model_.size(); ++k) {
      for (unsigned i = 0; i < reg().count(); ++i) {
        const capheap::HeapView v = reg().view(i);
        if (!v.registered || used.count(i) != 0) continue;
        const bool match = model_[k].start != 0
                               ? chip_of(reinterpret_cast<void *>(v.start)) == model_[k].start &&
                                     v.end - v.start == model_[k].len
                               : v.runtime && v.caps[0] == model_[k].caps[0] &&
                                     v.caps[1] == model_[k].caps[1] &&
                                     v.caps[2] == model_[k].caps[2];
        if (match) {
          pos_[k] = static_cast<int>(i);
          used.insert(i);
          break;
        }
      }
      ASSERT_GE(pos_[k], 0) << "model heap " << model_[k].name << " at " << hex(model_[k].start)
                            << " is not a heap of the simulator";
      if (model_[k].start == 0) {  // the reserve pool: take its place from the simulator
        const capheap::HeapView v = reg().view(static_cast<unsigned>(pos_[k]));
        model_[k].start = chip_of(reinterpret_cast<void *>(v.start));
        model_[k].len = static_cast<std::uint32_t>(v.end - v.start);
      }
    }
  }

  /// The chip data address behind a returned pointer. ESP32-S3 aliases map linearly (instruction
  /// = data + 0x6F0000), so the address is computed (also valid after the block was freed); ESP32's
  /// inverted window needs the hidden word before the pointer (the block must be live).
  std::uint32_t data_chip(const void *p) const {
    const std::uint32_t c = chip_of(p);
    const IramWindow w = iram_window(cfg_);
    if (c < w.lo || c >= w.hi) return c;
    if (!is_esp32(cfg_)) return c - (0x40378000u - 0x3FC88000u);
    std::uint32_t word;
    std::memcpy(&word, static_cast<const unsigned char *>(p) - 4, sizeof word);
    return word;
  }

  /// The innermost model heap containing chip address a (the reserve pool lies inside a DRAM
  /// heap's allocated block), or -1.
  int model_heap_of(std::uint32_t a) const {
    int best = -1;
    for (std::size_t k = 0; k < model_.size(); ++k)
      if (a >= model_[k].start && a < model_[k].start + model_[k].len &&
          (best < 0 || model_[k].len < model_[static_cast<std::size_t>(best)].len))
        best = static_cast<int>(k);
    return best;
  }
  int model_heap_of(const void *p) const { return model_heap_of(data_chip(p)); }

  std::size_t free_of(std::size_t k) const {
    return reg().view(static_cast<unsigned>(pos_[k])).heap.free_bytes();
  }
  std::size_t largest_of(std::size_t k) const {
    const unsigned i = static_cast<unsigned>(pos_[k]);
    std::size_t l = 0;
    reg().with_heap_locked(i, [&] { l = reg().view(i).heap.largest_free_block(); });
    return l;
  }
  int find_model(const char *name) const {
    for (std::size_t k = 0; k < model_.size(); ++k)
      if (model_[k].name == name) return static_cast<int>(k);
    return -1;
  }

  std::string describe(const std::vector<std::size_t> &order) const {
    std::string s;
    for (std::size_t k : order)
      s += (s.empty() ? "" : " -> ") + model_[k].name + "@" + hex(model_[k].start);
    return s.empty() ? "(no heap)" : s;
  }

  /// Exactly one failure callback since the last clear, with these arguments.
  void expect_one_failure(std::size_t size, std::uint32_t caps, const char *function) {
    ASSERT_EQ(g_failures.size(), 1u);
    EXPECT_EQ(g_failures[0], (Failure{size, caps, function}));
    g_failures.clear();
  }

  /// Frees blocks in a random order (seed printed).
  static void free_shuffled(std::vector<void *> &blocks) {
    const unsigned seed = test_seed();
    std::printf("[ seed     ] free order: CAPHEAP_TEST_SEED=%u\n", seed);
    std::mt19937 rng(seed);
    std::shuffle(blocks.begin(), blocks.end(), rng);
    for (void *p : blocks)
      heap_caps_free(p);
    blocks.clear();
  }

  bool in_model(const void *p, const char *name) const {
    const int k = model_heap_of(p);
    return k >= 0 && model_[static_cast<std::size_t>(k)].name == name;
  }

  ChipConfig cfg_{};
  capheap_poisoning_t poisoning_ = CAPHEAP_POISONING_NONE;
  std::vector<ModelHeap> model_;
  std::vector<int> pos_;
};

class ChipConfigTest : public ChipTest, public ::testing::WithParamInterface<ChipConfig> {
 protected:
  void SetUp() override {
    ChipTest::SetUp();
    start(GetParam());
  }
  const ChipConfig &chip() const { return GetParam(); }
  bool psram() const { return GetParam().psram > 0; }
};

std::string config_name(const ::testing::TestParamInfo<ChipConfig> &i) {
  return i.param.id;
}

// ================================================================================================
// The heap list
// ================================================================================================

// The simulator's heap list, position by position, is ESP-IDF's (model above).
TEST_P(ChipConfigTest, HeapListIsEspIdfs) {
  std::vector<std::string> got, want;
  for (unsigned i = 0; i < reg().count(); ++i) {
    const capheap::HeapView v = reg().view(i);
    if (!v.registered) continue;
    got.push_back(std::string(v.name) + " " + hex(chip_of(reinterpret_cast<void *>(v.start))) +
                  " len " + hex(v.end - v.start) + " caps " + hex(v.caps[0]) + "|" +
                  hex(v.caps[1]) + "|" + hex(v.caps[2]));
  }
  for (const ModelHeap &h : model_)
    want.push_back((h.name == "pool" ? std::string("runtime") : h.name) + " " + hex(h.start) +
                   " len " + hex(h.len) + " caps " + hex(h.caps[0]) + "|" + hex(h.caps[1]) + "|" +
                   hex(h.caps[2]));
  EXPECT_EQ(got, want);
  if (psram()) {
    // CONFIG_SPIRAM_MALLOC_RESERVE_INTERNAL = 32 KiB of DMA-capable internal RAM, taken from a DMA
    // heap (it sits inside an allocated block of the largest one).
    const ModelHeap &pool = model_[0];
    EXPECT_GE(pool.len, 32768u);
    const int parent = [&] {
      for (std::size_t k = 2; k < model_.size(); ++k)
        if (pool.start >= model_[k].start && pool.start < model_[k].start + model_[k].len)
          return static_cast<int>(k);
      return -1;
    }();
    ASSERT_GE(parent, 0);
    EXPECT_NE(model_[static_cast<std::size_t>(parent)].all() & kDma, 0u);
  }
}

// ================================================================================================
// Allocation order until exhaustion
// ================================================================================================

struct CapsCase {
  const char *name;
  std::uint32_t caps;
};
void PrintTo(const CapsCase &c, std::ostream *os) {
  *os << c.name;
}
const CapsCase kOrderCaps[] = {
    {"DEFAULT", kD},
    {"8BIT", k8},
    {"32BIT", k32},
    {"EXEC", kX},
    {"DMA", kDma},
    {"INTERNAL", kI},
    {"SPIRAM", kS},
    {"RTCRAM", kRtc},
    {"INTERNAL_8BIT", kI | k8},
    {"DMA_INTERNAL", kDma | kI},
    {"DEFAULT_SPIRAM", kD | kS},
    {"8BIT_32BIT", k8 | k32},
};

class OrderTest : public ChipTest,
                  public ::testing::WithParamInterface<std::tuple<ChipConfig, CapsCase>> {};

// Repeatedly allocates min(4 KiB, the current heap's largest block) with the caps: every block
// must come from the heap ESP-IDF's rule names, heap after heap, until nothing is left; then one
// more request fails with one callback. Heaps outside the order are never touched.
TEST_P(OrderTest, FillsHeapsInEspIdfOrderUntilExhausted) {
  const ChipConfig &c = std::get<0>(GetParam());
  const std::uint32_t caps = std::get<1>(GetParam()).caps;
  ASSERT_NO_FATAL_FAILURE(start(c));
  const std::vector<std::size_t> order = expected_order(model_, caps);
  SCOPED_TRACE("expected order: " + describe(order));

  std::vector<std::size_t> free_before(model_.size());
  for (std::size_t k = 0; k < model_.size(); ++k)
    free_before[k] = free_of(k);
  const std::size_t total_free = heap_caps_get_free_size(0);

  std::vector<void *> blocks;
  std::vector<std::size_t> visited;
  for (std::size_t k : order) {
    for (;;) {
      const std::size_t largest = largest_of(k);
      // EXEC from D/IRAM costs one hidden word more (spec §3.4): ask 4 bytes less.
      const std::size_t extra = (caps & kX) != 0 ? 4 : 0;
      if (largest <= extra) break;
      const std::size_t size = std::min<std::size_t>(4096, largest - extra);
      void *p = heap_caps_malloc(size, caps);
      ASSERT_NE(p, nullptr) << "size " << size << " with " << model_[k].name << "@"
                            << hex(model_[k].start) << " reporting largest " << largest;
      const int got = model_heap_of(p);
      ASSERT_EQ(got, static_cast<int>(k))
          << "block " << hex(chip_of(p)) << " of " << size << " bytes came from "
          << (got < 0 ? std::string("nowhere")
                      : model_[static_cast<std::size_t>(got)].name + "@" +
                            hex(model_[static_cast<std::size_t>(got)].start))
          << ", expected " << model_[k].name << "@" << hex(model_[k].start);
      blocks.push_back(p);
      if (visited.empty() || visited.back() != k) visited.push_back(k);
    }
  }
  EXPECT_EQ(visited, order);
  EXPECT_TRUE(g_failures.empty());

  // Exhausted: the next request fails and runs the callback once.
  EXPECT_EQ(heap_caps_malloc(4, caps), nullptr);
  expect_one_failure(4, caps, "heap_caps_malloc");

  for (std::size_t k = 0; k < model_.size(); ++k)
    if (std::find(order.begin(), order.end(), k) == order.end()) {
      EXPECT_EQ(free_of(k), free_before[k]) << model_[k].name << "@" << hex(model_[k].start);
    }
  free_shuffled(blocks);
  for (std::size_t k = 0; k < model_.size(); ++k)
    EXPECT_EQ(free_of(k), free_before[k]) << model_[k].name << "@" << hex(model_[k].start);
  EXPECT_EQ(heap_caps_get_free_size(0), total_free);
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
}

std::string order_name(const ::testing::TestParamInfo<std::tuple<ChipConfig, CapsCase>> &i) {
  return std::string(std::get<0>(i.param).id) + "_" + std::get<1>(i.param).name;
}

INSTANTIATE_TEST_SUITE_P(Chips, OrderTest,
                         ::testing::Combine(::testing::ValuesIn(kConfigs),
                                            ::testing::ValuesIn(kOrderCaps)),
                         order_name);

// The first choice for each capability, spelled out for the default chips (the figures the ESP-IDF
// docs and tests name: spec §3.2 "Example consequences").
TEST_F(ChipTest, Esp32FirstChoicesAreTheDocumentedOnes) {
  ASSERT_NO_FATAL_FAILURE(start(kConfigs[1]));  // esp32 + PSRAM
  struct {
    std::uint32_t caps;
    const char *heap;
  } const firsts[] = {
      {kD, "SPIRAM"},  // "Check if default cap allocates in external memory in priority"
      {k8, "DRAM"},   {k32, "IRAM"}, {kX, "IRAM"}, {kDma, "pool"}, {kI, "IRAM"}, {kS, "SPIRAM"},
  };
  for (const auto &f : firsts) {
    void *p = heap_caps_malloc(64, f.caps);
    ASSERT_NE(p, nullptr) << hex(f.caps);
    EXPECT_TRUE(in_model(p, f.heap)) << hex(f.caps) << " gave " << hex(chip_of(p));
    heap_caps_free(p);
  }
  // plain malloc() in this configuration: small requests stay internal.
  void *small = heap_caps_malloc_default(100);
  ASSERT_NE(small, nullptr);
  EXPECT_TRUE(in_model(small, "DRAM"));
  heap_caps_free(small);
}

// ================================================================================================
// Impossible requests and the failure callback
// ================================================================================================

TEST_P(ChipConfigTest, ImpossibleCombinationsReturnNullAndCallBackOnce) {
  struct {
    std::uint32_t caps;
    bool possible;
  } const cases[] = {
      {kX | k8, false},
      {kX | kDma, false},
      {kX | k8 | kI, false},
      {0, false},
      {kInv, false},
      {kInv | kD, false},
      {kInvented, false},
      {kS, psram()},
      {kD | kS, psram()},
      {kS | kI, false},               // PSRAM is never internal
      {kS | kX, false},               // nor executable
      {kDma | kS, psram()},           // becomes a cache-aligned PSRAM request (spec §2)
      {MALLOC_CAP_IRAM_8BIT, false},  // CONFIG_ESP32_IRAM_AS_8BIT_ACCESSIBLE_MEMORY not set
      {MALLOC_CAP_SPM, false},
  };
  for (const auto &c : cases) {
    SCOPED_TRACE(hex(c.caps));
    g_failures.clear();
    void *p = heap_caps_malloc(100, c.caps);
    if (c.possible) {
      ASSERT_NE(p, nullptr);
      EXPECT_TRUE(g_failures.empty());
      heap_caps_free(p);
      continue;
    }
    EXPECT_EQ(p, nullptr);
    expect_one_failure(100, c.caps, "heap_caps_malloc");
  }
  // EXEC: possible where a heap has it (ESP32 IRAM, S3 D/IRAM without memory protection); with the
  // S3's memory protection D/IRAM is data-only and EXEC fails (spec §3.3).
  const bool exec = is_esp32(chip()) || chip().variant == Variant::kNoMemprot;
  g_failures.clear();
  void *x = heap_caps_malloc(100, kX);
  EXPECT_EQ(x != nullptr, exec);
  if (!exec) expect_one_failure(100, kX, "heap_caps_malloc");
  heap_caps_free(x);
  // RTCRAM: ESP32's RTC fast memory is a heap only with rtc_fast_heap (single-core builds); the
  // S3's is by default.
  const bool rtc = !is_esp32(chip()) || chip().variant == Variant::kRtcHeap;
  g_failures.clear();
  void *r = heap_caps_malloc(100, kRtc);
  EXPECT_EQ(r != nullptr, rtc);
  if (!rtc) expect_one_failure(100, kRtc, "heap_caps_malloc");
  if (rtc) {
    EXPECT_TRUE(in_model(r, "RTCRAM"));
  }
  heap_caps_free(r);

  // Sizes no heap can hold: NULL and one callback with the size (no overflow on the way).
  for (std::size_t size : {heap_caps_get_total_size(0) + 1, std::size_t(SIZE_MAX),
                           std::size_t(SIZE_MAX - 3), std::size_t(1) << 31}) {
    SCOPED_TRACE(size);
    g_failures.clear();
    EXPECT_EQ(heap_caps_malloc(size, k8), nullptr);
    expect_one_failure(size, k8, "heap_caps_malloc");
    EXPECT_EQ(heap_caps_malloc(size, kX), nullptr);
    expect_one_failure(size, kX, "heap_caps_malloc");
  }
  // size 0 never calls back, whatever the caps.
  g_failures.clear();
  for (std::uint32_t caps : {k8, kX | k8, 0u, kInv, kS})
    EXPECT_EQ(heap_caps_malloc(0, caps), nullptr);
  EXPECT_TRUE(g_failures.empty());
}

// DMA|SPIRAM with PSRAM present: ESP-IDF drops DMA (no table entry is DMA|SPIRAM) and aligns
// address and size to the PSRAM cache line (32 bytes on both chips) (spec §2, §3.5).
// Found by caps_fuzz: EXEC|DMA_DESC_AHB passed the EXEC check before DMA_DESC_* became DMA, and on
// chips with a D/IRAM alias came back as an instruction alias 4 bytes off the descriptor
// alignment. Adjusted, the request is EXEC|DMA: impossible (spec §2, §3.3).
TEST_P(ChipConfigTest, ExecWithDmaDescriptorCapsIsImpossible) {
  for (const std::uint32_t caps : {kX | MALLOC_CAP_DMA_DESC_AHB, kX | MALLOC_CAP_DMA_DESC_AXI,
                                   kX | MALLOC_CAP_32BIT | MALLOC_CAP_DMA_DESC_AHB}) {
    EXPECT_EQ(heap_caps_malloc(48, caps), nullptr) << std::hex << caps;
    expect_one_failure(48, caps, "heap_caps_malloc");
    EXPECT_EQ(heap_caps_calloc(2, 24, caps), nullptr) << std::hex << caps;
    expect_one_failure(48, caps, "heap_caps_calloc");
  }
}

TEST_P(ChipConfigTest, DmaSpiramIsCacheAlignedPsram) {
  if (!psram()) GTEST_SKIP() << "no PSRAM in this configuration";
  for (std::size_t size : {1u, 31u, 32u, 33u, 100u, 1000u}) {
    SCOPED_TRACE(size);
    void *p = heap_caps_malloc(size, kDma | kS);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(in_model(p, "SPIRAM"));
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 32, 0u);
    EXPECT_EQ(heap_caps_get_allocated_size(p), (size + 31) / 32 * 32);
    heap_caps_free(p);
  }
  // The prefer pattern of "test heap_caps_malloc_prefer for dma memory".
  void *p = heap_caps_malloc_prefer(64, 2, kDma | kS, kDma | kI);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(in_model(p, "SPIRAM"));
  heap_caps_free(p);
  EXPECT_TRUE(g_failures.empty());
}

TEST_P(ChipConfigTest, CallocOverflowZeroAndQuirk) {
  const std::size_t half = SIZE_MAX / 2 + 2;
  g_failures.clear();
  // Overflow: NULL, and (size > 0) one callback with the wrapped n * size (spec §1.1).
  EXPECT_EQ(heap_caps_calloc(half, 2, k8), nullptr);
  expect_one_failure(static_cast<std::size_t>(half * 2u), k8, "heap_caps_calloc");
  EXPECT_EQ(heap_caps_calloc(2, half, kDma), nullptr);
  expect_one_failure(static_cast<std::size_t>(half * 2u), kDma, "heap_caps_calloc");
  EXPECT_EQ(heap_caps_aligned_calloc(16, half, 2, k8), nullptr);  // returns before allocating
  EXPECT_TRUE(g_failures.empty());
  EXPECT_EQ(heap_caps_calloc(1, 0, k8), nullptr);  // size 0: no callback
  EXPECT_TRUE(g_failures.empty());
  EXPECT_EQ(heap_caps_calloc(0, 16, k8), nullptr);  // ESP-IDF quirk: callback with n * size = 0
  expect_one_failure(0, k8, "heap_caps_calloc");
  EXPECT_EQ(heap_caps_calloc(4, 25, kX | k8), nullptr);  // callback gets n * size (2024 code)
  expect_one_failure(100, kX | k8, "heap_caps_calloc");
  // heap_caps_calloc_prefer behaves as calloc over its caps (spec §1.1), reporting the caps tried
  // last (MALLOC_CAP_DEFAULT without any).
  EXPECT_EQ(heap_caps_calloc_prefer(half, 2, 2, kDma, k8), nullptr);
  expect_one_failure(static_cast<std::size_t>(half * 2u), k8, "heap_caps_calloc_prefer");
  EXPECT_EQ(heap_caps_calloc_prefer(0, 16, 2, k8, kDma), nullptr);
  expect_one_failure(0, kDma, "heap_caps_calloc_prefer");
  EXPECT_EQ(heap_caps_calloc_prefer(0, 16, 0), nullptr);
  expect_one_failure(0, MALLOC_CAP_DEFAULT, "heap_caps_calloc_prefer");
  EXPECT_EQ(heap_caps_calloc_prefer(3, 0, 1, k8), nullptr);  // size 0: no callback
  EXPECT_TRUE(g_failures.empty());
  auto *z = static_cast<unsigned char *>(heap_caps_calloc(7, 9, k8));
  ASSERT_NE(z, nullptr);
  for (int i = 0; i < 63; ++i)
    EXPECT_EQ(z[i], 0) << i;
  heap_caps_free(z);
}

TEST_P(ChipConfigTest, AlignedAllocArgumentErrorsAndAlignments) {
  g_failures.clear();
  for (std::size_t a : {std::size_t(0), std::size_t(3), std::size_t(6), std::size_t(24),
                        std::size_t(100), std::size_t(SIZE_MAX)})
    EXPECT_EQ(heap_caps_aligned_alloc(a, 64, k8), nullptr) << a;
  EXPECT_EQ(heap_caps_aligned_alloc(16, 0, k8), nullptr);
  EXPECT_TRUE(g_failures.empty());
  // A valid alignment no heap can serve: one callback.
  EXPECT_EQ(heap_caps_aligned_alloc(16, 64, kInvented), nullptr);
  expect_one_failure(64, kInvented, "heap_caps_aligned_alloc");
  // aligned_alloc has no EXEC special case (spec §1.1: "no EXEC/D-IRAM special case"): EXEC|8BIT
  // is served by any heap with both bits (D/IRAM's data address), else fails with the callback.
  const bool diram_exec = is_esp32(chip()) || chip().variant == Variant::kNoMemprot;
  void *x8 = heap_caps_aligned_alloc(16, 64, kX | k8);
  EXPECT_EQ(x8 != nullptr, diram_exec);
  if (diram_exec) {
    EXPECT_LT(chip_of(x8), 0x40000000u);  // a data-bus address, no alias
    const int k = model_heap_of(x8);
    ASSERT_GE(k, 0);
    EXPECT_EQ(model_[static_cast<std::size_t>(k)].all() & (kX | k8), kX | k8);
    heap_caps_free(x8);
  } else {
    expect_one_failure(64, kX | k8, "heap_caps_aligned_alloc");
  }
  EXPECT_EQ(heap_caps_aligned_alloc(16, heap_caps_get_total_size(0), k8), nullptr);
  expect_one_failure(heap_caps_get_total_size(0), k8, "heap_caps_aligned_alloc");
  // Every power of two up to 64 KiB in internal memory; PSRAM up to 512 KiB (ESP-IDF's
  // "Capabilities aligned allocator test").
  for (std::size_t a = 1; a <= (std::size_t(1) << 16); a <<= 1) {
    void *p = heap_caps_aligned_alloc(a, 100, k8 | kI);
    ASSERT_NE(p, nullptr) << a;
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % a, 0u) << a;
    EXPECT_EQ(chip_of(p) % a, 0u) << a;  // the chip address too
    EXPECT_GE(heap_caps_get_allocated_size(p), 100u);
    heap_caps_free(p);
  }
  if (psram())
    for (std::size_t a = 1; a <= (std::size_t(1) << 19); a <<= 1) {
      void *p = heap_caps_aligned_alloc(a, 1000, kS);
      ASSERT_NE(p, nullptr) << a;
      EXPECT_TRUE(in_model(p, "SPIRAM"));
      EXPECT_EQ(chip_of(p) % a, 0u) << a;
      heap_caps_free(p);
    }
  EXPECT_TRUE(g_failures.empty());
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
}

// ================================================================================================
// The C application file
// ================================================================================================

TEST_P(ChipConfigTest, EspIdfOnlyCFileScenarios) {
  ASSERT_EQ(esp_only_install_failure_recorder(), ESP_OK);
  EXPECT_EQ(esp_only_register_null_callback_is_rejected(), 0);
  EXPECT_EQ(esp_only_alloc_free_restores(100, kDma), 0);
  EXPECT_EQ(esp_only_alloc_free_restores(100, k8), 0);
  EXPECT_EQ(esp_only_alloc_free_restores(1000, kD), 0);
  EXPECT_EQ(esp_only_alloc_free_restores(200, kI), 0);
  EXPECT_EQ(esp_only_alloc_free_restores(200, k32), 0);
  EXPECT_EQ(esp_only_alloc_free_restores(64, kDma | kI), 0);
  if (psram()) {
    EXPECT_EQ(esp_only_alloc_free_restores(100000, kS), 0);
  }
  if (is_esp32(chip()) || chip().variant == Variant::kNoMemprot) {
    EXPECT_EQ(esp_only_alloc_free_restores(256, kX), 0);
  }
  EXPECT_EQ(esp_only_impossible_exec_combinations(), 0);
  EXPECT_EQ(esp_only_invalid_and_zero_caps(), 0);
  EXPECT_EQ(esp_only_zero_sizes_do_not_call_back(), 0);
  EXPECT_EQ(esp_only_calloc_zero_fills(10, 37, k8), 0);
  EXPECT_EQ(esp_only_calloc_zero_fills(1, 5000, kD), 0);
  EXPECT_EQ(esp_only_calloc_zero_fills(3, 100, kDma), 0);
  if (psram()) {
    EXPECT_EQ(esp_only_calloc_zero_fills(100, 1000, kS), 0);
  }
  EXPECT_EQ(esp_only_calloc_overflow_and_quirk(), 0);
  std::size_t allocated = 0;
  EXPECT_EQ(esp_only_aligned_alloc_sweep(k8, 1024, &allocated), 0);
  EXPECT_EQ(allocated, 22u);  // 11 powers of two from 1 to 1024, aligned_alloc and aligned_calloc
  EXPECT_EQ(esp_only_aligned_alloc_sweep(kDma, 1024, &allocated), 0);
  EXPECT_EQ(allocated, 22u);
  if (psram()) {
    EXPECT_EQ(esp_only_aligned_alloc_sweep(kS, 1024, &allocated), 0);
    EXPECT_EQ(allocated, 22u);
  }
  EXPECT_EQ(esp_only_allocated_size_is_exact(k8, 64), 0);
  EXPECT_EQ(esp_only_allocated_size_is_exact(kDma, 64), 0);
  EXPECT_EQ(esp_only_realloc_failure_keeps_block(k8), 0);
  EXPECT_EQ(esp_only_add_region_argument_errors(), 0);
  for (std::uint32_t caps : {0u, kD, k8, k32, kX, kDma, kI, kS, kRtc, kI | k8, kDma | kI})
    EXPECT_EQ(esp_only_queries_agree(caps), 0) << hex(caps);
  std::size_t heaps = 0, used = 0, free_blocks = 0;
  EXPECT_EQ(esp_only_walk_tally(kInv, &heaps, &used, &free_blocks), 0);
  EXPECT_EQ(heaps, model_.size());
  EXPECT_EQ(esp_only_monitor_local_minimum(kD), 0);
  uintptr_t custom = 0;
  EXPECT_EQ(esp_only_custom_capability_heap(8192, &custom), 0);
  EXPECT_NE(custom, 0u);
  EXPECT_EQ(esp_only_walk_tally(kInv, &heaps, &used, &free_blocks), 0);
  EXPECT_EQ(heaps, model_.size() + 1);  // the custom heap
}

// The C file's callback saw exactly what a device passes.
TEST_P(ChipConfigTest, EspIdfOnlyCallbackArguments) {
  ASSERT_EQ(esp_only_install_failure_recorder(), ESP_OK);
  EXPECT_EQ(esp_only_malloc_prefer2(100, kX | k8, kX | kDma), nullptr);
  EXPECT_EQ(esp_only_failure_count(), 1);
  EXPECT_EQ(esp_only_last_failure_size(), 100u);
  EXPECT_EQ(esp_only_last_failure_caps(), kX | kDma);  // the last caps tried
  EXPECT_STREQ(esp_only_last_failure_function(), "heap_caps_malloc_prefer");
  esp_only_reset_failures();
  EXPECT_EQ(esp_only_calloc_prefer2(1, 77, kInv, kX | k8), nullptr);
  EXPECT_EQ(esp_only_failure_count(), 1);
  EXPECT_EQ(esp_only_last_failure_size(), 77u);
  EXPECT_EQ(esp_only_last_failure_caps(), kX | k8);
  EXPECT_STREQ(esp_only_last_failure_function(), "heap_caps_calloc_prefer");
}

// ================================================================================================
// D/IRAM instruction aliases
// ================================================================================================

// ESP32-S3 without memory protection: EXEC comes from D/IRAM (the IRAM region is wholly taken by
// the application's IRAM code, so "IRAM is full" from the start) and returns an instruction-bus
// address; the same bytes are visible at the data address (shared pages), as on the device.
TEST_F(ChipTest, Esp32s3DiramAliasRoundTrip) {
  ASSERT_NO_FATAL_FAILURE(start(kConfigs[5]));                  // esp32s3, memprot off
  constexpr std::uint32_t kOffset = 0x40378000u - 0x3FC88000u;  // instruction - data (0x6F0000)
  const std::size_t internal_free = heap_caps_get_free_size(kI);
  auto *p = static_cast<unsigned char *>(heap_caps_malloc(64, kX));
  ASSERT_NE(p, nullptr);
  const std::uint32_t ichip = chip_of(p);
  EXPECT_GE(ichip, 0x40378000u);
  EXPECT_LT(ichip, 0x403E0000u);
  std::uint32_t word;
  std::memcpy(&word, p - 4, sizeof word);
  EXPECT_EQ(word, ichip - 4 - kOffset);     // the data block's start, in the hidden word
  EXPECT_TRUE(in_model(p, "STACK/DIRAM"));  // EXEC at priority 1 beats D/IRAM's priority 2
  auto *data = static_cast<unsigned char *>(capheap_host_from_chip(ichip - kOffset));
  ASSERT_NE(data, nullptr);
  for (int i = 0; i < 64; ++i)
    p[i] = static_cast<unsigned char>(0x40 + i);
  for (int i = 0; i < 64; ++i)
    ASSERT_EQ(data[i], static_cast<unsigned char>(0x40 + i)) << i;
  std::memset(data, 0x99, 64);
  for (int i = 0; i < 64; ++i)
    ASSERT_EQ(p[i], 0x99) << i;
  // Usable size: the data block holds 64 + 4 bytes; the caller gets 64.
  EXPECT_EQ(heap_caps_get_allocated_size(p), 64u);
  // The data-bus view of the same bytes is an interior pointer of the 68-byte data block (the
  // instruction alias itself is no heap address: ESP-IDF asserts on it there too).
  EXPECT_EQ(heap_caps_get_containing_block_size(data), 68u);
  EXPECT_EQ(heap_caps_get_free_size(kI), internal_free - 72);  // 68-byte block + its header

  // realloc of an alias never resizes in place (spec §3.4), even when shrinking.
  for (int i = 0; i < 64; ++i)
    p[i] = static_cast<unsigned char>(i);
  auto *q = static_cast<unsigned char *>(heap_caps_realloc(p, 32, kX));
  ASSERT_NE(q, nullptr);
  EXPECT_NE(q, p);
  EXPECT_GE(chip_of(q), 0x40378000u);
  for (int i = 0; i < 32; ++i)
    EXPECT_EQ(q[i], i);
  // Back to plain data memory: moves out of the instruction window, content kept.
  auto *d = static_cast<unsigned char *>(heap_caps_realloc(q, 32, k8));
  ASSERT_NE(d, nullptr);
  EXPECT_LT(chip_of(d), 0x40000000u);
  for (int i = 0; i < 32; ++i)
    EXPECT_EQ(d[i], i);
  heap_caps_free(d);
  EXPECT_EQ(heap_caps_get_free_size(kI), internal_free);

  // ESP-IDF's realloc checks only that the block's heap has every requested bit before resizing in
  // place (heap_caps_realloc, spec §1.1): an 8BIT block in STACK/DIRAM "reallocated" with the
  // impossible EXEC|8BIT stays where it is, at its data address, with no callback.
  void *b = heap_caps_malloc(100, k8);
  ASSERT_NE(b, nullptr);
  EXPECT_TRUE(in_model(b, "STACK/DIRAM"));
  void *b2 = heap_caps_realloc(b, 120, kX | k8);
  ASSERT_NE(b2, nullptr);
  EXPECT_TRUE(in_model(b2, "STACK/DIRAM"));
  EXPECT_LT(chip_of(b2), 0x40000000u);
  heap_caps_free(b2);
  EXPECT_EQ(heap_caps_get_free_size(kI), internal_free);
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
  EXPECT_TRUE(g_failures.empty());
}

// test_diram.c "Allocate D/IRAM as DRAM": DRAM allocations are filled until one lands in D/IRAM,
// written through the data bus and read back through the instruction-bus address of the same
// bytes (ESP32-S3 without memory protection: shared pages). ("Allocate D/IRAM as IRAM" is
// Esp32s3DiramAliasRoundTrip above; the ESP32's inverted window has no cross-bus view here.)
TEST_F(ChipTest, Esp32s3DiramAsDram) {
  ASSERT_NO_FATAL_FAILURE(start(kConfigs[5]));                  // esp32s3, memprot off
  constexpr std::uint32_t kOffset = 0x40378000u - 0x3FC88000u;  // instruction - data
  std::vector<void *> fillers;
  unsigned char *d = nullptr;
  for (;;) {
    auto *p = static_cast<unsigned char *>(heap_caps_malloc(4096, k8 | kI));
    ASSERT_NE(p, nullptr);
    const int k = model_heap_of(p);
    ASSERT_GE(k, 0);
    if (executable_diram(model_[static_cast<std::size_t>(k)])) {
      d = p;
      break;
    }
    fillers.push_back(p);
  }
  const std::uint32_t dchip = chip_of(d);
  EXPECT_LT(dchip, 0x40000000u);  // a data-bus address
  for (unsigned i = 0; i < 4096; ++i)
    d[i] = static_cast<unsigned char>(i * 7);
  auto *ibus = static_cast<unsigned char *>(capheap_host_from_chip(dchip + kOffset));
  ASSERT_NE(ibus, nullptr);
  for (unsigned i = 0; i < 4096; ++i)
    ASSERT_EQ(ibus[i], static_cast<unsigned char>(i * 7)) << i;
  heap_caps_free(d);
  for (void *p : fillers)
    heap_caps_free(p);
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
}

// ESP32-S3 with memory protection (the default): EXEC fails, including through realloc, which
// leaves the block untouched.
TEST_F(ChipTest, Esp32s3MemprotRefusesExec) {
  ASSERT_NO_FATAL_FAILURE(start(kConfigs[3]));
  EXPECT_EQ(heap_caps_malloc(64, kX), nullptr);
  expect_one_failure(64, kX, "heap_caps_malloc");
  auto *p = static_cast<unsigned char *>(heap_caps_malloc(64, k8));
  ASSERT_NE(p, nullptr);
  std::memset(p, 0x17, 64);
  EXPECT_EQ(heap_caps_realloc(p, 64, kX), nullptr);
  expect_one_failure(64, kX, "heap_caps_realloc");
  for (int i = 0; i < 64; ++i)
    EXPECT_EQ(p[i], 0x17);
  heap_caps_free(p);
}

// ESP32-C6, H2 and P4 with the PMP I/D split (their default): no memory type has EXEC (spec §5:
// COMMON, L2MEM and RTCRAM base caps gain EXEC only without the split; spec §3.3: EXEC fails).
TEST_F(ChipTest, PmpSplitChipsRefuseExec) {
  for (const char *chip : {"esp32c6", "esp32h2", "esp32p4"}) {
    SCOPED_TRACE(chip);
    ASSERT_EQ(capheap_host_init(chip, nullptr), ESP_OK);
    ASSERT_EQ(heap_caps_register_failed_alloc_callback(on_alloc_failed), ESP_OK);
    g_failures.clear();
    EXPECT_EQ(heap_caps_get_total_size(kX), 0u);
    EXPECT_EQ(heap_caps_malloc(64, kX), nullptr);
    expect_one_failure(64, kX, "heap_caps_malloc");
    EXPECT_GT(heap_caps_get_total_size(kRtc), 0u);  // the RTC heap exists and is not EXEC
    capheap_host_deinit();
  }
}

// ESP32 (inverted D/IRAM): once IRAM is full, EXEC comes from D/IRAM through the word-reversed
// instruction window. The alias address and the hidden word are the device's; pointer arithmetic,
// get_allocated_size, realloc and free work through them. Cross-bus visibility is NOT emulated
// (capheap_host.h: the instruction window has its own memory), so nothing here reads the bytes
// through the data bus.
TEST_F(ChipTest, Esp32InvertedDiramAlias) {
  ASSERT_NO_FATAL_FAILURE(start(kConfigs[0]));
  const int iram = find_model("IRAM");
  ASSERT_GE(iram, 0);
  void *filler = heap_caps_malloc(largest_of(static_cast<std::size_t>(iram)), kX);
  ASSERT_NE(filler, nullptr);
  EXPECT_TRUE(in_model(filler, "IRAM"));
  EXPECT_EQ(largest_of(static_cast<std::size_t>(iram)), 0u);
  const std::size_t diram_free = heap_caps_get_free_size(kDma | kX);

  auto *p = static_cast<unsigned char *>(heap_caps_malloc(64, kX));
  ASSERT_NE(p, nullptr);
  const std::uint32_t ichip = chip_of(p);
  EXPECT_GE(ichip, 0x400A0000u);
  EXPECT_LT(ichip, 0x400C0000u);
  std::uint32_t word;
  std::memcpy(&word, p - 4, sizeof word);
  // The hidden word is the data block's start; the alias is the instruction address of the block's
  // last word (SOC_DIRAM_INVERTED): iram_low + (dram_high - (data + 64 + 4)), then + 4.
  EXPECT_EQ(ichip - 4, 0x400A0000u + (0x40000000u - (word + 64u + 4u)));
  // The first D/IRAM heap in list order that fits: 0x3FFE0440 (priority 2 for EXEC).
  EXPECT_GE(word, 0x3FFE0440u);
  EXPECT_LT(word, 0x3FFE0440u + 0x3AE0u);
  EXPECT_EQ(heap_caps_get_allocated_size(p), 64u);
  EXPECT_EQ(heap_caps_get_free_size(kDma | kX), diram_free - 72);
  for (int i = 0; i < 64; ++i)
    p[i] = static_cast<unsigned char>(0xC0 + i);
  auto *q = static_cast<unsigned char *>(heap_caps_realloc(p, 48, kX));  // always moves
  ASSERT_NE(q, nullptr);
  EXPECT_NE(q, p);
  for (int i = 0; i < 48; ++i)
    EXPECT_EQ(q[i], 0xC0 + i);
  heap_caps_free(q);
  EXPECT_EQ(heap_caps_get_free_size(kDma | kX), diram_free);
  heap_caps_free(filler);
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
  EXPECT_TRUE(g_failures.empty());
}

// ================================================================================================
// realloc moving data between capabilities
// ================================================================================================

// "realloc move data to a new heap type": DRAM -> IRAM (EXEC) -> DRAM, and into PSRAM and back,
// through the ESP-IDF-only C file. Each step lands where ESP-IDF's rules say (spec §1.1, §3.4):
// if the block's heap already has every requested capability (caps ⊆ its three levels) and the
// pointer is not an instruction alias, realloc stays in that heap; otherwise it moves to the first
// heap of the request's order (fresh chip: that heap has room). An EXEC request that moves into
// D/IRAM returns the instruction alias.
TEST_P(ChipConfigTest, ReallocMovesDataBetweenCapabilities) {
  ASSERT_EQ(esp_only_install_failure_recorder(), ESP_OK);
  const bool s3 = !is_esp32(chip());
  const bool s3_exec = s3 && chip().variant == Variant::kNoMemprot;
  std::vector<std::vector<std::uint32_t>> chains;
  std::vector<std::uint32_t> main_chain;
  if (!s3) {
    main_chain = {k8, kX, k8 | kI};  // DRAM -> IRAM -> DRAM
  } else if (s3_exec) {
    main_chain = {kRtc, kX, k8 | kI};  // RTC RAM -> D/IRAM (alias) -> D/IRAM (data)
    // ESP-IDF quirk kept: an 8BIT block in STACK/DIRAM (which also has EXEC) reallocated with
    // EXEC stays where it is and keeps its data-bus address (the compatible-caps path).
    chains.push_back({k8, kX});
  } else {
    main_chain = {k8, kRtc, k8 | kI};  // no EXEC with memory protection
  }
  if (psram()) main_chain.insert(main_chain.end(), {kS, kDma, kS | k8, kI});
  chains.insert(chains.begin(), main_chain);

  const IramWindow w = iram_window(chip());
  const auto is_alias = [&](uintptr_t a) {
    const std::uint32_t c = chip_of(reinterpret_cast<void *>(a));
    return c >= w.lo && c < w.hi;
  };
  for (const std::vector<std::uint32_t> &steps : chains)
    for (std::size_t size : {100u, 3000u}) {
      SCOPED_TRACE("chain of " + std::to_string(steps.size()) + ", size " + std::to_string(size));
      std::vector<uintptr_t> addrs(steps.size());
      ASSERT_EQ(esp_only_realloc_chain(steps.data(), steps.size(), size, addrs.data()), 0);
      for (std::size_t i = 0; i < steps.size(); ++i) {
        const std::vector<std::size_t> order = expected_order(model_, steps[i]);
        ASSERT_FALSE(order.empty());
        const int got = model_heap_of(data_chip(reinterpret_cast<void *>(addrs[i])));
        const int prev =
            i == 0 ? -1 : model_heap_of(data_chip(reinterpret_cast<void *>(addrs[i - 1])));
        const bool stays = prev >= 0 && !is_alias(addrs[i - 1]) &&
                           (model_[static_cast<std::size_t>(prev)].all() & steps[i]) == steps[i];
        const int want = stays ? prev : static_cast<int>(order[0]);
        EXPECT_EQ(got, want) << "step " << i << " caps " << hex(steps[i]) << " at "
                             << hex(chip_of(reinterpret_cast<void *>(addrs[i])));
        const bool want_alias = (steps[i] & kX) != 0 && !stays &&
                                executable_diram(model_[static_cast<std::size_t>(want)]);
        EXPECT_EQ(is_alias(addrs[i]), want_alias)
            << "step " << i << " at " << hex(chip_of(reinterpret_cast<void *>(addrs[i])));
      }
    }
  EXPECT_EQ(esp_only_failure_count(), 0);
}

// heap_caps_realloc tries the block's own heap first whenever that heap has every requested
// capability and the pointer is not an instruction alias (spec §1.1). DMA is such a capability:
// internal memory of these chips needs no DMA alignment beyond 4 bytes, so a DMA block shrinks
// and grows in place like any other (it used to move on every DMA realloc).
TEST_P(ChipConfigTest, ReallocWithDmaCapsResizesInPlace) {
  for (const std::uint32_t caps : {kDma, kDma | kI, kDma | k8}) {
    SCOPED_TRACE(hex(caps));
    auto *p = static_cast<unsigned char *>(heap_caps_malloc(200, caps));
    ASSERT_NE(p, nullptr);
    for (unsigned i = 0; i < 200; ++i)
      p[i] = static_cast<unsigned char>(i);
    void *after_shrink = heap_caps_realloc(p, 100, caps);
    ASSERT_EQ(after_shrink, p);  // shrunk in place
    EXPECT_EQ(heap_caps_get_allocated_size(p), 100u);
    void *after_grow = heap_caps_realloc(p, 200, caps);
    ASSERT_EQ(after_grow, p);  // grown back into the space it released
    for (unsigned i = 0; i < 100; ++i)
      ASSERT_EQ(p[i], static_cast<unsigned char>(i)) << i;
    heap_caps_free(p);
  }
  EXPECT_TRUE(g_failures.empty());
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
}

// ================================================================================================
// Runtime regions
// ================================================================================================

// heap_caps_add_region_with_caps overlap rules (spec §1.2) against a heap H = [hs, he) made from
// an allocated buffer: before / after / strictly inside are allowed, straddling either end, equal
// or containing ranges are ESP_FAIL. Ranges too small for a heap pass the overlap rule and end in
// ESP_ERR_INVALID_SIZE without touching memory, which lets the boundary cases be probed on H
// itself.
TEST_P(ChipConfigTest, RuntimeRegionOverlapMatrix) {
  auto *buf = static_cast<unsigned char *>(heap_caps_malloc(16384, k8 | kI));
  ASSERT_NE(buf, nullptr);
  const intptr_t b = reinterpret_cast<intptr_t>(buf);
  const intptr_t hs = b + 4096, he = b + 8192;
  const std::uint32_t caps1[3] = {kInvented, 0, 0};
  const unsigned heaps_before = reg().count();
  ASSERT_EQ(heap_caps_add_region_with_caps(caps1, hs, he), ESP_OK);  // inside a DRAM block
  EXPECT_EQ(reg().count(), heaps_before + 1);
  EXPECT_EQ(chip_of(reinterpret_cast<void *>(reg().view(0).start)),
            chip_of(reinterpret_cast<void *>(hs)));  // runtime heaps go to the head of the list

  struct {
    const char *what;
    intptr_t start, end;
    esp_err_t want;
  } const cases[] = {
      {"equal", hs, he, ESP_FAIL},
      {"straddles start", hs - 64, hs + 64, ESP_FAIL},
      {"straddles end", he - 64, he + 64, ESP_FAIL},
      {"contains", hs - 64, he + 64, ESP_FAIL},
      {"same start, larger", hs, he + 4, ESP_FAIL},
      {"same end, larger", hs - 4, he, ESP_FAIL},
      {"tiny, same start, inside", hs, hs + 8, ESP_ERR_INVALID_SIZE},
      {"tiny, same end, inside", he - 8, he, ESP_ERR_INVALID_SIZE},
      {"tiny, strictly inside", hs + 64, hs + 72, ESP_ERR_INVALID_SIZE},
      {"tiny, touching before", hs - 8, hs, ESP_ERR_INVALID_SIZE},
      {"tiny, touching after", he, he + 8, ESP_ERR_INVALID_SIZE},
      {"start not 4-byte aligned", b + 2, hs, ESP_ERR_INVALID_SIZE},
      {"start 0", 0, he, ESP_ERR_INVALID_ARG},
      {"end 0", hs, 0, ESP_ERR_INVALID_ARG},
      {"end before start", he, hs, ESP_ERR_INVALID_ARG},
      {"empty", hs, hs, ESP_ERR_INVALID_ARG},
  };
  for (const auto &c : cases)
    EXPECT_EQ(heap_caps_add_region_with_caps(caps1, c.start, c.end), c.want) << c.what;
  EXPECT_EQ(heap_caps_add_region_with_caps(nullptr, hs - 4096, hs), ESP_ERR_INVALID_ARG);
  EXPECT_EQ(reg().count(), heaps_before + 1);  // none of those added a heap
  EXPECT_TRUE(heap_caps_check_integrity_all(true));

  // Real heaps right before and right after H (inside the buffer) and strictly inside H (over a
  // block allocated from H).
  const std::uint32_t caps2[3] = {1u << 29, 0, 0};
  EXPECT_EQ(heap_caps_add_region_with_caps(caps2, b, hs), ESP_OK);
  EXPECT_EQ(heap_caps_add_region_with_caps(caps2, he, b + 16384), ESP_OK);
  auto *inner = static_cast<unsigned char *>(heap_caps_malloc(1024, kInvented));
  ASSERT_NE(inner, nullptr);
  EXPECT_GE(reinterpret_cast<intptr_t>(inner), hs);
  EXPECT_LT(reinterpret_cast<intptr_t>(inner), he);
  const std::uint32_t caps3[3] = {1u << 28, 0, 0};
  EXPECT_EQ(heap_caps_add_region_with_caps(caps3, reinterpret_cast<intptr_t>(inner),
                                           reinterpret_cast<intptr_t>(inner) + 1024),
            ESP_OK);
  EXPECT_EQ(reg().count(), heaps_before + 4);

  // Each custom capability is served by its own heap only, and frees go back to it.
  for (std::uint32_t cap : {kInvented, 1u << 29, 1u << 28}) {
    SCOPED_TRACE(hex(cap));
    const std::size_t before = heap_caps_get_free_size(cap);
    void *p = heap_caps_malloc(200, cap);
    ASSERT_NE(p, nullptr);
    EXPECT_GE(reinterpret_cast<intptr_t>(p), b);
    EXPECT_LT(reinterpret_cast<intptr_t>(p), b + 16384);
    if (cap == (1u << 28)) {
      EXPECT_GE(reinterpret_cast<unsigned char *>(p), inner);
      EXPECT_LT(reinterpret_cast<unsigned char *>(p), inner + 1024);
    }
    EXPECT_LT(heap_caps_get_free_size(cap), before);
    heap_caps_free(p);
    EXPECT_EQ(heap_caps_get_free_size(cap), before);
  }
  EXPECT_EQ(heap_caps_get_total_size(kInvented), 4096u);
  EXPECT_EQ(heap_caps_get_total_size(1u << 29), 4096u + 8192u);
  // Plain requests never land in them.
  std::vector<void *> plain;
  for (int i = 0; i < 32; ++i) {
    void *p = heap_caps_malloc(64, k8);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(reinterpret_cast<intptr_t>(p) < b || reinterpret_cast<intptr_t>(p) >= b + 16384);
    plain.push_back(p);
  }
  for (void *p : plain)
    heap_caps_free(p);
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
}

// heap_caps_add_region(_with_caps) compares its intptr_t bounds as signed integers (spec §1.2:
// end <= start is ESP_ERR_INVALID_ARG): a negative end (an address with the top bit set) lies below
// start, even where an unsigned comparison would make it the end of a huge range that straddles
// existing heaps (ESP_FAIL) or that no heap overlaps. Nothing is added.
TEST_P(ChipConfigTest, RuntimeRegionBoundsCompareAsSignedIntptr) {
  auto *buf = static_cast<unsigned char *>(heap_caps_malloc(8192, k8 | kI));
  ASSERT_NE(buf, nullptr);
  const intptr_t s = reinterpret_cast<intptr_t>(buf);
  const std::uint32_t caps[3] = {kInvented, 0, 0};
  const unsigned heaps_before = reg().count();
  EXPECT_EQ(heap_caps_add_region_with_caps(caps, s, -4), ESP_ERR_INVALID_ARG);
  EXPECT_EQ(heap_caps_add_region_with_caps(caps, s, INTPTR_MIN), ESP_ERR_INVALID_ARG);
  EXPECT_EQ(heap_caps_add_region_with_caps(caps, s, -1), ESP_ERR_INVALID_ARG);
  EXPECT_EQ(heap_caps_add_region(s, -4), ESP_ERR_INVALID_ARG);
  EXPECT_EQ(reg().count(), heaps_before);
  EXPECT_EQ(heap_caps_get_total_size(kInvented), 0u);
  // The same start with a positive end is still a heap.
  ASSERT_EQ(heap_caps_add_region_with_caps(caps, s, s + 8192), ESP_OK);
  EXPECT_EQ(heap_caps_get_total_size(kInvented), 8192u);
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
}

// heap_caps_add_region takes the caps of the chip region containing start (ESP-IDF's "Allocate new
// heap at runtime": the free size grows by the buffer minus the heap's overhead; ESP-IDF's test
// allows up to 3248 bytes of overhead).
TEST_P(ChipConfigTest, AddRegionUsesTheChipRegionsCaps) {
  auto *buf = static_cast<unsigned char *>(heap_caps_malloc(8192, k8 | kI));
  ASSERT_NE(buf, nullptr);
  // The chip region under the buffer: the boot heap containing it (the buffer may come from the
  // reserve pool, whose memory is a DRAM region of the chip).
  int parent = -1;
  for (std::size_t k = 0; k < model_.size(); ++k)
    if (model_[k].name != "pool" && model_[k].name != "SPIRAM" && chip_of(buf) >= model_[k].start &&
        chip_of(buf) < model_[k].start + model_[k].len)
      parent = static_cast<int>(k);
  ASSERT_GE(parent, 0);
  const std::size_t before = heap_caps_get_free_size(k8);
  const intptr_t s = reinterpret_cast<intptr_t>(buf);
  ASSERT_EQ(heap_caps_add_region(s, s + 8192), ESP_OK);
  const capheap::HeapView v = reg().view(0);  // the head of the list
  EXPECT_EQ(v.start, static_cast<std::uintptr_t>(s));
  EXPECT_TRUE(v.runtime);
  const ModelHeap &pm = model_[static_cast<std::size_t>(parent)];
  EXPECT_EQ(v.caps[0], pm.caps[0]);
  EXPECT_EQ(v.caps[1], pm.caps[1]);
  EXPECT_EQ(v.caps[2], pm.caps[2]);
  EXPECT_GE(heap_caps_get_free_size(k8), before + 8192 - 3248);
  EXPECT_EQ(heap_caps_get_free_size(k8), before + v.heap.free_bytes());
  // The new heap heads the list: the next 8BIT request goes wherever ESP-IDF's order over the
  // extended list says (into the new heap when its type has 8BIT at the first matching level).
  std::vector<ModelHeap> extended = model_;
  extended.insert(extended.begin(), mh("new", chip_of(buf), 8192, pm.caps));
  const std::size_t first = expected_order(extended, k8).at(0);
  void *p = heap_caps_malloc(100, k8);
  ASSERT_NE(p, nullptr);
  if (first == 0) {
    EXPECT_GE(p, static_cast<void *>(buf));
    EXPECT_LT(p, static_cast<void *>(buf + 8192));
  } else {
    EXPECT_EQ(model_heap_of(p), static_cast<int>(first - 1));
  }
  heap_caps_free(p);
  // "Add .bss memory to heap region runtime": a second add of the same range fails.
  EXPECT_EQ(heap_caps_add_region(s, s + 8192), ESP_FAIL);
  EXPECT_EQ(heap_caps_add_region(0, 8192), ESP_ERR_INVALID_ARG);
  static unsigned char host_only[256];
  EXPECT_EQ(heap_caps_add_region(reinterpret_cast<intptr_t>(host_only),
                                 reinterpret_cast<intptr_t>(host_only + 256)),
            ESP_ERR_NOT_FOUND);
}

// With PSRAM, ESP-IDF's region table contains the external RAM region (spec §5: "(CONFIG_SPIRAM)
// SOC_EXTRAM_DATA_LOW ... SPIRAM" on ESP32, "Regions: SPIRAM; ..." on ESP32-S3), so
// heap_caps_add_region over PSRAM memory finds the SPIRAM type (spec §1.2: "the caps of the SoC
// region containing start").
TEST_P(ChipConfigTest, AddRegionOverPsramUsesTheSpiramType) {
  if (!psram()) GTEST_SKIP() << "no PSRAM in this configuration";
  auto *buf = static_cast<unsigned char *>(heap_caps_malloc(65536, kS));
  ASSERT_NE(buf, nullptr);
  const intptr_t s = reinterpret_cast<intptr_t>(buf);
  ASSERT_EQ(heap_caps_add_region(s, s + 65536), ESP_OK);
  const capheap::HeapView v = reg().view(0);
  EXPECT_EQ(v.start, static_cast<std::uintptr_t>(s));
  EXPECT_EQ(v.caps[0], kSpiramCaps[0]);
  EXPECT_EQ(v.caps[1], kSpiramCaps[1]);
  EXPECT_EQ(v.caps[2], kSpiramCaps[2]);
}

// ================================================================================================
// malloc() policy, _prefer, internal reserve
// ================================================================================================

/// Allocates with f until it fails, returning the blocks (chunks of `chunk`, then smaller).
template <class F>
std::vector<void *> drain(F &&f, std::size_t chunk) {
  std::vector<void *> out;
  for (std::size_t s = chunk; s >= 16; s /= 2)
    while (void *p = f(s))
      out.push_back(p);
  return out;
}

TEST_P(ChipConfigTest, MallocDefaultPolicy) {
  g_failures.clear();
  if (!psram()) {
    // External allocations disabled: malloc() is heap_caps_malloc(DEFAULT|INTERNAL), including its
    // failure report (spec §3.6).
    void *p = heap_caps_malloc_default(100);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(model_heap_of(p), static_cast<int>(expected_order(model_, kD | kI)[0]));
    heap_caps_free(p);
    const std::size_t huge = heap_caps_get_total_size(0);
    EXPECT_EQ(heap_caps_malloc_default(huge), nullptr);
    expect_one_failure(huge, kD | kI, "heap_caps_malloc");
    void *r = heap_caps_realloc_default(nullptr, 64);
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(heap_caps_realloc_default(r, huge), nullptr);
    expect_one_failure(huge, kD | kI, "heap_caps_realloc");
    heap_caps_free(r);
    return;
  }
  // PSRAM: requests up to CONFIG_SPIRAM_MALLOC_ALWAYSINTERNAL (16384) internal first, larger ones
  // external first; both fall back to any DEFAULT heap; the final failure reports caps DEFAULT
  // from heap_caps_malloc_default.
  void *edge = heap_caps_malloc_default(16384);
  void *over = heap_caps_malloc_default(16385);
  ASSERT_TRUE(edge && over);
  EXPECT_FALSE(in_model(edge, "SPIRAM"));
  EXPECT_TRUE(in_model(over, "SPIRAM"));
  heap_caps_free(edge);
  heap_caps_free(over);
  heap_caps_malloc_extmem_enable(100);
  void *a = heap_caps_malloc_default(100), *b = heap_caps_malloc_default(101);
  ASSERT_TRUE(a && b);
  EXPECT_FALSE(in_model(a, "SPIRAM"));
  EXPECT_TRUE(in_model(b, "SPIRAM"));
  heap_caps_free(a);
  heap_caps_free(b);
  heap_caps_malloc_extmem_enable(16384);

  // realloc() follows the same policy and moves between internal and external memory.
  auto *r = static_cast<unsigned char *>(heap_caps_realloc_default(nullptr, 64));
  ASSERT_NE(r, nullptr);
  EXPECT_FALSE(in_model(r, "SPIRAM"));
  std::memset(r, 0x6B, 64);
  r = static_cast<unsigned char *>(heap_caps_realloc_default(r, 20000));
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(in_model(r, "SPIRAM"));
  for (int i = 0; i < 64; ++i)
    ASSERT_EQ(r[i], 0x6B);
  r = static_cast<unsigned char *>(heap_caps_realloc_default(r, 64));
  ASSERT_NE(r, nullptr);
  EXPECT_FALSE(in_model(r, "SPIRAM"));  // back inside: PSRAM lacks INTERNAL
  for (int i = 0; i < 64; ++i)
    ASSERT_EQ(r[i], 0x6B);
  heap_caps_free(r);

  // Fallbacks: with internal DEFAULT memory exhausted, small requests go to PSRAM.
  std::vector<void *> internal =
      drain([](std::size_t s) { return heap_caps_malloc(s, kD | kI); }, 4096);
  void *small = heap_caps_malloc_default(64);
  ASSERT_NE(small, nullptr);
  EXPECT_TRUE(in_model(small, "SPIRAM"));
  heap_caps_free(small);
  // ESP-IDF keeps the limit as an int (spec §1.1): 0xFFFFFFFF is -1 there, "external allocations
  // disabled", on a 64-bit host as on the chip; malloc then stays internal and fails.
  g_failures.clear();
  heap_caps_malloc_extmem_enable(0xFFFFFFFFu);
  EXPECT_EQ(heap_caps_malloc_default(64), nullptr);
  expect_one_failure(64, kD | kI, "heap_caps_malloc");
  heap_caps_malloc_extmem_enable(16384);
  for (void *p : internal)
    heap_caps_free(p);
  g_failures.clear();
  // With PSRAM exhausted, large requests fall back to internal memory.
  std::vector<void *> external =
      drain([](std::size_t s) { return heap_caps_malloc(s, kD | kS); }, 65536);
  void *large = heap_caps_malloc_default(20000);
  ASSERT_NE(large, nullptr);
  EXPECT_FALSE(in_model(large, "SPIRAM"));
  // Both exhausted: one callback, caps DEFAULT, from heap_caps_malloc_default.
  std::vector<void *> rest = drain([](std::size_t s) { return heap_caps_malloc(s, kD); }, 4096);
  g_failures.clear();
  EXPECT_EQ(heap_caps_malloc_default(32), nullptr);
  expect_one_failure(32, kD, "heap_caps_malloc_default");
  EXPECT_EQ(heap_caps_aligned_alloc_default(64, 32), nullptr);
  expect_one_failure(32, kD, "heap_caps_aligned_alloc_default");
  for (void *p : rest)
    heap_caps_free(p);
  heap_caps_free(large);
  for (void *p : external)
    heap_caps_free(p);
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
}

// "Check if reserved DMA pool still can allocate even when malloc()'ed memory is exhausted".
TEST_P(ChipConfigTest, InternalReserveSurvivesMallocExhaustion) {
  if (!psram()) GTEST_SKIP() << "the reserve exists only with PSRAM";
  const int pool = find_model("pool");
  ASSERT_EQ(pool, 0);
  const std::size_t pool_free = free_of(0);
  std::vector<void *> blocks =
      drain([](std::size_t s) { return heap_caps_malloc_default(s); }, 4096);
  std::vector<void *> more = drain([](std::size_t s) { return heap_caps_malloc(s, kD); }, 4096);
  EXPECT_TRUE(more.empty());
  EXPECT_EQ(free_of(0), pool_free);  // plain malloc never touched it
  void *dma = heap_caps_malloc(1024, kDma);
  ASSERT_NE(dma, nullptr);
  EXPECT_EQ(model_heap_of(dma), 0);
  void *internal = heap_caps_malloc(1024, kI | k8);
  ASSERT_NE(internal, nullptr);
  EXPECT_EQ(model_heap_of(internal), 0);
  heap_caps_free(dma);
  heap_caps_free(internal);
  for (void *p : blocks)
    heap_caps_free(p);
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
}

// The reserve pool's caps are ESP-IDF's PSRAM driver's {0, DMA|INTERNAL, 8BIT|32BIT}: it shares no
// bit at priority 0, so INTERNAL|8BIT requests (task stacks, driver buffers) take the internal RAM
// that has 8BIT at priority 0 first and reach the pool only at priority 1; DMA requests, which no
// heap serves at priority 0, still come from the pool first (it heads the list). With the pool's
// DMA|INTERNAL at priority 0, every INTERNAL|8BIT request used to drain the pool first.
TEST_P(ChipConfigTest, InternalReservePoolIsNotTheFirstChoiceOfInternal8bit) {
  if (!psram()) GTEST_SKIP() << "the reserve exists only with PSRAM";
  ASSERT_EQ(find_model("pool"), 0);
  const capheap::HeapView pool = reg().view(static_cast<unsigned>(pos_[0]));
  EXPECT_EQ(pool.caps[0], 0u);
  EXPECT_EQ(pool.caps[1], kDma | kI);
  EXPECT_EQ(pool.caps[2], k8 | k32);
  const std::size_t pool_free = free_of(0);
  void *internal = heap_caps_malloc(1024, kI | k8);
  ASSERT_NE(internal, nullptr);
  EXPECT_EQ(model_heap_of(internal), static_cast<int>(expected_order(model_, kI | k8)[0]));
  EXPECT_NE(model_heap_of(internal), 0);
  EXPECT_EQ(free_of(0), pool_free);  // the pool was not touched
  void *dma = heap_caps_malloc(1024, kDma);
  ASSERT_NE(dma, nullptr);
  EXPECT_EQ(model_heap_of(dma), 0);
  heap_caps_free(dma);
  heap_caps_free(internal);
  EXPECT_EQ(free_of(0), pool_free);
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
}

TEST_P(ChipConfigTest, PreferVariants) {
  g_failures.clear();
  // First caps that works wins; no callback.
  void *p = heap_caps_malloc_prefer(100, 2, kS, kD | kI);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(in_model(p, "SPIRAM"), psram());
  heap_caps_free(p);
  p = esp_only_malloc_prefer2(100, kX | k8, kDma);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(model_heap_of(p), static_cast<int>(expected_order(model_, kDma)[0]));
  EXPECT_TRUE(g_failures.empty());
  // realloc_prefer: moves with the first caps that works, keeps content.
  std::memset(p, 0x42, 100);
  void *q = heap_caps_realloc_prefer(p, 300, 3, kInv, kX | kDma, k8 | kI);
  ASSERT_NE(q, nullptr);
  for (int i = 0; i < 100; ++i)
    ASSERT_EQ(static_cast<unsigned char *>(q)[i], 0x42);
  EXPECT_TRUE(g_failures.empty());
  // Failure: NULL, block untouched, one callback with the last caps tried.
  EXPECT_EQ(esp_only_realloc_prefer2(q, 200, kInv, kInvented), nullptr);
  expect_one_failure(200, kInvented, "heap_caps_realloc_prefer");
  for (int i = 0; i < 100; ++i)
    ASSERT_EQ(static_cast<unsigned char *>(q)[i], 0x42);
  heap_caps_free(q);
  EXPECT_EQ(heap_caps_malloc_prefer(50, 3, kInv, 0u, kX | kDma), nullptr);
  expect_one_failure(50, kX | kDma, "heap_caps_malloc_prefer");
  // num 0: nothing tried, the callback names MALLOC_CAP_DEFAULT.
  EXPECT_EQ(heap_caps_malloc_prefer(50, 0), nullptr);
  expect_one_failure(50, kD, "heap_caps_malloc_prefer");
  // calloc_prefer zero-fills.
  auto *z = static_cast<unsigned char *>(esp_only_calloc_prefer2(5, 20, kInv, k8));
  ASSERT_NE(z, nullptr);
  for (int i = 0; i < 100; ++i)
    ASSERT_EQ(z[i], 0);
  heap_caps_free(z);
  EXPECT_EQ(heap_caps_calloc_prefer(1, 64, 2, kInv, kX | k8), nullptr);
  expect_one_failure(64, kX | k8, "heap_caps_calloc_prefer");
}

// ================================================================================================
// Every query on every bundled chip
// ================================================================================================

struct WalkedHeap {
  std::uintptr_t start = 0, end = 0;
  std::size_t used_blocks = 0, free_blocks = 0, used_bytes = 0, free_bytes = 0;
};

bool walk_collect(walker_heap_into_t h, walker_block_info_t b, void *user) {
  auto &heaps = *static_cast<std::vector<WalkedHeap> *>(user);
  if (heaps.empty() || heaps.back().start != static_cast<std::uintptr_t>(h.start)) {
    heaps.emplace_back();
    heaps.back().start = static_cast<std::uintptr_t>(h.start);
    heaps.back().end = static_cast<std::uintptr_t>(h.end);
  }
  WalkedHeap &w = heaps.back();
  if (b.used) {
    ++w.used_blocks;
    w.used_bytes += b.size;
  } else {
    ++w.free_blocks;
    w.free_bytes += b.size + 4;  // a free block's header counts as free memory
  }
  return true;
}

std::vector<WalkedHeap> walk(std::uint32_t caps) {
  std::vector<WalkedHeap> out;
  heap_caps_walk(caps, walk_collect, &out);
  return out;
}

/// Registry position of the heap starting at s.
int position_of(std::uintptr_t s) {
  for (unsigned i = 0; i < reg().count(); ++i)
    if (reg().view(i).start == s) return static_cast<int>(i);
  return -1;
}

std::vector<std::uint32_t> query_caps() {
  std::vector<std::uint32_t> c = {0u};
  for (int b = 0; b <= 21; ++b)
    c.push_back(1u << b);
  for (std::uint32_t x :
       {kD | kI, kI | k8, kDma | kI, kD | kS, k8 | k32, kX | k32, kInvented, kInv})
    c.push_back(x);
  return c;
}

/// Checks every query for `caps` against a heap_caps_walk of the matching heaps.
void check_queries(std::uint32_t caps) {
  SCOPED_TRACE("caps " + hex(caps));
  // Which heaps match, by ESP-IDF's query rule: every requested bit over the three levels (caps 0:
  // all heaps; INVALID: none for sizes/info, all for check/dump/walk).
  std::vector<std::uintptr_t> want;
  for (unsigned i = 0; i < reg().count(); ++i) {
    const capheap::HeapView v = reg().view(i);
    const std::uint32_t all = v.caps[0] | v.caps[1] | v.caps[2];
    if (v.registered && ((caps & kInv) != 0 || (all & caps) == caps)) want.push_back(v.start);
  }
  const std::vector<WalkedHeap> heaps = walk(caps);
  std::vector<std::uintptr_t> got;
  for (const WalkedHeap &h : heaps)
    got.push_back(h.start);
  ASSERT_EQ(got, want) << "heap_caps_walk visits the matching heaps in list order";

  std::size_t total = 0, free_bytes = 0, min_free = 0, largest = 0, used_bytes = 0, used_blocks = 0,
              free_blocks = 0;
  for (const WalkedHeap &h : heaps) {
    const int pos = position_of(h.start);
    ASSERT_GE(pos, 0);
    const capheap::HeapView v = reg().view(static_cast<unsigned>(pos));
    total += h.end - h.start;
    free_bytes += h.free_bytes;
    used_bytes += h.used_bytes;
    used_blocks += h.used_blocks;
    free_blocks += h.free_blocks;
    EXPECT_EQ(v.heap.free_bytes(), h.free_bytes) << hex(h.start);
    min_free += v.heap.minimum_free_bytes();
    largest = std::max(largest, v.heap.largest_free_block());
  }
  multi_heap_info_t info;
  std::memset(&info, 0xA5, sizeof info);
  heap_caps_get_info(&info, caps);
  if ((caps & kInv) != 0) {  // no heap has the INVALID bit: every size query is 0
    EXPECT_EQ(heap_caps_get_total_size(caps), 0u);
    EXPECT_EQ(heap_caps_get_free_size(caps), 0u);
    EXPECT_EQ(heap_caps_get_minimum_free_size(caps), 0u);
    EXPECT_EQ(heap_caps_get_largest_free_block(caps), 0u);
    EXPECT_EQ(info.total_free_bytes, 0u);
    EXPECT_EQ(info.total_blocks, 0u);
    return;
  }
  EXPECT_EQ(heap_caps_get_total_size(caps), total);
  EXPECT_EQ(heap_caps_get_free_size(caps), free_bytes);
  EXPECT_EQ(heap_caps_get_minimum_free_size(caps), min_free);
  EXPECT_EQ(heap_caps_get_largest_free_block(caps), largest);
  EXPECT_EQ(info.total_free_bytes, free_bytes);
  EXPECT_EQ(info.total_allocated_bytes, used_bytes);
  EXPECT_EQ(info.minimum_free_bytes, min_free);
  EXPECT_EQ(info.largest_free_block, largest);
  EXPECT_EQ(info.allocated_blocks, used_blocks);
  EXPECT_EQ(info.free_blocks, free_blocks);
  EXPECT_EQ(info.total_blocks, used_blocks + free_blocks);
  EXPECT_TRUE(heap_caps_check_integrity(caps, true));
}

struct QueryRun {
  std::string chip;
  std::size_t psram;
};

std::vector<QueryRun> query_runs() {
  std::vector<QueryRun> runs;
  for (const std::string &chip : capheap::sim::list_chips()) {
    runs.push_back({chip, 0});
    const capheap::sim::LoadResult r = capheap::sim::load_layout(chip);
    if (r.ok() && r.layout->c_layout().ext_ram_type >= 0) runs.push_back({chip, 1u << 20});
  }
  return runs;
}

TEST_F(ChipTest, EveryQueryOnEveryBundledChip) {
  const std::vector<QueryRun> runs = query_runs();
  ASSERT_GE(runs.size(), 11u);
  for (const QueryRun &run : runs) {
    SCOPED_TRACE(run.chip + (run.psram != 0 ? " + 1 MiB external RAM" : ""));
    capheap_host_config_t hc = CAPHEAP_HOST_CONFIG_DEFAULT;
    hc.psram_size = run.psram;
    ASSERT_EQ(capheap_host_init(run.chip.c_str(), &hc), ESP_OK);
    ASSERT_EQ(heap_caps_register_failed_alloc_callback(on_alloc_failed), ESP_OK);
    g_failures.clear();

    // Fresh chip, then a fragmented one.
    for (std::uint32_t caps : query_caps())
      check_queries(caps);
    std::vector<void *> live;
    for (int i = 0; i < 60; ++i) {
      void *p = heap_caps_malloc(static_cast<std::size_t>(24 + 40 * i), i % 3 == 0 ? k8 : kD);
      ASSERT_NE(p, nullptr) << i;
      live.push_back(p);
    }
    for (std::size_t i = 0; i < live.size(); i += 2) {
      heap_caps_free(live[i]);
      live[i] = nullptr;
    }
    for (std::uint32_t caps : query_caps())
      check_queries(caps);

    // walk_all visits every heap, in list order.
    std::vector<WalkedHeap> all;
    heap_caps_walk_all(walk_collect, &all);
    std::vector<std::uintptr_t> got, want;
    for (const WalkedHeap &h : all)
      got.push_back(h.start);
    for (unsigned i = 0; i < reg().count(); ++i)
      if (reg().view(i).registered) want.push_back(reg().view(i).start);
    EXPECT_EQ(got, want);

    // largest_free_block is exactly what heap_caps_malloc can return now.
    const std::size_t largest = heap_caps_get_largest_free_block(kD);
    ASSERT_GT(largest, 0u);
    void *big = heap_caps_malloc(largest, kD);
    EXPECT_NE(big, nullptr);
    heap_caps_free(big);
    g_failures.clear();
    EXPECT_EQ(heap_caps_malloc(largest + 4, kD), nullptr);
    g_failures.clear();

    // The minimum drops with an allocation to exactly the free size it left, heap by heap, and
    // stays there after the free.
    std::vector<std::size_t> min_before;
    std::vector<unsigned> matching;
    for (unsigned i = 0; i < reg().count(); ++i)
      if (reg().heap_matches(i, capheap::Caps(kD))) {
        matching.push_back(i);
        min_before.push_back(reg().view(i).heap.minimum_free_bytes());
      }
    const std::size_t free0 = heap_caps_get_free_size(kD);
    void *m = heap_caps_malloc(largest, kD);
    ASSERT_NE(m, nullptr);
    std::size_t want_min = 0;
    for (std::size_t j = 0; j < matching.size(); ++j)
      want_min += std::min(min_before[j], reg().view(matching[j]).heap.free_bytes());
    EXPECT_EQ(heap_caps_get_minimum_free_size(kD), want_min);
    EXPECT_LT(want_min, free0);
    heap_caps_free(m);
    EXPECT_EQ(heap_caps_get_free_size(kD), free0);
    EXPECT_EQ(heap_caps_get_minimum_free_size(kD), want_min);

    // Integrity of everything and of the heap holding an address; containing block size of an
    // interior pointer.
    EXPECT_TRUE(heap_caps_check_integrity_all(true));
    void *live1 = live[1];
    ASSERT_NE(live1, nullptr);
    EXPECT_TRUE(heap_caps_check_integrity_addr(reinterpret_cast<intptr_t>(live1), true));
    static unsigned char host_only[16];
    EXPECT_FALSE(heap_caps_check_integrity_addr(reinterpret_cast<intptr_t>(host_only), true));
    EXPECT_EQ(heap_caps_get_containing_block_size(static_cast<unsigned char *>(live1) + 17),
              heap_caps_get_allocated_size(live1));
    EXPECT_EQ(heap_caps_get_containing_block_size(live1), heap_caps_get_allocated_size(live1));

    // The C file's view agrees.
    ASSERT_EQ(esp_only_install_failure_recorder(), ESP_OK);
    for (std::uint32_t caps : {0u, kD, k8, k32, kDma, kI})
      EXPECT_EQ(esp_only_queries_agree(caps), 0) << hex(caps);
    EXPECT_EQ(esp_only_monitor_local_minimum(kD), 0);

    for (void *p : live)
      heap_caps_free(p);
    capheap_host_deinit();
  }
}

// Minimum free size and the local-minimum monitor, heap by heap (spec §1.1): start re-bases every
// heap's minimum at its current free size (after allocating its own bookkeeping from DEFAULT
// memory); stop restores min(local, lifetime) per heap; stop without start is ESP_FAIL; start while
// active re-snapshots and returns ESP_OK.
TEST_P(ChipConfigTest, MinimumAndLocalMonitorPerHeap) {
  const unsigned n = reg().count();
  auto mins = [&] {
    std::vector<std::size_t> v(n);
    for (unsigned i = 0; i < n; ++i)
      v[i] = reg().view(i).heap.minimum_free_bytes();
    return v;
  };
  auto frees = [&] {
    std::vector<std::size_t> v(n);
    for (unsigned i = 0; i < n; ++i)
      v[i] = reg().view(i).heap.free_bytes();
    return v;
  };
  EXPECT_EQ(mins(), frees());  // a fresh chip has never been lower
  EXPECT_EQ(heap_caps_monitor_local_minimum_free_size_stop(), ESP_FAIL);
  // Lifetime minimum: a big block, freed.
  void *big = heap_caps_malloc(20000, kD);
  ASSERT_NE(big, nullptr);
  const std::vector<std::size_t> at_big = frees();
  heap_caps_free(big);
  const std::vector<std::size_t> lifetime = mins();
  EXPECT_EQ(lifetime, at_big);
  EXPECT_LT(heap_caps_get_minimum_free_size(kD), heap_caps_get_free_size(kD));

  ASSERT_EQ(heap_caps_monitor_local_minimum_free_size_start(), ESP_OK);
  EXPECT_EQ(mins(), frees());  // local window starts at the current free sizes
  void *small = heap_caps_malloc(1000, kD);
  ASSERT_NE(small, nullptr);
  const std::vector<std::size_t> local = frees();
  EXPECT_EQ(mins(), local);
  heap_caps_free(small);
  EXPECT_EQ(mins(), local);
  ASSERT_EQ(heap_caps_monitor_local_minimum_free_size_stop(), ESP_OK);
  const std::vector<std::size_t> after = mins();
  for (unsigned i = 0; i < n; ++i)
    EXPECT_EQ(after[i], std::min(local[i], lifetime[i])) << "heap " << i;
  EXPECT_EQ(heap_caps_monitor_local_minimum_free_size_stop(), ESP_FAIL);
  // Start while active: ESP_OK (ESP-IDF code), one stop ends it.
  ASSERT_EQ(heap_caps_monitor_local_minimum_free_size_start(), ESP_OK);
  ASSERT_EQ(heap_caps_monitor_local_minimum_free_size_start(), ESP_OK);
  EXPECT_EQ(heap_caps_monitor_local_minimum_free_size_stop(), ESP_OK);
  EXPECT_EQ(heap_caps_monitor_local_minimum_free_size_stop(), ESP_FAIL);
}

INSTANTIATE_TEST_SUITE_P(Chips, ChipConfigTest, ::testing::ValuesIn(kConfigs), config_name);

// ================================================================================================
// ESP-IDF's on-target cases (spec §6.2) on every chip configuration, at every poisoning level
// (ESP-IDF runs the test app in the no_poisoning, light_poisoning and comprehensive_poisoning
// configurations)
// ================================================================================================

class EspIdfCaseTest : public ChipTest,
                       public ::testing::WithParamInterface<std::tuple<ChipConfig, int>> {
 protected:
  void SetUp() override {
    CAPHEAP_SKIP_IF_NO_DECORATION(std::get<1>(GetParam()) != CAPHEAP_POISONING_NONE);
    ChipTest::SetUp();
    poisoning_ = static_cast<capheap_poisoning_t>(std::get<1>(GetParam()));
    start(std::get<0>(GetParam()));
  }
  const ChipConfig &chip() const { return std::get<0>(GetParam()); }
  bool psram() const { return chip().psram > 0; }
  bool poisoned() const { return poisoning_ != CAPHEAP_POISONING_NONE; }
  bool comprehensive() const { return poisoning_ == CAPHEAP_POISONING_COMPREHENSIVE; }
  /// Engine block of an s-byte request (granule 4; 12 bytes of poisoning).
  std::size_t blk(std::size_t s) const {
    return std::max<std::size_t>((s + (poisoned() ? 12 : 0) + 3) / 4 * 4 + 4, 16);
  }
};

std::string case_name(const ::testing::TestParamInfo<std::tuple<ChipConfig, int>> &i) {
  static const char *const kLevel[] = {"none", "light", "comprehensive"};
  return std::string(std::get<0>(i.param).id) + "_" + kLevel[std::get<1>(i.param)];
}

// test_malloc_caps.c "Capabilities allocator test" (ESP32: IRAM is 32BIT-only): 32BIT free size =
// 8BIT free size + IRAM; an 8BIT allocation costs both figures its block, a 32BIT one comes from
// IRAM and leaves the 8BIT figure alone; once IRAM is full 32BIT requests change over to DRAM;
// 8BIT|EXEC is impossible; EXEC still yields executable memory (IRAM, then the D/IRAM instruction
// alias).
TEST_P(EspIdfCaseTest, CapabilitiesAllocator) {
  if (!is_esp32(chip())) GTEST_SKIP() << "the ESP32's 32BIT-only IRAM";
  const int iram = find_model("IRAM");
  ASSERT_GE(iram, 0);
  const std::size_t free8 = heap_caps_get_free_size(k8);
  const std::size_t free32 = heap_caps_get_free_size(k32);
  EXPECT_EQ(free32, free8 + free_of(static_cast<std::size_t>(iram)));
  EXPECT_GT(heap_caps_get_free_size(kX), 0u);

  void *m8 = heap_caps_malloc(10, k8);
  ASSERT_NE(m8, nullptr);
  EXPECT_TRUE(in_model(m8, "DRAM"));
  EXPECT_EQ(heap_caps_get_free_size(k8), free8 - blk(10));
  EXPECT_EQ(heap_caps_get_free_size(k32), free32 - blk(10));

  void *m32 = heap_caps_malloc(10, k32);
  ASSERT_NE(m32, nullptr);
  EXPECT_TRUE(in_model(m32, "IRAM"));
  EXPECT_EQ(heap_caps_get_free_size(k8), free8 - blk(10));
  EXPECT_EQ(heap_caps_get_free_size(k32), free32 - blk(10) - blk(12));  // 32BIT: 10 -> 12

  void *x = heap_caps_malloc(100, kX);  // EXEC: IRAM first
  ASSERT_NE(x, nullptr);
  EXPECT_TRUE(in_model(x, "IRAM"));
  // Fill IRAM: the next 32BIT request changes over to DRAM.
  void *fill = heap_caps_malloc(largest_of(static_cast<std::size_t>(iram)), k32);
  ASSERT_NE(fill, nullptr);
  EXPECT_TRUE(in_model(fill, "IRAM"));
  EXPECT_EQ(largest_of(static_cast<std::size_t>(iram)), 0u);
  const std::size_t free8_full = heap_caps_get_free_size(k8);
  void *over = heap_caps_malloc(100, k32);
  ASSERT_NE(over, nullptr);
  EXPECT_TRUE(in_model(over, "DRAM"));
  EXPECT_EQ(heap_caps_get_free_size(k8), free8_full - blk(100));
  // Impossible.
  EXPECT_EQ(heap_caps_malloc(100, kX | k8), nullptr);
  expect_one_failure(100, kX | k8, "heap_caps_malloc");
  // EXEC with IRAM full: the D/IRAM instruction alias, executable.
  void *x2 = heap_caps_malloc(100, kX);
  ASSERT_NE(x2, nullptr);
  const IramWindow w = iram_window(chip());
  EXPECT_GE(chip_of(x2), w.lo);
  EXPECT_LT(chip_of(x2), w.hi);
  for (void *p : {m8, m32, x, fill, over, x2})
    heap_caps_free(p);
  EXPECT_EQ(heap_caps_get_free_size(k8), free8);
  EXPECT_EQ(heap_caps_get_free_size(k32), free32);
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
  EXPECT_TRUE(g_failures.empty());
}

// test_malloc_caps.c "heap_caps metadata test": heap_caps_get_info(8BIT) before and after
// allocating the largest free block, and after freeing it. ESP-IDF allows 200 bytes of slack;
// here every figure is exact.
TEST_P(EspIdfCaseTest, MetadataAroundTheLargestBlock) {
  multi_heap_info_t original, during, after;
  heap_caps_get_info(&original, k8);
  ASSERT_GT(original.largest_free_block, 0u);
  void *b = heap_caps_malloc(original.largest_free_block, k8);
  ASSERT_NE(b, nullptr);
  heap_caps_get_info(&during, k8);
  EXPECT_LE(during.largest_free_block, original.largest_free_block);
  EXPECT_EQ(during.allocated_blocks, original.allocated_blocks + 1);
  EXPECT_EQ(during.total_allocated_bytes,
            original.total_allocated_bytes + heap_caps_get_allocated_size(b));
  // The free figure drops by the block; with poisoning 12 bytes less when the heap's free figure
  // reaches 0 (it is its raw free bytes less 12, floored at 0: spec §4.3).
  const std::size_t block = original.total_free_bytes - during.total_free_bytes;
  EXPECT_GE(block + (poisoned() ? 12 : 0), blk(original.largest_free_block));
  EXPECT_LT(block, blk(original.largest_free_block) + 16);
  EXPECT_EQ(during.minimum_free_bytes, original.minimum_free_bytes - block);
  heap_caps_free(b);
  heap_caps_get_info(&after, k8);
  EXPECT_EQ(after.total_free_bytes, original.total_free_bytes);
  EXPECT_EQ(after.total_allocated_bytes, original.total_allocated_bytes);
  EXPECT_EQ(after.largest_free_block, original.largest_free_block);
  EXPECT_EQ(after.allocated_blocks, original.allocated_blocks);
  EXPECT_EQ(after.free_blocks, original.free_blocks);
  EXPECT_EQ(after.total_blocks, original.total_blocks);
  EXPECT_EQ(after.minimum_free_bytes, during.minimum_free_bytes);
  EXPECT_TRUE(g_failures.empty());
}

// test_malloc.c "Malloc/overwrite, then free all available DRAM": 1 KiB malloc() blocks until
// none is left, each overwritten, all freed; twice, with the same count, and everything back.
TEST_P(EspIdfCaseTest, MallocOverwriteThenFreeAllTwice) {
  const std::size_t free0 = heap_caps_get_free_size(kD);
  std::size_t counts[2] = {0, 0};
  for (std::size_t &count : counts) {
    std::vector<unsigned char *> blocks;
    while (auto *p = static_cast<unsigned char *>(heap_caps_malloc_default(1024))) {
      std::memset(p, 0xA5, 1024);
      blocks.push_back(p);
    }
    count = blocks.size();
    ASSERT_GT(count, 0u);
    // What is left cannot hold another KiB anywhere malloc() looks.
    EXPECT_LT(heap_caps_get_largest_free_block(kD | (psram() ? 0 : kI)), 1024u);
    for (unsigned char *p : blocks) {
      ASSERT_EQ(p[0], 0xA5);
      ASSERT_EQ(p[1023], 0xA5);
      heap_caps_free(p);
    }
    EXPECT_EQ(heap_caps_get_free_size(kD), free0);
  }
  EXPECT_EQ(counts[0], counts[1]);
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
  g_failures.clear();  // the last malloc() of each round failed on purpose
}

// test_realloc.c "realloc shrink buffer in place" (not with comprehensive poisoning, which never
// reallocates in place: there the block moves and the data come along) and "realloc shrink buffer
// with EXEC CAPS" (the result is executable memory: IRAM or the D/IRAM instruction alias; ESP-IDF
// skips it with memory protection, where EXEC is impossible).
TEST_P(EspIdfCaseTest, ReallocShrink) {
  auto *x = static_cast<unsigned char *>(heap_caps_malloc_default(64));
  ASSERT_NE(x, nullptr);
  for (unsigned i = 0; i < 64; ++i)
    x[i] = static_cast<unsigned char>(i);
  auto *y = static_cast<unsigned char *>(heap_caps_realloc_default(x, 48));
  ASSERT_NE(y, nullptr);
  EXPECT_EQ(y == x, !comprehensive());
  for (unsigned i = 0; i < 48; ++i)
    ASSERT_EQ(y[i], i);
  heap_caps_free(y);

  const bool exec = is_esp32(chip()) || chip().variant == Variant::kNoMemprot;
  void *e = heap_caps_malloc(64, kX);
  EXPECT_EQ(e != nullptr, exec);
  if (!exec) {
    expect_one_failure(64, kX, "heap_caps_malloc");
    return;
  }
  std::memset(e, 0x3C, 64);
  void *e2 = heap_caps_realloc(e, 48, kX);
  ASSERT_NE(e2, nullptr);
  const std::uint32_t a = chip_of(e2);
  const IramWindow w = iram_window(chip());
  const bool in_iram = in_model(e2, "IRAM");
  EXPECT_TRUE(in_iram || (a >= w.lo && a < w.hi)) << hex(a);
  for (unsigned i = 0; i < 48; ++i)
    ASSERT_EQ(static_cast<unsigned char *>(e2)[i], 0x3C);
  heap_caps_free(e2);
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
  EXPECT_TRUE(g_failures.empty());
}

// test_heap_align_hw.c "test heap_caps_malloc_prefer for dma memory", "test
// heap_caps_calloc_prefer for dma memory" and "test alignment for dma": DMA allocations are
// aligned to the memory's cache line (PSRAM: 32 bytes; internal RAM of these chips: none beyond 4)
// and, where the line rounds the size up, writable up to the rounded size; calloc_prefer
// zero-fills. (Internal DMA memory is not rounded: writing past the request reaches the tail
// canary with poisoning, as on the device.)
TEST_P(EspIdfCaseTest, DmaPreferAndAlignment) {
  const std::size_t line = psram() ? 32 : 4;  // where DMA|SPIRAM lands first
  for (const std::size_t size :
       {std::size_t{1}, std::size_t{31}, std::size_t{33}, std::size_t{100}, std::size_t{1000}}) {
    SCOPED_TRACE(size);
    const std::size_t rounded = (size + line - 1) / line * line;
    auto *p = static_cast<unsigned char *>(heap_caps_malloc_prefer(size, 2, kDma | kS, kDma | kI));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(in_model(p, "SPIRAM"), psram());
    EXPECT_EQ(chip_of(p) % line, 0u);
    EXPECT_GE(heap_caps_get_allocated_size(p), rounded);
    std::memset(p, 0x77, line > 4 ? rounded : size);
    EXPECT_TRUE(heap_caps_check_integrity_all(true));
    heap_caps_free(p);
    auto *z =
        static_cast<unsigned char *>(heap_caps_calloc_prefer(size, 1, 2, kDma | kS, kDma | kI));
    ASSERT_NE(z, nullptr);
    EXPECT_EQ(in_model(z, "SPIRAM"), psram());
    EXPECT_EQ(chip_of(z) % line, 0u);
    for (std::size_t i = 0; i < size; ++i)
      ASSERT_EQ(z[i], 0) << i;
    heap_caps_free(z);
    // Internal DMA memory directly.
    auto *d = static_cast<unsigned char *>(heap_caps_malloc(size, kDma));
    ASSERT_NE(d, nullptr);
    EXPECT_FALSE(in_model(d, "SPIRAM"));
    EXPECT_EQ(chip_of(d) % 4, 0u);
    std::memset(d, 0x55, size);
    heap_caps_free(d);
  }
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
  EXPECT_TRUE(g_failures.empty());
}

// test_corruption_check.c "canary corruption in light or comprehensive poisoning mode": a
// damaged head or tail canary fails heap_caps_check_integrity(_all/_addr) with poisoning and goes
// unnoticed without; "multi_heap poisoning detection" (on target): a byte written into freed
// memory is found only with comprehensive poisoning.
TEST_P(EspIdfCaseTest, CanaryAndFreeMemoryCorruption) {
  auto *p = static_cast<unsigned char *>(heap_caps_malloc(100, k8));
  auto *q = static_cast<unsigned char *>(heap_caps_malloc(200, k8));
  auto *guard = static_cast<unsigned char *>(heap_caps_malloc(100, k8));
  ASSERT_TRUE(p && q && guard);
  const intptr_t at = reinterpret_cast<intptr_t>(p);
  // (Without poisoning there are no canaries: those bytes are the next block's header, the
  // canary case runs only in the poisoning configurations, as in ESP-IDF.)
  if (poisoned())
    for (const std::ptrdiff_t off : {std::ptrdiff_t{-8}, std::ptrdiff_t{100}}) {  // head, tail
      SCOPED_TRACE(off);
      p[off] ^= 0x01;
      EXPECT_FALSE(heap_caps_check_integrity_all(false));
      EXPECT_FALSE(heap_caps_check_integrity(k8, false));
      EXPECT_FALSE(heap_caps_check_integrity_addr(at, false));
      EXPECT_TRUE(heap_caps_check_integrity(kS, false));  // the other heaps are fine
      p[off] ^= 0x01;
      EXPECT_TRUE(heap_caps_check_integrity_all(true));
    }
  heap_caps_free(q);
  q[150] ^= 0x20;  // write after free
  EXPECT_EQ(heap_caps_check_integrity_all(false), !comprehensive());
  q[150] ^= 0x20;
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
  heap_caps_free(p);
  heap_caps_free(guard);
}

// test_allocator_timings.c "Heap many random allocations timings" without the timing figures:
// 128 pointers, 5000 operations of malloc, free and realloc with MALLOC_CAP_DEFAULT, the heaps'
// integrity checked after each, contents kept, everything back at the end.
TEST_P(EspIdfCaseTest, ManyRandomAllocations) {
  if (comprehensive()) GTEST_SKIP() << "ESP-IDF runs it without poisoning";
  const unsigned seed = test_seed();
  std::printf("[ seed     ] CAPHEAP_TEST_SEED=%u\n", seed);
  std::mt19937 rng(seed);
  const std::size_t free0 = heap_caps_get_free_size(kD);
  constexpr std::size_t kSlots = 128;
  unsigned char *ptr[kSlots] = {};
  std::size_t len[kSlots] = {};
  for (int it = 0; it < 5000; ++it) {
    const std::size_t k = rng() % kSlots;
    const std::size_t size = rng() % 4096;
    if (ptr[k] != nullptr) {
      ASSERT_EQ(ptr[k][0], static_cast<unsigned char>(k));
      ASSERT_EQ(ptr[k][len[k] - 1], static_cast<unsigned char>(k));
    }
    if (rng() % 4 == 0) {
      auto *q = static_cast<unsigned char *>(heap_caps_realloc(ptr[k], size, kD));
      if (size == 0 || q != nullptr) {
        if (q != nullptr && ptr[k] != nullptr) {
          ASSERT_EQ(q[0], static_cast<unsigned char>(k));
        }
        ptr[k] = q;
        len[k] = size;
      }
    } else {
      heap_caps_free(ptr[k]);
      ptr[k] = static_cast<unsigned char *>(heap_caps_malloc(size, kD));
      len[k] = ptr[k] != nullptr ? size : 0;
    }
    if (ptr[k] != nullptr) std::memset(ptr[k], static_cast<int>(k), len[k]);
    ASSERT_TRUE(heap_caps_check_integrity_all(true)) << it;
  }
  for (unsigned char *p : ptr)
    heap_caps_free(p);
  EXPECT_EQ(heap_caps_get_free_size(kD), free0);
  g_failures.clear();  // size-0 reallocs and the odd full heap
}

INSTANTIATE_TEST_SUITE_P(Chips, EspIdfCaseTest,
                         ::testing::Combine(::testing::ValuesIn(kConfigs),
                                            ::testing::Values(0, 1, 2)),
                         case_name);

}  // namespace
