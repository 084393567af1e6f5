//! Factory credentials: an owner gives a production line a credential with a device budget; the
//! line issues identities with signed requests (signed here by the enterprise API tests' own
//! signer), within the budget; a batch and the credential can be revoked; `rampart factory issue
//! --server` does it from the command line without a data directory.

use crate::enterprise_api::{signed, signed_with_nonce, Key};
use crate::support::*;
use serde_json::json;
use std::process::Command;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// A new credential of `pk`, as its creation answered.
pub(crate) async fn credential_json(srv: &Server, pk: &str, max_devices: u32) -> serde_json::Value {
    let body =
        json!({"name": "line 2", "max_devices": max_devices, "expires_at": now_ms() + DAY_MS});
    let (s, v) = srv
        .admin(
            "POST",
            &format!("/v1/products/{pk}/factory-credentials"),
            Some(body),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["max_devices"], max_devices);
    assert_eq!(v["issued"], 0);
    v
}

async fn credential(srv: &Server, pk: &str, max_devices: u32) -> Key {
    let v = credential_json(srv, pk, max_devices).await;
    Key {
        id: v["credential_id"].as_str().unwrap().into(),
        secret: v["secret"].as_str().unwrap().into(),
    }
}

/// Register a factory serial with its device secret (mode `device`): the status.
async fn register_serial(srv: &Server, pk: &str, serial: &str, secret: &str) -> u16 {
    let body = Server::register_body(pk, serial, "device", secret, now_ms(), &nonce());
    srv.call("POST", "/v1/device/register", None, Some(body))
        .await
        .0
}

#[tokio::test]
async fn a_factory_line_issues_within_its_budget_and_batches_can_be_revoked() {
    let srv = Server::start().await;
    let (pk, _) = srv.product(false, false).await;
    let path = format!("/v1/products/{pk}/factory-credentials");
    // Clear refusals of bad definitions.
    for bad in [
        json!({"name": "x", "max_devices": 0, "expires_at": now_ms() + DAY_MS}),
        json!({"name": "x", "max_devices": 5, "expires_at": now_ms() - 1}),
        json!({"name": "x", "max_devices": 5, "expires_at": now_ms() + 400 * DAY_MS}),
        json!({"name": "", "max_devices": 5, "expires_at": now_ms() + DAY_MS}),
    ] {
        let (s, v) = srv.admin("POST", &path, Some(bad.clone())).await;
        assert_eq!(s, 400, "{bad} -> {v}");
    }
    let key = credential(&srv, &pk, 5).await;

    // Three identities, then three more would pass the budget of five.
    let batches = "/v1/factory/batches";
    let (s, v) = signed(&srv, &key, "POST", batches, Some(&json!({"count": 3}))).await;
    assert_eq!(s, 201, "{v}");
    let batch = v["batch_id"].as_str().unwrap().to_owned();
    let ids = v["identities"].as_array().unwrap().clone();
    assert_eq!(ids.len(), 3);
    let (s, v) = signed(&srv, &key, "POST", batches, Some(&json!({"count": 3}))).await;
    assert_eq!(s, 409, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allows 2 more"),
        "{v}"
    );
    let (_, list) = srv.admin("GET", &path, None).await;
    assert_eq!(list["data"][0]["issued"], 3, "{list}");
    assert!(list["data"][0].get("secret").is_none(), "{list}");

    // Signatures are checked as for access keys: a wrong secret, a replayed nonce, a stale ts.
    let wrong = Key {
        id: key.id.clone(),
        secret: "rfs_not-the-secret".into(),
    };
    let (s, v) = signed(&srv, &wrong, "POST", batches, Some(&json!({"count": 1}))).await;
    assert_error(s, &v, 401, "SIGNATURE_MISMATCH");
    let stranger = Key {
        id: "rfc_unknown".into(),
        secret: key.secret.clone(),
    };
    let (s, v) = signed(&srv, &stranger, "POST", batches, Some(&json!({"count": 1}))).await;
    assert_error(s, &v, 401, "SIGNATURE_MISMATCH");
    let n = nonce();
    let body = json!({"count": 1});
    let (s, _) = signed_with_nonce(&srv, &key, "POST", batches, Some(&body), &n).await;
    assert_eq!(s, 201);
    let (s, v) = signed_with_nonce(&srv, &key, "POST", batches, Some(&body), &n).await;
    assert_error(s, &v, 401, "NONCE_REUSED");
    // A bearer token is no factory credential.
    let (s, v) = srv.admin("POST", batches, Some(json!({"count": 1}))).await;
    assert_eq!(s, 401, "{v}");

    // One identity of the first batch registers; revoking the batch removes the other two.
    let serial = |i: usize| ids[i]["serial"].as_str().unwrap().to_owned();
    let secret = |i: usize| ids[i]["device_secret"].as_str().unwrap().to_owned();
    assert_eq!(
        register_serial(&srv, &pk, &serial(0), &secret(0)).await,
        200
    );
    let revoke = format!("/v1/factory/batches/{batch}/revoke");
    let (s, v) = signed(&srv, &key, "POST", &revoke, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, json!({"batch_id": batch, "revoked": 2, "registered": 1}));
    assert_eq!(
        register_serial(&srv, &pk, &serial(1), &secret(1)).await,
        401
    );
    let (s, v) = srv.admin("POST", &revoke, None).await;
    assert_error(s, &v, 409, "CONFLICT");
    // An unknown batch is 404.
    let (s, _) = srv
        .admin("POST", "/v1/factory/batches/nosuch/revoke", None)
        .await;
    assert_eq!(s, 404);

    // The owner revokes the credential: its requests are refused from then on.
    let (s, v) = srv
        .admin("POST", &format!("{path}/{}/revoke", key.id), None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["revoked_at"].is_i64(), "{v}");
    let (s, v) = signed(&srv, &key, "POST", batches, Some(&json!({"count": 1}))).await;
    assert_error(s, &v, 401, "KEY_DISABLED");

    // Everything is audited, the line's issue under the credential.
    for action in [
        "factory.credential_create",
        "factory.credential_revoke",
        "factory.batch_revoke",
    ] {
        assert_eq!(audit_rows(&srv, action).await.len(), 1, "{action}");
    }
    let issued = audit_rows(&srv, "factory.issue").await;
    assert!(
        issued
            .iter()
            .any(|r| r.actor_kind == "factory" && r.actor_id == key.id),
        "{issued:?}"
    );
    let refused = audit_rows(&srv, "factory.auth").await;
    assert!(refused.len() >= 4, "{refused:?}");
    assert!(!format!("{refused:?}").contains(&key.secret));
}

#[tokio::test]
async fn rampart_factory_issue_with_a_credential_needs_no_data_directory() {
    let srv = Server::start().await;
    let (pk, _) = srv.product(false, false).await;
    let v = credential_json(&srv, &pk, 4).await;
    let dir = tempfile::tempdir().unwrap();
    let cred = dir.path().join("credential.json");
    std::fs::write(&cred, v.to_string()).unwrap();
    let out = dir.path().join("batch.csv");
    let run = |count: &str| {
        Command::new(bin())
            .args(["factory", "issue", "--server", &srv.url(""), "--credential"])
            .arg(&cred)
            .arg("--ca")
            .arg(srv.ca_path())
            .args(["--count", count, "--out"])
            .arg(&out)
            // No data directory anywhere.
            .env("RAMPART_DATA", dir.path().join("none"))
            .output()
            .unwrap()
    };
    let o = run("3");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(&out).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{csv}");
    let (serial, secret) = rows[0].split_once(',').unwrap();
    assert_eq!(register_serial(&srv, &pk, serial, secret).await, 200);
    // Past the budget: a clear error, and no file is rewritten.
    std::fs::remove_file(&out).unwrap();
    let o = run("2");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("409 CONFLICT"), "{err}");
    assert!(!out.exists());
}
