//! Grants: the authorisation request and the user's approval or denial, the code and
//! refresh-token exchanges (a replayed code or refresh token revokes the grant), revocation, and
//! the session behind a third-party access token.

use crate::audit::action;
use crate::audit::Actor;
use crate::identity::accounts::{token_hash, Identity, UserSession};
use crate::secret::{random_from, Secret};
use crate::{Core, Error, Result};
use rampart_store::{CodeUse, OAuthClientRow, OAuthCodeRow, OAuthGrantRow, OAuthGrantView};
use serde::{Deserialize, Serialize};
use std::fmt;

use super::*;

/// The parameters of an authorisation request, as received (unknown ones are ignored, as RFC 6749
/// §3.1 wants).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AuthorizeParams {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
}

/// A checked authorisation request.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub client_id: String,
    pub client_name: String,
    pub redirect_uri: String,
    pub scopes: Scopes,
    pub state: Option<String>,
    pub code_challenge: String,
}

/// Why an authorisation request fails.
#[derive(Debug)]
pub enum AuthorizeError {
    /// Unknown client or unregistered redirect URI: never redirect; tell the user.
    BadClient(String),
    /// Send the user back to the client with an RFC 6749 §4.1.2.1 error.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
    Internal(Error),
}

impl From<Error> for AuthorizeError {
    fn from(e: Error) -> Self {
        AuthorizeError::Internal(e)
    }
}

impl From<rampart_store::StoreError> for AuthorizeError {
    fn from(e: rampart_store::StoreError) -> Self {
        AuthorizeError::Internal(e.into())
    }
}

impl AuthorizeError {
    /// The URL to send the user to, for a redirecting error.
    pub fn redirect_url(&self) -> Option<String> {
        match self {
            AuthorizeError::Redirect {
                redirect_uri,
                state,
                error,
                description,
            } => {
                let mut p = vec![
                    ("error", *error),
                    ("error_description", description.as_str()),
                ];
                if let Some(s) = state {
                    p.push(("state", s));
                }
                Some(with_params(redirect_uri, &p))
            }
            _ => None,
        }
    }
}

/// An RFC 6749 §5.2 error of the token and revocation endpoints.
#[derive(Debug)]
pub enum TokenError {
    InvalidRequest(String),
    InvalidClient,
    InvalidGrant(String),
    UnsupportedGrantType,
    InvalidScope(String),
    Internal(Error),
}

impl From<Error> for TokenError {
    fn from(e: Error) -> Self {
        TokenError::Internal(e)
    }
}

impl From<rampart_store::StoreError> for TokenError {
    fn from(e: rampart_store::StoreError) -> Self {
        TokenError::Internal(e.into())
    }
}

/// A token response (RFC 6749 §5.1); the tokens are shown once.
#[derive(Serialize)]
pub struct OAuthTokens {
    #[serde(serialize_with = "expose")]
    pub access_token: Secret,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(serialize_with = "expose")]
    pub refresh_token: Secret,
    pub scope: String,
}

fn expose<S: serde::Serializer>(s: &Secret, ser: S) -> std::result::Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose())
}

impl fmt::Debug for OAuthTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OAuthTokens(***)")
    }
}

impl Core {
    /// Check an authorisation request (RFC 6749 §4.1.1 with PKCE S256 required).
    pub async fn check_authorize(
        &self,
        p: &AuthorizeParams,
    ) -> std::result::Result<AuthRequest, AuthorizeError> {
        let client_id = p.client_id.as_deref().unwrap_or("");
        let client = if client_id.is_empty() || client_id.len() > 64 {
            None
        } else {
            self.store().get_oauth_client(client_id).await?
        };
        let Some(client) = client else {
            return Err(AuthorizeError::BadClient("unknown client_id".into()));
        };
        let redirect_uri = p.redirect_uri.clone().unwrap_or_default();
        if !redirect_matches(&client_redirects(&client), &redirect_uri) {
            return Err(AuthorizeError::BadClient(
                "redirect_uri is not registered for this client".into(),
            ));
        }
        let state = p.state.clone().filter(|s| !s.is_empty());
        let fail = |error: &'static str, description: &str| AuthorizeError::Redirect {
            redirect_uri: redirect_uri.clone(),
            state: state.clone(),
            error,
            description: description.to_owned(),
        };
        if state.as_ref().is_some_and(|s| s.len() > MAX_STATE) {
            return Err(fail("invalid_request", "state is too long"));
        }
        match p.response_type.as_deref() {
            Some("code") => {}
            Some(_) => {
                return Err(fail(
                    "unsupported_response_type",
                    "only response_type=code is supported",
                ))
            }
            None => return Err(fail("invalid_request", "response_type is required")),
        }
        match p.code_challenge_method.as_deref() {
            Some("S256") => {}
            Some("plain") => {
                return Err(fail(
                    "invalid_request",
                    "code_challenge_method plain is not supported; use S256",
                ))
            }
            _ => {
                return Err(fail(
                    "invalid_request",
                    "PKCE is required: code_challenge_method=S256",
                ))
            }
        }
        let challenge = p.code_challenge.clone().unwrap_or_default();
        if !valid_challenge(&challenge) {
            return Err(fail(
                "invalid_request",
                "code_challenge must be the base64url SHA-256 of the verifier",
            ));
        }
        let scopes = Scopes::parse(p.scope.as_deref().unwrap_or(""))
            .map_err(|s| fail("invalid_scope", &format!("unknown scope `{s}`")))?;
        let allowed = Scopes::parse(&client.scopes).unwrap_or_default();
        if scopes.is_empty() {
            return Err(fail("invalid_scope", "scope is required"));
        }
        if !allowed.covers(scopes) {
            return Err(fail(
                "invalid_scope",
                "scope exceeds what the client was registered for",
            ));
        }
        Ok(AuthRequest {
            client_id: client.client_id,
            client_name: client.name,
            redirect_uri,
            scopes,
            state,
            code_challenge: challenge,
        })
    }

    /// The user approves (some of) the requested scopes: a grant and its code. Returns the URL to
    /// send the user to (the redirect URI with `code` and `state`).
    pub async fn approve_authorize(
        &self,
        req: &AuthRequest,
        user_id: &str,
        approved: Scopes,
        ip: Option<String>,
    ) -> Result<String> {
        if approved.is_empty() || !req.scopes.covers(approved) {
            return Err(Error::Invalid(
                "approve one or more of the requested scopes".into(),
            ));
        }
        let now = self.now_ms();
        let life = &self.config().lifetimes;
        if let Err(e) = self.store().purge_oauth(now).await {
            tracing::warn!(error = %e, "purging expired OAuth codes and tokens failed");
        }
        let grant_id = format!("g_{}", random_from(ID_ALPHABET, 20));
        let code = new_secret(CODE_PREFIX);
        let grant = OAuthGrantRow {
            grant_id: grant_id.clone(),
            user_id: user_id.to_owned(),
            client_id: req.client_id.clone(),
            scope: approved.as_string(),
            active: false,
            revoked: false,
            created_at: now,
            expires_at: now + life.oauth_grant_ms,
        };
        let code_row = OAuthCodeRow {
            code_hash: token_hash(code.expose()),
            grant_id: grant_id.clone(),
            client_id: req.client_id.clone(),
            redirect_uri: req.redirect_uri.clone(),
            code_challenge: req.code_challenge.clone(),
            used: false,
            expires_at: now + life.oauth_code_ms,
            created_at: now,
        };
        self.store().insert_oauth_grant(&grant, &code_row).await?;
        self.audit(
            event(&Actor::user(user_id), action::OAUTH_GRANT, "ok", &ip)
                .target(format!("client:{}", req.client_id))
                .detail(format!("grant={grant_id} scope={}", grant.scope)),
        )
        .await;
        let mut p = vec![("code", code.expose())];
        if let Some(s) = &req.state {
            p.push(("state", s));
        }
        Ok(with_params(&req.redirect_uri, &p))
    }

    /// The user refuses: the URL sending them back with `access_denied`.
    pub async fn deny_authorize(
        &self,
        req: &AuthRequest,
        user_id: Option<&str>,
        ip: Option<String>,
    ) -> String {
        let actor = match user_id {
            Some(u) => Actor::user(u),
            None => Actor {
                kind: "user_candidate",
                id: "anonymous".into(),
            },
        };
        self.audit(
            event(&actor, action::OAUTH_GRANT, "denied", &ip)
                .target(format!("client:{}", req.client_id)),
        )
        .await;
        AuthorizeError::Redirect {
            redirect_uri: req.redirect_uri.clone(),
            state: req.state.clone(),
            error: "access_denied",
            description: "the user refused".into(),
        }
        .redirect_url()
        .unwrap_or_default()
    }

    /// Check a user's password on the consent page, without starting a session for an app: the
    /// same rules, lockout and audit as `login` (one short session is made and ended at once).
    pub async fn consent_login(
        &self,
        username: &str,
        pw: Secret,
        ip: Option<String>,
    ) -> Result<String> {
        let app_id = match Identity::parse_username(username) {
            Ok(w) => self
                .store()
                .find_user(w.email(), w.phone())
                .await?
                .map(|u| u.app_id)
                .unwrap_or_default(),
            Err(_) => String::new(),
        };
        let pair = self.login(&app_id, username, pw, ip).await?;
        let s = self.authenticate_user(pair.access_token.expose()).await?;
        self.store().revoke_family(&s.family_id).await?;
        Ok(s.user_id)
    }

    // ---- tokens ----

    async fn issue_grant_tokens(
        &self,
        grant_id: &str,
        grant_expires_at: i64,
        scope: &str,
    ) -> std::result::Result<OAuthTokens, TokenError> {
        let now = self.now_ms();
        let life = &self.config().lifetimes;
        let access_exp = (now + life.oauth_access_ms).min(grant_expires_at);
        let refresh_exp = (now + life.oauth_refresh_ms).min(grant_expires_at);
        let (access, refresh) = (new_secret(ACCESS_PREFIX), new_secret(REFRESH_PREFIX));
        let ok = self
            .store()
            .add_oauth_tokens(
                grant_id,
                scope,
                (&token_hash(access.expose()), access_exp),
                (&token_hash(refresh.expose()), refresh_exp),
                now,
            )
            .await?;
        if !ok {
            return Err(TokenError::InvalidGrant("the grant was revoked".into()));
        }
        Ok(OAuthTokens {
            access_token: access,
            token_type: "Bearer",
            expires_in: ((access_exp - now) / 1000).max(0),
            refresh_token: refresh,
            scope: scope.to_owned(),
        })
    }

    async fn token_failed(&self, client: &OAuthClientRow, why: &str, ip: &Option<String>) {
        self.audit(
            event(
                &client_actor(&client.client_id),
                action::OAUTH_TOKEN,
                "failed",
                ip,
            )
            .detail(why),
        )
        .await;
    }

    /// The authorisation-code grant (RFC 6749 §4.1.3 with the PKCE verifier). A code presented a
    /// second time is refused and its grant revoked, with every token issued from it.
    pub async fn exchange_code(
        &self,
        client: &OAuthClientRow,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
        ip: Option<String>,
    ) -> std::result::Result<OAuthTokens, TokenError> {
        let bad = |m: &str| TokenError::InvalidGrant(m.to_owned());
        if code.len() > 128 {
            return Err(bad("invalid authorization code"));
        }
        let row = match self.store().redeem_oauth_code(&token_hash(code)).await? {
            CodeUse::Fresh(r) => r,
            CodeUse::Invalid => {
                self.token_failed(client, "unknown code", &ip).await;
                return Err(bad("invalid authorization code"));
            }
            CodeUse::Reused(r) => {
                let live = self.store().revoke_oauth_grant(&r.grant_id).await?;
                self.audit(
                    event(
                        &client_actor(&client.client_id),
                        action::OAUTH_CODE_REUSE,
                        "grant revoked",
                        &ip,
                    )
                    .detail(format!("grant={} was_live={live}", r.grant_id)),
                )
                .await;
                return Err(bad("authorization code was already used"));
            }
        };
        let checks = [
            (row.expires_at > self.now_ms(), "authorization code expired"),
            (
                row.client_id == client.client_id,
                "authorization code was issued to another client",
            ),
            (
                row.redirect_uri == redirect_uri,
                "redirect_uri does not match the authorization request",
            ),
            (
                redirect_matches(&client_redirects(client), redirect_uri),
                "redirect_uri is no longer registered for this client",
            ),
            (
                pkce_matches(verifier, &row.code_challenge),
                "code_verifier does not match the code_challenge",
            ),
        ];
        if let Some((_, why)) = checks.iter().find(|(ok, _)| !ok) {
            self.token_failed(client, why, &ip).await;
            return Err(bad(why));
        }
        let grant = self
            .store()
            .get_oauth_grant(&row.grant_id)
            .await?
            .filter(|g| !g.revoked && g.expires_at > self.now_ms());
        let Some(grant) = grant else {
            self.token_failed(client, "grant revoked", &ip).await;
            return Err(bad("the grant was revoked"));
        };
        let tokens = self
            .issue_grant_tokens(&grant.grant_id, grant.expires_at, &grant.scope)
            .await?;
        self.audit(
            event(
                &client_actor(&client.client_id),
                action::OAUTH_TOKEN,
                "issued",
                &ip,
            )
            .target(format!("user:{}", grant.user_id))
            .detail(format!(
                "grant={} grant_type=authorization_code",
                grant.grant_id
            )),
        )
        .await;
        Ok(tokens)
    }

    /// The refresh-token grant: rotation, and revocation of the grant when a spent token comes back.
    pub async fn refresh_grant(
        &self,
        client: &OAuthClientRow,
        refresh: &str,
        scope: Option<&str>,
        ip: Option<String>,
    ) -> std::result::Result<OAuthTokens, TokenError> {
        let bad = |m: &str| TokenError::InvalidGrant(m.to_owned());
        let hash = token_hash(refresh);
        let info = if refresh.starts_with(REFRESH_PREFIX) && refresh.len() <= 128 {
            self.store().oauth_token(&hash).await?
        } else {
            None
        };
        let now = self.now_ms();
        let Some(info) = info.filter(|i| i.kind == "refresh") else {
            self.token_failed(client, "unknown refresh token", &ip)
                .await;
            return Err(bad("invalid refresh token"));
        };
        if info.client_id != client.client_id {
            self.token_failed(client, "refresh token of another client", &ip)
                .await;
            return Err(bad("invalid refresh token"));
        }
        if info.grant_revoked || info.grant_expires_at <= now {
            self.token_failed(client, "grant revoked or expired", &ip)
                .await;
            return Err(bad("invalid refresh token"));
        }
        let held = Scopes::parse(&info.scope).unwrap_or_default();
        let wanted = match scope.filter(|s| !s.trim().is_empty()) {
            None => held,
            Some(s) => {
                let w = Scopes::parse(s)
                    .map_err(|u| TokenError::InvalidScope(format!("unknown scope `{u}`")))?;
                if !held.covers(w) || w.is_empty() {
                    return Err(TokenError::InvalidScope(
                        "scope exceeds the grant".to_owned(),
                    ));
                }
                w
            }
        };
        if self.store().spend_oauth_refresh(&hash, now).await? {
            let tokens = self
                .issue_grant_tokens(&info.grant_id, info.grant_expires_at, &wanted.as_string())
                .await?;
            self.audit(
                event(
                    &client_actor(&client.client_id),
                    action::OAUTH_TOKEN,
                    "issued",
                    &ip,
                )
                .target(format!("user:{}", info.user_id))
                .detail(format!("grant={} grant_type=refresh_token", info.grant_id)),
            )
            .await;
            return Ok(tokens);
        }
        if info.used {
            let live = self.store().revoke_oauth_grant(&info.grant_id).await?;
            self.audit(
                event(
                    &client_actor(&client.client_id),
                    action::OAUTH_TOKEN_REUSE,
                    "grant revoked",
                    &ip,
                )
                .target(format!("user:{}", info.user_id))
                .detail(format!("grant={} was_live={live}", info.grant_id)),
            )
            .await;
            return Err(bad("refresh token was already used"));
        }
        self.token_failed(client, "refresh token expired", &ip)
            .await;
        Err(bad("invalid refresh token"))
    }

    /// RFC 7009 revocation. A refresh token revokes its grant; an access token dies alone. A token
    /// that is unknown or another client's is ignored (the answer is the same).
    pub async fn revoke_oauth_token(
        &self,
        client: &OAuthClientRow,
        token: &str,
        ip: Option<String>,
    ) -> std::result::Result<(), TokenError> {
        if token.len() > 128 {
            return Ok(());
        }
        let hash = token_hash(token);
        let Some(info) = self.store().oauth_token(&hash).await? else {
            return Ok(());
        };
        if info.client_id != client.client_id {
            return Ok(());
        }
        let what = if info.kind == "refresh" {
            self.store().revoke_oauth_grant(&info.grant_id).await?;
            "grant"
        } else {
            self.store().delete_oauth_access(&hash).await?;
            "access token"
        };
        self.audit(
            event(
                &client_actor(&client.client_id),
                action::OAUTH_REVOKE,
                "ok",
                &ip,
            )
            .target(format!("user:{}", info.user_id))
            .detail(format!("grant={} revoked={what}", info.grant_id)),
        )
        .await;
        Ok(())
    }

    /// The session behind a third-party access token.
    pub async fn authenticate_oauth(&self, access: &str) -> Result<OAuthSession> {
        if !access.starts_with(ACCESS_PREFIX) || access.len() > 128 {
            return Err(Error::InvalidToken);
        }
        let i = self
            .store()
            .oauth_access(&token_hash(access), self.now_ms())
            .await?
            .ok_or(Error::InvalidToken)?;
        Ok(OAuthSession {
            scopes: Scopes::parse(&i.scope).unwrap_or_default(),
            user_id: i.user_id,
            client_id: i.client_id,
            grant_id: i.grant_id,
            expires_at: i.expires_at.min(i.grant_expires_at),
        })
    }

    // ---- the user's view ----

    /// A page of the user's live grants.
    pub async fn list_oauth_grants(
        &self,
        user_id: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<OAuthGrantView>, i64)> {
        Ok(self
            .store()
            .list_oauth_grants(user_id, self.now_ms(), offset, limit)
            .await?)
    }

    /// The user revokes one of their grants: its tokens stop working at once.
    pub async fn revoke_user_grant(
        &self,
        s: &UserSession,
        grant_id: &str,
        ip: Option<String>,
    ) -> Result<()> {
        let g = if grant_id.len() > 64 {
            None
        } else {
            self.store().get_oauth_grant(grant_id).await?
        };
        let Some(g) = g.filter(|g| g.user_id == s.user_id && !g.revoked) else {
            return Err(Error::NotFound("grant"));
        };
        self.store().revoke_oauth_grant(&g.grant_id).await?;
        self.audit(
            event(&s.actor(), action::OAUTH_GRANT_REVOKE, "ok", &ip)
                .target(format!("client:{}", g.client_id))
                .detail(format!("grant={}", g.grant_id)),
        )
        .await;
        Ok(())
    }
}
