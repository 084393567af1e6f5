//! Factory identities: batches of per-device secrets made before devices leave the factory, each
//! serial stored once. A batch lands whole or not at all; the secrets arrive sealed. Factory
//! credentials let a factory line issue batches over the API within a device budget.

use crate::{map_conflict, Result, Store};

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct FactoryIdentityRow {
    pub serial: String,
    pub product_key: String,
    pub batch_id: String,
    pub secret_enc: Vec<u8>,
}

/// A factory credential; its secret arrives and stays sealed.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct FactoryCredentialRow {
    pub credential_id: String,
    pub product_key: String,
    pub name: String,
    pub secret_enc: Vec<u8>,
    /// Most identities the credential may ever issue.
    pub max_devices: i64,
    /// Identities issued so far (revoked batches included: revoking does not give budget back).
    pub issued: i64,
    pub expires_at: i64,
    pub created_at: i64,
    pub created_by: String,
    pub revoked_at: Option<i64>,
}

/// A batch, without its identities.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct FactoryBatchRow {
    pub batch_id: String,
    pub product_key: String,
    pub count: i64,
    pub created_at: i64,
    pub credential_id: Option<String>,
    pub revoked_at: Option<i64>,
    /// Identities the revocation removed (those not registered by then).
    pub revoked: i64,
}

/// How a batch issued under a credential was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialIssue {
    Stored,
    /// The credential is revoked, expired at `now`, or lacks budget for the batch: nothing stored.
    Refused,
}

impl Store {
    /// Store a factory batch and its identities in one transaction.
    pub async fn insert_factory_batch(
        &self,
        batch_id: &str,
        product_key: &str,
        identities: &[(String, Vec<u8>)],
        now: i64,
    ) -> Result<()> {
        self.insert_batch(batch_id, product_key, identities, None, now)
            .await
            .map(|_| ())
    }

    /// Store a batch issued under a factory credential: its budget is spent in the same
    /// transaction, so concurrent batches can never issue more than `max_devices` together.
    pub async fn insert_factory_batch_for(
        &self,
        credential_id: &str,
        batch_id: &str,
        product_key: &str,
        identities: &[(String, Vec<u8>)],
        now: i64,
    ) -> Result<CredentialIssue> {
        self.insert_batch(batch_id, product_key, identities, Some(credential_id), now)
            .await
    }

    async fn insert_batch(
        &self,
        batch_id: &str,
        product_key: &str,
        identities: &[(String, Vec<u8>)],
        credential_id: Option<&str>,
        now: i64,
    ) -> Result<CredentialIssue> {
        let spend = "UPDATE factory_credentials SET issued = issued + $1 WHERE credential_id = $2 \
                     AND product_key = $3 AND revoked_at IS NULL AND expires_at > $4 \
                     AND issued + $1 <= max_devices";
        let b = "INSERT INTO factory_batches (batch_id, product_key, count, created_at, credential_id) \
                 VALUES ($1, $2, $3, $4, $5)";
        let i = "INSERT INTO factory_identities (serial, product_key, batch_id, secret_enc, created_at) \
                 VALUES ($1, $2, $3, $4, $5)";
        let n = identities.len() as i64;
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            if let Some(cred) = credential_id {
                let spent = sqlx::query(spend).bind(n).bind(cred).bind(product_key).bind(now)
                    .execute(&mut *tx).await?.rows_affected();
                if spent != 1 {
                    tx.rollback().await?;
                    return Ok(CredentialIssue::Refused);
                }
            }
            sqlx::query(b).bind(batch_id).bind(product_key).bind(n).bind(now).bind(credential_id)
                .execute(&mut *tx).await.map_err(map_conflict)?;
            for (serial, secret) in identities {
                sqlx::query(i).bind(serial).bind(product_key).bind(batch_id).bind(secret).bind(now)
                    .execute(&mut *tx).await.map_err(map_conflict)?;
            }
            tx.commit().await?;
            Ok(CredentialIssue::Stored)
        })
    }

    pub async fn get_factory_identity(&self, serial: &str) -> Result<Option<FactoryIdentityRow>> {
        let sql = "SELECT serial, product_key, batch_id, secret_enc FROM factory_identities WHERE serial = $1";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(serial).fetch_optional(p).await?))
    }

    pub async fn insert_factory_credential(&self, r: &FactoryCredentialRow) -> Result<()> {
        let sql = "INSERT INTO factory_credentials (credential_id, product_key, name, secret_enc, \
                   max_devices, issued, expires_at, created_at, created_by, revoked_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
        with_db!(self, p => sqlx::query(sql).bind(&r.credential_id).bind(&r.product_key)
            .bind(&r.name).bind(&r.secret_enc).bind(r.max_devices).bind(r.issued)
            .bind(r.expires_at).bind(r.created_at).bind(&r.created_by).bind(r.revoked_at)
            .execute(p).await.map_err(map_conflict)?.rows_affected());
        Ok(())
    }

    pub async fn factory_credential(
        &self,
        credential_id: &str,
    ) -> Result<Option<FactoryCredentialRow>> {
        let sql = "SELECT * FROM factory_credentials WHERE credential_id = $1";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(credential_id).fetch_optional(p).await?))
    }

    /// A product's factory credentials, oldest first.
    pub async fn factory_credentials(
        &self,
        product_key: &str,
    ) -> Result<Vec<FactoryCredentialRow>> {
        let sql = "SELECT * FROM factory_credentials WHERE product_key = $1 \
                   ORDER BY created_at, credential_id";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(product_key).fetch_all(p).await?))
    }

    /// Revoke a credential (once: false when it is unknown or revoked already).
    pub async fn revoke_factory_credential(&self, credential_id: &str, now: i64) -> Result<bool> {
        let sql = "UPDATE factory_credentials SET revoked_at = $1 \
                   WHERE credential_id = $2 AND revoked_at IS NULL";
        let n = with_db!(self, p => sqlx::query(sql).bind(now).bind(credential_id)
            .execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    pub async fn factory_batch(&self, batch_id: &str) -> Result<Option<FactoryBatchRow>> {
        let sql =
            "SELECT batch_id, product_key, count, created_at, credential_id, revoked_at, revoked \
                   FROM factory_batches WHERE batch_id = $1";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(batch_id).fetch_optional(p).await?))
    }

    /// Revoke a batch: every identity of it that no device of the product has registered with
    /// is removed (so it can never register), in one transaction. Returns how many were removed,
    /// or `None` when the batch is unknown or was revoked already.
    pub async fn revoke_factory_batch(&self, batch_id: &str, now: i64) -> Result<Option<u64>> {
        let claim =
            "UPDATE factory_batches SET revoked_at = $1 WHERE batch_id = $2 AND revoked_at IS NULL";
        let del = "DELETE FROM factory_identities WHERE batch_id = $1 AND NOT EXISTS \
                   (SELECT 1 FROM devices d WHERE d.product_key = factory_identities.product_key \
                    AND d.hardware_id = factory_identities.serial)";
        let count = "UPDATE factory_batches SET revoked = $1 WHERE batch_id = $2";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            if sqlx::query(claim).bind(now).bind(batch_id).execute(&mut *tx).await?.rows_affected() != 1 {
                tx.rollback().await?;
                return Ok(None);
            }
            let n = sqlx::query(del).bind(batch_id).execute(&mut *tx).await?.rows_affected();
            sqlx::query(count).bind(n as i64).bind(batch_id).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(Some(n))
        })
    }
}
