//! Command-line flags (each with a `SWITCHYARD_*` environment twin), validated into a
//! [`Config`](crate::app::Config) before any port is bound.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser, Subcommand};

use crate::app::Config;
use crate::standalone::Selection;

/// Switchyard's sidecar: an OpenAI-compatible LLM gateway on localhost.
#[derive(Debug, Parser)]
#[command(name = "switchyard-sidecar", version, about)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// ProviderPool, ModelRoute and Secret YAML files or directories to serve (standalone mode).
    #[arg(long, env = "SWITCHYARD_MANIFESTS", value_delimiter = ',', num_args = 1..)]
    pub manifests: Vec<PathBuf>,

    /// The data plane (OpenAI- and Anthropic-compatible API). Loopback only.
    #[arg(long, env = "SWITCHYARD_LISTEN", default_value = "127.0.0.1:9400")]
    pub listen: SocketAddr,

    /// Health, readiness and metrics, for the kubelet and Prometheus.
    #[arg(long, env = "SWITCHYARD_ADMIN_LISTEN", default_value = "0.0.0.0:9401")]
    pub admin_listen: SocketAddr,

    /// `/debug/config`; loopback only; empty disables it.
    #[arg(
        long,
        env = "SWITCHYARD_DEBUG_LISTEN",
        default_value = "127.0.0.1:9402"
    )]
    pub debug_listen: String,

    /// Largest request body accepted; larger ones get 413.
    #[arg(long, env = "SWITCHYARD_MAX_BODY_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// The namespace this sidecar plays in standalone mode. Default: the namespace all routes
    /// share, else `default`.
    #[arg(long, env = "SWITCHYARD_NAMESPACE")]
    pub namespace: Option<String>,

    /// Pod labels (`key=value`, comma-separated) matched against routes' `podSelector` in
    /// standalone mode.
    #[arg(long, env = "SWITCHYARD_POD_LABELS", value_delimiter = ',')]
    pub pod_labels: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar on examples/demo with simulated providers and show what it does.
    Demo(DemoArgs),
}

#[derive(Debug, ClapArgs)]
pub struct DemoArgs {
    /// The demo's manifests. Default: `examples/demo` if present, else a built-in copy of it.
    #[arg(long)]
    pub manifests: Option<PathBuf>,
}

impl Args {
    /// Validates the flags into a [`Config`]; the error is a one-line message for exit code 64.
    pub fn config(&self) -> Result<Config, String> {
        if self.manifests.is_empty() {
            return Err(
                "--manifests is required (pod mode, --config-server, arrives with the operator); \
                        try `switchyard-sidecar demo`"
                    .into(),
            );
        }
        if !self.listen.ip().is_loopback() {
            return Err(format!(
                "--listen {}: the data plane listens on loopback only",
                self.listen
            ));
        }
        let debug_listen = match self.debug_listen.trim() {
            "" => None,
            text => {
                let addr: SocketAddr = text.parse().map_err(|_| {
                    format!("--debug-listen {text:?} is not an address like 127.0.0.1:9402")
                })?;
                if !addr.ip().is_loopback() {
                    return Err(format!(
                        "--debug-listen {addr}: the debug listener is loopback only"
                    ));
                }
                Some(addr)
            }
        };
        let mut labels = BTreeMap::new();
        for pair in &self.pod_labels {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("--pod-labels {pair:?} is not key=value"))?;
            labels.insert(key.trim().to_string(), value.trim().to_string());
        }
        if self.max_body_bytes == 0 {
            return Err("--max-body-bytes must be positive".into());
        }
        Ok(Config {
            listen: self.listen,
            admin_listen: self.admin_listen,
            debug_listen,
            max_body_bytes: self.max_body_bytes,
            manifests: self.manifests.clone(),
            selection: Selection {
                namespace: self.namespace.clone(),
                labels,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut all = vec!["switchyard-sidecar"];
        all.extend_from_slice(args);
        Args::try_parse_from(all)
            .map_err(|e| e.to_string())?
            .config()
    }

    #[test]
    fn defaults_follow_the_design() {
        let c = parse(&["--manifests", "a.yaml,b"]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9400");
        assert_eq!(c.admin_listen.to_string(), "0.0.0.0:9401");
        assert_eq!(c.debug_listen.unwrap().to_string(), "127.0.0.1:9402");
        assert_eq!(c.max_body_bytes, 32 * 1024 * 1024);
        assert_eq!(c.manifests.len(), 2);
    }

    #[test]
    fn unsafe_or_malformed_flags_are_refused() {
        assert!(parse(&[]).unwrap_err().contains("--manifests is required"));
        assert!(
            parse(&["--manifests", "a", "--listen", "0.0.0.0:9400"])
                .unwrap_err()
                .contains("loopback")
        );
        assert!(
            parse(&["--manifests", "a", "--debug-listen", "0.0.0.0:1"])
                .unwrap_err()
                .contains("loopback")
        );
        assert!(
            parse(&["--manifests", "a", "--pod-labels", "app"])
                .unwrap_err()
                .contains("key=value")
        );
        assert!(
            parse(&["--manifests", "a", "--debug-listen", ""])
                .unwrap()
                .debug_listen
                .is_none()
        );
        let c = parse(&["--manifests", "a", "--pod-labels", "app=bot,tier=premium"]).unwrap();
        assert_eq!(c.selection.labels["tier"], "premium");
    }
}
