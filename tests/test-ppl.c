/* test-ppl.c -- perplexity per corpus/valid domain within 0.5% of Hugging Face's (golden.json),
 * with the protocol written in that file (eval.h implements it). */
#include <jansson.h>

#include "eval.h"
#include "test.h"
#include "util.h"

static int check_ppl(const char *model_dir, const char *golden_json, const char *corpus_dir) {
  ttq_model *m = NULL;
  ttq_diag d = {0};
  ASSERTF(ttq_model_load(model_dir, &m, &d) == 0, "%s", d.msg);
  json_error_t err;
  json_t *g = json_load_file(golden_json, 0, &err);
  ASSERTF(g, "%s: %s", golden_json, err.text);
  json_t *ppl = json_object_get(g, "perplexity_fp32");
  ASSERT(json_object_size(ppl) == 7);
  ttq_state st;
  ASSERT_OK(ttq_state_init(&st, m, 1024, TTQ_F32, 0, NULL, &d));
  const char *key;
  json_t *e;
  json_object_foreach(ppl, key, e) {
    const char *base = strrchr(key, '/');
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", corpus_dir, base ? base + 1 : key);
    char *text = NULL;
    ASSERTF(ttq__read_file(path, &text, NULL, &d) == 0, "%s", d.msg);
    char **docs;
    int n_docs;
    ASSERT_OK(ttq_split_docs(text, &docs, &n_docs, &d));
    if (n_docs > 40) n_docs = 40;
    double nll = 0;
    int64_t count = 0;
    int used = 0;
    for (int i = 0; i < n_docs; i++) {
      int32_t *ids;
      int n;
      ASSERT_OK(ttq_doc_tokens(m, docs[i], 1024, &ids, &n, &d));
      if (n >= TTQ_PPL_MIN_TOKENS) {
        ASSERT_OK(ttq_score_tokens(&st, ids, n, &nll, &count, &d));
        used++;
      }
      free(ids);
    }
    double got = exp(nll / (double)count), want = json_real_value(json_object_get(e, "ppl"));
    json_int_t want_tokens = json_integer_value(json_object_get(e, "tokens"));
    json_int_t want_docs = json_integer_value(json_object_get(e, "docs"));
    fprintf(stderr, "%-22s ppl %9.4f (golden %9.4f, %+.4f%%) tokens %lld docs %d\n", key, got, want,
            (got / want - 1) * 100, (long long)count, used);
    ASSERTF(count == want_tokens, "%s: scored %lld tokens, golden %lld", key, (long long)count,
            (long long)want_tokens);
    ASSERTF(used == want_docs, "%s: %d docs, golden %lld", key, used, (long long)want_docs);
    ASSERTF(fabs(got / want - 1) <= 0.005, "%s: ppl %.4f vs golden %.4f", key, got, want);
    free(docs);
    free(text);
  }
  ttq_state_free(&st);
  json_decref(g);
  ttq_model_free(m);
  return 0;
}

TEST_IMPL(ppl_golden_qwen3) {
  char *model = test_src_path("models/tinyqwen3-mix");
  char *golden = test_src_path("tests/data/golden/tinyqwen3-mix/golden.json");
  char *corpus = test_src_path("tests/data/corpus/valid");
  int rc = check_ppl(model, golden, corpus);
  free(model), free(golden), free(corpus);
  return rc;
}

TEST_IMPL(ppl_golden_llama) {
  char *model = test_shared_path("models/tinyllama-mix");
  char *golden = test_shared_path("golden/tinyllama-mix/golden.json");
  char *corpus = test_shared_path("corpus/valid");
  int rc;
  if (!model || !golden || !corpus) {
    fprintf(stderr, "SKIPPED: ../shared is not here: tinyllama-mix perplexity test NOT RUN\n");
    rc = TEST_SKIP_CODE;
  } else {
    rc = check_ppl(model, golden, corpus);
  }
  free(model), free(golden), free(corpus);
  return rc;
}
