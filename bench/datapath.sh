#!/usr/bin/env bash
# Data path benchmarks (run as root); prints what docs/benchmarks.md shows
# in "The data path":
#   - the kernel path alone, without PostgreSQL: go test -bench
#     DataPath over internal/fabric (throughput, round trips split hop by
#     hop, connection setup; about 30 s).
#   - endpoint PUT → first successful query from a NIC, p50/p99;
#   - pgbench select-only and TPC-B-like at 1, 8 and 32 clients, and -C
#     (a new connection per transaction) at 8 clients, through a private
#     endpoint against the same server reached directly from inside its own
#     namespace, rounds interleaved, TLS (sslmode=require) on both paths.
# Extra arguments go to datapathbench, e.g. --rounds 5 -d 15s, or
# --perf /tmp/perf to add a perf profile of each path.
# About 10 minutes with the defaults. datapathbench starts its own privlinkd
# with a namespace prefix of its own and, at the end, stops it and the
# postmaster (by PID) and removes every namespace of that prefix.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
if [ "$(id -u)" != 0 ]; then
  echo "bench/datapath.sh: must run as root (it creates network namespaces and PostgreSQL servers)" >&2
  exit 1
fi
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/" ./cmd/privlinkd ./cmd/privlink ./bench/datapathbench
echo "privlink $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(go version | cut -d' ' -f3), $(pgbench --version)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
go test -run '^$' -bench DataPath -benchtime 3s ./internal/fabric/
echo
"$bin/datapathbench" --privlinkd "$bin/privlinkd" --privlink "$bin/privlink" "$@"
