// size_text.cpp — see size_text.hpp.
#include "sim/size_text.hpp"

namespace capheap::sim {

bool parse_byte_size(const char *text, std::size_t *out) noexcept {
  const char *p = text;
  unsigned base = 10;
  if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
    base = 16;
    p += 2;
  }
  std::size_t v = 0;
  bool digits = false;
  for (;; ++p) {
    unsigned d;
    if (*p >= '0' && *p <= '9') {
      d = static_cast<unsigned>(*p - '0');
    } else if (base == 16 && *p >= 'a' && *p <= 'f') {
      d = static_cast<unsigned>(*p - 'a') + 10;
    } else if (base == 16 && *p >= 'A' && *p <= 'F') {
      d = static_cast<unsigned>(*p - 'A') + 10;
    } else {
      break;
    }
    if (__builtin_mul_overflow(v, base, &v) || __builtin_add_overflow(v, d, &v)) return false;
    digits = true;
  }
  if (!digits) return false;
  std::size_t mult = 1;
  if (*p == 'K' || *p == 'k') {
    mult = 1024;
    ++p;
  } else if (*p == 'M' || *p == 'm') {
    mult = 1024 * 1024;
    ++p;
  }
  if (*p != '\0') return false;
  // (Through a local: the builtin stores the wrapped product even when it reports overflow, and a
  // failed parse must leave *out alone.)
  std::size_t bytes;
  if (__builtin_mul_overflow(v, mult, &bytes)) return false;
  *out = bytes;
  return true;
}

}  // namespace capheap::sim
