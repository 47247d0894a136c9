/* lowrank.h -- the static low-rank factors of TTQ(r): for every projection W (rows x cols),
 * W = B A + R with B A the top-r truncated SVD of W (B = U_r diag(sigma_r), A = V_r^T), computed
 * once per model with LAPACK (LAPACKE_sgesdd through OpenBLAS) and cached on disk.
 *
 * Cache: `<dir>/lowrank-<key>-r<rank>.bin`, where key is a 64-bit hash of the contents and
 * shapes of every projection weight, so a changed model never reuses stale factors. dir is
 * $TTQ_CACHE_DIR, else $XDG_CACHE_HOME/ttq, else $HOME/.cache/ttq, else /tmp/ttq-cache.
 * File: "TTQLR001", u64 key, i32 rank, i32 layers, then per projection i64 rows, i64 cols,
 * B (rows x rank f32), A (rank x cols f32). A file that does not match is rebuilt. */
#ifndef TTQ_LOWRANK_H
#define TTQ_LOWRANK_H

#include <stdbool.h>
#include "qmodel.h"

/* Loads the factors from the cache or computes (and caches) them; builds R = W - B A.
 * *from_cache (may be NULL) tells which. Free with ttq_lowrank_free. */
int ttq_lowrank_get(ttq_lowrank *lr, const ttq_model *m, int rank, int threads, bool *from_cache,
                    ttq_diag *d);
void ttq_lowrank_free(ttq_lowrank *lr);
/* The content key of the model's projection weights. */
uint64_t ttq_lowrank_key(const ttq_model *m);
/* Path of the cache file for (m, rank); malloc'd. */
char *ttq_lowrank_cache_path(const ttq_model *m, int rank);

#endif
