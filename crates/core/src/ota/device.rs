//! The device's side of an update, whatever carries it (MQTT topics or HTTPS): the boot-time
//! check that is also the connect-time report completing an update, progress reports, the
//! short-lived device-bound download grant, and chunks over MQTT.
//!
//! A device's report moves its part only forward (`notified` → ... → `applying`) or to
//! `failed`; `succeeded` is never taken from a report, only from a check naming the new
//! version, so an update counts as done only once the new image booted and connected.

use crate::device::runtime::DeviceAuth;
use crate::{Core, Error, Result};
use base64::Engine;
use rampart_proto::ota::{Check, ChunkAnswer, ChunkRequest, Manifest, OtaState, Status, CHUNK_MAX};
use rampart_store::{CampaignRow, FirmwareRow};
use sha2::{Digest, Sha256};

/// The MQTT topic a device gets manifests on.
pub fn manifest_topic(did: &str) -> String {
    format!("dev/{did}/ota")
}

/// The MQTT topic of chunk requests and answers.
pub fn chunk_topic(did: &str) -> String {
    format!("dev/{did}/ota/chunk")
}

/// The key download URLs are signed with: derived from the product's OTA key, so it needs
/// no key of its own and changes with it.
fn url_key(signing: &ed25519_dalek::SigningKey) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"rampart-ota-url\n");
    h.update(signing.to_bytes());
    h.finalize().into()
}

fn url_message(firmware_id: &str, did: &str, expires: i64) -> String {
    format!("{firmware_id}\n{did}\n{expires}")
}

/// `/v1/device/ota/firmware/{id}?did=..&expires=..&sig=..`: good for `did` until `expires`.
pub(crate) fn download_path(
    signing: &ed25519_dalek::SigningKey,
    firmware_id: &str,
    did: &str,
    expires: i64,
) -> String {
    let sig =
        rampart_proto::sign::hmac_hex(&url_key(signing), &url_message(firmware_id, did, expires));
    format!("/v1/device/ota/firmware/{firmware_id}?did={did}&expires={expires}&sig={sig}")
}

/// A granted download: the file and its size.
#[derive(Debug, Clone)]
pub struct Download {
    pub path: std::path::PathBuf,
    pub size: u64,
    pub sha256: String,
}

/// Where a device stands in OTA: what it runs and its parts in campaigns, newest first.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceOta {
    pub did: String,
    pub running: Vec<Running>,
    pub campaigns: Vec<DevicePart>,
}

/// What a device said it runs for one target at its last check.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Running {
    pub target: String,
    pub version: String,
    pub sequence: Option<i64>,
    pub hardware_version: Option<String>,
    pub checked_at: i64,
}

/// A device's part in one campaign.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DevicePart {
    pub campaign_id: String,
    pub firmware_id: String,
    /// The campaign's state.
    pub campaign_state: String,
    /// From 1.
    pub stage: i64,
    /// The device's state in it.
    pub state: String,
    pub bytes: i64,
    pub reason: Option<String>,
    pub updated_at: i64,
}

/// The order of the states a device moves through.
fn rank(s: &str) -> Option<u8> {
    Some(match s {
        "pending" => 0,
        "notified" => 1,
        "downloading" => 2,
        "downloaded" => 3,
        "verified" => 4,
        "applying" => 5,
        _ => return None,
    })
}

impl Core {
    /// Sign a manifest for `did`, mark the device `notified` (if it was `pending`) and hand the
    /// manifest to its live session on `dev/{did}/ota`. Answers the manifest.
    pub(crate) async fn offer_manifest(
        &self,
        row: &CampaignRow,
        fw: &FirmwareRow,
        did: &str,
    ) -> Result<Manifest> {
        let m = self
            .ota_manifest(fw, did, Some(&row.campaign_id), row.rollback)
            .await?;
        if self
            .store()
            .set_ota_device_state(
                &row.campaign_id,
                did,
                &["pending"],
                "notified",
                None,
                None,
                self.now_ms(),
            )
            .await?
        {
            self.ota_device_event(&row.campaign_id, did, OtaState::Notified, None, None)
                .await;
        }
        let payload = serde_json::to_vec(&m).map_err(|e| Error::Internal(e.to_string()))?;
        self.bus().deliver_live(
            did,
            crate::device::bus::Message {
                topic: manifest_topic(did),
                payload: payload.into(),
                expires_at: Some(m.expires_at),
            },
        );
        Ok(m)
    }

    /// A device's check (boot time, or `GET /v1/device/ota`): what it runs is recorded; a device
    /// whose update was under way and that now runs the campaign's version has succeeded (one
    /// that came back from `applying` with another version has failed); then the manifest of a
    /// running campaign's open stage, if the device has one to install.
    pub async fn ota_check(&self, dev: &DeviceAuth, check: &Check) -> Result<Option<Manifest>> {
        let did = dev.did.as_str();
        if rampart_proto::ota::Version::parse(&check.version).is_none() {
            return Err(Error::Invalid("`version` is a semantic version".into()));
        }
        if check
            .hardware_version
            .as_deref()
            .is_some_and(|h| h.is_empty() || h.len() > 64)
        {
            return Err(Error::Invalid("`hardware_version`: 1-64 characters".into()));
        }
        let now = self.now_ms();
        self.store()
            .upsert_ota_device_info(
                did,
                check.target.as_str(),
                &check.version,
                check.sequence,
                check.hardware_version.as_deref(),
                now,
            )
            .await?;
        let mut offer = None;
        for (c, d) in self.store().ota_device_active(did).await? {
            let Some(fw) = self.store().firmware(&c.firmware_id).await? else {
                continue;
            };
            if fw.target != check.target.as_str() || c.product_key != dev.product.product_key {
                continue;
            }
            let Some(r) = rank(&d.state) else { continue };
            if check.version == fw.version && r >= 1 {
                if self
                    .store()
                    .set_ota_device_state(
                        &c.campaign_id,
                        did,
                        &[
                            "notified",
                            "downloading",
                            "downloaded",
                            "verified",
                            "applying",
                        ],
                        "succeeded",
                        None,
                        None,
                        now,
                    )
                    .await?
                {
                    self.ota_device_event(&c.campaign_id, did, OtaState::Succeeded, None, None)
                        .await;
                    self.campaign_advance(&c.campaign_id, super::campaign::Tell::OnOpen)
                        .await?;
                }
                continue;
            }
            if d.state == "applying" {
                let reason = format!(
                    "the device came back running {} instead of {}",
                    check.version, fw.version
                );
                if self
                    .store()
                    .set_ota_device_state(
                        &c.campaign_id,
                        did,
                        &["applying"],
                        "failed",
                        None,
                        Some(&reason),
                        now,
                    )
                    .await?
                {
                    self.ota_device_event(
                        &c.campaign_id,
                        did,
                        OtaState::Failed,
                        Some(&reason),
                        None,
                    )
                    .await;
                    self.campaign_advance(&c.campaign_id, super::campaign::Tell::OnOpen)
                        .await?;
                }
                continue;
            }
            if offer.is_none() && c.state == "running" && d.stage <= c.stage {
                offer = Some((c, fw));
            }
        }
        match offer {
            Some((c, fw)) => Ok(Some(self.offer_manifest(&c, &fw, did).await?)),
            None => Ok(None),
        }
    }

    /// A device's progress report. Forward moves and `failed` are taken; `succeeded` is not
    /// (only a check naming the new version completes an update) and is answered `Invalid`,
    /// as are reports for a campaign the device is not in or whose part ended.
    pub async fn ota_status(&self, dev: &DeviceAuth, st: &Status) -> Result<()> {
        let did = dev.did.as_str();
        if st
            .reason
            .as_deref()
            .is_some_and(|r| r.chars().count() > 512)
        {
            return Err(Error::Invalid("`reason`: at most 512 characters".into()));
        }
        let c = self
            .store()
            .campaign(&st.campaign_id)
            .await?
            .filter(|c| c.product_key == dev.product.product_key)
            .ok_or(Error::NotFound("campaign"))?;
        let d = self
            .store()
            .ota_device(&c.campaign_id, did)
            .await?
            .ok_or(Error::NotFound("campaign"))?;
        if !matches!(c.state.as_str(), "running" | "paused") {
            return Err(Error::Conflict(format!("the campaign is {}", c.state)));
        }
        let Some(from) = rank(&d.state) else {
            return Err(Error::Conflict(format!(
                "the device's part in the campaign ended ({})",
                d.state
            )));
        };
        let to = st.state;
        let bytes = st.bytes.map(|b| b.min(i64::MAX as u64) as i64);
        match to {
            OtaState::Succeeded => {
                return Err(Error::Invalid(
                    "an update succeeds when the device connects again and its check names the \
                     new version, not by a status"
                        .into(),
                ))
            }
            OtaState::TimedOut => {
                return Err(Error::Invalid(
                    "`timed_out` is the cloud's to decide".into(),
                ))
            }
            OtaState::Failed => {}
            s => {
                let r = rank(s.as_str()).unwrap_or(0);
                if r < from {
                    return Err(Error::Conflict(format!(
                        "the device is {} already; states only move forward",
                        d.state
                    )));
                }
            }
        }
        let now = self.now_ms();
        let moved = self
            .store()
            .set_ota_device_state(
                &c.campaign_id,
                did,
                &[d.state.as_str()],
                to.as_str(),
                bytes,
                st.reason.as_deref(),
                now,
            )
            .await?;
        if moved {
            if to != OtaState::Downloading || d.state != "downloading" {
                self.ota_device_event(&c.campaign_id, did, to, st.reason.as_deref(), st.bytes)
                    .await;
            }
            if to == OtaState::Failed {
                self.campaign_advance(&c.campaign_id, super::campaign::Tell::OnOpen)
                    .await?;
            }
        }
        Ok(())
    }

    /// The image a download URL grants: `Forbidden` when the URL is for another device, expired
    /// or not signed by the product's key. `did` is the device that proved itself on the
    /// request.
    pub async fn ota_download(
        &self,
        dev: &DeviceAuth,
        firmware_id: &str,
        url_did: &str,
        expires: i64,
        sig: &str,
    ) -> Result<Download> {
        let forbidden = |why: &str| Error::Forbidden(format!("download refused: {why}"));
        if url_did != dev.did.as_str() {
            return Err(forbidden("the URL was issued to another device"));
        }
        if expires <= self.now_ms() {
            return Err(forbidden(
                "the URL expired; check again for a fresh manifest",
            ));
        }
        let fw = self
            .store()
            .firmware(firmware_id)
            .await?
            .filter(|f| f.product_key == dev.product.product_key)
            .ok_or_else(|| forbidden("the URL is not valid"))?;
        let signing = self.ota_signing_key(&fw.product_key).await?;
        if !rampart_proto::sign::verify_hex(
            &url_key(&signing),
            &url_message(firmware_id, url_did, expires),
            sig,
        ) {
            return Err(forbidden("the URL is not valid"));
        }
        let path = self
            .firmware_path(&fw.sha256)
            .ok_or_else(|| Error::Internal("firmware file path".into()))?;
        Ok(Download {
            path,
            size: fw.size.max(0) as u64,
            sha256: fw.sha256,
        })
    }

    /// Part of an image over MQTT: only for a device with an open part in a running or paused
    /// campaign of that firmware; at most [`CHUNK_MAX`] bytes. A refusal is an answer with
    /// `error` set.
    pub async fn ota_chunk(&self, dev: &DeviceAuth, req: &ChunkRequest) -> ChunkAnswer {
        let mut answer = ChunkAnswer {
            firmware_id: req.firmware_id.clone(),
            offset: req.offset,
            length: 0,
            data: String::new(),
            sha256: String::new(),
            error: None,
        };
        match self.read_chunk(dev, req).await {
            Ok(bytes) => {
                answer.length = bytes.len() as u64;
                answer.sha256 = hex::encode(Sha256::digest(&bytes));
                answer.data = base64::engine::general_purpose::STANDARD.encode(&bytes);
            }
            Err(e) => answer.error = Some(e.to_string()),
        }
        answer
    }

    async fn read_chunk(&self, dev: &DeviceAuth, req: &ChunkRequest) -> Result<Vec<u8>> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        if req.length == 0 || req.length > CHUNK_MAX {
            return Err(Error::Invalid(format!("`length`: 1..={CHUNK_MAX}")));
        }
        let did = dev.did.as_str();
        let active = self.store().ota_device_active(did).await?;
        let fw = match active.iter().find(|(c, d)| {
            c.firmware_id == req.firmware_id && rank(&d.state).is_some_and(|r| r >= 1)
        }) {
            Some((c, _)) => self
                .store()
                .firmware(&c.firmware_id)
                .await?
                .ok_or(Error::NotFound("firmware"))?,
            None => {
                return Err(Error::Forbidden(
                    "no open update of this firmware for the device".into(),
                ))
            }
        };
        let size = fw.size.max(0) as u64;
        if req.offset >= size {
            return Err(Error::Invalid(format!(
                "`offset` past the image's {size} bytes"
            )));
        }
        let n = req.length.min(size - req.offset) as usize;
        let path = self
            .firmware_path(&fw.sha256)
            .ok_or_else(|| Error::Internal("firmware file path".into()))?;
        let mut f = tokio::fs::File::open(&path)
            .await
            .map_err(|e| Error::Internal(format!("firmware file: {e}")))?;
        f.seek(std::io::SeekFrom::Start(req.offset))
            .await
            .map_err(|e| Error::Internal(format!("firmware file: {e}")))?;
        let mut buf = vec![0u8; n];
        f.read_exact(&mut buf)
            .await
            .map_err(|e| Error::Internal(format!("firmware file: {e}")))?;
        Ok(buf)
    }

    /// A publish on `dev/{did}/ota/check`, `ota/status` or `ota/chunk`. A check's manifest and a
    /// chunk's answer go back to the device's live session; a check with nothing to install is
    /// answered by nothing. Malformed payloads are `Invalid`.
    pub async fn ingest_ota(&self, dev: &DeviceAuth, topic: &str, payload: &[u8]) -> Result<()> {
        let did = dev.did.as_str();
        let sub = topic
            .strip_prefix(&rampart_proto::topic::prefix(did))
            .unwrap_or("");
        let bad = |e: serde_json::Error| Error::Invalid(format!("{sub}: {e}"));
        match sub {
            "ota/check" => {
                let check: Check = serde_json::from_slice(payload).map_err(bad)?;
                self.ota_check(dev, &check).await.map(|_| ())
            }
            "ota/status" => {
                let st: Status = serde_json::from_slice(payload).map_err(bad)?;
                self.ota_status(dev, &st).await
            }
            "ota/chunk" => {
                let req: ChunkRequest = serde_json::from_slice(payload).map_err(bad)?;
                let answer = self.ota_chunk(dev, &req).await;
                let payload =
                    serde_json::to_vec(&answer).map_err(|e| Error::Internal(e.to_string()))?;
                self.bus().deliver_live(
                    did,
                    crate::device::bus::Message {
                        topic: chunk_topic(did),
                        payload: payload.into(),
                        expires_at: None,
                    },
                );
                Ok(())
            }
            _ => Err(Error::Invalid("not an OTA topic".into())),
        }
    }

    /// Where a device stands in OTA, for an access key that may read it (scope `read`; a device
    /// the key does not reach is `NotFound`). Audited like a device read.
    pub async fn key_device_ota(
        &self,
        k: &crate::access::access_keys::KeySession,
        did: &str,
    ) -> Result<DeviceOta> {
        self.authorize_key_device(k, did, crate::access::access_keys::Scope::Read)
            .await?;
        let running = self
            .store()
            .ota_device_info(did)
            .await?
            .into_iter()
            .map(|r| Running {
                target: r.target,
                version: r.version,
                sequence: r.sequence,
                hardware_version: r.hardware_version,
                checked_at: r.updated_at,
            })
            .collect();
        let campaigns = self
            .store()
            .ota_device_parts(did, 20)
            .await?
            .into_iter()
            .map(|(c, d)| DevicePart {
                campaign_id: c.campaign_id,
                firmware_id: c.firmware_id,
                campaign_state: c.state,
                stage: d.stage + 1,
                state: d.state,
                bytes: d.bytes,
                reason: d.reason,
                updated_at: d.updated_at,
            })
            .collect();
        self.audit_key_access(
            k,
            crate::audit::action::ENTERPRISE_DEVICE_READ,
            format!("device:{did}/ota"),
        )
        .await;
        Ok(DeviceOta {
            did: did.to_owned(),
            running,
            campaigns,
        })
    }

    /// A device's part moved: logged, and an `ota_status` event for the operator stream and
    /// webhooks.
    pub(crate) async fn ota_device_event(
        &self,
        campaign_id: &str,
        did: &str,
        state: OtaState,
        reason: Option<&str>,
        bytes: Option<u64>,
    ) {
        tracing::debug!(
            campaign = campaign_id,
            did,
            state = state.as_str(),
            reason,
            bytes,
            "OTA progress"
        );
        self.bus()
            .publish_event(crate::device::bus::DeviceEvent::OtaStatus {
                did: did.to_owned(),
                ts: self.now_ms(),
                campaign_id: campaign_id.to_owned(),
                state: state.as_str().to_owned(),
                reason: reason.map(str::to_owned),
                bytes,
            })
            .await;
    }
}
