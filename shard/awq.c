/* awq.c -- AWQ calibration: collection, alpha search, file I/O; see awq.h.
 * Invariant: a loaded ttq_awq matches the model it was loaded for (shapes and content key). */
#include "awq.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "lowrank.h"
#include "tp.h"
#include "util.h"

/* The collector: statistics, and per (layer, input) the rows offered and the rows kept. */
struct ttq_awq_collector {
  ttq_stats stats;
  int max_rows, stride, n_layers;
  int64_t *seen;
  int *kept;
  float **X;
};

int ttq_awq_collector_new(ttq_awq_collector **out, const ttq_model *m, int max_rows, int stride,
                          ttq_diag *d) {
  ttq_awq_collector *c = calloc(1, sizeof *c);
  if (!c) return ttq__fail(d, TTQ_ENOMEM, "out of memory");
  int rc = ttq_stats_init(&c->stats, &m->cfg, d);
  int n = m->cfg.n_layers * TTQ_N_INPUTS;
  c->max_rows = max_rows;
  c->stride = stride > 0 ? stride : 1;
  c->n_layers = m->cfg.n_layers;
  c->seen = calloc((size_t)n, sizeof *c->seen);
  c->kept = calloc((size_t)n, sizeof *c->kept);
  c->X = calloc((size_t)n, sizeof *c->X);
  if (rc || !c->seen || !c->kept || !c->X) {
    ttq_awq_collector_free(c);
    return rc ? rc : ttq__fail(d, TTQ_ENOMEM, "out of memory");
  }
  for (int i = 0; i < n; i++) {
    c->X[i] = malloc((size_t)max_rows * c->stats.width[i % TTQ_N_INPUTS] * sizeof(float));
    if (!c->X[i]) {
      ttq_awq_collector_free(c);
      return ttq__fail(d, TTQ_ENOMEM, "out of memory for %d calibration rows", max_rows);
    }
  }
  *out = c;
  return 0;
}

void ttq_awq_collector_free(ttq_awq_collector *cc) {
  ttq_awq_collector *c = cc;
  if (!c) return;
  for (int i = 0; c->X && i < c->n_layers * TTQ_N_INPUTS; i++) free(c->X[i]);
  free(c->X), free(c->seen), free(c->kept);
  ttq_stats_free(&c->stats);
  free(c);
}

static void collect_tap(void *u, int layer, int input, const float *X, int n, int width) {
  ttq_awq_collector *c = u;
  int i = layer * TTQ_N_INPUTS + input;
  for (int t = 0; t < n; t++, c->seen[i]++)
    if (c->seen[i] % c->stride == 0 && c->kept[i] < c->max_rows)
      memcpy(c->X[i] + (size_t)c->kept[i]++ * width, X + (size_t)t * width, (size_t)width * 4);
}

void ttq_awq_collector_attach(ttq_awq_collector *cc, ttq_state *s) {
  ttq_awq_collector *c = cc;
  s->stats = &c->stats;
  s->tap = collect_tap;
  s->tap_u = c;
}

int64_t ttq_awq_collector_tokens(const ttq_awq_collector *cc) {
  const ttq_awq_collector *c = cc;
  return (int64_t)*ttq_stats_count(&c->stats, 0, TTQ_IN_ATTN);
}

void ttq_awq_free(ttq_awq *a) {
  free(a->alpha);
  free(a->scale);
  memset(a, 0, sizeof *a);
}

static int awq_alloc(ttq_awq *a, const ttq_model *m, int bits, int group, ttq_diag *d) {
  memset(a, 0, sizeof *a);
  const ttq_config *c = m->tp ? &m->tp->full : &m->cfg; /* scales are full-width */
  a->n_layers = c->n_layers;
  a->bits = bits;
  a->group = group;
  a->width[TTQ_IN_ATTN] = c->dim;
  a->width[TTQ_IN_O] = c->n_heads * c->head_dim;
  a->width[TTQ_IN_MLP] = c->dim;
  a->width[TTQ_IN_DOWN] = c->ffn_dim;
  for (int i = 0; i < TTQ_N_INPUTS; i++) a->layer_len += (size_t)a->width[i];
  a->alpha = calloc((size_t)a->n_layers * TTQ_N_INPUTS, sizeof *a->alpha);
  a->scale = calloc((size_t)a->n_layers * a->layer_len, sizeof *a->scale);
  if (!a->alpha || !a->scale) {
    ttq_awq_free(a);
    return ttq__fail(d, TTQ_ENOMEM, "out of memory");
  }
  return 0;
}

static float *scale_of(const ttq_awq *a, int l, int input) {
  float *s = a->scale + (size_t)l * a->layer_len;
  for (int k = 0; k < input; k++) s += a->width[k];
  return s;
}

int ttq_awq_search(const ttq_awq_collector *cc, const ttq_model *m, int bits, int group,
                   int threads, ttq_awq *out, void (*progress)(int, int), ttq_diag *d) {
  const ttq_awq_collector *c = cc;
  ttq_qcfg qc = ttq_qcfg_default();
  qc.method = TTQ_METHOD_AWQ;
  qc.bits = bits;
  qc.group = group;
  int rc = ttq_qcfg_check(&qc, &m->cfg, d);
  if (rc) return rc;
  if (ttq_awq_collector_tokens(cc) <= 0)
    return ttq__fail(d, TTQ_EINVAL, "no calibration tokens were collected");
  if ((rc = awq_alloc(out, m, bits, group, d))) return rc;
  if (threads <= 0) threads = omp_get_num_procs();
  const ttq_kernels *k = ttq_kernels_select(NULL);
  openblas_set_num_threads(1);
  for (int l = 0; l < m->cfg.n_layers && rc == 0; l++) {
    for (int in = 0; in < TTQ_N_INPUTS && rc == 0; in++) {
      const int w = c->stats.width[in], n = c->kept[l * TTQ_N_INPUTS + in];
      const float *X = c->X[l * TTQ_N_INPUTS + in];
      const double *sa = ttq_stats_sumabs(&c->stats, l, in);
      const double T = *ttq_stats_count(&c->stats, l, in);
      int projs[3], np = 0;
      for (int p = 0; p < TTQ_N_PROJ; p++)
        if (ttq_proj_input[p] == in) projs[np++] = p;
      /* reference outputs Y = X W^T and f32 weights for each projection */
      float *Y[3] = {0}, *Wf[3] = {0}, *Yq = NULL, *XS = malloc((size_t)n * w * 4);
      float *s = malloc((size_t)w * 4), *best = malloc((size_t)w * 4);
      ttq_qmatrix q[3];
      memset(q, 0, sizeof q);
      double best_err = INFINITY;
      float best_alpha = 0;
      int64_t maxrows = 0;
      for (int j = 0; j < np; j++) {
        const ttq_tensor *t = ttq_proj_weight(m, l, projs[j]);
        const int64_t rows = t->shape[0];
        maxrows = rows > maxrows ? rows : maxrows;
        Y[j] = malloc((size_t)n * rows * 4);
        Wf[j] = malloc((size_t)rows * w * 4);
        if (!Y[j] || !Wf[j] || ttq_qmatrix_alloc(&q[j], rows, w, bits, group, d)) {
          rc = rc ? rc : TTQ_ENOMEM;
          break;
        }
        const size_t rb = t->nbytes / (size_t)rows;
        for (int64_t r = 0; r < rows; r++)
          ttq_row_to_f32(k, t->dtype, (const uint8_t *)t->data + (size_t)r * rb, Wf[j] + (size_t)r * w, w);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, (int)rows, w, 1.0f, X, w, Wf[j], w,
                    0.0f, Y[j], (int)rows);
      }
      Yq = malloc((size_t)n * maxrows * 4);
      if (rc || !Yq || !XS || !s || !best) {
        rc = ttq__fail(d, TTQ_ENOMEM, "out of memory in the AWQ search");
      }
      for (int ai = 0; ai < 20 && rc == 0; ai++) {
        const float alpha = 0.05f * (float)ai;
        float smax = 0, smin = INFINITY;
        for (int i = 0; i < w; i++) {
          float v = (float)pow(sa[i] / T, alpha);
          s[i] = v > 1e-4f ? v : 1e-4f;
          smax = s[i] > smax ? s[i] : smax;
          smin = s[i] < smin ? s[i] : smin;
        }
        const float norm = 1.0f / sqrtf(smax * smin);
        for (int i = 0; i < w; i++) s[i] *= norm;
        for (int t = 0; t < n; t++)
          for (int i = 0; i < w; i++) XS[(size_t)t * w + i] = X[(size_t)t * w + i] / s[i];
        double err = 0;
        for (int j = 0; j < np; j++) {
          const int64_t rows = q[j].rows;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
          for (int64_t r0 = 0; r0 < rows; r0 += 32) {
            int64_t r1 = r0 + 32 < rows ? r0 + 32 : rows;
            ttq_quantize_rows_f32(&q[j], Wf[j], s, r0, r1);
            ttq_qmatmul(k, &q[j], XS, n, Yq, rows, r0, r1);
          }
          for (size_t e = 0; e < (size_t)n * rows; e++) {
            double diff = (double)Yq[e] - Y[j][e];
            err += diff * diff;
          }
        }
        if (err < best_err) {
          best_err = err;
          best_alpha = alpha;
          memcpy(best, s, (size_t)w * 4);
        }
      }
      if (rc == 0) {
        out->alpha[l * TTQ_N_INPUTS + in] = best_alpha;
        memcpy(scale_of(out, l, in), best, (size_t)w * 4);
      }
      for (int j = 0; j < 3; j++) {
        free(Y[j]), free(Wf[j]);
        ttq_qmatrix_free(&q[j]);
      }
      free(Yq), free(XS), free(s), free(best);
    }
    if (progress && rc == 0) progress(l, m->cfg.n_layers);
  }
  if (rc) ttq_awq_free(out);
  return rc;
}

int ttq_awq_save(const ttq_awq *a, const ttq_model *m, const char *path, ttq_diag *d) {
  FILE *f = fopen(path, "wb");
  if (!f) return ttq__fail(d, TTQ_EIO, "%s: cannot create: %s", path, strerror(errno));
  uint64_t key = ttq_lowrank_key(m);
  int32_t hdr[7] = {a->n_layers, a->bits, a->group, a->width[0], a->width[1], a->width[2], a->width[3]};
  int ok = fwrite("TTQAWQ01", 8, 1, f) == 1 && fwrite(&key, 8, 1, f) == 1 && fwrite(hdr, 4, 7, f) == 7;
  for (int l = 0; ok && l < a->n_layers; l++)
    ok = fwrite(a->alpha + l * TTQ_N_INPUTS, 4, TTQ_N_INPUTS, f) == TTQ_N_INPUTS &&
         fwrite(a->scale + (size_t)l * a->layer_len, 4, a->layer_len, f) == a->layer_len;
  if (fclose(f) != 0 || !ok) return ttq__fail(d, TTQ_EIO, "%s: write failed", path);
  return 0;
}

int ttq_awq_load(ttq_awq *a, const ttq_model *m, const char *path, ttq_diag *d) {
  FILE *f = fopen(path, "rb");
  if (!f) return ttq__fail(d, TTQ_EIO, "%s: cannot open: %s", path, strerror(errno));
  char magic[8];
  uint64_t key;
  int32_t hdr[7];
  int rc = 0;
  if (fread(magic, 8, 1, f) != 1 || memcmp(magic, "TTQAWQ01", 8) || fread(&key, 8, 1, f) != 1 ||
      fread(hdr, 4, 7, f) != 7) {
    rc = ttq__fail(d, TTQ_EFORMAT, "%s: not a ttq AWQ calibration file (bad header)", path);
    goto out;
  }
  uint64_t want = ttq_lowrank_key(m->tp ? m->tp->full_model : m);
  if (key != want) {
    rc = ttq__fail(d, TTQ_EINVAL, "%s: made for another model (content key %016llx, this model %016llx)",
                   path, (unsigned long long)key, (unsigned long long)want);
    goto out;
  }
  if ((rc = awq_alloc(a, m, hdr[1], hdr[2], d))) goto out;
  if (hdr[0] != a->n_layers || hdr[3] != a->width[0] || hdr[4] != a->width[1] ||
      hdr[5] != a->width[2] || hdr[6] != a->width[3]) {
    ttq_awq_free(a);
    rc = ttq__fail(d, TTQ_EFORMAT, "%s: shapes do not match the model", path);
    goto out;
  }
  for (int l = 0; l < a->n_layers; l++)
    if (fread(a->alpha + l * TTQ_N_INPUTS, 4, TTQ_N_INPUTS, f) != TTQ_N_INPUTS ||
        fread(a->scale + (size_t)l * a->layer_len, 4, a->layer_len, f) != a->layer_len) {
      ttq_awq_free(a);
      rc = ttq__fail(d, TTQ_EFORMAT, "%s: truncated at layer %d", path, l);
      goto out;
    }
  if (fgetc(f) != EOF) {
    ttq_awq_free(a);
    rc = ttq__fail(d, TTQ_EFORMAT, "%s: trailing bytes after the last layer", path);
  }
out:
  fclose(f);
  return rc;
}
