//! `DeviceClient` end to end against the scripted fake broker.

use std::time::Duration;

use rampart_device::client::Backoff;
use rampart_device::{
    Ack, Action, Command, ConnectOptions, DeviceClient, Event, Protocol, TlsSettings, Transport,
};
use serde_json::json;
use tokio::net::TcpListener;

use crate::fake::{tls_server, Peer, Pkt, STEP};

const SECRET: &str = "factory-secret-1";

fn options(addr: String, protocol: Protocol, transport: Transport) -> ConnectOptions {
    let mut o = ConnectOptions::new(addr, "d1", SECRET.into(), transport);
    o.protocol = protocol;
    o.backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
    };
    o
}

#[derive(Debug, Default)]
struct Seen {
    connects: u32,
    disconnects_requested: u32,
    disconnects_failed: u32,
    bad: Vec<Option<String>>,
    commands: Vec<Command>,
    desired: Vec<i64>,
}

/// A device that reports on every connection, acks every command, reboots on `reboot`
/// and closes on the command with id `done`.
async fn run_device(client: DeviceClient, mut events: rampart_device::DeviceEvents) -> Seen {
    let mut seen = Seen::default();
    while let Some(ev) = events.next().await {
        match ev {
            Event::Connected => {
                seen.connects += 1;
                let n = seen.connects;
                client
                    .report(json!({"power": true, "n": n}).as_object().unwrap())
                    .unwrap();
            }
            Event::Disconnected { error: None, .. } => seen.disconnects_requested += 1,
            Event::Disconnected { error: Some(_), .. } => seen.disconnects_failed += 1,
            Event::BadCommand(b) => seen.bad.push(b.id),
            Event::Desired(d) => seen.desired.push(d.version),
            // Not subscribed to OTA (`ConnectOptions::ota` is off).
            Event::Ota(_) => {}
            Event::Command(c) => {
                client.ack(&Ack::ok(c.id())).unwrap();
                if matches!(
                    c,
                    Command::Action {
                        action: Action::Reboot,
                        ..
                    }
                ) {
                    client.reconnect_after(Duration::from_millis(100)).unwrap();
                }
                if c.id() == "done" {
                    client.close();
                }
                seen.commands.push(c);
            }
        }
    }
    seen
}

async fn accept_session(listener: &TcpListener, v5: bool) -> (Peer<tokio::net::TcpStream>, i64) {
    let (s, _) = tokio::time::timeout(STEP, listener.accept())
        .await
        .expect("client reconnects")
        .unwrap();
    let mut peer = Peer::new(s, v5);
    let c = peer.expect_connect().await;
    assert_eq!(c.level, if v5 { 5 } else { 4 });
    assert_eq!(c.client_id, "d1");
    let ts = c.verify(SECRET);
    peer.connack(0).await;
    assert_eq!(peer.expect_subscribe().await, "dev/d1/down");
    (peer, ts)
}

async fn full_session(protocol: Protocol) {
    let v5 = protocol == Protocol::V5;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (client, events) = DeviceClient::connect(options(addr, protocol, Transport::Tcp)).unwrap();
    let device = tokio::spawn(run_device(client, events));

    // Session 1: report, set, bad commands, reboot.
    let (mut p, ts1) = accept_session(&listener, v5).await;
    assert_eq!(
        p.next_publish().await,
        ("dev/d1/up".into(), json!({"power": true, "n": 1}))
    );
    p.publish("dev/d1/down", br#"{"id":"c1","set":{"power":false}}"#)
        .await;
    assert_eq!(
        p.next_publish().await,
        ("dev/d1/ack".into(), json!({"id": "c1", "status": "ok"}))
    );
    p.publish("dev/d1/down", br#"{"id":"c3","action":"dance"}"#)
        .await;
    let (topic, ack) = p.next_publish().await;
    assert_eq!(topic, "dev/d1/ack");
    assert_eq!(ack["id"], "c3");
    assert_eq!(ack["status"], "error");
    assert!(ack["message"].as_str().unwrap().contains("unknown action"));
    p.publish("dev/d1/down", b"not json {").await;
    p.publish("dev/d1/down", br#"{"id":"c2","action":"reboot"}"#)
        .await;
    assert_eq!(
        p.next_publish().await,
        ("dev/d1/ack".into(), json!({"id": "c2", "status": "ok"}))
    );
    assert_eq!(p.next().await, Some(Pkt::Disconnect));

    // Session 2 (after the reboot): fresh signature; then the broker drops the link.
    let (mut p, ts2) = accept_session(&listener, v5).await;
    assert!(ts2 > ts1, "re-signed with a fresh ts");
    let mut first = p.next_publish().await;
    if first.0 == "dev/d1/ack" {
        // QoS 1: the reboot ack may not have been PUBACKed before the DISCONNECT, so it is
        // delivered again on the next connection.
        assert_eq!(first.1, json!({"id": "c2", "status": "ok"}));
        first = p.next_publish().await;
    }
    assert_eq!(first, ("dev/d1/up".into(), json!({"power": true, "n": 2})));
    drop(p);

    // Session 3: reconnected after back-off, signed again; `done` closes the client.
    let (mut p, ts3) = accept_session(&listener, v5).await;
    assert!(ts3 > ts2, "re-signed with a fresh ts");
    assert_eq!(
        p.next_publish().await,
        ("dev/d1/up".into(), json!({"power": true, "n": 3}))
    );
    p.publish("dev/d1/down", br#"{"id":"done","action":"wipe"}"#)
        .await;
    assert_eq!(
        p.next_publish().await,
        ("dev/d1/ack".into(), json!({"id": "done", "status": "ok"}))
    );
    assert_eq!(p.next().await, Some(Pkt::Disconnect));
    p.expect_eof().await;

    let seen = tokio::time::timeout(STEP, device).await.unwrap().unwrap();
    assert_eq!(seen.connects, 3);
    assert_eq!(seen.disconnects_requested, 1);
    assert!(seen.disconnects_failed >= 1);
    assert_eq!(seen.bad, [Some("c3".to_owned()), None]);
    assert_eq!(
        seen.commands.iter().map(|c| c.id()).collect::<Vec<_>>(),
        ["c1", "c2", "done"]
    );
}

#[tokio::test]
async fn mqtt311_session_reboot_and_reconnect() {
    full_session(Protocol::V311).await;
}

#[tokio::test]
async fn mqtt5_session_reboot_and_reconnect() {
    full_session(Protocol::V5).await;
}

#[tokio::test]
async fn refused_connect_backs_off_and_retries() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (client, mut events) =
        DeviceClient::connect(options(addr, Protocol::V311, Transport::Tcp)).unwrap();
    let broker = tokio::spawn(async move {
        for _ in 0..2 {
            let (s, _) = listener.accept().await.unwrap();
            let mut p = Peer::new(s, false);
            p.expect_connect().await;
            p.connack(5).await; // not authorized
        }
        let (s, _) = listener.accept().await.unwrap();
        let mut p = Peer::new(s, false);
        p.expect_connect().await.verify(SECRET);
        p.connack(0).await;
        p.expect_subscribe().await;
        assert_eq!(p.next().await, Some(Pkt::Disconnect));
    });
    let mut failures = Vec::new();
    loop {
        match tokio::time::timeout(STEP, events.next()).await.unwrap() {
            Some(Event::Disconnected {
                error: Some(e),
                retry_in,
            }) => {
                assert!(retry_in <= Duration::from_millis(200));
                failures.push(e);
            }
            Some(Event::Connected) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(failures.len(), 2, "{failures:?}");
    client.close();
    assert_eq!(
        tokio::time::timeout(STEP, events.next()).await.unwrap(),
        None
    );
    broker.await.unwrap();
}

#[tokio::test]
async fn tls_with_a_self_signed_server_certificate() {
    let (cert_pem, acceptor) = tls_server();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let broker = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let s = acceptor.accept(s).await.unwrap();
        let mut p = Peer::new(s, false);
        p.expect_connect().await.verify(SECRET);
        p.connack(0).await;
        assert_eq!(p.expect_subscribe().await, "dev/d1/down");
        let publish = p.next_publish().await;
        assert_eq!(p.next().await, Some(Pkt::Disconnect));
        publish
    });
    let tls = TlsSettings::from_ca_pem(cert_pem.as_bytes()).unwrap();
    let (client, mut events) = DeviceClient::connect(options(
        format!("localhost:{port}"),
        Protocol::V311,
        Transport::Tls(tls),
    ))
    .unwrap();
    assert_eq!(
        tokio::time::timeout(STEP, events.next()).await.unwrap(),
        Some(Event::Connected)
    );
    client
        .report(json!({"temp": 21.5}).as_object().unwrap())
        .unwrap();
    client.close();
    while tokio::time::timeout(STEP, events.next())
        .await
        .unwrap()
        .is_some()
    {}
    assert_eq!(
        broker.await.unwrap(),
        ("dev/d1/up".into(), json!({"temp": 21.5}))
    );
}

#[tokio::test]
async fn tls_refuses_an_unknown_server_certificate() {
    let (_, acceptor) = tls_server();
    let (other_ca, _) = tls_server();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let _ = acceptor.accept(s).await;
        }
    });
    let tls = TlsSettings::from_ca_pem(other_ca.as_bytes()).unwrap();
    let (client, mut events) = DeviceClient::connect(options(
        format!("127.0.0.1:{port}"),
        Protocol::V311,
        Transport::Tls(tls),
    ))
    .unwrap();
    match tokio::time::timeout(STEP, events.next()).await.unwrap() {
        Some(Event::Disconnected { error: Some(e), .. }) => {
            assert!(
                e.to_lowercase().contains("cert") || e.contains("TLS"),
                "{e}"
            )
        }
        other => panic!("expected a TLS failure, got {other:?}"),
    }
    // Closing while waiting to reconnect ends the event loop at once, for good.
    client.close();
    assert_eq!(
        tokio::time::timeout(STEP, events.next()).await.unwrap(),
        None
    );
    assert_eq!(events.next().await, None);
}
