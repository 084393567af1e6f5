//! The one Rampart binary: parses the command line, loads configuration, starts tracing, hands
//! the server to `rampart-server` and handles signals. No domain logic and no wiring live here.

use clap::{Args, Parser, Subcommand};
use rampart_core::audit::Actor;
use rampart_core::Core;
use rampart_server::{AdminToken, App, Config, OpenFor};
use std::path::PathBuf;
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
    let mut cfg = Config::load(data.config.as_deref()).map_err(|e| e.to_string())?;
    if let Some(d) = &data.data {
        cfg.data_dir = d.clone();
    }
    Ok(cfg)
}

fn init_tracing(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    // rustls warns of every client that names the server by IP address in SNI (stock MQTT
    // clients do, for `-h 127.0.0.1`): harmless, and nothing an operator can act on.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!("{},rustls::msgs::handshake=error", cfg.log.level))
    });
    // Colours only for a person at a terminal: a file or a log collector gets plain text.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if cfg.log.format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

/// Open the data directory for a one-shot command. Only `serve` makes a data directory: a
/// command pointed at the wrong place must not make an empty one with a new master key and then
/// report on it (an audit chain "intact" with nothing in it, say).
async fn open_core(cfg: &Config) -> AnyResult<Core> {
    let dir = &cfg.data_dir;
    if !dir.join("master.key").exists() {
        return Err(format!(
            "{} is not a Rampart data directory (it holds no master.key): point --data at the \
             server's, or start the server once with `rampart serve --data {}` to make one",
            dir.display(),
            dir.display()
        ));
    }
    rampart_server::open_core(cfg, OpenFor::Command)
        .await
        .map_err(|e| e.to_string())
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
            let core = open_core(&cfg).await?;
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
            let core = open_core(&cfg).await?;
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
            let core = open_core(&cfg).await?;
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
            let core = open_core(&cfg).await?;
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

/// `rampart serve`: build the app, tell the operator what only this start can tell (a generated
/// admin token, the certificate's fingerprint), and serve until SIGINT or SIGTERM.
async fn serve(cfg: Config) -> AnyResult {
    let app = App::build(cfg).await.map_err(|e| e.to_string())?;
    match app.admin_token() {
        AdminToken::Generated(token) => println!(
            "bootstrap admin token (shown once; only its hash is stored): {}",
            token.expose()
        ),
        AdminToken::Configured => println!("bootstrap admin token set from RAMPART_ADMIN_TOKEN"),
        AdminToken::Existing => {}
    }
    println!(
        "TLS certificate {} SHA-256 fingerprint {}",
        app.tls_cert_path().display(),
        app.tls_fingerprint()
    );
    app.run(shutdown_signal()).await.map_err(|e| e.to_string())
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
