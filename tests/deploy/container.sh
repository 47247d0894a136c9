#!/usr/bin/env bash
# container.sh -- deploy/container/Containerfile checked offline (no container engine here):
# two Dockerfile linters from npm (dockerfilelint: best practices; dockerfile-utils: syntax,
# flags, instruction arguments) must find nothing, and the image rules are checked directly:
# Debian 12 slim in every stage, multi-stage, the final stage installs no -dev package and no
# compiler, cleans the apt lists, runs as a numeric non-root user, copies only from the build
# stage. A deliberately broken file must be rejected by each linter and by the rules.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
npm_setup
BIN=$NODE_MODULES/.bin
CF=$TTQ_SOURCE_DIR/deploy/container/Containerfile
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

lint1() { "$BIN/dockerfilelint" "$1"; }
lint2() { "$BIN/dockerfile-utils" lint "$1"; }
# rules FILE: prints each violated rule, fails if any
rules() {
  local f=$1 bad=0 final
  final=$(awk '/^FROM /{buf=""} {buf=buf $0 "\n"} END {printf "%s", buf}' "$f") # last stage
  [ "$(grep -c '^FROM ' "$f")" -ge 2 ] || { echo "rule: not multi-stage"; bad=1; }
  grep '^FROM ' "$f" | grep -vqE '^FROM debian:(12|bookworm)(\.[0-9]+)?-slim( AS [a-z]+)?$' &&
    { echo "rule: a stage is not FROM debian:12-slim"; bad=1; }
  grep -qE -- '-dev( |$)|\bgcc\b|\bcmake\b|build-essential' <<<"$final" && { echo "rule: build packages in the final stage"; bad=1; }
  grep -q 'apt-get install' <<<"$final" && ! grep -q -- '--no-install-recommends' <<<"$final" &&
    { echo "rule: final stage apt-get install without --no-install-recommends"; bad=1; }
  grep -q 'apt-get update' <<<"$final" && ! grep -q 'rm -rf /var/lib/apt/lists' <<<"$final" &&
    { echo "rule: apt lists left in the final stage"; bad=1; }
  local user
  user=$(grep '^USER ' <<<"$final" | tail -1 | awk '{print $2}')
  case "$user" in
    ''|root|0|0:*) echo "rule: the final stage does not switch to a non-root user"; bad=1 ;;
    *[!0-9:]*) echo "rule: USER must be numeric (Kubernetes runAsNonRoot checks uids)"; bad=1 ;;
  esac
  grep -qE '^ENTRYPOINT \[' <<<"$final" || { echo "rule: ENTRYPOINT not in exec form"; bad=1; }
  return $bad
}
check "dockerfilelint: no issues" lint1 "$CF"
check "dockerfile-utils lint: no problems" lint2 "$CF"
if out=$(rules "$CF"); then echo "ok   image rules"; else echo "FAIL image rules: $out"; fails=$((fails + 1)); fi
check "the final stage installs the CPack package built in stage 1" grep -q 'apt-get install -y --no-install-recommends /tmp/ttq.deb' "$CF"
check "every COPY --from names the build stage" bash -c "! grep -E '^COPY --from=' '$CF' | grep -v -- '--from=build '"
check "the copied ssh_config exists" test -f "$TTQ_SOURCE_DIR/deploy/container/ssh_config"
check "USER matches the manifests' runAsUser 10001" grep -qx 'USER 10001:10001' "$CF"

cat >"$TMP/Containerfile" <<'BAD'
FROM debian
RUN apt-get update && apt-get install -y gcc libzmq3-dev
COPY --frm=build /a /b
EXPOSE 5555/xyz
USER root
CMD ttqd-launch
BAD
fails_with "dockerfilelint rejects the broken file" 'Base Image Missing Tag|Invalid Port' lint1 "$TMP/Containerfile"
fails_with "dockerfile-utils rejects the broken file" 'Unknown flag: frm|Invalid proto' lint2 "$TMP/Containerfile"
fails_with "the rules reject the broken file" 'not multi-stage' rules "$TMP/Containerfile"
sed 's/^USER 10001:10001$/USER root/' "$CF" >"$TMP/root"
fails_with "the rules reject USER root" 'non-root user' rules "$TMP/root"
sed 's|/tmp/ttq.deb openssh-server|/tmp/ttq.deb libzmq3-dev openssh-server|' "$CF" >"$TMP/dev"
fails_with "the rules reject a -dev package in the final stage" 'build packages in the final stage' rules "$TMP/dev"
sed 's|^FROM debian:12-slim$|FROM ubuntu:24.04|' "$CF" >"$TMP/ubuntu"
fails_with "the rules reject another base" 'not FROM debian:12-slim' rules "$TMP/ubuntu"
echo "note: the image was not built (no container engine here): docs/OPERATIONS.md"
finish
