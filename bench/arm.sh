#!/usr/bin/env bash
# ARM API benchmark on both stores; prints markdown tables for docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/" ./cmd/privlinkd
for store in bolt etcd; do
  go run ./bench/armbench --privlinkd "$bin/privlinkd" --store "$store" "$@"
  echo
done
