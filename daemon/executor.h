/* executor.h -- runs generation jobs on every rank, one after another.
 *
 * Rank 0 takes jobs from the queue, broadcasts each (prompt ids and settings) to the other
 * ranks, prefills in full precision with statistics, quantizes for the prompt, then samples
 * and broadcasts one token per decode step (-1 ends the job on every rank). Rank 0 sends every
 * reply as [peer][envelope byte][packed Response] on its inproc socket to the front end, which
 * alone touches the client socket. Ranks > 0 follow the broadcasts; they never see a client.
 *
 * Invariant: every rank runs the same jobs with the same settings, so the collectives inside
 * the forward pass line up; cancellation is decided on rank 0 and reaches the others as -1. */
#ifndef TTQD_EXECUTOR_H
#define TTQD_EXECUTOR_H

#include <stdbool.h>

#include "engine.h"
#include "jobq.h"
#include "metrics.h"
#include "serve_cfg.h"

typedef struct ttqd_exec {
  const ttqd_serve_cfg *cfg;
  const ttq_model *m;    /* this rank's shard (the whole model on one rank) */
  int rank, ranks;
  int max_ctx;           /* engines are sized for this many tokens */
  ttqd_jobq *q;          /* rank 0 */
  ttqd_metrics *met;     /* rank 0 */
  void *out;             /* rank 0: ZeroMQ PAIR socket to the front end */
  ttq_engine eng;
  bool has_eng;
  float *logits;
} ttqd_exec;

/* Before serving, on every rank: allocates the buffers and builds the engine for the default
 * quantization settings (KV cache, quantized storage, low-rank factors), so that the first
 * request pays none of it and a failure stops the start. 0, or -1 with d filled. */
int ttqd_exec_prepare(ttqd_exec *x, ttq_diag *d);
/* Serves until the queue is closed and empty (rank 0) or rank 0 says stop (others). Returns 0,
 * or -1 when a rank failed mid-job and the job must abort (the caller aborts MPI). */
int ttqd_exec_run(ttqd_exec *x);
void ttqd_exec_free(ttqd_exec *x);

/* The frame rank 0 sends to the front end after its last reply: the front end may exit. */
#define TTQD_EXEC_BYE "ttqd-executor-done"

#endif
