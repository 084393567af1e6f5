//! `rampart bench ota-download`: firmware download throughput. N provisioned devices of the bench
//! product are put in one campaign of a fresh image; each asks for its manifest
//! (`GET /v1/device/ota`), then all N download the image at once over their own HTTP/1.1
//! connections, resumably: each transfer is cut once part-way (the connection dropped) and
//! resumed with `Range: bytes=K-` (a 206 expected). Measured: bytes per second over the whole
//! download phase, each download's time, and the server's RSS (sampled every 50 ms) before and
//! while serving. With `--peer-url`, the same image (written to `--peer-dir`) is fetched the same
//! way from another server (nginx, say) in the same run, so the ratio means something on this
//! machine.

use crate::hist::Histogram;
use crate::procfs;
use rampart_proto::sign;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// `rampart bench ota-download ...`
#[derive(Debug, Clone, clap::Args)]
pub struct OtaDownloadArgs {
    /// Devices downloading at once.
    #[arg(long, default_value_t = 1000)]
    pub devices: usize,
    /// Size of the image, bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub image_bytes: usize,
    /// Where each transfer is cut and resumed, as a fraction of the image.
    #[arg(long, default_value_t = 0.5)]
    pub cut_at: f64,
    /// Loopback source addresses to spread the downloads over (127.0.0.2, 127.0.0.3, ...), as
    /// devices come from many addresses: the server caps connections per address
    /// (`http.max_connections_per_ip`, 256). 0: the kernel's choice (one address).
    #[arg(long, default_value_t = 8)]
    pub source_ips: u8,
    /// Rampart data directory (provisioning opens it in process, as the other scenarios do).
    #[arg(long)]
    pub data: PathBuf,
    /// The server's TOML configuration file.
    #[arg(long, env = "RAMPART_CONFIG")]
    pub config: Option<PathBuf>,
    /// Rampart HTTP API base URL; default from DATA/listeners.json.
    #[arg(long)]
    pub api: Option<String>,
    /// CA / certificate PEM to trust; default DATA/tls/cert.pem.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Rampart admin token (uploads the image, starts the campaign).
    #[arg(long, env = "RAMPART_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    /// Cache of provisioned identities; default DATA/bench-identities.csv.
    #[arg(long)]
    pub identities: Option<PathBuf>,
    /// The server process, to sample its RSS.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// A peer serving `--peer-dir` at this base URL (e.g. https://localhost:8444): the same image
    /// is fetched from it the same way.
    #[arg(long, requires = "peer_dir")]
    pub peer_url: Option<String>,
    /// Directory the peer serves; the image is written there as `ota-image.bin`.
    #[arg(long)]
    pub peer_dir: Option<PathBuf>,
    /// The peer's processes (their RSS is sampled and summed: nginx's master and workers).
    #[arg(long)]
    pub peer_pid: Vec<u32>,
    /// What the peer is, for the report.
    #[arg(long, default_value = "peer")]
    pub peer_name: String,
    /// A note for the report (the build profile, say).
    #[arg(long)]
    pub note: Vec<String>,
    /// Write the JSON report here (default: stdout).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write a markdown summary here.
    #[arg(long)]
    pub md: Option<PathBuf>,
    /// Hard deadline for the whole run.
    #[arg(long, default_value_t = 900)]
    pub timeout_secs: u64,
}

/// One download phase's figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PhaseReport {
    pub server: String,
    pub downloads: usize,
    pub completed: u64,
    pub failed: u64,
    /// Resumes answered 206 with the right `Content-Range`.
    pub resumed_206: u64,
    pub bytes: u64,
    pub secs: f64,
    pub bytes_per_sec: f64,
    pub mib_per_sec: f64,
    /// Each download's time (both requests), milliseconds.
    pub download_ms: Option<crate::report::Latency>,
    pub rss_before_kib: Option<u64>,
    pub rss_peak_kib: Option<u64>,
    pub errors: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OtaReport {
    pub scenario: &'static str,
    pub notes: Vec<String>,
    pub devices: usize,
    pub image_bytes: usize,
    pub cut_at_bytes: u64,
    pub source_ips: u8,
    pub manifests: usize,
    pub manifest_secs: f64,
    pub rampart: PhaseReport,
    pub peer: Option<PhaseReport>,
    /// Rampart's bytes/s over the peer's.
    pub throughput_ratio: Option<f64>,
}

fn image(n: usize) -> Vec<u8> {
    // Not text (so it is not mistaken for markup), and not all alike.
    (0..n)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> ((i % 4) * 8)) as u8)
        .collect()
}

fn check(status: reqwest::StatusCode, body: &str, what: &str) -> Result<(), String> {
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{what}: {status}: {body}"))
    }
}

/// HTTP Basic credentials of a device, with a timestamp newer than the last one it used.
fn device_auth(did: &str, secret: &str, last: &AtomicI64) -> String {
    use base64::Engine;
    let now = crate::client::now_ms();
    let ts = last.fetch_max(now, Relaxed).max(now - 1) + 1;
    last.fetch_max(ts, Relaxed);
    let user = format!("{did}|hmac-sha256|{ts}");
    let pass = sign::hmac_hex(secret.as_bytes(), &sign::connect_string(did, ts));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// One download to fetch: the URL and, for Rampart, the device's credentials.
struct Job {
    url: String,
    auth: Option<(String, String)>,
    last_ts: AtomicI64,
}

/// The summed RSS of `pids` (none readable: `None`).
fn rss_sum(pids: &[u32]) -> Option<u64> {
    let each: Vec<u64> = pids.iter().filter_map(|p| procfs::rss_kib(*p)).collect();
    (!each.is_empty()).then(|| each.iter().sum())
}

/// Sample the summed RSS of `pids` every 50 ms until `stop`; answers the peak.
fn sample_rss(pids: Vec<u32>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Option<u64>> {
    tokio::spawn(async move {
        let mut peak = rss_sum(&pids)?;
        while !stop.load(Relaxed) {
            if let Some(r) = rss_sum(&pids) {
                peak = peak.max(r);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(peak)
    })
}

/// All `jobs` at once: each GET is read up to `cut` bytes and dropped, then resumed with `Range`.
async fn download_phase(
    name: &str,
    jobs: Vec<Job>,
    size: u64,
    cut: u64,
    ca_pem: Option<&[u8]>,
    pids: Vec<u32>,
    source_ips: u8,
) -> Result<PhaseReport, String> {
    let mut clients = Vec::new();
    for i in 0..source_ips.max(1) {
        let mut b = reqwest::Client::builder()
            .http1_only()
            // A connection per download: nothing shared, nothing kept after it.
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(600))
            .connect_timeout(Duration::from_secs(30));
        if source_ips > 0 {
            b = b.local_address(std::net::IpAddr::V4(std::net::Ipv4Addr::new(
                127,
                0,
                0,
                2 + i,
            )));
        }
        if let Some(pem) = ca_pem {
            b = b.add_root_certificate(
                reqwest::Certificate::from_pem(pem).map_err(|e| format!("CA file: {e}"))?,
            );
        }
        clients.push(b.build().map_err(|e| format!("HTTP client: {e}"))?);
    }
    let mut rep = PhaseReport {
        server: name.to_owned(),
        downloads: jobs.len(),
        rss_before_kib: rss_sum(&pids),
        ..Default::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_rss(pids, stop.clone());
    let bytes = Arc::new(AtomicU64::new(0));
    let start = Arc::new(tokio::sync::Barrier::new(jobs.len() + 1));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, job) in jobs.into_iter().enumerate() {
        let http = clients[i % clients.len()].clone();
        let (bytes, start) = (bytes.clone(), start.clone());
        tasks.spawn(async move {
            start.wait().await;
            let t0 = Instant::now();
            let r = one_download(&http, &job, size, cut, &bytes).await;
            (r, t0.elapsed())
        });
    }
    start.wait().await;
    let t0 = Instant::now();
    let mut times = Histogram::new();
    while let Some(done) = tasks.join_next().await {
        let (r, took) = done.map_err(|e| format!("download task: {e}"))?;
        match r {
            Ok(resumed) => {
                rep.completed += 1;
                rep.resumed_206 += u64::from(resumed);
                times.record(took.as_micros() as u64);
            }
            Err(e) => {
                rep.failed += 1;
                *rep.errors.entry(e).or_default() += 1;
            }
        }
    }
    rep.secs = t0.elapsed().as_secs_f64();
    stop.store(true, Relaxed);
    rep.rss_peak_kib = sampler.await.ok().flatten();
    rep.bytes = bytes.load(Relaxed);
    rep.bytes_per_sec = rep.bytes as f64 / rep.secs.max(1e-9);
    rep.mib_per_sec = rep.bytes_per_sec / 1048576.0;
    rep.download_ms = (times.count() > 0).then(|| crate::report::Latency::from_hist(&times));
    Ok(rep)
}

/// Fetch `job`'s URL: the first `cut` bytes, then the rest with `Range`. True when the resume
/// was a 206 with the right `Content-Range`.
async fn one_download(
    http: &reqwest::Client,
    job: &Job,
    size: u64,
    cut: u64,
    bytes: &AtomicU64,
) -> Result<bool, String> {
    let get = |range: Option<u64>| {
        let mut rb = http.get(&job.url);
        if let Some((did, secret)) = &job.auth {
            rb = rb.header("authorization", device_auth(did, secret, &job.last_ts));
        }
        if let Some(from) = range {
            rb = rb.header("range", format!("bytes={from}-"));
        }
        rb.send()
    };
    let err = |e: reqwest::Error| {
        if e.is_timeout() {
            "timeout".to_owned()
        } else if e.is_connect() {
            "connect".to_owned()
        } else {
            "io".to_owned()
        }
    };
    let mut resp = get(None).await.map_err(err)?;
    if resp.status().as_u16() != 200 {
        return Err(format!("first request: {}", resp.status().as_u16()));
    }
    let mut have = 0u64;
    while have < cut {
        match resp.chunk().await.map_err(err)? {
            Some(c) => {
                let take = (c.len() as u64).min(cut - have);
                have += take;
                bytes.fetch_add(take, Relaxed);
            }
            None => break,
        }
    }
    // The cut: the connection goes with the response (nothing is pooled).
    drop(resp);
    if have >= size {
        return Ok(false);
    }
    let mut resp = get(Some(have)).await.map_err(err)?;
    let resumed = resp.status().as_u16() == 206
        && resp
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == format!("bytes {have}-{}/{size}", size - 1));
    if !resumed {
        return Err(format!("resume: {}", resp.status().as_u16()));
    }
    while let Some(c) = resp.chunk().await.map_err(err)? {
        have += c.len() as u64;
        bytes.fetch_add(c.len() as u64, Relaxed);
    }
    if have != size {
        return Err("short".into());
    }
    Ok(true)
}

/// A `multipart/form-data` body of text fields and one file part.
fn multipart(fields: &[(&str, &str)], file: &[u8]) -> (String, Vec<u8>) {
    let boundary = format!("rampart-bench-{}", rand::random::<u64>());
    let mut body = Vec::with_capacity(file.len() + 1024);
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"image.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub(crate) async fn run(a: OtaDownloadArgs) -> Result<(), String> {
    let hard = Duration::from_secs(a.timeout_secs);
    let report = tokio::time::timeout(hard, run_inner(&a))
        .await
        .map_err(|_| "the run overran --timeout-secs".to_string())??;
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    match &a.out {
        Some(p) => std::fs::write(p, &json).map_err(|e| format!("{}: {e}", p.display()))?,
        None => println!("{json}"),
    }
    if let Some(p) = &a.md {
        std::fs::write(p, markdown(&report)).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    eprintln!("{}", markdown(&report));
    Ok(())
}

async fn run_inner(a: &OtaDownloadArgs) -> Result<OtaReport, String> {
    if a.devices == 0 || a.image_bytes == 0 || !(0.0..1.0).contains(&a.cut_at) {
        return Err("--devices and --image-bytes must be positive, --cut-at in [0, 1)".into());
    }
    let api = match &a.api {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => crate::rampart::api_from_listeners(&a.data)
            .ok_or("no --api and no DATA/listeners.json")?,
    };
    let ca_path = a.ca.clone().unwrap_or_else(|| a.data.join("tls/cert.pem"));
    let ca_pem = std::fs::read(&ca_path).ok();
    let http = crate::rampart::http_client(ca_pem.as_deref(), 64)?;
    let ids_path = a
        .identities
        .clone()
        .unwrap_or_else(|| crate::rampart::default_identities_path(&a.data, false));
    eprintln!("provisioning {} devices", a.devices);
    let deadline = Instant::now() + Duration::from_secs(a.timeout_secs);
    let prov = crate::rampart::provision(
        &a.data,
        a.config.as_deref(),
        &ids_path,
        &api,
        &http,
        a.devices,
        deadline,
        None,
    )
    .await?;
    if prov.identities.len() < a.devices {
        return Err(format!(
            "only {} of {} devices could be provisioned",
            prov.identities.len(),
            a.devices
        ));
    }
    let pk = prov.product_key.clone();
    let admin = |rb: reqwest::RequestBuilder| rb.bearer_auth(&a.admin_token);

    // A campaign of an earlier run would hold the target: abort what is still open.
    let r = admin(http.get(format!("{api}/v1/products/{pk}/campaigns?limit=200")))
        .send()
        .await
        .map_err(|e| format!("campaigns: {e}"))?;
    let v: serde_json::Value = r.json().await.map_err(|e| format!("campaigns: {e}"))?;
    for c in v["data"].as_array().into_iter().flatten() {
        if matches!(c["state"].as_str(), Some("running" | "paused")) {
            let id = c["campaign_id"].as_str().unwrap_or_default();
            let _ = admin(http.post(format!("{api}/v1/products/{pk}/campaigns/{id}/abort")))
                .send()
                .await;
        }
    }

    let img = image(a.image_bytes);
    let version = format!("1.0.{}", crate::client::now_ms());
    let (ct, body) = multipart(
        &[
            ("target", "module"),
            ("version", &version),
            ("notes", "rampart bench ota-download"),
        ],
        &img,
    );
    let r = admin(http.post(format!("{api}/v1/products/{pk}/firmware")))
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("upload: {e}"))?;
    let (status, text) = (r.status(), r.text().await.unwrap_or_default());
    check(status, &text, "upload")?;
    let fw: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("upload: {e}"))?;
    let dids: Vec<&str> = prov.identities[..a.devices]
        .iter()
        .map(|i| i.did.as_str())
        .collect();
    let r = admin(http.post(format!("{api}/v1/products/{pk}/campaigns")))
        .json(&serde_json::json!({
            "firmware_id": fw["firmware_id"], "selector": {"dids": dids}, "stages": [100],
            "max_failure_percent": 100, "device_timeout_secs": 86_400,
        }))
        .send()
        .await
        .map_err(|e| format!("campaign: {e}"))?;
    let (status, text) = (r.status(), r.text().await.unwrap_or_default());
    check(status, &text, "campaign")?;

    // Every device asks for its manifest (what a device does at boot).
    eprintln!("{} devices ask for their manifest", a.devices);
    let t0 = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut asks = tokio::task::JoinSet::new();
    for id in prov.identities[..a.devices].iter().cloned() {
        let (http, api, sem) = (http.clone(), api.clone(), sem.clone());
        asks.spawn(async move {
            let _p = sem.acquire_owned().await;
            let last = AtomicI64::new(0);
            let r = http
                .get(format!("{api}/v1/device/ota?target=module&version=0.0.1"))
                .header("authorization", device_auth(&id.did, &id.secret, &last))
                .send()
                .await
                .map_err(|e| format!("check: {e}"))?;
            if r.status().as_u16() != 200 {
                return Err(format!("check: {}", r.status()));
            }
            let m: serde_json::Value = r.json().await.map_err(|e| format!("check: {e}"))?;
            let url = m["url"].as_str().ok_or("manifest without url")?.to_owned();
            let url = if url.starts_with('/') {
                format!("{api}{url}")
            } else {
                url
            };
            Ok::<_, String>(Job {
                url,
                auth: Some((id.did, id.secret)),
                last_ts: last,
            })
        });
    }
    let mut jobs = Vec::with_capacity(a.devices);
    while let Some(r) = asks.join_next().await {
        jobs.push(r.map_err(|e| e.to_string())??);
    }
    let manifest_secs = t0.elapsed().as_secs_f64();
    let size = img.len() as u64;
    let cut = ((size as f64) * a.cut_at) as u64;

    eprintln!("{} downloads of {size} bytes from Rampart", a.devices);
    let rampart = download_phase(
        "rampart",
        jobs,
        size,
        cut,
        ca_pem.as_deref(),
        a.server_pid.into_iter().collect(),
        a.source_ips,
    )
    .await?;
    let peer = match (&a.peer_url, &a.peer_dir) {
        (Some(url), Some(dir)) => {
            std::fs::write(dir.join("ota-image.bin"), &img)
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            let url = format!("{}/ota-image.bin", url.trim_end_matches('/'));
            let jobs = (0..a.devices)
                .map(|_| Job {
                    url: url.clone(),
                    auth: None,
                    last_ts: AtomicI64::new(0),
                })
                .collect();
            eprintln!(
                "{} downloads of {size} bytes from {}",
                a.devices, a.peer_name
            );
            Some(
                download_phase(
                    &a.peer_name,
                    jobs,
                    size,
                    cut,
                    ca_pem.as_deref(),
                    a.peer_pid.clone(),
                    a.source_ips,
                )
                .await?,
            )
        }
        _ => None,
    };
    let throughput_ratio = peer
        .as_ref()
        .filter(|p| p.bytes_per_sec > 0.0)
        .map(|p| rampart.bytes_per_sec / p.bytes_per_sec);
    Ok(OtaReport {
        scenario: "ota-download",
        notes: a.note.clone(),
        devices: a.devices,
        image_bytes: a.image_bytes,
        cut_at_bytes: cut,
        source_ips: a.source_ips,
        manifests: a.devices,
        manifest_secs,
        rampart,
        peer,
        throughput_ratio,
    })
}

fn phase_md(p: &PhaseReport) -> String {
    let lat = |f: fn(&crate::report::Latency) -> Option<f64>| {
        p.download_ms
            .as_ref()
            .and_then(f)
            .map(|v| format!("{v:.0}"))
            .unwrap_or_else(|| "—".into())
    };
    let kib = |k: Option<u64>| {
        k.map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
            .unwrap_or_else(|| "—".into())
    };
    format!(
        "| {} | {} / {} | {} | {} | {:.1} | {:.1} | {} | {} | {} | {} | {} |\n",
        p.server,
        p.completed,
        p.downloads,
        p.resumed_206,
        p.bytes,
        p.secs,
        p.mib_per_sec,
        lat(|l| l.p50),
        lat(|l| l.p99),
        kib(p.rss_before_kib),
        kib(p.rss_peak_kib),
        if p.errors.is_empty() {
            "—".to_owned()
        } else {
            format!("{:?}", p.errors)
        }
    )
}

fn markdown(r: &OtaReport) -> String {
    let mut s = format!(
        "## OTA downloads: {} devices at once, a {} byte image, each cut at {} bytes and resumed with Range\n\n",
        r.devices, r.image_bytes, r.cut_at_bytes
    );
    for n in &r.notes {
        s.push_str(&format!("- {n}\n"));
    }
    s.push_str(&format!(
        "- downloads from {} loopback source addresses, one HTTP/1.1 connection per request\n",
        r.source_ips.max(1)
    ));
    s.push_str(&format!(
        "- manifests: {} devices asked `GET /v1/device/ota` in {:.1} s (64 at a time)\n\n",
        r.manifests, r.manifest_secs
    ));
    s.push_str("| server | completed | resumed (206) | bytes | seconds | MiB/s | p50 ms | p99 ms | RSS before | RSS peak | errors |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    s.push_str(&phase_md(&r.rampart));
    if let Some(p) = &r.peer {
        s.push_str(&phase_md(p));
    }
    if let Some(x) = r.throughput_ratio {
        s.push_str(&format!("\nRampart's throughput over the peer's: {x:.2}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_bodies_carry_fields_and_the_file() {
        let (ct, body) = multipart(&[("target", "module")], b"\x00\x01");
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.contains("name=\"target\"\r\n\r\nmodule\r\n"));
        assert!(body.windows(2).any(|w| w == b"\x00\x01"));
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
    }

    #[test]
    fn device_timestamps_only_rise() {
        let last = AtomicI64::new(0);
        let ts = |h: &str| {
            let user = String::from_utf8(
                base64::Engine::decode(
                    &base64::engine::general_purpose::STANDARD,
                    h.strip_prefix("Basic ").unwrap(),
                )
                .unwrap(),
            )
            .unwrap();
            user.split(':')
                .next()
                .unwrap()
                .rsplit('|')
                .next()
                .unwrap()
                .parse::<i64>()
                .unwrap()
        };
        let a = ts(&device_auth("d", "s", &last));
        let b = ts(&device_auth("d", "s", &last));
        assert!(b > a);
    }
}
