//! The CLI's online commands and `status`, `admin recover` and `serve --log-format`: the built
//! binary run against a live server, its output checked.

use crate::accounts::{Dev, Env};
use crate::commands::fake_device;
use crate::support::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

/// What a run of the binary printed.
struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

/// The binary with `--data` and nothing from this process's environment that would choose a
/// server or a token for it.
fn command(args: &[&str], data: &Path) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(bin());
    c.args(args)
        .arg("--data")
        .arg(data)
        .env_remove("RAMPART_TOKEN")
        .env_remove("RAMPART_URL")
        .env_remove("RAMPART_CONFIG")
        .env_remove("RAMPART_DATA")
        .kill_on_drop(true);
    c
}

async fn run(args: &[&str], data: &Path) -> Out {
    let out = command(args, data).output().await.unwrap();
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `run` with the test's admin token.
async fn admin(args: &[&str], data: &Path) -> Out {
    let mut a = args.to_vec();
    a.extend(["--token", ADMIN]);
    run(&a, data).await
}

/// Audit rows of `action`, newest first, read from the server's SQLite store.
async fn audit_rows(data: &Path, action: &str) -> Vec<rampart_store::AuditRow> {
    let store = rampart_store::Store::open_sqlite(&data.join("rampart.db"))
        .await
        .unwrap();
    let rows = store.list_audit(Some(action), 100).await.unwrap();
    store.close().await;
    rows
}

#[tokio::test]
async fn product_list_show_and_create_through_the_api() {
    let srv = Server::start().await;
    let (pk, _) = srv.product(true, false).await;

    let o = admin(&["product", "list"], srv.data()).await;
    assert!(o.ok, "{}", o.stderr);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert!(lines[0].starts_with("PRODUCT_KEY"), "{}", o.stdout);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&pk) && l.contains("Test lamp")),
        "{}",
        o.stdout
    );

    let o = admin(&["product", "show", &pk], srv.data()).await;
    assert!(o.ok, "{}", o.stderr);
    assert!(o.stdout.contains("name:"), "{}", o.stdout);
    for point in ["power", "mode", "level", "temp"] {
        assert!(
            o.stdout.lines().any(|l| l.starts_with(point)),
            "{point}: {}",
            o.stdout
        );
    }

    // --json answers the server's JSON
    let o = admin(&["product", "show", &pk, "--json"], srv.data()).await;
    assert_eq!(o.json()["product_key"], pk.as_str());

    // with a token, create goes through the API (the secret comes back, as the API answers it)
    let model = srv.data().join("model.json");
    std::fs::write(
        &model,
        r#"{"name":"Plug","identity":{"dynamic_registration":true,"allowlist":false},
            "report_limit_per_min":60,"datapoints":[{"name":"power","type":"bool","writable":true}]}"#,
    )
    .unwrap();
    let o = admin(
        &["product", "create", "--model", model.to_str().unwrap()],
        srv.data(),
    )
    .await;
    assert!(o.ok, "{}", o.stderr);
    let new_pk = o.json()["product_key"].as_str().unwrap().to_owned();
    assert!(o.json()["product_secret"].is_string());
    let (s, v) = srv
        .admin("GET", &format!("/v1/products/{new_pk}"), None)
        .await;
    assert_eq!((s, v["name"].as_str()), (200, Some("Plug")), "{v}");
    let rows = audit_rows(srv.data(), "product.create").await;
    assert!(
        rows.iter()
            .any(|r| r.target.as_deref() == Some(&format!("product:{new_pk}"))),
        "{rows:?}"
    );
}

#[tokio::test]
async fn api_errors_print_the_code_and_fail() {
    let srv = Server::start().await;
    let o = admin(&["product", "show", "nosuchproduct0000"], srv.data()).await;
    assert!(!o.ok);
    assert!(o.stderr.contains("404 NOT_FOUND"), "{}", o.stderr);

    let o = run(
        &["product", "list", "--token", "wrong-token-0000000000"],
        srv.data(),
    )
    .await;
    assert!(!o.ok);
    assert!(o.stderr.contains("401 UNAUTHORIZED"), "{}", o.stderr);

    let o = run(&["device", "list"], srv.data()).await;
    assert!(!o.ok);
    assert!(o.stderr.contains("RAMPART_TOKEN"), "{}", o.stderr);

    // the token from the environment, the URL and certificate given explicitly
    let o = command(
        &[
            "product",
            "list",
            "--url",
            &format!("https://localhost:{}", srv.http),
            "--ca",
            srv.ca_path().to_str().unwrap(),
        ],
        Path::new("/nonexistent-rampart-data"),
    )
    .env("RAMPART_TOKEN", ADMIN)
    .output()
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && stdout.starts_with("PRODUCT_KEY"),
        "{stdout} {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[tokio::test]
async fn device_list_show_and_command() {
    let srv = Server::start().await;
    let (pk, did, secret) = srv.device().await;

    let o = admin(&["device", "list", "--product", &pk], srv.data()).await;
    assert!(o.ok, "{}", o.stderr);
    assert!(o.stdout.starts_with("DID"), "{}", o.stdout);
    let row = o.stdout.lines().find(|l| l.starts_with(&did)).unwrap();
    assert!(row.contains(&pk) && row.contains("offline"), "{row}");

    // offline: the server's 409 and a failed exit
    let o = admin(
        &["device", "command", &did, "--set", r#"{"power":true}"#],
        srv.data(),
    )
    .await;
    assert!(!o.ok);
    assert!(o.stderr.contains("409 DEVICE_OFFLINE"), "{}", o.stderr);

    let _dev = fake_device(&srv, &did, &secret, |cmd| {
        if cmd["action"] == "reboot" {
            Some(json!({"id": cmd["id"], "status": "error", "message": "busy"}))
        } else {
            Some(json!({"id": cmd["id"], "status": "ok"}))
        }
    })
    .await;
    srv.wait_state(&did, |v| v["online"] == true).await;
    let o = admin(
        &["device", "command", &did, "--set", r#"{"power":true}"#],
        srv.data(),
    )
    .await;
    assert!(o.ok, "{}", o.stderr);
    assert!(
        o.stdout
            .lines()
            .any(|l| l.starts_with("status:") && l.ends_with("ok")),
        "{}",
        o.stdout
    );
    let o = admin(
        &["device", "command", &did, "--action", "reboot"],
        srv.data(),
    )
    .await;
    assert!(!o.ok);
    assert!(o.stdout.contains("busy"), "{}", o.stdout);

    // --set and --action together, or neither: refused before any call
    let o = admin(
        &[
            "device", "command", &did, "--set", "{}", "--action", "reboot",
        ],
        srv.data(),
    )
    .await;
    assert!(!o.ok);
    let o = admin(&["device", "command", &did, "--set", "[1]"], srv.data()).await;
    assert!(!o.ok);
    assert!(o.stderr.contains("JSON object"), "{}", o.stderr);

    let o = admin(&["device", "show", &did], srv.data()).await;
    assert!(o.ok, "{}", o.stderr);
    assert!(
        o.stdout
            .lines()
            .any(|l| l.starts_with("status:") && l.ends_with("online")),
        "{}",
        o.stdout
    );
    let o = admin(&["device", "show", &did, "--json"], srv.data()).await;
    assert_eq!(o.json()["did"], did.as_str());
}

#[tokio::test]
async fn events_tail_prints_a_users_live_events() {
    let env = Env::start_with(&[]).await;
    let (did, secret, passcode) = env.device().await;
    let (ut, _) = env.user("tail@example.com").await;
    let (s, v) = env.bind(&ut, &did, &passcode).await;
    assert_eq!(s, 201, "{v}");

    let mut child = command(
        &[
            "events", "tail", "--count", "2", "--did", &did, "--token", &ut,
        ],
        env.srv.data(),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // The stream is subscribed once the CLI says it is connected.
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = err.next_line().await.unwrap().unwrap_or_default();
    assert!(line.starts_with("connected"), "{line}");

    let mut dev = Dev::connect(&env.srv, &did, &secret).await;
    dev.report(json!({"power": true})).await;
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines.iter().all(|l| l.contains(&did)), "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("presence") && l.ends_with("online")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("status") && l.ends_with("power=true")),
        "{text}"
    );
}

#[tokio::test]
async fn events_tail_with_an_admin_token_sees_every_device_until_revoked() {
    let srv = Server::start().await;
    let (_, did, secret) = srv.device().await;
    let (s, v) = srv
        .admin("POST", "/v1/admin/tokens", Some(json!({"name": "tail"})))
        .await;
    assert_eq!(s, 201, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    let id = v["id"].as_str().unwrap().to_owned();

    let mut child = command(&["events", "tail", "--token", &token], srv.data())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = err.next_line().await.unwrap().unwrap_or_default();
    assert!(line.starts_with("connected"), "{line}");
    assert!(line.contains("/v1/admin/events"), "{line}");

    let _dev = fake_device(&srv, &did, &secret, |_| None).await;
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = out.next_line().await.unwrap().unwrap();
    assert!(
        line.contains(&did) && line.contains("presence") && line.ends_with("online"),
        "{line}"
    );

    // Revoked, the token loses the stream (checked every few seconds) and the command fails.
    let (s, _) = srv
        .admin("DELETE", &format!("/v1/admin/tokens/{id}"), None)
        .await;
    assert_eq!(s, 200);
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait())
        .await
        .expect("the stream was not closed")
        .unwrap();
    assert!(!status.success());
    let mut rest = String::new();
    while let Ok(Some(l)) = err.next_line().await {
        rest.push_str(&l);
    }
    assert!(rest.contains("revoked"), "{rest}");

    // a WebSocket needs the upgrade; no token: 401
    let (s, v) = srv.admin("GET", "/v1/admin/events", None).await;
    assert_error(s, &v, 426, "UPGRADE_REQUIRED");
    let (s, v) = srv.call("GET", "/v1/admin/events", None, None).await;
    assert_error(s, &v, 401, "UNAUTHORIZED");
}

#[tokio::test]
async fn admin_tokens_create_list_revoke_and_recover() {
    let srv = Server::start().await;
    let o = admin(
        &["admin", "token", "create", "--name", "deploy"],
        srv.data(),
    )
    .await;
    assert!(o.ok, "{}", o.stderr);
    let token = o.stdout.lines().nth(1).unwrap().to_owned();
    assert!(token.starts_with("rpa_"), "{}", o.stdout);

    // the new token is an admin token
    let (s, _) = srv.call("GET", "/v1/products", Some(&token), None).await;
    assert_eq!(s, 200);
    let o = run(&["admin", "token", "list", "--token", &token], srv.data()).await;
    assert!(o.ok, "{}", o.stderr);
    let row = o.stdout.lines().find(|l| l.contains("deploy")).unwrap();
    let id = row.split_whitespace().next().unwrap().to_owned();
    assert!(id.starts_with("atk_"), "{row}");
    assert!(row.contains(&token[token.len() - 4..]), "{row}");
    assert!(!o.stdout.contains(&token), "{}", o.stdout);
    // nor its hash, in JSON
    let o = admin(&["admin", "token", "list", "--json"], srv.data()).await;
    let v = o.json();
    assert_eq!(v["data"].as_array().unwrap().len(), 1, "{v}");
    assert!(v["data"][0].get("token_sha256").is_none(), "{v}");

    // what a named token does is audited under its id, not as the bootstrap token
    let (s, v) = srv
        .call(
            "POST",
            "/v1/products",
            Some(&token),
            Some(json!({"name": "Named"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let body = json!({"email": "named@maker.example", "password": "velvet tundra oxide lantern"});
    let (s, v) = srv
        .call("POST", "/v1/admin/developers", Some(&token), Some(body))
        .await;
    assert_eq!(s, 201, "{v}");
    for action in ["product.create", "developer.create"] {
        let rows = audit_rows(srv.data(), action).await;
        assert_eq!(
            (rows[0].actor_kind.as_str(), rows[0].actor_id.as_str()),
            ("admin", id.as_str()),
            "{action}: {rows:?}"
        );
    }

    // a token made with a named token names it as its maker
    let o = run(
        &[
            "admin", "token", "create", "--name", "second", "--json", "--token", &token,
        ],
        srv.data(),
    )
    .await;
    assert!(o.ok, "{}", o.stderr);
    let second = o.json();
    assert_eq!(second["created_by"], format!("admin:{id}"));
    let second_id = second["id"].as_str().unwrap().to_owned();

    let o = admin(&["admin", "token", "revoke", &id], srv.data()).await;
    assert!(o.ok, "{}", o.stderr);
    assert!(o.stdout.contains(&id), "{}", o.stdout);
    let o = run(
        &[
            "admin",
            "token",
            "revoke",
            &second_id,
            "--token",
            second["token"].as_str().unwrap(),
        ],
        srv.data(),
    )
    .await;
    assert!(o.ok, "{}", o.stderr);
    let (s, _) = srv.call("GET", "/v1/products", Some(&token), None).await;
    assert_eq!(s, 401);
    let o = admin(&["admin", "token", "revoke", &id], srv.data()).await;
    assert!(!o.ok);
    assert!(o.stderr.contains("404 NOT_FOUND"), "{}", o.stderr);

    // recovery from the data directory while the server runs: no token needed
    let o = run(
        &["admin", "recover", "--name", "lost the others"],
        srv.data(),
    )
    .await;
    assert!(o.ok, "{}", o.stderr);
    let recovered = o.stdout.lines().nth(1).unwrap().to_owned();
    let (s, _) = srv
        .call("GET", "/v1/products", Some(&recovered), None)
        .await;
    assert_eq!(s, 200);
    // the bootstrap token still works
    let (s, _) = srv.admin("GET", "/v1/admin/tokens", None).await;
    assert_eq!(s, 200);

    for (action, n) in [
        ("admin_token.create", 2),
        ("admin_token.revoke", 2),
        ("admin_token.recover", 1),
    ] {
        let rows = audit_rows(srv.data(), action).await;
        assert_eq!(rows.len(), n, "{action}: {rows:?}");
    }
    // the second token revoked itself
    let rows = audit_rows(srv.data(), "admin_token.revoke").await;
    assert_eq!(rows[0].actor_id, second_id);
    let rows = audit_rows(srv.data(), "admin_token.recover").await;
    assert_eq!(rows[0].actor_kind, "cli");
    let o = run(&["audit", "verify"], srv.data()).await;
    assert!(o.ok, "{}", o.stderr);
}

#[tokio::test]
async fn status_reads_the_data_directory_and_the_server() {
    let srv = Server::start().await;
    let (_, did, secret) = srv.device().await;
    let _dev = fake_device(&srv, &did, &secret, |_| None).await;
    srv.wait_state(&did, |v| v["online"] == true).await;

    let o = admin(&["status"], srv.data()).await;
    assert!(o.ok, "{}", o.stderr);
    let field = |k: &str| field_of(&o.stdout, k);
    assert_eq!(field("version"), env!("CARGO_PKG_VERSION"));
    assert!(field("listeners").contains(&format!("http 127.0.0.1:{}", srv.http)));
    assert!(field("server").starts_with("answering"), "{}", o.stdout);
    assert_eq!(field("mqtt connections"), "1");
    assert!(field("store").starts_with("sqlite "), "{}", o.stdout);
    assert!(field("store").contains("rampart.db"), "{}", o.stdout);
    assert_eq!(field("products"), "1");
    assert_eq!(field("devices"), "1");

    let o = admin(&["status", "--json"], srv.data()).await;
    let v = o.json();
    assert_eq!(v["answering"], true, "{v}");
    assert!(v["store"]["schema_version"].as_i64().unwrap() >= 16, "{v}");

    // without a token the server still answers its health check; the gauges need one
    let o = run(&["status"], srv.data()).await;
    assert!(o.ok, "{}", o.stderr);
    assert!(o.stdout.contains("unknown (give --token"), "{}", o.stdout);

    // no server at the address: the data directory alone still answers
    let o = admin(&["status", "--url", "https://127.0.0.1:1"], srv.data()).await;
    assert!(o.ok, "{}", o.stderr);
    assert!(
        field_of(&o.stdout, "server").starts_with("not answering"),
        "{}",
        o.stdout
    );
    assert_eq!(field_of(&o.stdout, "devices"), "1");
}

#[tokio::test]
async fn status_reads_the_gauges_from_the_metrics_listener_without_a_token() {
    let srv = Server::start_with(&[("RAMPART_HTTP__METRICS_LISTEN", "127.0.0.1:0")]).await;
    let o = run(&["status"], srv.data()).await;
    assert!(o.ok, "{}", o.stderr);
    assert!(field_of(&o.stdout, "listeners").contains("metrics 127.0.0.1:"));
    assert_eq!(field_of(&o.stdout, "mqtt connections"), "0", "{}", o.stdout);
}

fn field_of(text: &str, k: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{k}:")))
        .unwrap_or_else(|| panic!("{k}: {text}"))
        .trim()
        .to_owned()
}

#[tokio::test]
async fn serve_log_format_json_writes_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = command(
        &[
            "serve",
            "--log-format",
            "json",
            "--mqtt-tls-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--events-listen",
            "",
        ],
        dir.path(),
    )
    .env("RAMPART_ADMIN_TOKEN", ADMIN)
    .env("RUST_LOG", "info")
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = err.next_line().await.unwrap().expect("a log line");
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert!(v["level"].is_string() && v["fields"].is_object(), "{v}");
    child.kill().await.unwrap();

    let o = run(&["serve", "--log-format", "xml"], dir.path()).await;
    assert!(!o.ok);
    assert!(
        o.stderr.contains("pretty") && o.stderr.contains("json"),
        "{}",
        o.stderr
    );
}
