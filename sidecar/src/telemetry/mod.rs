//! What the sidecar shows about itself: logging (JSON lines through `tracing`, filtered by
//! `RUST_LOG`, default `info`) and the Prometheus [`metrics`] (docs/reference/metrics.md).

pub mod metrics;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `filter` is the `RUST_LOG` value, if set; `json` picks JSON
/// lines (services) or compact text (the demo, a person at a terminal).
pub fn init(filter: Option<&str>, default: &str, json: bool) {
    let filter = filter
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Another subscriber (a test harness) may already be installed; keeping it is fine.
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.compact().try_init()
    };
}
