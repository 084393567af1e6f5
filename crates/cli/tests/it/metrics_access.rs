//! Who may read `/metrics`: on the API listener the admin token or a key with the `metrics`
//! scope; on the optional metrics listener anyone who reaches it (a private address).

use crate::enterprise_api::{canonical, enterprise, local_key, product_with_device, Key};
use crate::support::*;
use serde_json::Value;

async fn metrics_signed(srv: &Server, key: &Key) -> (u16, String) {
    let ts = now_ms().to_string();
    let n = nonce();
    let sig = hmac_hex(&key.secret, &canonical("GET", "/metrics", "", b"", &ts, &n));
    let auth = format!(
        "RAMPART-HMAC-SHA256 key_id={}, ts={ts}, nonce={n}, signature={sig}",
        key.id
    );
    let r = srv
        .http_client
        .get(srv.url("/metrics"))
        .header("authorization", auth)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn metrics_with(srv: &Server, bearer: Option<&str>) -> (u16, String) {
    let mut rb = srv.http_client.get(srv.url("/metrics"));
    if let Some(t) = bearer {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn metrics_need_the_admin_token_or_a_metrics_key_except_on_the_metrics_listener() {
    let srv = Server::start_with(&[("RAMPART_HTTP__METRICS_LISTEN", "127.0.0.1:0")]).await;
    let (s, body) = metrics_with(&srv, None).await;
    assert_eq!(s, 401, "{body}");
    assert!(!body.contains("rampart_"), "{body}");
    let (s, _) = metrics_with(&srv, Some("not-the-admin-token-0123")).await;
    assert_eq!(s, 401);
    let (s, body) = metrics_with(&srv, Some(ADMIN)).await;
    assert_eq!(s, 200);
    assert!(body.contains("rampart_"), "{body}");

    let ent = enterprise(&srv, "Metrics Inc").await;
    let (pk, _, _) = product_with_device(&srv, &ent).await;
    let reader = local_key(&srv, &ent, &pk, &["read"]).await;
    let (s, body) = metrics_signed(&srv, &reader).await;
    assert_eq!(s, 403, "a key without the scope: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "FORBIDDEN");
    let scraper = local_key(&srv, &ent, &pk, &["metrics"]).await;
    let (s, body) = metrics_signed(&srv, &scraper).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("rampart_"), "{body}");

    // the private listener: plain HTTP, no authentication, nothing but /metrics and /healthz
    let listeners: Value =
        serde_json::from_str(&std::fs::read_to_string(srv.data().join("listeners.json")).unwrap())
            .unwrap();
    let addr = listeners["metrics"].as_str().unwrap();
    let plain = reqwest::Client::new();
    let r = plain
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("rampart_"));
    let r = plain
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = plain
        .get(format!("http://{addr}/v1/products"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
