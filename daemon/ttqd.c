/* ttqd.c -- the engine's entry point: subcommand dispatch and MPI setup.
 *
 * ttqd is an Open MPI program. Started by mpirun it joins MPI_COMM_WORLD; started directly it
 * runs as a single rank without initializing MPI (so the offline tools work anywhere). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "comm.h"
#include "ttq.h"

static const char usage[] =
    "usage: ttqd COMMAND [OPTIONS]\n"
    "\n"
    "commands:\n"
    "  serve       the daemon: serve requests from ttq clients (docs/PROTOCOL.md)\n"
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
              {"calibrate", ttqd_cmd_calibrate}, {"serve", ttqd_cmd_serve}};
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
    static const char *const tp_cmds[] = {"run", "perplexity", "bench", "tokenize", "inspect",
                                              "serve"};
    bool tp_ok = false;
    for (size_t i = 0; i < sizeof tp_cmds / sizeof *tp_cmds; i++) tp_ok |= !strcmp(cmd, tp_cmds[i]);
    if (size > 1 && !tp_ok) {
      if (rank == 0)
        fprintf(stderr, "ttqd %s: runs on one rank only (started on %d)\n", cmd, size);
      MPI_Finalize();
      return TTQD_EXIT_USAGE;
    }
    /* Every rank runs the same program on the same input; rank 0 alone speaks. */
    if (rank > 0) {
      if (!freopen("/dev/null", "w", stdout)) return TTQD_EXIT_FAIL;
      /* serve: the other ranks speak only when something fails, and then it matters */
      if (!getenv("TTQD_ALL_RANKS_STDERR") && strcmp(cmd, "serve") != 0 &&
          !freopen("/dev/null", "w", stderr))
        return TTQD_EXIT_FAIL;
    }
  }
  ttqd_comm_set(mpi, rank, size);
  int rc = fn(argc - 1, argv + 1);
  if (mpi) {
    if (rc != 0 && size > 1 && !ttqd_comm_agreed_failure())
      MPI_Abort(MPI_COMM_WORLD, rc); /* a rank may be waiting in a collective */
    MPI_Finalize();
  }
  return rc;
}
