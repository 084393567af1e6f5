//! Tables of the event stream's webhooks: the webhooks themselves and their
//! dead letters.
//!
//! Rows only: URL checks, signing, retries and who may see a webhook are decided in
//! `rampart-core` (`webhooks`). A webhook's queued events live in `event_queue` under a
//! subscription group whose subkey the caller passes in; this module never derives it.

use crate::{map_conflict, Result, Store};

/// A webhook as stored (its secret sealed by the caller).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct WebhookRow {
    pub webhook_id: String,
    pub enterprise_id: String,
    pub url: String,
    /// Space-separated product keys.
    pub products: String,
    /// Space-separated event kinds.
    pub kinds: String,
    pub secret_enc: Vec<u8>,
    /// Space-separated sensitive data points the webhook may receive.
    pub sensitive_points: String,
    pub disabled: bool,
    pub created_by: String,
    pub created_at: i64,
}

/// An event that every delivery attempt failed for (`id` is 0 before insertion).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeadLetterRow {
    pub id: i64,
    pub webhook_id: String,
    /// The event's id in `event_queue` when it failed (its last delivery id).
    pub event_id: i64,
    pub product_key: String,
    pub did: String,
    pub kind: String,
    pub ts: i64,
    /// The event's data as JSON text.
    pub body: String,
    pub attempts: i64,
    /// The last HTTP status, if the endpoint answered at all.
    pub last_status: Option<i64>,
    pub last_error: String,
    pub failed_at: i64,
}

macro_rules! dead_letter_columns {
    () => {
        "SELECT id, webhook_id, event_id, product_key, did, kind, ts, body, attempts, last_status, \
         last_error, failed_at FROM webhook_dead_letters "
    };
}

impl Store {
    /// Store a new webhook.
    pub async fn insert_webhook(&self, r: &WebhookRow) -> Result<()> {
        let sql =
            "INSERT INTO webhooks (webhook_id, enterprise_id, url, products, kinds, secret_enc, \
                   sensitive_points, disabled, created_by, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
        with_db!(self, p => sqlx::query(sql).bind(&r.webhook_id).bind(&r.enterprise_id).bind(&r.url)
            .bind(&r.products).bind(&r.kinds).bind(&r.secret_enc).bind(&r.sensitive_points)
            .bind(r.disabled).bind(&r.created_by).bind(r.created_at)
            .execute(p).await.map(|_| ()).map_err(map_conflict)?);
        Ok(())
    }

    pub async fn get_webhook(&self, webhook_id: &str) -> Result<Option<WebhookRow>> {
        let sql = "SELECT * FROM webhooks WHERE webhook_id = $1";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(webhook_id).fetch_optional(p).await?))
    }

    /// An enterprise's webhooks, oldest first.
    pub async fn list_webhooks(&self, enterprise_id: &str) -> Result<Vec<WebhookRow>> {
        let sql = "SELECT * FROM webhooks WHERE enterprise_id = $1 ORDER BY created_at, webhook_id";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(enterprise_id).fetch_all(p).await?))
    }

    /// Every webhook that is not disabled (started with the server).
    pub async fn list_enabled_webhooks(&self) -> Result<Vec<WebhookRow>> {
        let sql = "SELECT * FROM webhooks WHERE disabled = $1 ORDER BY created_at, webhook_id";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(false).fetch_all(p).await?))
    }

    /// Disable (`on`) or enable an enterprise's webhook; false when there is none.
    pub async fn set_webhook_disabled(
        &self,
        enterprise_id: &str,
        webhook_id: &str,
        on: bool,
    ) -> Result<bool> {
        let sql = "UPDATE webhooks SET disabled = $1 WHERE webhook_id = $2 AND enterprise_id = $3";
        Ok(
            with_db!(self, p => sqlx::query(sql).bind(on).bind(webhook_id).bind(enterprise_id)
            .execute(p).await?.rows_affected())
                > 0,
        )
    }

    /// Delete an enterprise's webhook with its dead letters and its subscription groups (subkey
    /// `subkey`) and their queued events, in one transaction; false when there is none.
    pub async fn delete_webhook(
        &self,
        enterprise_id: &str,
        webhook_id: &str,
        subkey: &str,
    ) -> Result<bool> {
        let letters = "DELETE FROM webhook_dead_letters WHERE webhook_id IN \
                       (SELECT webhook_id FROM webhooks WHERE webhook_id = $1 AND enterprise_id = $2)";
        let hook = "DELETE FROM webhooks WHERE webhook_id = $1 AND enterprise_id = $2";
        let queue = "DELETE FROM event_queue WHERE subkey = $1";
        let groups = "DELETE FROM event_groups WHERE subkey = $1";
        Ok(with_db!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(letters).bind(webhook_id).bind(enterprise_id).execute(&mut *tx).await?;
            let n = sqlx::query(hook).bind(webhook_id).bind(enterprise_id).execute(&mut *tx).await?
                .rows_affected();
            if n > 0 {
                sqlx::query(queue).bind(subkey).execute(&mut *tx).await?;
                sqlx::query(groups).bind(subkey).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            n > 0
        }))
    }

    /// Record dead letters, in one transaction.
    pub async fn insert_dead_letters(&self, rows: &[DeadLetterRow]) -> Result<()> {
        let sql =
            "INSERT INTO webhook_dead_letters (webhook_id, event_id, product_key, did, kind, ts, \
                   body, attempts, last_status, last_error, failed_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            for r in rows {
                sqlx::query(sql).bind(&r.webhook_id).bind(r.event_id).bind(&r.product_key)
                    .bind(&r.did).bind(&r.kind).bind(r.ts).bind(&r.body).bind(r.attempts)
                    .bind(r.last_status).bind(&r.last_error).bind(r.failed_at)
                    .execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// A page of a webhook's dead letters, oldest first, and how many it has.
    pub async fn list_dead_letters(
        &self,
        webhook_id: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<DeadLetterRow>, i64)> {
        let page = concat!(
            dead_letter_columns!(),
            "WHERE webhook_id = $1 ORDER BY id LIMIT $2 OFFSET $3"
        );
        let count = "SELECT COUNT(*) FROM webhook_dead_letters WHERE webhook_id = $1";
        Ok(with_db!(self, p => {
            let rows = sqlx::query_as(page).bind(webhook_id).bind(limit).bind(offset).fetch_all(p).await?;
            let (total,): (i64,) = sqlx::query_as(count).bind(webhook_id).fetch_one(p).await?;
            (rows, total)
        }))
    }

    /// Move a webhook's dead letters (one by id, or all) back into `event_queue` under the group
    /// (their product, `subkey`), in their order, in one transaction. Returns how many moved.
    pub async fn redrive_dead_letters(
        &self,
        webhook_id: &str,
        id: Option<i64>,
        subkey: &str,
        now: i64,
    ) -> Result<u64> {
        let requeue =
            "INSERT INTO event_queue (product_key, subkey, did, kind, ts, body, created_at) \
                       SELECT product_key, $3, did, kind, ts, body, $4 FROM webhook_dead_letters \
                       WHERE webhook_id = $1 AND ($2 IS NULL OR id = $2) ORDER BY id";
        let remove =
            "DELETE FROM webhook_dead_letters WHERE webhook_id = $1 AND ($2 IS NULL OR id = $2)";
        Ok(with_db!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(requeue).bind(webhook_id).bind(id).bind(subkey).bind(now)
                .execute(&mut *tx).await?;
            let n = sqlx::query(remove).bind(webhook_id).bind(id).execute(&mut *tx).await?
                .rows_affected();
            tx.commit().await?;
            n
        }))
    }

    /// Delete a webhook's dead letters (one by id, or all). Returns how many.
    pub async fn delete_dead_letters(&self, webhook_id: &str, id: Option<i64>) -> Result<u64> {
        let sql =
            "DELETE FROM webhook_dead_letters WHERE webhook_id = $1 AND ($2 IS NULL OR id = $2)";
        Ok(
            with_db!(self, p => sqlx::query(sql).bind(webhook_id).bind(id).execute(p).await?
            .rows_affected()),
        )
    }
}
