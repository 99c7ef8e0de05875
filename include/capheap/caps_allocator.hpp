// capheap/caps_allocator.hpp — C++ allocation with capabilities: a standard allocator, a deleter
// and make_unique_caps, all on top of heap_caps_malloc / heap_caps_aligned_alloc / heap_caps_free.
//
//   std::vector<int, capheap::caps_allocator<int>> v{
//       capheap::caps_allocator<int>(capheap::Caps::dma() | capheap::Caps::bit8())};
//   auto buf = capheap::make_unique_caps<std::uint8_t[]>(capheap::Caps::dma(), 512);
//   auto obj = capheap::make_unique_caps<Widget>(capheap::Caps::spiram(), arg1, arg2);
//
// Every function here is a thin inline wrapper: the cost is one heap_caps_* call (O(1) per heap
// tried, see esp_heap_caps.h) plus any constructors and destructors, and the thread safety is
// heap_caps_*'s: thread-safe. Not meant for interrupt handlers.
//
// Failure: in builds with exceptions (__cpp_exceptions), allocation failure throws std::bad_alloc
// (std::bad_array_new_length, which derives from it, when an element count overflows size_t),
// like std::allocator and std::make_unique. In builds without exceptions (-fno-exceptions, the
// usual firmware setting) the same failures return nullptr / a null unique_ptr instead. Standard
// containers never check allocate() for nullptr, so with exceptions disabled a container using
// caps_allocator dereferences null when memory runs out: check heap_caps_get_largest_free_block
// first, or use make_unique_caps and test its result.
//
// Alignment: heap_caps_malloc returns 4-byte aligned memory (the ESP-IDF granule; heaps built with
// a larger granule give more). Types with alignof(T) > 4 are allocated with
// heap_caps_aligned_alloc(alignof(T), ...), so every object is correctly aligned. Capability sets
// that heap_caps_malloc refuses (0, MALLOC_CAP_INVALID, EXEC with 8BIT, DMA or DMA_DESC_*) fail
// whatever the alignment. EXEC requests with alignof(T) > 4 get data-bus addresses
// (heap_caps_aligned_alloc makes no instruction-bus alias).
//
// ABI: the behaviour on failure depends on the exception mode, so everything here lives in an
// inline namespace named after it (capheap::cxx_exceptions or capheap::cxx_no_exceptions).
// Translation units built with and without exceptions can therefore share a program without
// one-definition-rule clashes between their copies of these inline functions; their types simply
// differ.
//
// Hosted and freestanding: needs <memory> (std::unique_ptr) and <new>; no RTTI.
#ifndef CAPHEAP_CAPS_ALLOCATOR_HPP
#define CAPHEAP_CAPS_ALLOCATOR_HPP

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

#include "capheap/caps.hpp"
#include "esp_heap_caps.h"

namespace capheap {
#if defined(__cpp_exceptions)
inline namespace cxx_exceptions {
#else
inline namespace cxx_no_exceptions {
#endif

namespace caps_detail {

/// Alignment heap_caps_malloc guarantees on every heap (ESP-IDF's 4-byte granule).
constexpr std::size_t kCapsMallocAlign = 4;

/// True for the capability sets heap_caps_malloc refuses outright: EXEC together with 8BIT, DMA or
/// a DMA descriptor bit (which heap_caps_malloc maps to DMA). heap_caps_aligned_alloc, like
/// ESP-IDF's, has no such check and would serve them from D/IRAM.
constexpr bool caps_impossible(Caps caps) noexcept {
  return caps.contains(Caps::exec()) &&
         caps.intersects(Caps::bit8() | Caps::dma() | Caps::dma_desc_ahb() | Caps::dma_desc_axi());
}

/// Allocates `bytes` (0 is treated as 1, so that every successful call returns a distinct pointer)
/// aligned to at least `align` (a power of two) from a heap with every capability in `caps`:
/// heap_caps_aligned_alloc when align > 4, else heap_caps_malloc. Caps that heap_caps_malloc
/// refuses are refused whatever the alignment. Returns nullptr on failure (heap_caps_*'s failure
/// callback runs). Never throws.
inline void *caps_alloc_bytes(std::size_t bytes, std::size_t align, Caps caps) noexcept {
  if (bytes == 0) bytes = 1;
  if (align > kCapsMallocAlign && !caps_impossible(caps))
    return heap_caps_aligned_alloc(align, bytes, caps.bits());
  return heap_caps_malloc(bytes, caps.bits());
}

/// Throws std::bad_alloc in builds with exceptions; does nothing otherwise.
inline void caps_throw_bad_alloc() {
#if defined(__cpp_exceptions)
  throw std::bad_alloc();
#endif
}

/// Throws std::bad_array_new_length in builds with exceptions; does nothing otherwise.
inline void caps_throw_bad_length() {
#if defined(__cpp_exceptions)
  throw std::bad_array_new_length();
#endif
}

/// Frees `p` (null: no-op) with heap_caps_free when destroyed, unless released. Used to undo an
/// allocation when a constructor throws.
class CapsAllocGuard {
 public:
  explicit CapsAllocGuard(void *p) noexcept : p_(p) {}
  CapsAllocGuard(const CapsAllocGuard &) = delete;
  CapsAllocGuard &operator=(const CapsAllocGuard &) = delete;
  ~CapsAllocGuard() { heap_caps_free(p_); }
  void release() noexcept { p_ = nullptr; }

 private:
  void *p_;
};

}  // namespace caps_detail

// ================================================================================================
// caps_allocator
// ================================================================================================

/// A standard allocator (C++17 Allocator requirements) that takes memory from heaps with a given
/// set of MALLOC_CAP_* capabilities.
///
/// State: one Caps value. Two allocators compare equal if and only if their caps are equal (memory
/// from one can always be freed through the other, since heap_caps_free finds the owning heap by
/// address; equality is about where *new* memory comes from). The caps travel with the contents:
/// propagate_on_container_copy_assignment, _move_assignment and _swap are true, so assigning or
/// swapping containers moves their memory (and its caps) with it, in O(1) for moves and swaps.
template <class T>
class caps_allocator {
 public:
  using value_type = T;
  using size_type = std::size_t;
  using difference_type = std::ptrdiff_t;
  using propagate_on_container_copy_assignment = std::true_type;
  using propagate_on_container_move_assignment = std::true_type;
  using propagate_on_container_swap = std::true_type;
  using is_always_equal = std::false_type;

  template <class U>
  struct rebind {
    using other = caps_allocator<U>;
  };

  /// An allocator for MALLOC_CAP_DEFAULT memory (what plain malloc() may return). O(1), noexcept.
  constexpr caps_allocator() noexcept : caps_(Caps::default_()) {}

  /// An allocator for memory with every capability in `caps`. Caps that no heap has (0,
  /// MALLOC_CAP_INVALID, EXEC with 8BIT, DMA or DMA_DESC_*) are accepted here; allocate() then
  /// fails.
  /// O(1), noexcept.
  constexpr explicit caps_allocator(Caps caps) noexcept : caps_(caps) {}

  /// Rebinding copy: same caps, other value type. O(1), noexcept.
  template <class U>
  constexpr caps_allocator(const caps_allocator<U> &other) noexcept  // NOLINT: implicit by design
      : caps_(other.caps()) {}

  /// The capabilities this allocator asks for.
  constexpr Caps caps() const noexcept { return caps_; }

  /// Allocates storage for n objects of type T (not constructed) from a heap that has every
  /// capability in caps(), aligned to alignof(T) (heap_caps_aligned_alloc when alignof(T) > 4,
  /// else heap_caps_malloc; n == 0 allocates a 1-byte block so the result is still unique).
  /// Returns: the storage. Fails, when n > max_size() (n * sizeof(T) overflows size_t), by throwing
  ///   std::bad_array_new_length; when no heap with those caps can provide the bytes (including
  ///   impossible caps), by throwing std::bad_alloc (heap_caps_*'s failure callback ran first).
  ///   Without exceptions both failures return nullptr.
  /// Complexity: O(1) per heap tried. Thread safety: thread-safe (heap_caps_* locks each heap).
  T *allocate(std::size_t n) {
    if (n > max_size()) {
      caps_detail::caps_throw_bad_length();
      return nullptr;
    }
    void *p = caps_detail::caps_alloc_bytes(n * sizeof(T), alignof(T), caps_);
    if (p == nullptr) caps_detail::caps_throw_bad_alloc();
    return static_cast<T *>(p);
  }

  /// Returns storage obtained from allocate() of any caps_allocator (the size is not needed:
  /// heap_caps_free finds the block and its heap from the address). p == nullptr is a no-op.
  /// Objects in it must already be destroyed. O(log heaps). Thread-safe. Never throws.
  void deallocate(T *p, std::size_t /*n*/) noexcept { heap_caps_free(p); }

  /// Largest n for which n * sizeof(T) does not overflow. (Whether the memory exists is another
  /// question: see heap_caps_get_largest_free_block.) O(1).
  constexpr std::size_t max_size() const noexcept {
    return std::numeric_limits<std::size_t>::max() / sizeof(T);
  }

 private:
  Caps caps_;
};

/// Equal if and only if the caps are equal. O(1).
template <class T, class U>
constexpr bool operator==(const caps_allocator<T> &a, const caps_allocator<U> &b) noexcept {
  return a.caps() == b.caps();
}
template <class T, class U>
constexpr bool operator!=(const caps_allocator<T> &a, const caps_allocator<U> &b) noexcept {
  return !(a == b);
}

// ================================================================================================
// caps_deleter and make_unique_caps
// ================================================================================================

/// Deleter for one object made by make_unique_caps<T>: destroys the object and returns its memory
/// with heap_caps_free. Stateless. Converts from caps_deleter<U> when U* converts to T*, like
/// std::default_delete; deleting through a base class needs a virtual destructor, and the memory
/// block is found through the most-derived object (so a non-first base of a polymorphic class is
/// freed correctly).
template <class T>
struct caps_deleter {
  constexpr caps_deleter() noexcept = default;
  template <class U, class = std::enable_if_t<std::is_convertible<U *, T *>::value>>
  constexpr caps_deleter(const caps_deleter<U> & /*other*/) noexcept {}  // NOLINT: implicit

  /// Destroys *p and frees its block (null: no-op). O(log heaps) plus the destructor. Thread-safe
  /// as heap_caps_free. Never throws (destructors must not throw).
  void operator()(T *p) const noexcept {
    static_assert(sizeof(T) > 0, "caps_deleter cannot delete an incomplete type");
    if (p == nullptr) return;
    void *block = most_derived(p);
    p->~T();
    heap_caps_free(block);
  }

 private:
  static void *most_derived(T *p) noexcept {
    if constexpr (std::is_polymorphic<T>::value) {
      return const_cast<void *>(dynamic_cast<const volatile void *>(p));  // no RTTI needed
    } else {
      return const_cast<void *>(static_cast<const volatile void *>(p));
    }
  }
};

/// Deleter for an array made by make_unique_caps<T[]>: destroys its count() elements (last first)
/// and frees the block with heap_caps_free. Holds the element count.
template <class T>
struct caps_deleter<T[]> {
  constexpr caps_deleter() noexcept = default;
  constexpr explicit caps_deleter(std::size_t count) noexcept : count_(count) {}

  /// Number of elements destroyed by operator().
  constexpr std::size_t count() const noexcept { return count_; }

  /// Destroys the elements and frees the block (null: no-op). O(count + log heaps). Never throws.
  void operator()(T *p) const noexcept {
    static_assert(sizeof(T) > 0, "caps_deleter cannot delete an incomplete type");
    if (p == nullptr) return;
    if constexpr (!std::is_trivially_destructible<T>::value) {
      for (std::size_t i = count_; i > 0; --i)
        p[i - 1].~T();
    }
    heap_caps_free(const_cast<void *>(static_cast<const volatile void *>(p)));
  }

 private:
  std::size_t count_ = 0;
};

/// unique_ptr types returned by make_unique_caps.
template <class T>
using unique_caps_ptr = std::unique_ptr<T, caps_deleter<T>>;

/// Creates one T with `T(std::forward<Args>(args)...)` in memory from a heap that has every
/// capability in `caps` (aligned to alignof(T), see caps_allocator::allocate).
/// Returns: the owning pointer; its deleter destroys the object and calls heap_caps_free.
/// Fails: when no heap with those caps can hold sizeof(T) bytes (including impossible caps), by
///   throwing std::bad_alloc; without exceptions by returning a null unique_ptr (nothing is
///   constructed). If T's constructor throws, the memory is freed and the exception propagates.
/// Complexity: O(1) per heap tried, plus the constructor. Thread safety: thread-safe.
template <class T, class... Args>
std::enable_if_t<!std::is_array<T>::value, unique_caps_ptr<T>> make_unique_caps(Caps caps,
                                                                                Args &&...args) {
  void *p = caps_detail::caps_alloc_bytes(sizeof(T), alignof(T), caps);
  if (p == nullptr) {
    caps_detail::caps_throw_bad_alloc();
    return unique_caps_ptr<T>();
  }
  caps_detail::CapsAllocGuard guard(p);
  T *obj = ::new (p) T(std::forward<Args>(args)...);
  guard.release();
  return unique_caps_ptr<T>(obj);
}

/// Creates an array of n value-initialised T (`T()`: zero for scalars) in memory from a heap with
/// every capability in `caps`. n == 0 gives a non-null pointer to an empty array (like new T[0]).
/// Returns: the owning pointer; its deleter (holding n) destroys the elements and frees the block.
/// Fails: when n * sizeof(T) overflows size_t, by throwing std::bad_array_new_length; when no heap
///   can hold the bytes (including impossible caps), by throwing std::bad_alloc. Without exceptions
///   both return a null unique_ptr. If an element's constructor throws, the elements already built
///   are destroyed (last first), the memory is freed and the exception propagates.
/// Complexity: O(n) constructions plus O(1) per heap tried. Thread safety: thread-safe.
template <class T>
std::enable_if_t<std::is_array<T>::value && std::extent<T>::value == 0, unique_caps_ptr<T>>
make_unique_caps(Caps caps, std::size_t n) {
  using E = std::remove_extent_t<T>;
  if (n > std::numeric_limits<std::size_t>::max() / sizeof(E)) {
    caps_detail::caps_throw_bad_length();
    return unique_caps_ptr<T>();
  }
  void *p = caps_detail::caps_alloc_bytes(n * sizeof(E), alignof(E), caps);
  if (p == nullptr) {
    caps_detail::caps_throw_bad_alloc();
    return unique_caps_ptr<T>();
  }
  E *first = static_cast<E *>(p);
  // Owns the block and the elements built so far: if a constructor throws, its destructor
  // destroys exactly those and frees the block.
  unique_caps_ptr<T> built(first, caps_deleter<T>(0));
  for (std::size_t i = 0; i < n; ++i) {
    ::new (static_cast<void *>(first + i)) E();
    built.get_deleter() = caps_deleter<T>(i + 1);
  }
  return built;
}

/// Arrays of known bound are not supported (as with std::make_unique).
template <class T, class... Args>
std::enable_if_t<(std::extent<T>::value != 0)> make_unique_caps(Caps, Args &&...) = delete;

}  // inline namespace cxx_exceptions / cxx_no_exceptions
}  // namespace capheap

#endif  // CAPHEAP_CAPS_ALLOCATOR_HPP
