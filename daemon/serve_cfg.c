/* serve_cfg.c -- settings of `ttqd serve` from the config file and flags; see serve_cfg.h. */
#include "serve_cfg.h"

#include <ctype.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef enum { S_STR, S_BOOL, S_LONG, S_DBL, S_QUANT } setting_kind;

typedef struct setting {
  const char *name;
  setting_kind kind;
  size_t off;       /* offset in ttqd_serve_cfg (not for S_QUANT) */
  double lo, hi;    /* range for S_LONG and S_DBL */
  int quant_code;   /* TTQD_OPT_* for S_QUANT */
  const char *help;
} setting;

#define OFF(f) offsetof(ttqd_serve_cfg, f)
static const setting settings[] = {
    {"model", S_STR, OFF(model), 0, 0, 0, "model: Hugging Face directory or GGUF file (required)"},
    {"listen", S_STR, OFF(listen), 0, 0, 0, "client endpoint (default tcp://127.0.0.1:5555)"},
    {"metrics-listen", S_STR, OFF(metrics_listen), 0, 0, 0,
     "HTTP endpoint for GET /metrics and /healthz, e.g. tcp://127.0.0.1:9090 (default off)"},
    {"allow-insecure", S_BOOL, OFF(allow_insecure), 0, 0, 0,
     "allow a non-loopback listen without CURVE keys"},
    {"curve-secret-key", S_STR, OFF(curve_secret_key), 0, 0, 0,
     "the daemon's key-pair file (ttq keygen --out): turns on CURVE"},
    {"curve-authorized-keys", S_STR, OFF(curve_authorized_keys), 0, 0, 0,
     "file of client public keys (Z85, one per line); required with CURVE"},
    {"pid-file", S_STR, OFF(pid_file), 0, 0, 0, "rank 0 writes its pid here"},
    {"threads", S_LONG, OFF(threads), 0, 1024, 0, "compute threads per rank, 0 = all cores (default 0)"},
    {"memory-limit-mb", S_LONG, OFF(memory_limit_mb), 0, 1L << 30, 0,
     "refuse to start when a rank would need more (MiB); 0 = the cgroup limit, if any (default 0)"},
    {"queue-depth", S_LONG, OFF(queue_depth), 1, 100000, 0, "requests waiting (default 16)"},
    {"max-message-bytes", S_LONG, OFF(max_message_bytes), 1024, 1 << 30, 0,
     "largest request frame (default 1048576)"},
    {"max-prompt-tokens", S_LONG, OFF(max_prompt_tokens), 0, 1 << 24, 0,
     "prompt length limit, 0 = the model's context - 1 (default 0)"},
    {"max-tokens", S_LONG, OFF(max_tokens), 1, 1 << 24, 0, "cap on generated tokens (default 1024)"},
    {"default-max-tokens", S_LONG, OFF(default_max_tokens), 1, 1 << 24, 0,
     "generated tokens when the request gives none (default 128)"},
    {"deadline-ms", S_LONG, OFF(deadline_ms), 1, 86400000, 0,
     "per-request deadline from arrival (default 300000)"},
    {"grace-ms", S_LONG, OFF(grace_ms), 0, 3600000, 0, "SIGTERM drain period (default 30000)"},
    {"stall-timeout-ms", S_LONG, OFF(stall_timeout_ms), 100, 86400000, 0,
     "no progress from the ranks for this long: the running request gets UNAVAILABLE (default 60000)"},
    {"stall-exit-ms", S_LONG, OFF(stall_exit_ms), 0, 86400000, 0,
     "still no progress after this long: exit 75 so the supervisor restarts the job; 0 = never "
     "(default 300000)"},
    {"temperature", S_DBL, OFF(temperature), 0, 100, 0, "default temperature (default 0.8)"},
    {"top-k", S_LONG, OFF(top_k), 0, 1 << 24, 0, "default top-k (default 40)"},
    {"top-p", S_DBL, OFF(top_p), 1e-9, 1, 0, "default top-p (default 0.95)"},
    {"log-level", S_LONG, OFF(log_level), 0, 2, 0, "0 quiet, 1 one line per request, 2 debug (default 1)"},
    {"debug-step-delay-ms", S_LONG, OFF(step_delay_ms), 0, 60000, 0,
     "testing only: sleep this long before every decode step (default 0)"},
    {"quant", S_QUANT, 0, 0, 0, TTQD_OPT_QUANT, "default method: fp | rtn | awq | ttq (default ttq)"},
    {"bits", S_QUANT, 0, 0, 0, TTQD_OPT_BITS, "default bits: 2, 3, 4, 5, 8 (default 4)"},
    {"group", S_QUANT, 0, 0, 0, TTQD_OPT_GROUP, "default group (default 32)"},
    {"rank", S_QUANT, 0, 0, 0, TTQD_OPT_RANK, "default TTQ(r) rank (default 0)"},
    {"alpha", S_QUANT, 0, 0, 0, TTQD_OPT_ALPHA, "default alpha (default 0.5)"},
    {"lambda", S_QUANT, 0, 0, 0, TTQD_OPT_LAMBDA, "default lambda (default 0.4)"},
    {"sum", S_QUANT, 0, 0, 0, TTQD_OPT_SUM, "D from the sum of squares instead of the mean"},
    {"calib", S_QUANT, 0, 0, 0, TTQD_OPT_CALIB, "AWQ calibration file (for quant awq)"},
    {"head-bits", S_QUANT, 0, 0, 0, TTQD_OPT_HEAD_BITS,
     "output head: 2, 3, 4, 5, 8 bits (round to nearest) or 0 = unquantized (default 8)"},
    {"kv-cache", S_QUANT, 0, 0, 0, TTQD_OPT_KV_CACHE,
     "KV cache type: f16 | f32 (f16: half the bytes per token of context; default f16)"},
};
#define N_SETTINGS (sizeof settings / sizeof *settings)

static void defaults(ttqd_serve_cfg *c) {
  memset(c, 0, sizeof *c);
  c->queue_depth = 16;
  c->max_message_bytes = 1 << 20;
  c->max_tokens = 1024;
  c->default_max_tokens = 128;
  c->deadline_ms = 300000;
  c->grace_ms = 30000;
  c->stall_timeout_ms = 60000;
  c->stall_exit_ms = 300000;
  c->temperature = 0.8;
  c->top_k = 40;
  c->top_p = 0.95;
  c->log_level = TTQD_LOG_INFO;
  c->eo = ttqd_engine_defaults();
  c->eo.q.method = TTQ_METHOD_TTQ;
}

static char *keep(ttqd_serve_cfg *c, const char *s) {
  if (c->n_strings == (int)(sizeof c->strings / sizeof *c->strings)) return NULL;
  char *p = strdup(s);
  if (p) c->strings[c->n_strings++] = p;
  return p;
}

static int parse_bool(const char *v, bool *out) {
  static const char *const t[] = {"1", "true", "yes", "on"}, *const f[] = {"0", "false", "no", "off"};
  for (int i = 0; i < 4; i++) {
    if (!strcasecmp(v, t[i])) return *out = true, 0;
    if (!strcasecmp(v, f[i])) return *out = false, 0;
  }
  return -1;
}

/* Applies one setting; `where` names the source for messages ("--threads" or "FILE:LINE: threads"). */
static int apply(ttqd_serve_cfg *c, const setting *s, const char *val, const char *where) {
  char *base = (char *)c;
  switch (s->kind) {
  case S_STR:
    if (!*val) {
      fprintf(stderr, "ttqd serve: %s: empty value\n", where);
      return -1;
    }
    if (!(*(char **)(base + s->off) = keep(c, val))) {
      fprintf(stderr, "ttqd serve: %s: out of memory\n", where);
      return -1;
    }
    return 0;
  case S_BOOL:
    if (!val) return *(bool *)(base + s->off) = true, 0;
    if (parse_bool(val, (bool *)(base + s->off))) {
      fprintf(stderr, "ttqd serve: %s: '%s' is not true or false\n", where, val);
      return -1;
    }
    return 0;
  case S_LONG:
    return ttqd_parse_int("serve", where, val, (long)s->lo, (long)s->hi, (long *)(base + s->off));
  case S_DBL:
    return ttqd_parse_float("serve", where, val, s->lo, s->hi, (double *)(base + s->off));
  case S_QUANT:
    if (s->quant_code == TTQD_OPT_SUM) {
      bool on = true;
      if (val && parse_bool(val, &on)) {
        fprintf(stderr, "ttqd serve: %s: '%s' is not true or false\n", where, val);
        return -1;
      }
      c->eo.q.mean = !on;
      return 0;
    }
    if (s->quant_code == TTQD_OPT_CALIB) {
      char *p = keep(c, val);
      if (!p) return -1;
      c->eo.calib_path = p;
      return 0;
    }
    return ttqd_quant_opt("serve", s->quant_code, val, &c->eo) == 1 ? 0 : -1;
  }
  return -1;
}

static const setting *find(const char *name) {
  for (size_t i = 0; i < N_SETTINGS; i++)
    if (!strcmp(settings[i].name, name)) return &settings[i];
  return NULL;
}

static char *trim(char *s) {
  while (isspace((unsigned char)*s)) s++;
  char *e = s + strlen(s);
  while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
  return s;
}

static int load_file(ttqd_serve_cfg *c, const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "ttqd serve: --config: cannot open %s: %m\n", path);
    return -1;
  }
  char line[4096];
  int ln = 0, rc = 0;
  while (rc == 0 && fgets(line, sizeof line, f)) {
    ln++;
    if (!strchr(line, '\n') && !feof(f)) {
      fprintf(stderr, "ttqd serve: %s:%d: line longer than %zu bytes\n", path, ln, sizeof line - 2);
      rc = -1;
      break;
    }
    char *hash = strchr(line, '#');
    if (hash) *hash = '\0';
    char *s = trim(line);
    if (!*s) continue;
    char *eq = strchr(s, '=');
    if (!eq) {
      fprintf(stderr, "ttqd serve: %s:%d: expected 'key = value', got '%s'\n", path, ln, s);
      rc = -1;
      break;
    }
    *eq = '\0';
    char *key = trim(s), *val = trim(eq + 1);
    const setting *st = find(key);
    char where[600];
    snprintf(where, sizeof where, "%s:%d: %s", path, ln, key);
    if (!st || !strcmp(key, "config")) {
      fprintf(stderr, "ttqd serve: %s:%d: unknown setting '%s' (see ttqd serve --help)\n", path, ln,
              key);
      rc = -1;
    } else if (!*val) {
      fprintf(stderr, "ttqd serve: %s: empty value\n", where);
      rc = -1;
    } else {
      rc = apply(c, st, val, where);
    }
  }
  fclose(f);
  return rc;
}

static void usage(FILE *out) {
  fputs("usage: ttqd serve --model PATH [--config FILE] [--SETTING VALUE]...\n"
        "       mpirun -np N ttqd serve ...   (N tensor-parallel ranks; rank 0 serves)\n"
        "Every setting is a flag and a config-file line 'SETTING = VALUE' ('#' comments);\n"
        "flags override the file. Settings:\n",
        out);
  for (size_t i = 0; i < N_SETTINGS; i++)
    fprintf(out, "  --%-22s %s\n", settings[i].name, settings[i].help);
  fputs("  --config FILE            read settings from FILE first\n", out);
}

int ttqd_serve_cfg_parse(ttqd_serve_cfg *c, int argc, char **argv) {
  defaults(c);
  struct option opts[N_SETTINGS + 3];
  for (size_t i = 0; i < N_SETTINGS; i++) {
    bool flag = settings[i].kind == S_BOOL || settings[i].quant_code == TTQD_OPT_SUM;
    opts[i] = (struct option){settings[i].name, flag ? no_argument : required_argument, 0,
                              1000 + (int)i};
  }
  opts[N_SETTINGS] = (struct option){"config", required_argument, 0, 'c'};
  opts[N_SETTINGS + 1] = (struct option){"help", no_argument, 0, 'h'};
  opts[N_SETTINGS + 2] = (struct option){0, 0, 0, 0};
  /* First pass: --config and --help only, so the file is read before the flags. */
  const char *config = NULL;
  int ch;
  optind = 1;
  opterr = 0;
  while ((ch = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
    if (ch == 'c') config = optarg;
    if (ch == 'h') {
      usage(stdout);
      return 1;
    }
  }
  opterr = 1;
  if (config && load_file(c, config)) return -1;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
    if (ch == 'c') continue;
    if (ch < 1000 || ch >= 1000 + (int)N_SETTINGS) {
      usage(stderr);
      return -1;
    }
    const setting *st = &settings[ch - 1000];
    char where[64];
    snprintf(where, sizeof where, "--%s", st->name);
    if (apply(c, st, optarg, where)) return -1;
  }
  if (optind != argc) {
    fprintf(stderr, "ttqd serve: unexpected argument '%s' (settings are --name value)\n",
            argv[optind]);
    return -1;
  }
  if (!c->model) {
    fprintf(stderr, "ttqd serve: no model: give --model PATH or 'model = PATH' in --config\n");
    return -1;
  }
  if (!c->listen && !(c->listen = keep(c, "tcp://127.0.0.1:5555"))) return -1;
  if (c->default_max_tokens > c->max_tokens) {
    fprintf(stderr, "ttqd serve: default-max-tokens = %ld exceeds max-tokens = %ld\n",
            c->default_max_tokens, c->max_tokens);
    return -1;
  }
  if (c->curve_secret_key && !c->curve_authorized_keys) {
    fprintf(stderr, "ttqd serve: curve-secret-key is set but curve-authorized-keys is not: "
                    "list the client public keys allowed in\n");
    return -1;
  }
  if (!c->curve_secret_key && c->curve_authorized_keys) {
    fprintf(stderr, "ttqd serve: curve-authorized-keys is set but curve-secret-key is not\n");
    return -1;
  }
  if (!c->curve_secret_key && !c->allow_insecure && !ttqd_endpoint_is_local(c->listen)) {
    fprintf(stderr,
            "ttqd serve: refusing to listen on %s without CURVE keys: anyone who can reach it "
            "could use the daemon. Configure curve-secret-key and curve-authorized-keys, or pass "
            "--allow-insecure\n",
            c->listen);
    return -1;
  }
  if (c->metrics_listen && !c->allow_insecure && !ttqd_endpoint_is_local(c->metrics_listen)) {
    fprintf(stderr,
            "ttqd serve: refusing metrics-listen on %s (not loopback; the metrics port has no "
            "authentication): pass --allow-insecure to expose it\n",
            c->metrics_listen);
    return -1;
  }
  return 0;
}

void ttqd_serve_cfg_free(ttqd_serve_cfg *c) {
  for (int i = 0; i < c->n_strings; i++) free(c->strings[i]);
  c->n_strings = 0;
}

int ttqd_endpoint_is_local(const char *ep) {
  if (!strncmp(ep, "ipc://", 6) || !strncmp(ep, "inproc://", 9)) return 1;
  if (strncmp(ep, "tcp://", 6)) return 0;
  const char *h = ep + 6;
  const char *colon = strrchr(h, ':');
  if (!colon) return 0;
  size_t n = (size_t)(colon - h);
  if (n >= 5 && !strncmp(h, "[::1]", 5) && n == 5) return 1;
  if (n == 9 && !strncmp(h, "localhost", 9)) return 1;
  if (n >= 4 && !strncmp(h, "127.", 4)) {
    for (size_t i = 4; i < n; i++)
      if (!isdigit((unsigned char)h[i]) && h[i] != '.') return 0;
    return 1;
  }
  return 0;
}
