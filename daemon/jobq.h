/* jobq.h -- the coordinator's requests: a generation job and the bounded queue that hands
 * jobs from the front-end thread to the executor (rank 0's main thread).
 *
 * Ownership: a job belongs to whoever holds it: the front end until it is pushed, the queue
 * while it waits, the executor from ttqd_jobq_pop() on (it frees the job after the final
 * reply). A job taken out of the queue by cancel/abort is handed back to the caller.
 * Thread safety: every jobq function takes the queue's mutex; the only field of a job written
 * by another thread after the push is `cancel` (atomic). Invariant: at most one job runs. */
#ifndef TTQD_JOBQ_H
#define TTQD_JOBQ_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qmodel.h"
#include "sampler.h"
#include "textstream.h"

#define TTQD_ID_MAX 64
#define TTQD_PEER_MAX 256

/* Why a job stops early; the first reason set wins. */
typedef enum ttqd_cancel {
  TTQD_CANCEL_NONE = 0,
  TTQD_CANCEL_CLIENT,   /* a CancelRequest */
  TTQD_CANCEL_GONE,     /* the client disconnected */
  TTQD_CANCEL_SLOW,     /* the client stopped reading (its send queue is full) */
  TTQD_CANCEL_DEADLINE, /* past the request's deadline */
  TTQD_CANCEL_SHUTDOWN, /* the daemon's grace period ended */
  TTQD_CANCEL_STALLED   /* the ranks stopped making progress; the front end replied */
} ttqd_cancel;

typedef struct ttqd_job {
  char id[TTQD_ID_MAX + 1];
  uint8_t peer[TTQD_PEER_MAX]; /* ZeroMQ routing id of the client's connection */
  size_t peer_len;
  bool envelope;               /* the client sent a REQ-style empty delimiter frame */
  int32_t *ids;                /* prompt tokens (bos included), malloc'd */
  int n_prompt;
  int max_tokens;
  ttq_sampler_cfg sampling;
  char *stops[TTQD_MAX_STOPS]; /* malloc'd */
  int n_stops;
  ttq_qcfg q;
  bool chat;                   /* prompt rendered from messages */
  double t_arrival_ms;         /* ttqd_now_ms() at arrival */
  double t_deadline_ms;        /* absolute */
  atomic_int cancel;           /* ttqd_cancel */
  atomic_int replied;          /* 1 once the final reply (Done or Error) is claimed */
} ttqd_job;

void ttqd_job_free(ttqd_job *j);
/* Sets the cancel reason unless one is set already. */
void ttqd_job_cancel(ttqd_job *j, ttqd_cancel why);
/* Claims the right to send the job's final reply: true exactly once per job. */
bool ttqd_job_claim_reply(ttqd_job *j);

typedef struct ttqd_jobq {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  ttqd_job **ring;
  int cap, head, n;
  ttqd_job *running;
  bool closed; /* no more pushes; pop returns NULL once the queue is empty */
  atomic_llong progress_ms; /* when the executor last made progress (ttqd_now_ms, truncated) */
} ttqd_jobq;

int ttqd_jobq_init(ttqd_jobq *q, int cap);
void ttqd_jobq_free(ttqd_jobq *q); /* frees jobs still queued */

/* 0 queued; 1 queue full; 2 queue closed; 3 id in use by a queued or running job. */
int ttqd_jobq_push(ttqd_jobq *q, ttqd_job *j);
/* Waits up to timeout_ms for a job and marks it running. NULL on timeout or when the queue is
 * closed and empty (*closed tells which). */
ttqd_job *ttqd_jobq_pop(ttqd_jobq *q, int timeout_ms, bool *closed);
/* The executor finished the running job (it still owns and frees it). */
void ttqd_jobq_finish(ttqd_jobq *q, ttqd_job *j);

/* Cancels the job with this id: a queued one is removed and returned in *removed (the caller
 * replies and frees it); a running one gets `why`. Returns 1 when found, 0 when not. */
int ttqd_jobq_cancel_id(ttqd_jobq *q, const char *id, ttqd_cancel why, ttqd_job **removed);
/* Same for every job of a client connection; removed jobs go to *removed (malloc'd array,
 * *n_removed entries; NULL when none). Returns the number of jobs found. */
int ttqd_jobq_cancel_peer(ttqd_jobq *q, const uint8_t *peer, size_t peer_len, ttqd_cancel why,
                          ttqd_job ***removed, int *n_removed);
/* Removes every queued job (into *removed as above) and cancels the running one. */
void ttqd_jobq_abort_all(ttqd_jobq *q, ttqd_cancel why, ttqd_job ***removed, int *n_removed);

/* Queue depth (running excluded), whether a job runs, and its id (copied into id_out). */
void ttqd_jobq_status(ttqd_jobq *q, int *depth, bool *running, char id_out[TTQD_ID_MAX + 1]);
void ttqd_jobq_close(ttqd_jobq *q);

/* The executor calls this at every step (prefill start and end, each token). */
void ttqd_jobq_progress(ttqd_jobq *q, double now_ms);
/* Milliseconds since the last progress while a job runs; 0 when none runs. */
double ttqd_jobq_stalled_ms(ttqd_jobq *q, double now_ms);
/* Claims the running job's final reply for the caller (the front end's watchdog): on success
 * copies its id, peer and envelope flag out, cancels it (why) and returns 1; 0 when no job runs
 * or its reply is already claimed. */
int ttqd_jobq_claim_running(ttqd_jobq *q, ttqd_cancel why, char id[TTQD_ID_MAX + 1],
                            uint8_t peer[TTQD_PEER_MAX], size_t *peer_len, bool *envelope);

#endif
