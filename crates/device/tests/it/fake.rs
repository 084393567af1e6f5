//! Scripted fake peers: just enough MQTT (3.1.1 and 5.0) and HTTP/1.1 to drive the SDK.

use std::sync::Arc;
use std::time::Duration;

use rampart_proto::sign::{connect_string, parse_connect_username, verify_hex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Upper bound on any single wait in the scripts.
pub(crate) const STEP: Duration = Duration::from_secs(10);

/// A CONNECT as read by the fake broker.
#[derive(Debug)]
pub(crate) struct Connect {
    pub level: u8,
    pub client_id: String,
    pub username: String,
    pub password: String,
}

impl Connect {
    /// The signed timestamp, after checking the username form and the password signature.
    pub(crate) fn verify(&self, secret: &str) -> i64 {
        let (did, ts) = parse_connect_username(&self.username).expect("username form");
        assert_eq!(did, self.client_id, "username did = client id");
        assert!(
            verify_hex(secret.as_bytes(), &connect_string(did, ts), &self.password),
            "password signature"
        );
        ts
    }
}

/// A packet from the client, after the automatic answers (PUBACK, PINGRESP).
#[derive(Debug, PartialEq)]
pub(crate) enum Pkt {
    Publish { topic: String, payload: Vec<u8> },
    Disconnect,
    Other(u8),
}

pub(crate) struct Peer<S> {
    s: S,
    v5: bool,
    next_pkid: u16,
}

fn take_u16(b: &mut &[u8]) -> u16 {
    let v = u16::from_be_bytes([b[0], b[1]]);
    *b = &b[2..];
    v
}

fn take_str(b: &mut &[u8]) -> String {
    let n = take_u16(b) as usize;
    let s = String::from_utf8(b[..n].to_vec()).unwrap();
    *b = &b[n..];
    s
}

fn take_varint(b: &mut &[u8]) -> usize {
    let (mut v, mut shift) = (0usize, 0);
    loop {
        let byte = b[0];
        *b = &b[1..];
        v |= ((byte & 0x7f) as usize) << shift;
        if byte & 0x80 == 0 {
            return v;
        }
        shift += 7;
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl<S: AsyncRead + AsyncWrite + Unpin> Peer<S> {
    pub(crate) fn new(s: S, v5: bool) -> Self {
        Peer {
            s,
            v5,
            next_pkid: 1,
        }
    }

    /// One raw packet: first byte and body; `None` on EOF or error.
    async fn read_raw(&mut self) -> Option<(u8, Vec<u8>)> {
        let first = self.s.read_u8().await.ok()?;
        let (mut len, mut shift) = (0usize, 0);
        loop {
            let b = self.s.read_u8().await.ok()?;
            len |= ((b & 0x7f) as usize) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let mut body = vec![0; len];
        self.s.read_exact(&mut body).await.ok()?;
        Some((first, body))
    }

    async fn read_raw_timed(&mut self) -> Option<(u8, Vec<u8>)> {
        tokio::time::timeout(STEP, self.read_raw())
            .await
            .expect("client went silent")
    }

    async fn write_raw(&mut self, first: u8, body: &[u8]) {
        let mut out = vec![first];
        let mut len = body.len();
        loop {
            let mut b = (len % 128) as u8;
            len /= 128;
            if len > 0 {
                b |= 0x80;
            }
            out.push(b);
            if len == 0 {
                break;
            }
        }
        out.extend_from_slice(body);
        // The client may already be gone (it closes right after DISCONNECT).
        let _ = self.s.write_all(&out).await;
        let _ = self.s.flush().await;
    }

    pub(crate) async fn expect_connect(&mut self) -> Connect {
        let (first, body) = self.read_raw_timed().await.expect("CONNECT");
        assert_eq!(first, 0x10, "CONNECT expected");
        let mut b = &body[..];
        assert_eq!(take_str(&mut b), "MQTT");
        let level = b[0];
        let flags = b[1];
        b = &b[2..];
        let _keep_alive = take_u16(&mut b);
        if level == 5 {
            let n = take_varint(&mut b);
            b = &b[n..];
        }
        let client_id = take_str(&mut b);
        assert_eq!(flags & 0x04, 0, "no will");
        assert_ne!(flags & 0x80, 0, "username present");
        assert_ne!(flags & 0x40, 0, "password present");
        let username = take_str(&mut b);
        let password = take_str(&mut b);
        Connect {
            level,
            client_id,
            username,
            password,
        }
    }

    pub(crate) async fn connack(&mut self, code: u8) {
        if self.v5 {
            self.write_raw(0x20, &[0, code, 0]).await;
        } else {
            self.write_raw(0x20, &[0, code]).await;
        }
    }

    /// Read SUBSCRIBE, grant QoS 1, return the filter.
    pub(crate) async fn expect_subscribe(&mut self) -> String {
        let (first, body) = self.read_raw_timed().await.expect("SUBSCRIBE");
        assert_eq!(first, 0x82, "SUBSCRIBE expected");
        let mut b = &body[..];
        let pkid = take_u16(&mut b);
        if self.v5 {
            let n = take_varint(&mut b);
            b = &b[n..];
        }
        let filter = take_str(&mut b);
        assert_eq!(b[0] & 0x03, 1, "QoS 1 requested");
        let mut ack = pkid.to_be_bytes().to_vec();
        if self.v5 {
            ack.push(0);
        }
        ack.push(1);
        self.write_raw(0x90, &ack).await;
        filter
    }

    /// Send a QoS 1 PUBLISH.
    pub(crate) async fn publish(&mut self, topic: &str, payload: &[u8]) {
        let mut body = Vec::new();
        put_str(&mut body, topic);
        body.extend_from_slice(&self.next_pkid.to_be_bytes());
        self.next_pkid += 1;
        if self.v5 {
            body.push(0);
        }
        body.extend_from_slice(payload);
        self.write_raw(0x32, &body).await;
    }

    /// The next packet that matters; answers PINGREQ and acks QoS 1 publishes on the way.
    /// `None` on EOF.
    pub(crate) async fn next(&mut self) -> Option<Pkt> {
        loop {
            let (first, body) = self.read_raw_timed().await?;
            match first >> 4 {
                3 => {
                    let qos = (first >> 1) & 0x03;
                    let mut b = &body[..];
                    let topic = take_str(&mut b);
                    if qos > 0 {
                        let pkid = take_u16(&mut b);
                        self.write_raw(0x40, &pkid.to_be_bytes()).await;
                    }
                    if self.v5 {
                        let n = take_varint(&mut b);
                        b = &b[n..];
                    }
                    return Some(Pkt::Publish {
                        topic,
                        payload: b.to_vec(),
                    });
                }
                4 => {} // PUBACK of our publishes
                12 => self.write_raw(0xd0, &[]).await,
                14 => return Some(Pkt::Disconnect),
                t => return Some(Pkt::Other(t)),
            }
        }
    }

    /// The next PUBLISH, as (topic, JSON payload).
    pub(crate) async fn next_publish(&mut self) -> (String, serde_json::Value) {
        match self.next().await {
            Some(Pkt::Publish { topic, payload }) => {
                let v = serde_json::from_slice(&payload).expect("JSON payload");
                (topic, v)
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Read until the client closes its side.
    pub(crate) async fn expect_eof(&mut self) {
        let r = tokio::time::timeout(STEP, self.read_raw())
            .await
            .expect("EOF");
        assert!(r.is_none(), "expected EOF, got {r:?}");
    }
}

/// A self-signed certificate for `localhost` and `127.0.0.1` and a TLS acceptor serving it.
pub(crate) fn tls_server() -> (String, tokio_rustls::TlsAcceptor) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![ck.cert.der().clone()], key)
    .unwrap();
    (
        ck.cert.pem(),
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    )
}

/// Read one HTTP/1.1 request: (request line, JSON body).
pub(crate) async fn read_http_request<S: AsyncRead + Unpin>(
    s: &mut S,
) -> (String, serde_json::Value) {
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 1024];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "EOF in HTTP head");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let mut chunk = [0u8; 1024];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "EOF in HTTP body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = head.lines().next().unwrap_or_default().to_owned();
    let body = serde_json::from_slice(&buf[head_end..head_end + len]).unwrap();
    (line, body)
}

pub(crate) async fn write_http_response<S: AsyncWrite + Unpin>(s: &mut S, status: u16, body: &str) {
    let resp = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(resp.as_bytes()).await.unwrap();
    s.flush().await.unwrap();
    let _ = s.shutdown().await;
}
