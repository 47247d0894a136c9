/* safetensors.h -- reads (and, for `ttqd synth`, writes) safetensors files.
 *
 * A file is memory-mapped; tensors are views into the map (nothing is copied).
 * Invariants after a successful open: every tensor's byte range lies inside the data
 * section, ranges do not overlap, nbytes == dtype size * product(shape), names are unique.
 * Supported dtypes: F32, F16, BF16; others are refused with TTQ_EUNSUPPORTED naming the dtype. */
#ifndef TTQ_SAFETENSORS_H
#define TTQ_SAFETENSORS_H

#include "ttq.h"
#include "util.h"

typedef struct ttq_st_file {
  ttq_mapfile map;
  int n_tensors;
  ttq_tensor *tensors; /* owned; names owned */
} ttq_st_file;

int ttq_st_open(const char *path, ttq_st_file *out, ttq_diag *d);
void ttq_st_close(ttq_st_file *f);
/* Returns the tensor or NULL. */
const ttq_tensor *ttq_st_find(const ttq_st_file *f, const char *name);

/* Write tensors (name, dtype, shape, data) to `path` as safetensors with an optional
 * `__metadata__` of string pairs (may be NULL / 0). */
int ttq_st_write(const char *path, const ttq_tensor *tensors, int n,
                 const char *const *meta_kv, int n_meta, ttq_diag *d);

#endif
