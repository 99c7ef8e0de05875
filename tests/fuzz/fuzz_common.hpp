// fuzz_common.hpp — shared helpers of the differential fuzzers (tests/fuzz, docs/testing.md).
//
// Every fuzzer defines LLVMFuzzerTestOneInput. Built with libFuzzer (CAPHEAP_FUZZ=ON, clang) it is
// a coverage-guided fuzzer; in the normal build corpus_main.cpp feeds it the checked-in corpus as
// a regression test. Oracle violations end the process through FUZZ_CHECK with a message.
#ifndef CAPHEAP_TESTS_FUZZ_COMMON_HPP
#define CAPHEAP_TESTS_FUZZ_COMMON_HPP

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace capheap_fuzz {

[[noreturn]] inline void fail(const char *file, int line, const char *cond, const char *msg) {
  std::fprintf(stderr, "%s:%d: fuzz oracle violated: %s (%s)\n", file, line, msg, cond);
  std::fflush(stderr);
  std::abort();
}

#define FUZZ_CHECK(cond, msg)                                          \
  do {                                                                 \
    if (!(cond)) ::capheap_fuzz::fail(__FILE__, __LINE__, #cond, msg); \
  } while (0)

/// Execution and operation counters, printed at exit ("NAME: N executions, M operations checked").
struct Counters {
  const char *name;
  unsigned long long executions = 0;
  unsigned long long operations = 0;
};

inline Counters &counters() {
  static Counters c{"fuzzer"};
  return c;
}

inline void print_counters() {
  const Counters &c = counters();
  std::fprintf(stderr, "capheap-fuzz %s: %llu executions, %llu operations checked\n", c.name,
               c.executions, c.operations);
}

/// Call at the start of every LLVMFuzzerTestOneInput.
inline void count_execution(const char *name) {
  static bool registered = false;
  if (!registered) {
    registered = true;
    counters().name = name;
    std::atexit(print_counters);
  }
  ++counters().executions;
}

inline void count_operation() {
  ++counters().operations;
}

/// Reads the fuzz input front to back; past the end every read yields 0.
class Reader {
 public:
  Reader(const std::uint8_t *data, std::size_t size) : data_(data), size_(size) {}
  bool empty() const { return pos_ >= size_; }
  std::size_t remaining() const { return pos_ < size_ ? size_ - pos_ : 0; }
  std::uint8_t u8() { return pos_ < size_ ? data_[pos_++] : 0; }
  std::uint16_t u16() {
    const unsigned lo = u8();
    return static_cast<std::uint16_t>(lo | (unsigned{u8()} << 8));
  }
  std::uint32_t u32() {
    const std::uint32_t lo = u16();
    return lo | (std::uint32_t{u16()} << 16);
  }

 private:
  const std::uint8_t *data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

}  // namespace capheap_fuzz

#endif  // CAPHEAP_TESTS_FUZZ_COMMON_HPP
