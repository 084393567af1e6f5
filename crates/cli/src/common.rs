//! What the offline commands share: the data directory and configuration arguments, loading the
//! configuration, starting tracing and opening the data directory's store. Nothing here talks to
//! a running server (that is `http`).

use clap::Args;
use rampart_core::Core;
use rampart_server::{Config, OpenFor};
use std::path::PathBuf;

/// A command's failure, as the line printed after `error:`.
pub(crate) type AnyResult<T = ()> = Result<T, String>;

/// Where the server's files are.
#[derive(Args, Clone, Debug)]
pub(crate) struct DataArgs {
    /// Data directory (default ./rampart-data).
    #[arg(long = "data", env = "RAMPART_DATA", global = true)]
    pub(crate) data: Option<PathBuf>,
    /// TOML configuration file.
    #[arg(long, env = "RAMPART_CONFIG", global = true)]
    pub(crate) config: Option<PathBuf>,
}

/// The configuration from the file and `RAMPART_*` variables, with `--data` applied.
pub(crate) fn load_config(data: &DataArgs) -> AnyResult<Config> {
    let mut cfg = Config::load(data.config.as_deref()).map_err(|e| e.to_string())?;
    if let Some(d) = &data.data {
        cfg.data_dir = d.clone();
    }
    Ok(cfg)
}

pub(crate) fn init_tracing(cfg: &Config) {
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
pub(crate) async fn open_core(cfg: &Config) -> AnyResult<Core> {
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
