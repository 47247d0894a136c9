/* cmd_calibrate.c -- `ttqd calibrate`: the AWQ baseline's offline calibration. Runs the model
 * in full precision over the documents of the given files (golden protocol: split on <|doc|>,
 * bos where the model adds one, truncated to --ctx), collects mean |x| per input channel and a
 * sample of activations, searches alpha per layer (awq.h) and writes the calibration file. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "awq.h"
#include "cli.h"
#include "eval.h"
#include "util.h"

static const char calib_usage[] =
    "usage: ttqd calibrate --model PATH --out FILE [--max-docs N] [--ctx N] [--bits B]\n"
    "                      [--group G] [--rows N] [--threads N] FILE...\n"
    "  --max-docs  first N documents of each file (default 40)\n"
    "  --ctx       truncate each document to N tokens (default 1024)\n"
    "  --bits, --group  the quantization the scales are searched for (default 4, 32)\n"
    "  --rows      activation rows kept per layer input for the search (default 512)\n";

static void progress(int layer, int n) {
  if (isatty(STDERR_FILENO)) fprintf(stderr, "\rsearching alpha: layer %d/%d", layer + 1, n);
}

int ttqd_cmd_calibrate(int argc, char **argv) {
  const char *model_path = NULL, *out = NULL;
  long max_docs = 40, ctx = 1024, bits = 4, group = 32, rows = 512, threads = 0;
  static const struct option opts[] = {
      {"model", required_argument, 0, 'm'}, {"out", required_argument, 0, 'o'},
      {"max-docs", required_argument, 0, 'D'}, {"ctx", required_argument, 0, 'c'},
      {"bits", required_argument, 0, 'b'}, {"group", required_argument, 0, 'g'},
      {"rows", required_argument, 0, 'r'}, {"threads", required_argument, 0, 'T'},
      {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 'm': model_path = optarg; break;
    case 'o': out = optarg; break;
    case 'D': if (ttqd_parse_int("calibrate", "--max-docs", optarg, 1, 1 << 30, &max_docs)) return TTQD_EXIT_USAGE; break;
    case 'c': if (ttqd_parse_int("calibrate", "--ctx", optarg, 2, 1 << 20, &ctx)) return TTQD_EXIT_USAGE; break;
    case 'b': if (ttqd_parse_int("calibrate", "--bits", optarg, 2, 8, &bits)) return TTQD_EXIT_USAGE; break;
    case 'g': if (ttqd_parse_int("calibrate", "--group", optarg, 8, 1024, &group)) return TTQD_EXIT_USAGE; break;
    case 'r': if (ttqd_parse_int("calibrate", "--rows", optarg, 16, 1 << 16, &rows)) return TTQD_EXIT_USAGE; break;
    case 'T': if (ttqd_parse_int("calibrate", "--threads", optarg, 1, 1024, &threads)) return TTQD_EXIT_USAGE; break;
    case 'h': fputs(calib_usage, stdout); return 0;
    default: fputs(calib_usage, stderr); return TTQD_EXIT_USAGE;
    }
  }
  if (!out || optind >= argc) {
    fprintf(stderr, "ttqd calibrate: --out FILE and at least one corpus FILE are required\n%s", calib_usage);
    return TTQD_EXIT_USAGE;
  }
  ttq_model *m = ttqd_load_model("calibrate", model_path);
  if (!m) return TTQD_EXIT_FAIL;
  if (ctx > m->cfg.max_pos) ctx = m->cfg.max_pos;
  ttq_diag d = {0};
  ttq_qcfg qc = ttq_qcfg_default();
  qc.method = TTQ_METHOD_AWQ;
  qc.bits = (int)bits;
  qc.group = (int)group;
  ttq_state st;
  ttq_awq_collector *col = NULL;
  int rc = TTQD_EXIT_FAIL;
  if (ttq_qcfg_check(&qc, &m->cfg, &d) || ttq_state_init(&st, m, (int)ctx, TTQ_F32, (int)threads, NULL, &d)) {
    fprintf(stderr, "ttqd calibrate: %s\n", d.msg);
    ttq_model_free(m);
    return TTQD_EXIT_USAGE;
  }
  /* First pass: count tokens so the sample spreads over the whole corpus. */
  int32_t **docs_ids = NULL;
  int *docs_n = NULL, n_all = 0;
  int64_t total = 0;
  for (int f = optind; f < argc; f++) {
    char *text = NULL, **docs = NULL;
    int n_docs = 0;
    if (ttq__read_file(argv[f], &text, NULL, &d) || ttq_split_docs(text, &docs, &n_docs, &d)) {
      fprintf(stderr, "ttqd calibrate: %s\n", d.msg);
      free(text);
      goto out;
    }
    if (n_docs > max_docs) n_docs = (int)max_docs;
    docs_ids = realloc(docs_ids, (size_t)(n_all + n_docs) * sizeof *docs_ids);
    docs_n = realloc(docs_n, (size_t)(n_all + n_docs) * sizeof *docs_n);
    for (int i = 0; i < n_docs; i++) {
      if (ttq_doc_tokens(m, docs[i], (int)ctx, &docs_ids[n_all], &docs_n[n_all], &d)) {
        fprintf(stderr, "ttqd calibrate: %s: %s\n", argv[f], d.msg);
        free(docs), free(text);
        goto out;
      }
      total += docs_n[n_all++];
    }
    free(docs);
    free(text);
  }
  if (total == 0) {
    fprintf(stderr, "ttqd calibrate: the corpus has no tokens\n");
    goto out;
  }
  int stride = (int)(total / rows) > 1 ? (int)(total / rows) : 1;
  if (ttq_awq_collector_new(&col, m, (int)rows, stride, &d)) {
    fprintf(stderr, "ttqd calibrate: %s\n", d.msg);
    goto out;
  }
  ttq_awq_collector_attach(col, &st);
  double t0 = ttqd_now_ms();
  for (int i = 0; i < n_all; i++) {
    ttq_state_reset(&st);
    if (docs_n[i] > 0 && ttq_forward(&st, docs_ids[i], docs_n[i], NULL, false, &d)) {
      fprintf(stderr, "ttqd calibrate: document %d: %s\n", i, d.msg);
      goto out;
    }
  }
  double t1 = ttqd_now_ms();
  ttq_awq awq;
  if (ttq_awq_search(col, m, (int)bits, (int)group, st.threads, &awq, progress, &d)) {
    fprintf(stderr, "\nttqd calibrate: %s\n", d.msg);
    goto out;
  }
  if (isatty(STDERR_FILENO)) fputc('\n', stderr);
  if (ttq_awq_save(&awq, m, out, &d)) {
    fprintf(stderr, "ttqd calibrate: %s\n", d.msg);
    ttq_awq_free(&awq);
    goto out;
  }
  fprintf(stderr, "ttqd calibrate: %d documents, %lld tokens (%.1f s); alpha search for W%ld g%ld "
                  "(%.1f s); wrote %s\n  alpha per layer (attn o mlp down):",
          n_all, (long long)ttq_awq_collector_tokens(col), (t1 - t0) / 1e3, bits, group,
          (ttqd_now_ms() - t1) / 1e3, out);
  for (int l = 0; l < awq.n_layers; l++)
    fprintf(stderr, " [%.2f %.2f %.2f %.2f]", awq.alpha[l * 4], awq.alpha[l * 4 + 1],
            awq.alpha[l * 4 + 2], awq.alpha[l * 4 + 3]);
  fputc('\n', stderr);
  ttq_awq_free(&awq);
  rc = 0;
out:
  for (int i = 0; i < n_all; i++) free(docs_ids[i]);
  free(docs_ids);
  free(docs_n);
  ttq_awq_collector_free(col);
  ttq_state_free(&st);
  ttq_model_free(m);
  return rc;
}
