#!/usr/bin/env bash
# Address-shift run (make shift-test; docs/testing.md section "Address-shift run"): every test of an
# existing host build, once per shift, with tests/support/shift_heap.c preloaded so that the host's
# malloc hands out other addresses than in a normal run. Catches tests whose outcome depends on
# where the host placed a buffer (the nodeco stage's failure at fdd9e6a's parent:
# a 4 KiB heap that happened to hold an 8 KiB-aligned address).
#
#   scripts/shift-test.sh BUILD_DIR [SHIFT...]      SHIFT = bytes taken before main (default below)
# Environment: JOBS (2), CTEST_ARGS (extra ctest arguments).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build=${1:?usage: scripts/shift-test.sh BUILD_DIR [SHIFT...]}
shift
shifts=("$@")
if [[ ${#shifts[@]} -eq 0 ]]; then
  # Different phases modulo 16 KiB (glibc rounds to 16 bytes; pages move whole with ASLR anyway).
  shifts=(48 1040 2064 4112 6160 8176)
fi
[[ -f "$build/CTestTestfile.cmake" ]] || { echo "shift-test: $build is not a configured test build" >&2; exit 2; }
mkdir -p "$build/shift"
lib="$(cd "$build" && pwd)/shift/libcapheap_shift.so"
${CC:-cc} -shared -fPIC -O2 -Wall -Wextra -Werror -o "$lib" "$root/tests/support/shift_heap.c"
failed=()
for s in "${shifts[@]}"; do
  log="$build/shift/shift-$s.log"
  # shellcheck disable=SC2086  # CTEST_ARGS is a list of arguments
  if CAPHEAP_SHIFT_BYTES=$s LD_PRELOAD="$lib${LD_PRELOAD:+:$LD_PRELOAD}" \
      ctest --test-dir "$build" -j "${JOBS:-2}" --output-on-failure --no-tests=error ${CTEST_ARGS:-} \
      >"$log" 2>&1; then
    echo "shift-test: $s bytes: $(grep -E 'tests passed' "$log" | tail -n 1)"
  else
    failed+=("$s")
    echo "shift-test: $s bytes: FAILED (log: $log)"
    grep -E '^\[  FAILED  \]|Failure$|^\s+[0-9]+ - .*\((Failed|Timeout|SEGFAULT|Subprocess aborted|Exception)\)' "$log" | head -n 40 || tail -n 40 "$log"
  fi
done
if [[ ${#failed[@]} -ne 0 ]]; then
  echo "shift-test: FAILED with shifts ${failed[*]} (one again: scripts/shift-test.sh $build ${failed[0]})"
  exit 1
fi
echo "shift-test: OK (${#shifts[@]} shifts: ${shifts[*]})"
