//! Devices: the registry (rows, secrets, passcodes, disabling, the re-provisioning window), the
//! credentials a CONNECT checks, presence, and each device's latest state.
//!
//! On SQLite a state read merges the report journal's rows not compacted yet (see `reports`), in
//! the same read transaction as the device rows. Presence and CONNECT timestamps are written by
//! the group commit in `reports`; their batched statements are here, one text per backend.
//! Secrets and passcodes arrive sealed: this file never sees a clear one, nor decides who may
//! read a device.

use crate::reports::{apply_journal, apply_journal_page};
use crate::{map_conflict, to_json, Db, PerBackend, Result, Store};

/// The condition of a device search, `$n` being [`prefix_pattern`]'s answer: every device when it
/// is empty, else those whose did or hardware id starts with the prefix, ASCII case ignored.
/// SQLite's `LIKE` ignores ASCII case itself (a third of the time of lowering each value, measured
/// on 100,000 devices); PostgreSQL's does not, so there the values are lowered. A backslash
/// escapes the wildcards the user typed.
macro_rules! device_search {
    (sqlite, $n:literal) => {
        concat!(
            "(",
            $n,
            " = '' OR did LIKE ",
            $n,
            " ESCAPE '\\' OR hardware_id LIKE ",
            $n,
            " ESCAPE '\\')"
        )
    };
    (postgres, $n:literal) => {
        concat!(
            "(",
            $n,
            " = '' OR lower(did) LIKE ",
            $n,
            " ESCAPE '\\' OR lower(hardware_id) LIKE ",
            $n,
            " ESCAPE '\\')"
        )
    };
}
pub(crate) use device_search;

/// The `LIKE` pattern of a prefix search: lowered (ASCII), `%`, `_` and backslash escaped, `%`
/// appended; empty for no search.
pub(crate) fn prefix_pattern(search: Option<&str>) -> String {
    let Some(q) = search.filter(|q| !q.is_empty()) else {
        return String::new();
    };
    let mut p = String::with_capacity(q.len() + 1);
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c.to_ascii_lowercase());
    }
    p.push('%');
    p
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DeviceRow {
    pub did: String,
    pub product_key: String,
    pub hardware_id: String,
    /// `product` (dynamic registration) or `device` (factory secret).
    pub mode: String,
    pub secret_enc: Vec<u8>,
    pub passcode_enc: Vec<u8>,
    pub created_at: i64,
    pub online: bool,
    pub last_seen: Option<i64>,
    /// Latest values as a JSON object.
    pub state: String,
}

/// A device's product and sealed secret ([`crate::Store::device_credentials`]), and the `ts` of
/// the last signed CONNECT accepted for it (0 before the first).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DeviceCredentials {
    pub product_key: String,
    pub secret_enc: Vec<u8>,
    pub connect_ts: i64,
    /// Refused at CONNECT while set.
    pub disabled: bool,
    /// The device's Ed25519 public key (32 bytes) when it was pre-registered with one.
    pub public_key: Option<Vec<u8>>,
}

/// A signed CONNECT of `did` with timestamp `ts` was accepted (its `connect_ts` only grows).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectRow {
    pub did: String,
    pub ts: i64,
}

/// A device came online or went offline.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceRow {
    pub did: String,
    pub online: bool,
    pub ts: i64,
}

/// The credentials of several devices in one statement. One text per engine whatever the batch
/// size (prepared once per connection): the ids travel as one JSON array (SQLite) or one text
/// array (PostgreSQL).
const CREDENTIALS_MANY: PerBackend = PerBackend {
    sqlite: "SELECT did, product_key, secret_enc, connect_ts, disabled, public_key FROM devices \
             WHERE did IN (SELECT value FROM json_each($1))",
    postgres: "SELECT did, product_key, secret_enc, connect_ts, disabled, public_key FROM devices \
               WHERE did = ANY($1)",
};

/// Presence changes of a batch (one row per device, the last of each): `online` and a `last_seen`
/// that only moves forward. SQLite takes `[[did, online, ts], ...]` as JSON, PostgreSQL column
/// arrays. Run by the group commit in `reports`.
pub(crate) const PRESENCE: PerBackend = PerBackend {
    sqlite: "UPDATE devices SET online = v.online, \
             last_seen = max(coalesce(devices.last_seen, v.ts), v.ts) \
             FROM (SELECT value->>0 AS did, value->>1 AS online, value->>2 AS ts FROM json_each($1)) AS v \
             WHERE devices.did = v.did",
    postgres: "UPDATE devices SET online = v.online, \
               last_seen = GREATEST(COALESCE(devices.last_seen, v.ts), v.ts) \
               FROM UNNEST($1::text[], $2::bool[], $3::int8[]) AS v(did, online, ts) \
               WHERE devices.did = v.did",
};

/// Accepted CONNECT timestamps of a batch (one row per device, its greatest): `connect_ts` only
/// grows. SQLite takes `[[did, ts], ...]` as JSON, PostgreSQL column arrays. Run by the group
/// commit in `reports`.
pub(crate) const CONNECT_TS: PerBackend = PerBackend {
    sqlite: "UPDATE devices SET connect_ts = max(devices.connect_ts, v.ts) \
             FROM (SELECT value->>0 AS did, value->>1 AS ts FROM json_each($1)) AS v \
             WHERE devices.did = v.did",
    postgres: "UPDATE devices SET connect_ts = GREATEST(devices.connect_ts, v.ts) \
               FROM UNNEST($1::text[], $2::int8[]) AS v(did, ts) \
               WHERE devices.did = v.did",
};

impl Store {
    pub async fn insert_device(&self, r: &DeviceRow) -> Result<()> {
        let sql = "INSERT INTO devices (did, product_key, hardware_id, mode, secret_enc, passcode_enc, created_at, \
                   online, last_seen, state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
        with_db!(self, p => sqlx::query(sql)
            .bind(&r.did).bind(&r.product_key).bind(&r.hardware_id).bind(&r.mode).bind(&r.secret_enc)
            .bind(&r.passcode_enc).bind(r.created_at).bind(r.online).bind(r.last_seen).bind(&r.state)
            .execute(p).await.map_err(map_conflict)?.rows_affected());
        Ok(())
    }

    /// Insert a device pre-registered with its Ed25519 public key (a conflict on the product's
    /// hardware id is [`crate::StoreError::Conflict`]).
    pub async fn insert_device_with_key(&self, r: &DeviceRow, public_key: &[u8]) -> Result<()> {
        let sql = "INSERT INTO devices (did, product_key, hardware_id, mode, secret_enc, passcode_enc, created_at, \
                   online, last_seen, state, public_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
        with_db!(self, p => sqlx::query(sql)
            .bind(&r.did).bind(&r.product_key).bind(&r.hardware_id).bind(&r.mode).bind(&r.secret_enc)
            .bind(&r.passcode_enc).bind(r.created_at).bind(r.online).bind(r.last_seen).bind(&r.state)
            .bind(public_key)
            .execute(p).await.map_err(map_conflict)?.rows_affected());
        Ok(())
    }

    /// A device's Ed25519 public key: `None` for an unknown device, `Some(None)` for one without.
    pub async fn device_public_key(&self, did: &str) -> Result<Option<Option<Vec<u8>>>> {
        let sql = "SELECT public_key FROM devices WHERE did = $1";
        let row: Option<(Option<Vec<u8>>,)> =
            with_db!(self, p => sqlx::query_as(sql).bind(did).fetch_optional(p).await?);
        Ok(row.map(|(k,)| k))
    }

    pub async fn get_device_by_hardware(
        &self,
        product_key: &str,
        hardware_id: &str,
    ) -> Result<Option<DeviceRow>> {
        let sql = "SELECT * FROM devices WHERE product_key = $1 AND hardware_id = $2";
        Ok(
            with_db!(self, p => sqlx::query_as(sql).bind(product_key).bind(hardware_id).fetch_optional(p).await?),
        )
    }

    /// Replace a device's secret (re-registration rotates it; the old one stops working at once).
    pub async fn set_device_secret(&self, did: &str, secret_enc: &[u8]) -> Result<()> {
        let sql = "UPDATE devices SET secret_enc = $1 WHERE did = $2";
        with_db!(self, p => sqlx::query(sql).bind(secret_enc).bind(did).execute(p).await?.rows_affected());
        Ok(())
    }

    /// Disable (`on`) or enable a device; false when there is no such device.
    pub async fn set_device_disabled(&self, did: &str, on: bool) -> Result<bool> {
        let sql = "UPDATE devices SET disabled = $1 WHERE did = $2";
        let n = with_db!(self, p => sqlx::query(sql).bind(on).bind(did).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Open (or move) a device's re-provisioning window until `until` (unix ms); false when
    /// there is no such device.
    pub async fn open_reprovision(&self, did: &str, until: i64) -> Result<bool> {
        let sql = "UPDATE devices SET reprovision_until = $1 WHERE did = $2";
        let n = with_db!(self, p => sqlx::query(sql).bind(until).bind(did).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Spend a device's open re-provisioning window (one conditional UPDATE: of two concurrent
    /// registrations only one finds it open): give the device a new secret and passcode and, in
    /// the same transaction, remove every binding, share and bind token. Returns the users that
    /// lost access, or `None` when no window was open at `now` (nothing changed).
    pub async fn reprovision_device(
        &self,
        did: &str,
        secret_enc: &[u8],
        passcode_enc: &[u8],
        now: i64,
    ) -> Result<Option<Vec<String>>> {
        let claim =
            "UPDATE devices SET secret_enc = $1, passcode_enc = $2, reprovision_until = NULL \
                     WHERE did = $3 AND reprovision_until IS NOT NULL AND reprovision_until >= $4";
        let users = "SELECT user_id FROM bindings WHERE did = $1";
        let dels = [
            "DELETE FROM bindings WHERE did = $1",
            "DELETE FROM shares WHERE did = $1",
            "DELETE FROM bind_tokens WHERE did = $1",
        ];
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            let n = sqlx::query(claim).bind(secret_enc).bind(passcode_enc).bind(did).bind(now)
                .execute(&mut *tx).await?.rows_affected();
            if n != 1 {
                tx.rollback().await?;
                return Ok(None);
            }
            let list: Vec<String> = sqlx::query_scalar(users).bind(did).fetch_all(&mut *tx).await?;
            for sql in dels {
                sqlx::query(sql).bind(did).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(Some(list))
        })
    }

    pub async fn set_presence(&self, did: &str, online: bool, ts: i64) -> Result<()> {
        let sql = "UPDATE devices SET online = $1, last_seen = $2 WHERE did = $3";
        with_db!(self, p => sqlx::query(sql).bind(online).bind(ts).bind(did).execute(p).await?.rows_affected());
        Ok(())
    }

    /// Mark every device offline (at start-up of a single node: no session survived a restart).
    pub async fn reset_presence(&self) -> Result<u64> {
        let sql = "UPDATE devices SET online = $1 WHERE online = $2";
        Ok(
            with_db!(self, p => sqlx::query(sql).bind(false).bind(true).execute(p).await?.rows_affected()),
        )
    }

    /// What an MQTT CONNECT needs of a device: its product, sealed secret and last accepted
    /// CONNECT timestamp. One indexed read of three columns (no state, no journal), so
    /// authenticating does not pay for the device's data.
    pub async fn device_credentials(&self, did: &str) -> Result<Option<DeviceCredentials>> {
        let sql = "SELECT product_key, secret_enc, connect_ts, disabled, public_key FROM devices \
                   WHERE did = $1";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(did).fetch_optional(p).await?))
    }

    /// The credentials of several devices in one query (CONNECTs arriving together): `(did,
    /// credentials)` for each id that exists, in no particular order.
    pub async fn device_credentials_many(
        &self,
        dids: &[&str],
    ) -> Result<Vec<(String, DeviceCredentials)>> {
        if dids.is_empty() {
            return Ok(Vec::new());
        }
        type Row = (String, String, Vec<u8>, i64, bool, Option<Vec<u8>>);
        let rows: Vec<Row> = match &self.db {
            Db::Sqlite(p) => {
                let ids = to_json(dids)?;
                sqlx::query_as(CREDENTIALS_MANY.sqlite)
                    .bind(ids)
                    .fetch_all(p)
                    .await?
            }
            Db::Postgres(p) => {
                sqlx::query_as(CREDENTIALS_MANY.postgres)
                    .bind(dids)
                    .fetch_all(p)
                    .await?
            }
        };
        Ok(rows
            .into_iter()
            .map(
                |(did, product_key, secret_enc, connect_ts, disabled, public_key)| {
                    (
                        did,
                        DeviceCredentials {
                            product_key,
                            secret_enc,
                            connect_ts,
                            disabled,
                            public_key,
                        },
                    )
                },
            )
            .collect())
    }

    /// A device row with its latest state, including reports not yet compacted.
    pub async fn get_device(&self, did: &str) -> Result<Option<DeviceRow>> {
        let sql = "SELECT * FROM devices WHERE did = $1";
        match &self.db {
            Db::Sqlite(p) if self.journal_len() > 0 => {
                // One read transaction: the row and its journal rows from the same snapshot.
                let mut tx = p.begin().await?;
                let row: Option<DeviceRow> = sqlx::query_as(sql)
                    .bind(did)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(mut row) = row else {
                    return Ok(None);
                };
                let journal: Vec<(i64, String)> = sqlx::query_as(
                    "SELECT ts, vals FROM report_journal WHERE did = $1 ORDER BY seq",
                )
                .bind(did)
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                apply_journal(&mut row, journal);
                Ok(Some(row))
            }
            _ => Ok(with_db!(self, p => sqlx::query_as(sql).bind(did).fetch_optional(p).await?)),
        }
    }

    /// The latest states (JSON objects as text) of the devices `dids` that exist, reports not yet
    /// compacted included: one indexed read per device and, on SQLite with a journal, one pass
    /// over the journal for all of them, in one read transaction.
    pub async fn device_states(&self, dids: &[String]) -> Result<Vec<(String, String)>> {
        let sql = "SELECT * FROM devices WHERE did = $1";
        let mut rows: Vec<DeviceRow> = Vec::with_capacity(dids.len());
        match &self.db {
            Db::Sqlite(p) => {
                let mut tx = p.begin().await?;
                for d in dids {
                    if let Some(r) = sqlx::query_as(sql).bind(d).fetch_optional(&mut *tx).await? {
                        rows.push(r);
                    }
                }
                if self.journal_len() > 0 {
                    apply_journal_page(&mut tx, &mut rows).await?;
                }
                tx.commit().await?;
            }
            Db::Postgres(p) => {
                for d in dids {
                    if let Some(r) = sqlx::query_as(sql).bind(d).fetch_optional(p).await? {
                        rows.push(r);
                    }
                }
            }
        }
        Ok(rows.into_iter().map(|r| (r.did, r.state)).collect())
    }

    /// A page of devices (optionally of one product) and the total, states up to date.
    /// How many devices there are, and how many of them are online now.
    pub async fn count_devices_online(&self) -> Result<(i64, i64)> {
        let sql = "SELECT COUNT(*), COUNT(*) FILTER (WHERE online) FROM devices";
        Ok(with_db!(self, p => sqlx::query_as(sql).fetch_one(p).await?))
    }

    /// One page of the devices (of one product when `product_key` is given), oldest first, and
    /// how many there are. With `search`, only the devices whose did or hardware id starts with
    /// it, ASCII letters matched without regard to case (`total` counts those).
    pub async fn list_devices(
        &self,
        product_key: Option<&str>,
        search: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<DeviceRow>, i64)> {
        macro_rules! sql {
            ($backend:ident) => {
                (
                    concat!(
                        "SELECT * FROM devices WHERE ($1 = '' OR product_key = $1) AND ",
                        device_search!($backend, "$2"),
                        " ORDER BY created_at, did LIMIT $3 OFFSET $4"
                    ),
                    concat!(
                        "SELECT COUNT(*) FROM devices WHERE ($1 = '' OR product_key = $1) AND ",
                        device_search!($backend, "$2")
                    ),
                )
            };
        }
        let pk = product_key.unwrap_or("");
        let pattern = prefix_pattern(search);
        match &self.db {
            Db::Sqlite(p) => {
                let (sql, count) = sql!(sqlite);
                let journal = self.journal_len() > 0;
                let mut tx = p.begin().await?;
                let mut rows: Vec<DeviceRow> = sqlx::query_as(sql)
                    .bind(pk)
                    .bind(&pattern)
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&mut *tx)
                    .await?;
                let total: i64 = sqlx::query_scalar(count)
                    .bind(pk)
                    .bind(&pattern)
                    .fetch_one(&mut *tx)
                    .await?;
                if journal {
                    apply_journal_page(&mut tx, &mut rows).await?;
                }
                tx.commit().await?;
                Ok((rows, total))
            }
            Db::Postgres(p) => {
                let (sql, count) = sql!(postgres);
                Ok((
                    sqlx::query_as(sql)
                        .bind(pk)
                        .bind(&pattern)
                        .bind(limit)
                        .bind(offset)
                        .fetch_all(p)
                        .await?,
                    sqlx::query_scalar(count)
                        .bind(pk)
                        .bind(&pattern)
                        .fetch_one(p)
                        .await?,
                ))
            }
        }
    }

    /// The product of each known device among `dids` (unknown ones are left out).
    pub async fn device_products(&self, dids: &[String]) -> Result<Vec<(String, String)>> {
        let sql = "SELECT did, product_key FROM devices WHERE did = $1";
        let mut out = Vec::with_capacity(dids.len());
        with_db!(self, p => {
            for d in dids {
                if let Some(row) = sqlx::query_as::<_, (String, String)>(sql).bind(d).fetch_optional(p).await? {
                    out.push(row);
                }
            }
        });
        Ok(out)
    }
}
