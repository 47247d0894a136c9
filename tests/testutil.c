/* testutil.c -- paths to test data, temp dirs, .npy and gzip readers, a PRNG. */
#include "test.h"

#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char *join(const char *a, const char *b) {
  size_t n = strlen(a) + strlen(b) + 2;
  char *p = malloc(n);
  snprintf(p, n, "%s/%s", a, b);
  return p;
}

char *test_src_path(const char *rel) { return join(TTQ_SOURCE_DIR, rel); }

char *test_shared_path(const char *rel) {
  const char *root = getenv("TTQ_SHARED");
  if (!root || !*root) root = TTQ_SHARED_DEFAULT;
  char *p = join(root, rel);
  struct stat st;
  if (stat(p, &st) != 0) {
    free(p);
    return NULL;
  }
  return p;
}

char *test_tmpdir(void) {
  const char *base = getenv("TMPDIR");
  if (!base || !*base) base = "/tmp";
  char *p = join(base, "ttq-test-XXXXXX");
  if (!mkdtemp(p)) {
    free(p);
    return NULL;
  }
  return p;
}

void test_rmtree(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) {
    unlink(dir);
    return;
  }
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char *p = join(dir, e->d_name);
    struct stat st;
    if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
      test_rmtree(p);
    else
      unlink(p);
    free(p);
  }
  closedir(d);
  rmdir(dir);
}

int test_write_file(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  size_t w = fwrite(data, 1, len, f);
  return (fclose(f) == 0 && w == len) ? 0 : -1;
}

int test_read_npy_f32(const char *path, float **data, int *ndim, long dims[4]) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  unsigned char pre[10];
  if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) goto bad;
  size_t hlen;
  if (pre[6] == 1) {
    hlen = pre[8] | (pre[9] << 8);
  } else {
    unsigned char x[2];
    if (fread(x, 1, 2, f) != 2) goto bad;
    hlen = pre[8] | (pre[9] << 8) | ((size_t)x[0] << 16) | ((size_t)x[1] << 24);
  }
  char *h = calloc(1, hlen + 1);
  if (fread(h, 1, hlen, f) != hlen || !strstr(h, "'<f4'") || strstr(h, "'fortran_order': True")) {
    free(h);
    goto bad;
  }
  char *s = strstr(h, "'shape': (");
  if (!s) {
    free(h);
    goto bad;
  }
  s += 10;
  *ndim = 0;
  long total = 1;
  while (*s && *s != ')' && *ndim < 4) {
    long v = strtol(s, &s, 10);
    dims[(*ndim)++] = v;
    total *= v;
    while (*s == ',' || *s == ' ') s++;
  }
  free(h);
  *data = malloc((size_t)total * 4);
  if (fread(*data, 4, (size_t)total, f) != (size_t)total) {
    free(*data);
    goto bad;
  }
  fclose(f);
  return 0;
bad:
  fclose(f);
  return -1;
}

char *test_read_gz(const char *path, size_t *len) {
  gzFile g = gzopen(path, "rb");
  if (!g) return NULL;
  size_t cap = 1 << 20, n = 0;
  char *buf = malloc(cap + 1);
  for (;;) {
    int r = gzread(g, buf + n, (unsigned)(cap - n));
    if (r < 0) {
      free(buf);
      gzclose(g);
      return NULL;
    }
    n += (size_t)r;
    if (r == 0) break;
    if (n == cap) {
      cap *= 2;
      buf = realloc(buf, cap + 1);
    }
  }
  gzclose(g);
  buf[n] = 0;
  if (len) *len = n;
  return buf;
}

uint64_t test_rand_u64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

float test_rand_f32(uint64_t *s) { return (float)((double)(test_rand_u64(s) >> 11) / 9007199254740992.0 * 2.0 - 1.0); }
