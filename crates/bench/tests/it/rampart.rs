//! Against a Rampart server started inside the test: provisioning through the data directory and
//! the HTTPS API, signed CONNECTs, validated reports, commands through the API.

use crate::parse;
use crate::support::{check_shape, Rampart, ADMIN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_20_devices_over_tls_then_reuse_identities() {
    rampart_bench::set_quiet(true);
    let srv = Rampart::start().await;
    let target = format!("localhost:{}", srv.mqtt_tls);
    let data = srv.data();
    let ca = srv.ca().display().to_string();
    let out = srv.dir.path().join("r.json");
    let run = || {
        parse(&[
            "connect",
            "--target",
            &target,
            "--tls",
            "--ca",
            &ca,
            "--connections",
            "20",
            "--hold-secs",
            "1",
            "--rampart",
            "--data",
            &data,
            "--api",
            &srv.api(),
            "--server-pid",
            &std::process::id().to_string(),
            "--timeout-secs",
            "120",
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let r = rampart_bench::run_report(run()).await.unwrap();
    assert_eq!(r.connect.ok, 20, "{:?} {:?}", r.errors, r.notes);
    assert!(r.tls && r.rampart);
    let reg = r.registration.as_ref().unwrap();
    assert_eq!(reg.devices, 20);
    assert_eq!(reg.failed, 0);
    assert!(reg.rate_per_s.is_some());
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    check_shape(&v);
    assert!(v["server"]["rss_before_kib"].is_u64());

    // The identities file is kept (mode 0600) and reused: no new registration, fresh CONNECT
    // timestamps are accepted again.
    let ids = srv.dir.path().join("bench-identities.csv");
    let text = std::fs::read_to_string(&ids).unwrap();
    assert_eq!(text.lines().count(), 21);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&ids).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let r = rampart_bench::run_report(run()).await.unwrap();
    assert_eq!(r.connect.ok, 20, "{:?}", r.errors);
    let reg = r.registration.as_ref().unwrap();
    assert_eq!((reg.devices, reg.reused), (0, 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_5_through_the_api() {
    rampart_bench::set_quiet(true);
    let srv = Rampart::start().await;
    let target = format!("127.0.0.1:{}", srv.mqtt);
    let data = srv.data();
    // No --api and no --ca: both come from the data directory.
    let cmd = parse(&[
        "command",
        "--target",
        &target,
        "--devices",
        "4",
        "--commands",
        "5",
        "--rate",
        "50",
        "--rampart",
        "--data",
        &data,
        "--admin-token",
        ADMIN,
        "--mqtt-version",
        "5",
        "--timeout-secs",
        "120",
        "--out",
        srv.dir.path().join("c.json").to_str().unwrap(),
    ]);
    let r = rampart_bench::run_report(cmd).await.unwrap();
    assert_eq!(r.connect.ok, 4, "{:?}", r.errors);
    let c = r.command.as_ref().unwrap();
    assert_eq!(c.path, "http");
    assert_eq!((c.sent, c.ok, c.failed), (5, 5, 0), "{:?}", r.errors);
    assert_eq!(c.answered_by_devices, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_reports_are_valid_for_the_bench_model() {
    rampart_bench::set_quiet(true);
    let srv = Rampart::start().await;
    let target = format!("127.0.0.1:{}", srv.mqtt);
    let data = srv.data();
    for version in ["3", "5"] {
        let cmd = parse(&[
            "ingest",
            "--target",
            &target,
            "--devices",
            "5",
            "--rate",
            "50",
            "--qos",
            "1",
            "--duration-secs",
            "1",
            "--rampart",
            "--data",
            &data,
            "--mqtt-version",
            version,
            "--timeout-secs",
            "120",
            "--out",
            srv.dir.path().join("i.json").to_str().unwrap(),
        ]);
        let r = rampart_bench::run_report(cmd).await.unwrap();
        assert_eq!(r.connect.ok, 5, "{:?}", r.errors);
        let i = r.ingest.as_ref().unwrap();
        assert!(i.sent > 0);
        // MQTT 5 would answer an invalid report with PUBACK 0x99: none may come back.
        assert_eq!(i.nacked, Some(0), "{:?}", r.errors);
        assert_eq!(i.acked, Some(i.sent), "{:?}", r.errors);
        assert!(i.e2e_latency_ms.is_none());
        assert!(r.notes.iter().any(|n| n.contains("end-to-end")));
    }
}

/// Provisioning opens the store the server uses: with `store.url` naming a database outside the
/// data directory, the factory identities the bench issues are the server's, so they register.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_follows_store_url() {
    rampart_bench::set_quiet(true);
    let elsewhere = tempfile::tempdir().unwrap();
    let config = elsewhere.path().join("rampart.toml");
    let db = elsewhere.path().join("elsewhere.db");
    std::fs::write(
        &config,
        format!("[store]\nurl = \"sqlite://{}\"\n", db.display()),
    )
    .unwrap();
    let srv = Rampart::start_with(Some(&config)).await;
    let target = format!("127.0.0.1:{}", srv.mqtt);
    let data = srv.data();
    let cmd = parse(&[
        "connect",
        "--target",
        &target,
        "--connections",
        "3",
        "--hold-secs",
        "0",
        "--rampart",
        "--data",
        &data,
        "--config",
        config.to_str().unwrap(),
        "--timeout-secs",
        "120",
        "--out",
        srv.dir.path().join("s.json").to_str().unwrap(),
    ]);
    let r = rampart_bench::run_report(cmd).await.unwrap();
    let reg = r.registration.as_ref().unwrap();
    assert_eq!((reg.devices, reg.failed), (3, 0), "{:?}", r.errors);
    assert_eq!(r.connect.ok, 3, "{:?}", r.errors);
    assert!(
        !srv.dir.path().join("rampart.db").exists(),
        "nothing was written to the default store"
    );
}

/// `--noise`: each device opens a secure session (frame 0 and the Noise handshake) on the
/// plain-TCP listener before its CONNECT; reports are acknowledged through it. (A plain MQTT
/// server would refuse the first frame, whose first byte is 0x00.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_over_the_secure_session_layer() {
    rampart_bench::set_quiet(true);
    let srv = Rampart::start().await;
    let target = format!("127.0.0.1:{}", srv.mqtt);
    let data = srv.data();
    let cmd = parse(&[
        "ingest",
        "--target",
        &target,
        "--noise",
        "--devices",
        "5",
        "--rate",
        "50",
        "--qos",
        "1",
        "--duration-secs",
        "1",
        "--rampart",
        "--data",
        &data,
        "--mqtt-version",
        "5",
        "--timeout-secs",
        "120",
        "--out",
        srv.dir.path().join("n.json").to_str().unwrap(),
    ]);
    let r = rampart_bench::run_report(cmd).await.unwrap();
    assert!(r.noise);
    assert_eq!(r.connect.ok, 5, "{:?}", r.errors);
    let i = r.ingest.as_ref().unwrap();
    assert!(i.sent > 0);
    assert_eq!(i.nacked, Some(0), "{:?}", r.errors);
    assert_eq!(i.acked, Some(i.sent), "{:?}", r.errors);
    // Without --rampart there are no device secrets to key the sessions with.
    let cmd = parse(&[
        "connect",
        "--target",
        &target,
        "--noise",
        "--connections",
        "1",
    ]);
    assert!(rampart_bench::run_report(cmd).await.is_err());
}

/// A client CA file as `openssl req -x509 -newkey ec ... -keyout` writes it: the certificate and
/// its PKCS#8 key.
fn client_ca_file(dir: &std::path::Path) -> std::path::PathBuf {
    use rcgen::{CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "bench test client CA");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = p.self_signed(&key).unwrap();
    let path = dir.join("client-ca.pem");
    std::fs::write(&path, format!("{}{}", ca.pem(), key.serialize_pem())).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_certificate_devices_over_mutual_tls() {
    rampart_bench::set_quiet(true);
    let srv = Rampart::start().await;
    let target = format!("localhost:{}", srv.mqtt_tls);
    let data = srv.data();
    let ca = srv.ca().display().to_string();
    let client_ca = client_ca_file(srv.dir.path());
    let run = |version: &'static str| {
        parse(&[
            "connect",
            "--target",
            &target,
            "--tls",
            "--ca",
            &ca,
            "--client-ca",
            client_ca.to_str().unwrap(),
            "--mqtt-version",
            version,
            "--connections",
            "12",
            "--hold-secs",
            "1",
            "--rampart",
            "--data",
            &data,
            "--api",
            &srv.api(),
            "--timeout-secs",
            "120",
        ])
    };
    let r = rampart_bench::run_report(run("3")).await.unwrap();
    assert_eq!(r.connect.ok, 12, "{:?} {:?}", r.errors, r.notes);
    assert!(r.tls && r.client_cert && r.rampart);
    let reg = r.registration.as_ref().unwrap();
    assert_eq!((reg.devices, reg.failed), (12, 0));

    // The cache holds did and hardware id, in a file of its own; MQTT 5 reuses it.
    let ids = srv.dir.path().join("bench-cert-identities.csv");
    let text = std::fs::read_to_string(&ids).unwrap();
    assert!(text.starts_with("# rampart-bench cert-identities product="));
    let (did, hw) = text.lines().nth(1).unwrap().split_once(',').unwrap();
    let r = rampart_bench::run_report(run("5")).await.unwrap();
    assert_eq!(r.connect.ok, 12, "{:?}", r.errors);
    let reg = r.registration.as_ref().unwrap();
    assert_eq!((reg.devices, reg.reused), (0, 12));

    // The devices are certificate devices, and the server recorded the certificate they
    // connected with (no password was sent).
    let http = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(srv.ca()).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let v: serde_json::Value = http
        .get(format!("{}/v1/devices/{did}", srv.api()))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["hardware_id"], hw, "{v}");
    assert_eq!(
        v["certificate"]["sha256"].as_str().unwrap().len(),
        64,
        "{v}"
    );
}
