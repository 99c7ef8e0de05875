#!/usr/bin/env python3
"""Check that capheap's malloc+free cost does not grow with region size or live-block count.

Usage:
  constant_time_check.py [--bench PATH] [--repetitions N] [--min-time S] [--tolerance T]
                         [--statistic min|median] [--clock cpu_time|real_time]
                         [--from-json FILE] [--save-json FILE]

Runs capheap_bench (Google Benchmark) with --benchmark_format=json for the families
  BM_MallocFree_RegionSize     (region 4 KiB .. 64 MiB, the same heap state in every size)
  BM_MallocFree_SplitMerge     (region 4 KiB .. 64 MiB, the longest path: split and merge)
  BM_MallocFree_LiveBlocks     (10 .. 100k live blocks)
  BM_System_MallocFree_LiveBlocks (system malloc, shown for reference, not judged)
combines each benchmark's repetitions (default: the minimum CPU time, the figure least disturbed
by other load; --statistic median, --clock real_time), and prints per family the min, max and
median time, the max/min ratio, and whether every point lies within +-T (default 25%) of the
family's median. Exit status: 0 if every judged (capheap) family is within, 1 if not, 2 on usage errors.
With --from-json it reads a saved Google Benchmark JSON file instead of running the binary.
Stdlib only.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

FAMILIES = [
    ("BM_MallocFree_RegionSize", True),
    ("BM_MallocFree_SplitMerge", True),
    ("BM_MallocFree_LiveBlocks", True),
    ("BM_System_MallocFree_LiveBlocks", False),
]


def default_bench():
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = []
    if os.environ.get("CAPHEAP_BUILD_DIR"):
        candidates.append(os.path.join(os.environ["CAPHEAP_BUILD_DIR"], "bench", "capheap_bench"))
    candidates.append(os.path.join(here, "..", "build", "bench", "capheap_bench"))
    for c in candidates:
        if os.access(c, os.X_OK):
            return os.path.normpath(c)
    return os.path.normpath(candidates[-1])


def run_bench(path, repetitions, min_time):
    pattern = "^(%s)/" % "|".join(name for name, _ in FAMILIES)
    cmd = [
        path,
        "--benchmark_filter=" + pattern,
        "--benchmark_format=json",
        "--benchmark_repetitions=%d" % repetitions,
        "--benchmark_min_time=%s" % min_time,
    ]
    print("running: " + " ".join(cmd), file=sys.stderr)
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out)


def per_benchmark_times(data, statistic, clock):
    """Maps 'family/arg' to the min (or median) over the repetitions of the per-iteration time."""
    runs = {}
    for b in data.get("benchmarks", []):
        name = b.get("run_name", b["name"])
        if b.get("error_occurred"):
            raise SystemExit("benchmark %s failed: %s" % (name, b.get("error_message")))
        if b.get("run_type", "iteration") != "iteration":
            continue  # aggregates are recomputed here
        scale = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}[b.get("time_unit", "ns")]
        runs.setdefault(name, []).append(b[clock] * scale)
    pick = min if statistic == "min" else statistics.median
    return {name: pick(v) for name, v in runs.items()}


def arg_of(name):
    try:
        return int(name.split("/")[1])
    except (IndexError, ValueError):
        return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", default=default_bench(), help="capheap_bench binary")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--min-time", default="0.1", help="--benchmark_min_time per repetition")
    parser.add_argument("--tolerance", type=float, default=0.25)
    parser.add_argument("--statistic", choices=["min", "median"], default="min",
                        help="how repetitions are combined (min is the least noise-sensitive)")
    parser.add_argument("--clock", choices=["cpu_time", "real_time"], default="cpu_time")
    parser.add_argument("--from-json", help="read Google Benchmark JSON instead of running")
    parser.add_argument("--save-json", help="save the raw Google Benchmark JSON here")
    args = parser.parse_args()

    if args.from_json:
        with open(args.from_json, encoding="utf-8") as f:
            data = json.load(f)
    else:
        if not os.access(args.bench, os.X_OK):
            print("constant_time_check: %s not found; pass --bench" % args.bench, file=sys.stderr)
            return 2
        data = run_bench(args.bench, args.repetitions, args.min_time)
    if args.save_json:
        with open(args.save_json, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)

    times = per_benchmark_times(data, args.statistic, args.clock)
    print("%s of %s over the repetitions" % (args.statistic, args.clock))
    tol = args.tolerance
    status = 0
    for family, judged in FAMILIES:
        points = sorted(((arg_of(n), t) for n, t in times.items() if n.split("/")[0] == family))
        if not points:
            print("%s: no results" % family)
            if judged:
                status = 1
            continue
        values = [t for _, t in points]
        med = statistics.median(values)
        lo, hi = min(values), max(values)
        within = all(abs(v - med) <= tol * med for v in values)
        print("%s%s" % (family, "" if judged else "  (reference, not judged)"))
        for arg, t in points:
            print("  %-10d %8.2f ns  %+6.1f%% of median" % (arg, t, (t / med - 1) * 100))
        print("  min %.2f ns  max %.2f ns  median %.2f ns  max/min %.2f  -> %s +-%d%% of the median"
              % (lo, hi, med, hi / lo, "WITHIN" if within else "NOT within", round(tol * 100)))
        if judged and not within:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
