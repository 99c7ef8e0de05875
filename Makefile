# capheap developer entry points (thin wrappers around CMake; CMakePresets.json has the same setups).
#
#   make test                 Debug build in build/ + ctest (installs missing Debian packages first)
#   make build                the same build without running the tests
#   make demo                 Release build in build/, runs build/examples/capheap_demo
#   make bench                Release build in build-rel/: trace replay (memory, latency), callgrind
#                             instruction counts, Google Benchmark; report in build-rel/bench-results/
#   make asan                 ASan+UBSan build in build-asan/ + ctest (make tsan: ThreadSanitizer)
#   make fuzz                 clang libFuzzer build in build-fuzz/, runs every fuzzer FUZZ_SECONDS
#   make release-test         Release build in build-release/ + ctest
#   make clang-test           clang Debug build in build-clang/ + ctest
#   make m32-test             32-bit build in build-m32/ (g++ -m32), portable tests under qemu-i386
#   make nodeco-test          build without decoration support in build-nodeco/ (CAPHEAP_DECORATION=OFF)
#   make shift-test           every test of build/ again with the host heap's addresses moved (SHIFTS:
#                             bytes taken before main; scripts/shift-test.sh)
#   make compact-test         the size-built firmware forms on the host (CAPHEAP_FORCE_INLINE=OFF):
#                             every test in build-compact/, threaded tests under TSan
#   make coverage             clang coverage build in build-cov/: line/branch coverage of src/core, src/caps
#   make target-test          bare-metal builds (Cortex-M0+/M4F/M33, RV32IMC/IMAC, Xtensa lx106) + tests under
#                             QEMU, then the link check's self-test (installs the cross packages first)
#   make size                 code size per target (engine, multi_heap, heap_caps) and RAM per heap:
#                             build/size-report.txt and build/size-report.json
#   make install PREFIX=/opt/capheap
#   make format | format-check
#   make check-layers | check-freestanding | install-test | ci
#   make clean
#
# Variables: BUILD_DIR, ASAN_DIR, TSAN_DIR, JOBS (2), PREFIX, CMAKE_ARGS (extra configure arguments),
#            TEST_BUILD_TYPE (Debug), BENCH_DIR (build-rel), BENCH_OUT (BENCH_DIR/bench-results),
#            BENCH_MIN_TIME (seconds per benchmark, 0.05), CTEST_ARGS, REPLAY_ARGS (extra
#            capheap_trace_replay options, e.g. --cpu 0), SHARED_TRACES (../shared/data/traces),
#            FUZZ_DIR (build-fuzz), FUZZ_SECONDS (60 per fuzzer), FUZZERS, FUZZ_ARGS,
#            TARGETS (the bare-metal targets of target-test and size), TARGET_SEED (seed of the
#            randomised target tests).

BUILD_DIR ?= build
ASAN_DIR ?= build-asan
TSAN_DIR ?= build-tsan
JOBS ?= 2
PREFIX ?= /usr/local
CMAKE ?= cmake
CTEST ?= ctest
CLANG_FORMAT ?= clang-format
CMAKE_ARGS ?=
CTEST_ARGS ?=
TEST_BUILD_TYPE ?= Debug
BENCH_DIR ?= build-rel
BENCH_OUT ?= $(BENCH_DIR)/bench-results
BENCH_MIN_TIME ?= 0.05
REPLAY_ARGS ?=
SHARED_TRACES ?= ../shared/data/traces
FUZZ_DIR ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZERS ?= engine_fuzz caps_fuzz trace_fuzz layout_fuzz
FUZZ_ARGS ?=
FUZZ_CC ?= clang
FUZZ_CXX ?= clang++
TARGETS ?= cortex-m0plus cortex-m4f cortex-m33 rv32imc rv32imac xtensa-lx106
TARGET_SEED ?=

FORMAT_DIRS := src include tests bench examples tools
FORMAT_FILES = $(shell find $(FORMAT_DIRS) -type f \( -name '*.c' -o -name '*.h' -o -name '*.cc' \
                 -o -name '*.cpp' -o -name '*.hpp' \) 2>/dev/null | LC_ALL=C sort)

# Ninja when available; an existing build directory keeps the generator it was created with. Recursive
# (=) so that it is evaluated after `deps` has installed ninja.
DEFAULT_GENERATOR = $(if $(shell command -v ninja 2>/dev/null),Ninja,Unix Makefiles)
generator = $(or $(shell sed -n 's/^CMAKE_GENERATOR:INTERNAL=//p' $(1)/CMakeCache.txt 2>/dev/null),$(DEFAULT_GENERATOR))

# $(call configure,DIR,BUILD_TYPE,EXTRA_ARGS)
configure = $(CMAKE) -S . -B $(1) -G "$(call generator,$(1))" -DCMAKE_BUILD_TYPE=$(2) $(3) $(CMAKE_ARGS)

SANITIZER_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1 \
                 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

.PHONY: all deps deps-cross build demo test bench install asan tsan format format-check \
        check-layers check-freestanding install-test ci clean help \
        release-test clang-test m32-test nodeco-test compact-test shift-test coverage deps-ci fuzz target-test link-check-selftest size

all: build

help:
	@sed -n '2,/^[^#]/{/^#/p}' Makefile | sed 's/^# \{0,1\}//'

deps:
	@bash scripts/install-deps.sh

deps-ci:
	@bash scripts/install-deps.sh --ci

deps-cross:
	@bash scripts/install-deps.sh --cross

build: deps
	$(call configure,$(BUILD_DIR),$(TEST_BUILD_TYPE),-DCAPHEAP_BUILD_TESTS=ON -DCAPHEAP_BUILD_BENCH=ON -DCAPHEAP_SANITIZE=OFF -DCAPHEAP_TSAN=OFF)
	$(CMAKE) --build $(BUILD_DIR) -j $(JOBS)

test: build
	$(CTEST) --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS) --no-tests=error $(CTEST_ARGS)

demo: deps
	$(call configure,$(BUILD_DIR),Release,-DCAPHEAP_SANITIZE=OFF -DCAPHEAP_TSAN=OFF)
	$(CMAKE) --build $(BUILD_DIR) -j $(JOBS) --target capheap_demo
	$(BUILD_DIR)/examples/capheap_demo

# The whole measurement (docs/performance.md, "Method"): every trace of bench/traces (but
# edge-cases, a functional check) and $(SHARED_TRACES); JSON results and report.md in $(BENCH_OUT).
BENCH_TARGETS := capheap_trace_replay capheap_bench capheap_caps_bench capheap_info_bench capheap_ir_caps
bench: deps
	$(call configure,$(BENCH_DIR),Release,-DCAPHEAP_SANITIZE=OFF -DCAPHEAP_TSAN=OFF -DCAPHEAP_BUILD_BENCH=ON -DCAPHEAP_BUILD_TESTS=OFF)
	$(CMAKE) --build $(BENCH_DIR) -j $(JOBS) --target $(BENCH_TARGETS)
	@mkdir -p $(BENCH_OUT)
	@set -e; traces=""; \
	for t in bench/traces/*.trace $(SHARED_TRACES)/*.trace; do \
	  case "$$t" in */edge-cases.trace) continue ;; esac; \
	  if [ -f "$$t" ]; then traces="$$traces $$t"; fi; \
	done; \
	if [ -z "$$traces" ]; then echo "bench: no traces found"; exit 1; fi; \
	echo "== trace replay: memory, time, latency"; \
	echo "$(BENCH_DIR)/bench/capheap_trace_replay $(strip $(REPLAY_ARGS)) --json $(BENCH_OUT)/replay.json$$traces"; \
	$(BENCH_DIR)/bench/capheap_trace_replay $(REPLAY_ARGS) --json $(BENCH_OUT)/replay.json $$traces; \
	echo "== instructions per call (callgrind)"; \
	python3 bench/callgrind_replay.py -b $(BENCH_DIR) -j $(JOBS) --allocators capheap,system,floor --json $(BENCH_OUT)/callgrind.json $$traces
	python3 bench/callgrind_caps.py -b $(BENCH_DIR) -j $(JOBS) --json $(BENCH_OUT)/caps.json
	@echo "== Google Benchmark"
	$(BENCH_DIR)/bench/capheap_bench --benchmark_min_time=$(BENCH_MIN_TIME) --benchmark_out_format=json --benchmark_out=$(BENCH_OUT)/heap_bench.json
	$(BENCH_DIR)/bench/capheap_caps_bench --benchmark_min_time=$(BENCH_MIN_TIME) --benchmark_out_format=json --benchmark_out=$(BENCH_OUT)/caps_bench.json
	$(BENCH_DIR)/bench/capheap_info_bench --benchmark_min_time=$(BENCH_MIN_TIME) --benchmark_out_format=json --benchmark_out=$(BENCH_OUT)/info_bench.json
	@python3 bench/report.py --replay $(BENCH_OUT)/replay.json --callgrind $(BENCH_OUT)/callgrind.json \
	  --caps $(BENCH_OUT)/caps.json --bench $(BENCH_OUT)/heap_bench.json --bench $(BENCH_OUT)/info_bench.json \
	  --label "Measured at commit $$(git describe --always --dirty 2>/dev/null || echo unknown), $$(date -u +%Y-%m-%d)." \
	  --output $(BENCH_OUT)/report.md
	@echo "== report ($(BENCH_OUT)/report.md)"
	@cat $(BENCH_OUT)/report.md

install:
	@if [ ! -f $(BUILD_DIR)/CMakeCache.txt ]; then \
	  $(MAKE) --no-print-directory deps && \
	  $(call configure,$(BUILD_DIR),Release,); \
	fi
	$(CMAKE) --build $(BUILD_DIR) -j $(JOBS)
	$(CMAKE) --install $(BUILD_DIR) --prefix $(PREFIX)

asan: deps
	$(call configure,$(ASAN_DIR),Debug,-DCAPHEAP_SANITIZE=ON -DCAPHEAP_TSAN=OFF -DCAPHEAP_BUILD_BENCH=OFF)
	$(CMAKE) --build $(ASAN_DIR) -j $(JOBS)
	$(SANITIZER_ENV) $(CTEST) --test-dir $(ASAN_DIR) --output-on-failure -j $(JOBS) --no-tests=error $(CTEST_ARGS)

tsan: deps
	$(call configure,$(TSAN_DIR),Debug,-DCAPHEAP_TSAN=ON -DCAPHEAP_SANITIZE=OFF -DCAPHEAP_BUILD_BENCH=OFF)
	$(CMAKE) --build $(TSAN_DIR) -j $(JOBS)
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  $(CTEST) --test-dir $(TSAN_DIR) --output-on-failure -j $(JOBS) --no-tests=error $(CTEST_ARGS)

format:
	$(if $(FORMAT_FILES),$(CLANG_FORMAT) -i $(FORMAT_FILES),@echo "format: no files")

format-check:
	$(if $(FORMAT_FILES),@$(CLANG_FORMAT) --dry-run --Werror $(FORMAT_FILES))
	@echo "format-check: OK ($(words $(FORMAT_FILES)) files, $$($(CLANG_FORMAT) --version))"

check-layers:
	bash .ci/check-layers

check-freestanding:
	bash .ci/check-freestanding

install-test:
	bash tests/install/run.sh $(BUILD_DIR)

ci:
	bash .ci/run

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(TSAN_DIR) $(FUZZ_DIR) $(BENCH_DIR) build-release build-cross build-clang build-m32 build-nodeco build-cov \
	  build-target build-size build-ci-logs build-compact build-compact-tsan

# Differential fuzzers (tests/fuzz, docs/testing.md): one after another, each for FUZZ_SECONDS,
# starting from a scratch copy of its checked-in corpus (new inputs stay in $(FUZZ_DIR)/corpus).
fuzz: deps
	$(call configure,$(FUZZ_DIR),RelWithDebInfo,-DCMAKE_C_COMPILER=$(FUZZ_CC) -DCMAKE_CXX_COMPILER=$(FUZZ_CXX) \
	  -DCAPHEAP_FUZZ=ON -DCAPHEAP_BUILD_TESTS=OFF -DCAPHEAP_BUILD_BENCH=OFF -DCAPHEAP_WERROR=OFF \
	  -DCAPHEAP_HARDENING_LEVEL=2 -DCAPHEAP_SANITIZE=OFF -DCAPHEAP_TSAN=OFF)
	$(CMAKE) --build $(FUZZ_DIR) -j $(JOBS) --target $(FUZZERS)
	@set -e; mkdir -p $(FUZZ_DIR)/logs $(FUZZ_DIR)/artifacts; \
	for f in $(FUZZERS); do \
	  rm -rf $(FUZZ_DIR)/corpus/$$f; mkdir -p $(FUZZ_DIR)/corpus/$$f; \
	  cp tests/fuzz/corpus/$$f/* $(FUZZ_DIR)/corpus/$$f/; \
	  echo "== $$f: $(FUZZ_SECONDS) s"; \
	  $(SANITIZER_ENV) $(FUZZ_DIR)/tests/fuzz/$$f $(FUZZ_DIR)/corpus/$$f -max_total_time=$(FUZZ_SECONDS) \
	    -print_final_stats=1 -timeout=20 -rss_limit_mb=2048 -max_len=4096 \
	    -artifact_prefix=$(FUZZ_DIR)/artifacts/$$f- $(FUZZ_ARGS) > $(FUZZ_DIR)/logs/$$f.log 2>&1 \
	    || { tail -n 60 $(FUZZ_DIR)/logs/$$f.log; echo "fuzz: $$f FAILED (log: $(FUZZ_DIR)/logs/$$f.log)"; exit 1; }; \
	  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|capheap-fuzz)' $(FUZZ_DIR)/logs/$$f.log; \
	done; \
	echo "== fuzz summary ($(FUZZ_SECONDS) s each)"; \
	for f in $(FUZZERS); do grep -h '^capheap-fuzz' $(FUZZ_DIR)/logs/$$f.log; done

# ---- CI matrix (.ci/run) ------------------------------------------------------------------------

release-test: deps
	$(call configure,build-release,Release,-DCAPHEAP_BUILD_TESTS=ON -DCAPHEAP_BUILD_BENCH=OFF -DCAPHEAP_SANITIZE=OFF -DCAPHEAP_TSAN=OFF)
	$(CMAKE) --build build-release -j $(JOBS)
	$(CTEST) --test-dir build-release --output-on-failure -j $(JOBS) --no-tests=error $(CTEST_ARGS)

clang-test: deps-ci
	$(call configure,build-clang,Debug,-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCAPHEAP_BUILD_BENCH=OFF -DCAPHEAP_SANITIZE=OFF -DCAPHEAP_TSAN=OFF)
	$(CMAKE) --build build-clang -j $(JOBS)
	$(CTEST) --test-dir build-clang --output-on-failure -j $(JOBS) --no-tests=error $(CTEST_ARGS)

# Without decoration support (-DCAPHEAP_DECORATION=OFF, the minimal firmware option on the host):
# every test runs; those that need poisoning or owner words skip themselves
# (tests/support/decoration_support.hpp).
nodeco-test: deps-ci
	$(call configure,build-nodeco,Debug,-DCAPHEAP_DECORATION=OFF -DCAPHEAP_BUILD_BENCH=OFF -DCAPHEAP_SANITIZE=OFF -DCAPHEAP_TSAN=OFF)
	$(CMAKE) --build build-nodeco -j $(JOBS)
	$(CTEST) --test-dir build-nodeco --output-on-failure -j $(JOBS) --no-tests=error $(CTEST_ARGS)

# Address-shift run (scripts/shift-test.sh): the tests of $(BUILD_DIR) once per shift, with a preloaded
# shim taking SHIFTS bytes from the host's malloc before main, so that no test's outcome may depend on
# where the host happened to place a buffer.
SHIFTS ?=
shift-test: build
	JOBS=$(JOBS) CTEST_ARGS="$(CTEST_ARGS)" bash scripts/shift-test.sh $(BUILD_DIR) $(SHIFTS)

# The compact forms that size-built firmware runs (CAPHEAP_FORCE_INLINE=OFF defines CAPHEAP_COMPACT:
# the engine's shared routines, the registry without derived tables) on the host: every test in a
# Debug build, then the threaded tests under ThreadSanitizer (the compact registry's lock-free
# readers). The bare-metal target tests run the same forms under QEMU with fewer tests.
COMPACT_TSAN_TESTS ?= Threaded|Thread|Lock|lock|Concurrency|Recorder
compact-test: deps
	$(call configure,build-compact,Debug,-DCAPHEAP_FORCE_INLINE=OFF -DCAPHEAP_BUILD_BENCH=OFF -DCAPHEAP_SANITIZE=OFF -DCAPHEAP_TSAN=OFF)
	$(CMAKE) --build build-compact -j $(JOBS)
	$(CTEST) --test-dir build-compact --output-on-failure -j $(JOBS) --no-tests=error $(CTEST_ARGS)
	$(call configure,build-compact-tsan,Debug,-DCAPHEAP_FORCE_INLINE=OFF -DCAPHEAP_TSAN=ON -DCAPHEAP_SANITIZE=OFF -DCAPHEAP_BUILD_BENCH=OFF)
	$(CMAKE) --build build-compact-tsan -j $(JOBS)
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  $(CTEST) --test-dir build-compact-tsan --output-on-failure -j $(JOBS) --no-tests=error -R '$(COMPACT_TSAN_TESTS)' $(CTEST_ARGS)

# 32-bit: GoogleTest is built from Debian's sources with -m32; the tests labelled "portable" (engine,
# registry, multi_heap, C++ API) run under qemu-i386 when the kernel cannot run 32-bit code itself.
m32-test: deps-ci
	$(call configure,build-m32,Debug,--toolchain cmake/toolchains/linux-i686.cmake -DCAPHEAP_GTEST_SOURCE=/usr/src/googletest -DCAPHEAP_BUILD_BENCH=OFF)
	$(CMAKE) --build build-m32 -j $(JOBS)
	$(CTEST) --test-dir build-m32 --output-on-failure -j $(JOBS) --no-tests=error -L portable $(CTEST_ARGS)

coverage: deps-ci
	@bash .ci/coverage build-cov

# ---- Bare-metal targets (docs/porting.md) -------------------------------------------------------

# Target tests under QEMU on every target (scripts/target-test.sh), then the proof that the link
# check fails the build on a printf or malloc in the library.
target-test: deps-cross
	CAPHEAP_NO_INSTALL=1 CAPHEAP_TARGET_SEED=$(TARGET_SEED) JOBS=$(JOBS) bash scripts/target-test.sh $(TARGETS)
	JOBS=$(JOBS) bash tests/baremetal/link_check_selftest.sh

link-check-selftest: deps-cross
	JOBS=$(JOBS) bash tests/baremetal/link_check_selftest.sh

# Size report (scripts/size-report.sh): build/size-report.txt, build/size-report.json.
size: deps-cross
	CAPHEAP_NO_INSTALL=1 JOBS=$(JOBS) bash scripts/size-report.sh $(TARGETS)
