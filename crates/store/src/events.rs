//! Tables of the operator event stream: subscription groups and the queue of
//! events each group has not acknowledged yet.
//!
//! Rows only: which events a group records, who holds which event and the retention policy are
//! decided in `rampart-core` (`events`). Inserts and acknowledgements come in batches, one
//! statement each.

use crate::{to_json, Db, Result, Store};

/// A subscription group: consumers of one product with one subkey.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EventGroupRow {
    pub product_key: String,
    pub subkey: String,
    /// Space-separated event kinds recorded for the group.
    pub kinds: String,
    pub last_seen: i64,
}

/// An event queued for one group (`id` is 0 before insertion).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct QueuedEventRow {
    pub id: i64,
    pub product_key: String,
    pub subkey: String,
    pub did: String,
    pub kind: String,
    pub ts: i64,
    /// The event's data as JSON text.
    pub body: String,
    pub created_at: i64,
}

impl Store {
    /// Create a group or update its kinds, touching `last_seen`.
    pub async fn upsert_event_group(&self, r: &EventGroupRow) -> Result<()> {
        let sql = "INSERT INTO event_groups (product_key, subkey, kinds, last_seen) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (product_key, subkey) DO UPDATE SET kinds = $3, last_seen = $4";
        with_db!(self, p => sqlx::query(sql).bind(&r.product_key).bind(&r.subkey).bind(&r.kinds)
            .bind(r.last_seen).execute(p).await.map(|_| ())?);
        Ok(())
    }

    /// Every group.
    pub async fn list_event_groups(&self) -> Result<Vec<EventGroupRow>> {
        let sql = "SELECT product_key, subkey, kinds, last_seen FROM event_groups \
                   ORDER BY product_key, subkey";
        Ok(with_db!(self, p => sqlx::query_as(sql).fetch_all(p).await?))
    }

    /// Set `last_seen` of the groups named.
    pub async fn touch_event_groups(&self, groups: &[(String, String)], now: i64) -> Result<()> {
        let sql = "UPDATE event_groups SET last_seen = $3 WHERE product_key = $1 AND subkey = $2";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            for (pk, sk) in groups {
                sqlx::query(sql).bind(pk).bind(sk).bind(now).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Delete groups not seen since `before`, with their queued events; returns how many groups.
    pub async fn delete_stale_event_groups(&self, before: i64) -> Result<u64> {
        let events = "DELETE FROM event_queue WHERE EXISTS (SELECT 1 FROM event_groups g \
                      WHERE g.product_key = event_queue.product_key AND g.subkey = event_queue.subkey \
                      AND g.last_seen < $1)";
        let groups = "DELETE FROM event_groups WHERE last_seen < $1";
        Ok(with_db!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(events).bind(before).execute(&mut *tx).await?;
            let n = sqlx::query(groups).bind(before).execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            n
        }))
    }

    /// Queue a batch of events in one statement (the ids are assigned in slice order).
    pub async fn insert_events(&self, rows: &[QueuedEventRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let json = to_json(
            &rows
                .iter()
                .map(|r| {
                    (
                        &r.product_key,
                        &r.subkey,
                        &r.did,
                        &r.kind,
                        r.ts,
                        &r.body,
                        r.created_at,
                    )
                })
                .collect::<Vec<_>>(),
        )?;
        match &self.db {
            Db::Sqlite(p) => {
                sqlx::query(
                    "INSERT INTO event_queue (product_key, subkey, did, kind, ts, body, created_at) \
                     SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6 \
                     FROM json_each($1) ORDER BY key",
                )
                .bind(json)
                .execute(p)
                .await?;
            }
            Db::Postgres(p) => {
                sqlx::query(
                    "INSERT INTO event_queue (product_key, subkey, did, kind, ts, body, created_at) \
                     SELECT e->>0, e->>1, e->>2, e->>3, (e->>4)::int8, e->>5, (e->>6)::int8 \
                     FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS x(e, n) ORDER BY n",
                )
                .bind(json)
                .execute(p)
                .await?;
            }
        }
        Ok(())
    }

    /// Up to `limit` events of a group after `after_id`, oldest first.
    pub async fn load_events(
        &self,
        product_key: &str,
        subkey: &str,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<QueuedEventRow>> {
        let sql =
            "SELECT id, product_key, subkey, did, kind, ts, body, created_at FROM event_queue \
                   WHERE product_key = $1 AND subkey = $2 AND id > $3 ORDER BY id LIMIT $4";
        Ok(
            with_db!(self, p => sqlx::query_as(sql).bind(product_key).bind(subkey).bind(after_id)
            .bind(limit).fetch_all(p).await?),
        )
    }

    /// Delete acknowledged events by id, in one statement.
    pub async fn delete_events(&self, ids: &[i64]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        Ok(match &self.db {
            Db::Sqlite(p) => {
                sqlx::query("DELETE FROM event_queue WHERE id IN (SELECT value FROM json_each($1))")
                    .bind(to_json(ids)?)
                    .execute(p)
                    .await?
                    .rows_affected()
            }
            Db::Postgres(p) => sqlx::query("DELETE FROM event_queue WHERE id = ANY($1)")
                .bind(ids)
                .execute(p)
                .await?
                .rows_affected(),
        })
    }

    /// Retention: delete events created before `before`, then the oldest of each group beyond
    /// `max_per_group`. Returns how many were deleted.
    pub async fn expire_events(&self, before: i64, max_per_group: i64) -> Result<u64> {
        let old = "DELETE FROM event_queue WHERE created_at < $1";
        let trim = "DELETE FROM event_queue WHERE product_key = $1 AND subkey = $2 AND id <= \
                    (SELECT id FROM event_queue WHERE product_key = $1 AND subkey = $2 \
                     ORDER BY id DESC LIMIT 1 OFFSET $3)";
        let groups = self.list_event_groups().await?;
        Ok(with_db!(self, p => {
            let mut n = sqlx::query(old).bind(before).execute(p).await?.rows_affected();
            for g in &groups {
                n += sqlx::query(trim).bind(&g.product_key).bind(&g.subkey).bind(max_per_group)
                    .execute(p).await?.rows_affected();
            }
            n
        }))
    }
}
