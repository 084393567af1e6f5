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
}

impl Rare {
    fn is_empty(&self) -> bool {
        self.aliases.is_empty()
            && self.awaiting_rel.is_empty()
            && self.inflight_out.is_empty()
            && self.pending_out.is_empty()
    }
}

/// Steps 1-3: CONNECT within the timeout, authentication, attach to the bus, CONNACK (queued in
/// the write buffer). `None` when the connection was refused or went away.
async fn open<S>(
    mut io: S,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    guard: ConnGuard,
) -> Option<Opened<S>>
where
    S: Conn,
{
    let max = shared.config.max_packet_size;
    let mut rbuf = BytesMut::new();
    // 1. CONNECT, within the connect timeout, as the very first packet.
    let connect = match tokio::time::timeout(
        shared.config.connect_timeout,
        read_packet(&mut io, &mut rbuf, ProtocolVersion::V311, max),
    )
    .await
    {
        Ok(Ok(Some(Packet::Connect(c)))) => c,
        Ok(Ok(Some(_))) => {
            tracing::debug!(%peer, "first packet was not CONNECT");
            return None;
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "bad CONNECT");
            if let mqtt::DecodeError::UnsupportedVersion(_) = e {
                let mut w = BytesMut::new();
                let ack = ConnAck {
                    session_present: false,
                    code: reason::v311::UNACCEPTABLE_PROTOCOL_VERSION,
                    properties: Properties::default(),
                };
                if mqtt::encode(&Packet::ConnAck(ack), ProtocolVersion::V311, &mut w).is_ok() {
                    let _ =
                        tokio::time::timeout(shared.config.write_timeout, io.write_all(&w)).await;
                }
            }
            return None;
        }
        Ok(Ok(None)) => return None,
        Err(_) => {
            tracing::debug!(%peer, "no CONNECT within the timeout");
            return None;
        }
    };
    let version = connect.protocol;
    let ip = peer.ip().to_string();
    let refuse = |code5: u8, code3: u8, why: Option<String>| -> BytesMut {
        let mut w = BytesMut::new();
        let code = if version == ProtocolVersion::V5 {
            code5
        } else {
            code3
        };
        let ack = ConnAck {
            session_present: false,
            code,
            properties: Properties {
                reason_string: why.filter(|_| version == ProtocolVersion::V5),
                ..Default::default()
            },
        };
        let _ = mqtt::encode(&Packet::ConnAck(ack), version, &mut w);
        w
    };
    // A connect-rate refusal: CONNACK 0x9F naming the limit (3.1.1: server unavailable).
    let limited = |r: rampart_core::limits::api::Refusal| -> BytesMut {
        tracing::info!(%peer, refusal = %r, "connection refused by a limit");
        refuse(
            reason::CONNECTION_RATE_EXCEEDED,
            reason::v311::SERVER_UNAVAILABLE,
            Some(r.to_string()),
        )
    };
    // 2. Authenticate (a device banned for a reconnect storm is refused before any work; the
    //    device's connect rates count authenticated attempts only).
    let pw = connect.password.as_deref();
    // Boxed here so that a connection still waiting for its CONNECT holds only a small future.
    let dev = match Box::pin(shared.core.authenticate_device(
        &connect.client_id,
        connect.username.as_deref(),
        pw,
        &ip,
    ))
    .await
    {
        Ok(d) => d,
        Err(r) => {
            let w = match r {
                ConnectRefusal::BadCredentials => refuse(
                    reason::BAD_USER_NAME_OR_PASSWORD,
                    reason::v311::BAD_USER_NAME_OR_PASSWORD,
                    None,
                ),
                ConnectRefusal::NotAuthorized => {
                    refuse(reason::NOT_AUTHORIZED, reason::v311::NOT_AUTHORIZED, None)
                }
                // The device's ban or connect rate.
                ConnectRefusal::Limited(r) => limited(*r),
            };
            let wrote = async {
                io.write_all(&w).await?;
                io.flush().await
            };
            let _ = tokio::time::timeout(shared.config.write_timeout, wrote).await;
            return None;
        }
    };
    let did = dev.did.as_str().to_owned();
    if let Some(will) = &connect.will {
        if topic::classify(&did, &will.topic).is_none_or(|t| t == DeviceTopic::Down) {
            let w = refuse(reason::NOT_AUTHORIZED, reason::v311::NOT_AUTHORIZED, None);
            let _ = tokio::time::timeout(shared.config.write_timeout, io.write_all(&w)).await;
            return None;
        }
    }
    // 3. Attach to the bus (an older session of this device is told to close; a parked persistent
    //    session is resumed unless the client asked for a clean start), then CONNACK.
    let expiry_secs = match version {
        ProtocolVersion::V5 => connect.properties.session_expiry_interval.unwrap_or(0),
        ProtocolVersion::V311 if connect.clean_start => 0,
        ProtocolVersion::V311 => u32::MAX,
    }
    .min(shared.config.max_session_expiry_secs);
    let rx = Arc::new(Inbox::default());
    let parked = shared.core.bus().attach(
        &did,
        rx.clone(),
        !connect.clean_start,
        rampart_core::now_ms(),
    );
    Box::pin(shared.core.set_presence(&did, true, "connect")).await;
    tracing::info!(%peer, did = %did, version = ?version, "device connected");

    let mut props = Properties::default();
    if version == ProtocolVersion::V5 {
        props.topic_alias_maximum = Some(shared.config.topic_alias_max);
        props.receive_maximum = Some(shared.config.max_inflight.max(1));
        props.maximum_packet_size = Some(shared.config.max_packet_size as u32);
        props.wildcard_subscription_available = Some(1);
        props.subscription_identifier_available = Some(0);
        props.shared_subscription_available = Some(0);
        props.maximum_qos = None;
        if connect.client_id.is_empty() {
            props.assigned_client_identifier = Some(did.clone());
        }
    }
    if version == ProtocolVersion::V5
        && connect.properties.session_expiry_interval.unwrap_or(0) > expiry_secs
    {
        props.session_expiry_interval = Some(expiry_secs);
    }
    let keep_alive = connect.keep_alive;
    let limit = s_limit(&dev);
    let limiter = shared
        .carried
        .take(&did)
        .unwrap_or_else(|| ReportBucket::new(limit));
    let client_max_packet = connect.properties.maximum_packet_size.unwrap_or(u32::MAX);
    let mut s = Session {
        io,
        rbuf,
        wbuf: BytesMut::new(),
        version,
        dev,
        shared: shared.clone(),
        subs: Subs::default(),
        rare: None,
        next_pid: 0,
        client_max_packet,
        expiry_secs,
        limiter,
        out_window: connect
            .properties
            .receive_maximum
            .unwrap_or(u16::MAX)
            .min(OUTBOUND_INFLIGHT_MAX),
        acks: Default::default(),
    };
    let session_present = parked.is_some();
    s.send(Packet::ConnAck(ConnAck {
        session_present,
        code: 0,
        properties: props,
    }));
    if let Some(p) = parked {
        for (filter, qos) in p.subscriptions {
            s.subs
                .insert(&filter, QoS::from_u8(qos).unwrap_or(QoS::AtLeastOnce));
        }
        for msg in p.queue {
            s.deliver(msg, false);
        }
    }
    Some(Opened {
        session: s,
        rx,
        will: connect.will.map(Box::new),
        keep_alive,
        peer: Peer::from(peer),
        deadline: (keep_alive > 0)
            .then(|| Instant::now() + Duration::from_millis(u64::from(keep_alive) * 1500)),
        guard,
    })
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

impl<S> Opened<S> {
    /// Set the session aside: its socket, and the rest without the socket or the (empty) buffers.
    fn freeze(self) -> (S, Idle) {
        let Opened {
            session,
            rx,
            will,
            keep_alive,
            peer,
            deadline,
            guard,
        } = self;
        let Session {
            io,
            rbuf,
            wbuf,
            version,
            dev,
            shared,
            subs,
            rare,
            next_pid,
            expiry_secs,
            limiter,
            out_window,
            acks,
            client_max_packet,
        } = session;
        let carry = (!rbuf.is_empty() || !wbuf.is_empty() || !acks.is_empty())
            .then(|| Box::new(Carry { rbuf, wbuf, acks }));
        // `shared` is dropped: the pool hands its own back at resume.
        drop(shared);
        let idle = Idle {
            version,
            dev,
            subs,
            rare,
            next_pid,
            expiry_secs,
            limiter,
            out_window,
            client_max_packet,
            rx,
            will,
            keep_alive,
            peer,
            deadline,
            guard,
            carry,
        };
        (io, idle)
    }
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
    rx: Arc<Inbox>,
    will: Option<Box<rampart_proto::mqtt::Will>>,
    keep_alive: u16,
    peer: Peer,
    deadline: Option<Instant>,
    guard: ConnGuard,
    carry: Option<Box<Carry>>,
}

impl Idle {
    pub(crate) fn inbox(&self) -> &Inbox {
        &self.rx
    }

    pub(crate) fn deadline(&self) -> Option<std::time::Instant> {
        self.deadline.map(Instant::into_std)
    }

    /// A packet arrived: the keepalive starts again.
    pub(crate) fn touch(&mut self) {
        let ka = self.keep_alive;
        self.deadline =
            (ka > 0).then(|| Instant::now() + Duration::from_millis(u64::from(ka) * 1500));
    }

    fn carry(&mut self) -> &mut Carry {
        self.carry.get_or_insert_with(|| {
            Box::new(Carry {
                rbuf: BytesMut::new(),
                wbuf: BytesMut::new(),
                acks: Default::default(),
            })
        })
    }

    /// Bytes read from the socket while parked, for the session to decode when it resumes.
    pub(crate) fn push_input(&mut self, bytes: &[u8]) {
        self.carry().rbuf.extend_from_slice(bytes);
    }

    /// Bytes the session must write first when it resumes.
    pub(crate) fn push_output(&mut self, bytes: &[u8]) {
        self.carry().wbuf.extend_from_slice(bytes);
    }

    /// The session again, over `io`.
    fn thaw<T>(self, io: T, shared: Arc<Shared>) -> Opened<T> {
        let Idle {
            version,
            dev,
            subs,
            rare,
            next_pid,
            expiry_secs,
            limiter,
            out_window,
            client_max_packet,
            rx,
            will,
            keep_alive,
            peer,
            deadline,
            guard,
            carry,
        } = self;
        let (rbuf, wbuf, acks) = match carry {
            Some(c) => {
                let Carry { rbuf, wbuf, acks } = *c;
                (rbuf, wbuf, acks)
            }
            None => Default::default(),
        };
        Opened {
            session: Session {
                io,
                rbuf,
                wbuf,
                version,
                dev,
                shared,
                subs,
                rare,
                next_pid,
                expiry_secs,
                limiter,
                out_window,
                acks,
                client_max_packet,
            },
            rx,
            will,
            keep_alive,
            peer,
            deadline,
            guard,
        }
    }
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
            expires_at: rampart_core::now_ms()
                .saturating_add(i64::from(s.expiry_secs).saturating_mul(1000)),
        }
    });
    shared.carried.put(&did, s.limiter, s_limit(&s.dev));
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

impl<S: Conn> Session<S> {
    fn send(&mut self, p: Packet) {
        // Encode straight into the write buffer (the encoder writes nothing on error); a packet
        // over the client's maximum size is cut off again.
        let start = self.wbuf.len();
        match mqtt::encode(&p, self.version, &mut self.wbuf) {
            Ok(()) if self.wbuf.len() - start <= self.client_max_packet as usize => {}
            Ok(()) => {
                self.wbuf.truncate(start);
                tracing::debug!("dropping a packet larger than the client's maximum");
            }
            Err(e @ mqtt::EncodeError::Reason { .. }) => {
                // A reason code the packet type may not carry is a bug in this crate: the codec
                // refused it, so the peer gets nothing rather than a protocol error.
                tracing::error!(error = %e, "packet with an invalid reason code not sent");
                metrics::counter!(rampart_core::telemetry::MQTT_ENCODE_REFUSED).increment(1);
                debug_assert!(false, "{e}");
            }
            Err(e) => tracing::warn!(error = %e, "encode failed"),
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.wbuf.is_empty() {
            self.io.write_all(&self.wbuf).await?;
            self.io.flush().await?;
            // Nothing is kept allocated between writes.
            self.wbuf = BytesMut::new();
        }
        Ok(())
    }

    fn v5(&self) -> bool {
        self.version == ProtocolVersion::V5
    }

    /// Serve the connection until it closes (or, [`Close::Park`], has been idle long enough to
    /// wait in the idle pool). `deadline` is the keepalive deadline, kept up to date.
    async fn run_loop(
        &mut self,
        keep_alive: u16,
        deadline: &mut Option<Instant>,
        rx: &Inbox,
        stop: &mut watch::Receiver<bool>,
    ) -> Close {
        // MQTT: the server closes after 1.5 keepalive periods without a packet.
        let idle = (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
        let max = self.shared.config.max_packet_size;
        let park_after = match (&self.shared.idle, self.shared.config.park_idle_after) {
            (Some(_), Some(after)) if self.io.parkable() => Some(after),
            _ => None,
        };
        let mut active_at = Instant::now();
        loop {
            // Drain every whole packet already buffered (while reports in flight leave room).
            while self.acks.len() < INBOUND_UNCOMMITTED_MAX {
                // Bind the packet first so the decode result is not kept across the await.
                let p = match mqtt::decode(&mut self.rbuf, self.version, max) {
                    Ok(Some(p)) => p,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(did = %self.dev.did, error = %e, "decode error");
                        return violation_of(&e);
                    }
                };
                if let Some(close) = Box::pin(self.handle(p)).await {
                    return close;
                }
            }
            match tokio::time::timeout(self.shared.config.write_timeout, self.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Close::Gone,
                Err(_) => {
                    metrics::counter!(rampart_core::telemetry::SLOW_PEER_DISCONNECTS, "listener" => "mqtt")
                        .increment(1);
                    tracing::info!(did = %self.dev.did, "peer stopped reading: closing");
                    return Close::SlowPeer;
                }
            }
            // Between packets the read buffer holds nothing (and no allocation).
            if self.rbuf.is_empty() {
                self.rbuf = BytesMut::new();
            }
            if let Err(e) = mqtt::frame_len(&self.rbuf, max) {
                return violation_of(&e);
            }
            // Idle with nothing buffered or in flight: after a while, wait in the idle pool.
            let park_at = park_after
                .filter(|_| self.rbuf.is_empty() && self.wbuf.is_empty() && self.acks.is_empty())
                .map(|after| active_at + after);
            let wake_at = match (*deadline, park_at) {
                (Some(d), Some(p)) => Some(d.min(p)),
                (d, p) => d.or(p),
            };
            let sleep = async {
                match wake_at {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let reading = self.acks.len() < INBOUND_UNCOMMITTED_MAX;
            let committing = self.acks.front().is_some_and(|a| a.receipt.is_some());
            tokio::select! {
                r = self.io.read_some(&mut self.rbuf), if reading => match r {
                    Ok(0) | Err(_) => return Close::Gone,
                    Ok(_) => {
                        active_at = Instant::now();
                        *deadline = idle.map(|d| active_at + d);
                    }
                },
                r = async {
                    match self.acks.front_mut().and_then(|a| a.receipt.as_mut()) {
                        Some(receipt) => receipt.await,
                        None => std::future::pending().await,
                    }
                }, if committing => {
                    self.committed(r);
                    active_at = Instant::now();
                    // Time spent waiting on our own storage is not the device's silence.
                    if !reading {
                        *deadline = idle.map(|d| active_at + d);
                    }
                }
                msg = rx.recv() => {
                    active_at = Instant::now();
                    match msg {
                        ToSession::Publish(msg) => self.deliver(msg, false),
                        ToSession::Kick(r) => return Close::Kicked(r),
                    }
                },
                _ = sleep => {
                    if deadline.is_some_and(|d| d <= Instant::now()) {
                        return Close::KeepAlive;
                    }
                    return Close::Park;
                }
                _ = stop.changed() => return Close::Shutdown,
            }
        }
    }

    /// Send a message to the device if one of its subscriptions matches.
    fn deliver(&mut self, msg: Message, retain: bool) {
        let Some(granted) = self
            .subs
            .iter()
            .filter(|(f, _)| topic::matches(f, &msg.topic))
            .map(|(_, q)| q)
            .max()
        else {
            tracing::debug!(did = %self.dev.did, topic = %msg.topic, "no subscription; message dropped");
            return;
        };
        if granted != QoS::AtMostOnce && self.inflight_len() >= usize::from(self.out_window) {
            // The client's receive maximum is reached: hold the message until a PUBACK frees a slot.
            let pending = &mut self.rare().pending_out;
            if pending.len() >= OUTBOUND_PENDING_MAX {
                pending.pop_front();
                tracing::warn!(did = %self.dev.did, "outbound queue full; oldest message dropped");
            }
            self.rare().pending_out.push_back((msg, retain));
            return;
        }
        self.send_publish(msg, retain, granted);
    }

    /// Send now (expired messages are dropped; MQTT 5 gets the remaining expiry).
    fn send_publish(&mut self, msg: Message, retain: bool, qos: QoS) {
        let remaining = msg.remaining_secs(rampart_core::now_ms());
        if remaining == Some(0) {
            tracing::debug!(did = %self.dev.did, topic = %msg.topic, "message expired before delivery");
            return;
        }
        let packet_id = (qos != QoS::AtMostOnce).then(|| {
            let mut next = self.next_pid;
            let inflight = &mut self.rare.get_or_insert_with(Default::default).inflight_out;
            let pid = loop {
                next = next.wrapping_add(1).max(1);
                if !inflight.contains_key(&next) {
                    break next;
                }
            };
            inflight.insert(pid, msg.clone());
            self.next_pid = pid;
            pid
        });
        self.send(Packet::Publish(Publish {
            dup: false,
            qos,
            retain,
            topic: msg.topic,
            packet_id,
            payload: msg.payload,
            properties: Properties {
                message_expiry_interval: remaining,
                ..Default::default()
            },
        }));
    }

    /// A PUBACK freed an inflight slot: send what waited for it.
    fn release_pending(&mut self) {
        while self.inflight_len() < usize::from(self.out_window) {
            let Some((msg, retain)) = self.rare.as_mut().and_then(|r| r.pending_out.pop_front())
            else {
                break;
            };
            self.send_publish(msg, retain, QoS::AtLeastOnce);
        }
        self.trim_rare();
    }

    /// The rarely used state, allocated on first use.
    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Default::default)
    }

    /// Give the rarely used state's memory back once it is empty.
    fn trim_rare(&mut self) {
        if self.rare.as_ref().is_some_and(|r| r.is_empty()) {
            self.rare = None;
        }
    }

    /// Inbound QoS 1 publishes not yet acknowledged and QoS 2 ones awaiting their PUBREL.
    fn inbound_unacked(&self) -> usize {
        self.acks.len() + self.rare.as_ref().map_or(0, |r| r.awaiting_rel.len())
    }

    fn inflight_len(&self) -> usize {
        self.rare.as_ref().map_or(0, |r| r.inflight_out.len())
    }

    /// Answer a QoS 1 publish now, or queue the answer behind reports still being committed.
    fn ack_in_order(&mut self, packet_id: u16, code: u8, why: Option<String>) {
        if self.acks.is_empty() {
            let r = self.pubresp(packet_id, code, why.as_deref());
            self.send(Packet::PubAck(r));
        } else {
            self.acks.push_back(PendingAck {
                packet_id,
                receipt: None,
                code,
                why,
            });
        }
    }

    /// Answer a refused QoS 1 or 2 publish: a PUBACK waits its turn behind the reports still
    /// being committed (PUBACKs go out in PUBLISH order); a PUBREC goes at once, since QoS 2
    /// answers never wait for a commit and so are always in order among themselves.
    fn refuse_publish(&mut self, packet_id: u16, qos: QoS, code: u8, why: String) {
        if qos == QoS::ExactlyOnce {
            let r = self.pubresp(packet_id, code, Some(&why));
            self.send(Packet::PubRec(r));
        } else {
            self.ack_in_order(packet_id, code, Some(why));
        }
    }

    /// The oldest report in flight was committed (or failed): acknowledge it and every answer
    /// that was waiting behind it, up to the next report still in flight.
    fn committed(&mut self, res: Result<(), String>) {
        if let Some(front) = self.acks.front_mut() {
            front.receipt = None;
            if let Err(e) = res {
                tracing::error!(did = %self.dev.did, error = %e, "report not stored");
                front.code = reason::IMPLEMENTATION_SPECIFIC_ERROR;
                front.why = Some("server error".into());
            }
        }
        while self.acks.front().is_some_and(|a| a.receipt.is_none()) {
            let Some(a) = self.acks.pop_front() else {
                break;
            };
            let r = self.pubresp(a.packet_id, a.code, a.why.as_deref());
            self.send(Packet::PubAck(r));
        }
        if self.acks.is_empty() && self.acks.capacity() > 0 {
            self.acks = Default::default();
        }
    }

    /// Wait for every report in flight and queue all their answers.
    async fn settle_acks(&mut self) {
        while let Some(front) = self.acks.front_mut() {
            let res = match front.receipt.as_mut() {
                Some(r) => r.await,
                None => Ok(()),
            };
            self.committed(res);
        }
    }

    fn pubresp(&self, packet_id: u16, code: u8, why: Option<&str>) -> PubResp {
        let mut properties = Properties::default();
        if self.v5() {
            properties.reason_string = why.map(|w| w.chars().take(200).collect());
        }
        PubResp {
            packet_id,
            code: if self.v5() { code } else { 0 },
            properties,
        }
    }

    async fn handle(&mut self, p: Packet) -> Option<Close> {
        match p {
            Packet::Publish(mut p) => {
                // Topic aliases (MQTT 5).
                if let Some(alias) = p.properties.topic_alias {
                    if alias == 0 || alias > self.shared.config.topic_alias_max {
                        return Some(Close::Violation(
                            reason::TOPIC_ALIAS_INVALID,
                            "topic alias out of range",
                        ));
                    }
                    if p.topic.is_empty() {
                        match self.rare.as_ref().and_then(|r| r.aliases.get(&alias)) {
                            Some(t) => p.topic = t.clone(),
                            None => {
                                return Some(Close::Violation(
                                    reason::PROTOCOL_ERROR,
                                    "unknown topic alias",
                                ))
                            }
                        }
                    } else {
                        self.rare().aliases.insert(alias, p.topic.clone());
                    }
                } else if p.topic.is_empty() {
                    return Some(Close::Violation(reason::PROTOCOL_ERROR, "empty topic"));
                }
                if p.topic.len() > self.shared.config.max_topic_len {
                    count_refusal(limit::MQTT_TOPIC_LENGTH);
                    return Some(Close::Violation(
                        reason::TOPIC_NAME_INVALID,
                        "limit mqtt.topic_length exceeded: topic longer than the maximum",
                    ));
                }
                let did = self.dev.did.as_str();
                let kind = match topic::classify(did, &p.topic) {
                    None | Some(DeviceTopic::Down) => {
                        tracing::info!(did, topic = %p.topic, "publish outside the device namespace refused");
                        metrics::counter!(rampart_core::telemetry::MQTT_ACL_DENIED).increment(1);
                        if let (Some(pid), true) = (p.packet_id, self.v5()) {
                            self.refuse_publish(
                                pid,
                                p.qos,
                                reason::NOT_AUTHORIZED,
                                "topic outside dev/{did}/".into(),
                            );
                        }
                        return Some(Close::Violation(
                            reason::NOT_AUTHORIZED,
                            "publish outside the device namespace",
                        ));
                    }
                    Some(kind) => kind,
                };
                let per_min = s_limit(&self.dev);
                let abuse_secs = self.shared.core.connect_limits().config().report_abuse_secs;
                match self
                    .limiter
                    .check(Instant::now().into_std(), per_min, abuse_secs)
                {
                    Verdict::Allow => {}
                    Verdict::Abuse => {
                        count_refusal(limit::MQTT_REPORT_ABUSE);
                        tracing::info!(did, "sustained publishing over the report rate: closing");
                        return Some(Close::Violation(
                            reason::MESSAGE_RATE_TOO_HIGH,
                            "limit mqtt.report_abuse exceeded: publishes kept coming at more than \
                             twice the product's report rate",
                        ));
                    }
                    Verdict::Refuse => {
                        count_refusal(limit::MQTT_REPORT_RATE);
                        metrics::counter!(rampart_core::telemetry::REPORTS_RATE_LIMITED)
                            .increment(1);
                        tracing::debug!(
                            did,
                            "publish over the product's report rate limit dropped"
                        );
                        if let Some(pid) = p.packet_id {
                            let why = format!(
                                "limit {} exceeded: {per_min} messages per minute, \
                                 burst {}; full again in {} ms",
                                limit::MQTT_REPORT_RATE,
                                capacity(per_min) as u32,
                                self.limiter.full_in_ms(per_min)
                            );
                            // 0x97, not 0x96: message-rate-too-high is a DISCONNECT code only.
                            self.refuse_publish(pid, p.qos, reason::QUOTA_EXCEEDED, why);
                        }
                        return None;
                    }
                }
                // MQTT 5: no more unacknowledged QoS > 0 publishes than the receive maximum.
                if p.qos == QoS::AtLeastOnce
                    && self.v5()
                    && self.inbound_unacked() >= usize::from(self.shared.config.max_inflight)
                {
                    count_refusal(limit::MQTT_INFLIGHT);
                    return Some(Close::Violation(
                        reason::RECEIVE_MAXIMUM_EXCEEDED,
                        "limit mqtt.inflight exceeded: more unacknowledged publishes than the \
                         receive maximum",
                    ));
                }
                match (p.qos, p.packet_id) {
                    (QoS::AtMostOnce, _) => {
                        self.route_inbound(&p, kind).await;
                    }
                    (QoS::AtLeastOnce, Some(pid)) => {
                        if kind == DeviceTopic::Report {
                            // Reports are acknowledged when committed; reading goes on meanwhile.
                            match self
                                .shared
                                .core
                                .submit_report(&self.dev, &p.payload, true)
                                .await
                            {
                                Ok(receipt) => self.acks.push_back(PendingAck {
                                    packet_id: pid,
                                    receipt: Some(receipt),
                                    code: reason::SUCCESS,
                                    why: None,
                                }),
                                Err(e) => {
                                    let (code, why) = refusal_of(self.dev.did.as_str(), e);
                                    self.ack_in_order(pid, code, why);
                                }
                            }
                        } else {
                            let (code, why) = self.route_inbound(&p, kind).await;
                            self.ack_in_order(pid, code, why);
                        }
                    }
                    (QoS::ExactlyOnce, Some(pid)) => {
                        // Deliver once on first receipt; a duplicate while awaiting PUBREL is only acknowledged.
                        let awaiting = self.rare.as_ref().map(|r| &r.awaiting_rel);
                        let (code, why) = if awaiting.is_some_and(|a| a.contains(&pid)) {
                            (reason::SUCCESS, None)
                        } else {
                            // 3.1.1 has no receive maximum: only QoS 2 publishes count there.
                            let unacked = if self.v5() {
                                self.inbound_unacked()
                            } else {
                                awaiting.map_or(0, |a| a.len())
                            };
                            if unacked >= usize::from(self.shared.config.max_inflight) {
                                count_refusal(limit::MQTT_INFLIGHT);
                                return Some(Close::Violation(
                                    reason::RECEIVE_MAXIMUM_EXCEEDED,
                                    "limit mqtt.inflight exceeded: too many QoS 2 messages \
                                     awaiting PUBREL",
                                ));
                            }
                            let (code, why) = self.route_inbound(&p, kind).await;
                            if code < 0x80 {
                                self.rare().awaiting_rel.insert(pid);
                            }
                            (code, why)
                        };
                        let r = self.pubresp(pid, code, why.as_deref());
                        self.send(Packet::PubRec(r));
                    }
                    _ => {
                        return Some(Close::Violation(
                            reason::PROTOCOL_ERROR,
                            "missing packet id",
                        ))
                    }
                }
                None
            }
            Packet::PubRel(r) => {
                let code = if self
                    .rare
                    .as_mut()
                    .is_some_and(|x| x.awaiting_rel.remove(&r.packet_id))
                {
                    0
                } else {
                    reason::PACKET_IDENTIFIER_NOT_FOUND
                };
                self.trim_rare();
                let resp = self.pubresp(r.packet_id, code, None);
                self.send(Packet::PubComp(resp));
                None
            }
            Packet::PubAck(r) => {
                if let Some(x) = self.rare.as_mut() {
                    x.inflight_out.remove(&r.packet_id);
                }
                self.release_pending();
                None
            }
            // We never send QoS 2; answer a stray PUBREC so the peer does not hang.
            Packet::PubRec(r) => {
                if let Some(x) = self.rare.as_mut() {
                    x.inflight_out.remove(&r.packet_id);
                }
                self.trim_rare();
                let resp = self.pubresp(r.packet_id, reason::PACKET_IDENTIFIER_NOT_FOUND, None);
                self.send(Packet::PubRel(resp));
                None
            }
            Packet::PubComp(_) => None,
            Packet::Subscribe(sub) => {
                let did = self.dev.did.as_str().to_owned();
                let mut codes = Vec::with_capacity(sub.filters.len().min(64));
                let mut denied = false;
                let mut new_retained = Vec::new();
                for f in &sub.filters {
                    // Length first: a filter of tens of thousands of levels costs nothing more.
                    let refused = if f.filter.len() > self.shared.config.max_topic_len {
                        count_refusal(limit::MQTT_TOPIC_LENGTH);
                        Some(reason::TOPIC_FILTER_INVALID)
                    } else if !topic::filter_allowed(&did, &f.filter) {
                        denied = true;
                        Some(reason::NOT_AUTHORIZED)
                    } else if !self.subs.contains(&f.filter)
                        && self.subs.len() >= self.shared.config.max_subscriptions
                    {
                        count_refusal(limit::MQTT_SUBSCRIPTIONS);
                        Some(reason::QUOTA_EXCEEDED)
                    } else {
                        None
                    };
                    if let Some(code) = refused {
                        codes.push(if self.v5() {
                            code
                        } else {
                            reason::v311::SUBACK_FAILURE
                        });
                        continue;
                    }
                    let granted = f.qos.min(QoS::AtLeastOnce);
                    self.subs.insert(&f.filter, granted);
                    codes.push(granted as u8);
                    if f.retain_handling != 2 {
                        new_retained.push(f.filter.clone());
                    }
                }
                self.send(Packet::SubAck(SubAck {
                    packet_id: sub.packet_id,
                    codes,
                    properties: Properties::default(),
                }));
                if denied {
                    metrics::counter!(rampart_core::telemetry::MQTT_ACL_DENIED).increment(1);
                    return Some(Close::Violation(
                        reason::NOT_AUTHORIZED,
                        "subscription outside the device namespace",
                    ));
                }
                for m in self.shared.retained.matching(&new_retained) {
                    self.deliver(m, true);
                }
                None
            }
            Packet::Unsubscribe(u) => {
                let codes = u
                    .filters
                    .iter()
                    .map(|f| {
                        if self.subs.remove(f).is_some() {
                            0
                        } else {
                            reason::NO_SUBSCRIPTION_EXISTED
                        }
                    })
                    .collect();
                self.send(Packet::UnsubAck(UnsubAck {
                    packet_id: u.packet_id,
                    codes,
                    properties: Properties::default(),
                }));
                None
            }
            Packet::PingReq => {
                self.send(Packet::PingResp);
                None
            }
            Packet::Disconnect(d) => {
                if let Some(e) = d.properties.session_expiry_interval {
                    self.expiry_secs = e.min(self.shared.config.max_session_expiry_secs);
                }
                Some(Close::Clean {
                    with_will: d.code == reason::DISCONNECT_WITH_WILL,
                })
            }
            Packet::Connect(_) => Some(Close::Violation(reason::PROTOCOL_ERROR, "second CONNECT")),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                Some(Close::Violation(
                    reason::PROTOCOL_ERROR,
                    "server-only packet from a client",
                ))
            }
            Packet::Auth(_) => Some(Close::Violation(
                reason::PROTOCOL_ERROR,
                "enhanced authentication is not supported",
            )),
        }
    }

    /// Act on a publish inside the device's namespace; returns the reason code and string for its ack.
    async fn route_inbound(&mut self, p: &Publish, kind: DeviceTopic) -> (u8, Option<String>) {
        let answer = apply_publish(&self.shared, &self.dev, p, Some(kind)).await;
        // The device's own subscriptions to its other subtopics.
        if answer.0 == reason::SUCCESS && matches!(kind, DeviceTopic::Other | DeviceTopic::Raw) {
            self.deliver(message_of(p), false);
        }
        answer
    }
}

/// What a device publish means to the cloud: a report is validated and stored, an ack resolves its
/// command, a retained message is kept. Returns the reason code (and string) for the ack. Also used
/// for wills, which may fire after the session is gone. `kind` is the topic's class, already known
/// to the caller.
async fn apply_publish(
    shared: &Shared,
    dev: &DeviceAuth,
    p: &Publish,
    kind: Option<DeviceTopic>,
) -> (u8, Option<String>) {
    let did = dev.did.as_str();
    // A retained publish past a cap is refused as a whole, before it is forwarded anywhere.
    let retain = p.retain && matches!(kind, Some(DeviceTopic::Other | DeviceTopic::Raw));
    let caps = shared.core.connect_limits().config();
    let over_cap = |why: String| {
        count_refusal(retained::RETAINED);
        tracing::debug!(did, topic = %p.topic, "retained publish refused: {why}");
        (reason::QUOTA_EXCEEDED, Some(why))
    };
    if retain {
        if let Err(why) = shared.retained.admit(did, &p.topic, p.payload.len(), caps) {
            return over_cap(why);
        }
    }
    let result = match kind {
        Some(DeviceTopic::Report) => shared
            .core
            .ingest_report(dev, &p.payload, p.qos != QoS::AtMostOnce)
            .await
            .map(|_| ()),
        Some(DeviceTopic::Ack) => shared.core.ingest_ack(dev, &p.payload).await,
        Some(DeviceTopic::Raw) => shared.core.ingest_raw(dev, &p.payload).await,
        _ => Ok(()),
    };
    if let Err(e) = result {
        return refusal_of(did, e);
    }
    if retain {
        // Checked again as it is kept: another device may have taken the node's last room.
        if let Err(why) = shared.retained.put(did, &p.topic, message_of(p), caps) {
            return over_cap(why);
        }
    }
    (reason::SUCCESS, None)
}

/// The ack code (and reason string) for a publish the core refused.
fn refusal_of(did: &str, e: CoreError) -> (u8, Option<String>) {
    match e {
        CoreError::Model(e) => {
            tracing::debug!(did, error = %e, "invalid payload refused");
            (reason::PAYLOAD_FORMAT_INVALID, Some(e.to_string()))
        }
        e => {
            tracing::error!(did, error = %e, "ingest failed");
            (
                reason::IMPLEMENTATION_SPECIFIC_ERROR,
                Some("server error".into()),
            )
        }
    }
}

/// A device publish as a message to deliver, with its MQTT 5 message expiry.
fn message_of(p: &Publish) -> Message {
    Message {
        topic: p.topic.clone(),
        payload: p.payload.clone(),
        expires_at: p
            .properties
            .message_expiry_interval
            .map(|secs| rampart_core::now_ms().saturating_add(i64::from(secs) * 1000)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The session future is allocated once per connection and lives as long as the connection, so
    /// its size is memory per idle device. Rare, large steps are boxed to keep it small.
    #[tokio::test]
    async fn session_future_stays_small() {
        let dir = tempfile::tempdir().unwrap();
        let store = rampart_store::Store::open_sqlite(&dir.path().join("t.db"))
            .await
            .unwrap();
        let core = rampart_core::Core::new(
            store,
            rampart_core::secret::MasterKey::from_bytes(&[1; 32]),
            Default::default(),
        );
        let shared = Arc::new(Shared {
            core,
            config: crate::GatewayConfig::default(),
            retained: Default::default(),
            idle: None,
            stop: watch::channel(false).1,
            carried: Default::default(),
        });
        let (a, _b) = tokio::io::duplex(64);
        let (_tx, rx) = watch::channel(false);
        let opening = open(
            a,
            "127.0.0.1:1".parse().unwrap(),
            &shared,
            ConnGuard::detached(),
        );
        println!("opening future: {} bytes", std::mem::size_of_val(&opening));
        drop(opening);
        let (a, _b) = tokio::io::duplex(64);
        let fut = run(
            a,
            "127.0.0.1:1".parse().unwrap(),
            shared,
            rx,
            ConnGuard::detached(),
        );
        let size = std::mem::size_of_val(&fut);
        println!(
            "Opened<TcpStream>: {} bytes; Close: {}",
            std::mem::size_of::<Opened<tokio::net::TcpStream>>(),
            std::mem::size_of::<Close>()
        );
        println!(
            "session future: {size} bytes; Session<TcpStream>: {} bytes; TlsStream: {} bytes; Packet: {} bytes",
            std::mem::size_of::<Session<tokio::net::TcpStream>>(),
            std::mem::size_of::<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>(),
            std::mem::size_of::<Packet>()
        );
        let idle = std::mem::size_of::<Idle>();
        println!("Idle: {idle} bytes");
        // A parked session is this one box (plus its inbox and the pool's slot and timer): it
        // must stay within the allocator's 160-byte size class (jemalloc has one; the next is 192).
        assert!(idle <= 160, "Idle is {idle} bytes");
        // An active session (TLS, or plain before it parks) holds this future; a parked one holds
        // only its `Idle` box. ~1,050 before the idle pool and pipelined acks, 1,616 with them,
        // 1,280 once the rarely used state moved into its own box.
        assert!(size <= 1400, "session future is {size} bytes");
    }
}
