// heap_caps.cpp — ESP-IDF's heap_caps_* C API (esp_heap_caps.h, esp_heap_caps_init.h) and
// capheap's capability extensions (capheap.h), as shims over one global capheap::Registry.
//
// This file owns the ESP-IDF policy that is not capability matching: the failure callback and the
// abort-on-failure option, the malloc() default policy with the external-memory threshold, the
// _prefer variants, calloc's overflow rules, the printed reports and the local minimum monitor.

#include <cstdarg>
#include <cstdint>

#include "capheap.h"
#include "capheap/caps.hpp"
#include "capi/capi_internal.hpp"
#include "capi/events.hpp"
#include "esp_heap_caps.h"
#include "esp_heap_caps_init.h"
#include "port/port.h"

#ifndef CAPHEAP_COMPACT
#define CAPHEAP_COMPACT 0
#endif

namespace capheap {
namespace capi {

Registry g_registry;

namespace {

const capheap_layout_t *g_layout = nullptr;
HeapConfig g_heap_config{Granule::k4, Poisoning::kNone, false, 0};
esp_alloc_failed_hook_t g_failed_hook = nullptr;
bool g_abort_on_failure = false;
// ESP-IDF keeps the limit as an int with -1 meaning "external allocations disabled".
constexpr long kExtmemDisabled = -1;
long g_extmem_limit = kExtmemDisabled;
// 0 = not initialised, 1 = initialising, 2 = ready.
int g_init_state = 0;
// The registry's verdict on the last heap_caps_init's layout (capi_internal.hpp).
Status g_boot_status = Status::kOk;
// heap_caps_init has run (it runs once: a second call changes nothing).
bool g_heaps_built = false;

struct MonitorEntry {
  Heap heap;
  std::size_t saved_min;
};
MonitorEntry *g_monitor = nullptr;
unsigned g_monitor_count = 0;

/// Starts (start true: resets each heap's minimum, keeping the lowest seen) or ends (restores it)
/// the monitoring of every heap in g_monitor that still exists, each under its lock. A monitored
/// heap is found by the address of its control structure (list positions shift when a runtime heap
/// is added at the head).
void monitor_pass(bool start) noexcept {
  for (unsigned i = 0; i < g_monitor_count; ++i) {
    MonitorEntry &m = g_monitor[i];
    if (!m.heap) continue;
    const HeapView v = g_registry.view_of(m.heap.control());
    if (v.heap != m.heap) continue;
    // (Under the heap's lock: allocations on other tasks update the same minimum.)
    g_registry.with_heap_locked(v, [&] {
      if (!start) return m.heap.restore_minimum_free_bytes(m.saved_min);
      const size_t old = m.heap.reset_minimum_free_bytes();
      if (old < m.saved_min) m.saved_min = old;
    });
  }
}

// Largest single request any heap could hold; larger sizes fail before any arithmetic.
constexpr std::size_t kHeapSizeMax = std::size_t(1) << 31;

// The task running the initialisation; it may re-enter the API (the simulator adds regions and
// reserves pools through the public functions while initialising).
void *g_init_owner = nullptr;

CAPHEAP_COLD void ensure_init_slow() noexcept;

#if CAPHEAP_COMPACT
/// Initialises on first use. Firmware built for size: one out-of-line copy of the check, which
/// the entry points call (heap_caps_malloc and heap_caps_free reach it on their slow paths only).
CAPHEAP_NOINLINE void ensure_init() noexcept {
  if (CAPHEAP_LIKELY(__atomic_load_n(&g_init_state, __ATOMIC_ACQUIRE) == 2)) return;
  ensure_init_slow();
}
#else
/// Initialises on first use (host: the simulator); one load and a branch once initialised.
__attribute__((always_inline)) inline void ensure_init() noexcept {
  if (CAPHEAP_LIKELY(__atomic_load_n(&g_init_state, __ATOMIC_ACQUIRE) == 2)) return;
  ensure_init_slow();
}
#endif

void ensure_init_slow() noexcept {
  void *const self = capheap_port_current_task();
  int expected = 0;
  if (__atomic_compare_exchange_n(&g_init_state, &expected, 1, false, __ATOMIC_ACQ_REL,
                                  __ATOMIC_ACQUIRE)) {
    __atomic_store_n(&g_init_owner, self, __ATOMIC_RELEASE);
    if (capheap_host_autoinit != nullptr) {
      capheap_host_autoinit();  // sets the layout and calls heap_caps_init
    } else if (g_layout != nullptr) {
      heap_caps_init();
    }
    __atomic_store_n(&g_init_owner, nullptr, __ATOMIC_RELEASE);
    g_registry.set_fast_path(true);
    __atomic_store_n(&g_init_state, 2, __ATOMIC_RELEASE);
    return;
  }
  // Someone is initialising: re-entry from that same task passes; other tasks wait for it.
  if (self != nullptr && __atomic_load_n(&g_init_owner, __ATOMIC_ACQUIRE) == self) return;
  while (__atomic_load_n(&g_init_state, __ATOMIC_ACQUIRE) == 1) {
  }
}

void report_failure(std::size_t size, std::uint32_t caps, const char *function) noexcept {
  const esp_alloc_failed_hook_t hook = __atomic_load_n(&g_failed_hook, __ATOMIC_ACQUIRE);
  if (hook != nullptr) hook(size, caps, function);
  if (__atomic_load_n(&g_abort_on_failure, __ATOMIC_RELAXED)) {
    // "Mem alloc fail. size 0x%08x caps 0x%08x": both fields have 8 digits, so the text is fixed
    // but for them. One loop writes the digits from the end: caps's, then (past " caps 0x")
    // size's.
    char msg[] = "Mem alloc fail. size 0x00000000 caps 0x00000000";
    char *out = msg + sizeof msg - 1;
    std::uint32_t v = caps;
    for (unsigned i = 0; i < 16; ++i) {
      if (i == 8) {
        out -= sizeof " caps 0x" - 1;
        v = static_cast<std::uint32_t>(size);
      }
      const unsigned d = v & 0xFu;
      *--out = static_cast<char>(d < 10 ? '0' + d : 'a' - 10 + d);
      v >>= 4;
    }
    capheap_port_abort(msg);
  }
}

/// malloc_base for calloc, the _base and the _prefer functions. Firmware built for size
/// (CAPHEAP_COMPACT, set with CAPHEAP_FORCE_INLINE=OFF) takes the registry's general walk,
/// which makes the same choice as its inline fast path without a copy of it in each caller; hosts
/// keep the fast path (heap_caps_calloc is common).
void *malloc_base_call(std::size_t size, std::uint32_t caps) noexcept;

/// heap_caps_malloc_base's body, inlined into heap_caps_malloc (the hot path). Firmware built for
/// size, whose registry has no inline fast path: one out-of-line copy (malloc_base_call).
__attribute__((always_inline)) inline void *malloc_base(std::size_t size,
                                                        std::uint32_t caps) noexcept {
#if CAPHEAP_COMPACT
  return malloc_base_call(size, caps);
#else
  // The initialisation check is on the slow path only: the registry's fast path is off until the
  // initialisation has finished (heap_caps_init / ensure_init_slow turn it on), so a request it
  // serves comes after that. (No size check here: the slow path refuses anything above
  // kHeapSizeMax.)
  return g_registry.allocate(size, Caps(caps), [] { ensure_init(); });
#endif
}

void *malloc_base_call(std::size_t size, std::uint32_t caps) noexcept {
#if CAPHEAP_COMPACT
  ensure_init();
  return g_registry.allocate_general(size, Caps(caps));
#else
  return malloc_base(size, caps);
#endif
}

/// The caps a query of the integrity, dump and walk functions selects heaps by: MALLOC_CAP_INVALID
/// (their _all forms) selects every registered heap, i.e. those matching no bits at all.
std::uint32_t query_caps(std::uint32_t caps) noexcept {
  return (caps & MALLOC_CAP_INVALID) != 0 ? 0u : caps;
}

bool matches_query(unsigned i, std::uint32_t caps) noexcept {
  return g_registry.heap_matches(i, Caps(query_caps(caps)));
}

unsigned display32(std::uintptr_t a) noexcept {
  return static_cast<unsigned>(a);
}

}  // namespace

DisplayMapper g_mapper = nullptr;

void set_display_mapper(DisplayMapper mapper) noexcept {
  recorder_before_remap();
  g_mapper = mapper;
}

#if !defined(CAPHEAP_WITH_DECORATION) || CAPHEAP_WITH_DECORATION
/// Lower-case hexadecimal of v, at least min_digits digits, NUL-terminated; returns the end.
char *append_hex(char *out, std::uintptr_t v, unsigned min_digits) noexcept {
  unsigned n = 1;
  while (n < sizeof v * 2 && (v >> (4 * n)) != 0)
    ++n;
  if (n < min_digits) n = min_digits;
  while (n-- > 0)
    *out++ = "0123456789abcdef"[(v >> (4 * n)) & 0xFu];
  *out = '\0';
  return out;
}
void print_corruption(const Validation &v, const void *heap, bool chip_addresses) noexcept {
  // Addresses as text: "0x%08x" of the chip address, or the host pointer's hexadecimal digits.
  const auto address = [chip_addresses](char *out, const void *p) {
    out[0] = '0';
    out[1] = 'x';
    if (chip_addresses)
      append_hex(out + 2, display32(display_address(p)), 8);
    else
      append_hex(out + 2, reinterpret_cast<std::uintptr_t>(p), 1);
  };
  // One line for every fault: "CORRUPT HEAP: <what> at <address><expected, found> (heap <heap>)",
  // where the canary, fill and size faults add ESP-IDF's expected and found values.
  char at[24], hp[24], expected[12], found[12];
  address(hp, heap);
  // (Named arrays: each gets its own section, so that --gc-sections keeps only what is used.)
  static const char kBadHead[] = "Bad head", kBadTail[] = "Bad tail", kBadFill[] = "Invalid data",
                    kBadSize[] = "Size", kExpected[] = ". Expected 0x",
                    kExpectedAtMost[] = " expected <=0x";
  const char *what = fault_text(v.fault);
  const char *expect_text = kExpected;
  unsigned digits = 8;
  if (v.fault == Fault::kBadHeadCanary) {
    what = kBadHead;
  } else if (v.fault == Fault::kBadTailCanary) {
    what = kBadTail;
  } else if (v.fault == Fault::kBadFreeFill) {
    what = kBadFill;
    digits = 2;
  } else if (v.fault == Fault::kBadAllocSize) {
    what = kBadSize;
    expect_text = kExpectedAtMost;
  } else {
    expect_text = nullptr;
  }
  const void *where = expect_text != nullptr ? v.at : v.block;
  std::uint32_t expected_value = v.expected, found_value = v.found;
  if (v.fault == Fault::kBadFreeFill && (reinterpret_cast<std::uintptr_t>(v.block) & 3u) == 0) {
    // ESP-IDF checks word-aligned free memory a word at a time (spec 4.5: "Invalid data at %p.
    // Expected 0x%08x got 0x%08x", 0x%02x only for bytes after the last whole word): a block's
    // fill starts at a word of its data and ends on a word boundary, so the line names the word
    // holding the bad byte, 0xfefefefe and the word found there.
    const auto *byte = static_cast<const unsigned char *>(v.at);
    const unsigned char *word = byte - (reinterpret_cast<std::uintptr_t>(byte) & 3u);
    __builtin_memcpy(&found_value, word, sizeof found_value);
    expected_value = 0x01010101u * (v.expected & 0xFFu);
    where = word;
    digits = 8;
  }
  address(at, where);
  append_hex(expected, expected_value, digits);
  append_hex(found, found_value, digits);
  capheap_port_printf(
      "CORRUPT HEAP: %s at %s%s%s%s%s (heap %s)\n", what, at,
      expect_text != nullptr ? expect_text : "", expect_text != nullptr ? expected : "",
      expect_text != nullptr ? " got 0x" : "", expect_text != nullptr ? found : "", hp);
}
#else
// Without decoration support no canary, fill or stored-size fault exists (only decoration.cpp
// reports them), so every line is "CORRUPT HEAP: <what> at <block> (heap <heap>)", the addresses
// as "0x%08x" of the chip address or the host pointer's hexadecimal digits.
static_assert(sizeof(unsigned long) >= sizeof(std::uintptr_t), "%lx must show a whole pointer");
void print_corruption(const Validation &v, const void *heap, bool chip_addresses) noexcept {
  const char *const what = fault_text(v.fault);
  if (chip_addresses)
    capheap_port_printf("CORRUPT HEAP: %s at 0x%08x (heap 0x%08x)\n", what,
                        display32(display_address(v.block)), display32(display_address(heap)));
  else
    capheap_port_printf("CORRUPT HEAP: %s at 0x%lx (heap 0x%lx)\n", what,
                        static_cast<unsigned long>(reinterpret_cast<std::uintptr_t>(v.block)),
                        static_cast<unsigned long>(reinterpret_cast<std::uintptr_t>(heap)));
}
#endif

bool initialised() noexcept {
  return __atomic_load_n(&g_init_state, __ATOMIC_ACQUIRE) == 2;
}

Status boot_status() noexcept {
  return g_boot_status;
}

void reset() noexcept {
  recorder_before_remap();  // while the mapping and the heaps are still there
  g_registry.init(4);
  g_layout = nullptr;
  g_heap_config = HeapConfig{Granule::k4, Poisoning::kNone, false, 0};
  g_failed_hook = nullptr;
  g_abort_on_failure = false;
  g_extmem_limit = kExtmemDisabled;
  g_mapper = nullptr;
  g_monitor = nullptr;
  g_monitor_count = 0;
  g_boot_status = Status::kOk;
  g_heaps_built = false;
  g_init_owner = nullptr;
  __atomic_store_n(&g_init_state, 0, __ATOMIC_RELEASE);
}

}  // namespace capi
}  // namespace capheap

using capheap::Caps;
using capheap::Heap;
using capheap::HeapView;
using capheap::capi::display32;
using capheap::capi::display_address;
using capheap::capi::ensure_init;
using capheap::capi::g_registry;
using capheap::capi::kHeapSizeMax;
using capheap::capi::malloc_base;
using capheap::capi::matches_query;
using capheap::capi::report_failure;

extern "C" {

// ================================================================================================
// Initialisation and regions
// ================================================================================================

void capheap_set_layout(const capheap_layout_t *layout) {
  capheap::capi::g_layout = layout;
}

esp_err_t capheap_set_caps_granule(size_t granule) {
  if (granule != 4 && granule != 8 && granule != 16) return ESP_ERR_INVALID_ARG;
  capheap::capi::g_heap_config.granule = static_cast<capheap::Granule>(granule);
  return ESP_OK;
}

esp_err_t capheap_set_caps_heap_config(const capheap_heap_config_t *cfg) {
  capheap::HeapConfig hc{capheap::Granule::k4, capheap::Poisoning::kNone, false, 0};
  if (cfg != nullptr) {
    if (cfg->granule != 0 && cfg->granule != 4 && cfg->granule != 8 && cfg->granule != 16)
      return ESP_ERR_INVALID_ARG;
    if (cfg->granule != 0) hc.granule = static_cast<capheap::Granule>(cfg->granule);
    if (static_cast<unsigned>(cfg->poisoning) > CAPHEAP_POISONING_COMPREHENSIVE)
      return ESP_ERR_INVALID_ARG;
    hc.poisoning = static_cast<capheap::Poisoning>(cfg->poisoning);
    hc.track_owner = cfg->task_tracking;
#if defined(CAPHEAP_WITH_DECORATION) && !CAPHEAP_WITH_DECORATION
    if (hc.poisoning != capheap::Poisoning::kNone || hc.track_owner) return ESP_ERR_INVALID_ARG;
#endif
  }
  capheap::capi::g_heap_config = hc;
  return ESP_OK;
}

void heap_caps_init(void) {
  // Once only (ESP-IDF: never call it again): a rebuild would hand out live blocks again and drop
  // the heaps added at run time. (Also after a heap_caps_* call that initialised from the layout.)
  if (capheap::capi::g_heaps_built) return;
  capheap::capi::g_heaps_built = true;
  // The registry's fast path stays off until the initialisation is complete (see malloc_base).
  g_registry.set_fast_path(false);
  g_registry.init(capheap::capi::g_heap_config);
  capheap::capi::g_boot_status = capheap::capi::g_layout != nullptr
                                     ? g_registry.build_from_layout(*capheap::capi::g_layout)
                                     : capheap::Status::kOk;
  // heap_caps_init is the initialisation: mark ready unless ensure_init is running it right now
  // (which turns the fast path on when it has finished). Already ready (a heap_caps_* call before
  // heap_caps_init found no layout and no heaps): the fast path opens here too.
  int expected = 0;
  if (__atomic_compare_exchange_n(&capheap::capi::g_init_state, &expected, 2, false,
                                  __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE) ||
      expected == 2)
    g_registry.set_fast_path(true);
}

void heap_caps_enable_nonos_stack_heaps(void) {
  ensure_init();
  g_registry.enable_startup_stack_heaps();
}

esp_err_t heap_caps_add_region_with_caps(const uint32_t caps[], intptr_t start, intptr_t end) {
  ensure_init();
  // ESP-IDF compares the bounds as the signed intptr_t they are (spec §1.2: end <= start is
  // ESP_ERR_INVALID_ARG): a negative end (0x80000000 and above on a 32-bit target) lies below a
  // positive start. The registry compares addresses unsigned, so this check is made here; the
  // registry refuses the other invalid arguments (caps NULL, a bound 0) with the same code.
  if (end <= start) return ESP_ERR_INVALID_ARG;
  // Before heap_caps_init no heap exists, and ESP-IDF allocates the new heap's descriptor from an
  // INTERNAL|8BIT heap: ESP_ERR_NO_MEM (argument errors first). heap_caps_init would forget it.
  if (!capheap::capi::g_heaps_built && caps != nullptr && start != 0 && end != 0)
    return ESP_ERR_NO_MEM;
  return static_cast<esp_err_t>(g_registry.add_region(caps, static_cast<std::uintptr_t>(start),
                                                      static_cast<std::uintptr_t>(end)));
}

esp_err_t heap_caps_add_region(intptr_t start, intptr_t end) {
  if (start == 0) return ESP_ERR_INVALID_ARG;
  ensure_init();
  uint32_t caps[CAPHEAP_PRIORITY_LEVELS];
  if (!g_registry.layout_caps_at(static_cast<std::uintptr_t>(start), caps))
    return ESP_ERR_NOT_FOUND;
  return heap_caps_add_region_with_caps(caps, start, end);
}

esp_err_t capheap_reserve_internal_pool(size_t size) {
  if (size == 0) return ESP_ERR_INVALID_ARG;
  ensure_init();
  // ESP-IDF's PSRAM driver's masks: nothing at priority 0, so requests that internal RAM serves at
  // priority 0 (INTERNAL|8BIT) use that RAM before the pool.
  const uint32_t caps[CAPHEAP_PRIORITY_LEVELS] = {0, MALLOC_CAP_DMA | MALLOC_CAP_INTERNAL,
                                                  MALLOC_CAP_8BIT | MALLOC_CAP_32BIT};
  // Like ESP-IDF, take the largest chunks available until exactly `size` bytes are set aside; each
  // chunk becomes a heap (its control structure counts toward the size, as on the device).
  constexpr size_t kSmallestChunk = 512;
  size_t left = size;
  while (left > 0) {
    size_t chunk =
        heap_caps_get_largest_free_block(MALLOC_CAP_DMA | MALLOC_CAP_INTERNAL) & ~size_t(3);
    if (chunk > left) chunk = (left + 3) & ~size_t(3);
    if (chunk < kSmallestChunk && chunk < left) return ESP_ERR_NO_MEM;
    void *mem = g_registry.allocate(chunk, Caps(MALLOC_CAP_DMA | MALLOC_CAP_INTERNAL));
    if (mem == nullptr) return ESP_ERR_NO_MEM;
    const intptr_t s = reinterpret_cast<intptr_t>(mem);
    const esp_err_t err = heap_caps_add_region_with_caps(caps, s, s + static_cast<intptr_t>(chunk));
    if (err != ESP_OK) {
      g_registry.deallocate(mem);
      return err;
    }
    left = chunk >= left ? 0 : left - chunk;
  }
  return ESP_OK;
}

void capheap_set_abort_on_alloc_failure(bool enable) {
  __atomic_store_n(&capheap::capi::g_abort_on_failure, enable, __ATOMIC_RELAXED);
}

esp_err_t heap_caps_register_failed_alloc_callback(esp_alloc_failed_hook_t callback) {
  if (callback == nullptr) return ESP_ERR_INVALID_ARG;
  __atomic_store_n(&capheap::capi::g_failed_hook, callback, __ATOMIC_RELEASE);
  return ESP_OK;
}

void heap_caps_malloc_extmem_enable(size_t limit) {
  // ESP-IDF's int: the low 32 bits as a signed value, so 0xFFFFFFFF is -1 ("disabled") on a
  // 64-bit host as on the chip.
  const auto as_int = static_cast<std::int32_t>(static_cast<std::uint32_t>(limit));
  __atomic_store_n(&capheap::capi::g_extmem_limit, static_cast<long>(as_int), __ATOMIC_RELAXED);
}

// ================================================================================================
// Allocation
//
// Each public function emits exactly one event (events.hpp) for what it did, with its own caller;
// the *_impl helpers it composes emit nothing.
// ================================================================================================

}  // extern "C"

namespace {

using capheap::capi::AllocEvent;
using capheap::capi::EventOp;
using capheap::capi::events_on;
using capheap::capi::Released;

#define CAPHEAP_CALLER() __builtin_return_address(0)
// The same, as a callable that reads the return address only when called (on a slow path): inlined
// even at -O0, so that it reads the entry point's own return address.
#define CAPHEAP_CALLER_FN()             \
  []() __attribute__((always_inline)) { \
    return CAPHEAP_CALLER();            \
  }

// ESP-IDF's CONFIG_HEAP_USE_HOOKS (spec §1.1, §4.8): the weak esp_heap_trace_alloc_hook runs after
// every successful allocation (malloc, calloc, aligned, realloc, in place or moved) with the user
// pointer, the requested size and the caps the successful attempt used, adjusted as ESP-IDF
// adjusts them (EXEC adds 32BIT); esp_heap_trace_free_hook
// runs after every free of a non-NULL block, including realloc to size 0 and the old block of a
// realloc that moved (ESP-IDF's order: the alloc hook of the new block, then the free hook of the
// old one, since the new block is allocated and filled before the old one is freed). Independent of
// the event sinks; without CAPHEAP_USE_HOOKS (default in capi/events.hpp) these compile to nothing.
#if CAPHEAP_USE_HOOKS
// (ESP-IDF passes the caps as adjusted before the walk: EXEC adds 32BIT, spec §3.3; aligned
// allocations, which have no EXEC special case (spec §1.1), pass them as requested.)
__attribute__((always_inline)) inline void hook_alloc(void *p, size_t size, uint32_t caps,
                                                      bool aligned = false) {
  if (p != nullptr)
    esp_heap_trace_alloc_hook(
        p, size, (caps & MALLOC_CAP_EXEC) != 0 && !aligned ? caps | MALLOC_CAP_32BIT : caps);
}
__attribute__((always_inline)) inline void hook_free(void *p) {
  if (p != nullptr) esp_heap_trace_free_hook(p);
}
#else
__attribute__((always_inline)) inline void hook_alloc(void *, size_t, uint32_t, bool = false) {}
__attribute__((always_inline)) inline void hook_free(void *) {}
#endif

void *realloc_base_impl(void *ptr, size_t size, uint32_t caps) {
  ensure_init();
  if (size > kHeapSizeMax) return nullptr;
  return g_registry.reallocate(ptr, size, Caps(caps));
}

void *aligned_base_impl(size_t alignment, size_t size, uint32_t caps) {
  ensure_init();
  // (No size check: the registry refuses sizes above kHeapSizeMax without side effects.)
  return g_registry.allocate_aligned(alignment, size, Caps(caps));
}

/// heap_caps_aligned_alloc without its event: its argument rules, then the failure report, which
/// heap_caps_aligned_calloc makes under the same name (as ESP-IDF).
CAPHEAP_NOINLINE void *aligned_alloc_reporting(size_t alignment, size_t size, uint32_t caps) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0 || size == 0) return nullptr;
  void *p = aligned_base_impl(alignment, size, caps);
  if (p == nullptr) report_failure(size, caps, "heap_caps_aligned_alloc");
  return p;
}

void *calloc_base_impl(size_t n, size_t size, uint32_t caps) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) return nullptr;
  void *p = capheap::capi::malloc_base_call(total, caps);
  if (p != nullptr) __builtin_memset(p, 0, total);
  return p;
}

/// The _prefer variants' loop: tries each of the `num` caps masks of `ap` in order (realloc of ptr
/// if `realloc`, else malloc) until one succeeds; `last` receives the caps tried last
/// (MALLOC_CAP_DEFAULT if num is 0), which ESP-IDF reports to the failure callback.
void *prefer_loop(bool realloc, void *ptr, size_t size, size_t num, va_list ap, uint32_t &last) {
  last = MALLOC_CAP_DEFAULT;
  void *p = nullptr;
  while (num-- > 0 && p == nullptr) {
    last = va_arg(ap, uint32_t);
    p = realloc ? realloc_base_impl(ptr, size, last) : capheap::capi::malloc_base_call(size, last);
  }
  return p;
}

CAPHEAP_COLD void emit_alloc(EventOp op, void *p, size_t size, size_t alignment, uint32_t caps,
                             void *caller) {
  capheap::capi::emit(AllocEvent{op, p, nullptr, size, alignment, caps, caller}, Released{});
}

__attribute__((always_inline)) inline void note_alloc(EventOp op, void *p, size_t size,
                                                      size_t alignment, uint32_t caps,
                                                      void *caller) {
  if (events_on() && p != nullptr) {
    if (capheap::capi::recorder_only())
      capheap::capi::recorder_on_alloc(op, p, size, alignment, caps, caller);
    else
      emit_alloc(op, p, size, alignment, caps, caller);
  }
  hook_alloc(p, size, caps, alignment != 0);  // (alignment: the aligned functions only)
}

/// heap_caps_malloc_prefer (n 1, EventOp::kMalloc) and heap_caps_calloc_prefer (kCalloc, which
/// zeroes the block): one body, since malloc_prefer follows calloc_prefer's rules with n = 1 (size
/// 0 is refused without a report either way).
CAPHEAP_NOINLINE void *prefer_alloc(size_t n, size_t size, size_t num, va_list ap, EventOp op,
                                    const char *function, void *caller) {
  size_t total;  // n * size, wrapped if it overflows
  const bool refused = __builtin_mul_overflow(n, size, &total) || total == 0;
  uint32_t caps = MALLOC_CAP_DEFAULT;
  void *p = nullptr;
  if (!refused) {
    p = prefer_loop(false, nullptr, total, num, ap, caps);
  } else {
    // As heap_caps_calloc (spec §1.1, "same over calloc"): every caps' base call refuses an
    // overflowing or zero n * size, and the report tests size > 0 with the caps tried last.
    while (num-- > 0)
      caps = va_arg(ap, uint32_t);
  }
  if (p == nullptr) {
    if (size > 0) report_failure(total, caps, function);
    return p;
  }
  if (op == EventOp::kCalloc) __builtin_memset(p, 0, total);
  note_alloc(op, p, total, 0, caps, caller);
  return p;
}

CAPHEAP_COLD void emit_free(void *ptr, void *caller) {
  capheap::capi::emit(AllocEvent{EventOp::kFree, ptr, nullptr, 0, 0, 0, caller},
                      capheap::capi::capture_release(ptr));
}

/// free with its event (events on): out of line, so that the common path below keeps no values
/// across a call and ends in a tail call.
CAPHEAP_NOINLINE void free_reporting(void *ptr, void *caller) {
  if (ptr != nullptr) {
    if (capheap::capi::recorder_only())
      capheap::capi::recorder_on_free(ptr, caller);
    else
      emit_free(ptr, caller);
  }
  g_registry.deallocate(ptr);
}

template <class CallerFn>
__attribute__((always_inline)) inline void free_with_event(void *ptr, CallerFn &&caller) {
#if CAPHEAP_USE_HOOKS
  if (events_on())
    free_reporting(ptr, caller());
  else
    g_registry.deallocate(ptr);
  hook_free(ptr);
#elif !CAPHEAP_THEN_TABLES
  if (events_on()) return free_reporting(ptr, caller());
  g_registry.deallocate(ptr);
#else
  // No event check on the common path: set_event_sink holds the registry's fast path off while
  // events are on, and the miss handler takes those frees (the recorder's, which passes what is
  // not its own to free_miss).
  g_registry.deallocate_then<capheap::capi::recorder_free_miss>(ptr, caller);
#endif
}

/// free_with_event out of line, for realloc to size 0 (one copy of the inline free path).
CAPHEAP_NOINLINE void free_cold(void *ptr, void *caller) {
  free_with_event(ptr, [caller] { return caller; });
}

/// heap_caps_malloc after the allocation when something is left to do: the failure report (not
/// for size 0, as ESP-IDF), the event, the hook.
CAPHEAP_NOINLINE void *malloc_finish(void *p, size_t size, uint32_t caps, void *caller) {
  if (p == nullptr) {
    if (size != 0) report_failure(size, caps, "heap_caps_malloc");
    return p;
  }
  note_alloc(EventOp::kMalloc, p, size, 0, caps, caller);
  return p;
}

#if CAPHEAP_USE_HOOKS
/// heap_caps_malloc with hooks (out of line: the common path keeps no frame).
CAPHEAP_NOINLINE void *malloc_reporting(size_t size, uint32_t caps, void *caller) {
  return malloc_finish(capheap::capi::malloc_base(size, caps), size, caps, caller);
}
#endif

/// heap_caps_malloc when the registry's fast path does not apply, is held off (events on) or its
/// first heap refused: the initialisation check, the general walk, the failure report (not for
/// size 0), the event. `caller` is null only after a refusal on the fast path, i.e. for a request
/// that began while events were off (it gets no event, as if it had finished before they began).
CAPHEAP_NOINLINE void *malloc_miss_general(capheap::Registry &reg, size_t size, Caps caps,
                                           unsigned tried, void *caller) {
  // Initialise before the event check: the host simulator's initialisation may itself turn
  // events on (CAPHEAP_TRACE_FILE installs the recorder), and the call that initialises is
  // recorded like every other.
  ensure_init();
  if (caller != nullptr && events_on()) return capheap::capi::malloc_events(size, caps, 0, caller);
  void *p = reg.allocate_general(size, caps, tried);
  if (p == nullptr && size != 0) report_failure(size, caps.bits(), "heap_caps_malloc");
  return p;
}

/// heap_caps_malloc when the registry's fast path does not apply, is held off (events on) or its
/// first heap refused (allocate_then's miss handler).
[[maybe_unused]] CAPHEAP_NOINLINE void *malloc_miss(capheap::Registry &reg, size_t size, Caps caps,
                                                    unsigned tried, void *caller) {
#if CAPHEAP_THEN_TABLES && !CAPHEAP_USE_HOOKS
  // The recorder alone: the registry's first choice, its locked call and the recording in one
  // chain of tail calls (no frame here: everything else is in malloc_miss_general).
  if (CAPHEAP_LIKELY(caller != nullptr && capheap::capi::recorder_only()))
    return capheap::capi::recorder_malloc(reg, size, caps, caller);
#endif
  return malloc_miss_general(reg, size, caps, tried, caller);
}

/// heap_caps_free while the registry holds its fast path off (events were on when it looked) and
/// the recorder is not the only sink.
[[maybe_unused]] CAPHEAP_NOINLINE void free_miss(void *ptr, void *caller) {
  if (events_on()) return free_reporting(ptr, caller);
  g_registry.deallocate(ptr);
}

Released capture_if_on(void *ptr) {
  return events_on() ? capheap::capi::capture_release(ptr) : Released{};
}

void note_realloc(void *old_ptr, void *p, size_t size, uint32_t caps, const Released &pre,
                  void *caller) {
  if (events_on() && p != nullptr)
    capheap::capi::emit(AllocEvent{EventOp::kRealloc, p, old_ptr, size, 0, caps, caller}, pre);
  // A realloc that moved allocates the new block before it frees the old one (spec §1.1), so the
  // new block's alloc hook runs before the old block's free hook.
  hook_alloc(p, size, caps);
  if (p != nullptr && p != old_ptr) hook_free(old_ptr);
}

}  // namespace

namespace capheap {
namespace capi {

/// heap_caps_malloc while events are on: the allocation, then its event (or the failure report).
/// `tried`: 0, or 1 + the record of a heap that refused this request already.
void *malloc_events(std::size_t size, Caps caps, unsigned tried, void *caller) noexcept {
  // (A refusal comes from the registry's inline path, which runs only once initialised.)
  void *p = tried != 0 ? g_registry.allocate_general(size, caps, tried)
                       : capheap::capi::malloc_base(size, caps.bits());
  // The recorder alone (a field build's usual case): straight to it (a tail call).
  if (CAPHEAP_LIKELY(p != nullptr && capheap::capi::recorder_only() && !CAPHEAP_USE_HOOKS))
    return capheap::capi::recorder_on_malloc(p, size, caps.bits(), caller);
  return malloc_finish(p, size, caps.bits(), caller);
}

#if CAPHEAP_THEN_TABLES
// (Entry points for recorder.cpp; heap_caps_malloc's own template argument is the local one, so
// that the registry's out-of-line half stays local to this file and specialised for g_registry.)
void *heap_caps_malloc_miss(std::size_t size, Caps caps, void *caller) noexcept {
  return malloc_miss(g_registry, size, caps, 0, caller);
}

void heap_caps_free_miss(void *ptr, void *caller) noexcept {
  free_miss(ptr, caller);
}
#endif

}  // namespace capi
}  // namespace capheap

extern "C" {

#if CAPHEAP_USE_HOOKS
// Default (weak) hooks: the application overrides them with its own definitions.
__attribute__((weak)) void esp_heap_trace_alloc_hook(void *, size_t, uint32_t) {}
__attribute__((weak)) void esp_heap_trace_free_hook(void *) {}
#endif

// ---- Base allocation (no failure reporting) ----------------------------------------------------

void *heap_caps_malloc_base(size_t size, uint32_t caps) {
  void *p = capheap::capi::malloc_base_call(size, caps);
  note_alloc(EventOp::kMalloc, p, size, 0, caps, CAPHEAP_CALLER());
  return p;
}

void *heap_caps_realloc_base(void *ptr, size_t size, uint32_t caps) {
#if CAPHEAP_WITH_EVENTS || CAPHEAP_USE_HOOKS
  // Size 0 frees: with the free's event and hook (spec §4.6: traced as a free). (Without events and
  // hooks the registry's realloc frees it just the same.)
  if (ptr != nullptr && size == 0) {
    free_cold(ptr, CAPHEAP_CALLER());
    return nullptr;
  }
#endif
  const Released pre = capture_if_on(ptr);
  void *p = realloc_base_impl(ptr, size, caps);
  note_realloc(ptr, p, size, caps, pre, CAPHEAP_CALLER());
  return p;
}

void *heap_caps_aligned_alloc_base(size_t alignment, size_t size, uint32_t caps) {
  void *p = aligned_base_impl(alignment, size, caps);
  note_alloc(EventOp::kAlignedAlloc, p, size, alignment, caps, CAPHEAP_CALLER());
  return p;
}

void *heap_caps_calloc_base(size_t n, size_t size, uint32_t caps) {
  void *p = calloc_base_impl(n, size, caps);
  note_alloc(EventOp::kCalloc, p, n * size, 0, caps, CAPHEAP_CALLER());
  return p;
}

// ---- Public allocation -------------------------------------------------------------------------

HEAP_IRAM_ATTR void *heap_caps_malloc(size_t size, uint32_t caps) {
#if CAPHEAP_USE_HOOKS
  return malloc_reporting(size, caps, CAPHEAP_CALLER());
#elif !CAPHEAP_THEN_TABLES
  // Firmware built for size: the registry's plain inline fast path, then the event check.
  void *p = capheap::capi::malloc_base(size, caps);
  if (CAPHEAP_UNLIKELY(p == nullptr || events_on()))
    return malloc_finish(p, size, caps, CAPHEAP_CALLER());
  return p;
#else
  // The registry picks the first heap inline and tail-calls its locked engine call; malloc_miss
  // takes over when that heap refuses or the fast path does not apply, which includes every
  // request while events are on (set_event_sink holds the fast path off then).
  return g_registry.allocate_then<malloc_miss, capheap::capi::recorder_held_malloc>(
      size, Caps(caps), CAPHEAP_CALLER_FN());
#endif
}

HEAP_IRAM_ATTR void heap_caps_free(void *ptr) {
  // No initialisation here: before heap_caps_init no pointer can come from a heap, and the empty
  // registry reports it as outside every heap.
#if CAPHEAP_COMPACT
  // Firmware built for size: one copy of the free path (free_cold's), reached by a tail call.
  free_cold(ptr, CAPHEAP_CALLER());
#else
  free_with_event(ptr, CAPHEAP_CALLER_FN());
#endif
}

#if CAPHEAP_COMPACT
// The same function as heap_caps_free (same event, same caller): one body in firmware built for
// size.
void heap_caps_aligned_free(void *ptr) __attribute__((alias("heap_caps_free")));
#else
void heap_caps_aligned_free(void *ptr) {
  free_with_event(ptr, CAPHEAP_CALLER_FN());
}
#endif

HEAP_IRAM_ATTR void *heap_caps_realloc(void *ptr, size_t size, uint32_t caps) {
  if (ptr != nullptr && size == 0) {
    free_cold(ptr, CAPHEAP_CALLER());
    return nullptr;
  }
  if (ptr == nullptr && size == 0) return nullptr;
  const Released pre = capture_if_on(ptr);
  void *p = realloc_base_impl(ptr, size, caps);
  if (p == nullptr) report_failure(size, caps, __func__);
  note_realloc(ptr, p, size, caps, pre, CAPHEAP_CALLER());
  return p;
}

void *heap_caps_aligned_alloc(size_t alignment, size_t size, uint32_t caps) {
  void *p = aligned_alloc_reporting(alignment, size, caps);
  note_alloc(EventOp::kAlignedAlloc, p, size, alignment, caps, CAPHEAP_CALLER());
  return p;
}

void *heap_caps_aligned_calloc(size_t alignment, size_t n, size_t size, uint32_t caps) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) return nullptr;
  void *p = aligned_alloc_reporting(alignment, total, caps);
  if (p == nullptr) return p;
  __builtin_memset(p, 0, total);
  note_alloc(EventOp::kCalloc, p, total, alignment, caps, CAPHEAP_CALLER());
  return p;
}

void *heap_caps_calloc(size_t n, size_t size, uint32_t caps) {
  size_t total;  // n * size, wrapped if it overflows
  const bool overflow = __builtin_mul_overflow(n, size, &total);
  void *p = overflow || total == 0 ? nullptr : calloc_base_impl(n, size, caps);
  if (p != nullptr) {
    note_alloc(EventOp::kCalloc, p, total, 0, caps, CAPHEAP_CALLER());
  } else if (size > 0) {
    // ESP-IDF reports every NULL result on `size > 0` (spec §1.1): calloc(0, n) and an overflowing
    // n * size (the base call refused it) run the callback too, with n * size as computed.
    report_failure(total, caps, __func__);
  }
  return p;
}

void *heap_caps_malloc_default(size_t size) {
  const long limit = __atomic_load_n(&capheap::capi::g_extmem_limit, __ATOMIC_RELAXED);
  if (size == 0) return nullptr;
  uint32_t caps;
  void *p;
  if (limit == capheap::capi::kExtmemDisabled) {
    caps = MALLOC_CAP_DEFAULT | MALLOC_CAP_INTERNAL;
    p = capheap::capi::malloc_base(size, caps);
    if (p == nullptr) {
      report_failure(size, caps, "heap_caps_malloc");
      return p;
    }
  } else {
    caps = size <= static_cast<size_t>(limit) ? MALLOC_CAP_DEFAULT | MALLOC_CAP_INTERNAL
                                              : MALLOC_CAP_DEFAULT | MALLOC_CAP_SPIRAM;
    p = capheap::capi::malloc_base(size, caps);
    if (p == nullptr) {
      caps = MALLOC_CAP_DEFAULT;
      p = capheap::capi::malloc_base(size, caps);
    }
    if (p == nullptr) {
      report_failure(size, MALLOC_CAP_DEFAULT, __func__);
      return p;
    }
  }
  note_alloc(EventOp::kMalloc, p, size, 0, caps, CAPHEAP_CALLER());
  return p;
}

void *heap_caps_realloc_default(void *ptr, size_t size) {
  const long limit = __atomic_load_n(&capheap::capi::g_extmem_limit, __ATOMIC_RELAXED);
  if (ptr != nullptr && size == 0) {
    free_with_event(ptr, CAPHEAP_CALLER_FN());
    return nullptr;
  }
  if (ptr == nullptr && size == 0) return nullptr;
  const Released pre = capture_if_on(ptr);
  uint32_t caps;
  void *p;
  if (limit == capheap::capi::kExtmemDisabled) {
    caps = MALLOC_CAP_DEFAULT | MALLOC_CAP_INTERNAL;
    p = realloc_base_impl(ptr, size, caps);
    if (p == nullptr) report_failure(size, caps, "heap_caps_realloc");
  } else {
    caps = size <= static_cast<size_t>(limit) ? MALLOC_CAP_DEFAULT | MALLOC_CAP_INTERNAL
                                              : MALLOC_CAP_DEFAULT | MALLOC_CAP_SPIRAM;
    p = realloc_base_impl(ptr, size, caps);
    if (p == nullptr) {
      caps = MALLOC_CAP_DEFAULT;
      p = realloc_base_impl(ptr, size, caps);
    }
    if (p == nullptr) report_failure(size, MALLOC_CAP_DEFAULT, __func__);
  }
  note_realloc(ptr, p, size, caps, pre, CAPHEAP_CALLER());
  return p;
}

void *heap_caps_aligned_alloc_default(size_t alignment, size_t size) {
  const long limit = __atomic_load_n(&capheap::capi::g_extmem_limit, __ATOMIC_RELAXED);
  if (alignment == 0 || (alignment & (alignment - 1)) != 0 || size == 0) return nullptr;
  uint32_t caps;
  void *p;
  if (limit == capheap::capi::kExtmemDisabled) {
    caps = MALLOC_CAP_DEFAULT | MALLOC_CAP_INTERNAL;
    p = aligned_base_impl(alignment, size, caps);
    if (p == nullptr) report_failure(size, caps, "heap_caps_aligned_alloc");
  } else {
    caps = size <= static_cast<size_t>(limit) ? MALLOC_CAP_DEFAULT | MALLOC_CAP_INTERNAL
                                              : MALLOC_CAP_DEFAULT | MALLOC_CAP_SPIRAM;
    p = aligned_base_impl(alignment, size, caps);
    if (p == nullptr) {
      caps = MALLOC_CAP_DEFAULT;
      p = aligned_base_impl(alignment, size, caps);
    }
    if (p == nullptr) report_failure(size, MALLOC_CAP_DEFAULT, __func__);
  }
  note_alloc(EventOp::kAlignedAlloc, p, size, alignment, caps, CAPHEAP_CALLER());
  return p;
}

void *heap_caps_malloc_prefer(size_t size, size_t num, ...) {
  va_list ap;
  va_start(ap, num);
  void *p = prefer_alloc(1, size, num, ap, EventOp::kMalloc, __func__, CAPHEAP_CALLER());
  va_end(ap);
  return p;
}

void *heap_caps_realloc_prefer(void *ptr, size_t size, size_t num, ...) {
  // size 0 frees on the first attempt; with no caps (num 0) there is none, and ptr stays.
  if (ptr != nullptr && size == 0 && num != 0) {
    free_cold(ptr, CAPHEAP_CALLER());
    return nullptr;
  }
  const Released pre = capture_if_on(ptr);
  va_list ap;
  va_start(ap, num);
  uint32_t caps;
  void *p = prefer_loop(true, ptr, size, num, ap, caps);
  va_end(ap);
  if (p == nullptr && size > 0) report_failure(size, caps, __func__);
  note_realloc(ptr, p, size, caps, pre, CAPHEAP_CALLER());
  return p;
}

void *heap_caps_calloc_prefer(size_t n, size_t size, size_t num, ...) {
  va_list ap;
  va_start(ap, num);
  void *p = prefer_alloc(n, size, num, ap, EventOp::kCalloc, __func__, CAPHEAP_CALLER());
  va_end(ap);
  return p;
}

// ================================================================================================
// Failure explanation
// ================================================================================================

namespace {

/// Minimal bounded text builder (no libc formatting in this layer).
struct Text {
  char *buf;
  size_t cap;
  size_t len = 0;
  void put(char ch) {
    if (len + 1 < cap) buf[len] = ch;
    ++len;
  }
  void str(const char *s) {
    while (*s != '\0')
      put(*s++);
  }
  void num(size_t v) {
    char d[24];
    int n = 0;
    do {
      d[n++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    while (n > 0)
      put(d[--n]);
  }
  void hex(uint32_t v) {
    str("0x");
    for (int i = 7; i >= 0; --i)
      put("0123456789abcdef"[(v >> (4 * i)) & 0xFu]);
  }
  void caps_names(uint32_t caps) {
    bool first = true;
    uint32_t rest = caps;
    for (const capheap::CapName &n : capheap::kCapNames) {
      if ((rest & n.bit) == 0) continue;  // (rest: an alias of a printed bit is skipped)
      if (!first) put('|');
      str(n.name);
      first = false;
      rest &= ~n.bit;
    }
    if (rest != 0) {
      if (!first) put('|');
      hex(rest);
    }
    if (caps == 0) str("none");
  }
};

}  // namespace

size_t capheap_describe_alloc_failure(size_t size, uint32_t caps, char *buf, size_t len) {
  ensure_init();
  Text t{buf, len};
  t.str("heap_caps_malloc(");
  t.num(size);
  t.str(", ");
  t.caps_names(caps);
  t.str("): ");
  if (size == 0) {
    t.str("size 0 always returns NULL");
  } else if (caps == 0) {
    t.str("no capability requested (caps 0 matches no heap)");
  } else if ((caps & MALLOC_CAP_INVALID) != 0) {
    t.str("MALLOC_CAP_INVALID requested");
  } else if ((caps & MALLOC_CAP_EXEC) != 0 && (caps & (MALLOC_CAP_8BIT | MALLOC_CAP_DMA)) != 0) {
    t.str("EXEC cannot be combined with 8BIT or DMA");
  } else if (size > kHeapSizeMax) {
    t.str("larger than any heap can be");
  } else {
    uint32_t eff = caps;
    if ((eff & MALLOC_CAP_EXEC) != 0) eff |= MALLOC_CAP_32BIT;
    Caps adj(eff);
    (void)g_registry.hw_alignment(adj);
    size_t heaps = 0, free_total = 0, largest = 0;
    for (unsigned i = 0; i < g_registry.count(); ++i) {
      if (!g_registry.heap_matches(i, adj)) continue;
      ++heaps;
      const HeapView v = g_registry.view(i);
      free_total += v.heap.free_bytes();
      const size_t l = v.heap.largest_free_block();
      if (l > largest) largest = l;
    }
    if (heaps == 0) {
      t.str("no heap has all of ");
      t.caps_names(adj.bits());
    } else if (largest >= size + ((eff & MALLOC_CAP_EXEC) != 0 ? 4 : 0)) {
      t.str("would succeed now (largest matching free block ");
      t.num(largest);
      t.str(" bytes)");
    } else {
      t.str("largest free block in the ");
      t.num(heaps);
      t.str(heaps == 1 ? " matching heap is " : " matching heaps is ");
      t.num(largest);
      t.str(" bytes, total free ");
      t.num(free_total);
      t.str(free_total >= size ? " bytes: enough in total, but split across blocks and heaps"
                               : " bytes: not enough memory with these capabilities");
    }
  }
  if (len > 0) buf[t.len < len ? t.len : len - 1] = '\0';
  return t.len;
}

// ================================================================================================
// Queries
// ================================================================================================

}  // extern "C"

namespace {

/// The one pass over the heap list of the queries, reports and walkers: fn(view, ctx) for every
/// registered heap with every bit of caps, in list order (MALLOC_CAP_INVALID: none). Initialises on
/// first use.
using HeapFn = void (*)(const HeapView &v, void *ctx);
CAPHEAP_NOINLINE void each_heap(uint32_t caps, HeapFn fn, void *ctx) {
  ensure_init();
  for (unsigned i = 0; i < g_registry.count(); ++i) {
    const HeapView v = g_registry.view(i);
    if (v.has_caps(caps)) fn(v, ctx);
  }
}

/// each_heap with the integrity, dump and walk functions' rule: MALLOC_CAP_INVALID (their _all
/// forms) selects every registered heap.
void each_queried_heap(uint32_t caps, HeapFn fn, void *ctx) {
  each_heap(capheap::capi::query_caps(caps), fn, ctx);
}

/// heap_caps_get_info's and heap_caps_print_heap_info's pass: adds each heap's figures, read under
/// its lock, to *total (the largest free block is the largest of all), printing the heap's two
/// report lines first if `print`.
CAPHEAP_NOINLINE void info_pass(uint32_t caps, multi_heap_info_t *total, bool print) {
  struct Ctx {
    multi_heap_info_t *total;
    bool print;
  } ctx{total, print};
  each_heap(
      caps,
      [](const HeapView &v, void *c) {
        const Ctx &cx = *static_cast<const Ctx *>(c);
        capheap::HeapInfo hi;
        g_registry.with_heap_locked(v, [&] { hi = v.heap.info(); });
        if (cx.print) {
          capheap_port_printf(
              "  At 0x%08x len %d free %d allocated %d min_free %d\n",
              display32(display_address(reinterpret_cast<void *>(v.start))),
              static_cast<int>(v.end - v.start), static_cast<int>(hi.total_free_bytes),
              static_cast<int>(hi.total_allocated_bytes), static_cast<int>(hi.minimum_free_bytes));
          capheap_port_printf(
              "    largest_free_block %d alloc_blocks %d free_blocks %d total_blocks %d\n",
              static_cast<int>(hi.largest_free_block), static_cast<int>(hi.allocated_blocks),
              static_cast<int>(hi.free_blocks), static_cast<int>(hi.total_blocks));
        }
        multi_heap_info_t &t = *cx.total;
        t.total_free_bytes += hi.total_free_bytes;
        t.total_allocated_bytes += hi.total_allocated_bytes;
        t.minimum_free_bytes += hi.minimum_free_bytes;
        t.allocated_blocks += hi.allocated_blocks;
        t.free_blocks += hi.free_blocks;
        t.total_blocks += hi.total_blocks;
        if (hi.largest_free_block > t.largest_free_block)
          t.largest_free_block = hi.largest_free_block;
      },
      &ctx);
}

/// Validates one heap under its lock and prints what is wrong (print_errors); true if intact.
bool check_heap(const HeapView &v, bool print_errors) {
  capheap::Validation res;
  g_registry.with_heap_locked(v, [&] { res = v.heap.validate(); });
  if (!res.ok() && print_errors)
    capheap::capi::print_corruption(res, reinterpret_cast<void *>(v.start), true);
  return res.ok();
}

enum class Sum { kTotal, kFree, kMinimumFree };

/// The sum of one figure over the heaps matching caps.
size_t sum_heaps(uint32_t caps, Sum what) {
  struct Ctx {
    Sum what;
    size_t total;
  } ctx{what, 0};
  return g_registry.consistent([&] {
    ctx.total = 0;
    each_heap(
        caps,
        [](const HeapView &v, void *c) {
          Ctx &cx = *static_cast<Ctx *>(c);
          cx.total += cx.what == Sum::kTotal  ? v.end - v.start
                      : cx.what == Sum::kFree ? v.heap.free_bytes()
                                              : v.heap.minimum_free_bytes();
        },
        &ctx);
    return ctx.total;
  });
}
}  // namespace

extern "C" {

// The sums below run as one consistent pass over the heap list (Registry::consistent): a heap added
// meanwhile makes the pass start again instead of being counted twice or not at all.

size_t heap_caps_get_total_size(uint32_t caps) {
  return sum_heaps(caps, Sum::kTotal);
}

size_t heap_caps_get_free_size(uint32_t caps) {
  return sum_heaps(caps, Sum::kFree);
}

size_t heap_caps_get_minimum_free_size(uint32_t caps) {
  return sum_heaps(caps, Sum::kMinimumFree);
}

void heap_caps_get_info(multi_heap_info_t *info, uint32_t caps) {
  if (info == nullptr) return;
  g_registry.consistent([&] {
    *info = multi_heap_info_t{};
    info_pass(caps, info, false);
    return 0;
  });
}

size_t heap_caps_get_largest_free_block(uint32_t caps) {
  multi_heap_info_t info;
  heap_caps_get_info(&info, caps);
  return info.largest_free_block;
}

void heap_caps_print_heap_info(uint32_t caps) {
  ensure_init();
  multi_heap_info_t total{};
  capheap_port_printf("Heap summary for capabilities 0x%08X:\n", static_cast<unsigned>(caps));
  info_pass(caps, &total, true);
  capheap_port_printf("  Totals:\n");
  capheap_port_printf(
      "    free %d allocated %d min_free %d largest_free_block %d\n",
      static_cast<int>(total.total_free_bytes), static_cast<int>(total.total_allocated_bytes),
      static_cast<int>(total.minimum_free_bytes), static_cast<int>(total.largest_free_block));
}

esp_err_t heap_caps_monitor_local_minimum_free_size_start(void) {
  ensure_init();
  using capheap::capi::g_monitor;
  using capheap::capi::g_monitor_count;
  if (g_monitor == nullptr) {
    const unsigned n = g_registry.count();
    g_monitor = static_cast<capheap::capi::MonitorEntry *>(heap_caps_aligned_alloc_base(
        alignof(capheap::capi::MonitorEntry),
        sizeof(capheap::capi::MonitorEntry) * (n == 0 ? 1 : n), MALLOC_CAP_DEFAULT));
    if (g_monitor == nullptr) return ESP_ERR_NO_MEM;
    g_monitor_count = n;
    for (unsigned i = 0; i < n; ++i) {
      g_monitor[i].heap = g_registry.view(i).heap;
      g_monitor[i].saved_min = ~size_t(0);
    }
  }
  capheap::capi::monitor_pass(true);
  return ESP_OK;
}

esp_err_t heap_caps_monitor_local_minimum_free_size_stop(void) {
  using capheap::capi::g_monitor;
  using capheap::capi::g_monitor_count;
  if (g_monitor == nullptr) return ESP_FAIL;
  capheap::capi::monitor_pass(false);
  capheap::capi::MonitorEntry *m = g_monitor;
  g_monitor = nullptr;
  g_monitor_count = 0;
  heap_caps_free(m);
  return ESP_OK;
}

// ================================================================================================
// Integrity, dump, walk
// ================================================================================================

bool heap_caps_check_integrity(uint32_t caps, bool print_errors) {
  // Bit 0: print errors; bit 1: a heap is damaged.
  unsigned state = print_errors ? 1u : 0u;
  each_queried_heap(
      caps,
      [](const HeapView &v, void *c) {
        unsigned &st = *static_cast<unsigned *>(c);
        if (!check_heap(v, (st & 1u) != 0)) st |= 2u;
      },
      &state);
  return (state & 2u) == 0;
}

bool heap_caps_check_integrity_all(bool print_errors) {
  return heap_caps_check_integrity(MALLOC_CAP_INVALID, print_errors);
}

bool heap_caps_check_integrity_addr(intptr_t addr, bool print_errors) {
  ensure_init();
  const HeapView v = g_registry.view_of(reinterpret_cast<void *>(addr));
  return v.heap && check_heap(v, print_errors);
}

bool capheap_check_integrity_step(capheap_integrity_cursor_t *cursor, size_t max_blocks,
                                  bool print_errors) {
  if (cursor == nullptr) return false;
  ensure_init();
  cursor->blocks_visited = 0;
  if (max_blocks == 0) max_blocks = 1;
  const unsigned n = g_registry.count();
  // Position of the heap being checked, or -1 if it is gone (or none yet).
  int at = -1;
  for (unsigned i = 0; cursor->heap != 0 && i < n; ++i)
    if (g_registry.view(i).start == cursor->heap && matches_query(i, cursor->caps)) {
      at = static_cast<int>(i);
      break;
    }
  const auto next_match = [&](int from) -> int {
    for (unsigned i = static_cast<unsigned>(from + 1); i < n; ++i)
      if (matches_query(i, cursor->caps)) return static_cast<int>(i);
    return -1;
  };
  const auto enter = [&](int i) {
    const HeapView v = g_registry.view(static_cast<unsigned>(i));
    cursor->heap = v.start;
    g_registry.with_heap_locked(v, [&] {
      Heap h = v.heap;
      h.restart_validate_step();
    });
  };
  if (at < 0) {
    at = next_match(-1);
    if (at < 0) return true;  // nothing to check
    enter(at);
  }
  // Several heaps may share one step's budget; each heap is visited under its own lock.
  unsigned heaps_seen = 0;
  while (cursor->blocks_visited < max_blocks && heaps_seen <= n) {
    ++heaps_seen;
    const unsigned i = static_cast<unsigned>(at);
    const HeapView v = g_registry.view(i);
    capheap::StepResult r;
    g_registry.with_heap_locked(v, [&] {
      Heap h = v.heap;
      r = h.validate_step(max_blocks - cursor->blocks_visited);
    });
    cursor->blocks_visited += r.visited;
    if (!r.validation.ok()) {
      if (print_errors)
        capheap::capi::print_corruption(r.validation, reinterpret_cast<void *>(v.start), true);
      return false;
    }
    if (!r.cycle_complete) break;
    at = next_match(at);
    if (at < 0) {
      ++cursor->cycles;
      at = next_match(-1);
    }
    enter(at);
  }
  return true;
}

void heap_caps_dump(uint32_t caps) {
  each_queried_heap(
      caps,
      [](const HeapView &v, void *) {
        g_registry.with_heap_locked(v, [&] {
          capheap_port_printf("Showing data for heap: 0x%08x \n",
                              display32(display_address(reinterpret_cast<void *>(v.start))));
          v.heap.for_each_block([](const capheap::BlockView &b) {
            capheap_port_printf("Block 0x%08x data, size: %d bytes, Free: %s \n",
                                display32(display_address(b.data)), static_cast<int>(b.size),
                                b.used ? "No" : "Yes");
            return true;
          });
        });
      },
      nullptr);
}

void heap_caps_dump_all(void) {
  heap_caps_dump(MALLOC_CAP_INVALID);
}

size_t heap_caps_get_allocated_size(void *ptr) {
  if (ptr == nullptr) return 0;
  ensure_init();
  return g_registry.allocated_size(ptr);
}

size_t heap_caps_get_containing_block_size(void *ptr) {
  ensure_init();
  const HeapView v = g_registry.view_of(ptr);
  if (!v.heap) {
    capheap_port_fail("pointer is outside heap areas", ptr, nullptr);
    return 0;
  }
  size_t size = 0;
  g_registry.with_heap_locked(v, [&] { capheap::capi::containing_block(v.heap, ptr, &size); });
  if (size == 0)
    capheap_port_fail("pointer is not inside an allocated block", ptr,
                      reinterpret_cast<void *>(v.start));
  return size;
}

void heap_caps_walk(uint32_t caps, heap_caps_walker_cb_t walker_func, void *user_data) {
  if (walker_func == nullptr) {
    capheap_port_fail("heap_caps_walk: NULL walker", nullptr, nullptr);
    return;
  }
  struct Ctx {
    heap_caps_walker_cb_t fn;
    walker_heap_into_t heap;
    void *user;
  } ctx{walker_func, walker_heap_into_t{}, user_data};
  each_queried_heap(
      caps,
      [](const HeapView &v, void *c) {
        Ctx &cx = *static_cast<Ctx *>(c);
        cx.heap = walker_heap_into_t{static_cast<intptr_t>(v.start), static_cast<intptr_t>(v.end)};
        g_registry.with_heap_locked(v, [&] {
          capheap::capi::walk_blocks(
              v.heap,
              [](void *data, std::size_t size, bool used, void *u) -> bool {
                const Ctx *x = static_cast<const Ctx *>(u);
                return x->fn(x->heap, walker_block_info_t{data, size, used}, x->user);
              },
              &cx);
        });
      },
      &ctx);
}

void heap_caps_walk_all(heap_caps_walker_cb_t walker_func, void *user_data) {
  heap_caps_walk(MALLOC_CAP_INVALID, walker_func, user_data);
}

}  // extern "C"
