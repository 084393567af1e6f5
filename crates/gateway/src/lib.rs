//! MQTT edge: listeners (TLS, and plain TCP for the secure-session layer), one task per connection,
//! MQTT packets <-> `rampart-core` calls.
//!
//! Never depends on the HTTP edge. A session's failure (bad bytes, dead peer) ends that session
//! only; the accept loop never returns an error for a single connection.

mod conn;
mod idle;
mod lean_tls;
mod retained;
mod secure_session;
mod session;

use rampart_core::Core;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
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
    /// Most inbound QoS 1 and 2 publishes unacknowledged per connection (QoS 2: until PUBREL);
    /// announced to MQTT 5 clients as the receive maximum.
    pub max_inflight: u16,
    /// Topic aliases a client may use (MQTT 5).
    pub topic_alias_max: u16,
    /// Longest topic accepted.
    pub max_topic_len: usize,
    /// Cap on a persistent session's expiry (an MQTT 3.1.1 clean-session-0 session gets exactly this).
    pub max_session_expiry_secs: u32,
    /// Plain-TCP sessions idle this long (nothing buffered, nothing in flight) wait in the idle
    /// pool off the runtime; `None` keeps every session a task.
    pub park_idle_after: Option<Duration>,
    /// A write that makes no progress for this long (the peer stopped reading) closes the
    /// connection and frees its buffers.
    pub write_timeout: Duration,
    /// The plain-TCP listener also takes plain MQTT beside the secure-session layer (labs and
    /// benchmarks); off, it speaks only the secure-session layer.
    pub allow_unencrypted: bool,
    /// A secure session's server rotates its sending key after this many messages (0: never by
    /// count) ...
    pub rekey_messages: u64,
    /// ... or when its key is this old at the next message.
    pub rekey_interval: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            max_packet_size: 256 * 1024,
            connect_timeout: Duration::from_secs(10),
            max_connections: 100_000,
            max_subscriptions: 50,
            max_inflight: 100,
            topic_alias_max: 16,
            max_topic_len: 256,
            max_session_expiry_secs: 86_400,
            park_idle_after: Some(Duration::from_secs(2)),
            write_timeout: Duration::from_secs(30),
            allow_unencrypted: false,
            rekey_messages: 65_536,
            rekey_interval: Duration::from_secs(3600),
        }
    }
}

/// State shared by every session of a gateway.
pub(crate) struct Shared {
    pub(crate) core: Core,
    pub(crate) config: GatewayConfig,
    /// Retained messages by topic (each topic lies inside one device's namespace).
    pub(crate) retained: retained::Retained,
    /// Where idle plain-TCP sessions wait; `None` when parking is off.
    pub(crate) idle: Option<idle::IdlePool>,
    /// Turns true when the gateway shuts down.
    pub(crate) stop: watch::Receiver<bool>,
    /// Report buckets left by devices that disconnected before theirs refilled.
    pub(crate) carried: rampart_core::limits::report::CarriedBuckets,
    /// The listener's name as `listeners.json` gives it: `mqtt_tls` with TLS, else `mqtt`.
    pub(crate) listener: &'static str,
}

/// Admission at accept: connections open on one listener (under `max_connections`) and per
/// source address over both listeners (under `mqtt.limits.max_connections_per_ip`).
pub(crate) struct Admission {
    open: std::sync::atomic::AtomicUsize,
    max: usize,
    per_ip: rampart_core::limits::connect::OpenPerIp,
    per_ip_max: usize,
}

impl Admission {
    /// A place for a connection from `ip`, or the name of the limit that refused it.
    fn admit(self: &Arc<Self>, ip: std::net::IpAddr) -> Result<ConnGuard, &'static str> {
        use std::sync::atomic::Ordering;
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err("capacity");
        }
        let key = self.per_ip.key(ip);
        if !self.per_ip.try_open(key, self.per_ip_max) {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(rampart_core::limits::name::MQTT_CONNECTIONS_PER_IP);
        }
        metrics::gauge!(rampart_core::telemetry::MQTT_CONNECTIONS).increment(1.0);
        Ok(ConnGuard {
            admission: Some(self.clone()),
            ip_key: key,
        })
    }
}

/// One accepted connection's place under its [`Admission`], from accept to close (also while the
/// session waits in the idle pool); counted in `rampart_mqtt_connections`. 16 bytes: a parked
/// session carries it.
pub(crate) struct ConnGuard {
    admission: Option<Arc<Admission>>,
    ip_key: u64,
}

impl ConnGuard {
    /// A guard that holds no place (tests).
    #[cfg(test)]
    pub(crate) fn detached() -> ConnGuard {
        metrics::gauge!(rampart_core::telemetry::MQTT_CONNECTIONS).increment(1.0);
        ConnGuard {
            admission: None,
            ip_key: 0,
        }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        metrics::gauge!(rampart_core::telemetry::MQTT_CONNECTIONS).decrement(1.0);
        if let Some(a) = &self.admission {
            a.open.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            a.per_ip.close(self.ip_key);
        }
    }
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
    let (stop_tx, stop_rx) = watch::channel(false);
    let idle = match config.park_idle_after {
        Some(_) => match idle::IdlePool::new() {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, "idle pool unavailable; every session stays a task");
                None
            }
        },
        None => None,
    };
    let admission = Arc::new(Admission {
        open: Default::default(),
        max: config.max_connections,
        per_ip: core.connect_limits().open_per_ip().clone(),
        per_ip_max: core.connect_limits().config().max_connections_per_ip,
    });
    let shared = Arc::new(Shared {
        core,
        config,
        retained: Default::default(),
        idle,
        stop: stop_rx.clone(),
        carried: Default::default(),
        listener: if tls.is_some() { "mqtt_tls" } else { "mqtt" },
    });
    if let Some(pool) = &shared.idle {
        if let Err(e) = pool.start(shared.clone(), tokio::runtime::Handle::current()) {
            tracing::warn!(error = %e, "idle pool thread did not start");
        }
    }
    // Expired parked sessions are dropped once a minute; idle connect-limit keys every 10 s.
    let purge = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let core = &shared.core;
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            for n in 0u64.. {
                tick.tick().await;
                core.connect_limits().sweep(core.now_ms());
                shared.carried.sweep(core.clock().monotonic_ms());
                if n % 6 == 0 {
                    core.bus().purge_expired(core.now_ms());
                }
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
        // The source's connect rate, before any TLS work.
        if let Err(r) = shared
            .core
            .connect_limits()
            .check_ip(peer.ip(), shared.core.now_ms())
        {
            tracing::debug!(%peer, refusal = %r, "connection refused");
            drop(sock);
            continue;
        }
        // Open connections on this listener, and from the same address.
        let guard = match admission.admit(peer.ip()) {
            Ok(g) => g,
            Err("capacity") => {
                metrics::counter!(rampart_core::telemetry::MQTT_CONNECTIONS_REFUSED, "reason" => "capacity")
                    .increment(1);
                drop(sock);
                continue;
            }
            Err(limit) => {
                rampart_core::limits::api::count_refusal(limit);
                tracing::debug!(%peer, "connection refused: too many open from this address");
                drop(sock);
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        let shared = shared.clone();
        let stop = stop_rx.clone();
        match tls_config.clone() {
            Some(config) => tokio::spawn(run_tls(sock, peer, config, shared, stop, guard)),
            None => tokio::spawn(secure_session::run_plain(sock, peer, shared, stop, guard)),
        };
    }
    purge.abort();
    let _ = stop_tx.send(true);
    if let Some(pool) = &shared.idle {
        pool.shutdown();
    }
}

/// A plain-TCP connection. Its own function (not a branch of the TLS one) so that its task future
/// does not carry the size of a TLS session.
async fn run_tls(
    sock: tokio::net::TcpStream,
    peer: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    guard: ConnGuard,
) {
    let timeout = shared.config.connect_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    // A TLS client opens with a handshake record (0x16); 0x10 is a plaintext MQTT CONNECT, a
    // client pointed at the wrong port: tell it so instead of answering with a TLS alert.
    let mut first = [0u8; 1];
    if let Ok(Ok(1)) = tokio::time::timeout_at(deadline, sock.peek(&mut first)).await {
        if first[0] == 0x10 {
            session::refuse_plain_connect(sock, peer, &shared, deadline).await;
            return;
        }
    }
    match tokio::time::timeout_at(deadline, lean_tls::accept(sock, config)).await {
        Ok(Ok(stream)) => session::run(stream, peer, shared, stop, guard).await,
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}
