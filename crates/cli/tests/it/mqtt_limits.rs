//! The MQTT limits: the report rate per device (from the product), the
//! connect rate per device and the reconnect-storm ban, the connect rate per source IP, and the
//! per-connection sizes. Each refusal carries the limit's name (MQTT 5 reason string) and is
//! counted in `rampart_limit_refusals_total{limit}`.

use crate::mqtt::rampart_store_audit_count;
use crate::mqtt::raw::{self, assert_serving};
use crate::support::*;
use rumqttc::{Event, Packet, QoS};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn refusals(srv: &Server, limit: &str) -> f64 {
    srv.metric(&format!(
        r#"rampart_limit_refusals_total{{limit="{limit}"}}"#
    ))
    .await
}

/// CONNECT (MQTT 5) for `did` with freshly signed credentials; the server's answer.
async fn connect_v5(srv: &Server, did: &str, secret: &str) -> (tokio::net::TcpStream, Vec<u8>) {
    let (u, p) = creds_at(did, secret, now_ms() + fresh());
    raw::connect_with(srv, &raw::connect_v5_keepalive(did, &u, &p, 30)).await
}

/// A distinct millisecond offset per call, so that no two CONNECTs of a test reuse a `ts`.
fn fresh() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static N: AtomicI64 = AtomicI64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The CONNACK reason code (MQTT 5 and 3.1.1 alike: the second body byte).
fn connack_code(connack: &[u8]) -> u8 {
    assert_eq!(connack[0], 0x20, "CONNACK expected: {connack:02x?}");
    raw::body(connack)[1]
}

/// A CONNACK 0x9F whose reason string holds `why`.
fn assert_limited(connack: &[u8], why: &str) {
    assert_eq!(connack_code(connack), 0x9F, "{connack:02x?}");
    assert!(raw::says(connack, why), "{why:?} expected: {connack:02x?}");
}

#[tokio::test]
async fn report_rate_refusal_names_the_limit_and_sustained_abuse_disconnects() {
    let srv = Server::start().await;
    // 60 a minute: a burst of 5, then one a second
    let (did, secret) = srv.device_with_rate(60).await;
    let mut s = raw::session(&srv, &did, &secret, 30).await;
    let up = format!("dev/{did}/up");
    for pid in 1..=6u16 {
        s.write_all(&raw::publish_qos1_v5(&up, pid, br#"{"power":true}"#))
            .await
            .unwrap();
        let ack = raw::read_packet(&mut s).await;
        let code = raw::body(&ack).get(2).copied().unwrap_or(0);
        if pid <= 5 {
            assert_eq!(code, 0x00, "{ack:02x?}");
        } else {
            assert_eq!(code, 0x97, "{ack:02x?}");
            assert!(
                raw::says(
                    &ack,
                    "limit mqtt.report_rate exceeded: 60 messages per minute"
                ),
                "{ack:02x?}"
            );
        }
    }
    // flooding on at QoS 0 (far more than twice the rate): closed with 0x96
    let mut flood = Vec::new();
    for _ in 0..100 {
        flood.extend(raw::publish_v5(0x30, &up, 0, &[], br#"{"power":false}"#));
    }
    raw::disconnected_by(&mut s, &flood, 0x96, "mqtt.report_abuse").await;
    assert_eq!(refusals(&srv, "mqtt.report_abuse").await, 1.0);
    assert!(refusals(&srv, "mqtt.report_rate").await >= 20.0);
    assert_serving(&srv).await;
}

#[tokio::test]
async fn reconnecting_does_not_refill_the_report_bucket() {
    let srv = Server::start_with(&[QUICK_RECONNECTS]).await;
    // 60 a minute: a burst of 5, then one a second
    let (did, secret) = srv.device_with_rate(60).await;
    let up = format!("dev/{did}/up");
    let mut s = raw::session(&srv, &did, &secret, 30).await;
    let code_of = async |s: &mut tokio::net::TcpStream, pid: u16| {
        s.write_all(&raw::publish_qos1_v5(&up, pid, br#"{"power":true}"#))
            .await
            .unwrap();
        let ack = raw::read_packet(s).await;
        raw::body(&ack).get(2).copied().unwrap_or(0)
    };
    for pid in 1..=5u16 {
        assert_eq!(code_of(&mut s, pid).await, 0x00);
    }
    assert_eq!(code_of(&mut s, 6).await, 0x97);
    // A clean DISCONNECT and a new session at once: the spent bucket comes back with the device.
    s.write_all(&[0xE0, 0x00]).await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    let mut s = raw::session(&srv, &did, &secret, 30).await;
    assert_eq!(
        code_of(&mut s, 1).await,
        0x97,
        "a fresh burst after reconnecting"
    );
    // It refills at the product's rate as before: one a second.
    srv.advance(Duration::from_millis(1100));
    assert_eq!(code_of(&mut s, 2).await, 0x00);
}

#[tokio::test]
async fn report_rate_on_v311_drops_and_counts() {
    let srv = Server::start().await;
    let (did, secret) = srv.device_with_rate(60).await;
    let (u, p) = creds(&did, &secret);
    let (c, mut el) = rumqttc::AsyncClient::new(v4_options(&srv, &did, &u, &p), 20);
    for i in 0..10 {
        let body = format!(r#"{{"power":{}}}"#, i % 2 == 0);
        c.publish(format!("dev/{did}/up"), QoS::AtLeastOnce, false, body)
            .await
            .unwrap();
    }
    // every publish is acknowledged as usual, only the first five (the burst) are stored
    let mut acks = 0;
    v4_until(&mut el, |e| {
        if let Ok(Event::Incoming(Packet::PubAck(_))) = e {
            acks += 1;
        }
        (acks == 10).then_some(())
    })
    .await;
    let (_, h) = srv
        .admin("GET", &format!("/v1/devices/{did}/history?limit=100"), None)
        .await;
    let stored = h["data"].as_array().unwrap().len();
    assert!((5..=6).contains(&stored), "{h}");
    assert_eq!(
        refusals(&srv, "mqtt.report_rate").await as usize,
        10 - stored
    );
    assert_eq!(
        srv.metric("rampart_reports_rate_limited_total").await as usize,
        10 - stored
    );
}

#[tokio::test]
async fn device_connect_rate_a_burst_of_five_then_one_per_second() {
    let srv = Server::start().await;
    let (_, did, secret) = srv.device().await;
    // five at once: a device back from a network blip, the README's walk-through pasted
    for _ in 0..5 {
        let (mut s, connack) = connect_v5(&srv, &did, &secret).await;
        assert_eq!(connack_code(&connack), 0x00);
        s.write_all(&[0xE0, 0x00]).await.unwrap();
        raw::expect_closed(&mut s).await;
    }
    let audited = rampart_store_audit_count(&srv).await;
    // a sixth at once: CONNACK 0x9F naming the limit, its window and when it resets
    let (_, connack) = connect_v5(&srv, &did, &secret).await;
    assert_limited(
        &connack,
        "limit mqtt.device_connect.per_second exceeded: 5 calls per 5 s; retry in 1 s",
    );
    // MQTT 3.1.1 has no such code: refused as server unavailable
    let (u, p) = creds_at(&did, &secret, now_ms() + fresh());
    let (_, connack) = raw::connect_with(&srv, &raw::connect_v311(&did, &u, &p)).await;
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x03]);
    assert_eq!(refusals(&srv, "mqtt.device_connect.per_second").await, 2.0);
    // a refusal by a limit writes nothing to the store (refused credentials are audited)
    assert_eq!(rampart_store_audit_count(&srv).await, audited);
    // a second later the device is welcome again, once
    srv.advance(Duration::from_millis(1100));
    let (_, connack) = connect_v5(&srv, &did, &secret).await;
    assert_eq!(connack_code(&connack), 0x00);
    let (_, connack) = connect_v5(&srv, &did, &secret).await;
    assert_limited(&connack, "mqtt.device_connect.per_second");
}

#[tokio::test]
async fn device_connect_rate_ten_per_minute() {
    let srv = Server::start_with(&[("RAMPART_MQTT__LIMITS__DEVICE_CONNECT_PER_SECOND", "0")]).await;
    let (_, did, secret) = srv.device().await;
    for _ in 0..10 {
        let (mut s, connack) = connect_v5(&srv, &did, &secret).await;
        assert_eq!(connack_code(&connack), 0x00);
        s.write_all(&[0xE0, 0x00]).await.unwrap();
        raw::expect_closed(&mut s).await;
    }
    let (_, connack) = connect_v5(&srv, &did, &secret).await;
    assert_limited(
        &connack,
        "limit mqtt.device_connect.per_minute exceeded: 10 calls per minute",
    );
    // other devices are not affected
    assert_serving(&srv).await;
}

#[tokio::test]
async fn reconnect_storm_bans_the_device_for_five_minutes() {
    let srv = Server::start().await;
    let (_, did, secret) = srv.device().await;
    let (_, connack) = connect_v5(&srv, &did, &secret).await;
    assert_eq!(connack_code(&connack), 0x00);
    // 14 more authenticated attempts, refused by the rate (or, on a slow machine, accepted once a
    // second has passed): all count, and the 16th within the minute bans
    for _ in 0..14 {
        let (_, connack) = connect_v5(&srv, &did, &secret).await;
        if connack_code(&connack) != 0x00 {
            assert_limited(&connack, "mqtt.device_connect.per_second");
        }
    }
    let (_, connack) = connect_v5(&srv, &did, &secret).await;
    assert_limited(
        &connack,
        "limit mqtt.device_reconnect_storm exceeded: 15 calls per minute; retry in 300 s",
    );
    // the ban outlasts the rates, and is decided before authentication: a wrong password gets
    // the same answer, without the store lookup and audit row a refused password costs
    let audited = rampart_store_audit_count(&srv).await;
    srv.advance(Duration::from_millis(1100));
    let (_, connack) = connect_v5(&srv, &did, &secret).await;
    assert_limited(&connack, "mqtt.device_reconnect_storm");
    let (u, _) = creds(&did, &secret);
    let (_, connack) = raw::connect_with(
        &srv,
        &raw::connect_v5_keepalive(&did, &u, &"0".repeat(64), 30),
    )
    .await;
    assert_limited(&connack, "mqtt.device_reconnect_storm");
    assert_eq!(rampart_store_audit_count(&srv).await, audited);
    assert_eq!(refusals(&srv, "mqtt.device_reconnect_storm").await, 3.0);
    assert_serving(&srv).await;
}

#[tokio::test]
async fn wrong_passwords_cannot_ban_someone_else() {
    let srv = Server::start().await;
    let (_, did, secret) = srv.device().await;
    for _ in 0..20 {
        let (u, _) = creds_at(&did, &secret, now_ms() + fresh());
        let (_, connack) = raw::connect_with(
            &srv,
            &raw::connect_v5_keepalive(&did, &u, &"0".repeat(64), 30),
        )
        .await;
        assert_eq!(connack_code(&connack), 0x86);
    }
    let (_, connack) = connect_v5(&srv, &did, &secret).await;
    assert_eq!(connack_code(&connack), 0x00);
    assert_eq!(refusals(&srv, "mqtt.device_reconnect_storm").await, 0.0);
}

/// A TCP connection to `port` from `source` (another loopback address).
async fn tcp_from(source: &str, port: u16) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{source}:0").parse().unwrap()).unwrap();
    sock.connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn connect_rate_per_ip_refuses_before_tls() {
    let srv = Server::start_with(&[
        ("RAMPART_MQTT__LIMITS__CONNECT_PER_IP__PER_MINUTE", "1"),
        ("RAMPART_MQTT__LIMITS__CONNECT_PER_IP__BURST", "3"),
    ])
    .await;
    // three connections from 127.0.0.1 are accepted: the TLS listener waits for a ClientHello
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tcp_from("127.0.0.1", srv.mqtt_tls).await);
    }
    for s in &mut held {
        let mut b = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_millis(300), s.read(&mut b)).await;
        assert!(r.is_err(), "an accepted connection waits for its handshake");
    }
    // the fourth is closed at once, before any TLS work, on either listener
    closed_at_accept_on_both_listeners(&srv).await;
    assert_eq!(refusals(&srv, "mqtt.connect_per_ip").await, 2.0);
    // another source address has its own budget
    connects_from(&srv, "127.0.0.2").await;
}

#[tokio::test]
async fn open_connections_per_ip_are_capped() {
    let srv = Server::start_with(&[("RAMPART_MQTT__LIMITS__MAX_CONNECTIONS_PER_IP", "2")]).await;
    // two open connections from 127.0.0.1, one on each listener
    let first = tcp_from("127.0.0.1", srv.mqtt_tls).await;
    let second = tcp_from("127.0.0.1", srv.mqtt_plain).await;
    for mut s in [first, second] {
        let mut b = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_millis(300), s.read(&mut b)).await;
        assert!(r.is_err(), "an accepted connection stays open");
        held_until_end(s);
    }
    // a third is closed at accept, on either listener
    closed_at_accept_on_both_listeners(&srv).await;
    assert_eq!(refusals(&srv, "mqtt.connections_per_ip").await, 2.0);
    // another address is served, and authenticates as usual
    connects_from(&srv, "127.0.0.2").await;
}

/// A new connection from 127.0.0.1 is closed at once on either listener.
async fn closed_at_accept_on_both_listeners(srv: &Server) {
    for port in [srv.mqtt_tls, srv.mqtt_plain] {
        let mut s = tcp_from("127.0.0.1", port).await;
        raw::expect_closed(&mut s).await;
    }
}

/// A new device connects from `source` (plain listener) and is accepted.
async fn connects_from(srv: &Server, source: &str) {
    let (_, did, secret) = srv.device().await;
    let (u, p) = creds(&did, &secret);
    let mut s = tcp_from(source, srv.mqtt_plain).await;
    s.write_all(&raw::connect_v5_keepalive(&did, &u, &p, 30))
        .await
        .unwrap();
    assert_eq!(connack_code(&raw::read_packet(&mut s).await), 0x00);
}

#[tokio::test]
async fn wrong_passwords_cannot_flood_the_audit_log() {
    let srv = Server::start_with(&[
        (
            "RAMPART_MQTT__LIMITS__REFUSAL_AUDIT_PER_IP__PER_MINUTE",
            "60",
        ),
        ("RAMPART_MQTT__LIMITS__REFUSAL_AUDIT_PER_IP__BURST", "3"),
    ])
    .await;
    let (_, did, _) = srv.device().await;
    let refused_from = async |source: &str| {
        let (u, p) = creds_at(&did, "wrong-secret", now_ms() + fresh());
        let mut s = tcp_from(source, srv.mqtt_plain).await;
        s.write_all(&raw::connect_v5_keepalive(&did, &u, &p, 30))
            .await
            .unwrap();
        assert_eq!(connack_code(&raw::read_packet(&mut s).await), 0x86);
    };
    for _ in 0..10 {
        refused_from("127.0.0.5").await;
    }
    // Every attempt was refused, only the burst was written.
    let written = rampart_store_audit_count(&srv).await;
    assert!((3..=4).contains(&written), "{written} entries");
    // Another address has its own budget.
    refused_from("127.0.0.6").await;
    assert_eq!(rampart_store_audit_count(&srv).await, written + 1);
    // A second later the first address gets one more entry, naming what was left out.
    srv.advance(Duration::from_millis(1100));
    refused_from("127.0.0.5").await;
    let url = format!("sqlite://{}", srv.data().join("rampart.db").display());
    let store = rampart_store::Store::open(&url).await.unwrap();
    let rows = store.list_audit(Some("device.connect"), 100).await.unwrap();
    store.close().await;
    assert_eq!(rows.len(), written + 2);
    let left_out = rows
        .iter()
        .filter_map(|r| r.detail.as_deref())
        .find(|d| d.ends_with("more refused from this address since its last entry"))
        .expect("an entry names the refusals left out");
    assert!(
        left_out.starts_with("reason=wrong_signature; "),
        "{left_out}"
    );
    let n: usize = left_out
        .split("; ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(n, 10 - written, "{left_out}");
}

/// Keep `s` open until the test's runtime ends.
fn held_until_end(s: tokio::net::TcpStream) {
    tokio::spawn(async move {
        let _s = s;
        std::future::pending::<()>().await;
    });
}

#[tokio::test]
async fn a_closed_connection_gives_its_place_back() {
    let srv = Server::start_with(&[("RAMPART_MQTT__LIMITS__MAX_CONNECTIONS_PER_IP", "1")]).await;
    let (_, did, secret) = srv.device().await;
    let (u, p) = creds(&did, &secret);
    let mut s = tcp_from("127.0.0.3", srv.mqtt_plain).await;
    s.write_all(&raw::connect_v5_keepalive(&did, &u, &p, 30))
        .await
        .unwrap();
    assert_eq!(connack_code(&raw::read_packet(&mut s).await), 0x00);
    let mut other = tcp_from("127.0.0.3", srv.mqtt_plain).await;
    raw::expect_closed(&mut other).await;
    drop(s);
    // Once the server has seen the close, the address may connect again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = tcp_from("127.0.0.3", srv.mqtt_plain).await;
        let mut b = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(300), s.read(&mut b)).await {
            Err(_) => break,
            Ok(_) => assert!(
                std::time::Instant::now() < deadline,
                "the closed connection's place was never given back"
            ),
        }
    }
}

#[tokio::test]
async fn per_connection_sizes() {
    let srv = Server::start_with(&[("RAMPART_MQTT__MAX_PACKET_SIZE", "4096")]).await;
    // the announced maxima
    let (_, did, secret) = srv.device().await;
    let (mut s, connack) = connect_v5(&srv, &did, &secret).await;
    assert_eq!(connack_code(&connack), 0x00);
    let props = raw::body(&connack);
    assert!(
        props.windows(3).any(|w| w == [0x21, 0x00, 100]),
        "receive maximum 100: {connack:02x?}"
    );
    assert!(
        props
            .windows(5)
            .any(|w| w == [0x27, 0x00, 0x00, 0x10, 0x00]),
        "maximum packet size 4096: {connack:02x?}"
    );
    // message size: one byte over the maximum packet size
    let up = format!("dev/{did}/up");
    let big = raw::publish_v5(0x30, &up, 0, &[], &vec![b' '; 4096]);
    assert!(big.len() > 4096);
    raw::disconnected_by(&mut s, &big, 0x95, "limit mqtt.packet_size exceeded").await;
    assert_eq!(refusals(&srv, "mqtt.packet_size").await, 1.0);

    // topic length: 257 bytes
    let (_, did, secret) = srv.device().await;
    let mut s = raw::session(&srv, &did, &secret, 30).await;
    let prefix = format!("dev/{did}/");
    let topic = format!("{prefix}{}", "t".repeat(257 - prefix.len()));
    raw::disconnected_by(
        &mut s,
        &raw::publish_v5(0x30, &topic, 0, &[], b"{}"),
        0x90,
        "limit mqtt.topic_length exceeded",
    )
    .await;

    // subscriptions: 50, then SUBACK 0x97 for the 51st, and the connection stays
    let (_, did, secret) = srv.device().await;
    let mut s = raw::session(&srv, &did, &secret, 30).await;
    for i in 1..=51u16 {
        s.write_all(&raw::subscribe_v5(i, &format!("dev/{did}/s{i}")))
            .await
            .unwrap();
        let ack = raw::read_packet(&mut s).await;
        let code = if i <= 50 { 0x01 } else { 0x97 };
        assert_eq!(raw::body(&ack)[3], code, "{i}: {ack:02x?}");
    }
    assert_eq!(refusals(&srv, "mqtt.subscriptions").await, 1.0);
    s.write_all(&[0xC0, 0x00]).await.unwrap();
    assert_eq!(raw::read_packet(&mut s).await, [0xD0, 0x00]);

    // inflight: QoS 2 publishes awaiting PUBREL and QoS 1 ones awaiting PUBACK count together
    let (did, secret) = srv.device_with_rate(60_000).await;
    let mut s = raw::session(&srv, &did, &secret, 30).await;
    let other = format!("dev/{did}/x");
    let mut burst = Vec::new();
    for pid in 1..=100u16 {
        burst.extend(raw::publish_v5(0x34, &other, pid, &[], b"x"));
    }
    s.write_all(&burst).await.unwrap();
    for _ in 1..=100u16 {
        assert_eq!(raw::read_packet(&mut s).await[0], 0x50);
    }
    raw::disconnected_by(
        &mut s,
        &raw::publish_qos1_v5(&other, 101, b"x"),
        0x93,
        "limit mqtt.inflight exceeded",
    )
    .await;
    assert_serving(&srv).await;
}

/// Report-to-push latencies of `did` for `n` reports: a QoS 0 report on the plain port, until
/// the user's live-push connection shows it. Reports are 110 ms apart, within the product's 10 a
/// second.
async fn report_to_push(
    s: &mut tokio::net::TcpStream,
    ws: &mut crate::accounts::Ws,
    did: &str,
    n: usize,
) -> Vec<Duration> {
    let up = format!("dev/{did}/up");
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let level = (i % 20) * 5;
        let body = format!(r#"{{"level":{level},"power":{}}}"#, i % 2 == 0);
        let started = std::time::Instant::now();
        s.write_all(&raw::publish_v5(0x30, &up, 0, &[], body.as_bytes()))
            .await
            .unwrap();
        let m = ws.next_kind("status").await;
        assert_eq!(m["values"]["level"], level, "{m}");
        times.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(110).saturating_sub(started.elapsed())).await;
    }
    times
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// The floods' switch: paused, on, or stopped for good.
const PAUSED: u8 = 0;
const FLOODING: u8 = 1;
const STOPPED: u8 = 2;
type Switch = std::sync::Arc<std::sync::atomic::AtomicU8>;

/// Run a load generator on a thread and runtime of its own, so that it does not delay the test's
/// own measurements.
fn on_its_own_thread<F, Fut>(generator: F) -> std::thread::JoinHandle<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(generator())
    })
}

/// A load generator's next 10 ms step: `Some(true)` to work, `Some(false)` to pause, `None` once
/// stopped.
async fn next_step(tick: &mut tokio::time::Interval, switch: &Switch) -> Option<bool> {
    tick.tick().await;
    match switch.load(std::sync::atomic::Ordering::Relaxed) {
        STOPPED => None,
        on => Some(on == FLOODING),
    }
}

/// A publish flood and a connection flood are refused while another device's reports keep
/// reaching its user's live push. How much the floods slow that path is printed, not asserted: a
/// ratio of times is a benchmark figure, and on a busy 2-core machine it swings.
#[tokio::test]
async fn floods_are_refused_while_another_device_keeps_reaching_push() {
    // The abuse disconnect is off so that the flooding device keeps costing refusals throughout;
    // an address may open 10 connections at once, then one a second.
    let env = crate::accounts::Env::start_with(&[
        ("RAMPART_MQTT__LIMITS__REPORT_ABUSE_SECS", "0"),
        ("RAMPART_MQTT__LIMITS__CONNECT_PER_IP__PER_MINUTE", "60"),
        ("RAMPART_MQTT__LIMITS__CONNECT_PER_IP__BURST", "10"),
    ])
    .await;
    let srv = &env.srv;
    let (token, _) = env.user("latency@example.com").await;
    let (did, secret, passcode) = env.device().await;
    let (status, v) = env.bind(&token, &did, &passcode).await;
    assert_eq!(status, 201, "{v}");
    let mut ws = env.ws(&token, true).await;
    let mut s = raw::session(srv, &did, &secret, 30).await;
    report_to_push(&mut s, &mut ws, &did, 3).await; // warm up

    // One device publishing at about 2,000 a second against a limit of one a second.
    let (flooder, fsecret) = srv.device_with_rate(60).await;
    let f = raw::session(srv, &flooder, &fsecret, 30).await;
    let switch = Switch::default();
    let f = f.into_std().unwrap();
    let up = format!("dev/{flooder}/up");
    let publishing = on_its_own_thread({
        let switch = switch.clone();
        move || async move {
            let mut f = tokio::net::TcpStream::from_std(f).unwrap();
            let batch: Vec<u8> = (0..20)
                .flat_map(|_| raw::publish_v5(0x30, &up, 0, &[], br#"{"power":true}"#))
                .collect();
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while let Some(on) = next_step(&mut tick, &switch).await {
                if on {
                    f.write_all(&batch).await.unwrap();
                }
            }
        }
    });
    // A connection flood from one other address: about 500 new connections a second (500 times
    // its limit), each closed again at once.
    let port = srv.mqtt_plain;
    let connecting = on_its_own_thread({
        let switch = switch.clone();
        move || async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while let Some(on) = next_step(&mut tick, &switch).await {
                for _ in 0..if on { 5 } else { 0 } {
                    drop(tcp_from("127.0.0.3", port).await);
                }
            }
        }
    });
    // Quiet and flooded rounds in turn, so that the machine's own load weighs on both alike.
    let (mut quiet, mut flooded) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        switch.store(PAUSED, std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200)).await;
        quiet.extend(report_to_push(&mut s, &mut ws, &did, 9).await);
        switch.store(FLOODING, std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200)).await; // the floods are under way
        flooded.extend(report_to_push(&mut s, &mut ws, &did, 9).await);
    }
    switch.store(STOPPED, std::sync::atomic::Ordering::Relaxed);
    publishing.join().unwrap();
    connecting.join().unwrap();
    let (quiet, flooded) = (median(quiet), median(flooded));

    let ratio = flooded.as_secs_f64() / quiet.as_secs_f64();
    eprintln!("report-to-push median: {quiet:?} quiet, {flooded:?} under floods ({ratio:.2}x)");
    // the floods were refused, not served
    assert!(refusals(srv, "mqtt.report_rate").await > 100.0);
    assert!(refusals(srv, "mqtt.connect_per_ip").await > 0.0);
}

/// The reason code of a PUBACK or PUBREC read off the wire (0 for the short success form).
fn ack_code(ack: &[u8]) -> u8 {
    raw::body(ack).get(2).copied().unwrap_or(0)
}

/// Retained messages are capped per device (topics, bytes) and per node: a retained publish past
/// a cap is answered 0x97 naming `mqtt.retained`, and is neither kept nor delivered; an empty
/// payload (a delete) is always accepted and frees room; MQTT 3.1.1 gets its PUBACK and the
/// message is dropped.
#[tokio::test]
async fn retained_messages_are_capped_per_device_and_per_node() {
    let srv = Server::start_with(&[("RAMPART_MQTT__LIMITS__RETAINED_BYTES_TOTAL", "100000")]).await;
    let (did, secret) = srv.device_with_rate(60_000).await;
    let mut s = raw::session(&srv, &did, &secret, 30).await;
    s.write_all(&raw::subscribe_v5(1, &format!("dev/{did}/#")))
        .await
        .unwrap();
    assert_eq!(raw::read_packet(&mut s).await[0], 0x90);
    let retain = |pid: u16, sub: &str, len: usize| {
        raw::publish_v5(
            0x33,
            &format!("dev/{did}/{sub}"),
            pid,
            &[],
            &vec![b'r'; len],
        )
    };
    // Eight topics: each kept, and delivered to the device's own subscription.
    for i in 1..=8u16 {
        s.write_all(&retain(i, &format!("t{i}"), 100))
            .await
            .unwrap();
        let mut got = [
            raw::read_packet(&mut s).await,
            raw::read_packet(&mut s).await,
        ];
        got.sort();
        assert_eq!((got[0][0] & 0xF0, got[1][0]), (0x30, 0x40), "{got:02x?}");
        assert_eq!(ack_code(&got[1]), 0x00);
    }
    // A ninth topic is refused, and not delivered: the next packet after its PUBACK is PINGRESP.
    s.write_all(&retain(9, "t9", 100)).await.unwrap();
    let ack = raw::read_packet(&mut s).await;
    assert_eq!((ack[0], ack_code(&ack)), (0x40, 0x97), "{ack:02x?}");
    assert!(
        raw::says(
            &ack,
            "limit mqtt.retained exceeded: at most 8 retained topics per device"
        ),
        "{ack:02x?}"
    );
    s.write_all(&[0xC0, 0x00]).await.unwrap();
    assert_eq!(raw::read_packet(&mut s).await, [0xD0, 0x00]);
    // Replacing a kept topic is fine; growing it past 64 KiB of the device's bytes is not.
    s.write_all(&retain(10, "t1", 200)).await.unwrap();
    let _ = raw::read_packet(&mut s).await; // its delivery or PUBACK, in either order
    let _ = raw::read_packet(&mut s).await;
    s.write_all(&retain(11, "t1", 70_000)).await.unwrap();
    let ack = raw::read_packet(&mut s).await;
    assert_eq!((ack[0], ack_code(&ack)), (0x40, 0x97), "{ack:02x?}");
    assert!(
        raw::says(&ack, "65536 bytes of retained messages per device"),
        "{ack:02x?}"
    );
    // A delete is accepted at the cap (and delivered as such), and frees a topic.
    s.write_all(&retain(12, "t8", 0)).await.unwrap();
    let _ = raw::read_packet(&mut s).await;
    let _ = raw::read_packet(&mut s).await;
    s.write_all(&retain(13, "t9", 100)).await.unwrap();
    let _ = raw::read_packet(&mut s).await;
    let ack = raw::read_packet(&mut s).await;
    assert_eq!(ack_code(&ack), 0x00, "{ack:02x?}");
    // A QoS 2 retained publish past a cap: PUBREC 0x97.
    s.write_all(&raw::publish_v5(
        0x35,
        &format!("dev/{did}/t10"),
        14,
        &[],
        b"x",
    ))
    .await
    .unwrap();
    let rec = raw::read_packet(&mut s).await;
    assert_eq!((rec[0], ack_code(&rec)), (0x50, 0x97), "{rec:02x?}");

    // The node's cap (100,000 bytes here): another device's 60,000 fit, a third's do not.
    let mut filled = 0;
    for _ in 0..3 {
        let (did, secret) = srv.device_with_rate(60_000).await;
        let mut s = raw::session(&srv, &did, &secret, 30).await;
        s.write_all(&raw::publish_v5(
            0x33,
            &format!("dev/{did}/big"),
            1,
            &[],
            &[b'b'; 60_000],
        ))
        .await
        .unwrap();
        let ack = raw::read_packet(&mut s).await;
        match ack_code(&ack) {
            0x00 => filled += 1,
            code => {
                assert_eq!(code, 0x97, "{ack:02x?}");
                assert!(
                    raw::says(&ack, "the server holds its most retained bytes"),
                    "{ack:02x?}"
                );
            }
        }
    }
    assert_eq!(filled, 1);

    // MQTT 3.1.1: past the cap the PUBACK comes (3.1.1 has no refusal code) and nothing is kept.
    let (_, did3, secret3) = srv.device().await;
    let (u, p) = creds(&did3, &secret3);
    let (mut s3, connack) = raw::connect_with(&srv, &raw::connect_v311(&did3, &u, &p)).await;
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00]);
    let mut b = Vec::new();
    raw::string(&mut b, format!("dev/{did3}/big").as_bytes());
    b.extend_from_slice(&[0x00, 0x01]);
    b.extend_from_slice(&[b'c'; 70_000]);
    s3.write_all(&raw::frame(0x33, b)).await.unwrap();
    assert_eq!(raw::read_packet(&mut s3).await, [0x40, 0x02, 0x00, 0x01]);
    let mut b = 2u16.to_be_bytes().to_vec();
    raw::string(&mut b, format!("dev/{did3}/#").as_bytes());
    b.push(0x01);
    s3.write_all(&raw::frame(0x82, b)).await.unwrap();
    assert_eq!(raw::read_packet(&mut s3).await[0], 0x90);
    s3.write_all(&[0xC0, 0x00]).await.unwrap();
    assert_eq!(
        raw::read_packet(&mut s3).await,
        [0xD0, 0x00],
        "nothing retained"
    );

    assert_eq!(refusals(&srv, "mqtt.retained").await, 6.0);
}

/// One device retaining 1,000 messages of 200 KB on distinct subtopics does not grow the
/// server's memory by their size (before the caps: about 200 MiB).
#[tokio::test]
async fn retained_flood_leaves_memory_bounded() {
    let srv = Server::process().await;
    let (did, secret) = srv.device_with_rate(60_000).await;
    let mut s = raw::session(&srv, &did, &secret, 30).await;
    let before = srv.rss_kib();
    let payload = vec![b'f'; 200_000];
    for i in 0..1000u16 {
        let pid = i + 1;
        s.write_all(&raw::publish_v5(
            0x33,
            &format!("dev/{did}/f{i}"),
            pid,
            &[],
            &payload,
        ))
        .await
        .unwrap();
        let ack = raw::read_packet(&mut s).await;
        assert_eq!((ack[0], ack_code(&ack)), (0x40, 0x97), "{ack:02x?}");
    }
    let grown = srv.rss_kib().saturating_sub(before);
    eprintln!("RSS grew by {grown} KiB under 1,000 retained publishes of 200 KB");
    assert!(grown < 32 * 1024, "RSS grew by {grown} KiB");
    assert_eq!(refusals(&srv, "mqtt.retained").await, 1000.0);
}
