#!/usr/bin/env bash
# launch.sh -- deploy/ttqd-launch: the mpirun command lines it builds (1 rank without mpirun,
# N local ranks, a host file, extra arguments, refusals), and, with a stand-in daemon
# (fake-ttqd.c, compiled here with mpicc) under a real mpirun on 2 ranks: a SIGTERM to the
# launcher drains rank 0 for longer than mpirun's own 1 s kill sequence would allow and ends
# with status 0; `ttqd-launch stop` does the same from outside; a dead rank fails the launch.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
L=$TTQ_SOURCE_DIR/deploy/ttqd-launch
TMP=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT
printf 'model = /m\ngrace-ms = 4000\n' >"$TMP/ttqd.conf"
export TTQ_CONFIG=$TMP/ttqd.conf TTQD=/opt/x/ttqd
unset TTQ_RANKS TTQ_HOSTFILE TTQ_MPIRUN_ARGS NOTIFY_SOCKET || true

dry() { "$L" --dry-run "$@" | tr '\n' ' ' | sed 's/ $//'; }
check "1 rank: ttqd serve directly" test "$(dry)" = "/opt/x/ttqd serve --config $TMP/ttqd.conf"
check "extra flags after --" test "$(dry -- --threads 2)" = "/opt/x/ttqd serve --config $TMP/ttqd.conf --threads 2"
check "2 local ranks: mpirun -np 2 --bind-to none" \
  test "$(TTQ_RANKS=2 dry)" = "mpirun -np 2 --bind-to none /opt/x/ttqd serve --config $TMP/ttqd.conf"
printf '# hosts\nnode1 slots=1\nnode2 slots=1\n' >"$TMP/hosts"
got=$(TTQ_RANKS=2 TTQ_HOSTFILE=$TMP/hosts TTQ_MPIRUN_ARGS="--mca btl_tcp_if_include 10.0.0.0/24" dry)
check "host file: --hostfile, keepalive, -x, extra args, in order" test "$got" = \
  "mpirun -np 2 --bind-to none --hostfile $TMP/hosts --mca oob_tcp_keepalive_time 10 --mca oob_tcp_keepalive_intvl 5 --mca oob_tcp_keepalive_probes 3 -x OMP_WAIT_POLICY -x OMP_NUM_THREADS --mca btl_tcp_if_include 10.0.0.0/24 /opt/x/ttqd serve --config $TMP/ttqd.conf"
cp "$TMP/ttqd.conf" "$TMP/other.conf"
check "--config wins over TTQ_CONFIG" test "$(dry --config "$TMP/other.conf")" = "/opt/x/ttqd serve --config $TMP/other.conf"
fails_with "missing config file refused" 'cannot read the config file /etc/other.conf' "$L" --dry-run --config /etc/other.conf
fails_with "TTQ_RANKS=0 refused" 'not a positive number' env TTQ_RANKS=0 "$L" --dry-run
fails_with "TTQ_RANKS=abc refused" 'not a positive number' env TTQ_RANKS=abc "$L" --dry-run
fails_with "unreadable host file refused" 'cannot read TTQ_HOSTFILE' env TTQ_RANKS=2 TTQ_HOSTFILE=$TMP/none "$L" --dry-run
fails_with "unknown argument refused" 'unknown argument' "$L" --frobnicate
fails_with "under systemd the first host must be this one" 'is not this host' \
  env NOTIFY_SOCKET=/run/x TTQ_RANKS=2 TTQ_HOSTFILE=$TMP/hosts "$L" --dry-run
printf '%s slots=1\nnode2 slots=1\n' "$(hostname)" >"$TMP/hosts-local"
check "under systemd a host file starting with this host is accepted" \
  bash -c "NOTIFY_SOCKET=/run/x TTQ_RANKS=2 TTQ_HOSTFILE='$TMP/hosts-local' '$L' --dry-run >/dev/null"
check "--help names the environment" bash -c "'$L' --help | grep -q TTQ_HOSTFILE"

# --- live, under mpirun with the stand-in daemon ---
command -v mpicc >/dev/null && command -v mpirun >/dev/null || skip "mpicc/mpirun missing"
mpicc -O1 -o "$TMP/fake-ttqd" "$here/fake-ttqd.c"
export TTQD=$TMP/fake-ttqd TTQ_RANKS=2 TTQ_MPIRUN_ARGS="--oversubscribe" OMP_WAIT_POLICY=PASSIVE
[ "$(id -u)" = 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
wait_log() { # wait_log FILE PATTERN SECONDS
  local i
  for ((i = 0; i < $3 * 10; i++)); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
run_case() { # run_case NAME DRAIN-MS HOW(term|stop|kill-rank1)
  local log=$TMP/$1.log t0 t1 rc=0
  FAKE_LOG=$log FAKE_DRAIN_MS=$2 "$L" >"$TMP/$1.out" 2>&1 &
  local lp=$!
  pids+=("$lp")
  if ! wait_log "$log" 'notify READY=1\|rank 1 .*start' 20 || ! wait_log "$log" 'rank 1 .*start' 20; then
    echo "FAIL $1: the ranks did not start"; cat "$TMP/$1.out"; fails=$((fails + 1)); return
  fi
  sleep 0.8
  t0=$(date +%s%N)
  case $3 in
    term) kill -TERM "$lp" ;;
    stop) "$L" stop --timeout 20 >"$TMP/$1.stop" 2>&1 || echo "stop failed" >>"$TMP/$1.stop" ;;
    kill-rank1) pkill_pid=$(sed -n 's/^rank 1 pid \([0-9]*\).*/\1/p' "$log" | head -1); kill -KILL "$pkill_pid" ;;
  esac
  wait "$lp" || rc=$?
  t1=$(date +%s%N)
  elapsed_ms=$(((t1 - t0) / 1000000))
  last_rc=$rc
  echo "     ($1: exit $rc after ${elapsed_ms} ms)"
}
run_case term 2500 term
check "SIGTERM to the launcher: rank 0 drained (2.5 s, longer than mpirun's 2 s kill)" \
  grep -q 'rank 0 .*drained, exit 0' "$TMP/term.log"
check "  rank 1 exited cleanly too" grep -q 'rank 1 .*drained, exit 0' "$TMP/term.log"
check "  the launcher exited 0" test "$last_rc" = 0
check "  and took at least the drain time" test "$elapsed_ms" -ge 2400
check "  the launcher said it signalled rank 0" grep -q 'SIGTERM to rank 0' "$TMP/term.out"
run_case stop 1500 stop
check "ttqd-launch stop (preStop): rank 0 drained, launcher exited 0" \
  bash -c "grep -q 'rank 0 .*drained, exit 0' '$TMP/stop.log' && [ $last_rc = 0 ]"
check "  stop signalled exactly one process (rank 0, not mpirun): $(cat "$TMP/stop.stop")" grep -q "SIGTERM to [0-9]*, waiting" "$TMP/stop.stop"
run_case crash 1000 kill-rank1
check "a rank killed: the launcher fails (status $last_rc), so systemd/Kubernetes restart it" test "$last_rc" -ne 0
check "ttqd-launch stop with nothing running: exit 0" "$L" stop --timeout 1
finish
