#!/usr/bin/env python3
"""Instructions per allocator call on traces, per operation kind, capheap and system malloc
(and, on request, the bench-only floor TLSF of bench/floor_tlsf.hpp: floor, floorgf).

Usage:
  callgrind_replay.py [-b BUILD_DIR] [-j JOBS] [--json FILE]
                      [--allocators capheap,system,floor,floorgf (default capheap,system)]
                      [--keep DIR] [-- REPLAY_OPTIONS... --] TRACE...

Runs `capheap_trace_replay --callgrind ALLOCATOR TRACE` under valgrind's callgrind tool, collecting
only inside the replay loop (--toggle-collect='*replay_loop_*', instrumentation switched on around
the loop only). In that mode every call goes through one never-inlined function per operation kind
(cgop_<allocator>_<kind>), so the profile's call arcs out of those functions are the allocator's
own instructions for that kind, without the replay glue (slot table, pattern bytes, the wrapper
itself). The capheap replay runs in the region the timing replays use (twice the binary search's
minimum), so instruction counts and latencies describe the same heap.

Columns, instructions per call (Ir / calls):
  malloc, aligned, free   the allocator's call (capheap: Heap::allocate / allocate_aligned /
                          deallocate; system: malloc / posix_memalign / free)
  calloc                  capheap: Heap::allocate + memset; system: calloc
  calloc-own              calloc without the memset / zeroing functions it reached
  realloc                 Heap::reallocate / realloc, copy included
  realloc-own             realloc without the memcpy / memmove functions it reached
  loop/op                 the whole replay loop (glue included) per trace operation
A memset / memcpy function is charged to the kind from which alone it is reachable in the call
graph; if several kinds reach it, the "-own" column shows "?".

--json FILE writes the figures for bench/report.py. --keep DIR keeps the profiles there
(callgrind.TRACE.ALLOCATOR.out) for callgrind_annotate; with a build that has debug information
(e.g. -DCMAKE_CXX_FLAGS_RELEASE="-O3 -DNDEBUG -g", the same code as Release) `callgrind_annotate
--auto=yes --show-percs=no FILE src/core/heap.cpp` attributes the engine's instructions to lines. Exit status: 0; 1 if valgrind or the replay
failed (its stderr is shown: a bad trace reports FILE:LINE); 2 on usage errors.
BUILD_DIR defaults to $CAPHEAP_BUILD_DIR, else build-rel/, else build/ in the repository root.
Stdlib only (python3 >= 3.7) plus valgrind.
"""

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

# floor / floorgf: the bench-only floor TLSF (bench/floor_tlsf.hpp), head-check / good-fit variant.
ALLOCATORS = ("capheap", "system", "floor", "floorgf", "proto", "protolc", "protofx", "protofxlc")
KINDS = ["malloc", "calloc", "aligned", "realloc", "free"]
COPY_FUNCTIONS = re.compile(r"^_*(memcpy|memmove|memset|__memcpy|__memmove|__memset|wmemset)")
WRAPPER = re.compile(r"cgop_(capheap|system|floor|floorgf|proto|protolc|protofx|protofxlc)_(malloc|calloc|aligned|realloc|free)\(")


def usage(msg=None):
    if msg:
        sys.stderr.write("callgrind_replay.py: %s\n" % msg)
    sys.stderr.write(
        "usage: callgrind_replay.py [-b BUILD_DIR] [-j JOBS] [--json FILE] "
        "[--allocators capheap,system] [-- REPLAY_OPTIONS... --] TRACE...\n")
    sys.exit(2)




def parse_args(argv):
    args = {"build": None, "jobs": 1, "json": None, "allocators": ["capheap", "system"],
            "replay_opts": [], "traces": [], "keep": None}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            print(__doc__)
            sys.exit(0)
        elif a in ("-b", "-j", "--json", "--allocators", "--keep"):
            if i + 1 >= len(argv):
                usage("%s needs a value" % a)
            v = argv[i + 1]
            i += 2
            if a == "-b":
                args["build"] = v
            elif a == "-j":
                if not v.isdigit() or int(v) < 1:
                    usage("-j needs a positive number")
                args["jobs"] = int(v)
            elif a == "--json":
                args["json"] = v
            elif a == "--keep":
                args["keep"] = v
            else:
                allocs = [x for x in v.split(",") if x]
                if not allocs or any(x not in ALLOCATORS for x in allocs):
                    usage("--allocators takes some of %s" % ",".join(ALLOCATORS))
                args["allocators"] = allocs
            continue
        elif a == "--":
            i += 1
            while i < len(argv) and argv[i] != "--":
                args["replay_opts"].append(argv[i])
                i += 1
            i += 1
            continue
        elif a.startswith("-"):
            usage("unknown option %s" % a)
        else:
            args["traces"].append(a)
        i += 1
    if not args["traces"]:
        usage("no trace given")
    return args


def own_cost(prof, wrappers, kind_of_wrapper):
    """Per kind: (calls, Ir, copy Ir or None if ambiguous)."""
    # Functions reachable from each wrapper.
    reach = {}
    for w in wrappers:
        seen = set()
        todo = [w]
        while todo:
            f = todo.pop()
            for callee, _, _ in prof.callees(f):
                if callee not in seen:
                    seen.add(callee)
                    todo.append(callee)
        reach[w] = seen
    copy_ir = {w: 0 for w in wrappers}
    ambiguous = set()
    for f in prof.functions():
        if not COPY_FUNCTIONS.match(f) or prof.self_cost[f] == 0:
            continue
        owners = [w for w in wrappers if f in reach[w]]
        if len(owners) == 1:
            copy_ir[owners[0]] += prof.self_cost[f]
        else:
            ambiguous.update(owners)
    out = {}
    for w in wrappers:
        kind = kind_of_wrapper[w]
        calls = prof.calls_to(w)
        ir = sum(c for _, _, c in prof.callees(w))
        out[kind] = {"calls": calls, "ir": ir,
                     "copy_ir": None if w in ambiguous else copy_ir[w]}
    return out


def run_one(tool, alloc, trace, replay_opts, tmpdir, index):
    name = os.path.basename(trace)
    if name.endswith(".trace"):
        name = name[:-6]
    out = os.path.join(tmpdir, "callgrind.%s.%s.out" % (name, alloc))
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out, "--instr-atstart=no",
           "--toggle-collect=*replay_loop_*", tool, "--callgrind", alloc] + replay_opts + [trace]
    env = dict(os.environ, LD_BIND_NOW="1")  # no lazy symbol binding inside the loop
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=env)
    if proc.returncode != 0:
        # valgrind's own lines start with ==PID==; show the tool's message first.
        lines = proc.stderr.splitlines()
        own = [line for line in lines if not line.startswith("==")]
        raise RuntimeError("%s (%s): replay failed (exit %d):\n%s"
                           % (trace, alloc, proc.returncode, "\n".join(own or lines[-20:])))
    info = {}
    for line in proc.stdout.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2:
            info[parts[0]] = parts[1]
    prof = cgprof.parse(out)
    wrappers = {}
    for f in prof.functions():
        m = WRAPPER.search(f)
        if m and m.group(1) == alloc:
            wrappers[f] = m.group(2)
    kinds = own_cost(prof, list(wrappers), wrappers)
    for k in KINDS:
        kinds.setdefault(k, {"calls": 0, "ir": 0, "copy_ir": 0})
    return {"ops": int(info.get("ops", "0")), "region": int(info.get("region", "0")),
            "failed": int(info.get("failed", "0")), "loop_ir": prof.total, "kinds": kinds}


def per_call(k, own=False):
    if k["calls"] == 0:
        return None
    if own:
        if k["copy_ir"] is None:
            return "?"
        return (k["ir"] - k["copy_ir"]) / k["calls"]
    return k["ir"] / k["calls"]


def fmt(v, width):
    if v is None:
        return "%*s" % (width, "-")
    if isinstance(v, str):
        return "%*s" % (width, v)
    return "%*.1f" % (width, v)


def print_table(results, alloc):
    cols = [("malloc", "malloc", False), ("calloc", "calloc", False),
            ("calloc-own", "calloc", True), ("aligned", "aligned", False),
            ("realloc", "realloc", False), ("realloc-own", "realloc", True),
            ("free", "free", False)]
    print(alloc)
    print("%-26s %8s " % ("trace", "ops") + " ".join("%11s" % c[0] for c in cols)
          + " %9s" % "loop/op")
    for r in results:
        a = r.get(alloc)
        if a is None:
            continue
        cells = [fmt(per_call(a["kinds"][kind], own), 11) for _, kind, own in cols]
        print("%-26s %8d " % (r["trace"], a["ops"]) + " ".join(cells)
              + " %9.1f" % (a["loop_ir"] / a["ops"] if a["ops"] else 0.0))


def main(argv):
    args = parse_args(argv)
    build = args["build"] or cgprof.default_build("capheap_trace_replay")
    tool = os.path.join(build, "bench", "capheap_trace_replay")
    if not os.access(tool, os.X_OK):
        sys.stderr.write("callgrind_replay.py: %s not found (build the capheap_trace_replay "
                         "target)\n" % tool)
        return 2
    if shutil.which("valgrind") is None:
        sys.stderr.write("callgrind_replay.py: valgrind not installed\n")
        return 2
    for t in args["traces"]:
        if not os.path.isfile(t):
            sys.stderr.write("callgrind_replay.py: %s: no such file\n" % t)
            return 1
    results = [{"trace": os.path.basename(t)} for t in args["traces"]]
    if args["keep"]:
        os.makedirs(args["keep"], exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args["keep"] or scratch
        jobs = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=args["jobs"]) as pool:
            for i, t in enumerate(args["traces"]):
                for alloc in args["allocators"]:
                    jobs.append((i, alloc, pool.submit(run_one, tool, alloc, t,
                                                       args["replay_opts"], tmp, i)))
            failed = False
            for i, alloc, fut in jobs:
                try:
                    results[i][alloc] = fut.result()
                except (RuntimeError, cgprof.ParseError, OSError) as e:
                    sys.stderr.write("callgrind_replay.py: %s\n" % e)
                    failed = True
            if failed:
                return 1
    print("instructions per call (callgrind Ir, the allocator's own code: call arcs out of "
          "cgop_<allocator>_<kind>;\n  -own: without memcpy/memmove (realloc) or memset "
          "(calloc); loop/op: the whole replay loop per trace op)")
    for alloc in args["allocators"]:
        print_table(results, alloc)
    for r in results:
        for alloc in args["allocators"]:
            if r[alloc]["failed"]:
                print("WARNING %s: %d failed allocations on %s" % (r["trace"], r[alloc]["failed"],
                                                                  alloc))
    if args["json"]:
        with open(args["json"], "w", encoding="utf-8") as f:
            json.dump({"tool": tool, "traces": results}, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
