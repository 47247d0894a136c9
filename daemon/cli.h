/* cli.h -- shared pieces of the ttqd subcommands: option parsing with range checks, model
 * loading with a one-line error, timing. Every error goes to stderr as one line
 * "ttqd <cmd>: <reason>" and the subcommand returns exit code 1 (2 for usage errors). */
#ifndef TTQD_CLI_H
#define TTQD_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include "forward.h"
#include "model.h"

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

#endif
