//! Device shadows and command status: commands recorded and looked up by id, the desired state
//! (by command and by `PUT`), the delta cleared by reports, told to the device at CONNECT and
//! pushed as a `delta` event.

use crate::accounts::{Dev, Env};
use crate::commands::fake_device;
use crate::support::*;
use rumqttc::{Event, Packet, QoS};
use serde_json::{json, Value};
use std::time::Duration;

/// The status answer of command `id` of `did`.
async fn status(srv: &Server, did: &str, id: &str) -> (u16, Value) {
    srv.admin("GET", &format!("/v1/devices/{did}/commands/{id}"), None)
        .await
}

/// The device's shadow, as `GET /v1/devices/{did}` shows it.
async fn shadow(srv: &Server, did: &str) -> Value {
    srv.state(did).await["shadow"].clone()
}

/// The next publish on `topic`, as JSON.
/// A QoS 1 report from `did`, once the server acknowledged it.
async fn report_acked(
    c: &rumqttc::AsyncClient,
    el: &mut rumqttc::EventLoop,
    did: &str,
    body: &str,
) {
    c.publish(format!("dev/{did}/up"), QoS::AtLeastOnce, false, body)
        .await
        .unwrap();
    v4_until(el, |e| {
        matches!(e, Ok(Event::Incoming(Packet::PubAck(_)))).then_some(())
    })
    .await;
}

async fn next_on(el: &mut rumqttc::EventLoop, topic: &str) -> Value {
    v4_until(el, |e| match e {
        Ok(Event::Incoming(Packet::Publish(p))) if p.topic == topic => {
            Some(serde_json::from_slice(&p.payload).unwrap())
        }
        _ => None,
    })
    .await
}

#[tokio::test]
async fn an_acked_command_is_looked_up_by_its_id() {
    let srv = Server::start().await;
    let (_, did, secret) = srv.device().await;
    let (_, other, _) = srv.device().await;
    let path = format!("/v1/devices/{did}/commands");
    let _dev = fake_device(&srv, &did, &secret, |cmd| {
        if cmd["set"]["level"] == 55 {
            Some(json!({"id": cmd["id"], "status": "error", "message": "level locked"}))
        } else {
            Some(json!({"id": cmd["id"], "status": "ok"}))
        }
    })
    .await;

    let (s, ack) = srv
        .admin("POST", &path, Some(json!({"set": {"power": true}})))
        .await;
    assert_eq!(s, 200, "{ack}");
    let id = ack["id"].as_str().unwrap();
    let (s, v) = status(&srv, &did, id).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["id"].as_str(), v["did"].as_str()),
        (Some(id), Some(&*did))
    );
    assert_eq!(v["status"], "ok");
    assert!(v.get("detail").is_none(), "{v}");
    assert!(v["expires_at"].as_i64().unwrap() > v["created_at"].as_i64().unwrap());

    let (s, ack) = srv
        .admin("POST", &path, Some(json!({"set": {"level": 55}})))
        .await;
    assert_eq!((s, ack["status"].as_str()), (200, Some("error")), "{ack}");
    let (_, v) = status(&srv, &did, ack["id"].as_str().unwrap()).await;
    assert_eq!(
        (v["status"].as_str(), v["detail"].as_str()),
        (Some("error"), Some("level locked")),
        "{v}"
    );

    // An unknown id, an id of another device, a device that does not exist: 404.
    let (s, v) = status(&srv, &did, "0123456789abcdef").await;
    assert_error(s, &v, 404, "NOT_FOUND");
    let (s, v) = status(&srv, &other, id).await;
    assert_error(s, &v, 404, "NOT_FOUND");
    let (s, v) = status(&srv, &did, &"a".repeat(200)).await;
    assert_error(s, &v, 404, "NOT_FOUND");
    let (s, v) = status(&srv, "nosuchdevice", id).await;
    assert_error(s, &v, 404, "NOT_FOUND");
}

/// queued (parked session) → sent (the session is resumed) → expired (no ack within the TTL);
/// a command that reached no session is not recorded.
#[tokio::test]
async fn a_queued_command_is_sent_on_resume_and_expires_without_an_ack() {
    let srv = Server::start_with(&[QUICK_RECONNECTS]).await;
    let (_, did, secret) = srv.device().await;
    let path = format!("/v1/devices/{did}/commands");
    let down = format!("dev/{did}/down");

    park_persistent_session(&srv, &did, &secret).await;

    let (s, v) = srv
        .admin("POST", &path, Some(json!({"set": {"power": true}})))
        .await;
    assert_eq!((s, v["status"].as_str()), (202, Some("queued")), "{v}");
    let queued = v["id"].as_str().unwrap().to_owned();
    assert_eq!(status(&srv, &did, &queued).await.1["status"], "queued");

    // Resumed: the command is handed to the session before the CONNACK goes out.
    let (u, p) = creds_at(&did, &secret, now_ms() + 1);
    let mut o = v4_options(&srv, &did, &u, &p);
    o.set_clean_session(false);
    let (_c, mut el) = rumqttc::AsyncClient::new(o, 10);
    let cmd = next_on(&mut el, &down).await;
    assert_eq!(cmd["id"], queued.as_str());
    assert_eq!(status(&srv, &did, &queued).await.1["status"], "sent");

    // Never acknowledged: past its TTL (`commands.queued_ttl_secs`, an hour by default) it is expired.
    srv.advance(Duration::from_secs(3601));
    let (s, v) = status(&srv, &did, &queued).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("expired")), "{v}");
}

#[tokio::test]
async fn a_command_to_an_offline_device_is_not_recorded_but_a_desired_one_is_kept() {
    let srv = Server::start().await;
    let (_, did, _) = srv.device().await;
    let path = format!("/v1/devices/{did}/commands");
    let (s, v) = srv
        .admin("POST", &path, Some(json!({"set": {"power": true}})))
        .await;
    assert_error(s, &v, 409, "DEVICE_OFFLINE");
    assert_eq!(shadow(&srv, &did).await["version"], 0);

    let (s, v) = srv
        .admin(
            "POST",
            &path,
            Some(json!({"set": {"power": true}, "desired": true})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v, json!({"status": "desired", "version": 1}));
    let sh = shadow(&srv, &did).await;
    assert_eq!(
        sh,
        json!({"desired": {"power": true}, "reported": {}, "delta": {"power": true}, "version": 1})
    );

    // `desired` needs `set`, and is validated like it.
    for (body, code) in [
        (
            json!({"action": "reboot", "desired": true}),
            "INVALID_REQUEST",
        ),
        (
            json!({"set": {"temp": 20.0}, "desired": true}),
            "INVALID_DATAPOINT",
        ),
    ] {
        let (s, v) = srv.admin("POST", &path, Some(body.clone())).await;
        assert_error(s, &v, 400, code);
    }
    assert_eq!(shadow(&srv, &did).await["version"], 1);
}

#[tokio::test]
async fn desired_by_command_and_put_leaves_the_delta_as_reports_match() {
    let srv = Server::start().await;
    let (_, did, secret) = srv.device().await;
    let mut dev = Dev::connect(&srv, &did, &secret).await;
    let desired = format!("/v1/devices/{did}/desired");

    // Sent to the online device and kept as desired.
    let (s, v) = srv
        .admin(
            "POST",
            &format!("/v1/devices/{did}/commands"),
            Some(json!({"set": {"power": true}, "desired": true})),
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")), "{v}");
    let sh = shadow(&srv, &did).await;
    assert_eq!(
        (&sh["desired"], &sh["delta"], &sh["version"]),
        (&json!({"power": true}), &json!({"power": true}), &json!(1))
    );

    // Merged: named points change, others stay.
    let (s, v) = srv
        .admin("PUT", &desired, Some(json!({"level": 50, "mode": "cool"})))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!({"desired": {"power": true, "level": 50, "mode": "cool"}, "reported": {},
            "delta": {"power": true, "level": 50, "mode": "cool"}, "version": 2})
    );
    // The same values again change nothing, not even the version.
    let (_, v) = srv.admin("PUT", &desired, Some(json!({"level": 50}))).await;
    assert_eq!(v["version"], 2);

    // Validated like a command's `set`.
    for (body, status, code) in [
        (json!({"temp": 20.0}), 400, "INVALID_DATAPOINT"),
        (json!({"level": 150}), 400, "INVALID_DATAPOINT"),
        (json!({"ghost": 1}), 400, "INVALID_DATAPOINT"),
        (json!([1, 2]), 400, "INVALID_JSON"),
    ] {
        let (s, v) = srv.admin("PUT", &desired, Some(body)).await;
        assert_error(s, &v, status, code);
    }
    let (s, v) = srv
        .admin(
            "PUT",
            "/v1/devices/nosuchdevice/desired",
            Some(json!({"power": true})),
        )
        .await;
    assert_error(s, &v, 404, "NOT_FOUND");

    // Reports that match leave the delta; one that does not match stays in it.
    dev.report(json!({"power": true, "level": 45})).await;
    let sh = shadow(&srv, &did).await;
    assert_eq!(sh["delta"], json!({"level": 50, "mode": "cool"}), "{sh}");
    assert_eq!(sh["reported"], json!({"power": true, "level": 45}));
    dev.report(json!({"level": 50, "mode": "cool"})).await;
    let sh = shadow(&srv, &did).await;
    assert_eq!(sh["delta"], json!({}), "{sh}");
    // Desired stays once reached.
    assert_eq!(
        sh["desired"],
        json!({"power": true, "level": 50, "mode": "cool"})
    );

    // `null` removes a point.
    let (_, v) = srv
        .admin("PUT", &desired, Some(json!({"mode": null, "power": null})))
        .await;
    assert_eq!(
        (&v["desired"], &v["version"]),
        (&json!({"level": 50}), &json!(3))
    );
}

#[tokio::test]
async fn the_delta_is_told_to_the_device_at_connect() {
    let srv = Server::start_with(&[QUICK_RECONNECTS]).await;
    let (_, did, secret) = srv.device().await;
    let down = format!("dev/{did}/down");
    let (s, v) = srv
        .admin(
            "PUT",
            &format!("/v1/devices/{did}/desired"),
            Some(json!({"power": true, "level": 20})),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    // A clean session gets it once it subscribes to its down topic.
    let (u, p) = creds(&did, &secret);
    let mut o = v4_options(&srv, &did, &u, &p);
    o.set_clean_session(false);
    let (c, mut el) = rumqttc::AsyncClient::new(o, 10);
    c.subscribe(&down, QoS::AtLeastOnce).await.unwrap();
    let msg = next_on(&mut el, &down).await;
    assert_eq!(
        msg,
        json!({"desired": {"power": true, "level": 20}, "version": 1})
    );
    // Half of it applied.
    report_acked(&c, &mut el, &did, r#"{"power":true}"#).await;
    disconnect_v4(&srv, &did, c, el).await;

    // A resumed session gets what is left without subscribing again.
    let (u, p) = creds_at(&did, &secret, now_ms() + 1);
    let mut o = v4_options(&srv, &did, &u, &p);
    o.set_clean_session(false);
    let (c, mut el) = rumqttc::AsyncClient::new(o, 10);
    let msg = next_on(&mut el, &down).await;
    assert_eq!(msg, json!({"desired": {"level": 20}, "version": 1}));
    report_acked(&c, &mut el, &did, r#"{"level":20}"#).await;
    disconnect_v4(&srv, &did, c, el).await;

    // Nothing left: the first message after connecting is the next command, not a delta.
    let (u, p) = creds_at(&did, &secret, now_ms() + 2);
    let (c, mut el) = rumqttc::AsyncClient::new(v4_options(&srv, &did, &u, &p), 10);
    c.subscribe(&down, QoS::AtLeastOnce).await.unwrap();
    v4_until(&mut el, |e| {
        matches!(e, Ok(Event::Incoming(Packet::SubAck(_)))).then_some(())
    })
    .await;
    let device = async {
        let msg = next_on(&mut el, &down).await;
        let ack = json!({"id": msg["id"], "status": "ok"}).to_string();
        c.publish(format!("dev/{did}/ack"), QoS::AtLeastOnce, false, ack)
            .await
            .unwrap();
        v4_until(&mut el, |e| {
            matches!(e, Ok(Event::Incoming(Packet::PubAck(_)))).then_some(())
        })
        .await;
        msg
    };
    let path = format!("/v1/devices/{did}/commands");
    let command = srv.admin("POST", &path, Some(json!({"action": "reboot"})));
    let (msg, (s, v)) = tokio::join!(device, command);
    assert_eq!(msg["action"], "reboot", "{msg}");
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")), "{v}");
}

#[tokio::test]
async fn delta_changes_are_pushed_and_guests_may_not_change_desired() {
    let env = Env::start_with(&[]).await;
    let (did, secret, passcode) = env.device().await;
    let (owner, _) = env.user("owner@example.com").await;
    let (guest, _) = env.user("guest@example.com").await;
    let (s, v) = env.bind(&owner, &did, &passcode).await;
    assert_eq!(s, 201, "{v}");
    env.share(&owner, &did, "guest@example.com", &guest, "guest")
        .await;
    let desired = format!("/v1/devices/{did}/desired");
    let mut ws = env.ws(&owner, false).await;
    let mut dev = Dev::connect(&env.srv, &did, &secret).await;

    let (s, v) = env
        .call("PUT", &desired, Some(&owner), Some(json!({"power": true})))
        .await;
    assert_eq!(s, 200, "{v}");
    let ev = ws.next_kind("delta").await;
    assert_eq!(
        (&ev["did"], &ev["delta"], &ev["version"]),
        (&json!(did), &json!({"power": true}), &json!(1)),
        "{ev}"
    );
    dev.report(json!({"power": true})).await;
    let ev = ws.next_kind("delta").await;
    assert_eq!(
        (&ev["delta"], &ev["version"]),
        (&json!({}), &json!(1)),
        "{ev}"
    );

    // A guest reads the shadow but may not change it, nor look commands up.
    let (s, v) = env
        .call("PUT", &desired, Some(&guest), Some(json!({"power": false})))
        .await;
    assert_error(s, &v, 403, "FORBIDDEN");
    let (s, v) = env
        .call("GET", &format!("/v1/devices/{did}"), Some(&guest), None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["shadow"]["desired"], json!({"power": true}), "{v}");
    let (s, v) = env
        .call(
            "GET",
            &format!("/v1/devices/{did}/commands/0123456789abcdef"),
            Some(&guest),
            None,
        )
        .await;
    assert_error(s, &v, 403, "FORBIDDEN");
    // The owner may; an unknown id is 404.
    let (s, v) = env
        .call(
            "GET",
            &format!("/v1/devices/{did}/commands/0123456789abcdef"),
            Some(&owner),
            None,
        )
        .await;
    assert_error(s, &v, 404, "NOT_FOUND");
}

/// The enterprise API looks a command up with scope `control`, only for devices the key reaches.
#[tokio::test]
async fn an_access_key_looks_a_command_up_with_the_control_scope() {
    use crate::enterprise_api::{enterprise, local_key, product_with_device, signed};
    let srv = Server::start().await;
    let ent = enterprise(&srv, "Acme").await;
    let (pk, did, secret) = product_with_device(&srv, &ent).await;
    let (_, other, _) = product_with_device(&srv, &ent).await;
    let control = local_key(&srv, &ent, &pk, &["read", "control"]).await;
    let read = local_key(&srv, &ent, &pk, &["read"]).await;
    let _dev = fake_device(&srv, &did, &secret, |cmd| {
        Some(json!({"id": cmd["id"], "status": "ok"}))
    })
    .await;
    let body = json!({"set": {"power": true}});
    let (s, ack) = signed(
        &srv,
        &control,
        "POST",
        &format!("/v1/enterprise/devices/{did}/commands"),
        Some(&body),
    )
    .await;
    assert_eq!(s, 200, "{ack}");
    let id = ack["id"].as_str().unwrap();
    let path = format!("/v1/enterprise/devices/{did}/commands/{id}");
    let (s, v) = signed(&srv, &control, "GET", &path, None).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")), "{v}");
    let (s, v) = signed(&srv, &read, "GET", &path, None).await;
    assert_error(s, &v, 403, "FORBIDDEN");
    let unknown = format!("/v1/enterprise/devices/{did}/commands/0123456789abcdef");
    let (s, v) = signed(&srv, &control, "GET", &unknown, None).await;
    assert_error(s, &v, 404, "NOT_FOUND");
    // A device of a product the key does not name is unknown to it.
    let elsewhere = format!("/v1/enterprise/devices/{other}/commands/{id}");
    let (s, v) = signed(&srv, &control, "GET", &elsewhere, None).await;
    assert_error(s, &v, 404, "NOT_FOUND");
    // The lookup that answered is audited under the key.
    let url = format!("sqlite://{}", srv.data().join("rampart.db").display());
    let store = rampart_store::Store::open(&url).await.unwrap();
    let rows = store
        .list_audit(Some("enterprise.command_status"), 10)
        .await
        .unwrap();
    store.close().await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        rows[0].target.as_deref(),
        Some(format!("device:{did} command:{id}").as_str())
    );
}

/// A change of the delta reaches the operator event stream as `device_delta`.
#[tokio::test]
async fn delta_changes_are_streamed_to_operators() {
    use crate::event_stream::{read_tenant, Stream};
    let srv = Server::start().await;
    let (pk, ps, key) = read_tenant(&srv, "Shadow Co").await;
    let (mut st, res) = Stream::login(
        &srv,
        &key,
        json!({"products": [pk], "events": ["device_delta"], "subkey": "shadow"}),
    )
    .await;
    assert_eq!(res["result"], true, "{res}");
    let (did, secret, _) = srv.register(&pk, &ps, &format!("hw-{}", nonce())).await;
    let (s, v) = srv
        .admin(
            "PUT",
            &format!("/v1/devices/{did}/desired"),
            Some(json!({"power": true})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let mut dev = Dev::connect(&srv, &did, &secret).await;
    dev.report(json!({"power": true})).await;
    for (delta, version) in [(json!({"power": true}), 1), (json!({}), 1)] {
        let m = st.recv().await;
        assert_eq!(
            (m["event_type"].as_str(), m["did"].as_str()),
            (Some("device_delta"), Some(did.as_str())),
            "{m}"
        );
        assert_eq!(
            m["data"],
            json!({"values": delta, "version": version}),
            "{m}"
        );
        st.ack(m["delivery_id"].as_i64().unwrap()).await;
    }
}

/// Command records and desired states are kept in the store: after a restart a command is looked
/// up as before and a device connecting gets its delta.
#[tokio::test]
async fn statuses_and_desired_states_survive_a_restart() {
    let srv = Server::start().await;
    let (_, did, secret) = srv.device().await;
    let dev = fake_device(&srv, &did, &secret, |cmd| {
        Some(json!({"id": cmd["id"], "status": "error", "message": "jammed"}))
    })
    .await;
    let (s, ack) = srv
        .admin(
            "POST",
            &format!("/v1/devices/{did}/commands"),
            Some(json!({"set": {"level": 40}, "desired": true})),
        )
        .await;
    assert_eq!((s, ack["status"].as_str()), (200, Some("error")), "{ack}");
    let id = ack["id"].as_str().unwrap().to_owned();
    dev.abort();
    let srv = srv.restart(&[]).await;

    let (s, v) = status(&srv, &did, &id).await;
    assert_eq!(
        (s, v["status"].as_str(), v["detail"].as_str()),
        (200, Some("error"), Some("jammed")),
        "{v}"
    );
    let down = format!("dev/{did}/down");
    let (u, p) = creds(&did, &secret);
    let (c, mut el) = rumqttc::AsyncClient::new(v4_options(&srv, &did, &u, &p), 10);
    c.subscribe(&down, QoS::AtLeastOnce).await.unwrap();
    let msg = next_on(&mut el, &down).await;
    assert_eq!(msg, json!({"desired": {"level": 40}, "version": 1}));
}

/// The device SDK tells the desired state apart from commands (`Event::Desired`); a device that
/// applies and reports it clears the delta.
#[tokio::test]
async fn the_device_sdk_receives_the_desired_state_and_clears_the_delta() {
    use rampart_device::{ConnectOptions, DeviceClient, Event, Secret, TlsSettings, Transport};
    let srv = Server::start_with(&[QUICK_RECONNECTS]).await;
    let (_, did, secret) = srv.device().await;
    let (s, v) = srv
        .admin(
            "PUT",
            &format!("/v1/devices/{did}/desired"),
            Some(json!({"power": true})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let tls = TlsSettings::from_ca_pem(&std::fs::read(srv.ca_path()).unwrap()).unwrap();
    let opts = ConnectOptions::new(
        format!("localhost:{}", srv.mqtt_tls),
        did.clone(),
        Secret::new(secret),
        Transport::Tls(tls),
    );
    let (client, mut events) = DeviceClient::connect(opts).unwrap();
    let desired = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            match events.next().await {
                Some(Event::Desired(d)) => return d,
                Some(Event::BadCommand(b)) => {
                    panic!("the desired state read as a bad command: {b:?}")
                }
                Some(_) => {}
                None => panic!("the client ended"),
            }
        }
    })
    .await
    .expect("the desired state at connect");
    assert_eq!(desired.values, *json!({"power": true}).as_object().unwrap());
    // The event stream drives the connection: keep reading it.
    let driver = tokio::spawn(async move { while events.next().await.is_some() {} });
    client.report(&desired.values).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !shadow(&srv, &did).await["delta"]
        .as_object()
        .is_some_and(|d| d.is_empty())
    {
        assert!(std::time::Instant::now() < deadline, "the delta stayed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    client.close();
    driver.abort();
}
