/* gemm.h -- the prefill's matrix product Y = X W^T with W read in place from the memory map
 * (BF16 or F16 rows are never converted to an f32 copy of the matrix), in variants chosen at
 * run time:
 *   "amx"        AMX tiles (tdpbf16ps), Intel Sapphire Rapids and later, Linux;
 *   "avx512bf16" AVX-512 vdpbf16ps, lanes = tokens, weight pairs broadcast from the rows;
 *   "sgemm"      the fallback everywhere: rows converted to f32 and one OpenBLAS sgemm.
 *
 * Precision (the bf16 variants): the activation x is split once per call into two bf16,
 * x = hi + lo + e with lo = bf16(x - hi), |e| <= 2^-16 |x|; a BF16 weight is exact in bf16 and an
 * F16 weight splits exactly into w = whi + wlo (whi = bf16(w)); each product is taken as
 * w*hi + w*lo (BF16: within 2^-16 of w*x, relative) or whi*hi + whi*lo + wlo*hi (F16: within
 * 2^-15), and the sums are f32 (sgemm: 2^-24 per product). Measured: max |error| / sum |w x|
 * 7e-6 (BF16) and 1.7e-5 (F16) against 1.8e-6 for sgemm (tests/test-gemm.c, with the bound).
 * Both bf16 instructions treat bf16 denormals as zero: inputs below 2^-126 in magnitude (and lo
 * parts of inputs below about 2^-117) contribute nothing. |x| >= 2^128 (1 - 2^-9) rounds to
 * infinity in hi; non-finite weights give NaN. F32 and Q8_0 weights always take the sgemm path
 * (an F32 matrix needs no conversion; Q8_0 rows are converted), whatever the variant.
 *
 * Use: one activation, packed once and shared read-only by the threads that multiply it, each
 * thread its own rows:
 *     ttq_gemm_x x;  ttq_gemm_x_init(&x, isa, X, n, cols, xbuf);    xbuf: ttq_gemm_x_bytes()
 *     ttq_gemm_x_pack(&x, part, nparts);   every part once (e.g. one per thread), then a barrier
 *     ttq_gemm_rows_x(&x, dt, W, row_bytes, r0, r1, Y, ldy, work);  work: ttq_gemm_work_bytes()
 * or everything in one single-threaded call: ttq_gemm_rows().
 * Buffers are the caller's (64-byte aligned); nothing here allocates or keeps state but the
 * cached CPU/OS capabilities. */
#ifndef TTQ_GEMM_H
#define TTQ_GEMM_H

#include <stddef.h>
#include <stdint.h>
#include "ttq.h"

typedef enum ttq_gemm_isa {
  TTQ_GEMM_SGEMM = 0,      /* convert to f32 + cblas_sgemm (runs everywhere) */
  TTQ_GEMM_AVX512BF16 = 1, /* vdpbf16ps */
  TTQ_GEMM_AMX = 2         /* tdpbf16ps */
} ttq_gemm_isa;

/* The variant named `name` ("amx", "avx512bf16", "sgemm", "best") if this CPU and OS run it,
 * else TTQ_EUNSUPPORTED (known name) or TTQ_EINVAL (unknown name). NULL means $TTQ_GEMM when it
 * is set to a variant this machine runs, else "best". "best" is amx when available, else sgemm:
 * avx512bf16 measured 0.2-0.5x sgemm (gemm.c says why); it stays selectable by name. Asks the
 * CPU (cpuid) and, for amx, the kernel (arch_prctl XTILEDATA permission; refused before Linux
 * 5.16 or by a sandbox: then amx is unsupported) once per process. */
int ttq_gemm_select(const char *name);
/* Static name of a variant ("amx", ...); "?" for an unknown value. */
const char *ttq_gemm_name(ttq_gemm_isa isa);

/* An activation X (n tokens x cols, row-major f32), prepared for one variant. */
typedef struct ttq_gemm_x {
  ttq_gemm_isa isa;
  const float *X; /* borrowed; must stay valid and unchanged while the struct is used */
  int n;
  int64_t cols;
  void *packed; /* borrowed: ttq_gemm_x_bytes() bytes; NULL for sgemm */
} ttq_gemm_x;

/* Bytes of the packed activation (0 for sgemm): ceil(n/16)*16 x ceil(cols/32)*32 x 4. */
size_t ttq_gemm_x_bytes(ttq_gemm_isa isa, int n, int64_t cols);
/* Fills x. buf: ttq_gemm_x_bytes(isa, n, cols) bytes, 64-byte aligned (may be NULL when that
 * is 0). Returns 0, or TTQ_EINVAL (n < 1, cols < 1, a missing buffer, an unknown isa). */
int ttq_gemm_x_init(ttq_gemm_x *x, ttq_gemm_isa isa, const float *X, int n, int64_t cols,
                    void *buf);
/* Packs part `part` of `nparts` (0 <= part < nparts) of x: parts write disjoint cache lines, so
 * nparts threads may pack at once. All parts must be packed before any ttq_gemm_rows_x on x.
 * Does nothing for sgemm. */
void ttq_gemm_x_pack(const ttq_gemm_x *x, int part, int nparts);

/* Per-thread work buffer for rows_x with n tokens and `rows` = r1 - r0 at most: sgemm converts
 * all the rows (rows x cols x 4 bytes, 0 for F32); amx needs about 0.5 MiB + 16 KiB per 32
 * tokens, avx512bf16 128 bytes per column. */
size_t ttq_gemm_work_bytes(ttq_gemm_isa isa, ttq_dtype dt, int n, int64_t rows, int64_t cols);

/* Y[t*ldy + (r - r0)] = sum_c X[t*cols + c] * W[r][c] for t < n, r0 <= r < r1.
 * W: rows of x->cols elements of dtype dt (TTQ_BF16, TTQ_F16, TTQ_F32, TTQ_Q8_0), row r at
 * (const uint8_t *)W + r * row_bytes, read in place. Only rows [r0, r1) and their first
 * ttq_dtype_bytes(dt, cols) bytes are read. Single-threaded (OpenBLAS must be set to one thread
 * for sgemm): each thread of the caller calls it on its own row slice, with its own work
 * buffer (ttq_gemm_work_bytes, 64-byte aligned). ldy >= r1 - r0; Y overlaps neither X nor W.
 * Returns 0, TTQ_EINVAL (bad sizes, ldy, or a variant this machine does not run) or
 * TTQ_EUNSUPPORTED (dtype); Y is unchanged on failure. */
int ttq_gemm_rows_x(const ttq_gemm_x *x, ttq_dtype dt, const void *W, size_t row_bytes,
                    int64_t r0, int64_t r1, float *Y, int64_t ldy, void *work);

/* Both steps in one single-threaded call; scratch: ttq_gemm_scratch_bytes() bytes, 64-byte
 * aligned (the packed activation, then the work buffer). */
size_t ttq_gemm_scratch_bytes(ttq_gemm_isa isa, ttq_dtype dt, int n, int64_t rows, int64_t cols);
int ttq_gemm_rows(ttq_gemm_isa isa, ttq_dtype dt, const void *W, size_t row_bytes, int64_t r0,
                  int64_t r1, int64_t cols, const float *X, int n, float *Y, int64_t ldy,
                  void *scratch);

#endif
