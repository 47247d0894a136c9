/* conn.c -- the DEALER connection to ttqd (see conn.h): socket options, CURVE keys, the
 * inproc socket monitor that turns refused handshakes into errors, and deadline-bounded send
 * and receive of single-part protobuf messages.
 * Invariants: every socket has linger 0 (closing never blocks); every wait is a zmq_poll of at
 * most SLICE_MS so signals and deadlines are noticed; a handshake failure is sticky (once
 * seen, every later call fails with TTQC_E_AUTH); a received message is always freed or
 * handed to the caller. */
#include "conn.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "keys.h"

#define SLICE_MS 100
#define MAX_MSG_BYTES (64LL << 20) /* a longer answer drops the connection */

struct ttqc_conn {
  void *sock, *mon;
  char endpoint[256];
  bool curve, ephemeral, verbose, fail_fast;
  const volatile sig_atomic_t *stop;
  bool connected_seen;   /* a TCP/IPC connection was made at least once */
  bool ready_seen;       /* a handshake succeeded at least once */
  bool refused_seen;     /* a connection attempt failed (nothing listening?) */
  unsigned disconnects;  /* ZMQ_EVENT_DISCONNECTED seen so far */
  int fail_event;        /* the fatal handshake failure, 0 = none */
  uint32_t fail_value;
  int no_detail;         /* handshake failures without detail so far */
};

const char *ttqc_conn_endpoint(const ttqc_conn *c) { return c->endpoint; }

int ttqc_conn_opts_from_common(const ttqc_common *c, const volatile sig_atomic_t *stop,
                               char server_pub[41], char client_pub[41], char client_sec[41],
                               ttqc_conn_opts *o, ttqc_err *err) {
  memset(o, 0, sizeof *o);
  o->endpoint = c->endpoint;
  o->verbose = c->verbose;
  o->fail_fast = c->fail_fast;
  o->stop = stop;
  if (!c->server_key) {
    if (c->key)
      return ttqc_fail(err, TTQC_E_USAGE, "--key (or TTQ_KEY) needs --server-key (or "
                       "TTQ_SERVER_KEY): the daemon's public key");
    return 0;
  }
  char kerr[sizeof err->msg - 32];
  if (ttq_keys_read_public(c->server_key, server_pub, kerr, sizeof kerr))
    return ttqc_fail(err, TTQC_E_USAGE, "--server-key: %s", kerr);
  ttq_keypair kp;
  if (c->key) {
    if (ttq_keys_read_pair(c->key, &kp, kerr, sizeof kerr))
      return ttqc_fail(err, TTQC_E_USAGE, "--key: %s", kerr);
  } else {
    if (ttq_keys_generate(&kp, kerr, sizeof kerr)) return ttqc_fail(err, TTQC_E_FAIL, "%s", kerr);
    o->ephemeral = true;
  }
  memcpy(client_pub, kp.pub, 41);
  memcpy(client_sec, kp.sec, 41);
  memset(&kp, 0, sizeof kp);
  o->server_pub = server_pub;
  o->client_pub = client_pub;
  o->client_sec = client_sec;
  return 0;
}

static int set_int(void *s, int opt, int v) { return zmq_setsockopt(s, opt, &v, sizeof v); }

int ttqc_conn_open(void *zctx, const ttqc_conn_opts *o, ttqc_conn **out, ttqc_err *err) {
  *out = NULL;
  if (strlen(o->endpoint) >= sizeof ((ttqc_conn *)0)->endpoint)
    return ttqc_fail(err, TTQC_E_USAGE, "--endpoint: too long");
  ttqc_conn *c = calloc(1, sizeof *c);
  if (!c) return ttqc_fail(err, TTQC_E_FAIL, "out of memory");
  strcpy(c->endpoint, o->endpoint);
  c->curve = o->server_pub != NULL;
  c->ephemeral = o->ephemeral;
  c->verbose = o->verbose;
  c->fail_fast = o->fail_fast;
  c->stop = o->stop;
  int rc;
  int64_t maxmsg = MAX_MSG_BYTES;
  c->sock = zmq_socket(zctx, ZMQ_DEALER);
  if (!c->sock || set_int(c->sock, ZMQ_LINGER, 0) || set_int(c->sock, ZMQ_IMMEDIATE, 1) ||
      set_int(c->sock, ZMQ_RECONNECT_IVL, 100) || set_int(c->sock, ZMQ_RECONNECT_IVL_MAX, 1000) ||
      zmq_setsockopt(c->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg)) {
    rc = ttqc_fail(err, TTQC_E_FAIL, "cannot create a ZeroMQ socket: %s", zmq_strerror(zmq_errno()));
    goto fail;
  }
  if (c->curve) {
    if (!zmq_has("curve")) {
      rc = ttqc_fail(err, TTQC_E_FAIL, "this ZeroMQ library has no CURVE support");
      goto fail;
    }
    if (zmq_setsockopt(c->sock, ZMQ_CURVE_SERVERKEY, o->server_pub, 41) ||
        zmq_setsockopt(c->sock, ZMQ_CURVE_PUBLICKEY, o->client_pub, 41) ||
        zmq_setsockopt(c->sock, ZMQ_CURVE_SECRETKEY, o->client_sec, 41)) {
      rc = ttqc_fail(err, TTQC_E_USAGE, "ZeroMQ refused the CURVE keys: %s",
                zmq_strerror(zmq_errno()));
      goto fail;
    }
  }
  /* The monitor must be attached before connect so that no event is missed; its inproc
   * name is unique per socket (this connection's address and a random part: an endpoint of
   * a closed monitor is released asynchronously and must not clash with a new one). */
  char mon_ep[80], rnd[17];
  if (ttqc_new_id(rnd)) snprintf(rnd, sizeof rnd, "0");
  snprintf(mon_ep, sizeof mon_ep, "inproc://ttqc-monitor-%p-%s", (void *)c, rnd);
  int events = ZMQ_EVENT_CONNECTED | ZMQ_EVENT_CONNECT_RETRIED | ZMQ_EVENT_DISCONNECTED |
               ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
  if (zmq_socket_monitor(c->sock, mon_ep, events) != 0 ||
      !(c->mon = zmq_socket(zctx, ZMQ_PAIR)) || set_int(c->mon, ZMQ_LINGER, 0) ||
      zmq_connect(c->mon, mon_ep) != 0) {
    rc = ttqc_fail(err, TTQC_E_FAIL, "cannot monitor the ZeroMQ socket: %s", zmq_strerror(zmq_errno()));
    goto fail;
  }
  if (zmq_connect(c->sock, c->endpoint) != 0) {
    rc = ttqc_fail(err, TTQC_E_USAGE, "--endpoint: cannot connect to '%s': %s", c->endpoint,
              zmq_strerror(zmq_errno()));
    goto fail;
  }
  *out = c;
  return 0;
fail:
  ttqc_conn_close(c);
  return rc;
}

void ttqc_conn_close(ttqc_conn *c) {
  if (!c) return;
  if (c->sock && c->mon) zmq_socket_monitor(c->sock, NULL, 0);
  if (c->mon) zmq_close(c->mon);
  if (c->sock) zmq_close(c->sock);
  free(c);
}

static const char *event_name(int ev) {
  switch (ev) {
  case ZMQ_EVENT_CONNECTED: return "connected";
  case ZMQ_EVENT_CONNECT_RETRIED: return "connect retried";
  case ZMQ_EVENT_DISCONNECTED: return "disconnected";
  case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: return "handshake succeeded";
  case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL: return "handshake failed (no detail)";
  case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL: return "handshake failed (protocol)";
  case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH: return "handshake failed (authentication)";
  default: return "event";
  }
}

/* The message for a fatal handshake failure. */
static int auth_error(const ttqc_conn *c, ttqc_err *err) {
  const char *ep = c->endpoint;
  switch (c->fail_event) {
  case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
    if (!c->curve)
      return ttqc_fail(err, TTQC_E_AUTH, "ttqd at %s rejected this client (status %u): does it "
                       "require CURVE? pass --server-key and --key", ep, c->fail_value);
    if (c->ephemeral)
      return ttqc_fail(err, TTQC_E_AUTH, "ttqd at %s rejected this client's CURVE key (an "
                       "ephemeral key: pass --key FILE with a key the daemon authorizes)", ep);
    return ttqc_fail(err, TTQC_E_AUTH, "ttqd at %s rejected this client's CURVE key (is its "
                     "public key in the daemon's authorized keys?)", ep);
  case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
    if (c->fail_value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
      return ttqc_fail(err, TTQC_E_AUTH, "ttqd at %s: handshake failed: is the daemon using "
                       "CURVE? %s", ep,
                       c->curve ? "It is not, this client is: drop --server-key (TTQ_SERVER_KEY)"
                                : "It is, this client is not: pass --server-key and --key");
    return ttqc_fail(err, TTQC_E_AUTH, "ttqd at %s: handshake failed (protocol error 0x%x): is "
                     "the daemon using CURVE? Is this a ttqd endpoint?", ep, c->fail_value);
  default:
    return ttqc_fail(err, TTQC_E_AUTH, "ttqd at %s: handshake failed: %s", ep,
                     c->curve ? "is --server-key the daemon's public key, and is the daemon "
                                "using CURVE?"
                              : "is the daemon using CURVE? (then pass --server-key) Is this a "
                                "ttqd endpoint?");
  }
}

/* Reads every pending monitor event; TTQC_E_AUTH once a handshake failure is fatal. */
static int drain_monitor(ttqc_conn *c, ttqc_err *err) {
  for (;;) {
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, c->mon, ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&m);
      break;
    }
    uint16_t ev = 0;
    uint32_t val = 0;
    if (zmq_msg_size(&m) >= 6) {
      memcpy(&ev, zmq_msg_data(&m), 2);
      memcpy(&val, (char *)zmq_msg_data(&m) + 2, 4);
    }
    int more = zmq_msg_more(&m);
    zmq_msg_close(&m);
    while (more) { /* the endpoint frame */
      zmq_msg_init(&m);
      if (zmq_msg_recv(&m, c->mon, 0) < 0) more = 0;
      else more = zmq_msg_more(&m);
      zmq_msg_close(&m);
    }
    if (c->verbose)
      fprintf(stderr, "ttq: debug: %s: %s (%u)\n", c->endpoint, event_name(ev), val);
    switch (ev) {
    case ZMQ_EVENT_CONNECTED: c->connected_seen = true; break;
    case ZMQ_EVENT_CONNECT_RETRIED: c->refused_seen = true; break;
    case ZMQ_EVENT_DISCONNECTED: c->disconnects++; break;
    case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: c->ready_seen = true; c->no_detail = 0; break;
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
      if (!c->fail_event) c->fail_event = ev, c->fail_value = val;
      break;
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
      /* one may be a daemon going away mid-handshake; twice in a row is a refusal */
      if (++c->no_detail >= 2 && !c->fail_event) c->fail_event = ev, c->fail_value = val;
      break;
    default: break;
    }
  }
  return c->fail_event ? auth_error(c, err) : 0;
}

static bool stopped(const ttqc_conn *c, bool interruptible) {
  return interruptible && c->stop && *c->stop;
}

/* One poll of the socket (for events) and the monitor, at most SLICE_MS and never past the
 * deadline. Returns the socket's revents (0 on timeout), or a negative code. */
static int poll_slice(ttqc_conn *c, short events, double deadline_ms, bool interruptible,
                      ttqc_err *err) {
  int rc = drain_monitor(c, err);
  if (rc) return rc;
  if (stopped(c, interruptible)) return ttqc_fail(err, TTQC_E_INTR, "interrupted");
  double left = deadline_ms - ttqc_now_ms();
  long wait = left <= 0 ? 0 : left > SLICE_MS ? SLICE_MS : (long)left + 1;
  zmq_pollitem_t items[2] = {{c->sock, 0, events, 0}, {c->mon, 0, ZMQ_POLLIN, 0}};
  int n = zmq_poll(items, 2, wait);
  if (n < 0) {
    if (zmq_errno() == EINTR) return 0; /* the flag is checked on the next slice */
    return ttqc_fail(err, TTQC_E_FAIL, "zmq_poll: %s", zmq_strerror(zmq_errno()));
  }
  if (items[1].revents && (rc = drain_monitor(c, err))) return rc;
  return items[0].revents;
}

int ttqc_conn_send(ttqc_conn *c, const Ttq__Request *r, double deadline_ms, bool interruptible,
                   ttqc_err *err) {
  size_t n = ttq__request__get_packed_size(r);
  void *buf = malloc(n ? n : 1);
  if (!buf) return ttqc_fail(err, TTQC_E_FAIL, "out of memory");
  ttq__request__pack(r, buf);
  double start = ttqc_now_ms();
  int rc;
  for (;;) {
    rc = poll_slice(c, ZMQ_POLLOUT, deadline_ms, interruptible, err);
    if (rc < 0) break;
    if (rc & ZMQ_POLLOUT) {
      if (zmq_send(c->sock, buf, n, ZMQ_DONTWAIT) == (int)n) {
        rc = 0;
        break;
      }
      if (zmq_errno() != EAGAIN && zmq_errno() != EINTR) {
        rc = ttqc_fail(err, TTQC_E_FAIL, "cannot send to ttqd at %s: %s", c->endpoint,
                       zmq_strerror(zmq_errno()));
        break;
      }
    }
    if (c->fail_fast && c->refused_seen && !c->connected_seen) {
      rc = ttqc_fail(err, TTQC_E_UNREACHABLE, "cannot reach ttqd at %s: connection refused: is "
                     "ttqd running there?", c->endpoint);
      break;
    }
    if (ttqc_now_ms() >= deadline_ms) {
      double s = (deadline_ms - start) / 1e3;
      const char *why = c->ready_seen       ? "the connection was lost"
                        : c->connected_seen ? "connected, but the ZeroMQ handshake did not finish"
                        : c->refused_seen   ? "connection refused: is ttqd running there?"
                                            : "no connection";
      rc = ttqc_fail(err, TTQC_E_UNREACHABLE, "cannot reach ttqd at %s within %.3g s (%s)",
                     c->endpoint, s < 0 ? 0 : s, why);
      break;
    }
  }
  free(buf);
  return rc;
}

int ttqc_conn_recv(ttqc_conn *c, const char *id, double deadline_ms, bool interruptible,
                   Ttq__Response **out, ttqc_err *err) {
  *out = NULL;
  unsigned disconnects = c->disconnects;
  for (;;) {
    int rc = poll_slice(c, ZMQ_POLLIN, deadline_ms, interruptible, err);
    if (rc < 0) return rc;
    if (c->disconnects != disconnects && !(rc & ZMQ_POLLIN)) /* answers already here come first */
      return ttqc_fail(err, TTQC_E_UNREACHABLE, "the connection to ttqd at %s was lost (the "
                       "daemon stopped or restarted)", c->endpoint);
    while (rc & ZMQ_POLLIN) {
      zmq_msg_t m;
      zmq_msg_init(&m);
      if (zmq_msg_recv(&m, c->sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&m);
        break;
      }
      size_t parts = 1, size = zmq_msg_size(&m);
      Ttq__Response *r = NULL;
      bool more = zmq_msg_more(&m);
      if (!more) r = ttq__response__unpack(NULL, size, zmq_msg_data(&m));
      zmq_msg_close(&m);
      while (more) { /* a multi-part message is not a Response: drain it */
        zmq_msg_init(&m);
        more = zmq_msg_recv(&m, c->sock, 0) >= 0 && zmq_msg_more(&m);
        zmq_msg_close(&m);
        parts++;
      }
      if (!r)
        return ttqc_fail(err, TTQC_E_MALFORMED, "malformed response from daemon (%zu part%s, "
                         "%zu bytes)", parts, parts == 1 ? "" : "s", size);
      if (!r->request_id || strcmp(r->request_id, id)) {
        if (c->verbose)
          fprintf(stderr, "ttq: debug: ignored a response for request '%s'\n",
                  r->request_id ? r->request_id : "(none)");
      } else if (r->kind_case == TTQ__RESPONSE__KIND__NOT_SET) {
        if (c->verbose)
          fprintf(stderr, "ttq: debug: ignored a response of an unknown kind for '%s'\n", id);
      } else {
        *out = r;
        return 0;
      }
      ttq__response__free_unpacked(r, NULL);
    }
    if (ttqc_now_ms() >= deadline_ms) return ttqc_fail(err, TTQC_E_TIMEOUT, "timed out");
  }
}

int ttqc_conn_sleep(ttqc_conn *c, double ms, ttqc_err *err) {
  double deadline = ttqc_now_ms() + ms;
  while (ttqc_now_ms() < deadline) {
    int rc = poll_slice(c, 0, deadline, true, err);
    if (rc < 0) return rc;
  }
  return 0;
}

int ttqc_session_open(ttqc_session *s, const ttqc_common *c, const volatile sig_atomic_t *stop,
                      ttqc_err *err) {
  memset(s, 0, sizeof *s);
  char spub[41], cpub[41], csec[41];
  ttqc_conn_opts o;
  int rc = ttqc_conn_opts_from_common(c, stop, spub, cpub, csec, &o, err);
  if (rc == 0 && !(s->zctx = zmq_ctx_new()))
    rc = ttqc_fail(err, TTQC_E_FAIL, "cannot create a ZeroMQ context");
  if (rc == 0) rc = ttqc_conn_open(s->zctx, &o, &s->conn, err);
  memset(csec, 0, sizeof csec);
  return rc;
}

void ttqc_session_close(ttqc_session *s) {
  ttqc_conn_close(s->conn);
  if (s->zctx) zmq_ctx_term(s->zctx);
  memset(s, 0, sizeof *s);
}
