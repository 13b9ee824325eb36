#!/usr/bin/env bash
# Private endpoint benchmarks (run as root); prints what docs/benchmarks.md
# shows: endpoint PUT → poller → name resolvable inside the network, one
# endpoint per network, against a NIC and an A record set measured in the
# same networks in the same run; then many endpoints to one server from 50
# networks (-scale, 500 by default), with privlinkd's time, CPU and memory.
# With -one-network 1000 (e.g. -networks 1 -rounds 0 -scale 0 -one-network
# 1000), 1,000 endpoints in one network: all taking connections, the
# router's rule and element counts, rejections under live sessions.
# Extra arguments go to endpointbench (e.g. -scale 200, -rounds 1).
# endpointbench stops the server's postmaster and removes every namespace
# of its prefix.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
if [ "$(id -u)" != 0 ]; then
  echo "bench/endpoints.sh: must run as root (it creates network namespaces)" >&2
  exit 1
fi
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/" ./cmd/privlinkd ./bench/endpointbench
echo "machine: $(nproc) cores, $(uname -sr), $(go version | cut -d' ' -f3), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin/endpointbench" --privlinkd "$bin/privlinkd" "$@"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
