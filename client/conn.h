/* conn.h -- one connection to ttqd: a ZeroMQ DEALER socket (optionally CURVE), watched by a
 * socket monitor so that a refused handshake is reported instead of waited on, with sends and
 * receives bounded by deadlines.
 *
 * Ownership: the caller owns the ZeroMQ context (one per process; it must outlive every
 * connection made in it). A ttqc_conn is used by one thread at a time; bench makes one per
 * thread. Received responses belong to the caller: free them with
 * ttq__response__free_unpacked(r, NULL).
 *
 * Deadlines are absolute ttqc_now_ms() values. While waiting, a connection polls in slices of
 * at most 100 ms and checks *stop (a signal flag; non-zero = stop) when the call is
 * interruptible.
 *
 * Messages are sent only once the connection is up and its handshake done (ZMQ_IMMEDIATE), so
 * a request is never queued for a daemon that is not there and delivered later. */
#ifndef TTQC_CONN_H
#define TTQC_CONN_H

#include <signal.h>
#include <stdbool.h>

#include "cli.h"
#include "ttq.pb-c.h"

typedef struct ttqc_conn ttqc_conn;

typedef struct {
  const char *endpoint;   /* copied */
  const char *server_pub; /* the daemon's Z85 public key; NULL = no CURVE */
  const char *client_pub; /* this client's Z85 key pair; required with server_pub */
  const char *client_sec;
  bool ephemeral;         /* the pair was generated for this run (for the error message) */
  bool verbose;           /* debug lines on stderr */
  bool fail_fast;         /* a refused connection attempt fails a send at once */
  const volatile sig_atomic_t *stop; /* may be NULL */
} ttqc_conn_opts;

/* Resolves the keys of c (files or Z85, ephemeral pair when c->server_key is set without
 * c->key) into kp / the returned options. pub and kp must outlive the options. */
int ttqc_conn_opts_from_common(const ttqc_common *c, const volatile sig_atomic_t *stop,
                               char server_pub[41], char client_pub[41], char client_sec[41],
                               ttqc_conn_opts *o, ttqc_err *err);

/* A ZeroMQ context and one connection made from the common options: what a command that
 * talks to one daemon from one thread needs. Close it even when open failed. */
typedef struct {
  void *zctx;
  ttqc_conn *conn;
} ttqc_session;
int ttqc_session_open(ttqc_session *s, const ttqc_common *c, const volatile sig_atomic_t *stop,
                      ttqc_err *err);
void ttqc_session_close(ttqc_session *s);

/* Opens the socket and starts connecting (returns at once). TTQC_E_USAGE for an endpoint or
 * key ZeroMQ refuses. */
int ttqc_conn_open(void *zctx, const ttqc_conn_opts *o, ttqc_conn **out, ttqc_err *err);
void ttqc_conn_close(ttqc_conn *c); /* NULL is fine */
const char *ttqc_conn_endpoint(const ttqc_conn *c);

/* Sends r as one message once the connection is up: 0, TTQC_E_UNREACHABLE (not up by the
 * deadline), TTQC_E_AUTH (handshake refused), TTQC_E_INTR, TTQC_E_FAIL. */
int ttqc_conn_send(ttqc_conn *c, const Ttq__Request *r, double deadline_ms, bool interruptible,
                   ttqc_err *err);

/* The next response whose request_id is id (others, and responses of unknown kind, are
 * dropped, with a debug line when verbose): 0 and *out, TTQC_E_TIMEOUT, TTQC_E_AUTH,
 * TTQC_E_INTR (only when interruptible), TTQC_E_MALFORMED, TTQC_E_FAIL. */
int ttqc_conn_recv(ttqc_conn *c, const char *id, double deadline_ms, bool interruptible,
                   Ttq__Response **out, ttqc_err *err);

/* Waits ms (backoff) while watching the handshake and *stop: 0, TTQC_E_AUTH, TTQC_E_INTR. */
int ttqc_conn_sleep(ttqc_conn *c, double ms, ttqc_err *err);

#endif
