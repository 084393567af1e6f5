//! The HTTP server loop: accepting connections (HTTPS or plain, HTTP/1.1 or HTTP/2), the
//! limits of the server itself ([`HttpLimits`]: slow clients, connections per address, HTTP/2
//! streams), the write deadline on every socket, and the router middleware that counts calls
//! against the rate limits and keeps every error answer JSON.
//!
//! It knows nothing of routes or resources; it must never decide what a request may do.

use rampart_core::limits::name as limit;
pub(crate) mod deadline;
pub(crate) mod limits;

use axum::http::{header, HeaderValue};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

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
    /// Speak HTTP/2 (ALPN `h2` on HTTPS, prior knowledge on plain HTTP); false: HTTP/1.1 only.
    pub http2: bool,
    /// HTTP/2: streams a client may have open at once on one connection.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2: largest header list (decoded names and values plus 32 bytes per field).
    pub h2_max_header_list_bytes: u32,
    /// HTTP/2: interval of the server's keep-alive PINGs; a PING unanswered for as long again
    /// closes the connection.
    pub h2_keepalive_interval: Duration,
    /// A write that makes no progress this long (the client stopped reading) closes the
    /// connection, WebSockets upgraded from it included.
    pub write_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_body_bytes: 4 * 1024 * 1024,
            body_read_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            max_connections_per_ip: 256,
            http2: true,
            h2_max_concurrent_streams: 100,
            h2_max_header_list_bytes: 16 * 1024,
            h2_keepalive_interval: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// `Strict-Transport-Security` of answers on an HTTPS listener: one year, subdomains included.
const HSTS: &str = "max-age=31536000; includeSubDomains";

/// The peer address of a request, set by [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// The certificate (DER) a client presented in the TLS handshake of its connection; set by
/// [`serve`] on the requests of that connection. The handshake proved the client holds its key;
/// what the certificate is worth is decided by whoever reads it.
#[derive(Debug, Clone)]
pub struct ClientCert(pub std::sync::Arc<[u8]>);

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
    let per_ip = rampart_core::limits::connect::OpenPerIp::default();
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
            rampart_core::limits::api::count_refusal(limit::HTTP_CONNECTIONS_PER_IP);
            tracing::debug!(%peer, "HTTP connection refused: too many from this address");
            drop(sock);
            continue;
        };
        let app = app.clone();
        let tls = tls.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let hsts = tls.is_some();
            let svc = move |cert: Option<ClientCert>| {
                let app = app.clone();
                hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ClientAddr(peer));
                    if let Some(c) = &cert {
                        req.extensions_mut().insert(c.clone());
                    }
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
                })
            };
            let res = match tls {
                Some(acceptor) => {
                    if speaks_plain_http(&sock, limits.header_read_timeout).await {
                        tracing::debug!(%peer, "plain HTTP on the HTTPS listener: told to use https://");
                        metrics::counter!(rampart_core::telemetry::WRONG_PROTOCOL, "listener" => "http")
                            .increment(1);
                        tell_to_use_https(sock, limits.header_read_timeout).await;
                        return;
                    }
                    let sock = deadline::WriteDeadline::new(sock, limits.write_timeout, "http");
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await
                    else {
                        return;
                    };
                    // The version was agreed in the handshake (ALPN); no ALPN means HTTP/1.1.
                    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    if h2 && !limits.http2 {
                        return;
                    }
                    let cert = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| ClientCert(std::sync::Arc::from(c.as_ref())));
                    serve_one(TokioIo::new(stream), svc(cert), h2, &limits).await
                }
                None => match sniff_h2_preface(&sock, limits.header_read_timeout).await {
                    Some(true) if !limits.http2 => {
                        tracing::debug!(%peer, "HTTP/2 prior knowledge refused: http2 is off");
                        return;
                    }
                    Some(h2) => {
                        let sock = deadline::WriteDeadline::new(sock, limits.write_timeout, "http");
                        serve_one(TokioIo::new(sock), svc(None), h2, &limits).await
                    }
                    None => {
                        tracing::debug!(%peer, "HTTP connection closed: nothing sent in time");
                        return;
                    }
                },
            };
            if let Err(e) = res {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with error");
            }
        });
    }
}

/// Whether a client of the HTTPS listener opened with plain HTTP: its first byte is a letter (a
/// method) where a TLS handshake starts with record type 22.
async fn speaks_plain_http(sock: &tokio::net::TcpStream, wait: Duration) -> bool {
    let mut first = [0u8; 1];
    matches!(
        tokio::time::timeout(wait, sock.peek(&mut first)).await,
        Ok(Ok(1)) if first[0].is_ascii_uppercase()
    )
}

/// Answer a plain-HTTP request on the HTTPS listener with a 400 saying to use `https://`, instead
/// of TLS alert bytes that a browser or curl shows as garbage. The request is read first (up to
/// its blank line, 8 KiB or `wait`): closing on unread bytes would reset the connection and lose
/// the answer.
async fn tell_to_use_https(mut sock: tokio::net::TcpStream, wait: Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let _ = tokio::time::timeout(wait, async {
        while head.len() < 8 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let body = "This port speaks HTTPS only: send the request again with https://\n";
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(wait, async {
        let _ = sock.write_all(answer.as_bytes()).await;
        let _ = sock.shutdown().await;
    })
    .await;
}

/// Time a client has to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What an HTTP/2 client sends first (RFC 9113 section 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a plain-TCP client speaks HTTP/2 with prior knowledge: `Some(true)` once its first 24
/// bytes are the HTTP/2 preface, `Some(false)` as soon as a byte differs from it, `None` when it
/// closes or has not decided within `wait` (the bytes stay in the socket for the server).
async fn sniff_h2_preface(sock: &tokio::net::TcpStream, wait: Duration) -> Option<bool> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut seen = 0;
    loop {
        // Checked here as well: a peek that finds bytes waiting completes even past the deadline.
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        let n = tokio::time::timeout_at(deadline, sock.peek(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Some(false);
        }
        if n == H2_PREFACE.len() {
            return Some(true);
        }
        // A prefix of the preface so far: peek again once more has arrived (peek answers at
        // once while unread bytes wait, hence the pause).
        if n == seen {
            tokio::time::sleep_until(
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(5)),
            )
            .await;
        }
        seen = n;
    }
}

/// Serve one connection as HTTP/2 (`h2`) or HTTP/1.1 (with upgrades, for WebSockets), with the
/// limits of `limits`.
async fn serve_one<I, S>(io: I, svc: S, h2: bool, limits: &HttpLimits) -> Result<(), hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = axum::body::Body>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    if h2 {
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.h2_max_concurrent_streams)
            .max_header_list_size(limits.h2_max_header_list_bytes)
            .keep_alive_interval(limits.h2_keepalive_interval)
            .keep_alive_timeout(limits.h2_keepalive_interval)
            // Against "rapid reset" floods: streams a client opens and cancels at once.
            .max_pending_accept_reset_streams(20)
            .max_local_error_reset_streams(100)
            .serve_connection(io, svc)
            .await
    } else {
        hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(io, svc)
            .with_upgrades()
            .await
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
        let app = Router::new()
            .route("/", axum::routing::get(|| async { "ok" }))
            .route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    "late"
                }),
            );
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

    #[tokio::test]
    async fn a_client_that_sends_nothing_is_closed() {
        let (addr, _stop) = server(HttpLimits {
            header_read_timeout: Duration::from_millis(200),
            ..HttpLimits::default()
        })
        .await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert_eq!(until_closed(&mut s).await, Some(Vec::new()));
        // Half an HTTP/2 preface and then silence: closed as well.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(&H2_PREFACE[..10]).await.unwrap();
        assert_eq!(until_closed(&mut s).await, Some(Vec::new()));
    }

    /// One HTTP/2 frame: 24-bit length, type, flags, stream id, payload.
    fn h2_frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[ty, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// A GET of `path` on `stream` (HPACK: `:method GET`, `:scheme http` and `:path` by index
    /// or with an indexed name, `:authority: x` literal), ending the stream.
    fn h2_get(stream: u32, path: &str) -> Vec<u8> {
        let mut block = vec![0x82, 0x86];
        if path == "/" {
            block.push(0x84);
        } else {
            block.extend_from_slice(&[0x04, path.len() as u8]);
            block.extend_from_slice(path.as_bytes());
        }
        block.extend_from_slice(&[0x01, 0x01, b'x']);
        // HEADERS with END_STREAM | END_HEADERS.
        h2_frame(0x1, 0x5, stream, &block)
    }

    async fn read_h2_frame(s: &mut tokio::net::TcpStream) -> (u8, u8, u32, Vec<u8>) {
        let mut head = [0u8; 9];
        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut head))
            .await
            .expect("no frame within 10 s")
            .expect("connection closed");
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await.unwrap();
        (head[3], head[4], stream, payload)
    }

    async fn h2_client(
        addr: SocketAddr,
    ) -> (tokio::net::TcpStream, std::collections::HashMap<u16, u32>) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(H2_PREFACE).await.unwrap();
        s.write_all(&h2_frame(0x4, 0, 0, &[])).await.unwrap();
        let (ty, flags, stream, payload) = read_h2_frame(&mut s).await;
        assert_eq!(
            (ty, flags, stream),
            (0x4, 0, 0),
            "the server's SETTINGS come first"
        );
        let settings = payload
            .chunks(6)
            .map(|c| {
                (
                    u16::from_be_bytes([c[0], c[1]]),
                    u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                )
            })
            .collect();
        // Acknowledge them.
        s.write_all(&h2_frame(0x4, 0x1, 0, &[])).await.unwrap();
        (s, settings)
    }

    #[tokio::test]
    async fn http2_prior_knowledge_is_served_within_the_configured_limits() {
        let (addr, _stop) = server(HttpLimits {
            h2_max_concurrent_streams: 3,
            h2_max_header_list_bytes: 4096,
            ..HttpLimits::default()
        })
        .await;
        let (mut s, settings) = h2_client(addr).await;
        // SETTINGS_MAX_CONCURRENT_STREAMS, SETTINGS_MAX_HEADER_LIST_SIZE; no extended CONNECT
        // (SETTINGS_ENABLE_CONNECT_PROTOCOL), so WebSocket clients use HTTP/1.1.
        assert_eq!(settings.get(&0x3), Some(&3), "{settings:?}");
        assert_eq!(settings.get(&0x6), Some(&4096), "{settings:?}");
        assert_eq!(settings.get(&0x8).copied().unwrap_or(0), 0, "{settings:?}");

        // A plain GET is answered 200 (HPACK static index 8 is `:status 200`).
        s.write_all(&h2_get(1, "/")).await.unwrap();
        loop {
            let (ty, _, stream, payload) = read_h2_frame(&mut s).await;
            if ty == 0x1 && stream == 1 {
                assert_eq!(payload.first(), Some(&0x88), "{payload:?}");
                break;
            }
        }

        // Three slow requests fill the connection; a fourth stream is refused
        // (RST_STREAM with REFUSED_STREAM, 0x7) while the three stay open.
        for id in [3, 5, 7] {
            s.write_all(&h2_get(id, "/slow")).await.unwrap();
        }
        s.write_all(&h2_get(9, "/slow")).await.unwrap();
        loop {
            let (ty, _, stream, payload) = read_h2_frame(&mut s).await;
            assert!(
                !(ty == 0x3 && [3, 5, 7].contains(&stream)),
                "an allowed stream was reset"
            );
            if ty == 0x3 && stream == 9 {
                assert_eq!(payload, 7u32.to_be_bytes(), "REFUSED_STREAM");
                break;
            }
            assert_ne!(
                ty, 0x7,
                "GOAWAY instead of refusing the one stream: {payload:?}"
            );
        }
    }

    #[tokio::test]
    async fn http2_can_be_turned_off() {
        let (addr, _stop) = server(HttpLimits {
            http2: false,
            ..HttpLimits::default()
        })
        .await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(H2_PREFACE).await.unwrap();
        s.write_all(&h2_frame(0x4, 0, 0, &[])).await.unwrap();
        assert_eq!(until_closed(&mut s).await, Some(Vec::new()));
        // HTTP/1.1 still works.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let got = until_closed(&mut s).await.unwrap();
        assert!(got.starts_with(b"HTTP/1.1 200"), "{got:?}");
    }
}
