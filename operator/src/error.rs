//! The operator's one error type: every fallible operation below `main` returns
//! [`Result`], and `main` turns the error into an exit with context.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can go wrong while starting or running the operator's servers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid certificate material in {path}: {message}")]
    InvalidCertificate { path: PathBuf, message: String },

    #[error("cannot generate certificates: {0}")]
    CertificateGeneration(#[from] rcgen::Error),

    #[error("cannot store certificates: {0}")]
    CertificateStore(String),

    #[error("cannot build the TLS configuration: {0}")]
    Tls(#[from] rustls::Error),

    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),

    #[error("kubernetes client error: {0}")]
    Kube(#[from] kube::Error),

    #[error("cannot write the status of {object}: {source}")]
    StatusWrite {
        object: String,
        #[source]
        source: kube::Error,
    },

    #[error("cannot look up {owner}, a pod's controller: {source}")]
    OwnerLookup {
        owner: String,
        #[source]
        source: kube::Error,
    },

    #[error("watch of {resource} failed: {source}")]
    Watch {
        resource: &'static str,
        #[source]
        source: kube::runtime::watcher::Error,
    },
}

impl Error {
    /// The `reason` label of `switchyard_controller_errors_total`: low-cardinality, stable.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Io { .. } => "io",
            Error::InvalidCertificate { .. }
            | Error::CertificateGeneration(_)
            | Error::CertificateStore(_) => "certificate",
            Error::Tls(_) => "tls",
            Error::Bind { .. } => "bind",
            Error::Metrics(_) => "metrics",
            Error::Kube(_) => "kube",
            Error::StatusWrite { .. } => "status_write",
            Error::Watch { .. } => "watch",
            Error::OwnerLookup { .. } => "owner_lookup",
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether the apiserver refused because the object or its namespace is going away (404, or a
/// namespace being terminated): nothing to retry or warn about, the next step will not ask again.
pub fn is_gone(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => {
            status.code == 404
                || (status.code == 403 && status.message.contains("being terminated"))
        }
        _ => false,
    }
}
