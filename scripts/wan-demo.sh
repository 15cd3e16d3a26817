#!/usr/bin/env bash
# A WAN demo: two home LANs behind NAT routers, both 192.168.1.0/24, and a
# public segment with a hub (scripts/testnat.sh). The hub runs
# --relay-server; alice (LAN 1) and bob (LAN 2) know only its name
# (hub.murmur.test, from their hosts files) and the topic secret. Watch them
# reserve a slot on the hub's relay, find each other in the DHT, connect
# through the relay and hole-punch a direct connection; carol, on alice's
# LAN with no bootstrap at all, hears bob through alice. Needs root.
#
#   sudo scripts/wan-demo.sh [--symmetric] [--streams]
#
# --symmetric puts bob behind a NAT that maps every connection to a new
# port: hole punching cannot work there, and the relay carries the traffic.
# In a terminal with tmux: one pane per node; type commands in any pane
# (/pub news hello, /peers shows "(relayed)" until the connection is direct,
# /dm alice hi). Ctrl-b d ends it. Otherwise (or with --streams): outputs
# interleaved, each line labelled; type "NAME COMMAND" (e.g.
# "bob /pub news hello"); end of input stops.
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=mwdemo
NAMES=(hub alice bob carol)
HOSTS=(hub a b c)
mode=tmux
nat=cone
for arg in "$@"; do
  case $arg in
    --streams) mode=streams ;;
    --symmetric) nat=symmetric ;;
    *) sed -n '2,18p' "$0"; exit 2 ;;
  esac
done
{ command -v tmux >/dev/null && [ -t 0 ] && [ -t 1 ]; } || mode=streams

cargo build --release --quiet
BIN=$(scripts/target-dir)/release/murmur
DATA=$(mktemp -d /tmp/murmur-wan-demo.XXXXXX)
./scripts/testnat.sh up "$PREFIX" "$nat"
cleanup() {
  [[ $mode == tmux ]] && tmux kill-session -t murmur-wan-demo 2>/dev/null
  ./scripts/testnat.sh down "$PREFIX"
  rm -rf "$DATA"
}
trap cleanup EXIT

# The hub's identity is made first, so that the members can be told its peer id.
hub_id=$(printf '/whoami\n/quit\n' | ./scripts/testnat.sh exec "$PREFIX" hub "$BIN" --name hub \
  --data-dir "$DATA/hub" --no-mdns --listen /ip4/127.0.0.1/tcp/0 --json 2>/dev/null |
  sed -nE 's#.*"event":"whoami".*"peer":"([^"]+)".*#\1#p; s#.*"peer":"([^"]+)".*"event":"whoami".*#\1#p' | head -1)
[[ -n $hub_id ]] || { echo "wan-demo: could not start the hub" >&2; exit 1; }
BOOT=/dns4/hub.murmur.test/tcp/4001/p2p/$hub_id

node_cmd() { # index
  local name=${NAMES[$1]} host=${HOSTS[$1]}
  local cmd="$PWD/scripts/testnat.sh exec $PREFIX $host $BIN --name $name --data-dir $DATA/$name --private-wan"
  case $name in
    hub) cmd+=" --no-mdns --listen /ip4/0.0.0.0/tcp/4001 --listen /ip4/0.0.0.0/udp/4001/quic-v1 --relay-server"
         cmd+=" --external-addr /ip4/198.51.100.10/tcp/4001 --external-addr /ip4/198.51.100.10/udp/4001/quic-v1" ;;
    carol) cmd+=" --topic news=demo-secret" ;;
    *) cmd+=" --topic news=demo-secret --bootstrap $BOOT" ;;
  esac
  echo "$cmd"
}

if [[ $mode == tmux ]]; then
  tmux new-session -d -s murmur-wan-demo -n wan "$(node_cmd 0)"
  for i in 1 2 3; do
    sleep 1
    tmux split-window -t murmur-wan-demo -v "$(node_cmd "$i")"
  done
  tmux select-layout -t murmur-wan-demo even-vertical
  tmux attach -t murmur-wan-demo
  exit 0
fi

pids=()
for i in 0 1 2 3; do
  name=${NAMES[$i]}
  mkfifo "$DATA/$name.in"
  # shellcheck disable=SC2046
  (cat "$DATA/$name.in" | $(node_cmd "$i") 2>&1 | sed -u "s/^/[$name] /") &
  pids+=($!)
  exec {fd}>"$DATA/$name.in"
  eval "fd_$name=$fd"
  sleep 1
done
echo "[demo] hub, alice, bob and carol are up; type 'NAME COMMAND', e.g. 'bob /pub news hello' or 'alice /peers'"
while IFS= read -r line; do
  name=${line%% *}
  cmd=${line#* }
  var="fd_$name"
  if [[ -n ${!var:-} ]]; then
    echo "$cmd" >&"${!var}"
  else
    echo "[demo] unknown node '$name' (hub, alice, bob or carol)"
  fi
done
sleep 2
echo "[demo] end of input: stopping"
for name in "${NAMES[@]}"; do
  var="fd_$name"
  echo /quit >&"${!var}"
  eval "exec ${!var}>&-"
done
wait "${pids[@]}" 2>/dev/null || true
