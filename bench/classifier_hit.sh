#!/usr/bin/env bash
# What a warm `Route` scorer cache costs a request end to end (issue 12: "the Route scorer adds
# nothing on a cache hit"), driven from outside by wrk against the release sidecar and the lean
# provider of bench/lean.sh.
#
# Two routes to the same lean provider model, the same request bodies but for `model`:
#   plain   no `complexity`: no score at all
#   scored  `complexity: {scorer: Route, route: {model: classifier, cacheTtl: 1h}, onError: Min}`
# The classifier route goes to a second location of the lean nginx that answers `42`. One request
# per prompt warms the cache before anything is timed (checked: `x-switchyard-complexity: 42`,
# and afterwards the classifier was asked once per prompt size). Each round measures both routes
# in turn for each prompt size (interleaved, so drift on this shared machine hits both alike):
# p50 / p99 at 1 connection, then requests/s at 32 connections with the sidecar's CPU per request
# from /proc. The tables give the median of the rounds.
#
#   bench/classifier_hit.sh                               # 5 rounds of 5 s per phase, 1 KB and 32 KB
#   CLASSIFIER_SECONDS=10 CLASSIFIER_ROUNDS=7 bench/classifier_hit.sh
#   SIDECAR_BIN=/tmp/sidecar bench/classifier_hit.sh      # a saved binary instead of building
#
# Needs nginx and wrk (Debian: nginx-light, wrk), like bench/external.sh. Everything listens on
# 127.0.0.1 only, on free ports, and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${CLASSIFIER_SECONDS:-5}
ROUNDS=${CLASSIFIER_ROUNDS:-5}
SIZES=${CLASSIFIER_SIZES:-1024 32768}
for tool in nginx wrk curl; do
  command -v $tool >/dev/null || { echo "bench/classifier_hit.sh needs $tool (Debian: nginx-light, wrk, curl)" >&2; exit 2; }
done
# shellcheck source=bench/lean.sh
. bench/lean.sh
lean_sidecar_bin

lean_workdir

lean_provider_start
# The classifier's provider: the same nginx, a location whose one-event stream says `42`.
classifier_stream='data: {"id":"chatcmpl-c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"42"},"finish_reason":"stop"}]}

data: [DONE]

'
python3 - "$work/mock.conf" "$classifier_stream" <<'EOF'
import sys
path, stream = sys.argv[1], sys.argv[2]
conf = open(path).read()
location = ("    location /classifier/v1/chat/completions {\n"
            "      default_type text/event-stream;\n"
            f"      return 200 '{stream}';\n    }}\n")
conf = conf.replace("    location /v1/chat/completions {", location + "    location /v1/chat/completions {", 1)
open(path, "w").write(conf)
EOF
nginx -p "$work" -c "$work/mock.conf" -s reload
cat >>"$work/manifests/routes.yaml" <<EOF
---
apiVersion: switchyard.dev/v1alpha1
kind: ProviderPool
metadata: {name: classifiers}
spec:
  providers:
    - name: lean-classifier
      api: OpenAI
      baseUrl: http://127.0.0.1:$mock_port/classifier/v1
      apiKey: {secretKeyRef: {name: keys, key: lean}}
      models:
        - {name: m, inputPerMillion: "0.10", outputPerMillion: "0.20"}
---
apiVersion: switchyard.dev/v1alpha1
kind: ModelRoute
metadata: {name: classifier}
spec:
  model: classifier
  targets:
    - {pool: classifiers, provider: lean-classifier, model: m}
---
apiVersion: switchyard.dev/v1alpha1
kind: ModelRoute
metadata: {name: plain}
spec:
  model: plain
  targets:
    - {pool: bench, provider: lean, model: m}
---
apiVersion: switchyard.dev/v1alpha1
kind: ModelRoute
metadata: {name: scored}
spec:
  model: scored
  complexity:
    scorer: Route
    route: {model: classifier, timeout: 2s, cacheTtl: 1h}
    onError: Min
  targets:
    - {pool: bench, provider: lean, model: m}
EOF

port=$(free_port); admin=$(free_port)
lean_sidecar_args "$port" "$admin"
# RUST_LOG=warn as bench/run.sh: the request log line is not what this measures.
RUST_LOG=warn "$sidecar_bin" "${sidecar_args[@]}" >"$work/sidecar.log" 2>&1 &
sidecar_pid=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done

# One request body per route and size: English text cut to the size, one user message.
for size in $SIZES; do
  for route in plain scored; do
    python3 - "$route" "$size" "$work/$route.$size" <<'EOF'
import json, sys
route, size, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
unit = ("Explain step by step why the integral of x^2 from 0 to 1 is one third, and what the "
        "trapezoid rule would give with four intervals. ")
text = (unit * (size // len(unit) + 1))[:size]
body = json.dumps({"model": route, "max_tokens": 16,
                   "messages": [{"role": "user", "content": text}]})
open(out + ".json", "w").write(body)
# A Lua long string whose level no `]=...=]` in the body can close.
level = "=" * 3
open(out + ".lua", "w").write(
    'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
    f"wrk.body = [{level}[{body}]{level}]\n")
EOF
  done
  # Warm the cache, and check both routes answer, and what they score.
  for route in plain scored; do
    curl -sf -D "$work/headers" "http://127.0.0.1:$port/v1/chat/completions" \
      -H 'content-type: application/json' --data-binary "@$work/$route.$size.json" >"$work/check.out" || {
      echo "bench: route $route did not answer; sidecar log:" >&2; tail -5 "$work/sidecar.log" >&2; exit 1; }
    grep -qF 'Hello from the bench.' "$work/check.out" || { echo "bench: $route answered wrong: $(head -c 300 "$work/check.out")" >&2; exit 1; }
    score=$(awk -F': ' 'tolower($1) == "x-switchyard-complexity" {print $2}' "$work/headers" | tr -d '\r')
    want=$([ "$route" = scored ] && echo 42 || echo "")
    [ "$score" = "$want" ] || { echo "bench: route $route scored '$score', expected '$want'" >&2; exit 1; }
  done
done
classified() { # requests the classifier route has served
  curl -sf "http://127.0.0.1:$admin/metrics" | awk '/^switchyard_requests_total\{/ && /route="classifier"/ {n += $2} END {print n + 0}'
}
asked_before=$(classified)
# The warm-up asked once per size: proof that the counter read is the classifier's.
[ "$asked_before" -ge "$(wc -w <<<"$SIZES")" ] || { echo "bench: the classifier route served $asked_before warm-up requests" >&2; exit 1; }

ticks=$(getconf CLK_TCK)
cpu_ticks() { read -r -a f <"/proc/$1/stat"; echo $((f[13] + f[14])); }
to_ms() { # wrk latency (e.g. 87.00us, 1.20ms) in ms
  awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; printf "%.3f", n }'
}
median() { sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
url="http://127.0.0.1:$port/v1/chat/completions"
for round in $(seq "$ROUNDS"); do
  for size in $SIZES; do
    for route in plain scored; do
      out=$(wrk -t1 -c1 -d"${SECS}s" --latency -s "$work/$route.$size.lua" "$url")
      to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")" >>"$work/$route.$size.p50"; echo >>"$work/$route.$size.p50"
      to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")" >>"$work/$route.$size.p99"; echo >>"$work/$route.$size.p99"
      before=$(cpu_ticks "$sidecar_pid")
      out=$(wrk -t2 -c32 -d"${SECS}s" -s "$work/$route.$size.lua" "$url")
      after=$(cpu_ticks "$sidecar_pid")
      errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")
      [ -n "$errors" ] && echo "round $round $route $size: $errors" >&2
      n=$(awk '/requests in/ {print $1}' <<<"$out")
      awk '/^Requests\/sec/ {print $2}' <<<"$out" >>"$work/$route.$size.rps"
      awk -v d=$((after - before)) -v n="$n" -v hz="$ticks" 'BEGIN {printf "%.1f\n", d / hz * 1e6 / n}' >>"$work/$route.$size.cpu"
      echo "round $round $size B $route: p50 $(tail -n1 "$work/$route.$size.p50") ms at c1, $(tail -n1 "$work/$route.$size.rps") req/s at c32, $(tail -n1 "$work/$route.$size.cpu") µs CPU/request" >&2
    done
  done
done
asked=$(( $(classified) - asked_before ))

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores; CLASSIFIER_SECONDS=$SECS CLASSIFIER_ROUNDS=$ROUNDS; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| prompt | route | p50 at c1 (ms) | p99 at c1 (ms) | req/s at c32 | sidecar CPU per request (µs) |"
echo "| ---: | --- | ---: | ---: | ---: | ---: |"
for size in $SIZES; do
  for route in plain scored; do
    m() { median <"$work/$route.$size.$1"; }
    echo "| $size B | $route | $(m p50) | $(m p99) | $(m rps) | $(m cpu) |"
  done
done
echo
echo "Classifier requests: $asked_before to warm the cache, $asked during the timed rounds (0: every scored request was a cache hit)."
