#!/usr/bin/env bash
# plot-decode.sh RESULTS.jsonl OUT.svg -- decode tok/s of fp and every TTQ width against bits per
# weight, next to the bandwidth roofline, from the lines docs/bench.sh writes (tag + ttqd bench
# JSON). The fastest round of each configuration is plotted (the machine is shared), with that
# run's share of its own roofline. gnuplot.
set -euo pipefail
OUT=${1:-docs/bench-results.jsonl}
SVG=${2:-docs/decode-roofline.svg}
# ---- the plot: best decode of each width against the roofline of the best bandwidth ----
command -v gnuplot > /dev/null || { echo "gnuplot not found: no plot (apt-get install gnuplot-nox)" >&2; exit 0; }
field() { grep -o "\"$1\":[^,}]*" | head -1 | cut -d: -f2; }
best() { # tag, field: the maximum over the rounds
  grep "^$1 " "$OUT" | while read -r _ j; do echo "$j" | field "$2"; done | sort -g | tail -1
}
fastest() { # tag: the JSON of its run with the highest decode tok/s
  grep "^$1 " "$OUT" | while read -r _ j; do echo "$(echo "$j" | field decode_tok_s) $j"; done |
    sort -g | tail -1 | cut -d' ' -f2-
}
bw=$(best decode-fp read_bandwidth_gb_s)
kv=$(grep "^decode-fp " "$OUT" | head -1 | cut -d' ' -f2- | field kv_bytes_per_token)
fp_bytes=$(grep "^decode-fp " "$OUT" | head -1 | cut -d' ' -f2- | field weight_bytes_per_token)
w4=$(grep "^decode-w4 " "$OUT" | head -1 | cut -d' ' -f2-)
fixed=$(( $(echo "$w4" | field weight_bytes_per_token) - $(echo "$w4" | field quant_bytes) ))
lin=$(( (fp_bytes - fixed) / 2 )) # linear-layer weights (F16: 2 bytes each)
dat=$(mktemp)
{
  echo "# bits_per_weight decode_tok_s roofline_share"
  for t in fp w8 w4 w3 w2; do
    j=$(grep "^decode-$t " "$OUT" | head -1 | cut -d' ' -f2-)
    qb=$(echo "$j" | field quant_bytes)
    bpw=$(awk -v q="$qb" -v l="$lin" 'BEGIN { printf "%.3f", (q > 0 ? q * 8 / l : 16) }')
    run=$(fastest decode-$t)
    tok=$(echo "$run" | field decode_tok_s)
    share=$(echo "$run" | field roofline_share) # the same run's (a maximum over runs could pair
    # one run's tok/s with another's bandwidth measurement)
    echo "$bpw $tok $share $(awk -v t="$t" -v s="$share" -v k="$tok" 'BEGIN { printf "%s:%.1f(%.0f%%)", t, k, 100 * s }')"
  done
} > "$dat"
# llama.cpp in the same rounds (bench.sh PEER=1): its best tg tok/s per weights type; bits per
# weight of its formats (Q8_0: 8 + 16/32, Q4_0: 4 + 16/32; its Q4_0 file keeps the head in Q6_K).
# Ours count the output head with the linear layers (quantized to 8 bits by default): W4 4.84.
peer=$(mktemp)
for w in F16:16 Q8_0:8.5 Q4_0:4.5; do
  tok=$(grep "^peer " "$OUT" | grep "\"weights\":\"${w%%:*}\"" | grep '"test":"tg' |
    while read -r _ j; do echo "$j" | field tok_s_median; done | sort -g | tail -1)
  [ -n "$tok" ] && echo "${w#*:} $tok ${w%%:*}:$tok" >> "$peer"
done
peer_plot=""
[ -s "$peer" ] && peer_plot=", \"$peer\" using 1:2 with points pt 5 ps 1.2 lc rgb \"#d07020\" title \"llama.cpp, same rounds\", \"$peer\" using 1:2:3 with labels offset 0,-1.2 notitle"
gnuplot <<EOF
set terminal svg size 720,440 font "sans,12" noenhanced
set output "$SVG"
set title "ttq decode, 738M shape, 2 threads: tok/s against bits per weight (read bandwidth $bw GB/s)"
set xlabel "bits per weight streamed: linear layers and output head (codes + fp16 scale, int8 zero per 32)"
set ylabel "decode tok/s"
set grid
roof(b) = $bw * 1e9 / ($fixed + $kv + $lin * b / 8.0)
set key top right
set xrange [1:17]
set yrange [0:roof(2.5)]
set offsets 0, 0, 0, 0
plot roof(x) with lines lw 2 lc rgb "#888888" title "roofline: bandwidth / bytes read per token", \
     0.85 * roof(x) with lines lw 1 lc rgb "#e08080" title "85% of the roofline (the target)", \
     "$dat" using 1:2 with linespoints pt 7 ps 1.2 lc rgb "#1f6fb4" title "ttq (fp = F16 checkpoint)", \
     "$dat" using 1:2:4 with labels offset 0,1.2 notitle $peer_plot
EOF
rm -f "$dat" "$peer"
echo "wrote $SVG" >&2
