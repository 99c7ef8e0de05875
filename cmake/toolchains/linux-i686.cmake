# 32-bit x86 Linux build on an x86-64 host (g++-multilib), tests run under qemu-i386 when the kernel
# cannot execute 32-bit binaries itself. Used by `make m32-test` and the CI's m32 stage:
#   cmake -S . -B build-m32 --toolchain cmake/toolchains/linux-i686.cmake -DCAPHEAP_GTEST_SOURCE=/usr/src/googletest
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR i686)
set(CMAKE_C_COMPILER gcc)
set(CMAKE_CXX_COMPILER g++)
set(CMAKE_C_FLAGS_INIT "-m32")
set(CMAKE_CXX_FLAGS_INIT "-m32")
set(CMAKE_EXE_LINKER_FLAGS_INIT "-m32")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-m32")
find_program(CAPHEAP_QEMU_I386 qemu-i386)
if(CAPHEAP_QEMU_I386)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${CAPHEAP_QEMU_I386})
endif()
# Libraries come from the host's multilib directories; headers are shared.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_LIBRARY_ARCHITECTURE i386-linux-gnu)
