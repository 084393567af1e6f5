//! Products: their rows, owners (an enterprise, a developer, or the operator) and sealed
//! secrets, and each product's allowlist of hardware ids. Rows only: the model's validation, who
//! may create or read a product and how its secret is sealed are decided in `rampart-core`.

use crate::{map_conflict, Result, Store};

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ProductRow {
    pub product_key: String,
    pub name: String,
    pub secret_enc: Vec<u8>,
    #[sqlx(flatten)]
    pub identity: IdentityFlags,
    pub report_limit_per_min: i64,
    /// The data-point list as JSON.
    pub model: String,
    pub enterprise_id: Option<String>,
    pub created_at: i64,
}

/// The ways a product's devices may prove who they are, one column each. What each means is
/// decided in `rampart-core` (`device::products::IdentityModes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct IdentityFlags {
    pub dynamic_registration: bool,
    pub allowlist: bool,
    pub static_password: bool,
    pub x509: bool,
    pub x509_jit: bool,
    pub allow_rsa1024: bool,
    pub secure_session: bool,
}

/// Who owns a product: an enterprise, a developer personally, or neither (the operator).
#[derive(Debug, Clone, PartialEq, Eq, Default, sqlx::FromRow)]
pub struct ProductOwnerRow {
    pub enterprise_id: Option<String>,
    pub owner_developer_id: Option<String>,
}

impl Store {
    pub async fn insert_product(&self, r: &ProductRow) -> Result<()> {
        self.insert_owned_product(r, None).await
    }

    /// Insert a product owned by a developer personally (`products.owner_developer_id`), or by
    /// the enterprise in `r.enterprise_id` when `developer_id` is `None`.
    pub async fn insert_owned_product(
        &self,
        r: &ProductRow,
        developer_id: Option<&str>,
    ) -> Result<()> {
        let sql = "INSERT INTO products (product_key, name, secret_enc, dynamic_registration, allowlist, \
                   report_limit_per_min, model, enterprise_id, created_at, owner_developer_id, \
                   static_password, x509, x509_jit, allow_rsa1024, secure_session) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";
        let i = &r.identity;
        with_db!(self, p => sqlx::query(sql)
            .bind(&r.product_key).bind(&r.name).bind(&r.secret_enc).bind(i.dynamic_registration)
            .bind(i.allowlist).bind(r.report_limit_per_min).bind(&r.model).bind(&r.enterprise_id)
            .bind(r.created_at).bind(developer_id).bind(i.static_password).bind(i.x509)
            .bind(i.x509_jit).bind(i.allow_rsa1024).bind(i.secure_session)
            .execute(p).await.map_err(map_conflict)?.rows_affected());
        Ok(())
    }

    pub async fn get_product(&self, product_key: &str) -> Result<Option<ProductRow>> {
        let sql = "SELECT * FROM products WHERE product_key = $1";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(product_key).fetch_optional(p).await?))
    }

    pub async fn list_products(&self, offset: i64, limit: i64) -> Result<(Vec<ProductRow>, i64)> {
        let sql = "SELECT * FROM products ORDER BY created_at, product_key LIMIT $1 OFFSET $2";
        let count = "SELECT COUNT(*) FROM products";
        Ok(with_db!(self, p => (
            sqlx::query_as(sql).bind(limit).bind(offset).fetch_all(p).await?,
            sqlx::query_scalar(count).fetch_one(p).await?,
        )))
    }

    /// The owner of a product; `None` for an unknown product.
    pub async fn product_owner(&self, product_key: &str) -> Result<Option<ProductOwnerRow>> {
        let sql = "SELECT enterprise_id, owner_developer_id FROM products WHERE product_key = $1";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(product_key).fetch_optional(p).await?))
    }

    /// Replace a product's (sealed) secret; false for an unknown product.
    pub async fn set_product_secret(&self, product_key: &str, secret_enc: &[u8]) -> Result<bool> {
        let sql = "UPDATE products SET secret_enc = $1 WHERE product_key = $2";
        let n = with_db!(self, p => sqlx::query(sql).bind(secret_enc).bind(product_key).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Replace a product's identity modes; false for an unknown product.
    pub async fn set_product_identity(&self, product_key: &str, i: &IdentityFlags) -> Result<bool> {
        let sql = "UPDATE products SET dynamic_registration = $1, allowlist = $2, \
                   static_password = $3, x509 = $4, x509_jit = $5, allow_rsa1024 = $6, \
                   secure_session = $7 WHERE product_key = $8";
        let n = with_db!(self, p => sqlx::query(sql).bind(i.dynamic_registration).bind(i.allowlist)
            .bind(i.static_password).bind(i.x509).bind(i.x509_jit).bind(i.allow_rsa1024)
            .bind(i.secure_session).bind(product_key).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Add hardware ids to a product's allowlist; returns how many were new.
    pub async fn allowlist_add(&self, product_key: &str, ids: &[String], now: i64) -> Result<u64> {
        let sql =
            "INSERT INTO allowlist (product_key, hardware_id, created_at) VALUES ($1, $2, $3) \
                   ON CONFLICT (product_key, hardware_id) DO NOTHING";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            let mut n = 0;
            for id in ids {
                n += sqlx::query(sql).bind(product_key).bind(id).bind(now).execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            Ok(n)
        })
    }

    pub async fn allowlist_contains(&self, product_key: &str, hardware_id: &str) -> Result<bool> {
        let sql = "SELECT COUNT(*) FROM allowlist WHERE product_key = $1 AND hardware_id = $2";
        let n: i64 = with_db!(self, p => sqlx::query_scalar(sql).bind(product_key).bind(hardware_id).fetch_one(p).await?);
        Ok(n > 0)
    }
}
