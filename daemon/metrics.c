/* metrics.c -- counters and histograms in the Prometheus text format; see metrics.h. */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ttq.pb-c.h"

static const double bounds[TTQD_HIST_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                 1,     2.5,  5,     10,   30,  60,  300};
static const char *const outcome_names[TTQD_OUT_COUNT] = {
    "ok", "invalid_argument", "resource_exhausted", "unavailable", "cancelled", "internal"};
static const struct {
  const char *name, *help;
} hist_names[TTQD_H_COUNT] = {
    {"ttq_time_to_first_token_seconds", "Request arrival to the first generated token."},
    {"ttq_request_duration_seconds", "Request arrival to its final reply (generations)."},
    {"ttq_queue_wait_seconds", "Time a generation waited in the queue."},
    {"ttq_prefill_seconds", "Full-precision prefill, statistics included."},
    {"ttq_quantization_seconds", "Quantizing the model for one request."},
};

ttqd_outcome ttqd_outcome_of_code(int code) {
  switch (code) {
  case TTQ__ERROR__CODE__INVALID_ARGUMENT: return TTQD_OUT_INVALID_ARGUMENT;
  case TTQ__ERROR__CODE__RESOURCE_EXHAUSTED: return TTQD_OUT_RESOURCE_EXHAUSTED;
  case TTQ__ERROR__CODE__UNAVAILABLE: return TTQD_OUT_UNAVAILABLE;
  case TTQ__ERROR__CODE__CANCELLED: return TTQD_OUT_CANCELLED;
  default: return TTQD_OUT_INTERNAL;
  }
}

void ttqd_metrics_init(ttqd_metrics *m, double start_ms) {
  memset(m, 0, sizeof *m);
  pthread_mutex_init(&m->mu, NULL);
  m->start_ms = start_ms;
}

void ttqd_metrics_free(ttqd_metrics *m) { pthread_mutex_destroy(&m->mu); }

void ttqd_metrics_count(ttqd_metrics *m, ttqd_outcome o) {
  pthread_mutex_lock(&m->mu);
  m->requests[o]++;
  pthread_mutex_unlock(&m->mu);
}

void ttqd_metrics_other(ttqd_metrics *m, uint64_t *counter) {
  pthread_mutex_lock(&m->mu);
  ++*counter;
  pthread_mutex_unlock(&m->mu);
}

static void observe(ttqd_hist *h, double ms) {
  if (ms < 0) return;
  double s = ms / 1e3;
  int b = 0;
  while (b < TTQD_HIST_BUCKETS && s > bounds[b]) b++;
  h->counts[b]++;
  h->sum += s;
  h->n++;
}

void ttqd_metrics_generation(ttqd_metrics *m, int prompt_tokens, int generated_tokens,
                             double queue_ms, double ttft_ms, double prefill_ms, double quant_ms,
                             double total_ms) {
  pthread_mutex_lock(&m->mu);
  m->prompt_tokens += (uint64_t)(prompt_tokens > 0 ? prompt_tokens : 0);
  m->generated_tokens += (uint64_t)(generated_tokens > 0 ? generated_tokens : 0);
  observe(&m->h[TTQD_H_QUEUE], queue_ms);
  observe(&m->h[TTQD_H_TTFT], ttft_ms);
  observe(&m->h[TTQD_H_PREFILL], prefill_ms);
  observe(&m->h[TTQD_H_QUANT], quant_ms);
  observe(&m->h[TTQD_H_TOTAL], total_ms);
  pthread_mutex_unlock(&m->mu);
}

typedef struct sbuf {
  char *p;
  size_t n, cap;
  int failed;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) {
  if (b->failed) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    if (k < 0) {
      b->failed = 1;
      return;
    }
    if ((size_t)k < b->cap - b->n) {
      b->n += (size_t)k;
      return;
    }
    size_t cap = b->cap * 2 + (size_t)k;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->failed = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
}

char *ttqd_metrics_render(ttqd_metrics *m, const ttqd_gauges *g, double now_ms) {
  sbuf b = {malloc(4096), 0, 4096, 0};
  if (!b.p) return NULL;
  pthread_mutex_lock(&m->mu);
  put(&b, "# HELP ttq_requests_total Generate requests by outcome.\n# TYPE ttq_requests_total counter\n");
  for (int o = 0; o < TTQD_OUT_COUNT; o++)
    put(&b, "ttq_requests_total{outcome=\"%s\"} %llu\n", outcome_names[o],
        (unsigned long long)m->requests[o]);
  put(&b, "# HELP ttq_prompt_tokens_total Prompt tokens prefilled.\n# TYPE ttq_prompt_tokens_total counter\n"
          "ttq_prompt_tokens_total %llu\n",
      (unsigned long long)m->prompt_tokens);
  put(&b, "# HELP ttq_generated_tokens_total Tokens generated.\n# TYPE ttq_generated_tokens_total counter\n"
          "ttq_generated_tokens_total %llu\n",
      (unsigned long long)m->generated_tokens);
  put(&b, "# HELP ttq_admin_requests_total Health, stats and cancel requests.\n"
          "# TYPE ttq_admin_requests_total counter\n"
          "ttq_admin_requests_total{kind=\"health\"} %llu\n"
          "ttq_admin_requests_total{kind=\"stats\"} %llu\n"
          "ttq_admin_requests_total{kind=\"cancel\"} %llu\n",
      (unsigned long long)m->health_requests, (unsigned long long)m->stats_requests,
      (unsigned long long)m->cancel_requests);
  put(&b, "# HELP ttq_bad_frames_total Frames refused before decoding a request (size, framing, "
          "protobuf).\n# TYPE ttq_bad_frames_total counter\nttq_bad_frames_total %llu\n",
      (unsigned long long)m->bad_frames);
  for (int h = 0; h < TTQD_H_COUNT; h++) {
    const ttqd_hist *x = &m->h[h];
    put(&b, "# HELP %s %s\n# TYPE %s histogram\n", hist_names[h].name, hist_names[h].help,
        hist_names[h].name);
    uint64_t cum = 0;
    for (int k = 0; k < TTQD_HIST_BUCKETS; k++) {
      cum += x->counts[k];
      put(&b, "%s_bucket{le=\"%g\"} %llu\n", hist_names[h].name, bounds[k], (unsigned long long)cum);
    }
    cum += x->counts[TTQD_HIST_BUCKETS];
    put(&b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", hist_names[h].name,
        (unsigned long long)cum, hist_names[h].name, x->sum, hist_names[h].name,
        (unsigned long long)x->n);
  }
  double uptime = (now_ms - m->start_ms) / 1e3;
  pthread_mutex_unlock(&m->mu);
  put(&b, "# HELP ttq_queue_depth Requests waiting.\n# TYPE ttq_queue_depth gauge\nttq_queue_depth %d\n"
          "# HELP ttq_queue_capacity Queue capacity.\n# TYPE ttq_queue_capacity gauge\nttq_queue_capacity %d\n"
          "# HELP ttq_running Requests running (0 or 1).\n# TYPE ttq_running gauge\nttq_running %d\n"
          "# HELP ttq_ranks MPI ranks holding the model.\n# TYPE ttq_ranks gauge\nttq_ranks %d\n"
          "# HELP ttq_draining 1 while shutting down.\n# TYPE ttq_draining gauge\nttq_draining %d\n"
          "# HELP ttq_uptime_seconds Seconds since the daemon started serving.\n"
          "# TYPE ttq_uptime_seconds gauge\nttq_uptime_seconds %.3f\n",
      g->queue_depth, g->queue_capacity, g->running, g->ranks, g->draining, uptime);
  if (b.failed) {
    free(b.p);
    return NULL;
  }
  return b.p;
}
