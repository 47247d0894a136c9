/* benchutil.c -- see benchutil.h. */
#include "benchutil.h"

#include <stdlib.h>
#include <string.h>

int bench_parse_ints(const char *s, int *out, int cap) {
  int k = 0;
  while (*s && k < cap) {
    out[k++] = atoi(s);
    const char *c = strchr(s, ',');
    if (!c) break;
    s = c + 1;
  }
  return k;
}
