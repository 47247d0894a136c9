#!/usr/bin/env bash
# rsh-netns.sh -- an ssh stand-in for Open MPI's rsh launcher that "logs in" to a network
# namespace of this machine instead of a remote host (see deploy/netns/netns-hosts.sh and
# docs/MULTIHOST.md):
#
#   mpirun --mca plm_rsh_agent /path/rsh-netns.sh --hostfile HOSTS ...
#
# Open MPI runs it like ssh: `rsh-netns.sh [ssh options] HOST COMMAND...`. The ssh options are
# ignored; HOST ([user@] is dropped) is either a namespace name, `h<i>` (with
# TTQ_NETNS_PREFIX set: PREFIX-h<i>), or an IPv4 address configured inside exactly one namespace
# (only namespaces named PREFIX-* when TTQ_NETNS_PREFIX is set). COMMAND... is joined with
# spaces, as ssh does, and run by `sh -c` inside that namespace, with this process's environment
# (PATH, OMPI_*, ...; Open MPI puts what orted needs on its command line anyway), under the
# hostname NAMESPACE (a UTS namespace of its own, see below).
#
# Optional: TTQ_NETNS_LOG=FILE appends one line per launch ("HOST -> NAMESPACE: COMMAND").
# Exit status: that of the command; 255 when the host cannot be resolved (as ssh does).
set -uo pipefail
ME=rsh-netns.sh
die() { echo "$ME: $*" >&2; exit 255; }

# ssh options: those that take an argument, then flags (all ignored)
while [ $# -gt 0 ]; do
  case $1 in
    --) shift; break ;;
    -[BbcDEeFIiJLlmOopQRSWw]) [ $# -ge 2 ] || die "option $1 needs an argument"; shift 2 ;;
    -[BbcDEeFIiJLlmOopQRSWw]?*) shift ;; # -oFoo=bar, -p22
    -?*) shift ;;                         # -x, -T, -q, -n, -4, -tt, ...
    *) break ;;
  esac
done
[ $# -ge 1 ] || die "usage: $ME [ssh options] HOST COMMAND..."
host=${1##*@}
shift
[ $# -ge 1 ] || die "no command for $host (interactive logins are not supported)"
command -v ip >/dev/null 2>&1 || die "'ip' (iproute2) not found"

prefix=${TTQ_NETNS_PREFIX:-}
names=$(timeout 10 ip netns list 2>/dev/null | awk '{print $1}')
[ -n "$prefix" ] && names=$(printf '%s\n' "$names" | awk -v p="$prefix-" 'index($0, p) == 1')

ns=
if printf '%s\n' "$names" | grep -qxF -- "$host"; then
  ns=$host
elif [ -n "$prefix" ] && printf '%s\n' "$names" | grep -qxF -- "$prefix-$host"; then
  ns=$prefix-$host
elif [[ $host =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
  found=
  for n in $names; do
    if timeout 10 ip -n "$n" -4 -o addr show 2>/dev/null | grep -qF " inet $host/"; then
      found="$found $n"
    fi
  done
  read -r -a found <<<"$found"
  if [ ${#found[@]} -gt 1 ]; then
    die "address $host is in several namespaces (${found[*]}): set TTQ_NETNS_PREFIX"
  fi
  ns=${found[0]:-}
fi
[ -n "$ns" ] || die "no network namespace for host '$host'${prefix:+ (prefix $prefix)}"

cmd="$*"
if [ -n "${TTQ_NETNS_LOG:-}" ]; then
  printf '%s -> %s: %s\n' "$host" "$ns" "$cmd" >>"$TTQ_NETNS_LOG" 2>/dev/null || true
fi
# Each launch also gets its own UTS namespace whose hostname is the namespace's name: Open MPI
# keys its session directory (/tmp/ompi.HOSTNAME.UID/jf.JOBFAMILY, shared by all daemons of a
# job on one host) by hostname, and daemons of one job on "different hosts" that share a
# hostname and /tmp race on it (orted crashes in hwloc_shmem_topology_write, session-directory
# errors). TTQ_NETNS_UTS=0 turns this off.
if [ "${TTQ_NETNS_UTS:-1}" != 0 ] && command -v unshare >/dev/null 2>&1; then
  exec ip netns exec "$ns" unshare --uts sh -c 'hostname "$0" && exec sh -c "$1"' "$ns" "$cmd"
fi
exec ip netns exec "$ns" sh -c "$cmd"
