/* kernels.c -- full-precision dot products and conversions, with runtime CPU dispatch.
 *
 * Each SIMD variant is compiled with a target attribute so the library as a whole needs only
 * baseline x86-64 (or any architecture: the SIMD code is x86-only and compiled out elsewhere).
 * The tables are static const: selection keeps no mutable state but a cached CPUID bit. */
#include "kernels.h"

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

static const ttq_kernels k_scalar = {"scalar", dot_f32_scalar, dot_bf16_scalar, dot_f16_scalar,
                                     cvt_bf16_scalar, cvt_f16_scalar, stream_scalar};

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

static const ttq_kernels k_avx2 = {"avx2", dot_f32_avx2, dot_bf16_avx2, dot_f16_avx2,
                                   cvt_bf16_avx2, cvt_f16_avx2, stream_avx2};

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

AVX512_TARGET static float dot_f32_avx512(const float *w, const float *x, int64_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(),
         a3 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
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

static const ttq_kernels k_avx512 = {"avx512", dot_f32_avx512, dot_bf16_avx512, dot_f16_avx512,
                                     cvt_bf16_avx512, cvt_f16_avx512, stream_avx512};
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
