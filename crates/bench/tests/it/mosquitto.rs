//! Against the Mosquitto broker on 127.0.0.1:1883 (skipped with a message when it is not there).

use crate::{parse, support::check_shape};
use std::time::Duration;

const BROKER: &str = "127.0.0.1:1883";

/// Anonymous runs use client ids `bench-{n}`: two at once would take over each other's sessions.
static BROKER_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn broker_up() -> bool {
    let ok = matches!(
        tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(BROKER)
        )
        .await,
        Ok(Ok(_))
    );
    if !ok {
        eprintln!("skipped: no MQTT broker on {BROKER}");
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_50_v311_and_v5() {
    if !broker_up().await {
        return;
    }
    let _one_at_a_time = BROKER_LOCK.lock().await;
    rampart_bench::set_quiet(true);
    let dir = tempfile::tempdir().unwrap();
    for version in ["3", "5"] {
        let out = dir.path().join(format!("connect-{version}.json"));
        let md = dir.path().join(format!("connect-{version}.md"));
        let cmd = parse(&[
            "connect",
            "--target",
            BROKER,
            "--connections",
            "50",
            "--rate",
            "500",
            "--hold-secs",
            "1",
            "--mqtt-version",
            version,
            "--source-ips",
            "3",
            "--timeout-secs",
            "120",
            "--out",
            out.to_str().unwrap(),
            "--md",
            md.to_str().unwrap(),
        ]);
        let r = rampart_bench::run_report(cmd).await.unwrap();
        assert_eq!(r.connect.ok, 50, "{:?}", r.errors);
        assert_eq!(r.connect.failed, 0);
        assert_eq!(r.connect.latency_ms.count, 50);
        assert!(r.connect.latency_ms.p50.is_some());
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        check_shape(&v);
        assert_eq!(v["scenario"], "connect");
        assert_eq!(v["mqtt_version"], version.parse::<u64>().unwrap());
        assert!(std::fs::read_to_string(&md)
            .unwrap()
            .contains("connect latency"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_10_devices_qos1_with_subscriber() {
    if !broker_up().await {
        return;
    }
    let _one_at_a_time = BROKER_LOCK.lock().await;
    rampart_bench::set_quiet(true);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ingest.json");
    let cmd = parse(&[
        "ingest",
        "--target",
        BROKER,
        "--devices",
        "10",
        "--rate",
        "100",
        "--qos",
        "1",
        "--duration-secs",
        "2",
        "--timeout-secs",
        "120",
        "--out",
        out.to_str().unwrap(),
    ]);
    let r = rampart_bench::run_report(cmd).await.unwrap();
    assert_eq!(r.connect.ok, 10, "{:?}", r.errors);
    let i = r.ingest.as_ref().unwrap();
    assert!(i.sent > 0);
    assert_eq!(i.acked, Some(i.sent), "{:?}", r.errors);
    assert_eq!(i.nacked, Some(0));
    assert!(i.received.is_some());
    assert!(i.e2e_latency_ms.as_ref().unwrap().count > 0);
    assert_eq!(i.ack_latency_ms.as_ref().unwrap().count, i.sent);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    check_shape(&v);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_round_trip_over_mqtt() {
    if !broker_up().await {
        return;
    }
    let _one_at_a_time = BROKER_LOCK.lock().await;
    rampart_bench::set_quiet(true);
    let dir = tempfile::tempdir().unwrap();
    let cmd = parse(&[
        "command",
        "--target",
        BROKER,
        "--devices",
        "10",
        "--commands",
        "20",
        "--rate",
        "100",
        "--mqtt-version",
        "5",
        "--timeout-secs",
        "120",
        "--out",
        dir.path().join("c.json").to_str().unwrap(),
    ]);
    let r = rampart_bench::run_report(cmd).await.unwrap();
    let c = r.command.as_ref().unwrap();
    assert_eq!(c.sent, 20);
    assert_eq!(c.ok, 20, "{:?}", r.errors);
    assert_eq!(c.latency_ms.count, 20);
}

/// `--processes 2` re-executes the binary as `bench worker`; the test binary cannot, so this runs
/// the crate's example front end when cargo has built it (it does for `cargo test`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes() {
    if !broker_up().await {
        return;
    }
    let _one_at_a_time = BROKER_LOCK.lock().await;
    let exe = std::env::current_exe().unwrap();
    let Some(examples) = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|p| p.join("examples").join("rampart-bench"))
        .filter(|p| p.exists())
    else {
        eprintln!("skipped: the rampart-bench example is not built");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.json");
    let status = tokio::process::Command::new(&examples)
        .args([
            "bench",
            "connect",
            "--target",
            BROKER,
            "--connections",
            "60",
            "--hold-secs",
            "1",
            "--processes",
            "2",
            "--source-ips",
            "2",
            "--timeout-secs",
            "120",
            "--out",
            out.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    check_shape(&v);
    assert_eq!(v["processes"], 2);
    assert_eq!(v["connect"]["ok"], 60, "{v}");
    assert_eq!(v["generator"]["processes"], 2);
}
