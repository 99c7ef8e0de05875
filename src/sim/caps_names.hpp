// sim/caps_names.hpp — names of ESP-IDF's MALLOC_CAP_* capability bits, both ways.
//
// The trace format (docs/trace-format.md) and the host tools spell capability masks either as
// numbers (`0x1800`, `6144`) or as bit names joined by `|` (`DMA|8BIT`, `MALLOC_CAP_DMA|...`). This
// header is the single table of those names and the two conversions. Host-only (std::string).
#ifndef CAPHEAP_SIM_CAPS_NAMES_HPP
#define CAPHEAP_SIM_CAPS_NAMES_HPP

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace capheap::sim {

/// One named capability bit: `name` is the ESP-IDF macro name without its `MALLOC_CAP_` prefix.
struct CapsName {
  const char *name;
  std::uint32_t value;
};

/// MALLOC_CAP_DEFAULT: what an allocation without explicit capabilities asks for (plain malloc).
inline constexpr std::uint32_t kCapsDefault = 0x1000;
/// MALLOC_CAP_INVALID: the bit ESP-IDF reserves to mark an invalid capability mask.
inline constexpr std::uint32_t kCapsInvalid = 0x80000000u;
/// Prefix accepted (and not required) in front of every name.
inline constexpr std::string_view kCapsPrefix = "MALLOC_CAP_";

/// Number of entries in kCapsNames.
inline constexpr std::size_t kCapsNameCount = 24;

/// The table, in ascending bit order; this is also the order format_caps() prints names in. One
/// alias exists: TCM (same bit as SPM) comes right after SPM; format_caps() always prints SPM.
///   EXEC 0x1, 32BIT 0x2, 8BIT 0x4, DMA 0x8, PID2 0x10 … PID7 0x200, SPIRAM 0x400,
///   INTERNAL 0x800, DEFAULT 0x1000, IRAM_8BIT 0x2000, RETENTION 0x4000, RTCRAM 0x8000,
///   SPM 0x10000 (alias TCM), DMA_DESC_AHB 0x20000, DMA_DESC_AXI 0x40000, CACHE_ALIGNED 0x80000,
///   SIMD 0x100000, SPIRAM_NO_ENC 0x200000, INVALID 0x80000000.
extern const CapsName kCapsNames[kCapsNameCount];

/// Looks up one bit name, with or without the `MALLOC_CAP_` prefix (`DMA`, `MALLOC_CAP_DMA`).
/// Names are case-sensitive (upper case, as the ESP-IDF macros are).
/// Returns: the bit's value, or nullopt for an unknown name.
std::optional<std::uint32_t> caps_bit(std::string_view name) noexcept;

/// Result of parse_caps: the mask, or a message saying what is wrong (then caps is 0).
struct CapsParse {
  std::uint32_t caps = 0;
  std::string error;  ///< empty on success
  bool ok() const noexcept { return error.empty(); }
};

/// Parses a capability mask: one or more terms joined by `|`, each term a bit name (see caps_bit)
/// or an unsigned number, hexadecimal with a `0x`/`0X` prefix or decimal. The terms are OR-ed:
/// `DMA|8BIT` → 0xC, `0x1800` → 0x1800, `INTERNAL|0x8` → 0x808. No spaces are allowed.
/// Errors (the error text, verbatim):
///   `empty capability mask`            text is empty
///   `empty term in 'TEXT'`             a `|` with nothing on one side (`DMA|`, `DMA||8BIT`)
///   `unknown capability 'TERM'`        neither a known name nor a number
///   `capability value 'TERM' exceeds 0xffffffff`   a numeric term wider than 32 bits
/// A TEXT or TERM longer than 64 bytes is quoted cut: `'FIRST 64 BYTES'... (N bytes)`.
CapsParse parse_caps(std::string_view text);

/// Formats a mask as names joined by `|`, in ascending bit order (0xC → `8BIT|DMA`). Bits without
/// a name are collected into one trailing hexadecimal term (0x1000008 → `DMA|0x1000000`); 0 → `0`.
/// parse_caps(format_caps(x)).caps == x for every x.
std::string format_caps(std::uint32_t caps);

}  // namespace capheap::sim

#endif  // CAPHEAP_SIM_CAPS_NAMES_HPP
