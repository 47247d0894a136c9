/* qmodel.c -- quantizing a model's linear layers for one request; see qmodel.h.
 * Invariant: after ttq_qmodel_quantize_layer(l) succeeds, layer l's matrices and inverse
 * scales are consistent with each other (the forward pass may use them). */
#include "qmodel.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "tp.h"
#include "util.h"

const int ttq_proj_input[TTQ_N_PROJ] = {TTQ_IN_ATTN, TTQ_IN_ATTN, TTQ_IN_ATTN, TTQ_IN_O,
                                        TTQ_IN_MLP,  TTQ_IN_MLP,  TTQ_IN_DOWN};

ttq_qcfg ttq_qcfg_default(void) {
  ttq_qcfg c = {TTQ_METHOD_TTQ, 4, 32, 0, 0.5f, 0.4f, true, 0, 8};
  return c;
}

int ttq_actsample_init(ttq_actsample *a, const ttq_config *c, int cap, ttq_diag *d) {
  memset(a, 0, sizeof *a);
  a->n_layers = c->n_layers;
  a->cap = cap;
  a->width[TTQ_IN_ATTN] = c->dim;
  a->width[TTQ_IN_O] = c->n_heads * c->head_dim;
  a->width[TTQ_IN_MLP] = c->dim;
  a->width[TTQ_IN_DOWN] = c->ffn_dim;
  int n = c->n_layers * TTQ_N_INPUTS;
  a->rows = calloc((size_t)n, sizeof *a->rows);
  a->seen = calloc((size_t)n, sizeof *a->seen);
  a->X = calloc((size_t)n, sizeof *a->X);
  bool ok = a->rows && a->seen && a->X;
  for (int i = 0; ok && i < n; i++)
    ok = (a->X[i] = malloc((size_t)cap * a->width[i % TTQ_N_INPUTS] * sizeof(float))) != NULL;
  if (!ok) {
    ttq_actsample_free(a);
    return ttq__fail(d, TTQ_ENOMEM, "out of memory for the activation sample");
  }
  a->stride = 1;
  return 0;
}

void ttq_actsample_free(ttq_actsample *a) {
  for (int i = 0; a->X && i < a->n_layers * TTQ_N_INPUTS; i++) free(a->X[i]);
  free(a->X), free(a->rows), free(a->seen);
  memset(a, 0, sizeof *a);
}

void ttq_actsample_reset(ttq_actsample *a, int stride) {
  int n = a->n_layers * TTQ_N_INPUTS;
  memset(a->rows, 0, (size_t)n * sizeof *a->rows);
  memset(a->seen, 0, (size_t)n * sizeof *a->seen);
  a->stride = stride > 0 ? stride : 1;
}

void ttq_actsample_tap(void *u, int layer, int input, const float *X, int n, int width) {
  ttq_actsample *a = u;
  int i = layer * TTQ_N_INPUTS + input;
  for (int t = 0; t < n; t++, a->seen[i]++)
    if (a->seen[i] % a->stride == 0 && a->rows[i] < a->cap)
      memcpy(a->X[i] + (size_t)a->rows[i]++ * width, X + (size_t)t * width, (size_t)width * 4);
}

const float *ttq_qmodel_alphas(const ttq_qmodel *q) { return q->alpha; }

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
  char head[16] = "";
  if (c->method != TTQ_METHOD_FP)
    snprintf(head, sizeof head, c->head_bits ? " head W%d" : " head fp", c->head_bits);
  if (c->method == TTQ_METHOD_FP) snprintf(buf, cap, "fp");
  else if (c->method == TTQ_METHOD_TTQ && c->search > 0)
    snprintf(buf, cap, "ttq W%d g%d r%d alpha searched 1/%d..1 lambda %.2f %s%s", c->bits,
             c->group, c->rank, c->search, c->lambda, c->mean ? "mean" : "sum", head);
  else if (c->method == TTQ_METHOD_TTQ)
    snprintf(buf, cap, "ttq W%d g%d r%d alpha %.2f lambda %.2f %s%s", c->bits, c->group, c->rank,
             c->alpha, c->lambda, c->mean ? "mean" : "sum", head);
  else
    snprintf(buf, cap, "%s W%d g%d r%d%s", ttq_method_name(c->method), c->bits, c->group, c->rank,
             head);
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
  if (c->search < 0 || c->search > 64)
    return ttq__fail(d, TTQ_EINVAL, "--search %d is out of range [0, 64]", c->search);
  if (c->search > 0 && c->method != TTQ_METHOD_TTQ)
    return ttq__fail(d, TTQ_EINVAL, "--search applies to ttq only");

  if (!(c->lambda >= 0 && c->lambda < 1e6))
    return ttq__fail(d, TTQ_EINVAL, "--lambda %g must be >= 0", c->lambda);
  if (c->head_bits != 0) {
    ttq_diag hd = {0};
    if (ttq_quant_check(mc->dim, c->head_bits, c->group, &hd))
      return ttq__fail(d, TTQ_EINVAL, "--head-bits %d: %s (0 keeps the head unquantized)",
                       c->head_bits, hd.msg);
  }
  return 0;
}

const ttq_tensor *ttq_proj_weight(const ttq_model *m, int l, int p) {
  const ttq_layer *L = &m->layers[l];
  const ttq_tensor *t[TTQ_N_PROJ] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
  return t[p];
}

/* Quantizes the whole matrix W (dtype wt) with scale D (NULL: 1) into qm, 16 rows per task on
 * `threads` threads. Can't fail. */
static void quantize_matrix(ttq_qmatrix *qm, ttq_dtype wt, const void *W, const float *D,
                            int threads) {
  const int64_t rows = qm->rows, chunk = 16;
  const ttq_kernels *k = ttq_kernels_select(NULL); /* once, not per chunk */
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (int64_t r0 = 0; r0 < rows; r0 += chunk)
    ttq_quantize_rows_k(k, qm, wt, W, D, r0, r0 + chunk < rows ? r0 + chunk : rows);
}

/* The output head into q->head placed at `at`, round to nearest (D = 1) at cfg.head_bits, on the
 * default number of OpenMP threads. Can't fail (the settings were checked). */
static void quantize_head(ttq_qmodel *q, const ttq_model *m, void *at) {
  const ttq_tensor *h = &m->head;
  ttq_qmatrix_place(&q->head, h->shape[0], h->shape[1], q->cfg.head_bits, q->cfg.group, at, NULL);
  quantize_matrix(&q->head, h->dtype, h->data, NULL, omp_get_max_threads());
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
  q->alpha = calloc((size_t)q->n_layers * TTQ_N_INPUTS, sizeof *q->alpha);
  if (!q->layers || !q->alpha) {
    ttq_qmodel_free(q);
    return ttq__fail(d, TTQ_ENOMEM, "out of memory");
  }
  size_t total = 0, span;
  for (int l = 0; l < q->n_layers; l++)
    for (int p = 0; p < TTQ_N_PROJ; p++) {
      const ttq_tensor *w = ttq_proj_weight(m, l, p);
      if ((rc = ttq_qmatrix_span(w->shape[0], w->shape[1], cfg->bits, cfg->group, &span, d))) {
        ttq_qmodel_free(q);
        return rc;
      }
      if (total + span < total) {
        ttq_qmodel_free(q);
        return ttq__fail(d, TTQ_EINVAL, "quantized model: too large");
      }
      total += span;
    }
  size_t head_span = 0;
  if (cfg->head_bits > 0) { /* the head is last in decode order; checked with the settings */
    ttq_qmatrix_span(m->head.shape[0], m->head.shape[1], cfg->head_bits, cfg->group, &head_span,
                     NULL);
    total += head_span;
  }
  if (!(q->arena = ttq__alloc_huge(total))) {
    ttq_qmodel_free(q);
    return ttq__fail(d, TTQ_ENOMEM, "out of memory for the quantized model (%zu bytes)", total);
  }
  memset(q->arena, 0, total);
  uint8_t *at = q->arena;
  for (int l = 0; l < q->n_layers; l++) {
    for (int p = 0; p < TTQ_N_PROJ; p++) {
      const ttq_tensor *w = ttq_proj_weight(m, l, p);
      ttq_qmatrix *qm = &q->layers[l].w[p];
      ttq_qmatrix_span(w->shape[0], w->shape[1], cfg->bits, cfg->group, &span, NULL);
      ttq_qmatrix_place(qm, w->shape[0], w->shape[1], cfg->bits, cfg->group, at, NULL); /* checked */
      at += span;
      qm->act_int8 = cfg->method == TTQ_METHOD_TTQ;
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
  if (cfg->head_bits > 0) {
    quantize_head(q, m, at);
    q->has_head = true;
  }
  return 0;
}

void ttq_qmodel_free(ttq_qmodel *q) {
  for (int l = 0; q->layers && l < q->n_layers; l++) {
    for (int p = 0; p < TTQ_N_PROJ; p++) ttq_qmatrix_free(&q->layers[l].w[p]);
    for (int i = 0; i < TTQ_N_INPUTS; i++) free(q->layers[l].inv_d[i]);
  }
  ttq_qmatrix_free(&q->head);
  free(q->layers);
  free(q->alpha);
  free(q->arena);
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
  return b + (q->has_head ? ttq_qmatrix_bytes(&q->head) : 0);
}

void ttq_scale_from_stats(const ttq_qcfg *c, const ttq_stats *s, int l, int input, float *D) {
  ttq_scale_from_sumsq(c, ttq_stats_sumsq(s, l, input), *ttq_stats_count(s, l, input),
                       s->width[input], D);
}

void ttq_scale_from_sumsq(const ttq_qcfg *c, const double *sq, double T, int w, float *D) {
  for (int i = 0; i < w; i++) {
    double v = c->mean ? (T > 0 ? sq[i] / T : 0) : sq[i];
    D[i] = (float)pow(v + c->lambda, c->alpha);
    if (!(D[i] > 0) || !isfinite(D[i])) D[i] = 1.0f; /* lambda = 0 and a dead channel */
  }
}

/* Quantizes the projections fed by `input` with scale D (NULL: 1) into Q. */
static void quantize_input(ttq_qmodel *q, const ttq_model *m, int l, int input, const float *D,
                           int threads) {
  for (int p = 0; p < TTQ_N_PROJ; p++) {
    if (ttq_proj_input[p] != input) continue;
    const ttq_tensor *w = ttq_proj_weight(m, l, p);
    const float *R = q->lr ? q->lr->R[l * TTQ_N_PROJ + p] : NULL;
    if (R) quantize_matrix(&q->layers[l].w[p], TTQ_F32, R, D, threads);
    else quantize_matrix(&q->layers[l].w[p], w->dtype, w->data, D, threads);
  }
}

/* Squared output error, on the sample X (n rows), of the projections fed by `input` as
 * currently quantized, against the full-precision (or residual, with low rank) product. */
static double sample_error(ttq_qmodel *q, const ttq_model *m, int l, int input, const float *X,
                           int n, const float *inv, float *XS, float *Yq, float *Wrow, int threads) {
  double err = 0;
  for (int p = 0; p < TTQ_N_PROJ; p++) {
    if (ttq_proj_input[p] != input) continue;
    const ttq_qmatrix *qm = &q->layers[l].w[p];
    const int64_t rows = qm->rows, cols = qm->cols;
    for (int t = 0; t < n; t++)
      for (int64_t i = 0; i < cols; i++)
        XS[(size_t)t * cols + i] = X[(size_t)t * cols + i] * (inv ? inv[i] : 1.0f);
    const ttq_tensor *wt = ttq_proj_weight(m, l, p);
    const float *R = q->lr ? q->lr->R[l * TTQ_N_PROJ + p] : NULL;
    const size_t rb = wt->nbytes / (size_t)rows;
    const ttq_kernels *k = ttq_kernels_select(NULL);
    double e = 0;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) reduction(+ : e)
    for (int64_t r0 = 0; r0 < rows; r0 += 16) {
      int64_t r1 = r0 + 16 < rows ? r0 + 16 : rows;
      float *wr = Wrow + (size_t)omp_get_thread_num() * cols;
      ttq_qmatmul(k, qm, XS, n, Yq, rows, r0, r1);
      for (int64_t r = r0; r < r1; r++) {
        const float *wf = R ? R + (size_t)r * cols : wr;
        if (!R) ttq_row_to_f32(k, wt->dtype, (const uint8_t *)wt->data + (size_t)r * rb, wr, cols);
        for (int t = 0; t < n; t++) {
          double y = k->dot_f32(wf, X + (size_t)t * cols, cols);
          double diff = Yq[(size_t)t * rows + r] - y;
          e += diff * diff;
        }
      }
    }
    err += e;
  }
  return err;
}

int ttq_qmodel_quantize_layer(ttq_qmodel *q, const ttq_model *m, int l, const ttq_stats *stats,
                              const ttq_awq *awq, const ttq_actsample *samp, int threads,
                              ttq_diag *d) {
  const ttq_qcfg *c = &q->cfg;
  ttq_qlayer *Q = &q->layers[l];
  float *D = NULL, *XS = NULL, *Yq = NULL, *Wrow = NULL, *best = NULL;
  if (c->method == TTQ_METHOD_TTQ && !stats)
    return ttq__fail(d, TTQ_EINVAL, "ttq quantization needs the prompt's statistics");
  if (c->method == TTQ_METHOD_AWQ && !awq)
    return ttq__fail(d, TTQ_EINVAL, "awq quantization needs a calibration file (--calib)");
  const bool search = c->method == TTQ_METHOD_TTQ && c->search > 0 && samp;
  int widths[TTQ_N_INPUTS] = {m->cfg.dim, m->cfg.n_heads * m->cfg.head_dim, m->cfg.dim, m->cfg.ffn_dim};
  /* D is computed over the full width of each input (tensor parallel: the statistics are
   * full-width) and used from this rank's offset. */
  const ttq_config *fc = m->tp ? &m->tp->full : &m->cfg;
  int64_t maxw = fc->ffn_dim, maxrows = 0;
  if (fc->dim > maxw) maxw = fc->dim;
  if ((int64_t)fc->n_heads * fc->head_dim > maxw) maxw = (int64_t)fc->n_heads * fc->head_dim;
  for (int p = 0; p < TTQ_N_PROJ; p++) maxrows = Q->w[p].rows > maxrows ? Q->w[p].rows : maxrows;
  int rc = 0;
  D = malloc((size_t)maxw * sizeof(float));
  best = malloc((size_t)maxw * sizeof(float));
  if (search) {
    XS = malloc((size_t)samp->cap * maxw * sizeof(float));
    Yq = malloc((size_t)samp->cap * maxrows * sizeof(float));
    Wrow = malloc((size_t)threads * maxw * sizeof(float));
  }
  if (!D || !best || (search && (!XS || !Yq || !Wrow))) {
    rc = ttq__fail(d, TTQ_ENOMEM, "out of memory");
    goto out;
  }
  for (int i = 0; i < TTQ_N_INPUTS; i++) {
    const int w = widths[i], off = ttq_tp_input_offset(m->tp, i);
    float *inv = Q->inv_d[i];
    if (c->method == TTQ_METHOD_RTN) {
      quantize_input(q, m, l, i, NULL, threads);
      q->alpha[l * TTQ_N_INPUTS + i] = 0;
      continue;
    }
    if (c->method == TTQ_METHOD_AWQ) {
      const float *s = awq->scale + (size_t)l * awq->layer_len + off;
      for (int k = 0; k < i; k++) s += awq->width[k];
      memcpy(D, s, (size_t)w * sizeof(float));
      q->alpha[l * TTQ_N_INPUTS + i] = awq->alpha[l * TTQ_N_INPUTS + i];
    } else if (!search) {
      ttq_scale_from_stats(c, stats, l, i, D);
      if (off) memmove(D, D + off, (size_t)w * sizeof(float));
      q->alpha[l * TTQ_N_INPUTS + i] = c->alpha;
    } else { /* choose alpha on the prompt's own activations */
      ttq_qcfg trial = *c;
      const int n = samp->rows[l * TTQ_N_INPUTS + i];
      const float *X = samp->X[l * TTQ_N_INPUTS + i];
      double best_err = INFINITY;
      float best_alpha = c->alpha;
      for (int k = 1; k <= c->search && n > 0; k++) {
        trial.alpha = (float)k / (float)c->search;
        ttq_scale_from_stats(&trial, stats, l, i, D);
        for (int j = 0; j < w; j++) inv[j] = 1.0f / D[j];
        quantize_input(q, m, l, i, D, threads);
        double e = sample_error(q, m, l, i, X, n, inv, XS, Yq, Wrow, threads);
        if (e < best_err) {
          best_err = e;
          best_alpha = trial.alpha;
          memcpy(best, D, (size_t)w * sizeof(float));
        }
      }
      trial.alpha = best_alpha;
      ttq_scale_from_stats(&trial, stats, l, i, D);
      q->alpha[l * TTQ_N_INPUTS + i] = best_alpha;
    }
    for (int j = 0; j < w; j++) inv[j] = 1.0f / D[j];
    quantize_input(q, m, l, i, D, threads);
  }
out:
  free(D), free(best), free(XS), free(Yq), free(Wrow);
  return rc;
}

int ttq_qmodel_quantize(ttq_qmodel *q, const ttq_model *m, const ttq_stats *stats,
                        const ttq_awq *awq, const ttq_actsample *samp, int threads, ttq_diag *d) {
  double t0 = omp_get_wtime();
  for (int l = 0; l < q->n_layers; l++) {
    int rc = ttq_qmodel_quantize_layer(q, m, l, stats, awq, samp, threads, d);
    if (rc) return rc;
  }
  q->quant_ms = (omp_get_wtime() - t0) * 1e3;
  return 0;
}
