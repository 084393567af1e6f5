//! The web console in a real browser: `tests/console/console_test.py` drives headless Chromium
//! with Playwright through the console's main flows against the binary (sign in with TOTP, a
//! product with a model, a factory batch, a simulated device coming online with its chart
//! moving and found by a hardware-id prefix (the server's search), a command and its ack,
//! firmware uploaded and rolled out to simulated devices with the campaign's counts followed,
//! pause/resume/abort, the OTA pages as an observer sees them (read-only), an access key, the
//! audit log filtered, the operator's overview following a device live over
//! `GET /v1/admin/events`), checks each page with axe-core and at a phone's size, and saves
//! screenshots under `target/console-artifacts/`.
//!
//! Needs `CONSOLE_PYTHON` (a Python with `playwright`), Chromium (`CONSOLE_CHROMIUM`, default
//! `/usr/bin/chromium`) and axe-core (`npm ci` in `tests/console/`); `.ci/run` sets all three
//! up. Without Python or Chromium the test is skipped with a message; with them, a missing
//! axe-core fails it.

use crate::support::{bin, Server, ADMIN};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

fn browser_tools() -> Option<(String, String)> {
    let Ok(python) = std::env::var("CONSOLE_PYTHON") else {
        eprintln!(
            "skipping the console's browser test: CONSOLE_PYTHON is not set (a Python with \
             playwright; .ci/run sets it up)"
        );
        return None;
    };
    let chromium = std::env::var("CONSOLE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        eprintln!("skipping the console's browser test: no Chromium at {chromium}");
        return None;
    }
    Some((python, chromium))
}

fn console_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console")
}

#[tokio::test(flavor = "multi_thread")]
async fn console_main_flows_in_chromium() {
    let Some((python, chromium)) = browser_tools() else {
        return;
    };
    let axe = console_dir().join("node_modules/axe-core/axe.min.js");
    assert!(
        axe.exists(),
        "{} is missing: run `npm ci --prefix crates/cli/tests/console`",
        axe.display()
    );
    let srv = Server::process().await;
    let (email, password) = ("dev@maker.example", "Quiet-Harbour-Lantern-42");
    let (s, v) = srv
        .admin(
            "POST",
            "/v1/admin/developers",
            Some(json!({"email": email, "password": password})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    // A second developer, invited as an observer during the flows: the OTA pages read-only.
    let (observer, observer_password) = ("watcher@maker.example", "Amber-Ledger-Quietly-77");
    let (s, v) = srv
        .admin(
            "POST",
            "/v1/admin/developers",
            Some(json!({"email": observer, "password": observer_password})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/console-artifacts")
        .to_path_buf();
    let script = console_dir().join("console_test.py");
    let url = srv.url("");
    let mqtt = format!("localhost:{}", srv.mqtt_tls);
    let ca = srv.ca_path();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .env("CONSOLE_URL", url)
            .env("CONSOLE_ADMIN", ADMIN)
            .env("CONSOLE_DEV_EMAIL", email)
            .env("CONSOLE_DEV_PASSWORD", password)
            .env("CONSOLE_OBSERVER_EMAIL", observer)
            .env("CONSOLE_OBSERVER_PASSWORD", observer_password)
            .env("CONSOLE_RAMPART", bin())
            .env("CONSOLE_CA", ca)
            .env("CONSOLE_MQTT", mqtt)
            .env("CONSOLE_CHROMIUM", chromium)
            .env("CONSOLE_AXE", axe)
            .env("CONSOLE_ARTIFACTS", &artifacts)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run the console test")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the console's browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("console flows passed"), "{stdout}");
}
