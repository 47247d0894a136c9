/* bench-gemm.c -- ttq-bench-gemm: the prefill GEMM variants (shard/gemm.h) against the path
 * forward.c linear() takes today ("current": each thread converts its row slice to f32 into a
 * shared buffer, then one single-threaded cblas_sgemm), on the weight matrices of a real model
 * file (memory-mapped, as in the engine), interleaved in the same run.
 *
 *   ttq-bench-gemm --model FILE [--n 32,128,512] [--threads 1,2] [--rounds 3]
 *                  [--variants current,amx,avx512bf16] [--shapes q,k,gate,down,head]
 *
 * Shapes: q = dim x dim, k = kv x dim, gate = ffn x dim, down = dim x ffn (one matrix per layer,
 * all layers in turn, so the weights come from memory as in a prefill), head = vocab x dim (one
 * matrix, repeated 4 times). Time per matrix includes packing X (bf16 variants) or converting
 * the rows (current); each thread multiplies its own contiguous share of the rows, as linear()
 * does. Prints one line per (shape, n, threads, variant): the best and median of the rounds in
 * ms per matrix, GFLOP/s (2 rows cols n / time) of the best, and the ratio to current.
 * Variant "stream" only reads the matrix (kernels.h stream): the memory roofline of each line
 * (its GFLOP/s is what the product would reach at that read speed).
 * Not a test: run it under the machine's CPU lock. */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchutil.h"
#include "gemm.h"
#include "kernels.h"
#include "model.h"
#include "qmodel.h"

#define MAXL 64

static bool listed(const char *list, const char *name) {
  size_t n = strlen(name);
  for (const char *p = list; (p = strstr(p, name)); p += n)
    if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == 0)) return true;
  return false;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

typedef struct job {
  const ttq_tensor *w[MAXL];
  int nw;
  int64_t rows, cols;
} job;

/* The path of forward.c linear() for n >= 4 tokens, without the fused quantization. */
static void run_current(const job *j, int mi, const float *X, int n, float *Y, float *wbuf,
                        int threads) {
  const ttq_tensor *W = j->w[mi];
  const int64_t rows = j->rows, cols = j->cols;
  const size_t row_bytes = W->nbytes / (size_t)rows;
  const uint8_t *base = W->data;
  const ttq_kernels *k = ttq_kernels_select(NULL);
#pragma omp parallel num_threads(threads)
  {
    int nt = omp_get_num_threads(), id = omp_get_thread_num();
    int64_t per = (rows + nt - 1) / nt, r0 = per * id, r1 = r0 + per < rows ? r0 + per : rows;
    if (r0 < r1) {
      for (int64_t r = r0; r < r1; r++)
        ttq_row_to_f32(k, W->dtype, base + (size_t)r * row_bytes, wbuf + (size_t)r * cols, cols);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, (int)(r1 - r0), (int)cols, 1.0f, X,
                  (int)cols, wbuf + (size_t)r0 * cols, (int)cols, 0.0f, Y + r0, (int)rows);
    }
  }
}

/* The roofline: only read each thread's rows once (kernels.h stream), no arithmetic. */
static uint64_t run_stream(const job *j, int mi, int threads) {
  const ttq_tensor *W = j->w[mi];
  const ttq_kernels *k = ttq_kernels_select(NULL);
  uint64_t x = 0;
#pragma omp parallel num_threads(threads) reduction(^ : x)
  {
    int nt = omp_get_num_threads(), id = omp_get_thread_num();
    size_t per = (W->nbytes + (size_t)nt - 1) / (size_t)nt, b0 = per * (size_t)id;
    size_t b1 = b0 + per < W->nbytes ? b0 + per : W->nbytes;
    if (b0 < b1) x ^= k->stream((const uint8_t *)W->data + b0, b1 - b0);
  }
  return x;
}

static void run_gemm(ttq_gemm_isa isa, const job *j, int mi, const float *X, int n, float *Y,
                     void *xbuf, void *work[], int threads) {
  const ttq_tensor *W = j->w[mi];
  const int64_t rows = j->rows, cols = j->cols;
  const size_t row_bytes = W->nbytes / (size_t)rows;
  ttq_gemm_x x;
  if (ttq_gemm_x_init(&x, isa, X, n, cols, xbuf)) abort();
#pragma omp parallel num_threads(threads)
  {
    int nt = omp_get_num_threads(), id = omp_get_thread_num();
    ttq_gemm_x_pack(&x, id, nt);
#pragma omp barrier
    int64_t per = (rows + nt - 1) / nt, r0 = per * id, r1 = r0 + per < rows ? r0 + per : rows;
    if (r0 < r1 &&
        ttq_gemm_rows_x(&x, W->dtype, W->data, row_bytes, r0, r1, Y + r0, rows, work[id]))
      abort();
  }
}

int main(int argc, char **argv) {
  const char *model = NULL, *variants = "current,amx,avx512bf16", *shapes = "q,k,gate,down,head";
  int ns[8] = {32, 128, 512}, nn = 3, ths[4] = {1, 2}, nth = 2, rounds = 3;
  for (int i = 1; i < argc; i += 2) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) goto usage;
    if (!strcmp(a, "--model")) model = v;
    else if (!strcmp(a, "--n")) nn = bench_parse_ints(v, ns, 8);
    else if (!strcmp(a, "--threads")) nth = bench_parse_ints(v, ths, 4);
    else if (!strcmp(a, "--rounds")) rounds = atoi(v);
    else if (!strcmp(a, "--variants")) variants = v;
    else if (!strcmp(a, "--shapes")) shapes = v;
    else goto usage;
  }
  if (!model || rounds < 1 || rounds > 100) goto usage;
  openblas_set_num_threads(1);
  ttq_model *m = NULL;
  ttq_diag d = {0};
  if (ttq_model_load(model, &m, &d)) {
    fprintf(stderr, "ttq-bench-gemm: %s\n", d.msg);
    return 1;
  }
  const char *vn[] = {"current", "sgemm", "avx512bf16", "amx", "stream"};
  int vi[5], nv = 0;
  uint64_t sink = 0;
  for (int v = 0; v < 5; v++) {
    if (!listed(variants, vn[v])) continue;
    if (v > 0 && v < 4 && ttq_gemm_select(vn[v]) < 0) {
      fprintf(stderr, "note: variant %s not supported here, skipped\n", vn[v]);
      continue;
    }
    vi[nv++] = v;
  }
  const char *sn[] = {"q", "k", "gate", "down", "head"};
  const int sp[] = {TTQ_P_Q, TTQ_P_K, TTQ_P_GATE, TTQ_P_DOWN, -1};
  int maxn = 0, maxth = 0;
  for (int i = 0; i < nn; i++) maxn = ns[i] > maxn ? ns[i] : maxn;
  for (int i = 0; i < nth; i++) maxth = ths[i] > maxth ? ths[i] : maxth;
  printf("%-5s %5s x %-5s %4s %2s %-10s %9s %9s %8s %7s\n", "shape", "rows", "cols", "n", "th",
         "variant", "best ms", "median ms", "GFLOP/s", "vs cur");
  for (int s = 0; s < 5; s++) {
    if (!listed(shapes, sn[s])) continue;
    job j = {.nw = 0};
    if (sp[s] < 0) {
      for (int i = 0; i < 4; i++) j.w[j.nw++] = &m->head;
    } else {
      for (int l = 0; l < m->cfg.n_layers && j.nw < MAXL; l++)
        j.w[j.nw++] = ttq_proj_weight(m, l, sp[s]);
    }
    j.rows = j.w[0]->shape[0], j.cols = j.w[0]->shape[1];
    float *X = NULL, *Y = NULL, *wbuf = NULL;
    void *xbuf = NULL, *work[4] = {0};
    size_t xb = ttq_gemm_x_bytes(TTQ_GEMM_AMX, maxn, j.cols);
    if (posix_memalign((void **)&X, 64, (size_t)maxn * j.cols * 4) ||
        posix_memalign((void **)&Y, 64, (size_t)maxn * j.rows * 4) ||
        posix_memalign((void **)&wbuf, 64, (size_t)j.rows * j.cols * 4) ||
        posix_memalign(&xbuf, 64, xb ? xb : 64))
      return 1;
    for (int t = 0; t < maxth; t++) {
      size_t wk = ttq_gemm_work_bytes(TTQ_GEMM_AMX, j.w[0]->dtype, maxn, j.rows, j.cols);
      if (posix_memalign(&work[t], 64, wk ? wk : 64)) return 1;
    }
    uint64_t rng = 7;
    for (size_t i = 0; i < (size_t)maxn * j.cols; i++) {
      rng = rng * 6364136223846793005ull + 1442695040888963407ull;
      X[i] = (float)((double)(rng >> 11) / 9007199254740992.0 * 2 - 1);
    }
    memset(wbuf, 0, (size_t)j.rows * j.cols * 4);
    for (int a = 0; a < nn; a++)
      for (int b = 0; b < nth; b++) {
        int n = ns[a], th = ths[b];
        double t[5][100];
        for (int r = 0; r < rounds; r++)
          for (int v = 0; v < nv; v++) { /* interleaved: every round runs every variant */
            double t0 = omp_get_wtime();
            for (int mi = 0; mi < j.nw; mi++) {
              if (vi[v] == 0) run_current(&j, mi, X, n, Y, wbuf, th);
              else if (vi[v] == 4) sink ^= run_stream(&j, mi, th);
              else run_gemm((ttq_gemm_isa)ttq_gemm_select(vn[vi[v]]), &j, mi, X, n, Y, xbuf,
                            work, th);
            }
            t[v][r] = (omp_get_wtime() - t0) / j.nw;
          }
        double cur = 0;
        for (int v = 0; v < nv; v++) {
          qsort(t[v], (size_t)rounds, sizeof(double), cmp_d);
          if (vi[v] == 0) cur = t[v][0];
          double gf = 2.0 * (double)j.rows * (double)j.cols * n / t[v][0] / 1e9;
          printf("%-5s %5lld x %-5lld %4d %2d %-10s %9.3f %9.3f %8.1f", sn[s], (long long)j.rows,
                 (long long)j.cols, n, th, vn[vi[v]], t[v][0] * 1e3, t[v][rounds / 2] * 1e3, gf);
          if (cur > 0) printf(" %6.2fx", cur / t[v][0]);
          printf("\n");
        }
        fflush(stdout);
      }
    free(X), free(Y), free(wbuf), free(xbuf);
    for (int t = 0; t < maxth; t++) free(work[t]);
  }
  ttq_model_free(m);
  return sink == 42; /* keeps the stream reads */
usage:
  fprintf(stderr, "usage: ttq-bench-gemm --model FILE [--n 32,128,512] [--threads 1,2] "
                  "[--rounds R] [--variants current,sgemm,amx,avx512bf16,stream] "
                  "[--shapes q,k,gate,down,head]\n");
  return 2;
}
