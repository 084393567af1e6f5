//! The audit log: entries appended to a hash chain, the chain's head, verification reads, the
//! operator's query by action and a tenant's filtered query.
//!
//! Rows only: the chain's hash function is `rampart-core`'s; [`Store::append_audit`] takes the
//! hash as a function of the previous hash so the head is read and moved in one transaction.
//! Entries are never updated here (the one-time re-link is `at_rest`'s).

use crate::{Result, Store};

#[derive(Debug, Clone, PartialEq, Default, sqlx::FromRow, serde::Serialize)]
pub struct AuditRow {
    pub ts: i64,
    pub actor_kind: String,
    pub actor_id: String,
    pub tenant: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub source_ip: Option<String>,
    pub outcome: String,
    pub detail: Option<String>,
}

/// An audit entry with its position and chain hashes.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AuditEntryRow {
    pub id: i64,
    #[sqlx(flatten)]
    pub row: AuditRow,
    /// Both `None` for entries written before the chain existed.
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}

/// Filters of the tenant audit query; empty strings and `None` match everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    pub actor_kind: String,
    pub actor_id: String,
    pub action: String,
    pub target: String,
    pub from: i64,
    pub to: Option<i64>,
}

/// The chain's head: how many chained entries there are and the hash of the last.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditChainHead {
    pub entries: i64,
    pub last_hash: String,
}

/// The columns of [`AuditEntryRow`], as a constant SQL fragment.
macro_rules! audit_columns {
    () => {
        "SELECT id, ts, actor_kind, actor_id, tenant, action, target, source_ip, outcome, detail, \
         prev_hash, hash FROM audit "
    };
}

/// The tenant audit query's conditions (`$1`..`$7`), as a constant SQL fragment.
macro_rules! tenant_audit_where {
    () => {
        "WHERE tenant = $1 AND ($2 = '' OR actor_kind = $2) AND ($3 = '' OR actor_id = $3) \
         AND ($4 = '' OR action = $4) AND ($5 = '' OR target = $5) AND ts >= $6 AND ts <= $7"
    };
}

/// [`tenant_audit_where`] where an empty tenant means every entry, with or without one.
macro_rules! any_audit_where {
    () => {
        "WHERE ($1 = '' OR tenant = $1) AND ($2 = '' OR actor_kind = $2) AND ($3 = '' OR actor_id = $3) \
         AND ($4 = '' OR action = $4) AND ($5 = '' OR target = $5) AND ts >= $6 AND ts <= $7"
    };
}

impl Store {
    /// Append an entry to the audit chain. In one transaction: move the head (which waits for any
    /// other append, on both backends), compute the entry's hash from the previous one with
    /// `chain`, insert the entry with both hashes and store its hash as the head's.
    pub async fn append_audit(
        &self,
        e: &AuditRow,
        chain: impl FnOnce(&str) -> String + Send,
    ) -> Result<()> {
        let head = "UPDATE audit_chain SET entries = entries + 1 WHERE id = 1 RETURNING last_hash";
        let ins = "INSERT INTO audit (ts, actor_kind, actor_id, tenant, action, target, source_ip, outcome, detail, \
                   prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
        let set = "UPDATE audit_chain SET last_hash = $1 WHERE id = 1";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            let prev: String = sqlx::query_scalar(head).fetch_one(&mut *tx).await?;
            let hash = chain(&prev);
            sqlx::query(ins)
                .bind(e.ts).bind(&e.actor_kind).bind(&e.actor_id).bind(&e.tenant).bind(&e.action)
                .bind(&e.target).bind(&e.source_ip).bind(&e.outcome).bind(&e.detail)
                .bind(&prev).bind(&hash)
                .execute(&mut *tx).await?;
            sqlx::query(set).bind(&hash).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Entries after `after_id`, oldest first (for verification).
    pub async fn audit_entries_after(
        &self,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<AuditEntryRow>> {
        let sql = concat!(audit_columns!(), "WHERE id > $1 ORDER BY id LIMIT $2");
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(after_id).bind(limit).fetch_all(p).await?))
    }

    pub async fn audit_chain_head(&self) -> Result<AuditChainHead> {
        let sql = "SELECT entries, last_hash FROM audit_chain WHERE id = 1";
        Ok(with_db!(self, p => sqlx::query_as(sql).fetch_one(p).await?))
    }

    pub async fn list_audit(&self, action: Option<&str>, limit: i64) -> Result<Vec<AuditRow>> {
        let sql = "SELECT ts, actor_kind, actor_id, tenant, action, target, source_ip, outcome, detail FROM audit \
                   WHERE ($1 = '' OR action = $1) ORDER BY id DESC LIMIT $2";
        Ok(
            with_db!(self, p => sqlx::query_as(sql).bind(action.unwrap_or("")).bind(limit).fetch_all(p).await?),
        )
    }

    /// A page of one tenant's entries, newest first, and how many match.
    pub async fn list_tenant_audit(
        &self,
        tenant: &str,
        f: &AuditFilter,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<AuditEntryRow>, i64)> {
        let sql = concat!(
            audit_columns!(),
            tenant_audit_where!(),
            " ORDER BY id DESC LIMIT $8 OFFSET $9"
        );
        let count = concat!("SELECT COUNT(*) FROM audit ", tenant_audit_where!());
        self.filtered_audit(sql, count, tenant, f, offset, limit)
            .await
    }

    /// A page of every entry (`tenant` empty) or one tenant's, newest first, and how many match:
    /// the operator's view of the whole log.
    pub async fn list_any_audit(
        &self,
        tenant: &str,
        f: &AuditFilter,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<AuditEntryRow>, i64)> {
        let sql = concat!(
            audit_columns!(),
            any_audit_where!(),
            " ORDER BY id DESC LIMIT $8 OFFSET $9"
        );
        let count = concat!("SELECT COUNT(*) FROM audit ", any_audit_where!());
        self.filtered_audit(sql, count, tenant, f, offset, limit)
            .await
    }

    async fn filtered_audit(
        &self,
        sql: &'static str,
        count: &'static str,
        tenant: &str,
        f: &AuditFilter,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<AuditEntryRow>, i64)> {
        let to = f.to.unwrap_or(i64::MAX);
        macro_rules! bind_filter {
            ($q:expr) => {
                $q.bind(tenant)
                    .bind(&f.actor_kind)
                    .bind(&f.actor_id)
                    .bind(&f.action)
                    .bind(&f.target)
                    .bind(f.from)
                    .bind(to)
            };
        }
        Ok(with_db!(self, p => (
            bind_filter!(sqlx::query_as(sql)).bind(limit).bind(offset).fetch_all(p).await?,
            bind_filter!(sqlx::query_scalar(count)).fetch_one(p).await?,
        )))
    }
}
