//! OAuth2 tables: third-party clients, grants (one user's approval of one client, the family of its
//! codes and tokens), authorisation codes, grant tokens; and OpenID Connect login state and links.
//!
//! Codes and tokens arrive here already hashed; this module never sees a clear secret.

use crate::{map_conflict, Result, Store, UserRow};

/// A registered third-party client.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OAuthClientRow {
    pub client_id: String,
    pub name: String,
    pub secret_hash: String,
    /// JSON array of exact redirect URIs.
    pub redirect_uris: String,
    /// Space-separated scopes the client may request.
    pub scopes: String,
    /// Who registered it (`kind:id`).
    pub owner: String,
    pub created_at: i64,
    /// A public client: no secret (`secret_hash` is empty); PKCE alone binds its codes.
    pub is_public: bool,
    /// Last change of name, redirect URIs or secret (0: never changed).
    pub updated_at: i64,
}

/// One user's approval of one client.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OAuthGrantRow {
    pub grant_id: String,
    pub user_id: String,
    pub client_id: String,
    pub scope: String,
    /// Its code was exchanged for tokens.
    pub active: bool,
    pub revoked: bool,
    pub created_at: i64,
    /// No token of the grant outlives this.
    pub expires_at: i64,
}

/// An authorisation code (stored hashed).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OAuthCodeRow {
    pub code_hash: String,
    pub grant_id: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub used: bool,
    pub expires_at: i64,
    pub created_at: i64,
}

/// A grant token with what it belongs to.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OAuthTokenInfo {
    pub kind: String,
    pub grant_id: String,
    pub scope: String,
    pub used: bool,
    pub expires_at: i64,
    pub user_id: String,
    pub client_id: String,
    pub grant_revoked: bool,
    pub grant_expires_at: i64,
}

/// A grant as its user sees it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct OAuthGrantView {
    pub grant_id: String,
    pub client_id: String,
    pub client_name: String,
    pub scope: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// What presenting an authorisation code did.
#[derive(Debug, Clone, PartialEq)]
pub enum CodeUse {
    /// The code was unused and is now spent.
    Fresh(OAuthCodeRow),
    /// The code had been used before: a replay.
    Reused(OAuthCodeRow),
    /// No such code.
    Invalid,
}

/// A user linked to an OpenID Connect subject.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OidcLinkRow {
    pub provider: String,
    pub subject: String,
    pub user_id: String,
    pub email: Option<String>,
    pub created_at: i64,
}

/// A login in flight at a provider.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OidcStateRow {
    pub state_hash: String,
    pub provider: String,
    pub app_id: String,
    pub nonce: String,
    pub verifier_enc: Vec<u8>,
    pub redirect_uri: String,
    pub expires_at: i64,
    pub created_at: i64,
    /// SHA-256 of the browser-binding cookie's value set when the login started.
    pub browser_hash: String,
}

/// A token and its grant by token hash (`$1`), as a constant SQL fragment.
macro_rules! token_info {
    () => {
        "SELECT t.kind, t.grant_id, t.scope, t.used, t.expires_at, g.user_id, \
         g.client_id, g.revoked AS grant_revoked, g.expires_at AS grant_expires_at \
         FROM oauth_tokens t JOIN oauth_grants g ON g.grant_id = t.grant_id WHERE t.token_hash = $1"
    };
}

impl Store {
    // ---- clients ----

    pub async fn insert_oauth_client(&self, r: &OAuthClientRow) -> Result<()> {
        let sql = "INSERT INTO oauth_clients (client_id, name, secret_hash, redirect_uris, scopes, owner, \
                   created_at, is_public, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
        with_db!(self, p => sqlx::query(sql).bind(&r.client_id).bind(&r.name).bind(&r.secret_hash)
            .bind(&r.redirect_uris).bind(&r.scopes).bind(&r.owner).bind(r.created_at)
            .bind(r.is_public).bind(r.updated_at)
            .execute(p).await.map_err(map_conflict)?.rows_affected());
        Ok(())
    }

    /// A page of clients, oldest first: those registered by `owner` (`kind:id`), or every client
    /// for `None`.
    pub async fn list_oauth_clients(
        &self,
        owner: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<OAuthClientRow>, i64)> {
        let sql = "SELECT * FROM oauth_clients WHERE ($1 IS NULL OR owner = $1) \
                   ORDER BY created_at, client_id LIMIT $2 OFFSET $3";
        let count = "SELECT COUNT(*) FROM oauth_clients WHERE ($1 IS NULL OR owner = $1)";
        Ok(with_db!(self, p => (
            sqlx::query_as(sql).bind(owner).bind(limit).bind(offset).fetch_all(p).await?,
            sqlx::query_scalar(count).bind(owner).fetch_one(p).await?,
        )))
    }

    /// Change a client's name and redirect URIs; false for an unknown client.
    pub async fn update_oauth_client(
        &self,
        client_id: &str,
        name: &str,
        redirect_uris: &str,
        now: i64,
    ) -> Result<bool> {
        let sql = "UPDATE oauth_clients SET name = $1, redirect_uris = $2, updated_at = $3 \
                   WHERE client_id = $4";
        let n = with_db!(self, p => sqlx::query(sql).bind(name).bind(redirect_uris).bind(now)
            .bind(client_id).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Replace a confidential client's secret hash; false for an unknown or public client.
    pub async fn set_oauth_client_secret(
        &self,
        client_id: &str,
        secret_hash: &str,
        now: i64,
    ) -> Result<bool> {
        let sql = "UPDATE oauth_clients SET secret_hash = $1, updated_at = $2 \
                   WHERE client_id = $3 AND is_public = $4";
        let n = with_db!(self, p => sqlx::query(sql).bind(secret_hash).bind(now).bind(client_id)
            .bind(false).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Delete a client with every grant, code and token issued to it, in one transaction.
    /// Returns how many of its grants were live (exchanged for tokens, not revoked), or `None`
    /// for an unknown client.
    pub async fn delete_oauth_client(&self, client_id: &str) -> Result<Option<u64>> {
        let live = "SELECT COUNT(*) FROM oauth_grants WHERE client_id = $1 AND revoked = $2 \
                    AND active = $3";
        let sqls = [
            "DELETE FROM oauth_tokens WHERE grant_id IN \
             (SELECT grant_id FROM oauth_grants WHERE client_id = $1)",
            "DELETE FROM oauth_codes WHERE grant_id IN \
             (SELECT grant_id FROM oauth_grants WHERE client_id = $1)",
            "DELETE FROM oauth_grants WHERE client_id = $1",
        ];
        let client = "DELETE FROM oauth_clients WHERE client_id = $1";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            let n: i64 = sqlx::query_scalar(live).bind(client_id).bind(false).bind(true)
                .fetch_one(&mut *tx).await?;
            for sql in sqls {
                sqlx::query(sql).bind(client_id).execute(&mut *tx).await?;
            }
            let gone = sqlx::query(client).bind(client_id).execute(&mut *tx).await?.rows_affected();
            if gone == 0 {
                return Ok(None);
            }
            tx.commit().await?;
            Ok(Some(u64::try_from(n).unwrap_or(0)))
        })
    }

    pub async fn get_oauth_client(&self, client_id: &str) -> Result<Option<OAuthClientRow>> {
        let sql = "SELECT * FROM oauth_clients WHERE client_id = $1";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(client_id).fetch_optional(p).await?))
    }

    // ---- grants and codes ----

    /// Record an approval and its authorisation code, in one transaction.
    pub async fn insert_oauth_grant(&self, g: &OAuthGrantRow, c: &OAuthCodeRow) -> Result<()> {
        let gs = "INSERT INTO oauth_grants (grant_id, user_id, client_id, scope, active, revoked, \
                  created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        let cs = "INSERT INTO oauth_codes (code_hash, grant_id, client_id, redirect_uri, code_challenge, \
                  used, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(gs).bind(&g.grant_id).bind(&g.user_id).bind(&g.client_id).bind(&g.scope)
                .bind(g.active).bind(g.revoked).bind(g.created_at).bind(g.expires_at)
                .execute(&mut *tx).await.map_err(map_conflict)?;
            sqlx::query(cs).bind(&c.code_hash).bind(&c.grant_id).bind(&c.client_id)
                .bind(&c.redirect_uri).bind(&c.code_challenge).bind(c.used).bind(c.expires_at)
                .bind(c.created_at).execute(&mut *tx).await.map_err(map_conflict)?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Spend an authorisation code. Exactly one caller gets `Fresh`; later ones get `Reused`.
    pub async fn redeem_oauth_code(&self, code_hash: &str) -> Result<CodeUse> {
        let spend = "UPDATE oauth_codes SET used = $1 WHERE code_hash = $2 AND used = $3";
        let look = "SELECT * FROM oauth_codes WHERE code_hash = $1";
        with_db!(self, p => {
            let n = sqlx::query(spend).bind(true).bind(code_hash).bind(false)
                .execute(p).await?.rows_affected();
            let row: Option<OAuthCodeRow> = sqlx::query_as(look).bind(code_hash).fetch_optional(p).await?;
            Ok(match row {
                None => CodeUse::Invalid,
                Some(r) if n == 1 => CodeUse::Fresh(r),
                Some(r) => CodeUse::Reused(r),
            })
        })
    }

    pub async fn get_oauth_grant(&self, grant_id: &str) -> Result<Option<OAuthGrantRow>> {
        let sql = "SELECT * FROM oauth_grants WHERE grant_id = $1";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(grant_id).fetch_optional(p).await?))
    }

    /// Issue an access and a refresh token into a live grant (marking it active). False when the
    /// grant is revoked (nothing is written then).
    pub async fn add_oauth_tokens(
        &self,
        grant_id: &str,
        scope: &str,
        access: (&str, i64),
        refresh: (&str, i64),
        now: i64,
    ) -> Result<bool> {
        let act = "UPDATE oauth_grants SET active = $1 WHERE grant_id = $2 AND revoked = $3";
        let tok = "INSERT INTO oauth_tokens (token_hash, kind, grant_id, scope, used, expires_at, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7)";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            let n = sqlx::query(act).bind(true).bind(grant_id).bind(false)
                .execute(&mut *tx).await?.rows_affected();
            if n == 0 {
                return Ok(false);
            }
            for (kind, (hash, exp)) in [("access", access), ("refresh", refresh)] {
                sqlx::query(tok).bind(hash).bind(kind).bind(grant_id).bind(scope).bind(false)
                    .bind(exp).bind(now).execute(&mut *tx).await.map_err(map_conflict)?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    /// A token (any kind, any state) and its grant.
    pub async fn oauth_token(&self, token_hash: &str) -> Result<Option<OAuthTokenInfo>> {
        Ok(
            with_db!(self, p => sqlx::query_as(token_info!()).bind(token_hash).fetch_optional(p).await?),
        )
    }

    /// A live access token: not expired at `now`, its grant neither revoked nor expired.
    pub async fn oauth_access(&self, token_hash: &str, now: i64) -> Result<Option<OAuthTokenInfo>> {
        let sql = concat!(
            token_info!(),
            " AND t.kind = 'access' AND g.revoked = $2 AND t.expires_at > $3 \
             AND g.expires_at > $3"
        );
        Ok(
            with_db!(self, p => sqlx::query_as(sql).bind(token_hash).bind(false).bind(now)
            .fetch_optional(p).await?),
        )
    }

    /// Spend a live refresh token; true for exactly one caller.
    pub async fn spend_oauth_refresh(&self, token_hash: &str, now: i64) -> Result<bool> {
        let sql = "UPDATE oauth_tokens SET used = $1 WHERE token_hash = $2 AND kind = 'refresh' \
                   AND used = $3 AND expires_at > $4";
        let n = with_db!(self, p => sqlx::query(sql).bind(true).bind(token_hash).bind(false).bind(now)
            .execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Revoke a grant (every token issued from it dies at once); true when it was live.
    pub async fn revoke_oauth_grant(&self, grant_id: &str) -> Result<bool> {
        let sql = "UPDATE oauth_grants SET revoked = $1 WHERE grant_id = $2 AND revoked = $3";
        let n = with_db!(self, p => sqlx::query(sql).bind(true).bind(grant_id).bind(false)
            .execute(p).await?.rows_affected());
        Ok(n > 0)
    }

    /// Revoke every live grant of a user; returns how many were live.
    pub async fn revoke_user_oauth_grants(&self, user_id: &str) -> Result<u64> {
        let sql = "UPDATE oauth_grants SET revoked = $1 WHERE user_id = $2 AND revoked = $3";
        Ok(
            with_db!(self, p => sqlx::query(sql).bind(true).bind(user_id).bind(false)
            .execute(p).await?.rows_affected()),
        )
    }

    /// Forget one access token.
    pub async fn delete_oauth_access(&self, token_hash: &str) -> Result<bool> {
        let sql = "DELETE FROM oauth_tokens WHERE token_hash = $1 AND kind = 'access'";
        let n = with_db!(self, p => sqlx::query(sql).bind(token_hash).execute(p).await?.rows_affected());
        Ok(n > 0)
    }

    /// A page of a user's live grants (exchanged, not revoked, not expired at `now`), newest first.
    pub async fn list_oauth_grants(
        &self,
        user_id: &str,
        now: i64,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<OAuthGrantView>, i64)> {
        let sql = "SELECT g.grant_id, g.client_id, c.name AS client_name, g.scope, g.created_at, \
                   g.expires_at FROM oauth_grants g JOIN oauth_clients c ON c.client_id = g.client_id \
                   WHERE g.user_id = $1 AND g.active = $2 AND g.revoked = $3 AND g.expires_at > $4 \
                   ORDER BY g.created_at DESC, g.grant_id LIMIT $5 OFFSET $6";
        let count = "SELECT COUNT(*) FROM oauth_grants WHERE user_id = $1 AND active = $2 \
                     AND revoked = $3 AND expires_at > $4";
        Ok(with_db!(self, p => (
            sqlx::query_as(sql).bind(user_id).bind(true).bind(false).bind(now).bind(limit)
                .bind(offset).fetch_all(p).await?,
            sqlx::query_scalar(count).bind(user_id).bind(true).bind(false).bind(now)
                .fetch_one(p).await?,
        )))
    }

    /// Forget grant tokens, codes and OIDC login states that expired before `before`, and the
    /// grants left without any.
    pub async fn purge_oauth(&self, before: i64) -> Result<u64> {
        let sqls = [
            "DELETE FROM oauth_tokens WHERE expires_at < $1",
            "DELETE FROM oauth_codes WHERE expires_at < $1",
            "DELETE FROM oidc_states WHERE expires_at < $1",
        ];
        let mut n = 0;
        for sql in sqls {
            n += with_db!(self, p => sqlx::query(sql).bind(before).execute(p).await?.rows_affected());
        }
        // Then grants nothing refers to any more: never exchanged, revoked, or past their end.
        let grants = "DELETE FROM oauth_grants WHERE (active = $1 OR revoked = $2 OR expires_at < $3) \
                      AND NOT EXISTS (SELECT 1 FROM oauth_codes c WHERE c.grant_id = oauth_grants.grant_id) \
                      AND NOT EXISTS (SELECT 1 FROM oauth_tokens t WHERE t.grant_id = oauth_grants.grant_id)";
        n += with_db!(self, p => sqlx::query(grants).bind(false).bind(true).bind(before)
            .execute(p).await?.rows_affected());
        Ok(n)
    }

    // ---- OpenID Connect ----

    pub async fn insert_oidc_state(&self, r: &OidcStateRow) -> Result<()> {
        let sql = "INSERT INTO oidc_states (state_hash, provider, app_id, nonce, verifier_enc, redirect_uri, \
                   expires_at, created_at, browser_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
        with_db!(self, p => sqlx::query(sql).bind(&r.state_hash).bind(&r.provider).bind(&r.app_id)
            .bind(&r.nonce).bind(&r.verifier_enc).bind(&r.redirect_uri).bind(r.expires_at)
            .bind(r.created_at).bind(&r.browser_hash).execute(p).await.map_err(map_conflict)?
            .rows_affected());
        Ok(())
    }

    /// Consume a login state: deleted whatever happens next.
    pub async fn take_oidc_state(&self, state_hash: &str) -> Result<Option<OidcStateRow>> {
        let sql = "DELETE FROM oidc_states WHERE state_hash = $1 RETURNING *";
        Ok(with_db!(self, p => sqlx::query_as(sql).bind(state_hash).fetch_optional(p).await?))
    }

    pub async fn get_oidc_link(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<OidcLinkRow>> {
        let sql = "SELECT * FROM oidc_links WHERE provider = $1 AND subject = $2";
        Ok(
            with_db!(self, p => sqlx::query_as(sql).bind(provider).bind(subject).fetch_optional(p).await?),
        )
    }

    /// Create a user for a first OIDC login and link the subject to it, in one transaction;
    /// `Conflict` when the subject was linked (or the e-mail taken) meanwhile.
    pub async fn insert_oidc_user(&self, u: &UserRow, l: &OidcLinkRow) -> Result<()> {
        let us =
            "INSERT INTO users (user_id, email, phone, password_hash, active, app_id, created_at) \
                  VALUES ($1, $2, $3, $4, $5, $6, $7)";
        let ls = "INSERT INTO oidc_links (provider, subject, user_id, email, created_at) \
                  VALUES ($1, $2, $3, $4, $5)";
        with_db!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(us).bind(&u.user_id).bind(&u.email).bind(&u.phone).bind(&u.password_hash)
                .bind(u.active).bind(&u.app_id).bind(u.created_at)
                .execute(&mut *tx).await.map_err(map_conflict)?;
            sqlx::query(ls).bind(&l.provider).bind(&l.subject).bind(&l.user_id).bind(&l.email)
                .bind(l.created_at).execute(&mut *tx).await.map_err(map_conflict)?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Link a subject to a user; `Conflict` when the subject is linked already.
    pub async fn insert_oidc_link(&self, r: &OidcLinkRow) -> Result<()> {
        let sql = "INSERT INTO oidc_links (provider, subject, user_id, email, created_at) \
                   VALUES ($1, $2, $3, $4, $5)";
        with_db!(self, p => sqlx::query(sql).bind(&r.provider).bind(&r.subject).bind(&r.user_id)
            .bind(&r.email).bind(r.created_at).execute(p).await.map_err(map_conflict)?.rows_affected());
        Ok(())
    }
}
