//! `rampart serve`: build the app, tell the operator what only this start can tell (a generated
//! admin token, the certificate's fingerprint), and serve until SIGINT or SIGTERM.

use crate::common::{init_tracing, load_config, AnyResult, DataArgs};
use clap::{Args, ValueEnum};
use rampart_server::{AdminToken, App, Config};

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
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
    /// Log format on stderr: `pretty` (one readable line per event, in colour on a terminal) or
    /// `json` (one JSON object per line). Overrides `log.format`; default pretty.
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    /// Readable lines (the configuration's `text`).
    Pretty,
    /// One JSON object per line.
    Json,
}

pub(crate) async fn run(a: ServeArgs) -> AnyResult {
    let mut cfg = load_config(&a.data)?;
    if let Some(v) = a.mqtt_tls_listen {
        cfg.mqtt.tls_listen = v;
    }
    if let Some(v) = a.mqtt_listen {
        cfg.mqtt.listen = v;
    }
    if let Some(v) = a.http_listen {
        cfg.http.listen = v;
    }
    if let Some(v) = a.events_listen {
        cfg.events.listen = v;
    }
    if let Some(v) = a.metrics_listen {
        cfg.http.metrics_listen = v;
    }
    match a.log_format {
        Some(LogFormat::Pretty) => cfg.log.format = "text".into(),
        Some(LogFormat::Json) => cfg.log.format = "json".into(),
        None => {}
    }
    init_tracing(&cfg);
    serve(cfg).await
}

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
