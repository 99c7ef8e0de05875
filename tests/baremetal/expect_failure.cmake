# Runs a target program that must fail (cmake -P, from ctest):
#   -DEMULATOR="qemu-system-arm|-M|...|-kernel" -DPROGRAM=<elf> -DEXPECT=<text the output must contain>
# Passes only if the program exits with a non-zero status AND its output contains EXPECT, so an
# emulator that cannot start (also a non-zero exit) does not pass for a failing test.
cmake_minimum_required(VERSION 3.20)
string(REPLACE "|" ";" _cmd "${EMULATOR}")
execute_process(COMMAND ${_cmd} ${PROGRAM} RESULT_VARIABLE _rc OUTPUT_VARIABLE _out
                ERROR_VARIABLE _out TIMEOUT 120)
message("${_out}")
if(_rc EQUAL 0)
  message(FATAL_ERROR "expected a non-zero exit status, got 0")
endif()
string(FIND "${_out}" "${EXPECT}" _at)
if(_at EQUAL -1)
  message(FATAL_ERROR "exit status ${_rc}, but the output lacks \"${EXPECT}\"")
endif()
message("expected failure seen: exit status ${_rc}")
