//! Devices with an Ed25519 key made on the device: pre-registration through the API, then the
//! `rampart-ed25519` challenge over MQTT 5 enhanced authentication, at CONNECT and as
//! re-authentication, over TLS.
//!
//! No stock client drives AUTH packets (rumqttc 0.24 has no AUTH packet, 0.25 decodes one but
//! its event loop cannot answer it; Paho Python does not expose it), so the device here is a
//! small MQTT 5 client over tokio-rustls writing and reading packets with `rampart-proto`'s
//! codec.

use crate::support::*;
use bytes::{Bytes, BytesMut};
use ed25519_dalek::{Signer, SigningKey};
use rampart_proto::mqtt::{self, Auth, Connect, Packet, Properties, ProtocolVersion, Publish, QoS};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const METHOD: &str = "rampart-ed25519";

fn key_pair() -> (SigningKey, String) {
    use base64::Engine as _;
    let sk = SigningKey::generate(&mut rand::rngs::OsRng);
    let b64 = base64::engine::general_purpose::STANDARD.encode(sk.verifying_key().as_bytes());
    (sk, b64)
}

/// What the device signs: `"rampart-ed25519\n" + did + "\n" + nonce` (written out here, not
/// taken from the server's crate, so a change of the contract fails this test).
fn signed(sk: &SigningKey, did: &str, nonce: &[u8]) -> Bytes {
    let mut msg = format!("{METHOD}\n{did}\n").into_bytes();
    msg.extend_from_slice(nonce);
    Bytes::copy_from_slice(&sk.sign(&msg).to_bytes())
}

/// Pre-register a device of `pk` with `public_key` (base64) as the admin.
async fn preregister(srv: &Server, pk: &str, hw: &str, public_key: &str) -> (u16, Value) {
    srv.admin(
        "POST",
        &format!("/v1/products/{pk}/devices"),
        Some(json!({"hardware_id": hw, "public_key": {"ed25519": public_key}})),
    )
    .await
}

/// A device of a fresh product, pre-registered with a new key: (product key, did, key).
async fn key_device(srv: &Server) -> (String, String, SigningKey) {
    let (pk, _) = srv.product(false, false).await;
    let (sk, b64) = key_pair();
    let (s, v) = preregister(srv, &pk, &format!("hw-{}", nonce()), &b64).await;
    assert_eq!(s, 201, "{v}");
    (pk, v["did"].as_str().unwrap().to_owned(), sk)
}

/// A bare MQTT 5 connection over TLS.
struct Mqtt5 {
    io: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    buf: BytesMut,
}

impl Mqtt5 {
    async fn open(srv: &Server) -> Mqtt5 {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", srv.mqtt_tls))
            .await
            .unwrap();
        let tls = tokio_rustls::TlsConnector::from(crate::accounts::ws_tls(srv));
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        Mqtt5 {
            io: tls.connect(name, tcp).await.unwrap(),
            buf: BytesMut::new(),
        }
    }

    async fn send(&mut self, p: Packet) {
        let mut w = BytesMut::new();
        mqtt::encode(&p, ProtocolVersion::V5, &mut w).unwrap();
        self.io.write_all(&w).await.unwrap();
        self.io.flush().await.unwrap();
    }

    /// The next packet; `None` when the server closed the connection.
    async fn recv(&mut self) -> Option<Packet> {
        tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                if let Some(p) = mqtt::decode(&mut self.buf, ProtocolVersion::V5, 1 << 20).unwrap()
                {
                    return Some(p);
                }
                let mut chunk = [0u8; 4096];
                match self.io.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await
        .expect("no packet from the server in time")
    }

    /// CONNECT as `client_id` naming `method`, with no user name or password.
    async fn connect(&mut self, client_id: &str, method: &str) {
        self.send(Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V5,
            clean_start: true,
            keep_alive: 30,
            client_id: client_id.to_owned(),
            username: None,
            password: None,
            will: None,
            properties: Properties {
                authentication_method: Some(method.to_owned()),
                ..Default::default()
            },
        })))
        .await;
    }

    /// The server's challenge: an AUTH `0x18` of our method; returns its nonce.
    async fn challenge(&mut self) -> Bytes {
        match self.recv().await {
            Some(Packet::Auth(a)) => {
                assert_eq!(a.code, 0x18, "{a:?}");
                assert_eq!(a.properties.authentication_method.as_deref(), Some(METHOD));
                let nonce = a.properties.authentication_data.expect("a nonce");
                assert_eq!(nonce.len(), 32);
                nonce
            }
            other => panic!("expected AUTH 0x18, got {other:?}"),
        }
    }

    async fn answer(&mut self, code: u8, signature: Bytes) {
        self.send(auth(code, Some(signature))).await;
    }

    /// The CONNACK's reason code (and the packet).
    async fn connack(&mut self) -> (u8, Properties) {
        match self.recv().await {
            Some(Packet::ConnAck(c)) => (c.code, c.properties),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// CONNECT with our method, answer the challenge with `sign(nonce)`: the CONNACK code and
    /// the nonce the server sent.
    async fn handshake(
        &mut self,
        did: &str,
        sign: impl FnOnce(&[u8]) -> Bytes,
    ) -> (u8, Properties, Bytes) {
        self.connect(did, METHOD).await;
        let nonce = self.challenge().await;
        self.answer(0x18, sign(&nonce)).await;
        let (code, props) = self.connack().await;
        (code, props, nonce)
    }
}

fn auth(code: u8, data: Option<Bytes>) -> Packet {
    Packet::Auth(Auth {
        code,
        properties: Properties {
            authentication_method: Some(METHOD.to_owned()),
            authentication_data: data,
            ..Default::default()
        },
    })
}

#[tokio::test]
async fn a_device_with_a_key_connects_reports_and_reauthenticates() {
    let srv = Server::start().await;
    let (_, did, sk) = key_device(&srv).await;
    // The device view shows the key it was pre-registered with.
    let view = srv.state(&did).await;
    assert_eq!(
        view["public_key"]["ed25519"].as_str().unwrap(),
        {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(sk.verifying_key().as_bytes())
        },
        "{view}"
    );

    let mut c = Mqtt5::open(&srv).await;
    let (code, props, first) = c.handshake(&did, |n| signed(&sk, &did, n)).await;
    assert_eq!(code, 0, "{props:?}");
    assert_eq!(props.authentication_method.as_deref(), Some(METHOD));
    srv.wait_state(&did, |v| v["online"] == true).await;

    // A report is accepted (PUBACK 0x00 once stored).
    c.send(Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: format!("dev/{did}/up"),
        packet_id: Some(1),
        payload: Bytes::from_static(br#"{"power": true}"#),
        properties: Properties::default(),
    }))
    .await;
    match c.recv().await {
        Some(Packet::PubAck(a)) => assert_eq!((a.packet_id, a.code), (1, 0), "{a:?}"),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    assert_eq!(srv.state(&did).await["state"]["power"], true);

    // Re-authentication: a fresh nonce, signed, is answered AUTH 0x00.
    c.send(auth(0x19, None)).await;
    let second = c.challenge().await;
    assert_ne!(second, first, "every challenge has a fresh nonce");
    c.answer(0x18, signed(&sk, &did, &second)).await;
    match c.recv().await {
        Some(Packet::Auth(a)) => {
            assert_eq!(a.code, 0, "{a:?}");
            assert_eq!(a.properties.authentication_method.as_deref(), Some(METHOD));
        }
        other => panic!("expected AUTH 0x00, got {other:?}"),
    }
    // The session goes on after it.
    c.send(Packet::PingReq).await;
    assert_eq!(c.recv().await, Some(Packet::PingResp));

    // A re-authentication answered with the previous signature is refused: DISCONNECT 0x87.
    c.send(auth(0x19, None)).await;
    let third = c.challenge().await;
    assert_ne!(third, second);
    c.answer(0x18, signed(&sk, &did, &second)).await;
    match c.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.code, 0x87, "{d:?}"),
        other => panic!("expected DISCONNECT 0x87, got {other:?}"),
    }
    assert_eq!(
        c.recv().await,
        None,
        "the server closes after the DISCONNECT"
    );
    srv.wait_state(&did, |v| v["online"] == false).await;
}

#[tokio::test]
async fn wrong_replayed_and_unknown_answers_are_refused_alike() {
    let srv = Server::start().await;
    let (pk, did, sk) = key_device(&srv).await;

    // A good connection, whose signature is replayed below.
    let mut c = Mqtt5::open(&srv).await;
    let mut earlier = Bytes::new();
    let (code, _, _) = c
        .handshake(&did, |n| {
            earlier = signed(&sk, &did, n);
            earlier.clone()
        })
        .await;
    assert_eq!(code, 0);
    c.send(Packet::Disconnect(mqtt::Disconnect {
        code: 0,
        properties: Properties::default(),
    }))
    .await;
    srv.wait_state(&did, |v| v["online"] == false).await;

    // Signed with another key.
    let (other, _) = key_pair();
    let mut c = Mqtt5::open(&srv).await;
    let (code, _, _) = c.handshake(&did, |n| signed(&other, &did, n)).await;
    assert_eq!(code, 0x87, "a signature of another key");
    assert_eq!(c.recv().await, None);

    // The signature of the earlier connection: its nonce is not this one.
    let mut c = Mqtt5::open(&srv).await;
    let (code, _, _) = c.handshake(&did, |_| earlier.clone()).await;
    assert_eq!(code, 0x87, "a replayed signature");

    // Garbage for a signature.
    let mut c = Mqtt5::open(&srv).await;
    let (code, _, _) = c
        .handshake(&did, |_| Bytes::from_static(b"not a signature"))
        .await;
    assert_eq!(code, 0x87, "not a signature");

    // An unknown did, and a device registered with a secret (no key), get the same exchange
    // and the same refusal.
    let mut c = Mqtt5::open(&srv).await;
    let (code, _, _) = c
        .handshake("nobody0000", |n| signed(&sk, "nobody0000", n))
        .await;
    assert_eq!(code, 0x87, "unknown device");
    let (_, secret_did, _) = srv.device().await;
    let mut c = Mqtt5::open(&srv).await;
    let (code, _, _) = c
        .handshake(&secret_did, |n| signed(&sk, &secret_did, n))
        .await;
    assert_eq!(code, 0x87, "a device without a key");

    // Another method: 0x8C at once, no challenge.
    let mut c = Mqtt5::open(&srv).await;
    c.connect(&did, "SCRAM-SHA-256").await;
    let (code, _) = c.connack().await;
    assert_eq!(code, 0x8C);

    // A disabled device proves its key and is still refused.
    let (s, v) = srv
        .admin("POST", &format!("/v1/devices/{did}/disable"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    let mut c = Mqtt5::open(&srv).await;
    let (code, _, _) = c.handshake(&did, |n| signed(&sk, &did, n)).await;
    assert_eq!(code, 0x87, "disabled");

    // Each refusal was logged and counted with its reason.
    for (reason, at_least) in [
        ("wrong_key_signature", 3.0),
        ("unknown_identity", 1.0),
        ("no_public_key", 1.0),
        ("auth_method", 1.0),
    ] {
        let name =
            format!(r#"rampart_auth_refusals_total{{listener="mqtt_tls",reason="{reason}"}}"#);
        let got = srv.wait_metric(&name, |v| v >= at_least).await;
        assert!(got >= at_least, "{reason}: {got}");
    }
    // The product still serves a good answer once enabled.
    let (s, _) = srv
        .admin("POST", &format!("/v1/devices/{did}/enable"), None)
        .await;
    assert_eq!(s, 200);
    let mut c = Mqtt5::open(&srv).await;
    let (code, _, _) = c.handshake(&did, |n| signed(&sk, &did, n)).await;
    assert_eq!(code, 0, "product {pk}");
}

/// AUTH on a connection that authenticated with a password is a protocol error.
#[tokio::test]
async fn auth_without_enhanced_authentication_is_a_protocol_error() {
    let srv = Server::start().await;
    let (_, did, secret) = srv.device().await;
    let (user, pass) = creds(&did, &secret);
    let mut c = Mqtt5::open(&srv).await;
    c.send(Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        keep_alive: 30,
        client_id: did.clone(),
        username: Some(user),
        password: Some(Bytes::from(pass.into_bytes())),
        will: None,
        properties: Properties::default(),
    })))
    .await;
    assert_eq!(c.connack().await.0, 0);
    c.send(auth(0x19, None)).await;
    match c.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.code, 0x82, "{d:?}"),
        other => panic!("expected DISCONNECT 0x82, got {other:?}"),
    }
}

#[tokio::test]
async fn preregistration_checks_the_key_the_hardware_id_and_the_caller() {
    let srv = Server::start().await;
    let (pk, _) = srv.product(false, false).await;
    let (_, good) = key_pair();
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    // Not base64, 31 bytes, and 32 bytes that are no point of the curve (y = 2).
    let mut off_curve = [0u8; 32];
    off_curve[0] = 2;
    for bad in ["not base64!".to_owned(), b64(&[1; 31]), b64(&off_curve)] {
        let (s, v) = preregister(&srv, &pk, "hw-bad", &bad).await;
        assert_error(s, &v, 400, "INVALID_REQUEST");
    }
    let (s, v) = preregister(&srv, &pk, "hw 1", &good).await;
    assert_error(s, &v, 400, "INVALID_REQUEST");
    // Fields other than the two are refused.
    let (s, v) = srv
        .admin(
            "POST",
            &format!("/v1/products/{pk}/devices"),
            Some(json!({"hardware_id": "hw-x", "public_key": {"ed25519": good, "rsa": "x"}})),
        )
        .await;
    assert_eq!(s, 400, "{v}");

    let (s, v) = preregister(&srv, &pk, "hw-1", &good).await;
    assert_eq!(s, 201, "{v}");
    let did = v["did"].as_str().unwrap().to_owned();
    assert_eq!(v.as_object().unwrap().len(), 1, "only the did: {v}");
    let (s, v) = preregister(&srv, &pk, "hw-1", &good).await;
    assert_error(s, &v, 409, "CONFLICT");
    let (s, v) = preregister(&srv, "pk_unknown", "hw-2", &good).await;
    assert_error(s, &v, 404, "NOT_FOUND");
    // No token.
    let (s, v) = srv
        .call(
            "POST",
            &format!("/v1/products/{pk}/devices"),
            None,
            Some(json!({"hardware_id": "hw-3", "public_key": {"ed25519": good}})),
        )
        .await;
    assert_error(s, &v, 401, "UNAUTHORIZED");

    // Audited, naming the device and the method.
    let store = rampart_store::Store::open_sqlite(&srv.data().join("rampart.db"))
        .await
        .unwrap();
    let rows = store
        .list_audit(Some("device.register"), 100)
        .await
        .unwrap();
    store.close().await;
    let created = rows
        .iter()
        .find(|r| r.target.as_deref() == Some(&format!("device:{did}")))
        .expect("an audit entry for the new device");
    assert_eq!(created.outcome, "ok created");
    assert!(
        created
            .detail
            .as_deref()
            .unwrap()
            .contains("method=ed25519"),
        "{created:?}"
    );
    assert!(rows.iter().any(|r| r.outcome.starts_with("refused")
        && r.target.as_deref() == Some(&format!("product:{pk}"))));
}

/// A device that never answers the challenge is closed at the connect timeout, without a
/// CONNACK; the server goes on serving.
#[tokio::test]
async fn an_unanswered_challenge_ends_at_the_connect_timeout() {
    let srv = Server::start_with(&[("RAMPART_MQTT__CONNECT_TIMEOUT_SECS", "1")]).await;
    let (_, did, sk) = key_device(&srv).await;
    let mut silent = Mqtt5::open(&srv).await;
    silent.connect(&did, METHOD).await;
    silent.challenge().await;
    assert_eq!(silent.recv().await, None, "closed with no CONNACK");
    let mut c = Mqtt5::open(&srv).await;
    let (code, _, _) = c.handshake(&did, |n| signed(&sk, &did, n)).await;
    assert_eq!(code, 0);
}

/// The device's connect rates count the challenges it answered, as they count passwords; wrong
/// signatures count nothing (nobody can use up another's device).
#[tokio::test]
async fn the_device_connect_rate_counts_answered_challenges_only() {
    let srv = Server::start_with(&[("RAMPART_MQTT__LIMITS__DEVICE_CONNECT_PER_SECOND", "0")]).await;
    let (_, did, sk) = key_device(&srv).await;
    let (other, _) = key_pair();
    for _ in 0..12 {
        let mut c = Mqtt5::open(&srv).await;
        let (code, _, _) = c.handshake(&did, |n| signed(&other, &did, n)).await;
        assert_eq!(code, 0x87);
    }
    for _ in 0..10 {
        let mut c = Mqtt5::open(&srv).await;
        let (code, _, _) = c.handshake(&did, |n| signed(&sk, &did, n)).await;
        assert_eq!(code, 0);
        c.send(Packet::Disconnect(mqtt::Disconnect {
            code: 0,
            properties: Properties::default(),
        }))
        .await;
        assert_eq!(c.recv().await, None);
    }
    let mut c = Mqtt5::open(&srv).await;
    let (code, props, _) = c.handshake(&did, |n| signed(&sk, &did, n)).await;
    assert_eq!(code, 0x9F, "{props:?}");
    let why = props.reason_string.unwrap_or_default();
    assert!(why.contains("mqtt.device_connect.per_minute"), "{why}");
}
