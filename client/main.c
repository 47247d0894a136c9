/* main.c -- ttq, the thin client of ttqd: command dispatch, global help and version, and the
 * SIGINT/SIGTERM handler. It never loads a model; every request command talks protobuf over
 * ZeroMQ to `ttqd serve` (docs/CLIENT.md).
 * Invariant: the only mutable global of the client is the signal flag below; the handlers
 * only store the signal number in it (installed without SA_RESTART so blocking reads return
 * EINTR), and commands poll it. */
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "cli.h"
#include "ttq.pb-c.h"

static volatile sig_atomic_t ttqc_signal;

static void on_signal(int sig) { ttqc_signal = sig; }

static const char usage[] =
    "usage: ttq COMMAND [OPTIONS] [ARGS]\n"
    "\n"
    "The thin client of ttqd (`ttqd serve`): protobuf over ZeroMQ, never loads a model.\n"
    "\n"
    "commands:\n"
    "  generate [FLAGS] PROMPT   stream the continuation of PROMPT ('-' = stdin) to stdout\n"
    "  chat [FLAGS]              interactive conversation, one user message per input line\n"
    "  health [--json]           the daemon's state; exit 0 when serving (a readiness probe)\n"
    "  stats                     the daemon's metrics, Prometheus text format\n"
    "  cancel ID                 cancel a queued or running request; exit 0 if it was found\n"
    "  bench [FLAGS]             concurrent load: latency percentiles and throughput\n"
    "  keygen [--out PREFIX]     a new CURVE key pair (PREFIX.key, PREFIX.pub)\n"
    "  version                   the client's version\n"
    "\n"
    "`ttq COMMAND --help` lists a command's flags. Every request command takes --endpoint URL\n"
    "(default $TTQ_ENDPOINT or " TTQC_DEFAULT_ENDPOINT "), --timeout SEC, --idle-timeout SEC,\n"
    "--retries N, --server-key FILE|Z85 ($TTQ_SERVER_KEY), --key FILE ($TTQ_KEY), --verbose.\n"
    "\n"
    "exit codes: 0 ok, 1 failure or INTERNAL, 2 usage, 3 UNAVAILABLE / unreachable / timed\n"
    "out, 4 INVALID_ARGUMENT, 5 RESOURCE_EXHAUSTED, 6 CANCELLED, 7 authentication failed,\n"
    "130 interrupted.\n";

static int cmd_version(void) {
  int a, b, c;
  zmq_version(&a, &b, &c);
  printf("ttq %s (ZeroMQ %d.%d.%d%s, protobuf-c %s)\n", TTQC_VERSION, a, b, c,
         zmq_has("curve") ? ", CURVE" : "", protobuf_c_version());
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs(usage, stderr);
    return TTQC_EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
    fputs(usage, stdout);
    return 0;
  }
  if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) return cmd_version();

  static const struct {
    const char *name;
    int (*run)(int, char **, volatile sig_atomic_t *);
  } cmds[] = {{"generate", ttqc_cmd_generate}, {"chat", ttqc_cmd_chat},
              {"bench", ttqc_cmd_bench},       {"health", ttqc_cmd_health},
              {"stats", ttqc_cmd_stats},       {"cancel", ttqc_cmd_cancel},
              {"keygen", ttqc_cmd_keygen}};
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
    if (strcmp(cmd, cmds[i].name)) continue;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a closed stdout shows as a write error, not a silent death */
    return cmds[i].run(argc - 1, argv + 1, &ttqc_signal);
  }
  fprintf(stderr, "ttq: unknown command '%s' (see ttq --help)\n", cmd);
  return TTQC_EXIT_USAGE;
}
