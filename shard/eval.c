/* eval.c -- perplexity protocol pieces; see eval.h. Can't change the model or the tokenizer. */
#include "eval.h"

#include <math.h>
#include <stdlib.h>

#include "sampler.h"
#include "util.h"

int ttq_split_docs(char *text, char ***docs, int *n_docs, ttq_diag *d) {
  const size_t sep = strlen(TTQ_DOC_SEPARATOR);
  int cap = 16, n = 0;
  char **v = malloc((size_t)cap * sizeof *v);
  if (!v) return ttq__fail(d, TTQ_ENOMEM, "out of memory");
  char *p = text;
  for (;;) {
    if (n == cap) {
      char **nv = realloc(v, (size_t)(cap *= 2) * sizeof *v);
      if (!nv) {
        free(v);
        return ttq__fail(d, TTQ_ENOMEM, "out of memory");
      }
      v = nv;
    }
    v[n++] = p;
    char *q = strstr(p, TTQ_DOC_SEPARATOR);
    if (!q) break;
    *q = 0;
    p = q + sep;
  }
  *docs = v;
  *n_docs = n;
  return 0;
}

int ttq_doc_tokens(const ttq_model *m, const char *doc, int ctx, int32_t **ids, int *n,
                   ttq_diag *d) {
  int32_t *raw = NULL;
  size_t nraw = 0;
  int rc = ttq_tokenize(m->tok, doc, strlen(doc), false, &raw, &nraw, d);
  if (rc) return rc;
  int bos = m->cfg.add_bos ? 1 : 0;
  size_t total = nraw + (size_t)bos;
  if (total > (size_t)ctx) total = (size_t)ctx;
  int32_t *out = malloc((total ? total : 1) * sizeof *out);
  if (!out) {
    free(raw);
    return ttq__fail(d, TTQ_ENOMEM, "out of memory");
  }
  size_t k = 0;
  if (bos && total) out[k++] = m->cfg.bos_id;
  for (size_t i = 0; k < total; i++) out[k++] = raw[i];
  free(raw);
  *ids = out;
  *n = (int)total;
  return 0;
}

int ttq_score_tokens(ttq_state *s, const int32_t *ids, int n, double *nll, int64_t *count,
                     ttq_diag *d) {
  const int V = s->m->cfg.vocab;
  if (n < 2) return 0;
  float *logits = malloc((size_t)n * V * sizeof *logits);
  if (!logits) return ttq__fail(d, TTQ_ENOMEM, "out of memory for %d x %d logits", n, V);
  ttq_state_reset(s);
  int rc = ttq_forward(s, ids, n - 1, logits, true, d);
  if (rc == 0) {
    double total = 0;
    for (int t = 0; t < n - 1; t++) {
      const float *row = logits + (size_t)t * V;
      float mx = row[ttq_argmax(row, V)];
      double sum = 0;
      for (int i = 0; i < V; i++) sum += exp((double)row[i] - mx);
      total += (log(sum) + mx) - row[ids[t + 1]];
    }
    *nll += total;
    *count += n - 1;
  }
  free(logits);
  return rc;
}
