//! Data at rest against someone who can write the database but lacks the master key: sealed
//! values bound to their row, and an audit chain that cannot be recomputed without the key.

use crate::support::*;
use rumqttc::{ConnectReturnCode, ConnectionError, Event, Packet};
use sha2::{Digest, Sha256};
use std::process::Command;

async fn open_db(srv: &Server) -> sqlx::SqlitePool {
    let url = format!("sqlite://{}", srv.data().join("rampart.db").display());
    sqlx::SqlitePool::connect(&url).await.unwrap()
}

/// The CONNACK refusal, or `None` when the connection was accepted.
async fn v4_connect(srv: &Server, did: &str, secret: &str) -> Option<ConnectReturnCode> {
    let (u, p) = creds(did, secret);
    let (_c, mut el) = rumqttc::AsyncClient::new(v4_options(srv, did, &u, &p), 10);
    v4_until(&mut el, |e| match e {
        Err(ConnectionError::ConnectionRefused(code)) => Some(Some(code)),
        Ok(Event::Incoming(Packet::ConnAck(_))) => Some(None),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn sealed_device_secret_copied_to_another_row_does_not_open() {
    let srv = Server::start().await;
    let (pk, ps) = srv.product(true, false).await;
    // the attacker's own unit, whose secret they know, and someone else's
    let (mine, my_secret, _) = srv.register(&pk, &ps, &format!("hw-{}", nonce())).await;
    let (victim, _, _) = srv.register(&pk, &ps, &format!("hw-{}", nonce())).await;
    let db = open_db(&srv).await;
    sqlx::query(
        "UPDATE devices SET secret_enc = (SELECT secret_enc FROM devices WHERE did = $1), \
         passcode_enc = (SELECT passcode_enc FROM devices WHERE did = $1) WHERE did = $2",
    )
    .bind(&mine)
    .bind(&victim)
    .execute(&db)
    .await
    .unwrap();
    db.close().await;
    // the copied secret does not open in the victim's row: the victim's did with my secret fails
    assert_eq!(
        v4_connect(&srv, &victim, &my_secret).await,
        Some(ConnectReturnCode::BadUserNamePassword)
    );
    // and neither does the copied passcode
    let (s, _) = srv
        .admin("GET", &format!("/v1/devices/{victim}/passcode"), None)
        .await;
    assert!(s >= 500, "{s}");
    // the original stays where it was
    assert_eq!(v4_connect(&srv, &mine, &my_secret).await, None);
}

/// An audit row: id, ts, actor kind and id, tenant, action, target, source ip, outcome, detail.
type Entry = (
    i64,
    i64,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
);

/// The hash of an entry as it was before links were keyed: SHA-256, no key.
fn plain_sha256_link(row: &Entry, prev: &str) -> String {
    let (_, ts, kind, actor, tenant, action, target, ip, outcome, detail) = row;
    let fields =
        serde_json::json!([prev, ts, kind, actor, tenant, action, target, ip, outcome, detail]);
    let mut h = Sha256::new();
    h.update(b"rampart-audit-v1\n");
    h.update(fields.to_string().as_bytes());
    hex::encode(h.finalize())
}

#[tokio::test]
async fn audit_chain_rebuilt_without_the_key_fails_verify_and_names_the_entry() {
    let srv = Server::start().await;
    srv.product(true, false).await;
    srv.product(true, false).await;
    let verify = |srv: &Server| {
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
    let (ok, stdout, stderr) = verify(&srv);
    assert!(
        ok && stdout.contains("audit chain intact"),
        "{stdout} {stderr}"
    );

    // Edit an entry, rebuild every link after it with plain SHA-256 as before, move the head,
    // and remove the database's record that the chain is keyed.
    let srv = srv.restart(&[]).await;
    let db = open_db(&srv).await;
    let rows: Vec<Entry> = sqlx::query_as(
        "SELECT id, ts, actor_kind, actor_id, tenant, action, target, source_ip, outcome, detail \
             FROM audit WHERE hash IS NOT NULL ORDER BY id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let edited = rows
        .iter()
        .find(|r| r.5 == "product.create")
        .expect("a product.create entry")
        .0;
    let mut prev = "0".repeat(64);
    for mut r in rows.clone() {
        if r.0 == edited {
            r.3 = "someone-else".into();
            sqlx::query("UPDATE audit SET actor_id = $1 WHERE id = $2")
                .bind(&r.3)
                .bind(r.0)
                .execute(&db)
                .await
                .unwrap();
        }
        let h = plain_sha256_link(&r, &prev);
        sqlx::query("UPDATE audit SET prev_hash = $1, hash = $2 WHERE id = $3")
            .bind(&prev)
            .bind(&h)
            .bind(r.0)
            .execute(&db)
            .await
            .unwrap();
        prev = h;
    }
    sqlx::query("UPDATE audit_chain SET entries = $1, last_hash = $2 WHERE id = 1")
        .bind(rows.len() as i64)
        .bind(&prev)
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("DELETE FROM settings WHERE key LIKE 'at_rest.%'")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;

    // A restart does not re-link the forgery, and verify names the first entry it cannot check.
    let srv = srv.restart(&[]).await;
    let (ok, stdout, stderr) = verify(&srv);
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains(&format!("broken at entry {}:", rows[0].0)),
        "{stderr}"
    );
    // the removed marker is reported
    let db = open_db(&srv).await;
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM audit WHERE action = 'at_rest.marker_missing'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(n >= 1);
    db.close().await;
}

/// Someone who copies the database files (the database, its WAL and shared memory) finds no
/// secret in clear: product and device secrets, passcodes, factory secrets and factory
/// credentials are sealed; app secrets, admin tokens, user passwords and tokens are kept only as
/// hashes.
#[tokio::test]
async fn no_secret_is_in_the_database_files_in_clear() {
    use serde_json::json;
    let env = crate::accounts::Env::start().await;
    let srv = &env.srv;
    let (did, secret, passcode) = env.device().await;
    let (s, batch) = srv
        .admin(
            "POST",
            &format!("/v1/products/{}/factory-batches", env.pk),
            Some(json!({"count": 3})),
        )
        .await;
    assert_eq!(s, 201, "{batch}");
    let cred = crate::factory::credential_json(srv, &env.pk, 10).await;
    let (s, app) = srv
        .admin(
            "POST",
            "/v1/apps",
            Some(json!({"name": "Second app", "product_keys": [env.pk]})),
        )
        .await;
    assert_eq!(s, 201, "{app}");
    let (s, tok) = srv
        .admin("POST", "/v1/admin/tokens", Some(json!({"name": "ops"})))
        .await;
    assert_eq!(s, 201, "{tok}");
    let (access, refresh) = env.user(&format!("ada-{}@example.com", nonce())).await;
    let (st, v) = env.bind(&access, &did, &passcode).await;
    assert_eq!(st, 201, "{v}");

    let mut secrets: Vec<(&str, String)> = vec![
        ("the product secret", env.ps.clone()),
        ("a device secret", secret),
        ("a passcode", passcode),
        (
            "a factory credential",
            cred["secret"].as_str().unwrap().to_owned(),
        ),
        (
            "an app secret",
            app["app_secret"].as_str().unwrap().to_owned(),
        ),
        ("an admin token", tok["token"].as_str().unwrap().to_owned()),
        ("the admin token", ADMIN.to_owned()),
        ("a password", crate::accounts::PW.to_owned()),
        ("an access token", access),
        ("a refresh token", refresh),
    ];
    for id in batch["identities"].as_array().unwrap() {
        secrets.push((
            "a factory secret",
            id["device_secret"].as_str().unwrap().to_owned(),
        ));
    }
    let mut found = Vec::new();
    for name in ["rampart.db", "rampart.db-wal", "rampart.db-shm"] {
        let Ok(bytes) = std::fs::read(srv.data().join(name)) else {
            continue;
        };
        for (what, s) in &secrets {
            assert!(s.len() >= 6, "{what} is too short to search for");
            if bytes.windows(s.len()).any(|w| w == s.as_bytes()) {
                found.push(format!("{what} in {name}"));
            }
        }
    }
    assert!(found.is_empty(), "in clear: {found:?}");
}
