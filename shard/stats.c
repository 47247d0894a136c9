/* stats.c -- activation statistics; see stats.h. Layout of one layer in buf:
 *   for each input i: sumsq[width[i]], sumabs[width[i]], count[1]. */
#include "stats.h"

#include <math.h>
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

/* The sums of ttq_stats_add_cols, compiled for the baseline ISA and for AVX-512 (8 channels per
 * instruction instead of 2): every lane is one channel summing its rows in order, so both give
 * the same bits. */
#define ADD_COLS_BODY                                                                          \
  for (int t = 0; t < n; t++) { /* each channel sums its rows in order: the same on any split */ \
    const float *restrict x = X + (size_t)t * (size_t)ld;                                      \
    _Pragma("omp simd") for (int c = c0; c < c1; c++) {                                        \
      sq[c] += (double)x[c] * x[c]; /* exact product: the same with or without contraction */  \
      ab[c] += fabs((double)x[c]);                                                             \
    }                                                                                          \
  }
static void add_cols_base(double *restrict sq, double *restrict ab, const float *X, int n,
                          int64_t ld, int c0, int c1) {
  ADD_COLS_BODY
}
#if defined(__x86_64__)
__attribute__((target("avx512f"))) static void add_cols_avx512(double *restrict sq,
                                                                double *restrict ab,
                                                                const float *X, int n, int64_t ld,
                                                                int c0, int c1) {
  ADD_COLS_BODY
}
#endif
#undef ADD_COLS_BODY

void ttq_stats_add_cols(ttq_stats *s, int layer, int input, const float *X, int n, int64_t ld,
                        int offset, int c0, int c1) {
  double *sq = ttq_stats_sumsq(s, layer, input) + offset;
  double *ab = ttq_stats_sumabs(s, layer, input) + offset;
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512f")) {
    add_cols_avx512(sq, ab, X, n, ld, c0, c1);
    return;
  }
#endif
  add_cols_base(sq, ab, X, n, ld, c0, c1);
}

void ttq_stats_add(ttq_stats *s, int layer, int input, const float *X, int n, int64_t ld) {
  ttq_stats_add_cols(s, layer, input, X, n, ld, 0, 0, s->width[input]);
  *ttq_stats_count(s, layer, input) += n;
}

int ttq_stats_merge(ttq_stats *dst, const ttq_stats *src, ttq_diag *d) {
  if (dst->len != src->len || dst->n_layers != src->n_layers)
    return ttq__fail(d, TTQ_EINVAL, "statistics of different shapes cannot be merged");
  for (size_t i = 0; i < dst->len; i++) dst->buf[i] += src->buf[i];
  return 0;
}
