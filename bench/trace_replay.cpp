// trace_replay.cpp — replays allocation traces on a capheap Heap and on the system malloc.
//
//   capheap_trace_replay [options] TRACE...
//
// For each trace it reports: operations, failed operations (NULL where the trace expects a block),
// ns per operation (median of --repeat replays, each on a fresh heap), the peak of live requested
// bytes, and the minimum region size that replays the trace without a failed allocation (binary
// search over granule-aligned region sizes, then a scan upwards for the size from which every
// region works; see search_region) with its ratio to the peak live bytes. Run with --help for the
// options; docs/trace-format.md explains the trace columns, docs/performance.md the method.
//
// The same binary search runs on a model of ESP-IDF's multi_heap (bench/tlsf_model.hpp: TLSF with
// the 32-bit layout, placing real blocks in the region), once per trace and without the stability
// scan: its `esp_idf_model` minimum region is the figure capheap's is judged against
// (bench/report.py). --no-model skips it.
//
// Per-call latency (--latency-repeat replays, default 15): every allocator call is bracketed by
// the time-stamp counter (lfence; rdtsc; lfence on both sides) and each operation's latency is the
// best over the replays of the same trace on the same heap state (estimate_best() explains "best"
// on a coarse counter), less the bracket's own cost. Reported per operation kind as p50 / p99 /
// p99.9 / max with the trace line of the worst calls; realloc and calloc also without their copy or
// zero-fill (the same bracket around a memcpy / memset of the same size). bench/report.py turns the
// --json file into the tables of docs/performance.md.
//
// --callgrind capheap|system replays each trace once with every call made through one
// never-inlined function per operation kind (cgop_<allocator>_<kind>), so that callgrind's call
// arcs give the allocator's own instructions per kind without the replay glue
// (bench/callgrind_replay.py).
//
// Expected NULLs: a request of 0 bytes, a calloc whose COUNT × SIZE overflows and an aligned alloc
// whose alignment is 0 or not a power of two must return NULL; they never count as failures. A
// non-NULL result there is counted as "unexpected" (for capheap that is a conformance problem;
// glibc's malloc(0) legitimately returns a block) and freed at once.
//
// Every block gets a per-ID byte pattern in its first and last byte; free and realloc check it, and
// realloc checks that the bytes it had to preserve were preserved. A mismatch aborts with the trace
// line (silent corruption must never produce a benchmark number).
#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <malloc.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "capheap/heap.hpp"
#include "floor_tlsf.hpp"
#include "proto_tlsf.hpp"
#include "sim/trace.hpp"
#include "tlsf_model.hpp"

#if defined(CAPHEAP_HAVE_CALLGRIND_H) && CAPHEAP_HAVE_CALLGRIND_H
#include <valgrind/callgrind.h>
#define REPLAY_CALLGRIND_START() CALLGRIND_START_INSTRUMENTATION
#define REPLAY_CALLGRIND_STOP() CALLGRIND_STOP_INSTRUMENTATION
#else
#define REPLAY_CALLGRIND_START() ((void)0)
#define REPLAY_CALLGRIND_STOP() ((void)0)
#endif

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
#define REPLAY_HAVE_MALLINFO2 1
#else
#define REPLAY_HAVE_MALLINFO2 0
#endif

namespace capheap::bench {

using sim::OpKind;

// ================================================================================================
// Replay program: the trace compiled to a flat array with recycled slots
// ================================================================================================

/// Allocator of the replay's big arrays (operations, latency samples): 2 MiB-aligned and on
/// transparent huge pages when at least 1 MiB, so that streaming through them per replay neither
/// misses in the TLB nor pushes the heap's own translations out (see LatencyPlaces).
template <class T>
struct HugeAllocator {
  using value_type = T;
  HugeAllocator() = default;
  template <class U>
  HugeAllocator(const HugeAllocator<U> &) noexcept {}
  T *allocate(std::size_t n) {
    const std::size_t bytes = n * sizeof(T);
    constexpr std::size_t kHuge = std::size_t{2} << 20;
    void *p = nullptr;
    if (bytes >= (std::size_t{1} << 20)) {
      p = std::aligned_alloc(kHuge, (bytes + kHuge - 1) / kHuge * kHuge);
#ifdef MADV_HUGEPAGE
      if (p != nullptr) madvise(p, (bytes + kHuge - 1) / kHuge * kHuge, MADV_HUGEPAGE);
#endif
    } else {
      p = std::malloc(bytes == 0 ? 1 : bytes);
    }
    if (p == nullptr) {
      std::fprintf(stderr, "capheap_trace_replay: out of memory (%zu bytes)\n", bytes);
      std::exit(2);
    }
    return static_cast<T *>(p);
  }
  void deallocate(T *p, std::size_t) noexcept {
    std::free(p);
  }
  template <class U>
  bool operator==(const HugeAllocator<U> &) const noexcept {
    return true;
  }
  template <class U>
  bool operator!=(const HugeAllocator<U> &) const noexcept {
    return false;
  }
};
template <class T>
using BigVector = std::vector<T, HugeAllocator<T>>;

/// One operation, ready to replay. Slots are recycled: a slot freed by `f` is reused by the next
/// binding, so the slot table holds only peak-live-blocks entries and stays in cache.
struct ReplayOp {
  std::size_t size = 0;  ///< SIZE (element size for calloc)
  std::size_t arg = 0;   ///< COUNT (calloc) or ALIGN (aligned alloc)
  std::uint32_t slot = 0;
  OpKind kind = OpKind::kMalloc;
  bool expect_null = false;  ///< the request itself is invalid: NULL is the right answer
  std::uint8_t pattern = 0;  ///< byte written to the block's first and last byte
};

/// The state of one slot during a replay.
struct Slot {
  unsigned char *p = nullptr;
  std::size_t n = 0;  ///< requested bytes of the current block (0 if p is null)
  std::uint8_t pattern = 0;
};

struct Program {
  std::string name;
  const sim::Trace *trace = nullptr;
  BigVector<ReplayOp> ops;
  std::uint32_t slots = 0;  ///< size of the slot table (peak bound IDs)
  sim::TraceStats stats;
};

bool is_pow2(std::size_t v) {
  return v != 0 && (v & (v - 1)) == 0;
}

Program compile(const std::string &name, const sim::Trace &trace) {
  Program prog;
  prog.name = name;
  prog.trace = &trace;
  prog.stats = sim::compute_stats(trace);
  prog.ops.reserve(trace.ops.size());
  constexpr std::uint32_t kNone = 0xFFFFFFFFu;
  std::vector<std::uint32_t> compact(trace.ids.size(), kNone);  // trace slot → replay slot
  std::vector<std::uint32_t> free_slots;
  for (const sim::Op &op : trace.ops) {
    ReplayOp r;
    r.kind = op.kind;
    r.size = op.size;
    r.pattern = static_cast<std::uint8_t>((op.slot * 131u + 17u) | 1u);
    std::uint32_t &c = compact[op.slot];
    if (c == kNone) {
      if (free_slots.empty()) {
        c = prog.slots++;
      } else {
        c = free_slots.back();
        free_slots.pop_back();
      }
    }
    r.slot = c;
    switch (op.kind) {
      case OpKind::kMalloc:
      case OpKind::kRealloc:
        r.expect_null = op.size == 0;
        break;
      case OpKind::kCalloc:
        r.arg = op.count;
        r.expect_null = op.count == 0 || op.size == 0 || sim::requested_bytes(op) == 0;
        break;
      case OpKind::kAlignedAlloc:
        r.arg = op.align;
        r.expect_null = op.size == 0 || !is_pow2(op.align);
        break;
      case OpKind::kFree:
        free_slots.push_back(c);
        c = kNone;
        break;
    }
    if (op.kind == OpKind::kRealloc && op.to_slot != sim::kNoSlot) {
      // `r ID SIZE to=NEW`: the replay slot now holds NEW's block; ID is unbound.
      compact[op.to_slot] = r.slot;
      compact[op.slot] = kNone;
    }
    prog.ops.push_back(r);
  }
  return prog;
}

// ================================================================================================
// Allocators
// ================================================================================================

struct CapheapAlloc {
  Heap heap;
  void *malloc(std::size_t n) noexcept { return heap.allocate(n); }
  void *calloc(std::size_t count, std::size_t size) noexcept {
    if (count != 0 && size > SIZE_MAX / count) return nullptr;
    void *p = heap.allocate(count * size);
    if (p != nullptr) std::memset(p, 0, count * size);
    return p;
  }
  void *aligned(std::size_t align, std::size_t n) noexcept {
    return heap.allocate_aligned(n, align);
  }
  void *realloc(void *p, std::size_t n) noexcept { return heap.reallocate(p, n); }
  void free(void *p) noexcept { heap.deallocate(p); }
  /// Bytes a moving realloc of p copies at most (the engine copies min(usable, new size)).
  std::size_t usable(const void *p) const noexcept { return heap.usable_size(p); }
};

/// ESP-IDF multi_heap as modelled by TlsfModel (memory behaviour only; never timed).
struct ModelAlloc {
  TlsfModel heap;
  void *malloc(std::size_t n) noexcept { return heap.malloc(n); }
  void *calloc(std::size_t count, std::size_t size) noexcept { return heap.calloc(count, size); }
  void *aligned(std::size_t align, std::size_t n) noexcept { return heap.memalign(align, n); }
  void *realloc(void *p, std::size_t n) noexcept { return heap.realloc(p, n); }
  void free(void *p) noexcept { heap.free(p); }
  std::size_t usable(const void *p) const noexcept { return heap.usable_size(p); }
};

struct SystemAlloc {
  void *malloc(std::size_t n) noexcept { return std::malloc(n); }
  void *calloc(std::size_t count, std::size_t size) noexcept {
    if (count != 0 && size > SIZE_MAX / count) return nullptr;  // as calloc does (sanitizers abort)
    return std::calloc(count, size);
  }
  void *aligned(std::size_t align, std::size_t n) noexcept {
    // posix_memalign returns EINVAL for these; answered here so sanitizers do not abort on them.
    if (!is_pow2(align)) return nullptr;
    // It also needs a multiple of sizeof(void *); smaller powers of two are met by that.
    void *p = nullptr;
    return posix_memalign(&p, std::max(align, sizeof(void *)), n) == 0 ? p : nullptr;
  }
  void *realloc(void *p, std::size_t n) noexcept { return std::realloc(p, n); }
  void free(void *p) noexcept { std::free(p); }
  std::size_t usable(void *p) const noexcept { return malloc_usable_size(p); }
};

// ---- Callgrind: one never-inlined function per operation kind ----------------------------------
//
// bench/callgrind_replay.py reads, for each cgop_<allocator>_<kind>, the calls it received and the
// inclusive instructions of the calls it made (the allocator's own work, glue excluded). noipa
// (GCC) also keeps identical bodies from being folded into one function; the empty asm after each
// call keeps it from becoming a tail jump, which callgrind would not show as a call.
#if defined(__clang__)
#define REPLAY_CG_FN __attribute__((noinline))
#else
#define REPLAY_CG_FN __attribute__((noipa))
#endif
#define REPLAY_CG_BARRIER() asm volatile("" ::: "memory")

REPLAY_CG_FN void *cgop_capheap_malloc(Heap &h, std::size_t n) noexcept {
  void *p = h.allocate(n);
  REPLAY_CG_BARRIER();
  return p;
}
REPLAY_CG_FN void *cgop_capheap_calloc(Heap &h, std::size_t count, std::size_t size) noexcept {
  if (count != 0 && size > SIZE_MAX / count) return nullptr;
  void *p = h.allocate(count * size);
  if (p != nullptr) std::memset(p, 0, count * size);
  REPLAY_CG_BARRIER();
  return p;
}
REPLAY_CG_FN void *cgop_capheap_aligned(Heap &h, std::size_t align, std::size_t n) noexcept {
  void *p = h.allocate_aligned(n, align);
  REPLAY_CG_BARRIER();
  return p;
}
REPLAY_CG_FN void *cgop_capheap_realloc(Heap &h, void *p, std::size_t n) noexcept {
  void *q = h.reallocate(p, n);
  REPLAY_CG_BARRIER();
  return q;
}
REPLAY_CG_FN void cgop_capheap_free(Heap &h, void *p) noexcept {
  h.deallocate(p);
  REPLAY_CG_BARRIER();
}

REPLAY_CG_FN void *cgop_system_malloc(std::size_t n) noexcept {
  void *p = std::malloc(n);
  REPLAY_CG_BARRIER();
  return p;
}
REPLAY_CG_FN void *cgop_system_calloc(std::size_t count, std::size_t size) noexcept {
  if (count != 0 && size > SIZE_MAX / count) return nullptr;
  void *p = std::calloc(count, size);
  REPLAY_CG_BARRIER();
  return p;
}
REPLAY_CG_FN void *cgop_system_aligned(std::size_t align, std::size_t n) noexcept {
  if (!is_pow2(align)) return nullptr;
  void *p = nullptr;
  const int rc = posix_memalign(&p, std::max(align, sizeof(void *)), n);
  REPLAY_CG_BARRIER();
  return rc == 0 ? p : nullptr;
}
REPLAY_CG_FN void *cgop_system_realloc(void *p, std::size_t n) noexcept {
  void *q = std::realloc(p, n);
  REPLAY_CG_BARRIER();
  return q;
}
REPLAY_CG_FN void cgop_system_free(void *p) noexcept {
  std::free(p);
  REPLAY_CG_BARRIER();
}

// The floor TLSF (bench/floor_tlsf.hpp): `floor` the head-check variant, `floorgf` TLSF's good
// fit. Only malloc and free are the point; the others are its simple versions.
#define REPLAY_CG_FLOOR(NAME, TYPE)                                                                \
  REPLAY_CG_FN void *cgop_##NAME##_malloc(TYPE &h, std::size_t n) noexcept {                       \
    void *p = h.malloc(n);                                                                         \
    REPLAY_CG_BARRIER();                                                                           \
    return p;                                                                                      \
  }                                                                                                \
  REPLAY_CG_FN void *cgop_##NAME##_calloc(TYPE &h, std::size_t count, std::size_t size) noexcept { \
    void *p = h.calloc(count, size);                                                               \
    REPLAY_CG_BARRIER();                                                                           \
    return p;                                                                                      \
  }                                                                                                \
  REPLAY_CG_FN void *cgop_##NAME##_aligned(TYPE &h, std::size_t align, std::size_t n) noexcept {   \
    void *p = h.aligned(align, n);                                                                 \
    REPLAY_CG_BARRIER();                                                                           \
    return p;                                                                                      \
  }                                                                                                \
  REPLAY_CG_FN void *cgop_##NAME##_realloc(TYPE &h, void *p, std::size_t n) noexcept {             \
    void *q = h.realloc(p, n);                                                                     \
    REPLAY_CG_BARRIER();                                                                           \
    return q;                                                                                      \
  }                                                                                                \
  REPLAY_CG_FN void cgop_##NAME##_free(TYPE &h, void *p) noexcept {                                \
    h.free(p);                                                                                     \
    REPLAY_CG_BARRIER();                                                                           \
  }                                                                                                \
  struct Cg_##NAME##_Alloc {                                                                       \
    TYPE heap;                                                                                     \
    void *malloc(std::size_t n) noexcept { return cgop_##NAME##_malloc(heap, n); }                 \
    void *calloc(std::size_t count, std::size_t size) noexcept {                                   \
      return cgop_##NAME##_calloc(heap, count, size);                                              \
    }                                                                                              \
    void *aligned(std::size_t align, std::size_t n) noexcept {                                     \
      return cgop_##NAME##_aligned(heap, align, n);                                                \
    }                                                                                              \
    void *realloc(void *p, std::size_t n) noexcept { return cgop_##NAME##_realloc(heap, p, n); }   \
    void free(void *p) noexcept { cgop_##NAME##_free(heap, p); }                                   \
  };
REPLAY_CG_FLOOR(floor, FloorTlsf<false>)
REPLAY_CG_FLOOR(floorgf, FloorTlsf<true>)
REPLAY_CG_FLOOR(proto, ProtoTlsf<0>)
REPLAY_CG_FLOOR(protolc, ProtoTlsf<1>)
REPLAY_CG_FLOOR(protofx, ProtoTlsf<2>)
REPLAY_CG_FLOOR(protofxlc, ProtoTlsf<3>)
#undef REPLAY_CG_FLOOR

struct CgCapheapAlloc {
  Heap heap;
  void *malloc(std::size_t n) noexcept { return cgop_capheap_malloc(heap, n); }
  void *calloc(std::size_t count, std::size_t size) noexcept {
    return cgop_capheap_calloc(heap, count, size);
  }
  void *aligned(std::size_t align, std::size_t n) noexcept {
    return cgop_capheap_aligned(heap, align, n);
  }
  void *realloc(void *p, std::size_t n) noexcept { return cgop_capheap_realloc(heap, p, n); }
  void free(void *p) noexcept { cgop_capheap_free(heap, p); }
};

struct CgSystemAlloc {
  void *malloc(std::size_t n) noexcept { return cgop_system_malloc(n); }
  void *calloc(std::size_t count, std::size_t size) noexcept {
    return cgop_system_calloc(count, size);
  }
  void *aligned(std::size_t align, std::size_t n) noexcept { return cgop_system_aligned(align, n); }
  void *realloc(void *p, std::size_t n) noexcept { return cgop_system_realloc(p, n); }
  void free(void *p) noexcept { cgop_system_free(p); }
};

#if REPLAY_HAVE_MALLINFO2
/// System malloc that samples the bytes glibc holds from the OS (arena + mmapped) after every
/// allocating call. Used once per trace, untimed, on a fresh thread (so on a fresh glibc arena).
struct SampledSystemAlloc : SystemAlloc {
  std::size_t peak = 0;
  void sample() noexcept {
    const struct mallinfo2 mi = mallinfo2();
    peak = std::max(peak, mi.arena + mi.hblkhd);
  }
  void *malloc(std::size_t n) noexcept {
    void *p = SystemAlloc::malloc(n);
    sample();
    return p;
  }
  void *calloc(std::size_t count, std::size_t size) noexcept {
    void *p = SystemAlloc::calloc(count, size);
    sample();
    return p;
  }
  void *aligned(std::size_t align, std::size_t n) noexcept {
    void *p = SystemAlloc::aligned(align, n);
    sample();
    return p;
  }
  void *realloc(void *p, std::size_t n) noexcept {
    void *q = SystemAlloc::realloc(p, n);
    sample();
    return q;
  }
};
#endif

// ================================================================================================
// The replay loop
// ================================================================================================

struct Counts {
  std::size_t failed = 0;      ///< NULL where a block was expected
  std::size_t unexpected = 0;  ///< non-NULL where NULL was expected (freed at once)
  std::size_t executed = 0;    ///< ops run (less than all when stopping at the first failure)
};

[[noreturn]] __attribute__((noinline, cold)) void corruption(const Program &prog,
                                                             const ReplayOp *op, const char *what) {
  const std::size_t index = static_cast<std::size_t>(op - prog.ops.data());
  const sim::Op &src = prog.trace->ops[index];
  std::fprintf(stderr, "capheap_trace_replay: %s:%" PRIu32 ": ID '%s': %s\n", prog.name.c_str(),
               src.line, prog.trace->ids[src.slot].c_str(), what);
  std::abort();
}

inline void check_block(const Program &prog, const ReplayOp *op, const Slot &s) {
  if (s.p[0] != s.pattern) corruption(prog, op, "first byte of the block was overwritten");
  if (s.p[s.n - 1] != s.pattern) corruption(prog, op, "last byte of the block was overwritten");
}

inline void stamp(Slot &s, unsigned char *p, std::size_t n, std::uint8_t pattern) {
  s.p = p;
  s.n = n;
  s.pattern = pattern;
  p[0] = pattern;
  p[n - 1] = pattern;
}

// ---- Timer
// ---------------------------------------------------------------------------------------

#if defined(__x86_64__) || defined(__i386__)
#define REPLAY_HAVE_TSC 1
/// The time-stamp counter, fenced on both sides: the first lfence waits for everything before to
/// finish, the second keeps everything after from starting before the counter is read. The same
/// sequence opens and closes a bracket (rdtscp is not available everywhere, e.g. in some VMs).
inline std::uint64_t read_ticks() noexcept {
  std::uint32_t lo = 0;
  std::uint32_t hi = 0;
  asm volatile("lfence\n\trdtsc\n\tlfence" : "=a"(lo), "=d"(hi) : : "memory");
  return (std::uint64_t{hi} << 32) | lo;
}
#else
#define REPLAY_HAVE_TSC 0
inline std::uint64_t read_ticks() noexcept {
  asm volatile("" ::: "memory");
  const auto t = std::chrono::steady_clock::now().time_since_epoch();
  asm volatile("" ::: "memory");
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(t).count());
}
#endif

constexpr std::uint32_t kNoCall = 0xFFFFFFFFu;  ///< latency sample of an op that made no call

inline std::uint32_t clamp_ticks(std::uint64_t t) noexcept {
  return t >= kNoCall ? kNoCall - 1 : static_cast<std::uint32_t>(t);
}

// ---- Probes: what the replay loop records around each allocator call
// -----------------------------

/// Realloc outcomes recorded by LatencyProbe::note (0: a calloc, or realloc(NULL, n),
/// realloc(p, 0), a failed realloc).
constexpr std::uint8_t kOutcomeInPlace = 1;
constexpr std::uint8_t kOutcomeMoved = 2;

/// Records nothing (the timed, search and callgrind replays): compiles to the bare loop.
struct NoProbe {
  static constexpr bool kRecords = false;
  std::uint64_t start() const noexcept { return 0; }
  void stop(std::uint64_t, std::size_t) const noexcept {}
  void note(std::size_t, std::size_t, std::uint8_t) const noexcept {}
  bool splits(std::size_t) const noexcept { return false; }
  void part_done(std::size_t, std::uint64_t) const noexcept {}
};

/// Records the ticks of every call of one replay (one row of LatencyTables). In a split replay
/// (`split` set) the flagged operations run as their parts instead: a moving realloc as malloc,
/// memcpy of what realloc copies, free (the engine's own move path, so the heap ends up in the
/// same state); a calloc as malloc + memset. `part` receives the ticks of the allocator's parts
/// of that one replay, the copy or fill between them left out: malloc + free of a moving realloc
/// (two brackets), the malloc of a calloc (one bracket).
struct LatencyProbe {
  static constexpr bool kRecords = true;
  std::uint32_t *ticks = nullptr;       ///< per op: ticks of its call, kNoCall if it made none
  std::uint32_t *bytes = nullptr;       ///< per op: bytes a moving realloc copied / a calloc zeroed
  std::uint8_t *outcome = nullptr;      ///< per op: kOutcome* of a realloc
  const std::uint8_t *split = nullptr;  ///< split replays: per op, 1 = run as its parts
  std::uint32_t *part = nullptr;        ///< split replays: ticks of the allocator's parts
  std::uint64_t start() const noexcept { return read_ticks(); }
  void stop(std::uint64_t t0, std::size_t i) const noexcept {
    const std::uint64_t t1 = read_ticks();
    ticks[i] = clamp_ticks(t1 - t0);
  }
  void note(std::size_t i, std::size_t n, std::uint8_t what) const noexcept {
    bytes[i] = n >= kNoCall ? kNoCall - 1 : static_cast<std::uint32_t>(n);
    outcome[i] = what;
  }
  bool splits(std::size_t i) const noexcept { return split != nullptr && split[i] != 0; }
  void part_done(std::size_t i, std::uint64_t ticks_of_parts) const noexcept {
    part[i] = clamp_ticks(ticks_of_parts);
  }
};

// Called through volatile pointers so that the split replays' copies and fills are real library
// calls, as the allocators' are.
void *(*volatile g_copy)(void *, const void *, std::size_t) = std::memcpy;
void *(*volatile g_fill)(void *, int, std::size_t) = std::memset;

/// Replays prog on alloc with the given slot table (all slots empty on entry). The probe brackets
/// exactly the allocator call of each operation; the checks and pattern bytes stay outside.
template <bool kStopOnFailure, class Alloc, class Probe>
inline Counts replay_with(Alloc &alloc, const Program &prog, Slot *slots, const Probe &probe) {
  Counts counts;
  const ReplayOp *const begin = prog.ops.data();
  const ReplayOp *const end = begin + prog.ops.size();
  for (const ReplayOp *op = begin; op != end; ++op) {
    const std::size_t index = static_cast<std::size_t>(op - begin);
    Slot &s = slots[op->slot];
    void *p = nullptr;
    std::size_t bytes = op->size;
    switch (op->kind) {
      case OpKind::kMalloc: {
        const std::uint64_t t0 = probe.start();
        p = alloc.malloc(op->size);
        probe.stop(t0, index);
        break;
      }
      case OpKind::kCalloc: {
        bytes = op->arg * op->size;  // no overflow unless expect_null
        if constexpr (Probe::kRecords) {
          if (probe.splits(index)) {  // only calloc that succeeded in the normal replays
            const std::uint64_t t0 = read_ticks();
            p = alloc.malloc(bytes);
            const std::uint64_t t1 = read_ticks();
            if (p != nullptr) g_fill(p, 0, bytes);
            probe.part_done(index, t1 - t0);
            break;
          }
        }
        const std::uint64_t t0 = probe.start();
        p = alloc.calloc(op->arg, op->size);
        probe.stop(t0, index);
        if (p != nullptr) probe.note(index, bytes, 0);
        break;
      }
      case OpKind::kAlignedAlloc: {
        const std::uint64_t t0 = probe.start();
        p = alloc.aligned(op->arg, op->size);
        probe.stop(t0, index);
        break;
      }
      case OpKind::kRealloc: {
        if (s.p != nullptr) check_block(prog, op, s);
        std::size_t old_usable = 0;
        bool split = false;
        if constexpr (Probe::kRecords) {
          if (s.p != nullptr) old_usable = alloc.usable(s.p);
          // Only reallocs that moved a block in the normal replays (s.p set, size not 0).
          split = probe.splits(index);
          if (split) {
            const std::uint64_t t0 = read_ticks();
            p = alloc.malloc(op->size);
            const std::uint64_t t1 = read_ticks();
            if (p != nullptr) {
              g_copy(p, s.p, std::min(old_usable, op->size));
              const std::uint64_t t2 = read_ticks();
              alloc.free(s.p);
              const std::uint64_t t3 = read_ticks();
              probe.part_done(index, (t1 - t0) + (t3 - t2));
            }
          }
        }
        if (!split) {
          const std::uint64_t t0 = probe.start();
          p = alloc.realloc(s.p, op->size);
          probe.stop(t0, index);
          if (s.p != nullptr && p != nullptr) {
            if (p == static_cast<void *>(s.p)) {
              probe.note(index, 0, kOutcomeInPlace);
            } else {
              probe.note(index, std::min(old_usable, op->size), kOutcomeMoved);
            }
          }
        }
        if (op->expect_null) {  // size 0: the old block (if any) is freed
          s.p = nullptr;
          s.n = 0;
          if (p != nullptr) {
            ++counts.unexpected;
            alloc.free(p);
          }
        } else if (p == nullptr) {  // failed: the old block stays bound
          ++counts.failed;
          if (kStopOnFailure) return counts;
        } else {
          auto *q = static_cast<unsigned char *>(p);
          if (s.p != nullptr) {
            if (q[0] != s.pattern) corruption(prog, op, "realloc did not preserve the first byte");
            if (s.n <= op->size && q[s.n - 1] != s.pattern) {
              corruption(prog, op, "realloc did not preserve the old last byte");
            }
          }
          stamp(s, q, op->size, op->pattern);
        }
        ++counts.executed;
        continue;
      }
      case OpKind::kFree:
        if (s.p != nullptr) {
          check_block(prog, op, s);
          const std::uint64_t t0 = probe.start();
          alloc.free(s.p);
          probe.stop(t0, index);
        }
        s.p = nullptr;
        s.n = 0;
        ++counts.executed;
        continue;
    }
    // malloc, calloc, aligned alloc
    if (p == nullptr) {
      if (!op->expect_null) {
        ++counts.failed;
        if (kStopOnFailure) return counts;
      }
      s.p = nullptr;
      s.n = 0;
    } else if (op->expect_null) {
      ++counts.unexpected;
      alloc.free(p);
      s.p = nullptr;
      s.n = 0;
    } else {
      stamp(s, static_cast<unsigned char *>(p), bytes, op->pattern);
    }
    ++counts.executed;
  }
  return counts;
}

template <bool kStopOnFailure, class Alloc>
inline Counts replay(Alloc &alloc, const Program &prog, Slot *slots) {
  return replay_with<kStopOnFailure>(alloc, prog, slots, NoProbe{});
}

// Named, never inlined: callgrind's --toggle-collect selects these (bench/callgrind_replay.py).
__attribute__((noinline)) Counts replay_loop_capheap(CapheapAlloc &alloc, const Program &prog,
                                                     Slot *slots) {
  return replay<false>(alloc, prog, slots);
}
__attribute__((noinline)) Counts replay_loop_system(SystemAlloc &alloc, const Program &prog,
                                                    Slot *slots) {
  return replay<false>(alloc, prog, slots);
}
__attribute__((noinline)) Counts replay_loop_capheap_cg(CgCapheapAlloc &alloc, const Program &prog,
                                                        Slot *slots) {
  return replay<false>(alloc, prog, slots);
}
__attribute__((noinline)) Counts replay_loop_system_cg(CgSystemAlloc &alloc, const Program &prog,
                                                       Slot *slots) {
  return replay<false>(alloc, prog, slots);
}

__attribute__((noinline)) Counts replay_loop_floor_cg(Cg_floor_Alloc &alloc, const Program &prog,
                                                      Slot *slots) {
  return replay<false>(alloc, prog, slots);
}
__attribute__((noinline)) Counts replay_loop_floorgf_cg(Cg_floorgf_Alloc &alloc,
                                                        const Program &prog, Slot *slots) {
  return replay<false>(alloc, prog, slots);
}
/// The prototype's variants (bench/proto_tlsf.hpp): one replay loop per variant, named
/// replay_loop_proto_cg<...> for callgrind's --toggle-collect='*replay_loop_*'.
template <class Alloc>
__attribute__((noinline)) Counts replay_loop_proto_cg(Alloc &alloc, const Program &prog,
                                                      Slot *slots) {
  return replay<false>(alloc, prog, slots);
}

/// Frees what a system replay left live.
template <class Alloc>
void release_system(Alloc &alloc, std::vector<Slot> &slots) {
  for (Slot &s : slots) {
    if (s.p != nullptr) alloc.free(s.p);
    s = Slot{};
  }
}

// ================================================================================================
// Region buffer and measurements
// ================================================================================================

class Region {
 public:
  Region() = default;
  Region(const Region &) = delete;
  Region &operator=(const Region &) = delete;
  ~Region() { std::free(data_); }
  /// Alignment of the region start. Fixed, because results depend on it: whether an aligned
  /// request fits depends on where the aligned addresses fall, i.e. on start mod alignment.
  static constexpr std::size_t kAlign = 4096;

  /// A kAlign-aligned buffer of at least n bytes (contents unspecified). huge: on 2 MiB pages
  /// where the kernel gives them (transparent huge pages on request), which is still
  /// kAlign-aligned.
  unsigned char *get(std::size_t n, bool huge = false) {
    if (n > size_) {
      std::free(data_);
      const std::size_t align = huge ? kHugePage : kAlign;
      size_ = (n + align - 1) / align * align;
      data_ = static_cast<unsigned char *>(std::aligned_alloc(align, size_));
      if (data_ == nullptr) {
        std::fprintf(stderr, "capheap_trace_replay: cannot allocate a %zu-byte region\n", size_);
        std::exit(2);
      }
#ifdef MADV_HUGEPAGE
      if (huge) madvise(data_, size_, MADV_HUGEPAGE);  // a hint: failure only costs the benefit
#endif
    }
    return data_;
  }
  static constexpr std::size_t kHugePage = std::size_t{2} << 20;

 private:
  unsigned char *data_ = nullptr;
  std::size_t size_ = 0;
};

struct Options {
  Granule granule = Granule::k4;
  int repeat = 5;
  int latency_repeat = 9;            ///< latency replays per round, trace and allocator (0: none)
  int latency_placements = 3;        ///< groups of latency replays per round (LatencyPlaces)
  int latency_rounds = 3;            ///< rounds over all traces (main)
  int cpu = -1;                      ///< pin the process to this CPU (-1: no pinning)
  std::size_t region = 0;            ///< timing region; 0 = timing_region()
  std::size_t stable_window = 4096;  ///< see search_region(); 0 = no stability scan
  bool search = true;
  bool system = true;
  bool model = true;                    ///< search the ESP-IDF model's minimum region too
  bool model_round_aligned = true;      ///< TlsfModel::Options::round_aligned_search
  std::size_t model_stable_window = 0;  ///< the model's stability scan (0: none)
  std::string json;
  std::string callgrind;  ///< "", "capheap", "system", "floor", "floorgf" or "proto*"
  double scan_lo = 0;     ///< --scan: region sizes from scan_lo to scan_hi x peak live (0: no scan)
  double scan_hi = 0;
  int scan_steps = 0;
  std::vector<std::string> traces;
};

constexpr std::size_t kSearchCap = std::size_t{1} << 30;  // give up above 1 GiB
constexpr std::size_t kDefaultRegion = std::size_t{64} << 20;

Heap make_heap(Region &region, std::size_t size, const Options &opt) {
  HeapConfig config;
  config.granule = opt.granule;
  return Heap::create(region.get(size), size, config);
}

bool replays_cleanly(Region &region, std::size_t size, const Options &opt, const Program &prog,
                     std::vector<Slot> &slots) {
  CapheapAlloc alloc{make_heap(region, size, opt)};
  if (!alloc.heap) return false;
  std::fill(slots.begin(), slots.end(), Slot{});
  return replay<true>(alloc, prog, slots.data()).failed == 0;
}

TlsfModel make_model(Region &region, std::size_t size, const Options &opt) {
  TlsfModel::Options o;
  o.round_aligned_search = opt.model_round_aligned;
  TlsfModel m;
  m.create(region.get(size), size, o);
  return m;
}

bool model_replays_cleanly(Region &region, std::size_t size, const Options &opt,
                           const Program &prog, std::vector<Slot> &slots) {
  ModelAlloc alloc{make_model(region, size, opt)};
  if (!alloc.heap) return false;
  std::fill(slots.begin(), slots.end(), Slot{});
  return replay<true>(alloc, prog, slots.data()).failed == 0;
}

struct RegionSearch {
  std::size_t min = 0;     ///< binary-search result: a size that replays cleanly (0: none found)
  std::size_t stable = 0;  ///< every scanned size from here up replays cleanly (0: not scanned)
  std::size_t probes = 0;  ///< replays run
};

/// Region sizes (bytes, multiples of the granule g) for which works(size) holds: a replay of prog
/// without a failure. `min`: binary search between 0 and a doubling upper bound (≤ 1 GiB). Success
/// is not monotonic in the region size (a different size moves block boundaries and size classes,
/// so a slightly larger region can fail where a smaller one succeeded), so the search only finds
/// *a* working size inside the boundary zone. `stable`: scanning every granule step upwards from
/// `min` until stable_window bytes pass without a failure; the smallest size above the last failure
/// seen.
template <class Works>
RegionSearch search_sizes(std::size_t g, std::size_t stable_window, const Program &prog,
                          Works &&works) {
  RegionSearch out;
  auto clean = [&](std::size_t size) {
    ++out.probes;
    return works(size);
  };
  std::size_t lo = 0;  // known to fail (or not to make a heap)
  std::size_t hi = std::max<std::size_t>(4096, (prog.stats.peak_live_bytes * 2 + g - 1) / g * g);
  while (!clean(hi)) {
    lo = hi;
    if (hi >= kSearchCap) return out;
    hi *= 2;
  }
  while (hi - lo > g) {
    const std::size_t mid = lo + (hi - lo) / g / 2 * g;
    if (clean(mid)) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  out.min = hi;
  if (stable_window != 0) {
    out.stable = hi;
    for (std::size_t s = hi + g; s <= out.stable + stable_window && s < kSearchCap; s += g) {
      if (!clean(s)) out.stable = s + g;
    }
  }
  return out;
}

/// capheap's region search (granule opt.granule, scan of opt.stable_window).
RegionSearch search_region(Region &region, const Options &opt, const Program &prog,
                           std::vector<Slot> &slots) {
  return search_sizes(
      static_cast<std::size_t>(opt.granule), opt.stable_window, prog,
      [&](std::size_t size) { return replays_cleanly(region, size, opt, prog, slots); });
}

/// The ESP-IDF model's region search: 4-byte steps (TLSF's alignment), the same binary search;
/// the stability scan only on request (--model-stable-window), since it costs about 1000 replays.
RegionSearch search_model_region(Region &region, const Options &opt, const Program &prog,
                                 std::vector<Slot> &slots) {
  return search_sizes(TlsfModel::kAlign, opt.model_stable_window, prog, [&](std::size_t size) {
    return model_replays_cleanly(region, size, opt, prog, slots);
  });
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

using Clock = std::chrono::steady_clock;

double elapsed_ns(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::nano>(b - a).count();
}

// ================================================================================================
// Per-call latency
// ================================================================================================

/// The counter's properties, measured once per run (calibrate_timer).
struct Timer {
  bool tsc = REPLAY_HAVE_TSC != 0;  ///< false: steady_clock nanoseconds
  std::uint64_t step = 1;           ///< smallest increment (gcd of back-to-back differences)
  double overhead = 0;              ///< ticks of an empty bracket, estimated as a call's are
  double ghz = 1;                   ///< ticks per nanosecond
};

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

/// The best estimate of one call's ticks from its samples over the replays (samples[r * stride],
/// kNoCall skipped); NaN if it made no call.
///
/// On a fine-grained counter (step 1) this is the minimum over the replays. A coarse counter
/// (AMD processors and many VMs advance the TSC in steps of the core/reference clock ratio, e.g.
/// 21 ticks = 10 ns) reads a call of d ticks as the multiple of the step below or above d,
/// depending on where between two steps the call started; the minimum alone would round every
/// call down to a step. The start phase varies from replay to replay, so the mean of the samples
/// within one step of the minimum estimates d without that rounding, while samples further up (an
/// interrupt, a page fault, a cache or branch-predictor miss that other replays did not suffer)
/// are discarded as the minimum discards them.
double estimate_best(const std::uint32_t *samples, std::size_t stride, int replays,
                     std::uint64_t step) {
  std::uint32_t lo = kNoCall;
  for (int r = 0; r < replays; ++r)
    lo = std::min(lo, samples[static_cast<std::size_t>(r) * stride]);
  if (lo == kNoCall) return kNaN;
  double sum = 0;
  int n = 0;
  for (int r = 0; r < replays; ++r) {
    const std::uint32_t v = samples[static_cast<std::size_t>(r) * stride];
    if (v != kNoCall && v <= lo + step) {
      sum += v;
      ++n;
    }
  }
  return sum / n;
}

double median(std::vector<double> v);

Timer calibrate_timer(int replays) {
  Timer t;
  std::uint64_t g = 0;
  for (int i = 0; i < 65536; ++i) {
    const std::uint64_t a = read_ticks();
    const std::uint64_t b = read_ticks();
    if (b > a) g = std::gcd(g, b - a);
  }
  t.step = g != 0 ? g : 1;
  // The bracket's own cost: empty brackets, measured and estimated exactly as the calls are.
  constexpr std::size_t kBrackets = 4096;
  std::vector<std::uint32_t> samples(kBrackets * static_cast<std::size_t>(replays));
  for (int r = 0; r < replays; ++r) {
    std::uint32_t *row = &samples[static_cast<std::size_t>(r) * kBrackets];
    for (std::size_t i = 0; i < kBrackets; ++i) {
      const std::uint64_t t0 = read_ticks();
      const std::uint64_t t1 = read_ticks();
      row[i] = clamp_ticks(t1 - t0);
    }
  }
  std::vector<double> est(kBrackets);
  for (std::size_t i = 0; i < kBrackets; ++i)
    est[i] = estimate_best(&samples[i], kBrackets, replays, t.step);
  t.overhead = median(est);
  // Ticks per nanosecond: 50 ms against the steady clock.
  const auto c0 = std::chrono::steady_clock::now();
  const std::uint64_t k0 = read_ticks();
  auto c1 = c0;
  while (c1 - c0 < std::chrono::milliseconds(50))
    c1 = std::chrono::steady_clock::now();
  const std::uint64_t k1 = read_ticks();
  t.ghz = static_cast<double>(k1 - k0) / std::chrono::duration<double, std::nano>(c1 - c0).count();
  return t;
}

/// Samples of `replays` normal and `replays` split latency replays of one trace: row r of each
/// table holds replay r.
struct LatencyTables {
  std::size_t ops = 0;
  int replays = 0;
  BigVector<std::uint32_t> ticks;
  BigVector<std::uint32_t> bytes;
  BigVector<std::uint8_t> outcome;
  BigVector<std::uint8_t> split;  ///< per op: run as its parts in the split replays
  BigVector<std::uint32_t> part;  ///< split replays: ticks of the allocator's parts
  BigVector<std::uint32_t> scratch_ticks, scratch_bytes;  // what split replays record otherwise
  BigVector<std::uint8_t> scratch_outcome;
  LatencyTables(std::size_t n, int r)
      : ops(n),
        replays(r),
        ticks(n * static_cast<std::size_t>(r), kNoCall),
        bytes(n * static_cast<std::size_t>(r), 0),
        outcome(n * static_cast<std::size_t>(r), 0),
        split(n, 0),
        part(n * static_cast<std::size_t>(r), kNoCall),
        scratch_ticks(n),
        scratch_bytes(n),
        scratch_outcome(n) {}
  LatencyProbe row(int r) {
    const std::size_t at = static_cast<std::size_t>(r) * ops;
    return LatencyProbe{&ticks[at], &bytes[at], &outcome[at], nullptr, nullptr};
  }
  LatencyProbe split_row(int r) {
    const std::size_t at = static_cast<std::size_t>(r) * ops;
    return LatencyProbe{scratch_ticks.data(), scratch_bytes.data(), scratch_outcome.data(),
                        split.data(), &part[at]};
  }
  /// The first replay with the op's minimum sample (its outcome and copy size are used).
  std::size_t best_at(std::size_t i) const {
    std::uint32_t lo = kNoCall;
    std::size_t at = i;
    for (int r = 0; r < replays; ++r) {
      const std::size_t k = static_cast<std::size_t>(r) * ops + i;
      if (ticks[k] < lo) {
        lo = ticks[k];
        at = k;
      }
    }
    return at;
  }
  /// Flags the operations the split replays run as their parts: successful callocs and reallocs
  /// that moved the block (in the replay that gave their minimum: the system malloc's replays
  /// start from different arena states, so a realloc may move in one and not in another).
  void plan_split(const Program &prog) {
    for (std::size_t i = 0; i < ops; ++i) {
      const std::size_t at = best_at(i);
      if (ticks[at] == kNoCall) continue;
      const OpKind kind = prog.ops[i].kind;
      split[i] = (kind == OpKind::kCalloc && bytes[at] != 0) ||
                 (kind == OpKind::kRealloc && outcome[at] == kOutcomeMoved);
    }
  }
};

/// Latency categories. "-own" is the allocator's own part: a calloc's malloc, a moving realloc's
/// malloc + free, timed in the split replays (LatencyProbe) without the copy or fill between them;
/// reallocs that do not move count as they are.
enum Cat : std::size_t {
  kCatMalloc,
  kCatCalloc,
  kCatCallocOwn,
  kCatAligned,
  kCatRealloc,
  kCatReallocInPlace,
  kCatReallocMoved,
  kCatReallocOwn,
  kCatFree,
  kCatCount
};
constexpr const char *kCatNames[kCatCount] = {"malloc",        "calloc",      "calloc-own",
                                              "aligned",       "realloc",     "realloc-inplace",
                                              "realloc-moved", "realloc-own", "free"};

struct CatStats {
  std::size_t n = 0;
  double p50 = 0;
  double p99 = 0;
  double p999 = 0;
  double max = 0;
  std::vector<std::pair<std::uint32_t, double>> worst;  ///< (trace line, ticks), slowest first
};

struct Latency {
  bool measured = false;
  std::array<CatStats, kCatCount> cats;
  std::size_t split_ops = 0;  ///< operations timed as their parts (moving reallocs, callocs)
};

double nearest_rank(const std::vector<double> &sorted, double q) {
  const auto n = static_cast<double>(sorted.size());
  const auto rank = static_cast<std::size_t>(std::ceil(q * n));
  return sorted[std::min(sorted.size(), std::max<std::size_t>(rank, 1)) - 1];
}

/// Per-operation latency estimates of one allocator on one trace, merged over rounds.
struct OpLatency {
  std::vector<double> est;            ///< the call's ticks (NaN: no call)
  std::vector<double> mine;           ///< the allocator's own part ("-own"; = est if not split)
  std::vector<std::uint8_t> outcome;  ///< realloc outcome in the replay that gave est
  std::size_t split_ops = 0;
  bool empty() const { return est.empty(); }
  /// Keeps the better estimate of each operation.
  void merge(const OpLatency &o) {
    if (empty()) {
      *this = o;
      return;
    }
    for (std::size_t i = 0; i < est.size(); ++i) {
      if (std::isnan(est[i]) || (!std::isnan(o.est[i]) && o.est[i] < est[i])) {
        est[i] = o.est[i];
        outcome[i] = o.outcome[i];
      }
      if (std::isnan(mine[i]) || (!std::isnan(o.mine[i]) && o.mine[i] < mine[i])) {
        mine[i] = o.mine[i];
      }
    }
    split_ops = std::max(split_ops, o.split_ops);
  }
};

OpLatency estimate_ops(const Program &prog, const LatencyTables &t, const Timer &timer) {
  const std::size_t n = t.ops;
  OpLatency out;
  out.est.assign(n, kNaN);
  out.mine.assign(n, kNaN);
  out.outcome.assign(n, 0);
  for (std::size_t i = 0; i < n; ++i) {
    const double e = estimate_best(&t.ticks[i], n, t.replays, timer.step);
    if (std::isnan(e)) continue;
    out.est[i] = std::max(0.0, e - timer.overhead);
    out.mine[i] = out.est[i];
    out.outcome[i] = t.outcome[t.best_at(i)];
    if (t.split[i] != 0) {
      // One bracket (calloc: malloc) or two (moving realloc: malloc, free), each with the
      // overhead of an empty bracket.
      const double brackets = prog.ops[i].kind == OpKind::kRealloc ? 2.0 : 1.0;
      const double c = estimate_best(&t.part[i], n, t.replays, timer.step);
      if (!std::isnan(c)) {
        out.mine[i] = std::max(0.0, c - brackets * timer.overhead);
        ++out.split_ops;
      }
    }
  }
  return out;
}

Latency summarise(const Program &prog, const OpLatency &ops) {
  const std::size_t n = ops.est.size();
  Latency out;
  out.measured = true;
  out.split_ops = ops.split_ops;
  const std::vector<double> &est = ops.est;
  const std::vector<std::uint8_t> &outcome = ops.outcome;
  std::array<std::vector<std::pair<double, std::uint32_t>>, kCatCount> cats;
  for (std::size_t i = 0; i < n; ++i) {
    if (std::isnan(est[i])) continue;
    const double v = est[i];
    const double mine = ops.mine[i];
    const std::uint32_t line = prog.trace->ops[i].line;
    switch (prog.ops[i].kind) {
      case OpKind::kMalloc:
        cats[kCatMalloc].emplace_back(v, line);
        break;
      case OpKind::kCalloc:
        cats[kCatCalloc].emplace_back(v, line);
        cats[kCatCallocOwn].emplace_back(mine, line);
        break;
      case OpKind::kAlignedAlloc:
        cats[kCatAligned].emplace_back(v, line);
        break;
      case OpKind::kRealloc:
        cats[kCatRealloc].emplace_back(v, line);
        if (outcome[i] == kOutcomeInPlace) cats[kCatReallocInPlace].emplace_back(v, line);
        if (outcome[i] == kOutcomeMoved) cats[kCatReallocMoved].emplace_back(v, line);
        cats[kCatReallocOwn].emplace_back(mine, line);
        break;
      case OpKind::kFree:
        cats[kCatFree].emplace_back(v, line);
        break;
    }
  }
  for (std::size_t c = 0; c < kCatCount; ++c) {
    auto &v = cats[c];
    CatStats &st = out.cats[c];
    st.n = v.size();
    if (v.empty()) continue;
    std::sort(v.begin(), v.end(), [](const auto &a, const auto &b) {
      return a.first < b.first || (a.first == b.first && a.second < b.second);
    });
    std::vector<double> sorted(v.size());
    for (std::size_t k = 0; k < v.size(); ++k)
      sorted[k] = v[k].first;
    st.p50 = nearest_rank(sorted, 0.5);
    st.p99 = nearest_rank(sorted, 0.99);
    st.p999 = nearest_rank(sorted, 0.999);
    st.max = sorted.back();
    for (std::size_t k = 0; k < 5 && k < v.size(); ++k) {
      const auto &w = v[v.size() - 1 - k];
      st.worst.emplace_back(w.second, w.first);
    }
  }
  return out;
}

struct Result {
  std::string name;
  std::size_t ops = 0;
  std::uint64_t peak_live_bytes = 0;
  std::size_t peak_live_blocks = 0;
  // capheap
  RegionSearch search;  ///< all 0: not searched
  std::size_t control_bytes = 0;
  std::size_t region = 0;  ///< region used for the timed replays
  Counts capheap;
  double capheap_ns_per_op = 0;
  bool validated = false;
  std::string validation;
  // system
  bool system = false;
  Counts sys;
  double sys_ns_per_op = 0;
  std::size_t sys_footprint = 0;  ///< see system_footprint() (0: unknown)
  // ESP-IDF model (TlsfModel)
  bool model = false;
  RegionSearch model_search;      ///< all 0: not searched or nothing found
  std::size_t model_control = 0;  ///< TLSF control bytes at model_search.min
  Counts model_counts;            ///< the full replay at model_search.min
  bool model_validated = false;   ///< TlsfModel::check() after that replay
  std::string model_validation;
  std::array<std::size_t, sim::kOpKindCount> kind_ops{};  ///< operations per kind
  OpLatency ops_capheap;  ///< per-operation latency, merged over the rounds
  OpLatency ops_system;
  Latency lat_capheap;  ///< summarise(ops_capheap)
  Latency lat_system;
};

/// Peak bytes glibc takes from the OS (arena + mmapped) to replay prog, measured in a forked child
/// on a new thread: a new thread of a process that never had other threads gets a brand-new glibc
/// arena, so nothing left over from parsing or from other traces is reused. M_TOP_PAD 0 keeps
/// glibc from reserving 128 KiB of slack on every heap growth, so the figure is page-granular.
/// Returns 0 if it cannot be measured (no mallinfo2, fork failure).
std::size_t system_footprint(const Program &prog) {
#if REPLAY_HAVE_MALLINFO2
  int fds[2];
  if (pipe(fds) != 0) return 0;
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return 0;
  }
  if (pid == 0) {
    close(fds[0]);
    mallopt(M_TOP_PAD, 0);
    std::size_t footprint = 0;
    std::vector<Slot> own(prog.slots);  // on the main arena, not the measured one
    std::thread([&] {
      SampledSystemAlloc sampled;
      const struct mallinfo2 before = mallinfo2();
      const std::size_t base = before.arena + before.hblkhd;
      sampled.peak = base;
      replay<false>(sampled, prog, own.data());
      footprint = sampled.peak - base;
    }).join();
    const ssize_t n = write(fds[1], &footprint, sizeof footprint);
    _exit(n == static_cast<ssize_t>(sizeof footprint) ? 0 : 1);
  }
  close(fds[1]);
  std::size_t footprint = 0;
  const ssize_t n = read(fds[0], &footprint, sizeof footprint);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (n != static_cast<ssize_t>(sizeof footprint) || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0) {
    return 0;
  }
  return footprint;
#else
  (void)prog;
  return 0;
#endif
}

/// Where the latency replays run. Within one placement of the heap region and of the replay's own
/// arrays (program, slot table), an operation whose memory collides with other memory in a
/// physically indexed cache is slow in every replay, which the best-of cannot remove; such
/// operations differed from run to run (maxima 160..250 ticks for the same malloc). So the replays
/// come in `count` consecutive groups, each with its own region (same 4096-aligned layout: the
/// engine works in offsets and behaves identically) and its own copies of the arrays, all
/// allocated side by side (different pages). Groups rather than turns: the first replay after
/// switching places pays for it (the place's pages and lines are cold), and only once per group.
/// Each round (main) makes new places.
class LatencyPlaces {
 public:
  struct Place {
    Region region;
    Program prog;
    std::vector<Slot> slots;
  };
  LatencyPlaces(const Program &prog, int count, std::size_t region_bytes)
      : places_(static_cast<std::size_t>(count)) {
    for (Place &pl : places_) {
      if (region_bytes != 0) std::memset(pl.region.get(region_bytes, true), 0, region_bytes);
      pl.prog = prog;
      pl.slots.assign(prog.slots, Slot{});
    }
  }
  Place &for_replay(int r, int replays) {
    const auto k = static_cast<std::size_t>(r) * places_.size() / static_cast<std::size_t>(replays);
    return places_[k];
  }

 private:
  std::vector<Place> places_;
};

/// The region of the timed, latency and callgrind replays: --region, else twice the binary
/// search's minimum (a heap with room to spare, as on a device, but not so much that the large
/// free block sits in a class real heaps never reach), else 64 MiB when the search is off or
/// found nothing.
std::size_t timing_region(const Options &opt, const RegionSearch &search) {
  if (opt.region != 0) return opt.region;
  return search.min != 0 ? 2 * search.min : kDefaultRegion;
}

/// One round of latency replays of prog on capheap (heaps of region_bytes) or, with
/// region_bytes 0, on the system malloc: opt.latency_repeat normal replays, then as many split
/// replays, in LatencyPlaces groups. Every replay runs on a fresh heap, so for capheap every
/// replay runs the same operations on the same heap state.
OpLatency latency_round(const Program &prog, const Options &opt, const Timer &timer,
                        std::size_t region_bytes) {
  LatencyPlaces places(prog, opt.latency_placements, region_bytes);
  LatencyTables tables(prog.ops.size(), opt.latency_repeat);
  SystemAlloc sys;
  for (int split = 0; split < 2; ++split) {
    if (split != 0) tables.plan_split(prog);
    for (int r = 0; r < opt.latency_repeat; ++r) {
      LatencyPlaces::Place &pl = places.for_replay(r, opt.latency_repeat);
      std::fill(pl.slots.begin(), pl.slots.end(), Slot{});
      const LatencyProbe probe = split != 0 ? tables.split_row(r) : tables.row(r);
      if (region_bytes != 0) {
        CapheapAlloc alloc{make_heap(pl.region, region_bytes, opt)};
        replay_with<false>(alloc, pl.prog, pl.slots.data(), probe);
      } else {
        replay_with<false>(sys, pl.prog, pl.slots.data(), probe);
        release_system(sys, pl.slots);
      }
    }
  }
  return estimate_ops(prog, tables, timer);
}

/// One latency round of prog on capheap and (unless --no-system) the system malloc, merged into r.
void latency_round_of(Result &r, const Program &prog, const Options &opt, const Timer &timer) {
  r.ops_capheap.merge(latency_round(prog, opt, timer, r.region));
  if (opt.system) r.ops_system.merge(latency_round(prog, opt, timer, 0));
}

Result measure(const Program &prog, const Options &opt, Region &region) {
  Result res;
  res.name = prog.name;
  res.ops = prog.ops.size();
  res.peak_live_bytes = prog.stats.peak_live_bytes;
  res.peak_live_blocks = prog.stats.peak_live_blocks;
  std::vector<Slot> slots(prog.slots);

  if (opt.search) {
    res.search = search_region(region, opt, prog, slots);
    if (res.search.min != 0) {
      res.control_bytes = make_heap(region, res.search.min, opt).control_size();
    }
  }
  if (opt.model && opt.search) {
    res.model = true;
    res.model_search = search_model_region(region, opt, prog, slots);
    // One full replay at the found size, then the model's own consistency walk.
    const std::size_t size = res.model_search.min != 0 ? res.model_search.min : kDefaultRegion;
    ModelAlloc alloc{make_model(region, size, opt)};
    if (alloc.heap) {
      res.model_control = alloc.heap.control_size();
      std::fill(slots.begin(), slots.end(), Slot{});
      res.model_counts = replay<false>(alloc, prog, slots.data());
      const TlsfModel::Check c = alloc.heap.check();
      res.model_validated = c.ok;
      res.model_validation = c.error;
    } else {
      res.model_validation = "TlsfModel::create failed";
    }
  }
  res.region = timing_region(opt, res.search);
  for (const ReplayOp &op : prog.ops)
    ++res.kind_ops[static_cast<std::size_t>(op.kind)];

  // capheap: one checked warm-up replay, then the timed ones, each on a fresh heap.
  std::vector<double> times;
  for (int i = -1; i < opt.repeat; ++i) {
    CapheapAlloc alloc{make_heap(region, res.region, opt)};
    if (!alloc.heap) {
      std::fprintf(stderr, "capheap_trace_replay: Heap::create(%zu bytes) failed\n", res.region);
      std::exit(2);
    }
    std::fill(slots.begin(), slots.end(), Slot{});
    const Clock::time_point t0 = Clock::now();
    const Counts c = replay_loop_capheap(alloc, prog, slots.data());
    const Clock::time_point t1 = Clock::now();
    if (i < 0) {
      res.capheap = c;
      const Validation v = alloc.heap.validate();
      res.validated = v.ok() && alloc.heap.invariants_hold();
      if (!res.validated) res.validation = v.ok() ? "invariants_hold() false" : fault_text(v.fault);
    } else {
      times.push_back(elapsed_ns(t0, t1));
    }
  }
  if (!times.empty()) res.capheap_ns_per_op = median(times) / static_cast<double>(res.ops);

  if (opt.system) {
    res.system = true;
    SystemAlloc sys;
    times.clear();
    for (int i = -1; i < opt.repeat; ++i) {
      std::fill(slots.begin(), slots.end(), Slot{});
      const Clock::time_point t0 = Clock::now();
      const Counts c = replay_loop_system(sys, prog, slots.data());
      const Clock::time_point t1 = Clock::now();
      release_system(sys, slots);
      if (i < 0) {
        res.sys = c;
      } else {
        times.push_back(elapsed_ns(t0, t1));
      }
    }
    if (!times.empty()) res.sys_ns_per_op = median(times) / static_cast<double>(res.ops);
    res.sys_footprint = system_footprint(prog);
  }
  return res;
}

// ================================================================================================
// Output
// ================================================================================================

std::string json_escape(const std::string &s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

double ratio(std::size_t a, std::uint64_t b) {
  return b == 0 ? 0.0 : static_cast<double>(a) / static_cast<double>(b);
}

void print_table(const std::vector<Result> &results, const Options &opt) {
  std::printf("capheap, granule %d (ns/op: median of %d replays)\n", static_cast<int>(opt.granule),
              opt.repeat);
  std::printf("%-24s %8s %10s %6s %8s %11s %6s %11s %6s %9s\n", "trace", "ops", "peak_live", "fail",
              "ns/op", "min_region", "ratio", "stable", "ratio", "region");
  for (const Result &r : results) {
    char stable[32] = "-";
    char stable_ratio[16] = "-";
    if (r.search.stable != 0) {
      std::snprintf(stable, sizeof stable, "%zu", r.search.stable);
      std::snprintf(stable_ratio, sizeof stable_ratio, "%.2f",
                    ratio(r.search.stable, r.peak_live_bytes));
    }
    std::printf("%-24s %8zu %10" PRIu64 " %6zu %8.1f %11zu %6.2f %11s %6s %9zu\n", r.name.c_str(),
                r.ops, r.peak_live_bytes, r.capheap.failed, r.capheap_ns_per_op, r.search.min,
                ratio(r.search.min, r.peak_live_bytes), stable, stable_ratio, r.region);
  }
  if (opt.model && opt.search) {
    std::printf(
        "\nESP-IDF multi_heap model (bench/tlsf_model.hpp; TLSF, 32-bit layout, 4-byte "
        "steps%s)\n",
        opt.model_round_aligned ? "" : ", memalign search unrounded (--model-spec-aligned)");
    std::printf("%-24s %10s %11s %6s %11s %6s %8s %13s\n", "trace", "peak_live", "min_region",
                "ratio", "stable", "ratio", "control", "capheap/model");
    for (const Result &r : results) {
      char stable[32] = "-";
      char stable_ratio[16] = "-";
      if (r.model_search.stable != 0) {
        std::snprintf(stable, sizeof stable, "%zu", r.model_search.stable);
        std::snprintf(stable_ratio, sizeof stable_ratio, "%.2f",
                      ratio(r.model_search.stable, r.peak_live_bytes));
      }
      char versus[16] = "-";
      if (r.model_search.min != 0 && r.search.min != 0) {
        std::snprintf(versus, sizeof versus, "%.3f", ratio(r.search.min, r.model_search.min));
      }
      std::printf("%-24s %10" PRIu64 " %11zu %6.2f %11s %6s %8zu %13s\n", r.name.c_str(),
                  r.peak_live_bytes, r.model_search.min,
                  ratio(r.model_search.min, r.peak_live_bytes), stable, stable_ratio,
                  r.model_control, versus);
    }
  }
  if (opt.system) {
    std::printf("\nsystem malloc (ns/op: median of %d replays)\n", opt.repeat);
    std::printf("%-24s %8s %10s %6s %8s %11s %6s\n", "trace", "ops", "peak_live", "fail", "ns/op",
                "footprint", "ratio");
    for (const Result &r : results) {
      std::printf("%-24s %8zu %10" PRIu64 " %6zu %8.1f %11zu %6.2f\n", r.name.c_str(), r.ops,
                  r.peak_live_bytes, r.sys.failed, r.sys_ns_per_op, r.sys_footprint,
                  ratio(r.sys_footprint, r.peak_live_bytes));
    }
  }
  std::printf("\n");
  for (const Result &r : results) {
    if (!r.validated) {
      std::printf("WARNING %s: heap failed validation after replay: %s\n", r.name.c_str(),
                  r.validation.c_str());
    }
    if (r.capheap.unexpected != 0) {
      std::printf("WARNING %s: capheap returned %zu non-NULL results for invalid requests\n",
                  r.name.c_str(), r.capheap.unexpected);
    }
    if (r.system && r.sys.unexpected != 0) {
      std::printf(
          "note %s: system malloc returned %zu non-NULL results for invalid requests "
          "(legal for glibc, e.g. malloc(0)); freed at once\n",
          r.name.c_str(), r.sys.unexpected);
    }
    if (opt.search && r.search.min == 0) {
      std::printf("WARNING %s: no region up to 1 GiB replays without failures\n", r.name.c_str());
    }
    if (r.model && !r.model_validated) {
      std::printf("WARNING %s: the ESP-IDF model failed its check after replay: %s\n",
                  r.name.c_str(), r.model_validation.c_str());
    }
    if (r.model && r.model_search.min == 0) {
      std::printf(
          "WARNING %s: no region up to 1 GiB replays without failures on the ESP-IDF "
          "model\n",
          r.name.c_str());
    }
    if (r.model && r.model_counts.unexpected != 0) {
      std::printf(
          "WARNING %s: the ESP-IDF model returned %zu non-NULL results for invalid "
          "requests\n",
          r.name.c_str(), r.model_counts.unexpected);
    }
  }
  std::printf(
      "min_region: a region size (bytes, control structure included, start 4096-aligned) with "
      "zero failed allocations,\n  found by binary search; success is not monotonic in the size, "
      "so see stable.\nstable: every size from here to %zu bytes beyond the last failure "
      "replays cleanly.\nratio: size / peak_live. region: the region of the timed replays.\n"
      "ESP-IDF model: the same binary search on the model of multi_heap (heap header, TLSF "
      "control and pool\n  overhead included); capheap/model: capheap's min_region over the "
      "model's.\n"
      "footprint: peak bytes glibc took from the OS (fresh arena + mmapped, M_TOP_PAD 0, "
      "page-granular).\n",
      opt.stable_window);
}

void print_latency_block(const std::vector<Result> &results, bool capheap) {
  std::printf("%-24s %-16s %7s %8s %8s %8s %9s %8s  %s\n", "trace", "kind", "n", "p50", "p99",
              "p99.9", "max", "max/p50", "slowest at line");
  for (const Result &r : results) {
    const Latency &lat = capheap ? r.lat_capheap : r.lat_system;
    if (!lat.measured) continue;
    for (std::size_t c = 0; c < kCatCount; ++c) {
      const CatStats &st = lat.cats[c];
      if (st.n == 0) continue;
      std::printf("%-24s %-16s %7zu %8.1f %8.1f %8.1f %9.1f %8.2f  %" PRIu32 "\n", r.name.c_str(),
                  kCatNames[c], st.n, st.p50, st.p99, st.p999, st.max,
                  st.p50 > 0 ? st.max / st.p50 : 0.0, st.worst.empty() ? 0 : st.worst[0].first);
    }
  }
}

void print_latency(const std::vector<Result> &results, const Options &opt, const Timer &timer) {
  if (opt.latency_repeat <= 0) return;
  std::printf(
      "latency per call in %s (%.3f per ns, counter step %" PRIu64
      "): per operation the best of %d replays in rounds (see --help),\n  less the empty bracket's "
      "%.1f; "
      "-own: without the copy / zero-fill (split replays: a moving realloc's malloc + free, a "
      "calloc's malloc)\n",
      timer.tsc ? "TSC ticks" : "ns", timer.ghz, timer.step,
      opt.latency_repeat * opt.latency_rounds, timer.overhead);
  std::printf("capheap\n");
  print_latency_block(results, true);
  if (opt.system) {
    std::printf("system malloc\n");
    print_latency_block(results, false);
  }
  std::printf("\n");
}

void write_latency_json(std::FILE *f, const Latency &lat) {
  std::fprintf(f, "{\"split_ops\": %zu", lat.split_ops);
  for (std::size_t c = 0; c < kCatCount; ++c) {
    const CatStats &st = lat.cats[c];
    if (st.n == 0) continue;
    std::fprintf(f,
                 ",\n        \"%s\": {\"n\": %zu, \"p50\": %.2f, \"p99\": %.2f, \"p999\": %.2f, "
                 "\"max\": %.2f, \"worst\": [",
                 kCatNames[c], st.n, st.p50, st.p99, st.p999, st.max);
    for (std::size_t k = 0; k < st.worst.size(); ++k) {
      std::fprintf(f, "%s[%" PRIu32 ", %.2f]", k == 0 ? "" : ", ", st.worst[k].first,
                   st.worst[k].second);
    }
    std::fprintf(f, "]}");
  }
  std::fprintf(f, "}");
}

bool write_json(const std::string &path, const std::vector<Result> &results, const Options &opt,
                const Timer &timer) {
  std::FILE *f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return false;
  std::fprintf(f,
               "{\n  \"granule\": %d,\n  \"repeat\": %d,\n  \"stable_window\": %zu,\n"
               "  \"latency_replays\": %d,\n  \"latency_rounds\": %d,\n",
               static_cast<int>(opt.granule), opt.repeat, opt.stable_window,
               opt.latency_repeat * opt.latency_rounds, opt.latency_rounds);
  std::fprintf(f,
               "  \"timer\": {\"source\": \"%s\", \"step\": %" PRIu64
               ", \"overhead\": %.2f, \"ticks_per_ns\": %.4f},\n  \"traces\": [\n",
               timer.tsc ? "tsc" : "steady_clock_ns", timer.step, timer.overhead, timer.ghz);
  for (std::size_t i = 0; i < results.size(); ++i) {
    const Result &r = results[i];
    std::fprintf(f,
                 "    {\"trace\": \"%s\", \"ops\": %zu, \"peak_live_bytes\": %" PRIu64
                 ", \"peak_live_blocks\": %zu,\n"
                 "     \"capheap\": {\"failed\": %zu, \"unexpected_non_null\": %zu, "
                 "\"ns_per_op\": %.2f, \"region\": %zu, \"min_region\": %zu, "
                 "\"min_region_ratio\": %.4f, \"stable_region\": %zu, "
                 "\"stable_region_ratio\": %.4f, \"search_probes\": %zu, "
                 "\"control_bytes\": %zu, \"validated\": %s}",
                 json_escape(r.name).c_str(), r.ops, r.peak_live_bytes, r.peak_live_blocks,
                 r.capheap.failed, r.capheap.unexpected, r.capheap_ns_per_op, r.region,
                 r.search.min, ratio(r.search.min, r.peak_live_bytes), r.search.stable,
                 ratio(r.search.stable, r.peak_live_bytes), r.search.probes, r.control_bytes,
                 r.validated ? "true" : "false");
    if (r.model) {
      std::fprintf(f,
                   ",\n     \"esp_idf_model\": {\"min_region\": %zu, \"min_region_ratio\": %.4f, "
                   "\"stable_region\": %zu, \"stable_region_ratio\": %.4f, "
                   "\"search_probes\": %zu, \"control_bytes\": %zu, \"failed\": %zu, "
                   "\"unexpected_non_null\": %zu, \"round_aligned_search\": %s, "
                   "\"validated\": %s}",
                   r.model_search.min, ratio(r.model_search.min, r.peak_live_bytes),
                   r.model_search.stable, ratio(r.model_search.stable, r.peak_live_bytes),
                   r.model_search.probes, r.model_control, r.model_counts.failed,
                   r.model_counts.unexpected, opt.model_round_aligned ? "true" : "false",
                   r.model_validated ? "true" : "false");
    }
    if (r.system) {
      std::fprintf(f,
                   ",\n     \"system\": {\"failed\": %zu, \"unexpected_non_null\": %zu, "
                   "\"ns_per_op\": %.2f, \"footprint\": %zu, \"footprint_ratio\": %.4f}",
                   r.sys.failed, r.sys.unexpected, r.sys_ns_per_op, r.sys_footprint,
                   ratio(r.sys_footprint, r.peak_live_bytes));
    }
    std::fprintf(f,
                 ",\n     \"kind_ops\": {\"malloc\": %zu, \"calloc\": %zu, \"aligned\": %zu, "
                 "\"realloc\": %zu, \"free\": %zu}",
                 r.kind_ops[static_cast<std::size_t>(OpKind::kMalloc)],
                 r.kind_ops[static_cast<std::size_t>(OpKind::kCalloc)],
                 r.kind_ops[static_cast<std::size_t>(OpKind::kAlignedAlloc)],
                 r.kind_ops[static_cast<std::size_t>(OpKind::kRealloc)],
                 r.kind_ops[static_cast<std::size_t>(OpKind::kFree)]);
    if (r.lat_capheap.measured || r.lat_system.measured) {
      std::fprintf(f, ",\n     \"latency\": {");
      const char *sep = "";
      if (r.lat_capheap.measured) {
        std::fprintf(f, "\n      \"capheap\": ");
        write_latency_json(f, r.lat_capheap);
        sep = ",";
      }
      if (r.lat_system.measured) {
        std::fprintf(f, "%s\n      \"system\": ", sep);
        write_latency_json(f, r.lat_system);
      }
      std::fprintf(f, "}");
    }
    std::fprintf(f, "}%s\n", i + 1 < results.size() ? "," : "");
  }
  std::fprintf(f, "  ]\n}\n");
  return std::fclose(f) == 0;
}

// ================================================================================================
// Command line
// ================================================================================================

void usage(std::FILE *out) {
  std::fprintf(
      out,
      "usage: capheap_trace_replay [options] TRACE...\n"
      "  --granule 4|8|16   heap granule (default 4, ESP-IDF's)\n"
      "  --repeat N         timed replays per trace and allocator; the median is reported "
      "(default 5)\n"
      "  --latency-repeat N replays per round that time every call (default 9, 0 = no\n"
      "                     latency): an operation's latency is its best over all rounds' "
      "replays;\n"
      "                     on a counter that advances\n"
      "                     in steps (the TSC of AMD processors and many VMs) the mean of its\n"
      "                     samples within one step of its minimum, less the empty bracket\n"
      "  --latency-rounds N rounds over all traces (default 3): see main()\n"
      "  --latency-places N the latency replays run in N groups, each with its own heap region\n"
      "                     and replay arrays at other pages (default 3; see LatencyPlaces)\n"
      "  --cpu N            pin the process to CPU N (sched_setaffinity)\n"
      "  --region BYTES     region for the timed, latency and callgrind capheap replays\n"
      "                     (default: 2 x the binary search's minimum; 64 MiB without search)\n"
      "  --stable-window B  after the binary search, scan sizes upwards until B bytes pass "
      "without\n"
      "                     a failure; report the size above the last failure (default 4096,\n"
      "                     0 = no scan)\n"
      "  --no-search        skip the minimum-region search (timing region: --region or 64 MiB)\n"
      "  --no-system        skip the system malloc\n"
      "  --no-model         skip the ESP-IDF multi_heap model's region search (also off with\n"
      "                     --no-search)\n"
      "  --model-spec-aligned\n"
      "                     the model's memalign searches for size + align + 16 as the spec words\n"
      "                     it, instead of that sum rounded up to a multiple of align (TLSF 3.1's\n"
      "                     adjustment, the default)\n"
      "  --model-stable-window B\n"
      "                     the stability scan for the model too (default 0: binary search only)\n"
      "  --json FILE        also write the results as JSON\n"
      "  --scan LO,HI,STEPS only this: replay each trace at STEPS + 1 region sizes from LO to HI "
      "x\n"
      "                     peak live on capheap and the ESP-IDF model; print which work\n"
      "  --callgrind capheap|system|floor|floorgf|proto|protolc|protofx|protofxlc\n"
      "                     replay each trace once on one allocator through the cgop_* functions\n"
      "                     (after the region search, without the stability scan), nothing else;\n"
      "                     for valgrind --tool=callgrind --toggle-collect='*replay_loop_*'\n"
      "                     (bench/callgrind_replay.py); prints 'ops N' and 'region B' per trace\n"
      "Exit status: 0; 1 if a trace cannot be read or parsed (FILE:LINE: message), a heap (or the\n"
      "ESP-IDF model) fails validation after a replay, or the JSON file cannot be written; 2 on\n"
      "usage errors.\n");
}

bool parse_size(const char *text, std::size_t &out) {
  // strtoull skips leading blanks and takes a sign: " -1" would be 2^64 - 1. A number starts
  // with a digit.
  if (text[0] < '0' || text[0] > '9') return false;
  char *end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(text, &end, 0);
  if (errno != 0 || *end != '\0') return false;
  out = static_cast<std::size_t>(v);
  return true;
}

int parse_options(int argc, char **argv, Options &opt) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char *name) -> const char * {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "capheap_trace_replay: %s needs a value\n", name);
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      usage(stdout);
      std::exit(0);
    } else if (arg == "--granule") {
      const std::string g = value("--granule");
      if (g == "4") {
        opt.granule = Granule::k4;
      } else if (g == "8") {
        opt.granule = Granule::k8;
      } else if (g == "16") {
        opt.granule = Granule::k16;
      } else {
        std::fprintf(stderr, "capheap_trace_replay: --granule must be 4, 8 or 16\n");
        return 2;
      }
    } else if (arg == "--repeat") {
      std::size_t n = 0;
      if (!parse_size(value("--repeat"), n) || n == 0 || n > 1000) {
        std::fprintf(stderr, "capheap_trace_replay: --repeat must be 1..1000\n");
        return 2;
      }
      opt.repeat = static_cast<int>(n);
    } else if (arg == "--latency-repeat") {
      std::size_t n = 0;
      if (!parse_size(value("--latency-repeat"), n) || n > 1000) {
        std::fprintf(stderr, "capheap_trace_replay: --latency-repeat must be 0..1000\n");
        return 2;
      }
      opt.latency_repeat = static_cast<int>(n);
    } else if (arg == "--latency-rounds") {
      std::size_t n = 0;
      if (!parse_size(value("--latency-rounds"), n) || n == 0 || n > 100) {
        std::fprintf(stderr, "capheap_trace_replay: --latency-rounds must be 1..100\n");
        return 2;
      }
      opt.latency_rounds = static_cast<int>(n);
    } else if (arg == "--latency-places") {
      std::size_t n = 0;
      if (!parse_size(value("--latency-places"), n) || n == 0 || n > 64) {
        std::fprintf(stderr, "capheap_trace_replay: --latency-places must be 1..64\n");
        return 2;
      }
      opt.latency_placements = static_cast<int>(n);
    } else if (arg == "--cpu") {
      std::size_t n = 0;
      if (!parse_size(value("--cpu"), n) || n >= CPU_SETSIZE) {
        std::fprintf(stderr, "capheap_trace_replay: bad --cpu\n");
        return 2;
      }
      opt.cpu = static_cast<int>(n);
    } else if (arg == "--region") {
      if (!parse_size(value("--region"), opt.region) || opt.region == 0) {
        std::fprintf(stderr, "capheap_trace_replay: bad --region\n");
        return 2;
      }
    } else if (arg == "--stable-window") {
      if (!parse_size(value("--stable-window"), opt.stable_window)) {
        std::fprintf(stderr, "capheap_trace_replay: bad --stable-window\n");
        return 2;
      }
    } else if (arg == "--no-search") {
      opt.search = false;
    } else if (arg == "--no-system") {
      opt.system = false;
    } else if (arg == "--scan") {
      const char *v = value("--scan");
      char *end = nullptr;
      opt.scan_lo = std::strtod(v, &end);
      if (*end == ',') opt.scan_hi = std::strtod(end + 1, &end);
      if (*end == ',') opt.scan_steps = static_cast<int>(std::strtol(end + 1, &end, 10));
      if (*end != '\0' || !(opt.scan_lo > 0) || !(opt.scan_hi > opt.scan_lo) ||
          opt.scan_steps < 1 || opt.scan_steps > 100000) {
        std::fprintf(stderr, "capheap_trace_replay: --scan takes LO,HI,STEPS (e.g. 1,1.6,120)\n");
        return 2;
      }
    } else if (arg == "--no-model") {
      opt.model = false;
    } else if (arg == "--model-spec-aligned") {
      opt.model_round_aligned = false;
    } else if (arg == "--model-stable-window") {
      if (!parse_size(value("--model-stable-window"), opt.model_stable_window)) {
        std::fprintf(stderr, "capheap_trace_replay: bad --model-stable-window\n");
        return 2;
      }
    } else if (arg == "--json") {
      opt.json = value("--json");
    } else if (arg == "--callgrind") {
      opt.callgrind = value("--callgrind");
      if (opt.callgrind != "capheap" && opt.callgrind != "system" && opt.callgrind != "floor" &&
          opt.callgrind != "floorgf" && opt.callgrind != "proto" && opt.callgrind != "protolc" &&
          opt.callgrind != "protofx" && opt.callgrind != "protofxlc") {
        std::fprintf(stderr,
                     "capheap_trace_replay: --callgrind takes capheap, system, floor, floorgf, "
                     "proto, protolc, "
                     "protofx or protofxlc\n");
        return 2;
      }
    } else if (!arg.empty() && arg[0] == '-') {
      std::fprintf(stderr, "capheap_trace_replay: unknown option %s\n", arg.c_str());
      usage(stderr);
      return 2;
    } else {
      opt.traces.push_back(arg);
    }
  }
  if (opt.traces.empty()) {
    usage(stderr);
    return 2;
  }
  return 0;
}

std::string base_name(const std::string &path) {
  const std::size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

/// --scan: whether each of scan_steps + 1 evenly spaced region sizes (multiples of 4 between
/// scan_lo and scan_hi x peak live) replays prog without a failure, on capheap and on the ESP-IDF
/// model, as one character per size ('#' works, '.' fails), with the smallest working size, the
/// size from which every scanned size works and the fraction that work. Shows how far the binary
/// search's answer depends on where its probes fall (success is not monotonic in the size).
void run_scan(const Program &prog, const Options &opt, Region &region) {
  std::vector<Slot> slots(prog.slots);
  const double peak = static_cast<double>(prog.stats.peak_live_bytes);
  const auto lo = static_cast<std::size_t>(opt.scan_lo * peak) / 4 * 4;
  const auto hi = static_cast<std::size_t>(opt.scan_hi * peak) / 4 * 4;
  const std::size_t step =
      std::max<std::size_t>(4, (hi - lo) / static_cast<std::size_t>(opt.scan_steps) / 4 * 4);
  std::printf("%s: peak live %" PRIu64 ", region sizes %zu..%zu step %zu\n", prog.name.c_str(),
              prog.stats.peak_live_bytes, lo, hi, step);
  for (int which = 0; which < 2; ++which) {
    std::string marks;
    std::size_t first = 0;
    std::size_t from = 0;
    std::size_t works = 0;
    for (std::size_t size = lo; size <= hi; size += step) {
      const bool ok = which == 0 ? replays_cleanly(region, size, opt, prog, slots)
                                 : model_replays_cleanly(region, size, opt, prog, slots);
      marks += ok ? '#' : '.';
      if (ok) {
        ++works;
        if (first == 0) first = size;
        if (from == 0) from = size;
      } else {
        from = 0;
      }
    }
    std::printf("  %-13s %s\n  %-13s first works %.3f, all work from %.3f, %.0f%% work\n",
                which == 0 ? "capheap" : "ESP-IDF model", marks.c_str(), "",
                static_cast<double>(first) / peak, static_cast<double>(from) / peak,
                100.0 * static_cast<double>(works) / static_cast<double>(marks.size()));
  }
}

int run_callgrind(const Program &prog, const Options &opt, Region &region) {
  std::vector<Slot> slots(prog.slots);
  Counts c;
  std::size_t size = 0;
  const bool floor = opt.callgrind == "floor" || opt.callgrind == "floorgf" ||
                     opt.callgrind == "proto" || opt.callgrind == "protolc" ||
                     opt.callgrind == "protofx" || opt.callgrind == "protofxlc";
  if (opt.callgrind == "capheap" || floor) {
    // The floor TLSF gets the region capheap's replay uses (capheap's binary search, doubled).
    RegionSearch search;
    if (opt.search && opt.region == 0) {
      Options o = opt;
      o.stable_window = 0;
      search = search_region(region, o, prog, slots);
      std::fill(slots.begin(), slots.end(), Slot{});
    }
    size = timing_region(opt, search);
    if (floor) {
      unsigned char *mem = region.get(size);
      auto run = [&](auto &alloc, auto loop) {
        if (!alloc.heap.init(mem, size)) {
          std::fprintf(stderr, "capheap_trace_replay: floor init(%zu bytes) failed\n", size);
          return false;
        }
        REPLAY_CALLGRIND_START();
        c = loop(alloc, prog, slots.data());
        REPLAY_CALLGRIND_STOP();
        return true;
      };
      bool ok = false;
      if (opt.callgrind == "floor") {
        Cg_floor_Alloc alloc;
        ok = run(alloc, replay_loop_floor_cg);
      } else if (opt.callgrind == "floorgf") {
        Cg_floorgf_Alloc alloc;
        ok = run(alloc, replay_loop_floorgf_cg);
      } else {
        // The prototype also reports its refused calls and free bytes (tests/bench checks them).
        auto run_proto = [&](auto &alloc) {
          if (!run(alloc, replay_loop_proto_cg<std::remove_reference_t<decltype(alloc)>>))
            return false;
          std::printf("reports %zu\nfree_bytes %zu\n", alloc.heap.reports(),
                      alloc.heap.free_bytes());
          return true;
        };
        if (opt.callgrind == "proto") {
          Cg_proto_Alloc alloc;
          ok = run_proto(alloc);
        } else if (opt.callgrind == "protolc") {
          Cg_protolc_Alloc alloc;
          ok = run_proto(alloc);
        } else if (opt.callgrind == "protofx") {
          Cg_protofx_Alloc alloc;
          ok = run_proto(alloc);
        } else {
          Cg_protofxlc_Alloc alloc;
          ok = run_proto(alloc);
        }
      }
      if (!ok) return 2;
      std::printf("trace %s\nops %zu\nregion %zu\nfailed %zu\n", prog.name.c_str(), prog.ops.size(),
                  size, c.failed);
      return 0;
    }
    CgCapheapAlloc alloc{make_heap(region, size, opt)};
    if (!alloc.heap) {
      std::fprintf(stderr, "capheap_trace_replay: Heap::create(%zu bytes) failed\n", size);
      return 2;
    }
    REPLAY_CALLGRIND_START();
    c = replay_loop_capheap_cg(alloc, prog, slots.data());
    REPLAY_CALLGRIND_STOP();
  } else {
    CgSystemAlloc sys;
    REPLAY_CALLGRIND_START();
    c = replay_loop_system_cg(sys, prog, slots.data());
    REPLAY_CALLGRIND_STOP();
    release_system(sys, slots);
  }
  std::printf("trace %s\nops %zu\nregion %zu\nfailed %zu\n", prog.name.c_str(), prog.ops.size(),
              size, c.failed);
  return 0;
}

void pin_to_cpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(static_cast<std::size_t>(cpu), &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) {
    std::fprintf(stderr, "capheap_trace_replay: cannot pin to CPU %d: %s\n", cpu,
                 std::strerror(errno));
    std::exit(2);
  }
}

int main(int argc, char **argv) {
  Options opt;
  if (const int rc = parse_options(argc, argv, opt); rc != 0) return rc;
  if (opt.cpu >= 0) pin_to_cpu(opt.cpu);
  Timer timer;
  if (opt.callgrind.empty() && opt.latency_repeat > 0) timer = calibrate_timer(opt.latency_repeat);
  // Every trace is read before anything is measured, so that a bad file fails at once.
  std::vector<sim::Trace> traces;
  traces.reserve(opt.traces.size());
  for (const std::string &path : opt.traces) {
    sim::ParseResult parsed = sim::load_trace_file(path);
    if (!parsed.ok()) {
      std::fprintf(stderr, "capheap_trace_replay: %s\n", parsed.error.c_str());
      return 1;
    }
    traces.push_back(std::move(parsed.trace));
  }
  Region region;
  std::vector<Program> programs;
  std::vector<Result> results;
  for (std::size_t t = 0; t < traces.size(); ++t) {
    programs.push_back(compile(base_name(opt.traces[t]), traces[t]));
    if (opt.scan_steps != 0) {
      run_scan(programs.back(), opt, region);
      continue;
    }
    if (!opt.callgrind.empty()) {
      if (const int rc = run_callgrind(programs.back(), opt, region); rc != 0) return rc;
      continue;
    }
    results.push_back(measure(programs.back(), opt, region));
    if (opt.latency_repeat > 0) latency_round_of(results.back(), programs.back(), opt, timer);
  }
  if (!opt.callgrind.empty() || opt.scan_steps != 0) return 0;
  // Latency in rounds: the first of each trace right after its measurement above, the others at
  // the end, so that the samples of one operation are spread over the whole run rather than taken
  // in one phase in which the whole (shared, virtual) machine may run slower.
  if (opt.latency_repeat > 0) {
    for (int round = 1; round < opt.latency_rounds; ++round) {
      for (std::size_t t = 0; t < programs.size(); ++t)
        latency_round_of(results[t], programs[t], opt, timer);
    }
    for (std::size_t t = 0; t < programs.size(); ++t) {
      Result &r = results[t];
      r.lat_capheap = summarise(programs[t], r.ops_capheap);
      if (opt.system) r.lat_system = summarise(programs[t], r.ops_system);
    }
  }
  print_table(results, opt);
  print_latency(results, opt, timer);
  if (!opt.json.empty() && !write_json(opt.json, results, opt, timer)) {
    std::fprintf(stderr, "capheap_trace_replay: cannot write %s\n", opt.json.c_str());
    return 1;
  }
  for (const Result &r : results) {
    if (!r.validated || (r.model && !r.model_validated)) return 1;
  }
  return 0;
}

}  // namespace capheap::bench

int main(int argc, char **argv) {
  return capheap::bench::main(argc, argv);
}
