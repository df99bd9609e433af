#!/usr/bin/env bash
# Memory per concurrent stream: builds the release sidecar, then runs bench/streams.rs (N streams
# open at once through the sidecar binary, its RSS with all open and after) and prints its
# markdown table on stdout; progress goes to stderr.
#   STREAMS   N values, comma-separated (default 500,1000,2000)
set -euo pipefail
cd "$(dirname "$0")/.."

# N client sockets and N simulator sockets live in the benchmark process: raise the soft
# open-file limit as far as allowed (the sidecar raises its own).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 8192 2>/dev/null || true
cargo build --release -p switchyard-sidecar
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores; STREAMS=${STREAMS:-500,1000,2000}"
cargo bench -p switchyard-tests --bench streams
