// sim/caps_names.cpp — MALLOC_CAP_* name table and mask parsing/formatting.
#include "sim/caps_names.hpp"

#include "capheap/caps.hpp"

#include <cstdio>

namespace capheap::sim {

// The names come from the caps layer's table (capheap::kCapNames), the one list in the project.
namespace {
constexpr std::size_t kCapNameCount = sizeof capheap::kCapNames / sizeof capheap::kCapNames[0];
static_assert(kCapNameCount == kCapsNameCount, "kCapsNameCount must match capheap::kCapNames");
}  // namespace

const CapsName kCapsNames[kCapsNameCount] = {
#define CAPHEAP_CAP_ENTRY(i) \
  { capheap::kCapNames[i].name, capheap::kCapNames[i].bit }
    CAPHEAP_CAP_ENTRY(0),  CAPHEAP_CAP_ENTRY(1),  CAPHEAP_CAP_ENTRY(2),  CAPHEAP_CAP_ENTRY(3),
    CAPHEAP_CAP_ENTRY(4),  CAPHEAP_CAP_ENTRY(5),  CAPHEAP_CAP_ENTRY(6),  CAPHEAP_CAP_ENTRY(7),
    CAPHEAP_CAP_ENTRY(8),  CAPHEAP_CAP_ENTRY(9),  CAPHEAP_CAP_ENTRY(10), CAPHEAP_CAP_ENTRY(11),
    CAPHEAP_CAP_ENTRY(12), CAPHEAP_CAP_ENTRY(13), CAPHEAP_CAP_ENTRY(14), CAPHEAP_CAP_ENTRY(15),
    CAPHEAP_CAP_ENTRY(16), CAPHEAP_CAP_ENTRY(17), CAPHEAP_CAP_ENTRY(18), CAPHEAP_CAP_ENTRY(19),
    CAPHEAP_CAP_ENTRY(20), CAPHEAP_CAP_ENTRY(21), CAPHEAP_CAP_ENTRY(22), CAPHEAP_CAP_ENTRY(23),
#undef CAPHEAP_CAP_ENTRY
};

std::optional<std::uint32_t> caps_bit(std::string_view name) noexcept {
  if (name.size() > kCapsPrefix.size() && name.substr(0, kCapsPrefix.size()) == kCapsPrefix) {
    name.remove_prefix(kCapsPrefix.size());
  }
  for (const CapsName &entry : kCapsNames) {
    if (name == entry.name) return entry.value;
  }
  return std::nullopt;
}

namespace {

int digit_value(char c, unsigned base) noexcept {
  int v = -1;
  if (c >= '0' && c <= '9') {
    v = c - '0';
  } else if (base == 16 && c >= 'a' && c <= 'f') {
    v = c - 'a' + 10;
  } else if (base == 16 && c >= 'A' && c <= 'F') {
    v = c - 'A' + 10;
  }
  return v;
}

enum class NumberParse { kOk, kNotNumber, kTooBig };

// Parses a whole term as a 32-bit number (0x-prefixed hex or decimal).
NumberParse parse_caps_number(std::string_view term, std::uint32_t &out) noexcept {
  unsigned base = 10;
  if (term.size() > 2 && term[0] == '0' && (term[1] == 'x' || term[1] == 'X')) {
    base = 16;
    term.remove_prefix(2);
  }
  if (term.empty()) return NumberParse::kNotNumber;
  std::uint64_t value = 0;
  bool too_big = false;
  for (char c : term) {
    const int d = digit_value(c, base);
    if (d < 0) return NumberParse::kNotNumber;
    value = value * base + static_cast<unsigned>(d);
    if (value > 0xFFFFFFFFu) too_big = true;  // keep scanning: a later non-digit wins
    if (too_big) value = 0x100000000u;
  }
  if (too_big) return NumberParse::kTooBig;
  out = static_cast<std::uint32_t>(value);
  return NumberParse::kOk;
}

// A term or mask in a message: quoted, cut after 64 bytes as the trace parser quotes tokens
// (docs/trace-format.md), so that a megabyte of junk after `caps=` gives a one-line error.
std::string quoted(std::string_view s) {
  constexpr std::size_t kQuoteMax = 64;
  if (s.size() <= kQuoteMax) return "'" + std::string(s) + "'";
  return "'" + std::string(s.substr(0, kQuoteMax)) + "'... (" + std::to_string(s.size()) +
         " bytes)";
}

}  // namespace

CapsParse parse_caps(std::string_view text) {
  CapsParse result;
  if (text.empty()) {
    result.error = "empty capability mask";
    return result;
  }
  std::uint32_t caps = 0;
  std::size_t pos = 0;
  while (true) {
    const std::size_t bar = text.find('|', pos);
    const std::string_view term =
        text.substr(pos, bar == std::string_view::npos ? std::string_view::npos : bar - pos);
    if (term.empty()) {
      result.error = "empty term in " + quoted(text);
      return result;
    }
    if (const auto bit = caps_bit(term)) {
      caps |= *bit;
    } else {
      std::uint32_t number = 0;
      switch (parse_caps_number(term, number)) {
        case NumberParse::kOk:
          caps |= number;
          break;
        case NumberParse::kNotNumber:
          result.error = "unknown capability " + quoted(term);
          return result;
        case NumberParse::kTooBig:
          result.error = "capability value " + quoted(term) + " exceeds 0xffffffff";
          return result;
      }
    }
    if (bar == std::string_view::npos) break;
    pos = bar + 1;
  }
  result.caps = caps;
  return result;
}

std::string format_caps(std::uint32_t caps) {
  if (caps == 0) return "0";
  std::string out;
  std::uint32_t named = 0;
  for (const CapsName &entry : kCapsNames) {
    if ((caps & entry.value) != 0 && (named & entry.value) == 0) {
      if (!out.empty()) out += '|';
      out += entry.name;
      named |= entry.value;
    }
  }
  const std::uint32_t rest = caps & ~named;
  if (rest != 0) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%x", static_cast<unsigned>(rest));
    if (!out.empty()) out += '|';
    out += buf;
  }
  return out;
}

}  // namespace capheap::sim
