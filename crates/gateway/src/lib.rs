//! MQTT edge: listeners (TLS, and plain TCP for the AES data layer later), one task per connection,
//! MQTT packets <-> `rampart-core` calls.
//!
//! Never depends on the HTTP edge. A session's failure (bad bytes, dead peer) ends that session
//! only; the accept loop never returns an error for a single connection.

mod conn;
mod lean_tls;
mod session;

use rampart_core::Core;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

/// Gateway tunables.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Largest MQTT packet accepted (bytes).
    pub max_packet_size: usize,
    /// CONNECT (and the TLS handshake before it) must complete within this time.
    pub connect_timeout: Duration,
    /// Most concurrent connections per listener.
    pub max_connections: usize,
    /// Most subscriptions per connection.
    pub max_subscriptions: usize,
    /// Most QoS 2 messages awaiting PUBREL per connection.
    pub max_awaiting_rel: usize,
    /// Topic aliases a client may use (MQTT 5).
    pub topic_alias_max: u16,
    /// Longest topic accepted.
    pub max_topic_len: usize,
    /// Cap on a persistent session's expiry (an MQTT 3.1.1 clean-session-0 session gets exactly this).
    pub max_session_expiry_secs: u32,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            max_packet_size: 256 * 1024,
            connect_timeout: Duration::from_secs(10),
            max_connections: 100_000,
            max_subscriptions: 50,
            max_awaiting_rel: 100,
            topic_alias_max: 16,
            max_topic_len: 256,
            max_session_expiry_secs: 86_400,
        }
    }
}

/// State shared by every session of a gateway.
pub(crate) struct Shared {
    pub(crate) core: Core,
    pub(crate) config: GatewayConfig,
    /// Retained messages by topic (each topic lies inside one device's namespace).
    pub(crate) retained: Mutex<std::collections::HashMap<String, rampart_core::bus::Message>>,
}

/// Serve MQTT on an already-bound listener until `shutdown` resolves. With `tls`, every connection
/// must complete a TLS handshake first.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    core: Core,
    config: GatewayConfig,
    shutdown: impl Future<Output = ()>,
) {
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let shared = Arc::new(Shared {
        core,
        config,
        retained: Default::default(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    // Expired parked sessions are dropped once a minute.
    let purge = {
        let core = shared.core.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                core.bus().purge_expired(rampart_core::now_ms());
            }
        })
    };
    let tls_config = tls.map(|acceptor| acceptor.config().clone());
    tokio::pin!(shutdown);
    loop {
        let (sock, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            metrics::counter!("rampart_mqtt_connections_refused_total", "reason" => "capacity")
                .increment(1);
            drop(sock);
            continue;
        };
        let _ = sock.set_nodelay(true);
        let shared = shared.clone();
        let stop = stop_rx.clone();
        match tls_config.clone() {
            Some(config) => tokio::spawn(async move {
                run_tls(sock, peer, config, shared, stop).await;
                drop(permit);
            }),
            None => tokio::spawn(async move {
                run_plain(sock, peer, shared, stop).await;
                drop(permit);
            }),
        };
    }
    purge.abort();
    let _ = stop_tx.send(true);
}

/// A plain-TCP connection. Its own function (not a branch of the TLS one) so that its task future
/// does not carry the size of a TLS session.
async fn run_plain(
    sock: tokio::net::TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    metrics::gauge!("rampart_mqtt_connections").increment(1.0);
    session::run(sock, peer, shared, stop).await;
    metrics::gauge!("rampart_mqtt_connections").decrement(1.0);
}

/// A TLS connection: the handshake (within the connect timeout), then the session.
async fn run_tls(
    sock: tokio::net::TcpStream,
    peer: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    metrics::gauge!("rampart_mqtt_connections").increment(1.0);
    let timeout = shared.config.connect_timeout;
    match tokio::time::timeout(timeout, lean_tls::accept(sock, config)).await {
        Ok(Ok(stream)) => session::run(stream, peer, shared, stop).await,
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
    metrics::gauge!("rampart_mqtt_connections").decrement(1.0);
}
