/* cli.h -- what every ttq command shares: exit codes and the error convention, the error
 * context, number parsing with range checks, the connection options common to every request
 * command (--endpoint, --timeout, --idle-timeout, --retries, --server-key, --key, --verbose),
 * request ids, clocks and small I/O helpers.
 *
 * Conventions (every client module follows them):
 *  - functions return 0 or a negative TTQC_E_* code; the process exit code is
 *    ttqc_exit_code(rc);
 *  - a failing function fills a ttqc_err with a one-line reason (no "ttq CMD:" prefix, no
 *    newline); the command prints "ttq CMD: <reason>" once, on stderr;
 *  - the parse helpers print their own one-line usage error (naming the flag) and return
 *    TTQC_E_USAGE.
 * Times are milliseconds on CLOCK_MONOTONIC unless a name says _s (seconds). */
#ifndef TTQC_CLI_H
#define TTQC_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define TTQC_VERSION "0.1.0"
#define TTQC_DEFAULT_ENDPOINT "tcp://127.0.0.1:5555"

/* Process exit codes (docs/CLIENT.md). */
enum {
  TTQC_EXIT_OK = 0,
  TTQC_EXIT_FAIL = 1,          /* failure, INTERNAL, malformed answer, not found, lost */
  TTQC_EXIT_USAGE = 2,         /* bad command line */
  TTQC_EXIT_UNAVAILABLE = 3,   /* UNAVAILABLE, daemon unreachable, no answer in time */
  TTQC_EXIT_INVALID = 4,       /* INVALID_ARGUMENT */
  TTQC_EXIT_EXHAUSTED = 5,     /* RESOURCE_EXHAUSTED */
  TTQC_EXIT_CANCELLED = 6,     /* CANCELLED */
  TTQC_EXIT_AUTH = 7,          /* CURVE handshake or authentication failed */
  TTQC_EXIT_INTERRUPTED = 130  /* SIGINT / SIGTERM */
};

/* Negative error codes. For -1..-7 and -130 the exit code is the negation; the others map as
 * ttqc_exit_code says. */
enum {
  TTQC_E_FAIL = -1,
  TTQC_E_USAGE = -2,
  TTQC_E_UNAVAILABLE = -3,  /* the daemon answered UNAVAILABLE */
  TTQC_E_INVALID = -4,
  TTQC_E_EXHAUSTED = -5,
  TTQC_E_CANCELLED = -6,
  TTQC_E_AUTH = -7,
  TTQC_E_INTR = -130,
  TTQC_E_TIMEOUT = -200,     /* connected, but no answer in time (exit 3) */
  TTQC_E_UNREACHABLE = -201, /* no connection to the daemon in time (exit 3) */
  TTQC_E_MALFORMED = -202,   /* an answer that is not a Response (exit 1) */
  TTQC_E_DEADLINE = -203     /* stopped at a caller's deadline (bench --duration; exit 1) */
};

typedef struct {
  char msg[512];
} ttqc_err;

/* Formats the reason into e (when e is non-NULL) and returns rc. */
int ttqc_fail(ttqc_err *e, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int ttqc_exit_code(int rc);

/* The daemon's Error.Code: its name ("INVALID_ARGUMENT", ...; "code N" for unknown ones is
 * written into buf) and the matching negative code. */
const char *ttqc_code_name(int code, char *buf, size_t n);
int ttqc_rc_for_code(int code);
/* The error-code name a JSON consumer sees for a client-side failure rc. */
const char *ttqc_rc_code_name(int rc);

/* ---- parsing: 0 on success, else print "ttq CMD: FLAG: ..." and return TTQC_E_USAGE ---- */
int ttqc_parse_long(const char *cmd, const char *flag, const char *val, long lo, long hi,
                    long *out);
/* lo_open: the range excludes lo ((lo, hi] instead of [lo, hi]). */
int ttqc_parse_double(const char *cmd, const char *flag, const char *val, double lo, double hi,
                      bool lo_open, double *out);
int ttqc_parse_u64(const char *cmd, const char *flag, const char *val, uint64_t *out);
/* A request id: 1..64 printable ASCII characters, no spaces (0x21..0x7e). */
int ttqc_parse_id(const char *cmd, const char *flag, const char *val);
/* Prints "ttq CMD: unknown option / missing value ..." for getopt's '?' or ':' result. */
void ttqc_bad_option(const char *cmd, int c, int optopt_, const char *arg);

/* ---- the connection options every request command takes ---- */
enum {
  TTQC_OPT_ENDPOINT = 256, TTQC_OPT_TIMEOUT, TTQC_OPT_IDLE_TIMEOUT, TTQC_OPT_RETRIES,
  TTQC_OPT_SERVER_KEY, TTQC_OPT_KEY, TTQC_OPT_VERBOSE,
  /* generation options (genopts.h) */
  TTQC_OPT_MAX_TOKENS, TTQC_OPT_TEMPERATURE, TTQC_OPT_TOP_K, TTQC_OPT_TOP_P, TTQC_OPT_SEED,
  TTQC_OPT_STOP, TTQC_OPT_QUANT, TTQC_OPT_BITS, TTQC_OPT_GROUP, TTQC_OPT_RANK, TTQC_OPT_ALPHA,
  TTQC_OPT_LAMBDA, TTQC_OPT_DEADLINE_MS, TTQC_OPT_HEAD_BITS,
  /* command-specific options */
  TTQC_OPT_ID, TTQC_OPT_JSON, TTQC_OPT_QUIET, TTQC_OPT_SYSTEM, TTQC_OPT_OUT, TTQC_OPT_FORCE,
  TTQC_OPT_CLIENTS, TTQC_OPT_REQUESTS, TTQC_OPT_DURATION, TTQC_OPT_PROMPT,
  TTQC_OPT_PROMPT_FILE
};

#define TTQC_COMMON_OPTIONS                                                                    \
  {"endpoint", required_argument, 0, TTQC_OPT_ENDPOINT},                                       \
  {"timeout", required_argument, 0, TTQC_OPT_TIMEOUT},                                         \
  {"idle-timeout", required_argument, 0, TTQC_OPT_IDLE_TIMEOUT},                               \
  {"retries", required_argument, 0, TTQC_OPT_RETRIES},                                         \
  {"server-key", required_argument, 0, TTQC_OPT_SERVER_KEY},                                   \
  {"key", required_argument, 0, TTQC_OPT_KEY},                                                 \
  {"verbose", no_argument, 0, TTQC_OPT_VERBOSE}, {"help", no_argument, 0, 'h'}

/* Usage text of the common options; the defaults of --timeout and --retries vary by command
 * and are printed by the command. */
#define TTQC_COMMON_USAGE                                                                      \
  "connection:\n"                                                                              \
  "  --endpoint URL        the daemon (default $TTQ_ENDPOINT or " TTQC_DEFAULT_ENDPOINT ")\n"  \
  "  --timeout SEC         wait at most SEC for the connection and the first answer\n"        \
  "  --idle-timeout SEC    wait at most SEC between streamed chunks (default 60)\n"           \
  "  --retries N           retries (0..10; backoff 0.5 s, 1 s, 2 s, ... plus jitter) when\n"  \
  "                        the daemon is unreachable, answers UNAVAILABLE or does not answer\n" \
  "                        in time, and no chunk has arrived yet; each uses a new id\n"       \
  "  --server-key FILE|Z85 the daemon's CURVE public key: a .pub or .key file, or the\n"       \
  "                        40-character Z85 key (default $TTQ_SERVER_KEY); turns CURVE on\n"  \
  "  --key FILE            this client's key pair, a .key file from `ttq keygen --out`\n"    \
  "                        (default $TTQ_KEY); without it an ephemeral pair is used\n"        \
  "  --verbose             debug lines on stderr (connection events, ignored answers)\n"    \
  "  -h, --help            this text\n"

typedef struct {
  const char *endpoint;
  double timeout_s;      /* connection plus first answer, > 0 */
  double idle_timeout_s; /* between streamed answers, > 0 */
  int retries;           /* 0..10 */
  const char *server_key; /* as given: a file or a Z85 key; NULL = no CURVE */
  const char *key;        /* a .key file; NULL = ephemeral when server_key is set */
  bool verbose;
  bool fail_fast;         /* give up at the first refused connection (health: a probe) */
} ttqc_common;

/* Defaults: endpoint from $TTQ_ENDPOINT, keys from $TTQ_SERVER_KEY / $TTQ_KEY (empty = unset),
 * the given timeout and retries, idle timeout 60 s. */
void ttqc_common_init(ttqc_common *c, double timeout_s, int retries);
/* Handles one common option: 1 handled, 0 not a common option, TTQC_E_USAGE on a bad value. */
int ttqc_common_opt(const char *cmd, int code, const char *arg, ttqc_common *c);

/* ---- ids, clocks, I/O ---- */
/* Fills buf with n random bytes (getrandom); 0 or TTQC_E_FAIL. Thread-safe. */
int ttqc_random(void *buf, size_t n);
/* A fresh request id: 16 lowercase hex characters and a NUL. */
int ttqc_new_id(char out[17]);
double ttqc_now_ms(void);
/* Reads a whole stream or file into a NUL-terminated malloc'd buffer (caller frees). */
int ttqc_read_stream(FILE *f, char **out, size_t *len);
int ttqc_read_file(const char *path, char **out, size_t *len, ttqc_err *err);

/* ---- commands (cmd_*.c): argv[0] is the command name; each returns the process exit code.
 * sig points at main's signal flag: the number of the last SIGINT/SIGTERM, 0 = none. ---- */
int ttqc_cmd_generate(int argc, char **argv, volatile sig_atomic_t *sig);
int ttqc_cmd_chat(int argc, char **argv, volatile sig_atomic_t *sig);
int ttqc_cmd_bench(int argc, char **argv, volatile sig_atomic_t *sig);
int ttqc_cmd_health(int argc, char **argv, volatile sig_atomic_t *sig);
int ttqc_cmd_stats(int argc, char **argv, volatile sig_atomic_t *sig);
int ttqc_cmd_cancel(int argc, char **argv, volatile sig_atomic_t *sig);
int ttqc_cmd_keygen(int argc, char **argv, volatile sig_atomic_t *sig);

#endif
