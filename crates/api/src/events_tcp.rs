//! The event stream's TLS socket (issue 5, M25; default port 2017): newline-delimited JSON.
//!
//! On connect the server sends `{"cmd":"login_challenge","challenge"}`; the client answers with
//! `login_req` carrying its `key_id`, `signature` = lowercase hex HMAC-SHA256(secret, challenge)
//! and the subscription. Key checks are those of signed HTTP requests
//! (`Core::authenticate_key_challenge`). After `login_res` the session is `events::run_session`.
//!
//! Lives in the API crate because it is an operator edge beside the HTTP API and shares its
//! message handling with the WebSocket transport; it never touches MQTT. Connections are capped
//! with a semaphore; one connection's failure ends that connection only.

use crate::events::{self, Incoming, LoginFields, Outgoing, MAX_LINE};
use rampart_core::access_keys::KeyAuthError;
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
    /// TLS handshake and login must complete within this.
    pub login_timeout: Duration,
}

impl Default for EventsTcpConfig {
    fn default() -> Self {
        EventsTcpConfig {
            max_connections: 1024,
            login_timeout: Duration::from_secs(30),
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
        let (core, tls, config) = (core.clone(), tls.clone(), config.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            connection(core, tls, sock, peer, config, stopped).await;
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
        rampart_core::access_keys::KeySession,
        rampart_core::events::Consumer,
        Value,
    ),
    Value,
> {
    #[derive(serde::Deserialize)]
    struct LoginReq {
        cmd: String,
        key_id: String,
        signature: String,
        #[serde(flatten)]
        fields: LoginFields,
    }
    let req: LoginReq = serde_json::from_str(line.trim()).map_err(|e| {
        events::login_refused("INVALID_LOGIN", format!("expected a login_req: {e}"))
    })?;
    if req.cmd != "login_req" {
        return Err(events::login_refused(
            "LOGIN_REQUIRED",
            "the first message must be a login_req",
        ));
    }
    let sub = req
        .fields
        .subscription()
        .map_err(|e| refusal(crate::Error::from(e)))?;
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

fn refusal(e: crate::Error) -> Value {
    events::login_refused(e.code, e.message)
}

/// Split the socket into lines (at most [`MAX_LINE`] bytes each) for the session.
async fn read_lines(
    mut read: tokio::io::ReadHalf<tokio_rustls::server::TlsStream<TcpStream>>,
    tx: mpsc::Sender<Incoming>,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    // Inside an over-long line: drop bytes up to its newline.
    let mut skipping = false;
    loop {
        let n = match read.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut rest = &chunk[..n];
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = rest.split_at(pos);
            rest = &tail[1..];
            if skipping {
                skipping = false;
                buf.clear();
                continue;
            }
            buf.extend_from_slice(head);
            let item = match String::from_utf8(std::mem::take(&mut buf)) {
                Ok(s) => Incoming::Text(s),
                Err(_) => Incoming::Unreadable("a message must be UTF-8 text"),
            };
            if tx.send(item).await.is_err() {
                return;
            }
        }
        if !skipping {
            buf.extend_from_slice(rest);
            if buf.len() > MAX_LINE {
                buf = Vec::new();
                skipping = true;
                if tx
                    .send(Incoming::Unreadable("message longer than 64 KiB"))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}
