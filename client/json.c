/* json.c -- JSON string escaping and number printing for --json output (see json.h).
 * Invariant: every byte written forms valid JSON text in UTF-8 whatever the input bytes. */
#include "json.h"

#include <math.h>
#include <stdint.h>

/* Length of the well-formed UTF-8 sequence at s (at most n bytes left), 0 when malformed:
 * overlong forms, surrogates and code points above U+10FFFF are malformed. */
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t len;
  uint32_t cp, min;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) len = 2, cp = c & 0x1f, min = 0x80;
  else if (c >= 0xe0 && c <= 0xef) len = 3, cp = c & 0x0f, min = 0x800;
  else if (c >= 0xf0 && c <= 0xf4) len = 4, cp = c & 0x07, min = 0x10000;
  else return 0;
  if (len > n) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return len;
}

void ttqc_json_strn(FILE *f, const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  putc('"', f);
  for (size_t i = 0; i < n;) {
    unsigned c = p[i];
    switch (c) {
    case '"': fputs("\\\"", f); i++; continue;
    case '\\': fputs("\\\\", f); i++; continue;
    case '\n': fputs("\\n", f); i++; continue;
    case '\r': fputs("\\r", f); i++; continue;
    case '\t': fputs("\\t", f); i++; continue;
    case '\b': fputs("\\b", f); i++; continue;
    case '\f': fputs("\\f", f); i++; continue;
    default: break;
    }
    if (c < 0x20 || c == 0x7f) {
      fprintf(f, "\\u%04x", c);
      i++;
      continue;
    }
    size_t len = utf8_len(p + i, n - i);
    if (len == 0) {
      fputs("\\ufffd", f);
      i++;
      continue;
    }
    fwrite(p + i, 1, len, f);
    i += len;
  }
  putc('"', f);
}

void ttqc_json_str(FILE *f, const char *s) {
  if (!s) fputs("null", f);
  else {
    size_t n = 0;
    while (s[n]) n++;
    ttqc_json_strn(f, s, n);
  }
}

void ttqc_json_num(FILE *f, double v) {
  if (!isfinite(v)) fputs("null", f);
  else if (v == floor(v) && fabs(v) < 1e15) fprintf(f, "%.0f", v);
  else fprintf(f, "%.10g", v);
}

void ttqc_json_float(FILE *f, float v) {
  if (!isfinite(v)) fputs("null", f);
  else fprintf(f, "%.7g", (double)v);
}

void ttqc_json_key(FILE *f, const char *key, int first) {
  if (!first) putc(',', f);
  putc('"', f);
  fputs(key, f);
  fputs("\":", f);
}
