#!/usr/bin/env bash
# demo.sh -- `make demo`: a 2-rank ttqd daemon on the bundled model, a streamed generation
# through the ttq client (quantized for the prompt with TTQ, then full precision for
# comparison), the daemon's figures, and a clean SIGTERM stop. Every wait is bounded.
set -euo pipefail
BUILD=${BUILD:-build}
MODEL=${MODEL:-models/tinyqwen3-mix}
PROMPT=${PROMPT:-In the beginning God created}
RANKS=${RANKS:-2}
TTQD=$BUILD/ttqd
TTQ=$BUILD/ttq
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
LOG=$BUILD/demo-ttqd.log
PIDF=$BUILD/demo-ttqd.pid
rm -f "$PIDF"

echo "== starting: mpirun -np $RANKS ttqd serve --model $MODEL --listen 'tcp://127.0.0.1:*' (log: $LOG)"
mpirun --oversubscribe --bind-to none --mca pml ob1 --mca btl self,tcp -np "$RANKS" \
  "$TTQD" serve --model "$MODEL" --listen 'tcp://127.0.0.1:*' --threads 1 --pid-file "$PIDF" \
  >"$LOG.out" 2>"$LOG" </dev/null &
JOB=$!
trap 'kill -KILL $JOB 2>/dev/null || true' EXIT
EP=""
for _ in $(seq 1 600); do
  EP=$(sed -n 's/^ttqd: serving [^ ]* on \(tcp:\/\/[0-9.]*:[0-9]*\).*/\1/p' "$LOG" | head -1)
  [ -n "$EP" ] && [ -s "$PIDF" ] && break
  kill -0 $JOB 2>/dev/null || { cat "$LOG"; exit 1; }
  sleep 0.1
done
[ -n "$EP" ] || { echo "the daemon did not start within 60 s"; cat "$LOG"; exit 1; }
head -1 "$LOG"
echo
echo "== ttq health --endpoint $EP"
"$TTQ" health --endpoint "$EP"
echo
echo "== ttq generate --endpoint $EP --max-tokens 48 --temperature 0 --quant ttq --bits 4 \"$PROMPT\""
"$TTQ" generate --endpoint "$EP" --max-tokens 48 --temperature 0 --quant ttq --bits 4 "$PROMPT"
echo
echo "== the same prompt in full precision (--quant fp)"
"$TTQ" generate --endpoint "$EP" --max-tokens 48 --temperature 0 --quant fp "$PROMPT"
echo
echo "== ttq stats (excerpt)"
"$TTQ" stats --endpoint "$EP" | grep -E '^ttq_(requests_total|generated_tokens_total|time_to_first_token_seconds_(sum|count)|ranks)' || true
echo
echo "== stopping: SIGTERM to rank 0 (pid $(cat "$PIDF"))"
kill -TERM "$(cat "$PIDF")"
for _ in $(seq 1 300); do kill -0 $JOB 2>/dev/null || break; sleep 0.1; done
wait $JOB && echo "daemon exited 0" || { echo "daemon exit code $?"; exit 1; }
trap - EXIT
echo
echo "== the daemon's log"
cat "$LOG"
