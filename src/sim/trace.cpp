// sim/trace.cpp — parser, writer and statistics of the trace format (docs/trace-format.md).
//
// The parser works on string_views into the caller's text: IDs and interned tokens are keyed by
// views of the input (which outlives the parse), so a line costs one tokenisation plus one hash
// lookup. The first error ends the parse; there is no recovery, because a trace with one bad line
// would replay differently from what was recorded.
#include "sim/trace.hpp"

#include "sim/file_text.hpp"

#include <cstring>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

namespace capheap::sim {

char op_letter(OpKind kind) noexcept {
  switch (kind) {
    case OpKind::kMalloc:
      return 'a';
    case OpKind::kCalloc:
      return 'z';
    case OpKind::kAlignedAlloc:
      return 'm';
    case OpKind::kRealloc:
      return 'r';
    case OpKind::kFree:
      return 'f';
  }
  return '?';
}

bool operator==(const Op &a, const Op &b) noexcept {
  return a.kind == b.kind && a.has_time == b.has_time && a.slot == b.slot && a.caps == b.caps &&
         a.task == b.task && a.site == b.site && a.size == b.size && a.count == b.count &&
         a.align == b.align && (!a.has_time || a.time == b.time) && a.has_seq == b.has_seq &&
         (!a.has_seq || a.seq == b.seq) && a.to_slot == b.to_slot;
}

bool operator==(const MetadataEntry &a, const MetadataEntry &b) noexcept {
  return a.key == b.key && a.value == b.value;
}

// task= and site= are compared by their text: the string table is interned in first-use order,
// which depends on the order of fields within a line, and that order carries no meaning (found by
// trace_fuzz: `site=` before `task=` on a line wrote back as `task=` before `site=`).
bool operator==(const Trace &a, const Trace &b) noexcept {
  if (a.ops.size() != b.ops.size() || a.ids != b.ids || a.metadata != b.metadata) return false;
  const auto text = [](const Trace &t, std::uint32_t i) -> std::string_view {
    return i < t.strings.size() ? std::string_view(t.strings[i]) : std::string_view();
  };
  for (std::size_t i = 0; i < a.ops.size(); ++i) {
    Op x = a.ops[i], y = b.ops[i];
    if (text(a, x.task) != text(b, y.task) || text(a, x.site) != text(b, y.site)) return false;
    if ((x.task == kNoString) != (y.task == kNoString) ||
        (x.site == kNoString) != (y.site == kNoString))
      return false;
    x.task = y.task;
    x.site = y.site;
    if (x != y) return false;
  }
  return true;
}

const std::string *Trace::find_metadata(std::string_view key) const noexcept {
  for (const MetadataEntry &entry : metadata) {
    if (entry.key == key) return &entry.value;
  }
  return nullptr;
}

std::string_view Trace::string_at(std::uint32_t index) const {
  if (index == kNoString) return {};
  return strings.at(index);
}

std::size_t requested_bytes(const Op &op) noexcept {
  switch (op.kind) {
    case OpKind::kCalloc:
      if (op.count != 0 && op.size > std::numeric_limits<std::size_t>::max() / op.count) return 0;
      return op.count * op.size;
    case OpKind::kFree:
      return 0;
    case OpKind::kMalloc:
    case OpKind::kAlignedAlloc:
    case OpKind::kRealloc:
      break;
  }
  return op.size;
}

namespace {

constexpr std::uint32_t kUnbound = 0;
constexpr std::uint64_t kMaxU64 = std::numeric_limits<std::uint64_t>::max();

bool is_blank(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\r';
}

// Splits `text` into blank-separated tokens (at most `max` are stored; the count is exact).
std::size_t tokenize(std::string_view text, std::string_view *out, std::size_t max) noexcept {
  std::size_t n = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && is_blank(text[i]))
      ++i;
    if (i == text.size()) break;
    const std::size_t start = i;
    while (i < text.size() && !is_blank(text[i]))
      ++i;
    if (n < max) out[n] = text.substr(start, i - start);
    ++n;
  }
  return n;
}

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && is_blank(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back()))
    s.remove_suffix(1);
  return s;
}

bool is_key_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '.';
}

// `# key: value` → entry. `body` is the text after '#'.
bool parse_metadata(std::string_view body, MetadataEntry &out) {
  body = trim(body);
  std::size_t i = 0;
  while (i < body.size() && is_key_char(body[i]))
    ++i;
  if (i == 0 || i == body.size() || body[i] != ':') return false;
  if (i + 1 < body.size() && !is_blank(body[i + 1])) return false;  // "http://x" is not a key
  out.key = std::string(body.substr(0, i));
  out.value = std::string(trim(body.substr(i + 1)));
  return true;
}

enum class Number { kOk, kBad, kRange };

Number parse_u64(std::string_view text, std::uint64_t &out) noexcept {
  if (text.empty()) return Number::kBad;
  std::uint64_t value = 0;
  bool range = false;
  for (char c : text) {
    if (c < '0' || c > '9') return Number::kBad;
    const auto d = static_cast<std::uint64_t>(c - '0');
    if (value > (std::numeric_limits<std::uint64_t>::max() - d) / 10) range = true;
    if (!range) value = value * 10 + d;
  }
  if (range) return Number::kRange;
  out = value;
  return Number::kOk;
}

const char *positional_names(OpKind kind) noexcept {
  switch (kind) {
    case OpKind::kMalloc:
    case OpKind::kRealloc:
      return "ID SIZE";
    case OpKind::kCalloc:
      return "ID COUNT SIZE";
    case OpKind::kAlignedAlloc:
      return "ID ALIGN SIZE";
    case OpKind::kFree:
      return "ID";
  }
  return "";
}

std::size_t positional_count(OpKind kind) noexcept {
  switch (kind) {
    case OpKind::kMalloc:
    case OpKind::kRealloc:
      return 2;
    case OpKind::kCalloc:
    case OpKind::kAlignedAlloc:
      return 3;
    case OpKind::kFree:
      return 1;
  }
  return 0;
}

bool kind_from_token(std::string_view token, OpKind &kind) noexcept {
  if (token.size() != 1) return false;
  switch (token[0]) {
    case 'a':
      kind = OpKind::kMalloc;
      return true;
    case 'z':
      kind = OpKind::kCalloc;
      return true;
    case 'm':
      kind = OpKind::kAlignedAlloc;
      return true;
    case 'r':
      kind = OpKind::kRealloc;
      return true;
    case 'f':
      kind = OpKind::kFree;
      return true;
    default:
      return false;
  }
}

class Parser {
 public:
  Parser(std::string_view text, std::string_view filename) : text_(text), filename_(filename) {}

  ParseResult run() {
    ids_.reserve(text_.size() / 16 + 16);
    std::size_t pos = 0;
    std::uint32_t line_no = 0;
    while (pos < text_.size()) {
      std::size_t end = text_.find('\n', pos);
      if (end == std::string_view::npos) end = text_.size();
      ++line_no;
      if (line_no == std::numeric_limits<std::uint32_t>::max()) {
        fail(line_no, "too many lines");
        return std::move(result_);
      }
      if (!parse_line(text_.substr(pos, end - pos), line_no)) return std::move(result_);
      pos = end + 1;
    }
    check_header();
    return std::move(result_);
  }

 private:
  // Control characters in the message (a NUL-filled tail of a cut file, an escape sequence) are
  // written as \xNN, so that the error stays one printable line: a NUL used to end the printed
  // message inside the quoted token.
  bool fail(std::uint32_t line, const std::string &message) {
    std::ostringstream out;
    out << filename_ << ':' << line << ": " << message;
    result_.error.clear();
    for (const char ch : out.str()) {
      const auto u = static_cast<unsigned char>(ch);
      if (u >= 0x20 && u != 0x7F) {
        result_.error += ch;
      } else {
        static const char kHex[] = "0123456789abcdef";
        result_.error += "\\x";
        result_.error += kHex[u >> 4];
        result_.error += kHex[u & 0xFu];
      }
    }
    result_.error_line = line;
    return false;
  }

  // A token in a message: quoted, cut after kQuoteMax bytes (a line of junk may be megabytes).
  static constexpr std::size_t kQuoteMax = 64;
  static std::string quoted(std::string_view s) {
    if (s.size() <= kQuoteMax) return "'" + std::string(s) + "'";
    return "'" + std::string(s.substr(0, kQuoteMax)) + "'... (" + std::to_string(s.size()) +
           " bytes)";
  }

  // Parses a decimal field named `what` into out; values above `max` are out of range.
  bool number(std::uint32_t line, const char *what, std::string_view token, std::uint64_t max,
              std::uint64_t &out) {
    Number status = parse_u64(token, out);
    if (status == Number::kOk && out > max) status = Number::kRange;
    switch (status) {
      case Number::kOk:
        return true;
      case Number::kBad:
        return fail(line, std::string("bad ") + what + " " + quoted(token) +
                              ": not an unsigned decimal integer");
      case Number::kRange:
        break;
    }
    return fail(line, std::string("bad ") + what + " " + quoted(token) + ": out of range (max " +
                          std::to_string(max) + ")");
  }

  bool size_number(std::uint32_t line, const char *what, std::string_view token, std::size_t &out) {
    std::uint64_t value = 0;
    if (!number(line, what, token, std::numeric_limits<std::size_t>::max(), value)) return false;
    out = static_cast<std::size_t>(value);
    return true;
  }

  std::uint32_t intern(std::string_view token) {
    auto [it, inserted] =
        strings_.emplace(token, static_cast<std::uint32_t>(result_.trace.strings.size()));
    if (inserted) result_.trace.strings.emplace_back(token);
    return it->second;
  }

  bool parse_fields(std::uint32_t line, const std::string_view *tokens, std::size_t n, Op &op,
                    std::string_view &to) {
    bool seen_caps = false;
    bool seen_task = false;
    bool seen_site = false;
    bool seen_to = false;
    for (std::size_t i = 0; i < n; ++i) {
      const std::string_view token = tokens[i];
      const std::size_t eq = token.find('=');
      if (eq == std::string_view::npos) {
        return fail(line, "unexpected " + quoted(token) + " after key=value fields");
      }
      const std::string_view key = token.substr(0, eq);
      const std::string_view value = token.substr(eq + 1);
      if (key.empty()) return fail(line, "malformed field " + quoted(token));
      bool *seen = nullptr;
      if (key == "caps") {
        seen = &seen_caps;
      } else if (key == "t") {
        seen = &op.has_time;
      } else if (key == "task") {
        seen = &seen_task;
      } else if (key == "site") {
        seen = &seen_site;
      } else if (key == "seq") {
        seen = &op.has_seq;
      } else if (key == "to") {
        if (op.kind != OpKind::kRealloc) return fail(line, "field 'to' is only valid on 'r'");
        seen = &seen_to;
      } else {
        return fail(line,
                    "unknown field " + quoted(key) + " (allowed: caps, t, task, site, seq, to)");
      }
      if (*seen) return fail(line, "duplicate field " + quoted(key));
      if (value.empty()) return fail(line, "empty value for field " + quoted(key));
      *seen = true;
      if (key == "caps") {
        const CapsParse caps = parse_caps(value);
        if (!caps.ok()) return fail(line, "bad caps " + quoted(value) + ": " + caps.error);
        op.caps = caps.caps;
      } else if (key == "t") {
        if (!number(line, "t", value, kMaxU64, op.time)) return false;
      } else if (key == "task") {
        op.task = intern(value);
      } else if (key == "seq") {
        if (!number(line, "seq", value, kMaxU64, op.seq)) return false;
      } else if (key == "to") {
        // An ID has no '=' (docs/trace-format.md): `to=a=b` bound an ID that no later line can
        // name, so its block could never be freed.
        if (value.find('=') != std::string_view::npos) {
          return fail(line, "bad ID " + quoted(value) + " in field 'to': an ID has no '='");
        }
        to = value;
      } else {
        op.site = intern(value);
      }
    }
    return true;
  }

  bool parse_line(std::string_view line_text, std::uint32_t line) {
    const std::size_t hash = line_text.find('#');
    if (hash != std::string_view::npos) {
      if (result_.trace.ops.empty() && trim(line_text.substr(0, hash)).empty()) {
        MetadataEntry entry;
        if (parse_metadata(line_text.substr(hash + 1), entry)) {
          result_.trace.metadata.push_back(std::move(entry));
          metadata_line_.push_back(line);
        }
        return true;
      }
      line_text = line_text.substr(0, hash);
    }
    constexpr std::size_t kMaxTokens = 16;
    std::string_view tokens[kMaxTokens];
    const std::size_t n = tokenize(line_text, tokens, kMaxTokens);
    if (n == 0) return true;
    if (n > kMaxTokens) return fail(line, "too many fields (" + std::to_string(n) + ")");

    Op op;
    op.line = line;
    if (!kind_from_token(tokens[0], op.kind)) {
      return fail(line, "unknown operation " + quoted(tokens[0]));
    }
    std::size_t positional = 1;
    while (positional < n && tokens[positional].find('=') == std::string_view::npos)
      ++positional;
    --positional;  // without the operation letter
    const std::size_t expected = positional_count(op.kind);
    if (positional != expected) {
      return fail(line, std::string("'") + op_letter(op.kind) + "' expects " +
                            positional_names(op.kind) + ", got " + std::to_string(positional) +
                            (positional == 1 ? " field" : " fields"));
    }
    const std::string_view id = tokens[1];
    switch (op.kind) {
      case OpKind::kMalloc:
      case OpKind::kRealloc:
        if (!size_number(line, "SIZE", tokens[2], op.size)) return false;
        break;
      case OpKind::kCalloc:
        if (!size_number(line, "COUNT", tokens[2], op.count)) return false;
        if (!size_number(line, "SIZE", tokens[3], op.size)) return false;
        break;
      case OpKind::kAlignedAlloc:
        if (!size_number(line, "ALIGN", tokens[2], op.align)) return false;
        if (!size_number(line, "SIZE", tokens[3], op.size)) return false;
        break;
      case OpKind::kFree:
        break;
    }
    std::string_view to;
    if (!parse_fields(line, tokens + 1 + expected, n - 1 - expected, op, to)) return false;

    // Binding rules.
    auto found = ids_.find(id);
    if (op.kind == OpKind::kFree) {
      if (found == ids_.end()) {
        return fail(line, "'f' of ID " + quoted(id) + " that was never allocated");
      }
      op.slot = found->second;
      if (bound_line_[op.slot] == kUnbound) {
        return fail(line, "'f' of ID " + quoted(id) + " that is not live (freed at line " +
                              std::to_string(freed_line_[op.slot]) + ")");
      }
      bound_line_[op.slot] = kUnbound;
      freed_line_[op.slot] = line;
    } else {
      if (found == ids_.end()) {
        const auto slot = static_cast<std::uint32_t>(result_.trace.ids.size());
        found = ids_.emplace(id, slot).first;
        result_.trace.ids.emplace_back(id);
        bound_line_.push_back(kUnbound);
        freed_line_.push_back(0);
      }
      op.slot = found->second;
      if (op.kind != OpKind::kRealloc && bound_line_[op.slot] != kUnbound) {
        return fail(line, std::string("'") + op_letter(op.kind) + "' on ID " + quoted(id) +
                              " that is already live (bound at line " +
                              std::to_string(bound_line_[op.slot]) + ")");
      }
      bound_line_[op.slot] = line;
      if (!to.empty() && to != id) {
        // `r ID SIZE to=NEW`: the block moved; NEW names it from now on and ID is unbound.
        auto target = ids_.find(to);
        if (target == ids_.end()) {
          const auto slot = static_cast<std::uint32_t>(result_.trace.ids.size());
          target = ids_.emplace(to, slot).first;
          result_.trace.ids.emplace_back(to);
          bound_line_.push_back(kUnbound);
          freed_line_.push_back(0);
        }
        op.to_slot = target->second;
        if (bound_line_[op.to_slot] != kUnbound) {
          return fail(line, "'r' to ID " + quoted(to) + " that is already live (bound at line " +
                                std::to_string(bound_line_[op.to_slot]) + ")");
        }
        bound_line_[op.slot] = kUnbound;
        freed_line_[op.slot] = line;
        bound_line_[op.to_slot] = line;
      }
    }
    result_.trace.ops.push_back(op);
    return true;
  }

  // The figures a header states (docs/trace-format.md, "Header comments"), checked against the
  // operations read: a file cut at a line boundary parses cleanly, and only its header can tell
  // (a shared trace truncated by a copy replayed as a shorter workload, a silent wrong answer).
  // Only the first entry of each key is checked, and only when its value has the documented form:
  // other values stay free-form metadata.
  void check_header() {
    const std::vector<MetadataEntry> &meta = result_.trace.metadata;
    const TraceStats s = compute_stats(result_.trace);
    const auto kind = [&s](OpKind k) -> std::uint64_t {
      return s.op_count[static_cast<std::size_t>(k)];
    };
    bool seen_ops = false, seen_peak_bytes = false, seen_peak_blocks = false, seen_final = false;
    for (std::size_t i = 0; i < meta.size(); ++i) {
      const MetadataEntry &e = meta[i];
      std::string actual;
      bool stated = false;  // the value has the documented form
      bool matches = true;
      std::string_view v = e.value;
      if (e.key == "ops" && !seen_ops) {
        seen_ops = true;
        std::uint64_t n[6] = {};
        if (!leading_number(v, n[0])) continue;
        stated = true;
        matches = n[0] == s.ops;
        actual = std::to_string(s.ops);
        static const char *const kKinds[5] = {" (a=", " z=", " m=", " r=", " f="};
        bool kinds = true;
        for (int k = 0; k < 5 && kinds; ++k)
          kinds = skip(v, kKinds[k]) && leading_number(v, n[k + 1]);
        if (kinds && skip(v, ")") && v.empty()) {
          matches = matches && n[1] == kind(OpKind::kMalloc) && n[2] == kind(OpKind::kCalloc) &&
                    n[3] == kind(OpKind::kAlignedAlloc) && n[4] == kind(OpKind::kRealloc) &&
                    n[5] == kind(OpKind::kFree);
          actual += " (a=" + std::to_string(kind(OpKind::kMalloc)) +
                    " z=" + std::to_string(kind(OpKind::kCalloc)) +
                    " m=" + std::to_string(kind(OpKind::kAlignedAlloc)) +
                    " r=" + std::to_string(kind(OpKind::kRealloc)) +
                    " f=" + std::to_string(kind(OpKind::kFree)) + ")";
        }
        actual = "ops: " + actual;
      } else if ((e.key == "peak_live_bytes" && !seen_peak_bytes) ||
                 (e.key == "peak_live_blocks" && !seen_peak_blocks)) {
        const bool bytes = e.key == "peak_live_bytes";
        (bytes ? seen_peak_bytes : seen_peak_blocks) = true;
        std::uint64_t n = 0;
        if (!leading_number(v, n) || !v.empty()) continue;
        stated = true;
        const std::uint64_t have = bytes ? s.peak_live_bytes : s.peak_live_blocks;
        matches = n == have;
        actual = e.key + ": " + std::to_string(have);
      } else if (e.key == "final_live_blocks" && !seen_final) {
        seen_final = true;
        std::uint64_t blocks = 0, bytes = 0;
        if (!leading_number(v, blocks)) continue;
        const bool with_bytes = skip(v, " final_live_bytes: ") && leading_number(v, bytes);
        if (!v.empty()) continue;
        stated = true;
        matches = blocks == s.final_live_blocks && (!with_bytes || bytes == s.final_live_bytes);
        actual = "final_live_blocks: " + std::to_string(s.final_live_blocks);
        if (with_bytes) actual += " final_live_bytes: " + std::to_string(s.final_live_bytes);
      }
      if (stated && !matches) {
        fail(metadata_line_[i], "header '" + e.key + ": " + e.value +
                                    "' does not match the operations, which give '" + actual +
                                    "' (truncated or edited file?)");
        return;
      }
    }
  }

  // Reads decimal digits at the front of v into out (false if none or out of range).
  static bool leading_number(std::string_view &v, std::uint64_t &out) noexcept {
    std::size_t n = 0;
    while (n < v.size() && v[n] >= '0' && v[n] <= '9')
      ++n;
    if (n == 0 || parse_u64(v.substr(0, n), out) != Number::kOk) return false;
    v.remove_prefix(n);
    return true;
  }
  static bool skip(std::string_view &v, std::string_view prefix) noexcept {
    if (v.substr(0, prefix.size()) != prefix) return false;
    v.remove_prefix(prefix.size());
    return true;
  }

  std::string_view text_;
  std::string_view filename_;
  ParseResult result_;
  std::vector<std::uint32_t> metadata_line_;  // per metadata entry: its line
  std::unordered_map<std::string_view, std::uint32_t> ids_;
  std::unordered_map<std::string_view, std::uint32_t> strings_;
  std::vector<std::uint32_t> bound_line_;  // per slot: line that bound it, kUnbound if unbound
  std::vector<std::uint32_t> freed_line_;  // per slot: line of the last free
};

std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) noexcept {
  return a > std::numeric_limits<std::uint64_t>::max() - b
             ? std::numeric_limits<std::uint64_t>::max()
             : a + b;
}

}  // namespace

ParseResult parse_trace(std::string_view text, std::string_view filename) {
  return Parser(text, filename).run();
}

ParseResult load_trace_file(const std::string &path) {
  ParseResult result;
  std::string text;
  if (!read_text_file(path, text, result.error)) return result;
  return parse_trace(text, path);
}

std::string format_op(const Trace &trace, const Op &op) {
  std::string out;
  out.reserve(48);
  out += op_letter(op.kind);
  out += ' ';
  out += trace.ids.at(op.slot);
  switch (op.kind) {
    case OpKind::kMalloc:
    case OpKind::kRealloc:
      out += ' ';
      out += std::to_string(op.size);
      break;
    case OpKind::kCalloc:
      out += ' ';
      out += std::to_string(op.count);
      out += ' ';
      out += std::to_string(op.size);
      break;
    case OpKind::kAlignedAlloc:
      out += ' ';
      out += std::to_string(op.align);
      out += ' ';
      out += std::to_string(op.size);
      break;
    case OpKind::kFree:
      break;
  }
  if (op.caps != kCapsDefault) {
    out += " caps=";
    out += format_caps(op.caps);
  }
  if (op.has_time) {
    out += " t=";
    out += std::to_string(op.time);
  }
  if (op.task != kNoString) {
    out += " task=";
    out += trace.strings.at(op.task);
  }
  if (op.site != kNoString) {
    out += " site=";
    out += trace.strings.at(op.site);
  }
  if (op.has_seq) {
    out += " seq=";
    out += std::to_string(op.seq);
  }
  if (op.to_slot != kNoSlot) {
    out += " to=";
    out += trace.ids.at(op.to_slot);
  }
  return out;
}

std::string write_trace(const Trace &trace) {
  std::string out = "# heap-trace v1\n";
  for (const MetadataEntry &entry : trace.metadata) {
    out += "# ";
    out += entry.key;
    out += ':';
    if (!entry.value.empty()) {
      out += ' ';
      out += entry.value;
    }
    out += '\n';
  }
  for (const Op &op : trace.ops) {
    out += format_op(trace, op);
    out += '\n';
  }
  return out;
}

TraceStats compute_stats(const Trace &trace) {
  TraceStats stats;
  std::vector<std::size_t> live_bytes(trace.ids.size(), 0);
  std::vector<bool> live(trace.ids.size(), false);
  std::uint64_t bytes = 0;  // may wrap only past UINT64_MAX, which saturation below prevents
  bool saturated = false;
  std::size_t blocks = 0;
  for (const Op &op : trace.ops) {
    ++stats.op_count[static_cast<std::size_t>(op.kind)];
    const std::uint32_t slot = op.slot;
    if (live[slot]) {
      if (!saturated) bytes -= live_bytes[slot];
      live[slot] = false;
      live_bytes[slot] = 0;
      --blocks;
    }
    if (op.kind != OpKind::kFree) {
      const std::uint32_t bound = op.to_slot != kNoSlot ? op.to_slot : slot;
      live[bound] = true;
      live_bytes[bound] = requested_bytes(op);
      ++blocks;
      const std::uint64_t sum = saturating_add(bytes, live_bytes[bound]);
      if (sum == std::numeric_limits<std::uint64_t>::max()) saturated = true;
      bytes = sum;
    }
    if (bytes > stats.peak_live_bytes) stats.peak_live_bytes = bytes;
    if (blocks > stats.peak_live_blocks) stats.peak_live_blocks = blocks;
  }
  stats.ops = trace.ops.size();
  stats.final_live_blocks = blocks;
  stats.final_live_bytes = bytes;
  return stats;
}

}  // namespace capheap::sim
