/* cmd_synth.c -- `ttqd synth`: writes a random-weight model of any shape, as a GGUF file
 * (FILE ends in .gguf) or a Hugging Face directory (anything else), with the vocabulary of an
 * existing model, so benchmarks can run shapes no trained checkpoint here has.
 *
 * Weights are uniform with standard deviation 0.02 from a seeded generator; norm gains are 1.
 * The output loads with ttq_model_load (and the GGUF with llama.cpp). */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "gguf.h"
#include "safetensors.h"
#include "util.h"

static const char synth_usage[] =
    "usage: ttqd synth --dim D --layers L --ffn F --heads H --kv-heads K --vocab-from PATH\n"
    "                  --out FILE [--arch llama|qwen3] [--dtype bf16|f16|f32] [--head-dim N]\n"
    "                  [--tied] [--seed S]\n"
    "  --vocab-from  a model (directory or .gguf) whose tokenizer the new model uses\n"
    "  --out         FILE.gguf writes GGUF; any other name writes a Hugging Face directory\n"
    "  --dtype       weight type (default: f16 for GGUF, bf16 for Hugging Face)\n";

/* The vocabulary to copy: token strings by id, types, merges, special ids. */
typedef struct vocab {
  int n;
  char **tokens;
  int32_t *types; /* 1 normal, 3 control */
  int n_merges;
  char **merges;  /* "a b" */
  const char *pre; /* "llama-bpe" or "qwen2" */
  int bos, eos;
  bool add_bos;
  char *chat_template;
  char *tokenizer_config; /* raw tokenizer_config.json text when from a directory */
} vocab;

static void vocab_free(vocab *v) {
  for (int i = 0; i < v->n; i++) free(v->tokens ? v->tokens[i] : NULL);
  for (int i = 0; i < v->n_merges; i++) free(v->merges ? v->merges[i] : NULL);
  free(v->tokens);
  free(v->types);
  free(v->merges);
  free(v->chat_template);
  free(v->tokenizer_config);
}

static int vocab_from_json(const char *dir, vocab *v) {
  char *p = ttq__path_join(dir, "tokenizer.json");
  json_error_t err;
  json_t *j = json_load_file(p, 0, &err);
  int rc = -1;
  if (!j) {
    fprintf(stderr, "ttqd synth: %s: %s\n", p, err.text);
    goto out;
  }
  json_t *vm = json_object_get(json_object_get(j, "model"), "vocab");
  json_t *mg = json_object_get(json_object_get(j, "model"), "merges");
  if (!json_is_object(vm) || !json_is_array(mg)) {
    fprintf(stderr, "ttqd synth: %s: no BPE model.vocab / model.merges\n", p);
    goto out;
  }
  v->n = (int)json_object_size(vm);
  v->tokens = calloc((size_t)v->n, sizeof *v->tokens);
  v->types = calloc((size_t)v->n, sizeof *v->types);
  const char *key;
  json_t *val;
  json_object_foreach(vm, key, val) {
    json_int_t id = json_integer_value(val);
    if (!json_is_integer(val) || id < 0 || id >= v->n || v->tokens[id]) {
      fprintf(stderr, "ttqd synth: %s: vocab id of '%s' is invalid\n", p, key);
      goto out;
    }
    v->tokens[id] = strdup(key);
    v->types[id] = 1;
  }
  v->n_merges = (int)json_array_size(mg);
  v->merges = calloc((size_t)v->n_merges + 1, sizeof *v->merges);
  for (int i = 0; i < v->n_merges; i++) {
    json_t *e = json_array_get(mg, (size_t)i);
    if (json_is_string(e)) {
      v->merges[i] = strdup(json_string_value(e));
    } else if (json_is_array(e) && json_array_size(e) == 2) {
      const char *a = json_string_value(json_array_get(e, 0)), *b = json_string_value(json_array_get(e, 1));
      if (!a || !b) goto bad_merge;
      size_t la = strlen(a), lb = strlen(b);
      v->merges[i] = malloc(la + lb + 2);
      memcpy(v->merges[i], a, la);
      v->merges[i][la] = ' ';
      memcpy(v->merges[i] + la + 1, b, lb + 1);
    } else {
    bad_merge:
      fprintf(stderr, "ttqd synth: %s: model.merges[%d] is malformed\n", p, i);
      goto out;
    }
  }
  size_t i;
  json_array_foreach(json_object_get(j, "added_tokens"), i, val) {
    json_int_t id = json_integer_value(json_object_get(val, "id"));
    if (id >= 0 && id < v->n && json_is_true(json_object_get(val, "special"))) v->types[id] = 3;
  }
  json_t *pt = json_object_get(j, "pre_tokenizer");
  char *dump = pt ? json_dumps(pt, JSON_COMPACT) : NULL;
  v->pre = (dump && strstr(dump, "\\\\p{N}{1,3}")) ? "llama-bpe" : "qwen2";
  free(dump);
  rc = 0;
out:
  json_decref(j);
  free(p);
  return rc;
}

static int load_vocab(const char *path, vocab *v) {
  memset(v, 0, sizeof *v);
  v->bos = v->eos = -1;
  ttq_model *m = ttqd_load_model("synth", path); /* validates the source end to end */
  if (!m) return -1;
  v->bos = m->cfg.bos_id;
  v->eos = m->cfg.n_eos ? m->cfg.eos_ids[0] : -1;
  v->add_bos = m->cfg.add_bos;
  if (m->chat_template) v->chat_template = strdup(m->chat_template);
  int rc = 0;
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
    rc = vocab_from_json(path, v);
    char *tc = ttq__path_join(path, "tokenizer_config.json");
    ttq__read_file(tc, &v->tokenizer_config, NULL, NULL);
    free(tc);
  } else {
    ttq_gguf_file g;
    ttq_diag d = {0};
    if ((rc = ttq_gguf_open(path, &g, &d))) {
      fprintf(stderr, "ttqd synth: %s\n", d.msg);
    } else {
      const ttq_gguf_kv *t = ttq_gguf_find_kv(&g, "tokenizer.ggml.tokens");
      const ttq_gguf_kv *mg = ttq_gguf_find_kv(&g, "tokenizer.ggml.merges");
      const ttq_gguf_kv *ty = ttq_gguf_find_kv(&g, "tokenizer.ggml.token_type");
      char *pre = NULL;
      ttq_gguf_get_str(&g, "tokenizer.ggml.pre", &pre);
      v->pre = pre && !strcmp(pre, "qwen2") ? "qwen2" : "llama-bpe";
      free(pre);
      v->n = (int)t->v.arr.n;
      v->tokens = calloc((size_t)v->n, sizeof *v->tokens);
      v->types = calloc((size_t)v->n, sizeof *v->types);
      for (int i = 0; i < v->n; i++) {
        v->tokens[i] = strndup(t->v.arr.strs[i].ptr, t->v.arr.strs[i].len);
        v->types[i] = 1;
        if (ty && ty->v.arr.n == (uint64_t)v->n) memcpy(&v->types[i], ty->v.arr.data + 4 * i, 4);
      }
      v->n_merges = (int)mg->v.arr.n;
      v->merges = calloc((size_t)v->n_merges + 1, sizeof *v->merges);
      for (int i = 0; i < v->n_merges; i++)
        v->merges[i] = strndup(mg->v.arr.strs[i].ptr, mg->v.arr.strs[i].len);
      ttq_gguf_close(&g);
    }
  }
  ttq_model_free(m);
  return rc;
}

/* ---- random weights ---- */

typedef struct wset {
  int n, cap;
  ttq_tensor *t;
} wset;

static uint64_t rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static int add_tensor(wset *w, const char *name, ttq_dtype dt, int64_t r, int64_t c, bool ones,
                      uint64_t seed) {
  if (w->n == w->cap) {
    w->cap = w->cap ? w->cap * 2 : 64;
    w->t = realloc(w->t, (size_t)w->cap * sizeof *w->t);
  }
  ttq_tensor *t = &w->t[w->n++];
  memset(t, 0, sizeof *t);
  t->name = strdup(name);
  t->dtype = ones ? TTQ_F32 : dt;
  t->ndim = c ? 2 : 1;
  t->shape[0] = r;
  t->shape[1] = c;
  int64_t n = r * (c ? c : 1);
  t->nbytes = ttq_dtype_bytes(t->dtype, n);
  void *buf = malloc(t->nbytes);
  if (!buf) return -1;
  t->data = buf;
  uint64_t s = seed;
  const float a = 0.02f * sqrtf(3.0f);
  for (int64_t i = 0; i < n; i++) {
    float x = ones ? 1.0f : a * (float)((double)(rng_next(&s) >> 40) / 8388608.0 - 1.0);
    if (t->dtype == TTQ_F32) ((float *)buf)[i] = x;
    else if (t->dtype == TTQ_BF16) ((uint16_t *)buf)[i] = ttq__f32_to_bf16(x);
    else ((uint16_t *)buf)[i] = ttq__f32_to_f16(x);
  }
  return 0;
}

static void wset_free(wset *w) {
  for (int i = 0; i < w->n; i++) {
    free((void *)w->t[i].name);
    free((void *)w->t[i].data);
  }
  free(w->t);
}

/* Row (h, j * hd/2 + i) of the Hugging Face layout becomes row (h, 2i + j). */
static int permute_rows(ttq_tensor *t, int heads, int hd) {
  size_t row = t->nbytes / (size_t)t->shape[0];
  uint8_t *src = (uint8_t *)t->data, *dst = malloc(t->nbytes);
  if (!dst) return -1;
  for (int h = 0; h < heads; h++)
    for (int j = 0; j < 2; j++)
      for (int i = 0; i < hd / 2; i++)
        memcpy(dst + ((size_t)h * hd + 2 * i + j) * row, src + ((size_t)h * hd + j * hd / 2 + i) * row, row);
  free(src);
  t->data = dst;
  return 0;
}

typedef struct shape {
  int dim, layers, ffn, heads, kv, head_dim, vocab;
  bool qwen3, tied;
} shape;

/* Builds the tensors with either naming scheme. */
static int make_weights(const shape *s, ttq_dtype dt, uint64_t seed, bool gguf, wset *w) {
  char name[128];
  int64_t qd = (int64_t)s->heads * s->head_dim, kvd = (int64_t)s->kv * s->head_dim;
  uint64_t k = seed * 1000003ull;
  int rc = add_tensor(w, gguf ? "token_embd.weight" : "model.embed_tokens.weight", dt, s->vocab,
                      s->dim, false, ++k);
  for (int l = 0; l < s->layers && !rc; l++) {
    struct {
      const char *hf, *gg;
      int64_t r, c;
    } t[] = {{"input_layernorm", "attn_norm", s->dim, 0},
             {"self_attn.q_proj", "attn_q", qd, s->dim},
             {"self_attn.k_proj", "attn_k", kvd, s->dim},
             {"self_attn.v_proj", "attn_v", kvd, s->dim},
             {"self_attn.o_proj", "attn_output", s->dim, qd},
             {"post_attention_layernorm", "ffn_norm", s->dim, 0},
             {"mlp.gate_proj", "ffn_gate", s->ffn, s->dim},
             {"mlp.up_proj", "ffn_up", s->ffn, s->dim},
             {"mlp.down_proj", "ffn_down", s->dim, s->ffn},
             {"self_attn.q_norm", "attn_q_norm", s->head_dim, 0},
             {"self_attn.k_norm", "attn_k_norm", s->head_dim, 0}};
    int n = s->qwen3 ? 11 : 9;
    for (int i = 0; i < n && !rc; i++) {
      if (gguf) snprintf(name, sizeof name, "blk.%d.%s.weight", l, t[i].gg);
      else snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, t[i].hf);
      rc = add_tensor(w, name, dt, t[i].r, t[i].c, t[i].c == 0, ++k);
      /* GGUF llama stores q/k rows in GGML's interleaved RoPE order, as llama.cpp's converter
       * writes them: the same model in both layouts computes the same function. */
      if (!rc && gguf && !s->qwen3 && (i == 1 || i == 2))
        rc = permute_rows(&w->t[w->n - 1], i == 1 ? s->heads : s->kv, s->head_dim);
    }
  }
  if (!rc) rc = add_tensor(w, gguf ? "output_norm.weight" : "model.norm.weight", dt, s->dim, 0, true, ++k);
  if (!rc && !s->tied) rc = add_tensor(w, gguf ? "output.weight" : "lm_head.weight", dt, s->vocab, s->dim, false, ++k);
  return rc;
}

static ttq_gguf_kv kv_u32(const char *key, uint64_t v) {
  ttq_gguf_kv kv = {.key = {key, strlen(key)}, .type = TTQ_GGUF_UINT32};
  kv.v.u64 = v;
  return kv;
}
static ttq_gguf_kv kv_f32(const char *key, double v) {
  ttq_gguf_kv kv = {.key = {key, strlen(key)}, .type = TTQ_GGUF_FLOAT32};
  kv.v.f64 = v;
  return kv;
}
static ttq_gguf_kv kv_str(const char *key, const char *v) {
  ttq_gguf_kv kv = {.key = {key, strlen(key)}, .type = TTQ_GGUF_STRING};
  kv.v.str.ptr = v;
  kv.v.str.len = strlen(v);
  return kv;
}

static int write_gguf(const char *out, const shape *s, const vocab *v, const wset *w, ttq_dtype dt) {
  const char *arch = s->qwen3 ? "qwen3" : "llama";
  char keys[16][96];
  int nk = 0;
#define K(fmt) (snprintf(keys[nk], sizeof keys[nk], fmt, arch), keys[nk++])
  ttq_gguf_kv kv[40];
  int n = 0;
  kv[n++] = kv_str("general.architecture", arch);
  kv[n++] = kv_str("general.name", "ttq-synth");
  kv[n++] = kv_u32(K("%s.context_length"), 4096);
  kv[n++] = kv_u32(K("%s.embedding_length"), (uint64_t)s->dim);
  kv[n++] = kv_u32(K("%s.block_count"), (uint64_t)s->layers);
  kv[n++] = kv_u32(K("%s.feed_forward_length"), (uint64_t)s->ffn);
  kv[n++] = kv_u32(K("%s.rope.dimension_count"), (uint64_t)s->head_dim);
  kv[n++] = kv_u32(K("%s.attention.head_count"), (uint64_t)s->heads);
  kv[n++] = kv_u32(K("%s.attention.head_count_kv"), (uint64_t)s->kv);
  kv[n++] = kv_u32(K("%s.attention.key_length"), (uint64_t)s->head_dim);
  kv[n++] = kv_u32(K("%s.attention.value_length"), (uint64_t)s->head_dim);
  kv[n++] = kv_f32(K("%s.attention.layer_norm_rms_epsilon"), 1e-5);
  kv[n++] = kv_f32(K("%s.rope.freq_base"), s->qwen3 ? 1e6 : 1e4);
  kv[n++] = kv_u32(K("%s.vocab_size"), (uint64_t)s->vocab);
#undef K
  kv[n++] = kv_u32("general.file_type", dt == TTQ_F32 ? 0 : dt == TTQ_F16 ? 1 : 32);
  kv[n++] = kv_str("tokenizer.ggml.model", "gpt2");
  kv[n++] = kv_str("tokenizer.ggml.pre", v->pre);
  ttq_gguf_str *ts = calloc((size_t)v->n, sizeof *ts), *ms = calloc((size_t)v->n_merges + 1, sizeof *ms);
  for (int i = 0; i < v->n; i++) ts[i] = (ttq_gguf_str){v->tokens[i], strlen(v->tokens[i])};
  for (int i = 0; i < v->n_merges; i++) ms[i] = (ttq_gguf_str){v->merges[i], strlen(v->merges[i])};
  ttq_gguf_kv a = {.key = {"tokenizer.ggml.tokens", 21}, .type = TTQ_GGUF_ARRAY};
  a.v.arr.type = TTQ_GGUF_STRING;
  a.v.arr.n = (uint64_t)v->n;
  a.v.arr.strs = ts;
  kv[n++] = a;
  ttq_gguf_kv b = {.key = {"tokenizer.ggml.token_type", 25}, .type = TTQ_GGUF_ARRAY};
  b.v.arr.type = TTQ_GGUF_INT32;
  b.v.arr.n = (uint64_t)v->n;
  b.v.arr.data = (const uint8_t *)v->types;
  kv[n++] = b;
  ttq_gguf_kv c = {.key = {"tokenizer.ggml.merges", 21}, .type = TTQ_GGUF_ARRAY};
  c.v.arr.type = TTQ_GGUF_STRING;
  c.v.arr.n = (uint64_t)v->n_merges;
  c.v.arr.strs = ms;
  kv[n++] = c;
  if (v->bos >= 0) kv[n++] = kv_u32("tokenizer.ggml.bos_token_id", (uint64_t)v->bos);
  if (v->eos >= 0) kv[n++] = kv_u32("tokenizer.ggml.eos_token_id", (uint64_t)v->eos);
  ttq_gguf_kv ab = {.key = {"tokenizer.ggml.add_bos_token", 28}, .type = TTQ_GGUF_BOOL};
  ab.v.u64 = v->add_bos;
  kv[n++] = ab;
  if (v->chat_template) kv[n++] = kv_str("tokenizer.chat_template", v->chat_template);
  ttq_diag d = {0};
  int rc = ttq_gguf_write(out, kv, (uint64_t)n, w->t, (uint64_t)w->n, &d);
  if (rc) fprintf(stderr, "ttqd synth: %s\n", d.msg);
  free(ts);
  free(ms);
  return rc;
}

static int write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  fputs(text, f);
  return fclose(f);
}

static int write_hf(const char *out, const shape *s, const vocab *v, const wset *w) {
  if (mkdir(out, 0755) != 0 && errno != EEXIST) {
    fprintf(stderr, "ttqd synth: %s: cannot create directory: %s\n", out, strerror(errno));
    return -1;
  }
  json_t *cfg = json_pack(
      "{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b, s:s, s:b, s:b}",
      "architectures", s->qwen3 ? "Qwen3ForCausalLM" : "LlamaForCausalLM", "model_type",
      s->qwen3 ? "qwen3" : "llama", "hidden_size", s->dim, "num_hidden_layers", s->layers,
      "num_attention_heads", s->heads, "num_key_value_heads", s->kv, "head_dim", s->head_dim,
      "intermediate_size", s->ffn, "vocab_size", s->vocab, "max_position_embeddings", 4096,
      "rms_norm_eps", 1e-5, "rope_theta", s->qwen3 ? 1e6 : 1e4, "tie_word_embeddings", s->tied,
      "hidden_act", "silu", "attention_bias", 0, "mlp_bias", 0);
  if (v->bos >= 0) json_object_set_new(cfg, "bos_token_id", json_integer(v->bos));
  if (v->eos >= 0) json_object_set_new(cfg, "eos_token_id", json_integer(v->eos));
  char *p = ttq__path_join(out, "config.json");
  int rc = json_dump_file(cfg, p, JSON_INDENT(2));
  json_decref(cfg);
  free(p);
  /* tokenizer.json in the Hugging Face tokenizers layout */
  json_t *vocab_o = json_object(), *merges = json_array(), *added = json_array();
  for (int i = 0; i < v->n; i++) {
    json_object_set_new(vocab_o, v->tokens[i], json_integer(i));
    if (v->types[i] == 3 || v->types[i] == 4)
      json_array_append_new(added, json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", i,
                                             "content", v->tokens[i], "single_word", 0, "lstrip", 0,
                                             "rstrip", 0, "normalized", 0, "special", 1));
  }
  for (int i = 0; i < v->n_merges; i++) {
    const char *sp = strchr(v->merges[i], ' ');
    if (!sp) continue;
    json_array_append_new(merges, json_pack("[s#, s]", v->merges[i], (int)(sp - v->merges[i]), sp + 1));
  }
  const char *regex = !strcmp(v->pre, "qwen2") ? TTQ_PRETOK_QWEN2 : TTQ_PRETOK_LLAMA3;
  json_t *tok = json_pack(
      "{s:s, s:n, s:n, s:o, s:n, s:{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s, s:b, s:b, s:b}]}, "
      "s:n, s:{s:s, s:b, s:b, s:b}, s:{s:s, s:n, s:b, s:o, s:o}}",
      "version", "1.0", "truncation", "padding", "added_tokens", added, "normalizer",
      "pre_tokenizer", "type", "Sequence", "pretokenizers", "type", "Split", "pattern", "Regex",
      regex, "behavior", "Isolated", "invert", 0, "type", "ByteLevel", "add_prefix_space", 0,
      "trim_offsets", 1, "use_regex", 0, "post_processor", "decoder", "type", "ByteLevel",
      "add_prefix_space", 1, "trim_offsets", 1, "use_regex", 1, "model", "type", "BPE", "dropout",
      "ignore_merges", 0, "vocab", vocab_o, "merges", merges);
  p = ttq__path_join(out, "tokenizer.json");
  if (!tok || json_dump_file(tok, p, JSON_COMPACT)) rc = -1;
  json_decref(tok);
  free(p);
  p = ttq__path_join(out, "tokenizer_config.json");
  if (v->tokenizer_config) {
    if (write_text(p, v->tokenizer_config)) rc = -1;
  } else {
    json_t *tc = json_pack("{s:b}", "add_bos_token", v->add_bos);
    if (v->bos >= 0) json_object_set_new(tc, "bos_token", json_string(v->tokens[v->bos]));
    if (v->eos >= 0) json_object_set_new(tc, "eos_token", json_string(v->tokens[v->eos]));
    if (v->chat_template) json_object_set_new(tc, "chat_template", json_string(v->chat_template));
    if (json_dump_file(tc, p, JSON_INDENT(1))) rc = -1;
    json_decref(tc);
  }
  free(p);
  p = ttq__path_join(out, "model.safetensors");
  ttq_diag d = {0};
  if (ttq_st_write(p, w->t, w->n, NULL, 0, &d)) {
    fprintf(stderr, "ttqd synth: %s\n", d.msg);
    rc = -1;
  }
  free(p);
  if (rc) fprintf(stderr, "ttqd synth: %s: writing the model failed\n", out);
  return rc;
}

int ttqd_cmd_synth(int argc, char **argv) {
  long dim = 0, layers = 0, ffn = 0, heads = 0, kv = 0, head_dim = 0;
  const char *vocab_from = NULL, *out = NULL, *arch = "llama", *dtype = NULL;
  bool tied = false;
  uint64_t seed = 1;
  static const struct option opts[] = {
      {"dim", required_argument, 0, 'd'},       {"layers", required_argument, 0, 'l'},
      {"ffn", required_argument, 0, 'f'},       {"heads", required_argument, 0, 'H'},
      {"kv-heads", required_argument, 0, 'K'},  {"head-dim", required_argument, 0, 'D'},
      {"vocab-from", required_argument, 0, 'v'}, {"out", required_argument, 0, 'o'},
      {"arch", required_argument, 0, 'a'},      {"dtype", required_argument, 0, 't'},
      {"tied", no_argument, 0, 'T'},            {"seed", required_argument, 0, 's'},
      {"help", no_argument, 0, 'h'},            {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    long *dst = NULL;
    const char *flag = NULL;
    switch (c) {
    case 'd': dst = &dim, flag = "--dim"; break;
    case 'l': dst = &layers, flag = "--layers"; break;
    case 'f': dst = &ffn, flag = "--ffn"; break;
    case 'H': dst = &heads, flag = "--heads"; break;
    case 'K': dst = &kv, flag = "--kv-heads"; break;
    case 'D': dst = &head_dim, flag = "--head-dim"; break;
    case 'v': vocab_from = optarg; break;
    case 'o': out = optarg; break;
    case 'a': arch = optarg; break;
    case 't': dtype = optarg; break;
    case 'T': tied = true; break;
    case 's': if (ttqd_parse_u64("synth", "--seed", optarg, &seed)) return TTQD_EXIT_USAGE; break;
    case 'h': fputs(synth_usage, stdout); return 0;
    default: fputs(synth_usage, stderr); return TTQD_EXIT_USAGE;
    }
    if (dst && ttqd_parse_int("synth", flag, optarg, 1, 1 << 20, dst)) return TTQD_EXIT_USAGE;
  }
  if (!dim || !layers || !ffn || !heads || !vocab_from || !out || optind != argc) {
    fprintf(stderr, "ttqd synth: --dim, --layers, --ffn, --heads, --vocab-from and --out are required\n%s",
            synth_usage);
    return TTQD_EXIT_USAGE;
  }
  if (!kv) kv = heads;
  if (!head_dim) {
    if (dim % heads) {
      fprintf(stderr, "ttqd synth: --dim %ld is not a multiple of --heads %ld (give --head-dim)\n", dim, heads);
      return TTQD_EXIT_USAGE;
    }
    head_dim = dim / heads;
  }
  if (heads % kv || head_dim % 2) {
    fprintf(stderr, "ttqd synth: --heads %ld must be a multiple of --kv-heads %ld and the head dim %ld even\n",
            heads, kv, head_dim);
    return TTQD_EXIT_USAGE;
  }
  if (strcmp(arch, "llama") && strcmp(arch, "qwen3")) {
    fprintf(stderr, "ttqd synth: --arch '%s' is not supported (llama, qwen3)\n", arch);
    return TTQD_EXIT_USAGE;
  }
  size_t ol = strlen(out);
  bool gguf = ol > 5 && !strcmp(out + ol - 5, ".gguf");
  ttq_dtype dt = gguf ? TTQ_F16 : TTQ_BF16;
  if (dtype) {
    if (!strcmp(dtype, "bf16")) dt = TTQ_BF16;
    else if (!strcmp(dtype, "f16")) dt = TTQ_F16;
    else if (!strcmp(dtype, "f32")) dt = TTQ_F32;
    else {
      fprintf(stderr, "ttqd synth: --dtype '%s' is not supported (bf16, f16, f32)\n", dtype);
      return TTQD_EXIT_USAGE;
    }
  }
  vocab v;
  if (load_vocab(vocab_from, &v)) {
    vocab_free(&v);
    return TTQD_EXIT_FAIL;
  }
  shape s = {(int)dim, (int)layers, (int)ffn, (int)heads, (int)kv, (int)head_dim, v.n,
             !strcmp(arch, "qwen3"), tied};
  wset w = {0};
  double t0 = ttqd_now_ms();
  int rc = make_weights(&s, dt, seed, gguf, &w);
  if (rc) fprintf(stderr, "ttqd synth: out of memory for the weights\n");
  else rc = gguf ? write_gguf(out, &s, &v, &w, dt) : write_hf(out, &s, &v, &w);
  if (!rc) {
    size_t bytes = 0;
    int64_t params = 0;
    for (int i = 0; i < w.n; i++) bytes += w.t[i].nbytes, params += ttq_tensor_numel(&w.t[i]);
    fprintf(stderr, "ttqd synth: wrote %s (%s, %s, %.1fM parameters, %.1f MiB) in %.1f s\n", out,
            gguf ? "GGUF" : "Hugging Face", ttq_dtype_name(dt), params / 1e6, bytes / 1048576.0,
            (ttqd_now_ms() - t0) / 1e3);
  }
  wset_free(&w);
  vocab_free(&v);
  return rc ? TTQD_EXIT_FAIL : 0;
}
