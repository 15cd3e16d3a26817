#!/usr/bin/env bash
# Runs murmur's whole test suite: unit, integration (real nodes on loopback),
# doc tests, and builds the examples. Usage: ./scripts/test.sh [cargo test args…]
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test "$@"
