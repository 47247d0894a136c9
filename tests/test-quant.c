/* test-quant.c -- the quantizer (quant.h) against a naive implementation written here straight
 * from the formulas, bit for bit, for every variant (TTQ_ISA selects the quantizer's variant);
 * the packed layout; the products of every ISA variant and activation mode (TTQ_QACT) against a
 * double-precision product of the dequantized matrix, and the AVX-512 integer modes with and
 * without GFNI (TTQ_GFNI=0) against each other, bit for bit; error bounds; refused settings.
 *
 * The naive quantizer follows quant.h plus the cases quant.c decides (see its header): the
 * minimum is normalized with lo + 0 (so -0 is +0), an fp16 d of 0 falls back to the
 * constant-group rule, then to 1, and a zero point outside the int8 range widens the range to
 * include 0 (it then fits; B if it still does not, for NaN). */
#include <stdint.h>

#include "kernels.h"
#include "model.h"
#include "quant.h"
#include "test.h"
#include "util.h"

static const int all_bits[] = {2, 3, 4, 5, 8};
static const char *isas[] = {"scalar", "avx2", "avx512"};

/* ---- helpers ---- */

/* Sets TTQ_ISA (quantizer variant) and TTQ_QACT; NULL unsets. */
static void set_env(const char *name, const char *v) {
  if (v) setenv(name, v, 1);
  else unsetenv(name);
}

static float elem_naive(ttq_dtype t, const void *row, int64_t c) {
  if (t == TTQ_F32) return ((const float *)row)[c];
  if (t == TTQ_F16) return ttq__f16_to_f32(((const uint16_t *)row)[c]);
  if (t == TTQ_BF16) return ttq__bf16_to_f32(((const uint16_t *)row)[c]);
  const uint8_t *b = (const uint8_t *)row + c / 32 * 34; /* Q8_0 */
  uint16_t s = (uint16_t)(b[0] | b[1] << 8);
  return ttq__f16_to_f32(s) * (float)(int8_t)b[2 + c % 32];
}

typedef struct naive_q {
  uint8_t *q;     /* rows x cols codes, unpacked */
  uint8_t *packed;
  uint16_t *d;
  int8_t *z;
} naive_q;

/* The quantizer of quant.h, element by element. */
static void naive_quantize(ttq_dtype t, const void *W, const float *D, int64_t rows, int64_t cols,
                           int bits, int G, naive_q *o) {
  const float L = (float)((1 << bits) - 1);
  const size_t rb = ttq_dtype_bytes(t, cols), bb = 4 * (size_t)bits;
  const int64_t ng = cols / G;
  o->q = malloc((size_t)(rows * cols));
  o->packed = calloc((size_t)(rows * cols / 32) * bb, 1);
  o->d = malloc((size_t)(rows * ng) * 2);
  o->z = malloc((size_t)(rows * ng));
  for (int64_t r = 0; r < rows; r++) {
    const void *row = (const uint8_t *)W + r * rb;
    for (int64_t g = 0; g < ng; g++) {
      float wt[1024] = {0};
      for (int i = 0; i < G; i++) {
        float w = elem_naive(t, row, g * G + i);
        wt[i] = D ? w * D[g * G + i] : w;
      }
      float lo = wt[0], hi = wt[0];
      for (int i = 1; i < G; i++) {
        if (wt[i] < lo) lo = wt[i];
        if (wt[i] > hi) hi = wt[i];
      }
      lo = lo + 0.0f;
      const int B = 1 << (bits - 1);
      uint16_t dh = 0;
      float d = 0, zero = 0;
      for (int pass = 0; pass < 2; pass++) { /* the second with the range widened to 0 */
        if (pass == 1) {
          lo = lo < 0 ? lo : 0;
          hi = hi > 0 ? hi : 0;
        }
        float dd = hi == lo ? fabsf(lo) / L : (hi - lo) / L;
        dh = ttq__f32_to_f16(dd);
        d = ttq__f16_to_f32(dh);
        if (d == 0 && hi != lo) {
          dh = ttq__f32_to_f16(fabsf(lo) / L);
          d = ttq__f16_to_f32(dh);
        }
        if (d == 0) dh = 0x3c00, d = 1;
        zero = roundf(-lo / d);
        if (zero >= B - 128 && zero <= B + 127) break;
        if (pass == 1) zero = (float)B;
      }
      o->d[r * ng + g] = dh;
      o->z[r * ng + g] = (int8_t)((int)zero - B);
      for (int i = 0; i < G; i++) {
        float v = nearbyintf(wt[i] * (1.0f / d)) + zero;
        if (!(v > 0)) v = 0;
        if (v > L) v = L;
        int64_t c = g * G + i;
        unsigned q = (unsigned)v, j = (unsigned)(c % 32);
        o->q[r * cols + c] = (uint8_t)q;
        uint8_t *b = o->packed + (size_t)(r * cols / 32 + c / 32) * bb;
        /* quant.h layout, written per element */
        if (bits == 8) b[j] = (uint8_t)q;
        if (bits == 4 || bits == 5) b[j % 16] |= (uint8_t)((q & 15) << (4 * (j / 16)));
        if (bits == 2 || bits == 3) b[j % 8] |= (uint8_t)((q & 3) << (2 * (j / 8)));
        if (bits == 5) b[16 + j / 8] |= (uint8_t)((q >> 4 & 1) << (j % 8));
        if (bits == 3) b[8 + j / 8] |= (uint8_t)((q >> 2 & 1) << (j % 8));
      }
    }
  }
}

static void naive_free(naive_q *o) { free(o->q), free(o->packed), free(o->d), free(o->z); }

/* Fills a rows x cols f32 matrix with group-wise edge cases (kind chosen per group of `G`);
 * `bits` tunes the tie groups so that d is exactly 0.25 there. */
static void fill_weights(float *W, int64_t rows, int64_t cols, int G, int bits, uint64_t *rng) {
  const float L = (float)((1 << bits) - 1);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t g = 0; g < cols / G; g++) {
      int kind = (int)((r * 7 + g) % 11);
      float c = test_rand_f32(rng);
      for (int i = 0; i < G; i++) {
        float u = test_rand_f32(rng), v;
        switch (kind) {
        case 0: v = u; break;                                     /* uniform [-1, 1) */
        case 1: v = c; break;                                     /* constant */
        case 2: v = (i & 1) ? -0.0f : 0.0f; break;                /* all zero, both signs */
        case 3: v = i == G / 3 ? 300.0f * c : 0.02f * u; break;   /* huge outlier */
        case 4: v = -fabsf(u) - 0.01f; break;                     /* negative only */
        case 5: v = fabsf(u) * 0.1f + 1e-3f; break;               /* positive only */
        case 6: v = 3e-6f * u; break;                             /* fp16-subnormal d */
        case 7: v = 10.0f + 0.01f * u; break;                     /* far from zero, narrow */
        case 8: v = i == 0 ? 1e-9f : 0; break;                    /* d underflows fp16 */
        case 9: v = (float)((int)(u * 8)) * 0.25f; break;         /* on a coarse grid */
        default: {                                                 /* d = 0.25: w/d at and */
          float h = 0.125f * (float)(test_rand_u64(rng) % (uint64_t)(2 * L + 1)); /* next to */
          int e = (int)(test_rand_u64(rng) % 3);                   /* half-integers, incl. */
          v = i == 0 ? 0 : i == 1 ? 0.25f * L : i == 2 ? nextafterf(0.125f, 0) /* 0.49999997 */
            : e == 0 ? h : e == 1 ? nextafterf(h, 0) : nextafterf(h, 1);
          break;
        }
        }
        W[r * cols + g * G + i] = v;
      }
    }
}

/* Converts f32 rows to dtype t (Q8_0: per-32 absmax quantization). Caller frees. */
static void *to_dtype(ttq_dtype t, const float *W, int64_t n) {
  if (t == TTQ_F32) {
    float *o = malloc((size_t)n * 4);
    memcpy(o, W, (size_t)n * 4);
    return o;
  }
  if (t == TTQ_Q8_0) {
    uint8_t *o = malloc((size_t)n / 32 * 34);
    for (int64_t b = 0; b < n / 32; b++) {
      float amax = 0;
      for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(W[b * 32 + j]));
      uint16_t s = ttq__f32_to_f16(amax / 127);
      float sf = ttq__f16_to_f32(s);
      o[b * 34] = (uint8_t)s, o[b * 34 + 1] = (uint8_t)(s >> 8);
      for (int j = 0; j < 32; j++) {
        float v = sf > 0 ? roundf(W[b * 32 + j] / sf) : 0;
        v = v > 127 ? 127 : v < -127 ? -127 : v;
        o[b * 34 + 2 + j] = (uint8_t)(int8_t)v;
      }
    }
    return o;
  }
  uint16_t *o = malloc((size_t)n * 2);
  for (int64_t i = 0; i < n; i++) o[i] = t == TTQ_F16 ? ttq__f32_to_f16(W[i]) : ttq__f32_to_bf16(W[i]);
  return o;
}

/* Quantizes with the library (rows split in two calls) and compares with the naive one. */
static int compare_quant(const char *what, ttq_dtype t, const void *W, const float *D, int64_t rows,
                         int64_t cols, int bits, int G) {
  ttq_qmatrix q;
  ASSERT_OK(ttq_qmatrix_alloc(&q, rows, cols, bits, G, NULL));
  int64_t mid = rows / 2;
  ttq_quantize_rows(&q, t, W, D, 0, mid);
  ttq_quantize_rows(&q, t, W, D, mid, rows);
  naive_q n;
  naive_quantize(t, W, D, rows, cols, bits, G, &n);
  const int64_t ng = cols / G;
  for (int64_t i = 0; i < rows * ng; i++) {
    ASSERTF(q.d[i] == n.d[i] && q.z[i] == n.z[i],
            "%s %s bits=%d group=%d D=%s row %lld group %lld: d %04x/%04x z %d/%d", what,
            ttq_dtype_name(t), bits, G, D ? "yes" : "no", (long long)(i / ng), (long long)(i % ng),
            q.d[i], n.d[i], q.z[i], n.z[i]);
  }
  size_t cb = (size_t)(rows * cols / 32) * 4 * (size_t)bits;
  for (size_t i = 0; i < cb; i++)
    ASSERTF(q.codes[i] == n.packed[i], "%s %s bits=%d group=%d D=%s: code byte %zu: %02x != %02x",
            what, ttq_dtype_name(t), bits, G, D ? "yes" : "no", i, q.codes[i], n.packed[i]);
  ASSERT(ttq_qmatrix_bytes(&q) == cb + (size_t)(rows * ng) * 3);
  naive_free(&n);
  ttq_qmatrix_free(&q);
  return 0;
}

static const char *saved_isa(void) {
  static char buf[64];
  const char *e = getenv("TTQ_ISA");
  if (!e) return NULL;
  snprintf(buf, sizeof buf, "%s", e);
  return buf;
}

/* ---- tests ---- */

TEST_IMPL(quant_matches_naive) {
  const int groups[] = {8, 16, 24, 32, 48, 64, 96, 128, 256, 1024};
  const ttq_dtype types[] = {TTQ_F32, TTQ_F16, TTQ_BF16, TTQ_Q8_0};
  const int64_t rows = 5, cols = 3072;
  const char *isa0 = saved_isa();
  uint64_t rng = 7;
  float *Wf = malloc((size_t)(rows * cols) * 4), *D = malloc((size_t)cols * 4);
  for (int64_t c = 0; c < cols; c++) D[c] = 0.05f + 4 * fabsf(test_rand_f32(&rng));
  int tested = 0;
  for (int k = 0; k < 3; k++) {
    if (!ttq_kernels_select(isas[k])) {
      fprintf(stderr, "note: %s not supported on this CPU, its quantizer not tested\n", isas[k]);
      continue;
    }
    set_env("TTQ_ISA", isas[k]);
    tested++;
    for (size_t gi = 0; gi < sizeof groups / sizeof *groups; gi++)
      for (int bi = 0; bi < 5; bi++) {
        fill_weights(Wf, rows, cols, groups[gi], all_bits[bi], &rng);
        for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
          void *W = to_dtype(types[ti], Wf, rows * cols);
          for (int withD = 0; withD < 2; withD++)
            if (compare_quant(isas[k], types[ti], W, withD ? D : NULL, rows, cols, all_bits[bi], groups[gi])) {
              set_env("TTQ_ISA", isa0);
              return 1;
            }
          free(W);
        }
      }
  }
  ASSERT(tested >= 1);

  /* real weights: layers of the bundled model, every variant, with and without D */
  char *path = test_src_path("models/tinyqwen3-mix");
  ttq_model *m = NULL;
  ttq_diag dg;
  int rc = ttq_model_load(path, &m, &dg);
  free(path);
  ASSERTF(rc == 0, "%s", dg.msg);
  const ttq_tensor *ts[] = {&m->layers[0].w_gate, &m->layers[1].w_down, &m->layers[2].wq};
  for (int k = 0; k < 3; k++) {
    if (!ttq_kernels_select(isas[k])) continue;
    set_env("TTQ_ISA", isas[k]);
    for (int ti = 0; ti < 3; ti++) {
      const ttq_tensor *t = ts[ti];
      float *Dr = malloc((size_t)t->shape[1] * 4);
      for (int64_t c = 0; c < t->shape[1]; c++) Dr[c] = 0.2f + 2 * fabsf(test_rand_f32(&rng));
      for (int bi = 0; bi < 5; bi++)
        for (int G = 32; G <= 128; G *= 4)
          for (int withD = 0; withD < 2; withD++)
            if (compare_quant(t->name, t->dtype, t->data, withD ? Dr : NULL, t->shape[0], t->shape[1], all_bits[bi], G)) {
              set_env("TTQ_ISA", isa0);
              return 1;
            }
      free(Dr);
    }
  }
  set_env("TTQ_ISA", isa0);
  ttq_model_free(m);
  free(Wf), free(D);
  return 0;
}

TEST_IMPL(quant_pack_layout) {
  const int groups[] = {8, 16, 32, 48, 128};
  const int64_t rows = 4, cols = 768;
  uint64_t rng = 11;
  float *W = malloc((size_t)(rows * cols) * 4), *out = malloc((size_t)cols * 4);
  for (size_t gi = 0; gi < sizeof groups / sizeof *groups; gi++) {
    for (int bi = 0; bi < 5; bi++) {
      fill_weights(W, rows, cols, groups[gi], all_bits[bi], &rng);
      int bits = all_bits[bi], G = groups[gi];
      ttq_qmatrix q;
      ASSERT_OK(ttq_qmatrix_alloc(&q, rows, cols, bits, G, NULL));
      ttq_quantize_rows_f32(&q, W, NULL, 0, rows);
      naive_q n;
      naive_quantize(TTQ_F32, W, NULL, rows, cols, bits, G, &n);
      for (int64_t r = 0; r < rows; r++) {
        ttq_qmatrix_dequant_row(&q, r, out);
        for (int64_t c = 0; c < cols; c++) {
          int64_t g = r * (cols / G) + c / G;
          /* (q - zero) d in double: exact, so the f32 result must equal it */
          double e = ((double)n.q[r * cols + c] - (n.z[g] + (1 << (bits - 1)))) * ttq__f16_to_f32(n.d[g]);
          ASSERTF(out[c] == e, "bits=%d group=%d r=%lld c=%lld: %g != %g", bits, G, (long long)r,
                  (long long)c, out[c], e);
        }
      }
      naive_free(&n);
      ttq_qmatrix_free(&q);
    }
  }
  free(W), free(out);
  return 0;
}

/* Checks one product result y against the double-precision product of the dequantized row.
 * Tolerance 1e-5 of sum (|w'| + |m|) |x| (the kernels compute sum d (sum q x) + m S: the terms
 * are |q d| <= |w'| + |m| and |m|); with quantized activations (Q = 127 int8, 32767 int16)
 * plus their bound sum_i (|w'_i| + |m|) s_b / 2, s_b = max|x_b| / Q (0.51 covers the rounding
 * of x * (Q / max)). */
static int check_row(const float *wd, const ttq_qmatrix *q, int64_t r, const float *x, float y,
                     float Q, const char *what) {
  const int64_t cols = q->cols, ng = cols / q->group;
  double ref = 0, mag = 0, ib = 0;
  for (int64_t c = 0; c < cols; c++) {
    ref += (double)wd[c] * x[c];
    int64_t g = r * ng + c / q->group;
    float mg = -(float)(q->z[g] + (1 << (q->bits - 1))) * ttq__f16_to_f32(q->d[g]);
    mag += (fabs((double)wd[c]) + fabs((double)mg)) * fabs((double)x[c]);
    if (Q > 0) {
      float amax = 0;
      for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[c / 32 * 32 + j]));
      ib += (fabs((double)wd[c]) + fabs((double)mg)) * amax / Q * 0.51;
    }
  }
  double tol = 1e-5 * mag + 1e-6 + ib;
  ASSERTF(fabs(y - ref) <= tol, "%s row %lld: %.9g vs %.9g (tol %.3g)", what, (long long)r, y, ref, tol);
  return 0;
}

TEST_IMPL(quant_kernels_match_reference) {
  struct { int64_t rows, cols; int G; } shapes[] = {
      {37, 768, 32}, {37, 768, 64}, {37, 768, 128}, {37, 768, 256}, {37, 768, 8}, {37, 768, 16},
      {37, 768, 96}, {37, 768, 48}, {21, 160, 32}, {21, 160, 160}, {21, 96, 32}, {21, 224, 32},
      {19, 2048, 1024}};
  const char *modes[] = {"f32", "int8", "int16"};
  const float modeQ[] = {0, 127, 32767};
  uint64_t rng = 99;
  int tested = 0;
  for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
    const int64_t rows = shapes[si].rows, cols = shapes[si].cols, r0 = 3, r1 = rows - 2;
    const int G = shapes[si].G, nmax = 9;
    const int64_t ldy = rows + 5;
    float *W = malloc((size_t)(rows * cols) * 4), *wd = malloc((size_t)(rows * cols) * 4);
    float *X = malloc((size_t)(nmax * cols) * 4), *Y = malloc((size_t)(nmax * ldy) * 4);
    for (int64_t i = 0; i < rows * cols; i++) W[i] = test_rand_f32(&rng) * (i % 7 == 0 ? 3.0f : 0.5f);
    for (int64_t i = 0; i < nmax * cols; i++) X[i] = test_rand_f32(&rng) * (i % 5 == 0 ? 4.0f : 1.0f);
    for (int bi = 0; bi < 5; bi++) {
      ttq_qmatrix q;
      ASSERT_OK(ttq_qmatrix_alloc(&q, rows, cols, all_bits[bi], G, NULL));
      ttq_quantize_rows_f32(&q, W, NULL, 0, rows);
      for (int64_t r = 0; r < rows; r++) ttq_qmatrix_dequant_row(&q, r, wd + r * cols);
      for (int k = 0; k < 3; k++) {
        const ttq_kernels *K = ttq_kernels_select(isas[k]);
        if (!K) {
          if (si == 0 && bi == 0) fprintf(stderr, "note: %s kernels not supported on this CPU, not tested\n", isas[k]);
          continue;
        }
        for (int mo = 0; mo < 3; mo++) {
          /* the quantized-activation modes exist only in the AVX-512 kernels */
          float Q = !strcmp(K->name, "avx512") && G % 32 == 0 ? modeQ[mo] : 0;
          if (mo > 0 && strcmp(K->name, "avx512")) continue;
          set_env("TTQ_QACT", modes[mo]);
          char what[128];
          snprintf(what, sizeof what, "%s/%s bits=%d %lldx%lld group=%d", K->name, modes[mo],
                   all_bits[bi], (long long)rows, (long long)cols, G);
          /* matvec over an odd row range; rows outside untouched */
          for (int64_t r = 0; r < ldy; r++) Y[r] = NAN;
          ttq_qmatvec(K, &q, X, Y, r0, r1);
          for (int64_t r = 0; r < rows; r++) {
            if (r < r0 || r >= r1) {
              ASSERTF(isnan(Y[r]), "%s: matvec wrote row %lld", what, (long long)r);
              continue;
            }
            if (check_row(wd + r * cols, &q, r, X, Y[r], Q, what)) return 1;
          }
          /* the generic bit-field extraction gives the GFNI one's integer dots: bit for bit */
          if (mo > 0) {
            float *Yg = malloc((size_t)ldy * 4);
            for (int64_t r = 0; r < ldy; r++) Yg[r] = NAN;
            set_env("TTQ_GFNI", "0");
            ttq_qmatvec(K, &q, X, Yg, r0, r1);
            set_env("TTQ_GFNI", NULL);
            for (int64_t r = r0; r < r1; r++)
              ASSERTF(Yg[r] == Y[r], "%s: row %lld without GFNI %g, with %g", what, (long long)r, Yg[r], Y[r]);
            free(Yg);
          }
          /* a prepared activation gives ttq_qmatvec's results bit for bit, over row ranges
           * split as threads split them */
          {
            void *buf = aligned_alloc(64, (ttq_qact_bytes(cols) + 63) / 64 * 64);
            float *Yp = malloc((size_t)ldy * 4);
            ttq_qact a;
            ttq_qact_prepare(K, &q, X, buf, &a);
            for (int64_t r = 0; r < ldy; r++) Yp[r] = NAN;
            ttq_qmatvec_qact(K, &q, &a, Yp, r0, r0 + 5);
            ttq_qmatvec_qact(K, &q, &a, Yp, r0 + 5, r1);
            for (int64_t r = 0; r < ldy; r++)
              ASSERTF(isnan(Y[r]) ? isnan(Yp[r]) : Yp[r] == Y[r], "%s: prepared row %lld: %g vs %g",
                      what, (long long)r, Yp[r], Y[r]);
            free(Yp);
            free(buf);
          }
          /* matmul, n = 1..9 tokens, ldy != rows */
          for (int n = 1; n <= nmax; n++) {
            for (int64_t i = 0; i < nmax * ldy; i++) Y[i] = NAN;
            ttq_qmatmul(K, &q, X, n, Y, ldy, r0, r1);
            for (int t = 0; t < nmax; t++)
              for (int64_t r = 0; r < ldy; r++) {
                float v = Y[t * ldy + r];
                if (t >= n || r < r0 || r >= r1) {
                  ASSERTF(isnan(v), "%s: matmul n=%d wrote t=%d row %lld", what, n, t, (long long)r);
                  continue;
                }
                char w2[160];
                snprintf(w2, sizeof w2, "%s matmul n=%d t=%d", what, n, t);
                if (check_row(wd + r * cols, &q, r, X + t * cols, v, Q, w2)) return 1;
              }
          }
          tested++;
        }
      }
      ttq_qmatrix_free(&q);
    }
    free(W), free(wd), free(X), free(Y);
  }
  set_env("TTQ_QACT", NULL);
  ASSERT(tested >= 1);
  return 0;
}

TEST_IMPL(quant_error_bounds) {
  const int64_t rows = 16, cols = 1024;
  uint64_t rng = 5;
  float *W = malloc((size_t)(rows * cols) * 4), *D = malloc((size_t)cols * 4);
  float *wd = malloc((size_t)cols * 4), *x = malloc((size_t)cols * 4);
  for (int64_t i = 0; i < rows * cols; i++) W[i] = test_rand_f32(&rng) * (i % 11 == 0 ? 2.0f : 0.3f);
  for (int64_t c = 0; c < cols; c++) D[c] = 0.1f + 3 * fabsf(test_rand_f32(&rng)), x[c] = test_rand_f32(&rng);
  for (int bi = 0; bi < 5; bi++)
    for (int G = 32; G <= 256; G *= 2) {
      const int bits = all_bits[bi];
      const double L = (1 << bits) - 1;
      ttq_qmatrix q;
      ASSERT_OK(ttq_qmatrix_alloc(&q, rows, cols, bits, G, NULL));
      ttq_quantize_rows_f32(&q, W, D, 0, rows);
      double err2 = 0, pred2 = 0;
      for (int64_t r = 0; r < rows; r++) {
        ttq_qmatrix_dequant_row(&q, r, wd);
        double y = 0, yq = 0, bound = 0;
        for (int64_t c = 0; c < cols; c++) {
          int64_t g = r * (cols / G) + c / G;
          double wt = (double)(W[r * cols + c] * D[c]), d = ttq__f16_to_f32(q.d[g]);
          /* d/2, plus the top code's possible clamp (d is fp16-rounded: the range can be
           * L (1 + 2^-11) steps) */
          double eb = d * (0.5 + L / 2048.0) + 1e-7 * fabs(wt);
          ASSERTF(fabs(wd[c] - wt) <= eb, "bits=%d group=%d r=%lld c=%lld: |%g - %g| > %g", bits, G,
                  (long long)r, (long long)c, wd[c], wt, eb);
          y += wt * x[c], yq += (double)wd[c] * x[c], bound += eb * fabs(x[c]);
          pred2 += d * d / 12 * x[c] * x[c]; /* rounding error ~ uniform in [-d/2, d/2] */
        }
        ASSERT(fabs(yq - y) <= bound);
        err2 += (yq - y) * (yq - y);
      }
      /* the product error is what round-to-nearest predicts (no systematic bias): rms within
       * 1.3x of sqrt(sum d^2/12 x^2) */
      ASSERTF(sqrt(err2) <= 1.3 * sqrt(pred2), "bits=%d group %d: rms product error %g, predicted %g",
              bits, G, sqrt(err2), sqrt(pred2));
      ttq_qmatrix_free(&q);
    }
  free(W), free(D), free(wd), free(x);
  return 0;
}

TEST_IMPL(quant_check_refuses) {
  ttq_diag d;
  const int bad_bits[] = {1, 6, 7, 9};
  for (int i = 0; i < 4; i++) {
    char v[16];
    snprintf(v, sizeof v, "%d", bad_bits[i]);
    ASSERT(ttq_quant_check(256, bad_bits[i], 32, &d) == TTQ_EINVAL);
    ASSERTF(strstr(d.msg, "bits") && strstr(d.msg, v), "%s", d.msg);
  }
  struct { int64_t cols; int group; const char *word, *val; } bad[] = {
      {256, 4, "group", "4"}, {4096, 2048, "group", "2048"}, {256, 96, "group", "96"},
      {100, 4, "group", "4"}, {100, 25, "cols", "100"}, {48, 16, "cols", "48"}};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    ASSERT(ttq_quant_check(bad[i].cols, 4, bad[i].group, &d) == TTQ_EINVAL);
    ASSERTF(strstr(d.msg, bad[i].word) && strstr(d.msg, bad[i].val), "%s", d.msg);
  }
  for (int b = 2; b <= 8; b++)
    ASSERT(ttq_quant_check(256, b, 32, NULL) == ((b == 6 || b == 7) ? TTQ_EINVAL : 0));
  ASSERT(ttq_quant_check(3072, 4, 1024, NULL) == 0);
  ASSERT(ttq_quant_check(96, 4, 8, NULL) == 0);
  ttq_qmatrix q;
  ASSERT(ttq_qmatrix_alloc(&q, 4, 256, 6, 32, &d) == TTQ_EINVAL && strstr(d.msg, "bits"));
  ASSERT(q.codes == NULL);
  ASSERT_OK(ttq_qmatrix_alloc(&q, 3, 256, 3, 32, NULL));
  ASSERT(((uintptr_t)q.codes % 64) == 0 && ((uintptr_t)q.d % 64) == 0 && ((uintptr_t)q.z % 64) == 0);
  ttq_qmatrix_free(&q);
  ttq_qmatrix_free(&q); /* idempotent */
  return 0;
}

/* The AVX-512 quantizer multiplies by 1/d and takes the reference division only for values
 * within |y| 2^-21 of a half-integer: weights placed at and a few ulps around (k + 1/2) d for
 * d that are not powers of two (so w * (1/d) and w / d round differently), with and without
 * a D, and with offsets far from zero (large zero points), must still match bit for bit. */
TEST_IMPL(quant_near_ties_exact) {
  const int64_t rows = 6, cols = 2048;
  const char *isa0 = saved_isa();
  uint64_t rng = 99;
  float *Wf = malloc((size_t)(rows * cols) * 4), *D = malloc((size_t)cols * 4);
  for (int64_t c = 0; c < cols; c++) D[c] = 1.0f + (float)(c % 5) * 0.25f; /* exact products */
  for (int bi = 0; bi < 5; bi++) {
    const int bits = all_bits[bi], L = (1 << bits) - 1;
    for (int G = 32; G <= 128; G *= 2) {
      for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < cols / G; g++) {
          float d0 = 1e-3f + fabsf(test_rand_f32(&rng)), base = (r % 3 == 2) ? 7.0f * d0 * L : 0;
          float hi = base + (float)L * d0, dq = ttq__f16_to_f32(ttq__f32_to_f16((hi - base) / (float)L));
          float *w = Wf + r * cols + g * G;
          w[0] = base, w[1] = hi;
          for (int i = 2; i < G; i++) {
            float v = base + ((float)(test_rand_u64(&rng) % (uint64_t)L) + 0.5f) * dq;
            for (int u = (int)(test_rand_u64(&rng) % 5) - 2; u != 0; u += u > 0 ? -1 : 1)
              v = nextafterf(v, u > 0 ? INFINITY : -INFINITY);
            w[i] = v < base ? base : v > hi ? hi : v;
          }
        }
      for (int k = 0; k < 3; k++) {
        if (!ttq_kernels_select(isas[k])) continue;
        set_env("TTQ_ISA", isas[k]);
        for (int withD = 0; withD < 2; withD++)
          for (int t = 0; t < 3; t++) {
            const ttq_dtype ty[] = {TTQ_F32, TTQ_F16, TTQ_BF16};
            void *W = to_dtype(ty[t], Wf, rows * cols);
            int rc = compare_quant("near ties", ty[t], W, withD ? D : NULL, rows, cols, bits, G);
            free(W);
            if (rc) {
              set_env("TTQ_ISA", isa0);
              return 1;
            }
          }
      }
    }
  }
  set_env("TTQ_ISA", isa0);
  free(Wf), free(D);
  return 0;
}

/* A matrix placed in caller memory (ttq_qmatrix_place) is the allocated matrix in other
 * storage: the same bytes after the same quantization and the same products; its parts lie in
 * order inside the span, 64-byte aligned; ttq_qmatrix_free leaves the memory to the caller
 * (under ASan a free of it would be reported); invalid shapes and misaligned memory are refused
 * with the reason. */
TEST_IMPL(quant_placed_matches_allocated) {
  const ttq_kernels *K = ttq_kernels_select(NULL);
  uint64_t rng = 77;
  const int64_t rows = 40, cols = 512;
  float *W = malloc((size_t)(rows * cols) * sizeof *W), *x = malloc((size_t)cols * sizeof *x);
  float ya[40], yp[40];
  for (int64_t i = 0; i < rows * cols; i++) W[i] = test_rand_f32(&rng);
  for (int64_t i = 0; i < cols; i++) x[i] = test_rand_f32(&rng);
  for (size_t bi = 0; bi < sizeof all_bits / sizeof *all_bits; bi++) {
    const int bits = all_bits[bi], G = bits == 3 ? 64 : 32;
    ttq_qmatrix qa, qp;
    size_t span;
    ASSERT_OK(ttq_qmatrix_span(rows, cols, bits, G, &span, NULL));
    ASSERT(span >= ttq_qmatrix_bytes_for(rows, cols, bits, G) && span % 64 == 0);
    uint8_t *mem = aligned_alloc(64, span + 64);
    memset(mem + span, 0xa5, 64); /* a guard after the span */
    ASSERT_OK(ttq_qmatrix_alloc(&qa, rows, cols, bits, G, NULL));
    ASSERT_OK(ttq_qmatrix_place(&qp, rows, cols, bits, G, mem, NULL));
    ASSERT(qp.placed && !qa.placed && qp.codes == mem);
    const size_t cb = (size_t)(rows * cols / 8 * bits), db = (size_t)(rows * (cols / G)) * 2;
    ASSERT((uint8_t *)qp.d >= qp.codes + cb && (uint8_t *)qp.z >= (uint8_t *)qp.d + db);
    ASSERT((uint8_t *)qp.z + db / 2 <= mem + span);
    ASSERT((uintptr_t)qp.d % 64 == 0 && (uintptr_t)qp.z % 64 == 0);
    ttq_quantize_rows(&qa, TTQ_F32, W, NULL, 0, rows);
    ttq_quantize_rows(&qp, TTQ_F32, W, NULL, 0, rows);
    ASSERT(memcmp(qa.codes, qp.codes, cb) == 0 && memcmp(qa.d, qp.d, db) == 0 &&
           memcmp(qa.z, qp.z, db / 2) == 0);
    for (int i = 0; i < 64; i++) ASSERTF(mem[span + i] == 0xa5, "bits %d: wrote past the span", bits);
    ttq_qmatvec(K, &qa, x, ya, 0, rows);
    ttq_qmatvec(K, &qp, x, yp, 0, rows);
    ASSERT(memcmp(ya, yp, sizeof ya) == 0);
    ttq_qmatrix_free(&qp);
    ASSERT(qp.codes == NULL && !qp.placed);
    ttq_qmatrix_free(&qa);
    free(mem);
  }
  ttq_diag d;
  ttq_qmatrix q;
  size_t span = 1;
  ASSERT(ttq_qmatrix_span(8, 100, 4, 32, &span, &d) == TTQ_EINVAL && span == 0);
  ASSERTF(strstr(d.msg, "cols") && strstr(d.msg, "100"), "%s", d.msg);
  ASSERT(ttq_qmatrix_span(0, 256, 4, 32, &span, &d) == TTQ_EINVAL && strstr(d.msg, "rows"));
  ASSERT(ttq_qmatrix_span(INT64_MAX / 2, 1024, 8, 32, &span, &d) == TTQ_EINVAL &&
         strstr(d.msg, "too large"));
  uint8_t *mem = aligned_alloc(64, 4096);
  ASSERT(ttq_qmatrix_place(&q, 4, 256, 4, 32, mem + 8, &d) == TTQ_EINVAL && strstr(d.msg, "aligned"));
  ASSERT(ttq_qmatrix_place(&q, 4, 256, 7, 32, mem, &d) == TTQ_EINVAL && strstr(d.msg, "bits"));
  ASSERT(q.codes == NULL);
  free(mem);
  free(W), free(x);
  return 0;
}
