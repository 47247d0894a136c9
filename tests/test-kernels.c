/* test-kernels.c -- every kernel variant this CPU runs against a double-precision naive
 * reference; conversions bit-exact against the scalar converters of util.h. */
#include "kernels.h"
#include "test.h"
#include "util.h"

static double ref_dot(ttq_dtype t, const void *w, const float *x, int64_t n, double *mag) {
  double s = 0, m = 0;
  for (int64_t i = 0; i < n; i++) {
    float wi = t == TTQ_F32 ? ((const float *)w)[i]
               : t == TTQ_BF16 ? ttq__bf16_to_f32(((const uint16_t *)w)[i])
                               : ttq__f16_to_f32(((const uint16_t *)w)[i]);
    s += (double)wi * x[i];
    m += fabs((double)wi * x[i]);
  }
  *mag = m;
  return s;
}

TEST_IMPL(kernels_match_reference) {
  const char *isas[] = {"scalar", "avx2", "avx512"};
  uint64_t rng = 42;
  const int64_t N = 1100;
  float *x = malloc(N * 4), *wf = malloc(N * 4), *out = malloc(N * 4);
  uint16_t *wb = malloc(N * 2), *wh = malloc(N * 2);
  for (int64_t i = 0; i < N; i++) {
    x[i] = test_rand_f32(&rng);
    wf[i] = test_rand_f32(&rng) * 3;
    wb[i] = ttq__f32_to_bf16(wf[i]);
    wh[i] = ttq__f32_to_f16(wf[i]);
  }
  int tested = 0;
  for (int k = 0; k < 3; k++) {
    const ttq_kernels *K = ttq_kernels_select(isas[k]);
    if (!K) {
      fprintf(stderr, "note: %s kernels not supported on this CPU, not tested\n", isas[k]);
      continue;
    }
    tested++;
    for (int64_t n = 0; n <= N; n += (n < 70 ? 1 : 97)) {
      double mag, r;
      r = ref_dot(TTQ_F32, wf, x, n, &mag);
      ASSERTF(fabs(K->dot_f32(wf, x, n) - r) <= 1e-6 * mag + 1e-7, "%s f32 n=%lld", K->name, (long long)n);
      r = ref_dot(TTQ_BF16, wb, x, n, &mag);
      ASSERTF(fabs(K->dot_bf16(wb, x, n) - r) <= 1e-6 * mag + 1e-7, "%s bf16 n=%lld", K->name, (long long)n);
      r = ref_dot(TTQ_F16, wh, x, n, &mag);
      ASSERTF(fabs(K->dot_f16(wh, x, n) - r) <= 1e-6 * mag + 1e-7, "%s f16 n=%lld", K->name, (long long)n);
      K->cvt_bf16(wb, out, n);
      for (int64_t i = 0; i < n; i++) ASSERT(out[i] == ttq__bf16_to_f32(wb[i]));
      K->cvt_f16(wh, out, n);
      for (int64_t i = 0; i < n; i++) ASSERT(out[i] == ttq__f16_to_f32(wh[i]));
    }
  }
  ASSERT(tested >= 1);
  ASSERT(ttq_kernels_select("no-such-isa") == NULL);
  free(x), free(wf), free(out), free(wb), free(wh);
  return 0;
}

/* Single-token grouped attention in double precision: the reference for `attend`. The bound
 * used below (6e-6 of sum p|v|) is about 2x the f32 rounding the scalar expf variant shows on
 * these inputs; a wrong exp polynomial term (1/72 for 1/720) measures 1.0e-5 and fails it. Returns, in
 * *mag, sum_j p_j |v_j[i]| maximized over (h, i): the scale of the expected rounding error. */
static void ref_attend(const float *q, int g, const float *K, const float *V, int n, int hd,
                       float scale, double *out, double *mag) {
  double *p = malloc((size_t)n * sizeof *p);
  *mag = 0;
  for (int h = 0; h < g; h++) {
    double mx = -INFINITY, sum = 0;
    for (int j = 0; j < n; j++) {
      double d = 0;
      for (int i = 0; i < hd; i++) d += (double)q[h * hd + i] * K[(size_t)j * hd + i];
      p[j] = d * scale;
      if (p[j] > mx) mx = p[j];
    }
    for (int j = 0; j < n; j++) sum += (p[j] = exp(p[j] - mx));
    for (int i = 0; i < hd; i++) {
      double o = 0, m = 0;
      for (int j = 0; j < n; j++) {
        o += p[j] / sum * V[(size_t)j * hd + i];
        m += p[j] / sum * fabs(V[(size_t)j * hd + i]);
      }
      out[h * hd + i] = o;
      if (m > *mag) *mag = m;
    }
  }
  free(p);
}

TEST_IMPL(kernels_attend_reference) {
  const char *isas[] = {"scalar", "avx2", "avx512"};
  const int gs[] = {1, 3, 4, 5, 8}, ns[] = {1, 2, 15, 16, 17, 33, 300}, hds[] = {8, 24, 64, 80, 128};
  const float temps[] = {0.1f, 1.0f, 8.0f}; /* flat, typical and peaked softmax (underflow) */
  uint64_t rng = 7;
  const int G = 8, N = 300, HD = 128;
  float *q = malloc(G * HD * 4), *K = malloc((size_t)N * HD * 4), *V = malloc((size_t)N * HD * 4);
  float *att = malloc((size_t)G * N * 4), *out = malloc(G * HD * 4);
  double *ref = malloc(G * HD * sizeof *ref);
  for (int i = 0; i < G * HD; i++) q[i] = test_rand_f32(&rng);
  for (int i = 0; i < N * HD; i++) K[i] = test_rand_f32(&rng), V[i] = test_rand_f32(&rng) * 4;
  int tested = 0;
  for (int k = 0; k < 3; k++) {
    const ttq_kernels *Kn = ttq_kernels_select(isas[k]);
    if (!Kn) continue;
    tested++;
    double worst = 0;
    for (size_t a = 0; a < sizeof gs / sizeof *gs; a++)
      for (size_t b = 0; b < sizeof ns / sizeof *ns; b++)
        for (size_t c = 0; c < sizeof hds / sizeof *hds; c++)
          for (size_t t = 0; t < sizeof temps / sizeof *temps; t++) {
            const int g = gs[a], n = ns[b], hd = hds[c];
            const float scale = temps[t] / sqrtf((float)hd) * 4;
            double mag;
            for (int i = 0; i < g * hd; i++) out[i] = NAN;
            Kn->attend(q, g, K, V, n, hd, scale, att, out);
            ref_attend(q, g, K, V, n, hd, scale, ref, &mag);
            for (int i = 0; i < g * hd; i++) {
              if (fabs(out[i] - ref[i]) / mag > worst) worst = fabs(out[i] - ref[i]) / mag;
              ASSERTF(fabs(out[i] - ref[i]) <= 6e-6 * mag + 1e-7, "%s g=%d n=%d hd=%d T=%g i=%d: %g vs %g",
                      Kn->name, g, n, hd, temps[t], i, out[i], ref[i]);
            }
          }
    fprintf(stderr, "%s: worst error %.3g of sum p|v|\n", Kn->name, worst);
    /* property: identical keys give every position the same weight, so out = mean of V */
    for (int j = 1; j < 40; j++) memcpy(K + (size_t)j * 64, K, 64 * 4);
    Kn->attend(q, 2, K, V, 40, 64, 0.125f, att, out);
    for (int i = 0; i < 64; i++) {
      double mean = 0;
      for (int j = 0; j < 40; j++) mean += V[(size_t)j * 64 + i] / 40.0;
      ASSERTF(fabs(out[i] - mean) <= 1e-5 && fabs(out[64 + i] - mean) <= 1e-5, "%s mean", Kn->name);
    }
    for (int i = 0; i < N * HD; i++) K[i] = test_rand_f32(&rng);
  }
  ASSERT(tested >= 1);
  free(q), free(K), free(V), free(att), free(out), free(ref);
  return 0;
}

/* attend_f16 (the f16 KV cache: keys in blocks of 16 positions, kernels.h) of every variant
 * against the double-precision reference on the converted keys and values, with
 * kernels_attend_reference's bound; and the scalar variant gives attend_scalar's bits on them,
 * as kernels.h promises. */
TEST_IMPL(kernels_attend_f16_matches_f32) {
  const char *isas[] = {"scalar", "avx2", "avx512"};
  const int gs[] = {1, 3, 8, 11}, ns[] = {1, 15, 16, 17, 100}, hds[] = {8, 64, 80, 272};
  const int G = 11, N = 112, HD = 272; /* N: whole blocks of 16 */
  uint64_t rng = 11;
  float *q = malloc(G * HD * 4), *K = malloc((size_t)N * HD * 4), *V = malloc((size_t)N * HD * 4);
  uint16_t *Kb = malloc((size_t)N * HD * 2), *Vh = malloc((size_t)N * HD * 2);
  float *att = malloc((size_t)G * N * 4), *a = malloc(G * HD * 4), *b = malloc(G * HD * 4);
  double *ref = malloc(G * HD * sizeof *ref);
  for (int i = 0; i < G * HD; i++) q[i] = test_rand_f32(&rng);
  int tested = 0;
  for (size_t ic = 0; ic < sizeof hds / sizeof *hds; ic++) {
    const int hd = hds[ic];
    for (int j = 0; j < N; j++) /* keys and values for this head size, rounded to f16 */
      for (int i = 0; i < hd; i++) {
        const uint16_t kh = ttq__f32_to_f16(test_rand_f32(&rng)), vh = ttq__f32_to_f16(test_rand_f32(&rng) * 4);
        K[(size_t)j * hd + i] = ttq__f16_to_f32(kh), V[(size_t)j * hd + i] = ttq__f16_to_f32(vh);
        Kb[((size_t)(j / 16) * hd + i) * 16 + j % 16] = kh, Vh[(size_t)j * hd + i] = vh;
      }
    for (int k = 0; k < 3; k++) {
      const ttq_kernels *Kn = ttq_kernels_select(isas[k]);
      if (!Kn) continue;
      tested += ic == 0;
      for (size_t ia = 0; ia < sizeof gs / sizeof *gs; ia++)
        for (size_t ib = 0; ib < sizeof ns / sizeof *ns; ib++) {
          const int g = gs[ia], n = ns[ib];
          const float scale = 2.0f / sqrtf((float)hd);
          double mag;
          for (int i = 0; i < g * hd; i++) a[i] = b[i] = NAN;
          Kn->attend_f16(q, g, Kb, Vh, n, hd, scale, att, b);
          ref_attend(q, g, K, V, n, hd, scale, ref, &mag);
          for (int i = 0; i < g * hd; i++)
            ASSERTF(fabs(b[i] - ref[i]) <= 6e-6 * mag + 1e-7, "%s g=%d n=%d hd=%d i=%d: %g vs %g",
                    Kn->name, g, n, hd, i, b[i], ref[i]);
          if (strcmp(Kn->name, "avx512")) { /* the scalar attend: the same bits */
            Kn->attend(q, g, K, V, n, hd, scale, att, a);
            ASSERTF(memcmp(a, b, (size_t)g * hd * 4) == 0, "%s g=%d n=%d hd=%d: f16 differs",
                    Kn->name, g, n, hd);
          }
        }
    }
  }
  ASSERT(tested >= 1);
  free(q), free(K), free(V), free(Kb), free(Vh), free(att), free(a), free(b), free(ref);
  return 0;
}

/* softmax of every variant against a double-precision softmax: each weight within 2^-20 of the
 * reference relative to it plus 1e-30 (the AVX-512 exp is within 2^-22; the sum adds the rest),
 * for lengths around the vector width, flat, typical and peaked rows (underflow to 0), and a
 * row with one huge entry (all weight on it). */
TEST_IMPL(kernels_softmax_reference) {
  const char *isas[] = {"scalar", "avx2", "avx512"};
  const int ns[] = {1, 2, 15, 16, 17, 31, 64, 100, 513};
  const float temps[] = {0.01f, 1.0f, 30.0f};
  uint64_t rng = 11;
  float x[513], y[513];
  double ref[513];
  int tested = 0;
  for (int k = 0; k < 3; k++) {
    const ttq_kernels *Kn = ttq_kernels_select(isas[k]);
    if (!Kn) continue;
    tested++;
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
      for (size_t t = 0; t < sizeof temps / sizeof *temps; t++) {
        const int n = ns[a];
        for (int j = 0; j < n; j++) x[j] = y[j] = test_rand_f32(&rng) * temps[t];
        if (t == 2 && n > 3) y[n / 2] = x[n / 2] = 1e4f; /* one dominant entry */
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < n; j++) mx = x[j] > mx ? x[j] : mx;
        for (int j = 0; j < n; j++) sum += (ref[j] = exp((double)x[j] - mx));
        Kn->softmax(y, n);
        double total = 0;
        for (int j = 0; j < n; j++) {
          ref[j] /= sum;
          total += y[j];
          ASSERTF(y[j] >= 0 && fabs(y[j] - ref[j]) <= ref[j] * 0x1p-20 + 1e-30,
                  "%s n=%d T=%g j=%d: %.9g vs %.9g", Kn->name, n, temps[t], j, y[j], ref[j]);
        }
        ASSERTF(fabs(total - 1) <= 1e-5, "%s n=%d: weights sum to %.9g", Kn->name, n, total);
      }
  }
  ASSERT(tested >= 1);
  return 0;
}

/* silu_mul of every variant against double precision: within 2^-20 of |result| (+ 1e-35: below
 * x = -88.7, expf(-x) overflows and the scalar form gives 0 for a true value under 1e-36), over
 * arguments from -100 to +100,
 * zero and lengths around the vector width; infinities and NaN behave as the formula does. */
TEST_IMPL(kernels_silu_reference) {
  const char *isas[] = {"scalar", "avx2", "avx512"};
  enum { N = 1000 };
  float a[N + 3], b[N + 3], y[N + 3];
  uint64_t rng = 5;
  for (int i = 0; i < N; i++) {
    a[i] = i < 400 ? (float)(i - 200) * 0.5f : test_rand_f32(&rng) * 8; /* -100..99.5, then +-8 */
    b[i] = test_rand_f32(&rng) * 3;
  }
  a[N] = INFINITY, a[N + 1] = NAN, a[N + 2] = 0, b[N] = b[N + 1] = b[N + 2] = 1;
  int tested = 0;
  for (int k = 0; k < 3; k++) {
    const ttq_kernels *Kn = ttq_kernels_select(isas[k]);
    if (!Kn) continue;
    tested++;
    const int lens[] = {1, 15, 16, 17, N};
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
      memcpy(y, a, sizeof a);
      Kn->silu_mul(y, b, lens[li]);
      for (int i = 0; i < lens[li]; i++) {
        double ref = (double)a[i] / (1 + exp(-(double)a[i])) * b[i];
        ASSERTF(fabs(y[i] - ref) <= fabs(ref) * 0x1p-20 + 1e-35, "%s i=%d x=%g: %.9g vs %.9g",
                Kn->name, i, a[i], y[i], ref);
      }
      ASSERTF(y[lens[li]] == a[lens[li]] || lens[li] == N, "%s wrote past n", Kn->name);
    }
    memcpy(y, a, sizeof a);
    Kn->silu_mul(y + N, b + N, 3);
    ASSERTF(y[N] == INFINITY && isnan(y[N + 1]) && y[N + 2] == 0, "%s: inf %g nan %g 0 %g", Kn->name,
            y[N], y[N + 1], y[N + 2]);
  }
  ASSERT(tested >= 1);
  return 0;
}
