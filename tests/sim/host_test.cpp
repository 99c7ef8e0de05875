// host_test.cpp — the host simulator (capheap_host.h): chips mapped into the process at their own
// addresses, heap lists as ESP-IDF builds them, D/IRAM instruction aliases (shared pages on
// ESP32-S3, ESP32's inverted window), PSRAM at the head of the list with the malloc() policy,
// reports in chip addresses when regions sit elsewhere, the environment, and the life cycle.
//
// Every test leaves the simulator de-initialised and the CAPHEAP_* environment unset.

#include <gtest/gtest.h>

#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>
#include <atomic>
#include <thread>

#include "capheap.h"
#include "capheap_host.h"
#include "capi/capi_internal.hpp"
#include "esp_heap_caps.h"
#include "esp_heap_caps_init.h"
#include "sim/layout.hpp"
#include "support/decoration_support.hpp"

namespace {

constexpr std::uint32_t k8 = MALLOC_CAP_8BIT, k32 = MALLOC_CAP_32BIT, kD = MALLOC_CAP_DEFAULT,
                        kI = MALLOC_CAP_INTERNAL, kDma = MALLOC_CAP_DMA, kX = MALLOC_CAP_EXEC,
                        kS = MALLOC_CAP_SPIRAM, kRet = MALLOC_CAP_RETENTION,
                        kRtc = MALLOC_CAP_RTCRAM;

const char *const kEnvVars[] = {"CAPHEAP_CHIP",           "CAPHEAP_PSRAM",
                                "CAPHEAP_STATIC_DATA",    "CAPHEAP_POISONING",
                                "CAPHEAP_CHIP_ADDRESSES", "CAPHEAP_GRANULE"};

/// One heap as the chip would show it.
struct Row {
  std::string name;
  std::uintptr_t start;  // chip address
  std::size_t len;
  std::uint32_t caps0, caps1, caps2;
  bool operator==(const Row &o) const {
    return name == o.name && start == o.start && len == o.len && caps0 == o.caps0 &&
           caps1 == o.caps1 && caps2 == o.caps2;
  }
};

std::ostream &operator<<(std::ostream &os, const Row &r) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "{%s at 0x%08lX len 0x%lX caps 0x%X 0x%X 0x%X}", r.name.c_str(),
                static_cast<unsigned long>(r.start), static_cast<unsigned long>(r.len), r.caps0,
                r.caps1, r.caps2);
  return os << buf;
}

capheap::Registry &reg() {
  return capheap::capi::registry();
}

/// The registered heaps in list order, in chip addresses.
std::vector<Row> rows() {
  std::vector<Row> out;
  for (unsigned i = 0; i < reg().count(); ++i) {
    const capheap::HeapView v = reg().view(i);
    if (!v.registered) continue;
    out.push_back(Row{v.name, capheap_host_to_chip(reinterpret_cast<void *>(v.start)),
                      v.end - v.start, v.caps[0], v.caps[1], v.caps[2]});
  }
  return out;
}

/// The heap (list position) containing host pointer p, or -1.
int heap_of(const void *p) {
  return reg().find_heap(p);
}

std::string heap_name_of(const void *p) {
  const int i = heap_of(p);
  return i < 0 ? std::string("<none>") : std::string(reg().view(static_cast<unsigned>(i)).name);
}

std::uintptr_t chip_of(const void *p) {
  return capheap_host_to_chip(p);
}

std::string g_printed;
void capture_print(const char *text, std::size_t len) {
  g_printed.append(text, len);
}

capheap_host_config_t config() {
  capheap_host_config_t c = CAPHEAP_HOST_CONFIG_DEFAULT;
  return c;
}

unsigned long mmap_min_addr() {
  std::ifstream f("/proc/sys/vm/mmap_min_addr");
  unsigned long v = 65536;
  f >> v;
  return v;
}

/// layouts/esp32s3.json with memory protection off (D/IRAM types keep MALLOC_CAP_EXEC), written to
/// a temporary file: capheap_host_config_t has no memprot field, a layout path does the job.
std::string s3_without_memprot() {
  const capheap::sim::LoadResult r = capheap::sim::load_layout("esp32s3");
  EXPECT_TRUE(r.ok()) << r.error;
  std::ifstream in(r.layout->path());
  std::stringstream text;
  text << in.rdbuf();
  std::string json = text.str();
  const std::string from = "\"memprot\": true", to = "\"memprot\": false";
  const std::size_t at = json.find(from);
  EXPECT_NE(at, std::string::npos);
  json.replace(at, from.size(), to);
  const std::string path = ::testing::TempDir() + "capheap-esp32s3-no-memprot.json";
  std::ofstream(path) << json;
  return path;
}

class HostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char *v : kEnvVars)
      unsetenv(v);
    capheap_host_deinit();
    g_printed.clear();
  }
  void TearDown() override {
    capheap_host_deinit();
    capheap_set_print_hook(nullptr);
    for (const char *v : kEnvVars)
      unsetenv(v);
  }
};

// ================================================================================================
// Heap lists
// ================================================================================================

// ESP-IDF's documented ESP32 boot log: "DRAM 3FFAE6E0 len 0x1920, DRAM 3FFB2EC8 len 0x2D138, D/IRAM
// 3FFE0440 len 0x3AE0, D/IRAM 3FFE4350 len 0x1BCB0, IRAM 4008944C len 0x16BB4" (spec §5). The
// D/IRAM heaps are startup-stack regions, registered by heap_caps_enable_nonos_stack_heaps, which
// capheap_host_init calls (app code runs after the scheduler started).
TEST_F(HostTest, Esp32HeapsMatchTheIdfBootLog) {
  ASSERT_EQ(capheap_host_init("esp32", nullptr), ESP_OK);
  EXPECT_STREQ(capheap_host_chip(), "esp32");
  EXPECT_TRUE(capheap_host_uses_chip_addresses());
  const std::vector<Row> expected = {
      {"DRAM", 0x3FFAE6E0, 0x1920, k8 | kD, kI | kDma | k32, 0},
      {"DRAM", 0x3FFB2EC8, 0x2D138, k8 | kD, kI | kDma | k32, 0},
      {"D/IRAM", 0x3FFE0440, 0x3AE0, 0, kDma | k8 | kI | kD, k32 | kX},
      {"D/IRAM", 0x3FFE4350, 0x1BCB0, 0, kDma | k8 | kI | kD, k32 | kX},
      {"IRAM", 0x4008944C, 0x16BB4, kI | kX | k32, 0, 0},
  };
  EXPECT_EQ(rows(), expected);
  for (unsigned i = 0; i < reg().count(); ++i) {
    const std::uintptr_t start = reg().view(i).start;
    EXPECT_EQ(capheap_host_to_chip(reinterpret_cast<void *>(start)), start) << "pointer == chip";
  }
}

// ESP32-S3 with the layout's defaults (memory protection on, v5.x hello_world static data).
TEST_F(HostTest, Esp32s3HeapsMatchTheLayout) {
  ASSERT_EQ(capheap_host_init("esp32s3", nullptr), ESP_OK);
  EXPECT_TRUE(capheap_host_uses_chip_addresses());
  const std::vector<Row> expected = {
      {"DRAM", 0x3FC94978, 0x54D98, k8 | kD, kI | kDma | k32, 0},
      {"STACK/DRAM", 0x3FCE9710, 0x5724, k8 | kD | kRet, kI | kDma | k32, 0},
      {"DRAM", 0x3FCF0000, 0x8000, k8 | kD, kI | kDma | k32, 0},
      {"RTCRAM", 0x600FE010, 0x1FD8, kRtc, k8 | kD, kI | k32},
  };
  EXPECT_EQ(rows(), expected);
}

// Every bundled chip: init succeeds, every heap lies inside a layout region of its own type, host
// and chip addresses translate both ways, and heaps sit at their chip address unless a region lies
// below vm.mmap_min_addr (Cortex-M ITCM at 0), in which case the whole chip is placed elsewhere.
TEST_F(HostTest, EveryBundledChipInitialisesAtItsAddresses) {
  const std::vector<std::string> chips = capheap::sim::list_chips();
  ASSERT_GE(chips.size(), 8u);
  const unsigned long min_addr = mmap_min_addr();
  for (const bool at_chip : {true, false})
    for (const std::string &chip : chips) {
      SCOPED_TRACE(chip + (at_chip ? " at chip addresses" : " elsewhere"));
      const capheap::sim::LoadResult loaded = capheap::sim::load_layout(chip);
      ASSERT_TRUE(loaded.ok()) << loaded.error;
      const capheap_layout_t &l = loaded.layout->c_layout();
      bool mappable = at_chip;
      for (std::size_t i = 0; i < l.region_count; ++i)
        if (l.regions[i].start < min_addr) mappable = false;

      capheap_host_config_t cfg = config();
      cfg.chip_addresses = at_chip;
      ASSERT_EQ(capheap_host_init(chip.c_str(), &cfg), ESP_OK);
      EXPECT_EQ(capheap_host_chip(), chip);
      EXPECT_EQ(capheap_host_uses_chip_addresses(), mappable);
      const std::vector<Row> heaps = rows();
      ASSERT_FALSE(heaps.empty());
      for (unsigned i = 0; i < reg().count(); ++i) {
        const capheap::HeapView v = reg().view(i);
        SCOPED_TRACE(v.name);
        EXPECT_TRUE(v.registered);
        void *host = reinterpret_cast<void *>(v.start);
        const std::uintptr_t c = capheap_host_to_chip(host);
        EXPECT_EQ(capheap_host_from_chip(c), host);
        if (mappable) {
          EXPECT_EQ(c, v.start);
        }
        // First and last byte inside regions of the heap's type.
        for (std::uintptr_t a : {c, c + (v.end - v.start) - 1}) {
          bool found = false;
          for (std::size_t k = 0; k < l.region_count; ++k) {
            const capheap_memory_region_t &r = l.regions[k];
            if (a >= r.start && a < r.start + r.size) {
              EXPECT_STREQ(l.types[r.type].name, v.name);
              found = true;
            }
          }
          EXPECT_TRUE(found) << std::hex << a;
        }
      }
      // Something can be allocated and freed at its chip address.
      void *p = heap_caps_malloc(100, MALLOC_CAP_8BIT);
      ASSERT_NE(p, nullptr);
      EXPECT_NE(chip_of(p), 0u);
      std::memset(p, 0xA5, 100);
      heap_caps_free(p);
      EXPECT_TRUE(heap_caps_check_integrity_all(true));
      capheap_host_deinit();
    }
}

TEST_F(HostTest, DmaMallocComesFromDramAtItsChipAddress) {
  ASSERT_EQ(capheap_host_init("esp32", nullptr), ESP_OK);
  void *p = heap_caps_malloc(64, MALLOC_CAP_DMA);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(heap_name_of(p), "DRAM");
  // The first DRAM heap in list order: 3FFAE6E0 len 0x1920.
  const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p);
  EXPECT_GE(a, 0x3FFAE6E0u);
  EXPECT_LT(a, 0x3FFB0000u);
  EXPECT_EQ(chip_of(p), a);
  heap_caps_free(p);
}

// ================================================================================================
// D/IRAM instruction aliases
// ================================================================================================

// Memory protection on (the S3 default): no heap has EXEC, as on a device.
TEST_F(HostTest, Esp32s3WithMemoryProtectionHasNoExecutableHeap) {
  ASSERT_EQ(capheap_host_init("esp32s3", nullptr), ESP_OK);
  EXPECT_EQ(heap_caps_malloc(64, MALLOC_CAP_EXEC), nullptr);
}

class HostAliasTest : public HostTest, public ::testing::WithParamInterface<bool> {};

// ESP32-S3 without memory protection: an EXEC allocation from D/IRAM returns an instruction-bus
// address; the instruction and data views share the same pages.
TEST_P(HostAliasTest, Esp32s3ExecAllocationIsASharedInstructionAlias) {
  const std::string path = s3_without_memprot();
  capheap_host_config_t cfg = config();
  cfg.chip_addresses = GetParam();
  ASSERT_EQ(capheap_host_init(path.c_str(), &cfg), ESP_OK);
  EXPECT_EQ(capheap_host_uses_chip_addresses(), GetParam());
  const std::size_t free_before = heap_caps_get_free_size(MALLOC_CAP_INTERNAL);

  auto *p = static_cast<unsigned char *>(heap_caps_malloc(64, MALLOC_CAP_EXEC));
  ASSERT_NE(p, nullptr);
  const std::uintptr_t ichip = chip_of(p);
  EXPECT_GE(ichip, 0x40378000u);  // the S3 instruction window
  EXPECT_LT(ichip, 0x403E0000u);
  if (GetParam()) {
    EXPECT_EQ(ichip, reinterpret_cast<std::uintptr_t>(p));
  }

  // The hidden word before the pointer is the block's data address (chip address, 32 bits); the
  // alias arithmetic agrees: instruction = data + 0x6F0000.
  std::uint32_t word;
  std::memcpy(&word, p - 4, sizeof word);
  EXPECT_EQ(word, ichip - 4 - 0x6F0000u);
  auto *data = static_cast<unsigned char *>(capheap_host_from_chip(word));
  ASSERT_NE(data, nullptr);
  EXPECT_EQ(heap_name_of(data), "STACK/DIRAM");  // EXEC at priority 1 beats D/IRAM's priority 2

  // Same pages: writes through either bus read back through the other.
  for (int i = 0; i < 64; ++i)
    p[i] = static_cast<unsigned char>(i * 3 + 1);
  for (int i = 0; i < 64; ++i)
    ASSERT_EQ(data[4 + i], static_cast<unsigned char>(i * 3 + 1)) << i;
  std::memset(data + 4, 0x5A, 64);
  for (int i = 0; i < 64; ++i)
    ASSERT_EQ(p[i], 0x5A) << i;

  EXPECT_GE(heap_caps_get_allocated_size(p), 64u);
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
  heap_caps_free(p);
  EXPECT_EQ(heap_caps_get_free_size(MALLOC_CAP_INTERNAL), free_before);
}

// ESP32 (inverted D/IRAM): an EXEC allocation that IRAM cannot serve comes from D/IRAM through the
// word-reversed instruction window. The alias address and hidden word are the device's; the
// window has its own memory (no cross-bus visibility of the bytes).
TEST_P(HostAliasTest, Esp32InvertedExecAllocationUsesTheDeviceAlias) {
  capheap_host_config_t cfg = config();
  cfg.chip_addresses = GetParam();
  ASSERT_EQ(capheap_host_init("esp32", &cfg), ESP_OK);

  // Fill IRAM (priority 0 for EXEC) so that EXEC falls through to D/IRAM (priority 2).
  std::size_t iram_largest = 0;
  for (unsigned i = 0; i < reg().count(); ++i)
    if (std::strcmp(reg().view(i).name, "IRAM") == 0)
      iram_largest = reg().view(i).heap.largest_free_block();
  ASSERT_GT(iram_largest, 0u);
  void *filler = heap_caps_malloc(iram_largest, MALLOC_CAP_EXEC);
  ASSERT_NE(filler, nullptr);
  EXPECT_EQ(heap_name_of(filler), "IRAM");
  const std::size_t diram_free = heap_caps_get_free_size(MALLOC_CAP_DMA | MALLOC_CAP_EXEC);

  auto *p = static_cast<unsigned char *>(heap_caps_malloc(64, MALLOC_CAP_EXEC));
  ASSERT_NE(p, nullptr);
  const std::uintptr_t ichip = chip_of(p);
  EXPECT_GE(ichip, 0x400A0000u);
  EXPECT_LT(ichip, 0x400C0000u);
  std::uint32_t word;
  std::memcpy(&word, p - 4, sizeof word);
  void *data = capheap_host_from_chip(word);
  ASSERT_NE(data, nullptr);
  EXPECT_EQ(heap_name_of(data), "D/IRAM");
  // The alias of the block's last word: iram_low + (dram_high - (data + 64 + 4)), plus the word.
  EXPECT_EQ(ichip - 4, 0x400A0000u + (0x40000000u - (word + 64u + 4u)));

  for (int i = 0; i < 64; ++i)
    p[i] = static_cast<unsigned char>(0xC0 + i);
  for (int i = 0; i < 64; ++i)
    ASSERT_EQ(p[i], static_cast<unsigned char>(0xC0 + i));
  EXPECT_GE(heap_caps_get_allocated_size(p), 64u);

  // realloc of an alias always moves (ESP-IDF); the copy reads through the alias.
  auto *q = static_cast<unsigned char *>(heap_caps_realloc(p, 128, MALLOC_CAP_EXEC));
  ASSERT_NE(q, nullptr);
  for (int i = 0; i < 64; ++i)
    ASSERT_EQ(q[i], static_cast<unsigned char>(0xC0 + i));
  heap_caps_free(q);
  EXPECT_EQ(heap_caps_get_free_size(MALLOC_CAP_DMA | MALLOC_CAP_EXEC), diram_free);
  heap_caps_free(filler);
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
}

/// layouts/esp32.json with RTC fast memory as heap (CONFIG_ESP_SYSTEM_ALLOW_RTC_FAST_MEM_AS_HEAP,
/// single-core builds), written to a temporary file.
std::string esp32_with_rtc_heap() {
  const capheap::sim::LoadResult r = capheap::sim::load_layout("esp32");
  EXPECT_TRUE(r.ok()) << r.error;
  std::ifstream in(r.layout->path());
  std::stringstream text;
  text << in.rdbuf();
  std::string json = text.str();
  const std::string from = "\"rtc_fast_heap\": false", to = "\"rtc_fast_heap\": true";
  const std::size_t at = json.find(from);
  EXPECT_NE(at, std::string::npos);
  json.replace(at, from.size(), to);
  const std::string path = ::testing::TempDir() + "capheap-esp32-rtc-heap.json";
  std::ofstream(path) << json;
  return path;
}

// ESP32 RTC fast memory is seen at 0x3FF80000 by the data bus and at 0x400C0000 by the instruction
// bus, and its type has EXEC (priority 2). An EXEC request served there returns the instruction
// address with the hidden data address before it, as from D/IRAM (spec 3.4: "also RTC fast memory
// whose I and D addresses differ"; free recognises RTC IRAM pointers). The ESP32 model had no alias
// on the region, so such a request got a data-bus address, which the device cannot execute.
TEST_P(HostAliasTest, Esp32RtcFastMemoryExecAllocationUsesItsInstructionAddress) {
  capheap_host_config_t cfg = config();
  cfg.chip_addresses = GetParam();
  ASSERT_EQ(capheap_host_init(esp32_with_rtc_heap().c_str(), &cfg), ESP_OK);
  const std::size_t rtc_free = heap_caps_get_free_size(MALLOC_CAP_RTCRAM);
  ASSERT_GT(rtc_free, 0u);
  // EXEC goes IRAM (priority 0), then D/IRAM and RTC RAM (priority 2, RTC last in the list).
  std::vector<void *> taken;
  void *p = nullptr;
  std::string heap;
  for (;;) {
    p = heap_caps_malloc(1024, MALLOC_CAP_EXEC);
    ASSERT_NE(p, nullptr) << "no EXEC allocation came from RTC RAM";
    void *data = reg().is_iram_alias(p) ? reg().data_address_of_alias(p) : p;
    heap = heap_name_of(data);
    if (heap == "RTCRAM") break;
    taken.push_back(p);
  }
  const std::uintptr_t ichip = chip_of(p);
  EXPECT_GE(ichip, 0x400C0000u + 4);
  EXPECT_LT(ichip, 0x400C2000u);
  std::uint32_t word;
  std::memcpy(&word, static_cast<unsigned char *>(p) - 4, sizeof word);
  EXPECT_EQ(ichip - 4 - 0x400C0000u, word - 0x3FF80000u);  // same order on both buses
  EXPECT_EQ(heap_name_of(capheap_host_from_chip(word)), "RTCRAM");
  EXPECT_EQ(heap_caps_get_allocated_size(p), 1024u);
  std::memset(p, 0x5A, 1024);
  heap_caps_free(p);
  EXPECT_EQ(heap_caps_get_free_size(MALLOC_CAP_RTCRAM), rtc_free);
  for (void *q : taken)
    heap_caps_free(q);
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
}

INSTANTIATE_TEST_SUITE_P(Placement, HostAliasTest, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool> &i) {
                           return i.param ? "ChipAddresses" : "Elsewhere";
                         });

// ================================================================================================
// External RAM
// ================================================================================================

struct PsramCase {
  const char *chip;
  std::uintptr_t ext_start;
};

class HostPsramTest : public HostTest, public ::testing::WithParamInterface<PsramCase> {};

TEST_P(HostPsramTest, PsramIsAddedAtTheHeadWithTheMallocPolicy) {
  capheap_host_config_t cfg = config();
  cfg.psram_size = 4u << 20;
  ASSERT_EQ(capheap_host_init(GetParam().chip, &cfg), ESP_OK);
  EXPECT_TRUE(capheap_host_uses_chip_addresses());

  // ESP-IDF's startup order: the PSRAM heap is added first, then the internal DMA pool
  // (CONFIG_SPIRAM_MALLOC_RESERVE_INTERNAL, 32 KiB) in front of it; boot heaps follow.
  const std::vector<Row> heaps = rows();
  ASSERT_GE(heaps.size(), 3u);
  std::size_t pool = 0;
  std::size_t i = 0;
  for (; i < heaps.size() && heaps[i].name != "SPIRAM"; ++i) {
    EXPECT_EQ(heaps[i].caps0, 0u) << heaps[i];  // ESP-IDF's {0, DMA|INTERNAL, 8BIT|32BIT}
    EXPECT_EQ(heaps[i].caps1, kDma | kI) << heaps[i];
    EXPECT_EQ(heaps[i].caps2, k8 | k32) << heaps[i];
    EXPECT_TRUE(reg().view(static_cast<unsigned>(i)).runtime);
    pool += heaps[i].len;
  }
  EXPECT_GE(pool, 32768u);
  ASSERT_LT(i, heaps.size());
  EXPECT_EQ(heaps[i], (Row{"SPIRAM", GetParam().ext_start, 4u << 20, kS | kD, 0, k8 | k32}));
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(capheap_host_from_chip(GetParam().ext_start)),
            GetParam().ext_start);
  for (std::size_t k = i + 1; k < heaps.size(); ++k)
    EXPECT_FALSE(reg().view(static_cast<unsigned>(k)).runtime) << heaps[k];

  const auto in_psram = [&](const void *p) {
    const std::uintptr_t c = chip_of(p);
    return c >= GetParam().ext_start && c < GetParam().ext_start + (4u << 20);
  };
  // malloc(): up to the threshold (16 KiB) internal first, above it external first.
  void *small = heap_caps_malloc_default(64);
  void *edge = heap_caps_malloc_default(16384);
  void *large = heap_caps_malloc_default(16385);
  ASSERT_TRUE(small && edge && large);
  EXPECT_FALSE(in_psram(small));
  EXPECT_FALSE(in_psram(edge));
  EXPECT_TRUE(in_psram(large));
  // heap_caps_malloc(DEFAULT) prefers the runtime SPIRAM heap (ESP-IDF's test "Check if default
  // cap allocates in external memory in priority"); DMA never comes from PSRAM.
  void *def = heap_caps_malloc(64, MALLOC_CAP_DEFAULT);
  void *dma = heap_caps_malloc(64, MALLOC_CAP_DMA);
  ASSERT_TRUE(def && dma);
  EXPECT_TRUE(in_psram(def));
  EXPECT_FALSE(in_psram(dma));
  EXPECT_EQ(heap_caps_get_total_size(MALLOC_CAP_SPIRAM), 4u << 20);
  for (void *p : {small, edge, large, def, dma})
    heap_caps_free(p);
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
}

INSTANTIATE_TEST_SUITE_P(Chips, HostPsramTest,
                         ::testing::Values(PsramCase{"esp32", 0x3F800000},
                                           PsramCase{"esp32s3", 0x3C000000}),
                         [](const ::testing::TestParamInfo<PsramCase> &i) {
                           return std::string(i.param.chip);
                         });

// ================================================================================================
// Placement elsewhere
// ================================================================================================

// Regression (fuzzer): free's hint named a heap record by index and checked the pointer against
// that record's own bounds. Reinitialising forgot the heap count but left the records, so after a
// restart with fewer heaps a stale pointer into the old PSRAM matched the stale record and free
// dereferenced an unmapped control structure. Now the records are cleared and the stray pointer is
// reported.
int g_stale_fails = 0;
const void *g_stale_addr = nullptr;
std::string g_stale_what;
void stale_fail(const char *what, const void *addr, const void *) {
  ++g_stale_fails;
  g_stale_addr = addr;
  g_stale_what = what;
}

TEST_F(HostTest, RestartForgetsTheHeapsOfTheLastRun) {
  capheap_host_config_t cfg = CAPHEAP_HOST_CONFIG_DEFAULT;
  cfg.psram_size = 4u << 20;
  ASSERT_EQ(capheap_host_init("esp32", &cfg), ESP_OK);
  void *p = heap_caps_malloc(100, MALLOC_CAP_SPIRAM);
  ASSERT_NE(p, nullptr);
  heap_caps_free(p);  // the hint now names the PSRAM heap's record
  capheap_host_deinit();
  cfg.psram_size = 0;
  ASSERT_EQ(capheap_host_init("esp32", &cfg), ESP_OK);
  const capheap_fail_hook_t old = capheap_set_fail_hook(stale_fail);
  heap_caps_free(p);  // no heap holds it any more
  capheap_set_fail_hook(old);
  EXPECT_EQ(g_stale_fails, 1);
  EXPECT_EQ(g_stale_addr, p);
  EXPECT_EQ(g_stale_what, "free() target pointer is outside heap areas");
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
}

TEST_F(HostTest, ElsewherePlacementStillReportsChipAddresses) {
  capheap_host_config_t cfg = config();
  cfg.chip_addresses = false;
  cfg.psram_size = 1u << 20;
  ASSERT_EQ(capheap_host_init("esp32", &cfg), ESP_OK);
  EXPECT_FALSE(capheap_host_uses_chip_addresses());

  void *dram = capheap_host_from_chip(0x3FFAE6E0);
  ASSERT_NE(dram, nullptr);
  EXPECT_NE(reinterpret_cast<std::uintptr_t>(dram), 0x3FFAE6E0u);
  // The relative layout is kept and host ≡ chip (mod 4 GiB).
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(dram) & 0xFFFFFFFFu, 0x3FFAE6E0u);
  EXPECT_EQ(capheap_host_to_chip(dram), 0x3FFAE6E0u);
  EXPECT_EQ(heap_of(dram) >= 0, true);
  EXPECT_EQ(capheap_host_to_chip(reinterpret_cast<void *>(0x3FFAE6E0)), 0u);  // not ours
  EXPECT_EQ(capheap_host_from_chip(0x10), nullptr);

  capheap_set_print_hook(capture_print);
  heap_caps_print_heap_info(MALLOC_CAP_8BIT);
  EXPECT_NE(g_printed.find("Heap summary for capabilities 0x00000004:"), std::string::npos);
  EXPECT_NE(g_printed.find("  At 0x3ffae6e0 len 6432 free "), std::string::npos) << g_printed;
  EXPECT_NE(g_printed.find("  At 0x3ffb2ec8 len 184632 free "), std::string::npos) << g_printed;
  EXPECT_NE(g_printed.find("  At 0x3f800000 len 1048576 free "), std::string::npos) << g_printed;
  g_printed.clear();
  void *p = heap_caps_malloc(24, MALLOC_CAP_DMA);
  ASSERT_NE(p, nullptr);
  heap_caps_dump(MALLOC_CAP_DMA);
  char line[96];
  std::snprintf(line, sizeof line, "Block 0x%08lx data, size: 24 bytes, Free: No",
                static_cast<unsigned long>(chip_of(p)));
  EXPECT_NE(g_printed.find(line), std::string::npos) << g_printed;
  EXPECT_NE(g_printed.find("Showing data for heap: 0x3ffae6e0"), std::string::npos);
  heap_caps_free(p);
}

// A chip range already in use in the process (here: one page we map ourselves inside ESP32's DRAM)
// makes the whole chip move; the heaps are the same in chip addresses.
TEST_F(HostTest, ChipRangeInUseMovesTheWholeChip) {
  void *const busy = reinterpret_cast<void *>(0x3FFC0000);
  void *got = mmap(busy, 4096, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (got != busy) {
    if (got != MAP_FAILED) munmap(got, 4096);
    GTEST_SKIP() << "cannot occupy 0x3FFC0000 for the test";
  }
  ASSERT_EQ(capheap_host_init("esp32", nullptr), ESP_OK);
  EXPECT_FALSE(capheap_host_uses_chip_addresses());
  EXPECT_EQ(rows().size(), 5u);
  EXPECT_EQ(rows()[1], (Row{"DRAM", 0x3FFB2EC8, 0x2D138, k8 | kD, kI | kDma | k32, 0}));
  void *p = heap_caps_malloc(64, MALLOC_CAP_DMA);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(heap_name_of(p), "DRAM");
  heap_caps_free(p);
  capheap_host_deinit();
  munmap(busy, 4096);
  // Free again: back at the chip's addresses.
  ASSERT_EQ(capheap_host_init("esp32", nullptr), ESP_OK);
  EXPECT_TRUE(capheap_host_uses_chip_addresses());
}

// A chip that cannot sit at its addresses (ITCM at 0 is below vm.mmap_min_addr) with external RAM
// at 0xC0000000 (inside AddressSanitizer's shadow gap): placed elsewhere as a whole.
TEST_F(HostTest, CortexMChipWithExternalRamIsPlacedElsewhere) {
  capheap_host_config_t cfg = config();
  cfg.psram_size = 8u << 20;
  ASSERT_EQ(capheap_host_init("stm32h743", &cfg), ESP_OK);
  EXPECT_FALSE(capheap_host_uses_chip_addresses());
  const std::vector<Row> heaps = rows();
  ASSERT_FALSE(heaps.empty());
  bool sdram = false, itcm = false;
  for (const Row &r : heaps) {
    if (r.name == "SDRAM") sdram = r.start == 0xC0000000u && r.len == (8u << 20);
    if (r.name == "ITCM") itcm = r.start == 0x400u;
  }
  EXPECT_TRUE(sdram);
  EXPECT_TRUE(itcm);
  void *p = heap_caps_malloc(1u << 20, MALLOC_CAP_SPIRAM);
  ASSERT_NE(p, nullptr);
  EXPECT_GE(chip_of(p), 0xC0000000u);
  std::memset(p, 1, 1u << 20);
  heap_caps_free(p);
  capheap_set_print_hook(capture_print);
  heap_caps_print_heap_info(MALLOC_CAP_SPIRAM);
  EXPECT_NE(g_printed.find("  At 0xc0000000 len 8388608 free "), std::string::npos) << g_printed;
}

// An instruction alias that is not a whole number of pages from its data address cannot share the
// data pages: it gets its own memory, with a warning, and EXEC allocations still work.
TEST_F(HostTest, UnalignedAliasFallsBackToSeparateMemory) {
  const std::string path = ::testing::TempDir() + "capheap-odd-alias.json";
  std::ofstream(path) << R"({
  "chip": "oddalias",
  "types": [{"name": "RAM", "caps": ["DEFAULT|8BIT|INTERNAL|32BIT|EXEC", "0", "0"]}],
  "regions": [{"start": "0x3FCA0000", "size": "0x10000", "type": "RAM", "iram": "0x40380800"}],
  "reserved": [],
  "diram": {"inverted": false, "dram_low": "0x3FCA0000", "dram_high": "0x3FCB0000",
            "iram_low": "0x40380800", "iram_high": "0x40390800"}
})";
  ::testing::internal::CaptureStderr();
  const esp_err_t err = capheap_host_init(path.c_str(), nullptr);
  const std::string warning = ::testing::internal::GetCapturedStderr();
  ASSERT_EQ(err, ESP_OK) << warning;
  EXPECT_NE(warning.find("capheap: warning: oddalias: region 0x3FCA0000 and its instruction alias "
                         "0x40380800 are not a whole number of host pages"),
            std::string::npos)
      << warning;
  EXPECT_TRUE(capheap_host_uses_chip_addresses());
  auto *p = static_cast<unsigned char *>(heap_caps_malloc(40, MALLOC_CAP_EXEC));
  ASSERT_NE(p, nullptr);
  EXPECT_GE(chip_of(p), 0x40380800u);
  EXPECT_LT(chip_of(p), 0x40390800u);
  std::uint32_t word;
  std::memcpy(&word, p - 4, sizeof word);
  EXPECT_EQ(word, chip_of(p) - 4 - 0x6E0800u);
  std::memset(p, 0x77, 40);
  heap_caps_free(p);
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
}

// A region between two instruction aliases: the caps layer takes every address from the lowest
// alias to the end of the highest for an alias. The simulator used to start on such a file, and
// every free of a DRAM block then read the block's header as a data address ("free() target
// pointer is outside heap areas"); the loader now refuses the file, as for any invalid layout.
TEST_F(HostTest, RegionInsideTheAliasWindowIsAnInvalidLayout) {
  const std::string path = ::testing::TempDir() + "capheap-alias-gap.json";
  std::ofstream(path) << R"({
  "chip": "aliasgap",
  "types": [
    {"name": "DRAM", "caps": ["8BIT|DEFAULT", "INTERNAL|DMA|32BIT", "0"]},
    {"name": "D/IRAM", "caps": ["0", "DMA|8BIT|INTERNAL|DEFAULT", "32BIT|EXEC"]}
  ],
  "regions": [
    {"start": "0x30000000", "size": "0x4000", "type": "D/IRAM", "iram": "0x30010000"},
    {"start": "0x30020000", "size": "0x4000", "type": "DRAM"},
    {"start": "0x30004000", "size": "0x4000", "type": "D/IRAM", "iram": "0x30030000"}
  ],
  "reserved": []
})";
  ::testing::internal::CaptureStderr();
  const esp_err_t err = capheap_host_init(path.c_str(), nullptr);
  const std::string message = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(err, ESP_ERR_NOT_FOUND);
  EXPECT_EQ(message, "capheap: " + path +
                         ": regions[1]: region 0x30020000-0x30024000 lies in the instruction "
                         "alias window 0x30010000-0x30034000 (regions[0].iram to "
                         "regions[2].iram): its pointers would be taken for aliases\n");
  EXPECT_EQ(capheap_host_chip(), nullptr);
}

// ================================================================================================
// Environment and configuration
// ================================================================================================

TEST_F(HostTest, EnvironmentChoosesChipAndOptions) {
  setenv("CAPHEAP_CHIP", "esp32s3", 1);
  setenv("CAPHEAP_PSRAM", "2M", 1);
  setenv("CAPHEAP_STATIC_DATA", "0x10000", 1);
  setenv("CAPHEAP_GRANULE", "8", 1);
  setenv("CAPHEAP_CHIP_ADDRESSES", "0", 1);
  // (A build without decoration support refuses poisoning: the rest still applies.)
  if (capheap::testing::kDecorationBuilt) setenv("CAPHEAP_POISONING", "comprehensive", 1);
  ASSERT_EQ(capheap_host_init(nullptr, nullptr), ESP_OK);
  EXPECT_STREQ(capheap_host_chip(), "esp32s3");
  EXPECT_FALSE(capheap_host_uses_chip_addresses());
  bool spiram = false, dram = false;
  for (const Row &r : rows()) {
    if (r.name == "SPIRAM") spiram = r.len == (2u << 20) && r.start == 0x3C000000;
    if (r.name == "DRAM" && r.start == 0x3FC98000) dram = true;  // 0x3FC88000 + 64 KiB
  }
  EXPECT_TRUE(spiram);
  EXPECT_TRUE(dram);
  EXPECT_EQ(reg().view(0).heap.granule(), 8u);
  void *p = heap_caps_malloc(1, MALLOC_CAP_8BIT);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 8, 0u);
  heap_caps_free(p);
}

TEST_F(HostTest, ConfigFieldsOverrideTheEnvironment) {
  setenv("CAPHEAP_CHIP", "esp32s3", 1);
  setenv("CAPHEAP_PSRAM", "2M", 1);
  setenv("CAPHEAP_GRANULE", "bad", 1);  // not read: the config sets the granule
  capheap_host_config_t cfg = config();
  cfg.psram_size = 0;
  cfg.granule = 16;
  ASSERT_EQ(capheap_host_init("esp32", &cfg), ESP_OK);
  EXPECT_STREQ(capheap_host_chip(), "esp32");
  for (const Row &r : rows())
    EXPECT_NE(r.name, "SPIRAM");
  EXPECT_EQ(reg().view(0).heap.granule(), 16u);
}

TEST_F(HostTest, SizeSuffixes) {
  const struct {
    const char *text;
    std::size_t bytes;
  } cases[] = {{"4M", 4u << 20},       {"4m", 4u << 20},      {"512K", 512u << 10},
               {"0x100000", 1u << 20}, {"3145728", 3u << 20}, {"0", 0}};
  for (const auto &c : cases) {
    SCOPED_TRACE(c.text);
    setenv("CAPHEAP_PSRAM", c.text, 1);
    ASSERT_EQ(capheap_host_init("esp32", nullptr), ESP_OK);
    std::size_t spiram = 0;
    for (const Row &r : rows())
      if (r.name == "SPIRAM") spiram = r.len;
    EXPECT_EQ(spiram, c.bytes);
    capheap_host_deinit();
  }
}

TEST_F(HostTest, BadEnvironmentValuesAreRejectedWithTheVariableNamed) {
  const char *const kSize =
      "expected a byte count with an optional K or M suffix (e.g. 4M, 512K, "
      "0x8000)";
  const struct {
    const char *var, *value;
    std::string message;
  } cases[] = {
      {"CAPHEAP_PSRAM", "4Q", std::string("capheap: bad CAPHEAP_PSRAM value '4Q': ") + kSize},
      {"CAPHEAP_PSRAM", "-1", std::string("capheap: bad CAPHEAP_PSRAM value '-1': ") + kSize},
      {"CAPHEAP_PSRAM", "M", std::string("capheap: bad CAPHEAP_PSRAM value 'M': ") + kSize},
      {"CAPHEAP_PSRAM", "99999999999999999999",
       std::string("capheap: bad CAPHEAP_PSRAM value '99999999999999999999': ") + kSize},
      {"CAPHEAP_STATIC_DATA", "64 K",
       std::string("capheap: bad CAPHEAP_STATIC_DATA value '64 K': ") + kSize},
      {"CAPHEAP_POISONING", "heavy",
       "capheap: bad CAPHEAP_POISONING value 'heavy': expected none, light or comprehensive"},
      {"CAPHEAP_CHIP_ADDRESSES", "no",
       "capheap: bad CAPHEAP_CHIP_ADDRESSES value 'no': expected 0 or 1"},
      {"CAPHEAP_GRANULE", "5", "capheap: bad CAPHEAP_GRANULE value '5': expected 4, 8 or 16"},
  };
  for (const auto &c : cases) {
    SCOPED_TRACE(std::string(c.var) + "=" + c.value);
    setenv(c.var, c.value, 1);
    ::testing::internal::CaptureStderr();
    EXPECT_EQ(capheap_host_init("esp32", nullptr), ESP_ERR_INVALID_ARG);
    EXPECT_EQ(::testing::internal::GetCapturedStderr(), c.message + "\n");
    EXPECT_EQ(capheap_host_chip(), nullptr);
    EXPECT_FALSE(capheap::capi::initialised());
    unsetenv(c.var);
  }
}

TEST_F(HostTest, OptionsTheChipRejectsAreInvalidArguments) {
  // More PSRAM than the window holds, PSRAM on a chip without external RAM: the loader's message.
  setenv("CAPHEAP_PSRAM", "8M", 1);
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(capheap_host_init("esp32", nullptr), ESP_ERR_INVALID_ARG);
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("exceeds ext_ram.max_size 0x"), std::string::npos) << err;
  setenv("CAPHEAP_PSRAM", "1M", 1);
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(capheap_host_init("esp32c3", nullptr), ESP_ERR_INVALID_ARG);
  err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("has no external RAM"), std::string::npos) << err;
  unsetenv("CAPHEAP_PSRAM");

  capheap_host_config_t cfg = config();
  cfg.granule = 5;
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(capheap_host_init("esp32", &cfg), ESP_ERR_INVALID_ARG);
  EXPECT_EQ(::testing::internal::GetCapturedStderr(),
            "capheap: capheap_host_init: granule 5 is not 4, 8 or 16\n");
  cfg = config();
  cfg.poisoning = static_cast<capheap_poisoning_t>(3);  // in the enum's range, not a value
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(capheap_host_init("esp32", &cfg), ESP_ERR_INVALID_ARG);
  EXPECT_EQ(::testing::internal::GetCapturedStderr(),
            "capheap: capheap_host_init: poisoning 3 is not a capheap_poisoning_t\n");
  EXPECT_EQ(capheap_host_chip(), nullptr);
}

TEST_F(HostTest, UnknownChipIsNotFound) {
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(capheap_host_init("esp99", nullptr), ESP_ERR_NOT_FOUND);
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(err.rfind("capheap: unknown chip 'esp99'", 0), 0u) << err;
  setenv("CAPHEAP_CHIP", "/nonexistent/chip.json", 1);
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(capheap_host_init(nullptr, nullptr), ESP_ERR_NOT_FOUND);
  err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("/nonexistent/chip.json"), std::string::npos) << err;
}

/// A layout file of `regions` separate 4 KiB regions (a gap after each, so none merge).
std::string many_regions_layout(unsigned regions) {
  std::string json = R"({"chip": "many", "types": [{"name": "RAM", "caps": ["8BIT|DEFAULT", )"
                     R"("INTERNAL", "0"]}], "reserved": [], "regions": [)";
  for (unsigned i = 0; i < regions; ++i) {
    char region[96];
    std::snprintf(region, sizeof region, R"(%s{"start": "0x%X", "size": "0x1000", "type": "RAM"})",
                  i == 0 ? "" : ", ", 0x20000000u + i * 0x2000u);
    json += region;
  }
  json += "]}";
  const std::string path =
      ::testing::TempDir() + "capheap-many-" + std::to_string(regions) + ".json";
  std::ofstream(path) << json;
  return path;
}

// heap_caps_init cannot report that the heap table is full: it used to leave the heaps past
// CAPHEAP_MAX_HEAPS out, and the simulator started with less memory than the layout describes.
TEST_F(HostTest, LayoutWithMoreHeapsThanTheTableFailsInitialisation) {
  const unsigned max = capheap::Registry::kMaxHeaps;
  ASSERT_EQ(capheap_host_init(many_regions_layout(max).c_str(), nullptr), ESP_OK);
  EXPECT_EQ(rows().size(), max);
  EXPECT_EQ(heap_caps_get_total_size(MALLOC_CAP_DEFAULT), max * 0x1000u);
  capheap_host_deinit();

  ::testing::internal::CaptureStderr();
  EXPECT_EQ(capheap_host_init(many_regions_layout(max + 6).c_str(), nullptr), ESP_ERR_NO_MEM);
  EXPECT_EQ(
      ::testing::internal::GetCapturedStderr(),
      "capheap: many: the layout yields more heaps than this build holds (CAPHEAP_MAX_HEAPS " +
          std::to_string(max) + ")\n");
  EXPECT_EQ(capheap_host_chip(), nullptr);
  EXPECT_FALSE(capheap::capi::initialised());
  EXPECT_EQ(capheap::capi::boot_status(), capheap::Status::kOk);
  // Nothing of the failed attempt is left: the next chip starts afresh.
  ASSERT_EQ(capheap_host_init("esp32", nullptr), ESP_OK);
  EXPECT_STREQ(capheap_host_chip(), "esp32");
}

// ================================================================================================
// Life cycle
// ================================================================================================

TEST_F(HostTest, InitTwiceIsInvalidState) {
  ASSERT_EQ(capheap_host_init("esp32", nullptr), ESP_OK);
  EXPECT_EQ(capheap_host_init("esp32", nullptr), ESP_ERR_INVALID_STATE);
  EXPECT_EQ(capheap_host_init("esp32s3", nullptr), ESP_ERR_INVALID_STATE);
  EXPECT_STREQ(capheap_host_chip(), "esp32");
}

TEST_F(HostTest, DeinitThenAnotherChip) {
  ASSERT_EQ(capheap_host_init("esp32", nullptr), ESP_OK);
  void *p = heap_caps_malloc(100, MALLOC_CAP_8BIT);
  ASSERT_NE(p, nullptr);
  capheap_host_deinit();
  EXPECT_EQ(capheap_host_chip(), nullptr);
  EXPECT_FALSE(capheap_host_uses_chip_addresses());
  EXPECT_EQ(capheap_host_to_chip(p), 0u);
  EXPECT_EQ(capheap_host_from_chip(0x3FFAE6E0), nullptr);
  capheap_host_deinit();  // idempotent

  ASSERT_EQ(capheap_host_init("esp32s3", nullptr), ESP_OK);
  EXPECT_STREQ(capheap_host_chip(), "esp32s3");
  EXPECT_EQ(rows().front().start, 0x3FC94978u);
  void *q = heap_caps_malloc(100, MALLOC_CAP_8BIT);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(heap_name_of(q), "DRAM");
  heap_caps_free(q);
}

// The first heap_caps_* call initialises the chip named by the environment, including the PSRAM
// startup steps (which run while the C API is still initialising).
TEST_F(HostTest, AutomaticInitialisationOnFirstUse) {
  setenv("CAPHEAP_CHIP", "esp32s3", 1);
  setenv("CAPHEAP_PSRAM", "1M", 1);
  void *p = heap_caps_malloc(32, MALLOC_CAP_8BIT);
  ASSERT_NE(p, nullptr);
  EXPECT_STREQ(capheap_host_chip(), "esp32s3");
  EXPECT_EQ(heap_caps_get_total_size(MALLOC_CAP_SPIRAM), 1u << 20);
  EXPECT_EQ(capheap_host_init(nullptr, nullptr), ESP_ERR_INVALID_STATE);
  heap_caps_free(p);
  capheap_host_deinit();

  // With nothing set: ESP32.
  unsetenv("CAPHEAP_CHIP");
  unsetenv("CAPHEAP_PSRAM");
  EXPECT_EQ(heap_caps_get_total_size(MALLOC_CAP_SPIRAM), 0u);
  EXPECT_STREQ(capheap_host_chip(), "esp32");
}

// Threads whose first heap_caps_* calls race: one initialises, the others wait for it (the
// registry's fast path stays off until the initialisation has finished, so no request is served
// by a half-built system), and the result is the same system a single first call builds.
TEST_F(HostTest, ConcurrentFirstUseInitialisesOnce) {
  setenv("CAPHEAP_CHIP", "esp32s3", 1);
  setenv("CAPHEAP_PSRAM", "2M", 1);
  heap_caps_free(heap_caps_malloc(1, MALLOC_CAP_DEFAULT));
  const std::size_t total = heap_caps_get_total_size(MALLOC_CAP_DEFAULT);
  const std::size_t free_single = heap_caps_get_free_size(MALLOC_CAP_DEFAULT);
  const std::size_t internal_single = heap_caps_get_free_size(MALLOC_CAP_INTERNAL);
  capheap_host_deinit();

  for (int round = 0; round < 20; ++round) {
    SCOPED_TRACE(round);
    constexpr int kThreads = 8;
    std::atomic<int> ready{0};
    std::vector<void *> got(kThreads, nullptr);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        ready.fetch_add(1);
        while (ready.load() < kThreads) {
        }
        got[static_cast<std::size_t>(t)] =
            heap_caps_malloc(64, t % 2 == 0 ? MALLOC_CAP_DEFAULT : MALLOC_CAP_INTERNAL);
      });
    for (std::thread &th : threads)
      th.join();
    for (void *p : got)
      EXPECT_NE(p, nullptr);
    EXPECT_STREQ(capheap_host_chip(), "esp32s3");
    for (void *p : got)
      heap_caps_free(p);
    EXPECT_EQ(heap_caps_get_total_size(MALLOC_CAP_DEFAULT), total);
    EXPECT_EQ(heap_caps_get_free_size(MALLOC_CAP_DEFAULT), free_single);
    EXPECT_EQ(heap_caps_get_free_size(MALLOC_CAP_INTERNAL), internal_single);
    capheap_host_deinit();
  }
  unsetenv("CAPHEAP_CHIP");
  unsetenv("CAPHEAP_PSRAM");
}

TEST_F(HostTest, AutomaticInitialisationFailureAborts) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  setenv("CAPHEAP_CHIP", "esp99", 1);
  EXPECT_DEATH(heap_caps_malloc(32, MALLOC_CAP_8BIT),
               "unknown chip 'esp99'.*\n.*automatic initialisation of the host simulator failed");
}

}  // namespace

// Regression: the chip's memory is MAP_SHARED (memfd views), so a forked child shared the heaps
// with its parent and both allocated from the same free lists ("double free" aborts in shells run
// under LD_PRELOAD). The child now gets private copies.
// A fork handler that runs in the child before the simulator's own (registered before main, so
// before capheap_host_init registers the simulator's): while g_fork_gate is a pipe, the child
// waits there until the parent has written to it. That lets the parent change its heaps after
// fork() returned in it and before the child's handler gives the child its copy of the chip.
int g_fork_gate = -1;
const bool g_fork_gate_installed = [] {
  return pthread_atfork(nullptr, nullptr, [] {
           if (g_fork_gate >= 0) {
             char c;
             (void)!read(g_fork_gate, &c, 1);
           }
         }) == 0;
}();

// Regression: the child's copy of the chip was taken in the child's fork handler, from the pages
// it still shared with the parent, so whatever the parent did between fork() and that copy showed
// in the child (bash run under LD_PRELOAD: a subshell's "double free" and crashed commands). The
// copy is now taken before fork(), under every heap's lock.
TEST(HostFork, ChildsCopyIsTheChipAtForkEvenIfTheParentGoesOn) {
  ASSERT_TRUE(g_fork_gate_installed);
  ASSERT_EQ(capheap_host_init("esp32", nullptr), ESP_OK);
  auto *kept = static_cast<unsigned char *>(heap_caps_malloc(1000, MALLOC_CAP_DEFAULT));
  void *other = heap_caps_malloc(3000, MALLOC_CAP_DEFAULT);
  ASSERT_NE(kept, nullptr);
  ASSERT_NE(other, nullptr);
  std::memset(kept, 0x5A, 1000);
  const std::size_t free_at_fork = heap_caps_get_free_size(MALLOC_CAP_DEFAULT);
  int gate[2];
  ASSERT_EQ(pipe(gate), 0);
  g_fork_gate = gate[0];
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Child (its handlers have run: the gate opened after the parent's changes below).
    const bool same_data = kept[0] == 0x5A && kept[999] == 0x5A;
    const bool same_free = heap_caps_get_free_size(MALLOC_CAP_DEFAULT) == free_at_fork;
    const bool intact = heap_caps_check_integrity_all(false);
    heap_caps_free(other);  // still live in the child's heap: no report
    _exit(same_data && same_free && intact ? 0 : 1 + (same_data ? 0 : 2) + (same_free ? 0 : 4));
  }
  g_fork_gate = -1;
  // Parent: change its heaps while the child waits at the gate.
  std::memset(kept, 0xEE, 1000);
  heap_caps_free(other);
  void *more = heap_caps_malloc(5000, MALLOC_CAP_DEFAULT);
  ASSERT_NE(more, nullptr);
  ASSERT_EQ(write(gate[1], "x", 1), 1);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  close(gate[0]);
  close(gate[1]);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1 + 2: data changed, + 4: free size changed";
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
  heap_caps_free(more);
  heap_caps_free(kept);
  capheap_host_deinit();
}

TEST(HostFork, ChildGetsItsOwnCopyOfTheChip) {
  ASSERT_EQ(capheap_host_init("esp32", nullptr), ESP_OK);
  auto *kept = static_cast<unsigned char *>(heap_caps_malloc(1000, MALLOC_CAP_DEFAULT));
  ASSERT_NE(kept, nullptr);
  std::memset(kept, 0x5A, 1000);
  const std::size_t free_before = heap_caps_get_free_size(MALLOC_CAP_DEFAULT);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Child: scribble over the shared block, free it and allocate everything else.
    std::memset(kept, 0xA5, 1000);
    heap_caps_free(kept);
    while (heap_caps_malloc(4096, MALLOC_CAP_DEFAULT) != nullptr) {
    }
    _exit(heap_caps_check_integrity_all(false) ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  // Parent: untouched.
  EXPECT_EQ(heap_caps_get_free_size(MALLOC_CAP_DEFAULT), free_before);
  EXPECT_EQ(kept[0], 0x5A);
  EXPECT_EQ(kept[999], 0x5A);
  EXPECT_TRUE(heap_caps_check_integrity_all(true));
  heap_caps_free(kept);
  capheap_host_deinit();
}
