//! Device identity issuance (M2): factory batches (one device one secret), MAC/IMEI allowlists, and
//! signed registration in both modes (product secret or factory device secret).

use crate::audit::{Actor, AuditEvent};
use crate::bus::DeviceEvent;
use crate::secret::Place;
use crate::secret::{random_from, random_hex, Secret};
use crate::{now_ms, Core, Error, Result};
use rampart_proto::ids::{valid_hardware_id, ProductKey};
use rampart_proto::sign;
use rampart_store::at_rest as col;
use rampart_store::{DeviceRow, StoreError};
use serde::{Deserialize, Serialize};

/// Largest factory batch.
pub const MAX_BATCH: usize = 100_000;
/// Largest allowlist upload in one call.
pub const MAX_ALLOWLIST: usize = 100_000;

const DID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const PASSCODE_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegisterMode {
    Product,
    Device,
}

/// The body of `POST /v1/device/register`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub product_key: String,
    pub hardware_id: String,
    pub ts: i64,
    pub nonce: String,
    pub mode: RegisterMode,
    pub sign: String,
}

impl RegisterRequest {
    /// Check the fields' grammar (product key, hardware id, nonce) and build the canonical string
    /// the `sign` field must be the HMAC of. Touches no store and no clock: the time window, the
    /// signature and the nonce's single use are [`Core::register`]'s. Public for the fuzz targets.
    pub fn signed_message(&self) -> Result<(ProductKey, String)> {
        let pk = ProductKey::parse(&self.product_key).map_err(|e| Error::Invalid(e.to_string()))?;
        if !valid_hardware_id(&self.hardware_id) {
            return Err(Error::Invalid(
                "hardware_id: 1-64 printable ASCII, no space, `&`, `=` or `|`".into(),
            ));
        }
        if self.nonce.len() < 8
            || self.nonce.len() > 64
            || !self.nonce.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(Error::Invalid(
                "nonce: 8-64 characters of [A-Za-z0-9]".into(),
            ));
        }
        let msg = sign::register_string(pk.as_str(), &self.hardware_id, self.ts, &self.nonce);
        Ok((pk, msg))
    }
}

/// The answer: `device_secret` only in mode product.
#[derive(Serialize)]
pub struct Registered {
    pub did: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_secret: Option<String>,
    pub passcode: String,
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered")
            .field("did", &self.did)
            .finish_non_exhaustive()
    }
}

/// One issued factory identity: shown once, then only its sealed form exists.
#[derive(Debug)]
pub struct FactoryIdentity {
    pub serial: String,
    pub secret: Secret,
}

impl Core {
    /// Issue a factory batch of `count` identities for a product.
    pub async fn factory_issue(
        &self,
        product_key: &str,
        count: usize,
        actor: &Actor,
    ) -> Result<(String, Vec<FactoryIdentity>)> {
        if count == 0 || count > MAX_BATCH {
            return Err(Error::Invalid(format!("count must be 1..={MAX_BATCH}")));
        }
        let product = self.product(product_key).await?;
        let batch_id = random_from(DID_ALPHABET, 6);
        let ids: Vec<FactoryIdentity> = (1..=count)
            .map(|i| FactoryIdentity {
                serial: format!("{}-{batch_id}-{i:06}", product.product_key),
                secret: Secret::new(random_hex(16)),
            })
            .collect();
        let sealed: Vec<(String, Vec<u8>)> = ids
            .iter()
            .map(|f| {
                (
                    f.serial.clone(),
                    self.key().seal(
                        Place::new(col::FACTORY_SECRET, &f.serial),
                        f.secret.expose().as_bytes(),
                    ),
                )
            })
            .collect();
        self.store()
            .insert_factory_batch(&batch_id, product_key, &sealed, now_ms())
            .await
            .map_err(|e| match e {
                StoreError::Conflict => Error::Conflict("batch id collision; retry".into()),
                e => e.into(),
            })?;
        self.audit(
            AuditEvent::new(actor, "factory.issue", "ok")
                .target(format!("product:{product_key}"))
                .tenant_opt(self.product_tenant(product_key).await)
                .detail(format!("batch={batch_id} count={count}")),
        )
        .await;
        Ok((batch_id, ids))
    }

    /// Add MAC/IMEI ids to a product's allowlist; returns how many were new.
    pub async fn allowlist_add(
        &self,
        product_key: &str,
        ids: &[String],
        actor: &Actor,
    ) -> Result<u64> {
        if ids.is_empty() || ids.len() > MAX_ALLOWLIST {
            return Err(Error::Invalid(format!(
                "1..={MAX_ALLOWLIST} hardware ids per call"
            )));
        }
        if let Some(bad) = ids.iter().find(|i| !valid_hardware_id(i)) {
            return Err(Error::Invalid(format!(
                "invalid hardware id `{}`: 1-64 printable ASCII, no space, `&`, `=` or `|`",
                bad.chars().take(80).collect::<String>()
            )));
        }
        self.product(product_key).await?;
        let n = self
            .store()
            .allowlist_add(product_key, ids, now_ms())
            .await?;
        self.audit(
            AuditEvent::new(actor, "allowlist.add", "ok")
                .target(format!("product:{product_key}"))
                .tenant_opt(self.product_tenant(product_key).await)
                .detail(format!("submitted={} new={n}", ids.len())),
        )
        .await;
        Ok(n)
    }

    /// Signed device registration. Every failure of proof answers `Unauthorized` alike, so a caller
    /// learns nothing about which products or serials exist.
    pub async fn register(
        &self,
        req: &RegisterRequest,
        source_ip: Option<String>,
    ) -> Result<Registered> {
        let res = self.register_inner(req).await;
        let outcome = match &res {
            Ok(_) => "ok".to_owned(),
            Err(e) => format!("refused: {e}"),
        };
        let did = res.as_ref().map(|r| r.did.clone()).ok();
        let mut ev = AuditEvent::new(
            &Actor::device_candidate(&req.hardware_id),
            "device.register",
            &outcome,
        )
        .target(format!(
            "product:{}",
            req.product_key.chars().take(64).collect::<String>()
        ));
        if let Some(ip) = source_ip {
            ev = ev.source_ip(ip);
        }
        if let Some(did) = did {
            // Only a registration that proved itself names its product's tenant.
            ev = ev
                .detail(format!("did={did}"))
                .tenant_opt(self.product_tenant(&req.product_key).await);
        }
        self.audit(ev).await;
        res
    }

    async fn register_inner(&self, req: &RegisterRequest) -> Result<Registered> {
        let (pk, msg) = req.signed_message()?;
        let now = now_ms();
        if (now - req.ts).abs() > self.config().clock_window_ms {
            return Err(Error::Unauthorized);
        }
        // Find the key to check the signature with; a missing product or serial is checked against a
        // random key so timing and answer match a bad signature.
        let key: Secret = match req.mode {
            RegisterMode::Product => self.product_secret(pk.as_str()).await?,
            RegisterMode::Device => {
                match self.store().get_factory_identity(&req.hardware_id).await? {
                    Some(f) if f.product_key == pk.as_str() => Some(self.key().open_string(
                        Place::new(col::FACTORY_SECRET, &req.hardware_id),
                        &f.secret_enc,
                    )?),
                    _ => None,
                }
            }
        }
        .unwrap_or_else(|| Secret::new(random_hex(16)));
        if !sign::verify_hex(key.expose().as_bytes(), &msg, &req.sign) {
            return Err(Error::Unauthorized);
        }
        let product = self.product(pk.as_str()).await?;
        let expires = now + 2 * self.config().clock_window_ms;
        if !self
            .store()
            .use_nonce(&format!("register:{pk}"), &req.nonce, expires, now)
            .await?
        {
            return Err(Error::Unauthorized);
        }
        match req.mode {
            RegisterMode::Product => {
                if !product.identity.dynamic_registration {
                    return Err(Error::Forbidden(
                        "this product does not allow registration with the product secret".into(),
                    ));
                }
                if product.identity.allowlist
                    && !self
                        .store()
                        .allowlist_contains(pk.as_str(), &req.hardware_id)
                        .await?
                {
                    return Err(Error::Forbidden(
                        "hardware id is not on the product's allowlist".into(),
                    ));
                }
                let secret = Secret::new(random_hex(16));
                let (did, passcode) = self
                    .upsert_device(pk.as_str(), &req.hardware_id, "product", &secret, true)
                    .await?;
                Ok(Registered {
                    did,
                    device_secret: Some(secret.expose().to_owned()),
                    passcode,
                })
            }
            RegisterMode::Device => {
                // The device keeps its factory secret; store it sealed again under the device.
                let (did, passcode) = self
                    .upsert_device(pk.as_str(), &req.hardware_id, "device", &key, false)
                    .await?;
                Ok(Registered {
                    did,
                    device_secret: None,
                    passcode,
                })
            }
        }
    }

    /// Tell the event stream (and webhooks) that a device registered, after its row is stored.
    async fn announce_registered(&self, did: &str, hardware_id: &str, mode: &str, created: bool) {
        self.bus()
            .publish_event(DeviceEvent::Registered {
                did: did.to_owned(),
                ts: now_ms(),
                hardware_id: hardware_id.to_owned(),
                mode: mode.to_owned(),
                created,
            })
            .await;
    }

    /// Create the device for (product, hardware), or for a known one keep its did and, with
    /// `rotate`, replace its secret (the old secret stops working and its session is closed).
    async fn upsert_device(
        &self,
        pk: &str,
        hid: &str,
        mode: &str,
        secret: &Secret,
        rotate: bool,
    ) -> Result<(String, String)> {
        if let Some(d) = self.store().get_device_by_hardware(pk, hid).await? {
            if rotate {
                let sealed = self.key().seal(
                    Place::new(col::DEVICE_SECRET, &d.did),
                    secret.expose().as_bytes(),
                );
                self.store().set_device_secret(&d.did, &sealed).await?;
                self.bus().kick(&d.did);
            }
            let passcode = self
                .key()
                .open_string(Place::new(col::DEVICE_PASSCODE, &d.did), &d.passcode_enc)?;
            self.announce_registered(&d.did, hid, mode, false).await;
            return Ok((d.did, passcode.expose().to_owned()));
        }
        let did = random_from(DID_ALPHABET, 20);
        let passcode = Secret::new(random_from(PASSCODE_ALPHABET, 10));
        let row = DeviceRow {
            did: did.clone(),
            product_key: pk.to_owned(),
            hardware_id: hid.to_owned(),
            mode: mode.to_owned(),
            secret_enc: self.key().seal(
                Place::new(col::DEVICE_SECRET, &did),
                secret.expose().as_bytes(),
            ),
            passcode_enc: self.key().seal(
                Place::new(col::DEVICE_PASSCODE, &did),
                passcode.expose().as_bytes(),
            ),
            created_at: now_ms(),
            online: false,
            last_seen: None,
            state: "{}".into(),
        };
        match self.store().insert_device(&row).await {
            Ok(()) => {
                self.announce_registered(&did, hid, mode, true).await;
                Ok((did, passcode.expose().to_owned()))
            }
            // A concurrent registration of the same hardware won; answer with its did.
            Err(StoreError::Conflict) => {
                let d = self
                    .store()
                    .get_device_by_hardware(pk, hid)
                    .await?
                    .ok_or_else(|| Error::Internal("device vanished after conflict".into()))?;
                let passcode = self
                    .key()
                    .open_string(Place::new(col::DEVICE_PASSCODE, &d.did), &d.passcode_enc)?;
                Ok((d.did, passcode.expose().to_owned()))
            }
            Err(e) => Err(e.into()),
        }
    }
}
