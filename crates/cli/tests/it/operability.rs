//! What a deployment watches: `GET /readyz`, JSON log lines, and a graceful stop on SIGTERM
//! (the process drains and exits 0, an acknowledged report survives, the log says so).

use crate::support::{creds, v4_options, v4_until, Server};
use serde_json::Value;

#[tokio::test]
async fn readyz_answers_ready_with_its_dependencies() {
    let srv = Server::start().await;
    let r = srv.http_client.get(srv.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ready", "{v}");
    assert_eq!(v["store"], "sqlite", "{v}");
    assert_eq!(v["bus"], "local", "{v}");
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero_with_json_logs() {
    let mut srv = Server::process_logging(&[("RAMPART_LOG__FORMAT", "json")]).await;
    let (_, did, secret) = srv.device().await;
    let (user, pass) = creds(&did, &secret);
    let (client, mut el) = rumqttc::AsyncClient::new(v4_options(&srv, &did, &user, &pass), 10);
    v4_until(&mut el, |e| {
        matches!(e, Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))).then_some(())
    })
    .await;
    client
        .publish(
            format!("dev/{did}/up"),
            rumqttc::QoS::AtLeastOnce,
            false,
            r#"{"power":true}"#,
        )
        .await
        .unwrap();
    v4_until(&mut el, |e| {
        matches!(e, Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)))).then_some(())
    })
    .await;

    let status = srv.terminate_and_wait().await;
    assert!(status.success(), "exit status {status}");
    // The device hears the server go away rather than a reset mid-session.
    let gone = v4_until(&mut el, |e| match e {
        Ok(rumqttc::Event::Incoming(rumqttc::Packet::Disconnect)) => Some(true),
        Err(_) => Some(false),
        _ => None,
    });
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), gone).await;

    let log = srv.log_text();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 3, "{log}");
    for v in &lines {
        assert!(v["timestamp"].is_string(), "{v}");
        assert!(
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&v["level"].as_str().unwrap_or("")),
            "{v}"
        );
        assert!(v["target"].is_string(), "{v}");
        assert!(v["fields"]["message"].is_string(), "{v}");
    }
    let message = |m: &str| lines.iter().position(|v| v["fields"]["message"] == m);
    let listening = message("HTTP API listening").expect("the listening line");
    assert!(lines[listening]["fields"]["addr"].is_string(), "fields are fields");
    let stopping = message("shutting down").expect("the shutdown line");
    let stopped = message("stopped: listeners drained, counters flushed, store closed")
        .expect("the last line of a graceful stop");
    assert!(listening < stopping && stopping < stopped);

    // The acknowledged report is in the store the next start opens.
    let srv = srv.start_again(&[]).await;
    assert_eq!(srv.state(&did).await["state"]["power"], true);
}
