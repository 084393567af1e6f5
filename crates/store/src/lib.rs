//! The only crate that speaks SQL. One [`Store`] over SQLite (the embedded default) and PostgreSQL,
//! chosen at run time from the URL. Every query is parameterised; the same SQL text (with `$n`
//! placeholders, which both engines accept) runs on both backends, and the `with_db!` macro expands
//! each body once per pool type. Schemas live in `migrations/sqlite` and `migrations/postgres`.
//!
//! This crate knows rows, not rules: validation, crypto and authorisation live in `rampart-core`.

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::str::FromStr;
use std::time::Duration;

mod rows;
pub use rows::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("record already exists")]
    Conflict,
    #[error("invalid store URL: {0}")]
    Url(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone, Debug)]
enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
    /// SQLite: one connection kept for report batches, so its page cache stays warm between
    /// commits (a pooled connection's cache is dropped whenever another connection wrote).
    report_writer: Option<SqlitePool>,
    /// SQLite: the report journal's rows merged by device (see `reports`).
    pending: Option<std::sync::Arc<std::sync::Mutex<reports::Pending>>>,
}

macro_rules! with_db {
    ($self:expr, $pool:ident => $body:expr) => {
        match &$self.db {
            Db::Sqlite($pool) => $body,
            Db::Postgres($pool) => $body,
        }
    };
}

mod accounts;
pub mod at_rest;
mod developers;
mod enterprise_api;
mod events;
mod invitations;
mod oauth;
mod quotas;
mod reports;
mod webhooks;
pub use developers::*;
pub use enterprise_api::*;
pub use events::*;
pub use invitations::*;
pub use oauth::*;
pub use quotas::*;
pub use webhooks::*;

fn map_conflict(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict,
        _ => StoreError::Db(e),
    }
}

/// Tuning that does not change what is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// SQLite: page cache of each pooled (reading) connection, KiB. Pages missing from it are read
    /// from the operating system's file cache, so a small cache costs a system call, not a disk
    /// read, on a warm machine.
    pub sqlite_cache_kib: u32,
    /// SQLite: page cache of the report writer's connection, KiB (the history index pages that a
    /// journal compaction touches, and the device rows that presence changes update).
    pub sqlite_writer_cache_kib: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            sqlite_cache_kib: 1024,
            sqlite_writer_cache_kib: 16 * 1024,
        }
    }
}

impl Store {
    /// Open `sqlite://PATH` or `postgres://...` and run migrations.
    pub async fn open(url: &str) -> Result<Store> {
        Self::open_with(url, StoreOptions::default()).await
    }

    /// [`Store::open`] with tuning options.
    pub async fn open_with(url: &str, options: StoreOptions) -> Result<Store> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts =
                PgConnectOptions::from_str(url).map_err(|e| StoreError::Url(e.to_string()))?;
            Self::open_postgres(opts).await
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            Self::open_sqlite_with(std::path::Path::new(path), options).await
        } else {
            Err(StoreError::Url(format!(
                "unsupported scheme in `{url}` (sqlite:// or postgres://)"
            )))
        }
    }

    /// Open (creating if needed) an SQLite database file.
    pub async fn open_sqlite(path: &std::path::Path) -> Result<Store> {
        Self::open_sqlite_with(path, StoreOptions::default()).await
    }

    async fn open_sqlite_with(path: &std::path::Path, options: StoreOptions) -> Result<Store> {
        let cache = |kib: u32| format!("-{}", kib.max(64));
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            // Each pooled connection's page cache (negative: KiB). SQLite's default is 2 MiB; the
            // hot rows are few, and memory should go to connections.
            .pragma("cache_size", cache(options.sqlite_cache_kib))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts.clone())
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        // The report writer's connection: a bigger cache (the index pages that history inserts
        // touch), never closed while idle.
        let report_writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts.pragma("cache_size", cache(options.sqlite_writer_cache_kib)))
            .await?;
        let store = Store {
            db: Db::Sqlite(pool),
            report_writer: Some(report_writer),
            pending: Some(Default::default()),
        };
        let recovered = store.recover_journal().await?;
        if recovered > 0 {
            tracing::info!(
                reports = recovered,
                "moved reports journalled before a crash into the history"
            );
        }
        Ok(store)
    }

    /// Connect to PostgreSQL with the given options (a test may set `search_path` to its own schema).
    pub async fn open_postgres(opts: PgConnectOptions) -> Result<Store> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(Store {
            db: Db::Postgres(pool),
            report_writer: None,
            pending: None,
        })
    }

    pub fn backend(&self) -> &'static str {
        with_db!(self, _p => if matches!(self.db, Db::Sqlite(_)) { "sqlite" } else { "postgres" })
    }

    pub async fn close(&self) {
        if let Some(w) = &self.report_writer {
            w.close().await;
        }
        with_db!(self, p => p.close().await)
    }

    // ---- settings ----

    pub async fn get_setting(&self, key: &str) -> Result<Option<String>> {
        let sql = "SELECT value FROM settings WHERE key = $1";
        Ok(with_db!(self, p => sqlx::query_scalar(sql).bind(key).fetch_optional(p).await?))
    }

    /// Insert a setting unless present; true when this call inserted it.
    pub async fn init_setting(&self, key: &str, value: &str) -> Result<bool> {
        let sql = "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING";
        let n = with_db!(self, p => sqlx::query(sql).bind(key).bind(value).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    // ---- products ----

    pub async fn insert_product(&self, r: &ProductRow) -> Result<()> {
        let sql = "INSERT INTO products (product_key, name, secret_enc, dynamic_registration, allowlist, \
                   report_limit_per_min, model, enterprise_id, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
        with_db!(self, p => sqlx::query(sql)
            .bind(&r.product_key).bind(&r.name).bind(&r.secret_enc).bind(r.dynamic_registration)
            .bind(r.allowlist).bind(r.report_limit_per_min).bind(&r.model).bind(&r.enterprise_id)
            .bind(r.created_at)
            .execute(p).await.map_err(map_conflict)?.rows_affected());
        Ok(())
    }

    pub async fn get_product(&self, product_key: &str) -> Result<Option<ProductRow>> {
        let sql = "SELECT * FROM products WHERE product_key = $1";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(product_key).fetch_optional(p).await?))
    }

    pub async fn list_products(&self, offset: i64, limit: i64) -> Result<(Vec<ProductRow>, i64)> {
        let sql = "SELECT * FROM products ORDER BY created_at, product_key LIMIT $1 OFFSET $2";
        let count = "SELECT COUNT(*) FROM products";
        Ok(with_db!(self, p => (
            sqlx::query_as(sql).bind(limit).bind(offset).fetch_all(p).await?,
            sqlx::query_scalar(count).fetch_one(p).await?,
        )))
    }

    // ---- allowlist ----

    /// Add hardware ids to a product's allowlist; returns how many were new.
    pub async fn allowlist_add(&self, product_key: &str, ids: &[String], now: i64) -> Result<u64> {
        let sql =
            "INSERT INTO allowlist (product_key, hardware_id, created_at) VALUES ($1, $2, $3) \
                   ON CONFLICT (product_key, hardware_id) DO NOTHING";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            let mut n = 0;
            for id in ids {
                n += sqlx::query(sql).bind(product_key).bind(id).bind(now).execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            Ok(n)
        })
    }

    pub async fn allowlist_contains(&self, product_key: &str, hardware_id: &str) -> Result<bool> {
        let sql = "SELECT COUNT(*) FROM allowlist WHERE product_key = $1 AND hardware_id = $2";
        let n: i64 = with_db!(self, p => sqlx::query_scalar(sql).bind(product_key).bind(hardware_id).fetch_one(p).await?);
        Ok(n > 0)
    }

    // ---- factory identities ----

    /// Store a factory batch and its identities in one transaction.
    pub async fn insert_factory_batch(
        &self,
        batch_id: &str,
        product_key: &str,
        identities: &[(String, Vec<u8>)],
        now: i64,
    ) -> Result<()> {
        let b = "INSERT INTO factory_batches (batch_id, product_key, count, created_at) VALUES ($1, $2, $3, $4)";
        let i = "INSERT INTO factory_identities (serial, product_key, batch_id, secret_enc, created_at) \
                 VALUES ($1, $2, $3, $4, $5)";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(b).bind(batch_id).bind(product_key).bind(identities.len() as i64).bind(now)
                .execute(&mut *tx).await.map_err(map_conflict)?;
            for (serial, secret) in identities {
                sqlx::query(i).bind(serial).bind(product_key).bind(batch_id).bind(secret).bind(now)
                    .execute(&mut *tx).await.map_err(map_conflict)?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    pub async fn get_factory_identity(&self, serial: &str) -> Result<Option<FactoryIdentityRow>> {
        let sql = "SELECT serial, product_key, batch_id, secret_enc FROM factory_identities WHERE serial = $1";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(serial).fetch_optional(p).await?))
    }

    // ---- devices ----

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

    pub async fn insert_device(&self, r: &DeviceRow) -> Result<()> {
        let sql = "INSERT INTO devices (did, product_key, hardware_id, mode, secret_enc, passcode_enc, created_at, \
                   online, last_seen, state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
        with_db!(self, p => sqlx::query(sql)
            .bind(&r.did).bind(&r.product_key).bind(&r.hardware_id).bind(&r.mode).bind(&r.secret_enc)
            .bind(&r.passcode_enc).bind(r.created_at).bind(r.online).bind(r.last_seen).bind(&r.state)
            .execute(p).await.map_err(map_conflict)?.rows_affected());
        Ok(())
    }

    /// Replace a device's secret (re-registration rotates it; the old one stops working at once).
    pub async fn set_device_secret(&self, did: &str, secret_enc: &[u8]) -> Result<()> {
        let sql = "UPDATE devices SET secret_enc = $1 WHERE did = $2";
        with_db!(self, p => sqlx::query(sql).bind(secret_enc).bind(did).execute(p).await?.rows_affected());
        Ok(())
    }

    /// Open (or move) a device's re-provisioning window until `until` (unix ms); false when
    /// there is no such device.
    /// Disable (`on`) or enable a device; false when there is no such device.
    pub async fn set_device_disabled(&self, did: &str, on: bool) -> Result<bool> {
        let sql = "UPDATE devices SET disabled = $1 WHERE did = $2";
        let n = with_db!(self, p => sqlx::query(sql).bind(on).bind(did).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

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

    // ---- nonces ----

    /// Record a nonce for `scope`; false if it was already used (and has not expired).
    pub async fn use_nonce(
        &self,
        scope: &str,
        nonce: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool> {
        let purge = "DELETE FROM nonces WHERE expires_at < $1";
        let ins = "INSERT INTO nonces (scope, nonce, expires_at) VALUES ($1, $2, $3) ON CONFLICT (scope, nonce) DO NOTHING";
        with_db!(self, p => {
            sqlx::query(purge).bind(now).execute(p).await?;
            let n = sqlx::query(ins).bind(scope).bind(nonce).bind(expires_at).execute(p).await?.rows_affected();
            Ok(n == 1)
        })
    }

    // ---- audit (appends: `enterprise_api`, the chain) ----

    pub async fn list_audit(&self, action: Option<&str>, limit: i64) -> Result<Vec<AuditRow>> {
        let sql = "SELECT ts, actor_kind, actor_id, tenant, action, target, source_ip, outcome, detail FROM audit \
                   WHERE ($1 = '' OR action = $1) ORDER BY id DESC LIMIT $2";
        Ok(
            with_db!(self, p => sqlx::query_as(sql).bind(action.unwrap_or("")).bind(limit).fetch_all(p).await?),
        )
    }
}
