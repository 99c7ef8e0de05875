// trace_fields_test.cpp — the `seq=` and `to=` fields of the trace format (docs/trace-format.md),
// which the event recorder writes: parsing, binding rules, errors, writing and statistics.

#include <gtest/gtest.h>

#include "sim/trace.hpp"

namespace capheap::sim {
namespace {

TEST(TraceFields, SeqAndToParseAndRoundTrip) {
  const ParseResult r = parse_trace(
      "a 0x10 8 caps=0x1800 t=5 task=0x1 site=0x4000 seq=0\n"
      "r 0x10 100 seq=1 to=0x20\n"
      "r 0x20 50 seq=2\n"
      "r 0x20 60 to=0x20\n"
      "a 0x10 4\n"
      "f 0x20 seq=3\n",
      "rec.trace");
  ASSERT_TRUE(r.ok()) << r.error;
  const Trace &t = r.trace;
  ASSERT_EQ(t.ops.size(), 6u);
  EXPECT_TRUE(t.ops[0].has_seq);
  EXPECT_EQ(t.ops[0].seq, 0u);
  EXPECT_EQ(t.ops[1].to_slot, 1u);
  EXPECT_EQ(t.ids[1], "0x20");
  EXPECT_EQ(t.ops[2].slot, 1u);
  EXPECT_EQ(t.ops[2].to_slot, kNoSlot);
  EXPECT_EQ(t.ops[3].to_slot, kNoSlot);  // to= its own ID: no move
  EXPECT_EQ(t.ops[4].slot, 0u);          // 0x10 was unbound by the move
  EXPECT_FALSE(t.ops[4].has_seq);
  EXPECT_EQ(format_op(t, t.ops[1]), "r 0x10 100 seq=1 to=0x20");
  EXPECT_EQ(format_op(t, t.ops[0]),
            "a 0x10 8 caps=INTERNAL|DEFAULT t=5 task=0x1 site=0x4000 seq=0");
  const ParseResult again = parse_trace(write_trace(t), "again");
  ASSERT_TRUE(again.ok()) << again.error;
  EXPECT_EQ(again.trace, t);
  const TraceStats s = compute_stats(t);
  EXPECT_EQ(s.peak_live_blocks, 2u);  // 0x20 (60) and 0x10 (4)
  EXPECT_EQ(s.final_live_blocks, 1u);
  EXPECT_EQ(s.final_live_bytes, 4u);
  EXPECT_EQ(s.peak_live_bytes, 100u);
}

TEST(TraceFields, Errors) {
  EXPECT_EQ(parse_trace("a 1 8 to=2\n", "w").error, "w:1: field 'to' is only valid on 'r'");
  EXPECT_EQ(parse_trace("a 1 8\na 2 8\nr 1 9 to=2\n", "w").error,
            "w:3: 'r' to ID '2' that is already live (bound at line 2)");
  EXPECT_EQ(parse_trace("a 1 8 seq=x\n", "w").error,
            "w:1: bad seq 'x': not an unsigned decimal integer");
  EXPECT_EQ(parse_trace("a 1 8 seq=1 seq=2\n", "w").error, "w:1: duplicate field 'seq'");
  EXPECT_EQ(parse_trace("a 1 8\nr 1 9 to=2\nf 1\n", "w").error,
            "w:3: 'f' of ID '1' that is not live (freed at line 2)");
}

}  // namespace
}  // namespace capheap::sim
