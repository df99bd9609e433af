#!/usr/bin/env bash
# Soak: builds the release sidecar, then runs bench/soak.rs (the sidecar binary under open-loop
# load while two simulated providers flap) and prints its markdown table on stdout.
#   SOAK_SECONDS       duration (default 60; the recorded long run uses 3600)
#   SOAK_RATE          requests per second offered (default 1000)
#   SOAK_FLAP_SECONDS  flap period (default 10)
#   SOAK_CHECK=1       exit non-zero when a check fails (scripts/test runs a short checked soak)
set -euo pipefail
cd "$(dirname "$0")/.."

ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 8192 2>/dev/null || true
cargo build --release -p switchyard-sidecar
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores; SOAK_SECONDS=${SOAK_SECONDS:-60} SOAK_RATE=${SOAK_RATE:-1000} SOAK_FLAP_SECONDS=${SOAK_FLAP_SECONDS:-10}"
cargo bench -p switchyard-tests --bench soak
