//! Device identity issuance: factory batches (one device one secret), MAC/IMEI allowlists, and
//! signed registration in both modes (product secret or factory device secret).

use crate::audit::action;
use crate::audit::{Actor, AuditEvent};
use crate::auth_refusal::{self, RefusalReason};
use crate::device::bus::DeviceEvent;
use crate::limits::name as limit;
use crate::secret::{random_from, random_hex, Place, Secret};
use crate::{Core, Error, Result};
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
    /// For hardware already registered: HMAC-SHA256 of the same canonical string as `sign`, keyed
    /// by the device's current secret. Proves the caller is the device; it gets a new secret.
    #[serde(default)]
    pub device_sign: Option<String>,
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

/// The answer. A first registration: `device_secret` in mode product only, and the passcode. A
/// device proving its secret with `device_sign`: a new `device_secret`, no passcode. A
/// registration in an open re-provisioning window: a new `device_secret` and a new passcode.
#[derive(Serialize)]
pub struct Registered {
    pub did: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passcode: Option<String>,
}

/// The default and the largest re-provisioning window.
pub const REPROVISION_DEFAULT_SECS: i64 = 86_400;
pub const REPROVISION_MAX_SECS: i64 = 30 * 86_400;

/// How a registration that was allowed went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// A new device.
    Created,
    /// The device proved its current secret and got a new one.
    Rotated,
    /// The owner's window was spent: new secret and passcode, every binding ended.
    Reprovisioned,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "ok created",
            Outcome::Rotated => "ok rotated",
            Outcome::Reprovisioned => "ok reprovisioned",
        }
    }
}

/// Refused registrations, counted per source address and clock minute: the `register.failures.ip`
/// limit reads the count of refused proofs, and each address's minute becomes one audit entry
/// with its counts once the minute is over ([`Core::flush_registration_refusals`]), so a flood of
/// refusals costs no store write per request.
#[derive(Default)]
pub(crate) struct RegisterRefusals {
    inner: std::sync::Mutex<RefusalState>,
}

#[derive(Default)]
struct RefusalState {
    /// The current minute's counts per address (IPv6: per /64).
    current: std::collections::HashMap<String, RefusalCounts>,
    /// Counts of minutes that ended, waiting for their audit entries.
    done: Vec<(String, RefusalCounts)>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RefusalCounts {
    /// Start of the clock minute (unix ms).
    minute: i64,
    /// Refused proofs: signature, timestamp, nonce, unknown product or serial, `device_sign`.
    failures: u64,
    /// Refused by `register.ip` or `register.failures.ip`.
    limited: u64,
    /// Other refusals (malformed field, registration not allowed, allowlist).
    other: u64,
}

/// Most addresses counted separately within one minute; past it, new addresses share one entry
/// (`*`), so a flood from many addresses cannot grow this map without bound.
const MAX_REFUSING_ADDRESSES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
pub(crate) enum RefusalKind {
    Failure,
    Limited,
    Other,
}

impl RegisterRefusals {
    fn minute(now: i64) -> i64 {
        now - now.rem_euclid(60_000)
    }

    /// Refused proofs from `net` in the current minute.
    fn failures(&self, net: &str, now: i64) -> u64 {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.current
            .get(net)
            .filter(|c| c.minute == Self::minute(now))
            .map_or(0, |c| c.failures)
    }

    fn count(&self, net: &str, kind: RefusalKind, now: i64) {
        let minute = Self::minute(now);
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let st = &mut *g;
        let key = if st.current.len() >= MAX_REFUSING_ADDRESSES && !st.current.contains_key(net) {
            "*"
        } else {
            net
        };
        let c = st.current.entry(key.to_owned()).or_default();
        if c.minute != minute {
            if c.minute != 0 {
                st.done.push((key.to_owned(), *c));
            }
            *c = RefusalCounts {
                minute,
                ..Default::default()
            };
        }
        match kind {
            RefusalKind::Failure => c.failures += 1,
            RefusalKind::Limited => c.limited += 1,
            RefusalKind::Other => c.other += 1,
        }
    }

    /// Take the counts of minutes that ended before `now` (all of them with `all`).
    fn take(&self, now: i64, all: bool) -> Vec<(String, RefusalCounts)> {
        let minute = Self::minute(now);
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let st = &mut *g;
        let mut out = std::mem::take(&mut st.done);
        st.current.retain(|net, c| {
            if all || c.minute < minute {
                out.push((net.clone(), *c));
                false
            } else {
                true
            }
        });
        if st.current.capacity() > 4 * st.current.len().max(1024) {
            st.current.shrink_to_fit();
        }
        out
    }
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
        let (batch_id, ids, sealed) = self.new_batch(product_key, count).await?;
        self.store()
            .insert_factory_batch(&batch_id, product_key, &sealed, self.now_ms())
            .await
            .map_err(|e| match e {
                StoreError::Conflict => Error::Conflict("batch id collision; retry".into()),
                e => e.into(),
            })?;
        self.audit(
            AuditEvent::new(actor, action::FACTORY_ISSUE, "ok")
                .target(format!("product:{product_key}"))
                .tenant_opt(self.product_tenant(product_key).await)
                .detail(format!("batch={batch_id} count={count}")),
        )
        .await;
        Ok((batch_id, ids))
    }

    /// A new batch id and `count` identities for a product, with their secrets sealed (nothing
    /// stored yet).
    pub(crate) async fn new_batch(
        &self,
        product_key: &str,
        count: usize,
    ) -> Result<(String, Vec<FactoryIdentity>, Vec<(String, Vec<u8>)>)> {
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
        Ok((batch_id, ids, sealed))
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
            .allowlist_add(product_key, ids, self.now_ms())
            .await?;
        self.audit(
            AuditEvent::new(actor, action::ALLOWLIST_ADD, "ok")
                .target(format!("product:{product_key}"))
                .tenant_opt(self.product_tenant(product_key).await)
                .detail(format!("submitted={} new={n}", ids.len())),
        )
        .await;
        Ok(n)
    }

    /// Signed device registration. Every failure of proof answers `Unauthorized` alike, so a caller
    /// learns nothing about which products or serials exist.
    ///
    /// Hardware that already has a device is refused (`AlreadyRegistered`, changing nothing) unless
    /// the caller proves the device's current secret (`device_sign`: a new secret, no passcode)
    /// or the product's owner opened a re-provisioning window ([`Core::open_reprovision`]: a new
    /// secret and passcode, every binding ended). The passcode is never sent again otherwise.
    ///
    /// Limits: `register.ip` per address, then `register.failures.ip` (refused proofs per address
    /// and minute). Refusals are audited per address and minute with their counts; a refused
    /// re-registration of a known device is audited at once, naming it.
    pub async fn register(
        &self,
        req: &RegisterRequest,
        source_ip: Option<String>,
    ) -> Result<Registered> {
        let now = self.now_ms();
        let net = source_ip
            .as_deref()
            .map(crate::limits::api::network_of)
            .unwrap_or_default();
        self.admit_registration(source_ip.as_deref(), &req.hardware_id, now)?;
        let mut bad_device_sign = false;
        let mut why = None;
        let res = self
            .register_inner(req, &mut bad_device_sign, &mut why)
            .await;
        if let Err(e) = &res {
            let why = why.unwrap_or(match e {
                Error::AlreadyRegistered if bad_device_sign => RefusalReason::WrongSignature,
                Error::AlreadyRegistered => RefusalReason::AlreadyRegistered,
                Error::Forbidden(_) => RefusalReason::NotAllowed("by the product's identity modes"),
                Error::NotFound(_) => RefusalReason::Unknown("product"),
                Error::Store(_) | Error::Internal(_) => RefusalReason::Internal,
                _ => RefusalReason::Malformed("registration request"),
            });
            auth_refusal::record("http", &why, &req.hardware_id, source_ip.as_deref());
        }
        match &res {
            Ok((r, outcome)) => {
                let mut ev = AuditEvent::new(
                    &Actor::device_candidate(&req.hardware_id),
                    action::DEVICE_REGISTER,
                    outcome.as_str(),
                )
                .target(format!("device:{}", r.did))
                .detail(format!("product={}", req.product_key))
                .tenant_opt(self.product_tenant(&req.product_key).await);
                if let Some(ip) = &source_ip {
                    ev = ev.source_ip(ip.clone());
                }
                self.audit(ev).await;
            }
            Err(Error::AlreadyRegistered) => {
                if bad_device_sign {
                    self.inner_refusals().count(&net, RefusalKind::Failure, now);
                }
                // Only a caller holding the product secret (or the factory secret) gets here,
                // within `register.ip`: one entry each, naming the device.
                let did = self
                    .store()
                    .get_device_by_hardware(&req.product_key, &req.hardware_id)
                    .await
                    .ok()
                    .flatten()
                    .map(|d| d.did);
                let mut ev = AuditEvent::new(
                    &Actor::device_candidate(&req.hardware_id),
                    action::DEVICE_REGISTER,
                    if bad_device_sign {
                        "refused: already registered (device_sign does not match)"
                    } else {
                        "refused: already registered"
                    },
                )
                .target(did.map_or_else(
                    || format!("product:{}", req.product_key),
                    |d| format!("device:{d}"),
                ))
                .tenant_opt(self.product_tenant(&req.product_key).await);
                if let Some(ip) = &source_ip {
                    ev = ev.source_ip(ip.clone());
                }
                self.audit(ev).await;
            }
            Err(e) => {
                let kind = match e {
                    Error::Unauthorized => RefusalKind::Failure,
                    _ => RefusalKind::Other,
                };
                self.inner_refusals().count(&net, kind, now);
            }
        }
        res.map(|(r, _)| r)
    }

    /// The limits every registration passes first, whatever its proof: `register.ip` per
    /// address, then `register.failures.ip` (refused proofs from the address this minute). A
    /// caller without an address (in-process tools) is not limited.
    pub(crate) fn admit_registration(
        &self,
        source_ip: Option<&str>,
        claimed: &str,
        now: i64,
    ) -> Result<()> {
        let Some(ip) = source_ip else {
            return Ok(());
        };
        let net = crate::limits::api::network_of(ip);
        if let Err(r) = self.limits().check_register_ip(ip, now) {
            self.inner_refusals().count(&net, RefusalKind::Limited, now);
            let why = RefusalReason::Limit(r.state.name);
            auth_refusal::record("http", &why, claimed, Some(ip));
            return Err(r.into());
        }
        let cap = u64::from(self.config().limits.register_failures_ip);
        if cap > 0 && self.inner_refusals().failures(&net, now) >= cap {
            self.inner_refusals().count(&net, RefusalKind::Limited, now);
            let r = crate::limits::api::counted::<()>(Err(failures_refusal(cap, now))).unwrap_err();
            let why = RefusalReason::Limit(r.state.name);
            auth_refusal::record("http", &why, claimed, Some(ip));
            return Err(r.into());
        }
        Ok(())
    }

    /// Count a refused proof of a registration from `source_ip` towards `register.failures.ip`.
    pub(crate) fn count_registration_failure(&self, source_ip: Option<&str>, now: i64) {
        if let Some(ip) = source_ip {
            let net = crate::limits::api::network_of(ip);
            self.inner_refusals().count(&net, RefusalKind::Failure, now);
        }
    }

    /// Write one audit entry per address and ended minute of refused registrations (every
    /// minute's with `all`, at shutdown). Called by the quota flusher about once a second.
    pub async fn flush_registration_refusals(&self, all: bool) {
        for (net, c) in self.inner_refusals().take(self.now_ms(), all) {
            let total = c.failures + c.limited + c.other;
            let mut ev = AuditEvent::new(
                &Actor::device_candidate("*"),
                action::DEVICE_REGISTER,
                &format!("refused x{total}"),
            )
            .detail(format!(
                "minute={} refused={total} proof={} limited={} other={}",
                c.minute, c.failures, c.limited, c.other
            ));
            if !net.is_empty() {
                ev = ev.source_ip(net);
            }
            self.audit(ev).await;
        }
    }

    /// Open a single-use re-provisioning window for a device, for `expires_in_s` seconds: its
    /// next registration gets a new secret and passcode and ends every binding, share and bind
    /// token. The caller's right to manage the device's product is checked by the edge.
    pub async fn open_reprovision(
        &self,
        did: &str,
        expires_in_s: i64,
        actor: &Actor,
        source_ip: Option<String>,
    ) -> Result<i64> {
        if !(1..=REPROVISION_MAX_SECS).contains(&expires_in_s) {
            return Err(Error::Invalid(format!(
                "expires_in_s must be 1..={REPROVISION_MAX_SECS}"
            )));
        }
        let until = self.now_ms() + expires_in_s * 1000;
        if !self.store().open_reprovision(did, until).await? {
            return Err(Error::NotFound("device"));
        }
        let tenant = match self.store().get_device(did).await? {
            Some(d) => self.product_tenant(&d.product_key).await,
            None => None,
        };
        let mut ev = AuditEvent::new(actor, action::DEVICE_REPROVISION_OPEN, "ok")
            .target(format!("device:{did}"))
            .tenant_opt(tenant)
            .detail(format!("until={until}"));
        if let Some(ip) = source_ip {
            ev = ev.source_ip(ip);
        }
        self.audit(ev).await;
        Ok(until)
    }

    fn inner_refusals(&self) -> &RegisterRefusals {
        &self.inner.register_refusals
    }

    /// `why`: set to the reason of an `Unauthorized` refusal (the caller hears only that).
    async fn register_inner(
        &self,
        req: &RegisterRequest,
        bad_device_sign: &mut bool,
        why: &mut Option<RefusalReason>,
    ) -> Result<(Registered, Outcome)> {
        let (pk, msg) = req.signed_message()?;
        let now = self.now_ms();
        if let Some(skew) = RefusalReason::clock(req.ts, now, self.config().clock_window_ms) {
            *why = Some(skew);
            return Err(Error::Unauthorized);
        }
        // Find the key to check the signature with; a missing product or serial is checked against a
        // random key so timing and answer match a bad signature.
        let key: Option<Secret> = match req.mode {
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
        };
        let known = key.is_some();
        let key = key.unwrap_or_else(|| Secret::new(random_hex(16)));
        if !sign::verify_hex(key.expose().as_bytes(), &msg, &req.sign) {
            *why = Some(match (known, req.mode) {
                (true, _) => RefusalReason::WrongSignature,
                (false, RegisterMode::Product) => RefusalReason::Unknown("product"),
                (false, RegisterMode::Device) => RefusalReason::Unknown("factory serial"),
            });
            return Err(Error::Unauthorized);
        }
        let product = self.product(pk.as_str()).await?;
        let expires = now + 2 * self.config().clock_window_ms;
        if !self
            .store()
            .use_nonce(&format!("register:{pk}"), &req.nonce, expires, now)
            .await?
        {
            *why = Some(RefusalReason::Replayed);
            return Err(Error::Unauthorized);
        }
        let mode = match req.mode {
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
                "product"
            }
            RegisterMode::Device => "device",
        };
        let hid = req.hardware_id.as_str();
        if let Some(d) = self
            .store()
            .get_device_by_hardware(pk.as_str(), hid)
            .await?
        {
            return self
                .register_again(req, &msg, d, mode, bad_device_sign)
                .await;
        }
        // A new device. In mode product it gets a secret of its own; in mode device it keeps
        // its factory secret, stored sealed again under the device.
        let (secret, shown) = match req.mode {
            RegisterMode::Product => {
                let s = Secret::new(random_hex(16));
                let shown = s.expose().to_owned();
                (s, Some(shown))
            }
            RegisterMode::Device => (key, None),
        };
        let (row, passcode) = self.new_device_row(pk.as_str(), hid, mode, &secret);
        let did = row.did.clone();
        match self.store().insert_device(&row).await {
            Ok(()) => {
                self.announce_registered(&did, hid, mode, true).await;
                Ok((
                    Registered {
                        did,
                        device_secret: shown,
                        passcode: Some(passcode.expose().to_owned()),
                    },
                    Outcome::Created,
                ))
            }
            // A concurrent registration of the same hardware won: this one is a second
            // registration without proof.
            Err(StoreError::Conflict) => Err(Error::AlreadyRegistered),
            Err(e) => Err(e.into()),
        }
    }

    /// A registration of hardware that already has device `d`: rotate the secret for a caller
    /// proving the current one, re-provision in an open window, else refuse changing nothing.
    async fn register_again(
        &self,
        req: &RegisterRequest,
        msg: &str,
        d: DeviceRow,
        mode: &str,
        bad_device_sign: &mut bool,
    ) -> Result<(Registered, Outcome)> {
        if let Some(ds) = &req.device_sign {
            let current = self
                .key()
                .open_string(Place::new(col::DEVICE_SECRET, &d.did), &d.secret_enc)?;
            if sign::verify_hex(current.expose().as_bytes(), msg, ds) {
                let secret = Secret::new(random_hex(16));
                let sealed = self.key().seal(
                    Place::new(col::DEVICE_SECRET, &d.did),
                    secret.expose().as_bytes(),
                );
                self.store().set_device_secret(&d.did, &sealed).await?;
                // The old secret stops working: close the session that used it.
                self.bus().kick(&d.did);
                self.announce_registered(&d.did, &req.hardware_id, mode, false)
                    .await;
                return Ok((
                    Registered {
                        did: d.did,
                        device_secret: Some(secret.expose().to_owned()),
                        passcode: None,
                    },
                    Outcome::Rotated,
                ));
            }
            *bad_device_sign = true;
            return Err(Error::AlreadyRegistered);
        }
        let secret = Secret::new(random_hex(16));
        let passcode = Secret::new(random_from(PASSCODE_ALPHABET, 10));
        let Some(users) = self
            .store()
            .reprovision_device(
                &d.did,
                &self.key().seal(
                    Place::new(col::DEVICE_SECRET, &d.did),
                    secret.expose().as_bytes(),
                ),
                &self.key().seal(
                    Place::new(col::DEVICE_PASSCODE, &d.did),
                    passcode.expose().as_bytes(),
                ),
                self.now_ms(),
            )
            .await?
        else {
            return Err(Error::AlreadyRegistered);
        };
        self.bus().kick(&d.did);
        self.access_changed(crate::access::bindings::AccessChange::DeviceCleared {
            did: d.did.clone(),
        });
        self.audit(
            AuditEvent::new(
                &Actor::device_candidate(&req.hardware_id),
                action::DEVICE_UNBIND_ALL,
                "ok",
            )
            .target(format!("device:{}", d.did))
            .detail(format!("re-provisioned; users unbound={}", users.len())),
        )
        .await;
        self.announce_registered(&d.did, &req.hardware_id, mode, false)
            .await;
        Ok((
            Registered {
                did: d.did,
                device_secret: Some(secret.expose().to_owned()),
                passcode: Some(passcode.expose().to_owned()),
            },
            Outcome::Reprovisioned,
        ))
    }

    /// Tell the event stream (and webhooks) that a device registered, after its row is stored.
    /// The row of a new device of `product_key` with hardware id `hardware_id`: a fresh did, its
    /// secret and a fresh passcode sealed; and the passcode.
    pub(crate) fn new_device_row(
        &self,
        product_key: &str,
        hardware_id: &str,
        mode: &str,
        secret: &Secret,
    ) -> (DeviceRow, Secret) {
        let did = random_from(DID_ALPHABET, 20);
        let passcode = Secret::new(random_from(PASSCODE_ALPHABET, 10));
        let row = DeviceRow {
            did: did.clone(),
            product_key: product_key.to_owned(),
            hardware_id: hardware_id.to_owned(),
            mode: mode.to_owned(),
            secret_enc: self.key().seal(
                Place::new(col::DEVICE_SECRET, &did),
                secret.expose().as_bytes(),
            ),
            passcode_enc: self.key().seal(
                Place::new(col::DEVICE_PASSCODE, &did),
                passcode.expose().as_bytes(),
            ),
            created_at: self.now_ms(),
            online: false,
            last_seen: None,
            state: "{}".into(),
        };
        (row, passcode)
    }

    pub(crate) async fn announce_registered(
        &self,
        did: &str,
        hardware_id: &str,
        mode: &str,
        created: bool,
    ) {
        self.bus()
            .publish_event(DeviceEvent::Registered {
                did: did.to_owned(),
                ts: self.now_ms(),
                hardware_id: hardware_id.to_owned(),
                mode: mode.to_owned(),
                created,
            })
            .await;
    }
}

/// The refusal of `register.failures.ip`: `cap` refused proofs this minute; whole at its end.
fn failures_refusal(cap: u64, now: i64) -> crate::limits::api::Refusal {
    let reset = RegisterRefusals::minute(now) + 60_000;
    crate::limits::api::Refusal {
        state: crate::limits::api::LimitState {
            name: limit::REGISTER_FAILURES_IP,
            limit: cap,
            remaining: 0,
            window_secs: 60,
            reset_at_ms: reset,
        },
        retry_after_ms: (reset - now).max(0) as u64,
    }
}
