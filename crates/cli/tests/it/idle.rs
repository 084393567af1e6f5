//! The idle pool: plain-TCP sessions that go quiet are set aside off the runtime and come back
//! when their socket speaks, a command arrives, their keepalive runs out or the server stops.

use crate::mqtt::raw;
use crate::support::{Server, QUICK_RECONNECTS};
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const IDLE: &str = "rampart_mqtt_sessions_idle";

async fn server() -> Server {
    Server::process_with(&[("RAMPART_MQTT__PARK_IDLE_AFTER_MS", "50"), QUICK_RECONNECTS]).await
}

#[tokio::test]
async fn a_parked_session_wakes_for_commands_and_reports() {
    let srv = server().await;
    let (_, did, secret) = srv.device().await;
    let mut s = raw::session(&srv, &did, &secret, 30).await;
    s.write_all(&raw::subscribe_v5(1, &format!("dev/{did}/down")))
        .await
        .unwrap();
    assert_eq!(raw::read_packet(&mut s).await[0], 0x90);
    srv.wait_metric(IDLE, |v| v == 1.0).await;

    // A command reaches the parked session through its inbox.
    let path = format!("/v1/devices/{did}/commands");
    let call = srv.admin("POST", &path, Some(json!({"set": {"level": 15}})));
    let device = async {
        let publish = raw::read_packet(&mut s).await;
        assert_eq!(publish[0] & 0xF6, 0x32, "{publish:02x?}");
        raw::ack_command(&mut s, &did, &publish).await;
    };
    let ((status, body), ()) = tokio::join!(call, device);
    assert_eq!(status, 200, "{body}");

    // Parked again, the session wakes for a report on its socket and acknowledges it after commit.
    srv.wait_metric(IDLE, |v| v == 1.0).await;
    s.write_all(&raw::publish_qos1_v5(
        &format!("dev/{did}/up"),
        7,
        br#"{"level":25}"#,
    ))
    .await
    .unwrap();
    let ack = raw::read_packet(&mut s).await;
    assert_eq!((ack[0], ack[2], ack[3]), (0x40, 0x00, 0x07), "{ack:02x?}");
    assert_eq!(srv.state(&did).await["state"]["level"], 25);

    // A packet larger than the pool's read (3 KB of raw payload) wakes the session whole.
    srv.wait_metric(IDLE, |v| v == 1.0).await;
    s.write_all(&raw::publish_qos1_v5(
        &format!("dev/{did}/raw"),
        8,
        &[0x5A; 3000],
    ))
    .await
    .unwrap();
    let ack = raw::read_packet(&mut s).await;
    assert_eq!((ack[0], ack[2], ack[3]), (0x40, 0x00, 0x08), "{ack:02x?}");
    assert!(ack.len() == 4 || ack[4] == 0x00, "{ack:02x?}");

    // A ping while parked is answered.
    srv.wait_metric(IDLE, |v| v == 1.0).await;
    s.write_all(&[0xC0, 0x00]).await.unwrap();
    assert_eq!(raw::read_packet(&mut s).await, vec![0xD0, 0x00]);

    // The server stopping sends parked sessions DISCONNECT 0x8B.
    srv.wait_metric(IDLE, |v| v == 1.0).await;
    srv.terminate();
    let d = tokio::time::timeout(Duration::from_secs(10), raw::read_packet(&mut s))
        .await
        .expect("DISCONNECT at shutdown");
    assert_eq!((d[0], d[2]), (0xE0, 0x8B), "{d:02x?}");
}

#[tokio::test]
async fn a_parked_session_still_times_out_and_goes_offline() {
    let srv = server().await;
    let (_, did, secret) = srv.device().await;
    let mut s = raw::session(&srv, &did, &secret, 2).await;
    srv.wait_metric(IDLE, |v| v == 1.0).await;
    srv.wait_state(&did, |v| v["online"] == true).await;
    // Silent past 1.5 keepalives: the pool's timer closes it with 0x8D.
    let d = tokio::time::timeout(Duration::from_secs(10), raw::read_packet(&mut s))
        .await
        .unwrap();
    assert_eq!((d[0], d[2]), (0xE0, 0x8D), "{d:02x?}");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest).await;
    srv.wait_state(&did, |v| v["online"] == false).await;
    assert_eq!(srv.metric(IDLE).await, 0.0);
}

#[tokio::test]
async fn a_parked_session_that_drops_goes_offline_and_a_takeover_kicks_it() {
    let srv = server().await;
    let (_, did, secret) = srv.device().await;
    // The peer vanishing while parked is seen at once.
    let s = raw::session(&srv, &did, &secret, 30).await;
    srv.wait_metric(IDLE, |v| v == 1.0).await;
    drop(s);
    srv.wait_state(&did, |v| v["online"] == false).await;
    srv.wait_metric(IDLE, |v| v == 0.0).await;
    // A second connection of the same device kicks the parked first one with 0x8E.
    let mut first = raw::session(&srv, &did, &secret, 30).await;
    srv.wait_metric(IDLE, |v| v == 1.0).await;
    let _second = raw::session(&srv, &did, &secret, 30).await;
    let d = tokio::time::timeout(Duration::from_secs(10), raw::read_packet(&mut first))
        .await
        .unwrap();
    assert_eq!((d[0], d[2]), (0xE0, 0x8E), "{d:02x?}");
}

#[tokio::test]
async fn pings_are_answered_by_the_pool_and_keep_the_session_parked() {
    let srv = server().await;
    let (_, did, secret) = srv.device().await;
    // keepalive 1 s: without pings the session would be closed after 1.5 s
    let mut s = raw::session(&srv, &did, &secret, 1).await;
    srv.wait_metric(IDLE, |v| v == 1.0).await;
    let before = srv.metric("rampart_mqtt_idle_pings_total").await;
    for _ in 0..8 {
        // the device's own pace, not a wait for the server
        tokio::time::sleep(Duration::from_millis(400)).await;
        s.write_all(&[0xC0, 0x00]).await.unwrap();
        assert_eq!(raw::read_packet(&mut s).await, vec![0xD0, 0x00]);
    }
    // 3.2 s of pings: alive, still parked, and the pool (not a woken task) answered them
    srv.wait_metric("rampart_mqtt_idle_pings_total", |v| v >= before + 6.0)
        .await;
    assert_eq!(srv.metric(IDLE).await, 1.0);
    assert_eq!(srv.state(&did).await["online"], true);
    // two pings in one segment get two answers
    s.write_all(&[0xC0, 0x00, 0xC0, 0x00]).await.unwrap();
    assert_eq!(raw::read_packet(&mut s).await, vec![0xD0, 0x00]);
    assert_eq!(raw::read_packet(&mut s).await, vec![0xD0, 0x00]);
    // a ping followed by a report: the session wakes and handles both
    let mut both = vec![0xC0, 0x00];
    both.extend(raw::publish_qos1_v5(
        &format!("dev/{did}/up"),
        3,
        br#"{"level":35}"#,
    ));
    s.write_all(&both).await.unwrap();
    assert_eq!(raw::read_packet(&mut s).await, vec![0xD0, 0x00]);
    let ack = raw::read_packet(&mut s).await;
    assert_eq!((ack[0], ack[2], ack[3]), (0x40, 0x00, 0x03), "{ack:02x?}");
    assert_eq!(srv.state(&did).await["state"]["level"], 35);
}
