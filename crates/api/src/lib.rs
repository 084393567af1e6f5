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
mod limits;
mod oauth;
mod oidc;
mod openapi;
mod routes;
mod webhooks;
mod ws;

pub use error::Error;
pub use events_tcp::{serve_events, EventsTcpConfig};

/// The event stream's parsers of client input, public for the fuzz targets (`fuzz/`): the TLS
/// socket's line splitter, its `login_req`, and the messages of a logged-in session.
pub mod event_stream_input {
    pub use crate::events::{parse_client_message, ClientMessage, Incoming};
    pub use crate::events_tcp::{parse_login_req, LineSplitter, LoginReq};
}

use axum::http::{header, HeaderValue};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rampart_core::Core;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
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
    /// Body size and read-time limits of the router.
    pub http: HttpLimits,
}

/// The limits of the HTTP server itself (the `[http]` section): request bodies, slow clients and
/// connections per address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest request body; a larger one answers 413 `PAYLOAD_TOO_LARGE` (signed enterprise
    /// requests: at most 1 MiB whatever this says).
    pub max_body_bytes: usize,
    /// Time to send a request's body once its headers arrived.
    pub body_read_timeout: Duration,
    /// Time to send a request's headers (HTTP/1; the connection is closed after it).
    pub header_read_timeout: Duration,
    /// Open connections per source address; further ones are closed at accept. 0: no cap.
    pub max_connections_per_ip: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_body_bytes: 4 * 1024 * 1024,
            body_read_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            max_connections_per_ip: 256,
        }
    }
}

/// `Strict-Transport-Security` of answers on an HTTPS listener: one year, subdomains included.
const HSTS: &str = "max-age=31536000; includeSubDomains";

/// Open connections per source address, released when a connection's guard drops.
#[derive(Clone, Default)]
struct PerIp(Arc<Mutex<HashMap<IpAddr, usize>>>);

struct PerIpGuard {
    map: PerIp,
    ip: IpAddr,
}

impl PerIp {
    /// A slot for `ip`, or `None` when it already holds `cap` connections.
    fn enter(&self, ip: IpAddr, cap: usize) -> Option<PerIpGuard> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_insert(0);
        if cap > 0 && *n >= cap {
            return None;
        }
        *n += 1;
        Some(PerIpGuard {
            map: self.clone(),
            ip,
        })
    }
}

impl Drop for PerIpGuard {
    fn drop(&mut self) {
        let mut m = self.map.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    routes::router(state)
}

/// The peer address of a request, set by [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Serve the API on an already-bound listener (HTTPS with `tls`) until `shutdown` resolves, with
/// the default [`HttpLimits`].
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    shutdown: impl Future<Output = ()>,
) {
    serve_with(listener, tls, app, &HttpLimits::default(), shutdown).await
}

/// [`serve`] with explicit limits: the header read timeout and the cap on connections per
/// address apply here (body limits are the router's, from [`AppState::http`]). Answers on an
/// HTTPS listener carry `Strict-Transport-Security`.
pub async fn serve_with(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: &HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let per_ip = PerIp::default();
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
        let ip = peer.ip().to_canonical();
        let Some(guard) = per_ip.enter(ip, limits.max_connections_per_ip) else {
            rampart_core::api_limits::count_refusal("http.connections_per_ip");
            tracing::debug!(%peer, "HTTP connection refused: too many from this address");
            drop(sock);
            continue;
        };
        let app = app.clone();
        let tls = tls.clone();
        let header_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            let _guard = guard;
            let hsts = tls.is_some();
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ClientAddr(peer));
                    let answer = app.clone().oneshot(req);
                    async move {
                        let mut resp = answer.await?;
                        if hsts {
                            resp.headers_mut().insert(
                                header::STRICT_TRANSPORT_SECURITY,
                                HeaderValue::from_static(HSTS),
                            );
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                },
            );
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn server(limits: HttpLimits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        tokio::spawn(async move {
            serve_with(l, None, app, &limits, async {
                let _ = rx.await;
            })
            .await
        });
        (addr, tx)
    }

    /// Read until the peer closes: the bytes read, or `None` when it stays open for 30 s.
    async fn until_closed(s: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        match tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out)).await {
            Ok(_) => Some(out),
            Err(_) => None,
        }
    }

    #[tokio::test]
    async fn connections_per_ip_are_capped() {
        let (addr, _stop) = server(HttpLimits {
            max_connections_per_ip: 1,
            ..HttpLimits::default()
        })
        .await;
        let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
        first
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let n = first.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "the first is served");
        // The first is still open: the second is closed at accept, unanswered.
        let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = second.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
        assert_eq!(until_closed(&mut second).await, Some(Vec::new()));
        // Once the first closes, its slot is free again.
        drop(first);
        let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let _ = third
                .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await;
            let got = until_closed(&mut third).await.unwrap_or_default();
            if got.starts_with(b"HTTP/1.1 200") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the slot was never freed"
            );
            third = tokio::net::TcpStream::connect(addr).await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_client_that_never_sends_its_headers_is_closed() {
        let (addr, _stop) = server(HttpLimits {
            header_read_timeout: Duration::from_millis(200),
            ..HttpLimits::default()
        })
        .await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost:").await.unwrap();
        // Closed by the server (perhaps after a 408), well before the 30 s the helper waits.
        let got = until_closed(&mut s)
            .await
            .expect("the connection stayed open");
        assert!(!got.starts_with(b"HTTP/1.1 200"), "{got:?}");
    }
}
