#!/usr/bin/env bash
# cancel.sh -- a running generation stops within one decode step when cancelled by id (from
# another connection) or when its client disconnects; a queued one is removed at once; the
# daemon serves the next request normally.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
P="Once upon a time"
start_daemon 0 "$TMP/d.log" --threads 1 --debug-step-delay-ms 50 || exit 1

# cancel a running request by id: 400 steps of 50 ms would take 20 s
"$TTQ" generate --endpoint "$EP" --id victim-1 --json --max-tokens 400 "$P" >"$TMP/v.json" 2>"$TMP/v.err" &
vp=$!
for _ in $(seq 1 100); do grep -q '"type":"chunk"' "$TMP/v.json" 2>/dev/null && break; sleep 0.1; done
t0=$(date +%s%N)
"$TTQ" cancel --endpoint "$EP" victim-1 >"$TMP/c.out" 2>&1
crc=$?
wait $vp
vrc=$?
t1=$(date +%s%N)
check "cancel: found (exit 0)" test $crc -eq 0
check "cancel: victim exits 6 (CANCELLED)" test $vrc -eq 6
check "cancel: victim ended within 1 s of the cancel" test $(((t1 - t0) / 1000000)) -lt 1000
check "cancel: victim got an error object naming CANCELLED" grep -q '"code":"CANCELLED"' "$TMP/v.json"
steps=$(grep -c '"type":"chunk"' "$TMP/v.json")
check "cancel: stopped early ($steps of 400 tokens)" test "$steps" -lt 100
check "cancel: daemon logged the cancel" grep -q 'id=victim-1 .*outcome=CANCELLED' "$TMP/d.log"
"$TTQ" cancel --endpoint "$EP" no-such-id >/dev/null 2>&1
check "cancel unknown id: exit 1" test $? -eq 1

# cancel a queued request: it never runs
"$TTQ" generate --endpoint "$EP" --id runner --quiet --max-tokens 60 "$P" >/dev/null 2>&1 &
rp=$!
sleep 0.5
"$TTQ" generate --endpoint "$EP" --id queued-1 --quiet --max-tokens 5 "$P" >/dev/null 2>"$TMP/q.err" &
qp=$!
sleep 0.5
"$TTQ" cancel --endpoint "$EP" queued-1 >/dev/null 2>&1
check "cancel queued: found" test $? -eq 0
wait $qp
check "cancel queued: client exits 6" test $? -eq 6
check "cancel queued: removed from the queue" grep -q 'id=queued-1 outcome=CANCELLED' "$TMP/d.log"
"$TTQ" cancel --endpoint "$EP" runner >/dev/null 2>&1
wait $rp

# a client that disconnects mid-stream: its generation stops
"$TTQ" generate --endpoint "$EP" --id gone-1 --json --max-tokens 400 "$P" >"$TMP/g.json" 2>/dev/null &
gp=$!
for _ in $(seq 1 100); do grep -q '"type":"chunk"' "$TMP/g.json" 2>/dev/null && break; sleep 0.1; done
kill -KILL $gp
wait $gp 2>/dev/null
for _ in $(seq 1 100); do grep -q 'id=gone-1 ' "$TMP/d.log" && break; sleep 0.1; done
check "disconnect: generation stopped (logged within 10 s)" grep -q 'id=gone-1 .*outcome=CANCELLED' "$TMP/d.log"
gen=$(sed -n 's/.*id=gone-1 .*generated=\([0-9]*\).*/\1/p' "$TMP/d.log")
check "disconnect: far fewer than 400 tokens generated ($gen)" test "${gen:-400}" -lt 200

# the daemon goes on serving
"$TTQ" generate --endpoint "$EP" --quiet --max-tokens 3 --temperature 0 "$P" >"$TMP/after" 2>&1
check "next request served" test $? -eq 0
stop_daemon 30
check "clean exit" test "$STOP_RC" -eq 0
finish
