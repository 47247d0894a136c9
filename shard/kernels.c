/* kernels.c -- full-precision dot products and conversions, with runtime CPU dispatch.
 *
 * Each SIMD variant is compiled with a target attribute so the library as a whole needs only
 * baseline x86-64 (or any architecture: the SIMD code is x86-only and compiled out elsewhere).
 * The tables are static const: selection keeps no mutable state but a cached CPUID bit. */
#include "kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define TTQ_X86 1
/* F16C (CPUID.1:ECX bit 29): asked with cpuid, as clang's __builtin_cpu_supports has no "f16c".
 * Cached: cpuid traps to the hypervisor in a VM (tens of microseconds), and selection runs per
 * quantizer call. The cache is atomic: 0 unknown, 1 no, 2 yes (racing first calls agree). */
static bool has_f16c(void) {
  static _Atomic int cached;
  int v = cached;
  if (!v) {
    unsigned a, b, c, d;
    v = __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1) ? 2 : 1;
    cached = v;
  }
  return v == 2;
}
#endif

/* ---- scalar (reference; also the fallback everywhere) ---- */

static float dot_f32_scalar(const float *w, const float *x, int64_t n) {
  float acc[8] = {0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) acc[j] += w[i + j] * x[i + j];
  float s = 0;
  for (; i < n; i++) s += w[i] * x[i];
  for (int j = 0; j < 8; j++) s += acc[j];
  return s;
}

static float dot_bf16_scalar(const uint16_t *w, const float *x, int64_t n) {
  float acc[8] = {0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) acc[j] += ttq__bf16_to_f32(w[i + j]) * x[i + j];
  float s = 0;
  for (; i < n; i++) s += ttq__bf16_to_f32(w[i]) * x[i];
  for (int j = 0; j < 8; j++) s += acc[j];
  return s;
}

static float dot_f16_scalar(const uint16_t *w, const float *x, int64_t n) {
  float s = 0;
  for (int64_t i = 0; i < n; i++) s += ttq__f16_to_f32(w[i]) * x[i];
  return s;
}

static void cvt_bf16_scalar(const uint16_t *src, float *dst, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] = ttq__bf16_to_f32(src[i]);
}

static void cvt_f16_scalar(const uint16_t *src, float *dst, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] = ttq__f16_to_f32(src[i]);
}

static uint64_t stream_scalar(const uint8_t *p, size_t n) {
  uint64_t a[4] = {0}, w[4];
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    memcpy(w, p + i, 32);
    for (int k = 0; k < 4; k++) a[k] ^= w[k];
  }
  for (; i < n; i++) a[0] ^= p[i];
  return a[0] ^ a[1] ^ a[2] ^ a[3];
}

/* x[j] = expf(x[j] - max x) for j < n, in place; returns their sum, added in order. The
 * exponential half of a softmax, shared by attend_scalar and softmax_scalar. */
static float exp_shifted_scalar(float *x, int n) {
  float mx = -INFINITY, sum = 0;
  for (int j = 0; j < n; j++) mx = x[j] > mx ? x[j] : mx;
  for (int j = 0; j < n; j++) sum += (x[j] = expf(x[j] - mx));
  return sum;
}

/* Element i of a key/value row store: f32, or f16 (f16 != 0; the f16 KV cache). */
static inline float kv_elem(const void *p, size_t i, const int f16) {
  return f16 ? ttq__f16_to_f32(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

/* The reference: per head, scores by dot products (dot_f32_scalar's order), softmax with
 * expf, then each out[i] sums the positions in order. K and V of either store (f16: the keys
 * in blocks of 16 positions); the f16 one gives the f32 one's bits on the converted values. */
static inline void attend_scalar_any(const float *q, int g, const void *K, const void *V, int n,
                                     int hd, float scale, float *att, float *out, const int f16) {
  for (int h = 0; h < g; h++) {
    const float *qh = q + (size_t)h * hd;
    float *a = att + (size_t)h * n;
    for (int j = 0; j < n; j++) { /* dot_f32_scalar's order */
      /* key element i of position j: f32 rows, f16 blocks of 16 positions (kernels.h) */
#define KEY(i) (f16 ? kv_elem(K, ((size_t)(j / 16) * hd + (i)) * 16 + j % 16, 1) \
                    : kv_elem(K, (size_t)j * hd + (i), 0))
      float acc[8] = {0}, dot = 0;
      int i = 0;
      for (; i + 8 <= hd; i += 8)
        for (int u = 0; u < 8; u++) acc[u] += KEY(i + u) * qh[i + u];
      for (; i < hd; i++) dot += KEY(i) * qh[i];
      for (int u = 0; u < 8; u++) dot += acc[u];
      a[j] = dot * scale;
#undef KEY
    }
    const float inv = 1.0f / exp_shifted_scalar(a, n);
    float *restrict o = out + (size_t)h * hd;
    memset(o, 0, (size_t)hd * sizeof *o);
    for (int j = 0; j < n; j++) {
      const float p = a[j] * inv;
      for (int i = 0; i < hd; i++) o[i] += p * kv_elem(V, (size_t)j * hd + i, f16);
    }
  }
}

static void attend_scalar(const float *q, int g, const float *K, const float *V, int n, int hd,
                          float scale, float *att, float *out) {
  attend_scalar_any(q, g, K, V, n, hd, scale, att, out, 0);
}

static void attend_f16_scalar(const float *q, int g, const uint16_t *K, const uint16_t *V, int n,
                              int hd, float scale, float *att, float *out) {
  attend_scalar_any(q, g, K, V, n, hd, scale, att, out, 1);
}

/* The reference: max, expf and the sum in order, then one multiplication by 1/sum. */
static void softmax_scalar(float *x, int n) {
  const float inv = 1.0f / exp_shifted_scalar(x, n);
  for (int j = 0; j < n; j++) x[j] *= inv;
}

/* One loop for every variant (each compiles it for its own ISA): every lane is one channel. */
#define SUM_SQ_ABS_BODY                                                                        \
  for (int t = 0; t < n; t++) {                                                                \
    const float *restrict x = X + (size_t)t * (size_t)ld;                                      \
    _Pragma("omp simd") for (int c = c0; c < c1; c++) {                                        \
      sq[c] += (double)x[c] * x[c];                                                            \
      ab[c] += fabs((double)x[c]);                                                             \
    }                                                                                          \
  }
static void sum_sq_abs_scalar(double *restrict sq, double *restrict ab, const float *X, int n,
                              int64_t ld, int c0, int c1) {
  SUM_SQ_ABS_BODY
}

/* The reference: expf per element. */
static void silu_mul_scalar(float *a, const float *b, int64_t n) {
  for (int64_t i = 0; i < n; i++) a[i] = a[i] / (1.0f + expf(-a[i])) * b[i];
}

static const ttq_kernels k_scalar = {"scalar", dot_f32_scalar, dot_bf16_scalar, dot_f16_scalar,
                                     cvt_bf16_scalar, cvt_f16_scalar, stream_scalar, attend_scalar,
                                     attend_f16_scalar, softmax_scalar, silu_mul_scalar, sum_sq_abs_scalar};

#ifdef TTQ_X86
/* ---- AVX2 + FMA + F16C ---- */
#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))

AVX2_TARGET static inline float hsum256(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
  return _mm_cvtss_f32(lo);
}

AVX2_TARGET static inline __m256 load_bf16x8(const uint16_t *p) {
  __m128i h = _mm_loadu_si128((const __m128i *)p);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

AVX2_TARGET static float dot_f32_avx2(const float *w, const float *x, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
  }
  float s = hsum256(_mm256_add_ps(a0, a1));
  for (; i < n; i++) s += w[i] * x[i];
  return s;
}

AVX2_TARGET static float dot_bf16_avx2(const uint16_t *w, const float *x, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_fmadd_ps(load_bf16x8(w + i), _mm256_loadu_ps(x + i), a0);
    a1 = _mm256_fmadd_ps(load_bf16x8(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
  }
  float s = hsum256(_mm256_add_ps(a0, a1));
  for (; i < n; i++) s += ttq__bf16_to_f32(w[i]) * x[i];
  return s;
}

AVX2_TARGET static float dot_f16_avx2(const uint16_t *w, const float *x, int64_t n) {
  __m256 a0 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i))),
                         _mm256_loadu_ps(x + i), a0);
  float s = hsum256(a0);
  for (; i < n; i++) s += ttq__f16_to_f32(w[i]) * x[i];
  return s;
}

AVX2_TARGET static void cvt_bf16_avx2(const uint16_t *src, float *dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load_bf16x8(src + i));
  for (; i < n; i++) dst[i] = ttq__bf16_to_f32(src[i]);
}

AVX2_TARGET static void cvt_f16_avx2(const uint16_t *src, float *dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
  for (; i < n; i++) dst[i] = ttq__f16_to_f32(src[i]);
}

AVX2_TARGET static uint64_t stream_avx2(const uint8_t *p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 128 <= n; i += 128) {
    a0 = _mm256_xor_si256(a0, _mm256_loadu_si256((const __m256i *)(p + i)));
    a1 = _mm256_xor_si256(a1, _mm256_loadu_si256((const __m256i *)(p + i + 32)));
    a2 = _mm256_xor_si256(a2, _mm256_loadu_si256((const __m256i *)(p + i + 64)));
    a3 = _mm256_xor_si256(a3, _mm256_loadu_si256((const __m256i *)(p + i + 96)));
  }
  a0 = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
  uint64_t v[4], r = 0;
  _mm256_storeu_si256((__m256i *)v, a0);
  for (int k = 0; k < 4; k++) r ^= v[k];
  for (; i < n; i++) r ^= p[i];
  return r;
}

AVX2_TARGET static void sum_sq_abs_avx2(double *restrict sq, double *restrict ab, const float *X,
                                        int n, int64_t ld, int c0, int c1) {
  SUM_SQ_ABS_BODY
}

static const ttq_kernels k_avx2 = {"avx2", dot_f32_avx2, dot_bf16_avx2, dot_f16_avx2,
                                   cvt_bf16_avx2, cvt_f16_avx2, stream_avx2, attend_scalar,
                                   attend_f16_scalar, softmax_scalar, silu_mul_scalar, sum_sq_abs_avx2};

/* ---- AVX-512 (F + BW) ---- */
#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl")))

AVX512_TARGET static inline __m512 load_bf16x16(const uint16_t *p) {
  __m256i h = _mm256_loadu_si256((const __m256i *)p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

AVX512_TARGET static inline __m512 load_bf16_tail(const uint16_t *p, int64_t r) {
  __mmask16 m = (__mmask16)((1u << r) - 1);
  __m256i h = _mm256_maskz_loadu_epi16(m, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* Software prefetch of the row stream PF_BYTES ahead (into the next row: rows are contiguous
 * in every caller that streams a matrix). Prefetches never fault, so running past the end is
 * harmless. The hardware prefetcher alone measured 71-74% of the read bandwidth on the output
 * head's F16 rows (docs/BENCHMARKS.md). stream prefetches too: it is the roofline, so it must
 * read as fast as any kernel can (one core: 17.0 -> 19.6-20.1 GB/s; two: 28-29.5 either way). */
#define PF_BYTES 2048
#define PF_LINES(p, nbytes)                                                                        \
  for (int pf_ = 0; pf_ < (nbytes); pf_ += 64) _mm_prefetch((const char *)(p) + PF_BYTES + pf_, _MM_HINT_T0)

AVX512_TARGET static float dot_f32_avx512(const float *w, const float *x, int64_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(),
         a3 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    PF_LINES(w + i, 256);
    a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), a0);
    a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 16), _mm512_loadu_ps(x + i + 16), a1);
    a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 32), _mm512_loadu_ps(x + i + 32), a2);
    a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 48), _mm512_loadu_ps(x + i + 48), a3);
  }
  for (; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
    a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w + i), _mm512_maskz_loadu_ps(m, x + i), a0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

AVX512_TARGET static float dot_bf16_avx512(const uint16_t *w, const float *x, int64_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(),
         a3 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    PF_LINES(w + i, 128);
    a0 = _mm512_fmadd_ps(load_bf16x16(w + i), _mm512_loadu_ps(x + i), a0);
    a1 = _mm512_fmadd_ps(load_bf16x16(w + i + 16), _mm512_loadu_ps(x + i + 16), a1);
    a2 = _mm512_fmadd_ps(load_bf16x16(w + i + 32), _mm512_loadu_ps(x + i + 32), a2);
    a3 = _mm512_fmadd_ps(load_bf16x16(w + i + 48), _mm512_loadu_ps(x + i + 48), a3);
  }
  for (; i < n; i += 16) {
    int64_t r = n - i >= 16 ? 16 : n - i;
    __mmask16 m = r == 16 ? (__mmask16)0xffff : (__mmask16)((1u << r) - 1);
    a0 = _mm512_fmadd_ps(load_bf16_tail(w + i, r), _mm512_maskz_loadu_ps(m, x + i), a0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

AVX512_TARGET static float dot_f16_avx512(const uint16_t *w, const float *x, int64_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(),
         a3 = _mm512_setzero_ps();
  int64_t i = 0;
#define CVT(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
  for (; i + 64 <= n; i += 64) {
    PF_LINES(w + i, 128);
    a0 = _mm512_fmadd_ps(CVT(w + i), _mm512_loadu_ps(x + i), a0);
    a1 = _mm512_fmadd_ps(CVT(w + i + 16), _mm512_loadu_ps(x + i + 16), a1);
    a2 = _mm512_fmadd_ps(CVT(w + i + 32), _mm512_loadu_ps(x + i + 32), a2);
    a3 = _mm512_fmadd_ps(CVT(w + i + 48), _mm512_loadu_ps(x + i + 48), a3);
  }
  for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(CVT(w + i), _mm512_loadu_ps(x + i), a0);
#undef CVT
  float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
  for (; i < n; i++) s += ttq__f16_to_f32(w[i]) * x[i];
  return s;
}

AVX512_TARGET static uint64_t stream_avx512(const uint8_t *p, size_t n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 256 <= n; i += 256) {
    PF_LINES(p + i, 256);
    a0 = _mm512_xor_si512(a0, _mm512_loadu_si512(p + i));
    a1 = _mm512_xor_si512(a1, _mm512_loadu_si512(p + i + 64));
    a2 = _mm512_xor_si512(a2, _mm512_loadu_si512(p + i + 128));
    a3 = _mm512_xor_si512(a3, _mm512_loadu_si512(p + i + 192));
  }
  a0 = _mm512_xor_si512(_mm512_xor_si512(a0, a1), _mm512_xor_si512(a2, a3));
  uint64_t v[8], r = 0;
  _mm512_storeu_si512(v, a0);
  for (int k = 0; k < 8; k++) r ^= v[k];
  for (; i < n; i++) r ^= p[i];
  return r;
}

AVX512_TARGET static void cvt_bf16_avx512(const uint16_t *src, float *dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, load_bf16x16(src + i));
  for (; i < n; i++) dst[i] = ttq__bf16_to_f32(src[i]);
}

AVX512_TARGET static void cvt_f16_avx512(const uint16_t *src, float *dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
  for (; i < n; i++) dst[i] = ttq__f16_to_f32(src[i]);
}

/* exp(x) for x <= 0 (softmax arguments): x = n ln2 + r, |r| <= ln2/2, exp(r) by its degree-6
 * Taylor polynomial (truncation below 2^-23 relative), times 2^n by scalef (which flushes the
 * far negative range to 0 instead of producing garbage; x is clamped at -104 first). */
AVX512_TARGET static inline __m512 exp_neg_avx512(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

/* Lane i of the result = the sum of the 16 lanes of v_i: one transpose-and-add tree for 16 dot
 * products instead of 16 horizontal reductions. (Arguments by value, not an array: an array
 * whose address is taken stays in memory.) */
#define PAIR_ADD(a, b) _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b))
#define QUAD_ADD(a, b)                                                                         \
  _mm512_add_ps(_mm512_shuffle_ps(a, b, _MM_SHUFFLE(1, 0, 1, 0)),                              \
                _mm512_shuffle_ps(a, b, _MM_SHUFFLE(3, 2, 3, 2)))
#define LANE_ADD(a, b)                                                                         \
  _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0)),                           \
                _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1)))
AVX512_TARGET static inline __m512 hsum16x16(__m512 v0, __m512 v1, __m512 v2, __m512 v3,
                                             __m512 v4, __m512 v5, __m512 v6, __m512 v7,
                                             __m512 v8, __m512 v9, __m512 v10, __m512 v11,
                                             __m512 v12, __m512 v13, __m512 v14, __m512 v15) {
  /* per 128-bit lane L, element e of b_k: lane L's part of the sum of v_{4k+e} */
  __m512 b0 = QUAD_ADD(PAIR_ADD(v0, v1), PAIR_ADD(v2, v3));
  __m512 b1 = QUAD_ADD(PAIR_ADD(v4, v5), PAIR_ADD(v6, v7));
  __m512 b2 = QUAD_ADD(PAIR_ADD(v8, v9), PAIR_ADD(v10, v11));
  __m512 b3 = QUAD_ADD(PAIR_ADD(v12, v13), PAIR_ADD(v14, v15));
  return LANE_ADD(LANE_ADD(b0, b1), LANE_ADD(b2, b3));
}

static inline __mmask16 tail16(int r) { return r >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << r) - 1); }

#define X16(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)

/* 16 elements of a key/value row store from element i (mask m): f32, or f16 converted. */
AVX512_TARGET static inline __m512 kv_load16(const void *p, size_t i, __mmask16 m, const int f16) {
  if (f16) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)p + i));
  return _mm512_maskz_loadu_ps(m, (const float *)p + i);
}

/* Scores of one query head against the 16 f32 key rows from row j0 of K (rows past nj clamped
 * to the last: computed, not stored), into dst[0..nj). */
AVX512_TARGET static inline void scores16(const float *qh, const float *K, int j0, int hd, int nj,
                                          int nc, __mmask16 last, float scale, float *dst) {
#define ROW(jj) const float *r##jj = K + (size_t)(j0 + ((jj) < nj ? (jj) : nj - 1)) * hd;
#define ZERO(jj) __m512 a##jj = _mm512_setzero_ps();
  X16(ROW) X16(ZERO)
  for (int c = 0; c < nc; c++) {
    const __mmask16 m = c == nc - 1 ? last : (__mmask16)0xffff;
    const __m512 qc = _mm512_maskz_loadu_ps(m, qh + 16 * c);
#define FMA(jj) a##jj = _mm512_fmadd_ps(qc, _mm512_maskz_loadu_ps(m, r##jj + 16 * c), a##jj);
    X16(FMA)
  }
  __m512 sums = hsum16x16(a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15);
  _mm512_mask_storeu_ps(dst, tail16(nj), _mm512_mul_ps(sums, _mm512_set1_ps(scale)));
#undef ROW
#undef ZERO
#undef FMA
}

/* Scores of gh <= 8 query heads (rows of q) against one block of 16 f16 keys stored as hd rows
 * of 16 positions (kb), into dst[h * ld + 0..nj): each key row is converted once and serves
 * every head, with one accumulator per head and no horizontal sums. */
AVX512_TARGET static inline void scores16_blocked(const float *q, int gh, const uint16_t *kb,
                                                  int hd, int nj, float scale, float *dst,
                                                  int ld) {
  __m512 a[8];
  for (int h = 0; h < 8; h++) a[h] = _mm512_setzero_ps();
  for (int i = 0; i < hd; i++) {
    const __m512 k = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(kb + (size_t)i * 16)));
#pragma GCC unroll 8
    for (int h = 0; h < 8; h++)
      if (h < gh) a[h] = _mm512_fmadd_ps(_mm512_set1_ps(q[(size_t)h * hd + i]), k, a[h]);
  }
  const __m512 sc = _mm512_set1_ps(scale);
  for (int h = 0; h < gh; h++)
    _mm512_mask_storeu_ps(dst + (size_t)h * ld, tail16(nj), _mm512_mul_ps(a[h], sc));
}

/* out columns [16 c0, 16 c0 + 64) of 4 heads whose weights are the rows a0..a3 (n each): the
 * 16 accumulators stay in registers; masks cm0..cm3 cut the columns past hd. */
AVX512_TARGET static inline __attribute__((always_inline)) void
values4x64(const float *a0, const float *a1, const float *a2, const float *a3, const void *V,
           int c0, int n, int hd, __mmask16 cm0, __mmask16 cm1, __mmask16 cm2, __mmask16 cm3,
           __m512 *o, const int f16) {
  const size_t es = f16 ? 2 : 4;
#define HC(X) X(0, 0) X(0, 1) X(0, 2) X(0, 3) X(1, 0) X(1, 1) X(1, 2) X(1, 3) \
              X(2, 0) X(2, 1) X(2, 2) X(2, 3) X(3, 0) X(3, 1) X(3, 2) X(3, 3)
#define ZERO(h, c) __m512 o##h##c = _mm512_setzero_ps();
#define FMA(h, c) o##h##c = _mm512_fmadd_ps(p##h, v##c, o##h##c);
#define OUT(h, c) o[4 * (h) + (c)] = o##h##c;
  HC(ZERO)
  for (int j = 0; j < n; j++) {
    const size_t v = (size_t)j * hd + 16 * (size_t)c0;
    if (j + 16 < n) /* the value row 16 ahead */
      for (size_t b = 0; b < hd * es; b += 64)
        _mm_prefetch((const char *)V + (v + (size_t)16 * hd) * es + b, _MM_HINT_T0);
    const __m512 v0 = kv_load16(V, v, cm0, f16), v1 = kv_load16(V, v + 16, cm1, f16),
                 v2 = kv_load16(V, v + 32, cm2, f16), v3 = kv_load16(V, v + 48, cm3, f16);
    const __m512 p0 = _mm512_set1_ps(a0[j]), p1 = _mm512_set1_ps(a1[j]),
                 p2 = _mm512_set1_ps(a2[j]), p3 = _mm512_set1_ps(a3[j]);
    HC(FMA)
  }
  HC(OUT)
#undef HC
#undef ZERO
#undef FMA
#undef OUT
}

/* x[j] = exp(x[j] - max x) for j < n, in place; returns their sum (16 lanes of max and of
 * sum). The exponential half of a softmax, shared by attend and softmax. */
AVX512_TARGET static float exp_shifted_avx512(float *x, int n) {
  __m512 mx = _mm512_set1_ps(-INFINITY);
  for (int j = 0; j < n; j += 16) mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(mx, tail16(n - j), x + j));
  const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
  __m512 sum = _mm512_setzero_ps();
  for (int j = 0; j < n; j += 16) {
    const __mmask16 k = tail16(n - j);
    __m512 e = _mm512_maskz_mov_ps(k, exp_neg_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + j), m)));
    _mm512_mask_storeu_ps(x + j, k, e);
    sum = _mm512_add_ps(sum, e);
  }
  return _mm512_reduce_add_ps(sum);
}

/* Scores 16 positions at a time (each key block, read once from L1, serves all g heads), the
 * softmax with a vector exp, then the value rows: each V row is loaded once per 4 heads and
 * 64 columns. The softmax's 1/sum is applied to the outputs at the end. K and V f32 rows, or
 * f16 (kernels.h attend_f16: the keys in blocks of 16 positions, converted as loaded). */
AVX512_TARGET static inline __attribute__((always_inline)) void
attend_avx512_any(const float *q, int g, const void *K, const void *V, int n, int hd, float scale,
                  float *att, float *out, const int f16) {
  const int nc = (hd + 15) / 16;
  const __mmask16 last = tail16(hd - 16 * (nc - 1));
  const size_t es = f16 ? 2 : 4;
  for (int j0 = 0; j0 < n; j0 += 16) {
    if (j0 + 16 < n) /* the next block of keys, while this one serves the g heads */
      for (size_t b = 0; b < 16 * (size_t)hd * es; b += 64)
        _mm_prefetch((const char *)K + (size_t)(j0 + 16) * hd * es + b, _MM_HINT_T0);
    if (j0 == 0) /* the first values, for after the scores */
      for (size_t b = 0; b < 16 * (size_t)hd * es && b < (size_t)n * hd * es; b += 64)
        _mm_prefetch((const char *)V + b, _MM_HINT_T0);
    const int nj = n - j0 < 16 ? n - j0 : 16;
    if (f16) { /* keys in blocks of 16 positions: lane j of row i is key j's element i */
      const uint16_t *kb = (const uint16_t *)K + (size_t)j0 * hd;
      for (int h0 = 0; h0 < g; h0 += 8)
        scores16_blocked(q + (size_t)h0 * hd, g - h0 < 8 ? g - h0 : 8, kb, hd, nj, scale,
                         att + (size_t)h0 * n + j0, n);
    } else {
      for (int h = 0; h < g; h++)
        scores16(q + (size_t)h * hd, K, j0, hd, nj, nc, last, scale, att + (size_t)h * n + j0);
    }
  }
  float inv[1024]; /* g <= n_heads <= 1024 (model.c) */
  for (int h = 0; h < g; h++) inv[h] = 1.0f / exp_shifted_avx512(att + (size_t)h * n, n);
  /* 4 heads x 64 columns per pass; heads past g are clamped (computed, not stored) */
  for (int c0 = 0; c0 < nc; c0 += 4) {
    __mmask16 cm[4];
    for (int c = 0; c < 4; c++) cm[c] = c0 + c < nc - 1 ? (__mmask16)0xffff : c0 + c == nc - 1 ? last : 0;
    for (int h0 = 0; h0 < g; h0 += 4) {
      const float *ar[4];
      for (int h = 0; h < 4; h++) ar[h] = att + (size_t)(h0 + h < g ? h0 + h : g - 1) * n;
      __m512 o[16];
      values4x64(ar[0], ar[1], ar[2], ar[3], V, c0, n, hd, cm[0], cm[1], cm[2], cm[3], o, f16);
      for (int h = 0; h < 4 && h0 + h < g; h++) {
        const __m512 sc = _mm512_set1_ps(inv[h0 + h]);
        for (int c = 0; c < 4; c++)
          _mm512_mask_storeu_ps(out + (size_t)(h0 + h) * hd + 16 * (c0 + c), cm[c],
                                _mm512_mul_ps(o[4 * h + c], sc));
      }
    }
  }
}

AVX512_TARGET static void attend_avx512(const float *q, int g, const float *K, const float *V,
                                        int n, int hd, float scale, float *att, float *out) {
  attend_avx512_any(q, g, K, V, n, hd, scale, att, out, 0);
}

AVX512_TARGET static void attend_f16_avx512(const float *q, int g, const uint16_t *K,
                                            const uint16_t *V, int n, int hd, float scale,
                                            float *att, float *out) {
  attend_avx512_any(q, g, K, V, n, hd, scale, att, out, 1);
}

/* softmax_scalar with exp_neg_avx512, 16 lanes of max and of sum. */
AVX512_TARGET static void softmax_avx512(float *x, int n) {
  const __m512 inv = _mm512_set1_ps(1.0f / exp_shifted_avx512(x, n));
  for (int j = 0; j < n; j += 16) {
    const __mmask16 k = tail16(n - j);
    _mm512_mask_storeu_ps(x + j, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + j), inv));
  }
}

/* silu_mul_scalar with exp_neg_avx512: e = exp(-|x|) <= 1, sigmoid(x) = 1 / (1 + e) for x >= 0
 * and e / (1 + e) below (no overflow either way); a NaN stays NaN. */
AVX512_TARGET static void silu_mul_avx512(float *a, const float *b, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512i absm = _mm512_set1_epi32(0x7fffffff);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : tail16((int)(n - i));
    const __m512 x = _mm512_maskz_loadu_ps(k, a + i);
    const __m512 ax = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), absm));
    const __m512 e = exp_neg_avx512(_mm512_sub_ps(_mm512_setzero_ps(), ax));
    const __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    const __m512 num = _mm512_mask_mov_ps(one, neg, e);
    const __m512 sig = _mm512_div_ps(num, _mm512_add_ps(one, e));
    _mm512_mask_storeu_ps(a + i, k, _mm512_mul_ps(_mm512_mul_ps(x, sig), _mm512_maskz_loadu_ps(k, b + i)));
  }
}

AVX512_TARGET static void sum_sq_abs_avx512(double *restrict sq, double *restrict ab,
                                            const float *X, int n, int64_t ld, int c0, int c1) {
  SUM_SQ_ABS_BODY
}

#undef SUM_SQ_ABS_BODY
#undef X16
#undef PAIR_ADD
#undef QUAD_ADD
#undef LANE_ADD

static const ttq_kernels k_avx512 = {"avx512", dot_f32_avx512, dot_bf16_avx512, dot_f16_avx512,
                                     cvt_bf16_avx512, cvt_f16_avx512, stream_avx512, attend_avx512,
                                     attend_f16_avx512, softmax_avx512, silu_mul_avx512, sum_sq_abs_avx512};
#endif

static const ttq_kernels *by_name(const char *isa) {
  if (!strcmp(isa, "scalar")) return &k_scalar;
#ifdef TTQ_X86
  __builtin_cpu_init();
  bool has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
  bool has_avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                    __builtin_cpu_supports("avx512vl");
  if (!strcmp(isa, "avx2")) return has_avx2 ? &k_avx2 : NULL;
  if (!strcmp(isa, "avx512")) return has_avx512 ? &k_avx512 : NULL;
  if (!strcmp(isa, "best")) return has_avx512 ? &k_avx512 : has_avx2 ? &k_avx2 : &k_scalar;
#else
  if (!strcmp(isa, "best")) return &k_scalar;
#endif
  return NULL;
}

const ttq_kernels *ttq_kernels_select(const char *isa) {
  if (!isa) {
    const char *env = getenv("TTQ_ISA");
    if (env && *env) {
      const ttq_kernels *k = by_name(env);
      if (k) return k;
    }
    return by_name("best");
  }
  return by_name(isa);
}

float ttq_dot_row(const ttq_kernels *k, ttq_dtype t, const void *row, const float *x, int64_t n) {
  switch (t) {
  case TTQ_F32: return k->dot_f32(row, x, n);
  case TTQ_BF16: return k->dot_bf16(row, x, n);
  case TTQ_F16: return k->dot_f16(row, x, n);
  case TTQ_Q8_0: {
    const uint8_t *b = row;
    float s = 0;
    for (int64_t i = 0; i < n; i += 32, b += 34) {
      uint16_t hs;
      memcpy(&hs, b, 2);
      float blk = 0;
      for (int j = 0; j < 32; j++) blk += (float)(int8_t)b[2 + j] * x[i + j];
      s += ttq__f16_to_f32(hs) * blk;
    }
    return s;
  }
  default: return 0;
  }
}

void ttq_row_to_f32(const ttq_kernels *k, ttq_dtype t, const void *row, float *dst, int64_t n) {
  switch (t) {
  case TTQ_BF16: k->cvt_bf16(row, dst, n); break;
  case TTQ_F16: k->cvt_f16(row, dst, n); break;
  default: ttq__to_f32(t, row, dst, n); break;
  }
}
