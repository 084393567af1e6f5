//! Developer accounts: the people of manufacturers, distinct from end users (who belong to
//! an app). Sign-up with an e-mailed activation code or creation by the operator, login with the
//! consumers' password policy and lockout, optional TOTP second factor with recovery codes,
//! rotating token families (`rdt_` access, `rdr_` refresh), and suspension by the operator.
//!
//! Every login failure before the password is proven answers the same [`Error::LoginFailed`];
//! only after the right password do `AccountNotActive`, `AccountSuspended` and `TotpRequired`
//! tell the caller more. A wrong second factor counts toward the same lockout as a wrong password.
//! A suspended developer's tokens stop working on the next request (the session lookup checks
//! the flag) and every session is revoked as well.

use crate::access::tenancy::developer_actor;
use crate::audit::action;
use crate::audit::{Actor, AuditEvent};
use crate::identity::accounts::{lockout, token_hash, Identity, TokenPair};
use crate::identity::notify::{Channel, Notice, Purpose};
use crate::identity::{password, totp};
use crate::secret::Place;
use crate::secret::{random_from, random_hex, Secret};
use crate::{Core, Error, Result};
use rampart_store::at_rest as col;
use rampart_store::{DeveloperRefresh, DeveloperRow, StoreError};
use serde::Serialize;

/// Access-token prefix of developers (end users have `rat_`).
pub const ACCESS_PREFIX: &str = "rdt_";
/// Refresh-token prefix of developers.
pub const REFRESH_PREFIX: &str = "rdr_";

const ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// Activation codes share the end users' code table under this recipient prefix.
const CODE_PREFIX: &str = "dev:";

/// What a developer's one-time code is for.
#[derive(Debug, Clone, Copy)]
enum DevCode {
    Activate,
    PasswordReset,
}

impl DevCode {
    /// The purpose stored beside the code.
    fn stored(self) -> &'static str {
        match self {
            DevCode::Activate => "dev_activate",
            DevCode::PasswordReset => "dev_password_reset",
        }
    }
    fn notice(self) -> Purpose {
        match self {
            DevCode::Activate => Purpose::Activate,
            DevCode::PasswordReset => Purpose::PasswordReset,
        }
    }
}

/// The authenticated developer behind an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeveloperSession {
    pub developer_id: String,
    pub family_id: String,
    pub expires_at: i64,
}

impl DeveloperSession {
    pub fn actor(&self) -> Actor {
        developer_actor(&self.developer_id)
    }
}

/// The second factor given at login, if any.
#[derive(Debug, Default)]
pub struct SecondFactor {
    pub totp: Option<Secret>,
    pub recovery_code: Option<Secret>,
}

/// A developer as shown to themselves and to the operator.
#[derive(Debug, Serialize)]
pub struct DeveloperView {
    pub developer_id: String,
    pub email: String,
    pub active: bool,
    pub suspended: bool,
    pub totp_enabled: bool,
    pub created_at: i64,
}

impl From<DeveloperRow> for DeveloperView {
    fn from(d: DeveloperRow) -> DeveloperView {
        DeveloperView {
            developer_id: d.developer_id,
            email: d.email,
            active: d.active,
            suspended: d.suspended,
            totp_enabled: d.totp_enabled,
            created_at: d.created_at,
        }
    }
}

/// The answer to TOTP enrolment: shown once.
#[derive(Serialize)]
pub struct TotpEnrolment {
    #[serde(serialize_with = "expose")]
    pub secret: Secret,
    #[serde(serialize_with = "expose")]
    pub otpauth_uri: Secret,
}

/// Recovery codes, shown once when TOTP is turned on.
#[derive(Serialize)]
pub struct RecoveryCodes {
    #[serde(serialize_with = "expose_all")]
    pub recovery_codes: Vec<Secret>,
}

fn expose<S: serde::Serializer>(s: &Secret, ser: S) -> std::result::Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose())
}

fn expose_all<S: serde::Serializer>(v: &[Secret], ser: S) -> std::result::Result<S::Ok, S::Error> {
    ser.collect_seq(v.iter().map(|s| s.expose()))
}

impl std::fmt::Debug for TotpEnrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpEnrolment(***)")
    }
}

fn event(actor: &Actor, action: &str, outcome: &str, ip: &Option<String>) -> AuditEvent {
    let ev = AuditEvent::new(actor, action, outcome);
    match ip {
        Some(ip) => ev.source_ip(ip.clone()),
        None => ev,
    }
}

fn code_hash(purpose: DevCode, recipient: &str, code: &str) -> String {
    token_hash(&format!("{}|{recipient}|{code}", purpose.stored()))
}

fn recovery_hash(developer_id: &str, code: &str) -> String {
    token_hash(&format!(
        "recovery|{developer_id}|{}",
        totp::normalise_recovery_code(code)
    ))
}

fn new_token(prefix: &str) -> Secret {
    Secret::new(format!("{prefix}{}", random_hex(32)))
}

fn secs(now_ms: i64) -> u64 {
    u64::try_from(now_ms / 1000).unwrap_or(0)
}

impl Core {
    // ---- sign-up, activation, creation by the operator ----

    /// Sign up a developer. An address that already has an account answers the same, and its
    /// owner is told by message instead (no enumeration through sign-up).
    pub async fn register_developer(
        &self,
        email: &str,
        pw: Secret,
        ip: Option<String>,
    ) -> Result<()> {
        let who = Identity::parse_email(email)?;
        self.limits()
            .check_signup("developer", ip.as_deref(), self.now_ms())?;
        password::check(pw.expose(), who.email(), None)?;
        let id = self.insert_developer(&who, &pw, false).await;
        match id {
            Ok(id) => {
                self.audit(event(
                    &developer_actor(&id),
                    action::DEVELOPER_REGISTER,
                    "ok",
                    &ip,
                ))
                .await;
                self.send_developer_code(&who, DevCode::Activate).await
            }
            Err(Error::Conflict(_)) => {
                if self
                    .inner
                    .accounts
                    .notice
                    .check(who.as_str(), self.now_ms())
                {
                    self.notify(Notice::new(
                        who.as_str(),
                        Channel::Email,
                        Purpose::AlreadyRegistered,
                        None,
                    ));
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn insert_developer(&self, who: &Identity, pw: &Secret, active: bool) -> Result<String> {
        let hash = self.passwords().hash(pw).await?;
        let developer_id = format!("dev_{}", random_from(ID_ALPHABET, 20));
        let row = DeveloperRow {
            developer_id: developer_id.clone(),
            email: who.as_str().to_owned(),
            password_hash: hash,
            active,
            suspended: false,
            created_at: self.now_ms(),
            failed_count: 0,
            first_failed_at: 0,
            locked_until: 0,
            lockouts: 0,
            totp_secret_enc: None,
            totp_enabled: false,
            totp_last_step: 0,
        };
        match self.store().insert_developer(&row).await {
            Ok(()) => Ok(developer_id),
            Err(StoreError::Conflict) => Err(Error::Conflict(
                "a developer with this e-mail already exists".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    async fn send_developer_code(&self, who: &Identity, purpose: DevCode) -> Result<()> {
        let code = Secret::new(random_from(b"0123456789", 6));
        let now = self.now_ms();
        let recipient = format!("{CODE_PREFIX}{}", who.as_str());
        self.store()
            .put_code(&rampart_store::CodeRow {
                code_hash: code_hash(purpose, &recipient, code.expose()),
                recipient,
                purpose: purpose.stored().into(),
                expires_at: now + self.config().lifetimes.code_ms,
                attempts: 0,
                created_at: now,
            })
            .await?;
        self.notify(
            Notice::new(who.as_str(), Channel::Email, purpose.notice(), Some(code))
                .valid_for(self.config().lifetimes.code_ms),
        );
        Ok(())
    }

    /// Spend a developer's one-time code; it dies after its expiry, its use or 5 wrong guesses
    /// (each try claimed before the comparison, see `Core::spend_code`). Every failure is
    /// `InvalidCode`.
    async fn use_developer_code(&self, who: &Identity, purpose: DevCode, code: &str) -> Result<()> {
        let recipient = format!("{CODE_PREFIX}{}", who.as_str());
        let given = code_hash(purpose, &recipient, code.trim());
        self.spend_code(&recipient, purpose.stored(), &given).await
    }

    /// Activate with the e-mailed code.
    pub async fn activate_developer(
        &self,
        email: &str,
        code: &str,
        ip: Option<String>,
    ) -> Result<()> {
        let who = Identity::parse_email(email)?;
        self.use_developer_code(&who, DevCode::Activate, code)
            .await?;
        let store = self.store();
        let dev = store
            .find_developer(who.as_str())
            .await?
            .ok_or(Error::InvalidCode)?;
        store.activate_developer(&dev.developer_id).await?;
        self.audit(event(
            &developer_actor(&dev.developer_id),
            action::DEVELOPER_ACTIVATE,
            "ok",
            &ip,
        ))
        .await;
        Ok(())
    }

    /// Send a password-reset code when the developer exists (`limits.codes_per_recipient`, `limits.codes_per_ip`); answers
    /// the same either way.
    pub async fn request_developer_password_reset(
        &self,
        email: &str,
        ip: Option<String>,
    ) -> Result<()> {
        let who = Identity::parse_email(email)?;
        let key = format!("{CODE_PREFIX}{}", who.as_str());
        self.limits()
            .check_code("reset", &key, ip.as_deref(), self.now_ms())?;
        if let Some(d) = self.store().find_developer(who.as_str()).await? {
            self.send_developer_code(&who, DevCode::PasswordReset)
                .await?;
            self.audit(event(
                &developer_actor(&d.developer_id),
                action::DEVELOPER_PASSWORD_RESET_REQUEST,
                "sent",
                &ip,
            ))
            .await;
        }
        Ok(())
    }

    /// Set a new password with a reset code: every session ends, the lockout is cleared and the
    /// account is activated (the code proves the address). TOTP stays as it was: a reset never
    /// removes the second factor.
    pub async fn confirm_developer_password_reset(
        &self,
        email: &str,
        code: &str,
        new: Secret,
        ip: Option<String>,
    ) -> Result<()> {
        let who = Identity::parse_email(email)?;
        password::check(new.expose(), who.email(), None)?;
        self.use_developer_code(&who, DevCode::PasswordReset, code)
            .await?;
        let dev = self
            .store()
            .find_developer(who.as_str())
            .await?
            .ok_or(Error::InvalidCode)?;
        let hash = self.passwords().hash(&new).await?;
        self.store()
            .set_developer_password(&dev.developer_id, &hash)
            .await?;
        if !dev.active {
            self.store().activate_developer(&dev.developer_id).await?;
        }
        let n = self
            .store()
            .revoke_developer_families(&dev.developer_id)
            .await?;
        self.tenancy_changed();
        self.audit(
            event(
                &developer_actor(&dev.developer_id),
                action::DEVELOPER_PASSWORD_RESET,
                "ok",
                &ip,
            )
            .detail(format!("sessions ended={n}")),
        )
        .await;
        Ok(())
    }

    /// Send a new activation code (`limits.codes_per_recipient`, `limits.codes_per_ip`); answers the same whether or not an
    /// inactive developer has that address.
    pub async fn resend_developer_activation(&self, email: &str, ip: Option<String>) -> Result<()> {
        let who = Identity::parse_email(email)?;
        let key = format!("{CODE_PREFIX}{}", who.as_str());
        self.limits()
            .check_code("activate", &key, ip.as_deref(), self.now_ms())?;
        if let Some(d) = self.store().find_developer(who.as_str()).await? {
            if !d.active {
                self.send_developer_code(&who, DevCode::Activate).await?;
            }
        }
        Ok(())
    }

    /// The operator creates an active developer account; returns its view.
    pub async fn operator_create_developer(
        &self,
        actor: &Actor,
        email: &str,
        pw: Secret,
        ip: Option<String>,
    ) -> Result<DeveloperView> {
        let who = Identity::parse_email(email)?;
        password::check(pw.expose(), who.email(), None)?;
        let id = self.insert_developer(&who, &pw, true).await?;
        self.audit(
            event(actor, action::DEVELOPER_CREATE, "ok", &ip).target(format!("developer:{id}")),
        )
        .await;
        self.developer_view(&id).await
    }

    /// Suspend (`on`) or reinstate a developer. Suspension ends every session at once; the
    /// developer's products and their devices keep working.
    pub async fn set_developer_suspended(
        &self,
        actor: &Actor,
        developer_id: &str,
        on: bool,
        ip: Option<String>,
    ) -> Result<DeveloperView> {
        if developer_id.len() > 64
            || !self
                .store()
                .set_developer_suspended(developer_id, on)
                .await?
        {
            return Err(Error::NotFound("developer"));
        }
        let ended = if on {
            self.store().revoke_developer_families(developer_id).await?
        } else {
            0
        };
        self.tenancy_changed();
        let action = if on {
            action::DEVELOPER_SUSPEND
        } else {
            action::DEVELOPER_UNSUSPEND
        };
        self.audit(
            event(actor, action, "ok", &ip)
                .target(format!("developer:{developer_id}"))
                .detail(format!("sessions ended={ended}")),
        )
        .await;
        self.developer_view(developer_id).await
    }

    /// A page of developers for the operator, optionally the one with `email`.
    pub async fn list_developers(
        &self,
        email: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<DeveloperView>, i64)> {
        let email = match email {
            Some(e) => Some(Identity::parse_email(e)?),
            None => None,
        };
        let (rows, total) = self
            .store()
            .list_developers(email.as_ref().map(Identity::as_str), offset, limit)
            .await?;
        Ok((rows.into_iter().map(Into::into).collect(), total))
    }

    pub async fn developer_view(&self, developer_id: &str) -> Result<DeveloperView> {
        Ok(self
            .store()
            .get_developer(developer_id)
            .await?
            .ok_or(Error::NotFound("developer"))?
            .into())
    }

    // ---- login and tokens ----

    /// Log in a developer. Every failure is `LoginFailed` until the password is proven; then
    /// `AccountNotActive`, `AccountSuspended`, or `TotpRequired` (no second factor given, or a
    /// wrong one; a wrong one counts as a failed login). The try is claimed (counted toward the
    /// lockout) before the password or the second factor is compared.
    pub async fn developer_login(
        &self,
        email: &str,
        pw: Secret,
        second: SecondFactor,
        ip: Option<String>,
    ) -> Result<TokenPair> {
        let who = Identity::parse_email(email).ok();
        let dev = match &who {
            Some(w) => self.store().find_developer(w.as_str()).await?,
            None => None,
        };
        // A place among the password checks first: a caller refused `Busy` has used no try.
        let admission = self.passwords().admit()?;
        let Some(dev) = dev else {
            admission.verify(&pw, None).await;
            self.audit(
                event(
                    &Actor::developer_candidate(email),
                    action::DEVELOPER_LOGIN,
                    "failed",
                    &ip,
                )
                .detail("unknown developer"),
            )
            .await;
            return Err(Error::LoginFailed);
        };
        let actor = developer_actor(&dev.developer_id);
        let claim = self.claim_developer_try(&dev.developer_id).await?;
        if claim == lockout::LoginClaim::Locked {
            // The same cost as a comparison, so a locked account answers no faster.
            admission.verify(&pw, None).await;
            self.audit(event(&actor, action::DEVELOPER_LOGIN, "failed", &ip).detail("locked"))
                .await;
            return Err(Error::LoginFailed);
        }
        if !admission.verify(&pw, Some(dev.password_hash.clone())).await {
            self.developer_failed(&dev, claim, "wrong password", &ip)
                .await;
            return Err(Error::LoginFailed);
        }
        let refund = || async {
            self.store()
                .update_developer_lock_state(&dev.developer_id, claim.refund())
                .await
        };
        if !dev.active {
            refund().await?;
            self.audit(
                event(&actor, action::DEVELOPER_LOGIN, "failed", &ip).detail("not activated"),
            )
            .await;
            return Err(Error::AccountNotActive);
        }
        if dev.suspended {
            refund().await?;
            self.audit(event(&actor, action::DEVELOPER_LOGIN, "failed", &ip).detail("suspended"))
                .await;
            return Err(Error::AccountSuspended);
        }
        if dev.totp_enabled {
            match self.check_second_factor(&dev, &second).await? {
                Some(how) => {
                    self.audit(
                        event(&actor, action::DEVELOPER_SECOND_FACTOR, "ok", &ip).detail(how),
                    )
                    .await;
                }
                None if second.totp.is_none() && second.recovery_code.is_none() => {
                    refund().await?;
                    self.audit(
                        event(&actor, action::DEVELOPER_LOGIN, "failed", &ip)
                            .detail("totp required"),
                    )
                    .await;
                    return Err(Error::TotpRequired(
                        "this account needs a TOTP code (`totp`) or a recovery code".into(),
                    ));
                }
                None => {
                    self.developer_failed(&dev, claim, "wrong second factor", &ip)
                        .await;
                    return Err(Error::TotpRequired(
                        "the TOTP or recovery code is wrong, expired or already used".into(),
                    ));
                }
            }
        }
        let now = self.now_ms();
        self.store()
            .set_developer_lock_state(&dev.developer_id, lockout::after_success())
            .await?;
        if let Err(e) = self.store().purge_developer_tokens(now).await {
            tracing::warn!(error = %e, "purging expired developer tokens failed");
        }
        let family = format!("df_{}", random_hex(16));
        let (access, refresh) = (new_token(ACCESS_PREFIX), new_token(REFRESH_PREFIX));
        self.store()
            .create_developer_session(
                &family,
                &dev.developer_id,
                (
                    &token_hash(access.expose()),
                    now + self.config().lifetimes.developer_access_ms,
                ),
                (
                    &token_hash(refresh.expose()),
                    now + self.config().lifetimes.developer_refresh_ms,
                ),
                now,
            )
            .await?;
        self.audit(event(&actor, action::DEVELOPER_LOGIN, "ok", &ip))
            .await;
        Ok(TokenPair {
            access_token: access,
            refresh_token: refresh,
            expires_in: self.config().lifetimes.developer_access_ms / 1000,
        })
    }

    /// Claim a login try of a developer (see [`lockout::LoginClaim`]).
    async fn claim_developer_try(&self, developer_id: &str) -> Result<lockout::LoginClaim> {
        let now = self.now_ms();
        let seen = self
            .store()
            .update_developer_lock_state(developer_id, |st| lockout::claim(st, now))
            .await?;
        Ok(lockout::claimed(seen, now))
    }

    /// Audit a failed try (already counted by its claim), and the lockout it caused.
    async fn developer_failed(
        &self,
        dev: &DeveloperRow,
        claim: lockout::LoginClaim,
        why: &str,
        ip: &Option<String>,
    ) {
        let actor = developer_actor(&dev.developer_id);
        self.audit(event(&actor, action::DEVELOPER_LOGIN, "failed", ip).detail(why.to_owned()))
            .await;
        if let lockout::LoginClaim::Counted {
            after, locks: true, ..
        } = claim
        {
            metrics::counter!(crate::telemetry::ACCOUNT_LOCKOUTS).increment(1);
            self.audit(
                event(&actor, action::DEVELOPER_LOCKOUT, "locked", ip).detail(format!(
                    "until={} lockouts={}",
                    after.locked_until, after.lockouts
                )),
            )
            .await;
        }
    }

    /// Check a TOTP or recovery code of a developer with TOTP on; `Some(kind)` when accepted (the
    /// TOTP step or the recovery code is spent).
    async fn check_second_factor(
        &self,
        dev: &DeveloperRow,
        second: &SecondFactor,
    ) -> Result<Option<&'static str>> {
        if let Some(code) = &second.totp {
            let Some(sealed) = &dev.totp_secret_enc else {
                return Ok(None);
            };
            let at = Place::new(col::DEVELOPER_TOTP, &dev.developer_id);
            let secret = zeroize::Zeroizing::new(self.key().open(at, sealed)?.to_vec());
            let Some(step) = totp::matching_step(
                &secret,
                code.expose(),
                secs(self.now_ms()),
                dev.totp_last_step,
            ) else {
                return Ok(None);
            };
            // Recorded atomically: of two requests with one code, only one gets through.
            return Ok(self
                .store()
                .use_totp_step(&dev.developer_id, step)
                .await?
                .then_some("totp"));
        }
        if let Some(code) = &second.recovery_code {
            let h = recovery_hash(&dev.developer_id, code.expose());
            return Ok(self
                .store()
                .use_recovery_code(&dev.developer_id, &h)
                .await?
                .then_some("recovery code"));
        }
        Ok(None)
    }

    /// Rotate a developer refresh token; a spent one presented again revokes its family.
    pub async fn developer_refresh(&self, refresh: &str, ip: Option<String>) -> Result<TokenPair> {
        if !refresh.starts_with(REFRESH_PREFIX) || refresh.len() > 128 {
            return Err(Error::InvalidToken);
        }
        let now = self.now_ms();
        match self
            .store()
            .use_developer_refresh(&token_hash(refresh), now)
            .await?
        {
            DeveloperRefresh::Rotated(s) => {
                let (access, next) = (new_token(ACCESS_PREFIX), new_token(REFRESH_PREFIX));
                self.store()
                    .add_developer_tokens(
                        &s.family_id,
                        (
                            &token_hash(access.expose()),
                            now + self.config().lifetimes.developer_access_ms,
                        ),
                        (
                            &token_hash(next.expose()),
                            now + self.config().lifetimes.developer_refresh_ms,
                        ),
                        now,
                    )
                    .await?;
                Ok(TokenPair {
                    access_token: access,
                    refresh_token: next,
                    expires_in: self.config().lifetimes.developer_access_ms / 1000,
                })
            }
            DeveloperRefresh::Reused(s) => {
                self.store().revoke_developer_family(&s.family_id).await?;
                self.tenancy_changed();
                self.audit(
                    event(
                        &developer_actor(&s.developer_id),
                        action::DEVELOPER_TOKEN_REUSE,
                        "family revoked",
                        &ip,
                    )
                    .detail(format!("family={}", s.family_id)),
                )
                .await;
                Err(Error::InvalidToken)
            }
            DeveloperRefresh::Invalid => Err(Error::InvalidToken),
        }
    }

    /// The developer behind an access token (`InvalidToken` also when suspended).
    pub async fn authenticate_developer(&self, access: &str) -> Result<DeveloperSession> {
        if !access.starts_with(ACCESS_PREFIX) || access.len() > 128 {
            return Err(Error::InvalidToken);
        }
        let s = self
            .store()
            .developer_access_session(&token_hash(access), self.now_ms())
            .await?
            .ok_or(Error::InvalidToken)?;
        Ok(DeveloperSession {
            developer_id: s.developer_id,
            family_id: s.family_id,
            expires_at: s.expires_at,
        })
    }

    pub async fn developer_logout(&self, s: &DeveloperSession, ip: Option<String>) -> Result<()> {
        self.store().revoke_developer_family(&s.family_id).await?;
        self.tenancy_changed();
        self.audit(event(&s.actor(), action::DEVELOPER_LOGOUT, "ok", &ip))
            .await;
        Ok(())
    }

    /// Change the password (the old one must verify; wrong ones count toward the lockout). Ends
    /// the developer's other sessions.
    pub async fn developer_change_password(
        &self,
        s: &DeveloperSession,
        old: Secret,
        new: Secret,
        ip: Option<String>,
    ) -> Result<()> {
        let dev = self.session_developer(s).await?;
        let admission = self.passwords().admit()?;
        let claim = self.claim_developer_try(&dev.developer_id).await?;
        let verified = claim != lockout::LoginClaim::Locked
            && admission
                .verify(&old, Some(dev.password_hash.clone()))
                .await;
        if !verified {
            if claim != lockout::LoginClaim::Locked {
                self.developer_failed(&dev, claim, "wrong old password", &ip)
                    .await;
            }
            self.audit(event(
                &s.actor(),
                action::DEVELOPER_PASSWORD_CHANGE,
                "failed",
                &ip,
            ))
            .await;
            return Err(Error::Forbidden("old_password is not correct".into()));
        }
        self.store()
            .update_developer_lock_state(&dev.developer_id, claim.refund())
            .await?;
        password::check(new.expose(), Some(&dev.email), None)?;
        let hash = self.passwords().hash(&new).await?;
        self.store()
            .set_developer_password(&dev.developer_id, &hash)
            .await?;
        let n = self
            .store()
            .revoke_other_developer_families(&dev.developer_id, &s.family_id)
            .await?;
        self.tenancy_changed();
        self.audit(
            event(&s.actor(), action::DEVELOPER_PASSWORD_CHANGE, "ok", &ip)
                .detail(format!("other sessions ended={n}")),
        )
        .await;
        Ok(())
    }

    /// Proof that the developer is at the keyboard now, for acts that cannot be undone: the
    /// password (a wrong one counts toward the login lockout), or a login at most
    /// `fresh_ms` old.
    pub(crate) async fn check_developer_presence(
        &self,
        s: &DeveloperSession,
        password: Option<Secret>,
        fresh_ms: i64,
        ip: &Option<String>,
    ) -> Result<()> {
        let dev = self.session_developer(s).await?;
        let Some(pw) = password else {
            let started = self
                .store()
                .developer_session_started_at(&s.family_id)
                .await?;
            if started.is_none_or(|t| self.now_ms() - t > fresh_ms) {
                return Err(Error::Forbidden(format!(
                    "this needs \"password\", or a login in the last {} minutes",
                    fresh_ms / 60_000
                )));
            }
            return Ok(());
        };
        let admission = self.passwords().admit()?;
        let claim = self.claim_developer_try(&dev.developer_id).await?;
        let verified = claim != lockout::LoginClaim::Locked
            && admission.verify(&pw, Some(dev.password_hash.clone())).await;
        if !verified {
            if claim != lockout::LoginClaim::Locked {
                self.developer_failed(&dev, claim, "wrong password", ip)
                    .await;
            }
            return Err(Error::Forbidden("password is not correct".into()));
        }
        self.store()
            .update_developer_lock_state(&dev.developer_id, claim.refund())
            .await?;
        Ok(())
    }

    // ---- TOTP ----

    /// Start TOTP enrolment: a new secret, stored sealed, off until confirmed with a code.
    pub async fn totp_enrol(
        &self,
        s: &DeveloperSession,
        ip: Option<String>,
    ) -> Result<TotpEnrolment> {
        let dev = self.session_developer(s).await?;
        if dev.totp_enabled {
            return Err(Error::Conflict(
                "TOTP is already on; turn it off first to enrol a new secret".into(),
            ));
        }
        let secret = zeroize::Zeroizing::new(totp::new_secret());
        let (b32, uri) = totp::enrolment(&secret, &dev.email)?;
        self.store()
            .set_developer_totp_pending(
                &dev.developer_id,
                &self
                    .key()
                    .seal(Place::new(col::DEVELOPER_TOTP, &dev.developer_id), &secret),
            )
            .await?;
        self.audit(event(
            &s.actor(),
            action::DEVELOPER_TOTP_ENROL,
            "pending",
            &ip,
        ))
        .await;
        Ok(TotpEnrolment {
            secret: b32,
            otpauth_uri: uri,
        })
    }

    /// Confirm enrolment with a current code: TOTP is on from now, and fresh recovery codes are
    /// returned (once).
    pub async fn totp_confirm(
        &self,
        s: &DeveloperSession,
        code: &str,
        ip: Option<String>,
    ) -> Result<RecoveryCodes> {
        let dev = self.session_developer(s).await?;
        let sealed = match (&dev.totp_secret_enc, dev.totp_enabled) {
            (Some(sealed), false) => sealed,
            (_, true) => return Err(Error::Conflict("TOTP is already on".into())),
            (None, false) => {
                return Err(Error::Conflict(
                    "no TOTP enrolment is pending; enrol first".into(),
                ))
            }
        };
        let at = Place::new(col::DEVELOPER_TOTP, &dev.developer_id);
        let secret = zeroize::Zeroizing::new(self.key().open(at, sealed)?.to_vec());
        let step = totp::matching_step(&secret, code, secs(self.now_ms()), dev.totp_last_step);
        let ok = match step {
            Some(step) => self.store().use_totp_step(&dev.developer_id, step).await?,
            None => false,
        };
        if !ok {
            self.audit(event(
                &s.actor(),
                action::DEVELOPER_TOTP_ENABLE,
                "failed",
                &ip,
            ))
            .await;
            return Err(Error::InvalidCode);
        }
        let codes = totp::new_recovery_codes();
        let hashes: Vec<String> = codes
            .iter()
            .map(|c| recovery_hash(&dev.developer_id, c.expose()))
            .collect();
        self.store()
            .enable_developer_totp(&dev.developer_id, &hashes, self.now_ms())
            .await?;
        self.audit(
            event(&s.actor(), action::DEVELOPER_TOTP_ENABLE, "ok", &ip)
                .detail(format!("recovery codes={}", codes.len())),
        )
        .await;
        Ok(RecoveryCodes {
            recovery_codes: codes,
        })
    }

    /// Turn TOTP off; needs the password and a current TOTP (or recovery) code. A wrong password
    /// or code counts toward the login lockout.
    pub async fn totp_disable(
        &self,
        s: &DeveloperSession,
        pw: Secret,
        second: SecondFactor,
        ip: Option<String>,
    ) -> Result<()> {
        let dev = self.session_developer(s).await?;
        if !dev.totp_enabled {
            return Err(Error::Conflict("TOTP is not on".into()));
        }
        let admission = self.passwords().admit()?;
        let claim = self.claim_developer_try(&dev.developer_id).await?;
        let verified = claim != lockout::LoginClaim::Locked
            && admission.verify(&pw, Some(dev.password_hash.clone())).await;
        let factor = if verified {
            self.check_second_factor(&dev, &second).await?
        } else {
            None
        };
        if factor.is_none() {
            if claim != lockout::LoginClaim::Locked {
                self.developer_failed(&dev, claim, "totp disable refused", &ip)
                    .await;
            }
            self.audit(event(
                &s.actor(),
                action::DEVELOPER_TOTP_DISABLE,
                "failed",
                &ip,
            ))
            .await;
            return Err(Error::Forbidden("password or code is not correct".into()));
        }
        self.store()
            .update_developer_lock_state(&dev.developer_id, claim.refund())
            .await?;
        self.store()
            .disable_developer_totp(&dev.developer_id)
            .await?;
        self.audit(event(&s.actor(), action::DEVELOPER_TOTP_DISABLE, "ok", &ip))
            .await;
        Ok(())
    }

    async fn session_developer(&self, s: &DeveloperSession) -> Result<DeveloperRow> {
        self.store()
            .get_developer(&s.developer_id)
            .await?
            .ok_or(Error::InvalidToken)
    }
}
