/* libgcc_extra.c — integer division and 64-bit multiplication helpers that Debian's
 * gcc-xtensa-lx106 libgcc.a does not contain (the ESP8266 SDK takes them from the chip's ROM):
 * __udivsi3 __divsi3 __umodsi3 __udivdi3 __umoddi3 __divdi3 __muldi3 __umulsidi3. Plain
 * shift-and-subtract division and schoolbook multiplication on 16-bit halves (the lx106 has a
 * 32x32->32 multiplier only), for the emulated target tests and the size probes. Compiled with
 * -O2 so that GCC does not turn them back into calls of themselves. */
#include <stdint.h>

typedef uint32_t u32;
typedef int32_t s32;
typedef uint64_t u64;
typedef int64_t s64;

static u32 udivmod32(u32 n, u32 d, u32 *rem) {
  u32 q = 0, r = 0;
  for (int bit = 31; bit >= 0; --bit) {
    r = (r << 1) | ((n >> bit) & 1u);
    if (r >= d) {
      r -= d;
      q |= 1u << bit;
    }
  }
  if (rem != 0) *rem = r;
  return q;
}

static u64 udivmod64(u64 n, u64 d, u64 *rem) {
  u64 q = 0, r = 0;
  for (int bit = 63; bit >= 0; --bit) {
    r = (r << 1) | ((n >> bit) & 1u);
    if (r >= d) {
      r -= d;
      q |= (u64)1 << bit;
    }
  }
  if (rem != 0) *rem = r;
  return q;
}

u32 __udivsi3(u32 n, u32 d);
u32 __umodsi3(u32 n, u32 d);
s32 __divsi3(s32 a, s32 b);
u64 __udivdi3(u64 n, u64 d);
u64 __umoddi3(u64 n, u64 d);
s64 __divdi3(s64 a, s64 b);
u64 __umulsidi3(u32 a, u32 b);
u64 __muldi3(u64 a, u64 b);

u32 __udivsi3(u32 n, u32 d) {
  return udivmod32(n, d, 0);
}
u32 __umodsi3(u32 n, u32 d) {
  u32 r;
  udivmod32(n, d, &r);
  return r;
}
s32 __divsi3(s32 a, s32 b) {
  const u32 ua = a < 0 ? 0u - (u32)a : (u32)a;
  const u32 ub = b < 0 ? 0u - (u32)b : (u32)b;
  const u32 q = udivmod32(ua, ub, 0);
  return (a < 0) != (b < 0) ? (s32)(0u - q) : (s32)q;
}
u64 __udivdi3(u64 n, u64 d) {
  return udivmod64(n, d, 0);
}
u64 __umoddi3(u64 n, u64 d) {
  u64 r;
  udivmod64(n, d, &r);
  return r;
}
s64 __divdi3(s64 a, s64 b) {
  const u64 ua = a < 0 ? 0u - (u64)a : (u64)a;
  const u64 ub = b < 0 ? 0u - (u64)b : (u64)b;
  const u64 q = udivmod64(ua, ub, 0);
  return (a < 0) != (b < 0) ? (s64)(0u - q) : (s64)q;
}
u64 __umulsidi3(u32 a, u32 b) {
  const u32 al = a & 0xFFFFu, ah = a >> 16, bl = b & 0xFFFFu, bh = b >> 16;
  const u32 ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
  const u32 mid = (ll >> 16) + (lh & 0xFFFFu) + (hl & 0xFFFFu);
  const u32 lo = (ll & 0xFFFFu) | (mid << 16);
  const u32 hi = hh + (lh >> 16) + (hl >> 16) + (mid >> 16);
  return ((u64)hi << 32) | lo;
}
u64 __muldi3(u64 a, u64 b) {
  const u32 al = (u32)a, ah = (u32)(a >> 32), bl = (u32)b, bh = (u32)(b >> 32);
  return __umulsidi3(al, bl) + ((u64)(al * bh + ah * bl) << 32);
}
