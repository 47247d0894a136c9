/* stats.c -- activation statistics; see stats.h. Layout of one layer in buf:
 *   for each input i: sumsq[width[i]], sumabs[width[i]], count[1]. */
#include "stats.h"

#include <stdlib.h>

#include "util.h"

const char *const ttq_input_names[TTQ_N_INPUTS] = {"attn", "o", "mlp", "down"};

static size_t input_off(const ttq_stats *s, int input) {
  size_t o = 0;
  for (int i = 0; i < input; i++) o += 2 * (size_t)s->width[i] + 1;
  return o;
}

int ttq_stats_init(ttq_stats *s, const ttq_config *c, ttq_diag *d) {
  s->n_layers = c->n_layers;
  s->width[TTQ_IN_ATTN] = c->dim;
  s->width[TTQ_IN_O] = c->n_heads * c->head_dim;
  s->width[TTQ_IN_MLP] = c->dim;
  s->width[TTQ_IN_DOWN] = c->ffn_dim;
  s->layer_len = input_off(s, TTQ_N_INPUTS);
  s->len = s->layer_len * (size_t)c->n_layers;
  s->buf = calloc(s->len, sizeof *s->buf);
  if (!s->buf) return ttq__fail(d, TTQ_ENOMEM, "out of memory for activation statistics");
  return 0;
}

void ttq_stats_free(ttq_stats *s) {
  free(s->buf);
  s->buf = NULL;
}

void ttq_stats_reset(ttq_stats *s) { memset(s->buf, 0, s->len * sizeof *s->buf); }

double *ttq_stats_sumsq(const ttq_stats *s, int layer, int input) {
  return s->buf + (size_t)layer * s->layer_len + input_off(s, input);
}
double *ttq_stats_sumabs(const ttq_stats *s, int layer, int input) {
  return ttq_stats_sumsq(s, layer, input) + s->width[input];
}
double *ttq_stats_count(const ttq_stats *s, int layer, int input) {
  return ttq_stats_sumsq(s, layer, input) + 2 * (size_t)s->width[input];
}

void ttq_stats_add_cols(ttq_stats *s, const ttq_kernels *k, int layer, int input, const float *X,
                        int n, int64_t ld, int offset, int c0, int c1) {
  if (!k) k = ttq_kernels_select(NULL);
  k->sum_sq_abs(ttq_stats_sumsq(s, layer, input) + offset, ttq_stats_sumabs(s, layer, input) + offset,
                X, n, ld, c0, c1);
}

void ttq_stats_add(ttq_stats *s, int layer, int input, const float *X, int n, int64_t ld) {
  ttq_stats_add_cols(s, NULL, layer, input, X, n, ld, 0, 0, s->width[input]);
  *ttq_stats_count(s, layer, input) += n;
}

int ttq_stats_merge(ttq_stats *dst, const ttq_stats *src, ttq_diag *d) {
  if (dst->len != src->len || dst->n_layers != src->n_layers)
    return ttq__fail(d, TTQ_EINVAL, "statistics of different shapes cannot be merged");
  for (size_t i = 0; i < dst->len; i++) dst->buf[i] += src->buf[i];
  return 0;
}
