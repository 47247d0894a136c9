/* keys.c -- CURVE key files (format in keys.h): generation, writing with safe modes, reading
 * and validating. Invariants: a key handed out is always 40 valid Z85 characters; a pair read
 * from a file always has a public key matching its secret key; files are read whole, at most
 * 64 KiB; the secret key never appears in an error message. */
#include "keys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#define MAX_KEY_FILE (64 * 1024)

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return -1;
}

bool ttq_key_is_z85(const char *s) {
  if (!s || strlen(s) != TTQ_KEY_Z85_LEN) return false;
  uint8_t bin[32];
  return zmq_z85_decode(bin, s) != NULL;
}

int ttq_keys_generate(ttq_keypair *kp, char *err, size_t errlen) {
  if (!zmq_has("curve") || zmq_curve_keypair(kp->pub, kp->sec) != 0)
    return fail(err, errlen, "this ZeroMQ library has no CURVE support");
  return 0;
}

/* Writes all of text to a new file; mode is applied even when the file existed (force). */
static int write_file(const char *path, const char *text, mode_t mode, bool force, char *err,
                      size_t errlen) {
  int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (force ? O_TRUNC : O_EXCL), mode);
  if (fd < 0) return fail(err, errlen, "cannot create %s: %s", path, strerror(errno));
  size_t n = strlen(text), off = 0;
  int rc = fchmod(fd, mode);
  while (rc == 0 && off < n) {
    ssize_t w = write(fd, text + off, n - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) rc = -1;
    else off += (size_t)w;
  }
  if (rc == 0 && fsync(fd) != 0 && errno != EINVAL) rc = -1;
  int saved = errno;
  if (close(fd) != 0 && rc == 0) {
    rc = -1;
    saved = errno;
  }
  if (rc) return fail(err, errlen, "cannot write %s: %s", path, strerror(saved));
  return 0;
}

int ttq_keys_write(const char *prefix, const ttq_keypair *kp, bool force, char *err,
                    size_t errlen) {
  size_t n = strlen(prefix) + 5;
  char *kpath = malloc(n), *ppath = malloc(n);
  int rc = -1;
  if (!kpath || !ppath) {
    fail(err, errlen, "out of memory");
    goto out;
  }
  snprintf(kpath, n, "%s.key", prefix);
  snprintf(ppath, n, "%s.pub", prefix);
  if (!force) {
    const char *exists = access(kpath, F_OK) == 0 ? kpath : access(ppath, F_OK) == 0 ? ppath : 0;
    if (exists) {
      fail(err, errlen, "%s exists (use --force to overwrite)", exists);
      goto out;
    }
  }
  char text[2 * TTQ_KEY_Z85_LEN + 32];
  snprintf(text, sizeof text, "public %s\nsecret %s\n", kp->pub, kp->sec);
  if (write_file(kpath, text, 0600, force, err, errlen)) goto out;
  snprintf(text, sizeof text, "%s\n", kp->pub);
  if (write_file(ppath, text, 0644, force, err, errlen)) goto out;
  rc = 0;
out:
  free(kpath);
  free(ppath);
  return rc;
}

/* The keys found in a key file. */
typedef struct {
  char pub[TTQ_KEY_Z85_LEN + 1], sec[TTQ_KEY_Z85_LEN + 1], bare[TTQ_KEY_Z85_LEN + 1];
  int n_pub, n_sec, n_bare;
} keyfile;

/* Copies the next blank-delimited word of *p into w (at most cap-1 characters; longer words
 * are cut, which makes them fail the Z85 check) and advances *p. */
static void next_word(const char **p, char *w, size_t cap) {
  const char *s = *p;
  while (*s == ' ' || *s == '\t') s++;
  size_t n = 0;
  while (*s && *s != ' ' && *s != '\t') {
    if (n + 1 < cap) w[n++] = *s;
    s++;
  }
  w[n] = 0;
  *p = s;
}

static bool only_blanks(const char *s) {
  while (*s == ' ' || *s == '\t') s++;
  return *s == 0;
}

int ttq_keys_parse_line(const char *line, char pub[TTQ_KEY_Z85_LEN + 1]) {
  const char *p = line;
  char w[TTQ_KEY_Z85_LEN + 2];
  while (*p == ' ' || *p == '\t') p++;
  /* '#' can occur inside a Z85 key but never first: 32-bit groups encode to a first
   * character of at most '%' (index 82 of 85) */
  if (*p == 0 || *p == '#' || *p == '\r') return 0;
  next_word(&p, w, sizeof w);
  if (!strcmp(w, "public")) next_word(&p, w, sizeof w); /* a .key file's line */
  size_t n = strlen(w);
  if (n && w[n - 1] == '\r') w[n - 1] = 0;
  if (!ttq_key_is_z85(w)) return -1;
  memcpy(pub, w, TTQ_KEY_Z85_LEN + 1);
  return 1;
}

/* Parses the text of a key file into kf; -1 with the line number on a malformed line. */
static int parse_keyfile(const char *path, char *text, keyfile *kf, char *err, size_t errlen) {
  memset(kf, 0, sizeof *kf);
  int lineno = 0;
  for (char *line = text; line && *line;) {
    char *nl = strchr(line, '\n');
    if (nl) *nl = 0;
    lineno++;
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t')) line[--n] = 0;
    const char *p = line;
    while (*p == ' ' || *p == '\t') p++;
    if (*p && *p != '#') { /* a Z85 key never starts with '#' (see ttq_keys_parse_line) */
      char word[16], key[TTQ_KEY_Z85_LEN + 2];
      const char *q = p;
      next_word(&q, word, sizeof word);
      char *dst = NULL;
      int *count = NULL;
      if (!strcmp(word, "public")) dst = kf->pub, count = &kf->n_pub;
      else if (!strcmp(word, "secret")) dst = kf->sec, count = &kf->n_sec;
      if (dst) next_word(&q, key, sizeof key);
      else {
        q = p;
        next_word(&q, key, sizeof key);
        dst = kf->bare, count = &kf->n_bare;
      }
      if (!ttq_key_is_z85(key) || !only_blanks(q))
        return fail(err, errlen, "%s:%d: not a key line (expected 'public <Z85>', "
                    "'secret <Z85>' or a 40-character Z85 key)", path, lineno);
      memcpy(dst, key, TTQ_KEY_Z85_LEN + 1);
      (*count)++;
    }
    line = nl ? nl + 1 : NULL;
  }
  if (kf->n_pub > 1 || kf->n_sec > 1 || kf->n_bare > 1 || (kf->n_bare && kf->n_pub + kf->n_sec))
    return fail(err, errlen, "%s: more than one key of a kind", path);
  return 0;
}

static int load_keyfile(const char *path, keyfile *kf, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) return fail(err, errlen, "cannot open key file %s: %s", path, strerror(errno));
  char *text = malloc(MAX_KEY_FILE + 1);
  if (!text) {
    fclose(f);
    return fail(err, errlen, "out of memory");
  }
  size_t n = fread(text, 1, MAX_KEY_FILE + 1, f);
  int bad = ferror(f);
  fclose(f);
  int rc;
  if (bad) rc = fail(err, errlen, "cannot read key file %s", path);
  else if (n > MAX_KEY_FILE) rc = fail(err, errlen, "%s: too large for a key file", path);
  else if (memchr(text, 0, n)) rc = fail(err, errlen, "%s: not a text key file", path);
  else {
    text[n] = 0;
    rc = parse_keyfile(path, text, kf, err, errlen);
  }
  memset(text, 0, n < MAX_KEY_FILE ? n : MAX_KEY_FILE); /* the secret does not linger */
  free(text);
  return rc;
}

int ttq_keys_read_pair(const char *path, ttq_keypair *kp, char *err, size_t errlen) {
  keyfile kf;
  if (load_keyfile(path, &kf, err, errlen)) return -1;
  int rc = 0;
  char derived[TTQ_KEY_Z85_LEN + 1];
  if (!kf.n_pub || !kf.n_sec)
    rc = fail(err, errlen, "%s: a .key file needs a 'public' and a 'secret' line%s", path,
              kf.n_bare ? " (this looks like a .pub file)" : "");
  else if (zmq_curve_public(derived, kf.sec) != 0 || strcmp(derived, kf.pub))
    rc = fail(err, errlen, "%s: the public key does not belong to the secret key", path);
  if (rc == 0) {
    memcpy(kp->pub, kf.pub, sizeof kp->pub);
    memcpy(kp->sec, kf.sec, sizeof kp->sec);
  }
  memset(&kf, 0, sizeof kf);
  return rc;
}

int ttq_keys_read_public(const char *spec, char pub[TTQ_KEY_Z85_LEN + 1], char *err,
                          size_t errlen) {
  if (ttq_key_is_z85(spec) && access(spec, F_OK) != 0) {
    memcpy(pub, spec, TTQ_KEY_Z85_LEN + 1);
    return 0;
  }
  if (access(spec, F_OK) != 0)
    return fail(err, errlen, "%s: no such file, and not a 40-character Z85 key", spec);
  keyfile kf;
  if (load_keyfile(spec, &kf, err, errlen)) return -1;
  int rc = 0;
  if (kf.n_pub) memcpy(pub, kf.pub, TTQ_KEY_Z85_LEN + 1);
  else if (kf.n_bare) memcpy(pub, kf.bare, TTQ_KEY_Z85_LEN + 1);
  else if (kf.n_sec && zmq_curve_public(pub, kf.sec) == 0) rc = 0;
  else rc = fail(err, errlen, "%s: holds no key", spec);
  memset(&kf, 0, sizeof kf);
  return rc;
}
