//! Over-the-air updates: the firmware registry (images kept by content hash in the upload
//! store, module and MCU firmware sequenced apart), each product's Ed25519 signing key (made on
//! first use, private half sealed), and the signed manifests devices get. Campaigns (who gets an
//! image, in which stages, and when a rollout stops itself) are in [`campaign`]; the device's
//! side of the conversation (checks, progress reports, download grants, chunks) in [`device`].
//!
//! Who may do what is `access::tenancy`'s decision: uploading, deleting and rolling out need
//! `Act::Manage` (owners and admins), a rollback to an older sequence `Act::Secrets` (owners).
//! Nothing here speaks HTTP or MQTT.

pub mod campaign;
pub mod device;

use crate::access::tenancy::{Act, Caller};
use crate::audit::{action, AuditEvent};
use crate::device::uploads::{hashed_path, store_lock, HashingUpload, Sniffed};
use crate::secret::{random_from, Place};
use crate::{Core, Error, Result};
use base64::Engine;
use ed25519_dalek::Signer;
use rampart_proto::ota::{Manifest, Target, Version};
use rampart_store::at_rest::OTA_PRIVATE_KEY;
use rampart_store::{FirmwareRow, OtaKeyRow};
use zeroize::Zeroizing;

/// The `[ota]` settings the core reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtaConfig {
    /// How long a manifest and its download URL stay good.
    pub url_ttl_secs: u64,
    /// Prefixed to download paths in manifests (`https://host:port`); without it the URL is a
    /// path that the device resolves against the API address it registered with.
    pub download_base_url: Option<String>,
}

impl Default for OtaConfig {
    fn default() -> Self {
        OtaConfig {
            url_ttl_secs: 900,
            download_base_url: None,
        }
    }
}

const ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// Hardware versions in one firmware's list, at most.
const MAX_HARDWARE_VERSIONS: usize = 64;

/// What an uploader says about an image.
#[derive(Debug, Clone, Default)]
pub struct NewFirmware {
    pub target: String,
    pub version: String,
    /// Comma-separated; empty for any hardware.
    pub hardware_versions: String,
    pub notes: String,
}

/// A firmware image as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FirmwareView {
    pub firmware_id: String,
    pub product_key: String,
    pub target: String,
    pub version: String,
    pub sequence: i64,
    pub hardware_versions: Vec<String>,
    pub notes: String,
    pub size: u64,
    pub md5: String,
    pub sha256: String,
    pub created_at: i64,
}

impl From<FirmwareRow> for FirmwareView {
    fn from(r: FirmwareRow) -> Self {
        FirmwareView {
            hardware_versions: split_list(&r.hardware_versions),
            firmware_id: r.firmware_id,
            product_key: r.product_key,
            target: r.target,
            version: r.version,
            sequence: r.sequence,
            notes: r.notes,
            size: r.size.max(0) as u64,
            md5: r.md5,
            sha256: r.sha256,
            created_at: r.created_at,
        }
    }
}

/// The items of a comma-separated list, trimmed, empty ones dropped.
pub(crate) fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

fn valid_hardware_version(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 64
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

impl NewFirmware {
    /// The target and the normalised hardware list, or why not.
    fn check(&self) -> Result<(Target, String)> {
        let target = Target::parse(&self.target)
            .ok_or_else(|| Error::Invalid("`target` is `module` or `mcu`".into()))?;
        if Version::parse(&self.version).is_none() {
            return Err(Error::Invalid(
                "`version` is a semantic version (MAJOR.MINOR.PATCH[-PRE][+BUILD])".into(),
            ));
        }
        let hw = split_list(&self.hardware_versions);
        if hw.len() > MAX_HARDWARE_VERSIONS || !hw.iter().all(|h| valid_hardware_version(h)) {
            return Err(Error::Invalid(format!(
                "`hardware_versions`: at most {MAX_HARDWARE_VERSIONS}, comma-separated, each \
                 1-64 of letters, digits, `.`, `-` and `_`"
            )));
        }
        if self.notes.chars().count() > 4096 {
            return Err(Error::Invalid("`notes`: at most 4096 characters".into()));
        }
        Ok((target, hw.join(",")))
    }
}

impl Core {
    /// Where a firmware upload is written while it arrives: refused at once when the caller
    /// may not manage the product or there is no upload store. Bytes go through
    /// [`HashingUpload::write`] (413 past `ota.max_firmware_bytes`), then
    /// [`Core::firmware_register`].
    pub async fn firmware_upload_start(
        &self,
        caller: &Caller,
        product_key: &str,
    ) -> Result<HashingUpload> {
        self.authorize_product(caller, product_key, Act::Manage)
            .await?;
        let cfg = &self.config().uploads;
        let dir = cfg
            .dir
            .clone()
            .ok_or_else(|| Error::Internal("no upload directory is configured".into()))?;
        HashingUpload::start(&dir, cfg.max_firmware_bytes, "a firmware image")
            .await
            .map_err(|e| Error::Internal(format!("upload store: {e}")))
    }

    /// Keep an uploaded image: checks its fields, refuses an empty image or markup, stores the
    /// bytes by hash, gives the release the next sequence of its product and target. Audited
    /// (`ota.firmware_upload`).
    pub async fn firmware_register(
        &self,
        caller: &Caller,
        product_key: &str,
        meta: NewFirmware,
        upload: HashingUpload,
    ) -> Result<FirmwareView> {
        let (target, hardware_versions) = meta.check()?;
        if upload.size() == 0 {
            return Err(Error::Invalid("the firmware image is empty".into()));
        }
        if let Sniffed::Markup = upload.sniffed() {
            return Err(Error::UnsupportedContent(
                "a firmware image is binary; this one is HTML/XML markup".into(),
            ));
        }
        // The file and its holder's row arrive together under the store's lock, so a deletion
        // of another holder of the same bytes cannot remove the file in between.
        let held = store_lock().await;
        let stored = upload
            .persist()
            .await
            .map_err(|e| Error::Internal(format!("upload store: {e}")))?;
        let mut row = FirmwareRow {
            firmware_id: format!("fw_{}", random_from(ID_ALPHABET, 20)),
            product_key: product_key.to_owned(),
            target: target.as_str().to_owned(),
            version: meta.version.clone(),
            sequence: 0,
            hardware_versions,
            notes: meta.notes,
            size: stored.size as i64,
            md5: stored.md5.clone(),
            sha256: stored.sha256.clone(),
            created_by: format!("{}:{}", caller.actor().kind, caller.actor().id),
            created_at: self.now_ms(),
        };
        let inserted = self.store().insert_firmware(&row).await;
        if inserted.is_err() {
            // Refused: the file stays only if something else holds the same bytes.
            self.remove_unheld(&stored.sha256).await;
        }
        drop(held);
        row.sequence = match inserted {
            Ok(seq) => seq,
            Err(rampart_store::StoreError::Conflict) => {
                return Err(Error::Conflict(format!(
                    "version {} of the {} firmware exists already (or another upload took its \
                     sequence at the same moment: retry)",
                    row.version, row.target
                )))
            }
            Err(e) => return Err(e.into()),
        };
        self.audit(
            AuditEvent::new(&caller.actor(), action::OTA_FIRMWARE_UPLOAD, "ok")
                .target(format!("firmware:{}", row.firmware_id))
                .tenant_opt(self.product_tenant(product_key).await)
                .detail(format!(
                    "product={product_key} target={} version={} sequence={} bytes={} sha256={}",
                    row.target, row.version, row.sequence, row.size, row.sha256
                )),
        )
        .await;
        Ok(row.into())
    }

    /// A page of a product's firmware, newest first; needs read access to the product.
    pub async fn firmware_list(
        &self,
        caller: &Caller,
        product_key: &str,
        page: i64,
        limit: i64,
    ) -> Result<(Vec<FirmwareView>, i64)> {
        self.authorize_product(caller, product_key, Act::Read)
            .await?;
        let (rows, total) = self
            .store()
            .list_firmware(product_key, (page - 1) * limit, limit)
            .await?;
        Ok((rows.into_iter().map(Into::into).collect(), total))
    }

    /// A firmware row of `product_key` (another product's is `NotFound`).
    pub(crate) async fn firmware_of(&self, product_key: &str, id: &str) -> Result<FirmwareRow> {
        self.store()
            .firmware(id)
            .await?
            .filter(|f| f.product_key == product_key)
            .ok_or(Error::NotFound("firmware"))
    }

    /// Delete a firmware image; `Conflict` while a running or paused campaign uses it. Its
    /// bytes leave the upload store when nothing else holds the same content (another image, an
    /// allowlist file: the store counts the holders of each hash). Audited
    /// (`ota.firmware_delete`).
    pub async fn firmware_delete(
        &self,
        caller: &Caller,
        product_key: &str,
        firmware_id: &str,
    ) -> Result<()> {
        self.authorize_product(caller, product_key, Act::Manage)
            .await?;
        self.firmware_of(product_key, firmware_id).await?;
        let held = store_lock().await;
        let (row, shared) = match self.store().delete_firmware(firmware_id).await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(Error::NotFound("firmware")),
            Err(rampart_store::StoreError::Conflict) => {
                return Err(Error::Conflict(
                    "a running or paused campaign uses this firmware: abort it first".into(),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        if !shared {
            if let Some(path) = self.firmware_path(&row.sha256) {
                if let Err(e) = tokio::fs::remove_file(&path).await {
                    tracing::warn!(error = %e, sha256 = %row.sha256, "firmware file not removed");
                }
            }
        }
        drop(held);
        self.audit(
            AuditEvent::new(&caller.actor(), action::OTA_FIRMWARE_DELETE, "ok")
                .target(format!("firmware:{firmware_id}"))
                .tenant_opt(self.product_tenant(product_key).await)
                .detail(format!(
                    "product={product_key} target={} version={} sha256={}",
                    row.target, row.version, row.sha256
                )),
        )
        .await;
        Ok(())
    }

    /// Where the bytes of an image with this SHA-256 are.
    pub(crate) fn firmware_path(&self, sha256: &str) -> Option<std::path::PathBuf> {
        hashed_path(self.config().uploads.dir.as_ref()?, sha256)
    }

    /// Remove the file `sha256` from the upload store when nothing holds it (the caller holds
    /// the store's lock).
    pub(crate) async fn remove_unheld(&self, sha256: &str) {
        match self.store().upload_refs(sha256).await {
            Ok(0) => {
                if let Some(path) = self.firmware_path(sha256) {
                    if let Err(e) = tokio::fs::remove_file(&path).await {
                        tracing::warn!(error = %e, sha256, "unheld upload not removed");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, sha256, "upload holders not counted"),
        }
    }

    /// The product's OTA key pair, made (and its private half sealed) on first use.
    async fn ota_key_row(&self, product_key: &str) -> Result<OtaKeyRow> {
        if let Some(k) = self.store().ota_key(product_key).await? {
            return Ok(k);
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, seed.as_mut());
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let row = OtaKeyRow {
            product_key: product_key.to_owned(),
            public_key: signing.verifying_key().to_bytes().to_vec(),
            private_enc: self
                .key()
                .seal(Place::new(OTA_PRIVATE_KEY, product_key), seed.as_ref()),
            created_at: self.now_ms(),
        };
        let kept = self.store().insert_ota_key(&row).await?;
        if kept.public_key == row.public_key {
            self.audit(
                AuditEvent::new(&crate::audit::Actor::admin(), action::OTA_KEY_CREATE, "ok")
                    .target(format!("product:{product_key}"))
                    .tenant_opt(self.product_tenant(product_key).await),
            )
            .await;
        }
        Ok(kept)
    }

    /// The product's OTA public key (32 bytes), to burn into its devices; needs read access.
    pub async fn ota_public_key(&self, caller: &Caller, product_key: &str) -> Result<[u8; 32]> {
        self.authorize_product(caller, product_key, Act::Read)
            .await?;
        self.product(product_key).await?;
        let row = self.ota_key_row(product_key).await?;
        row.public_key
            .as_slice()
            .try_into()
            .map_err(|_| Error::Internal("stored OTA public key is not 32 bytes".into()))
    }

    /// The product's signing key, unsealed.
    async fn ota_signing_key(&self, product_key: &str) -> Result<ed25519_dalek::SigningKey> {
        let row = self.ota_key_row(product_key).await?;
        let seed = self
            .key()
            .open(Place::new(OTA_PRIVATE_KEY, product_key), &row.private_enc)?;
        let seed: &[u8; 32] = seed
            .as_slice()
            .try_into()
            .map_err(|_| Error::Internal("sealed OTA key is not 32 bytes".into()))?;
        Ok(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// A signed manifest of `fw` for device `did`, its URL good for `ota.url_ttl_secs`.
    pub(crate) async fn ota_manifest(
        &self,
        fw: &FirmwareRow,
        did: &str,
        campaign_id: Option<&str>,
        rollback: bool,
    ) -> Result<Manifest> {
        let expires_at = self.now_ms() + (self.config().ota.url_ttl_secs as i64) * 1000;
        let signing = self.ota_signing_key(&fw.product_key).await?;
        let path = device::download_path(&signing, &fw.firmware_id, did, expires_at);
        let url = match &self.config().ota.download_base_url {
            Some(base) => format!("{}{path}", base.trim_end_matches('/')),
            None => path,
        };
        let mut m = Manifest {
            firmware_id: fw.firmware_id.clone(),
            product_key: fw.product_key.clone(),
            target: Target::parse(&fw.target)
                .ok_or_else(|| Error::Internal("stored firmware target".into()))?,
            version: fw.version.clone(),
            sequence: fw.sequence,
            size: fw.size.max(0) as u64,
            md5: fw.md5.clone(),
            sha256: fw.sha256.clone(),
            url,
            expires_at,
            rollback,
            campaign_id: campaign_id.map(str::to_owned),
            signature: String::new(),
        };
        m.signature = base64::engine::general_purpose::STANDARD
            .encode(signing.sign(&m.signing_bytes()).to_bytes());
        Ok(m)
    }
}
