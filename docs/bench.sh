#!/usr/bin/env bash
# bench.sh -- the full-precision figures of docs/BENCHMARKS.md (`make bench`).
# Writes the 738M-parameter benchmark shape of docs/PEERS.md once (GGUF F16, ~1.4 GiB in
# $SYNTH_DIR, default /tmp), then prints one JSON line per run. Needs ../shared for the
# tinyllama models and the vocabulary of the synthetic model.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
TTQD=${TTQD:-build/ttqd}
SYNTH_DIR=${SYNTH_DIR:-/tmp}
S738="$SYNTH_DIR/ttq-synth-738m.gguf"
if [ ! -s "$S738" ]; then
  "$TTQD" synth --dim 2048 --layers 16 --ffn 5632 --heads 32 --kv-heads 4 \
    --vocab-from "$SHARED/models/tinyllama-mix" --out "$S738"
fi
for m in models/tinyqwen3-mix "$SHARED/models/tinyllama-mix" "$SHARED/models/tinyllama-mix-f16.gguf"; do
  "$TTQD" bench --model "$m" --prompt-tokens 128 --gen-tokens 64 --threads 2 --repeat 3 --json
done
"$TTQD" bench --model "$S738" --prompt-tokens 128 --gen-tokens 32 --threads 2 --repeat 2 --bandwidth --json
"$TTQD" bench --model "$S738" --prompt-tokens 128 --gen-tokens 32 --threads 1 --repeat 2 --bandwidth --json
# Quantized decode on the 738M shape (TTQ: per-prompt statistics + quantization + decode)
for q in "--bits 4 --group 32" "--bits 8 --group 32" "--bits 3 --group 32" "--bits 2 --group 32" "--bits 4 --group 128"; do
  "$TTQD" bench --model "$S738" --prompt-tokens 128 --gen-tokens 32 --threads 2 --repeat 2 --bandwidth --json --quant ttq $q
done
# Time to first token, fp against ttq, for a long and a short prompt
for p in 512 32; do
  "$TTQD" bench --model "$S738" --prompt-tokens $p --gen-tokens 4 --threads 2 --repeat 2 --json
  "$TTQD" bench --model "$S738" --prompt-tokens $p --gen-tokens 4 --threads 2 --repeat 2 --json --quant ttq --bits 4
done
