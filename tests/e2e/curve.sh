#!/usr/bin/env bash
# curve.sh -- with CURVE keys the daemon serves an authorized client, rejects a client with an
# unknown key (exit 7, logged) and one without CURVE (no reply; the client times out with
# exit 3), and listens beyond loopback only when keys or --allow-insecure say so.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
: "${RAWCLIENT:?}"
"$TTQ" keygen --out "$TMP/server" >/dev/null
"$TTQ" keygen --out "$TMP/alice" >/dev/null
"$TTQ" keygen --out "$TMP/mallory" >/dev/null
# a comment line, then the key ('#' inside Z85 keys is common: never a comment there)
{ echo "# clients allowed in"; cat "$TMP/alice.pub"; } >"$TMP/authorized"
start_daemon 0 "$TMP/d.log" --threads 1 --curve-secret-key "$TMP/server.key" \
  --curve-authorized-keys "$TMP/authorized" || exit 1
check "log says CURVE" grep -q 'with CURVE' "$TMP/d.log"

"$TTQ" generate --endpoint "$EP" --server-key "$TMP/server.pub" --key "$TMP/alice.key" \
  --quiet --max-tokens 4 --temperature 0 "Hello" >"$TMP/a.out" 2>"$TMP/a.err"
check "authorized key: served (exit 0)" test $? -eq 0
check "authorized key: text" test -s "$TMP/a.out"
"$TTQ" health --endpoint "$EP" --server-key "$TMP/server.pub" --key "$TMP/alice.key" >/dev/null 2>&1
check "authorized key: health" test $? -eq 0


t0=$(date +%s)
"$TTQ" generate --endpoint "$EP" --server-key "$TMP/server.pub" --key "$TMP/mallory.key" \
  --timeout 5 --retries 0 --max-tokens 4 "Hello" >"$TMP/m.out" 2>"$TMP/m.err"
rc=$?
check "unknown key: exit 7 (got $rc)" test $rc -eq 7
check "unknown key: says rejected" grep -qi 'reject' "$TMP/m.err"
check "unknown key: nothing generated" test ! -s "$TMP/m.out"
check "unknown key: fast (< 6 s)" test $(($(date +%s) - t0)) -lt 6
mkey=$(sed -n 's/^public //p' "$TMP/mallory.key")
for _ in $(seq 1 50); do grep -qF "rejected a client: CURVE key $mkey" "$TMP/d.log" && break; sleep 0.1; done
check "unknown key: daemon logged the rejected key" grep -qF "rejected a client: CURVE key $mkey" "$TMP/d.log"

out=$("$RAWCLIENT" "$EP" --wait-ms 2000 health | head -1)
check "no CURVE at all: no reply ('$out')" test "$out" == "timeout"
"$TTQ" health --endpoint "$EP" --timeout 2 --retries 0 >/dev/null 2>&1
rc=$?
check "no CURVE via ttq: exit 3 or 7 (got $rc)" bash -c "[ $rc -eq 3 ] || [ $rc -eq 7 ]"
"$TTQ" health --endpoint "$EP" --server-key "$TMP/mallory.pub" --key "$TMP/alice.key" --timeout 3 --retries 0 >/dev/null 2>&1
rc=$?
check "wrong server key: refused (exit $rc)" test $rc -ne 0
stop_daemon 30
check "clean exit" test "$STOP_RC" -eq 0

# listening beyond loopback
timeout 30 "$TTQD" serve --model "$MODEL" --listen 'tcp://0.0.0.0:*' >/dev/null 2>"$TMP/err"
check "0.0.0.0 without keys: refused (exit 2)" test $? -eq 2
check "0.0.0.0 without keys: reason" grep -q 'without CURVE keys' "$TMP/err"
start_daemon 0 "$TMP/d2.log" --threads 1 --listen 'tcp://0.0.0.0:*' --curve-secret-key "$TMP/server.key" \
  --curve-authorized-keys "$TMP/authorized"
check "0.0.0.0 with keys: serving" test -n "$EP"
stop_daemon 30
timeout 30 "$TTQD" serve --model "$MODEL" --curve-secret-key "$TMP/server.key" >/dev/null 2>"$TMP/err"
check "keys without an authorized list: refused" grep -q 'curve-authorized-keys' "$TMP/err"
printf 'not-a-key\n' >"$TMP/badlist"
timeout 30 "$TTQD" serve --model "$MODEL" --listen 'tcp://127.0.0.1:*' --curve-secret-key "$TMP/server.key" \
  --curve-authorized-keys "$TMP/badlist" >/dev/null 2>"$TMP/err"
check "a malformed authorized key: refused naming file:line" grep -q 'badlist:1' "$TMP/err"
finish
