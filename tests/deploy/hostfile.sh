#!/usr/bin/env bash
# hostfile.sh -- the StatefulSet launcher's host-file logic (deploy/ttqd-k8s hostfile/start)
# with fake inputs: replicas, namespace, slots, domain, and a stubbed DNS lookup that resolves
# a name only after some attempts, or never (timeout), plus the ordinal-based role choice.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
K=$TTQ_SOURCE_DIR/deploy/ttqd-k8s
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# resolver stub: a name resolves once it has been asked for $STUB_AFTER times; names listed
# in $STUB_NEVER never resolve. Every call is logged.
cat >"$TMP/resolve" <<'STUB'
#!/usr/bin/env bash
echo "$1" >>"$STUB_DIR/calls"
case " ${STUB_NEVER:-} " in *" $1 "*) exit 2 ;; esac
n=$(grep -cxF "$1" "$STUB_DIR/calls")
[ "$n" -gt "${STUB_AFTER:-0}" ] && echo "10.0.0.1 $1" && exit 0
exit 2
STUB
chmod +x "$TMP/resolve"
export STUB_DIR=$TMP TTQ_RESOLVE=$TMP/resolve TTQ_DNS_INTERVAL=0.05 TTQ_POD_NAME=ttqd-0

out=$(TTQ_K8S_REPLICAS=3 POD_NAMESPACE=prod TTQ_SLOTS=2 "$K" hostfile)
want="ttqd-0.ttqd-workers.prod.svc.cluster.local slots=2
ttqd-1.ttqd-workers.prod.svc.cluster.local slots=2
ttqd-2.ttqd-workers.prod.svc.cluster.local slots=2"
check "3 replicas, namespace prod, 2 slots: one line per pod" test "$(grep -v '^#' <<<"$out")" = "$want"
out=$(TTQ_K8S_REPLICAS=1 POD_NAMESPACE=ns1 TTQ_K8S_STATEFULSET=llm TTQ_K8S_SERVICE=llm-hl \
  TTQ_CLUSTER_DOMAIN=c.example "$K" hostfile | grep -v '^#')
check "names, service, domain from the settings" test "$out" = "llm-0.llm-hl.ns1.svc.c.example slots=1"
out=$(TTQ_POD_NAME=big-model-0 TTQ_K8S_REPLICAS=2 POD_NAMESPACE=a "$K" hostfile | grep -v '^#' | head -1)
check "StatefulSet name from the pod's hostname (dashes kept)" test "$out" = "big-model-0.ttqd-workers.a.svc.cluster.local slots=1"

: >"$TMP/calls"
out=$(STUB_AFTER=3 TTQ_K8S_REPLICAS=2 POD_NAMESPACE=prod TTQ_DNS_WAIT=30 "$K" hostfile | grep -c slots=)
check "waits until names resolve (4 attempts each), then prints both" test "$out" = 2
check "  asked the resolver 4 times per name" test "$(grep -c 'ttqd-1\.' "$TMP/calls")" = 4
: >"$TMP/calls"
start=$(date +%s)
fails_with "a name that never resolves: exit 3 naming it, after TTQ_DNS_WAIT" \
  'still do not resolve: ttqd-1\.ttqd-workers\.prod' \
  env STUB_NEVER=ttqd-1.ttqd-workers.prod.svc.cluster.local TTQ_K8S_REPLICAS=2 POD_NAMESPACE=prod TTQ_DNS_WAIT=1 "$K" hostfile
check "  gave up within 1-4 s" test $(($(date +%s) - start)) -le 4
rc=0; STUB_NEVER=x.y TTQ_K8S_REPLICAS=2 POD_NAMESPACE=p TTQ_DNS_WAIT=0 TTQ_RESOLVE=false "$K" hostfile >/dev/null 2>&1 || rc=$?
check "  exit status 3 for a DNS timeout" test $rc = 3
fails_with "replicas missing: refused" 'TTQ_K8S_REPLICAS' env -u TTQ_K8S_REPLICAS POD_NAMESPACE=p "$K" hostfile
fails_with "replicas 0: refused" 'not a positive integer' env TTQ_K8S_REPLICAS=0 POD_NAMESPACE=p "$K" hostfile
fails_with "slots 'x': refused" 'TTQ_SLOTS' env TTQ_K8S_REPLICAS=2 TTQ_SLOTS=x POD_NAMESPACE=p "$K" hostfile
fails_with "no namespace: refused" 'namespace' env -u POD_NAMESPACE TTQ_K8S_REPLICAS=2 "$K" hostfile

# start on pod 0: writes the host file and hands over to ttqd-launch with ranks = replicas x slots
mkdir -p "$TMP/bin"
printf '#!/bin/sh\necho "launch TTQ_RANKS=$TTQ_RANKS TTQ_HOSTFILE=$TTQ_HOSTFILE $*"\n' >"$TMP/bin/ttqd-launch"
printf '#!/bin/sh\necho "sshd $*"\n' >"$TMP/bin/sshd-stub"
chmod +x "$TMP/bin/"*
out=$(PATH=$TMP/bin:$PATH TTQ_K8S_REPLICAS=3 TTQ_SLOTS=2 POD_NAMESPACE=prod TTQ_HOSTFILE_OUT=$TMP/run/hostfile \
  "$K" start -- --threads 4 2>/dev/null)
check "start on pod 0 runs ttqd-launch with 6 ranks and the host file" \
  test "$out" = "launch TTQ_RANKS=6 TTQ_HOSTFILE=$TMP/run/hostfile -- --threads 4"
check "  the host file it wrote has 3 hosts" test "$(grep -c slots=2 "$TMP/run/hostfile")" = 3
# start on pod 1: sshd (stubbed by failing early on the missing /usr/sbin/sshd is not wanted;
# check the role choice through probe instead, which needs no daemon)
out=$(TTQ_POD_NAME=ttqd-1 TTQ_SSH_PORT=1 "$K" probe 2>&1) && rc=0 || rc=$?
check "probe on pod 1 is the worker check (sshd port), failing when nothing listens" test $rc -ne 0
printf '#!/bin/sh\necho "ttq $*"\n' >"$TMP/bin/ttq"
chmod +x "$TMP/bin/ttq"
out=$(PATH=$TMP/bin:$PATH TTQ_POD_NAME=ttqd-0 TTQ_HEALTH_ARGS="--server-key s.pub --key c.key" "$K" probe)
check "probe on pod 0 asks ttq health with the keys" \
  test "$out" = "ttq health --endpoint tcp://127.0.0.1:5555 --server-key s.pub --key c.key"
finish
