/* forward.h -- the full-precision forward pass of a decoder (llama, qwen3) with a KV cache.
 *
 * A ttq_state is one sequence being processed: its KV cache, scratch buffers and settings.
 * It belongs to one thread of control at a time (internally it uses `threads` OpenMP threads
 * and OpenBLAS). Many states may share one model. */
#ifndef TTQ_FORWARD_H
#define TTQ_FORWARD_H

#include <stdbool.h>
#include "kernels.h"
#include "model.h"
#include "qmodel.h"
#include "stats.h"

/* Called with every linear layer's input (input is a TTQ_IN_* value), n rows of `width`. */
typedef void (*ttq_tap_fn)(void *u, int layer, int input, const float *X, int n, int width);

typedef struct ttq_state {
  const ttq_model *m;
  const ttq_kernels *kern;
  int threads;
  int max_ctx;   /* KV cache capacity in tokens */
  int max_batch; /* tokens per internal forward chunk (prefill is chunked to this) */
  int pos;       /* tokens already in the cache */
  /* KV cache, [layer][kv_head][position][head_dim] of kv_dtype, max_ctx positions rounded up
   * to whole blocks of 16: TTQ_F32, or TTQ_F16 (half the bytes decode reads per token of
   * context; rounded to nearest even as they are stored; the keys of each block of 16
   * positions transposed, [head_dim][16], as kernels.h attend_f16 reads them). */
  void *k_cache, *v_cache;
  ttq_dtype kv_dtype;
  /* Prefill with an f16 cache: per thread, one key/value head's keys and values converted to
   * f32 rows for sgemm and a block of 16 keys being converted, [threads][2 max_ctx + 16]
   * [head_dim]; NULL for f32. */
  float *kv_f32;
  int *kv_f32_head; /* the key/value head each thread's kv_f32 holds during one attention */
  /* RoPE tables [max_ctx][head_dim/2]. */
  float *rope_cos, *rope_sin;
  /* Activations for one chunk, row-major [tokens][width]. */
  float *x, *xb, *q, *k, *v, *att_out, *hb, *hb2;
  float *att;  /* attention scores, [threads][att_stride] */
  size_t att_stride; /* floats per thread: max(max_batch, n_heads) * max_ctx */
  uint8_t *qact_buf;  /* decode: each thread's prepared activation (ttq_qact), qact_stride bytes */
  float *dec;         /* decode: each thread's normalized input, norm row and scaled input */
  size_t dec_stride, dec_dim; /* floats per thread; dim rounded up to 16 */
  size_t qact_stride;
  float *normw; /* a norm weight row converted to f32, [dim] */
  float *logits_local; /* tensor parallel: this rank's vocabulary slice of the logits */
  float *wbuf; /* one weight matrix converted to f32 for sgemm */
  size_t wbuf_len;
  int64_t n_gemm_rows; /* threshold: chunks of at least this many tokens use sgemm */
  int gemm_isa;        /* ttq_gemm_isa of the prefill's products (gemm.h) */
  uint8_t *gemm_work;  /* per thread gemm_work_stride bytes (not for sgemm) */
  size_t gemm_work_stride;
  void *gemm_xbuf;     /* the packed activation of one projection input */
  float *xs;           /* an input scaled by 1/D, [max_batch][max(dim, q_dim, ffn)] */
  float *lr_tmp;       /* low-rank intermediate A x, [max_batch][rank] */
  int lr_cap;          /* rank lr_tmp was sized for */

  /* Per-request settings, set by the caller between calls (NULL = off): */
  ttq_stats *stats;        /* accumulate activation statistics of every linear input */
  const ttq_qmodel *qm;    /* use these quantized matrices instead of the checkpoint's */
  ttq_tap_fn tap;          /* observe every linear input (tests, calibration) */
  double stats_ms;         /* time spent accumulating statistics (added to) */
  void *tap_u;
  /* Fused TTQ (set by the engine for a prompt that fits one chunk): the pass runs in full
   * precision and, as each layer input is complete, computes its D from this chunk's sums of
   * squares and quantizes the projections it feeds into `fuse` from the f32 rows the prefill
   * converts for sgemm anyway (one read of the master weights for both). Bit-identical to
   * ttq_qmodel_quantize with the prompt's statistics (ttq, fixed alpha, no low rank). */
  ttq_qmodel *fuse;
  double fuse_ms;          /* time spent quantizing inside the pass (added to) */
  double *fuse_sq;         /* scratch: sums of squares of one input [widest input] */
  float *fuse_d;           /* scratch: D of the current input [widest input] */
} ttq_state;

/* Allocates the state for up to max_ctx tokens, its KV cache in kv (TTQ_F32 or TTQ_F16, else
 * TTQ_EINVAL). threads <= 0 means all cores. kern NULL selects the best kernels for this CPU.
 * Caller frees with ttq_state_free. */
int ttq_state_init(ttq_state *s, const ttq_model *m, int max_ctx, ttq_dtype kv, int threads,
                   const ttq_kernels *kern, ttq_diag *d);
void ttq_state_free(ttq_state *s);
/* Bytes of KV cache one token of context takes for a model of config c with the cache in kv
 * (TTQ_F32 or TTQ_F16): the key and value of every layer's key/value heads. Can't fail. */
size_t ttq_kv_bytes_per_token(const ttq_config *c, ttq_dtype kv);
/* Forget the sequence (cache contents become unused). Can't fail. */
void ttq_state_reset(ttq_state *s);

/* Runs `n` tokens at positions s->pos .. s->pos+n-1 and appends them to the cache.
 * logits: when all_logits, n x vocab floats (one row per token); otherwise vocab floats for the
 * last token only. logits may be NULL (cache filling only).
 * Errors: TTQ_ERANGE when the cache would overflow or a token id is outside the vocabulary
 * (the state is unchanged then). */
int ttq_forward(ttq_state *s, const int32_t *tokens, int n, float *logits, bool all_logits,
                ttq_diag *d);

#endif
