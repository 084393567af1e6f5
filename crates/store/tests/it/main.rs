//! The store suite: one test per behaviour, each run against both backends.
//!
//! A case is an `async fn name(s: Store)` that starts from an empty, migrated store and creates the
//! rows it needs with the small helpers below. `store_cases!` turns each case of a module into two
//! tests, `sqlite::name` (a fresh database file of its own) and `postgres::name` (a fresh schema of
//! its own in `RAMPART_TEST_POSTGRES_URL`, dropped afterwards; skipped with a message when the
//! variable is unset). Cases share nothing, so they pass or fail alone and in any order.
//!
//! PostgreSQL connections are shared with everything else on the server: each case's pool is kept
//! small and closed at the end, and at most `PG_CASES_AT_ONCE` cases hold a schema at a time.

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
mod at_rest;
mod audit;
mod bindings;
mod developers;
mod devices;
mod enterprises;
mod events;
mod factory;
mod invitations;
mod no_string_sql;
mod nonces;
mod oauth;
mod products;
mod quotas;
mod reports;
mod settings;
mod webhooks;

use rampart_store::*;
use sqlx::Connection;
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Semaphore;

/// Connections of one case's PostgreSQL pool. The concurrency cases still race many tasks over
/// them; the cap keeps parallel cases within the server's `max_connections` (100 by default).
const PG_POOL: u32 = 4;
/// PostgreSQL cases holding a schema (and `PG_POOL` + 1 connections) at the same time.
const PG_CASES_AT_ONCE: usize = 8;
static PG_CASES: Semaphore = Semaphore::const_new(PG_CASES_AT_ONCE);
static NEXT_SCHEMA: AtomicU64 = AtomicU64::new(0);

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

/// Run `case` in a fresh schema of the PostgreSQL database named by `RAMPART_TEST_POSTGRES_URL`.
/// The schema is dropped whether the case passes or panics; a panic is then passed on.
async fn on_postgres<F, Fut>(name: &str, case: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Ok(url) = std::env::var("RAMPART_TEST_POSTGRES_URL") else {
        eprintln!("skipping {name}: RAMPART_TEST_POSTGRES_URL is not set");
        return;
    };
    let _slot = PG_CASES.acquire().await.unwrap();
    let schema = format!(
        "t_{}_{}_{}",
        std::process::id(),
        NEXT_SCHEMA.fetch_add(1, Ordering::Relaxed),
        rand_suffix()
    );
    let admin_opts = sqlx::postgres::PgConnectOptions::from_str(&url)
        .unwrap()
        .options([("synchronous_commit", "off")]);
    let mut admin = sqlx::PgConnection::connect_with(&admin_opts).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let opts = sqlx::postgres::PgConnectOptions::from_str(&url)
        .unwrap()
        .options([
            ("search_path", schema.as_str()),
            // A case's data dies with its schema: no commit of it needs to wait for the disk.
            ("synchronous_commit", "off"),
        ]);
    let options = PostgresOptions {
        max_connections: PG_POOL,
        own_schema: true,
    };
    let s = Store::open_postgres_with(opts, options).await.unwrap();
    assert_eq!(s.backend(), "postgres");
    let outcome = tokio::spawn(case(s.clone())).await;
    s.close().await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut admin)
        .await
        .unwrap();
    let _ = admin.close().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}

// ---- rows the cases build on ----

fn product(pk: &str) -> ProductRow {
    ProductRow {
        product_key: pk.into(),
        name: "lamp".into(),
        secret_enc: vec![1, 2, 3],
        dynamic_registration: true,
        allowlist: false,
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
