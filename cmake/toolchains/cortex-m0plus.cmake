# Cortex-M0+ (ARMv6-M: no unaligned access, no LDREX/STREX, no hardware divide): ARMv6-M code and
# picolibc's v6-m multilib. QEMU 7.2 has no board with a Cortex-M0/M0+ and enough RAM (microbit has
# 16 KiB, and mps2-an385 accepts only its Cortex-M3), so the tests run on mps2-an385's Cortex-M3 --
# which executes ARMv6-M code unchanged -- and the test harness sets CCR.UNALIGN_TRP at start-up,
# so an unaligned word access faults as it does on an M0+ (target_unaligned_traps proves it).
# RAM: 4 MiB at 0x20000000; the board's 16 MiB PSRAM at 0x21000000 is the tests' external RAM.
#   cmake --preset cortex-m0plus      (or -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/cortex-m0plus.cmake)
set(CAPHEAP_TARGET cortex-m0plus)
set(_capheap_cpu_flags "-mcpu=cortex-m0plus -mfloat-abi=soft")
set(_capheap_memory "-Wl,--defsym=__flash=0x00000000 -Wl,--defsym=__flash_size=0x00400000 -Wl,--defsym=__ram=0x20000000 -Wl,--defsym=__ram_size=0x00400000")
set(_capheap_qemu -M mps2-an385)
set(CAPHEAP_TARGET_EXT_RAM "0x21000000;0x01000000")
include(${CMAKE_CURRENT_LIST_DIR}/arm-none-eabi-common.cmake)
