#!/usr/bin/env bash
# quality-table.sh -- renders quality.sh's JSON lines as Markdown: per model and config, one
# row per method with the perplexity of each domain and the geometric mean of the six domains
# other than dict ("out-of-domain"), and its ratio to rtn and awq.
set -euo pipefail
for f in "$@"; do
  awk '
  function val(key,   s) { if (match($0, "\"" key "\":\"[^\"]*\"")) { s = substr($0, RSTART, RLENGTH); sub("\"" key "\":\"", "", s); sub("\"$", "", s); return s } ; if (match($0, "\"" key "\":[0-9.e+-]+")) { s = substr($0, RSTART, RLENGTH); sub("\"" key "\":", "", s); return s } return "" }
  {
    model = val("model"); cfg = val("config"); meth = val("method"); file = val("file"); ppl = val("ppl")
    n = split(file, parts, "/"); dom = parts[n]; sub(/\.txt$/, "", dom)
    key = cfg SUBSEP meth
    P[key, dom] = ppl
    if (!(cfg in seen_cfg)) { seen_cfg[cfg] = 1; cfgs[++nc] = cfg }
    if (!((cfg, meth) in seen_m)) { seen_m[cfg, meth] = 1; meths[cfg, ++nm[cfg]] = meth }
  }
  END {
    split("dict scripture manual code_c code_py quotes lexicon", D, " ")
    printf "### %s\n\n", model
    printf "| config | method |"; for (i = 1; i <= 7; i++) printf " %s |", D[i]; printf " OOD geomean | vs rtn | vs awq |\n"
    printf "|---|---|"; for (i = 1; i <= 7; i++) printf "---|"; printf "---|---|---|\n"
    for (c = 1; c <= nc; c++) {
      cfg = cfgs[c]
      for (k = 1; k <= nm[cfg]; k++) {
        meth = meths[cfg, k]; s = 0
        for (i = 2; i <= 7; i++) s += log(P[cfg SUBSEP meth, D[i]])
        G[cfg, meth] = exp(s / 6)
      }
      for (k = 1; k <= nm[cfg]; k++) {
        meth = meths[cfg, k]
        printf "| %s | %s |", cfg, meth
        for (i = 1; i <= 7; i++) printf " %.2f |", P[cfg SUBSEP meth, D[i]]
        printf " %.2f |", G[cfg, meth]
        if ((cfg, "rtn") in G) printf " %.3f |", G[cfg, meth] / G[cfg, "rtn"]; else printf " |"
        if ((cfg, "awq") in G) printf " %.3f |\n", G[cfg, meth] / G[cfg, "awq"]; else printf " |\n"
      }
    }
    printf "\n"
  }' "$f"
done
