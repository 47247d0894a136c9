/* request.h -- from a decoded Request to a validated job: ids, sampling, stop strings,
 * quantization settings, limits. Every refusal carries an error code (ttq.proto's
 * Error.Code) and a message naming the field, its value and the limit.
 *
 * No I/O, no MPI, no ZeroMQ: the fuzz harness drives these functions directly. */
#ifndef TTQD_REQUEST_H
#define TTQD_REQUEST_H

#include <stddef.h>

#include "jobq.h"
#include "model.h"
#include "serve_cfg.h"
#include "ttq.pb-c.h"

typedef struct ttqd_req_ctx {
  const ttqd_serve_cfg *cfg;
  const ttq_model *m;   /* the whole model (tokenizer, configuration, chat template) */
  int ranks;
  int tp_align;         /* row-slice alignment the shards were planned with (ranks > 1) */
  int max_prompt;       /* effective prompt limit in tokens */
  int max_ctx;          /* context the engines are sized for (prompt + generation) */
} ttqd_req_ctx;

/* A refusal: code is a TTQ__ERROR__CODE__* value. */
typedef struct ttqd_refusal {
  int code;
  char msg[512];
} ttqd_refusal;

/* Checks a client-chosen request id (1..64 printable ASCII, no spaces). 0 or -1 with *r. */
int ttqd_request_check_id(const char *id, ttqd_refusal *r);

/* Builds a job (malloc'd, owned by the caller) from a Generate. The job's id, peer and times
 * are left for the caller. 0, or -1 with *r filled. now_ms: arrival time. */
int ttqd_generate_to_job(const ttqd_req_ctx *c, const Ttq__GenerateRequest *g, double now_ms,
                         ttqd_job **out, ttqd_refusal *r);

/* Fills a Quantization message from settings; strings point to static storage. */
void ttqd_quant_to_msg(const ttq_qcfg *q, Ttq__Quantization *msg);

#endif
