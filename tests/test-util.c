/* test-util.c -- half-precision conversions against exhaustive round trips. */
#include "test.h"
#include "util.h"

TEST_IMPL(util_half_conversions) {
  /* Every finite f16 value converts to f32 and back to itself (property: exact round trip). */
  for (uint32_t h = 0; h < 0x10000; h++) {
    if ((h & 0x7c00) == 0x7c00) continue; /* inf/nan */
    float f = ttq__f16_to_f32((uint16_t)h);
    ASSERTF(ttq__f32_to_f16(f) == h, "h=0x%04x f=%g back=0x%04x", h, f, ttq__f32_to_f16(f));
  }
  /* Known values, independent of the implementation. */
  ASSERT(ttq__f16_to_f32(0x3c00) == 1.0f);
  ASSERT(ttq__f16_to_f32(0xc000) == -2.0f);
  ASSERT(ttq__f16_to_f32(0x0001) == 5.9604644775390625e-08f);
  ASSERT(ttq__f16_to_f32(0x7bff) == 65504.0f);
  ASSERT(ttq__f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00);     /* tie rounds to even */
  ASSERT(ttq__f32_to_f16(1.0f + 3.0f / 2048) == 0x3c02);     /* tie rounds to even, up */
  ASSERT(ttq__bf16_to_f32(0x3f80) == 1.0f);
  ASSERT(ttq__f32_to_bf16(1.0f) == 0x3f80);
  for (uint32_t h = 0; h < 0x10000; h++) {
    if ((h & 0x7f80) == 0x7f80) continue;
    ASSERT(ttq__f32_to_bf16(ttq__bf16_to_f32((uint16_t)h)) == h);
  }
  return 0;
}
