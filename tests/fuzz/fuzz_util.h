/* fuzz_util.h -- helpers shared by the libFuzzer harnesses in tests/fuzz/.
 *
 * Purpose: the shard loaders take paths and memory-map them (ttq__map_file), so a harness
 * turns the input bytes into a file: an anonymous memfd whose /proc/self/fd/N path is handed
 * to the loader. One memfd per slot is created on first use and rewritten for every input
 * (truncate + write), so a fuzzing process never accumulates files or descriptors; when
 * memfd_create is unavailable a temporary file under $TMPDIR (or /tmp) is used instead and
 * unlinked at exit.
 *
 * Invariants:
 *   - FUZZ_CHECK failures print the failed condition with file and line, then abort(): that
 *     is a crash for libFuzzer (which saves the input) and a failing exit for the replay
 *     runner (tests/fuzz/replay.c), with or without sanitizers;
 *   - nothing here writes outside the memfds / the private temporary file;
 *   - every helper is static: each harness is one translation unit plus this header (and,
 *     outside the libFuzzer build, replay.c). */
#ifndef TTQ_FUZZ_UTIL_H
#define TTQ_FUZZ_UTIL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The entry point every harness defines (libFuzzer's, called by replay.c too). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                    \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      fprintf(stderr, "%s:%d: fuzz property violated: %s\n", __FILE__, __LINE__, #cond);    \
      abort();                                                                              \
    }                                                                                       \
  } while (0)

#define FUZZ_CHECKF(cond, ...)                                                              \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      fprintf(stderr, "%s:%d: fuzz property violated: %s: ", __FILE__, __LINE__, #cond);    \
      fprintf(stderr, __VA_ARGS__);                                                         \
      fputc('\n', stderr);                                                                  \
      abort();                                                                              \
    }                                                                                       \
  } while (0)

/* A file the harness can rewrite and hand out by path. */
typedef struct fuzz_file {
  int fd;
  char path[64];
} fuzz_file;

/* Creates the backing file of slot f once; aborts when no file can be made at all (the
 * harness cannot test anything then, and silently passing would hide it). */
static inline void fuzz_file_init(fuzz_file *f, const char *name) {
  if (f->path[0]) return;
  int fd = memfd_create(name, MFD_CLOEXEC);
  if (fd >= 0) {
    f->fd = fd;
    snprintf(f->path, sizeof f->path, "/proc/self/fd/%d", fd);
    return;
  }
  const char *dir = getenv("TMPDIR");
  char tmpl[4096];
  snprintf(tmpl, sizeof tmpl, "%s/ttq-fuzz-XXXXXX", dir && *dir ? dir : "/tmp");
  fd = mkstemp(tmpl);
  if (fd < 0) {
    fprintf(stderr, "fuzz: cannot create a memfd or a temporary file: %s\n", strerror(errno));
    abort();
  }
  unlink(tmpl); /* the descriptor keeps it alive; the /proc path still opens it */
  f->fd = fd;
  snprintf(f->path, sizeof f->path, "/proc/self/fd/%d", fd);
}

/* Makes slot f's file hold exactly data[0..size) and returns its path. */
static inline const char *fuzz_file_set(fuzz_file *f, const char *name, const uint8_t *data,
                                 size_t size) {
  fuzz_file_init(f, name);
  if (ftruncate(f->fd, 0) != 0) {
    fprintf(stderr, "fuzz: ftruncate: %s\n", strerror(errno));
    abort();
  }
  size_t off = 0;
  while (off < size) {
    ssize_t w = pwrite(f->fd, data + off, size - off, (off_t)off);
    if (w <= 0) {
      fprintf(stderr, "fuzz: pwrite: %s\n", strerror(errno));
      abort();
    }
    off += (size_t)w;
  }
  return f->path;
}

/* Empties slot f's file and returns its path (for a writer to fill). */
static inline const char *fuzz_file_empty(fuzz_file *f, const char *name) {
  return fuzz_file_set(f, name, NULL, 0);
}

/* Whether [p, p + n) lies inside [base, base + size). Pointer arithmetic on the map only. */
static inline bool fuzz_in_map(const void *p, size_t n, const uint8_t *base, size_t size) {
  if (n == 0) return true; /* an empty view may point anywhere (even NULL) */
  if (!p || !base) return false;
  uintptr_t a = (uintptr_t)p, b = (uintptr_t)base;
  return a >= b && a - b <= size && n <= size - (a - b);
}

/* Validates a byte string as UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
static inline bool fuzz_utf8_valid(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t b = s[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    int len;
    uint32_t c;
    if (b >= 0xc2 && b <= 0xdf) len = 2, c = b & 0x1f;
    else if (b >= 0xe0 && b <= 0xef) len = 3, c = b & 0x0f;
    else if (b >= 0xf0 && b <= 0xf4) len = 4, c = b & 0x07;
    else return false;
    if (n - i < (size_t)len) return false;
    for (int k = 1; k < len; k++) {
      if ((s[i + (size_t)k] & 0xc0) != 0x80) return false;
      c = (c << 6) | (s[i + (size_t)k] & 0x3f);
    }
    if (len == 3 && (c < 0x800 || (c >= 0xd800 && c <= 0xdfff))) return false;
    if (len == 4 && (c < 0x10000 || c > 0x10ffff)) return false;
    i += (size_t)len;
  }
  return true;
}

#endif
