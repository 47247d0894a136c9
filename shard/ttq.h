/* ttq.h -- the small public header of the ttq compute library (libttqshard).
 *
 * Conventions (libuv style):
 *   - public names are ttq_*, internal ones ttq__*;
 *   - every function that can fail returns 0 or a negative TTQ_E* code;
 *   - a function that fails and takes a `ttq_diag *` fills it with one line saying
 *     what failed and why, naming the file, the field and the value where they are known.
 *     `diag` may be NULL when the caller does not want the message.
 *   - ownership is written on every function that returns memory: "caller frees with X".
 */
#ifndef TTQ_H
#define TTQ_H

#include <stddef.h>
#include <stdint.h>

#define TTQ_VERSION "0.1.0"

enum {
  TTQ_OK = 0,
  TTQ_EINVAL = -1,    /* bad argument or setting */
  TTQ_EFORMAT = -2,   /* malformed file or data */
  TTQ_EIO = -3,       /* open/read/mmap failed */
  TTQ_ENOMEM = -4,    /* allocation failed */
  TTQ_EUNSUPPORTED = -5, /* well-formed but not supported (architecture, dtype, ...) */
  TTQ_ENOTFOUND = -6, /* missing tensor, key or file */
  TTQ_ERANGE = -7     /* value out of range (too many tokens, context full, ...) */
};

/* One line of context about the last failure. */
typedef struct ttq_diag {
  int code;
  char msg[768];
} ttq_diag;

/* Static string naming an error code; never NULL. */
const char *ttq_strerror(int code);

/* Element types of tensors in model files. */
typedef enum ttq_dtype {
  TTQ_F32 = 0,
  TTQ_F16 = 1,
  TTQ_BF16 = 2,
  TTQ_Q8_0 = 3, /* GGML block: fp16 scale + 32 int8, 34 bytes per 32 values */
  TTQ_DTYPE_COUNT
} ttq_dtype;

const char *ttq_dtype_name(ttq_dtype t);
/* Bytes taken by `n` elements of type t; n must be a multiple of the block size (32 for
 * Q8_0), else returns 0. */
size_t ttq_dtype_bytes(ttq_dtype t, int64_t n);

/* A view of a tensor stored somewhere else (usually a memory-mapped file).
 * shape[0] is the slowest dimension (row-major, like safetensors/PyTorch): a matrix
 * `d_out x d_in` has shape {d_out, d_in}. The view owns nothing. */
typedef struct ttq_tensor {
  const char *name;
  ttq_dtype dtype;
  int ndim;
  int64_t shape[4];
  const void *data;
  size_t nbytes;
} ttq_tensor;

/* Number of elements; 1 for ndim == 0. */
int64_t ttq_tensor_numel(const ttq_tensor *t);

#endif
