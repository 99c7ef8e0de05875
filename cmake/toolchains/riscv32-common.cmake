# Shared part of the RV32 toolchain files (rv32imc.cmake, rv32imac.cmake): riscv64-unknown-elf-gcc
# with picolibc, run on QEMU's `virt` machine with semihosting (Debian 12: gcc-riscv64-unknown-elf,
# picolibc-riscv64-unknown-elf, qemu-system-misc; `scripts/install-deps.sh --cross`).
#
# Debian 12 ships no C++ library for riscv64-unknown-elf, so the header-only parts capheap needs
# (<cstddef>, <cstdint>, <type_traits>, ...) are taken from libstdc++-arm-none-eabi-dev: generic
# templates, with the ARM multilib's c++config.h whose atomics settings match the target (v6-m: no
# atomic instructions, like rv32imc; v7-m: atomics, like rv32imac). Programs link with the C driver,
# so no libstdc++ is needed. See docs/porting.md.
#
# The including file sets CAPHEAP_TARGET, _capheap_march, _capheap_cxxconfig (the c++config.h
# directory) and _capheap_qemu_cpu (QEMU -cpu: the extensions the chip lacks are switched off, so an
# instruction it does not have traps).
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR riscv32)
set(CMAKE_C_COMPILER riscv64-unknown-elf-gcc)
set(CMAKE_CXX_COMPILER riscv64-unknown-elf-g++)
set(CMAKE_ASM_COMPILER riscv64-unknown-elf-gcc)
set(CMAKE_AR riscv64-unknown-elf-ar CACHE FILEPATH "")
set(CMAKE_RANLIB riscv64-unknown-elf-ranlib CACHE FILEPATH "")
set(CMAKE_OBJCOPY riscv64-unknown-elf-objcopy CACHE FILEPATH "")
set(CMAKE_OBJDUMP riscv64-unknown-elf-objdump CACHE FILEPATH "")
set(CAPHEAP_NM riscv64-unknown-elf-nm CACHE FILEPATH "nm of the target toolchain (link check, size report)")
set(CAPHEAP_SIZE_TOOL riscv64-unknown-elf-size CACHE FILEPATH "size of the target toolchain")
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)

set(_capheap_libstdcxx /usr/include/newlib/c++/12.2.1)
set(_capheap_common "${_capheap_march} -mabi=ilp32 -mcmodel=medany -ffunction-sections -fdata-sections --specs=picolibc.specs")
set(CMAKE_C_FLAGS_INIT "${_capheap_common}")
set(CMAKE_CXX_FLAGS_INIT
    "${_capheap_common} -fno-exceptions -fno-rtti -fno-threadsafe-statics -nostdinc++ -isystem ${_capheap_libstdcxx} -isystem ${_capheap_libstdcxx}/arm-none-eabi/${_capheap_cxxconfig}")
set(CMAKE_ASM_FLAGS_INIT "${_capheap_march} -mabi=ilp32")
# virt: RAM at 0x80000000 (128 MiB by default): 2 MiB for code, 6 MiB for data and stack; the tests'
# external RAM is 16 MiB at 0x81000000.
set(CMAKE_EXE_LINKER_FLAGS_INIT
    "-Wl,--gc-sections -Wl,--defsym=__flash=0x80000000 -Wl,--defsym=__flash_size=0x200000 -Wl,--defsym=__ram=0x80200000 -Wl,--defsym=__ram_size=0x600000 -Wl,--no-warn-rwx-segments")
set(CMAKE_CXX_LINK_EXECUTABLE
    "riscv64-unknown-elf-gcc <FLAGS> <CMAKE_CXX_LINK_FLAGS> <LINK_FLAGS> <OBJECTS> -o <TARGET> <LINK_LIBRARIES>")
set(CAPHEAP_TARGET_EXT_RAM "0x81000000;0x01000000")
set(CAPHEAP_TARGET_RUN_LINK_OPTIONS --oslib=semihost --crt0=semihost)

set(CMAKE_CROSSCOMPILING_EMULATOR
    qemu-system-riscv32 -M virt -cpu ${_capheap_qemu_cpu} -bios none -nographic -monitor none
    -serial none -semihosting-config enable=on,target=native -kernel)

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
