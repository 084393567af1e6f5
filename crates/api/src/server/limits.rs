//! The HTTP side of the limits: the middleware that counts every call against the
//! per-IP and per-app-id rates, the `X-RateLimit-*` and `Retry-After` headers, and the slot through
//! which the extractors that know the caller (`extract::User`, `extract::Principal`,
//! `extract::EnterpriseKey`) report the quota a call was counted under. Also the last line of
//! "every answer is JSON": an error answer that some layer built as plain text is rewritten into
//! `{"error": {"code", "message"}}`.
//!
//! The rates and quotas themselves are `rampart_core::limits::api`'s; nothing here decides a limit.

use crate::error::ErrorCode;
use crate::{AppState, ClientAddr, Error};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rampart_core::limits::api::LimitState;
use std::sync::{Arc, Mutex};

/// Paths no API rate counts: probes, the document, and device registration (signed by the
/// device, bounded by the nonce store; a factory line registers many devices from one address).
/// `/metrics` is counted: it takes the admin token or a signed key, which must not be guessed
/// faster than anywhere else.
pub(crate) const EXEMPT: &[&str] = &[
    "/healthz",
    "/openapi.json",
    "/v1/device/register",
    "/readyz",
];

/// Where an extractor leaves the state of the quota the call was counted under.
#[derive(Clone, Default)]
pub(crate) struct RateSlot(Arc<Mutex<Option<LimitState>>>);

impl RateSlot {
    /// Record `s` for the answer's headers (no-op outside the middleware, as in unit tests).
    pub(crate) fn report(ext: &axum::http::Extensions, s: LimitState) {
        if let Some(slot) = ext.get::<RateSlot>() {
            *slot.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
        }
    }

    fn take(&self) -> Option<LimitState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// `X-RateLimit-Limit`, `-Remaining`, `-Reset` (Unix seconds) and, for a refusal, `Retry-After`
/// (seconds, at least 1).
pub(crate) fn set_headers(h: &mut HeaderMap, s: &LimitState, retry_after_ms: Option<u64>) {
    let reset_secs = s.reset_at_ms.div_euclid(1000) + i64::from(s.reset_at_ms.rem_euclid(1000) > 0);
    h.insert("x-ratelimit-limit", HeaderValue::from(s.limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(s.remaining));
    h.insert("x-ratelimit-reset", HeaderValue::from(reset_secs));
    if let Some(ms) = retry_after_ms {
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from(ms.div_ceil(1000).max(1)),
        );
    }
}

/// Count the call against its source IP and app id, then run it; copy a reported quota into the
/// answer's headers.
pub(crate) async fn count_calls(
    State(s): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let now = s.core.now_ms();
    if !EXEMPT.contains(&req.uri().path()) {
        let limits = s.core.limits();
        if let Some(ClientAddr(a)) = req.extensions().get::<ClientAddr>() {
            if let Err(r) = limits.check_ip(&a.ip().to_canonical().to_string(), now) {
                return Error::from(r).into_response();
            }
        }
        let app = req
            .headers()
            .get("x-rampart-app-id")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|a| !a.is_empty());
        if let Some(app) = app {
            if let Err(r) = limits.check_app(app, now) {
                return Error::from(r).into_response();
            }
        }
    }
    let slot = RateSlot::default();
    req.extensions_mut().insert(slot.clone());
    let mut resp = next.run(req).await;
    if let Some(st) = slot.take() {
        if !resp.headers().contains_key("x-ratelimit-limit") {
            set_headers(resp.headers_mut(), &st, None);
        }
    }
    resp
}

/// Rewrite an error answer that is neither JSON nor one of our HTML pages (axum's own rejections
/// are plain text) into our JSON error, keeping its status and headers.
pub(crate) async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let ct = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.starts_with("application/json") || ct.starts_with("text/html") {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let message = String::from_utf8_lossy(&text).trim().to_owned();
    let code = match status {
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::UPGRADE_REQUIRED => ErrorCode::UpgradeRequired,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::InvalidRequest,
    };
    let message = if status.is_server_error() || message.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        message
    };
    let fresh = Error::with_status(status, code, message).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, fresh.into_body())
}
