#!/usr/bin/env bash
# load.sh -- bounded load on loopback: `ttq bench` with 32 concurrent clients against a
# 2-rank daemon; every request completes or gets a typed error (bench exits 1 on any lost
# one); clients that never read their stream and clients that vanish leave the daemon healthy
# with bounded memory. Prints the figures docs/RELIABILITY.md quotes (latency percentiles,
# throughput, rank 0's RSS before and after).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
: "${RAWCLIENT:?}"
rss() { awk '/^VmRSS/ {print $2}' "/proc/$(cat "$TMP/rank0.pid")/status"; } # KiB
start_daemon 2 "$TMP/d.log" --threads 1 --queue-depth 64 --log-level 0 || exit 1
"$TTQ" generate --endpoint "$EP" --quiet --max-tokens 8 "warm up" >/dev/null 2>&1
rss0=$(rss)
"$TTQ" bench --endpoint "$EP" --clients 32 --requests 96 --duration 120 --max-tokens 8 \
  --timeout 60 --json >"$TMP/bench.json" 2>"$TMP/bench.err"
brc=$?
cat "$TMP/bench.json"
check "bench, 32 clients x 96 requests: exit 0 (nothing lost)" test $brc -eq 0
check "bench: every request accounted for" grep -q '"requests":96\|"sent":96' "$TMP/bench.json"
rss1=$(rss)
echo "     figures: rank 0 RSS before ${rss0} KiB, after 96 requests ${rss1} KiB"

# 12 clients that send a request and never read, then vanish; 12 that vanish mid-stream
pids=()
for i in $(seq 1 12); do
  RAW_MAX_TOKENS=150 "$RAWCLIENT" "$EP" --hold-ms 3000 --replies 0 "gen:slow reader $i" >/dev/null &
  pids+=($!)
done
for i in $(seq 1 12); do
  RAW_MAX_TOKENS=400 timeout 0.5 "$RAWCLIENT" "$EP" --replies 1000 --wait-ms 10000 "gen:vanishing $i" >/dev/null &
  pids+=($!)
done
wait "${pids[@]}"
for _ in $(seq 1 300); do
  "$TTQ" health --endpoint "$EP" --json 2>/dev/null | grep -q '"queue_depth":0' &&
    ! "$TTQ" health --endpoint "$EP" --json 2>/dev/null | grep -q '"running_id"' && break
  sleep 0.2
done
"$TTQ" generate --endpoint "$EP" --quiet --max-tokens 4 "after the storm" >/dev/null 2>&1
check "after 24 non-reading or vanished clients: a request is served" test $? -eq 0
rss2=$(rss)
echo "     figures: rank 0 RSS after the non-reading clients ${rss2} KiB"
check "RSS grew by less than 64 MiB over the whole run ($rss0 -> $rss2 KiB)" test $((rss2 - rss0)) -lt 65536
"$TTQ" stats --endpoint "$EP" >"$TMP/stats"
check "stats: the requests are counted" grep -qE '^ttq_requests_total\{outcome="ok"\} [1-9]' "$TMP/stats"
stop_daemon 30
check "clean exit" test "$STOP_RC" -eq 0
finish
