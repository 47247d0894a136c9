/* util.h -- internal helpers shared by the shard modules: diagnostics, memory-mapped files,
 * half-precision conversions, checked arithmetic. Nothing here holds global state. */
#ifndef TTQ_UTIL_H
#define TTQ_UTIL_H

#include "ttq.h"
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>

/* Fill diag (if non-NULL) with a printf-style message; returns `code` so callers can write
 * `return ttq__fail(d, TTQ_EFORMAT, "%s: ...", path);`. */
int ttq__fail(ttq_diag *d, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A read-only memory map of a whole file. An empty file maps to data == NULL, size == 0. */
typedef struct ttq_mapfile {
  const uint8_t *data;
  size_t size;
  char *path; /* owned copy */
} ttq_mapfile;

int ttq__map_file(const char *path, ttq_mapfile *out, ttq_diag *d);
void ttq__unmap_file(ttq_mapfile *m);

/* n bytes, 2 MiB-aligned, or NULL; from 2 MiB up, rounded up to whole 2 MiB pages (less than
 * 2 MiB more) and advised as transparent huge pages (advice only: 4 KiB pages still work).
 * Free with free(). For memory streamed again and again (weights, the bandwidth probe): one
 * TLB entry per 2 MiB instead of 512. */
void *ttq__alloc_huge(size_t n);

/* Read a whole (small) file into a NUL-terminated buffer; caller frees with free(). */
int ttq__read_file(const char *path, char **out, size_t *len, ttq_diag *d);

/* Checked size arithmetic: return false on overflow. */
static inline bool ttq__mul_ok(size_t a, size_t b, size_t *r) {
  return !__builtin_mul_overflow(a, b, r);
}
static inline bool ttq__add_ok(size_t a, size_t b, size_t *r) {
  return !__builtin_add_overflow(a, b, r);
}

static inline float ttq__bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
/* Round to nearest even; NaN stays NaN. */
static inline uint16_t ttq__f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
float ttq__f16_to_f32(uint16_t h);
uint16_t ttq__f32_to_f16(float f);

/* Convert n elements of a tensor row (F32/F16/BF16/Q8_0) to f32. For Q8_0, `src` must point
 * at a block boundary and n be a multiple of 32. */
void ttq__to_f32(ttq_dtype t, const void *src, float *dst, int64_t n);

/* Path join into a malloc'd string; caller frees. Returns NULL on allocation failure. */
char *ttq__path_join(const char *dir, const char *name);

#endif
