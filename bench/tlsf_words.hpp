// tlsf_words.hpp — the word access and bit helpers of the bench-only TLSFs (floor_tlsf.cpp,
// proto_tlsf.cpp), forced inline so that each allocator's malloc and free stay leaf functions.
// Offsets and sizes in registers are 64-bit on the host, so that base + offset + constant is one
// x86 addressing mode (32-bit offset arithmetic would need a zero-extension per access); in
// memory they are 32-bit words.
#pragma once

#include <cstddef>
#include <cstdint>

#define TLSF_WORDS_INLINE inline __attribute__((always_inline))

namespace capheap::bench::tlsf_words {

using Word = std::uint32_t __attribute__((may_alias));
using Off = std::size_t;

/// The word at offset off of the region.
TLSF_WORDS_INLINE Word &at(unsigned char *b, Off off) noexcept {
  return *reinterpret_cast<Word *>(b + off);
}
TLSF_WORDS_INLINE Off get(unsigned char *b, Off off) noexcept {
  return at(b, off);
}
TLSF_WORDS_INLINE void put(unsigned char *b, Off off, Off v) noexcept {
  at(b, off) = static_cast<std::uint32_t>(v);
}
/// Highest set bit (x != 0).
TLSF_WORDS_INLINE std::uint32_t msb(std::uint32_t x) noexcept {
  return 31u ^ static_cast<std::uint32_t>(__builtin_clz(x));
}
TLSF_WORDS_INLINE Off ctz(std::uint32_t x) noexcept {
  return static_cast<std::uint32_t>(__builtin_ctz(x));
}
/// ~(1 << n) as one rotate.
TLSF_WORDS_INLINE std::uint32_t all_but(Off n) noexcept {
  const auto k = static_cast<std::uint32_t>(n & 31);
  return (0xFFFFFFFEu << k) | (0xFFFFFFFEu >> ((32 - k) & 31));
}

}  // namespace capheap::bench::tlsf_words
