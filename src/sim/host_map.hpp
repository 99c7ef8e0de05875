// sim/host_map.hpp — a chip's memory inside the host process: every region, D/IRAM instruction
// alias and the external RAM mapped with mmap, and the chip layout translated to host addresses.
//
// Design (capheap_host.h is the user-facing contract; docs/design.md describes the simulator):
//
// * Backing store. All internal RAM lives in one memfd (memfd_create), the external RAM in a
//   second one; both are sized with ftruncate, so untouched memory costs nothing and reads as 0.
// * Data spans. Regions are widened to whole pages and merged where they share or touch pages; each
//   merged span is one MAP_SHARED mapping of the internal memfd at its own file offset.
// * Instruction aliases (D/IRAM regions with an `iram_address` different from their start, chips
//   whose buses see D/IRAM in the same order: ESP32-S2/S3/C2/C3). The alias range is a second
//   MAP_SHARED view of the same memfd pages (same file offsets), so a word written through the
//   instruction address reads back through the data address and vice versa. That requires the
//   distance between the two addresses to be a multiple of the page size; if it is not (or alias
//   ranges would overlap inconsistently), every alias range of the chip gets separate anonymous
//   memory instead and a warning is printed.
// * ESP32's inverted D/IRAM (capheap_layout_t::diram_inverted): the instruction bus sees the data
//   window word-reversed (the word at data address d is the word at instruction address
//   iram_high - 4 - (d - dram_low)). Page mappings cannot reverse words, so the instruction window
//   is backed by its own anonymous memory. What is emulated: the alias addresses themselves (the
//   registry computes them exactly as the device does), the hidden word that heap_caps stores at
//   the alias and reads back on free/realloc/get_allocated_size, and reads/writes of code through
//   the alias pointer. What is not: cross-bus visibility — bytes written through the instruction
//   alias do not appear at the data address (and the reverse), and the instruction window is not
//   cleared when the block is freed.
// * Placement. With `chip_addresses`, every mapping is placed at its chip address with
//   MAP_FIXED_NOREPLACE, so host pointers equal device pointers. If any of them fails (the range is
//   in use, below vm.mmap_min_addr, inside a sanitizer's shadow memory, or the kernel ignored the
//   flag), everything is unmapped and the whole chip is placed elsewhere instead: one PROT_NONE
//   reservation covering the chip's address range, positioned so that host address ≡ chip address
//   (mod 4 GiB) — the relative layout is kept, translation is a single offset, no span straddles a
//   4 GiB boundary (the registry's 32-bit hidden alias word relies on that) and the low 32 bits of
//   a host pointer are the chip address. If even that reservation fails, each mapping gets its own
//   reservation with the same congruence.
//
// Host-only (Linux: memfd_create, MAP_FIXED_NOREPLACE). Not thread-safe.
#ifndef CAPHEAP_SIM_HOST_MAP_HPP
#define CAPHEAP_SIM_HOST_MAP_HPP

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "capheap_layout.h"

namespace capheap::sim {

/// The mapped memory of one simulated chip and its layout in host addresses.
class HostMap {
 public:
  /// What a mapping holds.
  enum class Kind : std::uint8_t {
    kData,         ///< internal RAM at its data addresses (internal memfd)
    kAliasShared,  ///< instruction alias: a second view of the data pages (same memfd offsets)
    kAliasOwn,     ///< instruction alias backed by its own anonymous memory (not shared with data)
    kExtRam,       ///< external RAM (PSRAM memfd)
  };

  /// One mmap'ed range, page-aligned.
  struct Mapping {
    std::uintptr_t chip_lo = 0;  ///< chip address of the first byte
    std::uintptr_t chip_hi = 0;  ///< chip address past the last byte
    std::uintptr_t host_lo = 0;  ///< host address of the first byte (0 until mapped)
    Kind kind = Kind::kData;
    std::uint64_t file_offset = 0;  ///< offset in the memfd (kData, kAliasShared, kExtRam)
  };

  HostMap() = default;
  ~HostMap() { unmap(); }
  HostMap(const HostMap &) = delete;
  HostMap &operator=(const HostMap &) = delete;

  /// Maps the memory of `chip` (chip addresses) plus `ext_ram_size` bytes of external RAM at
  /// chip.ext_ram_start (0 = none, or the chip has no external RAM), and builds host_layout().
  /// Returns an empty string on success, else a message (nothing stays mapped). Warnings (alias
  /// fallbacks) go to stderr. May throw std::bad_alloc.
  std::string map(const capheap_layout_t &chip, std::size_t ext_ram_size, bool chip_addresses);

  /// Unmaps everything and closes the memfds. Idempotent.
  void unmap() noexcept;

  /// fork() support. The mappings are MAP_SHARED views of memfds, which a child would share with
  /// its parent: both would allocate from the same heaps. Before fork (the caller holds every
  /// heap's lock, so the memory is consistent), prepare_fork() copies the memory into new memfds;
  /// in the child, detach_after_fork() maps those copies over the same addresses (aliases
  /// included) and keeps them; in the parent, end_fork_in_parent() closes them. The copy must be
  /// taken before fork(): taken in the child it would show whatever the parent did since.
  /// prepare_fork() returns false if a copy could not be made; detach_after_fork() returns false
  /// if there was no copy or mapping it failed (the child then keeps sharing). The last two use
  /// only system calls.
  bool prepare_fork() noexcept;
  bool detach_after_fork() noexcept;
  void end_fork_in_parent() noexcept;

  bool mapped() const noexcept { return !maps_.empty(); }
  /// True if every range sits at its chip address.
  bool at_chip_addresses() const noexcept { return at_chip_; }
  /// The chip layout with every address translated to the host (valid until unmap()).
  const capheap_layout_t &host_layout() const noexcept { return layout_; }
  /// Host address of the external RAM (0 if none is mapped) and its size in bytes.
  std::uintptr_t ext_ram_host() const noexcept { return ext_host_; }
  std::size_t ext_ram_size() const noexcept { return ext_size_; }
  const std::vector<Mapping> &mappings() const noexcept { return maps_; }

  /// Host address → chip address; 0 outside every mapping.
  std::uintptr_t to_chip(std::uintptr_t host) const noexcept;
  /// Chip address → host address; 0 outside every mapping.
  std::uintptr_t to_host(std::uintptr_t chip) const noexcept;
  /// For printed reports: like to_chip, but an address just past a mapping (a region's end) maps
  /// too, and an address outside every mapping is returned unchanged.
  std::uintptr_t display(std::uintptr_t host) const noexcept;

  /// The host page size used for every mapping.
  static std::size_t page_size() noexcept;

 private:
  std::string plan(const capheap_layout_t &chip, std::size_t ext_ram_size);
  bool place_at_chip_addresses() noexcept;
  std::string place_elsewhere();
  bool map_one(Mapping &m, std::uintptr_t where, bool fixed_replace) noexcept;
  void unmap_ranges() noexcept;
  std::uintptr_t translate_any(std::uintptr_t chip, bool is_end) const noexcept;
  void build_host_layout(const capheap_layout_t &chip);

  std::vector<Mapping> maps_;                                         // sorted by chip_lo
  std::vector<std::pair<std::uintptr_t, std::size_t>> reservations_;  // PROT_NONE ranges
  int fd_int_ = -1;
  int fd_ext_ = -1;
  int fork_int_ = -1;  ///< prepare_fork()'s copies (-1: none)
  int fork_ext_ = -1;
  bool at_chip_ = false;
  std::uintptr_t ext_host_ = 0;
  std::size_t ext_size_ = 0;
  // Single-offset translation (fallback with one reservation): host = chip + offset_.
  bool single_offset_ = false;
  std::uintptr_t offset_ = 0;

  capheap_layout_t layout_{};
  std::vector<capheap_memory_region_t> regions_;
  std::vector<capheap_reserved_range_t> reserved_;
};

}  // namespace capheap::sim

#endif  // CAPHEAP_SIM_HOST_MAP_HPP
