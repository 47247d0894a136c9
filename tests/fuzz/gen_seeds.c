/* gen_seeds.c -- writes the seed corpora of the fuzz harnesses:
 *
 *   fuzz_gen_seeds OUTDIR      ->  OUTDIR/<target>/<seed files>
 *
 * (the committed seeds in tests/fuzz/corpus/ were made with
 * `build/tests/fuzz/fuzz_gen_seeds tests/fuzz/corpus`). Every seed is small (a few KB at most)
 * and valid, so that fuzzing starts from inputs that reach deep into each parser: files come
 * from the project's own writers (ttq_st_write, ttq_gguf_write), tokenizer.json files are
 * built with jansson, requests are packed by protobuf-c. A few seeds are edited afterwards to
 * reach what the writers never emit (a padded safetensors header, gaps between tensors, a
 * GGUF v2 header).
 *
 * Invariant: the output is deterministic (no time, no randomness), so regenerating the seeds
 * changes nothing unless this file or a writer changed. */
#include "gguf.h"
#include "safetensors.h"
#include "tokenizer.h"
#include "ttq.pb-c.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *g_root;

static void die(const char *what, const char *detail) {
  fprintf(stderr, "gen_seeds: %s: %s\n", what, detail);
  exit(1);
}

/* OUTDIR/target/name, target directory created; returns a static buffer. */
static const char *seed_path(const char *target, const char *name) {
  static char buf[4096];
  snprintf(buf, sizeof buf, "%s/%s", g_root, target);
  if (mkdir(buf, 0777) != 0 && errno != EEXIST) die(buf, strerror(errno));
  snprintf(buf, sizeof buf, "%s/%s/%s", g_root, target, name);
  return buf;
}

static void write_bytes(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0) die(path, "cannot write");
}

static uint8_t *read_bytes(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) die(path, "cannot read");
  fseek(f, 0, SEEK_END);
  long l = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *p = malloc((size_t)l + 1);
  if (!p || fread(p, 1, (size_t)l, f) != (size_t)l) die(path, "cannot read");
  fclose(f);
  *n = (size_t)l;
  return p;
}

/* Deterministic filler bytes. */
static void fill(uint8_t *p, size_t n, uint32_t seed) {
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    p[i] = (uint8_t)(seed >> 24);
  }
}

static ttq_tensor tensor(const char *name, ttq_dtype dt, int ndim, const int64_t *shape,
                         uint8_t *buf, uint32_t seed) {
  ttq_tensor t = {.name = name, .dtype = dt, .ndim = ndim};
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= (t.shape[i] = shape[i]);
  t.nbytes = ttq_dtype_bytes(dt, n);
  fill(buf, t.nbytes, seed);
  t.data = buf;
  return t;
}

/* ------------------------------------------------------------------ safetensors */

static void st_seeds(void) {
  static uint8_t b[8][512];
  ttq_diag d = {0};
  ttq_tensor ts[4];
  ts[0] = tensor("a", TTQ_F32, 2, (int64_t[]){2, 3}, b[0], 1);
  ts[1] = tensor("b.weight", TTQ_F16, 1, (int64_t[]){4}, b[1], 2);
  ts[2] = tensor("c", TTQ_BF16, 3, (int64_t[]){2, 2, 2}, b[2], 3);
  const char *meta[] = {"format", "pt", "note", "seed"};
  const char *p = seed_path("safetensors", "basic.safetensors");
  if (ttq_st_write(p, ts, 3, meta, 2, &d)) die(p, d.msg);

  ts[0] = tensor("scalar", TTQ_F32, 0, NULL, b[3], 4);
  ts[1] = tensor("empty", TTQ_F16, 2, (int64_t[]){0, 5}, b[4], 5);
  ts[2] = tensor("four.d", TTQ_BF16, 4, (int64_t[]){1, 2, 3, 2}, b[5], 6);
  p = seed_path("safetensors", "shapes.safetensors");
  if (ttq_st_write(p, ts, 3, NULL, 0, &d)) die(p, d.msg);

  ts[0] = tensor("model.embed_tokens.weight", TTQ_BF16, 2, (int64_t[]){8, 4}, b[6], 7);
  ts[1] = tensor("model.layers.0.self_attn.q_proj.weight", TTQ_BF16, 2, (int64_t[]){4, 4}, b[7],
                 8);
  ts[2] = tensor("model.norm.weight", TTQ_F32, 1, (int64_t[]){4}, b[0], 9);
  const char *meta2[] = {"format", "pt"};
  p = seed_path("safetensors", "qwen_like.safetensors");
  if (ttq_st_write(p, ts, 3, meta2, 1, &d)) die(p, d.msg);

  /* The basic file with 40 more spaces of header padding: insertions and deletions inside the
   * JSON then keep the header length valid more often. */
  size_t n;
  uint8_t *src = read_bytes(seed_path("safetensors", "basic.safetensors"), &n);
  uint64_t hl;
  memcpy(&hl, src, 8);
  uint8_t *dst = malloc(n + 40);
  uint64_t nhl = hl + 40;
  memcpy(dst, &nhl, 8);
  memcpy(dst + 8, src + 8, (size_t)hl);
  memset(dst + 8 + hl, ' ', 40);
  memcpy(dst + 8 + hl + 40, src + 8 + hl, n - 8 - (size_t)hl);
  write_bytes(seed_path("safetensors", "padded.safetensors"), dst, n + 40);
  free(dst);
  free(src);

  /* Hand-written header: gaps between tensors, bytes after the last one, members reordered. */
  static const char js[] = "{\"__metadata__\":{},\"y\":{\"shape\":[2],\"data_offsets\":[16,24],"
                           "\"dtype\":\"F32\"},\"x\":{\"dtype\":\"F16\",\"shape\":[1,2],"
                           "\"data_offsets\":[4,8]}}  ";
  uint8_t raw[256];
  uint64_t jl = sizeof js - 1;
  memcpy(raw, &jl, 8);
  memcpy(raw + 8, js, (size_t)jl);
  fill(raw + 8 + jl, 32, 10);
  write_bytes(seed_path("safetensors", "gaps.safetensors"), raw, 8 + (size_t)jl + 32);
}

/* ------------------------------------------------------------------ gguf */

static ttq_gguf_str S(const char *s) { return (ttq_gguf_str){s, strlen(s)}; }

static void gguf_seeds(void) {
  static uint8_t b[8][512];
  ttq_diag d = {0};
  static const uint8_t u8s[] = {1, 2, 3, 250};
  static const int32_t i32s[] = {-1, 0, 7, 1 << 30};
  static const float f32s[] = {0.5f, -2.0f, 1e-6f};
  static const uint8_t bools[] = {0, 1, 1};
  static const uint64_t u64s[] = {1, 1ull << 40};
  ttq_gguf_str strs[] = {S("a"), S(""), S("\xc4\xa0the")};
  ttq_gguf_kv kv[20];
  int n = 0;
  kv[n++] = (ttq_gguf_kv){.key = S("general.architecture"), .type = TTQ_GGUF_STRING, .v.str = S("llama")};
  kv[n++] = (ttq_gguf_kv){.key = S("general.alignment"), .type = TTQ_GGUF_UINT32, .v.u64 = 32};
  kv[n++] = (ttq_gguf_kv){.key = S("t.u8"), .type = TTQ_GGUF_UINT8, .v.u64 = 200};
  kv[n++] = (ttq_gguf_kv){.key = S("t.i8"), .type = TTQ_GGUF_INT8, .v.i64 = -100};
  kv[n++] = (ttq_gguf_kv){.key = S("t.u16"), .type = TTQ_GGUF_UINT16, .v.u64 = 60000};
  kv[n++] = (ttq_gguf_kv){.key = S("t.i16"), .type = TTQ_GGUF_INT16, .v.i64 = -30000};
  kv[n++] = (ttq_gguf_kv){.key = S("t.i32"), .type = TTQ_GGUF_INT32, .v.i64 = -5};
  kv[n++] = (ttq_gguf_kv){.key = S("t.f32"), .type = TTQ_GGUF_FLOAT32, .v.f64 = 1e-5};
  kv[n++] = (ttq_gguf_kv){.key = S("t.bool"), .type = TTQ_GGUF_BOOL, .v.u64 = 1};
  kv[n++] = (ttq_gguf_kv){.key = S("t.u64"), .type = TTQ_GGUF_UINT64, .v.u64 = 1ull << 63};
  kv[n++] = (ttq_gguf_kv){.key = S("t.i64"), .type = TTQ_GGUF_INT64, .v.i64 = -(1ll << 40)};
  kv[n++] = (ttq_gguf_kv){.key = S("t.f64"), .type = TTQ_GGUF_FLOAT64, .v.f64 = 10000.0};
  kv[n].key = S("t.arr.u8"), kv[n].type = TTQ_GGUF_ARRAY;
  kv[n].v.arr.type = TTQ_GGUF_UINT8, kv[n].v.arr.n = 4, kv[n].v.arr.data = u8s, kv[n++].v.arr.strs = NULL;
  kv[n].key = S("t.arr.i32"), kv[n].type = TTQ_GGUF_ARRAY;
  kv[n].v.arr.type = TTQ_GGUF_INT32, kv[n].v.arr.n = 4, kv[n].v.arr.data = (const uint8_t *)i32s,
  kv[n++].v.arr.strs = NULL;
  kv[n].key = S("t.arr.f32"), kv[n].type = TTQ_GGUF_ARRAY;
  kv[n].v.arr.type = TTQ_GGUF_FLOAT32, kv[n].v.arr.n = 3, kv[n].v.arr.data = (const uint8_t *)f32s,
  kv[n++].v.arr.strs = NULL;
  kv[n].key = S("t.arr.bool"), kv[n].type = TTQ_GGUF_ARRAY;
  kv[n].v.arr.type = TTQ_GGUF_BOOL, kv[n].v.arr.n = 3, kv[n].v.arr.data = bools, kv[n++].v.arr.strs = NULL;
  kv[n].key = S("t.arr.u64"), kv[n].type = TTQ_GGUF_ARRAY;
  kv[n].v.arr.type = TTQ_GGUF_UINT64, kv[n].v.arr.n = 2, kv[n].v.arr.data = (const uint8_t *)u64s,
  kv[n++].v.arr.strs = NULL;
  kv[n].key = S("t.arr.str"), kv[n].type = TTQ_GGUF_ARRAY;
  kv[n].v.arr.type = TTQ_GGUF_STRING, kv[n].v.arr.n = 3, kv[n].v.arr.data = NULL, kv[n++].v.arr.strs = strs;
  kv[n].key = S("t.arr.empty"), kv[n].type = TTQ_GGUF_ARRAY;
  kv[n].v.arr.type = TTQ_GGUF_INT16, kv[n].v.arr.n = 0, kv[n].v.arr.data = NULL, kv[n++].v.arr.strs = NULL;

  ttq_tensor ts[4];
  ts[0] = tensor("w.f32", TTQ_F32, 2, (int64_t[]){2, 3}, b[0], 11);
  ts[1] = tensor("w.f16", TTQ_F16, 1, (int64_t[]){4}, b[1], 12);
  ts[2] = tensor("w.bf16", TTQ_BF16, 2, (int64_t[]){2, 2}, b[2], 13);
  ts[3] = tensor("w.q8_0", TTQ_Q8_0, 2, (int64_t[]){2, 32}, b[3], 14);
  const char *p = seed_path("gguf", "all_types.gguf");
  if (ttq_gguf_write(p, kv, (uint64_t)n, ts, 4, &d)) die(p, d.msg);

  /* Version 2 of the same file (same layout). */
  size_t len;
  uint8_t *raw = read_bytes(p, &len);
  raw[4] = 2;
  write_bytes(seed_path("gguf", "all_types_v2.gguf"), raw, len);
  free(raw);

  /* Alignment 64, a 0-d tensor, an empty tensor, a 4-d tensor. */
  ttq_gguf_kv kv2[2] = {
      {.key = S("general.alignment"), .type = TTQ_GGUF_UINT32, .v.u64 = 64},
      {.key = S("general.name"), .type = TTQ_GGUF_STRING, .v.str = S("shapes")}};
  ts[0] = tensor("scalar", TTQ_F32, 0, NULL, b[4], 15);
  ts[1] = tensor("empty", TTQ_F16, 2, (int64_t[]){0, 3}, b[5], 16);
  ts[2] = tensor("four", TTQ_BF16, 4, (int64_t[]){1, 2, 1, 3}, b[6], 17);
  p = seed_path("gguf", "shapes_align64.gguf");
  if (ttq_gguf_write(p, kv2, 2, ts, 3, &d)) die(p, d.msg);

  /* A llama-shaped header: the keys model.c reads, a 6-token vocabulary. */
  ttq_gguf_str toks[] = {S("<s>"), S("a"), S("b"), S("ab"), S("\xc4\xa0"), S("\xc4\xa0" "ab")};
  ttq_gguf_str merges[] = {S("a b"), S("\xc4\xa0 ab")};
  static const int32_t ttype[] = {3, 1, 1, 1, 1, 1};
  ttq_gguf_kv kv3[12];
  int m = 0;
  kv3[m++] = (ttq_gguf_kv){.key = S("general.architecture"), .type = TTQ_GGUF_STRING, .v.str = S("llama")};
  kv3[m++] = (ttq_gguf_kv){.key = S("llama.block_count"), .type = TTQ_GGUF_UINT32, .v.u64 = 1};
  kv3[m++] = (ttq_gguf_kv){.key = S("llama.embedding_length"), .type = TTQ_GGUF_UINT32, .v.u64 = 4};
  kv3[m++] = (ttq_gguf_kv){.key = S("llama.attention.head_count"), .type = TTQ_GGUF_UINT32, .v.u64 = 2};
  kv3[m++] = (ttq_gguf_kv){.key = S("llama.rope.freq_base"), .type = TTQ_GGUF_FLOAT32, .v.f64 = 10000.0};
  kv3[m++] = (ttq_gguf_kv){.key = S("tokenizer.ggml.model"), .type = TTQ_GGUF_STRING, .v.str = S("gpt2")};
  kv3[m++] = (ttq_gguf_kv){.key = S("tokenizer.ggml.pre"), .type = TTQ_GGUF_STRING, .v.str = S("llama-bpe")};
  kv3[m].key = S("tokenizer.ggml.tokens"), kv3[m].type = TTQ_GGUF_ARRAY;
  kv3[m].v.arr.type = TTQ_GGUF_STRING, kv3[m].v.arr.n = 6, kv3[m].v.arr.data = NULL, kv3[m++].v.arr.strs = toks;
  kv3[m].key = S("tokenizer.ggml.merges"), kv3[m].type = TTQ_GGUF_ARRAY;
  kv3[m].v.arr.type = TTQ_GGUF_STRING, kv3[m].v.arr.n = 2, kv3[m].v.arr.data = NULL, kv3[m++].v.arr.strs = merges;
  kv3[m].key = S("tokenizer.ggml.token_type"), kv3[m].type = TTQ_GGUF_ARRAY;
  kv3[m].v.arr.type = TTQ_GGUF_INT32, kv3[m].v.arr.n = 6, kv3[m].v.arr.data = (const uint8_t *)ttype,
  kv3[m++].v.arr.strs = NULL;
  kv3[m++] = (ttq_gguf_kv){.key = S("tokenizer.ggml.bos_token_id"), .type = TTQ_GGUF_UINT32, .v.u64 = 0};
  ts[0] = tensor("token_embd.weight", TTQ_F16, 2, (int64_t[]){6, 4}, b[0], 18);
  ts[1] = tensor("blk.0.attn_q.weight", TTQ_Q8_0, 2, (int64_t[]){1, 32}, b[1], 19);
  ts[2] = tensor("output_norm.weight", TTQ_F32, 1, (int64_t[]){4}, b[2], 20);
  p = seed_path("gguf", "llama_like.gguf");
  if (ttq_gguf_write(p, kv3, (uint64_t)m, ts, 3, &d)) die(p, d.msg);

  /* No keys, no tensors: the smallest valid file. */
  p = seed_path("gguf", "empty.gguf");
  if (ttq_gguf_write(p, NULL, 0, NULL, 0, &d)) die(p, d.msg);
}

/* ------------------------------------------------------------------ tokenizer.json */

/* UTF-8 of byte b's GPT-2 byte-level character. */
static void byte_char(int b, char out[3]) {
  unsigned cp = (unsigned)b;
  if (b <= 0x20) cp = 0x100u + (unsigned)b;
  else if (b >= 0x7f && b <= 0xa0) cp = 0x121u + (unsigned)(b - 0x7f);
  else if (b == 0xad) cp = 0x143u;
  if (cp < 0x80) {
    out[0] = (char)cp;
    out[1] = 0;
  } else {
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    out[2] = 0;
  }
}

typedef struct tj_opts {
  const char *name;
  int bytes;               /* byte tokens: 256 (complete) or fewer */
  bool merges_as_strings;  /* old "a b" format */
  const char *pretok;      /* "split_regex", "split_string", "bytelevel", "bytelevel_noregex" */
  const char *regex;
  bool ignore_merges, unk, added;
} tj_opts;

static void tj_seed(const tj_opts *o) {
  /* Merges over the byte-level alphabet: Ġ t, h e, Ġt he, i n, Ġ a, ... */
  static const char *const merges[][2] = {{"\xc4\xa0", "t"}, {"h", "e"}, {"\xc4\xa0t", "he"},
                                          {"i", "n"},        {"\xc4\xa0", "a"}, {"o", "u"},
                                          {"e", "r"},        {"\xc4\x8a", "\xc4\x8a"}};
  int nm = (int)(sizeof merges / sizeof merges[0]);
  json_t *vocab = json_object(), *jm = json_array();
  int id = 0;
  char c[3];
  for (int b = 0; b < o->bytes; b++) {
    byte_char(b, c);
    json_object_set_new(vocab, c, json_integer(id++));
  }
  for (int i = 0; i < nm; i++) {
    char cat[16];
    snprintf(cat, sizeof cat, "%s%s", merges[i][0], merges[i][1]);
    if (!json_object_get(vocab, cat)) json_object_set_new(vocab, cat, json_integer(id++));
    if (o->merges_as_strings) {
      char s[16];
      snprintf(s, sizeof s, "%s %s", merges[i][0], merges[i][1]);
      json_array_append_new(jm, json_string(s));
    } else {
      json_array_append_new(jm, json_pack("[ss]", merges[i][0], merges[i][1]));
    }
  }
  if (o->unk) json_object_set_new(vocab, "<unk>", json_integer(id++));
  json_t *model = json_object();
  json_object_set_new(model, "type", json_string("BPE"));
  json_object_set_new(model, "dropout", json_null());
  json_object_set_new(model, "unk_token", o->unk ? json_string("<unk>") : json_null());
  json_object_set_new(model, "continuing_subword_prefix", json_string(""));
  json_object_set_new(model, "end_of_word_suffix", json_string(""));
  json_object_set_new(model, "fuse_unk", json_boolean(o->unk));
  json_object_set_new(model, "byte_fallback", json_false());
  json_object_set_new(model, "ignore_merges", json_boolean(o->ignore_merges));
  json_object_set_new(model, "vocab", vocab);
  json_object_set_new(model, "merges", jm);

  json_t *pt;
  json_t *bl = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0,
                         "trim_offsets", 0, "use_regex", 0);
  if (!strcmp(o->pretok, "bytelevel")) {
    json_object_set_new(bl, "use_regex", json_true());
    pt = bl;
  } else if (!strcmp(o->pretok, "bytelevel_noregex")) {
    pt = json_pack("{s:s, s:[o]}", "type", "Sequence", "pretokenizers", bl);
  } else {
    bool lit = !strcmp(o->pretok, "split_string");
    json_t *split = json_pack("{s:s, s:o, s:s, s:b}", "type", "Split", "pattern",
                              json_pack("{s:s}", lit ? "String" : "Regex", o->regex), "behavior",
                              "Isolated", "invert", 0);
    pt = json_pack("{s:s, s:[o, o]}", "type", "Sequence", "pretokenizers", split, bl);
  }
  json_t *added = json_array();
  if (o->added) {
    json_array_append_new(added, json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", id++,
                                           "content", "<|endoftext|>", "single_word", 0, "lstrip",
                                           0, "rstrip", 0, "normalized", 0, "special", 1));
    json_array_append_new(added, json_pack("{s:i, s:s, s:b}", "id", id++, "content",
                                           "<|im_start|>", "special", 1));
    json_array_append_new(added, json_pack("{s:i, s:s, s:b}", "id", id++, "content", "<think>",
                                           "special", 0));
  }
  json_t *root = json_pack("{s:s, s:n, s:n, s:o, s:n, s:o, s:n, s:o}", "version", "1.0",
                           "truncation", "padding", "added_tokens", added, "normalizer",
                           "pre_tokenizer", pt, "post_processor", "model", model);
  json_object_set_new(root, "decoder", json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel",
                                                 "add_prefix_space", 0, "trim_offsets", 0,
                                                 "use_regex", 0));
  const char *p = seed_path("tokenizer_json", o->name);
  if (json_dump_file(root, p, JSON_COMPACT | JSON_ENSURE_ASCII)) die(p, "json_dump_file");
  json_decref(root);
  /* Each seed must load: a seed that fails early teaches the fuzzer little. */
  ttq_tokenizer *t = NULL;
  ttq_diag d = {0};
  if (ttq_tokenizer_from_json(p, &t, &d)) die(p, d.msg);
  ttq_tokenizer_free(t);
}

static void tj_seeds(void) {
  tj_opts o[] = {
      {"qwen2_split.json", 256, false, "split_regex", NULL, false, false, true},
      {"llama3_split_old_merges.json", 256, true, "split_regex", NULL, false, false, true},
      {"gpt2_bytelevel.json", 256, true, "bytelevel", NULL, false, false, false},
      {"bytelevel_noregex_ignore_merges.json", 256, false, "bytelevel_noregex", NULL, true, false,
       true},
      {"split_string_unk_partial.json", 128, false, "split_string", " ", false, true, false},
  };
  o[0].regex = TTQ_PRETOK_QWEN2;
  o[1].regex = TTQ_PRETOK_LLAMA3;
  for (size_t i = 0; i < sizeof o / sizeof o[0]; i++) tj_seed(&o[i]);
}

/* ------------------------------------------------------------------ tokenizer text */

#define NUL_TEXT "a\0b   \t\t\n\n\n  \r\r\n 's 'LL 'Ve"
static void text_seeds(void) {
  static const struct { const char *name, *text; size_t len; } t[] = {
      {"english.txt", "In the beginning God created the heaven and the earth. It's 2024, isn't it?\n", 0},
      {"code.txt", "int main(void) {\n\tfor (int i = 0; i < 10; i++) printf(\"%d\\n\", i);\r\n  return 0;\n}\n", 0},
      {"chat.txt", "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
                   "<|im_start|>assistant\n<think>\n\n</think>\n\nHello<|endoftext|>", 0},
      {"unicode.txt", "caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80\xf0\x9f\x91\x8d \xe2\x80\x94 "
                      "\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xe3\x80\x80\xc2\xa0\xe1\xa0\x8e 123456789", 0},
      {"invalid_utf8.bin", "ok \xff\xfe \xc3 \xe2\x82 \xed\xa0\x80 \xf4\x90\x80\x80 \xc0\xaf \x80\x80 end\xe4", 0},
      {"nul_and_spaces.bin", NUL_TEXT, sizeof NUL_TEXT - 1},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
    write_bytes(seed_path("tokenizer", t[i].name), t[i].text, t[i].len ? t[i].len : strlen(t[i].text));
}

/* ------------------------------------------------------------------ protobuf requests */

static void pack_seed(const char *name, const Ttq__Request *r) {
  size_t n = ttq__request__get_packed_size(r);
  uint8_t *b = malloc(n ? n : 1);
  if (!b) die(name, "out of memory");
  ttq__request__pack(r, b);
  write_bytes(seed_path("proto_request", name), b, n);
  free(b);
}

static void proto_seeds(void) {
  Ttq__Quantization q = TTQ__QUANTIZATION__INIT;
  q.method = "ttq";
  q.has_bits = 1, q.bits = 4;
  q.has_group = 1, q.group = 32;
  q.has_rank = 1, q.rank = 16;
  q.has_alpha = 1, q.alpha = 0.5f;
  q.has_lambda = 1, q.lambda = 1e-3f;
  Ttq__GenerateRequest g = TTQ__GENERATE_REQUEST__INIT;
  g.prompt = "In the beginning";
  g.has_max_tokens = 1, g.max_tokens = 64;
  g.has_temperature = 1, g.temperature = 0.8f;
  g.has_top_k = 1, g.top_k = 40;
  g.has_top_p = 1, g.top_p = 0.95f;
  g.has_seed = 1, g.seed = 7;
  char *stops[] = {"\n\n", "END"};
  g.n_stop = 2, g.stop = stops;
  g.quant = &q;
  g.has_deadline_ms = 1, g.deadline_ms = 30000;
  Ttq__Request r = TTQ__REQUEST__INIT;
  r.request_id = "req-1";
  r.kind_case = TTQ__REQUEST__KIND_GENERATE;
  r.generate = &g;
  pack_seed("generate_prompt.pb", &r);

  Ttq__ChatMessage m1 = TTQ__CHAT_MESSAGE__INIT, m2 = TTQ__CHAT_MESSAGE__INIT;
  m1.role = "system", m1.content = "You are terse.";
  m2.role = "user", m2.content = "caf\xc3\xa9?";
  Ttq__ChatMessage *ms[] = {&m1, &m2};
  Ttq__GenerateRequest g2 = TTQ__GENERATE_REQUEST__INIT;
  g2.n_messages = 2, g2.messages = ms;
  r.request_id = NULL;
  r.generate = &g2;
  pack_seed("generate_messages.pb", &r);

  Ttq__CancelRequest c = TTQ__CANCEL_REQUEST__INIT;
  c.target_id = "req-1";
  r.request_id = "c";
  r.kind_case = TTQ__REQUEST__KIND_CANCEL;
  r.cancel = &c;
  pack_seed("cancel.pb", &r);

  Ttq__HealthRequest h = TTQ__HEALTH_REQUEST__INIT;
  r.request_id = NULL;
  r.kind_case = TTQ__REQUEST__KIND_HEALTH;
  r.health = &h;
  pack_seed("health.pb", &r);

  Ttq__StatsRequest s = TTQ__STATS_REQUEST__INIT;
  r.kind_case = TTQ__REQUEST__KIND_STATS;
  r.stats = &s;
  pack_seed("stats.pb", &r);

  /* Unknown fields (a later client): field 15 varint, field 16 length-delimited. */
  static const uint8_t unknown[] = {0x0a, 0x01, 'x', 0x78, 0x2a, 0x82, 0x01, 0x03, 'a', 'b', 'c',
                                    0x22, 0x00};
  write_bytes(seed_path("proto_request", "unknown_fields.pb"), unknown, sizeof unknown);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s OUTDIR   (writes OUTDIR/<target>/...)\n", argv[0]);
    return 2;
  }
  g_root = argv[1];
  if (mkdir(g_root, 0777) != 0 && errno != EEXIST) die(g_root, strerror(errno));
  st_seeds();
  gguf_seeds();
  tj_seeds();
  text_seeds();
  proto_seeds();
  return 0;
}
