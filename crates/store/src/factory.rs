//! Factory identities: batches of per-device secrets made before devices leave the factory, each
//! serial stored once. A batch lands whole or not at all; the secrets arrive sealed.

use crate::{map_conflict, Result, Store};

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct FactoryIdentityRow {
    pub serial: String,
    pub product_key: String,
    pub batch_id: String,
    pub secret_enc: Vec<u8>,
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
        let b = "INSERT INTO factory_batches (batch_id, product_key, count, created_at) VALUES ($1, $2, $3, $4)";
        let i = "INSERT INTO factory_identities (serial, product_key, batch_id, secret_enc, created_at) \
                 VALUES ($1, $2, $3, $4, $5)";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(b).bind(batch_id).bind(product_key).bind(identities.len() as i64).bind(now)
                .execute(&mut *tx).await.map_err(map_conflict)?;
            for (serial, secret) in identities {
                sqlx::query(i).bind(serial).bind(product_key).bind(batch_id).bind(secret).bind(now)
                    .execute(&mut *tx).await.map_err(map_conflict)?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    pub async fn get_factory_identity(&self, serial: &str) -> Result<Option<FactoryIdentityRow>> {
        let sql = "SELECT serial, product_key, batch_id, secret_enc FROM factory_identities WHERE serial = $1";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(serial).fetch_optional(p).await?))
    }
}
