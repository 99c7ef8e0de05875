"""Reads callgrind output files (callgrind_replay.py, callgrind_caps.py). Stdlib only.

A profile is reduced to what the scripts need: the collected total, each function's self cost and
each call arc (caller -> callee) with its call count and inclusive cost. Only the first event
(Ir) is read. Name compression ("fn=(12) name" then "fn=(12)") and relative positions are
handled; file and object names are ignored.
"""

import collections
import os


class Profile:
    def __init__(self):
        self.total = 0
        self.self_cost = collections.Counter()  # function -> Ir spent in its own code
        self.arcs = {}  # (caller, callee) -> [calls, inclusive Ir]

    def callees(self, caller):
        """(callee, calls, inclusive Ir) of every arc leaving caller."""
        return [(callee, v[0], v[1]) for (c, callee), v in self.arcs.items() if c == caller]

    def callers(self, callee):
        """(caller, calls, inclusive Ir) of every arc entering callee."""
        return [(caller, v[0], v[1]) for (caller, c), v in self.arcs.items() if c == callee]

    def calls_to(self, callee):
        """Times callee was called (sum over its incoming arcs)."""
        return sum(calls for _, calls, _ in self.callers(callee))

    def inclusive(self, fn):
        """Self cost plus the inclusive cost of every call fn made (fn must not be recursive)."""
        return self.self_cost[fn] + sum(ir for _, _, ir in self.callees(fn))

    def functions(self):
        names = set(self.self_cost)
        for caller, callee in self.arcs:
            names.add(caller)
            names.add(callee)
        return names


class ParseError(Exception):
    pass


def parse(path):
    """Parses one callgrind output file into a Profile."""
    prof = Profile()
    names = {}
    fn = None
    callee = None
    pending_calls = None

    def resolve(spec, where):
        spec = spec.strip()
        if spec.startswith("("):
            close = spec.find(")")
            if close < 0:
                raise ParseError("%s:%d: bad name '%s'" % (path, where, spec))
            key = spec[1:close]
            rest = spec[close + 1:].strip()
            if rest:
                names[key] = rest
                return rest
            if key not in names:
                raise ParseError("%s:%d: undefined name id (%s)" % (path, where, key))
            return names[key]
        return spec

    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                fields = line.split()
                cost = int(fields[1]) if len(fields) > 1 else 0
                if pending_calls is not None:
                    if fn is None or callee is None:
                        raise ParseError("%s:%d: call cost outside a function" % (path, lineno))
                    arc = prof.arcs.setdefault((fn, callee), [0, 0])
                    arc[0] += pending_calls
                    arc[1] += cost
                    pending_calls = None
                elif fn is not None:
                    prof.self_cost[fn] += cost
                continue
            key, _, value = line.partition("=")
            if key == "fn":
                fn = resolve(value, lineno)
            elif key in ("cfn", "cfnc"):
                callee = resolve(value, lineno)
            elif key == "calls":
                pending_calls = int(value.split()[0])
            elif line.startswith("totals:") or line.startswith("summary:"):
                prof.total = int(line.split(":", 1)[1].split()[0])
    return prof


def default_build(tool):
    """The build directory whose bench/TOOL exists: $CAPHEAP_BUILD_DIR, else build-rel/ or build/
    in the repository root (build-rel/ when neither has it)."""
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.normpath(os.path.join(here, ".."))
    if os.environ.get("CAPHEAP_BUILD_DIR"):
        return os.environ["CAPHEAP_BUILD_DIR"]
    for name in ("build-rel", "build"):
        if os.access(os.path.join(root, name, "bench", tool), os.X_OK):
            return os.path.join(root, name)
    return os.path.join(root, "build-rel")
