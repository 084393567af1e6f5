//! Developer accounts and enterprises against the real binary: sign-up, activation,
//! login, enterprises with invitations and roles, the role matrix on product and device
//! endpoints, product secrets, TOTP, and the operator's suspension.

use crate::support::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const PW: &str = "velvet tundra oxide lantern";

/// A developer's tokens and id.
struct Dev {
    id: String,
    access: String,
    refresh: String,
}

/// The newest activation code sent to `to`.
async fn activation_code(srv: &Server, to: &str) -> String {
    outbox(srv, to, "activate").await["code"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The newest message to `to` for `purpose` (the outbox is written by a background task).
async fn outbox(srv: &Server, to: &str, purpose: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let dir = srv.data().join("outbox");
        let mut msgs: Vec<Value> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
                    .filter(|v: &Value| v["to"] == to && v["purpose"] == purpose)
                    .collect()
            })
            .unwrap_or_default();
        msgs.sort_by_key(|v| v["created_at"].as_i64());
        if let Some(m) = msgs.last() {
            return m.clone();
        }
        assert!(Instant::now() < deadline, "no {purpose} message for {to}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn login(srv: &Server, email: &str, extra: Value) -> (u16, Value) {
    let mut body = json!({"email": email, "password": PW});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            body[k] = v;
        }
    }
    srv.call("POST", "/v1/developers/login", None, Some(body))
        .await
}

async fn logged_in(srv: &Server, email: &str) -> Dev {
    let (s, v) = login(srv, email, json!({})).await;
    assert_eq!(s, 200, "{v}");
    let access = v["access_token"].as_str().unwrap().to_owned();
    assert!(access.starts_with("rdt_"));
    let (s, me) = srv
        .call("GET", "/v1/developers/me", Some(&access), None)
        .await;
    assert_eq!(s, 200, "{me}");
    Dev {
        id: me["developer_id"].as_str().unwrap().into(),
        access,
        refresh: v["refresh_token"].as_str().unwrap().into(),
    }
}

/// A developer created (active) by the operator, logged in.
async fn operator_made(srv: &Server, email: &str) -> Dev {
    let (s, v) = srv
        .admin(
            "POST",
            "/v1/admin/developers",
            Some(json!({"email": email, "password": PW})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["active"], true);
    logged_in(srv, email).await
}

/// `owner` invites `who` (at `email`) into enterprise `ent` as `role`, and `who` accepts.
async fn join(srv: &Server, ent: &str, owner: &Dev, who: &Dev, email: &str, role: &str) {
    let (s, v) = srv
        .call(
            "POST",
            &format!("/v1/enterprises/{ent}/invites"),
            Some(&owner.access),
            Some(json!({"email": email, "role": role})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (_, inv) = srv
        .call("GET", "/v1/developers/me/invites", Some(&who.access), None)
        .await;
    let id = inv["data"][0]["invite_id"].as_str().unwrap().to_owned();
    let (s, v) = srv
        .call(
            "POST",
            &format!("/v1/developers/me/invites/{id}/accept"),
            Some(&who.access),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

fn product_body(owner: Option<Value>) -> Value {
    let mut b = json!({
        "name": "Enterprise lamp",
        "identity": {"dynamic_registration": true, "allowlist": false},
        "datapoints": [{"name": "power", "type": "bool", "writable": true}]
    });
    if let Some(o) = owner {
        b["owner"] = o;
    }
    b
}

#[tokio::test]
async fn sign_up_enterprise_roles_and_secrets() {
    let srv = Server::start().await;
    let call = |m: &'static str, p: String, t: &str, b: Option<Value>| {
        let t = t.to_owned();
        let srv = &srv;
        async move { srv.call(m, &p, Some(&t), b).await }
    };

    // ---- sign-up, activation, login ----
    let email = "owner@maker.example";
    let (s, v) = srv
        .call(
            "POST",
            "/v1/developers",
            None,
            Some(json!({"email": email, "password": "password123"})),
        )
        .await;
    assert_error(s, &v, 400, "WEAK_PASSWORD");
    let (s, v) = srv
        .call(
            "POST",
            "/v1/developers",
            None,
            Some(json!({"email": email, "password": PW})),
        )
        .await;
    assert_eq!((s, &v["status"]), (201, &json!("activation_pending")));
    // the right password before activation: told so; a wrong one: the generic answer
    let (s, v) = login(&srv, email, json!({})).await;
    assert_error(s, &v, 403, "ACCOUNT_NOT_ACTIVE");
    let (s, wrong) = login(
        &srv,
        email,
        json!({"password": "amber gravel quiet harbor"}),
    )
    .await;
    let (s2, unknown) = login(&srv, "ghost@maker.example", json!({})).await;
    assert_eq!((s, s2), (401, 401));
    assert_eq!(wrong, unknown);
    // a resend answers the same for an unknown address, and at most once a minute
    let resend = json!({"email": "nobody@maker.example"});
    let (s, _) = srv
        .call(
            "POST",
            "/v1/developers/activate/resend",
            None,
            Some(resend.clone()),
        )
        .await;
    assert_eq!(s, 202);
    let (s, v) = srv
        .call("POST", "/v1/developers/activate/resend", None, Some(resend))
        .await;
    assert_error(s, &v, 429, "RATE_LIMITED");
    let code = activation_code(&srv, email).await;
    let (s, v) = srv
        .call(
            "POST",
            "/v1/developers/activate",
            None,
            Some(json!({"email": email, "code": code})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let owner = logged_in(&srv, email).await;
    // refresh rotates; the spent refresh token presented again ends the session
    let (s, pair) = srv
        .call(
            "POST",
            "/v1/developers/token/refresh",
            None,
            Some(json!({"refresh_token": owner.refresh})),
        )
        .await;
    assert_eq!(s, 200, "{pair}");
    let owner = Dev {
        access: pair["access_token"].as_str().unwrap().into(),
        refresh: pair["refresh_token"].as_str().unwrap().into(),
        ..owner
    };
    assert!(owner.refresh.starts_with("rdr_"));
    // a developer token is not a consumer token, nor an operator token
    let (s, _) = call("GET", "/v1/users/me".into(), &owner.access, None).await;
    assert_eq!(s, 401);
    let (s, _) = call(
        "POST",
        "/v1/admin/developers".into(),
        &owner.access,
        Some(json!({"email": "x@y.example", "password": PW})),
    )
    .await;
    assert_eq!(s, 401);

    let admin = operator_made(&srv, "admin@maker.example").await;
    let observer = operator_made(&srv, "observer@maker.example").await;
    let outsider = operator_made(&srv, "rival@other.example").await;

    // ---- the enterprise, invitations ----
    let (s, ent) = call(
        "POST",
        "/v1/enterprises".into(),
        &owner.access,
        Some(json!({"name": "Maker Ltd"})),
    )
    .await;
    assert_eq!((s, ent["role"].as_str()), (201, Some("owner")), "{ent}");
    let ent = ent["enterprise_id"].as_str().unwrap().to_owned();
    for (who, role) in [(&admin, "admin"), (&observer, "observer")] {
        let email = if role == "admin" {
            "admin@maker.example"
        } else {
            "observer@maker.example"
        };
        let (s, v) = call(
            "POST",
            format!("/v1/enterprises/{ent}/invites"),
            &owner.access,
            Some(json!({"email": email, "role": role})),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        let (s, inv) = call("GET", "/v1/developers/me/invites".into(), &who.access, None).await;
        assert_eq!(s, 200);
        assert_eq!(inv["data"][0]["enterprise_name"], "Maker Ltd");
        let id = inv["data"][0]["invite_id"].as_str().unwrap().to_owned();
        // nobody else can accept it
        let (s, _) = call(
            "POST",
            format!("/v1/developers/me/invites/{id}/accept"),
            &outsider.access,
            None,
        )
        .await;
        assert_eq!(s, 404);
        let (s, v) = call(
            "POST",
            format!("/v1/developers/me/invites/{id}/accept"),
            &who.access,
            None,
        )
        .await;
        assert_eq!((s, v["role"].as_str()), (200, Some(role)), "{v}");
    }
    // the invitee was told by e-mail (no code in it)
    let note = outbox(&srv, "admin@maker.example", "enterprise_invite").await;
    assert!(note.get("code").is_none(), "{note}");
    let (s, m) = call(
        "GET",
        format!("/v1/enterprises/{ent}/members"),
        &observer.access,
        None,
    )
    .await;
    assert_eq!((s, m["meta"]["total"].as_u64()), (200, Some(3)));
    // only owners invite; strangers do not even see the enterprise
    let (s, _) = call(
        "POST",
        format!("/v1/enterprises/{ent}/invites"),
        &admin.access,
        Some(json!({"email": "z@z.example", "role": "observer"})),
    )
    .await;
    assert_eq!(s, 403);
    for (m, p) in [
        ("GET", format!("/v1/enterprises/{ent}")),
        ("GET", format!("/v1/enterprises/{ent}/members")),
    ] {
        let (s, _) = call(m, p, &outsider.access, None).await;
        assert_eq!(s, 404);
    }

    // ---- products in the enterprise ----
    let (s, v) = call(
        "POST",
        "/v1/products".into(),
        &observer.access,
        Some(product_body(Some(json!({"enterprise_id": ent})))),
    )
    .await;
    assert_error(s, &v, 403, "FORBIDDEN");
    let (s, v) = call(
        "POST",
        "/v1/products".into(),
        &outsider.access,
        Some(product_body(Some(json!({"enterprise_id": ent})))),
    )
    .await;
    assert_eq!(s, 404, "{v}");
    // an admin creates one but is not shown its secret; the owner is
    let (s, v) = call(
        "POST",
        "/v1/products".into(),
        &admin.access,
        Some(product_body(Some(json!({"enterprise_id": ent})))),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert!(v.get("product_secret").is_none(), "{v}");
    let (s, v) = call(
        "POST",
        "/v1/products".into(),
        &owner.access,
        Some(product_body(Some(json!({"enterprise_id": ent})))),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let pk = v["product_key"].as_str().unwrap().to_owned();
    let ps = v["product_secret"].as_str().unwrap().to_owned();
    let (did, _, _) = srv.register(&pk, &ps, "hw-ent-1").await;
    // the outsider owns another enterprise with a product of its own, and a personal one
    let (s, rival) = call(
        "POST",
        "/v1/enterprises".into(),
        &outsider.access,
        Some(json!({"name": "Rival Inc"})),
    )
    .await;
    assert_eq!(s, 201, "{rival}");
    let (s, v) = call(
        "POST",
        "/v1/products".into(),
        &outsider.access,
        Some(product_body(Some(
            json!({"enterprise_id": rival["enterprise_id"]}),
        ))),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let rival_pk = v["product_key"].as_str().unwrap().to_owned();
    let (s, v) = call(
        "POST",
        "/v1/products".into(),
        &outsider.access,
        Some(product_body(Some(json!("personal")))),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let personal_pk = v["product_key"].as_str().unwrap().to_owned();

    // observer: reads, nothing else
    for p in [
        format!("/v1/products/{pk}"),
        format!("/v1/devices/{did}"),
        format!("/v1/devices/{did}/history"),
        format!("/v1/devices?product_key={pk}"),
    ] {
        let (s, v) = call("GET", p.clone(), &observer.access, None).await;
        assert_eq!(s, 200, "{p}: {v}");
    }
    let (_, list) = call("GET", "/v1/products".into(), &observer.access, None).await;
    assert_eq!(list["meta"]["total"], 2, "{list}");
    let (_, devs) = call("GET", "/v1/devices".into(), &observer.access, None).await;
    assert_eq!(devs["data"][0]["did"], did.as_str());
    let refused = [
        (
            "POST",
            format!("/v1/products/{pk}/allowlist"),
            Some(json!({"hardware_ids": ["aa"]})),
        ),
        (
            "POST",
            format!("/v1/devices/{did}/commands"),
            Some(json!({"set": {"power": true}})),
        ),
        ("GET", format!("/v1/devices/{did}/passcode"), None),
        ("GET", format!("/v1/products/{pk}/secret"), None),
        ("POST", format!("/v1/products/{pk}/secret/rotate"), None),
        (
            "POST",
            format!("/v1/products/{pk}/factory-batches"),
            Some(json!({"count": 1})),
        ),
    ];
    for (m, p, b) in refused.clone() {
        let (s, v) = call(m, p.clone(), &observer.access, b).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (403, Some("FORBIDDEN")),
            "observer {m} {p}"
        );
    }
    // admin: manages, but no secrets
    let (s, v) = call(
        "POST",
        format!("/v1/products/{pk}/allowlist"),
        &admin.access,
        Some(json!({"hardware_ids": ["aa:bb"]})),
    )
    .await;
    assert_eq!((s, v["added"].as_u64()), (200, Some(1)), "{v}");
    let (s, v) = call(
        "GET",
        format!("/v1/devices/{did}/passcode"),
        &admin.access,
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    // allowed through to the device, which is offline
    let (s, v) = call(
        "POST",
        format!("/v1/devices/{did}/commands"),
        &admin.access,
        Some(json!({"set": {"power": true}})),
    )
    .await;
    assert_error(s, &v, 409, "DEVICE_OFFLINE");
    for (m, p, b) in refused[3..].iter().cloned() {
        let (s, _) = call(m, p.clone(), &admin.access, b).await;
        assert_eq!(s, 403, "admin {m} {p}");
    }
    // owner: the secret, its rotation, factory identities
    let (s, v) = call(
        "GET",
        format!("/v1/products/{pk}/secret"),
        &owner.access,
        None,
    )
    .await;
    assert_eq!((s, v["product_secret"].as_str()), (200, Some(ps.as_str())));
    let (s, v) = call(
        "POST",
        format!("/v1/products/{pk}/secret/rotate"),
        &owner.access,
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let ps2 = v["product_secret"].as_str().unwrap().to_owned();
    assert_ne!(ps2, ps);
    let old = Server::register_body(&pk, "hw-ent-2", "product", &ps, now_ms(), &nonce());
    let (s, _) = srv
        .call("POST", "/v1/device/register", None, Some(old))
        .await;
    assert_eq!(s, 401, "the old product secret no longer registers devices");
    srv.register(&pk, &ps2, "hw-ent-2").await;
    let (s, v) = call(
        "POST",
        format!("/v1/products/{pk}/factory-batches"),
        &owner.access,
        Some(json!({"count": 2})),
    )
    .await;
    assert_eq!(
        (s, v["identities"].as_array().map(Vec::len)),
        (201, Some(2)),
        "{v}"
    );
    // the operator keeps full access
    let (s, v) = srv
        .admin("GET", &format!("/v1/products/{pk}/secret"), None)
        .await;
    assert_eq!((s, v["product_secret"].as_str()), (200, Some(ps2.as_str())));

    // the outsider: 404 on every product and device endpoint of the enterprise
    let reads = [
        format!("/v1/products/{pk}"),
        format!("/v1/devices/{did}"),
        format!("/v1/devices/{did}/history"),
        format!("/v1/devices?product_key={pk}"),
    ];
    for p in reads.iter() {
        let (s, v) = call("GET", p.clone(), &outsider.access, None).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (404, Some("NOT_FOUND")),
            "outsider GET {p}"
        );
    }
    for (m, p, b) in refused.clone() {
        let (s, _) = call(m, p.clone(), &outsider.access, b).await;
        assert_eq!(s, 404, "outsider {m} {p}");
    }
    let (_, list) = call("GET", "/v1/products".into(), &outsider.access, None).await;
    assert_eq!(list["meta"]["total"], 2);
    let mut keys: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["product_key"].as_str().unwrap())
        .collect();
    keys.sort();
    let mut want = vec![rival_pk.as_str(), personal_pk.as_str()];
    want.sort();
    assert_eq!(keys, want);
    let (_, devs) = call("GET", "/v1/devices".into(), &outsider.access, None).await;
    assert_eq!(devs["meta"]["total"], 0);
    // ... and the enterprise's people cannot see the outsider's products either
    for p in [&rival_pk, &personal_pk] {
        let (s, _) = call("GET", format!("/v1/products/{p}"), &owner.access, None).await;
        assert_eq!(s, 404);
    }
    // consumers' tokens still do not reach product endpoints
    let (s, _) = srv
        .call("GET", "/v1/products", Some("rat_0000"), None)
        .await;
    assert_eq!(s, 401);

    // ---- roles change, the last owner stays ----
    let (s, v) = call(
        "PUT",
        format!("/v1/enterprises/{ent}/members/{}", observer.id),
        &owner.access,
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = call(
        "POST",
        format!("/v1/products/{pk}/allowlist"),
        &observer.access,
        Some(json!({"hardware_ids": ["cc"]})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = call(
        "PUT",
        format!("/v1/enterprises/{ent}/members/{}", owner.id),
        &owner.access,
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_error(s, &v, 409, "CONFLICT");
    let (s, _) = call(
        "DELETE",
        format!("/v1/enterprises/{ent}/members/{}", owner.id),
        &owner.access,
        None,
    )
    .await;
    assert_eq!(s, 409);
    let (s, _) = call(
        "DELETE",
        format!("/v1/enterprises/{ent}/members/{}", admin.id),
        &observer.access,
        None,
    )
    .await;
    assert_eq!(s, 403, "admins do not remove members");
    let (s, _) = call(
        "DELETE",
        format!("/v1/enterprises/{ent}/members/{}", observer.id),
        &owner.access,
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = call("GET", format!("/v1/products/{pk}"), &observer.access, None).await;
    assert_eq!(s, 404, "a removed member no longer sees the products");

    // ---- the operator suspends the enterprise: members are refused, devices stay ----
    let (s, v) = srv
        .admin(
            "POST",
            &format!("/v1/admin/enterprises/{ent}/suspend"),
            None,
        )
        .await;
    assert_eq!((s, &v["suspended"]), (200, &json!(true)));
    let (s, _) = call("GET", format!("/v1/products/{pk}"), &admin.access, None).await;
    assert_eq!(s, 403);
    let (_, list) = call("GET", "/v1/products".into(), &admin.access, None).await;
    assert_eq!(list["meta"]["total"], 0);
    srv.register(&pk, &ps2, "hw-ent-3").await;
    let (s, _) = srv
        .admin(
            "POST",
            &format!("/v1/admin/enterprises/{ent}/unsuspend"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = call("GET", format!("/v1/products/{pk}"), &admin.access, None).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn totp_second_factor() {
    let srv = Server::start().await;
    let email = "totp@maker.example";
    let dev = operator_made(&srv, email).await;
    let (s, e) = srv
        .call("POST", "/v1/developers/me/totp", Some(&dev.access), None)
        .await;
    assert_eq!(s, 201, "{e}");
    let uri = e["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/Rampart:"), "{uri}");
    let totp = totp_rs::TOTP::from_url(uri).unwrap();
    assert_eq!(totp.get_secret_base32(), e["secret"].as_str().unwrap());
    // not on before confirmation
    let (s, _) = login(&srv, email, json!({})).await;
    assert_eq!(s, 200);
    let now = (now_ms() / 1000) as u64;
    let (s, v) = srv
        .call(
            "POST",
            "/v1/developers/me/totp/confirm",
            Some(&dev.access),
            Some(json!({"code": "000000"})),
        )
        .await;
    assert_error(s, &v, 400, "INVALID_CODE");
    let first = totp.generate(now);
    let (s, v) = srv
        .call(
            "POST",
            "/v1/developers/me/totp/confirm",
            Some(&dev.access),
            Some(json!({"code": first})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let recovery: Vec<String> = v["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(recovery.len(), 10);
    let (_, me) = srv
        .call("GET", "/v1/developers/me", Some(&dev.access), None)
        .await;
    assert_eq!(me["totp_enabled"], true);

    // the password alone: a distinct answer, but only once the password was right
    let (s, v) = login(&srv, email, json!({})).await;
    assert_error(s, &v, 401, "TOTP_REQUIRED");
    let (s, v) = login(
        &srv,
        email,
        json!({"password": "amber gravel quiet harbor"}),
    )
    .await;
    assert_error(s, &v, 401, "UNAUTHORIZED");
    // the code used for confirmation cannot be used again
    let (s, v) = login(&srv, email, json!({"totp": first})).await;
    assert_error(s, &v, 401, "TOTP_REQUIRED");
    // the next step's code (within the one-step window) works, once
    let next = totp.generate(now + 30);
    let (s, v) = login(&srv, email, json!({"totp": next})).await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = login(&srv, email, json!({"totp": next})).await;
    assert_eq!(s, 401, "a replayed code is refused");
    // a code far from now is refused
    let (s, _) = login(&srv, email, json!({"totp": totp.generate(now + 600)})).await;
    assert_eq!(s, 401);
    // a recovery code works once
    let (s, _) = login(&srv, email, json!({"recovery_code": recovery[0]})).await;
    assert_eq!(s, 200);
    let (s, _) = login(&srv, email, json!({"recovery_code": recovery[0]})).await;
    assert_eq!(s, 401);
    // a password reset by e-mailed code ends every session but keeps the second factor
    let (s, _) = srv
        .call(
            "POST",
            "/v1/developers/password/reset",
            None,
            Some(json!({"email": email})),
        )
        .await;
    assert_eq!(s, 202);
    let code = outbox(&srv, email, "password_reset").await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let new_pw = "copper meadow silent orbit";
    let (s, v) = srv
        .call(
            "POST",
            "/v1/developers/password/reset/confirm",
            None,
            Some(json!({"email": email, "code": code, "password": new_pw})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = srv
        .call("GET", "/v1/developers/me", Some(&dev.access), None)
        .await;
    assert_eq!(s, 401);
    let (s, v) = login(&srv, email, json!({"password": new_pw})).await;
    assert_error(s, &v, 401, "TOTP_REQUIRED");
    let (s, v) = login(
        &srv,
        email,
        json!({"password": new_pw, "recovery_code": recovery[2]}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let access = v["access_token"].as_str().unwrap().to_owned();

    // turning TOTP off needs the password and a code
    let (s, _) = srv
        .call(
            "POST",
            "/v1/developers/me/totp/disable",
            Some(&access),
            Some(json!({"password": new_pw})),
        )
        .await;
    assert_eq!(s, 403);
    let (s, v) = srv
        .call(
            "POST",
            "/v1/developers/me/totp/disable",
            Some(&access),
            Some(json!({"password": new_pw, "recovery_code": recovery[1]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = login(&srv, email, json!({"password": new_pw})).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn operator_suspends_a_developer() {
    let srv = Server::start().await;
    let email = "soon-suspended@maker.example";
    let dev = operator_made(&srv, email).await;
    let (s, v) = srv
        .call(
            "POST",
            "/v1/products",
            Some(&dev.access),
            Some(product_body(None)),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let pk = v["product_key"].as_str().unwrap().to_owned();
    let ps = v["product_secret"].as_str().unwrap().to_owned();
    let (did, _, _) = srv.register(&pk, &ps, "hw-personal-1").await;
    let (s, _) = srv
        .call(
            "GET",
            &format!("/v1/devices/{did}"),
            Some(&dev.access),
            None,
        )
        .await;
    assert_eq!(s, 200);
    // an operator's product stays the operator's
    let (op_pk, _) = srv.product(true, false).await;
    let (s, _) = srv
        .call(
            "GET",
            &format!("/v1/products/{op_pk}"),
            Some(&dev.access),
            None,
        )
        .await;
    assert_eq!(s, 404);

    // the operator finds the developer by e-mail
    let (s, v) = srv
        .admin("GET", &format!("/v1/admin/developers?email={email}"), None)
        .await;
    assert_eq!((s, v["meta"]["total"].as_i64()), (200, Some(1)), "{v}");
    assert_eq!(v["data"][0]["developer_id"], dev.id.as_str());
    let (s, v) = srv
        .admin(
            "POST",
            &format!("/v1/admin/developers/{}/suspend", dev.id),
            None,
        )
        .await;
    assert_eq!((s, &v["suspended"]), (200, &json!(true)), "{v}");
    // the token stops at once, refresh too, and login is refused
    for p in [
        "/v1/developers/me".to_string(),
        format!("/v1/products/{pk}"),
        format!("/v1/devices/{did}"),
    ] {
        let (s, _) = srv.call("GET", &p, Some(&dev.access), None).await;
        assert_eq!(s, 401, "{p}");
    }
    let (s, _) = srv
        .call(
            "POST",
            "/v1/developers/token/refresh",
            None,
            Some(json!({"refresh_token": dev.refresh})),
        )
        .await;
    assert_eq!(s, 401);
    let (s, v) = login(&srv, email, json!({})).await;
    assert_error(s, &v, 403, "ACCOUNT_SUSPENDED");
    // the products' devices keep working
    srv.register(&pk, &ps, "hw-personal-2").await;
    let (s, _) = srv.admin("GET", &format!("/v1/devices/{did}"), None).await;
    assert_eq!(s, 200);
    let (s, _) = srv
        .admin("POST", "/v1/admin/developers/dev_unknown/suspend", None)
        .await;
    assert_eq!(s, 404);

    let (s, _) = srv
        .admin(
            "POST",
            &format!("/v1/admin/developers/{}/unsuspend", dev.id),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let dev = logged_in(&srv, email).await;
    let (s, _) = srv
        .call(
            "GET",
            &format!("/v1/products/{pk}"),
            Some(&dev.access),
            None,
        )
        .await;
    assert_eq!(s, 200);

    // the operator creates an enterprise account with this developer as its owner
    let (s, v) = srv
        .admin(
            "POST",
            "/v1/admin/enterprises",
            Some(json!({"name": "Operator-made", "owner_developer_id": dev.id})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (_, mine) = srv
        .call("GET", "/v1/enterprises", Some(&dev.access), None)
        .await;
    assert_eq!(mine["data"][0]["enterprise_id"], v["enterprise_id"]);
    assert_eq!(mine["data"][0]["role"], "owner");
    let (s, _) = srv
        .admin(
            "POST",
            "/v1/admin/enterprises",
            Some(json!({"name": "Nobody's", "owner_developer_id": "dev_nobody"})),
        )
        .await;
    assert_eq!(s, 404);

    // a password change (same policy) ends the developer's other sessions
    let other = logged_in(&srv, email).await;
    let change = |old: &str, new: &str| json!({"old_password": old, "new_password": new});
    let new_pw = "amber gravel quiet harbor";
    let (s, _) = srv
        .call(
            "POST",
            "/v1/developers/me/password",
            Some(&dev.access),
            Some(change("not the password", new_pw)),
        )
        .await;
    assert_eq!(s, 403);
    let (s, v) = srv
        .call(
            "POST",
            "/v1/developers/me/password",
            Some(&dev.access),
            Some(change(PW, "short")),
        )
        .await;
    assert_error(s, &v, 400, "WEAK_PASSWORD");
    let (s, v) = srv
        .call(
            "POST",
            "/v1/developers/me/password",
            Some(&dev.access),
            Some(change(PW, new_pw)),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = srv
        .call("GET", "/v1/developers/me", Some(&other.access), None)
        .await;
    assert_eq!(s, 401);
    let (s, _) = srv
        .call("GET", "/v1/developers/me", Some(&dev.access), None)
        .await;
    assert_eq!(s, 200);
    let (s, _) = login(&srv, email, json!({})).await;
    assert_eq!(s, 401);
    let (s, _) = login(&srv, email, json!({"password": new_pw})).await;
    assert_eq!(s, 200);
}

/// Live push for developers: the devices of the products they may read, and no others; a
/// member removed from the enterprise stops getting its devices' events before the next one; a
/// suspended developer's stream closes.
#[tokio::test]
async fn developer_live_push_follows_the_role_matrix() {
    use crate::accounts::{open_ws, Dev as Device};
    let srv = Server::start_with(&[QUICK_RECONNECTS]).await;
    let owner = operator_made(&srv, "boss@maker.example").await;
    let member = operator_made(&srv, "staff@maker.example").await;
    let outsider = operator_made(&srv, "rival@other.example").await;
    let (s, ent) = srv
        .admin(
            "POST",
            "/v1/admin/enterprises",
            Some(json!({"name": "Maker", "owner_developer_id": owner.id})),
        )
        .await;
    assert_eq!(s, 201, "{ent}");
    let ent = ent["enterprise_id"].as_str().unwrap().to_owned();
    join(
        &srv,
        &ent,
        &owner,
        &member,
        "staff@maker.example",
        "observer",
    )
    .await;
    // a device of each: the enterprise's, the member's own, the outsider's
    let device = |who: &Dev, owner: Option<Value>| {
        let (srv, token) = (&srv, who.access.clone());
        async move {
            let (s, p) = srv
                .call(
                    "POST",
                    "/v1/products",
                    Some(&token),
                    Some(product_body(owner)),
                )
                .await;
            assert_eq!(s, 201, "{p}");
            let (pk, ps) = (
                p["product_key"].as_str().unwrap(),
                p["product_secret"].as_str().unwrap(),
            );
            let (did, secret, _) = srv.register(pk, ps, &format!("hw-{}", nonce())).await;
            (did, secret)
        }
    };
    let (ent_did, ent_secret) = device(&owner, Some(json!({"enterprise_id": ent}))).await;
    let (own_did, own_secret) = device(&member, None).await;
    let (rival_did, rival_secret) = device(&outsider, None).await;

    // only a developer's token opens it, and only as a WebSocket
    let (s, v) = srv
        .call("GET", "/v1/developers/ws", Some(&member.access), None)
        .await;
    assert_error(s, &v, 426, "UPGRADE_REQUIRED");
    let (s, _) = srv
        .call("GET", "/v1/developers/ws", Some(ADMIN), None)
        .await;
    assert_eq!(s, 401);
    let mut ws = open_ws(&srv, "/v1/developers/ws", &member.access, true).await;
    let mut boss = open_ws(&srv, "/v1/developers/ws", &owner.access, false).await;

    // the outsider's device first: had it leaked, it would come before the enterprise's
    let _rival = Device::connect(&srv, &rival_did, &rival_secret).await;
    let mut ent_dev = Device::connect(&srv, &ent_did, &ent_secret).await;
    let m = ws.next().await;
    assert_eq!(
        (m["did"].as_str(), m["kind"].as_str()),
        (Some(ent_did.as_str()), Some("presence")),
        "{m}"
    );
    let m = boss.next().await;
    assert_eq!(m["did"], ent_did.as_str(), "{m}");
    ent_dev.report(json!({"power": true})).await;
    let m = ws.next().await;
    assert_eq!(
        (m["kind"].as_str(), &m["values"]),
        (Some("status"), &json!({"power": true})),
        "{m}"
    );
    // a command by the owner: the observer sees its acknowledgement
    let (s, c) = srv
        .call(
            "POST",
            &format!("/v1/devices/{ent_did}/commands"),
            Some(&owner.access),
            Some(json!({"set": {"power": false}})),
        )
        .await;
    assert_eq!((s, c["status"].as_str()), (200, Some("ok")), "{c}");
    let m = ws.next().await;
    assert_eq!(
        (m["kind"].as_str(), &m["id"]),
        (Some("ack"), &c["id"]),
        "{m}"
    );
    let mut own_dev = Device::connect(&srv, &own_did, &own_secret).await;
    let m = ws.next().await;
    assert_eq!(
        (m["did"].as_str(), m["online"].as_bool()),
        (Some(own_did.as_str()), Some(true)),
        "{m}"
    );

    // removed from the enterprise: its devices stop at once, the member's own go on
    let (s, v) = srv
        .call(
            "DELETE",
            &format!("/v1/enterprises/{ent}/members/{}", member.id),
            Some(&owner.access),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    ent_dev.report(json!({"power": false})).await;
    own_dev.report(json!({"power": true})).await;
    let m = ws.next().await;
    assert_eq!(
        (m["did"].as_str(), m["kind"].as_str()),
        (Some(own_did.as_str()), Some("status")),
        "{m}"
    );
    // the owner still sees the enterprise's device (after its earlier events)
    loop {
        let m = boss.next().await;
        assert!(m.get("closed").is_none(), "{m}");
        if m["kind"] == "status" && m["values"] == json!({"power": false}) {
            assert_eq!(m["did"], ent_did.as_str());
            break;
        }
    }

    // suspended by the operator: the stream closes at the next event
    let (s, _) = srv
        .admin(
            "POST",
            &format!("/v1/admin/developers/{}/suspend", member.id),
            None,
        )
        .await;
    assert_eq!(s, 200);
    own_dev.report(json!({"power": false})).await;
    let m = ws.next().await;
    assert_eq!(m["closed"], 4401, "{m}");
}

/// 80 concurrent wrong passwords for one developer, then the right one: each try is claimed in
/// the store before its comparison, so five are compared and lock the account and the rest,
/// the right password included, meet the lock. Run on `store_url` when given (PostgreSQL).
async fn developer_wrong_password_storm(store_url: Option<&str>) {
    let mut env = vec![("RAMPART_LIMITS__PASSWORD_HASH_QUEUE", "1000")];
    if let Some(url) = store_url {
        env.push(("RAMPART_STORE__URL", url));
    }
    let srv = Server::start_with(&env).await;
    let email = "storm@maker.example";
    operator_made(&srv, email).await;
    let wrong = json!({"password": "velvet tundra oxide lantexn"});
    let answers =
        futures_util::future::join_all((0..80).map(|_| login(&srv, email, wrong.clone()))).await;
    for (s, v) in &answers {
        assert_error(*s, v, 401, "UNAUTHORIZED");
    }
    let (s, v) = login(&srv, email, json!({})).await;
    assert_error(s, &v, 401, "UNAUTHORIZED");
    let store = match store_url {
        Some(url) => rampart_store::Store::open(url).await.unwrap(),
        None => rampart_store::Store::open_sqlite(&srv.data().join("rampart.db"))
            .await
            .unwrap(),
    };
    let logins = store
        .list_audit(Some("developer.login"), 1000)
        .await
        .unwrap();
    let failed = |d: &str| {
        logins
            .iter()
            .filter(|r| r.outcome == "failed" && r.detail.as_deref() == Some(d))
            .count()
    };
    assert_eq!((failed("wrong password"), failed("locked")), (5, 76));
    let locks = store
        .list_audit(Some("developer.lockout"), 100)
        .await
        .unwrap();
    assert_eq!(locks.len(), 1);
    store.close().await;
}

#[tokio::test]
async fn concurrent_wrong_developer_passwords_are_all_counted() {
    developer_wrong_password_storm(None).await;
}

#[tokio::test]
async fn concurrent_wrong_developer_passwords_are_all_counted_on_postgresql() {
    let Some(pg) =
        PgSchema::create("concurrent_wrong_developer_passwords_are_all_counted_on_postgresql")
    else {
        return;
    };
    developer_wrong_password_storm(Some(&pg.store_url())).await;
}

/// An enterprise is deleted by its owner (not by an admin) with its products and their devices;
/// then the owner deletes their own account with its personal product, which the API refused
/// while they were the enterprise's only owner. Afterwards their token and login fail, the
/// other member's account stays, and the audit keeps only ids.
#[tokio::test]
async fn deleting_an_enterprise_then_the_developer_takes_what_they_own() {
    let srv = Server::start().await;
    let owner_email = format!("own-{}@maker.example", nonce());
    let admin_email = format!("adm-{}@maker.example", nonce());
    let owner = operator_made(&srv, &owner_email).await;
    let admin = operator_made(&srv, &admin_email).await;
    let (s, ent) = srv
        .call(
            "POST",
            "/v1/enterprises",
            Some(&owner.access),
            Some(json!({"name": "Gone Ltd"})),
        )
        .await;
    assert_eq!(s, 201, "{ent}");
    let ent = ent["enterprise_id"].as_str().unwrap().to_owned();
    join(&srv, &ent, &owner, &admin, &admin_email, "admin").await;
    let mut products = Vec::new();
    for owned_by in [Some(json!({"enterprise_id": ent})), None] {
        let (s, v) = srv
            .call(
                "POST",
                "/v1/products",
                Some(&owner.access),
                Some(product_body(owned_by)),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let pk = v["product_key"].as_str().unwrap().to_owned();
        let ps = v["product_secret"].as_str().unwrap().to_owned();
        let (did, _, _) = srv.register(&pk, &ps, &format!("hw-{}", nonce())).await;
        products.push((pk, did));
    }
    let [(ent_pk, ent_did), (own_pk, own_did)] = &products[..] else {
        unreachable!()
    };

    // The only owner of an enterprise cannot leave it ownerless; an admin cannot delete it.
    let (s, v) = srv
        .call("DELETE", "/v1/developers/me", Some(&owner.access), None)
        .await;
    assert_error(s, &v, 409, "CONFLICT");
    let (s, v) = srv
        .call(
            "DELETE",
            &format!("/v1/enterprises/{ent}"),
            Some(&admin.access),
            None,
        )
        .await;
    assert_error(s, &v, 403, "FORBIDDEN");

    let (s, v) = srv
        .call(
            "DELETE",
            &format!("/v1/enterprises/{ent}"),
            Some(&owner.access),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["deleted"],
        json!({"products": 1, "devices": 1, "members": 2, "invites": 0, "access_keys": 0,
            "webhooks": 0}),
        "{v}"
    );
    for path in [
        format!("/v1/enterprises/{ent}"),
        format!("/v1/products/{ent_pk}"),
        format!("/v1/devices/{ent_did}"),
    ] {
        let (s, v) = srv.admin("GET", &path, None).await;
        assert_error(s, &v, 404, "NOT_FOUND");
    }

    // A wrong password changes nothing; the right one deletes the account and its product.
    let (s, v) = srv
        .call(
            "DELETE",
            "/v1/developers/me",
            Some(&owner.access),
            Some(json!({"password": "not the password at all"})),
        )
        .await;
    assert_error(s, &v, 403, "FORBIDDEN");
    let (s, v) = srv
        .call(
            "DELETE",
            "/v1/developers/me",
            Some(&owner.access),
            Some(json!({"password": PW})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["developer_id"], owner.id.as_str(), "{v}");
    assert_eq!(
        (&v["deleted"]["products"], &v["deleted"]["devices"]),
        (&json!(1), &json!(1))
    );
    for path in [
        format!("/v1/products/{own_pk}"),
        format!("/v1/devices/{own_did}"),
    ] {
        let (s, v) = srv.admin("GET", &path, None).await;
        assert_error(s, &v, 404, "NOT_FOUND");
    }
    let (s, _) = srv
        .call("GET", "/v1/developers/me", Some(&owner.access), None)
        .await;
    assert_eq!(s, 401);
    let (s, _) = login(&srv, &owner_email, json!({})).await;
    assert_eq!(s, 401);
    let (s, me) = srv
        .call("GET", "/v1/developers/me", Some(&admin.access), None)
        .await;
    assert_eq!(s, 200, "{me}");

    let store = rampart_store::Store::open_sqlite(&srv.data().join("rampart.db"))
        .await
        .unwrap();
    let rows = store.list_audit(None, 10_000).await.unwrap();
    store.close().await;
    for action in ["enterprise.delete", "developer.delete"] {
        assert_eq!(
            rows.iter().filter(|r| r.action == action).count(),
            1,
            "{action}"
        );
    }
    for r in &rows {
        let text = format!("{r:?}");
        assert!(
            !text.contains(&owner_email),
            "an audit row names the developer: {text}"
        );
    }
}
