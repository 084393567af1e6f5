//! The device's MQTT connection: a cloneable handle ([`DeviceClient`]) and an event loop
//! ([`DeviceEvents`]) built on `rumqttc`, in the handle + event-loop shape `rumqttc` uses.
//!
//! Owns the CONNECT credentials (client id `{did}`, username `{did}|hmac-sha256|{ts}`, password
//! the HMAC of the connect string, re-signed with a fresh `ts` before every connection
//! attempt), TLS with a custom CA, MQTT 3.1.1 or 5.0, the subscription to `dev/{did}/down`
//! (renewed on every connection), parsing commands, and reconnecting with exponential
//! back-off and jitter. With [`ConnectOptions::ota`] it also subscribes to `dev/{did}/ota/#`:
//! manifests arrive as [`Event::Ota`], chunk answers go to [`DeviceClient::chunk_answers`] (for
//! [`crate::ota::MqttOta`]). It spawns nothing: the network only moves while [`DeviceEvents`]
//! is polled, so one task per device is enough. It never logs a secret.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rampart_device::Error> {
//! use rampart_device::{Ack, ConnectOptions, DeviceClient, Event, TlsSettings, Transport};
//! let tls = TlsSettings::from_ca_file("ca.pem".as_ref())?;
//! let opts = ConnectOptions::new("cloud.example:8883", "did1", "secret".into(), Transport::Tls(tls));
//! let (client, mut events) = DeviceClient::connect(opts)?;
//! while let Some(ev) = events.next().await {
//!     match ev {
//!         Event::Connected => client.report(&serde_json::json!({"power": true}).as_object().unwrap())?,
//!         Event::Command(cmd) => client.ack(&Ack::ok(cmd.id()))?,
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```

use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{BoxStream, Stream, StreamExt};
use rampart_proto::sign::{connect_string, connect_username, hmac_hex};
use rampart_proto::topic;
use serde_json::{Map, Value};
use tokio::sync::Notify;

use crate::command::{Ack, BadCommand, Command, Desired};
use crate::{Error, Secret};
use rampart_proto::ota::{Check, ChunkRequest, Manifest, Status};

/// Largest MQTT packet sent or accepted (a command may carry binary values).
const MAX_PACKET: usize = 256 * 1024;
/// Unacknowledged QoS 1 publishes kept per connection (also bounds per-device memory).
const INFLIGHT: u16 = 16;
/// Seconds allowed for TCP + TLS + CONNACK.
const CONNECT_TIMEOUT_S: u64 = 10;
/// Shortest keep-alive `rumqttc` accepts for both protocol versions.
const MIN_KEEP_ALIVE: Duration = Duration::from_secs(5);

/// MQTT protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// MQTT 3.1.1 (the default).
    #[default]
    V311,
    /// MQTT 5.0.
    V5,
}

/// TLS client settings: the roots the server certificate must chain to.
///
/// Built once and shared (cheaply cloned) by every connection of a fleet.
#[derive(Clone)]
pub struct TlsSettings {
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsSettings { .. }")
    }
}

impl TlsSettings {
    /// Trust exactly the certificates in `pem` (a CA, or the server's self-signed certificate).
    pub fn from_ca_pem(pem: &[u8]) -> Result<TlsSettings, Error> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut &pem[..]) {
            let cert = cert.map_err(|e| Error::Tls(format!("CA PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| Error::Tls(format!("CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(Error::Tls("no certificate in the CA PEM".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsSettings {
            config: Arc::new(config),
        })
    }

    /// [`TlsSettings::from_ca_pem`] on the contents of a PEM file.
    pub fn from_ca_file(path: &Path) -> Result<TlsSettings, Error> {
        let pem = std::fs::read(path)
            .map_err(|e| Error::Tls(format!("CA file {}: {e}", path.display())))?;
        TlsSettings::from_ca_pem(&pem)
    }
}

/// How to reach the server.
#[derive(Debug, Clone)]
pub enum Transport {
    /// Plain TCP (tests, or a link already protected otherwise).
    Tcp,
    /// TLS, verifying the server against the given roots.
    Tls(TlsSettings),
}

/// Reconnect back-off: `initial`, doubled on every failed attempt, capped at `max`, with
/// jitter (each wait is drawn from the upper half of the current step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// Wait before attempt number `failures + 1`, with `jitter` in `[0, 1)`.
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let exp = failures.saturating_sub(1).min(31);
        let step = self
            .initial
            .saturating_mul(1u32 << exp)
            .min(self.max)
            .max(Duration::from_millis(1));
        step.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }
}

/// Everything needed to connect one device.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `HOST:PORT` (`[v6addr]:PORT` for IPv6 literals). With TLS, `HOST` is the name the
    /// server certificate must carry.
    pub server: String,
    pub did: String,
    pub device_secret: Secret,
    pub transport: Transport,
    pub protocol: Protocol,
    /// MQTT keep-alive (at least 5 s).
    pub keep_alive: Duration,
    pub backoff: Backoff,
    /// Requests (publishes, acks) the handle can queue ahead of the event loop.
    pub queue: usize,
    /// Take part in OTA over MQTT: subscribe to `dev/{did}/ota/#` on every connection.
    pub ota: bool,
}

impl ConnectOptions {
    /// Options with the defaults: MQTT 3.1.1, 60 s keep-alive, back-off 1 s .. 30 s, queue 64.
    pub fn new(
        server: impl Into<String>,
        did: impl Into<String>,
        device_secret: Secret,
        transport: Transport,
    ) -> ConnectOptions {
        ConnectOptions {
            server: server.into(),
            did: did.into(),
            device_secret,
            transport,
            protocol: Protocol::V311,
            keep_alive: Duration::from_secs(60),
            backoff: Backoff::default(),
            queue: 64,
            ota: false,
        }
    }
}

/// What the event loop reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The server accepted CONNECT; the subscription to the down topic is on its way.
    Connected,
    /// The connection is gone. `error` is `None` when the handle asked for it
    /// ([`DeviceClient::reconnect_after`]); the next attempt starts after `retry_in`.
    Disconnected {
        error: Option<String>,
        retry_in: Duration,
    },
    /// A command to answer with [`DeviceClient::ack`].
    Command(Command),
    /// The desired state still to apply (after a CONNECT); apply it and report the values.
    Desired(Desired),
    /// A payload on the down topic that is not a valid command. When it has an id the
    /// client has already acked it with status `error`.
    BadCommand(BadCommand),
    /// A manifest on `dev/{did}/ota` (with [`ConnectOptions::ota`]), not verified yet: hand it
    /// to [`crate::ota::update`], which checks its signature before anything else.
    Ota(Box<Manifest>),
}

/// What to do once the handle's DISCONNECT has been written.
#[derive(Debug, Clone, Copy)]
enum AfterDisconnect {
    Stop,
    Reconnect(Duration),
}

enum Handle {
    V4(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

impl Handle {
    fn try_publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), Error> {
        let r = match self {
            Handle::V4(c) => c
                .try_publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
                .map_err(|e| e.to_string()),
            Handle::V5(c) => c
                .try_publish(
                    topic,
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    false,
                    payload,
                )
                .map_err(|e| e.to_string()),
        };
        r.map_err(|e| Error::Mqtt(format!("cannot queue publish: {e}")))
    }

    fn try_disconnect(&self) -> Result<(), Error> {
        let r = match self {
            Handle::V4(c) => c.try_disconnect().map_err(|e| e.to_string()),
            Handle::V5(c) => c.try_disconnect().map_err(|e| e.to_string()),
        };
        r.map_err(|e| Error::Mqtt(format!("cannot queue disconnect: {e}")))
    }
}

struct Shared {
    did: String,
    up: String,
    ack: String,
    ota_check: String,
    ota_status: String,
    ota_chunk: String,
    /// Chunk answers as they arrive, for whoever downloads (none listening: dropped).
    chunks: tokio::sync::broadcast::Sender<Bytes>,
    handle: Handle,
    after_disconnect: Mutex<AfterDisconnect>,
    /// Set by [`DeviceClient::close`]; wakes a driver that is waiting to reconnect.
    closing: AtomicBool,
    /// Set when a close could not be queued: the driver stops at its next step.
    abort: AtomicBool,
    wake: Notify,
}

impl Shared {
    fn set_after_disconnect(&self, a: AfterDisconnect) {
        match self.after_disconnect.lock() {
            Ok(mut g) => *g = a,
            Err(p) => *p.into_inner() = a,
        }
    }

    fn after_disconnect(&self) -> AfterDisconnect {
        match self.after_disconnect.lock() {
            Ok(g) => *g,
            Err(p) => *p.into_inner(),
        }
    }
}

/// The handle: publish reports and acks, ask for a reconnect or a close. Cheap to clone.
///
/// Its methods never wait: they queue a request for the event loop and fail with
/// [`Error::Mqtt`] when the queue is full, so they are safe to call from the task that
/// polls [`DeviceEvents`].
#[derive(Clone)]
pub struct DeviceClient {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for DeviceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceClient")
            .field("did", &self.shared.did)
            .finish_non_exhaustive()
    }
}

/// The event loop. Poll it (with [`DeviceEvents::next`] or as a `Stream`) for the
/// connection to make progress; it ends after [`DeviceClient::close`].
pub struct DeviceEvents {
    inner: BoxStream<'static, Event>,
}

impl std::fmt::Debug for DeviceEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceEvents { .. }")
    }
}

impl DeviceEvents {
    /// The next event, or `None` once the client is closed.
    ///
    /// Cancel-safe: dropping the returned future (say, in a `select!`) loses nothing; the
    /// network step in progress is kept and resumed by the next call.
    pub async fn next(&mut self) -> Option<Event> {
        self.inner.next().await
    }
}

impl Stream for DeviceEvents {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// Split `HOST:PORT` (or `[v6]:PORT`).
pub(crate) fn split_server(server: &str) -> Result<(String, u16), Error> {
    let bad = || Error::invalid(format!("server `{server}` must be HOST:PORT"));
    let (host, port) = server.rsplit_once(':').ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

impl DeviceClient {
    /// Build the handle and its event loop. Nothing touches the network until the
    /// [`DeviceEvents`] are polled; the first poll connects.
    pub fn connect(opts: ConnectOptions) -> Result<(DeviceClient, DeviceEvents), Error> {
        let (host, port) = split_server(&opts.server)?;
        if opts.did.is_empty() || opts.did.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(Error::invalid(
                "did must be non-empty, without spaces or `/`",
            ));
        }
        let keep_alive = opts.keep_alive.max(MIN_KEEP_ALIVE);
        let queue = opts.queue.max(1);
        let transport = match &opts.transport {
            Transport::Tcp => rumqttc::Transport::Tcp,
            Transport::Tls(t) => {
                rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Rustls(t.config.clone()))
            }
        };
        let (handle, conn) = match opts.protocol {
            Protocol::V311 => {
                let mut o = rumqttc::MqttOptions::new(opts.did.as_str(), host, port);
                o.set_keep_alive(keep_alive)
                    .set_clean_session(true)
                    .set_inflight(INFLIGHT)
                    .set_max_packet_size(MAX_PACKET, MAX_PACKET)
                    .set_transport(transport);
                let (c, mut el) = rumqttc::AsyncClient::new(o, queue);
                el.network_options.set_connection_timeout(CONNECT_TIMEOUT_S);
                (Handle::V4(c), Conn::V4(Box::new(el)))
            }
            Protocol::V5 => {
                let mut o = rumqttc::v5::MqttOptions::new(opts.did.as_str(), host, port);
                o.set_keep_alive(keep_alive)
                    .set_clean_start(true)
                    .set_outgoing_inflight_upper_limit(INFLIGHT)
                    .set_max_packet_size(Some(MAX_PACKET as u32))
                    .set_connection_timeout(CONNECT_TIMEOUT_S)
                    .set_transport(transport);
                let (c, el) = rumqttc::v5::AsyncClient::new(o, queue);
                (Handle::V5(c), Conn::V5(Box::new(el)))
            }
        };
        let ota_base = format!("{}ota", topic::prefix(&opts.did));
        let shared = Arc::new(Shared {
            up: topic::up(&opts.did),
            ack: topic::ack(&opts.did),
            ota_check: format!("{ota_base}/check"),
            ota_status: format!("{ota_base}/status"),
            ota_chunk: format!("{ota_base}/chunk"),
            chunks: tokio::sync::broadcast::channel(64).0,
            did: opts.did.clone(),
            handle,
            after_disconnect: Mutex::new(AfterDisconnect::Stop),
            closing: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            wake: Notify::new(),
        });
        let driver = Driver {
            conn,
            down: topic::down(&opts.did),
            ota: opts.ota.then(|| OtaTopics {
                filter: format!("{ota_base}/#"),
                manifest: ota_base.clone(),
                chunk: format!("{ota_base}/chunk"),
            }),
            shared: shared.clone(),
            secret: opts.device_secret,
            backoff: opts.backoff,
            failures: 0,
            phase: Phase::Connect,
        };
        let inner = futures_util::stream::unfold(driver, |mut d| async move {
            let ev = d.next_event().await?;
            Some((ev, d))
        })
        .fuse() // keeps answering `None` once closed (a bare unfold would panic)
        .boxed();
        Ok((DeviceClient { shared }, DeviceEvents { inner }))
    }

    pub fn did(&self) -> &str {
        &self.shared.did
    }

    /// Publish a report (a JSON object of data points) on `dev/{did}/up`, QoS 1.
    pub fn report(&self, values: &Map<String, Value>) -> Result<(), Error> {
        let payload = serde_json::to_vec(values).map_err(|e| Error::invalid(e.to_string()))?;
        self.shared.handle.try_publish(&self.shared.up, payload)
    }

    /// Publish an ack on `dev/{did}/ack`, QoS 1.
    pub fn ack(&self, ack: &Ack) -> Result<(), Error> {
        self.shared
            .handle
            .try_publish(&self.shared.ack, ack.to_payload())
    }

    /// Publish the connect-time check on `dev/{did}/ota/check` (what the device runs): the
    /// cloud answers with a manifest ([`Event::Ota`]) when there is something to install, and a
    /// check naming an update's version is what completes it.
    pub fn ota_check(&self, check: &Check) -> Result<(), Error> {
        let payload = serde_json::to_vec(check).map_err(|e| Error::invalid(e.to_string()))?;
        self.shared
            .handle
            .try_publish(&self.shared.ota_check, payload)
    }

    /// Publish an OTA progress report on `dev/{did}/ota/status`.
    pub fn ota_status(&self, status: &Status) -> Result<(), Error> {
        let payload = serde_json::to_vec(status).map_err(|e| Error::invalid(e.to_string()))?;
        self.shared
            .handle
            .try_publish(&self.shared.ota_status, payload)
    }

    /// Ask for part of an image on `dev/{did}/ota/chunk`; the answer comes to
    /// [`DeviceClient::chunk_answers`].
    pub fn request_chunk(&self, req: &ChunkRequest) -> Result<(), Error> {
        let payload = serde_json::to_vec(req).map_err(|e| Error::invalid(e.to_string()))?;
        self.shared
            .handle
            .try_publish(&self.shared.ota_chunk, payload)
    }

    /// The raw chunk answers that arrive from now on (with [`ConnectOptions::ota`]). A receiver
    /// that falls behind loses the oldest ones: a downloader asks again.
    pub fn chunk_answers(&self) -> tokio::sync::broadcast::Receiver<Bytes> {
        self.shared.chunks.subscribe()
    }

    /// Disconnect cleanly once everything queued so far is written, then connect again
    /// after `delay` (a device reboot).
    pub fn reconnect_after(&self, delay: Duration) -> Result<(), Error> {
        self.shared
            .set_after_disconnect(AfterDisconnect::Reconnect(delay));
        self.shared.handle.try_disconnect()
    }

    /// Disconnect cleanly once everything queued so far is written, and end the event
    /// loop. Keep polling [`DeviceEvents`] until it returns `None` for the DISCONNECT to
    /// go out; if the queue is full the connection is dropped without one.
    pub fn close(&self) {
        self.shared.set_after_disconnect(AfterDisconnect::Stop);
        self.shared.closing.store(true, Ordering::SeqCst);
        if self.shared.handle.try_disconnect().is_err() {
            self.shared.abort.store(true, Ordering::SeqCst);
        }
        self.shared.wake.notify_one();
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Sign fresh credentials, then connect on the next poll.
    Connect,
    Live,
    Wait(Duration),
    Stopped,
}

/// Which of the device's topics a publish came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inbound {
    Down,
    OtaManifest,
    OtaChunk,
    Other,
}

/// The OTA topics a client with [`ConnectOptions::ota`] listens to.
struct OtaTopics {
    filter: String,
    manifest: String,
    chunk: String,
}

/// What a publish's topic is to this device.
fn inbound(topic: &[u8], down: &str, ota: Option<&OtaTopics>) -> Inbound {
    if topic == down.as_bytes() {
        return Inbound::Down;
    }
    match ota {
        Some(o) if topic == o.manifest.as_bytes() => Inbound::OtaManifest,
        Some(o) if topic == o.chunk.as_bytes() => Inbound::OtaChunk,
        _ => Inbound::Other,
    }
}

enum Conn {
    V4(Box<rumqttc::EventLoop>),
    V5(Box<rumqttc::v5::EventLoop>),
}

/// One step of the underlying event loop, reduced to what the driver cares about.
enum Polled {
    ConnAck,
    Publish {
        on: Inbound,
        payload: Bytes,
    },
    SubscribeRefused,
    /// The handle's DISCONNECT has been written.
    Disconnecting,
    Other,
    Error(String),
}

impl Conn {
    fn set_credentials(&mut self, username: String, password: String) {
        match self {
            Conn::V4(el) => {
                el.mqtt_options.set_credentials(username, password);
            }
            Conn::V5(el) => {
                el.options.set_credentials(username, password);
            }
        }
    }

    /// Queue SUBSCRIBE ahead of anything left from an earlier connection.
    fn subscribe_first(&mut self, filter: &str) {
        match self {
            Conn::V4(el) => {
                el.pending
                    .push_front(rumqttc::Request::Subscribe(rumqttc::Subscribe::new(
                        filter,
                        rumqttc::QoS::AtLeastOnce,
                    )))
            }
            Conn::V5(el) => {
                use rumqttc::v5::mqttbytes::v5::{Filter, Subscribe};
                let f = Filter::new(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce);
                el.pending
                    .push_front(rumqttc::v5::Request::Subscribe(Subscribe::new(f, None)));
            }
        }
    }

    /// Drop the connection, keeping unacknowledged publishes for the next one.
    fn clean(&mut self) {
        match self {
            Conn::V4(el) => el.clean(),
            Conn::V5(el) => el.clean(),
        }
    }

    async fn poll(&mut self, down: &str, ota: Option<&OtaTopics>) -> Polled {
        match self {
            Conn::V4(el) => {
                use rumqttc::{Event as E, Outgoing, Packet};
                match el.poll().await {
                    Ok(E::Incoming(Packet::ConnAck(_))) => Polled::ConnAck,
                    Ok(E::Incoming(Packet::Publish(p))) => Polled::Publish {
                        on: inbound(p.topic.as_bytes(), down, ota),
                        payload: p.payload,
                    },
                    Ok(E::Incoming(Packet::SubAck(s)))
                        if s.return_codes
                            .iter()
                            .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure)) =>
                    {
                        Polled::SubscribeRefused
                    }
                    Ok(E::Outgoing(Outgoing::Disconnect)) => Polled::Disconnecting,
                    Ok(_) => Polled::Other,
                    Err(e) => Polled::Error(e.to_string()),
                }
            }
            Conn::V5(el) => {
                use rumqttc::v5::mqttbytes::v5::{Packet, SubscribeReasonCode};
                use rumqttc::v5::Event as E;
                use rumqttc::Outgoing;
                match el.poll().await {
                    Ok(E::Incoming(Packet::ConnAck(_))) => Polled::ConnAck,
                    Ok(E::Incoming(Packet::Publish(p))) => Polled::Publish {
                        on: inbound(&p.topic, down, ota),
                        payload: p.payload,
                    },
                    Ok(E::Incoming(Packet::SubAck(s)))
                        if s.return_codes
                            .iter()
                            .any(|c| !matches!(c, SubscribeReasonCode::Success(_))) =>
                    {
                        Polled::SubscribeRefused
                    }
                    Ok(E::Outgoing(Outgoing::Disconnect)) => Polled::Disconnecting,
                    Ok(_) => Polled::Other,
                    Err(e) => Polled::Error(e.to_string()),
                }
            }
        }
    }
}

/// The state behind [`DeviceEvents`].
struct Driver {
    conn: Conn,
    down: String,
    ota: Option<OtaTopics>,
    shared: Arc<Shared>,
    secret: Secret,
    backoff: Backoff,
    /// Failed connections since the last CONNACK.
    failures: u32,
    phase: Phase,
}

impl Driver {
    /// Fresh CONNECT credentials: the password signs `did` and the current time.
    fn sign(&mut self) {
        let ts = crate::now_ms();
        let did = &self.shared.did;
        let password = hmac_hex(self.secret.as_bytes(), &connect_string(did, ts));
        self.conn
            .set_credentials(connect_username(did, ts), password);
    }

    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if self.shared.abort.load(Ordering::SeqCst) {
                self.conn.clean();
                self.phase = Phase::Stopped;
            }
            match self.phase {
                Phase::Stopped => return None,
                Phase::Wait(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {}
                        _ = self.shared.wake.notified() => {}
                    }
                    self.phase = if self.shared.closing.load(Ordering::SeqCst) {
                        Phase::Stopped
                    } else {
                        Phase::Connect
                    };
                    continue;
                }
                Phase::Connect => {
                    self.sign();
                    self.phase = Phase::Live;
                }
                Phase::Live => {}
            }
            match self.conn.poll(&self.down, self.ota.as_ref()).await {
                Polled::ConnAck => {
                    self.failures = 0;
                    if let Some(o) = &self.ota {
                        self.conn.subscribe_first(&o.filter);
                    }
                    self.conn.subscribe_first(&self.down);
                    tracing::debug!(did = %self.shared.did, "connected");
                    return Some(Event::Connected);
                }
                Polled::Publish {
                    on: Inbound::OtaManifest,
                    payload,
                } => match serde_json::from_slice::<Manifest>(&payload) {
                    Ok(m) => return Some(Event::Ota(Box::new(m))),
                    Err(e) => {
                        tracing::debug!(did = %self.shared.did, error = %e, "malformed OTA manifest");
                    }
                },
                Polled::Publish {
                    on: Inbound::OtaChunk,
                    payload,
                } => {
                    // Nobody listening (no download under way) is fine: the answer is stale.
                    let _ = self.shared.chunks.send(payload);
                }
                Polled::Publish {
                    on: Inbound::Down,
                    payload,
                } => {
                    if let Some(d) = Desired::parse(&payload) {
                        return Some(Event::Desired(d));
                    }
                    return Some(match Command::parse(&payload) {
                        Ok(c) => Event::Command(c),
                        Err(bad) => {
                            tracing::debug!(did = %self.shared.did, id = ?bad.id, reason = %bad.reason, "bad command");
                            if let Some(id) = &bad.id {
                                let ack = Ack::error(id.as_str(), bad.reason.as_str());
                                if let Err(e) = self
                                    .shared
                                    .handle
                                    .try_publish(&self.shared.ack, ack.to_payload())
                                {
                                    tracing::warn!(did = %self.shared.did, error = %e, "cannot ack a bad command");
                                }
                            }
                            Event::BadCommand(bad)
                        }
                    });
                }
                Polled::Publish {
                    on: Inbound::Other, ..
                }
                | Polled::Other => {}
                Polled::SubscribeRefused => {
                    tracing::warn!(did = %self.shared.did, "server refused the subscription to the down topic");
                }
                Polled::Disconnecting => {
                    self.conn.clean();
                    match self.shared.after_disconnect() {
                        AfterDisconnect::Stop => {
                            self.phase = Phase::Stopped;
                            tracing::debug!(did = %self.shared.did, "closed");
                            return None;
                        }
                        AfterDisconnect::Reconnect(d) => {
                            self.shared.set_after_disconnect(AfterDisconnect::Stop);
                            self.phase = Phase::Wait(d);
                            return Some(Event::Disconnected {
                                error: None,
                                retry_in: d,
                            });
                        }
                    }
                }
                Polled::Error(e) => {
                    self.failures = self.failures.saturating_add(1);
                    let d = self.backoff.delay(self.failures, rand::random::<f64>());
                    self.phase = Phase::Wait(d);
                    tracing::debug!(did = %self.shared.did, error = %e, retry_in_ms = d.as_millis() as u64, "connection lost");
                    return Some(Event::Disconnected {
                        error: Some(e),
                        retry_in: d,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let b = Backoff::default();
        assert_eq!(b.delay(1, 1.0), Duration::from_secs(1));
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(500));
        assert_eq!(b.delay(3, 1.0), Duration::from_secs(4));
        assert_eq!(b.delay(6, 1.0), Duration::from_secs(30));
        assert_eq!(b.delay(1000, 1.0), Duration::from_secs(30));
        assert_eq!(b.delay(1000, 0.0), Duration::from_secs(15));
        for f in 1..50 {
            let d = b.delay(f, rand::random());
            assert!(d <= Duration::from_secs(30) && d >= Duration::from_millis(500));
        }
    }

    #[test]
    fn server_addresses() {
        assert_eq!(split_server("h:1883").unwrap(), ("h".into(), 1883));
        assert_eq!(split_server("[::1]:8883").unwrap(), ("::1".into(), 8883));
        assert!(split_server("h").is_err());
        assert!(split_server(":1").is_err());
        assert!(split_server("h:0").is_err());
        assert!(split_server("h:x").is_err());
    }

    #[test]
    fn tls_settings_need_a_certificate() {
        assert!(TlsSettings::from_ca_pem(b"").is_err());
        assert!(TlsSettings::from_ca_pem(b"not a pem").is_err());
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        assert!(TlsSettings::from_ca_pem(cert.cert.pem().as_bytes()).is_ok());
    }

    #[test]
    fn rejects_bad_options() {
        let o =
            |server: &str, did: &str| ConnectOptions::new(server, did, "s".into(), Transport::Tcp);
        assert!(DeviceClient::connect(o("h", "d1")).is_err());
        assert!(DeviceClient::connect(o("h:1", "")).is_err());
        assert!(DeviceClient::connect(o("h:1", "a b")).is_err());
        assert!(DeviceClient::connect(o("h:1", "a/b")).is_err());
    }
}
