/* cmd_bench.c -- `ttqd bench`: prefill and decode speed of the engine on one model.
 * The prompt is a fixed pseudo-random sequence of ordinary tokens (same for every run), so
 * results are comparable across runs and machines. Figures are printed, never asserted. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "cli.h"
#include "comm.h"
#include "sampler.h"
#include "util.h"

static const char bench_usage[] =
    "usage: ttqd bench --model PATH [--prompt-tokens N] [--gen-tokens N] [--threads N]\n"
    "                  [--repeat R] [--json]\n"
    "  --prompt-tokens  prompt length (default 128)\n"
    "  --gen-tokens     tokens to decode (default 32)\n"
    "  --repeat         runs; the best of them is reported (default 1)\n"
    "  --bandwidth      also measure the machine's read bandwidth and report decode as a\n"
    "                   share of the roofline (bandwidth / bytes read per token)\n"
    "  --json           one object with prefill_tok_s, decode_tok_s, ttft_ms,\n"
    "                   weight_bytes_per_token, stats_ms, quant_ms, quant_bytes, ...\n"
    "  --quant-in-prefill  ttq: quantize before the first token (inside the prefill when the\n"
    "                   prompt fits one chunk; `fused` in the JSON). Default: after it, in the\n"
    "                   first decode step (`deferred`; its time is second_token_ms)\n"
    "  --no-fuse        with --quant-in-prefill: a separate pass after the prefill\n"
    TTQD_QUANT_USAGE;

/* Streaming read bandwidth of this machine with `threads` threads, in GB/s: the decode
 * roofline is this divided by the bytes read per token. Best of 5 passes over 1 GiB in huge
 * pages, as the weights are held (util.h): over 4 KiB pages the TLB misses cost the stream
 * itself, and the roofline would be too low. */
static double read_bandwidth(const ttq_kernels *k, int threads) {
  const size_t n = (size_t)1 << 30;
  uint8_t *a = ttq__alloc_huge(n);
  double best = 0;
  if (!a) return 0;
  memset(a, 1, n);
  uint64_t sink = 0;
  for (int rep = 0; rep < 5; rep++) {
    double t0 = ttqd_now_ms();
#pragma omp parallel num_threads(threads) reduction(^ : sink)
    {
      int nt = omp_get_num_threads(), id = omp_get_thread_num();
      size_t per = n / (size_t)nt / 4096 * 4096;
      sink ^= k->stream(a + per * (size_t)id, id == nt - 1 ? n - per * (size_t)id : per);
    }
    double gbs = n / ((ttqd_now_ms() - t0) / 1e3) / 1e9;
    if (gbs > best) best = gbs;
  }
  free(a);
  return sink == 12345 ? best * 1.0000001 : best; /* uses sink */
}

/* Bytes of weights every decoded token reads: the linear layers as the request stores them
 * (quantized or not), the norms, the output head (quantized or not); of the embedding table
 * only one row. */
static size_t bytes_per_token(const ttq_engine *e) {
  const ttq_model *m = e->m;
  size_t b = ttq_model_weight_bytes(m), lin = 0;
  for (int l = 0; l < m->cfg.n_layers; l++)
    for (int p = 0; p < TTQ_N_PROJ; p++) lin += ttq_proj_weight(m, l, p)->nbytes;
  b = b - lin + ttq_engine_linear_bytes(e); /* with the quantized head, if any */
  if (e->has_qm && e->qm.has_head) b -= m->head.nbytes;
  if (!m->cfg.tied_head) b -= m->embed.nbytes;
  return b + m->embed.nbytes / (size_t)m->cfg.vocab;
}

int ttqd_cmd_bench(int argc, char **argv) {
  const char *model_path = NULL;
  long n_prompt = 128, n_gen = 32, threads = 0, repeat = 1;
  bool json = false, bandwidth = false;
  static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                       {"bandwidth", no_argument, 0, 'B'},
                                       {"prompt-tokens", required_argument, 0, 'p'},
                                       {"gen-tokens", required_argument, 0, 'g'},
                                       {"threads", required_argument, 0, 'T'},
                                       {"repeat", required_argument, 0, 'r'},
                                       {"json", no_argument, 0, 'j'},
                                       {"help", no_argument, 0, 'h'},
                                       {"no-fuse", no_argument, 0, 'F'},
                                       {"quant-in-prefill", no_argument, 0, 'P'},
                                       TTQD_QUANT_OPTIONS,
                                       {0, 0, 0, 0}};
  ttq_engine_opts eo = ttqd_engine_defaults();
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "m:p:g:T:r:jBh", opts, NULL)) != -1) {
    switch (c) {
    case 'm': model_path = optarg; break;
    case 'p': if (ttqd_parse_int("bench", "--prompt-tokens", optarg, 1, 1 << 20, &n_prompt)) return TTQD_EXIT_USAGE; break;
    case 'g': if (ttqd_parse_int("bench", "--gen-tokens", optarg, 1, 1 << 20, &n_gen)) return TTQD_EXIT_USAGE; break;
    case 'T': if (ttqd_parse_int("bench", "--threads", optarg, 1, 1024, &threads)) return TTQD_EXIT_USAGE; break;
    case 'r': if (ttqd_parse_int("bench", "--repeat", optarg, 1, 1000, &repeat)) return TTQD_EXIT_USAGE; break;
    case 'j': json = true; break;
    case 'B': bandwidth = true; break;
    case 'F': eo.no_fuse = true; break;
    case 'P': eo.quant_in_prefill = true; break;
    case 'h': fputs(bench_usage, stdout); return 0;
    default: {
      int r = ttqd_quant_opt("bench", c, optarg, &eo);
      if (r == 1) break;
      if (r == 0) fputs(bench_usage, stderr);
      return TTQD_EXIT_USAGE;
    }
    }
  }
  ttq_model *m_full = NULL, *m = NULL;
  if (ttqd_load_for_ranks("bench", model_path,
                          ttqd_tp_align(eo.q.method == TTQ_METHOD_FP ? 32 : eo.q.group), &m_full,
                          &m))
    m = NULL;
  if (!m) return TTQD_EXIT_FAIL;
  if (n_prompt + n_gen > m->cfg.max_pos) {
    fprintf(stderr, "ttqd bench: %ld prompt + %ld generated tokens exceed the model's context %d\n",
            n_prompt, n_gen, m->cfg.max_pos);
    ttqd_free_models(m_full, m);
    return TTQD_EXIT_USAGE;
  }
  ttq_engine eng;
  ttq_diag d = {0};
  eo.max_ctx = (int)(n_prompt + n_gen);
  eo.threads = (int)threads;
  if (ttq_engine_init(&eng, m, &eo, &d)) {
    fprintf(stderr, "ttqd bench: %s\n", d.msg);
    ttqd_free_models(m_full, m);
    return TTQD_EXIT_FAIL;
  }
  int32_t *ids = malloc((size_t)n_prompt * sizeof *ids);
  float *logits = malloc((size_t)m->cfg.vocab * sizeof *logits);
  uint64_t s = 12345;
  int lo = m->cfg.vocab > 512 ? 256 : 0; /* skip specials and raw bytes */
  for (long i = 0; i < n_prompt; i++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    ids[i] = lo + (int32_t)((s >> 33) % (uint64_t)(m->cfg.vocab - lo));
  }
  if (m->cfg.add_bos) ids[0] = m->cfg.bos_id;
  double best_prefill = 1e30, best_decode = 1e30, best_ttft = 1e30, best_quant = 1e30,
         best_stats = 1e30, best_second = 1e30;
  int rc = 0;
  double comm_bytes = 0, comm_calls = 0;
  for (long r = 0; r < repeat && !rc; r++) {
    double t0 = ttqd_now_ms();
    rc = ttq_engine_prefill(&eng, ids, (int)n_prompt, logits, &d);
    int32_t next = ttq_argmax(logits, m->cfg.vocab);
    double t1 = ttqd_now_ms();
    /* the first decode step apart: it quantizes when that was deferred (second_token_ms);
     * decode tok/s is the steady state of the other steps */
    rc = rc ? rc : ttq_engine_decode(&eng, next, logits, &d);
    next = ttq_argmax(logits, m->cfg.vocab);
    double t1b = ttqd_now_ms();
    uint64_t b0 = m->tp ? m->tp->sent_bytes : 0, c0 = m->tp ? m->tp->calls : 0;
    for (long i = 1; i < n_gen && !rc; i++) {
      rc = ttq_engine_decode(&eng, next, logits, &d);
      next = ttq_argmax(logits, m->cfg.vocab);
    }
    double t2 = ttqd_now_ms();
    if (t1b - t1 < best_second) best_second = t1b - t1;
    if (eng.last.prefill_ms < best_prefill) best_prefill = eng.last.prefill_ms;
    if (t1 - t0 < best_ttft) best_ttft = t1 - t0;
    if (eng.last.stats_ms < best_stats) best_stats = eng.last.stats_ms;
    if (eng.last.quant_ms < best_quant) best_quant = eng.last.quant_ms;
    if (t2 - t1b < best_decode) best_decode = t2 - t1b;
    if (m->tp && n_gen > 1) {
      comm_bytes = (double)(m->tp->sent_bytes - b0) / (double)(n_gen - 1);
      comm_calls = (double)(m->tp->calls - c0) / (double)(n_gen - 1);
    }
  }
  if (rc) {
    fprintf(stderr, "ttqd bench: %s\n", d.msg);
  } else {
    double pf = n_prompt / (best_prefill / 1e3),
           dc = n_gen > 1 ? (n_gen - 1) / (best_decode / 1e3) : 1 / (best_second / 1e3);
    size_t bpt = bytes_per_token(&eng);
    char qs[128];
    ttq_qcfg_str(&eo.q, qs, sizeof qs);
    /* KV cache read per decoded token, at the middle of the decode */
    size_t kv = ttq_kv_bytes_per_token(&m->cfg, eo.kv) * (size_t)(n_prompt + n_gen / 2);
    double bw = bandwidth ? read_bandwidth(eng.st.kern, eng.st.threads) : 0;
    double roof = bw > 0 ? bw * 1e9 / (double)(bpt + kv) : 0;
    if (json) {
      printf("{\"model\":\"%s\",\"params\":%lld,\"threads\":%d,\"kernels\":\"%s\",\"quant\":\"%s\","
             "\"prompt_tokens\":%ld,\"gen_tokens\":%ld,\"prefill_tok_s\":%.2f,\"decode_tok_s\":%.2f,"
             "\"ttft_ms\":%.2f,\"weight_bytes_per_token\":%zu,\"kv_bytes_per_token\":%zu,"
             "\"decode_gb_s\":%.2f,\"read_bandwidth_gb_s\":%.2f,\"roofline_tok_s\":%.2f,"
             "\"roofline_share\":%.3f,\"stats_ms\":%.3f,\"quant_ms\":%.2f,\"quant_bytes\":%zu,"
             "\"ranks\":%d,\"sent_bytes_per_token_per_rank\":%.0f,\"collectives_per_token\":%.1f,"
             "\"fused\":%s,\"deferred\":%s,\"second_token_ms\":%.2f,\"kv_cache\":\"%s\"}\n",
             m->path, (long long)ttq_model_n_params(m), eng.st.threads, eng.st.kern->name, qs,
             n_prompt, n_gen, pf, dc, best_ttft, bpt, kv, (bpt + kv) * dc / 1e9, bw, roof,
             roof > 0 ? dc / roof : 0, best_stats, best_quant,
             eng.has_qm ? ttq_qmodel_bytes(&eng.qm) : (size_t)0, ttqd_comm_size(), comm_bytes,
             comm_calls, eng.last.fused ? "true" : "false", eng.last.deferred ? "true" : "false",
             best_second, eo.kv == TTQ_F16 ? "f16" : "f32");
    } else {
      printf("model %s: %.1fM parameters, %s weights, %d threads, %s kernels, %s, KV cache %s\n",
             m->path, ttq_model_n_params(m) / 1e6, ttq_dtype_name(m->layers[0].wq.dtype),
             eng.st.threads, eng.st.kern->name, qs, eo.kv == TTQ_F16 ? "f16" : "f32");
      printf("prefill %ld tokens: %.1f ms, %.1f tok/s (statistics %.2f ms); quantization %.1f ms%s; "
             "time to first token %.1f ms\n", n_prompt, best_prefill, pf, best_stats, best_quant,
             eng.last.fused ? " (inside the prefill)" : eng.last.deferred ? " (in the first decode step)" : "",
             best_ttft);
      printf("decode  %ld tokens: first step %.1f ms, then %.1f tok/s, %.2f GB/s of weights and KV "
             "cache\n", n_gen, best_second, dc, (bpt + kv) * dc / 1e9);
      if (m->tp)
        printf("tensor parallel: %d ranks; per decoded token each rank contributes %.0f bytes to "
               "%.0f collectives\n", ttqd_comm_size(), comm_bytes, comm_calls);
      if (bw > 0)
        printf("roofline: read bandwidth %.1f GB/s, %zu bytes per token -> %.1f tok/s; decode is "
               "%.0f%% of it\n", bw, bpt + kv, roof, 100 * dc / roof);
    }
  }
  free(ids);
  free(logits);
  ttq_engine_free(&eng);
  ttqd_free_models(m_full, m);
  return rc ? TTQD_EXIT_FAIL : 0;
}
