/* cmd_chat.c -- `ttq chat`: an interactive conversation. Each non-empty stdin line is a user
 * message; the whole conversation (system, user, assistant messages) goes to the daemon each
 * turn as GenerateRequest.messages and the reply streams to stdout, followed by a newline.
 * Invariants: the history holds only completed turns (a failed or cancelled turn's user
 * message is dropped again), so the next request is always a well-formed conversation; a
 * daemon error ends the turn, not the session; losing the daemon (after retries), a refused
 * handshake or SIGTERM ends the session. Ctrl-C during a reply cancels that reply; Ctrl-C at
 * the prompt ends the session (exit 130). */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "conn.h"
#include "genopts.h"
#include "report.h"
#include "rpc.h"

static const char chat_usage[] =
    "usage: ttq chat [FLAGS]\n"
    "An interactive conversation: each line read from stdin is a user message (empty lines are\n"
    "skipped; the prompt \"> \" is shown on stderr when stdin is a terminal). The reply streams\n"
    "to stdout and ends with a newline; the figures of each reply go to stderr. EOF ends the\n"
    "session. A daemon error ends the turn, not the session. Ctrl-C during a reply cancels it;\n"
    "at the prompt it ends the session (exit 130).\n"
    "  --system TEXT         a system message opening the conversation\n"
    "  --quiet               no figures lines\n"
    TTQC_GEN_USAGE TTQC_COMMON_USAGE
    "  (chat: --timeout default 30, --retries default 3)\n";

typedef struct {
  Ttq__ChatMessage **msgs;
  size_t n, cap;
} history;

static int history_push(history *h, const char *role, const char *text, size_t len) {
  if (h->n == h->cap) {
    size_t cap = h->cap ? 2 * h->cap : 16;
    Ttq__ChatMessage **m = realloc(h->msgs, cap * sizeof *m);
    if (!m) return TTQC_E_FAIL;
    h->msgs = m, h->cap = cap;
  }
  Ttq__ChatMessage *m = malloc(sizeof *m);
  char *content = malloc(len + 1);
  if (!m || !content) {
    free(m);
    free(content);
    return TTQC_E_FAIL;
  }
  memcpy(content, text, len);
  content[len] = 0;
  ttq__chat_message__init(m);
  m->role = (char *)role; /* a string literal: never freed */
  m->content = content;
  h->msgs[h->n++] = m;
  return 0;
}

static void history_pop(history *h) {
  if (!h->n) return;
  Ttq__ChatMessage *m = h->msgs[--h->n];
  free(m->content);
  free(m);
}

static void history_free(history *h) {
  while (h->n) history_pop(h);
  free(h->msgs);
}

/* One reply being received. */
typedef struct {
  bool quiet;
  char *text;  /* the reply so far */
  size_t len, cap;
  bool got_error, oom, open; /* open: text printed without a final newline */
} turn;

static int on_turn_answer(void *user, const Ttq__Response *r) {
  turn *t = user;
  if (r->kind_case == TTQ__RESPONSE__KIND_CHUNK && r->chunk->text && *r->chunk->text) {
    size_t n = strlen(r->chunk->text);
    if (t->len + n + 1 > t->cap) {
      size_t cap = (t->len + n + 1) * 2;
      char *p = realloc(t->text, cap);
      if (!p) {
        t->oom = true;
        return TTQC_E_FAIL;
      }
      t->text = p, t->cap = cap;
    }
    memcpy(t->text + t->len, r->chunk->text, n);
    t->len += n;
    fwrite(r->chunk->text, 1, n, stdout);
    fflush(stdout);
    t->open = true;
  } else if (r->kind_case == TTQ__RESPONSE__KIND_DONE) {
    fputc('\n', stdout);
    fflush(stdout);
    t->open = false;
    if (!t->quiet) ttqc_report_done_text(stderr, "chat", r->done);
  } else if (r->kind_case == TTQ__RESPONSE__KIND_ERROR) {
    t->got_error = true;
  }
  return 0;
}

/* Strips the line end and reports whether anything but blanks is left. */
static bool trim_line(char *line, ssize_t *n) {
  while (*n > 0 && (line[*n - 1] == '\n' || line[*n - 1] == '\r')) line[--*n] = 0;
  for (ssize_t i = 0; i < *n; i++)
    if (line[i] != ' ' && line[i] != '\t') return true;
  return false;
}

int ttqc_cmd_chat(int argc, char **argv, volatile sig_atomic_t *sig) {
  static const struct option opts[] = {TTQC_COMMON_OPTIONS, TTQC_GEN_OPTIONS,
                                       {"system", required_argument, 0, TTQC_OPT_SYSTEM},
                                       {"quiet", no_argument, 0, TTQC_OPT_QUIET},
                                       {0, 0, 0, 0}};
  const char *cmd = "chat", *system_text = NULL;
  bool quiet = false;
  ttqc_common com;
  ttqc_common_init(&com, 30, 3);
  ttqc_genopts g;
  memset(&g, 0, sizeof g);
  int c;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    int h;
    if (c == 'h') {
      fputs(chat_usage, stdout);
      return 0;
    }
    if ((h = ttqc_common_opt(cmd, c, optarg, &com)) || (h = ttqc_genopts_opt(cmd, c, optarg, &g))) {
      if (h < 0) return TTQC_EXIT_USAGE;
      continue;
    }
    switch (c) {
    case TTQC_OPT_SYSTEM: system_text = optarg; break;
    case TTQC_OPT_QUIET: quiet = true; break;
    default: ttqc_bad_option(cmd, c, optopt, argv[optind - 1]); return TTQC_EXIT_USAGE;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "ttq chat: unexpected argument '%s' (messages come from stdin)\n",
            argv[optind]);
    return TTQC_EXIT_USAGE;
  }

  ttqc_err err = {{0}};
  ttqc_session ses;
  history h = {0};
  char *line = NULL;
  size_t line_cap = 0;
  bool tty = isatty(STDIN_FILENO);
  int rc = ttqc_session_open(&ses, &com, sig, &err);
  if (rc == 0 && system_text && history_push(&h, "system", system_text, strlen(system_text)))
    rc = ttqc_fail(&err, TTQC_E_FAIL, "out of memory");
  while (rc == 0) {
    if (tty) {
      fputs("> ", stderr);
      fflush(stderr);
    }
    errno = 0;
    ssize_t n = getline(&line, &line_cap, stdin);
    if (n < 0) {
      if (*sig) rc = ttqc_fail(&err, TTQC_E_INTR, "interrupted");
      else if (ferror(stdin) && errno != EINTR)
        rc = ttqc_fail(&err, TTQC_E_FAIL, "cannot read stdin: %s", strerror(errno));
      else if (tty) fputc('\n', stderr);
      break;
    }
    if (*sig) { /* a signal that arrived while the line was typed */
      rc = ttqc_fail(&err, TTQC_E_INTR, "interrupted");
      break;
    }
    if (!trim_line(line, &n)) continue;
    if (history_push(&h, "user", line, (size_t)n)) {
      rc = ttqc_fail(&err, TTQC_E_FAIL, "out of memory");
      break;
    }
    Ttq__Request req = TTQ__REQUEST__INIT;
    Ttq__GenerateRequest gr = TTQ__GENERATE_REQUEST__INIT;
    Ttq__Quantization q = TTQ__QUANTIZATION__INIT;
    ttqc_genopts_apply(&g, &gr, &q);
    gr.n_messages = h.n;
    gr.messages = h.msgs;
    req.kind_case = TTQ__REQUEST__KIND_GENERATE;
    req.generate = &gr;
    ttqc_rpc_opts ro = {com.timeout_s * 1e3, com.idle_timeout_s * 1e3, com.retries, NULL, 0};
    ttqc_rpc_result res;
    turn t = {.quiet = quiet};
    rc = ttqc_rpc(ses.conn, &req, &ro, on_turn_answer, &t, &res, &err);
    if (t.open) {
      fputc('\n', stdout);
      fflush(stdout);
    }
    if (rc == 0 && history_push(&h, "assistant", t.text ? t.text : "", t.len))
      rc = ttqc_fail(&err, TTQC_E_FAIL, "out of memory");
    else if (rc) history_pop(&h); /* the user message of a failed turn */
    free(t.text);
    if (t.oom) {
      rc = ttqc_fail(&err, TTQC_E_FAIL, "out of memory");
    } else if (rc == TTQC_E_INTR) {
      if (*sig == SIGINT) { /* Ctrl-C: this reply only; SIGTERM ends the session */
        fprintf(stderr, "ttq chat: reply cancelled\n");
        *sig = 0;
        rc = 0;
      }
    } else if (rc && t.got_error && rc != TTQC_E_UNAVAILABLE) {
      fprintf(stderr, "ttq chat: %s\n", err.msg); /* the turn failed; the session goes on */
      rc = 0;
    }
  }
  if (rc) fprintf(stderr, "ttq chat: %s\n", err.msg);
  free(line);
  history_free(&h);
  ttqc_session_close(&ses);
  return ttqc_exit_code(rc);
}
