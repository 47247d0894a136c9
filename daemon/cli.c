/* cli.c -- option parsing and small helpers shared by the ttqd subcommands. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include <unistd.h>

int ttqd_parse_int(const char *cmd, const char *flag, const char *val, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(val, &end, 10);
  if (errno || end == val || *end) {
    fprintf(stderr, "ttqd %s: %s: '%s' is not an integer\n", cmd, flag, val);
    return -1;
  }
  if (v < lo || v > hi) {
    fprintf(stderr, "ttqd %s: %s: %ld is out of range [%ld, %ld]\n", cmd, flag, v, lo, hi);
    return -1;
  }
  *out = v;
  return 0;
}

int ttqd_parse_float(const char *cmd, const char *flag, const char *val, double lo, double hi,
                     double *out) {
  char *end;
  errno = 0;
  double v = strtod(val, &end);
  if (errno || end == val || *end || !isfinite(v)) {
    fprintf(stderr, "ttqd %s: %s: '%s' is not a number\n", cmd, flag, val);
    return -1;
  }
  if (v < lo || v > hi) {
    fprintf(stderr, "ttqd %s: %s: %g is out of range [%g, %g]\n", cmd, flag, v, lo, hi);
    return -1;
  }
  *out = v;
  return 0;
}

int ttqd_parse_u64(const char *cmd, const char *flag, const char *val, uint64_t *out) {
  char *end;
  errno = 0;
  if (*val == '-') {
    fprintf(stderr, "ttqd %s: %s: '%s' must not be negative\n", cmd, flag, val);
    return -1;
  }
  unsigned long long v = strtoull(val, &end, 10);
  if (errno || end == val || *end) {
    fprintf(stderr, "ttqd %s: %s: '%s' is not an unsigned integer\n", cmd, flag, val);
    return -1;
  }
  *out = v;
  return 0;
}

ttq_model *ttqd_load_model(const char *cmd, const char *path) {
  if (!path) {
    fprintf(stderr, "ttqd %s: --model PATH is required\n", cmd);
    return NULL;
  }
  ttq_model *m = NULL;
  ttq_diag d = {0};
  int rc = ttq_model_load(path, &m, &d);
  if (rc) {
    fprintf(stderr, "ttqd %s: cannot load model: %s\n", cmd, d.msg[0] ? d.msg : ttq_strerror(rc));
    return NULL;
  }
  return m;
}

int ttqd_tp_align(int group) {
  int a = group, b = 32;
  while (b) {
    int t = a % b;
    a = b;
    b = t;
  }
  return group / a * 32;
}

double ttqd_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int ttqd_default_threads(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

char *ttqd_read_stdin(size_t *len) {
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap + 1);
  while (buf) {
    size_t r = fread(buf + n, 1, cap - n, stdin);
    n += r;
    if (r == 0) break;
    if (n == cap) {
      char *nb = realloc(buf, (cap *= 2) + 1);
      if (!nb) free(buf);
      buf = nb;
    }
  }
  if (!buf || ferror(stdin)) {
    free(buf);
    return NULL;
  }
  buf[n] = 0;
  if (len) *len = n;
  return buf;
}

ttq_engine_opts ttqd_engine_defaults(void) {
  ttq_engine_opts o;
  memset(&o, 0, sizeof o);
  o.q = ttq_qcfg_default();
  o.q.method = TTQ_METHOD_FP;
  o.kv = TTQ_F16; /* the tools' default; the engine's zero value is f32 (docs/QUALITY.md) */
  return o;
}

int ttqd_quant_opt(const char *cmd, int c, const char *arg, ttq_engine_opts *o) {
  long v;
  double f;
  switch (c) {
  case TTQD_OPT_QUANT:
    if (ttq_method_parse(arg, &o->q.method)) {
      fprintf(stderr, "ttqd %s: --quant: '%s' is not one of fp, rtn, awq, ttq\n", cmd, arg);
      return -1;
    }
    return 1;
  case TTQD_OPT_BITS:
    if (ttqd_parse_int(cmd, "--bits", arg, 2, 8, &v)) return -1;
    if (v == 6 || v == 7) {
      fprintf(stderr, "ttqd %s: --bits: %ld is not one of 2, 3, 4, 5, 8\n", cmd, v);
      return -1;
    }
    o->q.bits = (int)v;
    return 1;
  case TTQD_OPT_GROUP:
    if (ttqd_parse_int(cmd, "--group", arg, 8, 1024, &v)) return -1;
    o->q.group = (int)v;
    return 1;
  case TTQD_OPT_RANK:
    if (ttqd_parse_int(cmd, "--rank", arg, 0, 4096, &v)) return -1;
    o->q.rank = (int)v;
    return 1;
  case TTQD_OPT_ALPHA:
    if (ttqd_parse_float(cmd, "--alpha", arg, 0, 4, &f)) return -1;
    o->q.alpha = (float)f;
    return 1;
  case TTQD_OPT_LAMBDA:
    if (ttqd_parse_float(cmd, "--lambda", arg, 0, 1e6, &f)) return -1;
    o->q.lambda = (float)f;
    return 1;
  case TTQD_OPT_SUM: o->q.mean = false; return 1;
  case TTQD_OPT_CALIB: o->calib_path = arg; return 1;
  case TTQD_OPT_HEAD_BITS:
    if (ttqd_parse_int(cmd, "--head-bits", arg, 0, 8, &v)) return -1;
    if (v == 1 || v == 6 || v == 7) {
      fprintf(stderr, "ttqd %s: --head-bits: %ld is not one of 0, 2, 3, 4, 5, 8\n", cmd, v);
      return -1;
    }
    o->q.head_bits = (int)v;
    return 1;
  case TTQD_OPT_KV_CACHE:
    if (strcmp(arg, "f32") && strcmp(arg, "f16")) {
      fprintf(stderr, "ttqd %s: --kv-cache: '%s' is not one of f32, f16\n", cmd, arg);
      return -1;
    }
    o->kv = strcmp(arg, "f16") ? TTQ_F32 : TTQ_F16;
    return 1;
  case TTQD_OPT_SEARCH:
    if (ttqd_parse_int(cmd, "--search", arg, 0, 64, &v)) return -1;
    o->q.search = (int)v;
    return 1;
  default: return 0;
  }
}
