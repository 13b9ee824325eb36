#!/usr/bin/env bash
# Fabric benchmarks (run as root); prints what docs/benchmarks.md shows:
#   1. the fabric alone: go test -bench over internal/fabric;
#   2. a network with 1, 10 and 100 NICs end to end through the ARM API
#      (fabricbench), on bolt and on etcd, against the fabric alone measured
#      in the same run;
#   3. DNS queries from inside a NIC namespace to 168.63.129.16 (dnsbench),
#      against a bare miekg/dns server in the same router namespace.
# Every tool uses namespace prefixes of its own and removes them at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
if [ "$(id -u)" != 0 ]; then
  echo "bench/fabric.sh: must run as root (it creates network namespaces)" >&2
  exit 1
fi
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/" ./cmd/privlinkd ./bench/fabricbench ./bench/dnsbench
echo "machine: $(nproc) cores, $(uname -sr), $(go version | cut -d' ' -f3)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
go test -run '^$' -bench Network -benchtime 3x ./internal/fabric/
echo
for store in bolt etcd; do
  echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  "$bin/fabricbench" --privlinkd "$bin/privlinkd" --store "$store"
  echo
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin/dnsbench"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
