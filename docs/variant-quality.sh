#!/usr/bin/env bash
# variant-quality.sh -- the perplexity cost of one setting against another, per model,
# configuration and corpus/valid domain. The defaults measure the quantized output head
# (docs/QUALITY.md, "The output head"): BASE "--head-bits 0" against each of VARIANTS.
# Usage:
#   docs/variant-quality.sh [MODEL_DIR...]  (default: the two shared tinyllama models and the
#                                            bundled tinyqwen3-mix)
#   e.g. the f16 KV cache (docs/QUALITY.md, "The KV cache"):
#   BASE="--kv-cache f32" VARIANTS="--kv-cache f16" CONFIGS="fp:4 ttq:4" CTX=1024 \
#     docs/variant-quality.sh
# Environment: SHARED (default ../shared), TTQD (default build/ttqd), DOCS (documents per domain,
# default 12), CTX (tokens per document, default 512), CONFIGS (METHOD:BITS ..., default
# "ttq:4 ttq:3"), BASE (flags, default "--head-bits 0"), VARIANTS (flag sets separated by "|",
# default "--head-bits 8|--head-bits 4"), THREADS (default all cores).
# Prints one Markdown table row per (model, config, variant): the relative perplexity change
# against BASE on each domain, and the largest one.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
TTQD=${TTQD:-build/ttqd}
DOCS=${DOCS:-12}
CTX=${CTX:-512}
CONFIGS=${CONFIGS:-"ttq:4 ttq:3"}
BASE=${BASE:-"--head-bits 0"}
VARIANTS=${VARIANTS:-"--head-bits 8|--head-bits 4"}
THREADS=${THREADS:-$(nproc)}
MODELS=("$@")
[ ${#MODELS[@]} -gt 0 ] ||
  MODELS=("$SHARED/models/tinyllama-mix-outliers" "$SHARED/models/tinyllama-mix" models/tinyqwen3-mix)
CORPUS="$SHARED/corpus/valid"
[ -d "$CORPUS" ] || CORPUS=tests/data/corpus/valid
DOMAINS=(dict scripture manual code_c code_py quotes lexicon)
FILES=()
for d in "${DOMAINS[@]}"; do FILES+=("$CORPUS/$d.txt"); done

ppl() { # ppl MODEL METHOD BITS FLAGS -> one perplexity per domain, in DOMAINS order
  # shellcheck disable=SC2086 # FLAGS are words
  "$TTQD" perplexity --model "$1" --max-docs "$DOCS" --ctx "$CTX" --threads "$THREADS" --json \
    --quant "$2" --bits "$3" $4 "${FILES[@]}" | sed -n 's/.*"ppl":\([0-9.eE+-]*\).*/\1/p'
}

IFS='|' read -r -a VARIANT_LIST <<<"$VARIANTS"
echo "| model | config | setting | $(printf '%s | ' "${DOMAINS[@]}")largest |"
echo "|---|---|---|$(printf -- '---|%.0s' "${DOMAINS[@]}")---|"
for model in "${MODELS[@]}"; do
  for cfg in $CONFIGS; do
    method=${cfg%:*} bits=${cfg#*:}
    mapfile -t base < <(ppl "$model" "$method" "$bits" "$BASE")
    for v in "${VARIANT_LIST[@]}"; do
      mapfile -t q < <(ppl "$model" "$method" "$bits" "$v")
      row=$(paste -d' ' <(printf '%s\n' "${base[@]}") <(printf '%s\n' "${q[@]}") |
        awk '{r = ($2 / $1 - 1) * 100; printf "%+.3f%% | ", r; a = r < 0 ? -r : r; if (a > m) m = a}
             END {printf "%.3f%% |", m}')
      label=$method; [ "$method" = fp ] || label="$method W$bits g32"
      echo "| $(basename "$model") | $label | \`$v\` | $row"
    done
  done
done
