//! `api::Error` and [`ErrorCode`]: every failure answered has one code, and the code fixes the
//! HTTP status, the UPPER_SNAKE name and the documented meaning; answered as
//! `{"error": {"code", "message"}}`. 5xx bodies are generic; their details go to the log only.
//!
//! Codes are never written as strings elsewhere: a handler builds an `Error` from an `ErrorCode`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rampart_core::limits::api::Refusal;
use rampart_core::Error as CoreError;

#[derive(Debug)]
pub struct Error {
    /// The code's status, except where a layer's own refusal is rewritten as JSON
    /// ([`Error::with_status`]).
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    /// For a 429 from a named limit: the `X-RateLimit-*`/`Retry-After` headers and the body's
    /// `limit` field.
    pub limit: Option<Box<Refusal>>,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        Error::with_status(code.status(), code, message)
    }
    /// An answer whose status is not its code's: a status some layer chose (a body read that
    /// timed out: 408) answered in our format.
    pub(crate) fn with_status(
        status: StatusCode,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Error {
        Error {
            status,
            code,
            message: message.into(),
            limit: None,
        }
    }
    pub fn unauthorized() -> Error {
        Error::new(ErrorCode::Unauthorized, "missing or invalid credentials")
    }
    pub fn not_found(what: &str) -> Error {
        Error::new(ErrorCode::NotFound, format!("{what} not found"))
    }
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::InvalidRequest, message)
    }
    /// A body that does not parse as the JSON asked for.
    pub fn invalid_json(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::InvalidJson, message)
    }
}

impl From<CoreError> for Error {
    fn from(e: CoreError) -> Error {
        match e {
            CoreError::NotFound(what) => Error::not_found(what),
            CoreError::Conflict(m) => Error::new(ErrorCode::Conflict, m),
            CoreError::AlreadyRegistered => Error::new(
                ErrorCode::AlreadyRegistered,
                "this hardware is already registered; prove the device secret with `device_sign`, \
                 or have the product's owner open a re-provisioning window",
            ),
            CoreError::Unauthorized => Error::new(
                ErrorCode::Unauthorized,
                "signature, timestamp or nonce not accepted",
            ),
            CoreError::Forbidden(m) => Error::new(ErrorCode::Forbidden, m),
            CoreError::Invalid(m) => Error::invalid(m),
            CoreError::Model(m) => Error::new(ErrorCode::InvalidDatapoint, m.to_string()),
            CoreError::Offline => Error::new(ErrorCode::DeviceOffline, "device is offline"),
            CoreError::Timeout(ms) => Error::new(
                ErrorCode::CommandTimeout,
                format!("device did not acknowledge within {ms} ms"),
            ),
            CoreError::DeviceError(m) => Error::new(ErrorCode::DeviceError, m),
            CoreError::LoginFailed => {
                Error::new(ErrorCode::Unauthorized, "invalid username or password")
            }
            CoreError::AccountNotActive => Error::new(
                ErrorCode::AccountNotActive,
                "the account is not activated yet; use the code sent at sign-up",
            ),
            CoreError::AccountSuspended => Error::new(
                ErrorCode::AccountSuspended,
                "the account is suspended by the operator",
            ),
            CoreError::TotpRequired(m) => Error::new(ErrorCode::TotpRequired, m),
            CoreError::InvalidToken => Error::unauthorized(),
            CoreError::InvalidCode => Error::new(ErrorCode::InvalidCode, "invalid or expired code"),
            CoreError::WeakPassword(m) => Error::new(ErrorCode::WeakPassword, m),
            CoreError::RateLimited(m) => Error::new(ErrorCode::RateLimited, m),
            CoreError::Busy(m) => Error::new(ErrorCode::Busy, m),
            CoreError::Limited(r) => Error::from(*r),
            CoreError::UrlRefused(m) => Error::new(ErrorCode::WebhookUrlRefused, m),
            CoreError::UnsupportedContent(m) => Error::new(ErrorCode::UnsupportedMediaType, m),
            CoreError::TooLarge(m) => Error::new(ErrorCode::PayloadTooLarge, m),
            e @ (CoreError::Store(_) | CoreError::Internal(_)) => {
                tracing::error!(error = %e, "internal error");
                Error::new(ErrorCode::Internal, "internal error")
            }
        }
    }
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Error {
        Error {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: ErrorCode::RateLimited,
            message: r.to_string(),
            limit: Some(Box::new(r)),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let mut body =
            serde_json::json!({"error": {"code": self.code.as_str(), "message": self.message}});
        if let Some(r) = &self.limit {
            body["error"]["limit"] = r.state.name.into();
        }
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(r) = &self.limit {
            crate::server::limits::set_headers(
                resp.headers_mut(),
                &r.state,
                Some(r.retry_after_ms),
            );
        }
        if self.code == ErrorCode::Busy {
            // A saturated resource frees up within a computation or two.
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<axum::extract::rejection::JsonRejection> for Error {
    fn from(r: axum::extract::rejection::JsonRejection) -> Error {
        use axum::extract::rejection::JsonRejection as J;
        match r {
            J::MissingJsonContentType(_) => Error::new(
                ErrorCode::UnsupportedMediaType,
                "expected Content-Type: application/json",
            ),
            J::BytesRejection(b) => b.into(),
            r => Error::new(ErrorCode::InvalidJson, r.body_text()),
        }
    }
}

impl From<axum::extract::rejection::BytesRejection> for Error {
    fn from(b: axum::extract::rejection::BytesRejection) -> Error {
        if b.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::new(ErrorCode::PayloadTooLarge, "request body too large")
        } else {
            Error::invalid("the request body could not be read (too slow or interrupted)")
        }
    }
}

impl From<axum::extract::rejection::QueryRejection> for Error {
    fn from(r: axum::extract::rejection::QueryRejection) -> Error {
        Error::invalid(r.body_text())
    }
}

impl From<axum::extract::rejection::PathRejection> for Error {
    fn from(r: axum::extract::rejection::PathRejection) -> Error {
        Error::invalid(r.body_text())
    }
}

/// Declares [`ErrorCode`]: each code's variant, HTTP status, UPPER_SNAKE name and documented
/// meaning, side by side, so none of the four can be left out for a new code.
macro_rules! error_codes {
    ($($variant:ident => $status:ident, $code:literal, $meaning:literal;)+) => {
        /// Every code an [`Error`] answer can carry. The code fixes the status; its meaning is what
        /// the OpenAPI document says of it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum ErrorCode {
            $(#[doc = $meaning] $variant,)+
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The HTTP status of an answer with this code.
            pub fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status,)+
                }
            }

            /// The UPPER_SNAKE name answered in `error.code`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)+
                }
            }

            /// The code named `name`, if there is one.
            pub fn parse(name: &str) -> Option<ErrorCode> {
                ErrorCode::ALL.iter().copied().find(|c| c.as_str() == name)
            }

            /// What the code means, for the API's documentation.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $meaning,)+
                }
            }
        }
    };
}

error_codes! {
    InvalidRequest => BAD_REQUEST, "INVALID_REQUEST",
        "a field, parameter or paging value out of range or malformed";
    InvalidJson => BAD_REQUEST, "INVALID_JSON",
        "the body is not JSON, has wrong types or unknown fields";
    InvalidDatapoint => BAD_REQUEST, "INVALID_DATAPOINT",
        "a model or command that breaks the data-point rules";
    WeakPassword => BAD_REQUEST, "WEAK_PASSWORD",
        "the password breaks a rule of the policy (the message names it)";
    InvalidCode => BAD_REQUEST, "INVALID_CODE", "a wrong, expired or used-up code";
    InvalidClient => BAD_REQUEST, "INVALID_CLIENT",
        "unknown `client_id`, or a `redirect_uri` not registered for it";
    InvalidScope => BAD_REQUEST, "INVALID_SCOPE",
        "an unknown scope or one the client was not registered for";
    UnsupportedResponseType => BAD_REQUEST, "UNSUPPORTED_RESPONSE_TYPE",
        "a `response_type` other than `code`";
    OidcStateMismatch => BAD_REQUEST, "OIDC_STATE_MISMATCH",
        "the callback came without the browser-binding cookie of the login's start, or with another one";
    WebhookUrlRefused => BAD_REQUEST, "WEBHOOK_URL_REFUSED",
        "the URL is not https (`webhooks.allow_http` off), or its host is or resolves to a loopback, private, link-local or other non-public address (`webhooks.allow_private_addresses` off)";
    Unauthorized => UNAUTHORIZED, "UNAUTHORIZED", "missing, wrong, expired or revoked credentials";
    TotpRequired => UNAUTHORIZED, "TOTP_REQUIRED",
        "TOTP is on and the code is missing, wrong, expired or replayed";
    OidcLoginFailed => UNAUTHORIZED, "OIDC_LOGIN_FAILED",
        "the login at the identity provider could not be verified";
    InvalidAuthorization => UNAUTHORIZED, "INVALID_AUTHORIZATION",
        "no `Authorization` header, another scheme, or a missing, repeated, unknown or malformed parameter";
    StaleTimestamp => UNAUTHORIZED, "STALE_TIMESTAMP",
        "`ts` is more than 300 s away from the server's clock";
    SignatureMismatch => UNAUTHORIZED, "SIGNATURE_MISMATCH",
        "the signature does not match the request, or the key id is unknown";
    KeyDisabled => UNAUTHORIZED, "KEY_DISABLED", "the key is disabled";
    KeyExpired => UNAUTHORIZED, "KEY_EXPIRED", "the key is past its `expires_at`";
    EnterpriseSuspended => UNAUTHORIZED, "ENTERPRISE_SUSPENDED",
        "the key's enterprise is suspended by the operator";
    IpNotAllowed => UNAUTHORIZED, "IP_NOT_ALLOWED",
        "the connection's address is in none of the key's networks";
    NonceReused => UNAUTHORIZED, "NONCE_REUSED",
        "the nonce was already used with this key (a replay)";
    Forbidden => FORBIDDEN, "FORBIDDEN", "the caller's role does not allow this act";
    InsufficientScope => FORBIDDEN, "INSUFFICIENT_SCOPE",
        "a third-party token without the scope this needs";
    AccountNotActive => FORBIDDEN, "ACCOUNT_NOT_ACTIVE",
        "the right password, but the account was never activated";
    AccountSuspended => FORBIDDEN, "ACCOUNT_SUSPENDED",
        "the right password, but the operator suspended the account";
    NotFound => NOT_FOUND, "NOT_FOUND", "unknown (or not visible to the caller)";
    MethodNotAllowed => METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED",
        "the path exists but does not serve this method";
    Conflict => CONFLICT, "CONFLICT", "the state does not allow it (already exists, last owner, ...)";
    AlreadyRegistered => CONFLICT, "ALREADY_REGISTERED",
        "the hardware already has a device; nothing changed (prove its secret with `device_sign`, or have the owner open a re-provisioning window)";
    DeviceOffline => CONFLICT, "DEVICE_OFFLINE", "the device has no session";
    PayloadTooLarge => PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE",
        "body over `http.max_body_bytes` (default 4 MiB; 1 MiB for a signed request)";
    UnsupportedMediaType => UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE",
        "body without `Content-Type: application/json`";
    RangeNotSatisfiable => RANGE_NOT_SATISFIABLE, "RANGE_NOT_SATISFIABLE",
        "a `Range` that starts past the end of the file";
    UpgradeRequired => UPGRADE_REQUIRED, "UPGRADE_REQUIRED", "no WebSocket upgrade was asked for";
    RateLimited => TOO_MANY_REQUESTS, "RATE_LIMITED",
        "a rate or quota was exceeded: `error.limit` names it (docs/api.md, Limits), `X-RateLimit-Reset` and `Retry-After` say when to try again";
    TooManyCommands => TOO_MANY_REQUESTS, "TOO_MANY_COMMANDS",
        "an event-stream session has as many remote-control commands in flight as it may";
    Internal => INTERNAL_SERVER_ERROR, "INTERNAL",
        "an internal error (details are logged, never answered)";
    DeviceError => BAD_GATEWAY, "DEVICE_ERROR", "the device answered the command with an error";
    OidcProviderError => BAD_GATEWAY, "OIDC_PROVIDER_ERROR",
        "the identity provider could not be reached or answered badly";
    Busy => SERVICE_UNAVAILABLE, "BUSY",
        "every password-hashing slot and queue place is taken (`limits.password_hash_concurrency`, `limits.password_hash_queue`); `Retry-After` says when to try again";
    CommandTimeout => GATEWAY_TIMEOUT, "COMMAND_TIMEOUT", "the device did not acknowledge in time";
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The code of a signed request's refusal (`rampart_core` names each refusal; the names match).
pub(crate) fn key_refusal_code(e: &rampart_core::access::access_keys::KeyAuthError) -> ErrorCode {
    use rampart_core::access::access_keys::KeyAuthError as K;
    match e {
        K::Malformed => ErrorCode::InvalidAuthorization,
        K::StaleTimestamp => ErrorCode::StaleTimestamp,
        K::SignatureMismatch => ErrorCode::SignatureMismatch,
        K::NonceReused => ErrorCode::NonceReused,
        K::IpNotAllowed => ErrorCode::IpNotAllowed,
        K::KeyDisabled => ErrorCode::KeyDisabled,
        K::EnterpriseSuspended => ErrorCode::EnterpriseSuspended,
        K::KeyExpired => ErrorCode::KeyExpired,
        K::Internal(_) => ErrorCode::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_core::access::access_keys::KeyAuthError as K;

    #[test]
    fn codes_are_unique_upper_snake_with_a_meaning() {
        let mut seen = std::collections::BTreeSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.as_str()), "{} twice", c.as_str());
            assert!(c
                .as_str()
                .chars()
                .all(|ch| ch.is_ascii_uppercase() || ch == '_'));
            assert!(!c.meaning().is_empty());
            assert!(c.status().is_client_error() || c.status().is_server_error());
            assert_eq!(ErrorCode::parse(c.as_str()), Some(*c));
        }
    }

    #[test]
    fn key_refusals_answer_the_codes_core_names() {
        for k in [
            K::Malformed,
            K::StaleTimestamp,
            K::SignatureMismatch,
            K::NonceReused,
            K::IpNotAllowed,
            K::KeyDisabled,
            K::EnterpriseSuspended,
            K::KeyExpired,
        ] {
            assert_eq!(key_refusal_code(&k).as_str(), k.code());
            assert_eq!(key_refusal_code(&k).status(), StatusCode::UNAUTHORIZED);
        }
    }
}
