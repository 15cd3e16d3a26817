#!/usr/bin/env bash
# A three-host LAN demo: alice, bob and carol each run murmur in their own
# network namespace (scripts/testlan.sh), find each other by mDNS and share
# the topic "news". Needs root.
#
# In a terminal with tmux: one pane per node; type commands in any pane
# (/pub news hello, /peers, /dm bob hi). Ctrl-b d (or closing tmux) ends it.
# Otherwise (or with --streams): the three outputs are interleaved, each line
# labelled [alice] / [bob] / [carol]; type "NAME COMMAND" (e.g.
# "alice /pub news hello") to send a command to one node; end of input stops.
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=mmdemo
NAMES=(alice bob carol)
mode=tmux
[[ ${1:-} == --streams ]] && mode=streams
{ command -v tmux >/dev/null && [ -t 0 ] && [ -t 1 ]; } || mode=streams

cargo build --release --quiet
BIN=$(scripts/target-dir)/release/murmur
DATA=$(mktemp -d /tmp/murmur-demo.XXXXXX)
./scripts/testlan.sh up 3 "$PREFIX"
cleanup() {
  [[ $mode == tmux ]] && tmux kill-session -t murmur-demo 2>/dev/null
  ./scripts/testlan.sh down "$PREFIX"
  rm -rf "$DATA"
}
trap cleanup EXIT

node_cmd() { # index name
  echo "$PWD/scripts/testlan.sh exec $PREFIX $1 $BIN --name $2 --data-dir $DATA/$2 --topic news=demo-secret"
}

if [[ $mode == tmux ]]; then
  tmux new-session -d -s murmur-demo -n lan "$(node_cmd 1 alice)"
  tmux split-window -t murmur-demo -v "$(node_cmd 2 bob)"
  tmux split-window -t murmur-demo -v "$(node_cmd 3 carol)"
  tmux select-layout -t murmur-demo even-vertical
  tmux attach -t murmur-demo
  exit 0
fi

pids=()
for i in 1 2 3; do
  name=${NAMES[$((i - 1))]}
  mkfifo "$DATA/$name.in"
  # shellcheck disable=SC2046
  (cat "$DATA/$name.in" | $(node_cmd "$i" "$name") 2>&1 | sed -u "s/^/[$name] /") &
  pids+=($!)
  exec {fd}>"$DATA/$name.in"
  eval "fd_$name=$fd"
done
echo "[demo] three nodes are starting; type 'NAME COMMAND', e.g. 'alice /pub news hello'"
while IFS= read -r line; do
  name=${line%% *}
  cmd=${line#* }
  var="fd_$name"
  if [[ -n ${!var:-} ]]; then
    echo "$cmd" >&"${!var}"
  else
    echo "[demo] unknown node '$name' (alice, bob or carol)"
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
