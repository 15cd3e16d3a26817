#!/usr/bin/env bash
# A test LAN of network namespaces: N hosts joined by a Linux bridge, with
# multicast (mDNS) between them. Everything lives in namespaces this script
# makes: the bridge sits in its own "switch" namespace and each veth pair is
# created there, so the machine's own namespace and interfaces are never
# touched. Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN).
#
#   scripts/testlan.sh up N [PREFIX]      make PREFIX-sw and hosts PREFIX-1 … PREFIX-N
#   scripts/testlan.sh down [PREFIX]      remove them (every "mm*" LAN with --all)
#   scripts/testlan.sh exec PREFIX I CMD… run CMD inside host I
#   scripts/testlan.sh link PREFIX I up|down   plug or unplug host I (partitions)
#   scripts/testlan.sh addr PREFIX I      print host I's address
#   scripts/testlan.sh check              exit 0 when namespaces can be made here
#
# Host I has address 10.77.0.(10+I)/24 on its interface eth0; the subnet
# exists only on the bridge. PREFIX defaults to "mmlan" and must be short
# (namespace names are PREFIX-sw, PREFIX-I).
set -euo pipefail

SUBNET=10.77.0

die() { echo "testlan: $*" >&2; exit 1; }
ns_list() { ip netns list 2>/dev/null | awk '{print $1}'; }

down() {
  local prefix=$1
  for ns in $(ns_list | grep -E "^${prefix}-(sw|[0-9]+)$" || true); do
    # Kill whatever still runs inside, then remove the namespace (and its veths).
    for pid in $(ip netns pids "$ns" 2>/dev/null || true); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
}

up() {
  local n=$1 prefix=$2
  [[ $n =~ ^[0-9]+$ ]] && ((n >= 1 && n <= 200)) || die "N must be 1..200"
  down "$prefix"
  local sw="${prefix}-sw"
  ip netns add "$sw"
  trap 'down "$prefix"' ERR
  ip -n "$sw" link set lo up
  ip -n "$sw" link add br0 type bridge
  # Pass multicast to every port, without waiting for IGMP snooping or STP.
  ip -n "$sw" link set br0 type bridge mcast_snooping 0 stp_state 0 forward_delay 0
  ip -n "$sw" link set br0 up
  for i in $(seq 1 "$n"); do
    local host="${prefix}-${i}"
    ip netns add "$host"
    ip -n "$sw" link add "p$i" type veth peer name eth0 netns "$host"
    ip -n "$sw" link set "p$i" master br0 up
    ip -n "$host" link set lo up
    ip -n "$host" addr add "${SUBNET}.$((10 + i))/24" dev eth0
    ip -n "$host" link set eth0 up multicast on
  done
  trap - ERR
}

case "${1:-}" in
  up) up "${2:?usage: up N [PREFIX]}" "${3:-mmlan}" ;;
  down)
    if [[ ${2:-} == --all ]]; then
      for sw in $(ns_list | grep -E '^mm.*-sw$' || true); do down "${sw%-sw}"; done
    else
      down "${2:-mmlan}"
    fi
    ;;
  exec)
    prefix=${2:?usage: exec PREFIX I CMD...}; i=${3:?}; shift 3
    exec ip netns exec "${prefix}-${i}" "$@"
    ;;
  link)
    prefix=${2:?usage: link PREFIX I up|down}; i=${3:?}; state=${4:?}
    ip -n "${prefix}-sw" link set "p$i" "$state"
    ;;
  addr) echo "${SUBNET}.$((10 + ${3:?usage: addr PREFIX I}))" ;;
  check)
    probe="mmcheck$$"
    ip netns add "$probe" 2>/dev/null || die "cannot create network namespaces here (need root and iproute2)"
    ip netns del "$probe"
    ;;
  *) sed -n '2,19p' "$0"; exit 2 ;;
esac
