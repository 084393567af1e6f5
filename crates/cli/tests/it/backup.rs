//! `rampart backup` while the server runs, and `rampart restore` into a new data directory that
//! holds the same master key: the restored server serves the same devices and users.

use crate::accounts::{Dev, Env, PW};
use crate::support::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

fn rampart(args: &[&str], data: &Path) -> (bool, String) {
    let out = Command::new(bin())
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn holds(bytes: &[u8], needle: &str) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn copy_key(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::copy(from.join("master.key"), to.join("master.key")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            to.join("master.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
}

#[tokio::test]
async fn a_backup_taken_online_restores_a_server_that_serves_the_same_fleet() {
    let env = Env::start().await;
    let (did, secret, passcode) = env.device().await;
    let email = format!("ada-{}@example.com", nonce());
    let (ada, _) = env.user(&email).await;
    let (st, v) = env.bind(&ada, &did, &passcode).await;
    assert_eq!(st, 201, "{v}");
    let mut dev = Dev::connect(&env.srv, &did, &secret).await;
    dev.report(json!({"temp": 23.5})).await;

    // Taken while the server runs and the device stays connected.
    let out_dir = tempfile::tempdir().unwrap();
    let file = out_dir.path().join("fleet.rampart");
    let (ok, text) = rampart(&["backup", "--out", file.to_str().unwrap()], env.srv.data());
    assert!(ok, "{text}");
    assert!(text.contains("backup written to"), "{text}");
    let bytes = std::fs::read(&file).unwrap();
    for clear in [
        email.as_str(),
        env.ps.as_str(),
        secret.as_str(),
        "SQLite format 3",
    ] {
        assert!(
            !holds(&bytes, clear),
            "the backup holds {clear:?} in the clear"
        );
    }
    // Never over an existing file.
    let (ok, text) = rampart(&["backup", "--out", file.to_str().unwrap()], env.srv.data());
    assert!(!ok && text.contains("exists already"), "{text}");

    // Without the key, or with another one: refused, and the directory is left as it was.
    let nokey = tempfile::tempdir().unwrap();
    let (ok, text) = rampart(&["restore", "--in", file.to_str().unwrap()], nokey.path());
    assert!(!ok && text.contains("holds no master.key"), "{text}");
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("master.key"), "11".repeat(32)).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            other.path().join("master.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    let (ok, text) = rampart(&["restore", "--in", file.to_str().unwrap()], other.path());
    assert!(!ok && text.contains("made with master key"), "{text}");
    assert!(!other.path().join("rampart.db").exists());

    // Restored next to the same key: the same device connects with its secret, its history and
    // the user's login and binding are there.
    let restored = tempfile::tempdir().unwrap();
    copy_key(env.srv.data(), restored.path());
    let (ok, text) = rampart(
        &["restore", "--in", file.to_str().unwrap()],
        restored.path(),
    );
    assert!(ok, "{text}");
    let (ok, text) = rampart(
        &["restore", "--in", file.to_str().unwrap()],
        restored.path(),
    );
    assert!(!ok && text.contains("exists already"), "{text}");
    drop(dev);
    let srv2 = Server::start_in(restored, &[]).await;
    let (st, v) = srv2
        .admin("GET", &format!("/v1/devices/{did}/history"), None)
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"][0]["value"], json!(23.5), "{v}");
    let mut dev2 = Dev::connect(&srv2, &did, &secret).await;
    dev2.report(json!({"temp": 24.0})).await;
    let resp = srv2
        .http_client
        .post(srv2.url("/v1/login"))
        .header("X-Rampart-App-Id", &env.app)
        .json(&json!({"username": email, "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let login: Value = resp.json().await.unwrap();
    let token = login["access_token"].as_str().unwrap();
    let resp = srv2
        .http_client
        .get(srv2.url("/v1/bindings"))
        .header("X-Rampart-App-Id", &env.app)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let bindings: Value = resp.json().await.unwrap();
    assert_eq!(bindings["data"][0]["did"], did.as_str(), "{bindings}");
}
