#!/usr/bin/env python3
"""Generate capheap benchmark traces (docs/trace-format.md) with fixed seeds.

Usage:
  gen_traces.py [--out DIR] [--check] [WORKLOAD...]

Writes WORKLOAD.trace for each named workload (default: all) into DIR (default: this script's
directory). The output is a pure function of the seeds below, so regenerating produces identical
files; --check regenerates in memory and exits 1 if a checked-in file differs.

Every file starts with the same header as the shared traces:
  # heap-trace v1
  # workload: NAME
  # description: ...
  # ops: N (a=.. z=.. m=.. r=.. f=..)
  # peak_live_bytes: B        (peak sum of requested bytes of bound IDs)
  # peak_live_blocks: K
  # final_live_blocks: K final_live_bytes: B
computed with the trace format's binding rules (capheap::sim::compute_stats computes the same).

Workloads:
  aligned-heavy  many `m` ops (alignments 8..4096) with mixed sizes among small objects
  large-buffers  a few 4-256 KiB buffers alive among churning small objects
  fragmenting    alternating sizes, free every other block, then ask for larger ones (mild:
                 the holes merge back within two rounds)
  adversarial    interleaved lifetimes of alternating sizes with sawtooth size growth: every
                 round's requests are larger than the holes the previous rounds left pinned
  small-uniform  sizes uniform 16..128 with calloc mixed in, random free order, steady live set
Stdlib only.
"""

import argparse
import os
import random
import sys


class TraceBuilder:
    """Accumulates operations and tracks the statistics written to the header."""

    def __init__(self, name, description):
        self.name = name
        self.description = description
        self.lines = []
        self.counts = {k: 0 for k in "azmrf"}
        self.live = {}  # id -> requested bytes
        self.live_bytes = 0
        self.peak_bytes = 0
        self.peak_blocks = 0
        self.next_id = 1

    def _bind(self, ident, nbytes):
        self.live_bytes -= self.live.get(ident, 0)
        self.live[ident] = nbytes
        self.live_bytes += nbytes
        self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        self.peak_blocks = max(self.peak_blocks, len(self.live))

    def _emit(self, kind, fields, extra):
        self.counts[kind] += 1
        line = kind + " " + " ".join(str(f) for f in fields)
        if extra:
            line += " " + extra
        self.lines.append(line)

    def new_id(self):
        ident = self.next_id
        self.next_id += 1
        return ident

    def malloc(self, size, extra=""):
        ident = self.new_id()
        self._emit("a", (ident, size), extra)
        self._bind(ident, size)
        return ident

    def calloc(self, count, size, extra=""):
        ident = self.new_id()
        self._emit("z", (ident, count, size), extra)
        self._bind(ident, count * size)
        return ident

    def aligned(self, align, size, extra=""):
        ident = self.new_id()
        self._emit("m", (ident, align, size), extra)
        self._bind(ident, size)
        return ident

    def realloc(self, ident, size, extra=""):
        self._emit("r", (ident, size), extra)
        self._bind(ident, size)

    def free(self, ident, extra=""):
        assert ident in self.live, ident
        self._emit("f", (ident,), extra)
        self.live_bytes -= self.live.pop(ident)

    @property
    def ops(self):
        return len(self.lines)

    def text(self):
        c = self.counts
        header = [
            "# heap-trace v1",
            "# workload: " + self.name,
            "# description: " + self.description,
            "# ops: %d (a=%d z=%d m=%d r=%d f=%d)"
            % (self.ops, c["a"], c["z"], c["m"], c["r"], c["f"]),
            "# peak_live_bytes: %d" % self.peak_bytes,
            "# peak_live_blocks: %d" % self.peak_blocks,
            "# final_live_blocks: %d final_live_bytes: %d" % (len(self.live), self.live_bytes),
        ]
        return "\n".join(header + self.lines) + "\n"


def pop_random(rng, items):
    """Removes and returns a random element of a list in O(1) (order is not preserved)."""
    i = rng.randrange(len(items))
    items[i], items[-1] = items[-1], items[i]
    return items.pop()


def aligned_heavy():
    rng = random.Random(0xA11C)
    t = TraceBuilder(
        "aligned-heavy",
        "DMA/cache-line buffers: ~55% aligned allocs (align 8..4096, sizes 16 B..8 KiB, some "
        "caps=DMA|8BIT or caps=DMA|INTERNAL) among 16..256 B objects; random free order, live set "
        "~150-250 blocks",
    )
    aligns = [8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]
    weights = [10, 14, 18, 20, 10, 8, 6, 5, 4, 5]
    live = []
    target = 200
    while t.ops < 60000:
        want_alloc = len(live) < target + rng.randint(-50, 50)
        if want_alloc or not live:
            if rng.random() < 0.55:
                align = rng.choices(aligns, weights)[0]
                r = rng.random()
                if r < 0.5:
                    size = rng.randint(16, 256)
                elif r < 0.85:
                    size = rng.randint(257, 2048)
                else:
                    size = rng.randint(2049, 8192)
                if align >= 64 and rng.random() < 0.5:
                    size = (size + align - 1) // align * align  # whole cache lines / pages
                extra = ""
                u = rng.random()
                if u < 0.25:
                    extra = "caps=DMA|8BIT"
                elif u < 0.35:
                    extra = "caps=DMA|INTERNAL"
                live.append(t.aligned(align, size, extra))
            else:
                live.append(t.malloc(rng.randint(16, 256)))
        else:
            t.free(pop_random(rng, live))
    return t


def large_buffers():
    rng = random.Random(0x1A26E)
    t = TraceBuilder(
        "large-buffers",
        "a few 4-256 KiB buffers (frame, audio, TLS, OTA; 0-5 alive, each living 200-3000 ops) "
        "among churning 16..512 B objects (live set ~120)",
    )
    small = []
    large = []  # (id, expiry op)
    tasks = ["camera", "audio", "tls", "ota"]
    while t.ops < 50000:
        # Expire large buffers whose time has come.
        for entry in [e for e in large if e[1] <= t.ops]:
            large.remove(entry)
            t.free(entry[0])
        if len(large) < 5 and rng.random() < 0.006:
            kib = rng.choice([4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256])
            size = kib * 1024 - rng.choice([0, 0, 0, 16, 100, 1000])
            task = rng.choice(tasks)
            extra = "caps=SPIRAM|8BIT task=%s" % task if rng.random() < 0.3 else "task=%s" % task
            ident = t.malloc(size, extra) if rng.random() < 0.7 else t.calloc(1, size, extra)
            large.append((ident, t.ops + rng.randint(200, 3000)))
            continue
        if len(small) < 120 + rng.randint(-40, 40) or not small:
            r = rng.random()
            size = rng.randint(16, 128) if r < 0.7 else rng.randint(129, 512)
            small.append(t.malloc(size))
        else:
            t.free(pop_random(rng, small))
    return t


def fragmenting():
    rng = random.Random(0xF4A6)
    t = TraceBuilder(
        "fragmenting",
        "adversarial: each round allocates 400 blocks of two alternating sizes, frees every other "
        "one, then asks for blocks larger than the holes and grows some survivors by realloc; "
        "survivors live 2 rounds, large blocks 1 round",
    )
    pinned_rounds = []  # per round: survivors of the alternating phase
    big_prev = []
    round_no = 0
    while t.ops < 60000:
        round_no += 1
        a = rng.choice([16, 20, 24, 32, 40, 48])
        b = rng.choice([48, 56, 64, 80, 96, 128])
        blocks = [t.malloc(a if i % 2 == 0 else b) for i in range(400)]
        survivors = blocks[0::2]
        for ident in blocks[1::2]:
            t.free(ident)
        # Larger than every hole: these must come from fresh memory.
        big = [t.malloc(rng.randint(b + 8, 2 * b + 64)) for _ in range(100)]
        # Grow a few survivors (in place only if the hole after them is still free).
        for ident in rng.sample(survivors, 40):
            t.realloc(ident, rng.randint(a + 4, a + b))
        for ident in big_prev:
            t.free(ident)
        big_prev = big
        pinned_rounds.append(survivors)
        if len(pinned_rounds) > 2:
            old = pinned_rounds.pop(0)
            rng.shuffle(old)
            for ident in old:
                t.free(ident)
    return t


def adversarial():
    rng = random.Random(0xAD7E)
    t = TraceBuilder(
        "adversarial",
        "designed to fragment a segregated-fit (TLSF-class) heap: rounds of 60 pairs of "
        "alternating sizes with interleaved lifetimes (the short one of each pair freed at the "
        "end of its round, the long one living 3 rounds), sizes growing 12% per round from 24 B "
        "to ~800 B and falling back (sawtooth), so each round's requests are larger than the "
        "holes pinned by the previous rounds; plus a few multi-KiB requests at each round's peak",
    )
    generations = []  # long-lived IDs of the last rounds, oldest first
    base = 24.0
    while t.ops < 60000:
        short_size = int(base)
        long_size = int(base * rng.uniform(0.6, 1.4))
        shorts = []
        longs = []
        for _ in range(60):
            shorts.append(t.malloc(short_size + rng.randint(0, 3) * 4))
            longs.append(t.malloc(max(8, long_size + rng.randint(-2, 2) * 4)))
        # At the round's peak: a few large requests that need contiguous memory.
        big = [t.malloc(rng.randint(3, 6) * int(base) * 4 + rng.randint(0, 64))
               for _ in range(rng.randint(1, 3))]
        for ident in shorts:
            t.free(ident)
        for ident in big:
            t.free(ident)
        generations.append(longs)
        if len(generations) > 3:
            old = generations.pop(0)
            rng.shuffle(old)
            for ident in old:
                t.free(ident)
        base = base * 1.12 if base < 768 else 24.0
    return t


def small_uniform():
    rng = random.Random(0x5A11)
    t = TraceBuilder(
        "small-uniform",
        "sizes uniform 16..128 (10% calloc of 1-8 elements), random free order, steady live set "
        "of ~500 blocks",
    )
    live = []
    while len(live) < 500:
        live.append(t.malloc(rng.randint(16, 128)))
    while t.ops < 80000:
        if rng.random() < 0.5:
            t.free(pop_random(rng, live))
        if rng.random() < 0.1:
            count = rng.randint(1, 8)
            live.append(t.calloc(count, rng.randint(16, 128) // count))
        else:
            live.append(t.malloc(rng.randint(16, 128)))
        if len(live) > 520:
            t.free(pop_random(rng, live))
    return t


WORKLOADS = {
    "aligned-heavy": aligned_heavy,
    "large-buffers": large_buffers,
    "fragmenting": fragmenting,
    "adversarial": adversarial,
    "small-uniform": small_uniform,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--check", action="store_true", help="verify the files instead of writing")
    parser.add_argument("workloads", nargs="*", metavar="WORKLOAD",
                        help="one of: " + ", ".join(WORKLOADS) + " (default: all)")
    args = parser.parse_args()
    unknown = [w for w in args.workloads if w not in WORKLOADS]
    if unknown:
        parser.error("unknown workload(s): " + ", ".join(unknown))
    names = args.workloads or list(WORKLOADS)
    status = 0
    for name in names:
        trace = WORKLOADS[name]()
        text = trace.text()
        path = os.path.join(args.out, name + ".trace")
        if args.check:
            try:
                with open(path, encoding="utf-8") as f:
                    same = f.read() == text
            except OSError:
                same = False
            print("%-14s %s" % (name, "ok" if same else "DIFFERS"))
            status |= 0 if same else 1
            continue
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        print("%-14s %6d ops  %8d bytes  peak_live_bytes %d  peak_live_blocks %d"
              % (name, trace.ops, len(text), trace.peak_bytes, trace.peak_blocks))
    return status


if __name__ == "__main__":
    sys.exit(main())
