//! `rampart factory`: device identities for production lines, written straight into the data
//! directory's store, or (`issue --server`) issued by a running server to a factory line that
//! holds only a factory credential.

use crate::common::{load_config, open_core, AnyResult, DataArgs};
use clap::Subcommand;
use rampart_core::access::access_keys::{canonical_string, signature, SCHEME};
use rampart_core::audit::Actor;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The most identities one signed request issues (the API's batch limit).
const SERVER_BATCH: usize = 10_000;

#[derive(Subcommand, Debug)]
pub(crate) enum FactoryCmd {
    /// Issue a batch of one-device-one-secret identities; writes `serial,device_secret` rows.
    /// Offline into the data directory (`--product`), or from a running server with a factory
    /// credential (`--server` and `--credential`), which needs no data directory.
    Issue {
        #[command(flatten)]
        data: DataArgs,
        /// Product key the identities belong to (offline issue).
        #[arg(long, required_unless_present = "server", conflicts_with = "server")]
        product: Option<String>,
        /// API base URL of a running server, e.g. https://rampart.example:8443: issue with a
        /// factory credential (the credential's product), in signed requests of at most 10,000.
        #[arg(long, requires = "credential")]
        server: Option<String>,
        /// File holding the factory credential as `POST /v1/products/{product_key}/factory-credentials`
        /// answered it (JSON with `credential_id` and `secret`).
        #[arg(long, requires = "server")]
        credential: Option<PathBuf>,
        /// PEM certificate to trust for --server besides the web's public roots.
        #[arg(long, requires = "server")]
        ca: Option<PathBuf>,
        /// How many identities to issue.
        #[arg(long)]
        count: usize,
        /// CSV file to write (made mode 0600: it holds the device secrets).
        #[arg(long)]
        out: PathBuf,
    },
    /// Add MAC/IMEI ids (one per line) to a product's allowlist.
    Allow {
        #[command(flatten)]
        data: DataArgs,
        /// Product key whose allowlist grows.
        #[arg(long)]
        product: String,
        /// Text file of ids, one per line; blank lines and lines starting with `#` are skipped.
        #[arg(long)]
        file: PathBuf,
    },
}

pub(crate) async fn run(cmd: FactoryCmd) -> AnyResult {
    match cmd {
        FactoryCmd::Issue {
            data,
            product,
            server,
            credential,
            ca,
            count,
            out,
        } => {
            if let (Some(server), Some(credential)) = (server, credential) {
                return issue_remote(&server, &credential, ca.as_deref(), count, &out).await;
            }
            let product = product.ok_or("--product is needed (or --server and --credential)")?;
            let cfg = load_config(&data)?;
            let core = open_core(&cfg).await?;
            let (batch, ids) = core
                .factory_issue(&product, count, &Actor::cli())
                .await
                .map_err(|e| e.to_string())?;
            let rows: Vec<(String, String)> = ids
                .iter()
                .map(|i| (i.serial.clone(), i.secret.expose().to_owned()))
                .collect();
            write_csv(&out, &rows)?;
            println!(
                "issued batch {batch}: {count} identities written to {} (mode 0600)",
                out.display()
            );
            Ok(())
        }
        FactoryCmd::Allow {
            data,
            product,
            file,
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
    }
}

/// `serial,device_secret` rows into `out`, mode 0600.
fn write_csv(out: &Path, rows: &[(String, String)]) -> AnyResult {
    let mut text = String::from("serial,device_secret\n");
    for (serial, secret) in rows {
        text.push_str(&format!("{serial},{secret}\n"));
    }
    rampart_core::secret::write_private(out, text.as_bytes())
        .map_err(|e| format!("{}: {e}", out.display()))
}

/// Issue `count` identities from a running server with a factory credential, in signed requests
/// of at most [`SERVER_BATCH`]; the CSV is written only when every batch was issued.
async fn issue_remote(
    server: &str,
    credential: &Path,
    ca: Option<&Path>,
    count: usize,
    out: &Path,
) -> AnyResult {
    if count == 0 {
        return Err("--count must be at least 1".into());
    }
    let text = std::fs::read_to_string(credential)
        .map_err(|e| format!("{}: {e}", credential.display()))?;
    let cred: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not JSON ({e})", credential.display()))?;
    let (Some(id), Some(secret)) = (cred["credential_id"].as_str(), cred["secret"].as_str()) else {
        return Err(format!(
            "{}: expected the JSON of a new factory credential, with `credential_id` and `secret`",
            credential.display()
        ));
    };
    let mut b = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .connect_timeout(std::time::Duration::from_secs(10));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{}: {e}", ca.display()))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    let client = b.build().map_err(|e| e.to_string())?;
    let url = reqwest::Url::parse(server.trim_end_matches('/'))
        .and_then(|u| u.join("/v1/factory/batches"))
        .map_err(|e| format!("--server {server}: {e}"))?;
    let mut rows = Vec::with_capacity(count);
    let mut batches = Vec::new();
    let mut left = count;
    while left > 0 {
        let n = left.min(SERVER_BATCH);
        let body =
            serde_json::to_vec(&serde_json::json!({ "count": n })).map_err(|e| e.to_string())?;
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_millis()
            .to_string();
        let nonce = rampart_core::secret::random_hex(16);
        let canonical = canonical_string("POST", url.path(), "", &body, &ts, &nonce);
        let auth = format!(
            "{SCHEME} key_id={id}, ts={ts}, nonce={nonce}, signature={}",
            signature(secret.as_bytes(), &canonical)
        );
        let resp = client
            .post(url.clone())
            .header(reqwest::header::AUTHORIZATION, auth)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let done = if batches.is_empty() {
                String::new()
            } else {
                format!(
                    " (batches {} were issued before; their identities are not written)",
                    batches.join(", ")
                )
            };
            return Err(
                match (v["error"]["code"].as_str(), v["error"]["message"].as_str()) {
                    (Some(code), Some(msg)) => format!("{} {code}: {msg}{done}", status.as_u16()),
                    _ => format!("{} from {url}{done}", status.as_u16()),
                },
            );
        }
        for i in v["identities"].as_array().into_iter().flatten() {
            if let (Some(s), Some(d)) = (i["serial"].as_str(), i["device_secret"].as_str()) {
                rows.push((s.to_owned(), d.to_owned()));
            }
        }
        batches.push(v["batch_id"].as_str().unwrap_or("?").to_owned());
        left -= n;
    }
    write_csv(out, &rows)?;
    println!(
        "issued batch{} {}: {} identities written to {} (mode 0600)",
        if batches.len() > 1 { "es" } else { "" },
        batches.join(", "),
        rows.len(),
        out.display()
    );
    Ok(())
}
