//! Secure sessions (Noise `NNpsk0_25519_AESGCM_SHA256`) on the plain-TCP listener, driven by a
//! device written here from `docs/protocol.md` ("Secure session"): `snow` as the initiator, and
//! framing, PSK, prologue and key rotation of its own (none of the server's code).

use crate::mqtt::raw;
use crate::support::*;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

fn failures(reason: &str) -> String {
    format!("rampart_secure_session_failures_total{{reason=\"{reason}\"}}")
}

/// A product with `identity.secure_session` as given and one registered device:
/// (did, device secret).
async fn device(srv: &Server, secure: bool) -> (String, String) {
    let (s, v) = srv
        .admin(
            "POST",
            "/v1/products",
            Some(json!({
                "name": "Noise lamp",
                "identity": {"dynamic_registration": true, "secure_session": secure},
                "report_limit_per_min": 600,
                "datapoints": [{"name": "power", "type": "bool", "writable": true}]
            })),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (pk, ps) = (
        v["product_key"].as_str().unwrap(),
        v["product_secret"].as_str().unwrap(),
    );
    let (did, secret, _) = srv.register(pk, ps, &format!("hw-{}", nonce())).await;
    (did, secret)
}

/// PSK = HMAC-SHA256(key = device secret, message = "rampart-noise-psk\n" + did).
fn psk(secret: &str, did: &str) -> [u8; 32] {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(b"rampart-noise-psk\n");
    m.update(did.as_bytes());
    m.finalize().into_bytes().into()
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// The next frame's body; `None` once the server closed the connection.
async fn read_frame(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if buf.len() >= 2 {
            let len = u16::from_be_bytes([buf[0], buf[1]]) as usize;
            if buf.len() >= 2 + len {
                let body = buf[2..2 + len].to_vec();
                buf.drain(..2 + len);
                return Some(body);
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, sock.read(&mut chunk))
            .await
            .expect("the server neither answered nor closed")
            .unwrap_or(0);
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A device speaking the secure-session layer.
struct Device {
    sock: TcpStream,
    noise: snow::TransportState,
    /// Ciphertext read but not yet a whole frame.
    wire: Vec<u8>,
    /// Plaintext MQTT bytes not yet a whole packet.
    plain: Vec<u8>,
    /// Empty messages from the server (its rotations), each followed by a rekey here.
    server_rekeys: usize,
    /// Every byte this device sent, for replaying.
    sent: Vec<u8>,
}

impl Device {
    /// Frame 0, the handshake; `Err` with the socket when the server closed instead of
    /// answering message 1.
    async fn open(srv: &Server, did: &str, secret: &str) -> Result<Device, TcpStream> {
        Device::open_with(srv, did, &psk(secret, did)).await
    }

    async fn open_with(srv: &Server, did: &str, psk: &[u8; 32]) -> Result<Device, TcpStream> {
        let mut sock = TcpStream::connect(("127.0.0.1", srv.mqtt_plain))
            .await
            .unwrap();
        let mut prologue = b"rampart-noise/1\n".to_vec();
        prologue.extend_from_slice(did.as_bytes());
        let mut hs = snow::Builder::new("Noise_NNpsk0_25519_AESGCM_SHA256".parse().unwrap())
            .prologue(&prologue)
            .unwrap()
            .psk(0, psk)
            .unwrap()
            .build_initiator()
            .unwrap();
        let mut m1 = [0u8; 64];
        let n = hs.write_message(&[], &mut m1).unwrap();
        let mut sent = frame(did.as_bytes());
        sent.extend(frame(&m1[..n]));
        sock.write_all(&sent).await.unwrap();
        let mut wire = Vec::new();
        let Some(m2) = read_frame(&mut sock, &mut wire).await else {
            return Err(sock);
        };
        let mut payload = [0u8; 64];
        assert_eq!(hs.read_message(&m2, &mut payload).unwrap(), 0);
        Ok(Device {
            sock,
            noise: hs.into_transport_mode().unwrap(),
            wire,
            plain: Vec::new(),
            server_rekeys: 0,
            sent,
        })
    }

    /// One transport message (empty: "my sending key rotates now").
    fn seal(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let mut msg = vec![0u8; plaintext.len() + 16];
        let n = self.noise.write_message(plaintext, &mut msg).unwrap();
        frame(&msg[..n])
    }

    async fn send(&mut self, plaintext: &[u8]) {
        let f = self.seal(plaintext);
        self.write(&f).await;
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.sent.extend_from_slice(bytes);
        self.sock.write_all(bytes).await.unwrap();
    }

    /// Rotate the sending key.
    async fn rekey(&mut self) {
        self.send(&[]).await;
        self.noise.rekey_outgoing();
    }

    /// The next MQTT packet (fixed header included); `None` once the connection closed.
    async fn packet(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(p) = split_packet(&mut self.plain) {
                return Some(p);
            }
            let body = read_frame(&mut self.sock, &mut self.wire).await?;
            let mut out = vec![0u8; body.len()];
            let n = self
                .noise
                .read_message(&body, &mut out)
                .expect("a server message that does not decrypt");
            if n == 0 {
                self.noise.rekey_incoming();
                self.server_rekeys += 1;
            }
            self.plain.extend_from_slice(&out[..n]);
        }
    }

    /// Signed MQTT 5 CONNECT as `client_id` with credentials of `did`; the CONNACK.
    async fn connect_as(&mut self, client_id: &str, did: &str, secret: &str) -> Vec<u8> {
        let (u, p) = creds(did, secret);
        self.send(&raw::connect_v5_keepalive(client_id, &u, &p, 60))
            .await;
        self.packet().await.expect("no CONNACK")
    }

    async fn connect(&mut self, did: &str, secret: &str) {
        let ack = self.connect_as(did, did, secret).await;
        assert_eq!((ack[0], ack[3]), (0x20, 0x00), "CONNACK {ack:02x?}");
    }

    /// A QoS 1 report, acknowledged with PUBACK 0.
    async fn report(&mut self, did: &str, pid: u16, power: bool) {
        let body = json!({ "power": power }).to_string();
        self.send(&raw::publish_qos1_v5(
            &format!("dev/{did}/up"),
            pid,
            body.as_bytes(),
        ))
        .await;
        let ack = self.packet().await.expect("no PUBACK");
        assert_eq!(
            (ack[0], ack[2], ack[3]),
            (0x40, (pid >> 8) as u8, pid as u8)
        );
        assert!(ack.len() == 4 || ack[4] == 0, "PUBACK {ack:02x?}");
    }

    /// Whether the server closes the connection (reading whatever it still sends).
    async fn closed(mut self) -> bool {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(WAIT, self.sock.read_to_end(&mut rest)).await;
        read.is_ok()
    }
}

/// One whole MQTT packet off the front of `buf`.
fn split_packet(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let (mut len, mut shift, mut i) = (0usize, 0, 1);
    loop {
        let b = *buf.get(i)?;
        len += usize::from(b & 0x7f) << shift;
        shift += 7;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
    }
    if buf.len() < i + len {
        return None;
    }
    Some(buf.drain(..i + len).collect())
}

/// Whether a TCP socket is closed by the server within the wait.
async fn closes(mut sock: TcpStream) -> bool {
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, sock.read_to_end(&mut rest))
        .await
        .is_ok()
}

#[tokio::test]
async fn a_device_connects_reports_and_takes_a_command_over_noise() {
    let srv = Server::start_with(&[("RAMPART_MQTT__ALLOW_UNENCRYPTED", "false")]).await;
    let (did, secret) = device(&srv, true).await;
    let mut dev = Device::open(&srv, &did, &secret).await.expect("handshake");
    dev.connect(&did, &secret).await;
    dev.report(&did, 1, true).await;
    srv.wait_state(&did, |v| v["state"]["power"] == true && v["online"] == true)
        .await;
    dev.send(&raw::subscribe_v5(2, &format!("dev/{did}/down")))
        .await;
    let suback = dev.packet().await.unwrap();
    assert_eq!(suback[0], 0x90, "{suback:02x?}");

    // A command reaches the device; its ack answers the API call.
    let call = {
        let client = srv.http_client.clone();
        let url = srv.url(&format!("/v1/devices/{did}/commands"));
        tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(ADMIN)
                .json(&json!({"set": {"power": false}}))
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        })
    };
    let publish = dev.packet().await.expect("no command");
    assert_eq!(publish[0] & 0xf0, 0x30, "{publish:02x?}");
    dev.send(&command_answer(&did, &publish)).await;
    let (status, v) = call.await.unwrap();
    assert_eq!((status, v["status"].as_str()), (200, Some("ok")), "{v}");
    assert_eq!(
        srv.metric("rampart_secure_session_handshakes_total").await,
        1.0
    );
}

/// The PUBACK of a command PUBLISH (QoS 1, no properties) and its ok ack, as MQTT bytes.
fn command_answer(did: &str, publish: &[u8]) -> Vec<u8> {
    let body = raw::body(publish);
    let tlen = u16::from_be_bytes([body[0], body[1]]) as usize;
    let pid = [body[2 + tlen], body[3 + tlen]];
    let plen = body[4 + tlen] as usize;
    let cmd: serde_json::Value = serde_json::from_slice(&body[5 + tlen + plen..]).unwrap();
    let mut out = vec![0x40, 0x02, pid[0], pid[1]];
    let ack = json!({"id": cmd["id"], "status": "ok"}).to_string();
    out.extend(raw::publish_v5(
        0x30,
        &format!("dev/{did}/ack"),
        0,
        &[],
        ack.as_bytes(),
    ));
    out
}

#[tokio::test]
async fn a_flipped_byte_in_a_transport_frame_closes_the_connection() {
    let srv = Server::start().await;
    let (did, secret) = device(&srv, true).await;
    let mut dev = Device::open(&srv, &did, &secret).await.expect("handshake");
    dev.connect(&did, &secret).await;
    let mut f = dev.seal(&[0xc0, 0x00]); // PINGREQ
    let last = f.len() - 1;
    f[last] ^= 0x01;
    dev.write(&f).await;
    assert!(dev.closed().await, "the connection stayed open");
    srv.wait_metric(&failures("bad_tag"), |v| v == 1.0).await;
}

#[tokio::test]
async fn a_wrong_secret_an_unknown_did_and_a_product_without_it_fail_alike() {
    let srv = Server::start().await;
    let (did, secret) = device(&srv, true).await;
    let (plain_did, plain_secret) = device(&srv, false).await;
    // A wrong secret: the server closes without message 2.
    let wrong = Device::open(&srv, &did, "0123456789abcdef0123456789abcdef").await;
    assert!(closes(wrong.err().expect("handshake with a wrong secret")).await);
    // An unknown did, and a device whose product does not allow secure sessions, the same way.
    let unknown = Device::open(&srv, "nosuchdevice0000000", &secret).await;
    assert!(closes(unknown.err().expect("handshake for an unknown did")).await);
    let off = Device::open(&srv, &plain_did, &plain_secret).await;
    assert!(closes(off.err().expect("handshake on a product without it")).await);
    for reason in ["bad_psk", "unknown_device", "not_enabled"] {
        srv.wait_metric(&failures(reason), |v| v == 1.0).await;
    }
    // The device with the right secret still gets in.
    let mut dev = Device::open(&srv, &did, &secret).await.expect("handshake");
    dev.connect(&did, &secret).await;
}

#[tokio::test]
async fn a_recorded_session_replayed_on_a_new_connection_fails() {
    let srv = Server::start().await;
    let (did, secret) = device(&srv, true).await;
    let mut dev = Device::open(&srv, &did, &secret).await.expect("handshake");
    dev.connect(&did, &secret).await;
    dev.report(&did, 1, true).await;
    let recorded = dev.sent.clone();
    drop(dev);
    let (handshake, transport) = recorded.split_at(2 + did.len() + 2 + 48);
    // Frame 0 and message 1 are accepted again (the server answers with a new ephemeral key),
    // but the recorded transport messages were sealed for the old session's keys.
    let mut sock = TcpStream::connect(("127.0.0.1", srv.mqtt_plain))
        .await
        .unwrap();
    sock.write_all(handshake).await.unwrap();
    let mut wire = Vec::new();
    let m2 = read_frame(&mut sock, &mut wire).await.expect("message 2");
    assert_eq!(m2.len(), 48);
    sock.write_all(transport).await.unwrap();
    assert!(closes(sock).await, "the replay was served");
    srv.wait_metric(&failures("bad_tag"), |v| v == 1.0).await;
    assert_eq!(
        srv.metric("rampart_secure_session_handshakes_total").await,
        2.0
    );
}

#[tokio::test]
async fn a_connect_for_another_did_is_not_authorised() {
    let srv = Server::start().await;
    let (did, secret) = device(&srv, true).await;
    let (other, other_secret) = device(&srv, true).await;
    // Client id and credentials of another device than frame 0's.
    let mut dev = Device::open(&srv, &did, &secret).await.expect("handshake");
    let ack = dev.connect_as(&other, &other, &other_secret).await;
    assert_eq!((ack[0], ack[3]), (0x20, 0x87), "CONNACK {ack:02x?}");
    // The client id alone naming frame 0's did is not enough.
    let mut dev = Device::open(&srv, &did, &secret).await.expect("handshake");
    let ack = dev.connect_as(&did, &other, &other_secret).await;
    assert_eq!((ack[0], ack[3]), (0x20, 0x87), "CONNACK {ack:02x?}");
    let mismatch = r#"rampart_auth_refusals_total{listener="mqtt",reason="client_id_mismatch"}"#;
    assert_eq!(srv.metric(mismatch).await, 2.0);
}

#[tokio::test]
async fn keys_rotate_both_ways() {
    let srv = Server::start_with(&[("RAMPART_MQTT__SECURE_SESSION__REKEY_MESSAGES", "2")]).await;
    let (did, secret) = device(&srv, true).await;
    let mut dev = Device::open(&srv, &did, &secret).await.expect("handshake");
    dev.connect(&did, &secret).await;
    // The device rotates its sending key whenever it likes; the server follows.
    dev.rekey().await;
    dev.report(&did, 1, true).await;
    dev.rekey().await;
    dev.rekey().await;
    dev.report(&did, 2, false).await;
    // The server rotates its own after every two messages: CONNACK and the first PUBACK went
    // with the first key, each later pair with the next.
    for pid in 3..8 {
        dev.report(&did, pid, pid % 2 == 0).await;
    }
    // Eight messages from the server (CONNACK, seven PUBACKs): rotations before the 3rd, 5th
    // and 7th.
    assert_eq!(dev.server_rekeys, 3);
    let out = r#"rampart_secure_session_rekeys_total{direction="out"}"#;
    let inbound = r#"rampart_secure_session_rekeys_total{direction="in"}"#;
    assert_eq!(srv.metric(out).await, 3.0);
    assert_eq!(srv.metric(inbound).await, 3.0);
}

#[tokio::test]
async fn plain_mqtt_on_the_plain_listener_only_when_allowed() {
    let srv = Server::start_with(&[("RAMPART_MQTT__ALLOW_UNENCRYPTED", "false")]).await;
    let (_, did, secret) = srv.device().await;
    let (u, p) = creds(&did, &secret);
    let mut sock = TcpStream::connect(("127.0.0.1", srv.mqtt_plain))
        .await
        .unwrap();
    sock.write_all(&raw::connect_v5_keepalive(&did, &u, &p, 30))
        .await
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, sock.read_to_end(&mut rest))
        .await
        .expect("the connection stayed open")
        .ok();
    assert!(rest.is_empty(), "answered {rest:02x?}");
    srv.wait_metric(&failures("unencrypted"), |v| v == 1.0)
        .await;

    // Allowed (as the test servers are by default), the same CONNECT is served.
    let srv = Server::start().await;
    let (_, did, secret) = srv.device().await;
    raw::session(&srv, &did, &secret, 30).await;
}

#[tokio::test]
async fn a_long_frame_0_and_a_stalled_handshake_are_closed() {
    let srv = Server::start_with(&[("RAMPART_MQTT__CONNECT_TIMEOUT_SECS", "1")]).await;
    // A did longer than 64 bytes is refused by its length, before its body is read.
    let mut sock = TcpStream::connect(("127.0.0.1", srv.mqtt_plain))
        .await
        .unwrap();
    sock.write_all(&frame(&[b'a'; 65])).await.unwrap();
    assert!(closes(sock).await);
    srv.wait_metric(&failures("malformed"), |v| v == 1.0).await;
    // Frame 0 and then nothing: closed at the connect timeout.
    let (did, _) = device(&srv, true).await;
    let mut sock = TcpStream::connect(("127.0.0.1", srv.mqtt_plain))
        .await
        .unwrap();
    sock.write_all(&frame(did.as_bytes())).await.unwrap();
    assert!(closes(sock).await);
    srv.wait_metric(&failures("timeout"), |v| v == 1.0).await;
}
