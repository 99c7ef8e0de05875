// sim/layout.hpp — chip memory layouts: loading layouts/<chip>.json into a capheap_layout_t.
//
// A layout file describes one chip: memory types with three priority levels of MALLOC_CAP_*
// masks, regions, reserved ranges, the D/IRAM alias window, external RAM and alignment facts,
// plus build options (PSRAM size, static data size, RTC fast memory as heap, ...) with the chip's
// defaults. docs/layouts.md documents the format and every error message. This header is the
// programming interface:
//
//   LoadResult r = load_layout("esp32s3", LayoutOptions{});
//   if (!r.ok()) { std::fprintf(stderr, "%s\n", r.error.c_str()); return 1; }
//   const capheap_layout_t &chip = r.layout->c_layout();
//
// Options are resolved at load time: regions and reserved ranges guarded by a `when` condition are
// kept or dropped, option-sized reserved ranges (static data) get their size. The regions and the
// reserved ranges stay separate in the result, as capheap_layout_t wants: the runtime subtracts
// the reserved ranges when it builds heaps.
//
// Host-only. The load functions never throw for bad input; they report it as a value
// (LoadResult::error). Only std::bad_alloc can escape.
#ifndef CAPHEAP_SIM_LAYOUT_HPP
#define CAPHEAP_SIM_LAYOUT_HPP

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "capheap_layout.h"

namespace capheap::sim {

/// Build options that change a chip's layout. An empty field keeps the chip's default (the
/// file's `options` object, or the loader default noted below). Setting an option that the chip's
/// file does not declare is an error (psram_size, extmem_threshold and internal_reserve are
/// declared for every chip).
struct LayoutOptions {
  /// Bytes of external RAM (PSRAM, SDRAM) present. 0 = none. Loader default 0. Must not exceed
  /// the file's ext_ram.max_size; must be a multiple of 4.
  std::optional<std::size_t> psram_size;
  /// Bytes of the application's static data (.data/.bss, and on chips whose code runs from the
  /// same SRAM, the IRAM code before it), reserved from the start of the main RAM. Rounded up to
  /// a multiple of 4.
  std::optional<std::size_t> static_data_size;
  /// Bytes of IRAM code on chips with a separate IRAM region (ESP32). Rounded up to a multiple
  /// of 4.
  std::optional<std::size_t> iram_code_size;
  /// CONFIG_SPIRAM_MALLOC_ALWAYSINTERNAL: malloc() requests up to this size stay in internal RAM
  /// when PSRAM is used. Loader default 16384.
  std::optional<std::size_t> extmem_threshold;
  /// CONFIG_SPIRAM_MALLOC_RESERVE_INTERNAL: internal RAM kept for DMA/internal requests when
  /// PSRAM is used. Loader default 32768.
  std::optional<std::size_t> internal_reserve;
  /// CONFIG_ESP_SYSTEM_ALLOW_RTC_FAST_MEM_AS_HEAP: RTC fast / LP memory becomes a heap.
  std::optional<bool> rtc_fast_heap;
  /// Memory protection (ESP32-S2/S3/C3 CONFIG_ESP_SYSTEM_MEMPROT_FEATURE; ESP32-C6/H2/P4
  /// CONFIG_ESP_SYSTEM_PMP_IDRAM_SPLIT): D/IRAM is handed out as data-only memory.
  std::optional<bool> memprot;
};

/// One resolved option, for listings and generated comments.
struct LayoutOptionValue {
  std::string name;     ///< e.g. "static_data_size"
  std::uint64_t value;  ///< the number, or 0/1 for a boolean option
  bool is_bool;         ///< true for rtc_fast_heap and memprot
  bool is_default;      ///< true if the value is the chip's default (not set in LayoutOptions)
};

/// A loaded chip layout. It owns every string and array that c_layout() points into; copies share
/// the same immutable data, so pointers taken from c_layout() stay valid as long as any copy lives.
class ChipLayout {
 public:
  /// The layout as the C runtime takes it (see capheap_layout.h): types, regions in file order
  /// (the heap list order), reserved ranges sorted by start address (options already applied),
  /// D/IRAM window, external RAM and alignment facts.
  const capheap_layout_t &c_layout() const noexcept;

  const std::string &chip() const noexcept;         ///< "esp32s3"
  const std::string &description() const noexcept;  ///< one line, may be empty
  const std::string &path() const noexcept;         ///< the file it was loaded from

  /// Bytes of external RAM to add at run time (0 = none). When non-zero, the runtime adds
  /// [ext_ram_start, ext_ram_start + psram_size()) with the ext_ram_type memory type.
  std::size_t psram_size() const noexcept;
  std::size_t static_data_size() const noexcept;  ///< 0 if the chip has no such option
  std::size_t iram_code_size() const noexcept;    ///< 0 if the chip has no such option
  std::size_t extmem_threshold() const noexcept;  ///< CONFIG_SPIRAM_MALLOC_ALWAYSINTERNAL
  std::size_t internal_reserve() const noexcept;  ///< CONFIG_SPIRAM_MALLOC_RESERVE_INTERNAL
  bool rtc_fast_heap() const noexcept;            ///< false if the chip has no such option
  bool memprot() const noexcept;                  ///< false if the chip has no such option
  /// The chip's APP_USABLE_DRAM_END (ESP-IDF: SOC_ROM_STACK_START - SOC_ROM_STACK_SIZE), where
  /// the file records it.
  std::optional<std::uintptr_t> app_usable_dram_end() const noexcept;
  /// Every option the chip declares, in a fixed order (psram_size, static_data_size,
  /// iram_code_size, extmem_threshold, internal_reserve, rtc_fast_heap, memprot), declared ones
  /// only.
  const std::vector<LayoutOptionValue> &options() const noexcept;
  /// Index of a memory type by name, or -1.
  int find_type(std::string_view name) const noexcept;

  struct Data;  ///< implementation detail (layout.cpp)

 private:
  explicit ChipLayout(std::shared_ptr<const Data> data) noexcept : data_(std::move(data)) {}
  std::shared_ptr<const Data> data_;
  friend struct LayoutLoader;
};

/// Outcome of load_layout / parse_layout: the layout, or the first error.
struct LoadResult {
  std::optional<ChipLayout> layout;  ///< set on success
  /// "FILE: JSON.PATH: message" (or "FILE: message"); empty on success. Messages are listed in
  /// docs/layouts.md, e.g. `layouts/foo.json: regions[3].type: unknown memory type 'DRMA'`.
  std::string error;
  bool ok() const noexcept { return error.empty(); }
};

/// Loads a chip layout.
/// `chip_or_path`: a bare chip name ("esp32s3") is looked up as <name>.json in the directories of
///   layout_search_path(), then among the layouts compiled into the library (every bundled
///   layouts/*.json); anything containing '/' or ending in ".json" is a file path.
/// Effects: reads and validates the file, applies `options`.
/// Returns: the layout, or an error naming the file and the JSON path of the bad field. An
///   unknown chip gives "unknown chip 'NAME' (searched: DIR, DIR, ...; built in: esp32 ...)"; an
///   unreadable file
///   "PATH: cannot open: REASON".
LoadResult load_layout(std::string_view chip_or_path, const LayoutOptions &options = {});

/// Parses layout JSON text; `filename` is used only in messages. `expected_chip`, if not empty,
/// must equal the file's `chip` field (load_layout passes the name it looked up).
LoadResult parse_layout(std::string_view json_text, std::string_view filename,
                        const LayoutOptions &options = {}, std::string_view expected_chip = {});

/// The directories searched for <chip>.json, in order: each entry of the environment variable
/// CAPHEAP_LAYOUT_DIR (separated by ':'), the source tree's layouts/ directory (compile-time
/// CAPHEAP_LAYOUT_SOURCE_DIR), the installed share directory (compile-time
/// CAPHEAP_LAYOUT_INSTALL_DIR, <datadir>/capheap/layouts). Directories that do not exist are
/// listed too (the caller may print them).
std::vector<std::string> layout_search_path();

/// Names of the built-in chips and of the chips found on the search path (<name>.json files),
/// sorted, without duplicates.
std::vector<std::string> list_chips();

/// Generates C source that defines `const capheap_layout_t SYMBOL` (plus static arrays named
/// SYMBOL_types, SYMBOL_regions, SYMBOL_reserved) holding `layout` — the constant tables a
/// firmware build compiles in and passes to capheap_set_layout. The source includes
/// "capheap_layout.h" and starts with a comment naming the chip, the file and every option value.
/// Throws std::invalid_argument if `symbol` is not a C identifier.
std::string generate_c_table(const ChipLayout &layout, std::string_view symbol);

}  // namespace capheap::sim

#endif  // CAPHEAP_SIM_LAYOUT_HPP
