/* comm.h -- the MPI side of tensor parallelism for ttqd: the collectives the shard library
 * calls back (allreduce of partial outputs and statistics, gather of vocabulary-split logits)
 * and loading the slice of the model this rank holds.
 *
 * State: one communicator for the process, set once in main (the daemon's top level). */
#ifndef TTQD_COMM_H
#define TTQD_COMM_H

#include <stdbool.h>
#include "model.h"
#include "tp.h"

/* Called once from main: whether MPI is initialized, this rank and the rank count. */
void ttqd_comm_set(bool mpi, int rank, int size);
int ttqd_comm_rank(void);
int ttqd_comm_size(void);
/* True when every rank knows the command failed (no MPI_Abort needed). */
bool ttqd_comm_agreed_failure(void);

/* Every rank learns whether all ranks passed ok (a collective; trivially ok on one rank). */
bool ttqd_comm_agree(bool ok);
/* Broadcasts `bytes` bytes from rank 0 (a collective). With idle_wait, ranks other than 0 wait
 * by polling every millisecond instead of spinning, for the long waits between requests. */
void ttqd_comm_bcast(void *buf, int bytes, bool idle_wait);

/* Loads the model; on more than one rank, also plans this rank's slice (row-parallel
 * boundaries on multiples of `align`) and returns the shard in *shard (the full model in
 * *full must outlive it). On one rank *shard == *full. Prints the reason and returns -1 on
 * failure. */
int ttqd_load_for_ranks(const char *cmd, const char *path, int align, ttq_model **full,
                        ttq_model **shard);
void ttqd_free_models(ttq_model *full, ttq_model *shard);


#endif
