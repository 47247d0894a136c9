#!/usr/bin/env bash
# lib.sh -- shared pieces of the end-to-end service tests (sourced, not run): start ttqd serve
# on an ephemeral loopback port (optionally under mpirun with N ranks), wait for it to be
# ready, stop it with SIGTERM to rank 0, and the ok/FAIL bookkeeping.
# Every wait is bounded; a daemon left behind is killed by the EXIT trap.
: "${TTQD:?}" "${TTQ:?}" "${TTQ_SOURCE_DIR:?}"
MODEL="$TTQ_SOURCE_DIR/models/tinyqwen3-mix"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
TMP=$(mktemp -d)
fails=0
DAEMON_PID=""

check() { # check NAME COMMAND...: runs the command, reports ok/FAIL
  local name=$1
  shift
  if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}

cleanup() {
  if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
    kill -KILL "$DAEMON_PID" 2>/dev/null
    pkill -KILL -P "$DAEMON_PID" 2>/dev/null
  fi
  [ -f "$TMP/rank0.pid" ] && kill -KILL "$(cat "$TMP/rank0.pid")" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT

# start_daemon RANKS LOG [SETTING...]: starts ttqd serve on tcp://127.0.0.1:* and sets EP to the
# endpoint it bound. Fails (returns 1) when it is not serving within 60 s.
start_daemon() {
  local ranks=$1 log=$2
  shift 2
  rm -f "$TMP/rank0.pid"
  if [ "$ranks" -eq 0 ]; then
    "$TTQD" serve --model "$MODEL" --listen 'tcp://127.0.0.1:*' --pid-file "$TMP/rank0.pid" "$@" \
      >"$log.out" 2>"$log" &
  else
    # (under ASan, LeakSanitizer would report Open MPI's own allocations at exit: leaks are
    # checked by the one-rank runs)
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
      mpirun --oversubscribe --bind-to none --mca pml ob1 --mca btl self,tcp -np "$ranks" \
      "$TTQD" serve --model "$MODEL" --listen 'tcp://127.0.0.1:*' --pid-file "$TMP/rank0.pid" "$@" \
      >"$log.out" 2>"$log" &
  fi
  DAEMON_PID=$!
  for _ in $(seq 1 600); do
    EP=$(sed -n 's/^ttqd: serving [^ ]* on \(tcp:\/\/[0-9.]*:[0-9]*\).*/\1/p' "$log" | head -1)
    [ -n "$EP" ] && [ -s "$TMP/rank0.pid" ] && return 0
    kill -0 "$DAEMON_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "daemon did not start; its log:" >&2
  cat "$log" >&2
  return 1
}

# stop_daemon [TIMEOUT_S]: SIGTERM to rank 0, waits for the whole job; sets STOP_RC.
stop_daemon() {
  local t=${1:-30}
  kill -TERM "$(cat "$TMP/rank0.pid")" 2>/dev/null
  for _ in $(seq 1 $((t * 10))); do
    kill -0 "$DAEMON_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$DAEMON_PID" 2>/dev/null; then
    echo "daemon still running ${t}s after SIGTERM" >&2
    STOP_RC=124
    return 1
  fi
  wait "$DAEMON_PID"
  STOP_RC=$?
  DAEMON_PID=""
  return 0
}

finish() {
  if [ "$fails" -ne 0 ]; then
    echo "$fails check(s) failed"
    exit 1
  fi
  echo "all checks passed"
  exit 0
}
