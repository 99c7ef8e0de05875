// Tests of sim/trace: parsing every operation and field, comments and metadata, every error
// message with its exact FILE:LINE text, statistics, the writer's round trip, and the shared and
// bench workloads.
#include "sim/trace.hpp"
#include "sim/size_text.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

namespace capheap::sim {
namespace {

constexpr std::size_t kSizeMax = std::numeric_limits<std::size_t>::max();

Trace parse_ok(const std::string &text) {
  ParseResult result = parse_trace(text, "t.trace");
  EXPECT_TRUE(result.ok()) << result.error;
  return std::move(result.trace);
}

std::string parse_error(const std::string &text) {
  const ParseResult result = parse_trace(text, "w1.trace");
  EXPECT_FALSE(result.ok()) << text;
  return result.error;
}

// ---- Operations ------------------------------------------------------------------------------

// Regression (trace_fuzz): a size whose K/M multiplication overflows was refused but the wrapped
// product was still stored.
TEST(SizeText, OverflowLeavesTheOutputAlone) {
  std::size_t out = 12345;
  EXPECT_FALSE(capheap::sim::parse_byte_size("077777777777777777M", &out));
  EXPECT_EQ(out, 12345u);
  EXPECT_FALSE(capheap::sim::parse_byte_size("0xFFFFFFFFFFFFFFFFK", &out));
  EXPECT_EQ(out, 12345u);
  EXPECT_TRUE(capheap::sim::parse_byte_size("4M", &out));
  EXPECT_EQ(out, 4u << 20);
}

// Regression (trace_fuzz): `site=` before `task=` on a line interned the strings in another order
// than write_trace() writes them, so a written trace compared unequal to its source.
TEST(TraceWrite, FieldOrderWithinALineDoesNotMatter) {
  const capheap::sim::ParseResult r = capheap::sim::parse_trace(
      "# heap-trace v1\na 1 16 site=s1 task=t1\nf 1 task=t2 site=s2\n", "t.trace");
  ASSERT_TRUE(r.ok()) << r.error;
  const std::string written = capheap::sim::write_trace(r.trace);
  const capheap::sim::ParseResult again = capheap::sim::parse_trace(written, "w.trace");
  ASSERT_TRUE(again.ok()) << again.error;
  EXPECT_TRUE(again.trace == r.trace) << written;
  EXPECT_EQ(again.trace.string_at(again.trace.ops[0].site), "s1");
  EXPECT_EQ(again.trace.string_at(again.trace.ops[1].task), "t2");
}

TEST(TraceParse, EveryOperationKind) {
  const Trace t = parse_ok(
      "a x 16\n"
      "z y 3 20\n"
      "m w 64 100\n"
      "r x 48\n"
      "f y\n");
  ASSERT_EQ(t.ops.size(), 5u);
  ASSERT_EQ(t.ids, (std::vector<std::string>{"x", "y", "w"}));

  const Op &a = t.ops[0];
  EXPECT_EQ(a.kind, OpKind::kMalloc);
  EXPECT_EQ(a.slot, 0u);
  EXPECT_EQ(a.size, 16u);
  EXPECT_EQ(a.count, 0u);
  EXPECT_EQ(a.align, 0u);
  EXPECT_EQ(a.caps, kCapsDefault);
  EXPECT_FALSE(a.has_time);
  EXPECT_EQ(a.task, kNoString);
  EXPECT_EQ(a.site, kNoString);
  EXPECT_EQ(a.line, 1u);

  const Op &z = t.ops[1];
  EXPECT_EQ(z.kind, OpKind::kCalloc);
  EXPECT_EQ(z.slot, 1u);
  EXPECT_EQ(z.count, 3u);
  EXPECT_EQ(z.size, 20u);
  EXPECT_EQ(z.align, 0u);
  EXPECT_EQ(z.line, 2u);

  const Op &m = t.ops[2];
  EXPECT_EQ(m.kind, OpKind::kAlignedAlloc);
  EXPECT_EQ(m.slot, 2u);
  EXPECT_EQ(m.align, 64u);
  EXPECT_EQ(m.size, 100u);
  EXPECT_EQ(m.count, 0u);

  const Op &r = t.ops[3];
  EXPECT_EQ(r.kind, OpKind::kRealloc);
  EXPECT_EQ(r.slot, 0u);
  EXPECT_EQ(r.size, 48u);

  const Op &f = t.ops[4];
  EXPECT_EQ(f.kind, OpKind::kFree);
  EXPECT_EQ(f.slot, 1u);
  EXPECT_EQ(f.size, 0u);
  EXPECT_EQ(f.line, 5u);
  EXPECT_EQ(t.slot_count(), 3u);
}

TEST(TraceParse, OpLetters) {
  EXPECT_EQ(op_letter(OpKind::kMalloc), 'a');
  EXPECT_EQ(op_letter(OpKind::kCalloc), 'z');
  EXPECT_EQ(op_letter(OpKind::kAlignedAlloc), 'm');
  EXPECT_EQ(op_letter(OpKind::kRealloc), 'r');
  EXPECT_EQ(op_letter(OpKind::kFree), 'f');
}

TEST(TraceParse, EmptyInputIsAnEmptyTrace) {
  const Trace t = parse_ok("");
  EXPECT_TRUE(t.ops.empty());
  EXPECT_TRUE(t.ids.empty());
  EXPECT_TRUE(t.metadata.empty());
  EXPECT_TRUE(parse_ok("\n\n  \n# just a comment\n").ops.empty());
}

TEST(TraceParse, IdsAreTokensMappedToDenseSlotsInFirstUseOrder) {
  const Trace t = parse_ok(
      "a 0x3ffb1234 8\n"
      "a buf-1 8\n"
      "f 0x3ffb1234\n"
      "a 0x3ffb1234 24\n"  // freed IDs may be bound again; they keep their slot
      "r new:id 10\n"      // realloc of an unbound ID (realloc(NULL)) creates a slot
      "r 0x3ffb1234 40\n"  // realloc of a bound ID rebinds it
      "a \xc3\xa9t\xc3\xa9 1\n");
  EXPECT_EQ(t.ids,
            (std::vector<std::string>{"0x3ffb1234", "buf-1", "new:id", "\xc3\xa9t\xc3\xa9"}));
  std::vector<std::uint32_t> slots;
  for (const Op &op : t.ops)
    slots.push_back(op.slot);
  EXPECT_EQ(slots, (std::vector<std::uint32_t>{0, 1, 0, 0, 2, 0, 3}));
}

TEST(TraceParse, TraceMayEndWithLiveBlocks) {
  const Trace t = parse_ok("a 1 10\na 2 20\nf 1\n");
  const TraceStats s = compute_stats(t);
  EXPECT_EQ(s.final_live_blocks, 1u);
  EXPECT_EQ(s.final_live_bytes, 20u);
}

TEST(TraceParse, RuntimeFailuresAreValidTraceContent) {
  // Size 0, alignment 0 or not a power of two, COUNT × SIZE overflowing: the parser keeps them for
  // the replayer (which expects NULL) instead of rejecting them.
  const Trace t = parse_ok(
      "a 1 0\n"
      "m 2 3 16\n"
      "m 3 0 16\n"
      "z 4 18446744073709551615 2\n"
      "z 5 0 5\n"
      "r 6 0\n"
      "a 7 18446744073709551615\n");
  ASSERT_EQ(t.ops.size(), 7u);
  EXPECT_EQ(t.ops[1].align, 3u);
  EXPECT_EQ(t.ops[2].align, 0u);
  EXPECT_EQ(t.ops[3].count, kSizeMax);
  EXPECT_EQ(t.ops[3].size, 2u);
  EXPECT_EQ(requested_bytes(t.ops[3]), 0u);  // overflowing product: the allocation must fail
  EXPECT_EQ(requested_bytes(t.ops[4]), 0u);
  EXPECT_EQ(t.ops[6].size, kSizeMax);
  EXPECT_EQ(requested_bytes(t.ops[6]), kSizeMax);
}

TEST(TraceParse, RequestedBytes) {
  Op op;
  op.kind = OpKind::kCalloc;
  op.count = 3;
  op.size = 7;
  EXPECT_EQ(requested_bytes(op), 21u);
  op.count = kSizeMax / 7;
  EXPECT_EQ(requested_bytes(op), (kSizeMax / 7) * 7);
  op.count = kSizeMax / 7 + 1;
  EXPECT_EQ(requested_bytes(op), 0u);
  op.kind = OpKind::kFree;
  EXPECT_EQ(requested_bytes(op), 0u);
  op.kind = OpKind::kAlignedAlloc;
  op.size = 5;
  EXPECT_EQ(requested_bytes(op), 5u);
}

// ---- Fields ----------------------------------------------------------------------------------

TEST(TraceParse, FieldsOnEveryKind) {
  const Trace t = parse_ok(
      "a 1 16 caps=DMA|8BIT t=100 task=wifi site=esp_wifi_init\n"
      "z 2 2 8 site=esp_wifi_init task=main\n"
      "m 3 64 32 caps=0x1800\n"
      "r 1 64 caps=MALLOC_CAP_SPIRAM t=18446744073709551615\n"
      "f 2 t=7 task=wifi\n"
      "a 4 1 caps=6144\n"
      "a 5 1 caps=0\n"
      "a 6 1 caps=DEFAULT\n");
  ASSERT_EQ(t.ops.size(), 8u);
  EXPECT_EQ(t.strings, (std::vector<std::string>{"wifi", "esp_wifi_init", "main"}));

  EXPECT_EQ(t.ops[0].caps, 0xCu);
  EXPECT_TRUE(t.ops[0].has_time);
  EXPECT_EQ(t.ops[0].time, 100u);
  EXPECT_EQ(t.ops[0].task, 0u);
  EXPECT_EQ(t.ops[0].site, 1u);
  EXPECT_EQ(t.string_at(t.ops[0].task), "wifi");
  EXPECT_EQ(t.string_at(t.ops[0].site), "esp_wifi_init");

  EXPECT_EQ(t.ops[1].caps, kCapsDefault);
  EXPECT_FALSE(t.ops[1].has_time);
  EXPECT_EQ(t.ops[1].site, 1u);  // interned: same token, same index
  EXPECT_EQ(t.ops[1].task, 2u);

  EXPECT_EQ(t.ops[2].caps, 0x1800u);
  EXPECT_EQ(t.ops[2].task, kNoString);
  EXPECT_EQ(t.string_at(kNoString), "");

  EXPECT_EQ(t.ops[3].caps, 0x400u);
  EXPECT_EQ(t.ops[3].time, std::numeric_limits<std::uint64_t>::max());

  EXPECT_EQ(t.ops[4].kind, OpKind::kFree);
  EXPECT_EQ(t.ops[4].time, 7u);
  EXPECT_EQ(t.ops[4].task, 0u);

  EXPECT_EQ(t.ops[5].caps, 0x1800u);
  EXPECT_EQ(t.ops[6].caps, 0u);
  EXPECT_EQ(t.ops[7].caps, kCapsDefault);
  EXPECT_THROW(t.string_at(3), std::out_of_range);
}

TEST(TraceParse, FieldValueMayContainEquals) {
  const Trace t = parse_ok("a 1 1 site=file.c:12=x\n");
  EXPECT_EQ(t.string_at(t.ops[0].site), "file.c:12=x");
}

// ---- Comments, blanks and metadata -------------------------------------------------------------

TEST(TraceParse, CommentsBlankLinesAndWhitespace) {
  const Trace t = parse_ok(
      "# heap-trace v1\n"
      "\n"
      "a 1 16   # trailing comment\n"
      "   \t\n"
      "\ta\t2 \t 32\t\r\n"  // tabs and CRLF
      "#a 3 3\n"
      "a 4 8#no space before the comment\n"
      "f 1\r\n"
      "a 5 1");  // no final newline
  ASSERT_EQ(t.ops.size(), 5u);
  EXPECT_EQ(t.ids, (std::vector<std::string>{"1", "2", "4", "5"}));
  EXPECT_EQ(t.ops[0].line, 3u);
  EXPECT_EQ(t.ops[1].line, 5u);
  EXPECT_EQ(t.ops[1].size, 32u);
  EXPECT_EQ(t.ops[2].size, 8u);
  EXPECT_EQ(t.ops[3].line, 8u);
  EXPECT_EQ(t.ops[4].line, 9u);
}

TEST(TraceParse, HeaderCommentsBecomeMetadata) {
  const Trace t = parse_ok(
      "# heap-trace v1\n"
      "# workload: iot-small\n"
      "# description: IoT net stack: many objects\n"
      "#ops:  1 (a=1)  \n"
      "# not metadata because of spaces: no\n"
      "# url http://example.com: no\n"
      "# empty:\n"
      "# workload: again\n"
      "\n"
      "a 1 1\n"
      "# after_ops: ignored\n");
  ASSERT_EQ(t.metadata.size(), 5u);
  EXPECT_EQ(t.metadata[0], (MetadataEntry{"workload", "iot-small"}));
  EXPECT_EQ(t.metadata[1], (MetadataEntry{"description", "IoT net stack: many objects"}));
  EXPECT_EQ(t.metadata[2], (MetadataEntry{"ops", "1 (a=1)"}));
  EXPECT_EQ(t.metadata[3], (MetadataEntry{"empty", ""}));
  EXPECT_EQ(t.metadata[4], (MetadataEntry{"workload", "again"}));
  ASSERT_NE(t.find_metadata("workload"), nullptr);
  EXPECT_EQ(*t.find_metadata("workload"), "iot-small");  // the first one wins
  EXPECT_EQ(t.find_metadata("after_ops"), nullptr);
  EXPECT_EQ(t.find_metadata("url"), nullptr);
}

// ---- Errors ----------------------------------------------------------------------------------

TEST(TraceErrors, PositionalFieldCount) {
  EXPECT_EQ(parse_error("a 1 16\n\n# c\na 12\n"), "w1.trace:4: 'a' expects ID SIZE, got 1 field");
  EXPECT_EQ(parse_error("a\n"), "w1.trace:1: 'a' expects ID SIZE, got 0 fields");
  EXPECT_EQ(parse_error("a 1 2 3\n"), "w1.trace:1: 'a' expects ID SIZE, got 3 fields");
  EXPECT_EQ(parse_error("z 1 2\n"), "w1.trace:1: 'z' expects ID COUNT SIZE, got 2 fields");
  EXPECT_EQ(parse_error("m 1 2\n"), "w1.trace:1: 'm' expects ID ALIGN SIZE, got 2 fields");
  EXPECT_EQ(parse_error("r 1\n"), "w1.trace:1: 'r' expects ID SIZE, got 1 field");
  EXPECT_EQ(parse_error("f\n"), "w1.trace:1: 'f' expects ID, got 0 fields");
  EXPECT_EQ(parse_error("a 1 16\nf 1 16\n"), "w1.trace:2: 'f' expects ID, got 2 fields");
  EXPECT_EQ(parse_error("a 1 caps=DMA\n"), "w1.trace:1: 'a' expects ID SIZE, got 1 field");
  EXPECT_EQ(parse_error("f caps=DMA\n"), "w1.trace:1: 'f' expects ID, got 0 fields");
}

TEST(TraceErrors, UnknownOperation) {
  EXPECT_EQ(parse_error("x 1 2\n"), "w1.trace:1: unknown operation 'x'");
  EXPECT_EQ(parse_error("A 1 2\n"), "w1.trace:1: unknown operation 'A'");
  EXPECT_EQ(parse_error("alloc 1 2\n"), "w1.trace:1: unknown operation 'alloc'");
  EXPECT_EQ(parse_error("caps=DMA\n"), "w1.trace:1: unknown operation 'caps=DMA'");
}

TEST(TraceErrors, BadNumbers) {
  EXPECT_EQ(parse_error("a 1 abc\n"),
            "w1.trace:1: bad SIZE 'abc': not an unsigned decimal integer");
  EXPECT_EQ(parse_error("a 1 -1\n"), "w1.trace:1: bad SIZE '-1': not an unsigned decimal integer");
  EXPECT_EQ(parse_error("a 1 +1\n"), "w1.trace:1: bad SIZE '+1': not an unsigned decimal integer");
  EXPECT_EQ(parse_error("a 1 0x10\n"),
            "w1.trace:1: bad SIZE '0x10': not an unsigned decimal integer");
  EXPECT_EQ(parse_error("a 1 1.5\n"),
            "w1.trace:1: bad SIZE '1.5': not an unsigned decimal integer");
  EXPECT_EQ(parse_error("z 1 two 8\n"),
            "w1.trace:1: bad COUNT 'two': not an unsigned decimal integer");
  EXPECT_EQ(parse_error("z 1 2 8x\n"),
            "w1.trace:1: bad SIZE '8x': not an unsigned decimal integer");
  EXPECT_EQ(parse_error("m 1 sixteen 8\n"),
            "w1.trace:1: bad ALIGN 'sixteen': not an unsigned decimal integer");
  EXPECT_EQ(parse_error("m 1 16 ?\n"), "w1.trace:1: bad SIZE '?': not an unsigned decimal integer");
  EXPECT_EQ(parse_error("r 1 x\n"), "w1.trace:1: bad SIZE 'x': not an unsigned decimal integer");
  EXPECT_EQ(parse_error("a 1 1 t=soon\n"),
            "w1.trace:1: bad t 'soon': not an unsigned decimal integer");
}

TEST(TraceErrors, NumbersOutOfRange) {
  EXPECT_EQ(parse_error("a 1 18446744073709551616\n"),
            "w1.trace:1: bad SIZE '18446744073709551616': out of range (max 18446744073709551615)");
  EXPECT_EQ(
      parse_error("z 1 99999999999999999999999 1\n"),
      "w1.trace:1: bad COUNT '99999999999999999999999': out of range (max 18446744073709551615)");
  EXPECT_EQ(
      parse_error("m 1 18446744073709551616 1\n"),
      "w1.trace:1: bad ALIGN '18446744073709551616': out of range (max 18446744073709551615)");
  EXPECT_EQ(parse_error("a 1 1 t=18446744073709551616\n"),
            "w1.trace:1: bad t '18446744073709551616': out of range (max 18446744073709551615)");
  // The largest value fits, with or without leading zeros.
  EXPECT_EQ(parse_ok("a 1 000018446744073709551615\n").ops[0].size, kSizeMax);
}

TEST(TraceErrors, Fields) {
  EXPECT_EQ(parse_error("a 1 1 foo=bar\n"),
            "w1.trace:1: unknown field 'foo' (allowed: caps, t, task, site, seq, to)");
  EXPECT_EQ(parse_error("a 1 1 Caps=DMA\n"),
            "w1.trace:1: unknown field 'Caps' (allowed: caps, t, task, site, seq, to)");
  EXPECT_EQ(parse_error("a 1 1 caps=DMA caps=8BIT\n"), "w1.trace:1: duplicate field 'caps'");
  EXPECT_EQ(parse_error("a 1 1 t=1 t=2\n"), "w1.trace:1: duplicate field 't'");
  EXPECT_EQ(parse_error("a 1 1 task=a task=a\n"), "w1.trace:1: duplicate field 'task'");
  EXPECT_EQ(parse_error("a 1 1 site=a site=b\n"), "w1.trace:1: duplicate field 'site'");
  EXPECT_EQ(parse_error("a 1 1 task=\n"), "w1.trace:1: empty value for field 'task'");
  EXPECT_EQ(parse_error("a 1 1 caps=\n"), "w1.trace:1: empty value for field 'caps'");
  EXPECT_EQ(parse_error("a 1 1 =5\n"), "w1.trace:1: malformed field '=5'");
  EXPECT_EQ(parse_error("a 1 1 caps=DMA extra\n"),
            "w1.trace:1: unexpected 'extra' after key=value fields");
  EXPECT_EQ(parse_error("a 1 1 caps=FOO\n"),
            "w1.trace:1: bad caps 'FOO': unknown capability 'FOO'");
  EXPECT_EQ(parse_error("a 1 1 caps=DMA|\n"), "w1.trace:1: bad caps 'DMA|': empty term in 'DMA|'");
  EXPECT_EQ(
      parse_error("a 1 1 caps=0x100000000\n"),
      "w1.trace:1: bad caps '0x100000000': capability value '0x100000000' exceeds 0xffffffff");
}

TEST(TraceErrors, BindingRules) {
  EXPECT_EQ(parse_error("a 1 1\na 1 2\n"),
            "w1.trace:2: 'a' on ID '1' that is already live (bound at line 1)");
  EXPECT_EQ(parse_error("a 1 1\n\nz 1 1 1\n"),
            "w1.trace:3: 'z' on ID '1' that is already live (bound at line 1)");
  EXPECT_EQ(parse_error("a 1 1\nr 1 5\nm 1 8 1\n"),
            "w1.trace:3: 'm' on ID '1' that is already live (bound at line 2)");
  EXPECT_EQ(parse_error("r 1 0\na 1 1\n"),  // r binds even with size 0 (to NULL at run time)
            "w1.trace:2: 'a' on ID '1' that is already live (bound at line 1)");
  EXPECT_EQ(parse_error("a 1 1\nf 2\n"), "w1.trace:2: 'f' of ID '2' that was never allocated");
  EXPECT_EQ(parse_error("a 1 1\n# c\nf 1\nf 1\n"),
            "w1.trace:4: 'f' of ID '1' that is not live (freed at line 3)");
}

TEST(TraceErrors, ErrorReportsLineAndStopsAtFirstError) {
  const ParseResult r = parse_trace("a 1 1\na 2 x\na 3 y\n", "dir/trace.txt");
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.error_line, 2u);
  EXPECT_EQ(r.error, "dir/trace.txt:2: bad SIZE 'x': not an unsigned decimal integer");
}

// A NUL byte in a token ended the printed message inside the quotes ("unknown operation '"), and a
// line of junk was quoted whole.
TEST(TraceErrors, ControlCharactersAndLongTokensInMessages) {
  EXPECT_EQ(parse_error(std::string("a 1 16\n\0\0\0\n", 10)),
            "w1.trace:2: unknown operation '\\x00\\x00\\x00'");
  EXPECT_EQ(parse_error("a 1 16 task=x\x1b[2J site=y\x7f seq=\x01\n"),
            "w1.trace:1: bad seq '\\x01': not an unsigned decimal integer");
  EXPECT_EQ(parse_error("a 1 16 caps=DMA|\x1b\n"),
            "w1.trace:1: bad caps 'DMA|\\x1b': unknown capability '\\x1b'");
  EXPECT_EQ(parse_error("f \v\n"), "w1.trace:1: 'f' of ID '\\x0b' that was never allocated");
  EXPECT_EQ(parse_error(std::string(1000, 'q') + "\n"),
            "w1.trace:1: unknown operation '" + std::string(64, 'q') + "'... (1000 bytes)");
  EXPECT_EQ(parse_error(std::string("a 1 ") + std::string(70, '9') + "\n"),
            "w1.trace:1: bad SIZE '" + std::string(64, '9') +
                "'... (70 bytes): out of range (max 18446744073709551615)");
}

// A file cut at a line boundary (a copy or download that stopped early, a device log cut off)
// parsed as a shorter, valid trace: its replay answered for another workload. The header's figures
// now have to match the operations; the error names the header line.
TEST(TraceErrors, HeaderFiguresMustMatchTheOperations) {
  const std::string header =
      "# heap-trace v1\n"
      "# workload: cut\n"
      "# ops: 4 (a=2 z=0 m=0 r=0 f=2)\n"
      "# peak_live_bytes: 48\n"
      "# peak_live_blocks: 2\n"
      "# final_live_blocks: 0 final_live_bytes: 0\n";
  const std::string body = "a 1 16\na 2 32\nf 1\nf 2\n";
  EXPECT_EQ(parse_ok(header + body).ops.size(), 4u);
  // Cut after the third operation: every figure but the peaks changes; the first one is reported.
  EXPECT_EQ(parse_error(header + "a 1 16\na 2 32\nf 1\n"),
            "w1.trace:3: header 'ops: 4 (a=2 z=0 m=0 r=0 f=2)' does not match the operations, "
            "which give 'ops: 3 (a=2 z=0 m=0 r=0 f=1)' (truncated or edited file?)");
  // Cut inside the last line ("f 2" became "f"... is an error anyway; "a 2 32" became "a 2 3").
  EXPECT_EQ(parse_error(header + "a 1 16\na 2 3\nf 1\nf 2\n"),
            "w1.trace:4: header 'peak_live_bytes: 48' does not match the operations, which give "
            "'peak_live_bytes: 19' (truncated or edited file?)");
  // Totals only, and each figure on its own.
  EXPECT_EQ(parse_error("# ops: 5\n" + body),
            "w1.trace:1: header 'ops: 5' does not match the operations, which give 'ops: 4' "
            "(truncated or edited file?)");
  EXPECT_EQ(parse_error("# ops: 4 (a=3 z=0 m=0 r=0 f=1)\n" + body),
            "w1.trace:1: header 'ops: 4 (a=3 z=0 m=0 r=0 f=1)' does not match the operations, "
            "which give 'ops: 4 (a=2 z=0 m=0 r=0 f=2)' (truncated or edited file?)");
  EXPECT_EQ(parse_error("# peak_live_blocks: 3\n" + body),
            "w1.trace:1: header 'peak_live_blocks: 3' does not match the operations, which give "
            "'peak_live_blocks: 2' (truncated or edited file?)");
  EXPECT_EQ(parse_error("# final_live_blocks: 1\n" + body),
            "w1.trace:1: header 'final_live_blocks: 1' does not match the operations, which give "
            "'final_live_blocks: 0' (truncated or edited file?)");
  EXPECT_EQ(parse_error("# final_live_blocks: 0 final_live_bytes: 16\n" + body),
            "w1.trace:1: header 'final_live_blocks: 0 final_live_bytes: 16' does not match the "
            "operations, which give 'final_live_blocks: 0 final_live_bytes: 0' (truncated or "
            "edited file?)");
  // Values without the documented form stay free text; only the first entry of a key counts.
  EXPECT_EQ(parse_ok("# ops: many\n# peak_live_bytes: 48 bytes\n" + body).ops.size(), 4u);
  EXPECT_EQ(parse_ok("# ops: 4\n# ops: 7\n" + body).ops.size(), 4u);
  // A header line after the first operation is a comment, not a figure.
  EXPECT_EQ(parse_ok("a 1 16\n# ops: 9\nf 1\n").ops.size(), 2u);
  // The writer keeps the metadata: a trace parsed with a matching header round-trips.
  const ParseResult back = parse_trace(write_trace(parse_ok(header + body)), "back");
  EXPECT_TRUE(back.ok()) << back.error;
}

// The value after `caps=` was cut in the message, but parse_caps's own text quoted the bad term
// (or the whole mask) again in full: a line of junk gave a megabyte-long error.
TEST(TraceErrors, LongCapsTermsAreCutInMessages) {
  const std::string junk(1000, 'Q');
  EXPECT_EQ(parse_error("a 1 16 caps=" + junk + "\n"),
            "w1.trace:1: bad caps '" + std::string(64, 'Q') +
                "'... (1000 bytes): unknown capability '" + std::string(64, 'Q') +
                "'... (1000 bytes)");
  EXPECT_EQ(parse_error("a 1 16 caps=DMA||" + junk + "\n"),
            "w1.trace:1: bad caps 'DMA||" + std::string(59, 'Q') +
                "'... (1005 bytes): empty term in 'DMA||" + std::string(59, 'Q') +
                "'... (1005 bytes)");
  const std::string digits(70, '9');
  EXPECT_EQ(parse_error("a 1 16 caps=" + digits + "\n"),
            "w1.trace:1: bad caps '" + std::string(64, '9') +
                "'... (70 bytes): capability value '" + std::string(64, '9') +
                "'... (70 bytes) exceeds 0xffffffff");
}

// `to=a=b` was accepted: the ID 'a=b' could never appear again as a positional ID (a token with
// '=' is a field there), so its block stayed live for good.
TEST(TraceErrors, ToIdWithEquals) {
  EXPECT_EQ(parse_error("a 1 16\nr 1 32 to=x=y\n"),
            "w1.trace:2: bad ID 'x=y' in field 'to': an ID has no '='");
  EXPECT_EQ(parse_ok("a 1 16\nr 1 32 to=x\nf x\n").ops.size(), 3u);
}

TEST(TraceErrors, MissingFile) {
  const ParseResult r = load_trace_file("/nonexistent/dir/missing.trace");
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.error_line, 0u);
  EXPECT_EQ(r.error, "/nonexistent/dir/missing.trace: cannot open: No such file or directory");
}

// An ifstream opened a directory and read it as an empty file: the trace parsed as empty, ok().
TEST(TraceErrors, DirectoryIsNotATrace) {
  const std::string dir = ::testing::TempDir() + "capheap-trace-dir.trace";
  std::filesystem::create_directories(dir);
  const ParseResult r = load_trace_file(dir);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.error_line, 0u);
  EXPECT_EQ(r.error, dir + ": cannot open: Is a directory");
  EXPECT_TRUE(r.trace.ops.empty());
  std::filesystem::remove(dir);

  // An empty file still is an empty trace, and a file's text is read whole.
  const std::string empty = ::testing::TempDir() + "capheap-empty.trace";
  std::ofstream(empty).close();
  EXPECT_TRUE(load_trace_file(empty).ok());
  std::string big;
  for (int i = 0; i < 20000; ++i)
    big += "a " + std::to_string(i) + " 16\n";
  std::ofstream(empty) << big;
  const ParseResult whole = load_trace_file(empty);
  ASSERT_TRUE(whole.ok()) << whole.error;
  EXPECT_EQ(whole.trace.ops.size(), 20000u);
  std::remove(empty.c_str());
}

// ---- Statistics ------------------------------------------------------------------------------

TEST(TraceStats, FollowsBindingRules) {
  const Trace t = parse_ok(
      "a 1 100\n"                       // live 100
      "z 2 3 10\n"                      // 130
      "m 3 64 50\n"                     // 180, 3 blocks (peak)
      "r 1 300\n"                       // 380 (peak)
      "f 2\n"                           // 350
      "r 4 20\n"                        // 370, 3 blocks
      "f 1\n"                           // 70
      "z 5 18446744073709551615 2\n");  // overflowing: live block of 0 bytes
  const TraceStats s = compute_stats(t);
  EXPECT_EQ(s.ops, 8u);
  EXPECT_EQ(s.op_count[static_cast<std::size_t>(OpKind::kMalloc)], 1u);
  EXPECT_EQ(s.op_count[static_cast<std::size_t>(OpKind::kCalloc)], 2u);
  EXPECT_EQ(s.op_count[static_cast<std::size_t>(OpKind::kAlignedAlloc)], 1u);
  EXPECT_EQ(s.op_count[static_cast<std::size_t>(OpKind::kRealloc)], 2u);
  EXPECT_EQ(s.op_count[static_cast<std::size_t>(OpKind::kFree)], 2u);
  EXPECT_EQ(s.peak_live_bytes, 380u);
  EXPECT_EQ(s.peak_live_blocks, 3u);
  EXPECT_EQ(s.final_live_blocks, 3u);
  EXPECT_EQ(s.final_live_bytes, 70u);
}

TEST(TraceStats, SaturatesHugeSums) {
  const TraceStats s = compute_stats(parse_ok("a 1 18446744073709551615\na 2 10\n"));
  EXPECT_EQ(s.peak_live_bytes, std::numeric_limits<std::uint64_t>::max());
}

// ---- Writer ----------------------------------------------------------------------------------

TEST(TraceWrite, FormatOpExact) {
  const Trace t = parse_ok(
      "a 1 16\n"
      "z 2 3 20 caps=MALLOC_CAP_8BIT|MALLOC_CAP_DMA\n"
      "m 3 64 100 caps=0x1800 t=5 task=wifi site=s.c:1\n"
      "r 1 0 caps=0\n"
      "f 2 task=wifi\n"
      "a 4 1 caps=DEFAULT\n"
      "a 5 1 caps=0x1000008\n");
  ASSERT_EQ(t.ops.size(), 7u);
  EXPECT_EQ(format_op(t, t.ops[0]), "a 1 16");
  EXPECT_EQ(format_op(t, t.ops[1]), "z 2 3 20 caps=8BIT|DMA");
  EXPECT_EQ(format_op(t, t.ops[2]), "m 3 64 100 caps=INTERNAL|DEFAULT t=5 task=wifi site=s.c:1");
  EXPECT_EQ(format_op(t, t.ops[3]), "r 1 0 caps=0");
  EXPECT_EQ(format_op(t, t.ops[4]), "f 2 task=wifi");
  EXPECT_EQ(format_op(t, t.ops[5]), "a 4 1");
  EXPECT_EQ(format_op(t, t.ops[6]), "a 5 1 caps=DMA|0x1000000");
  Op bad = t.ops[0];
  bad.slot = 99;
  EXPECT_THROW(format_op(t, bad), std::out_of_range);
}

TEST(TraceWrite, WriteTraceExact) {
  const Trace t = parse_ok(
      "# heap-trace v1\n"
      "# workload: demo\n"
      "# empty:\n"
      "a 1 16 # comment dropped\n"
      "\n"
      "f 1 t=3\n");
  EXPECT_EQ(write_trace(t),
            "# heap-trace v1\n"
            "# workload: demo\n"
            "# empty:\n"
            "a 1 16\n"
            "f 1 t=3\n");
}

TEST(TraceWrite, RoundTripOfEveryFeature) {
  const Trace t = parse_ok(
      "# workload: round-trip\n"
      "# description: every op, field and odd value\n"
      "a 1 16 caps=DMA|8BIT t=100 task=wifi site=esp_wifi_init\n"
      "z 2 2 8 site=esp_wifi_init task=main\n"
      "m 3 64 32 caps=0x1800\n"
      "m 4 3 32 caps=0\n"
      "m 5 0 32 caps=0xffffffff\n"
      "r 1 64 caps=MALLOC_CAP_SPIRAM t=18446744073709551615\n"
      "r new 0\n"
      "f 2 t=7 task=wifi\n"
      "z 6 18446744073709551615 18446744073709551615\n"
      "a 0x3ffb0000 0\n"
      "f 1\n"
      "a 1 5 caps=TCM\n");
  const std::string text = write_trace(t);
  const ParseResult back = parse_trace(text, "written");
  ASSERT_TRUE(back.ok()) << back.error;
  EXPECT_EQ(back.trace, t);
  EXPECT_EQ(write_trace(back.trace), text);  // the writer is a fixed point
}

TEST(TraceWrite, HandBuiltTraceRoundTrips) {
  Trace t;
  t.ids = {"p", "q"};
  t.strings = {"task0"};
  t.metadata = {{"workload", "hand"}};
  Op a;
  a.kind = OpKind::kAlignedAlloc;
  a.slot = 0;
  a.align = 16;
  a.size = 40;
  a.caps = 0x8;
  a.task = 0;
  Op b;
  b.kind = OpKind::kMalloc;
  b.slot = 1;
  b.size = 3;
  b.has_time = true;
  b.time = 42;
  Op c;
  c.kind = OpKind::kFree;
  c.slot = 0;
  t.ops = {a, b, c};
  const ParseResult back = parse_trace(write_trace(t), "x");
  ASSERT_TRUE(back.ok()) << back.error;
  EXPECT_EQ(back.trace, t);
  // Line numbers do not take part in equality, other fields do.
  Trace u = back.trace;
  u.ops[0].line = 1234;
  EXPECT_EQ(u, t);
  u.ops[0].caps = 0x4;
  EXPECT_NE(u, t);
  u = back.trace;
  u.ops[1].time = 43;
  EXPECT_NE(u, t);
}

// ---- Workload files --------------------------------------------------------------------------

// Checks a workload file against its own header (`# ops: N (a=.. z=.. m=.. r=.. f=..)`,
// `# peak_live_bytes:`, `# peak_live_blocks:`, `# final_live_blocks: N final_live_bytes: M`) and
// its round trip through the writer.
void check_workload(const std::string &path) {
  const ParseResult r = load_trace_file(path);
  ASSERT_TRUE(r.ok()) << r.error;
  const Trace &t = r.trace;
  const TraceStats s = compute_stats(t);

  const std::string *ops = t.find_metadata("ops");
  ASSERT_NE(ops, nullptr) << path;
  unsigned long long total = 0, na = 0, nz = 0, nm = 0, nr = 0, nf = 0;
  ASSERT_EQ(std::sscanf(ops->c_str(), "%llu (a=%llu z=%llu m=%llu r=%llu f=%llu)", &total, &na, &nz,
                        &nm, &nr, &nf),
            6)
      << *ops;
  EXPECT_EQ(s.ops, total) << path;
  EXPECT_EQ(t.ops.size(), total) << path;
  EXPECT_EQ(s.op_count[static_cast<std::size_t>(OpKind::kMalloc)], na) << path;
  EXPECT_EQ(s.op_count[static_cast<std::size_t>(OpKind::kCalloc)], nz) << path;
  EXPECT_EQ(s.op_count[static_cast<std::size_t>(OpKind::kAlignedAlloc)], nm) << path;
  EXPECT_EQ(s.op_count[static_cast<std::size_t>(OpKind::kRealloc)], nr) << path;
  EXPECT_EQ(s.op_count[static_cast<std::size_t>(OpKind::kFree)], nf) << path;

  const std::string *peak_bytes = t.find_metadata("peak_live_bytes");
  const std::string *peak_blocks = t.find_metadata("peak_live_blocks");
  const std::string *final_live = t.find_metadata("final_live_blocks");
  ASSERT_NE(peak_bytes, nullptr);
  ASSERT_NE(peak_blocks, nullptr);
  ASSERT_NE(final_live, nullptr);
  EXPECT_EQ(std::to_string(s.peak_live_bytes), *peak_bytes) << path;
  EXPECT_EQ(std::to_string(s.peak_live_blocks), *peak_blocks) << path;
  EXPECT_EQ(std::to_string(s.final_live_blocks) +
                " final_live_bytes: " + std::to_string(s.final_live_bytes),
            *final_live)
      << path;

  const ParseResult back = parse_trace(write_trace(t), "written");
  ASSERT_TRUE(back.ok()) << back.error;
  EXPECT_TRUE(back.trace == t) << path;
}

bool file_exists(const std::string &path) {
  return std::ifstream(path).good();
}

struct WorkloadCase {
  const char *dir;
  const char *file;
  std::size_t ops;
};

class Workload : public ::testing::TestWithParam<WorkloadCase> {};

TEST_P(Workload, MatchesItsHeader) {
  const WorkloadCase &c = GetParam();
  const std::string path = std::string(c.dir) + "/" + c.file;
  if (!file_exists(path)) GTEST_SKIP() << path << " not found";
  check_workload(path);
  const ParseResult r = load_trace_file(path);
  ASSERT_TRUE(r.ok());
  if (c.ops != 0) {
    EXPECT_EQ(r.trace.ops.size(), c.ops);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shared, Workload,
    ::testing::Values(WorkloadCase{CAPHEAP_SHARED_TRACES_DIR, "w1-iot-small.trace", 160014},
                      WorkloadCase{CAPHEAP_SHARED_TRACES_DIR, "w2-churn-uniform.trace", 120000},
                      WorkloadCase{CAPHEAP_SHARED_TRACES_DIR, "w5-realloc-grow.trace", 110003}));

INSTANTIATE_TEST_SUITE_P(
    Bench, Workload,
    ::testing::Values(WorkloadCase{CAPHEAP_BENCH_TRACES_DIR, "aligned-heavy.trace", 0},
                      WorkloadCase{CAPHEAP_BENCH_TRACES_DIR, "large-buffers.trace", 0},
                      WorkloadCase{CAPHEAP_BENCH_TRACES_DIR, "fragmenting.trace", 0},
                      WorkloadCase{CAPHEAP_BENCH_TRACES_DIR, "small-uniform.trace", 0},
                      WorkloadCase{CAPHEAP_BENCH_TRACES_DIR, "edge-cases.trace", 27}));

TEST(Workload, SharedTraceHeadersHaveKnownValues) {
  const std::string path = std::string(CAPHEAP_SHARED_TRACES_DIR) + "/w1-iot-small.trace";
  if (!file_exists(path)) GTEST_SKIP() << path << " not found";
  const ParseResult r = load_trace_file(path);
  ASSERT_TRUE(r.ok()) << r.error;
  const TraceStats s = compute_stats(r.trace);
  EXPECT_EQ(s.peak_live_bytes, 65081u);
  EXPECT_EQ(s.peak_live_blocks, 115u);
  EXPECT_EQ(s.final_live_blocks, 58u);
  EXPECT_EQ(s.final_live_bytes, 36442u);
  EXPECT_EQ(r.trace.slot_count(), 80036u);
  ASSERT_NE(r.trace.find_metadata("workload"), nullptr);
  EXPECT_EQ(*r.trace.find_metadata("workload"), "iot-small");
}

}  // namespace
}  // namespace capheap::sim
