/* ttqd.c -- the engine's entry point: subcommand dispatch and MPI setup.
 *
 * ttqd is an Open MPI program. Started by mpirun it joins MPI_COMM_WORLD; started directly it
 * runs as a single rank without initializing MPI (so the offline tools work anywhere). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ttq.h"

static const char usage[] =
    "usage: ttqd COMMAND [OPTIONS]\n"
    "\n"
    "commands:\n"
    "  run         generate text from a prompt locally\n"
    "  perplexity  score documents (golden protocol)\n"
    "  tokenize    stdin text to token ids\n"
    "  inspect     show a model's architecture, shapes, dtypes and sizes\n"
    "  synth       write a random-weight model of any shape (benchmarks)\n"
    "  bench       prefill and decode speed\n"
    "  calibrate   AWQ calibration file from a corpus (for --quant awq)\n"
    "  version     print the version\n"
    "\n"
    "Run 'ttqd COMMAND --help' for the options of a command.\n";

static bool under_mpirun(void) {
  return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
      !strcmp(argv[1], "help")) {
    fputs(usage, argc < 2 ? stderr : stdout);
    return argc < 2 ? TTQD_EXIT_USAGE : 0;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
    printf("ttqd %s\n", TTQ_VERSION);
    return 0;
  }
  static const struct {
    const char *name;
    int (*fn)(int, char **);
  } cmds[] = {{"run", ttqd_cmd_run},         {"perplexity", ttqd_cmd_perplexity},
              {"tokenize", ttqd_cmd_tokenize}, {"inspect", ttqd_cmd_inspect},
              {"synth", ttqd_cmd_synth},     {"bench", ttqd_cmd_bench},
              {"calibrate", ttqd_cmd_calibrate}};
  int (*fn)(int, char **) = NULL;
  for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
    if (!strcmp(cmds[i].name, cmd)) fn = cmds[i].fn;
  if (!fn) {
    fprintf(stderr, "ttqd: unknown command '%s'\n%s", cmd, usage);
    return TTQD_EXIT_USAGE;
  }
  bool mpi = under_mpirun();
  int rank = 0, size = 1;
  if (mpi) {
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size > 1) {
      if (rank == 0)
        fprintf(stderr, "ttqd %s: started on %d ranks, but this build runs the engine on one rank "
                        "only (tensor parallelism is not implemented yet)\n", cmd, size);
      MPI_Finalize();
      return TTQD_EXIT_FAIL;
    }
  }
  int rc = fn(argc - 1, argv + 1);
  if (mpi) MPI_Finalize();
  return rc;
}
