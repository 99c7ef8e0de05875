// harness.cpp — registry, reporting and main() of the target tests (see harness.hpp).
#include "harness.hpp"

#include <stdarg.h>
#include <stdio.h>

#include "capheap.h"

#ifndef CAPHEAP_TARGET_SEED
#define CAPHEAP_TARGET_SEED 0x5EEDCAFEull
#endif
#ifndef CAPHEAP_TARGET_NAME
#define CAPHEAP_TARGET_NAME "unknown"
#endif

namespace capheap_target {
namespace {

TestCase *g_first = nullptr;
TestCase *g_last = nullptr;
const TestCase *g_running = nullptr;
unsigned g_failed_checks = 0;

}  // namespace

void register_test(TestCase *test) noexcept {
  test->next = nullptr;
  if (g_last == nullptr) {
    g_first = test;
  } else {
    g_last->next = test;
  }
  g_last = test;
}

void print(const char *fmt, ...) noexcept {
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
}

void report_failure(const char *file, int line, const char *expr) noexcept {
  ++g_failed_checks;
  printf("%s:%d: FAILED in %s.%s: %s\n", file, line, g_running ? g_running->suite : "?",
         g_running ? g_running->name : "?", expr);
}

void report_failure_values(const char *file, int line, const char *expr, std::uint64_t a,
                           std::uint64_t b) noexcept {
  ++g_failed_checks;
  printf("%s:%d: FAILED in %s.%s: %s\n    got 0x%08lx%08lx (%lu), expected 0x%08lx%08lx (%lu)\n",
         file, line, g_running ? g_running->suite : "?", g_running ? g_running->name : "?", expr,
         static_cast<unsigned long>(a >> 32), static_cast<unsigned long>(a & 0xFFFFFFFFu),
         static_cast<unsigned long>(a), static_cast<unsigned long>(b >> 32),
         static_cast<unsigned long>(b & 0xFFFFFFFFu), static_cast<unsigned long>(b));
}

std::uint64_t seed() noexcept {
  return CAPHEAP_TARGET_SEED;
}

const char *target_name() noexcept {
  return CAPHEAP_TARGET_NAME;
}

}  // namespace capheap_target

// Library output (multi_heap_dump, check reports) goes to the same console.
void capheap_target::console_print(const char *text, std::size_t len) {
  fwrite(text, 1, len, stdout);
}

void capheap_target::trap_unaligned_accesses() noexcept {
#if defined(__ARM_ARCH_6M__)
  // ARMv6-M code may run on a v7-M core in the emulator (cmake/toolchains/cortex-m0plus.cmake):
  // CCR.UNALIGN_TRP (SCB->CCR bit 3) makes unaligned word accesses fault as on a Cortex-M0+ (where
  // the bit reads as one and the write is ignored).
  *reinterpret_cast<volatile std::uint32_t *>(std::uintptr_t(0xE000ED14u)) |= 1u << 3;
#endif
}

int capheap_target::run_all_tests() noexcept {
  printf("capheap target tests on %s (%u-bit), seed 0x%08lx%08lx\n", target_name(),
         static_cast<unsigned>(sizeof(void *) * 8), static_cast<unsigned long>(seed() >> 32),
         static_cast<unsigned long>(seed() & 0xFFFFFFFFu));
  unsigned passed = 0, failed = 0;
  for (const TestCase *t = g_first; t != nullptr; t = t->next) {
    g_running = t;
    const unsigned before = g_failed_checks;
    printf("[ RUN      ] %s.%s\n", t->suite, t->name);
    t->fn();
    if (g_failed_checks == before) {
      ++passed;
      printf("[       OK ] %s.%s\n", t->suite, t->name);
    } else {
      ++failed;
      printf("[  FAILED  ] %s.%s\n", t->suite, t->name);
    }
  }
  g_running = nullptr;
  printf("%u passed, %u failed\n", passed, failed);
  fflush(stdout);
  return failed == 0 ? 0 : 1;
}
