# Link check of the freestanding library (cmake -P; run by the bare-metal build, docs/porting.md).
#
#   cmake -DNM=<target nm> -DFILE=<archive or ELF> -DSTAMP=<file written on success> -P CapheapLinkCheck.cmake
#
# FILE is libcapheap.a (every symbol its objects reference or define) or a linked size probe (every
# symbol in the image). Fails, listing each offender as `object: TYPE symbol (what)`, if anything
# names the heap (malloc and friends), operator new/delete, the C++ runtime (__cxa_*, guards,
# atexit), exception unwinding, RTTI, libstdc++'s throw helpers or stdio (printf and friends).
# The same rules as .ci/check-freestanding, applied to what the build really produced.
cmake_minimum_required(VERSION 3.20)
if(NOT NM OR NOT FILE)
  message(FATAL_ERROR "CapheapLinkCheck: NM and FILE are required")
endif()

set(_exact_heap malloc free calloc realloc reallocarray aligned_alloc posix_memalign memalign valloc
    pvalloc _malloc_r _free_r _calloc_r _realloc_r sbrk _sbrk _sbrk_r)
set(_exact_stdio printf fprintf vprintf vfprintf sprintf snprintf vsprintf vsnprintf iprintf
    fiprintf puts fputs putchar fputc putc fwrite fflush _printf_r _puts_r stdout stderr stdin
    _impure_ptr __stdout __stderr __iob)
# prefix|reason
set(_prefixes "_Znw|operator new" "_Zna|operator new" "_Zdl|operator delete" "_Zda|operator delete"
    "__cxa_|C++ runtime (guards, atexit, pure virtual, exceptions)"
    "__aeabi_atexit|C++ runtime (guards, atexit, pure virtual, exceptions)"
    "__dso_handle|C++ runtime (guards, atexit, pure virtual, exceptions)"
    "__gxx_personality|exception unwinding" "_Unwind_|exception unwinding"
    "__aeabi_unwind_cpp_pr|exception unwinding" "_ZTI|RTTI" "_ZTS|RTTI")

execute_process(COMMAND ${NM} -P ${FILE} OUTPUT_VARIABLE _out ERROR_VARIABLE _err
                RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "CapheapLinkCheck: ${NM} -P ${FILE} failed: ${_err}")
endif()
string(REPLACE "\n" ";" _lines "${_out}")
set(_object "${FILE}")
set(_found "")
set(_count 0)
foreach(_line IN LISTS _lines)
  if(_line MATCHES "^(.*\\[(.+)\\]):$")  # archive member header: libcapheap.a[heap.cpp.obj]:
    set(_object "${CMAKE_MATCH_2}")
    continue()
  endif()
  if(NOT _line MATCHES "^([^ ]+) ([A-Za-z]) ")
    continue()
  endif()
  set(_sym "${CMAKE_MATCH_1}")
  set(_type "${CMAKE_MATCH_2}")
  set(_why "")
  if(_sym IN_LIST _exact_heap)
    set(_why "heap allocation")
  elseif(_sym IN_LIST _exact_stdio)
    set(_why "stdio")
  elseif(_sym MATCHES "^_ZSt[0-9]+__throw_" OR _sym STREQUAL "_ZSt9terminatev")
    set(_why "libstdc++ throw helper")
  else()
    foreach(_p IN LISTS _prefixes)
      string(REPLACE "|" ";" _pair "${_p}")
      list(GET _pair 0 _prefix)
      list(GET _pair 1 _reason)
      string(LENGTH "${_prefix}" _n)
      string(SUBSTRING "${_sym}" 0 ${_n} _head)
      if(_head STREQUAL _prefix)
        set(_why "${_reason}")
        break()
      endif()
    endforeach()
  endif()
  if(_why)
    string(APPEND _found "  ${_object}: ${_type} ${_sym} (${_why})\n")
    math(EXPR _count "${_count} + 1")
  endif()
endforeach()

if(_count GREATER 0)
  if(STAMP)
    file(REMOVE "${STAMP}")
  endif()
  message(FATAL_ERROR "capheap link check FAILED for ${FILE}: ${_count} forbidden symbol(s) "
                      "(the freestanding layers must not use the heap, new/delete, the C++ runtime "
                      "or stdio):\n${_found}")
endif()
if(STAMP)
  file(WRITE "${STAMP}" "ok\n")
endif()
