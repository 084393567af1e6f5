//! HTTP edge: the axum router, authentication extractors, `api::Error`, and the HTTPS server loop.
//!
//! Never depends on the MQTT edge; talks to devices only through `rampart-core`. End users reach
//! devices through bindings (`accounts`), and live device events through `ws`; third parties reach
//! them through OAuth2 grants (`oauth`), and users may sign in through OpenID Connect (`oidc`).

mod accounts;
mod auth;
mod developers;
mod enterprise;
mod error;
mod events;
mod events_tcp;
mod oauth;
mod oidc;
mod openapi;
mod routes;
mod ws;

pub use error::Error;
pub use events_tcp::{serve_events, EventsTcpConfig};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rampart_core::Core;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// State handed to every handler.
#[derive(Clone)]
pub struct AppState {
    pub core: Core,
    /// Renders `/metrics`; absent when no Prometheus recorder is installed (tests).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    routes::router(state)
}

/// The peer address of a request, set by [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Serve the API on an already-bound listener (HTTPS with `tls`) until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (sock, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ClientAddr(peer));
                    app.clone().oneshot(req)
                },
            );
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let res = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(sock)).await
                    {
                        Ok(Ok(stream)) => {
                            builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                                .await
                        }
                        _ => return,
                    }
                }
                None => {
                    builder
                        .serve_connection_with_upgrades(TokioIo::new(sock), svc)
                        .await
                }
            };
            if let Err(e) = res {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with error");
            }
        });
    }
}
