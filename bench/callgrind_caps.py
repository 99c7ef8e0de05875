#!/usr/bin/env python3
"""Instructions per call of the heap statistics, capability dispatch and free's heap lookup.

Usage:
  callgrind_caps.py [-b BUILD_DIR] [-j JOBS] [--json FILE] [--counts 10,100,...]
                    [--iterations K]

Runs capheap_ir_caps (bench/ir_caps.cpp) under valgrind's callgrind tool, collecting only inside
its irloop_* functions, and divides the instructions of the calls each loop makes (its call arcs:
the API's own cost, loop counter excluded) by the iterations:

  statistics, once per live-block count (default 10, 100, 1000, 10000, 100000; the worst-case
  layout of bench/info_fixture.hpp): heap_caps_get_info and heap_caps_get_largest_free_block
  (MALLOC_CAP_DEFAULT on the simulated ESP32 plus the heap holding the blocks), multi_heap_get_info
  (one locked heap), capheap::Heap::info and largest_free_block; the ratio of the largest count's
  figure to the smallest's is the acceptance figure (1.00 = independent of the block count);
  dispatch: heap_caps_malloc(64) + heap_caps_free per capability set, multi_heap_malloc +
  multi_heap_free on a locked heap of the same size, the engine alone; free's heap lookup:
  Registry::deallocate with 2..64 heaps against the engine's deallocate on the same kind of heap.

--json FILE writes the figures for bench/report.py. Exit status 0; 1 if valgrind or the driver
failed; 2 on usage errors. Stdlib only, plus valgrind.
"""

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cgprof  # noqa: E402

LOOP = re.compile(r"irloop_(\w+)\(")
INFO_LOOPS = ["heap_caps_get_info", "heap_caps_largest_free_block", "multi_heap_get_info",
              "engine_info", "engine_largest_free_block"]
INFO_NAMES = {"heap_caps_get_info": "heap_caps_get_info(DEFAULT)",
              "heap_caps_largest_free_block": "heap_caps_get_largest_free_block(DEFAULT)",
              "multi_heap_get_info": "multi_heap_get_info",
              "engine_info": "Heap::info",
              "engine_largest_free_block": "Heap::largest_free_block"}
CAPS_PAIRS = [("default", "DEFAULT"), ("dma", "DMA"), ("32bit", "32BIT"),
              ("internal_8bit", "INTERNAL|8BIT")]
REGISTRY_HEAPS = [2, 4, 8, 16, 32, 64]




def profile_loops(tool, args, out):
    """Runs the driver under callgrind; returns {loop name: {callee: [calls, Ir]}}."""
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
           "--toggle-collect=*irloop_*", tool] + args
    env = dict(os.environ, LD_BIND_NOW="1")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=env)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if not line.startswith("==")]
        raise RuntimeError("capheap_ir_caps %s failed (exit %d): %s"
                           % (" ".join(args), proc.returncode, "\n".join(lines[-20:])))
    prof = cgprof.parse(out)
    loops = {}
    for f in prof.functions():
        m = LOOP.search(f)
        if not m:
            continue
        loops[m.group(1)] = {callee: [calls, ir] for callee, calls, ir in prof.callees(f)}
    return loops, prof


def per_iteration(arcs, k):
    return sum(ir for _, ir in arcs.values()) / k


def callee_cost(arcs, pattern):
    """(calls, Ir) summed over callees whose name matches pattern."""
    calls = ir = 0
    for name, (c, i) in arcs.items():
        if re.search(pattern, name):
            calls += c
            ir += i
    return calls, ir


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-b", dest="build", default=None)
    ap.add_argument("-j", dest="jobs", type=int, default=1)
    ap.add_argument("--json", default=None)
    ap.add_argument("--counts", default="10,100,1000,10000,100000")
    ap.add_argument("--iterations", type=int, default=2000)
    args = ap.parse_args()
    try:
        counts = [int(x) for x in args.counts.split(",") if x]
    except ValueError:
        ap.error("--counts takes numbers separated by commas")
    if not counts or any(c <= 0 for c in counts) or args.iterations <= 0 or args.jobs <= 0:
        ap.error("counts, iterations and jobs must be positive")
    build = args.build or cgprof.default_build("capheap_ir_caps")
    tool = os.path.join(build, "bench", "capheap_ir_caps")
    if not os.access(tool, os.X_OK):
        sys.stderr.write("callgrind_caps.py: %s not found (build the capheap_ir_caps target)\n"
                         % tool)
        return 2
    if shutil.which("valgrind") is None:
        sys.stderr.write("callgrind_caps.py: valgrind not installed\n")
        return 2
    k = args.iterations
    result = {"iterations": k, "counts": counts, "info": {}, "dispatch": {}, "lookup": {}}
    with tempfile.TemporaryDirectory() as tmp:
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futs = {}
            for n in counts:
                futs[n] = pool.submit(profile_loops, tool, ["info", str(n), str(k)],
                                      os.path.join(tmp, "info.%d.out" % n))
            futs["dispatch"] = pool.submit(profile_loops, tool, ["dispatch", str(k)],
                                           os.path.join(tmp, "dispatch.out"))
            try:
                done = {key: f.result()[0] for key, f in futs.items()}
            except (RuntimeError, cgprof.ParseError, OSError) as e:
                sys.stderr.write("callgrind_caps.py: %s\n" % e)
                return 1
    for name in INFO_LOOPS:
        result["info"][name] = {str(n): per_iteration(done[n][name], k) for n in counts}
    d = done["dispatch"]
    for name, _ in CAPS_PAIRS:
        result["dispatch"]["heap_caps_pair_" + name] = per_iteration(d["heap_caps_pair_" + name], k)
    mh = per_iteration(d["multi_heap_pair"], k)
    result["dispatch"]["multi_heap_pair"] = mh
    result["dispatch"]["engine_pair"] = per_iteration(d["engine_pair"], k)
    eng_calls, eng_free = callee_cost(d["engine_pair_4k"], r"Heap::deallocate")
    engine_free = eng_free / max(1, eng_calls)
    result["lookup"]["engine_free"] = engine_free
    for n in REGISTRY_HEAPS:
        calls, ir = callee_cost(d["registry_free_%d" % n], r"ir_registry_free")
        result["lookup"][str(n)] = ir / max(1, calls)

    print("instructions per call (callgrind, %d iterations per loop; arcs out of the loop)" % k)
    print("statistics, worst-case layout with N live blocks (bench/info_fixture.hpp)")
    print("%-44s" % "call" + "".join("%10s" % ("N=%d" % n) for n in counts) + "%12s" % "max/min")
    for name in INFO_LOOPS:
        row = [result["info"][name][str(n)] for n in counts]
        print("%-44s" % INFO_NAMES[name] + "".join("%10.1f" % v for v in row)
              + "%12.3f" % (max(row) / min(row) if min(row) > 0 else 0.0))
    print("dispatch, malloc(64) + free pair (ESP32 model)")
    for name, label in CAPS_PAIRS:
        v = result["dispatch"]["heap_caps_pair_" + name]
        print("  heap_caps %-16s %8.1f   / multi_heap %.3f" % (label, v, v / mh if mh else 0.0))
    print("  multi_heap, locked heap of the same size %8.1f" % mh)
    print("  engine alone (capheap::Heap, no lock)    %8.1f" % result["dispatch"]["engine_pair"])
    print("free through the registry (lookup + lock + engine free) against the engine's free")
    print("%-8s %12s %12s %12s" % ("heaps", "registry", "engine", "difference"))
    for n in REGISTRY_HEAPS:
        v = result["lookup"][str(n)]
        print("%-8d %12.1f %12.1f %12.1f" % (n, v, engine_free, v - engine_free))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
