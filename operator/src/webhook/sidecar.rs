//! What an injected pod receives (docs/reference/operator.md), as typed Kubernetes objects: the
//! sidecar container, its volumes, and the environment that points applications at it. Pure data,
//! no decisions: [`super::inject`] decides whether and where they go.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, KeyToPath, ObjectFieldSelector, Probe, ProjectedVolumeSource,
    ResourceRequirements, SeccompProfile, SecurityContext, ServiceAccountTokenProjection, Volume,
    VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::mode::Mode;
use crate::names::{CA_BUNDLE_KEY, CA_CONFIG_MAP, CONFIG_SERVICE, TOKEN_AUDIENCE};

/// The name of the injected container; its presence marks a pod as injected.
pub const SIDECAR_NAME: &str = "switchyard-sidecar";
/// The data plane port (loopback only in the sidecar).
pub const LLM_PORT: i32 = 9400;
/// The admin port: `/healthz`, `/readyz`, `/metrics`.
pub const ADMIN_PORT: i32 = 9401;
/// The projected token's lifetime; the kubelet refreshes it at 80%.
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3600;
/// The sidecar's UID, matching the distroless `nonroot` user of its image.
pub const SIDECAR_UID: i64 = 65532;

/// Volume names: prefixed so they do not collide with the application's.
pub const TOKEN_VOLUME: &str = "switchyard-token";
pub const STATE_VOLUME: &str = "switchyard-state";
pub const CA_VOLUME: &str = "switchyard-ca";

/// The config server's port behind its Service (the operator's `--config-listen` default and the
/// chart's Service port).
pub const CONFIG_PORT: u16 = 9443;
/// Seconds the sidecar has to start listening before the kubelet restarts it: a minute covers a
/// slow image start on a busy node, and the probe polls every second so that containers queued
/// behind a native sidecar wait no longer than needed.
const STARTUP_PERIOD_SECONDS: i32 = 1;
const STARTUP_FAILURES: i32 = 60;
/// How often readiness is checked: it changes only when the table does, so a few seconds of lag
/// cost nothing.
const READINESS_PERIOD_SECONDS: i32 = 5;
/// Size of the memory-backed state directory: the last table and the cache index fit in a few
/// MiB, and memory-backed storage counts against the pod's memory.
const STATE_SIZE: &str = "16Mi";

const TOKEN_DIR: &str = "/var/run/secrets/switchyard";
const CA_DIR: &str = "/etc/switchyard/ca";
const STATE_DIR: &str = "/var/lib/switchyard";

/// The environment application containers get, each unless their `env` already names it.
pub const APP_ENV: [(&str, &str); 4] = [
    ("OPENAI_BASE_URL", "http://127.0.0.1:9400/v1"),
    ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9400"),
    // Placeholders: SDKs refuse to start without a key; the sidecar holds the real ones.
    ("OPENAI_API_KEY", "switchyard"),
    ("ANTHROPIC_API_KEY", "switchyard"),
];

/// What the sidecar container is built from.
pub struct SidecarSpec<'a> {
    pub image: &'a str,
    pub resources: &'a ResourceRequirements,
    pub operator_namespace: &'a str,
    pub mode: Mode,
    /// How long the sidecar lets in-flight requests finish after SIGTERM, in seconds.
    pub drain_seconds: i64,
    /// Extra environment, after the pod fields (`--sidecar-env`: OpenTelemetry settings).
    pub env: &'a BTreeMap<String, String>,
}

/// The sidecar container. In native mode it is an init container with `restartPolicy: Always`;
/// its startup probe then holds back the containers after it until the sidecar answers.
pub fn container(spec: &SidecarSpec<'_>) -> Container {
    let config_server = format!(
        "https://{CONFIG_SERVICE}.{}.svc:{CONFIG_PORT}",
        spec.operator_namespace
    );
    let mut args: Vec<String> = [
        "--config-server",
        &config_server,
        "--token-file",
        &format!("{TOKEN_DIR}/token"),
        "--ca-file",
        &format!("{CA_DIR}/{CA_BUNDLE_KEY}"),
        "--state-dir",
        STATE_DIR,
        "--drain-timeout",
        &format!("{}s", spec.drain_seconds),
    ]
    .map(String::from)
    .into();
    if spec.mode == Mode::Container {
        // The app gets SIGTERM at the same moment and may still call out while it drains.
        args.push("--accept-while-draining".into());
    }
    Container {
        name: SIDECAR_NAME.into(),
        image: Some(spec.image.into()),
        args: Some(args),
        env: Some(
            [
                field_env("POD_UID", "metadata.uid"),
                field_env("POD_NAME", "metadata.name"),
                field_env("POD_NAMESPACE", "metadata.namespace"),
            ]
            .into_iter()
            .chain(spec.env.iter().map(|(name, value)| EnvVar {
                name: name.clone(),
                value: Some(value.clone()),
                value_from: None,
            }))
            .collect(),
        ),
        ports: Some(vec![
            port("switchyard-llm", LLM_PORT),
            port("switchyard-adm", ADMIN_PORT),
        ]),
        startup_probe: Some(Probe {
            // `/healthz` answers once the process listens.
            period_seconds: Some(STARTUP_PERIOD_SECONDS),
            failure_threshold: Some(STARTUP_FAILURES),
            ..http_probe("/healthz")
        }),
        readiness_probe: Some(Probe {
            period_seconds: Some(READINESS_PERIOD_SECONDS),
            ..http_probe("/readyz")
        }),
        resources: Some(spec.resources.clone()),
        restart_policy: (spec.mode == Mode::Native).then(|| "Always".into()),
        security_context: Some(security_context()),
        volume_mounts: Some(vec![
            mount(TOKEN_VOLUME, TOKEN_DIR),
            mount(CA_VOLUME, CA_DIR),
            VolumeMount {
                read_only: None,
                ..mount(STATE_VOLUME, STATE_DIR)
            },
        ]),
        ..Container::default()
    }
}

/// The volumes the sidecar mounts. The CA is mounted as a directory, never by `subPath`, so
/// that a CA rotation reaches running sidecars.
pub fn volumes() -> Vec<Volume> {
    vec![
        Volume {
            name: TOKEN_VOLUME.into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        audience: Some(TOKEN_AUDIENCE.into()),
                        expiration_seconds: Some(TOKEN_EXPIRATION_SECONDS),
                        path: "token".into(),
                    }),
                    ..VolumeProjection::default()
                }]),
                ..ProjectedVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: STATE_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: Some(Quantity(STATE_SIZE.into())),
            }),
            ..Volume::default()
        },
        Volume {
            name: CA_VOLUME.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: CA_CONFIG_MAP.into(),
                items: Some(vec![KeyToPath {
                    key: CA_BUNDLE_KEY.into(),
                    path: CA_BUNDLE_KEY.into(),
                    mode: None,
                }]),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
    ]
}

/// The variables of [`APP_ENV`] that `container` does not set itself, in that order.
pub fn missing_app_env(container: &Container) -> Vec<EnvVar> {
    let set: BTreeMap<&str, ()> = container
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.as_str(), ()))
        .collect();
    APP_ENV
        .iter()
        .filter(|(name, _)| !set.contains_key(name))
        .map(|(name, value)| EnvVar {
            name: (*name).into(),
            value: Some((*value).into()),
            value_from: None,
        })
        .collect()
}

fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: field_path.into(),
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: number,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

fn http_probe(path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(ADMIN_PORT),
            ..HTTPGetAction::default()
        }),
        ..Probe::default()
    }
}

fn mount(volume: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

/// The restricted Pod Security Standard, so that injection never makes a pod fail admission in
/// a `restricted` namespace.
fn security_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(SIDECAR_UID),
        run_as_group: Some(SIDECAR_UID),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}
