/* executor.c -- generation jobs on every rank; see executor.h. */
#include "executor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "cli.h"
#include "comm.h"
#include "request.h"
#include "sampler.h"
#include "textstream.h"
#include "ttq.pb-c.h"

enum { WIRE_JOB = 1, WIRE_SHUTDOWN = 2 };

/* What every rank needs to run a job (rank 0 broadcasts it; ids follow). */
typedef struct wire_job {
  int32_t kind, n_prompt;
  int32_t method, bits, group, rank, mean, search, head_bits;
  float alpha, lambda;
} wire_job;

static bool same_q(const ttq_qcfg *a, const ttq_qcfg *b) {
  return a->method == b->method && a->bits == b->bits && a->group == b->group &&
         a->rank == b->rank && a->alpha == b->alpha && a->lambda == b->lambda &&
         a->mean == b->mean && a->search == b->search && a->head_bits == b->head_bits;
}

/* Makes x->eng use settings q (engines are reused while the settings stay the same). */
static int ensure_engine(ttqd_exec *x, const ttq_qcfg *q, ttq_diag *d) {
  if (x->has_eng && same_q(&x->eng.o.q, q)) return 0;
  if (x->has_eng) ttq_engine_free(&x->eng);
  x->has_eng = false;
  ttq_engine_opts o = x->cfg->eo;
  o.q = *q;
  o.max_ctx = x->max_ctx;
  o.threads = (int)x->cfg->threads;
  if (ttq_engine_init(&x->eng, x->m, &o, d)) return -1;
  x->has_eng = true;
  return 0;
}

/* ---- rank 0: replies ---- */

/* Sends a reply. A final one (Done, Error) is sent only by whoever claims it first (the
 * executor or the front end's watchdog); chunks stop once it is claimed. Returns whether sent. */
static bool send_reply(ttqd_exec *x, ttqd_job *j, Ttq__Response *r, bool final) {
  if (final ? !ttqd_job_claim_reply(j) : atomic_load(&j->replied) != 0) return false;
  r->request_id = (char *)j->id;
  size_t n = ttq__response__get_packed_size(r);
  uint8_t stackbuf[1024], *buf = n <= sizeof stackbuf ? stackbuf : malloc(n);
  if (!buf) return false;
  ttq__response__pack(r, buf);
  uint8_t env = j->envelope ? 1 : 0;
  zmq_send(x->out, j->peer, j->peer_len, ZMQ_SNDMORE);
  zmq_send(x->out, &env, 1, ZMQ_SNDMORE);
  zmq_send(x->out, buf, n, 0);
  if (buf != stackbuf) free(buf);
  return true;
}

static bool send_error(ttqd_exec *x, ttqd_job *j, int code, const char *msg) {
  Ttq__Response r = TTQ__RESPONSE__INIT;
  Ttq__Error e = TTQ__ERROR__INIT;
  e.code = (Ttq__Error__Code)code;
  e.message = (char *)msg;
  r.kind_case = TTQ__RESPONSE__KIND_ERROR;
  r.error = &e;
  return send_reply(x, j, &r, true);
}


/* The error a cancel reason becomes (GONE has nobody to tell, but is logged the same way). */
static int cancel_code(int why, const ttqd_job *j, double now, char *msg, size_t cap) {
  switch (why) {
  case TTQD_CANCEL_CLIENT: snprintf(msg, cap, "cancelled by a cancel request"); break;
  case TTQD_CANCEL_GONE: snprintf(msg, cap, "the client disconnected"); break;
  case TTQD_CANCEL_SLOW: snprintf(msg, cap, "the client stopped reading its stream"); break;
  case TTQD_CANCEL_DEADLINE:
    snprintf(msg, cap, "deadline exceeded (%.0f ms after arrival)", now - j->t_arrival_ms);
    break;
  default:
    snprintf(msg, cap, "the daemon is shutting down; retry");
    return TTQ__ERROR__CODE__UNAVAILABLE;
  }
  return TTQ__ERROR__CODE__CANCELLED;
}

/* Why the job must stop now, or TTQD_CANCEL_NONE (checks the deadline too). */
static int stop_reason(ttqd_job *j, double now) {
  if (now > j->t_deadline_ms) ttqd_job_cancel(j, TTQD_CANCEL_DEADLINE);
  return atomic_load(&j->cancel);
}

typedef struct job_figures {
  int generated;
  double t_start, t_first, t_end, prefill_ms, stats_ms, quant_ms;
  const char *finish;
} job_figures;

static void log_job(const ttqd_exec *x, const ttqd_job *j, const job_figures *f,
                    const char *outcome, const char *detail) {
  if (x->cfg->log_level < TTQD_LOG_INFO) return;
  char qs[96];
  ttq_qcfg_str(&j->q, qs, sizeof qs);
  fprintf(stderr,
          "ttqd: request id=%s prompt_tokens=%d generated=%d queue_ms=%.1f ttft_ms=%.1f "
          "prefill_ms=%.1f quant_ms=%.1f decode_ms=%.1f total_ms=%.1f quant=\"%s\" outcome=%s%s%s%s\n",
          j->id, j->n_prompt, f->generated, f->t_start - j->t_arrival_ms,
          f->t_first > 0 ? f->t_first - j->t_arrival_ms : -1.0, f->prefill_ms, f->quant_ms,
          f->t_first > 0 ? f->t_end - f->t_first : 0.0, f->t_end - j->t_arrival_ms, qs, outcome,
          f->finish ? " finish=" : "", f->finish ? f->finish : "", detail ? detail : "");
}

/* Ends a job with an error reply (and the metrics and log line that go with it), unless the
 * front end's watchdog already answered for it. */
static void fail_job(ttqd_exec *x, ttqd_job *j, job_figures *f, int code, const char *msg) {
  f->t_end = ttqd_now_ms();
  if (!send_error(x, j, code, msg)) return;
  ttqd_metrics_count(x->met, ttqd_outcome_of_code(code));
  ttqd_metrics_generation(x->met, j->n_prompt, f->generated, f->t_start - j->t_arrival_ms,
                          f->t_first > 0 ? f->t_first - j->t_arrival_ms : -1, f->prefill_ms,
                          f->quant_ms, f->t_end - j->t_arrival_ms);
  char detail[600];
  snprintf(detail, sizeof detail, " error=\"%s\"", msg);
  log_job(x, j, f, ttq__error__code__descriptor.values[code > 0 && code <= 5 ? code - 1 : 4].name,
          detail);
}

static void send_chunk(ttqd_exec *x, ttqd_job *j, int32_t tok, const char *text,
                       size_t len, uint32_t index) {
  Ttq__Response r = TTQ__RESPONSE__INIT;
  Ttq__TokenChunk c = TTQ__TOKEN_CHUNK__INIT;
  char buf[2048], *t = len < sizeof buf ? buf : malloc(len + 1);
  if (!t) return;
  memcpy(t, text, len);
  t[len] = '\0';
  c.text = t;
  c.n_token_ids = tok >= 0 ? 1 : 0; /* the flushed tail of the text has no token of its own */
  c.token_ids = tok >= 0 ? &tok : NULL;
  c.has_index = 1;
  c.index = index;
  r.kind_case = TTQ__RESPONSE__KIND_CHUNK;
  r.chunk = &c;
  send_reply(x, j, &r, false);
  if (t != buf) free(t);
}

/* Returns false when the front end's watchdog already answered for the job. */
static bool send_done(ttqd_exec *x, ttqd_job *j, const job_figures *f) {
  Ttq__Response r = TTQ__RESPONSE__INIT;
  Ttq__Done dn = TTQ__DONE__INIT;
  Ttq__Quantization qm;
  ttqd_quant_to_msg(&j->q, &qm);
  double decode_ms = f->t_end - f->t_first;
  dn.has_prompt_tokens = dn.has_generated_tokens = dn.has_ttft_ms = dn.has_prefill_ms = 1;
  dn.has_calib_ms = dn.has_quant_ms = dn.has_decode_ms = dn.has_decode_tok_s = 1;
  dn.has_queue_ms = dn.has_total_ms = 1;
  dn.prompt_tokens = (uint32_t)j->n_prompt;
  dn.generated_tokens = (uint32_t)f->generated;
  dn.ttft_ms = f->t_first - j->t_arrival_ms;
  dn.prefill_ms = f->prefill_ms;
  dn.calib_ms = f->stats_ms;
  dn.quant_ms = f->quant_ms;
  dn.decode_ms = decode_ms;
  dn.decode_tok_s = f->generated > 1 && decode_ms > 0 ? (f->generated - 1) / (decode_ms / 1e3) : 0;
  dn.queue_ms = f->t_start - j->t_arrival_ms;
  dn.total_ms = f->t_end - j->t_arrival_ms;
  dn.quant = &qm;
  dn.finish_reason = (char *)f->finish;
  r.kind_case = TTQ__RESPONSE__KIND_DONE;
  r.done = &dn;
  return send_reply(x, j, &r, true);
}

/* Decode loop on rank 0: sample, stream, broadcast the token, step. Returns 0 when the job
 * ended normally (f->finish set), a cancel reason (> 0), or -1 on an engine failure. */
static int generate(ttqd_exec *x, ttqd_job *j, job_figures *f, char *err, size_t cap) {
  ttq_sampler smp = {0};
  ttqd_textstream ts;
  ttq_diag d = {0};
  const ttq_model *m = x->m;
  int rc = 0;
  int32_t stop = -1;
  if (ttq_sampler_init(&smp, m->tp ? m->tp->full.vocab : m->cfg.vocab, &j->sampling, &d)) {
    snprintf(err, cap, "sampler: %.400s", d.msg);
    ttqd_comm_bcast(&stop, sizeof stop, false);
    return -1;
  }
  if (ttqd_textstream_init(&ts, m->tok, (const char *const *)j->stops, j->n_stops)) {
    ttq_sampler_free(&smp);
    snprintf(err, cap, "out of memory");
    ttqd_comm_bcast(&stop, sizeof stop, false);
    return -1;
  }
  const char *text;
  size_t len;
  f->finish = "length";
  for (int i = 0; i < j->max_tokens; i++) {
    int32_t next = ttq_sample(&smp, x->logits);
    f->generated++;
    if (i == 0) f->t_first = ttqd_now_ms();
    if (ttq_model_is_eos(m, next)) {
      send_chunk(x, j, next, "", 0, (uint32_t)i);
      f->finish = "eos";
      break;
    }
    int hit = ttqd_textstream_push(&ts, next, &text, &len);
    if (hit < 0) {
      snprintf(err, cap, "detokenizer: %s", ttq_strerror(hit));
      rc = -1;
      break;
    }
    send_chunk(x, j, next, text, len, (uint32_t)i);
    if (hit) {
      f->finish = "stop";
      break;
    }
    if (i + 1 == j->max_tokens) break;
    ttqd_jobq_progress(x->q, ttqd_now_ms());
    int why = stop_reason(j, ttqd_now_ms());
    if (why) {
      rc = why;
      break;
    }
    if (x->cfg->step_delay_ms > 0) {
      struct timespec pause = {x->cfg->step_delay_ms / 1000, (x->cfg->step_delay_ms % 1000) * 1000000L};
      nanosleep(&pause, NULL);
    }
    ttqd_comm_bcast(&next, sizeof next, false);
    if (ttq_engine_decode(&x->eng, next, x->logits, &d)) {
      snprintf(err, cap, "decode: %.400s", d.msg);
      ttq_sampler_free(&smp);
      ttqd_textstream_free(&ts);
      return -2; /* the other ranks are inside the step: the job cannot end cleanly */
    }
  }
  ttqd_comm_bcast(&stop, sizeof stop, false);
  if (rc == 0 && ttqd_textstream_finish(&ts, &text, &len) == 0 && len > 0)
    send_chunk(x, j, -1, text, len, (uint32_t)f->generated);
  ttq_sampler_free(&smp);
  ttqd_textstream_free(&ts);
  return rc;
}

/* Runs one job on rank 0. Returns 0, or -1 when the ranks can no longer agree (abort). */
static int run_job_root(ttqd_exec *x, ttqd_job *j) {
  job_figures f = {0};
  f.t_start = ttqd_now_ms();
  char msg[512];
  int why = stop_reason(j, f.t_start);
  if (why) { /* cancelled or expired while queued */
    int code = cancel_code(why, j, f.t_start, msg, sizeof msg);
    fail_job(x, j, &f, code, msg);
    return 0;
  }
  wire_job w = {WIRE_JOB, j->n_prompt, (int32_t)j->q.method, j->q.bits, j->q.group,
                j->q.rank, j->q.mean, j->q.search, j->q.head_bits, j->q.alpha, j->q.lambda};
  ttqd_comm_bcast(&w, sizeof w, true);
  ttqd_comm_bcast(j->ids, j->n_prompt * (int)sizeof *j->ids, false);
  ttq_diag d = {0};
  bool ok = ensure_engine(x, &j->q, &d) == 0;
  if (!ttqd_comm_agree(ok)) {
    snprintf(msg, sizeof msg, "engine: %.400s", ok ? "another rank failed to set up" : d.msg);
    fail_job(x, j, &f, TTQ__ERROR__CODE__INTERNAL, msg);
    return 0;
  }
  if (ttq_engine_prefill(&x->eng, j->ids, j->n_prompt, x->logits, &d)) {
    snprintf(msg, sizeof msg, "prefill: %.400s", d.msg);
    fail_job(x, j, &f, TTQ__ERROR__CODE__INTERNAL, msg);
    return x->ranks > 1 ? -1 : 0;
  }
  ttqd_jobq_progress(x->q, ttqd_now_ms());
  f.prefill_ms = x->eng.last.prefill_ms;
  f.stats_ms = x->eng.last.stats_ms;
  int rc = generate(x, j, &f, msg, sizeof msg);
  f.quant_ms = x->eng.last.quant_ms; /* the first decode step quantizes (engine.h) */
  f.t_end = ttqd_now_ms();
  if (rc == -2) {
    fail_job(x, j, &f, TTQ__ERROR__CODE__INTERNAL, msg);
    return x->ranks > 1 ? -1 : 0;
  }
  if (rc == -1) {
    fail_job(x, j, &f, TTQ__ERROR__CODE__INTERNAL, msg);
    return 0;
  }
  if (rc > 0) {
    int code = cancel_code(rc, j, f.t_end, msg, sizeof msg);
    fail_job(x, j, &f, code, msg);
    return 0;
  }
  if (!send_done(x, j, &f)) return 0;
  ttqd_metrics_count(x->met, TTQD_OUT_OK);
  ttqd_metrics_generation(x->met, j->n_prompt, f.generated, f.t_start - j->t_arrival_ms,
                          f.t_first - j->t_arrival_ms, f.prefill_ms, f.quant_ms,
                          f.t_end - j->t_arrival_ms);
  log_job(x, j, &f, "ok", NULL);
  return 0;
}

/* Ranks > 0: follow rank 0 through one job. */
static int run_job_worker(ttqd_exec *x, const wire_job *w) {
  int32_t *ids = malloc((size_t)w->n_prompt * sizeof *ids);
  if (!ids) return -1; /* the broadcast below would be missed: abort */
  ttqd_comm_bcast(ids, w->n_prompt * (int)sizeof *ids, false);
  ttq_qcfg q = {(ttq_method)w->method, w->bits, w->group, w->rank, w->alpha, w->lambda,
                w->mean != 0, w->search, w->head_bits};
  ttq_diag d = {0};
  bool ok = ensure_engine(x, &q, &d) == 0;
  if (!ok) fprintf(stderr, "ttqd serve (rank %d): engine: %s\n", x->rank, d.msg);
  if (!ttqd_comm_agree(ok)) {
    free(ids);
    return 0;
  }
  int rc = ttq_engine_prefill(&x->eng, ids, w->n_prompt, x->logits, &d);
  free(ids);
  if (rc) return -1;
  for (;;) {
    int32_t tok;
    ttqd_comm_bcast(&tok, sizeof tok, false);
    if (tok < 0) return 0;
    if (ttq_engine_decode(&x->eng, tok, x->logits, &d)) return -1;
  }
}

int ttqd_exec_prepare(ttqd_exec *x, ttq_diag *d) {
  const ttq_config *fc = x->m->tp ? &x->m->tp->full : &x->m->cfg;
  if (!x->logits && !(x->logits = malloc((size_t)fc->vocab * sizeof *x->logits))) {
    snprintf(d->msg, sizeof d->msg, "out of memory for the logits");
    return -1;
  }
  return ensure_engine(x, &x->cfg->eo.q, d);
}

/* Rank 0 stopping on an error: the front end is told too (it waits for the goodbye), and the
 * top level then aborts the job, since the other ranks may be out of step. */
static int fail_root(ttqd_exec *x) {
  if (x->rank == 0) zmq_send(x->out, TTQD_EXEC_BYE, strlen(TTQD_EXEC_BYE), 0);
  return -1;
}

int ttqd_exec_run(ttqd_exec *x) {
  const ttq_config *fc = x->m->tp ? &x->m->tp->full : &x->m->cfg;
  if (!x->logits && !(x->logits = malloc((size_t)fc->vocab * sizeof *x->logits))) return fail_root(x);
  if (x->rank > 0) {
    for (;;) {
      wire_job w;
      ttqd_comm_bcast(&w, sizeof w, true);
      if (w.kind == WIRE_SHUTDOWN) return 0;
      if (run_job_worker(x, &w)) return -1;
    }
  }
  for (;;) {
    bool closed = false;
    ttqd_job *j = ttqd_jobq_pop(x->q, 200, &closed);
    if (!j) {
      if (!closed) continue;
      wire_job w = {WIRE_SHUTDOWN, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
      ttqd_comm_bcast(&w, sizeof w, true);
      zmq_send(x->out, TTQD_EXEC_BYE, strlen(TTQD_EXEC_BYE), 0);
      return 0;
    }
    int rc = run_job_root(x, j);
    ttqd_jobq_finish(x->q, j);
    ttqd_job_free(j);
    if (rc) return fail_root(x);
  }
}

void ttqd_exec_free(ttqd_exec *x) {
  if (x->has_eng) ttq_engine_free(&x->eng);
  x->has_eng = false;
  free(x->logits);
  x->logits = NULL;
}
