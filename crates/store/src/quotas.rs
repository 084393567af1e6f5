//! Window quota counters: the rows behind `rampart_core::limits::quotas`, so a quota's count
//! survives a restart. Rows only; the windows, limits and flushing are the core's.

use crate::{Result, Store};

/// One counter in one fixed window.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct QuotaCounterRow {
    pub counter: String,
    pub window_start: i64,
    pub window_ms: i64,
    pub used: i64,
}

impl Store {
    /// The counters whose window has not ended at `now` (Unix ms).
    pub async fn load_quota_counters(&self, now: i64) -> Result<Vec<QuotaCounterRow>> {
        let sql = "SELECT counter, window_start, window_ms, used FROM quota_counters \
                   WHERE window_start + window_ms > $1";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(now).fetch_all(p).await?))
    }

    /// Write counters in one transaction (a count never goes down: the larger of the stored and
    /// the given value wins), then delete the rows whose window ended before `now`.
    pub async fn save_quota_counters(&self, rows: &[QuotaCounterRow], now: i64) -> Result<()> {
        let upsert = "INSERT INTO quota_counters (counter, window_start, window_ms, used) \
                      VALUES ($1, $2, $3, $4) ON CONFLICT (counter, window_start) DO UPDATE SET \
                      used = CASE WHEN excluded.used > quota_counters.used THEN excluded.used \
                      ELSE quota_counters.used END";
        let purge = "DELETE FROM quota_counters WHERE window_start + window_ms <= $1";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            for r in rows {
                sqlx::query(upsert)
                    .bind(&r.counter)
                    .bind(r.window_start)
                    .bind(r.window_ms)
                    .bind(r.used)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(purge).bind(now).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Claim one use of a counter in its fixed window, atomically: counts it and answers true
    /// while fewer than `max` were claimed in the window starting at `window_start`; past that
    /// answers false and counts nothing. Of any number of concurrent callers (on any node sharing
    /// the store), at most `max` get true. Rows are purged with the other counters'.
    pub async fn claim_counter(
        &self,
        counter: &str,
        window_start: i64,
        window_ms: i64,
        max: i64,
    ) -> Result<bool> {
        let sql = "INSERT INTO quota_counters (counter, window_start, window_ms, used) \
                   VALUES ($1, $2, $3, 1) ON CONFLICT (counter, window_start) DO UPDATE SET \
                   used = quota_counters.used + 1 WHERE quota_counters.used < $4 RETURNING used";
        if max <= 0 {
            return Ok(false);
        }
        let n: Option<i64> = with_db!(self, p => sqlx::query_scalar(sql).bind(counter)
            .bind(window_start).bind(window_ms).bind(max).fetch_optional(p).await?);
        Ok(n.is_some())
    }
}
