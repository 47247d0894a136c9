/* fuzz_request.c -- libFuzzer harness for the daemon's request path after decoding: a
 * ttq.Request protobuf as received, then for a Generate the daemon's validation and job
 * construction (daemon/request.c: ranges, limits, stop strings, quantization settings,
 * chat-template rendering with the bundled model's template, tokenization).
 *
 * Properties (beyond the sanitizers):
 *   - a refusal carries INVALID_ARGUMENT, RESOURCE_EXHAUSTED or INTERNAL and a non-empty
 *     message;
 *   - an accepted job keeps every documented limit: 1 <= prompt tokens <= max-prompt-tokens,
 *     1 <= max_tokens <= max-tokens, prompt + max_tokens <= the engines' context, token ids in
 *     the vocabulary, at most 8 stop strings of 1..256 bytes, sampling settings in range,
 *     quantization settings the model accepts;
 *   - request ids the daemon accepts are 1..64 printable ASCII characters.
 * The daemon's settings are its defaults with small limits (64 prompt tokens, 32 generated) so
 * that the limits are reachable. The model (tokenizer and chat template) is loaded once. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "model.h"
#include "request.h"
#include "ttq.pb-c.h"

#ifndef TTQ_FUZZ_MODEL
#error "TTQ_FUZZ_MODEL (the bundled model's directory) must be defined by the build"
#endif

static ttqd_serve_cfg g_cfg;
static ttqd_req_ctx g_ctx;

static void setup(void) {
  static int done;
  if (done) return;
  done = 1;
  char *argv[] = {"serve", "--model", TTQ_FUZZ_MODEL, "--max-prompt-tokens", "64",
                  "--max-tokens", "32", "--default-max-tokens", "8", NULL};
  FUZZ_CHECK(ttqd_serve_cfg_parse(&g_cfg, 9, argv) == 0);
  ttq_model *m = NULL;
  ttq_diag d = {0};
  FUZZ_CHECKF(ttq_model_load(TTQ_FUZZ_MODEL, &m, &d) == 0, "%s", d.msg);
  g_ctx = (ttqd_req_ctx){&g_cfg, m, 1, 32, 64, 96};
}

static void check_job(const ttqd_job *j) {
  const ttq_model *m = g_ctx.m;
  FUZZ_CHECK(j->n_prompt >= 1 && j->n_prompt <= g_ctx.max_prompt);
  FUZZ_CHECK(j->max_tokens >= 1 && j->max_tokens <= g_cfg.max_tokens);
  FUZZ_CHECK(j->n_prompt + j->max_tokens <= g_ctx.max_ctx);
  for (int i = 0; i < j->n_prompt; i++) FUZZ_CHECK(j->ids[i] >= 0 && j->ids[i] < m->cfg.vocab);
  FUZZ_CHECK(j->n_stops >= 0 && j->n_stops <= TTQD_MAX_STOPS);
  for (int i = 0; i < j->n_stops; i++) {
    size_t n = strlen(j->stops[i]);
    FUZZ_CHECK(n >= 1 && n <= TTQD_MAX_STOP_BYTES);
  }
  FUZZ_CHECK(j->sampling.temperature >= 0 && j->sampling.temperature <= 100);
  FUZZ_CHECK(j->sampling.top_p > 0 && j->sampling.top_p <= 1);
  FUZZ_CHECK(j->sampling.top_k >= 0 && j->sampling.top_k <= m->cfg.vocab);
  FUZZ_CHECK(j->t_deadline_ms > j->t_arrival_ms);
  if (j->q.method != TTQ_METHOD_FP) {
    ttq_diag d = {0};
    FUZZ_CHECKF(ttq_qcfg_check(&j->q, &m->cfg, &d) == 0, "%s", d.msg);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  setup();
  Ttq__Request *r = ttq__request__unpack(NULL, size, data);
  if (!r) return 0;
  ttqd_refusal rf;
  if (r->request_id && *r->request_id && ttqd_request_check_id(r->request_id, &rf) == 0) {
    size_t n = strlen(r->request_id);
    FUZZ_CHECK(n >= 1 && n <= TTQD_ID_MAX);
    for (size_t i = 0; i < n; i++) FUZZ_CHECK(r->request_id[i] > ' ' && r->request_id[i] <= '~');
  }
  if (r->kind_case == TTQ__REQUEST__KIND_GENERATE) {
    ttqd_job *j = NULL;
    memset(&rf, 0, sizeof rf);
    if (ttqd_generate_to_job(&g_ctx, r->generate, 1000.0, &j, &rf) == 0) {
      FUZZ_CHECK(j != NULL);
      check_job(j);
      ttqd_job_free(j);
    } else {
      FUZZ_CHECK(j == NULL);
      FUZZ_CHECKF(rf.code == TTQ__ERROR__CODE__INVALID_ARGUMENT ||
                      rf.code == TTQ__ERROR__CODE__RESOURCE_EXHAUSTED ||
                      rf.code == TTQ__ERROR__CODE__INTERNAL,
                  "code %d", rf.code);
      FUZZ_CHECK(rf.msg[0] != '\0');
    }
  }
  ttq__request__free_unpacked(r, NULL);
  return 0;
}
