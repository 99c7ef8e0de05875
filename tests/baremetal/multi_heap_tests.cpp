// multi_heap_tests.cpp — ESP-IDF's multi_heap C API on the target: registration with the 8-byte
// lock prefix, exact statistics, aligned allocation, realloc, block handles, walks, the lock hooks,
// the check and its report, and the granule option.
#include <cstring>
#include <initializer_list>

#include "capheap.h"
#include "fail_capture.hpp"
#include "harness.hpp"
#include "multi_heap.h"

namespace {

alignas(16) unsigned char g_mem[16384];

// Lock hooks: count calls and check that they nest properly.
int g_depth = 0;
unsigned g_acquired = 0;
void *g_lock_seen = nullptr;
void acquire(void *lock) {
  ++g_depth;
  ++g_acquired;
  g_lock_seen = lock;
}
void release(void *) {
  --g_depth;
}

struct WalkTotals {
  unsigned used = 0, free = 0;
  std::size_t used_bytes = 0, free_bytes = 0;
};
bool walk_cb(void *, size_t size, int used, void *user) {
  auto *t = static_cast<WalkTotals *>(user);
  if (used != 0) {
    ++t->used;
    t->used_bytes += size;
  } else {
    ++t->free;
    t->free_bytes += size;
  }
  return true;
}

char g_printed[512];
std::size_t g_printed_len = 0;
void capture_print(const char *text, size_t len) {
  for (std::size_t i = 0; i < len && g_printed_len + 1 < sizeof g_printed; ++i)
    g_printed[g_printed_len++] = text[i];
  g_printed[g_printed_len] = '\0';
}

}  // namespace

// The handle is the region start; the engine's control structure follows the 8-byte lock prefix:
// an 8184-byte heap (granule 4 on 32-bit targets).
TARGET_TEST(MultiHeap, RegisterAndExactInfo) {
  multi_heap_handle_t h = multi_heap_register(g_mem, 8192);
  REQUIRE(h != nullptr);
  CHECK(static_cast<void *>(h) == g_mem);
  CHECK_EQ(capheap_heap_granule(h), 4u);
  CHECK_EQ(multi_heap_free_size(h), 7836u);
  CHECK_EQ(multi_heap_minimum_free_size(h), 7836u);
  void *a = multi_heap_malloc(h, 100);
  void *b = multi_heap_malloc(h, 200);
  REQUIRE(a != nullptr && b != nullptr);
  CHECK_EQ(static_cast<unsigned char *>(a) - g_mem, 356);  // prefix 8 + control 344 + header 4
  CHECK_EQ(multi_heap_get_allocated_size(h, a), 100u);
  CHECK_EQ(multi_heap_get_allocated_size(h, b), 200u);
  multi_heap_info_t info;
  multi_heap_get_info(h, &info);
  CHECK_EQ(info.total_free_bytes, 7836u - 104u - 204u);
  CHECK_EQ(info.total_allocated_bytes, 300u);
  CHECK_EQ(info.largest_free_block, 7836u - 104u - 204u - 4u);
  CHECK_EQ(info.minimum_free_bytes, 7836u - 104u - 204u);
  CHECK_EQ(info.allocated_blocks, 2u);
  CHECK_EQ(info.free_blocks, 1u);
  CHECK_EQ(info.total_blocks, 3u);
  multi_heap_free(h, a);
  multi_heap_free(h, b);
  multi_heap_free(h, nullptr);
  CHECK_EQ(multi_heap_free_size(h), 7836u);
  CHECK_EQ(multi_heap_minimum_free_size(h), 7528u);
  CHECK_EQ(multi_heap_reset_minimum_free_bytes(h), 7528u);
  CHECK_EQ(multi_heap_minimum_free_size(h), 7836u);
  multi_heap_restore_minimum_free_bytes(h, 7000);
  CHECK_EQ(multi_heap_minimum_free_size(h), 7000u);
  CHECK(multi_heap_check(h, true));
  // Refusals.
  CHECK(multi_heap_register(g_mem + 2, 4096) == nullptr);
  CHECK(multi_heap_register(nullptr, 4096) == nullptr);
  CHECK(multi_heap_register(g_mem, 40) == nullptr);
  CHECK(multi_heap_malloc(h, 0) == nullptr);
  CHECK(multi_heap_malloc(h, 8000) == nullptr);
}

TARGET_TEST(MultiHeap, AlignedAllocAndRealloc) {
  multi_heap_handle_t h = multi_heap_register(g_mem, sizeof g_mem);
  REQUIRE(h != nullptr);
  const std::size_t initial = multi_heap_free_size(h);
  for (std::size_t a : {8u, 16u, 64u, 256u, 1024u}) {
    void *p = multi_heap_aligned_alloc(h, 100, a);
    REQUIRE(p != nullptr);
    CHECK_EQ(reinterpret_cast<std::uintptr_t>(p) % a, 0u);
    CHECK_EQ(multi_heap_get_allocated_size(h, p), 100u);
    multi_heap_aligned_free(h, p);
  }
  CHECK(multi_heap_aligned_alloc(h, 100, 0) == nullptr);
  CHECK(multi_heap_aligned_alloc(h, 100, 24) == nullptr);
  void *o = multi_heap_aligned_alloc_offs(h, 64, 32, 8);
  REQUIRE(o != nullptr);
  CHECK_EQ((reinterpret_cast<std::uintptr_t>(o) + 8) % 32, 0u);
  multi_heap_free(h, o);
  CHECK_EQ(multi_heap_free_size(h), initial);

  auto *p = static_cast<unsigned char *>(multi_heap_malloc(h, 10));
  REQUIRE(p != nullptr);
  std::memcpy(p, "capheap!!", 10);
  void *blocker = multi_heap_malloc(h, 10);
  auto *q = static_cast<unsigned char *>(multi_heap_realloc(h, p, 500));
  REQUIRE(q != nullptr);
  CHECK(q != p);
  CHECK(std::memcmp(q, "capheap!!", 10) == 0);
  CHECK(multi_heap_realloc(h, q, 1u << 20) == nullptr);  // fails, q stays
  CHECK_EQ(multi_heap_get_allocated_size(h, q), 500u);
  CHECK(multi_heap_realloc(h, q, 0) == nullptr);
  multi_heap_free(h, blocker);
  CHECK_EQ(multi_heap_free_size(h), initial);
}

TARGET_TEST(MultiHeap, BlockHandlesAndWalk) {
  multi_heap_handle_t h = multi_heap_register(g_mem, 4096);
  REQUIRE(h != nullptr);
  void *a = multi_heap_malloc(h, 64);
  void *b = multi_heap_malloc(h, 32);
  void *c = multi_heap_malloc(h, 16);
  REQUIRE(a != nullptr && b != nullptr && c != nullptr);
  multi_heap_free(h, b);
  unsigned used = 0, free_blocks = 0;
  for (multi_heap_block_handle_t blk = multi_heap_get_first_block(h); blk != nullptr;
       blk = multi_heap_get_next_block(h, blk)) {
    if (multi_heap_is_free(blk)) {
      ++free_blocks;
    } else {
      ++used;
      void *addr = multi_heap_get_block_address(blk);
      CHECK(addr == a || addr == c);
    }
  }
  CHECK_EQ(used, 2u);
  CHECK_EQ(free_blocks, 2u);
  CHECK(multi_heap_find_containing_block(h, static_cast<unsigned char *>(a) + 10) == a);
  CHECK_EQ(multi_heap_get_full_block_size(h, a), 68u);
  WalkTotals t;
  multi_heap_walk(h, walk_cb, &t);
  CHECK_EQ(t.used, 2u);
  CHECK_EQ(t.free, 2u);
  CHECK_EQ(t.used_bytes, 64u + 16u);
  CHECK_EQ(t.free_bytes + 4u * 2u, multi_heap_free_size(h));
  multi_heap_free(h, a);
  multi_heap_free(h, c);
}

TARGET_TEST(MultiHeap, LockHooksWrapEveryCall) {
  capheap_set_lock_hooks(acquire, release);
  static int lock_object;
  multi_heap_handle_t h = multi_heap_register(g_mem, 4096);
  REQUIRE(h != nullptr);
  multi_heap_set_lock(h, &lock_object);
  g_acquired = 0;
  void *p = multi_heap_malloc(h, 10);
  multi_heap_free(h, p);
  multi_heap_info_t info;
  multi_heap_get_info(h, &info);
  CHECK(multi_heap_check(h, false));
  CHECK_EQ(g_acquired, 4u);
  CHECK_EQ(g_depth, 0);
  CHECK(g_lock_seen == &lock_object);
  multi_heap_internal_lock(h);
  CHECK_EQ(g_depth, 1);
  multi_heap_internal_unlock(h);
  CHECK_EQ(g_depth, 0);
  multi_heap_set_lock(h, nullptr);
  g_acquired = 0;
  multi_heap_free(h, multi_heap_malloc(h, 10));
  CHECK_EQ(g_acquired, 0u);
  capheap_set_lock_hooks(nullptr, nullptr);
}

// A damaged header: multi_heap_check prints ESP-IDF's line (through the print hook) and the
// double free goes to the fail hook.
TARGET_TEST(MultiHeap, CheckReportsCorruption) {
  capheap_target::FailCapture fails;
  multi_heap_handle_t h = multi_heap_register(g_mem, 4096);
  REQUIRE(h != nullptr);
  auto *a = static_cast<unsigned char *>(multi_heap_malloc(h, 32));
  void *b = multi_heap_malloc(h, 32);
  REQUIRE(a != nullptr && b != nullptr);
  multi_heap_free(h, b);
  multi_heap_free(h, b);
  CHECK_EQ(fails.count(), 1u);
  CHECK(fails.last_is("double free (block is already free)"));
  CHECK(fails.heap() == g_mem);
  std::uint32_t header;
  std::memcpy(&header, a - 4, 4);
  const std::uint32_t smashed = 0x0000FFF0u;
  std::memcpy(a - 4, &smashed, 4);
  g_printed_len = 0;
  g_printed[0] = '\0';
  capheap_set_print_hook(capture_print);
  CHECK(!multi_heap_check(h, true));
  capheap_set_print_hook(capheap_target::console_print);
  CHECK(std::strncmp(g_printed, "CORRUPT HEAP: bad block size at 0x", 34) == 0);
  std::memcpy(a - 4, &header, 4);
  CHECK(multi_heap_check(h, false));
  multi_heap_free(h, a);
}

TARGET_TEST(MultiHeap, GranuleOption) {
  capheap_heap_config_t cfg = {};
  for (std::size_t g : {4u, 8u, 16u}) {
    cfg.granule = g;
    multi_heap_handle_t h = capheap_heap_register(g_mem + 4, 8192, &cfg);
    REQUIRE(h != nullptr);
    CHECK_EQ(capheap_heap_granule(h), g);
    void *p = multi_heap_malloc(h, 1);
    REQUIRE(p != nullptr);
    CHECK_EQ(reinterpret_cast<std::uintptr_t>(p) % g, 0u);
    CHECK(capheap_heap_invariants_hold(h));
    multi_heap_free(h, p);
  }
  cfg.granule = 32;
  CHECK(capheap_heap_register(g_mem, 8192, &cfg) == nullptr);
}
