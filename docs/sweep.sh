#!/usr/bin/env bash
# sweep.sh -- the measurement behind ttq's defaults (alpha, lambda, mean or sum): out-of-domain
# geometric-mean perplexity of ttq on one model at one setting, for a grid of alpha and lambda,
# with D from the mean (S/T) and from the plain sum. Prints a Markdown table.
#   docs/sweep.sh [MODEL]   (default ../shared/models/tinyllama-mix-outliers)
# Environment: BITS (3), GROUP (32), DOCS (24), CTX (512), ALPHAS, LAMBDAS, TTQD, SHARED.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
TTQD=${TTQD:-build/ttqd}
MODEL=${1:-$SHARED/models/tinyllama-mix-outliers}
BITS=${BITS:-3} GROUP=${GROUP:-32} DOCS=${DOCS:-24} CTX=${CTX:-512}
ALPHAS=${ALPHAS:-"0.25 0.5 0.75"}
LAMBDAS=${LAMBDAS:-"0 0.1 0.4 1"}
FILES=()
for d in scripture manual code_c code_py quotes lexicon; do FILES+=("$SHARED/corpus/valid/$d.txt"); done
geomean() { sed -n 's/.*"ppl":\([0-9.]*\).*/\1/p' | awk '{s += log($1); n++} END {printf "%.3f", exp(s / n)}'; }
echo "### ttq W$BITS g$GROUP on $(basename "$MODEL"): out-of-domain geometric-mean perplexity"
echo
printf "| D from | alpha |"; for l in $LAMBDAS; do printf " lambda %s |" "$l"; done; echo
printf "|---|---|"; for l in $LAMBDAS; do printf -- "---|"; done; echo
for mode in mean sum; do
  for a in $ALPHAS; do
    printf "| %s | %s |" "$mode" "$a"
    for l in $LAMBDAS; do
      extra=()
      [ "$mode" = sum ] && extra=(--sum)
      g=$("$TTQD" perplexity --model "$MODEL" --max-docs "$DOCS" --ctx "$CTX" --json --quant ttq \
        --bits "$BITS" --group "$GROUP" --alpha "$a" --lambda "$l" "${extra[@]}" "${FILES[@]}" | geomean)
      printf " %s |" "$g"
    done
    echo
  done
done
