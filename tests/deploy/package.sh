#!/usr/bin/env bash
# package.sh -- `cpack -G DEB` on the build tree: the .deb's control data (name, declared
# Depends covering every library ttqd and ttq link against, conffiles, maintainer scripts)
# and contents (binaries, unit, sysusers entry, /etc/ttq, docs, examples); and the install
# rules: `cmake --install` with DESTDIR and PREFIX=/usr places every file, and a second
# install keeps an edited /etc/ttq/ttqd.conf.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
command -v cpack >/dev/null && command -v dpkg-deb >/dev/null || skip "cpack or dpkg-deb missing"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && cpack --config "$TTQ_BINARY_DIR/CPackConfig.cmake" -G DEB -B "$TMP/out") >"$TMP/cpack.log" 2>&1 ||
  { cat "$TMP/cpack.log"; echo "FAIL cpack"; exit 1; }
deb=$(ls "$TMP"/out/ttq_*.deb 2>/dev/null | head -1)
check "cpack -G DEB wrote ${deb##*/}" test -f "$deb"
dpkg-deb -I "$deb" >"$TMP/info"
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' >"$TMP/files"
check "Package: ttq" grep -q '^ Package: ttq$' "$TMP/info"
deps=$(sed -n 's/^ Depends: //p' "$TMP/info")
for p in libopenmpi3 openmpi-bin libzmq5 libprotobuf-c1 libopenblas0 liblapacke libpcre2-8-0 libjansson4 zlib1g libgomp1 libc6 adduser; do
  check "Depends declares $p" grep -qE "(^|, )$p( |,|$)" <<<"$deps"
done
# every NEEDED library of the binaries must come from a declared package (or one of theirs)
x=$TMP/x
dpkg-deb -x "$deb" "$x"
ldconfig -p >"$TMP/ldcache"
declared=" $(tr ',' '\n' <<<"$deps" | sed 's/(.*)//; s/|.*//; s/ //g' | tr '\n' ' ') "
for bin in usr/bin/ttqd usr/bin/ttq; do
  for lib in $(objdump -p "$x/$bin" | awk '/NEEDED/ {print $2}'); do
    path=$(awk -v l="$lib" '$1 == l && /x86-64|x86_64|64bit/ {print $NF; exit}' "$TMP/ldcache")
    [ -n "$path" ] || path=$(awk -v l="$lib" '$1 == l {print $NF; exit}' "$TMP/ldcache")
    pkg=$( (dpkg -S "$(readlink -f "$path")" 2>/dev/null || dpkg -S "$path" 2>/dev/null || true) | sed -n '1s/:.*//p')
    case "$pkg" in
      libc6|libgcc-s1) ok=1 ;; # essential
      libopenblas0-*|liblapack3|libblas3) ok=1 ;; # alternatives behind libopenblas0 / liblapacke
      *) case "$declared" in *" $pkg "*) ok=1 ;; *) ok=0 ;; esac ;;
    esac
    check "${bin##*/} needs $lib from ${pkg:-?}: declared" test "$ok" = 1
  done
done
for f in /usr/bin/ttqd /usr/bin/ttq /usr/bin/ttqd-launch /usr/bin/ttqd-k8s /usr/lib/systemd/system/ttqd.service \
  /usr/lib/sysusers.d/ttq.conf /etc/ttq/ttqd.conf /etc/ttq/ttqd.env /usr/share/doc/ttq/OPERATIONS.md \
  /usr/share/doc/ttq/MULTIHOST.md /usr/share/doc/ttq/examples/k8s/statefulset/statefulset.yaml \
  /usr/share/doc/ttq/examples/k8s/mpijob/mpijob.yaml /usr/share/doc/ttq/examples/container/Containerfile; do
  check "contains $f" grep -qx "$f" "$TMP/files"
done
check "no build or test files in the package" bash -c "! grep -E 'node_modules|/tests/|\\.o\$|CMakeFiles' '$TMP/files'"
dpkg-deb -e "$deb" "$TMP/ctl"
check "conffiles: /etc/ttq/ttqd.conf and ttqd.env" bash -c "grep -qx /etc/ttq/ttqd.conf '$TMP/ctl/conffiles' && grep -qx /etc/ttq/ttqd.env '$TMP/ctl/conffiles'"
for s in postinst prerm postrm; do
  check "maintainer script $s, executable, sh -n clean" bash -c "[ -x '$TMP/ctl/$s' ] && sh -n '$TMP/ctl/$s'"
done
check "postinst creates the ttq system user" grep -q 'adduser --quiet --system --group --home /var/lib/ttq' "$TMP/ctl/postinst"
check "packaged unit runs /usr/bin/ttqd-launch with /etc/ttq/ttqd.conf" \
  grep -qx 'ExecStart=/usr/bin/ttqd-launch --config /etc/ttq/ttqd.conf' "$x/usr/lib/systemd/system/ttqd.service"
check "packaged unit reads /etc/ttq/ttqd.env" grep -qx 'EnvironmentFile=-/etc/ttq/ttqd.env' "$x/usr/lib/systemd/system/ttqd.service"
check "the packaged ttqd runs: ttqd version" bash -c "'$x/usr/bin/ttqd' version | grep -q '^ttqd '"

# make install: DESTDIR + PREFIX=/usr, then again after editing the config
d=$TMP/destdir
DESTDIR=$d cmake --install "$TTQ_BINARY_DIR" --prefix /usr >"$TMP/i1.log" 2>&1
check "DESTDIR install: /usr/bin/ttqd" test -x "$d/usr/bin/ttqd"
check "DESTDIR install: /etc/ttq/ttqd.conf (not /usr/etc)" test -f "$d/etc/ttq/ttqd.conf" -a ! -e "$d/usr/etc"
check "DESTDIR install: unit names /usr/bin and /etc" grep -qx 'ExecStart=/usr/bin/ttqd-launch --config /etc/ttq/ttqd.conf' "$d/usr/lib/systemd/system/ttqd.service"
(cd "$d" && find . -type f | sed 's|^\.||' | sort) >"$TMP/dfiles"
check "DESTDIR install places the same files as the package" \
  bash -c "diff <(grep -v '/\$' '$TMP/files' | sort | while read -r f; do [ -d '$x'\"\$f\" ] || echo \"\$f\"; done) '$TMP/dfiles'"
echo "model = /edited" >"$d/etc/ttq/ttqd.conf"
DESTDIR=$d cmake --install "$TTQ_BINARY_DIR" --prefix /usr >"$TMP/i2.log" 2>&1
check "a second install keeps the edited ttqd.conf" grep -qx 'model = /edited' "$d/etc/ttq/ttqd.conf"
# PREFIX elsewhere: config under PREFIX/etc
DESTDIR= cmake --install "$TTQ_BINARY_DIR" --prefix "$TMP/pfx" >"$TMP/i3.log" 2>&1
check "PREFIX=$TMP/pfx: config in PREFIX/etc/ttq" test -f "$TMP/pfx/etc/ttq/ttqd.conf"
check "PREFIX=$TMP/pfx: binaries in PREFIX/bin" test -x "$TMP/pfx/bin/ttq" -a -x "$TMP/pfx/bin/ttqd-launch"
# the example config is accepted by the real ttqd serve (every key known, every value valid)
if "$TTQD" serve --help >/dev/null 2>&1; then
  for k in $(grep -hoE '^#? ?[a-z-]+ *=' "$TTQ_SOURCE_DIR/deploy/ttqd.conf.example" | sed 's/^# \{0,1\}//; s/ *=$//' | sort -u); do
    check "config key '$k' is a ttqd serve setting" bash -c "'$TTQD' serve --help | grep -q -- '--$k '"
  done
else
  echo "note: this ttqd has no serve command yet; config keys not checked against it"
fi
finish
