//! The operator's one error type (STYLE 8): every fallible operation below `main` returns
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
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
