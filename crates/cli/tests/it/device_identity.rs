//! A device's identity as an attacker meets it: registration that neither reveals the passcode
//! nor rotates the secret without proof, its limits, the owner's destructive commands, and the
//! CONNECT replay rule across restarts.

use crate::support::*;
use rumqttc::{ConnectReturnCode, ConnectionError, Event, Packet};
use serde_json::{json, Value};

/// CONNECT over MQTT 3.1.1 with `(user, pass)`: the CONNACK code, or the refusal's.
async fn connack(srv: &Server, did: &str, user: &str, pass: &str) -> ConnectReturnCode {
    let (_c, mut el) = rumqttc::AsyncClient::new(v4_options(srv, did, user, pass), 10);
    v4_until(&mut el, |e| match e {
        Ok(Event::Incoming(Packet::ConnAck(a))) => Some(a.code),
        Err(ConnectionError::ConnectionRefused(code)) => Some(code),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn a_signed_connect_is_refused_again_after_a_restart() {
    let srv = Server::start_with(&[QUICK_RECONNECTS]).await;
    let (_, did, secret) = srv.device().await;
    let ts = now_ms();
    let (u, p) = creds_at(&did, &secret, ts);
    assert_eq!(
        connack(&srv, &did, &u, &p).await,
        ConnectReturnCode::Success
    );
    // `last_seen` is set once the connect's presence committed; the CONNECT's timestamp was
    // queued to the same writer before it, so it is stored too.
    srv.wait_state(&did, |v| v["last_seen"].is_i64()).await;

    let srv = srv.restart(&[QUICK_RECONNECTS]).await;
    assert_eq!(
        connack(&srv, &did, &u, &p).await,
        ConnectReturnCode::BadUserNamePassword,
        "the same signed CONNECT after a restart"
    );
    let (u_old, p_old) = creds_at(&did, &secret, ts - 1);
    assert_eq!(
        connack(&srv, &did, &u_old, &p_old).await,
        ConnectReturnCode::BadUserNamePassword,
        "an older timestamp after a restart"
    );
    let (u, p) = creds(&did, &secret);
    assert_eq!(
        connack(&srv, &did, &u, &p).await,
        ConnectReturnCode::Success
    );
}

/// A registration body for `hw` signed with the product secret, with `device_sign` made with
/// `current` when given.
fn register_body(pk: &str, ps: &str, hw: &str, current: Option<&str>) -> Value {
    let (ts, n) = (now_ms(), nonce());
    let mut body = Server::register_body(pk, hw, "product", ps, ts, &n);
    if let Some(secret) = current {
        let msg = format!("product_key={pk}&hardware_id={hw}&ts={ts}&nonce={n}");
        body["device_sign"] = hmac_hex(secret, &msg).into();
    }
    body
}

async fn register(srv: &Server, body: Value) -> (u16, Value) {
    srv.call("POST", "/v1/device/register", None, Some(body))
        .await
}

#[tokio::test]
async fn registering_again_neither_reveals_nor_rotates() {
    let env = crate::accounts::Env::start_with(&[QUICK_RECONNECTS]).await;
    let srv = &env.srv;
    let hw = "AA:BB:CC:DD:EE:42";
    let (s, first) = register(srv, register_body(&env.pk, &env.ps, hw, None)).await;
    assert_eq!(s, 200, "{first}");
    let did = first["did"].as_str().unwrap();
    let secret = first["device_secret"].as_str().unwrap();
    let passcode = first["passcode"].as_str().unwrap();

    // Anyone with the product secret (it ships in every unit) and the unit's MAC tries again.
    let (s, again) = register(srv, register_body(&env.pk, &env.ps, hw, None)).await;
    assert_error(s, &again, 409, "ALREADY_REGISTERED");
    let text = again.to_string();
    assert!(
        !text.contains(passcode) && !text.contains(secret) && again.get("did").is_none(),
        "{again}"
    );
    // A wrong proof of the device secret changes nothing either.
    let (s, v) = register(
        srv,
        register_body(&env.pk, &env.ps, hw, Some("not-the-device-secret")),
    )
    .await;
    assert_error(s, &v, 409, "ALREADY_REGISTERED");
    // Nothing changed: the secret still connects, the passcode still binds, as owner.
    let (u, p) = creds(did, secret);
    assert_eq!(connack(srv, did, &u, &p).await, ConnectReturnCode::Success);
    let (owner, _) = env.user("owner@example.com").await;
    assert_eq!(env.bind(&owner, did, passcode).await.0, 201);
    // Both refusals are audited, naming the device.
    let refused: Vec<_> = env
        .audit("device.register")
        .await
        .into_iter()
        .filter(|r| r.outcome.starts_with("refused: already registered"))
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused
        .iter()
        .all(|r| r.target.as_deref() == Some(format!("device:{did}").as_str())));
}

#[tokio::test]
async fn a_device_proving_its_secret_gets_a_new_one_and_no_passcode() {
    let srv = Server::start_with(&[QUICK_RECONNECTS]).await;
    let (pk, ps) = srv.product(true, false).await;
    let hw = "AA:BB:CC:DD:EE:43";
    let (did, old, passcode) = srv.register(&pk, &ps, hw).await;
    // a live session on the old secret
    let (u, p) = creds(&did, &old);
    let (_c, mut el) = rumqttc::AsyncClient::new(v4_options(&srv, &did, &u, &p), 10);
    v4_until(&mut el, |e| match e {
        Ok(Event::Incoming(Packet::ConnAck(_))) => Some(()),
        _ => None,
    })
    .await;

    let (s, v) = register(&srv, register_body(&pk, &ps, hw, Some(&old))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["did"], did.as_str());
    assert!(v.get("passcode").is_none(), "{v}");
    assert!(!v.to_string().contains(&passcode));
    let new = v["device_secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);

    // the session on the old secret is closed, the old secret refused, the new one accepted
    v4_until(&mut el, |e| e.is_err().then_some(())).await;
    let (u, p) = creds(&did, &old);
    assert_eq!(
        connack(&srv, &did, &u, &p).await,
        ConnectReturnCode::BadUserNamePassword
    );
    let (u, p) = creds(&did, &new);
    assert_eq!(
        connack(&srv, &did, &u, &p).await,
        ConnectReturnCode::Success
    );
    // the old secret no longer proves anything at registration either
    let (s, v) = register(&srv, register_body(&pk, &ps, hw, Some(&old))).await;
    assert_error(s, &v, 409, "ALREADY_REGISTERED");
}

#[tokio::test]
async fn an_owner_opened_window_reprovisions_once_and_ends_every_binding() {
    let env = crate::accounts::Env::start_with(&[QUICK_RECONNECTS]).await;
    let srv = &env.srv;
    let hw = "AA:BB:CC:DD:EE:44";
    let (s, first) = register(srv, register_body(&env.pk, &env.ps, hw, None)).await;
    assert_eq!(s, 200, "{first}");
    let did = first["did"].as_str().unwrap().to_owned();
    let (old_secret, old_passcode) = (
        first["device_secret"].as_str().unwrap().to_owned(),
        first["passcode"].as_str().unwrap().to_owned(),
    );
    let (owner, _) = env.user("owner@example.com").await;
    let (member, _) = env.user("member@example.com").await;
    assert_eq!(env.bind(&owner, &did, &old_passcode).await.0, 201);
    env.share(&owner, &did, "member@example.com", &member, "member")
        .await;
    let (s, v) = env
        .call(
            "POST",
            &format!("/v1/devices/{did}/bind-tokens"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let bind_token = v["token"].as_str().unwrap().to_owned();

    // only a manager of the product opens the window; a user, even the owner, is not one
    let path = format!("/v1/devices/{did}/reprovision");
    let (s, _) = env.call("POST", &path, Some(&owner), None).await;
    assert_eq!(s, 401);
    let (s, v) = srv
        .admin("POST", &path, Some(json!({"expires_in_s": 0})))
        .await;
    assert_error(s, &v, 400, "INVALID_REQUEST");
    let (s, v) = srv
        .admin("POST", "/v1/devices/nosuchdevice00000000/reprovision", None)
        .await;
    assert_error(s, &v, 404, "NOT_FOUND");
    let (s, v) = srv
        .admin("POST", &path, Some(json!({"expires_in_s": 600})))
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["expires_at"].as_i64().unwrap() > now_ms());

    let (s, v) = register(srv, register_body(&env.pk, &env.ps, hw, None)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["did"], did.as_str());
    let new_secret = v["device_secret"].as_str().unwrap();
    let new_passcode = v["passcode"].as_str().unwrap();
    assert_ne!(new_secret, old_secret);
    assert_ne!(new_passcode, old_passcode);

    // every binding, share and bind token ended
    for token in [&owner, &member] {
        let (s, v) = env
            .call("GET", &format!("/v1/devices/{did}"), Some(token), None)
            .await;
        assert_eq!(s, 404, "{v}");
    }
    let (s, v) = env
        .call(
            "POST",
            "/v1/bindings",
            Some(&member),
            Some(json!({"did": did, "token": bind_token})),
        )
        .await;
    assert_eq!(s, 404, "{v}");
    assert_eq!(env.bind(&member, &did, &old_passcode).await.0, 404);
    // the old secret is refused, the new one and the new passcode work
    let (u, p) = creds(&did, &old_secret);
    assert_eq!(
        connack(srv, &did, &u, &p).await,
        ConnectReturnCode::BadUserNamePassword
    );
    let (u, p) = creds(&did, new_secret);
    assert_eq!(connack(srv, &did, &u, &p).await, ConnectReturnCode::Success);
    assert_eq!(env.bind(&member, &did, new_passcode).await.0, 201);

    // single use
    let (s, v) = register(srv, register_body(&env.pk, &env.ps, hw, None)).await;
    assert_error(s, &v, 409, "ALREADY_REGISTERED");
    let opened = env.audit("device.reprovision_open").await;
    assert_eq!(opened.len(), 1, "{opened:?}");
}

/// POST a registration and keep the answer's headers.
async fn register_raw(srv: &Server, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = srv
        .http_client
        .post(srv.url("/v1/device/register"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap())
}

#[tokio::test]
async fn refused_registration_signatures_are_limited_and_audited_per_minute() {
    let srv = Server::start().await;
    let (pk, ps) = srv.product(true, false).await;
    // Refusals are counted in clock minutes: the loop below runs inside one.
    srv.start_a_minute();
    let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
    let mut limited = None;
    for i in 0..200 {
        let body = Server::register_body(
            &pk,
            &format!("hw-{i}"),
            "product",
            "not-the-product-secret",
            now_ms(),
            &nonce(),
        );
        let (s, h, v) = register_raw(&srv, &body).await;
        *statuses.entry(s).or_default() += 1;
        if s == 429 && limited.is_none() {
            limited = Some((h, v));
        }
    }
    // 30 refused signatures a minute per address, then every registration from it is refused
    // until the minute ends.
    let refused = statuses.get(&401).copied().unwrap_or(0);
    assert_eq!(refused, 30, "{statuses:?}");
    assert_eq!(
        refused + statuses.get(&429).copied().unwrap_or(0),
        200,
        "{statuses:?}"
    );
    let (h, v) = limited.expect("no registration was refused by a limit");
    assert_error(429, &v, 429, "RATE_LIMITED");
    assert_eq!(v["error"]["limit"], "register.failures.ip");
    for name in [
        "retry-after",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ] {
        assert!(h.contains_key(name), "{name} missing: {h:?}");
    }
    assert_eq!(h["x-ratelimit-limit"], "30");
    // a good signature from the same address is refused too while the limit holds
    let body = Server::register_body(&pk, "hw-good", "product", &ps, now_ms(), &nonce());
    let (s, _, v) = register_raw(&srv, &body).await;
    if s != 200 {
        assert_error(s, &v, 429, "RATE_LIMITED");
    }
    let limited_metric = srv
        .metric(r#"rampart_limit_refusals_total{limit="register.failures.ip"}"#)
        .await;
    assert!(limited_metric >= 1.0, "{limited_metric}");

    // Not one audit write per refusal: an entry per address and minute once the minute is
    // over, or at shutdown.
    let during = audit_rows(&srv, "device.register").await;
    assert!(
        during
            .iter()
            .filter(|r| r.outcome.starts_with("refused"))
            .count()
            <= 2,
        "{during:?}"
    );
    let srv = srv.restart(&[]).await;
    let rows: Vec<_> = audit_rows(&srv, "device.register")
        .await
        .into_iter()
        .filter(|r| r.outcome.starts_with("refused"))
        .collect();
    assert!((1..=2).contains(&rows.len()), "{rows:?}");
    let counted: u64 = rows
        .iter()
        .map(|r| {
            r.detail
                .as_deref()
                .unwrap_or_default()
                .split(' ')
                .find_map(|kv| kv.strip_prefix("refused="))
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(counted, 200 + u64::from(s != 200), "{rows:?}");
    assert!(
        rows.iter()
            .all(|r| r.source_ip.as_deref() == Some("127.0.0.1")),
        "{rows:?}"
    );
}

#[tokio::test]
async fn registrations_per_address_are_rate_limited() {
    let srv = Server::start_with(&[
        ("RAMPART_LIMITS__REGISTER_IP__PER_MINUTE", "60"),
        ("RAMPART_LIMITS__REGISTER_IP__BURST", "5"),
    ])
    .await;
    let (pk, ps) = srv.product(true, false).await;
    let mut answers = Vec::new();
    for i in 0..7 {
        let body =
            Server::register_body(&pk, &format!("hw-{i}"), "product", &ps, now_ms(), &nonce());
        answers.push(register_raw(&srv, &body).await);
    }
    let ok = answers.iter().filter(|a| a.0 == 200).count();
    assert!(
        (5..=6).contains(&ok),
        "{:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    let (s, h, v) = answers.iter().find(|a| a.0 != 200).unwrap();
    assert_error(*s, v, 429, "RATE_LIMITED");
    assert_eq!(v["error"]["limit"], "register.ip");
    assert!(
        h.contains_key("retry-after") && h.contains_key("x-ratelimit-reset"),
        "{h:?}"
    );
}

const CB: &str = "https://client.example/cb";

/// A third-party access token for the user holding `user`, with `scopes` approved through the
/// JSON approval (PKCE S256).
async fn third_party_token(env: &crate::accounts::Env, user: &str, scopes: &[&str]) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let (s, v) = env
        .srv
        .admin(
            "POST",
            "/v1/oauth/clients",
            Some(json!({"name": "Automations", "redirect_uris": [CB], "scopes": scopes})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (id, secret) = (
        v["client_id"].as_str().unwrap().to_owned(),
        v["client_secret"].as_str().unwrap().to_owned(),
    );
    let verifier = format!("v-{}-{}", nonce(), "x".repeat(40));
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    let (s, v) = env
        .call(
            "POST",
            "/oauth/authorize",
            Some(user),
            Some(
                json!({"response_type": "code", "client_id": id, "redirect_uri": CB,
                "scope": scopes.join(" "), "state": "s", "code_challenge": challenge,
                "code_challenge_method": "S256"}),
            ),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let code = v["code"].as_str().unwrap().to_owned();
    let resp = env
        .srv
        .http_client
        .post(env.srv.url("/oauth/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", CB),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = resp.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn factory_reset_and_wipe_are_the_owners_alone() {
    let env = crate::accounts::Env::start_with(&[]).await;
    let (owner, _) = env.user("owner@example.com").await;
    let (member, _) = env.user("member@example.com").await;
    let (did, _secret, passcode) = env.device().await;
    assert_eq!(env.bind(&owner, &did, &passcode).await.0, 201);
    env.share(&owner, &did, "member@example.com", &member, "member")
        .await;
    let path = format!("/v1/devices/{did}/commands");
    let send = |token: String, body: Value| {
        let env = &env;
        let path = path.clone();
        async move { env.call("POST", &path, Some(&token), Some(body)).await }
    };
    // The device is offline: a command that passes the access check answers 409 DEVICE_OFFLINE.
    for action in ["factory_reset", "wipe"] {
        let (s, v) = send(member.clone(), json!({"action": action})).await;
        assert_error(s, &v, 403, "FORBIDDEN");
        let (s, v) = send(owner.clone(), json!({"action": action})).await;
        assert_error(s, &v, 409, "DEVICE_OFFLINE");
    }
    // a member still reboots and sets
    let (s, v) = send(member.clone(), json!({"action": "reboot"})).await;
    assert_error(s, &v, 409, "DEVICE_OFFLINE");
    let (s, v) = send(member.clone(), json!({"set": {"power": true}})).await;
    assert_error(s, &v, 409, "DEVICE_OFFLINE");

    // A third party needs `devices:admin`, and acts with its user's role.
    let control = third_party_token(&env, &owner, &["devices:control"]).await;
    let (s, v) = send(control.clone(), json!({"action": "wipe"})).await;
    assert_error(s, &v, 403, "INSUFFICIENT_SCOPE");
    let (s, v) = send(control, json!({"action": "reboot"})).await;
    assert_error(s, &v, 409, "DEVICE_OFFLINE");
    let admin = third_party_token(&env, &owner, &["devices:control", "devices:admin"]).await;
    let (s, v) = send(admin, json!({"action": "factory_reset"})).await;
    assert_error(s, &v, 409, "DEVICE_OFFLINE");
    let members = third_party_token(&env, &member, &["devices:admin"]).await;
    let (s, v) = send(members, json!({"action": "wipe"})).await;
    assert_error(s, &v, 403, "FORBIDDEN");
}

#[tokio::test]
async fn the_consent_page_shows_the_destructive_scope_apart_and_unticked() {
    let env = crate::accounts::Env::start_with(&[]).await;
    let (s, v) = env
        .srv
        .admin(
            "POST",
            "/v1/oauth/clients",
            Some(json!({"name": "Automations", "redirect_uris": [CB],
                "scopes": ["devices:read", "devices:admin"]})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let resp = env
        .srv
        .http_client
        .get(env.srv.url("/oauth/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", v["client_id"].as_str().unwrap()),
            ("redirect_uri", CB),
            ("scope", "devices:read devices:admin"),
            ("state", "s"),
            (
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            ),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let html = resp.text().await.unwrap();
    let (before, destructive) = html.split_once("<fieldset id=\"destructive\">").unwrap();
    let everyday = before.split_once("<legend>It asks to</legend>").unwrap().1;
    assert!(
        everyday.contains("value=\"devices:read\" checked"),
        "{html}"
    );
    assert!(!everyday.contains("devices:admin"), "{html}");
    assert!(destructive.contains("value=\"devices:admin\">"), "{html}");
}

/// A disabled device loses its live session at once (DISCONNECT 0x98) and is refused at CONNECT
/// (0x87) until it is enabled again; then it connects as before.
#[tokio::test]
async fn a_disabled_device_loses_its_session_and_cannot_connect() {
    use crate::mqtt::raw;
    let srv = Server::start_with(&[QUICK_RECONNECTS]).await;
    let (_, did, secret) = srv.device().await;
    let mut s = raw::session(&srv, &did, &secret, 30).await;
    let (st, v) = srv
        .admin("POST", &format!("/v1/devices/{did}/disable"), None)
        .await;
    assert_eq!((st, &v["disabled"]), (200, &serde_json::json!(true)), "{v}");
    raw::expect_disconnect(&mut s, 0x98).await;
    srv.wait_state(&did, |v| v["online"] == false).await;
    let (u, p) = creds(&did, &secret);
    let (_, connack) = raw::connect_with(&srv, &raw::connect_v5_keepalive(&did, &u, &p, 30)).await;
    assert_eq!(raw::body(&connack)[..2], [0x00, 0x87], "{connack:02x?}");
    let (st, v) = srv
        .admin("POST", &format!("/v1/devices/{did}/enable"), None)
        .await;
    assert_eq!(
        (st, &v["disabled"]),
        (200, &serde_json::json!(false)),
        "{v}"
    );
    raw::session(&srv, &did, &secret, 30).await;
    // An unknown device is a 404, as everywhere.
    let (st, v) = srv
        .admin("POST", "/v1/devices/nosuchdevice000000000/disable", None)
        .await;
    assert_error(st, &v, 404, "NOT_FOUND");
}
