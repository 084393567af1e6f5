//! The event stream's TLS socket (default port 2017): newline-delimited JSON.
//!
//! On connect the server sends `{"cmd":"login_challenge","challenge"}`; the client answers with
//! `login_req` carrying its `key_id`, `signature` = lowercase hex HMAC-SHA256(secret, challenge)
//! and the subscription. Key checks are those of signed HTTP requests
//! (`Core::authenticate_key_challenge`). After `login_res` the session is `events::run_session`.
//!
//! Lives in the API crate because it is an operator edge beside the HTTP API and shares its
//! message handling with the WebSocket transport; it never touches MQTT. Connections are capped
//! with a semaphore; one connection's failure ends that connection only.

use crate::event_stream::{self as events, Incoming, LoginFields, Outgoing, MAX_LINE};
use crate::server::deadline::WriteDeadline;
use rampart_core::access::access_keys::KeyAuthError;
use rampart_core::limits::name as limit;
use rampart_core::stream::hub::Subscription;
use rampart_core::Core;
use serde_json::Value;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_rustls::TlsAcceptor;

/// Limits of the event stream listener.
#[derive(Debug, Clone)]
pub struct EventsTcpConfig {
    pub max_connections: usize,
    /// Open connections per source address (IPv6: per /64); 0: no cap.
    pub connections_per_ip: usize,
    /// TLS handshake and login must complete within this.
    pub login_timeout: Duration,
    /// A write that makes no progress this long (the consumer stopped reading) closes the
    /// connection; its unacknowledged events go back to the group.
    pub write_timeout: Duration,
}

impl Default for EventsTcpConfig {
    fn default() -> Self {
        EventsTcpConfig {
            max_connections: 1024,
            connections_per_ip: 16,
            login_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// Serve the event stream on an already-bound listener until `shutdown` resolves.
pub async fn serve_events(
    listener: TcpListener,
    tls: TlsAcceptor,
    core: Core,
    config: EventsTcpConfig,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let per_ip = rampart_core::limits::connect::OpenPerIp::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    loop {
        let (sock, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "event stream accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "event stream connection refused: too many connections");
            continue;
        };
        let Some(ip_slot) = per_ip.enter(peer.ip().to_canonical(), config.connections_per_ip)
        else {
            rampart_core::limits::api::count_refusal(limit::EVENTS_CONNECTIONS_PER_IP);
            tracing::info!(%peer, "event stream connection refused: too many from this address");
            continue;
        };
        let (core, tls, config) = (core.clone(), tls.clone(), config.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            connection(core, tls, sock, peer, config, stopped).await;
            drop(ip_slot);
            drop(permit);
        });
    }
    let _ = stop_tx.send(true);
}

async fn connection(
    core: Core,
    tls: TlsAcceptor,
    sock: TcpStream,
    peer: SocketAddr,
    config: EventsTcpConfig,
    shutdown: impl Future<Output = ()>,
) {
    let deadline = tokio::time::Instant::now() + config.login_timeout;
    let sock = WriteDeadline::new(sock, config.write_timeout, "events");
    let Ok(Ok(stream)) = tokio::time::timeout_at(deadline, tls.accept(sock)).await else {
        return;
    };
    let (read, write) = tokio::io::split(stream);
    let mut out = Outgoing::Tcp(write);
    let (tx, mut rx) = mpsc::channel(16);
    let reader = tokio::spawn(read_lines(read, tx));
    let challenge = rampart_core::secret::random_hex(16);
    let hello = serde_json::json!({"cmd": "login_challenge", "challenge": challenge});
    let login = async {
        out.send(&hello).await.ok()?;
        loop {
            match rx.recv().await? {
                Incoming::Text(t) if t.trim().is_empty() => continue,
                Incoming::Text(t) => return Some(t),
                Incoming::Unreadable(why) => {
                    out.send(&events::invalid_msg("INVALID_MESSAGE", why))
                        .await
                        .ok()?;
                }
            }
        }
    };
    let Ok(Some(line)) = tokio::time::timeout_at(deadline, login).await else {
        reader.abort();
        return;
    };
    match log_in(&core, &challenge, &line, peer).await {
        Ok((key, consumer, answer)) => {
            if out.send(&answer).await.is_ok() {
                events::run_session(core, key, consumer, rx, out, shutdown).await;
            }
        }
        Err(answer) => {
            let _ = out.send(&answer).await;
            if let Outgoing::Tcp(w) = &mut out {
                let _ = w.shutdown().await;
            }
        }
    }
    reader.abort();
}

/// Check a `login_req`; `Err` is the `login_res` refusal to send before closing.
async fn log_in(
    core: &Core,
    challenge: &str,
    line: &str,
    peer: SocketAddr,
) -> Result<
    (
        rampart_core::access::access_keys::KeySession,
        rampart_core::stream::hub::Consumer,
        Value,
    ),
    Value,
> {
    let req = parse_login_req(line)?;
    let sub = req.subscription;
    let key = core
        .authenticate_key_challenge(&req.key_id, challenge, &req.signature, Some(peer.ip()))
        .await
        .map_err(|e| match e {
            KeyAuthError::Internal(e) => refusal(crate::Error::from(e)),
            KeyAuthError::Malformed => events::login_refused(
                "INVALID_LOGIN",
                "`key_id` and a 64-digit lowercase hex `signature` are required",
            ),
            e => events::login_refused(e.code(), e.to_string()),
        })?;
    let consumer = core
        .open_event_stream(&key, sub.clone())
        .await
        .map_err(|e| refusal(crate::Error::from(e)))?;
    let answer = events::login_ok(&sub.products, &sub.subkey, &sub.kinds, sub.prefetch);
    Ok((key, consumer, answer))
}

/// A `login_req`, parsed; the key and its answer to the challenge are not checked yet.
#[derive(Debug)]
pub struct LoginReq {
    pub key_id: String,
    /// The claimed HMAC of the challenge.
    pub signature: String,
    pub subscription: Subscription,
}

/// Parse the first line of a connection; `Err` is the `login_res` refusal to send before
/// closing. Public for the fuzz targets.
pub fn parse_login_req(line: &str) -> Result<LoginReq, Value> {
    #[derive(serde::Deserialize)]
    struct Wire {
        cmd: String,
        key_id: String,
        signature: String,
        #[serde(flatten)]
        fields: LoginFields,
    }
    let req: Wire = serde_json::from_str(line.trim()).map_err(|e| {
        events::login_refused("INVALID_LOGIN", format!("expected a login_req: {e}"))
    })?;
    if req.cmd != "login_req" {
        return Err(events::login_refused(
            "LOGIN_REQUIRED",
            "the first message must be a login_req",
        ));
    }
    let subscription = req
        .fields
        .subscription()
        .map_err(|e| refusal(crate::Error::from(e)))?;
    Ok(LoginReq {
        key_id: req.key_id,
        signature: req.signature,
        subscription,
    })
}

fn refusal(e: crate::Error) -> Value {
    events::login_refused(e.code.as_str(), e.message)
}

/// Split the socket into lines for the session.
async fn read_lines(
    mut read: tokio::io::ReadHalf<tokio_rustls::server::TlsStream<WriteDeadline<TcpStream>>>,
    tx: mpsc::Sender<Incoming>,
) {
    let mut lines = LineSplitter::new(MAX_LINE);
    let mut chunk = [0u8; 4096];
    loop {
        let n = match read.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        for item in lines.push(&chunk[..n]) {
            if tx.send(item).await.is_err() {
                return;
            }
        }
    }
}

/// Cuts a byte stream into newline-terminated messages of at most `max` bytes (the socket:
/// [`MAX_LINE`]). A longer line is dropped (one `Unreadable` when it passes the limit, then
/// nothing up to its newline); a line that is not UTF-8 is `Unreadable`. Between calls it holds
/// at most `max` bytes, and how the stream is cut into calls does not change what comes out.
/// Public for the fuzz targets.
#[derive(Debug)]
pub struct LineSplitter {
    max: usize,
    buf: Vec<u8>,
    /// Inside an over-long line: drop bytes up to its newline.
    skipping: bool,
}

impl LineSplitter {
    pub fn new(max: usize) -> LineSplitter {
        LineSplitter {
            max,
            buf: Vec::new(),
            skipping: false,
        }
    }

    /// Take the next bytes read; returns the messages they complete, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Incoming> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = rest.split_at(pos);
            rest = &tail[1..];
            if self.skipping {
                self.skipping = false;
                self.buf.clear();
                continue;
            }
            self.buf.extend_from_slice(head);
            if self.buf.len() > self.max {
                self.buf = Vec::new();
                out.push(Incoming::Unreadable(TOO_LONG));
                continue;
            }
            out.push(match String::from_utf8(std::mem::take(&mut self.buf)) {
                Ok(s) => Incoming::Text(s),
                Err(_) => Incoming::Unreadable("a message must be UTF-8 text"),
            });
        }
        if !self.skipping {
            self.buf.extend_from_slice(rest);
            if self.buf.len() > self.max {
                self.buf = Vec::new();
                self.skipping = true;
                out.push(Incoming::Unreadable(TOO_LONG));
            }
        }
        out
    }

    /// Bytes held for an unfinished line.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

const TOO_LONG: &str = "message longer than 64 KiB";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_over_the_limit_is_refused_however_the_reads_cut_it() {
        // Before the splitter checked complete lines, a line of up to MAX_LINE + 4095 bytes that
        // ended inside a 4 KiB read passed as text.
        let stream = [vec![b'a'; MAX_LINE + 1], b"\n{\"cmd\":\"ping\"}\n".to_vec()].concat();
        for step in [1, 7, 4096, stream.len()] {
            let mut lines = LineSplitter::new(MAX_LINE);
            let out: Vec<Incoming> = stream.chunks(step).flat_map(|c| lines.push(c)).collect();
            assert_eq!(
                out,
                [
                    Incoming::Unreadable(TOO_LONG),
                    Incoming::Text("{\"cmd\":\"ping\"}".into())
                ],
                "reads of {step} bytes"
            );
            assert_eq!(lines.pending(), 0);
        }
        let mut lines = LineSplitter::new(MAX_LINE);
        let exact = [vec![b'a'; MAX_LINE], b"\n".to_vec()].concat();
        assert!(matches!(&lines.push(&exact)[..], [Incoming::Text(t)] if t.len() == MAX_LINE));
    }
}
