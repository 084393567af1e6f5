//! Known broker attacks, one test each: refused with the right
//! code, no crash, and the server goes on serving other devices. Hand-written bytes over the plain
//! port, since a client library would refuse to send them.
//!
//! Covered elsewhere: a first packet that is not CONNECT and a malformed Remaining Length before
//! CONNECT (`mqtt::first_packet_not_connect_is_dropped_on_plain_port`), a topic alias out of range
//! (`mqtt::topic_alias_and_qos2_duplicates`), a same-identity takeover
//! (`mqtt::second_connection_takes_over_with_0x8e`), publishing outside the namespace
//! (`mqtt::publish_outside_namespace_v5_disconnects_with_0x87`), the reconnect storm
//! (`mqtt_limits::reconnect_storm_bans_the_device_for_five_minutes`).

use crate::mqtt::raw::{self, assert_serving, expect_disconnect, frame, string};
use crate::support::*;
use tokio::io::AsyncWriteExt;

/// A fresh server with one device connected over MQTT 5: (server, did, stream).
async fn connected() -> (Server, String, tokio::net::TcpStream) {
    let srv = Server::start().await;
    let (_, did, secret) = srv.device().await;
    let s = raw::session(&srv, &did, &secret, 30).await;
    (srv, did, s)
}

/// A new MQTT 5 device on `srv`: (did, stream).
async fn another(srv: &Server) -> (String, tokio::net::TcpStream) {
    let (_, did, secret) = srv.device().await;
    let s = raw::session(srv, &did, &secret, 30).await;
    (did, s)
}

#[tokio::test]
async fn second_connect_is_a_protocol_error() {
    let (srv, did, mut s) = connected().await;
    // whatever it carries, a second CONNECT on a session is a protocol error
    let (u, p) = creds(&did, "0123456789abcdef0123456789abcdef");
    raw::disconnected_by(
        &mut s,
        &raw::connect_v5_keepalive(&did, &u, &p, 30),
        0x82,
        "second CONNECT",
    )
    .await;
    srv.wait_state(&did, |v| v["online"] == false).await;
    assert_serving(&srv).await;
}

#[tokio::test]
async fn server_only_packets_from_a_client_are_protocol_errors() {
    let srv = Server::start().await;
    for packet in [
        &[0x20, 0x03, 0x00, 0x00, 0x00][..],       // CONNACK
        &[0x90, 0x04, 0x00, 0x01, 0x00, 0x00][..], // SUBACK
        &[0xB0, 0x04, 0x00, 0x01, 0x00, 0x00][..], // UNSUBACK
        &[0xD0, 0x00][..],                         // PINGRESP
    ] {
        let (_, mut s) = another(&srv).await;
        raw::disconnected_by(&mut s, packet, 0x82, "server-only packet").await;
    }
    assert_serving(&srv).await;
}

#[tokio::test]
async fn remaining_length_over_the_limit_or_malformed() {
    let srv = Server::start().await;
    // 268,435,455 bytes announced: refused from the header alone, before any body is read
    let (_, mut s) = another(&srv).await;
    raw::disconnected_by(
        &mut s,
        &[0x30, 0xFF, 0xFF, 0xFF, 0x7F],
        0x95,
        "mqtt.packet_size",
    )
    .await;
    // a fifth length byte is malformed
    let (_, mut s) = another(&srv).await;
    raw::disconnected_by(&mut s, &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], 0x81, "").await;
    assert_serving(&srv).await;
}

#[tokio::test]
async fn property_length_past_the_packet_is_malformed() {
    let (srv, did, mut s) = connected().await;
    let mut b = Vec::new();
    string(&mut b, format!("dev/{did}/up").as_bytes());
    b.extend_from_slice(&[0x40, 0x01, 0x01]); // 64 bytes of properties announced, 2 present
    raw::disconnected_by(&mut s, &frame(0x30, b), 0x81, "").await;
    assert_serving(&srv).await;
}

#[tokio::test]
async fn invalid_or_duplicate_properties_are_protocol_errors() {
    let srv = Server::start().await;
    for props in [
        &[0x01, 0x01, 0x01, 0x01][..], // payload format indicator twice
        &[0x23, 0x00, 0x01, 0x23, 0x00, 0x02][..], // topic alias twice
        &[0x11, 0x00, 0x00, 0x00, 0x10][..], // session expiry: not a PUBLISH property
        &[0x01, 0x07][..],             // payload format indicator other than 0/1
        &[0x7F, 0x00][..],             // no such property
    ] {
        let (did, mut s) = another(&srv).await;
        let up = format!("dev/{did}/up");
        raw::disconnected_by(
            &mut s,
            &raw::publish_v5(0x30, &up, 0, props, br#"{"power":true}"#),
            0x82,
            "",
        )
        .await;
    }
    assert_serving(&srv).await;
}

#[tokio::test]
async fn thousands_of_user_properties_are_refused() {
    let (srv, did, mut s) = connected().await;
    let mut props = Vec::new();
    for i in 0..5000 {
        props.push(0x26);
        string(&mut props, b"k");
        string(&mut props, (i % 10).to_string().as_bytes());
    }
    let up = format!("dev/{did}/up");
    raw::disconnected_by(
        &mut s,
        &raw::publish_v5(0x30, &up, 0, &props, br#"{"power":true}"#),
        0x82,
        "malformed or invalid",
    )
    .await;
    assert_eq!(srv.state(&did).await["state"], serde_json::json!({}));
    assert_serving(&srv).await;
}

#[tokio::test]
async fn empty_or_invalid_utf8_topics_are_refused() {
    let srv = Server::start().await;
    // zero-length topic without a topic alias: protocol error
    let (_, mut s) = another(&srv).await;
    raw::disconnected_by(
        &mut s,
        &raw::publish_v5(0x30, "", 0, &[], b"{}"),
        0x82,
        "empty topic",
    )
    .await;
    // a topic that is not UTF-8: malformed
    let (did, mut s) = another(&srv).await;
    let mut b = Vec::new();
    let mut topic = format!("dev/{did}/").into_bytes();
    topic.extend_from_slice(&[0xC3, 0x28]);
    string(&mut b, &topic);
    b.push(0); // no properties
    b.extend_from_slice(b"{}");
    raw::disconnected_by(&mut s, &frame(0x30, b), 0x81, "").await;
    // nor a NUL character
    let (did, mut s) = another(&srv).await;
    raw::disconnected_by(
        &mut s,
        &raw::publish_v5(0x30, &format!("dev/{did}/a\0b"), 0, &[], b"{}"),
        0x81,
        "",
    )
    .await;
    assert_serving(&srv).await;
}

#[tokio::test]
async fn wildcards_in_a_publish_topic_are_refused() {
    let srv = Server::start().await;
    for tail in ["+", "#", "a/+/b"] {
        let (did, mut s) = another(&srv).await;
        let topic = format!("dev/{did}/{tail}");
        raw::disconnected_by(
            &mut s,
            &raw::publish_v5(0x32, &topic, 1, &[], b"{}"),
            0x82,
            "malformed or invalid",
        )
        .await;
    }
    assert_serving(&srv).await;
}

#[tokio::test]
async fn wildcard_and_sys_subscriptions_are_refused() {
    let srv = Server::start().await;
    let (other, _) = another(&srv).await;
    let their_down = format!("dev/{other}/down");
    for filter in [
        "#",
        "+/+/+",
        "+/#",
        "$SYS/#",
        "$SYS/broker/clients",
        "dev/+/up",
        &their_down,
    ] {
        let (_, mut s) = another(&srv).await;
        s.write_all(&raw::subscribe_v5(7, filter)).await.unwrap();
        let ack = raw::read_packet(&mut s).await;
        assert_eq!(
            (ack[0], raw::body(&ack)),
            (0x90, &[0x00, 0x07, 0x00, 0x87][..]),
            "{filter}: {ack:02x?}"
        );
        let d = expect_disconnect(&mut s, 0x87).await;
        assert!(raw::says(&d, "outside the device namespace"), "{d:02x?}");
    }
    // publishing into $SYS is outside the namespace as well
    let (_, mut s) = another(&srv).await;
    raw::disconnected_by(
        &mut s,
        &raw::publish_v5(0x30, "$SYS/broker/uptime", 0, &[], b"1"),
        0x87,
        "",
    )
    .await;
    assert_serving(&srv).await;
}

#[tokio::test]
async fn subscribe_with_tens_of_thousands_of_levels_is_refused() {
    let (srv, did, mut s) = connected().await;
    // 30,000 levels inside the device's own namespace: refused for its length, the connection stays
    let deep = format!("dev/{did}/{}x", "a/".repeat(30_000));
    s.write_all(&raw::subscribe_v5(3, &deep)).await.unwrap();
    let ack = raw::read_packet(&mut s).await;
    assert_eq!(raw::body(&ack), [0x00, 0x03, 0x00, 0x8F], "{ack:02x?}");
    s.write_all(&[0xC0, 0x00]).await.unwrap(); // PINGREQ
    assert_eq!(raw::read_packet(&mut s).await, [0xD0, 0x00]);
    // the same depth of `+` levels anywhere else
    let wild = format!("{}#", "+/".repeat(30_000));
    s.write_all(&raw::subscribe_v5(4, &wild)).await.unwrap();
    let ack = raw::read_packet(&mut s).await;
    assert_eq!(raw::body(&ack), [0x00, 0x04, 0x00, 0x8F], "{ack:02x?}");
    // and a publish topic that deep closes with 0x90
    let topic = format!("dev/{did}/{}x", "b/".repeat(30_000));
    raw::disconnected_by(
        &mut s,
        &raw::publish_v5(0x30, &topic, 0, &[], b"{}"),
        0x90,
        "mqtt.topic_length",
    )
    .await;
    assert_serving(&srv).await;
}

#[tokio::test]
async fn qos2_packet_ids_without_pubrel_are_capped() {
    let srv = Server::start().await;
    let (did, secret) = srv.device_with_rate(60_000).await;
    let mut s = raw::session(&srv, &did, &secret, 30).await;
    let topic = format!("dev/{did}/state");
    // the same id again while it awaits its PUBREL is only acknowledged again
    for _ in 0..3 {
        s.write_all(&raw::publish_v5(0x34, &topic, 1, &[], b"x"))
            .await
            .unwrap();
        assert_eq!(
            raw::read_packet(&mut s).await[..4],
            [0x50, 0x02, 0x00, 0x01]
        );
    }
    // 100 awaiting release (the announced receive maximum) is the cap
    let mut burst = Vec::new();
    for pid in 2..=100u16 {
        burst.extend(raw::publish_v5(0x34, &topic, pid, &[], b"x"));
    }
    s.write_all(&burst).await.unwrap();
    for pid in 2..=100u16 {
        let rec = raw::read_packet(&mut s).await;
        assert_eq!((rec[0], u16::from_be_bytes([rec[2], rec[3]])), (0x50, pid));
    }
    raw::disconnected_by(
        &mut s,
        &raw::publish_v5(0x34, &topic, 101, &[], b"x"),
        0x93,
        "mqtt.inflight",
    )
    .await;
    assert_eq!(
        srv.metric(r#"rampart_limit_refusals_total{limit="mqtt.inflight"}"#)
            .await,
        1.0
    );
    assert_serving(&srv).await;
}

#[tokio::test]
async fn client_id_held_by_another_identity_is_refused() {
    let srv = Server::start().await;
    let (holder, mut held) = another(&srv).await;
    let (_, intruder, secret) = srv.device().await;
    // the intruder's own valid credentials, under the holder's client id
    let (u, p) = creds(&intruder, &secret);
    let (_, connack) =
        raw::connect_with(&srv, &raw::connect_v5_keepalive(&holder, &u, &p, 30)).await;
    assert_eq!(raw::body(&connack)[..2], [0x00, 0x87], "{connack:02x?}");
    // the holder's session is untouched
    held.write_all(&[0xC0, 0x00]).await.unwrap();
    assert_eq!(raw::read_packet(&mut held).await, [0xD0, 0x00]);
    assert_eq!(srv.state(&holder).await["online"], true);
    assert_eq!(srv.state(&intruder).await["online"], false);
}
