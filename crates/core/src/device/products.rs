//! Products: creation with a generated key and secret, the data-point model, and an in-memory
//! cache of product info that the publish path reads without touching the database.

use crate::secret::Place;
use crate::secret::{random_from, random_hex, Secret};
use crate::{Core, Error, Result};
use rampart_proto::model::{DataPoint, Model};
use rampart_store::at_rest as col;
use rampart_store::ProductRow;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Identity modes a product allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityModes {
    /// One product one secret: devices register with the product secret.
    #[serde(default)]
    pub dynamic_registration: bool,
    /// Only allowlisted MAC/IMEI may register.
    #[serde(default)]
    pub allowlist: bool,
    /// Devices may also connect with `username = did`, `password = device secret` (TLS
    /// listeners only), for stock firmware that cannot sign a fresh password per connection.
    #[serde(default)]
    pub static_password: bool,
    /// Devices may connect with an X.509 client certificate that chains to one of the
    /// product's CAs, its subject CN being the device's hardware id.
    #[serde(default)]
    pub x509: bool,
    /// A certificate device unknown to the product is registered at its first connection
    /// (just in time); the allowlist still applies when `allowlist` is on.
    #[serde(default)]
    pub x509_jit: bool,
    /// Certificates with RSA-1024 keys are accepted (each such connection audited as weak).
    #[serde(default)]
    pub allow_rsa1024: bool,
    /// Devices may connect through the encrypted session layer on the plain-TCP listener.
    #[serde(default)]
    pub secure_session: bool,
}

impl From<rampart_store::IdentityFlags> for IdentityModes {
    fn from(f: rampart_store::IdentityFlags) -> Self {
        IdentityModes {
            dynamic_registration: f.dynamic_registration,
            allowlist: f.allowlist,
            static_password: f.static_password,
            x509: f.x509,
            x509_jit: f.x509_jit,
            allow_rsa1024: f.allow_rsa1024,
            secure_session: f.secure_session,
        }
    }
}

impl From<IdentityModes> for rampart_store::IdentityFlags {
    fn from(m: IdentityModes) -> Self {
        rampart_store::IdentityFlags {
            dynamic_registration: m.dynamic_registration,
            allowlist: m.allowlist,
            static_password: m.static_password,
            x509: m.x509,
            x509_jit: m.x509_jit,
            allow_rsa1024: m.allow_rsa1024,
            secure_session: m.secure_session,
        }
    }
}

impl IdentityModes {
    /// Modes that make no sense together.
    pub fn check(&self) -> Result<()> {
        if (self.x509_jit || self.allow_rsa1024) && !self.x509 {
            return Err(Error::Invalid(
                "identity.x509_jit and identity.allow_rsa1024 need identity.x509".into(),
            ));
        }
        Ok(())
    }

    /// The modes as an audit detail: the names of those that are on.
    pub fn describe(&self) -> String {
        let on: Vec<&str> = [
            ("dynamic_registration", self.dynamic_registration),
            ("allowlist", self.allowlist),
            ("static_password", self.static_password),
            ("x509", self.x509),
            ("x509_jit", self.x509_jit),
            ("allow_rsa1024", self.allow_rsa1024),
            ("secure_session", self.secure_session),
        ]
        .into_iter()
        .filter_map(|(n, on)| on.then_some(n))
        .collect();
        if on.is_empty() {
            "none".into()
        } else {
            on.join(",")
        }
    }
}

/// A product definition as submitted (API body, CLI model file).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    pub name: String,
    #[serde(default)]
    pub identity: IdentityModes,
    #[serde(default = "default_report_limit")]
    pub report_limit_per_min: i64,
    #[serde(default)]
    pub datapoints: Vec<DataPoint>,
    #[serde(default)]
    pub enterprise_id: Option<String>,
}

fn default_report_limit() -> i64 {
    1800
}

/// A product as the rest of the system sees it (no secret).
#[derive(Debug, Clone, Serialize)]
pub struct ProductInfo {
    pub product_key: String,
    pub name: String,
    pub identity: IdentityModes,
    pub report_limit_per_min: i64,
    pub datapoints: Model,
    pub enterprise_id: Option<String>,
    pub created_at: i64,
}

/// The answer to product creation: the only time the secret is shown.
#[derive(Debug, Serialize)]
pub struct CreatedProduct {
    pub product_key: String,
    pub product_secret: String,
}

#[derive(Default)]
pub(crate) struct ProductCache {
    map: RwLock<HashMap<String, Arc<ProductInfo>>>,
}

const KEY_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn info_from_row(r: ProductRow) -> Result<ProductInfo> {
    let points: Vec<DataPoint> = serde_json::from_str(&r.model)
        .map_err(|e| Error::Internal(format!("stored model of {}: {e}", r.product_key)))?;
    Ok(ProductInfo {
        datapoints: Model::new(points)?,
        product_key: r.product_key,
        name: r.name,
        identity: r.identity.into(),
        report_limit_per_min: r.report_limit_per_min,
        enterprise_id: r.enterprise_id,
        created_at: r.created_at,
    })
}

impl Core {
    /// Create a product; returns its key and (once) its secret.
    pub async fn create_product(&self, p: NewProduct) -> Result<CreatedProduct> {
        self.create_product_for(p, None).await
    }

    /// Create a product, owned personally by `developer` when given (see `crate::access::tenancy`).
    pub(crate) async fn create_product_for(
        &self,
        p: NewProduct,
        developer: Option<&str>,
    ) -> Result<CreatedProduct> {
        let name = p.name.trim();
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return Err(Error::Invalid(
                "name must be 1-128 printable characters".into(),
            ));
        }
        if !(1..=60_000).contains(&p.report_limit_per_min) {
            return Err(Error::Invalid(
                "report_limit_per_min must be 1..=60000".into(),
            ));
        }
        p.identity.check()?;
        let model = Model::new(p.datapoints)?;
        let product_key = random_from(KEY_ALPHABET, 16);
        let secret = Secret::new(random_hex(16));
        let row = ProductRow {
            product_key: product_key.clone(),
            name: name.to_owned(),
            secret_enc: self.key().seal(
                Place::new(col::PRODUCT_SECRET, &product_key),
                secret.expose().as_bytes(),
            ),
            identity: p.identity.into(),
            report_limit_per_min: p.report_limit_per_min,
            model: serde_json::to_string(&model).map_err(|e| Error::Internal(e.to_string()))?,
            enterprise_id: p.enterprise_id,
            created_at: self.now_ms(),
        };
        match developer {
            None => self.store().insert_product(&row).await?,
            Some(d) => self.store().insert_owned_product(&row, Some(d)).await?,
        }
        Ok(CreatedProduct {
            product_key,
            product_secret: secret.expose().to_owned(),
        })
    }

    /// Product info, from the cache or the store.
    pub async fn product(&self, product_key: &str) -> Result<Arc<ProductInfo>> {
        if let Some(p) = self
            .inner
            .products
            .map
            .read()
            .ok()
            .and_then(|m| m.get(product_key).cloned())
        {
            return Ok(p);
        }
        let row = self
            .store()
            .get_product(product_key)
            .await?
            .ok_or(Error::NotFound("product"))?;
        let info = Arc::new(info_from_row(row)?);
        if let Ok(mut m) = self.inner.products.map.write() {
            m.insert(product_key.to_owned(), info.clone());
        }
        Ok(info)
    }

    /// Drop a product's cached info (it changed in the store).
    pub(crate) fn forget_product(&self, product_key: &str) {
        if let Ok(mut m) = self.inner.products.map.write() {
            m.remove(product_key);
        }
    }

    pub async fn list_products(&self, offset: i64, limit: i64) -> Result<(Vec<ProductInfo>, i64)> {
        let (rows, total) = self.store().list_products(offset, limit).await?;
        Ok((
            rows.into_iter().map(info_from_row).collect::<Result<_>>()?,
            total,
        ))
    }

    /// The product secret in clear (for registration checks).
    pub(crate) async fn product_secret(&self, product_key: &str) -> Result<Option<Secret>> {
        match self.store().get_product(product_key).await? {
            Some(r) => Ok(Some(self.key().open_string(
                Place::new(col::PRODUCT_SECRET, product_key),
                &r.secret_enc,
            )?)),
            None => Ok(None),
        }
    }

    /// Set the bootstrap admin token on first start. With `given` (from `RAMPART_ADMIN_TOKEN`) that
    /// token is used; otherwise one is generated and returned so the caller can print it once. Only
    /// its SHA-256 is stored. Returns `None` when an admin token already exists.
    pub async fn init_admin_token(&self, given: Option<&str>) -> Result<Option<Secret>> {
        let token = match given {
            Some(t) if t.len() >= 16 => Secret::new(t.to_owned()),
            Some(_) => {
                return Err(Error::Invalid(
                    "RAMPART_ADMIN_TOKEN must be at least 16 characters".into(),
                ))
            }
            None => Secret::new(format!("rpa_{}", random_hex(24))),
        };
        let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            token.expose().as_bytes(),
        ));
        if self
            .store()
            .init_setting("admin_token_sha256", &hash)
            .await?
        {
            Ok(Some(token))
        } else {
            Ok(None)
        }
    }

    /// Whether `token` is an admin token: the bootstrap token, or a named one
    /// (`crate::identity::admin_tokens`).
    pub async fn check_admin_token(&self, token: &str) -> Result<bool> {
        Ok(self.admin_token_actor(token).await?.is_some())
    }

    /// Constant-time check of `token` against the bootstrap admin token's hash.
    pub(crate) async fn is_bootstrap_admin_token(&self, token: &str) -> Result<bool> {
        let Some(stored) = self.store().get_setting("admin_token_sha256").await? else {
            return Ok(false);
        };
        let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()));
        Ok(subtle::ConstantTimeEq::ct_eq(hash.as_bytes(), stored.as_bytes()).into())
    }
}
