/* qmodel.h -- a model's linear layers quantized for one request (or once, for rtn/awq):
 * per layer the seven matrices q, k, v, o, gate, up, down as ttq_qmatrix, the inverse scales
 * 1/D of the four distinct inputs, and optionally the static low-rank term of TTQ(r).
 *
 * Methods (docs/TTQ.md):
 *   fp   no quantization (the forward pass uses the checkpoint's weights);
 *   rtn  D = 1;
 *   awq  D = s per input from a calibration file (ttq_awq), the same for every prompt;
 *   ttq  D_c = (S_c / T + lambda)^alpha from this prompt's statistics (`mean`; or S_c + lambda
 *        with mean = false), recomputed per prompt.
 * With rank r > 0 (ttq and rtn), W = B A + R with B A the top-r SVD of W (ttq_lowrank); only R is
 * quantized and y = Q(R D)(x / D) + B (A x).
 *
 * The output head (head_bits > 0): round to nearest (D = 1) at head_bits and the group, once at
 * ttq_qmodel_init, the same for every prompt and method; decode then streams it as one more
 * quantized matrix (at 8 bits about half the bytes of an F16 head, 7% of a W4 token's
 * bytes). Its perplexity cost is in docs/QUALITY.md. head_bits = 0 keeps it in the
 * checkpoint's precision. Embeddings and norms always stay in the checkpoint's precision. */
#ifndef TTQ_QMODEL_H
#define TTQ_QMODEL_H

#include <stdbool.h>
#include "model.h"
#include "quant.h"
#include "stats.h"

typedef enum ttq_method { TTQ_METHOD_FP = 0, TTQ_METHOD_RTN, TTQ_METHOD_AWQ, TTQ_METHOD_TTQ } ttq_method;

typedef struct ttq_qcfg {
  ttq_method method;
  int bits;     /* 2, 3, 4, 5, 8 */
  int group;    /* 8..1024, divides every input width */
  int rank;     /* low-rank term, 0 = off */
  float alpha;  /* exponent of D */
  float lambda; /* added to the mean square before the exponent */
  bool mean;    /* D from S/T (true) or from S (false) */
  int search;   /* ttq: > 0 chooses alpha per layer input among {1/N, 2/N, ..., 1} (N = search)
                   by the output error of the quantized projections on the prompt's own
                   activations (a sample of rows kept during the prefill); 0 = fixed alpha */
  int head_bits; /* the output head: 0 = the checkpoint's precision, else 2, 3, 4, 5, 8 (RTN) */
} ttq_qcfg;

/* Rows of the prompt's activations kept for the alpha search, per layer input. */
typedef struct ttq_actsample {
  int n_layers, cap;           /* at most cap rows per (layer, input) */
  int width[TTQ_N_INPUTS];
  int *rows;                   /* [n_layers * TTQ_N_INPUTS] rows kept */
  float **X;                   /* [n_layers * TTQ_N_INPUTS] -> rows x width */
  int stride;                  /* keep every stride-th row (set per prompt) */
  int64_t *seen;               /* rows offered per (layer, input) */
} ttq_actsample;

int ttq_actsample_init(ttq_actsample *a, const ttq_config *c, int cap, ttq_diag *d);
void ttq_actsample_free(ttq_actsample *a);
void ttq_actsample_reset(ttq_actsample *a, int stride);
/* A ttq_tap_fn (forward.h) that keeps every stride-th row, up to cap. */
void ttq_actsample_tap(void *u, int layer, int input, const float *X, int n, int width);

/* Defaults chosen by measurement (docs/QUALITY.md): 4 bits, group 32, rank 0, alpha 0.5,
 * lambda 0.4, mean, the output head at 8 bits. */
ttq_qcfg ttq_qcfg_default(void);
const char *ttq_method_name(ttq_method m);
int ttq_method_parse(const char *s, ttq_method *out);
/* Checks the settings against the model (group divides every input width, ...). */
int ttq_qcfg_check(const ttq_qcfg *c, const ttq_config *mc, ttq_diag *d);
/* "ttq W4 g32 r0 a0.50 l0.40" */
void ttq_qcfg_str(const ttq_qcfg *c, char *buf, size_t cap);

enum { TTQ_P_Q = 0, TTQ_P_K, TTQ_P_V, TTQ_P_O, TTQ_P_GATE, TTQ_P_UP, TTQ_P_DOWN, TTQ_N_PROJ };
extern const int ttq_proj_input[TTQ_N_PROJ]; /* which TTQ_IN_* feeds each projection */
/* The weight tensor of projection p in layer l of m. */
const ttq_tensor *ttq_proj_weight(const ttq_model *m, int l, int p);

/* Static low-rank factors of every projection: W ~ B A with B rows x r, A r x cols (f32), and
 * the residual R = W - B A (f32). Built by SVD once per model and cached on disk (lowrank.c). */
typedef struct ttq_lowrank {
  int rank;
  int n_layers;
  float **A, **B, **R; /* [n_layers * TTQ_N_PROJ], owned */
} ttq_lowrank;

/* AWQ calibration: per layer and input, the chosen alpha and the scale vector s. */
typedef struct ttq_awq {
  int n_layers, bits, group;
  int width[TTQ_N_INPUTS];
  float *alpha; /* [n_layers][TTQ_N_INPUTS] */
  float *scale; /* per layer, per input: width[input] floats */
  size_t layer_len;
} ttq_awq;

typedef struct ttq_qlayer {
  ttq_qmatrix w[TTQ_N_PROJ];
  float *inv_d[TTQ_N_INPUTS]; /* 1/D per channel; NULL when D = 1 */
} ttq_qlayer;

typedef struct ttq_qmodel {
  ttq_qcfg cfg;
  int n_layers;
  ttq_qlayer *layers;
  const ttq_lowrank *lr; /* borrowed; NULL when rank 0 */
  ttq_qmatrix head;      /* the output head (this rank's rows), when has_head */
  bool has_head;         /* cfg.head_bits > 0 */
  void *arena;           /* owned: every matrix of every layer, then the head, in decode order */
  float *alpha;          /* [n_layers][TTQ_N_INPUTS] alpha used (owned) */
  double quant_ms;       /* time of the last ttq_qmodel_quantize */
} ttq_qmodel;

/* Allocates storage for every quantized matrix: one buffer in huge pages, touched (no page
 * faults in the first quantization), the matrices in the order decode reads them (layer by
 * layer, ttq_proj order, then the head), and quantizes the head (head_bits > 0) on the
 * default number of OpenMP threads. Free with ttq_qmodel_free. */
int ttq_qmodel_init(ttq_qmodel *q, const ttq_model *m, const ttq_qcfg *cfg,
                    const ttq_lowrank *lr, ttq_diag *d);
void ttq_qmodel_free(ttq_qmodel *q);
/* Bytes of codes, scales and zero points of the linear layers (plus low-rank factors when
 * used) and of the quantized head, if any. */
size_t ttq_qmodel_bytes(const ttq_qmodel *q);

/* Quantizes layer l (or all layers: ttq_qmodel_quantize) with D from the method:
 * stats for ttq (required), awq for awq (required), nothing for rtn. Uses `threads` threads.
 * Can fail only on a missing input (TTQ_EINVAL). */
int ttq_qmodel_quantize_layer(ttq_qmodel *q, const ttq_model *m, int l, const ttq_stats *stats,
                              const ttq_awq *awq, const ttq_actsample *samp, int threads,
                              ttq_diag *d);
int ttq_qmodel_quantize(ttq_qmodel *q, const ttq_model *m, const ttq_stats *stats,
                        const ttq_awq *awq, const ttq_actsample *samp, int threads, ttq_diag *d);
/* The alpha chosen for each layer input by the last quantization ([n_layers][4]); the fixed
 * alpha when search is off. */
const float *ttq_qmodel_alphas(const ttq_qmodel *q);

/* D of one input from statistics: D_c = (S_c / T + lambda)^alpha (or S_c + lambda). */
void ttq_scale_from_stats(const ttq_qcfg *c, const ttq_stats *s, int l, int input, float *D);
/* The same formula from w sums of squares sq and the token count T (ttq_scale_from_stats is
 * this on the statistics' arrays; the fused prefill of forward.c calls it directly). */
void ttq_scale_from_sumsq(const ttq_qcfg *c, const double *sq, double T, int w, float *D);

#endif
