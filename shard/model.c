/* model.c -- loads a decoder model (config, weight views, tokenizer) from a Hugging Face
 * directory or a GGUF file, and validates it against its own configuration.
 *
 * Contract: ttq_model_load either returns a model whose every weight has the shape the config
 * implies, or fails with a one-line reason naming the file, the field and the value. Weights are
 * views into memory maps that live as long as the model. Architectures: llama (GQA, tied or
 * untied head) and qwen3 (per-head q/k RMSNorm); anything else is refused by name. */
#include "model.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "gguf.h"
#include "safetensors.h"
#include "util.h"

typedef struct model_src {
  int n_st;
  ttq_st_file *st;
  ttq_gguf_file *gguf;
} model_src;

const char *ttq_arch_name(ttq_arch a) { return a == TTQ_ARCH_QWEN3 ? "qwen3" : "llama"; }

bool ttq_model_is_eos(const ttq_model *m, int32_t id) {
  for (int i = 0; i < m->cfg.n_eos; i++)
    if (m->cfg.eos_ids[i] == id) return true;
  return false;
}

static void add_eos(ttq_config *c, int id) {
  if (id < 0) return;
  for (int i = 0; i < c->n_eos; i++)
    if (c->eos_ids[i] == id) return;
  if (c->n_eos < 4) c->eos_ids[c->n_eos++] = id;
}

/* ---- shape validation shared by both formats ---- */

static int check_tensor(const char *file, const ttq_tensor *t, const char *name, int64_t rows,
                        int64_t cols, ttq_diag *d) {
  if (!t->data && t->nbytes)
    return ttq__fail(d, TTQ_EFORMAT, "%s: tensor '%s' has no data", file, name);
  if (t->dtype != TTQ_F32 && t->dtype != TTQ_F16 && t->dtype != TTQ_BF16 && t->dtype != TTQ_Q8_0)
    return ttq__fail(d, TTQ_EUNSUPPORTED, "%s: tensor '%s': dtype %s not supported", file, name,
                     ttq_dtype_name(t->dtype));
  if (cols == 0) { /* vector */
    if (t->ndim != 1 || t->shape[0] != rows)
      return ttq__fail(d, TTQ_EFORMAT,
                       "%s: tensor '%s': shape does not match config (want [%lld], have ndim %d "
                       "first dim %lld)",
                       file, name, (long long)rows, t->ndim, (long long)t->shape[0]);
    if (t->dtype == TTQ_Q8_0)
      return ttq__fail(d, TTQ_EUNSUPPORTED, "%s: tensor '%s': Q8_0 norm weights not supported",
                       file, name);
    return 0;
  }
  if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols)
    return ttq__fail(d, TTQ_EFORMAT,
                     "%s: tensor '%s': shape does not match config (want [%lld, %lld], have "
                     "[%lld, %lld] ndim %d)",
                     file, name, (long long)rows, (long long)cols, (long long)t->shape[0],
                     t->ndim > 1 ? (long long)t->shape[1] : 0LL, t->ndim);
  return 0;
}

static int validate_config(const char *file, const ttq_config *c, ttq_diag *d) {
#define NEED(cond, field, val, why)                                                            \
  if (!(cond))                                                                                 \
    return ttq__fail(d, TTQ_EFORMAT, "%s: %s = %lld is invalid (%s)", file, field,              \
                     (long long)(val), why);
  NEED(c->dim > 0 && c->dim <= 65536, "hidden size", c->dim, "must be in 1..65536");
  NEED(c->n_layers > 0 && c->n_layers <= 1024, "layer count", c->n_layers, "must be in 1..1024");
  NEED(c->n_heads > 0 && c->n_heads <= 1024, "attention head count", c->n_heads,
       "must be in 1..1024");
  NEED(c->n_kv_heads > 0 && c->n_heads % c->n_kv_heads == 0, "key/value head count",
       c->n_kv_heads, "must divide the attention head count");
  NEED(c->head_dim > 0 && c->head_dim % 2 == 0 && c->head_dim <= 1024, "head dim", c->head_dim,
       "must be even and at most 1024");
  NEED(c->ffn_dim > 0 && c->ffn_dim <= 1 << 20, "intermediate size", c->ffn_dim,
       "must be in 1..2^20");
  NEED(c->vocab > 0 && c->vocab <= 1 << 22, "vocab size", c->vocab, "must be in 1..2^22");
  NEED(c->max_pos > 0, "context length", c->max_pos, "must be positive");
#undef NEED
  if (!(c->norm_eps > 0 && c->norm_eps < 1))
    return ttq__fail(d, TTQ_EFORMAT, "%s: rms norm eps = %g is invalid", file, c->norm_eps);
  if (!(c->rope_theta > 0))
    return ttq__fail(d, TTQ_EFORMAT, "%s: rope theta = %g is invalid", file, c->rope_theta);
  return 0;
}

static int validate_weights(ttq_model *m, const char *file, ttq_diag *d) {
  const ttq_config *c = &m->cfg;
  int rc;
  int64_t q_rows = (int64_t)c->n_heads * c->head_dim, kv_rows = (int64_t)c->n_kv_heads * c->head_dim;
  if ((rc = check_tensor(file, &m->embed, m->embed.name, c->vocab, c->dim, d))) return rc;
  if ((rc = check_tensor(file, &m->final_norm, m->final_norm.name, c->dim, 0, d))) return rc;
  if ((rc = check_tensor(file, &m->head, m->head.name, c->vocab, c->dim, d))) return rc;
  for (int l = 0; l < c->n_layers; l++) {
    ttq_layer *L = &m->layers[l];
    struct {
      ttq_tensor *t;
      int64_t r, k;
    } want[] = {{&L->attn_norm, c->dim, 0}, {&L->wq, q_rows, c->dim},     {&L->wk, kv_rows, c->dim},
                {&L->wv, kv_rows, c->dim},  {&L->wo, c->dim, q_rows},     {&L->ffn_norm, c->dim, 0},
                {&L->w_gate, c->ffn_dim, c->dim}, {&L->w_up, c->ffn_dim, c->dim},
                {&L->w_down, c->dim, c->ffn_dim}, {&L->q_norm, c->head_dim, 0},
                {&L->k_norm, c->head_dim, 0}};
    int n = c->qk_norm ? 11 : 9;
    for (int i = 0; i < n; i++)
      if ((rc = check_tensor(file, want[i].t, want[i].t->name, want[i].r, want[i].k, d))) return rc;
  }
  return 0;
}

/* ---- Hugging Face directory ---- */

static int json_int(const char *file, json_t *o, const char *key, int *out, int dflt, bool required,
                    ttq_diag *d) {
  json_t *v = json_object_get(o, key);
  if (!v || json_is_null(v)) {
    if (required) return ttq__fail(d, TTQ_EFORMAT, "%s: missing field '%s'", file, key);
    *out = dflt;
    return 0;
  }
  if (!json_is_integer(v))
    return ttq__fail(d, TTQ_EFORMAT, "%s: field '%s' is not an integer", file, key);
  json_int_t x = json_integer_value(v);
  if (x < -1 || x > 1 << 30)
    return ttq__fail(d, TTQ_EFORMAT, "%s: field '%s' = %lld out of range", file, key, (long long)x);
  *out = (int)x;
  return 0;
}

static int json_float(const char *file, json_t *o, const char *key, float *out, float dflt,
                      ttq_diag *d) {
  json_t *v = json_object_get(o, key);
  if (!v || json_is_null(v)) {
    *out = dflt;
    return 0;
  }
  if (!json_is_number(v))
    return ttq__fail(d, TTQ_EFORMAT, "%s: field '%s' is not a number", file, key);
  *out = (float)json_number_value(v);
  return 0;
}

static json_t *load_json(const char *path, bool required, int *rc, ttq_diag *d) {
  struct stat st;
  *rc = 0;
  if (stat(path, &st) != 0) {
    if (required) *rc = ttq__fail(d, TTQ_ENOTFOUND, "%s: file not found", path);
    return NULL;
  }
  json_error_t err;
  json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
  if (!j) {
    *rc = ttq__fail(d, TTQ_EFORMAT, "%s: bad JSON at line %d column %d: %s", path, err.line,
                    err.column, err.text);
    return NULL;
  }
  if (!json_is_object(j)) {
    json_decref(j);
    *rc = ttq__fail(d, TTQ_EFORMAT, "%s: top level is not a JSON object", path);
    return NULL;
  }
  return j;
}

static int eos_from_json(ttq_config *c, json_t *v) {
  if (json_is_integer(v)) add_eos(c, (int)json_integer_value(v));
  else if (json_is_array(v)) {
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) if (json_is_integer(e)) add_eos(c, (int)json_integer_value(e));
  }
  return 0;
}

static int hf_config(const char *dir, ttq_config *c, ttq_diag *d) {
  char *path = ttq__path_join(dir, "config.json");
  int rc;
  json_t *j = load_json(path, true, &rc, d);
  if (!j) goto out;
  json_t *mt = json_object_get(j, "model_type");
  const char *type = json_is_string(mt) ? json_string_value(mt) : NULL;
  if (!type) {
    rc = ttq__fail(d, TTQ_EFORMAT, "%s: missing field 'model_type'", path);
    goto out;
  }
  if (!strcmp(type, "llama")) c->arch = TTQ_ARCH_LLAMA;
  else if (!strcmp(type, "qwen3")) c->arch = TTQ_ARCH_QWEN3;
  else {
    rc = ttq__fail(d, TTQ_EUNSUPPORTED,
                   "%s: model_type '%s' is not supported (supported: llama, qwen3)", path, type);
    goto out;
  }
  c->qk_norm = c->arch == TTQ_ARCH_QWEN3;
  if ((rc = json_int(path, j, "hidden_size", &c->dim, 0, true, d)) ||
      (rc = json_int(path, j, "num_hidden_layers", &c->n_layers, 0, true, d)) ||
      (rc = json_int(path, j, "num_attention_heads", &c->n_heads, 0, true, d)) ||
      (rc = json_int(path, j, "num_key_value_heads", &c->n_kv_heads, c->n_heads, false, d)) ||
      (rc = json_int(path, j, "intermediate_size", &c->ffn_dim, 0, true, d)) ||
      (rc = json_int(path, j, "vocab_size", &c->vocab, 0, true, d)) ||
      (rc = json_int(path, j, "max_position_embeddings", &c->max_pos, 2048, false, d)) ||
      (rc = json_int(path, j, "bos_token_id", &c->bos_id, -1, false, d)) ||
      (rc = json_float(path, j, "rms_norm_eps", &c->norm_eps, 1e-6f, d)))
    goto out;
  if (c->n_heads <= 0) {
    rc = ttq__fail(d, TTQ_EFORMAT, "%s: num_attention_heads = %d is invalid", path, c->n_heads);
    goto out;
  }
  if ((rc = json_int(path, j, "head_dim", &c->head_dim, c->dim / c->n_heads, false, d))) goto out;
  json_t *rp = json_object_get(j, "rope_parameters");
  json_t *rs = json_object_get(j, "rope_scaling");
  if (json_is_object(rp)) {
    if ((rc = json_float(path, rp, "rope_theta", &c->rope_theta, 10000.f, d))) goto out;
    json_t *rt = json_object_get(rp, "rope_type");
    if (json_is_string(rt) && strcmp(json_string_value(rt), "default") != 0) {
      rc = ttq__fail(d, TTQ_EUNSUPPORTED, "%s: rope_parameters.rope_type '%s' is not supported",
                     path, json_string_value(rt));
      goto out;
    }
  } else if ((rc = json_float(path, j, "rope_theta", &c->rope_theta, 10000.f, d))) {
    goto out;
  }
  if (rs && !json_is_null(rs)) {
    rc = ttq__fail(d, TTQ_EUNSUPPORTED, "%s: rope_scaling is not supported", path);
    goto out;
  }
  json_t *act = json_object_get(j, "hidden_act");
  if (json_is_string(act) && strcmp(json_string_value(act), "silu") != 0) {
    rc = ttq__fail(d, TTQ_EUNSUPPORTED, "%s: hidden_act '%s' is not supported (only silu)", path,
                   json_string_value(act));
    goto out;
  }
  const char *bias_keys[] = {"attention_bias", "mlp_bias"};
  for (int i = 0; i < 2; i++)
    if (json_is_true(json_object_get(j, bias_keys[i]))) {
      rc = ttq__fail(d, TTQ_EUNSUPPORTED, "%s: %s = true is not supported", path, bias_keys[i]);
      goto out;
    }
  c->tied_head = json_is_true(json_object_get(j, "tie_word_embeddings"));
  eos_from_json(c, json_object_get(j, "eos_token_id"));
  rc = validate_config(path, c, d);
out:
  json_decref(j);
  free(path);
  return rc;
}

static int hf_find(model_src *s, const char *dir, const char *name, ttq_tensor *out, bool required,
                   ttq_diag *d) {
  for (int i = 0; i < s->n_st; i++) {
    const ttq_tensor *t = ttq_st_find(&s->st[i], name);
    if (t) {
      *out = *t;
      return 0;
    }
  }
  memset(out, 0, sizeof *out);
  if (!required) return 0;
  return ttq__fail(d, TTQ_ENOTFOUND, "%s: missing tensor '%s'", dir, name);
}

static int hf_open_weights(const char *dir, model_src *s, ttq_diag *d) {
  char *single = ttq__path_join(dir, "model.safetensors");
  char *index = ttq__path_join(dir, "model.safetensors.index.json");
  struct stat st;
  int rc = 0;
  json_t *j = NULL;
  if (stat(index, &st) == 0) {
    j = load_json(index, true, &rc, d);
    if (!j) goto out;
    json_t *wm = json_object_get(j, "weight_map");
    if (!json_is_object(wm)) {
      rc = ttq__fail(d, TTQ_EFORMAT, "%s: missing object 'weight_map'", index);
      goto out;
    }
    /* Distinct shard files, in first-seen order. */
    size_t n = json_object_size(wm);
    const char **files = calloc(n ? n : 1, sizeof *files);
    int nf = 0;
    const char *key;
    json_t *v;
    json_object_foreach(wm, key, v) {
      if (!json_is_string(v) || strchr(json_string_value(v), '/')) {
        free(files);
        rc = ttq__fail(d, TTQ_EFORMAT, "%s: weight_map['%s'] is not a file name in the directory",
                       index, key);
        goto out;
      }
      int k;
      for (k = 0; k < nf; k++)
        if (!strcmp(files[k], json_string_value(v))) break;
      if (k == nf) files[nf++] = json_string_value(v);
    }
    s->st = calloc(nf ? (size_t)nf : 1, sizeof *s->st);
    for (int k = 0; k < nf && rc == 0; k++) {
      char *p = ttq__path_join(dir, files[k]);
      rc = ttq_st_open(p, &s->st[k], d);
      if (rc == 0) s->n_st++;
      free(p);
    }
    free(files);
    if (rc) goto out;
    /* Every mapped name must be in the file the index names. */
    json_object_foreach(wm, key, v) {
      const ttq_tensor *t = NULL;
      for (int k = 0; k < s->n_st && !t; k++) {
        const char *base = strrchr(s->st[k].map.path, '/');
        base = base ? base + 1 : s->st[k].map.path;
        if (!strcmp(base, json_string_value(v))) t = ttq_st_find(&s->st[k], key);
      }
      if (!t) {
        rc = ttq__fail(d, TTQ_ENOTFOUND, "%s: tensor '%s' listed in weight_map is not in %s", index,
                       key, json_string_value(v));
        goto out;
      }
    }
  } else if (stat(single, &st) == 0) {
    s->st = calloc(1, sizeof *s->st);
    if ((rc = ttq_st_open(single, &s->st[0], d)) == 0) s->n_st = 1;
  } else {
    rc = ttq__fail(d, TTQ_ENOTFOUND,
                   "%s: no model.safetensors or model.safetensors.index.json in the directory", dir);
  }
out:
  json_decref(j);
  free(single);
  free(index);
  return rc;
}

static int hf_tokenizer(const char *dir, ttq_model *m, ttq_diag *d) {
  char *tp = ttq__path_join(dir, "tokenizer.json");
  int rc = ttq_tokenizer_from_json(tp, &m->tok, d);
  free(tp);
  if (rc) return rc;
  char *cp = ttq__path_join(dir, "tokenizer_config.json");
  json_t *j = load_json(cp, false, &rc, d);
  if (rc) goto out;
  m->cfg.add_bos = false;
  if (j) {
    json_t *v = json_object_get(j, "add_bos_token");
    m->cfg.add_bos = json_is_true(v);
    json_t *bos = json_object_get(j, "bos_token");
    if (json_is_string(bos)) {
      int id = ttq_tokenizer_find(m->tok, json_string_value(bos));
      if (id < 0) {
        rc = ttq__fail(d, TTQ_EFORMAT, "%s: bos_token '%s' is not in the vocabulary", cp,
                       json_string_value(bos));
        goto out;
      }
      m->cfg.bos_id = id;
    }
    json_t *eos = json_object_get(j, "eos_token");
    if (json_is_object(eos)) eos = json_object_get(eos, "content");
    if (json_is_string(eos)) {
      int id = ttq_tokenizer_find(m->tok, json_string_value(eos));
      if (id < 0) {
        rc = ttq__fail(d, TTQ_EFORMAT, "%s: eos_token '%s' is not in the vocabulary", cp,
                       json_string_value(eos));
        goto out;
      }
      add_eos(&m->cfg, id);
    }
    json_t *ct = json_object_get(j, "chat_template");
    if (json_is_string(ct)) m->chat_template = strdup(json_string_value(ct));
  }
  if (m->cfg.add_bos && m->cfg.bos_id < 0) {
    rc = ttq__fail(d, TTQ_EFORMAT, "%s: add_bos_token is true but there is no bos token", cp);
    goto out;
  }
  json_decref(j);
  j = NULL;
  free(cp);
  cp = ttq__path_join(dir, "generation_config.json");
  j = load_json(cp, false, &rc, d);
  if (rc) goto out;
  if (j) eos_from_json(&m->cfg, json_object_get(j, "eos_token_id"));
out:
  json_decref(j);
  free(cp);
  return rc;
}

static int load_hf(const char *dir, ttq_model *m, ttq_diag *d) {
  model_src *s = m->src;
  ttq_config *c = &m->cfg;
  int rc;
  if ((rc = hf_config(dir, c, d))) return rc;
  if ((rc = hf_open_weights(dir, s, d))) return rc;
  m->format = "safetensors";
  m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
  if (!m->layers) return ttq__fail(d, TTQ_ENOMEM, "%s: out of memory", dir);
  if ((rc = hf_find(s, dir, "model.embed_tokens.weight", &m->embed, true, d)) ||
      (rc = hf_find(s, dir, "model.norm.weight", &m->final_norm, true, d)))
    return rc;
  if (c->tied_head) {
    m->head = m->embed;
  } else if ((rc = hf_find(s, dir, "lm_head.weight", &m->head, true, d))) {
    return rc;
  }
  char name[128];
  for (int l = 0; l < c->n_layers; l++) {
    ttq_layer *L = &m->layers[l];
    struct {
      ttq_tensor *t;
      const char *suffix;
    } map[] = {{&L->attn_norm, "input_layernorm"},   {&L->wq, "self_attn.q_proj"},
               {&L->wk, "self_attn.k_proj"},         {&L->wv, "self_attn.v_proj"},
               {&L->wo, "self_attn.o_proj"},         {&L->ffn_norm, "post_attention_layernorm"},
               {&L->w_gate, "mlp.gate_proj"},        {&L->w_up, "mlp.up_proj"},
               {&L->w_down, "mlp.down_proj"},        {&L->q_norm, "self_attn.q_norm"},
               {&L->k_norm, "self_attn.k_norm"}};
    int n = c->qk_norm ? 11 : 9;
    for (int i = 0; i < n; i++) {
      snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, map[i].suffix);
      if ((rc = hf_find(s, dir, name, map[i].t, true, d))) return rc;
    }
  }
  if ((rc = validate_weights(m, dir, d))) return rc;
  return hf_tokenizer(dir, m, d);
}

/* ---- GGUF ---- */

static int gguf_int(const ttq_gguf_file *g, const char *arch, const char *key, int *out, int dflt,
                    bool required, ttq_diag *d) {
  char full[160];
  snprintf(full, sizeof full, "%s.%s", arch, key);
  int64_t v;
  int rc = ttq_gguf_get_i64(g, full, &v);
  if (rc == TTQ_ENOTFOUND && !required) {
    *out = dflt;
    return 0;
  }
  if (rc == TTQ_ENOTFOUND) return ttq__fail(d, rc, "%s: missing key '%s'", g->map.path, full);
  if (rc) return ttq__fail(d, rc, "%s: key '%s' is not an integer", g->map.path, full);
  if (v < 0 || v > 1 << 30)
    return ttq__fail(d, TTQ_EFORMAT, "%s: key '%s' = %lld out of range", g->map.path, full,
                     (long long)v);
  *out = (int)v;
  return 0;
}

static int gguf_tokenizer(ttq_gguf_file *g, ttq_model *m, ttq_diag *d) {
  const char *path = g->map.path;
  const ttq_gguf_kv *toks = ttq_gguf_find_kv(g, "tokenizer.ggml.tokens");
  const ttq_gguf_kv *merges = ttq_gguf_find_kv(g, "tokenizer.ggml.merges");
  const ttq_gguf_kv *types = ttq_gguf_find_kv(g, "tokenizer.ggml.token_type");
  if (!toks || toks->type != TTQ_GGUF_ARRAY || toks->v.arr.type != TTQ_GGUF_STRING)
    return ttq__fail(d, TTQ_EFORMAT, "%s: missing string array 'tokenizer.ggml.tokens'", path);
  if (!merges || merges->type != TTQ_GGUF_ARRAY || merges->v.arr.type != TTQ_GGUF_STRING)
    return ttq__fail(d, TTQ_EFORMAT, "%s: missing string array 'tokenizer.ggml.merges'", path);
  char *model = NULL, *pre = NULL;
  int rc = ttq_gguf_get_str(g, "tokenizer.ggml.model", &model);
  if (rc || strcmp(model, "gpt2") != 0) {
    rc = ttq__fail(d, TTQ_EUNSUPPORTED,
                   "%s: tokenizer.ggml.model '%s' is not supported (only gpt2 byte-level BPE)",
                   path, model ? model : "(missing)");
    free(model);
    return rc;
  }
  free(model);
  const char *regex = TTQ_PRETOK_LLAMA3;
  if (ttq_gguf_get_str(g, "tokenizer.ggml.pre", &pre) == 0) {
    if (!strcmp(pre, "llama-bpe") || !strcmp(pre, "llama3")) regex = TTQ_PRETOK_LLAMA3;
    else if (!strcmp(pre, "qwen2")) regex = TTQ_PRETOK_QWEN2;
    else {
      rc = ttq__fail(d, TTQ_EUNSUPPORTED,
                     "%s: tokenizer.ggml.pre '%s' is not supported (llama-bpe, qwen2)", path, pre);
      free(pre);
      return rc;
    }
    free(pre);
  }
  uint64_t nv = toks->v.arr.n, nm = merges->v.arr.n;
  if (nv == 0 || nv > (uint64_t)m->cfg.vocab)
    return ttq__fail(d, TTQ_EFORMAT, "%s: tokenizer.ggml.tokens has %llu entries, vocab is %d",
                     path, (unsigned long long)nv, m->cfg.vocab);
  char **tv = calloc(nv, sizeof *tv), **mv = calloc(nm ? nm : 1, sizeof *mv);
  bool *special = calloc(nv, sizeof *special);
  rc = 0;
  for (uint64_t i = 0; i < nv && tv && !rc; i++)
    if (!(tv[i] = strndup(toks->v.arr.strs[i].ptr, toks->v.arr.strs[i].len))) rc = TTQ_ENOMEM;
  for (uint64_t i = 0; i < nm && mv && !rc; i++)
    if (!(mv[i] = strndup(merges->v.arr.strs[i].ptr, merges->v.arr.strs[i].len))) rc = TTQ_ENOMEM;
  if (!tv || !mv || !special || rc) {
    rc = ttq__fail(d, TTQ_ENOMEM, "%s: out of memory reading the vocabulary", path);
    goto out;
  }
  if (types && types->type == TTQ_GGUF_ARRAY && types->v.arr.n == nv &&
      (types->v.arr.type == TTQ_GGUF_INT32 || types->v.arr.type == TTQ_GGUF_UINT32)) {
    for (uint64_t i = 0; i < nv; i++) {
      int32_t t;
      memcpy(&t, types->v.arr.data + 4 * i, 4);
      special[i] = (t == 3 || t == 4); /* control, user-defined */
    }
  }
  ttq_tok_spec spec = {(int)nv, (const char *const *)tv, (int)nm, (const char *const *)mv,
                       special, regex};
  rc = ttq_tokenizer_build(&spec, &m->tok, d);
out:
  for (uint64_t i = 0; tv && i < nv; i++) free(tv[i]);
  for (uint64_t i = 0; mv && i < nm; i++) free(mv[i]);
  free(tv);
  free(mv);
  free(special);
  return rc;
}

static int load_gguf(const char *path, ttq_model *m, ttq_diag *d) {
  model_src *s = m->src;
  ttq_config *c = &m->cfg;
  s->gguf = calloc(1, sizeof *s->gguf);
  if (!s->gguf) return ttq__fail(d, TTQ_ENOMEM, "%s: out of memory", path);
  int rc = ttq_gguf_open(path, s->gguf, d);
  if (rc) {
    free(s->gguf);
    s->gguf = NULL;
    return rc;
  }
  ttq_gguf_file *g = s->gguf;
  m->format = "gguf";
  char *arch = NULL;
  if (ttq_gguf_get_str(g, "general.architecture", &arch))
    return ttq__fail(d, TTQ_EFORMAT, "%s: missing key 'general.architecture'", path);
  if (!strcmp(arch, "llama")) c->arch = TTQ_ARCH_LLAMA;
  else if (!strcmp(arch, "qwen3")) c->arch = TTQ_ARCH_QWEN3;
  else {
    rc = ttq__fail(d, TTQ_EUNSUPPORTED,
                   "%s: general.architecture '%s' is not supported (supported: llama, qwen3)", path,
                   arch);
    free(arch);
    return rc;
  }
  c->qk_norm = c->arch == TTQ_ARCH_QWEN3;
  c->rope_interleaved = c->arch == TTQ_ARCH_LLAMA; /* llama.cpp permutes llama q/k rows */
  int64_t bos = -1, eos = -1;
  if ((rc = gguf_int(g, arch, "embedding_length", &c->dim, 0, true, d)) ||
      (rc = gguf_int(g, arch, "block_count", &c->n_layers, 0, true, d)) ||
      (rc = gguf_int(g, arch, "feed_forward_length", &c->ffn_dim, 0, true, d)) ||
      (rc = gguf_int(g, arch, "attention.head_count", &c->n_heads, 0, true, d)) ||
      (rc = gguf_int(g, arch, "attention.head_count_kv", &c->n_kv_heads, c->n_heads, false, d)) ||
      (rc = gguf_int(g, arch, "context_length", &c->max_pos, 2048, false, d)))
    goto done;
  if (c->n_heads <= 0) {
    rc = ttq__fail(d, TTQ_EFORMAT, "%s: %s.attention.head_count = %d is invalid", path, arch,
                   c->n_heads);
    goto done;
  }
  if ((rc = gguf_int(g, arch, "attention.key_length", &c->head_dim, c->dim / c->n_heads, false, d)))
    goto done;
  char key[160];
  double f;
  snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
  c->norm_eps = ttq_gguf_get_f64(g, key, &f) == 0 ? (float)f : 1e-5f;
  snprintf(key, sizeof key, "%s.rope.freq_base", arch);
  c->rope_theta = ttq_gguf_get_f64(g, key, &f) == 0 ? (float)f : 10000.f;
  const ttq_tensor *emb = ttq_gguf_find_tensor(g, "token_embd.weight");
  if (!emb) {
    rc = ttq__fail(d, TTQ_ENOTFOUND, "%s: missing tensor 'token_embd.weight'", path);
    goto done;
  }
  c->vocab = emb->ndim == 2 ? (int)emb->shape[0] : 0;
  int vs;
  if ((rc = gguf_int(g, arch, "vocab_size", &vs, c->vocab, false, d))) goto done;
  if (vs != c->vocab) {
    rc = ttq__fail(d, TTQ_EFORMAT, "%s: %s.vocab_size = %d but token_embd.weight has %d rows",
                   path, arch, vs, c->vocab);
    goto done;
  }
  if ((rc = validate_config(path, c, d))) goto done;
  ttq_gguf_get_i64(g, "tokenizer.ggml.bos_token_id", &bos);
  ttq_gguf_get_i64(g, "tokenizer.ggml.eos_token_id", &eos);
  c->bos_id = (bos >= 0 && bos < c->vocab) ? (int)bos : -1;
  if (eos >= 0 && eos < c->vocab) add_eos(c, (int)eos);
  const ttq_gguf_kv *ab = ttq_gguf_find_kv(g, "tokenizer.ggml.add_bos_token");
  c->add_bos = ab ? (ab->type == TTQ_GGUF_BOOL && ab->v.u64) : c->arch == TTQ_ARCH_LLAMA;
  c->add_bos = c->add_bos && c->bos_id >= 0;
  m->embed = *emb;
  const ttq_tensor *t = ttq_gguf_find_tensor(g, "output_norm.weight");
  if (!t) {
    rc = ttq__fail(d, TTQ_ENOTFOUND, "%s: missing tensor 'output_norm.weight'", path);
    goto done;
  }
  m->final_norm = *t;
  t = ttq_gguf_find_tensor(g, "output.weight");
  c->tied_head = t == NULL;
  m->head = t ? *t : *emb;
  m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
  if (!m->layers) {
    rc = ttq__fail(d, TTQ_ENOMEM, "%s: out of memory", path);
    goto done;
  }
  for (int l = 0; l < c->n_layers; l++) {
    ttq_layer *L = &m->layers[l];
    struct {
      ttq_tensor *t;
      const char *suffix;
    } map[] = {{&L->attn_norm, "attn_norm"}, {&L->wq, "attn_q"},         {&L->wk, "attn_k"},
               {&L->wv, "attn_v"},           {&L->wo, "attn_output"},    {&L->ffn_norm, "ffn_norm"},
               {&L->w_gate, "ffn_gate"},     {&L->w_up, "ffn_up"},       {&L->w_down, "ffn_down"},
               {&L->q_norm, "attn_q_norm"},  {&L->k_norm, "attn_k_norm"}};
    int n = c->qk_norm ? 11 : 9;
    for (int i = 0; i < n; i++) {
      snprintf(key, sizeof key, "blk.%d.%s.weight", l, map[i].suffix);
      t = ttq_gguf_find_tensor(g, key);
      if (!t) {
        rc = ttq__fail(d, TTQ_ENOTFOUND, "%s: missing tensor '%s'", path, key);
        goto done;
      }
      *map[i].t = *t;
    }
  }
  if ((rc = validate_weights(m, path, d))) goto done;
  if ((rc = gguf_tokenizer(g, m, d))) goto done;
  char *tmpl = NULL;
  if (ttq_gguf_get_str(g, "tokenizer.chat_template", &tmpl) == 0) m->chat_template = tmpl;
done:
  free(arch);
  return rc;
}

int ttq_model_load(const char *path, ttq_model **out, ttq_diag *d) {
  *out = NULL;
  struct stat st;
  if (stat(path, &st) != 0)
    return ttq__fail(d, TTQ_ENOTFOUND, "%s: model path not found", path);
  ttq_model *m = calloc(1, sizeof *m);
  model_src *s = calloc(1, sizeof *s);
  if (!m || !s) {
    free(m);
    free(s);
    return ttq__fail(d, TTQ_ENOMEM, "%s: out of memory", path);
  }
  m->src = s;
  m->path = strdup(path);
  m->cfg.bos_id = -1;
  int rc = S_ISDIR(st.st_mode) ? load_hf(path, m, d) : load_gguf(path, m, d);
  if (rc) {
    ttq_model_free(m);
    return rc;
  }
  m->cfg.kv_group = m->cfg.n_heads / m->cfg.n_kv_heads;
  if (ttq_tokenizer_n_vocab(m->tok) > m->cfg.vocab) {
    rc = ttq__fail(d, TTQ_EFORMAT, "%s: tokenizer has %d tokens but the model's vocab is %d", path,
                   ttq_tokenizer_n_vocab(m->tok), m->cfg.vocab);
    ttq_model_free(m);
    return rc;
  }
  *out = m;
  return 0;
}

void ttq_model_free(ttq_model *m) {
  if (!m) return;
  free(m->pinned);
  if (m->tp) { /* a shard: borrows all but its copies */
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->tp);
    free(m->layers);
    free(m);
    return;
  }
  model_src *s = m->src;
  if (s) {
    for (int i = 0; i < s->n_st; i++) ttq_st_close(&s->st[i]);
    free(s->st);
    if (s->gguf) {
      ttq_gguf_close(s->gguf);
      free(s->gguf);
    }
    free(s);
  }
  if (m->tok) ttq_tokenizer_free(m->tok);
  free(m->layers);
  free(m->chat_template);
  free(m->path);
  free(m);
}

/* The tensors of layer L into out; returns their count (11 with q/k norms, else 9). */
static int layer_tensors(ttq_layer *L, bool qk_norm, ttq_tensor *out[11]) {
  ttq_tensor *ts[] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->wo, &L->ffn_norm,
                      &L->w_gate, &L->w_up, &L->w_down, &L->q_norm, &L->k_norm};
  memcpy(out, ts, sizeof ts);
  return qk_norm ? 11 : 9;
}

void ttq_model_each_tensor(const ttq_model *m, void (*fn)(const ttq_tensor *t, void *u), void *u) {
  fn(&m->embed, u);
  for (int l = 0; l < m->cfg.n_layers; l++) {
    ttq_tensor *ts[11];
    int n = layer_tensors(&m->layers[l], m->cfg.qk_norm, ts); /* fn gets them const */
    for (int i = 0; i < n; i++) fn(ts[i], u);
  }
  fn(&m->final_norm, u);
  if (!m->cfg.tied_head) fn(&m->head, u);
}

static void count_params(const ttq_tensor *t, void *u) { *(int64_t *)u += ttq_tensor_numel(t); }
static void count_bytes(const ttq_tensor *t, void *u) { *(size_t *)u += t->nbytes; }

int64_t ttq_model_n_params(const ttq_model *m) {
  int64_t n = 0;
  ttq_model_each_tensor(m, count_params, &n);
  return n;
}

size_t ttq_model_weight_bytes(const ttq_model *m) {
  size_t n = 0;
  ttq_model_each_tensor(m, count_bytes, &n);
  return n;
}

/* The tensors ttq_model_pin copies: everything ttq_model_each_tensor visits but the embedding
 * table (the head too when it is the tied embedding: every token reads all of it). */
static int per_token_tensors(ttq_model *m, ttq_tensor **out) {
  int n = 0;
  for (int l = 0; l < m->cfg.n_layers; l++) {
    ttq_tensor *ts[11];
    int k = layer_tensors(&m->layers[l], m->cfg.qk_norm, ts);
    if (out) memcpy(out + n, ts, (size_t)k * sizeof *ts);
    n += k;
  }
  if (out) out[n] = &m->final_norm, out[n + 1] = &m->head;
  return n + 2;
}

void ttq_model_pin(ttq_model *m) {
  const size_t huge = (size_t)2 << 20;
  const char *e = getenv("TTQ_MMAP");
  if (m->pinned || (e && !strcmp(e, "1"))) return;
  int n = per_token_tensors(m, NULL);
  ttq_tensor **ts = malloc((size_t)n * sizeof *ts);
  if (!ts) return;
  per_token_tensors(m, ts);
  size_t total = 0;
  for (int i = 0; i < n; i++) total += (ts[i]->nbytes + 63) / 64 * 64;
  void *a = total < huge ? NULL : ttq__alloc_huge(total); /* whole huge pages (util.h) */
  if (!a) {
    free(ts);
    return;
  }
  uint8_t *p = a;
  for (int i = 0; i < n; i++) {
    if (ts[i]->data) memcpy(p, ts[i]->data, ts[i]->nbytes);
    ts[i]->data = ts[i]->data ? p : NULL;
    p += (ts[i]->nbytes + 63) / 64 * 64;
  }
  free(ts);
  for (int i = 0; i < m->n_owned; i++) free(m->owned[i]); /* column slices, now copied */
  m->n_owned = 0;
  m->pinned = a;
}
