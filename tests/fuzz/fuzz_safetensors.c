/* fuzz_safetensors.c -- libFuzzer harness for the safetensors reader (shard/safetensors.c).
 *
 * Input: the bytes of a whole .safetensors file (u64 LE header length, JSON header, data).
 * The reader only takes a path and memory-maps it, so the bytes go to a memfd first.
 *
 * Oracle (besides ASan/UBSan/LSan):
 *   - a failed ttq_st_open returns a negative TTQ_E* code, fills the diag with that code and a
 *     NUL-terminated message, and leaves *out zeroed (nothing to close, nothing leaked);
 *   - a successful one keeps every invariant safetensors.h promises, checked here
 *     independently: supported dtype, 0 <= ndim <= 4, non-negative shape whose non-zero
 *     dimensions multiply without overflowing int64 (so ttq_tensor_numel and any product of
 *     dimensions are safe), nbytes equal to dtype size * numel, every view inside the data
 *     section of the map (and readable: every byte is touched, which faults on a view past
 *     the end of the mapping, something ASan cannot see in mmap'd memory), non-empty ranges
 *     pairwise disjoint, unique names that ttq_st_find finds;
 *   - write(read(x)) reads back to the same tensors: ttq_st_write must accept every tensor
 *     the reader accepted, and reopening its output gives equal names, dtypes, shapes and
 *     bytes. */
#include "fuzz_tensors.h"
#include "safetensors.h"

/* Checks every invariant of an open file; `size` is the input size. */
static void check_file(const ttq_st_file *f, size_t size) {
  FUZZ_CHECK(f->map.size == size);
  FUZZ_CHECK(size >= 8);
  uint64_t n;
  memcpy(&n, f->map.data, 8);
  FUZZ_CHECK(n <= size - 8);
  const uint8_t *ds = f->map.data + 8 + n;
  size_t dsize = size - 8 - (size_t)n;
  FUZZ_CHECK(f->n_tensors >= 0);
  FUZZ_CHECK(f->n_tensors == 0 || f->tensors);
  const ttq_tensor **by = malloc(((size_t)f->n_tensors + 1) * sizeof *by);
  FUZZ_CHECK(by);
  unsigned sum = 0;
  for (int i = 0; i < f->n_tensors; i++) {
    const ttq_tensor *t = &f->tensors[i];
    FUZZ_CHECK(t->name);
    FUZZ_CHECK(strcmp(t->name, "__metadata__") != 0);
    FUZZ_CHECK(t->dtype == TTQ_F32 || t->dtype == TTQ_F16 || t->dtype == TTQ_BF16);
    fuzz_check_tensor_shape(t);
    FUZZ_CHECK(t->nbytes <= dsize);
    FUZZ_CHECKF(fuzz_in_map(t->data, t->nbytes, ds, dsize), "tensor '%s' outside the data",
                t->name);
    const uint8_t *p = t->data;
    for (size_t k = 0; k < t->nbytes; k++) sum += p[k];
    FUZZ_CHECK(ttq_st_find(f, t->name) == t);
    by[i] = t;
  }
  (void)sum;
  fuzz_check_views(by, (size_t)f->n_tensors);
  free(by);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static fuzz_file in, out;
  const char *path = fuzz_file_set(&in, "st-in", data, size);
  ttq_st_file f;
  ttq_diag d = {0};
  int rc = ttq_st_open(path, &f, &d);
  if (rc) {
    fuzz_check_refusal(rc, &d);
    FUZZ_CHECK(f.n_tensors == 0 && f.tensors == NULL && f.map.data == NULL);
    return 0;
  }
  check_file(&f, size);

  /* Round trip through the writer. */
  const char *opath = fuzz_file_empty(&out, "st-out");
  rc = ttq_st_write(opath, f.tensors, f.n_tensors, NULL, 0, &d);
  FUZZ_CHECKF(rc == 0, "the writer refused what the reader accepted: %s", d.msg);
  ttq_st_file g;
  rc = ttq_st_open(opath, &g, &d);
  FUZZ_CHECKF(rc == 0, "the reader refused the writer's output: %s", d.msg);
  FUZZ_CHECK(g.n_tensors == f.n_tensors);
  for (int i = 0; i < f.n_tensors; i++) {
    const ttq_tensor *a = &f.tensors[i], *b = ttq_st_find(&g, a->name);
    FUZZ_CHECKF(b, "tensor '%s' lost in the round trip", a->name);
    FUZZ_CHECK(a->dtype == b->dtype && a->ndim == b->ndim && a->nbytes == b->nbytes);
    for (int k = 0; k < a->ndim; k++) FUZZ_CHECK(a->shape[k] == b->shape[k]);
    FUZZ_CHECK(a->nbytes == 0 || memcmp(a->data, b->data, a->nbytes) == 0);
  }
  ttq_st_close(&g);
  ttq_st_close(&f);
  FUZZ_CHECK(f.tensors == NULL && f.n_tensors == 0);
  return 0;
}
