//! Test support: start the server on port 0 in its own data directory, in this process
//! ([`Server::start`], the default) or as the real `rampart` binary ([`Server::process`], for
//! what needs a process), and talk to it with clients we did not write (reqwest, rumqttc,
//! mosquitto-clients). It never sets process-wide environment variables.

use hmac::{Hmac, Mac};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use rampart_core::clock::Clock;
use rampart_server::{App, Config, Listeners};
use rumqttc::tokio_rustls::rustls;
use serde_json::{json, Value};
use sha2::Sha256;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const ADMIN: &str = "test-admin-token-0123456789";
/// The refusal count of CONNECTs over TLS whose signature did not match.
pub const WRONG_SIGNATURE: &str =
    r#"rampart_auth_refusals_total{listener="mqtt_tls",reason="wrong_signature"}"#;

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

/// How a test server runs.
enum Backend {
    /// The `rampart` binary in a child process: for tests of signals, SIGKILL durability,
    /// resident memory, and of what the binary prints, and for metrics counted off the runtime
    /// (the gateway's idle-pool thread counts into the process's global recorder).
    Process(Child),
    /// [`App`] on a runtime of its own in a thread of the test process.
    InProcess(AppThread),
}

pub struct Server {
    backend: Backend,
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
        match &mut self.backend {
            Backend::Process(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Backend::InProcess(app) => app.stop_blocking(),
        }
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_rampart")
}

/// `rampart serve` with every listener on a free port of 127.0.0.1 (the caller adds the data
/// directory and the rest).
pub fn serve_on_free_ports() -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--http-listen", "127.0.0.1:0"])
        .args(["--mqtt-tls-listen", "127.0.0.1:0"])
        .args(["--mqtt-listen", "127.0.0.1:0"])
        .args(["--events-listen", "127.0.0.1:0"]);
    // The tests' plain-TCP clients speak plain MQTT; secure sessions are tested beside them.
    cmd.env("RAMPART_MQTT__ALLOW_UNENCRYPTED", "true");
    cmd
}

/// An app serving on a thread of its own (with its own runtime, as a process would have), so a
/// test that blocks its own thread (a `mosquitto_pub` child, say) never stalls the server.
struct AppThread {
    /// The app's clock: a test moves it instead of sleeping through a wait.
    clock: Clock,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: std::sync::mpsc::Receiver<()>,
}

impl AppThread {
    /// Build the app from `cfg` and start serving; returns once every listener is bound.
    ///
    /// The metrics recorder of a process is global, so each app gets one of its own (leaked: a
    /// few KiB per test), made the default of every thread that runs it: a test reads exactly
    /// its own server's counters, as from a process of its own.
    async fn spawn(cfg: Config) -> (AppThread, Listeners) {
        init_tracing();
        let recorder: &'static PrometheusRecorder =
            Box::leak(Box::new(PrometheusBuilder::new().build_recorder()));
        let handle = recorder.handle();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("rampart-app".into())
            .spawn(move || {
                let count_here = move || {
                    std::mem::forget(metrics::set_default_local_recorder(recorder));
                };
                count_here();
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .on_thread_start(count_here)
                    .build()
                    .expect("app runtime");
                rt.block_on(async move {
                    let app = match App::build_with_metrics(cfg, handle).await {
                        Ok(app) => app,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let _ =
                        ready_tx.send(Ok((app.listeners().clone(), app.core().clock().clone())));
                    let stopped = async {
                        let _ = stop_rx.await;
                    };
                    if let Err(e) = app.run(stopped).await {
                        eprintln!("the server stopped with an error: {e}");
                    }
                });
                // What a process exit would end: connections still open, background tasks.
                rt.shutdown_timeout(Duration::from_secs(1));
                let _ = done_tx.send(());
            })
            .expect("spawn the app thread");
        let (listeners, clock) = ready_rx
            .await
            .expect("the app thread ended early")
            .unwrap_or_else(|e| panic!("server did not start: {e}"));
        let app = AppThread {
            clock,
            stop: Some(stop_tx),
            done: done_rx,
        };
        (app, listeners)
    }

    /// Shut down gracefully (as on SIGTERM) and wait until the store is closed.
    async fn stop(&mut self) {
        self.stop.take();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.done.try_recv() {
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
                _ => return,
            }
            assert!(Instant::now() < deadline, "server did not stop");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// [`AppThread::stop`] from a destructor, which cannot wait asynchronously; the app has its
    /// own runtime, so blocking this thread does not hold it up.
    fn stop_blocking(&mut self) {
        if self.stop.take().is_some() {
            let _ = self.done.recv_timeout(Duration::from_secs(30));
        }
    }
}

/// Server logs, shown with a failing test's output (the subscriber is process-wide: one for
/// every in-process server). `RUST_LOG` picks the level; warnings by default.
fn init_tracing() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// The configuration a test server gets: the test's variables (`env`, read as the environment
/// would be; `RAMPART_CONFIG` names a file) over the admin token and listeners every test uses.
/// The listeners are set last, as the process variant's command-line flags would.
fn test_config(dir: &Path, env: &[(&str, &str)]) -> Config {
    let file = env
        .iter()
        .find(|(k, _)| *k == "RAMPART_CONFIG")
        .map(|(_, v)| PathBuf::from(v));
    let vars = [
        ("RAMPART_ADMIN_TOKEN", ADMIN),
        ("RAMPART_EVENTS__LISTEN", "127.0.0.1:0"),
        // Plain MQTT on the plain-TCP listener, as most tests use it; a test's own pairs win.
        ("RAMPART_MQTT__ALLOW_UNENCRYPTED", "true"),
    ]
    .into_iter()
    .chain(env.iter().copied());
    let mut cfg = Config::load_from(file.as_deref(), vars)
        .unwrap_or_else(|e| panic!("server did not start: {e}"));
    cfg.data_dir = dir.to_path_buf();
    cfg.mqtt.tls_listen = "127.0.0.1:0".into();
    cfg.mqtt.listen = "127.0.0.1:0".into();
    cfg.http.listen = "127.0.0.1:0".into();
    cfg
}

/// Wait until the server has written `listeners.json` (it does once it serves); the process
/// variant also gives up at once when the process has exited.
async fn wait_for_listeners(dir: &Path, mut child: Option<&mut Child>) -> Value {
    let listeners = dir.join("listeners.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(&listeners) {
            if let Ok(v) = serde_json::from_str(&text) {
                return v;
            }
        }
        // A server that exits at start (a bad configuration, say) fails the test at once
        // instead of after the deadline; its reason is on stderr above.
        if let Some(child) = child.as_deref_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("server exited at start: {status}");
            }
        }
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

impl Server {
    /// A server in this process, in a fresh data directory.
    pub async fn start() -> Server {
        Server::start_with(&[]).await
    }

    /// [`Server::start`] with extra variables (configuration overrides, as environment
    /// variables would give them; the process environment is not read).
    pub async fn start_with(env: &[(&str, &str)]) -> Server {
        Server::start_in(tempfile::tempdir().unwrap(), env).await
    }

    /// A server in this process on an existing data directory.
    pub async fn start_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Server {
        let cfg = test_config(dir.path(), env);
        let (app, listeners) = AppThread::spawn(cfg).await;
        wait_for_listeners(dir.path(), None).await;
        let port = |a: Option<std::net::SocketAddr>| a.expect("listener").port();
        Server {
            http: listeners.http.port(),
            mqtt_tls: port(listeners.mqtt_tls),
            mqtt_plain: port(listeners.mqtt),
            events: port(listeners.events),
            http_client: trusting_client(dir.path()),
            backend: Backend::InProcess(app),
            dir,
        }
    }

    /// Move the in-process server's clock forward by `by`, as if that much time had passed: its
    /// tokens, codes and queued commands age, its rate limits refill. Waits that the server
    /// measures with timers (keep-alive, command timeouts) are not moved.
    pub fn advance(&self, by: Duration) {
        match &self.backend {
            Backend::InProcess(app) => app.clock.advance(by),
            Backend::Process(_) => panic!("a server process's clock cannot be moved"),
        }
    }

    /// Move the in-process server's clock to just after the start of a minute, so that a test
    /// of limits counted in clock minutes runs inside one; returns how far it moved (ms).
    pub fn start_a_minute(&self) -> i64 {
        let skip = 60_050 - now_ms().rem_euclid(60_000);
        self.advance(Duration::from_millis(skip as u64));
        skip
    }

    /// The `rampart` binary in a child process, in a fresh data directory: only for what needs
    /// a process (see [`Backend::Process`]).
    pub async fn process() -> Server {
        Server::process_with(&[]).await
    }

    /// [`Server::process`] with extra environment variables (configuration overrides).
    pub async fn process_with(env: &[(&str, &str)]) -> Server {
        Server::process_in(tempfile::tempdir().unwrap(), env).await
    }

    /// Stop gracefully (SIGTERM for a process) and start again, the same way, on the same data
    /// directory with `env`.
    pub async fn restart(mut self, env: &[(&str, &str)]) -> Server {
        match &mut self.backend {
            Backend::Process(child) => {
                let pid = child.id();
                terminate(pid);
                let deadline = Instant::now() + Duration::from_secs(30);
                while child.try_wait().unwrap().is_none() {
                    assert!(Instant::now() < deadline, "server did not stop");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Backend::InProcess(app) => app.stop().await,
        }
        self.start_again(env).await
    }

    /// Kill the server process with SIGKILL (no chance to flush or close anything), wait for it
    /// to be gone, and start again on the same data directory with `env`.
    pub async fn crash_restart(mut self, env: &[(&str, &str)]) -> Server {
        let child = self.child();
        child.kill().expect("SIGKILL");
        child.wait().expect("wait for the killed server");
        self.start_again(env).await
    }

    /// Kill the server process with SIGKILL and wait for it to be gone (no restart).
    pub fn kill(&mut self) {
        let child = self.child();
        child.kill().expect("SIGKILL");
        child.wait().expect("wait for the killed server");
    }

    /// Start on this server's data directory once it has stopped, the same way it ran.
    pub async fn start_again(mut self, env: &[(&str, &str)]) -> Server {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        std::fs::remove_file(dir.path().join("listeners.json")).unwrap();
        match self.backend {
            Backend::Process(_) => Server::process_in(dir, env).await,
            Backend::InProcess(_) => Server::start_in(dir, env).await,
        }
    }

    /// The server process; panics for a server in this process.
    fn child(&mut self) -> &mut Child {
        match &mut self.backend {
            Backend::Process(child) => child,
            Backend::InProcess(_) => {
                panic!("this test needs a server process: start it with Server::process*")
            }
        }
    }

    /// The server process's id; panics for a server in this process.
    fn pid(&self) -> u32 {
        match &self.backend {
            Backend::Process(child) => child.id(),
            Backend::InProcess(_) => {
                panic!("this test needs a server process: start it with Server::process*")
            }
        }
    }

    /// Start the binary on an existing data directory.
    pub async fn process_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Server {
        Server::process_logged(dir, env, false).await
    }

    /// Start the binary with its log at `info` written to `DATA/server.log` (read it with
    /// [`Server::log_text`]).
    pub async fn process_logging(env: &[(&str, &str)]) -> Server {
        Server::process_logged(tempfile::tempdir().unwrap(), env, true).await
    }

    /// The log of a server started by [`Server::process_logging`].
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    async fn process_logged(dir: tempfile::TempDir, env: &[(&str, &str)], log: bool) -> Server {
        let mut cmd = serve_on_free_ports();
        cmd.arg("--data")
            .arg(dir.path())
            .env("RAMPART_ADMIN_TOKEN", ADMIN)
            .env("RUST_LOG", if log { "info" } else { "warn" })
            .stdout(Stdio::null());
        if log {
            let file = std::fs::File::create(dir.path().join("server.log")).unwrap();
            cmd.stderr(file);
        } else {
            cmd.stderr(Stdio::inherit());
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn rampart");
        let v = wait_for_listeners(dir.path(), Some(&mut child)).await;
        let port = |k: &str| -> u16 {
            v[k].as_str()
                .unwrap()
                .rsplit_once(':')
                .unwrap()
                .1
                .parse()
                .unwrap()
        };
        Server {
            http: port("http"),
            mqtt_tls: port("mqtt_tls"),
            mqtt_plain: port("mqtt"),
            events: port("events"),
            http_client: trusting_client(dir.path()),
            backend: Backend::Process(child),
            dir,
        }
    }

    /// The server's resident memory now, in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        let pid = self.pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Ask the server process to stop (SIGTERM), as an operator would.
    pub fn terminate(&self) {
        terminate(self.pid());
    }

    /// SIGTERM, then the process's exit status once it has stopped (at most 30 s).
    pub async fn terminate_and_wait(&mut self) -> std::process::ExitStatus {
        self.terminate();
        let child = self.child();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not stop");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The text of `/metrics` (asked with the admin token): this server's own counters only.
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

/// Send SIGTERM to `pid`.
fn terminate(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// An HTTP client trusting the certificate in the data directory `dir`.
fn trusting_client(dir: &Path) -> reqwest::Client {
    let pem = std::fs::read(dir.join("tls/cert.pem")).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap()
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

/// Audit rows of `action` in the server's SQLite store, newest first.
pub async fn audit_rows(srv: &Server, action: &str) -> Vec<rampart_store::AuditRow> {
    let store = rampart_store::Store::open_sqlite(&srv.data().join("rampart.db"))
        .await
        .unwrap();
    let rows = store.list_audit(Some(action), 1000).await.unwrap();
    store.close().await;
    rows
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

/// Connect `did` with a persistent session (MQTT 3.1.1, clean session 0), subscribe to its down
/// topic and leave: commands sent now queue in the parked session.
pub async fn park_persistent_session(srv: &Server, did: &str, secret: &str) {
    let (u, p) = creds(did, secret);
    let mut o = v4_options(srv, did, &u, &p);
    o.set_clean_session(false);
    let (c, mut el) = rumqttc::AsyncClient::new(o, 10);
    c.subscribe(format!("dev/{did}/down"), rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    v4_until(&mut el, |e| {
        matches!(e, Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)))).then_some(())
    })
    .await;
    disconnect_v4(srv, did, c, el).await;
}
