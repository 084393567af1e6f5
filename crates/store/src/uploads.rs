//! Holders of the files in the content-addressed upload store. Firmware images and allowlist
//! files share that store, so the same bytes uploaded as both are one file; each holder has a
//! row here and the file may go only when the last row for its hash is gone.

use crate::{Result, Store};

impl Store {
    /// Record that `holder` keeps the file `sha256` (idempotent).
    pub async fn add_upload_ref(&self, sha256: &str, holder: &str, now: i64) -> Result<()> {
        let sql = "INSERT INTO upload_refs (sha256, holder, created_at) VALUES ($1, $2, $3) ON CONFLICT (sha256, holder) DO NOTHING";
        with_db!(self, p => {
            sqlx::query(sql).bind(sha256).bind(holder).bind(now).execute(p).await?;
        });
        Ok(())
    }

    /// Drop `holder`'s claim on `sha256`; answers how many holders the file still has.
    pub async fn drop_upload_ref(&self, sha256: &str, holder: &str) -> Result<i64> {
        let del = "DELETE FROM upload_refs WHERE sha256 = $1 AND holder = $2";
        let left = "SELECT COUNT(*) FROM upload_refs WHERE sha256 = $1";
        Ok(with_db!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(del).bind(sha256).bind(holder).execute(&mut *tx).await?;
            let (n,): (i64,) = sqlx::query_as(left).bind(sha256).fetch_one(&mut *tx).await?;
            tx.commit().await?;
            n
        }))
    }

    /// How many holders the file `sha256` has.
    pub async fn upload_refs(&self, sha256: &str) -> Result<i64> {
        let sql = "SELECT COUNT(*) FROM upload_refs WHERE sha256 = $1";
        let (n,): (i64,) =
            with_db!(self, p => sqlx::query_as(sql).bind(sha256).fetch_one(p).await?);
        Ok(n)
    }
}
