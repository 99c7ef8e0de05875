#!/bin/sh
# callgrind_pair.sh — instructions per free+malloc pair (bench/ir_pair.cpp) in one or more builds.
#
#   bench/callgrind_pair.sh [-p none|light|comprehensive] BUILD_DIR...
#
# Example (poisoning support compiled in, heap without poisoning, against support compiled out):
#   cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release && cmake --build build-rel --target capheap_ir_pair
#   cmake -S . -B build-nodeco -DCMAKE_BUILD_TYPE=Release -DCAPHEAP_DECORATION=OFF && cmake --build build-nodeco --target capheap_ir_pair
#   bench/callgrind_pair.sh build-rel build-nodeco
set -eu
mode=none
if [ "${1:-}" = "-p" ]; then mode=$2; shift 2; fi
[ $# -ge 1 ] || { echo "usage: $0 [-p none|light|comprehensive] BUILD_DIR..." >&2; exit 2; }
command -v valgrind >/dev/null || { echo "$0: valgrind not installed" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '%-24s %-14s %12s\n' build poisoning Ir/pair
for b in "$@"; do
  tool=$b/bench/capheap_ir_pair
  [ -x "$tool" ] || { echo "$0: $tool not found (build the capheap_ir_pair target)" >&2; exit 2; }
  valgrind --tool=callgrind --toggle-collect='loop_pairs*' --callgrind-out-file="$tmp/cg" \
    "$tool" "$mode" >/dev/null 2>"$tmp/log"
  ir=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$tmp/log")
  printf '%-24s %-14s %12s\n' "$(basename "$b")" "$mode" "$(awk -v ir="$ir" 'BEGIN { printf "%.1f", ir / 100000 }')"
done
