#!/usr/bin/env bash
# deps.sh -- installs the Debian 12 packages ttq needs to build and test (`make deps`).
# Does nothing when all are present; uses sudo when not root.
set -euo pipefail

PACKAGES=(
  gcc g++ make libc6-dev cmake pkg-config
  libopenmpi-dev openmpi-bin
  libzmq3-dev
  libprotobuf-c-dev protobuf-c-compiler
  libopenblas-dev liblapacke-dev
  libpcre2-dev libjansson-dev zlib1g-dev
)
# Further packages by purpose (fuzzing, deployment checks): one name per line in
# deploy/deps.d/*.list, '#' starts a comment. Lists given as arguments are added too (e.g.
# deploy/deps.d/optional/bench.list for `make bench`, which the tests do not need).
here=$(cd "$(dirname "$0")" && pwd)
for list in "$here"/deps.d/*.list "$@"; do
  [ -e "$list" ] || continue
  while read -r p _; do
    case "$p" in ''|'#'*) continue ;; esac
    PACKAGES+=("$p")
  done <"$list"
done

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then
    SUDO="sudo"
  else
    echo "deps: missing packages (${missing[*]}) and not root, and sudo is not installed" >&2
    exit 1
  fi
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
