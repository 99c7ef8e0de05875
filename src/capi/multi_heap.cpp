// multi_heap.cpp — ESP-IDF's multi_heap C API (include/multi_heap.h) and capheap's C extensions
// (include/capheap.h) as thin shims over capheap::Heap.
//
// A multi_heap region starts with an 8-byte prefix holding the lock pointer given to
// multi_heap_set_lock (8 bytes on every target, so a heap's layout is the same on a 32-bit MCU and
// a 64-bit host); the engine's control structure follows it. The handle is the region start.

#include "multi_heap.h"

#include <cstddef>

#include "capheap.h"
#include "capheap/heap.hpp"
#include "core/block_layout.hpp"
#include "capi/capi_internal.hpp"
#include "port/port.h"

namespace {

using capheap::Heap;

// The prefix is 8 bytes on every target but only 4-byte aligned (regions need only 4-byte
// alignment), so the lock pointer is moved in and out with memcpy.
constexpr std::size_t kPrefixBytes = 8;
static_assert(sizeof(void *) <= kPrefixBytes, "the lock pointer must fit the prefix");

inline void *lock_of(multi_heap_handle_t h) {
  void *lock;
  __builtin_memcpy(&lock, h, sizeof lock);
  return lock;
}

inline void set_lock_of(void *region, void *lock) {
  __builtin_memset(region, 0, kPrefixBytes);
  __builtin_memcpy(region, &lock, sizeof lock);
}

inline Heap heap_of(multi_heap_handle_t h) {
  return Heap::from_control(static_cast<capheap::detail::Control *>(
      static_cast<void *>(reinterpret_cast<unsigned char *>(h) + kPrefixBytes)));
}

/// Holds the heap's lock (if any) for a scope.
class Guard {
 public:
  explicit Guard(multi_heap_handle_t h) : lock_(lock_of(h)) {
    if (lock_ != nullptr) capheap_port_lock_acquire(lock_);
  }
  ~Guard() {
    if (lock_ != nullptr) capheap_port_lock_release(lock_);
  }
  Guard(const Guard &) = delete;
  Guard &operator=(const Guard &) = delete;

 private:
  void *lock_;
};

// Decorated heaps registered through this API, so that the block-handle functions (which get no
// heap) can find a block's decoration. heap_caps heaps are found through the registry instead.
constexpr unsigned kMaxDecorated = 32;
std::uintptr_t g_decorated_start[kMaxDecorated];
std::uintptr_t g_decorated_end[kMaxDecorated];
Heap g_decorated_heap[kMaxDecorated];
unsigned g_decorated_count = 0;

/// Drops the entries of earlier heaps whose memory [start, start + size) now holds a new heap,
/// decorated or not (an entry left behind would decorate the new heap's block handles).
void forget_decorated(void *start, size_t size) {
  const std::uintptr_t s = reinterpret_cast<std::uintptr_t>(start), e = s + size;
  unsigned kept = 0;
  for (unsigned i = 0; i < g_decorated_count; ++i) {
    if (g_decorated_start[i] < e && s < g_decorated_end[i]) continue;  // region reused
    g_decorated_start[kept] = g_decorated_start[i];
    g_decorated_end[kept] = g_decorated_end[i];
    g_decorated_heap[kept] = g_decorated_heap[i];
    ++kept;
  }
  g_decorated_count = kept;
}

void remember_decorated(void *start, size_t size, Heap heap) {
  if (g_decorated_count == kMaxDecorated) return;  // full: block handles show raw engine data
  const unsigned slot = g_decorated_count++;
  g_decorated_start[slot] = reinterpret_cast<std::uintptr_t>(start);
  g_decorated_end[slot] = reinterpret_cast<std::uintptr_t>(start) + size;
  g_decorated_heap[slot] = heap;
}

#ifndef CAPHEAP_WITH_DECORATION
#define CAPHEAP_WITH_DECORATION 1
#endif

/// The heap holding a block handle's block, if it is decorated; a null handle otherwise. (Without
/// decoration support no heap is decorated: the engine refuses to create one, so neither these
/// tables nor the registry are needed.)
Heap decorated_heap_of(const void *block) {
  if (!CAPHEAP_WITH_DECORATION) return Heap();
  const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(block);
  for (unsigned i = 0; i < g_decorated_count; ++i)
    if (a >= g_decorated_start[i] && a < g_decorated_end[i]) return g_decorated_heap[i];
  capheap::Registry &reg = capheap::capi::registry();
  const Heap h = reg.view_of(block).heap;
  return h && h.decoration_before() != 0 ? h : Heap();
}

multi_heap_handle_t register_with(void *start, size_t size, capheap::HeapConfig cfg) {
  if (start == nullptr || (reinterpret_cast<std::uintptr_t>(start) & 3u) != 0 ||
      size < kPrefixBytes)
    return nullptr;
  cfg.reserved_prefix = kPrefixBytes;
  const Heap heap =
      Heap::create(static_cast<unsigned char *>(start) + kPrefixBytes, size - kPrefixBytes, cfg);
  if (!heap) return nullptr;
  set_lock_of(start, nullptr);
  if (CAPHEAP_WITH_DECORATION) forget_decorated(start, size);
  if (CAPHEAP_WITH_DECORATION && heap.decoration_total() != 0)
    remember_decorated(start, size, heap);
  return static_cast<multi_heap_handle_t>(start);
}

}  // namespace

void capheap::capi::walk_blocks(Heap h, RawWalkFn fn, void *user) noexcept {
  capheap::detail::Control *c = h.control();
  if (c == nullptr || fn == nullptr) return;
  struct Ctx {
    RawWalkFn fn;
    void *user;
    const unsigned char *base;
    std::uint32_t next;  // offset of the header after the last block visited
    bool stopped;
  } ctx{fn, user, capheap::detail::bytes_of(c), c->first, false};
  h.walk(
      [](const capheap::BlockView &b, void *u) -> bool {
        Ctx *cx = static_cast<Ctx *>(u);
        const auto *data = static_cast<const unsigned char *>(b.data);
        cx->next = static_cast<std::uint32_t>(data - cx->base) + static_cast<std::uint32_t>(b.size);
        cx->stopped = !cx->fn(b.data, b.size, b.used, cx->user);
        return !cx->stopped;
      },
      &ctx);
  // Heap::walk ends early only at a block whose size word it cannot follow.
  if (ctx.stopped || ctx.next >= c->end) return;
  const std::uint32_t word = capheap::detail::load_word(c, ctx.next);
  const std::uint32_t size = capheap::detail::header_size(word);
  (void)fn(capheap::detail::data_of(c, ctx.next),
           size > capheap::detail::kHeaderBytes ? size - capheap::detail::kHeaderBytes : 0,
           !capheap::detail::header_is_free(word), user);
}

void *capheap::capi::containing_block(Heap h, const void *p, std::size_t *size) noexcept {
  struct Ctx {
    std::uintptr_t target;
    void *found;
    std::size_t size;
  } ctx{reinterpret_cast<std::uintptr_t>(p), nullptr, 0};
  h.walk(
      [](const capheap::BlockView &b, void *u) -> bool {
        Ctx *cx = static_cast<Ctx *>(u);
        const std::uintptr_t start = reinterpret_cast<std::uintptr_t>(b.data);
        if (cx->target < start) return false;  // inside a header: no block contains it
        if (cx->target < start + b.size) {
          if (b.used) {
            cx->found = b.data;
            cx->size = b.size;
          }
          return false;
        }
        return true;
      },
      &ctx);
  if (size != nullptr) *size = ctx.size;
  return ctx.found;
}

extern "C" {

multi_heap_handle_t multi_heap_register(void *start, size_t size) {
  return register_with(start, size, capheap::HeapConfig{});
}

multi_heap_handle_t capheap_heap_register(void *start, size_t size,
                                          const capheap_heap_config_t *cfg) {
  capheap::Granule granule = capheap::Granule::kPlatformDefault;
  if (cfg != nullptr) {
    switch (cfg->granule) {
      case 0:
        break;
      case 4:
        granule = capheap::Granule::k4;
        break;
      case 8:
        granule = capheap::Granule::k8;
        break;
      case 16:
        granule = capheap::Granule::k16;
        break;
      default:
        return nullptr;
    }
  }
  capheap::HeapConfig hc;
  hc.granule = granule;
  if (cfg != nullptr) {
    if (static_cast<unsigned>(cfg->poisoning) > CAPHEAP_POISONING_COMPREHENSIVE) return nullptr;
    hc.poisoning = static_cast<capheap::Poisoning>(cfg->poisoning);
    hc.track_owner = cfg->task_tracking;
  }
  return register_with(start, size, hc);
}

size_t capheap_heap_granule(multi_heap_handle_t heap) {
  return heap == nullptr ? 0 : heap_of(heap).granule();
}

bool capheap_heap_invariants_hold(multi_heap_handle_t heap) {
  if (heap == nullptr) return false;
  Guard g(heap);
  return heap_of(heap).invariants_hold();
}

void multi_heap_set_lock(multi_heap_handle_t heap, void *lock) {
  if (heap != nullptr) set_lock_of(heap, lock);
}

void *multi_heap_malloc(multi_heap_handle_t heap, size_t size) {
  if (heap == nullptr || size == 0) return nullptr;
  Guard g(heap);
  return heap_of(heap).allocate(size);
}

void *multi_heap_aligned_alloc_offs(multi_heap_handle_t heap, size_t size, size_t alignment,
                                    size_t offset) {
  if (heap == nullptr || size == 0 || alignment == 0 || (alignment & (alignment - 1)) != 0)
    return nullptr;
  if (offset > SIZE_MAX - 3) return nullptr;
  offset = (offset + 3) & ~size_t(3);  // ESP-IDF rounds the offset up to 4
  Guard g(heap);
  return heap_of(heap).allocate_aligned(size, alignment, offset);
}

void *multi_heap_aligned_alloc(multi_heap_handle_t heap, size_t size, size_t alignment) {
  return multi_heap_aligned_alloc_offs(heap, size, alignment, 0);
}

void multi_heap_free(multi_heap_handle_t heap, void *p) {
  if (heap == nullptr || p == nullptr) return;
  Guard g(heap);
  heap_of(heap).deallocate(p);
}

void multi_heap_aligned_free(multi_heap_handle_t heap, void *p) {
  multi_heap_free(heap, p);
}

void *multi_heap_realloc(multi_heap_handle_t heap, void *p, size_t size) {
  if (heap == nullptr) return nullptr;
  Guard g(heap);
  return heap_of(heap).reallocate(p, size);
}

size_t multi_heap_get_allocated_size(multi_heap_handle_t heap, void *p) {
  if (heap == nullptr || p == nullptr) return 0;
  return heap_of(heap).allocated_size(p);
}

size_t multi_heap_get_full_block_size(multi_heap_handle_t heap, void *p) {
  if (heap == nullptr || p == nullptr) return 0;
  return heap_of(heap).block_size(p);
}

bool multi_heap_check(multi_heap_handle_t heap, bool print_errors) {
  if (heap == nullptr) return false;
  // (Initialised from the locked call's result, not assigned to: no zeroing and copy of a default.)
  const capheap::Validation v = [heap] {
    Guard g(heap);
    return heap_of(heap).validate();
  }();
  if (!v.ok() && print_errors) capheap::capi::print_corruption(v, heap, false);
  return v.ok();
}

bool capheap_heap_check_step(multi_heap_handle_t heap, size_t max_blocks, bool print_errors,
                             size_t *visited, bool *cycle_complete) {
  if (visited != nullptr) *visited = 0;
  if (cycle_complete != nullptr) *cycle_complete = false;
  if (heap == nullptr) return false;
  capheap::StepResult r;
  {
    Guard g(heap);
    r = heap_of(heap).validate_step(max_blocks);
  }
  if (visited != nullptr) *visited = r.visited;
  if (cycle_complete != nullptr) *cycle_complete = r.cycle_complete;
  if (!r.validation.ok() && print_errors)
    capheap::capi::print_corruption(r.validation, heap, false);
  return r.validation.ok();
}

void multi_heap_dump(multi_heap_handle_t heap) {
  if (heap == nullptr) return;
  Guard g(heap);
  capheap_port_printf("Showing data for heap: %p \n", static_cast<void *>(heap));
  heap_of(heap).walk(
      [](const capheap::BlockView &b, void *) -> bool {
        capheap_port_printf("Block %p data, size: %d bytes, Free: %s \n", b.data,
                            static_cast<int>(b.size), b.used ? "No" : "Yes");
        return true;
      },
      nullptr);
}

size_t multi_heap_free_size(multi_heap_handle_t heap) {
  return heap == nullptr ? 0 : heap_of(heap).free_bytes();
}

size_t multi_heap_minimum_free_size(multi_heap_handle_t heap) {
  return heap == nullptr ? 0 : heap_of(heap).minimum_free_bytes();
}

// HeapInfo has multi_heap_info_t's fields in the same order: one copy.
static_assert(sizeof(capheap::HeapInfo) == sizeof(multi_heap_info_t) &&
                  offsetof(capheap::HeapInfo, total_free_bytes) ==
                      offsetof(multi_heap_info_t, total_free_bytes) &&
                  offsetof(capheap::HeapInfo, total_allocated_bytes) ==
                      offsetof(multi_heap_info_t, total_allocated_bytes) &&
                  offsetof(capheap::HeapInfo, largest_free_block) ==
                      offsetof(multi_heap_info_t, largest_free_block) &&
                  offsetof(capheap::HeapInfo, minimum_free_bytes) ==
                      offsetof(multi_heap_info_t, minimum_free_bytes) &&
                  offsetof(capheap::HeapInfo, allocated_blocks) ==
                      offsetof(multi_heap_info_t, allocated_blocks) &&
                  offsetof(capheap::HeapInfo, free_blocks) ==
                      offsetof(multi_heap_info_t, free_blocks) &&
                  offsetof(capheap::HeapInfo, total_blocks) ==
                      offsetof(multi_heap_info_t, total_blocks),
              "HeapInfo and multi_heap_info_t must have the same layout");

void multi_heap_get_info(multi_heap_handle_t heap, multi_heap_info_t *info) {
  if (info == nullptr) return;
  capheap::HeapInfo i;  // all zeros for a null heap
  if (heap != nullptr) {
    Guard g(heap);
    i = heap_of(heap).info();
  }
  __builtin_memcpy(static_cast<void *>(info), &i, sizeof *info);
}

size_t multi_heap_reset_minimum_free_bytes(multi_heap_handle_t heap) {
  if (heap == nullptr) return 0;
  Guard g(heap);
  return heap_of(heap).reset_minimum_free_bytes();
}

void multi_heap_restore_minimum_free_bytes(multi_heap_handle_t heap,
                                           const size_t new_minimum_free_bytes_value) {
  if (heap == nullptr) return;
  Guard g(heap);
  heap_of(heap).restore_minimum_free_bytes(new_minimum_free_bytes_value);
}

void multi_heap_walk(multi_heap_handle_t heap, multi_heap_walker_cb_t walker_func,
                     void *user_data) {
  if (heap == nullptr || walker_func == nullptr) return;
  struct Ctx {
    multi_heap_walker_cb_t fn;
    void *user;
  } ctx{walker_func, user_data};
  Guard g(heap);
  capheap::capi::walk_blocks(
      heap_of(heap),
      [](void *data, std::size_t size, bool used, void *u) -> bool {
        const Ctx *cx = static_cast<const Ctx *>(u);
        return cx->fn(data, size, used ? 1 : 0, cx->user);
      },
      &ctx);
}

void *multi_heap_find_containing_block(multi_heap_handle_t heap, void *p) {
  if (heap == nullptr || p == nullptr) return nullptr;
  Guard g(heap);
  return capheap::capi::containing_block(heap_of(heap), p, nullptr);
}

// Block handles point at a block's header word inside the region.
multi_heap_block_handle_t multi_heap_get_first_block(multi_heap_handle_t heap) {
  if (heap == nullptr) return nullptr;
  capheap::detail::Control *c = heap_of(heap).control();
  return reinterpret_cast<multi_heap_block_handle_t>(capheap::detail::bytes_of(c) + c->first);
}

multi_heap_block_handle_t multi_heap_get_next_block(multi_heap_handle_t heap,
                                                    multi_heap_block_handle_t block) {
  if (heap == nullptr || block == nullptr) return nullptr;
  capheap::detail::Control *c = heap_of(heap).control();
  const unsigned char *base = capheap::detail::bytes_of(c);
  const unsigned char *hdr = reinterpret_cast<const unsigned char *>(block);
  const std::uint32_t off = static_cast<std::uint32_t>(hdr - base);
  const std::uint32_t size = capheap::detail::header_size(capheap::detail::load_word(c, off));
  if (size < capheap::detail::kMinBlockBytes || size > c->end - off) return nullptr;
  const std::uint32_t next = off + size;
  if (next >= c->end) return nullptr;
  return reinterpret_cast<multi_heap_block_handle_t>(base + next);
}

bool multi_heap_is_free(const multi_heap_block_handle_t block) {
  if (block == nullptr) return false;
  std::uint32_t h;
  __builtin_memcpy(&h, block, sizeof h);
  return capheap::detail::header_is_free(h);
}

void *multi_heap_get_block_address(multi_heap_block_handle_t block) {
  if (block == nullptr) return nullptr;
  auto *data = const_cast<unsigned char *>(reinterpret_cast<const unsigned char *>(block)) +
               capheap::detail::kHeaderBytes;
  if (multi_heap_is_free(block)) return data;
  // Allocations of a decorated heap: the address the application holds (past canary and owner).
  const Heap h = decorated_heap_of(block);
  return h ? data + h.decoration_before() : data;
}

void *multi_heap_get_block_owner(multi_heap_block_handle_t block) {
  if (block == nullptr || multi_heap_is_free(block)) return nullptr;
  const Heap h = decorated_heap_of(block);
  if (!h || !h.tracks_owner()) return nullptr;
  return reinterpret_cast<void *>(
      static_cast<std::uintptr_t>(h.owner_of(multi_heap_get_block_address(block))));
}

void multi_heap_internal_lock(multi_heap_handle_t heap) {
  void *lock = heap != nullptr ? lock_of(heap) : nullptr;
  if (lock != nullptr) capheap_port_lock_acquire(lock);
}

void multi_heap_internal_unlock(multi_heap_handle_t heap) {
  void *lock = heap != nullptr ? lock_of(heap) : nullptr;
  if (lock != nullptr) capheap_port_lock_release(lock);
}

}  // extern "C"
