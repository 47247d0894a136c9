/* gemm.c -- the prefill's Y = X W^T without an f32 copy of W (gemm.h), three variants.
 *
 * Packed activation (amx, avx512bf16), built by ttq_gemm_x_pack: X is cut into units of 16
 * tokens x 32 columns (token tile tt, k-step ks; tokens past n and columns past cols are zero),
 * each unit 2 KiB at packed + (tt * nks + ks) * 2048: 1 KiB of hi parts, then 1 KiB of lo parts,
 * each 16 rows of 64 bytes where row j holds, for tokens t = 0..15, the pair
 * (x[t][32 ks + 2j], x[t][32 ks + 2j + 1]) as two bf16. That is the B operand of tdpbf16ps as
 * it stands (a 16 x 64-byte tile), and for vdpbf16ps one row is one vector of 16 tokens.
 *
 * Weights: BF16 rows are used in place (A tiles loaded straight from the rows with the row
 * stride; vdpbf16ps broadcasts a pair of bf16 from the row). F16 rows, and BF16 blocks whose
 * rows or columns do not fill whole tiles, are split into two bf16 "planes" in the work buffer,
 * a few k-steps of a few blocks of 32 rows at a time (L1 or L2 sized, reused by every token);
 * per k-step, 32 rows of 64 bytes (hi), then 32 of lo. The split of an F16 value is exact
 * (11 significant bits = 8 in hi + at most 4 in lo, the sign of lo may differ).
 *
 * Results: 16 x 16 tiles (weight rows x tokens) in tiles or registers over a K loop, then
 * transposed into Y. The AMX loop structure is described at AMX_RG below.
 * Why AMX and not vdpbf16ps is "best" here: on the Xeon this was written on vdpbf16ps issues one
 * per 2 cycles against two FMAs per cycle (measured), so the 2-3 passes of the split cost 4-6x
 * the sgemm kernel's arithmetic; tdpbf16ps does 16 x 16 x 32 products in 16 cycles. */
#include "gemm.h"

#include <cblas.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "util.h"

#if defined(__x86_64__) && defined(__linux__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define TTQ_GEMM_X86 1
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18
#endif

#define UNIT_BYTES 2048  /* one packed unit: 16 tokens x 32 columns, hi + lo */
#define BLOCK_ROWS 32    /* rows per block: two 16-row tiles */
#define PLANE_KS 4096    /* planes per k-step: 32 rows x 64 bytes, hi then lo */

static int64_t nks_of(int64_t cols) { return (cols + 31) / 32; }
static int64_t nt_of(int n) { return ((int64_t)n + 15) / 16; }

/* ---- capabilities, asked once per process ---- */

enum { CAP_KNOWN = 1, CAP_BF16 = 2, CAP_AMX = 4 };

/* cpuid traps to the hypervisor in a VM (kernels.c), and arch_prctl is a system call: cached.
 * 0 unknown; racing first calls compute the same value. */
static int caps(void) {
  static _Atomic int cached;
  int v = cached;
  if (v) return v;
  v = CAP_KNOWN;
#ifdef TTQ_GEMM_X86
  __builtin_cpu_init();
  unsigned a, b, c, d;
  bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                __builtin_cpu_supports("avx512vl");
  if (avx512 && __get_cpuid_count(7, 0, &a, &b, &c, &d) && a >= 1) {
    unsigned amx_bits = d;
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d) && (a >> 5 & 1)) v |= CAP_BF16; /* AVX512_BF16 */
    if ((v & CAP_BF16) && (amx_bits >> 22 & 1) && (amx_bits >> 24 & 1)) { /* AMX-BF16, -TILE */
      unsigned lo, hi;
      __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
      (void)hi;
      /* XCR0 bits 17-18 (tile state) and the kernel's permission to use the tile data. */
      if ((lo >> 17 & 3) == 3 &&
          syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0)
        v |= CAP_AMX;
    }
  }
#endif
  cached = v;
  return v;
}

static bool runs(ttq_gemm_isa isa) {
  switch (isa) {
  case TTQ_GEMM_SGEMM: return true;
  case TTQ_GEMM_AVX512BF16: return caps() & CAP_BF16;
  case TTQ_GEMM_AMX: return caps() & CAP_AMX;
  }
  return false;
}

const char *ttq_gemm_name(ttq_gemm_isa isa) {
  switch (isa) {
  case TTQ_GEMM_SGEMM: return "sgemm";
  case TTQ_GEMM_AVX512BF16: return "avx512bf16";
  case TTQ_GEMM_AMX: return "amx";
  }
  return "?";
}

static int by_name(const char *name) {
  if (!strcmp(name, "best")) return runs(TTQ_GEMM_AMX) ? TTQ_GEMM_AMX : TTQ_GEMM_SGEMM;
  for (int i = TTQ_GEMM_SGEMM; i <= TTQ_GEMM_AMX; i++)
    if (!strcmp(name, ttq_gemm_name((ttq_gemm_isa)i)))
      return runs((ttq_gemm_isa)i) ? i : TTQ_EUNSUPPORTED;
  return TTQ_EINVAL;
}

int ttq_gemm_select(const char *name) {
  if (!name) {
    const char *env = getenv("TTQ_GEMM");
    int v = env && *env ? by_name(env) : TTQ_EINVAL;
    return v >= 0 ? v : by_name("best");
  }
  return by_name(name);
}

/* ---- sizes ---- */

static size_t round64(size_t v) { return (v + 63) / 64 * 64; }

static bool bf16_path(ttq_gemm_isa isa, ttq_dtype dt) {
  return isa != TTQ_GEMM_SGEMM && (dt == TTQ_BF16 || dt == TTQ_F16);
}

size_t ttq_gemm_x_bytes(ttq_gemm_isa isa, int n, int64_t cols) {
  if (isa == TTQ_GEMM_SGEMM || n < 1 || cols < 1) return 0;
  return (size_t)nt_of(n) * (size_t)nks_of(cols) * UNIT_BYTES;
}

/* AMX blocking (amx_rows). Token pairs of more than one: groups of AMX_RG rows; in each, chunks
 * of k-steps (AMX_KC in place, AMX_KC_PLANES from planes); in each, pairs of token tiles; in
 * each, blocks of 32 rows. The group's weights for the chunk (in place, or planes: 512 KiB)
 * stay in L2 across the token pairs; the X units of a token pair and chunk are read by every
 * block of the group. The 32 x 32 results live in the C buffer between chunks (4 KiB per block
 * and token pair). One token pair (n <= 32): blocks of 32 rows, the whole K loop with the
 * results in tiles, planes of STREAM_KS k-steps (L1) filled just before use.
 * The sizes were chosen by measurement (tests/bench-gemm.c on the 738M shapes); in this range
 * the results were within 10-20% of each other, outside it clearly slower. */
#define AMX_RG 128
#define AMX_KC 64
#define AMX_KC_PLANES 32
#define STREAM_KS 8

static size_t amx_work_bytes(int n) {
  return (size_t)(AMX_RG / BLOCK_ROWS) * AMX_KC_PLANES * PLANE_KS + /* planes */
         (size_t)(AMX_RG / BLOCK_ROWS) * (size_t)((nt_of(n) + 1) / 2) * 4096 + /* C buffer */
         4096;                                                         /* 4 result tiles */
}

size_t ttq_gemm_work_bytes(ttq_gemm_isa isa, ttq_dtype dt, int n, int64_t rows, int64_t cols) {
  if (rows < 1 || cols < 1) return 0;
  if (!bf16_path(isa, dt)) return dt == TTQ_F32 ? 0 : round64((size_t)rows * (size_t)cols * 4);
  if (isa == TTQ_GEMM_AMX) return amx_work_bytes(n);
  return (size_t)nks_of(cols) * PLANE_KS + 4096; /* planes of 32 rows + one result vector */
}

size_t ttq_gemm_scratch_bytes(ttq_gemm_isa isa, ttq_dtype dt, int n, int64_t rows, int64_t cols) {
  if (!bf16_path(isa, dt)) isa = TTQ_GEMM_SGEMM; /* as ttq_gemm_rows: nothing to pack */
  return round64(ttq_gemm_x_bytes(isa, n, cols)) + ttq_gemm_work_bytes(isa, dt, n, rows, cols);
}

int ttq_gemm_x_init(ttq_gemm_x *x, ttq_gemm_isa isa, const float *X, int n, int64_t cols,
                    void *buf) {
  if (n < 1 || cols < 1 || !X || (unsigned)isa > TTQ_GEMM_AMX || !runs(isa)) return TTQ_EINVAL;
  if (isa != TTQ_GEMM_SGEMM && (!buf || ((uintptr_t)buf & 63))) return TTQ_EINVAL;
  x->isa = isa;
  x->X = X;
  x->n = n;
  x->cols = cols;
  x->packed = isa == TTQ_GEMM_SGEMM ? NULL : buf;
  return 0;
}

/* ---- the fallback: convert the rows to f32, one sgemm ---- */

static int sgemm_rows(const ttq_gemm_x *x, ttq_dtype dt, const uint8_t *W, size_t row_bytes,
                      int64_t r0, int64_t r1, float *Y, int64_t ldy, float *work) {
  const int64_t rows = r1 - r0, cols = x->cols;
  const float *w32 = work;
  int64_t ldw = cols;
  if (dt == TTQ_F32) {
    if (row_bytes % 4 || (uintptr_t)W % 4) return TTQ_EINVAL;
    w32 = (const float *)(W + (size_t)r0 * row_bytes);
    ldw = (int64_t)(row_bytes / 4);
  } else {
    const ttq_kernels *k = ttq_kernels_select(NULL);
    for (int64_t r = 0; r < rows; r++)
      ttq_row_to_f32(k, dt, W + (size_t)(r0 + r) * row_bytes, work + (size_t)r * cols, cols);
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, x->n, (int)rows, (int)cols, 1.0f, x->X,
              (int)cols, w32, (int)ldw, 0.0f, Y, (int)ldy);
  return 0;
}

#ifdef TTQ_GEMM_X86

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma,f16c")))
#define AMX_TARGET \
  __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))

/* ---- splitting to bf16, packing, transposing (AVX-512 F + BW) ---- */

/* f32 bits of v rounded to bf16 (to nearest, ties away from zero: the magnitude is rounded);
 * the low 16 bits are zero. Two integer operations. A NaN may become infinity: X is finite in a
 * forward pass. */
AVX512_TARGET INLINE __m512i bf16_bits(__m512 v) {
  return _mm512_and_si512(_mm512_add_epi32(_mm512_castps_si512(v), _mm512_set1_epi32(0x8000)),
                          _mm512_set1_epi32((int)0xffff0000u));
}

/* v = hi + lo + e, |v - hi| <= 2^-8 |v|, |e| <= 2^-8 |v - hi|; lo = 0 where hi is not finite. */
AVX512_TARGET INLINE void split(__m512 v, __m512i *hi, __m512i *lo) {
  __m512i h = bf16_bits(v);
  __mmask16 fin = _mm512_cmpneq_epi32_mask(_mm512_and_si512(h, _mm512_set1_epi32(0x7f800000)),
                                           _mm512_set1_epi32(0x7f800000));
  *hi = h;
  *lo = bf16_bits(_mm512_maskz_sub_ps(fin, v, _mm512_castsi512_ps(h)));
}

/* The 32 bf16 of two vectors of f32 that are exactly bf16 already (a: the first 16), in order:
 * vcvtne2ps2bf16 packs them (it rounds nothing here; it flushes f32 denormals, which
 * tdpbf16ps and vdpbf16ps would flush anyway). */
BF16_TARGET INLINE __m512i pack_exact(__m512i a, __m512i b) {
  return (__m512i)_mm512_cvtne2ps_pbh(_mm512_castsi512_ps(b), _mm512_castsi512_ps(a));
}

/* In-place transpose of a 16 x 16 matrix of 32-bit elements held as 16 row vectors. */
AVX512_TARGET INLINE void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; i++) {
    r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; i++) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
    t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
  }
  for (int i = 0; i < 4; i++) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xdd);
  }
}

static __mmask16 mask16(int64_t k) {
  return k >= 16 ? 0xffff : k <= 0 ? 0 : (__mmask16)((1u << k) - 1);
}

/* One packed unit (token tile tt, k-step ks). */
BF16_TARGET static void pack_unit(const ttq_gemm_x *x, int64_t tt, int64_t ks, uint8_t *dst) {
  __m512 hi[16], lo[16];
  const int64_t c0 = ks * 32, rem = x->cols - c0;
  const __mmask16 ma = mask16(rem), mb = mask16(rem - 16);
  for (int t = 0; t < 16; t++) {
    int64_t tok = tt * 16 + t;
    __m512 a = _mm512_setzero_ps(), b = a;
    if (tok < x->n) {
      const float *row = x->X + (size_t)tok * x->cols + c0;
      a = _mm512_maskz_loadu_ps(ma, row);
      b = _mm512_maskz_loadu_ps(mb, row + 16);
    }
    __m512i ah, al, bh, bl;
    split(a, &ah, &al);
    split(b, &bh, &bl);
    hi[t] = _mm512_castsi512_ps(pack_exact(ah, bh));
    lo[t] = _mm512_castsi512_ps(pack_exact(al, bl));
  }
  transpose16(hi);
  transpose16(lo);
  for (int j = 0; j < 16; j++) {
    _mm512_store_ps(dst + j * 64, hi[j]);
    _mm512_store_ps(dst + 1024 + j * 64, lo[j]);
  }
}

/* Planes of rows [rg, rg + ng) and k-steps [kc0, kc0 + kn), as blocks of 32 rows: block b,
 * k-step kc0 + k at planes + (b * kstride + k) * PLANE_KS (rows past ng and columns past cols
 * are zero). k-steps outer, rows inner: many row streams at once keep enough reads in flight (one
 * row after the other measured 2 GB/s from memory); software prefetch PF_KS k-steps ahead
 * (further ahead measured slower: with a 4 KiB row stride all rows share a few L1 sets). */
#define PF_KS 2
BF16_TARGET static void fill_planes(ttq_dtype dt, const uint8_t *W, size_t row_bytes,
                                      int64_t rg, int ng, int64_t cols, int64_t kc0, int64_t kn,
                                      int64_t kstride, uint8_t *planes) {
  const int nb = (ng + BLOCK_ROWS - 1) / BLOCK_ROWS;
  for (int64_t ks = kc0; ks < kc0 + kn; ks++) {
    const int64_t rem = cols - ks * 32;
    const __mmask32 m = rem >= 32 ? 0xffffffffu : (__mmask32)((1u << rem) - 1);
    const bool pf = (ks + PF_KS) * 32 < cols;
    for (int r = 0; r < nb * BLOCK_ROWS; r++) {
      uint8_t *hp =
          planes + ((r / BLOCK_ROWS) * kstride + (ks - kc0)) * PLANE_KS + (r % BLOCK_ROWS) * 64;
      if (r >= ng) {
        _mm512_store_si512(hp, _mm512_setzero_si512());
        _mm512_store_si512(hp + 2048, _mm512_setzero_si512());
        continue;
      }
      const uint16_t *src = (const uint16_t *)(W + (size_t)(rg + r) * row_bytes) + ks * 32;
      if (pf) _mm_prefetch((const char *)(src + PF_KS * 32), _MM_HINT_T0);
      __m512i w = _mm512_maskz_loadu_epi16(m, src);
      if (dt == TTQ_BF16) {
        _mm512_store_si512(hp, w);
        continue;
      }
      /* The exact split of F16: hi = w rounded to 8 significant bits, lo = w - hi has at most 4
       * of F16's 11 (both exact in bf16). Non-finite weights give NaN. */
      __m512 a = _mm512_cvtph_ps(_mm512_castsi512_si256(w));
      __m512 b = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(w, 1));
      __m512i ah = bf16_bits(a), bh = bf16_bits(b);
      __m512i al = _mm512_castps_si512(_mm512_sub_ps(a, _mm512_castsi512_ps(ah)));
      __m512i bl = _mm512_castps_si512(_mm512_sub_ps(b, _mm512_castsi512_ps(bh)));
      _mm512_store_si512(hp, pack_exact(ah, bh));
      _mm512_store_si512(hp + 2048, pack_exact(al, bl));
    }
  }
}

/* Y rows (tokens) t < ntok, columns (weight rows) r < nrows, from a result tile held as
 * tile[r][t] (16 x 16 f32, 64-byte rows). */
AVX512_TARGET static void store_tile(const float *tile, float *Y, int64_t ldy, int nrows,
                                     int ntok) {
  __m512 v[16];
  for (int r = 0; r < 16; r++) v[r] = _mm512_load_ps(tile + r * 16);
  transpose16(v);
  __mmask16 m = mask16(nrows);
  for (int t = 0; t < ntok; t++) _mm512_mask_storeu_ps(Y + (size_t)t * ldy, m, v[t]);
}

/* ---- AMX ---- */

typedef struct amx_cfg {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} amx_cfg;

/* The products of the loaded weight tiles (4, 5) and X tiles (6, 7) into the result tiles of
 * the rt x tc block (tile numbers must be constants, hence a macro). */
#define DP_TILES(rt, tc)                                                                       \
  do {                                                                                         \
    _tile_dpbf16ps(0, 4, 6);                                                                   \
    if ((tc) > 1) _tile_dpbf16ps(1, 4, 7);                                                     \
    if ((rt) > 1) _tile_dpbf16ps(2, 5, 6);                                                     \
    if ((rt) > 1 && (tc) > 1) _tile_dpbf16ps(3, 5, 7);                                         \
  } while (0)

/* Tiles: 0-3 results (row tile i, token tile j) = 2i + j; 4-5 weights (row tiles); 6-7 X.
 * F16 order: whi xhi, whi xlo (A kept), wlo xhi: 4 A and 6 B tile loads per k-step. */
AMX_TARGET INLINE void amx_kloop(int rt, int tc, bool f16, int64_t nks, const uint8_t *a,
                                 size_t sa, size_t a_ks, const uint8_t *b0, const uint8_t *b1) {
  for (int64_t ks = 0; ks < nks; ks++, a += a_ks, b0 += UNIT_BYTES, b1 += UNIT_BYTES) {
    _tile_loadd(4, a, sa);
    if (rt > 1) _tile_loadd(5, a + 16 * sa, sa);
    _tile_loadd(6, b0, 64);
    if (tc > 1) _tile_loadd(7, b1, 64);
    DP_TILES(rt, tc);
    _tile_loadd(6, b0 + 1024, 64);
    if (tc > 1) _tile_loadd(7, b1 + 1024, 64);
    DP_TILES(rt, tc);
    if (f16) {
      _tile_loadd(4, a + 2048, sa);
      if (rt > 1) _tile_loadd(5, a + 2048 + 16 * sa, sa);
      _tile_loadd(6, b0, 64);
      if (tc > 1) _tile_loadd(7, b1, 64);
      DP_TILES(rt, tc);
    }
  }
}

AMX_TARGET static void amx_kloop_any(int rt, int tc, bool f16, int64_t nks, const uint8_t *a,
                                     size_t sa, size_t a_ks, const uint8_t *b0, const uint8_t *b1) {
  /* constant arguments: each case compiles to its own loop without tests */
  if (f16) {
    if (rt == 2 && tc == 2) amx_kloop(2, 2, true, nks, a, sa, a_ks, b0, b1);
    else if (rt == 2) amx_kloop(2, 1, true, nks, a, sa, a_ks, b0, b1);
    else if (tc == 2) amx_kloop(1, 2, true, nks, a, sa, a_ks, b0, b1);
    else amx_kloop(1, 1, true, nks, a, sa, a_ks, b0, b1);
  } else {
    if (rt == 2 && tc == 2) amx_kloop(2, 2, false, nks, a, sa, a_ks, b0, b1);
    else if (rt == 2) amx_kloop(2, 1, false, nks, a, sa, a_ks, b0, b1);
    else if (tc == 2) amx_kloop(1, 2, false, nks, a, sa, a_ks, b0, b1);
    else amx_kloop(1, 1, false, nks, a, sa, a_ks, b0, b1);
  }
}

/* Result tiles 0-3 of a block (rows rb.., nr of them) and token pair tp to Y. */
AMX_TARGET static void amx_store(const ttq_gemm_x *x, float *res, int64_t tp, int rt, int tc,
                                 int nr, float *Y, int64_t ldy) {
  _tile_stored(0, res, 64);
  _tile_stored(1, res + 256, 64);
  _tile_stored(2, res + 512, 64);
  _tile_stored(3, res + 768, 64);
  for (int i = 0; i < rt; i++)
    for (int j = 0; j < tc; j++) {
      int64_t t0 = (2 * tp + j) * 16;
      int ntok = x->n - t0 < 16 ? (int)(x->n - t0) : 16;
      int nrows = nr - 16 * i < 16 ? nr - 16 * i : 16;
      store_tile(res + (2 * i + j) * 256, Y + (size_t)t0 * ldy + 16 * i, ldy, nrows, ntok);
    }
}

AMX_TARGET static void amx_rows(const ttq_gemm_x *x, ttq_dtype dt, const uint8_t *W,
                                size_t row_bytes, int64_t r0, int64_t r1, float *Y, int64_t ldy,
                                uint8_t *work) {
  const int64_t cols = x->cols, nks = nks_of(cols), nt = nt_of(x->n), npair = (nt + 1) / 2;
  uint8_t *planes = work;
  uint8_t *cbuf = planes + (size_t)(AMX_RG / BLOCK_ROWS) * AMX_KC_PLANES * PLANE_KS;
  float *res = (float *)(cbuf + (size_t)(AMX_RG / BLOCK_ROWS) * npair * 4096);
  const bool f16 = dt == TTQ_F16;
  amx_cfg cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.palette = 1;
  for (int i = 0; i < 8; i++) cfg.colsb[i] = 64, cfg.rows[i] = 16;
  _tile_loadconfig(&cfg);
  if (npair == 1) {
    const int tc = nt > 1 ? 2 : 1;
    const int64_t sk = nks < STREAM_KS ? nks : STREAM_KS;
    const uint8_t *b0 = (const uint8_t *)x->packed, *b1 = b0 + (size_t)nks * UNIT_BYTES;
    for (int64_t rb = r0; rb < r1; rb += BLOCK_ROWS) {
      const int nr = r1 - rb < BLOCK_ROWS ? (int)(r1 - rb) : BLOCK_ROWS, rt = nr > 16 ? 2 : 1;
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      if (dt == TTQ_BF16 && nr % 16 == 0 && cols % 32 == 0) {
        amx_kloop_any(rt, tc, false, nks, W + (size_t)rb * row_bytes, row_bytes, 64, b0, b1);
      } else {
        for (int64_t kc0 = 0; kc0 < nks; kc0 += sk) {
          const int64_t kn = nks - kc0 < sk ? nks - kc0 : sk;
          fill_planes(dt, W, row_bytes, rb, nr, cols, kc0, kn, sk, planes);
          amx_kloop_any(rt, tc, f16, kn, planes, 64, PLANE_KS, b0 + (size_t)kc0 * UNIT_BYTES,
                        b1 + (size_t)kc0 * UNIT_BYTES);
        }
      }
      amx_store(x, res, 0, rt, tc, nr, Y + (rb - r0), ldy);
    }
    _tile_release();
    return;
  }
  for (int64_t rg = r0; rg < r1; rg += AMX_RG) {
    const int ng = r1 - rg < AMX_RG ? (int)(r1 - rg) : AMX_RG;
    const int nb = (ng + BLOCK_ROWS - 1) / BLOCK_ROWS;
    const bool inplace = dt == TTQ_BF16 && ng % 16 == 0 && cols % 32 == 0;
    const int64_t kcs0 = inplace ? AMX_KC : AMX_KC_PLANES, kcs = nks < kcs0 ? nks : kcs0;
    for (int64_t kc0 = 0; kc0 < nks; kc0 += kcs) {
      const int64_t kn = nks - kc0 < kcs ? nks - kc0 : kcs;
      const bool first = kc0 == 0, last = kc0 + kn == nks;
      if (!inplace) fill_planes(dt, W, row_bytes, rg, ng, cols, kc0, kn, kcs, planes);
      for (int64_t tp = 0; tp < npair; tp++) {
        const int tc = nt - 2 * tp > 1 ? 2 : 1;
        const uint8_t *b0 = (const uint8_t *)x->packed + (size_t)(2 * tp * nks + kc0) * UNIT_BYTES;
        const uint8_t *b1 = b0 + (size_t)nks * UNIT_BYTES;
        for (int b = 0; b < nb; b++) {
          const int nr = ng - b * BLOCK_ROWS < BLOCK_ROWS ? ng - b * BLOCK_ROWS : BLOCK_ROWS;
          const int rt = nr > 16 ? 2 : 1;
          uint8_t *cb = cbuf + (size_t)(b * npair + tp) * 4096;
          if (first) {
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
          } else {
            _tile_loadd(0, cb, 64);
            _tile_loadd(1, cb + 1024, 64);
            _tile_loadd(2, cb + 2048, 64);
            _tile_loadd(3, cb + 3072, 64);
          }
          if (inplace)
            amx_kloop_any(rt, tc, false, kn,
                          W + (size_t)(rg + b * BLOCK_ROWS) * row_bytes + (size_t)kc0 * 64,
                          row_bytes, 64, b0, b1);
          else
            amx_kloop_any(rt, tc, f16, kn, planes + (size_t)b * kcs * PLANE_KS, 64, PLANE_KS, b0,
                          b1);
          if (last) {
            amx_store(x, res, tp, rt, tc, nr, Y + (rg + b * BLOCK_ROWS - r0), ldy);
          } else {
            _tile_stored(0, cb, 64);
            _tile_stored(1, cb + 1024, 64);
            _tile_stored(2, cb + 2048, 64);
            _tile_stored(3, cb + 3072, 64);
          }
        }
      }
    }
  }
  _tile_release();
}

/* ---- AVX-512 BF16 (vdpbf16ps): 8 rows x 32 tokens of accumulators ---- */

#define VR 8 /* rows per register block */

BF16_TARGET INLINE __m512bh bc(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return (__m512bh)_mm512_set1_epi32((int)v);
}

BF16_TARGET INLINE void bf16_kloop(int tc, bool f16, int64_t nks, const uint8_t *a, size_t sa,
                                   size_t a_ks, const uint8_t *b0, const uint8_t *b1,
                                   __m512 acc[VR][2]) {
  for (int r = 0; r < VR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t ks = 0; ks < nks; ks++, a += a_ks, b0 += UNIT_BYTES, b1 += UNIT_BYTES)
    for (int j = 0; j < 16; j++) {
      __m512bh xh0 = (__m512bh)_mm512_load_si512(b0 + j * 64);
      __m512bh xl0 = (__m512bh)_mm512_load_si512(b0 + 1024 + j * 64);
      __m512bh xh1 = xh0, xl1 = xl0;
      if (tc > 1) {
        xh1 = (__m512bh)_mm512_load_si512(b1 + j * 64);
        xl1 = (__m512bh)_mm512_load_si512(b1 + 1024 + j * 64);
      }
      for (int r = 0; r < VR; r++) {
        __m512bh w = bc(a + r * sa + j * 4);
        acc[r][0] = _mm512_dpbf16_ps(acc[r][0], xh0, w);
        acc[r][0] = _mm512_dpbf16_ps(acc[r][0], xl0, w);
        if (tc > 1) {
          acc[r][1] = _mm512_dpbf16_ps(acc[r][1], xh1, w);
          acc[r][1] = _mm512_dpbf16_ps(acc[r][1], xl1, w);
        }
        if (f16) {
          __m512bh wl = bc(a + 2048 + r * sa + j * 4);
          acc[r][0] = _mm512_dpbf16_ps(acc[r][0], xh0, wl);
          if (tc > 1) acc[r][1] = _mm512_dpbf16_ps(acc[r][1], xh1, wl);
        }
      }
    }
}

BF16_TARGET static void bf16_rows(const ttq_gemm_x *x, ttq_dtype dt, const uint8_t *W,
                                  size_t row_bytes, int64_t r0, int64_t r1, float *Y, int64_t ldy,
                                  uint8_t *work) {
  const int64_t cols = x->cols, nks = nks_of(cols), nt = nt_of(x->n);
  uint8_t *planes = work;
  float *res = (float *)(work + nks * PLANE_KS);
  const bool f16 = dt == TTQ_F16;
  for (int64_t rb = r0; rb < r1; rb += BLOCK_ROWS) {
    const int nr = r1 - rb < BLOCK_ROWS ? (int)(r1 - rb) : BLOCK_ROWS;
    const uint8_t *a;
    size_t sa, a_ks;
    if (dt == TTQ_BF16 && nr % VR == 0 && cols % 32 == 0) {
      a = W + (size_t)rb * row_bytes, sa = row_bytes, a_ks = 64;
    } else {
      fill_planes(dt, W, row_bytes, rb, nr, cols, 0, nks, nks, planes);
      a = planes, sa = 64, a_ks = PLANE_KS;
    }
    for (int64_t tb = 0; tb < nt; tb += 2) {
      const int tc = nt - tb > 1 ? 2 : 1;
      const uint8_t *b0 = (const uint8_t *)x->packed + (size_t)tb * nks * UNIT_BYTES;
      const uint8_t *b1 = b0 + (size_t)nks * UNIT_BYTES;
      for (int rs = 0; rs < nr; rs += VR) {
        __m512 acc[VR][2];
        const uint8_t *ar = a + rs * sa;
        if (f16) {
          if (tc == 2) bf16_kloop(2, true, nks, ar, sa, a_ks, b0, b1, acc);
          else bf16_kloop(1, true, nks, ar, sa, a_ks, b0, b1, acc);
        } else {
          if (tc == 2) bf16_kloop(2, false, nks, ar, sa, a_ks, b0, b1, acc);
          else bf16_kloop(1, false, nks, ar, sa, a_ks, b0, b1, acc);
        }
        for (int j = 0; j < tc; j++) {
          int64_t t0 = (tb + j) * 16;
          int ntok = x->n - t0 < 16 ? (int)(x->n - t0) : 16;
          for (int r = 0; r < VR && rs + r < nr; r++) {
            _mm512_store_ps(res, acc[r][j]);
            float *y = Y + (size_t)t0 * ldy + (rb - r0) + rs + r;
            for (int t = 0; t < ntok; t++) y[(size_t)t * ldy] = res[t];
          }
        }
      }
    }
  }
}

#endif /* TTQ_GEMM_X86 */

void ttq_gemm_x_pack(const ttq_gemm_x *x, int part, int nparts) {
#ifdef TTQ_GEMM_X86
  if (x->isa == TTQ_GEMM_SGEMM || nparts < 1 || part < 0 || part >= nparts) return;
  const int64_t nks = nks_of(x->cols), units = nt_of(x->n) * nks;
  const int64_t u0 = units * part / nparts, u1 = units * (part + 1) / nparts;
  for (int64_t u = u0; u < u1; u++)
    pack_unit(x, u / nks, u % nks, (uint8_t *)x->packed + (size_t)u * UNIT_BYTES);
#else
  (void)x, (void)part, (void)nparts;
#endif
}

int ttq_gemm_rows_x(const ttq_gemm_x *x, ttq_dtype dt, const void *W, size_t row_bytes,
                    int64_t r0, int64_t r1, float *Y, int64_t ldy, void *work) {
  if (!x || x->n < 1 || x->cols < 1 || r0 < 0 || r1 < r0 || ldy < r1 - r0 || !runs(x->isa))
    return TTQ_EINVAL;
  if (dt != TTQ_F32 && dt != TTQ_F16 && dt != TTQ_BF16 && dt != TTQ_Q8_0) return TTQ_EUNSUPPORTED;
  if (dt == TTQ_Q8_0 && x->cols % 32) return TTQ_EINVAL;
  if (r0 == r1) return 0;
  if (!W || !Y || row_bytes < ttq_dtype_bytes(dt, x->cols)) return TTQ_EINVAL;
  if (x->cols > INT32_MAX || r1 - r0 > INT32_MAX || ldy > INT32_MAX) return TTQ_EINVAL;
  if (ttq_gemm_work_bytes(x->isa, dt, x->n, r1 - r0, x->cols) && (!work || (uintptr_t)work & 63))
    return TTQ_EINVAL;
#ifdef TTQ_GEMM_X86
  if (bf16_path(x->isa, dt)) {
    if (x->isa == TTQ_GEMM_AMX) amx_rows(x, dt, W, row_bytes, r0, r1, Y, ldy, work);
    else bf16_rows(x, dt, W, row_bytes, r0, r1, Y, ldy, work);
    return 0;
  }
#endif
  return sgemm_rows(x, dt, W, row_bytes, r0, r1, Y, ldy, work);
}

int ttq_gemm_rows(ttq_gemm_isa isa, ttq_dtype dt, const void *W, size_t row_bytes, int64_t r0,
                  int64_t r1, int64_t cols, const float *X, int n, float *Y, int64_t ldy,
                  void *scratch) {
  ttq_gemm_x x;
  if ((unsigned)isa > TTQ_GEMM_AMX) return TTQ_EINVAL;
  if (!bf16_path(isa, dt)) isa = TTQ_GEMM_SGEMM; /* nothing to pack */
  size_t xb = round64(ttq_gemm_x_bytes(isa, n, cols));
  int rc = ttq_gemm_x_init(&x, isa, X, n, cols, scratch);
  if (rc) return rc;
  ttq_gemm_x_pack(&x, 0, 1);
  return ttq_gemm_rows_x(&x, dt, W, row_bytes, r0, r1, Y, ldy,
                         scratch ? (uint8_t *)scratch + xb : NULL);
}
