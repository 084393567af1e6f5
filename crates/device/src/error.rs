//! [`Error`], the error type of every fallible call in this crate.
//!
//! Messages never contain secrets: a variant carries what the server or the network said,
//! never the credentials that were sent.

/// Errors of registration, the MQTT client and the simulator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The HTTP request failed before an answer came (connect, TLS, timeout, body).
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered with an error (`{"error": {"code", "message"}}`).
    #[error("rejected by server ({status}): {code}: {message}")]
    Rejected {
        status: u16,
        code: String,
        message: String,
    },
    /// The MQTT client could not take a request (queue full, client gone).
    #[error("mqtt: {0}")]
    Mqtt(String),
    /// TLS configuration (CA file) is unusable.
    #[error("tls: {0}")]
    Tls(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Bad input: options, batch file, model file or a server answer that breaks the contract.
    #[error("invalid: {0}")]
    Invalid(String),
}

impl Error {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    /// Whether retrying the same request later may succeed (network errors, 429, 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Http(_) | Error::Io(_) => true,
            Error::Rejected { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}
