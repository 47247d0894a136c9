/* json.h -- the little JSON writing the client needs (--json output): strings with every
 * character JSON requires escaped, numbers, and null for unset values. Writers go straight to
 * a FILE; they never allocate and keep no state. Text is expected to be UTF-8: a byte that
 * does not start a well-formed UTF-8 sequence is written as \ufffd, so the output is always
 * valid JSON and valid UTF-8. */
#ifndef TTQC_JSON_H
#define TTQC_JSON_H

#include <stddef.h>
#include <stdio.h>

/* Writes s[0..n) as a quoted JSON string. */
void ttqc_json_strn(FILE *f, const char *s, size_t n);
/* Writes a NUL-terminated string, or null when s is NULL. */
void ttqc_json_str(FILE *f, const char *s);
/* Writes a number: integers exactly, others with 10 significant digits; null when it is not
 * finite. */
void ttqc_json_num(FILE *f, double v);
/* The same for a value that was a float: 7 significant digits, so 0.4f prints as 0.4. */
void ttqc_json_float(FILE *f, float v);
/* Writes "key": (the key is trusted ASCII) preceded by a comma unless first. */
void ttqc_json_key(FILE *f, const char *key, int first);

#endif
