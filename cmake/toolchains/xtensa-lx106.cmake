# Xtensa lx106 (ESP8266 class: call0 ABI, no atomic instructions, no divider, strict alignment) on
# QEMU's `sim` machine (`-M sim -cpu lx106 -semihosting`), with xtensa-lx106-elf-gcc and picolibc
# (Debian 12: gcc-xtensa-lx106, picolibc-xtensa-lx106-elf, qemu-system-misc; `scripts/install-deps.sh
# --cross`). ESP32/S2/S3 (LX6/LX7, windowed ABI) have neither a Debian compiler nor a QEMU model.
#
# What it takes beyond the other targets (cmake/CapheapBaremetal.cmake, tests/baremetal/xtensa/):
#   * picolibc's linker script, generated at configure time from the installed one with three
#     changes: L32R literals before the code that uses them, and the DoubleExceptionVector at
#     0x40000070 (every exception lands there after reset) in a segment of its own;
#   * the run-time glue for the sim machine (reset stub, SIMCALL exit and output, exception exit);
#   * the integer-division helpers Debian's lx106 libgcc lacks (all executables);
#   * C++ headers borrowed from libstdc++-arm-none-eabi-dev, as for RV32.
# Memory: code in sysrom0 (0x50000000, the reset vector), data in sysram0 (0x60000000, 8 MiB), the
# tests' external RAM at 0x61000000.
#   cmake --preset xtensa-lx106
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR xtensa)
set(CMAKE_C_COMPILER xtensa-lx106-elf-gcc)
set(CMAKE_CXX_COMPILER xtensa-lx106-elf-g++)
set(CMAKE_ASM_COMPILER xtensa-lx106-elf-gcc)
set(CMAKE_AR xtensa-lx106-elf-ar CACHE FILEPATH "")
set(CMAKE_RANLIB xtensa-lx106-elf-ranlib CACHE FILEPATH "")
set(CMAKE_OBJCOPY xtensa-lx106-elf-objcopy CACHE FILEPATH "")
set(CMAKE_OBJDUMP xtensa-lx106-elf-objdump CACHE FILEPATH "")
set(CAPHEAP_NM xtensa-lx106-elf-nm CACHE FILEPATH "nm of the target toolchain (link check, size report)")
set(CAPHEAP_SIZE_TOOL xtensa-lx106-elf-size CACHE FILEPATH "size of the target toolchain")
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)

set(CAPHEAP_TARGET xtensa-lx106)
set(CAPHEAP_XTENSA_SIM ON)
set(_capheap_libstdcxx /usr/include/newlib/c++/12.2.1)
set(_capheap_common "-mlongcalls -ffunction-sections -fdata-sections --specs=/usr/lib/xtensa-lx106-elf/picolibc.specs")
set(CMAKE_C_FLAGS_INIT "${_capheap_common}")
set(CMAKE_CXX_FLAGS_INIT
    "${_capheap_common} -fno-exceptions -fno-rtti -fno-threadsafe-statics -nostdinc++ -isystem ${_capheap_libstdcxx} -isystem ${_capheap_libstdcxx}/arm-none-eabi/thumb/v6-m/nofp")
set(CMAKE_EXE_LINKER_FLAGS_INIT
    "-Wl,--gc-sections -Wl,--defsym=__flash=0x50000000 -Wl,--defsym=__flash_size=0x400000 -Wl,--defsym=__ram=0x60000000 -Wl,--defsym=__ram_size=0x800000 -Wl,--no-warn-rwx-segments")
set(CMAKE_CXX_LINK_EXECUTABLE
    "xtensa-lx106-elf-gcc <FLAGS> <CMAKE_CXX_LINK_FLAGS> <LINK_FLAGS> <OBJECTS> -o <TARGET> <LINK_LIBRARIES>")
set(CAPHEAP_TARGET_EXT_RAM "0x61000000;0x01000000")
# Programs that run: picolibc's hosted crt0 (exit(main())) entered through the sim glue's reset stub.
# (--undefined=__udivsi3: the C library's printf needs the division helpers too, and it is linked
# after them.)
set(CAPHEAP_TARGET_RUN_LINK_OPTIONS --crt0=hosted -Wl,--entry=capheap_sim_reset
    -Wl,--undefined=capheap_sim_reset -Wl,--undefined=capheap_sim_dblexc -Wl,--undefined=__udivsi3)

set(CMAKE_CROSSCOMPILING_EMULATOR
    qemu-system-xtensa -M sim -cpu lx106 -nographic -monitor none -serial none -semihosting -kernel)

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
