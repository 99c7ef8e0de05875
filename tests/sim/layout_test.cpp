// Tests of sim/layout: every bundled layouts/*.json loads; exact types, regions and reserved
// ranges for esp32 and esp32s3, exact types and regions for esp32s2/c2/c3/c6/h2/p4 (both values
// of memprot) against the heap spec (section 5); the heaps each layout yields against real
// ESP-IDF boot logs; options; every error message with its exact text; layouts from arbitrary
// paths and from CAPHEAP_LAYOUT_DIR; generated C tables.
#include "sim/layout.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "sim/caps_names.hpp"

namespace capheap::sim {
namespace {

namespace fs = std::filesystem;

const char *const kBundledChips[] = {"esp32",     "esp32s2",   "esp32s3", "esp32c2",
                                     "esp32c3",   "esp32c6",   "esp32h2", "esp32p4",
                                     "stm32h743", "imxrt1062", "rp2350"};

ChipLayout load_ok(const std::string &chip, const LayoutOptions &options = {}) {
  LoadResult r = load_layout(chip, options);
  if (!r.ok()) {
    ADD_FAILURE() << r.error;
    throw std::runtime_error(r.error);
  }
  return std::move(*r.layout);
}

std::uint32_t caps(const char *text) {
  const CapsParse p = parse_caps(text);
  EXPECT_TRUE(p.ok()) << text << ": " << p.error;
  return p.caps;
}

std::string hex(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llX", static_cast<unsigned long long>(v));
  return buf;
}

// ---- Derived heaps (what heap_caps_init would register) ---------------------------------------

struct Heap {
  std::uintptr_t start;
  std::size_t size;
  std::string type;
  bool startup_stack;
  bool operator==(const Heap &o) const {
    return start == o.start && size == o.size && type == o.type && startup_stack == o.startup_stack;
  }
};

std::ostream &operator<<(std::ostream &os, const Heap &h) {
  return os << "{" << hex(h.start) << " len " << hex(h.size) << " " << h.type
            << (h.startup_stack ? " stack" : "") << "}";
}

// ESP-IDF's procedure: subtract the reserved ranges from each region, drop pieces of 16 bytes or
// less, merge neighbours of the same type and startup-stack flag.
std::vector<Heap> derive_heaps(const capheap_layout_t &l) {
  std::vector<Heap> pieces;
  for (std::size_t i = 0; i < l.region_count; ++i) {
    const capheap_memory_region_t &r = l.regions[i];
    std::uintptr_t at = r.start;
    const std::uintptr_t end = r.start + r.size;
    auto emit = [&](std::uintptr_t from, std::uintptr_t to) {
      if (to - from > 16) {
        pieces.push_back(Heap{from, to - from, l.types[r.type].name, r.startup_stack});
      }
    };
    for (std::size_t k = 0; k < l.reserved_count; ++k) {
      const capheap_reserved_range_t &res = l.reserved[k];
      if (res.end <= at) continue;
      if (res.start >= end) break;
      if (res.start > at) emit(at, res.start);
      at = std::max<std::uintptr_t>(at, res.end);
    }
    if (at < end) emit(at, end);
  }
  std::vector<Heap> heaps;
  for (const Heap &p : pieces) {
    if (!heaps.empty()) {
      Heap &last = heaps.back();
      if (last.start + last.size == p.start && last.type == p.type &&
          last.startup_stack == p.startup_stack) {
        last.size += p.size;
        continue;
      }
    }
    heaps.push_back(p);
  }
  return heaps;
}

// ---- Every bundled layout ---------------------------------------------------------------------

TEST(LayoutBundled, ListChipsHasEveryBundledFile) {
  const std::vector<std::string> chips = list_chips();
  for (const char *chip : kBundledChips) {
    EXPECT_NE(std::find(chips.begin(), chips.end(), chip), chips.end()) << chip;
  }
  // ...and every file in the source tree's layouts/ is a chip we test.
  for (const fs::directory_entry &e : fs::directory_iterator(CAPHEAP_TEST_LAYOUT_DIR)) {
    if (e.path().extension() != ".json") continue;
    const std::string stem = e.path().stem().string();
    EXPECT_NE(std::find(std::begin(kBundledChips), std::end(kBundledChips), stem),
              std::end(kBundledChips))
        << "untested layout " << stem;
  }
  EXPECT_TRUE(std::is_sorted(chips.begin(), chips.end()));
}

TEST(LayoutBundled, EveryChipLoadsWithConsistentTables) {
  for (const char *chip : kBundledChips) {
    SCOPED_TRACE(chip);
    const ChipLayout layout = load_ok(chip);
    const capheap_layout_t &c = layout.c_layout();
    EXPECT_EQ(layout.chip(), chip);
    EXPECT_STREQ(c.chip, chip);
    EXPECT_FALSE(layout.description().empty());
    EXPECT_EQ(fs::path(layout.path()).filename().string(), std::string(chip) + ".json");
    ASSERT_GT(c.type_count, 0u);
    ASSERT_GT(c.region_count, 0u);
    for (std::size_t i = 0; i < c.region_count; ++i) {
      EXPECT_LT(c.regions[i].type, c.type_count);
      EXPECT_EQ(c.regions[i].start % 4, 0u);
      EXPECT_EQ(c.regions[i].size % 4, 0u);
      // Regions are in table (heap list) order, not address order, and never overlap.
      for (std::size_t j = 0; j < i; ++j) {
        EXPECT_TRUE(c.regions[j].start + c.regions[j].size <= c.regions[i].start ||
                    c.regions[i].start + c.regions[i].size <= c.regions[j].start)
            << "regions " << j << " and " << i << " overlap";
      }
    }
    for (std::size_t i = 0; i < c.reserved_count; ++i) {
      EXPECT_LT(c.reserved[i].start, c.reserved[i].end);
      EXPECT_NE(c.reserved[i].name, nullptr);
      if (i > 0) {
        EXPECT_LE(c.reserved[i - 1].end, c.reserved[i].start);
      }
    }
    for (std::size_t i = 0; i < c.type_count; ++i) {
      EXPECT_NE(c.types[i].name, nullptr);
      EXPECT_EQ(layout.find_type(c.types[i].name), static_cast<int>(i));
    }
    EXPECT_EQ(layout.psram_size(), 0u);
    EXPECT_EQ(layout.extmem_threshold(), 16384u);
    EXPECT_EQ(layout.internal_reserve(), 32768u);
    EXPECT_GT(layout.static_data_size(), 0u);
    // Every chip yields at least one heap that plain malloc can use.
    bool has_default = false;
    for (const Heap &h : derive_heaps(c)) {
      const int t = layout.find_type(h.type);
      const capheap_memory_type_t &type = c.types[t];
      if (((type.caps[0] | type.caps[1] | type.caps[2]) & kCapsDefault) != 0) has_default = true;
    }
    EXPECT_TRUE(has_default);
    // Loading by path gives the same layout.
    LoadResult by_path = load_layout(layout.path());
    ASSERT_TRUE(by_path.ok()) << by_path.error;
    EXPECT_EQ(by_path.layout->c_layout().region_count, c.region_count);
  }
}

TEST(LayoutBundled, CopiesShareStablePointers) {
  const capheap_layout_t *first = nullptr;
  const capheap_memory_region_t *regions = nullptr;
  std::optional<ChipLayout> copy;
  {
    const ChipLayout layout = load_ok("esp32s3");
    first = &layout.c_layout();
    regions = layout.c_layout().regions;
    copy = layout;
  }
  EXPECT_EQ(&copy->c_layout(), first);
  EXPECT_EQ(copy->c_layout().regions, regions);
  EXPECT_STREQ(copy->c_layout().types[0].name, "DRAM");
}

// ---- ESP32: every value against spec section 5 -----------------------------------------------

struct ExpectedRegion {
  std::uintptr_t start;
  std::size_t size;
  const char *type;
  std::uintptr_t iram;
  bool stack;
};

void expect_regions(const ChipLayout &layout, const std::vector<ExpectedRegion> &expected) {
  const capheap_layout_t &c = layout.c_layout();
  ASSERT_EQ(c.region_count, expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    SCOPED_TRACE("region " + std::to_string(i) + " at " + hex(expected[i].start));
    EXPECT_EQ(c.regions[i].start, expected[i].start);
    EXPECT_EQ(c.regions[i].size, expected[i].size);
    EXPECT_STREQ(c.types[c.regions[i].type].name, expected[i].type);
    EXPECT_EQ(c.regions[i].iram_address, expected[i].iram);
    EXPECT_EQ(c.regions[i].startup_stack, expected[i].stack);
  }
}

struct ExpectedType {
  const char *name;
  const char *caps[3];
};

void expect_types(const ChipLayout &layout, const std::vector<ExpectedType> &expected) {
  const capheap_layout_t &c = layout.c_layout();
  ASSERT_EQ(c.type_count, expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    SCOPED_TRACE(expected[i].name);
    EXPECT_STREQ(c.types[i].name, expected[i].name);
    for (int level = 0; level < 3; ++level) {
      EXPECT_EQ(c.types[i].caps[level], caps(expected[i].caps[level]))
          << "level " << level << ": " << format_caps(c.types[i].caps[level]);
    }
  }
}

struct ExpectedReserved {
  std::uintptr_t start;
  std::uintptr_t end;
  const char *name;
};

void expect_reserved(const ChipLayout &layout, const std::vector<ExpectedReserved> &expected) {
  const capheap_layout_t &c = layout.c_layout();
  ASSERT_EQ(c.reserved_count, expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    SCOPED_TRACE(expected[i].name);
    EXPECT_EQ(c.reserved[i].start, expected[i].start);
    EXPECT_EQ(c.reserved[i].end, expected[i].end);
    EXPECT_STREQ(c.reserved[i].name, expected[i].name);
  }
}

std::vector<ExpectedRegion> esp32_regions(bool rtc) {
  std::vector<ExpectedRegion> r;
  r.push_back({0x3FFAE000, 0x2000, "DRAM", 0, false});
  r.push_back({0x3FFB0000, 0x8000, "DRAM", 0, false});
  r.push_back({0x3FFB8000, 0x8000, "DRAM", 0, false});
  for (std::uintptr_t a = 0x3FFC0000; a <= 0x3FFDE000; a += 0x2000) {
    r.push_back({a, 0x2000, "DRAM", 0, false});
  }
  r.push_back({0x3FFE0000, 0x4000, "D/IRAM", 0x400BC000, true});
  r.push_back({0x3FFE4000, 0x4000, "D/IRAM", 0x400B8000, true});
  r.push_back({0x3FFE8000, 0x8000, "D/IRAM", 0x400B0000, true});
  r.push_back({0x3FFF0000, 0x8000, "D/IRAM", 0x400A8000, true});
  r.push_back({0x3FFF8000, 0x4000, "D/IRAM", 0x400A4000, true});
  r.push_back({0x3FFFC000, 0x4000, "D/IRAM", 0x400A0000, true});
  r.push_back({0x40070000, 0x8000, "IRAM", 0, false});
  r.push_back({0x40078000, 0x8000, "IRAM", 0, false});
  for (std::uintptr_t a = 0x40080000; a <= 0x4009E000; a += 0x2000) {
    r.push_back({a, 0x2000, "IRAM", 0, false});
  }
  // Last, as in ESP-IDF's table (its address is the lowest).
  // Its instruction-bus alias (SOC_RTC_IRAM_LOW) serves EXEC requests (spec 3.4).
  if (rtc) r.push_back({0x3FF80000, 0x2000, "RTCRAM", 0x400C0000, false});
  return r;
}

TEST(LayoutEsp32, TypesMatchSpec) {
  expect_types(load_ok("esp32"), {{"DRAM", {"8BIT|DEFAULT", "INTERNAL|DMA|32BIT", "0"}},
                                  {"D/IRAM", {"0", "DMA|8BIT|INTERNAL|DEFAULT", "32BIT|EXEC"}},
                                  {"IRAM", {"INTERNAL|EXEC|32BIT", "0", "0"}},
                                  {"SPIRAM", {"SPIRAM|DEFAULT", "0", "8BIT|32BIT"}},
                                  {"RTCRAM", {"RTCRAM", "8BIT|DEFAULT", "INTERNAL|32BIT|EXEC"}}});
}

TEST(LayoutEsp32, RegionsMatchSpec) {
  const ChipLayout layout = load_ok("esp32");
  EXPECT_EQ(layout.c_layout().region_count, 43u);
  expect_regions(layout, esp32_regions(false));
  EXPECT_FALSE(layout.rtc_fast_heap());  // dual-core default: RTC fast memory is not heap
}

TEST(LayoutEsp32, RtcFastHeapAddsTheRtcRegion) {
  LayoutOptions o;
  o.rtc_fast_heap = true;
  const ChipLayout layout = load_ok("esp32", o);
  EXPECT_TRUE(layout.rtc_fast_heap());
  expect_regions(layout, esp32_regions(true));
}

TEST(LayoutEsp32, ReservedRangesAndOtherFacts) {
  const ChipLayout layout = load_ok("esp32");
  expect_reserved(layout, {{0x3FFAE000, 0x3FFAE6E0, "rom_data"},
                           {0x3FFB0000, 0x3FFB2EC8, "dram_data"},
                           {0x3FFE0000, 0x3FFE0440, "rom_pro_data"},
                           {0x3FFE3F20, 0x3FFE4350, "rom_app_data"},
                           {0x40070000, 0x40078000, "pro_cpu_cache"},
                           {0x40078000, 0x40080000, "app_cpu_cache"},
                           {0x40080000, 0x4008944C, "iram_code"}});
  const capheap_layout_t &c = layout.c_layout();
  EXPECT_TRUE(c.diram_inverted);
  EXPECT_EQ(c.diram_dram_low, 0x3FFE0000u);
  EXPECT_EQ(c.diram_dram_high, 0x40000000u);
  EXPECT_EQ(c.diram_iram_low, 0x400A0000u);
  EXPECT_EQ(c.diram_iram_high, 0x400C0000u);
  EXPECT_EQ(c.ext_ram_start, 0x3F800000u);
  EXPECT_EQ(c.ext_ram_max_size, 0x400000u);
  ASSERT_GE(c.ext_ram_type, 0);
  EXPECT_STREQ(c.types[c.ext_ram_type].name, "SPIRAM");
  EXPECT_EQ(c.align.dma_internal, 4u);
  EXPECT_EQ(c.align.cache_line_ext, 32u);
  EXPECT_EQ(c.align.simd, 0u);
  EXPECT_EQ(layout.static_data_size(), 0x2EC8u);
  EXPECT_EQ(layout.iram_code_size(), 0x944Cu);
  EXPECT_FALSE(layout.app_usable_dram_end().has_value());
}

TEST(LayoutEsp32, ReproducesTheTypicalBootLog) {
  // docs boot log: DRAM 3FFAE6E0 len 1920, DRAM 3FFB2EC8 len 2D138, D/IRAM 3FFE0440 len 3AE0,
  // D/IRAM 3FFE4350 len 1BCB0, IRAM 4008944C len 16BB4.
  const std::vector<Heap> expected = {{0x3FFAE6E0, 0x1920, "DRAM", false},
                                      {0x3FFB2EC8, 0x2D138, "DRAM", false},
                                      {0x3FFE0440, 0x3AE0, "D/IRAM", true},
                                      {0x3FFE4350, 0x1BCB0, "D/IRAM", true},
                                      {0x4008944C, 0x16BB4, "IRAM", false}};
  EXPECT_EQ(derive_heaps(load_ok("esp32").c_layout()), expected);
}

// ---- ESP32-S3: every value against spec section 5 --------------------------------------------

TEST(LayoutEsp32s3, TypesMatchSpec) {
  expect_types(load_ok("esp32s3"),
               {{"DRAM", {"8BIT|DEFAULT", "INTERNAL|DMA|32BIT", "0"}},
                {"STACK/DRAM", {"8BIT|DEFAULT|RETENTION", "INTERNAL|DMA|32BIT", "0"}},
                {"D/IRAM", {"0", "DMA|8BIT|INTERNAL|DEFAULT", "32BIT|EXEC|RETENTION"}},
                {"STACK/DIRAM", {"8BIT|DEFAULT|RETENTION", "EXEC|INTERNAL|DMA|32BIT", "0"}},
                {"IRAM", {"EXEC|32BIT|INTERNAL", "0", "0"}},
                {"SPIRAM", {"SPIRAM|DEFAULT", "0", "8BIT|32BIT"}},
                {"NON_DMA_DRAM", {"8BIT|DEFAULT", "INTERNAL|32BIT", "0"}},
                {"RTCRAM", {"RTCRAM", "8BIT|DEFAULT", "INTERNAL|32BIT"}}});
}

std::vector<ExpectedRegion> esp32s3_regions(bool memprot) {
  const char *main = memprot ? "DRAM" : "D/IRAM";
  const char *stack = memprot ? "STACK/DRAM" : "STACK/DIRAM";
  // ESP-IDF's table order (the heap list order): the 16 KiB-instruction-cache IRAM region comes
  // first although 0x40374000 is above the D/IRAM data addresses.
  return {{0x40374000, 0x4000, "IRAM", 0, false},
          {0x3FC88000, 0x8000, main, 0x40378000, false},
          {0x3FC90000, 0x10000, main, 0x40380000, false},
          {0x3FCA0000, 0x10000, main, 0x40390000, false},
          {0x3FCB0000, 0x10000, main, 0x403A0000, false},
          {0x3FCC0000, 0x10000, main, 0x403B0000, false},
          {0x3FCD0000, 0x10000, main, 0x403C0000, false},
          {0x3FCE0000, 0x3FCE9710 - 0x3FCE0000, main, 0x403D0000, false},
          {0x3FCE9710, 0x3FCF0000 - 0x3FCE9710, stack, 0x403D9710, true},
          {0x3FCF0000, 0x8000, "DRAM", 0, false},
          {0x600FE000, 0x2000, "RTCRAM", 0, false}};
}

TEST(LayoutEsp32s3, RegionsMatchSpecWithMemoryProtection) {
  const ChipLayout layout = load_ok("esp32s3");
  EXPECT_TRUE(layout.memprot());
  EXPECT_TRUE(layout.rtc_fast_heap());
  expect_regions(layout, esp32s3_regions(true));
}

TEST(LayoutEsp32s3, RegionsMatchSpecWithoutMemoryProtection) {
  LayoutOptions o;
  o.memprot = false;
  const ChipLayout layout = load_ok("esp32s3", o);
  EXPECT_FALSE(layout.memprot());
  expect_regions(layout, esp32s3_regions(false));
}

TEST(LayoutEsp32s3, ReservedRangesAndOtherFacts) {
  const ChipLayout layout = load_ok("esp32s3");
  expect_reserved(layout, {{0x3FC88000, 0x3FC94978, "static_data"},
                           {0x3FCEEE34, 0x3FCF0000, "rom_data"},
                           {0x40374000, 0x40378000, "iram_code"},
                           {0x600FE000, 0x600FE010, "rtc_data"},
                           {0x600FFFE8, 0x60100000, "rtc_reserved"}});
  const capheap_layout_t &c = layout.c_layout();
  EXPECT_FALSE(c.diram_inverted);
  EXPECT_EQ(c.diram_dram_low, 0x3FC88000u);
  EXPECT_EQ(c.diram_dram_high, 0x3FCF0000u);
  EXPECT_EQ(c.diram_iram_low, 0x40378000u);
  EXPECT_EQ(c.diram_iram_high, 0x403E0000u);
  EXPECT_EQ(c.ext_ram_start, 0x3C000000u);
  EXPECT_EQ(c.ext_ram_max_size, 0x2000000u);
  EXPECT_STREQ(c.types[c.ext_ram_type].name, "SPIRAM");
  EXPECT_EQ(c.align.simd, 16u);
  EXPECT_EQ(c.align.cache_line_ext, 32u);
  EXPECT_EQ(layout.app_usable_dram_end(), std::optional<std::uintptr_t>(0x3FCE9710));
}

// ---- ESP32-S2, C2, C3, C6, H2, P4: types and regions against spec section 5 -------------------

LayoutOptions memprot_off() {
  LayoutOptions o;
  o.memprot = false;
  return o;
}

TEST(LayoutEsp32s2, TypesAndRegionsMatchSpec) {
  // ESP-IDF's type 1 (startup-stack "DRAM", same caps) is DRAM with the startup_stack flag.
  const std::vector<ExpectedType> types = {
      {"DRAM", {"8BIT|DEFAULT", "INTERNAL|DMA|32BIT", "0"}},
      {"D/IRAM", {"0", "DMA|8BIT|INTERNAL|DEFAULT", "32BIT|EXEC"}},
      {"IRAM", {"EXEC|32BIT|INTERNAL", "0", "0"}},
      {"SPIRAM", {"SPIRAM|DEFAULT", "0", "8BIT|32BIT"}},
      {"RTCRAM", {"RTCRAM", "8BIT|DEFAULT", "INTERNAL|32BIT"}}};
  for (const bool mp : {true, false}) {
    SCOPED_TRACE(mp ? "memprot" : "no memprot");
    const ChipLayout layout = load_ok("esp32s2", mp ? LayoutOptions{} : memprot_off());
    expect_types(layout, types);
    const char *main = mp ? "DRAM" : "D/IRAM";
    // 8 KiB instruction cache + 8 KiB data cache (the Kconfig defaults): blocks 2 and 3 are heap.
    std::vector<ExpectedRegion> r = {{0x3FFB4000, 0x2000, main, 0x40024000, false},
                                     {0x3FFB6000, 0x2000, main, 0x40026000, false}};
    for (std::uintptr_t a = 0x3FFB8000; a <= 0x3FFF8000; a += 0x4000) {
      r.push_back({a, 0x4000, main, a + 0x70000, false});
    }
    r.push_back({0x3FFFC000, 0x4000, "DRAM", 0x4006C000, true});
    r.push_back({0x3FF9E000, 0x2000, "RTCRAM", 0, false});
    expect_regions(layout, r);
  }
}

TEST(LayoutEsp32c2, TypesAndRegionsMatchSpec) {
  const ChipLayout layout = load_ok("esp32c2");
  expect_types(layout, {{"RAM", {"DEFAULT|DMA|8BIT|INTERNAL|32BIT|EXEC", "0", "0"}}});
  expect_regions(layout, {{0x3FCA0000, 0x10000, "RAM", 0x40380000, false},
                          {0x3FCB0000, 0x10000, "RAM", 0x40390000, false},
                          {0x3FCC0000, 0x3FCDCB70 - 0x3FCC0000, "RAM", 0x403A0000, false},
                          {0x3FCDCB70, 0x3FCE0000 - 0x3FCDCB70, "RAM", 0x403BCB70, true}});
}

TEST(LayoutEsp32c3, TypesAndRegionsMatchSpec) {
  const std::vector<ExpectedType> types = {
      {"DRAM", {"8BIT|DEFAULT", "INTERNAL|DMA|32BIT", "0"}},
      {"STACK/DRAM", {"8BIT|DEFAULT", "INTERNAL|DMA|32BIT", "RETENTION"}},
      {"D/IRAM", {"0", "DMA|8BIT|INTERNAL|DEFAULT", "32BIT|EXEC"}},
      {"STACK/DIRAM", {"8BIT|DEFAULT|RETENTION", "EXEC|INTERNAL|DMA|32BIT", "0"}},
      {"RTCRAM", {"RTCRAM", "8BIT|DEFAULT", "INTERNAL|32BIT"}}};
  for (const bool mp : {true, false}) {
    SCOPED_TRACE(mp ? "memprot" : "no memprot");
    const ChipLayout layout = load_ok("esp32c3", mp ? LayoutOptions{} : memprot_off());
    expect_types(layout, types);
    const char *main = mp ? "DRAM" : "D/IRAM";
    const char *stack = mp ? "STACK/DRAM" : "STACK/DIRAM";
    expect_regions(layout, {{0x3FC80000, 0x20000, main, 0x40380000, false},
                            {0x3FCA0000, 0x20000, main, 0x403A0000, false},
                            {0x3FCC0000, 0x3FCDC710 - 0x3FCC0000, main, 0x403C0000, false},
                            {0x3FCDC710, 0x3FCE0000 - 0x3FCDC710, stack, 0x403DC710, true},
                            {0x50000000, 0x2000, "RTCRAM", 0, false}});
  }
}

// The C6 file follows current ESP-IDF's RAM/RTCRAM types (docs/layouts.md 7.3), with the same
// regions as the spec's commit.
TEST(LayoutEsp32c6, TypesAndRegions) {
  for (const bool mp : {true, false}) {
    SCOPED_TRACE(mp ? "PMP I/D split" : "no PMP I/D split");
    const ChipLayout layout = load_ok("esp32c6", mp ? LayoutOptions{} : memprot_off());
    const char *common = mp ? "DEFAULT|INTERNAL|32BIT|8BIT" : "DEFAULT|INTERNAL|32BIT|8BIT|EXEC";
    const std::string ram = std::string(common) + "|DMA";
    expect_types(layout, {{"RAM", {ram.c_str(), "0", "0"}}, {"RTCRAM", {"RTCRAM", common, "0"}}});
    expect_regions(layout, {{0x40800000, 0x20000, "RAM", 0x40800000, false},
                            {0x40820000, 0x20000, "RAM", 0x40820000, false},
                            {0x40840000, 0x20000, "RAM", 0x40840000, false},
                            {0x40860000, 0x4087C610 - 0x40860000, "RAM", 0x40860000, false},
                            {0x4087C610, 0x40880000 - 0x4087C610, "RAM", 0x4087C610, true},
                            {0x50000000, 0x4000, "RTCRAM", 0, false}});
  }
}

TEST(LayoutEsp32h2, TypesAndRegionsMatchSpec) {
  for (const bool mp : {true, false}) {
    SCOPED_TRACE(mp ? "PMP I/D split" : "no PMP I/D split");
    const ChipLayout layout = load_ok("esp32h2", mp ? LayoutOptions{} : memprot_off());
    const char *common = mp ? "DEFAULT|INTERNAL|32BIT|8BIT" : "DEFAULT|INTERNAL|32BIT|8BIT|EXEC";
    const std::string ram = std::string(common) + "|DMA";
    expect_types(layout, {{"RAM", {ram.c_str(), "0", "0"}}, {"RTCRAM", {"RTCRAM", common, "0"}}});
    expect_regions(layout, {{0x40800000, 0x10000, "RAM", 0x40800000, false},
                            {0x40810000, 0x10000, "RAM", 0x40810000, false},
                            {0x40820000, 0x10000, "RAM", 0x40820000, false},
                            {0x40830000, 0x10000, "RAM", 0x40830000, false},
                            {0x40840000, 0x4084D380 - 0x40840000, "RAM", 0x40840000, false},
                            {0x4084D380, 0x40850000 - 0x4084D380, "RAM", 0x4084D380, true},
                            {0x50000000, 0x1000, "RTCRAM", 0, false}});
  }
}

TEST(LayoutEsp32p4, TypesAndRegionsMatchSpec) {
  // Spec section 5: L2MEM base and RTCRAM base both gain EXEC only without the PMP I/D split; with
  // it (the default) no memory is EXEC (spec 3.3).
  for (const bool mp : {true, false}) {
    SCOPED_TRACE(mp ? "PMP I/D split" : "no PMP I/D split");
    const ChipLayout layout = load_ok("esp32p4", mp ? LayoutOptions{} : memprot_off());
    const char *exec = mp ? "" : "|EXEC";
    const std::string l2mem = std::string("DEFAULT|32BIT|8BIT|INTERNAL|DMA") + exec;
    const std::string rtc = std::string("DEFAULT|32BIT|8BIT|INTERNAL") + exec;
    expect_types(layout, {{"RAM", {l2mem.c_str(), "0", "0"}},
                          {"SPIRAM", {"SPIRAM", "DEFAULT|32BIT|8BIT", "0"}},
                          {"TCM", {"SPM", "DEFAULT|32BIT|8BIT|INTERNAL", "0"}},
                          {"RTCRAM", {"RTCRAM", "0", rtc.c_str()}}});
    // 128 KiB L2 cache: STARTUP_DATA_SIZE = 0x4FFC0000 - 0x20000 - 0x4FF3AFC0 = 0x65040.
    expect_regions(layout, {{0x4FF00000, 0x4FF3AFC0 - 0x4FF00000, "RAM", 0x4FF00000, false},
                            {0x4FF3AFC0, 0x65040, "RAM", 0x4FF3AFC0, true},
                            {0x50108000, 0x8000, "RTCRAM", 0, false},
                            {0x30100000, 0x2000, "TCM", 0, false}});
  }
}

// ---- Heaps against ESP-IDF boot logs, and spot checks ----------------------------------------

TEST(LayoutBootLogs, Esp32s3HelloWorld) {
  // v5.2: At 3FC94978 len 00054D98 DRAM; 3FCE9710 len 00005724 STACK/DRAM; 3FCF0000 len 8000
  // DRAM; 600FE010 len 00001FD8 RTCRAM.
  const std::vector<Heap> expected = {{0x3FC94978, 0x54D98, "DRAM", false},
                                      {0x3FCE9710, 0x5724, "STACK/DRAM", true},
                                      {0x3FCF0000, 0x8000, "DRAM", false},
                                      {0x600FE010, 0x1FD8, "RTCRAM", false}};
  EXPECT_EQ(derive_heaps(load_ok("esp32s3").c_layout()), expected);
}

TEST(LayoutBootLogs, Esp32s2) {
  // ESP-IDF's table (and so the heap list) has RTC RAM last although its address is lowest.
  const std::vector<Heap> expected = {{0x3FFBF850, 0x3C7B0, "DRAM", false},
                                      {0x3FFFC000, 0x3A10, "DRAM", true},
                                      {0x3FF9E030, 0x1FB8, "RTCRAM", false}};
  const ChipLayout layout = load_ok("esp32s2");
  EXPECT_EQ(derive_heaps(layout.c_layout()), expected);
  EXPECT_EQ(layout.c_layout().regions[0].iram_address, 0x40024000u);
}

TEST(LayoutBootLogs, Esp32c2) {
  const ChipLayout layout = load_ok("esp32c2");
  const std::vector<Heap> expected = {{0x3FCAC270, 0x30900, "RAM", false},
                                      {0x3FCDCB70, 0x294C, "RAM", true}};
  EXPECT_EQ(derive_heaps(layout.c_layout()), expected);
  EXPECT_EQ(layout.app_usable_dram_end(), std::optional<std::uintptr_t>(0x3FCDCB70));
  EXPECT_EQ(layout.c_layout().ext_ram_type, -1);
  EXPECT_EQ(layout.c_layout().types[0].caps[0], caps("DEFAULT|DMA|8BIT|INTERNAL|32BIT|EXEC"));
}

TEST(LayoutBootLogs, Esp32c3) {
  const ChipLayout layout = load_ok("esp32c3");
  const std::vector<Heap> expected = {{0x3FC8C420, 0x502F0, "DRAM", false},
                                      {0x3FCDC710, 0x2950, "STACK/DRAM", true},
                                      {0x50000010, 0x1FD8, "RTCRAM", false}};
  EXPECT_EQ(derive_heaps(layout.c_layout()), expected);
  EXPECT_EQ(layout.app_usable_dram_end(), std::optional<std::uintptr_t>(0x3FCDC710));
  EXPECT_EQ(layout.c_layout().regions[3].iram_address, 0x403DC710u);
}

TEST(LayoutBootLogs, Esp32c6) {
  const ChipLayout layout = load_ok("esp32c6");
  const std::vector<Heap> expected = {{0x4080D8E0, 0x6ED30, "RAM", false},
                                      {0x4087C610, 0x2F54, "RAM", true},
                                      {0x50000000, 0x3FE8, "RTCRAM", false}};
  EXPECT_EQ(derive_heaps(layout.c_layout()), expected);
  EXPECT_EQ(layout.app_usable_dram_end(), std::optional<std::uintptr_t>(0x4087C610));
  // PMP I/D split (the default): no EXEC; without it, EXEC.
  EXPECT_EQ(layout.c_layout().types[0].caps[0], caps("DEFAULT|INTERNAL|32BIT|8BIT|DMA"));
  LayoutOptions o;
  o.memprot = false;
  EXPECT_EQ(load_ok("esp32c6", o).c_layout().types[0].caps[0],
            caps("DEFAULT|INTERNAL|32BIT|8BIT|DMA|EXEC"));
}

TEST(LayoutBootLogs, Esp32h2) {
  const ChipLayout layout = load_ok("esp32h2");
  const std::vector<Heap> expected = {{0x4080CB60, 0x40820, "RAM", false},
                                      {0x4084D380, 0x2B60, "RAM", true},
                                      {0x50000000, 0xFE8, "RTCRAM", false}};
  EXPECT_EQ(derive_heaps(layout.c_layout()), expected);
  EXPECT_EQ(layout.app_usable_dram_end(), std::optional<std::uintptr_t>(0x4084D380));
}

TEST(LayoutBootLogs, Esp32p4) {
  const ChipLayout layout = load_ok("esp32p4");
  // Table order: TCM is last in ESP-IDF's P4 table although its address is lowest.
  const std::vector<Heap> expected = {{0x4FF17130, 0x23E90, "RAM", false},
                                      {0x4FF3AFC0, 0x4BF0, "RAM", true},
                                      {0x4FF40000, 0x60000, "RAM", true},
                                      {0x50108080, 0x7F80, "RTCRAM", false},
                                      {0x30100044, 0x1FBC, "TCM", false}};
  EXPECT_EQ(derive_heaps(layout.c_layout()), expected);
  EXPECT_EQ(layout.app_usable_dram_end(), std::optional<std::uintptr_t>(0x4FF3AFC0));
  const capheap_layout_t &c = layout.c_layout();
  EXPECT_EQ(c.align.dma_desc_axi, 8u);
  EXPECT_EQ(c.align.cache_line_int, 64u);
  EXPECT_EQ(c.align.simd, 16u);
  EXPECT_EQ(c.ext_ram_start, 0x48000000u);
  EXPECT_EQ(c.types[layout.find_type("TCM")].caps[0], caps("SPM"));
}

TEST(LayoutOtherChips, Stm32h743) {
  const ChipLayout layout = load_ok("stm32h743");
  const capheap_layout_t &c = layout.c_layout();
  const std::vector<Heap> expected = {{0x400, 0xFC00, "ITCM", false},
                                      {0x20000000, 0x1FC00, "DTCM", false},
                                      {0x24004000, 0x7C000, "AXISRAM", false},
                                      {0x30000000, 0x48000, "D2SRAM", false},
                                      {0x38000000, 0x10000, "D3SRAM", false}};
  EXPECT_EQ(derive_heaps(c), expected);
  const capheap_memory_type_t &dtcm = c.types[layout.find_type("DTCM")];
  EXPECT_EQ((dtcm.caps[0] | dtcm.caps[1] | dtcm.caps[2]) & caps("DMA"), 0u);
  EXPECT_EQ(dtcm.caps[2], caps("DEFAULT"));
  EXPECT_EQ(c.types[layout.find_type("AXISRAM")].caps[0], caps("8BIT|DEFAULT"));
  EXPECT_EQ(c.ext_ram_start, 0xC0000000u);
  EXPECT_EQ(c.align.cache_line_int, 32u);
  LayoutOptions o;
  o.psram_size = 32u << 20;  // 32 MiB SDRAM
  EXPECT_EQ(load_ok("stm32h743", o).psram_size(), 32u << 20);
}

TEST(LayoutOtherChips, Imxrt1062) {
  const ChipLayout layout = load_ok("imxrt1062");
  const std::vector<Heap> expected = {{0x400, 0x1FC00, "ITCM", false},
                                      {0x20002000, 0x1DC00, "DTCM", false},
                                      {0x20200000, 0xC0000, "OCRAM", false}};
  EXPECT_EQ(derive_heaps(layout.c_layout()), expected);
  EXPECT_EQ(layout.c_layout().ext_ram_start, 0x80000000u);
}

TEST(LayoutOtherChips, Rp2350) {
  const ChipLayout layout = load_ok("rp2350");
  const std::vector<Heap> expected = {{0x20003000, 0x7D000, "SRAM", false},
                                      {0x20080000, 0x800, "SCRATCH", false},
                                      {0x20081000, 0x800, "SCRATCH", false}};
  EXPECT_EQ(derive_heaps(layout.c_layout()), expected);
  EXPECT_EQ(layout.c_layout().ext_ram_start, 0x11000000u);
  EXPECT_EQ(layout.c_layout().ext_ram_max_size, 0x1000000u);
}

// ---- Options ------------------------------------------------------------------------------------

TEST(LayoutOptions, PsramSize) {
  LayoutOptions o;
  o.psram_size = 8u << 20;
  const ChipLayout layout = load_ok("esp32s3", o);
  EXPECT_EQ(layout.psram_size(), 8u << 20);
  const std::vector<LayoutOptionValue> &opts = layout.options();
  ASSERT_FALSE(opts.empty());
  EXPECT_EQ(opts[0].name, "psram_size");
  EXPECT_EQ(opts[0].value, 8u << 20);
  EXPECT_FALSE(opts[0].is_default);
  EXPECT_FALSE(opts[0].is_bool);

  o.psram_size = 64u << 20;
  LoadResult too_big = load_layout("esp32s3", o);
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.error, std::string(CAPHEAP_TEST_LAYOUT_DIR) +
                               "/esp32s3.json: option psram_size: 0x4000000 exceeds "
                               "ext_ram.max_size 0x2000000");
  o.psram_size = 1u << 20;
  LoadResult none = load_layout("esp32c3", o);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error, std::string(CAPHEAP_TEST_LAYOUT_DIR) +
                            "/esp32c3.json: option psram_size: chip 'esp32c3' has no external RAM");
  o.psram_size = 0;  // "none" is fine everywhere
  EXPECT_EQ(load_ok("esp32c3", o).psram_size(), 0u);
}

TEST(LayoutOptions, StaticDataSizeMovesTheMainHeap) {
  LayoutOptions o;
  o.static_data_size = 0x10001;  // rounded up to 4
  const ChipLayout layout = load_ok("esp32c3", o);
  EXPECT_EQ(layout.static_data_size(), 0x10001u);
  const capheap_layout_t &c = layout.c_layout();
  EXPECT_EQ(c.reserved[0].start, 0x3FC80000u);
  EXPECT_EQ(c.reserved[0].end, 0x3FC90004u);
  EXPECT_EQ(derive_heaps(c)[0].start, 0x3FC90004u);

  o.static_data_size = 0;  // no static data: the range disappears
  const ChipLayout empty = load_ok("esp32c3", o);
  EXPECT_EQ(derive_heaps(empty.c_layout())[0].start, 0x3FC80000u);
  EXPECT_STRNE(empty.c_layout().reserved[0].name, "static_data");

  o.static_data_size = 0x100000;  // more than the chip has
  LoadResult r = load_layout("esp32c3", o);
  EXPECT_EQ(r.error, std::string(CAPHEAP_TEST_LAYOUT_DIR) +
                         "/esp32c3.json: reserved[0]: 'static_data' 0x3FC80000-0x3FD80000 is "
                         "not inside the regions (size from option static_data_size)");
}

TEST(LayoutOptions, IramCodeSizeOnEsp32) {
  LayoutOptions o;
  o.iram_code_size = 0x10000;
  const ChipLayout layout = load_ok("esp32", o);
  const std::vector<Heap> heaps = derive_heaps(layout.c_layout());
  EXPECT_EQ(heaps.back(), (Heap{0x40090000, 0x10000, "IRAM", false}));
  // The option exists only where the file declares it.
  LoadResult r = load_layout("esp32s3", o);
  EXPECT_EQ(r.error, std::string(CAPHEAP_TEST_LAYOUT_DIR) +
                         "/esp32s3.json: option iram_code_size: not available for chip 'esp32s3'");
}

TEST(LayoutOptions, RtcFastHeapRemovesRegionAndItsReservations) {
  LayoutOptions o;
  o.rtc_fast_heap = false;
  const ChipLayout layout = load_ok("esp32c3", o);
  const capheap_layout_t &c = layout.c_layout();
  EXPECT_EQ(c.region_count, 4u);
  EXPECT_EQ(c.reserved_count, 2u);
  for (const Heap &h : derive_heaps(c))
    EXPECT_NE(h.type, "RTCRAM");
  LoadResult r = load_layout("esp32c2", o);
  EXPECT_EQ(r.error, std::string(CAPHEAP_TEST_LAYOUT_DIR) +
                         "/esp32c2.json: option rtc_fast_heap: not available for chip 'esp32c2'");
}

TEST(LayoutOptions, MemprotSwitchesTypes) {
  LayoutOptions o;
  o.memprot = false;
  const ChipLayout c3 = load_ok("esp32c3", o);
  const std::vector<Heap> heaps = derive_heaps(c3.c_layout());
  EXPECT_EQ(heaps[0].type, "D/IRAM");
  EXPECT_EQ(heaps[1].type, "STACK/DIRAM");
  const ChipLayout s2 = load_ok("esp32s2", o);
  EXPECT_EQ(derive_heaps(s2.c_layout())[0].type, "D/IRAM");
}

TEST(LayoutOptions, ThresholdAndReserveOverrides) {
  LayoutOptions o;
  o.extmem_threshold = 4096;
  o.internal_reserve = 0;
  const ChipLayout layout = load_ok("esp32", o);
  EXPECT_EQ(layout.extmem_threshold(), 4096u);
  EXPECT_EQ(layout.internal_reserve(), 0u);
  // Declared for every chip, even without a word in the file.
  EXPECT_EQ(load_ok("esp32h2", o).extmem_threshold(), 4096u);
}

// ---- Custom layouts, paths, the search path -------------------------------------------------

// A small valid layout used by the custom-file and error tests. Each top-level section is one
// entry so tests can replace or drop it.
std::vector<std::pair<std::string, std::string>> base_sections() {
  return {
      {"chip", R"("testchip")"},
      {"options", R"({"static_data_size": "0x100", "rtc_fast_heap": true, "memprot": false})"},
      {"types", R"([
    {"name": "DRAM", "caps": ["8BIT|DEFAULT", "INTERNAL|DMA|32BIT", "0"]},
    {"name": "D/IRAM", "caps": ["0", "DMA|8BIT|INTERNAL|DEFAULT", "32BIT|EXEC"]},
    {"name": "RTCRAM", "caps": ["RTCRAM", 4100, "0x802"]},
    {"name": "EXT", "caps": ["SPIRAM|DEFAULT", "0", "8BIT|32BIT"]}
  ])"},
      {"regions", R"([
    {"start": "0x1000", "size": "0x1000", "type": "DRAM"},
    {"start": "0x2000", "size": "0x1000", "type": "D/IRAM", "iram": "0x10000"},
    {"start": "0x3000", "size": 4096, "type": "D/IRAM", "iram": "0x11000", "startup_stack": true},
    {"start": "0x8000", "size": "0x100", "type": "RTCRAM", "when": "rtc_fast_heap"}
  ])"},
      {"reserved", R"([
    {"name": "data", "start": "0x1000", "size_option": "static_data_size"},
    {"name": "rom", "start": "0x3F00", "end": "0x4000"}
  ])"},
      {"diram",
       R"({"dram_low": "0x2000", "dram_high": "0x4000", "iram_low": "0x10000", "iram_high": "0x12000"})"},
      {"ext_ram", R"({"start": "0x100000", "max_size": "0x10000", "type": "EXT"})"},
      {"align", R"({"dma_internal": 4, "cache_line_ext": 32})"},
  };
}

std::string render(const std::vector<std::pair<std::string, std::string>> &sections) {
  std::string out = "{\n";
  for (std::size_t i = 0; i < sections.size(); ++i) {
    out += "  \"" + sections[i].first + "\": " + sections[i].second;
    out += i + 1 < sections.size() ? ",\n" : "\n";
  }
  return out + "}\n";
}

// The base layout with section `key` replaced by `value` (appended if new; dropped if value is
// empty).
std::string with(const std::string &key, const std::string &value,
                 std::vector<std::pair<std::string, std::string>> sections = base_sections()) {
  bool found = false;
  for (auto it = sections.begin(); it != sections.end(); ++it) {
    if (it->first == key) {
      found = true;
      if (value.empty()) {
        sections.erase(it);
      } else {
        it->second = value;
      }
      break;
    }
  }
  if (!found) sections.emplace_back(key, value);
  return render(sections);
}

// The base text with one occurrence of `from` replaced by `to`.
std::string replaced(const std::string &from, const std::string &to) {
  std::string text = render(base_sections());
  const std::size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

std::string error_of(const std::string &text, const LayoutOptions &o = {}) {
  const LoadResult r = parse_layout(text, "t.json", o);
  EXPECT_FALSE(r.ok()) << text;
  return r.error;
}

TEST(LayoutCustom, BaseLayoutParses) {
  const LoadResult r = parse_layout(render(base_sections()), "t.json");
  ASSERT_TRUE(r.ok()) << r.error;
  const capheap_layout_t &c = r.layout->c_layout();
  EXPECT_EQ(c.type_count, 4u);
  EXPECT_EQ(c.types[2].caps[1], 4100u);
  EXPECT_EQ(c.types[2].caps[2], 0x802u);
  EXPECT_EQ(c.region_count, 4u);
  EXPECT_EQ(c.regions[2].size, 0x1000u);
  EXPECT_TRUE(c.regions[2].startup_stack);
  EXPECT_EQ(c.reserved_count, 2u);
  EXPECT_EQ(c.reserved[0].end, 0x1100u);
  EXPECT_EQ(c.ext_ram_type, 3);
  EXPECT_EQ(c.align.cache_line_ext, 32u);
  EXPECT_EQ(c.align.simd, 0u);
  EXPECT_EQ(r.layout->path(), "t.json");
}

TEST(LayoutCustom, DocumentationExampleLoads) {
  // docs/layouts.md section 2 must stay a valid layout.
  std::ifstream in(std::string(CAPHEAP_TEST_LAYOUT_DIR) + "/../docs/layouts.md");
  ASSERT_TRUE(in) << "docs/layouts.md not found";
  const std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::size_t begin = doc.find("```json\n");
  ASSERT_NE(begin, std::string::npos);
  const std::size_t end = doc.find("```", begin + 8);
  ASSERT_NE(end, std::string::npos);
  const LoadResult r = parse_layout(doc.substr(begin + 8, end - begin - 8), "layouts.md");
  ASSERT_TRUE(r.ok()) << r.error;
  const capheap_layout_t &c = r.layout->c_layout();
  EXPECT_STREQ(c.chip, "myboard");
  EXPECT_EQ(c.region_count, 4u);
  EXPECT_STREQ(c.types[c.regions[0].type].name, "D/IRAM");  // memprot false selects D/IRAM
  EXPECT_EQ(c.reserved_count, 3u);
  EXPECT_EQ(r.layout->app_usable_dram_end(), std::optional<std::uintptr_t>(0x3000));
}

TEST(LayoutCustom, LoadsFromATemporaryFilePath) {
  const fs::path dir =
      fs::temp_directory_path() / ("capheap-layout-test-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path file = dir / "board.json";
  {
    std::ofstream out(file);
    out << render(base_sections());
  }
  const LoadResult r = load_layout(file.string());
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.layout->chip(), "testchip");  // any chip name is fine for a path
  EXPECT_EQ(r.layout->path(), file.string());

  // A name ending in .json is a path too (relative to the working directory).
  const fs::path old = fs::current_path();
  fs::current_path(dir);
  const LoadResult relative = load_layout("board.json");
  fs::current_path(old);
  EXPECT_TRUE(relative.ok()) << relative.error;

  // Errors name the file as given.
  {
    std::ofstream out(file);
    out << replaced(R"("type": "DRAM"})", R"("type": "DRMA"})");
  }
  EXPECT_EQ(load_layout(file.string()).error,
            file.string() + ": regions[0].type: unknown memory type 'DRMA'");
  fs::remove_all(dir);
}

TEST(LayoutCustom, EnvironmentDirectoryComesFirst) {
  const fs::path dir =
      fs::temp_directory_path() / ("capheap-layout-env-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  {
    std::ofstream out(dir / "testchip.json");
    out << render(base_sections());
  }
  {
    std::ofstream out(dir / "wrongname.json");
    out << render(base_sections());
  }
  const char *old = std::getenv("CAPHEAP_LAYOUT_DIR");
  const std::string saved = old != nullptr ? old : "";
  ::setenv("CAPHEAP_LAYOUT_DIR", ("/nonexistent-dir:" + dir.string()).c_str(), 1);

  const std::vector<std::string> path = layout_search_path();
  ASSERT_GE(path.size(), 3u);
  EXPECT_EQ(path[0], "/nonexistent-dir");
  EXPECT_EQ(path[1], dir.string());
  EXPECT_EQ(path[2], CAPHEAP_TEST_LAYOUT_DIR);

  const std::vector<std::string> chips = list_chips();
  EXPECT_NE(std::find(chips.begin(), chips.end(), "testchip"), chips.end());
  EXPECT_NE(std::find(chips.begin(), chips.end(), "esp32"), chips.end());
  const LoadResult r = load_layout("testchip");
  EXPECT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(load_layout("wrongname").error,
            (dir / "wrongname.json").string() +
                ": chip: 'testchip' does not match the file name 'wrongname'");

  if (old != nullptr) {
    ::setenv("CAPHEAP_LAYOUT_DIR", saved.c_str(), 1);
  } else {
    ::unsetenv("CAPHEAP_LAYOUT_DIR");
  }
  fs::remove_all(dir);
}

TEST(LayoutErrors, FilesAndChips) {
  EXPECT_EQ(load_layout("/nonexistent/x.json").error,
            "/nonexistent/x.json: cannot open: No such file or directory");
  // A directory was read as an empty file: "invalid JSON: ... unexpected end of input".
  const std::string dir = ::testing::TempDir() + "capheap-layout-dir.json";
  fs::create_directories(dir);
  EXPECT_EQ(load_layout(dir).error, dir + ": cannot open: Is a directory");
  fs::remove(dir);
  const std::string unknown = load_layout("nochip").error;
  EXPECT_EQ(unknown.rfind("unknown chip 'nochip' (searched: ", 0), 0u) << unknown;
  EXPECT_NE(unknown.find(CAPHEAP_TEST_LAYOUT_DIR), std::string::npos) << unknown;
  const std::string bad_json = error_of(replaced("\"testchip\"", "\"testchip"));
  EXPECT_EQ(bad_json.rfind("t.json: invalid JSON: parse error at line ", 0), 0u) << bad_json;
  EXPECT_EQ(error_of("[]"), "t.json: expected an object");
}

// Found by layout_fuzz: a number beyond double escaped parse_layout as nlohmann's out_of_range.
TEST(LayoutErrors, NumberOverflowIsAnErrorWithItsPosition) {
  const LoadResult r = parse_layout("{\n  \"chip\": 5e6666666575}", "t.json");
  EXPECT_FALSE(r.layout.has_value());
  EXPECT_EQ(r.error,
            "t.json: invalid JSON at line 2, column 11: number overflow parsing '5e6666666575'");
}

struct ErrorCase {
  std::string text;
  std::string expected;
};

void expect_errors(const std::vector<ErrorCase> &cases, const LayoutOptions &o = {}) {
  for (const ErrorCase &c : cases) {
    EXPECT_EQ(error_of(c.text, o), c.expected) << c.text;
  }
}

// nlohmann::json keeps the last of two equal keys without a word: a second "size" in a region, a
// second "regions" array or a repeated option silently replaced the first.
TEST(LayoutErrors, DuplicateKeys) {
  expect_errors({
      {replaced(R"("chip": "testchip")", R"("chip": "testchip", "chip": "other")"),
       "t.json: duplicate key 'chip'"},
      {replaced(R"("type": "D/IRAM", "iram": "0x10000")",
                R"("type": "D/IRAM", "size": "0x2000", "iram": "0x10000")"),
       "t.json: regions[1]: duplicate key 'size'"},
      {replaced(R"("memprot": false)", R"("memprot": false, "memprot": true)"),
       "t.json: options: duplicate key 'memprot'"},
      {replaced(R"("dma_internal": 4)", R"("dma_internal": 4, "dma_internal": 8)"),
       "t.json: align: duplicate key 'dma_internal'"},
      {with("type_aliases", R"({"MAIN": {"memprot": "DRAM", "memprot": "EXT"}})"),
       "t.json: type_aliases.MAIN: duplicate key 'memprot'"},
      {with("comment", R"([{"a": 1}, [2, {"b": 1, "b\n": 2, "b": 3}]])"),
       "t.json: comment[1][1]: duplicate key 'b'"},
      {with("comment", R"({"x\ny": 1, "x\ny": 2})"), "t.json: comment: duplicate key 'x\\x0ay'"},
  });
  // Under an unknown top-level key, the unknown key is the error.
  EXPECT_EQ(error_of(with("invalid JSON", R"({"a": 1, "a": 2})")),
            "t.json: unknown key 'invalid JSON'");
  // The same key in different objects is no duplicate.
  const LoadResult ok = parse_layout(render(base_sections()), "t.json");
  EXPECT_TRUE(ok.ok()) << ok.error;
}

// The coverage check walked the regions in file order (the heap list order, not always by
// address): a reservation across two adjacent regions listed high one first was "not inside the
// regions".
TEST(LayoutCustom, ReservationAcrossRegionsListedOutOfAddressOrder) {
  const std::string types = R"([{"name": "RAM", "caps": ["8BIT|DEFAULT", "INTERNAL", "0"]}])";
  const std::string reserved = R"([{"name": "x", "start": "0x1F00", "end": "0x2100"}])";
  for (const char *regions : {R"([{"start": "0x1000", "size": "0x1000", "type": "RAM"},
            {"start": "0x2000", "size": "0x1000", "type": "RAM"}])",
                              R"([{"start": "0x2000", "size": "0x1000", "type": "RAM"},
            {"start": "0x1000", "size": "0x1000", "type": "RAM"}])"}) {
    const LoadResult r = parse_layout(
        render(
            {{"chip", R"("t")"}, {"types", types}, {"regions", regions}, {"reserved", reserved}}),
        "t.json");
    ASSERT_TRUE(r.ok()) << r.error;
    ASSERT_EQ(r.layout->c_layout().reserved_count, 1u);
    EXPECT_EQ(r.layout->c_layout().reserved[0].start, 0x1F00u);
    EXPECT_EQ(r.layout->c_layout().reserved[0].end, 0x2100u);
  }
  // A gap between the two regions is still refused, whatever their order.
  const std::string gap = R"([{"start": "0x2100", "size": "0x1000", "type": "RAM"},
                              {"start": "0x1000", "size": "0x1000", "type": "RAM"}])";
  EXPECT_EQ(error_of(render(
                {{"chip", R"("t")"}, {"types", types}, {"regions", gap}, {"reserved", reserved}})),
            "t.json: reserved[0]: 'x' 0x1F00-0x2100 is not inside the regions");
}

TEST(LayoutErrors, TopLevelAndChip) {
  expect_errors({
      {with("chip2", "1"), "t.json: unknown key 'chip2'"},
      {with("chip", ""), "t.json: missing 'chip'"},
      {with("chip", "5"), "t.json: chip: expected a string"},
      {with("chip", R"("TestChip")"),
       "t.json: chip: 'TestChip' must be lower-case letters, digits, '_' or '-'"},
      {with("description", "[]"), "t.json: description: expected a string"},
      {with("types", ""), "t.json: missing 'types'"},
      {with("regions", ""), "t.json: missing 'regions'"},
      {with("reserved", ""), "t.json: missing 'reserved'"},
      {with("regions", "{}"), "t.json: regions: expected an array"},
      {with("regions", "[]"), "t.json: regions: no regions"},
      {with("regions", "[5]"), "t.json: regions[0]: expected an object"},
      {with("types", "[]"), "t.json: types: no memory types"},
  });
  const LoadResult r = parse_layout(render(base_sections()), "t.json", {}, "other");
  EXPECT_EQ(r.error, "t.json: chip: 'testchip' does not match the file name 'other'");
}

TEST(LayoutErrors, Options) {
  expect_errors({
      {with("options", "[]"), "t.json: options: expected an object"},
      {with("options", R"({"psram": 1})"), "t.json: options: unknown option 'psram'"},
      {with("options", R"({"static_data_size": "0x100", "rtc_fast_heap": "yes"})"),
       "t.json: options.rtc_fast_heap: expected true or false"},
      {with("options", R"({"static_data_size": "0x1G", "rtc_fast_heap": true})"),
       "t.json: options.static_data_size: bad number '0x1G'"},
      {with("options", R"({"static_data_size": "", "rtc_fast_heap": true})"),
       "t.json: options.static_data_size: bad number ''"},
      {with("options", R"({"static_data_size": "0x100000000", "rtc_fast_heap": true})"),
       "t.json: options.static_data_size: '0x100000000' does not fit in 32 bits"},
      {with("options", R"({"static_data_size": 4294967296, "rtc_fast_heap": true})"),
       "t.json: options.static_data_size: 4294967296 does not fit in 32 bits"},
      {with("options", R"({"static_data_size": -4, "rtc_fast_heap": true})"),
       "t.json: options.static_data_size: -4 is negative"},
      {with("options", R"({"static_data_size": 1.5, "rtc_fast_heap": true})"),
       "t.json: options.static_data_size: expected an integer or a string such as \"0x2000\""},
      {with("options",
            R"({"static_data_size": "0x100", "rtc_fast_heap": true, "psram_size": "0x20000"})"),
       "t.json: options.psram_size: 0x20000 exceeds ext_ram.max_size 0x10000"},
  });
  LayoutOptions o;
  o.iram_code_size = 16;
  EXPECT_EQ(error_of(render(base_sections()), o),
            "t.json: option iram_code_size: not available for chip 'testchip'");
  LayoutOptions big;
  big.psram_size = 0x20000;
  EXPECT_EQ(error_of(render(base_sections()), big),
            "t.json: option psram_size: 0x20000 exceeds ext_ram.max_size 0x10000");
  LayoutOptions odd;
  odd.psram_size = 6;
  EXPECT_EQ(error_of(render(base_sections()), odd),
            "t.json: option psram_size: 0x6 is not a multiple of 4");
  if constexpr (sizeof(std::size_t) > 4) {  // (a 32-bit size_t cannot hold it)
    LayoutOptions huge;
    huge.static_data_size = static_cast<std::size_t>(std::uint64_t{1} << 32);
    EXPECT_EQ(error_of(render(base_sections()), huge),
              "t.json: option static_data_size: 0x100000000 does not fit in 32 bits");
  }
  LayoutOptions any_psram;
  any_psram.psram_size = 0x1000;
  EXPECT_EQ(error_of(with("ext_ram", ""), any_psram),
            "t.json: option psram_size: chip 'testchip' has no external RAM");
}

TEST(LayoutErrors, Types) {
  expect_errors({
      {with("types", "{}"), "t.json: types: expected an array"},
      {replaced(R"({"name": "DRAM")", R"({"nam": "DRAM")"), "t.json: types[0]: unknown key 'nam'"},
      {replaced(R"({"name": "DRAM", "caps": ["8BIT|DEFAULT", "INTERNAL|DMA|32BIT", "0"]})",
                R"({"name": "DRAM"})"),
       "t.json: types[0]: missing 'caps'"},
      {replaced(R"("INTERNAL|DMA|32BIT", "0"]})", R"("INTERNAL|DMA|32BIT"]})"),
       "t.json: types[0].caps: expected 3 priority levels, got 2"},
      {replaced(R"("caps": ["8BIT|DEFAULT")", R"("caps": "8BIT|DEFAULT", "x": ["")"),
       "t.json: types[0]: unknown key 'x'"},
      {replaced(R"("INTERNAL|DMA|32BIT", "0"]})", R"("INTERNAL|DMAA|32BIT", "0"]})"),
       "t.json: types[0].caps[1]: unknown capability 'DMAA'"},
      {replaced(R"("INTERNAL|DMA|32BIT", "0"]})", R"("INTERNAL|DMA|32BIT", ""]})"),
       "t.json: types[0].caps[2]: empty capability mask"},
      {replaced(R"("INTERNAL|DMA|32BIT", "0"]})", R"("INTERNAL|DMA|32BIT", true]})"),
       "t.json: types[0].caps[2]: expected an integer or a string such as \"0x2000\""},
      {replaced(R"({"name": "RTCRAM")", R"({"name": "DRAM")"),
       "t.json: types[2].name: duplicate memory type 'DRAM'"},
      {replaced(R"({"name": "DRAM")", R"({"name": "")"), "t.json: types[0].name: empty name"},
      {replaced(R"({"name": "EXT",)", R"({"name": "EXT", "when": "foo",)"),
       "t.json: types[3].when: unknown option 'foo'"},
      {replaced(R"({"name": "EXT",)", R"({"name": "EXT", "when": "static_data_size",)"),
       "t.json: types[3].when: option 'static_data_size' is not true/false"},
      {replaced(R"({"name": "EXT",)", R"({"name": "EXT", "when": 1,)"),
       "t.json: types[3].when: expected a string"},
      {with("options", R"({"static_data_size": "0x100", "rtc_fast_heap": true})",
            {{"chip", R"("testchip")"},
             {"types", R"([{"name": "EXT", "when": "memprot", "caps": ["0", "0", "0"]}])"}}),
       "t.json: types[0].when: option 'memprot' is not in this file's options"},
  });
}

TEST(LayoutErrors, TypeAliases) {
  const std::string pick = R"({"rtc_fast_heap": "DRAM", "!rtc_fast_heap": "D/IRAM"})";
  // A valid alias first: regions[0] uses it.
  {
    std::string text = with("type_aliases", "{\"MAIN\": " + pick + "}");
    text.replace(text.find(R"("type": "DRAM"})"), 15, R"("type": "MAIN"})");
    const LoadResult r = parse_layout(text, "t.json");
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_STREQ(r.layout->c_layout().types[r.layout->c_layout().regions[0].type].name, "DRAM");
    LayoutOptions o;
    o.rtc_fast_heap = false;  // the alias now picks D/IRAM (and the RTC region goes)
    const LoadResult other = parse_layout(text, "t.json", o);
    ASSERT_TRUE(other.ok()) << other.error;
    EXPECT_STREQ(other.layout->c_layout().types[other.layout->c_layout().regions[0].type].name,
                 "D/IRAM");
  }
  // A comment is allowed in every object, also among an alias's conditions (it used to be read
  // as a condition: "unknown option 'comment'").
  {
    std::string text = with(
        "type_aliases", R"({"MAIN": {"comment": ["picks the main type"], )" + pick.substr(1) + "}");
    text.replace(text.find(R"("type": "DRAM"})"), 15, R"("type": "MAIN"})");
    const LoadResult r = parse_layout(text, "t.json");
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_STREQ(r.layout->c_layout().types[r.layout->c_layout().regions[0].type].name, "DRAM");
  }
  expect_errors({
      {with("type_aliases", "[]"), "t.json: type_aliases: expected an object"},
      {with("type_aliases", "{\"DRAM\": " + pick + "}"),
       "t.json: type_aliases.DRAM: 'DRAM' is already a memory type"},
      {with("type_aliases", R"({"MAIN": []})"), "t.json: type_aliases.MAIN: expected an object"},
      {with("type_aliases", R"({"MAIN": {"!rtc_fast_heap": "DRAM"}})"),
       "t.json: type_aliases.MAIN: no condition holds"},
      {with("type_aliases", R"({"MAIN": {"rtc_fast_heap": "DRAM", "!memprot": "DRAM"}})"),
       "t.json: type_aliases.MAIN: more than one condition holds"},
      {with("type_aliases", R"({"MAIN": {"rtc_fast_heap": "DRMA", "!rtc_fast_heap": "DRAM"}})"),
       "t.json: type_aliases.MAIN.rtc_fast_heap: unknown memory type 'DRMA'"},
      {with("type_aliases", R"({"MAIN": {"rtc_fast_heap": 3}})"),
       "t.json: type_aliases.MAIN.rtc_fast_heap: expected a string"},
      {with("type_aliases", R"({"MAIN": {"rtc_heap": "DRAM"}})"),
       "t.json: type_aliases.MAIN: unknown option 'rtc_heap'"},
  });
}

TEST(LayoutErrors, Regions) {
  expect_errors({
      {replaced(R"("type": "DRAM"})", R"("type": "DRMA"})"),
       "t.json: regions[0].type: unknown memory type 'DRMA'"},
      {replaced(R"("type": "DRAM"})", R"("type": 3})"),
       "t.json: regions[0].type: expected a string"},
      {replaced(R"({"start": "0x1000", "size": "0x1000")",
                R"({"start": "0x1002", "size": "0x1000")"),
       "t.json: regions[0].start: 0x1002 is not a multiple of 4"},
      {replaced(R"({"start": "0x1000", "size": "0x1000")", R"({"start": "0x1000", "size": "0")"),
       "t.json: regions[0].size: must not be 0"},
      {replaced(R"({"start": "0x1000", "size": "0x1000")", R"({"start": "0x1000")"),
       "t.json: regions[0]: missing 'size'"},
      {replaced(R"({"start": "0x1000", "size": "0x1000")",
                R"({"strat": "0x1000", "size": "0x1000")"),
       "t.json: regions[0]: unknown key 'strat'"},
      {replaced(R"({"start": "0x2000", "size": "0x1000")",
                R"({"start": "0x800", "size": "0x1000")"),
       "t.json: regions[1]: overlaps regions[0] (0x1000-0x2000)"},
      {replaced(R"({"start": "0x2000", "size": "0x1000")",
                R"({"start": "0x1800", "size": "0x100")"),
       "t.json: regions[1]: overlaps regions[0] (0x1000-0x2000)"},
      {replaced(R"({"start": "0x8000", "size": "0x100")",
                R"({"start": "0xFFFFF000", "size": "0x2000")"),
       "t.json: regions[3]: region 0xFFFFF000+0x2000 ends past 0xFFFFFFFF"},
      {replaced(R"("startup_stack": true)", R"("startup_stack": 1)"),
       "t.json: regions[2].startup_stack: expected true or false"},
      {replaced(R"("iram": "0x11000")", R"("iram": "0x11004")"),
       "t.json: regions[2].iram: alias 0x11004 does not match the D/IRAM window (expected "
       "0x11000)"},
      {replaced(R"("iram": "0x11000")", R"("iram": "0x11002")"),
       "t.json: regions[2].iram: 0x11002 is not a multiple of 4"},
      {replaced(R"("when": "rtc_fast_heap"})", R"("when": "!nothing"})"),
       "t.json: regions[3].when: unknown option 'nothing'"},
  });
}

// The caps layer takes every address from the lowest instruction alias to the end of the highest
// for an alias (free reads the word before such a pointer as its data address). The loader used to
// accept aliases past 0xFFFFFFFF, two aliases over the same bus addresses, and regions or external
// RAM inside that window: on the simulator (and on a device given the generated table) every free
// of a block there reported "outside heap areas" and leaked.
TEST(LayoutErrors, InstructionAliases) {
  const std::string rtc = R"({"start": "0x8000", "size": "0x100", "type": "RTCRAM")";
  const auto rtc_alias = [&](const char *iram) {
    return replaced(rtc, rtc + R"(, "iram": ")" + iram + "\"");
  };
  expect_errors({
      {rtc_alias("0xFFFFFFF0"),
       "t.json: regions[3].iram: alias 0xFFFFFFF0+0x100 ends past 0xFFFFFFFF"},
      {rtc_alias("0x10800"),
       "t.json: regions[3].iram: alias 0x10800-0x10900 overlaps the alias of regions[1] "
       "(0x10000-0x11000)"},
      {rtc_alias("0x1000"),
       "t.json: regions[0]: region 0x1000-0x2000 lies in the instruction alias window "
       "0x1000-0x12000 (regions[3].iram to regions[2].iram): its pointers would be taken for "
       "aliases"},
      // Overlapping no alias itself, but between two of them.
      {rtc_alias("0x4000"),
       "t.json: regions[3]: region 0x8000-0x8100 lies in the instruction alias window "
       "0x4000-0x12000 (regions[3].iram to regions[2].iram): its pointers would be taken for "
       "aliases"},
      {rtc_alias("0x100000"),
       "t.json: ext_ram: window 0x100000-0x110000 lies in the instruction alias window "
       "0x10000-0x100100 (regions[1].iram to regions[3].iram): its pointers would be taken for "
       "aliases"},
  });
  // An alias equal to the region's own address is no alias (ESP32-C6/H2/P4), and one just past
  // the others is fine.
  EXPECT_TRUE(parse_layout(rtc_alias("0x8000"), "t.json").ok());
  const LoadResult next = parse_layout(rtc_alias("0x12000"), "t.json");
  ASSERT_TRUE(next.ok()) << next.error;
  EXPECT_EQ(next.layout->c_layout().regions[3].iram_address, 0x12000u);
}

// A heap cannot start at address 0 (the null pointer): heap_caps_init dropped such a piece without
// a word, so a device had no heap in a region at 0 while the simulator, which maps the chip
// elsewhere, had one. The loader used to accept the file.
TEST(LayoutErrors, RegionAtAddressZeroNeedsAReservationThere) {
  const std::string at_zero = replaced(R"({"start": "0x1000", "size": "0x1000", "type": "DRAM"})",
                                       R"({"start": "0x0", "size": "0x2000", "type": "DRAM"})");
  EXPECT_EQ(error_of(at_zero),
            "t.json: regions[0]: starts at address 0, where no heap can start: reserve its first "
            "bytes");
  std::string guarded = at_zero;
  guarded.replace(guarded.find(R"({"name": "rom")"), 14,
                  R"({"name": "null_guard", "start": "0x0", "end": "0x4"}, {"name": "rom")");
  const LoadResult r = parse_layout(guarded, "t.json");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.layout->c_layout().reserved[0].start, 0u);
  EXPECT_EQ(r.layout->c_layout().reserved[0].end, 4u);
}

TEST(LayoutErrors, Diram) {
  expect_errors({
      {replaced(R"({"dram_low")", R"({"inverted": true, "dram_low")"),
       "t.json: regions[1].iram: alias 0x10000 does not match the D/IRAM window (expected "
       "0x11000)"},
      {replaced(R"({"dram_low")", R"({"inverted": "yes", "dram_low")"),
       "t.json: diram.inverted: expected true or false"},
      {with(
           "diram",
           R"({"dram_low": "0x2000", "dram_high": "0x3800", "iram_low": "0x10000", "iram_high": "0x11800"})"),
       "t.json: regions[2]: crosses the end of the D/IRAM window (0x3800)"},
      // An aliased region reaching into the window from below was accepted: two instruction
      // mappings for its bytes inside the window (and, on an inverted window, two directions).
      {with(
           "diram",
           R"({"dram_low": "0x2800", "dram_high": "0x4000", "iram_low": "0x10800", "iram_high": "0x12000"})"),
       "t.json: regions[1]: crosses the start of the D/IRAM window (0x2800)"},
      {with(
           "diram",
           R"({"dram_low": "0x2000", "dram_high": "0x1000", "iram_low": "0x10000", "iram_high": "0x12000"})"),
       "t.json: diram.dram_high: 0x1000 is not above dram_low 0x2000"},
      {with(
           "diram",
           R"({"dram_low": "0x2000", "dram_high": "0x4000", "iram_low": "0x10000", "iram_high": "0x10000"})"),
       "t.json: diram.iram_high: 0x10000 is not above iram_low 0x10000"},
      {with(
           "diram",
           R"({"dram_low": "0x2000", "dram_high": "0x4000", "iram_low": "0x10000", "iram_high": "0x11000"})"),
       "t.json: diram: data window (0x2000 bytes) and instruction window (0x1000 bytes) differ "
       "in size"},
      {with("diram", R"({"dram_low": "0x2000", "dram_high": "0x4000", "iram_low": "0x10000"})"),
       "t.json: diram: missing 'iram_high'"},
      {with("diram", R"({"dram_lo": "0x2000"})"), "t.json: diram: unknown key 'dram_lo'"},
  });
}

TEST(LayoutErrors, ExtRam) {
  expect_errors({
      {with("ext_ram", R"({"start": "0x100000", "max_size": "0x10000", "type": "XT"})"),
       "t.json: ext_ram.type: unknown memory type 'XT'"},
      {with("ext_ram", R"({"start": "0x800", "max_size": "0x2000", "type": "EXT"})"),
       "t.json: ext_ram: window 0x800-0x2800 overlaps regions[0]"},
      // heap_caps_add_region refuses start 0: the simulator's start failed on adding the heap.
      {with("ext_ram", R"({"start": "0x0", "max_size": "0x800", "type": "EXT"})"),
       "t.json: ext_ram.start: must not be 0"},
      {with("ext_ram", R"({"start": "0x100000", "max_size": "0", "type": "EXT"})"),
       "t.json: ext_ram.max_size: must not be 0"},
      {with("ext_ram", R"({"start": "0xFFFF0000", "max_size": "0x20000", "type": "EXT"})"),
       "t.json: ext_ram: window 0xFFFF0000+0x20000 ends past 0xFFFFFFFF"},
      {with("ext_ram", R"({"start": "0x100000", "type": "EXT"})"),
       "t.json: ext_ram: missing 'max_size'"},
  });
}

TEST(LayoutErrors, Reserved) {
  expect_errors({
      {with("reserved", "{}"), "t.json: reserved: expected an array"},
      {replaced(R"({"name": "rom", "start": "0x3F00", "end": "0x4000"})",
                R"({"name": "rom", "start": "0x3F00"})"),
       "t.json: reserved[1]: needs one of 'end', 'size', 'size_option'"},
      {replaced(R"({"name": "rom", "start": "0x3F00", "end": "0x4000"})",
                R"({"name": "rom", "start": "0x3F00", "end": "0x4000", "size": "0x100"})"),
       "t.json: reserved[1]: give only one of 'end', 'size', 'size_option'"},
      {replaced(R"("end": "0x4000")", R"("end": "0x3F00")"),
       "t.json: reserved[1].end: 0x3F00 is not above start 0x3F00"},
      {replaced(R"("end": "0x4000")", R"("size": "0")"), "t.json: reserved[1].size: must not be 0"},
      {replaced(R"("start": "0x3F00", "end": "0x4000")", R"("start": "0x4000", "end": "0x4100")"),
       "t.json: reserved[1]: 'rom' 0x4000-0x4100 is not inside the regions"},
      {replaced(R"("start": "0x3F00", "end": "0x4000")", R"("start": "0x3F00", "end": "0x3F02")"),
       "t.json: reserved[1].end: 0x3F02 is not a multiple of 4"},
      {replaced(R"({"name": "rom",)", R"({)"), "t.json: reserved[1]: missing 'name'"},
      {replaced(R"({"name": "rom",)", R"({"name": "",)"), "t.json: reserved[1].name: empty name"},
      {replaced(R"("size_option": "static_data_size")", R"("size_option": "static_size")"),
       "t.json: reserved[0].size_option: unknown option 'static_size'"},
      {replaced(R"("size_option": "static_data_size")", R"("size_option": "rtc_fast_heap")"),
       "t.json: reserved[0].size_option: option 'rtc_fast_heap' is not a size"},
      {replaced(R"("size_option": "static_data_size")", R"("size_option": "iram_code_size")"),
       "t.json: reserved[0].size_option: option 'iram_code_size' is not in this file's options"},
      {replaced(R"("end": "0x4000"})",
                R"("end": "0x4000"}, {"name": "rom2", "start": "0x3E00", "end": "0x3F04"})"),
       "t.json: reserved[2]: 'rom2' 0x3E00-0x3F04 overlaps reserved[1] 'rom' 0x3F00-0x4000"},
      {replaced(R"("end": "0x4000"})",
                R"("end": "0x4000"}, {"name": "top", "start": "0xFFFFFF00", "size": "0x200"})"),
       "t.json: reserved[2]: 'top' 0xFFFFFF00-0x100000100 ends past 0xFFFFFFFF"},
  });
  LayoutOptions o;
  o.static_data_size = 0x10000;
  EXPECT_EQ(error_of(render(base_sections()), o),
            "t.json: reserved[0]: 'data' 0x1000-0x11000 is not inside the regions (size from "
            "option static_data_size)");
  // A reservation inside a region that an option removed.
  LayoutOptions no_rtc;
  no_rtc.rtc_fast_heap = false;
  EXPECT_EQ(
      error_of(replaced(R"("end": "0x4000"})",
                        R"("end": "0x4000"}, {"name": "rtc", "start": "0x8000", "end": "0x8010"})"),
               no_rtc),
      "t.json: reserved[2]: 'rtc' 0x8000-0x8010 is not inside the regions");
  // ...which is fine when it carries the same condition.
  const LoadResult ok = parse_layout(
      replaced(
          R"("end": "0x4000"})",
          R"("end": "0x4000"}, {"name": "rtc", "start": "0x8000", "end": "0x8010", "when": "rtc_fast_heap"})"),
      "t.json", no_rtc);
  EXPECT_TRUE(ok.ok()) << ok.error;
}

TEST(LayoutErrors, AlignAndAppUsableEnd) {
  expect_errors({
      {with("align", R"({"simd": 12})"), "t.json: align.simd: 12 is not 0 or a power of two"},
      {with("align", R"({"dma": 4})"), "t.json: align: unknown key 'dma'"},
      {with("align", "4"), "t.json: align: expected an object"},
      {with("app_usable_dram_end", R"("0x2800")"),
       "t.json: app_usable_dram_end: no region starts at 0x2800"},
  });
  const LoadResult r = parse_layout(with("app_usable_dram_end", R"("0x3000")"), "t.json");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.layout->app_usable_dram_end(), std::optional<std::uintptr_t>(0x3000));
}

// ---- Generated C tables -------------------------------------------------------------------------

std::string c_hex(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%08llXu", static_cast<unsigned long long>(v));
  return buf;
}

TEST(LayoutCTable, ContainsEveryRegionTypeAndReservation) {
  for (const char *chip : kBundledChips) {
    SCOPED_TRACE(chip);
    LayoutOptions o;
    const ChipLayout layout = load_ok(chip, o);
    const capheap_layout_t &c = layout.c_layout();
    const std::string symbol = std::string("capheap_layout_") + chip;
    const std::string text = generate_c_table(layout, symbol);
    EXPECT_NE(text.find("#include \"capheap_layout.h\""), std::string::npos);
    EXPECT_NE(text.find("const capheap_layout_t " + symbol + " = {"), std::string::npos);
    EXPECT_NE(text.find(".chip = \"" + std::string(chip) + "\""), std::string::npos);
    EXPECT_NE(text.find(".region_count = " + std::to_string(c.region_count) + ","),
              std::string::npos);
    for (std::size_t i = 0; i < c.region_count; ++i) {
      const capheap_memory_region_t &r = c.regions[i];
      const std::string row = "{.start = " + c_hex(r.start) + ", .size = " + c_hex(r.size) +
                              ", .type = " + std::to_string(r.type) +
                              ", .startup_stack = " + (r.startup_stack ? "true" : "false") +
                              ", .iram_address = " + c_hex(r.iram_address) + "}";
      EXPECT_NE(text.find(row), std::string::npos) << row;
    }
    for (std::size_t i = 0; i < c.type_count; ++i) {
      EXPECT_NE(text.find("{.name = \"" + std::string(c.types[i].name) + "\", .caps = {" +
                          c_hex(c.types[i].caps[0]) + ", " + c_hex(c.types[i].caps[1]) + ", " +
                          c_hex(c.types[i].caps[2]) + "}}"),
                std::string::npos)
          << c.types[i].name;
    }
    for (std::size_t i = 0; i < c.reserved_count; ++i) {
      EXPECT_NE(text.find("{.start = " + c_hex(c.reserved[i].start) + ", .end = " +
                          c_hex(c.reserved[i].end) + ", .name = \"" + c.reserved[i].name + "\"}"),
                std::string::npos)
          << c.reserved[i].name;
    }
    EXPECT_NE(text.find(".ext_ram_type = " + std::to_string(c.ext_ram_type) + ","),
              std::string::npos);
  }
}

// capheap_layout_table wrote the table with an unchecked fwrite: with a full disk it exited 0 and
// left a truncated (here: empty) file behind.
TEST(LayoutCTable, ToolFailsWhenTheTableCannotBeWritten) {
  if (access("/dev/full", W_OK) != 0) GTEST_SKIP() << "no /dev/full";
  const std::string err = ::testing::TempDir() + "capheap-layout-table.err";
  const std::string cmd = std::string(CAPHEAP_LAYOUT_TABLE_BIN) + " esp32s3 > /dev/full 2> " + err;
  const int status = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status)) << cmd;
  EXPECT_EQ(WEXITSTATUS(status), 1) << cmd;
  std::ifstream in(err);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(), "capheap_layout_table: cannot write the table: No space left on device\n");
  // Written to a file, the same table succeeds.
  const std::string ok = std::string(CAPHEAP_LAYOUT_TABLE_BIN) + " esp32s3 > " +
                         ::testing::TempDir() + "capheap-layout-table.c";
  EXPECT_EQ(std::system(ok.c_str()), 0) << ok;
}

// Chip names may contain '-' and start with a digit, which a C symbol may not: the tool's default
// symbol (<chip>_layout) made it fail ("is not a C identifier", exit status 2) for such valid files
// unless --symbol was given.
TEST(LayoutCTable, ToolDefaultSymbolIsACIdentifierForEveryChipName) {
  const std::pair<const char *, const char *> cases[] = {
      {"my-board", "my_board_layout"},
      {"3d-printer", "chip_3d_printer_layout"},
      {"plain_chip", "plain_chip_layout"},
  };
  for (const auto &c : cases) {
    SCOPED_TRACE(c.first);
    const std::string dir = ::testing::TempDir() + "capheap-symbol-" + c.first;
    fs::create_directories(dir);
    std::string text = render(base_sections());
    text.replace(text.find("testchip"), 8, c.first);
    std::ofstream(dir + "/" + c.first + ".json") << text;
    const std::string out = dir + "/table.c";
    const std::string cmd = std::string(CAPHEAP_LAYOUT_TABLE_BIN) + " " + dir + "/" + c.first +
                            ".json > " + out + " 2>&1";
    const int status = std::system(cmd.c_str());
    ASSERT_TRUE(WIFEXITED(status)) << cmd;
    std::ifstream in(out);
    std::stringstream table;
    table << in.rdbuf();
    EXPECT_EQ(WEXITSTATUS(status), 0) << table.str();
    EXPECT_NE(table.str().find(std::string("const capheap_layout_t ") + c.second + " = {"),
              std::string::npos)
        << table.str().substr(0, 300);
    EXPECT_NE(table.str().find(std::string(".chip = \"") + c.first + "\","), std::string::npos);
  }
}

TEST(LayoutCTable, HeaderCommentListsOptionsAndRejectsBadSymbols) {
  LayoutOptions o;
  o.psram_size = 4u << 20;
  const ChipLayout layout = load_ok("esp32", o);
  const std::string text = generate_c_table(layout, "esp32_layout");
  EXPECT_NE(text.find(" * Options: psram_size=0x400000 static_data_size=0x2EC8 "
                      "iram_code_size=0x944C extmem_threshold=0x4000 internal_reserve=0x8000 "
                      "rtc_fast_heap=false\n"),
            std::string::npos)
      << text.substr(0, 400);
  EXPECT_NE(text.find(".diram_inverted = true,"), std::string::npos);
  EXPECT_NE(text.find("/* 0: 8BIT|DEFAULT ; 32BIT|DMA|INTERNAL ; 0 */"), std::string::npos);
  EXPECT_THROW(generate_c_table(layout, "1abc"), std::invalid_argument);
  EXPECT_THROW(generate_c_table(layout, "a-b"), std::invalid_argument);
  EXPECT_THROW(generate_c_table(layout, ""), std::invalid_argument);
}

}  // namespace
}  // namespace capheap::sim
