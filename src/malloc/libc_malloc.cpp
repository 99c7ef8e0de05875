// libc_malloc.cpp — the C library's allocation functions on top of heap_caps (ESP-IDF's
// components/newlib/heap.c mapping, reference spec §1.6), for firmware and for host processes.
//
// Linked into a program (capheap::malloc) or preloaded (capheap_malloc_preload, LD_PRELOAD), this
// file defines malloc, calloc, realloc, free, memalign, aligned_alloc, posix_memalign, valloc,
// pvalloc, malloc_usable_size and cfree, so that every allocation of the program — including those
// of the C library itself and of the C++ runtime (libstdc++'s operator new calls malloc, so
// operator new/delete need no routing of their own) — lands in the capability heaps:
//
//   malloc(n)              heap_caps_malloc_default(n)
//   calloc(n, s)           overflow check, heap_caps_malloc_default(n * s), zero fill
//   realloc(p, n)          heap_caps_realloc_default(p, n)
//   free(p), cfree(p)      heap_caps_free(p)
//   memalign(a, n)         heap_caps_aligned_alloc(a, n, MALLOC_CAP_DEFAULT); aligned_alloc too
//   posix_memalign(o,a,n)  n == 0: *o = NULL, returns 0; failure (a bad alignment included):
//                          returns ENOMEM, *o and errno kept; host: EINVAL first unless a is a
//                          power of two and a multiple of sizeof(void *) (POSIX, as glibc)
//   valloc, pvalloc        bare metal: malloc (ESP-IDF); host: page-aligned (see below)
//   malloc_usable_size(p)  the bytes p may hold (with poisoning: the requested size)
//
// Failures set errno to ENOMEM (EINVAL for a bad alignment), as POSIX asks; ESP-IDF leaves errno
// alone, which no conforming program can tell apart.
//
// ---- Bare metal (no glibc) --------------------------------------------------------------------
// Everything goes to heap_caps. The heaps must exist before the first allocation: the startup
// code calls capheap_set_layout + heap_caps_init (or sets the layout, and the first heap_caps_*
// call initialises). malloc(0) returns NULL and pointers are 4-byte aligned (ESP-IDF's behaviour).
// With newlib, the reentrant _malloc_r family is defined too (newlib's own functions call those),
// and with newlib or picolibc the malloc_trim / mallopt / mallinfo / malloc_stats stubs keep the C
// library's allocator out of the link (ESP-IDF does the same).
//
// ---- Host (glibc) ------------------------------------------------------------------------------
// The heaps are the simulated chip of capheap::host, which maps its memory and parses its layout
// (with std::string, JSON, file I/O — all allocating) on the first heap_caps_* call. The C and C++
// runtimes also allocate long before main. Hence two allocators coexist:
//
// * Bootstrap. Requests go to heap_caps only while the chip is initialised (capi::initialised():
//   heap_caps_init has completed) and has a MALLOC_CAP_DEFAULT heap; otherwise to glibc's own
//   allocator (__libc_malloc and friends, which glibc exports for exactly this purpose). A
//   constructor of this library (priority 101, before every application constructor) makes one
//   heap_caps_* call, which runs the simulator's automatic initialisation (capheap_host_autoinit:
//   CAPHEAP_CHIP & co.). While that runs the chip is "initialising", not initialised, so the
//   simulator's own allocations — and any other thread's — go to glibc: no recursion, no thread
//   waits for the initialisation from inside malloc. The allocation functions never start the
//   initialisation themselves, so the simulator may be (re)initialised explicitly at any time
//   (capheap_host_deinit + capheap_host_init: in between, and during the init, malloc uses glibc).
//   Allocations made before the constructor (the C and C++ runtimes' start-up) stay in glibc.
//   If the chip has no DEFAULT heap (capheap::host not linked and no layout set, or a layout
//   without DEFAULT memory), requests keep going to glibc. CAPHEAP_MALLOC=0 in the environment
//   keeps everything in glibc (an escape hatch).
// * Ownership. free, realloc and malloc_usable_size decide by address, not by phase: a pointer
//   inside a registered heap or an instruction-bus (EXEC) alias of the chip belongs to heap_caps,
//   anything else to glibc. So blocks made before the chip was ready can be freed at any time, and
//   a block stays with the allocator that made it (realloc of a glibc block stays in glibc).
// * Alignment. Host code relies on malloc's alignof(max_align_t) (16 bytes on x86-64/AArch64:
//   compilers vectorise on it). When the chip's DEFAULT heaps use a smaller granule (ESP-IDF's 4 is
//   the simulator's default), malloc uses heap_caps_aligned_alloc_default(16, n) — the same heap
//   policy, an aligned block; memalign & co. raise smaller alignments to 16. realloc that moves a
//   block to a misaligned address re-allocates it aligned (if that second allocation fails the
//   data is kept in the misaligned block rather than lost).
// * Zero sizes. malloc(0), calloc with a zero total, memalign(a, 0) and realloc(NULL, 0) return a
//   unique minimal block like glibc (host programs treat NULL as out of memory); realloc(p, 0)
//   frees p and returns NULL (both glibc and ESP-IDF). posix_memalign(o, a, 0) follows ESP-IDF.
// * valloc / pvalloc return page-aligned memory (pvalloc rounds the size up to pages), as host
//   programs expect; on bare metal they are malloc (ESP-IDF).
// * Thread safety. Every function is thread-safe: heap_caps_* lock each heap, glibc locks its
//   arenas, the routing state is a few atomics (the ownership lookup is the registry's lock-free
//   O(log heaps) search).
// * Sanitizers. AddressSanitizer and ThreadSanitizer intercept malloc themselves; this library
//   cannot be combined with them (the malloc tests are not built in sanitizer builds).
// * Limits. The chip is small (an ESP32 has ~300 KiB of DEFAULT memory; CAPHEAP_PSRAM adds
//   external RAM), so large programs run out of memory. capheap_host_deinit must not be called
//   while chip blocks are still in use (with malloc routed, that includes every std::string and
//   vector made since the chip was initialised: freeing one afterwards hands it to glibc).
//   fork(): the simulator's fork handlers give the child its own copy of the chip at the same
//   addresses (taken before fork under every heap's lock; the child re-initialises the locks), so
//   parent and child allocate independently (a shell's subshells and pipelines work: test
//   malloc_preload_forking_shell). With CAPHEAP_TRACE_FILE the recording stays the parent's.
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <dlfcn.h>
#include <malloc.h>
#include <unistd.h>

#include <atomic>
#elif __has_include(<malloc.h>)
#include <malloc.h>
#endif

#if defined(_NEWLIB_VERSION) && !defined(__PICOLIBC__)
#include <reent.h>
#endif

#include "capheap.h"
#include "capheap/caps.hpp"
#include "capi/capi_internal.hpp"
#include "esp_heap_caps.h"

#if defined(__GLIBC__)
// glibc's allocator under its internal names (exported by libc.so.6 since glibc 2.0, for allocators
// that wrap it). Not declared in any header.
extern "C" {
void *__libc_malloc(std::size_t size);
void *__libc_calloc(std::size_t n, std::size_t size);
void *__libc_realloc(void *ptr, std::size_t size);
void *__libc_memalign(std::size_t alignment, std::size_t size);
void __libc_free(void *ptr);
}
#endif

// The exception specification the C library's headers give these functions in C++: glibc declares
// them noexcept (__THROW), newlib and picolibc with a plain nothrow attribute.
#if defined(__GLIBC__)
#define CAPHEAP_LIBC_NOEXCEPT noexcept
#else
#define CAPHEAP_LIBC_NOEXCEPT
#endif

namespace {

using capheap::Caps;
using capheap::Registry;

bool valid_alignment(std::size_t a) noexcept {
  return a != 0 && (a & (a - 1)) == 0;
}

#if defined(__GLIBC__)

// ================================================================================================
// Host: routing between the simulated chip and glibc
// ================================================================================================

// Alignment every host malloc result must have.
constexpr std::size_t kHostAlign = alignof(std::max_align_t);

// Routing state, meaningful only while capheap::capi::initialised() holds: kChip once a chip with a
// DEFAULT heap has been seen; back to kUnknown whenever the chip is found not initialised (after
// capheap_host_deinit), so that the next chip is examined afresh.
enum : int { kUnknown = 0, kChip = 1 };
std::atomic<int> g_route{kUnknown};
// True if every DEFAULT heap's granule is at least kHostAlign (plain heap_caps_malloc_default
// results are then aligned enough). Set before g_route becomes kChip.
std::atomic<bool> g_granule_ok{false};
// CAPHEAP_MALLOC environment switch: -1 not read yet, 0 off (glibc only), 1 on.
std::atomic<int> g_enabled{-1};
std::atomic<bool> g_warned{false};

void write_stderr(const char *text) noexcept {
  const std::size_t len = std::strlen(text);
  if (::write(2, text, len) < 0) {
    // Nothing to do: the warning is best effort.
  }
}

bool routing_enabled() noexcept {
  int e = g_enabled.load(std::memory_order_relaxed);
  if (e < 0) {
    const char *v = std::getenv("CAPHEAP_MALLOC");  // getenv does not allocate
    e = (v != nullptr && (std::strcmp(v, "0") == 0 || std::strcmp(v, "off") == 0)) ? 0 : 1;
    g_enabled.store(e, std::memory_order_relaxed);
  }
  return e != 0;
}

// True if every registered DEFAULT heap hands out kHostAlign-aligned blocks.
bool default_granule_ok() noexcept {
  const Registry &r = capheap::capi::registry();
  for (unsigned i = 0; i < r.count(); ++i) {
    if (!r.heap_matches(i, Caps::default_())) continue;
    const capheap::HeapView v = r.view(i);
    if (v.registered && v.heap && v.heap.granule() < kHostAlign) return false;
  }
  return true;
}

// Slow path of use_chip(): the chip is initialised but not examined yet (or has no DEFAULT heap).
__attribute__((noinline)) bool examine_chip() noexcept {
  if (!routing_enabled()) return false;
  if (heap_caps_get_total_size(MALLOC_CAP_DEFAULT) == 0) {
    // Only worth a word when the simulator is linked (it aborts on a bad CAPHEAP_CHIP itself): a
    // layout without DEFAULT memory. Without it the program may still build heaps itself.
    if (capheap_host_autoinit != nullptr && !g_warned.exchange(true)) {
      write_stderr("capheap_malloc: the chip has no MALLOC_CAP_DEFAULT heap; malloc uses glibc\n");
    }
    return false;
  }
  g_granule_ok.store(default_granule_ok(), std::memory_order_relaxed);
  g_route.store(kChip, std::memory_order_release);
  return true;
}

// True if new requests go to the chip: it is initialised (not merely initialising — the
// simulator's own allocations during its initialisation land in glibc) and has a DEFAULT heap.
inline bool use_chip() noexcept {
  if (__builtin_expect(!capheap::capi::initialised(), 0)) {
    if (g_route.load(std::memory_order_relaxed) != kUnknown)
      g_route.store(kUnknown, std::memory_order_relaxed);
    return false;
  }
  if (__builtin_expect(g_route.load(std::memory_order_acquire) == kChip, 1)) return true;
  return examine_chip();
}

// True if p (not null) lies in the simulated chip's heaps or instruction aliases.
inline bool chip_owns(const void *p) noexcept {
  if (!capheap::capi::initialised()) return false;
  const Registry &r = capheap::capi::registry();
  return r.find_heap(p) >= 0 || r.is_iram_alias(p);
}

inline bool host_aligned(const void *p) noexcept {
  return (reinterpret_cast<std::uintptr_t>(p) & (kHostAlign - 1)) == 0;
}

// Initialises the chip before any user constructor runs (priority 101: the first application
// priority). Allocations made earlier (the C and C++ runtimes' own start-up) and those the
// simulator makes while it initialises went to glibc and stay there.
__attribute__((constructor(101))) void capheap_malloc_start() noexcept {
  if (!routing_enabled()) return;
  // Any heap_caps_* call runs the initialisation (capheap_host_autoinit) once.
  (void)heap_caps_get_total_size(MALLOC_CAP_DEFAULT);
  (void)use_chip();
}

std::size_t page_size() noexcept {
  static std::atomic<std::size_t> cached{0};
  std::size_t ps = cached.load(std::memory_order_relaxed);
  if (ps == 0) {
    const long v = ::sysconf(_SC_PAGESIZE);
    ps = v > 0 ? static_cast<std::size_t>(v) : 4096;
    cached.store(ps, std::memory_order_relaxed);
  }
  return ps;
}

// glibc's malloc_usable_size, for blocks glibc made. dlsym may allocate: that goes through malloc,
// never back here.
std::size_t libc_usable_size(void *p) noexcept {
  using Fn = std::size_t (*)(void *);
  static std::atomic<Fn> fn{nullptr};
  Fn f = fn.load(std::memory_order_acquire);
  if (f == nullptr) {
    f = reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, "malloc_usable_size"));
    if (f == nullptr) return 0;
    fn.store(f, std::memory_order_release);
  }
  return f(p);
}

// Chip allocation with malloc's policy and host alignment. n == 0 gives a minimal block.
void *chip_malloc(std::size_t n) noexcept {
  if (n == 0) n = 1;
  void *p = g_granule_ok.load(std::memory_order_relaxed)
                ? heap_caps_malloc_default(n)
                : heap_caps_aligned_alloc_default(kHostAlign, n);
  if (p == nullptr) errno = ENOMEM;
  return p;
}

// Chip realloc of a chip block p (not null) to n > 0 bytes, keeping host alignment.
void *chip_realloc(void *p, std::size_t n) noexcept {
  void *q = heap_caps_realloc_default(p, n);
  if (q == nullptr) {
    errno = ENOMEM;
    return nullptr;
  }
  if (host_aligned(q)) return q;
  // Moved to a granule-aligned address: move once more, to an aligned block.
  void *r = heap_caps_aligned_alloc_default(kHostAlign, n);
  if (r == nullptr) return q;  // keep the data; misaligned is better than lost
  std::memcpy(r, q, n);
  heap_caps_free(q);
  return r;
}

// memalign-style allocation: alignment already validated (power of two).
void *aligned_any(std::size_t alignment, std::size_t n) noexcept {
  if (alignment < kHostAlign) alignment = kHostAlign;
  if (n == 0) n = 1;
  if (!use_chip()) return __libc_memalign(alignment, n);
  void *p = heap_caps_aligned_alloc(alignment, n, MALLOC_CAP_DEFAULT);
  if (p == nullptr) errno = ENOMEM;
  return p;
}

#else  // !__GLIBC__

// ================================================================================================
// Bare metal: heap_caps only
// ================================================================================================

void *aligned_any(std::size_t alignment, std::size_t n) noexcept {
  void *p = heap_caps_aligned_alloc(alignment, n, MALLOC_CAP_DEFAULT);
  if (p == nullptr && n != 0) errno = ENOMEM;
  return p;
}

#endif  // __GLIBC__

}  // namespace

// ================================================================================================
// The C library's allocation functions
// ================================================================================================

extern "C" {

void *malloc(std::size_t size) CAPHEAP_LIBC_NOEXCEPT {
#if defined(__GLIBC__)
  if (!use_chip()) return __libc_malloc(size);
  return chip_malloc(size);
#else
  void *p = heap_caps_malloc_default(size);
  if (p == nullptr && size != 0) errno = ENOMEM;
  return p;
#endif
}

void free(void *ptr) CAPHEAP_LIBC_NOEXCEPT {
  if (ptr == nullptr) return;
#if defined(__GLIBC__)
  if (!chip_owns(ptr)) {
    __libc_free(ptr);
    return;
  }
#endif
  heap_caps_free(ptr);
}

void cfree(void *ptr) CAPHEAP_LIBC_NOEXCEPT {
  free(ptr);
}

void *calloc(std::size_t n, std::size_t size) CAPHEAP_LIBC_NOEXCEPT {
  std::size_t total;
  if (__builtin_mul_overflow(n, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
#if defined(__GLIBC__)
  if (!use_chip()) return __libc_calloc(n, size);
  void *p = chip_malloc(total);
#else
  void *p = heap_caps_malloc_default(total);
  if (p == nullptr && total != 0) errno = ENOMEM;
#endif
  if (p != nullptr) std::memset(p, 0, total);
  return p;
}

void *realloc(void *ptr, std::size_t size) CAPHEAP_LIBC_NOEXCEPT {
#if defined(__GLIBC__)
  if (ptr == nullptr) return malloc(size);
  if (!chip_owns(ptr)) return __libc_realloc(ptr, size);
  if (size == 0) {
    heap_caps_free(ptr);
    return nullptr;
  }
  return chip_realloc(ptr, size);
#else
  void *p = heap_caps_realloc_default(ptr, size);
  if (p == nullptr && size != 0) errno = ENOMEM;
  return p;
#endif
}

void *memalign(std::size_t alignment, std::size_t size) CAPHEAP_LIBC_NOEXCEPT {
  if (!valid_alignment(alignment)) {
    errno = EINVAL;
    return nullptr;
  }
  return aligned_any(alignment, size);
}

void *aligned_alloc(std::size_t alignment, std::size_t size) CAPHEAP_LIBC_NOEXCEPT {
  return memalign(alignment, size);
}

int posix_memalign(void **out, std::size_t alignment, std::size_t size) CAPHEAP_LIBC_NOEXCEPT {
#if defined(__GLIBC__)
  if (!valid_alignment(alignment) || alignment % sizeof(void *) != 0) return EINVAL;
#endif
  // Bare metal (ESP-IDF, spec §1.6): size 0 first, then heap_caps_aligned_alloc's result alone
  // (an alignment it refuses is ENOMEM like any failure; 1 and 2 are served).
  if (size == 0) {
    *out = nullptr;
    return 0;
  }
  const int saved = errno;
  void *p = aligned_any(alignment, size);
  errno = saved;  // posix_memalign reports through its result only
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}

void *valloc(std::size_t size) CAPHEAP_LIBC_NOEXCEPT {
#if defined(__GLIBC__)
  return aligned_any(page_size(), size);
#else
  return malloc(size);
#endif
}

void *pvalloc(std::size_t size) CAPHEAP_LIBC_NOEXCEPT {
#if defined(__GLIBC__)
  const std::size_t ps = page_size();
  std::size_t rounded;
  if (__builtin_add_overflow(size, ps - 1, &rounded)) {
    errno = ENOMEM;
    return nullptr;
  }
  rounded &= ~(ps - 1);
  return aligned_any(ps, rounded == 0 ? ps : rounded);
#else
  return malloc(size);
#endif
}

std::size_t malloc_usable_size(void *ptr) CAPHEAP_LIBC_NOEXCEPT {
  if (ptr == nullptr) return 0;
#if defined(__GLIBC__)
  if (!chip_owns(ptr)) return libc_usable_size(ptr);
#endif
  // Bytes the caller may write: with poisoning the requested size, not heap_caps_get_allocated_size
  // (ESP-IDF's figure, which may reach into the tail canary).
  return capheap::capi::registry().usable_size(ptr);
}

#if defined(_NEWLIB_VERSION) && !defined(__PICOLIBC__)
// newlib's own functions (strdup, stdio buffers, ...) allocate through the reentrant variants.
void *_malloc_r(struct _reent *, std::size_t size) {
  return malloc(size);
}
void _free_r(struct _reent *, void *ptr) {
  free(ptr);
}
void *_calloc_r(struct _reent *, std::size_t n, std::size_t size) {
  return calloc(n, size);
}
void *_realloc_r(struct _reent *, void *ptr, std::size_t size) {
  return realloc(ptr, size);
}
void *_memalign_r(struct _reent *, std::size_t alignment, std::size_t size) {
  return memalign(alignment, size);
}
#endif

#if defined(_NEWLIB_VERSION) || defined(__PICOLIBC__)
// Stubs (ESP-IDF's): referencing the C library's versions would drag its allocator into the link,
// whose malloc clashes with the one above. Statistics live in heap_caps_get_info.
int malloc_trim(std::size_t /*pad*/) {
  return 0;
}
int mallopt(int /*parameter*/, int /*value*/) {
  return 0;
}
struct mallinfo mallinfo(void) {
  struct mallinfo info;
  std::memset(&info, 0, sizeof info);
  return info;
}
void malloc_stats(void) {}
#endif

}  // extern "C"
