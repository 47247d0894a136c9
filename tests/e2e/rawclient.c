/* rawclient.c -- a test tool that speaks to ttqd at the frame level, to send what the real
 * client never would: arbitrary bytes, several frames, truncated or oversized messages,
 * unknown fields. It prints each Response as one line:
 *   error CODE_NAME message | health state=... | chunk index text | done finish n | stats BYTES |
 *   cancelled found=0/1 | timeout
 *
 * usage: rawclient ENDPOINT [--wait-ms N] [--replies N] [--hold-ms N] [--server-key Z85
 *                  --public Z85 --secret Z85] SPEC...
 *   SPEC is one frame: hex:ABCD | file:PATH | zeros:N | health | stats | gen:PROMPT
 *   (several SPECs = one multipart message). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "ttq.pb-c.h"

static int frame_from_spec(const char *spec, uint8_t **buf, size_t *len) {
  *buf = NULL;
  *len = 0;
  if (!strncmp(spec, "hex:", 4)) {
    const char *h = spec + 4;
    size_t n = strlen(h) / 2;
    *buf = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++) sscanf(h + 2 * i, "%2hhx", &(*buf)[i]);
    *len = n;
    return 0;
  }
  if (!strncmp(spec, "zeros:", 6)) {
    *len = strtoul(spec + 6, NULL, 10);
    *buf = calloc(*len ? *len : 1, 1);
    return 0;
  }
  if (!strncmp(spec, "file:", 5)) {
    FILE *f = fopen(spec + 5, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *buf = malloc(n ? (size_t)n : 1);
    *len = fread(*buf, 1, (size_t)n, f);
    fclose(f);
    return 0;
  }
  Ttq__Request r = TTQ__REQUEST__INIT;
  Ttq__HealthRequest h = TTQ__HEALTH_REQUEST__INIT;
  Ttq__StatsRequest s = TTQ__STATS_REQUEST__INIT;
  Ttq__GenerateRequest g = TTQ__GENERATE_REQUEST__INIT;
  r.request_id = "raw-1";
  if (!strcmp(spec, "health")) {
    r.kind_case = TTQ__REQUEST__KIND_HEALTH;
    r.health = &h;
  } else if (!strcmp(spec, "stats")) {
    r.kind_case = TTQ__REQUEST__KIND_STATS;
    r.stats = &s;
  } else if (!strncmp(spec, "gen:", 4)) {
    g.prompt = (char *)spec + 4;
    g.has_max_tokens = 1;
    g.max_tokens = getenv("RAW_MAX_TOKENS") ? (uint32_t)atoi(getenv("RAW_MAX_TOKENS")) : 4;
    r.kind_case = TTQ__REQUEST__KIND_GENERATE;
    r.generate = &g;
  } else {
    return -1;
  }
  *len = ttq__request__get_packed_size(&r);
  *buf = malloc(*len);
  ttq__request__pack(&r, *buf);
  return 0;
}

static void print_response(const uint8_t *p, size_t n) {
  Ttq__Response *r = ttq__response__unpack(NULL, n, p);
  if (!r) {
    printf("undecodable %zu\n", n);
    return;
  }
  switch (r->kind_case) {
  case TTQ__RESPONSE__KIND_ERROR: {
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&ttq__error__code__descriptor, r->error->code);
    printf("error %s %s\n", v ? v->name : "?", r->error->message ? r->error->message : "");
    break;
  }
  case TTQ__RESPONSE__KIND_HEALTH: printf("health state=%s\n", r->health->state); break;
  case TTQ__RESPONSE__KIND_CHUNK: printf("chunk %u %s\n", r->chunk->index, r->chunk->text); break;
  case TTQ__RESPONSE__KIND_DONE:
    printf("done %s %u\n", r->done->finish_reason, r->done->generated_tokens);
    break;
  case TTQ__RESPONSE__KIND_STATS_TEXT: printf("stats %zu\n", strlen(r->stats_text)); break;
  case TTQ__RESPONSE__KIND_CANCELLED: printf("cancelled found=%d\n", r->cancelled->found); break;
  default: printf("unknown\n");
  }
  fflush(stdout);
  ttq__response__free_unpacked(r, NULL);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: rawclient ENDPOINT [--wait-ms N] [--replies N] SPEC...\n");
    return 2;
  }
  int wait_ms = 5000, replies = 1, hold_ms = 0, i = 2;
  const char *server_key = NULL, *pub = NULL, *sec = NULL;
  for (; i < argc && !strncmp(argv[i], "--", 2); i += 2) {
    if (i + 1 >= argc) return 2;
    if (!strcmp(argv[i], "--wait-ms")) wait_ms = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--replies")) replies = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--hold-ms")) hold_ms = atoi(argv[i + 1]); /* a client that never reads */
    else if (!strcmp(argv[i], "--server-key")) server_key = argv[i + 1];
    else if (!strcmp(argv[i], "--public")) pub = argv[i + 1];
    else if (!strcmp(argv[i], "--secret")) sec = argv[i + 1];
    else return 2;
  }
  void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_DEALER);
  int zero = 0;
  zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
  if (server_key) {
    char p[41], k[41];
    if (!pub || !sec) zmq_curve_keypair(p, k);
    zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server_key, 40);
    zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pub ? pub : p, 40);
    zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sec ? sec : k, 40);
  }
  if (zmq_connect(s, argv[1])) {
    fprintf(stderr, "connect %s: %s\n", argv[1], zmq_strerror(zmq_errno()));
    return 1;
  }
  for (int k = i; k < argc; k++) {
    uint8_t *buf;
    size_t len;
    if (frame_from_spec(argv[k], &buf, &len)) {
      fprintf(stderr, "bad spec %s\n", argv[k]);
      return 2;
    }
    zmq_send(s, buf, len, k + 1 < argc ? ZMQ_SNDMORE : 0);
    free(buf);
  }
  if (hold_ms > 0) zmq_poll(NULL, 0, hold_ms); /* sleeps; nothing is read */
  int got = 0;
  while (got < replies) {
    zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, wait_ms) <= 0) {
      printf("timeout\n");
      break;
    }
    zmq_msg_t m;
    zmq_msg_init(&m);
    zmq_msg_recv(&m, s, 0);
    if (zmq_msg_size(&m) == 0 && zmq_msg_more(&m)) { /* the REQ-style delimiter echoed back */
      zmq_msg_close(&m);
      zmq_msg_init(&m);
      zmq_msg_recv(&m, s, 0);
    }
    print_response(zmq_msg_data(&m), zmq_msg_size(&m));
    zmq_msg_close(&m);
    got++;
  }
  zmq_close(s);
  zmq_ctx_term(ctx);
  return 0;
}
