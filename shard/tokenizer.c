/* tokenizer.c -- byte-level BPE tokenizer (GPT-2 / Llama-3 / Qwen2 family), bit-exact with
 * the Hugging Face `tokenizers` library on the same tokenizer.json.
 *
 * What it is for: turning UTF-8 text into the ids the model was trained on, and ids back
 * into text, for every caller of the engine (prompt encoding, streaming output, eval).
 *
 * The encode pipeline (the same steps, in the same order, as HF's):
 *   1. added tokens: the text of special tokens (only when parse_special) and of non-special
 *      added tokens (always, as HF does) is cut out, leftmost-longest, and maps straight to
 *      the token id. The segments in between are encoded independently;
 *   2. pre-tokenization: each segment is split by the pre-tokenizer regex, run by PCRE2 with
 *      UTF | UCP as written in tokenizer.json, except that \s and \S are spelled out as Unicode
 *      White_Space so that PCRE2 agrees with Oniguruma, HF's engine, on U+180E (see
 *      onig_white_space); behaviour "Isolated": every match is a piece and so is the text
 *      between two matches;
 *   3. byte level: each byte of a piece is one initial symbol, the token of its GPT-2
 *      bytes_to_unicode character;
 *   4. BPE: the adjacent pair with the lowest merge rank (leftmost on ties) is merged, until
 *      no adjacent pair has a merge.
 *
 * Invariants:
 *   - ids are dense: every id in [0, n_vocab) has exactly one token string; every merge's
 *     left, right and concatenation are vocabulary tokens (all checked when building);
 *   - a built tokenizer is never written again, so threads may share it: all per-call state
 *     (PCRE2 match data, JIT stack, BPE work arrays) belongs to the call;
 *   - no input byte is lost: invalid UTF-8 is never matched by the regex
 *     (PCRE2_MATCH_INVALID_UTF), so it lands in a between-matches piece and is encoded byte by
 *     byte (a byte whose character is missing from the vocabulary is dropped, or becomes the
 *     unk token, as in HF; the byte-level vocabularies we load have all 256);
 *   - a malformed or unsupported tokenizer.json or spec is refused with a TTQ_E* code and a
 *     diagnostic naming the file, the field and the value; nothing in it can make us crash;
 *   - decoding never emits a split or invalid UTF-8 character from the streaming decoder:
 *     incomplete sequences are held, impossible bytes become U+FFFD.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer.h"
#include "util.h"

#include <jansson.h>
#include <limits.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The Split regexes of tokenizer.json, verbatim (JSON-decoded). */
const char *const TTQ_PRETOK_LLAMA3 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char *const TTQ_PRETOK_QWEN2 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/* The regex HF's ByteLevel pre-tokenizer uses when use_regex is true (GPT-2). */
static const char *const PRETOK_GPT2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

enum { KIND_NORMAL = 0, KIND_SPECIAL = 1, KIND_ADDED = 2 };

/* Longest token string accepted (bytes); keeps every length well inside int. */
#define TOK_MAX_LEN (1u << 20)
#define TOK_MAX_VOCAB (1 << 26)

typedef struct merge_slot {
  uint64_t key; /* left << 32 | right; MERGE_EMPTY when free */
  uint32_t rank;
  int32_t id; /* id of left+right */
} merge_slot;
#define MERGE_EMPTY UINT64_MAX

struct ttq_tokenizer {
  int n_vocab;
  char *strs;      /* token strings back to back, each NUL-terminated */
  size_t *str_off; /* n_vocab + 1 offsets into strs */
  uint8_t *raw;    /* decoded bytes of every token, back to back */
  size_t *raw_off; /* n_vocab + 1 offsets into raw */
  uint8_t *kind;   /* KIND_* per id */
  int32_t *vocab_tab; /* open addressing: id or -1 */
  size_t vocab_mask;
  merge_slot *merge_tab;
  size_t merge_mask;
  int32_t byte_id[256]; /* token of each byte's byte-level character, or -1 */
  int32_t unk_id;       /* -1: characters missing from the vocabulary are dropped */
  bool fuse_unk, ignore_merges;
  /* Added tokens matched literally in text, grouped by first byte, longest first. */
  int32_t *added;
  uint32_t added_first[257];
  bool has_always; /* some KIND_ADDED token: text is scanned even without parse_special */
  pcre2_code *re; /* NULL: a segment is one piece */
  bool jit;
};

/* ---------------------------------------------------------------- byte-level alphabet */

/* GPT-2 bytes_to_unicode: printable bytes map to themselves, the 68 others in byte order to
 * U+0100 + n. */
static uint32_t byte_to_cp(uint8_t b) {
  if (b <= 0x20) return 0x100u + b;
  if (b >= 0x7f && b <= 0xa0) return 0x121u + (b - 0x7fu);
  if (b == 0xad) return 0x143u;
  return b;
}

/* Inverse of byte_to_cp; -1 for a code point outside the alphabet. */
static int cp_to_byte(uint32_t cp) {
  if (cp < 0x100) {
    if ((cp >= 0x21 && cp <= 0x7e) || (cp >= 0xa1 && cp <= 0xac) || cp >= 0xae) return (int)cp;
    return -1;
  }
  if (cp <= 0x120) return (int)(cp - 0x100);
  if (cp <= 0x142) return (int)(cp - 0x121 + 0x7f);
  if (cp == 0x143) return 0xad;
  return -1;
}

/* UTF-8 of byte b's character into out (1 or 2 bytes); returns the length. */
static int byte_char(uint8_t b, char out[2]) {
  uint32_t cp = byte_to_cp(b);
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  out[0] = (char)(0xc0 | (cp >> 6));
  out[1] = (char)(0x80 | (cp & 0x3f));
  return 2;
}

/* Length of the valid UTF-8 sequence starting s[0..n), or 0 when invalid. */
static int utf8_seq(const uint8_t *s, size_t n, uint32_t *cp) {
  uint8_t b = s[0];
  if (b < 0x80) {
    *cp = b;
    return 1;
  }
  int len;
  uint32_t c;
  if (b >= 0xc2 && b <= 0xdf) len = 2, c = b & 0x1f;
  else if (b >= 0xe0 && b <= 0xef) len = 3, c = b & 0x0f;
  else if (b >= 0xf0 && b <= 0xf4) len = 4, c = b & 0x07;
  else return 0;
  if (n < (size_t)len) return 0;
  for (int i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    c = (c << 6) | (s[i] & 0x3f);
  }
  if ((len == 3 && (c < 0x800 || (c >= 0xd800 && c <= 0xdfff))) || (len == 4 && (c < 0x10000 || c > 0x10ffff)))
    return 0;
  *cp = c;
  return len;
}

/* ---------------------------------------------------------------- hash tables */

static uint64_t hash_bytes(const void *p, size_t n) {
  const uint8_t *s = p;
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
  return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* Smallest power of two >= 2n (and >= 16). */
static size_t table_size(size_t n) {
  size_t s = 16;
  while (s < 2 * n) s <<= 1;
  return s;
}

static inline const char *tok_str(const ttq_tokenizer *t, int32_t id) { return t->strs + t->str_off[id]; }
static inline size_t tok_len(const ttq_tokenizer *t, int32_t id) {
  return t->str_off[id + 1] - t->str_off[id] - 1;
}

static int32_t vocab_lookup(const ttq_tokenizer *t, const char *s, size_t n) {
  size_t i = (size_t)hash_bytes(s, n) & t->vocab_mask;
  for (;;) {
    int32_t id = t->vocab_tab[i];
    if (id < 0) return -1;
    if (tok_len(t, id) == n && memcmp(tok_str(t, id), s, n) == 0) return id;
    i = (i + 1) & t->vocab_mask;
  }
}

static const merge_slot *merge_lookup(const ttq_tokenizer *t, int32_t l, int32_t r) {
  uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
  size_t i = (size_t)hash_u64(key) & t->merge_mask;
  for (;;) {
    const merge_slot *m = &t->merge_tab[i];
    if (m->key == key) return m;
    if (m->key == MERGE_EMPTY) return NULL;
    i = (i + 1) & t->merge_mask;
  }
}

/* ---------------------------------------------------------------- building */

typedef struct span {
  const char *s;
  size_t n;
} span;

/* Everything the common builder needs; from_json and ttq_tokenizer_build both fill one.
 * The *_what strings name the source and its fields in messages. */
typedef struct build_src {
  const char *origin;      /* "path/tokenizer.json" or "tokenizer spec" */
  const char *vocab_what;  /* "model.vocab" or "tokens" */
  const char *merges_what; /* "model.merges" or "merges" */
  const char *regex_what;
  int n_vocab;
  const char *const *tokens; /* NUL-terminated */
  const uint8_t *kind;       /* KIND_* per id, or NULL (all normal) */
  int n_merges;
  const span *merges; /* 2 * n_merges: left, right */
  const char *regex;  /* NULL: no split */
  bool regex_literal; /* Split with a "String" pattern */
  bool ignore_merges, fuse_unk;
  int32_t unk_id;
} build_src;

void ttq_tokenizer_free(ttq_tokenizer *t) {
  if (!t) return;
  free(t->strs);
  free(t->str_off);
  free(t->raw);
  free(t->raw_off);
  free(t->kind);
  free(t->vocab_tab);
  free(t->merge_tab);
  free(t->added);
  if (t->re) pcre2_code_free(t->re);
  free(t);
}

/* Bytes a normal token stands for: its characters mapped back through bytes_to_unicode. A
 * token with a character outside the alphabet stands for its own UTF-8 (what HF's ByteLevel
 * decoder does). Writes at most n bytes to out; returns the length. */
static size_t token_raw(const char *s, size_t n, uint8_t *out) {
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    int l = utf8_seq((const uint8_t *)s + i, n - i, &cp);
    int b = l ? cp_to_byte(cp) : -1;
    if (b < 0) {
      memcpy(out, s, n);
      return n;
    }
    out[o++] = (uint8_t)b;
    i += (size_t)l;
  }
  return o;
}

static int cmp_added(const void *a, const void *b, void *arg) {
  const ttq_tokenizer *t = arg;
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  uint8_t fx = (uint8_t)tok_str(t, x)[0], fy = (uint8_t)tok_str(t, y)[0];
  if (fx != fy) return fx < fy ? -1 : 1;
  size_t lx = tok_len(t, x), ly = tok_len(t, y);
  if (lx != ly) return lx > ly ? -1 : 1;
  return x < y ? -1 : x > y;
}

/* Shorten a value for a message: at most 64 bytes. */
#define SHOW(s, n) (int)((n) > 64 ? 64 : (n)), (s)

/* The one difference between PCRE2 and Oniguruma (the engine HF `tokenizers` runs the Split
 * regex with) on the patterns we load: PCRE2 10.42 still counts U+180E MONGOLIAN VOWEL
 * SEPARATOR as \s under UCP, Oniguruma follows Unicode's White_Space property, which dropped it
 * in Unicode 6.3 (checked exhaustively over all code points for \s, \S, \p{L}, \p{N} and the
 * (?i:'s|...) contractions; \s is the only one that differs). So, for HF's splits, \s and \S are
 * spelled out as White_Space before compiling; nothing else in the pattern is touched.
 * Returns a malloc'd pattern, or NULL to compile the pattern as written (no \s or \S, or a
 * construct this rewriter does not follow: \Q..\E, comments, extended mode, \S in a class). */
#define WHITE_SPACE \
  "\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
static char *onig_white_space(const char *re) {
  if (strstr(re, "\\Q") || strstr(re, "(?#") || strstr(re, "(?x") || strstr(re, "(*")) return NULL;
  size_t n = strlen(re), cap = n + 1 + (n / 2 + 1) * (sizeof WHITE_SPACE + 3), o = 0, i = 0;
  char *out = malloc(cap);
  if (!out) return NULL;
  bool in_class = false, changed = false, give_up = false;
  while (i < n && !give_up) {
    char c = re[i];
    if (c == '\\' && i + 1 < n) {
      char e = re[i + 1];
      const char *rep = NULL;
      if (e == 's') rep = in_class ? WHITE_SPACE : "[" WHITE_SPACE "]";
      else if (e == 'S' && !in_class) rep = "[^" WHITE_SPACE "]";
      else if (e == 'S') give_up = true; /* \S inside a class: not rewritten */
      if (rep) {
        size_t l = strlen(rep);
        memcpy(out + o, rep, l);
        o += l;
        changed = true;
      } else {
        out[o++] = c;
        out[o++] = e;
      }
      i += 2;
    } else if (!in_class && c == '[') {
      in_class = true;
      out[o++] = re[i++];
      if (re[i] == '^') out[o++] = re[i++];
      if (re[i] == ']') out[o++] = re[i++]; /* a leading ] is literal */
    } else if (in_class && c == '[' && re[i + 1] == ':') { /* POSIX class [:name:] */
      const char *end = strstr(re + i + 2, ":]");
      if (!end) {
        give_up = true;
        break;
      }
      size_t l = (size_t)(end + 2 - (re + i));
      memcpy(out + o, re + i, l);
      o += l;
      i += l;
    } else {
      if (in_class && c == ']') in_class = false;
      out[o++] = re[i++];
    }
  }
  if (give_up || !changed) {
    free(out);
    return NULL;
  }
  out[o] = 0;
  return out;
}

static int tok_build(const build_src *src, ttq_tokenizer **out, ttq_diag *d) {
  const char *o = src->origin;
  int n = src->n_vocab;
  if (n <= 0 || n > TOK_MAX_VOCAB)
    return ttq__fail(d, TTQ_EINVAL, "%s: %s: vocabulary size %d out of range", o, src->vocab_what, n);
  if (src->n_merges < 0)
    return ttq__fail(d, TTQ_EINVAL, "%s: %s: negative count %d", o, src->merges_what, src->n_merges);
  if (src->unk_id >= n)
    return ttq__fail(d, TTQ_EINVAL, "%s: unk id %d out of range", o, (int)src->unk_id);
  ttq_tokenizer *t = calloc(1, sizeof *t);
  if (!t) return ttq__fail(d, TTQ_ENOMEM, "%s: out of memory", o);
  int rc = TTQ_ENOMEM;
  t->n_vocab = n;
  t->unk_id = src->unk_id < 0 ? -1 : src->unk_id;
  t->fuse_unk = src->fuse_unk;
  t->ignore_merges = src->ignore_merges;

  /* Token strings and their decoded bytes. */
  size_t total = 0;
  for (int i = 0; i < n; i++) {
    const char *s = src->tokens[i];
    if (!s) {
      rc = ttq__fail(d, TTQ_EINVAL, "%s: %s[%d]: missing token", o, src->vocab_what, i);
      goto fail;
    }
    size_t l = strlen(s);
    if (l > TOK_MAX_LEN) {
      rc = ttq__fail(d, TTQ_ERANGE, "%s: %s[%d]: token of %zu bytes is too long", o, src->vocab_what, i, l);
      goto fail;
    }
    total += l + 1;
  }
  t->strs = malloc(total);
  t->raw = malloc(total);
  t->str_off = malloc(((size_t)n + 1) * sizeof *t->str_off);
  t->raw_off = malloc(((size_t)n + 1) * sizeof *t->raw_off);
  t->kind = calloc((size_t)n, 1);
  size_t vsize = table_size((size_t)n);
  t->vocab_tab = malloc(vsize * sizeof *t->vocab_tab);
  if (!t->strs || !t->raw || !t->str_off || !t->raw_off || !t->kind || !t->vocab_tab) {
    rc = ttq__fail(d, TTQ_ENOMEM, "%s: out of memory for %d tokens", o, n);
    goto fail;
  }
  t->vocab_mask = vsize - 1;
  memset(t->vocab_tab, 0xff, vsize * sizeof *t->vocab_tab);
  size_t so = 0, ro = 0;
  int n_added = 0;
  for (int i = 0; i < n; i++) {
    const char *s = src->tokens[i];
    size_t l = strlen(s);
    uint8_t k = src->kind ? src->kind[i] : KIND_NORMAL;
    t->kind[i] = k;
    t->str_off[i] = so;
    memcpy(t->strs + so, s, l + 1);
    so += l + 1;
    t->raw_off[i] = ro;
    if (k == KIND_NORMAL) {
      ro += token_raw(s, l, t->raw + ro);
    } else {
      memcpy(t->raw + ro, s, l); /* added tokens decode to their literal text */
      ro += l;
      if (l > 0) n_added++; /* an empty one can never match text */
      if (l > 0 && k == KIND_ADDED) t->has_always = true;
    }
    /* Insert into the string table; on a duplicate string the lowest id keeps it. */
    size_t h = (size_t)hash_bytes(s, l) & t->vocab_mask;
    for (;;) {
      int32_t id = t->vocab_tab[h];
      if (id < 0) {
        t->vocab_tab[h] = i;
        break;
      }
      if (tok_len(t, id) == l && memcmp(tok_str(t, id), s, l) == 0) break;
      h = (h + 1) & t->vocab_mask;
    }
  }
  t->str_off[n] = so;
  t->raw_off[n] = ro;

  for (int b = 0; b < 256; b++) {
    char c[2];
    int l = byte_char((uint8_t)b, c);
    t->byte_id[b] = vocab_lookup(t, c, (size_t)l);
  }

  /* Added tokens by first byte, longest first (leftmost-longest matching). */
  if (n_added) {
    t->added = malloc((size_t)n_added * sizeof *t->added);
    if (!t->added) {
      rc = ttq__fail(d, TTQ_ENOMEM, "%s: out of memory", o);
      goto fail;
    }
    int j = 0;
    for (int i = 0; i < n; i++)
      if (t->kind[i] != KIND_NORMAL && tok_len(t, i) > 0) t->added[j++] = i;
    qsort_r(t->added, (size_t)n_added, sizeof *t->added, cmp_added, t);
    int k = 0;
    for (int b = 0; b <= 256; b++) {
      while (k < n_added && (uint8_t)tok_str(t, t->added[k])[0] < b) k++;
      t->added_first[b] = (uint32_t)(b == 256 ? n_added : k);
    }
  }

  /* Merges: (left id, right id) -> (rank, id of the concatenation). A pair listed twice keeps
   * the later rank, as HF's HashMap collect does. */
  size_t msize = table_size((size_t)src->n_merges);
  t->merge_tab = malloc(msize * sizeof *t->merge_tab);
  if (!t->merge_tab) {
    rc = ttq__fail(d, TTQ_ENOMEM, "%s: out of memory for %d merges", o, src->n_merges);
    goto fail;
  }
  t->merge_mask = msize - 1;
  for (size_t i = 0; i < msize; i++) t->merge_tab[i].key = MERGE_EMPTY;
  char *cat = NULL;
  size_t cat_cap = 0;
  for (int i = 0; i < src->n_merges; i++) {
    const span *l = &src->merges[2 * i], *r = &src->merges[2 * i + 1];
    int32_t li = vocab_lookup(t, l->s, l->n), ri = vocab_lookup(t, r->s, r->n);
    const span *bad = li < 0 ? l : ri < 0 ? r : NULL;
    if (bad) {
      free(cat);
      rc = ttq__fail(d, TTQ_EFORMAT, "%s: %s[%d]: token '%.*s' not in vocab", o, src->merges_what, i,
                     SHOW(bad->s, bad->n));
      goto fail;
    }
    size_t cl = l->n + r->n;
    if (cl > cat_cap) {
      char *p = realloc(cat, cl);
      if (!p) {
        free(cat);
        rc = ttq__fail(d, TTQ_ENOMEM, "%s: out of memory", o);
        goto fail;
      }
      cat = p;
      cat_cap = cl;
    }
    memcpy(cat, l->s, l->n);
    memcpy(cat + l->n, r->s, r->n);
    int32_t mi = vocab_lookup(t, cat, cl);
    if (mi < 0) {
      rc = ttq__fail(d, TTQ_EFORMAT, "%s: %s[%d]: merged token '%.*s' not in vocab", o, src->merges_what, i,
                     SHOW(cat, cl));
      free(cat);
      goto fail;
    }
    uint64_t key = ((uint64_t)(uint32_t)li << 32) | (uint32_t)ri;
    size_t h = (size_t)hash_u64(key) & t->merge_mask;
    while (t->merge_tab[h].key != MERGE_EMPTY && t->merge_tab[h].key != key) h = (h + 1) & t->merge_mask;
    t->merge_tab[h].key = key;
    t->merge_tab[h].rank = (uint32_t)i;
    t->merge_tab[h].id = mi;
  }
  free(cat);

  /* The pre-tokenizer regex. */
  if (src->regex) {
    int err;
    PCRE2_SIZE eoff;
    uint32_t opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | (src->regex_literal ? PCRE2_LITERAL : PCRE2_UCP);
    char *ws = src->regex_literal ? NULL : onig_white_space(src->regex);
    t->re = pcre2_compile((PCRE2_SPTR)(ws ? ws : src->regex), PCRE2_ZERO_TERMINATED, opts, &err, &eoff, NULL);
    if (!t->re && ws) { /* report errors against the pattern as written */
      t->re = pcre2_compile((PCRE2_SPTR)src->regex, PCRE2_ZERO_TERMINATED, opts, &err, &eoff, NULL);
      if (t->re) {
        pcre2_code_free(t->re);
        t->re = NULL;
        err = PCRE2_ERROR_INTERNAL;
      }
    }
    free(ws);
    if (!t->re) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      rc = ttq__fail(d, TTQ_EFORMAT, "%s: %s: regex '%.*s' does not compile at offset %zu: %s", o,
                     src->regex_what, SHOW(src->regex, strlen(src->regex)), (size_t)eoff, (char *)msg);
      goto fail;
    }
    t->jit = pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE) == 0;
  }
  *out = t;
  return 0;
fail:
  ttq_tokenizer_free(t);
  return rc;
}

int ttq_tokenizer_build(const ttq_tok_spec *spec, ttq_tokenizer **out, ttq_diag *d) {
  if (!out) return ttq__fail(d, TTQ_EINVAL, "tokenizer spec: out is NULL");
  *out = NULL;
  if (!spec || !spec->tokens || spec->n_vocab <= 0)
    return ttq__fail(d, TTQ_EINVAL, "tokenizer spec: no tokens");
  if (spec->n_merges < 0 || (spec->n_merges > 0 && !spec->merges))
    return ttq__fail(d, TTQ_EINVAL, "tokenizer spec: merges: %d given without strings", spec->n_merges);
  if (!spec->pretok_regex) return ttq__fail(d, TTQ_EINVAL, "tokenizer spec: pretok_regex is NULL");
  if (spec->n_vocab > TOK_MAX_VOCAB)
    return ttq__fail(d, TTQ_ERANGE, "tokenizer spec: tokens: vocabulary size %d too large", spec->n_vocab);
  int rc = TTQ_ENOMEM;
  uint8_t *kind = malloc((size_t)spec->n_vocab);
  span *m = malloc(((size_t)spec->n_merges * 2 + 1) * sizeof *m);
  if (!kind || !m) {
    rc = ttq__fail(d, TTQ_ENOMEM, "tokenizer spec: out of memory");
    goto done;
  }
  for (int i = 0; i < spec->n_vocab; i++)
    kind[i] = spec->is_special && spec->is_special[i] ? KIND_SPECIAL : KIND_NORMAL;
  for (int i = 0; i < spec->n_merges; i++) {
    /* "left right": split at the first space after the first byte (a byte-level token never
     * holds a space; a leading one belongs to the left token, as llama.cpp reads it). */
    const char *s = spec->merges[i];
    const char *sp = s && s[0] ? strchr(s + 1, ' ') : NULL;
    if (!sp || !sp[1]) {
      rc = ttq__fail(d, TTQ_EFORMAT, "tokenizer spec: merges[%d]: '%.*s' is not \"left right\"", i,
                     SHOW(s ? s : "(null)", s ? strlen(s) : 6));
      goto done;
    }
    m[2 * i] = (span){s, (size_t)(sp - s)};
    m[2 * i + 1] = (span){sp + 1, strlen(sp + 1)};
  }
  build_src src = {.origin = "tokenizer spec",
                   .vocab_what = "tokens",
                   .merges_what = "merges",
                   .regex_what = "pretok_regex",
                   .n_vocab = spec->n_vocab,
                   .tokens = spec->tokens,
                   .kind = kind,
                   .n_merges = spec->n_merges,
                   .merges = m,
                   .regex = spec->pretok_regex,
                   .unk_id = -1};
  rc = tok_build(&src, out, d);
done:
  free(kind);
  free(m);
  return rc;
}

/* ---------------------------------------------------------------- tokenizer.json */

/* Reads the pre_tokenizer object into (regex, literal). Supported shapes, the byte-level BPE
 * ones: Sequence[Split(Isolated), ByteLevel(use_regex=false)], Sequence[ByteLevel] and
 * ByteLevel alone (use_regex true: the GPT-2 regex; false: no split). ByteLevel must not add a
 * prefix space. */
static int parse_bytelevel(const char *path, const char *what, json_t *bl, bool *use_regex, ttq_diag *d) {
  json_t *aps = json_object_get(bl, "add_prefix_space"), *ur = json_object_get(bl, "use_regex");
  if (!json_is_false(aps))
    return ttq__fail(d, TTQ_EUNSUPPORTED, "%s: %s.add_prefix_space: must be false (absent means true)", path,
                     what);
  if (ur && !json_is_boolean(ur))
    return ttq__fail(d, TTQ_EFORMAT, "%s: %s.use_regex: not a boolean", path, what);
  *use_regex = !ur || json_is_true(ur);
  return 0;
}

static int parse_split(const char *path, const char *what, json_t *sp, const char **regex, bool *literal,
                       ttq_diag *d) {
  json_t *pat = json_object_get(sp, "pattern"), *beh = json_object_get(sp, "behavior"),
         *inv = json_object_get(sp, "invert");
  json_t *re = json_object_get(pat, "Regex"), *str = json_object_get(pat, "String");
  if (json_is_string(re)) {
    *regex = json_string_value(re);
    *literal = false;
  } else if (json_is_string(str)) {
    *regex = json_string_value(str);
    *literal = true;
  } else {
    return ttq__fail(d, TTQ_EFORMAT, "%s: %s.pattern: no \"Regex\" or \"String\" string", path, what);
  }
  if (!json_is_string(beh) || strcmp(json_string_value(beh), "Isolated") != 0)
    return ttq__fail(d, TTQ_EUNSUPPORTED, "%s: %s.behavior: '%s' not supported (only \"Isolated\")", path, what,
                     json_is_string(beh) ? json_string_value(beh) : "(missing)");
  if (inv && !json_is_false(inv))
    return ttq__fail(d, TTQ_EUNSUPPORTED, "%s: %s.invert: must be false", path, what);
  return 0;
}

static const char *type_of(json_t *o) {
  json_t *ty = json_object_get(o, "type");
  return json_is_string(ty) ? json_string_value(ty) : NULL;
}

static int parse_pretok(const char *path, json_t *pt, const char **regex, bool *literal, ttq_diag *d) {
  *regex = NULL;
  *literal = false;
  if (!pt || json_is_null(pt))
    return ttq__fail(d, TTQ_EUNSUPPORTED, "%s: pre_tokenizer: null (byte-level BPE needs ByteLevel)", path);
  const char *ty = type_of(pt);
  if (!json_is_object(pt) || !ty) return ttq__fail(d, TTQ_EFORMAT, "%s: pre_tokenizer: no \"type\"", path);
  bool use_regex = false; /* set by parse_bytelevel on success; -O3 cannot see that */
  if (strcmp(ty, "ByteLevel") == 0) {
    int rc = parse_bytelevel(path, "pre_tokenizer", pt, &use_regex, d);
    if (rc) return rc;
    *regex = use_regex ? PRETOK_GPT2 : NULL;
    return 0;
  }
  if (strcmp(ty, "Sequence") != 0)
    return ttq__fail(d, TTQ_EUNSUPPORTED, "%s: pre_tokenizer.type: '%s' not supported", path, ty);
  json_t *seq = json_object_get(pt, "pretokenizers");
  if (!json_is_array(seq))
    return ttq__fail(d, TTQ_EFORMAT, "%s: pre_tokenizer.pretokenizers: not an array", path);
  size_t n = json_array_size(seq);
  if (n != 1 && n != 2)
    return ttq__fail(d, TTQ_EUNSUPPORTED, "%s: pre_tokenizer.pretokenizers: %zu steps (supported: [Split,] ByteLevel)",
                     path, n);
  char what[64];
  for (size_t i = 0; i < n; i++) {
    json_t *step = json_array_get(seq, i);
    const char *st = json_is_object(step) ? type_of(step) : NULL;
    snprintf(what, sizeof what, "pre_tokenizer.pretokenizers[%zu]", i);
    if (!st) return ttq__fail(d, TTQ_EFORMAT, "%s: %s: no \"type\"", path, what);
    bool last = i + 1 == n;
    if (!last && strcmp(st, "Split") == 0) {
      int rc = parse_split(path, what, step, regex, literal, d);
      if (rc) return rc;
    } else if (last && strcmp(st, "ByteLevel") == 0) {
      int rc = parse_bytelevel(path, what, step, &use_regex, d);
      if (rc) return rc;
      if (use_regex && n == 2)
        return ttq__fail(d, TTQ_EUNSUPPORTED, "%s: %s.use_regex: true after a Split not supported", path, what);
      if (use_regex) *regex = PRETOK_GPT2;
    } else {
      return ttq__fail(d, TTQ_EUNSUPPORTED, "%s: %s.type: '%s' not supported here (supported: [Split,] ByteLevel)",
                       path, what, st);
    }
  }
  return 0;
}

/* A model option that must be null/absent (or the given harmless value). */
static bool null_or_empty_string(json_t *v) {
  return !v || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0);
}

int ttq_tokenizer_from_json(const char *path, ttq_tokenizer **out, ttq_diag *d) {
  if (!out) return ttq__fail(d, TTQ_EINVAL, "tokenizer: out is NULL");
  *out = NULL;
  if (!path) return ttq__fail(d, TTQ_EINVAL, "tokenizer: path is NULL");
  ttq_mapfile mf;
  int rc = ttq__map_file(path, &mf, d);
  if (rc) return rc;
  json_error_t je;
  json_t *root = json_loadb(mf.data ? (const char *)mf.data : "", mf.size, JSON_REJECT_DUPLICATES, &je);
  ttq__unmap_file(&mf);
  if (!root)
    return ttq__fail(d, TTQ_EFORMAT, "%s: invalid JSON at line %d column %d: %s", path, je.line, je.column, je.text);

  const char **tokens = NULL;
  uint8_t *kind = NULL;
  span *merges = NULL;
  rc = TTQ_EFORMAT;
  if (!json_is_object(root)) {
    rc = ttq__fail(d, TTQ_EFORMAT, "%s: top level is not an object", path);
    goto done;
  }
  json_t *model = json_object_get(root, "model");
  if (!json_is_object(model)) {
    rc = ttq__fail(d, TTQ_EFORMAT, "%s: model: missing or not an object", path);
    goto done;
  }
  const char *mty = type_of(model);
  if (json_object_get(model, "type") && (!mty || strcmp(mty, "BPE") != 0)) {
    rc = ttq__fail(d, TTQ_EUNSUPPORTED, "%s: model.type: '%s' not supported (only \"BPE\")", path,
                   mty ? mty : "(not a string)");
    goto done;
  }
  json_t *vocab = json_object_get(model, "vocab"), *jm = json_object_get(model, "merges");
  if (!json_is_object(vocab)) {
    rc = ttq__fail(d, TTQ_EFORMAT, "%s: model.vocab: missing or not an object", path);
    goto done;
  }
  if (!json_is_array(jm)) {
    rc = ttq__fail(d, TTQ_EFORMAT, "%s: model.merges: missing or not an array", path);
    goto done;
  }
  json_t *v;
  v = json_object_get(model, "dropout");
  if (v && !json_is_null(v) && !(json_is_number(v) && json_number_value(v) == 0)) {
    rc = ttq__fail(d, TTQ_EUNSUPPORTED, "%s: model.dropout: must be null", path);
    goto done;
  }
  if (!null_or_empty_string(json_object_get(model, "continuing_subword_prefix")) ||
      !null_or_empty_string(json_object_get(model, "end_of_word_suffix"))) {
    rc = ttq__fail(d, TTQ_EUNSUPPORTED, "%s: model.continuing_subword_prefix/end_of_word_suffix: must be null", path);
    goto done;
  }
  if ((v = json_object_get(model, "byte_fallback")) && !json_is_false(v)) {
    rc = ttq__fail(d, TTQ_EUNSUPPORTED, "%s: model.byte_fallback: must be false", path);
    goto done;
  }
  bool ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
  bool fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
  json_t *norm = json_object_get(root, "normalizer");
  if (norm && !json_is_null(norm)) {
    rc = ttq__fail(d, TTQ_EUNSUPPORTED, "%s: normalizer: '%s' not supported (only null)", path,
                   type_of(norm) ? type_of(norm) : "?");
    goto done;
  }
  const char *regex;
  bool literal;
  rc = parse_pretok(path, json_object_get(root, "pre_tokenizer"), &regex, &literal, d);
  if (rc) goto done;
  rc = TTQ_EFORMAT;

  /* Ids: the vocab and the added tokens must cover [0, n) exactly once. */
  json_t *added = json_object_get(root, "added_tokens");
  if (added && !json_is_array(added) && !json_is_null(added)) {
    rc = ttq__fail(d, TTQ_EFORMAT, "%s: added_tokens: not an array", path);
    goto done;
  }
  size_t n_added = json_is_array(added) ? json_array_size(added) : 0;
  size_t n_keys = json_object_size(vocab);
  if (n_keys + n_added == 0 || n_keys + n_added > TOK_MAX_VOCAB) {
    rc = ttq__fail(d, TTQ_EFORMAT, "%s: model.vocab: %zu entries", path, n_keys);
    goto done;
  }
  long long limit = (long long)(n_keys + n_added), n = 0;
  const char *key;
  json_object_foreach(vocab, key, v) {
    if (!json_is_integer(v)) {
      rc = ttq__fail(d, TTQ_EFORMAT, "%s: model.vocab['%.*s']: id is not an integer", path, SHOW(key, strlen(key)));
      goto done;
    }
    if (json_integer_value(v) < 0 || json_integer_value(v) >= limit) {
      rc = ttq__fail(d, TTQ_EFORMAT, "%s: model.vocab['%.*s']: id %lld out of range [0, %lld)", path,
                     SHOW(key, strlen(key)), (long long)json_integer_value(v), limit);
      goto done;
    }
    if (json_integer_value(v) >= n) n = json_integer_value(v) + 1;
  }
  for (size_t i = 0; i < n_added; i++) {
    json_t *a = json_array_get(added, i), *id = json_object_get(a, "id"), *c = json_object_get(a, "content");
    if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= limit || !json_is_string(c) ||
        json_string_length(c) == 0) {
      rc = ttq__fail(d, TTQ_EFORMAT, "%s: added_tokens[%zu]: needs an id in [0, %lld) and a non-empty content", path,
                     i, limit);
      goto done;
    }
    if (json_integer_value(id) >= n) n = json_integer_value(id) + 1;
  }
  tokens = calloc((size_t)n, sizeof *tokens);
  kind = calloc((size_t)n, 1);
  merges = malloc((json_array_size(jm) * 2 + 1) * sizeof *merges);
  if (!tokens || !kind || !merges) {
    rc = ttq__fail(d, TTQ_ENOMEM, "%s: out of memory", path);
    goto done;
  }
  json_object_foreach(vocab, key, v) {
    long long id = json_integer_value(v);
    if (tokens[id]) {
      rc = ttq__fail(d, TTQ_EFORMAT, "%s: model.vocab['%.*s']: id %lld already used by '%.*s'", path,
                     SHOW(key, strlen(key)), id, SHOW(tokens[id], strlen(tokens[id])));
      goto done;
    }
    tokens[id] = key;
  }
  for (size_t i = 0; i < n_added; i++) {
    json_t *a = json_array_get(added, i);
    long long id = json_integer_value(json_object_get(a, "id"));
    const char *c = json_string_value(json_object_get(a, "content"));
    static const char *const opts[] = {"single_word", "lstrip", "rstrip"};
    for (int k = 0; k < 3; k++)
      if (json_is_true(json_object_get(a, opts[k]))) {
        rc = ttq__fail(d, TTQ_EUNSUPPORTED, "%s: added_tokens[%zu].%s: true not supported ('%.*s')", path, i,
                       opts[k], SHOW(c, strlen(c)));
        goto done;
      }
    json_t *vid = json_object_get(vocab, c);
    if ((tokens[id] && strcmp(tokens[id], c) != 0) || (vid && json_integer_value(vid) != id) || kind[id]) {
      rc = ttq__fail(d, TTQ_EFORMAT,
                     "%s: added_tokens[%zu]: '%.*s' with id %lld conflicts with model.vocab or another added token",
                     path, i, SHOW(c, strlen(c)), id);
      goto done;
    }
    tokens[id] = c;
    kind[id] = json_is_true(json_object_get(a, "special")) ? KIND_SPECIAL : KIND_ADDED;
  }
  for (long long i = 0; i < n; i++)
    if (!tokens[i]) {
      rc = ttq__fail(d, TTQ_EFORMAT, "%s: model.vocab: no token has id %lld (ids must be dense)", path, i);
      goto done;
    }
  int32_t unk_id = -1;
  json_t *unk = json_object_get(model, "unk_token");
  if (unk && !json_is_null(unk)) {
    json_t *uid = json_is_string(unk) ? json_object_get(vocab, json_string_value(unk)) : NULL;
    if (!uid) {
      rc = ttq__fail(d, TTQ_EFORMAT, "%s: model.unk_token: not a token of model.vocab", path);
      goto done;
    }
    unk_id = (int32_t)json_integer_value(uid);
  }

  size_t nm = json_array_size(jm);
  for (size_t i = 0; i < nm; i++) {
    json_t *e = json_array_get(jm, i);
    if (json_is_string(e)) { /* old format: "left right" */
      const char *s = json_string_value(e);
      const char *sp = s[0] ? strchr(s + 1, ' ') : NULL;
      if (!sp || !sp[1]) {
        rc = ttq__fail(d, TTQ_EFORMAT, "%s: model.merges[%zu]: '%.*s' is not \"left right\"", path, i,
                       SHOW(s, strlen(s)));
        goto done;
      }
      merges[2 * i] = (span){s, (size_t)(sp - s)};
      merges[2 * i + 1] = (span){sp + 1, strlen(sp + 1)};
    } else if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
               json_is_string(json_array_get(e, 1))) { /* new format: ["left", "right"] */
      json_t *l = json_array_get(e, 0), *r = json_array_get(e, 1);
      merges[2 * i] = (span){json_string_value(l), json_string_length(l)};
      merges[2 * i + 1] = (span){json_string_value(r), json_string_length(r)};
    } else {
      rc = ttq__fail(d, TTQ_EFORMAT, "%s: model.merges[%zu]: neither \"a b\" nor [\"a\", \"b\"]", path, i);
      goto done;
    }
  }
  if (nm > INT_MAX) {
    rc = ttq__fail(d, TTQ_ERANGE, "%s: model.merges: %zu entries", path, nm);
    goto done;
  }
  char regex_what[] = "pre_tokenizer.pretokenizers[0].pattern";
  build_src src = {.origin = path,
                   .vocab_what = "model.vocab",
                   .merges_what = "model.merges",
                   .regex_what = regex_what,
                   .n_vocab = (int)n,
                   .tokens = tokens,
                   .kind = kind,
                   .n_merges = (int)nm,
                   .merges = merges,
                   .regex = regex,
                   .regex_literal = literal,
                   .ignore_merges = ignore_merges,
                   .fuse_unk = fuse_unk,
                   .unk_id = unk_id};
  rc = tok_build(&src, out, d);
done:
  free(tokens);
  free(kind);
  free(merges);
  json_decref(root);
  return rc;
}

int ttq_tokenizer_n_vocab(const ttq_tokenizer *t) { return t ? t->n_vocab : 0; }

int ttq_tokenizer_find(const ttq_tokenizer *t, const char *token) {
  if (!t || !token) return -1;
  return vocab_lookup(t, token, strlen(token));
}

/* ---------------------------------------------------------------- encoding */

typedef struct sym {
  int32_t id; /* -1: merged into its left neighbour */
  int32_t prev, next;
} sym;

typedef struct cand {
  uint32_t rank;
  int32_t pos, id;
} cand;

/* Per-call state of ttq_tokenize. */
typedef struct work {
  const ttq_tokenizer *t;
  int32_t *ids;
  size_t n_ids, cap_ids;
  sym *syms;
  cand *heap;
  size_t cap_syms; /* syms has cap_syms entries, heap 3 * cap_syms */
  char *buf;
  size_t cap_buf;
  pcre2_match_data *md;
  pcre2_match_context *mctx;
  pcre2_jit_stack *js;
  ttq_diag *d;
} work;

static int push_id(work *w, int32_t id) {
  if (w->n_ids == w->cap_ids) {
    size_t nc = w->cap_ids ? w->cap_ids * 2 : 256;
    int32_t *p = nc > SIZE_MAX / sizeof *p ? NULL : realloc(w->ids, nc * sizeof *p);
    if (!p) return ttq__fail(w->d, TTQ_ENOMEM, "tokenize: out of memory for %zu ids", nc);
    w->ids = p;
    w->cap_ids = nc;
  }
  w->ids[w->n_ids++] = id;
  return 0;
}

static inline bool cand_less(const cand *a, const cand *b) {
  return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(cand *h, size_t *n, cand c) {
  size_t i = (*n)++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!cand_less(&c, &h[p])) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = c;
}

static cand heap_pop(cand *h, size_t *n) {
  cand top = h[0], last = h[--(*n)];
  size_t i = 0, m = *n;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= m) break;
    if (c + 1 < m && cand_less(&h[c + 1], &h[c])) c++;
    if (!cand_less(&h[c], &last)) break;
    h[i] = h[c];
    i = c;
  }
  if (m) h[i] = last;
  return top;
}

/* Candidate merge of symbols a and its next b, pushed if the pair has a rank. */
static void try_pair(const ttq_tokenizer *t, const sym *s, int32_t a, cand *h, size_t *nh) {
  int32_t b = s[a].next;
  if (b < 0) return;
  const merge_slot *m = merge_lookup(t, s[a].id, s[b].id);
  if (m) heap_push(h, nh, (cand){m->rank, a, m->id});
}

/* BPE of one piece (p, n bytes, n > 0): appends its ids. */
static int bpe_piece(work *w, const uint8_t *p, size_t n) {
  const ttq_tokenizer *t = w->t;
  if (t->ignore_merges) { /* HF: a piece that is a whole token is that token */
    if (n > (SIZE_MAX - 1) / 2) return ttq__fail(w->d, TTQ_ERANGE, "tokenize: piece too long");
    if (2 * n > w->cap_buf) {
      char *b = realloc(w->buf, 2 * n);
      if (!b) return ttq__fail(w->d, TTQ_ENOMEM, "tokenize: out of memory");
      w->buf = b;
      w->cap_buf = 2 * n;
    }
    size_t l = 0;
    for (size_t i = 0; i < n; i++) l += (size_t)byte_char(p[i], w->buf + l);
    int32_t id = vocab_lookup(t, w->buf, l);
    if (id >= 0) return push_id(w, id);
  }
  if (n == 1 && t->byte_id[p[0]] >= 0) return push_id(w, t->byte_id[p[0]]);
  if (n > INT32_MAX / 4) return ttq__fail(w->d, TTQ_ERANGE, "tokenize: piece of %zu bytes too long", n);
  if (n > w->cap_syms) {
    size_t nc = n < 64 ? 64 : n;
    sym *s = malloc(nc * sizeof *s);
    cand *h = malloc(3 * nc * sizeof *h);
    if (!s || !h) {
      free(s);
      free(h);
      return ttq__fail(w->d, TTQ_ENOMEM, "tokenize: out of memory for a piece of %zu bytes", n);
    }
    free(w->syms);
    free(w->heap);
    w->syms = s;
    w->heap = h;
    w->cap_syms = nc;
  }
  sym *s = w->syms;
  int32_t ns = 0;
  bool last_unk = false;
  for (size_t i = 0; i < n; i++) {
    int32_t id = t->byte_id[p[i]];
    if (id < 0) { /* character not in vocab: unk (fused if asked) or dropped, as in HF */
      if (t->unk_id < 0) continue;
      if (last_unk && t->fuse_unk) continue;
      id = t->unk_id;
      last_unk = true;
    } else {
      last_unk = false;
    }
    s[ns] = (sym){id, ns - 1, -1};
    if (ns > 0) s[ns - 1].next = ns;
    ns++;
  }
  if (ns == 0) return 0;
  cand *h = w->heap;
  size_t nh = 0;
  for (int32_t i = 0; i + 1 < ns; i++) try_pair(t, s, i, h, &nh);
  while (nh) {
    cand c = heap_pop(h, &nh);
    sym *a = &s[c.pos];
    if (a->id < 0 || a->next < 0) continue;
    const merge_slot *m = merge_lookup(t, a->id, s[a->next].id);
    if (!m || m->id != c.id || m->rank != c.rank) continue; /* stale candidate */
    int32_t b = a->next;
    a->id = c.id;
    a->next = s[b].next;
    s[b].id = -1;
    if (a->next >= 0) s[a->next].prev = c.pos;
    /* at most 2 pushes per merge and n - 1 merges: the heap never exceeds 3n */
    if (a->prev >= 0) try_pair(t, s, a->prev, h, &nh);
    try_pair(t, s, c.pos, h, &nh);
  }
  for (int32_t i = 0; i >= 0; i = s[i].next) {
    int rc = push_id(w, s[i].id);
    if (rc) return rc;
  }
  return 0;
}

/* One pcre2_match; falls back from JIT to the interpreter if the JIT runs out of stack. */
static int re_match(work *w, const uint8_t *s, size_t n, size_t start) {
  int rc = pcre2_match(w->t->re, s, n, start, 0, w->md, w->mctx);
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT) rc = pcre2_match(w->t->re, s, n, start, PCRE2_NO_JIT, w->md, w->mctx);
  return rc;
}

/* Pre-tokenize one segment (no added tokens inside) and BPE its pieces. Matches and the
 * text between them are pieces (HF "Isolated"); empty matches give no piece and, like the
 * Rust `onig` find_iter HF uses, an empty match right at the end of the previous match is
 * skipped by one character. */
static int encode_segment(work *w, const uint8_t *s, size_t n) {
  if (n == 0) return 0;
  if (!w->t->re) return bpe_piece(w, s, n);
  size_t prev = 0, search = 0, last_end = SIZE_MAX;
  int rc;
  while (search <= n) {
    int mr = re_match(w, s, n, search);
    if (mr == PCRE2_ERROR_NOMATCH) break;
    if (mr < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(mr, msg, sizeof msg);
      return ttq__fail(w->d, TTQ_ERANGE, "tokenize: regex match failed at byte %zu: %s", search, (char *)msg);
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
    size_t a = ov[0], b = ov[1];
    if (b < a || b > n) return ttq__fail(w->d, TTQ_EFORMAT, "tokenize: regex gave a reversed match (\\K?)");
    if (a == b && last_end == b) {
      search++;
      while (search < n && (s[search] & 0xc0) == 0x80) search++;
      continue;
    }
    if (a > prev && (rc = bpe_piece(w, s + prev, a - prev))) return rc;
    if (b > a && (rc = bpe_piece(w, s + a, b - a))) return rc;
    prev = b;
    search = b;
    last_end = b;
  }
  if (prev < n && (rc = bpe_piece(w, s + prev, n - prev))) return rc;
  return 0;
}

/* Leftmost-longest added token at text[i..len) with an enabled kind, or -1. */
static int32_t added_at(const ttq_tokenizer *t, const uint8_t *text, size_t i, size_t len, bool parse_special) {
  uint8_t b = text[i];
  for (uint32_t k = t->added_first[b]; k < t->added_first[b + 1]; k++) {
    int32_t id = t->added[k];
    if (t->kind[id] == KIND_SPECIAL && !parse_special) continue;
    size_t l = tok_len(t, id);
    if (l <= len - i && memcmp(text + i, tok_str(t, id), l) == 0) return id;
  }
  return -1;
}

int ttq_tokenize(const ttq_tokenizer *t, const char *text, size_t len, bool parse_special, int32_t **ids,
                 size_t *n_ids, ttq_diag *d) {
  if (!ids || !n_ids) return ttq__fail(d, TTQ_EINVAL, "tokenize: ids/n_ids is NULL");
  *ids = NULL;
  *n_ids = 0;
  if (!t || (!text && len)) return ttq__fail(d, TTQ_EINVAL, "tokenize: tokenizer or text is NULL");
  if (!text) text = "";
  work w = {.t = t, .d = d};
  int rc = 0;
  if (t->re) {
    w.md = pcre2_match_data_create_from_pattern(t->re, NULL);
    if (t->jit) {
      w.mctx = pcre2_match_context_create(NULL);
      w.js = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, NULL);
      if (w.mctx && w.js) pcre2_jit_stack_assign(w.mctx, NULL, w.js);
    }
    if (!w.md || (t->jit && (!w.mctx || !w.js))) {
      rc = ttq__fail(d, TTQ_ENOMEM, "tokenize: out of memory for regex match data");
      goto done;
    }
  }
  const uint8_t *s = (const uint8_t *)text;
  size_t seg = 0;
  if (t->added && (parse_special || t->has_always)) {
    for (size_t i = 0; i < len;) {
      int32_t id = t->added_first[s[i]] != t->added_first[s[i] + 1] ? added_at(t, s, i, len, parse_special) : -1;
      if (id < 0) {
        i++;
        continue;
      }
      if ((rc = encode_segment(&w, s + seg, i - seg)) || (rc = push_id(&w, id))) goto done;
      i += tok_len(t, id);
      seg = i;
    }
  }
  rc = encode_segment(&w, s + seg, len - seg);
done:
  free(w.syms);
  free(w.heap);
  free(w.buf);
  if (w.md) pcre2_match_data_free(w.md);
  if (w.mctx) pcre2_match_context_free(w.mctx);
  if (w.js) pcre2_jit_stack_free(w.js);
  if (rc) {
    free(w.ids);
    return rc;
  }
  if (!w.ids) { /* empty result: still hand back a valid allocation */
    w.ids = malloc(sizeof *w.ids);
    if (!w.ids) return ttq__fail(d, TTQ_ENOMEM, "tokenize: out of memory");
  }
  *ids = w.ids;
  *n_ids = w.n_ids;
  return 0;
}

/* ---------------------------------------------------------------- decoding */

int ttq_token_bytes(const ttq_tokenizer *t, int32_t id, char *buf, size_t cap) {
  if (!t || id < 0 || id >= t->n_vocab) return TTQ_EINVAL;
  size_t n = t->raw_off[id + 1] - t->raw_off[id];
  if (buf && cap) memcpy(buf, t->raw + t->raw_off[id], n < cap ? n : cap);
  return (int)n;
}

/* Bytes of a UTF-8 character announced by lead byte b (1..4), or 0 if b never starts one. */
static int utf8_need(uint8_t b) {
  if (b < 0x80) return 1;
  if (b >= 0xc2 && b <= 0xdf) return 2;
  if (b >= 0xe0 && b <= 0xef) return 3;
  if (b >= 0xf0 && b <= 0xf4) return 4;
  return 0;
}

/* Whether b may follow pending[0..k) (k >= 1) in a valid character. */
static bool utf8_next_ok(const char *pending, int k, uint8_t b) {
  if ((b & 0xc0) != 0x80) return false;
  if (k == 1) {
    uint8_t lead = (uint8_t)pending[0];
    if (lead == 0xe0) return b >= 0xa0;
    if (lead == 0xed) return b <= 0x9f;
    if (lead == 0xf0) return b >= 0x90;
    if (lead == 0xf4) return b <= 0x8f;
  }
  return true;
}

static const char FFFD[3] = {(char)0xef, (char)0xbf, (char)0xbd};

/* Feeds n bytes through the decoder state (pending, *np): complete characters and U+FFFD
 * for impossible bytes are written at out[*o..], but only while they fit below cap (out may
 * be NULL for a dry run that just counts *o). */
static void detok_feed(char *pending, int *np, const uint8_t *p, size_t n, char *out, size_t cap, size_t *o) {
#define EMIT(src, len)                                                  \
  do {                                                                  \
    if (out && *o + (len) <= cap) memcpy(out + *o, (src), (len));       \
    *o += (len);                                                        \
  } while (0)
  for (size_t i = 0; i < n;) {
    uint8_t b = p[i];
    if (*np == 0) {
      int need = utf8_need(b);
      if (need == 1) EMIT(&p[i], 1);
      else if (need == 0) EMIT(FFFD, 3);
      else pending[(*np)++] = (char)b;
      i++;
      continue;
    }
    if (!utf8_next_ok(pending, *np, b)) { /* the held prefix can never complete */
      EMIT(FFFD, 3);
      *np = 0;
      continue; /* b starts afresh */
    }
    pending[(*np)++] = (char)b;
    i++;
    if (*np == utf8_need((uint8_t)pending[0])) {
      EMIT(pending, (size_t)*np);
      *np = 0;
    }
  }
#undef EMIT
}

void ttq_detok_init(ttq_detok *s, const ttq_tokenizer *t) {
  memset(s, 0, sizeof *s);
  s->tok = t;
}

int ttq_detok_push(ttq_detok *s, int32_t id, char *out, size_t cap) {
  if (!s || !s->tok || !out || cap == 0) return TTQ_EINVAL;
  const ttq_tokenizer *t = s->tok;
  if (id < 0 || id >= t->n_vocab) return TTQ_EINVAL;
  if (s->n_pending < 0 || s->n_pending > 3) return TTQ_EINVAL;
  const uint8_t *p = t->raw + t->raw_off[id];
  size_t n = t->raw_off[id + 1] - t->raw_off[id];
  /* Dry run on a copy of the state: on ERANGE nothing is consumed. */
  char pend[8];
  memcpy(pend, s->pending, sizeof pend);
  int np = s->n_pending;
  size_t need = 0;
  detok_feed(pend, &np, p, n, NULL, 0, &need);
  if (need >= cap || need > INT_MAX) return TTQ_ERANGE;
  size_t o = 0;
  detok_feed(s->pending, &s->n_pending, p, n, out, cap, &o);
  out[o] = 0;
  return (int)o;
}

int ttq_detok_flush(ttq_detok *s, char *out, size_t cap) {
  if (!s || !out || cap == 0) return TTQ_EINVAL;
  if (s->n_pending == 0) {
    out[0] = 0;
    return 0;
  }
  if (cap < 4) return TTQ_ERANGE;
  memcpy(out, FFFD, 3);
  out[3] = 0;
  s->n_pending = 0;
  return 3;
}
