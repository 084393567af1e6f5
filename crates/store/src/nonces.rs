//! Nonces: the replay guard of signed requests (device registration, access-key challenges). A
//! nonce is accepted once per scope until it expires; expired ones are purged on the way. How long
//! a nonce lives is the caller's choice.

use crate::{Result, Store};

impl Store {
    /// Record a nonce for `scope`; false if it was already used (and has not expired).
    pub async fn use_nonce(
        &self,
        scope: &str,
        nonce: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool> {
        let purge = "DELETE FROM nonces WHERE expires_at < $1";
        let ins = "INSERT INTO nonces (scope, nonce, expires_at) VALUES ($1, $2, $3) ON CONFLICT (scope, nonce) DO NOTHING";
        with_db!(self, p => {
            sqlx::query(purge).bind(now).execute(p).await?;
            let n = sqlx::query(ins).bind(scope).bind(nonce).bind(expires_at).execute(p).await?.rows_affected();
            Ok(n == 1)
        })
    }
}
