/* runner.c -- runs one registered test by name (`ttq-tests NAME`), or lists them
 * (`ttq-tests --list`), or runs all (`ttq-tests --all`). ctest runs each test on its own. */
#include "test.h"

#define TEST_ENTRY(name, ...) int run_test_##name(void);
#include "test-list.h"
#undef TEST_ENTRY

typedef struct {
  const char *name;
  int (*fn)(void);
} test_entry;

#define TEST_ENTRY(name, ...) {#name, run_test_##name},
static const test_entry tests[] = {
#include "test-list.h"
    {NULL, NULL}};
#undef TEST_ENTRY

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: ttq-tests NAME | --list | --all\n");
    return 2;
  }
  if (strcmp(argv[1], "--list") == 0) {
    for (const test_entry *t = tests; t->name; t++) printf("%s\n", t->name);
    return 0;
  }
  int all = strcmp(argv[1], "--all") == 0, failed = 0, found = 0;
  for (const test_entry *t = tests; t->name; t++) {
    if (!all && strcmp(t->name, argv[1]) != 0) continue;
    found = 1;
    int rc = t->fn();
    if (all) fprintf(stderr, "%-40s %s\n", t->name, rc == 0 ? "ok" : rc == TEST_SKIP_CODE ? "skipped" : "FAILED");
    if (!all) return rc;
    if (rc != 0 && rc != TEST_SKIP_CODE) failed++;
  }
  if (!found) {
    fprintf(stderr, "no test named %s\n", argv[1]);
    return 2;
  }
  return failed ? 1 : 0;
}
