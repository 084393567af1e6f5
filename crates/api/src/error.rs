//! `api::Error`: every client-caused failure has one HTTP status and one UPPER_SNAKE code, answered as
//! `{"error": {"code", "message"}}`. 5xx bodies are generic; their details go to the log only.
//!
//! Never decides whether something failed; it only says how a failure is answered.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rampart_core::api_limits::Refusal;
use rampart_core::Error as CoreError;

#[derive(Debug)]
pub struct Error {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// For a 429 from a named limit: the `X-RateLimit-*`/`Retry-After` headers and the body's
    /// `limit` field.
    pub limit: Option<Box<Refusal>>,
}

impl Error {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Error {
        Error {
            status,
            code,
            message: message.into(),
            limit: None,
        }
    }
    pub fn unauthorized() -> Error {
        Error::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "missing or invalid credentials",
        )
    }
    pub fn not_found(what: &str) -> Error {
        Error::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("{what} not found"),
        )
    }
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
    }
}

impl From<CoreError> for Error {
    fn from(e: CoreError) -> Error {
        use StatusCode as S;
        match e {
            CoreError::NotFound(what) => Error::not_found(what),
            CoreError::Conflict(m) => Error::new(S::CONFLICT, "CONFLICT", m),
            CoreError::AlreadyRegistered => Error::new(
                S::CONFLICT,
                "ALREADY_REGISTERED",
                "this hardware is already registered; prove the device secret with `device_sign`, \
                 or have the product's owner open a re-provisioning window",
            ),
            CoreError::Unauthorized => Error::new(
                S::UNAUTHORIZED,
                "UNAUTHORIZED",
                "signature, timestamp or nonce not accepted",
            ),
            CoreError::Forbidden(m) => Error::new(S::FORBIDDEN, "FORBIDDEN", m),
            CoreError::Invalid(m) => Error::invalid(m),
            CoreError::Model(m) => Error::new(S::BAD_REQUEST, "INVALID_DATAPOINT", m.to_string()),
            CoreError::Offline => Error::new(S::CONFLICT, "DEVICE_OFFLINE", "device is offline"),
            CoreError::Timeout(ms) => Error::new(
                S::GATEWAY_TIMEOUT,
                "COMMAND_TIMEOUT",
                format!("device did not acknowledge within {ms} ms"),
            ),
            CoreError::DeviceError(m) => Error::new(S::BAD_GATEWAY, "DEVICE_ERROR", m),
            CoreError::LoginFailed => Error::new(
                S::UNAUTHORIZED,
                "UNAUTHORIZED",
                "invalid username or password",
            ),
            CoreError::AccountNotActive => Error::new(
                S::FORBIDDEN,
                "ACCOUNT_NOT_ACTIVE",
                "the account is not activated yet; use the code sent at sign-up",
            ),
            CoreError::AccountSuspended => Error::new(
                S::FORBIDDEN,
                "ACCOUNT_SUSPENDED",
                "the account is suspended by the operator",
            ),
            CoreError::TotpRequired(m) => Error::new(S::UNAUTHORIZED, "TOTP_REQUIRED", m),
            CoreError::InvalidToken => Error::unauthorized(),
            CoreError::InvalidCode => {
                Error::new(S::BAD_REQUEST, "INVALID_CODE", "invalid or expired code")
            }
            CoreError::WeakPassword(m) => Error::new(S::BAD_REQUEST, "WEAK_PASSWORD", m),
            CoreError::RateLimited(m) => Error::new(S::TOO_MANY_REQUESTS, "RATE_LIMITED", m),
            CoreError::Busy(m) => Error::new(S::SERVICE_UNAVAILABLE, "BUSY", m),
            CoreError::Limited(r) => Error::from(*r),
            CoreError::UrlRefused(m) => Error::new(S::BAD_REQUEST, "WEBHOOK_URL_REFUSED", m),
            CoreError::UnsupportedContent(m) => {
                Error::new(S::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE", m)
            }
            CoreError::TooLarge(m) => Error::new(S::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", m),
            e @ (CoreError::Store(_) | CoreError::Internal(_)) => {
                tracing::error!(error = %e, "internal error");
                Error::new(S::INTERNAL_SERVER_ERROR, "INTERNAL", "internal error")
            }
        }
    }
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Error {
        Error {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "RATE_LIMITED",
            message: r.to_string(),
            limit: Some(Box::new(r)),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
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
        if self.code == "BUSY" {
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
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "expected Content-Type: application/json",
            ),
            J::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => Error::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                "request body too large",
            ),
            J::BytesRejection(_) => {
                Error::invalid("the request body could not be read (too slow or interrupted)")
            }
            r => Error::new(StatusCode::BAD_REQUEST, "INVALID_JSON", r.body_text()),
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
