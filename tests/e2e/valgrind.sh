#!/usr/bin/env bash
# valgrind.sh -- a short daemon run under valgrind's memcheck: generations (ttq and fp, raw
# prompt and chat), health, stats, a cancel, malformed frames, then SIGTERM. Passes only with
# zero memcheck errors and zero bytes definitely or indirectly lost. (valgrind 3.19 has no
# AVX-512: the run uses the AVX2 kernels, TTQ_ISA=avx2, and OpenBLAS's Haswell kernels.)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
: "${RAWCLIENT:?}"
command -v valgrind >/dev/null || { echo "SKIPPED: valgrind not installed"; exit 77; }
for _ in $(seq 1 50); do
  PORT=$((20000 + RANDOM % 30000))
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || break
done
EP=tcp://127.0.0.1:$PORT
TTQ_ISA=avx2 OPENBLAS_CORETYPE=Haswell OMP_NUM_THREADS=1 \
  valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=9 \
  --log-file="$TMP/vg.log" "$TTQD" serve --model "$MODEL" --listen "$EP" --threads 1 \
  --pid-file "$TMP/rank0.pid" >/dev/null 2>"$TMP/d.log" &
DAEMON_PID=$!
# (bounded below ctest's 600 s, so that a daemon that never serves is reported with its logs)
for _ in $(seq 1 600); do
  "$TTQ" health --endpoint "$EP" --timeout 1 >/dev/null 2>&1 && break
  kill -0 "$DAEMON_PID" 2>/dev/null || break
  [ "$SECONDS" -lt 400 ] || break
  sleep 0.2
done
check "daemon under valgrind serving" "$TTQ" health --endpoint "$EP" --timeout 5
if [ "$fails" -ne 0 ]; then # the rest would only wait on it
  echo "daemon stderr:" && sed 's/^/     /' "$TMP/d.log"
  echo "valgrind log (last 40 lines):" && tail -40 "$TMP/vg.log" | sed 's/^/     /'
  finish
fi
"$TTQ" generate --endpoint "$EP" --quiet --max-tokens 8 --quant ttq "Hello" >"$TMP/g1" 2>&1
check "ttq generation" test $? -eq 0
"$TTQ" generate --endpoint "$EP" --quiet --max-tokens 8 --quant fp --stop "." "Hello" >"$TMP/g2" 2>&1
check "fp generation with a stop string" test $? -eq 0
printf 'Hi there\n' | "$TTQ" chat --endpoint "$EP" --max-tokens 6 >/dev/null 2>&1
check "chat turn" test $? -eq 0
"$TTQ" generate --endpoint "$EP" --quiet --max-tokens 8 --quant ttq --group 48 "x" >/dev/null 2>&1
check "refused setting (exit 4)" test $? -eq 4
"$TTQ" cancel --endpoint "$EP" nothing-here >/dev/null 2>&1
check "cancel of an unknown id (exit 1)" test $? -eq 1
"$RAWCLIENT" "$EP" hex:ffffff >/dev/null
"$RAWCLIENT" "$EP" health health >/dev/null
"$RAWCLIENT" "$EP" hex:3a0100 >/dev/null
"$TTQ" stats --endpoint "$EP" >"$TMP/stats"
check "stats" grep -q '^ttq_bad_frames_total 3' "$TMP/stats"
kill -TERM "$(cat "$TMP/rank0.pid")"
wait "$DAEMON_PID"
rc=$?
DAEMON_PID=""
check "exit 0 after SIGTERM, no memcheck error (valgrind rc $rc)" test $rc -eq 0
grep -E "definitely lost|indirectly lost|ERROR SUMMARY" "$TMP/vg.log" | sed 's/^/     /'
check "0 bytes definitely lost" grep -q "definitely lost: 0 bytes" "$TMP/vg.log"
check "0 errors" grep -q "ERROR SUMMARY: 0 errors" "$TMP/vg.log"
finish
