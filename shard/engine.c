/* engine.c -- the per-request flow; see engine.h.
 * Invariant: e->st.qm is NULL exactly while a full-precision pass runs, while a deferred
 * quantization is pending (quant_pending), or for fp. */
#include "engine.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "eval.h"
#include "sampler.h"
#include "tp.h"
#include "util.h"

/* Rows of the prompt's activations kept per layer input for the alpha search. */
#define TTQ_SEARCH_ROWS 64

int ttq_engine_init(ttq_engine *e, const ttq_model *m, const ttq_engine_opts *o, ttq_diag *d) {
  memset(e, 0, sizeof *e);
  e->m = m;
  e->o = *o;
  int rc = ttq_qcfg_check(&o->q, &m->cfg, d);
  if (rc) return rc;
  if (m->tp && m->tp->size > 1 && (o->q.search > 0 || o->q.rank > 0))
    /* per-rank choices (alpha search) or per-rank factors would differ between rank counts */
    return ttq__fail(d, TTQ_EINVAL, "--%s is not supported with more than one rank yet",
                     o->q.search > 0 ? "search" : "rank");
  if ((rc = ttq_state_init(&e->st, m, o->max_ctx, o->kv, o->threads, o->kern, d))) return rc;
  const ttq_qcfg *q = &o->q;
  if (q->method == TTQ_METHOD_FP) return 0;
  if (q->rank > 0) {
    double t0 = omp_get_wtime();
    if ((rc = ttq_lowrank_get(&e->lr, m, q->rank, e->st.threads, &e->lowrank_cached, d))) goto fail;
    e->has_lr = true;
    e->lowrank_ms = (omp_get_wtime() - t0) * 1e3;
  }
  if (q->method == TTQ_METHOD_AWQ) {
    if (!o->calib_path) {
      rc = ttq__fail(d, TTQ_EINVAL, "--quant awq needs --calib FILE (made by ttqd calibrate)");
      goto fail;
    }
    if ((rc = ttq_awq_load(&e->awq, m, o->calib_path, d))) goto fail;
    e->has_awq = true;
    if (e->awq.bits != q->bits || e->awq.group != q->group) {
      rc = ttq__fail(d, TTQ_EINVAL, "%s was calibrated for W%d g%d, not W%d g%d", o->calib_path,
                     e->awq.bits, e->awq.group, q->bits, q->group);
      goto fail;
    }
  }
  if ((rc = ttq_qmodel_init(&e->qm, m, q, e->has_lr ? &e->lr : NULL, d))) goto fail;
  e->has_qm = true;
  if (q->method == TTQ_METHOD_TTQ) {
    if ((rc = ttq_stats_init(&e->stats, m->tp ? &m->tp->full : &m->cfg, d))) goto fail;
    e->has_stats = true;
    if (q->search > 0) {
      if ((rc = ttq_actsample_init(&e->samp, &m->cfg, TTQ_SEARCH_ROWS, d))) goto fail;
      e->has_samp = true;
    }
  } else { /* rtn, awq: the same weights for every request */
    if ((rc = ttq_qmodel_quantize(&e->qm, m, NULL, e->has_awq ? &e->awq : NULL, NULL,
                                  e->st.threads, d)))
      goto fail;
    e->last.quant_ms = e->qm.quant_ms;
  }
  return 0;
fail:
  ttq_engine_free(e);
  return rc;
}

void ttq_engine_free(ttq_engine *e) {
  if (e->st.m) ttq_state_free(&e->st);
  if (e->has_qm) ttq_qmodel_free(&e->qm);
  if (e->has_lr) ttq_lowrank_free(&e->lr);
  if (e->has_awq) ttq_awq_free(&e->awq);
  if (e->has_stats) ttq_stats_free(&e->stats);
  if (e->has_samp) ttq_actsample_free(&e->samp);
  memset(e, 0, sizeof *e);
}

/* Full-precision pass over ids quantizing layer by layer as it goes (fused), for ttq with a fixed
 * alpha, no low rank, and a prompt that is one chunk. */
static int calibrate_fused(ttq_engine *e, const int32_t *ids, int n, float *logits, ttq_diag *d) {
  e->st.fuse = &e->qm;
  e->st.fuse_ms = 0;
  e->st.stats_ms = 0;
  double t0 = omp_get_wtime();
  int rc = ttq_forward(&e->st, ids, n, logits, false, d);
  e->last.prefill_ms = (omp_get_wtime() - t0) * 1e3;
  e->st.fuse = NULL;
  e->last.stats_ms = e->st.stats_ms;
  e->last.quant_ms = e->qm.quant_ms = e->st.fuse_ms;
  e->last.fused = true;
  return rc;
}

/* Quantizes the model with the statistics of the last full-precision pass (ttq). */
static int quantize(ttq_engine *e, ttq_diag *d) {
  e->quant_pending = false;
  int rc = ttq_qmodel_quantize(&e->qm, e->m, &e->stats, NULL, e->has_samp ? &e->samp : NULL,
                               e->st.threads, d);
  if (rc == 0) e->last.quant_ms = e->qm.quant_ms;
  return rc;
}

/* Full-precision pass over ids collecting statistics, then quantization (ttq only): now, or
 * (defer) left pending for the first decode step. */
static int calibrate(ttq_engine *e, const int32_t *ids, int n, float *logits, bool defer,
                     ttq_diag *d) {
  ttq_state_reset(&e->st);
  e->st.qm = NULL;
  e->last.fused = e->last.deferred = false;
  e->quant_pending = false;
  defer = defer && e->o.q.method == TTQ_METHOD_TTQ;
  if (e->o.q.method == TTQ_METHOD_TTQ && !defer && !e->o.no_fuse && e->o.q.search == 0 &&
      !e->has_lr && n <= e->st.max_batch)
    return calibrate_fused(e, ids, n, logits, d);
  e->st.stats = e->has_stats ? &e->stats : NULL;
  if (e->has_stats) ttq_stats_reset(&e->stats);
  if (e->has_samp) {
    ttq_actsample_reset(&e->samp, n > TTQ_SEARCH_ROWS ? (n + TTQ_SEARCH_ROWS - 1) / TTQ_SEARCH_ROWS : 1);
    e->st.tap = ttq_actsample_tap;
    e->st.tap_u = &e->samp;
  }
  e->st.stats_ms = 0;
  double t0 = omp_get_wtime();
  int rc = ttq_forward(&e->st, ids, n, logits, false, d);
  e->last.prefill_ms = (omp_get_wtime() - t0) * 1e3;
  e->last.stats_ms = e->st.stats_ms;
  e->st.stats = NULL;
  e->st.tap = NULL;
  if (rc) return rc;
  if (e->has_stats && e->m->tp && e->m->tp->allreduce_f64) { /* complete the statistics */
    double t1 = omp_get_wtime();
    e->m->tp->allreduce_f64(e->m->tp->u, e->stats.buf, e->stats.len);
    e->m->tp->sent_bytes += e->stats.len * sizeof(double);
    e->m->tp->calls++;
    e->last.stats_ms += (omp_get_wtime() - t1) * 1e3;
  }
  if (defer) {
    e->quant_pending = e->last.deferred = true;
    e->last.quant_ms = 0; /* until the first decode step has quantized */
    return 0;
  }
  return e->o.q.method == TTQ_METHOD_TTQ ? quantize(e, d) : 0;
}

int ttq_engine_prefill(ttq_engine *e, const int32_t *ids, int n, float *logits, ttq_diag *d) {
  int rc = calibrate(e, ids, n, logits, !e->o.quant_in_prefill, d);
  if (rc == 0 && e->has_qm && !e->quant_pending) e->st.qm = &e->qm;
  return rc;
}

int ttq_engine_decode(ttq_engine *e, int32_t token, float *logits, ttq_diag *d) {
  if (e->quant_pending) {
    int rc = quantize(e, d);
    if (rc) return rc;
    e->st.qm = &e->qm;
  }
  return ttq_forward(&e->st, &token, 1, logits, false, d);
}

int ttq_engine_score(ttq_engine *e, const int32_t *ids, int n, double *nll, int64_t *count,
                     ttq_diag *d) {
  if (n < 2) return 0;
  int rc;
  if (e->o.q.method == TTQ_METHOD_TTQ && (rc = calibrate(e, ids, n - 1, NULL, false, d))) return rc;
  e->st.qm = e->has_qm ? &e->qm : NULL;
  rc = ttq_score_tokens(&e->st, ids, n, nll, count, d);
  return rc;
}

size_t ttq_engine_linear_bytes(const ttq_engine *e) {
  if (e->has_qm) return ttq_qmodel_bytes(&e->qm);
  size_t b = 0;
  for (int l = 0; l < e->m->cfg.n_layers; l++)
    for (int p = 0; p < TTQ_N_PROJ; p++) b += ttq_proj_weight(e->m, l, p)->nbytes;
  return b;
}
