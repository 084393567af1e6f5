//! SQL of consumer accounts: apps, users, one-time codes, token families, bindings, shares and
//! one-time bind tokens. Rules (who may do what, expiry policy) live in `rampart-core`.

use crate::{map_conflict, Db, Result, Store};
use crate::{
    AppRow, BindTokenRow, BindingRow, CodeRow, LockState, RefreshUse, SessionRow, ShareRow, UserRow,
};

impl Store {
    // ---- apps ----

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

    // ---- users ----

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

    // ---- one-time codes ----

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

    // ---- sessions (token families) ----

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

    // ---- bindings ----

    /// The role of `user_id` on `did`, if bound.
    pub async fn binding_role(&self, did: &str, user_id: &str) -> Result<Option<String>> {
        let sql = "SELECT role FROM bindings WHERE did = $1 AND user_id = $2";
        Ok(
            with_db!(self, p => sqlx::query_scalar(sql).bind(did).bind(user_id).fetch_optional(p).await?),
        )
    }

    /// The owner of `did`, if any.
    pub async fn device_owner(&self, did: &str) -> Result<Option<String>> {
        let sql = "SELECT user_id FROM bindings WHERE did = $1 AND role = 'owner'";
        Ok(with_db!(self, p => sqlx::query_scalar(sql).bind(did).fetch_optional(p).await?))
    }

    /// Bind a user to a device; `Conflict` when already bound, or when binding an owner to a device
    /// that has one.
    pub async fn insert_binding(
        &self,
        did: &str,
        user_id: &str,
        role: &str,
        share_id: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let sql = "INSERT INTO bindings (did, user_id, role, share_id, created_at) VALUES ($1, $2, $3, $4, $5)";
        with_db!(self, p => sqlx::query(sql).bind(did).bind(user_id).bind(role).bind(share_id)
            .bind(now).execute(p).await.map_err(map_conflict)?.rows_affected());
        Ok(())
    }

    /// A page of a user's bindings, newest first, and the total.
    pub async fn list_bindings(
        &self,
        user_id: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<BindingRow>, i64)> {
        let sql = "SELECT b.did, b.user_id, b.role, b.share_id, b.created_at, d.product_key FROM bindings b \
                   JOIN devices d ON d.did = b.did WHERE b.user_id = $1 \
                   ORDER BY b.created_at DESC, b.did LIMIT $2 OFFSET $3";
        let count = "SELECT COUNT(*) FROM bindings WHERE user_id = $1";
        Ok(with_db!(self, p => (
            sqlx::query_as(sql).bind(user_id).bind(limit).bind(offset).fetch_all(p).await?,
            sqlx::query_scalar(count).bind(user_id).fetch_one(p).await?,
        )))
    }

    /// Every did a user is bound to, with the role (for live push filters).
    pub async fn user_device_roles(&self, user_id: &str) -> Result<Vec<(String, String)>> {
        let sql = "SELECT did, role FROM bindings WHERE user_id = $1";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(user_id).fetch_all(p).await?))
    }

    /// Remove one user's binding to a device and the share that granted it; true when one existed.
    pub async fn delete_binding(&self, did: &str, user_id: &str) -> Result<bool> {
        let b = "DELETE FROM bindings WHERE did = $1 AND user_id = $2";
        let s = "DELETE FROM shares WHERE did = $1 AND invitee_id = $2";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            let n = sqlx::query(b).bind(did).bind(user_id).execute(&mut *tx).await?.rows_affected();
            sqlx::query(s).bind(did).bind(user_id).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(n > 0)
        })
    }

    /// Remove every binding, share and bind token of a device (owner unbind, factory reset);
    /// returns the users that lost access.
    pub async fn unbind_all(&self, did: &str) -> Result<Vec<String>> {
        // The transaction's first statement writes, so SQLite takes its write lock at once
        // (waiting for it) instead of failing to upgrade a read lock under a concurrent writer.
        let users = "DELETE FROM bindings WHERE did = $1 RETURNING user_id";
        let dels = [
            "DELETE FROM shares WHERE did = $1",
            "DELETE FROM share_invitations WHERE did = $1",
            "DELETE FROM bind_tokens WHERE did = $1",
        ];
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            let list: Vec<String> = sqlx::query_scalar(users).bind(did).fetch_all(&mut *tx).await?;
            for sql in dels {
                sqlx::query(sql).bind(did).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(list)
        })
    }

    // ---- shares ----

    pub async fn insert_share(&self, r: &ShareRow) -> Result<()> {
        let sql = "INSERT INTO shares (share_id, did, owner_id, invitee_id, role, status, created_at, accepted_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        with_db!(self, p => sqlx::query(sql).bind(&r.share_id).bind(&r.did).bind(&r.owner_id)
            .bind(&r.invitee_id).bind(&r.role).bind(&r.status).bind(r.created_at).bind(r.accepted_at)
            .execute(p).await.map_err(map_conflict)?.rows_affected());
        Ok(())
    }

    pub async fn get_share(&self, share_id: &str) -> Result<Option<ShareRow>> {
        let sql = "SELECT * FROM shares WHERE share_id = $1";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(share_id).fetch_optional(p).await?))
    }

    /// A pending share to (did, invitee), if any.
    pub async fn find_share(&self, did: &str, invitee_id: &str) -> Result<Option<ShareRow>> {
        let sql = "SELECT * FROM shares WHERE did = $1 AND invitee_id = $2";
        Ok(
            with_db!(self, p => sqlx::query_as(sql).bind(did).bind(invitee_id).fetch_optional(p).await?),
        )
    }

    /// Accept a pending share: mark it and create the invitee's binding, in one transaction.
    /// False when the share is not pending any more; `Conflict` when the invitee is already bound.
    pub async fn accept_share(&self, s: &ShareRow, now: i64) -> Result<bool> {
        let upd = "UPDATE shares SET status = 'accepted', accepted_at = $1 WHERE share_id = $2 \
                   AND status = 'pending'";
        let ins = "INSERT INTO bindings (did, user_id, role, share_id, created_at) VALUES ($1, $2, $3, $4, $5)";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            let n = sqlx::query(upd).bind(now).bind(&s.share_id).execute(&mut *tx).await?.rows_affected();
            if n == 0 {
                return Ok(false);
            }
            sqlx::query(ins).bind(&s.did).bind(&s.invitee_id).bind(&s.role).bind(&s.share_id).bind(now)
                .execute(&mut *tx).await.map_err(map_conflict)?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Delete a share and the binding it granted.
    pub async fn delete_share(&self, share_id: &str) -> Result<bool> {
        let b = "DELETE FROM bindings WHERE share_id = $1";
        let s = "DELETE FROM shares WHERE share_id = $1";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(b).bind(share_id).execute(&mut *tx).await?;
            let n = sqlx::query(s).bind(share_id).execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            Ok(n > 0)
        })
    }

    /// A page of the shares offered to a user (pending and accepted), newest first, and the total.
    pub async fn list_shares_for(
        &self,
        invitee_id: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<ShareRow>, i64)> {
        let sql = "SELECT * FROM shares WHERE invitee_id = $1 ORDER BY created_at DESC, share_id \
                   LIMIT $2 OFFSET $3";
        let count = "SELECT COUNT(*) FROM shares WHERE invitee_id = $1";
        Ok(with_db!(self, p => (
            sqlx::query_as(sql).bind(invitee_id).bind(limit).bind(offset).fetch_all(p).await?,
            sqlx::query_scalar(count).bind(invitee_id).fetch_one(p).await?,
        )))
    }

    /// Every share of a device (pending and accepted), newest first.
    pub async fn list_shares_of_device(&self, did: &str) -> Result<Vec<ShareRow>> {
        let sql = "SELECT * FROM shares WHERE did = $1 ORDER BY created_at DESC, share_id";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(did).fetch_all(p).await?))
    }

    // ---- bind tokens ----

    pub async fn insert_bind_token(&self, r: &BindTokenRow) -> Result<()> {
        let sql = "INSERT INTO bind_tokens (token_hash, did, created_by, expires_at, created_at) \
                   VALUES ($1, $2, $3, $4, $5)";
        with_db!(self, p => sqlx::query(sql).bind(&r.token_hash).bind(&r.did).bind(&r.created_by)
            .bind(r.expires_at).bind(r.created_at).execute(p).await.map_err(map_conflict)?.rows_affected());
        Ok(())
    }

    /// Consume a bind token: it is deleted whatever happens next, and returned when it was for
    /// `did` and not expired at `now`.
    pub async fn take_bind_token(
        &self,
        token_hash: &str,
        did: &str,
        now: i64,
    ) -> Result<Option<BindTokenRow>> {
        let sql = "DELETE FROM bind_tokens WHERE token_hash = $1 RETURNING *";
        let row: Option<BindTokenRow> = with_db!(self, p => sqlx::query_as(sql).bind(token_hash)
            .fetch_optional(p).await?);
        Ok(row.filter(|r| r.did == did && r.expires_at > now))
    }
}
