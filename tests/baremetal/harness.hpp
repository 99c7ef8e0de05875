// harness.hpp — a tiny freestanding test harness for the target tests (no GoogleTest on bare
// metal): a registry of test functions filled by static registration objects, CHECK macros that
// record failures and carry on, REQUIRE macros that end the test, a seeded PRNG and a main() that
// runs every test and returns the number of failed tests (QEMU's exit status through semihosting).
//
//   TARGET_TEST(Suite, Name) { CHECK_EQ(f(), 4u); REQUIRE(p != nullptr); ... }
//
// Output (picolibc stdio over semihosting): one line per test, the failed checks with file, line,
// expression and both values, and a closing `N passed, N failed` line.
#ifndef CAPHEAP_TESTS_BAREMETAL_HARNESS_HPP
#define CAPHEAP_TESTS_BAREMETAL_HARNESS_HPP

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace capheap_target {

using TestFn = void (*)();

struct TestCase {
  const char *suite;
  const char *name;
  TestFn fn;
  TestCase *next;
};

/// Appends a test to the registry (in registration order). Called by TARGET_TEST's registrar.
void register_test(TestCase *test) noexcept;

struct Registrar {
  explicit Registrar(TestCase *test) noexcept { register_test(test); }
};

/// Records a failed check of the running test and prints it.
void report_failure(const char *file, int line, const char *expr) noexcept;
void report_failure_values(const char *file, int line, const char *expr, std::uint64_t a,
                           std::uint64_t b) noexcept;

/// printf-style output (the harness's own; the library under test never prints through it).
void print(const char *fmt, ...) noexcept __attribute__((format(printf, 1, 2)));

/// Values compared by CHECK_EQ, widened for printing: integers, enums, pointers, bools.
template <class T>
std::uint64_t as_u64(const T &v) noexcept {
  if constexpr (std::is_pointer_v<T> || std::is_null_pointer_v<T>) {
    return static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(v));
  } else if constexpr (std::is_enum_v<T>) {
    return static_cast<std::uint64_t>(static_cast<std::underlying_type_t<T>>(v));
  } else {
    static_assert(std::is_integral_v<T>, "CHECK_EQ compares integers, enums and pointers");
    return static_cast<std::uint64_t>(v);
  }
}

template <class A, class B>
bool check_eq(const A &a, const B &b, const char *file, int line, const char *expr) noexcept {
  const std::uint64_t x = as_u64(a), y = as_u64(b);
  if (x == y) return true;
  report_failure_values(file, line, expr, x, y);
  return false;
}

/// The run's seed (CAPHEAP_TARGET_SEED at build time) and a xorshift64* generator.
std::uint64_t seed() noexcept;
class Rng {
 public:
  explicit Rng(std::uint64_t s) noexcept : state_(s != 0 ? s : 0x9E3779B97F4A7C15ull) {}
  std::uint64_t next() noexcept {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return state_ * 0x2545F4914F6CDD1Dull;
  }
  /// Uniform in [0, n), n > 0.
  std::uint32_t below(std::uint32_t n) noexcept {
    return static_cast<std::uint32_t>((next() >> 32) % n);
  }

 private:
  std::uint64_t state_;
};

/// The print hook the harness installs (capheap_set_print_hook): library output to the console.
void console_print(const char *text, std::size_t len);

/// Runs every registered test; prints the closing `N passed, N failed` line. Returns 0 if every
/// test passed, else 1.
int run_all_tests() noexcept;

/// Cortex-M0+ builds: makes unaligned word accesses fault (see harness.cpp). Called by main().
void trap_unaligned_accesses() noexcept;

/// The name of the target (CAPHEAP_TARGET at build time, e.g. "cortex-m4").
const char *target_name() noexcept;

}  // namespace capheap_target

#define CAPHEAP_TT_CAT2(a, b) a##b
#define CAPHEAP_TT_CAT(a, b) CAPHEAP_TT_CAT2(a, b)

#define TARGET_TEST(suite, name)                                                                 \
  static void suite##_##name##_body();                                                           \
  static ::capheap_target::TestCase suite##_##name##_case{#suite, #name, &suite##_##name##_body, \
                                                          nullptr};                              \
  static ::capheap_target::Registrar suite##_##name##_registrar(&suite##_##name##_case);         \
  static void suite##_##name##_body()

#define CHECK(cond)                                                           \
  do {                                                                        \
    if (!(cond)) ::capheap_target::report_failure(__FILE__, __LINE__, #cond); \
  } while (0)

#define CHECK_EQ(a, b) \
  static_cast<void>(::capheap_target::check_eq((a), (b), __FILE__, __LINE__, #a " == " #b))

#define REQUIRE(cond)                                              \
  do {                                                             \
    if (!(cond)) {                                                 \
      ::capheap_target::report_failure(__FILE__, __LINE__, #cond); \
      return;                                                      \
    }                                                              \
  } while (0)

#define REQUIRE_EQ(a, b)                                                                 \
  do {                                                                                   \
    if (!::capheap_target::check_eq((a), (b), __FILE__, __LINE__, #a " == " #b)) return; \
  } while (0)

#endif  // CAPHEAP_TESTS_BAREMETAL_HARNESS_HPP
