/* comm.c -- MPI collectives for the shard library and per-rank model loading; see comm.h.
 * Contract: every rank calls the collectives in the same order (the forward pass guarantees
 * it: same tokens, same layers); a failing rank aborts the job from main (no rank waits
 * forever on a peer that left). */
#include "comm.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static struct {
  bool mpi;
  bool agreed_failure; /* every rank knows the command failed: exit without MPI_Abort */
  int rank, size;
  float *gather_buf;
  size_t gather_len;
} g_comm = {false, false, 0, 1, NULL, 0};

void ttqd_comm_set(bool mpi, int rank, int size) {
  g_comm.mpi = mpi;
  g_comm.rank = rank;
  g_comm.size = size;
}
int ttqd_comm_rank(void) { return g_comm.rank; }
int ttqd_comm_size(void) { return g_comm.size; }
bool ttqd_comm_agreed_failure(void) { return g_comm.agreed_failure; }

/* All ranks learn whether every rank succeeded (a collective: every rank must call it). */
static bool all_ok(bool ok) {
  if (!g_comm.mpi || g_comm.size == 1) return ok;
  int v = ok ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (!v) g_comm.agreed_failure = true;
  return v != 0;
}

bool ttqd_comm_agree(bool ok) { return all_ok(ok); }

void ttqd_comm_bcast(void *buf, int bytes, bool idle_wait) {
  if (!g_comm.mpi || g_comm.size == 1) return;
  if (!idle_wait) {
    MPI_Bcast(buf, bytes, MPI_BYTE, 0, MPI_COMM_WORLD);
    return;
  }
  /* Nonblocking collectives never match blocking ones: the root uses MPI_Ibcast too. */
  MPI_Request req;
  MPI_Ibcast(buf, bytes, MPI_BYTE, 0, MPI_COMM_WORLD, &req);
  if (g_comm.rank == 0) {
    MPI_Wait(&req, MPI_STATUS_IGNORE);
    return;
  }
  for (;;) {
    int done = 0;
    MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    if (done) return;
    struct timespec ts = {0, 1000000L};
    nanosleep(&ts, NULL);
  }
}

static void allreduce_f32(void *u, float *buf, size_t n) {
  (void)u;
  MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}

static void allreduce_f64(void *u, double *buf, size_t n) {
  (void)u;
  MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

/* Vocabulary slice of rank r under the plan's even split (as ttq_tp_plan computes it). */
static void vocab_slice(int V, int P, int r, int *v0, int *vn) {
  int per = V / P, extra = V % P;
  *v0 = r * per + (r < extra ? r : extra);
  *vn = per + (r < extra ? 1 : 0);
}

static void gather_logits(void *u, const ttq_tp *tp, const float *local, int rows, float *full) {
  (void)u;
  const int P = tp->size, V = tp->full.vocab;
  int counts[1024], displs[1024];
  size_t need = (size_t)rows * V;
  if (need > g_comm.gather_len) {
    free(g_comm.gather_buf);
    g_comm.gather_buf = malloc(need * sizeof(float));
    g_comm.gather_len = g_comm.gather_buf ? need : 0;
    if (!g_comm.gather_buf) {
      fprintf(stderr, "ttqd: out of memory gathering logits\n");
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
  }
  for (int r = 0, off = 0; r < P; r++) {
    int v0, vn;
    vocab_slice(V, P, r, &v0, &vn);
    counts[r] = rows * vn;
    displs[r] = off;
    off += counts[r];
  }
  MPI_Allgatherv(local, rows * tp->vocab, MPI_FLOAT, g_comm.gather_buf, counts, displs, MPI_FLOAT,
                 MPI_COMM_WORLD);
  for (int r = 0; r < P; r++) {
    int v0, vn;
    vocab_slice(V, P, r, &v0, &vn);
    for (int t = 0; t < rows; t++)
      memcpy(full + (size_t)t * V + v0, g_comm.gather_buf + displs[r] + (size_t)t * vn,
             (size_t)vn * sizeof(float));
  }
}


int ttqd_load_for_ranks(const char *cmd, const char *path, int align, ttq_model **full,
                        ttq_model **shard) {
  *full = *shard = NULL;
  ttq_model *m = ttqd_load_model(cmd, path), *sh = NULL;
  bool ok = m != NULL;
  if (ok && g_comm.size > 1024) {
    fprintf(stderr, "ttqd %s: at most 1024 ranks\n", cmd);
    ok = false;
  }
  if (ok && g_comm.size > 1) {
    ttq_tp tp;
    ttq_diag d = {0};
    if (ttq_tp_plan(&m->cfg, g_comm.rank, g_comm.size, align, &tp, &d)) {
      fprintf(stderr, "ttqd %s: %s\n", cmd, d.msg);
      ok = false;
    } else {
      tp.allreduce_f32 = allreduce_f32;
      tp.allreduce_f64 = allreduce_f64;
      tp.gather_logits = gather_logits;
      tp.u = NULL;
      if (ttq_model_shard(m, &tp, &sh, &d)) {
        fprintf(stderr, "ttqd %s: %s\n", cmd, d.msg);
        ok = false;
      }
    }
  }
  if (!all_ok(ok)) { /* every rank returns: nobody is left waiting in a collective */
    if (sh) ttq_model_free(sh);
    ttq_model_free(m);
    return -1;
  }
  *full = m;
  *shard = sh ? sh : m;
  ttq_model_pin(*shard); /* this rank's per-token weights into huge pages */
  return 0;
}

void ttqd_free_models(ttq_model *full, ttq_model *shard) {
  if (shard && shard != full) ttq_model_free(shard);
  ttq_model_free(full);
}
