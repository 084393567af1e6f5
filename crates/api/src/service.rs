//! The service endpoints outside `/v1`: `GET /healthz` and `GET /metrics` (the API listener's,
//! with authentication, and the private metrics listener's, without).
//!
//! Nothing here touches a device or an account; it must never answer a secret.

use crate::extract::{Admin, EnterpriseKey};
use crate::openapi::ApiRouter;
use crate::{AppState, Error};
use axum::extract::{FromRequest, FromRequestParts, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde_json::json;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::new()
        .described("/healthz", get(healthz))
        .described("/metrics", get(metrics))
}

pub(crate) async fn healthz(State(s): State<AppState>) -> Response {
    match s.core.store_health().await {
        Ok(backend) => Json(json!({"status": "ok", "store": backend})).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: store unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable"})),
            )
                .into_response()
        }
    }
}

/// `/metrics` on the API listener: the admin token, or a request signed with an access key that
/// has the `metrics` scope. (The optional metrics listener serves it without either:
/// [`crate::metrics_router`].)
async fn metrics(State(s): State<AppState>, req: axum::extract::Request) -> Response {
    let (mut parts, body) = req.into_parts();
    if crate::extract::bearer(&parts).is_some() {
        if let Err(e) = Admin::from_request_parts(&mut parts, &s).await {
            return e.into_response();
        }
    } else {
        let req = axum::extract::Request::from_parts(parts, body);
        let k = match EnterpriseKey::from_request(req, &s).await {
            Ok(k) => k,
            Err(refused) => return refused,
        };
        if let Err(e) = rampart_core::Core::require_scope(
            &k.key,
            rampart_core::access::access_keys::Scope::Metrics,
        ) {
            return Error::from(e).into_response();
        }
    }
    render_metrics(&s)
}

/// The metrics without any check, for the private metrics listener.
pub(crate) async fn open_metrics(State(s): State<AppState>) -> Response {
    render_metrics(&s)
}

fn render_metrics(s: &AppState) -> Response {
    match &s.metrics {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => Error::not_found("metrics recorder").into_response(),
    }
}
