# Shared part of the Cortex-M toolchain files (cortex-m0plus.cmake, cortex-m4f.cmake,
# cortex-m33.cmake): arm-none-eabi-gcc with picolibc (Debian 12: gcc-arm-none-eabi,
# picolibc-arm-none-eabi, libstdc++-arm-none-eabi-dev for the header-only C++ parts, qemu-system-arm;
# `scripts/install-deps.sh --cross`). See docs/porting.md.
#
# The including file sets, before including this one:
#   CAPHEAP_TARGET          report name of the target (cortex-m4, ...)
#   _capheap_cpu_flags      -mcpu/-mfloat-abi/-mfpu flags
#   _capheap_memory         picolibc linker-script layout: __flash, __flash_size, __ram, __ram_size
#   _capheap_qemu           qemu-system-arm machine arguments (-M ..., optionally -cpu ...)
#   CAPHEAP_TARGET_EXT_RAM  "start;size" of memory outside the linker's RAM that tests may use as
#                           external RAM (PSRAM-like), or empty
#
# Executables link against picolibc with semihosting (stdio and exit go to QEMU) and the semihost
# crt0: main's return value becomes QEMU's exit status, a CPU fault prints the registers and exits
# with status 1. C++ programs are linked with the C driver, so no libstdc++ / libsupc++ (and with
# them no malloc) can be pulled in; capheap and its tests need only header-only C++.
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR arm)
set(CMAKE_C_COMPILER arm-none-eabi-gcc)
set(CMAKE_CXX_COMPILER arm-none-eabi-g++)
set(CMAKE_ASM_COMPILER arm-none-eabi-gcc)
set(CMAKE_AR arm-none-eabi-ar CACHE FILEPATH "")
set(CMAKE_RANLIB arm-none-eabi-ranlib CACHE FILEPATH "")
set(CMAKE_OBJCOPY arm-none-eabi-objcopy CACHE FILEPATH "")
set(CMAKE_OBJDUMP arm-none-eabi-objdump CACHE FILEPATH "")
set(CAPHEAP_NM arm-none-eabi-nm CACHE FILEPATH "nm of the target toolchain (link check, size report)")
set(CAPHEAP_SIZE_TOOL arm-none-eabi-size CACHE FILEPATH "size of the target toolchain")

# try_compile cannot link without a memory layout: test the compilers with a static library.
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)

set(_capheap_common "${_capheap_cpu_flags} -mthumb -ffunction-sections -fdata-sections --specs=picolibc.specs")
set(CMAKE_C_FLAGS_INIT "${_capheap_common}")
set(CMAKE_CXX_FLAGS_INIT "${_capheap_common} -fno-exceptions -fno-rtti -fno-threadsafe-statics")
set(CMAKE_ASM_FLAGS_INIT "${_capheap_cpu_flags} -mthumb")
set(CMAKE_EXE_LINKER_FLAGS_INIT "-Wl,--gc-sections ${_capheap_memory}")
# Programs that run under QEMU (the target tests) add these; the size probes use picolibc's plain
# crt0 and no OS library, as a firmware image would.
set(CAPHEAP_TARGET_RUN_LINK_OPTIONS --oslib=semihost --crt0=semihost)
set(CMAKE_CXX_LINK_EXECUTABLE
    "arm-none-eabi-gcc <FLAGS> <CMAKE_CXX_LINK_FLAGS> <LINK_FLAGS> <OBJECTS> -o <TARGET> <LINK_LIBRARIES>")

set(CMAKE_CROSSCOMPILING_EMULATOR
    qemu-system-arm ${_capheap_qemu} -nographic -monitor none -serial none
    -semihosting-config enable=on,target=native -kernel)

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
