/* frontend.c -- rank 0's client-facing thread; see frontend.h. */
#include "frontend.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "cli.h"
#include "executor.h"
#include "keys.h"
#include "ttq.h"
#include "ttq.pb-c.h"

#define MONITOR_ENDPOINT "inproc://ttqd-clients"
#define REPLY_ENDPOINT "inproc://ttqd-replies"
#define ZAP_ENDPOINT "inproc://zeromq.zap.01"

/* ---------- keys ---------- */

/* The daemon's key pair: the shared reader (proto/keys.c), plus a warning when the secret is
 * readable by others. */
static int read_keypair(const char *path, ttq_keypair *kp) {
  struct stat st;
  if (stat(path, &st) == 0 && (st.st_mode & 077))
    fprintf(stderr, "ttqd serve: warning: %s is readable by group or others (mode %03o); "
                    "chmod 600 it\n", path, (unsigned)(st.st_mode & 0777));
  char err[512];
  if (ttq_keys_read_pair(path, kp, err, sizeof err)) {
    fprintf(stderr, "ttqd serve: curve-secret-key: %s\n", err);
    return -1;
  }
  return 0;
}

static int read_authorized(ttqd_frontend *f, const char *path) {
  FILE *fp = fopen(path, "r");
  if (!fp) {
    fprintf(stderr, "ttqd serve: curve-authorized-keys: cannot open %s: %m\n", path);
    return -1;
  }
  char line[256], key[TTQ_KEY_Z85_LEN + 1];
  int ln = 0, cap = 0, rc = 0;
  while (rc == 0 && fgets(line, sizeof line, fp)) {
    ln++;
    line[strcspn(line, "\n")] = '\0';
    int k = ttq_keys_parse_line(line, key);
    if (k == 0) continue;
    if (k < 0) {
      fprintf(stderr, "ttqd serve: %s:%d: '%.50s' is not a 40-character Z85 public key\n", path,
              ln, line);
      rc = -1;
      break;
    }
    if (f->n_keys == cap) {
      cap = cap ? cap * 2 : 16;
      void *p = realloc(f->keys, (size_t)cap * sizeof *f->keys);
      if (!p) {
        fprintf(stderr, "ttqd serve: %s: out of memory\n", path);
        rc = -1;
        break;
      }
      f->keys = p;
    }
    zmq_z85_decode(f->keys[f->n_keys++], key);
  }
  fclose(fp);
  if (rc == 0 && f->n_keys == 0) {
    fprintf(stderr, "ttqd serve: %s: no client keys (one Z85 public key per line)\n", path);
    rc = -1;
  }
  return rc;
}

/* ---------- sending ---------- */

/* Sends [peer][(empty)][payload] without blocking. 0, or the errno (EHOSTUNREACH: the client
 * left; EAGAIN: its send queue is full). */
static int send_to_peer(ttqd_frontend *f, const void *peer, size_t plen, bool env,
                        const void *buf, size_t n) {
  if (zmq_send(f->router, peer, plen, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) return errno;
  if (env) zmq_send(f->router, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT);
  if (zmq_send(f->router, buf, n, ZMQ_DONTWAIT) < 0) return errno;
  return 0;
}

static void reply(ttqd_frontend *f, const void *peer, size_t plen, bool env, const char *id,
                  Ttq__Response *r) {
  r->request_id = (char *)(id ? id : "");
  size_t n = ttq__response__get_packed_size(r);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) return;
  ttq__response__pack(r, buf);
  send_to_peer(f, peer, plen, env, buf, n);
  free(buf);
}

static void reply_error(ttqd_frontend *f, const void *peer, size_t plen, bool env, const char *id,
                        int code, const char *msg) {
  Ttq__Response r = TTQ__RESPONSE__INIT;
  Ttq__Error e = TTQ__ERROR__INIT;
  e.code = (Ttq__Error__Code)code;
  e.message = (char *)msg;
  r.kind_case = TTQ__RESPONSE__KIND_ERROR;
  r.error = &e;
  reply(f, peer, plen, env, id, &r);
}


static const char *code_name(int code) {
  const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&ttq__error__code__descriptor, code);
  return v ? v->name : "UNKNOWN";
}

/* A Generate refused before it ran: reply, count, log. */
static void refuse_generate(ttqd_frontend *f, const void *peer, size_t plen, bool env,
                            const char *id, int code, const char *msg) {
  reply_error(f, peer, plen, env, id, code, msg);
  ttqd_metrics_count(f->met, ttqd_outcome_of_code(code));
  if (f->cfg->log_level >= TTQD_LOG_INFO)
    fprintf(stderr, "ttqd: request id=%s outcome=%s error=\"%s\"\n", id && *id ? id : "-",
            code_name(code), msg);
}

/* Jobs taken out of the queue (cancel, client gone, shutdown): tell their clients. */
static void end_removed(ttqd_frontend *f, ttqd_job **jobs, int n, int code, const char *msg) {
  for (int i = 0; i < n; i++) {
    refuse_generate(f, jobs[i]->peer, jobs[i]->peer_len, jobs[i]->envelope, jobs[i]->id, code, msg);
    ttqd_job_free(jobs[i]);
  }
  free(jobs);
}

/* ---------- executor replies ---------- */

/* Receives the rest of a multipart message: up to `keep` frames into parts[] (initialized
 * here), the others dropped. Returns the number of frames read. */
static int recv_rest(void *sock, zmq_msg_t *parts, int keep, int more) {
  int n = 0;
  while (more) {
    zmq_msg_t tmp;
    zmq_msg_init(&tmp);
    if (zmq_msg_recv(&tmp, sock, 0) < 0) {
      zmq_msg_close(&tmp);
      break;
    }
    more = zmq_msg_more(&tmp);
    if (n < keep) {
      zmq_msg_init(&parts[n]);
      zmq_msg_move(&parts[n], &tmp);
    }
    zmq_msg_close(&tmp);
    n++;
  }
  return n;
}

static void close_parts(zmq_msg_t *parts, int n) {
  for (int k = 0; k < n; k++) zmq_msg_close(&parts[k]);
}

static void forward_replies(ttqd_frontend *f) {
  for (int budget = 0; budget < 4096; budget++) {
    zmq_msg_t first, part[2];
    zmq_msg_init(&first);
    if (zmq_msg_recv(&first, f->pair, ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&first);
      return; /* nothing pending */
    }
    int n = recv_rest(f->pair, part, 2, zmq_msg_more(&first));
    if (n == 0) { /* the executor's goodbye */
      f->executor_done = true;
      zmq_msg_close(&first);
      return;
    }
    if (n == 2) {
      const uint8_t *peer = zmq_msg_data(&first);
      size_t plen = zmq_msg_size(&first);
      bool env = *(const uint8_t *)zmq_msg_data(&part[0]) != 0;
      int err = send_to_peer(f, peer, plen, env, zmq_msg_data(&part[1]), zmq_msg_size(&part[1]));
      if (err == EHOSTUNREACH || err == EAGAIN) {
        ttqd_job **removed;
        int nr;
        ttqd_jobq_cancel_peer(f->q, peer, plen, err == EAGAIN ? TTQD_CANCEL_SLOW : TTQD_CANCEL_GONE,
                              &removed, &nr);
        end_removed(f, removed, nr, TTQ__ERROR__CODE__CANCELLED, "the client disconnected");
      }
    }
    zmq_msg_close(&first);
    close_parts(part, n < 2 ? n : 2);
  }
}

/* ---------- client requests ---------- */

static void handle_health(ttqd_frontend *f, const void *peer, size_t plen, bool env, const char *id) {
  int depth;
  bool running;
  char rid[TTQD_ID_MAX + 1];
  ttqd_jobq_status(f->q, &depth, &running, rid);
  Ttq__Response r = TTQ__RESPONSE__INIT;
  Ttq__Health h = TTQ__HEALTH__INIT;
  h.model = f->cfg->model;
  h.has_ranks = h.has_queue_depth = h.has_uptime_s = h.has_queue_capacity = h.has_threads = 1;
  h.ranks = (uint32_t)f->rctx.ranks;
  h.queue_depth = (uint32_t)depth;
  h.queue_capacity = (uint32_t)f->cfg->queue_depth;
  h.uptime_s = (ttqd_now_ms() - f->start_ms) / 1e3;
  h.version = TTQ_VERSION;
  h.state = f->draining ? "draining" : f->stalled ? "stalled" : "serving";
  h.running_id = running ? rid : NULL;
  h.threads = (uint32_t)(f->cfg->threads > 0 ? f->cfg->threads : ttqd_default_threads());
  r.kind_case = TTQ__RESPONSE__KIND_HEALTH;
  r.health = &h;
  reply(f, peer, plen, env, id, &r);
  ttqd_metrics_other(f->met, &f->met->health_requests);
}

static char *render_metrics(ttqd_frontend *f) {
  int depth;
  bool running;
  ttqd_jobq_status(f->q, &depth, &running, NULL);
  ttqd_gauges g = {depth, (int)f->cfg->queue_depth, running, f->rctx.ranks, f->draining};
  return ttqd_metrics_render(f->met, &g, ttqd_now_ms());
}

static void handle_stats(ttqd_frontend *f, const void *peer, size_t plen, bool env, const char *id) {
  ttqd_metrics_other(f->met, &f->met->stats_requests);
  char *text = render_metrics(f);
  if (!text) {
    reply_error(f, peer, plen, env, id, TTQ__ERROR__CODE__INTERNAL, "out of memory");
    return;
  }
  Ttq__Response r = TTQ__RESPONSE__INIT;
  r.kind_case = TTQ__RESPONSE__KIND_STATS_TEXT;
  r.stats_text = text;
  reply(f, peer, plen, env, id, &r);
  free(text);
}

static void handle_cancel(ttqd_frontend *f, const void *peer, size_t plen, bool env, const char *id,
                          const Ttq__CancelRequest *c) {
  ttqd_metrics_other(f->met, &f->met->cancel_requests);
  ttqd_job *removed = NULL;
  int found = ttqd_jobq_cancel_id(f->q, c->target_id, TTQD_CANCEL_CLIENT, &removed);
  if (removed) {
    ttqd_job **one = malloc(sizeof *one);
    if (one) {
      one[0] = removed;
      end_removed(f, one, 1, TTQ__ERROR__CODE__CANCELLED, "cancelled by a cancel request (queued)");
    } else {
      ttqd_job_free(removed);
    }
  }
  Ttq__Response r = TTQ__RESPONSE__INIT;
  Ttq__CancelAck a = TTQ__CANCEL_ACK__INIT;
  a.has_found = 1;
  a.found = found != 0;
  r.kind_case = TTQ__RESPONSE__KIND_CANCELLED;
  r.cancelled = &a;
  reply(f, peer, plen, env, id, &r);
}

static void handle_generate(ttqd_frontend *f, const void *peer, size_t plen, bool env,
                            const char *id, const Ttq__GenerateRequest *g) {
  if (f->draining || f->stalled) {
    refuse_generate(f, peer, plen, env, id, TTQ__ERROR__CODE__UNAVAILABLE,
                    f->draining ? "the daemon is shutting down; retry"
                                : "the daemon's ranks are not responding; retry");
    return;
  }
  ttqd_job *j;
  ttqd_refusal r;
  if (ttqd_generate_to_job(&f->rctx, g, ttqd_now_ms(), &j, &r)) {
    refuse_generate(f, peer, plen, env, id, r.code, r.msg);
    return;
  }
  snprintf(j->id, sizeof j->id, "%s", id);
  memcpy(j->peer, peer, plen);
  j->peer_len = plen;
  j->envelope = env;
  int rc = ttqd_jobq_push(f->q, j);
  if (rc == 0) return;
  char msg[160];
  int code = TTQ__ERROR__CODE__RESOURCE_EXHAUSTED;
  if (rc == 1) {
    snprintf(msg, sizeof msg, "queue full (%ld requests waiting); retry later", f->cfg->queue_depth);
  } else if (rc == 3) {
    code = TTQ__ERROR__CODE__INVALID_ARGUMENT;
    snprintf(msg, sizeof msg, "request_id '%s' is already queued or running", id);
  } else {
    code = TTQ__ERROR__CODE__UNAVAILABLE;
    snprintf(msg, sizeof msg, "the daemon is shutting down; retry");
  }
  ttqd_job_free(j);
  refuse_generate(f, peer, plen, env, id, code, msg);
}

/* The request id of a frame too large to decode: protobuf-c writes field 1 (request_id) first,
 * so a valid id is the frame's first bytes. "" when it is not there or not a valid id. */
static void peek_request_id(const uint8_t *p, size_t n, char id[TTQD_ID_MAX + 1]) {
  id[0] = '\0';
  if (n < 2 || p[0] != 0x0a || p[1] == 0 || p[1] > TTQD_ID_MAX || (size_t)p[1] + 2 > n) return;
  for (size_t i = 0; i < p[1]; i++)
    if (p[2 + i] <= ' ' || p[2 + i] > '~') return;
  memcpy(id, p + 2, p[1]);
  id[p[1]] = '\0';
}

/* Reads one message from the client socket: [peer][payload] or [peer][""][payload]. */
static void handle_client(ttqd_frontend *f) {
  zmq_msg_t peer, part[2];
  zmq_msg_init(&peer);
  if (zmq_msg_recv(&peer, f->router, ZMQ_DONTWAIT) < 0) {
    zmq_msg_close(&peer);
    return;
  }
  int n = recv_rest(f->router, part, 2, zmq_msg_more(&peer));
  const void *pid = zmq_msg_data(&peer);
  size_t plen = zmq_msg_size(&peer);
  bool env = n == 2 && zmq_msg_size(&part[0]) == 0;
  char id[TTQD_ID_MAX + 1] = "";
  Ttq__Request *req = NULL;
  if (plen > TTQD_PEER_MAX) goto out; /* cannot happen with ZeroMQ's 5-byte routing ids */
  if (n == 0 || (n == 2 && !env) || n > 2) {
    ttqd_metrics_other(f->met, &f->met->bad_frames);
    char msg[128];
    snprintf(msg, sizeof msg, "expected one frame per request (a packed ttq.Request), got %d", n);
    reply_error(f, pid, plen, false, "", TTQ__ERROR__CODE__INVALID_ARGUMENT, msg);
    goto out;
  }
  zmq_msg_t *body = &part[n - 1];
  size_t size = zmq_msg_size(body);
  if (size > (size_t)f->cfg->max_message_bytes) {
    ttqd_metrics_other(f->met, &f->met->bad_frames);
    char msg[160];
    snprintf(msg, sizeof msg, "request of %zu bytes exceeds max-message-bytes = %ld", size,
             f->cfg->max_message_bytes);
    peek_request_id(zmq_msg_data(body), size, id);
    refuse_generate(f, pid, plen, env, id, TTQ__ERROR__CODE__RESOURCE_EXHAUSTED, msg);
    goto out;
  }
  req = ttq__request__unpack(NULL, size, zmq_msg_data(body));
  if (!req) {
    ttqd_metrics_other(f->met, &f->met->bad_frames);
    char msg[160];
    snprintf(msg, sizeof msg, "malformed request: %zu bytes that are not a ttq.Request protobuf",
             size);
    reply_error(f, pid, plen, env, "", TTQ__ERROR__CODE__INVALID_ARGUMENT, msg);
    goto out;
  }
  ttqd_refusal rf;
  if (req->request_id && *req->request_id) {
    if (ttqd_request_check_id(req->request_id, &rf)) {
      reply_error(f, pid, plen, env, "", rf.code, rf.msg);
      goto out;
    }
    snprintf(id, sizeof id, "%s", req->request_id);
  } else {
    snprintf(id, sizeof id, "ttqd-%llu", (unsigned long long)++f->next_id);
  }
  switch (req->kind_case) {
  case TTQ__REQUEST__KIND_GENERATE: handle_generate(f, pid, plen, env, id, req->generate); break;
  case TTQ__REQUEST__KIND_CANCEL: handle_cancel(f, pid, plen, env, id, req->cancel); break;
  case TTQ__REQUEST__KIND_HEALTH: handle_health(f, pid, plen, env, id); break;
  case TTQ__REQUEST__KIND_STATS: handle_stats(f, pid, plen, env, id); break;
  default: {
    char msg[160];
    if (req->base.n_unknown_fields)
      snprintf(msg, sizeof msg, "unknown request kind (field %u); this daemon speaks ttq.proto %s",
               req->base.unknown_fields[0].tag, TTQ_VERSION);
    else
      snprintf(msg, sizeof msg, "empty request: set one of generate, cancel, health, stats");
    ttqd_metrics_other(f->met, &f->met->bad_frames);
    reply_error(f, pid, plen, env, id, TTQ__ERROR__CODE__INVALID_ARGUMENT, msg);
  }
  }
out:
  if (req) ttq__request__free_unpacked(req, NULL);
  zmq_msg_close(&peer);
  close_parts(part, n < 2 ? n : 2);
}

/* ---------- CURVE authentication (ZAP, RFC 27) ---------- */

static void handle_zap(ttqd_frontend *f) {
  zmq_msg_t fr[8], first;
  zmq_msg_init(&first);
  if (zmq_msg_recv(&first, f->zap, 0) < 0) {
    zmq_msg_close(&first);
    return;
  }
  int n = 1 + recv_rest(f->zap, fr + 1, 7, zmq_msg_more(&first));
  zmq_msg_init(&fr[0]);
  zmq_msg_move(&fr[0], &first);
  zmq_msg_close(&first);
  int k = n < 8 ? n : 8;
  const char *status = "400", *text = "client key not authorized";
  if (k >= 7 && zmq_msg_size(&fr[5]) == 5 && !memcmp(zmq_msg_data(&fr[5]), "CURVE", 5) &&
      zmq_msg_size(&fr[6]) == 32) {
    for (int i = 0; i < f->n_keys; i++)
      if (!memcmp(f->keys[i], zmq_msg_data(&fr[6]), 32)) {
        status = "200";
        text = "OK";
      }
  }
  if (f->cfg->log_level >= TTQD_LOG_INFO && status[0] != '2') {
    char z85[41] = "?";
    if (k >= 7 && zmq_msg_size(&fr[6]) == 32) zmq_z85_encode(z85, zmq_msg_data(&fr[6]), 32);
    fprintf(stderr, "ttqd: rejected a client: CURVE key %s is not in curve-authorized-keys\n", z85);
  }
  if (k >= 2) {
    zmq_send(f->zap, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(f->zap, zmq_msg_data(&fr[1]), zmq_msg_size(&fr[1]), ZMQ_SNDMORE);
    zmq_send(f->zap, status, 3, ZMQ_SNDMORE);
    zmq_send(f->zap, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(f->zap, "", 0, ZMQ_SNDMORE);
    zmq_send(f->zap, "", 0, 0);
  }
  for (int i = 0; i < k; i++) zmq_msg_close(&fr[i]);
}

/* ---------- HTTP metrics (ZeroMQ STREAM socket) ---------- */

static ttqd_http_conn *http_conn(ttqd_frontend *f, const void *id, size_t n, bool create) {
  ttqd_http_conn *free_slot = NULL;
  for (size_t i = 0; i < sizeof f->http_conns / sizeof *f->http_conns; i++) {
    ttqd_http_conn *c = &f->http_conns[i];
    if (c->used && c->id_len == n && !memcmp(c->id, id, n)) return c;
    if (!c->used && !free_slot) free_slot = c;
  }
  if (!create || !free_slot || n > TTQD_PEER_MAX) return NULL;
  memset(free_slot, 0, sizeof *free_slot);
  free_slot->used = true;
  memcpy(free_slot->id, id, n);
  free_slot->id_len = n;
  return free_slot;
}

static void http_close(ttqd_frontend *f, const void *id, size_t n) {
  zmq_send(f->http, id, n, ZMQ_SNDMORE | ZMQ_DONTWAIT);
  zmq_send(f->http, "", 0, ZMQ_DONTWAIT);
  ttqd_http_conn *c = http_conn(f, id, n, false);
  if (c) c->used = false;
}

static void http_respond(ttqd_frontend *f, ttqd_http_conn *c) {
  const char *status = "404 Not Found", *ctype = "text/plain";
  char *body = NULL;
  const char *fixed = "not found: try /metrics or /healthz\n";
  if (!strncmp(c->buf, "GET /metrics ", 13) || !strncmp(c->buf, "GET /metrics?", 13)) {
    body = render_metrics(f);
    status = body ? "200 OK" : "500 Internal Server Error";
    ctype = "text/plain; version=0.0.4";
    fixed = "out of memory\n";
    ttqd_metrics_other(f->met, &f->met->stats_requests);
  } else if (!strncmp(c->buf, "GET /healthz ", 13)) {
    status = f->draining ? "503 Service Unavailable" : "200 OK";
    fixed = f->draining ? "draining\n" : "serving\n";
  } else if (strncmp(c->buf, "GET ", 4)) {
    status = "405 Method Not Allowed";
    fixed = "only GET\n";
  }
  const char *b = body ? body : fixed;
  char head[256];
  int hn = snprintf(head, sizeof head,
                    "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                    status, ctype, strlen(b));
  size_t total = (size_t)hn + strlen(b);
  char *out = malloc(total);
  if (out) {
    memcpy(out, head, (size_t)hn);
    memcpy(out + hn, b, strlen(b));
    zmq_send(f->http, c->id, c->id_len, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(f->http, out, total, ZMQ_DONTWAIT);
    free(out);
  }
  free(body);
  uint8_t id[TTQD_PEER_MAX];
  size_t n = c->id_len;
  memcpy(id, c->id, n);
  http_close(f, id, n);
}

static void handle_http(ttqd_frontend *f) {
  zmq_msg_t id, data;
  zmq_msg_init(&id);
  zmq_msg_init(&data);
  if (zmq_msg_recv(&id, f->http, ZMQ_DONTWAIT) < 0 || !zmq_msg_more(&id) ||
      zmq_msg_recv(&data, f->http, 0) < 0) {
    zmq_msg_close(&id);
    zmq_msg_close(&data);
    return;
  }
  const void *cid = zmq_msg_data(&id);
  size_t idn = zmq_msg_size(&id), dn = zmq_msg_size(&data);
  if (dn == 0) { /* connect or disconnect notification */
    ttqd_http_conn *c = http_conn(f, cid, idn, false);
    if (c) c->used = false;
    else if (!http_conn(f, cid, idn, true)) http_close(f, cid, idn); /* table full */
  } else {
    ttqd_http_conn *c = http_conn(f, cid, idn, true);
    if (!c || c->len + dn >= sizeof c->buf) {
      http_close(f, cid, idn); /* headers over 8 KiB: not a metrics scrape */
    } else {
      memcpy(c->buf + c->len, zmq_msg_data(&data), dn);
      c->len += dn;
      c->buf[c->len] = '\0';
      if (strstr(c->buf, "\r\n\r\n") || strstr(c->buf, "\n\n")) http_respond(f, c);
    }
  }
  zmq_msg_close(&id);
  zmq_msg_close(&data);
}

/* ---------- watchdog: ranks that stop making progress ---------- */

/* Leaves without waiting for the executor, which is stuck in a collective: the replies already
 * queued get a moment to leave, then rank 0 exits and mpirun takes the job down. */
static void exit_stalled(ttqd_frontend *f, double stalled_ms) {
  ttqd_job **removed;
  int nr;
  ttqd_jobq_abort_all(f->q, TTQD_CANCEL_STALLED, &removed, &nr);
  end_removed(f, removed, nr, TTQ__ERROR__CODE__UNAVAILABLE,
              "the daemon is restarting: its ranks stopped responding; retry");
  fprintf(stderr, "ttqd: exiting (75): no progress from the ranks for %.0f ms%s\n", stalled_ms,
          f->draining ? " while shutting down" : "");
  int linger = 500;
  zmq_setsockopt(f->router, ZMQ_LINGER, &linger, sizeof linger);
  zmq_close(f->router);
  struct timespec ts = {0, 300000000L};
  nanosleep(&ts, NULL);
  _exit(75);
}

/* While a job runs, the executor reports progress at every step. Without progress for
 * stall-timeout-ms (2 s while draining: mpirun's SIGTERM after a rank died looks like this) the
 * running request is answered UNAVAILABLE here and new ones are refused; if progress resumes
 * (a link came back) the daemon serves again; after stall-exit-ms (at once while draining) rank
 * 0 exits so that the supervisor restarts the job. */
static void check_stall(ttqd_frontend *f) {
  double now = ttqd_now_ms(), idle = ttqd_jobq_stalled_ms(f->q, now);
  double limit = (double)f->cfg->stall_timeout_ms;
  if (f->draining && limit > 2000) limit = 2000;
  if (idle <= limit) {
    if (f->stalled) fprintf(stderr, "ttqd: the ranks are making progress again\n");
    f->stalled = false;
    return;
  }
  if (!f->stalled) {
    f->stalled = true;
    fprintf(stderr, "ttqd: no progress from the ranks for %.0f ms: a rank or a link is down\n", idle);
    char id[TTQD_ID_MAX + 1];
    uint8_t peer[TTQD_PEER_MAX];
    size_t plen;
    bool env;
    if (ttqd_jobq_claim_running(f->q, TTQD_CANCEL_STALLED, id, peer, &plen, &env)) {
      char msg[200];
      snprintf(msg, sizeof msg, "the daemon's ranks stopped responding (no progress for %.0f ms); "
                                "retry", idle);
      refuse_generate(f, peer, plen, env, id, TTQ__ERROR__CODE__UNAVAILABLE, msg);
    }
  }
  if (f->draining || (f->cfg->stall_exit_ms > 0 && idle > (double)f->cfg->stall_exit_ms))
    exit_stalled(f, idle);
}

/* ---------- drain (SIGTERM) ---------- */

static void check_drain(ttqd_frontend *f) {
  int sig = *f->signals;
  double now = ttqd_now_ms();
  if (sig > f->signals_seen) {
    f->signals_seen = sig;
    if (!f->draining) {
      f->draining = true;
      f->drain_deadline_ms = now + (double)f->cfg->grace_ms;
      fprintf(stderr, "ttqd: shutting down: no new requests; %ld ms for the ones queued or running\n",
              f->cfg->grace_ms);
    } else {
      f->drain_deadline_ms = now; /* a second signal: no more grace */
    }
  }
  if (!f->draining) return;
  if (!f->aborted && now >= f->drain_deadline_ms) {
    f->aborted = true;
    ttqd_job **removed;
    int nr;
    ttqd_jobq_abort_all(f->q, TTQD_CANCEL_SHUTDOWN, &removed, &nr);
    end_removed(f, removed, nr, TTQ__ERROR__CODE__UNAVAILABLE, "the daemon is shutting down; retry");
  }
  int depth;
  bool running;
  ttqd_jobq_status(f->q, &depth, &running, NULL);
  if (!f->closed && depth == 0 && !running) {
    f->closed = true;
    ttqd_jobq_close(f->q);
  }
}

/* The router is readable: handles up to 64 client messages, while more are waiting. */
static void serve_clients(ttqd_frontend *f) {
  for (int i = 0; i < 64; i++) {
    int ev = 0;
    size_t evn = sizeof ev;
    handle_client(f);
    if (zmq_getsockopt(f->router, ZMQ_EVENTS, &ev, &evn) || !(ev & ZMQ_POLLIN)) break;
  }
}

/* Counts the client connections from the router's monitor events. */
static void read_monitor(ttqd_frontend *f) {
  for (int budget = 0; budget < 1024; budget++) {
    zmq_msg_t ev, ep;
    zmq_msg_init(&ev);
    if (zmq_msg_recv(&ev, f->mon, ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&ev);
      return;
    }
    uint16_t e = 0;
    if (zmq_msg_size(&ev) >= 2) memcpy(&e, zmq_msg_data(&ev), 2);
    if (zmq_msg_more(&ev)) { /* the endpoint frame */
      zmq_msg_init(&ep);
      zmq_msg_recv(&ep, f->mon, 0);
      zmq_msg_close(&ep);
    }
    zmq_msg_close(&ev);
    if (e == ZMQ_EVENT_ACCEPTED) f->clients++;
    else if (e == ZMQ_EVENT_DISCONNECTED && f->clients > 0) f->clients--;
  }
}

/* After the executor's goodbye: the last replies are on their way, but a client whose connection
 * closes before it has read them loses them (ZeroMQ drops a connection's unread messages when it
 * breaks). So the socket stays open, refusing new requests, until every client has hung up or
 * FLUSH_MS have passed. Measured: without this, 1 in 3 drained requests lost their last chunk
 * and end message (e2e_sigterm under OMP_WAIT_POLICY=PASSIVE). */
#define FLUSH_MS 1000
static void flush_replies(ttqd_frontend *f) {
  const double until = ttqd_now_ms() + FLUSH_MS;
  read_monitor(f);
  while (f->clients > 0 && ttqd_now_ms() < until) {
    zmq_pollitem_t items[3] = {{f->router, 0, ZMQ_POLLIN, 0}, {f->mon, 0, ZMQ_POLLIN, 0}};
    int n = 2;
    if (f->zap) items[n++] = (zmq_pollitem_t){f->zap, 0, ZMQ_POLLIN, 0}; /* CURVE handshakes */
    if (zmq_poll(items, n, 20) < 0 && errno != EINTR) break;
    if (items[0].revents & ZMQ_POLLIN) serve_clients(f);
    if (n > 2 && items[2].revents) handle_zap(f);
    read_monitor(f);
  }
}

static void *frontend_main(void *arg) {
  ttqd_frontend *f = arg;
  while (!f->executor_done) {
    zmq_pollitem_t items[5] = {{f->pair, 0, ZMQ_POLLIN, 0}, {f->router, 0, ZMQ_POLLIN, 0},
                               {f->mon, 0, ZMQ_POLLIN, 0}};
    int n = 3;
    int zap_i = -1, http_i = -1;
    if (f->zap) items[zap_i = n++] = (zmq_pollitem_t){f->zap, 0, ZMQ_POLLIN, 0};
    if (f->http) items[http_i = n++] = (zmq_pollitem_t){f->http, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(items, n, 100) < 0 && errno != EINTR) {
      fprintf(stderr, "ttqd: zmq_poll: %s\n", zmq_strerror(errno));
      break;
    }
    if (items[0].revents) forward_replies(f);
    if (items[1].revents & ZMQ_POLLIN) serve_clients(f);
    if (zap_i >= 0 && items[zap_i].revents) handle_zap(f);
    if (http_i >= 0 && items[http_i].revents) handle_http(f);
    if (items[2].revents) read_monitor(f);
    check_drain(f);
    check_stall(f);
  }
  flush_replies(f);
  return NULL;
}

/* ---------- setup ---------- */

static void *make_socket(ttqd_frontend *f, int type) {
  void *s = zmq_socket(f->zctx, type);
  int zero = 0;
  if (s) zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
  return s;
}

int ttqd_frontend_open(ttqd_frontend *f, void *zctx, void **exec_out) {
  f->zctx = zctx;
  f->start_ms = ttqd_now_ms();
  *exec_out = NULL;
  const ttqd_serve_cfg *c = f->cfg;
  ttq_keypair kp;
  if (c->curve_secret_key) {
    if (read_keypair(c->curve_secret_key, &kp) || read_authorized(f, c->curve_authorized_keys))
      return -1;
    zmq_z85_decode(f->server_public, kp.pub);
    /* The ZAP handler must be bound before the CURVE socket accepts anyone. */
    if (!(f->zap = make_socket(f, ZMQ_REP)) || zmq_bind(f->zap, ZAP_ENDPOINT)) {
      fprintf(stderr, "ttqd serve: cannot start the authentication handler: %s\n", zmq_strerror(errno));
      return -1;
    }
  }
  if (!(f->router = make_socket(f, ZMQ_ROUTER))) return -1;
  int one = 1, hwm = 10000, ivl = 2000, ttl = 6000;
  int64_t maxmsg = c->max_message_bytes * 2 + 65536; /* beyond this ZeroMQ drops the connection */
  zmq_setsockopt(f->router, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
  zmq_setsockopt(f->router, ZMQ_SNDHWM, &hwm, sizeof hwm);
  zmq_setsockopt(f->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
  zmq_setsockopt(f->router, ZMQ_HEARTBEAT_IVL, &ivl, sizeof ivl);
  zmq_setsockopt(f->router, ZMQ_HEARTBEAT_TIMEOUT, &ttl, sizeof ttl);
  zmq_setsockopt(f->router, ZMQ_HEARTBEAT_TTL, &ttl, sizeof ttl);
  if (c->curve_secret_key) {
    zmq_setsockopt(f->router, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt(f->router, ZMQ_CURVE_SECRETKEY, kp.sec, TTQ_KEY_Z85_LEN);
    zmq_setsockopt(f->router, ZMQ_ZAP_DOMAIN, "ttq", 3);
  }
  memset(&kp, 0, sizeof kp);
  /* client connections come and go on this monitor (flush_replies waits for them). It starts
   * before the bind, so that no connection is missed; its pipe has no limit, since libzmq's I/O
   * thread would block on a full one (and zmq_close of the router with it). */
  int unbounded = 0;
  if (zmq_socket_monitor(f->router, MONITOR_ENDPOINT, ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) ||
      !(f->mon = make_socket(f, ZMQ_PAIR)) ||
      zmq_setsockopt(f->mon, ZMQ_RCVHWM, &unbounded, sizeof unbounded) ||
      zmq_connect(f->mon, MONITOR_ENDPOINT)) {
    fprintf(stderr, "ttqd serve: cannot monitor the client connections: %s\n", zmq_strerror(errno));
    return -1;
  }
  if (zmq_bind(f->router, c->listen)) {
    fprintf(stderr, "ttqd serve: cannot listen on %s: %s\n", c->listen, zmq_strerror(errno));
    return -1;
  }
  size_t eplen = sizeof f->endpoint;
  if (zmq_getsockopt(f->router, ZMQ_LAST_ENDPOINT, f->endpoint, &eplen)) snprintf(f->endpoint, sizeof f->endpoint, "%s", c->listen);
  if (c->metrics_listen) {
    if (!(f->http = make_socket(f, ZMQ_STREAM))) return -1;
    zmq_setsockopt(f->http, ZMQ_STREAM_NOTIFY, &one, sizeof one);
    if (zmq_bind(f->http, c->metrics_listen)) {
      fprintf(stderr, "ttqd serve: cannot listen on %s (metrics-listen): %s\n", c->metrics_listen,
              zmq_strerror(errno));
      return -1;
    }
    eplen = sizeof f->metrics_endpoint;
    if (zmq_getsockopt(f->http, ZMQ_LAST_ENDPOINT, f->metrics_endpoint, &eplen))
      snprintf(f->metrics_endpoint, sizeof f->metrics_endpoint, "%s", c->metrics_listen);
  }
  if (!(f->pair = make_socket(f, ZMQ_PAIR)) || zmq_bind(f->pair, REPLY_ENDPOINT)) return -1;
  void *ex = zmq_socket(zctx, ZMQ_PAIR);
  if (!ex || zmq_connect(ex, REPLY_ENDPOINT)) return -1;
  *exec_out = ex;
  return 0;
}

int ttqd_frontend_start(ttqd_frontend *f) {
  if (pthread_create(&f->thread, NULL, frontend_main, f)) return -1;
  f->started = true;
  return 0;
}

void ttqd_frontend_join(ttqd_frontend *f) {
  if (f->started) pthread_join(f->thread, NULL);
  f->started = false;
}

void ttqd_frontend_close(ttqd_frontend *f, int linger_ms) {
  void *socks[5] = {f->router, f->pair, f->zap, f->http, f->mon};
  for (int i = 0; i < 5; i++)
    if (socks[i]) {
      if (i == 0) zmq_setsockopt(socks[i], ZMQ_LINGER, &linger_ms, sizeof linger_ms);
      zmq_close(socks[i]);
    }
  f->router = f->pair = f->zap = f->http = f->mon = NULL;
  free(f->keys);
  f->keys = NULL;
}
