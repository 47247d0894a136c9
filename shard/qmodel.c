/* qmodel.c -- quantizing a model's linear layers for one request; see qmodel.h.
 * Invariant: after ttq_qmodel_quantize_layer(l) succeeds, layer l's matrices and inverse
 * scales are consistent with each other (the forward pass may use them). */
#include "qmodel.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "util.h"

const int ttq_proj_input[TTQ_N_PROJ] = {TTQ_IN_ATTN, TTQ_IN_ATTN, TTQ_IN_ATTN, TTQ_IN_O,
                                        TTQ_IN_MLP,  TTQ_IN_MLP,  TTQ_IN_DOWN};

ttq_qcfg ttq_qcfg_default(void) {
  ttq_qcfg c = {TTQ_METHOD_TTQ, 4, 32, 0, 0.5f, 0.4f, true};
  return c;
}

const char *ttq_method_name(ttq_method m) {
  static const char *const names[] = {"fp", "rtn", "awq", "ttq"};
  return (unsigned)m < 4 ? names[m] : "?";
}

int ttq_method_parse(const char *s, ttq_method *out) {
  for (int i = 0; i < 4; i++)
    if (!strcmp(s, ttq_method_name((ttq_method)i))) {
      *out = (ttq_method)i;
      return 0;
    }
  return TTQ_EINVAL;
}

void ttq_qcfg_str(const ttq_qcfg *c, char *buf, size_t cap) {
  if (c->method == TTQ_METHOD_FP) snprintf(buf, cap, "fp");
  else if (c->method == TTQ_METHOD_TTQ)
    snprintf(buf, cap, "ttq W%d g%d r%d alpha %.2f lambda %.2f %s", c->bits, c->group, c->rank,
             c->alpha, c->lambda, c->mean ? "mean" : "sum");
  else snprintf(buf, cap, "%s W%d g%d r%d", ttq_method_name(c->method), c->bits, c->group, c->rank);
}

int ttq_qcfg_check(const ttq_qcfg *c, const ttq_config *mc, ttq_diag *d) {
  if (c->method == TTQ_METHOD_FP) return 0;
  int widths[3] = {mc->dim, mc->n_heads * mc->head_dim, mc->ffn_dim};
  const char *names[3] = {"hidden size", "attention width", "ffn size"};
  for (int i = 0; i < 3; i++) {
    int rc = ttq_quant_check(widths[i], c->bits, c->group, d);
    if (rc) {
      char why[sizeof d->msg];
      snprintf(why, sizeof why, "%s", d ? d->msg : "");
      return ttq__fail(d, rc, "%s (the model's %s is %d)", why, names[i], widths[i]);
    }
  }
  int maxrank = mc->dim < mc->ffn_dim ? mc->dim : mc->ffn_dim;
  if (c->rank < 0 || c->rank > maxrank / 2)
    return ttq__fail(d, TTQ_EINVAL, "--rank %d is out of range [0, %d]", c->rank, maxrank / 2);
  if (c->rank > 0 && c->method == TTQ_METHOD_AWQ)
    return ttq__fail(d, TTQ_EINVAL, "--rank applies to ttq and rtn, not awq");
  if (!(c->alpha >= 0 && c->alpha <= 4))
    return ttq__fail(d, TTQ_EINVAL, "--alpha %g is out of range [0, 4]", c->alpha);
  if (!(c->lambda >= 0 && c->lambda < 1e6))
    return ttq__fail(d, TTQ_EINVAL, "--lambda %g must be >= 0", c->lambda);
  return 0;
}

const ttq_tensor *ttq_proj_weight(const ttq_model *m, int l, int p) {
  const ttq_layer *L = &m->layers[l];
  const ttq_tensor *t[TTQ_N_PROJ] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
  return t[p];
}

int ttq_qmodel_init(ttq_qmodel *q, const ttq_model *m, const ttq_qcfg *cfg,
                    const ttq_lowrank *lr, ttq_diag *d) {
  memset(q, 0, sizeof *q);
  int rc = ttq_qcfg_check(cfg, &m->cfg, d);
  if (rc) return rc;
  if (cfg->method == TTQ_METHOD_FP)
    return ttq__fail(d, TTQ_EINVAL, "the fp method has no quantized model");
  if (cfg->rank > 0 && (!lr || lr->rank != cfg->rank))
    return ttq__fail(d, TTQ_EINVAL, "rank %d needs low-rank factors of that rank", cfg->rank);
  q->cfg = *cfg;
  q->n_layers = m->cfg.n_layers;
  q->lr = cfg->rank > 0 ? lr : NULL;
  q->layers = calloc((size_t)q->n_layers, sizeof *q->layers);
  if (!q->layers) return ttq__fail(d, TTQ_ENOMEM, "out of memory");
  for (int l = 0; l < q->n_layers; l++) {
    for (int p = 0; p < TTQ_N_PROJ; p++) {
      const ttq_tensor *w = ttq_proj_weight(m, l, p);
      if ((rc = ttq_qmatrix_alloc(&q->layers[l].w[p], w->shape[0], w->shape[1], cfg->bits,
                                  cfg->group, d))) {
        ttq_qmodel_free(q);
        return rc;
      }
    }
    if (cfg->method != TTQ_METHOD_RTN) {
      int widths[TTQ_N_INPUTS] = {m->cfg.dim, m->cfg.n_heads * m->cfg.head_dim, m->cfg.dim,
                                  m->cfg.ffn_dim};
      for (int i = 0; i < TTQ_N_INPUTS; i++)
        if (!(q->layers[l].inv_d[i] = malloc((size_t)widths[i] * sizeof(float)))) {
          ttq_qmodel_free(q);
          return ttq__fail(d, TTQ_ENOMEM, "out of memory");
        }
    }
  }
  return 0;
}

void ttq_qmodel_free(ttq_qmodel *q) {
  for (int l = 0; q->layers && l < q->n_layers; l++) {
    for (int p = 0; p < TTQ_N_PROJ; p++) ttq_qmatrix_free(&q->layers[l].w[p]);
    for (int i = 0; i < TTQ_N_INPUTS; i++) free(q->layers[l].inv_d[i]);
  }
  free(q->layers);
  memset(q, 0, sizeof *q);
}

size_t ttq_qmodel_bytes(const ttq_qmodel *q) {
  size_t b = 0;
  for (int l = 0; l < q->n_layers; l++)
    for (int p = 0; p < TTQ_N_PROJ; p++) {
      const ttq_qmatrix *m = &q->layers[l].w[p];
      b += ttq_qmatrix_bytes(m);
      if (q->lr) b += (size_t)q->lr->rank * (size_t)(m->rows + m->cols) * sizeof(float);
    }
  return b;
}

void ttq_scale_from_stats(const ttq_qcfg *c, const ttq_stats *s, int l, int input, float *D) {
  const double *sq = ttq_stats_sumsq(s, l, input);
  double T = *ttq_stats_count(s, l, input);
  const int w = s->width[input];
  for (int i = 0; i < w; i++) {
    double v = c->mean ? (T > 0 ? sq[i] / T : 0) : sq[i];
    D[i] = (float)pow(v + c->lambda, c->alpha);
    if (!(D[i] > 0) || !isfinite(D[i])) D[i] = 1.0f; /* lambda = 0 and a dead channel */
  }
}

int ttq_qmodel_quantize_layer(ttq_qmodel *q, const ttq_model *m, int l, const ttq_stats *stats,
                              const ttq_awq *awq, int threads, ttq_diag *d) {
  const ttq_qcfg *c = &q->cfg;
  ttq_qlayer *Q = &q->layers[l];
  float *D[TTQ_N_INPUTS] = {0};
  if (c->method == TTQ_METHOD_TTQ && !stats)
    return ttq__fail(d, TTQ_EINVAL, "ttq quantization needs the prompt's statistics");
  if (c->method == TTQ_METHOD_AWQ && !awq)
    return ttq__fail(d, TTQ_EINVAL, "awq quantization needs a calibration file (--calib)");
  int rc = 0;
  for (int i = 0; i < TTQ_N_INPUTS && c->method != TTQ_METHOD_RTN; i++) {
    int w = i == TTQ_IN_O ? m->cfg.n_heads * m->cfg.head_dim : i == TTQ_IN_DOWN ? m->cfg.ffn_dim : m->cfg.dim;
    D[i] = malloc((size_t)w * sizeof(float));
    if (!D[i]) {
      rc = ttq__fail(d, TTQ_ENOMEM, "out of memory");
      goto out;
    }
    if (c->method == TTQ_METHOD_TTQ) {
      ttq_scale_from_stats(c, stats, l, i, D[i]);
    } else {
      const float *s = awq->scale + (size_t)l * awq->layer_len;
      for (int k = 0; k < i; k++) s += awq->width[k];
      memcpy(D[i], s, (size_t)w * sizeof(float));
    }
    for (int k = 0; k < w; k++) Q->inv_d[i][k] = 1.0f / D[i][k];
  }
  for (int p = 0; p < TTQ_N_PROJ; p++) {
    ttq_qmatrix *qm = &Q->w[p];
    const ttq_tensor *w = ttq_proj_weight(m, l, p);
    const float *Dp = D[ttq_proj_input[p]];
    const float *R = q->lr ? q->lr->R[l * TTQ_N_PROJ + p] : NULL;
    const int64_t rows = qm->rows, chunk = 16;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
      int64_t r1 = r0 + chunk < rows ? r0 + chunk : rows;
      if (R) ttq_quantize_rows_f32(qm, R, Dp, r0, r1);
      else ttq_quantize_rows(qm, w->dtype, w->data, Dp, r0, r1);
    }
  }
out:
  for (int i = 0; i < TTQ_N_INPUTS; i++) free(D[i]);
  return rc;
}

int ttq_qmodel_quantize(ttq_qmodel *q, const ttq_model *m, const ttq_stats *stats,
                        const ttq_awq *awq, int threads, ttq_diag *d) {
  double t0 = omp_get_wtime();
  for (int l = 0; l < q->n_layers; l++) {
    int rc = ttq_qmodel_quantize_layer(q, m, l, stats, awq, threads, d);
    if (rc) return rc;
  }
  q->quant_ms = (omp_get_wtime() - t0) * 1e3;
  return 0;
}
