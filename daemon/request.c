/* request.c -- request validation and job construction; see request.h. */
#include "request.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "cli.h"

static int refuse(ttqd_refusal *r, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->msg, sizeof r->msg, fmt, ap);
  va_end(ap);
  r->code = code;
  return -1;
}
#define INVALID TTQ__ERROR__CODE__INVALID_ARGUMENT
#define EXHAUSTED TTQ__ERROR__CODE__RESOURCE_EXHAUSTED

int ttqd_request_check_id(const char *id, ttqd_refusal *r) {
  size_t n = strlen(id);
  if (n == 0 || n > TTQD_ID_MAX)
    return refuse(r, INVALID, "request_id: %zu bytes; must be 1..%d printable characters", n,
                  TTQD_ID_MAX);
  for (size_t i = 0; i < n; i++)
    if (id[i] <= ' ' || id[i] > '~')
      return refuse(r, INVALID, "request_id: byte %zu is 0x%02x; only printable ASCII without "
                                "spaces is allowed", i, (unsigned char)id[i]);
  return 0;
}

static int quant_from_msg(const ttqd_req_ctx *c, const Ttq__Quantization *qm, ttq_qcfg *q,
                          ttqd_refusal *r) {
  *q = c->cfg->eo.q;
  if (!qm) return 0;
  if (qm->method && ttq_method_parse(qm->method, &q->method))
    return refuse(r, INVALID, "quant.method: '%.40s' is not one of fp, rtn, awq, ttq", qm->method);
  if (qm->has_bits) {
    if (qm->bits != 2 && qm->bits != 3 && qm->bits != 4 && qm->bits != 5 && qm->bits != 8)
      return refuse(r, INVALID, "quant.bits: %u is not one of 2, 3, 4, 5, 8", qm->bits);
    q->bits = (int)qm->bits;
  }
  if (qm->has_group) {
    if (qm->group < 8 || qm->group > 1024)
      return refuse(r, INVALID, "quant.group: %u is out of range [8, 1024]", qm->group);
    q->group = (int)qm->group;
  }
  if (qm->has_rank) {
    if (qm->rank > 4096) return refuse(r, INVALID, "quant.rank: %u is out of range [0, 4096]", qm->rank);
    q->rank = (int)qm->rank;
  }
  if (qm->has_alpha) {
    if (!(qm->alpha >= 0 && qm->alpha <= 4))
      return refuse(r, INVALID, "quant.alpha: %g is out of range [0, 4]", (double)qm->alpha);
    q->alpha = qm->alpha;
  }
  if (qm->has_lambda) {
    if (!(qm->lambda >= 0 && qm->lambda <= 1e6))
      return refuse(r, INVALID, "quant.lambda: %g is out of range [0, 1e6]", (double)qm->lambda);
    q->lambda = qm->lambda;
  }
  if (qm->has_head_bits) {
    const uint32_t h = qm->head_bits;
    if (h != 0 && h != 2 && h != 3 && h != 4 && h != 5 && h != 8)
      return refuse(r, INVALID, "quant.head_bits: %u is not one of 0, 2, 3, 4, 5, 8", h);
    q->head_bits = (int)h;
  }
  if (q->method == TTQ_METHOD_FP) return 0;
  ttq_diag d = {0};
  const ttq_config *mc = &c->m->cfg;
  if (ttq_qcfg_check(q, mc, &d)) return refuse(r, INVALID, "quant: %s", d.msg);
  if (q->method == TTQ_METHOD_AWQ && !c->cfg->eo.calib_path)
    return refuse(r, INVALID, "quant.method: awq needs a calibration file and the daemon has "
                              "none configured (setting 'calib')");
  if (q->method == TTQ_METHOD_AWQ &&
      (q->bits != c->cfg->eo.q.bits || q->group != c->cfg->eo.q.group))
    return refuse(r, INVALID, "quant: awq is calibrated for bits %d group %d only",
                  c->cfg->eo.q.bits, c->cfg->eo.q.group);
  if (c->ranks > 1) {
    if (q->rank > 0 || q->search > 0)
      return refuse(r, INVALID, "quant.rank: low-rank TTQ(r) is not supported with %d ranks",
                    c->ranks);
    if (c->tp_align % ttqd_tp_align(q->group) != 0)
      return refuse(r, INVALID,
                    "quant.group: %d does not fit this daemon's tensor-parallel slices "
                    "(aligned to %d columns; groups dividing %d work)",
                    q->group, c->tp_align, c->tp_align);
  }
  return 0;
}

static int sampling_from_msg(const ttqd_req_ctx *c, const Ttq__GenerateRequest *g,
                             ttq_sampler_cfg *s, ttqd_refusal *r) {
  s->temperature = (float)c->cfg->temperature;
  s->top_k = (int)c->cfg->top_k;
  s->top_p = (float)c->cfg->top_p;
  s->seed = 0;
  if (g->has_temperature) {
    if (!(g->temperature >= 0 && g->temperature <= 100))
      return refuse(r, INVALID, "temperature: %g is out of range [0, 100]", (double)g->temperature);
    s->temperature = g->temperature;
  }
  if (g->has_top_k) {
    if (g->top_k > (uint32_t)c->m->cfg.vocab)
      return refuse(r, INVALID, "top_k: %u exceeds the vocabulary (%d)", g->top_k, c->m->cfg.vocab);
    s->top_k = (int)g->top_k;
  }
  if (g->has_top_p) {
    if (!(g->top_p > 0 && g->top_p <= 1))
      return refuse(r, INVALID, "top_p: %g is out of range (0, 1]", (double)g->top_p);
    s->top_p = g->top_p;
  }
  if (g->has_seed) s->seed = g->seed;
  return 0;
}

/* True when text contains a special token's literal text (e.g. "<|im_start|>"): tokenizing it
 * with and without special-token matching then differs. */
static int has_special_text(const ttq_tokenizer *tok, const char *text, bool *found) {
  int32_t *a = NULL, *b = NULL;
  size_t na = 0, nb = 0;
  ttq_diag d = {0};
  size_t len = strlen(text);
  int rc = ttq_tokenize(tok, text, len, true, &a, &na, &d);
  if (!rc) rc = ttq_tokenize(tok, text, len, false, &b, &nb, &d);
  *found = !rc && (na != nb || (na && memcmp(a, b, na * sizeof *a) != 0));
  free(a);
  free(b);
  return rc;
}

/* The prompt text: the raw prompt, or the messages rendered with the chat template. A message
 * may not smuggle in special tokens: the template alone places them. */
static int prompt_text(const ttqd_req_ctx *c, const Ttq__GenerateRequest *g, char **text,
                       size_t *len, bool *chat, ttqd_refusal *r) {
  *chat = false;
  if (g->prompt && g->n_messages)
    return refuse(r, INVALID, "give either prompt or messages, not both");
  if (!g->prompt && !g->n_messages) return refuse(r, INVALID, "no prompt and no messages");
  if (g->prompt) {
    *len = strlen(g->prompt);
    if (!(*text = strdup(g->prompt))) return refuse(r, TTQ__ERROR__CODE__INTERNAL, "out of memory");
    return 0;
  }
  if (!c->m->chat_template)
    return refuse(r, INVALID, "messages: this model has no chat template; send a prompt instead");
  if (g->n_messages > 4096) return refuse(r, EXHAUSTED, "messages: %zu, limit 4096", g->n_messages);
  ttq_chat_msg *msgs = malloc(g->n_messages * sizeof *msgs);
  if (!msgs) return refuse(r, TTQ__ERROR__CODE__INTERNAL, "out of memory");
  for (size_t i = 0; i < g->n_messages; i++) {
    const char *role = g->messages[i]->role;
    size_t rl = strlen(role);
    if (rl == 0 || rl > 32) {
      free(msgs);
      return refuse(r, INVALID, "messages[%zu].role: must be 1..32 bytes (e.g. user)", i);
    }
    bool special = false;
    if (has_special_text(c->m->tok, role, &special) == 0 && !special)
      has_special_text(c->m->tok, g->messages[i]->content, &special);
    if (special) {
      free(msgs);
      return refuse(r, INVALID, "messages[%zu]: contains the text of a special token (such as "
                                "the chat template's markers); send it as a raw prompt instead", i);
    }
    msgs[i] = (ttq_chat_msg){role, g->messages[i]->content};
  }
  char bos[256] = "", eos[256] = "";
  const ttq_config *mc = &c->m->cfg;
  if (mc->bos_id >= 0) {
    int k = ttq_token_bytes(c->m->tok, mc->bos_id, bos, sizeof bos - 1);
    bos[k > 0 ? k : 0] = '\0';
  }
  if (mc->n_eos > 0) {
    int k = ttq_token_bytes(c->m->tok, mc->eos_ids[0], eos, sizeof eos - 1);
    eos[k > 0 ? k : 0] = '\0';
  }
  ttq_diag d = {0};
  int rc = ttq_chat_render(c->m->chat_template, msgs, g->n_messages, true,
                           mc->bos_id >= 0 ? bos : NULL, mc->n_eos > 0 ? eos : NULL, text, len, &d);
  free(msgs);
  if (rc) return refuse(r, rc == TTQ_ERANGE ? EXHAUSTED : INVALID, "messages: %.400s", d.msg);
  *chat = true;
  return 0;
}

int ttqd_generate_to_job(const ttqd_req_ctx *c, const Ttq__GenerateRequest *g, double now_ms,
                         ttqd_job **out, ttqd_refusal *r) {
  *out = NULL;
  ttqd_job *j = calloc(1, sizeof *j);
  if (!j) return refuse(r, TTQ__ERROR__CODE__INTERNAL, "out of memory");
  atomic_init(&j->cancel, TTQD_CANCEL_NONE);
  if (sampling_from_msg(c, g, &j->sampling, r) || quant_from_msg(c, g->quant, &j->q, r)) goto fail;
  if (g->n_stop > TTQD_MAX_STOPS) {
    refuse(r, INVALID, "stop: %zu strings, at most %d", g->n_stop, TTQD_MAX_STOPS);
    goto fail;
  }
  for (size_t i = 0; i < g->n_stop; i++) {
    size_t n = strlen(g->stop[i]);
    if (n == 0 || n > TTQD_MAX_STOP_BYTES) {
      refuse(r, INVALID, "stop[%zu]: %zu bytes; must be 1..%d", i, n, TTQD_MAX_STOP_BYTES);
      goto fail;
    }
    if (!(j->stops[j->n_stops++] = strdup(g->stop[i]))) {
      refuse(r, TTQ__ERROR__CODE__INTERNAL, "out of memory");
      goto fail;
    }
  }
  long max_tokens = c->cfg->default_max_tokens;
  if (g->has_max_tokens) {
    if (g->max_tokens == 0) {
      refuse(r, INVALID, "max_tokens: must be at least 1");
      goto fail;
    }
    if (g->max_tokens > (uint32_t)c->cfg->max_tokens) {
      refuse(r, EXHAUSTED, "max_tokens: %u exceeds the daemon's limit max-tokens = %ld",
             g->max_tokens, c->cfg->max_tokens);
      goto fail;
    }
    max_tokens = g->max_tokens;
  }
  double deadline = (double)c->cfg->deadline_ms;
  if (g->has_deadline_ms) {
    if (g->deadline_ms == 0) {
      refuse(r, INVALID, "deadline_ms: must be at least 1");
      goto fail;
    }
    if (g->deadline_ms < deadline) deadline = g->deadline_ms;
  }
  j->t_arrival_ms = now_ms;
  j->t_deadline_ms = now_ms + deadline;

  char *text = NULL;
  size_t len = 0;
  if (prompt_text(c, g, &text, &len, &j->chat, r)) goto fail;
  int32_t *raw = NULL;
  size_t n_raw = 0;
  ttq_diag d = {0};
  int rc = ttq_tokenize(c->m->tok, text, len, true, &raw, &n_raw, &d);
  free(text);
  if (rc) {
    refuse(r, INVALID, "prompt: %s", d.msg);
    goto fail;
  }
  const ttq_config *mc = &c->m->cfg;
  int bos = mc->add_bos && mc->bos_id >= 0 && !(n_raw > 0 && raw[0] == mc->bos_id) ? 1 : 0;
  if (n_raw + (size_t)bos == 0) {
    free(raw);
    refuse(r, INVALID, "prompt: empty, and the model adds no bos token");
    goto fail;
  }
  if (n_raw + (size_t)bos > (size_t)c->max_prompt) {
    refuse(r, EXHAUSTED, "prompt: %zu tokens; the limit is %d (max-prompt-tokens)",
           n_raw + (size_t)bos, c->max_prompt);
    free(raw);
    goto fail;
  }
  j->n_prompt = (int)n_raw + bos;
  if (!(j->ids = malloc((size_t)j->n_prompt * sizeof *j->ids))) {
    free(raw);
    refuse(r, TTQ__ERROR__CODE__INTERNAL, "out of memory");
    goto fail;
  }
  if (bos) j->ids[0] = mc->bos_id;
  if (n_raw) memcpy(j->ids + bos, raw, n_raw * sizeof *raw);
  free(raw);
  /* The context bounds the generation: a prompt near it ends with finish_reason "length". */
  if (max_tokens > c->max_ctx - j->n_prompt) max_tokens = c->max_ctx - j->n_prompt;
  j->max_tokens = (int)max_tokens;
  *out = j;
  return 0;
fail:
  ttqd_job_free(j);
  return -1;
}

void ttqd_quant_to_msg(const ttq_qcfg *q, Ttq__Quantization *msg) {
  ttq__quantization__init(msg);
  msg->method = (char *)ttq_method_name(q->method);
  msg->has_bits = msg->has_group = msg->has_rank = msg->has_alpha = msg->has_lambda = 1;
  msg->has_head_bits = 1;
  msg->head_bits = (uint32_t)q->head_bits;
  msg->bits = (uint32_t)q->bits;
  msg->group = (uint32_t)q->group;
  msg->rank = (uint32_t)q->rank;
  msg->alpha = q->alpha;
  msg->lambda = q->lambda;
}
