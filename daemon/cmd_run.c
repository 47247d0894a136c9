/* cmd_run.c -- `ttqd run`: local generation. Generated text goes to stdout as it is produced
 * (only complete UTF-8 characters, never past a stop string); figures go to stderr. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "comm.h"
#include "sampler.h"
#include "textstream.h"

static const char run_usage[] =
    "usage: ttqd run --model PATH [-n N] [--temperature T] [--top-k K] [--top-p P] [--seed S]\n"
    "                [--stop STR]... [--threads N] [--quiet] PROMPT\n"
    "  -n N             tokens to generate (default 64)\n"
    "  --temperature T  0 = greedy (default 0.8)\n"
    "  --top-k K        keep the K most likely tokens, 0 = off (default 40)\n"
    "  --top-p P        nucleus sampling, 1 = off (default 0.95)\n"
    "  --seed S         sampler seed (default 0)\n"
    "  --stop STR       stop before STR (repeatable, up to 8)\n"
    "  --threads N      threads (default: all cores)\n"
    "  --quiet          no figures on stderr\n"
    "  --logits-out F   write the logits of every generated step (float32, vocab per step) to F\n"
    TTQD_QUANT_USAGE
    "PROMPT '-' reads the prompt from stdin.\n";

int ttqd_cmd_run(int argc, char **argv) {
  const char *model_path = NULL;
  long n_gen = 64, top_k = 40, threads = 0;
  double temp = 0.8, top_p = 0.95;
  uint64_t seed = 0;
  const char *stops[TTQD_MAX_STOPS];
  int n_stops = 0;
  bool quiet = false;
  const char *logits_out = NULL;
  FILE *lf = NULL;
  static const struct option opts[] = {
      {"model", required_argument, 0, 'm'},       {"temperature", required_argument, 0, 't'},
      {"top-k", required_argument, 0, 'k'},       {"top-p", required_argument, 0, 'p'},
      {"seed", required_argument, 0, 's'},        {"stop", required_argument, 0, 'S'},
      {"threads", required_argument, 0, 'T'},     {"quiet", no_argument, 0, 'q'},
      {"help", no_argument, 0, 'h'},              {"logits-out", required_argument, 0, 'L'},
      TTQD_QUANT_OPTIONS,
      {0, 0, 0, 0}};
  ttq_engine_opts eo = ttqd_engine_defaults();
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "m:n:t:k:p:s:S:T:qL:h", opts, NULL)) != -1) {
    switch (c) {
    case 'm': model_path = optarg; break;
    case 'n': if (ttqd_parse_int("run", "-n", optarg, 1, 1 << 20, &n_gen)) return TTQD_EXIT_USAGE; break;
    case 't': if (ttqd_parse_float("run", "--temperature", optarg, 0, 100, &temp)) return TTQD_EXIT_USAGE; break;
    case 'k': if (ttqd_parse_int("run", "--top-k", optarg, 0, 1 << 24, &top_k)) return TTQD_EXIT_USAGE; break;
    case 'p': if (ttqd_parse_float("run", "--top-p", optarg, 1e-9, 1, &top_p)) return TTQD_EXIT_USAGE; break;
    case 's': if (ttqd_parse_u64("run", "--seed", optarg, &seed)) return TTQD_EXIT_USAGE; break;
    case 'S':
      if (n_stops == TTQD_MAX_STOPS || !*optarg || strlen(optarg) > TTQD_MAX_STOP_BYTES) {
        fprintf(stderr, "ttqd run: --stop: at most %d non-empty stop strings of at most %d bytes\n",
                TTQD_MAX_STOPS, TTQD_MAX_STOP_BYTES);
        return TTQD_EXIT_USAGE;
      }
      stops[n_stops++] = optarg;
      break;
    case 'T': if (ttqd_parse_int("run", "--threads", optarg, 1, 1024, &threads)) return TTQD_EXIT_USAGE; break;
    case 'q': quiet = true; break;
    case 'L': logits_out = optarg; break;
    case 'h': fputs(run_usage, stdout); return 0;
    default: {
      int r = ttqd_quant_opt("run", c, optarg, &eo);
      if (r == 1) break;
      if (r == 0) fputs(run_usage, stderr);
      return TTQD_EXIT_USAGE;
    }
    }
  }
  if (optind != argc - 1) {
    fprintf(stderr, "ttqd run: expected exactly one PROMPT argument (got %d)\n%s", argc - optind,
            run_usage);
    return TTQD_EXIT_USAGE;
  }
  char *prompt = argv[optind], *stdin_buf = NULL;
  if (!strcmp(prompt, "-")) {
    if (!(stdin_buf = ttqd_read_stdin(NULL))) {
      fprintf(stderr, "ttqd run: cannot read the prompt from stdin\n");
      return TTQD_EXIT_FAIL;
    }
    prompt = stdin_buf;
  }
  ttq_model *m_full = NULL, *m = NULL;
  if (ttqd_load_for_ranks("run", model_path,
                          ttqd_tp_align(eo.q.method == TTQ_METHOD_FP ? 32 : eo.q.group), &m_full,
                          &m))
    m = NULL;
  if (!m) {
    free(stdin_buf);
    return TTQD_EXIT_FAIL;
  }
  int rc = TTQD_EXIT_FAIL;
  ttq_diag d = {0};
  int32_t *raw = NULL, *ids = NULL;
  size_t n_raw = 0;
  ttq_engine eng = {0};
  bool eng_ok = false;
  ttq_sampler smp = {0};
  float *logits = NULL;
  if (ttq_tokenize(m->tok, prompt, strlen(prompt), true, &raw, &n_raw, &d)) {
    fprintf(stderr, "ttqd run: %s\n", d.msg);
    goto out;
  }
  int bos = m->cfg.add_bos ? 1 : 0;
  int n_prompt = (int)n_raw + bos;
  if (n_prompt == 0) {
    fprintf(stderr, "ttqd run: the prompt is empty and the model adds no bos token\n");
    goto out;
  }
  if (n_prompt >= m->cfg.max_pos) {
    fprintf(stderr, "ttqd run: the prompt has %d tokens; the model's context is %d\n", n_prompt,
            m->cfg.max_pos);
    goto out;
  }
  ids = malloc((size_t)n_prompt * sizeof *ids);
  if (bos) ids[0] = m->cfg.bos_id;
  memcpy(ids + bos, raw, n_raw * sizeof *raw);
  if (n_gen > m->cfg.max_pos - n_prompt) n_gen = m->cfg.max_pos - n_prompt;
  ttq_sampler_cfg scfg = {(float)temp, (int)top_k, (float)top_p, seed};
  eo.max_ctx = n_prompt + (int)n_gen;
  eo.threads = (int)threads;
  if (ttq_sampler_init(&smp, m->cfg.vocab, &scfg, &d) || ttq_engine_init(&eng, m, &eo, &d)) {
    fprintf(stderr, "ttqd run: %s\n", d.msg);
    goto out;
  }
  eng_ok = true;
  logits = malloc((size_t)m->cfg.vocab * sizeof *logits);
  double t0 = ttqd_now_ms();
  if (ttq_engine_prefill(&eng, ids, n_prompt, logits, &d)) {
    fprintf(stderr, "ttqd run: %s\n", d.msg);
    goto out;
  }
  double t_prefill = eng.last.prefill_ms, t_first = 0;
  ttqd_textstream ts;
  if (ttqd_textstream_init(&ts, m->tok, stops, n_stops)) {
    fprintf(stderr, "ttqd run: out of memory\n");
    goto out;
  }
  int generated = 0;
  const char *finish = "length", *text;
  size_t text_len;
  if (logits_out && ttqd_comm_rank() == 0 && !(lf = fopen(logits_out, "wb"))) {
    fprintf(stderr, "ttqd run: --logits-out: cannot create %s\n", logits_out);
    ttqd_textstream_free(&ts);
    goto out;
  }
  double t1 = ttqd_now_ms();
  for (int i = 0; i < n_gen; i++) {
    if (lf) fwrite(logits, sizeof *logits, (size_t)m->cfg.vocab, lf);
    int32_t next = ttq_sample(&smp, logits);
    generated++;
    if (i == 0) t_first = ttqd_now_ms() - t0;
    if (ttq_model_is_eos(m, next)) {
      finish = "eos";
      break;
    }
    int hit = ttqd_textstream_push(&ts, next, &text, &text_len);
    if (hit < 0) {
      fprintf(stderr, "ttqd run: %s\n", ttq_strerror(hit));
      ttqd_textstream_free(&ts);
      goto out;
    }
    fwrite(text, 1, text_len, stdout);
    fflush(stdout);
    if (hit) {
      finish = "stop";
      break;
    }
    if (i + 1 == n_gen) break;
    if (ttq_engine_decode(&eng, next, logits, &d)) {
      fprintf(stderr, "ttqd run: %s\n", d.msg);
      ttqd_textstream_free(&ts);
      goto out;
    }
  }
  if (ttqd_textstream_finish(&ts, &text, &text_len) == 0) fwrite(text, 1, text_len, stdout);
  fflush(stdout);
  ttqd_textstream_free(&ts);
  if (lf && fclose(lf) != 0) {
    fprintf(stderr, "ttqd run: --logits-out: write failed\n");
    lf = NULL;
    goto out;
  }
  lf = NULL;
  double t_decode = ttqd_now_ms() - t1;
  if (!quiet) {
    char qs[128];
    ttq_qcfg_str(&eo.q, qs, sizeof qs);
    fprintf(stderr,
            "\n[ttqd run] model %s | %s | prompt %d tokens, prefill %.1f ms (%.1f tok/s; "
            "statistics %.2f ms) | quantization %.1f ms | time to first token %.1f ms | "
            "generated %d tokens in %.1f ms (%.1f tok/s) | finish: %s | threads %d, kernels %s\n",
            m->path, qs, n_prompt, t_prefill, n_prompt / (t_prefill / 1e3), eng.last.stats_ms,
            eng.last.quant_ms, t_first, generated, t_decode,
            generated > 1 ? (generated - 1) / (t_decode / 1e3) : 0.0, finish, eng.st.threads,
            eng.st.kern->name);
  }
  rc = 0;
out:
  if (lf) fclose(lf);
  free(logits);
  free(raw);
  free(ids);
  free(stdin_buf);
  ttq_sampler_free(&smp);
  if (eng_ok) ttq_engine_free(&eng);
  ttqd_free_models(m_full, m);
  return rc;
}
