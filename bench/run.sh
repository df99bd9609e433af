#!/usr/bin/env bash
# Proxy benchmark: builds the release sidecar, then runs bench/proxy.rs (direct to a simulated
# provider vs through the sidecar binary) and prints its markdown table on stdout; progress goes
# to stderr. BENCH_SECONDS (default 5) sets each throughput phase; BENCH_SECONDS=1 is a smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p switchyard-sidecar
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs); BENCH_SECONDS=${BENCH_SECONDS:-5}"
# `cargo bench` builds with the bench profile (release settings) and runs the binary; its own
# compile messages go to stderr.
cargo bench -p switchyard-tests --bench proxy
