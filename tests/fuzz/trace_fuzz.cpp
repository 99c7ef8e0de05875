// trace_fuzz.cpp — fuzzer of the trace parser (src/sim/trace.hpp, docs/trace-format.md).
//
// Any text: no crash, hang or leak; an error reads "fuzz.trace:LINE: message" with LINE the
// 1-based line of the error; a trace that parses survives write_trace -> parse_trace unchanged.
// The capability-mask and byte-size parsers get the first line as well.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "fuzz_common.hpp"
#include "sim/caps_names.hpp"
#include "sim/size_text.hpp"
#include "sim/trace.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  capheap_fuzz::count_execution("trace_fuzz");
  const std::string_view text(reinterpret_cast<const char *>(data), size);
  namespace sim = capheap::sim;

  capheap_fuzz::count_operation();
  const sim::ParseResult r = sim::parse_trace(text, "fuzz.trace");
  if (!r.ok()) {
    const std::string prefix = "fuzz.trace:" + std::to_string(r.error_line) + ": ";
    FUZZ_CHECK(r.error_line >= 1, "trace error without a line number");
    std::size_t lines = 1;
    for (char c : text)
      lines += c == '\n' ? 1 : 0;
    FUZZ_CHECK(r.error_line <= lines, "trace error line past the end of the text");
    FUZZ_CHECK(r.error.compare(0, prefix.size(), prefix) == 0,
               "trace error does not start with FILE:LINE: ");
    FUZZ_CHECK(r.error.size() > prefix.size(), "trace error without a message");
    FUZZ_CHECK(r.error.find('\n') == std::string::npos, "trace error spans several lines");
  } else {
    capheap_fuzz::count_operation();
    const std::string written = sim::write_trace(r.trace);
    const sim::ParseResult again = sim::parse_trace(written, "written.trace");
    if (!again.ok()) std::fprintf(stderr, "%s\n", again.error.c_str());
    FUZZ_CHECK(again.ok(), "write_trace output does not parse");
    FUZZ_CHECK(again.trace == r.trace, "write_trace -> parse_trace changed the trace");
    const sim::TraceStats stats = sim::compute_stats(r.trace);
    FUZZ_CHECK(stats.ops == r.trace.ops.size(), "compute_stats: op count differs");
    for (const sim::Op &op : r.trace.ops)
      FUZZ_CHECK(op.slot < r.trace.slot_count() && op.line >= 1, "op with a bad slot or line");
  }

  // The first line through the capability and size parsers.
  const std::string first(text.substr(0, std::min(text.find('\n'), std::size_t{64})));
  capheap_fuzz::count_operation();
  const sim::CapsParse caps = sim::parse_caps(first);
  if (caps.ok())
    FUZZ_CHECK(sim::parse_caps(sim::format_caps(caps.caps)).caps == caps.caps,
               "format_caps does not round-trip");
  else
    FUZZ_CHECK(caps.caps == 0 && caps.error.find('\n') == std::string::npos, "bad caps error");
  if (first.find('\0') == std::string::npos) {
    std::size_t bytes = 12345;
    if (!sim::parse_byte_size(first.c_str(), &bytes))
      FUZZ_CHECK(bytes == 12345, "parse_byte_size changed its output on failure");
  }
  return 0;
}
