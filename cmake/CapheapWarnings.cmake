# Warning set and sanitizer flags shared by every capheap target.
set(CAPHEAP_WARNINGS -Wall -Wextra -Wconversion -Wsign-conversion -Wshadow -Wcast-align
    -Wundef -Wdouble-promotion)
if(CAPHEAP_WERROR)
  list(APPEND CAPHEAP_WARNINGS -Werror)
endif()

if(CAPHEAP_HARDENING_LEVEL STREQUAL "")
  set(_capheap_hardening $<IF:$<CONFIG:Debug>,2,1>)
else()
  set(_capheap_hardening ${CAPHEAP_HARDENING_LEVEL})
endif()

function(capheap_target_defaults target)
  target_compile_options(${target} PRIVATE ${CAPHEAP_WARNINGS})
  target_compile_definitions(${target} PRIVATE CAPHEAP_HARDENING_LEVEL=${_capheap_hardening})
endfunction()

# Library code: no exceptions, no RTTI (the core must stay freestanding-clean).
function(capheap_library_defaults target)
  capheap_target_defaults(${target})
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-fno-exceptions -fno-rtti>)
  target_include_directories(${target} PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
                                       PRIVATE ${PROJECT_SOURCE_DIR}/src)
endfunction()

if(CAPHEAP_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
if(CAPHEAP_TSAN)
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
endif()
