/* rpc.h -- one request to ttqd from send to its final answer: request ids, the first-answer
 * and idle timeouts, retries with exponential backoff, and cancelling a running Generate when
 * the user interrupts or a caller's deadline passes.
 *
 * Retry rule: an attempt is retried (after 0.5 s, 1 s, 2 s, ... capped at 8 s, plus up to 25%
 * jitter; each attempt with a new random id unless a fixed id was given) when the daemon was
 * not reachable, answered UNAVAILABLE, or did not answer within the timeout -- and only while
 * no chunk of that attempt has arrived. A Generate abandoned because of a timeout gets a
 * best-effort CancelRequest so the daemon does not run it for nobody.
 *
 * Final answers: done, error, health, stats_text, cancelled (everything but chunk). */
#ifndef TTQC_RPC_H
#define TTQC_RPC_H

#include "conn.h"

typedef struct {
  double timeout_ms;      /* connection plus first answer, per attempt */
  double idle_timeout_ms; /* between answers once the first arrived */
  int retries;
  const char *fixed_id;   /* --id: every attempt uses it; NULL = a new random id each */
  double abort_at_ms;     /* absolute; 0 = none. Past it: cancel, drain, TTQC_E_DEADLINE */
} ttqc_rpc_opts;

/* Called for every answer delivered, in order, the final one included. A negative return
 * aborts the request (cancelling a Generate) and is returned by ttqc_rpc. */
typedef int (*ttqc_rpc_cb)(void *user, const Ttq__Response *r);

typedef struct {
  char id[65];         /* the id of the last attempt */
  int attempts;
  bool got_chunk;      /* of the last attempt */
  bool got_final;      /* the final answer reached the callback */
  double t_sent_ms;    /* the last attempt: sent, first answer, first chunk, final (0 = not) */
  double t_first_ms, t_chunk_ms, t_final_ms;
} ttqc_rpc_result;

/* Runs req (request_id is set here and points into res->id on return). Returns 0 when the
 * final answer is not an error; for an Error answer the code's TTQC_E_* with err "CODE:
 * message"; TTQC_E_TIMEOUT / TTQC_E_UNREACHABLE / TTQC_E_AUTH / TTQC_E_MALFORMED /
 * TTQC_E_INTR / TTQC_E_DEADLINE with a reason. On TTQC_E_INTR and TTQC_E_DEADLINE a Generate
 * was cancelled and its final answer awaited for up to 1 s (delivered to cb if it came). */
int ttqc_rpc(ttqc_conn *c, Ttq__Request *req, const ttqc_rpc_opts *o, ttqc_rpc_cb cb,
             void *user, ttqc_rpc_result *res, ttqc_err *err);

/* Sends a CancelRequest for target (fire and forget: its acknowledgement is ignored). */
void ttqc_rpc_send_cancel(ttqc_conn *c, const char *target);

#endif
