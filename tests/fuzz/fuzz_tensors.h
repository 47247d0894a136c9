/* fuzz_tensors.h -- the tensor-view checks the file-format harnesses (fuzz_gguf.c,
 * fuzz_safetensors.c) share: a view's shape, element count and byte size agree and cannot
 * overflow; a loader's refusal is well formed; the views of one file have unique names and
 * pairwise disjoint non-empty byte ranges. Every helper is static (one translation unit per
 * harness); failures abort through FUZZ_CHECK (fuzz_util.h). */
#ifndef TTQ_FUZZ_TENSORS_H
#define TTQ_FUZZ_TENSORS_H

#include "fuzz_util.h"
#include "ttq.h"

/* ndim in 0..4, non-negative dimensions whose non-zero product fits int64 (so no order and no
 * subset of them overflows when multiplied: ttq_tensor_numel multiplies in shape order), and
 * numel/nbytes consistent with the dtype. Returns the element count. */
static inline int64_t fuzz_check_tensor_shape(const ttq_tensor *t) {
  FUZZ_CHECK(t->ndim >= 0 && t->ndim <= 4);
  int64_t numel = 1, nonzero = 1;
  for (int k = 0; k < t->ndim; k++) {
    FUZZ_CHECK(t->shape[k] >= 0);
    if (t->shape[k]) FUZZ_CHECK(!__builtin_mul_overflow(nonzero, t->shape[k], &nonzero));
    numel *= t->shape[k];
  }
  FUZZ_CHECK(ttq_tensor_numel(t) == numel);
  FUZZ_CHECK(t->nbytes == ttq_dtype_bytes(t->dtype, numel));
  return numel;
}

/* A loader's refusal: a TTQ_E* code, recorded in the diagnostic with a non-empty message. */
static inline void fuzz_check_refusal(int rc, const ttq_diag *d) {
  FUZZ_CHECK(rc < 0 && rc >= TTQ_ERANGE);
  FUZZ_CHECK(d->code == rc);
  FUZZ_CHECK(memchr(d->msg, 0, sizeof d->msg) != NULL && d->msg[0]);
}

static int fuzz__cmp_name(const void *a, const void *b) {
  return strcmp((*(const ttq_tensor *const *)a)->name, (*(const ttq_tensor *const *)b)->name);
}

static int fuzz__cmp_view(const void *a, const void *b) {
  const ttq_tensor *x = *(const ttq_tensor *const *)a, *y = *(const ttq_tensor *const *)b;
  uintptr_t px = (uintptr_t)x->data, py = (uintptr_t)y->data;
  return px < py ? -1 : px > py;
}

/* The n views of one file (the array is reordered): unique names, and non-empty byte ranges
 * that do not overlap. */
static inline void fuzz_check_views(const ttq_tensor **by, size_t n) {
  qsort(by, n, sizeof *by, fuzz__cmp_name);
  for (size_t i = 1; i < n; i++) FUZZ_CHECK(strcmp(by[i - 1]->name, by[i]->name) != 0);
  qsort(by, n, sizeof *by, fuzz__cmp_view);
  const uint8_t *far = NULL; /* furthest end of a non-empty view so far */
  for (size_t i = 0; i < n; i++) {
    if (by[i]->nbytes == 0) continue;
    const uint8_t *b = by[i]->data, *e = b + by[i]->nbytes;
    FUZZ_CHECKF(!far || b >= far, "tensor '%s' overlaps another", by[i]->name);
    if (!far || e > far) far = e;
  }
}

#endif
