/* qkernels.c -- products with a packed quantized matrix (quant.h): ttq_qmatvec (decode, one
 * token) and ttq_qmatmul (many tokens), in scalar, AVX2 and AVX-512 versions chosen by the
 * `ttq_kernels` argument (k->name).
 *
 * Two formulas for one row r (groups g, codes q, fp16 d, offsets m_g = -zero_g d_g (exact in
 * f32) from the int8 zero points, x scaled by 1/D by the caller):
 *   float activations (the reference, every ISA):
 *       y_r = sum_g d_g * (sum_{i in g} q_i x_i) + sum_g m_g * S_g,   S_g = sum_{i in g} x_i
 *     S_g depends only on x and is computed once per call.
 *   quantized activations (AVX-512 VNNI, group a multiple of 32): x is rounded per 32-block b
 *     to xq = round(x / s_b), s_b = max|x_b| / Q, x-hat = xq s_b, with Q = 32767 (int16,
 *     vpdpwssd) or Q = 127 (int8, vpdpbusd: u8 codes x s8 activations); then
 *       y_r = sum_b d_g(b) s_b * (sum_{i in b} q_i xq_i) + sum_g m_g * S^_g,  S^_g = sum x-hat
 *     which is W' x-hat exactly up to float rounding; its error sum_i w'_i (x_i - x-hat_i) is
 *     at most sum_i |w'_i| s_b(i) / 2 (the tests check that bound).
 * Selection (AVX-512 only): TTQ_QACT=f32 | int16 | int8; unset = int8 for TTQ's matrices
 *   (ttq_qmatrix.act_int8) and int16 for RTN's and AWQ's, when the CPU has AVX512-VNNI and the
 *   group is a multiple of 32. int16 measured 2x the float kernel at 4 bits (decode is
 *   compute-bound on the float kernel) with x error 2^-16 of the block max. int8 (error 2^-8 of
 *   the block max) costs TTQ at most 0.16% perplexity against int16 (3 models x 7 domains x
 *   W8/W4/W3/W2, token by token through this kernel; the bar is 0.2%) and decodes
 *   1.04-1.12x faster (half the vpdpbusd per weight): TTQ's input is divided by D, which
 *   flattens the outlier channels that would set a block's int8 step. RTN's input is not: int8
 *   cost RTN +1.5% to +9.1% on the outlier model (AWQ up to +1.7% at W2), so they keep int16
 *   (docs/QUALITY.md). int8 makes perplexity differ by up to 0.17% between rank counts (int16:
 *   1e-5), since the ranks' float summation orders flip a few roundings.
 *
 * Bit fields: the 2-5-bit codes are unpacked as bytes, field by field; with GFNI (and not
 *   TTQ_GFNI=0) one vgf2p8affineqb takes a field where the generic path shifts and masks: the
 *   same integers, so the same results bit for bit.
 *
 * ttq_qmatmul: n < 4 tokens run the decode kernel per token; more dequantize a tile of rows to
 * f32 (exact: w' = q d + m) and call cblas_sgemm on it, reusing each weight for all n tokens.
 * In a quantized-activation mode sgemm gets x-hat, so prefill and decode give the same logits.
 *
 * Invariants: no kernel reads past the codes, d, m or x it is given (partial 32-block sets use
 * masked loads); scratch lives on the stack for cols <= STACK_COLS, else on the heap, and when
 * the heap fails the scalar kernel (which needs no scratch) runs instead, so nothing here fails.
 * Thread-safe for disjoint row ranges. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "util.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define TTQ_X86 1
#endif

#define STACK_COLS 16384
/* Software prefetch distance in bytes of codes ahead of the current set (rows are contiguous,
 * so it runs on into the next row). Measured on the 738M model: none 57, 1 KB 74, 2 KB 76,
 * 4 KB 75 tok/s at 2 bits; 3 bits 58 at 2 KB. */
#define PF_DIST 2048
#define ALWAYS_INLINE inline __attribute__((always_inline))

static inline uint32_t rd32(const uint8_t *p) {
  uint32_t w;
  memcpy(&w, p, 4); /* x86 only reads this word in SIMD paths; scalar path below is LE-safe */
  return w;
}

static size_t block_bytes(const ttq_qmatrix *q) { return 4 * (size_t)q->bits; }
static const uint8_t *row_codes(const ttq_qmatrix *q, int64_t r) {
  return q->codes + (size_t)r * (size_t)(q->cols / 32) * block_bytes(q);
}

/* ---- scalar: the reference float-activation formula; any group; no scratch ---- */

static float row_scalar(const ttq_qmatrix *q, int64_t r, const float *x) {
  const int64_t cols = q->cols, G = q->group, ng = cols / G;
  const size_t bb = block_bytes(q);
  const uint8_t *cr = row_codes(q, r);
  const uint16_t *dr = q->d + r * ng;
  const int8_t *zr = q->z + r * ng;
  float acc = 0, gs = 0, sx = 0;
  uint8_t c[32];
  for (int64_t b = 0; b < cols / 32; b++) {
    ttq__unpack_block(q->bits, cr + b * bb, c);
    for (int j = 0; j < 32; j++) {
      int64_t col = b * 32 + j;
      gs += (float)c[j] * x[col];
      sx += x[col];
      if ((col + 1) % G == 0) {
        int64_t g = col / G;
        float d = ttq__f16_to_f32(dr[g]);
        acc += d * gs + ttq_qoffset(d, zr[g], q->bits) * sx;
        gs = sx = 0;
      }
    }
  }
  return acc;
}

static void qmatvec_scalar(const ttq_qmatrix *q, const float *x, float *y, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; r++) y[r] = row_scalar(q, r, x);
}

/* Dequantized row r to out (w' = (q - zero) d), any group. */
static void dequant_scalar(const ttq_qmatrix *q, int64_t r, float *out) { ttq_qmatrix_dequant_row(q, r, out); }

/* Scratch for the SIMD paths: on the stack for small cols, else malloc'd. */
typedef struct scratch {
  float *S;      /* [ng] group sums of x */
  float *dbuf;   /* [ng + 16] one row's d as f32 */
  float *sx;     /* [nb + 16] int8 path: per-block scale of x */
  float *ds;     /* [nb + 16] int8 path: per-block d * sx of one row */
  int32_t *gi;   /* [nb + 16] int8 path: group of each block */
  int8_t *xq;    /* [nb * 32 + 256] int8 path: x quantized, in the layout of the codes;
                  * int16 path: [nb * 32 + 256] int16 */
  int16_t *nat;  /* [nb * 32] int16 path: x quantized, natural order */
  void *heap;
} scratch;

#define SCRATCH_BYTES(cols) ((size_t)((cols) / 8 + 16) * 8 + (size_t)((cols) / 32 + 16) * 12 + (size_t)(cols) * 4 + 1024)

static bool scratch_init(scratch *s, void *stackbuf, int64_t cols, int G) {
  size_t need = SCRATCH_BYTES(cols);
  uint8_t *p;
  s->heap = NULL;
  if (cols <= STACK_COLS) {
    p = stackbuf;
  } else {
    p = s->heap = aligned_alloc(64, (need + 63) / 64 * 64);
    if (!p) return false;
  }
  int64_t ng = cols / G, nb = cols / 32;
  s->S = (float *)p, p += (size_t)(ng + 16) * 4;
  s->dbuf = (float *)p, p += (size_t)(ng + 16) * 4;
  s->sx = (float *)p, p += (size_t)(nb + 16) * 4;
  s->ds = (float *)p, p += (size_t)(nb + 16) * 4;
  s->gi = (int32_t *)p, p += (size_t)(nb + 16) * 4;
  s->nat = (int16_t *)p, p += (size_t)nb * 64;
  s->xq = (int8_t *)p;
  return true;
}

/* Activation mode of the AVX-512 kernels for q: 0 float, 1 int8, 2 int16. TTQ_QACT=f32|int8|
 * int16 when set, else int8 for a matrix marked act_int8 (TTQ: its input is divided by D) and
 * int16 for the others. */
static int qact_mode(const ttq_qmatrix *q) {
  const char *e = getenv("TTQ_QACT");
  if (!e || !*e) return q->act_int8 ? 1 : 2;
  return !strcmp(e, "f32") ? 0 : !strcmp(e, "int8") ? 1 : 2;
}

#ifdef TTQ_X86
/* ================= AVX2 + FMA + F16C: float activations ================= */
#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))

AVX2_TARGET static inline float hsum8(__m256 v) {
  __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  a = _mm_add_ps(a, _mm_movehl_ps(a, a));
  a = _mm_add_ss(a, _mm_shuffle_ps(a, a, 1));
  return _mm_cvtss_f32(a);
}

/* 8 bit flags (bits of `m`) -> dwords of value `v` where set. */
AVX2_TARGET static ALWAYS_INLINE __m256i bits8(uint32_t m, int v) {
  const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  __m256i t = _mm256_and_si256(_mm256_set1_epi32((int)m), sel);
  return _mm256_and_si256(_mm256_cmpeq_epi32(t, sel), _mm256_set1_epi32(v));
}

/* Block b -> its 32 codes as 4 x 8 floats (codes 0-7, 8-15, 16-23, 24-31). */
AVX2_TARGET static ALWAYS_INLINE void unpack_avx2(const int bits, const uint8_t *b, __m256 q[4]) {
  __m256i c[4];
  if (bits == 8) {
    for (int k = 0; k < 4; k++) c[k] = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(b + 8 * k)));
  } else if (bits == 4 || bits == 5) {
    const __m256i m15 = _mm256_set1_epi32(15);
    __m256i a = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)b));
    __m256i e = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(b + 8)));
    c[0] = _mm256_and_si256(a, m15), c[1] = _mm256_and_si256(e, m15);
    c[2] = _mm256_srli_epi32(a, 4), c[3] = _mm256_srli_epi32(e, 4);
    if (bits == 5) {
      uint32_t w = rd32(b + 16);
      for (int k = 0; k < 4; k++) c[k] = _mm256_add_epi32(c[k], bits8(w >> (8 * k) & 255, 16));
    }
  } else {
    const __m256i m3 = _mm256_set1_epi32(3);
    __m256i a = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)b));
    for (int k = 0; k < 4; k++) c[k] = _mm256_and_si256(_mm256_srli_epi32(a, 2 * k), m3);
    if (bits == 3) {
      uint32_t w = rd32(b + 8);
      for (int k = 0; k < 4; k++) c[k] = _mm256_add_epi32(c[k], bits8(w >> (8 * k) & 255, 4));
    }
  }
  for (int k = 0; k < 4; k++) q[k] = _mm256_cvtepi32_ps(c[k]);
}

AVX2_TARGET static void group_sums_avx2(const float *x, int64_t cols, int G, float *S) {
  for (int64_t g = 0; g < cols / G; g++) {
    const float *p = x + g * G;
    __m256 a = _mm256_loadu_ps(p);
    for (int i = 8; i < G; i += 8) a = _mm256_add_ps(a, _mm256_loadu_ps(p + i));
    S[g] = hsum8(a);
  }
}

/* sum_g m_g S_g, m_g = -(z_g + B) d_g, over one row's ng groups. */
AVX2_TARGET static float mdot_avx2(const uint16_t *d, const int8_t *z, int bits, const float *S, int64_t ng) {
  const __m256i B = _mm256_set1_epi32(TTQ_ZBIAS(bits));
  __m256 a = _mm256_setzero_ps();
  int64_t g = 0;
  for (; g + 8 <= ng; g += 8) {
    __m256 dv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(d + g)));
    __m256 zv = _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(z + g))), B));
    a = _mm256_fnmadd_ps(_mm256_mul_ps(zv, dv), _mm256_loadu_ps(S + g), a);
  }
  float s = hsum8(a);
  for (; g < ng; g++) s += ttq_qoffset(ttq__f16_to_f32(d[g]), z[g], bits) * S[g];
  return s;
}

AVX2_TARGET static ALWAYS_INLINE void rows_f32_avx2(const int bits, const ttq_qmatrix *q,
                                                   const float *x, const float *S, float *dbuf,
                                                   float *y, int64_t r0, int64_t r1) {
  const int64_t cols = q->cols, G = q->group, ng = cols / G, kb = G / 32;
  const size_t bb = 4 * (size_t)bits;
  for (int64_t r = r0; r < r1; r++) {
    const uint8_t *cr = row_codes(q, r);
    const uint16_t *dr = q->d + r * ng;
    int64_t g = 0;
    for (; g + 8 <= ng; g += 8)
      _mm256_storeu_ps(dbuf + g, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(dr + g))));
    for (; g < ng; g++) dbuf[g] = ttq__f16_to_f32(dr[g]);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (g = 0; g < ng; g++) {
      const uint8_t *bp = cr + g * kb * bb;
      const float *xp = x + g * G;
      __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
      for (int64_t k = 0; k < kb; k++, bp += bb, xp += 32) {
        __m256 qv[4];
        unpack_avx2(bits, bp, qv);
        s0 = _mm256_fmadd_ps(qv[0], _mm256_loadu_ps(xp), s0);
        s1 = _mm256_fmadd_ps(qv[1], _mm256_loadu_ps(xp + 8), s1);
        s0 = _mm256_fmadd_ps(qv[2], _mm256_loadu_ps(xp + 16), s0);
        s1 = _mm256_fmadd_ps(qv[3], _mm256_loadu_ps(xp + 24), s1);
      }
      __m256 dv = _mm256_broadcast_ss(dbuf + g);
      if (g & 1) acc1 = _mm256_fmadd_ps(_mm256_add_ps(s0, s1), dv, acc1);
      else acc0 = _mm256_fmadd_ps(_mm256_add_ps(s0, s1), dv, acc0);
    }
    y[r] = hsum8(_mm256_add_ps(acc0, acc1)) + mdot_avx2(dr, q->z + r * ng, bits, S, ng);
  }
}

AVX2_TARGET static void qmatvec_avx2(const ttq_qmatrix *q, const float *x, float *y, int64_t r0,
                                     int64_t r1) {
  uint8_t stackbuf[SCRATCH_BYTES(STACK_COLS)] __attribute__((aligned(64)));
  scratch s;
  if (q->group % 32 != 0 || !scratch_init(&s, stackbuf, q->cols, q->group)) {
    qmatvec_scalar(q, x, y, r0, r1);
    return;
  }
  group_sums_avx2(x, q->cols, q->group, s.S);
  switch (q->bits) {
  case 2: rows_f32_avx2(2, q, x, s.S, s.dbuf, y, r0, r1); break;
  case 3: rows_f32_avx2(3, q, x, s.S, s.dbuf, y, r0, r1); break;
  case 4: rows_f32_avx2(4, q, x, s.S, s.dbuf, y, r0, r1); break;
  case 5: rows_f32_avx2(5, q, x, s.S, s.dbuf, y, r0, r1); break;
  case 8: rows_f32_avx2(8, q, x, s.S, s.dbuf, y, r0, r1); break;
  }
  free(s.heap);
}

AVX2_TARGET static ALWAYS_INLINE void dequant_avx2_b(const int bits, const ttq_qmatrix *q,
                                                    int64_t r, float *out) {
  const int64_t cols = q->cols, G = q->group, ng = cols / G;
  const size_t bb = 4 * (size_t)bits;
  const uint8_t *cr = row_codes(q, r);
  for (int64_t b = 0; b < cols / 32; b++) {
    int64_t g = r * ng + b * 32 / G;
    const float d = ttq__f16_to_f32(q->d[g]);
    __m256 dv = _mm256_set1_ps(d), mv = _mm256_set1_ps(ttq_qoffset(d, q->z[g], bits));
    __m256 qv[4];
    unpack_avx2(bits, cr + b * bb, qv);
    for (int k = 0; k < 4; k++) _mm256_storeu_ps(out + b * 32 + 8 * k, _mm256_fmadd_ps(qv[k], dv, mv));
  }
}

AVX2_TARGET static void dequant_avx2(const ttq_qmatrix *q, int64_t r, float *out) {
  switch (q->group % 32 ? 0 : q->bits) {
  case 2: dequant_avx2_b(2, q, r, out); break;
  case 3: dequant_avx2_b(3, q, r, out); break;
  case 4: dequant_avx2_b(4, q, r, out); break;
  case 5: dequant_avx2_b(5, q, r, out); break;
  case 8: dequant_avx2_b(8, q, r, out); break;
  default: dequant_scalar(q, r, out); break;
  }
}

/* ================= AVX-512 (F + BW + VL): float activations ================= */
#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

/* Block b -> codes 0-15 and 16-31 as floats. */
AVX512_TARGET static ALWAYS_INLINE void unpack_avx512(const int bits, const uint8_t *b, __m512 *q0,
                                                     __m512 *q1) {
  __m512i c0, c1;
  if (bits == 8) {
    c0 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)b));
    c1 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(b + 16)));
  } else if (bits == 4 || bits == 5) {
    __m512i a = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)b));
    c0 = _mm512_and_si512(a, _mm512_set1_epi32(15));
    c1 = _mm512_srli_epi32(a, 4);
    if (bits == 5) {
      uint32_t w = rd32(b + 16);
      const __m512i v16 = _mm512_set1_epi32(16);
      c0 = _mm512_mask_add_epi32(c0, (__mmask16)(w & 0xffff), c0, v16);
      c1 = _mm512_mask_add_epi32(c1, (__mmask16)(w >> 16), c1, v16);
    }
  } else {
    __m128i t = _mm_loadl_epi64((const __m128i *)b);
    __m512i a = _mm512_cvtepu8_epi32(_mm_unpacklo_epi64(t, t));
    const __m512i m3 = _mm512_set1_epi32(3);
    const __m512i sh0 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
    const __m512i sh1 = _mm512_setr_epi32(4, 4, 4, 4, 4, 4, 4, 4, 6, 6, 6, 6, 6, 6, 6, 6);
    c0 = _mm512_and_si512(_mm512_srlv_epi32(a, sh0), m3);
    c1 = _mm512_and_si512(_mm512_srlv_epi32(a, sh1), m3);
    if (bits == 3) {
      uint32_t w = rd32(b + 8);
      const __m512i v4 = _mm512_set1_epi32(4);
      c0 = _mm512_mask_add_epi32(c0, (__mmask16)(w & 0xffff), c0, v4);
      c1 = _mm512_mask_add_epi32(c1, (__mmask16)(w >> 16), c1, v4);
    }
  }
  *q0 = _mm512_cvtepi32_ps(c0);
  *q1 = _mm512_cvtepi32_ps(c1);
}

AVX512_TARGET static void group_sums_avx512(const float *x, int64_t cols, int G, float *S) {
  for (int64_t g = 0; g < cols / G; g++) {
    const float *p = x + g * G;
    __m512 a = _mm512_loadu_ps(p);
    for (int i = 16; i < G; i += 16) a = _mm512_add_ps(a, _mm512_loadu_ps(p + i));
    S[g] = _mm512_reduce_add_ps(a);
  }
}

/* sum_g m_g S_g, m_g = -(z_g + B) d_g, over one row's ng groups (masked tail: never reads past
 * d, z or S). */
AVX512_TARGET static inline __m512 mdot_avx512(const uint16_t *d, const int8_t *z, int bits,
                                               const float *S, int64_t ng) {
  const __m512i B = _mm512_set1_epi32(TTQ_ZBIAS(bits));
  __m512 a = _mm512_setzero_ps();
  for (int64_t g = 0; g < ng; g += 16) {
    __mmask16 k = ng - g >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (ng - g)) - 1);
    __m512 dv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, d + g));
    __m512 zv = _mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(k, z + g)), B));
    a = _mm512_fnmadd_ps(_mm512_mul_ps(zv, dv), _mm512_maskz_loadu_ps(k, S + g), a);
  }
  return a;
}

/* one row's d as f32 into dbuf[0, ng) */
AVX512_TARGET static inline void row_d_f32(const uint16_t *dr, int64_t ng, float *dbuf) {
  for (int64_t g = 0; g < ng; g += 16) {
    __mmask16 k = ng - g >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (ng - g)) - 1);
    _mm512_mask_storeu_ps(dbuf + g, k, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, dr + g)));
  }
}

AVX512_TARGET static ALWAYS_INLINE __m512 group_dot_avx512(const int bits, const uint8_t *bp,
                                                          const float *xp, int64_t kb) {
  const size_t bb = 4 * (size_t)bits;
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  for (int64_t k = 0; k < kb; k++, bp += bb, xp += 32) {
    __m512 q0, q1;
    unpack_avx512(bits, bp, &q0, &q1);
    s0 = _mm512_fmadd_ps(q0, _mm512_loadu_ps(xp), s0);
    s1 = _mm512_fmadd_ps(q1, _mm512_loadu_ps(xp + 16), s1);
  }
  return _mm512_add_ps(s0, s1);
}

AVX512_TARGET static ALWAYS_INLINE void rows_f32_avx512(const int bits, const ttq_qmatrix *q,
                                                       const float *x, const float *S,
                                                       float *dbuf, float *y, int64_t r0,
                                                       int64_t r1) {
  const int64_t cols = q->cols, G = q->group, ng = cols / G, kb = G / 32;
  const size_t gbytes = (size_t)kb * 4 * (size_t)bits;
  for (int64_t r = r0; r < r1; r++) {
    const uint8_t *cr = row_codes(q, r);
    row_d_f32(q->d + r * ng, ng, dbuf);
    __m512 acc0 = mdot_avx512(q->d + r * ng, q->z + r * ng, bits, S, ng), acc1 = _mm512_setzero_ps();
    int64_t g = 0;
    for (; g + 2 <= ng; g += 2) {
      const char *pf = (const char *)cr + g * gbytes + PF_DIST;
      for (size_t o = 0; o < 2 * gbytes; o += 64) _mm_prefetch(pf + o, _MM_HINT_T0);
      __m512 a = group_dot_avx512(bits, cr + g * gbytes, x + g * G, kb);
      __m512 b = group_dot_avx512(bits, cr + (g + 1) * gbytes, x + (g + 1) * G, kb);
      acc0 = _mm512_fmadd_ps(a, _mm512_set1_ps(dbuf[g]), acc0);
      acc1 = _mm512_fmadd_ps(b, _mm512_set1_ps(dbuf[g + 1]), acc1);
    }
    if (g < ng)
      acc0 = _mm512_fmadd_ps(group_dot_avx512(bits, cr + g * gbytes, x + g * G, kb), _mm512_set1_ps(dbuf[g]), acc0);
    y[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
  }
}

AVX512_TARGET static ALWAYS_INLINE void dequant_avx512_b(const int bits, const ttq_qmatrix *q,
                                                        int64_t r, float *out) {
  const int64_t cols = q->cols, G = q->group, ng = cols / G;
  const size_t bb = 4 * (size_t)bits;
  const uint8_t *cr = row_codes(q, r);
  for (int64_t b = 0; b < cols / 32; b++) {
    int64_t g = r * ng + b * 32 / G;
    const float d = ttq__f16_to_f32(q->d[g]);
    __m512 dv = _mm512_set1_ps(d), mv = _mm512_set1_ps(ttq_qoffset(d, q->z[g], bits));
    __m512 q0, q1;
    unpack_avx512(bits, cr + b * bb, &q0, &q1);
    /* q * d and m are exact, so the fma gives (q - zero) d, which is exact too */
    _mm512_storeu_ps(out + b * 32, _mm512_fmadd_ps(q0, dv, mv));
    _mm512_storeu_ps(out + b * 32 + 16, _mm512_fmadd_ps(q1, dv, mv));
  }
}

AVX512_TARGET static void dequant_avx512(const ttq_qmatrix *q, int64_t r, float *out) {
  switch (q->group % 32 ? 0 : q->bits) {
  case 2: dequant_avx512_b(2, q, r, out); break;
  case 3: dequant_avx512_b(3, q, r, out); break;
  case 4: dequant_avx512_b(4, q, r, out); break;
  case 5: dequant_avx512_b(5, q, r, out); break;
  case 8: dequant_avx512_b(8, q, r, out); break;
  default: dequant_scalar(q, r, out); break;
  }
}

AVX512_TARGET static void rows_f32_any(const ttq_qmatrix *q, const float *x, scratch *s, float *y,
                                       int64_t r0, int64_t r1) {
  switch (q->bits) {
  case 2: rows_f32_avx512(2, q, x, s->S, s->dbuf, y, r0, r1); break;
  case 3: rows_f32_avx512(3, q, x, s->S, s->dbuf, y, r0, r1); break;
  case 4: rows_f32_avx512(4, q, x, s->S, s->dbuf, y, r0, r1); break;
  case 5: rows_f32_avx512(5, q, x, s->S, s->dbuf, y, r0, r1); break;
  case 8: rows_f32_avx512(8, q, x, s->S, s->dbuf, y, r0, r1); break;
  }
}

/* ================= AVX-512 VNNI: int8 activations ================= */
#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

/* Blocks per "set": the unit one vpdpbusd group covers. */
static inline int set_blocks(int bits) { return bits == 8 ? 2 : bits >= 4 ? 4 : 8; }

/* Rounds x per 32-block to int16 (RNE) with s_b = max|x_b| / Q: into nat (natural order) and
 * sx; returns nothing. x-hat = nat * s_b. */
VNNI_TARGET static void quant_blocks16(const float *x, int64_t nb, float Q, int16_t *nat, float *sx) {
  const __m512i absm = _mm512_set1_epi32(0x7fffffff);
  for (int64_t b = 0; b < nb; b++) {
    __m512 v0 = _mm512_loadu_ps(x + 32 * b), v1 = _mm512_loadu_ps(x + 32 * b + 16);
    float amax = _mm512_reduce_max_ps(_mm512_castsi512_ps(_mm512_max_epu32(
        _mm512_and_si512(_mm512_castps_si512(v0), absm), _mm512_and_si512(_mm512_castps_si512(v1), absm))));
    float inv = amax > 1e-30f ? Q / amax : 0.0f;
    sx[b] = amax > 1e-30f ? amax / Q : 0.0f;
    __m512 iv = _mm512_set1_ps(inv);
    _mm256_storeu_si256((__m256i *)(nat + 32 * b), _mm512_cvtepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(v0, iv))));
    _mm256_storeu_si256((__m256i *)(nat + 32 * b + 16), _mm512_cvtepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(v1, iv))));
  }
}

/* x-hat of 16 values of one 32-block: its rounded values nat times the block's scale sx, the
 * dequantized activation the integer kernels multiply with. */
VNNI_TARGET static ALWAYS_INLINE __m512 xhat16(const int16_t *nat, float sx) {
  return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)nat))),
                       _mm512_set1_ps(sx));
}

/* x-hat = quantize-dequantize of x exactly as the int8 (Q = 127) / int16 (Q = 32767) kernels
 * see it, for qmatmul to give the same products. */
VNNI_TARGET static void fake_quant_x(const float *x, int64_t cols, float Q, float *out) {
  int16_t nat[32];
  float sx;
  for (int64_t b = 0; b < cols / 32; b++) {
    quant_blocks16(x + 32 * b, 1, Q, nat, &sx);
    _mm512_storeu_ps(out + 32 * b, xhat16(nat, sx));
    _mm512_storeu_ps(out + 32 * b + 16, xhat16(nat + 16, sx));
  }
}

/* The group sums S_g = sum x-hat of an activation already rounded (nat, sx of quant_blocks16),
 * summed 16 lanes at a time in column order: the same values fake_quant_x's output sums to,
 * without rounding x a second time. */
VNNI_TARGET static void group_sums_nat(const int16_t *nat, const float *sx, int64_t cols, int G,
                                       float *S) {
  for (int64_t g = 0; g < cols / G; g++) {
    const int64_t c0 = g * G;
    __m512 a = xhat16(nat + c0, sx[c0 / 32]);
    for (int64_t c = c0 + 16; c < c0 + G; c += 16) a = _mm512_add_ps(a, xhat16(nat + c, sx[c / 32]));
    S[g] = _mm512_reduce_add_ps(a);
  }
}

/* Quantizes x per 32-block to int8 (quant_blocks16 with Q = 127) into s->xq, in the layout the
 * codes unpack to, and s->sx. */
VNNI_TARGET static void quantize_x(const float *x, int64_t cols, int bits, scratch *s) {
  const int64_t nb = cols / 32;
  const int bps = set_blocks(bits);
  memset(s->xq + nb / bps * bps * 32, 0, (size_t)bps * 32); /* the partial last set, if any */
  quant_blocks16(x, nb, 127.0f, s->nat, s->sx);
  for (int64_t b = nb; b < nb + 16; b++) s->sx[b] = 0;
  for (int64_t b = 0; b < nb; b++) {
    __m256i v = _mm512_cvtepi16_epi8(_mm512_loadu_si512(s->nat + 32 * b));
    __m128i q0 = _mm256_castsi256_si128(v), q1 = _mm256_extracti128_si256(v, 1);
    int8_t *base = s->xq + b / bps * bps * 32;
    int k = (int)(b % bps);
    if (bits == 8) {
      _mm_storeu_si128((__m128i *)(base + 32 * k), q0);
      _mm_storeu_si128((__m128i *)(base + 32 * k + 16), q1);
    } else if (bps == 4) {
      _mm_storeu_si128((__m128i *)(base + 16 * k), q0);
      _mm_storeu_si128((__m128i *)(base + 64 + 16 * k), q1);
    } else {
      _mm_storel_epi64((__m128i *)(base + 8 * k), q0);
      _mm_storel_epi64((__m128i *)(base + 64 + 8 * k), _mm_unpackhi_epi64(q0, q0));
      _mm_storel_epi64((__m128i *)(base + 128 + 8 * k), q1);
      _mm_storel_epi64((__m128i *)(base + 192 + 8 * k), _mm_unpackhi_epi64(q1, q1));
    }
  }
}

static inline __mmask64 mask64(int64_t n) { return n >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << n) - 1); }
static inline __mmask16 mask16(int64_t n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1); }

/* kmovq k, m64: one load uop. gcc turns _load_mask64 after a vector store into an extract to a
 * general register and a kmovq from it, 2-3 uops on the vector ports per mask, which the 3-bit
 * unpack (4 masks per 256 codes) is bound by; the asm keeps the load. */
static ALWAYS_INLINE __mmask64 mask_from_memory(const __mmask64 *p) {
  __mmask64 k;
  __asm__("kmovq %1, %0" : "=k"(k) : "m"(*p));
  return k;
}

/* GFNI: bits [s, s + w) of every byte of v moved to bits [0, w), the others 0, by one affine
 * transform over GF(2) (vgf2p8affineqb; row 7 - i of the matrix picks input bit s + i), where
 * the generic path shifts and masks. Called only from GFNI_TARGET functions (a caller without
 * GFNI keeps it out of line and never reaches it). */
#define GFNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,gfni,avx2,fma,f16c")))
GFNI_TARGET static inline __m512i byte_bits_gfni(__m512i v, int s, int w) {
  uint64_t A = 0;
  for (int i = 0; i < w; i++) A |= (uint64_t)(1u << (s + i)) << (8 * (7 - i));
  return _mm512_gf2p8affine_epi64_epi8(v, _mm512_set1_epi64((long long)A), 0);
}

/* VBMI: the bit-2 words of the 8 blocks of a 3-bit set (bytes 12 i + 8 .. 12 i + 11 of A|B, the
 * set's 96 bytes), byte-transposed so that qword f holds byte f of the words of blocks 0..7 (the
 * bit-2 mask of field f): one vpermt2b where the generic path takes a dword permute, a byte
 * shuffle and a dword permute. Called only from GFNI_TARGET functions, as byte_bits_gfni. */
GFNI_TARGET static inline __m256i hi_words_vbmi(__m512i A, __m512i B) {
  const __m512i idx = _mm512_set_epi8(
      95, 83, 71, 59, 47, 35, 23, 11, 94, 82, 70, 58, 46, 34, 22, 10, 93, 81, 69, 57, 45, 33, 21, 9,
      92, 80, 68, 56, 44, 32, 20, 8, 95, 83, 71, 59, 47, 35, 23, 11, 94, 82, 70, 58, 46, 34, 22, 10,
      93, 81, 69, 57, 45, 33, 21, 9, 92, 80, 68, 56, 44, 32, 20, 8);
  return _mm512_castsi512_si256(_mm512_permutex2var_epi8(A, idx, B));
}

/* Bits [s, s + w) of every byte of v at bits [0, w): mask (m = 2^w - 1 per byte) and shift, or
 * one GFNI instruction (gf). */
VNNI_TARGET static ALWAYS_INLINE __m512i byte_bits(const int gf, __m512i v, int s, int w, __m512i m) {
  if (gf && s) return byte_bits_gfni(v, s, w);
  return _mm512_and_si512(s ? _mm512_srli_epi16(v, s) : v, m);
}

/* The code fields of one set (the layout quantize_x stores x in): 4 fields of 64 codes for 2/3 bits,
 * 2 for 4/5 bits. gf: take the bit fields with GFNI. */
VNNI_TARGET static ALWAYS_INLINE void set_fields(const int bits, const int gf, const uint8_t *p, int nbk,
                                                 int full, __m512i f[4]) {
  if (bits == 4 || bits == 5) {
    const __m512i m = _mm512_set1_epi8(15);
    __m512i v;
    if (bits == 4) {
      v = full ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(mask64(16 * nbk), p);
      f[0] = byte_bits(gf, v, 0, 4, m), f[1] = byte_bits(gf, v, 4, 4, m);
      return;
    }
    int nd = 5 * nbk;
    __m512i A = full ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi32(mask16(nd), p);
    __m512i B = _mm512_maskz_loadu_epi32(mask16(nd - 16 > 0 ? nd - 16 : 0), p + 64);
    v = _mm512_permutex2var_epi32(A, _mm512_setr_epi32(0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12, 13, 15, 16, 17, 18), B);
    __m128i w = _mm512_castsi512_si128(_mm512_permutex2var_epi32(A, _mm512_setr_epi32(4, 9, 14, 19, 4, 9, 14, 19, 4, 9, 14, 19, 4, 9, 14, 19), B));
    w = _mm_shuffle_epi8(w, _mm_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15));
    __mmask64 mlo = _cvtu64_mask64((uint64_t)_mm_cvtsi128_si64(w));
    __mmask64 mhi = _cvtu64_mask64((uint64_t)_mm_extract_epi64(w, 1));
    const __m512i v16 = _mm512_set1_epi8(16);
    __m512i lo = byte_bits(gf, v, 0, 4, m), hi = byte_bits(gf, v, 4, 4, m);
    f[0] = _mm512_mask_add_epi8(lo, mlo, lo, v16);
    f[1] = _mm512_mask_add_epi8(hi, mhi, hi, v16);
    return;
  }
  const __m512i m = _mm512_set1_epi8(3);
  if (bits == 2) {
    __m512i v = full ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(mask64(8 * nbk), p);
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) f[i] = byte_bits(gf, v, 2 * i, 2, m);
    return;
  }
  /* 3 bits: 8 blocks of 12 bytes = 24 dwords: 16 in A, 8 in B */
  int nd = 3 * nbk;
  __m512i A = full ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi32(mask16(nd), p);
  __m512i B = _mm512_maskz_loadu_epi32(mask16(nd - 16 > 0 ? nd - 16 : 0), p + 64);
  __m512i v = _mm512_permutex2var_epi32(A, _mm512_setr_epi32(0, 1, 3, 4, 6, 7, 9, 10, 12, 13, 15, 16, 18, 19, 21, 22), B);
  __m256i w;
  if (gf) {
    w = hi_words_vbmi(A, B);
  } else {
    w = _mm512_castsi512_si256(_mm512_permutex2var_epi32(A, _mm512_setr_epi32(2, 5, 8, 11, 14, 17, 20, 23, 2, 5, 8, 11, 14, 17, 20, 23), B));
    /* byte transpose: qword f = byte f of words 0..7 = the bit-2 mask of field f */
    const __m256i tr = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15, 0, 4,
                                        8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    w = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(w, tr), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  }
  __mmask64 mk[4] __attribute__((aligned(32)));
  _mm256_store_si256((__m256i *)mk, w);
  const __m512i v4 = _mm512_set1_epi8(4);
#pragma GCC unroll 4
  for (int i = 0; i < 4; i++) {
    __m512i c = byte_bits(gf, v, 2 * i, 2, m);
    f[i] = _mm512_mask_add_epi8(c, mask_from_memory(mk + i), c, v4);
  }
}

/* Integer dots of one set (bps blocks) of row codes at p with x at xq; nbk valid blocks. */
VNNI_TARGET static ALWAYS_INLINE __m512i set_dot(const int bits, const int gf, const uint8_t *p,
                                                const int8_t *xq, int nbk, int full) {
  const __m512i zero = _mm512_setzero_si512();
  if (bits == 8) {
    __m512i v = full ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(mask64(32 * nbk), p);
    return _mm512_dpbusd_epi32(zero, v, _mm512_loadu_si512(xq));
  }
  __m512i f[4];
  set_fields(bits, gf, p, nbk, full, f);
  const int nf = bits <= 3 ? 4 : 2;
  __m512i a = _mm512_dpbusd_epi32(zero, f[0], _mm512_loadu_si512(xq));
#pragma GCC unroll 4
  for (int i = 1; i < nf; i++) a = _mm512_dpbusd_epi32(a, f[i], _mm512_loadu_si512(xq + 64 * i));
  return a;
}

/* The per-set scale vector: lane i gets ds[i * bps / 16]. */
VNNI_TARGET static ALWAYS_INLINE __m512 set_scale(const int bits, const float *ds) {
  if (bits == 8)
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                                 _mm512_castps128_ps512(_mm_loadu_ps(ds))); /* ds padded: safe */
  if (bits >= 4)
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                                 _mm512_castps128_ps512(_mm_loadu_ps(ds)));
  return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7),
                               _mm512_castps256_ps512(_mm256_loadu_ps(ds)));
}

/* ds[b] = d of block b's group * s->sx[b] for the nb blocks of row r, and returns the vector
 * whose lanes sum to the row's offset term sum_g m_g S_g (S = s->S); one helper for the int8,
 * int16 and split kernels. At group 32 a block is a group: d is converted once for both. */
VNNI_TARGET static ALWAYS_INLINE __m512 row_block_scales(const int bits, const ttq_qmatrix *q, int64_t r,
                                                        scratch *s, float *ds) {
  const int64_t ng = q->cols / q->group, nb = q->cols / 32;
  const uint16_t *dr = q->d + r * ng;
  const int8_t *zr = q->z + r * ng;
  if (q->group == 32) {
    const __m512i B = _mm512_set1_epi32(TTQ_ZBIAS(bits));
    __m512 off = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b += 16) {
      __mmask16 k = mask16(nb - b);
      __m512 dv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, dr + b));
      _mm512_mask_storeu_ps(ds + b, k, _mm512_mul_ps(dv, _mm512_maskz_loadu_ps(k, s->sx + b)));
      __m512 zv = _mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(k, zr + b)), B));
      off = _mm512_fnmadd_ps(_mm512_mul_ps(zv, dv), _mm512_maskz_loadu_ps(k, s->S + b), off);
    }
    return off;
  }
  row_d_f32(dr, ng, s->dbuf);
  for (int64_t b = 0; b < nb; b += 16) {
    __mmask16 k = mask16(nb - b);
    __m512 dv = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), k, _mm512_maskz_loadu_epi32(k, s->gi + b), s->dbuf, 4);
    _mm512_mask_storeu_ps(ds + b, k, _mm512_mul_ps(dv, _mm512_maskz_loadu_ps(k, s->sx + b)));
  }
  return mdot_avx512(dr, zr, bits, s->S, ng);
}

VNNI_TARGET static ALWAYS_INLINE void rows_i8(const int bits, const int gf, const ttq_qmatrix *q,
                                             scratch *s, float *y, int64_t r0, int64_t r1) {
  const int64_t nb = q->cols / 32;
  const int bps = set_blocks(bits);
  const int64_t nfull = nb / bps, rem = nb % bps;
  const size_t sbytes = (size_t)bps * 4 * (size_t)bits;
  float *ds = s->ds;
  for (int64_t b = nb; b < nb + 16; b++) ds[b] = 0;
  for (int64_t r = r0; r < r1; r++) {
    const uint8_t *cr = row_codes(q, r);
    __m512 acc0 = row_block_scales(bits, q, r, s, ds), acc1 = _mm512_setzero_ps();
    const int8_t *xq = s->xq;
    int64_t t = 0;
    for (; t + 2 <= nfull; t += 2) {
      const char *pf = (const char *)cr + t * sbytes + PF_DIST;
      for (size_t o = 0; o < 2 * sbytes; o += 64) _mm_prefetch(pf + o, _MM_HINT_T0);
      __m512i a = set_dot(bits, gf, cr + t * sbytes, xq + t * bps * 32, bps, 1);
      __m512i b = set_dot(bits, gf, cr + (t + 1) * sbytes, xq + (t + 1) * bps * 32, bps, 1);
      acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), set_scale(bits, ds + t * bps), acc0);
      acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(b), set_scale(bits, ds + (t + 1) * bps), acc1);
    }
    for (; t < nfull; t++) {
      __m512i a = set_dot(bits, gf, cr + t * sbytes, xq + t * bps * 32, bps, 1);
      acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), set_scale(bits, ds + t * bps), acc0);
    }
    if (rem) {
      __m512i a = set_dot(bits, gf, cr + t * sbytes, xq + t * bps * 32, (int)rem, 0);
      acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), set_scale(bits, ds + t * bps), acc0);
    }
    y[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
  }
}

VNNI_TARGET static void prep_i8(const ttq_qmatrix *q, const float *x, scratch *s) {
  const int64_t nb = q->cols / 32, kb = q->group / 32;
  quantize_x(x, q->cols, q->bits, s);
  group_sums_nat(s->nat, s->sx, q->cols, q->group, s->S);
  for (int64_t b = 0; b < nb; b++) s->gi[b] = (int32_t)(b / kb);
}

VNNI_TARGET static ALWAYS_INLINE void rows_i8_bits(const int gf, const ttq_qmatrix *q, scratch *s,
                                                  float *y, int64_t r0, int64_t r1) {
  switch (q->bits) {
  case 2: rows_i8(2, gf, q, s, y, r0, r1); break;
  case 3: rows_i8(3, gf, q, s, y, r0, r1); break;
  case 4: rows_i8(4, gf, q, s, y, r0, r1); break;
  case 5: rows_i8(5, gf, q, s, y, r0, r1); break;
  case 8: rows_i8(8, gf, q, s, y, r0, r1); break;
  }
}

VNNI_TARGET static void rows_i8_any(const ttq_qmatrix *q, scratch *s, float *y, int64_t r0, int64_t r1) {
  rows_i8_bits(0, q, s, y, r0, r1);
}

/* The same with GFNI bit fields (flatten: byte_bits_gfni is inlined here only). */
GFNI_TARGET __attribute__((flatten)) static void rows_i8_gfni(const ttq_qmatrix *q, scratch *s, float *y,
                                                              int64_t r0, int64_t r1) {
  rows_i8_bits(1, q, s, y, r0, r1);
}

/* ================= AVX-512 VNNI: int16 activations, 8-bit codes =================
 * Same scheme as int8 with x quantized to int16 per 32-block (s_b = max|x_b| / 32767) and
 * vpdpwssd on 8-bit codes, taken straight from the 16-bit lanes of the packed bytes by mask and
 * shift ("fields"); x is stored per set in the matching order: field f (0, 1), word k holds
 * block k/16, code 2(k%16) + f. (Codes of 2..5 bits take the vpdpbusd split below.) */

/* Position p in a set (field f = p / 32, word k = p % 32) -> block in set * 32 + code. */
static inline int src16(int p) {
  int f = p / 32, k = p % 32;
  return (k / 16) * 32 + 2 * (k % 16) + f;
}

VNNI_TARGET static void quantize_x16(const float *x, int64_t cols, scratch *s, int16_t *nat) {
  const int64_t nb = cols / 32;
  const int bps = set_blocks(8), ss = bps * 32;
  int16_t *xq = (int16_t *)s->xq;
  quant_blocks16(x, nb, 32767.0f, nat, s->sx);
  for (int64_t b = nb; b < nb + 16; b++) s->sx[b] = 0;
  int16_t perm[256];
  for (int p = 0; p < ss; p++) perm[p] = (int16_t)src16(p);
  const int64_t nfull = nb / bps;
  for (int64_t t = 0; t < nfull; t++)
    for (int p = 0; p < ss; p++) xq[t * ss + p] = nat[t * ss + perm[p]];
  if (nb % bps) {
    int64_t valid = (nb % bps) * 32;
    for (int p = 0; p < ss; p++) xq[nfull * ss + p] = perm[p] < valid ? nat[nfull * ss + perm[p]] : 0;
  }
}

VNNI_TARGET static ALWAYS_INLINE __m512i dp16(__m512i a, __m512i c, const int16_t *x) {
  return _mm512_dpwssd_epi32(a, c, _mm512_loadu_si512(x));
}

/* Integer dots of one set of 8-bit codes with int16 x (layout above); nbk valid blocks. */
VNNI_TARGET static ALWAYS_INLINE __m512i set_dot16(const uint8_t *p, const int16_t *xq, int nbk,
                                                  int full) {
  __m512i v = full ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(mask64(32 * nbk), p);
  __m512i a = dp16(_mm512_setzero_si512(), _mm512_and_si512(v, _mm512_set1_epi16(0xff)), xq);
  return dp16(a, _mm512_srli_epi16(v, 8), xq + 32);
}

VNNI_TARGET static void rows_i16(const ttq_qmatrix *q, scratch *s, float *y, int64_t r0, int64_t r1) {
  const int bits = 8;
  const int64_t nb = q->cols / 32;
  const int bps = set_blocks(bits);
  const int64_t nfull = nb / bps, rem = nb % bps;
  const size_t sbytes = (size_t)bps * 4 * (size_t)bits;
  float *ds = s->ds;
  const int16_t *xq = (const int16_t *)s->xq;
  for (int64_t b = nb; b < nb + 16; b++) ds[b] = 0;
  for (int64_t r = r0; r < r1; r++) {
    const uint8_t *cr = row_codes(q, r);
    __m512 acc0 = row_block_scales(bits, q, r, s, ds), acc1 = _mm512_setzero_ps();
    int64_t t = 0;
    for (; t + 2 <= nfull; t += 2) {
      const char *pf = (const char *)cr + t * sbytes + PF_DIST;
      for (size_t o = 0; o < 2 * sbytes; o += 64) _mm_prefetch(pf + o, _MM_HINT_T0);
      __m512i a = set_dot16(cr + t * sbytes, xq + t * bps * 32, bps, 1);
      __m512i b = set_dot16(cr + (t + 1) * sbytes, xq + (t + 1) * bps * 32, bps, 1);
      acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), set_scale(bits, ds + t * bps), acc0);
      acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(b), set_scale(bits, ds + (t + 1) * bps), acc1);
    }
    for (; t < nfull; t++) {
      __m512i a = set_dot16(cr + t * sbytes, xq + t * bps * 32, bps, 1);
      acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), set_scale(bits, ds + t * bps), acc0);
    }
    if (rem) {
      __m512i a = set_dot16(cr + t * sbytes, xq + t * bps * 32, (int)rem, 0);
      acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), set_scale(bits, ds + t * bps), acc0);
    }
    y[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
  }
}

/* ---- int16 activations through vpdpbusd (codes of 2..5 bits) ----
 * x16 = 256 xh + xl with xl = x16 & 255 (u8) and xh = x16 >> 8 (s8, |x16| <= 32767), so
 *   sum q x16 = 256 * sum q xh + sum xl q:  vpdpbusd(codes u8, xh s8) and vpdpbusd(xl u8, codes
 * s8; codes < 128), both exact in int32. The integer dots equal the vpdpwssd ones, but each
 * instruction takes 64 codes unpacked as bytes (the int8 layout of quantize_x), so the 2- and
 * 3-bit unpack costs per weight what the 4-bit one does. xl / xh are stored in the int8 layout. */
VNNI_TARGET static ALWAYS_INLINE void put_layout(int8_t *base, int bps, int k, __m256i v) {
  __m128i q0 = _mm256_castsi256_si128(v), q1 = _mm256_extracti128_si256(v, 1);
  if (bps == 4) {
    _mm_storeu_si128((__m128i *)(base + 16 * k), q0);
    _mm_storeu_si128((__m128i *)(base + 64 + 16 * k), q1);
  } else {
    _mm_storel_epi64((__m128i *)(base + 8 * k), q0);
    _mm_storel_epi64((__m128i *)(base + 64 + 8 * k), _mm_unpackhi_epi64(q0, q0));
    _mm_storel_epi64((__m128i *)(base + 128 + 8 * k), q1);
    _mm_storel_epi64((__m128i *)(base + 192 + 8 * k), _mm_unpackhi_epi64(q1, q1));
  }
}

/* x -> int16 per 32-block (s->sx, same rounding as quant_blocks16), split into xl (s->xq) and
 * xh (s->xq + xoff) in the int8 layout of `bits` (2..5). */
VNNI_TARGET static void quantize_xsplit(const float *x, int64_t cols, int bits, scratch *s,
                                        int64_t xoff) {
  const int64_t nb = cols / 32;
  const int bps = set_blocks(bits);
  int8_t *xl = s->xq, *xh = s->xq + xoff;
  quant_blocks16(x, nb, 32767.0f, s->nat, s->sx);
  for (int64_t b = nb; b < nb + 16; b++) s->sx[b] = 0;
  memset(xl + nb / bps * bps * 32, 0, (size_t)bps * 32);
  memset(xh + nb / bps * bps * 32, 0, (size_t)bps * 32);
  for (int64_t b = 0; b < nb; b++) {
    __m512i v = _mm512_loadu_si512(s->nat + 32 * b);
    int64_t o = b / bps * bps * 32;
    int k = (int)(b % bps);
    put_layout(xl + o, bps, k, _mm512_cvtepi16_epi8(v));
    put_layout(xh + o, bps, k, _mm512_cvtepi16_epi8(_mm512_srai_epi16(v, 8)));
  }
}

/* 256 * (codes . xh) + (xl . codes) for one set: the exact int16 dot per dword lane. */
VNNI_TARGET static ALWAYS_INLINE __m512i set_dot_split(const int bits, const int gf, const uint8_t *p, const int8_t *xl,
                                                      const int8_t *xh, int nbk, int full) {
  __m512i f[4];
  set_fields(bits, gf, p, nbk, full, f);
  const int nf = bits <= 3 ? 4 : 2;
  __m512i lo = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_loadu_si512(xl), f[0]);
  __m512i hi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), f[0], _mm512_loadu_si512(xh));
#pragma GCC unroll 4
  for (int i = 1; i < nf; i++) {
    lo = _mm512_dpbusd_epi32(lo, _mm512_loadu_si512(xl + 64 * i), f[i]);
    hi = _mm512_dpbusd_epi32(hi, f[i], _mm512_loadu_si512(xh + 64 * i));
  }
  return _mm512_add_epi32(lo, _mm512_slli_epi32(hi, 8));
}

VNNI_TARGET static ALWAYS_INLINE void rows_split(const int bits, const int gf, const ttq_qmatrix *q, scratch *s,
                                                int64_t xoff, float *y, int64_t r0, int64_t r1) {
  const int64_t nb = q->cols / 32;
  const int bps = set_blocks(bits);
  const int64_t nfull = nb / bps, rem = nb % bps;
  const size_t sbytes = (size_t)bps * 4 * (size_t)bits;
  const int64_t sx = (int64_t)bps * 32;
  float *ds = s->ds;
  const int8_t *xl = s->xq, *xh = s->xq + xoff;
  for (int64_t b = nb; b < nb + 16; b++) ds[b] = 0;
  for (int64_t r = r0; r < r1; r++) {
    const uint8_t *cr = row_codes(q, r);
    __m512 acc0 = row_block_scales(bits, q, r, s, ds), acc1 = _mm512_setzero_ps();
    int64_t t = 0;
    for (; t + 2 <= nfull; t += 2) {
      const char *pf = (const char *)cr + t * sbytes + PF_DIST;
      for (size_t o = 0; o < 2 * sbytes; o += 64) _mm_prefetch(pf + o, _MM_HINT_T0);
      __m512i a = set_dot_split(bits, gf, cr + t * sbytes, xl + t * sx, xh + t * sx, bps, 1);
      __m512i b = set_dot_split(bits, gf, cr + (t + 1) * sbytes, xl + (t + 1) * sx, xh + (t + 1) * sx, bps, 1);
      acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), set_scale(bits, ds + t * bps), acc0);
      acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(b), set_scale(bits, ds + (t + 1) * bps), acc1);
    }
    for (; t < nfull; t++) {
      __m512i a = set_dot_split(bits, gf, cr + t * sbytes, xl + t * sx, xh + t * sx, bps, 1);
      acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), set_scale(bits, ds + t * bps), acc0);
    }
    if (rem) {
      __m512i a = set_dot_split(bits, gf, cr + t * sbytes, xl + t * sx, xh + t * sx, (int)rem, 0);
      acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), set_scale(bits, ds + t * bps), acc0);
    }
    y[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
  }
}

#define XSPLIT_OFF(nb) (((nb) + 8) * 32) /* xh after xl and its padded last set */

VNNI_TARGET static void prep_i16(const ttq_qmatrix *q, const float *x, scratch *s) {
  const int64_t nb = q->cols / 32, kb = q->group / 32;
  for (int64_t b = 0; b < nb; b++) s->gi[b] = (int32_t)(b / kb);
  if (q->bits != 8) quantize_xsplit(x, q->cols, q->bits, s, XSPLIT_OFF(nb));
  else quantize_x16(x, q->cols, s, s->nat);
  group_sums_nat(s->nat, s->sx, q->cols, q->group, s->S);
}

VNNI_TARGET static ALWAYS_INLINE void rows_i16_bits(const int gf, const ttq_qmatrix *q, scratch *s,
                                                   float *y, int64_t r0, int64_t r1) {
  const int64_t xoff = XSPLIT_OFF(q->cols / 32);
  switch (q->bits) {
  case 2: rows_split(2, gf, q, s, xoff, y, r0, r1); break;
  case 3: rows_split(3, gf, q, s, xoff, y, r0, r1); break;
  case 4: rows_split(4, gf, q, s, xoff, y, r0, r1); break;
  case 5: rows_split(5, gf, q, s, xoff, y, r0, r1); break;
  case 8: rows_i16(q, s, y, r0, r1); break;
  }
}

VNNI_TARGET static void rows_i16_any(const ttq_qmatrix *q, scratch *s, float *y, int64_t r0, int64_t r1) {
  rows_i16_bits(0, q, s, y, r0, r1);
}

GFNI_TARGET __attribute__((flatten)) static void rows_i16_gfni(const ttq_qmatrix *q, scratch *s, float *y,
                                                               int64_t r0, int64_t r1) {
  rows_i16_bits(1, q, s, y, r0, r1);
}

/* Activation kinds of the AVX-512 kernel (ttq_qact.kind): what prep_* left in the scratch. */
enum { QACT_NONE = 0, QACT_F32, QACT_I8, QACT_I16 };

/* Flag on QACT_I8 / QACT_I16: take the codes' bit fields with GFNI (byte_bits) and the 3-bit
 * masks with VBMI (hi_words_vbmi). On when the CPU has both (every AVX-512 CPU with GFNI has
 * VBMI), unless TTQ_GFNI=0 (the tests run both and compare them bit for bit). */
#define QACT_GFNI 8

static int avx512_kind(const ttq_qmatrix *q) {
  if (q->group % 32 != 0) return QACT_NONE;
  int mode = __builtin_cpu_supports("avx512vnni") ? qact_mode(q) : 0;
  if (mode == 0) return QACT_F32;
  const char *e = getenv("TTQ_GFNI");
  bool gf = __builtin_cpu_supports("gfni") && __builtin_cpu_supports("avx512vbmi") &&
            !(e && !strcmp(e, "0"));
  return (mode == 1 ? QACT_I8 : QACT_I16) | (gf ? QACT_GFNI : 0);
}

static void prep_avx512(int kind, const ttq_qmatrix *q, const float *x, scratch *s) {
  if ((kind & ~QACT_GFNI) == QACT_I8) prep_i8(q, x, s);
  else if ((kind & ~QACT_GFNI) == QACT_I16) prep_i16(q, x, s);
  else group_sums_avx512(x, q->cols, q->group, s->S);
}

/* Rows of a prepared scratch. s is only read but for its per-row buffers ds and dbuf, which
 * the caller gives each thread its own of. */
static void rows_avx512(int kind, const ttq_qmatrix *q, const float *x, scratch *s, float *y,
                        int64_t r0, int64_t r1) {
  if (kind == QACT_I8) rows_i8_any(q, s, y, r0, r1);
  else if (kind == (QACT_I8 | QACT_GFNI)) rows_i8_gfni(q, s, y, r0, r1);
  else if (kind == QACT_I16) rows_i16_any(q, s, y, r0, r1);
  else if (kind == (QACT_I16 | QACT_GFNI)) rows_i16_gfni(q, s, y, r0, r1);
  else rows_f32_any(q, x, s, y, r0, r1);
}

static void qmatvec_avx512(const ttq_qmatrix *q, const float *x, float *y, int64_t r0, int64_t r1) {
  uint8_t stackbuf[SCRATCH_BYTES(STACK_COLS)] __attribute__((aligned(64)));
  scratch s;
  const int kind = avx512_kind(q);
  if (kind == QACT_NONE || !scratch_init(&s, stackbuf, q->cols, q->group)) {
    qmatvec_scalar(q, x, y, r0, r1);
    return;
  }
  prep_avx512(kind, q, x, &s);
  rows_avx512(kind, q, x, &s, y, r0, r1);
  free(s.heap);
}
#endif /* TTQ_X86 */

/* ---- dispatch ---- */

typedef struct qk {
  void (*matvec)(const ttq_qmatrix *q, const float *x, float *y, int64_t r0, int64_t r1);
  void (*dequant)(const ttq_qmatrix *q, int64_t r, float *out);
} qk;

static const qk qk_scalar = {qmatvec_scalar, dequant_scalar};
#ifdef TTQ_X86
static const qk qk_avx2 = {qmatvec_avx2, dequant_avx2};
static const qk qk_avx512 = {qmatvec_avx512, dequant_avx512};
#endif

static const qk *pick(const ttq_kernels *k) {
#ifdef TTQ_X86
  if (k && !strcmp(k->name, "avx512")) return &qk_avx512;
  if (k && !strcmp(k->name, "avx2")) return &qk_avx2;
#endif
  (void)k;
  return &qk_scalar;
}

void ttq_qmatvec(const ttq_kernels *k, const ttq_qmatrix *q, const float *x, float *y, int64_t r0,
                 int64_t r1) {
  if (r0 >= r1) return;
  pick(k)->matvec(q, x, y, r0, r1);
}

size_t ttq_qact_bytes(int64_t cols) { return SCRATCH_BYTES(cols); }

void ttq_qact_prepare(const ttq_kernels *k, const ttq_qmatrix *q, const float *x, void *buf,
                      ttq_qact *a) {
  *a = (ttq_qact){.x = x, .cols = q->cols, .group = q->group, .bits = q->bits, .buf = buf,
                  .act_int8 = q->act_int8};
#ifdef TTQ_X86
  if (pick(k) != &qk_avx512 || q->cols > STACK_COLS) return; /* kind NONE: ttq_qmatvec */
  scratch s;
  a->kind = avx512_kind(q);
  if (a->kind == QACT_NONE || !scratch_init(&s, buf, q->cols, q->group)) {
    a->kind = QACT_NONE;
    return;
  }
  prep_avx512(a->kind, q, x, &s);
#else
  (void)k;
#endif
}

void ttq_qmatvec_qact(const ttq_kernels *k, const ttq_qmatrix *q, const ttq_qact *a, float *y,
                      int64_t r0, int64_t r1) {
  if (r0 >= r1) return;
#ifdef TTQ_X86
  if (a->kind != QACT_NONE && q->cols == a->cols && q->group == a->group && q->bits == a->bits &&
      q->act_int8 == a->act_int8 && pick(k) == &qk_avx512) {
    scratch s;
    float ds[STACK_COLS / 32 + 16] __attribute__((aligned(64))), dbuf[STACK_COLS / 8 + 16];
    scratch_init(&s, a->buf, q->cols, q->group); /* cols <= STACK_COLS: lays out, can't fail */
    s.ds = ds;
    s.dbuf = dbuf;
    rows_avx512(a->kind, q, a->x, &s, y, r0, r1);
    return;
  }
#endif
  ttq_qmatvec(k, q, a->x, y, r0, r1);
}

/* Rows per dequantized tile: about 128 KB of f32, at least 1 row. */
static int64_t tile_rows(int64_t cols) {
  int64_t t = (128 * 1024 / 4) / cols;
  return t < 1 ? 1 : t > 64 ? 64 : t;
}

void ttq_qmatmul(const ttq_kernels *k, const ttq_qmatrix *q, const float *X, int n, float *Y,
                 int64_t ldy, int64_t r0, int64_t r1) {
  if (r0 >= r1 || n <= 0) return;
  const qk *K = pick(k);
  const int64_t cols = q->cols, R = tile_rows(cols);
  float *tile = n >= 4 ? aligned_alloc(64, (size_t)(R * cols * 4 + 63) / 64 * 64) : NULL;
  if (!tile) { /* few tokens (or no memory): the decode kernel per token */
    float *tmp = malloc((size_t)r1 * sizeof(float)); /* y of the kernel is indexed by row */
    for (int t = 0; t < n; t++) {
      if (tmp) {
        K->matvec(q, X + (size_t)t * cols, tmp, r0, r1);
        memcpy(Y + (size_t)t * ldy + r0, tmp + r0, (size_t)(r1 - r0) * sizeof(float));
      } else {
        for (int64_t r = r0; r < r1; r++) Y[(size_t)t * ldy + r] = row_scalar(q, r, X + (size_t)t * cols);
      }
    }
    free(tmp);
    return;
  }
  /* a quantized-activation decode mode: give sgemm the same x-hat, so that prefill and decode
   * compute the same products */
  float *xh = NULL;
#ifdef TTQ_X86
  int mode = K == &qk_avx512 && q->group % 32 == 0 && __builtin_cpu_supports("avx512vnni") ? qact_mode(q) : 0;
  if (mode && (xh = malloc((size_t)n * (size_t)cols * sizeof(float))))
    for (int t = 0; t < n; t++)
      fake_quant_x(X + (size_t)t * cols, cols, mode == 1 ? 127.0f : 32767.0f, xh + (size_t)t * cols);
#endif
  for (int64_t a = r0; a < r1; a += R) {
    int64_t nr = r1 - a < R ? r1 - a : R;
    for (int64_t i = 0; i < nr; i++) K->dequant(q, a + i, tile + i * cols);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, (int)nr, (int)cols, 1.0f, xh ? xh : X,
                (int)cols, tile, (int)cols, 0.0f, Y + a, (int)ldy);
  }
  free(xh);
  free(tile);
}
