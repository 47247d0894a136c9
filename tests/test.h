/* test.h -- the tiny test framework: every test is `TEST_IMPL(name) { ... return 0; }` in a
 * tests/test-*.c file and one TEST_ENTRY(name) line in tests/test-list.h.
 * A test returns 0 on success; ASSERT* print the failing expression and return 1;
 * SKIP(...) prints the reason loudly and returns 77 (ctest reports "Skipped"). */
#ifndef TTQ_TEST_H
#define TTQ_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "ttq.h"

#define TEST_SKIP_CODE 77
#define TEST_IMPL(name) int run_test_##name(void)

#define ASSERT(expr)                                                                   \
  do {                                                                                 \
    if (!(expr)) {                                                                     \
      fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #expr);     \
      return 1;                                                                        \
    }                                                                                  \
  } while (0)

#define ASSERTF(expr, ...)                                                             \
  do {                                                                                 \
    if (!(expr)) {                                                                     \
      fprintf(stderr, "%s:%d: assertion failed: %s: ", __FILE__, __LINE__, #expr);     \
      fprintf(stderr, __VA_ARGS__);                                                    \
      fputc('\n', stderr);                                                             \
      return 1;                                                                        \
    }                                                                                  \
  } while (0)

#define ASSERT_OK(call)                                                                \
  do {                                                                                 \
    int rc_ = (call);                                                                  \
    if (rc_ != 0) {                                                                    \
      fprintf(stderr, "%s:%d: %s returned %d (%s)\n", __FILE__, __LINE__, #call, rc_,  \
              ttq_strerror(rc_));                                                      \
      return 1;                                                                        \
    }                                                                                  \
  } while (0)

#define SKIP(...)                                                                      \
  do {                                                                                 \
    fprintf(stderr, "SKIPPED: ");                                                      \
    fprintf(stderr, __VA_ARGS__);                                                      \
    fputc('\n', stderr);                                                               \
    return TEST_SKIP_CODE;                                                             \
  } while (0)

/* testutil.c */
/* Absolute path of a file in the source tree (e.g. "models/tinyqwen3-mix"); malloc'd. */
char *test_src_path(const char *rel);
/* Absolute path under ../shared (or $TTQ_SHARED), or NULL when it does not exist; malloc'd. */
char *test_shared_path(const char *rel);
/* A fresh empty temporary directory; malloc'd path. Removed by the caller with test_rmtree. */
char *test_tmpdir(void);
void test_rmtree(const char *dir);
/* Write bytes to a file; 0 or -1. */
int test_write_file(const char *path, const void *data, size_t len);
/* Read an .npy v1/v2 little-endian float32 array: data malloc'd, shape in dims (up to 4). */
int test_read_npy_f32(const char *path, float **data, int *ndim, long dims[4]);
/* Read a whole gzip (or plain) file into a NUL-terminated buffer; malloc'd. */
char *test_read_gz(const char *path, size_t *len);
/* Deterministic PRNG for tests. */
uint64_t test_rand_u64(uint64_t *state);
float test_rand_f32(uint64_t *state); /* uniform in [-1, 1) */

#endif
