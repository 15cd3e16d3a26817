#!/usr/bin/env bash
# Idle memory of N murmur nodes on this machine (default 1), 4 s after their
# start, as a user would count it: per node RSS, USS (private pages: what the
# node costs on its own) and PSS (private pages plus its share of the pages
# the nodes share, such as the binary), read from /proc/PID/smaps_rollup.
# Prints one JSON line: {"nodes", "rss_kib", "uss_kib", "pss_kib",
# "anon_kib"} with the per-node average of each (anon: the node's own heap
# and stacks, which no other process shares and the kernel cannot drop), and
# "pss_total_kib", the sum over the nodes.
# Nodes listen on loopback only, with mDNS off.
# Usage: scripts/memory.sh [N]   (builds target/release/murmur first)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1}
cargo build --release --bins --quiet
BIN=$(scripts/target-dir)/release/murmur
dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
for i in $(seq 1 "$n"); do
  env -u MURMUR_PASSPHRASE "$BIN" --name "idle$i" --data-dir "$dir/n$i" --no-mdns \
    --listen /ip4/127.0.0.1/tcp/0 < /dev/null > /dev/null 2> "$dir/n$i.log" &
  pids+=($!)
done
sleep 4
rss=0 uss=0 pss=0 anon=0
for i in "${!pids[@]}"; do
  f=/proc/${pids[$i]}/smaps_rollup
  if [[ ! -r $f ]]; then
    echo "memory.sh: node $((i + 1)) exited early:" >&2
    cat "$dir/n$((i + 1)).log" >&2
    exit 1
  fi
  read -r r u p a < <(awk '/^Rss:/ {r=$2} /^Private_(Clean|Dirty):/ {u+=$2} /^Pss:/ {p=$2}
    /^Anonymous:/ {a=$2} END {print r, u, p, a}' "$f")
  rss=$((rss + r)) uss=$((uss + u)) pss=$((pss + p)) anon=$((anon + a))
done
echo "{\"nodes\":$n,\"rss_kib\":$((rss / n)),\"uss_kib\":$((uss / n)),\"pss_kib\":$((pss / n)),\"anon_kib\":$((anon / n)),\"pss_total_kib\":$pss}"
