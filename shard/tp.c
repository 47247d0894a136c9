/* tp.c -- tensor-parallel planning and slicing; see tp.h.
 * Invariant: the slices of all ranks of a plan partition every split dimension exactly
 * (query heads, ffn channels, vocabulary), so their union is the full model. */
#include "tp.h"

#include <stdio.h>
#include <stdlib.h>

#include "lowrank.h"
#include "qmodel.h"
#include "stats.h"
#include "util.h"

int ttq_tp_plan(const ttq_config *c, int rank, int size, int align, ttq_tp *out, ttq_diag *d) {
  memset(out, 0, sizeof *out);
  if (size < 1 || rank < 0 || rank >= size)
    return ttq__fail(d, TTQ_EINVAL, "rank %d of %d is invalid", rank, size);
  if (c->n_heads % size != 0) {
    char ok[256];
    size_t k = 0;
    for (int p = 1; p <= c->n_heads && k < sizeof ok - 8; p++)
      if (c->n_heads % p == 0) k += (size_t)snprintf(ok + k, sizeof ok - k, "%s%d", k ? ", " : "", p);
    return ttq__fail(d, TTQ_EINVAL,
                     "%d ranks cannot split %d attention heads; rank counts that work: %s", size,
                     c->n_heads, ok);
  }
  if (align < 1) align = 1;
  out->rank = rank;
  out->size = size;
  out->full = *c;
  out->heads = c->n_heads / size;
  out->head0 = rank * out->heads;
  const int G = c->n_heads / c->n_kv_heads;
  out->kv0 = out->head0 / G;
  out->kvs = (out->head0 + out->heads - 1) / G - out->kv0 + 1;
  if ((out->heads * c->head_dim) % align != 0)
    return ttq__fail(d, TTQ_EINVAL,
                     "%d ranks give each rank %d attention channels (o input), not a multiple of "
                     "%d (the quantization group): use fewer ranks or a smaller group",
                     size, out->heads * c->head_dim, align);
  /* ffn: split in units of `align`, as evenly as possible */
  if (c->ffn_dim % align != 0 || c->ffn_dim / align < size)
    return ttq__fail(d, TTQ_EINVAL,
                     "the ffn size %d cannot be split over %d ranks on multiples of %d (the "
                     "quantization group): use fewer ranks or a smaller group",
                     c->ffn_dim, size, align);
  int units = c->ffn_dim / align, per = units / size, extra = units % size;
  out->ffn0 = (rank * per + (rank < extra ? rank : extra)) * align;
  out->ffn = (per + (rank < extra ? 1 : 0)) * align;
  int vper = c->vocab / size, vextra = c->vocab % size;
  out->vocab0 = rank * vper + (rank < vextra ? rank : vextra);
  out->vocab = vper + (rank < vextra ? 1 : 0);
  return 0;
}

int ttq_tp_input_offset(const ttq_tp *tp, int input) {
  if (!tp) return 0;
  if (input == TTQ_IN_O) return tp->head0 * tp->full.head_dim;
  if (input == TTQ_IN_DOWN) return tp->ffn0;
  return 0;
}

/* Rows [r0, r0 + n) of t: a view. */
static ttq_tensor row_slice(const ttq_tensor *t, int64_t r0, int64_t n) {
  ttq_tensor v = *t;
  size_t rb = t->nbytes / (size_t)t->shape[0];
  v.data = (const uint8_t *)t->data + (size_t)r0 * rb;
  v.shape[0] = n;
  v.nbytes = rb * (size_t)n;
  return v;
}

/* Columns [c0, c0 + n) of t, copied into a contiguous buffer recorded in m->owned. */
static int col_slice(ttq_model *m, const ttq_tensor *t, int64_t c0, int64_t n, ttq_tensor *out) {
  const int64_t rows = t->shape[0], cols = t->shape[1];
  size_t rb = t->nbytes / (size_t)rows, eb = ttq_dtype_bytes(t->dtype, 32) / 32;
  if (t->dtype == TTQ_Q8_0) return TTQ_EUNSUPPORTED;
  size_t nb = eb * (size_t)n;
  uint8_t *buf = malloc(nb * (size_t)rows);
  void **o = realloc(m->owned, (size_t)(m->n_owned + 1) * sizeof *o);
  if (!buf || !o) {
    free(buf);
    if (o) m->owned = o;
    return TTQ_ENOMEM;
  }
  m->owned = o;
  m->owned[m->n_owned++] = buf;
  for (int64_t r = 0; r < rows; r++)
    memcpy(buf + (size_t)r * nb, (const uint8_t *)t->data + (size_t)r * rb + (size_t)c0 * eb, nb);
  *out = *t;
  out->data = buf;
  out->shape[1] = n;
  out->nbytes = nb * (size_t)rows;
  (void)cols;
  return 0;
}

int ttq_model_shard(const ttq_model *full, const ttq_tp *tp, ttq_model **out, ttq_diag *d) {
  *out = NULL;
  ttq_model *m = calloc(1, sizeof *m);
  if (!m) return ttq__fail(d, TTQ_ENOMEM, "out of memory");
  *m = *full;
  m->owned = NULL;
  m->n_owned = 0;
  m->tp = malloc(sizeof *m->tp);
  m->layers = calloc((size_t)full->cfg.n_layers, sizeof *m->layers);
  if (!m->tp || !m->layers) {
    free(m->tp), free(m->layers), free(m);
    return ttq__fail(d, TTQ_ENOMEM, "out of memory");
  }
  *m->tp = *tp;
  m->tp->full_model = full;
  const ttq_config *c = &full->cfg;
  const int hd = c->head_dim;
  m->cfg.n_heads = tp->heads;
  m->cfg.n_kv_heads = tp->kvs;
  m->cfg.ffn_dim = tp->ffn;
  m->cfg.head_offset = tp->head0;
  m->cfg.kv_offset = tp->kv0;
  m->cfg.kv_group = c->n_heads / c->n_kv_heads;
  m->head = row_slice(&full->head, tp->vocab0, tp->vocab);
  int rc = 0;
  for (int l = 0; l < c->n_layers && rc == 0; l++) {
    const ttq_layer *F = &full->layers[l];
    ttq_layer *L = &m->layers[l];
    *L = *F;
    L->wq = row_slice(&F->wq, (int64_t)tp->head0 * hd, (int64_t)tp->heads * hd);
    L->wk = row_slice(&F->wk, (int64_t)tp->kv0 * hd, (int64_t)tp->kvs * hd);
    L->wv = row_slice(&F->wv, (int64_t)tp->kv0 * hd, (int64_t)tp->kvs * hd);
    L->w_gate = row_slice(&F->w_gate, tp->ffn0, tp->ffn);
    L->w_up = row_slice(&F->w_up, tp->ffn0, tp->ffn);
    if ((rc = col_slice(m, &F->wo, (int64_t)tp->head0 * hd, (int64_t)tp->heads * hd, &L->wo)) == 0)
      rc = col_slice(m, &F->w_down, tp->ffn0, tp->ffn, &L->w_down);
  }
  if (rc) {
    ttq_model_free(m);
    return ttq__fail(d, rc, "%s: cannot slice the model for rank %d of %d: %s", full->path,
                     tp->rank, tp->size, ttq_strerror(rc));
  }
  *out = m;
  return 0;
}
