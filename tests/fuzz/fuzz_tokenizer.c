/* fuzz_tokenizer.c -- libFuzzer harness for encoding and decoding arbitrary bytes with the
 * bundled model's tokenizer (models/tinyqwen3-mix/tokenizer.json; $TTQ_FUZZ_TOKENIZER
 * names another tokenizer.json).
 *
 * Input: any bytes, taken as text (need not be UTF-8 nor NUL-free).
 *
 * Properties checked, for parse_special false and true (they hold for every input because
 * the byte-level vocabulary has all 256 byte characters, so no byte is ever dropped; the
 * harness verifies that precondition once when it loads the tokenizer):
 *   - ttq_tokenize succeeds and every id is in [0, n_vocab);
 *   - lossless: the concatenated ttq_token_bytes of the ids equal the input;
 *   - the streaming decoder (ttq_detok_push one id at a time, then ttq_detok_flush) emits
 *     exactly the input with every ill-formed sequence replaced by U+FFFD per "maximal
 *     subpart" (computed here independently, by reference_lossy), hence valid UTF-8, and
 *     the input itself whenever the input is valid UTF-8;
 *   - a push into a buffer too small for its output returns TTQ_ERANGE and leaves the decoder
 *     state untouched;
 *   - tokenizing is deterministic (a second run gives the same ids). */
#include "fuzz_util.h"
#include "tokenizer.h"

#ifndef TTQ_FUZZ_TOKENIZER_JSON
#define TTQ_FUZZ_TOKENIZER_JSON "models/tinyqwen3-mix/tokenizer.json"
#endif

static const ttq_tokenizer *tokenizer(void) {
  static ttq_tokenizer *tok;
  if (tok) return tok;
  const char *path = getenv("TTQ_FUZZ_TOKENIZER");
  if (!path || !*path) path = TTQ_FUZZ_TOKENIZER_JSON;
  ttq_diag d = {0};
  if (ttq_tokenizer_from_json(path, &tok, &d) != 0) {
    fprintf(stderr, "fuzz_tokenizer: cannot load %s: %s\n", path, d.msg);
    abort();
  }
  /* Precondition of the lossless property: every byte has its own token. */
  for (int b = 0; b < 256; b++) {
    uint8_t byte = (uint8_t)b;
    int32_t *ids = NULL;
    size_t n = 0;
    FUZZ_CHECK(ttq_tokenize(tok, (const char *)&byte, 1, false, &ids, &n, &d) == 0);
    FUZZ_CHECKF(n == 1, "byte 0x%02x encodes to %zu tokens", b, n);
    char out[8];
    FUZZ_CHECKF(ttq_token_bytes(tok, ids[0], out, sizeof out) == 1 && (uint8_t)out[0] == byte,
                "byte 0x%02x does not round-trip", b);
    free(ids);
  }
  return tok;
}

/* Bytes of the character a lead byte announces, or 0 when it never starts one. */
static int need(uint8_t b) {
  if (b < 0x80) return 1;
  if (b >= 0xc2 && b <= 0xdf) return 2;
  if (b >= 0xe0 && b <= 0xef) return 3;
  if (b >= 0xf0 && b <= 0xf4) return 4;
  return 0;
}

/* Whether byte c may stand at position k (1..3) of a sequence with lead byte `lead`. */
static bool cont_ok(uint8_t lead, int k, uint8_t c) {
  if (k == 1) {
    if (lead == 0xe0) return c >= 0xa0 && c <= 0xbf;
    if (lead == 0xed) return c >= 0x80 && c <= 0x9f;
    if (lead == 0xf0) return c >= 0x90 && c <= 0xbf;
    if (lead == 0xf4) return c >= 0x80 && c <= 0x8f;
  }
  return c >= 0x80 && c <= 0xbf;
}

/* The input with each maximal ill-formed subpart replaced by U+FFFD (Unicode ch. 3, "U+FFFD
 * substitution of maximal subparts"); out has room for 3 * n bytes. Returns the length. */
static size_t reference_lossy(const uint8_t *s, size_t n, uint8_t *out) {
  size_t i = 0, o = 0;
  while (i < n) {
    int l = need(s[i]);
    if (l == 0) {
      memcpy(out + o, "\xef\xbf\xbd", 3);
      o += 3;
      i++;
      continue;
    }
    int k = 1;
    while (k < l && i + (size_t)k < n && cont_ok(s[i], k, s[i + (size_t)k])) k++;
    if (k == l) {
      memcpy(out + o, s + i, (size_t)l);
      o += (size_t)l;
    } else {
      memcpy(out + o, "\xef\xbf\xbd", 3);
      o += 3;
    }
    i += (size_t)k;
  }
  return o;
}

/* scratch has room for 3 * size + 16 bytes. */
static void check_one(const ttq_tokenizer *t, const uint8_t *data, size_t size, bool special,
                      uint8_t *scratch, const uint8_t *lossy, size_t lossy_n) {
  const size_t room = 3 * size + 16;
  ttq_diag d = {0};
  int32_t *ids = NULL, *ids2 = NULL;
  size_t n = 0, n2 = 0;
  int rc = ttq_tokenize(t, (const char *)data, size, special, &ids, &n, &d);
  FUZZ_CHECKF(rc == 0, "tokenize failed: %s", d.msg);
  FUZZ_CHECK(ids != NULL);
  FUZZ_CHECK(n <= size); /* every token stands for at least one input byte */
  int nv = ttq_tokenizer_n_vocab(t);

  /* Lossless. */
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    FUZZ_CHECK(ids[i] >= 0 && ids[i] < nv);
    int l = ttq_token_bytes(t, ids[i], NULL, 0);
    FUZZ_CHECK(l > 0 && (size_t)l <= size - o);
    FUZZ_CHECK(ttq_token_bytes(t, ids[i], (char *)scratch + o, (size_t)l) == l);
    o += (size_t)l;
  }
  FUZZ_CHECKF(o == size && (size == 0 || memcmp(scratch, data, size) == 0),
              "decode(encode(x)) != x (parse_special %d, %zu bytes in, %zu out)", special, size,
              o);

  /* Streaming decoder. */
  ttq_detok s;
  ttq_detok_init(&s, t);
  o = 0;
  for (size_t i = 0; i < n; i++) {
    size_t cap = room - o; /* the whole output is at most 3 * size bytes (+ NUL) */
    char small[1];
    ttq_detok before = s;
    int w = ttq_detok_push(&s, ids[i], small, sizeof small);
    if (w == TTQ_ERANGE) {
      FUZZ_CHECK(s.n_pending == before.n_pending &&
                 memcmp(s.pending, before.pending, sizeof s.pending) == 0);
      w = ttq_detok_push(&s, ids[i], (char *)scratch + o, cap);
      FUZZ_CHECK(w > 0);
    } else {
      FUZZ_CHECK(w == 0 && small[0] == 0); /* nothing complete yet: only an empty string fits */
    }
    FUZZ_CHECK(w >= 0 && (size_t)w < cap);
    o += (size_t)w;
  }
  int w = ttq_detok_flush(&s, (char *)scratch + o, room - o);
  FUZZ_CHECK(w >= 0);
  o += (size_t)w;
  FUZZ_CHECK(s.n_pending == 0);
  FUZZ_CHECKF(o == lossy_n && memcmp(scratch, lossy, o) == 0,
              "streamed text differs from the lossy UTF-8 of the input (%zu vs %zu bytes)", o,
              lossy_n);
  FUZZ_CHECK(fuzz_utf8_valid(scratch, o));
  if (fuzz_utf8_valid(data, size)) FUZZ_CHECK(o == size && memcmp(scratch, data, size) == 0);

  /* Deterministic. */
  rc = ttq_tokenize(t, (const char *)data, size, special, &ids2, &n2, &d);
  FUZZ_CHECK(rc == 0 && n2 == n && (n == 0 || memcmp(ids, ids2, n * sizeof *ids) == 0));
  free(ids2);
  free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const ttq_tokenizer *t = tokenizer();
  uint8_t *scratch = malloc(3 * size + 16), *lossy = malloc(3 * size + 16);
  FUZZ_CHECK(scratch && lossy);
  size_t lossy_n = reference_lossy(data, size, lossy);
  check_one(t, data, size, false, scratch, lossy, lossy_n);
  check_one(t, data, size, true, scratch, lossy, lossy_n);
  free(scratch);
  free(lossy);
  return 0;
}
