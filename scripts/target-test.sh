#!/usr/bin/env bash
# Builds and runs the target tests on every emulated target (make target-test; docs/porting.md):
# for each target, `cmake --preset <target>` (bare metal, MinSizeRel), a build with the link check,
# and ctest, which runs each test program under QEMU. Prints one summary line per target and exits
# non-zero if any target failed to configure, build (link check included) or pass its tests.
#
#   scripts/target-test.sh [TARGET...]      default: cortex-m0plus cortex-m4f cortex-m33 rv32imc rv32imac xtensa-lx106
# Environment: CAPHEAP_TARGET_SEED (seed of the randomised tests; default: the build's, printed),
#              CAPHEAP_NO_INSTALL=1 (do not install missing packages), JOBS (2).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=(cortex-m0plus cortex-m4f cortex-m33 rv32imc rv32imac xtensa-lx106)
fi
jobs=${JOBS:-2}
if [[ ${CAPHEAP_NO_INSTALL:-0} != 1 ]]; then
  bash scripts/install-deps.sh --cross
fi

extra=()
if [[ -n ${CAPHEAP_TARGET_SEED:-} ]]; then
  extra+=("-DCAPHEAP_TARGET_SEED=$CAPHEAP_TARGET_SEED")
fi

start=$SECONDS
summary=()
failed=0
for t in "${targets[@]}"; do
  t0=$SECONDS
  status=ok
  echo "== target $t"
  if ! cmake --preset "$t" "${extra[@]}" >"build-target-$t.configure.log" 2>&1; then
    cat "build-target-$t.configure.log"
    status="configure FAILED"
  elif ! cmake --build --preset "$t" -j "$jobs"; then
    status="build FAILED"
  elif ! ctest --preset "$t" -j "$jobs" --output-on-failure --no-tests=error; then
    status="tests FAILED"
  fi
  rm -f "build-target-$t.configure.log"
  summary+=("$(printf '%-14s %-18s %4d s' "$t" "$status" $((SECONDS - t0)))")
  [[ $status == ok ]] || failed=$((failed + 1))
done

echo "== target tests: ${#targets[@]} targets in $((SECONDS - start)) s"
printf '  %s\n' "${summary[@]}"
if [[ $failed -ne 0 ]]; then
  echo "target-test: $failed target(s) FAILED"
  exit 1
fi
echo "target-test: OK"
