/* stats.h -- per-input-channel activation statistics of every linear layer's input, collected
 * during a full-precision prefill (TTQ calibration) or over a corpus (AWQ calibration).
 *
 * Each layer has four distinct linear inputs: ATTN (the input of q, k and v), O (of the output
 * projection), MLP (of gate and up) and DOWN (of the down projection). For each input channel
 * c we keep sum_t x[t][c]^2 and sum_t |x[t][c]|, and per input the token count T.
 * Invariant: all numbers live in one flat array of doubles, so two collections merge by
 * element-wise addition (one MPI_Allreduce of `len` doubles, or ttq_stats_merge). */
#ifndef TTQ_STATS_H
#define TTQ_STATS_H

#include <stdbool.h>
#include <stdint.h>
#include "kernels.h"
#include "model.h"

enum { TTQ_IN_ATTN = 0, TTQ_IN_O = 1, TTQ_IN_MLP = 2, TTQ_IN_DOWN = 3, TTQ_N_INPUTS = 4 };

typedef struct ttq_stats {
  int n_layers;
  int width[TTQ_N_INPUTS];   /* channels of each input: dim, q_dim, dim, ffn */
  size_t layer_len;          /* doubles per layer */
  size_t len;                /* doubles in buf */
  double *buf;               /* owned */
} ttq_stats;

extern const char *const ttq_input_names[TTQ_N_INPUTS]; /* "attn", "o", "mlp", "down" */

int ttq_stats_init(ttq_stats *s, const ttq_config *c, ttq_diag *d);
void ttq_stats_free(ttq_stats *s);
void ttq_stats_reset(ttq_stats *s); /* all zero; can't fail */

/* Views into buf: width[input] doubles each, and the token count. */
double *ttq_stats_sumsq(const ttq_stats *s, int layer, int input);
double *ttq_stats_sumabs(const ttq_stats *s, int layer, int input);
double *ttq_stats_count(const ttq_stats *s, int layer, int input);

/* Adds n rows of X (row stride ld floats, width[input] channels), with the kernels
 * ttq_kernels_select(NULL) picks. Can't fail. */
void ttq_stats_add(ttq_stats *s, int layer, int input, const float *X, int n, int64_t ld);
/* Adds columns [c0, c1) of n rows of X (row stride ld floats) to channels offset + c0 ..
 * offset + c1 - 1 with kernels k (kernels.h sum_sq_abs; NULL: ttq_kernels_select(NULL)); the
 * token count is not touched. Each channel sums its rows in order, so any split of the columns
 * and every kernel variant give the sums of one call; calls on disjoint columns may run on
 * different threads. Can't fail. */
void ttq_stats_add_cols(ttq_stats *s, const ttq_kernels *k, int layer, int input, const float *X,
                        int n, int64_t ld, int offset, int c0, int c1);
/* dst += src (same shape, else TTQ_EINVAL). */
int ttq_stats_merge(ttq_stats *dst, const ttq_stats *src, ttq_diag *d);

#endif
