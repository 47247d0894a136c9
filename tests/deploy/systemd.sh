#!/usr/bin/env bash
# systemd.sh -- the systemd unit as installed (cmake --install into a temporary prefix):
# `systemd-analyze verify` must print nothing (it exits 0 on mere warnings, so any output
# fails), the directives the deployment relies on are present, `systemd-analyze security
# --offline=true` rates its exposure (recorded; must stay <= 2.5), and broken copies (bad
# Type=, misspelt hardening key, missing program) must each draw a complaint.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
command -v systemd-analyze >/dev/null || skip "systemd-analyze missing (Debian package systemd)"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cmake --install "$TTQ_BINARY_DIR" --prefix "$TMP/p" >"$TMP/install.log" 2>&1 ||
  { cat "$TMP/install.log"; echo "FAIL cmake --install"; exit 1; }
U=$TMP/p/lib/systemd/system/ttqd.service
check "the unit is installed" test -f "$U"
check "ExecStart names the installed launcher" grep -qx "ExecStart=$TMP/p/bin/ttqd-launch --config $TMP/p/etc/ttq/ttqd.conf" "$U"
check "EnvironmentFile is the installed ttqd.env" grep -qx "EnvironmentFile=-$TMP/p/etc/ttq/ttqd.env" "$U"
out=$(systemd-analyze verify "$U" 2>&1) && rc=0 || rc=$?
check "systemd-analyze verify: exit 0 and silent${out:+: $out}" test $rc = 0 -a -z "$out"
for d in Type=notify NotifyAccess=all Restart=on-failure StartLimitBurst=5 StartLimitIntervalSec=600 \
  User=ttq Group=ttq KillMode=mixed NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes \
  PrivateTmp=yes PrivateDevices=yes StateDirectory=ttq RuntimeDirectory=ttq 'CapabilityBoundingSet=' \
  WantedBy=multi-user.target; do
  check "directive $d" grep -qx "$d" "$U"
done
# the stop timeout must exceed the example config's drain period
grace=$(sed -n 's/^grace-ms *= *\([0-9]*\).*/\1/p' "$TMP/p/etc/ttq/ttqd.conf")
stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)$/\1/p' "$U")
check "TimeoutStopSec ($stop s) > grace-ms ($grace ms) + 10 s" test "$stop" -gt $((grace / 1000 + 10))
if systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
  sec=$(systemd-analyze security --offline=true "$U" 2>&1 | sed -n 's/.*Overall exposure level for ttqd.service: \([0-9.]*\).*/\1/p')
  echo "     systemd-analyze security --offline=true: exposure $sec (0 = best, 10 = worst)"
  check "exposure $sec <= 2.5" awk -v s="${sec:-99}" 'BEGIN { exit !(s <= 2.5) }'
else
  echo "note: this systemd-analyze has no --offline; exposure not rated"
fi

# broken copies: each must produce a complaint naming the problem
broken() { # broken NAME SED-EXPR PATTERN
  mkdir -p "$TMP/b"
  sed -e "$2" "$U" >"$TMP/b/ttqd.service"
  fails_with "verify complains: $1" "$3" bash -c "out=\$(systemd-analyze verify '$TMP/b/ttqd.service' 2>&1); echo \"\$out\"; [ -z \"\$out\" ]"
}
broken "Type=notfy" 's/^Type=notify/Type=notfy/' 'Failed to parse service type'
broken "misspelt NoNewPrivilege" 's/^NoNewPrivileges=yes/NoNewPrivilege=yes/' "Unknown key 'NoNewPrivilege'"
broken "missing program" "s|^ExecStart=$TMP/p/bin/|ExecStart=/nonexistent/|" 'is not executable'
broken "relative ExecStart" "s|^ExecStart=$TMP/p/bin/|ExecStart=|" 'ExecStart|executable|absolute'
finish
