#!/usr/bin/env bash
# Runs every benchmark behind docs/performance.md and prints one JSON line per
# run (plus criterion's own output): the swarm harness against its --plain
# baseline (10, 20, 50 nodes; 20 again with the inboxes on tmpfs), throughput
# 1 → 5 (star and full mesh), 100 nodes in one process, catch-up, the idle
# memory of one and of ten nodes, then the criterion benches.
# Usage: scripts/bench.sh [--quick]   (--quick: no criterion benches)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bins --quiet
BIN=$(scripts/target-dir)/release/murmur

run() { echo "# murmur bench $*" >&2; "$BIN" bench "$@" | tail -1; }

for n in 10 20 50; do
  for plain in "" --plain; do
    run --procs --nodes "$n" --messages 200 --size 256 --interval-ms 10 --degree 2 $plain
  done
done
# Diagnosis: the 20-node run with every inbox on tmpfs (no disk flushes).
echo "# TMPDIR=/dev/shm" >&2
TMPDIR=/dev/shm run --procs --nodes 20 --messages 200 --size 256 --interval-ms 10 --degree 2
for topology in --star "--degree 5"; do
  for plain in "" --plain; do
    run --procs --nodes 6 --messages 8000 --size 256 --rate 4000 $topology $plain
  done
done
run --nodes 100 --messages 100 --size 256 --rate 10 --degree 2
run --catchup --messages 10000 --size 256

# Idle memory: one lone node, then ten nodes on this machine, 4 s after
# their start: RSS beside what each costs on its own (USS: private pages)
# and its share (PSS) of the pages the processes share (the binary, libc).
scripts/memory.sh 1
scripts/memory.sh 10

[[ ${1:-} == --quick ]] && exit 0
cargo bench --bench envelope
cargo bench --bench inbox
