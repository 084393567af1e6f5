//! What a deployment watches: `GET /readyz`, JSON log lines, and a graceful stop on SIGTERM
//! (the process drains and exits 0, an acknowledged report survives, the log says so).

use crate::support::{creds, v4_options, v4_until, Server};
use serde_json::Value;

#[tokio::test]
async fn readyz_answers_ready_with_its_dependencies() {
    let srv = Server::start().await;
    let r = srv
        .http_client
        .get(srv.url("/readyz"))
        .send()
        .await
        .unwrap();
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
    let (_client, mut el) = connect_and_report(&srv, &did, &secret).await;

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
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
                .contains(&v["level"].as_str().unwrap_or("")),
            "{v}"
        );
        assert!(v["target"].is_string(), "{v}");
        assert!(v["fields"]["message"].is_string(), "{v}");
    }
    let message = |m: &str| lines.iter().position(|v| v["fields"]["message"] == m);
    let listening = message("HTTP API listening").expect("the listening line");
    assert!(
        lines[listening]["fields"]["addr"].is_string(),
        "fields are fields"
    );
    let stopping = message("shutting down").expect("the shutdown line");
    let stopped = message("stopped: listeners drained, counters flushed, store closed")
        .expect("the last line of a graceful stop");
    assert!(listening < stopping && stopping < stopped);

    // The acknowledged report is in the store the next start opens.
    let srv = srv.start_again(&[]).await;
    assert_eq!(srv.state(&did).await["state"]["power"], true);
}

/// The operator's overview, audit and chain routes the console reads, over HTTP like any client.
#[tokio::test]
async fn the_operator_reads_activity_the_whole_audit_log_and_the_chain_status() {
    let srv = Server::start().await;
    let (pk, did, secret) = srv.device().await;
    let (_client, _el) = connect_and_report(&srv, &did, &secret).await;
    srv.wait_state(&did, |v| v["online"] == true).await;

    let (s, v) = srv.admin("GET", "/v1/admin/activity", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["devices"].as_i64(), v["online"].as_i64()),
        (Some(1), Some(1)),
        "{v}"
    );
    let minutes = v["minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 60);
    // (The pulse is one per process, and other tests' servers share this one: at least ours.)
    let reports: u64 = minutes.iter().map(|m| m["reports"].as_u64().unwrap()).sum();
    assert!(reports >= 1, "{v}");
    assert!(minutes
        .windows(2)
        .all(|w| w[1]["start"].as_i64() > w[0]["start"].as_i64()));

    let (s, v) = srv
        .admin("GET", "/v1/admin/audit?action=product.create&limit=5", None)
        .await;
    assert_eq!(s, 200, "{v}");
    let rows = v["data"].as_array().unwrap();
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r["action"] == "product.create"));
    assert!(
        rows.iter()
            .any(|r| r["target"].as_str().unwrap_or("").contains(&pk)),
        "{v}"
    );
    let (s, v) = srv.admin("GET", "/v1/admin/audit?from=10&to=5", None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("INVALID_REQUEST")),
        "{v}"
    );

    let (s, v) = srv.admin("GET", "/v1/admin/audit/verify", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["intact"], true, "{v}");
    assert!(v["entries"].as_u64().unwrap() >= 2, "{v}");
    assert!(v["first_bad"].is_null());

    // None of them is open to anyone without the admin token.
    for path in [
        "/v1/admin/activity",
        "/v1/admin/audit",
        "/v1/admin/audit/verify",
    ] {
        let (s, _) = srv.call("GET", path, Some("rdt_not-a-token"), None).await;
        assert_eq!(s, 401, "{path}");
    }
}

/// Connect the device over MQTT 3.1.1 and have one report acknowledged (so it is stored).
async fn connect_and_report(
    srv: &Server,
    did: &str,
    secret: &str,
) -> (rumqttc::AsyncClient, rumqttc::EventLoop) {
    let (user, pass) = creds(did, secret);
    let (client, mut el) = rumqttc::AsyncClient::new(v4_options(srv, did, &user, &pass), 10);
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
    (client, el)
}
