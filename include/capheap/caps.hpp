// capheap/caps.hpp — capabilities and the heap registry (the C++ side of heap_caps_*).
//
// A Registry holds the heaps of one system. Each heap covers one contiguous region and carries
// three priority levels of capability masks (MALLOC_CAP_* bits). allocate(size, caps) walks the
// priority levels and, within each, the heap list, exactly as ESP-IDF's heap_caps_malloc does; free
// finds the owning heap by binary search over a sorted address table. (Firmware built for size,
// CAPHEAP_COMPACT: both walk the records, O(heaps); see CAPHEAP_CAPS_TABLES.) The C API
// (esp_heap_caps.h) is a thin shim over one global Registry.
//
// Freestanding: no allocation (the heap table is a fixed array of kMaxHeaps records inside the
// Registry), no exceptions, no I/O. Locks go through the port: one per heap, one for the table.
#ifndef CAPHEAP_CAPS_HPP
#define CAPHEAP_CAPS_HPP

#include <cstddef>
#include <cstdint>

#include "capheap.h"
#include "capheap/heap.hpp"
#include "capheap_layout.h"
#include "esp_heap_caps.h"
#include "capheap_port.h"

// Sequence-lock fences. ThreadSanitizer (gcc) rejects atomic_thread_fence; it does not model
// fences anyway, and every table access is atomic, so under TSan the fences are left out.
#if defined(__SANITIZE_THREAD__)
#define CAPHEAP_SEQ_FENCE(order) ((void)0)
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CAPHEAP_SEQ_FENCE(order) ((void)0)
#endif
#endif
#ifndef CAPHEAP_SEQ_FENCE
#define CAPHEAP_SEQ_FENCE(order) __atomic_thread_fence(order)
#endif

#ifndef CAPHEAP_MAX_HEAPS
#define CAPHEAP_MAX_HEAPS 64
#endif

// 1: each heap record holds a capheap_lock_t for its heap's lock (hosted ports: a recursive mutex).
// 0 (firmware builds with the bare-metal port, whose lock hooks only receive an object that
// identifies the heap and whose capheap_lock_init does nothing): the record itself is that object,
// 64 bytes less .bss per record.
#ifndef CAPHEAP_LOCK_STORAGE
#define CAPHEAP_LOCK_STORAGE 1
#endif

// The C API's leaner fast paths (Registry::allocate_then / deallocate_then and their tables) are
// for hosts and speed-built firmware; firmware built for size (CAPHEAP_COMPACT) keeps the plain
// inline fast path and saves their code and 0.5 KiB of tables.
#if defined(CAPHEAP_COMPACT) && CAPHEAP_COMPACT
#define CAPHEAP_THEN_TABLES 0
#else
#define CAPHEAP_THEN_TABLES 1
#endif

// Firmware built for size (CAPHEAP_COMPACT) keeps no table derived from the heap records either
// (capability masks, precomputed first choices, the sorted address table): the heap choice walks
// the records in list order as ESP-IDF does (O(heaps) per allocation, no inline fast path), and
// the owner lookup of free, realloc and the queries scans them (O(heaps); free's hint still
// answers the common case in O(1)). Same choices and results, about 1.5 KiB less code and 1.6 KiB
// less .bss (64 records) on a Cortex-M4.
#if defined(CAPHEAP_COMPACT) && CAPHEAP_COMPACT
#define CAPHEAP_CAPS_TABLES 0
#else
#define CAPHEAP_CAPS_TABLES 1
#endif

namespace capheap {

/// A set of MALLOC_CAP_* capability bits. Converts explicitly to and from the ESP-IDF mask.
class Caps {
 public:
  constexpr Caps() noexcept = default;
  constexpr explicit Caps(std::uint32_t bits) noexcept : bits_(bits) {}
  constexpr std::uint32_t bits() const noexcept { return bits_; }
  constexpr bool empty() const noexcept { return bits_ == 0; }
  /// True if every bit of `other` is in this set.
  constexpr bool contains(Caps other) const noexcept {
    return (bits_ & other.bits_) == other.bits_;
  }
  constexpr bool intersects(Caps other) const noexcept { return (bits_ & other.bits_) != 0; }
  constexpr Caps operator|(Caps o) const noexcept { return Caps(bits_ | o.bits_); }
  constexpr Caps operator&(Caps o) const noexcept { return Caps(bits_ & o.bits_); }
  constexpr Caps without(Caps o) const noexcept { return Caps(bits_ & ~o.bits_); }
  constexpr Caps &operator|=(Caps o) noexcept { return bits_ |= o.bits_, *this; }
  constexpr bool operator==(Caps o) const noexcept { return bits_ == o.bits_; }
  constexpr bool operator!=(Caps o) const noexcept { return bits_ != o.bits_; }

  static constexpr Caps exec() noexcept { return Caps(MALLOC_CAP_EXEC); }
  static constexpr Caps bit32() noexcept { return Caps(MALLOC_CAP_32BIT); }
  static constexpr Caps bit8() noexcept { return Caps(MALLOC_CAP_8BIT); }
  static constexpr Caps dma() noexcept { return Caps(MALLOC_CAP_DMA); }
  static constexpr Caps spiram() noexcept { return Caps(MALLOC_CAP_SPIRAM); }
  static constexpr Caps internal() noexcept { return Caps(MALLOC_CAP_INTERNAL); }
  static constexpr Caps default_() noexcept { return Caps(MALLOC_CAP_DEFAULT); }
  static constexpr Caps iram_8bit() noexcept { return Caps(MALLOC_CAP_IRAM_8BIT); }
  static constexpr Caps retention() noexcept { return Caps(MALLOC_CAP_RETENTION); }
  static constexpr Caps rtcram() noexcept { return Caps(MALLOC_CAP_RTCRAM); }
  static constexpr Caps spm() noexcept { return Caps(MALLOC_CAP_SPM); }
  static constexpr Caps dma_desc_ahb() noexcept { return Caps(MALLOC_CAP_DMA_DESC_AHB); }
  static constexpr Caps dma_desc_axi() noexcept { return Caps(MALLOC_CAP_DMA_DESC_AXI); }
  static constexpr Caps cache_aligned() noexcept { return Caps(MALLOC_CAP_CACHE_ALIGNED); }
  static constexpr Caps simd() noexcept { return Caps(MALLOC_CAP_SIMD); }
  static constexpr Caps invalid() noexcept { return Caps(MALLOC_CAP_INVALID); }

 private:
  std::uint32_t bits_ = 0;
};

/// One named capability bit: the ESP-IDF macro name without its `MALLOC_CAP_` prefix.
struct CapName {
  const char *name;
  std::uint32_t bit;
};

/// Every MALLOC_CAP_* name in ascending bit order (the order reports print them in). One alias:
/// TCM (the same bit as SPM) comes right after SPM; printers use the first name of a bit.
inline constexpr CapName kCapNames[] = {
    {"EXEC", MALLOC_CAP_EXEC},
    {"32BIT", MALLOC_CAP_32BIT},
    {"8BIT", MALLOC_CAP_8BIT},
    {"DMA", MALLOC_CAP_DMA},
    {"PID2", MALLOC_CAP_PID2},
    {"PID3", MALLOC_CAP_PID3},
    {"PID4", MALLOC_CAP_PID4},
    {"PID5", MALLOC_CAP_PID5},
    {"PID6", MALLOC_CAP_PID6},
    {"PID7", MALLOC_CAP_PID7},
    {"SPIRAM", MALLOC_CAP_SPIRAM},
    {"INTERNAL", MALLOC_CAP_INTERNAL},
    {"DEFAULT", MALLOC_CAP_DEFAULT},
    {"IRAM_8BIT", MALLOC_CAP_IRAM_8BIT},
    {"RETENTION", MALLOC_CAP_RETENTION},
    {"RTCRAM", MALLOC_CAP_RTCRAM},
    {"SPM", MALLOC_CAP_SPM},
    {"TCM", MALLOC_CAP_SPM},
    {"DMA_DESC_AHB", MALLOC_CAP_DMA_DESC_AHB},
    {"DMA_DESC_AXI", MALLOC_CAP_DMA_DESC_AXI},
    {"CACHE_ALIGNED", MALLOC_CAP_CACHE_ALIGNED},
    {"SIMD", MALLOC_CAP_SIMD},
    {"SPIRAM_NO_ENC", MALLOC_CAP_SPIRAM_NO_ENC},
    {"INVALID", MALLOC_CAP_INVALID},
};

/// Result codes of registry operations (values are ESP-IDF's esp_err_t).
enum class Status : int {
  kOk = ESP_OK,
  kFail = ESP_FAIL,         ///< overlaps an existing heap
  kNoMem = ESP_ERR_NO_MEM,  ///< heap table full
  kInvalidArg = ESP_ERR_INVALID_ARG,
  kInvalidState = ESP_ERR_INVALID_STATE,
  kInvalidSize = ESP_ERR_INVALID_SIZE,  ///< region too small for a heap, or not 4-byte aligned
  kNotFound = ESP_ERR_NOT_FOUND,
};

/// Where a heap goes in the list.
enum class Placement : std::uint8_t {
  kBoot,     ///< after every boot heap (heap_caps_init adds them in the layout's region order)
  kRuntime,  ///< at the head of the list (ESP-IDF's heap_caps_add_region_with_caps)
};

/// Read-only view of one registered heap.
struct HeapView {
  const char *name = nullptr;  ///< memory type name ("DRAM", "D/IRAM", "SPIRAM", ...)
  std::uint32_t caps[CAPHEAP_PRIORITY_LEVELS] = {0, 0, 0};
  std::uintptr_t start = 0;  ///< region start (data bus)
  std::uintptr_t end = 0;    ///< region end (exclusive)
  /// Instruction-bus alias of start, 0 if none. In an inverted D/IRAM window (ESP32) the alias of
  /// start taken as a boundary: the end of the heap's instruction range, which runs downwards.
  std::uintptr_t iram_start = 0;
  bool registered = false;  ///< false for startup-stack regions not yet enabled
  bool runtime = false;     ///< added at run time (head of the list)
  Heap heap;                ///< the engine (null while not registered)
  void *lock = nullptr;     ///< the heap's port lock object

  /// True when the heap is registered and has every bit of `want` at some priority level (the
  /// rule of Registry::heap_matches, on this one reading of the record). O(1).
  bool has_caps(std::uint32_t want) const noexcept {
    static_assert(CAPHEAP_PRIORITY_LEVELS == 3, "every level's caps");
    return registered && ((caps[0] | caps[1] | caps[2]) & want) == want;
  }
};

/// The heaps of one system and the capability-based choice between them.
class Registry {
  struct Record;

 public:
  static constexpr unsigned kMaxHeaps = CAPHEAP_MAX_HEAPS;
  static_assert(kMaxHeaps % 32 == 0 && kMaxHeaps >= 32 && kMaxHeaps <= 256,
                "CAPHEAP_MAX_HEAPS must be a multiple of 32 between 32 and 256");

  /// An empty registry. Constant-initialised (usable as a global before any constructor runs);
  /// call init() before use to set up its locks.
  constexpr Registry() noexcept = default;
  Registry(const Registry &) = delete;
  Registry &operator=(const Registry &) = delete;

  /// Sets up the registry's own lock and forgets every heap (their memory is not touched).
  /// Not thread-safe.
  void init(std::size_t granule = 4) noexcept;
  /// As init(granule), with every option of the heaps it will create (granule 0 = 4).
  void init(const HeapConfig &heap_config) noexcept;

  /// Builds the boot heaps of a chip layout (heap_caps_init's algorithm; see esp_heap_caps_init.h)
  /// and remembers the layout's alias and alignment facts. Returns kNoMem if the layout has more
  /// heaps than kMaxHeaps (the first kMaxHeaps are built), else kOk. Not thread-safe (call before
  /// other threads use the registry).
  Status build_from_layout(const capheap_layout_t &layout) noexcept;

  /// Registers startup-stack regions' heaps. Thread-safe.
  void enable_startup_stack_heaps() noexcept;

  /// Takes the table lock, then every heap's lock in table order; unlock_all() releases them.
  /// While they are held no operation of this registry is half-done, so the heaps' memory is
  /// consistent: the host simulator copies it for fork() under them. Not reentrant (a thread
  /// holding a heap's lock must not call it).
  void lock_all() noexcept;
  void unlock_all() noexcept;
  /// In the child of a fork() made while lock_all() was held: the locks belong to the parent's
  /// thread (the host port's are recursive mutexes, which only their owner may release), so they
  /// are initialised afresh, unlocked.
  void reset_locks_in_child() noexcept;

  /// Adds a heap over [start, end) (heap_caps_add_region_with_caps's contract and overlap rules).
  /// Returns kOk; kInvalidArg (caps null, start or end 0, end <= start), kFail (overlap), kNoMem
  /// (table full), kInvalidSize (too small for a heap, or start not 4-byte aligned), checked in
  /// that order; nothing is added on failure. Thread-safe; allocations may run concurrently.
  Status add_region(const std::uint32_t caps[CAPHEAP_PRIORITY_LEVELS], std::uintptr_t start,
                    std::uintptr_t end, Placement where = Placement::kRuntime,
                    const char *name = nullptr) noexcept;

  /// Caps of the layout region containing addr (for heap_caps_add_region); false if none.
  bool layout_caps_at(std::uintptr_t addr,
                      std::uint32_t out[CAPHEAP_PRIORITY_LEVELS]) const noexcept;

  // ---- Allocation: ESP-IDF's heap_caps_*_base semantics (no failure callback) ----

  /// Turns the inline fast path of allocate() on or off (default on; init() keeps the setting).
  /// While it is off every request takes allocate()'s `before_slow` hook and the general walk: the
  /// C API keeps it off while it initialises, so that its initialisation check sits on the slow
  /// path only. Not thread-safe against itself. (Firmware built for size, CAPHEAP_COMPACT, has no
  /// inline fast path: every request takes `before_slow` and the general walk, and this does
  /// nothing.)
#if CAPHEAP_CAPS_TABLES
  void set_fast_path(bool on) noexcept;
#else
  void set_fast_path(bool) noexcept {}
#endif
  /// Holds the inline fast paths of allocate_then() and deallocate_then() off (hold true) or
  /// releases them, independently of set_fast_path, allocate() and deallocate(): while held, every
  /// request to those two goes to its miss handler. The C API holds it while events are on, so that
  /// its common path needs no event check of its own. Thread-safe; concurrent calls settle on the
  /// last one's value.
  void hold_then_path(bool hold) noexcept;
  /// True while hold_then_path holds those fast paths off.
  bool then_path_held() const noexcept {
    return __atomic_load_n(&then_held_, __ATOMIC_ACQUIRE);
  }

  /// heap_caps_malloc's rules: NULL for size 0 or above 2^31, caps 0, MALLOC_CAP_INVALID, EXEC
  /// with 8BIT, DMA or DMA_DESC_*, or no fitting heap; EXEC implies 32BIT; 32BIT rounds size to 4;
  /// hardware alignment for DMA/DMA_DESC_*/CACHE_ALIGNED/SIMD; D/IRAM instruction aliases for EXEC.
  /// `before_slow()` runs first whenever the request leaves the inline fast path (always in
  /// firmware built for size, which has none: see CAPHEAP_CAPS_TABLES).
  template <class BeforeSlow>
  __attribute__((always_inline)) inline void *allocate(std::size_t size, Caps caps,
                                                       BeforeSlow &&before_slow) noexcept;
  __attribute__((always_inline)) inline void *allocate(std::size_t size, Caps caps) noexcept {
    return allocate(size, caps, [] {});
  }
  /// The handler allocate_then() calls when its inline fast path does not apply or the first heap
  /// refuses: it must return allocate_general(size, caps, tried) (and may report a failure).
  /// `caller`: allocate_then's, or null after the fast path's first heap refused.
  using MissHandler = void *(*)(Registry &self, std::size_t size, Caps caps, unsigned tried,
                                void *caller);
  /// allocate(size, caps) for an entry point that ends in a tail call: the inline part only picks
  /// the first heap; its locked engine call and, if needed, Miss follow in one out-of-line call,
  /// so that the caller keeps nothing live across a call. Same rules and same choice of heap.
  /// `caller()` gives the caller to pass to Miss; it runs only when Miss does (so that an entry
  /// point's return address is read on that path only).
#if CAPHEAP_THEN_TABLES
  /// The first heap allocate_then() chose for a request but did not use because hold_then_path
  /// holds its fast path off: an opaque token for allocate_done_in().
  class Choice {
    friend class Registry;
    explicit Choice(Record *r) noexcept : r_(r) {}
    Record *r_;
  };
  /// What allocate_then<Miss, Held>() calls instead of Miss for a single-bit request whose first
  /// heap it found while held (or, rarely, while its tables change): Held(first, size, caller,
  /// caps) must return what Miss(*this, size, caps, 0, caller) would, and may use
  /// allocate_done_in(first, ...) on this registry.
  /// (No registry argument and caps last: the inline part then sets up the arguments of both calls
  /// without extra moves.)
  using HeldHandler = void *(*)(Choice first, std::size_t size, void *caller, Caps caps);
  template <MissHandler Miss, HeldHandler Held = nullptr, class CallerFn>
  __attribute__((always_inline)) inline void *allocate_then(std::size_t size, Caps caps,
                                                            CallerFn &&caller) noexcept;
  /// (Compared as template arguments: `Held != nullptr` is not a constant expression for every
  /// function in every build, e.g. with sanitizers.)
  template <HeldHandler H>
  static constexpr bool kHasHeld =
      !std::is_same<std::integral_constant<HeldHandler, H>,
                    std::integral_constant<HeldHandler, nullptr>>::value;
#endif
  /// allocate(size, caps) without the inline fast path: the same rules and the same choice of heap,
  /// in one out-of-line call (for callers off the hot path: no copy of the fast path in each).
  /// `tried`: 0, or 1 + the record allocate_then() already asked (skipped by the walk).
  void *allocate_general(std::size_t size, Caps caps, unsigned tried = 0) noexcept {
    return allocate_slow(size, caps, tried);
  }
  /// heap_caps_aligned_alloc's rules (no EXEC alias, no 32BIT rounding, no EXEC refusal): NULL for
  /// alignment 0, not a power of two or above 2^31, size 0 or above 2^31, caps 0,
  /// MALLOC_CAP_INVALID, or no fitting heap.
  void *allocate_aligned(std::size_t alignment, std::size_t size, Caps caps) noexcept {
    return alignment != 0 && (alignment & (alignment - 1)) == 0
               ? allocate_slow(size, caps, 0, alignment)
               : nullptr;
  }
  /// heap_caps_realloc's rules.
  void *reallocate(void *ptr, std::size_t size, Caps caps) noexcept;
  /// heap_caps_free's rules; reports (fail hook) pointers in no heap.
  __attribute__((always_inline)) inline void deallocate(void *ptr) noexcept;
  /// deallocate(ptr) for an entry point that ends in a tail call; while hold_then_path holds the
  /// fast paths off, it calls Miss(ptr, caller) instead, which must end in deallocate(ptr).
  using FreeMissHandler = void (*)(void *ptr, void *caller);
#if CAPHEAP_THEN_TABLES
  template <FreeMissHandler Miss, class CallerFn>
  __attribute__((always_inline)) inline void deallocate_then(void *ptr, CallerFn &&caller) noexcept;

  /// Receives a block that allocate_done() allocated; returns what the entry point returns.
  using DoneHandler = void *(*)(void *p, std::size_t size, std::uint32_t caps, void *caller);
  /// Takes what allocate_done() does not serve: `tried` is 0, or 1 + the record of the first heap,
  /// which refused (the handler must then take the general walk without asking that heap again:
  /// allocate_general). No registry argument: the handler knows its registry.
  using SlowHandler = void *(*)(std::size_t size, Caps caps, unsigned tried, void *caller);
  /// allocate(size, caps) for a miss handler that must see every allocation (the C API's event
  /// recorder while hold_then_path holds the tables off): the same first choice as allocate(),
  /// then one out-of-line call that locks, allocates and tail-calls Done(p, size, caps, caller).
  /// When the inline choice does not apply it returns Slow(size, caps, 0, caller); when the first
  /// heap refuses, Slow(size, caps, 1 + that record, caller).
  template <DoneHandler Done, SlowHandler Slow>
  __attribute__((always_inline)) inline void *allocate_done(std::size_t size, Caps caps,
                                                            void *caller) noexcept {
    const std::uint32_t c = caps.bits();
    Record *r;
    if ((c & (c - 1)) == 0) {
      // One bit (or none: entry 31 is null): then_single_ keeps its records while held.
      r = __atomic_load_n(&then_single_[static_cast<unsigned>(__builtin_ctz(c | 0x80000000u))],
                          __ATOMIC_ACQUIRE);
    } else {
      std::size_t want;  // (unused: allocate_in_done rounds the size itself)
      r = fast_choice(size, caps, want);
    }
    if (CAPHEAP_LIKELY(r != nullptr)) return allocate_in_done<Done, Slow>(*r, size, caller, caps);
    return Slow(size, caps, 0, caller);
  }
  /// allocate_done() on the heap allocate_then() handed to its Held handler (`caps` is that
  /// request's single bit or 0). The arguments are in Held's order, so that a Held handler can
  /// pass them on unchanged.
  template <DoneHandler Done, SlowHandler Slow>
  __attribute__((always_inline)) static inline void *allocate_done_in(Choice first,
                                                                      std::size_t size,
                                                                      void *caller,
                                                                      Caps caps) noexcept {
    return allocate_in_done<Done, Slow>(*first.r_, size, caller, caps);
  }
#endif

  // ---- Lookup and queries ----

  /// Runs f (a read-only pass over the heap list that returns its result) again until no heap was
  /// added while it ran, so that a sum over heaps counts each heap exactly once. Lock-free; f may
  /// take heap locks. Returns f's result from the consistent pass.
  template <class F>
  auto consistent(F &&f) const noexcept {
    for (;;) {
      const std::uint32_t seq = read_seq_begin();
      auto result = f();
      if (!read_seq_retry(seq)) return result;
    }
  }

  /// The heap whose region contains p (data-bus address), as a list position, or -1; record_index
  /// (if not null) receives its record, consistent with the position. O(log heaps), lock-free
  /// (firmware built for size, CAPHEAP_COMPACT: O(heaps), a scan of the records).
#if CAPHEAP_CAPS_TABLES
  inline int find_heap(const void *p, unsigned *record_index = nullptr) const noexcept;
#else
  int find_heap(const void *p, unsigned *record_index = nullptr) const noexcept;
#endif
  /// True if p is an instruction-bus alias produced by an EXEC allocation's D/IRAM path.
  bool is_iram_alias(const void *p) const noexcept {
    const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p);
    return a - __atomic_load_n(&iram_low_, __ATOMIC_RELAXED) <
           __atomic_load_n(&iram_span_, __ATOMIC_RELAXED);
  }
  /// The data-bus block address behind an EXEC alias pointer (reads the hidden word).
  void *data_address_of_alias(const void *p) const noexcept;
  /// Usable size of a live allocation (alias-aware); 0 (after a fail-hook report) if none. With
  /// poisoning: exactly the requested size (the tail canary follows it).
  std::size_t usable_size(const void *p) const noexcept;
  /// heap_caps_get_allocated_size's figure (ESP-IDF, spec §1.1/§1.3): the block's bytes less the
  /// header and the decoration, so with poisoning up to 3 bytes more than requested (the first
  /// bytes of the unaligned tail canary); otherwise as usable_size.
  std::size_t allocated_size(const void *p) const noexcept;

  /// Number of heaps (registered or not), in list order 0..count()-1.
  unsigned count() const noexcept {
    return __atomic_load_n(&count_, __ATOMIC_ACQUIRE);
  }
  /// The heap at list position i (0 <= i < count()).
  HeapView view(unsigned i) const noexcept;
  /// The view of the heap whose region contains p (data-bus address), read consistently (a list
  /// position from find_heap may name another heap once a heap is added); an empty view (null
  /// heap, registered false) if none. O(log heaps), lock-free.
  HeapView view_of(const void *p) const noexcept;
  /// True if heap i has every bit of caps over its three levels (the query rule; caps 0 matches).
  bool heap_matches(unsigned i, Caps caps) const noexcept;
  /// Runs f() under heap i's lock.
  template <class F>
  void with_heap_locked(unsigned i, F &&f) const noexcept {
    Record &r = const_cast<Record &>(record(i));
    lock(r);
    f();
    unlock(r);
  }
  /// Runs f() under the lock of the heap a view was taken of. Use this when f works on v.heap:
  /// positions shift when a runtime heap is added concurrently, so view(i) and a later
  /// with_heap_locked(i) may name two different heaps. Records never move, so v.lock stays valid.
  template <class F>
  void with_heap_locked(const HeapView &v, F &&f) const noexcept {
    capheap_port_lock_acquire(v.lock);
    f();
    capheap_port_lock_release(v.lock);
  }
  /// Hardware alignment (address and size) for a request with caps; 0 if none applies. Also
  /// returns the caps with DMA_DESC_* mapped to DMA, CACHE_ALIGNED removed and DMA dropped when
  /// SPIRAM is requested (ESP-IDF's adjustment).
  std::size_t hw_alignment(Caps &caps) const noexcept;

  const capheap_layout_t *layout() const noexcept {
    return layout_;
  }

  /// Tests only (defined in tests/caps): reaches the private tables to plant a torn read.
  friend struct RegistryTestAccess;

 private:
  // Index of the "any level" entry of Record::caps and masks_.
  static constexpr unsigned kAny = CAPHEAP_PRIORITY_LEVELS;
  struct Record {
    // caps[l] for the priority levels, caps[kAny]: every level's bits.
    std::uint32_t caps[CAPHEAP_PRIORITY_LEVELS + 1] = {0, 0, 0, 0};
    std::uintptr_t start = 0;
    std::uintptr_t end = 0;
    std::uintptr_t iram_start = 0;
    Heap heap;
#if CAPHEAP_LOCK_STORAGE
    capheap_lock_t lock_storage{};
    void *lock_object() noexcept {
      return &lock_storage;
    }
#else
    void *lock_object() noexcept {
      return this;
    }
#endif
    const char *name = nullptr;
    bool registered = false;
    bool runtime = false;
    std::uint8_t index = 0;  // its position in records_ (in the padding before hint_span)
#if !CAPHEAP_CAPS_TABLES
    bool outer = false;  // another heap lies inside this one (set by rebuild_tables, never cleared)
#endif
    // end - start while no other heap lies inside this one; 0 from then on (set once, never
    // restored), and 0 while a startup-stack region is not yet a heap: free's hint check, a - start
    // < hint_span, fails for an outer heap, which must search (the pointer may be the inner
    // heap's). 32 bits keep the record at 128 bytes on a 64-bit host (an index scales by a shift);
    // a region of 4 GiB or more gets 0 and always searches.
    std::uint32_t hint_span = 0;
  };
  static constexpr unsigned kWords = kMaxHeaps / 32;
  static constexpr unsigned kCapBits = 31;  // bit 31 (INVALID) is never a heap capability

#if CAPHEAP_CAPS_TABLES
  struct Mask {
    std::uint32_t w[kWords] = {};
  };
#endif

  HeapView view_of_record(const Record &r) const noexcept;
  // usable_size (allocated false) or allocated_size (true) of a live allocation, alias-aware; 0
  // after a fail-hook report if p is none.
  std::size_t block_figure(const void *p, bool allocated) const noexcept;
  // A record's fields other than its heap and lock, from three levels of caps (`keep`: the caps
  // bits kept).
  static Record make_record(const std::uint32_t caps[CAPHEAP_PRIORITY_LEVELS], std::uint32_t keep,
                            std::uintptr_t start, std::uintptr_t end) noexcept;
  // (acquire: pairs with the release that publishes a record, add_region running concurrently
  // with queries that walk the positions.)
  const Record &record(unsigned pos) const noexcept {
    return records_[__atomic_load_n(&order_[pos], __ATOMIC_ACQUIRE)];
  }
  static inline void lock(Record &r) noexcept;
  static inline void unlock(Record &r) noexcept;
  void lock_table() noexcept;
  void unlock_table() noexcept;
  // Publishes a change (caller holds the table lock): makes seq_ odd, puts record `added` (if not
  // kMaxHeaps) into the list at `where`, rebuilds every derived table, makes seq_ even again.
  void rebuild_tables(unsigned added, Placement where) noexcept;
#if CAPHEAP_CAPS_TABLES
  // Heaps among those with every bit of req at some level (registered ones only) in word w of the
  // position masks, and those sharing a bit of req at level l.
  std::uint32_t eligible_in(std::uint32_t req, unsigned w) const noexcept;
  std::uint32_t level_in(std::uint32_t req, unsigned l, unsigned w) const noexcept;
  // 1 + the record index of the first heap the walk tries for req (0: none).
  unsigned first_choice(std::uint32_t req) const noexcept;
#endif
  bool register_heap(Record &r) noexcept;
  Status insert(Record &r, Placement where) noexcept;
  // The record of the heap holding p (alias-aware; data receives the data-bus address), or null
  // after a fail-hook report with `what`.
  Record *owner_of(const void *p, void *&data, const char *what) const noexcept;
  // `tried`: 1 + the record the inline fast path already asked for this request (0: none), which
  // the walk skips (a heap that refused once, for lack of memory or because it reported a
  // corruption, is not asked twice).
  void *try_heaps(std::size_t size, Caps caps, std::size_t alignment, bool exec_alias,
                  unsigned tried = 0) noexcept;
  // `alignment`: 0 for allocate()'s rules; else allocate_aligned()'s (a power of two: no EXEC rule,
  // no 32BIT rounding, the larger of it and the hardware alignment). One body for both.
  void *allocate_slow(std::size_t size, Caps caps, unsigned tried = 0,
                      std::size_t alignment = 0) noexcept;
  // The inline fast paths' out-of-line halves: the locked engine call lives here so that the C
  // API's entry points keep no values across calls (no register saves) and end in a tail call.
#if CAPHEAP_CAPS_TABLES
  static void *allocate_in(Record &r, std::size_t size) noexcept;
#endif
  static void free_in(Record &r, void *ptr) noexcept;
  // free_in with r's heap handle passed in (by value: see then_heap_).
  static void free_in_heap(Record &r, Heap h, void *ptr) noexcept;
  // allocate_then's out-of-line half: the locked call, then Miss if the heap refused.
  template <MissHandler Miss>
  CAPHEAP_NOINLINE void *allocate_in_then(Record &r, Heap h, std::size_t want, std::size_t size,
                                          Caps caps) noexcept {
    lock(r);
    void *p = Heap::allocate_from(h, want);
    unlock(r);
    if (CAPHEAP_LIKELY(p != nullptr)) return p;
    return Miss(*this, size, caps, static_cast<unsigned>(&r - records_) + 1, nullptr);
  }
#if CAPHEAP_THEN_TABLES
  // allocate_done's out-of-line half (static, with Held's argument order: see allocate_done_in).
  // 32BIT rounds the request as allocate() does.
  template <DoneHandler Done, SlowHandler Slow>
  static CAPHEAP_NOINLINE void *allocate_in_done(Record &r, std::size_t size, void *caller,
                                                 Caps caps) noexcept {
    const std::size_t want =
        (caps.bits() & MALLOC_CAP_32BIT) != 0 ? (size + 3) & ~std::size_t(3) : size;
    lock(r);
    void *p = r.heap.allocate(want);
    unlock(r);
    if (CAPHEAP_LIKELY(p != nullptr)) return Done(p, size, caps.bits(), caller);
    return Slow(size, caps, r.index + 1u, caller);
  }
#endif
#if CAPHEAP_CAPS_TABLES
  // The inline fast path's choice: the first heap of ESP-IDF's walk for caps (null: take the
  // general walk), and the size to ask it for.
  __attribute__((always_inline)) inline Record *fast_choice(std::size_t size, Caps caps,
                                                            std::size_t &want) noexcept;
#endif
  // Null, instruction aliases, a miss of the hint (looks the heap up and moves the hint), stray
  // pointers (reported).
  void deallocate_slow(void *ptr) noexcept;
  int find_heap_slow(const void *p) const noexcept;
  void *alloc_in(Record &r, std::size_t size, std::size_t alignment, bool exec_alias) noexcept;
  std::uintptr_t to_iram(const Record &r, std::uintptr_t d) const noexcept;
  inline std::uint32_t read_seq_begin() const noexcept;
  inline bool read_seq_retry(std::uint32_t begin) const noexcept;

  Record records_[kMaxHeaps] = {};
  // List order: order_[pos] is the record index of the heap at list position pos.
  std::uint8_t order_[kMaxHeaps] = {};
#if CAPHEAP_CAPS_TABLES
  // Sorted by start address (ties: larger end first): by_addr_[k] is a list position, and
  // parent_[k] is 1 + the sorted index of the nearest heap enclosing heap k (0 if none; heaps added
  // strictly inside an allocated block of another heap nest).
  std::uint8_t by_addr_[kMaxHeaps] = {};
  std::uint8_t parent_[kMaxHeaps] = {};
  // The same order, denormalised for the lookup on free: starts and ends side by side.
  std::uintptr_t addr_start_[kMaxHeaps] = {};
  std::uintptr_t addr_end_[kMaxHeaps] = {};
#endif
  // Record index of the heap the last free went to: consecutive frees mostly hit the same heap. A
  // record's start and end never change once it is published and `hint_span` only goes to 0, so a
  // hit is checked against the record itself, without the sequence counter or the tables.
  // Bits 0-7: that record index; kHintHeld: hold_then_path holds deallocate_then's fast path off
  // (in the same word, so that its check costs no extra load).
  static constexpr std::uint32_t kHintHeld = 0x100;
  std::uint32_t free_hint_ = 0;
  unsigned count_ = 0;
#if CAPHEAP_CAPS_TABLES
  // Per capability bit b: heaps (list positions) with b at level l (masks_[l][b]), and with b at
  // any level (masks_[kAny][b]).
  Mask masks_[CAPHEAP_PRIORITY_LEVELS + 1][kCapBits] = {};
  Mask registered_ = {};
  // For a request of the single capability bit b: the record of the first heap ESP-IDF's walk
  // would try (null: none). Single-bit requests (DEFAULT, DMA, SPIRAM, ...) are the common
  // case; this skips the mask work for their first attempt.
  Record *first_single_[kCapBits] = {};
  // The same for requests of exactly two of the low 16 capability bits (INTERNAL|8BIT,
  // DEFAULT|INTERNAL, DMA|INTERNAL, SPIRAM|8BIT ...): first_pair_[low bit][high bit].
  static constexpr unsigned kPairBits = 16;
  std::uint8_t first_pair_[kPairBits][kPairBits] = {};
#endif
  // Bounds of all instruction-alias ranges (quick reject on free).
  std::uintptr_t iram_low_ = 0;
  std::uintptr_t iram_high_ = 0;
  std::uintptr_t iram_span_ = 0;  // iram_high_ - iram_low_ (0: no alias window)
#if CAPHEAP_CAPS_TABLES
  // Capability bits the inline fast path of allocate() handles itself (no alignment, no alias).
  std::uint32_t fast_caps_ = 0;
  std::uint32_t fast_caps_base_ = 0;  // fast_caps_ while at most 32 heaps exist
  bool fast_off_ = false;             // set_fast_path(false): fast_caps_ stays 0
  std::uint32_t fast_caps_value() const noexcept {
    // (count_ atomically: hold_then_path calls this without the table lock.)
    return !fast_off_ && __atomic_load_n(&count_, __ATOMIC_RELAXED) <= 32 ? fast_caps_base_ : 0u;
  }
#endif
  bool then_held_ = false;  // hold_then_path(true)
#if CAPHEAP_THEN_TABLES
  // first_single_ for allocate_then(), with fast_caps_ applied: null for a bit the fast path does
  // not serve, so that a single-bit request needs one load and one test. Entry 31
  // (MALLOC_CAP_INVALID, and caps 0, which looks it up) is always null. Kept while held (see
  // then_heap_), for allocate_done.
  Record *then_single_[32] = {};
  // The heap of then_single_[b]'s record (empty while held), and of free_hint_'s: the fast paths
  // load it in parallel with the record (and pass it by value) instead of after it, one load
  // latency less before the engine starts. The two are written separately; a reader checks that the
  // record's own heap is the one it loaded (a correctly predicted branch, off the critical path)
  // and takes the slow path if not.
  Heap then_heap_[32] = {};
  Heap hint_heap_{};
  // first_pair_ for allocate_then(), with fast_caps_, the hold and the DMA|SPIRAM exclusion applied
  // (0: not on the fast path). Record pointers (2 KiB: no index arithmetic between the load and the
  // record).
  using PairEntry = Record *;
  static Record *pair_record(Record *, PairEntry e) noexcept {
    return e;
  }
  static PairEntry pair_entry(Record *records, unsigned first) noexcept {
    return first != 0 ? &records[first - 1] : nullptr;
  }
  PairEntry then_pair_[kPairBits][kPairBits] = {};
#endif
#if CAPHEAP_CAPS_TABLES
  // Stores fast_caps_ and the allocate_then tables from the current settings, again until they
  // agree with the settings read after the store (a concurrent change of another setting cannot be
  // lost).
  void publish_fast_caps() noexcept;
#endif
  std::uint32_t seq_ = 0;  // seqlock: odd while the tables change
  capheap_lock_t table_lock_{};
  bool table_lock_ready_ = false;
  // All-zero until init() sets it (granule 0 becomes 4 there): a registry whose constant
  // initialiser is all zeros lives in .bss; one non-zero byte would put all of it (2.9 KiB with 64
  // heap records in firmware built for size, 32-bit target) into .data, i.e. into flash as well.
  HeapConfig heap_config_{};
  const capheap_layout_t *layout_ = nullptr;
};

// ---- Inline fast paths ------------------------------------------------------------------------
// heap_caps_malloc and heap_caps_free spend most of their time here: the common case (one table
// word, no alignment, no instruction alias) is inlined into the C API; everything else goes to the
// out-of-line paths in registry.cpp, which implement the same rules in full.

#if CAPHEAP_CAPS_TABLES
inline Registry::Record *Registry::fast_choice(std::size_t size, Caps caps,
                                               std::size_t &want) noexcept {
  const std::uint32_t c = caps.bits();
  // Fast path: one capability bit, or two of the low 16, with no alignment or alias work on this
  // chip (fast_caps_; 0 while more than 32 heaps exist): go straight to the first heap of ESP-IDF's
  // walk, precomputed when the tables change. Everything else, including a full first heap, takes
  // the one general walk (allocate_slow -> try_heaps), which applies every rule.
  // (No size check: the engine returns null for 0 and for anything larger than its region, and
  // 32BIT's rounding of a size near SIZE_MAX wraps to 0; allocate_slow then refuses the request.)
  if (CAPHEAP_LIKELY(c != 0 && (c & ~__atomic_load_n(&fast_caps_, __ATOMIC_RELAXED)) == 0)) {
    const unsigned b0 = static_cast<unsigned>(__builtin_ctz(c));
    const std::uint32_t rest = c & (c - 1);  // requested bits other than b0
    // No sequence check here: a table entry names a record, and records are never moved, removed
    // or unregistered, so a value read during a table change still names a heap that was the
    // right first choice an instant earlier. (acquire: pairs with the release store in
    // rebuild_tables.)
    Record *r = nullptr;
    if (CAPHEAP_LIKELY(rest == 0)) {
      r = __atomic_load_n(&first_single_[b0], __ATOMIC_ACQUIRE);
    } else if ((rest & (rest - 1)) == 0 && rest < (1u << kPairBits) &&
               (c & (MALLOC_CAP_DMA | MALLOC_CAP_SPIRAM)) != (MALLOC_CAP_DMA | MALLOC_CAP_SPIRAM)) {
      const unsigned first =
          __atomic_load_n(&first_pair_[b0][__builtin_ctz(rest)], __ATOMIC_ACQUIRE);
      if (first != 0) r = &records_[first - 1];
    }
    want = (c & MALLOC_CAP_32BIT) != 0 ? (size + 3) & ~std::size_t(3) : size;
    return r;
  }
  return nullptr;
}

#endif  // CAPHEAP_CAPS_TABLES

template <class BeforeSlow>
inline void *Registry::allocate(std::size_t size, Caps caps, BeforeSlow &&before_slow) noexcept {
#if !CAPHEAP_CAPS_TABLES
  // (Firmware built for size: no inline fast path, the one general walk.)
  before_slow();
  return allocate_slow(size, caps);
#else
  std::size_t want = size;
  Record *r = fast_choice(size, caps, want);
  if (CAPHEAP_LIKELY(r != nullptr)) {
    void *p = allocate_in(*r, want);
    if (CAPHEAP_LIKELY(p != nullptr)) return p;
    before_slow();
    return allocate_slow(size, caps, static_cast<unsigned>(r - records_) + 1);
  }
  before_slow();
  return allocate_slow(size, caps);
#endif
}

#if CAPHEAP_THEN_TABLES
template <Registry::MissHandler Miss, Registry::HeldHandler Held, class CallerFn>
inline void *Registry::allocate_then(std::size_t size, Caps caps, CallerFn &&caller) noexcept {
  const std::uint32_t c = caps.bits();
  if (CAPHEAP_LIKELY((c & (c - 1)) == 0)) {
    // One capability bit, or none (caps 0 reads entry 31, which is null).
    const std::size_t b = static_cast<unsigned>(__builtin_ctz(c | 0x80000000u));
    Record *r = __atomic_load_n(&then_single_[b], __ATOMIC_ACQUIRE);
    Heap h;
    __atomic_load(&then_heap_[b], &h, __ATOMIC_ACQUIRE);
    if (CAPHEAP_LIKELY(r != nullptr && r->heap == h)) {
      if (CAPHEAP_UNLIKELY(c == MALLOC_CAP_32BIT))
        return allocate_in_then<Miss>(*r, h, (size + 3) & ~std::size_t(3), size, caps);
      return allocate_in_then<Miss>(*r, h, size, size, caps);
    }
    if constexpr (kHasHeld<Held>) {
      if (r != nullptr) return Held(Choice(r), size, caller(), caps);
    }
    return Miss(*this, size, caps, 0, caller());
  }
  // Two of the low 16 bits (INTERNAL|8BIT, DMA|INTERNAL, ...).
  const std::uint32_t rest = c & (c - 1);
  if (CAPHEAP_LIKELY((rest & (rest - 1)) == 0 && rest < (1u << kPairBits))) {
    const std::size_t b0 = static_cast<unsigned>(__builtin_ctz(c));
    const std::size_t b1 = static_cast<unsigned>(__builtin_ctz(rest));
    Record *const pr =
        pair_record(records_, __atomic_load_n(&then_pair_[b0][b1], __ATOMIC_ACQUIRE));
    if (CAPHEAP_LIKELY(pr != nullptr)) {
      Record &r = *pr;
      if (CAPHEAP_UNLIKELY((c & MALLOC_CAP_32BIT) != 0))
        return allocate_in_then<Miss>(r, r.heap, (size + 3) & ~std::size_t(3), size, caps);
      return allocate_in_then<Miss>(r, r.heap, size, size, caps);
    }
  }
  return Miss(*this, size, caps, 0, caller());
}

#endif  // CAPHEAP_THEN_TABLES

#if CAPHEAP_CAPS_TABLES
inline int Registry::find_heap(const void *p, unsigned *record_index) const noexcept {
  const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p);
  for (;;) {
    const std::uint32_t seq = read_seq_begin();
    // The last heap (in start order) starting at or below a; if it does not contain a, only a heap
    // enclosing it can: follow the parent chain (nesting depth, not heap count).
    // Branch-free search over the whole table (unused entries hold the largest address): the same
    // log2(kMaxHeaps) + 1 steps whatever the number of heaps, so free costs the same with 4 heaps
    // or 64. lo = number of heaps starting at or below a.
    unsigned lo = 0;
    for (unsigned half = kMaxHeaps / 2; half > 0; half /= 2)
      lo += __atomic_load_n(&addr_start_[lo + half - 1], __ATOMIC_RELAXED) <= a ? half : 0;
    lo += __atomic_load_n(&addr_start_[lo], __ATOMIC_RELAXED) <= a ? 1u : 0u;
    int found = -1;
    for (unsigned k = lo; k > 0;) {
      if (a < __atomic_load_n(&addr_end_[k - 1], __ATOMIC_RELAXED) &&
          a >= __atomic_load_n(&addr_start_[k - 1], __ATOMIC_RELAXED)) {
        found = __atomic_load_n(&by_addr_[k - 1], __ATOMIC_RELAXED);
        // The record index, read inside the sequence window: list positions shift when a heap
        // is added at the head, records never move.
        if (record_index != nullptr)
          *record_index = __atomic_load_n(&order_[static_cast<unsigned>(found)], __ATOMIC_RELAXED);
        break;
      }
      k = __atomic_load_n(&parent_[k - 1], __ATOMIC_RELAXED);
    }
    if (!read_seq_retry(seq)) return found;
  }
}
#endif

inline void Registry::deallocate(void *ptr) noexcept {
  // (A null pointer, an instruction alias or a stray pointer never lies inside a heap's data
  // range, so the hint check below cannot match one; deallocate_slow handles them.)
  const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(ptr);
  // (acquire: pairs with the release store in deallocate_slow, so the record's fields, written
  // before the record was published, are visible here.)
  Record &r = records_[__atomic_load_n(&free_hint_, __ATOMIC_ACQUIRE) & 0xFFu];
  if (CAPHEAP_LIKELY(a - r.start <
                     std::uintptr_t{__atomic_load_n(&r.hint_span, __ATOMIC_ACQUIRE)})) {
    free_in(r, ptr);
    return;
  }
  deallocate_slow(ptr);
}

#if CAPHEAP_THEN_TABLES
template <Registry::FreeMissHandler Miss, class CallerFn>
inline void Registry::deallocate_then(void *ptr, CallerFn &&caller) noexcept {
  const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(ptr);
  const std::uint32_t hint = __atomic_load_n(&free_hint_, __ATOMIC_ACQUIRE);
  Heap h;
  __atomic_load(&hint_heap_, &h, __ATOMIC_ACQUIRE);
  if (CAPHEAP_LIKELY(hint < kHintHeld)) {
    Record &r = records_[hint];
    if (CAPHEAP_LIKELY(a - r.start <
                           std::uintptr_t{__atomic_load_n(&r.hint_span, __ATOMIC_ACQUIRE)} &&
                       r.heap == h))
      return free_in_heap(r, h, ptr);
    return deallocate_slow(ptr);
  }
  Miss(ptr, caller());
}

#endif  // CAPHEAP_THEN_TABLES

inline std::uint32_t Registry::read_seq_begin() const noexcept {
  for (;;) {
    const std::uint32_t s = __atomic_load_n(&seq_, __ATOMIC_ACQUIRE);
    if ((s & 1u) == 0) return s;
  }
}

inline bool Registry::read_seq_retry(std::uint32_t begin) const noexcept {
  CAPHEAP_SEQ_FENCE(__ATOMIC_ACQUIRE);
  return __atomic_load_n(&seq_, __ATOMIC_RELAXED) != begin;
}

inline void Registry::lock(Record &r) noexcept {
  capheap_port_lock_acquire(r.lock_object());
}
inline void Registry::unlock(Record &r) noexcept {
  capheap_port_lock_release(r.lock_object());
}

}  // namespace capheap

#endif  // CAPHEAP_CAPS_HPP
