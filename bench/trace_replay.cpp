// trace_replay.cpp — replays allocation traces on a capheap Heap and on the system malloc.
//
//   capheap_trace_replay [options] TRACE...
//
// For each trace it reports: operations, failed operations (NULL where the trace expects a block),
// ns per operation (median of --repeat replays, each on a fresh heap), the peak of live requested
// bytes, and the minimum region size that replays the trace without a failed allocation (binary
// search over granule-aligned region sizes, then a scan upwards for the size from which every
// region works; see search_region) with its ratio to the peak live bytes. Run with --help for the
// options; bench/callgrind_replay.sh drives the --callgrind mode; docs/trace-format.md explains the
// columns.
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
#include <chrono>
#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include "capheap/heap.hpp"
#include "sim/trace.hpp"

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
  std::vector<ReplayOp> ops;
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

/// Replays prog on alloc with the given slot table (all slots empty on entry).
template <bool kStopOnFailure, class Alloc>
inline Counts replay(Alloc &alloc, const Program &prog, Slot *slots) {
  Counts counts;
  const ReplayOp *const begin = prog.ops.data();
  const ReplayOp *const end = begin + prog.ops.size();
  for (const ReplayOp *op = begin; op != end; ++op) {
    Slot &s = slots[op->slot];
    void *p = nullptr;
    std::size_t bytes = op->size;
    switch (op->kind) {
      case OpKind::kMalloc:
        p = alloc.malloc(op->size);
        break;
      case OpKind::kCalloc:
        p = alloc.calloc(op->arg, op->size);
        bytes = op->arg * op->size;  // no overflow unless expect_null
        break;
      case OpKind::kAlignedAlloc:
        p = alloc.aligned(op->arg, op->size);
        break;
      case OpKind::kRealloc: {
        if (s.p != nullptr) check_block(prog, op, s);
        p = alloc.realloc(s.p, op->size);
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
          alloc.free(s.p);
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

// Named, never inlined: callgrind's --toggle-collect selects these (bench/callgrind_replay.sh).
__attribute__((noinline)) Counts replay_loop_capheap(CapheapAlloc &alloc, const Program &prog,
                                                     Slot *slots) {
  return replay<false>(alloc, prog, slots);
}
__attribute__((noinline)) Counts replay_loop_system(SystemAlloc &alloc, const Program &prog,
                                                    Slot *slots) {
  return replay<false>(alloc, prog, slots);
}

/// Frees what a system replay left live.
void release_system(SystemAlloc &alloc, std::vector<Slot> &slots) {
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

  /// A kAlign-aligned buffer of at least n bytes (contents unspecified).
  unsigned char *get(std::size_t n) {
    if (n > size_) {
      std::free(data_);
      size_ = (n + kAlign - 1) / kAlign * kAlign;
      data_ = static_cast<unsigned char *>(std::aligned_alloc(kAlign, size_));
      if (data_ == nullptr) {
        std::fprintf(stderr, "capheap_trace_replay: cannot allocate a %zu-byte region\n", size_);
        std::exit(2);
      }
    }
    return data_;
  }

 private:
  unsigned char *data_ = nullptr;
  std::size_t size_ = 0;
};

struct Options {
  Granule granule = Granule::k4;
  int repeat = 5;
  std::size_t region = 0;  ///< timing region; 0 = 2 × stable (or min) region, 64 MiB unsearched
  std::size_t stable_window = 4096;  ///< see search_region(); 0 = no stability scan
  bool search = true;
  bool system = true;
  std::string json;
  std::string callgrind;  ///< "", "capheap" or "system"
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

struct RegionSearch {
  std::size_t min = 0;     ///< binary-search result: a size that replays cleanly (0: none found)
  std::size_t stable = 0;  ///< every scanned size from here up replays cleanly (0: not scanned)
  std::size_t probes = 0;  ///< replays run
};

/// Region sizes (bytes, multiples of the granule) that replay prog without a failure.
/// `min`: binary search between 0 and a doubling upper bound (≤ 1 GiB). Success is not monotonic
/// in the region size (a different size moves block boundaries and size classes, so a slightly
/// larger region can fail where a smaller one succeeded), so the search only finds *a* working
/// size inside the boundary zone. `stable`: scanning every granule step upwards from `min` until
/// opt.stable_window bytes pass without a failure; the smallest size above the last failure seen.
RegionSearch search_region(Region &region, const Options &opt, const Program &prog,
                           std::vector<Slot> &slots) {
  const auto g = static_cast<std::size_t>(opt.granule);
  RegionSearch out;
  auto clean = [&](std::size_t size) {
    ++out.probes;
    return replays_cleanly(region, size, opt, prog, slots);
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
  if (opt.stable_window != 0) {
    out.stable = hi;
    for (std::size_t s = hi + g; s <= out.stable + opt.stable_window && s < kSearchCap; s += g) {
      if (!clean(s)) out.stable = s + g;
    }
  }
  return out;
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
  const std::size_t found = std::max(res.search.min, res.search.stable);
  res.region = opt.region != 0 ? opt.region : found != 0 ? found * 2 : kDefaultRegion;

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
  }
  std::printf(
      "min_region: a region size (bytes, control structure included, start 4096-aligned) with "
      "zero failed allocations,\n  found by binary search; success is not monotonic in the size, "
      "so see stable.\nstable: every size from here to %zu bytes beyond the last failure "
      "replays cleanly.\nratio: size / peak_live. region: the region of the timed replays.\n"
      "footprint: peak bytes glibc took from the OS (fresh arena + mmapped, M_TOP_PAD 0, "
      "page-granular).\n",
      opt.stable_window);
}

bool write_json(const std::string &path, const std::vector<Result> &results, const Options &opt) {
  std::FILE *f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return false;
  std::fprintf(f,
               "{\n  \"granule\": %d,\n  \"repeat\": %d,\n  \"stable_window\": %zu,\n"
               "  \"traces\": [\n",
               static_cast<int>(opt.granule), opt.repeat, opt.stable_window);
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
    if (r.system) {
      std::fprintf(f,
                   ",\n     \"system\": {\"failed\": %zu, \"unexpected_non_null\": %zu, "
                   "\"ns_per_op\": %.2f, \"footprint\": %zu, \"footprint_ratio\": %.4f}",
                   r.sys.failed, r.sys.unexpected, r.sys_ns_per_op, r.sys_footprint,
                   ratio(r.sys_footprint, r.peak_live_bytes));
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
      "  --region BYTES     region for the timed capheap replays (default: 2 x stable region)\n"
      "  --stable-window B  after the binary search, scan sizes upwards until B bytes pass "
      "without\n"
      "                     a failure; report the size above the last failure (default 4096,\n"
      "                     0 = no scan)\n"
      "  --no-search        skip the minimum-region search (timing region: --region or 64 MiB)\n"
      "  --no-system        skip the system malloc\n"
      "  --json FILE        also write the results as JSON\n"
      "  --callgrind capheap|system\n"
      "                     replay each trace once on one allocator, nothing else (for\n"
      "                     valgrind --tool=callgrind --toggle-collect='*replay_loop_*');\n"
      "                     prints 'ops N' per trace\n");
}

bool parse_size(const char *text, std::size_t &out) {
  char *end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(text, &end, 0);
  if (errno != 0 || end == text || *end != '\0' || text[0] == '-') return false;
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
    } else if (arg == "--json") {
      opt.json = value("--json");
    } else if (arg == "--callgrind") {
      opt.callgrind = value("--callgrind");
      if (opt.callgrind != "capheap" && opt.callgrind != "system") {
        std::fprintf(stderr, "capheap_trace_replay: --callgrind takes capheap or system\n");
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

int run_callgrind(const Program &prog, const Options &opt, Region &region) {
  std::vector<Slot> slots(prog.slots);
  Counts c;
  if (opt.callgrind == "capheap") {
    const std::size_t size = opt.region != 0 ? opt.region : kDefaultRegion;
    CapheapAlloc alloc{make_heap(region, size, opt)};
    if (!alloc.heap) return 2;
    REPLAY_CALLGRIND_START();
    c = replay_loop_capheap(alloc, prog, slots.data());
    REPLAY_CALLGRIND_STOP();
  } else {
    SystemAlloc sys;
    REPLAY_CALLGRIND_START();
    c = replay_loop_system(sys, prog, slots.data());
    REPLAY_CALLGRIND_STOP();
    release_system(sys, slots);
  }
  std::printf("trace %s\nops %zu\nfailed %zu\n", prog.name.c_str(), prog.ops.size(), c.failed);
  return 0;
}

int main(int argc, char **argv) {
  Options opt;
  if (const int rc = parse_options(argc, argv, opt); rc != 0) return rc;
  if (!opt.callgrind.empty()) opt.search = false;
  Region region;
  std::vector<Result> results;
  for (const std::string &path : opt.traces) {
    const sim::ParseResult parsed = sim::load_trace_file(path);
    if (!parsed.ok()) {
      std::fprintf(stderr, "%s\n", parsed.error.c_str());
      return 1;
    }
    const Program prog = compile(base_name(path), parsed.trace);
    if (!opt.callgrind.empty()) {
      if (const int rc = run_callgrind(prog, opt, region); rc != 0) return rc;
      continue;
    }
    results.push_back(measure(prog, opt, region));
  }
  if (!opt.callgrind.empty()) return 0;
  print_table(results, opt);
  if (!opt.json.empty() && !write_json(opt.json, results, opt)) {
    std::fprintf(stderr, "capheap_trace_replay: cannot write %s\n", opt.json.c_str());
    return 1;
  }
  for (const Result &r : results) {
    if (!r.validated) return 1;
  }
  return 0;
}

}  // namespace capheap::bench

int main(int argc, char **argv) {
  return capheap::bench::main(argc, argv);
}
