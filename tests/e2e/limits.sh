#!/usr/bin/env bash
# limits.sh -- every limit gets a typed error reply naming the limit, and the daemon keeps
# serving: prompt tokens, generated tokens, message size, deadline, bad settings; invalid
# daemon settings are refused at startup with the reason.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
P="In the beginning"
start_daemon 0 "$TMP/d.log" --threads 1 --max-prompt-tokens 16 --max-tokens 8 \
  --default-max-tokens 4 --max-message-bytes 4096 --deadline-ms 60000 || exit 1

expect() { # expect NAME EXIT GREP-PATTERN ttq-args...
  local name=$1 want=$2 pat=$3
  shift 3
  "$TTQ" "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  check "$name: exit $want (got $rc)" test $rc -eq "$want"
  check "$name: message" grep -q -- "$pat" "$TMP/err"
  "$TTQ" health --endpoint "$EP" >/dev/null 2>&1
  check "$name: daemon still serving" test $? -eq 0
}
long=$(printf 'word %.0s' $(seq 1 40))
expect "prompt tokens" 5 "limit is 16" generate --endpoint "$EP" "$long"
expect "max tokens" 5 "max-tokens = 8" generate --endpoint "$EP" --max-tokens 9 "$P"
big=$(head -c 6000 /dev/zero | tr '\0' 'a')
expect "message size" 5 "max-message-bytes = 4096" generate --endpoint "$EP" "$big"
expect "bad group" 4 "group" generate --endpoint "$EP" --quant ttq --group 48 "$P"
expect "chat on a prompt-only path: both given is impossible from the CLI; bad top-k" 4 "top_k" \
  generate --endpoint "$EP" --top-k 999999 "$P"
"$TTQ" generate --endpoint "$EP" --json "$P" >"$TMP/def" 2>/dev/null
check "default-max-tokens applies (4 generated)" grep -q '"generated_tokens":4' "$TMP/def"
stop_daemon 30

# deadline: 40 steps of 100 ms cannot finish in 1 s
start_daemon 0 "$TMP/d2.log" --threads 1 --deadline-ms 1000 --debug-step-delay-ms 100 || exit 1
t0=$(date +%s%N)
"$TTQ" generate --endpoint "$EP" --max-tokens 40 "$P" >/dev/null 2>"$TMP/err"
rc=$?
t1=$(date +%s%N)
check "deadline: exit 6 (CANCELLED)" test $rc -eq 6
check "deadline: message" grep -q "deadline exceeded" "$TMP/err"
check "deadline: ended within 2.5 s" test $(((t1 - t0) / 1000000)) -lt 2500
"$TTQ" generate --endpoint "$EP" --max-tokens 3 --deadline-ms 50 "$P" >/dev/null 2>"$TMP/err"
check "request deadline_ms shortens the daemon's: exit 6" test $? -eq 6
stop_daemon 30

# settings refused at startup, with the reason, exit 2
bad() { # bad NAME PATTERN args...
  local name=$1 pat=$2
  shift 2
  timeout 60 "$TTQD" serve --model "$MODEL" "$@" >/dev/null 2>"$TMP/err"
  local rc=$?
  check "startup refuses $name (exit $rc)" test $rc -eq 2
  check "startup refuses $name: reason" grep -q -- "$pat" "$TMP/err"
}
bad "a non-loopback listen without keys" "without CURVE" --listen tcp://0.0.0.0:5999
bad "an unknown flag" "usage" --frobnicate 1
bad "queue-depth 0" "queue-depth" --queue-depth 0
bad "kv-cache f8" "kv-cache" --kv-cache f8
bad "default above max" "default-max-tokens" --max-tokens 4 --default-max-tokens 8
printf 'threads = 1\nlisten = tcp://127.0.0.1:*\nbogus = 3\n' >"$TMP/bad.conf"
bad "an unknown config setting (file:line)" "bad.conf:3: unknown setting 'bogus'" --config "$TMP/bad.conf"
printf 'threads = many\n' >"$TMP/bad2.conf"
bad "a bad config value" "bad2.conf:1: threads" --config "$TMP/bad2.conf"
timeout 60 "$TTQD" serve --model "$TMP/missing" --listen 'tcp://127.0.0.1:*' >/dev/null 2>"$TMP/err"
check "startup refuses a missing model: exit 1" test $? -eq 1
check "startup refuses a missing model: names it" grep -q "$TMP/missing" "$TMP/err"
finish
