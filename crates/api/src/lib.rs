//! HTTP edge: the router of the HTTP API and the state its handlers share.
//!
//! The tree: [`server`] (the HTTP/1.1 and HTTP/2 server loop, its limits and middleware),
//! `extract` (who is calling, and the strict body and query readers), `v1` (one module per
//! resource group), `service` (health and metrics), `oauth` (the OAuth2 authorisation server,
//! client management, OpenID Connect login), `push` (live device events over WebSocket for users
//! and developers), `event_stream` (the operator event stream, WebSocket and TLS socket),
//! `openapi` (the document at `/openapi.json`, generated from the routes, and `/docs`), `error`
//! ([`Error`] and [`ErrorCode`]).
//!
//! Never depends on the MQTT edge; talks to devices only through `rampart-core`. This file only
//! assembles the router; it must never hold a handler.

mod console;
mod error;
mod event_stream;
mod extract;
mod oauth;
mod openapi;
mod push;
mod server;
mod service;
mod v1;

pub use error::{Error, ErrorCode};
pub use event_stream::tcp::{serve_events, EventsTcpConfig};
pub use server::{serve, serve_with, ClientAddr, ClientCert, HttpLimits};

/// The event stream's parsers of client input, public for the fuzz targets (`fuzz/`): the TLS
/// socket's line splitter, its `login_req`, and the messages of a logged-in session.
pub mod event_stream_input {
    pub use crate::event_stream::tcp::{parse_login_req, LineSplitter, LoginReq};
    pub use crate::event_stream::{parse_client_message, ClientMessage, Incoming};
}

use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use openapi::ApiRouter;
use rampart_core::Core;
use tower_http::set_header::SetResponseHeaderLayer;

/// State handed to every handler.
#[derive(Clone)]
pub struct AppState {
    pub core: Core,
    /// Renders `/metrics`; absent when no Prometheus recorder is installed (tests).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Body size and read-time limits of the router.
    pub http: HttpLimits,
}

/// Only `GET /metrics`, `GET /healthz` and `GET /readyz`, without authentication: for a listener on a private
/// address that a Prometheus scraper and health probes reach (`http.metrics_listen`). Everything
/// else answers 404.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(service::open_metrics))
        // A probe here is not queued behind the public listener's TLS handshakes.
        .route("/healthz", get(service::healthz))
        .route("/readyz", get(service::readyz))
        .with_state(state)
}

/// The Content-Security-Policy of every answer. The only HTML is the OAuth consent and error
/// pages (`crate::oauth`): no script, no style, no images, a form posting to this origin. There
/// is no `form-action`: after consent the server redirects the browser to the client's
/// `redirect_uri`, which `form-action 'self'` would block in some browsers.
pub(crate) const CSP: &str = "default-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// Every route of the API, each with its description in the OpenAPI document.
fn api() -> ApiRouter {
    ApiRouter::new()
        .merge(service::routes())
        .merge(v1::products::routes())
        .merge(v1::certificates::routes())
        .merge(v1::factory::routes())
        .merge(v1::devices::routes())
        .merge(v1::accounts::routes())
        .merge(v1::bindings::routes())
        .merge(v1::developers::routes())
        .merge(v1::enterprises::routes())
        .merge(v1::operators::routes())
        .merge(v1::access_keys::routes())
        .merge(v1::audit::routes())
        .merge(v1::enterprise_api::routes())
        .merge(v1::webhooks::routes())
        .merge(v1::ota::routes())
        .merge(push::routes())
        .merge(event_stream::routes())
        .merge(oauth::routes())
        .merge(v1::activity::routes())
        .merge(console::routes())
}

/// A state over a fresh SQLite store in a temporary directory, for the crate's unit tests.
#[cfg(test)]
pub(crate) async fn test_state() -> (AppState, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = rampart_store::Store::open_sqlite(&dir.path().join("t.db"))
        .await
        .unwrap();
    let core = rampart_core::Core::new(
        store,
        rampart_core::secret::MasterKey::from_bytes(&[7; 32]),
        Default::default(),
    );
    let state = AppState {
        core,
        metrics: None,
        http: Default::default(),
    };
    (state, dir)
}

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    let (routes, _document) = api().finish();
    routes
        .fallback(|| async { Error::not_found("route") })
        .method_not_allowed_fallback(|| async {
            Error::new(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this path",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            server::limits::count_calls,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.http.max_body_bytes,
        ))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            state.http.body_read_timeout,
        ))
        .layer(axum::middleware::from_fn(server::limits::json_errors))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            |resp: &Response| {
                // Only the Swagger UI files and the console run scripts; every other answer
                // keeps `CSP`.
                let docs = resp.extensions().get::<openapi::DocsPage>().is_some();
                let console = resp.extensions().get::<console::ConsolePage>().is_some();
                Some(HeaderValue::from_static(if docs {
                    openapi::DOCS_CSP
                } else if console {
                    console::CONSOLE_CSP
                } else {
                    CSP
                }))
            },
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            |resp: &Response| {
                // The console's files are revalidated by ETag; everything else is never stored.
                let console = resp.extensions().get::<console::ConsolePage>().is_some();
                Some(HeaderValue::from_static(if console {
                    console::CONSOLE_CACHE
                } else {
                    "no-store"
                }))
            },
        ))
        .with_state(state)
}
