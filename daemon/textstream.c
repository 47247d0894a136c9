/* textstream.c -- streaming detokenization with stop strings; see textstream.h. */
#include "textstream.h"

#include <stdlib.h>
#include <string.h>

#include "ttq.h"

int ttqd_textstream_init(ttqd_textstream *s, const ttq_tokenizer *tok, const char *const *stops,
                         int n_stops) {
  memset(s, 0, sizeof *s);
  ttq_detok_init(&s->dt, tok);
  s->stops = stops;
  s->n_stops = n_stops;
  s->cap_pend = s->cap_out = 1024;
  s->pend = malloc(s->cap_pend);
  s->out = malloc(s->cap_out);
  if (!s->pend || !s->out) {
    ttqd_textstream_free(s);
    return TTQ_ENOMEM;
  }
  return 0;
}

void ttqd_textstream_free(ttqd_textstream *s) {
  free(s->pend);
  free(s->out);
  s->pend = s->out = NULL;
}

static int grow(char **p, size_t *cap, size_t need) {
  if (need <= *cap) return 0;
  size_t c = *cap * 2 > need ? *cap * 2 : need;
  char *q = realloc(*p, c);
  if (!q) return TTQ_ENOMEM;
  *p = q;
  *cap = c;
  return 0;
}

/* Moves the releasable prefix of pend to out. final: nothing more will come, so no suffix
 * needs holding back. Returns 1 when a stop string was found. */
static int release(ttqd_textstream *s, bool final, const char **text, size_t *len) {
  size_t n = s->n_pend, cut = n;
  int hit = 0;
  for (int i = 0; i < s->n_stops; i++) {
    const char *at = memmem(s->pend, n, s->stops[i], strlen(s->stops[i]));
    if (at && (size_t)(at - s->pend) < cut) {
      cut = (size_t)(at - s->pend);
      hit = 1;
    }
  }
  if (!hit && !final) { /* hold the longest suffix that is a proper prefix of a stop string */
    size_t hold = 0;
    for (int i = 0; i < s->n_stops; i++) {
      size_t L = strlen(s->stops[i]);
      for (size_t k = (L - 1 < n ? L - 1 : n); k > hold; k--)
        if (memcmp(s->pend + n - k, s->stops[i], k) == 0) {
          hold = k;
          break;
        }
    }
    cut = n - hold;
  }
  if (grow(&s->out, &s->cap_out, cut + 1)) return TTQ_ENOMEM;
  memcpy(s->out, s->pend, cut);
  s->out[cut] = '\0';
  memmove(s->pend, s->pend + cut, n - cut);
  s->n_pend = hit ? 0 : n - cut;
  if (hit) s->stopped = true;
  *text = s->out;
  *len = cut;
  return hit;
}

static int append(ttqd_textstream *s, const char *p, size_t k) {
  if (grow(&s->pend, &s->cap_pend, s->n_pend + k)) return TTQ_ENOMEM;
  memcpy(s->pend + s->n_pend, p, k);
  s->n_pend += k;
  return 0;
}

int ttqd_textstream_push(ttqd_textstream *s, int32_t id, const char **text, size_t *len) {
  *text = "";
  *len = 0;
  if (s->stopped) return 1;
  char piece[512];
  int k = ttq_detok_push(&s->dt, id, piece, sizeof piece);
  if (k < 0) return k;
  if (k == 0) return 0;
  if (append(s, piece, (size_t)k)) return TTQ_ENOMEM;
  return release(s, false, text, len);
}

int ttqd_textstream_finish(ttqd_textstream *s, const char **text, size_t *len) {
  *text = "";
  *len = 0;
  if (s->stopped) return 0;
  char tail[64];
  int k = ttq_detok_flush(&s->dt, tail, sizeof tail);
  if (k < 0) return k;
  if (k > 0 && append(s, tail, (size_t)k)) return TTQ_ENOMEM;
  int r = release(s, true, text, len);
  return r < 0 ? r : 0;
}
