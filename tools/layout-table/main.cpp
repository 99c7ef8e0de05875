// capheap_layout_table — turns a chip layout (bundled name or JSON path) into the C constant tables
// a firmware build compiles in and hands to capheap_set_layout() before heap_caps_init().
//
//   capheap_layout_table esp32s3 > esp32s3_layout.c
//   capheap_layout_table --symbol my_board --psram 8M --static-data 96K board.json > layout.c
//
// Exit status: 0 on success, 1 for a layout error (printed as FILE: json.path: message) or when
// the table cannot be written, 2 for usage errors.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>

#include "sim/layout.hpp"
#include "sim/size_text.hpp"

namespace {

int usage() {
  std::fprintf(stderr,
               "usage: capheap_layout_table [--symbol NAME] [--psram SIZE] [--static-data SIZE]\n"
               "                            [--rtc-heap 0|1] [--memprot 0|1] CHIP|LAYOUT.json\n"
               "SIZE takes K/M suffixes. Prints C source defining `const capheap_layout_t NAME`\n"
               "(default NAME: <chip>_layout, '-' as '_', chip_ before a leading digit).\n"
               "Bundled chips:");
  for (const std::string &c : capheap::sim::list_chips())
    std::fprintf(stderr, " %s", c.c_str());
  std::fprintf(stderr, "\n");
  return 2;
}

std::optional<std::size_t> parse_size(const char *text) {
  std::size_t v = 0;
  if (!capheap::sim::parse_byte_size(text, &v)) return std::nullopt;
  return v;
}

std::optional<bool> parse_bool(const char *text) {
  if (std::strcmp(text, "1") == 0) return true;
  if (std::strcmp(text, "0") == 0) return false;
  return std::nullopt;
}

// <chip>_layout as a C identifier: chip names may contain '-' and start with a digit
// ("my-board", "3d-printer"), which a symbol may not: '-' becomes '_', a leading digit gets
// "chip_" in front ("my_board_layout", "chip_3d_printer_layout").
std::string default_symbol(const std::string &chip) {
  std::string symbol = chip + "_layout";
  for (char &c : symbol)
    if (c == '-') c = '_';
  if (symbol[0] >= '0' && symbol[0] <= '9') symbol.insert(0, "chip_");
  return symbol;
}

}  // namespace

int main(int argc, char **argv) {
  capheap::sim::LayoutOptions options;
  std::string symbol;
  const char *chip = nullptr;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--symbol" && has_value) {
      symbol = argv[++i];
    } else if (arg == "--psram" && has_value) {
      options.psram_size = parse_size(argv[++i]);
      if (!options.psram_size) return usage();
    } else if (arg == "--static-data" && has_value) {
      options.static_data_size = parse_size(argv[++i]);
      if (!options.static_data_size) return usage();
    } else if (arg == "--rtc-heap" && has_value) {
      options.rtc_fast_heap = parse_bool(argv[++i]);
      if (!options.rtc_fast_heap) return usage();
    } else if (arg == "--memprot" && has_value) {
      options.memprot = parse_bool(argv[++i]);
      if (!options.memprot) return usage();
    } else if (arg == "-h" || arg == "--help" || (!arg.empty() && arg[0] == '-') ||
               chip != nullptr) {
      return usage();
    } else {
      chip = argv[i];
    }
  }
  if (chip == nullptr) return usage();
  const capheap::sim::LoadResult r = capheap::sim::load_layout(chip, options);
  if (!r.ok()) {
    std::fprintf(stderr, "capheap_layout_table: %s\n", r.error.c_str());
    return 1;
  }
  if (symbol.empty()) symbol = default_symbol(r.layout->chip());
  try {
    const std::string text = capheap::sim::generate_c_table(*r.layout, symbol);
    // A full disk or a closed pipe must not pass for a generated table (exit status 0 with a
    // truncated or empty file).
    errno = 0;
    if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() ||
        std::fflush(stdout) != 0 || std::ferror(stdout) != 0) {
      std::fprintf(stderr, "capheap_layout_table: cannot write the table: %s\n",
                   errno != 0 ? std::strerror(errno) : "write error");
      return 1;
    }
  } catch (const std::invalid_argument &e) {
    std::fprintf(stderr, "capheap_layout_table: %s\n", e.what());
    return 2;
  }
  return 0;
}
