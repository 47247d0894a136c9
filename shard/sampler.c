/* sampler.c -- greedy and temperature/top-k/top-p sampling.
 * Invariant: the only state is the sampler's own generator; same seed, same logits, same ids. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

int ttq_sampler_init(ttq_sampler *s, int vocab, const ttq_sampler_cfg *cfg, ttq_diag *d) {
  memset(s, 0, sizeof *s);
  if (!(cfg->temperature >= 0) || !isfinite(cfg->temperature))
    return ttq__fail(d, TTQ_EINVAL, "temperature %g must be >= 0", cfg->temperature);
  if (cfg->top_k < 0) return ttq__fail(d, TTQ_EINVAL, "top-k %d must be >= 0", cfg->top_k);
  if (!(cfg->top_p > 0 && cfg->top_p <= 1))
    return ttq__fail(d, TTQ_EINVAL, "top-p %g must be in (0, 1]", cfg->top_p);
  if (vocab <= 0) return ttq__fail(d, TTQ_EINVAL, "vocab %d must be > 0", vocab);
  s->cfg = *cfg;
  s->vocab = vocab;
  s->rng = cfg->seed ^ 0x853c49e6748fea9bull;
  s->buf = malloc((size_t)vocab * sizeof *s->buf);
  if (!s->buf) return ttq__fail(d, TTQ_ENOMEM, "out of memory");
  return 0;
}

void ttq_sampler_free(ttq_sampler *s) {
  free(s->buf);
  s->buf = NULL;
}

int32_t ttq_argmax(const float *x, int n) {
  int32_t best = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[best]) best = i;
  return best;
}

static uint64_t next_u64(uint64_t *st) { /* splitmix64 */
  uint64_t z = (*st += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static int by_prob_desc(const void *a, const void *b) {
  const struct ttq_prob_idx *x = a, *y = b;
  if (x->p != y->p) return x->p < y->p ? 1 : -1;
  return x->id < y->id ? -1 : x->id > y->id;
}

int32_t ttq_sample(ttq_sampler *s, const float *logits) {
  const int n = s->vocab;
  if (s->cfg.temperature == 0 || s->cfg.top_k == 1) return ttq_argmax(logits, n);
  float mx = logits[ttq_argmax(logits, n)];
  double sum = 0;
  for (int i = 0; i < n; i++) {
    float p = expf((logits[i] - mx) / s->cfg.temperature);
    s->buf[i].p = p;
    s->buf[i].id = i;
    sum += p;
  }
  int keep = n;
  if (s->cfg.top_k > 0 || s->cfg.top_p < 1) {
    qsort(s->buf, (size_t)n, sizeof *s->buf, by_prob_desc);
    if (s->cfg.top_k > 0 && s->cfg.top_k < keep) keep = s->cfg.top_k;
    double kept = 0;
    for (int i = 0; i < keep; i++) kept += s->buf[i].p;
    sum = kept;
    if (s->cfg.top_p < 1) {
      double c = 0, limit = s->cfg.top_p * kept;
      for (int i = 0; i < keep; i++) {
        c += s->buf[i].p;
        if (c >= limit) {
          keep = i + 1;
          break;
        }
      }
      sum = c;
    }
  }
  double u = (double)(next_u64(&s->rng) >> 11) / 9007199254740992.0 * sum, c = 0;
  for (int i = 0; i < keep; i++) {
    c += s->buf[i].p;
    if (u < c) return s->buf[i].id;
  }
  return s->buf[keep - 1].id;
}
