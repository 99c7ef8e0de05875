# CMake toolchain for Arm Cortex-M4 bare metal: arm-none-eabi-gcc + picolibc (Debian 12 packages
# gcc-arm-none-eabi, picolibc-arm-none-eabi, libstdc++-arm-none-eabi-dev; `scripts/install-deps.sh --cross`).
#
#   cmake -S . -B build-m4 -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-cortex-m4.cmake -DCMAKE_BUILD_TYPE=MinSizeRel
#
# Executables link against picolibc with semihosting (stdio and exit through the debugger/QEMU) and the
# semihost crt0, which exits with main's return value and turns a CPU fault into exit status 1. The
# memory layout fits QEMU's mps2-an386 board; for real hardware set CAPHEAP_M4_MEMORY (or pass your own
# linker script with -T). With qemu-system-arm installed, ctest runs test executables under QEMU.
#
# Cache options:
#   CAPHEAP_M4_FLOAT_ABI   soft (default) | softfp | hard   (softfp/hard use -mfpu=fpv4-sp-d16: Cortex-M4F)
#   CAPHEAP_M4_MEMORY      the __flash/__ram --defsym flags for picolibc's linker script
#   CAPHEAP_M4_QEMU_MACHINE  qemu-system-arm -M value (mps2-an386 is a Cortex-M4 board)
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR arm)

set(CMAKE_C_COMPILER arm-none-eabi-gcc)
set(CMAKE_CXX_COMPILER arm-none-eabi-g++)
set(CMAKE_ASM_COMPILER arm-none-eabi-gcc)
set(CMAKE_AR arm-none-eabi-ar CACHE FILEPATH "")
set(CMAKE_RANLIB arm-none-eabi-ranlib CACHE FILEPATH "")
set(CMAKE_OBJCOPY arm-none-eabi-objcopy CACHE FILEPATH "")
set(CMAKE_SIZE arm-none-eabi-size CACHE FILEPATH "")

# try_compile cannot link without a memory layout: test the compilers with a static library.
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)

set(CAPHEAP_M4_FLOAT_ABI "soft" CACHE STRING "Float ABI: soft, softfp or hard")
set_property(CACHE CAPHEAP_M4_FLOAT_ABI PROPERTY STRINGS soft softfp hard)
set(CAPHEAP_M4_MEMORY
    "-Wl,--defsym=__flash=0x00000000 -Wl,--defsym=__flash_size=0x00400000 -Wl,--defsym=__ram=0x20000000 -Wl,--defsym=__ram_size=0x00400000"
    CACHE STRING "picolibc linker-script memory layout (mps2-an386 by default)")
set(CAPHEAP_M4_QEMU_MACHINE "mps2-an386" CACHE STRING "qemu-system-arm -M value for ctest")
# Make the cache options visible to try_compile projects.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES CAPHEAP_M4_FLOAT_ABI CAPHEAP_M4_MEMORY)

set(_capheap_m4_cpu "-mcpu=cortex-m4 -mthumb -mfloat-abi=${CAPHEAP_M4_FLOAT_ABI}")
if(NOT CAPHEAP_M4_FLOAT_ABI STREQUAL "soft")
  string(APPEND _capheap_m4_cpu " -mfpu=fpv4-sp-d16")
endif()
set(_capheap_m4_common "${_capheap_m4_cpu} -ffunction-sections -fdata-sections")

# picolibc.specs for C and picolibcpp.specs for C++ select picolibc's headers, libraries and linker
# script (picolibcpp also adds crtbegin/crtend for static constructors).
set(CMAKE_C_FLAGS_INIT "${_capheap_m4_common} --specs=picolibc.specs")
set(CMAKE_CXX_FLAGS_INIT
    "${_capheap_m4_common} --specs=picolibcpp.specs -fno-exceptions -fno-rtti -fno-threadsafe-statics")
set(CMAKE_ASM_FLAGS_INIT "${_capheap_m4_cpu}")
set(CMAKE_EXE_LINKER_FLAGS_INIT "--oslib=semihost --crt0=semihost -Wl,--gc-sections ${CAPHEAP_M4_MEMORY}")

set(CMAKE_CROSSCOMPILING_EMULATOR
    qemu-system-arm -M ${CAPHEAP_M4_QEMU_MACHINE} -nographic -monitor none -serial none
    -semihosting-config enable=on,target=native -kernel)

# Search headers and libraries only in the target environment, programs only on the host.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
