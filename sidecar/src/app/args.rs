//! Command-line flags (each with a `SWITCHYARD_*` environment twin), validated into a
//! [`Config`](super::Config) before any port is bound.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

#[cfg(feature = "demo")]
use clap::Args as ClapArgs;
use clap::{Parser, Subcommand};

use crate::app::{Config, PodConfig, Source};
use crate::table::standalone::Selection;

/// Switchyard's sidecar: an OpenAI-compatible LLM gateway on localhost.
///
/// The `demo` subcommand exists only in builds with the `demo` cargo feature (the default); release
/// images are built without it, carry no simulator, and refuse `demo` as an unexpected argument.
/// `complexity` (fit and judge the complexity scorer) is in every build.
#[derive(Debug, Parser)]
#[command(name = "switchyard-sidecar", version, about)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// ProviderPool, ModelRoute and Secret YAML files or directories to serve (standalone mode).
    #[arg(long, env = "SWITCHYARD_MANIFESTS", value_delimiter = ',', num_args = 1..)]
    pub manifests: Vec<PathBuf>,

    /// The operator's config server, `https://HOST:PORT` (pod mode).
    #[arg(long, env = "SWITCHYARD_CONFIG_SERVER")]
    pub config_server: Option<String>,

    /// The pod's projected ServiceAccount token (audience `switchyard`); re-read on every request.
    #[arg(long, env = "SWITCHYARD_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// PEM CA bundle the config server's certificate must chain to; re-read on every connection.
    #[arg(long, env = "SWITCHYARD_CA_FILE")]
    pub ca_file: Option<PathBuf>,

    /// Where the last known good route table is kept (mode 0600), to serve across restarts.
    #[arg(long, env = "SWITCHYARD_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// How often to report counters to the operator (±20% jitter), e.g. `30s`.
    #[arg(long, env = "SWITCHYARD_REPORT_INTERVAL", default_value = "30s")]
    pub report_interval: String,

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

    /// How long requests in flight get to finish after SIGTERM, e.g. `25s`; streams still open
    /// then are ended with an error event. In a pod the webhook sets it from the pod's
    /// `terminationGracePeriodSeconds`.
    #[arg(long, env = "SWITCHYARD_DRAIN_TIMEOUT", default_value = "25s")]
    pub drain_timeout: String,

    /// After SIGTERM, keep accepting requests until the application has had no connection open
    /// for a second (it exited, or is done calling), within the drain timeout. The webhook sets
    /// it in container mode, where the app is told to stop at the same moment as the sidecar.
    #[arg(long, env = "SWITCHYARD_ACCEPT_WHILE_DRAINING")]
    pub accept_while_draining: bool,

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

    /// With OpenTelemetry tracing on (`OTEL_EXPORTER_OTLP_ENDPOINT`), send each provider a W3C
    /// `traceparent` naming the attempt's span. Off by default: a provider learns nothing of the
    /// caller's traces unless asked.
    #[arg(long, env = "SWITCHYARD_OTEL_PROPAGATE_UPSTREAM")]
    pub otel_propagate_upstream: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar on examples/demo with simulated providers and show what it does.
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
    /// Judge, fit and calibrate the complexity scorer on labelled prompts
    /// (CSV: prompt,strong_correct,weak_correct).
    #[command(subcommand)]
    Complexity(ComplexityCommand),
}

/// `switchyard-sidecar complexity …` (docs/reference/complexity.md).
#[derive(Clone, Debug, Subcommand)]
pub enum ComplexityCommand {
    /// Print APGR, CPT(50%) and CPT(80%) of a scorer on a labelled CSV.
    Eval {
        /// Labelled CSV files; each is judged on its own.
        #[arg(long, required = true, num_args = 1..)]
        data: Vec<PathBuf>,
        /// Only the held-out split of each file (the rule in docs/reference/complexity.md).
        #[arg(long)]
        held_out: bool,
        #[arg(long, value_enum, default_value = "heuristic")]
        scorer: ScorerKind,
        /// The model file, for `--scorer model`.
        #[arg(long, required_if_eq("scorer", "model"))]
        model: Option<PathBuf>,
    },
    /// Fit the `Model` scorer on labelled CSVs and write its model file.
    Train {
        #[arg(long, required = true, num_args = 1..)]
        data: Vec<PathBuf>,
        /// Train on the train split only (leaving the held-out split for `eval --held-out`).
        #[arg(long)]
        train_split: bool,
        #[arg(long)]
        out: PathBuf,
        /// Seeds the shuffle: the same data and seed give the same file.
        #[arg(long, default_value_t = 12)]
        seed: u64,
    },
    /// Print the `minComplexity` threshold that sends a share of the sample to the strong side.
    Calibrate {
        /// The model file; without it the Heuristic is calibrated.
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long, required = true, num_args = 1..)]
        data: Vec<PathBuf>,
        /// Share of prompts to send to the strong targets, 0–1.
        #[arg(long)]
        strong_share: f64,
    },
}

/// Which scorer `complexity eval` judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScorerKind {
    Heuristic,
    Model,
    /// The prompt's length in characters: the baseline to beat.
    Length,
}

#[cfg(feature = "demo")]
#[derive(Clone, Debug, ClapArgs)]
pub struct DemoArgs {
    /// The demo's manifests. Default: `examples/demo` if present, else a built-in copy of it.
    #[arg(long)]
    pub manifests: Option<PathBuf>,
}

impl Args {
    /// Validates the flags into a [`Config`]; the error is a one-line message for exit code 64.
    /// `identity` names this pod in reports (its UID, else its hostname); `main` reads it from the
    /// environment so that nothing below it has to.
    pub fn config(&self, identity: &str) -> Result<Config, String> {
        let source = self.source(identity)?;
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
        let drain = switchyard_crds::duration::parse(&self.drain_timeout).ok_or_else(|| {
            format!(
                "--drain-timeout {:?} is not a duration like 25s or 500ms",
                self.drain_timeout
            )
        })?;
        Ok(Config {
            listen: self.listen,
            admin_listen: self.admin_listen,
            debug_listen,
            max_body_bytes: self.max_body_bytes,
            drain,
            accept_while_draining: self.accept_while_draining,
            source: match source {
                Some(pod) => Source::ConfigServer(pod),
                None => Source::Manifests {
                    paths: self.manifests.clone(),
                    selection: Selection {
                        namespace: self.namespace.clone(),
                        labels,
                    },
                },
            },
        })
    }

    /// Pod mode's settings, or `None` in standalone mode.
    fn source(&self, identity: &str) -> Result<Option<PodConfig>, String> {
        let Some(url) = &self.config_server else {
            if self.manifests.is_empty() {
                return Err(format!(
                    "one of --manifests (standalone) or --config-server (in a pod) is \
                     required{}",
                    if cfg!(feature = "demo") {
                        "; try `switchyard-sidecar demo`"
                    } else {
                        ""
                    }
                ));
            }
            for (flag, set) in [
                ("--token-file", self.token_file.is_some()),
                ("--ca-file", self.ca_file.is_some()),
                ("--state-dir", self.state_dir.is_some()),
            ] {
                if set {
                    return Err(format!(
                        "{flag} belongs to pod mode: it needs --config-server"
                    ));
                }
            }
            return Ok(None);
        };
        if !self.manifests.is_empty() {
            return Err("--manifests and --config-server exclude each other: pick one mode".into());
        }
        let url = url.trim().trim_end_matches('/');
        let host = url.strip_prefix("https://").ok_or_else(|| {
            format!("--config-server {url:?} must be an https:// URL (keys travel over it)")
        })?;
        if host.is_empty() || host.contains(['?', '#', ' ']) {
            return Err(format!(
                "--config-server {url:?} is not a URL like https://host:9443"
            ));
        }
        let need = |value: &Option<PathBuf>, flag: &str| {
            value
                .clone()
                .ok_or_else(|| format!("--config-server needs {flag}"))
        };
        let token_file = need(&self.token_file, "--token-file")?;
        let ca_file = need(&self.ca_file, "--ca-file")?;
        let state_dir = need(&self.state_dir, "--state-dir")?;
        let report_interval = switchyard_crds::duration::parse(&self.report_interval)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                format!(
                    "--report-interval {:?} is not a positive duration like 30s or 500ms",
                    self.report_interval
                )
            })?;
        let started = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        Ok(Some(PodConfig {
            url: url.to_string(),
            token_file,
            ca_file,
            state_dir,
            report_interval,
            instance: format!("{identity}-{started}"),
        }))
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
            .config("pod-uid")
    }

    fn pod_of(c: &Config) -> &PodConfig {
        match &c.source {
            Source::ConfigServer(pod) => pod,
            Source::Manifests { .. } => panic!("not pod mode"),
        }
    }

    #[test]
    fn defaults_follow_the_design() {
        let c = parse(&["--manifests", "a.yaml,b"]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9400");
        assert_eq!(c.admin_listen.to_string(), "0.0.0.0:9401");
        assert_eq!(c.debug_listen.unwrap().to_string(), "127.0.0.1:9402");
        assert_eq!(c.max_body_bytes, 32 * 1024 * 1024);
        assert!(matches!(&c.source, Source::Manifests { paths, .. } if paths.len() == 2));
    }

    #[test]
    fn unsafe_or_malformed_flags_are_refused() {
        assert!(parse(&[]).unwrap_err().contains("one of --manifests"));
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
        assert!(
            matches!(&c.source, Source::Manifests { selection, .. } if selection.labels["tier"] == "premium")
        );
    }

    #[test]
    fn the_drain_timeout_and_lingering_are_flags() {
        let c = parse(&["--manifests", "a"]).unwrap();
        assert_eq!(c.drain, crate::app::DEFAULT_DRAIN);
        assert!(!c.accept_while_draining);
        let c = parse(&[
            "--manifests",
            "a",
            "--drain-timeout",
            "55s",
            "--accept-while-draining",
        ])
        .unwrap();
        assert_eq!(c.drain, Duration::from_secs(55));
        assert!(c.accept_while_draining);
        assert!(
            parse(&["--manifests", "a", "--drain-timeout", "soon"])
                .unwrap_err()
                .contains("--drain-timeout")
        );
    }

    const POD: [&str; 8] = [
        "--config-server",
        "https://switchyard-config.switchyard-system.svc:9443/",
        "--token-file",
        "/var/run/secrets/switchyard/token",
        "--ca-file",
        "/etc/switchyard/ca/ca.crt",
        "--state-dir",
        "/var/lib/switchyard",
    ];

    #[test]
    fn pod_mode_takes_the_config_server_flags() {
        let c = parse(&POD).unwrap();
        let pod = pod_of(&c);
        assert_eq!(
            pod.url, "https://switchyard-config.switchyard-system.svc:9443",
            "trailing slash dropped"
        );
        assert_eq!(pod.report_interval, Duration::from_secs(30));
        assert!(pod.instance.starts_with("pod-uid-"), "{}", pod.instance);
        assert!(pod.instance["pod-uid-".len()..].parse::<u64>().is_ok());

        let mut args = POD.to_vec();
        args.extend(["--report-interval", "200ms"]);
        assert_eq!(
            pod_of(&parse(&args).unwrap()).report_interval,
            Duration::from_millis(200)
        );
    }

    #[test]
    fn pod_mode_flags_are_validated() {
        let with = |extra: &[&str]| {
            let mut args = POD.to_vec();
            args.extend_from_slice(extra);
            parse(&args).unwrap_err()
        };
        assert!(with(&["--manifests", "a"]).contains("exclude each other"));
        assert!(with(&["--report-interval", "30"]).contains("--report-interval"));
        assert!(with(&["--report-interval", "0s"]).contains("--report-interval"));
        for (i, flag) in ["--token-file", "--ca-file", "--state-dir"]
            .iter()
            .enumerate()
        {
            let mut args = POD.to_vec();
            args.drain(2 + 2 * i..4 + 2 * i);
            let error = parse(&args).unwrap_err();
            assert!(error.contains(&format!("needs {flag}")), "{error}");
        }
        let mut args = POD.to_vec();
        args[1] = "http://operator:9443";
        assert!(parse(&args).unwrap_err().contains("https://"));
        assert!(
            parse(&["--manifests", "a", "--state-dir", "/tmp"])
                .unwrap_err()
                .contains("needs --config-server")
        );
        for error in [with(&["--manifests", "a"]), parse(&[]).unwrap_err()] {
            assert!(!error.contains('\n'), "one line: {error}");
        }
    }
}
