//! The columns that hold sealed values, and the one-time rewrites of data at rest: sealed values
//! bound to their place, and the audit chain re-linked under a key.
//!
//! Rows only: how a value is sealed or an entry hashed is decided in `rampart-core`, which passes
//! it in as a function. Each rewrite runs in one transaction that first claims its marker in
//! `settings`, so it runs once even when several processes start together (the loser waits for
//! the winner's commit, then finds the marker and does nothing).

use crate::{AuditEntryRow, Result, Store};

/// A column of sealed values: its table, the table's id column and the column itself, with the
/// two statements of the one-time rewrite as literals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedColumn {
    pub table: &'static str,
    pub id: &'static str,
    pub column: &'static str,
    select: &'static str,
    update: &'static str,
}

macro_rules! sealed_column {
    ($name:ident, $table:literal, $id:literal, $column:literal) => {
        pub const $name: SealedColumn = SealedColumn {
            table: $table,
            id: $id,
            column: $column,
            select: concat!(
                "SELECT ",
                $id,
                ", ",
                $column,
                " FROM ",
                $table,
                " WHERE ",
                $column,
                " IS NOT NULL AND ",
                $id,
                " > $1 ORDER BY ",
                $id,
                " LIMIT $2"
            ),
            update: concat!(
                "UPDATE ",
                $table,
                " SET ",
                $column,
                " = $1 WHERE ",
                $id,
                " = $2"
            ),
        };
    };
}

sealed_column!(PRODUCT_SECRET, "products", "product_key", "secret_enc");
sealed_column!(FACTORY_SECRET, "factory_identities", "serial", "secret_enc");
sealed_column!(DEVICE_SECRET, "devices", "did", "secret_enc");
sealed_column!(DEVICE_PASSCODE, "devices", "did", "passcode_enc");
sealed_column!(OIDC_VERIFIER, "oidc_states", "state_hash", "verifier_enc");
sealed_column!(
    DEVELOPER_TOTP,
    "developers",
    "developer_id",
    "totp_secret_enc"
);
sealed_column!(ACCESS_KEY_SECRET, "access_keys", "key_id", "secret_enc");
sealed_column!(
    ACCESS_KEY_PREV_SECRET,
    "access_keys",
    "key_id",
    "prev_secret_enc"
);
sealed_column!(WEBHOOK_SECRET, "webhooks", "webhook_id", "secret_enc");
sealed_column!(
    FACTORY_CREDENTIAL_SECRET,
    "factory_credentials",
    "credential_id",
    "secret_enc"
);
sealed_column!(OTA_PRIVATE_KEY, "ota_keys", "product_key", "private_enc");

/// Every column that holds sealed values. A new sealed column must be added here, or the
/// one-time rewrite would leave its old values unreadable.
pub const SEALED_COLUMNS: [SealedColumn; 11] = [
    PRODUCT_SECRET,
    FACTORY_SECRET,
    DEVICE_SECRET,
    DEVICE_PASSCODE,
    OIDC_VERIFIER,
    DEVELOPER_TOTP,
    ACCESS_KEY_SECRET,
    ACCESS_KEY_PREV_SECRET,
    WEBHOOK_SECRET,
    FACTORY_CREDENTIAL_SECRET,
    OTA_PRIVATE_KEY,
];

/// What a rewrite did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    /// False when the marker was already there (done before).
    pub ran: bool,
    /// Values or entries rewritten.
    pub rows: u64,
    /// Values the function could not rewrite (left as they were).
    pub skipped: u64,
}

const PAGE: i64 = 1000;

impl Store {
    /// Once (marker `marker` in `settings`): for every value of every [`SEALED_COLUMNS`] column,
    /// `f(column, row id, value)` gives its replacement (`None` leaves it as it is).
    pub async fn rewrite_sealed_once(
        &self,
        marker: &str,
        now_ms: i64,
        mut f: impl FnMut(&SealedColumn, &str, &[u8]) -> Option<Vec<u8>> + Send,
    ) -> Result<Rewritten> {
        let claim =
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING";
        let now = now_ms.to_string();
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            let claimed = sqlx::query(claim).bind(marker).bind(&now).execute(&mut *tx).await?.rows_affected();
            let mut out = Rewritten { ran: claimed == 1, ..Default::default() };
            if !out.ran {
                tx.rollback().await?;
                return Ok(out);
            }
            for c in SEALED_COLUMNS {
                let mut after = String::new();
                loop {
                    let page: Vec<(String, Vec<u8>)> = sqlx::query_as(c.select)
                        .bind(&after).bind(PAGE).fetch_all(&mut *tx).await?;
                    let Some(last) = page.last() else { break };
                    after = last.0.clone();
                    for (id, value) in &page {
                        match f(&c, id, value) {
                            Some(new) => {
                                sqlx::query(c.update).bind(&new).bind(id).execute(&mut *tx).await?;
                                out.rows += 1;
                            }
                            None => out.skipped += 1,
                        }
                    }
                }
            }
            tx.commit().await?;
            Ok(out)
        })
    }

    /// Once (marker `marker` in `settings`): re-link the whole audit chain, oldest entry first.
    /// `f(entry, new previous hash)` gives the entry's new hash (`None` leaves the entry as it is
    /// and out of the chain: entries from before the chain existed). The chain head is held for
    /// the whole rewrite, so no append interleaves, and ends at the last new hash.
    pub async fn relink_audit_once(
        &self,
        marker: &str,
        now_ms: i64,
        genesis: &str,
        mut f: impl FnMut(&AuditEntryRow, &str) -> Option<String> + Send,
    ) -> Result<Rewritten> {
        let claim =
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING";
        let lock = "UPDATE audit_chain SET entries = entries WHERE id = 1";
        let select = "SELECT id, ts, actor_kind, actor_id, tenant, action, target, source_ip, outcome, detail, \
                      prev_hash, hash FROM audit WHERE id > $1 ORDER BY id LIMIT $2";
        let update = "UPDATE audit SET prev_hash = $1, hash = $2 WHERE id = $3";
        let head = "UPDATE audit_chain SET last_hash = $1 WHERE id = 1";
        let now = now_ms.to_string();
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(lock).execute(&mut *tx).await?;
            let claimed = sqlx::query(claim).bind(marker).bind(&now).execute(&mut *tx).await?.rows_affected();
            let mut out = Rewritten { ran: claimed == 1, ..Default::default() };
            if !out.ran {
                tx.rollback().await?;
                return Ok(out);
            }
            let mut prev = genesis.to_owned();
            let mut after = 0i64;
            loop {
                let page: Vec<AuditEntryRow> = sqlx::query_as(select)
                    .bind(after).bind(PAGE).fetch_all(&mut *tx).await?;
                let Some(last) = page.last() else { break };
                after = last.id;
                for e in &page {
                    match f(e, &prev) {
                        Some(hash) => {
                            sqlx::query(update).bind(&prev).bind(&hash).bind(e.id).execute(&mut *tx).await?;
                            prev = hash;
                            out.rows += 1;
                        }
                        None => out.skipped += 1,
                    }
                }
            }
            sqlx::query(head).bind(&prev).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(out)
        })
    }
}
