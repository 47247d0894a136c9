#!/usr/bin/env bash
# tools.sh -- the ttqd command-line tools end to end: errors are one line and a non-zero exit;
# tokenize reproduces the golden ids; perplexity --json reproduces the golden perplexity;
# run is deterministic per seed and honours --stop; synth writes GGUF and Hugging Face layouts
# of the same weights that compute the same function; inspect and bench report their fields.
set -uo pipefail
: "${TTQD:?}" "${TTQ_SOURCE_DIR:?}"
MODEL="$TTQ_SOURCE_DIR/models/tinyqwen3-mix"
GOLDEN="$TTQ_SOURCE_DIR/tests/data/golden/tinyqwen3-mix/golden.json"
CORPUS="$TTQ_SOURCE_DIR/tests/data/corpus/valid"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
check() { # check NAME CONDITION-COMMAND...
  local name=$1
  shift
  if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}

# --- errors: one line on stderr, exit 1 (failure) or 2 (usage) ---
"$TTQD" run --model "$TMP/nope" "x" >"$TMP/out" 2>"$TMP/err"; rc=$?
check "missing model: exit 1" test $rc -eq 1
check "missing model: one line naming the path" bash -c "[ \$(wc -l <'$TMP/err') -eq 1 ] && grep -q '$TMP/nope' '$TMP/err'"
check "missing model: nothing on stdout" test ! -s "$TMP/out"
"$TTQD" run --model "$MODEL" --temperature abc "x" 2>"$TMP/err"; rc=$?
check "bad number: exit 2 naming the flag" bash -c "[ $rc -eq 2 ] && grep -q -- '--temperature' '$TMP/err'"
"$TTQD" run --model "$MODEL" --top-p 1.5 "x" 2>"$TMP/err"; rc=$?
check "out of range: exit 2" bash -c "[ $rc -eq 2 ] && grep -q 'out of range' '$TMP/err'"
"$TTQD" frobnicate 2>/dev/null; check "unknown command: exit 2" test $? -eq 2
: >"$TMP/empty.gguf"
"$TTQD" inspect --model "$TMP/empty.gguf" 2>"$TMP/err"; rc=$?
check "empty model file refused" bash -c "[ $rc -eq 1 ] && grep -q 'empty.gguf' '$TMP/err'"
mkdir "$TMP/nocfg"
"$TTQD" inspect --model "$TMP/nocfg" 2>"$TMP/err"; rc=$?
check "directory without config.json refused" bash -c "[ $rc -eq 1 ] && grep -q 'config.json' '$TMP/err'"

# --- tokenize: golden prompt 0 ---
prompt0=$(sed -n '/"0": {/,/"logits_file"/p' "$GOLDEN" | sed -n 's/.*"prompt": "\(.*\)",$/\1/p')
want=$(sed -n '/"0": {/,/"logits_file"/p' "$GOLDEN" | sed -n '/"ids"/,/]/p' | grep -o '[0-9]\+' | tr '\n' ' ' | sed 's/ $//')
got=$(printf '%s' "$prompt0" | "$TTQD" tokenize --model "$MODEL")
check "tokenize matches golden ids ($want)" test "$got" = "$want"

# --- perplexity --json on one domain equals golden within 0.5% ---
"$TTQD" perplexity --model "$MODEL" --json "$CORPUS/quotes.txt" >"$TMP/ppl.json" 2>"$TMP/err"
ppl=$(sed -n 's/.*"ppl":\([0-9.]*\).*/\1/p' "$TMP/ppl.json")
tokens=$(sed -n 's/.*"tokens":\([0-9]*\).*/\1/p' "$TMP/ppl.json")
gold=$(sed -n '/"valid\/quotes.txt"/,/}/p' "$GOLDEN" | sed -n 's/.*"ppl": \([0-9.]*\).*/\1/p')
gtok=$(sed -n '/"valid\/quotes.txt"/,/}/p' "$GOLDEN" | sed -n 's/.*"tokens": \([0-9]*\).*/\1/p')
check "perplexity --json quotes: $ppl vs golden $gold" awk -v a="$ppl" -v b="$gold" 'BEGIN{d=a/b-1; if(d<0)d=-d; exit !(a>0 && d<=0.005)}'
check "perplexity --json tokens $tokens = golden $gtok" test "$tokens" = "$gtok"

# --- run: deterministic per seed, different across seeds, --stop honoured ---
a=$("$TTQD" run --model "$MODEL" -n 24 --temperature 1 --seed 11 "The" 2>/dev/null)
b=$("$TTQD" run --model "$MODEL" -n 24 --temperature 1 --seed 11 "The" 2>/dev/null)
c=$("$TTQD" run --model "$MODEL" -n 24 --temperature 1 --seed 12 "The" 2>/dev/null)
check "same seed, same text" test "$a" = "$b"
check "other seed, other text" test "$a" != "$c"
full=$("$TTQD" run --model "$MODEL" -n 40 --temperature 0 "In the beginning" 2>/dev/null)
stop=$(printf '%s' "$full" | tail -c +12 | head -c 3)
cut=$("$TTQD" run --model "$MODEL" -n 40 --temperature 0 --stop "$stop" "In the beginning" 2>/dev/null)
check "--stop '$stop': output is the text before it" bash -c '[ -n "$3" ] && [ "${1%%"$2"*}" = "$3" ]' _ "$full" "$stop" "$cut"

# --- synth: GGUF (permuted q/k rows) and HF layouts of the same weights agree ---
S="--dim 128 --layers 2 --ffn 256 --heads 4 --kv-heads 2 --vocab-from $MODEL --seed 5 --dtype f32"
"$TTQD" synth $S --out "$TMP/s.gguf" 2>/dev/null && "$TTQD" synth $S --out "$TMP/s-hf" 2>/dev/null
check "synth wrote both layouts" test -s "$TMP/s.gguf" -a -s "$TMP/s-hf/model.safetensors"
"$TTQD" synth $S --arch qwen3 --out "$TMP/q.gguf" 2>/dev/null && "$TTQD" synth $S --arch qwen3 --out "$TMP/q-hf" 2>/dev/null
head -c 20000 "$CORPUS/dict.txt" >"$TMP/doc.txt"
for pair in "s.gguf s-hf" "q.gguf q-hf"; do
  set -- $pair
  x=$("$TTQD" run --model "$TMP/$1" -n 16 --temperature 0 "Hello world" 2>/dev/null)
  y=$("$TTQD" run --model "$TMP/$2" -n 16 --temperature 0 "Hello world" 2>/dev/null)
  check "synth $1 and $2 generate the same text" test -n "$x" -a "$x" = "$y"
  px=$("$TTQD" perplexity --model "$TMP/$1" --json "$TMP/doc.txt" 2>/dev/null | sed -n 's/.*"ppl":\([0-9.]*\).*/\1/p')
  py=$("$TTQD" perplexity --model "$TMP/$2" --json "$TMP/doc.txt" 2>/dev/null | sed -n 's/.*"ppl":\([0-9.]*\).*/\1/p')
  check "synth $1 and $2 perplexity $px = $py (4 digits)" awk -v a="$px" -v b="$py" 'BEGIN{d=a/b-1; if(d<0)d=-d; exit !(a>0 && d<1e-4)}'
done
"$TTQD" synth --dim 100 --layers 1 --ffn 64 --heads 3 --vocab-from "$MODEL" --out "$TMP/bad" 2>"$TMP/err"; rc=$?
check "synth refuses dim not divisible by heads" bash -c "[ $rc -eq 2 ] && grep -q 'heads' '$TMP/err'"

# --- inspect and bench report their fields ---
"$TTQD" inspect --model "$MODEL" --json >"$TMP/i.json"
dim=$(sed -n 's/.*"hidden_size": \([0-9]*\).*/\1/p' "$MODEL/config.json")
check "inspect --json: qwen3, dim $dim" bash -c "grep -q '\"architecture\":\"qwen3\"' '$TMP/i.json' && grep -q '\"dim\":$dim,' '$TMP/i.json'"
"$TTQD" bench --model "$MODEL" --prompt-tokens 32 --gen-tokens 8 --json >"$TMP/b.json"
for f in prefill_tok_s decode_tok_s ttft_ms weight_bytes_per_token; do
  check "bench --json has $f > 0" bash -c "sed -n 's/.*\"$f\":\([0-9.]*\).*/\1/p' '$TMP/b.json' | awk '{exit !(\$1 > 0)}'"
done

# --- quantization flags: calibrate + awq, refusals with the reason, ttq variants run ---
head -c 30000 "$CORPUS/dict.txt" >"$TMP/calib.txt"
"$TTQD" calibrate --model "$MODEL" --out "$TMP/awq.bin" --bits 4 --group 32 --max-docs 4 --ctx 256 "$TMP/calib.txt" 2>"$TMP/err"
check "calibrate writes a file" test -s "$TMP/awq.bin"
pa=$("$TTQD" perplexity --model "$MODEL" --quant awq --bits 4 --group 32 --calib "$TMP/awq.bin" --json "$TMP/doc.txt" 2>/dev/null | sed -n 's/.*"ppl":\([0-9.]*\).*/\1/p')
pf=$("$TTQD" perplexity --model "$MODEL" --json "$TMP/doc.txt" 2>/dev/null | sed -n 's/.*"ppl":\([0-9.]*\).*/\1/p')
check "awq W4 perplexity $pa within 25% of fp $pf" awk -v a="$pa" -v b="$pf" 'BEGIN{exit !(a > 0 && a / b < 1.25 && a / b > 0.9)}'
"$TTQD" perplexity --model "$MODEL" --quant awq --bits 3 --group 32 --calib "$TMP/awq.bin" "$TMP/doc.txt" 2>"$TMP/err"; rc=$?
check "awq file for W4 g32 refused at W3" bash -c "[ $rc -ne 0 ] && grep -q 'W4 g32' '$TMP/err'"
"$TTQD" run --model "$MODEL" --quant ttq --group 100 "x" 2>"$TMP/err"; rc=$?
check "group not dividing the width refused" bash -c "[ $rc -ne 0 ] && grep -q 'group = 100' '$TMP/err'"
"$TTQD" run --model "$MODEL" --quant ttq --bits 6 "x" 2>"$TMP/err"; rc=$?
check "bits 6 refused" bash -c "[ $rc -eq 2 ] && grep -q -- '--bits' '$TMP/err'"
"$TTQD" run --model "$MODEL" --quant rtn --search 4 "x" 2>"$TMP/err"; rc=$?
check "--search with rtn refused" bash -c "[ $rc -ne 0 ] && grep -q 'search' '$TMP/err'"
for q in "--quant ttq --bits 4" "--quant ttq --bits 2 --rank 8" "--quant ttq --bits 3 --search 4" "--quant rtn --bits 5 --group 64"; do
  out=$(TTQ_CACHE_DIR="$TMP/cache" "$TTQD" run --model "$MODEL" -n 8 --temperature 0 $q "In the beginning" 2>"$TMP/err")
  check "run $q generates text" bash -c "[ -n \"\$1\" ] && grep -q 'quantization' '$TMP/err'" _ "$out"
done
"$TTQD" inspect --model "$MODEL" --quant ttq --bits 4 --group 32 --json >"$TMP/iq.json"
lin=$(sed -n 's/.*"linear_bytes":\([0-9]*\).*/\1/p' "$TMP/iq.json")
ql=$(sed -n 's/.*"quant_linear_bytes":\([0-9]*\).*/\1/p' "$TMP/iq.json")
# bf16 linear weights are 16 bits; W4 g32 with an fp16 scale and an int8 zero point is
# 4 + 24/32 = 4.75 bits: 19/64 of the bytes
check "inspect --quant footprint: $ql = 19/64 of $lin" test "$((lin * 19 / 64))" = "$ql"
# the head at 8 bits (default): 8 + 24/32 = 8.75 bits per weight, vocab x dim weights
qh=$(sed -n 's/.*"quant_head_bytes":\([0-9]*\).*/\1/p' "$TMP/iq.json")
hw=$(( $(sed -n 's/.*"vocab":\([0-9]*\).*/\1/p' "$TMP/iq.json") * $(sed -n 's/.*"dim":\([0-9]*\).*/\1/p' "$TMP/iq.json") ))
check "inspect --quant head: $qh bytes = 8.75 bits x $hw weights" test "$((hw * 35 / 32))" = "$qh"
"$TTQD" run --model "$MODEL" --quant ttq --head-bits 6 "x" 2>"$TMP/err"; rc=$?
check "--head-bits 6 refused" bash -c "[ $rc -eq 2 ] && grep -q -- '--head-bits' '$TMP/err'"
"$TTQD" run --model "$MODEL" --kv-cache f8 "x" 2>"$TMP/err"; rc=$?
check "--kv-cache f8 refused" bash -c "[ $rc -eq 2 ] && grep -q -- '--kv-cache' '$TMP/err'"
# the f16 KV cache (the default): bench counts half the KV bytes per token of f32's
"$TTQD" bench --model "$MODEL" --prompt-tokens 32 --gen-tokens 8 --json --kv-cache f32 >"$TMP/b32.json"
"$TTQD" bench --model "$MODEL" --prompt-tokens 32 --gen-tokens 8 --json >"$TMP/bkv.json"
kv32=$(sed -n 's/.*"kv_bytes_per_token":\([0-9]*\).*/\1/p' "$TMP/b32.json")
kv16=$(sed -n 's/.*"kv_bytes_per_token":\([0-9]*\).*/\1/p' "$TMP/bkv.json")
check "bench: $kv16 KV bytes per token (f16) = half of $kv32 (f32)" test "$((kv32 / 2))" = "$kv16"
# inspect: the same bytes per token of context (every layer's keys and values), both types
"$TTQD" inspect --model "$MODEL" --json --kv-cache f32 >"$TMP/ikv.json"
ikv=$(sed -n 's/.*"kv_bytes_per_token":\([0-9]*\).*/\1/p' "$TMP/ikv.json")
ikv16=$(sed -n 's/.*"kv_bytes_per_token":\([0-9]*\).*/\1/p' "$TMP/i.json")
want=$(( 2 * $(sed -n 's/.*"layers":\([0-9]*\).*/\1/p' "$TMP/i.json") * $(sed -n 's/.*"kv_heads":\([0-9]*\).*/\1/p' "$TMP/i.json") * $(sed -n 's/.*"head_dim":\([0-9]*\).*/\1/p' "$TMP/i.json") ))
check "inspect: KV bytes per token f32 $ikv = 4 x $want, f16 $ikv16 = 2 x" bash -c "[ '$ikv' = $((want * 4)) ] && [ '$ikv16' = $((want * 2)) ]"
check "bench --json says f16 by default, f32 when asked" bash -c "grep -q '\"kv_cache\":\"f16\"' '$TMP/bkv.json' && grep -q '\"kv_cache\":\"f32\"' '$TMP/b32.json'"
"$TTQD" bench --model "$MODEL" --prompt-tokens 32 --gen-tokens 8 --json --quant ttq --bits 4 >"$TMP/bq.json"
for f in stats_ms quant_ms quant_bytes; do
  check "bench --quant ttq --json has $f" grep -q "\"$f\":" "$TMP/bq.json"
done

echo "$fails failed"
[ "$fails" -eq 0 ]
