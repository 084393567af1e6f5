//! Factory credentials: a production line issues device identities over the API with a credential
//! of its own, never the product's secret nor the server's data directory. A credential belongs to
//! one product, has a device budget (`max_devices`, never exceeded however many lines issue at
//! once) and an expiry, signs its requests like an access key (`RAMPART-HMAC-SHA256`, the same
//! canonical string, clock window and single-use nonces) and can be revoked. A batch can be revoked
//! too: its identities not yet registered can then never register.
//!
//! Owners create, list and revoke credentials (`Act::Secrets`); the credential itself, or an
//! owner, revokes a batch. Everything is audited.

use crate::access::access_keys::{
    canonical_string, parse_authorization, signature_matches, AuthParams, KeyAuthError,
    SignedRequest,
};
use crate::access::tenancy::{Act, Caller};
use crate::audit::{action, Actor, AuditEvent};
use crate::device::registry::{FactoryIdentity, MAX_BATCH};
use crate::secret::{random_from, random_hex, Place, Secret};
use crate::{Core, Error, Result};
use rampart_store::at_rest as col;
use rampart_store::{CredentialIssue, FactoryCredentialRow, StoreError};
use serde::Serialize;

/// Largest device budget of one credential.
pub const MAX_CREDENTIAL_DEVICES: u32 = 10_000_000;
/// Longest credential life: a year and a day, in milliseconds.
const MAX_LIFETIME_MS: i64 = 366 * 24 * 3600 * 1000;
/// How far a signed request's `ts` may be from the server's clock (as for access keys).
const WINDOW_MS: i64 = 300_000;
const ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// What an owner asks for.
#[derive(Debug, Clone)]
pub struct NewFactoryCredential {
    pub name: String,
    pub max_devices: u32,
    /// Unix milliseconds, in the future and within a year.
    pub expires_at: i64,
}

/// A credential as its owner sees it (never its secret).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FactoryCredentialView {
    pub credential_id: String,
    pub product_key: String,
    pub name: String,
    pub max_devices: i64,
    pub issued: i64,
    pub expires_at: i64,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl From<FactoryCredentialRow> for FactoryCredentialView {
    fn from(r: FactoryCredentialRow) -> Self {
        FactoryCredentialView {
            credential_id: r.credential_id,
            product_key: r.product_key,
            name: r.name,
            max_devices: r.max_devices,
            issued: r.issued,
            expires_at: r.expires_at,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
        }
    }
}

/// A new credential: its secret is shown this once.
#[derive(Debug)]
pub struct CreatedFactoryCredential {
    pub view: FactoryCredentialView,
    pub secret: Secret,
}

/// A request signed with a factory credential that passed every check.
#[derive(Debug, Clone)]
pub struct FactorySession {
    pub credential_id: String,
    pub product_key: String,
    pub source_ip: Option<String>,
}

impl FactorySession {
    fn actor(&self) -> Actor {
        Actor::factory(&self.credential_id)
    }
}

/// Who revokes a batch.
#[derive(Debug, Clone)]
pub enum BatchRevoker {
    /// An owner of the batch's product (or the operator).
    Caller(Caller),
    /// The credential that issued the batch.
    Factory(FactorySession),
}

/// What revoking a batch did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BatchRevoked {
    pub batch_id: String,
    /// Identities removed: they can never register.
    pub revoked: u64,
    /// Identities of the batch already registered as devices (unchanged).
    pub registered: u64,
}

impl Core {
    /// Create a factory credential for a product. Owners only (`Act::Secrets`); audited.
    pub async fn create_factory_credential(
        &self,
        caller: &Caller,
        product_key: &str,
        req: NewFactoryCredential,
        ip: Option<String>,
    ) -> Result<CreatedFactoryCredential> {
        self.authorize_product(caller, product_key, Act::Secrets)
            .await?;
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(Error::Invalid(
                "name: 1-100 characters, no control characters".into(),
            ));
        }
        if req.max_devices == 0 || req.max_devices > MAX_CREDENTIAL_DEVICES {
            return Err(Error::Invalid(format!(
                "max_devices must be 1..={MAX_CREDENTIAL_DEVICES}"
            )));
        }
        let now = self.now_ms();
        if req.expires_at <= now || req.expires_at > now + MAX_LIFETIME_MS {
            return Err(Error::Invalid(
                "expires_at must be in the future and within a year (unix milliseconds)".into(),
            ));
        }
        let secret = Secret::new(format!("rfs_{}", random_hex(32)));
        let credential_id = format!("rfc_{}", random_from(ID_ALPHABET, 20));
        let row = FactoryCredentialRow {
            secret_enc: self.key().seal(
                Place::new(col::FACTORY_CREDENTIAL_SECRET, &credential_id),
                secret.expose().as_bytes(),
            ),
            credential_id,
            product_key: product_key.to_owned(),
            name: name.to_owned(),
            max_devices: i64::from(req.max_devices),
            issued: 0,
            expires_at: req.expires_at,
            created_at: now,
            created_by: caller.actor().id,
            revoked_at: None,
        };
        self.store()
            .insert_factory_credential(&row)
            .await
            .map_err(|e| match e {
                StoreError::Conflict => Error::Conflict("credential id collision; retry".into()),
                e => e.into(),
            })?;
        let ev = AuditEvent::new(&caller.actor(), action::FACTORY_CREDENTIAL_CREATE, "ok")
            .target(format!("factory_credential:{}", row.credential_id))
            .tenant_opt(self.product_tenant(product_key).await)
            .detail(format!(
                "product={product_key} max_devices={} expires_at={}",
                row.max_devices, row.expires_at
            ));
        self.audit(with_ip(ev, ip)).await;
        Ok(CreatedFactoryCredential {
            view: row.into(),
            secret,
        })
    }

    /// A product's factory credentials, oldest first.
    pub async fn list_factory_credentials(
        &self,
        caller: &Caller,
        product_key: &str,
    ) -> Result<Vec<FactoryCredentialView>> {
        self.authorize_product(caller, product_key, Act::Secrets)
            .await?;
        Ok(self
            .store()
            .factory_credentials(product_key)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Revoke a credential: its signed requests are refused from now on (`KEY_DISABLED`); the
    /// batches it issued stay valid unless revoked themselves. Audited.
    pub async fn revoke_factory_credential(
        &self,
        caller: &Caller,
        product_key: &str,
        credential_id: &str,
        ip: Option<String>,
    ) -> Result<FactoryCredentialView> {
        self.authorize_product(caller, product_key, Act::Secrets)
            .await?;
        let not_found = || Error::NotFound("factory credential");
        let row = self
            .store()
            .factory_credential(credential_id)
            .await?
            .filter(|r| r.product_key == product_key)
            .ok_or_else(not_found)?;
        if row.revoked_at.is_some() {
            return Err(Error::Conflict("the credential is revoked already".into()));
        }
        let now = self.now_ms();
        if !self
            .store()
            .revoke_factory_credential(credential_id, now)
            .await?
        {
            return Err(Error::Conflict("the credential is revoked already".into()));
        }
        let ev = AuditEvent::new(&caller.actor(), action::FACTORY_CREDENTIAL_REVOKE, "ok")
            .target(format!("factory_credential:{credential_id}"))
            .tenant_opt(self.product_tenant(product_key).await)
            .detail(format!("product={product_key}"));
        self.audit(with_ip(ev, ip)).await;
        Ok(FactoryCredentialView {
            revoked_at: Some(now),
            ..row.into()
        })
    }

    /// Authenticate a request signed with a factory credential. Refusals are audited
    /// (`factory.auth`) and answer as a refused access-key signature does.
    pub async fn authenticate_factory_credential(
        &self,
        r: &SignedRequest<'_>,
    ) -> std::result::Result<FactorySession, KeyAuthError> {
        let params = r.authorization.and_then(parse_authorization);
        let outcome = match &params {
            Some(p) => self.check_factory_signature(r, p).await,
            None => Err(KeyAuthError::Malformed),
        };
        if let Err(e) = &outcome {
            if !matches!(e, KeyAuthError::Internal(_)) {
                let claimed = params.as_ref().map_or("", |p| p.key_id);
                let claimed: String = claimed.chars().take(64).collect();
                let mut ev =
                    AuditEvent::new(&Actor::factory(&claimed), action::FACTORY_AUTH, "refused")
                        .target(format!(
                            "{} {}",
                            r.method,
                            r.path.chars().take(200).collect::<String>()
                        ))
                        .detail(format!("code={}", e.code()));
                if let Some(ip) = r.peer {
                    ev = ev.source_ip(ip.to_string());
                }
                self.audit(ev).await;
            }
        }
        outcome
    }

    async fn check_factory_signature(
        &self,
        r: &SignedRequest<'_>,
        p: &AuthParams<'_>,
    ) -> std::result::Result<FactorySession, KeyAuthError> {
        let now = self.now_ms();
        if (now - p.ts).abs() > WINDOW_MS {
            return Err(KeyAuthError::StaleTimestamp);
        }
        let canonical = canonical_string(r.method, r.path, r.query, r.body, p.ts_text, p.nonce);
        let row = self
            .store()
            .factory_credential(p.key_id)
            .await
            .map_err(Error::from)?;
        // An unknown credential is checked against a random secret: same work, same answer.
        let secret = match &row {
            Some(row) => self
                .key()
                .open_string(
                    Place::new(col::FACTORY_CREDENTIAL_SECRET, &row.credential_id),
                    &row.secret_enc,
                )
                .map_err(Error::from)?,
            None => Secret::new(random_hex(32)),
        };
        let matches = signature_matches(secret.expose().as_bytes(), &canonical, p.signature);
        let row = match row {
            Some(row) if matches => row,
            _ => return Err(KeyAuthError::SignatureMismatch),
        };
        if row.revoked_at.is_some() {
            return Err(KeyAuthError::KeyDisabled);
        }
        if row.expires_at <= now {
            return Err(KeyAuthError::KeyExpired);
        }
        self.spend_nonce(&format!("fc:{}", row.credential_id), p, now)
            .await?;
        Ok(FactorySession {
            credential_id: row.credential_id,
            product_key: row.product_key,
            source_ip: r.peer.map(|ip| ip.to_string()),
        })
    }

    /// Issue a batch under a factory credential, within its budget: 409 `CONFLICT` past it (or
    /// when the credential was revoked or expired in the meantime). Audited as `factory.issue`
    /// under the credential.
    pub async fn factory_issue_signed(
        &self,
        s: &FactorySession,
        count: usize,
    ) -> Result<(String, Vec<FactoryIdentity>)> {
        if count == 0 || count > MAX_BATCH {
            return Err(Error::Invalid(format!("count must be 1..={MAX_BATCH}")));
        }
        let (batch_id, ids, sealed) = self.new_batch(&s.product_key, count).await?;
        let stored = self
            .store()
            .insert_factory_batch_for(
                &s.credential_id,
                &batch_id,
                &s.product_key,
                &sealed,
                self.now_ms(),
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict => Error::Conflict("batch id collision; retry".into()),
                e => e.into(),
            })?;
        if stored == CredentialIssue::Refused {
            let left = self
                .store()
                .factory_credential(&s.credential_id)
                .await?
                .map_or(0, |r| (r.max_devices - r.issued).max(0));
            return Err(Error::Conflict(format!(
                "the credential's device budget allows {left} more identities (or it was revoked or expired)"
            )));
        }
        let mut ev = AuditEvent::new(&s.actor(), action::FACTORY_ISSUE, "ok")
            .target(format!("product:{}", s.product_key))
            .tenant_opt(self.product_tenant(&s.product_key).await)
            .detail(format!("batch={batch_id} count={count}"));
        if let Some(ip) = &s.source_ip {
            ev = ev.source_ip(ip.clone());
        }
        self.audit(ev).await;
        Ok((batch_id, ids))
    }

    /// Revoke a batch: its identities not registered yet are removed and can never register;
    /// devices already registered from it are not touched. A credential may revoke only the
    /// batches it issued; an owner any batch of the product. 409 when revoked already. Audited.
    pub async fn revoke_factory_batch(
        &self,
        by: &BatchRevoker,
        batch_id: &str,
        ip: Option<String>,
    ) -> Result<BatchRevoked> {
        let not_found = || Error::NotFound("factory batch");
        let batch = self
            .store()
            .factory_batch(batch_id)
            .await?
            .ok_or_else(not_found)?;
        let actor = match by {
            BatchRevoker::Caller(c) => {
                // Someone without rights on the product learns nothing about its batches.
                self.authorize_product(c, &batch.product_key, Act::Secrets)
                    .await
                    .map_err(|e| match e {
                        Error::Forbidden(_) => not_found(),
                        e => e,
                    })?;
                c.actor()
            }
            BatchRevoker::Factory(s) => {
                if batch.credential_id.as_deref() != Some(s.credential_id.as_str()) {
                    return Err(not_found());
                }
                s.actor()
            }
        };
        let revoked = self
            .store()
            .revoke_factory_batch(batch_id, self.now_ms())
            .await?
            .ok_or_else(|| Error::Conflict("the batch is revoked already".into()))?;
        let out = BatchRevoked {
            batch_id: batch_id.to_owned(),
            revoked,
            registered: (batch.count.max(0) as u64).saturating_sub(revoked),
        };
        let ev = AuditEvent::new(&actor, action::FACTORY_BATCH_REVOKE, "ok")
            .target(format!("product:{}", batch.product_key))
            .tenant_opt(self.product_tenant(&batch.product_key).await)
            .detail(format!(
                "batch={batch_id} revoked={} registered={}",
                out.revoked, out.registered
            ));
        self.audit(with_ip(ev, ip)).await;
        Ok(out)
    }
}

fn with_ip(ev: AuditEvent, ip: Option<String>) -> AuditEvent {
    match ip {
        Some(ip) => ev.source_ip(ip),
        None => ev,
    }
}
