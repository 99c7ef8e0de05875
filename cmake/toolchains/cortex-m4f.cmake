# Cortex-M4F (ARMv7E-M with the single-precision FPU, hard-float ABI), run on QEMU's mps2-an386
# (a Cortex-M4 board). RAM: 4 MiB at 0x20000000; the 16 MiB PSRAM at 0x21000000 is the tests'
# external RAM. The size report calls this target "cortex-m4".
#   cmake --preset cortex-m4f
set(CAPHEAP_TARGET cortex-m4)
set(_capheap_cpu_flags "-mcpu=cortex-m4 -mfloat-abi=hard -mfpu=fpv4-sp-d16")
set(_capheap_memory "-Wl,--defsym=__flash=0x00000000 -Wl,--defsym=__flash_size=0x00400000 -Wl,--defsym=__ram=0x20000000 -Wl,--defsym=__ram_size=0x00400000")
set(_capheap_qemu -M mps2-an386)
set(CAPHEAP_TARGET_EXT_RAM "0x21000000;0x01000000")
include(${CMAKE_CURRENT_LIST_DIR}/arm-none-eabi-common.cmake)
