//! Bindings: which users reach a device and in which role (one owner; members and guests through
//! shares), shares offered by an owner, and one-time bind tokens. Each change that touches several
//! tables runs in one transaction; who may bind or share is decided in `rampart-core`, never
//! here. Bind tokens arrive hashed.

use crate::{map_conflict, Result, Store};

/// A user's access to a device.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct BindingRow {
    pub did: String,
    pub user_id: String,
    /// `owner`, `member` or `guest`.
    pub role: String,
    /// The share that granted it (none for the owner).
    pub share_id: Option<String>,
    pub created_at: i64,
    pub product_key: String,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ShareRow {
    pub share_id: String,
    pub did: String,
    pub owner_id: String,
    pub invitee_id: String,
    /// `member` or `guest`.
    pub role: String,
    /// `pending` or `accepted`.
    pub status: String,
    pub created_at: i64,
    pub accepted_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct BindTokenRow {
    pub token_hash: String,
    pub did: String,
    pub created_by: String,
    pub expires_at: i64,
    pub created_at: i64,
}

impl Store {
    /// The role of `user_id` on `did`, if bound.
    pub async fn binding_role(&self, did: &str, user_id: &str) -> Result<Option<String>> {
        let sql = "SELECT role FROM bindings WHERE did = $1 AND user_id = $2";
        Ok(
            with_db!(self, p => sqlx::query_scalar(sql).bind(did).bind(user_id).fetch_optional(p).await?),
        )
    }

    /// The owner of `did`, if any.
    pub async fn device_owner(&self, did: &str) -> Result<Option<String>> {
        let sql = "SELECT user_id FROM bindings WHERE did = $1 AND role = 'owner'";
        Ok(with_db!(self, p => sqlx::query_scalar(sql).bind(did).fetch_optional(p).await?))
    }

    /// Bind a user to a device; `Conflict` when already bound, or when binding an owner to a device
    /// that has one.
    pub async fn insert_binding(
        &self,
        did: &str,
        user_id: &str,
        role: &str,
        share_id: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let sql = "INSERT INTO bindings (did, user_id, role, share_id, created_at) VALUES ($1, $2, $3, $4, $5)";
        with_db!(self, p => sqlx::query(sql).bind(did).bind(user_id).bind(role).bind(share_id)
            .bind(now).execute(p).await.map_err(map_conflict)?.rows_affected());
        Ok(())
    }

    /// A page of a user's bindings, newest first, and the total.
    pub async fn list_bindings(
        &self,
        user_id: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<BindingRow>, i64)> {
        let sql = "SELECT b.did, b.user_id, b.role, b.share_id, b.created_at, d.product_key FROM bindings b \
                   JOIN devices d ON d.did = b.did WHERE b.user_id = $1 \
                   ORDER BY b.created_at DESC, b.did LIMIT $2 OFFSET $3";
        let count = "SELECT COUNT(*) FROM bindings WHERE user_id = $1";
        Ok(with_db!(self, p => (
            sqlx::query_as(sql).bind(user_id).bind(limit).bind(offset).fetch_all(p).await?,
            sqlx::query_scalar(count).bind(user_id).fetch_one(p).await?,
        )))
    }

    /// Every did a user is bound to, with the role (for live push filters).
    pub async fn user_device_roles(&self, user_id: &str) -> Result<Vec<(String, String)>> {
        let sql = "SELECT did, role FROM bindings WHERE user_id = $1";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(user_id).fetch_all(p).await?))
    }

    /// Remove one user's binding to a device and the share that granted it; true when one existed.
    pub async fn delete_binding(&self, did: &str, user_id: &str) -> Result<bool> {
        let b = "DELETE FROM bindings WHERE did = $1 AND user_id = $2";
        let s = "DELETE FROM shares WHERE did = $1 AND invitee_id = $2";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            let n = sqlx::query(b).bind(did).bind(user_id).execute(&mut *tx).await?.rows_affected();
            sqlx::query(s).bind(did).bind(user_id).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(n > 0)
        })
    }

    /// Remove every binding, share and bind token of a device (owner unbind, factory reset);
    /// returns the users that lost access.
    pub async fn unbind_all(&self, did: &str) -> Result<Vec<String>> {
        // The transaction's first statement writes, so SQLite takes its write lock at once
        // (waiting for it) instead of failing to upgrade a read lock under a concurrent writer.
        let users = "DELETE FROM bindings WHERE did = $1 RETURNING user_id";
        let dels = [
            "DELETE FROM shares WHERE did = $1",
            "DELETE FROM share_invitations WHERE did = $1",
            "DELETE FROM bind_tokens WHERE did = $1",
        ];
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            let list: Vec<String> = sqlx::query_scalar(users).bind(did).fetch_all(&mut *tx).await?;
            for sql in dels {
                sqlx::query(sql).bind(did).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(list)
        })
    }

    pub async fn insert_share(&self, r: &ShareRow) -> Result<()> {
        let sql = "INSERT INTO shares (share_id, did, owner_id, invitee_id, role, status, created_at, accepted_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        with_db!(self, p => sqlx::query(sql).bind(&r.share_id).bind(&r.did).bind(&r.owner_id)
            .bind(&r.invitee_id).bind(&r.role).bind(&r.status).bind(r.created_at).bind(r.accepted_at)
            .execute(p).await.map_err(map_conflict)?.rows_affected());
        Ok(())
    }

    pub async fn get_share(&self, share_id: &str) -> Result<Option<ShareRow>> {
        let sql = "SELECT * FROM shares WHERE share_id = $1";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(share_id).fetch_optional(p).await?))
    }

    /// A pending share to (did, invitee), if any.
    pub async fn find_share(&self, did: &str, invitee_id: &str) -> Result<Option<ShareRow>> {
        let sql = "SELECT * FROM shares WHERE did = $1 AND invitee_id = $2";
        Ok(
            with_db!(self, p => sqlx::query_as(sql).bind(did).bind(invitee_id).fetch_optional(p).await?),
        )
    }

    /// Accept a pending share: mark it and create the invitee's binding, in one transaction.
    /// False when the share is not pending any more; `Conflict` when the invitee is already bound.
    pub async fn accept_share(&self, s: &ShareRow, now: i64) -> Result<bool> {
        let upd = "UPDATE shares SET status = 'accepted', accepted_at = $1 WHERE share_id = $2 \
                   AND status = 'pending'";
        let ins = "INSERT INTO bindings (did, user_id, role, share_id, created_at) VALUES ($1, $2, $3, $4, $5)";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            let n = sqlx::query(upd).bind(now).bind(&s.share_id).execute(&mut *tx).await?.rows_affected();
            if n == 0 {
                return Ok(false);
            }
            sqlx::query(ins).bind(&s.did).bind(&s.invitee_id).bind(&s.role).bind(&s.share_id).bind(now)
                .execute(&mut *tx).await.map_err(map_conflict)?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Delete a share and the binding it granted.
    pub async fn delete_share(&self, share_id: &str) -> Result<bool> {
        let b = "DELETE FROM bindings WHERE share_id = $1";
        let s = "DELETE FROM shares WHERE share_id = $1";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(b).bind(share_id).execute(&mut *tx).await?;
            let n = sqlx::query(s).bind(share_id).execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            Ok(n > 0)
        })
    }

    /// A page of the shares offered to a user (pending and accepted), newest first, and the total.
    pub async fn list_shares_for(
        &self,
        invitee_id: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<ShareRow>, i64)> {
        let sql = "SELECT * FROM shares WHERE invitee_id = $1 ORDER BY created_at DESC, share_id \
                   LIMIT $2 OFFSET $3";
        let count = "SELECT COUNT(*) FROM shares WHERE invitee_id = $1";
        Ok(with_db!(self, p => (
            sqlx::query_as(sql).bind(invitee_id).bind(limit).bind(offset).fetch_all(p).await?,
            sqlx::query_scalar(count).bind(invitee_id).fetch_one(p).await?,
        )))
    }

    /// Every share of a device (pending and accepted), newest first.
    pub async fn list_shares_of_device(&self, did: &str) -> Result<Vec<ShareRow>> {
        let sql = "SELECT * FROM shares WHERE did = $1 ORDER BY created_at DESC, share_id";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(did).fetch_all(p).await?))
    }

    pub async fn insert_bind_token(&self, r: &BindTokenRow) -> Result<()> {
        let sql = "INSERT INTO bind_tokens (token_hash, did, created_by, expires_at, created_at) \
                   VALUES ($1, $2, $3, $4, $5)";
        with_db!(self, p => sqlx::query(sql).bind(&r.token_hash).bind(&r.did).bind(&r.created_by)
            .bind(r.expires_at).bind(r.created_at).execute(p).await.map_err(map_conflict)?.rows_affected());
        Ok(())
    }

    /// Consume a bind token: it is deleted whatever happens next, and returned when it was for
    /// `did` and not expired at `now`.
    pub async fn take_bind_token(
        &self,
        token_hash: &str,
        did: &str,
        now: i64,
    ) -> Result<Option<BindTokenRow>> {
        let sql = "DELETE FROM bind_tokens WHERE token_hash = $1 RETURNING *";
        let row: Option<BindTokenRow> = with_db!(self, p => sqlx::query_as(sql).bind(token_hash)
            .fetch_optional(p).await?);
        Ok(row.filter(|r| r.did == did && r.expires_at > now))
    }
}
