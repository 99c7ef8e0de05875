// Tests of sim/caps_names: the MALLOC_CAP_* table, parse_caps and format_caps.
#include "sim/caps_names.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

namespace capheap::sim {
namespace {

TEST(CapsNames, TableHasEspIdfValues) {
  struct Expected {
    const char *name;
    std::uint32_t value;
  };
  const Expected expected[] = {
      {"EXEC", 0x1},
      {"32BIT", 0x2},
      {"8BIT", 0x4},
      {"DMA", 0x8},
      {"PID2", 0x10},
      {"PID3", 0x20},
      {"PID4", 0x40},
      {"PID5", 0x80},
      {"PID6", 0x100},
      {"PID7", 0x200},
      {"SPIRAM", 0x400},
      {"INTERNAL", 0x800},
      {"DEFAULT", 0x1000},
      {"IRAM_8BIT", 0x2000},
      {"RETENTION", 0x4000},
      {"RTCRAM", 0x8000},
      {"SPM", 0x10000},
      {"TCM", 0x10000},
      {"DMA_DESC_AHB", 0x20000},
      {"DMA_DESC_AXI", 0x40000},
      {"CACHE_ALIGNED", 0x80000},
      {"SIMD", 0x100000},
      {"SPIRAM_NO_ENC", 0x200000},
      {"INVALID", 0x80000000u},
  };
  ASSERT_EQ(sizeof expected / sizeof expected[0], kCapsNameCount);
  for (std::size_t i = 0; i < kCapsNameCount; ++i) {
    EXPECT_STREQ(kCapsNames[i].name, expected[i].name) << i;
    EXPECT_EQ(kCapsNames[i].value, expected[i].value) << expected[i].name;
  }
  EXPECT_EQ(kCapsDefault, 0x1000u);
  EXPECT_EQ(kCapsInvalid, 0x80000000u);
}

TEST(CapsNames, BitLookupWithAndWithoutPrefix) {
  for (const CapsName &entry : kCapsNames) {
    EXPECT_EQ(caps_bit(entry.name), entry.value) << entry.name;
    EXPECT_EQ(caps_bit(std::string("MALLOC_CAP_") + entry.name), entry.value) << entry.name;
  }
  EXPECT_FALSE(caps_bit("dma").has_value());  // case-sensitive
  EXPECT_FALSE(caps_bit("MALLOC_CAP_").has_value());
  EXPECT_FALSE(caps_bit("MALLOC_CAP_MALLOC_CAP_DMA").has_value());
  EXPECT_FALSE(caps_bit("").has_value());
}

TEST(CapsNames, ParseNamesNumbersAndMixtures) {
  EXPECT_EQ(parse_caps("DMA|8BIT").caps, 0xCu);
  EXPECT_EQ(parse_caps("MALLOC_CAP_DMA|MALLOC_CAP_8BIT").caps, 0xCu);
  EXPECT_EQ(parse_caps("MALLOC_CAP_DMA|8BIT").caps, 0xCu);
  EXPECT_EQ(parse_caps("0x1800").caps, 0x1800u);
  EXPECT_EQ(parse_caps("0X1800").caps, 0x1800u);
  EXPECT_EQ(parse_caps("0xabCD").caps, 0xABCDu);
  EXPECT_EQ(parse_caps("6144").caps, 0x1800u);
  EXPECT_EQ(parse_caps("0").caps, 0u);
  EXPECT_EQ(parse_caps("INTERNAL|0x8").caps, 0x808u);
  EXPECT_EQ(parse_caps("TCM").caps, 0x10000u);
  EXPECT_EQ(parse_caps("DMA|DMA").caps, 0x8u);
  EXPECT_EQ(parse_caps("4294967295").caps, 0xFFFFFFFFu);
  EXPECT_EQ(parse_caps("0xffffffff").caps, 0xFFFFFFFFu);
  EXPECT_EQ(parse_caps("0x00000000000000001").caps, 1u);  // leading zeros are not overflow
  EXPECT_EQ(parse_caps("SPIRAM|8BIT").caps, 0x404u);
  EXPECT_TRUE(parse_caps("DMA").ok());
}

TEST(CapsNames, ParseErrorsAreExact) {
  struct Case {
    const char *text;
    const char *error;
  };
  const Case cases[] = {
      {"", "empty capability mask"},
      {"DMA|", "empty term in 'DMA|'"},
      {"|DMA", "empty term in '|DMA'"},
      {"DMA||8BIT", "empty term in 'DMA||8BIT'"},
      {"|", "empty term in '|'"},
      {"dma", "unknown capability 'dma'"},
      {"DMA|FOO", "unknown capability 'FOO'"},
      {"MALLOC_CAP_", "unknown capability 'MALLOC_CAP_'"},
      {"0x", "unknown capability '0x'"},
      {"0x1g", "unknown capability '0x1g'"},
      {"12abc", "unknown capability '12abc'"},
      {"-1", "unknown capability '-1'"},
      {"+1", "unknown capability '+1'"},
      {"DMA 8BIT", "unknown capability 'DMA 8BIT'"},
      {"0x100000000", "capability value '0x100000000' exceeds 0xffffffff"},
      {"4294967296", "capability value '4294967296' exceeds 0xffffffff"},
      {"99999999999999999999999", "capability value '99999999999999999999999' exceeds 0xffffffff"},
      {"99999999999999999999999x", "unknown capability '99999999999999999999999x'"},
  };
  for (const Case &c : cases) {
    const CapsParse result = parse_caps(c.text);
    EXPECT_FALSE(result.ok()) << c.text;
    EXPECT_EQ(result.error, c.error) << c.text;
    EXPECT_EQ(result.caps, 0u) << c.text;
  }
}

TEST(CapsNames, FormatInFixedOrder) {
  EXPECT_EQ(format_caps(0xC), "8BIT|DMA");
  EXPECT_EQ(format_caps(0), "0");
  EXPECT_EQ(format_caps(0x1000), "DEFAULT");
  EXPECT_EQ(format_caps(0x1800), "INTERNAL|DEFAULT");
  EXPECT_EQ(format_caps(0x10000), "SPM");
  EXPECT_EQ(format_caps(0x80000000u), "INVALID");
  EXPECT_EQ(format_caps(0x1000008), "DMA|0x1000000");
  EXPECT_EQ(format_caps(0x3000000), "0x3000000");
  EXPECT_EQ(format_caps(0x80000404u), "8BIT|SPIRAM|INVALID");
  EXPECT_EQ(format_caps(0xFFFFFFFFu),
            "EXEC|32BIT|8BIT|DMA|PID2|PID3|PID4|PID5|PID6|PID7|SPIRAM|INTERNAL|DEFAULT|IRAM_8BIT|"
            "RETENTION|RTCRAM|SPM|DMA_DESC_AHB|DMA_DESC_AXI|CACHE_ALIGNED|SIMD|SPIRAM_NO_ENC|"
            "INVALID|0x7fc00000");
}

TEST(CapsNames, FormatThenParseRoundTrips) {
  std::uint32_t x = 0x12345678u;
  for (int i = 0; i < 2000; ++i) {
    x = x * 1664525u + 1013904223u;  // LCG: deterministic spread of masks
    const std::uint32_t mask = (i % 2 == 0) ? x : (x & 0x803FFFFFu);
    const CapsParse back = parse_caps(format_caps(mask));
    ASSERT_TRUE(back.ok()) << format_caps(mask) << ": " << back.error;
    EXPECT_EQ(back.caps, mask) << format_caps(mask);
  }
  for (unsigned bit = 0; bit < 32; ++bit) {
    const std::uint32_t mask = 1u << bit;
    EXPECT_EQ(parse_caps(format_caps(mask)).caps, mask) << bit;
  }
}

}  // namespace
}  // namespace capheap::sim
