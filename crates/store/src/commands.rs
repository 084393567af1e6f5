//! Commands sent to devices (`commands`): one row per command, so its outcome can be looked up by
//! id after the request that sent it has been answered. Rows are purged on the way, a caller-given
//! time after they expired; what a status means is the caller's business.

use crate::{map_conflict, Result, Store};

/// A command's record. `status` is `queued`, `sent`, `ok` or `error`; `detail` is the message of
/// the device's ack, when it gave one.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CommandRow {
    pub did: String,
    pub id: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub status: String,
    pub expires_at: i64,
    pub detail: Option<String>,
}

impl Store {
    /// Record a new command; rows that expired before `purge_before` are deleted first.
    pub async fn insert_command(&self, r: &CommandRow, purge_before: i64) -> Result<()> {
        let purge = "DELETE FROM commands WHERE expires_at < $1";
        let ins =
            "INSERT INTO commands (did, id, created_at, updated_at, status, expires_at, detail) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7)";
        with_db!(self, p => {
            sqlx::query(purge).bind(purge_before).execute(p).await?;
            sqlx::query(ins).bind(&r.did).bind(&r.id).bind(r.created_at).bind(r.updated_at)
                .bind(&r.status).bind(r.expires_at).bind(&r.detail)
                .execute(p).await.map_err(map_conflict)?;
        });
        Ok(())
    }

    /// The command `id` of `did`, if recorded.
    pub async fn get_command(&self, did: &str, id: &str) -> Result<Option<CommandRow>> {
        let sql = "SELECT * FROM commands WHERE did = $1 AND id = $2";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(did).bind(id).fetch_optional(p).await?))
    }

    /// Move a command from `from` to `to` (with `detail`); false when it is not in `from` (or
    /// unknown). A later step never goes back: an ack recorded first stays.
    pub async fn move_command(
        &self,
        did: &str,
        id: &str,
        from: &[&str],
        to: &str,
        detail: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        // At most two states to move from, so the statement stays one literal.
        let (a, b) = match from {
            [a] => (*a, *a),
            [a, b] => (*a, *b),
            _ => return Ok(false),
        };
        let sql = "UPDATE commands SET status = $1, detail = $2, updated_at = $3 \
                   WHERE did = $4 AND id = $5 AND status IN ($6, $7)";
        let n = with_db!(self, p => sqlx::query(sql).bind(to).bind(detail).bind(now).bind(did)
            .bind(id).bind(a).bind(b).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Forget a command (one that never reached a session).
    pub async fn delete_command(&self, did: &str, id: &str) -> Result<()> {
        let sql = "DELETE FROM commands WHERE did = $1 AND id = $2";
        with_db!(self, p => sqlx::query(sql).bind(did).bind(id).execute(p).await?.rows_affected());
        Ok(())
    }
}
