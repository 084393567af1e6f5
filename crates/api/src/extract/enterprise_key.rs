//! The signed-request extractor [`EnterpriseKey`]: a request signed with an enterprise access
//! key (`Authorization: RAMPART-HMAC-SHA256 ...`), its body read and its signature checked
//! before any handler sees the request, and its key's quota counted.
//!
//! Key checks are `rampart_core::access::access_keys`'s; what a key may do (scopes, products) is
//! decided by the core, never here.

use crate::{AppState, ClientAddr, Error};
use axum::body::Bytes;
use axum::extract::{FromRequest, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rampart_core::access::access_keys::{
    KeyAuthError, KeySession, SignedRequest, MAX_BODY, SCHEME,
};

/// A request signed with an enterprise access key. Extracting it reads the body (at most
/// [`MAX_BODY`]) to check the signature; the body is handed on in `body`. It must be the last
/// extractor of a handler, and handlers parse their query through [`EnterpriseKey::query`] so
/// that nothing about the request is judged before its signature.
pub(crate) struct EnterpriseKey {
    pub(crate) key: KeySession,
    pub(crate) body: Bytes,
    uri: Uri,
}

impl EnterpriseKey {
    pub(crate) fn query<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(Query::<T>::try_from_uri(&self.uri)?.0)
    }

    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::new(crate::error::ErrorCode::InvalidJson, e.to_string()))
    }
}

/// A refusal of a signed request: 401 with the scheme in `WWW-Authenticate`.
pub(crate) fn refusal(e: KeyAuthError) -> Response {
    let err = match e {
        KeyAuthError::Internal(e) => Error::from(e),
        e => Error::new(crate::error::key_refusal_code(&e), e.to_string()),
    };
    let mut resp = err.into_response();
    if resp.status() == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(SCHEME));
    }
    resp
}

/// A signed request's head and body (at most [`MAX_BODY`]), read before anything is judged.
pub(crate) async fn read_signed(req: Request) -> Result<(Parts, Bytes), Response> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        Error::new(
            crate::error::ErrorCode::PayloadTooLarge,
            "a signed request's body may be at most 1 MiB",
        )
        .into_response()
    })?;
    Ok((parts, body))
}

/// What the signature of a request read by [`read_signed`] covers.
pub(crate) fn signed_request<'a>(parts: &'a Parts, body: &'a [u8]) -> SignedRequest<'a> {
    SignedRequest {
        authorization: parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        body,
        peer: parts.extensions.get::<ClientAddr>().map(|a| a.0.ip()),
    }
}

impl FromRequest<AppState> for EnterpriseKey {
    type Rejection = Response;
    async fn from_request(req: Request, state: &AppState) -> Result<EnterpriseKey, Response> {
        let (parts, body) = read_signed(req).await?;
        let signed = signed_request(&parts, &body);
        let key = state
            .core
            .authenticate_access_key(&signed)
            .await
            .map_err(refusal)?;
        // Counted only once the signature holds: nobody spends another key's quota.
        let quota = state
            .core
            .limits()
            .check_access_key(&key.key_id, state.core.now_ms())
            .map_err(|r| Error::from(r).into_response())?;
        if let Some(q) = quota {
            crate::server::limits::RateSlot::report(&parts.extensions, q);
        }
        Ok(EnterpriseKey {
            key,
            body,
            uri: parts.uri,
        })
    }
}
