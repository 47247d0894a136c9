/* cmd_inspect.c -- `ttqd inspect`: architecture, shapes, dtypes, parameter count, bytes. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "qmodel.h"

static const char inspect_usage[] =
    "usage: ttqd inspect --model PATH [--tensors] [--json] [--quant M --bits B --group G ...]\n"
    "  --tensors  list every weight tensor\n"
    "  --json     one JSON object\n"
    "  with --quant: the memory footprint of the quantized linear layers\n" TTQD_QUANT_USAGE;

/* Bytes of the quantized linear layers (codes + fp16 scales and int8 zero points [+ low-rank]). */
static size_t quant_bytes(const ttq_model *m, const ttq_qcfg *q) {
  size_t b = 0;
  for (int l = 0; l < m->cfg.n_layers; l++)
    for (int p = 0; p < TTQ_N_PROJ; p++) {
      const ttq_tensor *t = ttq_proj_weight(m, l, p);
      size_t rows = (size_t)t->shape[0], cols = (size_t)t->shape[1];
      b += ttq_qmatrix_bytes_for((int64_t)rows, (int64_t)cols, q->bits, q->group);
      b += (size_t)q->rank * (rows + cols) * 4;
    }
  return b;
}

static void shape_str(const ttq_tensor *t, char *buf, size_t cap) {
  size_t k = (size_t)snprintf(buf, cap, "[");
  for (int i = 0; i < t->ndim && k < cap; i++)
    k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
  if (k < cap) snprintf(buf + k, cap - k, "]");
}

static void print_tensor(const ttq_tensor *t, void *u) {
  (void)u;
  char sh[64];
  shape_str(t, sh, sizeof sh);
  printf("  %-48s %-5s %-16s %12zu bytes\n", t->name ? t->name : "?", ttq_dtype_name(t->dtype), sh,
         t->nbytes);
}

int ttqd_cmd_inspect(int argc, char **argv) {
  const char *model_path = NULL;
  bool tensors = false, json = false;
  static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                       {"tensors", no_argument, 0, 't'},
                                       {"json", no_argument, 0, 'j'},
                                       {"help", no_argument, 0, 'h'},
                                       TTQD_QUANT_OPTIONS,
                                       {0, 0, 0, 0}};
  ttq_engine_opts eo = ttqd_engine_defaults();
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "m:tjh", opts, NULL)) != -1) {
    switch (c) {
    case 'm': model_path = optarg; break;
    case 't': tensors = true; break;
    case 'j': json = true; break;
    case 'h': fputs(inspect_usage, stdout); return 0;
    default: {
      int r = ttqd_quant_opt("inspect", c, optarg, &eo);
      if (r == 1) break;
      if (r == 0) fputs(inspect_usage, stderr);
      return TTQD_EXIT_USAGE;
    }
    }
  }
  ttq_model *m = ttqd_load_model("inspect", model_path);
  if (!m) return TTQD_EXIT_FAIL;
  const ttq_config *c_ = &m->cfg;
  int64_t params = ttq_model_n_params(m);
  size_t bytes = ttq_model_weight_bytes(m);
  const ttq_layer *L = &m->layers[0];
  ttq_diag d = {0};
  if (ttq_qcfg_check(&eo.q, c_, &d)) {
    fprintf(stderr, "ttqd inspect: %s\n", d.msg);
    ttq_model_free(m);
    return TTQD_EXIT_USAGE;
  }
  size_t lin = 0;
  for (int l = 0; l < c_->n_layers; l++)
    for (int p = 0; p < TTQ_N_PROJ; p++) lin += ttq_proj_weight(m, l, p)->nbytes;
  size_t qb = eo.q.method == TTQ_METHOD_FP ? lin : quant_bytes(m, &eo.q);
  /* the quantized head replaces a separate head; a tied one stays for the embedding lookups */
  size_t qhead = 0, total = bytes - lin + qb;
  if (eo.q.method != TTQ_METHOD_FP && eo.q.head_bits > 0) {
    qhead = ttq_qmatrix_bytes_for(m->head.shape[0], m->head.shape[1], eo.q.head_bits, eo.q.group);
    total += qhead - (c_->tied_head ? 0 : m->head.nbytes);
  }
  char qs[128];
  ttq_qcfg_str(&eo.q, qs, sizeof qs);
  /* the KV cache per token of context (every layer's keys and values) */
  const char *kvt = eo.kv == TTQ_F16 ? "f16" : "f32";
  const size_t kvtok = ttq_kv_bytes_per_token(c_, eo.kv);
  if (json) {
    printf("{\"model\":\"%s\",\"format\":\"%s\",\"architecture\":\"%s\",\"dim\":%d,\"layers\":%d,"
           "\"heads\":%d,\"kv_heads\":%d,\"head_dim\":%d,\"ffn\":%d,\"vocab\":%d,\"context\":%d,"
           "\"rope_theta\":%g,\"norm_eps\":%g,\"tied_head\":%s,\"qk_norm\":%s,\"bos\":%d,"
           "\"add_bos\":%s,\"params\":%lld,\"weight_bytes\":%zu,\"weight_dtype\":\"%s\","
           "\"quant\":\"%s\",\"linear_bytes\":%zu,\"quant_linear_bytes\":%zu,"
           "\"quant_head_bytes\":%zu,\"quant_total_bytes\":%zu,\"kv_cache\":\"%s\","
           "\"kv_bytes_per_token\":%zu}\n",
           m->path, m->format, ttq_arch_name(c_->arch), c_->dim, c_->n_layers, c_->n_heads,
           c_->n_kv_heads, c_->head_dim, c_->ffn_dim, c_->vocab, c_->max_pos, c_->rope_theta,
           c_->norm_eps, c_->tied_head ? "true" : "false", c_->qk_norm ? "true" : "false",
           c_->bos_id, c_->add_bos ? "true" : "false", (long long)params, bytes,
           ttq_dtype_name(L->wq.dtype), qs, lin, qb, qhead, total, kvt, kvtok);
  } else {
    printf("model         %s (%s)\n", m->path, m->format);
    printf("architecture  %s%s\n", ttq_arch_name(c_->arch),
           c_->rope_interleaved ? " (q/k rows in GGML interleaved RoPE order)" : "");
    printf("hidden        %d\nlayers        %d\nheads         %d query, %d key/value, head dim %d\n",
           c_->dim, c_->n_layers, c_->n_heads, c_->n_kv_heads, c_->head_dim);
    printf("ffn           %d (SwiGLU)\nvocab         %d\ncontext       %d\n", c_->ffn_dim, c_->vocab,
           c_->max_pos);
    printf("rope theta    %g\nrms norm eps  %g\n", c_->rope_theta, c_->norm_eps);
    printf("output head   %s\nq/k norm      %s\n", c_->tied_head ? "tied to the embedding" : "separate",
           c_->qk_norm ? "yes" : "no");
    printf("bos           %d (%s to prompts)\neos           ", c_->bos_id,
           c_->add_bos ? "added" : "not added");
    for (int i = 0; i < c_->n_eos; i++) printf("%s%d", i ? ", " : "", c_->eos_ids[i]);
    printf("\nweights       %s (embedding %s, norms %s)\n", ttq_dtype_name(L->wq.dtype),
           ttq_dtype_name(m->embed.dtype), ttq_dtype_name(L->attn_norm.dtype));
    printf("parameters    %lld (%.2fM)\nweight bytes  %zu (%.2f MiB)\n", (long long)params,
           params / 1e6, bytes, bytes / 1048576.0);
    printf("chat template %s\n", m->chat_template ? "yes" : "no");
    printf("KV cache      %s: %zu bytes per token of context (%.2f MiB at the full %d)\n", kvt,
           kvtok, (double)kvtok * c_->max_pos / 1048576.0, c_->max_pos);
    if (eo.q.method != TTQ_METHOD_FP) {
      int64_t lin_params = 0;
      for (int l = 0; l < c_->n_layers; l++)
        for (int p = 0; p < TTQ_N_PROJ; p++) lin_params += ttq_tensor_numel(ttq_proj_weight(m, l, p));
      printf("quantized     %s: linear layers %zu -> %zu bytes (%.3f bits per weight), ", qs,
             lin, qb, 8.0 * qb / lin_params);
      if (qhead)
        printf("head %zu -> %zu bytes, model %.2f MiB (embedding and norms stay %s)\n",
               m->head.nbytes, qhead, total / 1048576.0, ttq_dtype_name(m->embed.dtype));
      else
        printf("model %.2f MiB (embedding, norms and head stay %s)\n", total / 1048576.0,
               ttq_dtype_name(m->embed.dtype));
    }
    if (tensors) ttq_model_each_tensor(m, print_tensor, NULL);
  }
  ttq_model_free(m);
  return 0;
}
