//! Account settings of the configuration against the real binary: token and code lifetimes
//! (`[accounts]`, `[developers]`, `[oauth]`), the sign-up limits (`limits.signups_*`), and
//! activation codes sent by e-mail through SMTP to a mail server the test runs on loopback.

use crate::support::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

const PW: &str = "velvet tundra oxide lantern";

/// A JSON call from the source address `from` (any 127.0.0.0/8 address reaches the server).
async fn call_from(
    srv: &Server,
    from: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let pem = std::fs::read(srv.ca_path()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .local_address(from.parse::<IpAddr>().unwrap())
        .build()
        .unwrap();
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut rb = client.request(m, format!("https://127.0.0.1:{}{path}", srv.http));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    let v = serde_json::from_str(&resp.text().await.unwrap()).unwrap_or(Value::Null);
    (status, h, v)
}

/// `POST /v1/users` through `app` from the source address `from`.
async fn sign_up(
    srv: &Server,
    app: &str,
    from: &str,
    email: &str,
    pw: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    call_from(
        srv,
        from,
        "POST",
        "/v1/users",
        &[("x-rampart-app-id", app)],
        Some(json!({"email": email, "password": pw})),
    )
    .await
}

#[tokio::test]
async fn configured_lifetimes_expire_tokens() {
    let env = crate::accounts::Env::start_with(&[
        ("RAMPART_DEVELOPERS__ACCESS_TTL_SECS", "2"),
        ("RAMPART_OAUTH__ACCESS_TTL_SECS", "2"),
    ])
    .await;
    let srv = &env.srv;
    // a developer's access token lives two seconds; an end user's keeps its own default
    let (s, v) = srv
        .admin(
            "POST",
            "/v1/admin/developers",
            Some(json!({"email": "short@example.com", "password": PW})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = srv
        .call(
            "POST",
            "/v1/developers/login",
            None,
            Some(json!({"email": "short@example.com", "password": PW})),
        )
        .await;
    assert_eq!((s, v["expires_in"].as_i64()), (200, Some(2)), "{v}");
    let dev = v["access_token"].as_str().unwrap().to_owned();
    let dev_refresh = v["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        srv.call("GET", "/v1/developers/me", Some(&dev), None)
            .await
            .0,
        200
    );

    let (user, _) = env.user("life@example.com").await;
    assert_eq!(
        srv.call("GET", "/v1/users/me", Some(&user), None).await.0,
        200
    );

    // a third party's access token lives two seconds too
    let (s, c) = srv
        .admin(
            "POST",
            "/v1/oauth/clients",
            Some(
                json!({"name": "Short", "redirect_uris": ["http://127.0.0.1:9/cb"],
                        "scopes": ["devices:read"], "public": true}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    let client_id = c["client_id"].as_str().unwrap().to_owned();
    let verifier = format!("{}-{}", nonce(), "v".repeat(43));
    let challenge = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        Sha256::digest(verifier.as_bytes()),
    );
    let (s, v) = srv
        .call(
            "POST",
            "/oauth/authorize",
            Some(&user),
            Some(json!({"response_type": "code", "client_id": client_id,
                        "redirect_uri": "http://127.0.0.1:9/cb", "scope": "devices:read",
                        "code_challenge": challenge, "code_challenge_method": "S256"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let resp = srv
        .http_client
        .post(srv.url("/oauth/token"))
        .form(&[
            ("client_id", client_id.as_str()),
            ("grant_type", "authorization_code"),
            ("code", v["code"].as_str().unwrap()),
            ("redirect_uri", "http://127.0.0.1:9/cb"),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let t: Value = resp.json().await.unwrap();
    assert_eq!(t["expires_in"], 2, "{t}");
    let third = t["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        srv.call("GET", "/v1/bindings", Some(&third), None).await.0,
        200
    );

    // two seconds later both have expired
    srv.advance(Duration::from_millis(2_100));
    for (path, token) in [("/v1/developers/me", &dev), ("/v1/bindings", &third)] {
        let (s, v) = srv.call("GET", path, Some(token), None).await;
        assert_eq!(s, 401, "{path}: {v}");
    }
    assert_eq!(
        srv.call("GET", "/v1/users/me", Some(&user), None).await.0,
        200,
        "the end user's token has its own lifetime"
    );
    // the developer's refresh token outlives the access token and issues another short one
    let (s, v) = srv
        .call(
            "POST",
            "/v1/developers/token/refresh",
            None,
            Some(json!({"refresh_token": dev_refresh})),
        )
        .await;
    assert_eq!((s, v["expires_in"].as_i64()), (200, Some(2)), "{v}");
}

#[tokio::test]
async fn out_of_range_lifetimes_stop_the_server_at_start() {
    for (var, value, message) in [
        (
            "RAMPART_ACCOUNTS__ACCESS_TTL_SECS",
            "0",
            "accounts.access_ttl_secs = 0: must be 1 to 86400 seconds",
        ),
        (
            "RAMPART_OAUTH__CODE_TTL_SECS",
            "3600",
            "oauth.code_ttl_secs = 3600: must be 10 to 600 seconds",
        ),
        (
            "RAMPART_OAUTH__GRANT_TTL_DAYS",
            "100000",
            "oauth.grant_ttl_days = 100000: must be 1 to 3650 days",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(bin())
            .args([
                "serve",
                "--mqtt-tls-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
                "--events-listen",
                "127.0.0.1:0",
            ])
            .arg("--data")
            .arg(dir.path())
            .env(var, value)
            .env("RAMPART_ADMIN_TOKEN", ADMIN)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{var}={value} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{var}={value}: {err}");
    }
}

#[tokio::test]
async fn sign_ups_are_limited_per_address_and_overall() {
    let env = crate::accounts::Env::start_with(&[
        ("RAMPART_LIMITS__SIGNUPS_PER_IP__PER_MINUTE", "2"),
        ("RAMPART_LIMITS__SIGNUPS_GLOBAL__PER_MINUTE", "3"),
    ])
    .await;
    let (srv, app) = (&env.srv, env.app.clone());
    // Sign-up windows are clock minutes: every sign-up below falls into the same one.
    let skip = srv.start_a_minute();
    let h = [("x-rampart-app-id", app.as_str())];
    let sign_up = |from: &'static str, email: &'static str, pw: &'static str| {
        sign_up(srv, &app, from, email, pw)
    };
    let (s, _, v) = sign_up("127.0.0.1", "a@example.com", PW).await;
    assert_eq!(s, 201, "{v}");
    // a refused password counts too (the hashing is the expensive part)
    let (s, _, v) = sign_up("127.0.0.1", "b@example.com", "short").await;
    assert_error(s, &v, 400, "WEAK_PASSWORD");
    let (s, headers, v) = sign_up("127.0.0.1", "c@example.com", PW).await;
    assert_eq!(
        (s, v["error"]["code"].as_str(), v["error"]["limit"].as_str()),
        (429, Some("RATE_LIMITED"), Some("signup.ip")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2 calls per minute"),
        "{v}"
    );
    assert_eq!(headers["x-ratelimit-limit"], "2");
    assert_eq!(headers["x-ratelimit-remaining"], "0");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let reset: i64 = headers["x-ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let server_now = now_ms() + skip;
    assert!(
        reset * 1000 > server_now - 1000 && reset * 1000 <= server_now + 61_000,
        "{reset}"
    );
    // nobody signed up: the refused address has no account
    let (s, _, _) = call_from(
        srv,
        "127.0.0.1",
        "POST",
        "/v1/login",
        &h,
        Some(json!({"username": "c@example.com", "password": PW})),
    )
    .await;
    assert_eq!(s, 401);
    // another address has its own window, until the overall one is full
    let (s, _, v) = sign_up("127.0.0.2", "d@example.com", PW).await;
    assert_eq!(s, 201, "{v}");
    let (s, _, v) = sign_up("127.0.0.3", "e@example.com", PW).await;
    assert_eq!(
        (s, v["error"]["limit"].as_str()),
        (429, Some("signup.global")),
        "{v}"
    );
    // developers sign up under limits of their own
    let mut statuses = Vec::new();
    for email in ["dev1@example.com", "dev2@example.com", "dev3@example.com"] {
        let (s, _, v) = call_from(
            srv,
            "127.0.0.1",
            "POST",
            "/v1/developers",
            &[],
            Some(json!({"email": email, "password": PW})),
        )
        .await;
        statuses.push((s, v["error"]["limit"].as_str().map(str::to_owned)));
    }
    assert_eq!(
        statuses,
        [
            (201, None),
            (201, None),
            (429, Some("signup.ip".to_owned()))
        ]
    );
    let text = srv.metrics_text().await;
    assert!(
        text.contains("rampart_limit_refusals_total{limit=\"signup.ip\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("rampart_limit_refusals_total{limit=\"signup.global\"} 1"),
        "{text}"
    );
}

/// What a client said to the mail server: the envelope and the message.
#[derive(Debug)]
struct Mail {
    ehlo: String,
    from: String,
    rcpt: Vec<String>,
    data: String,
}

/// A tiny SMTP server on loopback: plain SMTP (greeting, EHLO, MAIL, RCPT, DATA, QUIT), each
/// message sent down the channel.
async fn smtp_server() -> (u16, mpsc::UnboundedReceiver<Mail>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut lines = BufReader::new(r).lines();
                w.write_all(b"220 mail.test ESMTP ready\r\n").await.unwrap();
                let mut mail = Mail {
                    ehlo: String::new(),
                    from: String::new(),
                    rcpt: Vec::new(),
                    data: String::new(),
                };
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        mail.ehlo = line[4..].trim().to_owned();
                        b"250-mail.test\r\n250 8BITMIME\r\n"
                    } else if upper.starts_with("MAIL FROM:") {
                        mail.from = line[10..].trim().to_owned();
                        b"250 2.1.0 ok\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        mail.rcpt.push(line[8..].trim().to_owned());
                        b"250 2.1.5 ok\r\n"
                    } else if upper == "DATA" {
                        w.write_all(b"354 end with .\r\n").await.unwrap();
                        while let Ok(Some(l)) = lines.next_line().await {
                            if l == "." {
                                break;
                            }
                            mail.data.push_str(l.strip_prefix('.').unwrap_or(&l));
                            mail.data.push('\n');
                        }
                        let _ = tx.send(std::mem::replace(
                            &mut mail,
                            Mail {
                                ehlo: String::new(),
                                from: String::new(),
                                rcpt: Vec::new(),
                                data: String::new(),
                            },
                        ));
                        b"250 2.0.0 queued\r\n"
                    } else if upper == "QUIT" {
                        let _ = w.write_all(b"221 2.0.0 bye\r\n").await;
                        return;
                    } else if upper == "RSET" || upper == "NOOP" {
                        b"250 ok\r\n"
                    } else {
                        b"502 5.5.2 not implemented\r\n"
                    };
                    if w.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, rx)
}

#[tokio::test]
async fn activation_codes_are_sent_by_smtp() {
    let (port, mut mails) = smtp_server().await;
    let port = port.to_string();
    let env = crate::accounts::Env::start_with(&[
        ("RAMPART_NOTIFY__EMAIL", "smtp"),
        ("RAMPART_NOTIFY__SMTP__HOST", "127.0.0.1"),
        ("RAMPART_NOTIFY__SMTP__PORT", &port),
        (
            "RAMPART_NOTIFY__SMTP__FROM",
            "Rampart <noreply@rampart.test>",
        ),
        ("RAMPART_NOTIFY__SMTP__PLAINTEXT", "true"),
        ("RAMPART_ACCOUNTS__CODE_TTL_SECS", "900"),
    ])
    .await;
    let (srv, app) = (&env.srv, env.app.clone());
    let email = "mailbox@example.com";
    let (s, _, v) = sign_up(srv, &app, "127.0.0.1", email, PW).await;
    assert_eq!(s, 201, "{v}");
    let mail = tokio::time::timeout(Duration::from_secs(20), mails.recv())
        .await
        .expect("no message reached the SMTP server")
        .unwrap();
    assert!(!mail.ehlo.is_empty(), "{mail:?}");
    assert_eq!(mail.from, "<noreply@rampart.test>", "{mail:?}");
    assert_eq!(mail.rcpt, vec![format!("<{email}>")], "{mail:?}");
    let headers = mail.data.split("\n\n").next().unwrap();
    assert!(headers.contains(&format!("To: {email}")), "{}", mail.data);
    assert!(
        headers.contains("From: Rampart <noreply@rampart.test>"),
        "{}",
        mail.data
    );
    assert!(
        headers.contains("Subject: Your Rampart activation code"),
        "{}",
        mail.data
    );
    assert!(headers.contains("Date: "), "{}", mail.data);
    let id = headers
        .lines()
        .find_map(|l| l.strip_prefix("Message-ID: "))
        .unwrap_or_else(|| panic!("no Message-ID in {}", mail.data));
    assert!(
        id.starts_with('<') && id.ends_with("@rampart.test>"),
        "{id}"
    );
    let body = mail.data.split_once("\n\n").unwrap().1.replace("=\n", "");
    assert!(body.contains("It expires in 15 minutes."), "{body}");
    let code: String = body
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap_or_else(|| panic!("no 6-digit code in {body}"))
        .to_owned();
    // nothing went to the outbox, and the mailed code activates the account
    assert!(!srv.data().join("outbox").exists());
    let (s, v) = srv
        .call(
            "POST",
            "/v1/users/activate",
            None,
            Some(json!({"email": email, "code": code})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
}
