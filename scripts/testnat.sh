#!/usr/bin/env bash
# A test WAN of network namespaces: a "public" segment with a hub host, and
# two home LANs behind NAT routers that use the SAME private subnet.
# Everything lives in namespaces this script makes (bridges in "switch"
# namespaces, nftables only inside the routers' namespaces); the machine's
# own namespace, interfaces and firewall are never touched. Needs root.
#
#   public segment 198.51.100.0/24 (PREFIX-pub):  hub 198.51.100.10,
#                                                  r1 198.51.100.11, r2 198.51.100.12
#   LAN 1 192.168.1.0/24 behind r1 (PREFIX-l1):    a 192.168.1.10, c 192.168.1.11
#   LAN 2 192.168.1.0/24 behind r2 (PREFIX-l2):    b 192.168.1.10, d 192.168.1.11
#
# Routers masquerade what leaves by their WAN port and silently drop what
# comes in unasked, as home routers do: LAN → WAN is allowed, WAN → LAN and
# WAN → router only for established flows (no RST, no ICMP for the rest). A "cone" router keeps source ports where it can (UDP
# and TCP hole punching work through it); a "symmetric" one maps every flow
# to a random port (masquerade fully-random), where hole punching cannot work.
# Each host resolves hub.murmur.test from its own hosts file
# (/etc/netns/NS/hosts) and has no DNS server (nameserver 127.0.0.1).
#
#   scripts/testnat.sh up PREFIX [cone|symmetric]   build it (LAN 2's router: cone by default; LAN 1's is cone)
#   scripts/testnat.sh down PREFIX | --all          remove it (every "mw*" test WAN with --all)
#   scripts/testnat.sh exec PREFIX HOST CMD…        run CMD inside HOST (hub, r1, r2, a, b, c, d)
#   scripts/testnat.sh addr HOST                    print HOST's address (a LAN address for a, b, c, d)
#   scripts/testnat.sh link PREFIX HOST up|down     plug or unplug HOST (hub, a, b, c, d)
#   scripts/testnat.sh check                        exit 0 when namespaces and nftables work here
#
# PREFIX must be short (namespace names are PREFIX-hub and so on).
set -euo pipefail

PUBLIC=198.51.100
LAN=192.168.1
HUB_NAME=hub.murmur.test

die() { echo "testnat: $*" >&2; exit 1; }
ns_list() { ip netns list 2>/dev/null | awk '{print $1}'; }

addr_of() {
  case $1 in
    hub) echo "$PUBLIC.10" ;; r1) echo "$PUBLIC.11" ;; r2) echo "$PUBLIC.12" ;;
    a | b) echo "$LAN.10" ;; c | d) echo "$LAN.11" ;;
    *) die "unknown host $1 (hub, r1, r2, a, b, c, d)" ;;
  esac
}

down() {
  local prefix=$1
  for ns in $(ns_list | grep -E "^${prefix}-(pub|hub|r1|r2|l1|l2|a|b|c|d)$" || true); do
    for pid in $(ip netns pids "$ns" 2>/dev/null || true); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "/etc/netns/$ns"
  done
}

# switch NS → a bridge br0 in its own namespace.
switch() {
  ip netns add "$1"
  ip -n "$1" link set lo up
  ip -n "$1" link add br0 type bridge
  ip -n "$1" link set br0 type bridge mcast_snooping 0 stp_state 0 forward_delay 0
  ip -n "$1" link set br0 up
}

# plug SWITCH PORT NS IFNAME ADDR/LEN → a veth from SWITCH's bridge into NS.
plug() {
  local sw=$1 port=v$2 ns=$3 ifname=$4 addr=$5
  ip -n "$sw" link add "$port" type veth peer name "$ifname" netns "$ns"
  ip -n "$sw" link set "$port" master br0 up
  ip -n "$ns" addr add "$addr" dev "$ifname"
  ip -n "$ns" link set "$ifname" up multicast on
}

host() {
  local ns=$1
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  mkdir -p "/etc/netns/$ns"
  printf '127.0.0.1 localhost\n%s %s\n' "$PUBLIC.10" "$HUB_NAME" > "/etc/netns/$ns/hosts"
  printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' > "/etc/netns/$ns/resolv.conf"
}

router() {
  local ns=$1 wan=$2 mode=$3
  host "$ns"
  ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
  local masquerade="masquerade"
  [[ $mode == symmetric ]] && masquerade="masquerade fully-random"
  ip netns exec "$ns" nft -f - <<EOF
table ip nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" $masquerade
  }
}
table inet filter {
  chain input {
    type filter hook input priority filter; policy drop;
    iifname "lo" accept
    ct state established,related accept
    iifname "lan" accept
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "lan" oifname "wan" accept
  }
}
EOF
}

up() {
  local prefix=$1 mode=$2
  [[ $mode == cone || $mode == symmetric ]] || die "mode must be cone or symmetric"
  down "$prefix"
  trap 'down "$prefix"' ERR
  switch "$prefix-pub"
  host "$prefix-hub"
  plug "$prefix-pub" hub "$prefix-hub" eth0 "$PUBLIC.10/24"
  local i=1
  for lan in l1 l2; do
    local r="$prefix-r$i" sw="$prefix-$lan" m=cone
    [[ $i == 2 ]] && m=$mode
    router "$r" "$PUBLIC.1$i" "$m"
    plug "$prefix-pub" "r$i" "$r" wan "$PUBLIC.1$i/24"
    switch "$sw"
    plug "$sw" gw "$r" lan "$LAN.1/24"
    i=$((i + 1))
  done
  for h in a c; do
    host "$prefix-$h"
    plug "$prefix-l1" "$h" "$prefix-$h" eth0 "$(addr_of "$h")/24"
    ip -n "$prefix-$h" route add default via "$LAN.1"
  done
  for h in b d; do
    host "$prefix-$h"
    plug "$prefix-l2" "$h" "$prefix-$h" eth0 "$(addr_of "$h")/24"
    ip -n "$prefix-$h" route add default via "$LAN.1"
  done
  trap - ERR
}

switch_of() {
  case $1 in hub) echo pub ;; a | c) echo l1 ;; b | d) echo l2 ;; *) die "cannot unplug $1" ;; esac
}

case "${1:-}" in
  up) up "${2:?usage: up PREFIX [cone|symmetric]}" "${3:-cone}" ;;
  down)
    if [[ ${2:-} == --all ]]; then
      for ns in $(ns_list | grep -E '^mw.*-pub$' || true); do down "${ns%-pub}"; done
    else
      down "${2:?usage: down PREFIX | --all}"
    fi
    ;;
  exec)
    prefix=${2:?usage: exec PREFIX HOST CMD...}; h=${3:?}; shift 3
    exec ip netns exec "$prefix-$h" "$@"
    ;;
  addr) addr_of "${2:?usage: addr HOST}" ;;
  link)
    prefix=${2:?usage: link PREFIX HOST up|down}; h=${3:?}; state=${4:?}
    ip -n "$prefix-$(switch_of "$h")" link set "v$h" "$state"
    ;;
  check)
    probe="mwcheck$$"
    ip netns add "$probe" 2>/dev/null || die "cannot create network namespaces here (need root and iproute2)"
    trap 'ip netns del "$probe"' EXIT
    command -v nft >/dev/null || die "nft is missing (scripts/install-test-deps.sh installs nftables)"
    ip netns exec "$probe" nft add table ip probe 2>/dev/null || die "nftables does not work in a namespace here"
    ;;
  *) sed -n '2,30p' "$0"; exit 2 ;;
esac
