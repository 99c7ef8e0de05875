// atomic_tests.cpp — the __atomic_* library calls of the bare-metal port
// (src/port/baremetal/atomic_libcalls.c) as the compiler uses them: 64-bit operations on every
// 32-bit target (the event recorder's), and 8/16/32-bit read-modify-write operations where the core
// has no atomic instructions (Cortex-M0+, RV32IMC). Exact values after each operation.
#include <cstdint>

#include "harness.hpp"

namespace {
// volatile-free globals the compiler cannot fold: every operation below is a real atomic access.
std::uint64_t g_u64 = 0;
std::uint32_t g_u32 = 0;
std::uint16_t g_u16 = 0;
std::uint8_t g_u8 = 0;
}  // namespace

TARGET_TEST(Atomics, SixtyFourBit) {
  __atomic_store_n(&g_u64, 0x0000000100000002ull, __ATOMIC_RELEASE);
  CHECK_EQ(__atomic_load_n(&g_u64, __ATOMIC_ACQUIRE), 0x0000000100000002ull);
  CHECK_EQ(__atomic_fetch_add(&g_u64, 0xFFFFFFFFull, __ATOMIC_RELAXED), 0x0000000100000002ull);
  CHECK_EQ(g_u64, 0x0000000200000001ull);  // the carry crossed into the high word
  CHECK_EQ(__atomic_add_fetch(&g_u64, 1, __ATOMIC_SEQ_CST), 0x0000000200000002ull);
  CHECK_EQ(__atomic_fetch_sub(&g_u64, 3, __ATOMIC_RELAXED), 0x0000000200000002ull);
  CHECK_EQ(g_u64, 0x00000001FFFFFFFFull);
  CHECK_EQ(__atomic_exchange_n(&g_u64, 42ull, __ATOMIC_ACQ_REL), 0x00000001FFFFFFFFull);
  std::uint64_t expected = 41;
  CHECK(!__atomic_compare_exchange_n(&g_u64, &expected, 7ull, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE));
  CHECK_EQ(expected, 42ull);  // a failed exchange reports the current value
  CHECK(__atomic_compare_exchange_n(&g_u64, &expected, 0x8000000000000000ull, true,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
  CHECK_EQ(g_u64, 0x8000000000000000ull);
  CHECK_EQ(__atomic_fetch_or(&g_u64, 1ull, __ATOMIC_RELAXED), 0x8000000000000000ull);
  CHECK_EQ(__atomic_and_fetch(&g_u64, 0x8000000000000000ull, __ATOMIC_RELAXED),
           0x8000000000000000ull);
  CHECK_EQ(__atomic_xor_fetch(&g_u64, 0xFFFFFFFFFFFFFFFFull, __ATOMIC_RELAXED),
           0x7FFFFFFFFFFFFFFFull);
}

TARGET_TEST(Atomics, NarrowReadModifyWrite) {
  g_u32 = 5;
  CHECK_EQ(__atomic_fetch_or(&g_u32, 0x10u, __ATOMIC_ACQ_REL), 5u);
  CHECK_EQ(__atomic_fetch_and(&g_u32, ~0x1u, __ATOMIC_ACQ_REL), 0x15u);
  CHECK_EQ(__atomic_add_fetch(&g_u32, 0xFFFFFFF0u, __ATOMIC_RELAXED), 0x4u);  // wraps
  std::uint32_t e32 = 4;
  CHECK(__atomic_compare_exchange_n(&g_u32, &e32, 9u, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
  CHECK_EQ(__atomic_exchange_n(&g_u32, 1u, __ATOMIC_ACQ_REL), 9u);
  g_u16 = 0xFFFF;
  CHECK_EQ(__atomic_add_fetch(&g_u16, std::uint16_t{2}, __ATOMIC_RELAXED), 1u);
  g_u8 = 0x0F;
  CHECK_EQ(__atomic_fetch_xor(&g_u8, std::uint8_t{0xFF}, __ATOMIC_RELAXED), 0x0Fu);
  CHECK_EQ(g_u8, 0xF0u);
  CHECK_EQ(__atomic_nand_fetch(&g_u8, std::uint8_t{0x30}, __ATOMIC_RELAXED), 0xCFu);
}
