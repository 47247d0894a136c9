/* chat.c -- the chat-template interpreter of chat.h.
 *
 * Three stages, each in its own section below:
 *   scanner    splits the template into text and tags, applying whitespace control
 *              (trim_blocks, lstrip_blocks, `-` and `+` markers) and lexing each tag into
 *              tokens;
 *   parser     builds a tree of statements and expressions for the whole template, refusing
 *              what is outside the subset before anything is rendered;
 *   evaluator  walks the tree over the messages into a bounded output buffer.
 *
 * Invariants: the template is read only within [0, strlen); every allocation of a call lives
 * in one of two arenas (parse tree; strings built while rendering) or in the token vector or
 * the output buffer, all released before returning; recursion is bounded by
 * TTQ_CHAT_MAX_NESTING (blocks) and TTQ_CHAT_MAX_EXPR_DEPTH (expressions); there is no global
 * mutable state. */
#include "chat.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define PARSE_MEM_LIMIT (64u << 20) /* bytes of parse tree and decoded literals */

/* ================================================================ diagnostics */

static int fail_at(ttq_diag *d, int code, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Fills d with "chat template: <what> at offset <off>"; returns code. */
static int fail_at(ttq_diag *d, int code, size_t off, const char *fmt, ...) {
  char what[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  return ttq__fail(d, code, "chat template: %s at offset %zu", what, off);
}

/* ================================================================ arena */

enum { CHUNK_BYTES = 64 * 1024, ALIGN = 16 };

typedef struct chunk {
  struct chunk *prev;
  size_t cap, used;
} chunk;

#define CHUNK_HDR ((sizeof(chunk) + ALIGN - 1) / ALIGN * ALIGN)

/* Bump allocator over a list of chunks; `total` bytes handed out, never more than `limit`. */
typedef struct arena {
  chunk *top;
  size_t total, limit;
  bool over; /* the last failure was the limit, not malloc */
} arena;

typedef struct arena_mark {
  chunk *top;
  size_t used, total;
} arena_mark;

/* n bytes aligned to 16, or NULL (limit reached: a->over set; or malloc failed). */
static void *arena_alloc(arena *a, size_t n) {
  if (n == 0) n = 1;
  if (n > a->limit) {
    a->over = true;
    return NULL;
  }
  n = (n + ALIGN - 1) / ALIGN * ALIGN;
  if (n > a->limit - a->total) {
    a->over = true;
    return NULL;
  }
  chunk *c = a->top;
  if (!c || c->cap - c->used < n) {
    size_t cap = n > CHUNK_BYTES ? n : CHUNK_BYTES;
    c = malloc(CHUNK_HDR + cap);
    if (!c) {
      a->over = false;
      return NULL;
    }
    c->prev = a->top;
    c->cap = cap;
    c->used = 0;
    a->top = c;
  }
  void *p = (char *)c + CHUNK_HDR + c->used;
  c->used += n;
  a->total += n;
  return p;
}

static arena_mark arena_get_mark(const arena *a) {
  arena_mark m = {a->top, a->top ? a->top->used : 0, a->total};
  return m;
}

/* Frees everything allocated after m was taken. */
static void arena_release(arena *a, arena_mark m) {
  while (a->top != m.top) {
    chunk *prev = a->top->prev;
    free(a->top);
    a->top = prev;
  }
  if (a->top) a->top->used = m.used;
  a->total = m.total;
}

static void arena_free(arena *a) {
  arena_mark none = {NULL, 0, 0};
  arena_release(a, none);
}

static int alloc_fail(ttq_diag *d, const arena *a, size_t off) {
  if (a->over)
    return fail_at(d, TTQ_ERANGE, off, "working memory would exceed %zu MiB",
                   a->limit >> 20);
  return fail_at(d, TTQ_ENOMEM, off, "out of memory");
}

/* ================================================================ text helpers */

typedef struct str {
  const char *p;
  size_t n;
} str;

static str mkstr(const char *p, size_t n) {
  str s = {p, n};
  return s;
}

static bool str_eq(str a, str b) {
  return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

static bool str_is(str a, const char *lit) { return str_eq(a, mkstr(lit, strlen(lit))); }

static bool is_nl(char c) { return c == '\n' || c == '\r'; }

/* Length of the newline at s[i] ("\r\n", "\r" or "\n"; Jinja normalizes all three), or 0. */
static size_t newline_at(const char *s, size_t i, size_t n) {
  if (i >= n || !is_nl(s[i])) return 0;
  return (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n') ? 2 : 1;
}

/* Byte length of the whitespace character (Python's str.isspace) starting at s[i], i < n;
 * 0 when s[i] does not start one. */
static size_t space_at(const char *s, size_t i, size_t n) {
  unsigned char c = (unsigned char)s[i];
  if ((c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20)) return 1;
  if (c == 0xc2 && n - i >= 2) {
    unsigned char c1 = (unsigned char)s[i + 1];
    return (c1 == 0x85 || c1 == 0xa0) ? 2 : 0; /* U+0085, U+00A0 */
  }
  if (n - i < 3) return 0;
  unsigned char c1 = (unsigned char)s[i + 1], c2 = (unsigned char)s[i + 2];
  if (c == 0xe1) return (c1 == 0x9a && c2 == 0x80) ? 3 : 0; /* U+1680 */
  if (c == 0xe2 && c1 == 0x80)                               /* U+2000-200A, 2028, 2029, 202F */
    return ((c2 >= 0x80 && c2 <= 0x8a) || c2 == 0xa8 || c2 == 0xa9 || c2 == 0xaf) ? 3 : 0;
  if (c == 0xe2 && c1 == 0x81) return c2 == 0x9f ? 3 : 0;   /* U+205F */
  if (c == 0xe3) return (c1 == 0x80 && c2 == 0x80) ? 3 : 0; /* U+3000 */
  return 0;
}

/* Byte length of the whitespace character ending just before s[i] (not before s[lo]), or 0. */
static size_t space_before(const char *s, size_t lo, size_t i) {
  for (size_t k = 1; k <= 3 && k <= i - lo; k++)
    if (space_at(s, i - k, i) == k) return k;
  return 0;
}

static size_t skip_spaces(const char *s, size_t i, size_t n) {
  size_t k;
  while (i < n && (k = space_at(s, i, n)) > 0) i += k;
  return i;
}

static size_t rstrip_spaces(const char *s, size_t lo, size_t i) {
  size_t k;
  while (i > lo && (k = space_before(s, lo, i)) > 0) i -= k;
  return i;
}

/* Offset of the first byte that is not valid UTF-8 (RFC 3629), or n. */
static size_t utf8_check(const char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned char c = (unsigned char)s[i];
    size_t len = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
               : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (len == 0 || n - i < len) return i;
    for (size_t k = 1; k < len; k++)
      if (((unsigned char)s[i + k] & 0xc0) != 0x80) return i;
    unsigned char c1 = (unsigned char)s[i + 1];
    if ((c == 0xe0 && c1 < 0xa0) || (c == 0xed && c1 > 0x9f) || (c == 0xf0 && c1 < 0x90) ||
        (c == 0xf4 && c1 > 0x8f))
      return i; /* overlong, surrogate, beyond U+10FFFF */
    i += len;
  }
  return n;
}

/* Number of code points (bytes that are not UTF-8 continuation bytes). */
static int64_t utf8_count(str s) {
  int64_t k = 0;
  for (size_t i = 0; i < s.n; i++) k += ((unsigned char)s.p[i] & 0xc0) != 0x80;
  return k;
}

/* ================================================================ values and trees */

typedef enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_STR, V_LIST, V_MSG, V_LOOP } vkind;

typedef struct loop_info {
  size_t index0, length;
} loop_info;

typedef struct value {
  vkind kind;
  bool b;                /* V_BOOL */
  int64_t i;             /* V_INT */
  str s;                 /* V_STR */
  size_t msg;            /* V_MSG: index into the messages */
  const loop_info *loop; /* V_LOOP */
} value;

typedef enum {
  E_LIT, E_NAME, E_GET, E_NOT, E_NEG, E_AND, E_OR, E_EQ, E_NE, E_ADD, E_CAT,
  E_TEST, E_FILTER, E_RAISE
} ekind;

typedef enum { T_DEFINED, T_UNDEFINED, T_NONE, T_STRING } etest;
typedef enum { F_TRIM, F_LENGTH } efilter;

typedef struct expr expr;
struct expr {
  ekind kind;
  int depth;    /* height of this subtree */
  size_t off;   /* byte offset in the template */
  expr *a, *b;  /* operands; E_GET: object, key; E_RAISE: first argument */
  value lit;    /* E_LIT */
  str name;     /* E_NAME */
  int which;    /* E_TEST: etest; E_FILTER: efilter; E_RAISE: argument count */
  bool negate;  /* E_TEST: `is not` */
};

typedef enum { N_TEXT, N_OUT, N_FOR, N_IF, N_SET } nkind;

typedef struct node node;
typedef struct branch branch;
struct branch {
  expr *cond;
  node *body;
  branch *next;
};

struct node {
  nkind kind;
  size_t off;
  node *next;
  size_t a, b;       /* N_TEXT: template bytes [a, b) */
  expr *e;           /* N_OUT: printed; N_FOR: iterable; N_SET: value */
  str name;          /* N_FOR: loop variable; N_SET: target */
  node *body;        /* N_FOR */
  branch *branches;  /* N_IF: if, then each elif */
  node *otherwise;   /* N_IF: else body */
};

/* ================================================================ scanner */

typedef enum { TK_END, TK_NAME, TK_INT, TK_STR, TK_OP } tkind;

typedef struct token {
  tkind kind;
  size_t off;
  str text;    /* as written (TK_STR: with quotes); TK_END: empty */
  str sval;    /* TK_STR: decoded */
  int64_t ival; /* TK_INT */
} token;

typedef enum { IT_EOF, IT_TEXT, IT_VAR, IT_BLOCK } ikind;

typedef struct parser {
  const char *s;
  size_t n;     /* template length without the final newline Jinja drops */
  size_t pos;   /* scanner position */
  arena *mem;
  ttq_diag *d;
  /* the current item */
  ikind kind;
  size_t item_off;
  size_t text_a, text_b;
  token *toks;  /* IT_VAR, IT_BLOCK: tokens, the last one TK_END */
  size_t n_toks, cap_toks, ti;
  int rdepth;   /* expression recursion */
} parser;

static size_t find_tag(const char *s, size_t i, size_t n) {
  for (; i + 1 < n; i++)
    if (s[i] == '{' && (s[i + 1] == '{' || s[i + 1] == '%' || s[i + 1] == '#')) return i;
  return n;
}

/* Where text [a, q) ends once the tag at q (if any) has applied `-` or lstrip_blocks. */
static size_t text_end(const parser *p, size_t a, size_t q) {
  const char *s = p->s;
  if (q >= p->n) return q;
  char kind = s[q + 1], sign = q + 2 < p->n ? s[q + 2] : 0;
  if (sign == '-') return rstrip_spaces(s, a, q);
  if (sign == '+' || kind == '{') return q;
  size_t l = q; /* lstrip_blocks: spaces alone on the tag's line before it go */
  while (l > a && !is_nl(s[l - 1])) l--;
  if (l == a && a > 0 && !is_nl(s[a - 1])) return q;
  return skip_spaces(s, l, q) == q ? l : q;
}

/* Position after a tag's closing marker at `end`, once `-` (all whitespace) or trim_blocks
 * (one newline, for block and comment tags) has applied. */
static size_t after_tag(const parser *p, size_t end, char sign, bool trim) {
  if (sign == '-') return skip_spaces(p->s, end, p->n);
  if (sign != '+' && trim) return end + newline_at(p->s, end, p->n);
  return end;
}

static int push_token(parser *p, tkind kind, size_t off, size_t len) {
  if (p->n_toks == p->cap_toks) {
    size_t cap = p->cap_toks ? 2 * p->cap_toks : 64;
    token *t = realloc(p->toks, cap * sizeof *t);
    if (!t) return fail_at(p->d, TTQ_ENOMEM, off, "out of memory");
    p->toks = t;
    p->cap_toks = cap;
  }
  token *t = &p->toks[p->n_toks++];
  memset(t, 0, sizeof *t);
  t->kind = kind;
  t->off = off;
  t->text = mkstr(p->s + off, len);
  return 0;
}

static int decode_escape(parser *p, size_t at, char c, char *out) {
  switch (c) {
    case 'n': *out = '\n'; return 0;
    case 't': *out = '\t'; return 0;
    case 'r': *out = '\r'; return 0;
    case 'a': *out = '\a'; return 0;
    case 'b': *out = '\b'; return 0;
    case 'f': *out = '\f'; return 0;
    case 'v': *out = '\v'; return 0;
    case '\\': case '\'': case '"': *out = c; return 0;
    default: break;
  }
  if (is_nl(c)) return fail_at(p->d, TTQ_EUNSUPPORTED, at, "line continuation in a string");
  if ((unsigned char)c < 0x80 && c > ' ')
    return fail_at(p->d, TTQ_EUNSUPPORTED, at, "escape '\\%c' in a string", c);
  return fail_at(p->d, TTQ_EUNSUPPORTED, at, "escape of byte 0x%02x in a string",
                 (unsigned char)c);
}

/* Lexes the string literal at s[i] (a quote) into a TK_STR token; *i moves past it. */
static int lex_string(parser *p, size_t *i) {
  const char *s = p->s;
  size_t start = *i, j = start + 1;
  char quote = s[start];
  while (j < p->n && s[j] != quote) j += (s[j] == '\\' && j + 1 < p->n) ? 2 : 1;
  if (j >= p->n) return fail_at(p->d, TTQ_EFORMAT, start, "unterminated string");
  char *buf = arena_alloc(p->mem, j - start);
  if (!buf) return alloc_fail(p->d, p->mem, start);
  size_t len = 0;
  for (size_t k = start + 1; k < j; k++) {
    size_t nl = newline_at(s, k, j);
    if (nl) {
      buf[len++] = '\n';
      k += nl - 1;
    } else if (s[k] == '\\') {
      int rc = decode_escape(p, k, s[k + 1], &buf[len++]);
      if (rc) return rc;
      k++;
    } else {
      buf[len++] = s[k];
    }
  }
  int rc = push_token(p, TK_STR, start, j + 1 - start);
  if (rc) return rc;
  p->toks[p->n_toks - 1].sval = mkstr(buf, len);
  *i = j + 1;
  return 0;
}

static bool is_name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

static int lex_number(parser *p, size_t *i) {
  const char *s = p->s;
  size_t start = *i, j = start;
  int64_t v = 0;
  bool overflow = false;
  if (s[j] == '0') { /* Jinja reads 00 as 0, and 02 as 0 then 2 */
    while (j < p->n && s[j] == '0') j++;
    if (j < p->n && is_digit(s[j]))
      return fail_at(p->d, TTQ_EFORMAT, start, "integer with a leading zero");
  }
  while (j < p->n && is_digit(s[j])) {
    int dgt = s[j++] - '0';
    if (v > (INT64_MAX - dgt) / 10) overflow = true;
    else v = v * 10 + dgt;
  }
  bool fraction = j + 1 < p->n && s[j] == '.' && is_digit(s[j + 1]);
  if (fraction || (j < p->n && is_name_char(s[j]))) {
    while (j < p->n && (is_name_char(s[j]) || s[j] == '.') && j - start < 40) j++;
    return fail_at(p->d, TTQ_EUNSUPPORTED, start, "number literal '%.*s' (only plain integers)",
                   (int)(j - start), s + start);
  }
  if (overflow)
    return fail_at(p->d, TTQ_EUNSUPPORTED, start, "integer literal beyond 64 bits");
  int rc = push_token(p, TK_INT, start, j - start);
  if (rc) return rc;
  p->toks[p->n_toks - 1].ival = v;
  *i = j;
  return 0;
}

/* Operators Jinja knows, longest first; the parser refuses those outside the subset. */
static size_t op_len(const char *s, size_t i, size_t n) {
  static const char *const two[] = {"//", "**", "==", "!=", ">=", "<="};
  if (i + 1 < n)
    for (size_t k = 0; k < sizeof two / sizeof two[0]; k++)
      if (s[i] == two[k][0] && s[i + 1] == two[k][1]) return 2;
  return s[i] && strchr("+-/*%~[](){}><=.:|,;", s[i]) ? 1 : 0;
}

/* Brackets must balance inside a tag; tag ends are not recognized inside them (as Jinja). */
static int balance(parser *p, size_t at, char c, char *stack, int *depth) {
  if (c == '(' || c == '[' || c == '{') {
    if (*depth >= TTQ_CHAT_MAX_EXPR_DEPTH)
      return fail_at(p->d, TTQ_ERANGE, at, "brackets nested deeper than %d",
                     TTQ_CHAT_MAX_EXPR_DEPTH);
    stack[(*depth)++] = c == '(' ? ')' : c == '[' ? ']' : '}';
  } else if (c == ')' || c == ']' || c == '}') {
    if (*depth == 0) return fail_at(p->d, TTQ_EFORMAT, at, "unexpected '%c'", c);
    char want = stack[--*depth];
    if (want != c) return fail_at(p->d, TTQ_EFORMAT, at, "unexpected '%c', expected '%c'", c, want);
  }
  return 0;
}

/* Length of the closing marker of a block (`-%}`, `+%}`, `%}`) or variable (`-}}`, `}}`) tag
 * at s[i], or 0; *sign gets its `-`/`+`. */
static size_t tag_close(const parser *p, size_t i, bool block, char *sign) {
  const char *s = p->s, *close = block ? "%}" : "}}";
  *sign = 0;
  if (i + 1 < p->n && s[i] == close[0] && s[i + 1] == close[1]) return 2;
  bool marked = s[i] == '-' || (block && s[i] == '+');
  if (marked && i + 2 < p->n && s[i + 1] == close[0] && s[i + 2] == close[1]) {
    *sign = s[i];
    return 3;
  }
  return 0;
}

static int lex_token(parser *p, size_t *i, char *stack, int *depth) {
  const char *s = p->s;
  char c = s[*i];
  if (c == '\'' || c == '"') return lex_string(p, i);
  if (is_digit(c)) return lex_number(p, i);
  if (is_name_start(c)) {
    size_t j = *i;
    while (j < p->n && is_name_char(s[j])) j++;
    int rc = push_token(p, TK_NAME, *i, j - *i);
    *i = j;
    return rc;
  }
  size_t len = op_len(s, *i, p->n);
  if (len == 0) {
    if ((unsigned char)c >= 0x80)
      return fail_at(p->d, TTQ_EFORMAT, *i, "unexpected non-ASCII character in a tag");
    return fail_at(p->d, TTQ_EFORMAT, *i, "unexpected character '%c' in a tag", c);
  }
  int rc = balance(p, *i, c, stack, depth);
  if (!rc) rc = push_token(p, TK_OP, *i, len);
  *i += len;
  return rc;
}

/* Lexes the tag opened at q (content from i) into p->toks; moves p->pos past it. */
static int lex_tag(parser *p, size_t q, size_t i, bool block) {
  char stack[TTQ_CHAT_MAX_EXPR_DEPTH];
  int depth = 0;
  p->n_toks = 0;
  p->ti = 0;
  for (;;) {
    i = skip_spaces(p->s, i, p->n);
    if (i >= p->n)
      return fail_at(p->d, TTQ_EFORMAT, q, "'%s' is never closed", block ? "{%" : "{{");
    char sign;
    size_t close = depth == 0 ? tag_close(p, i, block, &sign) : 0;
    if (close) {
      int rc = push_token(p, TK_END, i, 0);
      if (rc) return rc;
      p->pos = after_tag(p, i + close, sign, block);
      return 0;
    }
    int rc = lex_token(p, &i, stack, &depth);
    if (rc) return rc;
  }
}

/* Skips the comment opened at q (content from i); moves p->pos past it. */
static int skip_comment(parser *p, size_t q, size_t i) {
  size_t start = i;
  while (i + 1 < p->n && !(p->s[i] == '#' && p->s[i + 1] == '}')) i++;
  if (i + 1 >= p->n) return fail_at(p->d, TTQ_EFORMAT, q, "comment '{#' is never closed");
  char sign = (i > start && (p->s[i - 1] == '-' || p->s[i - 1] == '+')) ? p->s[i - 1] : 0;
  p->pos = after_tag(p, i + 2, sign, true);
  return 0;
}

/* Next item of the template: text (with whitespace control applied), a tag, or the end. */
static int scan_next(parser *p) {
  for (;;) {
    if (p->pos >= p->n) {
      p->kind = IT_EOF;
      p->item_off = p->n;
      return 0;
    }
    size_t a = p->pos, q = find_tag(p->s, a, p->n);
    if (q > a) {
      p->pos = q;
      size_t b = text_end(p, a, q);
      if (b > a) {
        p->kind = IT_TEXT;
        p->item_off = a;
        p->text_a = a;
        p->text_b = b;
        return 0;
      }
      continue;
    }
    char kind = p->s[q + 1];
    size_t i = q + 2;
    if (i < p->n && (p->s[i] == '-' || p->s[i] == '+')) i++;
    p->item_off = q;
    if (kind == '#') {
      int rc = skip_comment(p, q, i);
      if (rc) return rc;
      continue;
    }
    p->kind = kind == '%' ? IT_BLOCK : IT_VAR;
    return lex_tag(p, q, i, kind == '%');
  }
}

/* ================================================================ parser: tokens */

static const token *cur(const parser *p) { return &p->toks[p->ti]; }

static const token *peek(const parser *p, size_t k) {
  size_t i = p->ti + k;
  return &p->toks[i < p->n_toks ? i : p->n_toks - 1];
}

static void advance(parser *p) {
  if (p->toks[p->ti].kind != TK_END) p->ti++;
}

static bool is_op(const token *t, const char *op) {
  return t->kind == TK_OP && str_is(t->text, op);
}

static bool is_kw(const token *t, const char *name) {
  return t->kind == TK_NAME && str_is(t->text, name);
}

/* What a token looks like in a message. */
static const char *tok_desc(const token *t, char buf[64]) {
  if (t->kind == TK_END) return "end of tag";
  snprintf(buf, 64, "'%.*s'", t->text.n > 40 ? 40 : (int)t->text.n, t->text.p);
  return buf;
}

static int unexpected(parser *p, const char *wanted) {
  char buf[64];
  const token *t = cur(p);
  return fail_at(p->d, TTQ_EFORMAT, t->off, "expected %s, found %s", wanted, tok_desc(t, buf));
}

/* What came last before the end of a tag, for naming what Jinja would accept after it. */
typedef enum { AFTER_WORD, AFTER_EXPR, AFTER_LOOP_ITER } end_mode;

/* The tag must end here. Leftovers that Jinja would accept are named as unsupported. */
static int expect_end(parser *p, end_mode mode) {
  const token *t = cur(p);
  if (t->kind == TK_END) return 0;
  if (mode == AFTER_EXPR && is_kw(t, "if"))
    return fail_at(p->d, TTQ_EUNSUPPORTED, t->off, "conditional expression 'x if c else y'");
  if (mode == AFTER_LOOP_ITER && is_kw(t, "if"))
    return fail_at(p->d, TTQ_EUNSUPPORTED, t->off, "loop filter 'for x in y if c'");
  if (mode == AFTER_LOOP_ITER && is_kw(t, "recursive"))
    return fail_at(p->d, TTQ_EUNSUPPORTED, t->off, "recursive loop");
  if (mode != AFTER_WORD && is_op(t, ","))
    return fail_at(p->d, TTQ_EUNSUPPORTED, t->off, "tuple");
  return unexpected(p, "end of tag");
}

static int expect_op(parser *p, const char *op) {
  if (is_op(cur(p), op)) {
    advance(p);
    return 0;
  }
  char want[16];
  snprintf(want, sizeof want, "'%s'", op);
  return unexpected(p, want);
}

/* ================================================================ parser: expressions */

static int depth_of(const expr *e) { return e ? e->depth : 0; }

static int new_expr(parser *p, ekind kind, size_t off, expr *a, expr *b, expr **out) {
  int da = depth_of(a), db = depth_of(b), depth = 1 + (da > db ? da : db);
  if (depth > TTQ_CHAT_MAX_EXPR_DEPTH)
    return fail_at(p->d, TTQ_ERANGE, off, "expression nested deeper than %d",
                   TTQ_CHAT_MAX_EXPR_DEPTH);
  expr *e = arena_alloc(p->mem, sizeof *e);
  if (!e) return alloc_fail(p->d, p->mem, off);
  memset(e, 0, sizeof *e);
  e->kind = kind;
  e->depth = depth;
  e->off = off;
  e->a = a;
  e->b = b;
  *out = e;
  return 0;
}

static int enter(parser *p) {
  if (++p->rdepth > TTQ_CHAT_MAX_EXPR_DEPTH)
    return fail_at(p->d, TTQ_ERANGE, cur(p)->off, "expression nested deeper than %d",
                   TTQ_CHAT_MAX_EXPR_DEPTH);
  return 0;
}

static int parse_expr(parser *p, expr **out);
static int parse_unary(parser *p, bool with_filter, expr **out);

static int new_lit(parser *p, size_t off, value v, expr **out) {
  int rc = new_expr(p, E_LIT, off, NULL, NULL, out);
  if (!rc) (*out)->lit = v;
  return rc;
}

/* Adjacent string literals join, as in Jinja ('a' 'b' is 'ab'). */
static int parse_strings(parser *p, expr **out) {
  size_t off = cur(p)->off, total = 0;
  size_t first = p->ti;
  while (cur(p)->kind == TK_STR) {
    total += cur(p)->sval.n;
    advance(p);
  }
  value v = {.kind = V_STR};
  if (p->ti - first == 1) {
    v.s = p->toks[first].sval;
  } else {
    char *buf = arena_alloc(p->mem, total);
    if (!buf) return alloc_fail(p->d, p->mem, off);
    size_t len = 0;
    for (size_t k = first; k < p->ti; k++) {
      memcpy(buf + len, p->toks[k].sval.p, p->toks[k].sval.n);
      len += p->toks[k].sval.n;
    }
    v.s = mkstr(buf, len);
  }
  return new_lit(p, off, v, out);
}

static int parse_name(parser *p, expr **out) {
  const token *t = cur(p);
  value v = {.kind = V_BOOL};
  advance(p);
  if (str_is(t->text, "true") || str_is(t->text, "True")) {
    v.b = true;
    return new_lit(p, t->off, v, out);
  }
  if (str_is(t->text, "false") || str_is(t->text, "False")) return new_lit(p, t->off, v, out);
  if (str_is(t->text, "none") || str_is(t->text, "None")) {
    v.kind = V_NONE;
    return new_lit(p, t->off, v, out);
  }
  int rc = new_expr(p, E_NAME, t->off, NULL, NULL, out);
  if (!rc) (*out)->name = t->text;
  return rc;
}

static int parse_paren(parser *p, expr **out) {
  size_t off = cur(p)->off;
  advance(p);
  if (is_op(cur(p), ")")) return fail_at(p->d, TTQ_EUNSUPPORTED, off, "empty tuple '()'");
  int rc = parse_expr(p, out);
  if (rc) return rc;
  if (is_op(cur(p), ",")) return fail_at(p->d, TTQ_EUNSUPPORTED, off, "tuple");
  return expect_op(p, ")");
}

static int parse_primary(parser *p, expr **out) {
  const token *t = cur(p);
  switch (t->kind) {
    case TK_NAME: return parse_name(p, out);
    case TK_STR: return parse_strings(p, out);
    case TK_INT: {
      value v = {.kind = V_INT, .i = t->ival};
      advance(p);
      return new_lit(p, t->off, v, out);
    }
    case TK_OP:
      if (is_op(t, "(")) return parse_paren(p, out);
      if (is_op(t, "[")) return fail_at(p->d, TTQ_EUNSUPPORTED, t->off, "list literal '[...]'");
      if (is_op(t, "{")) return fail_at(p->d, TTQ_EUNSUPPORTED, t->off, "dict literal '{...}'");
      break;
    case TK_END: break;
  }
  return unexpected(p, "an expression");
}

/* `.name` after an expression. */
static int parse_attr(parser *p, expr **ep) {
  size_t off = cur(p)->off;
  advance(p);
  const token *t = cur(p);
  if (t->kind == TK_INT)
    return fail_at(p->d, TTQ_EUNSUPPORTED, t->off, "numeric attribute '.%.*s' (write [%.*s])",
                   (int)t->text.n, t->text.p, (int)t->text.n, t->text.p);
  if (t->kind != TK_NAME) return unexpected(p, "an attribute name");
  expr *key;
  value v = {.kind = V_STR, .s = t->text};
  int rc = new_lit(p, t->off, v, &key);
  if (rc) return rc;
  advance(p);
  return new_expr(p, E_GET, off, *ep, key, ep);
}

/* `[expr]` after an expression. */
static int parse_subscript(parser *p, expr **ep) {
  size_t off = cur(p)->off;
  advance(p);
  if (is_op(cur(p), ":")) return fail_at(p->d, TTQ_EUNSUPPORTED, off, "slice '[:]'");
  if (is_op(cur(p), "]")) return fail_at(p->d, TTQ_EUNSUPPORTED, off, "empty subscript '[]'");
  expr *key;
  int rc = parse_expr(p, &key);
  if (rc) return rc;
  if (is_op(cur(p), ":")) return fail_at(p->d, TTQ_EUNSUPPORTED, off, "slice '[:]'");
  if (is_op(cur(p), ",")) return fail_at(p->d, TTQ_EUNSUPPORTED, off, "tuple subscript");
  rc = expect_op(p, "]");
  if (rc) return rc;
  return new_expr(p, E_GET, off, *ep, key, ep);
}

/* `(args)` after an expression: only raise_exception(...) is a function here. */
static int parse_call(parser *p, expr **ep) {
  size_t off = cur(p)->off;
  expr *callee = *ep;
  if (callee->kind != E_NAME)
    return fail_at(p->d, TTQ_EUNSUPPORTED, off,
                   callee->kind == E_GET ? "method call" : "call of an expression");
  if (!str_is(callee->name, "raise_exception"))
    return fail_at(p->d, TTQ_EUNSUPPORTED, callee->off, "function '%.*s'",
                   callee->name.n > 40 ? 40 : (int)callee->name.n, callee->name.p);
  advance(p);
  expr *first = NULL;
  int argc = 0;
  while (!is_op(cur(p), ")")) {
    if (argc > 0) {
      int rc = expect_op(p, ",");
      if (rc) return rc;
      if (is_op(cur(p), ")")) break;
    }
    if (cur(p)->kind == TK_NAME && is_op(peek(p, 1), "="))
      return fail_at(p->d, TTQ_EUNSUPPORTED, cur(p)->off, "keyword argument");
    if (is_op(cur(p), "*") || is_op(cur(p), "**"))
      return fail_at(p->d, TTQ_EUNSUPPORTED, cur(p)->off, "argument unpacking");
    expr *arg;
    int rc = parse_expr(p, &arg);
    if (rc) return rc;
    if (argc++ == 0) first = arg;
  }
  advance(p);
  int rc = new_expr(p, E_RAISE, callee->off, first, NULL, ep);
  if (!rc) (*ep)->which = argc;
  return rc;
}

static int parse_postfix(parser *p, expr **ep) {
  for (;;) {
    const token *t = cur(p);
    int rc = 0;
    if ((*ep)->kind == E_NAME && str_is((*ep)->name, "raise_exception") && !is_op(t, "("))
      return fail_at(p->d, TTQ_EUNSUPPORTED, (*ep)->off, "raise_exception used as a value");
    if (is_op(t, ".")) rc = parse_attr(p, ep);
    else if (is_op(t, "[")) rc = parse_subscript(p, ep);
    else if (is_op(t, "(")) rc = parse_call(p, ep);
    else break;
    if (rc) return rc;
  }
  return 0;
}

/* `()` after a filter or test name: Jinja allows it empty; arguments are outside the subset. */
static int skip_empty_args(parser *p, const char *what) {
  if (!is_op(cur(p), "(")) return 0;
  if (!is_op(peek(p, 1), ")"))
    return fail_at(p->d, TTQ_EUNSUPPORTED, cur(p)->off, "arguments to %s", what);
  advance(p);
  advance(p);
  return 0;
}

static int parse_filter(parser *p, expr **ep) {
  advance(p); /* | */
  const token *t = cur(p);
  if (t->kind != TK_NAME) return unexpected(p, "a filter name");
  int which;
  if (str_is(t->text, "trim")) which = F_TRIM;
  else if (str_is(t->text, "length") || str_is(t->text, "count")) which = F_LENGTH;
  else
    return fail_at(p->d, TTQ_EUNSUPPORTED, t->off, "filter '%.*s'",
                   t->text.n > 40 ? 40 : (int)t->text.n, t->text.p);
  advance(p);
  if (is_op(cur(p), "."))
    return fail_at(p->d, TTQ_EUNSUPPORTED, t->off, "dotted filter name");
  int rc = skip_empty_args(p, "a filter");
  if (!rc) rc = new_expr(p, E_FILTER, t->off, *ep, NULL, ep);
  if (!rc) (*ep)->which = which;
  return rc;
}

static int parse_test(parser *p, expr **ep) {
  size_t off = cur(p)->off;
  advance(p); /* is */
  bool negate = is_kw(cur(p), "not");
  if (negate) advance(p);
  const token *t = cur(p);
  if (t->kind != TK_NAME) return unexpected(p, "a test name");
  int which;
  if (str_is(t->text, "defined")) which = T_DEFINED;
  else if (str_is(t->text, "undefined")) which = T_UNDEFINED;
  else if (str_is(t->text, "none")) which = T_NONE;
  else if (str_is(t->text, "string")) which = T_STRING;
  else
    return fail_at(p->d, TTQ_EUNSUPPORTED, t->off, "test '%.*s'",
                   t->text.n > 40 ? 40 : (int)t->text.n, t->text.p);
  advance(p);
  const token *next = cur(p);
  if (is_kw(next, "is"))
    return fail_at(p->d, TTQ_EFORMAT, next->off, "chained tests 'x is a is b'");
  bool argument = (next->kind == TK_NAME && !is_kw(next, "else") && !is_kw(next, "or") &&
                   !is_kw(next, "and")) || next->kind == TK_STR || next->kind == TK_INT ||
                  is_op(next, "[") || is_op(next, "{") || is_op(next, ".");
  if (argument) /* Jinja reads `x is test arg`: a test with an argument */
    return fail_at(p->d, TTQ_EUNSUPPORTED, next->off, "argument to test '%.*s'",
                   (int)t->text.n, t->text.p);
  int rc = skip_empty_args(p, "a test");
  if (!rc) rc = new_expr(p, E_TEST, off, *ep, NULL, ep);
  if (rc) return rc;
  (*ep)->which = which;
  (*ep)->negate = negate;
  return 0;
}

static int parse_filters(parser *p, expr **ep) {
  for (;;) {
    int rc;
    if (is_op(cur(p), "|")) rc = parse_filter(p, ep);
    else if (is_kw(cur(p), "is")) rc = parse_test(p, ep);
    else if (is_op(cur(p), "("))
      rc = fail_at(p->d, TTQ_EUNSUPPORTED, cur(p)->off, "call of a filtered value");
    else return 0;
    if (rc) return rc;
  }
}

static int parse_unary(parser *p, bool with_filter, expr **out) {
  const token *t = cur(p);
  int rc;
  if (is_op(t, "-")) {
    advance(p);
    expr *a;
    rc = enter(p);
    if (!rc) rc = parse_unary(p, false, &a);
    p->rdepth--;
    if (!rc) rc = new_expr(p, E_NEG, t->off, a, NULL, out);
  } else if (is_op(t, "+")) {
    rc = fail_at(p->d, TTQ_EUNSUPPORTED, t->off, "unary '+'");
  } else {
    rc = parse_primary(p, out);
  }
  if (!rc) rc = parse_postfix(p, out);
  if (!rc && with_filter) rc = parse_filters(p, out);
  return rc;
}

static bool is_arith_op(const token *t) {
  return is_op(t, "*") || is_op(t, "/") || is_op(t, "//") || is_op(t, "%") || is_op(t, "**");
}

static int parse_concat(parser *p, expr **out) {
  int rc = parse_unary(p, true, out);
  while (!rc) {
    const token *t = cur(p);
    if (is_arith_op(t))
      return fail_at(p->d, TTQ_EUNSUPPORTED, t->off, "operator '%.*s'", (int)t->text.n, t->text.p);
    if (!is_op(t, "~")) break;
    advance(p);
    expr *b;
    rc = parse_unary(p, true, &b);
    if (!rc) rc = new_expr(p, E_CAT, t->off, *out, b, out);
  }
  return rc;
}

static int parse_add(parser *p, expr **out) {
  int rc = parse_concat(p, out);
  while (!rc) {
    const token *t = cur(p);
    if (is_op(t, "-")) return fail_at(p->d, TTQ_EUNSUPPORTED, t->off, "operator '-'");
    if (!is_op(t, "+")) break;
    advance(p);
    expr *b;
    rc = parse_concat(p, &b);
    if (!rc) rc = new_expr(p, E_ADD, t->off, *out, b, out);
  }
  return rc;
}

static bool is_compare_op(const parser *p) {
  const token *t = cur(p);
  return is_op(t, "==") || is_op(t, "!=") || is_op(t, "<") || is_op(t, ">") || is_op(t, "<=") ||
         is_op(t, ">=") || is_kw(t, "in") || (is_kw(t, "not") && is_kw(peek(p, 1), "in"));
}

static int parse_compare(parser *p, expr **out) {
  int rc = parse_add(p, out);
  if (rc || !is_compare_op(p)) return rc;
  const token *t = cur(p);
  bool eq = is_op(t, "==");
  if (!eq && !is_op(t, "!="))
    return fail_at(p->d, TTQ_EUNSUPPORTED, t->off, "comparison '%.*s'%s", (int)t->text.n,
                   t->text.p, is_kw(t, "not") ? " in" : "");
  advance(p);
  expr *b;
  rc = parse_add(p, &b);
  if (!rc) rc = new_expr(p, eq ? E_EQ : E_NE, t->off, *out, b, out);
  if (!rc && is_compare_op(p))
    return fail_at(p->d, TTQ_EUNSUPPORTED, cur(p)->off, "chained comparison");
  return rc;
}

static int parse_not(parser *p, expr **out) {
  const token *t = cur(p);
  if (!is_kw(t, "not")) return parse_compare(p, out);
  advance(p);
  expr *a;
  int rc = enter(p);
  if (!rc) rc = parse_not(p, &a);
  p->rdepth--;
  if (!rc) rc = new_expr(p, E_NOT, t->off, a, NULL, out);
  return rc;
}

static int parse_and(parser *p, expr **out) {
  int rc = parse_not(p, out);
  while (!rc && is_kw(cur(p), "and")) {
    size_t off = cur(p)->off;
    advance(p);
    expr *b;
    rc = parse_not(p, &b);
    if (!rc) rc = new_expr(p, E_AND, off, *out, b, out);
  }
  return rc;
}

static int parse_or(parser *p, expr **out) {
  int rc = parse_and(p, out);
  while (!rc && is_kw(cur(p), "or")) {
    size_t off = cur(p)->off;
    advance(p);
    expr *b;
    rc = parse_and(p, &b);
    if (!rc) rc = new_expr(p, E_OR, off, *out, b, out);
  }
  return rc;
}

static int parse_expr(parser *p, expr **out) {
  int rc = enter(p);
  if (!rc) rc = parse_or(p, out);
  p->rdepth--;
  return rc;
}

/* ================================================================ parser: statements */

static int new_node(parser *p, nkind kind, size_t off, node **out) {
  node *n = arena_alloc(p->mem, sizeof *n);
  if (!n) return alloc_fail(p->d, p->mem, off);
  memset(n, 0, sizeof *n);
  n->kind = kind;
  n->off = off;
  *out = n;
  return 0;
}

/* A tag that ends the body being parsed; name.n == 0 at the end of the template. */
typedef struct stop_tag {
  str name;
  size_t off;
} stop_tag;

static int parse_body(parser *p, int depth, node **head, stop_tag *stop);

/* A loop variable or set target: a plain name that may be assigned. */
static int parse_target(parser *p, str *name) {
  const token *t = cur(p);
  if (t->kind != TK_NAME) return unexpected(p, "a variable name");
  static const char *const fixed[] = {"true", "false", "none", "True", "False", "None"};
  for (size_t k = 0; k < sizeof fixed / sizeof fixed[0]; k++)
    if (str_is(t->text, fixed[k]))
      return fail_at(p->d, TTQ_EFORMAT, t->off, "cannot assign to '%s'", fixed[k]);
  *name = t->text;
  advance(p);
  if (is_op(cur(p), ","))
    return fail_at(p->d, TTQ_EUNSUPPORTED, cur(p)->off, "tuple assignment");
  if (is_op(cur(p), "."))
    return fail_at(p->d, TTQ_EUNSUPPORTED, cur(p)->off, "attribute assignment (namespace)");
  return 0;
}

static int check_depth(parser *p, int depth) {
  if (depth >= TTQ_CHAT_MAX_NESTING)
    return fail_at(p->d, TTQ_ERANGE, p->item_off, "blocks nested deeper than %d",
                   TTQ_CHAT_MAX_NESTING);
  return 0;
}

static int never_closed(parser *p, const char *tag, size_t off, const char *end) {
  return fail_at(p->d, TTQ_EFORMAT, off, "'{%% %s %%}' is never closed by '{%% %s %%}'", tag, end);
}

static int misplaced(parser *p, const stop_tag *st, const char *inside) {
  return fail_at(p->d, TTQ_EFORMAT, st->off, "'{%% %.*s %%}' %s", (int)st->name.n, st->name.p,
                 inside);
}

static int parse_for(parser *p, int depth, node **out) {
  size_t off = p->item_off;
  int rc = check_depth(p, depth);
  if (!rc) rc = new_node(p, N_FOR, off, out);
  if (rc) return rc;
  node *n = *out;
  advance(p); /* for */
  rc = parse_target(p, &n->name);
  if (rc) return rc;
  if (str_is(n->name, "loop"))
    return fail_at(p->d, TTQ_EFORMAT, off, "cannot assign to the special variable 'loop'");
  if (!is_kw(cur(p), "in")) return unexpected(p, "'in'");
  advance(p);
  rc = parse_expr(p, &n->e);
  if (!rc) rc = expect_end(p, AFTER_LOOP_ITER);
  stop_tag st;
  if (!rc) rc = parse_body(p, depth + 1, &n->body, &st);
  if (rc) return rc;
  if (st.name.n == 0) return never_closed(p, "for", off, "endfor");
  if (str_is(st.name, "else"))
    return fail_at(p->d, TTQ_EUNSUPPORTED, st.off, "'{%% else %%}' in a for loop");
  if (!str_is(st.name, "endfor")) return misplaced(p, &st, "inside a for loop");
  advance(p);
  return expect_end(p, AFTER_WORD);
}

/* Appends a branch (condition from the current tag, body up to the next stop) to an if. */
static int parse_branch(parser *p, int depth, branch ***tail, stop_tag *st) {
  branch *br = arena_alloc(p->mem, sizeof *br);
  if (!br) return alloc_fail(p->d, p->mem, p->item_off);
  memset(br, 0, sizeof *br);
  advance(p); /* if / elif */
  int rc = parse_expr(p, &br->cond);
  if (!rc) rc = expect_end(p, AFTER_EXPR);
  if (!rc) rc = parse_body(p, depth + 1, &br->body, st);
  **tail = br;
  *tail = &br->next;
  return rc;
}

static int parse_if(parser *p, int depth, node **out) {
  size_t off = p->item_off;
  int rc = check_depth(p, depth);
  if (!rc) rc = new_node(p, N_IF, off, out);
  if (rc) return rc;
  node *n = *out;
  branch **tail = &n->branches;
  stop_tag st;
  rc = parse_branch(p, depth, &tail, &st);
  bool has_else = false;
  while (!rc) {
    if (st.name.n == 0) return never_closed(p, "if", off, "endif");
    if (str_is(st.name, "endif")) {
      advance(p);
      return expect_end(p, AFTER_WORD);
    }
    if (str_is(st.name, "elif") && !has_else) {
      rc = parse_branch(p, depth, &tail, &st);
    } else if (str_is(st.name, "else") && !has_else) {
      has_else = true;
      advance(p);
      rc = expect_end(p, AFTER_WORD);
      if (!rc) rc = parse_body(p, depth + 1, &n->otherwise, &st);
    } else {
      return misplaced(p, &st, has_else ? "after '{% else %}' of an if" : "inside an if");
    }
  }
  return rc;
}

static int parse_set(parser *p, node **out) {
  int rc = new_node(p, N_SET, p->item_off, out);
  if (rc) return rc;
  advance(p); /* set */
  rc = parse_target(p, &(*out)->name);
  if (rc) return rc;
  if (cur(p)->kind == TK_END)
    return fail_at(p->d, TTQ_EUNSUPPORTED, p->item_off,
                   "block assignment '{%% set x %%}...{%% endset %%}'");
  rc = expect_op(p, "=");
  if (!rc) rc = parse_expr(p, &(*out)->e);
  if (!rc) rc = expect_end(p, AFTER_EXPR);
  return rc;
}

static bool is_stop_name(str name) {
  return str_is(name, "endfor") || str_is(name, "endif") || str_is(name, "elif") ||
         str_is(name, "else");
}

/* One `{% ... %}` statement (not a stop tag). */
static int parse_statement(parser *p, int depth, node **out) {
  const token *t = cur(p);
  if (is_kw(t, "for")) return parse_for(p, depth, out);
  if (is_kw(t, "if")) return parse_if(p, depth, out);
  if (is_kw(t, "set")) return parse_set(p, out);
  if (t->kind != TK_NAME) return unexpected(p, "a tag name");
  return fail_at(p->d, TTQ_EUNSUPPORTED, p->item_off, "tag '{%% %.*s %%}'",
                 t->text.n > 40 ? 40 : (int)t->text.n, t->text.p);
}

static int parse_item(parser *p, int depth, node **out) {
  int rc;
  switch (p->kind) {
    case IT_TEXT:
      rc = new_node(p, N_TEXT, p->item_off, out);
      if (!rc) (*out)->a = p->text_a, (*out)->b = p->text_b;
      return rc;
    case IT_VAR:
      rc = new_node(p, N_OUT, p->item_off, out);
      if (!rc) rc = parse_expr(p, &(*out)->e);
      if (!rc) rc = expect_end(p, AFTER_EXPR);
      return rc;
    default:
      return parse_statement(p, depth, out);
  }
}

/* Parses statements up to a stop tag (endfor, endif, elif, else: left as the current tag,
 * its name in *stop) or the end of the template (stop->name empty). */
static int parse_body(parser *p, int depth, node **head, stop_tag *stop) {
  node **tail = head;
  *head = NULL;
  for (;;) {
    int rc = scan_next(p);
    if (rc) return rc;
    if (p->kind == IT_EOF) {
      stop->name = mkstr(NULL, 0);
      stop->off = p->n;
      return 0;
    }
    if (p->kind == IT_BLOCK && cur(p)->kind == TK_NAME && is_stop_name(cur(p)->text)) {
      stop->name = cur(p)->text;
      stop->off = p->item_off;
      return 0;
    }
    rc = parse_item(p, depth, tail);
    if (rc) return rc;
    tail = &(*tail)->next;
  }
}

static int parse_template(parser *p, node **root) {
  stop_tag st;
  int rc = parse_body(p, 0, root, &st);
  if (rc) return rc;
  if (st.name.n) return misplaced(p, &st, "has no matching opening tag");
  return 0;
}

/* ================================================================ evaluator */

typedef struct binding binding;
struct binding {
  str name;
  value v;
  binding *next;
};

/* A scope: the whole template, or one iteration of a for loop (Jinja's scoping: a set inside
 * a loop body is seen only by the rest of that iteration). */
typedef struct frame frame;
struct frame {
  frame *parent;
  binding *sets;
  str var;               /* loop variable (empty at the top) */
  value var_v;
  const loop_info *loop; /* NULL at the top */
};

typedef struct render {
  const char *s;
  const ttq_chat_msg *msgs;
  size_t n_msgs;
  bool add_generation_prompt;
  const char *bos, *eos;
  arena work;
  char *out;
  size_t len, cap;
  size_t iterations;
  frame *top;
  ttq_diag *d;
} render;

static int emit(render *r, const char *p, size_t n, size_t off) {
  if (n > TTQ_CHAT_MAX_OUTPUT - r->len)
    return fail_at(r->d, TTQ_ERANGE, off, "rendered text would exceed %u bytes",
                   TTQ_CHAT_MAX_OUTPUT);
  if (r->len + n + 1 > r->cap) {
    size_t cap = r->cap ? r->cap : 4096;
    while (cap < r->len + n + 1) cap *= 2;
    if (cap > TTQ_CHAT_MAX_OUTPUT + 1) cap = TTQ_CHAT_MAX_OUTPUT + 1;
    char *q = realloc(r->out, cap);
    if (!q) return fail_at(r->d, TTQ_ENOMEM, off, "out of memory");
    r->out = q;
    r->cap = cap;
  }
  if (n) memcpy(r->out + r->len, p, n);
  r->len += n;
  r->out[r->len] = 0;
  return 0;
}

/* Template text [a, b) with "\r\n" and "\r" written as "\n" (Jinja normalizes newlines). */
static int emit_text(render *r, size_t a, size_t b) {
  while (a < b) {
    const char *cr = memchr(r->s + a, '\r', b - a);
    size_t end = cr ? (size_t)(cr - r->s) : b;
    int rc = emit(r, r->s + a, end - a, a);
    if (rc || !cr) return rc;
    rc = emit(r, "\n", 1, end);
    if (rc) return rc;
    a = end + newline_at(r->s, end, b);
  }
  return 0;
}

static value v_make(vkind kind) {
  value v;
  memset(&v, 0, sizeof v);
  v.kind = kind;
  return v;
}

static value v_bool(bool b) {
  value v = v_make(V_BOOL);
  v.b = b;
  return v;
}

static value v_int(int64_t i) {
  value v = v_make(V_INT);
  v.i = i;
  return v;
}

static value v_str(const char *p, size_t n) {
  value v = v_make(V_STR);
  v.s = mkstr(p, n);
  return v;
}

static value v_cstr(const char *p) { return p ? v_str(p, strlen(p)) : v_make(V_NONE); }

/* Python's type names, for messages that match Jinja's. */
static const char *type_name(vkind k) {
  switch (k) {
    case V_UNDEF: return "Undefined";
    case V_NONE: return "NoneType";
    case V_BOOL: return "bool";
    case V_INT: return "int";
    case V_STR: return "str";
    case V_LIST: return "list";
    case V_MSG: return "dict";
    case V_LOOP: return "LoopContext";
  }
  return "?";
}

static bool truthy(const render *r, const value *v) {
  switch (v->kind) {
    case V_UNDEF: case V_NONE: return false;
    case V_BOOL: return v->b;
    case V_INT: return v->i != 0;
    case V_STR: return v->s.n > 0;
    case V_LIST: return r->n_msgs > 0;
    case V_MSG: case V_LOOP: return true;
  }
  return false;
}

static bool cstr_eq(const char *a, const char *b) {
  return (!a || !b) ? a == b : strcmp(a, b) == 0;
}

/* Python's ==: bool and int compare as numbers; a message equals one with the same role and
 * content; two undefined values are equal (Jinja's Undefined). */
static bool values_equal(const render *r, const value *x, const value *y) {
  bool xn = x->kind == V_BOOL || x->kind == V_INT, yn = y->kind == V_BOOL || y->kind == V_INT;
  if (xn && yn) return (x->kind == V_BOOL ? x->b : x->i) == (y->kind == V_BOOL ? y->b : y->i);
  if (x->kind != y->kind) return false;
  switch (x->kind) {
    case V_STR: return str_eq(x->s, y->s);
    case V_MSG: {
      const ttq_chat_msg *a = &r->msgs[x->msg], *b = &r->msgs[y->msg];
      return cstr_eq(a->role, b->role) && cstr_eq(a->content, b->content);
    }
    case V_LOOP: return x->loop == y->loop;
    default: return true; /* undefined, none, the one list */
  }
}

/* str(v) as Jinja prints it; integers are formatted into the work arena. */
static int to_text(render *r, const value *v, size_t off, str *out) {
  switch (v->kind) {
    case V_UNDEF: *out = mkstr("", 0); return 0;
    case V_NONE: *out = mkstr("None", 4); return 0;
    case V_BOOL: *out = v->b ? mkstr("True", 4) : mkstr("False", 5); return 0;
    case V_STR: *out = v->s; return 0;
    case V_INT: {
      char *buf = arena_alloc(&r->work, 24);
      if (!buf) return alloc_fail(r->d, &r->work, off);
      int n = snprintf(buf, 24, "%lld", (long long)v->i);
      *out = mkstr(buf, (size_t)n);
      return 0;
    }
    default:
      return fail_at(r->d, TTQ_EUNSUPPORTED, off, "converting a %s to text", type_name(v->kind));
  }
}

static int concat(render *r, str a, str b, size_t off, value *out) {
  size_t n;
  if (!ttq__add_ok(a.n, b.n, &n)) return fail_at(r->d, TTQ_ERANGE, off, "string too long");
  char *buf = arena_alloc(&r->work, n);
  if (!buf) return alloc_fail(r->d, &r->work, off);
  if (a.n) memcpy(buf, a.p, a.n);
  if (b.n) memcpy(buf + a.n, b.p, b.n);
  *out = v_str(buf, n);
  return 0;
}

static int eval(render *r, const expr *e, value *out);

static value lookup(const render *r, str name) {
  for (const frame *f = r->top; f; f = f->parent) {
    for (const binding *b = f->sets; b; b = b->next)
      if (str_eq(b->name, name)) return b->v;
    if (f->var.n && str_eq(f->var, name)) return f->var_v;
    if (f->loop && str_is(name, "loop")) {
      value v = v_make(V_LOOP);
      v.loop = f->loop;
      return v;
    }
  }
  if (str_is(name, "messages")) return v_make(V_LIST);
  if (str_is(name, "add_generation_prompt")) return v_bool(r->add_generation_prompt);
  if (str_is(name, "bos_token")) return r->bos ? v_cstr(r->bos) : v_make(V_UNDEF);
  if (str_is(name, "eos_token")) return r->eos ? v_cstr(r->eos) : v_make(V_UNDEF);
  if (str_is(name, "tools") || str_is(name, "documents")) return v_make(V_NONE);
  return v_make(V_UNDEF);
}

static bool name_in(str name, const char *const *list) {
  for (; *list; list++)
    if (str_is(name, *list)) return true;
  return false;
}

/* Attributes that are methods of Python's dict and list: Jinja would return the method. */
static const char *const DICT_METHODS[] = {"clear", "copy", "fromkeys", "get", "items", "keys",
                                           "pop", "popitem", "setdefault", "update", "values",
                                           NULL};
static const char *const LIST_METHODS[] = {"append", "clear", "copy", "count", "extend", "index",
                                           "insert", "pop", "remove", "reverse", "sort", NULL};

static int unsupported_key(render *r, size_t off, str key, const char *of) {
  return fail_at(r->d, TTQ_EUNSUPPORTED, off, "'%.*s' of a %s", key.n > 40 ? 40 : (int)key.n,
                 key.p, of);
}

static int get_from_msg(render *r, size_t msg, const value *key, size_t off, value *out) {
  *out = v_make(V_UNDEF);
  if (key->kind != V_STR) return 0;
  if (str_is(key->s, "role")) *out = v_cstr(r->msgs[msg].role);
  else if (str_is(key->s, "content")) *out = v_cstr(r->msgs[msg].content);
  else if (name_in(key->s, DICT_METHODS))
    return unsupported_key(r, off, key->s, "message (a method)");
  return 0;
}

static int get_from_list(render *r, const value *key, size_t off, value *out) {
  *out = v_make(V_UNDEF);
  if (key->kind == V_INT || key->kind == V_BOOL) {
    int64_t i = key->kind == V_BOOL ? key->b : key->i;
    if (i < 0) i += (int64_t)r->n_msgs;
    if (i >= 0 && (uint64_t)i < r->n_msgs) {
      *out = v_make(V_MSG);
      out->msg = (size_t)i;
    }
  } else if (key->kind == V_STR && name_in(key->s, LIST_METHODS)) {
    return unsupported_key(r, off, key->s, "list (a method)");
  }
  return 0;
}

static int get_from_loop(render *r, const loop_info *li, const value *key, size_t off,
                         value *out) {
  *out = v_make(V_UNDEF);
  if (key->kind != V_STR) return 0;
  str k = key->s;
  int64_t i0 = (int64_t)li->index0, len = (int64_t)li->length;
  if (str_is(k, "index0")) *out = v_int(i0);
  else if (str_is(k, "index")) *out = v_int(i0 + 1);
  else if (str_is(k, "revindex0")) *out = v_int(len - i0 - 1);
  else if (str_is(k, "revindex")) *out = v_int(len - i0);
  else if (str_is(k, "first")) *out = v_bool(i0 == 0);
  else if (str_is(k, "last")) *out = v_bool(i0 == len - 1);
  else if (str_is(k, "length")) *out = v_int(len);
  else if (str_is(k, "depth")) *out = v_int(1);
  else if (str_is(k, "depth0")) *out = v_int(0);
  else {
    static const char *const other[] = {"cycle", "changed", "previtem", "nextitem", NULL};
    if (name_in(k, other)) return unsupported_key(r, off, k, "loop");
  }
  return 0;
}

/* obj.key / obj[key] with Jinja's results: a missing key is undefined; anything of an
 * undefined value is an error; of none, undefined. */
static int get_item(render *r, const value *obj, const value *key, size_t off, value *out) {
  if (key->kind == V_STR && key->s.n && key->s.p[0] == '_') /* the sandbox hides these */
    return unsupported_key(r, off, key->s, "value (private attribute)");
  switch (obj->kind) {
    case V_MSG: return get_from_msg(r, obj->msg, key, off, out);
    case V_LIST: return get_from_list(r, key, off, out);
    case V_LOOP: return get_from_loop(r, obj->loop, key, off, out);
    case V_NONE: *out = v_make(V_UNDEF); return 0;
    case V_UNDEF:
      if (key->kind == V_STR)
        return fail_at(r->d, TTQ_EINVAL, off, "'%.*s' of an undefined value",
                       key->s.n > 40 ? 40 : (int)key->s.n, key->s.p);
      return fail_at(r->d, TTQ_EINVAL, off, "item of an undefined value");
    default:
      return fail_at(r->d, TTQ_EUNSUPPORTED, off, "attribute or item of a %s",
                     type_name(obj->kind));
  }
}

static const char *trim_spaces(const char *p, size_t *n) {
  size_t a = skip_spaces(p, 0, *n), b = rstrip_spaces(p, a, *n);
  *n = b - a;
  return p + a;
}

static int apply_filter(render *r, const expr *e, const value *v, value *out) {
  if (e->which == F_TRIM) {
    str s;
    int rc = to_text(r, v, e->off, &s);
    if (rc) return rc;
    size_t n = s.n;
    const char *p = trim_spaces(s.p, &n);
    *out = v_str(p, n);
    return 0;
  }
  switch (v->kind) { /* F_LENGTH */
    case V_STR: *out = v_int(utf8_count(v->s)); return 0;
    case V_LIST: *out = v_int((int64_t)r->n_msgs); return 0;
    case V_UNDEF: *out = v_int(0); return 0;
    case V_MSG: case V_LOOP:
      return fail_at(r->d, TTQ_EUNSUPPORTED, e->off, "length of a %s", type_name(v->kind));
    default:
      return fail_at(r->d, TTQ_EINVAL, e->off, "object of type '%s' has no length",
                     type_name(v->kind));
  }
}

static bool apply_test(const expr *e, const value *v) {
  bool t = false;
  switch (e->which) {
    case T_DEFINED: t = v->kind != V_UNDEF; break;
    case T_UNDEFINED: t = v->kind == V_UNDEF; break;
    case T_NONE: t = v->kind == V_NONE; break;
    case T_STRING: t = v->kind == V_STR; break;
  }
  return t != e->negate;
}

static bool is_number(const value *v) { return v->kind == V_INT || v->kind == V_BOOL; }
static int64_t as_int(const value *v) { return v->kind == V_BOOL ? v->b : v->i; }

/* + on two strings (join) or two numbers (sum); Python's TypeError otherwise. */
static int add_values(render *r, const expr *e, const value *x, const value *y, value *out) {
  if (x->kind == V_STR && y->kind == V_STR) return concat(r, x->s, y->s, e->off, out);
  if (is_number(x) && is_number(y)) {
    int64_t s;
    if (__builtin_add_overflow(as_int(x), as_int(y), &s))
      return fail_at(r->d, TTQ_EUNSUPPORTED, e->off, "integer beyond 64 bits");
    *out = v_int(s);
    return 0;
  }
  if (x->kind == V_UNDEF || y->kind == V_UNDEF)
    return fail_at(r->d, TTQ_EINVAL, e->off, "'+' with an undefined value");
  return fail_at(r->d, TTQ_EINVAL, e->off, "'+' of '%s' and '%s'", type_name(x->kind),
                 type_name(y->kind));
}

static int eval_raise(render *r, const expr *e) {
  if (e->which != 1)
    return fail_at(r->d, TTQ_EINVAL, e->off, "raise_exception takes 1 argument, %d given",
                   e->which);
  value v;
  str s;
  int rc = eval(r, e->a, &v);
  if (!rc) rc = to_text(r, &v, e->off, &s);
  if (rc) return rc;
  return ttq__fail(r->d, TTQ_EINVAL, "chat template: raise_exception at offset %zu: %.*s",
                   e->off, s.n > 600 ? 600 : (int)s.n, s.p);
}

static int eval_binary(render *r, const expr *e, value *out) {
  value x, y;
  int rc = eval(r, e->a, &x);
  if (rc) return rc;
  if (e->kind == E_AND || e->kind == E_OR) { /* Python: the deciding operand */
    if (truthy(r, &x) == (e->kind == E_OR)) {
      *out = x;
      return 0;
    }
    return eval(r, e->b, out);
  }
  rc = eval(r, e->b, &y);
  if (rc) return rc;
  switch (e->kind) {
    case E_EQ: *out = v_bool(values_equal(r, &x, &y)); return 0;
    case E_NE: *out = v_bool(!values_equal(r, &x, &y)); return 0;
    case E_ADD: return add_values(r, e, &x, &y, out);
    case E_GET: return get_item(r, &x, &y, e->off, out);
    default: { /* E_CAT */
      str a, b;
      rc = to_text(r, &x, e->off, &a);
      if (!rc) rc = to_text(r, &y, e->off, &b);
      if (!rc) rc = concat(r, a, b, e->off, out);
      return rc;
    }
  }
}

static int eval_unary(render *r, const expr *e, value *out) {
  value x;
  int rc = eval(r, e->a, &x);
  if (rc) return rc;
  switch (e->kind) {
    case E_NOT: *out = v_bool(!truthy(r, &x)); return 0;
    case E_TEST: *out = v_bool(apply_test(e, &x)); return 0;
    case E_FILTER: return apply_filter(r, e, &x, out);
    default: /* E_NEG */
      if (!is_number(&x) || as_int(&x) == INT64_MIN)
        return fail_at(r->d, TTQ_EINVAL, e->off, "unary '-' of a %s", type_name(x.kind));
      *out = v_int(-as_int(&x));
      return 0;
  }
}

static int eval(render *r, const expr *e, value *out) {
  switch (e->kind) {
    case E_LIT: *out = e->lit; return 0;
    case E_NAME: *out = lookup(r, e->name); return 0;
    case E_RAISE: return eval_raise(r, e);
    case E_NOT: case E_NEG: case E_TEST: case E_FILTER: return eval_unary(r, e, out);
    default: return eval_binary(r, e, out);
  }
}

static int exec_list(render *r, const node *n);

static int exec_for(render *r, const node *n) {
  value it;
  int rc = eval(r, n->e, &it);
  if (rc) return rc;
  size_t count = 0; /* Jinja iterates an undefined value as empty */
  if (it.kind == V_LIST) count = r->n_msgs;
  else if (it.kind == V_STR || it.kind == V_MSG || it.kind == V_LOOP)
    return fail_at(r->d, TTQ_EUNSUPPORTED, n->e->off, "iterating over a %s", type_name(it.kind));
  else if (it.kind != V_UNDEF)
    return fail_at(r->d, TTQ_EINVAL, n->e->off, "'%s' object is not iterable", type_name(it.kind));
  loop_info li = {0, count};
  frame f = {.parent = r->top, .var = n->name, .loop = &li};
  for (size_t i = 0; i < count && !rc; i++) {
    if (++r->iterations > TTQ_CHAT_MAX_ITERATIONS)
      return fail_at(r->d, TTQ_ERANGE, n->off, "more than %u loop iterations",
                     TTQ_CHAT_MAX_ITERATIONS);
    li.index0 = i;
    f.var_v = v_make(V_MSG);
    f.var_v.msg = i;
    f.sets = NULL;
    arena_mark m = arena_get_mark(&r->work);
    r->top = &f;
    rc = exec_list(r, n->body);
    r->top = f.parent;
    arena_release(&r->work, m);
  }
  return rc;
}

static int exec_if(render *r, const node *n) {
  for (const branch *b = n->branches; b; b = b->next) {
    value c;
    int rc = eval(r, b->cond, &c);
    if (rc) return rc;
    if (truthy(r, &c)) return exec_list(r, b->body);
  }
  return exec_list(r, n->otherwise);
}

static int exec_set(render *r, const node *n) {
  binding *b = arena_alloc(&r->work, sizeof *b);
  if (!b) return alloc_fail(r->d, &r->work, n->off);
  b->name = n->name;
  b->next = r->top->sets;
  int rc = eval(r, n->e, &b->v);
  if (!rc) r->top->sets = b;
  return rc;
}

static int exec_node(render *r, const node *n) {
  switch (n->kind) {
    case N_TEXT: return emit_text(r, n->a, n->b);
    case N_FOR: return exec_for(r, n);
    case N_IF: return exec_if(r, n);
    case N_SET: return exec_set(r, n);
    case N_OUT: {
      value v;
      str s;
      int rc = eval(r, n->e, &v);
      if (!rc) rc = to_text(r, &v, n->e->off, &s);
      if (!rc) rc = emit(r, s.p, s.n, n->off);
      return rc;
    }
  }
  return 0;
}

static int exec_list(render *r, const node *n) {
  for (; n; n = n->next) {
    int rc = exec_node(r, n);
    if (rc) return rc;
  }
  return 0;
}

/* ================================================================ entry point */

static int check_args(const char *tmpl, const ttq_chat_msg *msgs, size_t n_msgs, char **out,
                      size_t *len, ttq_diag *d) {
  if (!out) return ttq__fail(d, TTQ_EINVAL, "chat template: no output pointer");
  if (!tmpl) return ttq__fail(d, TTQ_EINVAL, "chat template: the model has no chat template");
  if (n_msgs && !msgs) return ttq__fail(d, TTQ_EINVAL, "chat template: messages are NULL");
  for (size_t i = 0; i < n_msgs; i++)
    if (!msgs[i].role) return ttq__fail(d, TTQ_EINVAL, "chat message %zu has no role", i);
  *len = strnlen(tmpl, (size_t)TTQ_CHAT_MAX_TEMPLATE + 1);
  if (*len > TTQ_CHAT_MAX_TEMPLATE)
    return ttq__fail(d, TTQ_ERANGE, "chat template longer than %u bytes", TTQ_CHAT_MAX_TEMPLATE);
  size_t bad = utf8_check(tmpl, *len);
  if (bad < *len) return fail_at(d, TTQ_EFORMAT, bad, "invalid UTF-8");
  return 0;
}

int ttq_chat_render(const char *tmpl, const ttq_chat_msg *msgs, size_t n_msgs,
                    bool add_generation_prompt, const char *bos_token, const char *eos_token,
                    char **out, size_t *out_len, ttq_diag *d) {
  if (out) *out = NULL;
  if (out_len) *out_len = 0;
  size_t len = 0;
  int rc = check_args(tmpl, msgs, n_msgs, out, &len, d);
  if (rc) return rc;
  /* keep_trailing_newline is off: one final newline of the template is not part of it */
  if (len && tmpl[len - 1] == '\n') len -= (len >= 2 && tmpl[len - 2] == '\r') ? 2 : 1;
  else if (len && tmpl[len - 1] == '\r') len--;

  arena mem = {.limit = PARSE_MEM_LIMIT};
  parser p = {.s = tmpl, .n = len, .mem = &mem, .d = d};
  node *root = NULL;
  rc = parse_template(&p, &root);
  free(p.toks);

  frame top = {0};
  render r = {.s = tmpl, .msgs = msgs, .n_msgs = n_msgs,
              .add_generation_prompt = add_generation_prompt, .bos = bos_token,
              .eos = eos_token, .work = {.limit = TTQ_CHAT_MAX_WORK}, .top = &top, .d = d};
  if (!rc) rc = exec_list(&r, root);
  if (!rc) rc = emit(&r, "", 0, len); /* an empty result still gets its NUL */
  arena_free(&r.work);
  arena_free(&mem);
  if (rc) {
    free(r.out);
    return rc;
  }
  *out = r.out;
  if (out_len) *out_len = r.len;
  return 0;
}
