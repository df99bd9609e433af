//! Table-driven tests on real pod specs (`../testdata/*.yaml`): every injected pod is checked by
//! applying the patch to the fixture as the apiserver would and inspecting the result.

use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};
use serde_json::{Value, json};

use super::*;

const OPERATOR_NS: &str = "switchyard-system";

fn defaults(mode: Mode) -> SidecarDefaults {
    SidecarDefaults {
        image: "ghcr.io/switchyard-dev/switchyard-sidecar:0.1.0".into(),
        mode,
        resources: serde_json::from_value::<ResourceRequirements>(json!({
            "requests": {"cpu": "50m", "memory": "32Mi"},
            "limits": {"memory": "128Mi"},
        }))
        .unwrap(),
        operator_namespace: OPERATOR_NS.into(),
        version: "0.1.0".into(),
        env: Default::default(),
    }
}

fn fixture(name: &str) -> Value {
    let yaml = match name {
        "deployment" => include_str!("../testdata/deployment.yaml"),
        "job" => include_str!("../testdata/job.yaml"),
        "init-containers" => include_str!("../testdata/init-containers.yaml"),
        "istio" => include_str!("../testdata/istio.yaml"),
        "env-set" => include_str!("../testdata/env-set.yaml"),
        "host-network" => include_str!("../testdata/host-network.yaml"),
        "container-mode" => include_str!("../testdata/container-mode.yaml"),
        "no-containers" => include_str!("../testdata/no-containers.yaml"),
        other => panic!("no fixture {other}"),
    };
    serde_yaml::from_str(yaml).unwrap()
}

fn typed(value: &Value) -> Pod {
    serde_json::from_value(value.clone()).unwrap()
}

/// Applies `patch` to `raw` as the apiserver would.
fn apply(raw: &Value, patch: &Patch) -> Value {
    let mut doc = raw.clone();
    json_patch::patch(&mut doc, patch).unwrap();
    doc
}

#[derive(Debug)]
enum Expect {
    Ignore(Ignored),
    Skip(&'static str),
    Inject { mode: Mode, warnings: usize },
}

struct Case {
    name: &'static str,
    fixture: &'static str,
    namespace: &'static str,
    default_mode: Mode,
    edit: fn(&mut Value),
    expect: Expect,
}

fn keep(_: &mut Value) {}

// A table reads best one case per line.
#[rustfmt::skip]
fn cases() -> Vec<Case> {
    use Expect::*;
    let case = |name, fixture, namespace, default_mode, edit, expect| Case {
        name,
        fixture,
        namespace,
        default_mode,
        edit,
        expect,
    };
    let native = |warnings| Inject {
        mode: Mode::Native,
        warnings,
    };
    let container = |warnings| Inject {
        mode: Mode::Container,
        warnings,
    };
    vec![
        case("replicaset pod, native", "deployment", "team-a", Mode::Native, keep, native(0)),
        case("replicaset pod, container", "deployment", "team-a", Mode::Container, keep, container(0)),
        case("job pod, native", "job", "batch", Mode::Native, keep, native(0)),
        case("job pod, container warns", "job", "batch", Mode::Container, keep, container(1)),
        case("init containers, native", "init-containers", "search", Mode::Native, keep, native(0)),
        case("init containers, container", "init-containers", "search", Mode::Container, keep, container(0)),
        case("istio injected first, native", "istio", "shop", Mode::Native, keep, native(0)),
        case("istio injected first, container", "istio", "shop", Mode::Container, keep, container(0)),
        case("env already set", "env-set", "agents", Mode::Native, keep, native(0)),
        case("annotation picks container", "container-mode", "legacy", Mode::Native, keep, container(0)),
        case("annotation picks native", "container-mode", "legacy", Mode::Container,
            |p| p["metadata"]["annotations"]["switchyard.dev/sidecar-mode"] = json!("native"), native(0)),
        case("invalid annotation warns", "container-mode", "legacy", Mode::Native,
            |p| p["metadata"]["annotations"]["switchyard.dev/sidecar-mode"] = json!("auto"), native(1)),
        case("hostNetwork", "host-network", "agents", Mode::Native, keep, Skip("hostNetwork")),
        case("port 9400 taken", "deployment", "team-a", Mode::Native,
            |p| p["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(9400),
            Skip("port 9400 already used by app")),
        case("volume name taken", "deployment", "team-a", Mode::Native,
            |p| p["spec"]["volumes"][0]["name"] = json!("switchyard-state"),
            Skip("volume name switchyard-state already in use")),
        case("kube-system", "deployment", "kube-system", Mode::Native, keep, Ignore(Ignored::ExcludedNamespace)),
        case("kube-node-lease", "deployment", "kube-node-lease", Mode::Native, keep, Ignore(Ignored::ExcludedNamespace)),
        case("operator namespace", "deployment", OPERATOR_NS, Mode::Native, keep, Ignore(Ignored::ExcludedNamespace)),
        case("namespace from metadata", "deployment", "", Mode::Native,
            |p| p["metadata"]["namespace"] = json!("kube-system"), Ignore(Ignored::ExcludedNamespace)),
        case("opted out", "job", "batch", Mode::Native,
            |p| p["metadata"]["labels"]["switchyard.dev/inject"] = json!("false"), Ignore(Ignored::OptedOut)),
        case("opted out beats excluded", "job", "kube-system", Mode::Native,
            |p| p["metadata"]["labels"]["switchyard.dev/inject"] = json!("false"), Ignore(Ignored::OptedOut)),
        case("injected label", "deployment", "team-a", Mode::Native,
            |p| p["metadata"]["labels"]["switchyard.dev/injected"] = json!("true"), Ignore(Ignored::AlreadyInjected)),
        case("sidecar container present", "deployment", "team-a", Mode::Native,
            |p| p["spec"]["containers"][0]["name"] = json!("switchyard-sidecar"), Ignore(Ignored::AlreadyInjected)),
        case("sidecar init container present", "init-containers", "search", Mode::Native,
            |p| p["spec"]["initContainers"][1]["name"] = json!("switchyard-sidecar"), Ignore(Ignored::AlreadyInjected)),
        case("already skipped", "deployment", "team-a", Mode::Native,
            |p| p["metadata"]["annotations"] = json!({"switchyard.dev/skipped": "hostNetwork"}),
            Ignore(Ignored::AlreadySkipped)),
        case("no containers", "no-containers", "team-a", Mode::Native, keep, Ignore(Ignored::NoContainers)),
        case("no spec", "no-containers", "team-a", Mode::Container,
            |p| { p.as_object_mut().unwrap().remove("spec"); }, Ignore(Ignored::NoContainers)),
    ]
}

#[test]
fn pods_are_injected_skipped_or_ignored_as_designed() {
    for case in cases() {
        let mut raw = fixture(case.fixture);
        (case.edit)(&mut raw);
        let pod = typed(&raw);
        let decision = inject(&pod, case.namespace, &defaults(case.default_mode));
        let name = case.name;
        match (&case.expect, &decision) {
            (Expect::Ignore(want), Decision::Ignore(got)) => assert_eq!(want, got, "{name}"),
            (Expect::Skip(want), Decision::Skip { reason, patch }) => {
                assert_eq!(want, reason, "{name}");
                let skipped = apply(&raw, patch);
                let annotations = &skipped["metadata"]["annotations"];
                assert_eq!(annotations[SKIPPED_ANNOTATION], json!(want), "{name}");
                assert_eq!(skipped["spec"], raw["spec"], "{name}: only annotated");
                let again = inject(
                    &typed(&skipped),
                    case.namespace,
                    &defaults(case.default_mode),
                );
                assert_eq!(again, Decision::Ignore(Ignored::AlreadySkipped), "{name}");
            }
            (
                Expect::Inject {
                    mode,
                    warnings: want_warnings,
                },
                Decision::Inject {
                    mode: got,
                    patch,
                    warnings,
                },
            ) => {
                assert_eq!(mode, got, "{name}");
                assert_eq!(warnings.len(), *want_warnings, "{name}: {warnings:?}");
                check_injected(name, &raw, &apply(&raw, patch), *mode, case.namespace);
            }
            (want, got) => panic!("{name}: expected {want:?}, got {got:?}"),
        }
    }
}

/// Everything docs/reference/operator.md promises of an injected pod, and that nothing else
/// changed.
fn check_injected(name: &str, raw: &Value, patched: &Value, mode: Mode, namespace: &str) {
    let before = typed(raw);
    let after = typed(patched);
    let meta = &after.metadata;
    let label = meta.labels.as_ref().and_then(|l| l.get(INJECTED_LABEL));
    assert_eq!(label.map(String::as_str), Some("true"), "{name}");
    let version = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(VERSION_ANNOTATION));
    assert_eq!(version.map(String::as_str), Some("0.1.0"), "{name}");
    for (key, value) in before.metadata.labels.iter().flatten() {
        assert_eq!(
            meta.labels.as_ref().unwrap().get(key),
            Some(value),
            "{name}: label {key} kept"
        );
    }
    let default_container = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CONTAINER_ANNOTATION));
    let first_app = before.spec.as_ref().map(|s| &s.containers[0].name);
    match mode {
        // The pod's own choice stays; without one, the app stays what `kubectl logs` shows.
        Mode::Container => assert!(
            default_container.is_some_and(|c| Some(c) == first_app
                || raw["metadata"]["annotations"][DEFAULT_CONTAINER_ANNOTATION] == json!(c)),
            "{name}"
        ),
        Mode::Native => assert_eq!(
            default_container,
            before
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CONTAINER_ANNOTATION)),
            "{name}"
        ),
    }

    let (spec_before, spec) = (before.spec.unwrap(), after.spec.clone().unwrap());
    let init_before = spec_before.init_containers.unwrap_or_default();
    let init = spec.init_containers.clone().unwrap_or_default();
    let (sidecar, apps, inits) = match mode {
        Mode::Native => (&init[0], &spec.containers[..], &init[1..]),
        Mode::Container => (&spec.containers[0], &spec.containers[1..], &init[..]),
    };
    check_sidecar(name, sidecar, mode);

    // The pod's own containers keep their order and everything but the added env.
    assert_eq!(names(apps), names(&spec_before.containers), "{name}");
    assert_eq!(names(inits), names(&init_before), "{name}");
    assert_eq!(inits, &init_before[..], "{name}: init containers untouched");
    for (app, original) in apps.iter().zip(&spec_before.containers) {
        check_app_env(name, app, original);
        let without_env = |c: &Container| Container {
            env: None,
            ..c.clone()
        };
        assert_eq!(
            without_env(app),
            without_env(original),
            "{name}: only env changes"
        );
    }

    let volumes = spec.volumes.clone().unwrap_or_default();
    let volume_names: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
    let original = spec_before.volumes.unwrap_or_default();
    assert_eq!(
        &volumes[..original.len()],
        &original[..],
        "{name}: volumes kept first"
    );
    for ours in [
        sidecar::TOKEN_VOLUME,
        sidecar::STATE_VOLUME,
        sidecar::CA_VOLUME,
    ] {
        assert_eq!(
            volume_names.iter().filter(|v| **v == ours).count(),
            1,
            "{name}: {ours}"
        );
    }
    // The state dir is the sidecar's alone.
    let state_mounts = spec
        .containers
        .iter()
        .chain(&init)
        .filter(|c| {
            c.volume_mounts
                .iter()
                .flatten()
                .any(|m| m.name == sidecar::STATE_VOLUME)
        })
        .count();
    assert_eq!(state_mounts, 1, "{name}");

    let again = inject(&after, namespace, &defaults(mode));
    assert_eq!(
        again,
        Decision::Ignore(Ignored::AlreadyInjected),
        "{name}: idempotent"
    );
}

fn check_sidecar(name: &str, sidecar: &Container, mode: Mode) {
    assert_eq!(sidecar.name, SIDECAR_NAME, "{name}");
    let restart = sidecar.restart_policy.as_deref();
    let want = (mode == Mode::Native).then_some("Always");
    assert_eq!(restart, want, "{name}: restartPolicy");
    let args = sidecar.args.clone().unwrap_or_default().join(" ");
    let fixed = "--config-server https://switchyard-config.switchyard-system.svc:9443 \
         --token-file /var/run/secrets/switchyard/token --ca-file /etc/switchyard/ca/ca.crt \
         --state-dir /var/lib/switchyard --drain-timeout ";
    let rest = args
        .strip_prefix(fixed)
        .unwrap_or_else(|| panic!("{name}: {args}"));
    let (drain, flags) = rest.split_once(' ').unwrap_or((rest, ""));
    assert!(drain.ends_with('s'), "{name}: {drain}");
    let want = match mode {
        Mode::Container => "--accept-while-draining",
        Mode::Native => "",
    };
    assert_eq!(flags, want, "{name}");
}

#[test]
fn the_sidecar_drains_within_the_pods_grace_period() {
    let drain_of = |grace: Option<i64>| {
        let mut pod = fixture("deployment");
        if let Some(grace) = grace {
            pod["spec"]["terminationGracePeriodSeconds"] = json!(grace);
        }
        let Decision::Inject { patch, .. } =
            inject(&typed(&pod), "team-a", &defaults(Mode::Native))
        else {
            panic!("the pod is injected");
        };
        let patched = typed(&apply(&pod, &patch));
        let sidecar = patched.spec.unwrap().init_containers.unwrap().remove(0);
        let args = sidecar.args.unwrap();
        let at = args
            .iter()
            .position(|a| a == "--drain-timeout")
            .expect("the flag");
        args[at + 1].clone()
    };

    assert_eq!(
        drain_of(None),
        "25s",
        "Kubernetes' default 30 s less the margin"
    );
    assert_eq!(drain_of(Some(120)), "115s");
    assert_eq!(drain_of(Some(3)), "1s", "never below a second");
}

#[test]
fn the_sidecar_gets_the_configured_env_after_the_pod_fields() {
    let pod = fixture("deployment");
    let mut defaults = defaults(Mode::Native);
    defaults.env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel-collector:4318"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=prod,team=a",
        ),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .into();
    let Decision::Inject { patch, .. } = inject(&typed(&pod), "team-a", &defaults) else {
        panic!("the pod is injected");
    };
    let patched = typed(&apply(&pod, &patch));
    let sidecar = patched.spec.unwrap().init_containers.unwrap().remove(0);
    let env: Vec<(String, Option<String>)> = sidecar
        .env
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.value))
        .collect();
    assert_eq!(env[0].0, "POD_UID");
    assert!(env.contains(&(
        "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
        Some("http://otel-collector:4318".into())
    )));
    assert!(env.contains(&(
        "OTEL_RESOURCE_ATTRIBUTES".into(),
        Some("deployment.environment=prod,team=a".into())
    )));
}

fn names(containers: &[Container]) -> Vec<&str> {
    containers.iter().map(|c| c.name.as_str()).collect()
}

/// Each LLM variable exactly once; the application's own values win.
fn check_app_env(name: &str, app: &Container, original: &Container) {
    let env = app.env.clone().unwrap_or_default();
    let original_env = original.env.clone().unwrap_or_default();
    assert_eq!(
        &env[..original_env.len()],
        &original_env[..],
        "{name}: own env first"
    );
    for (var, value) in sidecar::APP_ENV {
        let set: Vec<_> = env.iter().filter(|e| e.name == var).collect();
        assert_eq!(set.len(), 1, "{name}: {var} in {}", app.name);
        if !original_env.iter().any(|e| e.name == var) {
            assert_eq!(set[0].value.as_deref(), Some(value), "{name}: {var}");
        }
    }
}

#[test]
fn preset_env_is_kept() {
    let raw = fixture("env-set");
    let decision = inject(&typed(&raw), "agents", &defaults(Mode::Native));
    let patched = apply(&raw, decision.patch().unwrap());
    let env = &patched["spec"]["containers"][0]["env"];
    assert_eq!(env[0]["value"], "https://llm.internal.example/v1");
    assert_eq!(env[1]["valueFrom"]["secretKeyRef"]["name"], "openai");
    let added: Vec<&str> = env.as_array().unwrap()[2..]
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(added, ["ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"]);
}

#[test]
fn the_patch_only_adds_and_escapes_keys() {
    let raw = fixture("istio");
    let decision = inject(&typed(&raw), "shop", &defaults(Mode::Native));
    let patch = serde_json::to_value(decision.patch().unwrap()).unwrap();
    let ops = patch.as_array().unwrap();
    assert!(ops.iter().all(|op| op["op"] == "add"), "{patch:#}");
    let paths: Vec<&str> = ops.iter().map(|op| op["path"].as_str().unwrap()).collect();
    assert!(
        paths.contains(&"/metadata/labels/switchyard.dev~1injected"),
        "{paths:?}"
    );
    assert!(paths.contains(&"/spec/initContainers/0"), "{paths:?}");
}

#[test]
fn fields_unknown_to_k8s_openapi_survive() {
    // A field from a newer Kubernetes than our types know, on a container the sidecar is
    // inserted in front of: an add-only patch cannot lose or move it.
    let mut raw = fixture("deployment");
    raw["spec"]["containers"][0]["futureField"] = json!({"x": 1});
    let decision = inject(&typed(&raw), "team-a", &defaults(Mode::Container));
    let patched = apply(&raw, decision.patch().unwrap());
    assert_eq!(patched["spec"]["containers"][1]["name"], "app");
    assert_eq!(
        patched["spec"]["containers"][1]["futureField"],
        json!({"x": 1})
    );
    assert!(
        patched["spec"]["containers"][0]
            .get("futureField")
            .is_none()
    );
}

#[test]
fn a_replicaset_pod_is_patched_exactly_so() {
    let raw = fixture("deployment");
    let decision = inject(&typed(&raw), "team-a", &defaults(Mode::Native));
    insta::assert_json_snapshot!("deployment-native-patch", decision.patch().unwrap());
}

#[test]
fn an_istio_pod_in_container_mode_looks_so() {
    let raw = fixture("istio");
    let decision = inject(&typed(&raw), "shop", &defaults(Mode::Container));
    insta::assert_json_snapshot!(
        "istio-container-pod",
        apply(&raw, decision.patch().unwrap())
    );
}
