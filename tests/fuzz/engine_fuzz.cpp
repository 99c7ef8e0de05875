// engine_fuzz.cpp — differential fuzzer of capheap::Heap against a reference model.
//
// Input: a header (heap size class and size, granule, start offset mod 16, poisoning level, owner
// tracking) and then a sequence of operations on one heap. The model keeps every live block
// (pointer, requested size, usable size, payload pattern) and predicts every observable the
// contract in include/capheap/heap.hpp decides; any mismatch aborts with a message.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>

#include "capheap.h"
#include "capheap/heap.hpp"
#include "fuzz_common.hpp"

namespace {

using capheap_fuzz::Reader;

struct Block {
  unsigned char *p;
  std::size_t requested;
  std::size_t usable;
  std::uint32_t id;
};

unsigned char pattern(std::uint32_t id, std::size_t i) {
  return static_cast<unsigned char>((id * 131u + static_cast<std::uint32_t>(i) * 7u + 1u) & 0xFFu);
}

void fill(const Block &b) {
  for (std::size_t i = 0; i < b.usable; ++i)
    b.p[i] = pattern(b.id, i);
}

bool intact(const Block &b, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    if (b.p[i] != pattern(b.id, i)) return false;
  return true;
}

[[noreturn]] void on_fail(const char *what, const void *addr, const void *heap) {
  std::fprintf(stderr, "capheap fail hook: %s at %p (heap %p)\n", what, addr, heap);
  capheap_fuzz::fail(__FILE__, __LINE__, "fail hook", "capheap reported corruption");
}

bool is_pow2(std::size_t v) {
  return v != 0 && (v & (v - 1)) == 0;
}

class Model {
 public:
  Model(capheap::Heap heap, unsigned char *region, std::size_t region_size)
      : heap_(heap), region_(region), region_end_(region + region_size) {}

  std::size_t live() const { return blocks_.size(); }

  // A new block: alignment, bounds, usable size, no overlap; then it joins the model.
  void admit(unsigned char *p, std::size_t requested, bool fresh) {
    const std::size_t g = heap_.granule();
    FUZZ_CHECK(reinterpret_cast<std::uintptr_t>(p) % g == 0, "pointer not granule-aligned");
    FUZZ_CHECK(heap_.contains(p) && p > region_, "pointer outside the heap");
    const std::size_t usable = heap_.usable_size(p);
    FUZZ_CHECK(usable >= requested, "usable_size below the requested size");
    if (heap_.poisoning() != capheap::Poisoning::kNone)
      FUZZ_CHECK(usable == requested, "poisoned heap: usable_size differs from requested size");
    FUZZ_CHECK(p + usable <= region_end_, "block runs past the region");
    if (fresh && heap_.poisoning() == capheap::Poisoning::kComprehensive) {
      for (std::size_t i = 0; i < requested; ++i)
        FUZZ_CHECK(p[i] == 0xCE, "comprehensive poisoning: new allocation not filled with 0xCE");
    }
    const auto key = reinterpret_cast<std::uintptr_t>(p);
    auto next = blocks_.lower_bound(key);
    FUZZ_CHECK(next == blocks_.end() || next->first >= key + usable,
               "new block overlaps a live block above it");
    if (next != blocks_.begin()) {
      const Block &prev = std::prev(next)->second;
      FUZZ_CHECK(reinterpret_cast<std::uintptr_t>(prev.p) + prev.usable <= key,
                 "new block overlaps a live block below it");
    }
    Block b{p, requested, usable, next_id_++};
    fill(b);
    blocks_.emplace(key, b);
  }

  Block *pick(std::uint8_t sel) {
    if (blocks_.empty()) return nullptr;
    auto it = blocks_.begin();
    std::advance(it, sel % blocks_.size());
    return &it->second;
  }

  void forget(const Block &b) { blocks_.erase(reinterpret_cast<std::uintptr_t>(b.p)); }

  void free_block(Block *b) {
    FUZZ_CHECK(intact(*b, b->usable), "payload changed before free");
    unsigned char *p = b->p;
    forget(*b);
    heap_.deallocate(p);
  }

  // The walk agrees with the model: every used block is a live block with its sizes.
  void check_walk() const {
    std::size_t used = 0, free_blocks = 0;
    bool ok = true;
    const capheap::Poisoning poison = heap_.poisoning();
    heap_.for_each_block([&](const capheap::BlockView &v) {
      if (!v.used) {
        ++free_blocks;
        return true;
      }
      ++used;
      auto it = blocks_.find(reinterpret_cast<std::uintptr_t>(v.user));
      if (it == blocks_.end() || it->second.usable != v.requested ||
          (poison != capheap::Poisoning::kNone && v.requested != it->second.requested))
        ok = false;
      return true;
    });
    FUZZ_CHECK(ok, "walk shows a used block the model does not know (or other sizes)");
    FUZZ_CHECK(used == blocks_.size(), "walk: used block count differs from live count");
    const capheap::HeapInfo info = heap_.info();
    FUZZ_CHECK(info.free_blocks == free_blocks, "info().free_blocks differs from the walk");
  }

  void check_info() const {
    const capheap::HeapInfo info = heap_.info();
    FUZZ_CHECK(info.allocated_blocks == blocks_.size(), "info().allocated_blocks != live count");
    FUZZ_CHECK(info.total_blocks == info.allocated_blocks + info.free_blocks,
               "info().total_blocks != allocated + free");
    FUZZ_CHECK(info.total_free_bytes == heap_.free_bytes(), "info() free bytes != free_bytes()");
    FUZZ_CHECK(info.largest_free_block == heap_.largest_free_block(),
               "info() largest != largest_free_block()");
    FUZZ_CHECK(info.largest_free_block <= info.total_free_bytes, "largest block above free bytes");
    FUZZ_CHECK(info.minimum_free_bytes <= info.total_free_bytes, "minimum above current free");
    FUZZ_CHECK(info.free_blocks != 0 || info.total_free_bytes == 0,
               "free bytes without free blocks");
    std::size_t requested = 0;
    for (const auto &kv : blocks_)
      requested += kv.second.usable;
    FUZZ_CHECK(info.total_allocated_bytes >= requested,
               "allocated bytes below the sum of usable sizes");
  }

  const std::map<std::uintptr_t, Block> &blocks() const { return blocks_; }

 private:
  capheap::Heap heap_;
  unsigned char *region_;
  unsigned char *region_end_;
  std::map<std::uintptr_t, Block> blocks_;
  std::uint32_t next_id_ = 1;
};

// The usable bytes of the largest free block (O(n), by walk()): no allocation of any kind can
// succeed above it. largest_free_block() is the guarantee for a plain allocation, which looks at
// the head of each class only; an aligned allocation examines up to kFitScan entries of its own
// class and may find a larger block behind the head (design.md 2.4).
std::size_t largest_free_usable(const capheap::Heap &heap) {
  std::size_t largest = 0;
  heap.walk(
      [](const capheap::BlockView &v, void *arg) {
        auto *l = static_cast<std::size_t *>(arg);
        if (!v.used && v.size > *l) *l = v.size;
        return true;
      },
      &largest);
  return largest;
}

// A request size: mostly small, sometimes around the largest free block, sometimes absurd.
std::size_t decode_size(Reader &in, const capheap::Heap &heap) {
  const std::uint8_t sel = in.u8();
  switch (sel % 8) {
    case 0:
    case 1:
    case 2:
      return in.u8() % 72;
    case 3:
      return in.u16() % 4096;
    case 4:
      return in.u32() % (heap.region_size() + 64);
    case 5: {
      const std::size_t largest = heap.largest_free_block();
      const int delta = static_cast<int>(in.u8() % 41) - 20;
      if (delta < 0 && static_cast<std::size_t>(-delta) > largest) return 0;
      return delta < 0 ? largest - static_cast<std::size_t>(-delta)
                       : largest + static_cast<std::size_t>(delta);
    }
    case 6:
      return 0;
    default: {
      static const std::size_t kHuge[] = {
          SIZE_MAX,
          SIZE_MAX - 3,
          SIZE_MAX / 2,
          static_cast<std::size_t>(std::uint64_t{1} << (sizeof(std::size_t) > 4 ? 32 : 31)),
          (std::size_t{1} << 31) + 1,
          0xFFFFFFFFu};
      return kHuge[in.u8() % (sizeof kHuge / sizeof kHuge[0])];
    }
  }
}

std::size_t decode_alignment(Reader &in) {
  const std::uint8_t sel = in.u8();
  if (sel < 200) return std::size_t{1} << (sel % 14);  // 1 .. 8192
  if (sel < 230) return sel % 70;                      // 0, and many non-powers of two
  if (sel < 250) return std::size_t{1} << (14 + sel % 18);
  return SIZE_MAX / 2 + 1;
}

std::size_t decode_offset(Reader &in) {
  const std::uint8_t sel = in.u8();
  if (sel < 128) return 0;
  if (sel < 224) return (sel % 32u) * 4u;
  return sel % 13u;  // often not a multiple of 4
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
  capheap_fuzz::count_execution("engine_fuzz");
  capheap_set_fail_hook(on_fail);
  Reader in(data, size);

  // ---- Header ----
  std::size_t heap_size = 0;
  const std::uint8_t size_class = in.u8();
  switch (size_class % 4) {
    case 0:
      heap_size = 16 + std::size_t{in.u8()} * 8u;  // 16 .. 2 KiB: includes too-small regions
      break;
    case 1:
      heap_size = 1024 + std::size_t{in.u16()} % (15u * 1024u);
      break;
    case 2:
      heap_size = 16384 + std::size_t{in.u16()} * 2u;  // up to 144 KiB
      break;
    default:
      heap_size = 131072 + std::size_t{in.u16()} * 4u;  // up to 384 KiB
      break;
  }
  const std::uint8_t opts = in.u8();
  static const capheap::Granule kGranules[] = {capheap::Granule::k4, capheap::Granule::k8,
                                               capheap::Granule::k16};
  capheap::HeapConfig cfg;
  cfg.granule = kGranules[opts % 3];
  cfg.poisoning = static_cast<capheap::Poisoning>((opts / 3) % 3);
  cfg.track_owner = ((opts / 9) & 1) != 0;
  const std::size_t offset = (opts >> 4) & 15u;
#if defined(CAPHEAP_WITH_DECORATION) && CAPHEAP_WITH_DECORATION == 0
  cfg.poisoning = capheap::Poisoning::kNone;
  cfg.track_owner = false;
#endif

  // 8 KiB-aligned, so that an input places every block at the same address modulo every
  // alignment it can ask for below 16 KiB in every build (the host's malloc aligns differently
  // with and without ASan, and aligned allocations depend on it): corpus inputs replay exactly.
  constexpr std::size_t kBufferAlign = 8192;
  unsigned char *buffer = static_cast<unsigned char *>(std::aligned_alloc(
      kBufferAlign, (heap_size + offset + kBufferAlign - 1) / kBufferAlign * kBufferAlign));
  FUZZ_CHECK(buffer != nullptr, "host malloc failed");
  unsigned char *region = buffer + offset;
  capheap::Heap heap = capheap::Heap::create(region, heap_size, cfg);
  if (offset % 4 != 0) {
    FUZZ_CHECK(!heap, "create() accepted a start that is not 4-byte aligned");
    std::free(buffer);
    return 0;
  }
  if (!heap) {
    FUZZ_CHECK(heap_size < 4096, "create() refused a region of 4 KiB or more");
    std::free(buffer);
    return 0;
  }
  FUZZ_CHECK(heap.granule() == static_cast<std::size_t>(cfg.granule), "granule differs");
  FUZZ_CHECK(heap.validate().ok(), "fresh heap does not validate");
  const capheap::HeapInfo initial = heap.info();
  FUZZ_CHECK(initial.free_blocks == 1 && initial.allocated_blocks == 0,
             "fresh heap is not one free block");
  const std::size_t g = heap.granule();

  Model model(heap, region, heap_size);
  std::size_t last_minimum = initial.minimum_free_bytes;

  // ---- Operations ----
  for (unsigned n = 0; !in.empty() && n < 600; ++n) {
    capheap_fuzz::count_operation();
    const std::uint8_t op = in.u8();
    switch (op % 9) {
      case 0:
      case 1: {  // allocate
        const std::size_t want = decode_size(in, heap);
        const std::size_t largest = heap.largest_free_block();
        auto *p = static_cast<unsigned char *>(heap.allocate(want));
        if (want == 0) FUZZ_CHECK(p == nullptr, "allocate(0) returned a block");
        if (want != 0 && want <= largest)
          FUZZ_CHECK(p != nullptr, "allocate(size <= largest_free_block) failed");
        if (want > largest)
          FUZZ_CHECK(p == nullptr, "allocate(size > largest_free_block) succeeded");
        if (p != nullptr) model.admit(p, want, true);
        break;
      }
      case 2: {  // "calloc": count * size, zeroed by the caller
        const std::size_t count = in.u8() % 9;
        const std::size_t each = decode_size(in, heap);
        if (count != 0 && each > SIZE_MAX / count) break;  // calloc's own overflow check
        const std::size_t want = count * each;
        const std::size_t largest = heap.largest_free_block();
        auto *p = static_cast<unsigned char *>(heap.allocate(want));
        if (want == 0) FUZZ_CHECK(p == nullptr, "calloc-style allocate(0) returned a block");
        if (want != 0 && want <= largest) FUZZ_CHECK(p != nullptr, "calloc-style allocate failed");
        if (want > largest) FUZZ_CHECK(p == nullptr, "calloc-style allocate above largest worked");
        if (p != nullptr) {
          std::memset(p, 0, want);
          for (std::size_t i = 0; i < want; ++i)
            FUZZ_CHECK(p[i] == 0, "zeroed block does not read back as zero");
          model.admit(p, want, false);
        }
        break;
      }
      case 3: {  // allocate_aligned
        const std::size_t want = decode_size(in, heap);
        const std::size_t align = decode_alignment(in);
        const std::size_t off = decode_offset(in);
        const std::size_t largest = heap.largest_free_block();
        const std::size_t any = largest_free_usable(heap);
        FUZZ_CHECK(largest <= any, "largest_free_block() above every free block");
        auto *p = static_cast<unsigned char *>(heap.allocate_aligned(want, align, off));
        const bool invalid = want == 0 || !is_pow2(align) || off % 4 != 0;
        // Granule-aligned pointers: (p + off) % align is off % align when align <= g, and can
        // only be 0 when off is a multiple of g otherwise.
        const bool impossible =
            !invalid && ((align <= g && off % align != 0) || (align > g && off % g != 0));
        if (invalid) FUZZ_CHECK(p == nullptr, "allocate_aligned accepted invalid arguments");
        if (impossible) FUZZ_CHECK(p == nullptr, "allocate_aligned: unsatisfiable but not NULL");
        if (want > any)
          FUZZ_CHECK(p == nullptr, "aligned allocation above every free block worked");
        if (!invalid && !impossible && align <= g && want <= largest)
          FUZZ_CHECK(p != nullptr, "allocate_aligned with align <= granule failed");
        if (p != nullptr) {
          FUZZ_CHECK((reinterpret_cast<std::uintptr_t>(p) + off) % align == 0,
                     "allocate_aligned: (p + offset) not aligned");
          model.admit(p, want, true);
        }
        break;
      }
      case 4: {  // reallocate
        const std::uint8_t sel = in.u8();
        const std::size_t want = decode_size(in, heap);
        const std::size_t largest = heap.largest_free_block();
        Block *b = (sel & 0x80) != 0 ? nullptr : model.pick(sel);
        if (b == nullptr) {
          auto *p = static_cast<unsigned char *>(heap.reallocate(nullptr, want));
          if (want == 0) FUZZ_CHECK(p == nullptr, "realloc(NULL, 0) returned a block");
          if (want != 0 && want <= largest) FUZZ_CHECK(p != nullptr, "realloc(NULL, n) failed");
          if (want > largest) FUZZ_CHECK(p == nullptr, "realloc(NULL, n > largest) worked");
          if (p != nullptr) model.admit(p, want, true);
          break;
        }
        FUZZ_CHECK(intact(*b, b->usable), "payload changed before realloc");
        const Block old = *b;
        auto *p = static_cast<unsigned char *>(heap.reallocate(old.p, want));
        if (want == 0) {
          FUZZ_CHECK(p == nullptr, "realloc(p, 0) returned a block");
          model.forget(old);
          break;
        }
        // Shrinking is in place, except with comprehensive poisoning, where realloc is always
        // malloc-copy-free as in ESP-IDF (spec §4.5) and needs room for the new block.
        if (want <= old.requested && heap.poisoning() != capheap::Poisoning::kComprehensive)
          FUZZ_CHECK(p != nullptr, "shrinking realloc failed");
        if (want <= largest) FUZZ_CHECK(p != nullptr, "realloc(p, n <= largest) failed");
        if (p == nullptr) {
          FUZZ_CHECK(heap.usable_size(old.p) == old.usable, "failed realloc changed the block");
          FUZZ_CHECK(intact(old, old.usable), "failed realloc changed the payload");
          break;
        }
        const std::size_t keep = std::min(old.requested, want);
        for (std::size_t i = 0; i < keep; ++i)
          FUZZ_CHECK(p[i] == pattern(old.id, i), "realloc lost payload bytes");
        model.forget(old);
        model.admit(p, want, false);
        break;
      }
      case 5: {  // deallocate
        Block *b = model.pick(in.u8());
        if (b == nullptr) {
          heap.deallocate(nullptr);
          break;
        }
        model.free_block(b);
        break;
      }
      case 6:  // info + walk
        model.check_info();
        model.check_walk();
        break;
      case 7: {  // largest_free_block: exactly usable, one granule more fails
        const std::size_t largest = heap.largest_free_block();
        if (largest == 0) break;
        const std::uint8_t sel = in.u8();
        if ((sel & 1) != 0) {
          auto *p = static_cast<unsigned char *>(heap.allocate(largest + g));
          FUZZ_CHECK(p == nullptr, "allocate(largest_free_block + granule) succeeded");
        } else {
          auto *p = static_cast<unsigned char *>(heap.allocate(largest));
          FUZZ_CHECK(p != nullptr, "allocate(largest_free_block) failed");
          model.admit(p, largest, true);
        }
        break;
      }
      default: {  // validate_step
        const capheap::StepResult r = heap.validate_step(1 + in.u8() % 8u);
        FUZZ_CHECK(r.validation.ok(), "validate_step found a fault");
        FUZZ_CHECK(r.visited >= 1, "validate_step visited no block");
        break;
      }
    }
    const capheap::Validation v = heap.validate();
    if (!v.ok()) std::fprintf(stderr, "validate: %s\n", capheap::fault_text(v.fault));
    FUZZ_CHECK(v.ok(), "validate() failed after an operation");
    const capheap::HeapInfo info = heap.info();
    FUZZ_CHECK(info.allocated_blocks == model.live(), "allocated_blocks != live count");
    FUZZ_CHECK(info.minimum_free_bytes <= last_minimum, "minimum_free_bytes went up");
    FUZZ_CHECK(info.minimum_free_bytes <= info.total_free_bytes, "minimum above free bytes");
    last_minimum = info.minimum_free_bytes;
  }

  // ---- Free everything: back to one free block of the initial size ----
  model.check_info();
  model.check_walk();
  while (Block *b = model.pick(0))
    model.free_block(b);
  FUZZ_CHECK(heap.validate().ok(), "heap does not validate after freeing everything");
  const capheap::HeapInfo end = heap.info();
  FUZZ_CHECK(end.free_blocks == 1 && end.allocated_blocks == 0, "not one free block at the end");
  FUZZ_CHECK(end.total_free_bytes == initial.total_free_bytes, "free bytes not back to initial");
  FUZZ_CHECK(end.largest_free_block == initial.largest_free_block,
             "largest free block not back to initial");
  std::free(buffer);
  return 0;
}
