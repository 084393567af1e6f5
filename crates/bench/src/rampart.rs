//! Rampart specifics: the identities cache, provisioning (bench product, factory batch, registration
//! over HTTPS in mode `device`), and commands through the HTTP API.

use crate::certs::Issuer;
use crate::client::now_ms;
use crate::hist::Histogram;
use crate::worker::Identity;
use indicatif::ProgressBar;
use rampart_core::audit::Actor;
use rampart_core::Core;
use rampart_proto::sign;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Header of an identities file: `# rampart-bench identities product=<key>`, then `did,secret`
/// lines.
const HEADER: &str = "# rampart-bench identities product=";
/// Header of a certificate devices' identities file (`--client-ca`), then `did,hardware_id` lines.
const CERT_HEADER: &str = "# rampart-bench cert-identities product=";
/// Registrations in flight at once.
pub(crate) const REGISTER_CONCURRENCY: usize = 32;

/// What provisioning did.
#[derive(Debug, Clone, Default)]
pub(crate) struct Provisioned {
    pub(crate) product_key: String,
    pub(crate) identities: Vec<Identity>,
    /// Taken from the cache file.
    pub(crate) reused: usize,
    /// Registered during this run.
    pub(crate) registered: usize,
    pub(crate) register_failed: usize,
    pub(crate) register_secs: f64,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) notes: Vec<String>,
}

/// Parse an identities file: the product key and its `did,secret` lines (`did,hardware_id` for
/// certificate devices).
pub(crate) fn parse_identities(text: &str, certs: bool) -> Option<(String, Vec<Identity>)> {
    let mut lines = text.lines();
    let header = if certs { CERT_HEADER } else { HEADER };
    let pk = lines.next()?.trim().strip_prefix(header)?.trim().to_owned();
    if pk.is_empty() {
        return None;
    }
    let ids = lines
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (did, second) = l.split_once(',')?;
            let (secret, hardware_id) = if certs {
                (String::new(), Some(second.trim().to_owned()))
            } else {
                (second.trim().to_owned(), None)
            };
            Some(Identity {
                did: did.trim().to_owned(),
                secret,
                hardware_id,
            })
        })
        .collect();
    Some((pk, ids))
}

pub(crate) fn format_identities(pk: &str, ids: &[Identity], certs: bool) -> String {
    let mut s = format!("{}{pk}\n", if certs { CERT_HEADER } else { HEADER });
    for i in ids {
        s.push_str(&i.did);
        s.push(',');
        match &i.hardware_id {
            Some(hw) if certs => s.push_str(hw),
            _ => s.push_str(&i.secret),
        }
        s.push('\n');
    }
    s
}

/// Write the identities file atomically, mode 0600.
fn save_identities(path: &Path, pk: &str, ids: &[Identity], certs: bool) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    rampart_core::secret::write_private(&tmp, format_identities(pk, ids, certs).as_bytes())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The default identities cache of a data directory.
pub(crate) fn default_identities_path(data: &Path, certs: bool) -> PathBuf {
    data.join(if certs {
        "bench-cert-identities.csv"
    } else {
        "bench-identities.csv"
    })
}

/// The HTTP API base URL from `DATA/listeners.json` (written by `rampart serve`).
pub(crate) fn api_from_listeners(data: &Path) -> Option<String> {
    let text = std::fs::read_to_string(data.join("listeners.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let addr = v["http"].as_str()?;
    let port = addr.rsplit_once(':')?.1;
    let scheme = if v["http_tls"].as_bool().unwrap_or(true) {
        "https"
    } else {
        "http"
    };
    Some(format!("{scheme}://localhost:{port}"))
}

/// Open a data directory as the `rampart` CLI does, with the server's configuration (`config`
/// file, then `RAMPART_*` variables: `store.url` names the store the server uses). Refuses a
/// directory without a master key, so a wrong path never creates a new key.
async fn open_core(data: &Path, config: Option<&Path>) -> Result<Core, String> {
    let key_path = data.join("master.key");
    if !key_path.exists() {
        return Err(format!(
            "{}: no master.key; is this a Rampart data directory?",
            data.display()
        ));
    }
    let mut cfg = rampart_server::Config::load(config).map_err(|e| e.to_string())?;
    cfg.data_dir = data.to_path_buf();
    rampart_server::open_core(&cfg, rampart_server::OpenFor::Command)
        .await
        .map_err(|e| e.to_string())
}

/// The bench product's definition; with `certs`, a product of certificate devices registered
/// just in time.
fn bench_product(certs: bool) -> Result<rampart_core::device::products::NewProduct, String> {
    let identity = if certs {
        serde_json::json!({"dynamic_registration": false, "allowlist": false, "x509": true, "x509_jit": true})
    } else {
        serde_json::json!({"dynamic_registration": false, "allowlist": false, "secure_session": true})
    };
    serde_json::from_value(serde_json::json!({
        "name": if certs { "bench-x509" } else { "bench" },
        "identity": identity,
        "report_limit_per_min": 60000,
        "datapoints": [
            {"name": "seq", "type": "int", "min": 0, "max": 2147483647},
            {"name": "temp", "type": "float", "min": -1000, "max": 1000, "step": 0.5},
            {"name": "power", "type": "bool", "writable": true}
        ]
    }))
    .map_err(|e| format!("bench product: {e}"))
}

/// Make sure `needed` registered identities exist: reuse the cache, create the product once, issue
/// a factory batch for the missing ones and register them over HTTPS. With an `issuer`, certificate
/// devices instead: the product trusts the issuer's CA and the missing devices are registered in
/// process by a certificate each, as a just-in-time registration over TLS would.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn provision(
    data: &Path,
    config: Option<&Path>,
    ids_path: &Path,
    api: &str,
    http: &reqwest::Client,
    needed: usize,
    deadline: Instant,
    issuer: Option<&Issuer>,
) -> Result<Provisioned, String> {
    let mut out = Provisioned::default();
    let certs = issuer.is_some();
    let cached = match std::fs::read_to_string(ids_path) {
        Ok(text) => Some(parse_identities(&text, certs).ok_or_else(|| {
            format!(
                "{}: not a rampart-bench identities file",
                ids_path.display()
            )
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("{}: {e}", ids_path.display())),
    };
    let core = open_core(data, config).await?;
    let prepared = match issuer {
        Some(issuer) => {
            prepare_certificates(&core, cached, data, ids_path, needed, issuer, &mut out).await
        }
        None => prepare(&core, cached, data, ids_path, needed, &mut out).await,
    };
    core.close_store().await;
    let (mut ids, todo) = prepared?;
    if todo.is_empty() {
        out.identities = ids;
        return Ok(out);
    }
    let pk = out.product_key.clone();
    let started = Instant::now();
    let bar = crate::progress::bar(todo.len() as u64, "register");
    let total = todo.len();
    let (registered, errors) = register_all(http, api, &pk, todo, deadline, &bar).await;
    bar.finish_and_clear();
    out.register_secs = started.elapsed().as_secs_f64();
    out.registered = registered.len();
    out.register_failed = total - registered.len();
    out.errors = errors;
    ids.extend(registered);
    save_identities(ids_path, &pk, &ids, false)?;
    out.identities = ids;
    Ok(out)
}

/// With the store open: find or create the product, and issue factory identities for what the
/// cache lacks. Returns the reusable identities and the `(serial, secret)` pairs to register.
async fn prepare(
    core: &Core,
    cached: Option<(String, Vec<Identity>)>,
    data: &Path,
    ids_path: &Path,
    needed: usize,
    out: &mut Provisioned,
) -> Result<(Vec<Identity>, Vec<(String, String)>), String> {
    let (pk, mut ids) = bench_product_of(core, cached, data, ids_path, false, out).await?;
    out.reused = ids.len().min(needed);
    if ids.len() >= needed {
        ids.truncate(needed);
        return Ok((ids, Vec::new()));
    }
    let mut missing = needed - ids.len();
    let mut todo = Vec::with_capacity(missing);
    while missing > 0 {
        let n = missing.min(rampart_core::device::registry::MAX_BATCH);
        let (_, batch) = core
            .factory_issue(&pk, n, &Actor::cli())
            .await
            .map_err(|e| format!("factory issue: {e}"))?;
        todo.extend(
            batch
                .into_iter()
                .map(|f| (f.serial, f.secret.expose().to_owned())),
        );
        missing -= n;
    }
    Ok((ids, todo))
}

/// The cached product and identities when the store still has that product, else a new bench
/// product with no identities yet.
async fn bench_product_of(
    core: &Core,
    cached: Option<(String, Vec<Identity>)>,
    data: &Path,
    ids_path: &Path,
    certs: bool,
    out: &mut Provisioned,
) -> Result<(String, Vec<Identity>), String> {
    let (pk, ids) = match cached {
        Some((pk, ids)) if core.product(&pk).await.is_ok() => (pk, ids),
        other => {
            if let Some((pk, _)) = other {
                let note = format!(
                    "identities file {} names product {pk}, which {} does not have: started a new one",
                    ids_path.display(),
                    data.display()
                );
                eprintln!("warning: {note}");
                out.notes.push(note);
            }
            let created = core
                .create_product(bench_product(certs)?)
                .await
                .map_err(|e| format!("create the bench product: {e}"))?;
            save_identities(ids_path, &created.product_key, &[], certs)?;
            (created.product_key, Vec::new())
        }
    };
    out.product_key = pk.clone();
    Ok((pk, ids))
}

/// [`prepare`] for certificate devices: the product trusts the issuer's CA, and each missing
/// device is registered by presenting a certificate for a new hardware id, through the same
/// checks (and just-in-time registration) as a CONNECT with that certificate. Everything is
/// done here, so nothing is left to register over HTTPS.
async fn prepare_certificates(
    core: &Core,
    cached: Option<(String, Vec<Identity>)>,
    data: &Path,
    ids_path: &Path,
    needed: usize,
    issuer: &Issuer,
    out: &mut Provisioned,
) -> Result<(Vec<Identity>, Vec<(String, String)>), String> {
    let (pk, mut ids) = bench_product_of(core, cached, data, ids_path, true, out).await?;
    let caller = rampart_core::access::tenancy::Caller::Operator(Actor::cli());
    match core
        .add_product_ca(&caller, &pk, issuer.ca_pem(), None)
        .await
    {
        Ok(_) | Err(rampart_core::Error::Conflict(_)) => {}
        Err(e) => return Err(format!("trust the client CA: {e}")),
    }
    out.reused = ids.len().min(needed);
    if ids.len() >= needed {
        ids.truncate(needed);
        return Ok((ids, Vec::new()));
    }
    let started = Instant::now();
    let missing = needed - ids.len();
    let bar = crate::progress::bar(missing as u64, "register");
    let mut tasks = tokio::task::JoinSet::new();
    let mut failed = 0;
    for _ in 0..missing {
        let hardware_id = format!("bx{}", hex::encode(rand::random::<[u8; 8]>()));
        let der = issuer.issue(&hardware_id)?.chain[0].to_vec();
        let (core, pk) = (core.clone(), pk.clone());
        tasks.spawn(async move {
            let did = core.register_certificate(&pk, Some(&der), None).await;
            (did, hardware_id)
        });
        while tasks.len() >= REGISTER_CONCURRENCY {
            if let Some(done) = tasks.join_next().await {
                collect_registered(done, &mut ids, &mut failed, &mut out.errors, &bar);
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        collect_registered(done, &mut ids, &mut failed, &mut out.errors, &bar);
    }
    bar.finish_and_clear();
    out.registered = missing - failed;
    out.register_failed = failed;
    out.register_secs = started.elapsed().as_secs_f64();
    save_identities(ids_path, &pk, &ids, true)?;
    Ok((ids, Vec::new()))
}

type Registered = (rampart_core::Result<String>, String);

fn collect_registered(
    done: Result<Registered, tokio::task::JoinError>,
    ids: &mut Vec<Identity>,
    failed: &mut usize,
    errors: &mut BTreeMap<String, u64>,
    bar: &ProgressBar,
) {
    bar.inc(1);
    match done {
        Ok((Ok(did), hardware_id)) => ids.push(Identity {
            did,
            secret: String::new(),
            hardware_id: Some(hardware_id),
        }),
        Ok((Err(e), _)) => {
            *failed += 1;
            tracing::warn!(error = %e, "certificate registration failed");
            *errors.entry("register_certificate".into()).or_default() += 1;
        }
        Err(_) => {
            *failed += 1;
            *errors.entry("register_task".into()).or_default() += 1;
        }
    }
}

/// Register factory serials in mode `device`, `REGISTER_CONCURRENCY` at a time.
async fn register_all(
    http: &reqwest::Client,
    api: &str,
    pk: &str,
    serials: Vec<(String, String)>,
    deadline: Instant,
    bar: &ProgressBar,
) -> (Vec<Identity>, BTreeMap<String, u64>) {
    let serials = Arc::new(serials);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(Mutex::new((Vec::new(), BTreeMap::<String, u64>::new())));
    let url = format!("{}/v1/device/register", api.trim_end_matches('/'));
    let mut tasks = Vec::new();
    for _ in 0..REGISTER_CONCURRENCY.min(serials.len()) {
        let (serials, next, done, http, url, pk, bar) = (
            serials.clone(),
            next.clone(),
            done.clone(),
            http.clone(),
            url.clone(),
            pk.to_owned(),
            bar.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, Relaxed);
                let Some((serial, secret)) = serials.get(k) else {
                    return;
                };
                let r = if Instant::now() >= deadline {
                    Err("deadline".to_string())
                } else {
                    register_one(&http, &url, &pk, serial, secret).await
                };
                let mut g = done.lock().unwrap_or_else(|e| e.into_inner());
                match r {
                    Ok(did) => g.0.push(Identity {
                        did,
                        secret: secret.clone(),
                        hardware_id: None,
                    }),
                    Err(kind) => *g.1.entry(format!("register_{kind}")).or_default() += 1,
                }
                drop(g);
                bar.inc(1);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut g = done.lock().unwrap_or_else(|e| e.into_inner());
    (std::mem::take(&mut g.0), std::mem::take(&mut g.1))
}

/// One signed registration; the error is a short kind for the error counts.
async fn register_one(
    http: &reqwest::Client,
    url: &str,
    pk: &str,
    serial: &str,
    secret: &str,
) -> Result<String, String> {
    let ts = now_ms();
    let nonce: String = {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        (0..16)
            .map(|_| rng.sample(rand::distributions::Alphanumeric) as char)
            .collect()
    };
    let sig = sign::hmac_hex(
        secret.as_bytes(),
        &sign::register_string(pk, serial, ts, &nonce),
    );
    let body = serde_json::json!({
        "product_key": pk, "hardware_id": serial, "ts": ts, "nonce": nonce,
        "mode": "device", "sign": sig,
    });
    let resp = http
        .post(url)
        .json(&body)
        .send()
        .await
        .map_err(|e| http_error_kind(&e))?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(format!("http_{status}"));
    }
    let v: serde_json::Value = resp.json().await.map_err(|_| "bad_body".to_string())?;
    v["did"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "bad_body".to_string())
}

fn http_error_kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else {
        "io".into()
    }
}

/// A reqwest client trusting `ca_pem` (when given), with keep-alive for `pool` connections.
pub(crate) fn http_client(ca_pem: Option<&[u8]>, pool: usize) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .pool_max_idle_per_host(pool)
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10));
    if let Some(pem) = ca_pem {
        let cert = reqwest::Certificate::from_pem(pem).map_err(|e| format!("CA file: {e}"))?;
        b = b.add_root_certificate(cert);
    }
    b.build().map_err(|e| format!("HTTP client: {e}"))
}

/// Outcome of the command phase.
#[derive(Debug, Default)]
pub(crate) struct CommandOutcome {
    pub(crate) sent: u64,
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    pub(crate) latency: Histogram,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) secs: f64,
}

/// Send `commands` commands through the HTTP API to random devices of `dids` at `rate` per second,
/// at most `concurrency` at once; the round trip is the HTTP call (the API answers with the ack).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn http_commands(
    http: &reqwest::Client,
    api: &str,
    token: &str,
    dids: Arc<Vec<String>>,
    commands: u64,
    rate: f64,
    concurrency: usize,
    deadline: Instant,
    bar: &ProgressBar,
) -> CommandOutcome {
    let shared = Arc::new(Mutex::new(CommandOutcome::default()));
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let start = Instant::now();
    let base = api.trim_end_matches('/').to_owned();
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..commands {
        let due = start + Duration::from_secs_f64(k as f64 / rate.max(1e-9));
        if due >= deadline {
            let mut g = shared.lock().unwrap_or_else(|e| e.into_inner());
            g.failed += commands - k;
            *g.errors.entry("deadline".into()).or_default() += commands - k;
            break;
        }
        tokio::time::sleep_until(due).await;
        let Ok(permit) = sem.clone().acquire_owned().await else {
            break;
        };
        // Reap finished tasks as we go so the set stays small.
        while tasks.try_join_next().is_some() {}
        let did = {
            use rand::Rng;
            dids[rand::thread_rng().gen_range(0..dids.len())].clone()
        };
        let (http, url, token, shared, bar) = (
            http.clone(),
            format!("{base}/v1/devices/{did}/commands"),
            token.to_owned(),
            shared.clone(),
            bar.clone(),
        );
        tasks.spawn(async move {
            let t0 = Instant::now();
            let r = async {
                let resp = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"set": {"power": true}}))
                    .send()
                    .await
                    .map_err(|e| http_error_kind(&e))?;
                let status = resp.status().as_u16();
                let v: serde_json::Value = resp.json().await.unwrap_or_default();
                if status != 200 {
                    let code = v["error"]["code"].as_str().unwrap_or("").to_lowercase();
                    return Err(if code.is_empty() {
                        format!("http_{status}")
                    } else {
                        format!("http_{status}_{code}")
                    });
                }
                match v["status"].as_str() {
                    Some("ok") => Ok(()),
                    Some(other) => Err(format!("ack_{other}")),
                    None => Err("bad_body".into()),
                }
            }
            .await;
            let us = t0.elapsed().as_micros() as u64;
            let mut g = shared.lock().unwrap_or_else(|e| e.into_inner());
            g.sent += 1;
            match r {
                Ok(()) => {
                    g.ok += 1;
                    g.latency.record(us);
                }
                Err(kind) => {
                    g.failed += 1;
                    *g.errors.entry(format!("command_{kind}")).or_default() += 1;
                }
            }
            drop(g);
            drop(permit);
            bar.inc(1);
        });
    }
    let rest = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
    let _ = tokio::time::timeout(rest, async { while tasks.join_next().await.is_some() {} }).await;
    let outstanding = tasks.len() as u64;
    tasks.abort_all();
    let mut out = std::mem::take(&mut *shared.lock().unwrap_or_else(|e| e.into_inner()));
    if outstanding > 0 {
        out.failed += outstanding;
        *out.errors.entry("deadline".into()).or_default() += outstanding;
    }
    out.secs = start.elapsed().as_secs_f64();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_file_round_trip() {
        let ids = vec![
            Identity {
                did: "abc".into(),
                secret: "00ff".into(),
                hardware_id: None,
            },
            Identity {
                did: "def".into(),
                secret: "11ee".into(),
                hardware_id: None,
            },
        ];
        let text = format_identities("pk123", &ids, false);
        assert_eq!(parse_identities(&text, false), Some(("pk123".into(), ids)));
        assert_eq!(parse_identities(&text, true), None);
        assert_eq!(parse_identities("did,secret\n", false), None);
        let certs = vec![Identity {
            did: "abc".into(),
            secret: String::new(),
            hardware_id: Some("bx00".into()),
        }];
        let text = format_identities("pk9", &certs, true);
        assert_eq!(text, format!("{CERT_HEADER}pk9\nabc,bx00\n"));
        assert_eq!(parse_identities(&text, true), Some(("pk9".into(), certs)));
        assert_eq!(parse_identities(&text, false), None);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ids.csv");
        save_identities(&p, "pk", &[], false).unwrap();
        save_identities(&p, "pk", &[], false).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn bench_product_is_valid() {
        for certs in [false, true] {
            let p = bench_product(certs).unwrap();
            assert_eq!(p.report_limit_per_min, 60000);
            assert_eq!(p.datapoints.len(), 3);
            rampart_proto::model::Model::new(p.datapoints).unwrap();
        }
    }

    #[test]
    fn api_url_from_listeners() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("listeners.json"),
            r#"{"mqtt_tls":"127.0.0.1:1","mqtt":null,"http":"127.0.0.1:8443","http_tls":true}"#,
        )
        .unwrap();
        assert_eq!(
            api_from_listeners(dir.path()).as_deref(),
            Some("https://localhost:8443")
        );
    }
}
