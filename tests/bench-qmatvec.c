/* bench-qmatvec.c -- ttq-bench-qmatvec: the decode kernel (ttq_qmatvec_qact) per
 * code width and activation mode, against the scalar kernel (the in-repo baseline) and against
 * the memory: how much compute headroom each width has over the read bandwidth decode needs.
 *
 *   ttq-bench-qmatvec [--cols 2048] [--bits 8,5,4,3,2] [--rounds 5] [--threads 1]
 *
 * Per width, group 32, random codes:
 *   cache   a matrix of ~512 KB (L2-resident), multiplied again and again: the kernel's compute
 *           speed, in GB/s of packed bytes (codes + d + z) and in weights per ns;
 *   memory  a 256 MB matrix, streamed once per product as in a decode step, by --threads
 *           threads (default 1), each its contiguous share of the rows as decode splits them;
 *   stream  the same 256 MB read by kernels.h stream on as many threads: their read bandwidth.
 * Modes: scalar (the reference kernel), f32, int16 and int8 activations (TTQ_QACT; the AVX-512
 * VNNI kernels; skipped where the CPU lacks them). Each line prints the best of the rounds and
 * the ratio to the scalar kernel (cache) or to stream (memory). A width whose cache speed is not
 * well above the stream speed is compute-bound in decode.
 * Not a test: run it under the machine's CPU lock. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchutil.h"
#include "kernels.h"
#include "quant.h"

/* Random packed codes and small positive scales: the kernel's speed does not depend on them. */
static void fill_random(ttq_qmatrix *q, uint64_t seed) {
  size_t cb = (size_t)q->rows * (size_t)q->cols / 8 * (size_t)q->bits;
  size_t nd = (size_t)q->rows * (size_t)(q->cols / q->group);
  for (size_t i = 0; i < cb; i++) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    q->codes[i] = (uint8_t)(seed >> 56);
  }
  for (size_t i = 0; i < nd; i++) q->d[i] = 0x2000, q->z[i] = 1; /* fp16 2^-7, zero B + 1 */
}

/* Best seconds per product over `rounds`, each round `reps` products of rows [0, rows), split
 * in nt contiguous shares as decode splits them. */
static double time_products(const ttq_kernels *k, const ttq_qmatrix *q, const ttq_qact *a,
                            float *y, int reps, int rounds, int nt) {
  double best = 1e30;
  for (int r = 0; r < rounds; r++) {
    double t0 = omp_get_wtime();
#pragma omp parallel num_threads(nt)
    {
      const int64_t per = (q->rows + nt - 1) / nt, r0 = per * omp_get_thread_num();
      const int64_t r1 = r0 + per < q->rows ? r0 + per : q->rows;
      for (int i = 0; i < reps; i++) ttq_qmatvec_qact(k, q, a, y, r0, r1);
    }
    double t = (omp_get_wtime() - t0) / reps;
    if (t < best) best = t;
  }
  return best;
}

int main(int argc, char **argv) {
  int64_t cols = 2048;
  int bits[8] = {8, 5, 4, 3, 2}, nbits = 5, rounds = 5, nt = 1;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--cols") && i + 1 < argc) cols = atoll(argv[++i]);
    else if (!strcmp(argv[i], "--bits") && i + 1 < argc) nbits = bench_parse_ints(argv[++i], bits, 8);
    else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) nt = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: ttq-bench-qmatvec [--cols N] [--bits 8,5,4,3,2] [--rounds R] [--threads T]\n");
      return 2;
    }
  }
  if (cols < 32 || cols % 32 || cols > 16384 || rounds < 1 || nt < 1 || nt > 64) {
    fprintf(stderr, "ttq-bench-qmatvec: --cols must be a multiple of 32 in [32, 16384], --rounds >= 1, --threads in [1, 64]\n");
    return 2;
  }
  const ttq_kernels *best = ttq_kernels_select(NULL), *scalar = ttq_kernels_select("scalar");
  const char *modes[] = {"scalar", "f32", "int16", "int8"};
  const bool vnni = __builtin_cpu_supports("avx512vnni") && !strcmp(best->name, "avx512");
  float *x = malloc((size_t)cols * sizeof *x);
  void *buf = aligned_alloc(64, (ttq_qact_bytes(cols) + 63) / 64 * 64);
  if (!x || !buf) return 1;
  for (int64_t i = 0; i < cols; i++) x[i] = (float)((i * 7919) % 2001 - 1000) / 1000.0f;
  printf("kernels %s, cols %lld, group 32, cache: one thread, memory: %d, best of %d rounds\n",
         best->name, (long long)cols, nt, rounds);
  printf("%-5s %-7s %-6s %10s %9s %8s\n", "bits", "where", "mode", "GB/s", "weight/ns", "ratio");
  for (int bi = 0; bi < nbits; bi++) {
    const int b = bits[bi];
    ttq_diag d = {0};
    ttq_qmatrix qc, qm;
    /* cache: ~512 KB; memory: 256 MB of packed rows */
    const double row_bytes = (double)cols * b / 8 + (double)cols / 32 * 4;
    int64_t rc = (int64_t)(512e3 / row_bytes), rm = (int64_t)(256e6 / row_bytes);
    if (rc < 1) rc = 1;
    if (ttq_qmatrix_alloc(&qc, rc, cols, b, 32, &d) || ttq_qmatrix_alloc(&qm, rm, cols, b, 32, &d)) {
      fprintf(stderr, "ttq-bench-qmatvec: %s\n", d.msg);
      return 1;
    }
    float *y = malloc((size_t)rm * sizeof *y);
    if (!y) return 1;
    fill_random(&qc, 1), fill_random(&qm, 2);
    const double bc = (double)ttq_qmatrix_bytes(&qc), bm = (double)ttq_qmatrix_bytes(&qm);
    double scalar_t = 0;
    for (int mo = 0; mo < 4; mo++) {
      if (mo > 0 && !vnni) continue;
      const ttq_kernels *k = mo == 0 ? scalar : best;
      if (mo > 0) setenv("TTQ_QACT", modes[mo], 1);
      ttq_qact a;
      ttq_qact_prepare(k, &qc, x, buf, &a);
      const int reps = (int)(2e8 / bc) + 1;
      double t = time_products(k, &qc, &a, y, mo == 0 ? reps / 20 + 1 : reps, rounds, 1);
      if (mo == 0) scalar_t = t;
      printf("%-5d %-7s %-6s %10.1f %9.2f %7.2fx\n", b, "cache", modes[mo], bc / t / 1e9,
             (double)qc.rows * cols / t / 1e9, scalar_t / t);
      if (mo == 0) continue;
      ttq_qact_prepare(k, &qm, x, buf, &a);
      double tm = time_products(k, &qm, &a, y, 1, rounds, nt);
      double ts = 1e30;
      for (int r = 0; r < rounds; r++) {
        double t0 = omp_get_wtime();
        const size_t codes = (size_t)qm.rows * (size_t)cols / 8 * (size_t)b;
#pragma omp parallel num_threads(nt)
        {
          const size_t per = (codes / (size_t)nt + 63) / 64 * 64, o = per * (size_t)omp_get_thread_num();
          volatile uint64_t sink = o < codes ? best->stream(qm.codes + o, o + per < codes ? per : codes - o) : 0;
          (void)sink;
        }
        double tt = (omp_get_wtime() - t0) * bm / (double)codes; /* per bm bytes */
        if (tt < ts) ts = tt;
      }
      printf("%-5d %-7s %-6s %10.1f %9.2f %7.2fx of stream %.1f GB/s\n", b, "memory", modes[mo],
             bm / tm / 1e9, (double)qm.rows * cols / tm / 1e9, ts / tm, bm / ts / 1e9);
    }
    unsetenv("TTQ_QACT");
    ttq_qmatrix_free(&qc), ttq_qmatrix_free(&qm);
    free(y);
  }
  free(x), free(buf);
  return 0;
}
