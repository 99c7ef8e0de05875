#!/usr/bin/env bash
# Install test: installs a built capheap into a temporary prefix and uses it the way a consumer would.
#   1. cmake --install BUILD_DIR --prefix TMP; the expected files must be there (every public header).
#   2. every installed header compiles on its own (C headers as C11 and as C++17, .hpp as C++17).
#   3. the CMake consumer in this directory (find_package(capheap CONFIG REQUIRED), C only) builds and runs.
#   4. the same main.c builds with `cc main.c $(pkg-config --cflags --libs capheap)` and runs.
#
# Usage: tests/install/run.sh [BUILD_DIR]   (default: build; it is built first if needed)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build=${1:-"$root/build"}
[[ $build == /* ]] || build="$PWD/$build"

work="$(mktemp -d "${TMPDIR:-/tmp}/capheap-install.XXXXXX")"
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"

generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
CC=${CC:-cc}
CXX=${CXX:-c++}

say() { echo "install-test: $*"; }

# 1. Install (configuring a minimal library-only build first if BUILD_DIR has none).
if [[ ! -f $build/CMakeCache.txt ]]; then
  say "no build in $build: configuring a Release library build"
  cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DCAPHEAP_BUILD_TESTS=OFF \
    -DCAPHEAP_BUILD_BENCH=OFF >"$work/configure.log" || { cat "$work/configure.log"; exit 1; }
fi
cmake --build "$build" --target capheap capheap_host capheap_malloc -j "${CAPHEAP_JOBS:-2}"
cmake --install "$build" --prefix "$prefix" >"$work/install.log"

missing=0
expect() {
  if [[ ! -e $prefix/$1 ]]; then
    say "missing after install: $1"
    missing=1
  fi
}
while IFS= read -r header; do
  expect "include/${header#"$root"/include/}"
done < <(find "$root/include" -type f \( -name '*.h' -o -name '*.hpp' \) | LC_ALL=C sort)
libdir=$(cd "$prefix" && dirname "$(find . -name libcapheap.a | head -n1)")
libdir=${libdir#./}
if [[ -z $libdir || $libdir == . ]]; then
  say "libcapheap.a was not installed"
  exit 1
fi
expect "$libdir/libcapheap.a"
expect "$libdir/cmake/capheap/capheapConfig.cmake"
expect "$libdir/cmake/capheap/capheapConfigVersion.cmake"
expect "$libdir/cmake/capheap/capheapTargets.cmake"
expect "$libdir/pkgconfig/capheap.pc"
if [[ $missing -ne 0 ]]; then
  cat "$work/install.log"
  exit 1
fi
say "installed into $prefix ($(find "$prefix" -type f | wc -l) files)"

# 2. Each installed header is self-contained.
while IFS= read -r header; do
  rel=${header#"$prefix"/include/}
  case "$header" in
    *.h)
      printf '#include <%s>\n' "$rel" | "$CC" -std=c11 -Wall -Wextra -Werror -pedantic -I "$prefix/include" -fsyntax-only -x c -
      printf '#include <%s>\n' "$rel" | "$CXX" -std=c++17 -Wall -Wextra -Werror -I "$prefix/include" -fsyntax-only -x c++ - ;;
    *.hpp)
      printf '#include <%s>\n' "$rel" | "$CXX" -std=c++17 -Wall -Wextra -Werror -I "$prefix/include" -fsyntax-only -x c++ - ;;
  esac
done < <(find "$prefix/include" -type f \( -name '*.h' -o -name '*.hpp' \) | LC_ALL=C sort)
say "installed headers compile standalone"

# 3. CMake consumer.
cmake -S "$here" -B "$work/consumer" "${generator[@]}" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_COMPILER="$CC" >"$work/consumer-configure.log" || { cat "$work/consumer-configure.log"; exit 1; }
cmake --build "$work/consumer"
"$work/consumer/capheap_consumer"
say "find_package(capheap) consumer OK"
# The ESP-IDF application on the simulated chips (layouts are compiled into capheap::host; run from
# a directory outside the source tree with no layout search path set).
for chip in esp32 esp32s3; do
  (cd "$work" && env -u CAPHEAP_LAYOUT_DIR CAPHEAP_CHIP=$chip "$work/consumer/capheap_esp_app")
  say "ESP-IDF application on the installed simulator ($chip) OK"
done

# 4. pkg-config consumer.
export PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig"
pc_flags=$(pkg-config --cflags --libs capheap)
say "pkg-config --cflags --libs capheap: $pc_flags"
# shellcheck disable=SC2086 # the flags are meant to be split
"$CC" -std=c11 -Wall -Wextra -Werror "$here/main.c" $pc_flags -o "$work/consumer-pc"
"$work/consumer-pc"
say "pkg-config consumer OK"
