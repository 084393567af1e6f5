//! `rampart device`: devices through the running server's API (`list`, `show`, `command`) and the
//! device simulator. Each subcommand is one variant of [`DeviceCmd`] with its own argument struct
//! and one arm of [`run`].

use crate::commands::product::{footer, items, ListArgs};
use crate::common::{init_tracing, load_config, open_core, AnyResult, DataArgs};
use crate::http::{segment, Api, Remote};
use crate::output::{self, cell, time};
use clap::{Args, Subcommand};
use rampart_server::Config;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Subcommand, Debug)]
pub(crate) enum DeviceCmd {
    /// List devices (through the API).
    List(DeviceListArgs),
    /// Show one device and its latest reported values (through the API).
    Show(ShowArgs),
    /// Send a command to a device and print its acknowledgement (through the API).
    Command(CommandArgs),
    /// Register and run simulated devices from a factory batch.
    Simulate(SimulateArgs),
    /// Say which check a device's CONNECT credentials fail (offline, from the data directory;
    /// changes nothing: no timestamp is used up, no limit counted).
    Explain(ExplainArgs),
}

#[derive(Args, Debug)]
pub(crate) struct ExplainArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The device's id (did); checked against the user name's.
    #[arg(long)]
    did: Option<String>,
    /// The CONNECT user name: `DID|hmac-sha256|TS`, or the bare device id of a static password.
    #[arg(long)]
    username: String,
    /// The CONNECT password.
    #[arg(long)]
    password: String,
    /// The MQTT client id (default: the device id).
    #[arg(long)]
    client_id: Option<String>,
    /// The CONNECT would come over the plain-TCP listener (static passwords need TLS).
    #[arg(long)]
    plain: bool,
}

#[derive(Args, Debug)]
pub(crate) struct DeviceListArgs {
    #[command(flatten)]
    list: ListArgs,
    /// Only the devices of this product.
    #[arg(long)]
    product: Option<String>,
}

#[derive(Args, Debug)]
pub(crate) struct ShowArgs {
    #[command(flatten)]
    remote: Remote,
    /// The device's id (did).
    did: String,
}

#[derive(Args, Debug)]
#[group(id = "what", required = true, multiple = false, args = ["set", "action"])]
pub(crate) struct CommandArgs {
    #[command(flatten)]
    remote: Remote,
    /// The device's id (did).
    did: String,
    /// Data points to set, as a JSON object, e.g. '{"power":true}'.
    #[arg(long)]
    set: Option<String>,
    /// An action instead: reboot, factory_reset or wipe.
    #[arg(long)]
    action: Option<String>,
}

#[derive(Args, Debug)]
pub(crate) struct SimulateArgs {
    /// MQTT TLS address, HOST:PORT.
    #[arg(long)]
    server: String,
    /// CA/certificate PEM to trust.
    #[arg(long)]
    ca: PathBuf,
    /// Factory batch CSV (`serial,device_secret` rows, as `rampart factory issue` writes).
    #[arg(long)]
    batch: PathBuf,
    /// How many devices of the batch to run.
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
    /// Milliseconds between two reports of a device.
    #[arg(long, default_value_t = 5000)]
    interval_ms: u64,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration_s: Option<u64>,
    /// MQTT protocol version: 3 (3.1.1) or 5.
    #[arg(long, default_value_t = 3)]
    mqtt_version: u8,
    /// Run the OTA client too, trusting this product OTA key (base64, from
    /// `GET /v1/products/{product_key}/ota-key`).
    #[arg(long)]
    ota_key: Option<String>,
    /// The firmware version the devices run at first (with `--ota-key`).
    #[arg(long, default_value = "1.0.0")]
    ota_version: String,
    /// Where the devices keep their A/B slots (with `--ota-key`; default: a directory under the
    /// system's temporary directory).
    #[arg(long)]
    ota_dir: Option<PathBuf>,
    /// Seconds between two OTA checks of an online device (besides the one at every connect).
    #[arg(long, default_value_t = 60)]
    ota_check_s: u64,
}

/// The simulator's OTA settings from the flags.
fn ota_options(
    key: Option<&str>,
    version: String,
    dir: Option<PathBuf>,
) -> Result<Option<rampart_device::simulate::SimOta>, String> {
    use base64::Engine;
    let Some(key) = key else { return Ok(None) };
    let key: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or("--ota-key: the base64 of a 32-byte Ed25519 public key")?;
    if rampart_proto::ota::Version::parse(&version).is_none() {
        return Err("--ota-version: a semantic version".into());
    }
    let dir = dir.unwrap_or_else(|| std::env::temp_dir().join("rampart-sim-ota"));
    Ok(Some(rampart_device::simulate::SimOta {
        key,
        version,
        dir,
        check_every: Duration::from_secs(60),
    }))
}

pub(crate) async fn run(cmd: DeviceCmd) -> AnyResult {
    match cmd {
        DeviceCmd::List(a) => list(a).await,
        DeviceCmd::Show(a) => show(a).await,
        DeviceCmd::Command(a) => command(a).await,
        DeviceCmd::Simulate(a) => simulate(a).await,
        DeviceCmd::Explain(a) => explain(a).await,
    }
}

async fn list(a: DeviceListArgs) -> AnyResult {
    let api = Api::new(&a.list.remote)?;
    let mut path = format!("/v1/devices?page={}&limit={}", a.list.page, a.list.limit);
    if let Some(p) = &a.product {
        path.push_str(&format!("&product_key={}", segment(p)));
    }
    let v = api.get(&path).await?;
    if api.json {
        output::json(&v);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = items(&v)
        .iter()
        .map(|d| {
            vec![
                cell(&d["did"]),
                cell(&d["product_key"]),
                cell(&d["hardware_id"]),
                online(&d["online"]),
                time(&d["last_seen"]),
                time(&d["created_at"]),
            ]
        })
        .collect();
    output::table(
        &[
            "DID",
            "PRODUCT_KEY",
            "HARDWARE_ID",
            "ONLINE",
            "LAST_SEEN",
            "CREATED",
        ],
        &rows,
    );
    footer(&v);
    Ok(())
}

fn online(v: &Value) -> String {
    if v.as_bool() == Some(true) {
        "online".into()
    } else {
        "offline".into()
    }
}

async fn show(a: ShowArgs) -> AnyResult {
    let api = Api::new(&a.remote)?;
    let d = api.get(&format!("/v1/devices/{}", segment(&a.did))).await?;
    if api.json {
        output::json(&d);
        return Ok(());
    }
    output::fields(&[
        ("did", cell(&d["did"])),
        ("product_key", cell(&d["product_key"])),
        ("hardware_id", cell(&d["hardware_id"])),
        ("status", online(&d["online"])),
        ("last_seen", time(&d["last_seen"])),
        ("created", time(&d["created_at"])),
    ]);
    let state: Vec<Vec<String>> = d["state"]
        .as_object()
        .map(|o| o.iter().map(|(k, v)| vec![k.clone(), cell(v)]).collect())
        .unwrap_or_default();
    if !state.is_empty() {
        println!();
        output::table(&["POINT", "VALUE"], &state);
    }
    Ok(())
}

async fn command(a: CommandArgs) -> AnyResult {
    let body = match (&a.set, &a.action) {
        (Some(set), _) => {
            let v: Value =
                serde_json::from_str(set).map_err(|e| format!("--set is not JSON: {e}"))?;
            if !v.is_object() {
                return Err("--set must be a JSON object, e.g. '{\"power\":true}'".into());
            }
            json!({ "set": v })
        }
        (None, Some(action)) => json!({ "action": action }),
        (None, None) => return Err("give --set or --action".into()),
    };
    let api = Api::new(&a.remote)?;
    let v = api
        .post(&format!("/v1/devices/{}/commands", segment(&a.did)), &body)
        .await?;
    if api.json {
        output::json(&v);
        return Ok(());
    }
    let mut pairs = vec![("id", cell(&v["id"])), ("status", cell(&v["status"]))];
    if !v["message"].is_null() {
        pairs.push(("message", cell(&v["message"])));
    }
    output::fields(&pairs);
    // A device that answered with an error failed the command: say so in the exit status too.
    if v["status"] == "error" {
        return Err("the device refused the command".into());
    }
    Ok(())
}

async fn simulate(a: SimulateArgs) -> AnyResult {
    init_tracing(&Config::default());
    let host = a
        .server
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(&a.server)
        .to_owned();
    let opts = rampart_device::simulate::SimulateOptions {
        api: a.api.unwrap_or_else(|| format!("https://{host}:8443")),
        server: a.server,
        ca: a.ca,
        batch: a.batch,
        count: a.count,
        product: a.product,
        model: a.model,
        interval: Duration::from_millis(a.interval_ms),
        protocol: if a.mqtt_version == 5 {
            rampart_device::client::Protocol::V5
        } else {
            rampart_device::client::Protocol::V311
        },
        duration: a.duration_s.map(Duration::from_secs),
        ota: ota_options(a.ota_key.as_deref(), a.ota_version, a.ota_dir)?.map(|mut o| {
            o.check_every = Duration::from_secs(a.ota_check_s.max(1));
            o
        }),
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

/// Run the CONNECT checks on the given credentials and print each: what passed, then the one that
/// failed (exit 1), or that the CONNECT would be accepted.
async fn explain(a: ExplainArgs) -> AnyResult {
    let cfg = load_config(&a.data)?;
    let core = open_core(&cfg).await?;
    let named = a.username.split('|').next().unwrap_or_default();
    if let Some(did) = a.did.as_deref().filter(|d| *d != named) {
        core.close_store().await;
        return Err(format!("the user name names device `{named}`, not `{did}`"));
    }
    let steps = core
        .explain_credential(a.client_id.as_deref(), &a.username, &a.password, !a.plain)
        .await;
    core.close_store().await;
    let mut refused = None;
    for step in &steps {
        match &step.outcome {
            Ok(note) => println!("ok      {:<16} {note}", step.check),
            Err(why) => {
                println!("REFUSED {:<16} {why}", step.check);
                refused = Some(why.label());
            }
        }
    }
    match refused {
        None => {
            println!(
                "a CONNECT with these credentials would be accepted (if no connect limit applies)"
            );
            Ok(())
        }
        Some(label) => Err(format!("refused: {label}")),
    }
}
