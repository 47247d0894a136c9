/* test-forward.c -- the forward pass against Hugging Face transformers' fp32 logits (golden
 * files), through both the many-token (sgemm) and the one-token (dot kernel) paths, from
 * safetensors and from GGUF; and the kernel variants against each other on a real model. */
#include <jansson.h>

#include "forward.h"
#include "sampler.h"
#include "test.h"

/* Compares the logits of every golden prompt. Returns 0 on success. */
static int check_golden(const char *model_dir, const char *golden_dir, double tol, bool decode,
                        ttq_dtype kv) {
  ttq_model *m = NULL;
  ttq_diag d = {0};
  int rc = ttq_model_load(model_dir, &m, &d);
  ASSERTF(rc == 0, "%s", d.msg);
  char path[4096];
  snprintf(path, sizeof path, "%s/golden.json", golden_dir);
  json_error_t err;
  json_t *g = json_load_file(path, 0, &err);
  ASSERTF(g, "%s: %s", path, err.text);
  json_t *prompts = json_object_get(g, "prompts");
  ASSERT(json_object_size(prompts) >= 1);
  const char *key;
  json_t *p;
  double worst = 0, worst_dec = 0;
  json_object_foreach(prompts, key, p) {
    json_t *jids = json_object_get(p, "ids");
    int n = (int)json_array_size(jids);
    int32_t *ids = malloc((size_t)n * 4);
    for (int i = 0; i < n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(jids, (size_t)i));
    /* the prompt text tokenizes to the golden ids (with bos where the model adds one) */
    const char *text = json_string_value(json_object_get(p, "prompt"));
    int32_t *tok = NULL;
    size_t nt = 0;
    ASSERT_OK(ttq_tokenize(m->tok, text, strlen(text), true, &tok, &nt, &d));
    int bos = m->cfg.add_bos ? 1 : 0;
    ASSERTF((int)nt + bos == n, "prompt %s: %zu tokens + %d bos, golden %d", key, nt, bos, n);
    if (bos) ASSERT(ids[0] == m->cfg.bos_id);
    for (size_t i = 0; i < nt; i++) ASSERTF(tok[i] == ids[i + bos], "prompt %s token %zu", key, i);
    free(tok);

    snprintf(path, sizeof path, "%s/%s", golden_dir,
             json_string_value(json_object_get(p, "logits_file")));
    float *ref;
    int nd;
    long dims[4];
    ASSERTF(test_read_npy_f32(path, &ref, &nd, dims) == 0, "%s", path);
    ASSERT(nd == 2 && dims[0] == n && dims[1] == m->cfg.vocab);
    const int V = m->cfg.vocab;
    float *out = malloc((size_t)n * V * 4);
    ttq_state st;
    ASSERT_OK(ttq_state_init(&st, m, n, kv, 0, NULL, &d));
    ASSERT_OK(ttq_forward(&st, ids, n, out, true, &d));
    double md = 0;
    for (size_t i = 0; i < (size_t)n * V; i++) md = fmax(md, fabs((double)out[i] - ref[i]));
    ASSERTF(md <= tol, "prompt %s: prefill max |logit diff| %.3g > %.3g", key, md, tol);
    worst = fmax(worst, md);
    if (decode) { /* one token at a time: the decode path */
      ttq_state_reset(&st);
      md = 0;
      for (int t = 0; t < n; t++) {
        ASSERT_OK(ttq_forward(&st, &ids[t], 1, out, false, &d));
        for (int i = 0; i < V; i++) md = fmax(md, fabs((double)out[i] - ref[(size_t)t * V + i]));
      }
      ASSERTF(md <= tol, "prompt %s: decode max |logit diff| %.3g > %.3g", key, md, tol);
      worst_dec = fmax(worst_dec, md);
    }
    /* greedy next token agrees with the reference argmax */
    ASSERT(ttq_argmax(out + (decode ? 0 : (size_t)(n - 1) * V), V) ==
           ttq_argmax(ref + (size_t)(n - 1) * V, V));
    ttq_state_free(&st);
    free(out);
    free(ref);
    free(ids);
  }
  fprintf(stderr, "%s, KV cache %s: max |logit diff| prefill %.3g, decode %.3g (tolerance %.0e)\n",
          model_dir, ttq_dtype_name(kv), worst, worst_dec, tol);
  json_decref(g);
  ttq_model_free(m);
  return 0;
}

TEST_IMPL(forward_golden_qwen3) {
  char *model = test_src_path("models/tinyqwen3-mix");
  char *golden = test_src_path("tests/data/golden/tinyqwen3-mix");
  int rc = check_golden(model, golden, 1e-3, true, TTQ_F32);
  free(model);
  free(golden);
  return rc;
}

static int shared_golden(const char *model_rel, const char *golden_rel, double tol, ttq_dtype kv) {
  char *model = test_shared_path(model_rel), *golden = test_shared_path(golden_rel);
  if (!model || !golden) {
    free(model);
    free(golden);
    SKIP("../shared/%s is not here (set TTQ_SHARED): larger-model golden test NOT RUN", model_rel);
  }
  int rc = check_golden(model, golden, tol, true, kv);
  free(model);
  free(golden);
  return rc;
}

TEST_IMPL(forward_golden_llama) {
  return shared_golden("models/tinyllama-mix", "golden/tinyllama-mix", 1e-3, TTQ_F32);
}

TEST_IMPL(forward_golden_llama_outliers) {
  return shared_golden("models/tinyllama-mix-outliers", "golden/tinyllama-mix", 1e-3, TTQ_F32);
}

TEST_IMPL(forward_golden_llama_gguf) {
  return shared_golden("models/tinyllama-mix-f16.gguf", "golden/tinyllama-mix", 2e-2, TTQ_F32);
}

/* The f16 KV cache against the same fp32 references, prefill and decode: keys and values
 * rounded to f16 (relative 2^-11) move the logits by at most TOL_KV_F16, and the greedy next
 * token stays the reference's. */
#define TOL_KV_F16 2e-2
TEST_IMPL(forward_golden_kv_f16) {
  char *model = test_src_path("models/tinyqwen3-mix");
  char *golden = test_src_path("tests/data/golden/tinyqwen3-mix");
  int rc = check_golden(model, golden, TOL_KV_F16, true, TTQ_F16);
  /* a KV cache type other than f32 and f16 is refused, with the reason */
  ttq_model *m;
  ttq_diag d;
  ttq_state st;
  ASSERTF(ttq_model_load(model, &m, &d) == 0, "%s", d.msg);
  ASSERT(ttq_state_init(&st, m, 8, TTQ_BF16, 1, NULL, &d) == TTQ_EINVAL && strstr(d.msg, "KV cache"));
  ttq_model_free(m);
  free(model);
  free(golden);
  return rc;
}
TEST_IMPL(forward_golden_kv_f16_llama) {
  return shared_golden("models/tinyllama-mix", "golden/tinyllama-mix", TOL_KV_F16, TTQ_F16);
}

/* Every kernel variant gives the same greedy continuation and near-identical logits. */
TEST_IMPL(forward_isa_agree) {
  char *dir = test_src_path("models/tinyqwen3-mix");
  ttq_model *m = NULL;
  ttq_diag d = {0};
  ASSERT_OK(ttq_model_load(dir, &m, &d));
  const char *isas[] = {"scalar", "avx2", "avx512"};
  const int V = m->cfg.vocab, steps = 24;
  int32_t first[24];
  float *base = malloc((size_t)V * 4), *out = malloc((size_t)V * 4);
  int have = 0;
  for (int k = 0; k < 3; k++) {
    const ttq_kernels *K = ttq_kernels_select(isas[k]);
    if (!K) continue;
    ttq_state st;
    ASSERT_OK(ttq_state_init(&st, m, 64, TTQ_F32, 2, K, &d));
    int32_t tok = 959;
    double md = 0;
    for (int t = 0; t < steps; t++) {
      ASSERT_OK(ttq_forward(&st, &tok, 1, out, false, &d));
      tok = ttq_argmax(out, V);
      if (!have) first[t] = tok;
      else ASSERTF(first[t] == tok, "%s: step %d token %d, scalar %d", K->name, t, tok, first[t]);
      if (t == 0 && !have) memcpy(base, out, (size_t)V * 4);
      if (t == 0 && have)
        for (int i = 0; i < V; i++) md = fmax(md, fabs(out[i] - base[i]));
    }
    ASSERTF(md < 1e-4, "%s: logits differ from scalar by %g", K->name, md);
    have = 1;
    ttq_state_free(&st);
  }
  free(base);
  free(out);
  ttq_model_free(m);
  free(dir);
  return 0;
}

/* ttq_model_pin: the per-token tensors move into the pinned buffer (the embedding table stays
 * in the file mapping) and prefill and decode logits are bit-identical to the unpinned model's. */
TEST_IMPL(forward_pinned_identical) {
  char *dir = test_src_path("models/tinyqwen3-mix");
  ttq_model *a = NULL, *b = NULL;
  ttq_diag d = {0};
  ASSERT_OK(ttq_model_load(dir, &a, &d));
  ASSERT_OK(ttq_model_load(dir, &b, &d));
  const void *wq_before = b->layers[0].wq.data, *embed_before = b->embed.data;
  setenv("TTQ_MMAP", "1", 1);
  ttq_model_pin(b);
  ASSERT(b->pinned == NULL); /* TTQ_MMAP=1: nothing copied */
  unsetenv("TTQ_MMAP");
  ttq_model_pin(b);
  ASSERT(b->pinned != NULL && b->layers[0].wq.data != wq_before && b->embed.data == embed_before);
  const uint8_t *lo = b->pinned, *hi = lo + ttq_model_weight_bytes(b) + 64 * 1024;
  const ttq_tensor *ts[] = {&b->layers[0].wq, &b->layers[b->cfg.n_layers - 1].w_down, &b->head,
                            &b->final_norm, &b->layers[0].attn_norm};
  for (size_t i = 0; i < sizeof ts / sizeof *ts; i++) {
    const uint8_t *p = ts[i]->data;
    ASSERTF(p >= lo && p + ts[i]->nbytes <= hi && (uintptr_t)p % 64 == 0, "tensor %zu not in the pinned buffer", i);
  }
  const void *again = b->pinned;
  ttq_model_pin(b);
  ASSERT(b->pinned == again); /* a second call does nothing */
  const int V = a->cfg.vocab;
  const int32_t prompt[] = {959, 12, 400, 7, 88};
  float *la = malloc((size_t)V * 5 * 4), *lb = malloc((size_t)V * 5 * 4);
  ttq_state sa, sb;
  ASSERT_OK(ttq_state_init(&sa, a, 64, TTQ_F32, 2, NULL, &d));
  ASSERT_OK(ttq_state_init(&sb, b, 64, TTQ_F32, 2, NULL, &d));
  ASSERT_OK(ttq_forward(&sa, prompt, 5, la, true, &d));
  ASSERT_OK(ttq_forward(&sb, prompt, 5, lb, true, &d));
  ASSERT(!memcmp(la, lb, (size_t)V * 5 * 4));
  int32_t tok = ttq_argmax(la + (size_t)4 * V, V);
  for (int t = 0; t < 8; t++) {
    ASSERT_OK(ttq_forward(&sa, &tok, 1, la, false, &d));
    ASSERT_OK(ttq_forward(&sb, &tok, 1, lb, false, &d));
    ASSERTF(!memcmp(la, lb, (size_t)V * 4), "decode step %d differs", t);
    tok = ttq_argmax(la, V);
  }
  ttq_state_free(&sa);
  ttq_state_free(&sb);
  free(la), free(lb);
  ttq_model_free(a);
  ttq_model_free(b);
  free(dir);
  return 0;
}
