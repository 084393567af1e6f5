//! Passthrough from the cloud to a device: `POST /v1/devices/{did}/raw` delivers the body's
//! bytes unchanged on `dev/{did}/raw/down` to a stock MQTT client (rumqttc), with the same
//! access rules as commands and an audit entry that holds the size and hash, never the bytes.

use crate::accounts::Env;
use crate::support::*;
use rumqttc::{Event, Packet, QoS};
use serde_json::Value;
use sha2::Digest;

/// `POST /v1/devices/{did}/raw` with `body`; status and JSON answer.
async fn post_raw(
    srv: &Server,
    did: &str,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut rb = srv
        .http_client
        .post(srv.url(&format!("/v1/devices/{did}/raw")))
        .header("content-type", content_type)
        .body(body);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A connected rumqttc device subscribed to its passthrough topic.
async fn subscribed(
    srv: &Server,
    did: &str,
    secret: &str,
) -> (rumqttc::AsyncClient, rumqttc::EventLoop) {
    let (u, p) = creds(did, secret);
    let mut o = v4_options(srv, did, &u, &p);
    // Room for the largest passthrough message (rumqttc's default is 10 KiB).
    o.set_max_packet_size(64 * 1024, 64 * 1024);
    let (c, mut el) = rumqttc::AsyncClient::new(o, 10);
    c.subscribe(format!("dev/{did}/raw/down"), QoS::AtLeastOnce)
        .await
        .unwrap();
    v4_until(&mut el, |e| {
        matches!(e, Ok(Event::Incoming(Packet::SubAck(_)))).then_some(())
    })
    .await;
    (c, el)
}

#[tokio::test]
async fn posted_bytes_reach_the_device_unchanged() {
    let env = Env::start_with(&[]).await;
    let srv = &env.srv;
    let (did, secret, _) = env.device().await;
    let (_c, mut el) = subscribed(srv, &did, &secret).await;
    // Not UTF-8, with every byte value, and a marker to look for in the audit log.
    let mut bytes: Vec<u8> = b"MARKER-7f3a".to_vec();
    bytes.extend((0..=255u8).rev());
    bytes.extend([0xC3, 0x28, 0xFF, 0xFE, 0x00]);
    assert!(std::str::from_utf8(&bytes).is_err());
    let (s, v) = post_raw(
        srv,
        &did,
        Some(ADMIN),
        "application/octet-stream",
        bytes.clone(),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    assert_eq!(v["bytes"], bytes.len());
    assert_eq!(v["sha256"], sha.as_str());
    let got = v4_until(&mut el, |e| match e {
        Ok(Event::Incoming(Packet::Publish(p))) => Some(p),
        _ => None,
    })
    .await;
    assert_eq!(got.topic, format!("dev/{did}/raw/down"));
    assert_eq!(got.qos, QoS::AtLeastOnce);
    assert_eq!(got.payload.to_vec(), bytes);

    // The largest message passes too.
    let (s, v) = post_raw(
        srv,
        &did,
        Some(ADMIN),
        "application/octet-stream",
        vec![0xAB; 32 * 1024],
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let got = v4_until(&mut el, |e| match e {
        Ok(Event::Incoming(Packet::Publish(p))) => Some(p),
        _ => None,
    })
    .await;
    assert_eq!(got.payload.len(), 32 * 1024);

    // Audited with the size and the hash, not the bytes.
    let rows = env.audit("device.raw").await;
    let row = rows
        .iter()
        .find(|r| r.detail.as_deref().is_some_and(|d| d.contains(&sha)))
        .expect("an audit entry with the hash");
    assert_eq!(row.outcome, "sent");
    assert_eq!(
        row.target.as_deref(),
        Some(format!("device:{did}").as_str())
    );
    assert_eq!(
        row.detail.as_deref(),
        Some(format!("bytes={} sha256={sha}", bytes.len()).as_str())
    );
    let text = format!("{rows:?}");
    assert!(!text.contains("MARKER-7f3a"), "{text}");
}

#[tokio::test]
async fn offline_too_large_and_wrong_type_are_refused() {
    let srv = Server::start().await;
    let (_, did, _) = srv.device().await;
    let (s, v) = post_raw(&srv, &did, Some(ADMIN), "application/octet-stream", vec![1]).await;
    assert_error(s, &v, 409, "DEVICE_OFFLINE");
    let (s, v) = post_raw(
        &srv,
        &did,
        Some(ADMIN),
        "application/octet-stream",
        vec![0; 32 * 1024 + 1],
    )
    .await;
    assert_error(s, &v, 413, "PAYLOAD_TOO_LARGE");
    let (s, v) = post_raw(&srv, &did, Some(ADMIN), "application/json", b"{}".to_vec()).await;
    assert_error(s, &v, 415, "UNSUPPORTED_MEDIA_TYPE");
    let (s, v) = post_raw(
        &srv,
        "nobody0000",
        Some(ADMIN),
        "application/octet-stream",
        vec![1],
    )
    .await;
    assert_error(s, &v, 404, "NOT_FOUND");
    let (s, v) = post_raw(&srv, &did, None, "application/octet-stream", vec![1]).await;
    assert_error(s, &v, 401, "UNAUTHORIZED");
}

/// Users need the control role, as for commands: a guest gets 403, a stranger the 404 of an
/// unknown device; a member may send.
#[tokio::test]
async fn users_need_the_control_role() {
    let env = Env::start_with(&[]).await;
    let srv = &env.srv;
    let (did, secret, passcode) = env.device().await;
    let (owner, _) = env.user("owner@example.com").await;
    let (guest, _) = env.user("guest@example.com").await;
    let (member, _) = env.user("member@example.com").await;
    let (stranger, _) = env.user("stranger@example.com").await;
    let (s, v) = env.bind(&owner, &did, &passcode).await;
    assert_eq!(s, 201, "{v}");
    env.share(&owner, &did, "guest@example.com", &guest, "guest")
        .await;
    env.share(&owner, &did, "member@example.com", &member, "member")
        .await;
    let (_c, mut el) = subscribed(srv, &did, &secret).await;
    let octets = "application/octet-stream";
    let (s, v) = post_raw(srv, &did, Some(&guest), octets, vec![1]).await;
    assert_error(s, &v, 403, "FORBIDDEN");
    let (s, v) = post_raw(srv, &did, Some(&stranger), octets, vec![1]).await;
    assert_error(s, &v, 404, "NOT_FOUND");
    let (s, v) = post_raw(srv, &did, Some(&member), octets, vec![9, 8, 7]).await;
    assert_eq!(s, 202, "{v}");
    let got = v4_until(&mut el, |e| match e {
        Ok(Event::Incoming(Packet::Publish(p))) => Some(p),
        _ => None,
    })
    .await;
    assert_eq!(got.payload.to_vec(), vec![9, 8, 7]);
}

/// The passthrough topic is the cloud's: a device publishing on it is refused like one
/// publishing outside its namespace.
#[tokio::test]
async fn a_device_may_not_publish_on_its_passthrough_down_topic() {
    let srv = Server::start().await;
    let (_, did, secret) = srv.device().await;
    let (u, p) = creds(&did, &secret);
    let (c, mut el) = rumqttc::v5::AsyncClient::new(v5_options(&srv, &did, &u, &p), 10);
    c.publish(
        format!("dev/{did}/raw/down"),
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        false,
        vec![1u8],
    )
    .await
    .unwrap();
    let code = v5_until(&mut el, |e| match e {
        Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::PubAck(a))) => {
            Some(format!("{:?}", a.reason))
        }
        Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::Disconnect(d))) => {
            Some(format!("{:?}", d.reason_code))
        }
        Err(_) => Some("closed".into()),
        _ => None,
    })
    .await;
    assert!(
        code.contains("NotAuthorized") || code == "closed",
        "refused as not authorised: {code}"
    );
}

/// The enterprise API's passthrough: a key with `control` sends (the signed body is the
/// message), a key with `read` only is 403.
#[tokio::test]
async fn an_access_key_with_control_sends_passthrough() {
    use crate::enterprise_api::{canonical, enterprise, local_key, product_with_device, Key};
    async fn send(srv: &Server, key: &Key, did: &str, body: Vec<u8>) -> (u16, Value) {
        let path = format!("/v1/enterprise/devices/{did}/raw");
        let (ts, n) = (now_ms().to_string(), nonce());
        let sig = hmac_hex(&key.secret, &canonical("POST", &path, "", &body, &ts, &n));
        let auth = format!(
            "RAMPART-HMAC-SHA256 key_id={}, ts={ts}, nonce={n}, signature={sig}",
            key.id
        );
        let resp = srv
            .http_client
            .post(srv.url(&path))
            .header("authorization", auth)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }
    let srv = Server::start().await;
    let ent = enterprise(&srv, "Acme").await;
    let (pk, did, secret) = product_with_device(&srv, &ent).await;
    let control = local_key(&srv, &ent, &pk, &["read", "control"]).await;
    let read = local_key(&srv, &ent, &pk, &["read"]).await;
    let (s, v) = send(&srv, &control, &did, vec![1, 2]).await;
    assert_error(s, &v, 409, "DEVICE_OFFLINE");
    let (_c, mut el) = subscribed(&srv, &did, &secret).await;
    let (s, v) = send(&srv, &read, &did, vec![1, 2]).await;
    assert_error(s, &v, 403, "FORBIDDEN");
    let (s, v) = send(&srv, &control, &did, vec![0xFF, 0x00, 0x80]).await;
    assert_eq!((s, v["bytes"].as_u64()), (202, Some(3)), "{v}");
    let got = v4_until(&mut el, |e| match e {
        Ok(Event::Incoming(Packet::Publish(p))) => Some(p),
        _ => None,
    })
    .await;
    assert_eq!(got.payload.to_vec(), vec![0xFF, 0x00, 0x80]);
    let (s, v) = send(&srv, &control, &did, vec![0; 32 * 1024 + 1]).await;
    assert_error(s, &v, 413, "PAYLOAD_TOO_LARGE");
}
