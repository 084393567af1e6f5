//! One MQTT connection from CONNECT to close: authentication, the device's topic namespace, QoS 0/1/2
//! inbound, QoS 1 outbound (commands), retain, wills, keepalive and MQTT 5 topic aliases.

use crate::conn::Conn;
use crate::idle::Resume;
use crate::{retained, ConnGuard, Shared};
use bytes::BytesMut;
use rampart_core::device::bus::{Inbox, KickReason, Message, ParkedSession, ToSession};
use rampart_core::device::runtime::{ConnectRefusal, DeviceAuth};
use rampart_core::limits::api::count_refusal;
use rampart_core::limits::name as limit;
use rampart_core::limits::report::{capacity, ReportBucket, Verdict};
use rampart_core::Error as CoreError;
use rampart_proto::mqtt::{
    self, reason, ConnAck, Disconnect, Packet, Properties, ProtocolVersion, PubResp, Publish, QoS,
    SubAck, UnsubAck,
};
use rampart_proto::topic::{self, DeviceTopic};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio::time::Instant;

/// Most unacknowledged QoS 1 messages to one device.
const OUTBOUND_INFLIGHT_MAX: u16 = 100;
/// Most QoS 1 messages waiting behind a full inflight window.
const OUTBOUND_PENDING_MAX: usize = 1000;
/// Most inbound QoS 1 reports of one connection waiting for their commit; at this many the
/// session stops reading from the device until the oldest is acknowledged.
const INBOUND_UNCOMMITTED_MAX: usize = 256;

/// An inbound QoS 1 publish not yet acknowledged: PUBACKs go out in the order the publishes came
/// in, so an answer that is ready waits behind an earlier report still being committed.
struct PendingAck {
    packet_id: u16,
    /// The report's commit; `None` once the answer is known.
    receipt: Option<rampart_core::ReportReceipt>,
    code: u8,
    why: Option<String>,
}

/// Messages per minute allowed by the device's product.
fn s_limit(dev: &DeviceAuth) -> u32 {
    u32::try_from(dev.product.report_limit_per_min)
        .unwrap_or(u32::MAX)
        .max(1)
}

/// A connection's subscriptions: a device has one or two, so a short list (no hash table, each
/// filter in a box of its exact size, the list itself a box of its exact length) is both smaller
/// and faster than a map.
#[derive(Default)]
struct Subs(Box<[(Box<str>, QoS)]>);

impl Subs {
    fn contains(&self, filter: &str) -> bool {
        self.0.iter().any(|(f, _)| &**f == filter)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// Add or replace.
    fn insert(&mut self, filter: &str, qos: QoS) {
        match self.0.iter_mut().find(|(f, _)| &**f == filter) {
            Some(e) => e.1 = qos,
            None => {
                let mut v = std::mem::take(&mut self.0).into_vec();
                v.push((filter.into(), qos));
                self.0 = v.into_boxed_slice();
            }
        }
    }

    fn remove(&mut self, filter: &str) -> Option<QoS> {
        let i = self.0.iter().position(|(f, _)| &**f == filter)?;
        let mut v = std::mem::take(&mut self.0).into_vec();
        let (_, qos) = v.swap_remove(i);
        self.0 = v.into_boxed_slice();
        Some(qos)
    }

    fn iter(&self) -> impl Iterator<Item = (&str, QoS)> + '_ {
        self.0.iter().map(|(f, q)| (&**f, *q))
    }
}

/// Why a session ended, for presence and logs.
enum Close {
    /// Clean DISCONNECT; `with_will` when the client asked for its will (MQTT 5 reason 0x04).
    Clean {
        with_will: bool,
    },
    /// Protocol violation or policy refusal: send DISCONNECT (5.0) with this code, then close.
    Violation(u8, &'static str),
    /// Peer went away or I/O failed.
    Gone,
    KeepAlive,
    Kicked(KickReason),
    Shutdown,
    /// Idle: set the session aside in the idle pool (not a close).
    Park,
    /// The peer stopped reading: a write made no progress within the write timeout.
    SlowPeer,
}

struct Session<S> {
    io: S,
    rbuf: BytesMut,
    wbuf: BytesMut,
    version: ProtocolVersion,
    dev: DeviceAuth,
    shared: Arc<Shared>,
    subs: Subs,
    /// State most sessions never need (MQTT 5 aliases, QoS 2, commands in flight): allocated on
    /// first use, dropped again once empty, so an idle session pays one pointer for it.
    rare: Option<Box<Rare>>,
    next_pid: u16,
    /// Session expiry in seconds (0: the session ends with the connection).
    expiry_secs: u32,
    /// Inbound publish rate limit from the product model.
    limiter: ReportBucket,
    /// Most QoS 1 messages in flight to the device: the client's receive maximum, capped.
    out_window: u16,
    /// Inbound QoS 1 publishes awaiting their PUBACK, oldest first.
    acks: std::collections::VecDeque<PendingAck>,
    client_max_packet: u32,
    /// Authenticated by the Ed25519 challenge (MQTT 5 enhanced authentication): the device may
    /// re-authenticate with AUTH.
    enhanced: bool,
}

/// The parts of a session's state that are usually empty.
#[derive(Default)]
struct Rare {
    // Ordered collections: empty ones hold no allocation and, unlike hash maps, no hasher keys.
    /// MQTT 5 topic aliases set by the client.
    aliases: BTreeMap<u16, String>,
    /// QoS 2 packet ids received and awaiting their PUBREL.
    awaiting_rel: BTreeSet<u16>,
    /// Unacknowledged QoS 1 messages to the device, kept for a parked session.
    inflight_out: BTreeMap<u16, Message>,
    /// QoS 1 messages waiting for an inflight slot.
    pending_out: std::collections::VecDeque<(Message, bool)>,
    /// The device's shadow delta, told at CONNECT, waiting for a subscription to its down topic.
    desired: Option<Message>,
    /// The nonce of a re-authentication under way, until the device's AUTH answers it.
    reauth_nonce: Option<[u8; rampart_proto::sign::ED25519_NONCE_LEN]>,
}

impl Rare {
    fn is_empty(&self) -> bool {
        self.aliases.is_empty()
            && self.awaiting_rel.is_empty()
            && self.inflight_out.is_empty()
            && self.pending_out.is_empty()
            && self.desired.is_none()
            && self.reauth_nonce.is_none()
    }
}

/// A peer address in 18 bytes instead of `SocketAddr`'s 32 (it is only ever logged): IPv4 is kept
/// as an IPv4-mapped IPv6 address.
#[derive(Clone, Copy)]
struct Peer {
    ip: [u8; 16],
    port: u16,
}

impl From<SocketAddr> for Peer {
    fn from(a: SocketAddr) -> Peer {
        let ip = match a.ip() {
            std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            std::net::IpAddr::V6(v6) => v6,
        };
        Peer {
            ip: ip.octets(),
            port: a.port(),
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ip = std::net::Ipv6Addr::from(self.ip);
        let ip = ip.to_canonical();
        SocketAddr::new(ip, self.port).fmt(f)
    }
}

/// A session past its CONNACK: its state and connection, and what closing it needs.
struct Opened<S> {
    session: Session<S>,
    /// Also the session's identity on the bus.
    rx: Arc<Inbox>,
    /// Boxed: a will (with its MQTT 5 properties) is large and rarely used.
    will: Option<Box<rampart_proto::mqtt::Will>>,
    keep_alive: u16,
    peer: Peer,
    /// When the keepalive runs out without a packet.
    deadline: Option<Instant>,
    guard: ConnGuard,
}

/// What a parked session holds only in the rare case it is not empty.
struct Carry {
    rbuf: BytesMut,
    wbuf: BytesMut,
    acks: std::collections::VecDeque<PendingAck>,
}

/// A session waiting in the idle pool: the fields of its [`Session`] and [`Opened`] but the socket
/// and the buffers, which are empty when a session parks (those of the few parked sessions that
/// are not, and bytes the pool read or could not write, travel in `carry`). One 160-byte box.
pub(crate) struct Idle {
    version: ProtocolVersion,
    dev: DeviceAuth,
    subs: Subs,
    rare: Option<Box<Rare>>,
    next_pid: u16,
    expiry_secs: u32,
    limiter: ReportBucket,
    out_window: u16,
    client_max_packet: u32,
    enhanced: bool,
    rx: Arc<Inbox>,
    will: Option<Box<rampart_proto::mqtt::Will>>,
    keep_alive: u16,
    peer: Peer,
    deadline: Option<Instant>,
    guard: ConnGuard,
    carry: Option<Box<Carry>>,
}

/// One connection from its first byte to close. The opening and closing steps, and the handling of
/// each packet, are boxed: they await database work whose futures are large, and the future of an
/// idle connection should hold only what an idle connection needs.
pub(crate) async fn run<S>(
    io: S,
    peer: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    guard: ConnGuard,
) where
    S: Conn,
{
    let Some(o) = Box::pin(open(io, peer, &shared, guard)).await else {
        return;
    };
    drive(o, stop).await;
}

/// Serve packets until the session closes, or until it is idle long enough to wait in the pool.
async fn drive<S: Conn>(mut o: Opened<S>, mut stop: watch::Receiver<bool>) {
    // Whatever is queued (the CONNACK of a new session) goes out first.
    let close = match o.session.flush().await {
        Ok(()) => {
            o.session
                .run_loop(o.keep_alive, &mut o.deadline, &o.rx, &mut stop)
                .await
        }
        Err(_) => Close::Gone,
    };
    if !matches!(close, Close::Park) {
        Box::pin(finish(o, close)).await;
        return;
    }
    let shared = o.session.shared.clone();
    o.session.trim_rare();
    let (io, idle) = o.freeze();
    let idle = Box::new(idle);
    let Some(pool) = shared.idle.as_ref() else {
        return Box::pin(abandon(idle, shared.clone())).await;
    };
    match io.into_std() {
        Ok(std) => {
            if let Err((std, idle)) = pool.park(std, idle) {
                // The pool has stopped: the gateway is shutting down.
                match tokio::net::TcpStream::from_std(std) {
                    Ok(io) => Box::pin(resume(io, idle, Resume::Shutdown, shared.clone())).await,
                    Err(_) => Box::pin(abandon(idle, shared.clone())).await,
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not park an idle session");
            Box::pin(abandon(idle, shared.clone())).await;
        }
    }
}

/// A parked session back on the runtime, as a task of its own.
pub(crate) async fn resume(
    io: tokio::net::TcpStream,
    idle: Box<Idle>,
    why: Resume,
    shared: Arc<Shared>,
) {
    let o = idle.thaw(io, shared.clone());
    match why {
        Resume::KeepAlive => Box::pin(finish(o, Close::KeepAlive)).await,
        Resume::Shutdown => Box::pin(finish(o, Close::Shutdown)).await,
        Resume::Readable | Resume::Message => Box::pin(drive(o, shared.stop.clone())).await,
    }
}

/// Close a session whose socket was lost on its way in or out of the idle pool: the will, the
/// persistent session and presence are handled as for a dropped connection.
pub(crate) async fn abandon(idle: Box<Idle>, shared: Arc<Shared>) {
    let (dead, _) = tokio::io::duplex(1);
    let o = idle.thaw(dead, shared);
    Box::pin(finish(o, Close::Gone)).await;
}

/// Step 4: will, DISCONNECT, parking a persistent session, presence.
async fn finish<S>(o: Opened<S>, close: Close)
where
    S: Conn,
{
    let Opened {
        session: mut s,
        rx,
        will,
        peer,
        guard,
        ..
    } = o;
    let shared = s.shared.clone();
    let version = s.version;
    let did = s.dev.did.as_str().to_owned();

    // 4. Close: will, DISCONNECT, presence. Reports already submitted are answered first if their
    //    commit comes soon.
    if matches!(close, Close::SlowPeer) {
        // Nothing more can reach a peer that does not read; its buffers go now.
        s.wbuf = BytesMut::new();
        s.acks.clear();
    }
    if !s.acks.is_empty() && !matches!(close, Close::Gone) {
        let _ = tokio::time::timeout(Duration::from_secs(2), s.settle_acks()).await;
    }
    let (publish_will, why): (bool, &str) = match &close {
        Close::Clean { with_will } => (*with_will, "disconnect"),
        Close::Violation(_, why) => (true, why),
        Close::Gone => (true, "connection lost"),
        Close::KeepAlive => (true, "keepalive timeout"),
        Close::Kicked(KickReason::TakenOver) => (true, "taken over"),
        Close::Kicked(KickReason::Revoked) => (true, "credentials revoked"),
        Close::Shutdown => (false, "server shutdown"),
        Close::Park => (true, "connection lost"),
        Close::SlowPeer => (true, "peer stopped reading"),
    };
    let code = match &close {
        Close::Violation(code, _) => Some(*code),
        Close::Kicked(KickReason::TakenOver) => Some(reason::SESSION_TAKEN_OVER),
        Close::Kicked(KickReason::Revoked) => Some(reason::ADMINISTRATIVE_ACTION),
        Close::Shutdown => Some(reason::SERVER_SHUTTING_DOWN),
        Close::KeepAlive => Some(reason::KEEP_ALIVE_TIMEOUT),
        _ => None,
    };
    if let (Some(code), ProtocolVersion::V5) = (code, version) {
        let properties = Properties {
            reason_string: Some(why.to_owned()),
            ..Default::default()
        };
        s.send(Packet::Disconnect(Disconnect { code, properties }));
    }
    // Whatever was answered before closing (a SUBACK with failures, a PUBACK) still goes out.
    let _ = tokio::time::timeout(Duration::from_secs(2), s.flush()).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), s.io.shutdown()).await;
    if let (true, Some(will)) = (publish_will, will) {
        let p = Publish {
            dup: false,
            qos: will.qos,
            retain: will.retain,
            topic: will.topic,
            packet_id: None,
            payload: will.payload,
            properties: Properties::default(),
        };
        // MQTT 5 will delay: published after the delay (at most the session expiry), unless the
        // device has reconnected by then.
        let delay = will
            .properties
            .will_delay_interval
            .unwrap_or(0)
            .min(s.expiry_secs);
        let kind = topic::classify(s.dev.did.as_str(), &p.topic);
        if delay == 0 {
            apply_publish(&shared, &s.dev, &p, kind).await;
        } else {
            let (shared, dev) = (shared.clone(), s.dev.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(u64::from(delay))).await;
                if !shared.core.bus().is_attached(dev.did.as_str()) {
                    apply_publish(&shared, &dev, &p, kind).await;
                }
            });
        }
    }
    // A persistent session keeps its subscriptions and undelivered messages until it expires.
    let park = (s.expiry_secs > 0 && !matches!(close, Close::Kicked(_))).then(|| {
        let mut queue = std::collections::VecDeque::new();
        if let Some(r) = s.rare.take() {
            let Rare {
                inflight_out,
                pending_out,
                ..
            } = *r;
            queue.extend(inflight_out.into_values());
            queue.extend(pending_out.into_iter().map(|(m, _)| m));
        }
        while let Some(msg) = rx.try_recv() {
            if let ToSession::Publish(m) = msg {
                queue.push_back(m);
            }
        }
        ParkedSession {
            subscriptions: s
                .subs
                .iter()
                .map(|(f, q)| (f.to_owned(), q as u8))
                .collect(),
            queue,
            expires_at: shared
                .core
                .now_ms()
                .saturating_add(i64::from(s.expiry_secs).saturating_mul(1000)),
        }
    });
    let now = shared.core.clock().monotonic_ms();
    shared.carried.put(&did, s.limiter, s_limit(&s.dev), now);
    if shared.core.bus().detach(&did, &rx, park) {
        shared.core.set_presence(&did, false, why).await;
    }
    tracing::info!(%peer, did = %did, reason = why, "device disconnected");
    drop(guard);
}

/// The close for a packet the codec refused; one over the size limit is counted as such.
fn violation_of(e: &mqtt::DecodeError) -> Close {
    match e {
        mqtt::DecodeError::TooLarge { .. } => {
            count_refusal(limit::MQTT_PACKET_SIZE);
            Close::Violation(
                reason::PACKET_TOO_LARGE,
                "limit mqtt.packet_size exceeded: packet larger than the maximum packet size",
            )
        }
        // A mid-session CONNECT of another level is a second CONNECT: 0x84 exists only on CONNACK.
        mqtt::DecodeError::UnsupportedVersion(_) => {
            Close::Violation(reason::PROTOCOL_ERROR, "second CONNECT")
        }
        e => Close::Violation(e.reason_code(), "malformed or invalid packet"),
    }
}

/// Read until one whole packet is decoded; `Ok(None)` at EOF.
async fn read_packet<S: Conn>(
    io: &mut S,
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max: usize,
) -> Result<Option<Packet>, mqtt::DecodeError> {
    loop {
        if let Some(p) = mqtt::decode(buf, version, max)? {
            return Ok(Some(p));
        }
        // Refuse an oversized or malformed length before reading its body.
        mqtt::frame_len(buf, max)?;
        match io.read_some(buf).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
}

mod enhanced;
mod inbound;
mod opening;
mod serve;

use inbound::apply_publish;
use opening::open;
pub(crate) use opening::refuse_plain_connect;
#[cfg(test)]
mod tests;
