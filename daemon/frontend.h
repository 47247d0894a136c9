/* frontend.h -- rank 0's front end: one thread that alone owns the client ROUTER socket (and
 * the optional HTTP metrics socket and the CURVE authentication handler). It decodes and
 * validates requests, answers Health, Stats and Cancel at once, queues Generate jobs for the
 * executor, forwards the executor's replies to the clients, notices clients that left or stop
 * reading, and runs the SIGTERM drain.
 *
 * Guarantees: every decodable request gets at least one reply; a full queue is refused at once
 * (RESOURCE_EXHAUSTED); the thread never blocks on a client (all sends are non-blocking). */
#ifndef TTQD_FRONTEND_H
#define TTQD_FRONTEND_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "jobq.h"
#include "metrics.h"
#include "request.h"
#include "serve_cfg.h"

typedef struct ttqd_http_conn {
  uint8_t id[TTQD_PEER_MAX];
  size_t id_len;
  char buf[8192];
  size_t len;
  bool used;
} ttqd_http_conn;

typedef struct ttqd_frontend {
  const ttqd_serve_cfg *cfg;
  ttqd_req_ctx rctx;
  ttqd_jobq *q;
  ttqd_metrics *met;
  const volatile sig_atomic_t *signals; /* incremented by the top level's SIGTERM/SIGINT handler */
  void *zctx;
  void *router, *pair, *zap, *http;
  void *mon;                  /* the router's connection events (ZMQ_EVENT_ACCEPTED/DISCONNECTED) */
  int clients;                /* client connections open now */
  uint8_t (*keys)[32]; /* authorized client public keys (binary) */
  int n_keys;
  uint8_t server_public[32];
  ttqd_http_conn http_conns[16];
  char endpoint[256];         /* the bound endpoints (a '*' port resolved) */
  char metrics_endpoint[256];
  double start_ms;
  int signals_seen;
  bool draining, aborted, closed, executor_done;
  bool stalled;               /* the running job stopped making progress (watchdog) */
  double drain_deadline_ms;
  uint64_t next_id;
  pthread_t thread;
  bool started;
} ttqd_frontend;

/* Creates and binds the sockets (prints the reason and returns -1 on failure). *exec_out is the
 * executor's end of the reply channel (a PAIR socket the caller closes after the executor). */
int ttqd_frontend_open(ttqd_frontend *f, void *zctx, void **exec_out);
/* Starts the thread. It returns once the executor sent TTQD_EXEC_BYE. */
int ttqd_frontend_start(ttqd_frontend *f);
void ttqd_frontend_join(ttqd_frontend *f);
/* Closes the sockets (replies not yet delivered get `linger_ms`). */
void ttqd_frontend_close(ttqd_frontend *f, int linger_ms);

#endif
