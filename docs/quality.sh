#!/usr/bin/env bash
# quality.sh -- produces the perplexity tables of docs/QUALITY.md: for each model, every
# corpus/valid domain, fp and, at each (bits, group): rtn, awq (calibrated on dict.txt), ttq
# (rank 0) and ttq (rank 16). Usage:
#   docs/quality.sh [MODEL_DIR...]        (default: the two shared tinyllama models)
# Environment: SHARED (default ../shared), TTQD (default build/ttqd), DOCS (documents per
# domain, default 24), CTX (tokens per document, default 512), CONFIGS (default below),
# OUT (default docs/quality-results), THREADS (default all cores).
# Results: one JSON line per (model, method, config, domain) in $OUT/<model>.jsonl; the
# Markdown tables are printed on stdout (docs/quality-table.sh renders them again).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
TTQD=${TTQD:-build/ttqd}
DOCS=${DOCS:-24}
CTX=${CTX:-512}
OUT=${OUT:-docs/quality-results}
CONFIGS=${CONFIGS:-"4:128 4:32 3:32 3:128 2:32"}
THREADS=${THREADS:-$(nproc)}
MODELS=("$@")
[ ${#MODELS[@]} -gt 0 ] || MODELS=("$SHARED/models/tinyllama-mix-outliers" "$SHARED/models/tinyllama-mix")
CORPUS="$SHARED/corpus/valid"
DOMAINS=(dict scripture manual code_c code_py quotes lexicon)
FILES=()
for d in "${DOMAINS[@]}"; do FILES+=("$CORPUS/$d.txt"); done
mkdir -p "$OUT"
CALIB_DIR=$(mktemp -d)
trap 'rm -rf "$CALIB_DIR"' EXIT

run() { # run MODEL NAME EXTRA-FLAGS...
  local model=$1 name=$2
  shift 2
  "$TTQD" perplexity --model "$model" --max-docs "$DOCS" --ctx "$CTX" --threads "$THREADS" --json "$@" "${FILES[@]}" |
    sed "s|^{|{\"model\":\"$(basename "$model")\",\"method\":\"$name\",|"
}

for model in "${MODELS[@]}"; do
  res="$OUT/$(basename "$model").jsonl"
  : >"$res"
  echo "== $(basename "$model"): fp" >&2
  run "$model" fp --quant fp | sed 's/"method":"fp",/"method":"fp","config":"fp",/' >>"$res"
  for cfg in $CONFIGS; do
    b=${cfg%:*} g=${cfg#*:}
    tag="W$b g$g"
    echo "== $(basename "$model"): $tag" >&2
    "$TTQD" calibrate --model "$model" --out "$CALIB_DIR/awq-$b-$g.bin" --bits "$b" --group "$g" \
      --max-docs "$DOCS" --ctx "$CTX" --threads "$THREADS" "$CORPUS/dict.txt" 2>>"$OUT/calibrate.log"
    run "$model" rtn --quant rtn --bits "$b" --group "$g" | sed "s/{/{\"config\":\"$tag\",/" >>"$res"
    run "$model" awq --quant awq --bits "$b" --group "$g" --calib "$CALIB_DIR/awq-$b-$g.bin" | sed "s/{/{\"config\":\"$tag\",/" >>"$res"
    run "$model" "ttq" --quant ttq --bits "$b" --group "$g" | sed "s/{/{\"config\":\"$tag\",/" >>"$res"
    run "$model" "ttq r16" --quant ttq --bits "$b" --group "$g" --rank 16 | sed "s/{/{\"config\":\"$tag\",/" >>"$res"
  done
done
bash docs/quality-table.sh "$OUT"/*.jsonl
