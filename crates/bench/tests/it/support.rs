//! Shared checks and the in-test Rampart server.

use serde_json::Value;
use std::path::PathBuf;
use tokio::sync::oneshot;

/// The keys the brief promises, at every level.
pub(crate) fn check_shape(v: &Value) {
    for k in [
        "scenario",
        "label",
        "target",
        "tls",
        "mqtt_version",
        "rampart",
        "connections",
        "duration_s",
        "connect",
        "server",
        "ingest",
        "command",
        "errors",
        "registration",
    ] {
        assert!(v.get(k).is_some(), "missing `{k}` in {v}");
    }
    for k in ["ok", "failed", "rate_per_s", "latency_ms"] {
        assert!(v["connect"].get(k).is_some(), "missing connect.{k}");
    }
    for k in ["p50", "p90", "p99", "max"] {
        assert!(
            v["connect"]["latency_ms"].get(k).is_some(),
            "missing latency_ms.{k}"
        );
    }
    if v["server"].is_object() {
        for k in [
            "pid",
            "rss_before_kib",
            "rss_after_kib",
            "rss_per_conn_kib",
            "cpu_secs_hold",
            "cpu_per_conn_per_min_ms",
            "slab_delta_kib",
            "slab_per_conn_kib",
        ] {
            assert!(v["server"].get(k).is_some(), "missing server.{k}");
        }
    }
    if v["ingest"].is_object() {
        for k in [
            "sent",
            "acked",
            "received",
            "lost",
            "msgs_per_s",
            "ack_latency_ms",
            "e2e_latency_ms",
        ] {
            assert!(v["ingest"].get(k).is_some(), "missing ingest.{k}");
        }
    }
    if v["command"].is_object() {
        for k in ["sent", "ok", "failed", "latency_ms"] {
            assert!(v["command"].get(k).is_some(), "missing command.{k}");
        }
    }
    if v["registration"].is_object() {
        for k in ["devices", "rate_per_s"] {
            assert!(
                v["registration"].get(k).is_some(),
                "missing registration.{k}"
            );
        }
    }
    assert!(v["errors"].is_object());
}

pub(crate) const ADMIN: &str = "bench-test-admin-token-0123456789";

/// A Rampart server inside the test, started as `rampart serve` starts it: MQTT over TLS and
/// plain TCP, HTTPS API, one data directory.
pub(crate) struct Rampart {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) mqtt_tls: u16,
    pub(crate) mqtt: u16,
    pub(crate) http: u16,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Rampart {
    fn drop(&mut self) {
        self.stop.take();
    }
}

impl Rampart {
    pub(crate) async fn start() -> Rampart {
        Rampart::start_with(None).await
    }

    /// [`Rampart::start`] with a configuration file under the test's settings.
    pub(crate) async fn start_with(config: Option<&std::path::Path>) -> Rampart {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = rampart_server::Config::load_from(
            config,
            [
                ("RAMPART_ADMIN_TOKEN", ADMIN),
                // The harness registers its identities from one address, like a factory line.
                ("RAMPART_LIMITS__REGISTER_IP__PER_MINUTE", "0"),
                ("RAMPART_MQTT__TLS_LISTEN", "127.0.0.1:0"),
                ("RAMPART_MQTT__LISTEN", "127.0.0.1:0"),
                ("RAMPART_MQTT__ALLOW_UNENCRYPTED", "true"),
                ("RAMPART_HTTP__LISTEN", "127.0.0.1:0"),
                ("RAMPART_EVENTS__LISTEN", ""),
            ],
        )
        .unwrap();
        cfg.data_dir = dir.path().to_path_buf();
        let app = rampart_server::App::build(cfg).await.unwrap();
        let l = app.listeners().clone();
        let port = |a: Option<std::net::SocketAddr>| a.unwrap().port();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(app.run(async {
            let _ = stopped.await;
        }));
        // Serving once `listeners.json` is there, as for the binary.
        while !dir.path().join("listeners.json").exists() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        Rampart {
            mqtt_tls: port(l.mqtt_tls),
            mqtt: port(l.mqtt),
            http: l.http.port(),
            dir,
            stop: Some(stop),
        }
    }

    pub(crate) fn data(&self) -> String {
        self.dir.path().display().to_string()
    }

    pub(crate) fn ca(&self) -> PathBuf {
        self.dir.path().join("tls/cert.pem")
    }

    pub(crate) fn api(&self) -> String {
        format!("https://localhost:{}", self.http)
    }
}
