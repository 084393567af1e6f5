//! Test support: start the real `rampart` binary on port 0 in its own data directory, and talk to it
//! with clients we did not write (reqwest, rumqttc, mosquitto-clients).

use hmac::{Hmac, Mac};
use rumqttc::tokio_rustls::rustls;
use serde_json::{json, Value};
use sha2::Sha256;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const ADMIN: &str = "test-admin-token-0123456789";

/// For tests that connect one device again within a second on purpose (takeovers, resumed
/// sessions): turns off the device's per-second connect rate (`mqtt.limits.device_connect_per_second`),
/// which would answer CONNACK 0x9F. The per-minute rate and the storm ban stay.
pub const QUICK_RECONNECTS: (&str, &str) = ("RAMPART_MQTT__LIMITS__DEVICE_CONNECT_PER_SECOND", "0");

/// A PostgreSQL schema of a test's own in `RAMPART_TEST_POSTGRES_URL` (created with `psql`,
/// dropped on drop); [`PgSchema::store_url`] names it in the connection options.
pub struct PgSchema {
    url: String,
    schema: String,
}

impl PgSchema {
    /// `None` (with the reason printed, naming `test`) when the variable is unset or `psql`
    /// cannot create the schema: the test is skipped.
    pub fn create(test: &str) -> Option<PgSchema> {
        let Ok(url) = std::env::var("RAMPART_TEST_POSTGRES_URL") else {
            eprintln!("skipping {test}: RAMPART_TEST_POSTGRES_URL is not set");
            return None;
        };
        let schema = format!("e2e_{}", nonce().to_lowercase());
        let out = Command::new("psql")
            .arg(&url)
            .args(["-c", &format!("CREATE SCHEMA {schema}")])
            .output();
        match out {
            Ok(o) if o.status.success() => Some(PgSchema { url, schema }),
            _ => {
                eprintln!("skipping {test}: cannot create a schema with psql");
                None
            }
        }
    }

    /// The store URL for `RAMPART_STORE__URL`.
    pub fn store_url(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!(
            "{}{sep}options=-c%20search_path%3D{}",
            self.url, self.schema
        )
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(&self.url)
            .args(["-c", &format!("DROP SCHEMA {} CASCADE", self.schema)])
            .output();
    }
}

pub struct Server {
    child: Child,
    pub dir: tempfile::TempDir,
    pub http: u16,
    pub mqtt_tls: u16,
    pub mqtt_plain: u16,
    /// The event stream's TLS socket.
    pub events: u16,
    pub http_client: reqwest::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_rampart")
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(&[]).await
    }

    /// Start with extra environment variables (configuration overrides).
    pub async fn start_with(env: &[(&str, &str)]) -> Server {
        Server::start_in(tempfile::tempdir().unwrap(), env).await
    }

    /// Stop gracefully (SIGTERM, then wait for the exit) and start again on the same data
    /// directory with `env`.
    pub async fn restart(mut self, env: &[(&str, &str)]) -> Server {
        self.terminate();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "server did not stop");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.start_again(env).await
    }

    /// Kill the server with SIGKILL (no chance to flush or close anything), wait for it to be
    /// gone, and start again on the same data directory with `env`.
    pub async fn crash_restart(mut self, env: &[(&str, &str)]) -> Server {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait for the killed server");
        self.start_again(env).await
    }

    /// Start on this server's data directory once its process has exited.
    async fn start_again(mut self, env: &[(&str, &str)]) -> Server {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        std::fs::remove_file(dir.path().join("listeners.json")).unwrap();
        Server::start_in(dir, env).await
    }

    /// Start on an existing data directory.
    pub async fn start_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(bin());
        cmd.args([
            "serve",
            "--mqtt-tls-listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .arg("--data")
        .arg(dir.path())
        .env("RAMPART_ADMIN_TOKEN", ADMIN)
        .env("RAMPART_EVENTS__LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn rampart");
        let listeners = dir.path().join("listeners.json");
        let deadline = Instant::now() + Duration::from_secs(30);
        let v: Value = loop {
            if let Ok(text) = std::fs::read_to_string(&listeners) {
                if let Ok(v) = serde_json::from_str(&text) {
                    break v;
                }
            }
            // A server that exits at start (a bad configuration, say) fails the test at once
            // instead of after the deadline; its reason is on stderr above.
            if let Ok(Some(status)) = child.try_wait() {
                panic!("server exited at start: {status}");
            }
            assert!(Instant::now() < deadline, "server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let port = |k: &str| -> u16 {
            v[k].as_str()
                .unwrap()
                .rsplit_once(':')
                .unwrap()
                .1
                .parse()
                .unwrap()
        };
        let pem = std::fs::read(dir.path().join("tls/cert.pem")).unwrap();
        let http_client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .build()
            .unwrap();
        Server {
            http: port("http"),
            mqtt_tls: port("mqtt_tls"),
            mqtt_plain: port("mqtt"),
            events: port("events"),
            child,
            dir,
            http_client,
        }
    }

    /// The server's resident memory now, in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Ask the server to stop (SIGTERM), as an operator would.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// The text of `/metrics` (asked with the admin token).
    pub async fn metrics_text(&self) -> String {
        self.http_client
            .get(self.url("/metrics"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of a Prometheus gauge or counter (without labels) from `/metrics`, 0 when absent.
    pub async fn metric(&self, name: &str) -> f64 {
        self.metrics_text()
            .await
            .lines()
            .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .filter_map(|v| v.trim().parse().ok())
            .next()
            .unwrap_or(0.0)
    }

    /// Poll a metric until `f` holds (30 s at most).
    pub async fn wait_metric(&self, name: &str, f: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.metric(name).await;
            if f(v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{name} stayed at {v}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn data(&self) -> &Path {
        self.dir.path()
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("tls/cert.pem")
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.http)
    }

    /// An HTTP call; returns status and JSON body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut rb = self.http_client.request(m, self.url(path));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = resp.text().await.unwrap();
        assert_eq!(
            ct.as_deref(),
            Some("application/json"),
            "{method} {path} -> {status} {text}"
        );
        (status, serde_json::from_str(&text).unwrap())
    }

    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(method, path, Some(ADMIN), body).await
    }

    /// Create the standard test product; returns (product_key, product_secret).
    pub async fn product(&self, dynamic: bool, allowlist: bool) -> (String, String) {
        let (s, v) = self
            .admin(
                "POST",
                "/v1/products",
                Some(json!({
                    "name": "Test lamp",
                    "identity": {"dynamic_registration": dynamic, "allowlist": allowlist},
                    "report_limit_per_min": 600,
                    "datapoints": [
                        {"name": "power", "type": "bool", "writable": true},
                        {"name": "mode", "type": "enum", "values": ["auto", "cool"], "writable": true},
                        {"name": "level", "type": "int", "min": 0, "max": 100, "step": 5, "writable": true},
                        {"name": "temp", "type": "float", "min": -40, "max": 85, "step": 0.5}
                    ]
                })),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        (
            v["product_key"].as_str().unwrap().into(),
            v["product_secret"].as_str().unwrap().into(),
        )
    }

    /// Registration request body signed with `key`.
    pub fn register_body(pk: &str, hw: &str, mode: &str, key: &str, ts: i64, nonce: &str) -> Value {
        let msg = format!("product_key={pk}&hardware_id={hw}&ts={ts}&nonce={nonce}");
        json!({"product_key": pk, "hardware_id": hw, "ts": ts, "nonce": nonce, "mode": mode, "sign": hmac_hex(key, &msg)})
    }

    /// Register `hw` with the product secret; returns (did, device_secret, passcode).
    pub async fn register(&self, pk: &str, ps: &str, hw: &str) -> (String, String, String) {
        let body = Server::register_body(pk, hw, "product", ps, now_ms(), &nonce());
        let (s, v) = self
            .call("POST", "/v1/device/register", None, Some(body))
            .await;
        assert_eq!(s, 200, "{v}");
        (
            v["did"].as_str().unwrap().into(),
            v["device_secret"].as_str().unwrap().into(),
            v["passcode"].as_str().unwrap().into(),
        )
    }

    /// Register `hw` again, proving its current secret with `device_sign`; returns (did, the new
    /// device_secret). The answer carries no passcode.
    pub async fn register_again(
        &self,
        pk: &str,
        ps: &str,
        hw: &str,
        secret: &str,
    ) -> (String, String) {
        let (ts, n) = (now_ms(), nonce());
        let mut body = Server::register_body(pk, hw, "product", ps, ts, &n);
        let msg = format!("product_key={pk}&hardware_id={hw}&ts={ts}&nonce={n}");
        body["device_sign"] = hmac_hex(secret, &msg).into();
        let (s, v) = self
            .call("POST", "/v1/device/register", None, Some(body))
            .await;
        assert_eq!(s, 200, "{v}");
        assert!(v.get("passcode").is_none(), "{v}");
        (
            v["did"].as_str().unwrap().into(),
            v["device_secret"].as_str().unwrap().into(),
        )
    }

    /// A fresh product with one registered device: (product_key, did, device_secret).
    pub async fn device(&self) -> (String, String, String) {
        let (pk, ps) = self.product(true, false).await;
        let (did, secret, _) = self.register(&pk, &ps, &format!("hw-{}", nonce())).await;
        (pk, did, secret)
    }

    /// A device of a fresh product (one `power` point) allowing `per_min` reports a minute:
    /// (did, device_secret).
    pub async fn device_with_rate(&self, per_min: u32) -> (String, String) {
        let (s, v) = self
            .admin(
                "POST",
                "/v1/products",
                Some(
                    json!({"name": "rated", "identity": {"dynamic_registration": true},
                            "report_limit_per_min": per_min,
                            "datapoints": [{"name": "power", "type": "bool"}]}),
                ),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let (pk, ps) = (
            v["product_key"].as_str().unwrap(),
            v["product_secret"].as_str().unwrap(),
        );
        let (did, secret, _) = self.register(pk, ps, &format!("hw-{}", nonce())).await;
        (did, secret)
    }

    pub async fn state(&self, did: &str) -> Value {
        let (s, v) = self.admin("GET", &format!("/v1/devices/{did}"), None).await;
        assert_eq!(s, 200, "{v}");
        v
    }

    /// Wait until `f(device view)` holds, polling the API (a state change has no other signal).
    pub async fn wait_state(&self, did: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let v = self.state(did).await;
            if f(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "state never matched: {v}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// An API answer is `status` with the JSON error `code` (the body is shown when it is not).
#[track_caller]
pub fn assert_error(got_status: u16, body: &Value, status: u16, code: &str) {
    assert_eq!(
        (got_status, body["error"]["code"].as_str()),
        (status, Some(code)),
        "{body}"
    );
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub fn nonce() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("n{}x{}", now_ms(), N.fetch_add(1, Ordering::Relaxed))
}

pub fn hmac_hex(key: &str, msg: &str) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    m.update(msg.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// The greatest CONNECT timestamp handed out so far by [`creds`] (or passed to [`creds_at`]
/// near the present): the server accepts a device's signed CONNECT only with a `ts` greater than
/// the last one it accepted for that device, so two CONNECTs within one millisecond must not share
/// one.
static LAST_TS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// MQTT credentials for `did` at the present time, or just after the last timestamp handed out:
/// (username, password).
pub fn creds(did: &str, secret: &str) -> (String, String) {
    use std::sync::atomic::Ordering;
    let now = now_ms();
    let prev = LAST_TS
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(now);
    creds_at(did, secret, now.max(prev + 1))
}

/// MQTT credentials signed for exactly `ts` (stale or future ones included, for the tests of
/// refusals). A `ts` within a minute of now also moves the timestamps [`creds`] hands out past it.
pub fn creds_at(did: &str, secret: &str, ts: i64) -> (String, String) {
    if (ts - now_ms()).abs() < 60_000 {
        LAST_TS.fetch_max(ts, std::sync::atomic::Ordering::Relaxed);
    }
    (
        format!("{did}|hmac-sha256|{ts}"),
        hmac_hex(secret, &format!("did={did}&ts={ts}")),
    )
}

/// rustls (rumqttc's version) client config trusting the server's certificate.
pub fn tls_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    let pem = std::fs::read(ca).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

pub fn v4_options(srv: &Server, client_id: &str, user: &str, pass: &str) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(client_id, "localhost", srv.mqtt_tls);
    o.set_credentials(user, pass);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_transport(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(tls_config(&srv.ca_path())),
    ));
    o
}

pub fn v5_options(
    srv: &Server,
    client_id: &str,
    user: &str,
    pass: &str,
) -> rumqttc::v5::MqttOptions {
    v5_options_at(srv.mqtt_tls, &srv.ca_path(), client_id, user, pass)
}

/// MQTT 5 over TLS to `localhost:port`, trusting the certificate at `ca`.
pub fn v5_options_at(
    port: u16,
    ca: &Path,
    client_id: &str,
    user: &str,
    pass: &str,
) -> rumqttc::v5::MqttOptions {
    let mut o = rumqttc::v5::MqttOptions::new(client_id, "localhost", port);
    o.set_credentials(user, pass);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_transport(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(tls_config(ca)),
    ));
    o
}

/// Poll a v4 event loop until `f` picks an event out of it (errors are returned to `f` as well).
pub async fn v4_until<T>(
    el: &mut rumqttc::EventLoop,
    mut f: impl FnMut(Result<rumqttc::Event, rumqttc::ConnectionError>) -> Option<T>,
) -> T {
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let ev = el.poll().await;
            let dbg = format!("{ev:?}");
            let is_err = ev.is_err();
            if let Some(t) = f(ev) {
                return t;
            }
            assert!(!is_err, "unexpected connection error: {dbg}");
        }
    })
    .await
    .expect("timed out waiting for an MQTT event")
}

pub async fn v5_until<T>(
    el: &mut rumqttc::v5::EventLoop,
    mut f: impl FnMut(Result<rumqttc::v5::Event, rumqttc::v5::ConnectionError>) -> Option<T>,
) -> T {
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let ev = el.poll().await;
            let dbg = format!("{ev:?}");
            let is_err = ev.is_err();
            if let Some(t) = f(ev) {
                return t;
            }
            assert!(!is_err, "unexpected connection error: {dbg}");
        }
    })
    .await
    .expect("timed out waiting for an MQTT event")
}

/// Disconnect cleanly, drain the event loop, and wait until the server shows the device offline.
pub async fn disconnect_v4(
    srv: &Server,
    did: &str,
    c: rumqttc::AsyncClient,
    mut el: rumqttc::EventLoop,
) {
    c.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while el.poll().await.is_ok() {}
    })
    .await;
    srv.wait_state(did, |v| v["online"] == false).await;
}
