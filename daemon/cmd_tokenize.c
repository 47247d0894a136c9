/* cmd_tokenize.c -- `ttqd tokenize`: stdin text to token ids (space-separated, one line). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char tok_usage[] =
    "usage: ttqd tokenize --model PATH [--bos] [--special] [--json] < TEXT\n"
    "  --bos      prepend the bos token when the model adds one to prompts\n"
    "  --special  map special-token text (e.g. <|im_start|>) to its id\n"
    "  --json     print a JSON array\n";

int ttqd_cmd_tokenize(int argc, char **argv) {
  const char *model_path = NULL;
  bool bos = false, special = false, json = false;
  static const struct option opts[] = {{"model", required_argument, 0, 'm'}, {"bos", no_argument, 0, 'b'},
                                       {"special", no_argument, 0, 's'},   {"json", no_argument, 0, 'j'},
                                       {"help", no_argument, 0, 'h'},      {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "m:bsjh", opts, NULL)) != -1) {
    switch (c) {
    case 'm': model_path = optarg; break;
    case 'b': bos = true; break;
    case 's': special = true; break;
    case 'j': json = true; break;
    case 'h': fputs(tok_usage, stdout); return 0;
    default: fputs(tok_usage, stderr); return TTQD_EXIT_USAGE;
    }
  }
  if (optind != argc) {
    fprintf(stderr, "ttqd tokenize: unexpected argument '%s' (text comes from stdin)\n", argv[optind]);
    return TTQD_EXIT_USAGE;
  }
  ttq_model *m = ttqd_load_model("tokenize", model_path);
  if (!m) return TTQD_EXIT_FAIL;
  size_t len = 0;
  char *text = ttqd_read_stdin(&len);
  if (!text) {
    fprintf(stderr, "ttqd tokenize: cannot read stdin\n");
    ttq_model_free(m);
    return TTQD_EXIT_FAIL;
  }
  int32_t *ids = NULL;
  size_t n = 0;
  ttq_diag d = {0};
  int rc = ttq_tokenize(m->tok, text, len, special, &ids, &n, &d);
  if (rc) {
    fprintf(stderr, "ttqd tokenize: %s\n", d.msg);
  } else {
    const char *sep = json ? "," : " ";
    if (json) putchar('[');
    int k = 0;
    if (bos && m->cfg.add_bos) printf("%d", m->cfg.bos_id), k++;
    for (size_t i = 0; i < n; i++) printf("%s%d", k++ ? sep : "", ids[i]);
    puts(json ? "]" : "");
  }
  free(ids);
  free(text);
  ttq_model_free(m);
  return rc ? TTQD_EXIT_FAIL : 0;
}
