/* cmd_admin.c -- the short commands: `ttq health` (a readiness probe: fast, exit 0 only when
 * the daemon is serving), `ttq stats` (Prometheus text), `ttq cancel ID` and `ttq keygen`.
 * Invariants: each request command makes one request on one connection and prints only its
 * answer on stdout; health defaults to --timeout 5 --retries 0 so a probe never hangs. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "conn.h"
#include "json.h"
#include "keys.h"
#include "rpc.h"

/* A one-shot request: the kind of answer expected; the callback prints it and records what
 * decides the exit code. */
typedef struct {
  Ttq__Response__KindCase want;
  bool json, got;
  bool ok;            /* health: state "serving"; cancel: the target was found */
  const char *target; /* cancel */
} admin_state;

static void print_health(const Ttq__Health *h, bool json) {
  if (json) {
    fputs("{\"state\":", stdout);
    ttqc_json_str(stdout, h->state);
    ttqc_json_key(stdout, "model", 0);
    ttqc_json_str(stdout, h->model);
#define NUM(key, has, v)                                                                       \
  do {                                                                                         \
    ttqc_json_key(stdout, key, 0);                                                             \
    if (has) ttqc_json_num(stdout, v);                                                         \
    else fputs("null", stdout);                                                                \
  } while (0)
    NUM("ranks", h->has_ranks, h->ranks);
    NUM("threads", h->has_threads, h->threads);
    NUM("queue_depth", h->has_queue_depth, h->queue_depth);
    NUM("queue_capacity", h->has_queue_capacity, h->queue_capacity);
    NUM("uptime_s", h->has_uptime_s, h->uptime_s);
#undef NUM
    ttqc_json_key(stdout, "version", 0);
    ttqc_json_str(stdout, h->version);
    ttqc_json_key(stdout, "running_id", 0);
    ttqc_json_str(stdout, h->running_id && *h->running_id ? h->running_id : NULL);
    fputs("}\n", stdout);
    return;
  }
  printf("state          %s\n", h->state ? h->state : "?");
  printf("model          %s\n", h->model ? h->model : "?");
  if (h->has_ranks) printf("ranks          %u\n", h->ranks);
  if (h->has_threads) printf("threads        %u\n", h->threads);
  if (h->has_queue_depth || h->has_queue_capacity) {
    printf("queue          %u", h->queue_depth);
    if (h->has_queue_capacity) printf(" / %u", h->queue_capacity);
    putchar('\n');
  }
  printf("running        %s\n", h->running_id && *h->running_id ? h->running_id : "-");
  if (h->has_uptime_s) printf("uptime         %.1f s\n", h->uptime_s);
  if (h->version) printf("version        %s\n", h->version);
}

static int on_admin_answer(void *user, const Ttq__Response *r) {
  admin_state *s = user;
  if (r->kind_case != s->want) return 0; /* errors are reported by ttqc_rpc's return */
  s->got = true;
  switch (r->kind_case) {
  case TTQ__RESPONSE__KIND_HEALTH:
    print_health(r->health, s->json);
    s->ok = r->health->state && !strcmp(r->health->state, "serving");
    break;
  case TTQ__RESPONSE__KIND_STATS_TEXT: {
    size_t n = strlen(r->stats_text);
    fwrite(r->stats_text, 1, n, stdout);
    if (n && r->stats_text[n - 1] != '\n') putchar('\n');
    break;
  }
  case TTQ__RESPONSE__KIND_CANCELLED:
    s->ok = r->cancelled->has_found && r->cancelled->found;
    printf("%s: %s\n", s->target, s->ok ? "cancelled" : "not found (not queued or running)");
    break;
  default: break;
  }
  fflush(stdout);
  return 0;
}

/* Parses the options of health, stats and cancel; returns -1 to go on, else an exit code. */
static int parse_admin(const char *cmd, const char *usage, bool allow_json, int argc,
                       char **argv, ttqc_common *com, bool *json) {
  static const struct option opts[] = {TTQC_COMMON_OPTIONS,
                                       {"json", no_argument, 0, TTQC_OPT_JSON},
                                       {0, 0, 0, 0}};
  int c;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    int h;
    if (c == 'h') {
      fputs(usage, stdout);
      return 0;
    }
    if ((h = ttqc_common_opt(cmd, c, optarg, com))) {
      if (h < 0) return TTQC_EXIT_USAGE;
      continue;
    }
    if (c == TTQC_OPT_JSON && allow_json) *json = true;
    else {
      ttqc_bad_option(cmd, c, optopt, argv[optind - 1]);
      return TTQC_EXIT_USAGE;
    }
  }
  return -1;
}

/* One request, one answer of kind s->want; prints "ttq CMD: reason" on failure. */
static int one_shot(const char *cmd, const ttqc_common *com, volatile sig_atomic_t *sig,
                    Ttq__Request *req, admin_state *s) {
  ttqc_err err = {{0}};
  ttqc_session ses;
  ttqc_rpc_result res;
  int rc = ttqc_session_open(&ses, com, sig, &err);
  if (rc == 0) {
    ttqc_rpc_opts ro = {com->timeout_s * 1e3, com->idle_timeout_s * 1e3, com->retries, NULL, 0};
    rc = ttqc_rpc(ses.conn, req, &ro, on_admin_answer, s, &res, &err);
    if (rc == 0 && !s->got)
      rc = ttqc_fail(&err, TTQC_E_MALFORMED, "unexpected answer kind from the daemon");
  }
  ttqc_session_close(&ses);
  if (rc) fprintf(stderr, "ttq %s: %s\n", cmd, err.msg);
  return rc;
}

static const char health_usage[] =
    "usage: ttq health [--json] [CONNECTION FLAGS]\n"
    "Prints the daemon's state, model, ranks, threads, queue depth/capacity, running request,\n"
    "uptime and version. Exit 0 when the state is \"serving\", 3 otherwise or when the daemon\n"
    "does not answer (usable as a Kubernetes readiness/liveness probe).\n"
    "  --json                one JSON object\n"
    TTQC_COMMON_USAGE
    "  (health: --timeout default 5, --retries default 0)\n";

int ttqc_cmd_health(int argc, char **argv, volatile sig_atomic_t *sig) {
  ttqc_common com;
  ttqc_common_init(&com, 5, 0);
  com.fail_fast = true; /* a probe: a refused connection is an answer */
  admin_state s = {TTQ__RESPONSE__KIND_HEALTH, false, false, false, NULL};
  int ex = parse_admin("health", health_usage, true, argc, argv, &com, &s.json);
  if (ex >= 0) return ex;
  if (optind < argc) {
    fprintf(stderr, "ttq health: unexpected argument '%s'\n", argv[optind]);
    return TTQC_EXIT_USAGE;
  }
  Ttq__Request req = TTQ__REQUEST__INIT;
  Ttq__HealthRequest hr = TTQ__HEALTH_REQUEST__INIT;
  req.kind_case = TTQ__REQUEST__KIND_HEALTH;
  req.health = &hr;
  int rc = one_shot("health", &com, sig, &req, &s);
  switch (ttqc_exit_code(rc)) {
  case TTQC_EXIT_OK: return s.ok ? TTQC_EXIT_OK : TTQC_EXIT_UNAVAILABLE;
  case TTQC_EXIT_USAGE:
  case TTQC_EXIT_AUTH:
  case TTQC_EXIT_INTERRUPTED: return ttqc_exit_code(rc);
  default: return TTQC_EXIT_UNAVAILABLE; /* not healthy, whatever the reason */
  }
}

static const char stats_usage[] =
    "usage: ttq stats [CONNECTION FLAGS]\n"
    "Prints the daemon's metrics in the Prometheus text exposition format.\n"
    TTQC_COMMON_USAGE
    "  (stats: --timeout default 30, --retries default 3)\n";

int ttqc_cmd_stats(int argc, char **argv, volatile sig_atomic_t *sig) {
  ttqc_common com;
  ttqc_common_init(&com, 30, 3);
  admin_state s = {TTQ__RESPONSE__KIND_STATS_TEXT, false, false, false, NULL};
  int ex = parse_admin("stats", stats_usage, false, argc, argv, &com, &s.json);
  if (ex >= 0) return ex;
  if (optind < argc) {
    fprintf(stderr, "ttq stats: unexpected argument '%s'\n", argv[optind]);
    return TTQC_EXIT_USAGE;
  }
  Ttq__Request req = TTQ__REQUEST__INIT;
  Ttq__StatsRequest sr = TTQ__STATS_REQUEST__INIT;
  req.kind_case = TTQ__REQUEST__KIND_STATS;
  req.stats = &sr;
  return ttqc_exit_code(one_shot("stats", &com, sig, &req, &s));
}

static const char cancel_usage[] =
    "usage: ttq cancel [CONNECTION FLAGS] ID\n"
    "Cancels the queued or running request ID (from any connection). Prints whether it was\n"
    "found: exit 0 when it was, 1 when no such request was queued or running.\n"
    TTQC_COMMON_USAGE
    "  (cancel: --timeout default 30, --retries default 3)\n";

int ttqc_cmd_cancel(int argc, char **argv, volatile sig_atomic_t *sig) {
  ttqc_common com;
  ttqc_common_init(&com, 30, 3);
  admin_state s = {TTQ__RESPONSE__KIND_CANCELLED, false, false, false, NULL};
  int ex = parse_admin("cancel", cancel_usage, false, argc, argv, &com, &s.json);
  if (ex >= 0) return ex;
  if (argc - optind != 1) {
    fprintf(stderr, "ttq cancel: expected exactly one request ID (got %d)\n", argc - optind);
    return TTQC_EXIT_USAGE;
  }
  if (ttqc_parse_id("cancel", "ID", argv[optind])) return TTQC_EXIT_USAGE;
  s.target = argv[optind];
  Ttq__Request req = TTQ__REQUEST__INIT;
  Ttq__CancelRequest cr = TTQ__CANCEL_REQUEST__INIT;
  cr.target_id = argv[optind];
  req.kind_case = TTQ__REQUEST__KIND_CANCEL;
  req.cancel = &cr;
  int rc = one_shot("cancel", &com, sig, &req, &s);
  if (rc) return ttqc_exit_code(rc);
  return s.ok ? TTQC_EXIT_OK : TTQC_EXIT_FAIL;
}

static const char keygen_usage[] =
    "usage: ttq keygen [--out PREFIX [--force]]\n"
    "Makes a new CURVE key pair (Z85). Without --out, prints 'public <key>' and 'secret <key>'\n"
    "on stdout. With --out, writes PREFIX.key (mode 0600: both lines; give it to --key, or to\n"
    "the daemon as its own key) and PREFIX.pub (the public key alone: give it to the other\n"
    "side, e.g. --server-key or the daemon's authorized keys).\n"
    "  --out PREFIX          write PREFIX.key and PREFIX.pub\n"
    "  --force               overwrite existing files\n";

int ttqc_cmd_keygen(int argc, char **argv, volatile sig_atomic_t *sig) {
  (void)sig; /* keygen talks to nobody: nothing to interrupt */
  static const struct option opts[] = {{"out", required_argument, 0, TTQC_OPT_OUT},
                                       {"force", no_argument, 0, TTQC_OPT_FORCE},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  const char *out = NULL;
  bool force = false;
  int c;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (c) {
    case 'h': fputs(keygen_usage, stdout); return 0;
    case TTQC_OPT_OUT:
      if (!*optarg) {
        fprintf(stderr, "ttq keygen: --out: empty prefix\n");
        return TTQC_EXIT_USAGE;
      }
      out = optarg;
      break;
    case TTQC_OPT_FORCE: force = true; break;
    default: ttqc_bad_option("keygen", c, optopt, argv[optind - 1]); return TTQC_EXIT_USAGE;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "ttq keygen: unexpected argument '%s' (use --out PREFIX)\n", argv[optind]);
    return TTQC_EXIT_USAGE;
  }
  if (force && !out) {
    fprintf(stderr, "ttq keygen: --force needs --out\n");
    return TTQC_EXIT_USAGE;
  }
  ttq_keypair kp;
  char err[512];
  if (ttq_keys_generate(&kp, err, sizeof err)) {
    fprintf(stderr, "ttq keygen: %s\n", err);
    return TTQC_EXIT_FAIL;
  }
  int rc = 0;
  if (!out) {
    printf("public %s\nsecret %s\n", kp.pub, kp.sec);
    if (fflush(stdout) != 0 || ferror(stdout)) {
      fprintf(stderr, "ttq keygen: cannot write to stdout\n");
      rc = TTQC_EXIT_FAIL;
    }
  } else if (ttq_keys_write(out, &kp, force, err, sizeof err)) {
    fprintf(stderr, "ttq keygen: %s\n", err);
    rc = TTQC_EXIT_FAIL;
  } else {
    fprintf(stderr, "ttq keygen: wrote %s.key (secret, mode 0600) and %s.pub\n", out, out);
  }
  memset(&kp, 0, sizeof kp);
  return rc;
}
