//! Enterprise access keys: an enterprise's owners and admins (or the operator) create keys
//! for their business systems, each naming the enterprise's products it reaches, its scopes
//! (`read`, `control`), the networks it may be used from and an optional expiry. Keys are
//! disabled, enabled, deleted and rotated with an overlap during which the previous secret still
//! works.
//!
//! Requests made with a key are signed (see `docs/enterprise-api.md`):
//! `Authorization: RAMPART-HMAC-SHA256 key_id=..., ts=..., nonce=..., signature=...`, where the
//! signature is lowercase hex HMAC-SHA256(secret, [`canonical_string`]). The secret never travels
//! after creation; it is sealed by the master key at rest because the server must compute the HMAC.
//!
//! What a failed check reveals: a malformed header, a stale timestamp and a bad signature are told
//! apart (they concern only what the caller sent); an unknown key answers exactly like a bad
//! signature. Only a caller who proved the secret learns that the key is disabled or expired, that
//! the address is not allowed or that the nonce was used, and such a request does not spend its
//! nonce. Every failure is audited.
//!
//! Access to devices through a key is decided here alone: a device is visible when its product is
//! one of the key's and still belongs to the key's enterprise; anything else is `NotFound`, like
//! an unknown id.

use crate::access::cidr::Cidr;
use crate::access::tenancy::{Act, Caller};
use crate::audit::action;
use crate::audit::{Actor, AuditEvent};
use crate::device::runtime::DeviceView;
use crate::secret::Place;
use crate::secret::{random_from, random_hex};
use crate::{Core, Error, Result};
use rampart_store::at_rest as col;
use rampart_store::{AccessKeyRow, AuditFilter, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::net::IpAddr;

/// The authorisation scheme.
pub const SCHEME: &str = "RAMPART-HMAC-SHA256";
/// How far `ts` may be from the server's clock.
pub const WINDOW_MS: i64 = 300_000;
/// The largest body a signed request may carry.
pub const MAX_BODY: usize = 1 << 20;
const MAX_PRODUCTS: usize = 100;
const MAX_NETWORKS: usize = 32;
const MAX_OVERLAP_SECS: i64 = 7 * 86_400;
/// Rotation overlap when none is given.
pub const DEFAULT_OVERLAP_SECS: i64 = 3600;
const ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// What a key may do with the devices it reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// List devices, read state, presence and history, read the enterprise's audit log.
    Read,
    /// Send commands.
    Control,
    /// Read the node's Prometheus metrics (`GET /metrics`); only the operator may grant it, since
    /// the metrics cover every tenant.
    Metrics,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Control => "control",
            Scope::Metrics => "metrics",
        }
    }
}

/// A key as requested (`POST /v1/enterprises/{id}/keys`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccessKey {
    pub products: Vec<String>,
    pub scopes: Vec<Scope>,
    pub allow_ips: Vec<String>,
    /// Unix milliseconds; none: the key does not expire.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// Data points marked `sensitive` in the products' models that the key may see; the others
    /// are left out of states and history.
    #[serde(default)]
    pub sensitive_points: Vec<String>,
}

/// A new key or a rotated secret: the only time the secret is shown.
#[derive(Serialize)]
pub struct CreatedKey {
    pub key_id: String,
    pub secret: String,
    /// After a rotation: until when the previous secret still works (unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_valid_until: Option<i64>,
}

impl std::fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// A key as listed (never its secret).
#[derive(Debug, Serialize)]
pub struct AccessKeyView {
    pub key_id: String,
    pub enterprise_id: String,
    pub products: Vec<String>,
    pub scopes: Vec<Scope>,
    pub allow_ips: Vec<String>,
    pub sensitive_points: Vec<String>,
    pub disabled: bool,
    pub expires_at: Option<i64>,
    /// Set while a rotated-out secret still works.
    pub previous_valid_until: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
}

/// A request authenticated by an access key.
#[derive(Debug, Clone)]
pub struct KeySession {
    pub key_id: String,
    pub enterprise_id: String,
    /// The products the key reaches.
    pub products: Vec<String>,
    pub scopes: Vec<Scope>,
    /// The sensitive data points the key may see.
    pub sensitive_points: Vec<String>,
    pub source_ip: String,
    /// Which secret the session proved (a digest of it): a rotation ends the sessions of the
    /// secret it replaces once that stops working, not those of the new one.
    secret_fp: [u8; 8],
}

/// An opened key secret, wiped when dropped.
type Opened = zeroize::Zeroizing<Vec<u8>>;

/// A digest naming one key secret, to tell the secrets of a key apart (never stored or shown).
fn secret_fp(secret: &[u8]) -> [u8; 8] {
    use sha2::Digest;
    let d = sha2::Sha256::new()
        .chain_update(b"rampart key session\0")
        .chain_update(secret)
        .finalize();
    let mut fp = [0u8; 8];
    fp.copy_from_slice(&d[..8]);
    fp
}

impl KeySession {
    pub fn actor(&self) -> Actor {
        key_actor(&self.key_id)
    }
    pub fn has(&self, s: Scope) -> bool {
        self.scopes.contains(&s)
    }
}

fn key_actor(key_id: &str) -> Actor {
    Actor {
        kind: "access_key",
        id: key_id.chars().take(64).collect(),
    }
}

fn check_scopes(mut scopes: Vec<Scope>) -> Result<Vec<Scope>> {
    scopes.sort_unstable();
    scopes.dedup();
    if scopes.is_empty() {
        return Err(Error::Invalid(
            "scopes must name one or more of `read`, `control` and `metrics`".into(),
        ));
    }
    Ok(scopes)
}

fn check_networks(nets: &[String]) -> Result<Vec<String>> {
    if nets.is_empty() || nets.len() > MAX_NETWORKS {
        return Err(Error::Invalid(format!(
            "allow_ips must list 1-{MAX_NETWORKS} networks (`0.0.0.0/0` and `::/0` allow any)"
        )));
    }
    let mut out = Vec::with_capacity(nets.len());
    for n in nets {
        let c = Cidr::parse(n).map_err(|e| Error::Invalid(format!("allow_ips: {e}")))?;
        out.push(c.to_string());
    }
    out.dedup();
    Ok(out)
}

fn scopes_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

fn parse_scopes(text: &str) -> Vec<Scope> {
    text.split(' ')
        .filter_map(|s| match s {
            "read" => Some(Scope::Read),
            "control" => Some(Scope::Control),
            "metrics" => Some(Scope::Metrics),
            _ => None,
        })
        .collect()
}

fn words(text: &str) -> Vec<String> {
    text.split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parse_networks(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

fn view(r: AccessKeyRow, products: Vec<String>, now: i64) -> AccessKeyView {
    AccessKeyView {
        scopes: parse_scopes(&r.scopes),
        allow_ips: parse_networks(&r.allow_ips),
        sensitive_points: words(&r.sensitive_points),
        previous_valid_until: r.prev_valid_until.filter(|t| *t > now),
        key_id: r.key_id,
        enterprise_id: r.enterprise_id,
        products,
        disabled: r.disabled,
        expires_at: r.expires_at,
        created_by: r.created_by,
        created_at: r.created_at,
    }
}

fn new_secret() -> String {
    format!("ras_{}", random_hex(32))
}

impl Core {
    fn key_event(&self, caller: &Caller, action: &str, ent: &str, key_id: &str) -> AuditEvent {
        AuditEvent::new(&caller.actor(), action, "ok")
            .target(format!("access_key:{key_id}"))
            .tenant(ent.to_owned())
    }

    async fn audit_with_ip(&self, ev: AuditEvent, ip: Option<String>) {
        self.audit(match ip {
            Some(ip) => ev.source_ip(ip),
            None => ev,
        })
        .await;
    }

    /// Create a key (enterprise owners and admins, and the operator). Every product must be the
    /// enterprise's.
    pub async fn create_access_key(
        &self,
        caller: &Caller,
        enterprise_id: &str,
        k: NewAccessKey,
        ip: Option<String>,
    ) -> Result<CreatedKey> {
        self.authorize_enterprise(caller, enterprise_id, Act::Manage)
            .await?;
        let mut products = k.products;
        products.sort_unstable();
        products.dedup();
        if products.is_empty() || products.len() > MAX_PRODUCTS {
            return Err(Error::Invalid(format!(
                "products must list 1-{MAX_PRODUCTS} product keys"
            )));
        }
        for pk in &products {
            let owner = if pk.len() <= 64 {
                self.store().product_owner(pk).await?
            } else {
                None
            };
            if owner.and_then(|o| o.enterprise_id).as_deref() != Some(enterprise_id) {
                return Err(Error::Invalid(format!(
                    "`{}` is not a product of this enterprise",
                    pk.chars().take(64).collect::<String>()
                )));
            }
        }
        let scopes = check_scopes(k.scopes)?;
        if scopes.contains(&Scope::Metrics) && !matches!(caller, Caller::Operator(_)) {
            return Err(Error::Forbidden(
                "only the operator may grant the `metrics` scope (metrics cover every tenant)"
                    .into(),
            ));
        }
        let nets = check_networks(&k.allow_ips)?;
        let mut sensitive = k.sensitive_points;
        sensitive.sort_unstable();
        sensitive.dedup();
        for name in &sensitive {
            let mut found = false;
            for pk in &products {
                found |= self
                    .product(pk)
                    .await?
                    .datapoints
                    .point(name)
                    .is_some_and(|p| p.sensitivity == rampart_proto::model::Sensitivity::Sensitive);
            }
            if !found {
                return Err(Error::Invalid(format!(
                    "sensitive_points: `{}` is no sensitive data point of the key's products",
                    name.chars().take(64).collect::<String>()
                )));
            }
        }
        let now = self.now_ms();
        if k.expires_at.is_some_and(|e| e <= now) {
            return Err(Error::Invalid(
                "expires_at must be in the future (unix milliseconds)".into(),
            ));
        }
        let secret = new_secret();
        let key_id = format!("rak_{}", random_from(ID_ALPHABET, 20));
        let row = AccessKeyRow {
            secret_enc: self.key().seal(
                Place::new(col::ACCESS_KEY_SECRET, &key_id),
                secret.as_bytes(),
            ),
            key_id,
            enterprise_id: enterprise_id.to_owned(),
            prev_secret_enc: None,
            prev_valid_until: None,
            scopes: scopes_text(&scopes),
            allow_ips: serde_json::to_string(&nets).map_err(|e| Error::Internal(e.to_string()))?,
            sensitive_points: sensitive.join(" "),
            disabled: false,
            expires_at: k.expires_at,
            created_by: caller.actor().id,
            created_at: now,
        };
        self.store()
            .insert_access_key(&row, &products)
            .await
            .map_err(|e| match e {
                StoreError::Conflict => Error::Conflict("key id collision; retry".into()),
                e => e.into(),
            })?;
        let ev = self
            .key_event(
                caller,
                action::ACCESS_KEY_CREATE,
                enterprise_id,
                &row.key_id,
            )
            .detail(format!(
                "products={} scopes={} allow_ips={} sensitive_points={} expires_at={}",
                products.join(","),
                row.scopes,
                nets.join(","),
                sensitive.join(","),
                k.expires_at.map_or("never".into(), |e| e.to_string())
            ));
        self.audit_with_ip(ev, ip).await;
        Ok(CreatedKey {
            key_id: row.key_id,
            secret,
            previous_valid_until: None,
        })
    }

    /// The enterprise's keys, without secrets.
    pub async fn list_access_keys(
        &self,
        caller: &Caller,
        enterprise_id: &str,
    ) -> Result<Vec<AccessKeyView>> {
        self.authorize_enterprise(caller, enterprise_id, Act::Manage)
            .await?;
        let now = self.now_ms();
        Ok(self
            .store()
            .list_access_keys(enterprise_id)
            .await?
            .into_iter()
            .map(|(r, p)| view(r, p, now))
            .collect())
    }

    /// Disable (`on`) or enable a key; it answers `KEY_DISABLED` while disabled.
    pub async fn set_access_key_disabled(
        &self,
        caller: &Caller,
        enterprise_id: &str,
        key_id: &str,
        on: bool,
        ip: Option<String>,
    ) -> Result<AccessKeyView> {
        self.authorize_enterprise(caller, enterprise_id, Act::Manage)
            .await?;
        if !self
            .store()
            .set_access_key_disabled(enterprise_id, key_id, on)
            .await?
        {
            return Err(Error::NotFound("access key"));
        }
        self.key_changed();
        let action = if on {
            action::ACCESS_KEY_DISABLE
        } else {
            action::ACCESS_KEY_ENABLE
        };
        self.audit_with_ip(self.key_event(caller, action, enterprise_id, key_id), ip)
            .await;
        let row = self
            .store()
            .get_access_key(key_id)
            .await?
            .ok_or(Error::NotFound("access key"))?;
        let products = self.store().access_key_products(key_id).await?;
        Ok(view(row, products, self.now_ms()))
    }

    /// Delete a key; it stops working at once.
    pub async fn delete_access_key(
        &self,
        caller: &Caller,
        enterprise_id: &str,
        key_id: &str,
        ip: Option<String>,
    ) -> Result<()> {
        self.authorize_enterprise(caller, enterprise_id, Act::Manage)
            .await?;
        if !self
            .store()
            .delete_access_key(enterprise_id, key_id)
            .await?
        {
            return Err(Error::NotFound("access key"));
        }
        self.key_changed();
        self.audit_with_ip(
            self.key_event(caller, action::ACCESS_KEY_DELETE, enterprise_id, key_id),
            ip,
        )
        .await;
        self.disable_webhooks_of_key(&caller.actor(), enterprise_id, key_id, "access key deleted")
            .await;
        Ok(())
    }

    /// Give a key a new secret; the current one keeps working for `overlap_secs` (0 ends it now).
    pub async fn rotate_access_key(
        &self,
        caller: &Caller,
        enterprise_id: &str,
        key_id: &str,
        overlap_secs: i64,
        ip: Option<String>,
    ) -> Result<CreatedKey> {
        self.authorize_enterprise(caller, enterprise_id, Act::Manage)
            .await?;
        if !(0..=MAX_OVERLAP_SECS).contains(&overlap_secs) {
            return Err(Error::Invalid(format!(
                "overlap_secs must be 0-{MAX_OVERLAP_SECS}"
            )));
        }
        let secret = new_secret();
        let until = self.now_ms() + overlap_secs * 1000;
        let row = self
            .store()
            .get_access_key(key_id)
            .await?
            .filter(|r| r.enterprise_id == enterprise_id)
            .ok_or(Error::NotFound("access key"))?;
        // The current secret moves to the previous-secret column: sealed again for that place.
        let current = self
            .key()
            .open(Place::new(col::ACCESS_KEY_SECRET, key_id), &row.secret_enc)?;
        let prev = self
            .key()
            .seal(Place::new(col::ACCESS_KEY_PREV_SECRET, key_id), &current);
        let new = self.key().seal(
            Place::new(col::ACCESS_KEY_SECRET, key_id),
            secret.as_bytes(),
        );
        if !self
            .store()
            .rotate_access_key(enterprise_id, key_id, &row.secret_enc, &prev, &new, until)
            .await?
        {
            return Err(Error::Conflict(
                "the key was rotated or deleted meanwhile; retry".into(),
            ));
        }
        self.key_changed();
        let ev = self
            .key_event(caller, action::ACCESS_KEY_ROTATE, enterprise_id, key_id)
            .detail(format!("previous_valid_until={until}"));
        self.audit_with_ip(ev, ip).await;
        self.disable_webhooks_of_key(&caller.actor(), enterprise_id, key_id, "access key rotated")
            .await;
        Ok(CreatedKey {
            key_id: key_id.to_owned(),
            secret,
            previous_valid_until: Some(until),
        })
    }
}

mod reach;
mod signed;

pub use signed::*;

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked examples of `docs/enterprise-api.md`; the expected values were computed with
    /// `printf ... | openssl dgst -sha256 [-hmac SECRET]`, not with this code.
    #[test]
    fn worked_examples() {
        let secret = b"ras_example_secret";
        let c = canonical_string(
            "GET",
            "/v1/enterprise/devices",
            "product_key=pexample01&page=1&limit=10",
            b"",
            "1764100000000",
            "k3v9ZqTn0wXy",
        );
        assert_eq!(
            c,
            "GET\n/v1/enterprise/devices\nlimit=10&page=1&product_key=pexample01\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n1764100000000\nk3v9ZqTn0wXy"
        );
        assert_eq!(
            signature(secret, &c),
            "d97b0cb15c27d8e2b7cb074aeeff7823c9f58a5842aac3d400d0034671e5e877"
        );
        let c = canonical_string(
            "POST",
            "/v1/enterprise/devices/d_example/commands",
            "",
            br#"{"set":{"power":true}}"#,
            "1764100000000",
            "q8Lm2Wd5Rt7Y",
        );
        assert_eq!(
            c,
            "POST\n/v1/enterprise/devices/d_example/commands\n\n\
             dfb3b4d6765c14d0b7d51f51646a5d92138a46cc7af616fdcdd11af9bc6701ac\n1764100000000\nq8Lm2Wd5Rt7Y"
        );
        assert_eq!(
            signature(secret, &c),
            "90d5375eef6f2f9e1da0645a8480a3efe5cf4d41ebbcf4cff56c596a17c268b7"
        );
    }

    #[test]
    fn sorted_query_rules() {
        assert_eq!(sorted_query(""), "");
        assert_eq!(sorted_query("b=2&a=1"), "a=1&b=2");
        // by key, then value; encoding kept as received; bare keys become `k=`
        assert_eq!(
            sorted_query("tag=z&tag=a&flag&q=a%20b&&x="),
            "flag=&q=a%20b&tag=a&tag=z&x="
        );
        assert_eq!(sorted_query("a=1=2"), "a=1=2");
    }

    #[test]
    fn empty_body_hash() {
        let c = canonical_string("GET", "/v1/enterprise/devices", "", b"", "1", "nonce123");
        assert_eq!(
            c,
            "GET\n/v1/enterprise/devices\n\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n1\nnonce123"
        );
    }

    #[test]
    fn authorization_header_grammar() {
        let sig = "a".repeat(64);
        let h = format!("{SCHEME} key_id=rak_1, ts=1700000000000, nonce=abcdefgh, signature={sig}");
        let p = parse_authorization(&h).unwrap();
        assert_eq!(
            (p.key_id, p.ts, p.nonce, p.signature),
            ("rak_1", 1_700_000_000_000, "abcdefgh", sig.as_str())
        );
        // any order, no spaces after commas
        let h2 = format!("{SCHEME} signature={sig},nonce=abcdefgh,ts=1,key_id=k");
        assert!(parse_authorization(&h2).is_some());
        for bad in [
            format!("Bearer key_id=k, ts=1, nonce=abcdefgh, signature={sig}"),
            format!("{SCHEME} key_id=k, ts=1, nonce=abcdefgh"),
            format!("{SCHEME} key_id=k, ts=1, nonce=abcdefgh, signature={sig}, extra=1"),
            format!("{SCHEME} key_id=k, key_id=j, ts=1, nonce=abcdefgh, signature={sig}"),
            format!("{SCHEME} key_id=k, ts=-1, nonce=abcdefgh, signature={sig}"),
            format!("{SCHEME} key_id=k, ts=1, nonce=short, signature={sig}"),
            format!(
                "{SCHEME} key_id=k, ts=1, nonce=abcdefgh, signature={}",
                "A".repeat(64)
            ),
            format!("{SCHEME} key_id=, ts=1, nonce=abcdefgh, signature={sig}"),
        ] {
            assert!(parse_authorization(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn scopes_and_networks() {
        assert_eq!(
            check_scopes(vec![Scope::Control, Scope::Read, Scope::Control]).unwrap(),
            vec![Scope::Read, Scope::Control]
        );
        assert!(check_scopes(vec![]).is_err());
        assert_eq!(
            parse_scopes(&scopes_text(&[Scope::Read])),
            vec![Scope::Read]
        );
        assert_eq!(
            check_networks(&["127.0.0.1".into(), "2001:db8::/32".into()]).unwrap(),
            vec!["127.0.0.1/32", "2001:db8::/32"]
        );
        assert!(check_networks(&[]).is_err());
        assert!(check_networks(&["10.0.0.1/8".into()]).is_err());
    }
}
