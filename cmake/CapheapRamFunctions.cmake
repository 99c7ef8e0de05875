# Copies a static library and moves the code of some of its members into RAM (cmake -P; used by the
# bare-metal build's target_*_in_ram tests, docs/porting.md "Hot functions in fast RAM"):
#
#   cmake -DAR=... -DOBJCOPY=... -DOBJDUMP=... -DINPUT=libcapheap.a -DOUTPUT=libcapheap_ram.a
#         -DMEMBERS=heap.cpp.obj,registry.cpp.obj -DWORK=<scratch dir> -P CapheapRamFunctions.cmake
#
# Every .text.<function> section of the named members (one per function: -ffunction-sections) is
# renamed .data.ramfunc.<function>. Linker scripts that gather *(.data .data.*) into the initialised
# RAM image (picolibc's, most vendor scripts) then place that code in RAM, and the startup code's
# .data copy loads it there: no linker script change and no source change. A firmware with its own
# script can instead select the same input sections by archive member (porting.md shows both).
cmake_minimum_required(VERSION 3.20)
foreach(v AR OBJCOPY OBJDUMP INPUT OUTPUT MEMBERS WORK)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "CapheapRamFunctions: ${v} is required")
  endif()
endforeach()
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
file(COPY_FILE "${INPUT}" "${WORK}/lib.a")
string(REPLACE "," ";" MEMBERS "${MEMBERS}")
foreach(member IN LISTS MEMBERS)
  execute_process(COMMAND ${AR} x lib.a ${member} WORKING_DIRECTORY "${WORK}" RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "CapheapRamFunctions: ${member} is not in ${INPUT}")
  endif()
  execute_process(COMMAND ${OBJDUMP} -h ${member} WORKING_DIRECTORY "${WORK}" OUTPUT_VARIABLE sections
                  RESULT_VARIABLE rc)
  string(REGEX MATCHALL "[ \t]\\.text\\.[^ \t\n]+" names "${sections}")
  set(args)
  foreach(name IN LISTS names)
    string(STRIP "${name}" name)
    string(SUBSTRING "${name}" 5 -1 rest)  # ".text.foo" -> ".foo"
    list(APPEND args --rename-section "${name}=.data.ramfunc${rest}")
  endforeach()
  execute_process(COMMAND ${OBJCOPY} ${args} ${member} WORKING_DIRECTORY "${WORK}" RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "CapheapRamFunctions: objcopy failed on ${member}")
  endif()
  execute_process(COMMAND ${AR} r lib.a ${member} WORKING_DIRECTORY "${WORK}" RESULT_VARIABLE rc)
endforeach()
file(COPY_FILE "${WORK}/lib.a" "${OUTPUT}")
