#!/usr/bin/env bash
# Installs the Debian packages capheap needs, skipping what is already there.
#
#   scripts/install-deps.sh            host toolchain + libraries (build, tests, bench, tools, format)
#   scripts/install-deps.sh --cross    the bare-metal cross toolchains and QEMU (Cortex-M, RV32): used by
#                                      .ci/check-freestanding, make target-test and make size
#   scripts/install-deps.sh --ci       host packages + the CI matrix's: clang/LLVM (clang build, libFuzzer,
#                                      llvm-cov coverage), g++-multilib and qemu-user (32-bit tests)
#   scripts/install-deps.sh --check    report what is missing (exit 1 if anything is), install nothing
#
# Presence is detected with `dpkg -s` (fast: no apt access when everything is installed). As root the
# missing packages are installed with apt-get (after one `apt-get update`); as any other user the script
# stops and prints the exact command to run.
set -euo pipefail

HOST_PACKAGES=(
  make cmake ninja-build g++ pkg-config
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libcli11-dev libfmt-dev
  valgrind clang-format
)
# gcc-arm-none-eabi only *recommends* newlib; picolibc provides the C headers (--specs=picolibc.specs)
# and libstdc++-arm-none-eabi-dev the header-only C++ parts (<cstddef>, <type_traits>, ...).
CI_PACKAGES=(clang llvm libclang-rt-14-dev g++-multilib qemu-user)
# --cross: every bare-metal target of `make target-test` / `make size` (docs/porting.md): Cortex-M
# (arm-none-eabi + picolibc, qemu-system-arm), RV32 and Xtensa lx106 (riscv64-unknown-elf and
# xtensa-lx106-elf + picolibc, whose C++ headers are borrowed from libstdc++-arm-none-eabi-dev,
# qemu-system-misc).
# (make, cmake and ninja too: `make target-test` and `make size` need nothing else on a fresh machine.)
CROSS_PACKAGES=(make cmake ninja-build
  gcc-arm-none-eabi binutils-arm-none-eabi picolibc-arm-none-eabi libstdc++-arm-none-eabi-dev
  qemu-system-arm gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc
  gcc-xtensa-lx106 picolibc-xtensa-lx106-elf)

mode=host
check_only=0
for arg in "$@"; do
  case "$arg" in
    --cross) mode=cross ;;
    --host) mode=host ;;
    --ci) mode=ci ;;
    --check) check_only=1 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "capheap: unknown option '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

if [[ $mode == cross ]]; then
  packages=("${CROSS_PACKAGES[@]}")
elif [[ $mode == ci ]]; then
  packages=("${HOST_PACKAGES[@]}" "${CI_PACKAGES[@]}")
else
  packages=("${HOST_PACKAGES[@]}")
fi
apt_flags=(-y --no-install-recommends)

# Extra packages (space separated) can be appended through CAPHEAP_EXTRA_PACKAGES.
if [[ -n ${CAPHEAP_EXTRA_PACKAGES:-} ]]; then
  read -r -a extra <<<"$CAPHEAP_EXTRA_PACKAGES"
  packages+=("${extra[@]}")
fi

if ! command -v dpkg >/dev/null 2>&1; then
  echo "capheap: no dpkg here (not Debian?); make sure these are installed: ${packages[*]}" >&2
  exit 0
fi

# One `dpkg -s` call for all packages; unknown ones only produce a message on stderr.
installed=" "
pkg=""
while IFS= read -r line; do
  case "$line" in
    "Package: "*) pkg=${line#Package: } ;;
    "Status: install ok installed") installed+="$pkg " ;;
  esac
done < <(dpkg -s "${packages[@]}" 2>/dev/null || true)

missing=()
for p in "${packages[@]}"; do
  [[ $installed == *" $p "* ]] || missing+=("$p")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

if [[ $check_only -eq 1 ]]; then
  echo "capheap: missing packages: ${missing[*]}" >&2
  exit 1
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "capheap: missing packages: ${missing[*]}" >&2
  echo "capheap: install them with:" >&2
  echo "  sudo apt-get update && sudo apt-get install ${apt_flags[*]} ${missing[*]}" >&2
  exit 1
fi

echo "capheap: installing missing packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -q "${apt_flags[@]}" "${missing[@]}"
