#!/usr/bin/env bash
# Shows that the bare-metal link check (cmake/CapheapLinkCheck.cmake) fails the build: configures a
# Cortex-M4F build with a deliberate use of printf (then of malloc) compiled into libcapheap
# (-DCAPHEAP_LINK_CHECK_INJECT=..., tests/baremetal/link_check_inject.c), builds it and expects the
# build to FAIL with the offending symbol named. Exits 0 only if both injections were caught.
#
#   tests/baremetal/link_check_selftest.sh [BUILD_DIR]      (default build-target/link-check-selftest)
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
dir=${1:-build-target/link-check-selftest}
# (The logs sit next to the build directory, which cmake creates only later.)
mkdir -p "$(dirname "$dir")"
status=0
for inject in printf malloc; do
  log="$dir.$inject.log"
  echo "== link check self-test: injecting $inject"
  if ! cmake -S . -B "$dir" -G Ninja --toolchain cmake/toolchains/cortex-m4f.cmake \
       -DCMAKE_BUILD_TYPE=MinSizeRel -DCAPHEAP_BUILD_TESTS=OFF \
       -DCAPHEAP_LINK_CHECK_INJECT="$inject" >"$log" 2>&1; then
    cat "$log"
    echo "link check self-test: configure failed"
    exit 1
  fi
  if cmake --build "$dir" -j "${JOBS:-2}" >>"$log" 2>&1; then
    echo "link check self-test: FAILED: the build passed with $inject injected"
    status=1
  elif grep -q "U $inject (" "$log" && grep -q "capheap link check FAILED" "$log"; then
    grep -E "link check FAILED|: U $inject \(" "$log" | sed 's/^/  /'
    echo "  -> the build failed as it must"
  else
    tail -n 30 "$log"
    echo "link check self-test: FAILED: the build failed, but not with the link check naming $inject"
    status=1
  fi
done
if [[ $status -eq 0 ]]; then
  echo "link check self-test: OK (printf and malloc in the library both fail the build)"
fi
exit $status
