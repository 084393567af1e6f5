//! The enterprise API against the real binary: access keys, signed requests checked by a
//! signer written here (its own canonical string and HMAC, not the server's code), tenant
//! isolation, scopes, the tenant's audit query, and `rampart audit verify` before and after an
//! audit row is edited in the database file.

use crate::support::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::process::Command;

/// An access key as the enterprise's system holds it.
#[derive(Clone)]
pub(crate) struct Key {
    pub(crate) id: String,
    pub(crate) secret: String,
}

/// The canonical string, written from the documentation: method, path, the query's `k=v` pairs
/// sorted by key then value, the body's SHA-256 in hex, ts and nonce, joined by newlines.
pub(crate) fn canonical(
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    ts: &str,
    nonce: &str,
) -> String {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for piece in query.split('&').filter(|p| !p.is_empty()) {
        match piece.find('=') {
            Some(i) => pairs.push((piece[..i].to_string(), piece[i + 1..].to_string())),
            None => pairs.push((piece.to_string(), String::new())),
        }
    }
    pairs.sort();
    let sorted: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let body_hash = hex::encode(Sha256::digest(body));
    [method, path, &sorted.join("&"), &body_hash, ts, nonce].join("\n")
}

/// How to sign one request (tests bend each part).
struct Signing<'a> {
    key: &'a Key,
    ts: i64,
    nonce: String,
    /// Sign this body instead of the one sent.
    signed_body: Option<Vec<u8>>,
    /// Sign with this secret instead of the key's.
    secret: Option<&'a str>,
}

impl<'a> Signing<'a> {
    fn now(key: &'a Key) -> Signing<'a> {
        Signing {
            key,
            ts: now_ms(),
            nonce: nonce(),
            signed_body: None,
            secret: None,
        }
    }
}

async fn send_signed(
    srv: &Server,
    sg: &Signing<'_>,
    method: &str,
    path_and_query: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let ts = sg.ts.to_string();
    let c = canonical(
        method,
        path,
        query,
        sg.signed_body.as_deref().unwrap_or(bytes.as_slice()),
        &ts,
        &sg.nonce,
    );
    let sig = hmac_hex(sg.secret.unwrap_or(sg.key.secret.as_str()), &c);
    let auth = format!(
        "RAMPART-HMAC-SHA256 key_id={}, ts={ts}, nonce={}, signature={sig}",
        sg.key.id, sg.nonce
    );
    raw(srv, method, path_and_query, Some(&auth), bytes).await
}

async fn raw(
    srv: &Server,
    method: &str,
    path_and_query: &str,
    auth: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut rb = srv.http_client.request(m, srv.url(path_and_query));
    if let Some(a) = auth {
        rb = rb.header("authorization", a);
    }
    if !body.is_empty() {
        rb = rb.header("content-type", "application/json").body(body);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    if status == 401 {
        assert_eq!(
            resp.headers()["www-authenticate"].to_str().unwrap(),
            "RAMPART-HMAC-SHA256"
        );
    }
    (status, resp.json().await.unwrap())
}

async fn get(srv: &Server, key: &Key, path: &str) -> (u16, Value) {
    signed(srv, key, "GET", path, None).await
}

/// A request signed with `key` now, with a fresh nonce.
pub(crate) async fn signed(
    srv: &Server,
    key: &Key,
    method: &str,
    path_and_query: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    send_signed(srv, &Signing::now(key), method, path_and_query, body).await
}

/// [`signed`] with a chosen nonce (to replay one).
pub(crate) async fn signed_with_nonce(
    srv: &Server,
    key: &Key,
    method: &str,
    path_and_query: &str,
    body: Option<&Value>,
    nonce: &str,
) -> (u16, Value) {
    let mut sg = Signing::now(key);
    sg.nonce = nonce.to_owned();
    send_signed(srv, &sg, method, path_and_query, body).await
}

pub(crate) fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

pub(crate) async fn enterprise(srv: &Server, name: &str) -> String {
    let (s, v) = srv
        .admin("POST", "/v1/enterprises", Some(json!({"name": name})))
        .await;
    assert_eq!(s, 201, "{v}");
    v["enterprise_id"].as_str().unwrap().to_owned()
}

/// A product of the enterprise and one registered device: (product_key, did, device_secret).
pub(crate) async fn product_with_device(srv: &Server, ent: &str) -> (String, String, String) {
    let (s, v) = srv
        .admin(
            "POST",
            "/v1/products",
            Some(json!({
                "name": "Enterprise lamp",
                "identity": {"dynamic_registration": true, "allowlist": false},
                "owner": {"enterprise_id": ent},
                "datapoints": [{"name": "power", "type": "bool", "writable": true}]
            })),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let pk = v["product_key"].as_str().unwrap().to_owned();
    let ps = v["product_secret"].as_str().unwrap().to_owned();
    let (did, secret, _) = srv.register(&pk, &ps, &format!("hw-{}", nonce())).await;
    (pk, did, secret)
}

pub(crate) async fn new_key(srv: &Server, token: &str, ent: &str, body: Value) -> Key {
    let (s, v) = srv
        .call(
            "POST",
            &format!("/v1/enterprises/{ent}/keys"),
            Some(token),
            Some(body),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    Key {
        id: v["key_id"].as_str().unwrap().into(),
        secret: v["secret"].as_str().unwrap().into(),
    }
}

/// A key of `ent` for product `pk` with `scopes`, usable from 127.0.0.1.
pub(crate) async fn local_key(srv: &Server, ent: &str, pk: &str, scopes: &[&str]) -> Key {
    let body = json!({"products": [pk], "scopes": scopes, "allow_ips": ["127.0.0.1/32"]});
    new_key(srv, ADMIN, ent, body).await
}

#[tokio::test]
async fn signed_requests_keys_tenants_and_audit_chain() {
    let srv = Server::start().await;
    let ent_a = enterprise(&srv, "Acme").await;
    let ent_b = enterprise(&srv, "Globex").await;
    let (pk_a1, did_a1, secret_a1) = product_with_device(&srv, &ent_a).await;
    let (pk_a2, did_a2, _) = product_with_device(&srv, &ent_a).await;
    let (pk_b1, did_b1, _) = product_with_device(&srv, &ent_b).await;

    // ---- key management ----
    let rc = new_key(
        &srv,
        ADMIN,
        &ent_a,
        json!({"products": [pk_a1], "scopes": ["read", "control"], "allow_ips": ["127.0.0.1/32"]}),
    )
    .await;
    assert!(rc.id.starts_with("rak_") && rc.secret.len() >= 32);
    let ro = new_key(
        &srv,
        ADMIN,
        &ent_a,
        json!({"products": [pk_a1], "scopes": ["read"], "allow_ips": ["::1/128", "127.0.0.0/8"]}),
    )
    .await;
    let ten = new_key(
        &srv,
        ADMIN,
        &ent_a,
        json!({"products": [pk_a1], "scopes": ["read"], "allow_ips": ["10.0.0.0/8"]}),
    )
    .await;
    let expires_at = now_ms() + 1500;
    let expiring = new_key(
        &srv,
        ADMIN,
        &ent_a,
        json!({"products": [pk_a1], "scopes": ["read"], "allow_ips": ["0.0.0.0/0"],
               "expires_at": expires_at}),
    )
    .await;
    let kb = new_key(
        &srv,
        ADMIN,
        &ent_b,
        json!({"products": [pk_b1], "scopes": ["read"], "allow_ips": ["127.0.0.1"]}),
    )
    .await;
    let keys_path = format!("/v1/enterprises/{ent_a}/keys");
    for (body, why) in [
        (
            json!({"products": [pk_b1], "scopes": ["read"], "allow_ips": ["127.0.0.1/32"]}),
            "another enterprise's product",
        ),
        (
            json!({"products": [pk_a1], "scopes": [], "allow_ips": ["127.0.0.1/32"]}),
            "no scope",
        ),
        (
            json!({"products": [pk_a1], "scopes": ["read"], "allow_ips": ["10.0.0.1/8"]}),
            "host bits",
        ),
        (
            json!({"products": [pk_a1], "scopes": ["read"], "allow_ips": ["127.0.0.1/32"], "expires_at": 1}),
            "expired already",
        ),
    ] {
        let (s, v) = srv.admin("POST", &keys_path, Some(body)).await;
        assert_eq!((s, code(&v)), (400, "INVALID_REQUEST"), "{why}: {v}");
    }
    let (s, v) = srv
        .admin(
            "POST",
            &keys_path,
            Some(json!({"products": [pk_a1], "scopes": ["write"], "allow_ips": ["127.0.0.1/32"]})),
        )
        .await;
    assert_eq!((s, code(&v)), (400, "INVALID_JSON"), "{v}");
    let (s, list) = srv.admin("GET", &keys_path, None).await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["meta"]["total"], 4);
    let text = list.to_string();
    assert!(!text.contains(&rc.secret) && !text.contains("\"secret\""));
    assert!(
        text.contains("\"allow_ips\":[\"::1/128\",\"127.0.0.0/8\"]"),
        "{text}"
    );

    // a developer who owns an enterprise manages its keys; a stranger sees nothing
    let (s, v) = srv
        .admin(
            "POST",
            "/v1/admin/developers",
            Some(json!({"email": "ops@acme.example", "password": "velvet tundra oxide lantern"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = srv
        .call(
            "POST",
            "/v1/developers/login",
            None,
            Some(json!({"email": "ops@acme.example", "password": "velvet tundra oxide lantern"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let dev = v["access_token"].as_str().unwrap().to_owned();
    let (s, v) = srv
        .call(
            "POST",
            "/v1/enterprises",
            Some(&dev),
            Some(json!({"name": "Own"})),
        )
        .await;
    assert_eq!((s, v["role"].as_str()), (201, Some("owner")), "{v}");
    let ent_own = v["enterprise_id"].as_str().unwrap().to_owned();
    let (pk_own, _, _) = product_with_device(&srv, &ent_own).await;
    new_key(
        &srv,
        &dev,
        &ent_own,
        json!({"products": [pk_own], "scopes": ["read"], "allow_ips": ["127.0.0.1/32"]}),
    )
    .await;
    let (s, v) = srv
        .call(
            "POST",
            &keys_path,
            Some(&dev),
            Some(json!({"products": [pk_a1], "scopes": ["read"], "allow_ips": ["127.0.0.1/32"]})),
        )
        .await;
    assert_eq!((s, code(&v)), (404, "NOT_FOUND"), "{v}");

    // ---- good requests ----
    let (s, v) = get(&srv, &rc, "/v1/enterprise/devices").await;
    assert_eq!(s, 200, "{v}");
    let dids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["did"].as_str().unwrap())
        .collect();
    assert_eq!(dids, vec![did_a1.as_str()], "only the key's products");
    assert_eq!(v["meta"]["total"], 1);
    let (s, v) = get(
        &srv,
        &rc,
        &format!("/v1/enterprise/devices?product_key={pk_a1}&limit=10&page=1"),
    )
    .await;
    assert_eq!((s, v["meta"]["total"].as_i64()), (200, Some(1)), "{v}");
    let (s, v) = get(&srv, &rc, &format!("/v1/enterprise/devices/{did_a1}")).await;
    assert_eq!(
        (s, v["did"].as_str(), v["online"].as_bool()),
        (200, Some(did_a1.as_str()), Some(false)),
        "{v}"
    );
    let (s, v) = get(
        &srv,
        &ro,
        &format!("/v1/enterprise/devices/{did_a1}/history?limit=5&point=power"),
    )
    .await;
    assert_eq!((s, v["meta"]["limit"].as_i64()), (200, Some(5)), "{v}");

    // ---- tenant isolation: another tenant's device, a product outside the key ----
    for did in [&did_b1, &did_a2, &"d_unknown".to_string()] {
        for path in [
            format!("/v1/enterprise/devices/{did}"),
            format!("/v1/enterprise/devices/{did}/history"),
        ] {
            let (s, v) = get(&srv, &rc, &path).await;
            assert_eq!((s, code(&v)), (404, "NOT_FOUND"), "{path}: {v}");
        }
        let (s, v) = send_signed(
            &srv,
            &Signing::now(&rc),
            "POST",
            &format!("/v1/enterprise/devices/{did}/commands"),
            Some(&json!({"set": {"power": true}})),
        )
        .await;
        assert_eq!((s, code(&v)), (404, "NOT_FOUND"), "{v}");
    }
    for pk in [&pk_a2, &pk_b1] {
        let (s, v) = get(
            &srv,
            &rc,
            &format!("/v1/enterprise/devices?product_key={pk}"),
        )
        .await;
        assert_eq!((s, code(&v)), (404, "NOT_FOUND"), "{v}");
    }
    let (s, v) = get(&srv, &kb, &format!("/v1/enterprise/devices/{did_a1}")).await;
    assert_eq!((s, code(&v)), (404, "NOT_FOUND"), "{v}");
    let (s, v) = get(&srv, &kb, &format!("/v1/enterprise/devices/{did_b1}")).await;
    assert_eq!(s, 200, "{v}");

    // ---- commands: scope, validation, delivery ----
    let cmd_path = format!("/v1/enterprise/devices/{did_a1}/commands");
    let on = json!({"set": {"power": true}});
    let (s, v) = send_signed(&srv, &Signing::now(&ro), "POST", &cmd_path, Some(&on)).await;
    assert_eq!(
        (s, code(&v)),
        (403, "FORBIDDEN"),
        "read key commanding: {v}"
    );
    let (s, v) = send_signed(&srv, &Signing::now(&rc), "POST", &cmd_path, Some(&on)).await;
    assert_eq!((s, code(&v)), (409, "DEVICE_OFFLINE"), "{v}");
    let bad = json!({"set": {"brightness": 3}});
    let (s, v) = send_signed(&srv, &Signing::now(&rc), "POST", &cmd_path, Some(&bad)).await;
    assert_eq!((s, code(&v)), (400, "INVALID_DATAPOINT"), "{v}");
    let _dev = crate::commands::fake_device(&srv, &did_a1, &secret_a1, |cmd| {
        Some(json!({"id": cmd["id"], "status": "ok"}))
    })
    .await;
    let (s, v) = send_signed(&srv, &Signing::now(&rc), "POST", &cmd_path, Some(&on)).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")), "{v}");

    // ---- signature failures ----
    let list = "/v1/enterprise/devices";
    let mut sg = Signing::now(&rc);
    sg.secret = Some("ras_not_the_secret");
    let (s, v) = send_signed(&srv, &sg, "GET", list, None).await;
    assert_eq!((s, code(&v)), (401, "SIGNATURE_MISMATCH"), "{v}");
    let mut sg = Signing::now(&rc);
    sg.signed_body = Some(br#"{"set":{"power":false}}"#.to_vec());
    let (s, v) = send_signed(&srv, &sg, "POST", &cmd_path, Some(&on)).await;
    assert_eq!(
        (s, code(&v)),
        (401, "SIGNATURE_MISMATCH"),
        "body changed: {v}"
    );
    let ghost = Key {
        id: "rak_doesnotexist0000000".into(),
        secret: rc.secret.clone(),
    };
    let (s, v) = get(&srv, &ghost, list).await;
    assert_eq!(
        (s, code(&v)),
        (401, "SIGNATURE_MISMATCH"),
        "unknown key: {v}"
    );
    // the query is signed too
    let sg = Signing::now(&rc);
    let (path, q) = (list, format!("product_key={pk_a1}"));
    let ts = sg.ts.to_string();
    let sig = hmac_hex(&rc.secret, &canonical("GET", path, "", b"", &ts, &sg.nonce));
    let auth = format!(
        "RAMPART-HMAC-SHA256 key_id={}, ts={ts}, nonce={}, signature={sig}",
        rc.id, sg.nonce
    );
    let (s, v) = raw(&srv, "GET", &format!("{path}?{q}"), Some(&auth), vec![]).await;
    assert_eq!((s, code(&v)), (401, "SIGNATURE_MISMATCH"), "{v}");
    for auth in [None, Some("Bearer x"), Some("RAMPART-HMAC-SHA256 key_id=x")] {
        let (s, v) = raw(&srv, "GET", list, auth, vec![]).await;
        assert_eq!((s, code(&v)), (401, "INVALID_AUTHORIZATION"), "{v}");
    }

    // replayed nonce
    let sg = Signing::now(&rc);
    assert_eq!(send_signed(&srv, &sg, "GET", list, None).await.0, 200);
    let (s, v) = send_signed(&srv, &sg, "GET", list, None).await;
    assert_eq!((s, code(&v)), (401, "NONCE_REUSED"), "{v}");

    // stale or future timestamps
    for skew in [-301_000, 301_000] {
        let mut sg = Signing::now(&rc);
        sg.ts += skew;
        let (s, v) = send_signed(&srv, &sg, "GET", list, None).await;
        assert_eq!((s, code(&v)), (401, "STALE_TIMESTAMP"), "{v}");
    }
    let mut sg = Signing::now(&rc);
    sg.ts -= 200_000;
    assert_eq!(send_signed(&srv, &sg, "GET", list, None).await.0, 200);

    // wrong source address
    let (s, v) = get(&srv, &ten, list).await;
    assert_eq!((s, code(&v)), (401, "IP_NOT_ALLOWED"), "{v}");

    // disabled, enabled
    let kp = format!("{keys_path}/{}", ro.id);
    let (s, v) = srv.admin("POST", &format!("{kp}/disable"), None).await;
    assert_eq!((s, v["disabled"].as_bool()), (200, Some(true)), "{v}");
    let (s, v) = get(&srv, &ro, list).await;
    assert_eq!((s, code(&v)), (401, "KEY_DISABLED"), "{v}");
    let (s, _) = srv.admin("POST", &format!("{kp}/enable"), None).await;
    assert_eq!(s, 200);
    assert_eq!(get(&srv, &ro, list).await.0, 200);

    // expired
    let left = (expires_at + 50 - now_ms()).max(0) as u64;
    srv.advance(std::time::Duration::from_millis(left));
    let (s, v) = get(&srv, &expiring, list).await;
    assert_eq!((s, code(&v)), (401, "KEY_EXPIRED"), "{v}");

    // rotation with overlap: both secrets work, then the overlap is cut to nothing
    let rp = format!("{keys_path}/{}/rotate", rc.id);
    let (s, v) = srv
        .admin("POST", &rp, Some(json!({"overlap_secs": 600})))
        .await;
    assert_eq!(s, 200, "{v}");
    let rc2 = Key {
        id: rc.id.clone(),
        secret: v["secret"].as_str().unwrap().into(),
    };
    assert_ne!(rc2.secret, rc.secret);
    assert_eq!(get(&srv, &rc2, list).await.0, 200);
    assert_eq!(
        get(&srv, &rc, list).await.0,
        200,
        "old secret during the overlap"
    );
    let (s, v) = srv
        .admin("POST", &rp, Some(json!({"overlap_secs": 0})))
        .await;
    assert_eq!(s, 200, "{v}");
    let rc3 = Key {
        id: rc.id.clone(),
        secret: v["secret"].as_str().unwrap().into(),
    };
    assert_eq!(get(&srv, &rc3, list).await.0, 200);
    let (s, v) = get(&srv, &rc2, list).await;
    assert_eq!((s, code(&v)), (401, "SIGNATURE_MISMATCH"), "{v}");

    // a deleted key is unknown
    let (s, _) = srv
        .admin("DELETE", &format!("{keys_path}/{}", ten.id), None)
        .await;
    assert_eq!(s, 200);
    let (s, v) = get(&srv, &ten, list).await;
    assert_eq!((s, code(&v)), (401, "SIGNATURE_MISMATCH"), "{v}");

    // ---- the tenant's audit log ----
    let (s, v) = get(&srv, &rc3, "/v1/enterprise/audit?limit=200").await;
    assert_eq!(s, 200, "{v}");
    let rows = v["data"].as_array().unwrap();
    assert!(rows.iter().all(|r| r["tenant"] == ent_a.as_str()), "{v}");
    let has = |action: &str, outcome: &str| {
        rows.iter()
            .any(|r| r["action"] == action && r["outcome"].as_str().unwrap().starts_with(outcome))
    };
    for (action, outcome) in [
        ("access_key.create", "ok"),
        ("access_key.disable", "ok"),
        ("access_key.rotate", "ok"),
        ("access_key.delete", "ok"),
        ("access_key.auth", "denied: NONCE_REUSED"),
        ("access_key.auth", "denied: IP_NOT_ALLOWED"),
        ("access_key.auth", "denied: KEY_EXPIRED"),
        ("enterprise.device_list", "ok"),
        ("enterprise.device_read", "ok"),
        ("enterprise.device_history", "ok"),
        ("enterprise.device_access", "denied"),
        ("device.command", "sent"),
        ("device.register", "ok"),
        ("product.create", "ok"),
    ] {
        assert!(has(action, outcome), "{action} {outcome} missing: {v}");
    }
    let cmd = rows
        .iter()
        .find(|r| r["action"] == "device.command")
        .unwrap();
    assert_eq!(
        (cmd["actor_kind"].as_str(), cmd["actor_id"].as_str()),
        (Some("access_key"), Some(rc.id.as_str()))
    );
    let (s, v) = get(
        &srv,
        &rc3,
        &format!(
            "/v1/enterprise/audit?action=access_key.auth&actor={}",
            ro.id
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let rows = v["data"].as_array().unwrap();
    assert!(!rows.is_empty());
    assert!(rows
        .iter()
        .all(|r| r["action"] == "access_key.auth" && r["actor_id"] == ro.id.as_str()));
    let (s, v) = get(&srv, &kb, "/v1/enterprise/audit").await;
    assert_eq!(s, 200, "{v}");
    assert!(v["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["tenant"] == ent_b.as_str()));
    let (s, v) = srv
        .admin(
            "GET",
            &format!("/v1/enterprises/{ent_a}/audit?action=access_key.create"),
            None,
        )
        .await;
    assert_eq!((s, v["meta"]["total"].as_i64()), (200, Some(4)), "{v}");

    // ---- the audit chain ----
    let verify = || {
        let out = Command::new(bin())
            .args(["audit", "verify", "--data"])
            .arg(srv.data())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stdout, stderr) = verify();
    assert!(ok, "{stdout} {stderr}");
    assert!(stdout.contains("audit chain intact"), "{stdout}");

    // edit one row in the database file (the server keeps running and appending)
    let url = format!("sqlite://{}", srv.data().join("rampart.db").display());
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    let (id, detail): (i64, String) = sqlx::query_as(
        "SELECT id, detail FROM audit WHERE action = 'access_key.rotate' ORDER BY id LIMIT 1",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let set_detail = |d: String| {
        let db = db.clone();
        async move {
            sqlx::query("UPDATE audit SET detail = $1 WHERE id = $2")
                .bind(d)
                .bind(id)
                .execute(&db)
                .await
                .unwrap();
        }
    };
    set_detail("previous_valid_until=0".into()).await;
    let (ok, stdout, stderr) = verify();
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains(&format!("broken at entry {id}:")) && stderr.contains("edited"),
        "{stderr}"
    );
    // put it back: intact again; then remove the entry after it: its successor no longer links
    set_detail(detail).await;
    let (ok, stdout, stderr) = verify();
    assert!(ok, "{stdout} {stderr}");
    let (next,): (i64,) = sqlx::query_as("SELECT MIN(id) FROM audit WHERE id > $1")
        .bind(id)
        .fetch_one(&db)
        .await
        .unwrap();
    let (after,): (i64,) = sqlx::query_as("SELECT MIN(id) FROM audit WHERE id > $1")
        .bind(next)
        .fetch_one(&db)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit WHERE id = $1")
        .bind(next)
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let (ok, _, stderr) = verify();
    assert!(!ok);
    assert!(
        stderr.contains(&format!("broken at entry {after}:")) && stderr.contains("does not link"),
        "names the entry after the gap: {stderr}"
    );
}

#[tokio::test]
async fn sensitive_points_only_for_keys_that_name_them() {
    use rumqttc::{Event, Packet, QoS};
    let srv = Server::start().await;
    let ent = enterprise(&srv, "Clinic").await;
    let (s, v) = srv
        .admin(
            "POST",
            "/v1/products",
            Some(json!({
                "name": "Door lock",
                "identity": {"dynamic_registration": true, "allowlist": false},
                "owner": {"enterprise_id": ent},
                "datapoints": [
                    {"name": "power", "type": "bool", "writable": true},
                    {"name": "pin", "type": "int", "min": 0, "max": 9999, "sensitivity": "sensitive"},
                    {"name": "battery", "type": "int", "min": 0, "max": 100, "sensitivity": "internal"}
                ]
            })),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let pk = v["product_key"].as_str().unwrap().to_owned();
    let (did, secret, _) = srv
        .register(&pk, v["product_secret"].as_str().unwrap(), "hw-lock-1")
        .await;
    let key = |points: Value| {
        json!({"products": [pk], "scopes": ["read"], "allow_ips": ["127.0.0.1/32"],
               "sensitive_points": points})
    };
    let plain = new_key(&srv, ADMIN, &ent, key(json!([]))).await;
    let named = new_key(&srv, ADMIN, &ent, key(json!(["pin"]))).await;
    for bad in [json!(["power"]), json!(["battery"]), json!(["nothing"])] {
        let (s, v) = srv
            .admin(
                "POST",
                &format!("/v1/enterprises/{ent}/keys"),
                Some(key(bad)),
            )
            .await;
        assert_eq!((s, code(&v)), (400, "INVALID_REQUEST"), "{v}");
    }

    // the device reports every point
    let (u, p) = creds(&did, &secret);
    let (c, mut el) = rumqttc::AsyncClient::new(v4_options(&srv, &did, &u, &p), 10);
    c.publish(
        format!("dev/{did}/up"),
        QoS::AtLeastOnce,
        false,
        r#"{"power":true,"pin":1234,"battery":80}"#,
    )
    .await
    .unwrap();
    v4_until(&mut el, |e| {
        matches!(e, Ok(Event::Incoming(Packet::PubAck(_)))).then_some(())
    })
    .await;
    srv.wait_state(&did, |v| v["state"]["pin"] == 1234).await;

    let device = format!("/v1/enterprise/devices/{did}");
    let history = format!("/v1/enterprise/devices/{did}/history");
    let (s, v) = get(&srv, &plain, &device).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], json!({"power": true, "battery": 80}), "{v}");
    let (s, v) = get(&srv, &plain, "/v1/enterprise/devices").await;
    assert_eq!(s, 200, "{v}");
    assert!(v["data"][0]["state"].get("pin").is_none(), "{v}");
    let (s, v) = get(&srv, &plain, &history).await;
    assert_eq!(s, 200, "{v}");
    let points: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["point"].as_str().unwrap())
        .collect();
    assert!(!points.contains(&"pin") && points.contains(&"power"), "{v}");
    let (s, v) = get(&srv, &plain, &format!("{history}?point=pin")).await;
    assert_eq!((s, v["meta"]["count"].as_i64()), (200, Some(0)), "{v}");

    let (s, v) = get(&srv, &named, &device).await;
    assert_eq!((s, v["state"]["pin"].as_i64()), (200, Some(1234)), "{v}");
    let (s, v) = get(&srv, &named, &format!("{history}?point=pin")).await;
    assert_eq!((s, v["meta"]["count"].as_i64()), (200, Some(1)), "{v}");
    let (s, v) = srv
        .admin("GET", &format!("/v1/enterprises/{ent}/keys"), None)
        .await;
    assert_eq!(s, 200);
    assert!(
        v.to_string().contains("\"sensitive_points\":[\"pin\"]"),
        "{v}"
    );
}
