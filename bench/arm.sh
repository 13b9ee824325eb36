#!/usr/bin/env bash
# ARM API benchmark on both stores; prints markdown tables for
# docs/benchmarks.md. Extra arguments go to armbench (e.g. -rounds 5).
# Run as root to have the daemon materialize the benchmark's network, as in
# production; armbench removes every namespace it made.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/" ./cmd/privlinkd
go build -o "$bin/" ./bench/armbench
echo "machine: $(nproc) cores, $(uname -sr), $(go version | cut -d' ' -f3)"
for store in bolt etcd; do
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  "$bin/armbench" --privlinkd "$bin/privlinkd" --store "$store" "$@"
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
done
