/* fuzz_gguf.c -- libFuzzer harness for the GGUF reader (shard/gguf.c).
 *
 * Input: the bytes of a whole .gguf file, handed to ttq_gguf_open through a memfd.
 *
 * Oracle (besides ASan/UBSan/LSan):
 *   - a failed open returns a negative TTQ_E* code with a matching diag and a zeroed *out;
 *   - a successful one keeps the invariants gguf.h promises, checked independently: every
 *     key, string value, array and string-array element is a view inside the map; value types
 *     are known, bools are 0/1, nested arrays absent; keys unique (ttq_gguf_find_kv finds each
 *     NUL-free key) and the typed getters agree with the stored type; the alignment is a power
 *     of two; tensors have supported types, 0 <= ndim <= 4, non-zero dimensions whose
 *     product fits int64 (checked through ttq_tensor_numel too), Q8_0 rows of whole blocks,
 *     nbytes == ttq_dtype_bytes(type, numel), data inside the map at a file offset that is a
 *     multiple of the alignment (every byte is read: a view past the mapping faults, which ASan
 *     alone would not report for mmap'd memory), non-empty ranges disjoint, names unique;
 *   - write(read(x)) reads back equal: ttq_gguf_write accepts everything the reader accepted,
 *     and reopening its output gives the same keys, types and values (floats compared
 *     bitwise, NaNs as NaNs) and the same tensors (names, types, shapes, bytes). */
#include "fuzz_tensors.h"
#include "gguf.h"

#include <math.h>

static size_t scalar_size(ttq_gguf_type t) {
  switch (t) {
  case TTQ_GGUF_UINT8: case TTQ_GGUF_INT8: case TTQ_GGUF_BOOL: return 1;
  case TTQ_GGUF_UINT16: case TTQ_GGUF_INT16: return 2;
  case TTQ_GGUF_UINT32: case TTQ_GGUF_INT32: case TTQ_GGUF_FLOAT32: return 4;
  case TTQ_GGUF_UINT64: case TTQ_GGUF_INT64: case TTQ_GGUF_FLOAT64: return 8;
  default: return 0;
  }
}

static bool is_int(ttq_gguf_type t) {
  return t == TTQ_GGUF_UINT8 || t == TTQ_GGUF_INT8 || t == TTQ_GGUF_UINT16 ||
         t == TTQ_GGUF_INT16 || t == TTQ_GGUF_UINT32 || t == TTQ_GGUF_INT32 ||
         t == TTQ_GGUF_UINT64 || t == TTQ_GGUF_INT64;
}

static bool str_eq(ttq_gguf_str a, ttq_gguf_str b) {
  return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, (size_t)a.len) == 0);
}

static bool f64_same(double a, double b) {
  if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
  return memcmp(&a, &b, sizeof a) == 0;
}

/* Checks one key/value of an open file whose map is [base, base + size). */
static void check_kv(const ttq_gguf_file *f, const ttq_gguf_kv *kv) {
  const uint8_t *base = f->map.data;
  size_t size = f->map.size;
  FUZZ_CHECK(fuzz_in_map(kv->key.ptr, (size_t)kv->key.len, base, size));
  FUZZ_CHECK((unsigned)kv->type <= TTQ_GGUF_FLOAT64);
  if (kv->type == TTQ_GGUF_STRING) {
    FUZZ_CHECK(kv->v.str.len <= size && fuzz_in_map(kv->v.str.ptr, (size_t)kv->v.str.len, base, size));
  } else if (kv->type == TTQ_GGUF_ARRAY) {
    ttq_gguf_type et = kv->v.arr.type;
    FUZZ_CHECK((unsigned)et <= TTQ_GGUF_FLOAT64 && et != TTQ_GGUF_ARRAY);
    if (et == TTQ_GGUF_STRING) {
      FUZZ_CHECK(kv->v.arr.n == 0 || kv->v.arr.strs);
      FUZZ_CHECK(kv->v.arr.n <= size / 8);
      for (uint64_t i = 0; i < kv->v.arr.n; i++)
        FUZZ_CHECK(fuzz_in_map(kv->v.arr.strs[i].ptr, (size_t)kv->v.arr.strs[i].len, base, size));
    } else {
      FUZZ_CHECK(kv->v.arr.strs == NULL);
      FUZZ_CHECK(kv->v.arr.n <= size);
      size_t nb = (size_t)kv->v.arr.n * scalar_size(et);
      FUZZ_CHECK(fuzz_in_map(kv->v.arr.data, nb, base, size));
      if (et == TTQ_GGUF_BOOL)
        for (uint64_t i = 0; i < kv->v.arr.n; i++) FUZZ_CHECK(kv->v.arr.data[i] <= 1);
    }
  } else if (kv->type == TTQ_GGUF_BOOL) {
    FUZZ_CHECK(kv->v.u64 <= 1);
  }

  /* Lookups and typed getters, for keys that can be spelled as C strings. */
  if (memchr(kv->key.ptr, 0, (size_t)kv->key.len)) return;
  char *key = malloc((size_t)kv->key.len + 1);
  FUZZ_CHECK(key);
  memcpy(key, kv->key.ptr, (size_t)kv->key.len);
  key[kv->key.len] = 0;
  FUZZ_CHECK(ttq_gguf_find_kv(f, key) == kv);
  int64_t i64 = 0;
  double f64 = 0;
  char *s = NULL;
  int rc = ttq_gguf_get_i64(f, key, &i64);
  if (is_int(kv->type)) FUZZ_CHECK(rc == 0 || rc == TTQ_ERANGE);
  else FUZZ_CHECK(rc == TTQ_EFORMAT);
  rc = ttq_gguf_get_f64(f, key, &f64);
  bool fl = kv->type == TTQ_GGUF_FLOAT32 || kv->type == TTQ_GGUF_FLOAT64;
  FUZZ_CHECK(fl ? rc == 0 && f64_same(f64, kv->v.f64) : rc == TTQ_EFORMAT);
  rc = ttq_gguf_get_str(f, key, &s);
  if (kv->type == TTQ_GGUF_STRING) {
    FUZZ_CHECK(rc == 0 && s);
    FUZZ_CHECK(kv->v.str.len == 0 || memcmp(s, kv->v.str.ptr, (size_t)kv->v.str.len) == 0);
    FUZZ_CHECK(s[kv->v.str.len] == 0);
  } else {
    FUZZ_CHECK(rc == TTQ_EFORMAT && s == NULL);
  }
  free(s);
  free(key);
}

static void check_tensors(const ttq_gguf_file *f) {
  const uint8_t *base = f->map.data;
  size_t size = f->map.size;
  FUZZ_CHECK(f->n_tensors == 0 || f->tensors);
  FUZZ_CHECK(f->n_tensors <= size / 24);
  const ttq_tensor **by = malloc(((size_t)f->n_tensors + 1) * sizeof *by);
  FUZZ_CHECK(by);
  unsigned sum = 0;
  for (uint64_t i = 0; i < f->n_tensors; i++) {
    const ttq_tensor *t = &f->tensors[i];
    FUZZ_CHECK(t->name);
    FUZZ_CHECK(t->dtype == TTQ_F32 || t->dtype == TTQ_F16 || t->dtype == TTQ_BF16 ||
               t->dtype == TTQ_Q8_0);
    fuzz_check_tensor_shape(t);
    if (t->dtype == TTQ_Q8_0) FUZZ_CHECK(t->ndim > 0 && t->shape[t->ndim - 1] % 32 == 0);
    FUZZ_CHECKF(fuzz_in_map(t->data, t->nbytes, base, size), "tensor '%s' outside the file",
                t->name);
    if (t->nbytes) {
      FUZZ_CHECK(((uintptr_t)t->data - (uintptr_t)base) % f->alignment == 0);
      const uint8_t *p = t->data;
      for (size_t k = 0; k < t->nbytes; k++) sum += p[k];
    }
    FUZZ_CHECK(ttq_gguf_find_tensor(f, t->name) == t);
    by[i] = t;
  }
  (void)sum;
  fuzz_check_views(by, (size_t)f->n_tensors);
  free(by);
}

/* Compares a key/value with its round-tripped copy. */
static void same_kv(const ttq_gguf_kv *a, const ttq_gguf_kv *b) {
  FUZZ_CHECK(str_eq(a->key, b->key));
  FUZZ_CHECK(a->type == b->type);
  switch (a->type) {
  case TTQ_GGUF_STRING: FUZZ_CHECK(str_eq(a->v.str, b->v.str)); break;
  case TTQ_GGUF_FLOAT32: case TTQ_GGUF_FLOAT64: FUZZ_CHECK(f64_same(a->v.f64, b->v.f64)); break;
  case TTQ_GGUF_ARRAY:
    FUZZ_CHECK(a->v.arr.type == b->v.arr.type && a->v.arr.n == b->v.arr.n);
    if (a->v.arr.type == TTQ_GGUF_STRING) {
      for (uint64_t i = 0; i < a->v.arr.n; i++) FUZZ_CHECK(str_eq(a->v.arr.strs[i], b->v.arr.strs[i]));
    } else {
      size_t nb = (size_t)a->v.arr.n * scalar_size(a->v.arr.type);
      FUZZ_CHECK(nb == 0 || memcmp(a->v.arr.data, b->v.arr.data, nb) == 0);
    }
    break;
  default: FUZZ_CHECK(a->v.u64 == b->v.u64); break; /* every integer and bool */
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static fuzz_file in, out;
  const char *path = fuzz_file_set(&in, "gguf-in", data, size);
  ttq_gguf_file f;
  ttq_diag d = {0};
  int rc = ttq_gguf_open(path, &f, &d);
  if (rc) {
    fuzz_check_refusal(rc, &d);
    FUZZ_CHECK(f.n_kv == 0 && f.kv == NULL && f.n_tensors == 0 && f.tensors == NULL &&
               f.map.data == NULL);
    return 0;
  }
  FUZZ_CHECK(f.map.size == size);
  FUZZ_CHECK(f.version == 2 || f.version == 3);
  FUZZ_CHECK(f.alignment && (f.alignment & (f.alignment - 1)) == 0);
  FUZZ_CHECK(f.n_kv == 0 || f.kv);
  FUZZ_CHECK(f.n_kv <= size / 13);
  for (uint64_t i = 0; i < f.n_kv; i++) check_kv(&f, &f.kv[i]);
  check_tensors(&f);

  /* Round trip through the writer. */
  const char *opath = fuzz_file_empty(&out, "gguf-out");
  rc = ttq_gguf_write(opath, f.kv, f.n_kv, f.tensors, f.n_tensors, &d);
  FUZZ_CHECKF(rc == 0, "the writer refused what the reader accepted: %s", d.msg);
  ttq_gguf_file g;
  rc = ttq_gguf_open(opath, &g, &d);
  FUZZ_CHECKF(rc == 0, "the reader refused the writer's output: %s", d.msg);
  FUZZ_CHECK(g.version == 3 && g.alignment == f.alignment);
  FUZZ_CHECK(g.n_kv == f.n_kv && g.n_tensors == f.n_tensors);
  for (uint64_t i = 0; i < f.n_kv; i++) same_kv(&f.kv[i], &g.kv[i]);
  for (uint64_t i = 0; i < f.n_tensors; i++) {
    const ttq_tensor *a = &f.tensors[i], *b = &g.tensors[i];
    FUZZ_CHECK(strcmp(a->name, b->name) == 0);
    FUZZ_CHECK(a->dtype == b->dtype && a->ndim == b->ndim && a->nbytes == b->nbytes);
    for (int k = 0; k < a->ndim; k++) FUZZ_CHECK(a->shape[k] == b->shape[k]);
    FUZZ_CHECK(a->nbytes == 0 || memcmp(a->data, b->data, a->nbytes) == 0);
  }
  ttq_gguf_close(&g);
  ttq_gguf_close(&f);
  FUZZ_CHECK(f.kv == NULL && f.tensors == NULL);
  return 0;
}
