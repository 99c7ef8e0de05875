// sim/trace.hpp — capheap's allocation-trace format: data model, parser and writer.
//
// A trace is a text file with one heap operation per line (malloc, calloc, aligned alloc, realloc,
// free) naming its block by an ID. The full format, with examples and every error message, is in
// docs/trace-format.md; this header is the programming interface to it:
//
//   ParseResult r = load_trace_file("w1.trace");
//   if (!r.ok()) { std::fprintf(stderr, "%s\n", r.error.c_str()); return 1; }
//   for (const Op &op : r.trace.ops) { ... op.slot indexes a std::vector<void *> ... }
//
// The parser maps every distinct ID to a dense slot number (0, 1, 2 … in order of first use), so a
// replayer indexes a plain array instead of looking IDs up. Tokens for `task=` and `site=` are
// interned the same way into Trace::strings.
//
// Host-only: uses the standard library freely. The parse functions never throw for bad input; they
// report it as a value (ParseResult::error). Only std::bad_alloc can escape.
#ifndef CAPHEAP_SIM_TRACE_HPP
#define CAPHEAP_SIM_TRACE_HPP

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sim/caps_names.hpp"

namespace capheap::sim {

/// The five operations, with their line syntax.
enum class OpKind : std::uint8_t {
  kMalloc = 0,    ///< `a ID SIZE`: malloc(SIZE); binds ID
  kCalloc,        ///< `z ID COUNT SIZE`: calloc(COUNT, SIZE); binds ID
  kAlignedAlloc,  ///< `m ID ALIGN SIZE`: SIZE bytes aligned to ALIGN; binds ID
  kRealloc,       ///< `r ID SIZE`: realloc(ID's block, or NULL if unbound); binds ID
  kFree,          ///< `f ID`: free(ID's block); unbinds ID
};
inline constexpr std::size_t kOpKindCount = 5;

/// The letter of a kind in the text format ('a', 'z', 'm', 'r', 'f').
char op_letter(OpKind kind) noexcept;

/// "no string" value of Op::task and Op::site.
inline constexpr std::uint32_t kNoString = 0xFFFFFFFFu;
/// "no slot" value of Op::to_slot.
inline constexpr std::uint32_t kNoSlot = 0xFFFFFFFFu;

/// One operation. Fields that a kind does not use are 0 (size of `f`, count of all but `z`, align
/// of all but `m`). Numbers are stored exactly as written: the parser does not judge whether an
/// allocation can succeed (size 0, alignment 0 or not a power of two, COUNT × SIZE overflowing are
/// all valid trace content that a replayer should see fail at run time).
struct Op {
  OpKind kind = OpKind::kMalloc;
  bool has_time = false;              ///< true if the line carried `t=`
  std::uint32_t slot = 0;             ///< dense index of the ID (Trace::ids[slot] is its text)
  std::uint32_t caps = kCapsDefault;  ///< `caps=`; MALLOC_CAP_DEFAULT when absent
  std::uint32_t task = kNoString;     ///< `task=`: index into Trace::strings, or kNoString
  std::uint32_t site = kNoString;     ///< `site=`: index into Trace::strings, or kNoString
  std::uint32_t line = 0;             ///< 1-based source line (0 for ops not read from text)
  std::size_t size = 0;               ///< SIZE (per element for `z`)
  std::size_t count = 0;              ///< COUNT of `z`
  std::size_t align = 0;              ///< ALIGN of `m`
  std::uint64_t time = 0;             ///< `t=` value (meaningful only if has_time)
  bool has_seq = false;               ///< true if the line carried `seq=`
  std::uint64_t seq = 0;              ///< `seq=` value (meaningful only if has_seq)
  std::uint32_t to_slot = kNoSlot;    ///< `r ... to=ID`: slot the result is bound to, else kNoSlot
};

/// Equality of everything but `line` (the source position is not part of an operation's meaning,
/// and write_trace() cannot preserve it).
bool operator==(const Op &a, const Op &b) noexcept;
inline bool operator!=(const Op &a, const Op &b) noexcept {
  return !(a == b);
}

/// One `# key: value` header comment.
struct MetadataEntry {
  std::string key;
  std::string value;
};
bool operator==(const MetadataEntry &a, const MetadataEntry &b) noexcept;

/// A parsed trace.
struct Trace {
  std::vector<Op> ops;
  std::vector<std::string> ids;         ///< slot → ID text, in order of first appearance
  std::vector<std::string> strings;     ///< interned `task=`/`site=` tokens, first-use order
  std::vector<MetadataEntry> metadata;  ///< header comments, in file order (duplicates kept)

  /// Number of distinct IDs (a replayer's slot table size).
  std::uint32_t slot_count() const noexcept { return static_cast<std::uint32_t>(ids.size()); }
  /// The value of the first metadata entry with this key, or nullptr.
  const std::string *find_metadata(std::string_view key) const noexcept;
  /// strings[index], or "" for kNoString. Throws std::out_of_range for any other bad index.
  std::string_view string_at(std::uint32_t index) const;
};

/// Structural equality: ops (ignoring line numbers; task= and site= compared by their text, not by
/// their index in the interned table), ids and metadata.
bool operator==(const Trace &a, const Trace &b) noexcept;
inline bool operator!=(const Trace &a, const Trace &b) noexcept {
  return !(a == b);
}

/// Outcome of parse_trace / load_trace_file: the trace, or the first error.
struct ParseResult {
  Trace trace;                   ///< complete on success; unspecified (partial) on error
  std::string error;             ///< "FILE:LINE: message" (or "FILE: message"); empty on success
  std::uint32_t error_line = 0;  ///< the LINE of the error, 0 if it concerns the whole file
  bool ok() const noexcept { return error.empty(); }
};

/// Parses trace text.
/// Effects: reads `text` line by line (LF or CRLF); `filename` is used only in error messages.
/// Returns: the trace, whose metadata holds the `# key: value` comment lines that precede the
///   first operation; or the first error, formatted "FILENAME:LINE: MESSAGE". The messages are
///   listed in docs/trace-format.md; among them:
///     `'a' expects ID SIZE, got 1 field`                        wrong number of positional fields
///     `unknown operation 'x'`                                    first token not a/z/m/r/f
///     `bad SIZE 'abc': not an unsigned decimal integer`          (also COUNT, ALIGN, t)
///     `bad SIZE '99999999999999999999': out of range (max 18446744073709551615)`
///     `unknown field 'foo' (allowed: caps, t, task, site, seq, to)`
///     `field 'to' is only valid on 'r'`, `'r' to ID 'x' that is already live (bound at line 3)`
///     `duplicate field 'caps'`, `empty value for field 'task'`, `malformed field '=5'`
///     `unexpected 'x' after key=value fields`
///     `bad caps 'FOO': unknown capability 'FOO'`                 (any parse_caps error)
///     `'a' on ID 'x' that is already live (bound at line 3)`     also for 'z' and 'm'
///     `'f' of ID 'x' that was never allocated`
///     `'f' of ID 'x' that is not live (freed at line 9)`
///     `header 'ops: 4' does not match the operations, which give 'ops: 3' (truncated or edited
///     file?)`: the first `ops`, `peak_live_bytes`, `peak_live_blocks` or `final_live_blocks`
///     header entry in its documented form must state what compute_stats() gives (LINE is the
///     header's line), so that a file cut at a line boundary is not taken for a shorter trace
/// Complexity: O(length of text), one hash lookup per line.
ParseResult parse_trace(std::string_view text, std::string_view filename);

/// Reads the file at `path` and parses it with `path` as the filename.
/// Returns: as parse_trace; a file that cannot be read gives "PATH: cannot open: REASON" (REASON
///   from strerror) with error_line 0.
ParseResult load_trace_file(const std::string &path);

/// Formats one operation as a trace line without its newline, e.g. `m 7 64 100 caps=8BIT|DMA t=5`.
/// Fields are written only when they differ from the absent state (caps ≠ MALLOC_CAP_DEFAULT,
/// has_time, task/site ≠ kNoString, has_seq, to_slot ≠ kNoSlot), in the order caps, t, task,
/// site, seq, to; caps use format_caps().
/// Precondition: op.slot < trace.ids.size() and task/site are kNoString or valid indices
/// (otherwise throws std::out_of_range).
std::string format_op(const Trace &trace, const Op &op);

/// Writes a whole trace: the line `# heap-trace v1`, one `# key: value` line per metadata entry,
/// then one format_op() line per operation, each ending in '\n'.
/// Guarantee: parse_trace(write_trace(t), any).trace == t for every trace t that parse_trace
/// produced (and for any hand-built trace whose IDs, strings and metadata keys are valid tokens,
/// whose ids/strings are listed in first-use order, whose ops obey the binding rules, and whose
/// `ops`/`peak_live_*`/`final_live_blocks` metadata, if in the documented form, state its
/// compute_stats() figures).
std::string write_trace(const Trace &trace);

/// Figures of a trace, computed by following its binding rules: an ID is live from the op that
/// binds it (a, z, m, r; `r ... to=NEW` unbinds ID and binds NEW) until the `f` that unbinds it,
/// and weighs its requested bytes — SIZE, or COUNT × SIZE for `z` (0 if that product overflows),
/// the latest SIZE for an ID that `r` rebound. These are the figures gen_traces.py and the shared
/// traces put in their headers.
struct TraceStats {
  std::size_t ops = 0;
  std::size_t op_count[kOpKindCount] = {};  ///< indexed by static_cast<size_t>(OpKind)
  std::uint64_t peak_live_bytes = 0;        ///< saturates at UINT64_MAX
  std::size_t peak_live_blocks = 0;
  std::size_t final_live_blocks = 0;
  std::uint64_t final_live_bytes = 0;
};

/// Computes TraceStats. O(ops + slots). Precondition: every op.slot < trace.ids.size().
TraceStats compute_stats(const Trace &trace);

/// The requested bytes of an allocating op (see TraceStats): SIZE, COUNT × SIZE, or 0 when that
/// product overflows size_t; 0 for `f`.
std::size_t requested_bytes(const Op &op) noexcept;

}  // namespace capheap::sim

#endif  // CAPHEAP_SIM_TRACE_HPP
