#!/usr/bin/env bash
# VPN benchmark (run as root); prints what docs/benchmarks.md shows in
# "VPN gateways: pgbench across a Vnet2Vnet tunnel": pgbench -S -c 8
# through a private endpoint from a network connected by a Vnet2Vnet
# tunnel (two gateways, two charons, ESP-in-UDP on the emulated internet)
# against the same from the endpoint's own network, rounds interleaved,
# verify-full TLS on both paths. PRIVLINK_BENCH_SECONDS sets each run's
# -T (default 10). About 3 minutes. The e2e harness starts its own
# privlinkd and removes its namespaces and charons at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
if [ "$(id -u)" != 0 ]; then
  echo "bench/vpn.sh: must run as root (it creates network namespaces, charons and PostgreSQL servers)" >&2
  exit 1
fi
echo "privlink $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(go version | cut -d' ' -f3), $(pgbench --version)"
PRIVLINK_BENCH=1 go test -count=1 -timeout 20m -run '^TestVPNPgbench$' -v ./e2e | grep -E '^\s+vpn_test.go:[0-9]+: (\||load)' | sed -E 's/^\s+vpn_test.go:[0-9]+: //'
