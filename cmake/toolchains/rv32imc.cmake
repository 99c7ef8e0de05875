# RV32IMC (ESP32-C3 class: no atomic, no floating-point instructions) on QEMU virt with A, F and D
# switched off, so any atomic or FP instruction traps as it would on the chip. Atomic
# read-modify-write operations become __atomic_* calls, which the bare-metal port supplies
# (src/port/baremetal/atomic_libcalls.c).
#   cmake --preset rv32imc
set(CAPHEAP_TARGET rv32imc)
set(_capheap_march "-march=rv32imc")
set(_capheap_cxxconfig thumb/v6-m/nofp)
set(_capheap_qemu_cpu "rv32,a=off,f=off,d=off")
include(${CMAKE_CURRENT_LIST_DIR}/riscv32-common.cmake)
