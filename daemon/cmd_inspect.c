/* cmd_inspect.c -- `ttqd inspect`: architecture, shapes, dtypes, parameter count, bytes. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char inspect_usage[] = "usage: ttqd inspect --model PATH [--tensors] [--json]\n"
                                    "  --tensors  list every weight tensor\n"
                                    "  --json     one JSON object\n";

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
                                       {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "m:tjh", opts, NULL)) != -1) {
    switch (c) {
    case 'm': model_path = optarg; break;
    case 't': tensors = true; break;
    case 'j': json = true; break;
    case 'h': fputs(inspect_usage, stdout); return 0;
    default: fputs(inspect_usage, stderr); return TTQD_EXIT_USAGE;
    }
  }
  ttq_model *m = ttqd_load_model("inspect", model_path);
  if (!m) return TTQD_EXIT_FAIL;
  const ttq_config *c_ = &m->cfg;
  int64_t params = ttq_model_n_params(m);
  size_t bytes = ttq_model_weight_bytes(m);
  const ttq_layer *L = &m->layers[0];
  if (json) {
    printf("{\"model\":\"%s\",\"format\":\"%s\",\"architecture\":\"%s\",\"dim\":%d,\"layers\":%d,"
           "\"heads\":%d,\"kv_heads\":%d,\"head_dim\":%d,\"ffn\":%d,\"vocab\":%d,\"context\":%d,"
           "\"rope_theta\":%g,\"norm_eps\":%g,\"tied_head\":%s,\"qk_norm\":%s,\"bos\":%d,"
           "\"add_bos\":%s,\"params\":%lld,\"weight_bytes\":%zu,\"weight_dtype\":\"%s\"}\n",
           m->path, m->format, ttq_arch_name(c_->arch), c_->dim, c_->n_layers, c_->n_heads,
           c_->n_kv_heads, c_->head_dim, c_->ffn_dim, c_->vocab, c_->max_pos, c_->rope_theta,
           c_->norm_eps, c_->tied_head ? "true" : "false", c_->qk_norm ? "true" : "false",
           c_->bos_id, c_->add_bos ? "true" : "false", (long long)params, bytes,
           ttq_dtype_name(L->wq.dtype));
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
    if (tensors) ttq_model_each_tensor(m, print_tensor, NULL);
  }
  ttq_model_free(m);
  return 0;
}
