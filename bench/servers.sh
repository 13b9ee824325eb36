#!/usr/bin/env bash
# Flexible server benchmarks (run as root); prints what docs/benchmarks.md
# shows: create-to-ready through the API against internal/pgserver's
# BenchmarkCreate (spare, copy, initdb), idle memory against
# BenchmarkIdleMemory, and 20 servers back after a privlinkd restart against
# BenchmarkColdStart20, the baselines run interleaved from a compiled test
# binary in the same run. Extra arguments go to serverbench (e.g. -n 10).
# serverbench stops every postmaster it started and removes every namespace
# of its prefix; the pgserver benchmarks clean up after themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
if [ "$(id -u)" != 0 ]; then
  echo "bench/servers.sh: must run as root (servers run in namespaces as the postgres user)" >&2
  exit 1
fi
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/" ./cmd/privlinkd ./bench/serverbench
go test -c -o "$bin/pgserver.test" ./internal/pgserver/
echo "machine: $(nproc) cores, $(uname -sr), $(go version | cut -d' ' -f3), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin/serverbench" --privlinkd "$bin/privlinkd" --pgserver-test "$bin/pgserver.test" "$@"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
