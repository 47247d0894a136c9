#!/usr/bin/env bash
# netns-hosts.sh -- emulate N hosts on one Linux machine with network namespaces, for testing
# multi-host Open MPI runs (see docs/MULTIHOST.md).
#
#   netns-hosts.sh up N PREFIX     create (or complete) N hosts; print the host file on stdout
#   netns-hosts.sh hosts PREFIX    print the host file of the hosts that exist
#   netns-hosts.sh down PREFIX     kill every process inside the namespaces, remove everything
#
# Layout (nothing is added to the root namespace):
#   PREFIX-br      the "switch and head node": bridge br0 with 10.231.0.1/24; run mpirun here
#   PREFIX-h<i>    host i: loopback up, eth0 = 10.231.0.(10+i)/24, a veth whose peer vh<i>
#                  is a port of br0 in PREFIX-br
# MACs are fixed (02:00 + the IPv4 address) so that ARP caches stay valid when hosts are added.
# So `ip -n PREFIX-br link set vh1 down` cuts host 1 off the network, `... up` restores it.
# Namespaces of different prefixes are separate networks, so the same addresses can be used by
# several prefixes at once (tell rsh-netns.sh which one with TTQ_NETNS_PREFIX).
#
# The host file lines are `ADDRESS slots=S # NAMESPACE` (S = $TTQ_NETNS_SLOTS, default 1).
# Exit status: 0 done; 1 failure; 2 usage; 3 this machine cannot do it (not root, no iproute2,
# network namespaces or veth/bridge devices refused, e.g. an unprivileged container).
set -uo pipefail

NET=10.231.0 # the private test subnet, only ever configured inside these namespaces
MAXHOSTS=200
ME=netns-hosts.sh

die() { echo "$ME: $2" >&2; exit "$1"; }
usage() { die 2 "usage: $ME up N PREFIX | hosts PREFIX | down PREFIX"; }
t() { timeout 10 "$@"; } # no command may hang

check_prefix() {
  [[ $1 =~ ^[a-z][a-z0-9-]{0,30}$ ]] ||
    die 2 "bad PREFIX '$1': lower-case letters, digits and '-', starting with a letter, at most 31"
}

check_env() {
  command -v ip >/dev/null 2>&1 || die 3 "'ip' (iproute2) not found: install iproute2"
  [ "$(id -u)" = 0 ] || die 3 "must run as root (uid $(id -u)): network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN"
}

mac() { # mac LAST-OCTET: 02:00 followed by the IPv4 address $NET.LAST-OCTET
  local a b c
  IFS=. read -r a b c <<<"$NET"
  printf '02:00:%02x:%02x:%02x:%02x\n' "$a" "$b" "$c" "$1"
}

ns_exists() { [ -e "/run/netns/$1" ]; }

# the namespaces of PREFIX: PREFIX-br and PREFIX-h<i>, hosts sorted by index
list_ns() {
  t ip netns list 2>/dev/null | awk -v p="$1" '{
      n = $1
      if (n == p "-br") print -1, n
      else if (index(n, p "-h") == 1 && substr(n, length(p) + 3) ~ /^[0-9]+$/) print substr(n, length(p) + 3) + 0, n
    }' | sort -n | awk '{print $2}'
}

host_ns() { list_ns "$1" | grep -E "^$1-h[0-9]+$" || true; }

print_hosts() {
  local p=$1 ns i slots=${TTQ_NETNS_SLOTS:-1}
  for ns in $(host_ns "$p"); do
    i=${ns##*-h}
    echo "$NET.$((10 + i)) slots=$slots # $ns"
  done
}

# kill every process in namespace $1 (they are the namespace's own: started inside it)
kill_ns_pids() {
  local ns=$1 pids n
  pids=$(t ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
  [ -n "${pids// /}" ] || return 0
  kill -TERM $pids 2>/dev/null
  for n in 1 2 3 4 5 6 7 8 9 10; do
    pids=$(t ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
    [ -n "${pids// /}" ] || return 0
    sleep 0.2
  done
  kill -KILL $pids 2>/dev/null
  sleep 0.2
}

down() {
  local p=$1 ns rc=0
  for ns in $(list_ns "$p"); do kill_ns_pids "$ns"; done
  # hosts first (deleting a host namespace deletes its veth pair), then the bridge
  for ns in $(host_ns "$p") "$p-br"; do
    ns_exists "$ns" || continue
    t ip netns del "$ns" || { echo "$ME: could not delete namespace $ns" >&2; rc=1; }
  done
  [ -z "$(list_ns "$p")" ] || { echo "$ME: namespaces left: $(list_ns "$p" | tr '\n' ' ')" >&2; rc=1; }
  return $rc
}

# make sure namespace $1 exists with loopback up and IPv6 off (fewer addresses for MPI to try)
ensure_ns() {
  local ns=$1 err
  if ! ns_exists "$ns"; then
    err=$(t ip netns add "$ns" 2>&1) || die 3 "cannot create network namespace $ns: $err"
  fi
  t ip -n "$ns" link set lo up || die 1 "cannot bring up loopback in $ns"
  t ip netns exec "$ns" sh -c 'for f in /proc/sys/net/ipv6/conf/*/disable_ipv6; do echo 1 >"$f"; done' \
    2>/dev/null || true
}

up() {
  local n=$1 p=$2 br="$2-br" i ns err
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le $MAXHOSTS ] || die 2 "bad N '$n': 1..$MAXHOSTS hosts"
  # hosts beyond N from an earlier, larger `up`
  for ns in $(host_ns "$p"); do
    i=${ns##*-h}
    if [ "$i" -ge "$n" ]; then kill_ns_pids "$ns"; t ip netns del "$ns" || die 1 "cannot delete $ns"; fi
  done
  ensure_ns "$br"
  if ! t ip -n "$br" link show br0 >/dev/null 2>&1; then
    err=$(t ip -n "$br" link add br0 type bridge 2>&1) || die 3 "cannot create a bridge in $br: $err"
  fi
  # A bridge without an address of its own takes the lowest MAC of its ports, so adding a host
  # could change it under the hosts' ARP caches (their SYNs then go nowhere for up to a minute):
  # fixed, locally administered MACs for the bridge and every host (02:00 + the IPv4 address).
  t ip -n "$br" link set br0 address "$(mac 1)" || die 1 "cannot set the MAC of br0 in $br"
  t ip -n "$br" addr replace "$NET.1/24" dev br0 || die 1 "cannot address br0 in $br"
  t ip -n "$br" link set br0 up || die 1 "cannot bring up br0 in $br"
  for ((i = 0; i < n; i++)); do
    ns="$p-h$i"
    ensure_ns "$ns"
    if ! t ip -n "$ns" link show eth0 >/dev/null 2>&1 || ! t ip -n "$br" link show "vh$i" >/dev/null 2>&1; then
      t ip -n "$ns" link del eth0 2>/dev/null
      t ip -n "$br" link del "vh$i" 2>/dev/null
      err=$(t ip -n "$br" link add "vh$i" type veth peer name eth0 netns "$ns" 2>&1) ||
        die 3 "cannot create a veth pair between $br and $ns: $err"
    fi
    t ip -n "$br" link set "vh$i" master br0 || die 1 "cannot attach vh$i to br0 in $br"
    t ip -n "$br" link set "vh$i" up || die 1 "cannot bring up vh$i in $br"
    t ip -n "$ns" link set eth0 address "$(mac $((10 + i)))" || die 1 "cannot set the MAC of eth0 in $ns"
    t ip -n "$ns" addr replace "$NET.$((10 + i))/24" dev eth0 || die 1 "cannot address eth0 in $ns"
    t ip -n "$ns" link set eth0 up || die 1 "cannot bring up eth0 in $ns"
  done
  print_hosts "$p"
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case $cmd in
  up)
    [ $# -eq 2 ] || usage
    check_prefix "$2"; check_env
    up "$1" "$2"
    ;;
  hosts)
    [ $# -eq 1 ] || usage
    check_prefix "$1"; check_env
    print_hosts "$1"
    ;;
  down)
    [ $# -eq 1 ] || usage
    check_prefix "$1"; check_env
    down "$1"
    ;;
  -h | --help | help)
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    ;;
  *) usage ;;
esac
