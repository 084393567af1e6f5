//! Opening a session: CONNECT within the timeout, authentication, attaching to the bus, CONNACK;
//! and parking: a session set aside in the idle pool without its socket or buffers, and thawed
//! back into a task.

use super::*;

/// Steps 1-3: CONNECT within the timeout, authentication, attach to the bus, CONNACK (queued in
/// the write buffer). `None` when the connection was refused or went away.
pub(super) async fn open<S>(
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
    // (Core logged the refusal and counted it.)
    let limited = |r: rampart_core::limits::api::Refusal| -> BytesMut {
        refuse(
            reason::CONNECTION_RATE_EXCEEDED,
            reason::v311::SERVER_UNAVAILABLE,
            Some(r.to_string()),
        )
    };
    // A secure session is bound to the did of its frame 0: a CONNECT naming another device (in
    // its client id or user name) is not authorised.
    if let Some(bound) = io.bound_did() {
        let named = connect
            .username
            .as_deref()
            .and_then(|u| u.split('|').next());
        if connect.client_id != bound || named.is_some_and(|d| d != bound) {
            let why = rampart_core::auth_refusal::RefusalReason::ClientIdMismatch;
            rampart_core::auth_refusal::record(shared.listener, &why, bound, Some(&ip));
            let w = refuse(reason::NOT_AUTHORIZED, reason::v311::NOT_AUTHORIZED, None);
            let wrote = async {
                io.write_all(&w).await?;
                io.flush().await
            };
            let _ = tokio::time::timeout(shared.config.write_timeout, wrote).await;
            return None;
        }
    }
    // 2. Authenticate (a device banned for a reconnect storm is refused before any work; the
    //    device's connect rates count authenticated attempts only). A CONNECT naming an
    //    Authentication Method (MQTT 5) goes through its AUTH exchange instead of a password.
    let enhanced = match Box::pin(enhanced::exchange(
        &mut io, &mut rbuf, &connect, peer, shared,
    ))
    .await
    {
        enhanced::Exchange::NotAsked => None,
        enhanced::Exchange::Accepted(d) => Some(d),
        enhanced::Exchange::Refused => return None,
    };
    let is_enhanced = enhanced.is_some();
    let pw = connect.password.as_deref();
    // A client certificate stands for the password: a CONNECT with neither is refused by the
    // password checks.
    let cert = (enhanced.is_none() && pw.is_none())
        .then(|| io.peer_certificate())
        .flatten();
    // Boxed here so that a connection still waiting for its CONNECT holds only a small future.
    let authenticated = match (enhanced, cert) {
        (Some(d), _) => Ok(d),
        (None, Some(cert)) => {
            Box::pin(shared.core.authenticate_certificate(
                &connect.client_id,
                &cert,
                &ip,
                shared.listener,
            ))
            .await
        }
        (None, None) => {
            Box::pin(shared.core.authenticate_device(
                &connect.client_id,
                connect.username.as_deref(),
                pw,
                &ip,
                shared.listener,
                shared.listener == "mqtt_tls",
            ))
            .await
        }
    };
    let dev = match authenticated {
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
    let parked =
        shared
            .core
            .bus()
            .attach(&did, rx.clone(), !connect.clean_start, shared.core.now_ms());
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
        if is_enhanced {
            props.authentication_method = connect.properties.authentication_method.clone();
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
        .take(&did, shared.core.clock().monotonic_ms())
        .unwrap_or_else(|| ReportBucket::new(limit, shared.core.clock().monotonic_ms()));
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
        enhanced: is_enhanced,
    };
    let session_present = parked.is_some();
    s.send(Packet::ConnAck(ConnAck {
        session_present,
        code: 0,
        properties: props,
    }));
    let mut queue = std::collections::VecDeque::new();
    if let Some(p) = parked {
        for (filter, qos) in p.subscriptions {
            s.subs
                .insert(&filter, QoS::from_u8(qos).unwrap_or(QoS::AtLeastOnce));
        }
        queue = p.queue;
    }
    // The parked session's commands are recorded as sent; then what the device's shadow still
    // wants of it goes after them.
    let desired = Box::pin(shared.core.device_opened(&did, queue.make_contiguous())).await;
    for msg in queue {
        s.deliver(msg, false);
    }
    if let Some(m) = desired {
        s.offer_desired(m);
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

impl<S> Opened<S> {
    /// Set the session aside: its socket, and the rest without the socket or the (empty) buffers.
    pub(super) fn freeze(self) -> (S, Idle) {
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
            enhanced,
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
            enhanced,
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

    pub(super) fn carry(&mut self) -> &mut Carry {
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
    pub(super) fn thaw<T>(self, io: T, shared: Arc<Shared>) -> Opened<T> {
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
            enhanced,
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
                enhanced,
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

/// A plaintext MQTT CONNECT on the TLS listener: read it, answer "not authorised" (MQTT 5 with a
/// reason string naming the mismatch), log it and count it. The credentials it carried crossed
/// the network in clear; they are not looked at.
pub(crate) async fn refuse_plain_connect(
    mut sock: tokio::net::TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    deadline: Instant,
) {
    metrics::counter!(rampart_core::telemetry::WRONG_PROTOCOL, "listener" => shared.listener)
        .increment(1);
    tracing::info!(%peer, listener = %shared.listener,
        "plaintext MQTT CONNECT on the TLS listener: refused; connect with TLS, or to the plain MQTT listener");
    let mut rbuf = BytesMut::new();
    let max = shared.config.max_packet_size;
    let read = read_packet(&mut sock, &mut rbuf, ProtocolVersion::V311, max);
    let Ok(Ok(Some(Packet::Connect(c)))) = tokio::time::timeout_at(deadline, read).await else {
        return;
    };
    let (code, reason_string) = match c.protocol {
        ProtocolVersion::V5 => (
            reason::NOT_AUTHORIZED,
            Some("this port speaks MQTT over TLS: connect with TLS".to_owned()),
        ),
        ProtocolVersion::V311 => (reason::v311::NOT_AUTHORIZED, None),
    };
    let ack = ConnAck {
        session_present: false,
        code,
        properties: Properties {
            reason_string,
            ..Default::default()
        },
    };
    let mut w = BytesMut::new();
    if mqtt::encode(&Packet::ConnAck(ack), c.protocol, &mut w).is_ok() {
        let wrote = async {
            sock.write_all(&w).await?;
            sock.flush().await
        };
        let _ = tokio::time::timeout(shared.config.write_timeout, wrote).await;
    }
}

impl<S: Conn> Session<S> {
    /// Deliver the shadow's delta message now if the device subscribes to its topic, else hold
    /// it for the first subscription that matches (a device with a clean session subscribes
    /// after its CONNACK).
    pub(super) fn offer_desired(&mut self, msg: Message) {
        if self.subs.iter().any(|(f, _)| topic::matches(f, &msg.topic)) {
            self.deliver(msg, false);
        } else {
            self.rare().desired = Some(msg);
        }
    }
}
