//! The CLI subcommands, run against the data directory of a running server.

use crate::support::*;
use std::process::Command;

fn run(args: &[&str], data: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(bin())
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `rampart factory issue` into `DATA/{name}`, against the running server's data directory.
pub(crate) fn issue_batch(srv: &Server, pk: &str, count: usize, name: &str) -> std::path::PathBuf {
    let out = srv.data().join(name);
    let count = count.to_string();
    let args = [
        "factory",
        "issue",
        "--product",
        pk,
        "--count",
        &count,
        "--out",
        out.to_str().unwrap(),
    ];
    let (ok, stdout, stderr) = run(&args, srv.data());
    assert!(ok, "{stdout} {stderr}");
    out
}

#[tokio::test]
async fn factory_batch_register_in_device_mode_and_connect() {
    let srv = Server::start().await;
    let (pk, _) = srv.product(false, false).await;
    let out = issue_batch(&srv, &pk, 3, "batch.csv");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let rows: Vec<(String, String)> = text
        .lines()
        .skip(1)
        .map(|l| {
            let (a, b) = l.split_once(',').unwrap();
            (a.to_owned(), b.to_owned())
        })
        .collect();
    assert_eq!(rows.len(), 3);
    // secrets are stored sealed, never in clear
    let db = std::fs::read(srv.data().join("rampart.db")).unwrap();
    let wal = std::fs::read(srv.data().join("rampart.db-wal")).unwrap_or_default();
    for (_, secret) in &rows {
        let needle = secret.as_bytes();
        assert!(!db.windows(needle.len()).any(|w| w == needle));
        assert!(!wal.windows(needle.len()).any(|w| w == needle));
    }

    let (serial, secret) = &rows[0];
    let body = Server::register_body(&pk, serial, "device", secret, now_ms(), &nonce());
    let (s, v) = srv
        .call("POST", "/v1/device/register", None, Some(body))
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(v.get("device_secret").is_none(), "{v}");
    let did = v["did"].as_str().unwrap();
    assert!(v["passcode"].as_str().is_some());

    // a serial signed with another serial's secret: 401
    let body = Server::register_body(&pk, &rows[1].0, "device", &rows[2].1, now_ms(), &nonce());
    let (s, _) = srv
        .call("POST", "/v1/device/register", None, Some(body))
        .await;
    assert_eq!(s, 401);

    // the device connects with its factory secret
    let (u, p) = creds(did, secret);
    let (_c, mut el) = rumqttc::AsyncClient::new(v4_options(&srv, did, &u, &p), 10);
    v4_until(&mut el, |e| match e {
        Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a))) => Some(a.code),
        _ => None,
    })
    .await;
    srv.wait_state(did, |v| v["online"] == true).await;
}

#[tokio::test]
async fn factory_allow_and_product_create_from_files() {
    let srv = Server::start().await;
    let model = srv.data().join("model.json");
    std::fs::write(
        &model,
        r#"{"name":"Plug","identity":{"dynamic_registration":true,"allowlist":true},"report_limit_per_min":60,
            "datapoints":[{"name":"power","type":"bool","writable":true}]}"#,
    )
    .unwrap();
    let (ok, stdout, stderr) = run(
        &["product", "create", "--model", model.to_str().unwrap()],
        srv.data(),
    );
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let pk = v["product_key"].as_str().unwrap();
    let ps = v["product_secret"].as_str().unwrap();
    let ids = srv.data().join("ids.txt");
    std::fs::write(&ids, "# MACs\nAA:BB:CC:00:00:01\nAA:BB:CC:00:00:02\n\n").unwrap();
    let (ok, stdout, stderr) = run(
        &[
            "factory",
            "allow",
            "--product",
            pk,
            "--file",
            ids.to_str().unwrap(),
        ],
        srv.data(),
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("2 new of 2"), "{stdout}");
    srv.register(pk, ps, "AA:BB:CC:00:00:02").await;
    let body = Server::register_body(pk, "AA:BB:CC:00:00:03", "product", ps, now_ms(), &nonce());
    let (s, _) = srv
        .call("POST", "/v1/device/register", None, Some(body))
        .await;
    assert_eq!(s, 403);

    // a bad model file is a clear error, not a crash
    std::fs::write(
        &model,
        r#"{"name":"x","datapoints":[{"name":"a","type":"float"}]}"#,
    )
    .unwrap();
    let (ok, _, stderr) = run(
        &["product", "create", "--model", model.to_str().unwrap()],
        srv.data(),
    );
    assert!(!ok);
    assert!(stderr.contains("min and max"), "{stderr}");
}

#[test]
fn config_generate_prints_defaults() {
    let out = Command::new(bin())
        .args(["config", "generate"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("tls_listen = \"0.0.0.0:8883\""), "{text}");
    assert!(text.contains("listen = \"0.0.0.0:8443\""), "{text}");
    assert!(text.contains("allow_unencrypted = false"), "{text}");
    assert!(
        text.contains("[mqtt.secure_session]")
            && text.contains("rekey_messages = 65536")
            && text.contains("rekey_secs = 3600"),
        "{text}"
    );
    assert!(
        text.contains("[events]") && text.contains("listen = \"0.0.0.0:2017\""),
        "{text}"
    );
}

/// `webhooks.ca_file` is read by `serve` only: a bad path does not break `product create`, and
/// `serve` refuses to start naming it.
#[tokio::test]
async fn a_bad_webhook_ca_file_breaks_only_serve() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.json");
    std::fs::write(
        &model,
        r#"{"name":"Plug","datapoints":[{"name":"power","type":"bool","writable":true}]}"#,
    )
    .unwrap();
    let data = dir.path().join("data");
    // Only `serve` makes a data directory; a command finds none there yet.
    let out = Command::new(bin())
        .args(["product", "create", "--model", model.to_str().unwrap()])
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a Rampart data directory"), "{stderr}");
    assert!(!data.exists(), "a command made the data directory");
    let mut first = serve_on_free_ports()
        .arg("--data")
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !data.join("listeners.json").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let out = Command::new(bin())
        .args(["product", "create", "--model", model.to_str().unwrap()])
        .arg("--data")
        .arg(&data)
        .env("RAMPART_WEBHOOKS__CA_FILE", "/nonexistent/ca.pem")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["product_key"].as_str().unwrap().len(), 16);
    let out = serve_on_free_ports()
        .arg("--data")
        .arg(&data)
        .env("RAMPART_WEBHOOKS__CA_FILE", "/nonexistent/ca.pem")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("webhooks.ca_file /nonexistent/ca.pem"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn unknown_config_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[mqtt]\nno_such_option = 1\n").unwrap();
    let out = Command::new(bin())
        .args([
            "serve",
            "--config",
            cfg.to_str().unwrap(),
            "--data",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_such_option"));
}

#[tokio::test]
async fn simulator_registers_reports_and_answers_commands() {
    let srv = Server::start().await;
    let (pk, _) = srv.product(false, false).await;
    let batch = issue_batch(&srv, &pk, 3, "sim.csv");
    let model = srv.data().join("sim-model.json");
    std::fs::write(
        &model,
        r#"{"name":"x","datapoints":[{"name":"power","type":"bool","writable":true},
            {"name":"mode","type":"enum","values":["auto","cool"],"writable":true},
            {"name":"level","type":"int","min":0,"max":100,"step":5,"writable":true},
            {"name":"temp","type":"float","min":-40,"max":85,"step":0.5}]}"#,
    )
    .unwrap();
    let mut sim = tokio::process::Command::new(bin())
        .args([
            "device",
            "simulate",
            "--server",
            &format!("localhost:{}", srv.mqtt_tls),
        ])
        .arg("--ca")
        .arg(srv.ca_path())
        .arg("--batch")
        .arg(&batch)
        .args([
            "--count",
            "2",
            "--interval-ms",
            "300",
            "--duration-s",
            "20",
            "--api",
            &srv.url(""),
        ])
        .arg("--model")
        .arg(&model)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // both simulated devices register, connect and report
    let dids = loop {
        let (_, v) = srv
            .admin("GET", &format!("/v1/devices?product_key={pk}"), None)
            .await;
        let online: Vec<String> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["online"] == true)
            .map(|d| d["did"].as_str().unwrap().to_owned())
            .collect();
        if online.len() == 2 {
            break online;
        }
        assert!(sim.try_wait().unwrap().is_none(), "simulator exited early");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let did = &dids[0];
    srv.wait_state(did, |v| v["state"]["temp"].is_number())
        .await;
    // a command is applied, acknowledged and reported back
    let (s, v) = srv
        .admin(
            "POST",
            &format!("/v1/devices/{did}/commands"),
            Some(serde_json::json!({"set": {"level": 35}})),
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")), "{v}");
    srv.wait_state(did, |v| v["state"]["level"] == 35).await;
    sim.kill().await.unwrap();
}

#[tokio::test]
async fn first_start_prints_admin_token_once_and_keeps_keys_private() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        Command::new(bin())
            .args([
                "serve",
                "--mqtt-tls-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
                "--events-listen",
                "127.0.0.1:0",
                "--data",
            ])
            .arg(dir.path())
            .env_remove("RAMPART_ADMIN_TOKEN")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    // read stdout until the fingerprint line, which comes after the token line
    let lines_until_fingerprint = |child: &mut std::process::Child| -> Vec<String> {
        let out = child.stdout.take().unwrap();
        let mut lines = Vec::new();
        for line in BufReader::new(out).lines() {
            let line = line.unwrap();
            let done = line.contains("SHA-256 fingerprint");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    };
    let mut first = start();
    let lines = lines_until_fingerprint(&mut first);
    let token = lines
        .iter()
        .find_map(|l| {
            l.strip_prefix("bootstrap admin token (shown once; only its hash is stored): ")
        })
        .unwrap_or_else(|| panic!("no token in {lines:?}"))
        .to_owned();
    let fp = lines.last().unwrap().rsplit(' ').next().unwrap().to_owned();
    assert_eq!(fp.split(':').count(), 32, "{fp}");
    for f in ["master.key", "tls/key.pem"] {
        let mode = std::fs::metadata(dir.path().join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    // the token works; it is not stored in clear
    let v: serde_json::Value = loop {
        if let Ok(t) = std::fs::read_to_string(dir.path().join("listeners.json")) {
            break serde_json::from_str(&t).unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let port = v["http"]
        .as_str()
        .unwrap()
        .rsplit_once(':')
        .unwrap()
        .1
        .to_owned();
    let pem = std::fs::read(dir.path().join("tls/cert.pem")).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let resp = http
        .get(format!("https://localhost:{port}/v1/products"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // every file of the data directory is private, every folder too
    let private = |root: &std::path::Path| {
        let mut modes = Vec::new();
        let mut folders = vec![root.to_path_buf()];
        while let Some(f) = folders.pop() {
            for e in std::fs::read_dir(&f).unwrap().flatten() {
                let meta = e.metadata().unwrap();
                if meta.is_dir() {
                    folders.push(e.path());
                }
                modes.push((e.path(), meta.is_dir(), meta.permissions().mode() & 0o777));
            }
        }
        modes
    };
    let modes = private(dir.path());
    for name in ["rampart.db", "listeners.json", "tls/cert.pem", "tls"] {
        assert!(
            modes.iter().any(|(p, _, _)| *p == dir.path().join(name)),
            "{name} missing: {modes:?}"
        );
    }
    for (path, is_dir, mode) in &modes {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{}", path.display());
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let db = std::fs::read(dir.path().join("rampart.db")).unwrap();
    let wal = std::fs::read(dir.path().join("rampart.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "token stored in clear"
        );
    }
    // a second start neither prints a token nor changes the certificate, and makes private
    // again what was opened up meanwhile
    for (name, mode) in [
        ("rampart.db", 0o644),
        ("tls/cert.pem", 0o644),
        ("tls", 0o755),
    ] {
        std::fs::set_permissions(dir.path().join(name), std::fs::Permissions::from_mode(mode))
            .unwrap();
    }
    let mut second = start();
    let lines = lines_until_fingerprint(&mut second);
    second.kill().unwrap();
    second.wait().unwrap();
    for (path, is_dir, mode) in private(dir.path()) {
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{}", path.display());
    }
    assert!(
        !lines.iter().any(|l| l.contains("admin token")),
        "{lines:?}"
    );
    assert!(lines.last().unwrap().ends_with(&fp));
    // a world-readable master key is refused
    std::fs::set_permissions(
        dir.path().join("master.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["serve", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
}

/// Log lines written to a file (anything but a terminal) carry no ANSI colour codes, and a
/// client that names the server by IP address in TLS's SNI (mosquitto_pub does) adds no warning.
#[tokio::test]
async fn logs_written_to_a_file_are_plain_and_quiet_about_ip_sni() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("rampart.log");
    let data = dir.path().join("data");
    let mut child = serve_on_free_ports()
        .arg("--data")
        .arg(&data)
        .env_remove("RUST_LOG") // the configured level (info) and its defaults
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !data.join("listeners.json").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let listeners: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("listeners.json")).unwrap())
            .unwrap();
    let tls_port = listeners["mqtt_tls"]
        .as_str()
        .unwrap()
        .rsplit_once(':')
        .unwrap()
        .1
        .to_owned();
    // A TLS handshake naming 127.0.0.1 (the CONNECT is then refused: no such device).
    let sni_checked = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &tls_port,
            "-V",
            "mqttv311",
            "--cafile",
        ])
        .arg(data.join("tls/cert.pem"))
        .args(["--insecure", "-i", "nobody", "-u", "nobody", "-P", "x"])
        .args(["-t", "dev/nobody/up", "-m", "{}"])
        .output()
        .is_ok();
    if !sni_checked {
        eprintln!("mosquitto_pub is not installed: the SNI part is not checked");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(text.contains("HTTP API listening"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a log file: {text:?}"
    );
    if sni_checked {
        assert!(text.contains("refused"), "the CONNECT left no line: {text}");
        assert!(!text.contains("SNI"), "{text}");
    }
}

/// A second instance on a port already in use fails before it creates or prints anything: no
/// data directory, no master key, no certificate, no admin token on stdout.
#[tokio::test]
async fn a_start_that_cannot_bind_changes_nothing() {
    let first = Server::process().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("second");
    let out = Command::new(bin())
        .args(["serve", "--http-listen"])
        .arg(format!("127.0.0.1:{}", first.http))
        .args([
            "--mqtt-tls-listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--events-listen",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(&data)
        .env_remove("RAMPART_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("http"), "names the listener: {stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "printed nothing");
    assert!(!data.exists(), "the data directory was created");
}

/// A fresh data directory is created private: the start finds nothing to fix.
#[tokio::test]
async fn a_fresh_data_directory_needs_no_permission_fixes() {
    let srv = Server::process_logging(&[]).await;
    let log = srv.log_text();
    assert!(log.contains("HTTP API listening"), "{log}");
    let fixes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("not private") && !l.contains("server.log"))
        .collect();
    assert!(fixes.is_empty(), "{fixes:?}");
}

/// `rampart device explain` names the check a credential fails, from the data directory, and
/// uses nothing up: the credentials it accepted still connect afterwards.
#[tokio::test]
async fn device_explain_names_the_failing_check_and_changes_nothing() {
    let srv = Server::process().await;
    let (_, did, secret) = srv.device().await;
    let explain = |user: &str, pass: &str| {
        run(
            &[
                "device",
                "explain",
                "--did",
                &did,
                "--username",
                user,
                "--password",
                pass,
            ],
            srv.data(),
        )
    };
    // Seconds instead of milliseconds.
    let (u, p) = creds_at(&did, &secret, now_ms() / 1000);
    let (ok, out, err) = explain(&u, &p);
    assert!(!ok, "{out}");
    assert!(out.contains("ok      form"), "{out}");
    assert!(
        out.contains("REFUSED clock window") && out.contains("looks like seconds"),
        "{out}"
    );
    assert!(err.contains("clock_skew"), "{err}");
    // A wrong secret.
    let (u, p) = creds(&did, "not-the-secret");
    let (ok, out, _) = explain(&u, &p);
    assert!(!ok);
    assert!(out.contains("ok      device"), "{out}");
    assert!(
        out.contains("REFUSED proof") && out.contains("wrong signature"),
        "{out}"
    );
    // A static password on a product without the opt-in.
    let (ok, out, _) = explain(&did, &secret);
    assert!(!ok);
    assert!(out.contains("REFUSED static password"), "{out}");
    // Good credentials: accepted, and still usable.
    let (u, p) = creds(&did, &secret);
    let (ok, out, err) = explain(&u, &p);
    assert!(ok, "{out} {err}");
    assert!(out.contains("would be accepted"), "{out}");
    let (_c, mut el) = rumqttc::AsyncClient::new(v4_options(&srv, &did, &u, &p), 10);
    v4_until(&mut el, |e| {
        matches!(e, Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))).then_some(())
    })
    .await;
    // Once used, the same credentials are a replay (once the accepted timestamp is written,
    // which the CONNECT does not wait for).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (ok, out, _) = explain(&u, &p);
        if out.contains("REFUSED fresh timestamp") {
            assert!(!ok);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{out}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
