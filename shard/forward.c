/* forward.c -- the forward pass, readable top to bottom (ttq_forward at the end).
 *
 *   x = embed[token]
 *   for each layer:
 *     h = rmsnorm(x) ; q,k,v = h Wq^T, h Wk^T, h Wv^T ; (qwen3: per-head rmsnorm of q, k)
 *     rope(q, k) ; cache k, v ; a = softmax(q k^T / sqrt(hd)) v (grouped-query, causal)
 *     x += a Wo^T
 *     h = rmsnorm(x) ; x += (silu(h Wg^T) * (h Wu^T)) Wd^T
 *   logits = rmsnorm(x) Wout^T
 *
 * Matrix products of many tokens read BF16/F16 weights in place through gemm.h (AMX tiles where
 * the machine has them), else convert the weight to f32 and call OpenBLAS sgemm; single tokens
 * use the dtype-native dot kernels straight from the memory map.
 * Fused TTQ (s->fuse, see forward.h): layer_input() turns each complete input's sums of squares
 * into D, and linear() quantizes every row right after multiplying it (a tile still in L2) or
 * converting it to f32 (still in L1).
 * One decoding step takes decode_token instead: the same layer for one token, in one parallel
 * region (bit-identical logits, no fork and join per step).
 * Invariant: the cache holds exactly s->pos tokens; a failed call leaves it unchanged. */
#include "forward.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "gemm.h"
#include "tp.h"
#include "util.h"

#define GEMM_MIN_TOKENS 4
/* Queries per block of the prompt's attention: each block multiplies only the keys its last query
 * sees. */
#ifndef ATT_BLOCK
#define ATT_BLOCK 64
#endif
#define GEMM_TILE_ROWS 128 /* rows per in-place GEMM call: fused TTQ quantizes them from L2 */

static void *xalloc(size_t n, bool *ok) {
  void *p = NULL;
  if (n == 0) n = 64;
  if (posix_memalign(&p, 64, (n + 63) / 64 * 64) != 0) {
    *ok = false;
    return NULL;
  }
  return p;
}

size_t ttq_kv_bytes_per_token(const ttq_config *c, ttq_dtype kv) {
  return (size_t)2 * c->n_layers * c->n_kv_heads * c->head_dim * (kv == TTQ_F16 ? 2 : 4);
}

static size_t kv_elem_bytes(const ttq_state *s) { return s->kv_dtype == TTQ_F16 ? 2 : 4; }

/* Positions per key/value head in the caches: max_ctx rounded up to whole blocks of 16 (the f16
 * keys' layout, kernels.h attend_f16). */
static size_t kv_rows(const ttq_state *s) { return ((size_t)s->max_ctx + 15) / 16 * 16; }

/* Byte address of key/value head kh of layer l in a cache (k_cache or v_cache). */
static void *kv_head(const ttq_state *s, void *cache, int l, int kh) {
  const ttq_config *c = &s->m->cfg;
  const size_t head = (size_t)l * c->n_kv_heads + (size_t)kh;
  return (uint8_t *)cache + head * kv_rows(s) * c->head_dim * kv_elem_bytes(s);
}

/* Stores the key and value of position p into head base addresses kb and vb: f32 rows, or
 * f16 (rounded to nearest even) with the keys in blocks of 16 positions, element (p, i) at
 * ((p / 16) * hd + i) * 16 + p % 16 (kernels.h attend_f16). A block's first position clears
 * the block: attend_f16 reads the last block whole, and its positions not yet stored are then
 * zeros, not what an earlier sequence or the allocator left (they never reach the outputs).
 * Positions are stored in order from 0 (ttq_forward). Can't fail. */
static void kv_store(const ttq_state *s, void *kb, void *vb, int p, const float *k, const float *v,
                     int hd) {
  if (s->kv_dtype == TTQ_F16) {
    uint16_t *kt = (uint16_t *)kb + (size_t)(p / 16) * hd * 16 + p % 16, *vr = (uint16_t *)vb + (size_t)p * hd;
    if (p % 16 == 0) memset(kt, 0, (size_t)hd * 16 * sizeof *kt);
    for (int i = 0; i < hd; i++) kt[(size_t)i * 16] = ttq__f32_to_f16(k[i]);
    for (int i = 0; i < hd; i++) vr[i] = ttq__f32_to_f16(v[i]);
  } else {
    memcpy((float *)kb + (size_t)p * hd, k, (size_t)hd * 4);
    memcpy((float *)vb + (size_t)p * hd, v, (size_t)hd * 4);
  }
}

/* Positions [0, n) of an f16 cache head as f32 rows [n][hd]: keys from their blocks of 16
 * (tmp: 16 * hd floats), values converted in place order. */
static void kv_head_f32(const ttq_state *s, const uint16_t *kb, const uint16_t *vb, int n, int hd,
                        float *kf, float *vf, float *tmp) {
  for (int b = 0; b < n; b += 16) {
    s->kern->cvt_f16(kb + (size_t)b * hd, tmp, (int64_t)16 * hd); /* [i][16] */
    const int nb = n - b < 16 ? n - b : 16;
    for (int j = 0; j < nb; j++)
      for (int i = 0; i < hd; i++) kf[(size_t)(b + j) * hd + i] = tmp[(size_t)i * 16 + j];
  }
  s->kern->cvt_f16(vb, vf, (int64_t)n * hd);
}

int ttq_state_init(ttq_state *s, const ttq_model *m, int max_ctx, ttq_dtype kv, int threads,
                   const ttq_kernels *kern, ttq_diag *d) {
  memset(s, 0, sizeof *s);
  const ttq_config *c = &m->cfg;
  if (max_ctx <= 0 || max_ctx > c->max_pos)
    return ttq__fail(d, TTQ_EINVAL, "context size %d is outside 1..%d (the model's context length)",
                     max_ctx, c->max_pos);
  if (kv != TTQ_F32 && kv != TTQ_F16)
    return ttq__fail(d, TTQ_EINVAL, "KV cache type %s: f32 or f16", ttq_dtype_name(kv));
  s->m = m;
  s->kern = kern ? kern : ttq_kernels_select(NULL);
  s->threads = threads > 0 ? threads : omp_get_num_procs();
  s->max_ctx = max_ctx;
  s->max_batch = max_ctx < 512 ? max_ctx : 512;
  s->n_gemm_rows = GEMM_MIN_TOKENS;
  size_t B = (size_t)s->max_batch, qd = (size_t)c->n_heads * c->head_dim,
         kvd = (size_t)c->n_kv_heads * c->head_dim;
  /* bytes of each of the two caches (kv_rows: max_ctx in whole blocks of 16) */
  const size_t cache = ttq_kv_bytes_per_token(c, kv) / 2 * (((size_t)max_ctx + 15) / 16 * 16);
  size_t wmax = (size_t)c->vocab * c->dim;
  size_t cand[] = {qd * c->dim, (size_t)c->ffn_dim * c->dim};
  for (int i = 0; i < 2; i++)
    if (cand[i] > wmax) wmax = cand[i];
  bool ok = true;
  s->kv_dtype = kv;
  /* in huge pages where it is large: decode reads it all for every token (a page walk per 4 KiB
   * measured -x% of decode at 4096 tokens) */
  s->k_cache = ttq__alloc_huge(cache);
  s->v_cache = ttq__alloc_huge(cache);
  ok = s->k_cache && s->v_cache;
  if (kv == TTQ_F16) {
    s->kv_f32 = xalloc((size_t)s->threads * (2 * (size_t)max_ctx + 16) * c->head_dim * 4, &ok);
    s->kv_f32_head = xalloc((size_t)s->threads * sizeof(int), &ok);
  }
  s->rope_cos = xalloc((size_t)max_ctx * c->head_dim / 2 * 4, &ok);
  s->rope_sin = xalloc((size_t)max_ctx * c->head_dim / 2 * 4, &ok);
  s->x = xalloc(B * c->dim * 4, &ok);
  s->xb = xalloc(B * c->dim * 4, &ok);
  s->q = xalloc(B * qd * 4, &ok);
  s->k = xalloc(B * kvd * 4, &ok);
  s->v = xalloc(B * kvd * 4, &ok);
  s->att_out = xalloc(B * qd * 4, &ok);
  s->hb = xalloc(B * c->ffn_dim * 4, &ok);
  s->hb2 = xalloc(B * c->ffn_dim * 4, &ok);
  /* per thread: the prefill's scores (max_batch x ctx), or one token's for a key/value head's
   * query heads (at most n_heads x ctx) */
  s->att_stride = (size_t)(s->max_batch > c->n_heads ? s->max_batch : c->n_heads) * max_ctx;
  s->att = xalloc((size_t)s->threads * s->att_stride * 4, &ok);
  s->normw = xalloc((size_t)c->dim * 4, &ok);
  s->logits_local = m->tp ? xalloc(B * (size_t)m->head.shape[0] * 4, &ok) : NULL;
  size_t widest = (size_t)c->dim > qd ? (size_t)c->dim : qd;
  if ((size_t)c->ffn_dim > widest) widest = (size_t)c->ffn_dim;
  s->xs = xalloc(B * widest * 4, &ok);
  s->wbuf = xalloc(wmax * 4, &ok);
  s->wbuf_len = wmax;
  /* the in-place GEMM: the activation packed once per projection input, and per thread a work
   * buffer for one tile of GEMM_TILE_ROWS rows of the dtypes it takes (BF16, F16: linear()) */
  int isa = ttq_gemm_select(NULL);
  s->gemm_isa = isa < 0 ? TTQ_GEMM_SGEMM : isa;
  if (s->gemm_isa != TTQ_GEMM_SGEMM) {
    size_t work = ttq_gemm_work_bytes(s->gemm_isa, TTQ_BF16, s->max_batch, GEMM_TILE_ROWS, widest),
           wf16 = ttq_gemm_work_bytes(s->gemm_isa, TTQ_F16, s->max_batch, GEMM_TILE_ROWS, widest);
    if (wf16 > work) work = wf16;
    s->gemm_work_stride = (work + 63) / 64 * 64;
    s->gemm_work = xalloc((size_t)s->threads * s->gemm_work_stride, &ok);
    s->gemm_xbuf = xalloc(ttq_gemm_x_bytes(s->gemm_isa, s->max_batch, widest), &ok);
  }
  s->dec_dim = ((size_t)c->dim + 15) / 16 * 16;
  s->dec_stride = 3 * s->dec_dim + (widest + 15) / 16 * 16;
  s->dec = xalloc((size_t)s->threads * s->dec_stride * 4, &ok);
  s->qact_stride = (ttq_qact_bytes((int64_t)widest) + 63) / 64 * 64;
  s->qact_buf = xalloc((size_t)s->threads * s->qact_stride, &ok);
  s->fuse_sq = xalloc(widest * sizeof(double), &ok);
  s->fuse_d = xalloc(widest * 4, &ok);
  if (!ok) {
    ttq_state_free(s);
    return ttq__fail(d, TTQ_ENOMEM, "out of memory allocating the state for %d tokens", max_ctx);
  }
  /* RoPE tables, computed as Hugging Face does (f32 inverse frequencies, f32 angle). */
  int half = c->head_dim / 2;
  for (int i = 0; i < half; i++) {
    float inv = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)c->head_dim);
    for (int p = 0; p < max_ctx; p++) {
      float a = (float)p * inv;
      s->rope_cos[(size_t)p * half + i] = cosf(a);
      s->rope_sin[(size_t)p * half + i] = sinf(a);
    }
  }
  return 0;
}

void ttq_state_free(ttq_state *s) {
  void *bufs[] = {s->k_cache, s->v_cache, s->kv_f32, s->kv_f32_head, s->rope_cos, s->rope_sin, s->x, s->xb, s->q, s->k,
                   s->v, s->att_out, s->hb, s->hb2, s->att, s->normw, s->wbuf, s->xs, s->lr_tmp,
                   s->logits_local, s->dec};
  for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
  free(s->gemm_work);
  free(s->gemm_xbuf);
  free(s->fuse_sq);
  free(s->fuse_d);
  free(s->qact_buf);
  memset(s, 0, sizeof *s);
}

void ttq_state_reset(ttq_state *s) { s->pos = 0; }

/* ---- building blocks ---- */

static void rmsnorm(float *out, const float *x, const ttq_tensor *w, int n, float eps,
                    const ttq_kernels *k, float *wtmp) {
  double ss = 0;
#pragma omp simd reduction(+ : ss)
  for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
  float r = 1.0f / sqrtf((float)(ss / n) + eps);
  ttq_row_to_f32(k, w->dtype, w->data, wtmp, n);
#pragma omp simd
  for (int i = 0; i < n; i++) out[i] = wtmp[i] * (x[i] * r);
}

/* linear() of many tokens with BF16/F16 weights read in place (gemm.h): X packed once (each
 * thread its part), then each thread multiplies its own rows, GEMM_TILE_ROWS at a time; with Q
 * (fused TTQ) each tile of rows is quantized right after, while it is in L2. The codes are those
 * of the f32 path: the quantizer converts BF16/F16 exactly. */
static void gemm_inplace(ttq_state *s, const ttq_tensor *W, const float *X, int n, float *Y,
                         ttq_qmatrix *Q, const float *D) {
  const int64_t rows = W->shape[0], cols = W->shape[1];
  const size_t row_bytes = W->nbytes / (size_t)rows;
  ttq_gemm_x gx;
  if (ttq_gemm_x_init(&gx, (ttq_gemm_isa)s->gemm_isa, X, n, cols, s->gemm_xbuf) != 0)
    gx.isa = TTQ_GEMM_SGEMM; /* can't happen for the sizes the state was made for */
  double qtime = 0;
#pragma omp parallel num_threads(s->threads) reduction(+ : qtime)
  {
    int nt = omp_get_num_threads(), id = omp_get_thread_num();
    ttq_gemm_x_pack(&gx, id, nt);
#pragma omp barrier
    int64_t per = (rows + nt - 1) / nt, r0 = per * id, r1 = r0 + per < rows ? r0 + per : rows;
    void *work = s->gemm_work + (size_t)id * s->gemm_work_stride;
    for (int64_t a = r0; a < r1; a += GEMM_TILE_ROWS) {
      const int64_t b = a + GEMM_TILE_ROWS < r1 ? a + GEMM_TILE_ROWS : r1;
      if (gx.isa == TTQ_GEMM_SGEMM ||
          ttq_gemm_rows_x(&gx, W->dtype, W->data, row_bytes, a, b, Y + a, rows, work) != 0)
        for (int t = 0; t < n; t++) /* the fallback: the dot kernels, row by row */
          for (int64_t r = a; r < b; r++)
            Y[(size_t)t * rows + r] = ttq_dot_row(s->kern, W->dtype, (const uint8_t *)W->data +
                                                  (size_t)r * row_bytes, X + (size_t)t * cols, cols);
      if (Q) {
        double t0 = omp_get_wtime();
        ttq_quantize_rows_k(s->kern, Q, W->dtype, W->data, D, a, b);
        qtime += omp_get_wtime() - t0;
      }
    }
  }
  s->fuse_ms += qtime * 1e3 / s->threads;
}

/* Y[n x rows] = X[n x cols] W^T, W stored rows x cols in any dtype. With Q (fused TTQ), every
 * row of W is also quantized with scale D into Q right after it is read. */
static void linear(ttq_state *s, const ttq_tensor *W, const float *X, int n, float *Y,
                   ttq_qmatrix *Q, const float *D) {
  const int64_t rows = W->shape[0], cols = W->shape[1];
  const size_t row_bytes = W->nbytes / (size_t)rows;
  const uint8_t *base = W->data;
  const ttq_kernels *k = s->kern;
  if (n < s->n_gemm_rows) {
    if (Q) {
      double t0 = omp_get_wtime();
#pragma omp parallel for num_threads(s->threads) schedule(dynamic, 1)
      for (int64_t r = 0; r < rows; r += 16)
        ttq_quantize_rows_k(k, Q, W->dtype, base, D, r, r + 16 < rows ? r + 16 : rows);
      s->fuse_ms += (omp_get_wtime() - t0) * 1e3;
    }
    for (int t = 0; t < n; t++) {
      const float *x = X + (size_t)t * cols;
      float *y = Y + (size_t)t * rows;
#pragma omp parallel for num_threads(s->threads) schedule(static)
      for (int64_t r = 0; r < rows; r++)
        y[r] = ttq_dot_row(k, W->dtype, base + (size_t)r * row_bytes, x, cols);
    }
    return;
  }
  if (s->gemm_isa != TTQ_GEMM_SGEMM && (W->dtype == TTQ_BF16 || W->dtype == TTQ_F16)) {
    gemm_inplace(s, W, X, n, Y, Q, D);
    return;
  }
  /* Each thread converts its own slice of rows to f32 and multiplies it with one
   * single-threaded sgemm: no thread pool but ours. (Converting and multiplying tiles that stay
   * in L2 measured slower: sgemm packs X again for every tile.) */
  double qtime = 0;
#pragma omp parallel num_threads(s->threads) reduction(+ : qtime)
  {
    int nt = omp_get_num_threads(), id = omp_get_thread_num();
    int64_t per = (rows + nt - 1) / nt, r0 = per * id, r1 = r0 + per < rows ? r0 + per : rows;
    if (r0 < r1) {
      const float *w32 = (const float *)(base) + r0 * cols;
      if (W->dtype != TTQ_F32) {
        for (int64_t r = r0; r < r1; r++) {
          float *wr = s->wbuf + (size_t)r * cols;
          ttq_row_to_f32(k, W->dtype, base + (size_t)r * row_bytes, wr, cols);
          if (Q) { /* the f32 row is in L1: quantize it now (exact: the conversion is exact) */
            double t0 = omp_get_wtime();
            ttq_quantize_row_k(k, Q, TTQ_F32, wr, D, r);
            qtime += omp_get_wtime() - t0;
          }
        }
        w32 = s->wbuf + (size_t)r0 * cols;
      } else if (Q) {
        double t0 = omp_get_wtime();
        ttq_quantize_rows_k(k, Q, TTQ_F32, base, D, r0, r1);
        qtime += omp_get_wtime() - t0;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, (int)(r1 - r0), (int)cols, 1.0f, X,
                  (int)cols, w32, (int)cols, 0.0f, Y + r0, (int)rows);
    }
  }
  s->fuse_ms += qtime * 1e3 / s->threads; /* wall-clock share: the threads quantize in parallel */
}

/* This thread's share [a, b) of `total` rows: contiguous and 16-row aligned (the decode kernels
 * process rows in sets of 16). */
static void row_share(int64_t total, int nt, int id, int64_t *a, int64_t *b) {
  const int64_t per = ((total + nt - 1) / nt + 15) / 16 * 16;
  *a = per * id < total ? per * id : total;
  *b = *a + per < total ? *a + per : total;
}

/* Y = Q X for the n rows of X (Y row stride = q->rows), q's rows split over the threads; one
 * token through its prepared input, as decode_token multiplies (so its products are decode's bit
 * for bit). */
static void qmatrix_rows(ttq_state *s, const ttq_qmatrix *q, const float *X, int n, float *Y) {
#pragma omp parallel num_threads(s->threads)
  {
    int64_t r0, r1;
    const int id = omp_get_thread_num();
    row_share(q->rows, omp_get_num_threads(), id, &r0, &r1);
    if (r0 < r1 && n == 1) {
      ttq_qact a;
      ttq_qact_prepare(s->kern, q, X, s->qact_buf + (size_t)id * s->qact_stride, &a);
      ttq_qmatvec_qact(s->kern, q, &a, Y, r0, r1);
    } else if (r0 < r1) {
      ttq_qmatmul(s->kern, q, X, n, Y, q->rows, r0, r1);
    }
  }
}

/* Quantized product Y = Q(W D)(X / D) [+ B (A X)] of projection p of layer l, rows split
 * over threads. X is the unscaled input, XS the input scaled by 1/D (== X when D = 1). */
static void qlinear(ttq_state *s, int l, int p, const float *X, const float *XS, int n, float *Y) {
  const ttq_qmatrix *q = &s->qm->layers[l].w[p];
  const int64_t rows = q->rows;
  qmatrix_rows(s, q, XS, n, Y);
  const ttq_lowrank *lr = s->qm->lr;
  if (lr) {
    const int r = lr->rank;
    const float *A = lr->A[l * TTQ_N_PROJ + p], *B = lr->B[l * TTQ_N_PROJ + p];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, r, (int)q->cols, 1.0f, X, (int)q->cols,
                A, (int)q->cols, 0.0f, s->lr_tmp, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, (int)rows, r, 1.0f, s->lr_tmp, r, B, r,
                1.0f, Y, (int)rows);
  }
}

/* Fused TTQ: D of this complete input (the whole prompt is this chunk) into s->fuse_d, and 1/D
 * into the quantized model. The sums are those ttq_stats_add_cols would make from zero, in the
 * same order; for an input every rank holds whole (attn, mlp) rank 0's sums are shared by an
 * allreduce (the others add zeros), exactly as the statistics of the separate pass are. */
static void fuse_scale(ttq_state *s, int l, int input, const float *X, int n, int width) {
  double t0 = omp_get_wtime();
  ttq_tp *tp = s->m->tp;
  const bool replicated = input == TTQ_IN_ATTN || input == TTQ_IN_MLP;
  double *sq = s->fuse_sq;
  const bool mine = !tp || tp->rank == 0 || !replicated;
  /* channels split over the threads; each channel sums over t in order (x^2 is exact in double,
   * so vector and fused forms give the same sums as ttq_stats_add_cols) */
#pragma omp parallel for num_threads(s->threads) schedule(static)
  for (int c0 = 0; c0 < width; c0 += 256) {
    const int c1 = c0 + 256 < width ? c0 + 256 : width;
    for (int c = c0; c < c1; c++) sq[c] = 0;
    for (int t = 0; mine && t < n; t++) {
      const float *x = X + (size_t)t * width;
#pragma omp simd
      for (int c = c0; c < c1; c++) sq[c] += (double)x[c] * x[c];
    }
  }
  if (tp && tp->size > 1 && replicated && tp->allreduce_f64) {
    tp->allreduce_f64(tp->u, sq, (size_t)width);
    tp->sent_bytes += (size_t)width * sizeof(double);
    tp->calls++;
  }
  float *inv = s->fuse->layers[l].inv_d[input];
#pragma omp parallel for num_threads(s->threads) schedule(static)
  for (int c0 = 0; c0 < width; c0 += 256) {
    const int c1 = c0 + 256 < width ? c0 + 256 : width;
    ttq_scale_from_sumsq(&s->fuse->cfg, sq + c0, n, c1 - c0, s->fuse_d + c0);
    for (int c = c0; c < c1; c++) inv[c] = 1.0f / s->fuse_d[c];
  }
  s->fuse->alpha[l * TTQ_N_INPUTS + input] = s->fuse->cfg.alpha;
  s->stats_ms += (omp_get_wtime() - t0) * 1e3;
}

/* The input the quantized projections multiply: X scaled by 1/D into out ([n][width]), or X
 * itself (full-precision weights, or no D). */
static const float *scale_input(const ttq_state *s, int l, int input, const float *X, int n,
                                int width, float *out) {
  if (!s->qm) return X;
  const float *inv = s->qm->layers[l].inv_d[input];
  if (!inv) return X;
  for (int t = 0; t < n; t++) {
    const float *restrict x = X + (size_t)t * width;
    float *restrict xs = out + (size_t)t * width;
#pragma omp simd
    for (int i = 0; i < width; i++) xs[i] = x[i] * inv[i];
  }
  return out;
}

/* Everything that happens to a linear layer's input once, before its projections: statistics,
 * taps, and (quantized) the 1/D scaling. Returns the input the projections multiply. */
static const float *layer_input(ttq_state *s, int l, int input, const float *X, int n, int width) {
  if (s->fuse) fuse_scale(s, l, input, X, n, width);
  if (s->stats) { /* tensor parallel: each channel is counted by exactly one rank */
    const ttq_tp *tp = s->m->tp;
    const bool replicated = input == TTQ_IN_ATTN || input == TTQ_IN_MLP;
    if (!tp || tp->rank == 0 || !replicated) {
      double t0 = omp_get_wtime();
      const int off = ttq_tp_input_offset(tp, input);
#pragma omp parallel for num_threads(s->threads) schedule(static)
      for (int c0 = 0; c0 < width; c0 += 256) /* channels split over the threads, as fuse_scale */
        ttq_stats_add_cols(s->stats, s->kern, l, input, X, n, width, off, c0,
                           c0 + 256 < width ? c0 + 256 : width);
      if (!tp || tp->rank == 0) *ttq_stats_count(s->stats, l, input) += n;
      s->stats_ms += (omp_get_wtime() - t0) * 1e3;
    }
  }
  if (s->tap) s->tap(s->tap_u, l, input, X, n, width);
  return scale_input(s, l, input, X, n, width, s->xs);
}

/* One projection: quantized when a quantized model is set, else the checkpoint's weights
 * (fused TTQ: which it also quantizes). */
static void proj(ttq_state *s, int l, int p, const float *X, const float *XS, int n, float *Y) {
  if (s->qm) qlinear(s, l, p, X, XS, n, Y);
  else if (s->fuse)
    linear(s, ttq_proj_weight(s->m, l, p), X, n, Y, &s->fuse->layers[l].w[p], s->fuse_d);
  else linear(s, ttq_proj_weight(s->m, l, p), X, n, Y, NULL, NULL);
}

/* Decoding one token, called by every thread of a parallel region: rows [r0[i], r1[i]) of each of
 * the np projections ps[] of layer l that share the input (X unscaled; qa the input scaled by 1/D
 * and prepared for the quantized weights s->qm, else unused), into Y[i]. Same products as proj()
 * row for row. */
static void proj_ranges(ttq_state *s, int l, const int *ps, int np, const float *X,
                        const ttq_qact *qa, float *const *Y, const int64_t *r0, const int64_t *r1) {
  for (int i = 0; i < np; i++) {
    if (r0[i] >= r1[i]) continue;
    if (s->qm) {
      ttq_qmatvec_qact(s->kern, &s->qm->layers[l].w[ps[i]], qa, Y[i], r0[i], r1[i]);
    } else {
      const ttq_tensor *W = ttq_proj_weight(s->m, l, ps[i]);
      const size_t rb = W->nbytes / (size_t)W->shape[0];
      for (int64_t r = r0[i]; r < r1[i]; r++)
        Y[i][r] = ttq_dot_row(s->kern, W->dtype, (const uint8_t *)W->data + (size_t)r * rb, X,
                              W->shape[1]);
    }
  }
}

/* The input XS of layer l's projection p prepared in thread id's buffer, for the quantized
 * weights (else qa is unused). One preparation serves every projection of the same input. */
static void proj_prepare(ttq_state *s, int l, int p, const float *XS, int id, ttq_qact *qa) {
  if (s->qm)
    ttq_qact_prepare(s->kern, &s->qm->layers[l].w[p], XS,
                     s->qact_buf + (size_t)id * s->qact_stride, qa);
}

static int64_t proj_height(const ttq_state *s, int l, int p) {
  return s->qm ? s->qm->layers[l].w[p].rows : ttq_proj_weight(s->m, l, p)->shape[0];
}

/* Rows [a, b) of the np projections ps[]' rows concatenated (glu: of gate and up alike, then
 * hb = silu(hb) * hb2 over them; ps = gate, up and Y = hb, hb2). */
static void proj_span(ttq_state *s, int l, const int *ps, int np, const float *X,
                      const ttq_qact *qa, float *const *Y, bool glu, int64_t a, int64_t b) {
  int64_t r0[4], r1[4], o = 0;
  for (int i = 0; i < np; i++) {
    const int64_t rows = proj_height(s, l, ps[i]);
    r0[i] = a - o < 0 ? 0 : a - o > rows ? rows : a - o;
    r1[i] = b - o > rows ? rows : b - o < 0 ? 0 : b - o;
    if (!glu) o += rows;
  }
  proj_ranges(s, l, ps, np, X, qa, Y, r0, r1);
  if (glu) s->kern->silu_mul(Y[0] + a, Y[1] + a, b - a);
}

/* proj_span over this thread's share (row_share) of the rows: one contiguous stream per thread.
 * (Handing out the rest of a slower thread's share to the faster one removed most of the
 * barrier waits but not the time: both threads stream from one memory, and a thread running
 * alone reads faster. Measured within noise, W4 and W2.) */
static void proj_rows(ttq_state *s, int l, const int *ps, int np, const float *X, const float *XS,
                      float *const *Y, bool glu, int id, int nt) {
  int64_t total = 0, a, b;
  for (int i = 0; i < np; i++) total += glu && i ? 0 : proj_height(s, l, ps[i]);
  row_share(total, nt, id, &a, &b);
  if (a >= b) return;
  ttq_qact qa;
  proj_prepare(s, l, ps[0], XS, id, &qa);
  proj_span(s, l, ps, np, X, &qa, Y, glu, a, b);
}

/* Rotates pairs of one head vector by the angle table of position p. */
static void rope(float *v, int hd, const float *cs, const float *sn, bool interleaved) {
  int half = hd / 2;
  for (int i = 0; i < half; i++) {
    int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
    float x0 = v[a], x1 = v[b];
    v[a] = x0 * cs[i] - x1 * sn[i];
    v[b] = x1 * cs[i] + x0 * sn[i];
  }
}

static void head_rmsnorm(float *v, int hd, const float *w, float eps) {
  double ss = 0;
  for (int i = 0; i < hd; i++) ss += (double)v[i] * v[i];
  float r = 1.0f / sqrtf((float)(ss / hd) + eps);
  for (int i = 0; i < hd; i++) v[i] = w[i] * (v[i] * r);
}

/* Token t of the chunk at position p of layer l: (qwen3) per-head rmsnorm and RoPE of its query
 * heads [qh0, qh1) and key heads [kh0, kh1), and those keys and values into the cache. */
static void rope_and_cache(ttq_state *s, int l, int t, int p, int qh0, int qh1, int kh0, int kh1) {
  const ttq_config *c = &s->m->cfg;
  const ttq_layer *L = &s->m->layers[l];
  const int hd = c->head_dim, nkv = c->n_kv_heads, half = hd / 2;
  const size_t qd = (size_t)c->n_heads * hd, kvd = (size_t)nkv * hd;
  float qn[1024], kn[1024];
  if (c->qk_norm) {
    ttq_row_to_f32(s->kern, L->q_norm.dtype, L->q_norm.data, qn, hd);
    ttq_row_to_f32(s->kern, L->k_norm.dtype, L->k_norm.data, kn, hd);
  }
  const float *cs = s->rope_cos + (size_t)p * half, *sn = s->rope_sin + (size_t)p * half;
  for (int h = qh0; h < qh1; h++) {
    float *qh = s->q + (size_t)t * qd + (size_t)h * hd;
    if (c->qk_norm) head_rmsnorm(qh, hd, qn, c->norm_eps);
    rope(qh, hd, cs, sn, c->rope_interleaved);
  }
  for (int h = kh0; h < kh1; h++) {
    float *kh = s->k + (size_t)t * kvd + (size_t)h * hd;
    if (c->qk_norm) head_rmsnorm(kh, hd, kn, c->norm_eps);
    rope(kh, hd, cs, sn, c->rope_interleaved);
    kv_store(s, kv_head(s, s->k_cache, l, h), kv_head(s, s->v_cache, l, h), p, kh,
             s->v + (size_t)t * kvd + (size_t)h * hd, hd);
  }
}

/* Decode attention is split into work items: one per token, key/value head and part of its
 * query heads (the parts give every thread work when there are fewer key/value heads than
 * threads). attend_items: the items per token. */
static int attend_items(const ttq_state *s) {
  const ttq_config *c = &s->m->cfg;
  const int nkv = c->n_kv_heads;
  return nkv * (nkv >= s->threads ? 1 : (s->threads + nkv - 1) / nkv);
}

/* Work item `it` of the new tokens from position p0 of layer l: attention of the query heads of
 * one part of one key/value head for one token, into s->att_out; the scores go to the calling
 * thread's s->att. Local query heads of one key/value head are contiguous:
 * (head_offset + h) / kv_group - kv_offset is monotonic. */
static void attend_item(ttq_state *s, int l, int it, int p0) {
  const ttq_config *c = &s->m->cfg;
  const int hd = c->head_dim, nh = c->n_heads, nkv = c->n_kv_heads;
  const size_t qd = (size_t)nh * hd;
  const int g = c->kv_group < nh ? c->kv_group : nh, parts = attend_items(s) / nkv;
  const int per = (g + parts - 1) / parts;
  const int t = it / (nkv * parts), kh = it / parts % nkv, part = it % parts;
  int h0 = (kh + c->kv_offset) * c->kv_group - c->head_offset, h1 = h0 + c->kv_group;
  h0 = h0 < 0 ? 0 : h0;
  h1 = h1 > nh ? nh : h1;
  h0 += part * per;
  h1 = h0 + per < h1 ? h0 + per : h1;
  if (h0 >= h1) return;
  const void *kc = kv_head(s, s->k_cache, l, kh), *vc = kv_head(s, s->v_cache, l, kh);
  float *att = s->att + (size_t)omp_get_thread_num() * s->att_stride;
  const float *q = s->q + (size_t)t * qd + (size_t)h0 * hd, scale = 1.0f / sqrtf((float)hd);
  float *out = s->att_out + (size_t)t * qd + (size_t)h0 * hd;
  if (s->kv_dtype == TTQ_F16)
    s->kern->attend_f16(q, h1 - h0, kc, vc, p0 + t + 1, hd, scale, att, out);
  else
    s->kern->attend(q, h1 - h0, kc, vc, p0 + t + 1, hd, scale, att, out);
}

/* Causal grouped-query attention for n new tokens starting at position p0 of layer l.
 * Many tokens: per head and per block of ATT_BLOCK queries, S = Q K^T (sgemm) over the keys the
 * block's last query sees (so the masked half of the square is mostly never computed), the
 * causal softmax row by row, O = P V (sgemm); heads spread over threads. Few tokens: dot
 * products per cached position. */
static void attention(ttq_state *s, int l, int n, int p0) {
  const ttq_config *c = &s->m->cfg;
  const int hd = c->head_dim, nh = c->n_heads;
  const size_t qd = (size_t)nh * hd, T = (size_t)s->max_ctx;
  const float scale = 1.0f / sqrtf((float)hd);
#define KV_OF(h) ((c->head_offset + (h)) / c->kv_group - c->kv_offset)
  if (n >= s->n_gemm_rows) {
    const int kl_all = p0 + n; /* the keys the chunk's last query sees */
    int *converted = s->kv_f32_head; /* f16: the key/value head in each thread's kv_f32 */
    for (int i = 0; converted && i < s->threads; i++) converted[i] = -1;
#pragma omp parallel for num_threads(s->threads) schedule(dynamic, 1)
    for (int h = 0; h < nh; h++) {
      const int id = omp_get_thread_num();
      float *S = s->att + (size_t)id * s->att_stride;
      const float *K = kv_head(s, s->k_cache, l, KV_OF(h)), *V = kv_head(s, s->v_cache, l, KV_OF(h));
      if (s->kv_dtype == TTQ_F16) { /* sgemm reads f32 rows: this head's keys and values converted */
        float *kf = s->kv_f32 + (size_t)id * (2 * T + 16) * hd, *vf = kf + T * hd, *tmp = vf + T * hd;
        if (converted[id] != KV_OF(h)) { /* (heads come in order: once per key/value head) */
          kv_head_f32(s, (const uint16_t *)(const void *)K, (const uint16_t *)(const void *)V, kl_all,
                      hd, kf, vf, tmp);
          converted[id] = KV_OF(h);
        }
        K = kf, V = vf;
      }
      for (int t0 = 0; t0 < n; t0 += ATT_BLOCK) {
        const int nq = n - t0 < ATT_BLOCK ? n - t0 : ATT_BLOCK, kl = p0 + t0 + nq;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, kl, hd, scale,
                    s->q + (size_t)t0 * qd + (size_t)h * hd, (int)qd, K, hd, 0.0f, S, kl);
        for (int t = 0; t < nq; t++) {
          float *row = S + (size_t)t * kl;
          const int vis = p0 + t0 + t + 1;
          s->kern->softmax(row, vis);
          for (int j = vis; j < kl; j++) row[j] = 0;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, kl, 1.0f, S, kl, V, hd,
                    0.0f, s->att_out + (size_t)t0 * qd + (size_t)h * hd, (int)qd);
      }
    }
    return;
  }
  const int items = n * attend_items(s);
#pragma omp parallel for num_threads(s->threads) schedule(dynamic, 1)
  for (int it = 0; it < items; it++) attend_item(s, l, it, p0);
#undef KV_OF
}

/* Sums the partial outputs of the row-parallel projections over the ranks. */
static void tp_allreduce(ttq_tp *tp, float *buf, size_t n) {
  tp->allreduce_f32(tp->u, buf, n);
  tp->sent_bytes += n * sizeof(float);
  tp->calls++;
}

/* One chunk of n tokens (n <= max_batch) through all layers; logits of the requested rows. */
static void forward_chunk(ttq_state *s, const int32_t *tokens, int n, float *logits,
                          bool all_logits) {
  const ttq_model *m = s->m;
  const ttq_config *c = &m->cfg;
  const int dim = c->dim;
  const size_t qd = (size_t)c->n_heads * c->head_dim;
  const int p0 = s->pos;
  const size_t emb_row = m->embed.nbytes / (size_t)m->embed.shape[0];
  float *wtmp = s->normw;

  for (int t = 0; t < n; t++)
    ttq_row_to_f32(s->kern, m->embed.dtype, (const uint8_t *)m->embed.data + (size_t)tokens[t] * emb_row,
                   s->x + (size_t)t * dim, dim);

  for (int l = 0; l < c->n_layers; l++) {
    const ttq_layer *L = &m->layers[l];
    /* attention block */
    for (int t = 0; t < n; t++)
      rmsnorm(s->xb + (size_t)t * dim, s->x + (size_t)t * dim, &L->attn_norm, dim, c->norm_eps,
              s->kern, wtmp);
    const float *in = layer_input(s, l, TTQ_IN_ATTN, s->xb, n, dim);
    proj(s, l, TTQ_P_Q, s->xb, in, n, s->q);
    proj(s, l, TTQ_P_K, s->xb, in, n, s->k);
    proj(s, l, TTQ_P_V, s->xb, in, n, s->v);
    for (int t = 0; t < n; t++) rope_and_cache(s, l, t, p0 + t, 0, c->n_heads, 0, c->n_kv_heads);
    attention(s, l, n, p0);
    in = layer_input(s, l, TTQ_IN_O, s->att_out, n, (int)qd);
    proj(s, l, TTQ_P_O, s->att_out, in, n, s->xb);
    if (m->tp && m->tp->allreduce_f32) tp_allreduce(m->tp, s->xb, (size_t)n * dim);
    for (size_t i = 0; i < (size_t)n * dim; i++) s->x[i] += s->xb[i];

    /* MLP block */
    for (int t = 0; t < n; t++)
      rmsnorm(s->xb + (size_t)t * dim, s->x + (size_t)t * dim, &L->ffn_norm, dim, c->norm_eps,
              s->kern, wtmp);
    in = layer_input(s, l, TTQ_IN_MLP, s->xb, n, dim);
    proj(s, l, TTQ_P_GATE, s->xb, in, n, s->hb);
    proj(s, l, TTQ_P_UP, s->xb, in, n, s->hb2);
    const int64_t nf = (int64_t)n * c->ffn_dim;
#pragma omp parallel for num_threads(s->threads) schedule(static)
    for (int64_t i = 0; i < nf; i += 4096)
      s->kern->silu_mul(s->hb + i, s->hb2 + i, nf - i < 4096 ? nf - i : 4096);
    in = layer_input(s, l, TTQ_IN_DOWN, s->hb, n, c->ffn_dim);
    proj(s, l, TTQ_P_DOWN, s->hb, in, n, s->xb);
    if (m->tp && m->tp->allreduce_f32) tp_allreduce(m->tp, s->xb, (size_t)n * dim);
    for (size_t i = 0; i < (size_t)n * dim; i++) s->x[i] += s->xb[i];
  }
  s->pos += n;
  if (!logits) return;

  /* output head: every row, or only the last */
  int first = all_logits ? 0 : n - 1, rows = n - first;
  for (int t = first; t < n; t++)
    rmsnorm(s->xb + (size_t)(t - first) * dim, s->x + (size_t)t * dim, &m->final_norm, dim,
            c->norm_eps, s->kern, wtmp);
  float *out = m->tp && m->tp->gather_logits ? s->logits_local : logits;
  if (s->qm && s->qm->has_head) qmatrix_rows(s, &s->qm->head, s->xb, rows, out);
  else linear(s, &m->head, s->xb, rows, out, NULL, NULL);
  if (m->tp && m->tp->gather_logits) { /* this rank's vocabulary rows, then everyone's */
    m->tp->gather_logits(m->tp->u, m->tp, s->logits_local, rows, logits);
    m->tp->sent_bytes += (uint64_t)rows * (uint64_t)m->head.shape[0] * sizeof(float);
    m->tp->calls++;
  }
}

/* Inside decode_token's region, after every thread wrote its rows of a row-parallel projection
 * into s->xb: xr += xb (tensor parallel: summed over the ranks first), where xr is the calling
 * thread's own copy of the residual stream. The barrier before makes xb whole; none is needed
 * after, since xb is next written only after a later barrier every thread reaches after this. */
static void add_to_residual(ttq_state *s, float *xr) {
  ttq_tp *tp = s->m->tp;
#pragma omp barrier
  if (tp && tp->allreduce_f32) {
#pragma omp master
    tp_allreduce(tp, s->xb, (size_t)s->m->cfg.dim);
#pragma omp barrier
  }
  const int dim = s->m->cfg.dim;
#pragma omp simd
  for (int i = 0; i < dim; i++) xr[i] += s->xb[i];
}

/* Thread id's key/value heads [kh0, kh1) when decode_token splits the attention block by heads:
 * the local heads divide evenly over the threads and a head's rows are whole sets of 16. Then
 * each thread computes the q, k and v rows of its own heads, rotates, caches and attends them,
 * with no barrier until the o projection. Returns false where the split does not apply. */
static bool head_share(const ttq_state *s, int nt, int id, int *kh0, int *kh1) {
  const ttq_config *c = &s->m->cfg;
  /* (n_kv_heads >= s->threads: attend_item then takes one item per head, as it = kh assumes) */
  if (c->n_kv_heads % nt || c->n_kv_heads < s->threads || c->head_dim % 16) return false;
  const int per = c->n_kv_heads / nt;
  *kh0 = id * per;
  *kh1 = *kh0 + per;
  return true;
}

/* The local query heads [h0, h1) of local key/value heads [kh0, kh1). */
static void query_heads(const ttq_config *c, int kh0, int kh1, int *h0, int *h1) {
  const int a = (kh0 + c->kv_offset) * c->kv_group - c->head_offset,
            b = (kh1 + c->kv_offset) * c->kv_group - c->head_offset;
  *h0 = a < 0 ? 0 : a > c->n_heads ? c->n_heads : a;
  *h1 = b < 0 ? 0 : b > c->n_heads ? c->n_heads : b;
}

/* One decoding step (n == 1, no statistics, taps, fused or low-rank quantization): the layer of
 * forward_chunk with the same arithmetic in the same order, so the logits are bit-identical,
 * but in one parallel region for the whole token instead of a fork and join per step. Every
 * step is split over the threads; the small vector steps each thread needs whole (rmsnorm, the
 * residual add, the 1/D scaling, the activation rounding in proj_rows) each thread does for
 * itself, on its own copy of the residual stream, where one thread would otherwise work while
 * the others wait. The attention block is split by key/value heads (head_share): four barriers
 * per layer, one before each projection that reads what other threads wrote (o, gate/up's input
 * via the residual, down) and the residual's. Measured 1.04-1.05x the decode tok/s of a fork and
 * join per step (W4, 738M model); prefetching each thread's next rows before a barrier measured
 * no further gain. */
static void decode_token(ttq_state *s, int32_t token, float *logits) {
  const ttq_model *m = s->m;
  const ttq_config *c = &m->cfg;
  const int dim = c->dim, p = s->pos, hd = c->head_dim;
  const size_t qd = (size_t)c->n_heads * hd;
  ttq_tp *tp = m->tp;
  const int P_QKV[3] = {TTQ_P_Q, TTQ_P_K, TTQ_P_V}, P_O[1] = {TTQ_P_O},
            P_GU[2] = {TTQ_P_GATE, TTQ_P_UP}, P_D[1] = {TTQ_P_DOWN};
  const size_t emb_row = m->embed.nbytes / (size_t)m->embed.shape[0];
  ttq_row_to_f32(s->kern, m->embed.dtype, (const uint8_t *)m->embed.data + (size_t)token * emb_row,
                 s->x, dim);
#pragma omp parallel num_threads(s->threads)
  {
    const int nt = omp_get_num_threads(), id = omp_get_thread_num();
    float *xb = s->dec + (size_t)id * s->dec_stride; /* this thread's normalized input [dim] */
    float *wtmp = xb + s->dec_dim;                   /* a norm weight row [dim] */
    float *xr = wtmp + s->dec_dim;                   /* its copy of the residual stream [dim] */
    float *xs = xr + s->dec_dim;                     /* an input scaled by 1/D [widest] */
    memcpy(xr, s->x, (size_t)dim * 4);
    int kh0 = 0, kh1 = 0, h0 = 0, h1 = 0;
    const bool by_head = head_share(s, nt, id, &kh0, &kh1);
    if (by_head) query_heads(c, kh0, kh1, &h0, &h1);
    const int64_t qkv_r0[3] = {(int64_t)h0 * hd, (int64_t)kh0 * hd, (int64_t)kh0 * hd},
                  qkv_r1[3] = {(int64_t)h1 * hd, (int64_t)kh1 * hd, (int64_t)kh1 * hd};
    for (int l = 0; l < c->n_layers; l++) {
      const ttq_layer *L = &m->layers[l];
      rmsnorm(xb, xr, &L->attn_norm, dim, c->norm_eps, s->kern, wtmp);
      const float *in = scale_input(s, l, TTQ_IN_ATTN, xb, 1, dim, xs);
      float *const qkv[3] = {s->q, s->k, s->v};
      if (by_head) { /* this thread's heads, start to end */
        ttq_qact qa;
        proj_prepare(s, l, TTQ_P_Q, in, id, &qa);
        proj_ranges(s, l, P_QKV, 3, xb, &qa, qkv, qkv_r0, qkv_r1);
        rope_and_cache(s, l, 0, p, h0, h1, kh0, kh1);
        for (int kh = kh0; kh < kh1; kh++) attend_item(s, l, kh, p);
#pragma omp barrier
      } else { /* rows, then heads, then attention items, each split its own way */
        proj_rows(s, l, P_QKV, 3, xb, in, qkv, false, id, nt);
#pragma omp barrier
        rope_and_cache(s, l, 0, p, c->n_heads * id / nt, c->n_heads * (id + 1) / nt,
                       c->n_kv_heads * id / nt, c->n_kv_heads * (id + 1) / nt);
#pragma omp barrier
#pragma omp for schedule(dynamic, 1)
        for (int it = 0; it < attend_items(s); it++) attend_item(s, l, it, p);
      }
      in = scale_input(s, l, TTQ_IN_O, s->att_out, 1, (int)qd, xs);
      float *const o[1] = {s->xb};
      proj_rows(s, l, P_O, 1, s->att_out, in, o, false, id, nt);
      add_to_residual(s, xr);
      rmsnorm(xb, xr, &L->ffn_norm, dim, c->norm_eps, s->kern, wtmp);
      in = scale_input(s, l, TTQ_IN_MLP, xb, 1, dim, xs);
      float *const gu[2] = {s->hb, s->hb2};
      proj_rows(s, l, P_GU, 2, xb, in, gu, true, id, nt);
#pragma omp barrier
      in = scale_input(s, l, TTQ_IN_DOWN, s->hb, 1, c->ffn_dim, xs);
      float *const dn[1] = {s->xb};
      proj_rows(s, l, P_D, 1, s->hb, in, dn, false, id, nt);
      add_to_residual(s, xr);
    }
    if (logits) { /* output head: this thread's rows (tensor parallel: of this rank's slice) */
      rmsnorm(xb, xr, &m->final_norm, dim, c->norm_eps, s->kern, wtmp);
      const ttq_tensor *H = &m->head;
      const size_t rb = H->nbytes / (size_t)H->shape[0];
      float *out = tp && tp->gather_logits ? s->logits_local : logits;
      int64_t a, b;
      row_share(H->shape[0], nt, id, &a, &b);
      if (a < b && s->qm && s->qm->has_head) {
        ttq_qact qa;
        ttq_qact_prepare(s->kern, &s->qm->head, xb, s->qact_buf + (size_t)id * s->qact_stride, &qa);
        ttq_qmatvec_qact(s->kern, &s->qm->head, &qa, out, a, b);
      } else {
        for (int64_t r = a; r < b; r++)
          out[r] = ttq_dot_row(s->kern, H->dtype, (const uint8_t *)H->data + (size_t)r * rb, xb, dim);
      }
    }
  }
  if (logits && tp && tp->gather_logits) {
    tp->gather_logits(tp->u, tp, s->logits_local, 1, logits);
    tp->sent_bytes += (uint64_t)m->head.shape[0] * sizeof(float);
    tp->calls++;
  }
  s->pos++;
}

int ttq_forward(ttq_state *s, const int32_t *tokens, int n, float *logits, bool all_logits,
                ttq_diag *d) {
  const ttq_config *c = &s->m->cfg;
  if (n <= 0) return ttq__fail(d, TTQ_EINVAL, "forward: no tokens");
  if (n > s->max_ctx - s->pos)
    return ttq__fail(d, TTQ_ERANGE, "context full: %d tokens in cache + %d new > %d", s->pos, n,
                     s->max_ctx);
  for (int t = 0; t < n; t++)
    if (tokens[t] < 0 || tokens[t] >= c->vocab)
      return ttq__fail(d, TTQ_ERANGE, "token id %d at position %d is outside the vocabulary (%d)",
                       tokens[t], t, c->vocab);
  if (s->fuse && (s->pos != 0 || n > s->max_batch || s->qm))
    return ttq__fail(d, TTQ_EINVAL, "fused quantization needs the whole prompt in one chunk");
  openblas_set_num_threads(1); /* parallelism is ours (OpenMP), see linear() */
  if (s->qm && s->qm->lr && s->qm->lr->rank > s->lr_cap) {
    free(s->lr_tmp);
    bool ok = true;
    s->lr_tmp = xalloc((size_t)s->max_batch * s->qm->lr->rank * 4, &ok);
    if (!ok) return ttq__fail(d, TTQ_ENOMEM, "out of memory for the low-rank term");
    s->lr_cap = s->qm->lr->rank;
  }
  if (n == 1 && !s->fuse && !s->stats && !s->tap && (!s->qm || !s->qm->lr)) {
    decode_token(s, tokens[0], logits);
    return 0;
  }
  for (int done = 0; done < n;) {
    int chunk = n - done < s->max_batch ? n - done : s->max_batch;
    bool last = done + chunk == n;
    float *out = NULL;
    if (logits && all_logits) out = logits + (size_t)done * c->vocab;
    else if (logits && last) out = logits;
    forward_chunk(s, tokens + done, chunk, out, all_logits);
    done += chunk;
  }
  return 0;
}
