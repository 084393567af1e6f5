//! Commands: API -> device over MQTT -> ack -> API answer.

use crate::support::*;
use rumqttc::{Event, Packet, QoS};
use serde_json::{json, Value};
use std::time::Duration;

/// Connect `did` over MQTT 3.1.1, subscribe to its down topic, and answer every command with
/// `answer(command)` (None: stay silent). Returns once subscribed.
pub(crate) async fn fake_device(
    srv: &Server,
    did: &str,
    secret: &str,
    answer: fn(&Value) -> Option<Value>,
) -> tokio::task::JoinHandle<()> {
    let (u, p) = creds(did, secret);
    let (c, mut el) = rumqttc::AsyncClient::new(v4_options(srv, did, &u, &p), 10);
    c.subscribe(format!("dev/{did}/down"), QoS::AtLeastOnce)
        .await
        .unwrap();
    v4_until(&mut el, |e| {
        matches!(e, Ok(Event::Incoming(Packet::SubAck(_)))).then_some(())
    })
    .await;
    let ack_topic = format!("dev/{did}/ack");
    tokio::spawn(async move {
        while let Ok(ev) = el.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = ev {
                let cmd: Value = serde_json::from_slice(&p.payload).unwrap();
                if let Some(a) = answer(&cmd) {
                    c.publish(&ack_topic, QoS::AtLeastOnce, false, a.to_string())
                        .await
                        .unwrap();
                }
            }
        }
    })
}

#[tokio::test]
async fn set_command_round_trip_and_validation() {
    let srv = Server::start().await;
    let (_, did, secret) = srv.device().await;
    let path = format!("/v1/devices/{did}/commands");

    // offline: 409
    let (s, v) = srv
        .admin("POST", &path, Some(json!({"set": {"power": true}})))
        .await;
    assert_error(s, &v, 409, "DEVICE_OFFLINE");

    let _dev = fake_device(&srv, &did, &secret, |cmd| {
        assert!(cmd["id"].is_string());
        if cmd["set"]["level"] == 55 {
            Some(json!({"id": cmd["id"], "status": "error", "message": "level locked"}))
        } else {
            Some(json!({"id": cmd["id"], "status": "ok"}))
        }
    })
    .await;
    let (s, v) = srv
        .admin(
            "POST",
            &path,
            Some(json!({"set": {"power": true, "mode": "auto"}})),
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")), "{v}");
    let (s, v) = srv
        .admin("POST", &path, Some(json!({"set": {"level": 55}})))
        .await;
    assert_eq!(
        (s, v["status"].as_str(), v["message"].as_str()),
        (200, Some("error"), Some("level locked")),
        "{v}"
    );

    // validated against the model: read-only point, out of range, unknown, both set and action
    for (body, code) in [
        (json!({"set": {"temp": 20.0}}), "INVALID_DATAPOINT"),
        (json!({"set": {"level": 150}}), "INVALID_DATAPOINT"),
        (json!({"set": {"ghost": 1}}), "INVALID_DATAPOINT"),
        (
            json!({"set": {"power": true}, "action": "reboot"}),
            "INVALID_REQUEST",
        ),
        (json!({"set": {}}), "INVALID_REQUEST"),
        (json!({"action": "self_destruct"}), "INVALID_JSON"),
    ] {
        let (s, v) = srv.admin("POST", &path, Some(body.clone())).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (400, Some(code)),
            "{body} -> {v}"
        );
    }

    // built-in actions
    let (s, v) = srv
        .admin("POST", &path, Some(json!({"action": "reboot"})))
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")), "{v}");

    // unknown device: 404
    let (s, _) = srv
        .admin(
            "POST",
            "/v1/devices/nosuchdevice/commands",
            Some(json!({"action": "reboot"})),
        )
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn silent_device_times_out_with_504() {
    let srv = Server::start_with(&[("RAMPART_COMMANDS__TIMEOUT_MS", "700")]).await;
    let (_, did, secret) = srv.device().await;
    let _dev = fake_device(&srv, &did, &secret, |_| None).await;
    let (s, v) = srv
        .admin(
            "POST",
            &format!("/v1/devices/{did}/commands"),
            Some(json!({"set": {"power": false}})),
        )
        .await;
    assert_error(s, &v, 504, "COMMAND_TIMEOUT");
}

#[tokio::test]
async fn wipe_clears_state_and_history() {
    let srv = Server::start().await;
    let (_, did, secret) = srv.device().await;
    let (u, p) = creds(&did, &secret);
    // one connection both reports and answers, like a real device
    let (c, mut el) = rumqttc::AsyncClient::new(v4_options(&srv, &did, &u, &p), 10);
    c.subscribe(format!("dev/{did}/down"), QoS::AtLeastOnce)
        .await
        .unwrap();
    c.publish(
        format!("dev/{did}/up"),
        QoS::AtLeastOnce,
        false,
        r#"{"power":true}"#,
    )
    .await
    .unwrap();
    let ack_topic = format!("dev/{did}/ack");
    let c2 = c.clone();
    let _task = tokio::spawn(async move {
        while let Ok(ev) = el.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = ev {
                let cmd: Value = serde_json::from_slice(&p.payload).unwrap();
                let ack = json!({"id": cmd["id"], "status": "ok"}).to_string();
                c2.publish(&ack_topic, QoS::AtLeastOnce, false, ack)
                    .await
                    .unwrap();
            }
        }
    });
    srv.wait_state(&did, |v| v["state"]["power"] == true).await;
    let (s, v) = srv
        .admin(
            "POST",
            &format!("/v1/devices/{did}/commands"),
            Some(json!({"action": "wipe"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(srv.state(&did).await["state"], json!({}));
    let (_, h) = srv
        .admin("GET", &format!("/v1/devices/{did}/history"), None)
        .await;
    assert_eq!(h["data"], json!([]));
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test]
async fn persistent_session_queues_commands_while_offline() {
    let srv = Server::start_with(&[QUICK_RECONNECTS]).await;
    let (_, did, secret) = srv.device().await;
    let path = format!("/v1/devices/{did}/commands");
    let down = format!("dev/{did}/down");

    // connect with a persistent session (clean session = 0), subscribe, go away
    park_persistent_session(&srv, &did, &secret).await;

    // a command while offline is queued in the session: 202
    let (s, v) = srv
        .admin("POST", &path, Some(json!({"set": {"power": true}})))
        .await;
    assert_eq!((s, v["status"].as_str()), (202, Some("queued")), "{v}");
    let queued_id = v["id"].as_str().unwrap().to_owned();

    // reconnect without subscribing: the session is resumed and the command delivered
    let (u, p) = creds_at(&did, &secret, now_ms() + 1);
    let mut o = v4_options(&srv, &did, &u, &p);
    o.set_clean_session(false);
    let (_c, mut el) = rumqttc::AsyncClient::new(o, 10);
    let present = v4_until(&mut el, |e| match e {
        Ok(Event::Incoming(Packet::ConnAck(a))) => Some(a.session_present),
        _ => None,
    })
    .await;
    assert!(present, "session should be resumed");
    let cmd: Value = v4_until(&mut el, |e| match e {
        Ok(Event::Incoming(Packet::Publish(p))) if p.topic == down => {
            Some(serde_json::from_slice(&p.payload).unwrap())
        }
        _ => None,
    })
    .await;
    assert_eq!(cmd, json!({"id": queued_id, "set": {"power": true}}));
}

#[tokio::test]
async fn clean_session_discards_and_offline_device_gets_409() {
    let srv = Server::start_with(&[QUICK_RECONNECTS]).await;
    let (_, did, secret) = srv.device().await;
    let path = format!("/v1/devices/{did}/commands");
    let (u, p) = creds(&did, &secret);
    let mut o = v4_options(&srv, &did, &u, &p);
    o.set_clean_session(false);
    let (c, mut el) = rumqttc::AsyncClient::new(o, 10);
    c.subscribe(format!("dev/{did}/down"), QoS::AtLeastOnce)
        .await
        .unwrap();
    v4_until(&mut el, |e| {
        matches!(e, Ok(Event::Incoming(Packet::SubAck(_)))).then_some(())
    })
    .await;
    disconnect_v4(&srv, &did, c, el).await;
    // a clean-session connection discards the parked session
    let (u, p) = creds_at(&did, &secret, now_ms() + 1);
    let (c, mut el) = rumqttc::AsyncClient::new(v4_options(&srv, &did, &u, &p), 10);
    let present = v4_until(&mut el, |e| match e {
        Ok(Event::Incoming(Packet::ConnAck(a))) => Some(a.session_present),
        _ => None,
    })
    .await;
    assert!(!present);
    disconnect_v4(&srv, &did, c, el).await;
    let (s, v) = srv
        .admin("POST", &path, Some(json!({"set": {"power": true}})))
        .await;
    assert_error(s, &v, 409, "DEVICE_OFFLINE");
}
