//! The one Rampart binary: parses the command line, loads configuration, starts tracing, wires the
//! crates together and handles signals. No domain logic lives here.

mod config;
mod tls;

use clap::{Args, Parser, Subcommand};
use config::Config;
use rampart_core::audit::Actor;
use rampart_core::secret::MasterKey;
use rampart_core::{Core, CoreConfig};
use rampart_store::Store;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "rampart",
    version,
    about = "Rampart: a self-hostable, secure IoT device cloud"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct DataArgs {
    /// Data directory (default ./rampart-data).
    #[arg(long = "data", env = "RAMPART_DATA", global = true)]
    data: Option<PathBuf>,
    /// TOML configuration file.
    #[arg(long, env = "RAMPART_CONFIG", global = true)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server: MQTT gateway and HTTP API.
    Serve {
        #[command(flatten)]
        data: DataArgs,
        /// MQTT over TLS listen address (default 0.0.0.0:8883).
        #[arg(long)]
        mqtt_tls_listen: Option<String>,
        /// Plain-TCP MQTT listen address (off by default).
        #[arg(long)]
        mqtt_listen: Option<String>,
        /// HTTP API listen address (default 0.0.0.0:8443).
        #[arg(long)]
        http_listen: Option<String>,
        /// Event stream (TLS, JSON lines) listen address (default 0.0.0.0:2017; empty disables).
        #[arg(long)]
        events_listen: Option<String>,
        /// Unauthenticated `/metrics` listen address for a scraper on a private network
        /// (default: none; `/metrics` on the API needs the admin token or a `metrics` key).
        #[arg(long)]
        metrics_listen: Option<String>,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Products.
    Product {
        #[command(subcommand)]
        cmd: ProductCmd,
    },
    /// Factory identities: batches and allowlists.
    Factory {
        #[command(subcommand)]
        cmd: FactoryCmd,
    },
    /// Device tools.
    Device {
        #[command(subcommand)]
        cmd: DeviceCmd,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Load generator: connect, ingest and command scenarios against Rampart or any MQTT broker.
    Bench {
        #[command(subcommand)]
        cmd: rampart_bench::BenchCmd,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Recompute the audit hash chain; name the first tampered entry and fail if there is one.
    Verify {
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print the default configuration as TOML.
    Generate,
}

#[derive(Subcommand)]
enum ProductCmd {
    /// Create a product from a model file (the same JSON as `POST /v1/products`).
    Create {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        model: PathBuf,
    },
}

#[derive(Subcommand)]
enum FactoryCmd {
    /// Issue a batch of one-device-one-secret identities; writes `serial,device_secret` rows.
    Issue {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        product: String,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Add MAC/IMEI ids (one per line) to a product's allowlist.
    Allow {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        product: String,
        #[arg(long)]
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum DeviceCmd {
    /// Register and run simulated devices from a factory batch.
    Simulate {
        /// MQTT TLS address, HOST:PORT.
        #[arg(long)]
        server: String,
        /// CA/certificate PEM to trust.
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        batch: PathBuf,
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// HTTPS API base URL (default https://HOST:8443).
        #[arg(long)]
        api: Option<String>,
        /// Product key (default: taken from the serials).
        #[arg(long)]
        product: Option<String>,
        /// Product model file, to report valid values.
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long, default_value_t = 5000)]
        interval_ms: u64,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        duration_s: Option<u64>,
        #[arg(long, default_value_t = 3)]
        mqtt_version: u8,
    },
}

/// jemalloc, with background threads that give freed pages back to the system (see
/// `rampart-alloc`): the server's memory follows its live connections, not the high-water mark of
/// a connection storm.
#[global_allocator]
static GLOBAL: rampart_alloc::Jemalloc = rampart_alloc::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type AnyResult<T = ()> = Result<T, String>;

fn load_config(data: &DataArgs) -> AnyResult<Config> {
    let mut cfg = Config::load(data.config.as_deref())?;
    if let Some(d) = &data.data {
        cfg.data_dir = d.clone();
    }
    Ok(cfg)
}

fn init_tracing(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.log.level));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cfg.log.format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

/// Open the data directory: create it (0700), load or create the master key, open the store.
/// Only `serving` reads files that the server alone uses (`webhooks.ca_file`: webhooks are
/// delivered by `serve`), so a bad path there does not break unrelated commands.
async fn open_core(cfg: &Config, serving: bool) -> AnyResult<(Core, bool)> {
    let dir = &cfg.data_dir;
    std::fs::create_dir_all(dir).map_err(|e| format!("data directory {}: {e}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    let (key, created) =
        MasterKey::load_or_create(&dir.join("master.key")).map_err(|e| e.to_string())?;
    let url = if cfg.store.url.is_empty() {
        format!("sqlite://{}", dir.join("rampart.db").display())
    } else {
        cfg.store.url.clone()
    };
    let options = rampart_store::StoreOptions {
        sqlite_cache_kib: cfg.store.sqlite_cache_kib,
        sqlite_writer_cache_kib: cfg.store.sqlite_writer_cache_kib,
    };
    let store = Store::open_with(&url, options)
        .await
        .map_err(|e| e.to_string())?;
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
        webhooks: cfg.webhooks.core(serving)?,
        mqtt_limits: cfg.mqtt.limits.clone(),
        uploads: rampart_core::device::uploads::UploadsConfig {
            dir: Some(dir.join("uploads")),
            max_allowlist_bytes: cfg.uploads.max_allowlist_bytes.max(1),
        },
        ..CoreConfig::default()
    };
    let core = Core::new(store, key, core_cfg);
    core.upgrade_at_rest(dir)
        .await
        .map_err(|e| format!("upgrading sealed values and the audit chain: {e}"))?;
    Ok((core, created))
}

async fn run(cli: Cli) -> AnyResult {
    match cli.cmd {
        Cmd::Serve {
            data,
            mqtt_tls_listen,
            mqtt_listen,
            http_listen,
            events_listen,
            metrics_listen,
        } => {
            let mut cfg = load_config(&data)?;
            if let Some(a) = mqtt_tls_listen {
                cfg.mqtt.tls_listen = a;
            }
            if let Some(a) = mqtt_listen {
                cfg.mqtt.listen = a;
            }
            if let Some(a) = http_listen {
                cfg.http.listen = a;
            }
            if let Some(a) = events_listen {
                cfg.events.listen = a;
            }
            if let Some(a) = metrics_listen {
                cfg.http.metrics_listen = a;
            }
            init_tracing(&cfg);
            serve(cfg).await
        }
        Cmd::Bench { cmd } => rampart_bench::run(cmd).await,
        Cmd::Audit {
            cmd: AuditCmd::Verify { data },
        } => {
            let cfg = load_config(&data)?;
            let (core, _) = open_core(&cfg, false).await?;
            let r = core.verify_audit_chain().await.map_err(|e| e.to_string());
            core.close_store().await;
            let r = r?;
            let older = if r.unchained > 0 {
                format!(
                    "; {} older entries predate the chain and are not verifiable",
                    r.unchained
                )
            } else {
                String::new()
            };
            match r.first_bad {
                None => {
                    println!("audit chain intact: {} entries verified{older}", r.entries);
                    Ok(())
                }
                Some(b) => Err(format!(
                    "audit chain broken at entry {}: {} ({} entries before it verified{older})",
                    b.id, b.reason, r.entries
                )),
            }
        }
        Cmd::Config {
            cmd: ConfigCmd::Generate,
        } => {
            let text = toml::to_string_pretty(&Config::default()).map_err(|e| e.to_string())?;
            print!("{text}");
            Ok(())
        }
        Cmd::Product {
            cmd: ProductCmd::Create { data, model },
        } => {
            let cfg = load_config(&data)?;
            let (core, _) = open_core(&cfg, false).await?;
            let text =
                std::fs::read_to_string(&model).map_err(|e| format!("{}: {e}", model.display()))?;
            let p = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", model.display()))?;
            let created = core.create_product(p).await.map_err(|e| e.to_string())?;
            core.audit(
                rampart_core::audit::AuditEvent::new(&Actor::cli(), "product.create", "ok")
                    .target(format!("product:{}", created.product_key)),
            )
            .await;
            println!(
                "{}",
                serde_json::to_string_pretty(&created).map_err(|e| e.to_string())?
            );
            Ok(())
        }
        Cmd::Factory {
            cmd:
                FactoryCmd::Issue {
                    data,
                    product,
                    count,
                    out,
                },
        } => {
            let cfg = load_config(&data)?;
            let (core, _) = open_core(&cfg, false).await?;
            let (batch, ids) = core
                .factory_issue(&product, count, &Actor::cli())
                .await
                .map_err(|e| e.to_string())?;
            let mut text = String::from("serial,device_secret\n");
            for i in &ids {
                text.push_str(&format!("{},{}\n", i.serial, i.secret.expose()));
            }
            rampart_core::secret::write_private(&out, text.as_bytes())
                .map_err(|e| format!("{}: {e}", out.display()))?;
            println!(
                "issued batch {batch}: {count} identities written to {} (mode 0600)",
                out.display()
            );
            Ok(())
        }
        Cmd::Factory {
            cmd:
                FactoryCmd::Allow {
                    data,
                    product,
                    file,
                },
        } => {
            let cfg = load_config(&data)?;
            let (core, _) = open_core(&cfg, false).await?;
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let ids: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned)
                .collect();
            let n = core
                .allowlist_add(&product, &ids, &Actor::cli())
                .await
                .map_err(|e| e.to_string())?;
            println!("allowlist of {product}: {n} new of {} submitted", ids.len());
            Ok(())
        }
        Cmd::Device {
            cmd:
                DeviceCmd::Simulate {
                    server,
                    ca,
                    batch,
                    count,
                    api,
                    product,
                    model,
                    interval_ms,
                    duration_s,
                    mqtt_version,
                },
        } => {
            init_tracing(&Config::default());
            let host = server
                .rsplit_once(':')
                .map(|(h, _)| h)
                .unwrap_or(&server)
                .to_owned();
            let opts = rampart_device::simulate::SimulateOptions {
                api: api.unwrap_or_else(|| format!("https://{host}:8443")),
                server,
                ca,
                batch,
                count,
                product,
                model,
                interval: Duration::from_millis(interval_ms),
                protocol: if mqtt_version == 5 {
                    rampart_device::client::Protocol::V5
                } else {
                    rampart_device::client::Protocol::V311
                },
                duration: duration_s.map(Duration::from_secs),
            };
            let report = rampart_device::simulate::simulate(opts)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "{}",
                serde_json::to_string(&report).map_err(|e| e.to_string())?
            );
            Ok(())
        }
    }
}

async fn serve(cfg: Config) -> AnyResult {
    let (core, _) = open_core(&cfg, true).await?;
    let dir = cfg.data_dir.clone();
    core.set_notifier(std::sync::Arc::new(cfg.notify.notifier(&dir)?));
    core.set_oidc_providers(cfg.oidc.providers()?)?;
    let quotas = core.load_quotas().await.map_err(|e| e.to_string())?;
    tracing::debug!(
        counters = quotas,
        "quota counters of running windows loaded"
    );
    let offline = core.reset_presence().await.map_err(|e| e.to_string())?;
    if offline > 0 {
        tracing::info!(devices = offline, "marked devices offline after restart");
    }
    let admin_env = std::env::var("RAMPART_ADMIN_TOKEN").ok();
    if let Some(token) = core
        .init_admin_token(admin_env.as_deref())
        .await
        .map_err(|e| e.to_string())?
    {
        if admin_env.is_none() {
            println!(
                "bootstrap admin token (shown once; only its hash is stored): {}",
                token.expose()
            );
        } else {
            println!("bootstrap admin token set from RAMPART_ADMIN_TOKEN");
        }
    }
    let tls_files = tls::load_or_create(&cfg, &dir)?;
    println!(
        "TLS certificate {} SHA-256 fingerprint {}",
        tls_files.cert_path.display(),
        tls_files.fingerprint
    );
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_files.server_config.clone());

    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .ok();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let gw_cfg = rampart_gateway::GatewayConfig {
        max_packet_size: cfg.mqtt.max_packet_size,
        connect_timeout: Duration::from_secs(cfg.mqtt.connect_timeout_secs),
        max_connections: cfg.mqtt.max_connections,
        max_subscriptions: cfg.mqtt.max_subscriptions,
        max_topic_len: cfg.mqtt.max_topic_len,
        max_inflight: cfg.mqtt.max_inflight.max(1),
        max_session_expiry_secs: cfg.mqtt.max_session_expiry_secs,
        park_idle_after: (cfg.mqtt.park_idle_after_ms > 0)
            .then(|| std::time::Duration::from_millis(cfg.mqtt.park_idle_after_ms)),
        write_timeout: Duration::from_secs(cfg.limits.write_timeout_s.max(1)),
        ..Default::default()
    };
    let mut listeners = serde_json::Map::new();
    let mut tasks = Vec::new();
    for (name, addr, tls) in [
        ("mqtt_tls", &cfg.mqtt.tls_listen, true),
        ("mqtt", &cfg.mqtt.listen, false),
    ] {
        if addr.is_empty() {
            listeners.insert(name.into(), serde_json::Value::Null);
            continue;
        }
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("bind {name} {addr}: {e}"))?;
        let local = l.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(listener = name, addr = %local, "MQTT listening");
        listeners.insert(name.into(), local.to_string().into());
        let acc = tls.then(|| acceptor.clone());
        tasks.push(tokio::spawn(rampart_gateway::serve(
            l,
            acc,
            core.clone(),
            gw_cfg.clone(),
            stopped(),
        )));
    }
    let l = tokio::net::TcpListener::bind(&cfg.http.listen)
        .await
        .map_err(|e| format!("bind http {}: {e}", cfg.http.listen))?;
    let local = l.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(addr = %local, tls = cfg.http.tls, "HTTP API listening");
    listeners.insert("http".into(), local.to_string().into());
    listeners.insert("http_tls".into(), cfg.http.tls.into());
    let http_limits = rampart_api::HttpLimits {
        write_timeout: Duration::from_secs(cfg.limits.write_timeout_s.max(1)),
        ..cfg.http.limits()
    };
    let state = rampart_api::AppState {
        core: core.clone(),
        metrics,
        http: http_limits.clone(),
    };
    if cfg.http.metrics_listen.is_empty() {
        listeners.insert("metrics".into(), serde_json::Value::Null);
    } else {
        let l = tokio::net::TcpListener::bind(&cfg.http.metrics_listen)
            .await
            .map_err(|e| format!("bind metrics {}: {e}", cfg.http.metrics_listen))?;
        let local = l.local_addr().map_err(|e| e.to_string())?;
        if !is_private(local.ip()) {
            tracing::warn!(addr = %local, "the unauthenticated metrics listener is on a public address");
        }
        tracing::info!(addr = %local, "metrics listening (no authentication)");
        listeners.insert("metrics".into(), local.to_string().into());
        let app = rampart_api::metrics_router(state.clone());
        let limits = http_limits.clone();
        let stop = stopped();
        tasks.push(tokio::spawn(async move {
            rampart_api::serve_with(l, None, app, &limits, stop).await
        }));
    }
    let app = rampart_api::router(state);
    // The API's TLS offers HTTP/2 by ALPN when it is on; the other listeners offer no ALPN.
    let http_tls = cfg.http.tls.then(|| {
        let mut sc = (*tls_files.server_config).clone();
        sc.alpn_protocols = if cfg.http.http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(sc))
    });
    let http_stop = stopped();
    tasks.push(tokio::spawn(async move {
        rampart_api::serve_with(l, http_tls, app, &http_limits, http_stop).await
    }));
    if cfg.events.listen.is_empty() {
        listeners.insert("events".into(), serde_json::Value::Null);
    } else {
        let l = tokio::net::TcpListener::bind(&cfg.events.listen)
            .await
            .map_err(|e| format!("bind events {}: {e}", cfg.events.listen))?;
        let local = l.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(addr = %local, "event stream listening");
        listeners.insert("events".into(), local.to_string().into());
        tasks.push(tokio::spawn(rampart_api::serve_events(
            l,
            acceptor.clone(),
            core.clone(),
            rampart_api::EventsTcpConfig {
                max_connections: cfg.events.max_connections,
                connections_per_ip: cfg.events.limits.connections_per_ip,
                write_timeout: Duration::from_secs(cfg.limits.write_timeout_s.max(1)),
                ..Default::default()
            },
            stopped(),
        )));
    }
    core.start_event_stream()
        .await
        .map_err(|e| format!("event stream: {e}"))?;
    let hooks = core
        .start_webhooks()
        .await
        .map_err(|e| format!("webhooks: {e}"))?;
    tracing::debug!(webhooks = hooks, "webhook deliveries started");
    write_listeners(&dir, &serde_json::Value::Object(listeners))?;

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

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    // After the listeners: the last calls are counted before the final flush.
    let _ = flush_stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), flusher).await;
    core.close_store().await;
    Ok(())
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

fn write_listeners(dir: &Path, v: &serde_json::Value) -> AnyResult {
    let tmp = dir.join("listeners.json.tmp");
    std::fs::write(&tmp, v.to_string()).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, dir.join("listeners.json")).map_err(|e| e.to_string())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
