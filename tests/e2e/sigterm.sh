#!/usr/bin/env bash
# sigterm.sh -- SIGTERM to rank 0: new requests get UNAVAILABLE, the running one finishes
# within the grace period, every rank exits 0 and the pid file is gone; with the grace over,
# the running request gets UNAVAILABLE within one step. On one rank and on two.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
P="Once upon a time"
for ranks in 0 2; do
  tag="ranks=${ranks/#0/1}"
  start_daemon "$ranks" "$TMP/d$ranks.log" --threads 1 --debug-step-delay-ms 40 --grace-ms 20000 || exit 1
  "$TTQ" generate --endpoint "$EP" --json --max-tokens 30 --temperature 0 "$P" >"$TMP/r.json" 2>/dev/null &
  rp=$!
  for _ in $(seq 1 100); do grep -q '"type":"chunk"' "$TMP/r.json" 2>/dev/null && break; sleep 0.1; done
  kill -TERM "$(cat "$TMP/rank0.pid")"
  sleep 0.3
  "$TTQ" generate --endpoint "$EP" --retries 0 --max-tokens 2 "$P" >/dev/null 2>"$TMP/new.err"
  check "$tag draining: new request exit 3 (UNAVAILABLE)" test $? -eq 3
  check "$tag draining: says shutting down" grep -q 'shutting down' "$TMP/new.err"
  "$TTQ" health --endpoint "$EP" --json >"$TMP/h" 2>/dev/null
  check "$tag draining: health says draining (exit 3)" bash -c "[ $? -eq 3 ] && grep -q draining '$TMP/h'"
  wait $rp
  check "$tag in-flight request finished (exit 0)" test $? -eq 0
  check "$tag in-flight request: all 30 tokens" grep -q '"generated_tokens":30' "$TMP/r.json"
  stop_daemon 30
  check "$tag exit 0 after drain" test "$STOP_RC" -eq 0
  check "$tag pid file removed" test ! -e "$TMP/rank0.pid"

  # grace over: the running request is ended with UNAVAILABLE
  start_daemon "$ranks" "$TMP/e$ranks.log" --threads 1 --debug-step-delay-ms 100 --grace-ms 500 || exit 1
  "$TTQ" generate --endpoint "$EP" --retries 0 --max-tokens 200 "$P" >/dev/null 2>"$TMP/long.err" &
  lp=$!
  sleep 1
  t0=$(date +%s%N)
  stop_daemon 30
  wait $lp
  lrc=$?
  t1=$(date +%s%N)
  check "$tag grace over: running request exit 3 (UNAVAILABLE)" test $lrc -eq 3
  check "$tag grace over: exit 0" test "$STOP_RC" -eq 0
  check "$tag grace over: stopped within 3 s" test $(((t1 - t0) / 1000000)) -lt 3000
done
finish
