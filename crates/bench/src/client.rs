//! Client side of MQTT over the `rampart-proto` codec: CONNECT building (anonymous or Rampart-signed),
//! the CONNECT/CONNACK handshake, SUBSCRIBE, and a small session type for the long-lived helper
//! clients (subscriber, command controller).

use crate::certs::ClientCert;
use crate::net::{self, Conn, Target};
use bytes::BytesMut;
use rampart_proto::mqtt::{
    decode, encode, Connect, Packet, Properties, ProtocolVersion, PubResp, Publish, QoS, Subscribe,
    SubscriptionFilter,
};
use rampart_proto::sign;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// Largest packet accepted from the server.
pub(crate) const MAX_PACKET: usize = 1024 * 1024;

pub(crate) fn version(v: u8) -> ProtocolVersion {
    if v == 5 {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V311
    }
}

/// Unix time in milliseconds.
pub(crate) fn now_ms() -> i64 {
    now_us() / 1000
}

/// Unix time in microseconds.
pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

static LAST_TS: AtomicI64 = AtomicI64::new(0);

/// A CONNECT timestamp never handed out before by this process (unix ms, at least the clock): the
/// server accepts a `(did, ts)` pair once.
pub(crate) fn fresh_ts() -> i64 {
    let now = now_ms();
    let prev = LAST_TS
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(now);
    now.max(prev + 1)
}

/// Who a connection claims to be.
pub(crate) enum Creds<'a> {
    /// Any broker: client id only.
    Anonymous(String),
    /// A Rampart device: client id = did, signed username and password.
    Device { did: &'a str, secret: &'a str },
}

pub(crate) fn connect_packet(v: ProtocolVersion, creds: Creds<'_>, keep_alive: u16) -> Packet {
    let (client_id, username, password) = match creds {
        Creds::Anonymous(id) => (id, None, None),
        Creds::Device { did, secret } => {
            let ts = fresh_ts();
            (
                did.to_owned(),
                Some(sign::connect_username(did, ts)),
                Some(sign::hmac_hex(secret.as_bytes(), &sign::connect_string(did, ts)).into()),
            )
        }
    };
    Packet::Connect(Box::new(Connect {
        protocol: v,
        clean_start: true,
        keep_alive,
        client_id,
        username,
        password,
        will: None,
        properties: Properties::default(),
    }))
}

/// Encode one packet (encoding our own well-formed packets cannot fail; an error is reported as
/// an I/O error all the same).
pub(crate) fn put(p: &Packet, v: ProtocolVersion, out: &mut BytesMut) -> std::io::Result<()> {
    encode(p, v, out).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
}

pub(crate) fn subscribe_packet(packet_id: u16, filter: &str, qos: QoS) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id,
        filters: vec![SubscriptionFilter {
            filter: filter.to_owned(),
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: 0,
        }],
        properties: Properties::default(),
    })
}

pub(crate) fn publish_packet(
    topic: String,
    packet_id: Option<u16>,
    payload: bytes::Bytes,
) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: if packet_id.is_some() {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        },
        retain: false,
        topic,
        packet_id,
        payload,
        properties: Properties::default(),
    })
}

pub(crate) fn puback_packet(packet_id: u16) -> Packet {
    Packet::PubAck(PubResp {
        packet_id,
        code: 0,
        properties: Properties::default(),
    })
}

pub(crate) const PINGREQ: [u8; 2] = [0xC0, 0x00];
pub(crate) const DISCONNECT: [u8; 2] = [0xE0, 0x00];

/// Why a connection attempt or a session step failed; `kind()` is the error-count key.
#[derive(Debug)]
pub(crate) enum Failure {
    Connect(net::ConnectError),
    Timeout(&'static str),
    Io(std::io::Error),
    Closed(&'static str),
    Decode(String),
    /// CONNACK with a non-zero code.
    Refused(u8),
    /// SUBACK with a failure code.
    SubRefused(u8),
    Unexpected(&'static str),
}

impl Failure {
    pub(crate) fn kind(&self) -> String {
        match self {
            Failure::Connect(e) => e.kind(),
            Failure::Timeout(what) => format!("timeout_{what}"),
            Failure::Io(e) => format!("io_{}", net::io_kind(e)),
            Failure::Closed(when) => format!("closed_{when}"),
            Failure::Decode(_) => "decode".into(),
            Failure::Refused(code) => format!("refused_0x{code:02x}"),
            Failure::SubRefused(code) => format!("suback_0x{code:02x}"),
            Failure::Unexpected(what) => format!("unexpected_{what}"),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "{e}"),
            Failure::Decode(e) => write!(f, "decode: {e}"),
            Failure::Io(e) => write!(f, "io: {e}"),
            other => f.write_str(&other.kind()),
        }
    }
}

/// Read until one whole packet is decoded. `when` names the step for a close.
pub(crate) async fn read_packet(
    conn: &mut Conn,
    buf: &mut BytesMut,
    v: ProtocolVersion,
    when: &'static str,
) -> Result<Packet, Failure> {
    loop {
        if let Some(p) = decode(buf, v, MAX_PACKET).map_err(|e| Failure::Decode(e.to_string()))? {
            return Ok(p);
        }
        match conn.read_into(buf).await {
            Ok(0) => return Err(Failure::Closed(when)),
            Ok(_) => {}
            Err(e) => return Err(Failure::Io(e)),
        }
    }
}

/// The outcome of a successful handshake.
pub(crate) struct Opened {
    pub(crate) conn: Conn,
    /// Bytes already read past the CONNACK.
    pub(crate) buf: BytesMut,
    /// The server's receive maximum (MQTT 5), if announced.
    pub(crate) receive_maximum: Option<u16>,
    /// TCP connect start to CONNACK.
    pub(crate) latency: Duration,
}

/// TCP (+TLS, or + the secure-session handshake as `device` = (did, secret) when the target
/// asks for it) connect, CONNECT, wait for CONNACK; all within `timeout`.
pub(crate) async fn open(
    target: &Target,
    index: u64,
    v: ProtocolVersion,
    connect: &Packet,
    device: Option<(&str, &str)>,
    cert: Option<ClientCert>,
    timeout: Duration,
) -> Result<Opened, Failure> {
    let start = Instant::now();
    let fut = async {
        let mut conn = net::connect(target, index, cert)
            .await
            .map_err(Failure::Connect)?;
        if let (true, Some((did, secret))) = (target.noise, device) {
            conn = net::secure(conn, did, secret)
                .await
                .map_err(Failure::Connect)?;
        }
        let mut out = BytesMut::new();
        put(connect, v, &mut out).map_err(Failure::Io)?;
        conn.send(&out).await.map_err(Failure::Io)?;
        let mut buf = BytesMut::new();
        match read_packet(&mut conn, &mut buf, v, "before_connack").await? {
            Packet::ConnAck(ack) if ack.code == 0 => Ok(Opened {
                conn,
                buf,
                receive_maximum: ack.properties.receive_maximum,
                latency: start.elapsed(),
            }),
            Packet::ConnAck(ack) => Err(Failure::Refused(ack.code)),
            _ => Err(Failure::Unexpected("packet_before_connack")),
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(Failure::Timeout("connect")),
    }
}

/// A long-lived helper client (subscriber, controller): owns a read buffer, no pacing.
pub(crate) struct Session {
    pub(crate) conn: Conn,
    pub(crate) buf: BytesMut,
    pub(crate) v: ProtocolVersion,
    pub(crate) receive_maximum: Option<u16>,
    next_pid: u16,
}

impl Session {
    pub(crate) async fn open(
        target: &Target,
        v: ProtocolVersion,
        client_id: String,
        keep_alive: u16,
        timeout: Duration,
    ) -> Result<Session, Failure> {
        let p = connect_packet(v, Creds::Anonymous(client_id), keep_alive);
        // Helper clients use the first source address (index 0).
        let o = open(target, 0, v, &p, None, None, timeout).await?;
        Ok(Session {
            conn: o.conn,
            buf: o.buf,
            v,
            receive_maximum: o.receive_maximum,
            next_pid: 0,
        })
    }

    pub(crate) fn next_pid(&mut self) -> u16 {
        self.next_pid = self.next_pid.wrapping_add(1).max(1);
        self.next_pid
    }

    pub(crate) async fn send(&mut self, p: &Packet) -> Result<(), Failure> {
        let mut out = BytesMut::new();
        put(p, self.v, &mut out).map_err(Failure::Io)?;
        self.conn.send(&out).await.map_err(Failure::Io)
    }

    /// The next packet (cancel-safe: bytes read stay in `buf`).
    pub(crate) async fn next(&mut self) -> Result<Packet, Failure> {
        read_packet(&mut self.conn, &mut self.buf, self.v, "session").await
    }

    /// SUBSCRIBE one filter and wait for its SUBACK (other packets before it are dropped).
    pub(crate) async fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<(), Failure> {
        let pid = self.next_pid();
        self.send(&subscribe_packet(pid, filter, qos)).await?;
        loop {
            match self.next().await? {
                Packet::SubAck(s) if s.packet_id == pid => {
                    return match s.codes.first() {
                        Some(&c) if c < 0x80 => Ok(()),
                        Some(&c) => Err(Failure::SubRefused(c)),
                        None => Err(Failure::SubRefused(0x80)),
                    };
                }
                _ => continue,
            }
        }
    }

    /// DISCONNECT, wait (briefly) for the server to close first, then close.
    pub(crate) async fn disconnect(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            if self.conn.send(&DISCONNECT).await.is_ok() {
                while let Ok(n) = self.conn.read_into(&mut self.buf).await {
                    if n == 0 {
                        break;
                    }
                    self.buf.clear();
                }
            }
        })
        .await;
        let _ = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::io::AsyncWriteExt::shutdown(&mut self.conn),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ts_never_repeats() {
        let mut last = 0;
        for _ in 0..10_000 {
            let t = fresh_ts();
            assert!(t > last);
            last = t;
        }
    }

    #[test]
    fn device_connect_is_signed() {
        let p = connect_packet(
            ProtocolVersion::V5,
            Creds::Device {
                did: "d1",
                secret: "00112233445566778899aabbccddeeff",
            },
            30,
        );
        let Packet::Connect(c) = p else {
            panic!("not a CONNECT")
        };
        assert_eq!(c.client_id, "d1");
        let (did, ts) = sign::parse_connect_username(c.username.as_deref().unwrap()).unwrap();
        assert_eq!(did, "d1");
        let pw = std::str::from_utf8(c.password.as_deref().unwrap()).unwrap();
        assert!(sign::verify_hex(
            b"00112233445566778899aabbccddeeff",
            &sign::connect_string("d1", ts),
            pw
        ));
        let mut out = BytesMut::new();
        put(&Packet::Connect(c), ProtocolVersion::V5, &mut out).unwrap();
        assert_eq!(&PINGREQ[..], {
            let mut o = BytesMut::new();
            put(&Packet::PingReq, ProtocolVersion::V311, &mut o).unwrap();
            o
        });
    }
}
