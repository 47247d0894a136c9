/* eval.h -- scoring text with a model: document splitting and teacher-forced negative
 * log-likelihood, following the golden perplexity protocol (docs split on "\n<|doc|>\n", each
 * tokenized on its own, bos prepended only when the model adds one, truncated to ctx tokens,
 * documents shorter than 16 tokens skipped, ppl = exp(total NLL / predicted tokens)). */
#ifndef TTQ_EVAL_H
#define TTQ_EVAL_H

#include "forward.h"

#define TTQ_DOC_SEPARATOR "\n<|doc|>\n"
#define TTQ_PPL_MIN_TOKENS 16

/* Splits text in place into documents; *docs (malloc'd array of pointers into text, each
 * NUL-terminated after the split) owned by caller (free the array only). */
int ttq_split_docs(char *text, char ***docs, int *n_docs, ttq_diag *d);

/* Teacher-forced NLL of ids[1..n-1] given their prefixes, from a reset state. Adds to *nll and
 * *count (count += n - 1). Needs n <= s->max_ctx. */
int ttq_score_tokens(ttq_state *s, const int32_t *ids, int n, double *nll, int64_t *count,
                     ttq_diag *d);

/* Tokenizes one document as the protocol says (bos if the model adds one, truncate to ctx).
 * *ids malloc'd; *n may be < TTQ_PPL_MIN_TOKENS, in which case the caller skips it. */
int ttq_doc_tokens(const ttq_model *m, const char *doc, int ctx, int32_t **ids, int *n,
                   ttq_diag *d);

#endif
