//! The only crate that speaks SQL. One [`Store`] over SQLite (the embedded default) and PostgreSQL,
//! chosen at run time from the URL. Every query is parameterised; the same SQL text (with `$n`
//! placeholders, which both engines accept) runs on both backends, and the `with_db!` macro expands
//! each body once per pool type. Where the dialects differ, a statement's two texts sit side by
//! side in its domain's file (`PerBackend`). Schemas live in `migrations/sqlite` and
//! `migrations/postgres`.
//!
//! This file owns the handle: [`Store`], [`StoreError`], opening and migrating, and `with_db!`.
//! Each domain's statements and row types are in a file of their own (`devices`, `reports`,
//! `accounts`, `bindings`, `developers`, `enterprises`, `access_keys`, `audit`, `oauth`, `events`,
//! `webhooks`, `quotas`, `invitations`, `products`, `factory`, `settings`, `nonces`, `at_rest`,
//! `erasure`),
//! re-exported here so callers name everything `rampart_store::X`.
//!
//! This crate knows rows, not rules: validation, crypto and authorisation live in `rampart-core`.

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::str::FromStr;
use std::time::Duration;

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
    /// Something this backend cannot do (the message says what to use instead).
    #[error("{0}")]
    Unsupported(String),
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
            $crate::Db::Sqlite($pool) => $body,
            $crate::Db::Postgres($pool) => $body,
        }
    };
}

/// A transaction that will write. On SQLite it takes the write lock at its start (`BEGIN
/// IMMEDIATE`, waiting up to the busy timeout): a deferred transaction that reads first and
/// writes later fails at once with "database is locked" when another connection committed in
/// between, and no busy timeout helps. PostgreSQL has no such upgrade.
pub(crate) trait BeginWrite {
    type Db: sqlx::Database;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, Self::Db>>> + Send;
}

impl BeginWrite for SqlitePool {
    type Db = sqlx::Sqlite;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.begin_with("BEGIN IMMEDIATE").await?)
    }
}

impl BeginWrite for PgPool {
    type Db = sqlx::Postgres;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        Ok(self.begin().await?)
    }
}

mod access_keys;
mod accounts;
mod admin_tokens;
pub mod at_rest;
mod audit;
mod backup;
mod bindings;
mod certificates;
mod commands;
mod developers;
mod devices;
mod enterprises;
mod erasure;
mod events;
mod factory;
mod invitations;
mod nonces;
mod oauth;
mod ota;
mod products;
mod quotas;
mod reports;
mod settings;
mod shadow;
mod uploads;
mod webhooks;
pub use access_keys::*;
pub use accounts::*;
pub use admin_tokens::*;
pub use audit::*;
pub use bindings::*;
pub use certificates::*;
pub use commands::*;
pub use developers::*;
pub use devices::*;
pub use enterprises::*;
pub use erasure::*;
pub use events::*;
pub use factory::*;
pub use invitations::*;
pub use oauth::*;
pub use ota::*;
pub use products::*;
pub use quotas::*;
pub use reports::*;
pub use shadow::*;
pub use webhooks::*;

fn map_conflict(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict,
        _ => StoreError::Db(e),
    }
}

/// Serialise a value (rows, ids) to JSON text for a statement that takes its rows as one JSON
/// array; an encoding failure is a database encode error.
fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Db(sqlx::Error::Encode(Box::new(e))))
}

/// One statement in each backend's dialect, side by side, where the engines differ (SQLite's JSON
/// functions against PostgreSQL's arrays and `jsonb`). Most statements have one text for both.
#[derive(Debug, Clone, Copy)]
struct PerBackend {
    sqlite: &'static str,
    postgres: &'static str,
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

/// How [`Store::open_postgres_with`] connects and migrates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostgresOptions {
    /// Connections of the pool (the server's connections are shared: tests that open many stores
    /// at once keep each pool small).
    pub max_connections: u32,
    /// The schema is this store's alone (a test's own): nobody else migrates it at the same time,
    /// so migrating skips the database-wide advisory lock, which would otherwise queue every
    /// schema's migrations behind each other. Never set it for a schema that nodes share.
    pub own_schema: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            max_connections: 16,
            own_schema: false,
        }
    }
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
        // What the API deletes (accounts, codes, tokens, erased users) is overwritten with zeros,
        // not left in free pages where a copy of the file would still show it. The report
        // writer's connection keeps SQLite's default: it deletes the whole journal every second.
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts.clone().pragma("secure_delete", "ON"))
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
        Self::open_postgres_with(opts, PostgresOptions::default()).await
    }

    /// [`Store::open_postgres`] with pool and migration options.
    pub async fn open_postgres_with(opts: PgConnectOptions, o: PostgresOptions) -> Result<Store> {
        let pool = PgPoolOptions::new()
            .max_connections(o.max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        let mut migrator = sqlx::migrate!("migrations/postgres");
        migrator.set_locking(!o.own_schema);
        migrator.run(&pool).await?;
        Ok(Store {
            db: Db::Postgres(pool),
            report_writer: None,
            pending: None,
        })
    }

    pub fn backend(&self) -> &'static str {
        with_db!(self, _p => if matches!(self.db, Db::Sqlite(_)) { "sqlite" } else { "postgres" })
    }

    /// The newest migration applied to the database: the schema's version.
    pub async fn schema_version(&self) -> Result<i64> {
        let sql = "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success";
        Ok(with_db!(self, p => sqlx::query_scalar(sql).fetch_one(p).await?))
    }

    pub async fn close(&self) {
        if let Some(w) = &self.report_writer {
            w.close().await;
        }
        with_db!(self, p => p.close().await)
    }
}
