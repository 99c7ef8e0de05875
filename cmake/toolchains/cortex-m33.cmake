# Cortex-M33 (ARMv8-M Mainline with FPU, hard-float ABI), run on QEMU's mps2-an505, which boots in the
# Secure state: code and data use the Secure aliases (flash 0x10000000, SRAM 0x38000000, 2 MiB).
# The board's PSRAM (16 MiB at 0x80000000) is the tests' external RAM.
#   cmake --preset cortex-m33
set(CAPHEAP_TARGET cortex-m33)
set(_capheap_cpu_flags "-mcpu=cortex-m33 -mfloat-abi=hard -mfpu=fpv5-sp-d16")
set(_capheap_memory "-Wl,--defsym=__flash=0x10000000 -Wl,--defsym=__flash_size=0x00400000 -Wl,--defsym=__ram=0x38000000 -Wl,--defsym=__ram_size=0x00200000")
set(_capheap_qemu -M mps2-an505)
set(CAPHEAP_TARGET_EXT_RAM "0x80000000;0x01000000")
include(${CMAKE_CURRENT_LIST_DIR}/arm-none-eabi-common.cmake)
