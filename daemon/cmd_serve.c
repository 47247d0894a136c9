/* cmd_serve.c -- `ttqd serve`: the daemon. Every rank loads its shard; rank 0 also runs the
 * front end (frontend.c) and sends each job to all ranks (executor.c).
 *
 * Startup is all-or-nothing: every rank learns whether every rank loaded its shard and rank 0
 * bound its sockets, and all exit together otherwise. Readiness (sd_notify READY=1 and the
 * "serving" log line) comes only after that. SIGTERM or SIGINT on rank 0 starts the drain
 * (frontend.c); the other ranks ignore them and stop when rank 0 says so. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "cli.h"
#include "comm.h"
#include "executor.h"
#include "frontend.h"
#include "notify.h"
#include "serve_cfg.h"

/* The daemon's only global: how many SIGTERM/SIGINT arrived (read by the front end). */
static volatile sig_atomic_t g_signals;

static void on_signal(int sig) {
  (void)sig;
  g_signals++;
}

static void install_signals(bool coordinator) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = coordinator ? on_signal : SIG_IGN;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sa.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &sa, NULL);
}

static int write_pid_file(const char *path) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f || fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
    fprintf(stderr, "ttqd serve: pid-file: cannot write %s: %s\n", path, strerror(errno));
    return -1;
  }
  return 0;
}

/* The cgroup v2 memory limit of this process in bytes, or 0 when there is none. */
static uint64_t cgroup_memory_max(void) {
  FILE *f = fopen("/sys/fs/cgroup/memory.max", "r");
  if (!f) return 0;
  char buf[64] = "";
  uint64_t v = 0;
  if (fgets(buf, sizeof buf, f) && strncmp(buf, "max", 3) != 0) v = strtoull(buf, NULL, 10);
  fclose(f);
  return v;
}

/* What one rank needs to serve, estimated: its weights (mapped), the quantized copy of its
 * linear layers and output head, its KV cache for max_ctx tokens, and prefill activations. Refuses, with the
 * breakdown, when that exceeds the configured or cgroup limit. */
static bool memory_fits(const ttqd_serve_cfg *c, const ttq_model *shard, int max_ctx, int rank) {
  uint64_t limit = c->memory_limit_mb > 0 ? (uint64_t)c->memory_limit_mb << 20 : cgroup_memory_max();
  if (!limit) return true;
  const ttq_config *mc = &shard->cfg;
  double weights = (double)ttq_model_weight_bytes(shard), lin = 0;
  for (int l = 0; l < mc->n_layers; l++)
    for (int p = 0; p < TTQ_N_PROJ; p++) {
      const ttq_tensor *t = ttq_proj_weight(shard, l, p);
      lin += (double)t->shape[0] * (double)t->shape[1];
    }
  double head = c->eo.q.head_bits > 0 ? (double)shard->head.shape[0] * (double)mc->dim : 0;
  double quant = c->eo.q.method == TTQ_METHOD_FP ? 0
                 : (lin * c->eo.q.bits + head * c->eo.q.head_bits) / 8.0 +
                       (lin + head) / c->eo.q.group * 4.0;
  const bool kv16 = c->eo.kv == TTQ_F16;
  double kv = (double)ttq_kv_bytes_per_token(mc, c->eo.kv) * (double)max_ctx;
  double act = (double)max_ctx * (4.0 * mc->dim + 3.0 * mc->ffn_dim) * sizeof(float) + 64.0 * (1 << 20);
  if (kv16) /* the prefill's f32 copy of one key/value head per thread (forward.h kv_f32) */
    act += 2.0 * (c->threads > 0 ? (double)c->threads : (double)ttqd_default_threads()) *
           (double)max_ctx * mc->head_dim * sizeof(float);
  double need = weights + quant + kv + act;
  if (need <= (double)limit) return true;
  fprintf(stderr,
          "ttqd serve: rank %d needs about %.0f MiB (weights %.0f, quantized copy %.0f, KV cache "
          "%.0f for %d tokens, activations %.0f) but the memory limit is %.0f MiB (%s): use more "
          "ranks, lower max-prompt-tokens / max-tokens, or raise the limit\n",
          rank, need / 1048576, weights / 1048576, quant / 1048576, kv / 1048576, max_ctx,
          act / 1048576, (double)limit / 1048576,
          c->memory_limit_mb > 0 ? "memory-limit-mb" : "cgroup memory.max");
  return false;
}

int ttqd_cmd_serve(int argc, char **argv) {
  ttqd_serve_cfg cfg;
  int prc = ttqd_serve_cfg_parse(&cfg, argc, argv);
  if (!ttqd_comm_agree(prc == 0)) {
    ttqd_serve_cfg_free(&cfg);
    return prc == 1 ? 0 : TTQD_EXIT_USAGE;
  }
  const int rank = ttqd_comm_rank(), ranks = ttqd_comm_size();
  install_signals(rank == 0);
  int align = ttqd_tp_align(cfg.eo.q.method == TTQ_METHOD_FP ? 32 : cfg.eo.q.group);
  ttq_model *full = NULL, *shard = NULL;
  if (ttqd_load_for_ranks("serve", cfg.model, align, &full, &shard)) {
    ttqd_serve_cfg_free(&cfg);
    return TTQD_EXIT_FAIL;
  }
  const ttq_config *mc = &full->cfg;
  int max_prompt = mc->max_pos - 1;
  bool ok = true;
  if (cfg.max_prompt_tokens > max_prompt) {
    fprintf(stderr, "ttqd serve: max-prompt-tokens = %ld exceeds the model's context - 1 = %d\n",
            cfg.max_prompt_tokens, max_prompt);
    ok = false;
  } else if (cfg.max_prompt_tokens > 0) {
    max_prompt = (int)cfg.max_prompt_tokens;
  }
  if (ok && cfg.eo.q.method != TTQ_METHOD_FP) {
    ttq_diag d = {0};
    if (ttq_qcfg_check(&cfg.eo.q, mc, &d)) {
      fprintf(stderr, "ttqd serve: default quantization: %s\n", d.msg);
      ok = false;
    }
  }
  long ctx = (long)max_prompt + cfg.max_tokens;
  int max_ctx = ctx < mc->max_pos ? (int)ctx : mc->max_pos;
  if (ok) ok = memory_fits(&cfg, shard, max_ctx, rank);

  /* The engine for the default settings, on every rank (all of them or none). */
  ttqd_exec x;
  memset(&x, 0, sizeof x);
  x.cfg = &cfg;
  x.m = shard;
  x.rank = rank;
  x.ranks = ranks;
  x.max_ctx = max_ctx;
  if (ttqd_comm_agree(ok)) {
    ttq_diag d = {0};
    double t0 = ttqd_now_ms();
    ok = ttqd_exec_prepare(&x, &d) == 0;
    if (!ok) fprintf(stderr, "ttqd serve: rank %d: engine: %s\n", rank, d.msg);
    else if (rank == 0 && cfg.log_level >= TTQD_LOG_DEBUG)
      fprintf(stderr, "ttqd: engine ready in %.0f ms\n", ttqd_now_ms() - t0);
  } else {
    ok = false;
  }

  ttqd_jobq q = {0};
  ttqd_metrics met;
  ttqd_frontend fe;
  memset(&fe, 0, sizeof fe);
  void *zctx = NULL, *exec_out = NULL;
  bool have_q = false;
  if (rank == 0 && ok) {
    ttqd_metrics_init(&met, ttqd_now_ms());
    have_q = ttqd_jobq_init(&q, (int)cfg.queue_depth) == 0;
    zctx = zmq_ctx_new();
    fe.cfg = &cfg;
    fe.rctx = (ttqd_req_ctx){&cfg, full, ranks, align, max_prompt, max_ctx};
    fe.q = &q;
    fe.met = &met;
    fe.signals = &g_signals;
    ok = have_q && zctx && ttqd_frontend_open(&fe, zctx, &exec_out) == 0;
    if (ok && cfg.pid_file) ok = write_pid_file(cfg.pid_file) == 0;
  }
  int rc = TTQD_EXIT_FAIL;
  if (ttqd_comm_agree(ok)) {
    x.q = &q;
    x.met = &met;
    x.out = exec_out;
    if (rank == 0) {
      if (ttqd_frontend_start(&fe)) {
        fprintf(stderr, "ttqd serve: cannot start the front-end thread\n");
        ttqd_jobq_close(&q); /* the executor still tells the other ranks to stop */
      } else {
        char qs[96];
        ttq_qcfg_str(&cfg.eo.q, qs, sizeof qs);
        fprintf(stderr,
                "ttqd: serving %s on %s%s (%d rank%s, %d threads each, queue %ld, default %s, KV "
                "cache %s)%s%s\n",
                cfg.model, fe.endpoint, cfg.curve_secret_key ? " with CURVE" : "", ranks,
                ranks > 1 ? "s" : "", (int)(cfg.threads > 0 ? cfg.threads : ttqd_default_threads()),
                cfg.queue_depth, qs, cfg.eo.kv == TTQ_F16 ? "f16" : "f32",
                cfg.metrics_listen ? "; metrics on " : "",
                cfg.metrics_listen ? fe.metrics_endpoint : "");
        ttqd_notify("READY=1\nSTATUS=serving");
      }
    }
    int xr = ttqd_exec_run(&x);
    if (rank == 0) {
      ttqd_frontend_join(&fe);
      ttqd_notify("STOPPING=1");
    }
    rc = xr == 0 ? 0 : TTQD_EXIT_FAIL;
    if (rc == 0 && rank == 0) fprintf(stderr, "ttqd: stopped\n");
  }
  if (rank == 0) {
    if (exec_out) zmq_close(exec_out);
    ttqd_frontend_close(&fe, 2000);
    if (zctx) zmq_ctx_term(zctx);
    if (cfg.pid_file && ok) unlink(cfg.pid_file);
    if (have_q) ttqd_jobq_free(&q);
    if (ok || have_q) ttqd_metrics_free(&met);
  }
  ttqd_exec_free(&x);
  ttqd_free_models(full, shard);
  ttqd_serve_cfg_free(&cfg);
  return rc;
}
