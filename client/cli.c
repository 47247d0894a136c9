/* cli.c -- shared helpers of the ttq commands: errors and exit codes, range-checked parsing,
 * the common connection options, random request ids, the monotonic clock, whole-file reads.
 * Invariant: nothing here keeps state between calls; every function is thread-safe except
 * the option parsers (which only print). */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

int ttqc_fail(ttqc_err *e, int rc, const char *fmt, ...) {
  if (e) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
  }
  return rc;
}

int ttqc_exit_code(int rc) {
  switch (rc) {
  case 0: return TTQC_EXIT_OK;
  case TTQC_E_USAGE: return TTQC_EXIT_USAGE;
  case TTQC_E_UNAVAILABLE:
  case TTQC_E_TIMEOUT:
  case TTQC_E_UNREACHABLE: return TTQC_EXIT_UNAVAILABLE;
  case TTQC_E_INVALID: return TTQC_EXIT_INVALID;
  case TTQC_E_EXHAUSTED: return TTQC_EXIT_EXHAUSTED;
  case TTQC_E_CANCELLED: return TTQC_EXIT_CANCELLED;
  case TTQC_E_AUTH: return TTQC_EXIT_AUTH;
  case TTQC_E_INTR: return TTQC_EXIT_INTERRUPTED;
  default: return TTQC_EXIT_FAIL;
  }
}

const char *ttqc_code_name(int code, char *buf, size_t n) {
  switch (code) {
  case 1: return "INVALID_ARGUMENT";
  case 2: return "RESOURCE_EXHAUSTED";
  case 3: return "UNAVAILABLE";
  case 4: return "CANCELLED";
  case 5: return "INTERNAL";
  default: snprintf(buf, n, "code %d", code); return buf;
  }
}

int ttqc_rc_for_code(int code) {
  switch (code) {
  case 1: return TTQC_E_INVALID;
  case 2: return TTQC_E_EXHAUSTED;
  case 3: return TTQC_E_UNAVAILABLE;
  case 4: return TTQC_E_CANCELLED;
  default: return TTQC_E_FAIL; /* INTERNAL and codes this client does not know */
  }
}

const char *ttqc_rc_code_name(int rc) {
  switch (ttqc_exit_code(rc)) {
  case TTQC_EXIT_UNAVAILABLE: return "UNAVAILABLE";
  case TTQC_EXIT_INVALID: return "INVALID_ARGUMENT";
  case TTQC_EXIT_EXHAUSTED: return "RESOURCE_EXHAUSTED";
  case TTQC_EXIT_CANCELLED:
  case TTQC_EXIT_INTERRUPTED: return "CANCELLED";
  case TTQC_EXIT_AUTH: return "UNAUTHENTICATED";
  default: return "INTERNAL";
  }
}

int ttqc_parse_long(const char *cmd, const char *flag, const char *val, long lo, long hi,
                    long *out) {
  char *end;
  errno = 0;
  long v = strtol(val, &end, 10);
  if (errno == ERANGE || end == val || *end || isspace((unsigned char)*val)) {
    fprintf(stderr, "ttq %s: %s: '%s' is not an integer\n", cmd, flag, val);
    return TTQC_E_USAGE;
  }
  if (v < lo || v > hi) {
    fprintf(stderr, "ttq %s: %s: %ld is out of range [%ld, %ld]\n", cmd, flag, v, lo, hi);
    return TTQC_E_USAGE;
  }
  *out = v;
  return 0;
}

int ttqc_parse_double(const char *cmd, const char *flag, const char *val, double lo, double hi,
                      bool lo_open, double *out) {
  char *end;
  errno = 0;
  double v = strtod(val, &end);
  if (errno == ERANGE || end == val || *end || !isfinite(v) || isspace((unsigned char)*val)) {
    fprintf(stderr, "ttq %s: %s: '%s' is not a number\n", cmd, flag, val);
    return TTQC_E_USAGE;
  }
  if ((lo_open ? v <= lo : v < lo) || v > hi) {
    fprintf(stderr, "ttq %s: %s: %g is out of range %c%g, %g]\n", cmd, flag, v,
            lo_open ? '(' : '[', lo, hi);
    return TTQC_E_USAGE;
  }
  *out = v;
  return 0;
}

int ttqc_parse_u64(const char *cmd, const char *flag, const char *val, uint64_t *out) {
  char *end;
  errno = 0;
  if (!isdigit((unsigned char)*val)) {
    fprintf(stderr, "ttq %s: %s: '%s' is not an unsigned integer\n", cmd, flag, val);
    return TTQC_E_USAGE;
  }
  unsigned long long v = strtoull(val, &end, 10);
  if (errno == ERANGE || *end) {
    fprintf(stderr, "ttq %s: %s: '%s' is not an unsigned 64-bit integer\n", cmd, flag, val);
    return TTQC_E_USAGE;
  }
  *out = v;
  return 0;
}

int ttqc_parse_id(const char *cmd, const char *flag, const char *val) {
  size_t n = strlen(val);
  bool ok = n >= 1 && n <= 64;
  for (size_t i = 0; ok && i < n; i++) ok = val[i] > 0x20 && val[i] <= 0x7e;
  if (!ok) {
    fprintf(stderr, "ttq %s: %s: a request id is 1..64 printable ASCII characters, no spaces\n",
            cmd, flag);
    return TTQC_E_USAGE;
  }
  return 0;
}

void ttqc_bad_option(const char *cmd, int c, int optopt_, const char *arg) {
  if (c == ':')
    fprintf(stderr, "ttq %s: option '%s' needs a value (see ttq %s --help)\n", cmd, arg, cmd);
  else if (optopt_ && optopt_ < 256)
    fprintf(stderr, "ttq %s: unknown option '-%c' (see ttq %s --help)\n", cmd, optopt_, cmd);
  else
    fprintf(stderr, "ttq %s: unknown option '%s' (see ttq %s --help)\n", cmd, arg, cmd);
}

static const char *env_or_null(const char *name) {
  const char *v = getenv(name);
  return v && *v ? v : NULL;
}

void ttqc_common_init(ttqc_common *c, double timeout_s, int retries) {
  memset(c, 0, sizeof *c);
  c->endpoint = env_or_null("TTQ_ENDPOINT");
  if (!c->endpoint) c->endpoint = TTQC_DEFAULT_ENDPOINT;
  c->server_key = env_or_null("TTQ_SERVER_KEY");
  c->key = env_or_null("TTQ_KEY");
  c->timeout_s = timeout_s;
  c->idle_timeout_s = 60;
  c->retries = retries;
}

int ttqc_common_opt(const char *cmd, int code, const char *arg, ttqc_common *c) {
  long v;
  switch (code) {
  case TTQC_OPT_ENDPOINT:
    if (!*arg) {
      fprintf(stderr, "ttq %s: --endpoint: empty\n", cmd);
      return TTQC_E_USAGE;
    }
    c->endpoint = arg;
    return 1;
  case TTQC_OPT_TIMEOUT:
    return ttqc_parse_double(cmd, "--timeout", arg, 0, 86400, true, &c->timeout_s) ? TTQC_E_USAGE
                                                                                      : 1;
  case TTQC_OPT_IDLE_TIMEOUT:
    return ttqc_parse_double(cmd, "--idle-timeout", arg, 0, 86400, true, &c->idle_timeout_s)
               ? TTQC_E_USAGE
               : 1;
  case TTQC_OPT_RETRIES:
    if (ttqc_parse_long(cmd, "--retries", arg, 0, 10, &v)) return TTQC_E_USAGE;
    c->retries = (int)v;
    return 1;
  case TTQC_OPT_SERVER_KEY: c->server_key = *arg ? arg : NULL; return 1;
  case TTQC_OPT_KEY: c->key = *arg ? arg : NULL; return 1;
  case TTQC_OPT_VERBOSE: c->verbose = true; return 1;
  default: return 0;
  }
}

int ttqc_random(void *buf, size_t n) {
  unsigned char *p = buf;
  while (n) {
    ssize_t r = getrandom(p, n, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return TTQC_E_FAIL;
    }
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

int ttqc_new_id(char out[17]) {
  static const char hex[] = "0123456789abcdef";
  unsigned char b[8];
  if (ttqc_random(b, sizeof b)) return TTQC_E_FAIL;
  for (int i = 0; i < 8; i++) {
    out[2 * i] = hex[b[i] >> 4];
    out[2 * i + 1] = hex[b[i] & 15];
  }
  out[16] = 0;
  return 0;
}

double ttqc_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int ttqc_read_stream(FILE *f, char **out, size_t *len) {
  size_t cap = 1 << 14, n = 0;
  char *buf = malloc(cap + 1);
  if (!buf) return TTQC_E_FAIL;
  for (;;) {
    size_t r = fread(buf + n, 1, cap - n, f);
    n += r;
    if (r == 0) break;
    if (n == cap) {
      char *nb = realloc(buf, (cap *= 2) + 1);
      if (!nb) {
        free(buf);
        return TTQC_E_FAIL;
      }
      buf = nb;
    }
  }
  if (ferror(f)) {
    free(buf);
    return TTQC_E_FAIL;
  }
  buf[n] = 0;
  *out = buf;
  if (len) *len = n;
  return 0;
}

int ttqc_read_file(const char *path, char **out, size_t *len, ttqc_err *err) {
  FILE *f = fopen(path, "rb");
  if (!f) return ttqc_fail(err, TTQC_E_FAIL, "cannot open %s: %s", path, strerror(errno));
  int rc = ttqc_read_stream(f, out, len);
  int saved = errno;
  fclose(f);
  if (rc) return ttqc_fail(err, TTQC_E_FAIL, "cannot read %s: %s", path, strerror(saved));
  return 0;
}
