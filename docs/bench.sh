#!/usr/bin/env bash
# bench.sh -- the figures of docs/BENCHMARKS.md (`make bench`).
# Writes the 738M-parameter benchmark shape of docs/PEERS.md once (GGUF F16, ~1.4 GiB in
# $SYNTH_DIR, default /tmp), runs every configuration ROUNDS times interleaved (the machine is
# shared: the best round is the least disturbed one), appends one `ttqd bench --json` object per
# run to $OUT (default docs/bench-results.jsonl, prefixed by a tag), then draws decode tok/s
# against bits per weight next to the bandwidth roofline (docs/decode-roofline.svg, gnuplot).
# Needs ../shared for the vocabulary of the synthetic model.
#   QUICK=1   only the 738M decode sweep and the time-to-first-token runs
#   TTQD=...  another ttqd binary (e.g. an older build, for a before/after table)
#   PEER=1    also llama.cpp in every round (docs/peer-bench.sh: a prebuilt CPU build from npm,
#             its F16, Q8_0 and Q4_0 on the same model; lines tagged "peer")
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
TTQD=${TTQD:-build/ttqd}
SYNTH_DIR=${SYNTH_DIR:-/tmp}
OUT=${OUT:-docs/bench-results.jsonl}
ROUNDS=${ROUNDS:-3}
SVG=${SVG:-docs/decode-roofline.svg}
S738="$SYNTH_DIR/ttq-synth-738m.gguf"
if [ ! -s "$S738" ]; then
  "$TTQD" synth --dim 2048 --layers 16 --ffn 5632 --heads 32 --kv-heads 4 \
    --vocab-from "$SHARED/models/tinyllama-mix" --out "$S738"
fi
: > "$OUT"
run() { # tag, then ttqd bench arguments
  local tag=$1
  shift
  echo "$tag $("$TTQD" bench --json "$@")" | tee -a "$OUT"
}
B="--model $S738 --threads 2"
for r in $(seq "$ROUNDS"); do
  echo "== round $r ($(uptime | sed 's/.*load/load/'))" >&2
  # decode sweep: fp and every width at group 32 (prefill 128 tokens, decode 32)
  run decode-fp $B --prompt-tokens 128 --gen-tokens 32 --repeat 2 --bandwidth
  for b in 8 4 3 2; do
    run decode-w$b $B --prompt-tokens 128 --gen-tokens 32 --repeat 2 --bandwidth --quant ttq --bits $b
  done
  if [ -n "${PEER:-}" ]; then
    PEER_REPS=${PEER_REPS:-3} bash docs/peer-bench.sh "$S738" | sed 's/^/peer /' | tee -a "$OUT"
  fi
  # time to first token, fp against ttq W4: quantized in the first decode step (the default),
  # fused into the prefill, and as a separate pass before the first token
  for p in 512 32; do
    run ttft-fp-$p $B --prompt-tokens $p --gen-tokens 2 --repeat 2
    run ttft-ttq-$p $B --prompt-tokens $p --gen-tokens 2 --repeat 2 --quant ttq --bits 4
    run ttft-fused-$p $B --prompt-tokens $p --gen-tokens 2 --repeat 2 --quant ttq --bits 4 --quant-in-prefill
    run ttft-sep-$p $B --prompt-tokens $p --gen-tokens 2 --repeat 2 --quant ttq --bits 4 --quant-in-prefill --no-fuse
  done
done
if [ -z "${QUICK:-}" ]; then
  for m in models/tinyqwen3-mix "$SHARED/models/tinyllama-mix" "$SHARED/models/tinyllama-mix-f16.gguf"; do
    run small --model "$m" --prompt-tokens 128 --gen-tokens 64 --threads 2 --repeat 3
  done
  run one-thread --model "$S738" --prompt-tokens 128 --gen-tokens 32 --threads 1 --repeat 2 --bandwidth
fi

bash docs/plot-decode.sh "$OUT" "$SVG"
