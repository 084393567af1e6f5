//! Settings: small named values set once (the instance's own keys and markers such as the
//! one-time rewrites in `at_rest`). A setting is inserted if absent and never overwritten here;
//! what a value means is decided by its caller in `rampart-core`.

use crate::{Result, Store};

impl Store {
    pub async fn get_setting(&self, key: &str) -> Result<Option<String>> {
        let sql = "SELECT value FROM settings WHERE key = $1";
        Ok(with_db!(self, p => sqlx::query_scalar(sql).bind(key).fetch_optional(p).await?))
    }

    /// Insert a setting unless present; true when this call inserted it.
    pub async fn init_setting(&self, key: &str, value: &str) -> Result<bool> {
        let sql = "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING";
        let n = with_db!(self, p => sqlx::query(sql).bind(key).bind(value).execute(p).await?.rows_affected());
        Ok(n == 1)
    }
}
