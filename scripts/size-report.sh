#!/usr/bin/env bash
# capheap size report (make size; docs/performance.md section 7). For every bare-metal target:
#   * a "minimal firmware" build (build-size/<target>-min): no decoration (poisoning/owner words),
#     no heap tracing, recorder or task tracking, no forced inlining, hardening level 1, -Os;
#   * a "full-feature" build (build-size/<target>-full): all of those compiled in;
#   * Cortex-M4F only: the minimal build with forced inlining (the host default), for comparison.
# Each build links the size probes (tests/baremetal/size) with --gc-sections and a map file;
# scripts/size-map.awk sums the input sections of capheap's objects. The RAM per heap comes from
# size_ram, run under QEMU.
#
# Writes build/size-report.txt (the tables) and build/size-report.json:
#   {"<target>": {"engine_min": B, "multi_heap_api": B, "heap_caps": B}, ...}
# with B = code bytes (.text + .rodata + .data) of capheap's objects in the minimal build.
#
#   scripts/size-report.sh [TARGET...]     TARGET = a toolchain/preset name (cortex-m4f, rv32imc, ...)
# Environment: CAPHEAP_NO_INSTALL=1, JOBS (2), CAPHEAP_SIZE_OUT (build).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=(cortex-m0plus cortex-m4f cortex-m33 rv32imc rv32imac xtensa-lx106)
fi
jobs=${JOBS:-2}
out=${CAPHEAP_SIZE_OUT:-build}
if [[ ${CAPHEAP_NO_INSTALL:-0} != 1 ]]; then
  bash scripts/install-deps.sh --cross
fi
mkdir -p "$out" build-size

min_opts=(-DCAPHEAP_DECORATION=OFF -DCAPHEAP_HEAP_TRACE=OFF -DCAPHEAP_RECORDER=OFF
  -DCAPHEAP_TASK_TRACKING=OFF -DCAPHEAP_FORCE_INLINE=OFF)
full_opts=(-DCAPHEAP_DECORATION=ON -DCAPHEAP_HEAP_TRACE=ON -DCAPHEAP_RECORDER=ON
  -DCAPHEAP_TASK_TRACKING=ON -DCAPHEAP_FORCE_INLINE=OFF)
inline_opts=(-DCAPHEAP_DECORATION=OFF -DCAPHEAP_HEAP_TRACE=OFF -DCAPHEAP_RECORDER=OFF
  -DCAPHEAP_TASK_TRACKING=OFF -DCAPHEAP_FORCE_INLINE=ON)

# build TARGET VARIANT OPTIONS... -> build-size/TARGET-VARIANT
build() {
  local t=$1 variant=$2 dir="build-size/$1-$2"
  shift 2
  echo "== size: $t ($variant)"
  cmake -S . -B "$dir" -G Ninja --toolchain "cmake/toolchains/$t.cmake" -DCMAKE_BUILD_TYPE=MinSizeRel \
    -DCAPHEAP_BUILD_TESTS=OFF "$@" >"$dir.configure.log" 2>&1 || { cat "$dir.configure.log"; return 1; }
  cmake --build "$dir" -j "$jobs" >"$dir.build.log" 2>&1 || { tail -n 40 "$dir.build.log"; return 1; }
}

# sums DIR PROBE GROUPS -> "text rodata data bss code lib port" for capheap's objects (GROUPS) in
# the probe; lib = C library/libgcc code beyond the baseline image, port = the bare-metal port's code
sums() {
  local dir=$1 probe=$2 groups=$3
  awk -f scripts/size-map.awk "$dir/size/size_$probe.map" >"$dir/size/size_$probe.sums"
  awk -f scripts/size-map.awk "$dir/size/size_baseline.map" >"$dir/size/size_baseline.sums"
  awk -v groups=" $groups " '
    FNR == NR { if ($1 == "lib" && $2 != "bss") base += $3; next }
    index(groups, " " $1 " ") { s[$2] += $3 }
    $1 == "lib" && $2 != "bss" { lib += $3 }
    $1 == "port" && $2 != "bss" { port += $3 }
    END {
      code = s["text"] + s["rodata"] + s["data"]
      printf "%d %d %d %d %d %d %d\n", s["text"], s["rodata"], s["data"], s["bss"], code, lib - base, port
    }' "$dir/size/size_baseline.sums" "$dir/size/size_$probe.sums"
}

report="$out/size-report.txt"
json="$out/size-report.json"
{
  echo "capheap size report ($(date -u +%Y-%m-%d), $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
  echo
  echo "Compilers: $(arm-none-eabi-gcc --version | head -n1); $(riscv64-unknown-elf-gcc --version | head -n1);"
  echo "           $(xtensa-lx106-elf-gcc --version | head -n1)"
  echo "Flags: -Os -ffunction-sections -fdata-sections -fno-exceptions -fno-rtti, -Wl,--gc-sections,"
  echo "       picolibc, CAPHEAP_HARDENING_LEVEL=1 (MinSizeRel)"
  echo "Minimal firmware: ${min_opts[*]}"
  echo "Full features:    ${full_opts[*]}"
  echo
  echo "Bytes of capheap's own objects in each linked probe (tests/baremetal/size):"
  echo "  engine_min      capheap::Heap::create + allocate + deallocate (src/core objects only)"
  echo "  multi_heap_api  every multi_heap_* function + capheap_heap_register (all capheap objects)"
  echo "  heap_caps       every heap_caps_* + multi_heap_* function, capheap_set_layout (all objects)"
  echo "  code = .text + .rodata + .data (flash); ram = .data + .bss; +lib = C library / libgcc code"
  echo "  the probe pulls in beyond an empty image (e.g. division helpers), not included in code;"
  echo "  port = code of the bare-metal port in the probe (engine_min: the default fail hook's report"
  echo "  through the port's printf), included in code for multi_heap_api and heap_caps only"
  echo
} >"$report"

json_body=""
ram_lines=""
full_lines=""
inline_lines=""
printf '%-14s %-15s %7s %7s %6s %6s %7s %6s %6s\n' target probe text rodata data bss code +lib port >>"$report"
for t in "${targets[@]}"; do
  name=$(sed -n 's/^set(CAPHEAP_TARGET \([^ )]*\)).*/\1/p' "cmake/toolchains/$t.cmake")
  [[ -n $name ]] || name=$t
  build "$t" min "${min_opts[@]}"
  build "$t" full "${full_opts[@]}"
  entry=""
  for probe in engine_min multi_heap heap_caps; do
    groups="engine port caps capi"
    [[ $probe == engine_min ]] && groups="engine"
    read -r text rodata data bss code lib port < <(sums "build-size/$t-min" "$probe" "$groups")
    printf '%-14s %-15s %7d %7d %6d %6d %7d %6d %6d\n' "$name" "$probe" "$text" "$rodata" "$data" \
      "$bss" "$code" "$lib" "$port" >>"$report"
    key=$probe
    [[ $probe == multi_heap ]] && key=multi_heap_api
    entry+="${entry:+, }\"$key\": $code"
    read -r _ _ fdata fbss fcode _ _ < <(sums "build-size/$t-full" "$probe" "$groups")
    full_lines+="$(printf '%-14s %-15s %7d %7d' "$name" "$probe" "$fcode" $((fdata + fbss)))"$'\n'
  done
  if [[ $t == cortex-m4f ]]; then
    build "$t" inline "${inline_opts[@]}"
    for probe in engine_min multi_heap heap_caps; do
      groups="engine port caps capi"
      [[ $probe == engine_min ]] && groups="engine"
      read -r _ _ _ _ icode _ _ < <(sums "build-size/$t-inline" "$probe" "$groups")
      inline_lines+="$(printf '%-14s %-15s %7d' "$name" "$probe" "$icode")"$'\n'
    done
  fi
  json_body+="${json_body:+,$'\n'}  \"$name\": {$entry}"
  # RAM per heap, measured on the target.
  ram=$(ctest --test-dir "build-size/$t-min" -R '^size_ram$' -V 2>&1 | sed -n 's/.*ram-per-heap: //p' | head -n1)
  if [[ -z $ram ]]; then
    echo "size: size_ram did not run on $t" >&2
    exit 1
  fi
  ram_lines+="$(printf '%-14s %s' "$name" "$ram")"$'\n'
done
{
  echo
  echo "Full features (${full_opts[*]}):"
  printf '%-14s %-15s %7s %7s\n' target probe code ram
  printf '%s' "$full_lines"
  echo
  echo "Forced inlining (CAPHEAP_FORCE_INLINE=ON, the host default), minimal features:"
  printf '%-14s %-15s %7s\n' target probe code
  printf '%s' "$inline_lines"
  echo
  echo "RAM per heap (measured on the target; granule 4): the engine's control structure at the"
  echo "start of the region, the multi_heap lock prefix, and the heap_caps registry's static table"
  echo "(.bss, for CAPHEAP_MAX_HEAPS heaps, whatever the number registered):"
  printf '%s' "$ram_lines"
} >>"$report"
printf '{\n%s\n}\n' "$json_body" >"$json"
cat "$report"
echo
echo "size: wrote $report and $json"
