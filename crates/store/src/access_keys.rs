//! Enterprise access keys: the keys (secrets sealed by the caller, the previous one kept through a
//! rotation), the products each reaches, and the devices a key sees. Signature checks, IP
//! allowlists and scopes are decided in `rampart-core`; a key reaches only products its own
//! enterprise still owns. Secrets arrive sealed; this file never sees a clear one.

use crate::reports::apply_journal_page;
use crate::{map_conflict, Db, DeviceRow, Result, Store};

/// An access key as stored (secrets sealed by the caller).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AccessKeyRow {
    pub key_id: String,
    pub enterprise_id: String,
    pub secret_enc: Vec<u8>,
    /// The secret before the last rotation, accepted until `prev_valid_until`.
    pub prev_secret_enc: Option<Vec<u8>>,
    pub prev_valid_until: Option<i64>,
    /// Space-separated scopes (`read`, `control`).
    pub scopes: String,
    /// The allowed source networks as a JSON array of CIDR strings.
    pub allow_ips: String,
    /// Space-separated names of the sensitive data points the key may see.
    pub sensitive_points: String,
    pub disabled: bool,
    pub expires_at: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
}

impl Store {
    /// Store a key and the products it reaches, in one transaction.
    pub async fn insert_access_key(&self, r: &AccessKeyRow, products: &[String]) -> Result<()> {
        let key = "INSERT INTO access_keys (key_id, enterprise_id, secret_enc, prev_secret_enc, prev_valid_until, \
                   scopes, allow_ips, sensitive_points, disabled, expires_at, created_by, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
        let prod = "INSERT INTO access_key_products (key_id, product_key) VALUES ($1, $2)";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(key).bind(&r.key_id).bind(&r.enterprise_id).bind(&r.secret_enc)
                .bind(&r.prev_secret_enc).bind(r.prev_valid_until).bind(&r.scopes).bind(&r.allow_ips)
                .bind(&r.sensitive_points).bind(r.disabled).bind(r.expires_at).bind(&r.created_by).bind(r.created_at)
                .execute(&mut *tx).await.map_err(map_conflict)?;
            for pk in products {
                sqlx::query(prod).bind(&r.key_id).bind(pk).execute(&mut *tx).await.map_err(map_conflict)?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    pub async fn get_access_key(&self, key_id: &str) -> Result<Option<AccessKeyRow>> {
        let sql = "SELECT * FROM access_keys WHERE key_id = $1";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(key_id).fetch_optional(p).await?))
    }

    /// The products a key reaches, sorted.
    pub async fn access_key_products(&self, key_id: &str) -> Result<Vec<String>> {
        let sql =
            "SELECT product_key FROM access_key_products WHERE key_id = $1 ORDER BY product_key";
        Ok(with_db!(self, p => sqlx::query_scalar(sql).bind(key_id).fetch_all(p).await?))
    }

    /// Every key of an enterprise (oldest first) with its products.
    pub async fn list_access_keys(
        &self,
        enterprise_id: &str,
    ) -> Result<Vec<(AccessKeyRow, Vec<String>)>> {
        let keys = "SELECT * FROM access_keys WHERE enterprise_id = $1 ORDER BY created_at, key_id";
        let prods = "SELECT k.key_id, k.product_key FROM access_key_products k \
                     JOIN access_keys a ON a.key_id = k.key_id WHERE a.enterprise_id = $1 \
                     ORDER BY k.key_id, k.product_key";
        let (rows, pairs): (Vec<AccessKeyRow>, Vec<(String, String)>) = with_db!(self, p => (
            sqlx::query_as(keys).bind(enterprise_id).fetch_all(p).await?,
            sqlx::query_as(prods).bind(enterprise_id).fetch_all(p).await?,
        ));
        Ok(rows
            .into_iter()
            .map(|r| {
                let ps = pairs
                    .iter()
                    .filter(|(k, _)| *k == r.key_id)
                    .map(|(_, pk)| pk.clone())
                    .collect();
                (r, ps)
            })
            .collect())
    }

    /// Disable or enable a key of the enterprise; false when it has no such key.
    pub async fn set_access_key_disabled(
        &self,
        enterprise_id: &str,
        key_id: &str,
        on: bool,
    ) -> Result<bool> {
        let sql = "UPDATE access_keys SET disabled = $1 WHERE key_id = $2 AND enterprise_id = $3";
        let n = with_db!(self, p => sqlx::query(sql).bind(on).bind(key_id).bind(enterprise_id)
            .execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Replace a key's secret (`secret_enc`) and keep the current one, sealed again by the caller
    /// for its new column (`prev_secret_enc`), until `prev_valid_until`; false when the enterprise
    /// has no such key or its secret is no longer `current_enc` (a concurrent rotation).
    pub async fn rotate_access_key(
        &self,
        enterprise_id: &str,
        key_id: &str,
        current_enc: &[u8],
        prev_secret_enc: &[u8],
        secret_enc: &[u8],
        prev_valid_until: i64,
    ) -> Result<bool> {
        let sql =
            "UPDATE access_keys SET prev_secret_enc = $1, prev_valid_until = $2, secret_enc = $3 \
                   WHERE key_id = $4 AND enterprise_id = $5 AND secret_enc = $6";
        let n = with_db!(self, p => sqlx::query(sql).bind(prev_secret_enc).bind(prev_valid_until).bind(secret_enc)
            .bind(key_id).bind(enterprise_id).bind(current_enc).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Delete a key of the enterprise and its product rows; false when it has no such key.
    pub async fn delete_access_key(&self, enterprise_id: &str, key_id: &str) -> Result<bool> {
        let prods = "DELETE FROM access_key_products WHERE key_id IN \
                     (SELECT key_id FROM access_keys WHERE key_id = $1 AND enterprise_id = $2)";
        let key = "DELETE FROM access_keys WHERE key_id = $1 AND enterprise_id = $2";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(prods).bind(key_id).bind(enterprise_id).execute(&mut *tx).await?;
            let n = sqlx::query(key).bind(key_id).bind(enterprise_id).execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            Ok(n == 1)
        })
    }

    /// A page of the devices a key reaches: products named by the key and still owned by its
    /// enterprise, optionally one of them (`product_key` empty: all). States are up to date.
    pub async fn list_key_devices(
        &self,
        key_id: &str,
        enterprise_id: &str,
        product_key: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<DeviceRow>, i64)> {
        macro_rules! reach {
            () => {
                "FROM devices d JOIN access_key_products k ON k.product_key = d.product_key \
                 JOIN products p ON p.product_key = d.product_key \
                 WHERE k.key_id = $1 AND p.enterprise_id = $2 AND ($3 = '' OR d.product_key = $3)"
            };
        }
        let sql = concat!(
            "SELECT d.* ",
            reach!(),
            " ORDER BY d.created_at, d.did LIMIT $4 OFFSET $5"
        );
        let count = concat!("SELECT COUNT(*) ", reach!());
        macro_rules! page {
            ($ex:expr) => {{
                let rows: Vec<DeviceRow> = sqlx::query_as(sql)
                    .bind(key_id)
                    .bind(enterprise_id)
                    .bind(product_key)
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&mut *$ex)
                    .await?;
                let total: i64 = sqlx::query_scalar(count)
                    .bind(key_id)
                    .bind(enterprise_id)
                    .bind(product_key)
                    .fetch_one(&mut *$ex)
                    .await?;
                (rows, total)
            }};
        }
        match &self.db {
            Db::Sqlite(p) => {
                // One snapshot for the page and the journal merged into its states.
                let mut tx = p.begin().await?;
                let (mut rows, total) = page!(tx);
                if self.journal_len() > 0 {
                    apply_journal_page(&mut tx, &mut rows).await?;
                }
                tx.commit().await?;
                Ok((rows, total))
            }
            Db::Postgres(p) => {
                let mut conn = p.acquire().await?;
                Ok(page!(conn))
            }
        }
    }
}
