use std::path::PathBuf;

/// Everything that can go wrong while loading manifests or compiling them into route tables.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: document {document}: {message}")]
    Parse {
        path: PathBuf,
        document: usize,
        message: String,
    },

    #[error("{path}: {object} appears twice (also in {first})")]
    Duplicate {
        path: PathBuf,
        first: PathBuf,
        object: crate::compile::ObjectKey,
    },

    /// A complexity model file that cannot be used, and why.
    #[error("complexity model: {0}")]
    Model(String),

    /// A labelled CSV (`prompt,strong_correct,weak_correct`) that cannot be read.
    #[error("{path}: {message}")]
    Dataset { path: PathBuf, message: String },

    /// Every problem `compile` found, each prefixed with the file it came from.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
