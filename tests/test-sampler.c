/* test-sampler.c -- sampling properties: greedy is argmax; frequencies follow the softmax;
 * top-k and top-p keep only the allowed tokens; a seed reproduces a sequence. */
#include "sampler.h"
#include "test.h"

TEST_IMPL(sampler_properties) {
  enum { V = 8, N = 40000 };
  float logits[V] = {1.0f, 2.0f, 0.5f, -1.0f, 2.0f, 0.0f, 1.5f, -3.0f};
  ttq_sampler s;
  ttq_diag d;
  ttq_sampler_cfg greedy = {0, 0, 1, 7};
  ASSERT_OK(ttq_sampler_init(&s, V, &greedy, &d));
  ASSERT(ttq_sample(&s, logits) == 1); /* lowest index of the two maxima */
  ttq_sampler_free(&s);

  /* temperature 1, no filtering: empirical frequencies within 4 sigma of softmax */
  ttq_sampler_cfg plain = {1.0f, 0, 1.0f, 123};
  ASSERT_OK(ttq_sampler_init(&s, V, &plain, &d));
  int count[V] = {0};
  for (int i = 0; i < N; i++) count[ttq_sample(&s, logits)]++;
  double z = 0, p[V];
  for (int i = 0; i < V; i++) z += exp(logits[i]);
  for (int i = 0; i < V; i++) {
    p[i] = exp(logits[i]) / z;
    double sigma = sqrt(N * p[i] * (1 - p[i]));
    ASSERTF(fabs(count[i] - N * p[i]) <= 4 * sigma + 1, "token %d: %d vs %.1f", i, count[i], N * p[i]);
  }
  ttq_sampler_free(&s);

  /* top-k 3 keeps {1, 4, 6}; top-p 0.5 keeps the smallest prefix with mass >= 0.5: {1, 4} */
  ttq_sampler_cfg topk = {1.0f, 3, 1.0f, 5}, topp = {1.0f, 0, 0.5f, 5};
  ASSERT_OK(ttq_sampler_init(&s, V, &topk, &d));
  for (int i = 0; i < 5000; i++) {
    int t = ttq_sample(&s, logits);
    ASSERTF(t == 1 || t == 4 || t == 6, "top-k sampled %d", t);
  }
  ttq_sampler_free(&s);
  ASSERT(p[1] + p[4] >= 0.5 && p[1] < 0.5);
  ASSERT_OK(ttq_sampler_init(&s, V, &topp, &d));
  for (int i = 0; i < 5000; i++) {
    int t = ttq_sample(&s, logits);
    ASSERTF(t == 1 || t == 4, "top-p sampled %d", t);
  }
  ttq_sampler_free(&s);

  /* same seed, same sequence; another seed, another sequence */
  int a[64], b[64], c[64], same = 1, differ = 0;
  ttq_sampler_cfg s1 = {0.9f, 0, 1.0f, 99}, s2 = {0.9f, 0, 1.0f, 100};
  ttq_sampler x, y, w;
  ASSERT_OK(ttq_sampler_init(&x, V, &s1, &d));
  ASSERT_OK(ttq_sampler_init(&y, V, &s1, &d));
  ASSERT_OK(ttq_sampler_init(&w, V, &s2, &d));
  for (int i = 0; i < 64; i++) {
    a[i] = ttq_sample(&x, logits), b[i] = ttq_sample(&y, logits), c[i] = ttq_sample(&w, logits);
    same &= a[i] == b[i];
    differ |= a[i] != c[i];
  }
  ASSERT(same && differ);
  ttq_sampler_free(&x), ttq_sampler_free(&y), ttq_sampler_free(&w);

  /* invalid settings are refused */
  ttq_sampler_cfg bad1 = {-1, 0, 1, 0}, bad2 = {1, -2, 1, 0}, bad3 = {1, 0, 0, 0}, bad4 = {1, 0, 1.5f, 0};
  ASSERT(ttq_sampler_init(&s, V, &bad1, &d) == TTQ_EINVAL);
  ASSERT(ttq_sampler_init(&s, V, &bad2, &d) == TTQ_EINVAL);
  ASSERT(ttq_sampler_init(&s, V, &bad3, &d) == TTQ_EINVAL);
  ASSERT(ttq_sampler_init(&s, V, &bad4, &d) == TTQ_EINVAL);
  return 0;
}
