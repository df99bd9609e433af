#!/usr/bin/env bash
# The data plane against a plain nginx hop, driven from outside by wrk (issue 15).
#
# Three ways to reach the same lean provider (bench/lean.sh: an nginx that answers every chat
# request with one fixed OpenAI stream of three events and `[DONE]`, every Anthropic messages
# request with one fixed Anthropic stream, and every embeddings request with one fixed vector,
# so the provider costs next to nothing):
#   direct   wrk -> provider
#   nginx    wrk -> nginx reverse proxy (2 workers, keep-alive upstream, access log on) -> provider
#   sidecar  wrk -> release sidecar (default JSON request log on) -> provider
# Endpoints (EXTERNAL_ENDPOINTS):
#   chat        a non-streamed OpenAI chat completion, so the sidecar does its whole job: parse,
#               route, ask the provider for a stream, assemble the answer, count tokens and cost,
#               log a line;
#   stream      the same request with `stream: true`; also times the first streamed byte at one
#               connection (curl's time_starttransfer over EXTERNAL_TTFB_REQUESTS requests on one
#               keep-alive connection: wrk sees only whole answers);
#   embeddings  one text, passed through to the OpenAI-format provider;
#   translate   the chat request for a route whose provider speaks Anthropic: the sidecar
#               translates the request and the answer. direct and nginx send the provider the
#               Anthropic request a client of its own would, so the columns compare like with
#               like; with `chat` in the same run, a line compares translation with passthrough.
# Each round measures every endpoint and target in turn (interleaved, so drift on this shared
# machine hits all alike): throughput at 32 connections, with the hop's CPU from /proc, then
# latency at 1 connection. Each endpoint's table gives the median of the rounds.
#
#   bench/external.sh                                   # 3 rounds of 5 s per phase, every endpoint
#   EXTERNAL_SECONDS=10 EXTERNAL_ROUNDS=5 bench/external.sh
#   EXTERNAL_ENDPOINTS='chat translate' bench/external.sh   # some endpoints only
#   LEAN_DELTAS=20 bench/external.sh                    # answers of 20 content deltas, not 1 (bench/lean.sh)
#   EXTERNAL_BASELINE=/tmp/old-sidecar bench/external.sh   # also an older sidecar build, same rounds
#   SIDECAR_BIN=/tmp/new-sidecar bench/external.sh      # a saved binary instead of building this tree
#
# With EXTERNAL_BASELINE (a sidecar binary saved from an earlier commit), a fourth target,
# `baseline`, runs that binary the same way in every round: a change is compared in one run,
# not against a number from another day on this noisy machine.
#
# Needs nginx, wrk and curl (Debian: nginx-light, wrk); installed with apt-get when missing and
# run as root. Everything listens on 127.0.0.1 only, on free ports, and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${EXTERNAL_SECONDS:-5}
ROUNDS=${EXTERNAL_ROUNDS:-3}
TTFB_REQUESTS=${EXTERNAL_TTFB_REQUESTS:-1000}

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq nginx-light wrk) >&2
  else
    echo "bench/external.sh needs nginx and wrk (Debian: apt-get install nginx-light wrk)" >&2
    exit 2
  fi
fi
# shellcheck source=bench/lean.sh
. bench/lean.sh
lean_sidecar_bin
ENDPOINTS=${EXTERNAL_ENDPOINTS:-chat stream embeddings translate}

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$work/mock.pid" ] && kill "$(cat "$work/mock.pid")" 2>/dev/null || true
  [ -f "$work/hop.pid" ] && kill "$(cat "$work/hop.pid")" 2>/dev/null || true
  sleep 0.3
  rm -rf "$work"
}
trap cleanup EXIT

lean_provider_start
hop_port=$(free_port); data_port=$(free_port); admin_port=$(free_port)

cat >"$work/hop.conf" <<EOF
worker_processes 2;
pid $work/hop.pid;
error_log $work/hop.err warn;
events { worker_connections 4096; }
http {
  access_log $work/hop-access.log;
  client_body_temp_path $work/hop-body;
  proxy_temp_path $work/hop-proxy;
  upstream provider {
    server 127.0.0.1:$mock_port;
    keepalive 128;
  }
  server {
    listen 127.0.0.1:$hop_port;
    keepalive_requests 1000000;
    location / {
      proxy_pass http://provider;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
# What the sidecar (and baseline) get per endpoint, and what direct and nginx get (`ref_*`):
# the same, but for `translate`, whose provider speaks another format than the client.
declare -A path=([chat]=/v1/chat/completions [stream]=/v1/chat/completions [embeddings]=/v1/embeddings [translate]=/v1/chat/completions)
declare -A body=([chat]=$LEAN_CHAT_BODY [stream]=$LEAN_STREAM_BODY [embeddings]=$LEAN_EMBEDDINGS_BODY [translate]=$LEAN_TRANSLATE_BODY)
declare -A ref_path=([translate]=/v1/messages)
declare -A ref_body=([translate]=$LEAN_MESSAGES_BODY)
for ep in $ENDPOINTS; do
  [ -n "${path[$ep]:-}" ] || { echo "bench: EXTERNAL_ENDPOINTS: unknown endpoint $ep (chat, stream, embeddings, translate)" >&2; exit 2; }
  : "${ref_path[$ep]:=${path[$ep]}}" "${ref_body[$ep]:=${body[$ep]}}"
  for side in sidecar ref; do
    if [ $side = ref ]; then b=${ref_body[$ep]}; else b=${body[$ep]}; fi
    cat >"$work/$ep.$side.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$b'
EOF
  done
done
side_of() { case $1 in direct | nginx) echo ref ;; *) echo sidecar ;; esac; }

nginx -p "$work" -c "$work/hop.conf"
start_sidecar() { # binary, data port, admin port, log file
  lean_sidecar_args "$2" "$3"
  "$1" "${sidecar_args[@]}" >"$4" 2>&1 &
  pids+=("$!")
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$3/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
}
base_port=""
if [ -n "${EXTERNAL_BASELINE:-}" ]; then
  base_port=$(free_port)
  start_sidecar "$EXTERNAL_BASELINE" "$base_port" "$(free_port)" "$work/baseline.log"
  baseline_pid=${pids[-1]}
fi
start_sidecar "$sidecar_bin" "$data_port" "$admin_port" "$work/sidecar.log"
sidecar_pid=${pids[-1]}
sleep 0.3
hop_pids() { pgrep -P "$(cat "$work/hop.pid")" | tr '\n' ' '; echo "$(cat "$work/hop.pid")"; }

# Every target must give the right answer before anything is timed.
declare -A expect=([chat]='Hello from the bench.' [stream]='Hello from the bench.' [embeddings]='"embedding":[' [translate]='Hello from the bench.')
check() { # url, endpoint, side
  local p b
  if [ "$3" = ref ]; then p=${ref_path[$2]}; b=${ref_body[$2]}; else p=${path[$2]}; b=${body[$2]}; fi
  curl -sf "$1$p" -H 'content-type: application/json' -d "$b" >"$work/check.out" || {
    echo "bench: $1$p did not answer; sidecar log:" >&2; tail -5 "$work/sidecar.log" >&2; exit 1; }
  grep -qF "${expect[$2]}" "$work/check.out" || { echo "bench: $1$p answered wrong: $(head -c 300 "$work/check.out")" >&2; exit 1; }
}
for ep in $ENDPOINTS; do
  check "http://127.0.0.1:$mock_port" "$ep" ref
  check "http://127.0.0.1:$hop_port" "$ep" ref
  check "http://127.0.0.1:$data_port" "$ep" sidecar
  if [ -n "$base_port" ]; then check "http://127.0.0.1:$base_port" "$ep" sidecar; fi
done

ticks=$(getconf CLK_TCK)
cpu_ticks() { # user + system ticks of the given pids
  local total=0 pid
  for pid in "$@"; do
    read -r -a f <"/proc/$pid/stat"
    total=$((total + f[13] + f[14]))
  done
  echo "$total"
}
rss_kib() { # summed VmRSS (or $2 = VmHWM) of pids $1
  local total=0 pid field=${2:-VmRSS}
  for pid in $1; do total=$((total + $(awk -v f="$field:" '$1 == f {print $2}' "/proc/$pid/status"))); done
  echo "$total"
}
to_ms() { # wrk latency (e.g. 87.00us, 1.20ms, 1.01s) in ms
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000
    printf "%.3f", n }'
}
median() { sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
# The first byte of `n` streamed answers, one after another on one keep-alive connection: the
# median of curl's time_starttransfer, in ms.
first_byte_p50() { # url, n
  local i
  for ((i = 0; i < $2; i++)); do
    printf 'url = "%s"\noutput = "/dev/null"\n' "$1"
  done >"$work/ttfb.conf"
  curl -s -K "$work/ttfb.conf" -H 'content-type: application/json' -d "$LEAN_STREAM_BODY" \
    -w '%{time_starttransfer}\n' | awk '{printf "%.3f\n", $1 * 1000}' | median
}

declare -A url=([direct]="http://127.0.0.1:$mock_port" [nginx]="http://127.0.0.1:$hop_port" [sidecar]="http://127.0.0.1:$data_port")
targets=(direct nginx sidecar)
[ -n "$base_port" ] && targets+=(baseline) && url[baseline]="http://127.0.0.1:$base_port"
idle_sidecar=$(rss_kib "$sidecar_pid")
idle_nginx=$(rss_kib "$(hop_pids)")
for round in $(seq "$ROUNDS"); do
  for ep in $ENDPOINTS; do
  for t in "${targets[@]}"; do
    case $t in
      nginx) watched=$(hop_pids) ;;
      sidecar) watched=$sidecar_pid ;;
      baseline) watched=$baseline_pid ;;
      *) watched="" ;;
    esac
    before=$( [ -n "$watched" ] && cpu_ticks $watched || echo 0 )
    side=$(side_of "$t")
    if [ "$side" = ref ]; then p=${ref_path[$ep]}; else p=${path[$ep]}; fi
    out=$(wrk -t2 -c32 -d"${SECS}s" -s "$work/$ep.$side.lua" "${url[$t]}$p")
    after=$( [ -n "$watched" ] && cpu_ticks $watched || echo 0 )
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")
    [ -n "$errors" ] && echo "round $round $ep $t: $errors" >&2
    echo "$rps" >>"$work/$ep.$t.rps"
    if [ -n "$watched" ]; then
      awk -v d=$((after - before)) -v n="$n" -v hz="$ticks" 'BEGIN {printf "%.1f\n", d / hz * 1e6 / n}' >>"$work/$ep.$t.cpu"
    fi
    out=$(wrk -t1 -c1 -d"${SECS}s" --latency -s "$work/$ep.$side.lua" "${url[$t]}$p")
    to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")" >>"$work/$ep.$t.p50"
    echo >>"$work/$ep.$t.p50"
    to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")" >>"$work/$ep.$t.p99"
    echo >>"$work/$ep.$t.p99"
    if [ "$ep" = stream ]; then
      first_byte_p50 "${url[$t]}$p" "$TTFB_REQUESTS" >>"$work/$ep.$t.ttfb"
    fi
    echo "round $round $ep $t: $rps req/s at c32, p50 $(tail -n1 "$work/$ep.$t.p50") ms at c1" >&2
  done
  done
done
peak_sidecar=$(rss_kib "$sidecar_pid" VmHWM)
peak_nginx=$(rss_kib "$(hop_pids)" VmHWM)
logged=$(grep -c '"message":"request"' "$work/sidecar.log" || true)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
added() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%+.3f", a - b}'; }

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs); EXTERNAL_SECONDS=$SECS EXTERNAL_ROUNDS=$ROUNDS EXTERNAL_ENDPOINTS='$ENDPOINTS'; LEAN_DELTAS=${LEAN_DELTAS:-1}; load average $(cut -d' ' -f1-3 /proc/loadavg)"
for ep in $ENDPOINTS; do
  m() { median <"$work/$ep.$1.$2"; }
  for t in "${targets[@]}"; do
    declare "rps_$t=$(m "$t" rps)" "p50_$t=$(m "$t" p50)" "p99_$t=$(m "$t" p99)"
  done
  cpu_nginx=$(m nginx cpu); cpu_sidecar=$(m sidecar cpu)
  echo
  echo "| $ep: metric (median of $ROUNDS rounds) | direct | nginx hop | sidecar | sidecar / nginx |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  echo "| req/s at 32 connections | $rps_direct | $rps_nginx | $rps_sidecar | $(ratio "$rps_sidecar" "$rps_nginx") |"
  echo "| CPU per request (µs, the hop's processes) | | $cpu_nginx | $cpu_sidecar | $(ratio "$cpu_sidecar" "$cpu_nginx") |"
  echo "| p50 at 1 connection (ms) | $p50_direct | $p50_nginx | $p50_sidecar | |"
  echo "| added p50 over direct (ms) | | $(added "$p50_nginx" "$p50_direct") | $(added "$p50_sidecar" "$p50_direct") | $(ratio "$(added "$p50_sidecar" "$p50_direct")" "$(added "$p50_nginx" "$p50_direct")") |"
  echo "| p99 at 1 connection (ms) | $p99_direct | $p99_nginx | $p99_sidecar | |"
  if [ "$ep" = stream ]; then
    for t in "${targets[@]}"; do declare "ttfb_$t=$(m "$t" ttfb)"; done
    echo "| first streamed byte p50 at 1 connection (ms) | $ttfb_direct | $ttfb_nginx | $ttfb_sidecar | |"
    echo "| added first streamed byte over direct (ms) | | $(added "$ttfb_nginx" "$ttfb_direct") | $(added "$ttfb_sidecar" "$ttfb_direct") | $(ratio "$(added "$ttfb_sidecar" "$ttfb_direct")" "$(added "$ttfb_nginx" "$ttfb_direct")") |"
  fi
  if [ -n "$base_port" ]; then
    cpu_baseline=$(m baseline cpu)
    echo
    echo "$ep: baseline \`$EXTERNAL_BASELINE\` in the same rounds: $rps_baseline req/s at 32 connections ($(ratio "$rps_baseline" "$rps_nginx") of nginx), CPU per request $cpu_baseline µs ($(ratio "$cpu_baseline" "$cpu_nginx") of nginx), added p50 $(added "$p50_baseline" "$p50_direct") ms; this build / baseline: req/s $(ratio "$rps_sidecar" "$rps_baseline"), CPU per request $(ratio "$cpu_sidecar" "$cpu_baseline")."
  fi
done
# Translation against passthrough: the same client request, its provider speaking Anthropic
# rather than OpenAI. What the sidecar adds: its CPU per request, and its p50 over the
# provider's own (direct) p50 for that format.
case " $ENDPOINTS " in *" translate "*) case " $ENDPOINTS " in *" chat "*)
  cpu() { median <"$work/$1.sidecar.cpu"; }
  add() { added "$(median <"$work/$1.sidecar.p50")" "$(median <"$work/$1.direct.p50")"; }
  echo
  echo "Translation (OpenAI client, Anthropic provider) against passthrough (OpenAI to OpenAI), sidecar, same rounds: CPU per request $(cpu translate) vs $(cpu chat) µs ($(ratio "$(cpu translate)" "$(cpu chat)")×); added p50 $(add translate) vs $(add chat) ms ($(ratio "$(add translate)" "$(add chat)")×)."
esac ;; esac
echo
echo "RSS idle / peak (MiB, over all endpoints): nginx hop $(awk -v a="$idle_nginx" -v b="$peak_nginx" 'BEGIN {printf "%.1f / %.1f", a / 1024, b / 1024}'), sidecar $(awk -v a="$idle_sidecar" -v b="$peak_sidecar" 'BEGIN {printf "%.1f / %.1f", a / 1024, b / 1024}')."
echo "Sidecar request log lines written: $logged (one per request; the log went to a file)."
