// layout_fuzz.cpp — fuzzer of the chip layout loader (src/sim/layout.hpp, docs/layouts.md).
//
// Input: JSON text; if it does not start with '{', its first byte chooses build options and the
// rest is the JSON. No crash, hang, leak or escaping exception; an error is one line
// "fuzz.json: JSON.PATH: message" or "fuzz.json: message" (JSON syntax errors carry
// "at line L, column C"); a layout that loads has sorted reserved ranges and generates a C table.
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_common.hpp"
#include "sim/layout.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  capheap_fuzz::count_execution("layout_fuzz");
  namespace sim = capheap::sim;
  std::string_view text(reinterpret_cast<const char *>(data), size);
  sim::LayoutOptions options;
  if (!text.empty() && text.front() != '{') {
    const auto o = static_cast<std::uint8_t>(text.front());
    text.remove_prefix(1);
    if ((o & 1) != 0) options.psram_size = (std::size_t{o} >> 4) * 65536u + (o & 2u);
    if ((o & 4) != 0) options.static_data_size = std::size_t{o} * 1024u;
    if ((o & 8) != 0) options.memprot = (o & 16) != 0;
    if ((o & 32) != 0) options.rtc_fast_heap = (o & 64) != 0;
    if ((o & 128) != 0) options.iram_code_size = 4096;
  }
  capheap_fuzz::count_operation();
  const sim::LoadResult r = sim::parse_layout(text, "fuzz.json", options);
  if (!r.ok()) {
    FUZZ_CHECK(!r.layout.has_value(), "layout error with a layout");
    const std::string prefix = "fuzz.json: ";
    FUZZ_CHECK(r.error.compare(0, prefix.size(), prefix) == 0,
               "layout error does not start with FILE: ");
    FUZZ_CHECK(r.error.size() > prefix.size(), "layout error without a message");
    FUZZ_CHECK(r.error.find('\n') == std::string::npos, "layout error spans several lines");
    if (r.error.compare(prefix.size(), 12, "invalid JSON") == 0)
      FUZZ_CHECK(r.error.find(" at line ") != std::string::npos, "JSON error without a line");
    return 0;
  }
  FUZZ_CHECK(r.layout.has_value(), "layout loaded without a result");
  const capheap_layout_t &c = r.layout->c_layout();
  // Regions stay in file order (the heap list order, docs/layouts.md §5); reserved ranges are
  // sorted.
  for (std::size_t i = 1; i < c.reserved_count; ++i)
    FUZZ_CHECK(c.reserved[i - 1].start <= c.reserved[i].start, "reserved ranges not sorted");
  capheap_fuzz::count_operation();
  const std::string table = sim::generate_c_table(*r.layout, "fuzz_layout");
  FUZZ_CHECK(table.find("const capheap_layout_t fuzz_layout") != std::string::npos,
             "generated table lacks its symbol");
  return 0;
}
