// size_text.hpp — byte counts written by people: "4M", "512K", "0x8000", "65536".
#ifndef CAPHEAP_SIM_SIZE_TEXT_HPP
#define CAPHEAP_SIM_SIZE_TEXT_HPP

#include <cstddef>

namespace capheap::sim {

/// Parses a decimal or 0x-prefixed hexadecimal count, optionally followed by K or M (binary
/// multiples), with nothing after it. Returns false (leaving *out alone) for anything else,
/// including overflow.
bool parse_byte_size(const char *text, std::size_t *out) noexcept;

}  // namespace capheap::sim

#endif  // CAPHEAP_SIM_SIZE_TEXT_HPP
