//! The store suite: one test per behaviour, each run against both backends.
//!
//! A case is an `async fn name(s: Store)` that starts from an empty, migrated store and creates the
//! rows it needs with the small helpers below. `store_cases!` turns each case of a module into two
//! tests, `sqlite::name` (a fresh database file of its own) and `postgres::name` (one of a few
//! slot schemas in `RAMPART_TEST_POSTGRES_URL`, held alone for the case and first reset to what a
//! freshly migrated schema holds; skipped with a message when the variable is unset). Cases share
//! nothing, so they pass or fail alone and in any order. The suite never touches a schema other
//! than its slots (and a scratch one that is rolled back), and never leaves a case's data behind
//! for the next case to see.
//!
//! PostgreSQL connections are shared with everything else on the server: each case's pool is kept
//! small and closed at the end, and at most `PG_SLOTS` cases, across all runs on the database, hold
//! a slot at a time.

/// Two tests per case: `sqlite::<case>` and `postgres::<case>`, in the module that invokes it.
macro_rules! store_cases {
    ($($case:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    $crate::on_sqlite(super::$case).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    $crate::on_postgres(stringify!($case), super::$case).await;
                }
            )+
        }
    };
}

mod access_keys;
mod accounts;
mod admin_tokens;
mod at_rest;
mod audit;
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
mod no_string_sql;
mod nonces;
mod oauth;
mod ota;
mod products;
mod quotas;
mod reports;
mod settings;
mod shadow;
mod webhooks;

use rampart_store::*;
use sqlx::{Connection, Row};
use std::future::Future;
use std::str::FromStr;
use tokio::sync::{OnceCell, Semaphore};

/// Connections of one case's PostgreSQL pool. The concurrency cases still race many tasks over
/// them; the cap keeps parallel cases within the server's `max_connections` (100 by default).
const PG_POOL: u32 = 4;
/// Schemas `store_case_0` … `store_case_{PG_SLOTS - 1}`: the only ones the suite ever creates. They
/// stay between runs (migrated once, emptied before each case), so nothing accumulates and no case
/// pays for creating, migrating and dropping a schema. Runs that share the database share the
/// slots, which also bounds the connections they hold together (`PG_POOL` + 1 per slot).
const PG_SLOTS: i32 = 8;
/// First key of the advisory locks that mark a slot as taken (two-key form: `PG_SLOT_LOCK`, slot).
const PG_SLOT_LOCK: i32 = 0x5241_4d50;
/// Cases of this process that hold or wait for a slot at a time.
static PG_CASES: Semaphore = Semaphore::const_new(PG_SLOTS as usize);
/// What a freshly migrated schema contains, learnt once per process.
static PG_FRESH: OnceCell<Fresh> = OnceCell::const_new();
static PG_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Run `case` on a fresh SQLite file.
async fn on_sqlite<F, Fut>(case: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_sqlite(&dir.path().join("t.db")).await.unwrap();
    assert_eq!(s.backend(), "sqlite");
    case(s.clone()).await;
    s.close().await;
}

/// Run `case` in a slot schema of the PostgreSQL database named by `RAMPART_TEST_POSTGRES_URL`,
/// migrated and reset to exactly what a freshly migrated schema holds. The slot is held through
/// an advisory lock of this case's admin connection, and given back whether the case passes or
/// panics (the server also drops the lock if the connection dies); a panic is then passed on.
async fn on_postgres<F, Fut>(name: &str, case: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Ok(url) = std::env::var("RAMPART_TEST_POSTGRES_URL") else {
        eprintln!("skipping {name}: RAMPART_TEST_POSTGRES_URL is not set");
        return;
    };
    let _permit = PG_CASES.acquire().await.unwrap();
    let admin_opts = sqlx::postgres::PgConnectOptions::from_str(&url)
        .unwrap()
        .options([("synchronous_commit", "off")]);
    let mut admin = sqlx::PgConnection::connect_with(&admin_opts).await.unwrap();
    let fresh = PG_FRESH.get_or_init(|| Fresh::learn(&mut admin)).await;
    let slot = take_slot(&mut admin).await;
    let schema = format!("store_case_{slot}");
    let s = open_slot(&mut admin, &url, &schema).await;
    reset_slot(&mut admin, &schema, fresh).await;
    let outcome = tokio::spawn(case(s.clone())).await;
    s.close().await;
    sqlx::query("SELECT pg_advisory_unlock($1, $2)")
        .bind(PG_SLOT_LOCK)
        .bind(slot)
        .execute(&mut admin)
        .await
        .unwrap();
    let _ = admin.close().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Lock the first free slot; when other runs hold them all, wait for one.
async fn take_slot(admin: &mut sqlx::PgConnection) -> i32 {
    loop {
        for slot in 0..PG_SLOTS {
            let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
                .bind(PG_SLOT_LOCK)
                .bind(slot)
                .fetch_one(&mut *admin)
                .await
                .unwrap();
            if taken {
                return slot;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A store on `schema`, created and migrated as needed. A schema whose migrations do not match
/// these (a migration file changed, or another checkout applied one this one lacks) is dropped and
/// made anew. The caller holds the slot's lock, so nobody else migrates the schema meanwhile.
async fn open_slot(admin: &mut sqlx::PgConnection, url: &str, schema: &str) -> Store {
    let opts = sqlx::postgres::PgConnectOptions::from_str(url)
        .unwrap()
        .options([
            ("search_path", schema),
            // Every case starts by emptying its schema: no commit needs to wait for the disk.
            ("synchronous_commit", "off"),
        ]);
    let options = PostgresOptions {
        max_connections: PG_POOL,
        own_schema: true,
    };
    let create = format!("CREATE SCHEMA IF NOT EXISTS {}", ident(schema));
    sqlx::raw_sql(&create).execute(&mut *admin).await.unwrap();
    let s = match Store::open_postgres_with(opts.clone(), options).await {
        Ok(s) => s,
        Err(StoreError::Migrate(e)) => {
            eprintln!("making {schema} anew: its migrations do not match ({e})");
            let drop = format!("DROP SCHEMA {} CASCADE", ident(schema));
            sqlx::raw_sql(&drop).execute(&mut *admin).await.unwrap();
            sqlx::raw_sql(&create).execute(&mut *admin).await.unwrap();
            Store::open_postgres_with(opts, options).await.unwrap()
        }
        Err(e) => panic!("opening {schema}: {e}"),
    };
    assert_eq!(s.backend(), "postgres");
    s
}

/// Empty every table of `schema` but the migration record, then put back the rows and sequence
/// positions that the migrations leave, so the case sees what a freshly migrated schema holds.
///
/// Tables are emptied with `DELETE`, referencing tables first: the cases leave a handful of rows,
/// and deleting them (or finding a table empty) takes microseconds, where `TRUNCATE` makes new
/// files for every table and index and took about a second per case with eight cases at once.
/// One batch, so it is one transaction and one round trip. The tables are those a fresh schema
/// has (the slot's migrations were just checked to be the same), not listed again: the catalog of a
/// shared test database grows with every schema anyone made, and reading it costs more than the
/// reset.
async fn reset_slot(admin: &mut sqlx::PgConnection, schema: &str, fresh: &Fresh) {
    let q = |name: &str| format!("{}.{}", ident(schema), ident(name));
    let mut sql = String::new();
    for table in &fresh.delete_order {
        sql += &format!("DELETE FROM {};\n", q(table));
    }
    // Tables in a cycle of foreign keys go in one truncation, which does not mind the order.
    if !fresh.in_cycle.is_empty() {
        let rest: Vec<String> = fresh.in_cycle.iter().map(|t| q(t)).collect();
        sql += &format!("TRUNCATE {} CASCADE;\n", rest.join(", "));
    }
    for (table, rows) in &fresh.rows {
        let t = q(table);
        sql += &format!(
            "INSERT INTO {t} SELECT * FROM jsonb_populate_recordset(NULL::{t}, {});\n",
            literal(rows)
        );
    }
    for (sequence, value, called) in &fresh.sequences {
        sql += &format!(
            "SELECT setval({}::regclass, {value}, {called});\n",
            literal(&q(sequence))
        );
    }
    sqlx::raw_sql(&sql).execute(&mut *admin).await.unwrap();
}

/// What a freshly migrated schema is: its tables (but the migration record) in an order that
/// empties them without breaking a foreign key, the rows migrations seed (each table's as one JSON array), and every sequence's
/// position.
struct Fresh {
    delete_order: Vec<String>,
    in_cycle: Vec<String>,
    rows: Vec<(String, String)>,
    sequences: Vec<(String, i64, bool)>,
}

impl Fresh {
    /// Run the migrations in a scratch schema inside a transaction that is rolled back, and read
    /// what they left. Learnt rather than written down, so a migration that seeds rows, adds a
    /// sequence or a foreign key later is reset right too.
    async fn learn(admin: &mut sqlx::PgConnection) -> Fresh {
        let scratch = format!("store_case_fresh_{}", std::process::id());
        let mut tx = admin.begin().await.unwrap();
        let setup = format!(
            "CREATE SCHEMA {s}; SET LOCAL search_path TO {s};",
            s = ident(&scratch)
        );
        sqlx::raw_sql(&setup).execute(&mut *tx).await.unwrap();
        for m in PG_MIGRATIONS.iter() {
            if m.migration_type.is_up_migration() {
                sqlx::raw_sql(&m.sql).execute(&mut *tx).await.unwrap();
            }
        }
        // The migrations ran outside the migrator: the scratch schema has no migration record.
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY tablename",
        )
        .bind(&scratch)
        .fetch_all(&mut *tx)
        .await
        .unwrap();
        let references: Vec<(String, String)> = sqlx::query_as(
            "SELECT c.conrelid::regclass::text, c.confrelid::regclass::text FROM pg_constraint c \
             JOIN pg_namespace n ON n.oid = c.connamespace \
             WHERE c.contype = 'f' AND n.nspname = $1 AND c.conrelid <> c.confrelid",
        )
        .bind(&scratch)
        .fetch_all(&mut *tx)
        .await
        .unwrap();
        let mut rows = Vec::new();
        for table in &tables {
            let sql = format!(
                "SELECT jsonb_agg(to_jsonb(t))::text FROM {}.{} t",
                ident(&scratch),
                ident(table)
            );
            let seeded: Option<String> =
                sqlx::query_scalar(&sql).fetch_one(&mut *tx).await.unwrap();
            if let Some(seeded) = seeded {
                rows.push((table.clone(), seeded));
            }
        }
        let sequences = sqlx::query(
            "SELECT sequencename::text, COALESCE(last_value, start_value), last_value IS NOT NULL \
             FROM pg_sequences WHERE schemaname = $1 ORDER BY sequencename",
        )
        .bind(&scratch)
        .fetch_all(&mut *tx)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
        tx.rollback().await.unwrap();
        // `regclass` names tables as the search path (the scratch schema) lets them be found: bare.
        let references: Vec<(String, String)> = references
            .into_iter()
            .map(|(from, to)| (bare(&from), bare(&to)))
            .collect();
        let (delete_order, in_cycle) = delete_order(tables, &references);
        Fresh {
            delete_order,
            in_cycle,
            rows,
            sequences,
        }
    }
}

/// `tables` ordered so each comes before every table it references (`(from, to)` pairs), and
/// apart, the tables that a cycle of references leaves unordered.
fn delete_order(
    mut tables: Vec<String>,
    references: &[(String, String)],
) -> (Vec<String>, Vec<String>) {
    let mut order = Vec::new();
    while let Some(i) = tables.iter().position(|t| {
        // Nothing still waiting references `t`.
        !references
            .iter()
            .any(|(from, to)| to == t && tables.contains(from))
    }) {
        order.push(tables.remove(i));
    }
    (order, tables)
}

/// A table name as `regclass` prints it, without quotes.
fn bare(name: &str) -> String {
    name.trim_matches('"').replace("\"\"", "\"")
}

/// The slot reset itself: a slot that cases have written to (rows, the audit chain's head, every
/// sequence) holds, once reset, exactly what a freshly migrated schema holds.
#[tokio::test]
async fn a_reset_slot_holds_what_a_fresh_schema_holds() {
    let Ok(url) = std::env::var("RAMPART_TEST_POSTGRES_URL") else {
        eprintln!("skipping the slot reset check: RAMPART_TEST_POSTGRES_URL is not set");
        return;
    };
    let _permit = PG_CASES.acquire().await.unwrap();
    let opts = sqlx::postgres::PgConnectOptions::from_str(&url).unwrap();
    let mut admin = sqlx::PgConnection::connect_with(&opts).await.unwrap();
    let fresh = PG_FRESH.get_or_init(|| Fresh::learn(&mut admin)).await;
    let slot = take_slot(&mut admin).await;
    let schema = format!("store_case_{slot}");
    let s = open_slot(&mut admin, &url, &schema).await;
    // From the state a case starts in (the slot's last user may have left anything).
    reset_slot(&mut admin, &schema, fresh).await;
    devices_of(&s, "pk", &[("d1", "hw1")]).await;
    let entry = AuditRow {
        action: "check".into(),
        ..Default::default()
    };
    s.append_audit(&entry, |prev| format!("after {prev}"))
        .await
        .unwrap();
    let q = |name: &str| format!("{}.{}", ident(&schema), ident(name));
    for (sequence, _, _) in &fresh.sequences {
        let advance = format!("SELECT nextval({}::regclass)", literal(&q(sequence)));
        sqlx::raw_sql(&advance).execute(&mut admin).await.unwrap();
    }
    s.close().await;

    reset_slot(&mut admin, &schema, fresh).await;
    let mut tables = fresh.delete_order.clone();
    tables.extend(fresh.in_cycle.iter().cloned());
    assert!(tables.contains(&"devices".to_string()));
    for table in &tables {
        let sql = format!("SELECT jsonb_agg(to_jsonb(t))::text FROM {} t", q(table));
        let now: Option<String> = sqlx::query_scalar(&sql)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        let seeded = fresh.rows.iter().find(|(t, _)| t == table);
        assert_eq!(now.as_ref(), seeded.map(|(_, rows)| rows), "{table}");
    }
    assert!(fresh.rows.iter().any(|(t, _)| t == "audit_chain"));
    for (sequence, value, called) in &fresh.sequences {
        let sql = format!("SELECT last_value, is_called FROM {}", q(sequence));
        let now: (i64, bool) = sqlx::query_as(&sql).fetch_one(&mut admin).await.unwrap();
        assert_eq!(now, (*value, *called), "{sequence}");
    }
    admin.close().await.unwrap();
}

/// `name` quoted as an SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` quoted as an SQL string literal (the server's standard strings: only `'` is special).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

// ---- rows the cases build on ----

fn product(pk: &str) -> ProductRow {
    ProductRow {
        product_key: pk.into(),
        name: "lamp".into(),
        secret_enc: vec![1, 2, 3],
        identity: rampart_store::IdentityFlags {
            dynamic_registration: true,
            ..Default::default()
        },
        report_limit_per_min: 60,
        model: "[]".into(),
        enterprise_id: None,
        created_at: 1,
    }
}

fn device(did: &str, pk: &str, hw: &str) -> DeviceRow {
    DeviceRow {
        did: did.into(),
        product_key: pk.into(),
        hardware_id: hw.into(),
        mode: "product".into(),
        secret_enc: vec![9],
        passcode_enc: vec![8],
        created_at: 5,
        online: false,
        last_seen: None,
        state: "{}".into(),
    }
}

fn app(app_id: &str, product_keys: &str) -> AppRow {
    AppRow {
        app_id: app_id.into(),
        name: "Lamp".into(),
        secret_hash: "h".into(),
        product_keys: product_keys.into(),
        created_at: 1,
    }
}

fn user(id: &str, app_id: &str, email: Option<&str>, phone: Option<&str>) -> UserRow {
    UserRow {
        user_id: id.into(),
        email: email.map(Into::into),
        phone: phone.map(Into::into),
        password_hash: "$argon2id$x".into(),
        active: false,
        app_id: app_id.into(),
        created_at: 10,
        failed_count: 0,
        first_failed_at: 0,
        locked_until: 0,
        lockouts: 0,
    }
}

fn enterprise(id: &str) -> EnterpriseRow {
    EnterpriseRow {
        enterprise_id: id.into(),
        name: id.into(),
        suspended: false,
        created_by: "operator".into(),
        created_at: 1,
    }
}

/// A product `pk` and, for each `(did, hardware id)`, a device of it.
async fn devices_of(s: &Store, pk: &str, devices: &[(&str, &str)]) {
    s.insert_product(&product(pk)).await.unwrap();
    for (did, hw) in devices {
        s.insert_device(&device(did, pk, hw)).await.unwrap();
    }
}

/// A report of `did` at `ts` with `values` (a JSON object).
fn report(did: &str, ts: i64, values: &str) -> ReportRow {
    ReportRow {
        did: did.into(),
        ts,
        values: serde_json::from_str(values).unwrap(),
    }
}

/// A device's latest state as JSON.
async fn state(s: &Store, did: &str) -> serde_json::Value {
    serde_json::from_str(&s.get_device(did).await.unwrap().unwrap().state).unwrap()
}
