#!/usr/bin/env bash
# frames.sh -- malformed, truncated, oversized and unknown frames get a typed error and the
# daemon answers the next request; a frame beyond the transport cap is dropped without harm.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
: "${RAWCLIENT:?}"
start_daemon 0 "$TMP/d.log" --threads 1 --max-message-bytes 65536 || exit 1
raw() { "$RAWCLIENT" "$EP" --wait-ms 5000 "$@"; }
frame() { # frame NAME EXPECTED-LINE-PATTERN SPEC...
  local name=$1 pat=$2
  shift 2
  out=$(raw "$@" | head -1)
  check "$name: '$out'" bash -c "grep -qE -- '$pat' <<<'$out'"
  check "$name: next request answered" bash -c "\"$RAWCLIENT\" '$EP' health | grep -q 'state=serving'"
}
frame "garbage bytes" '^error INVALID_ARGUMENT malformed' hex:ffffffffff
frame "truncated protobuf (length past the end)" '^error INVALID_ARGUMENT malformed' hex:12ff01
frame "truncated varint" '^error INVALID_ARGUMENT malformed' hex:0a
frame "empty frame" '^error INVALID_ARGUMENT empty request' hex:
frame "unknown message type" '^error INVALID_ARGUMENT unknown request kind \(field 7\)' hex:3a0100
frame "two frames" '^error INVALID_ARGUMENT expected one frame' health health
frame "three frames" '^error INVALID_ARGUMENT expected one frame' hex:00 hex:00 health
frame "REQ-style envelope" '^health state=serving' hex: health
frame "oversized (100 KB > 64 KiB)" '^error RESOURCE_EXHAUSTED request of 100000 bytes' zeros:100000
frame "wrong wire type for request_id" '^error INVALID_ARGUMENT malformed' hex:08011a00
# generate {prompt "x", quant {head_bits 6}}: a setting out of its set, refused by name
frame "quant.head_bits 6" '^error INVALID_ARGUMENT quant.head_bits: 6 is not one of' hex:12070a01784a023806
# bad request id
printf '\x0a\x03a b\x22\x00' >"$TMP/badid"
frame "request id with a space" '^error INVALID_ARGUMENT request_id' "file:$TMP/badid"
# beyond the transport cap ZeroMQ closes the connection: no reply, daemon unharmed
out=$(raw --wait-ms 2000 zeros:400000 | head -1)
check "beyond the cap: no reply ('$out')" test "$out" == "timeout"
check "beyond the cap: daemon serves" bash -c "\"$RAWCLIENT\" '$EP' health | grep -q 'state=serving'"
# 200 random frames in a row, then a real request
for i in $(seq 1 200); do
  h=$(head -c $((RANDOM % 64 + 1)) /dev/urandom | od -An -tx1 | tr -d ' \n')
  "$RAWCLIENT" "$EP" --wait-ms 2000 "hex:$h" >>"$TMP/rand.out"
done
check "200 random frames: 200 replies, none lost" test "$(grep -vc '^timeout' "$TMP/rand.out")" -eq 200
out=$(raw --replies 5 "gen:Hello there" | tail -1)
check "generation after the noise: '$out'" bash -c "grep -q '^done' <<<'$out'"
check "bad frames counted in the stats" bash -c "\"$TTQ\" stats --endpoint '$EP' | grep -qE '^ttq_bad_frames_total [1-9]'"
stop_daemon 30
check "clean exit" test "$STOP_RC" -eq 0
finish
