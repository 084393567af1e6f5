//! The device's OTA client: check, resumable download, verification, A/B slots, health
//! deadline and rollback.
//!
//! - [`verify_manifest`]: the product's Ed25519 signature, product and target, expiry, and the
//!   anti-rollback rule (a lower `sequence` only with a signed `"rollback": true`).
//! - [`Slots`]: two image slots on disk (`slot-a.bin`, `slot-b.bin`) and `slots.json` saying which
//!   one boots and what it runs. A new image goes to the inactive slot and boots on trial; unless
//!   [`Slots::commit`] marks it healthy before its deadline, [`Slots::boot`] goes back to the
//!   previous slot.
//! - [`HttpOta`]: the HTTPS side (`GET /v1/device/ota`, `POST /v1/device/ota/status`, the download
//!   with `Range`), each request signed like a CONNECT.
//! - [`MqttOta`]: the same over the device's MQTT connection ([`crate::DeviceClient`] with
//!   [`crate::ConnectOptions::ota`]): reports on `dev/{did}/ota/status`, the image in chunks on
//!   `dev/{did}/ota/chunk`, each chunk checked against its SHA-256 before it is kept.
//! - [`OtaLink`]: what [`update`] needs of either: progress reports and a resumable download.
//! - [`update`]: one update from manifest to reboot: verify, download (resuming after cuts into
//!   `download.part`), check size, SHA-256 and MD5, write the inactive slot, report each state.
//!
//! A device reports the new version (its connect-time check) only after it committed the new
//! image, so the cloud never counts as done an image that will roll back.

use crate::{Error, Secret};
use base64::Engine;
use md5::Digest as _;
use rampart_proto::ota::{Check, Manifest, OtaError, OtaState, Status, Target};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};

/// Check a manifest before fetching anything: signature by `public_key`, the device's own
/// product and target, not expired at `now_ms`, and a sequence not lower than the running one
/// unless it is a signed rollback.
pub fn verify_manifest(
    m: &Manifest,
    public_key: &[u8; 32],
    product_key: &str,
    target: Target,
    running_sequence: i64,
    now_ms: i64,
) -> Result<(), OtaError> {
    m.verify(public_key)?;
    if m.product_key != product_key || m.target != target {
        return Err(OtaError::WrongProduct);
    }
    if m.expires_at <= now_ms {
        return Err(OtaError::Expired);
    }
    m.check_sequence(running_sequence)
}

/// Check a downloaded image against its manifest: size, SHA-256, MD5.
pub fn verify_image(path: &Path, m: &Manifest) -> Result<(), VerifyError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut sha = Sha256::new();
    let mut md5 = md5::Md5::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        md5.update(&buf[..n]);
        size += n as u64;
    }
    if size != m.size {
        return Err(OtaError::Size {
            got: size,
            want: m.size,
        }
        .into());
    }
    if hex::encode(sha.finalize()) != m.sha256 {
        return Err(OtaError::Digest("SHA-256").into());
    }
    if hex::encode(md5.finalize()) != m.md5 {
        return Err(OtaError::Digest("MD5").into());
    }
    Ok(())
}

/// Why an image was refused, or could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Refused(#[from] OtaError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// What one slot holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotInfo {
    pub version: String,
    pub sequence: i64,
}

/// The slots' state on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SlotState {
    /// `a` or `b`: the slot that boots.
    active: char,
    a: Option<SlotInfo>,
    b: Option<SlotInfo>,
    /// Set while the active slot runs on trial: the slot to go back to, and by when the new
    /// image must be committed (Unix ms).
    trial: Option<Trial>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Trial {
    previous: char,
    deadline_ms: i64,
}

/// What [`Slots::boot`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// The committed image runs.
    Committed,
    /// A new image runs on trial; commit it before the deadline.
    Trial,
    /// The trial image was not committed in time: the previous one runs again.
    RolledBack { from: SlotInfo },
}

/// Two image slots on disk; see the module documentation.
#[derive(Debug)]
pub struct Slots {
    dir: PathBuf,
    state: SlotState,
}

impl Slots {
    /// Open the slots in `dir`, or make them with `factory` in slot `a` (its image empty).
    pub fn open(dir: &Path, factory: SlotInfo) -> std::io::Result<Slots> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("slots.json");
        let state = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::write(dir.join("slot-a.bin"), b"")?;
                SlotState {
                    active: 'a',
                    a: Some(factory),
                    b: None,
                    trial: None,
                }
            }
            Err(e) => return Err(e),
        };
        let s = Slots {
            dir: dir.to_path_buf(),
            state,
        };
        s.save()?;
        Ok(s)
    }

    fn save(&self) -> std::io::Result<()> {
        let tmp = self.dir.join("slots.json.tmp");
        let bytes = serde_json::to_vec(&self.state)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(tmp, self.dir.join("slots.json"))
    }

    fn info(&self, slot: char) -> Option<&SlotInfo> {
        if slot == 'a' {
            self.state.a.as_ref()
        } else {
            self.state.b.as_ref()
        }
    }

    fn other(slot: char) -> char {
        if slot == 'a' {
            'b'
        } else {
            'a'
        }
    }

    /// What the active slot runs.
    pub fn running(&self) -> SlotInfo {
        self.info(self.state.active).cloned().unwrap_or(SlotInfo {
            version: "0.0.0".into(),
            sequence: 0,
        })
    }

    /// The active slot's image file.
    pub fn active_image(&self) -> PathBuf {
        self.dir.join(format!("slot-{}.bin", self.state.active))
    }

    /// The file downloads resume into.
    pub fn partial(&self) -> PathBuf {
        self.dir.join("download.part")
    }

    /// Write a verified image to the inactive slot and make it boot next, on trial until
    /// `deadline_ms`.
    pub fn install(
        &mut self,
        image: &Path,
        info: SlotInfo,
        deadline_ms: i64,
    ) -> std::io::Result<()> {
        let target = Self::other(self.state.active);
        let path = self.dir.join(format!("slot-{target}.bin"));
        std::fs::copy(image, &path)?;
        if target == 'a' {
            self.state.a = Some(info);
        } else {
            self.state.b = Some(info);
        }
        self.state.trial = Some(Trial {
            previous: self.state.active,
            deadline_ms,
        });
        self.state.active = target;
        self.save()
    }

    /// At (re)boot, or whenever the health deadline may have passed: a trial image past its
    /// deadline is abandoned for the previous slot.
    pub fn boot(&mut self, now_ms: i64) -> std::io::Result<Boot> {
        let Some(trial) = self.state.trial.clone() else {
            return Ok(Boot::Committed);
        };
        if now_ms < trial.deadline_ms {
            return Ok(Boot::Trial);
        }
        let from = self.running();
        self.state.active = trial.previous;
        self.state.trial = None;
        self.save()?;
        Ok(Boot::RolledBack { from })
    }

    /// The trial image is healthy: keep it.
    pub fn commit(&mut self) -> std::io::Result<()> {
        self.state.trial = None;
        self.save()
    }

    /// Whether the active image is on trial.
    pub fn on_trial(&self) -> bool {
        self.state.trial.is_some()
    }
}

/// The HTTPS side of OTA for one device. Each request carries HTTP Basic with a fresh CONNECT
/// user name and password (docs/ota.md).
pub struct HttpOta {
    http: reqwest::Client,
    api: String,
    did: String,
    secret: Secret,
    last_ts: AtomicI64,
}

impl std::fmt::Debug for HttpOta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOta")
            .field("api", &self.api)
            .field("did", &self.did)
            .finish_non_exhaustive()
    }
}

/// How a download went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DownloadStats {
    /// Requests made (1 when nothing was cut).
    pub requests: u32,
    /// Bytes received over all requests.
    pub received: u64,
    /// Bytes received that were already on disk before (a resume's overlap): ideally 0.
    pub refetched: u64,
    /// Chunk requests over MQTT that got no usable answer (lost to a cut, or failing their
    /// SHA-256) and were asked again.
    pub retries: u32,
}

/// What carries an update: progress reports and a resumable download. [`HttpOta`] and
/// [`MqttOta`] are the two.
pub trait OtaLink {
    /// Send a progress report.
    fn report(&self, st: &Status) -> impl std::future::Future<Output = Result<(), Error>> + Send;
    /// Fetch the manifest's image into `part`, resuming from what `part` holds; `cut_after`
    /// cuts the transfer once after that many bytes (fault injection).
    fn fetch(
        &self,
        m: &Manifest,
        part: &Path,
        cut_after: Option<u64>,
    ) -> impl std::future::Future<Output = Result<DownloadStats, Error>> + Send;
}

impl OtaLink for HttpOta {
    async fn report(&self, st: &Status) -> Result<(), Error> {
        self.status(st).await
    }

    async fn fetch(
        &self,
        m: &Manifest,
        part: &Path,
        cut_after: Option<u64>,
    ) -> Result<DownloadStats, Error> {
        self.download(m, part, cut_after, |_| {}).await
    }
}

/// OTA over the device's MQTT connection. The connection's event loop must keep being polled
/// (in another task) while a download runs: chunk answers arrive through it.
#[derive(Debug, Clone)]
pub struct MqttOta {
    client: crate::DeviceClient,
    chunk: u64,
    answer_timeout: std::time::Duration,
    max_retries: u32,
}

impl MqttOta {
    /// Over `client` (connected with [`crate::ConnectOptions::ota`]): chunks of
    /// [`rampart_proto::ota::CHUNK_MAX`] bytes, an answer awaited 5 s before asking again,
    /// 30 requests in a row without a usable answer ending the download.
    pub fn new(client: crate::DeviceClient) -> MqttOta {
        MqttOta {
            client,
            chunk: rampart_proto::ota::CHUNK_MAX,
            answer_timeout: std::time::Duration::from_secs(5),
            max_retries: 30,
        }
    }

    /// How long to wait for a chunk's answer before asking again.
    pub fn answer_timeout(mut self, d: std::time::Duration) -> MqttOta {
        self.answer_timeout = d;
        self
    }

    /// Bytes per chunk request (1 ..= `CHUNK_MAX`).
    pub fn chunk_len(mut self, n: u64) -> MqttOta {
        self.chunk = n.clamp(1, rampart_proto::ota::CHUNK_MAX);
        self
    }

    /// The connect-time check (what the device runs): see [`crate::DeviceClient::ota_check`].
    pub fn check(&self, check: &Check) -> Result<(), Error> {
        self.client.ota_check(check)
    }
}

/// A chunk answer's bytes when it is the answer to `firmware_id` at `offset` and its bytes
/// match its SHA-256; `Err` with the cloud's refusal; `Ok(None)` for anything else (another
/// request's answer, a damaged chunk).
pub fn accept_chunk(raw: &[u8], firmware_id: &str, offset: u64) -> Result<Option<Vec<u8>>, String> {
    let Ok(a) = serde_json::from_slice::<rampart_proto::ota::ChunkAnswer>(raw) else {
        return Ok(None);
    };
    if a.firmware_id != firmware_id || a.offset != offset {
        return Ok(None);
    }
    if let Some(e) = a.error {
        return Err(e);
    }
    Ok(a.bytes().filter(|b| !b.is_empty()))
}

impl OtaLink for MqttOta {
    async fn report(&self, st: &Status) -> Result<(), Error> {
        self.client.ota_status(st)
    }

    async fn fetch(
        &self,
        m: &Manifest,
        part: &Path,
        mut cut_after: Option<u64>,
    ) -> Result<DownloadStats, Error> {
        use tokio::io::AsyncWriteExt;
        let mut stats = DownloadStats::default();
        let mut answers = self.client.chunk_answers();
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(part)
            .await?;
        let mut have = file.metadata().await?.len();
        if have > m.size {
            // Longer than the image: not a prefix of it.
            file.set_len(0).await?;
            have = 0;
        }
        let mut misses = 0u32;
        while have < m.size {
            if cut_after.is_some_and(|c| have >= c) {
                cut_after = None;
                // A real cut: the connection drops and comes back; answers in flight are lost.
                self.client
                    .reconnect_after(std::time::Duration::from_millis(100))?;
            }
            let req = rampart_proto::ota::ChunkRequest {
                firmware_id: m.firmware_id.clone(),
                offset: have,
                length: self.chunk.min(m.size - have),
            };
            self.client.request_chunk(&req)?;
            stats.requests += 1;
            let deadline = tokio::time::Instant::now() + self.answer_timeout;
            let got = loop {
                match tokio::time::timeout_at(deadline, answers.recv()).await {
                    Err(_) => break None,
                    Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
                    Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                        return Err(Error::Mqtt("the connection is closed".into()))
                    }
                    Ok(Ok(raw)) => match accept_chunk(&raw, &m.firmware_id, have) {
                        Ok(Some(bytes)) if bytes.len() as u64 <= m.size - have => {
                            break Some(bytes)
                        }
                        Ok(_) => continue,
                        Err(why) => {
                            return Err(Error::Rejected {
                                status: 0,
                                code: "OTA_CHUNK".into(),
                                message: why,
                            })
                        }
                    },
                }
            };
            let Some(bytes) = got else {
                stats.retries += 1;
                misses += 1;
                if misses >= self.max_retries {
                    return Err(Error::Mqtt(format!(
                        "no usable chunk answer after {misses} requests in a row"
                    )));
                }
                continue;
            };
            misses = 0;
            file.write_all(&bytes).await?;
            have += bytes.len() as u64;
            stats.received += bytes.len() as u64;
        }
        file.flush().await?;
        file.sync_all().await?;
        Ok(stats)
    }
}

async fn rejected(resp: reqwest::Response) -> Error {
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    Error::Rejected {
        status,
        code: body["error"]["code"].as_str().unwrap_or("").to_owned(),
        message: body["error"]["message"].as_str().unwrap_or("").to_owned(),
    }
}

impl HttpOta {
    /// `api` is the HTTPS base URL the device registered with.
    pub fn new(http: reqwest::Client, api: &str, did: &str, secret: Secret) -> HttpOta {
        HttpOta {
            http,
            api: api.trim_end_matches('/').to_owned(),
            did: did.to_owned(),
            secret,
            last_ts: AtomicI64::new(0),
        }
    }

    pub fn did(&self) -> &str {
        &self.did
    }

    /// `Basic` credentials with a timestamp newer than any this client used before.
    fn authorization(&self) -> String {
        let now = crate::now_ms();
        let mut prev = self.last_ts.load(Ordering::SeqCst);
        let ts = loop {
            let ts = now.max(prev + 1);
            match self
                .last_ts
                .compare_exchange(prev, ts, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => break ts,
                Err(p) => prev = p,
            }
        };
        let user = format!("{}|hmac-sha256|{ts}", self.did);
        let pass = rampart_proto::sign::hmac_hex(
            self.secret.as_bytes(),
            &rampart_proto::sign::connect_string(&self.did, ts),
        );
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    /// The check: report what runs; a manifest when there is something to install.
    pub async fn check(&self, check: &Check) -> Result<Option<Manifest>, Error> {
        let mut q = vec![
            ("target", check.target.as_str().to_owned()),
            ("version", check.version.clone()),
        ];
        if let Some(s) = check.sequence {
            q.push(("sequence", s.to_string()));
        }
        if let Some(h) = &check.hardware_version {
            q.push(("hardware_version", h.clone()));
        }
        let resp = self
            .http
            .get(format!("{}/v1/device/ota", self.api))
            .header("authorization", self.authorization())
            .query(&q)
            .send()
            .await?;
        match resp.status().as_u16() {
            204 => Ok(None),
            200 => Ok(Some(resp.json().await?)),
            _ => Err(rejected(resp).await),
        }
    }

    /// A progress report.
    pub async fn status(&self, st: &Status) -> Result<(), Error> {
        let resp = self
            .http
            .post(format!("{}/v1/device/ota/status", self.api))
            .header("authorization", self.authorization())
            .json(st)
            .send()
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(rejected(resp).await)
        }
    }

    fn resolve(&self, url: &str) -> String {
        if url.starts_with("https://") || url.starts_with("http://") {
            url.to_owned()
        } else {
            format!("{}{url}", self.api)
        }
    }

    /// Fetch the manifest's image into `part`, resuming from what `part` holds. `cut_after`
    /// drops the connection after that many bytes of a response (fault injection for tests
    /// and the simulator); the download then resumes with a `Range` request. `progress` is
    /// called with the bytes on disk after each request.
    pub async fn download(
        &self,
        m: &Manifest,
        part: &Path,
        mut cut_after: Option<u64>,
        mut progress: impl FnMut(u64),
    ) -> Result<DownloadStats, Error> {
        use tokio::io::AsyncWriteExt;
        let url = self.resolve(&m.url);
        let mut stats = DownloadStats::default();
        for _ in 0..16 {
            let have = tokio::fs::metadata(part)
                .await
                .map(|x| x.len())
                .unwrap_or(0);
            if have >= m.size {
                return Ok(stats);
            }
            let mut rb = self
                .http
                .get(&url)
                .header("authorization", self.authorization());
            if have > 0 {
                rb = rb.header("range", format!("bytes={have}-"));
            }
            let mut resp = rb.send().await?;
            stats.requests += 1;
            let status = resp.status().as_u16();
            let mut file = match status {
                206 => {
                    tokio::fs::OpenOptions::new()
                        .append(true)
                        .open(part)
                        .await?
                }
                200 => {
                    // The whole image again: what was on disk is fetched a second time.
                    stats.refetched += have;
                    tokio::fs::File::create(part).await?
                }
                _ => return Err(rejected(resp).await),
            };
            let mut this = 0u64;
            let limit = cut_after.take();
            let mut cut = false;
            while let Some(chunk) = resp.chunk().await? {
                let chunk = match limit {
                    Some(l) if this + chunk.len() as u64 >= l => {
                        cut = true;
                        &chunk[..(l - this) as usize]
                    }
                    _ => &chunk[..],
                };
                file.write_all(chunk).await?;
                this += chunk.len() as u64;
                stats.received += chunk.len() as u64;
                if cut {
                    break;
                }
            }
            file.flush().await?;
            drop(resp);
            progress(have + this);
        }
        Err(Error::invalid(
            "the download did not complete in 16 requests",
        ))
    }
}

/// Faults the simulator injects.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Cut the first download response after this many bytes.
    pub cut_after: Option<u64>,
    /// Fail while writing the slot.
    pub fail_apply: bool,
    /// The new image never reports healthy (so the device rolls back at its deadline).
    pub unhealthy: bool,
    /// Flip a byte of the image after it arrived (a transfer the checksums must catch).
    pub corrupt: bool,
}

/// How an update ended on the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Installed on trial; reboot, commit when healthy, then check again.
    Installed(DownloadStats),
    /// The manifest was refused before anything was fetched.
    Refused(OtaError),
    /// Fetched but refused (size or digest), or the slot could not be written.
    Failed(String),
}

/// What the device knows about itself for an update.
#[derive(Debug, Clone)]
pub struct DeviceIdentity {
    pub product_key: String,
    pub target: Target,
    /// The product's OTA public key, burnt in at the factory.
    pub ota_key: [u8; 32],
}

/// One update from manifest to installed-on-trial, reporting each state over `http` (HTTPS or
/// MQTT, see [`OtaLink`]).
/// A refused manifest is reported as `failed` (when it names a campaign). `health_ms`: how long
/// the new image has to prove itself after the reboot.
pub async fn update(
    http: &impl OtaLink,
    me: &DeviceIdentity,
    slots: &mut Slots,
    m: &Manifest,
    faults: &Faults,
    health_ms: i64,
) -> Outcome {
    let campaign = m.campaign_id.clone().unwrap_or_default();
    let report = |state: OtaState, reason: Option<String>, bytes: Option<u64>| Status {
        campaign_id: campaign.clone(),
        state,
        reason,
        bytes,
    };
    let running = slots.running();
    if let Err(e) = verify_manifest(
        m,
        &me.ota_key,
        &me.product_key,
        me.target,
        running.sequence,
        crate::now_ms(),
    ) {
        if !campaign.is_empty() {
            let _ = http
                .report(&report(OtaState::Failed, Some(e.to_string()), None))
                .await;
        }
        return Outcome::Refused(e);
    }
    let _ = http
        .report(&report(OtaState::Downloading, None, Some(0)))
        .await;
    let part = slots.partial();
    // A partial file of another image is not resumed.
    let marker = part.with_extension("sha256");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(m.sha256.as_str()) {
        let _ = std::fs::remove_file(&part);
        let _ = std::fs::write(&marker, &m.sha256);
    }
    let stats = match http.fetch(m, &part, faults.cut_after).await {
        Ok(s) => s,
        Err(e) => {
            let why = format!("download: {e}");
            let _ = http
                .report(&report(OtaState::Failed, Some(why.clone()), None))
                .await;
            return Outcome::Failed(why);
        }
    };
    if faults.corrupt {
        if let Ok(mut bytes) = std::fs::read(&part) {
            if let Some(b) = bytes.get_mut(m.size as usize / 2) {
                *b ^= 0x01;
            }
            let _ = std::fs::write(&part, bytes);
        }
    }
    let _ = http
        .report(&report(OtaState::Downloaded, None, Some(m.size)))
        .await;
    if let Err(e) = verify_image(&part, m) {
        let why = e.to_string();
        let _ = std::fs::remove_file(&part);
        let _ = http
            .report(&report(OtaState::Failed, Some(why.clone()), None))
            .await;
        return Outcome::Failed(why);
    }
    let _ = http.report(&report(OtaState::Verified, None, None)).await;
    let _ = http.report(&report(OtaState::Applying, None, None)).await;
    let installed = if faults.fail_apply {
        Err(std::io::Error::other("injected: flash write failed"))
    } else {
        slots.install(
            &part,
            SlotInfo {
                version: m.version.clone(),
                sequence: m.sequence,
            },
            crate::now_ms() + health_ms,
        )
    };
    if let Err(e) = installed {
        let why = format!("writing the inactive slot: {e}");
        let _ = http
            .report(&report(OtaState::Failed, Some(why.clone()), None))
            .await;
        return Outcome::Failed(why);
    }
    let _ = std::fs::remove_file(&part);
    let _ = std::fs::remove_file(&marker);
    Outcome::Installed(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Signer;

    fn signed(key: &ed25519_dalek::SigningKey, image: &[u8], sequence: i64) -> Manifest {
        let mut m = Manifest {
            firmware_id: "fw".into(),
            product_key: "pk".into(),
            target: Target::Module,
            version: "2.0.0".into(),
            sequence,
            size: image.len() as u64,
            md5: hex::encode(md5::Md5::digest(image)),
            sha256: hex::encode(Sha256::digest(image)),
            url: "/x".into(),
            expires_at: i64::MAX,
            rollback: false,
            campaign_id: None,
            signature: String::new(),
        };
        m.signature = base64::engine::general_purpose::STANDARD
            .encode(key.sign(&m.signing_bytes()).to_bytes());
        m
    }

    #[test]
    fn manifests_are_checked_before_anything_is_fetched() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let public = key.verifying_key().to_bytes();
        let m = signed(&key, b"image", 5);
        assert!(verify_manifest(&m, &public, "pk", Target::Module, 4, 0).is_ok());
        assert_eq!(
            verify_manifest(&m, &public, "pk", Target::Module, 6, 0),
            Err(OtaError::Rollback {
                offered: 5,
                running: 6
            })
        );
        assert_eq!(
            verify_manifest(&m, &public, "other", Target::Module, 4, 0),
            Err(OtaError::WrongProduct)
        );
        assert_eq!(
            verify_manifest(&m, &public, "pk", Target::Mcu, 4, 0),
            Err(OtaError::WrongProduct)
        );
        let other = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
        let forged = signed(&other, b"image", 9);
        assert_eq!(
            verify_manifest(&forged, &public, "pk", Target::Module, 4, 0),
            Err(OtaError::BadSignature)
        );
        let mut expired = m.clone();
        expired.expires_at = 10;
        // The signature no longer holds either; expiry is checked on a signed manifest.
        assert!(verify_manifest(&expired, &public, "pk", Target::Module, 4, 11).is_err());
    }

    #[test]
    fn chunks_are_kept_only_when_they_answer_the_request_and_match_their_hash() {
        let answer = |offset: u64, data: &[u8], sha_of: &[u8], error: Option<&str>| {
            serde_json::to_vec(&rampart_proto::ota::ChunkAnswer {
                firmware_id: "fw".into(),
                offset,
                length: data.len() as u64,
                data: base64::engine::general_purpose::STANDARD.encode(data),
                sha256: hex::encode(Sha256::digest(sha_of)),
                error: error.map(Into::into),
            })
            .unwrap()
        };
        assert_eq!(
            accept_chunk(&answer(16, b"abc", b"abc", None), "fw", 16),
            Ok(Some(b"abc".to_vec()))
        );
        // Damaged in transit: not kept, asked again.
        assert_eq!(
            accept_chunk(&answer(16, b"abd", b"abc", None), "fw", 16),
            Ok(None)
        );
        // The answer to another request (a resend after a cut), another image, not JSON.
        assert_eq!(
            accept_chunk(&answer(0, b"abc", b"abc", None), "fw", 16),
            Ok(None)
        );
        assert_eq!(
            accept_chunk(&answer(16, b"abc", b"abc", None), "other", 16),
            Ok(None)
        );
        assert_eq!(accept_chunk(b"{", "fw", 16), Ok(None));
        // The cloud's refusal ends the download.
        assert_eq!(
            accept_chunk(&answer(16, b"", b"", Some("no open update")), "fw", 16),
            Err("no open update".into())
        );
    }

    #[test]
    fn images_are_checked_by_size_and_both_digests() {
        let dir = tempfile::tempdir().unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let m = signed(&key, b"image", 5);
        let p = dir.path().join("img");
        std::fs::write(&p, b"image").unwrap();
        verify_image(&p, &m).unwrap();
        std::fs::write(&p, b"imagf").unwrap();
        assert!(matches!(
            verify_image(&p, &m),
            Err(VerifyError::Refused(OtaError::Digest("SHA-256")))
        ));
        std::fs::write(&p, b"imag").unwrap();
        assert!(matches!(
            verify_image(&p, &m),
            Err(VerifyError::Refused(OtaError::Size { got: 4, want: 5 }))
        ));
    }

    #[test]
    fn a_trial_image_rolls_back_unless_committed_in_time() {
        let dir = tempfile::tempdir().unwrap();
        let factory = SlotInfo {
            version: "1.0.0".into(),
            sequence: 1,
        };
        let mut s = Slots::open(dir.path(), factory.clone()).unwrap();
        let img = dir.path().join("new");
        std::fs::write(&img, b"v2").unwrap();
        let v2 = SlotInfo {
            version: "2.0.0".into(),
            sequence: 2,
        };
        s.install(&img, v2.clone(), 1_000).unwrap();
        assert_eq!(s.running(), v2);
        assert_eq!(std::fs::read(s.active_image()).unwrap(), b"v2");
        assert_eq!(s.boot(999).unwrap(), Boot::Trial);
        // Reopened from disk (a reboot), past the deadline: back to the factory image.
        let mut s = Slots::open(dir.path(), factory.clone()).unwrap();
        assert_eq!(
            s.boot(1_000).unwrap(),
            Boot::RolledBack { from: v2.clone() }
        );
        assert_eq!(s.running(), factory);
        // Committed in time, it stays.
        s.install(&img, v2.clone(), 5_000).unwrap();
        s.commit().unwrap();
        assert_eq!(s.boot(10_000).unwrap(), Boot::Committed);
        assert_eq!(s.running(), v2);
    }
}
