/* ring.c -- a tiny MPI self-check for multi-host runs (tests/cli/mpi_netns.sh builds it with
 * mpicc at test time; CMake does not build it).
 *
 *   mpirun ... ring [BYTES [SECONDS]]
 *
 * Every rank passes a BYTES-long buffer (default 1 MiB, above the TCP BTL's eager limit, so
 * the rendezvous protocol is used) to its right neighbour around the ring and checks what it
 * got from its left neighbour, then an MPI_Allreduce of a vector is checked against the closed
 * form; with SECONDS > 0 this repeats, 10 ms apart, until that many seconds have passed (a
 * job that keeps talking, for fault tests). Rank 0 then prints one line:
 *
 *   ring ok: ranks=P bytes=B rounds=R netns=K
 *
 * where K is the number of distinct network namespaces the ranks ran in (from the inode of
 * /proc/self/ns/net). Any mismatch prints "ring FAIL: ..." and exits 1.
 */
#define _POSIX_C_SOURCE 200809L
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static unsigned char pattern(int rank, size_t i, int round) {
  return (unsigned char)((size_t)rank * 131u + i * 7u + (size_t)round * 13u);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  size_t bytes = argc > 1 ? strtoull(argv[1], NULL, 10) : (size_t)1 << 20;
  double seconds = argc > 2 ? atof(argv[2]) : 0.0;
  if (bytes == 0) bytes = 1;

  struct stat st;
  unsigned long long ns = stat("/proc/self/ns/net", &st) == 0 ? (unsigned long long)st.st_ino : 0;
  unsigned long long *all = malloc(sizeof *all * (size_t)size);
  unsigned char *out = malloc(bytes), *in = malloc(bytes);
  enum { NV = 1024 };
  double vec[NV], sum[NV];
  if (!all || !out || !in) {
    fprintf(stderr, "ring FAIL: rank %d: out of memory\n", rank);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Gather(&ns, 1, MPI_UNSIGNED_LONG_LONG, all, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);

  int right = (rank + 1) % size, left = (rank + size - 1) % size, bad = 0, round = 0;
  double t0 = MPI_Wtime();
  do {
    for (size_t i = 0; i < bytes; i++) out[i] = pattern(rank, i, round);
    MPI_Sendrecv(out, (int)bytes, MPI_BYTE, right, round, in, (int)bytes, MPI_BYTE, left, round,
                 MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    for (size_t i = 0; i < bytes && !bad; i++)
      if (in[i] != pattern(left, i, round)) {
        fprintf(stderr, "ring FAIL: rank %d round %d: byte %zu from rank %d wrong\n", rank, round,
                i, left);
        bad = 1;
      }
    for (int i = 0; i < NV; i++) vec[i] = rank + i + round;
    MPI_Allreduce(vec, sum, NV, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    for (int i = 0; i < NV && !bad; i++) {
      double want = (double)size * (size - 1) / 2 + (double)size * (i + round);
      if (sum[i] != want) {
        fprintf(stderr, "ring FAIL: rank %d round %d: allreduce[%d] = %g, want %g\n", rank,
                round, i, sum[i], want);
        bad = 1;
      }
    }
    round++;
    /* every rank takes rank 0's decision, so all leave the loop together */
    int more = MPI_Wtime() - t0 < seconds;
    MPI_Bcast(&more, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (!more) break;
    nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
  } while (1);

  int anybad = 0;
  MPI_Reduce(&bad, &anybad, 1, MPI_INT, MPI_MAX, 0, MPI_COMM_WORLD);
  if (rank == 0) {
    int distinct = 0;
    for (int i = 0; i < size; i++) {
      int seen = 0;
      for (int j = 0; j < i; j++) seen |= all[j] == all[i];
      distinct += !seen;
    }
    if (anybad)
      printf("ring FAIL: ranks=%d bytes=%zu rounds=%d netns=%d\n", size, bytes, round, distinct);
    else
      printf("ring ok: ranks=%d bytes=%zu rounds=%d netns=%d\n", size, bytes, round, distinct);
    fflush(stdout);
  }
  free(all);
  free(out);
  free(in);
  MPI_Finalize();
  return anybad ? 1 : 0;
}
