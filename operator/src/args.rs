//! Command-line flags (each with a `SWITCHYARD_` environment twin, DESIGN §4) and their
//! validation into a [`Config`]. Nothing below `main` reads the environment: `main` passes
//! `POD_NAMESPACE` in explicitly so that validation stays a pure, testable function.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// The namespace used when neither `--namespace` nor `POD_NAMESPACE` is set.
pub const DEFAULT_NAMESPACE: &str = "switchyard-system";

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
    #[arg(long, env = "SWITCHYARD_CERT_DIR")]
    pub cert_dir: Option<PathBuf>,

    /// Name of the MutatingWebhookConfiguration whose `caBundle` the operator keeps current.
    #[arg(
        long,
        env = "SWITCHYARD_WEBHOOK_CONFIG_NAME",
        default_value = "switchyard"
    )]
    pub webhook_config_name: String,

    /// Image of the injected sidecar.
    #[arg(long, env = "SWITCHYARD_SIDECAR_IMAGE")]
    pub sidecar_image: Option<String>,

    /// How the sidecar is injected.
    #[arg(long, env = "SWITCHYARD_SIDECAR_MODE", value_enum, default_value_t = SidecarMode::Auto)]
    pub sidecar_mode: SidecarMode,
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

/// How the webhook injects the sidecar (DESIGN §4).
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
    pub webhook_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// TODO(operator): in a cluster, certificates go to a create-only Secret; until then
    /// serving requires `--cert-dir`.
    pub cert_dir: PathBuf,
    pub webhook_config_name: String,
    pub sidecar_image: Option<String>,
    pub sidecar_mode: SidecarMode,
}

/// Why flags were refused; `main` prints it on one line and exits 64.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgsError {
    #[error("--namespace {0:?} is not a valid namespace name (a DNS-1123 label)")]
    Namespace(String),
    #[error("--cert-dir is required (in-cluster certificate storage is not implemented yet)")]
    MissingCertDir,
    #[error("--webhook-config-name {0:?} is not a valid object name")]
    WebhookConfigName(String),
    #[error("--sidecar-image must not be empty")]
    EmptySidecarImage,
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
        let cert_dir = self.cert_dir.ok_or(ArgsError::MissingCertDir)?;
        Ok(Config {
            namespace,
            config_listen: self.config_listen,
            webhook_listen: self.webhook_listen,
            admin_listen: self.admin_listen,
            cert_dir,
            webhook_config_name: self.webhook_config_name,
            sidecar_image: self.sidecar_image,
            sidecar_mode: self.sidecar_mode,
        })
    }
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
        assert_eq!(parse(&[]).into_config(None), Err(ArgsError::MissingCertDir));
        let same = parse(&["--cert-dir", "d", "--admin-listen", "0.0.0.0:9443"]).into_config(None);
        assert!(matches!(same, Err(ArgsError::SameAddress(..))));
        assert!(Args::try_parse_from(["x", "--sidecar-mode", "sometimes"]).is_err());
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
