/* awq.h -- the offline AWQ baseline (docs/TTQ.md): s_x = mean |x| per input channel over a
 * calibration corpus; per layer and input, a grid search of alpha in {0, 0.05, ..., 0.95} for
 * s = max(s_x^alpha, 1e-4) / sqrt(max(s) min(s)) that minimizes the output MSE of the
 * quantized projections sharing that input on a sample of calibration activations.
 *
 * Calibration file (little-endian): "TTQAWQ01", u64 model key (ttq_lowrank_key), i32 layers,
 * bits, group, widths[4], then per layer: f32 alpha[4], then the scales of the four inputs. */
#ifndef TTQ_AWQ_H
#define TTQ_AWQ_H

#include "forward.h"
#include "qmodel.h"

/* Collects calibration data while the caller runs full-precision forwards of the corpus
 * (attach with ttq_awq_collector_attach, then ttq_forward ...). Keeps at most `max_rows`
 * activation rows per layer input, spread over the corpus (every stride-th row). */
typedef struct ttq_awq_collector ttq_awq_collector;

int ttq_awq_collector_new(ttq_awq_collector **c, const ttq_model *m, int max_rows, int stride,
                          ttq_diag *d);
void ttq_awq_collector_attach(ttq_awq_collector *c, ttq_state *s);
void ttq_awq_collector_free(ttq_awq_collector *c);
int64_t ttq_awq_collector_tokens(const ttq_awq_collector *c);

/* Runs the search for (bits, group). The result is owned by the caller (ttq_awq_free).
 * progress (may be NULL) is called after each layer. */
int ttq_awq_search(const ttq_awq_collector *c, const ttq_model *m, int bits, int group,
                   int threads, ttq_awq *out, void (*progress)(int layer, int n_layers),
                   ttq_diag *d);

int ttq_awq_save(const ttq_awq *a, const ttq_model *m, const char *path, ttq_diag *d);
/* Refuses a file made for another model (key, shapes), with the reason. */
int ttq_awq_load(ttq_awq *a, const ttq_model *m, const char *path, ttq_diag *d);
void ttq_awq_free(ttq_awq *a);

#endif
