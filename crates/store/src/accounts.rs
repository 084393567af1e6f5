//! Consumer accounts: client apps, users, one-time codes (activation, password reset), failed-login
//! bookkeeping and token families (sessions). Rules (password policy, lockout, expiry) live in
//! `rampart-core`; tokens and codes arrive here already hashed, and this file never sees a clear
//! one.

use crate::{map_conflict, Result, Store};

/// A client application end users sign in through.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AppRow {
    pub app_id: String,
    pub name: String,
    /// SHA-256 of the app secret, hex.
    pub secret_hash: String,
    /// The product keys the app's users may bind, as a JSON array.
    pub product_keys: String,
    pub created_at: i64,
}

/// An end user. `email` and `phone` are stored normalised; at least one is set.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct UserRow {
    pub user_id: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub active: bool,
    pub app_id: String,
    pub created_at: i64,
    pub failed_count: i64,
    pub first_failed_at: i64,
    pub locked_until: i64,
    pub lockouts: i64,
}

/// Failed-login bookkeeping of one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LockState {
    pub failed_count: i64,
    pub first_failed_at: i64,
    pub locked_until: i64,
    pub lockouts: i64,
}

/// A one-time code (activation, password reset), stored as a hash.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct CodeRow {
    pub recipient: String,
    pub purpose: String,
    pub code_hash: String,
    pub expires_at: i64,
    pub attempts: i64,
    pub created_at: i64,
}

/// The session behind a token: its user, its family (one login) and the app signed in through.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SessionRow {
    pub user_id: String,
    pub family_id: String,
    pub app_id: String,
    pub expires_at: i64,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq)]
pub enum RefreshUse {
    /// The token was live and is now spent; issue the next pair in this session.
    Rotated(SessionRow),
    /// The token was already spent: someone replays it. The family should be revoked.
    Reused(SessionRow),
    /// Unknown, expired, or its family is revoked.
    Invalid,
}

impl Store {
    pub async fn insert_app(&self, r: &AppRow) -> Result<()> {
        let sql = "INSERT INTO apps (app_id, name, secret_hash, product_keys, created_at) VALUES ($1, $2, $3, $4, $5)";
        with_db!(self, p => sqlx::query(sql).bind(&r.app_id).bind(&r.name).bind(&r.secret_hash)
            .bind(&r.product_keys).bind(r.created_at).execute(p).await.map_err(map_conflict)?.rows_affected());
        Ok(())
    }

    pub async fn get_app(&self, app_id: &str) -> Result<Option<AppRow>> {
        let sql = "SELECT * FROM apps WHERE app_id = $1";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(app_id).fetch_optional(p).await?))
    }

    /// Insert a user; `Conflict` when the e-mail or phone is taken.
    pub async fn insert_user(&self, r: &UserRow) -> Result<()> {
        let sql =
            "INSERT INTO users (user_id, email, phone, password_hash, active, app_id, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7)";
        with_db!(self, p => sqlx::query(sql).bind(&r.user_id).bind(&r.email).bind(&r.phone)
            .bind(&r.password_hash).bind(r.active).bind(&r.app_id).bind(r.created_at)
            .execute(p).await.map_err(map_conflict)?.rows_affected());
        Ok(())
    }

    pub async fn get_user(&self, user_id: &str) -> Result<Option<UserRow>> {
        let sql = "SELECT * FROM users WHERE user_id = $1";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(user_id).fetch_optional(p).await?))
    }

    /// Look a user up by normalised e-mail or phone.
    pub async fn find_user(
        &self,
        email: Option<&str>,
        phone: Option<&str>,
    ) -> Result<Option<UserRow>> {
        let sql = match (email, phone) {
            (Some(_), _) => "SELECT * FROM users WHERE email = $1",
            (None, Some(_)) => "SELECT * FROM users WHERE phone = $1",
            (None, None) => return Ok(None),
        };
        let key = email.or(phone);
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(key).fetch_optional(p).await?))
    }

    pub async fn activate_user(&self, user_id: &str) -> Result<()> {
        let sql = "UPDATE users SET active = $1 WHERE user_id = $2";
        with_db!(self, p => sqlx::query(sql).bind(true).bind(user_id).execute(p).await?.rows_affected());
        Ok(())
    }

    /// Replace the password hash and clear any lockout.
    pub async fn set_password(&self, user_id: &str, hash: &str) -> Result<()> {
        let sql = "UPDATE users SET password_hash = $1, failed_count = 0, first_failed_at = 0, \
                   locked_until = 0, lockouts = 0 WHERE user_id = $2";
        with_db!(self, p => sqlx::query(sql).bind(hash).bind(user_id).execute(p).await?.rows_affected());
        Ok(())
    }

    pub async fn set_lock_state(&self, user_id: &str, s: LockState) -> Result<()> {
        let sql = "UPDATE users SET failed_count = $1, first_failed_at = $2, locked_until = $3, \
                   lockouts = $4 WHERE user_id = $5";
        with_db!(self, p => sqlx::query(sql).bind(s.failed_count).bind(s.first_failed_at)
            .bind(s.locked_until).bind(s.lockouts).bind(user_id).execute(p).await?.rows_affected());
        Ok(())
    }

    /// Read and change a user's lockout state in one serialised transaction: `f` sees the state
    /// as committed, and no other change of it can come between that read and this write (a
    /// failed-login claim is never lost to a concurrent one). `f` returns the state to write, or
    /// `None` to leave it. Returns the state `f` saw; `None` for an unknown user.
    pub async fn update_lock_state(
        &self,
        user_id: &str,
        f: impl FnOnce(LockState) -> Option<LockState> + Send,
    ) -> Result<Option<LockState>> {
        // The first statement is a write: it takes the row lock (PostgreSQL) or the database's
        // write lock (SQLite) before anything is read, so the read below is the latest state.
        let lock = "UPDATE users SET failed_count = failed_count WHERE user_id = $1";
        let read = "SELECT failed_count, first_failed_at, locked_until, lockouts FROM users \
                    WHERE user_id = $1";
        let write = "UPDATE users SET failed_count = $1, first_failed_at = $2, locked_until = $3, \
                     lockouts = $4 WHERE user_id = $5";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(lock).bind(user_id).execute(&mut *tx).await?;
            let row: Option<(i64, i64, i64, i64)> =
                sqlx::query_as(read).bind(user_id).fetch_optional(&mut *tx).await?;
            let Some((failed_count, first_failed_at, locked_until, lockouts)) = row else {
                return Ok(None);
            };
            let seen = LockState { failed_count, first_failed_at, locked_until, lockouts };
            if let Some(s) = f(seen) {
                sqlx::query(write).bind(s.failed_count).bind(s.first_failed_at)
                    .bind(s.locked_until).bind(s.lockouts).bind(user_id).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(Some(seen))
        })
    }

    /// Store a code for (recipient, purpose), replacing an earlier one.
    pub async fn put_code(&self, r: &CodeRow) -> Result<()> {
        let sql = "INSERT INTO user_codes (recipient, purpose, code_hash, expires_at, attempts, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (recipient, purpose) DO UPDATE SET \
                   code_hash = excluded.code_hash, expires_at = excluded.expires_at, \
                   attempts = excluded.attempts, created_at = excluded.created_at";
        with_db!(self, p => sqlx::query(sql).bind(&r.recipient).bind(&r.purpose).bind(&r.code_hash)
            .bind(r.expires_at).bind(r.attempts).bind(r.created_at).execute(p).await?.rows_affected());
        Ok(())
    }

    pub async fn get_code(&self, recipient: &str, purpose: &str) -> Result<Option<CodeRow>> {
        let sql = "SELECT * FROM user_codes WHERE recipient = $1 AND purpose = $2";
        Ok(
            with_db!(self, p => sqlx::query_as(sql).bind(recipient).bind(purpose).fetch_optional(p).await?),
        )
    }

    /// Claim one try of a live code before it is compared: counts the try and returns the code's
    /// hash, in one conditional statement, while fewer than `max` tries were claimed and the code
    /// has not expired at `now`. `None` when no try is left (or no such code): of any number of
    /// concurrent callers, at most `max` ever get the hash.
    pub async fn claim_code_attempt(
        &self,
        recipient: &str,
        purpose: &str,
        max: i64,
        now: i64,
    ) -> Result<Option<String>> {
        let sql = "UPDATE user_codes SET attempts = attempts + 1 WHERE recipient = $1 \
                   AND purpose = $2 AND attempts < $3 AND expires_at > $4 RETURNING code_hash";
        Ok(
            with_db!(self, p => sqlx::query_scalar(sql).bind(recipient).bind(purpose).bind(max)
            .bind(now).fetch_optional(p).await?),
        )
    }

    /// Spend a code whose hash the caller matched: true for exactly one caller, and only while
    /// the stored code is still the one with `code_hash`.
    pub async fn take_code(&self, recipient: &str, purpose: &str, code_hash: &str) -> Result<bool> {
        let sql = "DELETE FROM user_codes WHERE recipient = $1 AND purpose = $2 AND code_hash = $3";
        let n = with_db!(self, p => sqlx::query(sql).bind(recipient).bind(purpose).bind(code_hash)
            .execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    pub async fn delete_code(&self, recipient: &str, purpose: &str) -> Result<()> {
        let sql = "DELETE FROM user_codes WHERE recipient = $1 AND purpose = $2";
        with_db!(self, p => sqlx::query(sql).bind(recipient).bind(purpose).execute(p).await?.rows_affected());
        Ok(())
    }

    /// Start a session: a new family with its first access and refresh token.
    pub async fn create_session(
        &self,
        family_id: &str,
        user_id: &str,
        app_id: &str,
        access: (&str, i64),
        refresh: (&str, i64),
        now: i64,
    ) -> Result<()> {
        let fam = "INSERT INTO token_families (family_id, user_id, app_id, revoked, created_at) \
                   VALUES ($1, $2, $3, $4, $5)";
        let tok = "INSERT INTO tokens (token_hash, kind, family_id, expires_at, used, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6)";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(fam).bind(family_id).bind(user_id).bind(app_id).bind(false).bind(now)
                .execute(&mut *tx).await.map_err(map_conflict)?;
            for (kind, (hash, exp)) in [("access", access), ("refresh", refresh)] {
                sqlx::query(tok).bind(hash).bind(kind).bind(family_id).bind(exp).bind(false).bind(now)
                    .execute(&mut *tx).await.map_err(map_conflict)?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Add the next access and refresh token to an existing family.
    pub async fn add_tokens(
        &self,
        family_id: &str,
        access: (&str, i64),
        refresh: (&str, i64),
        now: i64,
    ) -> Result<()> {
        let tok = "INSERT INTO tokens (token_hash, kind, family_id, expires_at, used, created_at) \
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

    /// The live session behind an access token (not expired at `now`, family not revoked).
    pub async fn access_session(&self, token_hash: &str, now: i64) -> Result<Option<SessionRow>> {
        let sql = "SELECT f.user_id, f.family_id, f.app_id, t.expires_at FROM tokens t \
                   JOIN token_families f ON f.family_id = t.family_id WHERE t.token_hash = $1 \
                   AND t.kind = 'access' AND f.revoked = $2 AND t.expires_at > $3";
        Ok(
            with_db!(self, p => sqlx::query_as(sql).bind(token_hash).bind(false).bind(now)
            .fetch_optional(p).await?),
        )
    }

    /// Spend a refresh token. Exactly one caller can rotate a given token.
    pub async fn use_refresh(&self, token_hash: &str, now: i64) -> Result<RefreshUse> {
        let spend = "UPDATE tokens SET used = $1 WHERE token_hash = $2 AND kind = 'refresh' \
                     AND used = $3 AND expires_at > $4";
        let look = "SELECT f.user_id, f.family_id, f.app_id, t.expires_at FROM tokens t \
                    JOIN token_families f ON f.family_id = t.family_id WHERE t.token_hash = $1 \
                    AND t.kind = 'refresh'";
        let fam = "SELECT revoked FROM token_families WHERE family_id = $1";
        with_db!(self, p => {
            let spent = sqlx::query(spend).bind(true).bind(token_hash).bind(false).bind(now)
                .execute(p).await?.rows_affected();
            let row: Option<SessionRow> = sqlx::query_as(look).bind(token_hash).fetch_optional(p).await?;
            let Some(row) = row else { return Ok(RefreshUse::Invalid) };
            let revoked: bool = sqlx::query_scalar(fam).bind(&row.family_id).fetch_one(p).await?;
            Ok(if revoked {
                RefreshUse::Invalid
            } else if spent == 1 {
                RefreshUse::Rotated(row)
            } else if row.expires_at > now {
                RefreshUse::Reused(row)
            } else {
                RefreshUse::Invalid
            })
        })
    }

    /// Revoke one session; returns whether it was live.
    pub async fn revoke_family(&self, family_id: &str) -> Result<bool> {
        let sql = "UPDATE token_families SET revoked = $1 WHERE family_id = $2 AND revoked = $3";
        let n = with_db!(self, p => sqlx::query(sql).bind(true).bind(family_id).bind(false)
            .execute(p).await?.rows_affected());
        Ok(n > 0)
    }

    /// Revoke every session of a user except `keep`; returns how many were live.
    pub async fn revoke_user_families(&self, user_id: &str, keep: Option<&str>) -> Result<u64> {
        let sql = "UPDATE token_families SET revoked = $1 WHERE user_id = $2 AND revoked = $3 \
                   AND family_id <> $4";
        Ok(
            with_db!(self, p => sqlx::query(sql).bind(true).bind(user_id).bind(false)
            .bind(keep.unwrap_or("")).execute(p).await?.rows_affected()),
        )
    }

    /// Forget session tokens, one-time codes and bind tokens that expired before `before`.
    pub async fn purge_tokens(&self, before: i64) -> Result<u64> {
        let sqls = [
            "DELETE FROM tokens WHERE expires_at < $1",
            "DELETE FROM user_codes WHERE expires_at < $1",
            "DELETE FROM bind_tokens WHERE expires_at < $1",
        ];
        let mut n = 0;
        for sql in sqls {
            n += with_db!(self, p => sqlx::query(sql).bind(before).execute(p).await?.rows_affected());
        }
        Ok(n)
    }
}
