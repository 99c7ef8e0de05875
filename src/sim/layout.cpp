// sim/layout.cpp — loading and validating chip layout files, and generating C tables from them.
//
// The parser reads the whole JSON document with nlohmann::json, then walks it section by section
// (options, types, type_aliases, regions, diram, ext_ram, reserved, align), building
// ChipLayout::Data. Every problem is reported through fail(), which throws a LayoutError that
// parse_layout() turns into LoadResult::error; nothing else escapes but std::bad_alloc.
#include "sim/layout.hpp"
#include "sim/file_text.hpp"
#include "sim/layout_builtin.hpp"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <utility>

#include <nlohmann/json.hpp>

#include "sim/caps_names.hpp"

#ifndef CAPHEAP_LAYOUT_SOURCE_DIR
#define CAPHEAP_LAYOUT_SOURCE_DIR ""
#endif
#ifndef CAPHEAP_LAYOUT_INSTALL_DIR
#define CAPHEAP_LAYOUT_INSTALL_DIR ""
#endif

namespace capheap::sim {

// ---- ChipLayout -----------------------------------------------------------------------------

struct ChipLayout::Data {
  std::string chip;
  std::string description;
  std::string path;
  // Owned strings and arrays that `c` points into. Filled completely before `c` is set up and
  // never changed afterwards (the object is shared as const).
  std::vector<std::string> type_names;
  std::vector<std::string> reserved_names;
  std::vector<capheap_memory_type_t> types;
  std::vector<capheap_memory_region_t> regions;
  std::vector<capheap_reserved_range_t> reserved;
  capheap_layout_t c{};
  std::size_t psram_size = 0;
  std::size_t static_data_size = 0;
  std::size_t iram_code_size = 0;
  std::size_t extmem_threshold = 0;
  std::size_t internal_reserve = 0;
  bool rtc_fast_heap = false;
  bool memprot = false;
  std::optional<std::uintptr_t> app_usable_dram_end;
  std::vector<LayoutOptionValue> options;
};

const capheap_layout_t &ChipLayout::c_layout() const noexcept {
  return data_->c;
}
const std::string &ChipLayout::chip() const noexcept {
  return data_->chip;
}
const std::string &ChipLayout::description() const noexcept {
  return data_->description;
}
const std::string &ChipLayout::path() const noexcept {
  return data_->path;
}
std::size_t ChipLayout::psram_size() const noexcept {
  return data_->psram_size;
}
std::size_t ChipLayout::static_data_size() const noexcept {
  return data_->static_data_size;
}
std::size_t ChipLayout::iram_code_size() const noexcept {
  return data_->iram_code_size;
}
std::size_t ChipLayout::extmem_threshold() const noexcept {
  return data_->extmem_threshold;
}
std::size_t ChipLayout::internal_reserve() const noexcept {
  return data_->internal_reserve;
}
bool ChipLayout::rtc_fast_heap() const noexcept {
  return data_->rtc_fast_heap;
}
bool ChipLayout::memprot() const noexcept {
  return data_->memprot;
}
std::optional<std::uintptr_t> ChipLayout::app_usable_dram_end() const noexcept {
  return data_->app_usable_dram_end;
}
const std::vector<LayoutOptionValue> &ChipLayout::options() const noexcept {
  return data_->options;
}
int ChipLayout::find_type(std::string_view name) const noexcept {
  for (std::size_t i = 0; i < data_->type_names.size(); ++i) {
    if (data_->type_names[i] == name) return static_cast<int>(i);
  }
  return -1;
}

// The one place allowed to call ChipLayout's private constructor.
struct LayoutLoader {
  static ChipLayout make(std::shared_ptr<const ChipLayout::Data> data) {
    return ChipLayout(std::move(data));
  }
};

namespace {

using json = nlohmann::json;

constexpr std::uint64_t kAddressLimit = 0x100000000ull;  // layouts describe 32-bit chips

struct LayoutError {
  std::string message;
};

std::string hex(std::uint64_t value) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%" PRIX64, value);
  return buf;
}

// ---- Options ----------------------------------------------------------------------------------

enum class OptionKind { kSize, kBool };

struct OptionSpec {
  const char *name;
  OptionKind kind;
  bool always_declared;  // exists for every chip, with loader_default when the file is silent
  std::uint64_t loader_default;
};

enum OptionId : std::size_t {
  kPsramSize,
  kStaticDataSize,
  kIramCodeSize,
  kExtmemThreshold,
  kInternalReserve,
  kRtcFastHeap,
  kMemprot,
  kOptionCount
};

constexpr OptionSpec kOptionSpecs[kOptionCount] = {
    {"psram_size", OptionKind::kSize, true, 0},
    {"static_data_size", OptionKind::kSize, false, 0},
    {"iram_code_size", OptionKind::kSize, false, 0},
    {"extmem_threshold", OptionKind::kSize, true, 16384},
    {"internal_reserve", OptionKind::kSize, true, 32768},
    {"rtc_fast_heap", OptionKind::kBool, false, 0},
    {"memprot", OptionKind::kBool, false, 0},
};

std::optional<std::size_t> find_option(std::string_view name) {
  for (std::size_t i = 0; i < kOptionCount; ++i) {
    if (name == kOptionSpecs[i].name) return i;
  }
  return std::nullopt;
}

struct OptionState {
  bool declared = false;
  bool overridden = false;  // set through LayoutOptions
  std::uint64_t value = 0;
};

// A `when` condition: an option name, optionally negated with a leading '!'.
struct Condition {
  std::size_t option = 0;
  bool negated = false;
};

// Number parsing for "0x..." / decimal strings; nullopt for malformed text, UINT64_MAX + overflow
// flag for values that do not fit.
std::optional<std::uint64_t> parse_number_text(std::string_view text, bool &overflow) {
  overflow = false;
  unsigned base = 10;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    base = 16;
    text.remove_prefix(2);
  }
  if (text.empty()) return std::nullopt;
  std::uint64_t value = 0;
  for (char c : text) {
    unsigned digit = 0;
    if (c >= '0' && c <= '9') {
      digit = static_cast<unsigned>(c - '0');
    } else if (base == 16 && c >= 'a' && c <= 'f') {
      digit = static_cast<unsigned>(c - 'a') + 10;
    } else if (base == 16 && c >= 'A' && c <= 'F') {
      digit = static_cast<unsigned>(c - 'A') + 10;
    } else {
      return std::nullopt;
    }
    if (value > (UINT64_MAX - digit) / base) overflow = true;
    if (!overflow) value = value * base + digit;
  }
  return value;
}

bool is_c_identifier(std::string_view s) {
  if (s.empty()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    const bool digit = c >= '0' && c <= '9';
    if (!alpha && !(digit && i > 0)) return false;
  }
  return true;
}

bool is_chip_name(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// The keys of the document object.
bool is_top_level_key(std::string_view key) {
  static constexpr std::string_view kKeys[] = {
      "chip",     "description", "comment",      "app_usable_dram_end",
      "options",  "types",       "type_aliases", "regions",
      "reserved", "diram",       "ext_ram",      "align"};
  return std::find(std::begin(kKeys), std::end(kKeys), key) != std::end(kKeys);
}

std::string index_path(const std::string &array, std::size_t i) {
  return array + "[" + std::to_string(i) + "]";
}

// ---- The parser -------------------------------------------------------------------------------

struct ParsedRegion {
  std::size_t index;  // position in the JSON array (for messages)
  std::uint64_t start;
  std::uint64_t size;
  std::uint16_t type;
  bool startup_stack;
  std::uint64_t iram;
};

struct ParsedReserved {
  std::size_t index;
  std::uint64_t start;
  std::uint64_t end;
  std::string name;
  std::optional<std::size_t> size_option;
};

class Parser {
 public:
  Parser(std::string_view file, const LayoutOptions &options, std::string_view expected_chip)
      : file_(file), user_(options), expected_chip_(expected_chip) {}

  std::shared_ptr<ChipLayout::Data> run(const json &root) {
    data_ = std::make_shared<ChipLayout::Data>();
    data_->path = file_;
    expect_object(root, "");
    for (auto it = root.begin(); it != root.end(); ++it) {
      if (!is_top_level_key(it.key())) fail("", "unknown key '" + it.key() + "'");
    }
    parse_chip(root);
    parse_options(root);
    parse_types(root);
    parse_aliases(root);
    parse_regions(root);
    parse_diram(root);
    check_iram_aliases();
    parse_ext_ram(root);
    check_alias_window();
    check_psram();
    parse_reserved(root);
    check_address_zero();
    parse_align(root);
    parse_app_usable_dram_end(root);
    finish();
    return data_;
  }

 private:
  // -- Errors and primitive readers --

  [[noreturn]] void fail(const std::string &path, const std::string &message) const {
    std::string text = file_;
    text += ": ";
    if (!path.empty()) {
      text += path;
      text += ": ";
    }
    text += message;
    throw LayoutError{std::move(text)};
  }

  // An error about an option value: "option NAME: msg" when the caller set it, else reported at
  // options.NAME in the file.
  [[noreturn]] void fail_option(std::size_t id, const std::string &message) const {
    if (options_[id].overridden)
      fail("", std::string("option ") + kOptionSpecs[id].name + ": " + message);
    fail(std::string("options.") + kOptionSpecs[id].name, message);
  }

  void expect_object(const json &value, const std::string &path) const {
    if (!value.is_object()) fail(path, "expected an object");
  }

  void check_keys(const json &object, const std::string &path,
                  std::initializer_list<std::string_view> allowed) const {
    for (auto it = object.begin(); it != object.end(); ++it) {
      const std::string &key = it.key();
      if (key == "comment") continue;
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        fail(path, "unknown key '" + key + "'");
      }
    }
  }

  static std::string child(const std::string &path, std::string_view key) {
    std::string out = path;
    if (!out.empty()) out += '.';
    out += key;
    return out;
  }

  const json &require(const json &object, const std::string &path, const char *key) const {
    auto it = object.find(key);
    if (it == object.end()) fail(path, std::string("missing '") + key + "'");
    return *it;
  }

  const json *optional(const json &object, const char *key) const {
    auto it = object.find(key);
    return it == object.end() ? nullptr : &*it;
  }

  std::string string_value(const json &value, const std::string &path) const {
    if (!value.is_string()) fail(path, "expected a string");
    return value.get<std::string>();
  }

  bool bool_value(const json &value, const std::string &path) const {
    if (!value.is_boolean()) fail(path, "expected true or false");
    return value.get<bool>();
  }

  // A non-negative integer up to 0xFFFFFFFF, written as a JSON number or a string ("0x2000",
  // "8192").
  std::uint64_t number(const json &value, const std::string &path) const {
    if (value.is_number_unsigned()) {
      const std::uint64_t v = value.get<std::uint64_t>();
      if (v >= kAddressLimit) fail(path, std::to_string(v) + " does not fit in 32 bits");
      return v;
    }
    if (value.is_number_integer()) {
      fail(path, std::to_string(value.get<std::int64_t>()) + " is negative");
    }
    if (!value.is_string()) fail(path, "expected an integer or a string such as \"0x2000\"");
    const std::string text = value.get<std::string>();
    bool overflow = false;
    const std::optional<std::uint64_t> v = parse_number_text(text, overflow);
    if (!v) fail(path, "bad number '" + text + "'");
    if (overflow || *v >= kAddressLimit) fail(path, "'" + text + "' does not fit in 32 bits");
    return *v;
  }

  std::uint64_t aligned_number(const json &value, const std::string &path) const {
    const std::uint64_t v = number(value, path);
    if (v % 4 != 0) fail(path, hex(v) + " is not a multiple of 4");
    return v;
  }

  // -- Conditions --

  Condition condition(const std::string &text, const std::string &path) const {
    Condition c;
    std::string_view name = text;
    if (!name.empty() && name.front() == '!') {
      c.negated = true;
      name.remove_prefix(1);
    }
    const std::optional<std::size_t> id = find_option(name);
    if (!id) fail(path, "unknown option '" + std::string(name) + "'");
    if (kOptionSpecs[*id].kind != OptionKind::kBool) {
      fail(path, "option '" + std::string(name) + "' is not true/false");
    }
    if (!options_[*id].declared) {
      fail(path, "option '" + std::string(name) + "' is not in this file's options");
    }
    c.option = *id;
    return c;
  }

  bool holds(const Condition &c) const { return (options_[c.option].value != 0) != c.negated; }

  // True if the object has no `when` or its condition holds.
  bool active(const json &object, const std::string &path) const {
    const json *when = optional(object, "when");
    if (when == nullptr) return true;
    const std::string where = child(path, "when");
    return holds(condition(string_value(*when, where), where));
  }

  // -- Sections --

  void parse_chip(const json &root) {
    const std::string chip = string_value(require(root, "", "chip"), "chip");
    if (!is_chip_name(chip)) {
      fail("chip", "'" + chip + "' must be lower-case letters, digits, '_' or '-'");
    }
    if (!expected_chip_.empty() && chip != expected_chip_) {
      fail("chip",
           "'" + chip + "' does not match the file name '" + std::string(expected_chip_) + "'");
    }
    data_->chip = chip;
    if (const json *d = optional(root, "description")) {
      data_->description = string_value(*d, "description");
    }
  }

  void parse_options(const json &root) {
    for (std::size_t i = 0; i < kOptionCount; ++i) {
      if (kOptionSpecs[i].always_declared) {
        options_[i].declared = true;
        options_[i].value = kOptionSpecs[i].loader_default;
      }
    }
    if (const json *object = optional(root, "options")) {
      expect_object(*object, "options");
      for (auto it = object->begin(); it != object->end(); ++it) {
        if (it.key() == "comment") continue;
        const std::optional<std::size_t> id = find_option(it.key());
        if (!id) fail("options", "unknown option '" + it.key() + "'");
        const std::string path = "options." + it.key();
        OptionState &state = options_[*id];
        state.declared = true;
        state.value = kOptionSpecs[*id].kind == OptionKind::kBool
                          ? (bool_value(it.value(), path) ? 1u : 0u)
                          : number(it.value(), path);
      }
    }
    set_user(kPsramSize, user_.psram_size);
    set_user(kStaticDataSize, user_.static_data_size);
    set_user(kIramCodeSize, user_.iram_code_size);
    set_user(kExtmemThreshold, user_.extmem_threshold);
    set_user(kInternalReserve, user_.internal_reserve);
    set_user(kRtcFastHeap, user_.rtc_fast_heap);
    set_user(kMemprot, user_.memprot);

    for (std::size_t i = 0; i < kOptionCount; ++i) {
      if (kOptionSpecs[i].kind == OptionKind::kSize && options_[i].value >= kAddressLimit) {
        fail_option(i, hex(options_[i].value) + " does not fit in 32 bits");
      }
    }
  }

  void set_user(std::size_t id, const std::optional<std::size_t> &value) {
    if (!value) return;
    require_declared(id);
    options_[id].overridden = true;
    options_[id].value = *value;
  }

  void set_user(std::size_t id, const std::optional<bool> &value) {
    if (!value) return;
    require_declared(id);
    options_[id].overridden = true;
    options_[id].value = *value ? 1u : 0u;
  }

  void require_declared(std::size_t id) const {
    if (!options_[id].declared) {
      fail("", std::string("option ") + kOptionSpecs[id].name + ": not available for chip '" +
                   data_->chip + "'");
    }
  }

  void parse_types(const json &root) {
    const json &array = require(root, "", "types");
    if (!array.is_array()) fail("types", "expected an array");
    for (std::size_t i = 0; i < array.size(); ++i) {
      const std::string path = index_path("types", i);
      const json &entry = array[i];
      expect_object(entry, path);
      check_keys(entry, path, {"name", "caps", "when"});
      const std::string name = string_value(require(entry, path, "name"), child(path, "name"));
      if (name.empty()) fail(child(path, "name"), "empty name");
      all_type_names_.push_back(name);
      const json &caps = require(entry, path, "caps");
      const std::string caps_path = child(path, "caps");
      if (!caps.is_array()) fail(caps_path, "expected an array");
      if (caps.size() != CAPHEAP_PRIORITY_LEVELS) {
        fail(caps_path, "expected " + std::to_string(CAPHEAP_PRIORITY_LEVELS) +
                            " priority levels, got " + std::to_string(caps.size()));
      }
      capheap_memory_type_t type{};
      for (std::size_t level = 0; level < CAPHEAP_PRIORITY_LEVELS; ++level) {
        type.caps[level] = caps_value(caps[level], index_path(caps_path, level));
      }
      if (!active(entry, path)) continue;
      if (type_index_.count(name) != 0) {
        fail(child(path, "name"), "duplicate memory type '" + name + "'");
      }
      type_index_[name] = static_cast<std::uint16_t>(data_->type_names.size());
      data_->type_names.push_back(name);
      data_->types.push_back(type);
    }
    if (data_->types.empty()) fail("types", "no memory types");
    if (data_->types.size() > 0xFFFF) fail("types", "more than 65535 memory types");
  }

  std::uint32_t caps_value(const json &value, const std::string &path) const {
    if (value.is_string()) {
      const CapsParse parsed = parse_caps(value.get<std::string>());
      if (!parsed.ok()) fail(path, parsed.error);
      return parsed.caps;
    }
    return static_cast<std::uint32_t>(number(value, path));
  }

  void parse_aliases(const json &root) {
    const json *object = optional(root, "type_aliases");
    if (object == nullptr) return;
    expect_object(*object, "type_aliases");
    for (auto it = object->begin(); it != object->end(); ++it) {
      if (it.key() == "comment") continue;
      const std::string &alias = it.key();
      const std::string path = "type_aliases." + alias;
      if (std::find(all_type_names_.begin(), all_type_names_.end(), alias) !=
          all_type_names_.end()) {
        fail(path, "'" + alias + "' is already a memory type");
      }
      expect_object(it.value(), path);
      std::optional<std::string> chosen;
      for (auto c = it.value().begin(); c != it.value().end(); ++c) {
        if (c.key() == "comment") continue;  // allowed in every object (docs/layouts.md)
        const std::string target = string_value(c.value(), child(path, c.key()));
        if (!holds(condition(c.key(), path))) continue;
        if (chosen) fail(path, "more than one condition holds");
        chosen = target;
        if (type_index_.count(target) == 0) {
          fail(child(path, c.key()), "unknown memory type '" + target + "'");
        }
      }
      if (!chosen) fail(path, "no condition holds");
      aliases_[alias] = type_index_.at(*chosen);
    }
  }

  std::uint16_t resolve_type(const std::string &name, const std::string &path) const {
    auto it = type_index_.find(name);
    if (it != type_index_.end()) return it->second;
    auto alias = aliases_.find(name);
    if (alias != aliases_.end()) return alias->second;
    fail(path, "unknown memory type '" + name + "'");
  }

  void parse_regions(const json &root) {
    const json &array = require(root, "", "regions");
    if (!array.is_array()) fail("regions", "expected an array");
    for (std::size_t i = 0; i < array.size(); ++i) {
      const std::string path = index_path("regions", i);
      const json &entry = array[i];
      expect_object(entry, path);
      check_keys(entry, path, {"start", "size", "type", "iram", "startup_stack", "when"});
      ParsedRegion r{};
      r.index = i;
      r.start = aligned_number(require(entry, path, "start"), child(path, "start"));
      r.size = aligned_number(require(entry, path, "size"), child(path, "size"));
      if (r.size == 0) fail(child(path, "size"), "must not be 0");
      if (r.start + r.size > kAddressLimit) {
        fail(path, "region " + hex(r.start) + "+" + hex(r.size) + " ends past 0xFFFFFFFF");
      }
      const std::string type_name = string_value(require(entry, path, "type"), child(path, "type"));
      if (const json *iram = optional(entry, "iram")) {
        r.iram = aligned_number(*iram, child(path, "iram"));
        if (r.iram != 0 && r.iram + r.size > kAddressLimit) {
          fail(child(path, "iram"),
               "alias " + hex(r.iram) + "+" + hex(r.size) + " ends past 0xFFFFFFFF");
        }
      }
      if (const json *stack = optional(entry, "startup_stack")) {
        r.startup_stack = bool_value(*stack, child(path, "startup_stack"));
      }
      if (!active(entry, path)) continue;
      r.type = resolve_type(type_name, child(path, "type"));
      // Regions keep the file's order: it is the boot heaps' list order (ESP-IDF keeps its region
      // table's order, e.g. the ESP32's RTC RAM comes last although its address is lowest).
      for (const ParsedRegion &prev : regions_) {
        if (r.start < prev.start + prev.size && prev.start < r.start + r.size) {
          fail(path, "overlaps " + index_path("regions", prev.index) + " (" + hex(prev.start) +
                         "-" + hex(prev.start + prev.size) + ")");
        }
      }
      regions_.push_back(r);
    }
    if (regions_.empty()) fail("regions", "no regions");
  }

  void parse_diram(const json &root) {
    const json *object = optional(root, "diram");
    if (object == nullptr) return;
    expect_object(*object, "diram");
    check_keys(*object, "diram", {"inverted", "dram_low", "dram_high", "iram_low", "iram_high"});
    if (const json *inverted = optional(*object, "inverted")) {
      diram_inverted_ = bool_value(*inverted, "diram.inverted");
    }
    dram_low_ = aligned_number(require(*object, "diram", "dram_low"), "diram.dram_low");
    dram_high_ = aligned_number(require(*object, "diram", "dram_high"), "diram.dram_high");
    iram_low_ = aligned_number(require(*object, "diram", "iram_low"), "diram.iram_low");
    iram_high_ = aligned_number(require(*object, "diram", "iram_high"), "diram.iram_high");
    if (dram_high_ <= dram_low_) {
      fail("diram.dram_high", hex(dram_high_) + " is not above dram_low " + hex(dram_low_));
    }
    if (iram_high_ <= iram_low_) {
      fail("diram.iram_high", hex(iram_high_) + " is not above iram_low " + hex(iram_low_));
    }
    if (dram_high_ - dram_low_ != iram_high_ - iram_low_) {
      fail("diram", "data window (" + hex(dram_high_ - dram_low_) +
                        " bytes) and instruction window (" + hex(iram_high_ - iram_low_) +
                        " bytes) differ in size");
    }
    has_diram_ = true;
  }

  // A region inside the D/IRAM data window must carry the alias the window implies (or none).
  // Regions outside it (RTC fast memory, IRAM-only blocks) may carry any alias.
  void check_iram_aliases() const {
    if (!has_diram_) return;
    for (const ParsedRegion &r : regions_) {
      // An aliased region that begins below the window and ends inside it would have two
      // instruction mappings (its own alias and the window's), and on an inverted window two
      // directions.
      if (r.iram != 0 && r.iram != r.start && r.start < dram_low_ && r.start + r.size > dram_low_) {
        fail(index_path("regions", r.index),
             "crosses the start of the D/IRAM window (" + hex(dram_low_) + ")");
      }
      if (r.iram == 0 || r.start < dram_low_ || r.start >= dram_high_) continue;
      const std::string path = index_path("regions", r.index);
      const std::uint64_t end = r.start + r.size;
      if (end > dram_high_) {
        fail(path, "crosses the end of the D/IRAM window (" + hex(dram_high_) + ")");
      }
      const std::uint64_t expected =
          diram_inverted_ ? iram_high_ - (end - dram_low_) : iram_low_ + (r.start - dram_low_);
      if (r.iram != expected) {
        fail(child(path, "iram"), "alias " + hex(r.iram) +
                                      " does not match the D/IRAM window (expected " +
                                      hex(expected) + ")");
      }
    }
  }

  void parse_ext_ram(const json &root) {
    const json *object = optional(root, "ext_ram");
    if (object == nullptr) return;
    expect_object(*object, "ext_ram");
    check_keys(*object, "ext_ram", {"start", "max_size", "type"});
    ext_start_ = aligned_number(require(*object, "ext_ram", "start"), "ext_ram.start");
    // (heap_caps_add_region refuses start 0: the external RAM could never become a heap.)
    if (ext_start_ == 0) fail("ext_ram.start", "must not be 0");
    ext_max_ = aligned_number(require(*object, "ext_ram", "max_size"), "ext_ram.max_size");
    if (ext_max_ == 0) fail("ext_ram.max_size", "must not be 0");
    if (ext_start_ + ext_max_ > kAddressLimit) {
      fail("ext_ram", "window " + hex(ext_start_) + "+" + hex(ext_max_) + " ends past 0xFFFFFFFF");
    }
    const std::string type = string_value(require(*object, "ext_ram", "type"), "ext_ram.type");
    ext_type_ = resolve_type(type, "ext_ram.type");
    for (const ParsedRegion &r : regions_) {
      if (r.start < ext_start_ + ext_max_ && ext_start_ < r.start + r.size) {
        fail("ext_ram", "window " + hex(ext_start_) + "-" + hex(ext_start_ + ext_max_) +
                            " overlaps " + index_path("regions", r.index));
      }
    }
  }

  // An instruction alias other than the region's own address (ESP32-C6/H2/P4 give their start).
  static bool has_alias(const ParsedRegion &r) { return r.iram != 0 && r.iram != r.start; }

  // The caps layer takes every address from the lowest instruction alias to the end of the highest
  // one for an alias (Registry::is_iram_alias: one window, one comparison on free), and reads the
  // data address from the word before it. A region or the external RAM window there would have its
  // pointers taken for aliases (free reads a block header as an address), and two aliases over the
  // same bus addresses cannot both be the chip's. Refused here, before the host maps anything or a
  // firmware table is generated.
  void check_alias_window() const {
    const ParsedRegion *low = nullptr;
    const ParsedRegion *high = nullptr;
    for (std::size_t a = 0; a < regions_.size(); ++a) {
      const ParsedRegion &r = regions_[a];
      if (!has_alias(r)) continue;
      for (std::size_t b = 0; b < a; ++b) {
        const ParsedRegion &o = regions_[b];
        if (has_alias(o) && r.iram < o.iram + o.size && o.iram < r.iram + r.size) {
          fail(child(index_path("regions", r.index), "iram"),
               "alias " + hex(r.iram) + "-" + hex(r.iram + r.size) + " overlaps the alias of " +
                   index_path("regions", o.index) + " (" + hex(o.iram) + "-" +
                   hex(o.iram + o.size) + ")");
        }
      }
      if (low == nullptr || r.iram < low->iram) low = &r;
      if (high == nullptr || r.iram + r.size > high->iram + high->size) high = &r;
    }
    if (low == nullptr) return;
    const std::uint64_t lo = low->iram, hi = high->iram + high->size;
    const std::string window = "the instruction alias window " + hex(lo) + "-" + hex(hi) + " (" +
                               index_path("regions", low->index) + ".iram to " +
                               index_path("regions", high->index) +
                               ".iram): its pointers would be taken for aliases";
    for (const ParsedRegion &r : regions_) {
      if (r.start < hi && lo < r.start + r.size) {
        fail(index_path("regions", r.index),
             "region " + hex(r.start) + "-" + hex(r.start + r.size) + " lies in " + window);
      }
    }
    if (ext_type_ && ext_start_ < hi && lo < ext_start_ + ext_max_) {
      fail("ext_ram",
           "window " + hex(ext_start_) + "-" + hex(ext_start_ + ext_max_) + " lies in " + window);
    }
  }

  void check_psram() const {
    const std::uint64_t psram = options_[kPsramSize].value;
    if (psram == 0) return;
    if (!ext_type_) fail_option(kPsramSize, "chip '" + data_->chip + "' has no external RAM");
    if (psram % 4 != 0) fail_option(kPsramSize, hex(psram) + " is not a multiple of 4");
    if (psram > ext_max_) {
      fail_option(kPsramSize, hex(psram) + " exceeds ext_ram.max_size " + hex(ext_max_));
    }
  }

  void parse_reserved(const json &root) {
    const json &array = require(root, "", "reserved");
    if (!array.is_array()) fail("reserved", "expected an array");
    std::vector<ParsedReserved> active_ranges;
    for (std::size_t i = 0; i < array.size(); ++i) {
      const std::string path = index_path("reserved", i);
      const json &entry = array[i];
      expect_object(entry, path);
      check_keys(entry, path, {"name", "start", "end", "size", "size_option", "when"});
      ParsedReserved r{};
      r.index = i;
      r.name = string_value(require(entry, path, "name"), child(path, "name"));
      if (r.name.empty()) fail(child(path, "name"), "empty name");
      r.start = aligned_number(require(entry, path, "start"), child(path, "start"));
      const json *end = optional(entry, "end");
      const json *size = optional(entry, "size");
      const json *size_option = optional(entry, "size_option");
      const int given = (end != nullptr) + (size != nullptr) + (size_option != nullptr);
      if (given == 0) fail(path, "needs one of 'end', 'size', 'size_option'");
      if (given > 1) fail(path, "give only one of 'end', 'size', 'size_option'");
      if (end != nullptr) {
        r.end = aligned_number(*end, child(path, "end"));
        if (r.end <= r.start) {
          fail(child(path, "end"), hex(r.end) + " is not above start " + hex(r.start));
        }
      } else if (size != nullptr) {
        const std::uint64_t bytes = aligned_number(*size, child(path, "size"));
        if (bytes == 0) fail(child(path, "size"), "must not be 0");
        r.end = r.start + bytes;
      } else {
        const std::string where = child(path, "size_option");
        const std::string name = string_value(*size_option, where);
        const std::optional<std::size_t> id = find_option(name);
        if (!id) fail(where, "unknown option '" + name + "'");
        if (kOptionSpecs[*id].kind != OptionKind::kSize) {
          fail(where, "option '" + name + "' is not a size");
        }
        if (!options_[*id].declared)
          fail(where, "option '" + name + "' is not in this file's options");
        r.size_option = id;
        r.end = r.start + ((options_[*id].value + 3) & ~std::uint64_t{3});
      }
      if (r.end > kAddressLimit) {
        fail(path, "'" + r.name + "' " + hex(r.start) + "-" + hex(r.end) + " ends past 0xFFFFFFFF" +
                       size_hint(r));
      }
      if (!active(entry, path)) continue;
      if (r.end == r.start) continue;  // an option-sized range of size 0
      if (!covered(r.start, r.end)) {
        fail(path, "'" + r.name + "' " + hex(r.start) + "-" + hex(r.end) +
                       " is not inside the regions" + size_hint(r));
      }
      active_ranges.push_back(std::move(r));
    }
    std::stable_sort(
        active_ranges.begin(), active_ranges.end(),
        [](const ParsedReserved &a, const ParsedReserved &b) { return a.start < b.start; });
    for (std::size_t i = 1; i < active_ranges.size(); ++i) {
      const ParsedReserved &a = active_ranges[i - 1];
      const ParsedReserved &b = active_ranges[i];
      if (b.start < a.end) {
        const ParsedReserved &later = a.index > b.index ? a : b;
        const ParsedReserved &earlier = a.index > b.index ? b : a;
        fail(index_path("reserved", later.index),
             "'" + later.name + "' " + hex(later.start) + "-" + hex(later.end) + " overlaps " +
                 index_path("reserved", earlier.index) + " '" + earlier.name + "' " +
                 hex(earlier.start) + "-" + hex(earlier.end));
      }
    }
    reserved_ = std::move(active_ranges);
  }

  // No heap can start at address 0: it is the null pointer, so the engine refuses a heap there and
  // heap_caps_init drops the piece without a word. A device would then have no heap in that region
  // while the simulator (which maps such a chip elsewhere) has one. A region at 0 needs a
  // reservation over its first bytes, as the Cortex-M files' null_guard.
  void check_address_zero() const {
    for (const ParsedRegion &r : regions_) {
      if (r.start != 0) continue;
      const bool guarded = std::any_of(reserved_.begin(), reserved_.end(),
                                       [](const ParsedReserved &x) { return x.start == 0; });
      if (!guarded) {
        fail(index_path("regions", r.index),
             "starts at address 0, where no heap can start: reserve its first bytes");
      }
    }
  }

  static std::string size_hint(const ParsedReserved &r) {
    if (!r.size_option) return "";
    return std::string(" (size from option ") + kOptionSpecs[*r.size_option].name + ")";
  }

  // True if every byte of [start, end) lies in some active region. Walks the regions by address:
  // in file order, a range across two adjacent regions listed high one first was refused.
  bool covered(std::uint64_t start, std::uint64_t end) const {
    std::vector<const ParsedRegion *> by_start;
    by_start.reserve(regions_.size());
    for (const ParsedRegion &r : regions_)
      by_start.push_back(&r);
    std::sort(by_start.begin(), by_start.end(),
              [](const ParsedRegion *a, const ParsedRegion *b) { return a->start < b->start; });
    std::uint64_t at = start;
    for (const ParsedRegion *r : by_start) {
      if (r->start <= at && at < r->start + r->size) at = r->start + r->size;
      if (at >= end) return true;
    }
    return false;
  }

  void parse_align(const json &root) {
    const json *object = optional(root, "align");
    if (object == nullptr) return;
    expect_object(*object, "align");
    check_keys(*object, "align",
               {"dma_internal", "cache_line_ext", "cache_line_int", "simd", "dma_desc_axi"});
    const std::pair<const char *, std::uint32_t *> fields[] = {
        {"dma_internal", &align_.dma_internal},     {"cache_line_ext", &align_.cache_line_ext},
        {"cache_line_int", &align_.cache_line_int}, {"simd", &align_.simd},
        {"dma_desc_axi", &align_.dma_desc_axi},
    };
    for (const auto &field : fields) {
      const json *value = optional(*object, field.first);
      if (value == nullptr) continue;
      const std::string path = std::string("align.") + field.first;
      const std::uint64_t v = number(*value, path);
      if ((v & (v - 1)) != 0) fail(path, std::to_string(v) + " is not 0 or a power of two");
      *field.second = static_cast<std::uint32_t>(v);
    }
  }

  void parse_app_usable_dram_end(const json &root) {
    const json *value = optional(root, "app_usable_dram_end");
    if (value == nullptr) return;
    const std::uint64_t end = aligned_number(*value, "app_usable_dram_end");
    const bool found = std::any_of(regions_.begin(), regions_.end(),
                                   [end](const ParsedRegion &r) { return r.start == end; });
    if (!found) fail("app_usable_dram_end", "no region starts at " + hex(end));
    data_->app_usable_dram_end = static_cast<std::uintptr_t>(end);
  }

  // -- Assembly --

  void finish() {
    ChipLayout::Data &d = *data_;
    d.regions.reserve(regions_.size());
    for (const ParsedRegion &r : regions_) {
      capheap_memory_region_t region{};
      region.start = static_cast<std::uintptr_t>(r.start);
      region.size = static_cast<std::size_t>(r.size);
      region.type = r.type;
      region.startup_stack = r.startup_stack;
      region.iram_address = static_cast<std::uintptr_t>(r.iram);
      d.regions.push_back(region);
    }
    d.reserved_names.reserve(reserved_.size());
    for (const ParsedReserved &r : reserved_)
      d.reserved_names.push_back(r.name);
    d.reserved.reserve(reserved_.size());
    for (std::size_t i = 0; i < reserved_.size(); ++i) {
      capheap_reserved_range_t range{};
      range.start = static_cast<std::uintptr_t>(reserved_[i].start);
      range.end = static_cast<std::uintptr_t>(reserved_[i].end);
      range.name = d.reserved_names[i].c_str();
      d.reserved.push_back(range);
    }
    for (std::size_t i = 0; i < d.types.size(); ++i)
      d.types[i].name = d.type_names[i].c_str();

    d.psram_size = static_cast<std::size_t>(options_[kPsramSize].value);
    d.static_data_size = static_cast<std::size_t>(options_[kStaticDataSize].value);
    d.iram_code_size = static_cast<std::size_t>(options_[kIramCodeSize].value);
    d.extmem_threshold = static_cast<std::size_t>(options_[kExtmemThreshold].value);
    d.internal_reserve = static_cast<std::size_t>(options_[kInternalReserve].value);
    d.rtc_fast_heap = options_[kRtcFastHeap].value != 0;
    d.memprot = options_[kMemprot].value != 0;
    for (std::size_t i = 0; i < kOptionCount; ++i) {
      if (!options_[i].declared) continue;
      d.options.push_back(LayoutOptionValue{kOptionSpecs[i].name, options_[i].value,
                                            kOptionSpecs[i].kind == OptionKind::kBool,
                                            !options_[i].overridden});
    }

    capheap_layout_t &c = d.c;
    c.chip = d.chip.c_str();
    c.types = d.types.data();
    c.type_count = d.types.size();
    c.regions = d.regions.data();
    c.region_count = d.regions.size();
    c.reserved = d.reserved.empty() ? nullptr : d.reserved.data();
    c.reserved_count = d.reserved.size();
    c.align = align_;
    c.diram_inverted = diram_inverted_;
    c.diram_dram_low = static_cast<std::uintptr_t>(dram_low_);
    c.diram_dram_high = static_cast<std::uintptr_t>(dram_high_);
    c.diram_iram_low = static_cast<std::uintptr_t>(iram_low_);
    c.diram_iram_high = static_cast<std::uintptr_t>(iram_high_);
    c.ext_ram_start = ext_type_ ? static_cast<std::uintptr_t>(ext_start_) : 0;
    c.ext_ram_max_size = ext_type_ ? static_cast<std::size_t>(ext_max_) : 0;
    c.ext_ram_type = ext_type_ ? static_cast<int>(*ext_type_) : -1;
  }

  std::string file_;
  LayoutOptions user_;
  std::string_view expected_chip_;
  std::shared_ptr<ChipLayout::Data> data_;
  OptionState options_[kOptionCount];
  std::vector<std::string> all_type_names_;  // active or not, for alias clash checks
  std::map<std::string, std::uint16_t, std::less<>> type_index_;  // active types
  std::map<std::string, std::uint16_t, std::less<>> aliases_;
  std::vector<ParsedRegion> regions_;     // active, in file (heap list) order
  std::vector<ParsedReserved> reserved_;  // active, sorted
  bool has_diram_ = false;
  bool diram_inverted_ = false;
  std::uint64_t dram_low_ = 0, dram_high_ = 0, iram_low_ = 0, iram_high_ = 0;
  std::uint64_t ext_start_ = 0, ext_max_ = 0;
  std::optional<std::uint16_t> ext_type_;
  capheap_hw_alignment_t align_{};
};

// Follows json::parse's callback events to refuse an object that names a key twice (nlohmann keeps
// the last value silently, so a second "size" in a region would quietly win). Reports the object's
// JSON path, as the other messages do.
class DuplicateKeyCheck {
 public:
  explicit DuplicateKeyCheck(std::string_view file) : file_(file) {}

  bool operator()(int, json::parse_event_t event, json &parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        element();
        frames_.push_back(Frame{event == json::parse_event_t::array_start, 0, {}, {}});
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        if (!frames_.empty()) frames_.pop_back();
        break;
      case json::parse_event_t::key:
        if (!frames_.empty() && parsed.is_string()) {
          Frame &object = frames_.back();
          const std::string &key = parsed.get_ref<const std::string &>();
          // Below an unknown top-level key the loader reports that key instead (a path made of
          // the file's own text could pass for another message, e.g. "invalid JSON: ...").
          const bool below_unknown = frames_.size() > 1 && !is_top_level_key(frames_[0].key);
          if (!object.keys.insert(key).second && !below_unknown) {
            std::string text = file_ + ": ";
            const std::string path = object_path();
            if (!path.empty()) text += path + ": ";
            throw LayoutError{text + "duplicate key '" + key + "'"};
          }
          object.key = key;
        }
        break;
      case json::parse_event_t::value:
        element();
        break;
    }
    return true;
  }

 private:
  struct Frame {
    bool array;
    std::size_t elements;  // arrays: elements begun so far (the current one is elements - 1)
    std::string key;       // objects: the key whose value is being read
    std::set<std::string, std::less<>> keys;
  };

  // A value begins: in an array, it is the next element.
  void element() {
    if (!frames_.empty() && frames_.back().array) ++frames_.back().elements;
  }

  // The path of the innermost object (the frames below it name where it sits).
  std::string object_path() const {
    std::string path;
    for (std::size_t i = 0; i + 1 < frames_.size(); ++i) {
      const Frame &f = frames_[i];
      if (f.array) {
        path += "[" + std::to_string(f.elements - 1) + "]";
      } else {
        if (!path.empty()) path += '.';
        path += f.key;
      }
    }
    return path;
  }

  std::string file_;
  std::vector<Frame> frames_;
};

// Messages quote names from the file: control characters in them are escaped, so that an error
// stays one line (found by layout_fuzz: a key with a newline).
std::string one_line(const std::string &message) {
  std::string out;
  for (const char ch : message) {
    const auto u = static_cast<unsigned char>(ch);
    if (u >= 0x20 && u != 0x7F) {
      out += ch;
    } else {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xFu];
    }
  }
  return out;
}

bool looks_like_path(std::string_view s) {
  constexpr std::string_view kSuffix = ".json";
  return s.find('/') != std::string_view::npos ||
         (s.size() >= kSuffix.size() && s.substr(s.size() - kSuffix.size()) == kSuffix);
}

}  // namespace

// ---- Public functions -------------------------------------------------------------------------

LoadResult parse_layout(std::string_view json_text, std::string_view filename,
                        const LayoutOptions &options, std::string_view expected_chip) {
  LoadResult result;
  json root;
  try {
    DuplicateKeyCheck check(filename);
    root = json::parse(json_text.begin(), json_text.end(),
                       [&check](int depth, json::parse_event_t event, json &parsed) {
                         return check(depth, event, parsed);
                       });
  } catch (const LayoutError &e) {
    result.error = one_line(e.message);
    return result;
  } catch (const json::parse_error &e) {
    std::string what = e.what();
    const std::size_t bracket = what.find("] ");
    if (bracket != std::string::npos) what.erase(0, bracket + 2);
    result.error = std::string(filename) + ": invalid JSON: " + what;
    return result;
  } catch (const json::exception &e) {
    // Number overflow (out_of_range.406, e.g. 1e999) carries no position: locate the quoted token.
    std::string what = e.what();
    const std::size_t bracket = what.find("] ");
    if (bracket != std::string::npos) what.erase(0, bracket + 2);
    std::string where;
    const std::size_t q1 = what.find('\'');
    const std::size_t q2 = q1 == std::string::npos ? q1 : what.find('\'', q1 + 1);
    if (q2 != std::string::npos && q2 > q1 + 1) {
      const std::size_t at = json_text.find(std::string_view(what).substr(q1 + 1, q2 - q1 - 1));
      if (at != std::string_view::npos) {
        std::size_t line = 1, column = 1;
        for (std::size_t i = 0; i < at; ++i, ++column)
          if (json_text[i] == '\n') ++line, column = 0;
        where = " at line " + std::to_string(line) + ", column " + std::to_string(column);
      }
    }
    result.error = std::string(filename) + ": invalid JSON" + where + ": " + what;
    return result;
  }
  try {
    Parser parser(filename, options, expected_chip);
    result.layout = LayoutLoader::make(parser.run(root));
  } catch (const LayoutError &e) {
    result.error = one_line(e.message);
  }
  return result;
}

std::vector<std::string> layout_search_path() {
  std::vector<std::string> dirs;
  if (const char *env = std::getenv("CAPHEAP_LAYOUT_DIR")) {
    std::string_view rest = env;
    while (!rest.empty()) {
      const std::size_t colon = rest.find(':');
      const std::string_view dir = rest.substr(0, colon);
      if (!dir.empty()) dirs.emplace_back(dir);
      if (colon == std::string_view::npos) break;
      rest.remove_prefix(colon + 1);
    }
  }
  for (const char *dir : {CAPHEAP_LAYOUT_SOURCE_DIR, CAPHEAP_LAYOUT_INSTALL_DIR}) {
    if (dir[0] != '\0' && std::find(dirs.begin(), dirs.end(), dir) == dirs.end()) {
      dirs.emplace_back(dir);
    }
  }
  return dirs;
}

namespace {
const BuiltinLayout *find_builtin(std::string_view name) {
  for (std::size_t i = 0; i < kBuiltinLayoutCount; ++i)
    if (name == kBuiltinLayouts[i].name) return &kBuiltinLayouts[i];
  return nullptr;
}
}  // namespace

LoadResult load_layout(std::string_view chip_or_path, const LayoutOptions &options) {
  LoadResult result;
  std::string file;
  std::string expected_chip;
  if (looks_like_path(chip_or_path)) {
    file = std::string(chip_or_path);
  } else {
    // A file on the search path overrides the built-in copy (edit a layout without rebuilding).
    const std::vector<std::string> dirs = layout_search_path();
    for (const std::string &dir : dirs) {
      std::error_code ec;
      const std::string candidate = dir + "/" + std::string(chip_or_path) + ".json";
      if (std::filesystem::is_regular_file(candidate, ec)) {
        file = candidate;
        break;
      }
    }
    if (file.empty()) {
      if (const BuiltinLayout *b = find_builtin(chip_or_path)) {
        return parse_layout(b->json, std::string("<built-in>/") + b->name + ".json", options,
                            chip_or_path);
      }
      result.error = "unknown chip '" + std::string(chip_or_path) + "' (searched: ";
      for (std::size_t i = 0; i < dirs.size(); ++i) {
        if (i != 0) result.error += ", ";
        result.error += dirs[i];
      }
      result.error += "; built in:";
      for (std::size_t i = 0; i < kBuiltinLayoutCount; ++i) {
        result.error += ' ';
        result.error += kBuiltinLayouts[i].name;
      }
      result.error += ")";
      return result;
    }
    expected_chip = std::string(chip_or_path);
  }
  std::string text;
  if (!read_text_file(file, text, result.error)) return result;
  return parse_layout(text, file, options, expected_chip);
}

std::vector<std::string> list_chips() {
  std::vector<std::string> chips;
  for (std::size_t i = 0; i < kBuiltinLayoutCount; ++i)
    chips.emplace_back(kBuiltinLayouts[i].name);
  for (const std::string &dir : layout_search_path()) {
    std::error_code ec;
    std::filesystem::directory_iterator it(dir, ec);
    if (ec) continue;
    for (const std::filesystem::directory_entry &entry : it) {
      std::error_code entry_ec;
      if (!entry.is_regular_file(entry_ec)) continue;
      const std::filesystem::path &p = entry.path();
      if (p.extension() == ".json") chips.push_back(p.stem().string());
    }
  }
  std::sort(chips.begin(), chips.end());
  chips.erase(std::unique(chips.begin(), chips.end()), chips.end());
  return chips;
}

// ---- C table generation -----------------------------------------------------------------------

namespace {

std::string c_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u >= 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\%03o", u);
      out += buf;
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

// Text safe inside a /* */ comment.
std::string c_comment(std::string_view s) {
  std::string out(s);
  for (std::size_t at = out.find("*/"); at != std::string::npos; at = out.find("*/", at)) {
    out.replace(at, 2, "* /");
  }
  return out;
}

std::string c_hex(std::uint64_t value) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%08" PRIX64 "u", value);
  return buf;
}

}  // namespace

std::string generate_c_table(const ChipLayout &layout, std::string_view symbol) {
  if (!is_c_identifier(symbol)) {
    throw std::invalid_argument("generate_c_table: '" + std::string(symbol) +
                                "' is not a C identifier");
  }
  const capheap_layout_t &c = layout.c_layout();
  const std::string sym(symbol);
  std::ostringstream out;

  out << "/* " << c_comment(layout.chip()) << " memory layout for capheap, generated from "
      << c_comment(layout.path()) << ".\n";
  if (!layout.description().empty()) out << " * " << c_comment(layout.description()) << "\n";
  out << " * Options:";
  for (const LayoutOptionValue &o : layout.options()) {
    out << " " << o.name << "=";
    if (o.is_bool) {
      out << (o.value != 0 ? "true" : "false");
    } else {
      out << (o.value < 10 ? std::to_string(o.value) : hex(o.value));
    }
  }
  out << "\n * Do not edit: regenerate from the layout file instead. */\n";
  out << "#include <stdbool.h>\n#include <stddef.h>\n#include <stdint.h>\n\n";
  out << "#include \"capheap_layout.h\"\n\n";

  out << "static const capheap_memory_type_t " << sym << "_types[" << c.type_count << "] = {\n";
  for (std::size_t i = 0; i < c.type_count; ++i) {
    const capheap_memory_type_t &t = c.types[i];
    out << "    {.name = " << c_string(t.name) << ", .caps = {";
    for (std::size_t level = 0; level < CAPHEAP_PRIORITY_LEVELS; ++level) {
      out << (level != 0 ? ", " : "") << c_hex(t.caps[level]);
    }
    out << "}}, /* " << i << ": ";
    for (std::size_t level = 0; level < CAPHEAP_PRIORITY_LEVELS; ++level) {
      out << (level != 0 ? " ; " : "") << format_caps(t.caps[level]);
    }
    out << " */\n";
  }
  out << "};\n\n";

  out << "static const capheap_memory_region_t " << sym << "_regions[" << c.region_count
      << "] = {\n";
  for (std::size_t i = 0; i < c.region_count; ++i) {
    const capheap_memory_region_t &r = c.regions[i];
    out << "    {.start = " << c_hex(r.start) << ", .size = " << c_hex(r.size)
        << ", .type = " << r.type << ", .startup_stack = " << (r.startup_stack ? "true" : "false")
        << ", .iram_address = " << c_hex(r.iram_address) << "}, /* "
        << c_comment(c.types[r.type].name) << " */\n";
  }
  out << "};\n\n";

  if (c.reserved_count != 0) {
    out << "static const capheap_reserved_range_t " << sym << "_reserved[" << c.reserved_count
        << "] = {\n";
    for (std::size_t i = 0; i < c.reserved_count; ++i) {
      const capheap_reserved_range_t &r = c.reserved[i];
      out << "    {.start = " << c_hex(r.start) << ", .end = " << c_hex(r.end)
          << ", .name = " << c_string(r.name) << "},\n";
    }
    out << "};\n\n";
  }

  out << "const capheap_layout_t " << sym << " = {\n";
  out << "    .chip = " << c_string(c.chip) << ",\n";
  out << "    .types = " << sym << "_types,\n";
  out << "    .type_count = " << c.type_count << ",\n";
  out << "    .regions = " << sym << "_regions,\n";
  out << "    .region_count = " << c.region_count << ",\n";
  if (c.reserved_count != 0) {
    out << "    .reserved = " << sym << "_reserved,\n";
  } else {
    out << "    .reserved = NULL,\n";
  }
  out << "    .reserved_count = " << c.reserved_count << ",\n";
  out << "    .align = {.dma_internal = " << c.align.dma_internal
      << ", .cache_line_ext = " << c.align.cache_line_ext
      << ", .cache_line_int = " << c.align.cache_line_int << ", .simd = " << c.align.simd
      << ", .dma_desc_axi = " << c.align.dma_desc_axi << "},\n";
  out << "    .diram_inverted = " << (c.diram_inverted ? "true" : "false") << ",\n";
  out << "    .diram_dram_low = " << c_hex(c.diram_dram_low) << ",\n";
  out << "    .diram_dram_high = " << c_hex(c.diram_dram_high) << ",\n";
  out << "    .diram_iram_low = " << c_hex(c.diram_iram_low) << ",\n";
  out << "    .diram_iram_high = " << c_hex(c.diram_iram_high) << ",\n";
  out << "    .ext_ram_start = " << c_hex(c.ext_ram_start) << ",\n";
  out << "    .ext_ram_max_size = " << c_hex(c.ext_ram_max_size) << ",\n";
  out << "    .ext_ram_type = " << c.ext_ram_type << ",\n";
  out << "};\n";
  return out.str();
}

}  // namespace capheap::sim
