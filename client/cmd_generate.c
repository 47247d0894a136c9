/* cmd_generate.c -- `ttq generate`: one prompt, the generated text streamed to stdout as the
 * chunks arrive (or one JSON object per line with --json), the Done figures on stderr.
 * Invariants: stdout carries only generated text (text mode) or only JSON lines (--json),
 * flushed per chunk; with --json the last line is always a "done" or an "error" object, for
 * client-side failures too; Ctrl-C cancels the request on the daemon before exiting 130. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "conn.h"
#include "genopts.h"
#include "report.h"
#include "rpc.h"

static const char generate_usage[] =
    "usage: ttq generate [FLAGS] PROMPT\n"
    "Generates a continuation of PROMPT ('-' reads it from stdin). The text goes to stdout as\n"
    "it is produced; the figures (tokens, times, tok/s, quantization, finish reason) go to\n"
    "stderr in one line.\n"
    "  --json                one JSON object per line on stdout: {\"type\":\"chunk\",...} per\n"
    "                        chunk, then {\"type\":\"done\",...} or {\"type\":\"error\",...}\n"
    "  --quiet               no figures line\n"
    "  --id ID               the request id (1..64 printable ASCII, no spaces; default: random)\n"
    TTQC_GEN_USAGE TTQC_COMMON_USAGE
    "  (generate: --timeout default 30, --retries default 3)\n"
    "Ctrl-C or SIGTERM cancels the request and exits 130. Exit codes: ttq --help.\n";

typedef struct {
  bool json, quiet;
  const ttqc_rpc_result *res; /* for the request id */
  bool got_final, wrote_json_final, text_open; /* text_open: text without a final newline */
  bool out_failed;                             /* stdout write error (closed pipe) */
} gen_state;

static int on_answer(void *user, const Ttq__Response *r) {
  gen_state *s = user;
  switch (r->kind_case) {
  case TTQ__RESPONSE__KIND_CHUNK:
    if (s->json) ttqc_report_chunk_json(stdout, r->chunk);
    else if (r->chunk->text && *r->chunk->text) {
      size_t n = strlen(r->chunk->text);
      fwrite(r->chunk->text, 1, n, stdout);
      fflush(stdout);
      s->text_open = r->chunk->text[n - 1] != '\n';
    }
    break;
  case TTQ__RESPONSE__KIND_DONE:
    s->got_final = true;
    if (s->json) {
      ttqc_report_done_json(stdout, s->res->id, r->done);
      s->wrote_json_final = true;
    } else {
      if (s->text_open && isatty(STDOUT_FILENO)) fputc('\n', stdout);
      fflush(stdout);
      if (!s->quiet) ttqc_report_done_text(stderr, "generate", r->done);
    }
    break;
  case TTQ__RESPONSE__KIND_ERROR: {
    s->got_final = true;
    char buf[32];
    if (s->text_open && !s->json && isatty(STDOUT_FILENO)) fputc('\n', stdout);
    fflush(stdout);
    if (s->json) {
      ttqc_report_error_json(stdout, s->res->id, ttqc_code_name(r->error->code, buf, sizeof buf),
                             r->error->message);
      s->wrote_json_final = true;
    }
    break;
  }
  default: break; /* another final kind: reported as unexpected by the caller */
  }
  if (ferror(stdout)) {
    s->out_failed = true;
    return TTQC_E_FAIL;
  }
  return 0;
}

int ttqc_cmd_generate(int argc, char **argv, volatile sig_atomic_t *sig) {
  static const struct option opts[] = {TTQC_COMMON_OPTIONS, TTQC_GEN_OPTIONS,
                                       {"json", no_argument, 0, TTQC_OPT_JSON},
                                       {"quiet", no_argument, 0, TTQC_OPT_QUIET},
                                       {"id", required_argument, 0, TTQC_OPT_ID},
                                       {0, 0, 0, 0}};
  const char *cmd = "generate";
  ttqc_common com;
  ttqc_common_init(&com, 30, 3);
  ttqc_genopts g;
  memset(&g, 0, sizeof g);
  gen_state st;
  memset(&st, 0, sizeof st);
  const char *fixed_id = NULL;
  int c;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    int h;
    if (c == 'h') {
      fputs(generate_usage, stdout);
      return 0;
    }
    if ((h = ttqc_common_opt(cmd, c, optarg, &com)) || (h = ttqc_genopts_opt(cmd, c, optarg, &g))) {
      if (h < 0) return TTQC_EXIT_USAGE;
      continue;
    }
    switch (c) {
    case TTQC_OPT_JSON: st.json = true; break;
    case TTQC_OPT_QUIET: st.quiet = true; break;
    case TTQC_OPT_ID:
      if (ttqc_parse_id(cmd, "--id", optarg)) return TTQC_EXIT_USAGE;
      fixed_id = optarg;
      break;
    default: ttqc_bad_option(cmd, c, optopt, argv[optind - 1]); return TTQC_EXIT_USAGE;
    }
  }
  if (argc - optind != 1) {
    fprintf(stderr, "ttq generate: expected exactly one PROMPT argument (got %d; '-' reads "
            "stdin; see ttq generate --help)\n", argc - optind);
    return TTQC_EXIT_USAGE;
  }
  char *prompt = argv[optind], *stdin_buf = NULL;
  if (!strcmp(prompt, "-")) {
    if (ttqc_read_stream(stdin, &stdin_buf, NULL)) {
      fprintf(stderr, "ttq generate: cannot read the prompt from stdin\n");
      return TTQC_EXIT_FAIL;
    }
    prompt = stdin_buf;
  }

  ttqc_err err = {{0}};
  ttqc_session ses;
  ttqc_rpc_result res;
  memset(&res, 0, sizeof res);
  st.res = &res;
  int rc = ttqc_session_open(&ses, &com, sig, &err);
  if (rc == 0) {
    Ttq__Request req = TTQ__REQUEST__INIT;
    Ttq__GenerateRequest gr = TTQ__GENERATE_REQUEST__INIT;
    Ttq__Quantization q = TTQ__QUANTIZATION__INIT;
    ttqc_genopts_apply(&g, &gr, &q);
    gr.prompt = prompt;
    req.kind_case = TTQ__REQUEST__KIND_GENERATE;
    req.generate = &gr;
    ttqc_rpc_opts ro = {com.timeout_s * 1e3, com.idle_timeout_s * 1e3, com.retries, fixed_id, 0};
    rc = ttqc_rpc(ses.conn, &req, &ro, on_answer, &st, &res, &err);
    if (rc == 0 && !st.got_final)
      rc = ttqc_fail(&err, TTQC_E_MALFORMED, "unexpected answer kind from the daemon");
    if (st.out_failed) rc = ttqc_fail(&err, TTQC_E_FAIL, "cannot write to stdout");
  }
  if (rc) {
    if (rc == TTQC_E_INTR && res.id[0])
      ttqc_fail(&err, rc, "interrupted; request %s cancelled", res.id);
    if (st.json && !st.wrote_json_final && !st.out_failed)
      ttqc_report_error_json(stdout, res.id[0] ? res.id : NULL, ttqc_rc_code_name(rc), err.msg);
    if (st.text_open && !st.json && isatty(STDOUT_FILENO)) fputc('\n', stdout);
    fflush(stdout);
    fprintf(stderr, "ttq generate: %s\n", err.msg);
  }
  ttqc_session_close(&ses);
  free(stdin_buf);
  return ttqc_exit_code(rc);
}
