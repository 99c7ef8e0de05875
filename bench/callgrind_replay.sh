#!/bin/sh
# callgrind_replay.sh — instructions per operation of the trace replay loop, capheap vs system malloc.
#
#   bench/callgrind_replay.sh [-b BUILD_DIR] [-- REPLAY_OPTIONS... --] TRACE...
#
# Runs capheap_trace_replay --callgrind capheap|system under valgrind's callgrind tool, collecting
# only inside replay_loop_capheap / replay_loop_system (--toggle-collect; instrumentation is also
# switched on only around the loop when <valgrind/callgrind.h> was found at build time), then prints
# the total instructions executed (Ir) divided by the number of trace operations. The count
# includes the replay loop's own work (slot table, pattern bytes), identical for both allocators.
# BUILD_DIR defaults to $CAPHEAP_BUILD_DIR, else build/ in the repository root.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
build=${CAPHEAP_BUILD_DIR:-$here/../build}
opts=""
while [ $# -gt 0 ]; do
  case "$1" in
    -b) build=$2; shift 2 ;;
    --) shift
        while [ $# -gt 0 ] && [ "$1" != "--" ]; do opts="$opts $1"; shift; done
        [ $# -gt 0 ] && shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { echo "usage: $0 [-b BUILD_DIR] [-- REPLAY_OPTIONS... --] TRACE..." >&2; exit 2; }
tool=$build/bench/capheap_trace_replay
[ -x "$tool" ] || { echo "$0: $tool not found (build the capheap_trace_replay target)" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "$0: valgrind not installed" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

printf '%-28s %10s %14s %10s %14s %10s\n' trace ops capheap_Ir Ir/op system_Ir Ir/op
for trace in "$@"; do
  line=$(printf '%-28s' "$(basename "$trace")")
  for alloc in capheap system; do
    out=$tmp/callgrind.$alloc.out
    # shellcheck disable=SC2086
    valgrind --tool=callgrind --callgrind-out-file="$out" --instr-atstart=no \
      --toggle-collect="*replay_loop_$alloc*" \
      "$tool" --callgrind "$alloc" $opts "$trace" >"$tmp/stdout" 2>"$tmp/stderr" || {
      echo "$0: valgrind failed on $trace ($alloc):" >&2; cat "$tmp/stderr" >&2; exit 1; }
    ops=$(awk '$1 == "ops" { print $2 }' "$tmp/stdout")
    ir=$(awk '$1 == "totals:" { print $2; exit }' "$out")
    if [ "$alloc" = capheap ]; then line="$line $(printf '%10s' "$ops")"; fi
    line="$line $(printf '%14s %10.1f' "$ir" "$(echo "$ir $ops" | awk '{ printf "%.1f", $1 / $2 }')")"
  done
  echo "$line"
done
