/* cmd_bench.c -- `ttq bench`: concurrent load on a daemon. N client threads, each with its own
 * DEALER connection, take request numbers from a shared counter and run Generate requests
 * until the total is reached or --duration passes; then latency and TTFT percentiles,
 * aggregate throughput and the daemon-reported decode speed are reported (text or --json).
 * Invariants: the run is bounded (a request in flight at the deadline is cancelled, awaited
 * for at most 1 s, and counted); each record is written by the one thread that ran it and
 * read only after every thread joined; the shared counter and the fatal-error slot are
 * guarded by one mutex; a refused handshake stops every thread. */
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "cli.h"
#include "conn.h"
#include "genopts.h"
#include "json.h"
#include "rpc.h"

static const char bench_usage[] =
    "usage: ttq bench [FLAGS]\n"
    "Runs Generate requests from concurrent clients and reports completed requests, errors by\n"
    "code, timeouts, latency p50/p90/p99/max, time to first chunk p50/p99, aggregate generated\n"
    "tokens/s, requests/s and the daemon-reported decode tok/s. Exit 0 when every request sent\n"
    "completed or got a typed error, 1 when any was lost (no answer in time).\n"
    "  --clients N           concurrent clients, 1..256 (default 8)\n"
    "  --requests N          requests in total, 1..1000000 (default 32)\n"
    "  --duration SEC        stop after SEC, 1..3600 (default 60); requests in flight then are\n"
    "                        cancelled and counted as cancelled at the deadline\n"
    "  --prompt TEXT         the prompt of every request (default \"Once upon a time\")\n"
    "  --prompt-file FILE    read the prompt from FILE\n"
    "  --json                one JSON object instead of the table\n"
    TTQC_GEN_USAGE TTQC_COMMON_USAGE
    "  (bench: --timeout default 30, --retries default 0)\n";

enum { OUT_NOT_SENT = 0, OUT_DONE, OUT_ERROR, OUT_LOST, OUT_ABORTED, OUT_FAILED };
#define N_CODES 6 /* Error.Code 1..5; slot 0 counts unknown codes */

typedef struct {
  int outcome;
  int code; /* OUT_ERROR: the daemon's Error.Code */
  double latency_ms, ttft_ms;
  bool has_ttft, has_decode;
  uint32_t gen_tokens;
  double decode_tok_s;
} bench_rec;

typedef struct {
  /* read-only while the threads run */
  void *zctx;
  const ttqc_conn_opts *co;
  const ttqc_common *com;
  const ttqc_genopts *g;
  char *prompt;
  int total;
  double t_end;
  const volatile sig_atomic_t *sig;
  bench_rec *recs;
  /* guarded by mu */
  pthread_mutex_t mu;
  int next;
  int fatal_rc;
  ttqc_err fatal_err;
} bench;

/* What the answers of one request said. */
typedef struct {
  bool done;
  int code;
  uint32_t gen_tokens;
  bool has_gen, has_decode;
  double decode_tok_s;
} answer;

static int on_bench_answer(void *user, const Ttq__Response *r) {
  answer *a = user;
  if (r->kind_case == TTQ__RESPONSE__KIND_DONE) {
    a->done = true;
    a->has_gen = r->done->has_generated_tokens;
    a->gen_tokens = r->done->generated_tokens;
    a->has_decode = r->done->has_decode_tok_s;
    a->decode_tok_s = r->done->decode_tok_s;
  } else if (r->kind_case == TTQ__RESPONSE__KIND_ERROR) {
    a->code = r->error->code;
  }
  return 0;
}

static void set_fatal(bench *b, int rc, const ttqc_err *err) {
  pthread_mutex_lock(&b->mu);
  if (!b->fatal_rc) {
    b->fatal_rc = rc;
    b->fatal_err = *err;
  }
  pthread_mutex_unlock(&b->mu);
}

/* The next request number, or -1 when the run is over. */
static int take(bench *b) {
  int idx = -1;
  pthread_mutex_lock(&b->mu);
  if (!b->fatal_rc && !*b->sig && b->next < b->total && ttqc_now_ms() < b->t_end)
    idx = b->next++;
  pthread_mutex_unlock(&b->mu);
  return idx;
}

static void *worker(void *arg) {
  bench *b = arg;
  ttqc_conn *conn;
  ttqc_err err = {{0}};
  int rc = ttqc_conn_open(b->zctx, b->co, &conn, &err);
  if (rc) {
    set_fatal(b, rc, &err);
    return NULL;
  }
  int idx;
  while ((idx = take(b)) >= 0) {
    Ttq__Request req = TTQ__REQUEST__INIT;
    Ttq__GenerateRequest gr = TTQ__GENERATE_REQUEST__INIT;
    Ttq__Quantization q = TTQ__QUANTIZATION__INIT;
    ttqc_genopts_apply(b->g, &gr, &q);
    gr.prompt = b->prompt;
    req.kind_case = TTQ__REQUEST__KIND_GENERATE;
    req.generate = &gr;
    ttqc_rpc_opts ro = {b->com->timeout_s * 1e3, b->com->idle_timeout_s * 1e3, b->com->retries,
                        NULL, b->t_end};
    ttqc_rpc_result res;
    answer a = {0};
    rc = ttqc_rpc(conn, &req, &ro, on_bench_answer, &a, &res, &err);
    bench_rec *r = &b->recs[idx];
    if (res.got_final) r->latency_ms = res.t_final_ms - res.t_sent_ms;
    if (res.t_chunk_ms) r->has_ttft = true, r->ttft_ms = res.t_chunk_ms - res.t_sent_ms;
    if (a.done) {
      r->outcome = OUT_DONE;
      r->gen_tokens = a.has_gen ? a.gen_tokens : 0;
      r->has_decode = a.has_decode, r->decode_tok_s = a.decode_tok_s;
    } else if (rc == TTQC_E_DEADLINE || rc == TTQC_E_INTR) {
      r->outcome = res.t_sent_ms ? OUT_ABORTED : OUT_NOT_SENT;
    } else if (a.code) {
      r->outcome = OUT_ERROR, r->code = a.code;
    } else if (rc == TTQC_E_TIMEOUT || rc == TTQC_E_UNREACHABLE) {
      r->outcome = OUT_LOST; /* unreachable too: no answer within the timeouts */
    } else {
      r->outcome = res.t_sent_ms ? OUT_FAILED : OUT_NOT_SENT;
    }
    if (rc == TTQC_E_AUTH || rc == TTQC_E_MALFORMED || (rc == TTQC_E_FAIL && !a.code)) {
      set_fatal(b, rc, &err);
      break;
    }
  }
  ttqc_conn_close(conn);
  return NULL;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v[0..n); NAN when n == 0. */
static double pct(const double *v, size_t n, double p) {
  if (!n) return NAN;
  size_t k = (size_t)ceil(p / 100.0 * (double)n);
  return v[k ? k - 1 : 0];
}

typedef struct {
  int sent, done, errors, lost, aborted, failed;
  int by_code[N_CODES];
  double lat[4], ttft[2]; /* p50 p90 p99 max; p50 p99 */
  uint64_t gen_tokens;
  double wall_s, gen_tok_s, req_s, decode_mean;
  int n_decode;
} summary;

static int summarize(const bench *b, double wall_ms, summary *s) {
  memset(s, 0, sizeof *s);
  double *lat = malloc(sizeof(double) * (size_t)b->total);
  double *ttft = malloc(sizeof(double) * (size_t)b->total);
  if (!lat || !ttft) {
    free(lat);
    free(ttft);
    return TTQC_E_FAIL;
  }
  size_t nl = 0, nt = 0;
  double dsum = 0;
  for (int i = 0; i < b->total; i++) {
    const bench_rec *r = &b->recs[i];
    if (r->outcome == OUT_NOT_SENT) continue;
    s->sent++;
    switch (r->outcome) {
    case OUT_DONE:
      s->done++;
      lat[nl++] = r->latency_ms;
      if (r->has_ttft) ttft[nt++] = r->ttft_ms;
      s->gen_tokens += r->gen_tokens;
      if (r->has_decode) dsum += r->decode_tok_s, s->n_decode++;
      break;
    case OUT_ERROR:
      s->errors++;
      s->by_code[r->code >= 1 && r->code < N_CODES ? r->code : 0]++;
      break;
    case OUT_LOST: s->lost++; break;
    case OUT_ABORTED: s->aborted++; break;
    default: s->failed++; break;
    }
  }
  qsort(lat, nl, sizeof *lat, cmp_double);
  qsort(ttft, nt, sizeof *ttft, cmp_double);
  s->lat[0] = pct(lat, nl, 50), s->lat[1] = pct(lat, nl, 90), s->lat[2] = pct(lat, nl, 99);
  s->lat[3] = nl ? lat[nl - 1] : NAN;
  s->ttft[0] = pct(ttft, nt, 50), s->ttft[1] = pct(ttft, nt, 99);
  s->wall_s = wall_ms / 1e3;
  s->gen_tok_s = s->wall_s > 0 ? (double)s->gen_tokens / s->wall_s : NAN;
  s->req_s = s->wall_s > 0 ? s->done / s->wall_s : NAN;
  s->decode_mean = s->n_decode ? dsum / s->n_decode : NAN;
  free(lat);
  free(ttft);
  return 0;
}

static void print_json(const bench *b, const summary *s, int clients) {
  char buf[32];
  printf("{\"endpoint\":");
  ttqc_json_str(stdout, b->com->endpoint);
  printf(",\"clients\":%d,\"requests\":%d,\"sent\":%d,\"completed\":%d,\"errors\":%d", clients,
         b->total, s->sent, s->done, s->errors);
  printf(",\"errors_by_code\":{");
  bool first = true;
  for (int c = 1; c <= N_CODES; c++) {
    int code = c % N_CODES; /* 1..5, then the unknown ones */
    if (!s->by_code[code]) continue;
    ttqc_json_key(stdout, code ? ttqc_code_name(code, buf, sizeof buf) : "other", first);
    printf("%d", s->by_code[code]);
    first = false;
  }
  printf("},\"timeouts\":%d,\"cancelled_at_deadline\":%d,\"failed\":%d", s->lost, s->aborted,
         s->failed);
  static const char *lk[4] = {"p50", "p90", "p99", "max"};
  printf(",\"latency_ms\":{");
  for (int i = 0; i < 4; i++) {
    ttqc_json_key(stdout, lk[i], i == 0);
    ttqc_json_num(stdout, s->lat[i]);
  }
  printf("},\"ttft_ms\":{\"p50\":");
  ttqc_json_num(stdout, s->ttft[0]);
  printf(",\"p99\":");
  ttqc_json_num(stdout, s->ttft[1]);
  printf("},\"generated_tokens\":%llu,\"generated_tok_s\":", (unsigned long long)s->gen_tokens);
  ttqc_json_num(stdout, s->gen_tok_s);
  printf(",\"requests_per_s\":");
  ttqc_json_num(stdout, s->req_s);
  printf(",\"decode_tok_s_mean\":");
  ttqc_json_num(stdout, s->decode_mean);
  printf(",\"wall_s\":");
  ttqc_json_num(stdout, s->wall_s);
  printf("}\n");
}

/* "%.Nf" of v, or "-" when there is no value. */
static const char *fmt(char *buf, size_t n, int prec, double v) {
  if (isnan(v)) snprintf(buf, n, "-");
  else snprintf(buf, n, "%.*f", prec, v);
  return buf;
}

static void print_text(const bench *b, const summary *s, int clients) {
  char buf[32], f[6][32];
  printf("ttq bench: %s, %d client%s, %d requests, %.2f s\n", b->com->endpoint, clients,
         clients == 1 ? "" : "s", b->total, s->wall_s);
  printf("  sent                   %d\n", s->sent);
  printf("  completed              %d\n", s->done);
  printf("  errors                 %d", s->errors);
  const char *sep = " (";
  for (int c = 1; c <= N_CODES; c++) {
    int code = c % N_CODES;
    if (!s->by_code[code]) continue;
    printf("%s%s %d", sep, code ? ttqc_code_name(code, buf, sizeof buf) : "other",
           s->by_code[code]);
    sep = ", ";
  }
  printf("%s\n", s->errors ? ")" : "");
  printf("  timeouts (lost)        %d\n", s->lost);
  printf("  cancelled at deadline  %d\n", s->aborted);
  if (s->failed) printf("  failed                 %d\n", s->failed);
  printf("  latency ms             p50 %s  p90 %s  p99 %s  max %s\n", fmt(f[0], 32, 1, s->lat[0]),
         fmt(f[1], 32, 1, s->lat[1]), fmt(f[2], 32, 1, s->lat[2]), fmt(f[3], 32, 1, s->lat[3]));
  printf("  ttft ms                p50 %s  p99 %s\n", fmt(f[4], 32, 1, s->ttft[0]),
         fmt(f[5], 32, 1, s->ttft[1]));
  printf("  generated tok/s        %s (%llu tokens)\n", fmt(f[0], 32, 1, s->gen_tok_s),
         (unsigned long long)s->gen_tokens);
  printf("  requests/s             %s\n", fmt(f[1], 32, 2, s->req_s));
  printf("  decode tok/s (daemon)  %s mean\n", fmt(f[2], 32, 1, s->decode_mean));
}

int ttqc_cmd_bench(int argc, char **argv, volatile sig_atomic_t *sig) {
  static const struct option opts[] = {TTQC_COMMON_OPTIONS, TTQC_GEN_OPTIONS,
                                       {"clients", required_argument, 0, TTQC_OPT_CLIENTS},
                                       {"requests", required_argument, 0, TTQC_OPT_REQUESTS},
                                       {"duration", required_argument, 0, TTQC_OPT_DURATION},
                                       {"prompt", required_argument, 0, TTQC_OPT_PROMPT},
                                       {"prompt-file", required_argument, 0, TTQC_OPT_PROMPT_FILE},
                                       {"json", no_argument, 0, TTQC_OPT_JSON},
                                       {0, 0, 0, 0}};
  const char *cmd = "bench", *prompt_file = NULL;
  char *prompt = NULL, *file_buf = NULL;
  long clients = 8, total = 32;
  double duration = 60;
  bool json = false;
  ttqc_common com;
  ttqc_common_init(&com, 30, 0);
  ttqc_genopts g;
  memset(&g, 0, sizeof g);
  int c;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    int h;
    if (c == 'h') {
      fputs(bench_usage, stdout);
      return 0;
    }
    if ((h = ttqc_common_opt(cmd, c, optarg, &com)) || (h = ttqc_genopts_opt(cmd, c, optarg, &g))) {
      if (h < 0) return TTQC_EXIT_USAGE;
      continue;
    }
    switch (c) {
    case TTQC_OPT_CLIENTS:
      if (ttqc_parse_long(cmd, "--clients", optarg, 1, 256, &clients)) return TTQC_EXIT_USAGE;
      break;
    case TTQC_OPT_REQUESTS:
      if (ttqc_parse_long(cmd, "--requests", optarg, 1, 1000000, &total)) return TTQC_EXIT_USAGE;
      break;
    case TTQC_OPT_DURATION:
      if (ttqc_parse_double(cmd, "--duration", optarg, 1, 3600, false, &duration))
        return TTQC_EXIT_USAGE;
      break;
    case TTQC_OPT_PROMPT: prompt = optarg; break;
    case TTQC_OPT_PROMPT_FILE: prompt_file = optarg; break;
    case TTQC_OPT_JSON: json = true; break;
    default: ttqc_bad_option(cmd, c, optopt, argv[optind - 1]); return TTQC_EXIT_USAGE;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "ttq bench: unexpected argument '%s' (use --prompt TEXT)\n", argv[optind]);
    return TTQC_EXIT_USAGE;
  }
  if (prompt && prompt_file) {
    fprintf(stderr, "ttq bench: --prompt and --prompt-file exclude each other\n");
    return TTQC_EXIT_USAGE;
  }
  ttqc_err err = {{0}};
  if (prompt_file) {
    if (ttqc_read_file(prompt_file, &file_buf, NULL, &err)) {
      fprintf(stderr, "ttq bench: --prompt-file: %s\n", err.msg);
      return TTQC_EXIT_FAIL;
    }
    prompt = file_buf;
  }
  if (!prompt) prompt = "Once upon a time";

  char spub[41], cpub[41], csec[41];
  ttqc_conn_opts co;
  int rc = ttqc_conn_opts_from_common(&com, sig, spub, cpub, csec, &co, &err);
  if (rc) {
    fprintf(stderr, "ttq bench: %s\n", err.msg);
    free(file_buf);
    return ttqc_exit_code(rc);
  }
  bench b;
  memset(&b, 0, sizeof b);
  b.co = &co, b.com = &com, b.g = &g, b.prompt = prompt, b.total = (int)total, b.sig = sig;
  b.recs = calloc((size_t)total, sizeof *b.recs);
  pthread_t *th = calloc((size_t)clients, sizeof *th);
  b.zctx = zmq_ctx_new();
  if (!b.recs || !th || !b.zctx || pthread_mutex_init(&b.mu, NULL)) {
    fprintf(stderr, "ttq bench: out of memory\n");
    free(b.recs);
    free(th);
    free(file_buf);
    if (b.zctx) zmq_ctx_term(b.zctx);
    return TTQC_EXIT_FAIL;
  }
  double t0 = ttqc_now_ms();
  b.t_end = t0 + duration * 1e3;
  int started = 0;
  for (; started < clients; started++) {
    if (pthread_create(&th[started], NULL, worker, &b)) {
      ttqc_fail(&err, TTQC_E_FAIL, "cannot start client thread %d", started + 1);
      set_fatal(&b, TTQC_E_FAIL, &err);
      break;
    }
  }
  for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
  double wall = ttqc_now_ms() - t0;
  memset(csec, 0, sizeof csec);

  summary s;
  rc = summarize(&b, wall, &s);
  int ex;
  if (rc) {
    fprintf(stderr, "ttq bench: out of memory\n");
    ex = TTQC_EXIT_FAIL;
  } else {
    if (json) print_json(&b, &s, (int)clients);
    else print_text(&b, &s, (int)clients);
    fflush(stdout);
    ex = s.lost || s.failed ? TTQC_EXIT_FAIL : TTQC_EXIT_OK;
    if (b.fatal_rc) {
      fprintf(stderr, "ttq bench: %s\n", b.fatal_err.msg);
      ex = ttqc_exit_code(b.fatal_rc);
    } else if (*sig) {
      fprintf(stderr, "ttq bench: interrupted\n");
      ex = TTQC_EXIT_INTERRUPTED;
    } else if (s.lost) {
      fprintf(stderr, "ttq bench: %d request%s lost (no answer in time)\n", s.lost,
              s.lost == 1 ? "" : "s");
    }
  }
  pthread_mutex_destroy(&b.mu);
  free(b.recs);
  free(th);
  free(file_buf);
  zmq_ctx_term(b.zctx);
  return ex;
}
