//! Pod mode: the sidecar as the operator's client. [`subscribe`] long-polls the config server
//! for route tables, [`persist`] keeps the last good one on disk to serve across restarts, and
//! [`report`] sends this sidecar's version and target health back (docs/reference/operator.md).

pub mod persist;
pub mod report;
pub mod subscribe;

use std::path::PathBuf;
use std::time::Duration;

/// Pod mode's settings.
#[derive(Clone, Debug)]
pub struct PodConfig {
    /// `https://host:port`, without a trailing slash.
    pub url: String,
    /// The projected ServiceAccount token, re-read for every request.
    pub token_file: PathBuf,
    /// The PEM CA bundle, re-read for every connection.
    pub ca_file: PathBuf,
    /// Where the last known good table is kept.
    pub state_dir: PathBuf,
    /// Mean time between reports.
    pub report_interval: Duration,
    /// This run of this sidecar in reports: `<pod UID or hostname>-<start unix seconds>`.
    pub instance: String,
}
