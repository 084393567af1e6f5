//! Request extractors: who is calling ([`auth`]: the admin token, end users, any principal,
//! the app id header; [`developer`]: developers and managers; [`enterprise_key`]: signed
//! enterprise requests) and how the body and query are read ([`Body`], [`OptionalBody`], [`Q`]), each rejection
//! answered as an `api::Error`.
//!
//! Extractors only establish identity and parse input; they must never decide what the caller
//! may do to a resource (that is `rampart_core::access::tenancy`'s and the handlers' call into it).

pub(crate) mod auth;
pub(crate) mod developer;
pub(crate) mod enterprise_key;
pub(crate) mod factory_key;

pub(crate) use auth::{bearer, Admin, AppId, Principal, User};
pub(crate) use developer::{Developer, Manager};
pub(crate) use enterprise_key::EnterpriseKey;
pub(crate) use factory_key::FactoryKey;

use crate::{AppState, ClientAddr, Error};
use axum::extract::{FromRequest, FromRequestParts};
use axum::Extension;

/// A JSON body whose rejections answer with our error format.
pub(crate) struct Body<T>(pub(crate) T);

impl<T: serde::de::DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = Error;

    async fn from_request(req: axum::extract::Request, state: &AppState) -> Result<Self, Error> {
        // A body declared larger than the limit is refused before any of it is read, so a client
        // that asked `Expect: 100-continue` is never told to send it; reading part of it and then
        // closing the connection on the rest would reset it, the 413 with it.
        let declared = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > state.http.max_body_bytes as u64) {
            return Err(Error::new(
                crate::error::ErrorCode::PayloadTooLarge,
                "request body too large",
            ));
        }
        let axum::Json(v) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Body(v))
    }
}

/// A JSON body that may be left out (empty or only whitespace): then `T::default()`.
pub(crate) struct OptionalBody<T>(pub(crate) T);

impl<T: serde::de::DeserializeOwned + Default> FromRequest<AppState> for OptionalBody<T> {
    type Rejection = Error;

    async fn from_request(req: axum::extract::Request, state: &AppState) -> Result<Self, Error> {
        let bytes = axum::body::Bytes::from_request(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalBody(T::default()));
        }
        serde_json::from_slice(&bytes)
            .map(OptionalBody)
            .map_err(|e| Error::new(crate::error::ErrorCode::InvalidJson, e.to_string()))
    }
}

/// Query string with our error format.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Error))]
pub(crate) struct Q<T>(pub(crate) T);

pub(crate) fn client_ip(addr: &Option<Extension<ClientAddr>>) -> Option<String> {
    addr.as_ref()
        .map(|Extension(ClientAddr(a))| a.ip().to_string())
}

/// A request body of at most `cap` bytes: 413 `PAYLOAD_TOO_LARGE` ("`what` may hold at most ...")
/// as soon as the declared length or the bytes received pass it. For bodies read as bytes; JSON
/// bodies are capped by the router's limit.
pub(crate) async fn read_capped(
    body: axum::body::Body,
    headers: &axum::http::HeaderMap,
    cap: usize,
    what: &str,
) -> Result<Vec<u8>, Error> {
    let too_large = || {
        Error::new(
            crate::error::ErrorCode::PayloadTooLarge,
            format!("{what} may hold at most {cap} bytes"),
        )
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap as u64) {
        return Err(too_large());
    }
    let mut out = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
        let chunk = chunk.map_err(|e| Error::invalid(format!("request body: {e}")))?;
        if out.len() + chunk.len() > cap {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use tower::ServiceExt;

    /// A JSON body declared larger than the limit is answered 413 without a byte of it read.
    #[tokio::test]
    async fn a_body_declared_too_large_is_refused_unread() {
        let (state, _dir) = crate::test_state().await;
        let limit = state.http.max_body_bytes;
        let router = crate::router(state);
        let polled = Arc::new(AtomicBool::new(false));
        let seen = polled.clone();
        let body = futures_util::stream::poll_fn(move |_| {
            seen.store(true, Ordering::SeqCst);
            std::task::Poll::Ready(None::<Result<Vec<u8>, std::io::Error>>)
        });
        let req = Request::post("/v1/users")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, limit + 1)
            .body(Body::from_stream(body))
            .unwrap();
        let resp = router.oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(!polled.load(Ordering::SeqCst), "the body was read");
    }
}
