use std::net::SocketAddr;
use std::path::PathBuf;

/// What can stop the sidecar from starting or serving. Per-request failures are
/// [`crate::failure::AttemptError`]s and never surface here.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Manifests(#[from] switchyard_crds::Error),

    #[error("cannot watch manifests: {0}")]
    Watch(#[from] notify::Error),

    #[error("cannot read the CA bundle {path}: {source}")]
    CaBundle {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the CA bundle {path} holds no usable certificate")]
    NoCaCertificates { path: PathBuf },

    #[error("cannot set up TLS to the config server: {0}")]
    Tls(#[from] rustls::Error),

    #[error("cannot read the token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("config server unreachable: {0}")]
    ConfigServerUnreachable(#[source] Box<dyn std::error::Error + Send + Sync>),

    #[error("config server did not answer within {0:?}")]
    ConfigServerTimeout(std::time::Duration),

    #[error("config server answered {status}: {message}")]
    ConfigServerStatus { status: u16, message: String },

    #[error("route table refused: {0}")]
    TableRefused(String),

    #[error("cannot write the state file {path}: {source}")]
    StateWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("state file {path} ignored: {reason}")]
    StateInvalid { path: PathBuf, reason: String },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
