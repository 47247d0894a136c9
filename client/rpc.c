/* rpc.c -- the life of one request (see rpc.h): attempts, backoff, timeouts, cancellation.
 * Invariants: every received Response is freed here after the callback saw it; the request's
 * id is the only one whose answers are accepted; a Generate is never left running on the
 * daemon by an interrupt, a deadline or a timeout without a CancelRequest being sent. */
#include "rpc.h"

#include <stdlib.h>
#include <string.h>

#define CANCEL_WAIT_MS 1000.0
#define BACKOFF_BASE_MS 500.0
#define BACKOFF_MAX_MS 8000.0

static double backoff_ms(int attempt) {
  double ms = BACKOFF_BASE_MS;
  for (int i = 0; i < attempt && ms < BACKOFF_MAX_MS; i++) ms *= 2;
  if (ms > BACKOFF_MAX_MS) ms = BACKOFF_MAX_MS;
  uint32_t r = 0;
  ttqc_random(&r, sizeof r); /* jitter; without randomness, none */
  return ms * (1.0 + 0.25 * (r / 4294967296.0));
}

void ttqc_rpc_send_cancel(ttqc_conn *c, const char *target) {
  Ttq__Request req = TTQ__REQUEST__INIT;
  Ttq__CancelRequest cr = TTQ__CANCEL_REQUEST__INIT;
  char id[17];
  if (ttqc_new_id(id)) return;
  cr.target_id = (char *)target;
  req.request_id = id;
  req.kind_case = TTQ__REQUEST__KIND_CANCEL;
  req.cancel = &cr;
  ttqc_err ignored;
  ttqc_conn_send(c, &req, ttqc_now_ms() + 200, false, &ignored);
}

/* After an interrupt or deadline: cancel the Generate and pass on what arrives for it within
 * CANCEL_WAIT_MS, up to its final answer. */
static void cancel_and_drain(ttqc_conn *c, const char *id, ttqc_rpc_cb cb, void *user,
                             ttqc_rpc_result *res) {
  ttqc_rpc_send_cancel(c, id);
  double until = ttqc_now_ms() + CANCEL_WAIT_MS;
  for (;;) {
    Ttq__Response *r;
    ttqc_err ignored;
    if (ttqc_conn_recv(c, id, until, false, &r, &ignored)) return;
    bool final = r->kind_case != TTQ__RESPONSE__KIND_CHUNK;
    if (cb) cb(user, r);
    ttq__response__free_unpacked(r, NULL);
    if (final) {
      res->got_final = true;
      res->t_final_ms = ttqc_now_ms();
      return;
    }
  }
}

enum { NO_RETRY = 0, RETRY = 1 };

/* Receives the answers of one attempt. *retry is set when the outcome may be retried. */
static int stream(ttqc_conn *c, const Ttq__Request *req, const ttqc_rpc_opts *o, bool last,
                  ttqc_rpc_cb cb, void *user, ttqc_rpc_result *res, int *retry, ttqc_err *err) {
  bool generate = req->kind_case == TTQ__REQUEST__KIND_GENERATE;
  double first_deadline = res->t_sent_ms + o->timeout_ms, last_at = 0;
  *retry = NO_RETRY;
  for (;;) {
    double dl = res->t_first_ms ? last_at + o->idle_timeout_ms : first_deadline;
    bool at_abort = o->abort_at_ms > 0 && o->abort_at_ms < dl;
    Ttq__Response *r;
    int rc = ttqc_conn_recv(c, res->id, at_abort ? o->abort_at_ms : dl, true, &r, err);
    if (rc == TTQC_E_INTR || (rc == TTQC_E_TIMEOUT && at_abort)) {
      if (generate) cancel_and_drain(c, res->id, cb, user, res);
      if (rc == TTQC_E_INTR)
        return ttqc_fail(err, TTQC_E_INTR, "interrupted%s", generate ? "; request cancelled" : "");
      return ttqc_fail(err, TTQC_E_DEADLINE, "stopped at the deadline%s",
                       generate ? "; request cancelled" : "");
    }
    if (rc == TTQC_E_TIMEOUT) {
      if (generate) ttqc_rpc_send_cancel(c, res->id);
      if (res->t_first_ms)
        return ttqc_fail(err, TTQC_E_TIMEOUT, "no answer from ttqd at %s for %.3g s after the "
                         "last one (--idle-timeout)", ttqc_conn_endpoint(c),
                         o->idle_timeout_ms / 1e3);
      *retry = RETRY;
      return ttqc_fail(err, TTQC_E_TIMEOUT, "no answer from ttqd at %s within %.3g s "
                       "(--timeout)", ttqc_conn_endpoint(c), o->timeout_ms / 1e3);
    }
    if (rc == TTQC_E_UNREACHABLE && !res->got_chunk) *retry = RETRY; /* lost before any output */
    if (rc) return rc;
    last_at = ttqc_now_ms();
    if (!res->t_first_ms) res->t_first_ms = last_at;
    bool final = r->kind_case != TTQ__RESPONSE__KIND_CHUNK;
    int code = r->kind_case == TTQ__RESPONSE__KIND_ERROR ? r->error->code : 0;
    if (code == TTQ__ERROR__CODE__UNAVAILABLE && !res->got_chunk && !last) {
      ttqc_fail(err, TTQC_E_UNAVAILABLE, "UNAVAILABLE: %s",
                r->error->message ? r->error->message : "");
      ttq__response__free_unpacked(r, NULL);
      *retry = RETRY;
      return TTQC_E_UNAVAILABLE;
    }
    if (!final) {
      res->got_chunk = true;
      if (!res->t_chunk_ms) res->t_chunk_ms = last_at;
    } else {
      res->got_final = true;
      res->t_final_ms = last_at;
    }
    int cbrc = cb ? cb(user, r) : 0;
    rc = 0;
    if (code) {
      char buf[32];
      rc = ttqc_fail(err, ttqc_rc_for_code(code), "%s: %s", ttqc_code_name(code, buf, sizeof buf),
                     r->error->message && *r->error->message ? r->error->message
                                                             : "(no message)");
    }
    ttq__response__free_unpacked(r, NULL);
    if (cbrc < 0) {
      if (!final && generate) cancel_and_drain(c, res->id, NULL, NULL, res);
      return cbrc;
    }
    if (final) return rc;
  }
}

/* The caller's deadline passed before an attempt could finish: the reason so far is kept. */
static int deadline_error(ttqc_err *err) {
  char why[sizeof err->msg];
  memcpy(why, err->msg, sizeof why);
  return ttqc_fail(err, TTQC_E_DEADLINE, "stopped at the deadline (%s)", why);
}

int ttqc_rpc(ttqc_conn *c, Ttq__Request *req, const ttqc_rpc_opts *o, ttqc_rpc_cb cb,
             void *user, ttqc_rpc_result *res, ttqc_err *err) {
  memset(res, 0, sizeof *res);
  for (int attempt = 0;; attempt++) {
    int rc;
    if (attempt > 0) {
      double wait = backoff_ms(attempt - 1);
      if (o->abort_at_ms > 0 && ttqc_now_ms() + wait >= o->abort_at_ms)
        return deadline_error(err);
      if ((rc = ttqc_conn_sleep(c, wait, err))) return rc;
    }
    if (o->fixed_id) snprintf(res->id, sizeof res->id, "%s", o->fixed_id);
    else if (ttqc_new_id(res->id)) return ttqc_fail(err, TTQC_E_FAIL, "no random source for ids");
    req->request_id = res->id;
    res->attempts = attempt + 1;
    res->got_chunk = res->got_final = false;
    res->t_sent_ms = res->t_first_ms = res->t_chunk_ms = res->t_final_ms = 0;
    bool last = attempt >= o->retries;
    double dl = ttqc_now_ms() + o->timeout_ms;
    bool at_abort = o->abort_at_ms > 0 && o->abort_at_ms < dl;
    rc = ttqc_conn_send(c, req, at_abort ? o->abort_at_ms : dl, true, err);
    if (rc == TTQC_E_UNREACHABLE && at_abort) return deadline_error(err);
    if (rc == TTQC_E_UNREACHABLE && !last) continue;
    if (rc == TTQC_E_UNREACHABLE) {
      size_t n = strlen(err->msg);
      if (res->attempts > 1)
        snprintf(err->msg + n, sizeof err->msg - n, "; %d attempts", res->attempts);
    }
    if (rc) return rc;
    res->t_sent_ms = ttqc_now_ms();
    int retry;
    rc = stream(c, req, o, last, cb, user, res, &retry, err);
    if (rc && retry == RETRY && !last) continue;
    if ((rc == TTQC_E_TIMEOUT || rc == TTQC_E_UNREACHABLE) && res->attempts > 1) {
      size_t n = strlen(err->msg);
      snprintf(err->msg + n, sizeof err->msg - n, "; %d attempts", res->attempts);
    }
    return rc;
  }
}
