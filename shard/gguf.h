/* gguf.h -- reads (and, for `ttqd synth`, writes) GGUF v3 files.
 *
 * The file is memory-mapped; metadata strings and arrays and tensor data are views into the
 * map. Invariants after a successful open: every key/value and tensor info was read within
 * the file; every tensor's data range lies inside the file (after the aligned data start),
 * ranges do not overlap, sizes match type and shape. Tensor types supported: F32, F16, BF16,
 * Q8_0; others are refused with TTQ_EUNSUPPORTED naming the type.
 *
 * GGUF dimension order: ne[0] is the fastest-varying dimension. ttq_tensor.shape is
 * row-major (slowest first), so a GGUF tensor with ne = {d_in, d_out} becomes
 * shape = {d_out, d_in}. */
#ifndef TTQ_GGUF_H
#define TTQ_GGUF_H

#include "ttq.h"
#include "util.h"

typedef enum ttq_gguf_type {
  TTQ_GGUF_UINT8 = 0, TTQ_GGUF_INT8 = 1, TTQ_GGUF_UINT16 = 2, TTQ_GGUF_INT16 = 3,
  TTQ_GGUF_UINT32 = 4, TTQ_GGUF_INT32 = 5, TTQ_GGUF_FLOAT32 = 6, TTQ_GGUF_BOOL = 7,
  TTQ_GGUF_STRING = 8, TTQ_GGUF_ARRAY = 9, TTQ_GGUF_UINT64 = 10, TTQ_GGUF_INT64 = 11,
  TTQ_GGUF_FLOAT64 = 12
} ttq_gguf_type;

/* A string inside the map: not NUL-terminated. */
typedef struct ttq_gguf_str {
  const char *ptr;
  uint64_t len;
} ttq_gguf_str;

typedef struct ttq_gguf_kv {
  ttq_gguf_str key;
  ttq_gguf_type type;
  union {
    uint64_t u64;  /* all unsigned ints and bool */
    int64_t i64;   /* all signed ints */
    double f64;    /* float32 and float64 */
    ttq_gguf_str str;
    struct {
      ttq_gguf_type type; /* element type; nested arrays are refused */
      uint64_t n;
      const uint8_t *data; /* raw elements in the map */
      ttq_gguf_str *strs;  /* owned: for string arrays, n views; NULL otherwise */
    } arr;
  } v;
} ttq_gguf_kv;

typedef struct ttq_gguf_file {
  ttq_mapfile map;
  uint32_t version;
  uint64_t n_kv;
  ttq_gguf_kv *kv; /* owned */
  uint64_t n_tensors;
  ttq_tensor *tensors; /* owned; names owned (NUL-terminated copies) */
  uint64_t alignment;
} ttq_gguf_file;

int ttq_gguf_open(const char *path, ttq_gguf_file *out, ttq_diag *d);
void ttq_gguf_close(ttq_gguf_file *f);

const ttq_gguf_kv *ttq_gguf_find_kv(const ttq_gguf_file *f, const char *key);
const ttq_tensor *ttq_gguf_find_tensor(const ttq_gguf_file *f, const char *name);
/* Typed getters: 0, TTQ_ENOTFOUND, TTQ_EFORMAT when the key has another type, or TTQ_ERANGE
 * when an unsigned 64-bit value does not fit int64
 * (any integer type converts to int64 when it fits; float32/64 convert to double). */
int ttq_gguf_get_i64(const ttq_gguf_file *f, const char *key, int64_t *out);
int ttq_gguf_get_f64(const ttq_gguf_file *f, const char *key, double *out);
/* Returns a malloc'd NUL-terminated copy; caller frees. */
int ttq_gguf_get_str(const ttq_gguf_file *f, const char *key, char **out);

/* Writer for synthetic models. Metadata values are given as ttq_gguf_kv (arrays of strings
 * via arr.strs, other arrays via arr.data). Tensor shapes are row-major as in ttq_tensor. */
int ttq_gguf_write(const char *path, const ttq_gguf_kv *kv, uint64_t n_kv,
                   const ttq_tensor *tensors, uint64_t n_tensors, ttq_diag *d);

#endif
