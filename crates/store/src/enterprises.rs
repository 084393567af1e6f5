//! Enterprises: the rows, their members and roles, and invitations to join. This file keeps the
//! rows consistent (a membership change that would leave an enterprise without an owner is refused
//! inside one transaction); what each role may do is decided in `rampart-core`, never here.

use crate::{map_conflict, BeginWrite, Result, Store};

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct EnterpriseRow {
    pub enterprise_id: String,
    pub name: String,
    pub suspended: bool,
    pub created_by: String,
    pub created_at: i64,
}

/// One enterprise a developer belongs to, with the developer's role.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct MembershipRow {
    pub enterprise_id: String,
    pub name: String,
    pub suspended: bool,
    pub role: String,
    pub created_at: i64,
}

/// One member of an enterprise.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct MemberRow {
    pub developer_id: String,
    pub email: String,
    pub role: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct InviteRow {
    pub invite_id: String,
    pub enterprise_id: String,
    /// The invitee's normalised e-mail.
    pub email: String,
    pub role: String,
    pub invited_by: String,
    pub created_at: i64,
}

/// The outcome of a role change or a removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberChange {
    Done,
    NotMember,
    /// Refused: the enterprise would be left without an owner.
    LastOwner,
}

impl Store {
    /// Create an enterprise with its first owner, in one transaction.
    pub async fn insert_enterprise(&self, r: &EnterpriseRow) -> Result<()> {
        let ent =
            "INSERT INTO enterprises (enterprise_id, name, suspended, created_by, created_at) \
                   VALUES ($1, $2, $3, $4, $5)";
        let mem = "INSERT INTO enterprise_members (enterprise_id, developer_id, role, created_at) \
                   VALUES ($1, $2, 'owner', $3)";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(ent).bind(&r.enterprise_id).bind(&r.name).bind(r.suspended).bind(&r.created_by)
                .bind(r.created_at).execute(&mut *tx).await.map_err(map_conflict)?;
            sqlx::query(mem).bind(&r.enterprise_id).bind(&r.created_by).bind(r.created_at)
                .execute(&mut *tx).await.map_err(map_conflict)?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Create an enterprise with no member yet (the operator invites its first owner).
    pub async fn insert_enterprise_without_owner(&self, r: &EnterpriseRow) -> Result<()> {
        let sql =
            "INSERT INTO enterprises (enterprise_id, name, suspended, created_by, created_at) \
                   VALUES ($1, $2, $3, $4, $5)";
        with_db!(self, p => sqlx::query(sql).bind(&r.enterprise_id).bind(&r.name).bind(r.suspended)
            .bind(&r.created_by).bind(r.created_at).execute(p).await.map_err(map_conflict)?.rows_affected());
        Ok(())
    }

    pub async fn get_enterprise(&self, enterprise_id: &str) -> Result<Option<EnterpriseRow>> {
        let sql = "SELECT * FROM enterprises WHERE enterprise_id = $1";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(enterprise_id).fetch_optional(p).await?))
    }

    /// Suspend or reinstate; false for an unknown enterprise.
    pub async fn set_enterprise_suspended(&self, enterprise_id: &str, on: bool) -> Result<bool> {
        let sql = "UPDATE enterprises SET suspended = $1 WHERE enterprise_id = $2";
        let n = with_db!(self, p => sqlx::query(sql).bind(on).bind(enterprise_id).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// The developer's role in the enterprise, if a member.
    pub async fn member_role(
        &self,
        enterprise_id: &str,
        developer_id: &str,
    ) -> Result<Option<String>> {
        let sql =
            "SELECT role FROM enterprise_members WHERE enterprise_id = $1 AND developer_id = $2";
        Ok(
            with_db!(self, p => sqlx::query_scalar(sql).bind(enterprise_id).bind(developer_id)
            .fetch_optional(p).await?),
        )
    }

    /// Every enterprise the developer belongs to, oldest membership first.
    pub async fn developer_memberships(&self, developer_id: &str) -> Result<Vec<MembershipRow>> {
        let sql = "SELECT e.enterprise_id, e.name, e.suspended, m.role, m.created_at FROM enterprise_members m \
                   JOIN enterprises e ON e.enterprise_id = m.enterprise_id WHERE m.developer_id = $1 \
                   ORDER BY m.created_at, e.enterprise_id";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(developer_id).fetch_all(p).await?))
    }

    pub async fn list_members(&self, enterprise_id: &str) -> Result<Vec<MemberRow>> {
        let sql = "SELECT m.developer_id, d.email, m.role, m.created_at FROM enterprise_members m \
                   JOIN developers d ON d.developer_id = m.developer_id WHERE m.enterprise_id = $1 \
                   ORDER BY m.created_at, m.developer_id";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(enterprise_id).fetch_all(p).await?))
    }

    /// Store an invitation; `Conflict` when the address already has one to this enterprise.
    pub async fn insert_invite(&self, r: &InviteRow) -> Result<()> {
        let sql = "INSERT INTO enterprise_invites (invite_id, enterprise_id, email, role, invited_by, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6)";
        with_db!(self, p => sqlx::query(sql).bind(&r.invite_id).bind(&r.enterprise_id).bind(&r.email)
            .bind(&r.role).bind(&r.invited_by).bind(r.created_at)
            .execute(p).await.map_err(map_conflict)?.rows_affected());
        Ok(())
    }

    pub async fn get_invite(&self, invite_id: &str) -> Result<Option<InviteRow>> {
        let sql = "SELECT * FROM enterprise_invites WHERE invite_id = $1";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(invite_id).fetch_optional(p).await?))
    }

    pub async fn invites_for_email(&self, email: &str) -> Result<Vec<InviteRow>> {
        let sql =
            "SELECT * FROM enterprise_invites WHERE email = $1 ORDER BY created_at, invite_id";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(email).fetch_all(p).await?))
    }

    pub async fn delete_invite(&self, invite_id: &str) -> Result<bool> {
        let sql = "DELETE FROM enterprise_invites WHERE invite_id = $1";
        let n =
            with_db!(self, p => sqlx::query(sql).bind(invite_id).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Turn an invitation into a membership (one transaction); `Conflict` when already a member.
    /// False when the invitation no longer exists.
    pub async fn accept_invite(
        &self,
        invite_id: &str,
        developer_id: &str,
        now: i64,
    ) -> Result<bool> {
        // The invitation is taken by deleting it: the transaction writes first (see `BeginWrite`).
        let take =
            "DELETE FROM enterprise_invites WHERE invite_id = $1 RETURNING enterprise_id, role";
        let mem = "INSERT INTO enterprise_members (enterprise_id, developer_id, role, created_at) \
                   VALUES ($1, $2, $3, $4)";
        with_db!(self, p => {
            let mut tx = p.begin_write().await?;
            let inv: Option<(String, String)> =
                sqlx::query_as(take).bind(invite_id).fetch_optional(&mut *tx).await?;
            let Some((enterprise_id, role)) = inv else { return Ok(false) };
            sqlx::query(mem).bind(&enterprise_id).bind(developer_id).bind(&role).bind(now)
                .execute(&mut *tx).await.map_err(map_conflict)?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Change a member's role (`None` removes the member). Refused with `LastOwner` when the
    /// enterprise would have no owner left. The enterprise row is written first, so concurrent
    /// changes to one enterprise queue behind each other on both engines.
    pub async fn change_member(
        &self,
        enterprise_id: &str,
        developer_id: &str,
        role: Option<&str>,
    ) -> Result<MemberChange> {
        let lock = "UPDATE enterprises SET created_at = created_at WHERE enterprise_id = $1";
        let cur =
            "SELECT role FROM enterprise_members WHERE enterprise_id = $1 AND developer_id = $2";
        let owners =
            "SELECT COUNT(*) FROM enterprise_members WHERE enterprise_id = $1 AND role = 'owner'";
        let upd = "UPDATE enterprise_members SET role = $1 WHERE enterprise_id = $2 AND developer_id = $3";
        let del = "DELETE FROM enterprise_members WHERE enterprise_id = $1 AND developer_id = $2";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(lock).bind(enterprise_id).execute(&mut *tx).await?;
            let current: Option<String> = sqlx::query_scalar(cur).bind(enterprise_id).bind(developer_id)
                .fetch_optional(&mut *tx).await?;
            let Some(current) = current else { return Ok(MemberChange::NotMember) };
            if current == "owner" && role != Some("owner") {
                let n: i64 = sqlx::query_scalar(owners).bind(enterprise_id).fetch_one(&mut *tx).await?;
                if n <= 1 {
                    return Ok(MemberChange::LastOwner);
                }
            }
            match role {
                Some(r) => sqlx::query(upd).bind(r).bind(enterprise_id).bind(developer_id).execute(&mut *tx).await?,
                None => sqlx::query(del).bind(enterprise_id).bind(developer_id).execute(&mut *tx).await?,
            };
            tx.commit().await?;
            Ok(MemberChange::Done)
        })
    }
}
