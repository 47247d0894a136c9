/* sampler.h -- picks the next token from logits: greedy (temperature 0), or temperature with
 * top-k and top-p (nucleus) filtering, from a seeded generator owned by the sampler. */
#ifndef TTQ_SAMPLER_H
#define TTQ_SAMPLER_H

#include "ttq.h"

typedef struct ttq_sampler_cfg {
  float temperature; /* 0 = greedy; > 0 */
  int top_k;         /* 0 = off */
  float top_p;       /* 1 = off; in (0, 1] */
  uint64_t seed;
} ttq_sampler_cfg;

typedef struct ttq_sampler {
  ttq_sampler_cfg cfg;
  int vocab;
  uint64_t rng;
  struct ttq_prob_idx {
    float p;
    int32_t id;
  } *buf; /* owned, vocab entries */
} ttq_sampler;

/* Validates the settings (temperature >= 0 and finite, top_k >= 0, 0 < top_p <= 1).
 * Free with ttq_sampler_free. */
int ttq_sampler_init(ttq_sampler *s, int vocab, const ttq_sampler_cfg *cfg, ttq_diag *d);
void ttq_sampler_free(ttq_sampler *s);
/* Next token id. Greedy returns the lowest index of the maximum logit. Can't fail. */
int32_t ttq_sample(ttq_sampler *s, const float *logits);
/* Index of the maximum (lowest index on ties). */
int32_t ttq_argmax(const float *x, int n);

#endif
