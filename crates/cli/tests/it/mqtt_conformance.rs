//! MQTT 5 conformance of what the gateway sends: every reason code is one the specification lists
//! for its packet type, and PUBACKs follow PUBLISH order. Every packet any raw test reads passes
//! [`assert_reason_codes`] (`raw::read_packet` calls it); the test below walks each path that makes
//! a reason code. Strict third-party clients (Paho Python, `mosquitto_pub -V 5`) then meet the same
//! paths, since rumqttc does not validate reason codes.

use crate::mqtt::raw::{self, body, frame, read_packet, string};
use crate::support::*;
use std::process::Command;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Whether the MQTT 5.0 specification lets a server send `code` in `packet`. Written out from the
/// specification's tables independently of the codec's own (`reason::Carrier`), so that one
/// cannot confirm a mistake in the other.
fn spec_allows(packet: &str, code: u8) -> bool {
    match packet {
        // 3.2.2.2
        "CONNACK" => {
            matches!(code, 0x00 | 0x80..=0x8A | 0x8C | 0x90 | 0x95 | 0x97 | 0x99..=0x9D | 0x9F)
        }
        // 3.4.2.1, 3.5.2.1
        "PUBACK" | "PUBREC" => matches!(
            code,
            0x00 | 0x10 | 0x80 | 0x83 | 0x87 | 0x90 | 0x91 | 0x97 | 0x99
        ),
        // 3.6.2.1, 3.7.2.1
        "PUBREL" | "PUBCOMP" => matches!(code, 0x00 | 0x92),
        // 3.9.3
        "SUBACK" => matches!(
            code,
            0x00..=0x02 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91 | 0x97 | 0x9E | 0xA1 | 0xA2
        ),
        // 3.11.3
        "UNSUBACK" => matches!(code, 0x00 | 0x11 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91),
        // 3.14.2.1, the codes a server may send (0x04, disconnect with will, is the client's)
        "DISCONNECT" => {
            matches!(code, 0x00 | 0x80..=0x83 | 0x87 | 0x89 | 0x8B | 0x8D..=0x90 | 0x93..=0xA2)
        }
        // 3.15.2.1
        "AUTH" => matches!(code, 0x00 | 0x18 | 0x19),
        _ => false,
    }
}

/// The reason codes a packet from the server carries, with its type's name. Works for both
/// protocol versions without knowing which: a 3.1.1 acknowledgement is recognised by its length
/// (no code), a 3.1.1 CONNACK by having no properties (return codes 0-5).
fn reason_codes(packet: &[u8]) -> Vec<(&'static str, u8)> {
    let b = body(packet);
    // Property length (a Variable Byte Integer) at the front of `b`: (value, bytes).
    let props = |b: &[u8]| -> (usize, usize) {
        let (mut n, mut i) = (0usize, 0usize);
        while i < b.len() {
            n |= usize::from(b[i] & 0x7F) << (7 * i);
            i += 1;
            if b[i - 1] & 0x80 == 0 {
                break;
            }
        }
        (n, i)
    };
    match packet[0] >> 4 {
        2 if b.len() == 2 => {
            assert!(b[1] <= 5, "MQTT 3.1.1 CONNACK return code {:#04x}", b[1]);
            vec![]
        }
        2 => vec![("CONNACK", b[1])],
        4..=7 if b.len() <= 2 => vec![],
        4 => vec![("PUBACK", b[2])],
        5 => vec![("PUBREC", b[2])],
        6 => vec![("PUBREL", b[2])],
        7 => vec![("PUBCOMP", b[2])],
        9 => {
            let v311 = b[2..].iter().all(|c| matches!(c, 0..=2 | 0x80));
            let (n, i) = props(&b[2..]);
            let v5: Vec<_> = b
                .get(2 + i + n..)
                .unwrap_or(&[])
                .iter()
                .map(|&c| ("SUBACK", c))
                .collect();
            // Read as 3.1.1 when it parses as that (3.1.1's codes are a subset of MQTT 5's).
            if v311 && (v5.is_empty() || v5.iter().any(|&(p, c)| !spec_allows(p, c))) {
                vec![]
            } else {
                v5
            }
        }
        11 if b.len() == 2 => vec![],
        11 => {
            let (n, i) = props(&b[2..]);
            b[2 + i + n..].iter().map(|&c| ("UNSUBACK", c)).collect()
        }
        14 => b
            .first()
            .map(|&c| vec![("DISCONNECT", c)])
            .unwrap_or_default(),
        15 => b.first().map(|&c| vec![("AUTH", c)]).unwrap_or_default(),
        _ => vec![],
    }
}

/// Every reason code in `packet` (as read off the wire, fixed header included) is allowed for
/// its packet type.
pub(crate) fn assert_reason_codes(packet: &[u8]) {
    for (name, code) in reason_codes(packet) {
        assert!(
            spec_allows(name, code),
            "{name} with reason code {code:#04x}, which the MQTT 5.0 specification does not allow \
             there: {packet:02x?}"
        );
    }
}

/// The reason codes seen so far, by packet type; a short acknowledgement counts as success.
#[derive(Default)]
struct Seen(std::collections::BTreeSet<(&'static str, u8)>);

impl Seen {
    /// Read the next packet (checked by `read_packet`), note its codes and return it.
    async fn next(&mut self, s: &mut TcpStream) -> Vec<u8> {
        let p = tokio::time::timeout(Duration::from_secs(10), read_packet(s))
            .await
            .expect("no answer from the server");
        let codes = reason_codes(&p);
        let name = match p[0] >> 4 {
            2 => "CONNACK",
            4 => "PUBACK",
            5 => "PUBREC",
            6 => "PUBREL",
            7 => "PUBCOMP",
            11 => "UNSUBACK",
            14 => "DISCONNECT",
            _ => "",
        };
        if codes.is_empty() && !name.is_empty() {
            self.0.insert((name, 0));
        }
        self.0.extend(codes);
        p
    }

    /// Send `packet` and expect an answer of type `first` with reason `code` (the last code of a
    /// SUBACK or UNSUBACK).
    async fn answer(&mut self, s: &mut TcpStream, packet: &[u8], first: u8, code: u8) -> Vec<u8> {
        s.write_all(packet).await.unwrap();
        let p = self.next(s).await;
        let got = reason_codes(&p).last().map_or(0, |&(_, c)| c);
        assert_eq!((p[0], got), (first, code), "{p:02x?}");
        p
    }

    /// Send `packet` and expect DISCONNECT `code`, then the end of the connection.
    async fn disconnect(&mut self, s: &mut TcpStream, packet: &[u8], code: u8) {
        self.answer(s, packet, 0xE0, code).await;
        raw::expect_closed(s).await;
    }

    /// CONNECT on a new plain connection; the stream and the CONNACK's code.
    async fn connect(&mut self, srv: &Server, connect: &[u8]) -> (TcpStream, u8) {
        let (s, p) = raw::connect_with(srv, connect).await;
        assert_eq!(p[0], 0x20, "CONNACK expected: {p:02x?}");
        let code = body(&p)[1];
        let name = if body(&p).len() == 2 {
            "CONNACK (3.1.1)"
        } else {
            "CONNACK"
        };
        self.0.insert((name, code));
        (s, code)
    }

    /// A new MQTT 5 session of `did` (fresh credentials each time).
    async fn session(
        &mut self,
        srv: &Server,
        did: &str,
        secret: &str,
        keepalive: u16,
    ) -> TcpStream {
        let (u, p) = creds_at(did, secret, now_ms() + fresh());
        let (s, code) = self
            .connect(srv, &raw::connect_v5_keepalive(did, &u, &p, keepalive))
            .await;
        assert_eq!(code, 0x00, "CONNACK success expected");
        s
    }
}

/// A distinct millisecond offset per call, so that no two CONNECTs reuse a `ts`.
fn fresh() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static N: AtomicI64 = AtomicI64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

fn unsubscribe_v5(pid: u16, filter: &str) -> Vec<u8> {
    let mut b = pid.to_be_bytes().to_vec();
    b.push(0); // no properties
    string(&mut b, filter.as_bytes());
    frame(0xA2, b)
}

/// Each path of the gateway that answers with a reason code, walked once: the answer has the
/// expected code, and every code seen is allowed for its packet (checked as each packet is read).
/// The set of codes seen at the end shows that every path was reached.
#[tokio::test]
async fn every_reason_code_path_sends_a_code_its_packet_may_carry() {
    // Without a connect burst, a device's second CONNECT within a second is refused: one of the
    // paths below.
    let srv = Server::process_with(&[
        ("RAMPART_MQTT__MAX_PACKET_SIZE", "4096"),
        ("RAMPART_MQTT__LIMITS__DEVICE_CONNECT_BURST", "1"),
    ])
    .await;
    let mut seen = Seen::default();

    // CONNACK: success, bad password, a will outside the namespace, the device's connect rate,
    // and the 3.1.1 forms (bad password, unsupported protocol level).
    let (_, did, secret) = srv.device().await;
    let (u, _) = creds(&did, &secret);
    let (_, code) = seen
        .connect(
            &srv,
            &raw::connect_v5_keepalive(&did, &u, &"0".repeat(64), 30),
        )
        .await;
    assert_eq!(code, 0x86);
    let (_, code) = seen
        .connect(&srv, &raw::connect_v311(&did, &u, &"0".repeat(64)))
        .await;
    assert_eq!(code, 0x04);
    let (_, other, _) = srv.device().await;
    let (u, p) = creds(&did, &secret);
    let will = raw::connect_v5_full(
        &did,
        &u,
        &p,
        30,
        &[],
        Some((&[], &format!("dev/{other}/up"), b"x")),
    );
    assert_eq!(seen.connect(&srv, &will).await.1, 0x87);
    let (_, did, secret) = srv.device().await;
    let _first = seen.session(&srv, &did, &secret, 30).await;
    let (u, p) = creds_at(&did, &secret, now_ms() + fresh());
    let (_, code) = seen
        .connect(&srv, &raw::connect_v5_keepalive(&did, &u, &p, 30))
        .await;
    assert_eq!(code, 0x9F, "a second CONNECT of the device within a second");
    let mut level3 = Vec::new();
    string(&mut level3, b"MQIsdp");
    level3.extend_from_slice(&[3, 0x02, 0, 30]);
    string(&mut level3, b"x");
    assert_eq!(
        seen.connect(&srv, &frame(0x10, level3.clone())).await.1,
        0x01
    );

    // PUBACK and the QoS 2 exchange: accepted, invalid, over the report rate.
    let (did, secret) = srv.device_with_rate(60).await; // a burst of 5
    let mut s = seen.session(&srv, &did, &secret, 30).await;
    let (up, state) = (format!("dev/{did}/up"), format!("dev/{did}/state"));
    seen.answer(
        &mut s,
        &raw::publish_qos1_v5(&up, 1, br#"{"power":true}"#),
        0x40,
        0x00,
    )
    .await;
    seen.answer(
        &mut s,
        &raw::publish_qos1_v5(&up, 2, br#"{"power":5}"#),
        0x40,
        0x99,
    )
    .await;
    seen.answer(
        &mut s,
        &raw::publish_v5(0x34, &state, 3, &[], b"x"),
        0x50,
        0x00,
    )
    .await;
    seen.answer(&mut s, &[0x62, 0x02, 0x00, 0x03], 0x70, 0x00)
        .await;
    seen.answer(&mut s, &[0x62, 0x02, 0x00, 0x09], 0x70, 0x92)
        .await; // PUBREL for nothing
    seen.answer(&mut s, &[0x50, 0x02, 0x00, 0x0A], 0x62, 0x92)
        .await; // a stray PUBREC
    seen.answer(
        &mut s,
        &raw::publish_qos1_v5(&up, 4, br#"{"power":true}"#),
        0x40,
        0x00,
    )
    .await;
    seen.answer(
        &mut s,
        &raw::publish_qos1_v5(&up, 5, br#"{"power":true}"#),
        0x40,
        0x00,
    )
    .await;
    seen.answer(
        &mut s,
        &raw::publish_qos1_v5(&up, 6, br#"{"power":true}"#),
        0x40,
        0x97,
    )
    .await;
    seen.answer(
        &mut s,
        &raw::publish_v5(0x34, &state, 7, &[], b"x"),
        0x50,
        0x97,
    )
    .await;

    // SUBACK and UNSUBACK: granted, a filter too long, over the subscription cap, unsubscribe
    // from one that exists and one that does not; then outside the namespace (SUBACK and
    // DISCONNECT 0x87).
    let (_, did, secret) = srv.device().await;
    let mut s = seen.session(&srv, &did, &secret, 30).await;
    let long = format!("dev/{did}/{}", "f".repeat(300));
    seen.answer(&mut s, &raw::subscribe_v5(1, &long), 0x90, 0x8F)
        .await;
    for i in 1..=50u16 {
        let filter = format!("dev/{did}/s{i}");
        seen.answer(&mut s, &raw::subscribe_v5(i, &filter), 0x90, 0x01)
            .await;
    }
    seen.answer(
        &mut s,
        &raw::subscribe_v5(51, &format!("dev/{did}/s51")),
        0x90,
        0x97,
    )
    .await;
    seen.answer(
        &mut s,
        &unsubscribe_v5(52, &format!("dev/{did}/s1")),
        0xB0,
        0x00,
    )
    .await;
    seen.answer(
        &mut s,
        &unsubscribe_v5(53, &format!("dev/{did}/nothing")),
        0xB0,
        0x11,
    )
    .await;
    seen.answer(&mut s, &raw::subscribe_v5(54, "dev/+/down"), 0x90, 0x87)
        .await;
    let d = seen.next(&mut s).await;
    assert_eq!((d[0], body(&d)[0]), (0xE0, 0x87), "{d:02x?}");

    // Publishing outside the namespace: PUBACK / PUBREC 0x87, then DISCONNECT 0x87.
    for first in [0x32u8, 0x34] {
        let (_, did, secret) = srv.device().await;
        let mut s = seen.session(&srv, &did, &secret, 30).await;
        let ack = if first == 0x32 { 0x40 } else { 0x50 };
        let publish = raw::publish_v5(first, &format!("dev/{other}/up"), 1, &[], b"{}");
        seen.answer(&mut s, &publish, ack, 0x87).await;
        let d = seen.next(&mut s).await;
        assert_eq!((d[0], body(&d)[0]), (0xE0, 0x87), "{d:02x?}");
    }

    // DISCONNECT for each way a session can be closed by the server.
    let fresh_session = async |seen: &mut Seen| {
        let (_, did, secret) = srv.device().await;
        let s = seen.session(&srv, &did, &secret, 30).await;
        (did, secret, s)
    };
    // a second CONNECT, also one of another protocol level (0x84 is a CONNACK-only code)
    let (did, secret, mut s) = fresh_session(&mut seen).await;
    let (u, p) = creds_at(&did, &secret, now_ms() + fresh());
    seen.disconnect(&mut s, &raw::connect_v5_keepalive(&did, &u, &p, 30), 0x82)
        .await;
    let (_, _, mut s) = fresh_session(&mut seen).await;
    seen.disconnect(&mut s, &frame(0x10, level3), 0x82).await;
    // a reason code the client may not send (0x96 on a PUBACK)
    let (_, _, mut s) = fresh_session(&mut seen).await;
    seen.disconnect(&mut s, &[0x40, 0x03, 0x00, 0x01, 0x96], 0x82)
        .await;
    // malformed (a topic that is not UTF-8)
    let (did, _, mut s) = fresh_session(&mut seen).await;
    let mut b = Vec::new();
    string(
        &mut b,
        &[format!("dev/{did}/").as_bytes(), &[0xC3, 0x28]].concat(),
    );
    b.push(0);
    seen.disconnect(&mut s, &frame(0x30, b), 0x81).await;
    // too large, topic too long, a topic alias out of range
    let (did, _, mut s) = fresh_session(&mut seen).await;
    let big = raw::publish_v5(0x30, &format!("dev/{did}/up"), 0, &[], &[b' '; 4096]);
    seen.disconnect(&mut s, &big, 0x95).await;
    let (did, _, mut s) = fresh_session(&mut seen).await;
    let topic = format!("dev/{did}/{}", "t".repeat(260));
    seen.disconnect(&mut s, &raw::publish_v5(0x30, &topic, 0, &[], b"{}"), 0x90)
        .await;
    let (did, _, mut s) = fresh_session(&mut seen).await;
    let alias = raw::publish_v5(
        0x30,
        &format!("dev/{did}/up"),
        0,
        &[0x23, 0xEA, 0x60],
        b"{}",
    );
    seen.disconnect(&mut s, &alias, 0x94).await; // alias 60000, over the announced maximum
                                                 // more QoS 2 publishes awaiting PUBREL than the receive maximum
    let (did, secret) = srv.device_with_rate(60_000).await;
    let mut s = seen.session(&srv, &did, &secret, 30).await;
    let state = format!("dev/{did}/state");
    let burst: Vec<u8> = (1..=100u16)
        .flat_map(|pid| raw::publish_v5(0x34, &state, pid, &[], b"x"))
        .collect();
    s.write_all(&burst).await.unwrap();
    for _ in 1..=100 {
        seen.next(&mut s).await;
    }
    seen.disconnect(&mut s, &raw::publish_v5(0x34, &state, 101, &[], b"x"), 0x93)
        .await;
    // sustained publishing over the report rate
    let (did, secret) = srv.device_with_rate(60).await;
    let mut s = seen.session(&srv, &did, &secret, 30).await;
    let up = format!("dev/{did}/up");
    let flood: Vec<u8> = (0..100)
        .flat_map(|_| raw::publish_v5(0x30, &up, 0, &[], br#"{"power":false}"#))
        .collect();
    seen.disconnect(&mut s, &flood, 0x96).await;
    // keepalive
    let (_, did, secret) = srv.device().await;
    let mut s = seen.session(&srv, &did, &secret, 1).await;
    let d = seen.next(&mut s).await;
    assert_eq!((d[0], body(&d)[0]), (0xE0, 0x8D), "{d:02x?}");
    // taken over by a newer connection of the same device
    let (_, did, secret) = srv.device().await;
    let mut old = seen.session(&srv, &did, &secret, 30).await;
    // the device's connect rate: 1/s (a process: its clock cannot be moved)
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let _new = seen.session(&srv, &did, &secret, 30).await;
    let d = seen.next(&mut old).await;
    assert_eq!((d[0], body(&d)[0]), (0xE0, 0x8E), "{d:02x?}");
    // the device rotating its secret: the session of the old one is closed
    let (pk, ps) = srv.product(true, false).await;
    let hw = format!("hw-{}", nonce());
    let (did, secret, _) = srv.register(&pk, &ps, &hw).await;
    let mut s = seen.session(&srv, &did, &secret, 30).await;
    srv.register_again(&pk, &ps, &hw, &secret).await;
    let d = seen.next(&mut s).await;
    assert_eq!((d[0], body(&d)[0]), (0xE0, 0x98), "{d:02x?}");
    // the server shutting down
    let (_, _, mut s) = fresh_session(&mut seen).await;
    srv.terminate();
    let d = seen.next(&mut s).await;
    assert_eq!((d[0], body(&d)[0]), (0xE0, 0x8B), "{d:02x?}");

    let expected: &[(&str, u8)] = &[
        ("CONNACK", 0x00),
        ("CONNACK", 0x86),
        ("CONNACK", 0x87),
        ("CONNACK", 0x9F),
        ("CONNACK (3.1.1)", 0x01),
        ("CONNACK (3.1.1)", 0x04),
        ("DISCONNECT", 0x81),
        ("DISCONNECT", 0x82),
        ("DISCONNECT", 0x87),
        ("DISCONNECT", 0x8B),
        ("DISCONNECT", 0x8D),
        ("DISCONNECT", 0x8E),
        ("DISCONNECT", 0x90),
        ("DISCONNECT", 0x93),
        ("DISCONNECT", 0x94),
        ("DISCONNECT", 0x95),
        ("DISCONNECT", 0x96),
        ("DISCONNECT", 0x98),
        ("PUBACK", 0x00),
        ("PUBACK", 0x87),
        ("PUBACK", 0x97),
        ("PUBACK", 0x99),
        ("PUBCOMP", 0x00),
        ("PUBCOMP", 0x92),
        ("PUBREC", 0x00),
        ("PUBREC", 0x87),
        ("PUBREC", 0x97),
        ("PUBREL", 0x92),
        ("SUBACK", 0x01),
        ("SUBACK", 0x87),
        ("SUBACK", 0x8F),
        ("SUBACK", 0x97),
        ("UNSUBACK", 0x00),
        ("UNSUBACK", 0x11),
    ];
    let got: Vec<_> = seen.0.iter().copied().collect();
    assert_eq!(got, expected);
}

/// A burst of accepted, invalid (0x99) and rate-refused (0x97) QoS 1 publishes written at once:
/// the PUBACKs come back in PUBLISH order, although the accepted ones wait for their commit and
/// the refused ones are known at once (MQTT-4.6.0-2).
#[tokio::test]
async fn pubacks_follow_publish_order_across_accepted_refused_and_invalid() {
    let srv = Server::start().await;
    let (did, secret) = srv.device_with_rate(60).await; // a burst of 5
    let mut s = raw::session(&srv, &did, &secret, 30).await;
    let up = format!("dev/{did}/up");
    let burst: Vec<u8> = (1..=12u16)
        .flat_map(|pid| {
            let payload: &[u8] = if pid % 3 == 2 {
                br#"{"power":5}"#
            } else {
                br#"{"power":true}"#
            };
            raw::publish_qos1_v5(&up, pid, payload)
        })
        .collect();
    s.write_all(&burst).await.unwrap();
    let mut got = Vec::new();
    for _ in 1..=12 {
        let ack = tokio::time::timeout(Duration::from_secs(10), read_packet(&mut s))
            .await
            .expect("a PUBACK");
        assert_eq!(ack[0], 0x40, "{ack:02x?}");
        let b = body(&ack);
        got.push((
            u16::from_be_bytes([b[0], b[1]]),
            b.get(2).copied().unwrap_or(0),
        ));
    }
    // The first five pass the rate (those with an out-of-range value are invalid), the rest
    // are over it.
    let expected: Vec<(u16, u8)> = (1..=12u16)
        .map(|pid| match pid {
            6.. => (pid, 0x97),
            _ if pid % 3 == 2 => (pid, 0x99),
            _ => (pid, 0x00),
        })
        .collect();
    assert_eq!(got, expected);
}

/// The Python interpreter that has paho-mqtt: `PAHO_PYTHON`, else `python3`. `None` (with the
/// reason printed) when there is none, so that the test is skipped.
pub(crate) fn paho_python(test: &str) -> Option<String> {
    let python = std::env::var("PAHO_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import paho.mqtt.client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "skipping {test}: {python} cannot import paho.mqtt (pip install paho-mqtt, or set \
             PAHO_PYTHON to a Python that has it; .ci/run does)"
        );
    }
    ok.then_some(python)
}

/// Run the Paho device script over MQTT 5 / TLS as `did` with `scenario` on `topic`; its result.
async fn paho(
    python: &str,
    srv: &Server,
    did: &str,
    secret: &str,
    scenario: &str,
    topic: &str,
) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/strict/paho_device.py");
    let (u, p) = creds_at(did, secret, now_ms() + fresh());
    let args = [
        script.to_owned(),
        "localhost".into(),
        srv.mqtt_tls.to_string(),
        srv.ca_path().to_string_lossy().into_owned(),
        did.to_owned(),
        u,
        p,
        scenario.to_owned(),
        topic.to_owned(),
    ];
    let python = python.to_owned();
    let out = tokio::task::spawn_blocking(move || Command::new(python).args(args).output())
        .await
        .unwrap()
        .expect("run the Paho script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// (mid, reason code) of each acknowledgement, in the order Paho saw them.
fn paho_acks(v: &serde_json::Value) -> Vec<(u64, u64)> {
    v["acks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["mid"].as_u64().unwrap(), a["rc"].as_u64().unwrap()))
        .collect()
}

/// A device a little over its report rate stays connected under a strict client: the refused
/// reports are answered 0x97 (quota exceeded), in order, and Paho sees no protocol error.
#[tokio::test]
async fn strict_client_over_the_report_rate_stays_connected() {
    let Some(python) = paho_python("strict_client_over_the_report_rate_stays_connected") else {
        return;
    };
    let srv = Server::start().await;
    let (did, secret) = srv.device_with_rate(60).await;
    let v = paho(
        &python,
        &srv,
        &did,
        &secret,
        "burst",
        &format!("dev/{did}/up"),
    )
    .await;
    assert_eq!(v["connack"], 0, "{v}");
    let acks = paho_acks(&v);
    let sent: Vec<u64> = v["sent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_u64().unwrap())
        .collect();
    assert_eq!(
        acks.iter().map(|a| a.0).collect::<Vec<_>>(),
        sent,
        "in order: {v}"
    );
    assert!(acks[..5].iter().all(|a| a.1 == 0), "{v}");
    let refused = acks.iter().filter(|a| a.1 == 0x97).count();
    assert!(refused >= 14, "{v}");
    assert_eq!(
        refused + acks.iter().filter(|a| a.1 == 0).count(),
        20,
        "{v}"
    );
    // 0 is Paho's "normal disconnection": the client's own, at the end.
    assert_eq!(
        (&v["disconnect"], &v["errors"]),
        (&serde_json::json!(0), &serde_json::json!([])),
        "{v}"
    );
}

/// Invalid reports (0x99) and rate refusals (0x97) among accepted ones, under a strict client:
/// every acknowledgement in PUBLISH order, the connection kept.
#[tokio::test]
async fn strict_client_gets_invalid_reports_refused_in_order() {
    let Some(python) = paho_python("strict_client_gets_invalid_reports_refused_in_order") else {
        return;
    };
    let srv = Server::start().await;
    let (did, secret) = srv.device_with_rate(60).await;
    let v = paho(
        &python,
        &srv,
        &did,
        &secret,
        "mixed",
        &format!("dev/{did}/up"),
    )
    .await;
    let codes: Vec<u64> = paho_acks(&v).iter().map(|a| a.1).collect();
    assert_eq!(
        codes,
        [0, 0x99, 0, 0x99, 0, 0x97, 0x97, 0x97, 0x97, 0x97],
        "{v}"
    );
    let mids: Vec<u64> = paho_acks(&v).iter().map(|a| a.0).collect();
    assert_eq!(serde_json::json!(mids), v["sent"], "{v}");
    assert_eq!(
        (&v["disconnect"], &v["errors"]),
        (&serde_json::json!(0), &serde_json::json!([])),
        "{v}"
    );
}

/// Publishing outside the device's namespace, under a strict client: PUBACK 0x87, then
/// DISCONNECT 0x87 (not authorized), which Paho takes as the server's decision, not an error.
#[tokio::test]
async fn strict_client_outside_the_namespace_is_not_authorized() {
    let Some(python) = paho_python("strict_client_outside_the_namespace_is_not_authorized") else {
        return;
    };
    let srv = Server::start().await;
    let (_, did, secret) = srv.device().await;
    let (_, other, _) = srv.device().await;
    let v = paho(
        &python,
        &srv,
        &did,
        &secret,
        "outside",
        &format!("dev/{other}/up"),
    )
    .await;
    assert_eq!(
        paho_acks(&v).iter().map(|a| a.1).collect::<Vec<_>>(),
        [0x87],
        "{v}"
    );
    assert_eq!(
        (&v["disconnect"], &v["errors"]),
        (&serde_json::json!(0x87), &serde_json::json!([])),
        "{v}"
    );
}

/// `mosquitto_pub -V 5` over its report rate: the refusals show as PUBACK reason 151 (0x97) and
/// the client finishes normally.
#[tokio::test]
async fn mosquitto_pub_v5_over_the_report_rate_finishes_normally() {
    if Command::new("mosquitto_pub")
        .arg("--help")
        .output()
        .is_err()
    {
        eprintln!(
            "skipping mosquitto_pub_v5_over_the_report_rate_finishes_normally: mosquitto_pub is \
             not installed (apt-get install mosquitto-clients)"
        );
        return;
    }
    let srv = Server::start().await;
    let (did, secret) = srv.device_with_rate(60).await;
    let (u, p) = creds_at(&did, &secret, now_ms() + fresh());
    let args: Vec<String> = [
        "-V",
        "mqttv5",
        "-h",
        "localhost",
        "-p",
        &srv.mqtt_tls.to_string(),
        "--cafile",
        &srv.ca_path().to_string_lossy(),
        "-i",
        &did,
        "-u",
        &u,
        "-P",
        &p,
        "-t",
        &format!("dev/{did}/up"),
        "-q",
        "1",
        "-m",
        r#"{"power":true}"#,
        "--repeat",
        "10",
        "--repeat-delay",
        "0",
        "-d",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out =
        tokio::task::spawn_blocking(move || Command::new("mosquitto_pub").args(args).output())
            .await
            .unwrap()
            .unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{log}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(log.contains("RC:151"), "a refusal with 0x97: {log}");
    assert!(!log.contains("RC:150"), "{log}");
}
