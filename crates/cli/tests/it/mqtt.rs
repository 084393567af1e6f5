//! The MQTT gateway with rumqttc as the device: authentication refusals, the topic namespace, report
//! validation, QoS 1 and 2, wills, presence and session takeover, over MQTT 3.1.1 and 5.0 with TLS.

use crate::support::*;
use rumqttc::v5::mqttbytes::v5 as p5;
use rumqttc::v5::mqttbytes::QoS as Q5;
use rumqttc::{ConnectReturnCode, ConnectionError, Event, Packet, QoS};
use serde_json::json;
use std::time::Duration;

/// The reason code of a server DISCONNECT, as rumqttc reports it.
fn server_disconnect(
    e: Result<rumqttc::v5::Event, rumqttc::v5::ConnectionError>,
) -> Option<p5::DisconnectReasonCode> {
    match e {
        Ok(rumqttc::v5::Event::Incoming(p5::Packet::Disconnect(d))) => Some(d.reason_code),
        Err(rumqttc::v5::ConnectionError::MqttState(
            rumqttc::v5::StateError::ServerDisconnect { reason_code, .. },
        )) => Some(reason_code),
        _ => None,
    }
}

pub(crate) async fn v4_refusal(
    srv: &Server,
    client_id: &str,
    user: &str,
    pass: &str,
) -> ConnectReturnCode {
    let (_c, mut el) = rumqttc::AsyncClient::new(v4_options(srv, client_id, user, pass), 10);
    v4_until(&mut el, |e| match e {
        Err(ConnectionError::ConnectionRefused(code)) => Some(code),
        Ok(Event::Incoming(Packet::ConnAck(_))) => panic!("connection accepted"),
        _ => None,
    })
    .await
}

async fn v5_refusal(
    srv: &Server,
    client_id: &str,
    user: &str,
    pass: &str,
) -> p5::ConnectReturnCode {
    let (_c, mut el) = rumqttc::v5::AsyncClient::new(v5_options(srv, client_id, user, pass), 10);
    v5_until(&mut el, |e| match e {
        Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => Some(code),
        Ok(rumqttc::v5::Event::Incoming(p5::Packet::ConnAck(_))) => panic!("connection accepted"),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn connect_refusals_v311() {
    let srv = Server::start().await;
    let (_, did, secret) = srv.device().await;
    let (u, p) = creds(&did, "wrong-secret");
    assert_eq!(
        v4_refusal(&srv, &did, &u, &p).await,
        ConnectReturnCode::BadUserNamePassword
    );
    let (u, p) = creds_at(&did, &secret, now_ms() - 400_000);
    assert_eq!(
        v4_refusal(&srv, &did, &u, &p).await,
        ConnectReturnCode::BadUserNamePassword
    );
    assert_eq!(
        v4_refusal(&srv, &did, "garbage", "x").await,
        ConnectReturnCode::BadUserNamePassword
    );
    let (u, p) = creds("nosuchdevice", &secret);
    assert_eq!(
        v4_refusal(&srv, "nosuchdevice", &u, &p).await,
        ConnectReturnCode::BadUserNamePassword
    );
    // a valid identity under another client id
    let (u, p) = creds(&did, &secret);
    assert_eq!(
        v4_refusal(&srv, "someone-else", &u, &p).await,
        ConnectReturnCode::NotAuthorized
    );
    // the (did, ts) pair was used above, even though the client id was wrong: a replay is refused
    assert_eq!(
        v4_refusal(&srv, &did, &u, &p).await,
        ConnectReturnCode::BadUserNamePassword
    );
    // refusals are audited
    let log = rampart_store_audit_count(&srv).await;
    assert!(log >= 5, "only {log} audit rows");
}

/// Device-connect rows of the audit log.
pub(crate) async fn rampart_store_audit_count(srv: &Server) -> usize {
    // The audit table is not exposed over the API yet; count rows through SQLite directly.
    let url = format!("sqlite://{}", srv.data().join("rampart.db").display());
    let store = rampart_store::Store::open(&url).await.unwrap();
    let n = store
        .list_audit(Some("device.connect"), 1000)
        .await
        .unwrap()
        .len();
    store.close().await;
    n
}

#[tokio::test]
async fn connect_refusals_v5() {
    let srv = Server::start().await;
    let (_, did, secret) = srv.device().await;
    let (u, p) = creds(&did, "wrong-secret");
    assert_eq!(
        v5_refusal(&srv, &did, &u, &p).await,
        p5::ConnectReturnCode::BadUserNamePassword
    );
    let (u, p) = creds(&did, &secret);
    assert_eq!(
        v5_refusal(&srv, "other", &u, &p).await,
        p5::ConnectReturnCode::NotAuthorized
    );
}

#[tokio::test]
async fn reports_v311_valid_stored_invalid_dropped() {
    let srv = Server::start().await;
    let (_, did, secret) = srv.device().await;
    let (u, p) = creds(&did, &secret);
    let (c, mut el) = rumqttc::AsyncClient::new(v4_options(&srv, &did, &u, &p), 10);
    let up = format!("dev/{did}/up");
    c.publish(
        &up,
        QoS::AtLeastOnce,
        false,
        r#"{"power":true,"level":40,"temp":20.5}"#,
    )
    .await
    .unwrap();
    // invalid: out of range, unknown point, off-step, wrong type: each PUBACKed, dropped, connection stays
    for bad in [
        r#"{"level":101}"#,
        r#"{"nope":1}"#,
        r#"{"level":42}"#,
        r#"{"power":"yes"}"#,
        "not json",
    ] {
        c.publish(&up, QoS::AtLeastOnce, false, bad).await.unwrap();
    }
    c.publish(&up, QoS::AtMostOnce, false, r#"{"mode":"cool"}"#)
        .await
        .unwrap();
    c.publish(&up, QoS::ExactlyOnce, false, r#"{"temp":-3.5}"#)
        .await
        .unwrap();
    let mut acks = 0;
    v4_until(&mut el, |e| {
        match e {
            Ok(Event::Incoming(Packet::PubAck(_))) => acks += 1,
            Ok(Event::Incoming(Packet::PubComp(_))) => return Some(()),
            _ => {}
        }
        None
    })
    .await;
    assert_eq!(acks, 6);
    let v = srv.wait_state(&did, |v| v["state"]["mode"] == "cool").await;
    assert_eq!(
        v["state"],
        json!({"power": true, "level": 40, "temp": -3.5, "mode": "cool"})
    );
    assert_eq!(v["online"], true);
    let (s, h) = srv
        .admin(
            "GET",
            &format!("/v1/devices/{did}/history?point=temp"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let temps: Vec<f64> = h["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].as_f64().unwrap())
        .collect();
    assert_eq!(temps, vec![-3.5, 20.5]);
    disconnect_v4(&srv, &did, c, el).await;
}

#[tokio::test]
async fn invalid_report_v5_gets_0x99_and_connection_stays() {
    // rumqttc turns a PUBACK failure into an event-loop error and drops the connection itself, so
    // this test speaks MQTT 5 as hand-written bytes over the plain port.
    use tokio::io::AsyncWriteExt;
    let srv = Server::start().await;
    let (_, did, secret) = srv.device().await;
    let mut s = raw::session(&srv, &did, &secret, 30).await;
    let up = format!("dev/{did}/up");
    s.write_all(&raw::publish_qos1_v5(&up, 1, br#"{"level":7}"#))
        .await
        .unwrap();
    let ack = raw::read_packet(&mut s).await;
    assert_eq!(
        (ack[0], ack[2], ack[3], ack[4]),
        (0x40, 0x00, 0x01, 0x99),
        "PUBACK 0x99 expected: {ack:02x?}"
    );
    s.write_all(&raw::publish_qos1_v5(&up, 2, br#"{"level":10}"#))
        .await
        .unwrap();
    let ack = raw::read_packet(&mut s).await;
    assert_eq!(
        (ack[0], ack[2], ack[3]),
        (0x40, 0x00, 0x02),
        "PUBACK expected: {ack:02x?}"
    );
    assert!(ack.len() == 4 || ack[4] == 0x00, "{ack:02x?}");
    srv.wait_state(&did, |v| v["state"]["level"] == 10).await;
    s.write_all(&[0xE0, 0x00]).await.unwrap();
}

#[tokio::test]
async fn pipelined_reports_are_acknowledged_in_order_after_commit() {
    // Sixteen QoS 1 reports in one write, without waiting for any PUBACK: the session keeps
    // reading while earlier reports are committed, and the answers still come back in order,
    // the invalid one (pid 5) with 0x99 in its place. Every acknowledged report is in history.
    use tokio::io::AsyncWriteExt;
    let srv = Server::start().await;
    let (_, did, secret) = srv.device().await;
    let mut s = raw::session(&srv, &did, &secret, 30).await;
    let up = format!("dev/{did}/up");
    let mut burst = Vec::new();
    for pid in 1..=16u16 {
        let level = if pid == 5 { 7 } else { (pid % 20) * 5 };
        let body = format!(r#"{{"level":{level}}}"#);
        burst.extend(raw::publish_qos1_v5(&up, pid, body.as_bytes()));
    }
    s.write_all(&burst).await.unwrap();
    for pid in 1..=16u16 {
        let ack = raw::read_packet(&mut s).await;
        assert_eq!(ack[0], 0x40, "PUBACK expected: {ack:02x?}");
        assert_eq!(u16::from_be_bytes([ack[2], ack[3]]), pid, "{ack:02x?}");
        let code = if ack.len() > 4 { ack[4] } else { 0 };
        assert_eq!(
            code,
            if pid == 5 { 0x99 } else { 0x00 },
            "pid {pid}: {ack:02x?}"
        );
    }
    // Acknowledged means stored: the history holds the fifteen valid reports at once.
    let (status, hist) = srv
        .admin(
            "GET",
            &format!("/v1/devices/{did}/history?point=level&limit=100"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{hist}");
    let n = hist["data"].as_array().map_or(0, |a| a.len());
    assert_eq!(n, 15, "{hist}");
    assert_eq!(srv.state(&did).await["state"]["level"], 80);
    s.write_all(&[0xE0, 0x00]).await.unwrap();
}

#[tokio::test]
async fn report_rate_limit_answers_0x97_on_v5() {
    use tokio::io::AsyncWriteExt;
    let srv = Server::start().await;
    let (did, secret) = srv.device_with_rate(60).await;
    let mut s = raw::session(&srv, &did, &secret, 30).await;
    let up = format!("dev/{did}/up");
    // 60 per minute allows a burst of 5; 20 at once must see refusals, and the connection stays
    let mut codes = Vec::new();
    for pid in 1..=20u16 {
        s.write_all(&raw::publish_qos1_v5(&up, pid, br#"{"power":true}"#))
            .await
            .unwrap();
        let ack = raw::read_packet(&mut s).await;
        assert_eq!(ack[0], 0x40);
        codes.push(if ack.len() > 4 { ack[4] } else { 0 });
    }
    let refused = codes.iter().filter(|c| **c == 0x97).count();
    assert!(codes[..5].iter().all(|c| *c == 0), "{codes:02x?}");
    assert!(refused >= 14, "{codes:02x?}");
    assert_eq!(refused + codes.iter().filter(|c| **c == 0).count(), 20);
}

#[tokio::test]
async fn keepalive_expiry_closes_and_marks_offline() {
    use tokio::io::AsyncReadExt;
    let srv = Server::start().await;
    let (_, did, secret) = srv.device().await;
    let mut s = raw::session(&srv, &did, &secret, 1).await;
    srv.wait_state(&did, |v| v["online"] == true).await;
    // say nothing: after 1.5 s the server sends DISCONNECT 0x8D and closes
    let d = tokio::time::timeout(Duration::from_secs(5), raw::read_packet(&mut s))
        .await
        .unwrap();
    assert_eq!((d[0], d[2]), (0xE0, 0x8D), "{d:02x?}");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest).await;
    srv.wait_state(&did, |v| v["online"] == false).await;
}

#[tokio::test]
async fn topic_alias_and_qos2_duplicates() {
    use tokio::io::AsyncWriteExt;
    let srv = Server::start().await;
    let (_, did, secret) = srv.device().await;
    let mut s = raw::session(&srv, &did, &secret, 30).await;
    let up = format!("dev/{did}/up");
    // QoS 1 with topic alias 3 set, then a publish using only the alias
    s.write_all(&raw::publish_v5(
        0x32,
        &up,
        1,
        &[0x23, 0x00, 0x03],
        br#"{"level":5}"#,
    ))
    .await
    .unwrap();
    assert_eq!(
        raw::read_packet(&mut s).await[..4],
        [0x40, 0x02, 0x00, 0x01]
    );
    s.write_all(&raw::publish_v5(
        0x32,
        "",
        2,
        &[0x23, 0x00, 0x03],
        br#"{"level":15}"#,
    ))
    .await
    .unwrap();
    assert_eq!(
        raw::read_packet(&mut s).await[..4],
        [0x40, 0x02, 0x00, 0x02]
    );
    srv.wait_state(&did, |v| v["state"]["level"] == 15).await;
    // QoS 2 sent twice (DUP) before PUBREL is stored once
    s.write_all(&raw::publish_v5(0x34, &up, 9, &[], br#"{"level":20}"#))
        .await
        .unwrap();
    assert_eq!(
        raw::read_packet(&mut s).await[..4],
        [0x50, 0x02, 0x00, 0x09]
    );
    s.write_all(&raw::publish_v5(0x3C, &up, 9, &[], br#"{"level":20}"#))
        .await
        .unwrap();
    assert_eq!(
        raw::read_packet(&mut s).await[..4],
        [0x50, 0x02, 0x00, 0x09]
    );
    s.write_all(&[0x62, 0x02, 0x00, 0x09]).await.unwrap(); // PUBREL
    assert_eq!(
        raw::read_packet(&mut s).await[..4],
        [0x70, 0x02, 0x00, 0x09]
    );
    let (_, h) = srv
        .admin(
            "GET",
            &format!("/v1/devices/{did}/history?point=level"),
            None,
        )
        .await;
    let levels: Vec<i64> = h["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].as_i64().unwrap())
        .collect();
    assert_eq!(levels, vec![20, 15, 5]);
    // an alias above the announced maximum (16) is a protocol violation: DISCONNECT 0x94
    s.write_all(&raw::publish_v5(
        0x30,
        &up,
        0,
        &[0x23, 0x00, 0x40],
        br#"{"level":5}"#,
    ))
    .await
    .unwrap();
    let d = raw::read_packet(&mut s).await;
    assert_eq!((d[0], d[2]), (0xE0, 0x94), "{d:02x?}");
}

#[tokio::test]
async fn mqtt_3_1_protocol_level_is_refused() {
    use tokio::io::AsyncWriteExt;
    let srv = Server::start().await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", srv.mqtt_plain))
        .await
        .unwrap();
    // CONNECT "MQIsdp" level 3
    let mut b = vec![0x00, 0x06];
    b.extend_from_slice(b"MQIsdp");
    b.extend_from_slice(&[3, 0x02, 0x00, 0x3C, 0x00, 0x01, b'x']);
    let mut frame = vec![0x10, b.len() as u8];
    frame.extend(b);
    s.write_all(&frame).await.unwrap();
    assert_eq!(raw::read_packet(&mut s).await, vec![0x20, 0x02, 0x00, 0x01]);
}

#[tokio::test]
async fn will_delay_defers_the_will() {
    use tokio::io::AsyncWriteExt;
    let srv = Server::start().await;
    let (_, did, secret) = srv.device().await;
    let (u, p) = creds(&did, &secret);
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", srv.mqtt_plain))
        .await
        .unwrap();
    // session expiry 60 s (0x11), will delay 2 s (0x18)
    let props = [0x11, 0, 0, 0, 60];
    let will_props = [0x18, 0, 0, 0, 2];
    let up = format!("dev/{did}/up");
    s.write_all(&raw::connect_v5_full(
        &did,
        &u,
        &p,
        30,
        &props,
        Some((&will_props, &up, br#"{"power":false}"#)),
    ))
    .await
    .unwrap();
    assert_eq!(raw::read_packet(&mut s).await[3], 0x00);
    s.write_all(&raw::publish_qos1_v5(&up, 1, br#"{"power":true}"#))
        .await
        .unwrap();
    raw::read_packet(&mut s).await;
    drop(s);
    let started = std::time::Instant::now();
    let v = srv.wait_state(&did, |v| v["online"] == false).await;
    if started.elapsed() < Duration::from_millis(1500) {
        assert_eq!(v["state"]["power"], true, "the will fired before its delay");
    }
    srv.wait_state(&did, |v| v["state"]["power"] == false).await;
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn outbound_respects_the_clients_receive_maximum() {
    use tokio::io::AsyncWriteExt;
    let srv = Server::start_with(&[("RAMPART_COMMANDS__TIMEOUT_MS", "15000")]).await;
    let (_, did, secret) = srv.device().await;
    let (u, p) = creds(&did, &secret);
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", srv.mqtt_plain))
        .await
        .unwrap();
    s.write_all(&raw::connect_v5_full(
        &did,
        &u,
        &p,
        30,
        &[0x21, 0x00, 0x01],
        None,
    ))
    .await
    .unwrap(); // receive maximum 1
    assert_eq!(raw::read_packet(&mut s).await[3], 0x00);
    s.write_all(&raw::subscribe_v5(1, &format!("dev/{did}/down")))
        .await
        .unwrap();
    assert_eq!(raw::read_packet(&mut s).await[0], 0x90);
    // two commands at once; the device sees only the first until it acknowledges it
    let path = format!("/v1/devices/{did}/commands");
    let c1 = srv.admin("POST", &path, Some(json!({"set": {"level": 5}})));
    let c2 = srv.admin("POST", &path, Some(json!({"set": {"level": 10}})));
    let device = async {
        let first = raw::read_packet(&mut s).await;
        assert_eq!(first[0] & 0xF6, 0x32, "{first:02x?}");
        let next = tokio::time::timeout(Duration::from_millis(500), raw::read_packet(&mut s)).await;
        assert!(
            next.is_err(),
            "a second message arrived past the receive maximum"
        );
        let mut answered = vec![raw::ack_command(&mut s, &did, &first).await];
        let second = raw::read_packet(&mut s).await;
        answered.push(raw::ack_command(&mut s, &did, &second).await);
        answered
    };
    let ((s1, v1), (s2, v2), answered) = tokio::join!(c1, c2, device);
    assert_eq!((s1, s2), (200, 200), "{v1} {v2}");
    assert_eq!(answered.len(), 2);
}

#[tokio::test]
async fn queued_commands_carry_and_honour_message_expiry() {
    use tokio::io::AsyncWriteExt;
    let srv =
        Server::start_with(&[("RAMPART_COMMANDS__QUEUED_TTL_SECS", "2"), QUICK_RECONNECTS]).await;
    let (_, did, secret) = srv.device().await;
    let down = format!("dev/{did}/down");
    let path = format!("/v1/devices/{did}/commands");
    let session_expiry = [0x11, 0, 0, 0x0E, 0x10]; // 3600 s
    let connect = |ts: i64| {
        let (u, p) = creds_at(&did, &secret, ts);
        let mut c = raw::connect_v5_full(&did, &u, &p, 30, &session_expiry, None);
        // the connect flags follow "MQTT" and the protocol level: clear clean start
        let flags = c.windows(4).position(|w| w == b"MQTT").unwrap() + 5;
        c[flags] &= !0x02;
        c
    };
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", srv.mqtt_plain))
        .await
        .unwrap();
    s.write_all(&connect(now_ms())).await.unwrap();
    assert_eq!(raw::read_packet(&mut s).await[3], 0x00);
    s.write_all(&raw::subscribe_v5(1, &down)).await.unwrap();
    raw::read_packet(&mut s).await;
    s.write_all(&[0xE0, 0x00]).await.unwrap();
    drop(s);
    srv.wait_state(&did, |v| v["online"] == false).await;

    // queued, then resumed at once: delivered with a message expiry of at most 2 s
    let (st, v) = srv
        .admin("POST", &path, Some(json!({"set": {"power": true}})))
        .await;
    assert_eq!(st, 202, "{v}");
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", srv.mqtt_plain))
        .await
        .unwrap();
    s.write_all(&connect(now_ms() + 1)).await.unwrap();
    let connack = raw::read_packet(&mut s).await;
    assert_eq!(
        (connack[2], connack[3]),
        (0x01, 0x00),
        "session present expected: {connack:02x?}"
    );
    let publish = raw::read_packet(&mut s).await;
    let expiry = publish
        .windows(5)
        .find(|w| w[0] == 0x02)
        .map(|w| u32::from_be_bytes([w[1], w[2], w[3], w[4]]));
    assert!(matches!(expiry, Some(1..=2)), "{publish:02x?}");
    raw::ack_command(&mut s, &did, &publish).await;
    s.write_all(&[0xE0, 0x00]).await.unwrap();
    drop(s);
    srv.wait_state(&did, |v| v["online"] == false).await;

    // queued, then resumed after the TTL: not delivered
    let (st, _) = srv
        .admin("POST", &path, Some(json!({"set": {"power": false}})))
        .await;
    assert_eq!(st, 202);
    srv.advance(Duration::from_millis(2200));
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", srv.mqtt_plain))
        .await
        .unwrap();
    s.write_all(&connect(now_ms() + 2)).await.unwrap();
    assert_eq!(raw::read_packet(&mut s).await[2], 0x01);
    s.write_all(&[0xC0, 0x00]).await.unwrap(); // PINGREQ: the next packet must be PINGRESP, not a PUBLISH
    assert_eq!(raw::read_packet(&mut s).await, vec![0xD0, 0x00]);
}

/// Hand-written MQTT 5 frames (independent of our codec).
pub(crate) mod raw {
    use tokio::io::AsyncReadExt;

    /// A length-prefixed string (or binary) field.
    pub(crate) fn string(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s);
    }

    /// A Variable Byte Integer.
    pub(crate) fn varint(out: &mut Vec<u8>, mut n: usize) {
        loop {
            let b = (n % 128) as u8;
            n /= 128;
            if n == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    /// A whole packet: first byte, Remaining Length, body.
    pub(crate) fn frame(first: u8, body: Vec<u8>) -> Vec<u8> {
        let mut out = vec![first];
        varint(&mut out, body.len());
        out.extend(body);
        out
    }

    /// The body of a packet read by [`read_packet`] (after its fixed header).
    pub(crate) fn body(packet: &[u8]) -> &[u8] {
        let mut i = 1;
        while packet[i] & 0x80 != 0 {
            i += 1;
        }
        &packet[i + 1..]
    }

    /// MQTT 3.1.1 CONNECT (clean session) with user name and password.
    pub(crate) fn connect_v311(client_id: &str, user: &str, pass: &str) -> Vec<u8> {
        let mut b = Vec::new();
        string(&mut b, b"MQTT");
        b.extend_from_slice(&[4, 0b1100_0010, 0, 30]);
        string(&mut b, client_id.as_bytes());
        string(&mut b, user.as_bytes());
        string(&mut b, pass.as_bytes());
        frame(0x10, b)
    }

    pub(crate) fn connect_v5_keepalive(
        client_id: &str,
        user: &str,
        pass: &str,
        keepalive: u16,
    ) -> Vec<u8> {
        connect_v5_full(client_id, user, pass, keepalive, &[], None)
    }

    /// CONNECT with raw CONNECT properties and an optional will `(will properties, topic, payload)`
    /// (QoS 0, not retained).
    pub(crate) fn connect_v5_full(
        client_id: &str,
        user: &str,
        pass: &str,
        keepalive: u16,
        props: &[u8],
        will: Option<(&[u8], &str, &[u8])>,
    ) -> Vec<u8> {
        let mut b = Vec::new();
        string(&mut b, b"MQTT");
        b.push(5); // protocol level
                   // username, password, clean start, and the will flag when there is one
        b.push(0b1100_0010 | if will.is_some() { 0b0000_0100 } else { 0 });
        b.extend_from_slice(&keepalive.to_be_bytes());
        b.push(props.len() as u8);
        b.extend_from_slice(props);
        string(&mut b, client_id.as_bytes());
        if let Some((wprops, topic, payload)) = will {
            b.push(wprops.len() as u8);
            b.extend_from_slice(wprops);
            string(&mut b, topic.as_bytes());
            string(&mut b, payload);
        }
        string(&mut b, user.as_bytes());
        string(&mut b, pass.as_bytes());
        frame(0x10, b)
    }

    pub(crate) fn subscribe_v5(pid: u16, filter: &str) -> Vec<u8> {
        let mut b = pid.to_be_bytes().to_vec();
        b.push(0); // no properties
        string(&mut b, filter.as_bytes());
        b.push(0x01); // QoS 1
        frame(0x82, b)
    }

    pub(crate) fn publish_qos1_v5(topic: &str, pid: u16, payload: &[u8]) -> Vec<u8> {
        publish_v5(0x32, topic, pid, &[], payload)
    }

    /// PUBLISH with the given first byte (QoS/DUP/retain flags), packet id (omitted for QoS 0)
    /// and raw property bytes.
    pub(crate) fn publish_v5(
        first: u8,
        topic: &str,
        pid: u16,
        props: &[u8],
        payload: &[u8],
    ) -> Vec<u8> {
        let mut b = Vec::new();
        string(&mut b, topic.as_bytes());
        if first & 0x06 != 0 {
            b.extend_from_slice(&pid.to_be_bytes());
        }
        varint(&mut b, props.len());
        b.extend_from_slice(props);
        b.extend_from_slice(payload);
        frame(first, b)
    }

    /// A plain-TCP MQTT 5 connection of device `did` that has received a successful CONNACK.
    pub(crate) async fn session(
        srv: &crate::support::Server,
        did: &str,
        secret: &str,
        keepalive: u16,
    ) -> tokio::net::TcpStream {
        let (u, p) = crate::support::creds(did, secret);
        let (s, connack) = connect_with(srv, &connect_v5_keepalive(did, &u, &p, keepalive)).await;
        assert_eq!(
            (connack[0], connack[2], connack[3]),
            (0x20, 0x00, 0x00),
            "CONNACK success expected: {connack:02x?}"
        );
        s
    }

    /// Send `connect` on a new plain-TCP connection; the stream and the server's answer.
    pub(crate) async fn connect_with(
        srv: &crate::support::Server,
        connect: &[u8],
    ) -> (tokio::net::TcpStream, Vec<u8>) {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", srv.mqtt_plain))
            .await
            .unwrap();
        s.write_all(connect).await.unwrap();
        let answer = read_packet(&mut s).await;
        (s, answer)
    }

    /// PUBACK a command PUBLISH (QoS 1, no properties) and answer it with an ok ack (QoS 0).
    /// Returns the command id.
    pub(crate) async fn ack_command(
        s: &mut tokio::net::TcpStream,
        did: &str,
        publish: &[u8],
    ) -> String {
        use tokio::io::AsyncWriteExt;
        // fixed header (1 + 1..2 length bytes), topic, packet id, properties length 0, payload
        let mut i = 1;
        while publish[i] & 0x80 != 0 {
            i += 1;
        }
        i += 1;
        let tlen = u16::from_be_bytes([publish[i], publish[i + 1]]) as usize;
        let pid_at = i + 2 + tlen;
        let pid = [publish[pid_at], publish[pid_at + 1]];
        let plen = publish[pid_at + 2] as usize;
        let payload = &publish[pid_at + 3 + plen..];
        let cmd: serde_json::Value = serde_json::from_slice(payload).unwrap();
        s.write_all(&[0x40, 0x02, pid[0], pid[1]]).await.unwrap();
        let ack = serde_json::json!({"id": cmd["id"], "status": "ok"}).to_string();
        s.write_all(&publish_v5(
            0x30,
            &format!("dev/{did}/ack"),
            0,
            &[],
            ack.as_bytes(),
        ))
        .await
        .unwrap();
        cmd["id"].as_str().unwrap().to_owned()
    }

    /// The next packet must be a DISCONNECT with `code`, and the connection must close after it.
    /// Returns the DISCONNECT's body (reason code, properties).
    pub(crate) async fn expect_disconnect(s: &mut tokio::net::TcpStream, code: u8) -> Vec<u8> {
        let d = tokio::time::timeout(std::time::Duration::from_secs(10), read_packet(s))
            .await
            .expect("no DISCONNECT");
        assert_eq!(
            (d[0], body(&d)[0]),
            (0xE0, code),
            "DISCONNECT {code:#04x} expected: {d:02x?}"
        );
        expect_closed(s).await;
        body(&d).to_vec()
    }

    /// Send `packet`: the server must answer DISCONNECT `code` with a reason string holding `why`
    /// (may be empty), and close.
    pub(crate) async fn disconnected_by(
        s: &mut tokio::net::TcpStream,
        packet: &[u8],
        code: u8,
        why: &str,
    ) {
        use tokio::io::AsyncWriteExt;
        s.write_all(packet).await.unwrap();
        let d = expect_disconnect(s, code).await;
        assert!(says(&d, why), "{why:?} expected: {d:02x?}");
    }

    /// The server closes the connection (EOF or reset) without sending anything more.
    pub(crate) async fn expect_closed(s: &mut tokio::net::TcpStream) {
        let mut rest = Vec::new();
        let r = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut rest))
            .await
            .expect("the connection stayed open");
        assert!(rest.is_empty(), "{r:?}: unexpected bytes {rest:02x?}");
    }

    /// Whether `packet` carries `text` (in a reason string); any packet carries "".
    pub(crate) fn says(packet: &[u8], text: &str) -> bool {
        text.is_empty() || packet.windows(text.len()).any(|w| w == text.as_bytes())
    }

    /// The server still serves devices: a new one connects and has a QoS 1 report acknowledged.
    pub(crate) async fn assert_serving(srv: &crate::support::Server) {
        use tokio::io::AsyncWriteExt;
        let (_, did, secret) = srv.device().await;
        let mut s = session(srv, &did, &secret, 30).await;
        let up = format!("dev/{did}/up");
        s.write_all(&publish_qos1_v5(&up, 1, br#"{"power":true}"#))
            .await
            .unwrap();
        let ack = read_packet(&mut s).await;
        assert_eq!(ack[..4], [0x40, 0x02, 0x00, 0x01], "{ack:02x?}");
    }

    /// Read one whole packet (fixed header included).
    pub(crate) async fn read_packet(s: &mut tokio::net::TcpStream) -> Vec<u8> {
        let mut head = [0u8; 2];
        s.read_exact(&mut head).await.unwrap();
        let mut out = head.to_vec();
        let mut len = (head[1] & 0x7f) as usize;
        let mut shift = 7;
        let mut more = head[1] & 0x80 != 0;
        while more {
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.unwrap();
            out.push(b[0]);
            len += ((b[0] & 0x7f) as usize) << shift;
            shift += 7;
            more = b[0] & 0x80 != 0;
        }
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await.unwrap();
        out.extend(body);
        crate::mqtt_conformance::assert_reason_codes(&out);
        out
    }
}

/// A raw (passthrough) publish over 32 KiB is refused with 0x99 and a reason string naming the
/// limit; the connection stays and a smaller one is accepted.
#[tokio::test]
async fn oversized_raw_v5_gets_0x99_and_connection_stays() {
    use tokio::io::AsyncWriteExt;
    let srv = Server::start().await;
    let (_, did, secret) = srv.device().await;
    let mut s = raw::session(&srv, &did, &secret, 30).await;
    let topic = format!("dev/{did}/raw");
    s.write_all(&raw::publish_qos1_v5(&topic, 1, &vec![1u8; 32 * 1024 + 1]))
        .await
        .unwrap();
    let ack = raw::read_packet(&mut s).await;
    assert_eq!(
        (ack[0], ack[2], ack[3], ack[4]),
        (0x40, 0x00, 0x01, 0x99),
        "PUBACK 0x99 expected: {ack:02x?}"
    );
    let why = String::from_utf8_lossy(&ack[5..]).into_owned();
    assert!(
        why.contains("a raw payload is at most 32768 bytes"),
        "{why}"
    );
    s.write_all(&raw::publish_qos1_v5(&topic, 2, &vec![1u8; 32 * 1024]))
        .await
        .unwrap();
    let ack = raw::read_packet(&mut s).await;
    assert_eq!((ack[0], ack[2], ack[3]), (0x40, 0x00, 0x02), "{ack:02x?}");
    assert!(ack.len() == 4 || ack[4] == 0x00, "{ack:02x?}");
    s.write_all(&[0xE0, 0x00]).await.unwrap();
}

#[tokio::test]
async fn publish_outside_namespace_v5_disconnects_with_0x87() {
    let srv = Server::start().await;
    let (_, did, secret) = srv.device().await;
    let (_, other, _) = srv.device().await;
    let (u, p) = creds(&did, &secret);
    let (c, mut el) = rumqttc::v5::AsyncClient::new(v5_options(&srv, &did, &u, &p), 10);
    c.publish(
        format!("dev/{other}/up"),
        Q5::AtMostOnce,
        false,
        r#"{"power":true}"#,
    )
    .await
    .unwrap();
    let code = v5_until(&mut el, server_disconnect).await;
    assert_eq!(code, p5::DisconnectReasonCode::NotAuthorized);
    // the other device's state is untouched
    assert_eq!(srv.state(&other).await["state"], json!({}));
}

#[tokio::test]
async fn subscribe_outside_namespace_refused_v311() {
    let srv = Server::start().await;
    let (_, did, secret) = srv.device().await;
    let (u, p) = creds(&did, &secret);
    let (c, mut el) = rumqttc::AsyncClient::new(v4_options(&srv, &did, &u, &p), 10);
    c.subscribe("dev/+/down", QoS::AtLeastOnce).await.unwrap();
    let codes = v4_until(&mut el, |e| match e {
        Ok(Event::Incoming(Packet::SubAck(s))) => Some(s.return_codes),
        _ => None,
    })
    .await;
    assert_eq!(codes, vec![rumqttc::SubscribeReasonCode::Failure]);
    // and the connection is closed
    v4_until(&mut el, |e| e.is_err().then_some(())).await;
}

#[tokio::test]
async fn retained_message_in_own_namespace() {
    let srv = Server::start().await;
    let (_, did, secret) = srv.device().await;
    let (u, p) = creds(&did, &secret);
    let (c, mut el) = rumqttc::AsyncClient::new(v4_options(&srv, &did, &u, &p), 10);
    let t = format!("dev/{did}/config");
    c.publish(&t, QoS::AtLeastOnce, true, "v1").await.unwrap();
    v4_until(&mut el, |e| {
        matches!(e, Ok(Event::Incoming(Packet::PubAck(_)))).then_some(())
    })
    .await;
    c.subscribe(format!("dev/{did}/#"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let got = v4_until(&mut el, |e| match e {
        Ok(Event::Incoming(Packet::Publish(p))) => Some((p.topic, p.payload, p.retain)),
        _ => None,
    })
    .await;
    assert_eq!(
        (got.0.as_str(), &got.1[..], got.2),
        (t.as_str(), &b"v1"[..], true)
    );
}

#[tokio::test]
async fn will_is_published_and_presence_goes_offline_when_connection_drops() {
    let srv = Server::start().await;
    let (_, did, secret) = srv.device().await;
    let (u, p) = creds(&did, &secret);
    let mut o = v5_options(&srv, &did, &u, &p);
    o.set_last_will(p5::LastWill::new(
        format!("dev/{did}/up"),
        r#"{"power":false}"#,
        Q5::AtLeastOnce,
        false,
        None,
    ));
    let (c, mut el) = rumqttc::v5::AsyncClient::new(o, 10);
    c.publish(
        format!("dev/{did}/up"),
        Q5::AtLeastOnce,
        false,
        r#"{"power":true}"#,
    )
    .await
    .unwrap();
    v5_until(&mut el, |e| {
        matches!(e, Ok(rumqttc::v5::Event::Incoming(p5::Packet::PubAck(_)))).then_some(())
    })
    .await;
    srv.wait_state(&did, |v| v["online"] == true && v["state"]["power"] == true)
        .await;
    // drop the connection without DISCONNECT
    drop(el);
    drop(c);
    srv.wait_state(&did, |v| {
        v["online"] == false && v["state"]["power"] == false
    })
    .await;
}

#[tokio::test]
async fn second_connection_takes_over_with_0x8e() {
    let srv = Server::start_with(&[QUICK_RECONNECTS]).await;
    let (_, did, secret) = srv.device().await;
    let (u, p) = creds(&did, &secret);
    let (_c1, mut el1) = rumqttc::v5::AsyncClient::new(v5_options(&srv, &did, &u, &p), 10);
    v5_until(&mut el1, |e| {
        matches!(e, Ok(rumqttc::v5::Event::Incoming(p5::Packet::ConnAck(_)))).then_some(())
    })
    .await;
    let (u, p) = creds_at(&did, &secret, now_ms() + 1);
    let (_c2, mut el2) = rumqttc::v5::AsyncClient::new(v5_options(&srv, &did, &u, &p), 10);
    v5_until(&mut el2, |e| {
        matches!(e, Ok(rumqttc::v5::Event::Incoming(p5::Packet::ConnAck(_)))).then_some(())
    })
    .await;
    let code = v5_until(&mut el1, server_disconnect).await;
    assert_eq!(code, p5::DisconnectReasonCode::SessionTakenOver);
    // the new session keeps the device online
    let _keep = tokio::spawn(async move { while el2.poll().await.is_ok() {} });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(srv.state(&did).await["online"], true);
}

#[tokio::test]
async fn first_packet_not_connect_is_dropped_on_plain_port() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = Server::start().await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", srv.mqtt_plain))
        .await
        .unwrap();
    s.write_all(&[0xC0, 0x00]).await.unwrap(); // PINGREQ
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "server should close the connection");
    // a malformed remaining length (5-byte varint) also closes, and the server is still fine
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", srv.mqtt_plain))
        .await
        .unwrap();
    s.write_all(&[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F])
        .await
        .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    let (s, _) = srv.call("GET", "/healthz", None, None).await;
    assert_eq!(s, 200);
}
