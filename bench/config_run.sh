#!/usr/bin/env bash
# Config propagation benchmark: runs bench/config_propagation.rs (the operator's config server,
# controller step and TokenReview path in one process, N simulated long-polling sidecars in
# others) for each N and prints its markdown table on stdout; progress goes to stderr.
#   CONFIG_BENCH_SIZES         N values, comma-separated (default 10,100,1000; the fleet-scale run
#                              is 100,1000,10000)
#   CONFIG_BENCH_ROUNDS        route changes per N (default 20)
#   CONFIG_BENCH_KEEPALIVE=0   a fresh TLS connection per poll (default: kept alive, as the sidecar does)
#   CONFIG_BENCH_CLIENT_PROCS  processes the simulated sidecars are spread over (default: at most
#                              2,500 sidecars each)
#   CONFIG_BENCH_STORM=0       skip the reconnect storm after the rounds (default: on)
#   CONFIG_BENCH_STORM_GAP_MS  time between the old config server gone and the new one listening
#                              (default 3000)
#   CONFIG_BENCH_REPORTS=1     the operator under reporting sidecars instead (bench/config_reports.rs):
#                              every sidecar also POSTs /v1/report every 5 s ± 20 % against two
#                              Budgets per namespace, and the table is CPU, RSS, report latency,
#                              reports/s and leases (no rounds, no storm)
#   CONFIG_BENCH_REPORT_SECONDS  the measured window of that mode (default 60)
#   CONFIG_BENCH_MALLOC_STATS=<dir>  jemalloc's full statistics (JSON: live regions per size
#                              class) written there before the clients, with N connected and 12 s
#                              later, to see what a connection holds (docs/development-notes.md)
set -euo pipefail
cd "$(dirname "$0")/.."

# Each sidecar is one socket in the operator process and one in a clients process, plus the
# operator's TokenReview connections: raise the soft open-file limit as far as allowed (every
# process of the bench also raises its own to the hard limit).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 4096 2>/dev/null || true
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs); ulimit -n $(ulimit -n) (hard $(ulimit -Hn)); CONFIG_BENCH_SIZES=${CONFIG_BENCH_SIZES:-10,100,1000} CONFIG_BENCH_ROUNDS=${CONFIG_BENCH_ROUNDS:-20} CONFIG_BENCH_KEEPALIVE=${CONFIG_BENCH_KEEPALIVE:-1} CONFIG_BENCH_CLIENT_PROCS=${CONFIG_BENCH_CLIENT_PROCS:-auto} CONFIG_BENCH_STORM=${CONFIG_BENCH_STORM:-1} CONFIG_BENCH_STORM_GAP_MS=${CONFIG_BENCH_STORM_GAP_MS:-3000} CONFIG_BENCH_REPORTS=${CONFIG_BENCH_REPORTS:-0} CONFIG_BENCH_REPORT_SECONDS=${CONFIG_BENCH_REPORT_SECONDS:-60}; load average $(cut -d' ' -f1-3 /proc/loadavg)"
# `cargo bench` builds with the bench profile (release settings) and runs the binary; its own
# compile messages go to stderr.
cargo bench -p switchyard-operator --bench config_propagation
