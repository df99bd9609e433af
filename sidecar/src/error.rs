use std::net::SocketAddr;

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
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
