/* genopts.c -- parsing and range checks of the generation flags, and their translation into a
 * GenerateRequest (see genopts.h). Invariant: a field is set in the request exactly when its
 * flag was given and valid. */
#include "genopts.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

int ttqc_genopts_opt(const char *cmd, int code, char *arg, ttqc_genopts *g) {
  long v;
  double f;
  switch (code) {
  case TTQC_OPT_MAX_TOKENS:
    if (ttqc_parse_long(cmd, "--max-tokens", arg, 1, 1L << 20, &v)) return TTQC_E_USAGE;
    g->has_max_tokens = true, g->max_tokens = (uint32_t)v;
    return 1;
  case TTQC_OPT_TEMPERATURE:
    if (ttqc_parse_double(cmd, "--temperature", arg, 0, 100, false, &f)) return TTQC_E_USAGE;
    g->has_temperature = true, g->temperature = (float)f;
    return 1;
  case TTQC_OPT_TOP_K:
    if (ttqc_parse_long(cmd, "--top-k", arg, 0, 1L << 24, &v)) return TTQC_E_USAGE;
    g->has_top_k = true, g->top_k = (uint32_t)v;
    return 1;
  case TTQC_OPT_TOP_P:
    if (ttqc_parse_double(cmd, "--top-p", arg, 0, 1, true, &f)) return TTQC_E_USAGE;
    g->has_top_p = true, g->top_p = (float)f;
    return 1;
  case TTQC_OPT_SEED:
    if (ttqc_parse_u64(cmd, "--seed", arg, &g->seed)) return TTQC_E_USAGE;
    g->has_seed = true;
    return 1;
  case TTQC_OPT_STOP:
    if (g->n_stop == TTQC_MAX_STOPS || !*arg || strlen(arg) > TTQC_MAX_STOP_BYTES) {
      fprintf(stderr, "ttq %s: --stop: at most %d non-empty stop strings of at most %d bytes\n",
              cmd, TTQC_MAX_STOPS, TTQC_MAX_STOP_BYTES);
      return TTQC_E_USAGE;
    }
    g->stop[g->n_stop++] = arg;
    return 1;
  case TTQC_OPT_DEADLINE_MS:
    if (ttqc_parse_long(cmd, "--deadline-ms", arg, 1, 86400000L, &v)) return TTQC_E_USAGE;
    g->has_deadline_ms = true, g->deadline_ms = (uint32_t)v;
    return 1;
  case TTQC_OPT_QUANT:
    if (strcmp(arg, "fp") && strcmp(arg, "rtn") && strcmp(arg, "awq") && strcmp(arg, "ttq")) {
      fprintf(stderr, "ttq %s: --quant: '%s' is not one of fp, rtn, awq, ttq\n", cmd, arg);
      return TTQC_E_USAGE;
    }
    g->method = arg;
    return 1;
  case TTQC_OPT_BITS:
    if (ttqc_parse_long(cmd, "--bits", arg, 2, 8, &v)) return TTQC_E_USAGE;
    if (v == 6 || v == 7) {
      fprintf(stderr, "ttq %s: --bits: %ld is not one of 2, 3, 4, 5, 8\n", cmd, v);
      return TTQC_E_USAGE;
    }
    g->has_bits = true, g->bits = (uint32_t)v;
    return 1;
  case TTQC_OPT_GROUP:
    if (ttqc_parse_long(cmd, "--group", arg, 8, 1024, &v)) return TTQC_E_USAGE;
    g->has_group = true, g->group = (uint32_t)v;
    return 1;
  case TTQC_OPT_RANK:
    if (ttqc_parse_long(cmd, "--rank", arg, 0, 4096, &v)) return TTQC_E_USAGE;
    g->has_rank = true, g->rank = (uint32_t)v;
    return 1;
  case TTQC_OPT_ALPHA:
    if (ttqc_parse_double(cmd, "--alpha", arg, 0, 4, false, &f)) return TTQC_E_USAGE;
    g->has_alpha = true, g->alpha = (float)f;
    return 1;
  case TTQC_OPT_LAMBDA:
    if (ttqc_parse_double(cmd, "--lambda", arg, 0, 1e6, false, &f)) return TTQC_E_USAGE;
    g->has_lambda = true, g->lambda = (float)f;
    return 1;
  case TTQC_OPT_HEAD_BITS:
    if (ttqc_parse_long(cmd, "--head-bits", arg, 0, 8, &v)) return TTQC_E_USAGE;
    if (v == 1 || v == 6 || v == 7) {
      fprintf(stderr, "ttq %s: --head-bits: %ld is not one of 0, 2, 3, 4, 5, 8\n", cmd, v);
      return TTQC_E_USAGE;
    }
    g->has_head_bits = true, g->head_bits = (uint32_t)v;
    return 1;
  default: return 0;
  }
}

void ttqc_genopts_apply(const ttqc_genopts *g, Ttq__GenerateRequest *gr, Ttq__Quantization *q) {
  gr->has_max_tokens = g->has_max_tokens, gr->max_tokens = g->max_tokens;
  gr->has_temperature = g->has_temperature, gr->temperature = g->temperature;
  gr->has_top_k = g->has_top_k, gr->top_k = g->top_k;
  gr->has_top_p = g->has_top_p, gr->top_p = g->top_p;
  gr->has_seed = g->has_seed, gr->seed = g->seed;
  gr->has_deadline_ms = g->has_deadline_ms, gr->deadline_ms = g->deadline_ms;
  gr->n_stop = g->n_stop;
  gr->stop = g->n_stop ? (char **)g->stop : NULL;
  q->method = g->method;
  q->has_bits = g->has_bits, q->bits = g->bits;
  q->has_group = g->has_group, q->group = g->group;
  q->has_rank = g->has_rank, q->rank = g->rank;
  q->has_alpha = g->has_alpha, q->alpha = g->alpha;
  q->has_lambda = g->has_lambda, q->lambda = g->lambda;
  q->has_head_bits = g->has_head_bits, q->head_bits = g->head_bits;
  bool any = g->method || g->has_bits || g->has_group || g->has_rank || g->has_alpha ||
             g->has_lambda || g->has_head_bits;
  gr->quant = any ? q : NULL;
}
