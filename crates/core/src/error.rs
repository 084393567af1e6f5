//! The domain error every service returns; each edge maps it to its own codes.

use rampart_proto::model::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("authentication failed")]
    Unauthorized,
    /// A registration of hardware that already has a device, without proof of its secret and
    /// without a re-provisioning window open.
    #[error("this hardware is already registered")]
    AlreadyRegistered,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("device is offline")]
    Offline,
    #[error("device did not acknowledge within {0} ms")]
    Timeout(u64),
    #[error("device refused the command: {0}")]
    DeviceError(String),
    /// Login refused; the same for an unknown user, a wrong password and a locked account.
    #[error("invalid username or password")]
    LoginFailed,
    /// The password was right but the account is not activated yet.
    #[error("account is not activated")]
    AccountNotActive,
    /// The password was right but the operator suspended the account.
    #[error("account is suspended")]
    AccountSuspended,
    /// The password was right; a TOTP or recovery code is missing or wrong.
    #[error("{0}")]
    TotpRequired(String),
    /// Missing, expired or revoked user token.
    #[error("invalid or expired token")]
    InvalidToken,
    /// Wrong, expired or used-up one-time code.
    #[error("invalid or expired code")]
    InvalidCode,
    #[error("{0}")]
    WeakPassword(String),
    #[error("{0}")]
    RateLimited(String),
    /// A bounded resource of the server (password hashing) is saturated; retry shortly.
    #[error("{0}")]
    Busy(String),
    /// A named rate or quota of `api_limits` refused the call.
    #[error("{0}")]
    Limited(Box<crate::limits::api::Refusal>),
    /// A webhook URL refused by the SSRF rules (scheme or address).
    #[error("{0}")]
    UrlRefused(String),
    /// An upload whose content is not of an accepted type (or not what it was declared as).
    #[error("{0}")]
    UnsupportedContent(String),
    /// A body or file over its size cap.
    #[error("{0}")]
    TooLarge(String),
    #[error("storage: {0}")]
    Store(#[from] rampart_store::StoreError),
    #[error("internal: {0}")]
    Internal(String),
}

impl From<crate::limits::api::Refusal> for Error {
    fn from(r: crate::limits::api::Refusal) -> Error {
        Error::Limited(Box::new(r))
    }
}

impl From<crate::secret::KeyError> for Error {
    fn from(e: crate::secret::KeyError) -> Error {
        Error::Internal(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
