# The lean provider and the sidecar set-up shared by bench/external.sh and bench/callgrind.sh
# (sourced, not run). Issue 15 measures what the sidecar itself costs, so the provider must cost
# next to nothing: an nginx that answers
#   POST /v1/chat/completions  with one fixed OpenAI stream (three events and `[DONE]`), and
#   POST /v1/embeddings        with one fixed OpenAI embeddings answer (one vector of
#                              LEAN_EMBEDDING_DIMS floats, 256 by default: nginx's `return`
#                              takes at most 4 KiB, and the answer is a constant), and
#   POST /v1/messages          with one fixed Anthropic stream of the same text (the provider
#                              side of a translated request).
# Both streams carry their text in LEAN_DELTAS content deltas (1 by default; at most 20, for
# nginx's 4 KiB): a real answer comes a token or so per event, so per-event costs dominate.
# The sidecar's manifests route model `chat` and model `embed` to it as an OpenAI-format
# provider, and model `claude` as an Anthropic-format one.
#
# The sourcing script sets `work` (a scratch directory) first, or calls lean_workdir, then:
#   lean_workdir            makes the scratch directory $work and, on exit, stops $sidecar_pid
#                           (when the script set it) and the provider and removes $work
#   lean_sidecar_bin        builds the release sidecar unless SIDECAR_BIN names a binary; sets
#                           sidecar_bin
#   lean_provider_start     writes $work/mock.conf and $work/manifests/routes.yaml, starts the
#                           provider on $mock_port (its pid file: $work/mock.pid)
#   lean_sidecar_args PORT ADMIN_PORT   sets the array sidecar_args: the sidecar's arguments
# and uses $LEAN_CHAT_BODY, $LEAN_STREAM_BODY, $LEAN_EMBEDDINGS_BODY, $LEAN_TRANSLATE_BODY (an
# OpenAI-format client's request for model `claude`) and $LEAN_MESSAGES_BODY (the Anthropic
# request a client would send the provider itself), the requests the benches send.
# shellcheck shell=bash

LEAN_CHAT_BODY='{"model":"chat","messages":[{"role":"user","content":"Say hello in five words."}],"max_tokens":16}'
LEAN_STREAM_BODY='{"model":"chat","messages":[{"role":"user","content":"Say hello in five words."}],"max_tokens":16,"stream":true}'
LEAN_EMBEDDINGS_BODY='{"model":"embed","input":"Say hello in five words."}'
LEAN_TRANSLATE_BODY='{"model":"claude","messages":[{"role":"user","content":"Say hello in five words."}],"max_tokens":16}'
LEAN_MESSAGES_BODY='{"model":"c","messages":[{"role":"user","content":"Say hello in five words."}],"max_tokens":16,"stream":true}'

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

lean_sidecar_bin() {
  if [ -n "${SIDECAR_BIN:-}" ]; then
    sidecar_bin=$SIDECAR_BIN
  else
    cargo build --release -p switchyard-sidecar >&2
    sidecar_bin=target/release/switchyard-sidecar
  fi
}

lean_workdir() {
  work=$(mktemp -d)
  sidecar_pid=""
  trap lean_cleanup EXIT
}

lean_cleanup() {
  [ -n "$sidecar_pid" ] && kill "$sidecar_pid" 2>/dev/null || true
  [ -f "$work/mock.pid" ] && kill "$(cat "$work/mock.pid")" 2>/dev/null || true
  sleep 0.3
  rm -rf "$work"
}

lean_provider_start() {
  mock_port=$(free_port)
  local chunk nl stream dims vector embeddings event messages i
  local deltas=${LEAN_DELTAS:-1}
  # One OpenAI stream event with $1 as its choices and $2 as extra fields.
  chunk() {
    printf 'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,"model":"m","choices":%s%s}' "$1" "$2"
  }
  # Events end with a blank line; `$(...)` drops trailing newlines, so they are added here.
  nl=$'\n\n'
  stream="$(chunk '[{"index":0,"delta":{"role":"assistant","content":"Hello from the bench."},"finish_reason":null}]' '')$nl"
  for ((i = 1; i < deltas; i++)); do
    stream+="$(chunk '[{"index":0,"delta":{"content":" token"},"finish_reason":null}]' '')$nl"
  done
  stream+="$(chunk '[{"index":0,"delta":{},"finish_reason":"stop"}]' '')$nl"
  stream+="$(chunk '[]' ',"usage":{"prompt_tokens":9,"completion_tokens":5,"total_tokens":14}')$nl"
  stream+="data: [DONE]$nl"
  # One Anthropic stream event: type $1, data $2.
  event() { printf 'event: %s\ndata: %s' "$1" "$2"; }
  messages="$(event message_start '{"type":"message_start","message":{"id":"msg_bench","type":"message","role":"assistant","model":"c","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":9,"output_tokens":1}}}')$nl"
  messages+="$(event content_block_start '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}')$nl"
  messages+="$(event content_block_delta '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello from the bench."}}')$nl"
  for ((i = 1; i < deltas; i++)); do
    messages+="$(event content_block_delta '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" token"}}')$nl"
  done
  messages+="$(event content_block_stop '{"type":"content_block_stop","index":0}')$nl"
  messages+="$(event message_delta '{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":5}}')$nl"
  messages+="$(event message_stop '{"type":"message_stop"}')$nl"
  dims=${LEAN_EMBEDDING_DIMS:-256}
  # Floats with the digits a real model's vectors have (-0.0123456789).
  vector=$(awk -v n="$dims" 'BEGIN {for (i = 0; i < n; i++) printf "%s%.10f", (i ? "," : ""), sin(i) / 10}')
  embeddings="{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,\"embedding\":[$vector]}],\"model\":\"e\",\"usage\":{\"prompt_tokens\":6,\"total_tokens\":6}}"

  cat >"$work/mock.conf" <<EOF
worker_processes 1;
pid $work/mock.pid;
error_log $work/mock.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/mock-body;
  server {
    listen 127.0.0.1:$mock_port;
    keepalive_requests 1000000;
    location /v1/chat/completions {
      default_type text/event-stream;
      return 200 '$stream';
    }
    location /v1/embeddings {
      default_type application/json;
      return 200 '$embeddings';
    }
    location /v1/messages {
      default_type text/event-stream;
      return 200 '$messages';
    }
  }
}
EOF
  # The manifests get a folder of their own, as in a pod: the sidecar watches theirs, and logs
  # written beside them would wake its watcher on every write.
  mkdir -p "$work/manifests"
  cat >"$work/manifests/routes.yaml" <<EOF
apiVersion: switchyard.dev/v1alpha1
kind: ProviderPool
metadata: {name: bench}
spec:
  providers:
    - name: lean
      api: OpenAI
      baseUrl: http://127.0.0.1:$mock_port/v1
      apiKey: {secretKeyRef: {name: keys, key: lean}}
      models:
        - {name: m, inputPerMillion: "1.00", outputPerMillion: "2.00"}
        - {name: e, type: Embedding, inputPerMillion: "0.02", outputPerMillion: "0"}
    - name: lean-anthropic
      api: Anthropic
      baseUrl: http://127.0.0.1:$mock_port
      apiKey: {secretKeyRef: {name: keys, key: lean}}
      models:
        - {name: c, inputPerMillion: "1.00", outputPerMillion: "2.00"}
---
apiVersion: v1
kind: Secret
metadata: {name: keys}
stringData: {lean: sk-bench}
---
apiVersion: switchyard.dev/v1alpha1
kind: ModelRoute
metadata: {name: chat}
spec:
  model: chat
  targets:
    - {pool: bench, provider: lean, model: m}
---
apiVersion: switchyard.dev/v1alpha1
kind: ModelRoute
metadata: {name: embed}
spec:
  model: embed
  targets:
    - {pool: bench, provider: lean, model: e}
---
apiVersion: switchyard.dev/v1alpha1
kind: ModelRoute
metadata: {name: claude}
spec:
  model: claude
  targets:
    - {pool: bench, provider: lean-anthropic, model: c}
EOF
  nginx -p "$work" -c "$work/mock.conf"
}

lean_sidecar_args() {
  sidecar_args=(--manifests "$work/manifests/routes.yaml" --listen "127.0.0.1:$1" --admin-listen "127.0.0.1:$2" --debug-listen "")
}
