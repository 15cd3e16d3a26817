#!/usr/bin/env bash
# Installs what the end-to-end tests need and a fresh machine lacks:
#   - Debian's chromium (the browser test drives it headless),
#   - iproute2 (network namespaces for the LAN and NAT tests),
#   - nftables (the NAT routers of the test WAN, inside their namespaces),
#   - tshark (the packet-capture test: nothing secret crosses the wire),
#   - from PyPI: schemathesis (OpenAPI check) and playwright (drives chromium;
#     its own browser download is never used).
# Idempotent: does nothing when everything is there. apt needs root.
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5
PLAYWRIGHT_VERSION=1.65.2

apt_missing=()
command -v chromium >/dev/null 2>&1 || apt_missing+=(chromium)
command -v ip >/dev/null 2>&1 || apt_missing+=(iproute2)
command -v nft >/dev/null 2>&1 || apt_missing+=(nftables)
command -v tshark >/dev/null 2>&1 || apt_missing+=(tshark)
if ((${#apt_missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "install-test-deps: need root to install: ${apt_missing[*]} (sudo apt-get install ${apt_missing[*]})" >&2
    exit 1
  fi
  echo "install-test-deps: apt-get install ${apt_missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
fi

if ! python3 -c "import schemathesis, playwright" >/dev/null 2>&1; then
  echo "install-test-deps: pip install schemathesis playwright"
  python3 -m pip install -q --disable-pip-version-check \
    "schemathesis==${SCHEMATHESIS_VERSION}" "playwright==${PLAYWRIGHT_VERSION}"
fi
