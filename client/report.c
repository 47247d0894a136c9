/* report.c -- the figures line and the --json lines of generate and chat (see report.h).
 * Invariant: every line written is complete (ends in '\n') and flushed, so a reader of a pipe
 * sees each chunk as soon as it arrives. */
#include "report.h"

#include <string.h>

#include "json.h"

void ttqc_report_quant_str(const Ttq__Quantization *q, char *buf, size_t n) {
  size_t k = 0;
  buf[0] = 0;
#define ADD(...)                                                                               \
  do {                                                                                         \
    if (k < n) k += (size_t)snprintf(buf + k, n - k, __VA_ARGS__);                             \
  } while (0)
  const char *m = q->method ? q->method : "?";
  ADD("%s", m);
  if (!strcmp(m, "fp")) return;
  if (q->has_bits) ADD(" W%u", q->bits);
  if (q->has_group) ADD(" g%u", q->group);
  if (q->has_rank) ADD(" r%u", q->rank);
  if (!strcmp(m, "ttq")) {
    if (q->has_alpha) ADD(" alpha %.2f", q->alpha);
    if (q->has_lambda) ADD(" lambda %.2f", q->lambda);
  }
  if (q->has_head_bits && q->head_bits) ADD(" head W%u", q->head_bits);
  else if (q->has_head_bits) ADD(" head fp");
#undef ADD
}

void ttqc_report_done_text(FILE *f, const char *cmd, const Ttq__Done *d) {
  fprintf(f, "[ttq %s]", cmd);
  const char *sep = " ";
#define ITEM(cond, ...)                                                                        \
  do {                                                                                         \
    if (cond) {                                                                                \
      fputs(sep, f);                                                                           \
      fprintf(f, __VA_ARGS__);                                                                 \
      sep = " | ";                                                                             \
    }                                                                                          \
  } while (0)
  ITEM(d->has_prompt_tokens, "prompt %u tokens", d->prompt_tokens);
  ITEM(d->has_generated_tokens, "generated %u tokens", d->generated_tokens);
  ITEM(d->has_ttft_ms, "ttft %.1f ms", d->ttft_ms);
  ITEM(d->has_prefill_ms, "prefill %.1f ms", d->prefill_ms);
  ITEM(d->has_calib_ms, "calibration %.2f ms", d->calib_ms);
  ITEM(d->has_quant_ms, "quantization %.1f ms", d->quant_ms);
  ITEM(d->has_decode_ms && d->has_decode_tok_s, "decode %.1f ms (%.1f tok/s)", d->decode_ms,
       d->decode_tok_s);
  ITEM(d->has_decode_ms && !d->has_decode_tok_s, "decode %.1f ms", d->decode_ms);
  ITEM(!d->has_decode_ms && d->has_decode_tok_s, "decode %.1f tok/s", d->decode_tok_s);
  if (d->quant) {
    char q[128];
    ttqc_report_quant_str(d->quant, q, sizeof q);
    ITEM(1, "%s", q);
  }
  ITEM(d->finish_reason != NULL, "finish: %s", d->finish_reason);
  ITEM(d->has_queue_ms, "queue %.1f ms", d->queue_ms);
  ITEM(d->has_total_ms, "total %.1f ms", d->total_ms);
#undef ITEM
  fputc('\n', f);
  fflush(f);
}

void ttqc_report_chunk_json(FILE *f, const Ttq__TokenChunk *c) {
  fputs("{\"type\":\"chunk\",\"index\":", f);
  if (c->has_index) fprintf(f, "%u", c->index);
  else fputs("null", f);
  fputs(",\"text\":", f);
  ttqc_json_str(f, c->text ? c->text : "");
  fputs(",\"token_ids\":[", f);
  for (size_t i = 0; i < c->n_token_ids; i++) fprintf(f, "%s%d", i ? "," : "", c->token_ids[i]);
  fputs("]}\n", f);
  fflush(f);
}

static void num_field(FILE *f, const char *key, int has, double v) {
  ttqc_json_key(f, key, 0);
  if (has) ttqc_json_num(f, v);
  else fputs("null", f);
}

void ttqc_report_done_json(FILE *f, const char *id, const Ttq__Done *d) {
  fputs("{\"type\":\"done\"", f);
  ttqc_json_key(f, "request_id", 0);
  ttqc_json_str(f, id);
  num_field(f, "prompt_tokens", d->has_prompt_tokens, d->prompt_tokens);
  num_field(f, "generated_tokens", d->has_generated_tokens, d->generated_tokens);
  num_field(f, "ttft_ms", d->has_ttft_ms, d->ttft_ms);
  num_field(f, "prefill_ms", d->has_prefill_ms, d->prefill_ms);
  num_field(f, "calib_ms", d->has_calib_ms, d->calib_ms);
  num_field(f, "quant_ms", d->has_quant_ms, d->quant_ms);
  num_field(f, "decode_ms", d->has_decode_ms, d->decode_ms);
  num_field(f, "decode_tok_s", d->has_decode_tok_s, d->decode_tok_s);
  num_field(f, "queue_ms", d->has_queue_ms, d->queue_ms);
  num_field(f, "total_ms", d->has_total_ms, d->total_ms);
  ttqc_json_key(f, "finish_reason", 0);
  ttqc_json_str(f, d->finish_reason);
  ttqc_json_key(f, "quant", 0);
  if (!d->quant) fputs("null", f);
  else {
    const Ttq__Quantization *q = d->quant;
    fputs("{\"method\":", f);
    ttqc_json_str(f, q->method);
    num_field(f, "bits", q->has_bits, q->bits);
    num_field(f, "group", q->has_group, q->group);
    num_field(f, "rank", q->has_rank, q->rank);
    ttqc_json_key(f, "alpha", 0);
    if (q->has_alpha) ttqc_json_float(f, q->alpha);
    else fputs("null", f);
    ttqc_json_key(f, "lambda", 0);
    if (q->has_lambda) ttqc_json_float(f, q->lambda);
    else fputs("null", f);
    num_field(f, "head_bits", q->has_head_bits, q->head_bits);
    fputc('}', f);
  }
  fputs("}\n", f);
  fflush(f);
}

void ttqc_report_error_json(FILE *f, const char *id, const char *code, const char *msg) {
  fputs("{\"type\":\"error\"", f);
  ttqc_json_key(f, "request_id", 0);
  ttqc_json_str(f, id);
  ttqc_json_key(f, "code", 0);
  ttqc_json_str(f, code);
  ttqc_json_key(f, "message", 0);
  ttqc_json_str(f, msg ? msg : "");
  fputs("}\n", f);
  fflush(f);
}
