#!/usr/bin/env bash
# Where a request's CPU goes in the release sidecar: instruction counts per function from
# valgrind's callgrind, for a fixed number of requests (issue 15).
#
# The setup is bench/external.sh's (bench/lean.sh): a lean nginx provider that answers every chat
# request with one fixed OpenAI stream, the release sidecar with its default JSON request log (to
# a file), and the same non-streamed chat request. The sidecar runs under callgrind; after a warm-up, counters are
# zeroed, CALLGRIND_REQUESTS requests are sent over one keep-alive connection (curl), and the
# counters are dumped. Instruction counts do not depend on what else the machine runs, so two
# builds compare exactly (wall-clock benches on this shared machine do not).
#
#   bench/callgrind.sh                        # 2,000 requests; prints Ir per request and the top functions
#   CALLGRIND_REQUESTS=500 CALLGRIND_TOP=60 bench/callgrind.sh
#   CALLGRIND_OUT=/tmp/cg.out bench/callgrind.sh   # keep the profile (callgrind_annotate it yourself)
#   SIDECAR_BIN=/tmp/old-sidecar bench/callgrind.sh  # a saved binary instead of building this tree
#   CALLGRIND_REQUEST=translate bench/callgrind.sh  # another of bench/external.sh's chat requests:
#                                  chat (default), stream, translate (to the Anthropic provider),
#                                  or messages (an Anthropic client's streamed request to the
#                                  Anthropic provider: events passed through)
#
# Needs nginx (Debian nginx-light) and valgrind. Listens on 127.0.0.1 only, stops everything on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS=${CALLGRIND_REQUESTS:-2000}
TOP=${CALLGRIND_TOP:-40}
WARMUP=50

command -v nginx >/dev/null || { echo "bench/callgrind.sh needs nginx (Debian: nginx-light)" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "bench/callgrind.sh needs valgrind" >&2; exit 2; }
# shellcheck source=bench/lean.sh
. bench/lean.sh
lean_sidecar_bin

lean_workdir

data_port=$(free_port); admin_port=$(free_port)
endpoint=/v1/chat/completions
case ${CALLGRIND_REQUEST:-chat} in
  chat) body=$LEAN_CHAT_BODY ;;
  stream) body=$LEAN_STREAM_BODY ;;
  translate) body=$LEAN_TRANSLATE_BODY ;;
  messages) body=${LEAN_MESSAGES_BODY/'"model":"c"'/'"model":"claude"'}; endpoint=/v1/messages ;;
  *) echo "bench/callgrind.sh: CALLGRIND_REQUEST is chat, stream, translate or messages" >&2; exit 2 ;;
esac
# One curl, one keep-alive connection, `n` requests: a config file with one `url` (and `output`:
# curl's -o applies to one URL only) per request.
send() {
  local n=$1 i
  for ((i = 0; i < n; i++)); do
    printf 'url = "http://127.0.0.1:%s%s"\noutput = "/dev/null"\n' "$data_port" "$endpoint"
  done >"$work/curl.conf"
  curl -s -w '%{http_code}\n' -K "$work/curl.conf" -H 'content-type: application/json' -d "$body" \
    | grep -vc '^200$' || true
}

lean_provider_start
lean_sidecar_args "$data_port" "$admin_port"
case $sidecar_bin in /*) ;; *) sidecar_bin=$PWD/$sidecar_bin ;; esac
(cd "$work" && exec valgrind --tool=callgrind --log-file="$work/valgrind.log" --callgrind-out-file="$work/callgrind.out" \
  "$sidecar_bin" "${sidecar_args[@]}" >"$work/sidecar.log" 2>&1) &
sidecar_pid=$!
for _ in $(seq 600); do
  curl -sf "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
failed=$(send "$WARMUP")
[ "$failed" = 0 ] || { echo "bench: $failed warm-up requests failed; sidecar log:" >&2; tail -5 "$work/sidecar.log" >&2; exit 1; }
callgrind_control --zero "$sidecar_pid" >/dev/null
failed=$(send "$REQUESTS")
[ "$failed" = 0 ] || { echo "bench: $failed of $REQUESTS requests failed" >&2; exit 1; }
callgrind_control --dump=measured "$sidecar_pid" >/dev/null
sleep 0.5
profile=$(ls -t "$work"/callgrind.out* | head -n1)
logged=$(grep -c '"message":"request"' "$work/sidecar.log" || true)
total=$(callgrind_annotate "$profile" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'); ${SIDECAR_BIN:-$(git rev-parse --short HEAD)$(git diff --quiet -- sidecar || echo '+changes')}; CALLGRIND_REQUESTS=$REQUESTS; CALLGRIND_REQUEST=${CALLGRIND_REQUEST:-chat}"
echo
echo "Instructions per request (the sidecar's every thread): $(awk -v t="$total" -v n="$REQUESTS" 'BEGIN {printf "%.0f", t / n}')"
echo "Request log lines: $logged (warm-up included: $((REQUESTS + WARMUP)) requests)"
echo
echo "Top $TOP functions, inclusive Ir per request:"
callgrind_annotate --inclusive=yes "$profile" 2>/dev/null \
  | awk -v n="$REQUESTS" -v top="$TOP" '
      /^-+$/ {sep++; next}
      sep >= 3 && NF >= 2 && $1 ~ /^[0-9,]+$/ && shown < top {
        ir = $1; gsub(",", "", ir); $1 = ""; pct = $2; $2 = ""
        printf "%10.0f  %s %s\n", ir / n, pct, substr($0, 3); shown++ }'
[ -n "${CALLGRIND_OUT:-}" ] && cp "$profile" "$CALLGRIND_OUT"
true
