/* lowrank.c -- truncated SVD factors of every projection, cached on disk; see lowrank.h.
 * Invariant: a ttq_lowrank returned by ttq_lowrank_get has, for every projection, B A + R equal
 * to the checkpoint's weight (up to f32 rounding). */
#include "lowrank.h"

#include <cblas.h>
#include <errno.h>
#include <lapacke.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

static uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  h *= 0xff51afd7ed558ccdull;
  return h ^ (h >> 32);
}

uint64_t ttq_lowrank_key(const ttq_model *m) {
  uint64_t h = 0x54545120u;
  for (int l = 0; l < m->cfg.n_layers; l++)
    for (int p = 0; p < TTQ_N_PROJ; p++) {
      const ttq_tensor *t = ttq_proj_weight(m, l, p);
      h = mix(h, (uint64_t)t->shape[0]);
      h = mix(h, (uint64_t)t->shape[1]);
      h = mix(h, (uint64_t)t->dtype);
      const uint8_t *b = t->data;
      size_t n = t->nbytes / 8, i;
      uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0; /* four lanes for speed */
      for (i = 0; i + 4 <= n; i += 4) {
        uint64_t w[4];
        memcpy(w, b + i * 8, 32);
        a0 = (a0 ^ w[0]) * 0x100000001b3ull;
        a1 = (a1 ^ w[1]) * 0x100000001b3ull;
        a2 = (a2 ^ w[2]) * 0x100000001b3ull;
        a3 = (a3 ^ w[3]) * 0x100000001b3ull;
      }
      for (size_t k = i * 8; k < t->nbytes; k++) a0 = (a0 ^ b[k]) * 0x100000001b3ull;
      h = mix(mix(mix(mix(h, a0), a1), a2), a3);
    }
  return h;
}

static char *cache_dir(void) {
  const char *e = getenv("TTQ_CACHE_DIR");
  if (e && *e) return strdup(e);
  e = getenv("XDG_CACHE_HOME");
  if (e && *e) return ttq__path_join(e, "ttq");
  e = getenv("HOME");
  if (e && *e) return ttq__path_join(e, ".cache/ttq");
  return strdup("/tmp/ttq-cache");
}

char *ttq_lowrank_cache_path(const ttq_model *m, int rank) {
  char *dir = cache_dir(), name[96];
  snprintf(name, sizeof name, "lowrank-%016llx-r%d.bin", (unsigned long long)ttq_lowrank_key(m), rank);
  char *p = dir ? ttq__path_join(dir, name) : NULL;
  free(dir);
  return p;
}

static int mkdirs(const char *path) {
  char *p = strdup(path);
  for (char *s = p + 1; *s; s++)
    if (*s == '/') {
      *s = 0;
      mkdir(p, 0755);
      *s = '/';
    }
  int rc = mkdir(p, 0755) == 0 || errno == EEXIST ? 0 : -1;
  free(p);
  return rc;
}

void ttq_lowrank_free(ttq_lowrank *lr) {
  int n = lr->n_layers * TTQ_N_PROJ;
  for (int i = 0; i < n; i++) {
    if (lr->A) free(lr->A[i]);
    if (lr->B) free(lr->B[i]);
    if (lr->R) free(lr->R[i]);
  }
  free(lr->A), free(lr->B), free(lr->R);
  memset(lr, 0, sizeof *lr);
}

/* Reads the cache file; 0 when it matches this model and rank exactly. */
static int read_cache(const char *path, ttq_lowrank *lr, const ttq_model *m, uint64_t key) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  char magic[8];
  uint64_t k;
  int32_t rank, layers;
  int ok = fread(magic, 8, 1, f) == 1 && !memcmp(magic, "TTQLR001", 8) && fread(&k, 8, 1, f) == 1 &&
           k == key && fread(&rank, 4, 1, f) == 1 && rank == lr->rank && fread(&layers, 4, 1, f) == 1 &&
           layers == m->cfg.n_layers;
  for (int i = 0; ok && i < layers * TTQ_N_PROJ; i++) {
    const ttq_tensor *t = ttq_proj_weight(m, i / TTQ_N_PROJ, i % TTQ_N_PROJ);
    int64_t rc[2];
    ok = fread(rc, 8, 2, f) == 2 && rc[0] == t->shape[0] && rc[1] == t->shape[1];
    if (!ok) break;
    size_t nb = (size_t)rc[0] * rank, na = (size_t)rank * rc[1];
    lr->B[i] = malloc(nb * 4);
    lr->A[i] = malloc(na * 4);
    ok = lr->B[i] && lr->A[i] && fread(lr->B[i], 4, nb, f) == nb && fread(lr->A[i], 4, na, f) == na;
  }
  ok = ok && fgetc(f) == EOF;
  fclose(f);
  return ok ? 0 : -1;
}

static int write_cache(const char *path, const ttq_lowrank *lr, const ttq_model *m, uint64_t key) {
  char *tmp = malloc(strlen(path) + 16);
  sprintf(tmp, "%s.tmp%d", path, (int)getpid());
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    free(tmp);
    return -1;
  }
  int32_t rank = lr->rank, layers = m->cfg.n_layers;
  int ok = fwrite("TTQLR001", 8, 1, f) == 1 && fwrite(&key, 8, 1, f) == 1 &&
           fwrite(&rank, 4, 1, f) == 1 && fwrite(&layers, 4, 1, f) == 1;
  for (int i = 0; ok && i < layers * TTQ_N_PROJ; i++) {
    const ttq_tensor *t = ttq_proj_weight(m, i / TTQ_N_PROJ, i % TTQ_N_PROJ);
    int64_t rc[2] = {t->shape[0], t->shape[1]};
    size_t nb = (size_t)rc[0] * rank, na = (size_t)rank * rc[1];
    ok = fwrite(rc, 8, 2, f) == 2 && fwrite(lr->B[i], 4, nb, f) == nb && fwrite(lr->A[i], 4, na, f) == na;
  }
  ok = (fclose(f) == 0) && ok && rename(tmp, path) == 0; /* atomic: readers never see half */
  if (!ok) unlink(tmp);
  free(tmp);
  return ok ? 0 : -1;
}

/* Top-r SVD of one weight: B = U_r diag(s_r), A = V_r^T. */
static int svd_one(const ttq_tensor *t, int r, float *B, float *A, const ttq_kernels *k) {
  const int64_t rows = t->shape[0], cols = t->shape[1], mn = rows < cols ? rows : cols;
  const size_t rb = t->nbytes / (size_t)rows;
  float *W = malloc((size_t)rows * cols * 4), *S = malloc((size_t)mn * 4);
  float *U = malloc((size_t)rows * mn * 4), *VT = malloc((size_t)mn * cols * 4);
  int rc = -1;
  if (W && S && U && VT) {
    for (int64_t i = 0; i < rows; i++)
      ttq_row_to_f32(k, t->dtype, (const uint8_t *)t->data + (size_t)i * rb, W + (size_t)i * cols, cols);
    lapack_int info = LAPACKE_sgesdd(LAPACK_ROW_MAJOR, 'S', (lapack_int)rows, (lapack_int)cols, W,
                                     (lapack_int)cols, S, U, (lapack_int)mn, VT, (lapack_int)cols);
    if (info == 0) {
      for (int64_t i = 0; i < rows; i++)
        for (int j = 0; j < r; j++) B[(size_t)i * r + j] = U[(size_t)i * mn + j] * S[j];
      memcpy(A, VT, (size_t)r * cols * 4);
      rc = 0;
    }
  }
  free(W), free(S), free(U), free(VT);
  return rc;
}

int ttq_lowrank_get(ttq_lowrank *lr, const ttq_model *m, int rank, int threads, bool *from_cache,
                    ttq_diag *d) {
  memset(lr, 0, sizeof *lr);
  const int n = m->cfg.n_layers * TTQ_N_PROJ;
  if (rank <= 0) return ttq__fail(d, TTQ_EINVAL, "low-rank rank %d must be > 0", rank);
  lr->rank = rank;
  lr->n_layers = m->cfg.n_layers;
  lr->A = calloc((size_t)n, sizeof *lr->A);
  lr->B = calloc((size_t)n, sizeof *lr->B);
  lr->R = calloc((size_t)n, sizeof *lr->R);
  if (!lr->A || !lr->B || !lr->R) {
    ttq_lowrank_free(lr);
    return ttq__fail(d, TTQ_ENOMEM, "out of memory");
  }
  const ttq_kernels *k = ttq_kernels_select(NULL);
  uint64_t key = ttq_lowrank_key(m);
  char *path = ttq_lowrank_cache_path(m, rank);
  bool cached = path && read_cache(path, lr, m, key) == 0;
  if (!cached) {
    for (int i = 0; i < n; i++) { /* drop a partial read */
      free(lr->A[i]), free(lr->B[i]);
      lr->A[i] = lr->B[i] = NULL;
    }
    int failed = 0;
    openblas_set_num_threads(1);
#pragma omp parallel for num_threads(threads > 0 ? threads : omp_get_num_procs()) schedule(dynamic, 1)
    for (int i = 0; i < n; i++) {
      const ttq_tensor *t = ttq_proj_weight(m, i / TTQ_N_PROJ, i % TTQ_N_PROJ);
      lr->B[i] = malloc((size_t)t->shape[0] * rank * 4);
      lr->A[i] = malloc((size_t)rank * t->shape[1] * 4);
      if (!lr->B[i] || !lr->A[i] || svd_one(t, rank, lr->B[i], lr->A[i], k) != 0) {
#pragma omp atomic write
        failed = 1;
      }
    }
    if (failed) {
      free(path);
      ttq_lowrank_free(lr);
      return ttq__fail(d, TTQ_EINVAL, "the SVD of a weight matrix failed (LAPACKE_sgesdd)");
    }
    char *dir = cache_dir();
    if (path && dir && mkdirs(dir) == 0) write_cache(path, lr, m, key); /* best effort */
    free(dir);
  }
  free(path);
  /* R = W - B A, once per load */
  int failed = 0;
#pragma omp parallel for num_threads(threads > 0 ? threads : omp_get_num_procs()) schedule(dynamic, 1)
  for (int i = 0; i < n; i++) {
    const ttq_tensor *t = ttq_proj_weight(m, i / TTQ_N_PROJ, i % TTQ_N_PROJ);
    const int64_t rows = t->shape[0], cols = t->shape[1];
    const size_t rb = t->nbytes / (size_t)rows;
    float *R = lr->R[i] = malloc((size_t)rows * cols * 4);
    if (!R) {
#pragma omp atomic write
      failed = 1;
      continue;
    }
    for (int64_t r = 0; r < rows; r++)
      ttq_row_to_f32(k, t->dtype, (const uint8_t *)t->data + (size_t)r * rb, R + (size_t)r * cols, cols);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)cols, rank, -1.0f,
                lr->B[i], rank, lr->A[i], (int)cols, 1.0f, R, (int)cols);
  }
  if (failed) {
    ttq_lowrank_free(lr);
    return ttq__fail(d, TTQ_ENOMEM, "out of memory for the low-rank residuals");
  }
  if (from_cache) *from_cache = cached;
  return 0;
}
