/* textstream.h -- generated tokens to user-visible text: streaming detokenization (only
 * complete UTF-8 characters) with stop strings held back until they can no longer match.
 *
 * Invariant: the concatenation of every piece handed out never contains a stop string nor any
 * text that followed one; text is released as soon as no stop string can start inside it.
 * `ttqd run` and `ttqd serve` both use it, so a served stream equals a local run. */
#ifndef TTQD_TEXTSTREAM_H
#define TTQD_TEXTSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

#define TTQD_MAX_STOPS 8
#define TTQD_MAX_STOP_BYTES 256

typedef struct ttqd_textstream {
  ttq_detok dt;
  const char *const *stops; /* borrowed; n_stops non-empty strings */
  int n_stops;
  char *pend;               /* text not yet released */
  size_t n_pend, cap_pend;
  char *out;                /* the last released piece (valid until the next call) */
  size_t cap_out;
  bool stopped;             /* a stop string was found: nothing more is released */
} ttqd_textstream;

/* 0, or TTQ_ENOMEM. stops is borrowed and must outlive the stream. */
int ttqd_textstream_init(ttqd_textstream *s, const ttq_tokenizer *tok, const char *const *stops,
                         int n_stops);
void ttqd_textstream_free(ttqd_textstream *s);

/* Feeds one generated token. *text, *len: the text now safe to show (may be empty; valid until
 * the next call). Returns 1 when a stop string was hit (the text before it is released, and the
 * stream is finished), 0 otherwise, or a negative error. */
int ttqd_textstream_push(ttqd_textstream *s, int32_t id, const char **text, size_t *len);

/* Ends the stream: releases everything held (a trailing partial UTF-8 character as U+FFFD),
 * cut at a stop string if one completes. Returns 0 or a negative error. */
int ttqd_textstream_finish(ttqd_textstream *s, const char **text, size_t *len);

#endif
