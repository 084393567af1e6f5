//! End-to-end runs of the bench: against the real Mosquitto on 127.0.0.1:1883 when it is there, and
//! against a Rampart server (`rampart_server::App` on a temporary data directory) started inside
//! the test. Nothing here asserts on timing.

mod mosquitto;
mod rampart;
mod support;

use clap::Parser;
use rampart_bench::BenchCmd;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: BenchCmd,
}

/// Parse a bench command line (without the leading `rampart bench`).
pub(crate) fn parse(args: &[&str]) -> BenchCmd {
    Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
        .cmd
}

#[test]
fn cli_accepts_the_documented_forms() {
    for line in [
        "connect --target 127.0.0.1:1883 --connections 10",
        "connect --target h:1 --connections 10 --rate 5 --hold-secs 1 --tls --ca x.pem --mqtt-version 5",
        "connect --target h:1 --connections 10 --tls --ca x.pem --client-ca client-ca.pem",
        "ingest --target h:1 --devices 3 --rate 10 --qos 1 --duration-secs 2 --payload-bytes 100",
        "ingest --target h:1 --devices 3 --rate 10 --qos 0 --duration-secs 2",
        "command --target h:1 --devices 3 --commands 5 --rate 10",
        "connect --target h:1 --connections 1 --rampart --data d --api https://localhost:1 --admin-token t --identities ids.csv",
        "connect --target h:1 --connections 1 --rampart --data d --config rampart.toml",
        "connect --target h:1 --connections 1 --keepalive-secs 5 --server-pid 1 --source-ips 8 --processes 2 --out o.json --md o.md --label x --timeout-secs 9",
    ] {
        let args: Vec<&str> = line.split_whitespace().collect();
        parse(&args);
    }
    for bad in [
        "ingest --target h:1 --devices 3 --rate 10 --qos 2 --duration-secs 2",
        "connect --target h:1 --connections 1 --mqtt-version 4x",
        "connect --target h:1",
        // A client certificate is a TLS matter.
        "connect --target h:1 --connections 1 --client-ca client-ca.pem",
    ] {
        let args: Vec<&str> = bad.split_whitespace().collect();
        assert!(
            Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn report_json_has_the_documented_shape() {
    let r = rampart_bench::Report::default();
    let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    support::check_shape(&v);
    // Fields that do not apply are null.
    assert!(v["ingest"].is_null());
    assert!(v["command"].is_null());
    assert!(v["registration"].is_null());
    assert!(v["connect"]["latency_ms"]["p50"].is_null());
    assert!(r.markdown().contains("| connected |"));
}

#[tokio::test]
async fn a_run_that_cannot_connect_reports_errors_and_ends() {
    rampart_bench::set_quiet(true);
    // A port nobody listens on: every connection is refused, counted, and the run still reports.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    let target = format!("127.0.0.1:{port}");
    let cmd = parse(&[
        "connect",
        "--target",
        &target,
        "--connections",
        "5",
        "--hold-secs",
        "0",
        "--timeout-secs",
        "60",
        "--out",
        out.to_str().unwrap(),
    ]);
    let r = rampart_bench::run_report(cmd).await.unwrap();
    assert_eq!(r.connect.ok, 0);
    assert_eq!(r.connect.failed, 5);
    assert_eq!(
        r.errors.get("io_connection_refused"),
        Some(&5),
        "{:?}",
        r.errors
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    support::check_shape(&v);
}
