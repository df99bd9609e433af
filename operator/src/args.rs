//! Command-line flags (each with a `SWITCHYARD_` environment twin, docs/reference/operator.md) and
//! their validation into a [`Config`]. Nothing below `main` reads the environment: `main` passes
//! `POD_NAMESPACE` in explicitly so that validation stays a pure, testable function.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use k8s_openapi::api::core::v1::ResourceRequirements;

/// The namespace used when neither `--namespace` nor `POD_NAMESPACE` is set.
pub const DEFAULT_NAMESPACE: &str = "switchyard-system";

/// The sidecar's requests and limits when `--sidecar-resources` is not given: small, with a
/// memory limit (the state dir is memory-backed) and no CPU limit (throttling adds latency).
pub const DEFAULT_SIDECAR_RESOURCES: &str =
    r#"{"requests":{"cpu":"50m","memory":"32Mi"},"limits":{"memory":"128Mi"}}"#;

/// The config server's default connection cap: every sidecar of the cluster holds one long-poll
/// on the leader (and briefly a second connection for its report), so this fits a fleet of over
/// 10,000 pods per replica; bench/RESULTS.md has what 10,000 cost.
pub const DEFAULT_CONFIG_MAX_CONNECTIONS: u32 = 32_768;

/// The operator's flags. Without a subcommand the operator serves.
#[derive(Parser, Debug)]
#[command(version, about = "Switchyard operator")]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The operator's own namespace. Defaults to `POD_NAMESPACE`, else `switchyard-system`.
    #[arg(long, env = "SWITCHYARD_NAMESPACE")]
    pub namespace: Option<String>,

    /// Address of the HTTPS config server sidecars poll.
    #[arg(long, env = "SWITCHYARD_CONFIG_LISTEN", default_value = "0.0.0.0:9443")]
    pub config_listen: SocketAddr,

    /// Connections the config server holds at once; the next ones wait in the kernel's backlog.
    /// The operator raises its open-files limit to the hard limit at start, which must exceed
    /// this (plus a few hundred for everything else).
    #[arg(
        long,
        env = "SWITCHYARD_CONFIG_MAX_CONNECTIONS",
        default_value_t = DEFAULT_CONFIG_MAX_CONNECTIONS,
        value_parser = clap::value_parser!(u32).range(1..=1_048_576)
    )]
    pub config_max_connections: u32,

    /// Address of the HTTPS injection webhook.
    #[arg(
        long,
        env = "SWITCHYARD_WEBHOOK_LISTEN",
        default_value = "0.0.0.0:8443"
    )]
    pub webhook_listen: SocketAddr,

    /// Address of the plain-HTTP admin server (`/healthz`, `/readyz`, `/metrics`).
    #[arg(long, env = "SWITCHYARD_ADMIN_LISTEN", default_value = "0.0.0.0:8080")]
    pub admin_listen: SocketAddr,

    /// Directory holding `ca.crt`, `ca.key`, `tls.crt` and `tls.key`; created when missing.
    /// Without it the operator keeps them in the Secret `switchyard-certs` of its namespace.
    #[arg(long, env = "SWITCHYARD_CERT_DIR")]
    pub cert_dir: Option<PathBuf>,

    /// Name of the MutatingWebhookConfiguration whose `caBundle` the operator keeps current.
    #[arg(
        long,
        env = "SWITCHYARD_WEBHOOK_CONFIG_NAME",
        default_value = crate::names::WEBHOOK_CONFIGURATION
    )]
    pub webhook_config_name: String,

    /// Image of the injected sidecar. Default: `ghcr.io/switchyard-dev/switchyard-sidecar` at
    /// the operator's own version.
    #[arg(long, env = "SWITCHYARD_SIDECAR_IMAGE")]
    pub sidecar_image: Option<String>,

    /// The injected sidecar's resources, as the JSON of a Kubernetes `ResourceRequirements`.
    #[arg(long, env = "SWITCHYARD_SIDECAR_RESOURCES", default_value = DEFAULT_SIDECAR_RESOURCES)]
    pub sidecar_resources: String,

    /// How the sidecar is injected.
    #[arg(long, env = "SWITCHYARD_SIDECAR_MODE", value_enum, default_value_t = SidecarMode::Auto)]
    pub sidecar_mode: SidecarMode,

    /// Environment for every injected sidecar, as a JSON object of names to values: the chart
    /// passes the OpenTelemetry settings (`OTEL_EXPORTER_OTLP_ENDPOINT`, ...) this way.
    #[arg(long, env = "SWITCHYARD_SIDECAR_ENV", default_value = "{}")]
    pub sidecar_env: String,
}

/// Subcommands other than serving.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the CRD manifests, or write them as files into `--out-dir`.
    Crds {
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

/// How the webhook injects the sidecar (docs/reference/operator.md).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SidecarMode {
    /// Native when the apiserver and every kubelet are at least 1.29, else container.
    Auto,
    /// An init container with `restartPolicy: Always`.
    Native,
    /// The first regular container.
    Container,
}

/// Validated settings for serving.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub namespace: String,
    pub config_listen: SocketAddr,
    pub config_max_connections: usize,
    pub webhook_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// Certificates in files; `None` keeps them in a Secret (see `trust::Store`).
    pub cert_dir: Option<PathBuf>,
    pub webhook_config_name: String,
    pub sidecar_image: Option<String>,
    pub sidecar_mode: SidecarMode,
    pub sidecar_resources: ResourceRequirements,
    /// Extra environment of injected sidecars (`--sidecar-env`).
    pub sidecar_env: BTreeMap<String, String>,
}

/// Why flags were refused; `main` prints it on one line and exits 64.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgsError {
    #[error("--namespace {0:?} is not a valid namespace name (a DNS-1123 label)")]
    Namespace(String),
    #[error("--webhook-config-name {0:?} is not a valid object name")]
    WebhookConfigName(String),
    #[error("--sidecar-image must not be empty")]
    EmptySidecarImage,
    #[error("--sidecar-resources is not a valid ResourceRequirements: {0}")]
    SidecarResources(String),
    #[error("--sidecar-env is not a JSON object of names to strings: {0}")]
    SidecarEnv(String),
    #[error("--{0} and --{1} must differ, both are {2}")]
    SameAddress(&'static str, &'static str, SocketAddr),
}

// === impl Args ===

impl Args {
    /// Validates the flags; `pod_namespace` is `POD_NAMESPACE`, read by `main`.
    pub fn into_config(self, pod_namespace: Option<String>) -> Result<Config, ArgsError> {
        let namespace = self
            .namespace
            .or(pod_namespace.filter(|ns| !ns.is_empty()))
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        if !is_dns1123_label(&namespace) {
            return Err(ArgsError::Namespace(namespace));
        }
        if !is_dns1123_subdomain(&self.webhook_config_name) {
            return Err(ArgsError::WebhookConfigName(self.webhook_config_name));
        }
        if self
            .sidecar_image
            .as_deref()
            .is_some_and(|i| i.trim().is_empty())
        {
            return Err(ArgsError::EmptySidecarImage);
        }
        let listeners = [
            ("config-listen", self.config_listen),
            ("webhook-listen", self.webhook_listen),
            ("admin-listen", self.admin_listen),
        ];
        for (i, (a, addr_a)) in listeners.iter().enumerate() {
            for (b, addr_b) in &listeners[i + 1..] {
                // Port 0 asks the OS for a free port, so two of them never collide.
                if addr_a == addr_b && addr_a.port() != 0 {
                    return Err(ArgsError::SameAddress(a, b, *addr_a));
                }
            }
        }
        let sidecar_resources =
            parse_resources(&self.sidecar_resources).map_err(ArgsError::SidecarResources)?;
        let sidecar_env = parse_env(&self.sidecar_env).map_err(ArgsError::SidecarEnv)?;
        Ok(Config {
            namespace,
            config_listen: self.config_listen,
            config_max_connections: self.config_max_connections as usize,
            webhook_listen: self.webhook_listen,
            admin_listen: self.admin_listen,
            cert_dir: self.cert_dir,
            webhook_config_name: self.webhook_config_name,
            sidecar_image: self.sidecar_image,
            sidecar_mode: self.sidecar_mode,
            sidecar_resources,
            sidecar_env,
        })
    }
}

/// Parses `--sidecar-env`: a JSON object of environment variable names to string values.
fn parse_env(json: &str) -> Result<BTreeMap<String, String>, String> {
    let env: BTreeMap<String, String> = serde_json::from_str(json).map_err(|e| e.to_string())?;
    match env
        .keys()
        .find(|name| name.is_empty() || name.contains('=') || name.chars().any(char::is_whitespace))
    {
        Some(name) => Err(format!("{name:?} is not an environment variable name")),
        None => Ok(env),
    }
}

/// Parses `--sidecar-resources`. Checked here rather than by the apiserver, because a bad value
/// would otherwise make every injected pod fail to be created.
fn parse_resources(json: &str) -> Result<ResourceRequirements, String> {
    // k8s-openapi ignores unknown keys; a misspelt `request` must not silently mean "none".
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let object = value.as_object().ok_or("expected a JSON object")?;
    if let Some(key) = object
        .keys()
        .find(|k| !["requests", "limits"].contains(&k.as_str()))
    {
        return Err(format!("unknown key {key:?}, expected requests or limits"));
    }
    let resources: ResourceRequirements =
        serde_json::from_value(value).map_err(|e| e.to_string())?;
    let quantities = resources.requests.iter().chain(&resources.limits).flatten();
    for (name, quantity) in quantities {
        if !is_quantity(&quantity.0) {
            return Err(format!("{name}: {:?} is not a quantity", quantity.0));
        }
    }
    Ok(resources)
}

/// A Kubernetes quantity: a decimal number with an optional SI, binary or exponent suffix.
fn is_quantity(s: &str) -> bool {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let end = unsigned
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(end);
    let number_ok = !number.is_empty() && number != "." && number.matches('.').count() <= 1;
    const SUFFIXES: [&str; 16] = [
        "", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
    ];
    let exponent = |exp: &str| {
        let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    };
    let suffix_ok =
        SUFFIXES.contains(&suffix) || suffix.strip_prefix(['e', 'E']).is_some_and(exponent);
    number_ok && suffix_ok
}

fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(flags: &[&str]) -> Args {
        let mut argv = vec!["switchyard-operator"];
        argv.extend_from_slice(flags);
        Args::try_parse_from(argv).expect("flags parse")
    }

    #[test]
    fn defaults_follow_the_design() {
        let config = parse(&["--cert-dir", "/tmp/c"]).into_config(None).unwrap();
        assert_eq!(config.namespace, "switchyard-system");
        assert_eq!(config.config_listen.to_string(), "0.0.0.0:9443");
        assert_eq!(config.webhook_listen.to_string(), "0.0.0.0:8443");
        assert_eq!(config.admin_listen.to_string(), "0.0.0.0:8080");
        assert_eq!(config.webhook_config_name, "switchyard");
        assert_eq!(config.sidecar_mode, SidecarMode::Auto);
        assert_eq!(config.config_max_connections, 32_768);
    }

    #[test]
    fn the_config_connection_cap_is_a_positive_count() {
        let config = parse(&["--cert-dir", "d", "--config-max-connections", "20000"]);
        assert_eq!(
            config.into_config(None).unwrap().config_max_connections,
            20_000
        );
        for bad in ["0", "-1", "lots", "2000000"] {
            let parsed = Args::try_parse_from(["x", "--config-max-connections", bad]);
            assert!(parsed.is_err(), "{bad} is accepted");
        }
    }

    #[test]
    fn namespace_comes_from_the_flag_then_pod_namespace() {
        let from_pod = parse(&["--cert-dir", "d"]).into_config(Some("ops".into()));
        assert_eq!(from_pod.unwrap().namespace, "ops");
        let from_flag = parse(&["--cert-dir", "d", "--namespace", "mine"]);
        assert_eq!(
            from_flag.into_config(Some("ops".into())).unwrap().namespace,
            "mine"
        );
    }

    #[test]
    fn invalid_values_are_refused() {
        let bad_ns = parse(&["--cert-dir", "d", "--namespace", "Bad_NS"]).into_config(None);
        assert_eq!(bad_ns, Err(ArgsError::Namespace("Bad_NS".into())));
        assert_eq!(
            parse(&[]).into_config(None).map(|c| c.cert_dir),
            Ok(None),
            "no --cert-dir: certificates live in a Secret"
        );
        let same = parse(&["--cert-dir", "d", "--admin-listen", "0.0.0.0:9443"]).into_config(None);
        assert!(matches!(same, Err(ArgsError::SameAddress(..))));
        assert!(Args::try_parse_from(["x", "--sidecar-mode", "sometimes"]).is_err());
    }

    #[test]
    fn sidecar_resources_default_and_are_validated() {
        let config = parse(&["--cert-dir", "d"]).into_config(None).unwrap();
        let resources = serde_json::to_value(&config.sidecar_resources).unwrap();
        assert_eq!(
            resources,
            serde_json::json!({
                "requests": {"cpu": "50m", "memory": "32Mi"},
                "limits": {"memory": "128Mi"},
            })
        );
        let custom = r#"{"requests":{"cpu":"0.1","memory":"1e6"}}"#;
        let config = parse(&["--cert-dir", "d", "--sidecar-resources", custom]);
        assert!(config.into_config(None).is_ok());
        for bad in [
            "not json",
            "[]",
            r#"{"request":{"cpu":"50m"}}"#,
            r#"{"limits":{"memory":"lots"}}"#,
            r#"{"limits":{"memory":"128MB"}}"#,
        ] {
            let config = parse(&["--cert-dir", "d", "--sidecar-resources", bad]).into_config(None);
            assert!(
                matches!(config, Err(ArgsError::SidecarResources(_))),
                "{bad}: {config:?}"
            );
        }
    }

    #[test]
    fn sidecar_env_is_a_json_object_of_strings() {
        let config = parse(&["--cert-dir", "d"]).into_config(None).unwrap();
        assert!(config.sidecar_env.is_empty());
        let otel = r#"{"OTEL_EXPORTER_OTLP_ENDPOINT":"http://c:4318","OTEL_RESOURCE_ATTRIBUTES":"a=1,b=2"}"#;
        let config = parse(&["--cert-dir", "d", "--sidecar-env", otel])
            .into_config(None)
            .unwrap();
        assert_eq!(config.sidecar_env["OTEL_RESOURCE_ATTRIBUTES"], "a=1,b=2");
        for bad in ["[]", r#"{"A": 1}"#, r#"{"A=B": "x"}"#, r#"{"": "x"}"#] {
            let config = parse(&["--cert-dir", "d", "--sidecar-env", bad]).into_config(None);
            assert!(
                matches!(config, Err(ArgsError::SidecarEnv(_))),
                "{bad}: {config:?}"
            );
        }
    }

    #[test]
    fn crds_stays_a_subcommand() {
        let args = parse(&["crds", "--out-dir", "out"]);
        assert!(matches!(
            args.command,
            Some(Command::Crds { out_dir: Some(_) })
        ));
    }
}
