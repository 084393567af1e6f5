//! Products: their rows, owners (an enterprise, a developer, or the operator) and sealed
//! secrets, and each product's allowlist of hardware ids. Rows only: the model's validation, who
//! may create or read a product and how its secret is sealed are decided in `rampart-core`.

use crate::{map_conflict, Result, Store};

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ProductRow {
    pub product_key: String,
    pub name: String,
    pub secret_enc: Vec<u8>,
    pub dynamic_registration: bool,
    pub allowlist: bool,
    /// Devices may connect with their secret as a static password (TLS listeners only).
    pub static_password: bool,
    pub report_limit_per_min: i64,
    /// The data-point list as JSON.
    pub model: String,
    pub enterprise_id: Option<String>,
    pub created_at: i64,
}

/// Who owns a product: an enterprise, a developer personally, or neither (the operator).
#[derive(Debug, Clone, PartialEq, Eq, Default, sqlx::FromRow)]
pub struct ProductOwnerRow {
    pub enterprise_id: Option<String>,
    pub owner_developer_id: Option<String>,
}

impl Store {
    pub async fn insert_product(&self, r: &ProductRow) -> Result<()> {
        let sql = "INSERT INTO products (product_key, name, secret_enc, dynamic_registration, allowlist, \
                   report_limit_per_min, model, enterprise_id, created_at, static_password) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
        with_db!(self, p => sqlx::query(sql)
            .bind(&r.product_key).bind(&r.name).bind(&r.secret_enc).bind(r.dynamic_registration)
            .bind(r.allowlist).bind(r.report_limit_per_min).bind(&r.model).bind(&r.enterprise_id)
            .bind(r.created_at).bind(r.static_password)
            .execute(p).await.map_err(map_conflict)?.rows_affected());
        Ok(())
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
                   static_password) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
        with_db!(self, p => sqlx::query(sql)
            .bind(&r.product_key).bind(&r.name).bind(&r.secret_enc).bind(r.dynamic_registration)
            .bind(r.allowlist).bind(r.report_limit_per_min).bind(&r.model).bind(&r.enterprise_id)
            .bind(r.created_at).bind(developer_id).bind(r.static_password)
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
    pub async fn set_product_identity(
        &self,
        product_key: &str,
        dynamic_registration: bool,
        allowlist: bool,
        static_password: bool,
    ) -> Result<bool> {
        let sql =
            "UPDATE products SET dynamic_registration = $1, allowlist = $2, static_password = $3 \
                   WHERE product_key = $4";
        let n = with_db!(self, p => sqlx::query(sql).bind(dynamic_registration).bind(allowlist)
            .bind(static_password).bind(product_key).execute(p).await?.rows_affected());
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
