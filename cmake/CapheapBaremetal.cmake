# Bare-metal (firmware) build of capheap, included by the top-level CMakeLists.txt when a toolchain
# file from cmake/toolchains/ sets CMAKE_SYSTEM_NAME Generic. See docs/porting.md.
#
#   capheap                   static library: bare-metal port + core + caps + capi, freestanding
#   capheap_link_check        (ALL) fails the build if libcapheap.a references or defines the heap,
#                             operator new/delete, __cxa_*, exception support, RTTI or stdio
#   capheap_size_*            (ALL) the size probes of `make size` (tests/baremetal/size), each
#                             link-checked as a whole image and linked with a map file
#   capheap_target_*          (CAPHEAP_BUILD_TESTS) the target tests, run under QEMU by ctest
#
# Cache variables:
#   CAPHEAP_LINK_CHECK_INJECT  "", "printf" or "malloc": compiles a use of that function into the
#                              library (tests/baremetal/link_check_inject.c) to show that the link
#                              check fails the build (tests/baremetal/link_check_selftest.sh)
#   CAPHEAP_TARGET_SEED        seed of the randomised target tests (printed by every run)

if(NOT CAPHEAP_TARGET)
  set(CAPHEAP_TARGET ${CMAKE_SYSTEM_PROCESSOR})
endif()
if(NOT CAPHEAP_NM)
  find_program(CAPHEAP_NM NAMES ${CMAKE_CXX_COMPILER_TARGET}-nm nm REQUIRED)
endif()

add_library(capheap STATIC
  $<TARGET_OBJECTS:capheap_port_baremetal>
  $<TARGET_OBJECTS:capheap_core>
  $<TARGET_OBJECTS:capheap_caps>
  $<TARGET_OBJECTS:capheap_capi>)
add_library(capheap::capheap ALIAS capheap)
target_include_directories(capheap PUBLIC ${PROJECT_SOURCE_DIR}/include)

# capheap::malloc for firmware: the C library's malloc, calloc, realloc, free, memalign, ... over
# heap_caps (src/malloc/libc_malloc.cpp, its bare-metal branch; reference spec 1.6). A separate
# archive, outside the link check (it defines malloc; the library itself must not use it); calls
# inside it stay calls (no folding of malloc + memset into calloc). Tested by target_libc_malloc.
add_library(capheap_malloc STATIC ${PROJECT_SOURCE_DIR}/src/malloc/libc_malloc.cpp)
add_library(capheap::malloc ALIAS capheap_malloc)
target_compile_options(capheap_malloc PRIVATE -fno-builtin-malloc -fno-builtin-calloc
                       -fno-builtin-realloc -fno-builtin-free)
target_include_directories(capheap_malloc PRIVATE ${PROJECT_SOURCE_DIR}/src)
target_link_libraries(capheap_malloc PUBLIC capheap)

set(CAPHEAP_LINK_CHECK_INJECT "" CACHE STRING
    "Self-test of the link check: compile a use of printf or malloc into the library (must fail)")
if(CAPHEAP_LINK_CHECK_INJECT)
  if(NOT CAPHEAP_LINK_CHECK_INJECT MATCHES "^(printf|malloc)$")
    message(FATAL_ERROR "CAPHEAP_LINK_CHECK_INJECT must be printf or malloc")
  endif()
  message(STATUS "capheap: injecting a use of ${CAPHEAP_LINK_CHECK_INJECT} (the link check must fail)")
  target_sources(capheap PRIVATE ${PROJECT_SOURCE_DIR}/tests/baremetal/link_check_inject.c)
  set_source_files_properties(${PROJECT_SOURCE_DIR}/tests/baremetal/link_check_inject.c PROPERTIES
    COMPILE_DEFINITIONS CAPHEAP_INJECT_${CAPHEAP_LINK_CHECK_INJECT}=1)
endif()

# Xtensa lx106 on QEMU's sim machine (cmake/toolchains/xtensa-lx106.cmake): picolibc's linker script
# with L32R literals first and the DoubleExceptionVector placed, generated from the installed script
# (not kept in this repository); libgcc's missing division helpers with libcapheap.a; the sim
# run-time glue for the programs that run (CAPHEAP_TARGET_RUN_LIBS).
set(CAPHEAP_TARGET_RUN_LIBS "")
if(CAPHEAP_XTENSA_SIM)
  set(_picolibc_ld /usr/lib/xtensa-lx106-elf/lib/picolibc.ld)
  if(NOT EXISTS ${_picolibc_ld})
    message(FATAL_ERROR "${_picolibc_ld} not found (install picolibc-xtensa-lx106-elf)")
  endif()
  file(READ ${_picolibc_ld} _ld)
  macro(_capheap_ld_edit from to)
    string(FIND "${_ld}" "${from}" _at)
    if(_at EQUAL -1)
      message(FATAL_ERROR "xtensa: ${_picolibc_ld} does not have the expected layout")
    endif()
    string(REPLACE "${from}" "${to}" _ld "${_ld}")
  endmacro()
  _capheap_ld_edit("\ttls PT_TLS;\n" "\ttls PT_TLS;\n\tvec PT_LOAD;\n")
  _capheap_ld_edit("\tPROVIDE(__stack = "
                   "\t.capheap_dblexc 0x40000070 : { KEEP (*(.capheap_dblexc)) } :vec\n\tPROVIDE(__stack = ")
  _capheap_ld_edit("\t\tKEEP (*(.text.init.enter))\n"
                   "\t\tKEEP (*(.text.init.enter))\n\t\t*(.init.literal .fini.literal)\n")
  _capheap_ld_edit("\t.text : {\n" "\t.text : {\n\t\t*(.literal .literal.*)\n")
  file(WRITE ${CMAKE_BINARY_DIR}/xtensa_sim.ld "/* Generated from ${_picolibc_ld} by cmake/CapheapBaremetal.cmake */\n${_ld}")
  add_link_options(-T ${CMAKE_BINARY_DIR}/xtensa_sim.ld)

  add_library(capheap_libgcc_extra STATIC ${PROJECT_SOURCE_DIR}/tests/baremetal/xtensa/libgcc_extra.c)
  target_compile_options(capheap_libgcc_extra PRIVATE -O2)
  # After libcapheap.a on every link line (the library's own divisions need it).
  target_link_libraries(capheap PUBLIC capheap_libgcc_extra)
  add_library(capheap_sim_runtime STATIC ${PROJECT_SOURCE_DIR}/tests/baremetal/xtensa/sim_runtime.c)
  set(CAPHEAP_TARGET_RUN_LIBS capheap_sim_runtime)
endif()

# capheap_link_check_file(NAME FILE DEPENDS...): a stamp written only when FILE passes the check,
# so a failed check fails every build until it is fixed.
function(capheap_link_check_file name file)
  set(stamp ${CMAKE_CURRENT_BINARY_DIR}/${name}.link-check)
  add_custom_command(
    OUTPUT ${stamp}
    COMMAND ${CMAKE_COMMAND} -DNM=${CAPHEAP_NM} -DFILE=${file} -DSTAMP=${stamp}
            -P ${PROJECT_SOURCE_DIR}/cmake/CapheapLinkCheck.cmake
    DEPENDS ${ARGN} ${PROJECT_SOURCE_DIR}/cmake/CapheapLinkCheck.cmake
    COMMENT "Link check: ${name} (no heap, new/delete, C++ runtime or stdio)"
    VERBATIM)
  add_custom_target(${name}_link_check ALL DEPENDS ${stamp})
endfunction()
capheap_link_check_file(capheap $<TARGET_FILE:capheap> capheap)

# ctest runs programs under QEMU (CMAKE_CROSSCOMPILING_EMULATOR): the target tests and size_ram.
enable_testing()

# Size probes (make size, scripts/size-report.sh): small programs that use one part of the API,
# linked like firmware (picolibc's plain crt0, no OS library, --gc-sections) with a map file.
add_subdirectory(${PROJECT_SOURCE_DIR}/tests/baremetal/size ${CMAKE_BINARY_DIR}/size)

if(CAPHEAP_BUILD_TESTS)
  add_subdirectory(${PROJECT_SOURCE_DIR}/tests/baremetal ${CMAKE_BINARY_DIR}/target-tests)
endif()
