/* benchutil.h -- what the benchmark programs (bench-*.c; not tests) share. */
#ifndef TTQ_BENCHUTIL_H
#define TTQ_BENCHUTIL_H

/* Parses a comma-separated list of integers ("32,128,512") into out[0..cap); returns how many
 * were read. Can't fail: a malformed entry reads as atoi does. */
int bench_parse_ints(const char *s, int *out, int cap);

#endif
