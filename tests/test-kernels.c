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
