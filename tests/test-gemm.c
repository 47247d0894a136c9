/* test-gemm.c -- the prefill GEMM (shard/gemm.h), every variant this machine runs (the sgemm
 * fallback always), against a naive double-precision reference with its own half decoders.
 *
 * The bound, relative to m = sum_c |w_c x_c| (the size of the sum, not of its result):
 *   |y - ref| <= (p + (3 cols + 2) 2^-24) m + 2^-120 (sum_c |w_c| + sum_c |x_c| + cols)
 * - p, the error of one product in the bf16 variants: x = hi + lo + e with |x - hi| <= 2^-8 |x|
 *   and |e| <= 2^-8 |x - hi| <= 2^-16 |x|. A BF16 weight is exact: w hi + w lo is within
 *   2^-16 |w x| (p = 2^-16). An F16 weight splits exactly, w = whi + wlo with |wlo| <= 2^-8 |w|;
 *   whi hi + whi lo + wlo hi misses w e + wlo (lo + e): within 2^-15 |w x| (p = 2^-15). The
 *   bf16 x bf16 products are exact in f32;
 * - (3 cols + 2) 2^-24: f32 additions in any order, one rounding (u = 2^-24) per product added
 *   (3 products per column at most), which also covers sgemm (product rounding u, additions
 *   (cols - 1) u);
 * - the absolute term: bf16 denormals (< 2^-126) are flushed by vdpbf16ps / tdpbf16ps.
 * The fallback (sgemm) meets the same bound; both measured maxima are printed. Small `cols`
 * cases make the bound tight enough to catch a lost lo part (2^-8). Weights sit right before a
 * PROT_NONE page, so a read past the last row's last element faults (AMX and masked loads are
 * not seen by ASan). The cases cover partial tiles in every dimension and, for amx, both loop
 * structures (one token pair; several pairs with row groups and K chunks). */
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gemm.h"
#include "test.h"
#include "util.h"

/* Independent decoders (not util.c's). */
static double dec_f16(uint16_t h) {
  int e = h >> 10 & 31, m = h & 1023;
  double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
  return h >> 15 ? -v : v;
}
static double dec_bf16(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static double wval(ttq_dtype dt, const uint8_t *row, int64_t c) {
  uint16_t h;
  switch (dt) {
  case TTQ_F32: {
    float f;
    memcpy(&f, row + 4 * c, 4);
    return f;
  }
  case TTQ_BF16: memcpy(&h, row + 2 * c, 2); return dec_bf16(h);
  case TTQ_F16: memcpy(&h, row + 2 * c, 2); return dec_f16(h);
  default: { /* Q8_0 */
    const uint8_t *b = row + (c / 32) * 34;
    memcpy(&h, b, 2);
    return dec_f16(h) * (int8_t)b[2 + c % 32];
  }
  }
}

/* A weight value: realistic (|w| ~ 0.02), with rows and elements of other magnitudes. */
static float rand_w(uint64_t *rng, int64_t r, int64_t c) {
  float v = test_rand_f32(rng) * 0.05f;
  uint64_t k = test_rand_u64(rng) % 64;
  if (r % 7 == 3) v *= 300.0f; /* large rows */
  if (r % 11 == 5) v *= 1e-4f; /* small rows */
  if (k == 0) v = 0;
  if (k == 1) v *= 1000.0f;
  if (k == 2) v *= 1e-5f;
  (void)c;
  return v;
}

static float rand_x(uint64_t *rng, int t, int64_t c) {
  float v = test_rand_f32(rng) * 2.0f;
  uint64_t k = test_rand_u64(rng) % 50;
  if (t % 5 == 2) v *= 40.0f;
  if (t % 9 == 4) v *= 1e-3f;
  if (k == 0) v = 0;
  if (k == 1) v *= 3000.0f; /* outlier channels, as in LLM activations */
  if (k == 2) v *= 1e-6f;
  if (k == 3) v = 1e-30f;
  (void)c;
  return v;
}

/* Weights: rows [0, r1) of dtype dt, the last row ending right before a PROT_NONE page. */
typedef struct wbuf {
  uint8_t *map, *w;
  size_t map_len;
} wbuf;

static int make_weights(wbuf *b, ttq_dtype dt, int64_t r1, int64_t cols, size_t row_bytes,
                        uint64_t *rng) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE), need = (size_t)r1 * row_bytes;
  size_t data = (need + page - 1) / page * page;
  b->map_len = data + page;
  b->map = mmap(NULL, b->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (b->map == MAP_FAILED) return -1;
  if (mprotect(b->map + data, page, PROT_NONE)) return -1;
  b->w = b->map + data - need;
  for (int64_t r = 0; r < r1; r++) {
    uint8_t *row = b->w + (size_t)r * row_bytes;
    memset(row, 0xff, row_bytes); /* padding between rows: NaN bytes, must not be read */
    for (int64_t c = 0; c < cols; c++) {
      float v = rand_w(rng, r, c);
      uint16_t h;
      if (dt == TTQ_F32) memcpy(row + 4 * c, &v, 4);
      else if (dt == TTQ_BF16) {
        h = ttq__f32_to_bf16(v);
        if (r == 2 && c == 0) h = 0x0001; /* a bf16 denormal */
        if (r == 2 && c == 1) h = 0x6f00; /* ~4e28 */
        memcpy(row + 2 * c, &h, 2);
      } else if (dt == TTQ_F16) {
        h = ttq__f32_to_f16(v);
        if (r == 2 && c == 0) h = 0x0001; /* the smallest f16 denormal */
        if (r == 2 && c == 1) h = 0x7bff; /* 65504 */
        if (r == 4 && c == 2) h = 0x83ff; /* the largest negative f16 denormal */
        memcpy(row + 2 * c, &h, 2);
      }
    }
    if (dt == TTQ_Q8_0)
      for (int64_t blk = 0; blk < cols / 32; blk++) {
        uint8_t *q = row + blk * 34;
        uint16_t d = ttq__f32_to_f16(0.001f * (1 + (float)(test_rand_u64(rng) % 100)));
        memcpy(q, &d, 2);
        for (int j = 0; j < 32; j++) q[2 + j] = (uint8_t)(test_rand_u64(rng) % 256);
      }
  }
  return 0;
}

typedef struct stats {
  double max_rel;   /* max |y - ref| / m */
  double max_bound; /* max |y - ref| / bound */
} stats;

/* One case: every element of Y against the reference; Y columns past r1 - r0 untouched. */
static int check_case(ttq_gemm_isa isa, ttq_dtype dt, int64_t r0, int64_t r1, int64_t cols, int n,
                      int pad, bool two_step, uint64_t *rng, stats *st) {
  size_t row_bytes = ttq_dtype_bytes(dt, cols) + (size_t)pad;
  wbuf wb;
  ASSERT(make_weights(&wb, dt, r1, cols, row_bytes, rng) == 0);
  float *X = malloc((size_t)n * cols * 4);
  int64_t rows = r1 - r0, ldy = rows + 3;
  float *Y = malloc((size_t)n * ldy * 4);
  for (int t = 0; t < n; t++)
    for (int64_t c = 0; c < cols; c++) X[(size_t)t * cols + c] = rand_x(rng, t, c);
  for (size_t i = 0; i < (size_t)n * ldy; i++) Y[i] = -12345.0f;
  void *scratch = NULL;
  size_t sb = ttq_gemm_scratch_bytes(isa, dt, n, rows, cols);
  ASSERT(posix_memalign(&scratch, 64, sb ? sb : 64) == 0);
  if (!two_step) {
    ASSERT_OK(ttq_gemm_rows(isa, dt, wb.w, row_bytes, r0, r1, cols, X, n, Y, ldy, scratch));
  } else { /* packed in 3 parts, multiplied in 2 row slices as 2 threads would */
    ttq_gemm_x x;
    size_t xb = ttq_gemm_x_bytes(isa, n, cols);
    void *xbuf = NULL, *work = NULL;
    ASSERT(posix_memalign(&xbuf, 64, xb ? xb : 64) == 0);
    ASSERT_OK(ttq_gemm_x_init(&x, isa, X, n, cols, xbuf));
    for (int p = 0; p < 3; p++) ttq_gemm_x_pack(&x, p, 3);
    int64_t mid = r0 + rows / 2;
    size_t wk = ttq_gemm_work_bytes(isa, dt, n, rows - rows / 2, cols);
    ASSERT(posix_memalign(&work, 64, wk ? wk : 64) == 0);
    ASSERT_OK(ttq_gemm_rows_x(&x, dt, wb.w, row_bytes, mid, r1, Y + (mid - r0), ldy, work));
    ASSERT_OK(ttq_gemm_rows_x(&x, dt, wb.w, row_bytes, r0, mid, Y, ldy, work));
    free(xbuf);
    free(work);
  }
  for (int t = 0; t < n; t++)
    for (int64_t r = r0; r < r1; r++) {
      const uint8_t *row = wb.w + (size_t)r * row_bytes;
      double ref = 0, m = 0, sw = 0, sx = 0;
      for (int64_t c = 0; c < cols; c++) {
        double w = wval(dt, row, c), xv = X[(size_t)t * cols + c];
        ref += w * xv, m += fabs(w * xv), sw += fabs(w), sx += fabs(xv);
      }
      double p = ldexp(1, dt == TTQ_F16 ? -15 : -16);
      double bound = (p + (double)(3 * cols + 2) * ldexp(1, -24)) * m +
                     ldexp(1, -120) * (sw + sx + (double)cols);
      double y = Y[(size_t)t * ldy + (r - r0)], err = fabs(y - ref);
      ASSERTF(err <= bound, "%s %s rows [%lld,%lld) cols %lld n %d: Y[%d][%lld] = %.9g, reference "
              "%.9g, error %.3g > bound %.3g", ttq_gemm_name(isa), ttq_dtype_name(dt),
              (long long)r0, (long long)r1, (long long)cols, n, t, (long long)r, y, ref, err,
              bound);
      if (m > 0 && err / m > st->max_rel) st->max_rel = err / m;
      if (err / bound > st->max_bound) st->max_bound = err / bound;
    }
  for (int t = 0; t < n; t++)
    for (int64_t j = rows; j < ldy; j++) ASSERT(Y[(size_t)t * ldy + j] == -12345.0f);
  munmap(wb.map, wb.map_len);
  free(X), free(Y), free(scratch);
  return 0;
}

TEST_IMPL(gemm_matches_reference) {
  const char *names[] = {"sgemm", "avx512bf16", "amx"};
  const ttq_dtype dts[] = {TTQ_BF16, TTQ_F16, TTQ_F32, TTQ_Q8_0};
  /* rows [r0, r1), cols, n: odd sizes, partial tiles in every dimension */
  const struct { int64_t r0, r1, cols; int n; } cases[] = {
      {0, 1, 1, 1},     {0, 5, 3, 4},      {3, 40, 31, 5},     {0, 32, 32, 16},
      {1, 34, 33, 17},  {7, 77, 64, 9},    {0, 48, 100, 13},   {5, 70, 257, 33},
      {0, 64, 96, 32},  {2, 19, 2048, 6},  {0, 96, 512, 48},   {16, 60, 1000, 2},
      {5, 165, 2112, 40}, {0, 150, 2100, 35}, /* row groups, several K chunks, token pairs */
  };
  int tested = 0;
  for (int v = 0; v < 3; v++) {
    int isa = ttq_gemm_select(names[v]);
    if (isa < 0) {
      fprintf(stderr, "note: gemm variant %s not supported here (%s), not tested\n", names[v],
              ttq_strerror(isa));
      continue;
    }
    tested++;
    for (size_t d = 0; d < sizeof dts / sizeof *dts; d++) {
      stats st = {0, 0}, small = {0, 0};
      uint64_t rng = 1234 + d;
      for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        if (dts[d] == TTQ_Q8_0 && cases[k].cols % 32) continue;
        int pad = (int)(k % 3) * (dts[d] == TTQ_F32 ? 4 : 2); /* longer row stride, sometimes */
        stats *s = cases[k].cols <= 100 ? &small : &st;
        int rc = check_case((ttq_gemm_isa)isa, dts[d], cases[k].r0, cases[k].r1, cases[k].cols,
                            cases[k].n, pad, k % 2 == 1, &rng, s);
        if (rc) return rc;
      }
      fprintf(stderr, "note: %-10s %-4s max |err|/sum|wx|: cols <= 100 %.3g, cols > 100 %.3g "
              "(max err/bound %.3g)\n", names[v], ttq_dtype_name(dts[d]), small.max_rel,
              st.max_rel, small.max_bound > st.max_bound ? small.max_bound : st.max_bound);
    }
  }
  ASSERT(tested >= 1);
  return 0;
}

TEST_IMPL(gemm_api_contract) {
  ASSERT(ttq_gemm_select("no-such") == TTQ_EINVAL);
  ASSERT(ttq_gemm_select("sgemm") == TTQ_GEMM_SGEMM);
  int best = ttq_gemm_select("best");
  ASSERT(best == TTQ_GEMM_SGEMM || best == TTQ_GEMM_AMX);
  ASSERT(ttq_gemm_select(NULL) == best);
  setenv("TTQ_GEMM", "sgemm", 1);
  ASSERT(ttq_gemm_select(NULL) == TTQ_GEMM_SGEMM);
  setenv("TTQ_GEMM", "no-such", 1);
  ASSERT(ttq_gemm_select(NULL) == best);
  unsetenv("TTQ_GEMM");
  ASSERT(!strcmp(ttq_gemm_name(TTQ_GEMM_AMX), "amx"));
  ASSERT(ttq_gemm_x_bytes(TTQ_GEMM_SGEMM, 7, 100) == 0);
  ASSERT(ttq_gemm_x_bytes(TTQ_GEMM_AMX, 17, 33) == 32 * 64 * 4);
  /* bad arguments: refused, Y untouched */
  float X[4 * 32], Y[4 * 8];
  uint16_t W[8 * 32];
  memset(W, 0, sizeof W);
  for (int i = 0; i < 4 * 32; i++) X[i] = 1;
  for (int i = 0; i < 4 * 8; i++) Y[i] = 7;
  static float scratch[8 * 32 * 4 + 1024] __attribute__((aligned(64)));
  const ttq_gemm_isa S = TTQ_GEMM_SGEMM;
  ASSERT(ttq_gemm_rows(S, TTQ_BF16, W, 64, 0, 8, 32, X, 4, Y, 7, scratch) == TTQ_EINVAL); /* ldy */
  ASSERT(ttq_gemm_rows(S, TTQ_BF16, W, 64, 5, 4, 32, X, 4, Y, 8, scratch) == TTQ_EINVAL); /* r1 */
  ASSERT(ttq_gemm_rows(S, TTQ_BF16, W, 62, 0, 8, 32, X, 4, Y, 8, scratch) == TTQ_EINVAL); /* row */
  ASSERT(ttq_gemm_rows(S, TTQ_DTYPE_COUNT, W, 64, 0, 8, 32, X, 4, Y, 8, scratch) ==
         TTQ_EUNSUPPORTED);
  ASSERT(ttq_gemm_rows(S, TTQ_BF16, W, 64, 0, 8, 32, X, 0, Y, 8, scratch) == TTQ_EINVAL); /* n */
  for (int i = 0; i < 4 * 8; i++) ASSERT(Y[i] == 7);
  ttq_gemm_x x;
  int amx = ttq_gemm_select("amx"), bf = ttq_gemm_select("avx512bf16");
  if (amx < 0) ASSERT(ttq_gemm_x_init(&x, TTQ_GEMM_AMX, X, 4, 32, scratch) == TTQ_EINVAL);
  if (bf < 0) ASSERT(ttq_gemm_x_init(&x, TTQ_GEMM_AVX512BF16, X, 4, 32, scratch) == TTQ_EINVAL);
  if (amx >= 0) /* misaligned packing buffer */
    ASSERT(ttq_gemm_x_init(&x, TTQ_GEMM_AMX, X, 4, 32, (char *)scratch + 4) == TTQ_EINVAL);
  /* an empty row range is a no-op */
  ASSERT_OK(ttq_gemm_rows(S, TTQ_BF16, W, 64, 3, 3, 32, X, 4, Y, 0, scratch));
  for (int i = 0; i < 4 * 8; i++) ASSERT(Y[i] == 7);
  return 0;
}
