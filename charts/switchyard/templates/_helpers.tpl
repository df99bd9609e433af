{{/*
Shared names, labels and image references. Object names are fixed, not prefixed with the release
name: the operator's serving certificate covers `switchyard-config.<ns>.svc` and
`switchyard-webhook.<ns>.svc`, and the CRDs, webhook configuration and ClusterRole are cluster-wide,
so there is one release per cluster.
*/}}

{{/* The chart label, `switchyard-0.1.0`. */}}
{{- define "switchyard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "switchyard.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: switchyard
helm.sh/chart: {{ include "switchyard.chart" . }}
{{- with .Values.global.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels that select the operator's pods (stable across upgrades: no version). */}}
{{- define "switchyard.operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* Every label of an operator-owned object: the common ones plus the component. */}}
{{- define "switchyard.operator.labels" -}}
{{ include "switchyard.labels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* Fixed object names. */}}
{{- define "switchyard.operator.name" -}}switchyard-operator{{- end -}}
{{- define "switchyard.configService.name" -}}switchyard-config{{- end -}}
{{- define "switchyard.webhookService.name" -}}switchyard-webhook{{- end -}}
{{- define "switchyard.metricsService.name" -}}switchyard-operator-metrics{{- end -}}
{{/* The Secret the operator creates (create-only) for its CA and serving certificate. */}}
{{- define "switchyard.certSecret.name" -}}switchyard-certs{{- end -}}

{{/*
An image reference from {repository, tag, digest}: the digest wins, then the tag, then the
chart's appVersion. Call with (dict "image" .Values.x.image "context" $).
*/}}
{{- define "switchyard.image" -}}
{{- $image := .image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default .context.Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
Namespaces the webhook never sees (docs/reference/operator.md): kube-system, kube-node-lease, the operator's own
namespace (so the operator is never injected and cannot block its own start) and any extras.
*/}}
{{- define "switchyard.webhook.excludedNamespaces" -}}
{{- $namespaces := list "kube-system" "kube-node-lease" .Release.Namespace -}}
{{- range .Values.webhook.excludeNamespaces -}}
{{- $namespaces = append $namespaces . -}}
{{- end -}}
{{- toYaml ($namespaces | uniq) -}}
{{- end -}}

{{/* The webhook's clientConfig: the `switchyard-webhook` Service, or `webhook.url` when set. */}}
{{- define "switchyard.webhook.clientConfig" -}}
{{- if .Values.webhook.url -}}
url: {{ include "switchyard.webhookURL" . | quote }}
{{- else -}}
service:
  name: {{ include "switchyard.webhookService.name" . }}
  namespace: {{ .Release.Namespace }}
  path: /inject
  port: 443
{{- end -}}
{{- end -}}

{{/* `webhook.url` with `/inject` once: the base URL and the full endpoint are both accepted. */}}
{{- define "switchyard.webhookURL" -}}
{{- printf "%s/inject" (.Values.webhook.url | trimSuffix "/" | trimSuffix "/inject") -}}
{{- end -}}

{{/* The injected sidecars' extra environment (`--sidecar-env`, a JSON object): the OpenTelemetry
settings of sidecar.otel, then sidecar.extraEnv. Empty when neither sets anything. */}}
{{- define "switchyard.sidecarEnv" -}}
{{- $env := dict -}}
{{- with .Values.sidecar.otel -}}
{{- if .endpoint -}}
{{- $_ := set $env "OTEL_EXPORTER_OTLP_ENDPOINT" .endpoint -}}
{{- $_ := set $env "OTEL_EXPORTER_OTLP_PROTOCOL" .protocol -}}
{{- if .serviceName -}}
{{- $_ := set $env "OTEL_SERVICE_NAME" .serviceName -}}
{{- end -}}
{{- if .resourceAttributes -}}
{{- $attrs := list -}}
{{- range $k, $v := .resourceAttributes -}}
{{- /* Values percent-encoded (W3C Baggage, as the OTel specification says): a comma or an
equals sign in a value would otherwise split it. urlquery writes a space as "+", a "+" as %2B. */ -}}
{{- $attrs = append $attrs (printf "%s=%s" $k (toString $v | urlquery | replace "+" "%20")) -}}
{{- end -}}
{{- $_ := set $env "OTEL_RESOURCE_ATTRIBUTES" (join "," $attrs) -}}
{{- end -}}
{{- if .propagateUpstream -}}
{{- $_ := set $env "SWITCHYARD_OTEL_PROPAGATE_UPSTREAM" "true" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $k, $v := .Values.sidecar.extraEnv -}}
{{- $_ := set $env $k (toString $v) -}}
{{- end -}}
{{- if $env -}}{{ toJson $env }}{{- end -}}
{{- end -}}
