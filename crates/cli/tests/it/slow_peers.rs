//! Peers that stop reading: a write that makes no progress within `limits.write_timeout_s`
//! closes the connection (MQTT and HTTP here; the event stream shares the HTTP listener's write
//! deadline, tested in `rampart_api::deadline`), counted by listener. Each client shrinks its
//! receive buffer so that the server's writes stall soon.

use crate::mqtt::raw;
use crate::support::*;
use tokio::io::AsyncWriteExt;

/// A TCP connection to `port` whose receive buffer is small (the kernel's minimum, about 4 KiB).
async fn small_window(port: u16) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(([127, 0, 0, 1], port).into()).await.unwrap()
}

/// A device that subscribes to its own subtopic, publishes large messages to it and never reads
/// what comes back is disconnected once the server's writes stall, and shows offline.
#[tokio::test]
async fn an_mqtt_peer_that_stops_reading_is_disconnected() {
    let srv = Server::start_with(&[("RAMPART_LIMITS__WRITE_TIMEOUT_S", "1")]).await;
    let (did, secret) = srv.device_with_rate(60_000).await;
    let mut s = small_window(srv.mqtt_plain).await;
    let (u, p) = creds(&did, &secret);
    s.write_all(&raw::connect_v5_keepalive(&did, &u, &p, 300))
        .await
        .unwrap();
    assert_eq!(raw::read_packet(&mut s).await[0], 0x20);
    s.write_all(&raw::subscribe_v5(1, &format!("dev/{did}/echo")))
        .await
        .unwrap();
    assert_eq!(raw::read_packet(&mut s).await[0], 0x90);
    srv.wait_state(&did, |v| v["online"] == true).await;
    // 100 KB messages to its own subscription, and nothing read from here on.
    let (_r, mut w) = s.into_split();
    let topic = format!("dev/{did}/echo");
    let writer = tokio::spawn(async move {
        let big = raw::publish_v5(0x30, &topic, 0, &[], &vec![b'e'; 100_000]);
        for _ in 0..400 {
            if w.write_all(&big).await.is_err() {
                break;
            }
        }
    });
    let n = srv
        .wait_metric(
            r#"rampart_slow_peer_disconnects_total{listener="mqtt"}"#,
            |n| n >= 1.0,
        )
        .await;
    assert_eq!(n, 1.0);
    srv.wait_state(&did, |v| v["online"] == false).await;
    writer.abort();
}

/// An HTTPS client that pipelines requests for a large document and reads none of the answers
/// is disconnected once the server's writes stall.
#[tokio::test]
async fn an_http_client_that_stops_reading_is_disconnected() {
    let srv = Server::start_with(&[("RAMPART_LIMITS__WRITE_TIMEOUT_S", "1")]).await;
    let tcp = small_window(srv.http).await;
    let conn = tokio_rustls::TlsConnector::from(crate::accounts::ws_tls(&srv));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = conn.connect(name, tcp).await.unwrap();
    let (_r, mut w) = tokio::io::split(tls);
    let writer = tokio::spawn(async move {
        let req = b"GET /openapi.json HTTP/1.1\r\nhost: localhost\r\n\r\n";
        for _ in 0..2000 {
            if w.write_all(req).await.is_err() {
                break;
            }
        }
        let _ = w.flush().await;
    });
    srv.wait_metric(
        r#"rampart_slow_peer_disconnects_total{listener="http"}"#,
        |n| n >= 1.0,
    )
    .await;
    writer.abort();
    let (s, _) = srv.call("GET", "/healthz", None, None).await;
    assert_eq!(s, 200);
}
