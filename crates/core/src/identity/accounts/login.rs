//! Login and tokens: password login under the lockout, refresh-token rotation with reuse
//! detection, access-token authentication, logout (one family or all), and the user's own view.

use super::*;

impl Core {
    /// Log in; every failure is `LoginFailed`, except `AccountNotActive` once the password was right.
    /// The try is claimed (counted toward the lockout) before the password is compared.
    pub async fn login(
        &self,
        app_id: &str,
        username: &str,
        pw: Secret,
        ip: Option<String>,
    ) -> Result<TokenPair> {
        let app_ok = self.app_products(app_id).await?.is_some();
        let who = Identity::parse_username(username).ok();
        let user = match &who {
            Some(w) => self.store().find_user(w.email(), w.phone()).await?,
            None => None,
        };
        // A place among the password checks first: a caller refused `Busy` has used no try.
        let admission = self.passwords().admit()?;
        let claimed: String = username.chars().take(64).collect();
        let Some(user) = user else {
            admission.verify(&pw, None).await;
            self.audit(
                event(
                    &Actor::user_candidate(&claimed),
                    action::USER_LOGIN,
                    "failed",
                    &ip,
                )
                .detail("unknown user"),
            )
            .await;
            return Err(Error::LoginFailed);
        };
        let actor = Actor::user(&user.user_id);
        let claim = self.claim_user_try(&user.user_id).await?;
        if claim == lockout::LoginClaim::Locked {
            // The same cost as a comparison, so a locked account answers no faster.
            admission.verify(&pw, None).await;
            self.audit(event(&actor, action::USER_LOGIN, "failed", &ip).detail("locked"))
                .await;
            return Err(Error::LoginFailed);
        }
        if !admission
            .verify(&pw, Some(user.password_hash.clone()))
            .await
        {
            self.audit(event(&actor, action::USER_LOGIN, "failed", &ip).detail("wrong password"))
                .await;
            self.user_lockout(&actor, claim, &ip).await;
            return Err(Error::LoginFailed);
        }
        let now = self.now_ms();
        if !app_ok || !user.active {
            // The password was right: the try is not a failure.
            self.store()
                .update_lock_state(&user.user_id, claim.refund())
                .await?;
        }
        if !app_ok {
            self.audit(event(&actor, action::USER_LOGIN, "failed", &ip).detail("unknown app"))
                .await;
            return Err(Error::LoginFailed);
        }
        if !user.active {
            self.audit(event(&actor, action::USER_LOGIN, "failed", &ip).detail("not activated"))
                .await;
            return Err(Error::AccountNotActive);
        }
        self.store()
            .set_lock_state(&user.user_id, lockout::after_success())
            .await?;
        // Expired tokens and codes are of no use to anyone; sweep them as sessions are made.
        if let Err(e) = self.store().purge_tokens(now).await {
            tracing::warn!(error = %e, "purging expired tokens failed");
        }
        let family = format!("f_{}", random_hex(16));
        let (access, refresh) = (new_token("rat_"), new_token("rrt_"));
        self.store()
            .create_session(
                &family,
                &user.user_id,
                app_id,
                (
                    &token_hash(access.expose()),
                    now + self.config().access_ttl_ms,
                ),
                (
                    &token_hash(refresh.expose()),
                    now + self.config().refresh_ttl_ms,
                ),
                now,
            )
            .await?;
        self.audit(event(&actor, action::USER_LOGIN, "ok", &ip).detail(format!("app={app_id}")))
            .await;
        Ok(TokenPair {
            access_token: access,
            refresh_token: refresh,
            expires_in: self.config().access_ttl_ms / 1000,
        })
    }

    /// Rotate a refresh token. Presenting one that was already rotated revokes its whole family.
    pub async fn refresh_tokens(&self, refresh: &str, ip: Option<String>) -> Result<TokenPair> {
        let now = self.now_ms();
        match self.store().use_refresh(&token_hash(refresh), now).await? {
            RefreshUse::Rotated(s) => {
                let (access, next) = (new_token("rat_"), new_token("rrt_"));
                self.store()
                    .add_tokens(
                        &s.family_id,
                        (
                            &token_hash(access.expose()),
                            now + self.config().access_ttl_ms,
                        ),
                        (
                            &token_hash(next.expose()),
                            now + self.config().refresh_ttl_ms,
                        ),
                        now,
                    )
                    .await?;
                Ok(TokenPair {
                    access_token: access,
                    refresh_token: next,
                    expires_in: self.config().access_ttl_ms / 1000,
                })
            }
            RefreshUse::Reused(s) => {
                self.store().revoke_family(&s.family_id).await?;
                self.sessions_changed(&s.user_id);
                self.audit(
                    event(
                        &Actor::user(&s.user_id),
                        action::USER_TOKEN_REUSE,
                        "family revoked",
                        &ip,
                    )
                    .detail(format!("family={}", s.family_id)),
                )
                .await;
                Err(Error::InvalidToken)
            }
            RefreshUse::Invalid => Err(Error::InvalidToken),
        }
    }

    /// The session behind an access token.
    pub async fn authenticate_user(&self, access: &str) -> Result<UserSession> {
        if !access.starts_with("rat_") || access.len() > 128 {
            return Err(Error::InvalidToken);
        }
        let s = self
            .store()
            .access_session(&token_hash(access), self.now_ms())
            .await?
            .ok_or(Error::InvalidToken)?;
        Ok(UserSession {
            user_id: s.user_id,
            family_id: s.family_id,
            app_id: s.app_id,
            expires_at: s.expires_at,
        })
    }

    /// End this session (every token of its family).
    pub async fn logout(&self, s: &UserSession, ip: Option<String>) -> Result<()> {
        self.store().revoke_family(&s.family_id).await?;
        self.sessions_changed(&s.user_id);
        self.audit(event(&s.actor(), action::USER_LOGOUT, "ok", &ip))
            .await;
        Ok(())
    }

    /// End every session of the user, and every grant (with its tokens) the user gave a third
    /// party.
    pub async fn logout_all(&self, s: &UserSession, ip: Option<String>) -> Result<u64> {
        let n = self.store().revoke_user_families(&s.user_id, None).await?;
        let grants = self.store().revoke_user_oauth_grants(&s.user_id).await?;
        self.sessions_changed(&s.user_id);
        self.audit(
            event(&s.actor(), action::USER_LOGOUT_ALL, "ok", &ip)
                .detail(format!("sessions={n} grants={grants}")),
        )
        .await;
        Ok(n)
    }

    pub async fn user_view(&self, user_id: &str) -> Result<UserView> {
        let u = self
            .store()
            .get_user(user_id)
            .await?
            .ok_or(Error::NotFound("user"))?;
        Ok(UserView {
            user_id: u.user_id,
            email: u.email,
            phone: u.phone,
            active: u.active,
            created_at: u.created_at,
        })
    }
}
