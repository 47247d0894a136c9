#!/usr/bin/env bash
# head-quality.sh -- the perplexity cost of quantizing the output head (docs/QUALITY.md, "The
# output head"): per model and configuration, every corpus/valid domain with the head
# unquantized (--head-bits 0) and at each of HEADS, the rest of the settings the defaults.
# Usage:
#   docs/head-quality.sh [MODEL_DIR...]   (default: the two shared tinyllama models and the
#                                          bundled tinyqwen3-mix)
# Environment: SHARED (default ../shared), TTQD (default build/ttqd), DOCS (documents per domain,
# default 12), CTX (tokens per document, default 512), CONFIGS (default "ttq:4 ttq:3"), HEADS
# (default "8 4"), THREADS (default all cores).
# Prints one Markdown table row per (model, config, head bits): the relative perplexity change
# against the unquantized head on each domain, and the largest one.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
TTQD=${TTQD:-build/ttqd}
DOCS=${DOCS:-12}
CTX=${CTX:-512}
CONFIGS=${CONFIGS:-"ttq:4 ttq:3"}
HEADS=${HEADS:-"8 4"}
THREADS=${THREADS:-$(nproc)}
MODELS=("$@")
[ ${#MODELS[@]} -gt 0 ] ||
  MODELS=("$SHARED/models/tinyllama-mix-outliers" "$SHARED/models/tinyllama-mix" models/tinyqwen3-mix)
CORPUS="$SHARED/corpus/valid"
[ -d "$CORPUS" ] || CORPUS=tests/data/corpus/valid
DOMAINS=(dict scripture manual code_c code_py quotes lexicon)
FILES=()
for d in "${DOMAINS[@]}"; do FILES+=("$CORPUS/$d.txt"); done

ppl() { # ppl MODEL METHOD BITS HEAD -> one perplexity per domain, in DOMAINS order
  "$TTQD" perplexity --model "$1" --max-docs "$DOCS" --ctx "$CTX" --threads "$THREADS" --json \
    --quant "$2" --bits "$3" --head-bits "$4" "${FILES[@]}" | sed -n 's/.*"ppl":\([0-9.eE+-]*\).*/\1/p'
}

echo "| model | config | head | $(printf '%s | ' "${DOMAINS[@]}")largest |"
echo "|---|---|---|$(printf -- '---|%.0s' "${DOMAINS[@]}")---|"
for model in "${MODELS[@]}"; do
  for cfg in $CONFIGS; do
    method=${cfg%:*} bits=${cfg#*:}
    mapfile -t base < <(ppl "$model" "$method" "$bits" 0)
    for h in $HEADS; do
      mapfile -t q < <(ppl "$model" "$method" "$bits" "$h")
      row=$(paste -d' ' <(printf '%s\n' "${base[@]}") <(printf '%s\n' "${q[@]}") |
        awk '{r = ($2 / $1 - 1) * 100; printf "%+.3f%% | ", r; a = r < 0 ? -r : r; if (a > m) m = a}
             END {printf "%.3f%% |", m}')
      echo "| $(basename "$model") | $method W$bits g32 | W$h | $row"
    done
  done
done
