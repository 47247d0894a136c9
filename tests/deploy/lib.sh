#!/usr/bin/env bash
# lib.sh -- shared pieces of the deployment tests (sourced): check/skip reporting and the
# npm packages of npm/package-lock.json, installed with `npm ci` into the build tree once.
: "${TTQ_SOURCE_DIR:?}" "${TTQ_BINARY_DIR:?}"
fails=0
check() { # check NAME COMMAND... : runs COMMAND, prints ok/FAIL NAME
  local name=$1
  shift
  if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}
fails_with() { # fails_with NAME PATTERN COMMAND... : COMMAND must fail and print PATTERN
  local name=$1 pattern=$2 out rc
  shift 2
  out=$("$@" 2>&1) && rc=0 || rc=$?
  if [ $rc -ne 0 ] && grep -qE -- "$pattern" <<<"$out"; then
    echo "ok   $name"
  else
    echo "FAIL $name (exit $rc, wanted /$pattern/):"
    sed 's/^/     /' <<<"$out" | head -20
    fails=$((fails + 1))
  fi
}
skip() { echo "SKIP: $*"; exit 77; }
finish() {
  if [ $fails -ne 0 ]; then echo "$fails check(s) failed"; exit 1; fi
  echo "all checks passed"
  exit 0
}

# npm_setup: makes NODE_MODULES point at node_modules installed from npm/package-lock.json
# (npm ci; a lock serialises the tests that share it). Skips (77) when node or npm is
# missing or the registry cannot be reached and nothing is installed yet.
npm_setup() {
  command -v node >/dev/null || skip "node is not installed (deploy/deps.d/deploy.list: nodejs)"
  command -v npm >/dev/null || skip "npm is not installed (it comes with nodejs from NodeSource, or Debian's npm)"
  local dir=$TTQ_BINARY_DIR/deploy-npm src=$TTQ_SOURCE_DIR/tests/deploy/npm
  mkdir -p "$dir"
  (
    flock 9
    if [ -d "$dir/node_modules" ] && cmp -s "$src/package-lock.json" "$dir/package-lock.json"; then
      exit 0
    fi
    cp "$src/package.json" "$src/package-lock.json" "$dir/"
    if ! (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >"$dir/npm-ci.log" 2>&1); then
      rm -rf "$dir/node_modules"
      if ! (cd "$dir" && timeout 20 npm ping >/dev/null 2>&1); then exit 77; fi
      cat "$dir/npm-ci.log" >&2
      exit 1
    fi
  ) 9>"$dir.lock" || {
    rc=$?
    [ $rc -eq 77 ] && skip "the npm registry is unreachable and $dir/node_modules is not installed"
    echo "FAIL npm ci in $dir"
    exit 1
  }
  NODE_MODULES=$dir/node_modules
  export NODE_PATH=$NODE_MODULES
}
