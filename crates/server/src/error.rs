//! Why a server could not start or stop cleanly. Each variant's message is what `rampart` prints
//! after `error: `, so it names the file, address or setting at fault. It never carries a secret.

use std::path::PathBuf;

/// An error while opening the data directory, starting the listeners or draining at shutdown.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A configuration value is invalid, or a file it names cannot be read.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The data directory cannot be created.
    #[error("data directory {}: {source}", path.display())]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The master key cannot be read or created, or others may read it.
    #[error(transparent)]
    MasterKey(#[from] rampart_core::secret::KeyError),
    /// The store cannot be opened or answered with an error.
    #[error(transparent)]
    Store(#[from] rampart_store::StoreError),
    /// The core refused a start-up step.
    #[error(transparent)]
    Core(#[from] rampart_core::Error),
    /// A start-up step of the core failed; `step` says which.
    #[error("{step}: {source}")]
    Step {
        step: &'static str,
        source: rampart_core::Error,
    },
    /// The TLS certificate or key cannot be loaded or generated.
    #[error("{0}")]
    Tls(String),
    /// A listener cannot be bound.
    #[error("bind {listener} {addr}: {source}")]
    Bind {
        listener: &'static str,
        addr: String,
        source: std::io::Error,
    },
    /// Any other I/O failure (a bound socket's address, `listeners.json`).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
