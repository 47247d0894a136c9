#!/usr/bin/env bash
# client_offline.sh -- the ttq client without a real daemon. Part 1 needs nothing: usage errors
# (exit 2, one line naming the flag), an endpoint where nothing listens (exit 3 within the
# timeouts, for generate and for health), keygen (Z85 keys, file modes, no overwrite). Part 2
# builds a small scripted stand-in for `ttqd serve` (C, from this file, with the generated
# protobuf-c code of the build tree) and checks what only a scripted peer can provoke: exact
# streamed text and --json escaping, typed errors and their exit codes, retries after
# UNAVAILABLE and timeouts, ignored foreign answers, malformed frames, cancel and Ctrl-C,
# chat history, bench, and CURVE acceptance and rejection. Part 2 is skipped (with a line
# saying so) when no C compiler or generated code is at hand.
set -uo pipefail
: "${TTQ:?}"
TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT
fails=0
check() { # check NAME CONDITION-COMMAND...
  local name=$1
  shift
  if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}
lines() { wc -l <"$1" | tr -d ' '; }

# ---------------------------------------------------------------- part 1: no peer at all
"$TTQ" --help >"$TMP/out" 2>&1; rc=$?
check "--help: exit 0, lists commands and exit codes" \
  bash -c "[ $rc -eq 0 ] && grep -q 'generate' '$TMP/out' && grep -q 'bench' '$TMP/out' && grep -q '130 interrupted' '$TMP/out'"
for c in generate chat health stats cancel bench keygen; do
  "$TTQ" $c --help >"$TMP/out" 2>&1; rc=$?
  check "$c --help: exit 0 with usage" bash -c "[ $rc -eq 0 ] && grep -q '^usage: ttq $c' '$TMP/out'"
done
"$TTQ" version >"$TMP/out"; check "version" grep -q '^ttq [0-9]' "$TMP/out"
"$TTQ" frobnicate 2>"$TMP/err"; rc=$?
check "unknown command: exit 2" bash -c "[ $rc -eq 2 ] && grep -q frobnicate '$TMP/err'"

usage_err() { # usage_err NAME FLAG-TO-FIND ARGS... : exit 2, one line naming FLAG, no stdout
  local name=$1 flag=$2
  shift 2
  "$TTQ" "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  check "usage: $name -> exit 2 naming '$flag'" bash -c \
    "[ $rc -eq 2 ] && [ \$(wc -l <'$TMP/err') -eq 1 ] && grep -q -- '$flag' '$TMP/err' && [ ! -s '$TMP/out' ]"
}
usage_err "top-p out of range" --top-p generate --top-p 1.5 x
usage_err "top-p zero" --top-p generate --top-p 0 x
usage_err "temperature not a number" --temperature generate --temperature abc x
usage_err "temperature too high" --temperature generate --temperature 101 x
usage_err "bits 6" --bits generate --bits 6 x
usage_err "quant method" --quant generate --quant int4 x
usage_err "group too small" --group generate --group 4 x
usage_err "max-tokens 0" --max-tokens generate --max-tokens 0 x
usage_err "seed negative" --seed generate --seed -1 x
usage_err "empty stop" --stop generate --stop '' x
usage_err "nine stops" --stop generate --stop a --stop b --stop c --stop d --stop e --stop f --stop g --stop h --stop i x
usage_err "timeout 0 (forever) refused" --timeout generate --timeout 0 x
usage_err "retries 11" --retries generate --retries 11 x
usage_err "id too long" --id generate --id "$(printf 'a%.0s' $(seq 65))" x
usage_err "missing value" --max-tokens generate x --max-tokens
usage_err "unknown option" --frob generate --frob x
usage_err "no prompt" PROMPT generate
usage_err "two prompts" PROMPT generate a b
usage_err "--key without --server-key" --server-key generate --key /nonexistent.key x
usage_err "bad --server-key" --server-key generate --server-key /nonexistent.pub x
usage_err "bad endpoint" --endpoint generate --endpoint 'bogus://x' x
usage_err "bench clients 0" --clients bench --clients 0
usage_err "bench clients 257" --clients bench --clients 257
usage_err "bench duration 0" --duration bench --duration 0
usage_err "bench prompt and prompt-file" --prompt-file bench --prompt a --prompt-file b
usage_err "chat positional" "unexpected argument" chat hello
usage_err "cancel without id" ID cancel
usage_err "health --json --bogus" --bogus health --bogus
usage_err "keygen --force without --out" --out keygen --force

# an endpoint where nothing listens: a port no connection reaches
port=""
for p in $(seq $((20000 + RANDOM % 20000)) 7 65000); do
  if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then port=$p; break; fi
done
NOWHERE="tcp://127.0.0.1:$port"
t0=$(date +%s)
"$TTQ" generate --endpoint "$NOWHERE" --timeout 1 --retries 2 hello >"$TMP/out" 2>"$TMP/err"; rc=$?
dt=$(($(date +%s) - t0))
check "nothing listening: generate exits 3 ($rc) in ${dt}s < 15s" bash -c "[ $rc -eq 3 ] && [ $dt -lt 15 ]"
check "nothing listening: one clear line naming the endpoint" \
  bash -c "[ \$(wc -l <'$TMP/err') -eq 1 ] && grep -q 'cannot reach ttqd at $NOWHERE' '$TMP/err' && [ ! -s '$TMP/out' ]"
check "nothing listening: the retries happened (3 attempts)" grep -q '3 attempts' "$TMP/err"
TTQ_ENDPOINT="$NOWHERE" "$TTQ" generate --json --timeout 1 --retries 0 hello >"$TMP/out" 2>"$TMP/err"; rc=$?
check "--json, nothing listening: exit 3, error object on stdout (TTQ_ENDPOINT honoured)" \
  bash -c "[ $rc -eq 3 ] && grep -q '^{\"type\":\"error\",.*\"code\":\"UNAVAILABLE\"' '$TMP/out' && grep -q '$port' '$TMP/out'"
t0=$(date +%s)
"$TTQ" health --endpoint "$NOWHERE" >"$TMP/out" 2>"$TMP/err"; rc=$?
dt=$(($(date +%s) - t0))
check "nothing listening: health exits 3 ($rc) in ${dt}s <= 2s" bash -c "[ $rc -eq 3 ] && [ $dt -le 2 ]"
t0=$(date +%s)
"$TTQ" health --endpoint "ipc://$TMP/nosuch.sock" --timeout 1 >"$TMP/out" 2>"$TMP/err"; rc=$?
dt=$(($(date +%s) - t0))
check "no ipc socket: health exits 3 ($rc) in ${dt}s <= 3s" bash -c "[ $rc -eq 3 ] && [ $dt -le 3 ]"
t0=$(date +%s)
"$TTQ" bench --endpoint "$NOWHERE" --clients 2 --requests 4 --timeout 1 --duration 3 >"$TMP/out" 2>"$TMP/err"; rc=$?
dt=$(($(date +%s) - t0))
check "nothing listening: bench exits 1 (lost) in ${dt}s <= 6s" \
  bash -c "[ $rc -eq 1 ] && [ $dt -le 6 ] && grep -q 'timeouts (lost) *[1-9]' '$TMP/out'"

# keygen
is_z85() { LC_ALL=C grep -Eqx '[][0-9a-zA-Z.:+=^!/*?&<>(){}@%$#-]{40}' <<<"$1"; }
"$TTQ" keygen >"$TMP/kg" 2>"$TMP/err"; rc=$?
pub=$(sed -n 's/^public //p' "$TMP/kg"); sec=$(sed -n 's/^secret //p' "$TMP/kg")
check "keygen: exit 0, two lines" bash -c "[ $rc -eq 0 ] && [ \$(wc -l <'$TMP/kg') -eq 2 ]"
check "keygen: the public key is 40-char Z85" is_z85 "$pub"
check "keygen: the secret key is 40-char Z85" is_z85 "$sec"
check "keygen: public and secret differ" test "$pub" != "$sec"
"$TTQ" keygen --out "$TMP/k1" 2>"$TMP/err"; rc=$?
check "keygen --out: exit 0, PREFIX.key mode 600, PREFIX.pub" bash -c \
  "[ $rc -eq 0 ] && [ \$(stat -c %a '$TMP/k1.key') = 600 ] && [ -s '$TMP/k1.pub' ]"
kpub=$(sed -n 's/^public //p' "$TMP/k1.key"); ksec=$(sed -n 's/^secret //p' "$TMP/k1.key")
check "keygen --out: .key has two lines, public and secret Z85" bash -c \
  "[ \$(wc -l <'$TMP/k1.key') -eq 2 ] && grep -q '^public ' '$TMP/k1.key' && grep -q '^secret ' '$TMP/k1.key'"
check "keygen --out: .key public is Z85" is_z85 "$kpub"
check "keygen --out: .key secret is Z85" is_z85 "$ksec"
check "keygen --out: .pub is the same public key, one line" \
  bash -c '[ "$(cat "$1")" = "$2" ] && [ $(wc -l <"$1") -eq 1 ]' _ "$TMP/k1.pub" "$kpub"
cp "$TMP/k1.key" "$TMP/k1.before"
"$TTQ" keygen --out "$TMP/k1" 2>"$TMP/err"; rc=$?
check "keygen --out: refuses to overwrite (exit 1, file unchanged)" bash -c \
  "[ $rc -eq 1 ] && grep -q 'exists' '$TMP/err' && cmp -s '$TMP/k1.key' '$TMP/k1.before'"
"$TTQ" keygen --out "$TMP/k1" --force 2>"$TMP/err"; rc=$?
check "keygen --out --force: overwrites, still mode 600" bash -c \
  "[ $rc -eq 0 ] && ! cmp -s '$TMP/k1.key' '$TMP/k1.before' && [ \$(stat -c %a '$TMP/k1.key') = 600 ]"
printf 'public %s\nsecret %s\n' "$kpub" "$(sed -n 's/^secret //p' "$TMP/kg")" >"$TMP/mismatch.key"
"$TTQ" health --endpoint "$NOWHERE" --server-key "$TMP/k1.pub" --key "$TMP/mismatch.key" 2>"$TMP/err"; rc=$?
check "--key with a public key not matching its secret: exit 2" \
  bash -c "[ $rc -eq 2 ] && grep -q 'does not belong' '$TMP/err'"
echo "garbage" >"$TMP/garbage.pub"
"$TTQ" health --endpoint "$NOWHERE" --server-key "$TMP/garbage.pub" 2>"$TMP/err"; rc=$?
check "--server-key file without a key: exit 2 naming the line" \
  bash -c "[ $rc -eq 2 ] && grep -q 'garbage.pub:1' '$TMP/err'"

# ---------------------------------------------------------------- part 2: a scripted peer
BUILD=$(dirname "$TTQ")
CC=${CC:-cc}
if ! command -v "$CC" >/dev/null || [ ! -f "$BUILD/proto/ttq.pb-c.c" ] ||
   ! pkg-config --exists libzmq libprotobuf-c 2>/dev/null; then
  echo "skip part 2: no C compiler, pkg-config data or $BUILD/proto/ttq.pb-c.c"
  echo "$fails failure(s)"
  [ $fails -eq 0 ]
  exit
fi
cat >"$TMP/fake.c" <<'EOF'
/* fake.c -- a scripted stand-in for `ttqd serve` (client tests only). Binds a ROUTER on
 * tcp://127.0.0.1:* and writes the endpoint to argv[1]. argv[2] = its Z85 secret key and
 * argv[3] = the one authorized client public key turn on CURVE with a ZAP handler. The
 * prompt (or last chat message) picks the behaviour: "!silent" no answer; "!unavail"
 * UNAVAILABLE the first two times; "!garbage" a malformed frame; "!otherid" answers for another id
 * and of no kind first; "!slow" 100 chunks 50 ms apart (cancellable); "!exhausted"
 * RESOURCE_EXHAUSTED; else three chunks of tricky text and a Done. Logs to stderr. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>
#include "ttq.pb-c.h"

static const char *authorized;

static void *zap(void *ctx) {
  void *s = zmq_socket(ctx, ZMQ_REP);
  zmq_bind(s, "inproc://zeromq.zap.01");
  for (;;) {
    char fr[8][256];
    int len[8], n = 0, more = 1;
    while (more && n < 8) {
      if ((len[n] = zmq_recv(s, fr[n], 255, 0)) < 0) return NULL;
      size_t sz = sizeof more;
      zmq_getsockopt(s, ZMQ_RCVMORE, &more, &sz);
      n++;
    }
    char z[41] = "";
    if (n >= 7 && len[6] == 32) zmq_z85_encode(z, (uint8_t *)fr[6], 32);
    int ok = !strcmp(z, authorized);
    zmq_send(s, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(s, fr[1], len[1], ZMQ_SNDMORE);
    zmq_send(s, ok ? "200" : "400", 3, ZMQ_SNDMORE);
    zmq_send(s, "", 0, ZMQ_SNDMORE);
    zmq_send(s, "", 0, ZMQ_SNDMORE);
    zmq_send(s, "", 0, 0);
  }
}

static void *sock;

static void reply(zmq_msg_t *to, const char *rid, Ttq__Response *r) {
  r->request_id = (char *)rid;
  size_t n = ttq__response__get_packed_size(r);
  uint8_t *b = malloc(n + 1);
  ttq__response__pack(r, b);
  zmq_send(sock, zmq_msg_data(to), zmq_msg_size(to), ZMQ_SNDMORE);
  zmq_send(sock, b, n, 0);
  free(b);
}

static void error(zmq_msg_t *to, const char *rid, int code, const char *msg) {
  Ttq__Response r = TTQ__RESPONSE__INIT;
  Ttq__Error e = TTQ__ERROR__INIT;
  e.code = code, e.message = (char *)msg;
  r.kind_case = TTQ__RESPONSE__KIND_ERROR, r.error = &e;
  reply(to, rid, &r);
}

static void chunk(zmq_msg_t *to, const char *rid, unsigned i, const char *text) {
  Ttq__Response r = TTQ__RESPONSE__INIT;
  Ttq__TokenChunk c = TTQ__TOKEN_CHUNK__INIT;
  int32_t t[2] = {(int32_t)i * 10, (int32_t)i * 10 + 1};
  c.text = (char *)text, c.n_token_ids = 2, c.token_ids = t, c.has_index = 1, c.index = i;
  r.kind_case = TTQ__RESPONSE__KIND_CHUNK, r.chunk = &c;
  reply(to, rid, &r);
}

static void done(zmq_msg_t *to, const char *rid) {
  Ttq__Response r = TTQ__RESPONSE__INIT;
  Ttq__Done d = TTQ__DONE__INIT;
  Ttq__Quantization q = TTQ__QUANTIZATION__INIT;
  q.method = "ttq", q.has_bits = q.has_group = q.has_rank = q.has_alpha = q.has_lambda = 1;
  q.bits = 4, q.group = 32, q.alpha = 0.5f, q.lambda = 0.4f, q.has_head_bits = 1, q.head_bits = 8;
  d.has_prompt_tokens = d.has_generated_tokens = d.has_ttft_ms = d.has_decode_ms = 1;
  d.has_decode_tok_s = d.has_total_ms = 1;
  d.prompt_tokens = 5, d.generated_tokens = 6, d.ttft_ms = 12.5, d.decode_ms = 100;
  d.decode_tok_s = 50, d.total_ms = 120, d.quant = &q, d.finish_reason = "length";
  r.kind_case = TTQ__RESPONSE__KIND_DONE, r.done = &d;
  reply(to, rid, &r);
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
  void *ctx = zmq_ctx_new();
  sock = zmq_socket(ctx, ZMQ_ROUTER);
  if (argc > 3) {
    authorized = argv[3];
    pthread_t t;
    pthread_create(&t, NULL, zap, ctx);
    int one = 1;
    zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, argv[2], 41);
  }
  char ep[256];
  size_t epn = sizeof ep;
  if (zmq_bind(sock, "tcp://127.0.0.1:*") || zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, ep, &epn))
    return 1;
  FILE *f = fopen(argv[1], "w");
  fprintf(f, "%s\n", ep);
  fclose(f);
  int unavail = 0;
  zmq_msg_t slow_to;
  char slow_id[80] = "";
  unsigned slow_next = 0;
  double slow_at = 0;
  for (;;) {
    zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
    zmq_poll(&it, 1, slow_id[0] ? 10 : 1000);
    if (slow_id[0] && now_ms() >= slow_at) {
      if (slow_next == 100) {
        done(&slow_to, slow_id);
        slow_id[0] = 0;
        zmq_msg_close(&slow_to);
      } else {
        chunk(&slow_to, slow_id, slow_next++, "tick ");
        slow_at = now_ms() + 50;
      }
    }
    if (!(it.revents & ZMQ_POLLIN)) continue;
    zmq_msg_t to, body;
    zmq_msg_init(&to);
    zmq_msg_init(&body);
    zmq_msg_recv(&to, sock, 0);
    zmq_msg_recv(&body, sock, 0);
    Ttq__Request *q = ttq__request__unpack(NULL, zmq_msg_size(&body), zmq_msg_data(&body));
    const char *rid = q ? q->request_id : NULL;
    if (!q || !rid) {
      fprintf(stderr, "fake: bad request\n");
    } else if (q->kind_case == TTQ__REQUEST__KIND_HEALTH) {
      Ttq__Response r = TTQ__RESPONSE__INIT;
      Ttq__Health h = TTQ__HEALTH__INIT;
      h.model = "fake-model", h.state = "serving", h.version = "fake", h.has_ranks = 1;
      h.ranks = 2, h.has_queue_depth = h.has_queue_capacity = 1, h.queue_capacity = 16;
      h.running_id = slow_id[0] ? slow_id : NULL;
      r.kind_case = TTQ__RESPONSE__KIND_HEALTH, r.health = &h;
      reply(&to, rid, &r);
    } else if (q->kind_case == TTQ__REQUEST__KIND_STATS) {
      Ttq__Response r = TTQ__RESPONSE__INIT;
      r.kind_case = TTQ__RESPONSE__KIND_STATS_TEXT;
      r.stats_text = "# TYPE ttq_requests_total counter\nttq_requests_total 7\n";
      reply(&to, rid, &r);
    } else if (q->kind_case == TTQ__REQUEST__KIND_CANCEL) {
      Ttq__Response r = TTQ__RESPONSE__INIT;
      Ttq__CancelAck a = TTQ__CANCEL_ACK__INIT;
      int found = slow_id[0] && !strcmp(slow_id, q->cancel->target_id);
      fprintf(stderr, "fake: cancel %s found %d\n", q->cancel->target_id, found);
      a.has_found = 1, a.found = found;
      r.kind_case = TTQ__RESPONSE__KIND_CANCELLED, r.cancelled = &a;
      reply(&to, rid, &r);
      if (found) {
        error(&slow_to, slow_id, 4, "cancelled by a CancelRequest");
        slow_id[0] = 0;
        zmq_msg_close(&slow_to);
      }
    } else if (q->kind_case == TTQ__REQUEST__KIND_GENERATE) {
      Ttq__GenerateRequest *g = q->generate;
      const char *p = g->prompt ? g->prompt
                      : g->n_messages ? g->messages[g->n_messages - 1]->content : "";
      fprintf(stderr, "fake: generate id %s prompt '%s' messages %zu max_tokens %s quant %s\n",
              rid, p, g->n_messages, g->has_max_tokens ? "set" : "unset",
              g->quant && g->quant->method ? g->quant->method : "unset");
      if (!strcmp(p, "!silent")) {
      } else if (!strcmp(p, "!unavail") && unavail++ < 2) {
        error(&to, rid, 3, "draining");
      } else if (!strcmp(p, "!garbage")) {
        zmq_send(sock, zmq_msg_data(&to), zmq_msg_size(&to), ZMQ_SNDMORE);
        zmq_send(sock, "\xff\xff\xff\xff garbage", 12, 0);
      } else if (!strcmp(p, "!exhausted")) {
        error(&to, rid, 2, "queue full (16 waiting)");
      } else if (!strcmp(p, "!slow") && !slow_id[0]) {
        zmq_msg_init(&slow_to);
        zmq_msg_copy(&slow_to, &to);
        snprintf(slow_id, sizeof slow_id, "%s", rid);
        slow_next = 0, slow_at = now_ms();
      } else if (!strcmp(p, "!slow")) {
        error(&to, rid, 2, "busy");
      } else {
        if (!strcmp(p, "!otherid")) {
          chunk(&to, "someone-else", 0, "WRONG");
          Ttq__Response r = TTQ__RESPONSE__INIT; /* no kind set: an unknown one */
          reply(&to, rid, &r);
        }
        chunk(&to, rid, 0, "He said \"hi\"\\ ");
        chunk(&to, rid, 1, "tab\there\nnew\x01line ");
        chunk(&to, rid, 2, "caf\xc3\xa9 \xe2\x82\xac bad\xff.");
        done(&to, rid);
      }
    }
    if (q) ttq__request__free_unpacked(q, NULL);
    zmq_msg_close(&to);
    zmq_msg_close(&body);
  }
}
EOF
# The generated code is compiled from source (not the build's libttqproto.a, which may carry
# sanitizer instrumentation this program is not linked with).
if ! "$CC" -std=c11 -D_GNU_SOURCE -O1 -w -I"$BUILD/proto" "$TMP/fake.c" "$BUILD/proto/ttq.pb-c.c" \
     $(pkg-config --cflags --libs libzmq libprotobuf-c) -pthread -o "$TMP/fake" 2>"$TMP/cc.err"; then
  check "the scripted peer compiles" false
  cat "$TMP/cc.err"
  echo "$fails failure(s)"
  exit 1
fi
start_fake() { # start_fake NAME [SECRET AUTHORIZED]: sets EP
  rm -f "$TMP/$1.ep"
  "$TMP/fake" "$TMP/$1.ep" "${@:2}" 2>"$TMP/$1.log" &
  PIDS+=($!)
  for _ in $(seq 50); do [ -s "$TMP/$1.ep" ] && break; sleep 0.1; done
  EP=$(cat "$TMP/$1.ep")
}
start_fake plain
F=(--endpoint "$EP")

"$TTQ" generate "${F[@]}" --max-tokens 5 hello >"$TMP/out" 2>"$TMP/err"; rc=$?
printf 'He said "hi"\\ tab\there\nnew\001line caf\303\251 \342\202\254 bad\377.' >"$TMP/want"
check "generate: stdout is exactly the streamed text" bash -c "[ $rc -eq 0 ] && cmp -s '$TMP/out' '$TMP/want'"
check "generate: one figures line on stderr" bash -c \
  "[ \$(wc -l <'$TMP/err') -eq 1 ] && grep -q 'generated 6 tokens' '$TMP/err' && grep -q 'ttq W4 g32 r0 alpha 0.50 lambda 0.40 head W8' '$TMP/err' && grep -q 'finish: length' '$TMP/err'"
check "generate: only given flags are set (max_tokens set, quant unset)" \
  grep -q "prompt 'hello' messages 0 max_tokens set quant unset" "$TMP/plain.log"
"$TTQ" generate "${F[@]}" --quiet hello >"$TMP/out" 2>"$TMP/err"
check "generate --quiet: nothing on stderr" test ! -s "$TMP/err"
printf 'from stdin' | "$TTQ" generate "${F[@]}" --quiet - >/dev/null 2>&1
check "generate -: the prompt comes from stdin" grep -q "prompt 'from stdin' messages 0" "$TMP/plain.log"

"$TTQ" generate "${F[@]}" --json --quant ttq --id json-1 hello >"$TMP/out" 2>"$TMP/err"; rc=$?
check "--json: 4 lines, exit 0, nothing on stderr" bash -c "[ $rc -eq 0 ] && [ \$(wc -l <'$TMP/out') -eq 4 ] && [ ! -s '$TMP/err' ]"
check "--json: quotes and backslash escaped" \
  grep -qF '{"type":"chunk","index":0,"text":"He said \"hi\"\\ ","token_ids":[0,1]}' "$TMP/out"
check "--json: tab, newline, control char escaped" \
  grep -qF '"text":"tab\there\nnew\u0001line "' "$TMP/out"
check "--json: UTF-8 kept, invalid byte replaced" \
  grep -qF "\"text\":\"café € bad\\ufffd.\"" "$TMP/out"
check "--json: done line with every field, --id used" \
  grep -qF '{"type":"done","request_id":"json-1","prompt_tokens":5,"generated_tokens":6,"ttft_ms":12.5,"prefill_ms":null,' "$TMP/out"
check "--json: done quant object" \
  grep -qF '"finish_reason":"length","quant":{"method":"ttq","bits":4,"group":32,"rank":0,"alpha":0.5,"lambda":0.4,"head_bits":8}}' "$TMP/out"

"$TTQ" generate "${F[@]}" '!exhausted' >"$TMP/out" 2>"$TMP/err"; rc=$?
check "RESOURCE_EXHAUSTED: exit 5, 'ttq generate: RESOURCE_EXHAUSTED: <message>'" bash -c \
  "[ $rc -eq 5 ] && grep -qx 'ttq generate: RESOURCE_EXHAUSTED: queue full (16 waiting)' '$TMP/err'"
"$TTQ" generate "${F[@]}" --json '!exhausted' >"$TMP/out" 2>/dev/null; rc=$?
check "RESOURCE_EXHAUSTED --json: error object" bash -c \
  "[ $rc -eq 5 ] && grep -q '\"type\":\"error\".*\"code\":\"RESOURCE_EXHAUSTED\",\"message\":\"queue full (16 waiting)\"' '$TMP/out'"
"$TTQ" generate "${F[@]}" '!garbage' >"$TMP/out" 2>"$TMP/err"; rc=$?
check "malformed frame: exit 1, 'malformed response from daemon'" bash -c \
  "[ $rc -eq 1 ] && grep -q 'malformed response from daemon' '$TMP/err'"
"$TTQ" generate "${F[@]}" --quiet --verbose '!otherid' >"$TMP/out" 2>"$TMP/err"; rc=$?
check "answers for another id or of no kind are ignored" bash -c \
  "[ $rc -eq 0 ] && cmp -s '$TMP/out' '$TMP/want' && grep -q \"ignored a response for request 'someone-else'\" '$TMP/err' && grep -q 'unknown kind' '$TMP/err'"
"$TTQ" generate "${F[@]}" --quiet --retries 0 '!unavail' >"$TMP/out" 2>"$TMP/err"; rc=$?
check "UNAVAILABLE without retries: exit 3" bash -c "[ $rc -eq 3 ] && grep -q 'UNAVAILABLE: draining' '$TMP/err'"
"$TTQ" generate "${F[@]}" --quiet '!unavail' >"$TMP/out" 2>"$TMP/err"; rc=$?
check "UNAVAILABLE is retried, then succeeds (exit 0, 3 attempts in all)" bash -c \
  "[ $rc -eq 0 ] && cmp -s '$TMP/out' '$TMP/want' && [ \$(grep -c \"prompt '!unavail'\" '$TMP/plain.log') -eq 3 ]"
t0=$(date +%s)
"$TTQ" generate "${F[@]}" --timeout 0.5 --retries 1 '!silent' >"$TMP/out" 2>"$TMP/err"; rc=$?
dt=$(($(date +%s) - t0))
check "no answer: exit 3 after 2 attempts in ${dt}s < 6s" bash -c \
  "[ $rc -eq 3 ] && [ $dt -lt 6 ] && grep -q 'no answer from ttqd' '$TMP/err' && grep -q '2 attempts' '$TMP/err'"
n=$(grep -c "prompt '!silent'" "$TMP/plain.log")
ids=$(grep "prompt '!silent'" "$TMP/plain.log" | sed 's/.* id \([^ ]*\) .*/\1/' | sort -u | wc -l)
check "each attempt used a new request id ($n attempts, $ids ids)" bash -c "[ $n -eq 2 ] && [ $ids -eq 2 ]"
check "an abandoned request is cancelled" bash -c "[ \$(grep -c 'fake: cancel' '$TMP/plain.log') -ge 2 ]"

"$TTQ" health "${F[@]}" >"$TMP/out" 2>"$TMP/err"; rc=$?
check "health: serving, exit 0" bash -c "[ $rc -eq 0 ] && grep -q '^state *serving' '$TMP/out' && grep -q '^model *fake-model' '$TMP/out' && grep -q '^queue *0 / 16' '$TMP/out'"
"$TTQ" health "${F[@]}" --json >"$TMP/out"; rc=$?
check "health --json" bash -c "[ $rc -eq 0 ] && grep -q '^{\"state\":\"serving\",\"model\":\"fake-model\",\"ranks\":2,' '$TMP/out'"
"$TTQ" stats "${F[@]}" >"$TMP/out"; rc=$?
check "stats: the Prometheus text" bash -c "[ $rc -eq 0 ] && grep -qx 'ttq_requests_total 7' '$TMP/out'"
"$TTQ" cancel "${F[@]}" no-such-id >"$TMP/out"; rc=$?
check "cancel unknown id: exit 1, 'not found'" bash -c "[ $rc -eq 1 ] && grep -q 'not found' '$TMP/out'"

"$TTQ" generate "${F[@]}" --quiet --id slow-1 '!slow' >"$TMP/slow.out" 2>"$TMP/slow.err" &
gp=$!
sleep 0.5
"$TTQ" cancel "${F[@]}" slow-1 >"$TMP/out"; rc=$?
wait $gp; grc=$?
check "cancel a running request: exit 0, 'cancelled'" bash -c "[ $rc -eq 0 ] && grep -q 'slow-1: cancelled' '$TMP/out'"
check "the cancelled generate exits 6 with CANCELLED" bash -c \
  "[ $grc -eq 6 ] && grep -q 'CANCELLED' '$TMP/slow.err' && grep -q tick '$TMP/slow.out'"
"$TTQ" generate "${F[@]}" --quiet --json --id slow-2 '!slow' >"$TMP/slow.out" 2>"$TMP/slow.err" &
gp=$!
sleep 0.5
kill -INT $gp
t0=$(date +%s)
wait $gp; grc=$?
dt=$(($(date +%s) - t0))
check "SIGINT: exit 130 within 2 s, request cancelled on the daemon" bash -c \
  "[ $grc -eq 130 ] && [ $dt -le 2 ] && grep -q 'fake: cancel slow-2 found 1' '$TMP/plain.log'"
check "SIGINT --json: the last line is the CANCELLED error" bash -c \
  "tail -1 '$TMP/slow.out' | grep -q '\"type\":\"error\",\"request_id\":\"slow-2\",\"code\":\"CANCELLED\"'"

printf 'hello\n\n!exhausted\nsecond\n' | "$TTQ" chat "${F[@]}" --quiet --system "be brief" >"$TMP/out" 2>"$TMP/err"; rc=$?
check "chat: two replies, the failed turn reported, exit 0" bash -c \
  "[ $rc -eq 0 ] && [ \$(grep -c 'He said' '$TMP/out') -eq 2 ] && grep -q 'ttq chat: RESOURCE_EXHAUSTED' '$TMP/err'"
check "chat: history sent (system, user, assistant, user; the failed turn dropped)" bash -c \
  "grep -q \"prompt 'hello' messages 2\" '$TMP/plain.log' && grep -q \"prompt 'second' messages 4\" '$TMP/plain.log'"

"$TTQ" bench "${F[@]}" --clients 3 --requests 9 --json >"$TMP/out" 2>"$TMP/err"; rc=$?
check "bench --json: 9 completed, exit 0" bash -c \
  "[ $rc -eq 0 ] && grep -q '\"sent\":9,\"completed\":9,\"errors\":0' '$TMP/out' && grep -q '\"decode_tok_s_mean\":50' '$TMP/out'"
"$TTQ" bench "${F[@]}" --clients 2 --requests 4 --prompt '!exhausted' >"$TMP/out" 2>"$TMP/err"; rc=$?
check "bench: typed errors counted by code, exit 0" bash -c \
  "[ $rc -eq 0 ] && grep -q 'errors *4 (RESOURCE_EXHAUSTED 4)' '$TMP/out'"
t0=$(date +%s)
"$TTQ" bench "${F[@]}" --clients 1 --requests 5 --duration 1 --prompt '!slow' >"$TMP/out" 2>"$TMP/err"; rc=$?
dt=$(($(date +%s) - t0))
check "bench --duration 1: bounded (${dt}s <= 4s), in-flight request cancelled and counted" bash -c \
  "[ $rc -eq 0 ] && [ $dt -le 4 ] && grep -q 'cancelled at deadline *1' '$TMP/out'"

# CURVE: the peer authorizes k1 only
"$TTQ" keygen --out "$TMP/srv" 2>/dev/null
"$TTQ" keygen --out "$TMP/k2" 2>/dev/null
start_fake curve "$(sed -n 's/^secret //p' "$TMP/srv.key")" "$(cat "$TMP/k1.pub")"
C=(--endpoint "$EP")
"$TTQ" health "${C[@]}" --server-key "$TMP/srv.pub" --key "$TMP/k1.key" >"$TMP/out" 2>"$TMP/err"; rc=$?
check "CURVE: an authorized key is served" bash -c "[ $rc -eq 0 ] && grep -q serving '$TMP/out'"
TTQ_SERVER_KEY="$(cat "$TMP/srv.pub")" TTQ_KEY="$TMP/k1.key" "$TTQ" stats "${C[@]}" >"$TMP/out" 2>"$TMP/err"; rc=$?
check "CURVE: TTQ_SERVER_KEY (Z85) and TTQ_KEY honoured" bash -c "[ $rc -eq 0 ] && grep -q ttq_requests_total '$TMP/out'"
"$TTQ" health "${C[@]}" --server-key "$TMP/srv.key" --key "$TMP/k1.key" >/dev/null 2>&1; rc=$?
check "CURVE: --server-key accepts the daemon's .key file" test $rc -eq 0
t0=$(date +%s)
"$TTQ" generate "${C[@]}" --server-key "$TMP/srv.pub" --key "$TMP/k2.key" hi >"$TMP/out" 2>"$TMP/err"; rc=$?
dt=$(($(date +%s) - t0))
check "CURVE: an unknown key is rejected: exit 7 at once (${dt}s), clear message" bash -c \
  "[ $rc -eq 7 ] && [ $dt -le 2 ] && grep -q \"rejected this client's CURVE key\" '$TMP/err'"
"$TTQ" generate "${C[@]}" --server-key "$TMP/srv.pub" hi >"$TMP/out" 2>"$TMP/err"; rc=$?
check "CURVE: an ephemeral key is rejected, the message says so" bash -c \
  "[ $rc -eq 7 ] && grep -q 'ephemeral' '$TMP/err'"
"$TTQ" health "${C[@]}" >"$TMP/out" 2>"$TMP/err"; rc=$?
check "CURVE daemon, client without CURVE: exit 7, 'handshake failed'" bash -c \
  "[ $rc -eq 7 ] && grep -q 'handshake failed: is the daemon using CURVE' '$TMP/err'"
"$TTQ" health "${F[@]}" --server-key "$TMP/srv.pub" --key "$TMP/k1.key" >"$TMP/out" 2>"$TMP/err"; rc=$?
check "plain daemon, CURVE client: exit 7, 'handshake failed'" bash -c \
  "[ $rc -eq 7 ] && grep -q 'handshake failed' '$TMP/err'"
"$TTQ" generate "${C[@]}" --server-key "$TMP/k2.pub" --key "$TMP/k1.key" --timeout 5 hi >"$TMP/out" 2>"$TMP/err"; rc=$?
check "CURVE: a wrong server key fails the handshake: exit 7" bash -c \
  "[ $rc -eq 7 ] && grep -q 'handshake failed' '$TMP/err'"
"$TTQ" bench "${C[@]}" --server-key "$TMP/srv.pub" --key "$TMP/k2.key" --requests 4 >"$TMP/out" 2>"$TMP/err"; rc=$?
check "CURVE: bench stops at a rejection with exit 7" bash -c "[ $rc -eq 7 ] && grep -q rejected '$TMP/err'"

echo "$fails failure(s)"
[ $fails -eq 0 ]
