/* tokenizer.h -- byte-level BPE (GPT-2 / Llama-3 / Qwen2 style) with the pre-tokenizer
 * split regex run by PCRE2 exactly as written (UTF + UCP), special/added tokens, and a
 * streaming UTF-8-safe decoder.
 *
 * A tokenizer is immutable once built and may be shared by threads. */
#ifndef TTQ_TOKENIZER_H
#define TTQ_TOKENIZER_H

#include "ttq.h"
#include <stdbool.h>

typedef struct ttq_tokenizer ttq_tokenizer;

/* Regexes of the known pre-tokenizers (the strings in tokenizer.json). */
extern const char *const TTQ_PRETOK_LLAMA3; /* GGUF tokenizer.ggml.pre = "llama-bpe" */
extern const char *const TTQ_PRETOK_QWEN2;  /* GGUF tokenizer.ggml.pre = "qwen2" */

/* Everything needed to build a tokenizer, from any source (tokenizer.json, GGUF).
 * Strings are in the byte-level alphabet (e.g. "Ġthe"), NUL-terminated; borrowed. */
typedef struct ttq_tok_spec {
  int n_vocab;
  const char *const *tokens;     /* n_vocab entries; id = index */
  int n_merges;
  const char *const *merges;     /* "left right", rank = index */
  const bool *is_special;        /* n_vocab entries or NULL: special/added tokens matched
                                    literally in text before pre-tokenization */
  const char *pretok_regex;      /* split regex, behaviour "Isolated" */
} ttq_tok_spec;

int ttq_tokenizer_build(const ttq_tok_spec *spec, ttq_tokenizer **out, ttq_diag *d);
/* Reads tokenizer.json (BPE model, added_tokens, Split pre-tokenizer regex). */
int ttq_tokenizer_from_json(const char *path, ttq_tokenizer **out, ttq_diag *d);
void ttq_tokenizer_free(ttq_tokenizer *t);

int ttq_tokenizer_n_vocab(const ttq_tokenizer *t);
/* Id of a token by its exact vocabulary string, or -1. */
int ttq_tokenizer_find(const ttq_tokenizer *t, const char *token);

/* Encode UTF-8 text (len bytes; need not be NUL-terminated). When parse_special, the text of
 * special tokens (e.g. "<|im_start|>") maps to their ids; otherwise it is encoded as text.
 * Invalid UTF-8 is encoded byte-wise, never refused. *ids is malloc'd; caller frees. */
int ttq_tokenize(const ttq_tokenizer *t, const char *text, size_t len, bool parse_special,
                 int32_t **ids, size_t *n_ids, ttq_diag *d);

/* The raw bytes a token stands for (byte-level alphabet mapped back to bytes). Writes at most
 * cap bytes; returns the byte length, or TTQ_EINVAL for an id out of range. Special tokens
 * give their literal text. */
int ttq_token_bytes(const ttq_tokenizer *t, int32_t id, char *buf, size_t cap);

/* Streaming decoder: push ids one at a time, get back only complete UTF-8 characters.
 * A partial multi-byte character is held until it completes; bytes that can never form a valid
 * character are emitted as U+FFFD. */
typedef struct ttq_detok {
  const ttq_tokenizer *tok;
  char pending[8];
  int n_pending;
} ttq_detok;

void ttq_detok_init(ttq_detok *s, const ttq_tokenizer *t);
/* Appends complete text for `id` to out (cap bytes incl. NUL); returns bytes written (>= 0)
 * or a negative error. */
int ttq_detok_push(ttq_detok *s, int32_t id, char *out, size_t cap);
/* Flushes any held bytes (as U+FFFD); returns bytes written. */
int ttq_detok_flush(ttq_detok *s, char *out, size_t cap);

#endif
