//! Developer accounts: developers, their token families, TOTP steps and recovery codes, and the
//! products and devices a developer may read (personally owned, or through an enterprise that is
//! not suspended). Rules (roles, expiry, TOTP windows) live in `rampart-core`; this file never
//! sees a clear password, token or TOTP secret.

use crate::devices::{device_search, prefix_pattern};
use crate::reports::apply_journal_page;
use crate::{map_conflict, Db, DeviceRow, LockState, ProductRow, Result, Store};

/// A developer (a manufacturer's person). `email` is stored normalised.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DeveloperRow {
    pub developer_id: String,
    pub email: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub active: bool,
    pub suspended: bool,
    pub created_at: i64,
    pub failed_count: i64,
    pub first_failed_at: i64,
    pub locked_until: i64,
    pub lockouts: i64,
    /// The TOTP secret sealed by the caller; set at enrolment, before confirmation.
    pub totp_secret_enc: Option<Vec<u8>>,
    pub totp_enabled: bool,
    /// The last TOTP time step accepted (a step is never accepted twice).
    pub totp_last_step: i64,
}

impl DeveloperRow {
    pub fn lock_state(&self) -> LockState {
        LockState {
            failed_count: self.failed_count,
            first_failed_at: self.first_failed_at,
            locked_until: self.locked_until,
            lockouts: self.lockouts,
        }
    }
}

/// The session behind a developer token.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DeveloperSessionRow {
    pub developer_id: String,
    pub family_id: String,
    pub expires_at: i64,
}

/// What presenting a developer refresh token did (see [`crate::RefreshUse`]).
#[derive(Debug, Clone, PartialEq)]
pub enum DeveloperRefresh {
    Rotated(DeveloperSessionRow),
    Reused(DeveloperSessionRow),
    Invalid,
}

/// The products developer `$1` may read (`$2` is `false`), as a constant SQL fragment.
macro_rules! readable_products {
    () => {
        "(p.owner_developer_id = $1 OR p.enterprise_id IN \
         (SELECT m.enterprise_id FROM enterprise_members m JOIN enterprises e \
          ON e.enterprise_id = m.enterprise_id WHERE m.developer_id = $1 AND e.suspended = $2))"
    };
}

impl Store {
    /// Insert a developer; `Conflict` when the e-mail is taken.
    pub async fn insert_developer(&self, r: &DeveloperRow) -> Result<()> {
        let sql = "INSERT INTO developers (developer_id, email, password_hash, active, suspended, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6)";
        with_db!(self, p => sqlx::query(sql).bind(&r.developer_id).bind(&r.email).bind(&r.password_hash)
            .bind(r.active).bind(r.suspended).bind(r.created_at)
            .execute(p).await.map_err(map_conflict)?.rows_affected());
        Ok(())
    }

    pub async fn get_developer(&self, developer_id: &str) -> Result<Option<DeveloperRow>> {
        let sql = "SELECT * FROM developers WHERE developer_id = $1";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(developer_id).fetch_optional(p).await?))
    }

    pub async fn find_developer(&self, email: &str) -> Result<Option<DeveloperRow>> {
        let sql = "SELECT * FROM developers WHERE email = $1";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(email).fetch_optional(p).await?))
    }

    /// A page of developers, oldest first, optionally only the one with `email`; and the total.
    pub async fn list_developers(
        &self,
        email: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<DeveloperRow>, i64)> {
        let sql = "SELECT * FROM developers WHERE ($1 = '' OR email = $1) \
                   ORDER BY created_at, developer_id LIMIT $2 OFFSET $3";
        let count = "SELECT COUNT(*) FROM developers WHERE ($1 = '' OR email = $1)";
        let e = email.unwrap_or("");
        Ok(with_db!(self, p => (
            sqlx::query_as(sql).bind(e).bind(limit).bind(offset).fetch_all(p).await?,
            sqlx::query_scalar(count).bind(e).fetch_one(p).await?,
        )))
    }

    pub async fn activate_developer(&self, developer_id: &str) -> Result<()> {
        let sql = "UPDATE developers SET active = $1 WHERE developer_id = $2";
        with_db!(self, p => sqlx::query(sql).bind(true).bind(developer_id).execute(p).await?.rows_affected());
        Ok(())
    }

    pub async fn set_developer_lock_state(&self, developer_id: &str, s: LockState) -> Result<()> {
        let sql =
            "UPDATE developers SET failed_count = $1, first_failed_at = $2, locked_until = $3, \
                   lockouts = $4 WHERE developer_id = $5";
        with_db!(self, p => sqlx::query(sql).bind(s.failed_count).bind(s.first_failed_at)
            .bind(s.locked_until).bind(s.lockouts).bind(developer_id).execute(p).await?.rows_affected());
        Ok(())
    }

    /// [`Store::update_lock_state`] for a developer: read and change the lockout state in one
    /// serialised transaction.
    pub async fn update_developer_lock_state(
        &self,
        developer_id: &str,
        f: impl FnOnce(LockState) -> Option<LockState> + Send,
    ) -> Result<Option<LockState>> {
        let lock = "UPDATE developers SET failed_count = failed_count WHERE developer_id = $1";
        let read = "SELECT failed_count, first_failed_at, locked_until, lockouts FROM developers \
                    WHERE developer_id = $1";
        let write = "UPDATE developers SET failed_count = $1, first_failed_at = $2, \
                     locked_until = $3, lockouts = $4 WHERE developer_id = $5";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(lock).bind(developer_id).execute(&mut *tx).await?;
            let row: Option<(i64, i64, i64, i64)> =
                sqlx::query_as(read).bind(developer_id).fetch_optional(&mut *tx).await?;
            let Some((failed_count, first_failed_at, locked_until, lockouts)) = row else {
                return Ok(None);
            };
            let seen = LockState { failed_count, first_failed_at, locked_until, lockouts };
            if let Some(s) = f(seen) {
                sqlx::query(write).bind(s.failed_count).bind(s.first_failed_at)
                    .bind(s.locked_until).bind(s.lockouts).bind(developer_id)
                    .execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(Some(seen))
        })
    }

    /// Suspend or reinstate; false for an unknown developer.
    pub async fn set_developer_suspended(&self, developer_id: &str, on: bool) -> Result<bool> {
        let sql = "UPDATE developers SET suspended = $1 WHERE developer_id = $2";
        let n = with_db!(self, p => sqlx::query(sql).bind(on).bind(developer_id).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Store a new (unconfirmed) TOTP secret; TOTP stays off until confirmed.
    pub async fn set_developer_totp_pending(
        &self,
        developer_id: &str,
        secret_enc: &[u8],
    ) -> Result<()> {
        let sql =
            "UPDATE developers SET totp_secret_enc = $1, totp_enabled = $2, totp_last_step = 0 \
                   WHERE developer_id = $3";
        with_db!(self, p => sqlx::query(sql).bind(secret_enc).bind(false).bind(developer_id)
            .execute(p).await?.rows_affected());
        Ok(())
    }

    /// Turn TOTP on (after a confirmed code) and replace the recovery codes, in one transaction.
    pub async fn enable_developer_totp(
        &self,
        developer_id: &str,
        recovery_hashes: &[String],
        now: i64,
    ) -> Result<()> {
        let on = "UPDATE developers SET totp_enabled = $1 WHERE developer_id = $2";
        let del = "DELETE FROM developer_recovery_codes WHERE developer_id = $1";
        let ins = "INSERT INTO developer_recovery_codes (developer_id, code_hash, created_at) VALUES ($1, $2, $3)";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(on).bind(true).bind(developer_id).execute(&mut *tx).await?;
            sqlx::query(del).bind(developer_id).execute(&mut *tx).await?;
            for h in recovery_hashes {
                sqlx::query(ins).bind(developer_id).bind(h).bind(now).execute(&mut *tx).await.map_err(map_conflict)?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Turn TOTP off: the secret and the recovery codes are deleted.
    pub async fn disable_developer_totp(&self, developer_id: &str) -> Result<()> {
        let off =
            "UPDATE developers SET totp_secret_enc = NULL, totp_enabled = $1, totp_last_step = 0 \
                   WHERE developer_id = $2";
        let del = "DELETE FROM developer_recovery_codes WHERE developer_id = $1";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(off).bind(false).bind(developer_id).execute(&mut *tx).await?;
            sqlx::query(del).bind(developer_id).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Record that TOTP step `step` was used; false when it (or a later one) already was, so
    /// two requests with the same code cannot both pass.
    pub async fn use_totp_step(&self, developer_id: &str, step: i64) -> Result<bool> {
        let sql = "UPDATE developers SET totp_last_step = $1 WHERE developer_id = $2 AND totp_last_step < $1";
        let n = with_db!(self, p => sqlx::query(sql).bind(step).bind(developer_id).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Spend a recovery code; true when it existed (and is now gone).
    pub async fn use_recovery_code(&self, developer_id: &str, code_hash: &str) -> Result<bool> {
        let sql = "DELETE FROM developer_recovery_codes WHERE developer_id = $1 AND code_hash = $2";
        let n = with_db!(self, p => sqlx::query(sql).bind(developer_id).bind(code_hash).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    pub async fn count_recovery_codes(&self, developer_id: &str) -> Result<i64> {
        let sql = "SELECT COUNT(*) FROM developer_recovery_codes WHERE developer_id = $1";
        Ok(with_db!(self, p => sqlx::query_scalar(sql).bind(developer_id).fetch_one(p).await?))
    }

    /// Start a session: a new family with its first access and refresh token.
    pub async fn create_developer_session(
        &self,
        family_id: &str,
        developer_id: &str,
        access: (&str, i64),
        refresh: (&str, i64),
        now: i64,
    ) -> Result<()> {
        let fam =
            "INSERT INTO developer_token_families (family_id, developer_id, revoked, created_at) \
                   VALUES ($1, $2, $3, $4)";
        let tok = "INSERT INTO developer_tokens (token_hash, kind, family_id, expires_at, used, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6)";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(fam).bind(family_id).bind(developer_id).bind(false).bind(now)
                .execute(&mut *tx).await.map_err(map_conflict)?;
            for (kind, (hash, exp)) in [("access", access), ("refresh", refresh)] {
                sqlx::query(tok).bind(hash).bind(kind).bind(family_id).bind(exp).bind(false).bind(now)
                    .execute(&mut *tx).await.map_err(map_conflict)?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Add the next access and refresh token to a family.
    pub async fn add_developer_tokens(
        &self,
        family_id: &str,
        access: (&str, i64),
        refresh: (&str, i64),
        now: i64,
    ) -> Result<()> {
        let tok = "INSERT INTO developer_tokens (token_hash, kind, family_id, expires_at, used, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6)";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            for (kind, (hash, exp)) in [("access", access), ("refresh", refresh)] {
                sqlx::query(tok).bind(hash).bind(kind).bind(family_id).bind(exp).bind(false).bind(now)
                    .execute(&mut *tx).await.map_err(map_conflict)?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// The live session behind an access token: not expired, family not revoked, developer not
    /// suspended (a suspension takes effect on the next request).
    pub async fn developer_access_session(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<DeveloperSessionRow>> {
        let sql = "SELECT f.developer_id, f.family_id, t.expires_at FROM developer_tokens t \
                   JOIN developer_token_families f ON f.family_id = t.family_id \
                   JOIN developers d ON d.developer_id = f.developer_id WHERE t.token_hash = $1 \
                   AND t.kind = 'access' AND f.revoked = $2 AND t.expires_at > $3 AND d.suspended = $2";
        Ok(
            with_db!(self, p => sqlx::query_as(sql).bind(token_hash).bind(false).bind(now)
            .fetch_optional(p).await?),
        )
    }

    /// Spend a developer refresh token; exactly one caller can rotate a given token.
    pub async fn use_developer_refresh(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<DeveloperRefresh> {
        let spend =
            "UPDATE developer_tokens SET used = $1 WHERE token_hash = $2 AND kind = 'refresh' \
                     AND used = $3 AND expires_at > $4";
        let look = "SELECT f.developer_id, f.family_id, t.expires_at FROM developer_tokens t \
                    JOIN developer_token_families f ON f.family_id = t.family_id WHERE t.token_hash = $1 \
                    AND t.kind = 'refresh'";
        let live = "SELECT COUNT(*) FROM developer_token_families f JOIN developers d \
                    ON d.developer_id = f.developer_id WHERE f.family_id = $1 AND f.revoked = $2 AND d.suspended = $2";
        with_db!(self, p => {
            let spent = sqlx::query(spend).bind(true).bind(token_hash).bind(false).bind(now)
                .execute(p).await?.rows_affected();
            let row: Option<DeveloperSessionRow> = sqlx::query_as(look).bind(token_hash).fetch_optional(p).await?;
            let Some(row) = row else { return Ok(DeveloperRefresh::Invalid) };
            let n: i64 = sqlx::query_scalar(live).bind(&row.family_id).bind(false).fetch_one(p).await?;
            Ok(if n == 0 {
                DeveloperRefresh::Invalid
            } else if spent == 1 {
                DeveloperRefresh::Rotated(row)
            } else if row.expires_at > now {
                DeveloperRefresh::Reused(row)
            } else {
                DeveloperRefresh::Invalid
            })
        })
    }

    pub async fn revoke_developer_family(&self, family_id: &str) -> Result<bool> {
        let sql = "UPDATE developer_token_families SET revoked = $1 WHERE family_id = $2 AND revoked = $3";
        let n = with_db!(self, p => sqlx::query(sql).bind(true).bind(family_id).bind(false)
            .execute(p).await?.rows_affected());
        Ok(n > 0)
    }

    /// Revoke every session of a developer; returns how many were live.
    pub async fn revoke_developer_families(&self, developer_id: &str) -> Result<u64> {
        let sql = "UPDATE developer_token_families SET revoked = $1 WHERE developer_id = $2 AND revoked = $3";
        Ok(
            with_db!(self, p => sqlx::query(sql).bind(true).bind(developer_id).bind(false)
            .execute(p).await?.rows_affected()),
        )
    }

    /// Revoke every session of a developer but `keep`; returns how many were live.
    pub async fn revoke_other_developer_families(
        &self,
        developer_id: &str,
        keep: &str,
    ) -> Result<u64> {
        let sql = "UPDATE developer_token_families SET revoked = $1 WHERE developer_id = $2 AND revoked = $3 \
                   AND family_id <> $4";
        Ok(
            with_db!(self, p => sqlx::query(sql).bind(true).bind(developer_id).bind(false).bind(keep)
            .execute(p).await?.rows_affected()),
        )
    }

    /// Replace a developer's password hash and clear any lockout.
    pub async fn set_developer_password(&self, developer_id: &str, hash: &str) -> Result<()> {
        let sql =
            "UPDATE developers SET password_hash = $1, failed_count = 0, first_failed_at = 0, \
                   locked_until = 0, lockouts = 0 WHERE developer_id = $2";
        with_db!(self, p => sqlx::query(sql).bind(hash).bind(developer_id).execute(p).await?.rows_affected());
        Ok(())
    }

    /// Forget developer tokens that expired before `before`.
    pub async fn purge_developer_tokens(&self, before: i64) -> Result<u64> {
        let sql = "DELETE FROM developer_tokens WHERE expires_at < $1";
        Ok(with_db!(self, p => sqlx::query(sql).bind(before).execute(p).await?.rows_affected()))
    }

    /// A page of the products a developer may read: personally owned, or owned by an enterprise
    /// the developer is a member of and that is not suspended.
    pub async fn list_developer_products(
        &self,
        developer_id: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<ProductRow>, i64)> {
        let sql = concat!(
            "SELECT p.* FROM products p WHERE ",
            readable_products!(),
            " ORDER BY p.created_at, p.product_key LIMIT $3 OFFSET $4"
        );
        let count = concat!(
            "SELECT COUNT(*) FROM products p WHERE ",
            readable_products!()
        );
        Ok(with_db!(self, p => (
            sqlx::query_as(sql).bind(developer_id).bind(false).bind(limit).bind(offset).fetch_all(p).await?,
            sqlx::query_scalar(count).bind(developer_id).bind(false).fetch_one(p).await?,
        )))
    }

    /// A page of the devices of every product a developer may read, optionally only those a
    /// prefix search finds (as [`Store::list_devices`]).
    pub async fn list_developer_devices(
        &self,
        developer_id: &str,
        search: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<DeviceRow>, i64)> {
        macro_rules! sql {
            ($backend:ident) => {
                (
                    concat!(
                        "SELECT d.* FROM devices d WHERE d.product_key IN (SELECT p.product_key FROM products p WHERE ",
                        readable_products!(),
                        ") AND ",
                        device_search!($backend, "$3"),
                        " ORDER BY d.created_at, d.did LIMIT $4 OFFSET $5"
                    ),
                    concat!(
                        "SELECT COUNT(*) FROM devices d WHERE d.product_key IN (SELECT p.product_key FROM products p WHERE ",
                        readable_products!(),
                        ") AND ",
                        device_search!($backend, "$3")
                    ),
                )
            };
        }
        let pattern = prefix_pattern(search);
        let p = match &self.db {
            Db::Sqlite(p) => p,
            Db::Postgres(p) => {
                let (sql, count) = sql!(postgres);
                return Ok((
                    sqlx::query_as(sql)
                        .bind(developer_id)
                        .bind(false)
                        .bind(&pattern)
                        .bind(limit)
                        .bind(offset)
                        .fetch_all(p)
                        .await?,
                    sqlx::query_scalar(count)
                        .bind(developer_id)
                        .bind(false)
                        .bind(&pattern)
                        .fetch_one(p)
                        .await?,
                ));
            }
        };
        let (sql, count) = sql!(sqlite);
        let journal = self.journal_len() > 0;
        // Reports not compacted yet are part of the states (see `reports`).
        let mut tx = p.begin().await?;
        let mut rows: Vec<DeviceRow> = sqlx::query_as(sql)
            .bind(developer_id)
            .bind(false)
            .bind(&pattern)
            .bind(limit)
            .bind(offset)
            .fetch_all(&mut *tx)
            .await?;
        let total: i64 = sqlx::query_scalar(count)
            .bind(developer_id)
            .bind(false)
            .bind(&pattern)
            .fetch_one(&mut *tx)
            .await?;
        if journal {
            apply_journal_page(&mut tx, &mut rows).await?;
        }
        tx.commit().await?;
        Ok((rows, total))
    }
}
