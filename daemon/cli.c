/* cli.c -- option parsing and small helpers shared by the ttqd subcommands. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
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
