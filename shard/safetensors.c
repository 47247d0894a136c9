/* safetensors.c -- reads and writes safetensors files.
 *
 * Layout of a file:
 *
 *   +-----------------+------------------------------+-------------------------------+
 *   | u64 LE length N | N bytes of JSON (the header) | data section (to end of file) |
 *   +-----------------+------------------------------+-------------------------------+
 *
 * The header is one JSON object: every member but `__metadata__` (an object of strings,
 * ignored) describes a tensor as {"dtype": "BF16", "shape": [r, c], "data_offsets": [b, e]},
 * with [b, e) relative to the start of the data section. The header may be padded at its end
 * with spaces.
 *
 * Reading maps the whole file and never copies tensor data: every ttq_tensor handed out is a
 * view into the map, valid until ttq_st_close. The reader trusts nothing in the file. Every
 * successful ttq_st_open guarantees:
 *   - 8 + N <= file size and N <= ST_MAX_HEADER;
 *   - every tensor has a supported dtype (F32, F16, BF16), 0 <= ndim <= 4, shape[i] >= 0,
 *     the product of the non-zero shape[i] fits int64 (so no product of dimensions
 *     overflows, in any order), and nbytes == ttq_dtype_bytes(dtype, numel);
 *   - b <= e <= data size and e - b == nbytes;
 *   - byte ranges of distinct (non-empty) tensors do not overlap; names are unique.
 * Gaps between tensors and bytes after the last one are tolerated (the views stay in bounds).
 * Tensors are listed in header order.
 *
 * Writing (ttq_st_write) lays the tensors out back to back in the order given, and pads the
 * JSON header with spaces so that the data section starts at a multiple of 8. */
#include "safetensors.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c reads the little-endian header length natively: little-endian hosts only"
#endif

/* Upper bound on the JSON header (the reference implementation uses the same limit). */
#define ST_MAX_HEADER ((uint64_t)100000000)

/* Maps a safetensors dtype string to a ttq dtype; 0 on success, -1 when not supported. */
static int st_dtype_from_name(const char *s, ttq_dtype *out) {
  if (!strcmp(s, "F32")) *out = TTQ_F32;
  else if (!strcmp(s, "F16")) *out = TTQ_F16;
  else if (!strcmp(s, "BF16")) *out = TTQ_BF16;
  else return -1;
  return 0;
}

/* Frees everything a (possibly partly built) ttq_st_file owns and zeroes it. */
void ttq_st_close(ttq_st_file *f) {
  if (!f) return;
  for (int i = 0; i < f->n_tensors; i++) free((void *)f->tensors[i].name);
  free(f->tensors);
  ttq__unmap_file(&f->map);
  memset(f, 0, sizeof *f);
}

/* Reads one non-negative JSON integer; 0 or -1. */
static int st_json_u64(const json_t *v, uint64_t *out) {
  if (!json_is_integer(v)) return -1;
  json_int_t x = json_integer_value(v);
  if (x < 0) return -1;
  *out = (uint64_t)x;
  return 0;
}

/* Writes a JSON rendering of v into out[n] (n > 4), shortened with "..." (for messages). */
static const char *st_show(const json_t *v, char *out, size_t n) {
  char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
  snprintf(out, n, "%s", s ? s : "?");
  if (s && strlen(s) >= n && n > 4) memcpy(out + n - 4, "...", 4);
  free(s);
  return out;
}

/* Range of one tensor in the data section, for the overlap check. */
typedef struct st_range {
  uint64_t begin, end;
  int idx;
} st_range;

static int st_range_cmp(const void *a, const void *b) {
  const st_range *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

/* Validates one header entry `name: v` and fills *t (name is set by the caller) and *r.
 * `data_size` is the size of the data section. */
static int st_parse_entry(const char *path, const char *name, const json_t *v,
                          const uint8_t *data, uint64_t data_size, ttq_tensor *t, st_range *r,
                          ttq_diag *d) {
  if (!json_is_object(v))
    return ttq__fail(d, TTQ_EFORMAT, "%s: tensor '%s': entry is not a JSON object", path, name);
  char shown[64];
  const json_t *jdt = json_object_get(v, "dtype");
  const json_t *jshape = json_object_get(v, "shape");
  const json_t *joff = json_object_get(v, "data_offsets");
  if (!jdt)
    return ttq__fail(d, TTQ_EFORMAT, "%s: tensor '%s': field 'dtype' is missing", path, name);
  if (!json_is_string(jdt))
    return ttq__fail(d, TTQ_EFORMAT, "%s: tensor '%s': field 'dtype' is not a string: %s", path,
                     name, st_show(jdt, shown, sizeof shown));
  if (!jshape)
    return ttq__fail(d, TTQ_EFORMAT, "%s: tensor '%s': field 'shape' is missing", path, name);
  if (!json_is_array(jshape))
    return ttq__fail(d, TTQ_EFORMAT, "%s: tensor '%s': field 'shape' is not an array: %s", path,
                     name, st_show(jshape, shown, sizeof shown));
  if (!joff)
    return ttq__fail(d, TTQ_EFORMAT, "%s: tensor '%s': field 'data_offsets' is missing", path,
                     name);
  if (!json_is_array(joff))
    return ttq__fail(d, TTQ_EFORMAT, "%s: tensor '%s': field 'data_offsets' is not an array: %s",
                     path, name, st_show(joff, shown, sizeof shown));

  const char *dts = json_string_value(jdt);
  if (st_dtype_from_name(dts, &t->dtype) != 0)
    return ttq__fail(d, TTQ_EUNSUPPORTED,
                     "%s: tensor '%s': dtype '%.64s' is not supported (supported: F32, F16, BF16)",
                     path, name, dts);

  size_t ndim = json_array_size(jshape);
  if (ndim > 4)
    return ttq__fail(d, TTQ_EUNSUPPORTED, "%s: tensor '%s': shape has %zu dimensions (at most 4)",
                     path, name, ndim);
  t->ndim = (int)ndim;
  /* The product of the non-zero dimensions must fit int64 (a zero dimension would otherwise
   * hide an overflow of the others): no order or subset of them overflows when multiplied. */
  int64_t numel = 1, nonzero = 1;
  for (size_t i = 0; i < ndim; i++) {
    const json_t *e = json_array_get(jshape, i);
    if (!json_is_integer(e))
      return ttq__fail(d, TTQ_EFORMAT, "%s: tensor '%s': shape[%zu] = %s is not an integer", path,
                       name, i, st_show(e, shown, sizeof shown));
    json_int_t x = json_integer_value(e);
    if (x < 0)
      return ttq__fail(d, TTQ_EFORMAT, "%s: tensor '%s': shape[%zu] = %lld is negative", path,
                       name, i, (long long)x);
    t->shape[i] = (int64_t)x;
    if (x && __builtin_mul_overflow(nonzero, (int64_t)x, &nonzero))
      return ttq__fail(d, TTQ_EFORMAT, "%s: tensor '%s': shape overflows (dimension %zu = %lld)",
                       path, name, i, (long long)x);
    numel *= (int64_t)x; /* 0 or equal to `nonzero`: cannot overflow */
  }

  uint64_t b, e;
  if (json_array_size(joff) != 2 || st_json_u64(json_array_get(joff, 0), &b) ||
      st_json_u64(json_array_get(joff, 1), &e))
    return ttq__fail(d, TTQ_EFORMAT,
                     "%s: tensor '%s': data_offsets %s is not [begin, end] of non-negative "
                     "integers", path, name, st_show(joff, shown, sizeof shown));
  if (e < b)
    return ttq__fail(d, TTQ_EFORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                     "] ends before it begins", path, name, b, e);
  if (e > data_size)
    return ttq__fail(d, TTQ_EFORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                     "] past the end of the data (%" PRIu64 " bytes)", path, name, b, e, data_size);
  size_t want = ttq_dtype_bytes(t->dtype, numel);
  if (want == 0 && numel != 0)
    return ttq__fail(d, TTQ_EFORMAT, "%s: tensor '%s': %lld elements of %s overflow", path, name,
                     (long long)numel, dts);
  if (e - b != (uint64_t)want)
    return ttq__fail(d, TTQ_EFORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                     "] hold %" PRIu64 " bytes but %s shape of %lld elements needs %zu", path,
                     name, b, e, e - b, dts, (long long)numel, want);
  t->data = data + b;
  t->nbytes = want;
  r->begin = b;
  r->end = e;
  return 0;
}

int ttq_st_open(const char *path, ttq_st_file *out, ttq_diag *d) {
  memset(out, 0, sizeof *out);
  ttq_st_file f;
  memset(&f, 0, sizeof f);
  int rc = ttq__map_file(path, &f.map, d);
  if (rc) return rc;
  json_t *root = NULL;
  st_range *ranges = NULL;
  uint64_t size = f.map.size, n;

  if (size < 8) {
    rc = ttq__fail(d, TTQ_EFORMAT, "%s: file is %" PRIu64 " bytes, too short for a safetensors "
                   "header length", path, size);
    goto fail;
  }
  memcpy(&n, f.map.data, 8);
  if (n > ST_MAX_HEADER) {
    rc = ttq__fail(d, TTQ_EFORMAT, "%s: header length %" PRIu64 " is absurd (limit %" PRIu64 ")",
                   path, n, ST_MAX_HEADER);
    goto fail;
  }
  if (n > size - 8) {
    rc = ttq__fail(d, TTQ_EFORMAT, "%s: header length %" PRIu64 " past the end of the file (%"
                   PRIu64 " bytes)", path, n, size);
    goto fail;
  }
  if (n < 2 || f.map.data[8] != '{') {
    rc = ttq__fail(d, TTQ_EFORMAT, "%s: header (%" PRIu64 " bytes) does not start with a JSON "
                   "object", path, n);
    goto fail;
  }
  json_error_t jerr;
  root = json_loadb((const char *)f.map.data + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) {
    if (json_error_code(&jerr) == json_error_duplicate_key)
      rc = ttq__fail(d, TTQ_EFORMAT, "%s: duplicate key in header (tensor names and fields must "
                     "be unique): %s", path, jerr.text);
    else
      rc = ttq__fail(d, TTQ_EFORMAT, "%s: bad JSON header at byte %d: %s", path, jerr.position,
                     jerr.text);
    goto fail;
  }
  if (!json_is_object(root)) {
    rc = ttq__fail(d, TTQ_EFORMAT, "%s: header is not a JSON object", path);
    goto fail;
  }

  const uint8_t *data = f.map.data + 8 + n;
  uint64_t data_size = size - 8 - n;
  size_t cap = json_object_size(root);
  f.tensors = calloc(cap ? cap : 1, sizeof *f.tensors);
  ranges = calloc(cap ? cap : 1, sizeof *ranges);
  if (!f.tensors || !ranges) {
    rc = ttq__fail(d, TTQ_ENOMEM, "%s: out of memory for %zu tensors", path, cap);
    goto fail;
  }
  const char *key;
  json_t *val;
  json_object_foreach(root, key, val) {
    if (!strcmp(key, "__metadata__")) {
      const char *mk;
      json_t *mv;
      if (!json_is_object(val)) {
        rc = ttq__fail(d, TTQ_EFORMAT, "%s: __metadata__ is not a JSON object", path);
        goto fail;
      }
      json_object_foreach(val, mk, mv) {
        if (!json_is_string(mv)) {
          rc = ttq__fail(d, TTQ_EFORMAT, "%s: __metadata__ value of '%s' is not a string", path,
                         mk);
          goto fail;
        }
      }
      continue;
    }
    if (f.n_tensors >= INT32_MAX) { /* cannot happen: ST_MAX_HEADER bounds the count */
      rc = ttq__fail(d, TTQ_EFORMAT, "%s: too many tensors", path);
      goto fail;
    }
    ttq_tensor *t = &f.tensors[f.n_tensors];
    st_range *r = &ranges[f.n_tensors];
    if ((rc = st_parse_entry(path, key, val, data, data_size, t, r, d))) goto fail;
    if (!(t->name = strdup(key))) {
      rc = ttq__fail(d, TTQ_ENOMEM, "%s: out of memory", path);
      goto fail;
    }
    r->idx = f.n_tensors++;
  }

  /* Overlaps: sort by begin; a non-empty range must start at or after the furthest end seen. */
  qsort(ranges, (size_t)f.n_tensors, sizeof *ranges, st_range_cmp);
  const st_range *far = NULL; /* the non-empty range reaching furthest so far */
  for (int i = 0; i < f.n_tensors; i++) {
    const st_range *r = &ranges[i];
    if (r->begin == r->end) continue;
    if (far && r->begin < far->end) {
      rc = ttq__fail(d, TTQ_EFORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                     "] overlap tensor '%s' at [%" PRIu64 ", %" PRIu64 "]", path,
                     f.tensors[r->idx].name, r->begin, r->end, f.tensors[far->idx].name,
                     far->begin, far->end);
      goto fail;
    }
    if (!far || r->end > far->end) far = r;
  }
  free(ranges);
  json_decref(root);
  *out = f;
  return 0;

fail:
  free(ranges);
  json_decref(root);
  ttq_st_close(&f);
  return rc;
}

const ttq_tensor *ttq_st_find(const ttq_st_file *f, const char *name) {
  for (int i = 0; i < f->n_tensors; i++)
    if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
  return NULL;
}

/* ---- writer ---- */

/* Builds the JSON header for the given tensors (offsets back to back in the order given);
 * caller json_decref's *out. jansson's *_set_new/append_new steal the value even on failure. */
static int st_build_header(const char *path, const ttq_tensor *ts, int n,
                           const char *const *meta_kv, int n_meta, json_t **out, ttq_diag *d) {
  json_t *root = json_object();
  if (!root) return ttq__fail(d, TTQ_ENOMEM, "%s: out of memory", path);
  int rc = 0;
  if (n_meta > 0) {
    json_t *m = json_object();
    if (json_object_set_new(root, "__metadata__", m)) {
      rc = ttq__fail(d, TTQ_ENOMEM, "%s: out of memory", path);
      goto fail;
    }
    for (int i = 0; i < n_meta; i++) {
      const char *k = meta_kv[2 * i], *v = meta_kv[2 * i + 1];
      if (!k || !v) {
        rc = ttq__fail(d, TTQ_EINVAL, "%s: metadata pair %d has a NULL key or value", path, i);
        goto fail;
      }
      if (json_object_set_new(m, k, json_string(v))) {
        rc = ttq__fail(d, TTQ_EINVAL, "%s: metadata '%s' is not valid UTF-8", path, k);
        goto fail;
      }
    }
  }
  uint64_t off = 0;
  for (int i = 0; i < n; i++) {
    const ttq_tensor *t = &ts[i];
    if (!t->name || !strcmp(t->name, "__metadata__")) {
      rc = ttq__fail(d, TTQ_EINVAL, "%s: tensor %d has %s name", path, i,
                     t->name ? "the reserved" : "no");
      goto fail;
    }
    if (json_object_get(root, t->name)) {
      rc = ttq__fail(d, TTQ_EINVAL, "%s: tensor '%s': duplicate name", path, t->name);
      goto fail;
    }
    if (t->dtype != TTQ_F32 && t->dtype != TTQ_F16 && t->dtype != TTQ_BF16) {
      rc = ttq__fail(d, TTQ_EUNSUPPORTED, "%s: tensor '%s': dtype %s cannot be stored in "
                     "safetensors", path, t->name, ttq_dtype_name(t->dtype));
      goto fail;
    }
    if (t->ndim < 0 || t->ndim > 4) {
      rc = ttq__fail(d, TTQ_EINVAL, "%s: tensor '%s': ndim %d", path, t->name, t->ndim);
      goto fail;
    }
    int64_t numel = 1, nonzero = 1; /* the reader's rule: non-zero dims' product fits */
    for (int k = 0; k < t->ndim; k++) {
      if (t->shape[k] < 0 ||
          (t->shape[k] && __builtin_mul_overflow(nonzero, t->shape[k], &nonzero))) {
        rc = ttq__fail(d, TTQ_EINVAL, "%s: tensor '%s': bad shape[%d] = %lld", path, t->name, k,
                       (long long)t->shape[k]);
        goto fail;
      }
      numel *= t->shape[k];
    }
    size_t want = ttq_dtype_bytes(t->dtype, numel);
    if ((want == 0 && numel != 0) || t->nbytes != want || (want && !t->data)) {
      rc = ttq__fail(d, TTQ_EINVAL, "%s: tensor '%s': nbytes %zu but shape needs %zu", path,
                     t->name, t->nbytes, want);
      goto fail;
    }
    if (want > (uint64_t)INT64_MAX - off) {
      rc = ttq__fail(d, TTQ_EINVAL, "%s: tensors too large", path);
      goto fail;
    }
    json_t *e = json_object(), *shape = json_array();
    if (json_object_set_new(root, t->name, e) || json_object_set_new(e, "shape", shape)) {
      rc = ttq__fail(d, TTQ_EINVAL, "%s: tensor '%s': name is not valid UTF-8 (or out of memory)",
                     path, t->name);
      goto fail;
    }
    int bad = json_object_set_new(e, "dtype", json_string(ttq_dtype_name(t->dtype)));
    for (int k = 0; k < t->ndim; k++)
      bad |= json_array_append_new(shape, json_integer(t->shape[k]));
    bad |= json_object_set_new(e, "data_offsets", json_pack("[II]", (json_int_t)off,
                                                            (json_int_t)(off + want)));
    if (bad) {
      rc = ttq__fail(d, TTQ_ENOMEM, "%s: out of memory", path);
      goto fail;
    }
    off += want;
  }
  *out = root;
  return 0;
fail:
  json_decref(root);
  return rc;
}

int ttq_st_write(const char *path, const ttq_tensor *tensors, int n, const char *const *meta_kv,
                 int n_meta, ttq_diag *d) {
  if (!path || n < 0 || (n > 0 && !tensors) || n_meta < 0 || (n_meta > 0 && !meta_kv))
    return ttq__fail(d, TTQ_EINVAL, "%s: ttq_st_write: bad arguments", path ? path : "(null)");
  json_t *root = NULL;
  int rc = st_build_header(path, tensors, n, meta_kv, n_meta, &root, d);
  if (rc) return rc;
  char *js = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  if (!js) return ttq__fail(d, TTQ_ENOMEM, "%s: out of memory", path);
  size_t jl = strlen(js), hl = (jl + 7) & ~(size_t)7;
  FILE *fp = fopen(path, "wb");
  if (!fp) {
    free(js);
    return ttq__fail(d, TTQ_EIO, "%s: cannot create: %s", path, strerror(errno));
  }
  uint64_t hl64 = hl;
  static const char spaces[8] = "        ";
  int ok = fwrite(&hl64, 8, 1, fp) == 1 && fwrite(js, 1, jl, fp) == jl &&
           fwrite(spaces, 1, hl - jl, fp) == hl - jl;
  free(js);
  for (int i = 0; ok && i < n; i++)
    if (tensors[i].nbytes)
      ok = fwrite(tensors[i].data, 1, tensors[i].nbytes, fp) == tensors[i].nbytes;
  int e = errno;
  if (fclose(fp) != 0 && ok) {
    ok = 0;
    e = errno;
  }
  if (!ok) {
    unlink(path);
    return ttq__fail(d, TTQ_EIO, "%s: write failed: %s", path, strerror(e));
  }
  return 0;
}
