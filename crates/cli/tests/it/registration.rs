//! Products and device registration over HTTPS.

use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn api_errors_are_json_and_admin_only() {
    let srv = Server::start().await;
    let (s, v) = srv.call("GET", "/v1/products", None, None).await;
    assert_error(s, &v, 401, "UNAUTHORIZED");
    let (s, _) = srv
        .call("GET", "/v1/products", Some("wrong-token-wrong-token"), None)
        .await;
    assert_eq!(s, 401);
    let (s, v) = srv.admin("GET", "/v1/nope", None).await;
    assert_error(s, &v, 404, "NOT_FOUND");
    // unknown fields, bad models, bad JSON: 400 with a code
    let (s, v) = srv
        .admin(
            "POST",
            "/v1/products",
            Some(json!({"name": "x", "bogus": 1})),
        )
        .await;
    assert_error(s, &v, 400, "INVALID_JSON");
    let (s, v) = srv
        .admin(
            "POST",
            "/v1/products",
            Some(json!({"name": "x", "datapoints": [{"name": "a", "type": "int"}]})),
        )
        .await;
    assert_error(s, &v, 400, "INVALID_DATAPOINT");
    let (s, v) = srv.admin("GET", "/v1/products?limit=1000", None).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = srv.admin("GET", "/v1/devices/not-a-did!", None).await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = srv.call("GET", "/healthz", None, None).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")));
}

#[tokio::test]
async fn products_list_and_show_without_secret() {
    let srv = Server::start().await;
    let (pk, ps) = srv.product(true, false).await;
    srv.product(false, true).await;
    let (s, v) = srv.admin("GET", "/v1/products?page=1&limit=1", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["meta"]["total"], 2);
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    let (s, v) = srv.admin("GET", &format!("/v1/products/{pk}"), None).await;
    assert_eq!(s, 200);
    assert_eq!(v["datapoints"].as_array().unwrap().len(), 4);
    assert!(
        !v.to_string().contains(&ps),
        "a read endpoint returned the product secret"
    );
}

#[tokio::test]
async fn register_with_product_secret() {
    let srv = Server::start().await;
    let (pk, ps) = srv.product(true, false).await;
    let ts = now_ms();
    let n = nonce();
    let body = Server::register_body(&pk, "AA:BB:CC:DD:EE:01", "product", &ps, ts, &n);
    let (s, v) = srv
        .call("POST", "/v1/device/register", None, Some(body.clone()))
        .await;
    assert_eq!(s, 200, "{v}");
    let did = v["did"].as_str().unwrap().to_owned();
    let secret1 = v["device_secret"].as_str().unwrap().to_owned();
    let passcode = v["passcode"].as_str().unwrap().to_owned();

    // the same nonce again: refused
    let (s, replay) = srv
        .call("POST", "/v1/device/register", None, Some(body))
        .await;
    assert_eq!(s, 401, "{replay}");

    // a bad signature and an unknown product answer alike
    let bad = Server::register_body(
        &pk,
        "AA:BB:CC:DD:EE:01",
        "product",
        "not-the-secret",
        now_ms(),
        &nonce(),
    );
    let (s1, v1) = srv
        .call("POST", "/v1/device/register", None, Some(bad))
        .await;
    let unknown = Server::register_body(
        "nosuchproduct",
        "AA:BB:CC:DD:EE:01",
        "product",
        &ps,
        now_ms(),
        &nonce(),
    );
    let (s2, v2) = srv
        .call("POST", "/v1/device/register", None, Some(unknown))
        .await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(v1, v2, "answers must not tell whether the product exists");

    // a stale timestamp
    let stale = Server::register_body(
        &pk,
        "AA:BB:CC:DD:EE:01",
        "product",
        &ps,
        now_ms() - 301_000,
        &nonce(),
    );
    let (s, _) = srv
        .call("POST", "/v1/device/register", None, Some(stale))
        .await;
    assert_eq!(s, 401);

    // re-registering the same hardware with proof of its secret keeps the did and rotates the
    // secret (no passcode)
    let (did2, secret2) = srv
        .register_again(&pk, &ps, "AA:BB:CC:DD:EE:01", &secret1)
        .await;
    assert_eq!(did2, did);
    assert_ne!(secret2, secret1);

    // the old secret no longer connects; the new one does
    let (u, p) = creds(&did, &secret1);
    let (_c, mut el) = rumqttc::AsyncClient::new(v4_options(&srv, &did, &u, &p), 10);
    let refused = v4_until(&mut el, |e| match e {
        Err(rumqttc::ConnectionError::ConnectionRefused(code)) => Some(code),
        _ => None,
    })
    .await;
    assert_eq!(refused, rumqttc::ConnectReturnCode::BadUserNamePassword);
    let (u, p) = creds(&did, &secret2);
    let (_c, mut el) = rumqttc::AsyncClient::new(v4_options(&srv, &did, &u, &p), 10);
    v4_until(&mut el, |e| match e {
        Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a))) => Some(a.code),
        _ => None,
    })
    .await;

    // no read endpoint returns the passcode or the secret
    let view = srv.state(&did).await.to_string();
    assert!(!view.contains(&passcode) && !view.contains(&secret2));
}

#[tokio::test]
async fn product_without_dynamic_registration_refuses_product_mode() {
    let srv = Server::start().await;
    let (pk, ps) = srv.product(false, false).await;
    let body = Server::register_body(&pk, "hw1", "product", &ps, now_ms(), &nonce());
    let (s, v) = srv
        .call("POST", "/v1/device/register", None, Some(body))
        .await;
    assert_error(s, &v, 403, "FORBIDDEN");
}

#[tokio::test]
async fn allowlist_refuses_unknown_hardware() {
    let srv = Server::start().await;
    let (pk, ps) = srv.product(true, true).await;
    let body = Server::register_body(
        &pk,
        "IMEI-490154203237518",
        "product",
        &ps,
        now_ms(),
        &nonce(),
    );
    let (s, v) = srv
        .call("POST", "/v1/device/register", None, Some(body))
        .await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = srv
        .admin(
            "POST",
            &format!("/v1/products/{pk}/allowlist"),
            Some(json!({"hardware_ids": ["IMEI-490154203237518"]})),
        )
        .await;
    assert_eq!((s, v["added"].as_u64()), (200, Some(1)), "{v}");
    let (s, v) = srv
        .admin(
            "POST",
            &format!("/v1/products/{pk}/allowlist"),
            Some(json!({"hardware_ids": ["bad id"]})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    srv.register(&pk, &ps, "IMEI-490154203237518").await;
}

#[tokio::test]
async fn metrics_are_exported() {
    let srv = Server::start().await;
    let (_, did, secret) = srv.device().await;
    let (u, p) = creds(&did, "bad");
    let (_c, mut el) = rumqttc::AsyncClient::new(v4_options(&srv, &did, &u, &p), 10);
    v4_until(&mut el, |e| e.is_err().then_some(())).await;
    let _ = secret;
    let text = srv.metrics_text().await;
    assert!(text.contains(&format!("{WRONG_SIGNATURE} 1")), "{text}");
}

#[tokio::test]
async fn server_on_postgresql() {
    let Some(pg) = PgSchema::create("server_on_postgresql") else {
        return;
    };
    let store_url = pg.store_url();
    let srv = Server::start_with(&[("RAMPART_STORE__URL", store_url.as_str())]).await;
    let (s, v) = srv.call("GET", "/healthz", None, None).await;
    assert_eq!((s, v["store"].as_str()), (200, Some("postgres")), "{v}");
    let (_, did, secret) = srv.device().await;
    let (u, p) = creds(&did, &secret);
    let (c, mut el) = rumqttc::AsyncClient::new(v4_options(&srv, &did, &u, &p), 10);
    c.publish(
        format!("dev/{did}/up"),
        rumqttc::QoS::AtLeastOnce,
        false,
        r#"{"level":45}"#,
    )
    .await
    .unwrap();
    v4_until(&mut el, |e| {
        matches!(e, Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)))).then_some(())
    })
    .await;
    srv.wait_state(&did, |v| v["state"]["level"] == 45).await;
    drop(srv);
    drop(pg);
}

#[tokio::test]
async fn oversized_and_non_json_bodies_get_json_errors() {
    let srv = Server::start().await;
    // reqwest may report the early close of an upload as an error, so curl sends the big body.
    let big = srv.data().join("big.json");
    std::fs::write(
        &big,
        format!("{{\"name\":\"{}\"}}", "x".repeat(5 * 1024 * 1024)),
    )
    .unwrap();
    match std::process::Command::new("curl")
        // HTTP/1.1: curl 7.88 drops an HTTP/2 answer that a RST_STREAM(NO_ERROR) follows (the
        // server's way to stop an upload it answered early; uploads.rs checks it over HTTP/2).
        // curl asks `Expect: 100-continue` for a body this large: the 413 must come before
        // any of it is read (a body sent into a connection the server then closes is reset,
        // answer and all).
        .args(["-s", "--http1.1", "--cacert"])
        .arg(srv.ca_path())
        .args([
            "-H",
            &format!("Authorization: Bearer {ADMIN}"),
            "-H",
            "content-type: application/json",
        ])
        .arg("--data-binary")
        .arg(format!("@{}", big.display()))
        .args(["-w", "\n%{http_code}", &srv.url("/v1/products")])
        .output()
    {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let (body, code) = text.rsplit_once('\n').unwrap();
            assert_eq!(code, "413", "{text}");
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(v["error"]["code"], "PAYLOAD_TOO_LARGE");
        }
        Err(_) => eprintln!("skipping the 413 check: curl is not installed"),
    }
    let resp = srv
        .http_client
        .post(srv.url("/v1/products"))
        .bearer_auth(ADMIN)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "UNSUPPORTED_MEDIA_TYPE");
    let (s, v) = srv.admin("DELETE", "/v1/products", None).await;
    assert_error(s, &v, 405, "METHOD_NOT_ALLOWED");
}
