/* kernels.h -- the inner loops of full-precision inference (dot products of weight rows of
 * any stored dtype with an f32 activation, and row conversion to f32), in AVX-512, AVX2 and
 * scalar versions chosen at run time.
 *
 * Contract: every variant computes the same mathematical result; they may differ only by the
 * order of floating-point additions and by contraction into fused multiply-adds (`attend`,
 * `softmax` and `silu_mul` also by their exp: the scalar variant uses expf, the AVX-512 one a
 * polynomial within 2^-22 relative error; `sum_sq_abs` gives the same bits in every variant).
 * No variant reads past `n` elements. */
#ifndef TTQ_KERNELS_H
#define TTQ_KERNELS_H

#include <stdint.h>
#include "ttq.h"

typedef struct ttq_kernels {
  const char *name; /* "avx512", "avx2" or "scalar" */
  float (*dot_f32)(const float *w, const float *x, int64_t n);
  float (*dot_bf16)(const uint16_t *w, const float *x, int64_t n);
  float (*dot_f16)(const uint16_t *w, const float *x, int64_t n);
  void (*cvt_bf16)(const uint16_t *src, float *dst, int64_t n);
  void (*cvt_f16)(const uint16_t *src, float *dst, int64_t n);
  /* Reads n bytes once, as fast as the memory system allows; returns their XOR (a checksum
   * that keeps the reads live). For measuring the read bandwidth of the decode roofline. */
  uint64_t (*stream)(const uint8_t *p, size_t n);
  /* Attention of one new token for g query heads that share one key/value head:
   *   out[h*hd + i] = sum_{j<n} p_hj V[j*hd + i],  p_h = softmax_j(scale * q_h . K[j*hd ..])
   * q: g*hd floats (g <= 1024); K, V: n >= 1 rows of hd floats; att: scratch of g*n floats; out: g*hd
   * floats (written, not accumulated). Can't fail. */
  void (*attend)(const float *q, int g, const float *K, const float *V, int n, int hd,
                 float scale, float *att, float *out);
  /* attend with K and V stored in f16 (the f16 KV cache), V as rows, K in blocks of 16
   * positions: element i of key j at ((j / 16) * hd + i) * 16 + j % 16, ceil(n / 16) whole
   * blocks readable. On their f32 values: the scalar variant gives the bits attend_scalar gives
   * on the converted rows; the others differ from attend by the order of a score's additions.
   * Can't fail. */
  void (*attend_f16)(const float *q, int g, const uint16_t *K, const uint16_t *V, int n, int hd,
                     float scale, float *att, float *out);
  /* x[j] = exp(x[j] - max x) / sum_j exp(x[j] - max x) for j < n >= 1, in place (the prompt's
   * attention rows). Can't fail. */
  void (*softmax)(float *x, int n);
  /* a[i] = silu(a[i]) * b[i] = a[i] / (1 + exp(-a[i])) * b[i] for i < n (the SwiGLU of the
   * feed-forward block). Can't fail. */
  void (*silu_mul)(float *a, const float *b, int64_t n);
  /* The prefill statistics of columns [c0, c1) of n rows of X (row stride ld floats):
   * sq[c] += x[t][c]^2 and ab[c] += |x[t][c]| in double, t in order. The square of a float is
   * exact in double, so every variant gives the same bits (with or without contraction). */
  void (*sum_sq_abs)(double *sq, double *ab, const float *X, int n, int64_t ld, int c0, int c1);
} ttq_kernels;

/* The best variant this CPU runs, or the one named by `isa` ("avx512", "avx2", "scalar") when
 * the CPU supports it. Returns NULL for an unknown or unsupported name. Never fails for NULL.
 * The environment variable TTQ_ISA, when set, is used in place of a NULL `isa`. */
const ttq_kernels *ttq_kernels_select(const char *isa);

/* Dot product of one stored row (dtype t, n elements) with x, using k. */
float ttq_dot_row(const ttq_kernels *k, ttq_dtype t, const void *row, const float *x, int64_t n);
/* Convert one stored row to f32. */
void ttq_row_to_f32(const ttq_kernels *k, ttq_dtype t, const void *row, float *dst, int64_t n);

#endif
