/* tp.h -- tensor parallelism (Megatron style): which slice of every layer a rank holds, and
 * the collective operations the forward pass needs, supplied by the caller (MPI in ttqd).
 *
 * Split (rank r of P):
 *   q heads [head0, head0 + heads), heads = n_heads / P; the rank computes the key/value heads
 *   its query heads need, [kv0, kv0 + kvs) (a head is duplicated on several ranks when P > the
 *   key/value head count);
 *   q, k, v, gate, up: split by output rows (views into the memory map, zero copy);
 *   o, down: split by input columns (copied once at load into contiguous slices), partial
 *   outputs summed with allreduce; ffn channels [ffn0, ffn0 + ffn), boundaries on multiples of
 *   `align` (the quantization group and 32);
 *   output head: split by vocabulary rows [vocab0, vocab0 + vocab), logits gathered;
 *   embedding and norms: replicated.
 * Statistics: each rank adds the channels it owns (its o and down input slices; the replicated
 * inputs on rank 0 only) into full-width statistics; one allreduce (sum) completes them. */
#ifndef TTQ_TP_H
#define TTQ_TP_H

#include "model.h"

typedef struct ttq_tp {
  int rank, size;
  ttq_config full;  /* the unsharded configuration */
  int head0, heads; /* query heads held */
  int kv0, kvs;     /* key/value heads held */
  int ffn0, ffn;    /* ffn channels held */
  int vocab0, vocab; /* output head rows held */
  const struct ttq_model *full_model; /* borrowed by a shard (set by ttq_model_shard) */
  /* Collectives (all ranks call them in the same order). NULL on one rank. */
  void (*allreduce_f32)(void *u, float *buf, size_t n);  /* in place, sum */
  void (*allreduce_f64)(void *u, double *buf, size_t n); /* in place, sum */
  /* Gathers each rank's rows x vocab-slice block of logits into rows x full vocab. */
  void (*gather_logits)(void *u, const struct ttq_tp *tp, const float *local, int rows, float *full);
  void *u;
  /* Payload of the collectives this rank took part in (bytes it contributed), and calls. */
  uint64_t sent_bytes, calls;
} ttq_tp;

/* Plans rank `rank` of `size`. Refuses, naming the counts that work, rank counts that do not
 * divide the query-head count, and splits whose row-parallel boundaries cannot fall on
 * multiples of `align`. */
int ttq_tp_plan(const ttq_config *c, int rank, int size, int align, ttq_tp *out, ttq_diag *d);

/* A model holding only this rank's slices. It borrows everything else from `full` (which must
 * outlive it) and records `tp` (copied). Free with ttq_model_free. */
int ttq_model_shard(const ttq_model *full, const ttq_tp *tp, ttq_model **out, ttq_diag *d);

/* Channel offset of this rank's slice of a layer input within the full width. */
int ttq_tp_input_offset(const ttq_tp *tp, int input);

#endif
