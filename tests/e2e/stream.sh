#!/usr/bin/env bash
# stream.sh -- a served generation streams exactly what `ttqd run` prints for the same settings
# and seed (greedy and sampled, fp and ttq, the output head quantized or not, a stop string, a chat turn through the model's
# template written out by hand here), on one rank and on two tensor-parallel ranks (and with the
# KV cache in f32, the default being f16); --json
# gives one object per chunk and a final one whose figures add up.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
P="In the beginning God created the heaven and the earth. And the earth was"

for ranks in 0 2; do
  tag="ranks=${ranks/#0/1}"
  if [ "$ranks" -eq 0 ]; then RUN=("$TTQD" run); else
    RUN=(mpirun --oversubscribe --bind-to none --mca pml ob1 --mca btl self,tcp -np "$ranks" "$TTQD" run)
  fi
  start_daemon "$ranks" "$TMP/d$ranks.log" --threads 1 || { fails=$((fails + 1)); continue; }
  while IFS='|' read -r name flags; do
    # shellcheck disable=SC2086
    "${RUN[@]}" --model "$MODEL" --threads 1 --quiet $flags "$P" >"$TMP/want" 2>"$TMP/run.err" </dev/null
    gflags=${flags/-n /--max-tokens }
    # shellcheck disable=SC2086
    "$TTQ" generate --endpoint "$EP" --quiet $gflags "$P" >"$TMP/got" 2>"$TMP/gen.err" </dev/null
    rc=$?
    check "$tag $name: exit 0" test $rc -eq 0
    check "$tag $name: streamed text equals ttqd run" cmp -s "$TMP/want" "$TMP/got"
    check "$tag $name: non-empty" test -s "$TMP/got"
  done <<'CASES'
greedy fp|-n 24 --temperature 0 --quant fp
sampled ttq W4 seed 7|-n 24 --temperature 0.8 --seed 7 --quant ttq --bits 4
sampled ttq W3 seed 11|-n 20 --temperature 1.0 --seed 11 --quant ttq --bits 3
rtn W8 greedy|-n 16 --temperature 0 --quant rtn --bits 8
ttq W4 head unquantized|-n 16 --temperature 0 --quant ttq --bits 4 --head-bits 0
ttq W3 head W5 seed 3|-n 16 --temperature 0.7 --seed 3 --quant ttq --bits 3 --head-bits 5
CASES
  # groups: 64 works on one rank; on two, the shards are planned for group 32 and 64 is refused
  "$TTQ" generate --endpoint "$EP" --quiet --max-tokens 4 --quant ttq --group 64 "$P" >/dev/null 2>"$TMP/g64.err" </dev/null
  rc=$?
  if [ "$ranks" -eq 0 ]; then
    check "$tag group 64: served" test $rc -eq 0
  else
    check "$tag group 64: refused with INVALID_ARGUMENT naming the alignment (exit $rc)" \
      bash -c "[ $rc -eq 4 ] && grep -q 'aligned to 32' '$TMP/g64.err'"
  fi
  # a stop string taken from the greedy output itself
  "${RUN[@]}" --model "$MODEL" --threads 1 --quiet -n 32 --temperature 0 --quant fp "$P" >"$TMP/full" 2>/dev/null </dev/null
  stop=$(head -c 40 "$TMP/full" | tail -c 6)
  if [ -n "$stop" ]; then
    "$TTQ" generate --endpoint "$EP" --quiet --max-tokens 32 --temperature 0 --quant fp --stop "$stop" "$P" >"$TMP/got" 2>/dev/null
    want=$(awk -v s="$stop" 'BEGIN{RS="\0"} {i=index($0,s); printf "%s", substr($0,1,i-1)}' "$TMP/full")
    check "$tag stop string: text ends before it" test "$(cat "$TMP/got")" == "$want"
    check "$tag stop string: never sent" bash -c "! grep -qF -- '$stop' '$TMP/got'"
  fi
  # --json: a chunk object per token, then done with consistent figures
  "$TTQ" generate --endpoint "$EP" --json --max-tokens 12 --temperature 0 --quant ttq "$P" >"$TMP/json" 2>/dev/null
  check "$tag json: 12 token chunks" test "$(grep -c '"type":"chunk".*"token_ids":\[[0-9]' "$TMP/json")" -eq 12
  check "$tag json: one done line, last" bash -c "tail -1 '$TMP/json' | grep -q '\"type\":\"done\"'"
  check "$tag json: done reports 12 generated, finish length, ttq W4" \
    bash -c "tail -1 '$TMP/json' | grep '\"generated_tokens\":12' | grep '\"finish_reason\":\"length\"' | grep '\"method\":\"ttq\"' | grep -q '\"head_bits\":8'"
  check "$tag json: chunk text concatenates to the plain output" bash -c \
    "\"$TTQ\" generate --endpoint '$EP' --quiet --max-tokens 12 --temperature 0 --quant ttq '$P' >'$TMP/plain' 2>/dev/null; \
     sed -n 's/.*\"text\":\"\\([^\"]*\\)\".*/\\1/p' '$TMP/json' | tr -d '\\n' >'$TMP/cat'; \
     tr -d '\\n' <'$TMP/plain' | cmp -s - '$TMP/cat'"
  # chat: one user turn equals ttqd run on the template rendered by hand
  printf 'Tell me about the sea.\n' | "$TTQ" chat --endpoint "$EP" --max-tokens 16 --temperature 0 --quant fp >"$TMP/chat" 2>"$TMP/chat.err"
  check "$tag chat: exit 0" test $? -eq 0
  rendered=$(printf '<|im_start|>user\nTell me about the sea.<|im_end|>\n<|im_start|>assistant\n')
  "${RUN[@]}" --model "$MODEL" --threads 1 --quiet -n 16 --temperature 0 --quant fp "$rendered" >"$TMP/chatwant" 2>/dev/null </dev/null
  check "$tag chat: reply equals ttqd run on the hand-rendered template" \
    bash -c "grep -qF -- \"\$(head -c 60 '$TMP/chatwant' | head -1)\" '$TMP/chat'"
  stop_daemon 30
  check "$tag clean exit after SIGTERM" test "$STOP_RC" -eq 0
done
# a daemon with the KV cache in f32 (the default is f16) streams what ttqd run --kv-cache f32
# prints (two ranks)
RUN=(mpirun --oversubscribe --bind-to none --mca pml ob1 --mca btl self,tcp -np 2 "$TTQD" run)
if start_daemon 2 "$TMP/dkv.log" --threads 1 --kv-cache f32; then
  "${RUN[@]}" --model "$MODEL" --threads 1 --quiet -n 24 --temperature 0 --quant ttq --kv-cache f32 "$P" >"$TMP/want" 2>/dev/null </dev/null
  "$TTQ" generate --endpoint "$EP" --quiet --max-tokens 24 --temperature 0 --quant ttq "$P" >"$TMP/got" 2>/dev/null </dev/null
  check "ranks=2 kv-cache f32: streamed text equals ttqd run --kv-cache f32" cmp -s "$TMP/want" "$TMP/got"
  check "ranks=2 kv-cache f32: non-empty" test -s "$TMP/got"
  stop_daemon 30
else
  fails=$((fails + 1))
fi
finish
