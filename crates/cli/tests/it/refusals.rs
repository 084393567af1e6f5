//! Refused credentials: the caller hears the uniform answer, the operator's log names the exact
//! check that failed, and `rampart_auth_refusals_total{listener,reason}` counts it.

use crate::mqtt::v4_refusal;
use crate::support::*;
use rumqttc::{ConnectReturnCode, Event, Packet};
use serde_json::json;

fn refusals(listener: &str, reason: &str) -> String {
    format!(r#"rampart_auth_refusals_total{{listener="{listener}",reason="{reason}"}}"#)
}

/// The log lines that record a refusal with `reason`.
fn logged<'a>(log: &'a str, reason: &str) -> Vec<&'a str> {
    let field = format!("reason={reason}");
    log.lines()
        .filter(|l| l.contains("credential refused") && l.contains(&field))
        .collect()
}

async fn wait_logged(srv: &Server, reason: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let log = srv.log_text();
        if !logged(&log, reason).is_empty() {
            return log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no refusal logged with reason {reason}: {log}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn each_refused_connect_is_logged_and_counted_by_its_reason() {
    let srv = Server::process_logging(&[QUICK_RECONNECTS]).await;
    let (_, did, secret) = srv.device().await;
    let bad_user = rumqttc::ConnectReturnCode::BadUserNamePassword;

    // Unix seconds instead of milliseconds: the common slip.
    let secs = now_ms() / 1000;
    let (u, p) = creds_at(&did, &secret, secs);
    assert_eq!(v4_refusal(&srv, &did, &u, &p).await, bad_user);
    let log = wait_logged(&srv, "clock_skew").await;
    let line = logged(&log, "clock_skew")[0];
    assert!(line.contains("looks like seconds"), "{line}");
    assert!(line.contains("listener=mqtt_tls"), "{line}");
    assert!(line.contains(&did), "the line names the device: {line}");

    // A wrong secret, an unknown device, a malformed user name: the same answer, three reasons.
    let (u, p) = creds(&did, "not-the-secret");
    assert_eq!(v4_refusal(&srv, &did, &u, &p).await, bad_user);
    let ghost = "a".repeat(20);
    let (u, p) = creds(&ghost, &secret);
    assert_eq!(v4_refusal(&srv, &ghost, &u, &p).await, bad_user);
    let odd = format!("{did}|md5|{}", now_ms());
    assert_eq!(v4_refusal(&srv, &did, &odd, &secret).await, bad_user);

    // A replay of accepted credentials.
    let (u, p) = creds(&did, &secret);
    let (c, mut el) = rumqttc::AsyncClient::new(v4_options(&srv, &did, &u, &p), 10);
    v4_until(&mut el, |e| {
        matches!(e, Ok(Event::Incoming(Packet::ConnAck(_)))).then_some(())
    })
    .await;
    c.disconnect().await.unwrap();
    assert_eq!(v4_refusal(&srv, &did, &u, &p).await, bad_user);

    // Good credentials under another client id: not authorised, and said why.
    let (u, p) = creds(&did, &secret);
    assert_eq!(
        v4_refusal(&srv, "someone-else", &u, &p).await,
        ConnectReturnCode::NotAuthorized
    );

    for reason in [
        "clock_skew",
        "wrong_signature",
        "unknown_identity",
        "malformed",
        "replayed",
        "client_id_mismatch",
    ] {
        wait_logged(&srv, reason).await;
        assert_eq!(
            srv.metric(&refusals("mqtt_tls", reason)).await,
            1.0,
            "{reason}"
        );
    }
    // The device's secret never reaches the log.
    assert!(!srv.log_text().contains(&secret));
}

#[tokio::test]
async fn refused_registrations_and_signed_calls_name_their_reason() {
    let srv = Server::process_logging(&[]).await;
    let (pk, ps) = srv.product(true, false).await;

    // A registration signed at a timestamp in seconds.
    let body = Server::register_body(&pk, "hw-secs", "product", &ps, now_ms() / 1000, &nonce());
    let (s, _) = srv
        .call("POST", "/v1/device/register", None, Some(body))
        .await;
    assert_eq!(s, 401);
    // Signed with a wrong product secret, and for a product that does not exist.
    let body = Server::register_body(&pk, "hw-1", "product", "wrong", now_ms(), &nonce());
    let (s, _) = srv
        .call("POST", "/v1/device/register", None, Some(body))
        .await;
    assert_eq!(s, 401);
    let body = Server::register_body(
        "nosuchproduct000",
        "hw-1",
        "product",
        &ps,
        now_ms(),
        &nonce(),
    );
    let (s, _) = srv
        .call("POST", "/v1/device/register", None, Some(body))
        .await;
    assert_eq!(s, 401);
    // A nonce used twice.
    let n = nonce();
    let body = Server::register_body(&pk, "hw-2", "product", &ps, now_ms(), &n);
    let (s, _) = srv
        .call("POST", "/v1/device/register", None, Some(body.clone()))
        .await;
    assert_eq!(s, 200);
    let (s, _) = srv
        .call("POST", "/v1/device/register", None, Some(body))
        .await;
    assert_eq!(s, 401);

    for reason in [
        "clock_skew",
        "wrong_signature",
        "unknown_identity",
        "replayed",
    ] {
        let log = wait_logged(&srv, reason).await;
        assert!(
            logged(&log, reason)
                .iter()
                .any(|l| l.contains("listener=http")),
            "{log}"
        );
        assert_eq!(srv.metric(&refusals("http", reason)).await, 1.0, "{reason}");
    }
    let log = srv.log_text();
    assert!(
        logged(&log, "clock_skew")[0].contains("looks like seconds"),
        "{log}"
    );

    // A signed enterprise call by a key that does not exist: the caller hears SIGNATURE_MISMATCH,
    // the log says the key is unknown.
    let auth = format!(
        "RAMPART-HMAC-SHA256 key_id=nokey, ts={}, nonce={}, signature={}",
        now_ms(),
        nonce(),
        "0".repeat(64)
    );
    let resp = srv
        .http_client
        .get(srv.url("/v1/enterprise/devices"))
        .header("authorization", auth)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], json!("SIGNATURE_MISMATCH"), "{v}");
    let log = srv.log_text();
    assert!(
        logged(&log, "unknown_identity")
            .iter()
            .any(|l| l.contains("unknown access key") && l.contains("nokey")),
        "{log}"
    );
}

/// A plaintext MQTT CONNECT on the TLS port is answered "not authorised" (MQTT 5: with a reason
/// string saying to use TLS) instead of TLS alert bytes, logged and counted; TLS clients are
/// served as before.
#[tokio::test]
async fn plaintext_mqtt_on_the_tls_port_is_told_to_use_tls() {
    use crate::mqtt::raw;
    use tokio::io::AsyncWriteExt;
    let srv = Server::process_logging(&[]).await;
    let (_, did, secret) = srv.device().await;
    let ask = async |connect: Vec<u8>| {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", srv.mqtt_tls))
            .await
            .unwrap();
        s.write_all(&connect).await.unwrap();
        raw::read_packet(&mut s).await
    };
    let (u, p) = creds(&did, &secret);
    let v5 = ask(raw::connect_v5_keepalive(&did, &u, &p, 30)).await;
    assert_eq!(v5[0], 0x20, "a CONNACK: {v5:02x?}");
    assert_eq!(raw::body(&v5)[..2], [0x00, 0x87], "{v5:02x?}");
    let text = String::from_utf8_lossy(raw::body(&v5));
    assert!(text.contains("connect with TLS"), "{text}");
    let v3 = ask(raw::connect_v311(&did, &u, &p)).await;
    assert_eq!(v3, [0x20, 0x02, 0x00, 0x05]);
    assert_eq!(
        srv.metric(r#"rampart_wrong_protocol_total{listener="mqtt_tls"}"#)
            .await,
        2.0
    );
    assert!(
        srv.log_text()
            .contains("plaintext MQTT CONNECT on the TLS listener"),
        "{}",
        srv.log_text()
    );
    // mosquitto_pub pointed at the TLS port without --cafile prints the refusal, not a loop of
    // protocol errors.
    if let Ok(out) = std::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &srv.mqtt_tls.to_string()])
        .args(["-i", &did, "-u", &u, "-P", &p, "-t", "x", "-m", "{}"])
        .output()
    {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains("not authorised"), "{err}");
    }
    // TLS clients are unaffected.
    let (u, p) = creds(&did, &secret);
    let (_c, mut el) = rumqttc::AsyncClient::new(v4_options(&srv, &did, &u, &p), 10);
    v4_until(&mut el, |e| {
        matches!(e, Ok(Event::Incoming(Packet::ConnAck(_)))).then_some(())
    })
    .await;
}
