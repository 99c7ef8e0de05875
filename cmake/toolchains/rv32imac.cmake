# RV32IMAC (ESP32-C6 class: atomics, no floating point) on QEMU virt with F and D switched off.
#   cmake --preset rv32imac
set(CAPHEAP_TARGET rv32imac)
set(_capheap_march "-march=rv32imac")
set(_capheap_cxxconfig thumb/v7-m/nofp)
set(_capheap_qemu_cpu "rv32,f=off,d=off")
include(${CMAKE_CURRENT_LIST_DIR}/riscv32-common.cmake)
