//! Wiring: opens the data directory and the store, brings the at-rest data up to date, binds every
//! listener and serves the gateway, the API, the event stream and the metrics endpoint until told
//! to stop, then drains. It owns start-up order and shutdown order, nothing else: no domain rule
//! lives here, it never reads the process environment (the configuration carries everything) and
//! never installs a tracing subscriber (that is the binary's choice).

use crate::config::Config;
use crate::error::ServerError;
use crate::tls;
use rampart_core::secret::{MasterKey, Secret};
use rampart_core::{Core, CoreConfig};
use rampart_store::Store;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// What the data directory is opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenFor {
    /// `rampart serve`: also reads the files only the server uses (`webhooks.ca_file`: webhooks
    /// are delivered by the server alone).
    Serving,
    /// A one-shot command (`product create`, `factory issue`, the bench's provisioning): a bad path
    /// in a server-only setting does not break it.
    Command,
}

/// Open the data directory: create it (0700), load or create the master key, open the store
/// (`store.url`, or SQLite in the directory), and bring sealed values and the audit chain up to
/// date.
pub async fn open_core(cfg: &Config, purpose: OpenFor) -> Result<Core, ServerError> {
    let dir = &cfg.data_dir;
    std::fs::create_dir_all(dir).map_err(|source| ServerError::DataDir {
        path: dir.clone(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    let (key, _created) = MasterKey::load_or_create(&dir.join("master.key"))?;
    keep_private(dir);
    let url = if cfg.store.url.is_empty() {
        // Made 0600 before SQLite opens it: SQLite gives its -wal and -shm files the
        // database file's mode.
        create_private(&dir.join("rampart.db"));
        format!("sqlite://{}", dir.join("rampart.db").display())
    } else {
        cfg.store.url.clone()
    };
    let options = rampart_store::StoreOptions {
        sqlite_cache_kib: cfg.store.sqlite_cache_kib,
        sqlite_writer_cache_kib: cfg.store.sqlite_writer_cache_kib,
    };
    let store = Store::open_with(&url, options).await?;
    let lifetimes = cfg.lifetimes()?;
    let core_cfg = CoreConfig {
        command_timeout_ms: cfg.commands.timeout_ms,
        command_ttl_ms: i64::from(cfg.commands.queued_ttl_secs) * 1000,
        access_ttl_ms: lifetimes.access_ms,
        refresh_ttl_ms: lifetimes.refresh_ms,
        lifetimes: lifetimes.other,
        events: rampart_core::stream::hub::EventsConfig {
            retention_ms: i64::try_from(cfg.events.retention_secs.max(1))
                .unwrap_or(i64::MAX / 1000)
                .saturating_mul(1000),
            max_per_group: i64::try_from(cfg.events.max_events.max(1)).unwrap_or(i64::MAX),
        },
        limits: cfg.limits.clone(),
        webhooks: cfg.webhooks.core(purpose == OpenFor::Serving)?,
        mqtt_limits: cfg.mqtt.limits.clone(),
        uploads: rampart_core::device::uploads::UploadsConfig {
            dir: Some(dir.join("uploads")),
            max_allowlist_bytes: cfg.uploads.max_allowlist_bytes.max(1),
            max_firmware_bytes: cfg.ota.max_firmware_bytes.max(1),
        },
        ota: rampart_core::ota::OtaConfig {
            url_ttl_secs: cfg.ota.url_ttl_secs.clamp(10, 86_400),
            download_base_url: Some(cfg.ota.download_base_url.clone()).filter(|u| !u.is_empty()),
        },
        ..CoreConfig::default()
    };
    let core = Core::new(store, key, core_cfg);
    core.upgrade_at_rest(dir)
        .await
        .map_err(|source| ServerError::Step {
            step: "upgrading sealed values and the audit chain",
            source,
        })?;
    Ok(core)
}

/// Where each listener is bound (`None`: turned off). Written to `DATA/listeners.json` once the
/// server serves, for clients that started it with port 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listeners {
    /// MQTT over TLS.
    pub mqtt_tls: Option<SocketAddr>,
    /// Plain-TCP MQTT.
    pub mqtt: Option<SocketAddr>,
    /// The HTTP API.
    pub http: SocketAddr,
    /// Whether the HTTP API speaks TLS.
    pub http_tls: bool,
    /// The unauthenticated `/metrics` listener.
    pub metrics: Option<SocketAddr>,
    /// The event stream's TLS socket.
    pub events: Option<SocketAddr>,
}

impl Listeners {
    /// The content of `listeners.json`: every listener by name, `null` when it is off.
    pub fn to_json(&self) -> serde_json::Value {
        let addr = |a: &Option<SocketAddr>| match a {
            Some(a) => serde_json::Value::from(a.to_string()),
            None => serde_json::Value::Null,
        };
        let mut m = serde_json::Map::new();
        m.insert("mqtt_tls".into(), addr(&self.mqtt_tls));
        m.insert("mqtt".into(), addr(&self.mqtt));
        m.insert("http".into(), self.http.to_string().into());
        m.insert("http_tls".into(), self.http_tls.into());
        m.insert("metrics".into(), addr(&self.metrics));
        m.insert("events".into(), addr(&self.events));
        serde_json::Value::Object(m)
    }
}

/// What became of the bootstrap admin token at this start.
#[derive(Debug, Clone)]
pub enum AdminToken {
    /// First start without `RAMPART_ADMIN_TOKEN`: this token was generated; only its hash is
    /// stored, so it must be shown to the operator now or never.
    Generated(Secret),
    /// First start: the configured token was stored (as its hash).
    Configured,
    /// An admin token existed already; nothing changed.
    Existing,
}

/// A server ready to serve: the store is open and every listener is bound.
pub struct App {
    core: Core,
    data_dir: PathBuf,
    listeners: Listeners,
    admin_token: AdminToken,
    tls_cert: PathBuf,
    tls_fingerprint: String,
    serve: Prepared,
}

/// The bound sockets and what each will serve.
struct Prepared {
    mqtt: Vec<(TcpListener, Option<TlsAcceptor>)>,
    gateway: rampart_gateway::GatewayConfig,
    http: TcpListener,
    http_tls: Option<TlsAcceptor>,
    http_limits: rampart_api::HttpLimits,
    state: rampart_api::AppState,
    metrics: Option<TcpListener>,
    events: Option<(TcpListener, TlsAcceptor, rampart_api::EventsTcpConfig)>,
    ota_sweep: Duration,
}

/// The process's Prometheus handle. The recorder is global to a process, so it is installed once
/// and every server in the process renders the same one (`None` when another recorder was
/// installed first).
fn prometheus() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .ok();
            if handle.is_some() {
                rampart_core::telemetry::describe();
            }
            handle
        })
        .clone()
}

async fn bind(listener: &'static str, addr: &str) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind {
            listener,
            addr: addr.to_owned(),
            source,
        })
}

impl App {
    /// Open the data directory and the store, upgrade at-rest data, load the TLS material, bind
    /// every configured listener (port 0 picks a free port; see [`App::listeners`]) and start the
    /// event stream and webhook deliveries. Nothing is accepted until [`App::run`].
    ///
    /// The bootstrap admin token is set last, once nothing else can fail, so a generated token
    /// is never stored without being handed back in [`App::admin_token`].
    pub async fn build(cfg: Config) -> Result<App, ServerError> {
        App::build_inner(cfg, None).await
    }

    /// [`App::build`], rendering `/metrics` from `metrics` instead of the process's global
    /// recorder (which is then left alone). For several servers in one process, each counting on
    /// its own: the caller makes the recorder behind `metrics` the default on every thread that
    /// runs this server (see `metrics::set_default_local_recorder`).
    pub async fn build_with_metrics(
        cfg: Config,
        metrics: metrics_exporter_prometheus::PrometheusHandle,
    ) -> Result<App, ServerError> {
        App::build_inner(cfg, Some(metrics)).await
    }

    async fn build_inner(
        cfg: Config,
        metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ) -> Result<App, ServerError> {
        // A cluster that cannot be (SQLite, a bad name) is refused before anything else.
        let cluster = cfg.cluster()?;
        // Every listener first: a port in use (a second instance, say) stops the start before
        // the data directory, a key, a certificate or a token is created or printed.
        let mut mqtt_bound = Vec::new();
        for (name, addr, tls) in [
            ("mqtt_tls", &cfg.mqtt.tls_listen, true),
            ("mqtt", &cfg.mqtt.listen, false),
        ] {
            mqtt_bound.push(if addr.is_empty() {
                None
            } else {
                Some((name, bind(name, addr).await?, tls))
            });
        }
        let http = bind("http", &cfg.http.listen).await?;
        let metrics_bound = if cfg.http.metrics_listen.is_empty() {
            None
        } else {
            Some(bind("metrics", &cfg.http.metrics_listen).await?)
        };
        let events_bound = if cfg.events.listen.is_empty() {
            None
        } else {
            Some(bind("events", &cfg.events.listen).await?)
        };

        let core = open_core(&cfg, OpenFor::Serving).await?;
        let dir = cfg.data_dir.clone();
        core.set_notifier(Arc::new(cfg.notify.notifier(&dir)?));
        core.set_oidc_providers(cfg.oidc.providers()?)
            .map_err(crate::config::ConfigError)?;
        let quotas = core.load_quotas().await?;
        tracing::debug!(
            counters = quotas,
            "quota counters of running windows loaded"
        );
        match &cluster {
            Some(c) => {
                // Presence is the cluster's: the other nodes' devices stay online.
                core.join_cluster(c)
                    .await
                    .map_err(|source| ServerError::Step {
                        step: "joining the cluster",
                        source,
                    })?;
            }
            None => {
                if !cfg.cluster.node_id.is_empty() {
                    core.bus().name_node(&cfg.cluster.node_id);
                }
                let offline = core.reset_presence().await?;
                if offline > 0 {
                    tracing::info!(devices = offline, "marked devices offline after restart");
                }
            }
        }
        let tls_files = tls::load_or_create(&cfg, &dir).map_err(ServerError::Tls)?;
        let acceptor = TlsAcceptor::from(tls_files.server_config.clone());
        let metrics = metrics.or_else(prometheus);

        let gateway = rampart_gateway::GatewayConfig {
            max_packet_size: cfg.mqtt.max_packet_size,
            connect_timeout: Duration::from_secs(cfg.mqtt.connect_timeout_secs),
            max_connections: cfg.mqtt.max_connections,
            max_subscriptions: cfg.mqtt.max_subscriptions,
            max_topic_len: cfg.mqtt.max_topic_len,
            max_inflight: cfg.mqtt.max_inflight.max(1),
            max_session_expiry_secs: cfg.mqtt.max_session_expiry_secs,
            park_idle_after: (cfg.mqtt.park_idle_after_ms > 0)
                .then(|| Duration::from_millis(cfg.mqtt.park_idle_after_ms)),
            write_timeout: Duration::from_secs(cfg.limits.write_timeout_s.max(1)),
            allow_unencrypted: cfg.mqtt.allow_unencrypted,
            rekey_messages: cfg.mqtt.secure_session.rekey_messages,
            rekey_interval: match cfg.mqtt.secure_session.rekey_secs {
                0 => Duration::MAX,
                s => Duration::from_secs(s),
            },
            ..Default::default()
        };
        if cfg.mqtt.allow_unencrypted && !cfg.mqtt.listen.is_empty() {
            tracing::warn!(
                "mqtt.allow_unencrypted is on: the plain-TCP MQTT listener accepts unencrypted MQTT, \
                 credentials and data in clear (for labs and benchmarks only)"
            );
        }
        let mut mqtt = Vec::new();
        let mut mqtt_addrs = [None, None];
        for (i, (name, l, tls)) in mqtt_bound
            .into_iter()
            .enumerate()
            .filter_map(|(i, b)| Some((i, b?)))
        {
            let local = l.local_addr()?;
            tracing::info!(listener = name, addr = %local, "MQTT listening");
            mqtt_addrs[i] = Some(local);
            mqtt.push((l, tls.then(|| acceptor.clone())));
        }

        let http_addr = http.local_addr()?;
        tracing::info!(addr = %http_addr, tls = cfg.http.tls, "HTTP API listening");
        let http_limits = rampart_api::HttpLimits {
            write_timeout: Duration::from_secs(cfg.limits.write_timeout_s.max(1)),
            ..cfg.http.limits()
        };
        let state = rampart_api::AppState {
            core: core.clone(),
            metrics,
            http: http_limits.clone(),
        };
        let (metrics, metrics_addr) = if let Some(l) = metrics_bound {
            let local = l.local_addr()?;
            if !is_private(local.ip()) {
                tracing::warn!(addr = %local, "the unauthenticated metrics listener is on a public address");
            }
            tracing::info!(addr = %local, "metrics listening (no authentication)");
            (Some(l), Some(local))
        } else {
            (None, None)
        };
        // The API's TLS offers HTTP/2 by ALPN when it is on; the other listeners offer no ALPN.
        let http_tls = cfg.http.tls.then(|| {
            let mut sc = (*tls_files.server_config).clone();
            sc.alpn_protocols = if cfg.http.http2 {
                vec![b"h2".to_vec(), b"http/1.1".to_vec()]
            } else {
                vec![b"http/1.1".to_vec()]
            };
            TlsAcceptor::from(Arc::new(sc))
        });
        let (events, events_addr) = if let Some(l) = events_bound {
            let local = l.local_addr()?;
            tracing::info!(addr = %local, "event stream listening");
            let events_cfg = rampart_api::EventsTcpConfig {
                max_connections: cfg.events.max_connections,
                connections_per_ip: cfg.events.limits.connections_per_ip,
                write_timeout: Duration::from_secs(cfg.limits.write_timeout_s.max(1)),
                ..Default::default()
            };
            (Some((l, acceptor.clone(), events_cfg)), Some(local))
        } else {
            (None, None)
        };

        core.start_event_stream()
            .await
            .map_err(|source| ServerError::Step {
                step: "event stream",
                source,
            })?;
        let hooks = core
            .start_webhooks()
            .await
            .map_err(|source| ServerError::Step {
                step: "webhooks",
                source,
            })?;
        tracing::debug!(webhooks = hooks, "webhook deliveries started");

        let configured = cfg.admin_token.as_ref().map(Secret::expose);
        let admin_token = match core.init_admin_token(configured).await? {
            None => AdminToken::Existing,
            Some(_) if configured.is_some() => AdminToken::Configured,
            Some(token) => AdminToken::Generated(token),
        };
        Ok(App {
            listeners: Listeners {
                mqtt_tls: mqtt_addrs[0],
                mqtt: mqtt_addrs[1],
                http: http_addr,
                http_tls: cfg.http.tls,
                metrics: metrics_addr,
                events: events_addr,
            },
            serve: Prepared {
                mqtt,
                gateway,
                http,
                http_tls,
                http_limits,
                state,
                metrics,
                events,
                ota_sweep: Duration::from_millis(cfg.ota.sweep_interval_ms.max(10)),
            },
            core,
            data_dir: dir,
            admin_token,
            tls_cert: tls_files.cert_path,
            tls_fingerprint: tls_files.fingerprint,
        })
    }

    /// The bound addresses.
    pub fn listeners(&self) -> &Listeners {
        &self.listeners
    }

    /// The bootstrap admin token's fate at this start.
    pub fn admin_token(&self) -> &AdminToken {
        &self.admin_token
    }

    /// The server certificate's file (PEM), which clients trust when it is self-signed.
    pub fn tls_cert_path(&self) -> &Path {
        &self.tls_cert
    }

    /// SHA-256 of the server certificate, as `AB:CD:...`.
    pub fn tls_fingerprint(&self) -> &str {
        &self.tls_fingerprint
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The domain services behind every listener.
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// Serve until `shutdown` resolves, then drain: stop accepting, let sessions close, flush
    /// the quota counters (after the listeners, so the last calls are counted) and close the
    /// store. `DATA/listeners.json` is written once every listener is served.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let App {
            core,
            data_dir,
            listeners,
            serve,
            admin_token,
            ..
        } = self;
        // A generated token has been handed out by now; zeroized here rather than at shutdown.
        drop(admin_token);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let mut tasks = Vec::new();
        for (l, acceptor) in serve.mqtt {
            tasks.push(tokio::spawn(rampart_gateway::serve(
                l,
                acceptor,
                core.clone(),
                serve.gateway.clone(),
                stopped(),
            )));
        }
        if let Some(l) = serve.metrics {
            let app = rampart_api::metrics_router(serve.state.clone());
            let limits = serve.http_limits.clone();
            let stop = stopped();
            tasks.push(tokio::spawn(async move {
                rampart_api::serve_with(l, None, app, &limits, stop).await
            }));
        }
        let app = rampart_api::router(serve.state);
        let (http, http_tls, http_limits) = (serve.http, serve.http_tls, serve.http_limits);
        let http_stop = stopped();
        tasks.push(tokio::spawn(async move {
            rampart_api::serve_with(http, http_tls, app, &http_limits, http_stop).await
        }));
        if let Some((l, acceptor, events_cfg)) = serve.events {
            tasks.push(tokio::spawn(rampart_api::serve_events(
                l,
                acceptor,
                core.clone(),
                events_cfg,
                stopped(),
            )));
        }
        {
            let core = core.clone();
            let every = serve.ota_sweep;
            let stop = stopped();
            tasks.push(tokio::spawn(async move {
                core.run_ota_sweeper(every, stop).await;
            }));
        }
        if let Err(e) = write_listeners(&data_dir, &listeners.to_json()) {
            let _ = stop_tx.send(true);
            return Err(e.into());
        }

        let (flush_stop, flush_stopped) = tokio::sync::oneshot::channel::<()>();
        let flusher = {
            let core = core.clone();
            tokio::spawn(async move {
                core.run_quota_flusher(async move {
                    let _ = flush_stopped.await;
                })
                .await
            })
        };

        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        // After the listeners: the last calls are counted before the final flush.
        let _ = flush_stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), flusher).await;
        // Sessions have closed: the other nodes stop counting on this one at once.
        core.leave_cluster().await;
        core.close_store().await;
        tracing::info!("stopped: listeners drained, counters flushed, store closed");
        Ok(())
    }
}

/// Loopback, private IPv4 (RFC 1918), link-local, or IPv6 unique-local addresses; the wildcard
/// address counts as public.
fn is_private(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(a) => a.is_loopback() || a.is_private() || a.is_link_local(),
        std::net::IpAddr::V6(a) => {
            a.is_loopback()
                || (a.segments()[0] & 0xfe00) == 0xfc00
                || (a.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Replace `listeners.json` in one step, so a reader never sees half of it.
fn write_listeners(dir: &Path, v: &serde_json::Value) -> std::io::Result<()> {
    let tmp = dir.join("listeners.json.tmp");
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    rampart_core::secret::write_private(&tmp, v.to_string().as_bytes())?;
    std::fs::rename(&tmp, dir.join("listeners.json"))
}

/// Create an empty file readable by its owner only, unless one exists.
fn create_private(path: &Path) {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    // An existing file is what we want (`keep_private` has checked its mode); any other error
    // surfaces when the store opens the file.
    let _ = options.open(path);
}

/// Make every file of the data directory 0600 and every folder 0700, saying what was changed:
/// files made by an older version, a copy or a restore may be readable by others. The master key
/// is left alone: one that others could read is refused at start, not quietly fixed.
fn keep_private(dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut folders = vec![dir.to_path_buf()];
        while let Some(folder) = folders.pop() {
            let Ok(entries) = std::fs::read_dir(&folder) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(meta) = std::fs::symlink_metadata(&path) else {
                    continue;
                };
                let want = if meta.is_dir() {
                    folders.push(path.clone());
                    0o700
                } else if meta.is_file() && path != dir.join("master.key") {
                    0o600
                } else {
                    continue;
                };
                let mode = meta.permissions().mode() & 0o777;
                if mode != want {
                    match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(want)) {
                        Ok(()) => tracing::warn!(path = %path.display(),
                            was = format!("{mode:o}"), now = format!("{want:o}"),
                            "data directory entry was not private; changed"),
                        Err(e) => tracing::warn!(path = %path.display(), error = %e,
                            "data directory entry is not private and could not be changed"),
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.9",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(is_private(a.parse().unwrap()), "{a}");
        }
        for a in ["0.0.0.0", "8.8.8.8", "::", "2001:db8::1"] {
            assert!(!is_private(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn listeners_json_names_every_listener() {
        let l = Listeners {
            mqtt_tls: Some("127.0.0.1:1".parse().unwrap()),
            mqtt: None,
            http: "127.0.0.1:2".parse().unwrap(),
            http_tls: true,
            metrics: None,
            events: Some("127.0.0.1:3".parse().unwrap()),
        };
        assert_eq!(
            l.to_json(),
            serde_json::json!({"mqtt_tls": "127.0.0.1:1", "mqtt": null, "http": "127.0.0.1:2",
                "http_tls": true, "metrics": null, "events": "127.0.0.1:3"})
        );
    }
}
