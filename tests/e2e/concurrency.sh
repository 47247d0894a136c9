#!/usr/bin/env bash
# concurrency.sh -- 8 concurrent clients are all served, each with exactly the text a lone
# request gets; a full queue refuses at once with RESOURCE_EXHAUSTED (exit 5) while the
# requests it accepted complete; nothing is lost (every client ends with done or an error).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
P="The quick brown fox"

start_daemon 0 "$TMP/d.log" --threads 1 || exit 1
for i in 1 2 3 4 5 6 7 8; do
  "$TTQ" generate --endpoint "$EP" --quiet --max-tokens 24 --temperature 0.9 --seed "$i" "$P $i" \
    >"$TMP/alone.$i" 2>/dev/null
done
pids=()
for i in 1 2 3 4 5 6 7 8; do
  "$TTQ" generate --endpoint "$EP" --quiet --max-tokens 24 --temperature 0.9 --seed "$i" "$P $i" \
    >"$TMP/conc.$i" 2>"$TMP/conc.$i.err" &
  pids+=($!)
done
ok=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" && ok=$((ok + 1))
done
check "8 concurrent clients: all exit 0 ($ok/8)" test $ok -eq 8
same=0
for i in 1 2 3 4 5 6 7 8; do cmp -s "$TMP/alone.$i" "$TMP/conc.$i" && same=$((same + 1)); done
check "8 concurrent clients: each got its own text ($same/8)" test $same -eq 8
check "daemon logged 16 ok requests" test "$(grep -c 'outcome=ok' "$TMP/d.log")" -eq 16
stop_daemon 30

# queue of 2 and slow steps: of 8 simultaneous requests, 1 runs, 2 wait, 5 are refused at once
start_daemon 0 "$TMP/q.log" --threads 1 --queue-depth 2 --debug-step-delay-ms 40 || exit 1
pids=()
for i in 1 2 3 4 5 6 7 8; do
  "$TTQ" generate --endpoint "$EP" --quiet --retries 0 --max-tokens 10 --temperature 0 "$P" \
    >"$TMP/q.$i" 2>"$TMP/q.$i.err" &
  pids+=($!)
done
n0=0 n5=0 other=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}"
  case $? in 0) n0=$((n0 + 1)) ;; 5) n5=$((n5 + 1)) ;; *) other=$((other + 1)) ;; esac
done
check "queue full: some refused with exit 5 ($n5)" test $n5 -ge 1
check "queue full: at least 3 served ($n0)" test $n0 -ge 3
check "queue full: nothing else (lost, timed out: $other)" test $other -eq 0
check "queue full: the refusal names the queue" bash -c "cat '$TMP'/q.*.err | grep -q 'queue full'"
check "queue full: daemon logged RESOURCE_EXHAUSTED" grep -q 'outcome=RESOURCE_EXHAUSTED' "$TMP/q.log"
"$TTQ" health --endpoint "$EP" >/dev/null
check "queue full: daemon still healthy" test $? -eq 0
stop_daemon 30
check "clean exit" test "$STOP_RC" -eq 0
finish
