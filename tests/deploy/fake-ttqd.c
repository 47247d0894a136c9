/* fake-ttqd.c -- a stand-in for `ttqd serve` in the deployment tests: it behaves like the
 * daemon towards its supervisor (ttqd-launch, systemd, mpirun) and does nothing else.
 * Under mpirun every rank joins MPI; rank 0 sends READY=1 to $NOTIFY_SOCKET after a short
 * "model load", and on SIGTERM sends STOPPING=1, "drains" for FAKE_DRAIN_MS (default 1500)
 * and tells the other ranks (an allreduce every 100 ms), and every rank exits 0. A rank > 0
 * ignores SIGTERM, as the real ranks are stopped by rank 0. It logs its steps to stderr and,
 * when FAKE_LOG is set, appends them to that file. Compiled by the tests with mpicc. */
#include <mpi.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t term;
static int rank;

static void on_term(int s) { (void)s; term = 1; }

static void logf_(const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "fake-ttqd rank %d pid %d uid %d: %s\n", rank, (int)getpid(), (int)getuid(), msg);
  const char *p = getenv("FAKE_LOG");
  if (p) {
    FILE *f = fopen(p, "a");
    if (f) {
      fprintf(f, "rank %d pid %d uid %d: %s\n", rank, (int)getpid(), (int)getuid(), msg);
      fclose(f);
    }
  }
}

static void notify(const char *state) {
  const char *path = getenv("NOTIFY_SOCKET");
  if (!path || !*path) return;
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  size_t n = strlen(path);
  if (n >= sizeof sa.sun_path) return;
  memcpy(sa.sun_path, path, n);
  if (path[0] == '@') sa.sun_path[0] = '\0';
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  sendto(fd, state, strlen(state), 0, (struct sockaddr *)&sa,
         (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n));
  close(fd);
  logf_("notify %s", state);
}

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "serve") != 0) {
    fprintf(stderr, "fake-ttqd: only 'serve'\n");
    return 2;
  }
  int mpi = getenv("OMPI_COMM_WORLD_SIZE") != NULL, size = 1;
  if (mpi) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
  }
  struct sigaction sa = {.sa_handler = rank == 0 ? on_term : SIG_IGN};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  char args[1024] = "";
  for (int i = 1; i < argc; i++) {
    strncat(args, argv[i], sizeof args - strlen(args) - 2);
    strncat(args, " ", sizeof args - strlen(args) - 1);
  }
  logf_("start (%d ranks): %s", size, args);
  usleep(300000); /* "loading the model" */
  if (mpi) MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) notify("READY=1");
  long drain = getenv("FAKE_DRAIN_MS") ? atol(getenv("FAKE_DRAIN_MS")) : 1500;
  for (;;) {
    usleep(100000);
    int mine = term, any = mine;
    if (mpi) MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (any) break;
  }
  if (rank == 0) {
    notify("STOPPING=1");
    logf_("SIGTERM: draining for %ld ms", drain);
    usleep((useconds_t)drain * 1000);
  }
  if (mpi) {
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Finalize();
  }
  logf_("drained, exit 0");
  return 0;
}
