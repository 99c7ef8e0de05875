/* atomic_libcalls.c — the __atomic_* library calls GCC emits for atomic operations a core cannot do
 * in line, for single-core bare-metal targets.
 *
 * Cortex-M0/M0+ (ARMv6-M) and RV32 cores without the A extension (ESP32-C3) have no atomic
 * read-modify-write instructions, and no 32-bit core has 64-bit ones: GCC then calls
 * __atomic_fetch_or_4, __atomic_compare_exchange_8 and friends, which libgcc does not provide and
 * Debian's arm-none-eabi / riscv64-unknown-elf toolchains ship no libatomic for. capheap's caps and
 * capi layers use 32-bit read-modify-write operations (the initialisation state, the event seam)
 * and the event recorder 64-bit ones.
 *
 * Each operation here runs with interrupts masked (Cortex-M PRIMASK, RISC-V mstatus.MIE, Xtensa
 * PS.INTLEVEL), which
 * makes it atomic on a single core, including against interrupt handlers. It is NOT atomic between
 * cores: a multi-core port must supply its own versions (spinlock or hardware semaphore); every
 * definition is weak, so a strong definition elsewhere (or a libatomic linked before capheap) takes
 * precedence. Only the calls a program really makes are linked (one section per function).
 *
 * The functions are defined under C names and given the library-call names as assembler names, so
 * the compiler does not confuse them with its built-ins. See docs/porting.md. */
#include <stdbool.h>
#include <stdint.h>

#if defined(__arm__)
static inline __attribute__((always_inline)) uint32_t irq_save(void) {
  uint32_t primask;
  __asm__ volatile("mrs %0, primask\n\tcpsid i" : "=r"(primask) : : "memory");
  return primask;
}
static inline __attribute__((always_inline)) void irq_restore(uint32_t primask) {
  __asm__ volatile("msr primask, %0" : : "r"(primask) : "memory");
}
#elif defined(__riscv)
static inline __attribute__((always_inline)) uint32_t irq_save(void) {
  uint32_t mstatus;
  /* Clears MIE (bit 3). The toolchain's -march may leave Zicsr out (rv32imc): enable it here. */
  __asm__ volatile(".option push\n\t.option arch, +zicsr\n\tcsrrci %0, mstatus, 8\n\t.option pop"
                   : "=r"(mstatus)
                   :
                   : "memory");
  return mstatus;
}
static inline __attribute__((always_inline)) void irq_restore(uint32_t mstatus) {
  /* MIE back on if it was on. */
  __asm__ volatile(".option push\n\t.option arch, +zicsr\n\tcsrs mstatus, %0\n\t.option pop"
                   :
                   : "r"(mstatus & 8u)
                   : "memory");
}
#elif defined(__XTENSA__)
static inline __attribute__((always_inline)) uint32_t irq_save(void) {
  uint32_t ps;
  __asm__ volatile("rsil %0, 15" : "=r"(ps) : : "memory"); /* PS.INTLEVEL = 15, old PS returned */
  return ps;
}
static inline __attribute__((always_inline)) void irq_restore(uint32_t ps) {
  __asm__ volatile("wsr %0, ps\n\trsync" : : "r"(ps) : "memory");
}
#else
#error "atomic_libcalls.c: no interrupt masking for this architecture; provide __atomic_* calls"
#endif

#define CAPHEAP_ATOMIC_NAME(op, n) __asm__("__atomic_" #op "_" #n)
#define CAPHEAP_WEAK __attribute__((weak))

/* load, store, exchange, compare_exchange for one size. */
#define CAPHEAP_ATOMIC_BASIC(n, T)                                                        \
  CAPHEAP_WEAK T capheap_atomic_load_##n(const volatile void *ptr, int order)             \
      CAPHEAP_ATOMIC_NAME(load, n);                                                       \
  T capheap_atomic_load_##n(const volatile void *ptr, int order) {                        \
    (void)order;                                                                          \
    const uint32_t s = irq_save();                                                        \
    const T v = *(const volatile T *)ptr;                                                 \
    irq_restore(s);                                                                       \
    return v;                                                                             \
  }                                                                                       \
  CAPHEAP_WEAK void capheap_atomic_store_##n(volatile void *ptr, T value, int order)      \
      CAPHEAP_ATOMIC_NAME(store, n);                                                      \
  void capheap_atomic_store_##n(volatile void *ptr, T value, int order) {                 \
    (void)order;                                                                          \
    const uint32_t s = irq_save();                                                        \
    *(volatile T *)ptr = value;                                                           \
    irq_restore(s);                                                                       \
  }                                                                                       \
  CAPHEAP_WEAK T capheap_atomic_exchange_##n(volatile void *ptr, T value, int order)      \
      CAPHEAP_ATOMIC_NAME(exchange, n);                                                   \
  T capheap_atomic_exchange_##n(volatile void *ptr, T value, int order) {                 \
    (void)order;                                                                          \
    const uint32_t s = irq_save();                                                        \
    const T old = *(volatile T *)ptr;                                                     \
    *(volatile T *)ptr = value;                                                           \
    irq_restore(s);                                                                       \
    return old;                                                                           \
  }                                                                                       \
  CAPHEAP_WEAK bool capheap_atomic_compare_exchange_##n(                                  \
      volatile void *ptr, void *expected, T desired, bool weak, int success, int failure) \
      CAPHEAP_ATOMIC_NAME(compare_exchange, n);                                           \
  bool capheap_atomic_compare_exchange_##n(volatile void *ptr, void *expected, T desired, \
                                           bool weak, int success, int failure) {         \
    (void)weak;                                                                           \
    (void)success;                                                                        \
    (void)failure;                                                                        \
    const uint32_t s = irq_save();                                                        \
    const T cur = *(volatile T *)ptr;                                                     \
    const bool equal = cur == *(T *)expected;                                             \
    if (equal)                                                                            \
      *(volatile T *)ptr = desired;                                                       \
    else                                                                                  \
      *(T *)expected = cur;                                                               \
    irq_restore(s);                                                                       \
    return equal;                                                                         \
  }

/* fetch_OP (returns the old value) and OP_fetch (returns the new value). */
#define CAPHEAP_ATOMIC_RMW(n, T, op, expr)                                               \
  CAPHEAP_WEAK T capheap_atomic_fetch_##op##_##n(volatile void *ptr, T value, int order) \
      CAPHEAP_ATOMIC_NAME(fetch_##op, n);                                                \
  T capheap_atomic_fetch_##op##_##n(volatile void *ptr, T value, int order) {            \
    (void)order;                                                                         \
    const uint32_t s = irq_save();                                                       \
    const T old = *(volatile T *)ptr;                                                    \
    *(volatile T *)ptr = (T)(expr);                                                      \
    irq_restore(s);                                                                      \
    return old;                                                                          \
  }                                                                                      \
  CAPHEAP_WEAK T capheap_atomic_##op##_fetch_##n(volatile void *ptr, T value, int order) \
      CAPHEAP_ATOMIC_NAME(op##_fetch, n);                                                \
  T capheap_atomic_##op##_fetch_##n(volatile void *ptr, T value, int order) {            \
    (void)order;                                                                         \
    const uint32_t s = irq_save();                                                       \
    const T old = *(volatile T *)ptr;                                                    \
    const T now = (T)(expr);                                                             \
    *(volatile T *)ptr = now;                                                            \
    irq_restore(s);                                                                      \
    return now;                                                                          \
  }

#define CAPHEAP_ATOMIC_SIZE(n, T)            \
  CAPHEAP_ATOMIC_BASIC(n, T)                 \
  CAPHEAP_ATOMIC_RMW(n, T, add, old + value) \
  CAPHEAP_ATOMIC_RMW(n, T, sub, old - value) \
  CAPHEAP_ATOMIC_RMW(n, T, and, old &value)  \
  CAPHEAP_ATOMIC_RMW(n, T, or, old | value)  \
  CAPHEAP_ATOMIC_RMW(n, T, xor, old ^ value) \
  CAPHEAP_ATOMIC_RMW(n, T, nand, ~(old & value))

CAPHEAP_ATOMIC_SIZE(1, uint8_t)
CAPHEAP_ATOMIC_SIZE(2, uint16_t)
CAPHEAP_ATOMIC_SIZE(4, unsigned int)
CAPHEAP_ATOMIC_SIZE(8, uint64_t)
