#!/usr/bin/env bash
# faults.sh -- what a client and an operator see when a rank dies, and how fast service comes
# back under a supervisor (a bounded restart loop standing in for systemd's Restart=on-failure):
#   - SIGKILL of a worker rank mid-generation: the streaming client gets UNAVAILABLE within the
#     drain watchdog (2 s), mpirun exits non-zero, the supervisor restarts the job, and a
#     client that retries is served;
#   - SIGKILL of the coordinator (rank 0): the client sees the connection drop at once (exit 3),
#     same recovery;
#   - load faults: a missing shard file, an unreadable file, a model over the memory limit are
#     refused with the reason and exit 1, before anything is served.
# The recovery figures are printed (docs/RELIABILITY.md quotes them).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
P="Once upon a time"
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

# a free port (the supervisor restarts on the same endpoint)
for _ in $(seq 1 50); do
  PORT=$((20000 + RANDOM % 30000))
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || break
done
EP=tcp://127.0.0.1:$PORT
supervise() { # at most 4 starts; records each exit
  for i in 1 2 3 4; do
    rm -f "$TMP/rank0.pid"
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" mpirun --oversubscribe --bind-to none --mca pml ob1 --mca btl self,tcp -np 2 \
      "$TTQD" serve --model "$MODEL" --listen "$EP" --threads 1 --pid-file "$TMP/rank0.pid" \
      --debug-step-delay-ms 30 >>"$TMP/sup.out" 2>>"$TMP/sup.log" </dev/null
    echo "exit $? at $(date +%s%N)" >>"$TMP/sup.exits"
    [ -e "$TMP/stop" ] && return
    sleep 0.2
  done
}
supervise &
SUP=$!
wait_up() { for _ in $(seq 1 300); do [ -s "$TMP/rank0.pid" ] && "$TTQ" health --endpoint "$EP" --timeout 1 >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
check "supervised daemon up" wait_up

for victim in worker coordinator; do
  "$TTQ" generate --endpoint "$EP" --json --retries 0 --max-tokens 200 "$P" >"$TMP/$victim.json" 2>"$TMP/$victim.err" &
  cp=$!
  for _ in $(seq 1 100); do grep -q '"type":"chunk"' "$TMP/$victim.json" 2>/dev/null && break; sleep 0.05; done
  r0=$(cat "$TMP/rank0.pid")
  if [ $victim = worker ]; then
    pid=$(pgrep -x ttqd -P "$(pgrep -P $SUP -x mpirun)" | grep -v "^$r0$" | head -1)
  else
    pid=$r0
  fi
  exits_before=$(wc -l <"$TMP/sup.exits" 2>/dev/null || echo 0)
  t0=$(date +%s%N)
  kill -KILL "$pid"
  wait $cp
  crc=$?
  t_client=$(ms "$t0")
  check "$victim killed: streaming client exits 3 (got $crc)" test $crc -eq 3
  check "$victim killed: client told within 5 s ($t_client ms)" test "$t_client" -lt 5000
  check "$victim killed: the message says why" grep -qE "stopped responding|connection .* was lost|restarting" "$TMP/$victim.err"
  # a new request made right away rides the retries through the restart
  "$TTQ" generate --endpoint "$EP" --retries 10 --timeout 5 --max-tokens 3 --temperature 0 "$P" >"$TMP/$victim.retry" 2>"$TMP/$victim.retry.err"
  rrc=$?
  t_back=$(ms "$t0")
  check "$victim killed: a retrying client is served after the restart (exit $rrc)" test $rrc -eq 0
  check "$victim killed: mpirun exited non-zero" bash -c "[ \$(wc -l <'$TMP/sup.exits') -gt $exits_before ] && ! tail -1 '$TMP/sup.exits' | grep -q '^exit 0 '"
  echo "     figures: $victim SIGKILL -> client error ${t_client} ms, -> next request served ${t_back} ms"
done
touch "$TMP/stop"
kill -TERM "$(cat "$TMP/rank0.pid")" 2>/dev/null
wait $SUP
check "last supervised run stopped cleanly" bash -c "tail -1 '$TMP/sup.exits' | grep -q '^exit 0 '"

# load faults: refused with the reason, exit 1
mkdir "$TMP/m"
cp "$MODEL"/*.json "$TMP/m/"
cp "$MODEL"/model-00001-of-00002.safetensors "$TMP/m/"
timeout 60 "$TTQD" serve --model "$TMP/m" --listen 'tcp://127.0.0.1:*' >/dev/null 2>"$TMP/err"
rc=$?
check "missing shard: exit 1 (got $rc)" test $rc -eq 1
check "missing shard: names the file" grep -q "model-00002-of-00002.safetensors" "$TMP/err"
cp "$MODEL"/model-00002-of-00002.safetensors "$TMP/m/"
chmod 000 "$TMP/m/model-00002-of-00002.safetensors"
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
  chmod 755 "$TMP" "$TMP/m"
  timeout 60 setpriv --reuid=65534 --regid=65534 --clear-groups "$TTQD" serve --model "$TMP/m" \
    --listen 'tcp://127.0.0.1:*' >/dev/null 2>"$TMP/err"
else
  timeout 60 "$TTQD" serve --model "$TMP/m" --listen 'tcp://127.0.0.1:*' >/dev/null 2>"$TMP/err"
fi
rc=$?
check "unreadable shard: exit 1 (got $rc)" test $rc -eq 1
check "unreadable shard: names the file and the reason" grep -q "model-00002-of-00002.safetensors.*ermission" "$TMP/err"
timeout 60 "$TTQD" serve --model "$MODEL" --memory-limit-mb 32 --listen 'tcp://127.0.0.1:*' >/dev/null 2>"$TMP/err"
rc=$?
check "over the memory limit: exit 1 (got $rc)" test $rc -eq 1
check "over the memory limit: the breakdown and the limit" grep -q "needs about .* MiB .*memory limit is 32 MiB" "$TMP/err"
timeout 60 mpirun --oversubscribe --bind-to none --mca pml ob1 --mca btl self,tcp -np 2 "$TTQD" serve --model "$MODEL" \
  --memory-limit-mb 32 --listen 'tcp://127.0.0.1:*' >/dev/null 2>"$TMP/err" </dev/null
rc=$?
check "over the memory limit on 2 ranks: mpirun exits non-zero, no hang (got $rc)" bash -c "[ $rc -ne 0 ] && [ $rc -ne 124 ]"
finish
