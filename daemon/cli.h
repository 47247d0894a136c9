/* cli.h -- shared pieces of the ttqd subcommands: option parsing with range checks, model
 * loading with a one-line error, timing. Every error goes to stderr as one line
 * "ttqd <cmd>: <reason>" and the subcommand returns exit code 1 (2 for usage errors). */
#ifndef TTQD_CLI_H
#define TTQD_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <getopt.h>

#include "engine.h"
#include "forward.h"
#include "model.h"

/* Quantization (and KV cache) flags shared by run, perplexity, bench and inspect. */
enum { TTQD_OPT_QUANT = 256, TTQD_OPT_BITS, TTQD_OPT_GROUP, TTQD_OPT_RANK, TTQD_OPT_ALPHA,
       TTQD_OPT_LAMBDA, TTQD_OPT_SUM, TTQD_OPT_CALIB, TTQD_OPT_SEARCH, TTQD_OPT_HEAD_BITS,
       TTQD_OPT_KV_CACHE };
#define TTQD_QUANT_OPTIONS                                                                     \
  {"quant", required_argument, 0, TTQD_OPT_QUANT}, {"bits", required_argument, 0, TTQD_OPT_BITS}, \
  {"group", required_argument, 0, TTQD_OPT_GROUP}, {"rank", required_argument, 0, TTQD_OPT_RANK}, \
  {"alpha", required_argument, 0, TTQD_OPT_ALPHA},                                             \
  {"lambda", required_argument, 0, TTQD_OPT_LAMBDA}, {"sum", no_argument, 0, TTQD_OPT_SUM},      \
  {"calib", required_argument, 0, TTQD_OPT_CALIB}, {"search", required_argument, 0, TTQD_OPT_SEARCH}, \
  {"head-bits", required_argument, 0, TTQD_OPT_HEAD_BITS},                                  \
  {"kv-cache", required_argument, 0, TTQD_OPT_KV_CACHE}
#define TTQD_QUANT_USAGE                                                                        \
  "  --quant M        fp | rtn | awq | ttq (default fp)\n"                                     \
  "  --bits B         2, 3, 4, 5 or 8 (default 4)\n"                                           \
  "  --group G        quantization group, 8..1024, divides every input width (default 32)\n"   \
  "  --rank R         TTQ(r) low-rank term, 0 = off (default 0)\n"                            \
  "  --alpha A        D = (mean x^2 + lambda)^alpha (default 0.5)\n"                          \
  "  --lambda L       (default 0.4)\n"                                                         \
  "  --sum            use the sum of squares instead of the mean\n"                           \
  "  --calib FILE     AWQ calibration file from ttqd calibrate (for --quant awq)\n"      \
  "  --search N       ttq: choose alpha per layer input among 1/N..1 on the prompt (0 = off)\n" \
  "  --head-bits B    output head: 2, 3, 4, 5 or 8 bits round to nearest, 0 = unquantized\n"  \
  "                   (default 8)\n"                                                        \
  "  --kv-cache T     f16 | f32: the KV cache's type (default f16: half the bytes decode\n"  \
  "                   reads per token of context; f32 reproduces the fp32 references)\n"

/* Handles one quantization option code; returns 1 when handled, 0 when not a quant option,
 * -1 on a bad value (message printed). */
int ttqd_quant_opt(const char *cmd, int c, const char *arg, ttq_engine_opts *o);
/* Default engine options (fp; the quantization defaults of ttq_qcfg_default otherwise; the KV
 * cache in f16). */
ttq_engine_opts ttqd_engine_defaults(void);

#define TTQD_EXIT_FAIL 1
#define TTQD_EXIT_USAGE 2

/* Parse helpers: 0 on success; print "ttqd CMD: --FLAG: 'VAL' ..." and return -1 otherwise. */
int ttqd_parse_int(const char *cmd, const char *flag, const char *val, long lo, long hi, long *out);
int ttqd_parse_float(const char *cmd, const char *flag, const char *val, double lo, double hi,
                     double *out);
int ttqd_parse_u64(const char *cmd, const char *flag, const char *val, uint64_t *out);

/* Loads the model or prints the reason; NULL on failure. */
ttq_model *ttqd_load_model(const char *cmd, const char *path);

double ttqd_now_ms(void);

/* The alignment row-parallel slice boundaries need for a quantization group: lcm(group, 32). */
int ttqd_tp_align(int group);

/* Reads all of stdin into a NUL-terminated malloc'd buffer; NULL on error. */
char *ttqd_read_stdin(size_t *len);

/* Number of threads to use when the user gave none: all available cores. */
int ttqd_default_threads(void);

int ttqd_cmd_run(int argc, char **argv);
int ttqd_cmd_perplexity(int argc, char **argv);
int ttqd_cmd_tokenize(int argc, char **argv);
int ttqd_cmd_inspect(int argc, char **argv);
int ttqd_cmd_synth(int argc, char **argv);
int ttqd_cmd_bench(int argc, char **argv);
int ttqd_cmd_calibrate(int argc, char **argv);
int ttqd_cmd_serve(int argc, char **argv);

#endif
