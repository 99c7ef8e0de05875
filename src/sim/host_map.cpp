// host_map.cpp — mapping a chip's memory into the host process (see host_map.hpp for the design).

#include "sim/host_map.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace capheap::sim {

namespace {

#ifdef MAP_FIXED_NOREPLACE
constexpr int kNoReplace = MAP_FIXED_NOREPLACE;
#else
constexpr int kNoReplace = 0;  // the address is then only a hint; map_one checks the result
#endif

std::string hex(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%08" PRIX64, v);
  return buf;
}

std::string range_text(const HostMap::Mapping &m) {
  return hex(m.chip_lo) + "-" + hex(m.chip_hi);
}

const char *kind_text(HostMap::Kind k) {
  switch (k) {
    case HostMap::Kind::kData:
      return "internal RAM";
    case HostMap::Kind::kAliasShared:
    case HostMap::Kind::kAliasOwn:
      return "instruction alias";
    case HostMap::Kind::kExtRam:
      return "external RAM";
  }
  return "?";
}

// A memory file of `size` bytes (zero-filled, grows nothing until touched); -1 and errno on
// failure.
int make_memory_file(const char *name, std::uint64_t size) {
#ifdef __linux__
  const int fd = memfd_create(name, MFD_CLOEXEC);
#else
  char path[] = "/tmp/capheap-XXXXXX";
  const int fd = mkstemp(path);
  if (fd >= 0) unlink(path);
  (void)name;
#endif
  if (fd < 0) return -1;
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    const int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

// Reserves `len` bytes of address space (PROT_NONE) at a host address h with
// h ≡ chip_lo (mod 4 GiB) on 64-bit hosts (anywhere on 32-bit hosts). Returns 0 on failure.
std::uintptr_t reserve_congruent(std::uintptr_t chip_lo, std::size_t len) noexcept {
  constexpr int kFlags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  if constexpr (sizeof(std::uintptr_t) >= 8) {
    const std::uint64_t k4G = std::uint64_t(1) << 32;
    const std::size_t total = len + static_cast<std::size_t>(k4G);
    void *p = mmap(nullptr, total, PROT_NONE, kFlags, -1, 0);
    if (p == MAP_FAILED) return 0;
    const std::uintptr_t base = reinterpret_cast<std::uintptr_t>(p);
    const std::uintptr_t h =
        base + ((chip_lo - base) & static_cast<std::uintptr_t>(k4G - 1));  // both page-aligned
    if (h > base) munmap(p, h - base);
    const std::uintptr_t end = base + total, hend = h + len;
    if (end > hend) munmap(reinterpret_cast<void *>(hend), end - hend);
    return h;
  } else {
    (void)chip_lo;
    void *p = mmap(nullptr, len, PROT_NONE, kFlags, -1, 0);
    return p == MAP_FAILED ? 0 : reinterpret_cast<std::uintptr_t>(p);
  }
}

// Sorts [lo, hi) intervals and merges the ones that overlap or touch.
void merge_intervals(std::vector<HostMap::Mapping> &v) {
  std::sort(v.begin(), v.end(), [](const HostMap::Mapping &a, const HostMap::Mapping &b) {
    return a.chip_lo < b.chip_lo;
  });
  std::vector<HostMap::Mapping> out;
  for (const HostMap::Mapping &m : v) {
    if (!out.empty() && m.chip_lo <= out.back().chip_hi) {
      out.back().chip_hi = std::max(out.back().chip_hi, m.chip_hi);
    } else {
      out.push_back(m);
    }
  }
  v.swap(out);
}

}  // namespace

std::size_t HostMap::page_size() noexcept {
  static const std::size_t page = [] {
    const long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? static_cast<std::size_t>(p) : std::size_t(4096);
  }();
  return page;
}

// ================================================================================================
// Planning: which ranges to map, and where their bytes live
// ================================================================================================

std::string HostMap::plan(const capheap_layout_t &chip, std::size_t ext_ram_size) {
  const std::uintptr_t page = page_size();
  const auto down = [page](std::uintptr_t a) { return a & ~(page - 1); };
  const auto up = [page](std::uintptr_t a) { return (a + page - 1) & ~(page - 1); };

  // 1. Data spans: regions widened to pages; regions sharing or touching pages share one mapping.
  std::vector<Mapping> data;
  for (std::size_t i = 0; i < chip.region_count; ++i) {
    const capheap_memory_region_t &r = chip.regions[i];
    if (r.size == 0) continue;
    Mapping m;
    m.chip_lo = down(r.start);
    m.chip_hi = up(r.start + r.size);
    m.kind = Kind::kData;
    data.push_back(m);
  }
  merge_intervals(data);
  std::uint64_t internal_bytes = 0;
  for (Mapping &m : data) {
    m.file_offset = internal_bytes;
    internal_bytes += m.chip_hi - m.chip_lo;
  }
  const auto span_of = [&data](std::uintptr_t a) -> const Mapping * {
    for (const Mapping &m : data)
      if (a >= m.chip_lo && a < m.chip_hi) return &m;
    return nullptr;
  };

  // 2. Instruction aliases. `own` collects every alias range in case they need their own memory.
  std::vector<Mapping> shared, own;
  bool share = !chip.diram_inverted;
  std::string why_not_shared;
  for (std::size_t i = 0; i < chip.region_count; ++i) {
    const capheap_memory_region_t &r = chip.regions[i];
    // No alias, or the same address on both buses (ESP32-C6/H2/P4): nothing to map.
    if (r.iram_address == 0 || r.iram_address == r.start || r.size == 0) continue;
    const std::uintptr_t end = r.start + r.size;
    Mapping o;
    o.kind = Kind::kAliasOwn;
    if (chip.diram_inverted && r.start >= chip.diram_dram_low && end <= chip.diram_dram_high) {
      // Word-reversed window: the region's instruction range is mirrored inside the window.
      o.chip_lo = down(chip.diram_iram_low + (chip.diram_dram_high - end));
      o.chip_hi = up(chip.diram_iram_low + (chip.diram_dram_high - r.start));
    } else {
      o.chip_lo = down(r.iram_address);
      o.chip_hi = up(r.iram_address + r.size);
    }
    own.push_back(o);
    if (!share) continue;
    const std::uintptr_t delta = r.iram_address - r.start;  // modular: alias may be below data
    if ((delta & (page - 1)) != 0) {
      share = false;
      why_not_shared = "region " + hex(r.start) + " and its instruction alias " +
                       hex(r.iram_address) + " are not a whole number of host pages (" +
                       std::to_string(page) + " bytes) apart";
      continue;
    }
    const Mapping *span = span_of(r.start);
    Mapping s;
    s.chip_lo = down(r.start) + delta;
    s.chip_hi = up(end) + delta;
    s.kind = Kind::kAliasShared;
    s.file_offset = span->file_offset + (down(r.start) - span->chip_lo);
    shared.push_back(s);
  }
  if (chip.diram_inverted && chip.diram_iram_high > chip.diram_iram_low) {
    Mapping o;
    o.kind = Kind::kAliasOwn;
    o.chip_lo = down(chip.diram_iram_low);
    o.chip_hi = up(chip.diram_iram_high);
    own.push_back(o);
  }
  if (share) {
    // Merge alias pieces that overlap or touch, provided they view consecutive file offsets.
    std::sort(shared.begin(), shared.end(),
              [](const Mapping &a, const Mapping &b) { return a.chip_lo < b.chip_lo; });
    std::vector<Mapping> merged;
    for (const Mapping &s : shared) {
      if (!merged.empty() && s.chip_lo < merged.back().chip_hi) {
        Mapping &b = merged.back();
        if (s.file_offset != b.file_offset + (s.chip_lo - b.chip_lo)) {
          share = false;
          why_not_shared = "instruction alias ranges " + range_text(b) + " and " + range_text(s) +
                           " overlap but view different data";
          break;
        }
        b.chip_hi = std::max(b.chip_hi, s.chip_hi);
      } else if (!merged.empty() && s.chip_lo == merged.back().chip_hi &&
                 s.file_offset ==
                     merged.back().file_offset + (merged.back().chip_hi - merged.back().chip_lo)) {
        merged.back().chip_hi = s.chip_hi;
      } else {
        merged.push_back(s);
      }
    }
    shared.swap(merged);
  }
  if (!share && !chip.diram_inverted && !own.empty()) {
    std::fprintf(stderr,
                 "capheap: warning: %s: %s; every instruction alias of this chip gets separate "
                 "memory, so code written through an alias is not visible at the data address\n",
                 chip.chip != nullptr ? chip.chip : "chip", why_not_shared.c_str());
  }
  std::vector<Mapping> aliases = share ? shared : own;
  if (!share) merge_intervals(aliases);

  // 3. External RAM.
  std::vector<Mapping> all = data;
  all.insert(all.end(), aliases.begin(), aliases.end());
  if (ext_ram_size > 0 && chip.ext_ram_type >= 0) {
    Mapping e;
    e.chip_lo = down(chip.ext_ram_start);
    e.chip_hi = up(chip.ext_ram_start + ext_ram_size);
    e.kind = Kind::kExtRam;
    e.file_offset = 0;
    all.push_back(e);
    ext_size_ = ext_ram_size;
  }
  std::sort(all.begin(), all.end(),
            [](const Mapping &a, const Mapping &b) { return a.chip_lo < b.chip_lo; });
  for (std::size_t i = 1; i < all.size(); ++i) {
    if (all[i].chip_lo < all[i - 1].chip_hi) {
      return std::string("layout: ") + kind_text(all[i - 1].kind) + " " + range_text(all[i - 1]) +
             " overlaps " + kind_text(all[i].kind) + " " + range_text(all[i]);
    }
  }
  maps_ = std::move(all);

  // 4. Backing files.
  if (internal_bytes > 0) {
    fd_int_ = make_memory_file("capheap-internal-ram", internal_bytes);
    if (fd_int_ < 0) return std::string("cannot create the internal RAM file: ") + strerror(errno);
  }
  if (ext_size_ > 0) {
    const Mapping &e = *std::find_if(maps_.begin(), maps_.end(),
                                     [](const Mapping &m) { return m.kind == Kind::kExtRam; });
    fd_ext_ = make_memory_file("capheap-external-ram", e.chip_hi - e.chip_lo);
    if (fd_ext_ < 0) return std::string("cannot create the external RAM file: ") + strerror(errno);
  }
  return {};
}

// ================================================================================================
// Placement
// ================================================================================================

bool HostMap::map_one(Mapping &m, std::uintptr_t where, bool fixed_replace) noexcept {
  const std::size_t len = m.chip_hi - m.chip_lo;
  int flags = 0, fd = -1;
  switch (m.kind) {
    case Kind::kData:
    case Kind::kAliasShared:
      flags = MAP_SHARED;
      fd = fd_int_;
      break;
    case Kind::kExtRam:
      flags = MAP_SHARED;
      fd = fd_ext_;
      break;
    case Kind::kAliasOwn:
      flags = MAP_PRIVATE | MAP_ANONYMOUS;
      break;
  }
  flags |= fixed_replace ? MAP_FIXED : kNoReplace;
  void *want = reinterpret_cast<void *>(where);
  void *p = mmap(want, len, PROT_READ | PROT_WRITE, flags, fd,
                 fd < 0 ? 0 : static_cast<off_t>(m.file_offset));
  if (p == MAP_FAILED) return false;
  if (p != want) {  // a kernel without MAP_FIXED_NOREPLACE took the address as a hint
    munmap(p, len);
    return false;
  }
  m.host_lo = where;
  return true;
}

bool HostMap::place_at_chip_addresses() noexcept {
  for (Mapping &m : maps_) {
    // Address 0 would mean "anywhere" to mmap: a chip range there can never sit at its address.
    if (m.chip_lo == 0 || !map_one(m, m.chip_lo, false)) {
      unmap_ranges();
      return false;
    }
  }
  return true;
}

std::string HostMap::place_elsewhere() {
  const std::uintptr_t lo = maps_.front().chip_lo;
  std::uintptr_t hi = 0;
  for (const Mapping &m : maps_)
    hi = std::max(hi, m.chip_hi);
  // One reservation for the whole chip keeps the relative layout (a single offset).
  if (const std::uintptr_t h = reserve_congruent(lo, hi - lo)) {
    reservations_.emplace_back(h, hi - lo);
    single_offset_ = true;
    offset_ = h - lo;
    for (Mapping &m : maps_) {
      if (!map_one(m, m.chip_lo + offset_, true)) {
        const int e = errno;
        unmap_ranges();
        return "cannot map " + std::string(kind_text(m.kind)) + " " + range_text(m) + ": " +
               strerror(e);
      }
    }
    return {};
  }
  // Otherwise each range on its own, still congruent to its chip address modulo 4 GiB.
  for (Mapping &m : maps_) {
    const std::size_t len = m.chip_hi - m.chip_lo;
    const std::uintptr_t h = reserve_congruent(m.chip_lo, len);
    if (h != 0) reservations_.emplace_back(h, len);
    if (h == 0 || !map_one(m, h, true)) {
      const int e = errno;
      unmap_ranges();
      return "cannot map " + std::string(kind_text(m.kind)) + " " + range_text(m) + ": " +
             strerror(e);
    }
  }
  return {};
}

void HostMap::unmap_ranges() noexcept {
  for (Mapping &m : maps_) {
    if (m.host_lo != 0) munmap(reinterpret_cast<void *>(m.host_lo), m.chip_hi - m.chip_lo);
    m.host_lo = 0;
  }
  for (const auto &r : reservations_)
    munmap(reinterpret_cast<void *>(r.first), r.second);
  reservations_.clear();
  single_offset_ = false;
  offset_ = 0;
}

std::string HostMap::map(const capheap_layout_t &chip, std::size_t ext_ram_size,
                         bool chip_addresses) {
  unmap();
  std::string err = plan(chip, ext_ram_size);
  if (err.empty() && maps_.empty()) err = "layout: the chip has no memory regions";
  if (err.empty()) {
    at_chip_ = chip_addresses && place_at_chip_addresses();
    if (!at_chip_) err = place_elsewhere();
  }
  if (!err.empty()) {
    unmap();
    return err;
  }
  for (const Mapping &m : maps_)
    if (m.kind == Kind::kExtRam) ext_host_ = m.host_lo + (chip.ext_ram_start - m.chip_lo);
  build_host_layout(chip);
  return {};
}

bool HostMap::prepare_fork() noexcept {
  end_fork_in_parent();  // (a copy left over from a fork that failed)
  for (const int fd : {fd_int_, fd_ext_}) {
    if (fd < 0) continue;
    const bool ext = fd == fd_ext_;
    struct stat st {};
    if (fstat(fd, &st) != 0) return false;
    const int copy = memfd_create(ext ? "capheap-psram" : "capheap-ram", MFD_CLOEXEC);
    if (copy < 0) return false;
    (ext ? fork_ext_ : fork_int_) = copy;
    if (ftruncate(copy, st.st_size) != 0) return false;
    // What the data views show (aliases view the same pages), at the same file offsets.
    for (const Mapping &m : maps_) {
      const bool mine = ext ? m.kind == Kind::kExtRam : m.kind == Kind::kData;
      if (!mine || m.host_lo == 0) continue;
      const std::size_t len = m.chip_hi - m.chip_lo;
      const ssize_t n = pwrite(copy, reinterpret_cast<const void *>(m.host_lo), len,
                               static_cast<off_t>(m.file_offset));
      if (n != static_cast<ssize_t>(len)) return false;
    }
  }
  return true;
}

bool HostMap::detach_after_fork() noexcept {
  bool ok = true;
  for (int *fd : {&fd_int_, &fd_ext_}) {
    if (*fd < 0) continue;
    const bool ext = fd == &fd_ext_;
    int &copy = ext ? fork_ext_ : fork_int_;
    if (copy < 0) {
      ok = false;
      continue;
    }
    for (const Mapping &m : maps_) {
      const bool mine =
          ext ? m.kind == Kind::kExtRam : (m.kind == Kind::kData || m.kind == Kind::kAliasShared);
      if (!mine || m.host_lo == 0) continue;
      void *want = reinterpret_cast<void *>(m.host_lo);
      void *p = mmap(want, m.chip_hi - m.chip_lo, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
                     copy, static_cast<off_t>(m.file_offset));
      if (p != want) ok = false;
    }
    close(*fd);
    *fd = copy;
    copy = -1;
  }
  return ok;
}

void HostMap::end_fork_in_parent() noexcept {
  for (int *copy : {&fork_int_, &fork_ext_}) {
    if (*copy >= 0) close(*copy);
    *copy = -1;
  }
}

void HostMap::unmap() noexcept {
  end_fork_in_parent();
  unmap_ranges();
  maps_.clear();
  if (fd_int_ >= 0) close(fd_int_);
  if (fd_ext_ >= 0) close(fd_ext_);
  fd_int_ = fd_ext_ = -1;
  at_chip_ = false;
  ext_host_ = 0;
  ext_size_ = 0;
  layout_ = capheap_layout_t{};
  regions_.clear();
  reserved_.clear();
}

// ================================================================================================
// Translation
// ================================================================================================

std::uintptr_t HostMap::to_chip(std::uintptr_t host) const noexcept {
  for (const Mapping &m : maps_) {
    if (m.host_lo != 0 && host >= m.host_lo && host - m.host_lo < m.chip_hi - m.chip_lo)
      return m.chip_lo + (host - m.host_lo);
  }
  return 0;
}

std::uintptr_t HostMap::to_host(std::uintptr_t chip) const noexcept {
  for (const Mapping &m : maps_) {
    if (m.host_lo != 0 && chip >= m.chip_lo && chip < m.chip_hi)
      return m.host_lo + (chip - m.chip_lo);
  }
  return 0;
}

std::uintptr_t HostMap::display(std::uintptr_t host) const noexcept {
  if (const std::uintptr_t c = to_chip(host)) return c;
  if (host != 0) {
    if (const std::uintptr_t c = to_chip(host - 1)) return c + 1;
  }
  return host;
}

// Any chip address of the layout (also one outside the mapped pages, such as a window bound) to
// the host; `is_end` marks an exclusive end. 0 if it cannot be translated. (Address 0 is a real
// address here: Cortex-M ITCM starts there. Callers keep "unused" zero fields themselves.)
std::uintptr_t HostMap::translate_any(std::uintptr_t chip, bool is_end) const noexcept {
  if (at_chip_) return chip;
  if (single_offset_) return chip + offset_;
  const std::uintptr_t h = to_host(is_end ? chip - 1 : chip);
  return h == 0 ? 0 : (is_end ? h + 1 : h);
}

void HostMap::build_host_layout(const capheap_layout_t &chip) {
  layout_ = chip;
  regions_.assign(chip.regions, chip.regions + chip.region_count);
  for (capheap_memory_region_t &r : regions_) {
    // A region whose instruction address equals its data address has no alias to translate
    // (ESP-IDF: "proceed as default allocation" on ESP32-C6/H2/P4); capheap's registry would
    // otherwise treat every pointer of such a heap as an alias.
    r.iram_address =
        r.iram_address == 0 || r.iram_address == r.start ? 0 : translate_any(r.iram_address, false);
    r.start = translate_any(r.start, false);
  }
  // Regions keep the layout's order: it is the boot heaps' list order.
  reserved_.clear();
  for (std::size_t i = 0; i < chip.reserved_count; ++i) {
    const capheap_reserved_range_t &x = chip.reserved[i];
    if (at_chip_ || single_offset_) {
      reserved_.push_back({translate_any(x.start, false), translate_any(x.end, true), x.name});
      continue;
    }
    // Ranges placed separately: keep the part of the reservation inside each mapped range.
    for (const Mapping &m : maps_) {
      if (m.kind != Kind::kData) continue;
      const std::uintptr_t s = std::max(x.start, m.chip_lo), e = std::min(x.end, m.chip_hi);
      if (s < e)
        reserved_.push_back({m.host_lo + (s - m.chip_lo), m.host_lo + (e - m.chip_lo), x.name});
    }
  }
  layout_.regions = regions_.data();
  layout_.region_count = regions_.size();
  layout_.reserved = reserved_.data();
  layout_.reserved_count = reserved_.size();
  // Window bounds: all zero when the chip has no D/IRAM window.
  if (chip.diram_dram_high != 0) {
    layout_.diram_dram_low = translate_any(chip.diram_dram_low, false);
    layout_.diram_dram_high = translate_any(chip.diram_dram_high, true);
    layout_.diram_iram_low = translate_any(chip.diram_iram_low, false);
    layout_.diram_iram_high = translate_any(chip.diram_iram_high, true);
  }
  if (chip.ext_ram_type >= 0)
    layout_.ext_ram_start = ext_host_ != 0 ? ext_host_ : translate_any(chip.ext_ram_start, false);
}

}  // namespace capheap::sim
