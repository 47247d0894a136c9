/* quant.c -- the TTQ quantizer of quant.h (group-wise asymmetric round-to-nearest of W diag(D)
 * with fp16 scales and int8 zero points), the packed storage it fills, and row dequantization.
 * The products on the packed matrix live in qkernels.c.
 *
 * Exactness contract: the scalar, AVX2 and AVX-512 quantizers give bit-identical codes, d and z.
 * Every element goes through the same IEEE float operations in the same order:
 *   w~ = w * D[c]            (one f32 product; w converted exactly from F16/BF16/Q8_0 first)
 *   lo, hi = min/max w~      (exact in any order), then lo = lo + 0 so a -0 minimum is +0 and
 *                            the sign of zero does not depend on the reduction order
 *   d  = fp16((hi - lo) / L), or fp16(|lo| / L) when hi == lo, L = 2^bits - 1 (f32 division,
 *        fp16 by round-to-nearest-even; the SIMD code uses F16C, which rounds the same way)
 *   zero = roundf(-lo / d)   (true f32 division; SIMD rounds half away from zero as
 *                            trunc(v + copysign(0.5 - 2^-25, v)), checked equal to roundf for
 *                            every finite float)
 *   r  = 1 / d               (one f32 division per group)
 *   q  = min(max(rne(w~ * r) + zero, 0), L)   (rne: round half to even, the IEEE default, as
 *                            nearbyintf and cvtps2dq; f32 sum: exact whenever the group is not
 *                            degenerate; NaN becomes 0, so the conversion to int is always defined)
 *   zero outside [B - 128, B + 127] (NaN too): lo = lo < 0 ? lo : 0, hi = hi > 0 ? hi : 0,
 *                            (NaN becomes 0, as _mm512_min_ps(lo, 0) gives), d and zero again;
 *                            zero = B if still outside
 *   z  = zero - B            (B = 2^(bits-1))
 * Why w~ * r and not w~ / d: a division per weight cost the vector quantizers either a divide
 * (slow) or a tie check around a multiplication (7 of its 12 operations per 16 codes); with r
 * the codes are one multiplication and one rounding in every variant. w~ * r differs from
 * w~ / d by at most 2^-23 relative, so only values within that of a half-integer (a few per
 * 10^5 at 8 bits) round to the neighbouring code: the same quantizer in quality.
 * Cases quant.h leaves open, decided here: when the fp16 d is 0 (range below fp16 resolution),
 * the group is treated as constant (d = fp16(|lo| / L)), and d = 1 when that is 0 too. Groups
 * whose range overflows fp16, and NaN inputs, give unspecified (but memory-safe) codes.
 *
 * Dispatch: ttq_quantize_rows uses ttq_kernels_select(NULL) (the best variant, or the one TTQ_ISA
 * names) on every call; ttq_quantize_rows_k takes the variant (the fused prefill quantizes row by
 * row and passes its state's kernels). The variants differ only in speed.
 * Memory: no heap (the AVX-512 row quantizer keeps a 64 KB buffer on the stack). Thread-safe:
 * rows [r0, r1) touch only their own codes/d/m. */
#include "quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define TTQ_X86 1
#endif

/* Columns quantized per step: a whole number of groups and of 32-code blocks. */
#define SPAN_MAX 1024
/* Software prefetch distance of the AVX-512 row quantizer, in weights ahead. */
#define PF_W 1024

int ttq_quant_check(int64_t cols, int bits, int group, ttq_diag *d) {
  if (bits != 2 && bits != 3 && bits != 4 && bits != 5 && bits != 8)
    return ttq__fail(d, TTQ_EINVAL, "quantization bits = %d: must be 2, 3, 4, 5 or 8", bits);
  if (group < 8 || group > 1024)
    return ttq__fail(d, TTQ_EINVAL, "quantization group = %d: must be in [8, 1024]", group);
  if (cols <= 0 || cols % 32 != 0)
    return ttq__fail(d, TTQ_EINVAL, "matrix cols = %lld: must be a positive multiple of 32",
                     (long long)cols);
  if (cols % group != 0)
    return ttq__fail(d, TTQ_EINVAL, "quantization group = %d does not divide cols = %lld", group,
                     (long long)cols);
  return 0;
}

/* Packed storage: 64-byte aligned; a buffer of 2 MiB or more is 2 MiB aligned and advised as
 * transparent huge pages (decode streams it every token: one TLB entry per 2 MiB instead of
 * 512), and is touched here, so the first quantization does not take its page faults. */
static void *alloc64(size_t n) {
  const size_t huge = (size_t)2 << 20;
  size_t r = (n + 63) / 64 * 64;
  if (r < huge) return aligned_alloc(64, r ? r : 64);
  void *p = ttq__alloc_huge(r);
  if (p) memset(p, 0, r);
  return p;
}

static size_t round64(size_t n) { return (n + 63) / 64 * 64; }

/* The byte sizes of codes, d and z of a valid shape; TTQ_EINVAL when they overflow. */
static int part_sizes(int64_t rows, int64_t cols, int bits, int group, size_t sz[3], ttq_diag *d) {
  int rc = ttq_quant_check(cols, bits, group, d);
  if (rc) return rc;
  if (rows <= 0) return ttq__fail(d, TTQ_EINVAL, "matrix rows = %lld: must be positive", (long long)rows);
  size_t t;
  if (!ttq__mul_ok((size_t)rows, (size_t)cols, &t) || !ttq__mul_ok(t / 8, (size_t)bits, &sz[0]) ||
      !ttq__mul_ok((size_t)rows, (size_t)(cols / group) * 2, &sz[1]) || sz[0] > SIZE_MAX / 4)
    return ttq__fail(d, TTQ_EINVAL, "matrix %lld x %lld: too large", (long long)rows, (long long)cols);
  sz[2] = sz[1] / 2; /* fp16 d, int8 z per group */
  return 0;
}

int ttq_qmatrix_alloc(ttq_qmatrix *q, int64_t rows, int64_t cols, int bits, int group,
                      ttq_diag *d) {
  memset(q, 0, sizeof *q);
  size_t sz[3];
  int rc = part_sizes(rows, cols, bits, group, sz, d);
  if (rc) return rc;
  q->codes = alloc64(sz[0]);
  q->d = alloc64(sz[1]);
  q->z = alloc64(sz[2]);
  if (!q->codes || !q->d || !q->z) {
    ttq_qmatrix_free(q);
    return ttq__fail(d, TTQ_ENOMEM, "out of memory for a %lld x %lld %d-bit matrix", (long long)rows,
                     (long long)cols, bits);
  }
  q->rows = rows, q->cols = cols, q->bits = bits, q->group = group;
  return 0;
}

int ttq_qmatrix_span(int64_t rows, int64_t cols, int bits, int group, size_t *span, ttq_diag *d) {
  size_t sz[3];
  *span = 0;
  int rc = part_sizes(rows, cols, bits, group, sz, d);
  if (rc) return rc;
  *span = round64(sz[0]) + round64(sz[1]) + round64(sz[2]);
  return 0;
}

int ttq_qmatrix_place(ttq_qmatrix *q, int64_t rows, int64_t cols, int bits, int group, void *mem,
                      ttq_diag *d) {
  memset(q, 0, sizeof *q);
  size_t sz[3];
  int rc = part_sizes(rows, cols, bits, group, sz, d);
  if (rc) return rc;
  if (!mem || (uintptr_t)mem % 64)
    return ttq__fail(d, TTQ_EINVAL, "matrix storage %p: must be 64-byte aligned", mem);
  uint8_t *p = mem;
  q->codes = p;
  q->d = (uint16_t *)(p + round64(sz[0]));
  q->z = (int8_t *)(p + round64(sz[0]) + round64(sz[1]));
  q->rows = rows, q->cols = cols, q->bits = bits, q->group = group;
  q->placed = true;
  return 0;
}

void ttq_qmatrix_free(ttq_qmatrix *q) {
  if (!q) return;
  if (!q->placed) free(q->codes), free(q->d), free(q->z);
  memset(q, 0, sizeof *q);
}

size_t ttq_qmatrix_bytes_for(int64_t rows, int64_t cols, int bits, int group) {
  size_t codes = (size_t)rows * (size_t)cols / 8 * (size_t)bits;
  return codes + (size_t)rows * (size_t)(cols / group) * 3; /* fp16 d + int8 z per group */
}

size_t ttq_qmatrix_bytes(const ttq_qmatrix *q) {
  return q->codes ? ttq_qmatrix_bytes_for(q->rows, q->cols, q->bits, q->group) : 0;
}

/* ---- shared scalar pieces ---- */

/* d (f32 value of its fp16), zero, and the stored fp16 d and int8 z of one group. */
typedef struct gparam {
  float d, r, zero; /* r = 1 / d */
  uint16_t dh;
  int8_t z;
} gparam;

/* d and zero of the range [lo, hi] (lo already +0 for -0). */
static inline void scale_zero(float lo, float hi, float L, gparam *p) {
  float dd = hi == lo ? fabsf(lo) / L : (hi - lo) / L;
  p->dh = ttq__f32_to_f16(dd);
  p->d = ttq__f16_to_f32(p->dh);
  if (p->d == 0 && hi != lo) {
    p->dh = ttq__f32_to_f16(fabsf(lo) / L);
    p->d = ttq__f16_to_f32(p->dh);
  }
  if (p->d == 0) p->dh = 0x3c00, p->d = 1.0f;
  p->r = 1.0f / p->d;
  p->zero = roundf(-lo / p->d);
}

static inline bool zero_fits(float zero, int bits) {
  const float B = (float)TTQ_ZBIAS(bits);
  return zero >= B - 128 && zero <= B + 127; /* false for NaN */
}

static inline gparam group_param(float lo, float hi, int bits) {
  const float L = (float)((1 << bits) - 1);
  gparam p;
  lo = lo + 0.0f; /* -0 -> +0 */
  scale_zero(lo, hi, L, &p);
  if (!zero_fits(p.zero, bits)) {
    scale_zero(lo < 0 ? lo : 0.0f, hi > 0 ? hi : 0.0f, L, &p);
    if (!zero_fits(p.zero, bits)) p.zero = (float)TTQ_ZBIAS(bits);
  }
  p.z = (int8_t)((int)p.zero - TTQ_ZBIAS(bits));
  return p;
}

static inline uint8_t code_of(float w, const gparam *p, float L) {
  float t = nearbyintf(w * p->r) + p->zero;
  t = t > 0 ? t : 0;
  t = t < L ? t : L;
  return (uint8_t)t;
}

static inline uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void wr32(uint8_t *p, uint32_t w) {
  p[0] = (uint8_t)w, p[1] = (uint8_t)(w >> 8), p[2] = (uint8_t)(w >> 16), p[3] = (uint8_t)(w >> 24);
}

/* Packs the 32 codes of one block (quant.h layout); o receives 4 * bits bytes. */
static void pack_block_scalar(int bits, const uint8_t *c, uint8_t *o) {
  uint32_t w = 0;
  switch (bits) {
  case 8: memcpy(o, c, 32); break;
  case 4:
    for (int j = 0; j < 16; j++) o[j] = (uint8_t)(c[j] | c[j + 16] << 4);
    break;
  case 5:
    for (int j = 0; j < 16; j++) o[j] = (uint8_t)((c[j] & 15) | (c[j + 16] & 15) << 4);
    for (int j = 0; j < 32; j++) w |= (uint32_t)(c[j] >> 4 & 1) << j;
    wr32(o + 16, w);
    break;
  case 2:
  case 3:
    for (int j = 0; j < 8; j++)
      o[j] = (uint8_t)((c[j] & 3) | (c[j + 8] & 3) << 2 | (c[j + 16] & 3) << 4 | (c[j + 24] & 3) << 6);
    if (bits == 3) {
      for (int j = 0; j < 32; j++) w |= (uint32_t)(c[j] >> 2 & 1) << j;
      wr32(o + 8, w);
    }
    break;
  }
}

/* Unpacks one block to 32 codes (quant.h; shared with qkernels.c). */
void ttq__unpack_block(int bits, const uint8_t *b, uint8_t *c) {
  uint32_t w;
  switch (bits) {
  case 8: memcpy(c, b, 32); break;
  case 4:
  case 5:
    for (int j = 0; j < 16; j++) c[j] = b[j] & 15, c[j + 16] = b[j] >> 4;
    if (bits == 5) {
      w = rd32(b + 16);
      for (int j = 0; j < 32; j++) c[j] |= (uint8_t)((w >> j & 1) << 4);
    }
    break;
  case 2:
  case 3:
    for (int j = 0; j < 8; j++)
      for (int s = 0; s < 4; s++) c[j + 8 * s] = b[j] >> (2 * s) & 3;
    if (bits == 3) {
      w = rd32(b + 8);
      for (int j = 0; j < 32; j++) c[j] |= (uint8_t)((w >> j & 1) << 2);
    }
    break;
  }
}

/* Element c of a stored row (any dtype), for the generic path. */
static float elem(ttq_dtype wt, const void *row, int64_t c) {
  switch (wt) {
  case TTQ_F32: return ((const float *)row)[c];
  case TTQ_F16: return ttq__f16_to_f32(((const uint16_t *)row)[c]);
  case TTQ_BF16: return ttq__bf16_to_f32(((const uint16_t *)row)[c]);
  case TTQ_Q8_0: {
    const uint8_t *b = (const uint8_t *)row + (c / 32) * 34;
    uint16_t hs;
    memcpy(&hs, b, 2);
    return ttq__f16_to_f32(hs) * (float)(int8_t)b[2 + c % 32];
  }
  default: return 0;
  }
}

static size_t row_bytes(ttq_dtype wt, int64_t cols) { return ttq_dtype_bytes(wt, cols); }

/* Any group (including ones that straddle 32-code blocks): per element, bits set in place. */
static void quantize_row_generic(const ttq_qmatrix *q, ttq_dtype wt, const void *row,
                                 const float *D, int64_t r) {
  const int64_t cols = q->cols, G = q->group, ng = cols / G, bb = 4 * q->bits;
  const float L = (float)((1 << q->bits) - 1);
  uint8_t *codes = q->codes + (size_t)r * (size_t)(cols / 32 * bb);
  memset(codes, 0, (size_t)(cols / 32 * bb));
  for (int64_t g = 0; g < ng; g++) {
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t c = g * G; c < (g + 1) * G; c++) {
      float w = D ? elem(wt, row, c) * D[c] : elem(wt, row, c);
      lo = c == g * G || w < lo ? w : lo;
      hi = c == g * G || w > hi ? w : hi;
    }
    gparam p = group_param(lo, hi, q->bits);
    q->d[r * ng + g] = p.dh, q->z[r * ng + g] = p.z;
    for (int64_t c = g * G; c < (g + 1) * G; c++) {
      float w = D ? elem(wt, row, c) * D[c] : elem(wt, row, c);
      unsigned v = code_of(w, &p, L), j = (unsigned)(c % 32);
      uint8_t *b = codes + c / 32 * bb;
      switch (q->bits) {
      case 8: b[j] = (uint8_t)v; break;
      case 4: b[j % 16] |= (uint8_t)(v << (j / 16 * 4)); break;
      case 5:
        b[j % 16] |= (uint8_t)((v & 15) << (j / 16 * 4));
        b[16 + j / 8] |= (uint8_t)((v >> 4 & 1) << (j % 8));
        break;
      case 2: b[j % 8] |= (uint8_t)(v << (j / 8 * 2)); break;
      case 3:
        b[j % 8] |= (uint8_t)((v & 3) << (j / 8 * 2));
        b[8 + j / 8] |= (uint8_t)((v >> 2 & 1) << (j % 8));
        break;
      }
    }
  }
}

/* ---- the span pipeline: load w~ for n columns, per group min/max + params + codes, pack ---- */

typedef struct span_ops {
  /* out[i] = W[c0 + i] * D[c0 + i] (D may be NULL), i < n; n a multiple of 32. */
  void (*load)(ttq_dtype wt, const void *row, int64_t c0, int n, const float *D, float *out);
  /* Quantizes n = k * G values (G divides 32 or 32 divides G; n a multiple of 32) into packed
   * blocks at o, and the group scales and zero points to dh/z. */
  void (*span)(const float *w, int n, int G, int bits, uint8_t *o, uint16_t *dh, int8_t *z);
} span_ops;

static void load_scalar(ttq_dtype wt, const void *row, int64_t c0, int n, const float *D,
                        float *out) {
  if (wt == TTQ_Q8_0) ttq__to_f32(wt, (const uint8_t *)row + c0 / 32 * 34, out, n);
  else
    for (int i = 0; i < n; i++) out[i] = elem(wt, row, c0 + i);
  if (D)
    for (int i = 0; i < n; i++) out[i] = out[i] * D[c0 + i];
}

static void span_scalar(const float *w, int n, int G, int bits, uint8_t *o, uint16_t *dh,
                        int8_t *z) {
  const float L = (float)((1 << bits) - 1);
  uint8_t c[SPAN_MAX];
  for (int g = 0; g * G < n; g++) {
    const float *x = w + g * G;
    float lo = x[0], hi = x[0];
    for (int i = 1; i < G; i++) lo = x[i] < lo ? x[i] : lo, hi = x[i] > hi ? x[i] : hi;
    gparam p = group_param(lo, hi, bits);
    dh[g] = p.dh, z[g] = p.z;
    for (int i = 0; i < G; i++) c[g * G + i] = code_of(x[i], &p, L);
  }
  for (int b = 0; b < n / 32; b++) pack_block_scalar(bits, c + 32 * b, o + b * 4 * bits);
}

static const span_ops ops_scalar = {load_scalar, span_scalar};

#ifdef TTQ_X86
/* ---- AVX2 + FMA + F16C ---- */
#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))

/* Packs nb blocks of codes (32 each) at c into o. */
AVX2_TARGET static void pack_avx2(int bits, const uint8_t *c, int nb, uint8_t *o) {
  for (int b = 0; b < nb; b++, c += 32, o += 4 * bits) {
    __m256i v = _mm256_loadu_si256((const __m256i *)c);
    __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
    switch (bits) {
    case 8: _mm256_storeu_si256((__m256i *)o, v); break;
    case 4:
    case 5: {
      const __m128i m15 = _mm_set1_epi8(15);
      __m128i p = _mm_or_si128(_mm_and_si128(lo, m15), _mm_slli_epi16(_mm_and_si128(hi, m15), 4));
      _mm_storeu_si128((__m128i *)o, p);
      if (bits == 5) {
        uint32_t w = (uint32_t)_mm256_movemask_epi8(_mm256_slli_epi16(v, 3));
        wr32(o + 16, w);
      }
      break;
    }
    case 2:
    case 3: {
      const __m128i m3 = _mm_set1_epi8(3);
      __m128i a = _mm_and_si128(lo, m3), h = _mm_and_si128(hi, m3);
      /* a: codes 0..15 (bytes 0..7 field 0, 8..15 field 1); h: codes 16..31 */
      __m128i f01 = _mm_or_si128(a, _mm_slli_epi16(_mm_srli_si128(a, 8), 2));
      __m128i f23 = _mm_or_si128(h, _mm_slli_epi16(_mm_srli_si128(h, 8), 2));
      __m128i p = _mm_or_si128(f01, _mm_slli_epi16(f23, 4));
      _mm_storel_epi64((__m128i *)o, p);
      if (bits == 3) {
        uint32_t w = (uint32_t)_mm256_movemask_epi8(_mm256_slli_epi16(v, 5));
        wr32(o + 8, w);
      }
      break;
    }
    }
  }
}

AVX2_TARGET static void load_avx2(ttq_dtype wt, const void *row, int64_t c0, int n,
                                  const float *D, float *out) {
  switch (wt) {
  case TTQ_F32: {
    const float *s = (const float *)row + c0;
    for (int i = 0; i < n; i += 8) _mm256_storeu_ps(out + i, _mm256_loadu_ps(s + i));
    break;
  }
  case TTQ_BF16: {
    const uint16_t *s = (const uint16_t *)row + c0;
    for (int i = 0; i < n; i += 8) {
      __m128i h = _mm_loadu_si128((const __m128i *)(s + i));
      _mm256_storeu_ps(out + i, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
    }
    break;
  }
  case TTQ_F16: {
    const uint16_t *s = (const uint16_t *)row + c0;
    for (int i = 0; i < n; i += 8)
      _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
    break;
  }
  default: load_scalar(wt, row, c0, n, NULL, out); break;
  }
  if (D)
    for (int i = 0; i < n; i += 8)
      _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(out + i), _mm256_loadu_ps(D + c0 + i)));
}

AVX2_TARGET static inline float hmin8(__m256 v) {
  __m128 a = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  a = _mm_min_ps(a, _mm_movehl_ps(a, a));
  a = _mm_min_ss(a, _mm_shuffle_ps(a, a, 1));
  return _mm_cvtss_f32(a);
}
AVX2_TARGET static inline float hmax8(__m256 v) {
  __m128 a = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  a = _mm_max_ps(a, _mm_movehl_ps(a, a));
  a = _mm_max_ss(a, _mm_shuffle_ps(a, a, 1));
  return _mm_cvtss_f32(a);
}

/* 8 codes of x (already w~) into c; r = 1 / d. */
AVX2_TARGET static inline void codes8(const float *x, __m256 r, __m256 z, __m256 L, uint8_t *c) {
  __m256 t = _mm256_add_ps(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x), r),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), z);
  t = _mm256_min_ps(_mm256_max_ps(t, _mm256_setzero_ps()), L);
  __m256i i = _mm256_cvttps_epi32(t);
  __m128i p = _mm_packus_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
  p = _mm_packus_epi16(p, p);
  _mm_storel_epi64((__m128i *)c, p);
}

AVX2_TARGET static void span_avx2(const float *w, int n, int G, int bits, uint8_t *o, uint16_t *dh,
                                  int8_t *zp) {
  const __m256 L = _mm256_set1_ps((float)((1 << bits) - 1));
  uint8_t c[SPAN_MAX];
  for (int g = 0; g * G < n; g++) {
    const float *x = w + g * G;
    __m256 lo = _mm256_loadu_ps(x), hi = lo;
    for (int i = 8; i < G; i += 8) {
      __m256 v = _mm256_loadu_ps(x + i);
      lo = _mm256_min_ps(lo, v), hi = _mm256_max_ps(hi, v);
    }
    gparam p = group_param(hmin8(lo), hmax8(hi), bits);
    dh[g] = p.dh, zp[g] = p.z;
    __m256 r = _mm256_set1_ps(p.r), z = _mm256_set1_ps(p.zero);
    for (int i = 0; i < G; i += 8) codes8(x + i, r, z, L, c + g * G + i);
  }
  pack_avx2(bits, c, n / 32, o);
}

static const span_ops ops_avx2 = {load_avx2, span_avx2};

/* ---- AVX-512 (F + BW + VL) ---- */
#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

AVX512_TARGET static inline __m512 round_away16(__m512 v) {
  const __m512 half = _mm512_set1_ps(0.49999997f);
  __m512 h = _mm512_castsi512_ps(_mm512_or_si512(
      _mm512_castps_si512(half), _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(INT32_MIN))));
  return _mm512_roundscale_ps(_mm512_add_ps(v, h), _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
}

AVX512_TARGET static void load_avx512(ttq_dtype wt, const void *row, int64_t c0, int n,
                                      const float *D, float *out) {
  switch (wt) {
  case TTQ_F32: {
    const float *s = (const float *)row + c0;
    if (D)
      for (int i = 0; i < n; i += 16)
        _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_loadu_ps(s + i), _mm512_loadu_ps(D + c0 + i)));
    else
      memcpy(out, s, (size_t)n * 4);
    return;
  }
  case TTQ_BF16: {
    const uint16_t *s = (const uint16_t *)row + c0;
    for (int i = 0; i < n; i += 16) {
      __m256i h = _mm256_loadu_si256((const __m256i *)(s + i));
      __m512 v = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
      if (D) v = _mm512_mul_ps(v, _mm512_loadu_ps(D + c0 + i));
      _mm512_storeu_ps(out + i, v);
    }
    return;
  }
  case TTQ_F16: {
    const uint16_t *s = (const uint16_t *)row + c0;
    for (int i = 0; i < n; i += 16) {
      __m512 v = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s + i)));
      if (D) v = _mm512_mul_ps(v, _mm512_loadu_ps(D + c0 + i));
      _mm512_storeu_ps(out + i, v);
    }
    return;
  }
  default:
    load_scalar(wt, row, c0, n, NULL, out);
    if (D)
      for (int i = 0; i < n; i += 16)
        _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_loadu_ps(out + i), _mm512_loadu_ps(D + c0 + i)));
    return;
  }
}

/* 16 codes of x (already w~); r = 1 / d. */
AVX512_TARGET static inline __m128i codes16(__m512 x, __m512 r, __m512 z, __m512 L) {
  __m512 t = _mm512_add_ps(_mm512_roundscale_ps(_mm512_mul_ps(x, r), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), z);
  t = _mm512_min_ps(_mm512_max_ps(t, _mm512_setzero_ps()), L);
  return _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(t));
}

/* d (f32 and fp16) and zero of 16 ranges at once, lane-wise the same operations as scale_zero
 * (lo already +0 for -0). */
AVX512_TARGET static inline void scale_zero16(__m512 lo, __m512 hi, __m512 L, __m512 *d, __m256i *dh,
                                              __m512 *zero) {
  const __m512 z0 = _mm512_setzero_ps();
  const __m512i absm = _mm512_set1_epi32(0x7fffffff);
  __m512 alo = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(lo), absm));
  __mmask16 eq = _mm512_cmp_ps_mask(hi, lo, _CMP_EQ_OQ);
  __m512 dd = _mm512_mask_blend_ps(eq, _mm512_div_ps(_mm512_sub_ps(hi, lo), L), _mm512_div_ps(alo, L));
  __m256i h = _mm512_cvtps_ph(dd, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 df = _mm512_cvtph_ps(h);
  __mmask16 z = _mm512_cmp_ps_mask(df, z0, _CMP_EQ_OQ) & ~eq;
  if (z) {
    __m256i h2 = _mm512_cvtps_ph(_mm512_div_ps(alo, L), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    h = _mm256_mask_blend_epi16(z, h, h2);
    df = _mm512_cvtph_ps(h);
  }
  z = _mm512_cmp_ps_mask(df, z0, _CMP_EQ_OQ);
  if (z) {
    h = _mm256_mask_blend_epi16(z, h, _mm256_set1_epi16(0x3c00));
    df = _mm512_mask_blend_ps(z, df, _mm512_set1_ps(1.0f));
  }
  /* unary minus is a sign flip (not 0 - v: that differs for zeros) */
  __m512 nlo = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(lo), _mm512_set1_epi32(INT32_MIN)));
  *d = df, *dh = h, *zero = round_away16(_mm512_div_ps(nlo, df));
}

/* Lanes whose zero is outside [B - 128, B + 127] (NaN too), as zero_fits. */
AVX512_TARGET static inline __mmask16 zero_out16(__m512 zero, int bits) {
  const float B = (float)TTQ_ZBIAS(bits);
  return _mm512_cmp_ps_mask(zero, _mm512_set1_ps(B - 128), _CMP_NGE_UQ) |
         _mm512_cmp_ps_mask(zero, _mm512_set1_ps(B + 127), _CMP_NLE_UQ);
}

/* Group parameters of 16 groups at once, lane-wise the same operations as group_param. */
AVX512_TARGET static inline void group_param16(__m512 lo, __m512 hi, int bits, __m512 *d,
                                               __m512 *zero, uint16_t *dh, int8_t *zp) {
  const __m512 L = _mm512_set1_ps((float)((1 << bits) - 1)), z0 = _mm512_setzero_ps();
  lo = _mm512_add_ps(lo, z0);
  __m512 df, zr;
  __m256i h;
  scale_zero16(lo, hi, L, &df, &h, &zr);
  __mmask16 out = zero_out16(zr, bits);
  if (out) { /* widen to contain 0; _mm512_min_ps(lo, 0) is lo < 0 ? lo : 0 (NaN -> 0) */
    __m512 df2, zr2;
    __m256i h2;
    scale_zero16(_mm512_min_ps(lo, z0), _mm512_max_ps(hi, z0), L, &df2, &h2, &zr2);
    df = _mm512_mask_blend_ps(out, df, df2), zr = _mm512_mask_blend_ps(out, zr, zr2);
    h = _mm256_mask_blend_epi16(out, h, h2);
    zr = _mm512_mask_blend_ps(zero_out16(zr, bits), zr, _mm512_set1_ps((float)TTQ_ZBIAS(bits)));
  }
  __m512i zi = _mm512_sub_epi32(_mm512_cvt_roundps_epi32(zr, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
                                _mm512_set1_epi32(TTQ_ZBIAS(bits)));
  _mm256_storeu_si256((__m256i *)dh, h);
  _mm_storeu_si128((__m128i *)zp, _mm512_cvtepi32_epi8(zi));
  *d = df, *zero = zr;
}

AVX512_TARGET static void span_avx512(const float *w, int n, int G, int bits, uint8_t *o,
                                      uint16_t *dh, int8_t *zp) {
  const __m512 L = _mm512_set1_ps((float)((1 << bits) - 1));
  uint8_t c[SPAN_MAX];
  const int ng = n / G;
  if (G == 32) {
    /* 16 groups per step: transposed min/max, vector parameters, vector codes */
    for (int g0 = 0; g0 < ng; g0 += 16) {
      int k = ng - g0 < 16 ? ng - g0 : 16;
      float lo[16], hi[16];
      for (int g = 0; g < 16; g++) {
        if (g >= k) {
          lo[g] = hi[g] = 1.0f;
          continue;
        }
        __m512 a = _mm512_loadu_ps(w + (g0 + g) * 32), b = _mm512_loadu_ps(w + (g0 + g) * 32 + 16);
        lo[g] = _mm512_reduce_min_ps(_mm512_min_ps(a, b));
        hi[g] = _mm512_reduce_max_ps(_mm512_max_ps(a, b));
      }
      __m512 d, z;
      uint16_t dh16[16];
      int8_t z16[16];
      float rf[16], zf[16];
      group_param16(_mm512_loadu_ps(lo), _mm512_loadu_ps(hi), bits, &d, &z, dh16, z16);
      memcpy(dh + g0, dh16, (size_t)k * 2);
      memcpy(zp + g0, z16, (size_t)k);
      _mm512_storeu_ps(rf, _mm512_div_ps(_mm512_set1_ps(1.0f), d));
      _mm512_storeu_ps(zf, z);
      for (int g = 0; g < k; g++) {
        const float *x = w + (g0 + g) * 32;
        __m512 rv = _mm512_set1_ps(rf[g]), zv = _mm512_set1_ps(zf[g]);
        _mm_storeu_si128((__m128i *)(c + (g0 + g) * 32), codes16(_mm512_loadu_ps(x), rv, zv, L));
        _mm_storeu_si128((__m128i *)(c + (g0 + g) * 32 + 16), codes16(_mm512_loadu_ps(x + 16), rv, zv, L));
      }
    }
  } else if (G >= 16) {
    for (int g = 0; g < ng; g++) {
      const float *x = w + g * G;
      __m512 lo = _mm512_loadu_ps(x), hi = lo;
      for (int i = 16; i < G; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        lo = _mm512_min_ps(lo, v), hi = _mm512_max_ps(hi, v);
      }
      gparam p = group_param(_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi), bits);
      dh[g] = p.dh, zp[g] = p.z;
      __m512 r = _mm512_set1_ps(p.r), z = _mm512_set1_ps(p.zero);
      for (int i = 0; i < G; i += 16)
        _mm_storeu_si128((__m128i *)(c + g * G + i), codes16(_mm512_loadu_ps(x + i), r, z, L));
    }
  } else { /* G == 8: two groups per 16 lanes */
    for (int g = 0; g < ng; g += 2) {
      const float *x = w + g * 8;
      __m512 v = _mm512_loadu_ps(x);
      __m256 a = _mm512_castps512_ps256(v), b = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
      gparam p0 = group_param(hmin8(a), hmax8(a), bits), p1 = group_param(hmin8(b), hmax8(b), bits);
      dh[g] = p0.dh, zp[g] = p0.z, dh[g + 1] = p1.dh, zp[g + 1] = p1.z;
      __m512 r = _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(p0.r), _mm512_set1_ps(p1.r));
      __m512 z = _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(p0.zero), _mm512_set1_ps(p1.zero));
      _mm_storeu_si128((__m128i *)(c + g * 8), codes16(v, r, z, L));
    }
  }
  pack_avx2(bits, c, n / 32, o);
}

static const span_ops ops_avx512 = {load_avx512, span_avx512};

/* ---- AVX-512 row quantizer for groups that are a multiple of 32 (F32/F16/BF16 weights) ----
 * One pass over a row in chunks of 16 groups: load w~ = w * D into an L1 buffer while taking the
 * per-group min/max vectors, reduce the 16 groups' min/max with a transpose tree (one vector),
 * the 16 groups' parameters at once (group_param16), then codes packed straight from 32-bit
 * lanes into the block layout.
 * Codes by the reference's sequence on 16 lanes: rne(w~ * r) + zero, clamped (no division per
 * weight: r = 1/d once per group). Measured on the 738M shape, one core: 2.9 GB/s of F16 master
 * weights with two passes and a division per weight, 5.1-5.9 with one pass and a tie check
 * around the multiplication (when codes were defined by roundf(w~ / d)), and about 7 with the
 * reciprocal definition (docs/BENCHMARKS.md). */
#define AVX512Q_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

AVX512Q_TARGET static inline __m512 load16_w(ttq_dtype wt, const void *row, int64_t c,
                                            const float *D) {
  __m512 v;
  if (wt == TTQ_F32) v = _mm512_loadu_ps((const float *)row + c);
  else if (wt == TTQ_F16) v = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + c)));
  else
    v = _mm512_castsi512_ps(_mm512_slli_epi32(
        _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + c))), 16));
  return D ? _mm512_mul_ps(v, _mm512_loadu_ps(D + c)) : v;
}

/* Lane g of the result = min (or max) over the 16 lanes of v[g]. */
AVX512Q_TARGET static inline __m512 tree16(const __m512 v[16], int is_max) {
#define OP(a, b) (is_max ? _mm512_max_ps(a, b) : _mm512_min_ps(a, b))
  __m512 w1[8], w2[4], w3[2];
  for (int i = 0; i < 8; i++) /* blocks 0-1: group 2i, blocks 2-3: group 2i+1 (8 partials) */
    w1[i] = OP(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
               _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  for (int i = 0; i < 4; i++) /* block k: group 4i+k (4 partials) */
    w2[i] = OP(_mm512_shuffle_f32x4(w1[2 * i], w1[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
               _mm512_shuffle_f32x4(w1[2 * i], w1[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  for (int i = 0; i < 2; i++) /* block k: group 8i+k (2 partials), group 8i+4+k (2 partials) */
    w3[i] = OP(_mm512_shuffle_ps(w2[2 * i], w2[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
               _mm512_shuffle_ps(w2[2 * i], w2[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  /* lane 4k + j: group k + 4j */
  __m512 t = OP(_mm512_shuffle_ps(w3[0], w3[1], _MM_SHUFFLE(2, 0, 2, 0)),
                _mm512_shuffle_ps(w3[0], w3[1], _MM_SHUFFLE(3, 1, 3, 1)));
#undef OP
  const __m512i nat = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(nat, t);
}

/* 16 codes (int32 lanes) of w~ with the group's r = 1/d and zero: the float sequence of code_of
 * (so NaN gives 0 and a huge value L, as there). */
AVX512Q_TARGET static inline __m512i codes16_fast(__m512 w, __m512 r, __m512 zf, __m512 Lf) {
  __m512 t = _mm512_add_ps(_mm512_roundscale_ps(_mm512_mul_ps(w, r), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), zf);
  t = _mm512_min_ps(_mm512_max_ps(t, _mm512_setzero_ps()), Lf);
  return _mm512_cvttps_epi32(t);
}

/* Packs one block from its codes 0-15 (k0) and 16-31 (k1), int32 lanes. */
AVX512Q_TARGET static inline void pack16x2(int bits, __m512i k0, __m512i k1, uint8_t *o) {
  switch (bits) {
  case 8:
    _mm_storeu_si128((__m128i *)o, _mm512_cvtepi32_epi8(k0));
    _mm_storeu_si128((__m128i *)(o + 16), _mm512_cvtepi32_epi8(k1));
    break;
  case 4: _mm_storeu_si128((__m128i *)o, _mm512_cvtepi32_epi8(_mm512_or_si512(k0, _mm512_slli_epi32(k1, 4)))); break;
  case 5: {
    const __m512i m = _mm512_set1_epi32(15), b = _mm512_set1_epi32(16);
    __m512i u = _mm512_or_si512(_mm512_and_si512(k0, m), _mm512_slli_epi32(_mm512_and_si512(k1, m), 4));
    _mm_storeu_si128((__m128i *)o, _mm512_cvtepi32_epi8(u));
    wr32(o + 16, (uint32_t)_mm512_test_epi32_mask(k0, b) | (uint32_t)_mm512_test_epi32_mask(k1, b) << 16);
    break;
  }
  default: { /* 2, 3: byte j = c_j | c_j+8 << 2 | c_j+16 << 4 | c_j+24 << 6 */
    const __m512i m = _mm512_set1_epi32(3), b = _mm512_set1_epi32(4);
    __m512i u = _mm512_or_si512(_mm512_and_si512(k0, m), _mm512_slli_epi32(_mm512_and_si512(k1, m), 4));
    u = _mm512_or_si512(u, _mm512_slli_epi32(_mm512_shuffle_i64x2(u, u, _MM_SHUFFLE(3, 2, 3, 2)), 2));
    _mm_storel_epi64((__m128i *)o, _mm512_cvtepi32_epi8(u));
    if (bits == 3)
      wr32(o + 8, (uint32_t)_mm512_test_epi32_mask(k0, b) | (uint32_t)_mm512_test_epi32_mask(k1, b) << 16);
    break;
  }
  }
}

AVX512Q_TARGET static inline __attribute__((always_inline)) void
quant_row_avx512_t(const int bits, const ttq_dtype wt, const ttq_qmatrix *q, const void *row,
                   const float *D, int64_t r) {
  const int G = q->group, vpg = G / 16;
  const int64_t cols = q->cols, ng = cols / G;
  const size_t bb = 4 * (size_t)bits;
  uint8_t *codes = q->codes + (size_t)r * (size_t)(cols / 32) * bb;
  uint16_t *dh = q->d + r * ng;
  int8_t *zp = q->z + r * ng;
  const float Lv = (float)((1 << bits) - 1);
  const __m512 Lf = _mm512_set1_ps(Lv);
  float buf[16 * 1024] __attribute__((aligned(64)));
  for (int64_t g0 = 0; g0 < ng; g0 += 16) {
    const int k = ng - g0 < 16 ? (int)(ng - g0) : 16;
    __m512 mn[16], mx[16];
    for (int g = 0; g < k; g++) {
      const int64_t c0 = (g0 + g) * G;
      float *b = buf + g * G;
      __m512 v = load16_w(wt, row, c0, D), lo = v, hi = v;
      _mm512_store_ps(b, v);
      _mm_prefetch((const char *)row + (c0 + PF_W) * (wt == TTQ_F32 ? 4 : 2), _MM_HINT_T0);
      for (int j = 1; j < vpg; j++) {
        if (j % (wt == TTQ_F32 ? 4 : 2) == 0)
          _mm_prefetch((const char *)row + (c0 + 16 * j + PF_W) * (wt == TTQ_F32 ? 4 : 2), _MM_HINT_T0);
        v = load16_w(wt, row, c0 + 16 * j, D);
        _mm512_store_ps(b + 16 * j, v);
        lo = _mm512_min_ps(lo, v), hi = _mm512_max_ps(hi, v);
      }
      mn[g] = lo, mx[g] = hi;
    }
    for (int g = k; g < 16; g++) mn[g] = mx[g] = _mm512_set1_ps(1.0f);
    __m512 d, z;
    uint16_t dh16[16];
    int8_t z16[16];
    group_param16(tree16(mn, 0), tree16(mx, 1), bits, &d, &z, dh16, z16);
    memcpy(dh + g0, dh16, (size_t)k * 2);
    memcpy(zp + g0, z16, (size_t)k);
    float rf[16], zf[16];
    _mm512_storeu_ps(rf, _mm512_div_ps(_mm512_set1_ps(1.0f), d));
    _mm512_storeu_ps(zf, z);
    for (int g = 0; g < k; g++) {
      const __m512 rv = _mm512_set1_ps(rf[g]), zv = _mm512_set1_ps(zf[g]);
      const float *b = buf + g * G;
      uint8_t *o = codes + (size_t)((g0 + g) * G / 32) * bb;
      for (int j = 0; j < G; j += 32, o += bb) {
        __m512i k0 = codes16_fast(_mm512_load_ps(b + j), rv, zv, Lf);
        __m512i k1 = codes16_fast(_mm512_load_ps(b + j + 16), rv, zv, Lf);
        pack16x2(bits, k0, k1, o);
      }
    }
  }
}

#define QROW(B)                                                                                    \
  static void quant_row_avx512_##B(const ttq_qmatrix *q, ttq_dtype wt, const void *row,         \
                                   const float *D, int64_t r) {                                  \
    if (wt == TTQ_F32) quant_row_avx512_t(B, TTQ_F32, q, row, D, r);                             \
    else if (wt == TTQ_F16) quant_row_avx512_t(B, TTQ_F16, q, row, D, r);                        \
    else quant_row_avx512_t(B, TTQ_BF16, q, row, D, r);                                          \
  }
AVX512Q_TARGET QROW(2)
AVX512Q_TARGET QROW(3)
AVX512Q_TARGET QROW(4)
AVX512Q_TARGET QROW(5)
AVX512Q_TARGET QROW(8)
#undef QROW

/* One row (F32, F16 or BF16, group a multiple of 32) on AVX-512. */
static void quant_row_avx512(const ttq_qmatrix *q, ttq_dtype wt, const void *row, const float *D,
                             int64_t r) {
  switch (q->bits) {
  case 2: quant_row_avx512_2(q, wt, row, D, r); break;
  case 3: quant_row_avx512_3(q, wt, row, D, r); break;
  case 4: quant_row_avx512_4(q, wt, row, D, r); break;
  case 5: quant_row_avx512_5(q, wt, row, D, r); break;
  default: quant_row_avx512_8(q, wt, row, D, r); break;
  }
}
#endif

static const span_ops *pick_ops(const ttq_kernels *k) {
#ifdef TTQ_X86
  if (k && !strcmp(k->name, "avx512")) return &ops_avx512;
  if (k && !strcmp(k->name, "avx2")) return &ops_avx2;
#endif
  return &ops_scalar;
}

void ttq_quantize_rows(ttq_qmatrix *q, ttq_dtype wt, const void *W, const float *D, int64_t r0,
                       int64_t r1) {
  ttq_quantize_rows_k(ttq_kernels_select(NULL), q, wt, W, D, r0, r1);
}

/* Row r of q from the stored row at `row`, with the span operations ops. */
static void quantize_row(const span_ops *ops, ttq_qmatrix *q, ttq_dtype wt, const void *row,
                         const float *D, int64_t r) {
  const int64_t cols = q->cols, ng = cols / q->group;
  const int G = q->group, bits = q->bits;
#ifdef TTQ_X86
  if (ops == &ops_avx512 && G % 32 == 0 && (wt == TTQ_F32 || wt == TTQ_F16 || wt == TTQ_BF16)) {
    quant_row_avx512(q, wt, row, D, r);
    return;
  }
#endif
  if (G % 32 != 0 && 32 % G != 0) {
    quantize_row_generic(q, wt, row, D, r);
    return;
  }
  float buf[SPAN_MAX] __attribute__((aligned(64)));
  const int unit = G > 32 ? G : 32, step = SPAN_MAX / unit * unit;
  uint8_t *codes = q->codes + (size_t)r * (size_t)(cols / 32) * 4 * (size_t)bits;
  for (int64_t c0 = 0; c0 < cols; c0 += step) {
    int n = (int)(cols - c0 < step ? cols - c0 : step);
    ops->load(wt, row, c0, n, D, buf);
    ops->span(buf, n, G, bits, codes + c0 / 32 * 4 * bits, q->d + r * ng + c0 / G,
              q->z + r * ng + c0 / G);
  }
}

void ttq_quantize_rows_k(const ttq_kernels *k, ttq_qmatrix *q, ttq_dtype wt, const void *W,
                         const float *D, int64_t r0, int64_t r1) {
  const span_ops *ops = pick_ops(k);
  const size_t rb = row_bytes(wt, q->cols);
  for (int64_t r = r0; r < r1; r++) quantize_row(ops, q, wt, (const uint8_t *)W + (size_t)r * rb, D, r);
}

void ttq_quantize_row_k(const ttq_kernels *k, ttq_qmatrix *q, ttq_dtype wt, const void *row,
                        const float *D, int64_t r) {
  quantize_row(pick_ops(k), q, wt, row, D, r);
}

void ttq_quantize_rows_f32(ttq_qmatrix *q, const float *W, const float *D, int64_t r0, int64_t r1) {
  ttq_quantize_rows(q, TTQ_F32, W, D, r0, r1);
}

void ttq_qmatrix_dequant_row(const ttq_qmatrix *q, int64_t r, float *out) {
  const int64_t cols = q->cols, G = q->group, ng = cols / G;
  const size_t bb = 4 * (size_t)q->bits;
  const uint8_t *codes = q->codes + (size_t)r * (size_t)(cols / 32) * bb;
  uint8_t c[32];
  for (int64_t b = 0; b < cols / 32; b++) {
    ttq__unpack_block(q->bits, codes + b * bb, c);
    for (int j = 0; j < 32; j++) {
      int64_t col = b * 32 + j, g = r * ng + col / G;
      out[col] = (float)((int)c[j] - q->z[g] - TTQ_ZBIAS(q->bits)) * ttq__f16_to_f32(q->d[g]);
    }
  }
}
