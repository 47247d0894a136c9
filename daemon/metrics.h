/* metrics.h -- the daemon's counters and latency histograms since start, rendered in the
 * Prometheus text exposition format (for the Stats request and GET /metrics).
 *
 * Thread safety: every function takes the struct's mutex; the executor records, the front
 * end renders. Histograms are cumulative, in seconds, with fixed bucket bounds. */
#ifndef TTQD_METRICS_H
#define TTQD_METRICS_H

#include <pthread.h>
#include <stdint.h>

/* Outcomes of a request, the label `outcome` of ttq_requests_total. */
typedef enum ttqd_outcome {
  TTQD_OUT_OK = 0,
  TTQD_OUT_INVALID_ARGUMENT,
  TTQD_OUT_RESOURCE_EXHAUSTED,
  TTQD_OUT_UNAVAILABLE,
  TTQD_OUT_CANCELLED,
  TTQD_OUT_INTERNAL,
  TTQD_OUT_COUNT
} ttqd_outcome;

#define TTQD_HIST_BUCKETS 14

typedef struct ttqd_hist {
  uint64_t counts[TTQD_HIST_BUCKETS + 1]; /* last = +Inf */
  double sum;
  uint64_t n;
} ttqd_hist;

enum { TTQD_H_TTFT, TTQD_H_TOTAL, TTQD_H_QUEUE, TTQD_H_PREFILL, TTQD_H_QUANT, TTQD_H_COUNT };

typedef struct ttqd_metrics {
  pthread_mutex_t mu;
  double start_ms;
  uint64_t requests[TTQD_OUT_COUNT];
  uint64_t prompt_tokens, generated_tokens;
  uint64_t health_requests, stats_requests, cancel_requests, bad_frames;
  ttqd_hist h[TTQD_H_COUNT];
} ttqd_metrics;

/* Instantaneous values the renderer adds (owned by other modules). */
typedef struct ttqd_gauges {
  int queue_depth, queue_capacity, running, ranks, draining;
} ttqd_gauges;

/* The outcome of an Error.Code value (INTERNAL for an unknown code). Can't fail. */
ttqd_outcome ttqd_outcome_of_code(int code);

void ttqd_metrics_init(ttqd_metrics *m, double start_ms);
void ttqd_metrics_free(ttqd_metrics *m);
void ttqd_metrics_count(ttqd_metrics *m, ttqd_outcome o);
/* A finished generation: times in ms (negative = not reached, not observed). */
void ttqd_metrics_generation(ttqd_metrics *m, int prompt_tokens, int generated_tokens,
                             double queue_ms, double ttft_ms, double prefill_ms, double quant_ms,
                             double total_ms);
void ttqd_metrics_other(ttqd_metrics *m, uint64_t *counter); /* ++*counter under the lock */
/* Renders the exposition text; malloc'd, caller frees. NULL when out of memory. */
char *ttqd_metrics_render(ttqd_metrics *m, const ttqd_gauges *g, double now_ms);

#endif
