/* serve_cfg.h -- the settings of `ttqd serve`: one table of named settings, each readable
 * from the config file (`key = value`) and from a flag of the same name (`--key value`).
 * Flags override the file. docs/PROTOCOL.md and `ttqd serve --help` list every setting.
 *
 * Invariant after ttqd_serve_cfg_parse() returns 0: every value is within its documented
 * range and the combination is consistent (e.g. default-max-tokens <= max-tokens); checks that
 * need the model (group divides the widths, prompt limit <= context) happen after loading. */
#ifndef TTQD_SERVE_CFG_H
#define TTQD_SERVE_CFG_H

#include <stdbool.h>
#include <stdint.h>

#include "engine.h"

enum { TTQD_LOG_QUIET = 0, TTQD_LOG_INFO = 1, TTQD_LOG_DEBUG = 2 };

typedef struct ttqd_serve_cfg {
  char *model;                 /* model path (required) */
  char *listen;                /* ZeroMQ endpoint of the ROUTER socket */
  char *metrics_listen;        /* ZeroMQ STREAM endpoint for HTTP /metrics, NULL = off */
  bool allow_insecure;         /* permit a non-loopback listen without CURVE */
  char *curve_secret_key;      /* key-pair file (ttq keygen --out), NULL = no CURVE */
  char *curve_authorized_keys; /* client public keys, one Z85 per line */
  char *pid_file;              /* rank 0 writes its pid here, NULL = none */
  long threads;                /* compute threads per rank; 0 = all cores */
  long memory_limit_mb;        /* per rank; 0 = the cgroup's memory.max, if any */
  long queue_depth;            /* requests waiting, the running one excluded */
  long max_message_bytes;      /* largest request frame answered (bytes) */
  long max_prompt_tokens;      /* 0 = the model's context - 1 */
  long max_tokens;             /* cap on generated tokens per request */
  long default_max_tokens;     /* when the request gives none */
  long deadline_ms;            /* arrival to the last token, per request */
  long grace_ms;               /* SIGTERM: time given to queued and running requests */
  long stall_timeout_ms;       /* no progress from the ranks this long: answer UNAVAILABLE */
  long stall_exit_ms;          /* ... and this long: rank 0 exits (75) for a restart; 0 = never */
  double temperature, top_p;   /* sampling defaults */
  long top_k;
  long log_level;              /* TTQD_LOG_* */
  long step_delay_ms;          /* fault injection for tests: sleep before each decode step */
  ttq_engine_opts eo;          /* quantization defaults (eo.q, eo.calib_path) */
  char *strings[16];           /* every string above is one of these; freed by _free */
  int n_strings;
} ttqd_serve_cfg;

/* Parses argv (argv[0] = "serve") and the --config file it names. Returns 0, 1 when --help
 * was printed, or -1 after printing "ttqd serve: <reason>" (file:line for the file). */
int ttqd_serve_cfg_parse(ttqd_serve_cfg *c, int argc, char **argv);
void ttqd_serve_cfg_free(ttqd_serve_cfg *c);

/* 1 when a ZeroMQ endpoint only accepts local peers (tcp on a loopback address, ipc, inproc). */
int ttqd_endpoint_is_local(const char *endpoint);

#endif
