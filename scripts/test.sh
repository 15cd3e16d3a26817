#!/usr/bin/env bash
# Runs murmur's whole test suite:
#   1. installs what the end-to-end tests need when it is missing
#      (scripts/install-test-deps.sh: Debian's chromium and iproute2, and
#      schemathesis + playwright from PyPI; apt needs root),
#   2. cargo test: unit tests, integration tests with real nodes on loopback,
#      doc tests, and builds the examples,
#   3. the OpenAPI check (schemathesis against a live node),
#   4. the browser test (two nodes' web pages in headless Chromium).
# Usage: ./scripts/test.sh [cargo test args…]
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-test-deps.sh
cargo test "$@"
echo "== OpenAPI check (schemathesis)"
python3 scripts/e2e/openapi_check.py
echo "== browser test (headless Chromium)"
python3 scripts/e2e/browser_test.py
