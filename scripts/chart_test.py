"""Checks charts/switchyard and the kubectl examples without a cluster or a helm binary.

Run through scripts/chart-test, which installs the pinned packages into .venv-chart. For each value
set in CASES it renders the chart with the Helm SDK (helm-python-sdk, Helm v4 as a library), lints
it strictly, validates every rendered object against the Kubernetes 1.28 and 1.33 OpenAPI schemas
(kubernetes-validate, strict: unknown fields fail) and checks what docs/reference/operator.md and the chart README promise: labels,
RBAC without wildcards and with exactly the rules the operator needs, non-root read-only
containers, the webhook configuration (no caBundle, selectors, failurePolicy), the Services the
operator's certificate names, the PodDisruptionBudget and the CRDs (equal to crds/manifests). It
also checks that values.schema.json rejects bad values, that every value is documented and the
chart README's values table is current (`--update-readme` rewrites it), and that
examples/quickstart and examples/demo-app are valid. Exits 1 with one line per failure.
"""

from __future__ import annotations

import copy
import functools
import json
import pathlib
import re
import sys
import time
import urllib.parse
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import kubernetes_validate.utils
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "switchyard"
DASHBOARD = CHART / "dashboards" / "switchyard.json"
METRICS_DOC = ROOT / "docs" / "reference" / "metrics.md"
CRD_MANIFESTS = ROOT / "crds" / "manifests"
QUICKSTART = ROOT / "examples" / "quickstart"
DEMO_APP = ROOT / "examples" / "demo-app"

KUBE_VERSIONS = ["1.28.0", "1.33.0"]
KEEP = "helm.sh/resource-policy"
CLUSTER_SCOPED = {
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
}

failures: list[str] = []

# NB: kubernetes-validate re-reads its (large) JSON schemas on every call, which made this script
# take ~25 s. Memoizing the pinned version's loader keeps it to a few seconds; the schemas are only
# read, never mutated. Without the hook (another version) it is merely slower.
if hasattr(kubernetes_validate.utils, "schema_contents"):
    kubernetes_validate.utils.schema_contents = functools.lru_cache(maxsize=None)(
        kubernetes_validate.utils.schema_contents
    )


def fail(where: str, message: str) -> None:
    failures.append(f"{where}: {message}")


def check(condition: bool, where: str, message: str) -> bool:
    if not condition:
        fail(where, message)
    return condition


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep merge, like Helm coalescing user values over the chart's defaults."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# === value sets ===

# (case name, release name, namespace, values given to helm)
CASES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("defaults", "switchyard", "switchyard-system", {}),
    ("crds-disabled", "switchyard", "switchyard-system", {"crds": {"enabled": False}}),
    ("crds-not-kept", "switchyard", "switchyard-system", {"crds": {"keep": False}}),
    (
        "webhook-url",
        "switchyard",
        "switchyard-system",
        {"webhook": {"url": "https://host.docker.internal:8443/"}},
    ),
    (
        "webhook-url-with-path",
        "switchyard",
        "switchyard-system",
        {"webhook": {"url": "https://host.docker.internal:8443/inject"}},
    ),
    ("failure-ignore", "switchyard", "switchyard-system", {"webhook": {"failurePolicy": "Ignore"}}),
    (
        "service-monitor",
        "switchyard",
        "switchyard-system",
        {"prometheus": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}},
    ),
    ("single-replica", "switchyard", "switchyard-system", {"operator": {"replicas": 1}}),
    (
        "otel-and-dashboard",
        "switchyard",
        "switchyard-system",
        {
            "sidecar": {
                "otel": {
                    "endpoint": "http://otel-collector.observability:4317",
                    "protocol": "grpc",
                    "serviceName": "llm-sidecar",
                    "resourceAttributes": {"deployment.environment": "prod east", "team": "a,b=c+d%"},
                    "propagateUpstream": True,
                },
                "extraEnv": {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
            },
            "grafana": {"dashboard": {"enabled": True, "labels": {"team": "platform"}, "annotations": {"grafana_folder": "LLM"}}},
            "operator": {"otel": {"endpoint": "http://otel-collector.observability:4318"}},
        },
    ),
    (
        "customized",
        "sy",
        "llm-ops",
        {
            "global": {
                "imagePullSecrets": [{"name": "ghcr-pull"}],
                "commonLabels": {"team": "platform"},
            },
            "operator": {
                "replicas": 3,
                "image": {"digest": "sha256:" + "ab" * 32},
                "logLevel": "info,switchyard_operator=debug",
                "nodeSelector": {"pool": "system"},
                "tolerations": [{"key": "system", "operator": "Exists", "effect": "NoSchedule"}],
                "affinity": {
                    "podAntiAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": [
                            {
                                "topologyKey": "topology.kubernetes.io/zone",
                                "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "operator"}},
                            }
                        ]
                    }
                },
                "priorityClassName": "system-cluster-critical",
                "podAnnotations": {"example.com/scrape": "false"},
                "podLabels": {"tier": "control"},
                "serviceAccount": {"annotations": {"iam.example.com/role": "switchyard"}},
                "podDisruptionBudget": {"minAvailable": 2},
                "resources": {"requests": {"cpu": 0.5, "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
            },
            "webhook": {"name": "switchyard-dev", "timeoutSeconds": 10, "excludeNamespaces": ["monitoring"]},
            "sidecar": {
                "image": {"tag": "0.1.0-rc1"},
                "mode": "native",
                "resources": {"requests": {"cpu": "0.1", "memory": "48Mi"}, "limits": {"cpu": "1", "memory": "1e8"}},
            },
        },
    ),
]

# Values the schema must refuse, with what is wrong with them.
BAD_VALUES: list[tuple[str, dict[str, Any]]] = [
    ("unknown top-level key", {"replicaCount": 3}),
    ("unknown nested key", {"operator": {"replica": 3}}),
    ("unknown key in a typed object", {"sidecar": {"resources": {"request": {"cpu": "1"}}}}),
    ("sidecar quantity as a number (the operator parses JSON strings)", {"sidecar": {"resources": {"limits": {"cpu": 1}}}}),
    ("sidecar resources claims (the operator takes requests and limits only)", {"sidecar": {"resources": {"claims": [{"name": "gpu"}]}}}),
    ("a quantity that is not one", {"sidecar": {"resources": {"requests": {"memory": "lots"}}}}),
    ("replicas as a string", {"operator": {"replicas": "two"}}),
    ("replicas zero", {"operator": {"replicas": 0}}),
    ("crds.enabled as a string", {"crds": {"enabled": "yes"}}),
    ("failurePolicy Sometimes", {"webhook": {"failurePolicy": "Sometimes"}}),
    ("sidecar.mode sometimes", {"sidecar": {"mode": "sometimes"}}),
    ("webhook.url over plain http", {"webhook": {"url": "http://example.com:8443"}}),
    ("webhook.url with a path other than /inject", {"webhook": {"url": "https://example.com:8443/hooks/inject"}}),
    ("timeoutSeconds above 30", {"webhook": {"timeoutSeconds": 31}}),
    ("pullPolicy typo", {"operator": {"image": {"pullPolicy": "IfNotThere"}}}),
    ("tolerations as an object", {"operator": {"tolerations": {"key": "x"}}}),
    ("serviceMonitor.enabled as a string", {"prometheus": {"serviceMonitor": {"enabled": "true"}}}),
    ("otel protocol http/json (not built)", {"sidecar": {"otel": {"protocol": "http/json"}}}),
    ("otel endpoint without a scheme", {"sidecar": {"otel": {"endpoint": "collector:4318"}}}),
    ("operator otel protocol typo", {"operator": {"otel": {"protocol": "gRPC"}}}),
    ("sidecar otel https over grpc (no TLS)", {"sidecar": {"otel": {"endpoint": "https://c:4317", "protocol": "grpc"}}}),
    ("operator otel https over grpc (no TLS)", {"operator": {"otel": {"endpoint": "https://c:4317", "protocol": "grpc"}}}),
    ("resourceAttributes key with a comma", {"sidecar": {"otel": {"resourceAttributes": {"a,b": "x"}}}}),
    ("extraEnv name with a space", {"sidecar": {"extraEnv": {"MY VAR": "x"}}}),
    ("grafana.dashboard.enabled as a string", {"grafana": {"dashboard": {"enabled": "yes"}}}),
]

# The operator's permissions, exactly (docs/reference/operator.md): (apiGroup, resource, verb,
# resourceName or None). Anything more or less fails.
CLUSTER_RULES = {
    *{("switchyard.dev", r, v, None) for r in ("modelroutes", "providerpools", "budgets", "prompttemplates") for v in ("get", "list", "watch")},
    *{("switchyard.dev", r, "patch", None) for r in ("modelroutes/status", "providerpools/status", "budgets/status", "prompttemplates/status")},
    *{("", r, v, None) for r in ("secrets", "pods", "namespaces") for v in ("list", "watch")},
    ("", "nodes", "list", None),
    # Spend per workload: a pod's ReplicaSet or Job, read by name (metadata only) for its owner.
    ("apps", "replicasets", "get", None),
    ("batch", "jobs", "get", None),
    ("authentication.k8s.io", "tokenreviews", "create", None),
    ("", "configmaps", "create", None),
    ("", "configmaps", "patch", None),
    # Complexity models named by routes: a metadata-only watch, then a read by name.
    *{("", "configmaps", v, None) for v in ("get", "list", "watch")},
    ("events.k8s.io", "events", "create", None),
    ("events.k8s.io", "events", "patch", None),
    # + mutatingwebhookconfigurations get/patch on the webhook's name, added per case.
}
NAMESPACE_RULES = {
    *{("coordination.k8s.io", "leases", v, None) for v in ("get", "create", "update", "patch")},
    ("", "secrets", "create", None),
    ("", "secrets", "get", "switchyard-certs"),
    ("", "secrets", "update", "switchyard-certs"),
    ("", "pods", "patch", None),
}

# A minimal schema for the prometheus-operator ServiceMonitor (a CRD kind that kubernetes-validate
# has no schema for): the fields this chart sets, nothing unknown.
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "matchExpressions": {"type": "array"},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": {"type": "string", "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"},
                        },
                    },
                },
            },
        },
    },
}


# === helpers ===


def sidecar_env(sidecar: dict[str, Any]) -> dict[str, str]:
    """The environment the operator's --sidecar-env should carry for these sidecar values."""
    env: dict[str, str] = {}
    otel = sidecar.get("otel", {})
    if otel.get("endpoint"):
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otel["endpoint"]
        env["OTEL_EXPORTER_OTLP_PROTOCOL"] = otel["protocol"]
        if otel.get("serviceName"):
            env["OTEL_SERVICE_NAME"] = otel["serviceName"]
        if otel.get("resourceAttributes"):
            # Values percent-encoded as Go's url.QueryEscape does, with %20 for a space.
            env["OTEL_RESOURCE_ATTRIBUTES"] = ",".join(
                f"{k}={urllib.parse.quote(str(v), safe='')}" for k, v in sorted(otel["resourceAttributes"].items())
            )
        if otel.get("propagateUpstream"):
            env["SWITCHYARD_OTEL_PROPAGATE_UPSTREAM"] = "true"
    env.update({k: str(v) for k, v in sidecar.get("extraEnv", {}).items()})
    return env


def check_dashboard() -> None:
    """dashboards/switchyard.json parses as a Grafana dashboard, and every metric its PromQL names
    is in docs/reference/metrics.md (whose sidecar names tests/cases/standalone_otel.rs checks
    against a live scrape)."""
    w = "dashboard"
    try:
        board = json.loads(DASHBOARD.read_text())
    except json.JSONDecodeError as e:
        fail(w, f"{DASHBOARD} is not JSON: {e}")
        return
    documented = set(re.findall(r"^\| `(switchyard_[a-z_]+)`", METRICS_DOC.read_text(), re.M))
    check(len(documented) > 20, w, f"found only {len(documented)} metric names in {METRICS_DOC}")
    check(board.get("uid") == "switchyard" and board.get("title"), w, "uid and title")
    exprs = []
    for panel in board.get("panels", []):
        for target in panel.get("targets", []):
            exprs.append(target["expr"])
    for var in board.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            exprs.append(var["definition"])
    check(len(exprs) > 20, w, f"only {len(exprs)} queries")
    used = set()
    for expr in exprs:
        check(expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), w, f"unbalanced: {expr}")
        for name in re.findall(r"\b(switchyard_[a-z_]+)", expr):
            base = re.sub(r"_(bucket|count|sum)$", "", name)
            used.add(base)
            check(base in documented, w, f"{name} is not in {METRICS_DOC.name}")
    for family in ("switchyard_requests_total", "switchyard_failovers_total", "switchyard_circuit_open",
                   "switchyard_request_duration_seconds", "switchyard_time_to_first_token_seconds",
                   "switchyard_tokens_total", "switchyard_cost_usd_total", "switchyard_workload_cost_usd_total",
                   "switchyard_budget_remaining", "switchyard_controller_reconciles_total"):
        check(family in used, w, f"no panel uses {family}")


def load_docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def find_key(value: Any, key: str) -> bool:
    """Whether `key` appears as a mapping key anywhere inside `value`."""
    if isinstance(value, dict):
        return key in value or any(find_key(v, key) for v in value.values())
    if isinstance(value, list):
        return any(find_key(v, key) for v in value)
    return False


def strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


def kube_validate(where: str, doc: dict[str, Any]) -> None:
    for version in KUBE_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            fail(where, f"invalid for Kubernetes {version} at {path or '<root>'}: {e.message}")
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
            fail(where, f"cannot validate for Kubernetes {version}: {e.message}")


def rule_tuples(rules: list[dict[str, Any]]) -> set[tuple[str, str, str, str | None]]:
    out = set()
    for rule in rules:
        names = rule.get("resourceNames") or [None]
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule.get("verbs", []):
                    for name in names:
                        out.add((group, resource, verb, name))
    return out


def check_container_security(where: str, pod_spec: dict[str, Any]) -> None:
    pod_sc = pod_spec.get("securityContext", {})
    containers = pod_spec.get("containers", []) + pod_spec.get("initContainers", [])
    check(bool(containers), where, "no containers")
    for c in containers:
        w = f"{where} container {c.get('name')}"
        sc = c.get("securityContext", {})

        def effective(key: str) -> Any:
            return sc.get(key, pod_sc.get(key))

        check(effective("runAsNonRoot") is True, w, "runAsNonRoot is not true")
        uid = effective("runAsUser")
        check(uid is None or uid != 0, w, "runs as uid 0")
        check(sc.get("readOnlyRootFilesystem") is True, w, "readOnlyRootFilesystem is not true")
        check(sc.get("allowPrivilegeEscalation") is False, w, "allowPrivilegeEscalation is not false")
        check(sc.get("privileged", False) is False, w, "privileged")
        check("ALL" in sc.get("capabilities", {}).get("drop", []), w, "capabilities do not drop ALL")
        check(not sc.get("capabilities", {}).get("add"), w, "adds capabilities")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        check(seccomp == "RuntimeDefault", w, f"seccompProfile is {seccomp!r}, not RuntimeDefault")
    check(not pod_spec.get("hostNetwork") and not pod_spec.get("hostPID"), where, "uses host namespaces")


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def strip_crd(doc: dict[str, Any]) -> dict[str, Any]:
    """A rendered CRD without what the chart adds: its labels and the keep annotation."""
    doc = copy.deepcopy(doc)
    meta = doc.get("metadata", {})
    meta.pop("labels", None)
    annotations = meta.get("annotations", {})
    annotations.pop(KEEP, None)
    if not annotations:
        meta.pop("annotations", None)
    return doc


# === one value set ===


def check_case(chart: helm.Chart, defaults: dict[str, Any], case: str, release: str, ns: str, given: dict[str, Any]) -> None:
    values = merge(defaults, given)
    w = case

    report = helm.lint(str(CHART), given, strict=True, namespace=ns)
    for m in report.get("messages", []):
        if m.get("severity", 0) >= 2:
            fail(w, f"helm lint --strict: {m.get('path')}: {m.get('error', '').strip()}")
    for e in report.get("errors", []):
        fail(w, f"helm lint --strict: {e.strip()}")

    try:
        rendered = chart.render(given, name=release, namespace=ns, is_install=True)
    except helm.HelmError as e:
        fail(w, f"render failed: {e}")
        return

    notes = next((t for p, t in rendered.items() if p.endswith("NOTES.txt")), "")
    for needle in ("switchyard.dev/inject=true", "get modelroutes", "examples/quickstart"):
        check(needle in notes, w, f"NOTES.txt does not mention {needle!r}")
    if values["webhook"]["failurePolicy"] == "Ignore":
        check("may start without Switchyard" in notes, w, "NOTES.txt does not warn about failurePolicy Ignore")

    objects: list[tuple[str, dict[str, Any]]] = []
    for path, text in sorted(rendered.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        try:
            objects.extend((path, d) for d in load_docs(text))
        except yaml.YAMLError as e:
            fail(w, f"{path} is not valid YAML: {e}")
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for _, d in objects:
        by_kind.setdefault(d["kind"], []).append(d)

    def one(kind: str, name: str) -> dict[str, Any] | None:
        found = [d for d in by_kind.get(kind, []) if d["metadata"]["name"] == name]
        check(len(found) == 1, w, f"expected one {kind} {name}, found {len(found)}")
        return found[0] if len(found) == 1 else None

    # Every object: valid, labelled, in the release namespace.
    want_labels = {
        "app.kubernetes.io/name": "switchyard",
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/version": "0.1.0",
        "app.kubernetes.io/managed-by": "Helm",
        "helm.sh/chart": "switchyard-0.1.0",
        **values["global"]["commonLabels"],
    }
    for path, d in objects:
        ow = f"{w} {path} {d['kind']}/{d['metadata'].get('name')}"
        if d["kind"] == "ServiceMonitor":
            # A prometheus-operator CRD kind: kubernetes-validate has no schema for it.
            try:
                jsonschema.validate(d, SERVICE_MONITOR_SCHEMA)
            except jsonschema.ValidationError as e:
                fail(ow, f"does not match the minimal ServiceMonitor schema: {e.message}")
        else:
            kube_validate(ow, d)
        labels = d["metadata"].get("labels", {})
        for k, v in want_labels.items():
            check(labels.get(k) == v, ow, f"label {k} is {labels.get(k)!r}, want {v!r}")
        if d["kind"] in CLUSTER_SCOPED:
            check("namespace" not in d["metadata"], ow, "cluster-scoped object has a namespace")
        else:
            check(d["metadata"].get("namespace") == ns, ow, f"namespace is {d['metadata'].get('namespace')!r}, not {ns!r}")
    check("Secret" not in by_kind, w, "the chart must not create Secrets (the operator creates switchyard-certs)")
    check(not [d for d in by_kind.get("Namespace", [])], w, "the chart must not create Namespaces")

    # RBAC: no wildcard anywhere, exactly the expected rules, bound to the ServiceAccount.
    webhook_name = values["webhook"]["name"]
    for kind in ("ClusterRole", "Role"):
        for d in by_kind.get(kind, []):
            check("*" not in strings(d.get("rules", [])), w, f"{kind} {d['metadata']['name']} has a '*'")
    cluster_role = one("ClusterRole", "switchyard-operator")
    if cluster_role:
        want = CLUSTER_RULES | {
            ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", v, webhook_name) for v in ("get", "patch")
        }
        got = rule_tuples(cluster_role["rules"])
        check(got == want, w, f"ClusterRole rules differ: extra {sorted(got - want, key=str)}, missing {sorted(want - got, key=str)}")
    role = one("Role", "switchyard-operator")
    if role:
        got = rule_tuples(role["rules"])
        check(got == NAMESPACE_RULES, w, f"Role rules differ: extra {sorted(got - NAMESPACE_RULES, key=str)}, missing {sorted(NAMESPACE_RULES - got, key=str)}")
    one("ServiceAccount", "switchyard-operator")
    sa_subject = [{"kind": "ServiceAccount", "name": "switchyard-operator", "namespace": ns}]
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        binding = one(kind, "switchyard-operator")
        if binding:
            check(binding["subjects"] == sa_subject, w, f"{kind} subjects are {binding['subjects']}")
            check(binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": "switchyard-operator"},
                  w, f"{kind} roleRef is {binding['roleRef']}")

    # The operator Deployment.
    pod_labels: dict[str, str] = {}
    selector: dict[str, str] = {}
    deployment = one("Deployment", "switchyard-operator")
    if deployment:
        spec = deployment["spec"]
        pod = spec["template"]["spec"]
        pod_labels = spec["template"]["metadata"]["labels"]
        selector = spec["selector"]["matchLabels"]
        check(spec["replicas"] == values["operator"]["replicas"], w, f"replicas {spec['replicas']}")
        check(selects(selector, pod_labels), w, "Deployment selector does not select its own pods")
        check("switchyard.dev/role" not in pod_labels, w, "pods must not start labelled as leader")
        check(pod.get("serviceAccountName") == "switchyard-operator", w, "serviceAccountName")
        check_container_security(f"{w} Deployment", pod)
        check(pod.get("imagePullSecrets", []) == values["global"]["imagePullSecrets"], w, "imagePullSecrets")
        check(pod.get("priorityClassName", "") == values["operator"]["priorityClassName"], w, "priorityClassName")
        check(pod.get("nodeSelector", {}) == values["operator"]["nodeSelector"], w, "nodeSelector")
        check(pod.get("tolerations", []) == values["operator"]["tolerations"], w, "tolerations")
        if values["operator"]["affinity"]:
            check(pod.get("affinity") == values["operator"]["affinity"], w, "affinity from values not used")
        else:
            soft = pod.get("affinity", {}).get("podAntiAffinity", {}).get("preferredDuringSchedulingIgnoredDuringExecution", [])
            check(
                any(t["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
                    and t["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector for t in soft),
                w, "default affinity is not a soft anti-affinity across nodes",
            )
        containers = pod["containers"]
        check(len(containers) == 1, w, "the operator pod should have one container")
        c = containers[0]
        image = values["operator"]["image"]
        want_image = (f"{image['repository']}@{image['digest']}" if image["digest"]
                      else f"{image['repository']}:{image['tag'] or '0.1.0'}")
        check(c["image"] == want_image, w, f"operator image {c['image']!r}, want {want_image!r}")
        check(c.get("imagePullPolicy") == image["pullPolicy"], w, "imagePullPolicy")
        flags = {}
        for arg in c.get("args", []):
            key, _, value = arg.partition("=")
            flags[key] = value
        simage = values["sidecar"]["image"]
        want_sidecar = (f"{simage['repository']}@{simage['digest']}" if simage["digest"]
                        else f"{simage['repository']}:{simage['tag'] or '0.1.0'}")
        want_flags = {
            "--sidecar-image": want_sidecar,
            "--sidecar-mode": values["sidecar"]["mode"],
            "--webhook-config-name": webhook_name,
            "--config-listen": "0.0.0.0:9443",
            "--webhook-listen": "0.0.0.0:8443",
            "--admin-listen": "0.0.0.0:8080",
        }
        for flag, want in want_flags.items():
            check(flags.get(flag) == want, w, f"{flag} is {flags.get(flag)!r}, want {want!r}")
        try:
            check(json.loads(flags.get("--sidecar-resources", "")) == values["sidecar"]["resources"],
                  w, "--sidecar-resources is not sidecar.resources as JSON")
        except json.JSONDecodeError:
            fail(w, f"--sidecar-resources is not JSON: {flags.get('--sidecar-resources')!r}")
        want_env = sidecar_env(values["sidecar"])
        if want_env:
            try:
                got_env = json.loads(flags.get("--sidecar-env", ""))
                check(got_env == want_env, w, f"--sidecar-env is {got_env}, want {want_env}")
            except json.JSONDecodeError:
                fail(w, f"--sidecar-env is not JSON: {flags.get('--sidecar-env')!r}")
        else:
            check("--sidecar-env" not in flags, w, "--sidecar-env passed with nothing to set")
        check("--cert-dir" not in flags, w, "in a cluster the operator keeps certificates in its Secret, not --cert-dir")
        env = {e["name"]: e for e in c.get("env", [])}
        for name, field in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")):
            got = env.get(name, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            check(got == field, w, f"env {name} is not the downward API {field}")
        check(env.get("RUST_LOG", {}).get("value") == values["operator"]["logLevel"], w, "RUST_LOG is not operator.logLevel")
        otel = values["operator"]["otel"]
        want_otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": otel["endpoint"], "OTEL_EXPORTER_OTLP_PROTOCOL": otel["protocol"]} if otel["endpoint"] else {}
        got_otel = {k: v.get("value") for k, v in env.items() if k.startswith("OTEL_")}
        check(got_otel == want_otel, w, f"operator OTEL_* env is {got_otel}, want {want_otel}")
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        check(ports == {"config": 9443, "webhook": 8443, "admin": 8080}, w, f"container ports {ports}")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            got = c.get(probe, {}).get("httpGet", {})
            check(got.get("path") == path and got.get("port") in ("admin", 8080), w, f"{probe} is not {path} on the admin port")
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        check(mounts == {"/tmp": "tmp"}, w, f"volume mounts {mounts}: want only an emptyDir at /tmp")
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        check(set(vols) == {"tmp"} and "emptyDir" in vols.get("tmp", {}), w, "volumes: want only the tmp emptyDir")
        check(c.get("resources") == values["operator"]["resources"], w, "resources are not operator.resources")

    # Services: fixed names (the operator's certificate covers them), the right ports and pods.
    def check_service(name: str, port: int, target: str, extra_selector: dict[str, str]) -> dict[str, Any] | None:
        svc = one("Service", name)
        if not svc:
            return None
        ports = svc["spec"]["ports"]
        check(len(ports) == 1 and ports[0]["port"] == port and ports[0]["targetPort"] in (target, {"config": 9443, "webhook": 8443, "admin": 8080}[target]),
              w, f"Service {name} ports {ports}: want {port} -> {target}")
        check(svc["spec"]["selector"] == {**selector, **extra_selector}, w, f"Service {name} selector {svc['spec']['selector']}")
        return svc

    check_service("switchyard-config", 9443, "config", {"switchyard.dev/role": "leader"})
    check_service("switchyard-webhook", 443, "webhook", {})
    metrics = check_service("switchyard-operator-metrics", 8080, "admin", {})

    # PodDisruptionBudget: only with more than one replica.
    pdbs = by_kind.get("PodDisruptionBudget", [])
    if values["operator"]["replicas"] > 1 and values["operator"]["podDisruptionBudget"]["enabled"]:
        if check(len(pdbs) == 1, w, f"want one PodDisruptionBudget, found {len(pdbs)}"):
            pdb = pdbs[0]["spec"]
            check(pdb.get("minAvailable") == values["operator"]["podDisruptionBudget"]["minAvailable"], w, "PDB minAvailable")
            check(pdb.get("minAvailable", 0) < values["operator"]["replicas"], w, "PDB minAvailable would block every drain")
            check(pdb["selector"]["matchLabels"] == selector, w, "PDB selector is not the operator's")
    else:
        check(not pdbs, w, "a PodDisruptionBudget with one replica blocks every node drain")

    # ServiceMonitor.
    monitors = by_kind.get("ServiceMonitor", [])
    if values["prometheus"]["serviceMonitor"]["enabled"]:
        if check(len(monitors) == 1, w, f"want one ServiceMonitor, found {len(monitors)}") and metrics:
            sm = monitors[0]
            picked = [s["metadata"]["name"] for s in by_kind.get("Service", [])
                      if selects(sm["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
            check(picked == ["switchyard-operator-metrics"], w, f"ServiceMonitor selects Services {picked}")
            ep = sm["spec"]["endpoints"][0]
            check(ep["port"] == metrics["spec"]["ports"][0]["name"] and ep.get("path") == "/metrics", w, "ServiceMonitor endpoint is not admin /metrics")
            for k, v in values["prometheus"]["serviceMonitor"]["labels"].items():
                check(sm["metadata"]["labels"].get(k) == v, w, f"ServiceMonitor label {k}")
    else:
        check(not monitors, w, "ServiceMonitor rendered while disabled")

    # The Grafana dashboard ConfigMap.
    boards = [d for d in by_kind.get("ConfigMap", []) if d["metadata"]["name"] == "switchyard-dashboard"]
    board = values["grafana"]["dashboard"]
    if board["enabled"]:
        if check(len(boards) == 1, w, f"want one dashboard ConfigMap, found {len(boards)}"):
            cm = boards[0]
            check(cm["metadata"]["labels"].get("grafana_dashboard") == "1", w, "dashboard ConfigMap lacks grafana_dashboard: \"1\"")
            for k, v in board.get("labels", {}).items():
                check(cm["metadata"]["labels"].get(k) == v, w, f"dashboard label {k}")
            for k, v in board.get("annotations", {}).items():
                check(cm["metadata"].get("annotations", {}).get(k) == v, w, f"dashboard annotation {k}")
            check(json.loads(cm["data"]["switchyard.json"]) == json.loads(DASHBOARD.read_text()), w,
                  "the ConfigMap's dashboard is not dashboards/switchyard.json")
    else:
        check(not boards, w, "dashboard ConfigMap rendered while disabled")

    # The webhook configuration.
    hook = one("MutatingWebhookConfiguration", webhook_name)
    if hook:
        check(not find_key(hook, "caBundle"), w, "the webhook configuration must not carry caBundle (the operator applies it)")
        names = [h["name"] for h in hook["webhooks"]]
        check(names == ["pod.switchyard.dev", "namespace.switchyard.dev"], w, f"webhook entries {names}")
        excluded = {"kube-system", "kube-node-lease", ns, *values["webhook"]["excludeNamespaces"]}
        url = values["webhook"]["url"]
        for h in hook["webhooks"]:
            hw = f"{w} webhook {h['name']}"
            check(h["failurePolicy"] == values["webhook"]["failurePolicy"], hw, f"failurePolicy {h['failurePolicy']}")
            check(h["sideEffects"] == "None", hw, "sideEffects")
            check(h["timeoutSeconds"] == values["webhook"]["timeoutSeconds"], hw, "timeoutSeconds")
            check(h["reinvocationPolicy"] == "IfNeeded", hw, "reinvocationPolicy")
            check(h["admissionReviewVersions"] == ["v1"], hw, "admissionReviewVersions")
            check(h["rules"] == [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"], "scope": "Namespaced"}],
                  hw, f"rules {h['rules']}")
            if url:
                # Both the base URL and the full endpoint end in exactly one `/inject`.
                check(h["clientConfig"] == {"url": "https://host.docker.internal:8443/inject"}, hw, f"clientConfig {h['clientConfig']}")
            else:
                check(h["clientConfig"] == {"service": {"name": "switchyard-webhook", "namespace": ns, "path": "/inject", "port": 443}},
                      hw, f"clientConfig {h['clientConfig']}")
            exprs = h["namespaceSelector"].get("matchExpressions", [])
            not_in = [e for e in exprs if e["key"] == "kubernetes.io/metadata.name" and e["operator"] == "NotIn"]
            check(len(not_in) == 1 and set(not_in[0]["values"]) == excluded, hw, f"namespaceSelector does not exclude exactly {sorted(excluded)}")
        if names == ["pod.switchyard.dev", "namespace.switchyard.dev"]:
            pod_hook, ns_hook = hook["webhooks"]
            check(pod_hook["objectSelector"] == {"matchLabels": {"switchyard.dev/inject": "true"}}, w, "pod webhook objectSelector")
            check("matchLabels" not in pod_hook["namespaceSelector"], w, "pod webhook must not require a namespace label")
            check(ns_hook["namespaceSelector"].get("matchLabels") == {"switchyard.dev/inject": "true"}, w, "namespace webhook namespaceSelector")
            check(ns_hook["objectSelector"] == {"matchExpressions": [{"key": "switchyard.dev/inject", "operator": "NotIn", "values": ["false"]}]},
                  w, "namespace webhook objectSelector must skip pods labelled \"false\"")

    # CRDs: the generated manifests, plus labels and (crds.keep) the keep annotation.
    crds = by_kind.get("CustomResourceDefinition", [])
    if values["crds"]["enabled"]:
        want = {}
        for f in sorted(CRD_MANIFESTS.glob("*.yaml")):
            for d in load_docs(f.read_text()):
                want[d["metadata"]["name"]] = d
        got = {d["metadata"]["name"]: d for d in crds}
        check(sorted(got) == sorted(want), w, f"CRDs {sorted(got)}, crds/manifests has {sorted(want)}")
        for name, d in got.items():
            keep = d["metadata"].get("annotations", {}).get(KEEP)
            check(keep == ("keep" if values["crds"]["keep"] else None), w, f"CRD {name} {KEEP} annotation is {keep!r}")
            if name in want:
                check(strip_crd(d) == want[name], w, f"CRD {name} differs from crds/manifests (run scripts/generate)")
    else:
        check(not crds, w, "CRDs rendered with crds.enabled=false")


# === values.schema.json ===


def check_schema(chart: helm.Chart, defaults: dict[str, Any]) -> None:
    try:
        chart.validate_schema(defaults)
    except helm.HelmValuesError as e:
        fail("schema", f"the chart's own values.yaml does not pass values.schema.json: {e}")
    for why, bad in BAD_VALUES:
        try:
            chart.validate_schema(merge(defaults, bad))
            fail("schema", f"values.schema.json accepts {why}: {json.dumps(bad)}")
        except helm.HelmValuesError:
            pass
        try:
            chart.render(bad, name="switchyard", namespace="switchyard-system")
            fail("schema", f"render accepts {why}: {json.dumps(bad)}")
        except helm.HelmValuesError:
            pass
    # Every key in values.yaml is described in the schema (and, through additionalProperties:
    # false, nothing else is accepted).
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(value: Any, node: dict[str, Any], path: str) -> None:
        if not isinstance(value, dict) or "properties" not in node:
            return
        for key, sub in value.items():
            if key not in node["properties"]:
                fail("schema", f"values.yaml key {path}{key} is not in values.schema.json")
            else:
                walk(sub, node["properties"][key], f"{path}{key}.")

    walk(defaults, schema, "")


def values_table(defaults: dict[str, Any]) -> tuple[str, list[str]]:
    """The README's values table, built from the `# --` comments of values.yaml (helm-docs
    style), and the problems found: every value needs a `# --` comment."""
    rows: list[str] = []
    problems: list[str] = []
    documented: list[str] = []
    stack: list[str] = []
    comment: list[str] | None = None
    for line in (CHART / "values.yaml").read_text().splitlines():
        m = re.match(r"^\s*# -- (.*)$", line)
        if m:
            comment = [m.group(1)]
            continue
        m = re.match(r"^\s*# ?(.*)$", line)
        if m:
            if comment is not None:
                comment.append(m.group(1))
            continue
        m = re.match(r"^(\s*)([A-Za-z0-9_.]+):", line)
        if not m:
            comment = None
            continue
        stack = stack[: len(m.group(1)) // 2] + [m.group(2)]
        path = ".".join(stack)
        value: Any = defaults
        for key in stack:
            value = value[key]
        if comment is not None:
            documented.append(path)
            shown = f'"{value}"' if isinstance(value, str) else json.dumps(value, separators=(", ", ": "))
            cells = [f"`{path}`", f"`{shown}`", " ".join(comment)]
            rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        elif not any(path.startswith(d + ".") for d in documented) and not isinstance(value, dict):
            problems.append(f"{path} has no `# --` comment")
        comment = None
    table = "| Key | Default | Description |\n| --- | --- | --- |\n" + "\n".join(rows) + "\n"
    return table, problems


def check_docs(defaults: dict[str, Any], update: bool) -> None:
    """values.yaml documents every value, and the chart README's table is current."""
    table, problems = values_table(defaults)
    for p in problems:
        fail("values.yaml", p)
    readme_path = CHART / "README.md"
    readme = readme_path.read_text()
    marker = "\n## Values\n"
    if not check(marker in readme, "charts/switchyard/README.md", "has no '## Values' section"):
        return
    head, _, tail = readme.partition(marker)
    intro = tail.split("\n| Key |", 1)[0]
    wanted = head + marker + intro.rstrip("\n") + "\n\n" + table
    if update:
        readme_path.write_text(wanted)
    else:
        check(readme == wanted, "charts/switchyard/README.md",
              "the values table is stale (run scripts/chart-test --update-readme)")


# === examples ===


def strict_openapi(schema: Any) -> Any:
    """A CRD's openAPIV3Schema as JSON Schema, strict like `kubectl apply --validate=strict`:
    unknown fields fail (the apiserver would prune them) and `nullable` allows null."""
    if isinstance(schema, list):
        return [strict_openapi(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict_openapi(v) for k, v in schema.items()}
    if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out \
            and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def check_examples() -> None:
    schemas = {}
    for f in sorted(CRD_MANIFESTS.glob("*.yaml")):
        crd = yaml.safe_load(f.read_text())
        for version in crd["spec"]["versions"]:
            api_version = f"{crd['spec']['group']}/{version['name']}"
            spec_schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
            schemas[(api_version, crd["spec"]["names"]["kind"])] = strict_openapi(spec_schema)

    def validate_custom(where: str, doc: dict[str, Any]) -> None:
        schema = schemas.get((doc.get("apiVersion"), doc.get("kind")))
        if not check(schema is not None, where, f"no CRD for {doc.get('apiVersion')} {doc.get('kind')}"):
            return
        extra = set(doc) - {"apiVersion", "kind", "metadata", "spec"}
        check(not extra, where, f"unknown top-level fields {sorted(extra)}")
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc.get("spec")), key=str)
        for e in errors:
            fail(where, f"spec.{'.'.join(str(p) for p in e.path)}: {e.message}")

    # The validator must reject a bad pool before its passes mean anything (docs/development-notes.md).
    probe = {"apiVersion": "switchyard.dev/v1alpha1", "kind": "ProviderPool", "metadata": {"name": "p"},
             "spec": {"providers": [{"name": "x", "api": "OpenAI", "models": [{"name": "m", "inputPerMillion": 1, "outputPerMillion": "1", "colour": "red"}]}]}}
    before = len(failures)
    validate_custom("probe", probe)
    if len(failures) - before < 2:
        fail("examples", "the CRD schema validator accepts a numeric price or an unknown field; its passes prove nothing")
    del failures[before:]

    docs: list[tuple[str, dict[str, Any]]] = []
    for directory in (QUICKSTART, DEMO_APP):
        files = sorted(directory.glob("*.y*ml"))
        check(bool(files), "examples", f"{directory.relative_to(ROOT)} has no YAML")
        for f in files:
            try:
                docs.extend((str(f.relative_to(ROOT)), d) for d in load_docs(f.read_text()))
            except yaml.YAMLError as e:
                fail(str(f.relative_to(ROOT)), f"not valid YAML: {e}")

    secrets: dict[str, dict[str, Any]] = {}
    pools: dict[str, dict[str, Any]] = {}
    routes: list[tuple[str, dict[str, Any]]] = []
    deployments = []
    for path, d in docs:
        where = f"{path} {d.get('kind')}/{d.get('metadata', {}).get('name')}"
        if d.get("apiVersion", "").startswith("switchyard.dev/"):
            validate_custom(where, d)
        else:
            kube_validate(where, d)
        if d.get("kind") == "Secret":
            secrets[d["metadata"]["name"]] = d
            check(d["metadata"].get("labels", {}).get("switchyard.dev/provider-key") == "true", where,
                  "provider-key Secret lacks the label switchyard.dev/provider-key: \"true\"")
        elif d.get("kind") == "ProviderPool":
            pools[d["metadata"]["name"]] = d
        elif d.get("kind") == "ModelRoute":
            routes.append((where, d))
        elif d.get("kind") == "Deployment":
            deployments.append((where, d))

    # Cross references, as the operator resolves them: keys exist, targets exist.
    for name, pool in pools.items():
        for p in pool["spec"]["providers"]:
            ref = p.get("apiKey", {}).get("secretKeyRef")
            if ref:
                data = {**secrets.get(ref["name"], {}).get("stringData", {}), **secrets.get(ref["name"], {}).get("data", {})}
                check(ref["key"] in data, f"pool {name}", f"provider {p['name']} uses {ref['name']}/{ref['key']}, which the examples do not define")
    for where, route in routes:
        spec = route["spec"]
        targets = list(spec["targets"]) + [t for r in spec.get("rules", []) for t in r["targets"]]
        for t in targets:
            provider = next((p for p in pools.get(t["pool"], {}).get("spec", {}).get("providers", []) if p["name"] == t["provider"]), None)
            ok = provider is not None and any(m["name"] == t["model"] for m in provider["models"])
            check(ok, where, f"target {t['pool']}/{t['provider']}/{t['model']} is not in the example pools")
    if QUICKSTART.exists():
        kinds = {d.get("kind") for p, d in docs if p.startswith("examples/quickstart")}
        check({"Secret", "ProviderPool", "ModelRoute"} <= kinds, "examples/quickstart", f"has {sorted(kinds)}")
        apis = {p["api"] for pool in pools.values() for p in pool["spec"]["providers"]}
        check({"OpenAI", "Anthropic"} <= apis, "examples/quickstart", "pool should show OpenAI and Anthropic")
        check(any(p.get("baseUrl") == "https://api.deepseek.com/v1" and p["api"] == "OpenAI"
                  for pool in pools.values() for p in pool["spec"]["providers"]),
              "examples/quickstart", "DeepSeek is api: OpenAI with baseUrl https://api.deepseek.com/v1")
        strategies = {r["spec"].get("strategy", "Failover") for _, r in routes}
        check({"Failover", "LowestCost"} <= strategies, "examples/quickstart", f"route strategies {sorted(strategies)}")

    check(len(deployments) == 1, "examples/demo-app", f"want one Deployment, found {len(deployments)}")
    for where, d in deployments:
        tmpl = d["spec"]["template"]
        check(tmpl["metadata"].get("labels", {}).get("switchyard.dev/inject") == "true", where,
              "pod template lacks the label switchyard.dev/inject: \"true\"")
        check_container_security(where, tmpl["spec"])


def main() -> int:
    start = time.monotonic()
    # Prove the Kubernetes validator rejects an unknown field before trusting its passes (docs/development-notes.md).
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"ports": [{"port": 1}], "colour": "red"}}
    try:
        kubernetes_validate.validate(bad, KUBE_VERSIONS[0], strict=True)
        fail("self-check", "kubernetes-validate --strict accepts an unknown field; its passes prove nothing")
    except kubernetes_validate.ValidationError:
        pass

    with helm.Chart.load(str(CHART)) as chart:
        meta = chart.metadata
        check(meta.get("apiVersion") == "v2" and meta.get("version") == "0.1.0" and meta.get("appVersion") == "0.1.0",
              "Chart.yaml", f"apiVersion/version/appVersion are {meta.get('apiVersion')}/{meta.get('version')}/{meta.get('appVersion')}")
        defaults = chart.values
        for kube in KUBE_VERSIONS:
            report = helm.lint(str(CHART), strict=True, kube_version=f"v{kube}")
            for m in report.get("messages", []):
                if m.get("severity", 0) >= 2:
                    fail(f"lint kube {kube}", f"{m.get('path')}: {m.get('error', '').strip()}")
        for case, release, ns, given in CASES:
            check_case(chart, defaults, case, release, ns, given)
            print(f"chart-test: case {case}: rendered, linted, validated")
        print("chart-test: values.schema.json must reject bad values (Helm may log warnings about them)")
        check_schema(chart, defaults)
        check_docs(defaults, update="--update-readme" in sys.argv[1:])
        print(f"chart-test: values.schema.json: {len(BAD_VALUES)} bad value sets rejected")
    check_examples()
    print("chart-test: examples/quickstart and examples/demo-app checked")
    check_dashboard()
    print("chart-test: dashboards/switchyard.json parses and names documented metrics only")

    elapsed = time.monotonic() - start
    if failures:
        print(f"\nchart-test: {len(failures)} failure(s):", file=sys.stderr)
        for f in failures:
            print(f"  FAIL {f}", file=sys.stderr)
        return 1
    print(f"chart-test: ok ({len(CASES)} value sets x Kubernetes {', '.join(KUBE_VERSIONS)}; {elapsed:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
