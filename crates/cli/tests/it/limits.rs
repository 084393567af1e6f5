//! Limits and hardening against the real binary: the access-key quota across a restart,
//! the per-IP and per-app rates, the code windows per address and per IP, the headers every answer
//! carries, body size limits and strict JSON. No assert depends on timing: rates replenish once a
//! minute and windows are an hour or longer (a test that straddles a window boundary says so and
//! stops instead of asserting).

use crate::enterprise_api::{canonical, enterprise, new_key, product_with_device, Key};
use crate::support::*;
use serde_json::{json, Value};

/// The four headers of a refusal, and the body's code and limit.
fn assert_refused(h: &reqwest::header::HeaderMap, v: &Value, limit: &str) {
    assert_eq!(v["error"]["code"], "RATE_LIMITED", "{v}");
    assert_eq!(v["error"]["limit"], limit, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains(limit) && msg.contains("resets at"), "{msg}");
    for name in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "retry-after",
    ] {
        assert!(h.contains_key(name), "{name} missing: {h:?}");
    }
    assert_eq!(h["x-ratelimit-remaining"], "0");
    let retry: i64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "{retry}");
    let reset: i64 = h["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
    assert!(
        reset * 1000 > now_ms() - 1000,
        "reset {reset} is in the past"
    );
}

fn num(h: &reqwest::header::HeaderMap, name: &str) -> i64 {
    h[name].to_str().unwrap().parse().unwrap()
}

async fn send(
    srv: &Server,
    rb: reqwest::RequestBuilder,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let _ = srv;
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    let text = resp.text().await.unwrap();
    assert_eq!(
        h.get("content-type").map(|v| v.to_str().unwrap()),
        Some("application/json"),
        "{status} {text}"
    );
    (status, h, serde_json::from_str(&text).unwrap())
}

async fn signed_get(
    srv: &Server,
    key: (&str, &str),
    path: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let (ts, n) = (now_ms().to_string(), nonce());
    let sig = hmac_hex(key.1, &canonical("GET", path, "", b"", &ts, &n));
    let auth = format!(
        "RAMPART-HMAC-SHA256 key_id={}, ts={ts}, nonce={n}, signature={sig}",
        key.0
    );
    let rb = srv
        .http_client
        .get(srv.url(path))
        .header("authorization", auth);
    send(srv, rb).await
}

#[tokio::test]
async fn access_key_quota_answers_429_with_headers_and_survives_a_restart() {
    let env = [("RAMPART_LIMITS__ACCESS_KEY_PER_HOUR", "3")];
    let srv = Server::start_with(&env).await;
    let hour = now_ms() / 3_600_000;
    let ent = enterprise(&srv, "Acme").await;
    let (pk, _, _) = product_with_device(&srv, &ent).await;
    let Key { id, secret } = new_key(
        &srv,
        ADMIN,
        &ent,
        json!({"products": [pk], "scopes": ["read"], "allow_ips": ["127.0.0.1/32", "::1/128"]}),
    )
    .await;
    let key = (id.as_str(), secret.as_str());
    let next_hour_secs = (hour + 1) * 3600;

    // Successful answers under the quota carry the headers.
    for remaining in [2, 1] {
        let (s, h, v) = signed_get(&srv, key, "/v1/enterprise/devices").await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(num(&h, "x-ratelimit-limit"), 3);
        assert_eq!(num(&h, "x-ratelimit-remaining"), remaining);
        assert_eq!(num(&h, "x-ratelimit-reset"), next_hour_secs);
    }

    // A graceful restart on the same data directory keeps the count.
    let srv = srv.restart(&env).await;
    let (s, h, v) = signed_get(&srv, key, "/v1/enterprise/devices").await;
    assert_eq!(s, 200, "{v}");
    let (s2, h2, v2) = signed_get(&srv, key, "/v1/enterprise/devices").await;
    if now_ms() / 3_600_000 != hour {
        eprintln!(
            "the test straddled an hour boundary; the quota window changed, nothing to assert"
        );
        return;
    }
    assert_eq!(
        num(&h, "x-ratelimit-remaining"),
        0,
        "the restart reset the window"
    );
    assert_eq!(s2, 429, "{v2}");
    assert_refused(&h2, &v2, "access_key.hourly");
    assert_eq!(num(&h2, "x-ratelimit-limit"), 3);
    assert_eq!(num(&h2, "x-ratelimit-reset"), next_hour_secs);
    assert!(num(&h2, "retry-after") <= 3600);
    assert!(
        v2["error"]["message"]
            .as_str()
            .unwrap()
            .contains("per hour"),
        "{v2}"
    );
    // Counted as a metric.
    let text = srv.metrics_text().await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("rampart_limit_refusals_total{limit=\"access_key.hourly\"}")),
        "{text}"
    );
}

#[tokio::test]
async fn per_ip_and_per_app_rates() {
    let srv = Server::start_with(&[
        ("RAMPART_LIMITS__IP__PER_MINUTE", "1"),
        ("RAMPART_LIMITS__IP__BURST", "3"),
    ])
    .await;
    let get = |path: &str| srv.http_client.get(srv.url(path));
    for _ in 0..3 {
        let (s, _, v) = send(&srv, get("/v1/products").bearer_auth(ADMIN)).await;
        assert_eq!(s, 200, "{v}");
    }
    let (s, h, v) = send(&srv, get("/v1/products").bearer_auth(ADMIN)).await;
    assert_eq!(s, 429, "{v}");
    assert_refused(&h, &v, "ip.rate");
    assert_eq!(num(&h, "x-ratelimit-limit"), 3);
    // Unauthenticated and unknown paths count too; probes do not.
    let (s, h, v) = send(&srv, get("/nowhere")).await;
    assert_eq!(s, 429, "{v}");
    assert_refused(&h, &v, "ip.rate");
    assert_eq!(get("/healthz").send().await.unwrap().status().as_u16(), 200);
    drop(srv);

    let srv = Server::start_with(&[
        ("RAMPART_LIMITS__APP__PER_MINUTE", "1"),
        ("RAMPART_LIMITS__APP__BURST", "2"),
    ])
    .await;
    let login = |app: &str| {
        srv.http_client
            .post(srv.url("/v1/login"))
            .header("x-rampart-app-id", app)
            .json(&json!({"username": "nobody@example.com", "password": "not the password"}))
    };
    for _ in 0..2 {
        let (s, _, v) = send(&srv, login("app_one")).await;
        assert_ne!(s, 429, "{v}");
    }
    let (s, h, v) = send(&srv, login("app_one")).await;
    assert_eq!(s, 429, "{v}");
    assert_refused(&h, &v, "app.rate");
    let (s, _, v) = send(&srv, login("app_two")).await;
    assert_ne!(s, 429, "another app id has its own rate: {v}");
}

#[tokio::test]
async fn codes_are_limited_per_address_and_per_ip() {
    let srv = Server::start().await;
    // Code windows are clock minutes: everything below falls into the same one.
    srv.start_a_minute();
    let reset = |email: &str| {
        srv.http_client
            .post(srv.url("/v1/users/password/reset"))
            .json(&json!({"email": email}))
    };
    let (s, _, v) = send(&srv, reset("a@example.com")).await;
    assert_eq!(s, 202, "{v}");
    let (s, h, v) = send(&srv, reset("a@example.com")).await;
    assert_eq!(s, 429, "{v}");
    assert_refused(&h, &v, "codes.recipient");
    assert_eq!(num(&h, "x-ratelimit-limit"), 1);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("per minute"));
    // Four more addresses from this IP: five a minute per IP, then refused.
    for i in 0..4 {
        let (s, _, v) = send(&srv, reset(&format!("b{i}@example.com"))).await;
        assert_eq!(s, 202, "{v}");
    }
    let (s, h, v) = send(&srv, reset("c@example.com")).await;
    assert_eq!(s, 429, "{v}");
    assert_refused(&h, &v, "codes.ip");
}

#[tokio::test]
async fn security_headers_on_success_errors_404_and_405() {
    let srv = Server::start().await;
    let cases = [
        ("GET", "/healthz", None, 200),
        ("GET", "/v1/products", None, 401),
        ("GET", "/v1/products", Some(ADMIN), 200),
        ("GET", "/no/such/path", None, 404),
        ("DELETE", "/healthz", None, 405),
    ];
    for (method, path, token, want) in cases {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut rb = srv.http_client.request(m, srv.url(path));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        let resp = rb.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), want, "{method} {path}");
        let h = resp.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{method} {path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
        assert!(
            h["strict-transport-security"]
                .to_str()
                .unwrap()
                .starts_with("max-age="),
            "{method} {path}"
        );
        assert_eq!(h["content-type"], "application/json", "{method} {path}");
        let v: Value = resp.json().await.unwrap();
        if want >= 400 {
            assert!(v["error"]["code"].is_string(), "{method} {path}: {v}");
        }
    }
}

#[tokio::test]
async fn oversized_bodies_and_unknown_fields_are_refused_as_json() {
    let srv = Server::start_with(&[("RAMPART_HTTP__MAX_BODY_BYTES", "2048")]).await;
    let big = json!({"email": format!("{}@example.com", "a".repeat(4096))});
    let oversized = [
        srv.http_client
            .post(srv.url("/v1/users/password/reset"))
            .json(&big),
        srv.http_client
            .post(srv.url("/v1/products"))
            .bearer_auth(ADMIN)
            .json(&json!({"name": "x".repeat(3000)})),
    ];
    for rb in oversized {
        let (s, _, v) = send(&srv, rb).await;
        assert_error(s, &v, 413, "PAYLOAD_TOO_LARGE");
    }
    // Unknown fields: 400 INVALID_JSON naming the field.
    let (s, _, v) = send(
        &srv,
        srv.http_client
            .post(srv.url("/v1/users/password/reset"))
            .json(&json!({"email": "z@example.com", "emial": "typo@example.com"})),
    )
    .await;
    assert_error(s, &v, 400, "INVALID_JSON");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("emial"),
        "{v}"
    );
    let (s, _, v) = send(
        &srv,
        srv.http_client
            .get(srv.url("/v1/products?page=1&bogus=2"))
            .bearer_auth(ADMIN),
    )
    .await;
    assert_error(s, &v, 400, "INVALID_REQUEST");
}

/// Password checks past `limits.password_hash_concurrency` and its queue are refused at once
/// with 503 `BUSY` and `Retry-After` (counted), the others are answered as usual, and `/healthz`
/// keeps answering while the hashing slots are full. One slot and one queue place make the
/// refusal certain with 60 logins in flight; nothing here depends on how long a hash takes.
#[tokio::test]
async fn password_hashing_past_its_queue_answers_busy() {
    let srv = Server::start_with(&[
        ("RAMPART_LIMITS__PASSWORD_HASH_CONCURRENCY", "1"),
        ("RAMPART_LIMITS__PASSWORD_HASH_QUEUE", "1"),
    ])
    .await;
    let login = || async {
        let resp = srv
            .http_client
            .post(srv.url("/v1/login"))
            .json(&json!({"username": "nobody@example.com", "password": "velvet tundra oxide lantexn"}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, retry, resp.json::<Value>().await.unwrap())
    };
    let health = || async {
        let (s, v) = srv.call("GET", "/healthz", None, None).await;
        assert_eq!(s, 200, "{v}");
    };
    let (answers, _) = tokio::join!(
        futures_util::future::join_all((0..60).map(|_| login())),
        async {
            for _ in 0..5 {
                health().await;
            }
        }
    );
    let busy: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 503).collect();
    assert!(!busy.is_empty(), "no login was refused");
    for (s, retry, v) in &answers {
        if *s == 503 {
            assert_error(*s, v, 503, "BUSY");
            assert_eq!(retry.as_deref(), Some("1"), "{v}");
        } else {
            assert_error(*s, v, 401, "UNAUTHORIZED");
        }
    }
    assert!(
        answers.iter().any(|(s, _, _)| *s == 401),
        "every login refused"
    );
    health().await;
    let text = srv.metrics_text().await;
    let refused: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("rampart_limit_refusals_total{limit=\"password_hash\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert_eq!(refused, busy.len() as f64, "{text}");
}

/// Plain HTTP sent to the HTTPS port gets a readable 400 saying to use `https://` (not TLS alert
/// bytes), and the listener goes on serving HTTPS.
#[tokio::test]
async fn plain_http_on_the_https_port_is_told_to_use_https() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = Server::start().await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", srv.http))
        .await
        .unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        s.read_to_string(&mut answer),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");
    assert!(
        answer.ends_with("send the request again with https://\n"),
        "{answer:?}"
    );
    // what a person would type
    if let Ok(out) = std::process::Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .arg(format!("http://127.0.0.1:{}/healthz", srv.http))
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            text.ends_with("\n400") && text.contains("https://"),
            "{text}"
        );
    }
    let (status, _) = srv.call("GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
    assert!(
        srv.metric(r#"rampart_wrong_protocol_total{listener="http"}"#)
            .await
            >= 1.0
    );
}
