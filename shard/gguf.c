/* gguf.c -- reads and writes GGUF files (version 3; version 2 has the same layout and is read
 * too). All integers are little-endian.
 *
 *   "GGUF" | u32 version | u64 n_tensors | u64 n_kv
 *   n_kv x      { string key | u32 value type | value }
 *   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml type | u64 offset }
 *   padding to a multiple of `general.alignment` (default 32)
 *   data: each tensor at data start + offset (offset a multiple of the alignment)
 *
 * where string = u64 length + bytes (no NUL), and an array value is u32 element type + u64
 * count + elements (strings for string arrays; nested arrays are refused).
 *
 * Reading maps the file and never copies tensor data or metadata: keys, string values,
 * array elements and tensor data are views into the map, valid until ttq_gguf_close. Only
 * tensor names (NUL-terminated copies) and the views of string-array elements are allocated.
 *
 * The reader trusts nothing: every read goes through a cursor that checks the bytes it needs
 * against what is left of the map, and every count read from the file (n_kv, n_tensors,
 * array lengths) is checked against the smallest number of bytes its items could take before
 * anything is allocated for it, so a hostile count (n_kv = 2^60) fails cleanly instead of
 * allocating. After a successful ttq_gguf_open:
 *   - keys are unique, value types are known, bools are 0 or 1;
 *   - the alignment is a power of two;
 *   - tensor names are unique and contain no NUL; 0 <= n_dims <= 4; ne[i] <= INT64_MAX and
 *     the product of the non-zero ne[i] fits int64 (so no product of dimensions overflows,
 *     in any order); types are F32/F16/BF16/Q8_0 (Q8_0 rows hold whole
 *     32-value blocks); nbytes == ttq_dtype_bytes(type, numel);
 *   - the data section starts (after the padding to the alignment) inside the file, tensors
 *     or not; every offset is aligned and every data range lies inside the file; non-empty
 *     ranges do not overlap.
 * Tensors and keys are kept in file order.
 *
 * The writer (ttq_gguf_write) emits version 3: the given keys in order, tensor infos, then the
 * tensor data straight from the caller's buffers, each tensor padded to the alignment (32, or
 * the value of a `general.alignment` key when one is given). */
#include "gguf.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c reads and writes little-endian files with native loads: little-endian hosts only"
#endif

#define GG_DEFAULT_ALIGNMENT 32
#define GG_NAME_MAX_SHOWN 160 /* longest key/name quoted in a message */

/* ggml tensor types ttq supports. */
enum { GGML_F32 = 0, GGML_F16 = 1, GGML_Q8_0 = 8, GGML_BF16 = 30 };

/* Names of ggml types, for messages about unsupported ones. */
static const char *gg_ggml_type_name(uint32_t t) {
  static const char *const names[] = {
      "F32",     "F16",     "Q4_0",   "Q4_1",   "Q4_2",   "Q4_3",    "Q5_0",    "Q5_1",
      "Q8_0",    "Q8_1",    "Q2_K",   "Q3_K",   "Q4_K",   "Q5_K",    "Q6_K",    "Q8_K",
      "IQ2_XXS", "IQ2_XS",  "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S",   "IQ2_S",   "IQ4_XS",
      "I8",      "I16",     "I32",    "I64",    "F64",    "IQ1_M",   "BF16",    "Q4_0_4_4",
      "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8",
      "MXFP4"};
  return t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

static int gg_dtype_from_ggml(uint32_t t, ttq_dtype *out) {
  switch (t) {
  case GGML_F32: *out = TTQ_F32; return 0;
  case GGML_F16: *out = TTQ_F16; return 0;
  case GGML_Q8_0: *out = TTQ_Q8_0; return 0;
  case GGML_BF16: *out = TTQ_BF16; return 0;
  default: return -1;
  }
}

static int gg_ggml_from_dtype(ttq_dtype t, uint32_t *out) {
  switch (t) {
  case TTQ_F32: *out = GGML_F32; return 0;
  case TTQ_F16: *out = GGML_F16; return 0;
  case TTQ_Q8_0: *out = GGML_Q8_0; return 0;
  case TTQ_BF16: *out = GGML_BF16; return 0;
  default: return -1;
  }
}

/* Size in bytes of a scalar value type; 0 for string, array and unknown types. */
static size_t gg_scalar_size(uint32_t t) {
  switch (t) {
  case TTQ_GGUF_UINT8: case TTQ_GGUF_INT8: case TTQ_GGUF_BOOL: return 1;
  case TTQ_GGUF_UINT16: case TTQ_GGUF_INT16: return 2;
  case TTQ_GGUF_UINT32: case TTQ_GGUF_INT32: case TTQ_GGUF_FLOAT32: return 4;
  case TTQ_GGUF_UINT64: case TTQ_GGUF_INT64: case TTQ_GGUF_FLOAT64: return 8;
  default: return 0;
  }
}

static const char *gg_value_type_name(uint32_t t) {
  static const char *const names[] = {"uint8",  "int8",   "uint16", "int16", "uint32",
                                      "int32",  "float32", "bool",  "string", "array",
                                      "uint64", "int64",  "float64"};
  return t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

static bool gg_is_int_type(uint32_t t) {
  return t == TTQ_GGUF_UINT8 || t == TTQ_GGUF_INT8 || t == TTQ_GGUF_UINT16 ||
         t == TTQ_GGUF_INT16 || t == TTQ_GGUF_UINT32 || t == TTQ_GGUF_INT32 ||
         t == TTQ_GGUF_UINT64 || t == TTQ_GGUF_INT64;
}
static bool gg_is_signed_type(uint32_t t) {
  return t == TTQ_GGUF_INT8 || t == TTQ_GGUF_INT16 || t == TTQ_GGUF_INT32 || t == TTQ_GGUF_INT64;
}

/* Rounds x up to a multiple of the power of two a; false on overflow. */
static bool gg_align_up(uint64_t x, uint64_t a, uint64_t *out) {
  uint64_t r;
  if (__builtin_add_overflow(x, a - 1, &r)) return false;
  *out = r & ~(a - 1);
  return true;
}

/* Length of a string for "%.*s" in messages. */
static int gg_shown(uint64_t len) { return len > GG_NAME_MAX_SHOWN ? GG_NAME_MAX_SHOWN : (int)len; }

/* ---- reader ---- */

/* A bounds-checked cursor over the map. Every read either takes the bytes it needs or fails
 * (returns false) without moving. */
typedef struct gg_cur {
  const char *path;
  const uint8_t *base;
  size_t size, pos;
  ttq_diag *d;
} gg_cur;

static size_t gg_left(const gg_cur *c) { return c->size - c->pos; }

static bool gg_take(gg_cur *c, size_t n, const uint8_t **p) {
  if (n > gg_left(c)) return false;
  *p = c->base + c->pos;
  c->pos += n;
  return true;
}
static bool gg_u32(gg_cur *c, uint32_t *v) {
  const uint8_t *p;
  if (!gg_take(c, 4, &p)) return false;
  memcpy(v, p, 4);
  return true;
}
static bool gg_u64(gg_cur *c, uint64_t *v) {
  const uint8_t *p;
  if (!gg_take(c, 8, &p)) return false;
  memcpy(v, p, 8);
  return true;
}

/* "PATH: unexpected end of file at offset N reading WHAT (file is S bytes)". */
static int gg_eof(gg_cur *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int gg_eof(gg_cur *c, const char *fmt, ...) {
  char what[384];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  return ttq__fail(c->d, TTQ_EFORMAT, "%s: unexpected end of file at offset %zu reading %s "
                   "(file is %zu bytes)", c->path, c->pos, what, c->size);
}

/* Reads a string into *s. Returns 0, or 1 when its length field is cut off, or 2 when its
 * bytes run past the end of the file (then *len_out holds the length read). */
static int gg_str(gg_cur *c, ttq_gguf_str *s, uint64_t *len_out) {
  uint64_t len;
  if (!gg_u64(c, &len)) return 1;
  *len_out = len;
  const uint8_t *p;
  if (!gg_take(c, len > SIZE_MAX ? SIZE_MAX : (size_t)len, &p)) {
    c->pos -= 8;
    return 2;
  }
  s->ptr = (const char *)p;
  s->len = len;
  return 0;
}

/* Message for a failed gg_str (why = 1 or 2) of the string described by fmt. */
static int gg_str_fail(gg_cur *c, int why, uint64_t len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int gg_str_fail(gg_cur *c, int why, uint64_t len, const char *fmt, ...) {
  char what[384];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  if (why == 1) return gg_eof(c, "the length of %s", what);
  return ttq__fail(c->d, TTQ_EFORMAT, "%s: %s: string length %" PRIu64 " at offset %zu runs past "
                   "the end of the file (%zu bytes left after the length)", c->path, what, len,
                   c->pos, gg_left(c) - 8);
}

/* Reads the value of `kv` (whose key is set) of type `type`. */
static int gg_value(gg_cur *c, ttq_gguf_kv *kv, uint32_t type) {
  const char *path = c->path;
  int kl = gg_shown(kv->key.len);
  const char *kp = kv->key.ptr;
  if (type > TTQ_GGUF_FLOAT64)
    return ttq__fail(c->d, TTQ_EFORMAT, "%s: key '%.*s': unknown value type %" PRIu32, path, kl,
                     kp, type);
  kv->type = (ttq_gguf_type)type;
  if (type == TTQ_GGUF_STRING) {
    uint64_t len = 0;
    int why = gg_str(c, &kv->v.str, &len);
    return why ? gg_str_fail(c, why, len, "the string value of key '%.*s'", kl, kp) : 0;
  }
  if (type == TTQ_GGUF_ARRAY) {
    uint32_t et;
    uint64_t n;
    if (!gg_u32(c, &et)) return gg_eof(c, "the element type of array '%.*s'", kl, kp);
    if (!gg_u64(c, &n)) return gg_eof(c, "the length of array '%.*s'", kl, kp);
    if (et == TTQ_GGUF_ARRAY)
      return ttq__fail(c->d, TTQ_EUNSUPPORTED, "%s: key '%.*s': nested arrays are not supported",
                       path, kl, kp);
    if (et > TTQ_GGUF_FLOAT64)
      return ttq__fail(c->d, TTQ_EFORMAT, "%s: key '%.*s': unknown array element type %" PRIu32,
                       path, kl, kp, et);
    kv->v.arr.type = (ttq_gguf_type)et;
    kv->v.arr.n = n;
    kv->v.arr.data = c->base + c->pos;
    if (et == TTQ_GGUF_STRING) {
      /* Each string takes at least its 8-byte length: bound n before allocating. */
      if (n > gg_left(c) / 8)
        return ttq__fail(c->d, TTQ_EFORMAT, "%s: key '%.*s': array of %" PRIu64 " strings cannot "
                         "fit in the %zu bytes left at offset %zu", path, kl, kp, n, gg_left(c),
                         c->pos);
      kv->v.arr.strs = malloc((n ? (size_t)n : 1) * sizeof *kv->v.arr.strs);
      if (!kv->v.arr.strs)
        return ttq__fail(c->d, TTQ_ENOMEM, "%s: key '%.*s': out of memory for %" PRIu64
                         " strings", path, kl, kp, n);
      for (uint64_t i = 0; i < n; i++) {
        uint64_t len = 0;
        int why = gg_str(c, &kv->v.arr.strs[i], &len);
        if (why)
          return gg_str_fail(c, why, len, "string %" PRIu64 " of %" PRIu64 " in array '%.*s'", i,
                             n, kl, kp);
      }
      return 0;
    }
    size_t es = gg_scalar_size(et), nb;
    const uint8_t *p;
    if (n > SIZE_MAX || !ttq__mul_ok((size_t)n, es, &nb) || !gg_take(c, nb, &p))
      return ttq__fail(c->d, TTQ_EFORMAT, "%s: key '%.*s': array of %" PRIu64 " %s runs past the "
                       "end of the file (%zu bytes left at offset %zu)", path, kl, kp, n,
                       gg_value_type_name(et), gg_left(c), c->pos);
    if (et == TTQ_GGUF_BOOL)
      for (uint64_t i = 0; i < n; i++)
        if (p[i] > 1)
          return ttq__fail(c->d, TTQ_EFORMAT, "%s: key '%.*s': bool element %" PRIu64 " is %u "
                           "(not 0 or 1)", path, kl, kp, i, p[i]);
    return 0;
  }
  size_t sz = gg_scalar_size(type);
  const uint8_t *p;
  if (!gg_take(c, sz, &p))
    return gg_eof(c, "the %s value of key '%.*s'", gg_value_type_name(type), kl, kp);
  switch (type) {
  case TTQ_GGUF_UINT8: kv->v.u64 = p[0]; break;
  case TTQ_GGUF_BOOL:
    if (p[0] > 1)
      return ttq__fail(c->d, TTQ_EFORMAT, "%s: key '%.*s': bool value %u (not 0 or 1)", path, kl,
                       kp, p[0]);
    kv->v.u64 = p[0];
    break;
  case TTQ_GGUF_INT8: kv->v.i64 = (int8_t)p[0]; break;
  case TTQ_GGUF_UINT16: { uint16_t x; memcpy(&x, p, 2); kv->v.u64 = x; break; }
  case TTQ_GGUF_INT16: { int16_t x; memcpy(&x, p, 2); kv->v.i64 = x; break; }
  case TTQ_GGUF_UINT32: { uint32_t x; memcpy(&x, p, 4); kv->v.u64 = x; break; }
  case TTQ_GGUF_INT32: { int32_t x; memcpy(&x, p, 4); kv->v.i64 = x; break; }
  case TTQ_GGUF_FLOAT32: { float x; memcpy(&x, p, 4); kv->v.f64 = x; break; }
  case TTQ_GGUF_UINT64: memcpy(&kv->v.u64, p, 8); break;
  case TTQ_GGUF_INT64: memcpy(&kv->v.i64, p, 8); break;
  case TTQ_GGUF_FLOAT64: memcpy(&kv->v.f64, p, 8); break;
  default: break;
  }
  return 0;
}

/* Sorting helpers for the duplicate and overlap checks. */
static int gg_kv_cmp(const void *a, const void *b) {
  const ttq_gguf_kv *x = *(ttq_gguf_kv *const *)a, *y = *(ttq_gguf_kv *const *)b;
  size_t n = x->key.len < y->key.len ? (size_t)x->key.len : (size_t)y->key.len;
  int r = n ? memcmp(x->key.ptr, y->key.ptr, n) : 0;
  if (r) return r;
  return x->key.len < y->key.len ? -1 : x->key.len > y->key.len;
}
static int gg_name_cmp(const void *a, const void *b) {
  return strcmp((*(ttq_tensor *const *)a)->name, (*(ttq_tensor *const *)b)->name);
}

typedef struct gg_range {
  uint64_t begin, end;
  uint64_t idx;
} gg_range;

static int gg_range_cmp(const void *a, const void *b) {
  const gg_range *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

/* Finds a duplicate among n keys; returns one of the pair or NULL. Sorting keeps it
 * O(n log n) for hostile counts. `*oom` is set when the scratch array cannot be allocated. */
static const ttq_gguf_kv *gg_dup_key(const ttq_gguf_kv *kv, uint64_t n, bool *oom) {
  *oom = false;
  if (n < 2) return NULL;
  const ttq_gguf_kv **s = malloc((size_t)n * sizeof *s);
  if (!s) {
    *oom = true;
    return NULL;
  }
  for (uint64_t i = 0; i < n; i++) s[i] = &kv[i];
  qsort(s, (size_t)n, sizeof *s, gg_kv_cmp);
  const ttq_gguf_kv *dup = NULL;
  for (uint64_t i = 1; i < n && !dup; i++)
    if (gg_kv_cmp(&s[i - 1], &s[i]) == 0) dup = s[i];
  free(s);
  return dup;
}
static const ttq_tensor *gg_dup_name(const ttq_tensor *t, uint64_t n, bool *oom) {
  *oom = false;
  if (n < 2) return NULL;
  const ttq_tensor **s = malloc((size_t)n * sizeof *s);
  if (!s) {
    *oom = true;
    return NULL;
  }
  for (uint64_t i = 0; i < n; i++) s[i] = &t[i];
  qsort(s, (size_t)n, sizeof *s, gg_name_cmp);
  const ttq_tensor *dup = NULL;
  for (uint64_t i = 1; i < n && !dup; i++)
    if (strcmp(s[i - 1]->name, s[i]->name) == 0) dup = s[i];
  free(s);
  return dup;
}

/* Reads the alignment from `general.alignment` (or the default) into *out. */
static int gg_alignment(const char *path, const ttq_gguf_file *f, uint64_t *out, ttq_diag *d) {
  *out = GG_DEFAULT_ALIGNMENT;
  const ttq_gguf_kv *kv = ttq_gguf_find_kv(f, "general.alignment");
  if (!kv) return 0;
  if (!gg_is_int_type(kv->type))
    return ttq__fail(d, TTQ_EFORMAT, "%s: general.alignment has type %s (expected uint32)", path,
                     gg_value_type_name(kv->type));
  bool neg = gg_is_signed_type(kv->type) && kv->v.i64 < 0;
  uint64_t a = kv->v.u64;
  if (neg || a == 0 || (a & (a - 1)) != 0)
    return ttq__fail(d, TTQ_EFORMAT, "%s: general.alignment = %s%" PRIu64 " is not a power of two",
                     path, neg ? "-" : "", neg ? (uint64_t)0 - a : a);
  *out = a;
  return 0;
}

/* Reads tensor info #i into *t. */
static int gg_tensor_info(gg_cur *c, uint64_t i, ttq_tensor *t, uint64_t *offset) {
  const char *path = c->path;
  ttq_gguf_str name;
  uint64_t len = 0;
  int why = gg_str(c, &name, &len);
  if (why) return gg_str_fail(c, why, len, "the name of tensor #%" PRIu64, i);
  if (memchr(name.ptr, 0, (size_t)name.len))
    return ttq__fail(c->d, TTQ_EFORMAT, "%s: tensor #%" PRIu64 ": name contains a NUL byte", path,
                     i);
  char *nm = malloc((size_t)name.len + 1);
  if (!nm) return ttq__fail(c->d, TTQ_ENOMEM, "%s: out of memory", path);
  memcpy(nm, name.ptr, (size_t)name.len);
  nm[name.len] = 0;
  t->name = nm;
  int nl = gg_shown(name.len);
  uint32_t nd, type;
  if (!gg_u32(c, &nd)) return gg_eof(c, "n_dims of tensor '%.*s'", nl, nm);
  if (nd > 4)
    return ttq__fail(c->d, TTQ_EFORMAT, "%s: tensor '%.*s': n_dims = %" PRIu32 " (at most 4)", path,
                     nl, nm, nd);
  uint64_t ne[4];
  /* The product of the non-zero dimensions must fit int64 (not just the running product,
   * which a zero dimension resets): then no order or subset of the dimensions overflows when
   * multiplied, e.g. ttq_tensor_numel over the reversed shape. */
  int64_t numel = 1, nonzero = 1;
  for (uint32_t k = 0; k < nd; k++) {
    if (!gg_u64(c, &ne[k])) return gg_eof(c, "ne[%" PRIu32 "] of tensor '%.*s'", k, nl, nm);
    if (ne[k] > (uint64_t)INT64_MAX ||
        (ne[k] && __builtin_mul_overflow(nonzero, (int64_t)ne[k], &nonzero)))
      return ttq__fail(c->d, TTQ_EFORMAT, "%s: tensor '%.*s': ne[%" PRIu32 "] = %" PRIu64
                       " overflows the element count", path, nl, nm, k, ne[k]);
    numel *= (int64_t)ne[k]; /* 0 or equal to `nonzero`: cannot overflow */
  }
  if (!gg_u32(c, &type)) return gg_eof(c, "the type of tensor '%.*s'", nl, nm);
  if (!gg_u64(c, offset)) return gg_eof(c, "the offset of tensor '%.*s'", nl, nm);
  if (gg_dtype_from_ggml(type, &t->dtype) != 0)
    return ttq__fail(c->d, TTQ_EUNSUPPORTED, "%s: tensor '%.*s': ggml type %" PRIu32 " (%s) is not "
                     "supported (supported: F32, F16, BF16, Q8_0)", path, nl, nm, type,
                     gg_ggml_type_name(type));
  if (t->dtype == TTQ_Q8_0 && (nd == 0 || ne[0] % 32 != 0))
    return ttq__fail(c->d, TTQ_EFORMAT, "%s: tensor '%.*s': Q8_0 rows of %" PRIu64 " values are "
                     "not whole 32-value blocks", path, nl, nm, nd ? ne[0] : 1);
  t->ndim = (int)nd;
  for (uint32_t k = 0; k < nd; k++) t->shape[k] = (int64_t)ne[nd - 1 - k];
  t->nbytes = ttq_dtype_bytes(t->dtype, numel);
  if (t->nbytes == 0 && numel != 0)
    return ttq__fail(c->d, TTQ_EFORMAT, "%s: tensor '%.*s': %" PRId64 " elements overflow", path,
                     nl, nm, numel);
  return 0;
}

void ttq_gguf_close(ttq_gguf_file *f) {
  if (!f) return;
  for (uint64_t i = 0; f->kv && i < f->n_kv; i++)
    if (f->kv[i].type == TTQ_GGUF_ARRAY) free(f->kv[i].v.arr.strs);
  free(f->kv);
  for (uint64_t i = 0; f->tensors && i < f->n_tensors; i++) free((void *)f->tensors[i].name);
  free(f->tensors);
  ttq__unmap_file(&f->map);
  memset(f, 0, sizeof *f);
}

int ttq_gguf_open(const char *path, ttq_gguf_file *out, ttq_diag *d) {
  memset(out, 0, sizeof *out);
  ttq_gguf_file f;
  memset(&f, 0, sizeof f);
  int rc = ttq__map_file(path, &f.map, d);
  if (rc) return rc;
  gg_cur c = {path, f.map.data, f.map.size, 0, d};
  gg_range *ranges = NULL;
  uint64_t *offsets = NULL;
  const uint8_t *p;
  uint64_t n_tensors, n_kv;

  if (!gg_take(&c, 4, &p)) {
    rc = gg_eof(&c, "the magic");
    goto fail;
  }
  if (memcmp(p, "GGUF", 4) != 0) {
    rc = ttq__fail(d, TTQ_EFORMAT, "%s: bad magic %02x %02x %02x %02x (expected \"GGUF\")", path,
                   p[0], p[1], p[2], p[3]);
    goto fail;
  }
  if (!gg_u32(&c, &f.version)) {
    rc = gg_eof(&c, "the version");
    goto fail;
  }
  if (f.version != 2 && f.version != 3) {
    rc = ttq__fail(d, TTQ_EUNSUPPORTED, "%s: GGUF version %" PRIu32 " is not supported (2 or 3)%s",
                   path, f.version,
                   (f.version & 0xffff) == 0 ? "; big-endian file?" : "");
    goto fail;
  }
  if (!gg_u64(&c, &n_tensors)) {
    rc = gg_eof(&c, "n_tensors");
    goto fail;
  }
  if (!gg_u64(&c, &n_kv)) {
    rc = gg_eof(&c, "n_kv");
    goto fail;
  }
  /* Smallest key/value: 8-byte key length + 4-byte type + 1-byte value. */
  if (n_kv > gg_left(&c) / 13) {
    rc = ttq__fail(d, TTQ_EFORMAT, "%s: n_kv = %" PRIu64 " cannot fit in the %zu bytes left after "
                   "the header", path, n_kv, gg_left(&c));
    goto fail;
  }
  /* Smallest tensor info: 8-byte name length + 4-byte n_dims + 4-byte type + 8-byte offset. */
  if (n_tensors > gg_left(&c) / 24) {
    rc = ttq__fail(d, TTQ_EFORMAT, "%s: n_tensors = %" PRIu64 " cannot fit in the %zu bytes left "
                   "after the header", path, n_tensors, gg_left(&c));
    goto fail;
  }
  f.kv = calloc(n_kv ? (size_t)n_kv : 1, sizeof *f.kv);
  if (!f.kv) {
    rc = ttq__fail(d, TTQ_ENOMEM, "%s: out of memory for %" PRIu64 " keys", path, n_kv);
    goto fail;
  }
  for (uint64_t i = 0; i < n_kv; i++) {
    ttq_gguf_kv *kv = &f.kv[i];
    f.n_kv = i + 1; /* so that close frees what this one allocates */
    uint64_t len = 0;
    int why = gg_str(&c, &kv->key, &len);
    if (why) {
      rc = gg_str_fail(&c, why, len, "the key of key/value #%" PRIu64, i);
      goto fail;
    }
    uint32_t type;
    if (!gg_u32(&c, &type)) {
      rc = gg_eof(&c, "the value type of key '%.*s'", gg_shown(kv->key.len), kv->key.ptr);
      goto fail;
    }
    kv->type = TTQ_GGUF_UINT8; /* nothing owned until gg_value sets the real type */
    if ((rc = gg_value(&c, kv, type))) goto fail;
  }
  bool oom;
  const ttq_gguf_kv *dk = gg_dup_key(f.kv, n_kv, &oom);
  if (oom || dk) {
    rc = oom ? ttq__fail(d, TTQ_ENOMEM, "%s: out of memory", path)
             : ttq__fail(d, TTQ_EFORMAT, "%s: duplicate key '%.*s'", path, gg_shown(dk->key.len),
                         dk->key.ptr);
    goto fail;
  }
  if ((rc = gg_alignment(path, &f, &f.alignment, d))) goto fail;

  if (n_tensors > gg_left(&c) / 24) {
    rc = ttq__fail(d, TTQ_EFORMAT, "%s: n_tensors = %" PRIu64 " cannot fit in the %zu bytes left "
                   "after the key/values", path, n_tensors, gg_left(&c));
    goto fail;
  }
  size_t nt = n_tensors ? (size_t)n_tensors : 1;
  f.tensors = calloc(nt, sizeof *f.tensors);
  offsets = calloc(nt, sizeof *offsets);
  ranges = calloc(nt, sizeof *ranges);
  if (!f.tensors || !offsets || !ranges) {
    rc = ttq__fail(d, TTQ_ENOMEM, "%s: out of memory for %" PRIu64 " tensors", path, n_tensors);
    goto fail;
  }
  for (uint64_t i = 0; i < n_tensors; i++) {
    f.n_tensors = i + 1;
    if ((rc = gg_tensor_info(&c, i, &f.tensors[i], &offsets[i]))) goto fail;
  }
  const ttq_tensor *dn = gg_dup_name(f.tensors, n_tensors, &oom);
  if (oom || dn) {
    rc = oom ? ttq__fail(d, TTQ_ENOMEM, "%s: out of memory", path)
             : ttq__fail(d, TTQ_EFORMAT, "%s: duplicate tensor name '%.*s'", path,
                         GG_NAME_MAX_SHOWN, dn->name);
    goto fail;
  }

  uint64_t data_start;
  if (!gg_align_up(c.pos, f.alignment, &data_start)) {
    rc = ttq__fail(d, TTQ_EFORMAT, "%s: alignment %" PRIu64 " overflows the data offset", path,
                   f.alignment);
    goto fail;
  }
  /* The padding up to the data section is part of the file (writers always emit it), even
   * with no tensors: a file that ends before it is truncated. This also bounds the alignment
   * of an accepted file by its size, so rewriting it (ttq_gguf_write pads to the alignment)
   * cannot turn a tiny file into an enormous one. */
  if (data_start > f.map.size) {
    rc = ttq__fail(d, TTQ_EFORMAT, "%s: the data section would start at offset %" PRIu64 " (tensor "
                   "infos end at %zu, alignment %" PRIu64 "), past the end of the file (%zu bytes)",
                   path, data_start, c.pos, f.alignment, f.map.size);
    goto fail;
  }
  for (uint64_t i = 0; i < n_tensors; i++) {
    ttq_tensor *t = &f.tensors[i];
    uint64_t off = offsets[i], begin, end;
    if (off % f.alignment != 0) {
      rc = ttq__fail(d, TTQ_EFORMAT, "%s: tensor '%.*s': offset %" PRIu64 " is not a multiple of "
                     "the alignment %" PRIu64, path, GG_NAME_MAX_SHOWN, t->name, off, f.alignment);
      goto fail;
    }
    if (__builtin_add_overflow(data_start, off, &begin) ||
        __builtin_add_overflow(begin, (uint64_t)t->nbytes, &end) || end > f.map.size) {
      rc = ttq__fail(d, TTQ_EFORMAT, "%s: tensor '%.*s': %zu bytes at offset %" PRIu64 " (data "
                     "starts at %" PRIu64 ") run past the end of the file (%zu bytes)", path,
                     GG_NAME_MAX_SHOWN, t->name, t->nbytes, off, data_start, f.map.size);
      goto fail;
    }
    t->data = f.map.data + begin;
    ranges[i] = (gg_range){off, off + t->nbytes, i};
  }
  qsort(ranges, (size_t)n_tensors, sizeof *ranges, gg_range_cmp);
  const gg_range *far = NULL; /* the non-empty range reaching furthest so far */
  for (uint64_t i = 0; i < n_tensors; i++) {
    const gg_range *r = &ranges[i];
    if (r->begin == r->end) continue;
    if (far && r->begin < far->end) {
      rc = ttq__fail(d, TTQ_EFORMAT, "%s: tensor '%.*s': data [%" PRIu64 ", %" PRIu64 ") overlaps "
                     "tensor '%.*s' at [%" PRIu64 ", %" PRIu64 ")", path, GG_NAME_MAX_SHOWN,
                     f.tensors[r->idx].name, r->begin, r->end, GG_NAME_MAX_SHOWN,
                     f.tensors[far->idx].name, far->begin, far->end);
      goto fail;
    }
    if (!far || r->end > far->end) far = r;
  }
  free(ranges);
  free(offsets);
  *out = f;
  return 0;

fail:
  free(ranges);
  free(offsets);
  ttq_gguf_close(&f);
  return rc;
}

const ttq_gguf_kv *ttq_gguf_find_kv(const ttq_gguf_file *f, const char *key) {
  size_t n = strlen(key);
  for (uint64_t i = 0; i < f->n_kv; i++)
    if (f->kv[i].key.len == n && memcmp(f->kv[i].key.ptr, key, n) == 0) return &f->kv[i];
  return NULL;
}

const ttq_tensor *ttq_gguf_find_tensor(const ttq_gguf_file *f, const char *name) {
  for (uint64_t i = 0; i < f->n_tensors; i++)
    if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
  return NULL;
}

int ttq_gguf_get_i64(const ttq_gguf_file *f, const char *key, int64_t *out) {
  const ttq_gguf_kv *kv = ttq_gguf_find_kv(f, key);
  if (!kv) return TTQ_ENOTFOUND;
  if (!gg_is_int_type(kv->type)) return TTQ_EFORMAT;
  if (gg_is_signed_type(kv->type)) {
    *out = kv->v.i64;
    return 0;
  }
  if (kv->v.u64 > (uint64_t)INT64_MAX) return TTQ_ERANGE;
  *out = (int64_t)kv->v.u64;
  return 0;
}

int ttq_gguf_get_f64(const ttq_gguf_file *f, const char *key, double *out) {
  const ttq_gguf_kv *kv = ttq_gguf_find_kv(f, key);
  if (!kv) return TTQ_ENOTFOUND;
  if (kv->type != TTQ_GGUF_FLOAT32 && kv->type != TTQ_GGUF_FLOAT64) return TTQ_EFORMAT;
  *out = kv->v.f64;
  return 0;
}

int ttq_gguf_get_str(const ttq_gguf_file *f, const char *key, char **out) {
  *out = NULL;
  const ttq_gguf_kv *kv = ttq_gguf_find_kv(f, key);
  if (!kv) return TTQ_ENOTFOUND;
  if (kv->type != TTQ_GGUF_STRING) return TTQ_EFORMAT;
  char *s = malloc((size_t)kv->v.str.len + 1);
  if (!s) return TTQ_ENOMEM;
  memcpy(s, kv->v.str.ptr, (size_t)kv->v.str.len);
  s[kv->v.str.len] = 0;
  *out = s;
  return 0;
}

/* ---- writer ---- */

typedef struct gg_out {
  FILE *fp;
  uint64_t pos; /* bytes written so far */
  bool ok;
} gg_out;

static void gg_put(gg_out *o, const void *p, size_t n) {
  if (o->ok && n && fwrite(p, 1, n, o->fp) != n) o->ok = false;
  o->pos += n;
}
static void gg_put_u32(gg_out *o, uint32_t v) { gg_put(o, &v, 4); }
static void gg_put_u64(gg_out *o, uint64_t v) { gg_put(o, &v, 8); }
static void gg_put_str(gg_out *o, ttq_gguf_str s) {
  gg_put_u64(o, s.len);
  gg_put(o, s.ptr, (size_t)s.len);
}
static void gg_pad(gg_out *o, uint64_t align) {
  static const uint8_t zeros[4096];
  uint64_t target;
  if (!gg_align_up(o->pos, align, &target)) {
    o->ok = false;
    return;
  }
  while (o->pos < target) {
    uint64_t k = target - o->pos;
    gg_put(o, zeros, k > sizeof zeros ? sizeof zeros : (size_t)k);
  }
}

/* Checks one key/value given to the writer; 0 or TTQ_EINVAL. */
static int gg_check_kv(const char *path, const ttq_gguf_kv *kv, uint64_t i, ttq_diag *d) {
  if (!kv->key.ptr && kv->key.len)
    return ttq__fail(d, TTQ_EINVAL, "%s: key #%" PRIu64 " has no name", path, i);
  int kl = kv->key.ptr ? gg_shown(kv->key.len) : 0;
  const char *kp = kv->key.ptr ? kv->key.ptr : "";
  uint64_t u = kv->v.u64;
  int64_t s = kv->v.i64;
  bool ok = true;
  switch (kv->type) {
  case TTQ_GGUF_UINT8: ok = u <= UINT8_MAX; break;
  case TTQ_GGUF_UINT16: ok = u <= UINT16_MAX; break;
  case TTQ_GGUF_UINT32: ok = u <= UINT32_MAX; break;
  case TTQ_GGUF_BOOL: ok = u <= 1; break;
  case TTQ_GGUF_INT8: ok = s >= INT8_MIN && s <= INT8_MAX; break;
  case TTQ_GGUF_INT16: ok = s >= INT16_MIN && s <= INT16_MAX; break;
  case TTQ_GGUF_INT32: ok = s >= INT32_MIN && s <= INT32_MAX; break;
  case TTQ_GGUF_UINT64: case TTQ_GGUF_INT64: case TTQ_GGUF_FLOAT64: break;
  case TTQ_GGUF_FLOAT32: {
    double x = kv->v.f64;
    ok = !(isfinite(x) && (x > FLT_MAX || x < -FLT_MAX)); /* finite but beyond float */
    break;
  }
  case TTQ_GGUF_STRING: ok = kv->v.str.ptr || !kv->v.str.len; break;
  case TTQ_GGUF_ARRAY:
    if (kv->v.arr.type == TTQ_GGUF_ARRAY || (uint32_t)kv->v.arr.type > TTQ_GGUF_FLOAT64)
      return ttq__fail(d, TTQ_EINVAL, "%s: key '%.*s': bad array element type %d", path, kl, kp,
                       (int)kv->v.arr.type);
    if (kv->v.arr.type == TTQ_GGUF_STRING) {
      ok = kv->v.arr.strs || !kv->v.arr.n;
      for (uint64_t k = 0; ok && k < kv->v.arr.n; k++)
        ok = kv->v.arr.strs[k].ptr || !kv->v.arr.strs[k].len;
    } else {
      size_t nb;
      ok = (kv->v.arr.data || !kv->v.arr.n) && kv->v.arr.n <= SIZE_MAX &&
           ttq__mul_ok((size_t)kv->v.arr.n, gg_scalar_size(kv->v.arr.type), &nb);
      for (uint64_t k = 0; ok && kv->v.arr.type == TTQ_GGUF_BOOL && k < kv->v.arr.n; k++)
        ok = kv->v.arr.data[k] <= 1; /* the reader refuses other bools */
    }
    break;
  default:
    return ttq__fail(d, TTQ_EINVAL, "%s: key '%.*s': unknown value type %d", path, kl, kp,
                     (int)kv->type);
  }
  if (!ok)
    return ttq__fail(d, TTQ_EINVAL, "%s: key '%.*s': value does not fit type %s (or is NULL)",
                     path, kl, kp, gg_value_type_name(kv->type));
  return 0;
}

static void gg_put_value(gg_out *o, const ttq_gguf_kv *kv) {
  uint64_t u = kv->v.u64;
  int64_t s = kv->v.i64;
  switch (kv->type) {
  case TTQ_GGUF_UINT8: case TTQ_GGUF_BOOL: { uint8_t x = (uint8_t)u; gg_put(o, &x, 1); break; }
  case TTQ_GGUF_INT8: { int8_t x = (int8_t)s; gg_put(o, &x, 1); break; }
  case TTQ_GGUF_UINT16: { uint16_t x = (uint16_t)u; gg_put(o, &x, 2); break; }
  case TTQ_GGUF_INT16: { int16_t x = (int16_t)s; gg_put(o, &x, 2); break; }
  case TTQ_GGUF_UINT32: { uint32_t x = (uint32_t)u; gg_put(o, &x, 4); break; }
  case TTQ_GGUF_INT32: { int32_t x = (int32_t)s; gg_put(o, &x, 4); break; }
  case TTQ_GGUF_FLOAT32: { float x = (float)kv->v.f64; gg_put(o, &x, 4); break; }
  case TTQ_GGUF_UINT64: gg_put(o, &u, 8); break;
  case TTQ_GGUF_INT64: gg_put(o, &s, 8); break;
  case TTQ_GGUF_FLOAT64: gg_put(o, &kv->v.f64, 8); break;
  case TTQ_GGUF_STRING: gg_put_str(o, kv->v.str); break;
  case TTQ_GGUF_ARRAY:
    gg_put_u32(o, (uint32_t)kv->v.arr.type);
    gg_put_u64(o, kv->v.arr.n);
    if (kv->v.arr.type == TTQ_GGUF_STRING)
      for (uint64_t k = 0; k < kv->v.arr.n; k++) gg_put_str(o, kv->v.arr.strs[k]);
    else
      gg_put(o, kv->v.arr.data, (size_t)kv->v.arr.n * gg_scalar_size(kv->v.arr.type));
    break;
  }
}

/* Checks one tensor given to the writer and computes its ggml type; 0 or TTQ_E*. */
static int gg_check_tensor(const char *path, const ttq_tensor *t, uint64_t i, uint32_t *type,
                           ttq_diag *d) {
  if (!t->name) return ttq__fail(d, TTQ_EINVAL, "%s: tensor #%" PRIu64 " has no name", path, i);
  if (gg_ggml_from_dtype(t->dtype, type) != 0)
    return ttq__fail(d, TTQ_EINVAL, "%s: tensor '%s': bad dtype %d", path, t->name, (int)t->dtype);
  if (t->ndim < 0 || t->ndim > 4)
    return ttq__fail(d, TTQ_EINVAL, "%s: tensor '%s': ndim %d (0 to 4)", path, t->name, t->ndim);
  int64_t numel = 1, nonzero = 1; /* the reader's rule: non-zero dims' product fits */
  for (int k = 0; k < t->ndim; k++) {
    if (t->shape[k] < 0 || (t->shape[k] && __builtin_mul_overflow(nonzero, t->shape[k], &nonzero)))
      return ttq__fail(d, TTQ_EINVAL, "%s: tensor '%s': bad shape[%d] = %" PRId64, path, t->name,
                       k, t->shape[k]);
    numel *= t->shape[k];
  }
  if (t->dtype == TTQ_Q8_0 && (t->ndim == 0 || t->shape[t->ndim - 1] % 32 != 0))
    return ttq__fail(d, TTQ_EINVAL, "%s: tensor '%s': Q8_0 rows must hold whole 32-value blocks",
                     path, t->name);
  size_t want = ttq_dtype_bytes(t->dtype, numel);
  if ((want == 0 && numel != 0) || t->nbytes != want || (want && !t->data))
    return ttq__fail(d, TTQ_EINVAL, "%s: tensor '%s': nbytes %zu but its shape needs %zu", path,
                     t->name, t->nbytes, want);
  return 0;
}

int ttq_gguf_write(const char *path, const ttq_gguf_kv *kv, uint64_t n_kv,
                   const ttq_tensor *tensors, uint64_t n_tensors, ttq_diag *d) {
  if (!path || (n_kv && !kv) || (n_tensors && !tensors) || n_kv > SIZE_MAX / sizeof(void *) ||
      n_tensors > SIZE_MAX / sizeof(void *))
    return ttq__fail(d, TTQ_EINVAL, "%s: ttq_gguf_write: bad arguments", path ? path : "(null)");
  int rc;
  for (uint64_t i = 0; i < n_kv; i++)
    if ((rc = gg_check_kv(path, &kv[i], i, d))) return rc;
  bool oom;
  const ttq_gguf_kv *dk = gg_dup_key(kv, n_kv, &oom);
  if (oom) return ttq__fail(d, TTQ_ENOMEM, "%s: out of memory", path);
  if (dk)
    return ttq__fail(d, TTQ_EINVAL, "%s: duplicate key '%.*s'", path, gg_shown(dk->key.len),
                     dk->key.ptr);
  const ttq_gguf_file view = {.n_kv = n_kv, .kv = (ttq_gguf_kv *)kv};
  uint64_t align;
  if ((rc = gg_alignment(path, &view, &align, d))) return rc == TTQ_EFORMAT ? TTQ_EINVAL : rc;

  uint32_t *types = malloc((n_tensors ? (size_t)n_tensors : 1) * sizeof *types);
  if (!types) return ttq__fail(d, TTQ_ENOMEM, "%s: out of memory", path);
  for (uint64_t i = 0; i < n_tensors; i++)
    if ((rc = gg_check_tensor(path, &tensors[i], i, &types[i], d))) {
      free(types);
      return rc;
    }
  const ttq_tensor *dn = gg_dup_name(tensors, n_tensors, &oom);
  if (oom || dn) {
    free(types);
    return oom ? ttq__fail(d, TTQ_ENOMEM, "%s: out of memory", path)
               : ttq__fail(d, TTQ_EINVAL, "%s: duplicate tensor name '%s'", path, dn->name);
  }

  gg_out o = {fopen(path, "wb"), 0, true};
  if (!o.fp) {
    free(types);
    return ttq__fail(d, TTQ_EIO, "%s: cannot create: %s", path, strerror(errno));
  }
  setvbuf(o.fp, NULL, _IOFBF, 1 << 20);
  gg_put(&o, "GGUF", 4);
  gg_put_u32(&o, 3);
  gg_put_u64(&o, n_tensors);
  gg_put_u64(&o, n_kv);
  for (uint64_t i = 0; i < n_kv; i++) {
    gg_put_str(&o, kv[i].key);
    gg_put_u32(&o, (uint32_t)kv[i].type);
    gg_put_value(&o, &kv[i]);
  }
  uint64_t off = 0;
  for (uint64_t i = 0; i < n_tensors && o.ok; i++) {
    const ttq_tensor *t = &tensors[i];
    gg_put_str(&o, (ttq_gguf_str){t->name, strlen(t->name)});
    gg_put_u32(&o, (uint32_t)t->ndim);
    for (int k = t->ndim - 1; k >= 0; k--) gg_put_u64(&o, (uint64_t)t->shape[k]);
    gg_put_u32(&o, types[i]);
    gg_put_u64(&o, off);
    uint64_t end;
    if (__builtin_add_overflow(off, (uint64_t)t->nbytes, &end) || !gg_align_up(end, align, &off))
      o.ok = false;
  }
  free(types);
  gg_pad(&o, align);
  for (uint64_t i = 0; i < n_tensors && o.ok; i++) {
    gg_put(&o, tensors[i].data, tensors[i].nbytes);
    gg_pad(&o, align);
  }
  int e = errno;
  if (fclose(o.fp) != 0 && o.ok) {
    o.ok = false;
    e = errno;
  }
  if (!o.ok) {
    unlink(path);
    return ttq__fail(d, TTQ_EIO, "%s: write failed: %s", path, strerror(e));
  }
  return 0;
}
