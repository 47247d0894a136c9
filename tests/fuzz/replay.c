/* replay.c -- a main() for the fuzz harnesses outside libFuzzer: runs LLVMFuzzerTestOneInput
 * once on every file named on the command line or found (not recursively) in a directory named
 * there. The ctest tests fuzz_replay_<target> run it on tests/fuzz/corpus/<target>/ and
 * tests/fuzz/regressions/<target>/, so seeds and every input that once crashed are replayed in
 * the normal build and in the ASan/UBSan build of the suite.
 *
 * Invariants:
 *   - files whose name starts with '.' (e.g. .gitkeep) and README* files are skipped;
 *   - a directory that does not exist is an error (a typo must not turn the test into a no-op),
 *     and so is running zero inputs in total;
 *   - inputs run in name order, each file's name is printed before it runs (stderr), so a crash
 *     names the input; a harness signals failure by aborting (FUZZ_CHECK) or via a sanitizer;
 *   - exit status 0 means every input ran to completion. */
#include "fuzz_util.h"

#include <dirent.h>
#include <sys/stat.h>

static int read_all(const char *path, uint8_t **out, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  size_t cap = 4096, n = 0;
  uint8_t *buf = malloc(cap);
  while (buf) {
    size_t r = fread(buf + n, 1, cap - n, f);
    n += r;
    if (n < cap) break;
    uint8_t *nb = realloc(buf, cap * 2);
    if (!nb) {
      free(buf);
      buf = NULL;
      break;
    }
    buf = nb;
    cap *= 2;
  }
  int err = ferror(f);
  fclose(f);
  if (!buf || err) {
    free(buf);
    return -1;
  }
  *out = buf;
  *len = n;
  return 0;
}

static int run_file(const char *path) {
  uint8_t *data;
  size_t len;
  if (read_all(path, &data, &len) != 0) {
    fprintf(stderr, "replay: cannot read %s: %s\n", path, strerror(errno));
    return -1;
  }
  fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
  /* An exact-size copy, so that ASan catches a harness reading past the input. */
  uint8_t *copy = malloc(len ? len : 1);
  if (!copy) {
    free(data);
    return -1;
  }
  if (len) memcpy(copy, data, len);
  free(data);
  LLVMFuzzerTestOneInput(copy, len);
  free(copy);
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool skipped(const char *name) {
  return name[0] == '.' || strncmp(name, "README", 6) == 0;
}

/* Runs every regular file of dir in name order; adds to *count. */
static int run_dir(const char *dir, int *count) {
  DIR *d = opendir(dir);
  if (!d) {
    fprintf(stderr, "replay: cannot open directory %s: %s\n", dir, strerror(errno));
    return -1;
  }
  char **names = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (skipped(e->d_name)) continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 64;
      char **nn = realloc(names, cap * sizeof *nn);
      if (!nn) {
        rc = -1;
        break;
      }
      names = nn;
    }
    size_t l = strlen(dir) + strlen(e->d_name) + 2;
    if (!(names[n] = malloc(l))) {
      rc = -1;
      break;
    }
    snprintf(names[n], l, "%s/%s", dir, e->d_name);
    n++;
  }
  closedir(d);
  if (n) qsort(names, n, sizeof *names, cmp_str);
  for (size_t i = 0; i < n; i++) {
    struct stat st;
    if (rc == 0 && stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
      if (run_file(names[i]) != 0) rc = -1;
      else (*count)++;
    }
    free(names[i]);
  }
  free(names);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
    return 2;
  }
  int count = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
      return 1;
    }
    int rc = S_ISDIR(st.st_mode) ? run_dir(argv[i], &count) : run_file(argv[i]);
    if (rc == 0 && !S_ISDIR(st.st_mode)) count++;
    if (rc != 0) return 1;
  }
  if (count == 0) {
    fprintf(stderr, "replay: no inputs found\n");
    return 1;
  }
  fprintf(stderr, "replay: %d inputs ran without a failure\n", count);
  return 0;
}
