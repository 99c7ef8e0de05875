// text_out.hpp — a tiny formatter into a caller-provided character buffer, for the printed reports
// and trace lines of the debugging features (heap_trace.cpp, recorder.cpp).
//
// capi is freestanding: no snprintf, no allocation. TextOut appends text, unsigned decimal numbers
// (optionally right-aligned in a width) and hexadecimal numbers (optionally zero-padded to a number
// of digits); output that does not fit is dropped and the text stays NUL-terminated.
#ifndef CAPHEAP_CAPI_TEXT_OUT_HPP
#define CAPHEAP_CAPI_TEXT_OUT_HPP

#include <cstddef>
#include <cstdint>

namespace capheap {
namespace capi {

class TextOut {
 public:
  /// Writes into buf[0..size), size >= 1.
  TextOut(char *buf, std::size_t size) noexcept : buf_(buf), cap_(size - 1) { buf_[0] = '\0'; }

  const char *c_str() const noexcept { return buf_; }
  std::size_t size() const noexcept { return len_; }

  TextOut &ch(char c) noexcept {
    if (len_ < cap_) buf_[len_++] = c;
    buf_[len_] = '\0';
    return *this;
  }
  TextOut &str(const char *s) noexcept {
    while (*s != '\0' && len_ < cap_)
      buf_[len_++] = *s++;
    buf_[len_] = '\0';
    return *this;
  }
  /// Unsigned decimal, right-aligned with spaces to `width` characters.
  TextOut &dec(std::uint64_t v, unsigned width = 0) noexcept {
    char tmp[20];
    unsigned n = 0;
    do {
      tmp[n++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    for (unsigned i = n; i < width; ++i)
      ch(' ');
    while (n > 0)
      ch(tmp[--n]);
    return *this;
  }
  /// Lower-case hexadecimal without prefix, zero-padded to at least `digits` digits.
  TextOut &hex(std::uint64_t v, unsigned digits = 1) noexcept {
    static const char kDigits[] = "0123456789abcdef";
    char tmp[16];
    unsigned n = 0;
    do {
      tmp[n++] = kDigits[v & 0xFu];
      v >>= 4;
    } while (v != 0);
    for (unsigned i = n; i < digits; ++i)
      ch('0');
    while (n > 0)
      ch(tmp[--n]);
    return *this;
  }
  /// "0x" and at least 8 hex digits: how ESP-IDF's ROM printf shows a pointer (%p).
  TextOut &ptr(std::uintptr_t v) noexcept {
    str("0x");
    return hex(v, 8);
  }

 private:
  char *buf_;
  std::size_t cap_;
  std::size_t len_ = 0;
};

}  // namespace capi
}  // namespace capheap

#endif  // CAPHEAP_CAPI_TEXT_OUT_HPP
