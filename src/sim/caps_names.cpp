// sim/caps_names.cpp — MALLOC_CAP_* name table and mask parsing/formatting.
#include "sim/caps_names.hpp"

#include <cstdio>

namespace capheap::sim {

const CapsName kCapsNames[kCapsNameCount] = {
    {"EXEC", 0x1},
    {"32BIT", 0x2},
    {"8BIT", 0x4},
    {"DMA", 0x8},
    {"PID2", 0x10},
    {"PID3", 0x20},
    {"PID4", 0x40},
    {"PID5", 0x80},
    {"PID6", 0x100},
    {"PID7", 0x200},
    {"SPIRAM", 0x400},
    {"INTERNAL", 0x800},
    {"DEFAULT", 0x1000},
    {"IRAM_8BIT", 0x2000},
    {"RETENTION", 0x4000},
    {"RTCRAM", 0x8000},
    {"SPM", 0x10000},
    {"TCM", 0x10000},  // alias: must stay after SPM so format_caps() prints SPM
    {"DMA_DESC_AHB", 0x20000},
    {"DMA_DESC_AXI", 0x40000},
    {"CACHE_ALIGNED", 0x80000},
    {"SIMD", 0x100000},
    {"SPIRAM_NO_ENC", 0x200000},
    {"INVALID", 0x80000000u},
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
      result.error = "empty term in '" + std::string(text) + "'";
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
          result.error = "unknown capability '" + std::string(term) + "'";
          return result;
        case NumberParse::kTooBig:
          result.error = "capability value '" + std::string(term) + "' exceeds 0xffffffff";
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
