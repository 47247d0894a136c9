/* util.c -- diagnostics, memory maps, half-precision conversion, dtype sizes.
 * Invariant: nothing here keeps state between calls. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

const char *ttq_strerror(int code) {
  switch (code) {
  case TTQ_OK: return "ok";
  case TTQ_EINVAL: return "invalid argument";
  case TTQ_EFORMAT: return "malformed data";
  case TTQ_EIO: return "i/o error";
  case TTQ_ENOMEM: return "out of memory";
  case TTQ_EUNSUPPORTED: return "unsupported";
  case TTQ_ENOTFOUND: return "not found";
  case TTQ_ERANGE: return "out of range";
  default: return "unknown error";
  }
}

int ttq__fail(ttq_diag *d, int code, const char *fmt, ...) {
  if (d) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->msg, sizeof d->msg, fmt, ap);
    va_end(ap);
    d->code = code;
  }
  return code;
}

const char *ttq_dtype_name(ttq_dtype t) {
  switch (t) {
  case TTQ_F32: return "F32";
  case TTQ_F16: return "F16";
  case TTQ_BF16: return "BF16";
  case TTQ_Q8_0: return "Q8_0";
  default: return "?";
  }
}

size_t ttq_dtype_bytes(ttq_dtype t, int64_t n) {
  if (n < 0) return 0;
  size_t r;
  switch (t) {
  case TTQ_F32: return ttq__mul_ok((size_t)n, 4, &r) ? r : 0;
  case TTQ_F16:
  case TTQ_BF16: return ttq__mul_ok((size_t)n, 2, &r) ? r : 0;
  case TTQ_Q8_0:
    if (n % 32) return 0;
    return ttq__mul_ok((size_t)n / 32, 34, &r) ? r : 0;
  default: return 0;
  }
}

int64_t ttq_tensor_numel(const ttq_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
  return n;
}

int ttq__map_file(const char *path, ttq_mapfile *out, ttq_diag *d) {
  memset(out, 0, sizeof *out);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ttq__fail(d, TTQ_EIO, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return ttq__fail(d, TTQ_EIO, "%s: cannot stat: %s", path, strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return ttq__fail(d, TTQ_EIO, "%s: not a regular file", path);
  }
  out->path = strdup(path);
  if (!out->path) {
    close(fd);
    return ttq__fail(d, TTQ_ENOMEM, "%s: out of memory", path);
  }
  out->size = (size_t)st.st_size;
  if (out->size > 0) {
    void *p = mmap(NULL, out->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      close(fd);
      free(out->path);
      out->path = NULL;
      return ttq__fail(d, TTQ_EIO, "%s: mmap failed: %s", path, strerror(e));
    }
    out->data = p;
  }
  close(fd);
  return 0;
}

void ttq__unmap_file(ttq_mapfile *m) {
  if (m->data) munmap((void *)m->data, m->size);
  free(m->path);
  memset(m, 0, sizeof *m);
}

void *ttq__alloc_huge(size_t n) {
  const size_t huge = (size_t)2 << 20;
  if (n >= huge && n <= SIZE_MAX - huge) n = (n + huge - 1) / huge * huge; /* no 4 KiB tail */
  void *p = NULL;
  if (posix_memalign(&p, huge, n ? n : 1) != 0) return NULL;
#ifdef MADV_HUGEPAGE
  if (n >= huge) (void)madvise(p, n, MADV_HUGEPAGE);
#endif
  return p;
}

int ttq__read_file(const char *path, char **out, size_t *len, ttq_diag *d) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return ttq__fail(d, TTQ_EIO, "%s: cannot open: %s", path, strerror(errno));
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap + 1);
  if (!buf) {
    fclose(f);
    return ttq__fail(d, TTQ_ENOMEM, "%s: out of memory", path);
  }
  for (;;) {
    size_t r = fread(buf + n, 1, cap - n, f);
    n += r;
    if (n < cap) break;
    char *nb = realloc(buf, cap * 2 + 1);
    if (!nb) {
      free(buf);
      fclose(f);
      return ttq__fail(d, TTQ_ENOMEM, "%s: out of memory", path);
    }
    buf = nb;
    cap *= 2;
  }
  int err = ferror(f);
  fclose(f);
  if (err) {
    free(buf);
    return ttq__fail(d, TTQ_EIO, "%s: read error", path);
  }
  buf[n] = 0;
  *out = buf;
  if (len) *len = n;
  return 0;
}

float ttq__f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else { /* subnormal: normalize */
      exp = 127 - 15 + 1;
      while (!(man & 0x400)) {
        man <<= 1;
        exp--;
      }
      man &= 0x3ff;
      u = sign | (exp << 23) | (man << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  memcpy(&f, &u, 4);
  return f;
}

uint16_t ttq__f32_to_f16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000;
  int32_t exp = (int32_t)((u >> 23) & 0xff);
  uint32_t man = u & 0x7fffff;
  if (exp == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
  int32_t e = exp - 127 + 15;
  if (e >= 31) return (uint16_t)(sign | 0x7c00);
  if (e <= 0) {
    if (e < -10) return (uint16_t)sign;
    man |= 0x800000;
    uint32_t shift = (uint32_t)(14 - e);
    uint32_t half = man >> shift;
    uint32_t rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) half++;
    return (uint16_t)(sign | half);
  }
  uint32_t half = sign | ((uint32_t)e << 10) | (man >> 13);
  uint32_t rem = man & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++; /* may carry into exponent: ok */
  return (uint16_t)half;
}

void ttq__to_f32(ttq_dtype t, const void *src, float *dst, int64_t n) {
  switch (t) {
  case TTQ_F32: memcpy(dst, src, (size_t)n * 4); break;
  case TTQ_F16: {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = ttq__f16_to_f32(s[i]);
    break;
  }
  case TTQ_BF16: {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = ttq__bf16_to_f32(s[i]);
    break;
  }
  case TTQ_Q8_0: {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n; i += 32, b += 34) {
      uint16_t hs;
      memcpy(&hs, b, 2);
      float s = ttq__f16_to_f32(hs);
      for (int j = 0; j < 32; j++) dst[i + j] = s * (float)(int8_t)b[2 + j];
    }
    break;
  }
  default: break;
  }
}

char *ttq__path_join(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *p = malloc(a + b + 2);
  if (!p) return NULL;
  memcpy(p, dir, a);
  size_t k = a;
  if (a && dir[a - 1] != '/') p[k++] = '/';
  memcpy(p + k, name, b + 1);
  return p;
}
