// harness_main.cpp — main() of the target test programs (harness.hpp): runs every registered test
// and returns 0 only if all passed (the emulator's exit status through semihosting).
#include "capheap.h"
#include "harness.hpp"

int main() {
  capheap_target::trap_unaligned_accesses();
  capheap_set_print_hook(capheap_target::console_print);
  return capheap_target::run_all_tests();
}
