/* sim_runtime.c — what a program needs to run on QEMU's Xtensa `sim` machine with an lx106 core
 * (cmake/toolchains/xtensa-lx106.cmake): picolibc has no semihosting library for Xtensa, and the
 * machine starts at the lx106 reset vector with no stack.
 *
 *   capheap_sim_reset    reset entry, first in .init (at __flash = 0x50000000, the reset vector):
 *                        loads the stack pointer and jumps to picolibc's _start
 *   capheap_sim_dblexc   the DoubleExceptionVector (0x40000070): PS.EXCM stays set after reset, so
 *                        every exception (unaligned access, illegal instruction, trap) lands there;
 *                        it prints "Xtensa exception" and ends the run with exit status 1
 *   _exit, stdout        SIMCALL exit / write (QEMU -semihosting): main's return value becomes the
 *                        emulator's exit status, output goes to QEMU's stdout
 *   kill, getpid         abort() -> raise(SIGABRT) -> exit status 128 + signal, as on the other
 *                        targets
 * Used by the target tests only; capheap itself needs none of it. */
#include <stdio.h>
#include <stdlib.h>

enum { kSimExit = 1, kSimWrite = 4 };

static int simcall(int nr, int a, int b, int c) {
  register int a2 __asm__("a2") = nr;
  register int a3 __asm__("a3") = a;
  register int a4 __asm__("a4") = b;
  register int a5 __asm__("a5") = c;
  __asm__ volatile("simcall" : "+r"(a2), "+r"(a3) : "r"(a4), "r"(a5) : "memory");
  return a2;
}

void _exit(int status) {
  for (;;)
    simcall(kSimExit, status, 0, 0);
}

int getpid(void);
int getpid(void) {
  return 1;
}

int kill(int pid, int sig);
int kill(int pid, int sig) {
  (void)pid;
  _exit(128 + sig);
  return -1;
}

static int sim_putc(char c, FILE *f) {
  (void)f;
  simcall(kSimWrite, 1, (int)&c, 1);
  return (unsigned char)c;
}

static FILE sim_stream = FDEV_SETUP_STREAM(sim_putc, NULL, NULL, _FDEV_SETUP_WRITE);
FILE *const stdin = &sim_stream;
FILE *const stdout = &sim_stream;
FILE *const stderr = &sim_stream;

/* The literals sit before their use: L32R only reaches backwards. */
__asm__(
    "  .section .text.init.enter,\"ax\",@progbits\n"
    "  .global capheap_sim_reset\n"
    "  .align 4\n"
    "capheap_sim_reset:\n"
    "  j 1f\n"
    "  .align 4\n"
    "2:\n"
    "  .word __stack\n"
    "  .word _start\n"
    "1:\n"
    "  l32r a1, 2b\n"
    "  l32r a0, 2b + 4\n"
    "  jx a0\n");

/* Prints "Xtensa exception" (SIMCALL write to fd 1) and exits with status 1. */
__asm__(
    "  .section .capheap_dblexc,\"ax\",@progbits\n"
    "  .global capheap_sim_dblexc\n"
    "capheap_sim_dblexc:\n"
    "  j 1f\n"
    "  .align 4\n"
    "2:\n"
    "  .word 3f\n"
    "3:\n"
    "  .ascii \"Xtensa exception\\n\"\n"
    "  .align 4\n"
    "1:\n"
    "  movi a2, 4\n" /* SIMCALL write */
    "  movi a3, 1\n" /* fd 1 */
    "  l32r a4, 2b\n"
    "  movi a5, 17\n"
    "  simcall\n"
    "4:\n"
    "  movi a2, 1\n" /* SIMCALL exit */
    "  movi a3, 1\n" /* status 1 */
    "  simcall\n"
    "  j 4b\n");
