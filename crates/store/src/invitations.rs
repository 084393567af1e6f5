//! Shares offered to an address with no account (`share_invitations`): kept until an account with
//! the address exists, then turned into a pending share in one transaction.

use crate::{map_conflict, Result, ShareRow, Store};

/// A share offered to an address (exactly one of `email`, `phone`).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ShareInvitationRow {
    pub share_id: String,
    pub did: String,
    pub owner_id: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub role: String,
    pub created_at: i64,
}

impl Store {
    pub async fn insert_share_invitation(&self, r: &ShareInvitationRow) -> Result<()> {
        let sql = "INSERT INTO share_invitations (share_id, did, owner_id, email, phone, role, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7)";
        with_db!(self, p => sqlx::query(sql).bind(&r.share_id).bind(&r.did).bind(&r.owner_id)
            .bind(&r.email).bind(&r.phone).bind(&r.role).bind(r.created_at)
            .execute(p).await.map_err(map_conflict)?.rows_affected());
        Ok(())
    }

    /// The invitation of `did` to this address, if any.
    pub async fn find_share_invitation(
        &self,
        did: &str,
        email: Option<&str>,
        phone: Option<&str>,
    ) -> Result<Option<ShareInvitationRow>> {
        let sql = "SELECT * FROM share_invitations WHERE did = $1 AND (email = $2 OR phone = $3)";
        Ok(
            with_db!(self, p => sqlx::query_as(sql).bind(did).bind(email).bind(phone)
            .fetch_optional(p).await?),
        )
    }

    pub async fn list_share_invitations_of_device(
        &self,
        did: &str,
    ) -> Result<Vec<ShareInvitationRow>> {
        let sql =
            "SELECT * FROM share_invitations WHERE did = $1 ORDER BY created_at DESC, share_id";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(did).fetch_all(p).await?))
    }

    /// Remove one invitation of `did`; false when there was none.
    pub async fn delete_share_invitation(&self, did: &str, share_id: &str) -> Result<bool> {
        let sql = "DELETE FROM share_invitations WHERE did = $1 AND share_id = $2";
        let n = with_db!(self, p => sqlx::query(sql).bind(did).bind(share_id).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Turn every invitation to this address into a pending share for `user_id` (same share id),
    /// in one transaction; an invitation to a device the user already has a share of is dropped.
    /// Returns the shares created.
    pub async fn claim_share_invitations(
        &self,
        user_id: &str,
        email: Option<&str>,
        phone: Option<&str>,
    ) -> Result<Vec<ShareRow>> {
        let take = "DELETE FROM share_invitations WHERE email = $1 OR phone = $2 RETURNING *";
        let exists = "SELECT COUNT(*) FROM shares WHERE did = $1 AND invitee_id = $2";
        let ins = "INSERT INTO shares (share_id, did, owner_id, invitee_id, role, status, created_at, accepted_at) \
                   VALUES ($1, $2, $3, $4, $5, 'pending', $6, NULL)";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            let rows: Vec<ShareInvitationRow> = sqlx::query_as(take).bind(email).bind(phone)
                .fetch_all(&mut *tx).await?;
            let mut out = Vec::new();
            for r in rows {
                let n: i64 = sqlx::query_scalar(exists).bind(&r.did).bind(user_id)
                    .fetch_one(&mut *tx).await?;
                if n > 0 || r.owner_id == user_id {
                    continue;
                }
                sqlx::query(ins).bind(&r.share_id).bind(&r.did).bind(&r.owner_id).bind(user_id)
                    .bind(&r.role).bind(r.created_at).execute(&mut *tx).await?;
                out.push(ShareRow {
                    share_id: r.share_id,
                    did: r.did,
                    owner_id: r.owner_id,
                    invitee_id: user_id.to_owned(),
                    role: r.role,
                    status: "pending".into(),
                    created_at: r.created_at,
                    accepted_at: None,
                });
            }
            tx.commit().await?;
            Ok(out)
        })
    }
}
