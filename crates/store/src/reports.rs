//! Reports: the group-commit write path (reports, presence and CONNECT timestamps in one
//! commit), the SQLite report journal and its compaction, and each device's history. Reading a
//! device's latest state is `devices`'s, which merges the journal through `apply_journal_page`.
//! Never validates a report: it arrives checked against its product's model by `rampart-core`.
//!
//! PostgreSQL: a batch merges into `devices.state` and appends to `history` in one transaction.
//!
//! SQLite: a batch is appended to `report_journal`, a table without a secondary index: a commit
//! writes only the pages the new rows fill. The history index is keyed by device, so writing
//! history rows at every commit rewrote one index page per device reporting in that batch (with a
//! thousand devices, megabytes per commit and the disk's synced write bandwidth as the limit).
//! [`Store::compact_reports`] (called by the writer about once a second) moves the journal into
//! `history`, sorted by device so each device's index page is written once, and merges the latest
//! values into `devices.state`, in one transaction. Readers see both: a device's state and history
//! are read together with its journal rows in one read transaction (one snapshot), so a report is
//! visible from its commit on, and a compaction never shows it twice or not at all. After a crash
//! the journal is still there; opening the store compacts it before anything else runs.

use crate::devices::{CONNECT_TS, PRESENCE};
use crate::{to_json, ConnectRow, Db, DeviceRow, PerBackend, PresenceRow, Result, Store};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Mutex;

/// One validated report to store.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRow {
    pub did: String,
    pub ts: i64,
    /// The report's values (one history row holds them all).
    pub values: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct HistoryRow {
    pub ts: i64,
    pub point: String,
    /// The value as JSON text.
    pub value: String,
}

/// SQLite: what the journal holds, merged by device in commit order (so compaction need not read
/// the journal back to update the latest states).
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// Latest values and time of each device that reported since the last compaction.
    states: HashMap<String, (Map<String, Value>, i64)>,
    /// Journal rows since the last compaction.
    rows: usize,
}

impl Pending {
    /// Drop a device's journalled state (its rows are being deleted in the caller's transaction).
    pub(crate) fn forget(&mut self, did: &str) {
        self.states.remove(did);
    }

    fn add(&mut self, did: &str, ts: i64, values: &Map<String, Value>) {
        match self.states.get_mut(did) {
            Some((m, t)) => {
                m.extend(values.iter().map(|(k, v)| (k.clone(), v.clone())));
                *t = (*t).max(ts);
            }
            None => {
                self.states.insert(did.to_owned(), (values.clone(), ts));
            }
        }
    }
}

pub(crate) fn lock(m: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Apply journal rows `(ts, vals)` (oldest first) to a device row read before them.
pub(crate) fn apply_journal(row: &mut DeviceRow, journal: impl IntoIterator<Item = (i64, String)>) {
    let mut state: Option<Map<String, Value>> = None;
    for (ts, vals) in journal {
        let Ok(Value::Object(vals)) = serde_json::from_str::<Value>(&vals) else {
            continue;
        };
        let s = state.get_or_insert_with(|| match serde_json::from_str(&row.state) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        });
        s.extend(vals);
        row.last_seen = Some(row.last_seen.map_or(ts, |l| l.max(ts)));
    }
    if let Some(s) = state {
        row.state = Value::Object(s).to_string();
    }
}

/// SQLite: bring a page of device rows up to date with their journal rows, read in the same
/// transaction as the rows (one snapshot).
pub(crate) async fn apply_journal_page(
    conn: &mut sqlx::SqliteConnection,
    rows: &mut [DeviceRow],
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let dids = Value::Array(rows.iter().map(|r| Value::from(r.did.as_str())).collect()).to_string();
    let entries: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT did, ts, vals FROM report_journal \
         WHERE did IN (SELECT value FROM json_each($1)) ORDER BY seq",
    )
    .bind(dids)
    .fetch_all(&mut *conn)
    .await?;
    let mut by_did: HashMap<String, Vec<(i64, String)>> = HashMap::new();
    for (did, ts, vals) in entries {
        by_did.entry(did).or_default().push((ts, vals));
    }
    for r in rows {
        if let Some(j) = by_did.remove(&r.did) {
            apply_journal(r, j);
        }
    }
    Ok(())
}

/// Serialise rows (tuples, which serde writes as JSON arrays) straight to text: no `Value` copy of
/// each report's values on the way.
fn json_rows<T: serde::Serialize>(rows: impl Iterator<Item = T>) -> Result<String> {
    to_json(&rows.collect::<Vec<T>>())
}

/// `[[did, values, ts], ...]` for the state merge statements.
fn states_json(states: &HashMap<String, (Map<String, Value>, i64)>) -> Result<String> {
    json_rows(states.iter().map(|(did, (m, ts))| (did, m, ts)))
}

/// Merge each device's newest values into its state; `last_seen` only moves forward. One row per
/// device: SQLite takes `[[did, values, ts], ...]` as JSON (at compaction), PostgreSQL three
/// column arrays (at each commit).
const MERGE_STATES: PerBackend = PerBackend {
    sqlite: "UPDATE devices SET state = json_patch(devices.state, v.vals), \
             last_seen = max(coalesce(devices.last_seen, v.ts), v.ts) \
             FROM (SELECT value->>0 AS did, value->1 AS vals, value->>2 AS ts FROM json_each($1)) AS v \
             WHERE devices.did = v.did",
    postgres: "UPDATE devices SET state = (devices.state::jsonb || v.vals::jsonb)::text, \
               last_seen = GREATEST(COALESCE(devices.last_seen, v.ts), v.ts) \
               FROM UNNEST($1::text[], $2::text[], $3::int8[]) AS v(did, vals, ts) \
               WHERE devices.did = v.did",
};

/// Append a batch of reports, one row each: SQLite to the journal (`[[did, ts, values], ...]` as
/// JSON; compaction moves it into `history`), PostgreSQL straight to `history` (column arrays).
const APPEND_REPORTS: PerBackend = PerBackend {
    sqlite: "INSERT INTO report_journal (did, ts, vals) \
             SELECT value->>0, value->>1, value->2 FROM json_each($1)",
    postgres: "INSERT INTO history (did, ts, vals) \
               SELECT d, t, v::jsonb FROM UNNEST($1::text[], $2::int8[], $3::text[]) AS x(d, t, v)",
};

/// A device's history rows, newest first: `$1` the device, `$2` a point the row must hold (or
/// empty), `$3`..`$4` the time range, `$5` the limit. SQLite's `->` and PostgreSQL's
/// `jsonb_exists` both take the point as a key, never as a path.
const HISTORY: PerBackend = PerBackend {
    sqlite: "SELECT ts, vals FROM history WHERE did = $1 AND ($2 = '' OR vals -> $2 IS NOT NULL) \
             AND ts >= $3 AND ts <= $4 ORDER BY ts DESC LIMIT $5",
    postgres:
        "SELECT ts, vals::text FROM history WHERE did = $1 AND ($2 = '' OR jsonb_exists(vals, $2)) \
               AND ts >= $3 AND ts <= $4 ORDER BY ts DESC LIMIT $5",
};

/// SQLite: [`HISTORY`] over the journal's rows not compacted yet (the later ones at equal times).
const SQLITE_JOURNAL_HISTORY: &str = "SELECT ts, vals FROM report_journal WHERE did = $1 \
     AND ($2 = '' OR vals -> $2 IS NOT NULL) AND ts >= $3 AND ts <= $4 \
     ORDER BY ts DESC, seq DESC LIMIT $5";

/// The greatest timestamp of each device (one row per device: an UPDATE joined to several rows
/// for one device would apply an arbitrary one of them).
fn greatest_per_device(rows: &[ConnectRow]) -> Vec<(&str, i64)> {
    let mut best: HashMap<&str, i64> = HashMap::with_capacity(rows.len());
    for r in rows {
        let e = best.entry(r.did.as_str()).or_insert(r.ts);
        *e = (*e).max(r.ts);
    }
    let mut out: Vec<(&str, i64)> = best.into_iter().collect();
    out.sort_unstable();
    out
}

/// The last row of each device, in the order of those last rows (an UPDATE joined to several rows
/// for one device would apply an arbitrary one of them).
fn last_per_device(rows: &[PresenceRow]) -> Vec<&PresenceRow> {
    let mut last: HashMap<&str, usize> = HashMap::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        last.insert(r.did.as_str(), i);
    }
    rows.iter()
        .enumerate()
        .filter(|(i, r)| last.get(r.did.as_str()) == Some(i))
        .map(|(_, r)| r)
        .collect()
}

impl Store {
    /// Store a batch of validated reports durably (group commit): on return every report is
    /// committed and visible in its device's state and history. Reports of one device are applied
    /// in order. Each statement has one text whatever the batch size, so both engines prepare it
    /// once: the rows travel as one JSON array (SQLite, `json_each`) or as column arrays
    /// (PostgreSQL, `UNNEST`).
    pub async fn record_reports(&self, reports: &[ReportRow]) -> Result<()> {
        self.record_batch(reports, &[]).await
    }

    /// Store a batch of reports and presence changes in one commit (one fsync for a burst of
    /// connects or disconnects as for reports). Presence rows apply in order; when a device
    /// appears more than once, its last row wins. `last_seen` only moves forward.
    pub async fn record_batch(
        &self,
        reports: &[ReportRow],
        presence: &[PresenceRow],
    ) -> Result<()> {
        self.record_writes(reports, presence, &[]).await
    }

    /// [`Store::record_batch`] with accepted CONNECT timestamps too: each device's `connect_ts`
    /// becomes the greatest of its stored value and its rows here. Like presence, a batch without
    /// reports commits without waiting for an fsync (SQLite: `synchronous = NORMAL`, which a
    /// process crash does not lose; PostgreSQL: `synchronous_commit = off`).
    pub async fn record_writes(
        &self,
        reports: &[ReportRow],
        presence: &[PresenceRow],
        connects: &[ConnectRow],
    ) -> Result<()> {
        if reports.is_empty() && presence.is_empty() && connects.is_empty() {
            return Ok(());
        }
        let presence = last_per_device(presence);
        let connects = greatest_per_device(connects);
        match &self.db {
            Db::Sqlite(p) => {
                let p = self.report_writer.as_ref().unwrap_or(p);
                let journal = if reports.is_empty() {
                    None
                } else {
                    Some(json_rows(
                        reports.iter().map(|r| (&r.did, r.ts, &r.values)),
                    )?)
                };
                let seen = if presence.is_empty() {
                    None
                } else {
                    Some(json_rows(
                        presence.iter().map(|r| (&r.did, u8::from(r.online), r.ts)),
                    )?)
                };
                let connected = if connects.is_empty() {
                    None
                } else {
                    Some(json_rows(connects.iter().map(|(did, ts)| (did, ts)))?)
                };
                if let Some(j) = journal {
                    let mut tx = p.begin().await?;
                    sqlx::query(APPEND_REPORTS.sqlite)
                        .bind(j)
                        .execute(&mut *tx)
                        .await?;
                    if let Some(s) = seen {
                        sqlx::query(PRESENCE.sqlite)
                            .bind(s)
                            .execute(&mut *tx)
                            .await?;
                    }
                    if let Some(c) = connected {
                        sqlx::query(CONNECT_TS.sqlite)
                            .bind(c)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                } else {
                    // Presence is soft state (the server marks every device offline when it
                    // starts), and a CONNECT timestamp lost to a power failure only reopens a
                    // replay for the rest of its clock window: a batch of these alone must be
                    // visible, not durable. It commits without an fsync, and the next durable
                    // commit syncs the log up to and past it.
                    let mut c = p.acquire().await?;
                    sqlx::query("PRAGMA synchronous = NORMAL")
                        .execute(&mut *c)
                        .await?;
                    let res: Result<()> = async {
                        let mut tx = sqlx::Connection::begin(&mut *c).await?;
                        if let Some(s) = seen {
                            sqlx::query(PRESENCE.sqlite)
                                .bind(s)
                                .execute(&mut *tx)
                                .await?;
                        }
                        if let Some(cs) = connected {
                            sqlx::query(CONNECT_TS.sqlite)
                                .bind(cs)
                                .execute(&mut *tx)
                                .await?;
                        }
                        tx.commit().await?;
                        Ok(())
                    }
                    .await;
                    if let Err(e) = sqlx::query("PRAGMA synchronous = FULL")
                        .execute(&mut *c)
                        .await
                    {
                        // Never hand a connection that does not sync back to the pool.
                        let _ = sqlx::Connection::close(c.detach()).await;
                        return Err(e.into());
                    }
                    res?;
                }
                if let (Some(pending), false) = (&self.pending, reports.is_empty()) {
                    let mut g = lock(pending);
                    for r in reports {
                        g.add(&r.did, r.ts, &r.values);
                    }
                    g.rows += reports.len();
                }
            }
            Db::Postgres(p) => {
                let mut tx = p.begin().await?;
                if reports.is_empty() {
                    // Presence and CONNECT timestamps alone (see the SQLite branch): no wait for
                    // the WAL flush.
                    sqlx::query("SET LOCAL synchronous_commit = off")
                        .execute(&mut *tx)
                        .await?;
                }
                if !reports.is_empty() {
                    let mut merged = Pending::default();
                    for r in reports {
                        merged.add(&r.did, r.ts, &r.values);
                    }
                    let mut dids = Vec::with_capacity(merged.states.len());
                    let mut vals = Vec::with_capacity(merged.states.len());
                    let mut tss = Vec::with_capacity(merged.states.len());
                    for (did, (m, ts)) in merged.states {
                        dids.push(did);
                        vals.push(Value::Object(m).to_string());
                        tss.push(ts);
                    }
                    let (mut h_did, mut h_ts, mut h_vals) = (
                        Vec::with_capacity(reports.len()),
                        Vec::with_capacity(reports.len()),
                        Vec::with_capacity(reports.len()),
                    );
                    for r in reports {
                        h_did.push(r.did.as_str());
                        h_ts.push(r.ts);
                        h_vals.push(to_json(&r.values)?);
                    }
                    sqlx::query(MERGE_STATES.postgres)
                        .bind(&dids)
                        .bind(&vals)
                        .bind(&tss)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(APPEND_REPORTS.postgres)
                        .bind(&h_did)
                        .bind(&h_ts)
                        .bind(&h_vals)
                        .execute(&mut *tx)
                        .await?;
                }
                if !presence.is_empty() {
                    let dids: Vec<&str> = presence.iter().map(|r| r.did.as_str()).collect();
                    let online: Vec<bool> = presence.iter().map(|r| r.online).collect();
                    let tss: Vec<i64> = presence.iter().map(|r| r.ts).collect();
                    sqlx::query(PRESENCE.postgres)
                        .bind(&dids)
                        .bind(&online)
                        .bind(&tss)
                        .execute(&mut *tx)
                        .await?;
                }
                if !connects.is_empty() {
                    let dids: Vec<&str> = connects.iter().map(|(d, _)| *d).collect();
                    let tss: Vec<i64> = connects.iter().map(|(_, t)| *t).collect();
                    sqlx::query(CONNECT_TS.postgres)
                        .bind(&dids)
                        .bind(&tss)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Reports in the SQLite journal since the last compaction (always 0 on PostgreSQL).
    pub fn journal_len(&self) -> usize {
        self.pending.as_ref().map_or(0, |p| lock(p).rows)
    }

    /// SQLite: move the journal into the history and the latest states, in one transaction.
    /// Returns how many reports were moved (0 on PostgreSQL, which has no journal). Call it from
    /// the one task that records reports, between batches.
    pub async fn compact_reports(&self) -> Result<usize> {
        let (Some(pending), Db::Sqlite(p)) = (&self.pending, &self.db) else {
            return Ok(0);
        };
        if lock(pending).rows == 0 {
            return Ok(0);
        }
        let p = self.report_writer.as_ref().unwrap_or(p);
        // The writer's one connection first: a concurrent `clear_device_data`, which uses it too,
        // has then either finished (and dropped its device from `pending`) or not started.
        let mut tx = p.begin().await?;
        let (states, rows) = {
            let mut g = lock(pending);
            (std::mem::take(&mut g.states), g.rows)
        };
        let res: Result<()> = async {
            sqlx::query(MERGE_STATES.sqlite)
                .bind(states_json(&states)?)
                .execute(&mut *tx)
                .await?;
            // Sorted by device: each device's page of the (did, ts) index is written once.
            sqlx::query(
                "INSERT INTO history (did, ts, vals) \
                 SELECT did, ts, vals FROM report_journal ORDER BY did, seq",
            )
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM report_journal")
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        }
        .await;
        let mut g = lock(pending);
        match res {
            Ok(()) => {
                g.rows = g.rows.saturating_sub(rows);
                Ok(rows)
            }
            Err(e) => {
                // Still journalled: merge the taken states back under anything newer.
                for (did, (mut m, ts)) in states {
                    if let Some((newer, t)) = g.states.remove(&did) {
                        m.extend(newer);
                        g.states.insert(did, (m, ts.max(t)));
                    } else {
                        g.states.insert(did, (m, ts));
                    }
                }
                Err(e)
            }
        }
    }

    /// SQLite, at open: a journal left by a crash is compacted before anything reads or writes.
    pub(crate) async fn recover_journal(&self) -> Result<usize> {
        let (Some(pending), Db::Sqlite(p)) = (&self.pending, &self.db) else {
            return Ok(0);
        };
        let rows: Vec<(String, i64, String)> =
            sqlx::query_as("SELECT did, ts, vals FROM report_journal ORDER BY seq")
                .fetch_all(p)
                .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        {
            let mut g = lock(pending);
            for (did, ts, vals) in &rows {
                if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(vals) {
                    g.add(did, *ts, &m);
                }
            }
            g.rows += rows.len();
        }
        self.compact_reports().await
    }

    /// Clear a device's latest state (factory reset / wipe) and optionally its history, reports
    /// not yet compacted included.
    pub async fn clear_device_data(&self, did: &str, history: bool) -> Result<()> {
        // One body for both pool types; only SQLite has a journal (and a writer connection).
        macro_rules! clear {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await?;
                sqlx::query("UPDATE devices SET state = $1 WHERE did = $2")
                    .bind("{}")
                    .bind(did)
                    .execute(&mut *tx)
                    .await?;
                if history {
                    sqlx::query("DELETE FROM history WHERE did = $1")
                        .bind(did)
                        .execute(&mut *tx)
                        .await?;
                }
                if let Some(pending) = &self.pending {
                    sqlx::query("DELETE FROM report_journal WHERE did = $1")
                        .bind(did)
                        .execute(&mut *tx)
                        .await?;
                    // Before the connection is given back, so a compaction cannot merge the
                    // values just deleted back into the state.
                    lock(pending).states.remove(did);
                }
                tx.commit().await?;
            }};
        }
        match &self.db {
            Db::Sqlite(p) => clear!(self.report_writer.as_ref().unwrap_or(p)),
            Db::Postgres(p) => clear!(p),
        }
        Ok(())
    }

    /// History entries (one per point), newest first, optionally for one point, within
    /// `[from, to]`, reports not yet compacted included.
    pub async fn history(
        &self,
        did: &str,
        point: Option<&str>,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<HistoryRow>> {
        // One row per report; the rows are expanded into one entry per point here. With a point
        // filter every row selected holds that point, so `limit` rows always suffice.
        let point = point.unwrap_or("");
        if point.starts_with('$') {
            // Would read as a JSON path in SQLite; no data point is named so.
            return Ok(Vec::new());
        }
        // The same five parameters for every statement here.
        macro_rules! fetch {
            ($sql:expr, $ex:expr) => {
                sqlx::query_as::<_, (i64, String)>($sql)
                    .bind(did)
                    .bind(point)
                    .bind(from)
                    .bind(to)
                    .bind(limit)
                    .fetch_all($ex)
                    .await?
            };
        }
        let rows: Vec<(i64, String)> = match &self.db {
            Db::Sqlite(p) => {
                let mut tx = p.begin().await?;
                let mut recent = if self.journal_len() > 0 {
                    fetch!(SQLITE_JOURNAL_HISTORY, &mut *tx)
                } else {
                    Vec::new()
                };
                let older = fetch!(HISTORY.sqlite, &mut *tx);
                tx.commit().await?;
                if recent.is_empty() {
                    older
                } else {
                    // Both newest first; the journal's rows are the later ones at equal times.
                    recent.extend(older);
                    recent.sort_by_key(|r| std::cmp::Reverse(r.0));
                    recent
                }
            }
            Db::Postgres(p) => fetch!(HISTORY.postgres, p),
        };
        let mut out = Vec::new();
        let limit = usize::try_from(limit).unwrap_or(0);
        for (ts, vals) in rows {
            let Ok(Value::Object(m)) = serde_json::from_str(&vals) else {
                continue;
            };
            for (k, v) in m {
                if out.len() >= limit {
                    return Ok(out);
                }
                if point.is_empty() || k == point {
                    out.push(HistoryRow {
                        ts,
                        point: k,
                        value: v.to_string(),
                    });
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: &str, last_seen: Option<i64>) -> DeviceRow {
        DeviceRow {
            did: "d".into(),
            product_key: "p".into(),
            hardware_id: "h".into(),
            mode: "product".into(),
            secret_enc: vec![],
            passcode_enc: vec![],
            created_at: 0,
            online: false,
            last_seen,
            state: state.into(),
        }
    }

    #[test]
    fn journal_rows_apply_in_order_over_the_stored_state() {
        let mut r = row(r#"{"a":1,"b":2}"#, Some(50));
        apply_journal(
            &mut r,
            [
                (40, r#"{"a":3}"#.to_owned()),
                (60, r#"{"a":4,"c":true}"#.to_owned()),
            ],
        );
        let s: Value = serde_json::from_str(&r.state).unwrap();
        assert_eq!(s, serde_json::json!({"a":4,"b":2,"c":true}));
        assert_eq!(r.last_seen, Some(60));
    }

    #[test]
    fn no_journal_rows_leave_the_row_alone() {
        let mut r = row("not json", None);
        apply_journal(&mut r, []);
        assert_eq!(r.state, "not json");
        assert_eq!(r.last_seen, None);
    }

    /// A presence-only batch commits without an fsync; the writer's connection must be back to
    /// syncing every commit afterwards, or acknowledged reports would stop being durable.
    #[tokio::test]
    async fn presence_batches_leave_the_writer_syncing() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_sqlite(&dir.path().join("t.db")).await.unwrap();
        let sync = || async {
            let w = s.report_writer.as_ref().unwrap();
            sqlx::query_scalar::<_, i64>("PRAGMA synchronous")
                .fetch_one(w)
                .await
                .unwrap()
        };
        assert_eq!(sync().await, 2, "FULL to begin with");
        let seen = PresenceRow {
            did: "nobody".into(),
            online: true,
            ts: 1,
        };
        s.record_batch(&[], &[seen]).await.unwrap();
        assert_eq!(sync().await, 2, "FULL again after a presence-only batch");
    }

    #[test]
    fn pending_merges_by_device_keeping_the_latest_values_and_time() {
        let mut p = Pending::default();
        let m = |v: Value| v.as_object().unwrap().clone();
        p.add("d1", 10, &m(serde_json::json!({"a":1})));
        p.add("d2", 11, &m(serde_json::json!({"a":2})));
        p.add("d1", 12, &m(serde_json::json!({"a":3,"b":1})));
        assert_eq!(p.states.len(), 2);
        let (s, ts) = &p.states["d1"];
        assert_eq!(Value::Object(s.clone()), serde_json::json!({"a":3,"b":1}));
        assert_eq!(*ts, 12);
    }
}
