//! `rampart bench`: a load generator for Rampart and any MQTT broker.
//!
//! Lean by design: one small tokio task per connection speaking MQTT 3.1.1 or 5.0 through the
//! `rampart-proto` codec, no per-connection read buffer while idle (reads go through a per-thread
//! scratch), source addresses spread over 127.0.0.0/8, and optionally several worker processes (the
//! binary re-executes itself as `bench worker`) so one run can drive more connections than one
//! process may hold open. Every run is bounded by `--timeout-secs` and ends with a JSON report.
//!
//! The binary wires it as `Bench { #[command(subcommand)] cmd: BenchCmd }` calling [`run`].

mod certs;
mod client;
mod coord;
mod hist;
mod net;
mod observers;
mod ota;
mod procfs;
mod progress;
mod rampart;
mod report;
mod worker;

pub use hist::Histogram;
pub use ota::{OtaDownloadArgs, OtaReport, PhaseReport};
pub use report::{
    CommandReport, ConnectReport, GeneratorReport, IngestReport, Latency, RegistrationReport,
    Report, ServerReport,
};

use clap::{Args, Subcommand};
use std::path::PathBuf;

/// `rampart bench ...`
#[derive(Debug, Clone, Subcommand)]
pub enum BenchCmd {
    /// Ramp up N connections, hold them idle, measure connect latency and the server's idle cost.
    Connect(ConnectArgs),
    /// M devices publish telemetry at a total rate; measure acknowledgements and latency.
    Ingest(IngestArgs),
    /// N devices answer commands sent to random devices; measure the round trip.
    Command(CommandArgs),
    /// N devices download a firmware image at once, each cut once and resumed with `Range`:
    /// bytes per second served and the server's memory, against a peer server if given.
    OtaDownload(OtaDownloadArgs),
    /// Internal: one worker process of a `--processes P` run (spec on stdin, events on stdout).
    #[command(hide = true)]
    Worker,
}

#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Connections to open.
    #[arg(long)]
    pub connections: usize,
    /// Connections started per second.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds to hold every connection idle once all are up.
    #[arg(long, default_value_t = 30)]
    pub hold_secs: u64,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// Devices (connections) publishing.
    #[arg(long)]
    pub devices: usize,
    /// Messages per second, all devices together.
    #[arg(long)]
    pub rate: f64,
    /// QoS of the telemetry: 0 or 1.
    #[arg(long, value_parser = parse_qos)]
    pub qos: u8,
    /// Seconds of publishing.
    #[arg(long)]
    pub duration_secs: u64,
    /// Payload size for brokers other than Rampart (at least 16: timestamp, device, sequence).
    #[arg(long, default_value_t = 64)]
    pub payload_bytes: usize,
    /// Connections started per second while the devices come up.
    #[arg(long, default_value_t = 1000.0)]
    pub connect_rate: f64,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Args)]
pub struct CommandArgs {
    /// Devices (connections) answering commands.
    #[arg(long)]
    pub devices: usize,
    /// Commands to send in total.
    #[arg(long)]
    pub commands: u64,
    /// Commands sent per second.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Most commands in flight at once (Rampart: concurrent HTTP requests).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Connections started per second while the devices come up.
    #[arg(long, default_value_t = 1000.0)]
    pub connect_rate: f64,
    #[command(flatten)]
    pub common: Common,
}

/// Options shared by every scenario.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// MQTT server, HOST:PORT (with --tls, HOST is the name checked against the certificate).
    #[arg(long)]
    pub target: String,
    /// Connect over TLS.
    #[arg(long)]
    pub tls: bool,
    /// Devices speak Rampart's secure-session layer (Noise, `docs/protocol.md`) on its plain-TCP
    /// listener: the handshake is part of each connect. Needs --rampart; not with --tls.
    #[arg(long, conflicts_with = "tls")]
    pub noise: bool,
    /// Present a client certificate on every TLS connection (mutual TLS), issued by this CA just
    /// before the connect: a new P-256 key, CN = the device's hardware id (`bench-N` for other
    /// brokers). FILE holds the CA certificate and its PKCS#8 private key, PEM. With --rampart the
    /// devices belong to a certificate product (`x509`) that trusts this CA and send no password.
    #[arg(long, requires = "tls", value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// CA / certificate PEM to trust (TLS and the Rampart HTTPS API). With --rampart defaults to
    /// DATA/tls/cert.pem.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// MQTT protocol: 3 (3.1.1) or 5.
    #[arg(long, default_value_t = 3, value_parser = parse_mqtt_version)]
    pub mqtt_version: u8,
    /// Connect as provisioned Rampart devices (needs --data; --api defaults from
    /// DATA/listeners.json).
    #[arg(long)]
    pub rampart: bool,
    /// Rampart data directory (opened in-process to create the bench product and factory batches).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The server's TOML configuration file, read with `RAMPART_*` variables as `rampart serve`
    /// reads them, so provisioning opens the store the server uses (`store.url`).
    #[arg(long, env = "RAMPART_CONFIG")]
    pub config: Option<PathBuf>,
    /// Rampart HTTP API base URL, e.g. https://localhost:8443.
    #[arg(long)]
    pub api: Option<String>,
    /// Rampart admin token (for `command`).
    #[arg(long, env = "RAMPART_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Cache of provisioned identities (`did,secret` lines), reused across runs; default
    /// DATA/bench-identities.csv.
    #[arg(long)]
    pub identities: Option<PathBuf>,
    /// MQTT keepalive; idle connections send PINGREQ at this interval.
    #[arg(long, default_value_t = 60)]
    pub keepalive_secs: u16,
    /// Server process to sample: RSS (/proc/PID/status VmRSS) and CPU (/proc/PID/stat).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Loopback source addresses to spread connections over: 127.0.0.2, 127.0.0.3, ... (each has
    /// its own ephemeral ports). 0 = let the kernel choose. Ignored for non-loopback targets.
    #[arg(long, default_value_t = 1)]
    pub source_ips: u32,
    /// Worker processes to split the connections over (1 = in-process).
    #[arg(long, default_value_t = 1)]
    pub processes: usize,
    /// Write the JSON report here (default: stdout).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write a markdown summary here.
    #[arg(long)]
    pub md: Option<PathBuf>,
    /// A name for this run in the reports.
    #[arg(long)]
    pub label: Option<String>,
    /// Hard deadline for the whole run.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
    /// Per-connection limit for TCP connect + TLS + CONNACK (and SUBACK).
    #[arg(long, default_value_t = 30)]
    pub connect_timeout_secs: u64,
}

fn parse_mqtt_version(s: &str) -> Result<u8, String> {
    match s {
        "3" | "3.1.1" | "4" => Ok(3),
        "5" | "5.0" => Ok(5),
        _ => Err("expected 3 (3.1.1) or 5".into()),
    }
}

fn parse_qos(s: &str) -> Result<u8, String> {
    match s {
        "0" => Ok(0),
        "1" => Ok(1),
        _ => Err("expected 0 or 1".into()),
    }
}

/// Run a bench command: the report goes to `--out` (or stdout) and `--md`, a summary to stderr.
pub async fn run(cmd: BenchCmd) -> Result<(), String> {
    match cmd {
        BenchCmd::Worker => {
            progress::set_quiet(true);
            worker::run_process().await
        }
        BenchCmd::OtaDownload(a) => ota::run(a).await,
        cmd => run_report(cmd).await.map(|_| ()),
    }
}

/// Like [`run`], and also hand the report back (tests, embedding).
pub async fn run_report(cmd: BenchCmd) -> Result<Report, String> {
    let plan = coord::Plan::from_cmd(cmd)?;
    let hard = std::time::Duration::from_secs(plan.common.timeout_secs.saturating_add(60));
    let report = tokio::time::timeout(hard, coord::run(plan.clone()))
        .await
        .map_err(|_| "the run overran its deadline and was abandoned".to_string())??;
    coord::emit(&plan.common, &report)?;
    Ok(report)
}

/// Silence progress bars and phase lines on stderr (for tests and embedding).
pub fn set_quiet(quiet: bool) {
    progress::set_quiet(quiet);
}
