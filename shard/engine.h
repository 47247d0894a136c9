/* engine.h -- one model's request flow, shared by every tool and by `ttqd serve`:
 *
 *   generate: full-precision prefill of the prompt collecting activation statistics ->
 *             quantize every linear layer with this prompt's D (ttq) -> decode on low-bit weights.
 *             When the prompt fits one prefill chunk (and for fixed alpha, no low rank) the
 *             quantization runs inside the prefill, layer by layer, from the rows the prefill
 *             reads anyway (forward.h, `fuse`); otherwise after it, from the statistics.
 *   score:    the paper's protocol for perplexity: for ttq, a full-precision pass over the
 *             document to calibrate, quantize, then the same document teacher-forced on the
 *             quantized weights; for rtn/awq the weights are quantized once at init; fp scores
 *             on the checkpoint's weights.
 *
 * An engine serves one sequence at a time; it owns its state, statistics and quantized model. */
#ifndef TTQ_ENGINE_H
#define TTQ_ENGINE_H

#include "awq.h"
#include "forward.h"
#include "lowrank.h"
#include "qmodel.h"

typedef struct ttq_engine_opts {
  ttq_qcfg q;
  const char *calib_path; /* awq calibration file (required for awq) */
  int max_ctx;
  ttq_dtype kv;           /* KV cache: TTQ_F32 (0, the default) or TTQ_F16 (forward.h) */
  int threads;            /* <= 0: all cores */
  const ttq_kernels *kern; /* NULL: best for this CPU */
  bool no_fuse;           /* ttq with quant_in_prefill: quantize in a separate pass after the
                             prefill, even when the prompt fits one chunk (default: inside the
                             prefill, see forward.h; the result is bit-identical either way) */
  bool quant_in_prefill;  /* ttq: quantize before ttq_engine_prefill returns. Default: at the
                             start of the first ttq_engine_decode instead: the first token is
                             sampled from the full-precision prefill's logits, which do not
                             depend on the quantized weights, so it need not wait; the second
                             token does. Same tokens and logits either way. */
} ttq_engine_opts;

typedef struct ttq_engine_times {
  double prefill_ms; /* full-precision prefill (includes statistics) */
  double stats_ms;   /* of which: collecting statistics */
  double quant_ms;   /* quantizing the model for this request (fused: inside prefill_ms) */
  bool fused;        /* the last calibration quantized inside the prefill */
  bool deferred;     /* the last calibration left the quantization to the first decode step
                        (quant_ms is then that step's, known once it has run) */
} ttq_engine_times;

typedef struct ttq_engine {
  const ttq_model *m;
  ttq_engine_opts o;
  ttq_state st;
  ttq_stats stats;
  ttq_qmodel qm;
  ttq_lowrank lr;
  ttq_awq awq;
  ttq_actsample samp; /* the prompt's activation rows, for --search */
  bool has_qm, has_lr, has_awq, has_stats, has_samp;
  bool quant_pending; /* prefilled, statistics complete, quantization deferred to decode */
  ttq_engine_times last;
  double lowrank_ms; /* load or build of the low-rank factors */
  bool lowrank_cached;
} ttq_engine;

int ttq_engine_init(ttq_engine *e, const ttq_model *m, const ttq_engine_opts *o, ttq_diag *d);
void ttq_engine_free(ttq_engine *e);

/* Starts a sequence: prefill `ids` (full precision) and, for ttq, quantize with its statistics
 * (now with quant_in_prefill, else in the first ttq_engine_decode); the engine then decodes on
 * the quantized weights. logits: vocab floats of the last prompt token (full precision). */
int ttq_engine_prefill(ttq_engine *e, const int32_t *ids, int n, float *logits, ttq_diag *d);
/* One decode step on the request's weights (the first one after a prefill quantizes them
 * first when that was deferred; its time is then in last.quant_ms). */
int ttq_engine_decode(ttq_engine *e, int32_t token, float *logits, ttq_diag *d);
/* Teacher-forced NLL of ids[1..n-1] (adds to nll, count), following the protocol above. */
int ttq_engine_score(ttq_engine *e, const int32_t *ids, int n, double *nll, int64_t *count,
                     ttq_diag *d);
/* Bytes the request's decode reads per token for the linear layers (quantized or not) and the
 * quantized output head, if any. */
size_t ttq_engine_linear_bytes(const ttq_engine *e);

#endif
