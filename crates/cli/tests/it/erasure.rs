//! Erasure and export (GDPR): a manufacturer deletes a device, an end user downloads and then
//! deletes their account; afterwards neither the API nor the raw database files know them.

use crate::accounts::{Dev, Env, PW};
use crate::mqtt::raw;
use crate::support::*;
use serde_json::{json, Value};
use std::time::Duration;

/// Whether any of the server's SQLite files (database, WAL, shared memory) holds `needle`.
fn database_files_hold(srv: &Server, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for name in ["rampart.db", "rampart.db-wal", "rampart.db-shm"] {
        let Ok(bytes) = std::fs::read(srv.data().join(name)) else {
            continue;
        };
        if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            found.push(name.to_owned());
        }
    }
    found
}

/// Every audit row (newest first), read from the server's SQLite store.
async fn all_audit(srv: &Server) -> Vec<rampart_store::AuditRow> {
    let store = rampart_store::Store::open_sqlite(&srv.data().join("rampart.db"))
        .await
        .unwrap();
    let rows = store.list_audit(None, 10_000).await.unwrap();
    store.close().await;
    rows
}

/// A device with history, an owner, a guest and a live MQTT 5 session is deleted: the session
/// ends with DISCONNECT 0x98, the device can no longer connect, every route answers 404 for it,
/// its bindings are gone for both users, the answer counts what went, and the audit entry says so.
#[tokio::test]
async fn deleting_a_device_ends_its_session_and_leaves_nothing_behind() {
    use tokio::io::AsyncWriteExt;
    let env = Env::start().await;
    let srv = &env.srv;
    let (did, secret, passcode) = env.device().await;
    let (ada, _) = env.user(&format!("ada-{}@example.com", nonce())).await;
    let bob_email = format!("bob-{}@example.com", nonce());
    let (bob, _) = env.user(&bob_email).await;
    let (st, v) = env.bind(&ada, &did, &passcode).await;
    assert_eq!(st, 201, "{v}");
    env.share(&ada, &did, &bob_email, &bob, "guest").await;

    let mut s = raw::session(srv, &did, &secret, 30).await;
    for (pid, temp) in [(1u16, "-39.5"), (2, "-38.5"), (3, "-37.5")] {
        let up = format!("dev/{did}/up");
        let body = format!("{{\"temp\":{temp}}}");
        s.write_all(&raw::publish_qos1_v5(&up, pid, body.as_bytes()))
            .await
            .unwrap();
        let ack = raw::read_packet(&mut s).await;
        assert_eq!(ack[0], 0x40, "PUBACK expected: {ack:02x?}");
    }
    let (st, v) = srv
        .admin("GET", &format!("/v1/devices/{did}/history"), None)
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"].as_array().map(Vec::len), Some(3), "{v}");

    let (st, v) = srv
        .admin("DELETE", &format!("/v1/devices/{did}"), None)
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v,
        json!({"did": did, "deleted": {"history": 3, "bindings": 2, "shares": 1,
            "commands": 0, "other": 0}})
    );
    raw::expect_disconnect(&mut s, 0x98).await;

    // Gone for everyone, on every route, and it cannot come back by connecting.
    for path in [
        format!("/v1/devices/{did}"),
        format!("/v1/devices/{did}/history"),
    ] {
        let (st, v) = srv.admin("GET", &path, None).await;
        assert_error(st, &v, 404, "NOT_FOUND");
    }
    let (st, v) = srv
        .admin("DELETE", &format!("/v1/devices/{did}"), None)
        .await;
    assert_error(st, &v, 404, "NOT_FOUND");
    for token in [&ada, &bob] {
        let (st, v) = env.call("GET", "/v1/bindings", Some(token), None).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["data"], json!([]), "{v}");
    }
    let (u, p) = creds(&did, &secret);
    let (_, connack) = raw::connect_with(srv, &raw::connect_v5_keepalive(&did, &u, &p, 30)).await;
    assert_ne!(raw::body(&connack)[1], 0x00, "{connack:02x?}");

    let rows = env.audit("device.delete").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].target.as_deref(),
        Some(format!("device:{did}").as_str())
    );
    assert!(
        rows[0]
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("history=3 bindings=2 shares=1")),
        "{:?}",
        rows[0].detail
    );
    // Its reported values are not in the database files any more, not even in free pages.
    assert_eq!(database_files_hold(srv, "-39.5"), Vec::<String>::new());
}

/// Only a manager of the product deletes a device: a user bound to it (even its owner) gets 401
/// on the manufacturer route, and an unknown device is a 404.
#[tokio::test]
async fn only_a_manager_deletes_a_device() {
    let env = Env::start().await;
    let (did, _, passcode) = env.device().await;
    let (ada, _) = env.user(&format!("ada-{}@example.com", nonce())).await;
    let (st, v) = env.bind(&ada, &did, &passcode).await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = env
        .call("DELETE", &format!("/v1/devices/{did}"), Some(&ada), None)
        .await;
    assert_eq!(st, 401, "{v}");
    let (st, v) = env
        .srv
        .admin("GET", &format!("/v1/devices/{did}"), None)
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = env
        .srv
        .admin("DELETE", "/v1/devices/nosuchdevice000000000", None)
        .await;
    assert_error(st, &v, 404, "NOT_FOUND");
}

/// A user downloads everything held about them, then deletes the account: a wrong password is
/// refused (and changes nothing), the right one erases it. Afterwards their token and their
/// login fail as for an unknown user, the guest they shared with has lost access, the device
/// can be bound again, the audit keeps only the user's id, and neither the database files nor
/// the outbox hold their e-mail.
#[tokio::test]
async fn a_user_exports_then_erases_their_account() {
    let env = Env::start().await;
    let srv = &env.srv;
    let (did, secret, passcode) = env.device().await;
    let ada_email = format!("ada-{}@example.com", nonce());
    let (ada, _) = env.user(&ada_email).await;
    let bob_email = format!("bob-{}@example.com", nonce());
    let (bob, _) = env.user(&bob_email).await;
    let (st, v) = env.bind(&ada, &did, &passcode).await;
    assert_eq!(st, 201, "{v}");
    let share_id = env.share(&ada, &did, &bob_email, &bob, "guest").await;
    let mut dev = Dev::connect(srv, &did, &secret).await;
    dev.report(json!({"temp": 21.5, "power": true})).await;

    let (st, me) = env.call("GET", "/v1/users/me", Some(&ada), None).await;
    assert_eq!(st, 200, "{me}");
    let user_id = me["user_id"].as_str().unwrap().to_owned();
    let (st, x) = env
        .call("GET", "/v1/users/me/export", Some(&ada), None)
        .await;
    assert_eq!(st, 200, "{x}");
    assert_eq!(x["user"]["email"], ada_email.as_str(), "{x}");
    assert_eq!(x["user"]["user_id"], user_id.as_str(), "{x}");
    assert_eq!(x["bindings"][0]["did"], did.as_str(), "{x}");
    assert_eq!(x["bindings"][0]["role"], "owner", "{x}");
    assert_eq!(x["shares"][0]["share_id"], share_id.as_str(), "{x}");
    assert!(!x["sessions"].as_array().unwrap().is_empty(), "{x}");
    assert_eq!(x["history"][0]["did"], did.as_str(), "{x}");
    let points: Vec<&str> = x["history"][0]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["point"].as_str())
        .collect();
    assert!(points.contains(&"temp") && points.contains(&"power"), "{x}");
    assert!(x["exported_at"].as_i64().unwrap() > 0);
    assert_eq!(env.audit("user.export").await.len(), 1);

    // A wrong password is refused and erases nothing.
    let (st, v) = env
        .call(
            "DELETE",
            "/v1/users/me",
            Some(&ada),
            Some(json!({"password": "not the password at all"})),
        )
        .await;
    assert_error(st, &v, 403, "FORBIDDEN");
    let (st, _) = env.call("GET", "/v1/users/me", Some(&ada), None).await;
    assert_eq!(st, 200);

    let (st, v) = env
        .call(
            "DELETE",
            "/v1/users/me",
            Some(&ada),
            Some(json!({"password": PW})),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    assert_eq!(v["user_id"], user_id.as_str(), "{v}");
    assert_eq!(v["deleted"]["bindings"], 2, "{v}");
    assert_eq!(v["deleted"]["shares"], 1, "{v}");
    assert!(v["deleted"]["sessions"].as_u64().unwrap() >= 1, "{v}");

    // Unknown from now on: the token, the login (the same answer as a stranger's).
    let (st, v) = env.call("GET", "/v1/users/me", Some(&ada), None).await;
    assert_eq!(st, 401, "{v}");
    let (st_ada, v_ada) = env.try_login(&ada_email, PW).await;
    let (st_none, v_none) = env
        .try_login(&format!("nobody-{}@example.com", nonce()), PW)
        .await;
    assert_eq!(
        (st_ada, &v_ada["error"]["code"]),
        (st_none, &v_none["error"]["code"])
    );
    // The guest lost access with the share; the device is free to bind again.
    let (st, v) = env
        .call("GET", &format!("/v1/devices/{did}"), Some(&bob), None)
        .await;
    assert_eq!(st, 404, "{v}");
    let (st, v) = env.bind(&bob, &did, &passcode).await;
    assert_eq!(st, 201, "{v}");

    let rows = env.audit("user.delete").await;
    assert_eq!(rows.len(), 2, "one refused, one done");
    assert_eq!(
        (rows[0].outcome.as_str(), rows[0].actor_id.as_str()),
        ("ok", user_id.as_str())
    );
    for r in all_audit(srv).await {
        let text = format!("{r:?}");
        assert!(
            !text.contains(&ada_email),
            "audit row names the user: {text}"
        );
    }
    assert_eq!(database_files_hold(srv, &ada_email), Vec::<String>::new());
    assert!(env.outbox(&ada_email, "activate").is_empty());
}

/// Without a password, only a fresh login may delete its account.
#[tokio::test]
async fn an_old_login_needs_the_password_to_erase() {
    let env = Env::start().await;
    let (ada, _) = env.user(&format!("ada-{}@example.com", nonce())).await;
    env.srv.advance(Duration::from_secs(6 * 60));
    let (st, v) = env.call("DELETE", "/v1/users/me", Some(&ada), None).await;
    assert_error(st, &v, 403, "FORBIDDEN");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("password"),
        "{v}"
    );
    let (st, v) = env
        .call(
            "DELETE",
            "/v1/users/me",
            Some(&ada),
            Some(json!({"password": PW})),
        )
        .await;
    assert_eq!(st, 202, "{v}");

    let (bob, _) = env.user(&format!("bob-{}@example.com", nonce())).await;
    let (st, v) = env.call("DELETE", "/v1/users/me", Some(&bob), None).await;
    assert_eq!(st, 202, "a login of a minute ago is fresh: {v}");
    let (st, v): (u16, Value) = env
        .call(
            "DELETE",
            "/v1/users/me",
            Some(&bob),
            Some(json!({"pass": "x"})),
        )
        .await;
    assert_eq!(st, 401, "{v}");
}

/// A product is deleted with its devices: a live device is disconnected (0x98) and refused from
/// then on, its user loses the binding, the product, its devices and its factory batch are gone,
/// another product's device keeps working, and the audit entry counts what went.
#[tokio::test]
async fn deleting_a_product_takes_its_devices_and_factory_identities() {
    let env = Env::start().await;
    let srv = &env.srv;
    let (did, secret, passcode) = env.device().await;
    let (other_did, _, _) = env.device().await;
    let (ada, _) = env.user(&format!("ada-{}@example.com", nonce())).await;
    let (st, v) = env.bind(&ada, &did, &passcode).await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = srv
        .admin(
            "POST",
            &format!("/v1/products/{}/factory-batches", env.pk),
            Some(json!({"count": 3})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    // An allowlist file held by this product only, and the same bytes held by another product.
    let list = format!("hardware_id\nAA:BB:CC:{:02X}:00:01\n", nonce().len()).into_bytes();
    let own = format!("hardware_id\n{}\n", nonce()).into_bytes();
    let (st, v) = crate::uploads::upload(srv, &env.pk, Some("text/csv"), own, Some(ADMIN)).await;
    assert_eq!(st, 200, "{v}");
    let own_file = srv
        .data()
        .join("uploads/sha256")
        .join(&v["sha256"].as_str().unwrap()[..2])
        .join(v["sha256"].as_str().unwrap());
    assert!(own_file.exists());
    let (st, v) =
        crate::uploads::upload(srv, &env.pk, Some("text/csv"), list.clone(), Some(ADMIN)).await;
    assert_eq!(st, 200, "{v}");
    let shared_hash = v["sha256"].as_str().unwrap().to_owned();
    let (pk2, ps2) = srv.product(true, false).await;
    let (st, v) = crate::uploads::upload(srv, &pk2, Some("text/csv"), list, Some(ADMIN)).await;
    assert_eq!(st, 200, "{v}");
    let (keep, keep_secret, _) = srv.register(&pk2, &ps2, &format!("hw-{}", nonce())).await;
    let mut s = raw::session(srv, &did, &secret, 30).await;

    let (st, v) = srv
        .admin("DELETE", &format!("/v1/products/{}", env.pk), None)
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["product_key"], env.pk.as_str(), "{v}");
    assert_eq!(v["deleted"]["devices"], 2, "{v}");
    assert_eq!(v["deleted"]["bindings"], 1, "{v}");
    assert_eq!(
        v["deleted"]["factory"], 6,
        "three identities, their batch and two allowlisted ids: {v}"
    );
    raw::expect_disconnect(&mut s, 0x98).await;

    for path in [
        format!("/v1/products/{}", env.pk),
        format!("/v1/devices/{did}"),
        format!("/v1/devices/{other_did}"),
    ] {
        let (st, v) = srv.admin("GET", &path, None).await;
        assert_error(st, &v, 404, "NOT_FOUND");
    }
    let (st, v) = env.call("GET", "/v1/bindings", Some(&ada), None).await;
    assert_eq!((st, &v["data"]), (200, &json!([])), "{v}");
    let (u, p) = creds(&did, &secret);
    let (_, connack) = raw::connect_with(srv, &raw::connect_v5_keepalive(&did, &u, &p, 30)).await;
    assert_ne!(raw::body(&connack)[1], 0x00, "{connack:02x?}");
    let (st, v) = srv
        .admin("DELETE", &format!("/v1/products/{}", env.pk), None)
        .await;
    assert_error(st, &v, 404, "NOT_FOUND");

    // The file only this product held is gone; the one the other product holds too stays.
    assert!(!own_file.exists());
    let shared_file = srv
        .data()
        .join("uploads/sha256")
        .join(&shared_hash[..2])
        .join(&shared_hash);
    assert!(shared_file.exists());

    // The other product is untouched.
    raw::session(srv, &keep, &keep_secret, 30).await;
    let rows = env.audit("product.delete").await;
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0]
            .detail
            .as_deref()
            .is_some_and(|d| d.starts_with("devices=2 ")),
        "{:?}",
        rows[0].detail
    );
}
