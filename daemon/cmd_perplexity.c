/* cmd_perplexity.c -- `ttqd perplexity`: the golden protocol (eval.h) over one or more files;
 * a table on stdout (or one JSON object per file with --json), progress on a terminal. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "comm.h"
#include "engine.h"
#include "eval.h"
#include "util.h"

static const char ppl_usage[] =
    "usage: ttqd perplexity --model PATH [--max-docs N] [--ctx N] [--threads N] [--json] FILE...\n"
    "  FILE        documents separated by a line holding only <|doc|>\n"
    "  --max-docs  first N documents of each file (default 40)\n"
    "  --ctx       truncate each document to N tokens (default 1024)\n"
    "  --json      one object per file: {\"file\", \"ppl\", \"tokens\", \"docs\", ...}\n"
    "  --threads N threads (default: all cores)\n" TTQD_QUANT_USAGE;

static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
    else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
    else fputc(ch, f);
  }
  fputc('"', f);
}

int ttqd_cmd_perplexity(int argc, char **argv) {
  const char *model_path = NULL;
  long max_docs = 40, ctx = 1024, threads = 0;
  bool json = false;
  static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                       {"max-docs", required_argument, 0, 'D'},
                                       {"ctx", required_argument, 0, 'c'},
                                       {"threads", required_argument, 0, 'T'},
                                       {"json", no_argument, 0, 'j'},
                                       {"help", no_argument, 0, 'h'},
                                       TTQD_QUANT_OPTIONS,
                                       {0, 0, 0, 0}};
  ttq_engine_opts eo = ttqd_engine_defaults();
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "m:D:c:T:jh", opts, NULL)) != -1) {
    switch (c) {
    case 'm': model_path = optarg; break;
    case 'D': if (ttqd_parse_int("perplexity", "--max-docs", optarg, 1, 1 << 30, &max_docs)) return TTQD_EXIT_USAGE; break;
    case 'c': if (ttqd_parse_int("perplexity", "--ctx", optarg, TTQ_PPL_MIN_TOKENS, 1 << 20, &ctx)) return TTQD_EXIT_USAGE; break;
    case 'T': if (ttqd_parse_int("perplexity", "--threads", optarg, 1, 1024, &threads)) return TTQD_EXIT_USAGE; break;
    case 'j': json = true; break;
    case 'h': fputs(ppl_usage, stdout); return 0;
    default: {
      int r = ttqd_quant_opt("perplexity", c, optarg, &eo);
      if (r == 1) break;
      if (r == 0) fputs(ppl_usage, stderr);
      return TTQD_EXIT_USAGE;
    }
    }
  }
  if (optind >= argc) {
    fprintf(stderr, "ttqd perplexity: no FILE given\n%s", ppl_usage);
    return TTQD_EXIT_USAGE;
  }
  ttq_model *m_full = NULL, *m = NULL;
  if (ttqd_load_for_ranks("perplexity", model_path,
                          ttqd_tp_align(eo.q.method == TTQ_METHOD_FP ? 32 : eo.q.group), &m_full,
                          &m))
    m = NULL;
  if (!m) return TTQD_EXIT_FAIL;
  if (ctx > m->cfg.max_pos) {
    fprintf(stderr, "ttqd perplexity: --ctx %ld exceeds the model's context %d\n", ctx,
            m->cfg.max_pos);
    ttqd_free_models(m_full, m);
    return TTQD_EXIT_USAGE;
  }
  ttq_engine eng;
  ttq_diag d = {0};
  eo.max_ctx = (int)ctx;
  eo.threads = (int)threads;
  if (ttq_engine_init(&eng, m, &eo, &d)) {
    fprintf(stderr, "ttqd perplexity: %s\n", d.msg);
    ttqd_free_models(m_full, m);
    return TTQD_EXIT_FAIL;
  }
  bool tty = isatty(STDERR_FILENO);
  int rc = 0;
  if (!json) printf("%-40s %10s %10s %6s\n", "file", "ppl", "tokens", "docs");
  for (int f = optind; f < argc && rc == 0; f++) {
    char *text = NULL;
    if (ttq__read_file(argv[f], &text, NULL, &d)) {
      fprintf(stderr, "ttqd perplexity: %s\n", d.msg);
      rc = TTQD_EXIT_FAIL;
      break;
    }
    char **docs = NULL;
    int n_docs = 0;
    if (ttq_split_docs(text, &docs, &n_docs, &d)) {
      fprintf(stderr, "ttqd perplexity: %s\n", d.msg);
      free(text);
      rc = TTQD_EXIT_FAIL;
      break;
    }
    if (n_docs > max_docs) n_docs = (int)max_docs;
    double nll = 0, t0 = ttqd_now_ms(), quant_ms = 0;
    int64_t count = 0;
    int used = 0;
    for (int i = 0; i < n_docs; i++) {
      int32_t *ids = NULL;
      int n = 0;
      if (ttq_doc_tokens(m, docs[i], (int)ctx, &ids, &n, &d) ||
          (n >= TTQ_PPL_MIN_TOKENS && ttq_engine_score(&eng, ids, n, &nll, &count, &d))) {
        fprintf(stderr, "ttqd perplexity: %s: document %d: %s\n", argv[f], i, d.msg);
        free(ids);
        rc = TTQD_EXIT_FAIL;
        break;
      }
      if (n >= TTQ_PPL_MIN_TOKENS) used++, quant_ms += eng.last.quant_ms;
      free(ids);
      if (tty) {
        int w = 30, k = (i + 1) * w / n_docs;
        fprintf(stderr, "\r%-24.24s [%.*s%*s] %d/%d docs, ppl %.3f", argv[f], k,
                "##############################", w - k, "", i + 1, n_docs,
                count ? exp(nll / count) : 0.0);
      }
    }
    if (tty) fprintf(stderr, "\r\033[K");
    if (rc == 0) {
      double ppl = count ? exp(nll / (double)count) : NAN;
      if (json) {
        printf("{\"file\":");
        json_str(stdout, argv[f]);
        char qs[128];
        ttq_qcfg_str(&eo.q, qs, sizeof qs);
        printf(",\"ppl\":%.6f,\"tokens\":%lld,\"docs\":%d,\"quant\":\"%s\",\"seconds\":%.3f,"
               "\"quant_ms_per_doc\":%.2f}\n",
               ppl, (long long)count, used, qs, (ttqd_now_ms() - t0) / 1e3,
               eo.q.method == TTQ_METHOD_TTQ && used ? quant_ms / used : eng.last.quant_ms);
      } else {
        printf("%-40s %10.4f %10lld %6d\n", argv[f], ppl, (long long)count, used);
      }
      fflush(stdout);
    }
    free(docs);
    free(text);
  }
  ttq_engine_free(&eng);
  ttqd_free_models(m_full, m);
  return rc;
}
