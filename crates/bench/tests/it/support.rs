//! Shared checks and the in-test Rampart server.

use rampart_core::secret::MasterKey;
use rampart_core::{Core, CoreConfig};
use rampart_store::Store;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;

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

/// A Rampart server inside the test: MQTT over TLS and plain TCP, HTTPS API, one data directory.
pub(crate) struct Rampart {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) mqtt_tls: u16,
    pub(crate) mqtt: u16,
    pub(crate) http: u16,
    stop: watch::Sender<bool>,
}

impl Drop for Rampart {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl Rampart {
    pub(crate) async fn start() -> Rampart {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = MasterKey::load_or_create(&dir.path().join("master.key")).unwrap();
        let url = format!("sqlite://{}", dir.path().join("rampart.db").display());
        let store = Store::open(&url).await.unwrap();
        // The harness registers its identities from one address, like a factory line.
        let mut config = CoreConfig::default();
        config.limits.register_ip.per_minute = 0;
        let core = Core::new(store, key, config);
        core.init_admin_token(Some(ADMIN)).await.unwrap();

        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap();
        std::fs::create_dir_all(dir.path().join("tls")).unwrap();
        std::fs::write(dir.path().join("tls/cert.pem"), ck.cert.pem()).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::try_from(ck.key_pair.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));

        let (stop, stop_rx) = watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let bind = || async { tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap() };
        let (l_tls, l_plain, l_http) = (bind().await, bind().await, bind().await);
        let port = |l: &tokio::net::TcpListener| l.local_addr().unwrap().port();
        let (mqtt_tls, mqtt, http) = (port(&l_tls), port(&l_plain), port(&l_http));
        let cfg = rampart_gateway::GatewayConfig::default();
        tokio::spawn(rampart_gateway::serve(
            l_tls,
            Some(acceptor.clone()),
            core.clone(),
            cfg.clone(),
            stopped(),
        ));
        tokio::spawn(rampart_gateway::serve(
            l_plain,
            None,
            core.clone(),
            cfg,
            stopped(),
        ));
        let app = rampart_api::router(rampart_api::AppState {
            core: core.clone(),
            metrics: None,
            http: Default::default(),
        });
        tokio::spawn(rampart_api::serve(l_http, Some(acceptor), app, stopped()));
        std::fs::write(
            dir.path().join("listeners.json"),
            serde_json::json!({
                "mqtt_tls": format!("127.0.0.1:{mqtt_tls}"),
                "mqtt": format!("127.0.0.1:{mqtt}"),
                "http": format!("127.0.0.1:{http}"),
                "http_tls": true,
            })
            .to_string(),
        )
        .unwrap();
        Rampart {
            dir,
            mqtt_tls,
            mqtt,
            http,
            stop,
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
