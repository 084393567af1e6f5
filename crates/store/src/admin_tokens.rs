//! Named admin tokens: the operator's tokens beside the bootstrap one, each a row with the
//! token's SHA-256 (never the token), a short hint and who made it. A revoked token's row is
//! deleted; the audit log keeps the record.

use crate::{map_conflict, Result, Store};

/// One named admin token.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AdminTokenRow {
    pub id: String,
    pub name: String,
    pub token_sha256: String,
    /// The token's last characters, to tell tokens apart in a list.
    pub hint: String,
    pub created_by: String,
    pub created_at: i64,
}

impl Store {
    /// Insert a token; `Conflict` when its id or hash exists already.
    pub async fn insert_admin_token(&self, r: &AdminTokenRow) -> Result<()> {
        let sql = "INSERT INTO admin_tokens (id, name, token_sha256, hint, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6)";
        with_db!(self, p => {
            sqlx::query(sql)
                .bind(&r.id)
                .bind(&r.name)
                .bind(&r.token_sha256)
                .bind(&r.hint)
                .bind(&r.created_by)
                .bind(r.created_at)
                .execute(p)
                .await
                .map_err(map_conflict)?;
        });
        Ok(())
    }

    /// The token whose SHA-256 is `hash`.
    pub async fn admin_token_by_hash(&self, hash: &str) -> Result<Option<AdminTokenRow>> {
        let sql = "SELECT id, name, token_sha256, hint, created_by, created_at FROM admin_tokens WHERE token_sha256 = $1";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(hash).fetch_optional(p).await?))
    }

    /// Every named token, oldest first.
    pub async fn list_admin_tokens(&self) -> Result<Vec<AdminTokenRow>> {
        let sql = "SELECT id, name, token_sha256, hint, created_by, created_at FROM admin_tokens ORDER BY created_at, id";
        Ok(with_db!(self, p => sqlx::query_as(sql).fetch_all(p).await?))
    }

    /// Delete a token; the row it was, or `None` when there is no such token.
    pub async fn delete_admin_token(&self, id: &str) -> Result<Option<AdminTokenRow>> {
        let sql = "DELETE FROM admin_tokens WHERE id = $1 RETURNING id, name, token_sha256, hint, created_by, created_at";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(id).fetch_optional(p).await?))
    }
}
