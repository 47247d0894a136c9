/* test-formats.c -- safetensors and GGUF readers/writers.
 *
 * References are independent of the code under test: config.json and
 * model.safetensors.index.json (parsed here with jansson), bytes read from the files with
 * stdio, facts about the shared GGUF established with a separate parser (a short Python
 * script: data starts at byte 266432, 58 F16 + 17 F32 tensors, 7934 merges), the BF16
 * safetensors twin of that GGUF, and hand-assembled byte streams (gg_craft below) for the
 * malformed-input tests. */
#include <jansson.h>
#include <stdint.h>
#include <unistd.h>

#include "gguf.h"
#include "safetensors.h"
#include "test.h"
#include "util.h"

/* ---- small helpers ---- */

typedef struct buf {
  uint8_t *p;
  size_t n, cap;
} buf;

static void buf_put(buf *b, const void *p, size_t n) {
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2 + 64;
    b->p = realloc(b->p, b->cap);
    if (!b->p) abort();
  }
  if (n) memcpy(b->p + b->n, p, n);
  b->n += n;
}
static void buf_u8(buf *b, uint8_t v) { buf_put(b, &v, 1); }
static void buf_u32(buf *b, uint32_t v) { buf_put(b, &v, 4); }
static void buf_u64(buf *b, uint64_t v) { buf_put(b, &v, 8); }
static void buf_str(buf *b, const char *s) {
  buf_u64(b, strlen(s));
  buf_put(b, s, strlen(s));
}
static void buf_pad(buf *b, size_t align) {
  while (b->n % align) buf_u8(b, 0);
}

/* Reads a whole file with stdio (independent of the mmap path); malloc'd. */
static uint8_t *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *p = malloc(n > 0 ? (size_t)n : 1);
  if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
    free(p);
    p = NULL;
  }
  fclose(f);
  *len = (size_t)n;
  return p;
}

/* Replaces a file. Unlinking first matters: ext4 flushes a file rewritten through O_TRUNC when
 * it is closed (auto_da_alloc), which makes thousands of small rewrites take seconds. */
static int put_file(const char *path, const void *data, size_t len) {
  unlink(path);
  return test_write_file(path, data, len);
}

static char *join2(const char *dir, const char *name) { return ttq__path_join(dir, name); }

/* Runs fn(dir) inside a fresh temporary directory that is removed afterwards. */
static int with_tmpdir(int (*fn)(const char *dir)) {
  char *dir = test_tmpdir();
  ASSERT(dir);
  int rc = fn(dir);
  test_rmtree(dir);
  free(dir);
  return rc;
}

/* True when a view lies inside the map. */
static int view_inside(const ttq_mapfile *m, const ttq_tensor *t) {
  const uint8_t *p = t->data;
  return p >= m->data && (size_t)(p - m->data) <= m->size && t->nbytes <= m->size - (size_t)(p - m->data);
}

/* Invariants every successfully opened file must satisfy (used by the fuzz sweeps). */
static int check_tensors(const ttq_mapfile *m, const ttq_tensor *t, uint64_t n) {
  for (uint64_t i = 0; i < n; i++) {
    if (!t[i].name || !view_inside(m, &t[i])) return 1;
    if (t[i].ndim < 0 || t[i].ndim > 4) return 1;
    int64_t ne = 1;
    for (int k = 0; k < t[i].ndim; k++) {
      if (t[i].shape[k] < 0 || __builtin_mul_overflow(ne, t[i].shape[k], &ne)) return 1;
    }
    if (t[i].nbytes != ttq_dtype_bytes(t[i].dtype, ne)) return 1;
  }
  return 0;
}

/* TTQ_TEST_VERBOSE=1 prints every refusal message (to review their wording). */
static void show(const ttq_diag *d) {
  const char *v = getenv("TTQ_TEST_VERBOSE");
  if (v && *v && *v != '0') fprintf(stderr, "  [%d] %s\n", d->code, d->msg);
}

static void fill_random(void *p, size_t n, uint64_t *rng) {
  uint8_t *b = p;
  for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(test_rand_u64(rng) >> 56);
}

/* ================================ safetensors ================================ */

/* Compares one tensor of an opened shard with bytes read by stdio at the offset the
 * test's own JSON parse gives. */
static int st_check_bytes(const char *file, const ttq_st_file *f, const char *name) {
  size_t len;
  uint8_t *raw = slurp(file, &len);
  ASSERT(raw && len >= 8);
  uint64_t n;
  memcpy(&n, raw, 8);
  ASSERT(8 + n <= len);
  json_error_t e;
  json_t *h = json_loadb((const char *)raw + 8, (size_t)n, 0, &e);
  ASSERTF(h, "%s", e.text);
  json_t *ent = json_object_get(h, name);
  ASSERT(ent);
  json_int_t b = json_integer_value(json_array_get(json_object_get(ent, "data_offsets"), 0));
  json_int_t en = json_integer_value(json_array_get(json_object_get(ent, "data_offsets"), 1));
  const ttq_tensor *t = ttq_st_find(f, name);
  ASSERT(t);
  ASSERT((size_t)(en - b) == t->nbytes);
  ASSERT(memcmp(raw + 8 + n + b, t->data, t->nbytes) == 0);
  ASSERT((const uint8_t *)t->data == f->map.data + 8 + n + b);
  json_decref(h);
  free(raw);
  return 0;
}

/* Opens every shard named in a Hugging Face index, checks each tensor listed there is in the
 * shard it names, that all data is covered, and that total_size matches. Returns the number
 * of tensors in *count. */
static int st_check_hf_dir(const char *dir, int *count) {
  char *ip = join2(dir, "model.safetensors.index.json");
  json_error_t e;
  json_t *idx = json_load_file(ip, 0, &e);
  ASSERTF(idx, "%s: %s", ip, e.text);
  json_t *wm = json_object_get(idx, "weight_map");
  ASSERT(json_is_object(wm));
  int64_t total = json_integer_value(json_object_get(json_object_get(idx, "metadata"), "total_size"));
  ASSERT(total > 0);
  /* distinct shard names */
  const char *shards[16];
  int n_shards = 0;
  const char *k;
  json_t *v;
  json_object_foreach(wm, k, v) {
    int seen = 0;
    for (int i = 0; i < n_shards; i++) seen |= !strcmp(shards[i], json_string_value(v));
    if (!seen) {
      ASSERT(n_shards < 16);
      shards[n_shards++] = json_string_value(v);
    }
  }
  int64_t sum = 0;
  int n = 0;
  for (int s = 0; s < n_shards; s++) {
    char *p = join2(dir, shards[s]);
    ttq_st_file f;
    ttq_diag d = {0};
    int rc = ttq_st_open(p, &f, &d);
    ASSERTF(rc == 0, "%s: %s", p, d.msg);
    uint64_t hl;
    memcpy(&hl, f.map.data, 8);
    size_t covered = 0;
    for (int i = 0; i < f.n_tensors; i++) {
      const ttq_tensor *t = &f.tensors[i];
      ASSERT(view_inside(&f.map, t));
      ASSERT(t->dtype == TTQ_BF16);
      json_t *where = json_object_get(wm, t->name);
      ASSERTF(where && !strcmp(json_string_value(where), shards[s]), "%s", t->name);
      sum += (int64_t)t->nbytes;
      covered += t->nbytes;
    }
    /* Files written by the reference library are dense: tensors cover the data section. */
    ASSERT(covered == f.map.size - 8 - hl);
    json_object_foreach(wm, k, v) {
      if (!strcmp(json_string_value(v), shards[s])) ASSERTF(ttq_st_find(&f, k), "%s", k);
    }
    n += f.n_tensors;
    ttq_st_close(&f);
    ASSERT(f.tensors == NULL && f.map.data == NULL);
    free(p);
  }
  ASSERT(n == (int)json_object_size(wm));
  ASSERTF(sum == total, "sum %lld total_size %lld", (long long)sum, (long long)total);
  json_decref(idx);
  free(ip);
  *count = n;
  return 0;
}

TEST_IMPL(st_read_real) {
  char *dir = test_src_path("models/tinyqwen3-mix");
  char *cp = join2(dir, "config.json");
  json_error_t e;
  json_t *cfg = json_load_file(cp, 0, &e);
  ASSERTF(cfg, "%s: %s", cp, e.text);
  int64_t dim = json_integer_value(json_object_get(cfg, "hidden_size"));
  int64_t layers = json_integer_value(json_object_get(cfg, "num_hidden_layers"));
  int64_t vocab = json_integer_value(json_object_get(cfg, "vocab_size"));
  int64_t heads = json_integer_value(json_object_get(cfg, "num_attention_heads"));
  int64_t kvh = json_integer_value(json_object_get(cfg, "num_key_value_heads"));
  int64_t hd = json_integer_value(json_object_get(cfg, "head_dim"));
  int64_t ffn = json_integer_value(json_object_get(cfg, "intermediate_size"));
  ASSERT(dim == 256 && layers == 6 && vocab == 6144);
  ASSERT(!strcmp(json_string_value(json_object_get(cfg, "dtype")), "bfloat16"));
  json_decref(cfg);

  int count = 0;
  if (st_check_hf_dir(dir, &count)) return 1;
  /* qwen3, tied embeddings: embed + final norm + 11 per layer */
  ASSERT(count == 2 + 11 * layers);

  char *s1 = join2(dir, "model-00001-of-00002.safetensors");
  char *s2 = join2(dir, "model-00002-of-00002.safetensors");
  ttq_st_file f1, f2;
  ttq_diag d = {0};
  ASSERTF(ttq_st_open(s1, &f1, &d) == 0, "%s", d.msg);
  ASSERTF(ttq_st_open(s2, &f2, &d) == 0, "%s", d.msg);
  struct {
    const ttq_st_file *f;
    const char *name;
    int ndim;
    int64_t s0, s1;
  } want[] = {
      {&f1, "model.embed_tokens.weight", 2, vocab, dim},
      {&f1, "model.layers.0.self_attn.q_proj.weight", 2, heads * hd, dim},
      {&f1, "model.layers.0.self_attn.k_proj.weight", 2, kvh * hd, dim},
      {&f1, "model.layers.0.self_attn.o_proj.weight", 2, dim, heads * hd},
      {&f1, "model.layers.0.self_attn.q_norm.weight", 1, hd, 0},
      {&f1, "model.layers.0.mlp.gate_proj.weight", 2, ffn, dim},
      {&f1, "model.layers.0.mlp.down_proj.weight", 2, dim, ffn},
      {&f2, "model.layers.5.mlp.up_proj.weight", 2, ffn, dim},
      {&f2, "model.norm.weight", 1, dim, 0},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    const ttq_tensor *t = ttq_st_find(want[i].f, want[i].name);
    ASSERTF(t, "%s", want[i].name);
    ASSERTF(t->ndim == want[i].ndim && t->shape[0] == want[i].s0 &&
                (t->ndim == 1 || t->shape[1] == want[i].s1) && t->dtype == TTQ_BF16,
            "%s: ndim %d shape %lld %lld", want[i].name, t->ndim, (long long)t->shape[0],
            (long long)t->shape[1]);
    ASSERT(t->nbytes == (size_t)ttq_tensor_numel(t) * 2);
  }
  ASSERT(ttq_st_find(&f1, "lm_head.weight") == NULL && ttq_st_find(&f2, "lm_head.weight") == NULL);
  ASSERT(ttq_st_find(&f1, "__metadata__") == NULL);
  if (st_check_bytes(s1, &f1, "model.layers.0.self_attn.q_norm.weight")) return 1;
  if (st_check_bytes(s1, &f1, "model.embed_tokens.weight")) return 1;
  if (st_check_bytes(s2, &f2, "model.norm.weight")) return 1;
  ttq_st_close(&f1);
  ttq_st_close(&f2);
  free(s1);
  free(s2);
  free(cp);
  free(dir);

  /* The shared llama twin, when present. */
  char *ll = test_shared_path("models/tinyllama-mix");
  if (!ll) {
    fprintf(stderr, "NOTE: ../shared/models/tinyllama-mix absent; checked the bundled model only\n");
    return 0;
  }
  if (st_check_hf_dir(ll, &count)) return 1;
  ASSERT(count == 2 + 1 + 9 * 8); /* untied llama, 8 layers: embed, norm, head + 9 per layer */
  free(ll);
  return 0;
}

static int st_roundtrip_in(const char *dir) {
  uint64_t rng = 42;
  enum { N = 6 };
  static float a[3 * 5];
  static uint16_t b[7], c[2 * 3 * 4];
  static float s0;
  for (int i = 0; i < 15; i++) a[i] = test_rand_f32(&rng);
  for (int i = 0; i < 7; i++) b[i] = ttq__f32_to_f16(test_rand_f32(&rng));
  for (int i = 0; i < 24; i++) c[i] = ttq__f32_to_bf16(test_rand_f32(&rng));
  s0 = 3.25f;
  ttq_tensor ts[N] = {
      {"w.f32", TTQ_F32, 2, {3, 5}, a, sizeof a},
      {"w.f16", TTQ_F16, 1, {7}, b, sizeof b},
      {"w.bf16", TTQ_BF16, 3, {2, 3, 4}, c, sizeof c},
      {"scalar", TTQ_F32, 0, {0}, &s0, 4},
      {"empty", TTQ_F16, 2, {0, 4}, NULL, 0},
      {"odd \"name\" \\ é/ü", TTQ_BF16, 4, {1, 2, 1, 3}, c, 12},
  };
  const char *meta[] = {"format", "pt", "note", "a \"quoted\" value"};
  char *p = join2(dir, "rt.safetensors");
  ttq_diag d = {0};
  ASSERTF(ttq_st_write(p, ts, N, meta, 2, &d) == 0, "%s", d.msg);

  ttq_st_file f;
  ASSERTF(ttq_st_open(p, &f, &d) == 0, "%s", d.msg);
  ASSERT(f.n_tensors == N);
  uint64_t hl;
  memcpy(&hl, f.map.data, 8);
  ASSERT(hl % 8 == 0);
  const uint8_t *prev_end = f.map.data + 8 + hl;
  for (int i = 0; i < N; i++) {
    const ttq_tensor *t = &f.tensors[i];
    ASSERT(!strcmp(t->name, ts[i].name)); /* header order == given order */
    ASSERT(ttq_st_find(&f, ts[i].name) == t);
    ASSERT(t->dtype == ts[i].dtype && t->ndim == ts[i].ndim && t->nbytes == ts[i].nbytes);
    for (int k = 0; k < t->ndim; k++) ASSERT(t->shape[k] == ts[i].shape[k]);
    ASSERT(t->nbytes == 0 || memcmp(t->data, ts[i].data, t->nbytes) == 0);
    ASSERT((const uint8_t *)t->data == prev_end); /* laid out back to back, in order */
    prev_end += t->nbytes;
  }
  ASSERT(prev_end == f.map.data + f.map.size);
  /* Independent look at the raw header: JSON, then space padding, with the metadata. */
  const char *js = (const char *)f.map.data + 8;
  size_t jl = (size_t)hl;
  while (jl && js[jl - 1] == ' ') jl--;
  ASSERT(jl > 0 && js[jl - 1] == '}' && hl - jl < 8);
  json_error_t e;
  json_t *h = json_loadb(js, (size_t)hl, 0, &e);
  ASSERTF(h, "%s", e.text);
  ASSERT(!strcmp(json_string_value(json_object_get(json_object_get(h, "__metadata__"), "note")),
                 "a \"quoted\" value"));
  json_t *ent = json_object_get(h, "w.bf16");
  ASSERT(!strcmp(json_string_value(json_object_get(ent, "dtype")), "BF16"));
  ASSERT(json_integer_value(json_array_get(json_object_get(ent, "shape"), 2)) == 4);
  json_decref(h);
  ttq_st_close(&f);

  /* Writer refusals. */
  ttq_tensor bad = {"q", TTQ_Q8_0, 1, {32}, c, 34};
  ASSERT(ttq_st_write(p, &bad, 1, NULL, 0, &d) == TTQ_EUNSUPPORTED);
  ttq_tensor dup[2] = {ts[0], ts[0]};
  ASSERT(ttq_st_write(p, dup, 2, NULL, 0, &d) == TTQ_EINVAL);
  ttq_tensor wrong = ts[0];
  wrong.nbytes = 8;
  ASSERT(ttq_st_write(p, &wrong, 1, NULL, 0, &d) == TTQ_EINVAL);
  ASSERT(strstr(d.msg, "w.f32"));
  ASSERT(ttq_st_write("/nonexistent-dir/x.safetensors", ts, 1, NULL, 0, &d) == TTQ_EIO);
  /* Zero tensors: a valid, empty file. */
  ASSERT(ttq_st_write(p, NULL, 0, NULL, 0, &d) == 0);
  ASSERT(ttq_st_open(p, &f, &d) == 0 && f.n_tensors == 0);
  ttq_st_close(&f);
  free(p);
  return 0;
}

TEST_IMPL(st_roundtrip) { return with_tmpdir(st_roundtrip_in); }

/* Writes header `json` (its length as the 8-byte prefix) plus `data_len` bytes of data. */
static int st_craft(const char *path, const char *json, size_t data_len) {
  buf b = {0};
  buf_u64(&b, strlen(json));
  buf_put(&b, json, strlen(json));
  for (size_t i = 0; i < data_len; i++) buf_u8(&b, (uint8_t)i);
  int rc = put_file(path, b.p, b.n);
  free(b.p);
  return rc;
}

/* Opens `path` and checks the code and that the message names the file and contains the
 * given fragments (NULL-terminated list). */
static int st_expect(int line, const char *path, int code, const char *frag1, const char *frag2) {
  ttq_st_file f;
  ttq_diag d = {0};
  int rc = ttq_st_open(path, &f, &d);
  show(&d);
  if (rc != code || !strstr(d.msg, path) || (frag1 && !strstr(d.msg, frag1)) ||
      (frag2 && !strstr(d.msg, frag2))) {
    fprintf(stderr, "line %d: got %d (%s) \"%s\"; want %d with '%s' '%s'\n", line, rc,
            ttq_strerror(rc), d.msg, code, frag1 ? frag1 : "", frag2 ? frag2 : "");
    if (rc == 0) ttq_st_close(&f);
    return 1;
  }
  if (f.tensors || f.map.data || f.n_tensors) {
    fprintf(stderr, "line %d: failed open left state behind\n", line);
    return 1;
  }
  return 0;
}

#define ST_BAD(json, dlen, code, f1, f2)                                                  \
  do {                                                                                    \
    ASSERT(st_craft(p, json, dlen) == 0);                                                 \
    if (st_expect(__LINE__, p, code, f1, f2)) return 1;                                   \
  } while (0)

#define T1 "\"dtype\":\"F32\",\"shape\":[2,2]"
static int st_malformed_in(const char *dir) {
  char *p = join2(dir, "bad.safetensors");
  ttq_diag d = {0};
  ttq_st_file f;

  /* positive controls */
  ASSERT(st_craft(p, "{\"t\":{" T1 ",\"data_offsets\":[0,16]}}      ", 16) == 0);
  ASSERTF(ttq_st_open(p, &f, &d) == 0, "%s", d.msg);
  ASSERT(f.n_tensors == 1 && f.tensors[0].shape[1] == 2);
  ttq_st_close(&f);
  ASSERT(st_craft(p, "{\"__metadata__\":{\"a\":\"b\"}}", 0) == 0);
  ASSERT(ttq_st_open(p, &f, &d) == 0 && f.n_tensors == 0);
  ttq_st_close(&f);

  /* the header length */
  ASSERT(put_file(p, "\x05\0\0\0", 4) == 0);
  if (st_expect(__LINE__, p, TTQ_EFORMAT, "too short", NULL)) return 1;
  ASSERT(put_file(p, "", 0) == 0);
  if (st_expect(__LINE__, p, TTQ_EFORMAT, "too short", NULL)) return 1;
  {
    uint8_t h[24] = {0xe8, 0x03}; /* 1000 */
    memcpy(h + 8, "{\"a\":1}", 7);
    ASSERT(put_file(p, h, sizeof h) == 0);
    if (st_expect(__LINE__, p, TTQ_EFORMAT, "header length 1000 past the end", NULL)) return 1;
    /* boundary: the header may end exactly at the end of the file, not one byte later */
    memcpy(h + 8, "{\"a\":{}}        ", 16);
    uint64_t hl = 16;
    memcpy(h, &hl, 8);
    ASSERT(put_file(p, h, sizeof h) == 0);
    if (st_expect(__LINE__, p, TTQ_EFORMAT, "tensor 'a'", "'dtype' is missing")) return 1;
    hl = 17;
    memcpy(h, &hl, 8);
    ASSERT(put_file(p, h, sizeof h) == 0);
    if (st_expect(__LINE__, p, TTQ_EFORMAT, "header length 17 past the end of the file (24 bytes)",
                  NULL))
      return 1;
    uint64_t huge = (uint64_t)1 << 40;
    memcpy(h, &huge, 8);
    ASSERT(put_file(p, h, sizeof h) == 0);
    if (st_expect(__LINE__, p, TTQ_EFORMAT, "1099511627776", NULL)) return 1;
    huge = UINT64_MAX;
    memcpy(h, &huge, 8);
    ASSERT(put_file(p, h, sizeof h) == 0);
    if (st_expect(__LINE__, p, TTQ_EFORMAT, "header length", NULL)) return 1;
  }

  /* the JSON */
  ST_BAD("{\"t\": {\"dtype\": ", 0, TTQ_EFORMAT, "bad JSON", NULL);
  ST_BAD("[1, 2]", 0, TTQ_EFORMAT, "JSON object", NULL);
  ST_BAD("{\"t\":{}} trailing", 0, TTQ_EFORMAT, "bad JSON", NULL);
  {
    static const uint8_t nulpad[16] = {8, 0, 0, 0, 0, 0, 0, 0, '{', '}'}; /* NUL padding */
    ASSERT(put_file(p, nulpad, sizeof nulpad) == 0);
    if (st_expect(__LINE__, p, TTQ_EFORMAT, "bad JSON", NULL)) return 1;
  }
  ST_BAD("{\"t\":5}", 0, TTQ_EFORMAT, "'t'", "not a JSON object");
  ST_BAD("{\"__metadata__\":[1]}", 0, TTQ_EFORMAT, "__metadata__", NULL);
  ST_BAD("{\"__metadata__\":{\"a\":1}}", 0, TTQ_EFORMAT, "__metadata__", "'a'");

  /* fields */
  ST_BAD("{\"t\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, TTQ_EFORMAT, "'t'", "'dtype' is missing");
  ST_BAD("{\"t\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, TTQ_EFORMAT, "'t'",
         "'dtype' is not a string");
  ST_BAD("{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, TTQ_EFORMAT, "'t'", "'shape' is missing");
  ST_BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8, TTQ_EFORMAT, "'t'",
         "'shape' is not an array");
  ST_BAD("{\"t\":{" T1 "}}", 16, TTQ_EFORMAT, "'t'", "'data_offsets' is missing");
  ST_BAD("{\"t\":{" T1 ",\"data_offsets\":16}}", 16, TTQ_EFORMAT, "'t'", "'data_offsets' is not an array");
  ST_BAD("{\"t\":{" T1 ",\"data_offsets\":[0,8,16]}}", 16, TTQ_EFORMAT, "'t'", "data_offsets");
  ST_BAD("{\"t\":{" T1 ",\"data_offsets\":[0,\"16\"]}}", 16, TTQ_EFORMAT, "'t'", "data_offsets");
  ST_BAD("{\"t\":{" T1 ",\"data_offsets\":[-16,0]}}", 16, TTQ_EFORMAT, "'t'", "data_offsets");

  /* dtypes */
  ST_BAD("{\"t\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}", 16, TTQ_EUNSUPPORTED,
         "'t'", "'I64'");
  ST_BAD("{\"t\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, TTQ_EUNSUPPORTED,
         "'t'", "'F8_E4M3'");
  ST_BAD("{\"t\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, TTQ_EUNSUPPORTED,
         "'t'", "'f32'");

  /* shapes and sizes */
  ST_BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[-1,4],\"data_offsets\":[0,16]}}", 16, TTQ_EFORMAT,
         "'t'", "shape[0] = -1 is negative");
  ST_BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,16]}}", 16, TTQ_EFORMAT,
         "'t'", "shape[0]");
  ST_BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,16]}}",
         16, TTQ_EFORMAT, "'t'", "overflow");
  ST_BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,16]}}", 16,
         TTQ_EFORMAT, "'t'", "overflow");
  ST_BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
         TTQ_EUNSUPPORTED, "'t'", "5 dimensions");
  ST_BAD("{\"t\":{" T1 ",\"data_offsets\":[0,20]}}", 24, TTQ_EFORMAT, "'t'", "needs 16");
  ST_BAD("{\"model.norm.weight\":{" T1 ",\"data_offsets\":[10,99999]}}", 4096, TTQ_EFORMAT,
         "tensor 'model.norm.weight': data_offsets [10, 99999] past the end of the data (4096 bytes)",
         NULL);
  ST_BAD("{\"t\":{" T1 ",\"data_offsets\":[16,0]}}", 16, TTQ_EFORMAT, "'t'", "ends before it begins");
  ST_BAD("{\"t\":{" T1 ",\"data_offsets\":[0,16]}}", 15, TTQ_EFORMAT, "'t'", "past the end");

  /* overlaps and duplicates */
  ST_BAD("{\"a\":{" T1 ",\"data_offsets\":[0,16]},\"b\":{" T1 ",\"data_offsets\":[8,24]}}", 24,
         TTQ_EFORMAT, "'b'", "overlap tensor 'a'");
  ST_BAD("{\"b\":{" T1 ",\"data_offsets\":[8,24]},\"a\":{" T1 ",\"data_offsets\":[0,16]}}", 24,
         TTQ_EFORMAT, "overlap", NULL);
  ST_BAD("{\"a\":{" T1 ",\"data_offsets\":[0,16]},\"b\":{" T1 ",\"data_offsets\":[0,16]}}", 16,
         TTQ_EFORMAT, "overlap", NULL);
  /* contained range: c inside a, with b between them in offset order */
  ST_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[16],\"data_offsets\":[0,64]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]},"
         "\"c\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[32,40]}}",
         64, TTQ_EFORMAT, "overlap tensor 'a'", NULL);
  ST_BAD("{\"a\":{" T1 ",\"data_offsets\":[0,16]},\"a\":{" T1 ",\"data_offsets\":[16,32]}}", 32,
         TTQ_EFORMAT, "duplicate", "a");
  /* empty tensors may sit anywhere, even inside another range */
  ASSERT(st_craft(p, "{\"a\":{" T1 ",\"data_offsets\":[0,16]},\"e\":{\"dtype\":\"F16\",\"shape\":[0],"
                     "\"data_offsets\":[8,8]}}", 16) == 0);
  ASSERTF(ttq_st_open(p, &f, &d) == 0, "%s", d.msg);
  ttq_st_close(&f);

  /* missing file */
  char *missing = join2(dir, "missing.safetensors");
  if (st_expect(__LINE__, missing, TTQ_EIO, NULL, NULL)) return 1;
  free(missing);

  /* Truncation sweep: every proper prefix of a valid file is refused cleanly. */
  uint64_t rng = 7;
  float w[40];
  uint16_t h16[10];
  fill_random(w, sizeof w, &rng);
  fill_random(h16, sizeof h16, &rng);
  ttq_tensor ts[3] = {{"layer.weight", TTQ_F32, 2, {4, 10}, w, sizeof w},
                      {"layer.bias", TTQ_F16, 1, {10}, h16, sizeof h16},
                      {"tail", TTQ_BF16, 1, {1}, h16, 2}};
  char *good = join2(dir, "good.safetensors");
  ASSERTF(ttq_st_write(good, ts, 3, NULL, 0, &d) == 0, "%s", d.msg);
  size_t len;
  uint8_t *all = slurp(good, &len);
  ASSERT(all);
  for (size_t n = 0; n < len; n++) {
    ASSERT(put_file(p, all, n) == 0);
    memset(&d, 0, sizeof d);
    int rc = ttq_st_open(p, &f, &d);
    ASSERTF(rc == TTQ_EFORMAT && strstr(d.msg, p), "prefix %zu of %zu: rc %d %s", n, len, rc, d.msg);
  }
  /* Mutation sweep over the header: every open either fails cleanly or yields views that
   * satisfy the invariants. */
  uint64_t hl;
  memcpy(&hl, all, 8);
  static const uint8_t vals[] = {0x00, 0xff, '"', '{', ']', '9', '-', ' '};
  int accepted = 0;
  for (size_t i = 0; i < 8 + hl; i++) {
    for (size_t v = 0; v < sizeof vals; v++) {
      uint8_t save = all[i];
      if (save == vals[v]) continue;
      all[i] = vals[v];
      ASSERT(put_file(p, all, len) == 0);
      all[i] = save;
      int rc = ttq_st_open(p, &f, &d);
      if (rc == 0) {
        accepted++;
        ASSERTF(!check_tensors(&f.map, f.tensors, (uint64_t)f.n_tensors), "byte %zu", i);
        ttq_st_close(&f);
      } else {
        ASSERT(rc == TTQ_EFORMAT || rc == TTQ_EUNSUPPORTED);
      }
    }
  }
  fprintf(stderr, "st mutation sweep: %d of the mutated files were accepted (benign edits)\n",
          accepted);
  free(all);
  free(good);
  free(p);
  return 0;
}

TEST_IMPL(st_malformed) { return with_tmpdir(st_malformed_in); }

/* ==================================== GGUF ==================================== */

#define GGUF_DATA_START 266432 /* from an independent parse of tinyllama-mix-f16.gguf */

TEST_IMPL(gguf_read_real) {
  char *p = test_shared_path("models/tinyllama-mix-f16.gguf");
  if (!p) SKIP("../shared/models/tinyllama-mix-f16.gguf is absent (set TTQ_SHARED)");
  ttq_gguf_file g;
  ttq_diag d = {0};
  ASSERTF(ttq_gguf_open(p, &g, &d) == 0, "%s", d.msg);
  ASSERT(g.version == 3 && g.n_kv == 21 && g.n_tensors == 75 && g.alignment == 32);
  char *s = NULL;
  ASSERT_OK(ttq_gguf_get_str(&g, "general.architecture", &s));
  ASSERT(!strcmp(s, "llama"));
  free(s);
  ASSERT_OK(ttq_gguf_get_str(&g, "tokenizer.ggml.pre", &s));
  ASSERT(!strcmp(s, "llama-bpe"));
  free(s);
  int64_t v;
  ASSERT(ttq_gguf_get_i64(&g, "llama.block_count", &v) == 0 && v == 8);
  ASSERT(ttq_gguf_get_i64(&g, "llama.embedding_length", &v) == 0 && v == 384);
  ASSERT(ttq_gguf_get_i64(&g, "llama.vocab_size", &v) == 0 && v == 8192);
  ASSERT(ttq_gguf_get_i64(&g, "tokenizer.ggml.eos_token_id", &v) == 0 && v == 1);
  double x;
  ASSERT(ttq_gguf_get_f64(&g, "llama.attention.layer_norm_rms_epsilon", &x) == 0);
  ASSERT(x == (double)1e-5f);
  ASSERT(ttq_gguf_get_f64(&g, "llama.rope.freq_base", &x) == 0 && x == 10000.0);
  /* wrong types and missing keys */
  ASSERT(ttq_gguf_get_i64(&g, "general.architecture", &v) == TTQ_EFORMAT);
  ASSERT(ttq_gguf_get_f64(&g, "llama.block_count", &x) == TTQ_EFORMAT);
  ASSERT(ttq_gguf_get_str(&g, "llama.block_count", &s) == TTQ_EFORMAT && s == NULL);
  ASSERT(ttq_gguf_get_i64(&g, "no.such.key", &v) == TTQ_ENOTFOUND);
  ASSERT(ttq_gguf_get_i64(&g, "tokenizer.ggml.add_bos_token", &v) == TTQ_EFORMAT);
  const ttq_gguf_kv *ab = ttq_gguf_find_kv(&g, "tokenizer.ggml.add_bos_token");
  ASSERT(ab && ab->type == TTQ_GGUF_BOOL && ab->v.u64 == 1);

  const ttq_gguf_kv *tok = ttq_gguf_find_kv(&g, "tokenizer.ggml.tokens");
  ASSERT(tok && tok->type == TTQ_GGUF_ARRAY && tok->v.arr.type == TTQ_GGUF_STRING);
  ASSERT(tok->v.arr.n == 8192 && tok->v.arr.strs);
  ASSERT(tok->v.arr.strs[0].len == 17 && !memcmp(tok->v.arr.strs[0].ptr, "<|begin_of_text|>", 17));
  ASSERT(tok->v.arr.strs[2].len == 1 && tok->v.arr.strs[2].ptr[0] == '!');
  const ttq_gguf_kv *mg = ttq_gguf_find_kv(&g, "tokenizer.ggml.merges");
  ASSERT(mg && mg->v.arr.type == TTQ_GGUF_STRING && mg->v.arr.n == 7934);
  ASSERT(mg->v.arr.strs[0].len == 5 && !memcmp(mg->v.arr.strs[0].ptr, "\xc4\xa0 \xc4\xa0", 5));
  const ttq_gguf_kv *tt = ttq_gguf_find_kv(&g, "tokenizer.ggml.token_type");
  ASSERT(tt && tt->v.arr.type == TTQ_GGUF_INT32 && tt->v.arr.n == 8192 && !tt->v.arr.strs);
  int32_t t0;
  memcpy(&t0, tt->v.arr.data, 4);
  ASSERT(t0 == 3); /* control token */
  for (uint64_t i = 0; i < tok->v.arr.n; i++)
    ASSERT((const uint8_t *)tok->v.arr.strs[i].ptr + tok->v.arr.strs[i].len <= g.map.data + g.map.size);

  /* tensors: row-major shapes */
  const ttq_tensor *emb = ttq_gguf_find_tensor(&g, "token_embd.weight");
  ASSERT(emb && emb->dtype == TTQ_F16 && emb->ndim == 2 && emb->shape[0] == 8192 && emb->shape[1] == 384);
  ASSERT((const uint8_t *)emb->data == g.map.data + GGUF_DATA_START + 6291456);
  const ttq_tensor *q = ttq_gguf_find_tensor(&g, "blk.0.attn_q.weight");
  ASSERT(q && q->dtype == TTQ_F16 && q->ndim == 2 && q->shape[0] == 384 && q->shape[1] == 384);
  const ttq_tensor *k = ttq_gguf_find_tensor(&g, "blk.0.attn_k.weight");
  ASSERT(k && k->ndim == 2 && k->shape[0] == 128 && k->shape[1] == 384);
  const ttq_tensor *dn = ttq_gguf_find_tensor(&g, "blk.0.ffn_down.weight");
  ASSERT(dn && dn->shape[0] == 384 && dn->shape[1] == 1024 && dn->nbytes == 384 * 1024 * 2);
  const ttq_tensor *nrm = ttq_gguf_find_tensor(&g, "output_norm.weight");
  ASSERT(nrm && nrm->dtype == TTQ_F32 && nrm->ndim == 1 && nrm->shape[0] == 384);
  ASSERT((const uint8_t *)nrm->data + nrm->nbytes == g.map.data + g.map.size); /* last in file */
  ASSERT(ttq_gguf_find_tensor(&g, "blk.8.attn_q.weight") == NULL);
  int nf16 = 0, nf32 = 0;
  for (uint64_t i = 0; i < g.n_tensors; i++) {
    const ttq_tensor *t = &g.tensors[i];
    ASSERT(view_inside(&g.map, t));
    ASSERT(((const uint8_t *)t->data - g.map.data) % 32 == 0);
    nf16 += t->dtype == TTQ_F16;
    nf32 += t->dtype == TTQ_F32;
    ASSERT(t->dtype == TTQ_F32 ? t->ndim == 1 : t->ndim == 2);
  }
  ASSERT(nf16 == 58 && nf32 == 17);

  /* The GGUF is an F16 conversion of the BF16 safetensors twin: norms (F32) are bit-exact,
   * matrices differ at most by f16 subnormal rounding (2^-25). */
  char *twin = test_shared_path("models/tinyllama-mix/model-00001-of-00004.safetensors");
  if (twin) {
    ttq_st_file f;
    ASSERTF(ttq_st_open(twin, &f, &d) == 0, "%s", d.msg);
    const ttq_tensor *se = ttq_st_find(&f, "model.embed_tokens.weight");
    const ttq_tensor *sv = ttq_st_find(&f, "model.layers.0.self_attn.v_proj.weight");
    const ttq_tensor *sn = ttq_st_find(&f, "model.layers.0.input_layernorm.weight");
    const ttq_tensor *gv = ttq_gguf_find_tensor(&g, "blk.0.attn_v.weight");
    const ttq_tensor *gn = ttq_gguf_find_tensor(&g, "blk.0.attn_norm.weight");
    ASSERT(se && sv && sn && gv && gn);
    const ttq_tensor *pairs[3][2] = {{se, emb}, {sv, gv}, {sn, gn}};
    for (int i = 0; i < 3; i++) {
      const ttq_tensor *a = pairs[i][0], *b = pairs[i][1];
      ASSERT(a->ndim == b->ndim && ttq_tensor_numel(a) == ttq_tensor_numel(b));
      for (int j = 0; j < a->ndim; j++) ASSERT(a->shape[j] == b->shape[j]);
      int64_t n = ttq_tensor_numel(a);
      float *fa = malloc((size_t)n * 4), *fb = malloc((size_t)n * 4);
      ttq__to_f32(a->dtype, a->data, fa, n);
      ttq__to_f32(b->dtype, b->data, fb, n);
      double tol = b->dtype == TTQ_F32 ? 0.0 : 0x1p-25;
      for (int64_t j = 0; j < n; j++)
        ASSERTF(fabs((double)fa[j] - fb[j]) <= tol, "pair %d elem %lld: %g vs %g", i, (long long)j,
                fa[j], fb[j]);
      free(fa);
      free(fb);
    }
    ttq_st_close(&f);
    free(twin);
  } else {
    fprintf(stderr, "NOTE: tinyllama-mix safetensors absent; cross-format check skipped\n");
  }
  ttq_gguf_close(&g);
  ASSERT(g.kv == NULL && g.tensors == NULL && g.map.data == NULL);
  free(p);
  return 0;
}

/* Builds the kv list used by the round trip. */
static const char *const rt_words[] = {"hello", "", "wörld", "a b"};

static int gguf_roundtrip_one(const char *dir, uint32_t align_kv) {
  uint64_t rng = 99 + align_kv;
  ttq_gguf_kv kv[20];
  memset(kv, 0, sizeof kv);
  int n = 0;
#define KV(name, ty) (kv[n].key = (ttq_gguf_str){name, strlen(name)}, kv[n].type = ty, &kv[n++])
  KV("t.u8", TTQ_GGUF_UINT8)->v.u64 = 200;
  KV("t.i8", TTQ_GGUF_INT8)->v.i64 = -100;
  KV("t.u16", TTQ_GGUF_UINT16)->v.u64 = 60000;
  KV("t.i16", TTQ_GGUF_INT16)->v.i64 = -30000;
  KV("t.u32", TTQ_GGUF_UINT32)->v.u64 = 4000000000u;
  KV("t.i32", TTQ_GGUF_INT32)->v.i64 = -2000000000;
  KV("t.f32", TTQ_GGUF_FLOAT32)->v.f64 = 1.5;
  KV("t.bool", TTQ_GGUF_BOOL)->v.u64 = 1;
  KV("t.str", TTQ_GGUF_STRING)->v.str = (ttq_gguf_str){"héllo", strlen("héllo")};
  KV("t.u64", TTQ_GGUF_UINT64)->v.u64 = ((uint64_t)1 << 63) + 5;
  KV("t.i64", TTQ_GGUF_INT64)->v.i64 = -((int64_t)1 << 62);
  KV("t.f64", TTQ_GGUF_FLOAT64)->v.f64 = 3.141592653589793;
  ttq_gguf_str words[4];
  for (int i = 0; i < 4; i++) words[i] = (ttq_gguf_str){rt_words[i], strlen(rt_words[i])};
  ttq_gguf_kv *a = KV("t.words", TTQ_GGUF_ARRAY);
  a->v.arr.type = TTQ_GGUF_STRING;
  a->v.arr.n = 4;
  a->v.arr.strs = words;
  int32_t ints[5] = {3, -1, 0, 7, INT32_MIN};
  a = KV("t.ints", TTQ_GGUF_ARRAY);
  a->v.arr.type = TTQ_GGUF_INT32;
  a->v.arr.n = 5;
  a->v.arr.data = (const uint8_t *)ints;
  a = KV("t.none", TTQ_GGUF_ARRAY);
  a->v.arr.type = TTQ_GGUF_STRING;
  a->v.arr.n = 0;
  if (align_kv) KV("general.alignment", TTQ_GGUF_UINT32)->v.u64 = align_kv;
#undef KV

  static float w32[3 * 5];
  static uint16_t w16[7], wbf[2 * 3 * 4], w4d[2 * 1 * 3 * 2];
  static uint8_t q8[2 * 2 * 34]; /* 2 rows of 64 values */
  fill_random(w32, sizeof w32, &rng);
  fill_random(w16, sizeof w16, &rng);
  fill_random(wbf, sizeof wbf, &rng);
  fill_random(w4d, sizeof w4d, &rng);
  fill_random(q8, sizeof q8, &rng);
  /* a tensor larger than the writer's stdio buffer */
  enum { BIG_R = 1536, BIG_C = 1024 };
  uint16_t *big = malloc((size_t)BIG_R * BIG_C * 2);
  ASSERT(big);
  fill_random(big, (size_t)BIG_R * BIG_C * 2, &rng);
  static float scalar = -2.5f;
  enum { NT = 7 };
  ttq_tensor ts[NT] = {
      {"w.f32", TTQ_F32, 2, {3, 5}, w32, sizeof w32},
      {"w.f16", TTQ_F16, 1, {7}, w16, sizeof w16},
      {"w.bf16", TTQ_BF16, 3, {2, 3, 4}, wbf, sizeof wbf},
      {"w.q8", TTQ_Q8_0, 2, {2, 64}, q8, sizeof q8},
      {"w.4d", TTQ_F16, 4, {2, 1, 3, 2}, w4d, sizeof w4d},
      {"w.big", TTQ_F16, 2, {BIG_R, BIG_C}, big, (size_t)BIG_R * BIG_C * 2},
      {"w.scalar", TTQ_F32, 0, {0}, &scalar, 4},
  };
  char *p = join2(dir, "rt.gguf");
  ttq_diag d = {0};
  ASSERTF(ttq_gguf_write(p, kv, (uint64_t)n, ts, NT, &d) == 0, "%s", d.msg);

  /* raw header, read independently */
  size_t len;
  uint8_t *raw = slurp(p, &len);
  ASSERT(raw && len > 24 && !memcmp(raw, "GGUF", 4));
  uint32_t ver;
  uint64_t nt, nk;
  memcpy(&ver, raw + 4, 4);
  memcpy(&nt, raw + 8, 8);
  memcpy(&nk, raw + 16, 8);
  ASSERT(ver == 3 && nt == NT && nk == (uint64_t)n);
  uint64_t first_key_len;
  memcpy(&first_key_len, raw + 24, 8);
  ASSERT(first_key_len == 4 && !memcmp(raw + 32, "t.u8", 4));
  free(raw);

  ttq_gguf_file g;
  ASSERTF(ttq_gguf_open(p, &g, &d) == 0, "%s", d.msg);
  uint64_t align = align_kv ? align_kv : 32;
  ASSERT(g.alignment == align && g.n_kv == (uint64_t)n && g.n_tensors == NT);
  ASSERT(len % align == 0); /* each tensor, the last included, is padded */
  for (int i = 0; i < n; i++) {
    const ttq_gguf_kv *r = &g.kv[i];
    ASSERT(r->key.len == kv[i].key.len && !memcmp(r->key.ptr, kv[i].key.ptr, r->key.len));
    ASSERT(r->type == kv[i].type);
    ASSERT(ttq_gguf_find_kv(&g, kv[i].key.ptr) == r);
  }
  int64_t v;
  double x;
  char *s;
  ASSERT(ttq_gguf_get_i64(&g, "t.u8", &v) == 0 && v == 200);
  ASSERT(ttq_gguf_get_i64(&g, "t.i8", &v) == 0 && v == -100);
  ASSERT(ttq_gguf_get_i64(&g, "t.u16", &v) == 0 && v == 60000);
  ASSERT(ttq_gguf_get_i64(&g, "t.i16", &v) == 0 && v == -30000);
  ASSERT(ttq_gguf_get_i64(&g, "t.u32", &v) == 0 && v == 4000000000LL);
  ASSERT(ttq_gguf_get_i64(&g, "t.i32", &v) == 0 && v == -2000000000);
  ASSERT(ttq_gguf_get_i64(&g, "t.i64", &v) == 0 && v == -((int64_t)1 << 62));
  ASSERT(ttq_gguf_get_i64(&g, "t.u64", &v) == TTQ_ERANGE); /* does not fit int64 */
  ASSERT(ttq_gguf_find_kv(&g, "t.u64")->v.u64 == ((uint64_t)1 << 63) + 5);
  ASSERT(ttq_gguf_get_i64(&g, "t.bool", &v) == TTQ_EFORMAT);
  ASSERT(ttq_gguf_find_kv(&g, "t.bool")->v.u64 == 1);
  ASSERT(ttq_gguf_get_f64(&g, "t.f32", &x) == 0 && x == 1.5);
  ASSERT(ttq_gguf_get_f64(&g, "t.f64", &x) == 0 && x == 3.141592653589793);
  ASSERT(ttq_gguf_get_f64(&g, "t.i32", &x) == TTQ_EFORMAT);
  ASSERT(ttq_gguf_get_str(&g, "t.str", &s) == 0 && !strcmp(s, "héllo"));
  free(s);
  ASSERT(ttq_gguf_get_str(&g, "t.words", &s) == TTQ_EFORMAT);
  const ttq_gguf_kv *r = ttq_gguf_find_kv(&g, "t.words");
  ASSERT(r->v.arr.type == TTQ_GGUF_STRING && r->v.arr.n == 4);
  for (int i = 0; i < 4; i++)
    ASSERT(r->v.arr.strs[i].len == strlen(rt_words[i]) &&
           !memcmp(r->v.arr.strs[i].ptr, rt_words[i], strlen(rt_words[i])));
  r = ttq_gguf_find_kv(&g, "t.ints");
  ASSERT(r->v.arr.type == TTQ_GGUF_INT32 && r->v.arr.n == 5 && !memcmp(r->v.arr.data, ints, 20));
  r = ttq_gguf_find_kv(&g, "t.none");
  ASSERT(r->type == TTQ_GGUF_ARRAY && r->v.arr.type == TTQ_GGUF_STRING && r->v.arr.n == 0);

  for (int i = 0; i < NT; i++) {
    const ttq_tensor *t = &g.tensors[i];
    ASSERT(!strcmp(t->name, ts[i].name) && ttq_gguf_find_tensor(&g, ts[i].name) == t);
    ASSERT(t->dtype == ts[i].dtype && t->ndim == ts[i].ndim && t->nbytes == ts[i].nbytes);
    for (int k = 0; k < t->ndim; k++) ASSERT(t->shape[k] == ts[i].shape[k]);
    ASSERT(!memcmp(t->data, ts[i].data, t->nbytes));
    ASSERT(((const uint8_t *)t->data - g.map.data) % align == 0);
    ASSERT(view_inside(&g.map, t));
  }
  ttq_gguf_close(&g);

  /* writer refusals */
  ttq_gguf_kv badkv = {.key = {"x", 1}, .type = TTQ_GGUF_UINT8};
  badkv.v.u64 = 256;
  ASSERT(ttq_gguf_write(p, &badkv, 1, NULL, 0, &d) == TTQ_EINVAL);
  badkv.type = TTQ_GGUF_UINT32;
  badkv.key = (ttq_gguf_str){"general.alignment", 17};
  badkv.v.u64 = 48;
  ASSERT(ttq_gguf_write(p, &badkv, 1, NULL, 0, &d) == TTQ_EINVAL);
  ASSERT(strstr(d.msg, "48"));
  ttq_tensor bq = {"q", TTQ_Q8_0, 2, {2, 48}, q8, 3 * 34};
  ASSERT(ttq_gguf_write(p, NULL, 0, &bq, 1, &d) == TTQ_EINVAL);
  ttq_tensor dup[2] = {ts[0], ts[0]};
  ASSERT(ttq_gguf_write(p, NULL, 0, dup, 2, &d) == TTQ_EINVAL && strstr(d.msg, "duplicate"));
  ttq_gguf_kv dk[2] = {kv[0], kv[0]};
  ASSERT(ttq_gguf_write(p, dk, 2, NULL, 0, &d) == TTQ_EINVAL && strstr(d.msg, "duplicate"));
  uint8_t bools[2] = {1, 2};
  badkv = (ttq_gguf_kv){.key = {"b", 1}, .type = TTQ_GGUF_ARRAY};
  badkv.v.arr.type = TTQ_GGUF_BOOL;
  badkv.v.arr.n = 2;
  badkv.v.arr.data = bools;
  ASSERT(ttq_gguf_write(p, &badkv, 1, NULL, 0, &d) == TTQ_EINVAL);
  free(big);
  /* empty file: no kvs, no tensors */
  ASSERT(ttq_gguf_write(p, NULL, 0, NULL, 0, &d) == 0);
  ASSERT(ttq_gguf_open(p, &g, &d) == 0 && g.n_kv == 0 && g.n_tensors == 0);
  ttq_gguf_close(&g);
  free(p);
  return 0;
}

static int gguf_roundtrip_in(const char *dir) {
  if (gguf_roundtrip_one(dir, 0)) return 1;
  if (gguf_roundtrip_one(dir, 64)) return 1;
  return gguf_roundtrip_one(dir, 4096);
}

TEST_IMPL(gguf_roundtrip) { return with_tmpdir(gguf_roundtrip_in); }

/* Hand-assembled GGUF files: a valid baseline, and variants that each break one thing. */
enum {
  GV_OK, GV_MAGIC, GV_V1, GV_V2, GV_V4, GV_BE, GV_NKV_HUGE, GV_NT_HUGE, GV_NT_MANY, GV_KEYLEN_EOF,
  GV_STRLEN_HUGE, GV_STRARR_HUGE, GV_U32ARR_HUGE, GV_NESTED, GV_VTYPE, GV_ETYPE, GV_BOOL2,
  GV_DUPKEY, GV_NDIMS5, GV_TYPE_Q4, GV_TYPE_99, GV_UNALIGNED, GV_PAST_END, GV_OVERLAP,
  GV_DUPNAME, GV_ALIGN0, GV_ALIGN3, GV_ALIGN48, GV_ALIGN_STR, GV_ALIGN64, GV_Q8_ROW,
  GV_NE_OVERFLOW, GV_NE_NEG, GV_NAME_NUL, GV_COUNT
};

static void gg_kv_hdr(buf *b, const char *key, uint32_t type) {
  buf_str(b, key);
  buf_u32(b, type);
}

/* Tensor "a": F32 ne {4, 2} at 0 (32 bytes); "b": F16 ne {8} at off_b (16 bytes). */
static void gg_craft(buf *b, int v) {
  int has_align = v == GV_ALIGN0 || v == GV_ALIGN3 || v == GV_ALIGN48 || v == GV_ALIGN_STR ||
                  v == GV_ALIGN64;
  uint64_t align = v == GV_ALIGN64 ? 64 : 32;
  buf_put(b, v == GV_MAGIC ? "GGML" : "GGUF", 4);
  buf_u32(b, v == GV_V1 ? 1 : v == GV_V2 ? 2 : v == GV_V4 ? 4 : v == GV_BE ? 0x03000000u : 3);
  buf_u64(b, v == GV_NT_HUGE ? (uint64_t)1 << 60 : v == GV_NT_MANY ? 40 : 2);
  buf_u64(b, v == GV_NKV_HUGE ? (uint64_t)1 << 60 : (uint64_t)(3 + has_align));
  /* kv 1: string */
  if (v == GV_KEYLEN_EOF) {
    buf_u64(b, 100000);
    buf_put(b, "general.architecture", 20);
  } else {
    buf_str(b, "general.architecture");
  }
  buf_u32(b, TTQ_GGUF_STRING);
  if (v == GV_STRLEN_HUGE) {
    buf_u64(b, UINT64_MAX - 3);
    buf_put(b, "llama", 5);
  } else {
    buf_str(b, "llama");
  }
  /* kv 2: u32 (or a variant) */
  gg_kv_hdr(b, v == GV_DUPKEY ? "general.architecture" : "test.count",
            v == GV_VTYPE ? 13 : v == GV_BOOL2 ? TTQ_GGUF_BOOL : TTQ_GGUF_UINT32);
  if (v == GV_BOOL2) buf_u8(b, 2);
  else buf_u32(b, 7);
  /* kv 3: string array ["x", "yz"] (or a variant) */
  gg_kv_hdr(b, "test.list", TTQ_GGUF_ARRAY);
  if (v == GV_NESTED) {
    buf_u32(b, TTQ_GGUF_ARRAY);
    buf_u64(b, 1);
    buf_u32(b, TTQ_GGUF_UINT8);
    buf_u64(b, 1);
    buf_u8(b, 1);
  } else if (v == GV_U32ARR_HUGE) {
    buf_u32(b, TTQ_GGUF_UINT32);
    buf_u64(b, (uint64_t)1 << 62);
    buf_u32(b, 1);
  } else {
    buf_u32(b, v == GV_ETYPE ? 77 : TTQ_GGUF_STRING);
    buf_u64(b, v == GV_STRARR_HUGE ? (uint64_t)1 << 61 : 2);
    buf_str(b, "x");
    buf_str(b, "yz");
  }
  if (has_align) {
    gg_kv_hdr(b, "general.alignment", v == GV_ALIGN_STR ? TTQ_GGUF_STRING : TTQ_GGUF_UINT32);
    if (v == GV_ALIGN_STR) buf_str(b, "32");
    else buf_u32(b, v == GV_ALIGN0 ? 0 : v == GV_ALIGN3 ? 3 : v == GV_ALIGN48 ? 48 : 64);
  }
  /* tensor a */
  if (v == GV_NAME_NUL) {
    buf_u64(b, 3);
    buf_put(b, "a\0b", 3);
  } else {
    buf_str(b, "a");
  }
  if (v == GV_NDIMS5) {
    buf_u32(b, 5);
    for (int i = 0; i < 5; i++) buf_u64(b, i == 0 ? 8 : 1);
  } else {
    buf_u32(b, 2);
    buf_u64(b, v == GV_NE_OVERFLOW ? (uint64_t)1 << 40 : v == GV_NE_NEG ? ((uint64_t)1 << 63) + 1
               : v == GV_Q8_ROW ? 16 : 4);
    buf_u64(b, v == GV_NE_OVERFLOW ? (uint64_t)1 << 40 : 2);
  }
  buf_u32(b, v == GV_TYPE_Q4 ? 2 : v == GV_TYPE_99 ? 99 : v == GV_Q8_ROW ? 8 : 0);
  buf_u64(b, 0);
  /* tensor b */
  buf_str(b, v == GV_DUPNAME ? "a" : "b");
  buf_u32(b, 1);
  buf_u64(b, v == GV_PAST_END ? 1000 : 8);
  buf_u32(b, 1);
  buf_u64(b, v == GV_UNALIGNED ? 36 : v == GV_OVERLAP ? 0 : align);
  /* data */
  buf_pad(b, align);
  for (int i = 0; i < (int)align + 16; i++) buf_u8(b, (uint8_t)i);
  buf_pad(b, align);
}

static int gg_expect(int line, const char *path, int code, const char *f1, const char *f2) {
  ttq_gguf_file g;
  ttq_diag d = {0};
  int rc = ttq_gguf_open(path, &g, &d);
  if (rc) show(&d);
  if (rc != code || (code && !strstr(d.msg, path)) || (f1 && !strstr(d.msg, f1)) ||
      (f2 && !strstr(d.msg, f2))) {
    fprintf(stderr, "line %d: got %d (%s) \"%s\"; want %d with '%s' '%s'\n", line, rc,
            ttq_strerror(rc), d.msg, code, f1 ? f1 : "", f2 ? f2 : "");
    if (rc == 0) ttq_gguf_close(&g);
    return 1;
  }
  if (rc == 0) {
    int bad = check_tensors(&g.map, g.tensors, g.n_tensors);
    ttq_gguf_close(&g);
    if (bad) {
      fprintf(stderr, "line %d: invariants broken\n", line);
      return 1;
    }
  } else if (g.kv || g.tensors || g.map.data || g.n_kv || g.n_tensors) {
    fprintf(stderr, "line %d: failed open left state behind\n", line);
    return 1;
  }
  return 0;
}

static int gguf_malformed_in(const char *dir) {
  char *p = join2(dir, "bad.gguf");
  static const struct {
    int v, code;
    const char *f1, *f2;
  } cases[] = {
      {GV_OK, 0, NULL, NULL},
      {GV_V2, 0, NULL, NULL},
      {GV_ALIGN64, 0, NULL, NULL},
      {GV_MAGIC, TTQ_EFORMAT, "bad magic", NULL},
      {GV_V1, TTQ_EUNSUPPORTED, "version 1 ", NULL},
      {GV_V4, TTQ_EUNSUPPORTED, "version 4 ", NULL},
      {GV_BE, TTQ_EUNSUPPORTED, "version 50331648", "big-endian"},
      {GV_NKV_HUGE, TTQ_EFORMAT, "n_kv = 1152921504606846976", NULL},
      {GV_NT_HUGE, TTQ_EFORMAT, "n_tensors = 1152921504606846976", NULL},
      {GV_NT_MANY, TTQ_EFORMAT, "n_tensors = 40", NULL},
      {GV_KEYLEN_EOF, TTQ_EFORMAT, "key/value #0", "string length 100000"},
      {GV_STRLEN_HUGE, TTQ_EFORMAT, "'general.architecture'", "string length 18446744073709551612"},
      {GV_STRARR_HUGE, TTQ_EFORMAT, "'test.list'", "2305843009213693952 strings"},
      {GV_U32ARR_HUGE, TTQ_EFORMAT, "'test.list'", "4611686018427387904"},
      {GV_NESTED, TTQ_EUNSUPPORTED, "'test.list'", "nested"},
      {GV_VTYPE, TTQ_EFORMAT, "'test.count'", "unknown value type 13"},
      {GV_ETYPE, TTQ_EFORMAT, "'test.list'", "element type 77"},
      {GV_BOOL2, TTQ_EFORMAT, "'test.count'", "bool value 2"},
      {GV_DUPKEY, TTQ_EFORMAT, "duplicate key 'general.architecture'", NULL},
      {GV_NDIMS5, TTQ_EFORMAT, "tensor 'a'", "n_dims = 5"},
      {GV_TYPE_Q4, TTQ_EUNSUPPORTED, "tensor 'a'", "ggml type 2 (Q4_0)"},
      {GV_TYPE_99, TTQ_EUNSUPPORTED, "tensor 'a'", "ggml type 99"},
      {GV_UNALIGNED, TTQ_EFORMAT, "tensor 'b'", "offset 36 is not a multiple of the alignment 32"},
      {GV_PAST_END, TTQ_EFORMAT, "tensor 'b'", "past the end"},
      {GV_OVERLAP, TTQ_EFORMAT, "overlaps", NULL},
      {GV_DUPNAME, TTQ_EFORMAT, "duplicate tensor name 'a'", NULL},
      {GV_ALIGN0, TTQ_EFORMAT, "general.alignment = 0", "power of two"},
      {GV_ALIGN3, TTQ_EFORMAT, "general.alignment = 3", "power of two"},
      {GV_ALIGN48, TTQ_EFORMAT, "general.alignment = 48", "power of two"},
      {GV_ALIGN_STR, TTQ_EFORMAT, "general.alignment", "string"},
      {GV_Q8_ROW, TTQ_EFORMAT, "tensor 'a'", "Q8_0 rows of 16"},
      {GV_NE_OVERFLOW, TTQ_EFORMAT, "tensor 'a'", "overflows"},
      {GV_NE_NEG, TTQ_EFORMAT, "tensor 'a'", "ne[0] = 9223372036854775809"},
      {GV_NAME_NUL, TTQ_EFORMAT, "tensor #0", "NUL"},
  };
  ASSERT(sizeof cases / sizeof cases[0] == GV_COUNT);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    buf b = {0};
    gg_craft(&b, cases[i].v);
    ASSERT(put_file(p, b.p, b.n) == 0);
    free(b.p);
    if (gg_expect(__LINE__, p, cases[i].code, cases[i].f1, cases[i].f2)) {
      fprintf(stderr, "case %zu (variant %d)\n", i, cases[i].v);
      return 1;
    }
  }
  /* The baseline's contents, read back. */
  {
    buf b = {0};
    gg_craft(&b, GV_ALIGN64);
    ASSERT(put_file(p, b.p, b.n) == 0);
    free(b.p);
    ttq_gguf_file g;
    ttq_diag d = {0};
    ASSERTF(ttq_gguf_open(p, &g, &d) == 0, "%s", d.msg);
    ASSERT(g.alignment == 64 && g.n_tensors == 2 && g.n_kv == 4);
    const ttq_tensor *ta = ttq_gguf_find_tensor(&g, "a"), *tb = ttq_gguf_find_tensor(&g, "b");
    ASSERT(ta && ta->ndim == 2 && ta->shape[0] == 2 && ta->shape[1] == 4 && ta->nbytes == 32);
    ASSERT(tb && tb->ndim == 1 && tb->shape[0] == 8 && tb->nbytes == 16 && tb->dtype == TTQ_F16);
    size_t off_a = (size_t)((const uint8_t *)ta->data - g.map.data);
    ASSERT(off_a % 64 == 0 && (const uint8_t *)tb->data == (const uint8_t *)ta->data + 64);
    ASSERT(((const uint8_t *)ta->data)[5] == 5 && ((const uint8_t *)tb->data)[0] == 64);
    const ttq_gguf_kv *l = ttq_gguf_find_kv(&g, "test.list");
    ASSERT(l && l->v.arr.n == 2 && l->v.arr.strs[1].len == 2 && !memcmp(l->v.arr.strs[1].ptr, "yz", 2));
    ttq_gguf_close(&g);
  }
  ASSERT(put_file(p, "GGU", 3) == 0);
  if (gg_expect(__LINE__, p, TTQ_EFORMAT, "end of file", "magic")) return 1;
  ASSERT(put_file(p, "", 0) == 0);
  if (gg_expect(__LINE__, p, TTQ_EFORMAT, "end of file", NULL)) return 1;
  char *missing = join2(dir, "missing.gguf");
  if (gg_expect(__LINE__, missing, TTQ_EIO, NULL, NULL)) return 1;
  free(missing);

  /* Truncation sweeps over the crafted baseline and over a writer-made file with a string
   * array: every prefix shorter than the end of the last tensor's data fails cleanly; longer
   * ones (cut inside the final padding) are still valid. */
  for (int pass = 0; pass < 2; pass++) {
    size_t len, need;
    uint8_t *all;
    if (pass == 0) {
      buf b = {0};
      gg_craft(&b, GV_OK);
      all = b.p;
      len = b.n;
      need = len - 16; /* b's 16 bytes end 16 bytes before the padded end */
    } else {
      uint64_t rng = 5;
      static uint16_t w[3 * 33];
      static uint8_t q8[34 * 2];
      fill_random(w, sizeof w, &rng);
      fill_random(q8, sizeof q8, &rng);
      ttq_gguf_str toks[3] = {{"<s>", 3}, {"hi", 2}, {"", 0}};
      ttq_gguf_kv kv[3];
      memset(kv, 0, sizeof kv);
      kv[0] = (ttq_gguf_kv){.key = {"general.architecture", 20}, .type = TTQ_GGUF_STRING};
      kv[0].v.str = (ttq_gguf_str){"llama", 5};
      kv[1] = (ttq_gguf_kv){.key = {"tokenizer.ggml.tokens", 21}, .type = TTQ_GGUF_ARRAY};
      kv[1].v.arr.type = TTQ_GGUF_STRING;
      kv[1].v.arr.n = 3;
      kv[1].v.arr.strs = toks;
      kv[2] = (ttq_gguf_kv){.key = {"x.eps", 5}, .type = TTQ_GGUF_FLOAT32};
      kv[2].v.f64 = 1e-5;
      ttq_tensor ts[2] = {{"w", TTQ_BF16, 2, {3, 33}, w, sizeof w},
                          {"q", TTQ_Q8_0, 1, {64}, q8, sizeof q8}};
      char *good = join2(dir, "good.gguf");
      ttq_diag d = {0};
      ASSERTF(ttq_gguf_write(good, kv, 3, ts, 2, &d) == 0, "%s", d.msg);
      all = slurp(good, &len);
      ASSERT(all);
      ttq_gguf_file g;
      ASSERT(ttq_gguf_open(good, &g, &d) == 0);
      need = (size_t)((const uint8_t *)g.tensors[1].data - g.map.data) + g.tensors[1].nbytes;
      ttq_gguf_close(&g);
      free(good);
    }
    for (size_t n = 0; n < len; n++) {
      ASSERT(put_file(p, all, n) == 0);
      ttq_gguf_file g;
      ttq_diag d = {0};
      int rc = ttq_gguf_open(p, &g, &d);
      if (n < need) {
        ASSERTF(rc == TTQ_EFORMAT && strstr(d.msg, p), "pass %d prefix %zu of %zu: rc %d %s", pass,
                n, len, rc, d.msg);
      } else {
        ASSERTF(rc == 0, "pass %d prefix %zu: %s", pass, n, d.msg);
        ASSERT(!check_tensors(&g.map, g.tensors, g.n_tensors));
        ttq_gguf_close(&g);
      }
    }
    /* Mutation sweep over the bytes before the data. */
    int accepted = 0;
    static const uint8_t vals[] = {0x00, 0xff, 0x01, 0x80, 0x20, 0x7f};
    size_t hdr_end = need;
    for (size_t i = 0; i < hdr_end && i < 400; i++) {
      for (size_t v = 0; v < sizeof vals; v++) {
        uint8_t save = all[i];
        if (save == vals[v]) continue;
        all[i] = vals[v];
        ASSERT(put_file(p, all, len) == 0);
        all[i] = save;
        ttq_gguf_file g;
        int rc = ttq_gguf_open(p, &g, NULL);
        if (rc == 0) {
          accepted++;
          ASSERTF(!check_tensors(&g.map, g.tensors, g.n_tensors), "pass %d byte %zu", pass, i);
          ttq_gguf_close(&g);
        } else {
          ASSERT(rc == TTQ_EFORMAT || rc == TTQ_EUNSUPPORTED);
        }
      }
    }
    fprintf(stderr, "gguf mutation sweep %d: %d mutated files accepted (benign edits)\n", pass,
            accepted);
    free(all);
  }
  free(p);
  return 0;
}

TEST_IMPL(gguf_malformed) { return with_tmpdir(gguf_malformed_in); }
