/* quant.h -- group-wise asymmetric round-to-nearest quantization of weight matrices with a
 * per-input-channel scale D (TTQ, AWQ; RTN is D = 1), the packed storage of the result, and the
 * matrix-vector / matrix-matrix products on it.
 *
 * Quantizer (docs/TTQ.md), for a matrix W (rows x cols) and a scale D (cols, or NULL for 1):
 *   W~ = W diag(D). For each row r and each group of `group` consecutive columns:
 *     lo = min W~, hi = max W~,
 *     d  = fp16((hi - lo) / (2^bits - 1)); when hi == lo: d = fp16(|lo| / (2^bits - 1)), or 1
 *          when lo == 0 too (a constant group is then reproduced exactly up to fp16 rounding);
 *     zero = round(-lo / d)                     (round half away from zero, as C roundf);
 *       when zero is outside [B - 128, B + 127], B = 2^(bits-1) (it fits the stored int8 below;
 *       only a group whose values all have one sign and lie far from 0 misses), lo and hi are
 *       first widened to min(lo, 0) and max(hi, 0) (the range then contains 0, so zero lies in
 *       [0, 2^bits - 1]) and d and zero recomputed; zero = B if it is still out (NaN, infinity),
 *     q = clamp(rne(w~ * r) + zero, 0, 2^bits - 1), r = fl(1 / d) (rne: round half to even;
 *         a multiplication by the group's reciprocal, not a division per weight: it differs
 *         from round(w~ / d) only where w~ / d lies within a relative 2^-23 of a half-integer,
 *         and keeps every SIMD variant at one multiplication and one rounding per weight),
 *     z  = zero - B, stored as int8.
 *   Here d is used at its fp16-rounded value in every later step. Dequantized:
 *   w~' = (q - zero) d, exact in f32 (|q - zero| < 2^9, d has 11 significant bits).
 *   The product uses y = W~' (x / D): the caller scales x by 1/D once per shared input.
 *
 * Why fp16 scales and int8 zero points: decode streams every byte of the matrix once per token,
 * so the per-group overhead is bandwidth. An fp16 d and an int8 zero cost 3 bytes per group,
 * 0.75 bit per weight at group 32 (an fp16 offset instead of the zero: 1 bit; fp32 d and
 * offset: 2 bits). d's relative rounding error (2^-11) is far below the quantization step
 * (2^-bits), and the integer zero point is exact, as docs/TTQ.md defines it.
 *
 * Packed codes, row-major; each row is cols/32 blocks of 32 codes; a block takes 4*bits bytes:
 *   bits 8: byte j = code j.
 *   bits 4: byte j (0..15) = code j | code (j+16) << 4.
 *   bits 2: byte j (0..7)  = code j | code (j+8) << 2 | code (j+16) << 4 | code (j+24) << 6.
 *   bits 3: the 2-bit layout of (code & 3) in 8 bytes, then a 32-bit little-endian word whose
 *           bit j is bit 2 of code j (4 bytes): 12 bytes.
 *   bits 5: the 4-bit layout of (code & 15) in 16 bytes, then a 32-bit little-endian word whose
 *           bit j is bit 4 of code j: 20 bytes.
 * Scales `d`: fp16, and zero points `z`: int8, [rows][cols/group] each.
 *
 * Requirements (checked, TTQ_EINVAL with the reason): bits in {2,3,4,5,8}; 8 <= group <= 1024;
 * group divides cols; cols is a multiple of 32.
 */
#ifndef TTQ_QUANT_H
#define TTQ_QUANT_H

#include <stdbool.h>
#include <stdint.h>
#include "kernels.h"
#include "ttq.h"

typedef struct ttq_qmatrix {
  int64_t rows, cols;
  int bits, group;
  uint8_t *codes; /* rows * cols * bits / 8 bytes */
  uint16_t *d;    /* rows * (cols / group) fp16 */
  int8_t *z;      /* rows * (cols / group) zero points minus TTQ_ZBIAS(bits) */
  bool placed;    /* codes, d and z lie in the caller's memory (ttq_qmatrix_place), else owned */
  /* Decode may round the input to int8 per 32-block instead of int16 (qkernels.c): set for
   * TTQ, whose input is divided by D; false after ttq_qmatrix_alloc. */
  bool act_int8;
} ttq_qmatrix;

/* The bias of the stored zero points: zero = z + TTQ_ZBIAS(bits). */
#define TTQ_ZBIAS(bits) (1 << ((bits) - 1))

/* A group's offset m = -zero d from its d (the f32 value of the fp16) and stored z: exact in f32
 * (|zero| < 2^9, d has 11 significant bits), so q d + m is (q - zero) d rounded once. */
static inline float ttq_qoffset(float d, int z, int bits) { return -(float)(z + TTQ_ZBIAS(bits)) * d; }

/* Checks bits/group/cols; 0 or TTQ_EINVAL with a message naming the setting and the value. */
int ttq_quant_check(int64_t cols, int bits, int group, ttq_diag *d);

/* Allocates storage for a rows x cols matrix. Free with ttq_qmatrix_free. */
int ttq_qmatrix_alloc(ttq_qmatrix *q, int64_t rows, int64_t cols, int bits, int group, ttq_diag *d);
/* The same laid out in memory the caller owns: codes, d and z one after the other, each from a
 * 64-byte boundary, in *span bytes (ttq_qmatrix_span: 0 or TTQ_EINVAL with the reason, as
 * ttq_qmatrix_alloc). mem: 64-byte aligned, *span bytes, outlives q; ttq_qmatrix_free forgets
 * q without freeing it. Why: a model's matrices placed one after the other in one huge-page
 * buffer decode 1.04-1.17x faster than in separate allocations (docs/BENCHMARKS.md). */
int ttq_qmatrix_span(int64_t rows, int64_t cols, int bits, int group, size_t *span, ttq_diag *d);
int ttq_qmatrix_place(ttq_qmatrix *q, int64_t rows, int64_t cols, int bits, int group, void *mem,
                      ttq_diag *d);
/* Frees what ttq_qmatrix_alloc allocated (nothing of a placed matrix) and zeroes q; idempotent. */
void ttq_qmatrix_free(ttq_qmatrix *q);
/* Bytes of codes + scales + zero points (0 for an unallocated matrix). */
size_t ttq_qmatrix_bytes(const ttq_qmatrix *q);
/* The same for a rows x cols matrix of `bits` and `group` (valid per ttq_quant_check). */
size_t ttq_qmatrix_bytes_for(int64_t rows, int64_t cols, int bits, int group);

/* Quantizes rows [r0, r1) of W (dtype wt, row-major rows x cols, row stride = cols elements)
 * with scale D (cols floats, or NULL for D = 1) into q (allocated with the same shape).
 * Can't fail. Thread-safe for disjoint row ranges. */
void ttq_quantize_rows(ttq_qmatrix *q, ttq_dtype wt, const void *W, const float *D, int64_t r0,
                       int64_t r1);
/* Same with the variant k (ttq_quantize_rows selects it from TTQ_ISA on every call). */
void ttq_quantize_rows_k(const ttq_kernels *k, ttq_qmatrix *q, ttq_dtype wt, const void *W,
                         const float *D, int64_t r0, int64_t r1);
/* Row r of q from a stored row at `row` (cols elements of wt), e.g. a row just converted. */
void ttq_quantize_row_k(const ttq_kernels *k, ttq_qmatrix *q, ttq_dtype wt, const void *row,
                        const float *D, int64_t r);
/* Same, from an f32 matrix (e.g. a low-rank residual). */
void ttq_quantize_rows_f32(ttq_qmatrix *q, const float *W, const float *D, int64_t r0, int64_t r1);

/* Internal (quant.c, used by qkernels.c): the 32 codes of one packed block of `bits`. */
void ttq__unpack_block(int bits, const uint8_t *block, uint8_t *codes);

/* Unpacks row r to floats w~' (cols values). */
void ttq_qmatrix_dequant_row(const ttq_qmatrix *q, int64_t r, float *out);

/* y[r] = sum_c w~'[r][c] x[c] for rows [r0, r1) (x already scaled by 1/D). */
void ttq_qmatvec(const ttq_kernels *k, const ttq_qmatrix *q, const float *x, float *y, int64_t r0,
                 int64_t r1);
/* An activation prepared once for any number of ttq_qmatvec_qact calls on matrices of the same
 * cols, group and bits (the q, k and v projections; row slices on several threads): the
 * per-32-block rounding and layout of the kernel, done once instead of per call.
 * buf: ttq_qact_bytes(cols) bytes, 64-byte aligned, caller-owned; it and x must outlive a.
 * Results equal ttq_qmatvec's exactly. Can't fail (an unprepared kind falls back to it). */
typedef struct ttq_qact {
  const float *x;
  int64_t cols;
  int group, bits, kind; /* kind: internal to qkernels.c; 0 = not prepared */
  bool act_int8;         /* the rounding it was prepared with (ttq_qmatrix.act_int8) */
  void *buf;
} ttq_qact;
size_t ttq_qact_bytes(int64_t cols);
void ttq_qact_prepare(const ttq_kernels *k, const ttq_qmatrix *q, const float *x, void *buf,
                      ttq_qact *a);
/* ttq_qmatvec(k, q, a->x, y, r0, r1) from the prepared a; read-only on a, so thread-safe. */
void ttq_qmatvec_qact(const ttq_kernels *k, const ttq_qmatrix *q, const ttq_qact *a, float *y,
                      int64_t r0, int64_t r1);
/* Y[t][r] = sum_c w~'[r][c] X[t][c] for t < n and rows [r0, r1); X row stride = cols, Y row
 * stride = ldy. */
void ttq_qmatmul(const ttq_kernels *k, const ttq_qmatrix *q, const float *X, int n, float *Y,
                 int64_t ldy, int64_t r0, int64_t r1);

#endif
