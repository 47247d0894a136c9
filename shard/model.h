/* model.h -- a loaded decoder model: its configuration, views of its weights (memory-mapped,
 * never copied) and its tokenizer, from a Hugging Face directory (config.json +
 * model.safetensors or model.safetensors.index.json + tokenizer.json) or a GGUF v3 file.
 *
 * Invariants after ttq_model_load succeeds: every weight view has the shape the config
 * implies and a supported dtype; the tokenizer's vocabulary has cfg.vocab entries or fewer
 * (never more); the model is immutable and may be shared by threads and ranks. */
#ifndef TTQ_MODEL_H
#define TTQ_MODEL_H

#include <stdbool.h>
#include "ttq.h"
#include "tokenizer.h"

typedef enum ttq_arch { TTQ_ARCH_LLAMA = 0, TTQ_ARCH_QWEN3 = 1 } ttq_arch;

typedef struct ttq_config {
  ttq_arch arch;
  int dim;        /* hidden size */
  int n_layers;
  int n_heads;    /* query heads */
  int n_kv_heads; /* key/value heads (grouped-query attention) */
  int head_dim;
  int ffn_dim;    /* SwiGLU intermediate size */
  int vocab;
  int max_pos;    /* context length the model was trained for */
  float norm_eps;
  float rope_theta;
  bool tied_head;        /* output head is the embedding table */
  bool qk_norm;          /* per-head RMSNorm of q and k (qwen3) */
  bool rope_interleaved; /* q/k rows in GGML's interleaved layout (GGUF llama) */
  int bos_id;            /* -1 when none */
  bool add_bos;          /* prompts start with bos */
  int n_eos;
  int eos_ids[4];
  /* Tensor parallelism (tp.h): this model's query heads start at global head head_offset, its
   * key/value heads at kv_offset; kv_group = global n_heads / global n_kv_heads, so local query
   * head h reads local key/value head (head_offset + h) / kv_group - kv_offset.
   * One rank: 0, 0, n_heads / n_kv_heads. */
  int head_offset, kv_offset, kv_group;
} ttq_config;

typedef struct ttq_layer {
  ttq_tensor attn_norm, wq, wk, wv, wo, q_norm, k_norm; /* q_norm/k_norm: qk_norm only */
  ttq_tensor ffn_norm, w_gate, w_up, w_down;
} ttq_layer;

typedef struct ttq_model ttq_model;
struct ttq_model {
  ttq_config cfg;
  char *path;          /* as given */
  const char *format;  /* "safetensors" or "gguf" */
  ttq_tensor embed;    /* vocab x dim */
  ttq_tensor final_norm;
  ttq_tensor head;     /* vocab x dim; == embed when tied */
  ttq_layer *layers;   /* n_layers */
  ttq_tokenizer *tok;
  char *chat_template; /* may be NULL */
  void *src;           /* internal: the open files */
  /* Set on a tensor-parallel shard (ttq_model_shard): the plan, owned; everything not sliced
   * is borrowed from the full model, and the copied column slices are owned. */
  struct ttq_tp *tp;
  void **owned;
  int n_owned;
  void *pinned; /* owned by either kind: ttq_model_pin's copy of the per-token tensors */
};

/* Loads a model from a directory (Hugging Face layout) or a .gguf file.
 * On success *out is owned by the caller: free with ttq_model_free. */
int ttq_model_load(const char *path, ttq_model **out, ttq_diag *d);
void ttq_model_free(ttq_model *m);

/* Copies the tensors every decoded token reads (the projections, norms and output head; not
 * the embedding table, of which a token reads one row) into one buffer of 2 MiB-aligned memory
 * advised as transparent huge pages, and points m's tensors there; a shard's own column copies
 * are freed. Decode streams those bytes once per token, and over the 4 KiB pages of the file
 * mapping the TLB misses cost it: 738M model, F16 decode 15-16 -> 20-21 tok/s (docs/
 * BENCHMARKS.md). Call it on the model the engine runs (a rank: its shard, so each rank copies
 * only its slice). Nothing to do for a model under 2 MiB, with TTQ_MMAP=1, or when called
 * twice. Can't fail: when the memory is refused, m is left as it was. Not thread-safe. */
void ttq_model_pin(ttq_model *m);

const char *ttq_arch_name(ttq_arch a);
/* Parameter count and bytes of all weights (as stored). */
int64_t ttq_model_n_params(const ttq_model *m);
size_t ttq_model_weight_bytes(const ttq_model *m);
/* Calls fn for every weight tensor (embedding, norms, layers, head once even when tied). */
void ttq_model_each_tensor(const ttq_model *m, void (*fn)(const ttq_tensor *t, void *u), void *u);
bool ttq_model_is_eos(const ttq_model *m, int32_t id);

#endif
