/* test-model.c -- model loading: the configuration read back against config.json, and
 * malformed model directories and files refused with the file, the field and the reason. */
#include <jansson.h>
#include <unistd.h>

#include "gguf.h"
#include "model.h"
#include "test.h"

TEST_IMPL(model_load_qwen3) {
  char *dir = test_src_path("models/tinyqwen3-mix");
  ttq_model *m = NULL;
  ttq_diag d = {0};
  ASSERTF(ttq_model_load(dir, &m, &d) == 0, "%s", d.msg);
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", dir);
  json_t *c = json_load_file(path, 0, NULL);
  ASSERT(c);
  ASSERT(m->cfg.arch == TTQ_ARCH_QWEN3 && m->cfg.qk_norm && !m->cfg.rope_interleaved);
  ASSERT(m->cfg.dim == json_integer_value(json_object_get(c, "hidden_size")));
  ASSERT(m->cfg.n_layers == json_integer_value(json_object_get(c, "num_hidden_layers")));
  ASSERT(m->cfg.n_heads == json_integer_value(json_object_get(c, "num_attention_heads")));
  ASSERT(m->cfg.n_kv_heads == json_integer_value(json_object_get(c, "num_key_value_heads")));
  ASSERT(m->cfg.ffn_dim == json_integer_value(json_object_get(c, "intermediate_size")));
  ASSERT(m->cfg.vocab == json_integer_value(json_object_get(c, "vocab_size")));
  ASSERT(m->cfg.tied_head == json_is_true(json_object_get(c, "tie_word_embeddings")));
  ASSERT(m->cfg.tied_head && m->head.data == m->embed.data);
  ASSERT(!m->cfg.add_bos);
  ASSERT(ttq_model_is_eos(m, ttq_tokenizer_find(m->tok, "<|im_end|>")));
  ASSERT(m->chat_template != NULL);
  /* parameters: embedding + per layer (4 attention + 3 MLP matrices, 4 norms) + final norm */
  int64_t D = m->cfg.dim, F = m->cfg.ffn_dim, H = m->cfg.head_dim;
  int64_t per = D * H * (m->cfg.n_heads * 2 + m->cfg.n_kv_heads * 2) + 3 * D * F + 2 * D + 2 * H;
  ASSERT(ttq_model_n_params(m) == m->cfg.vocab * D + m->cfg.n_layers * per + D);
  ASSERT(ttq_model_weight_bytes(m) == (size_t)ttq_model_n_params(m) * 2); /* all bf16 */
  json_decref(c);
  ttq_model_free(m);
  free(dir);
  return 0;
}

/* A model directory of symlinks to the bundled model, with config.json replaced by `cfg`
 * (a JSON text) and the index replaced by `index` when not NULL. */
static char *crafted_dir(const char *cfg, const char *index) {
  char *src = test_src_path("models/tinyqwen3-mix"), *dir = test_tmpdir();
  const char *files[] = {"tokenizer.json", "tokenizer_config.json", "generation_config.json",
                         "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                         "model.safetensors.index.json"};
  char a[4096], b[4096];
  for (int i = 0; i < 6; i++) {
    if (i == 5 && index) continue;
    snprintf(a, sizeof a, "%s/%s", src, files[i]);
    snprintf(b, sizeof b, "%s/%s", dir, files[i]);
    if (symlink(a, b) != 0) return NULL;
  }
  snprintf(b, sizeof b, "%s/config.json", dir);
  test_write_file(b, cfg, strlen(cfg));
  if (index) {
    snprintf(b, sizeof b, "%s/model.safetensors.index.json", dir);
    test_write_file(b, index, strlen(index));
  }
  free(src);
  return dir;
}

/* Loads `cfg` and expects failure with `code` and every needle in the message. */
static int expect_refused(const char *what, const char *cfg, const char *index, int code,
                          const char *needle1, const char *needle2) {
  char *dir = crafted_dir(cfg, index);
  ASSERT(dir);
  ttq_model *m = NULL;
  ttq_diag d = {0};
  int rc = ttq_model_load(dir, &m, &d);
  fprintf(stderr, "%-28s -> %d: %s\n", what, rc, d.msg);
  ASSERTF(rc == code, "%s: rc %d want %d (%s)", what, rc, code, d.msg);
  ASSERTF(m == NULL, "%s", what);
  ASSERTF(strstr(d.msg, needle1), "%s: '%s' not in '%s'", what, needle1, d.msg);
  if (needle2) ASSERTF(strstr(d.msg, needle2), "%s: '%s' not in '%s'", what, needle2, d.msg);
  test_rmtree(dir);
  free(dir);
  return 0;
}

TEST_IMPL(model_malformed) {
  char *src = test_src_path("models/tinyqwen3-mix/config.json");
  char *good = NULL;
  ttq_diag d;
  ASSERT_OK(ttq__read_file(src, &good, NULL, &d));
  free(src);
  /* sanity: the unmodified copy loads */
  char *dir = crafted_dir(good, NULL);
  ttq_model *m = NULL;
  ASSERTF(ttq_model_load(dir, &m, &d) == 0, "%s", d.msg);
  ttq_model_free(m);
  test_rmtree(dir);
  free(dir);

  json_t *j = json_loads(good, 0, NULL);
  char *txt;
#define VARIANT(mutate, what, code, n1, n2)                                                \
  do {                                                                                     \
    json_t *c = json_deep_copy(j);                                                         \
    mutate;                                                                                \
    txt = json_dumps(c, 0);                                                                \
    int r_ = expect_refused(what, txt, NULL, code, n1, n2);                                \
    free(txt);                                                                             \
    json_decref(c);                                                                        \
    if (r_) return r_;                                                                     \
  } while (0)
  VARIANT(json_object_set_new(c, "model_type", json_string("gpt2")), "unsupported architecture",
          TTQ_EUNSUPPORTED, "gpt2", "config.json");
  VARIANT(json_object_set_new(c, "hidden_size", json_integer(320)), "shape mismatch",
          TTQ_EFORMAT, "model.embed_tokens.weight", "shape");
  VARIANT(json_object_set_new(c, "intermediate_size", json_integer(512)), "ffn mismatch",
          TTQ_EFORMAT, "mlp.gate_proj", "shape");
  VARIANT(json_object_set_new(c, "num_hidden_layers", json_integer(7)), "missing layer",
          TTQ_ENOTFOUND, "model.layers.6.", "missing tensor");
  VARIANT(json_object_set_new(c, "tie_word_embeddings", json_false()), "missing lm_head",
          TTQ_ENOTFOUND, "lm_head.weight", NULL);
  VARIANT(json_object_del(c, "hidden_size"), "missing field", TTQ_EFORMAT, "hidden_size",
          "config.json");
  VARIANT(json_object_set_new(c, "num_attention_heads", json_string("four")), "ill-typed field",
          TTQ_EFORMAT, "num_attention_heads", NULL);
  VARIANT(json_object_set_new(c, "num_key_value_heads", json_integer(3)), "bad kv heads",
          TTQ_EFORMAT, "key/value head count", NULL);
  VARIANT(json_object_set_new(c, "attention_bias", json_true()), "attention bias",
          TTQ_EUNSUPPORTED, "attention_bias", NULL);
  json_decref(j);
  if (expect_refused("bad JSON", "{\"model_type\": \"qwen3\",", NULL, TTQ_EFORMAT, "config.json",
                     "JSON"))
    return 1;
  if (expect_refused("index names a missing tensor", good,
                     "{\"weight_map\": {\"model.embed_tokens.weight\": "
                     "\"model-00001-of-00002.safetensors\", \"model.nope.weight\": "
                     "\"model-00002-of-00002.safetensors\"}}",
                     TTQ_ENOTFOUND, "model.nope.weight", "index"))
    return 1;
  if (expect_refused("index escapes the directory", good,
                     "{\"weight_map\": {\"a\": \"../../etc/passwd\"}}", TTQ_EFORMAT, "weight_map",
                     NULL))
    return 1;
  free(good);

  /* GGUF: an architecture we do not run is refused by name */
  char *tmp = test_tmpdir();
  char path[4096];
  snprintf(path, sizeof path, "%s/gpt2.gguf", tmp);
  ttq_gguf_kv kv = {.key = {"general.architecture", 20}, .type = TTQ_GGUF_STRING};
  kv.v.str.ptr = "gpt2";
  kv.v.str.len = 4;
  float w[4] = {1, 2, 3, 4};
  ttq_tensor t = {.name = "token_embd.weight", .dtype = TTQ_F32, .ndim = 2, .shape = {2, 2},
                  .data = w, .nbytes = 16};
  ASSERT_OK(ttq_gguf_write(path, &kv, 1, &t, 1, &d));
  int rc = ttq_model_load(path, &m, &d);
  ASSERTF(rc == TTQ_EUNSUPPORTED && strstr(d.msg, "gpt2") && strstr(d.msg, "gpt2.gguf"), "%d %s", rc,
          d.msg);
  /* a missing path */
  snprintf(path, sizeof path, "%s/none", tmp);
  ASSERT(ttq_model_load(path, &m, &d) == TTQ_ENOTFOUND && strstr(d.msg, "none"));
  test_rmtree(tmp);
  free(tmp);
  return 0;
}
