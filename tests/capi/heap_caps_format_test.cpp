// heap_caps_format_test.cpp — heap_caps_print_heap_info, heap_caps_dump and heap_caps_dump_all
// print ESP-IDF's formats character for character (spec §4.9).
//
// Three independent checks hold every printed line:
//   1. the exact text, rebuilt here from heap_caps_walk (heap order, addresses, block lists and
//      counts) and each heap's own statistics, then compared with what was printed;
//   2. regular expressions written from the spec's printf formats, applied to every line, plus the
//      structure of a report (header, two lines per heap, totals) and its arithmetic (totals are
//      sums / the maximum, alloc_blocks + free_blocks == total_blocks, dump blocks are contiguous);
//   3. the same regular expressions and rules applied to real device output
//      (shared/data/device-output/samples.txt: the "Heap summary" blocks S6-S8 and the TLSF dump
//      S10), proving the expressions accept what ESP-IDF really prints.
// Addresses are the chip's even when the simulator had to map the chip elsewhere.
//
// Random workloads print their seed; set CAPHEAP_TEST_SEED to replay one.

#include <gtest/gtest.h>

#include <cinttypes>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include "capheap.h"
#include "capheap_host.h"
#include "capi/capi_internal.hpp"
#include "esp_heap_caps.h"
#include "esp_heap_caps_init.h"
#include "sim/layout.hpp"

extern "C" void esp_only_print_and_dump(uint32_t caps);  // heap_caps_esp_only.c

namespace {

constexpr std::uint32_t kX = MALLOC_CAP_EXEC, k32 = MALLOC_CAP_32BIT, k8 = MALLOC_CAP_8BIT,
                        kDma = MALLOC_CAP_DMA, kS = MALLOC_CAP_SPIRAM, kI = MALLOC_CAP_INTERNAL,
                        kD = MALLOC_CAP_DEFAULT, kInv = MALLOC_CAP_INVALID;

const char *const kEnvVars[] = {"CAPHEAP_CHIP",           "CAPHEAP_PSRAM",
                                "CAPHEAP_STATIC_DATA",    "CAPHEAP_POISONING",
                                "CAPHEAP_CHIP_ADDRESSES", "CAPHEAP_GRANULE"};

// ================================================================================================
// Output capture
// ================================================================================================

std::string g_out;
void capture(const char *text, std::size_t len) {
  g_out.append(text, len);
}

/// Splits captured text into lines; every line must end with '\n' (no partial last line).
std::vector<std::string> lines_of(const std::string &text) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at < text.size()) {
    const std::size_t nl = text.find('\n', at);
    EXPECT_NE(nl, std::string::npos) << "output does not end with a newline";
    if (nl == std::string::npos) {
      out.push_back(text.substr(at));
      break;
    }
    out.push_back(text.substr(at, nl - at));
    at = nl + 1;
  }
  return out;
}

std::string printed(void (*fn)(std::uint32_t), std::uint32_t caps) {
  g_out.clear();
  fn(caps);
  std::string s;
  s.swap(g_out);
  return s;
}

// ================================================================================================
// The formats as regular expressions (spec §4.9). %d may be negative in C; %08x / %08X are exactly
// eight hex digits for 32-bit values.
// ================================================================================================

const std::regex kSummaryHeader("^Heap summary for capabilities 0x[0-9A-F]{8}:$");
const std::regex kHeapLine(
    "^  At 0x([0-9a-f]{8}) len (-?[0-9]+) free (-?[0-9]+) allocated (-?[0-9]+) min_free "
    "(-?[0-9]+)$");
const std::regex kHeapLine2(
    "^    largest_free_block (-?[0-9]+) alloc_blocks (-?[0-9]+) free_blocks (-?[0-9]+) "
    "total_blocks (-?[0-9]+)$");
const std::regex kTotalsHeader("^  Totals:$");
const std::regex kTotalsLine(
    "^    free (-?[0-9]+) allocated (-?[0-9]+) min_free (-?[0-9]+) largest_free_block "
    "(-?[0-9]+)$");
const std::regex kDumpHeap("^Showing data for heap: 0x([0-9a-f]{8}) $");
const std::regex kDumpBlock(
    "^Block 0x([0-9a-f]{8}) data, size: (-?[0-9]+) bytes, Free: (Yes|No) $");

long long num(const std::ssub_match &m) {
  return std::stoll(m.str());
}

/// One parsed "Heap summary" report.
struct Summary {
  std::uint32_t caps = 0;
  struct Heap {
    std::uint32_t at;
    long long len, free, allocated, min_free, largest, alloc_blocks, free_blocks, total_blocks;
  };
  std::vector<Heap> heaps;
  bool has_totals = false;
  long long free = 0, allocated = 0, min_free = 0, largest = 0;
};

/// Parses report lines starting at lines[i] (which must be a header), checking every line against
/// the formats. `complete` = false allows the report to stop after any whole heap (a truncated
/// sample). Advances i past the report.
Summary parse_summary(const std::vector<std::string> &lines, std::size_t &i, bool complete) {
  Summary s;
  std::smatch m;
  EXPECT_TRUE(std::regex_match(lines[i], kSummaryHeader)) << "'" << lines[i] << "'";
  s.caps = static_cast<std::uint32_t>(std::stoul(lines[i].substr(32, 8), nullptr, 16));
  ++i;
  while (i < lines.size() && std::regex_match(lines[i], m, kHeapLine)) {
    Summary::Heap h{};
    h.at = static_cast<std::uint32_t>(std::stoul(m[1].str(), nullptr, 16));
    h.len = num(m[2]);
    h.free = num(m[3]);
    h.allocated = num(m[4]);
    h.min_free = num(m[5]);
    ++i;
    if (i >= lines.size()) {
      ADD_FAILURE() << "heap line without its second line";
      return s;
    }
    std::smatch m2;
    EXPECT_TRUE(std::regex_match(lines[i], m2, kHeapLine2)) << "'" << lines[i] << "'";
    if (m2.size() == 5) {
      h.largest = num(m2[1]);
      h.alloc_blocks = num(m2[2]);
      h.free_blocks = num(m2[3]);
      h.total_blocks = num(m2[4]);
    }
    ++i;
    s.heaps.push_back(h);
  }
  if (!complete && i >= lines.size()) return s;
  EXPECT_TRUE(i < lines.size() && std::regex_match(lines[i], kTotalsHeader))
      << "'" << (i < lines.size() ? lines[i] : std::string("<end>")) << "'";
  ++i;
  EXPECT_TRUE(i < lines.size() && std::regex_match(lines[i], m, kTotalsLine))
      << "'" << (i < lines.size() ? lines[i] : std::string("<end>")) << "'";
  if (m.size() == 5) {
    s.has_totals = true;
    s.free = num(m[1]);
    s.allocated = num(m[2]);
    s.min_free = num(m[3]);
    s.largest = num(m[4]);
  }
  ++i;
  return s;
}

/// The arithmetic every report obeys (device samples included): totals are the sums of free,
/// allocated and min_free and the maximum of largest_free_block; per heap, alloc_blocks +
/// free_blocks == total_blocks, and no figure exceeds len.
void check_summary_rules(const Summary &s) {
  long long free = 0, allocated = 0, min_free = 0, largest = 0;
  for (const Summary::Heap &h : s.heaps) {
    SCOPED_TRACE("heap at " + std::to_string(h.at));
    EXPECT_EQ(h.alloc_blocks + h.free_blocks, h.total_blocks);
    EXPECT_LE(h.free, h.len);
    EXPECT_LE(h.allocated, h.len);
    EXPECT_LE(h.largest, h.free);
    EXPECT_LE(h.min_free, h.len);
    EXPECT_GE(h.free, 0);
    EXPECT_GE(h.allocated, 0);
    free += h.free;
    allocated += h.allocated;
    min_free += h.min_free;
    largest = std::max(largest, h.largest);
  }
  if (!s.has_totals) return;
  EXPECT_EQ(s.free, free);
  EXPECT_EQ(s.allocated, allocated);
  EXPECT_EQ(s.min_free, min_free);
  EXPECT_EQ(s.largest, largest);
}

/// One parsed dump: heaps with their blocks.
struct Dump {
  struct Block {
    std::uint32_t at;
    long long size;
    bool free;
  };
  struct Heap {
    std::uint32_t at;
    std::vector<Block> blocks;
  };
  std::vector<Heap> heaps;
};

Dump parse_dump(const std::vector<std::string> &lines) {
  Dump d;
  std::smatch m;
  for (const std::string &l : lines) {
    if (std::regex_match(l, m, kDumpHeap)) {
      d.heaps.push_back(
          Dump::Heap{static_cast<std::uint32_t>(std::stoul(m[1].str(), nullptr, 16)), {}});
    } else if (std::regex_match(l, m, kDumpBlock)) {
      EXPECT_FALSE(d.heaps.empty()) << "block before any heap line: '" << l << "'";
      if (d.heaps.empty()) continue;
      d.heaps.back().blocks.push_back(
          Dump::Block{static_cast<std::uint32_t>(std::stoul(m[1].str(), nullptr, 16)), num(m[2]),
                      m[3].str() == "Yes"});
    } else {
      ADD_FAILURE() << "line matches no dump format: '" << l << "'";
    }
  }
  return d;
}

/// What every TLSF dump shows (ESP-IDF's device output included): blocks in address order, each
/// starting right after the previous one's data and 4-byte header (data + size + 4), and never two
/// free blocks side by side (immediate coalescing).
void check_dump_rules(const Dump &d) {
  for (const Dump::Heap &h : d.heaps) {
    SCOPED_TRACE("heap at " + std::to_string(h.at));
    EXPECT_FALSE(h.blocks.empty());
    for (std::size_t k = 1; k < h.blocks.size(); ++k) {
      const Dump::Block &a = h.blocks[k - 1], &b = h.blocks[k];
      EXPECT_EQ(static_cast<long long>(b.at), static_cast<long long>(a.at) + a.size + 4)
          << "block " << k;
      EXPECT_FALSE(a.free && b.free) << "adjacent free blocks at " << k;
    }
    if (!h.blocks.empty()) {
      EXPECT_GT(h.blocks.front().at, h.at);
    }
  }
}

// ================================================================================================
// The expected text, rebuilt from heap_caps_walk and each heap's own statistics
// ================================================================================================

struct WalkedHeap {
  std::uintptr_t start = 0, end = 0;
  std::vector<walker_block_info_t> blocks;
};

bool collect(walker_heap_into_t h, walker_block_info_t b, void *user) {
  auto &heaps = *static_cast<std::vector<WalkedHeap> *>(user);
  if (heaps.empty() || heaps.back().start != static_cast<std::uintptr_t>(h.start)) {
    heaps.emplace_back();
    heaps.back().start = static_cast<std::uintptr_t>(h.start);
    heaps.back().end = static_cast<std::uintptr_t>(h.end);
  }
  heaps.back().blocks.push_back(b);
  return true;
}

std::vector<WalkedHeap> walk(std::uint32_t caps) {
  std::vector<WalkedHeap> out;
  heap_caps_walk(caps, collect, &out);
  return out;
}

unsigned chip32(std::uintptr_t host) {
  return static_cast<unsigned>(capheap_host_to_chip(reinterpret_cast<void *>(host)));
}
unsigned chip32(const void *host) {
  return static_cast<unsigned>(capheap_host_to_chip(host));
}

std::string fmt(const char *format, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char *format, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, format);
  std::vsnprintf(buf, sizeof buf, format, ap);
  va_end(ap);
  return buf;
}

/// The heap's own statistics (the registry's engine view), found by its start address.
capheap::HeapInfo heap_info_at(std::uintptr_t start) {
  capheap::Registry &reg = capheap::capi::registry();
  for (unsigned i = 0; i < reg.count(); ++i)
    if (reg.view(i).start == start) return reg.view(i).heap.info();
  ADD_FAILURE() << "no heap starts at " << start;
  return {};
}

std::string expected_heap_info(std::uint32_t caps) {
  std::string s = fmt("Heap summary for capabilities 0x%08X:\n", caps);
  long long free = 0, allocated = 0, min_free = 0, largest = 0;
  // Sizes and statistics use "has every requested bit": no heap has MALLOC_CAP_INVALID.
  const std::vector<WalkedHeap> heaps = (caps & kInv) != 0 ? std::vector<WalkedHeap>{} : walk(caps);
  for (const WalkedHeap &h : heaps) {
    long long used_bytes = 0, free_bytes = 0, used = 0, unused = 0;
    for (const walker_block_info_t &b : h.blocks) {
      if (b.used) {
        ++used;
        used_bytes += static_cast<long long>(b.size);
      } else {
        ++unused;
        free_bytes += static_cast<long long>(b.size) + 4;  // a free block's header is free memory
      }
    }
    const capheap::HeapInfo info = heap_info_at(h.start);
    // The walk and the heap's counters agree.
    EXPECT_EQ(static_cast<long long>(info.total_free_bytes), free_bytes);
    EXPECT_EQ(static_cast<long long>(info.total_allocated_bytes), used_bytes);
    EXPECT_EQ(static_cast<long long>(info.allocated_blocks), used);
    EXPECT_EQ(static_cast<long long>(info.free_blocks), unused);
    EXPECT_EQ(static_cast<long long>(info.total_blocks), used + unused);
    s += fmt("  At 0x%08x len %d free %d allocated %d min_free %d\n", chip32(h.start),
             static_cast<int>(h.end - h.start), static_cast<int>(free_bytes),
             static_cast<int>(used_bytes), static_cast<int>(info.minimum_free_bytes));
    s += fmt("    largest_free_block %d alloc_blocks %d free_blocks %d total_blocks %d\n",
             static_cast<int>(info.largest_free_block), static_cast<int>(used),
             static_cast<int>(unused), static_cast<int>(used + unused));
    free += free_bytes;
    allocated += used_bytes;
    min_free += static_cast<long long>(info.minimum_free_bytes);
    largest = std::max(largest, static_cast<long long>(info.largest_free_block));
  }
  s += "  Totals:\n";
  s += fmt("    free %d allocated %d min_free %d largest_free_block %d\n", static_cast<int>(free),
           static_cast<int>(allocated), static_cast<int>(min_free), static_cast<int>(largest));
  return s;
}

std::string expected_dump(std::uint32_t caps) {
  std::string s;
  for (const WalkedHeap &h : walk(caps)) {  // dump/walk: INVALID means every heap
    s += fmt("Showing data for heap: 0x%08x \n", chip32(h.start));
    for (const walker_block_info_t &b : h.blocks)
      s += fmt("Block 0x%08x data, size: %d bytes, Free: %s \n", chip32(b.ptr),
               static_cast<int>(b.size), b.used ? "No" : "Yes");
  }
  return s;
}

// ================================================================================================
// Fixture and workload
// ================================================================================================

unsigned test_seed() {
  if (const char *s = std::getenv("CAPHEAP_TEST_SEED")) return static_cast<unsigned>(std::atoi(s));
  return std::random_device{}();
}

class FormatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char *v : kEnvVars)
      unsetenv(v);
    capheap_host_deinit();
    g_out.clear();
  }
  void TearDown() override {
    for (void *p : live_)
      heap_caps_free(p);
    live_.clear();
    capheap_set_print_hook(nullptr);
    capheap_host_deinit();
  }

  void start(const char *chip, std::size_t psram, bool chip_addresses = true) {
    capheap_host_config_t cfg = CAPHEAP_HOST_CONFIG_DEFAULT;
    cfg.psram_size = psram;
    cfg.chip_addresses = chip_addresses;
    ASSERT_EQ(capheap_host_init(chip, &cfg), ESP_OK) << chip;
    capheap_set_print_hook(capture);
  }

  /// Allocations of assorted sizes and capabilities, then every third one freed: heaps with used
  /// and free blocks and lowered minimums. The seed is printed.
  void fragment() {
    const unsigned seed = test_seed();
    std::printf("[ seed     ] workload: CAPHEAP_TEST_SEED=%u\n", seed);
    std::mt19937 rng(seed);
    const std::uint32_t caps[] = {kD, k8, k32, kDma, kI, kX, kS, kD | kS, kI | k8};
    for (int i = 0; i < 120; ++i) {
      const std::size_t size = 1 + rng() % 3000;
      if (void *p = heap_caps_malloc(size, caps[rng() % (sizeof caps / sizeof caps[0])]))
        live_.push_back(p);
    }
    for (std::size_t i = 0; i < live_.size(); i += 3) {
      heap_caps_free(live_[i]);
      live_[i] = nullptr;
    }
  }

  std::vector<void *> live_;
};

const std::uint32_t kReportCaps[] = {
    0,    kD,       k8, k32, kX, kDma, kI, kS, kD | kS, kI | k8, kDma | kI, MALLOC_CAP_RTCRAM,
    kInv, 1u << 30,
};

/// Prints and dumps every kReportCaps mask and checks each against the rebuilt text, the format
/// expressions and the report rules.
void check_reports() {
  for (std::uint32_t caps : kReportCaps) {
    SCOPED_TRACE(fmt("caps 0x%08X", caps));
    const std::string info = printed(heap_caps_print_heap_info, caps);
    EXPECT_EQ(info, expected_heap_info(caps));
    const std::vector<std::string> lines = lines_of(info);
    std::size_t i = 0;
    ASSERT_FALSE(lines.empty());
    const Summary s = parse_summary(lines, i, true);
    EXPECT_EQ(i, lines.size()) << "extra lines after the totals";
    EXPECT_EQ(s.caps, caps);
    EXPECT_TRUE(s.has_totals);
    check_summary_rules(s);

    const std::string dump = printed(heap_caps_dump, caps);
    EXPECT_EQ(dump, expected_dump(caps));
    const Dump d = parse_dump(lines_of(dump));
    check_dump_rules(d);
    // The dump shows the heaps the report shows (every heap for INVALID), same order and places.
    if ((caps & kInv) == 0) {
      ASSERT_EQ(d.heaps.size(), s.heaps.size());
      for (std::size_t k = 0; k < d.heaps.size(); ++k) {
        EXPECT_EQ(d.heaps[k].at, s.heaps[k].at);
        long long used = 0, unused = 0;
        for (const Dump::Block &b : d.heaps[k].blocks)
          (b.free ? unused : used)++;
        EXPECT_EQ(used, s.heaps[k].alloc_blocks);
        EXPECT_EQ(unused, s.heaps[k].free_blocks);
      }
    }
  }
  EXPECT_EQ(printed([](std::uint32_t) { heap_caps_dump_all(); }, 0), expected_dump(kInv));
}

// ================================================================================================
// Reports of the simulator
// ================================================================================================

struct ChipCase {
  const char *chip;
  std::size_t psram;
};

class FormatChipTest : public FormatTest, public ::testing::WithParamInterface<ChipCase> {};

TEST_P(FormatChipTest, ReportsMatchTheRebuiltTextAndTheFormats) {
  ASSERT_NO_FATAL_FAILURE(start(GetParam().chip, GetParam().psram));
  check_reports();  // fresh chip: one free block per heap
  fragment();
  check_reports();
}

// A C caller (the ESP-IDF-only file) gets the same text.
TEST_P(FormatChipTest, CCallerPrintsTheSameText) {
  ASSERT_NO_FATAL_FAILURE(start(GetParam().chip, GetParam().psram));
  fragment();
  for (std::uint32_t caps : {0u, kD, kInv}) {
    g_out.clear();
    esp_only_print_and_dump(caps);
    EXPECT_EQ(g_out, expected_heap_info(caps) + expected_dump(caps)) << caps;
  }
}

INSTANTIATE_TEST_SUITE_P(Chips, FormatChipTest,
                         ::testing::Values(ChipCase{"esp32", 0}, ChipCase{"esp32", 4u << 20},
                                           ChipCase{"esp32s3", 0}, ChipCase{"esp32s3", 4u << 20}),
                         [](const ::testing::TestParamInfo<ChipCase> &i) {
                           return std::string(i.param.chip) + (i.param.psram ? "_psram" : "");
                         });

// Every bundled chip, fresh and fragmented.
TEST_F(FormatTest, EveryBundledChip) {
  const std::vector<std::string> chips = capheap::sim::list_chips();
  ASSERT_GE(chips.size(), 11u);
  for (const std::string &chip : chips) {
    SCOPED_TRACE(chip);
    ASSERT_NO_FATAL_FAILURE(start(chip.c_str(), 0));
    check_reports();
    fragment();
    check_reports();
    for (void *p : live_)
      heap_caps_free(p);
    live_.clear();
    capheap_host_deinit();
  }
}

// The exact lines of ESP32's boot heaps, and the same lines when the simulator cannot use the
// chip's addresses: reports still print 0x3ffae6e0..., not host addresses.
TEST_F(FormatTest, Esp32ReportsPrintChipAddressesWhereverTheChipIsMapped) {
  for (const bool at_chip : {true, false}) {
    SCOPED_TRACE(at_chip ? "mapped at chip addresses" : "mapped elsewhere");
    ASSERT_NO_FATAL_FAILURE(start("esp32", 0, at_chip));
    EXPECT_EQ(capheap_host_uses_chip_addresses(), at_chip);
    capheap::Registry &reg = capheap::capi::registry();
    if (!at_chip) {
      ASSERT_GT(reg.count(), 0u);
      EXPECT_NE(reg.view(0).start, 0x3FFAE6E0u);          // the host address differs...
      EXPECT_EQ(chip32(reg.view(0).start), 0x3FFAE6E0u);  // ...the chip address does not
    }
    const std::vector<std::string> lines = lines_of(printed(heap_caps_print_heap_info, 0));
    // The heap lines, each the first two pairs of a heap's first line, then a fresh heap's free
    // block is the whole heap minus its control structure: checked through the rebuilt text below.
    const char *const want_prefix[] = {
        "  At 0x3ffae6e0 len 6432 free ",  "  At 0x3ffb2ec8 len 184632 free ",
        "  At 0x3ffe0440 len 15072 free ", "  At 0x3ffe4350 len 113840 free ",
        "  At 0x4008944c len 93108 free ",
    };
    ASSERT_EQ(lines.size(), 1 + 2 * 5 + 2u);
    EXPECT_EQ(lines[0], "Heap summary for capabilities 0x00000000:");
    for (std::size_t k = 0; k < 5; ++k)
      EXPECT_EQ(lines[1 + 2 * k].rfind(want_prefix[k], 0), 0u) << lines[1 + 2 * k];
    EXPECT_EQ(lines[11], "  Totals:");
    EXPECT_EQ(printed(heap_caps_print_heap_info, 0), expected_heap_info(0));

    const std::vector<std::string> dump = lines_of(printed(heap_caps_dump, kI | k8));
    ASSERT_FALSE(dump.empty());
    EXPECT_EQ(dump[0], "Showing data for heap: 0x3ffae6e0 ");
    fragment();
    check_reports();
    for (void *p : live_)
      heap_caps_free(p);
    live_.clear();
    capheap_set_print_hook(nullptr);
    capheap_host_deinit();
  }
}

// ================================================================================================
// The device's own output
// ================================================================================================

/// The samples file, split into sections by their "S<n>" headers (a line "S<n>" after a line of
/// dashes); each section's lines after its header block.
std::vector<std::pair<std::string, std::vector<std::string>>> sample_sections(bool &found) {
  std::vector<std::pair<std::string, std::vector<std::string>>> out;
  std::ifstream in(CAPHEAP_DEVICE_SAMPLES);
  found = static_cast<bool>(in);
  std::string line, prev;
  const std::regex id("^S[0-9]+$");
  while (std::getline(in, line)) {
    if (std::regex_match(line, id) && !prev.empty() &&
        prev.find_first_not_of('-') == std::string::npos) {
      out.push_back({line, {}});
    } else if (!out.empty()) {
      out.back().second.push_back(line);
    }
    prev = line;
  }
  return out;
}

std::vector<std::string> section(const char *name, bool &found) {
  for (auto &s : sample_sections(found))
    if (s.first == name) return s.second;
  return {};
}

bool is_truncation_note(const std::string &l) {
  return l.rfind("[[NOTE: truncated", 0) == 0;
}

/// The "Heap summary" reports of a sample section. Reporter markup is removed as the samples' notes
/// describe: Markdown bold markers "**" around a line (S8). A line followed by a truncation note
/// was cut by the stored copy and is dropped; its report is then incomplete.
std::vector<Summary> sample_summaries(const std::vector<std::string> &raw,
                                      std::size_t *lines_checked, bool *truncated) {
  std::vector<std::string> lines;
  *truncated = false;
  for (std::size_t k = 0; k < raw.size(); ++k) {
    std::string l = raw[k];
    if (is_truncation_note(l)) continue;
    if (k + 1 < raw.size() && is_truncation_note(raw[k + 1])) {
      *truncated = true;
      continue;
    }
    // Markdown bold around the whole text (leading indentation kept).
    const std::size_t first = l.find_first_not_of(' ');
    if (first != std::string::npos && l.compare(first, 2, "**") == 0 && l.size() >= first + 4 &&
        l.compare(l.size() - 2, 2, "**") == 0)
      l = l.substr(0, first) + l.substr(first + 2, l.size() - first - 4);
    lines.push_back(l);
  }
  std::vector<Summary> out;
  *lines_checked = 0;
  for (std::size_t i = 0; i < lines.size();) {
    if (lines[i].rfind("Heap summary for capabilities", 0) != 0) {
      ++i;
      continue;
    }
    // A report is the header and the lines after it that have one of the report's formats; it
    // is complete when it ends with the totals line (else the stored copy truncated it).
    const std::size_t begin = i;
    std::size_t end = i + 1;
    while (end < lines.size() &&
           (std::regex_match(lines[end], kHeapLine) || std::regex_match(lines[end], kHeapLine2) ||
            std::regex_match(lines[end], kTotalsHeader)))
      ++end;
    const bool complete = end < lines.size() && std::regex_match(lines[end], kTotalsLine);
    if (complete) ++end;
    EXPECT_EQ(complete, !*truncated) << "a report is cut exactly where the stored copy was";
    std::vector<std::string> report(lines.begin() + static_cast<std::ptrdiff_t>(begin),
                                    lines.begin() + static_cast<std::ptrdiff_t>(end));
    std::size_t j = 0;
    out.push_back(parse_summary(report, j, complete));
    EXPECT_EQ(j, report.size());
    *lines_checked += report.size();
    i = end;
  }
  return out;
}

// S6 (ESP32-S2, two reports), S7 (ESP32 + PSRAM, truncated after nine heaps), S8 (ESP32, five
// heaps, "**" markers): every line matches the format expressions and every complete report obeys
// the totals arithmetic.
TEST(FormatSamples, HeapSummarySamplesMatchTheFormats) {
  bool found = false;
  const std::vector<std::string> s6 = section("S6", found);
  if (!found) GTEST_SKIP() << "no device samples at " << CAPHEAP_DEVICE_SAMPLES;
  std::size_t checked = 0;
  bool truncated = false;

  std::vector<Summary> r = sample_summaries(s6, &checked, &truncated);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_FALSE(truncated);
  EXPECT_EQ(checked, 2 * (1 + 2 * 2 + 2u));
  for (const Summary &s : r) {
    EXPECT_EQ(s.caps, 0x804u);
    ASSERT_EQ(s.heaps.size(), 2u);
    EXPECT_TRUE(s.has_totals);
    check_summary_rules(s);
  }
  EXPECT_EQ(r[1].heaps[0].at, 0x3ffcf6d8u);
  EXPECT_EQ(r[1].free, 140600);

  r = sample_summaries(section("S7", found), &checked, &truncated);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_TRUE(truncated);
  EXPECT_EQ(r[0].caps, 0x4u);
  EXPECT_EQ(r[0].heaps.size(), 9u);
  EXPECT_FALSE(r[0].has_totals);
  EXPECT_EQ(checked, 1 + 2 * 9u);
  check_summary_rules(r[0]);

  r = sample_summaries(section("S8", found), &checked, &truncated);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_FALSE(truncated);
  EXPECT_EQ(r[0].heaps.size(), 5u);
  EXPECT_TRUE(r[0].has_totals);
  EXPECT_EQ(r[0].largest, 32768);
  EXPECT_EQ(checked, 1 + 2 * 5 + 2u);
  check_summary_rules(r[0]);
}

// The ESP32 D/IRAM heaps the simulator builds print the same "At ... len ..." as the device in S7
// (an ESP32 with the default static data and dual-core ROM reservations).
TEST_F(FormatTest, Esp32DiramHeapLinesMatchTheDeviceSample) {
  bool found = false;
  const std::vector<std::string> s7 = section("S7", found);
  if (!found) GTEST_SKIP() << "no device samples at " << CAPHEAP_DEVICE_SAMPLES;
  std::size_t checked = 0;
  bool truncated = false;
  const std::vector<Summary> device = sample_summaries(s7, &checked, &truncated);
  ASSERT_EQ(device.size(), 1u);
  ASSERT_NO_FATAL_FAILURE(start("esp32", 0));
  std::size_t i = 0;
  const Summary ours = parse_summary(lines_of(printed(heap_caps_print_heap_info, k8)), i, true);
  int matched = 0;
  for (const Summary::Heap &d : device[0].heaps)
    for (const Summary::Heap &o : ours.heaps)
      if (d.at == o.at) {
        EXPECT_EQ(o.len, d.len) << std::hex << d.at;
        ++matched;
      }
  EXPECT_EQ(matched, 2);  // 0x3ffe0440 len 15072 and 0x3ffe4350 len 113840
}

// S10: a TLSF heap_caps_dump from a device. The reporter kept it inside a C comment ("/* " before
// the first line) and annotated blocks by hand ("      --> WIFI", "      .."): those are removed.
// The file also lost each line's trailing space (the format's "%s " / "%p "), which every line of
// the sample shows; it is restored before matching the exact expressions.
TEST(FormatSamples, DumpSampleMatchesTheFormats) {
  bool found = false;
  const std::vector<std::string> raw = section("S10", found);
  if (!found) GTEST_SKIP() << "no device samples at " << CAPHEAP_DEVICE_SAMPLES;
  std::vector<std::string> lines;
  bool in_dump = false;
  for (std::string l : raw) {
    if (l.rfind("/* Showing data for heap:", 0) == 0) {
      in_dump = true;
      l = l.substr(3);  // the comment opener
    } else if (l == "*/") {
      in_dump = false;
    }
    if (!in_dump) continue;
    for (const char *flag : {"Free: Yes", "Free: No"}) {
      const std::size_t at = l.find(flag);
      if (at != std::string::npos) l.resize(at + std::strlen(flag));  // drop the annotation
    }
    EXPECT_EQ(l.find_last_not_of(' '), l.size() - 1) << "trailing space kept in '" << l << "'";
    lines.push_back(l + " ");
  }
  ASSERT_EQ(lines.size(), 1 + 28u);
  const Dump d = parse_dump(lines);
  ASSERT_EQ(d.heaps.size(), 1u);
  EXPECT_EQ(d.heaps[0].at, 0x3f802fa8u);
  ASSERT_EQ(d.heaps[0].blocks.size(), 28u);
  EXPECT_EQ(d.heaps[0].blocks[3].free, true);
  EXPECT_EQ(d.heaps[0].blocks[27].size, 2379020);
  check_dump_rules(d);
}

}  // namespace
