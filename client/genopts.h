/* genopts.h -- the sampling and quantization flags of generate, chat and bench, checked
 * locally against the ranges the daemon accepts, and turned into a GenerateRequest.
 * proto2: only the flags the user gave are set in the request; the daemon fills the rest
 * with its configured defaults. Strings (stop, quant method) are borrowed from argv. */
#ifndef TTQC_GENOPTS_H
#define TTQC_GENOPTS_H

#include <stdbool.h>
#include <stdint.h>

#include "ttq.pb-c.h"

#define TTQC_MAX_STOPS 8
#define TTQC_MAX_STOP_BYTES 256

typedef struct {
  bool has_max_tokens, has_temperature, has_top_k, has_top_p, has_seed, has_deadline_ms;
  uint32_t max_tokens, top_k, deadline_ms;
  float temperature, top_p;
  uint64_t seed;
  char *stop[TTQC_MAX_STOPS];
  size_t n_stop;
  char *method; /* NULL = unset */
  bool has_bits, has_group, has_rank, has_alpha, has_lambda, has_head_bits;
  uint32_t bits, group, rank, head_bits;
  float alpha, lambda;
} ttqc_genopts;

#define TTQC_GEN_OPTIONS                                                                       \
  {"max-tokens", required_argument, 0, TTQC_OPT_MAX_TOKENS},                                   \
  {"temperature", required_argument, 0, TTQC_OPT_TEMPERATURE},                                 \
  {"top-k", required_argument, 0, TTQC_OPT_TOP_K},                                             \
  {"top-p", required_argument, 0, TTQC_OPT_TOP_P},                                             \
  {"seed", required_argument, 0, TTQC_OPT_SEED},                                               \
  {"stop", required_argument, 0, TTQC_OPT_STOP},                                               \
  {"quant", required_argument, 0, TTQC_OPT_QUANT},                                             \
  {"bits", required_argument, 0, TTQC_OPT_BITS},                                               \
  {"group", required_argument, 0, TTQC_OPT_GROUP},                                             \
  {"rank", required_argument, 0, TTQC_OPT_RANK},                                               \
  {"alpha", required_argument, 0, TTQC_OPT_ALPHA},                                             \
  {"lambda", required_argument, 0, TTQC_OPT_LAMBDA},                                           \
  {"head-bits", required_argument, 0, TTQC_OPT_HEAD_BITS},                                     \
  {"deadline-ms", required_argument, 0, TTQC_OPT_DEADLINE_MS}

#define TTQC_GEN_USAGE                                                                         \
  "sampling (unset = the daemon's default):\n"                                                \
  "  --max-tokens N        tokens to generate, 1..1048576 (the daemon may cap it)\n"          \
  "  --temperature T       0..100; 0 = greedy\n"                                              \
  "  --top-k K             0..16777216; 0 = off\n"                                            \
  "  --top-p P             (0, 1]; 1 = off\n"                                                 \
  "  --seed S              sampler seed, 0..2^64-1\n"                                         \
  "  --stop STR            stop before STR (repeatable, up to 8, 1..256 bytes each)\n"        \
  "  --deadline-ms MS      give up after MS ms, 1..86400000 (may shorten the daemon's)\n"     \
  "quantization for this request (unset = the daemon's default):\n"                           \
  "  --quant M             fp | rtn | awq | ttq\n"                                            \
  "  --bits B              2, 3, 4, 5 or 8\n"                                                 \
  "  --group G             8..1024, must divide every input width\n"                          \
  "  --rank R              TTQ(r) low-rank term, 0..4096, 0 = off\n"                          \
  "  --alpha A             0..4: D = (mean x^2 + lambda)^alpha\n"                             \
  "  --lambda L            0..1e6\n"                                                        \
  "  --head-bits B         output head: 2, 3, 4, 5 or 8 bits, 0 = unquantized\n"

/* Handles one generation option: 1 handled, 0 not one, TTQC_E_USAGE (message printed). */
int ttqc_genopts_opt(const char *cmd, int code, char *arg, ttqc_genopts *g);

/* Sets the given fields of gr; q receives the quantization fields and is linked as gr->quant
 * when any is set. gr and q borrow g's strings. */
void ttqc_genopts_apply(const ttqc_genopts *g, Ttq__GenerateRequest *gr, Ttq__Quantization *q);

#endif
