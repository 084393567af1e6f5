//! End-user accounts: client apps, sign-up with an activation code, login with lockout, opaque
//! access/refresh tokens in families (rotation, reuse detection), logout, password change and reset.
//!
//! Tokens are 256 random bits from the OS CSPRNG, shown once, stored only as SHA-256. Every login
//! failure (unknown user, wrong password, locked account) answers the same [`Error::LoginFailed`],
//! and an unknown user still costs one Argon2 verification.

use crate::audit::action;
use crate::audit::{Actor, AuditEvent};
use crate::identity::notify::{Channel, Notice, Purpose};
use crate::identity::password;
use crate::secret::{random_from, random_hex, Secret};
use crate::{Core, Error, Result};
use rampart_store::{AppRow, CodeRow, LockState, RefreshUse, StoreError, UserRow};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// Default access-token lifetime (`CoreConfig::access_ttl_ms`).
pub const ACCESS_TTL_MS: i64 = 15 * 60_000;
/// Default refresh-token lifetime (`CoreConfig::refresh_ttl_ms`); each rotation starts a new one.
pub const REFRESH_TTL_MS: i64 = 30 * 24 * 3_600_000;
/// One-time code lifetime.
pub const CODE_TTL_MS: i64 = 10 * 60_000;
/// Wrong guesses a one-time code survives.
pub const CODE_MAX_ATTEMPTS: i64 = 5;
/// Failed logins within [`FAIL_WINDOW_MS`] that lock the account.
pub const MAX_FAILURES: i64 = 5;
pub const FAIL_WINDOW_MS: i64 = 15 * 60_000;
/// The first lockout; each further one doubles, up to [`MAX_LOCK_MS`].
pub const BASE_LOCK_MS: i64 = 60_000;
pub const MAX_LOCK_MS: i64 = 24 * 3_600_000;

/// SHA-256 of a token, hex: the only form a token is stored in.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh opaque token: a type prefix and 256 random bits.
fn new_token(prefix: &str) -> Secret {
    Secret::new(format!("{prefix}{}", random_hex(32)))
}

pub mod lockout;

/// An e-mail address (trimmed, lowercased) or an E.164 phone number: how a user is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Email(String),
    Phone(String),
}

impl Identity {
    pub fn parse_email(s: &str) -> Result<Identity> {
        let e = s.trim().to_lowercase();
        let ok = e.len() <= 254
            && e.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && local.len() <= 64
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains('@')
            })
            && !e.chars().any(|c| c.is_whitespace() || c.is_control());
        if ok {
            Ok(Identity::Email(e))
        } else {
            Err(Error::Invalid("email is not a valid address".into()))
        }
    }

    pub fn parse_phone(s: &str) -> Result<Identity> {
        let p: String = s
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
            .collect();
        let digits = p.strip_prefix('+').unwrap_or("");
        if (7..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
        {
            Ok(Identity::Phone(p))
        } else {
            Err(Error::Invalid(
                "phone must be in international form, e.g. +4915123456789".into(),
            ))
        }
    }

    /// Exactly one of the two fields.
    pub fn from_fields(email: Option<&str>, phone: Option<&str>) -> Result<Identity> {
        match (email, phone) {
            (Some(e), None) => Identity::parse_email(e),
            (None, Some(p)) => Identity::parse_phone(p),
            _ => Err(Error::Invalid(
                "give exactly one of `email` or `phone`".into(),
            )),
        }
    }

    /// A login name: an e-mail when it has an `@`, a phone number otherwise.
    pub fn parse_username(s: &str) -> Result<Identity> {
        if s.contains('@') {
            Identity::parse_email(s)
        } else {
            Identity::parse_phone(s)
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Identity::Email(s) | Identity::Phone(s) => s,
        }
    }

    pub fn email(&self) -> Option<&str> {
        match self {
            Identity::Email(s) => Some(s),
            Identity::Phone(_) => None,
        }
    }

    pub fn phone(&self) -> Option<&str> {
        match self {
            Identity::Phone(s) => Some(s),
            Identity::Email(_) => None,
        }
    }

    pub fn channel(&self) -> Channel {
        match self {
            Identity::Email(_) => Channel::Email,
            Identity::Phone(_) => Channel::Sms,
        }
    }
}

/// The answer to app creation: the only time the secret is shown.
#[derive(Serialize)]
pub struct CreatedApp {
    pub app_id: String,
    pub app_secret: String,
}

impl fmt::Debug for CreatedApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedApp")
            .field("app_id", &self.app_id)
            .field("app_secret", &"***")
            .finish()
    }
}

/// The body of `POST /v1/apps`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewApp {
    pub name: String,
    pub product_keys: Vec<String>,
}

/// A token pair, shown once to the user who logged in or refreshed.
#[derive(Serialize)]
pub struct TokenPair {
    #[serde(serialize_with = "expose")]
    pub access_token: Secret,
    #[serde(serialize_with = "expose")]
    pub refresh_token: Secret,
    /// Seconds the access token lives.
    pub expires_in: i64,
}

fn expose<S: serde::Serializer>(s: &Secret, ser: S) -> std::result::Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose())
}

impl fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenPair(***)")
    }
}

/// The authenticated user behind an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSession {
    pub user_id: String,
    /// The login this token belongs to.
    pub family_id: String,
    pub app_id: String,
    /// Unix ms when this access token expires.
    pub expires_at: i64,
}

impl UserSession {
    pub fn actor(&self) -> Actor {
        Actor::user(&self.user_id)
    }
}

/// The public view of a user.
#[derive(Debug, Serialize)]
pub struct UserView {
    pub user_id: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub active: bool,
    pub created_at: i64,
}

const ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn code_hash(purpose: Purpose, recipient: &str, code: &str) -> String {
    token_hash(&format!("{}|{recipient}|{code}", purpose.as_str()))
}

fn event(actor: &Actor, action: &str, outcome: &str, ip: &Option<String>) -> AuditEvent {
    let ev = AuditEvent::new(actor, action, outcome);
    match ip {
        Some(ip) => ev.source_ip(ip.clone()),
        None => ev,
    }
}

impl Core {
    // ---- apps ----

    /// Create a client app for some products; returns its id and (once) its secret.
    pub async fn create_app(
        &self,
        app: NewApp,
        actor: &Actor,
        ip: Option<String>,
    ) -> Result<CreatedApp> {
        let name = app.name.trim();
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return Err(Error::Invalid("name: 1-128 printable characters".into()));
        }
        if app.product_keys.is_empty() || app.product_keys.len() > 100 {
            return Err(Error::Invalid("product_keys: 1-100 product keys".into()));
        }
        let mut keys = app.product_keys.clone();
        keys.sort();
        keys.dedup();
        for pk in &keys {
            if rampart_proto::ids::ProductKey::parse(pk).is_err() {
                return Err(Error::NotFound("product"));
            }
            self.product(pk).await?;
        }
        let app_id = format!("app_{}", random_from(ID_ALPHABET, 16));
        let secret = Secret::new(random_hex(32));
        let row = AppRow {
            app_id: app_id.clone(),
            name: name.to_owned(),
            secret_hash: token_hash(secret.expose()),
            product_keys: serde_json::to_string(&keys)
                .map_err(|e| Error::Internal(e.to_string()))?,
            created_at: self.now_ms(),
        };
        self.store().insert_app(&row).await.map_err(|e| match e {
            StoreError::Conflict => Error::Conflict("app id collision; retry".into()),
            e => e.into(),
        })?;
        self.audit(event(actor, action::APP_CREATE, "ok", &ip).target(format!("app:{app_id}")))
            .await;
        Ok(CreatedApp {
            app_id,
            app_secret: secret.expose().to_owned(),
        })
    }

    /// The product keys an app serves; `None` for an unknown app.
    pub async fn app_products(&self, app_id: &str) -> Result<Option<Vec<String>>> {
        if app_id.is_empty() || app_id.len() > 64 {
            return Ok(None);
        }
        match self.store().get_app(app_id).await? {
            Some(a) => Ok(Some(
                serde_json::from_str(&a.product_keys).unwrap_or_default(),
            )),
            None => Ok(None),
        }
    }

    async fn require_app(&self, app_id: &str) -> Result<()> {
        match self.app_products(app_id).await? {
            Some(_) => Ok(()),
            None => Err(Error::Invalid(
                "missing or unknown X-Rampart-App-Id header".into(),
            )),
        }
    }

    // ---- sign-up and activation ----

    /// Send a one-time code in the background (uniform timing whatever the recipient).
    async fn send_code(&self, who: &Identity, purpose: Purpose) -> Result<()> {
        let code = Secret::new(random_from(b"0123456789", 6));
        let now = self.now_ms();
        self.store()
            .put_code(&CodeRow {
                recipient: who.as_str().to_owned(),
                purpose: purpose.as_str().to_owned(),
                code_hash: code_hash(purpose, who.as_str(), code.expose()),
                expires_at: now + self.config().lifetimes.code_ms,
                attempts: 0,
                created_at: now,
            })
            .await?;
        self.notify(
            Notice::new(who.as_str(), who.channel(), purpose, Some(code))
                .valid_for(self.config().lifetimes.code_ms),
        );
        Ok(())
    }

    /// Hand a notice to the configured notifier without waiting; failures are logged.
    pub fn notify(&self, mut notice: Notice) {
        notice.created_at = self.now_ms();
        let n = self.notifier();
        tokio::spawn(async move {
            if let Err(e) = n.send(&notice).await {
                tracing::error!(error = %e, purpose = notice.purpose.as_str(), "notification not sent");
            }
        });
    }

    /// Check a one-time code; it dies after [`CODE_MAX_ATTEMPTS`] wrong guesses, its expiry, or
    /// its use. Every failure is `InvalidCode`.
    async fn use_code(&self, who: &Identity, purpose: Purpose, code: &str) -> Result<()> {
        let (r, p) = (who.as_str(), purpose.as_str());
        let given = code_hash(purpose, r, code.trim());
        self.spend_code(r, p, &given).await
    }

    /// Spend the code stored for (recipient, purpose) if its hash is `given`. The try is claimed
    /// in the store before the hashes are compared, so however many guesses arrive at once, at
    /// most [`CODE_MAX_ATTEMPTS`] are ever compared; the right code is spent by one caller only.
    pub(crate) async fn spend_code(
        &self,
        recipient: &str,
        purpose: &str,
        given: &str,
    ) -> Result<()> {
        let store = self.store();
        let Some(stored) = store
            .claim_code_attempt(recipient, purpose, CODE_MAX_ATTEMPTS, self.now_ms())
            .await?
        else {
            return Err(Error::InvalidCode);
        };
        let ok: bool = subtle::ConstantTimeEq::ct_eq(given.as_bytes(), stored.as_bytes()).into();
        if ok && store.take_code(recipient, purpose, &stored).await? {
            Ok(())
        } else {
            Err(Error::InvalidCode)
        }
    }

    /// Claim a login try of a user (see [`lockout::LoginClaim`]).
    pub(crate) async fn claim_user_try(&self, user_id: &str) -> Result<lockout::LoginClaim> {
        let now = self.now_ms();
        let seen = self
            .store()
            .update_lock_state(user_id, |st| lockout::claim(st, now))
            .await?;
        Ok(lockout::claimed(seen, now))
    }

    /// Count a lockout that a failed try caused (metric and audit).
    pub(crate) async fn user_lockout(
        &self,
        actor: &Actor,
        claim: lockout::LoginClaim,
        ip: &Option<String>,
    ) {
        if let lockout::LoginClaim::Counted {
            after, locks: true, ..
        } = claim
        {
            metrics::counter!(crate::telemetry::ACCOUNT_LOCKOUTS).increment(1);
            self.audit(
                event(actor, action::USER_LOCKOUT, "locked", ip).detail(format!(
                    "until={} lockouts={}",
                    after.locked_until, after.lockouts
                )),
            )
            .await;
        }
    }

    /// Sign up through `app_id`. An address that already has an account answers the same, and its
    /// owner is told by message instead (no enumeration through sign-up).
    pub async fn register_user(
        &self,
        app_id: &str,
        who: Identity,
        pw: Secret,
        ip: Option<String>,
    ) -> Result<()> {
        self.require_app(app_id).await?;
        self.limits()
            .check_signup("user", ip.as_deref(), self.now_ms())?;
        password::check(pw.expose(), who.email(), who.phone())?;
        let hash = self.passwords().hash(&pw).await?;
        let user_id = format!("u_{}", random_from(ID_ALPHABET, 20));
        let row = UserRow {
            user_id: user_id.clone(),
            email: who.email().map(str::to_owned),
            phone: who.phone().map(str::to_owned),
            password_hash: hash,
            active: false,
            app_id: app_id.to_owned(),
            created_at: self.now_ms(),
            failed_count: 0,
            first_failed_at: 0,
            locked_until: 0,
            lockouts: 0,
        };
        match self.store().insert_user(&row).await {
            Ok(()) => {
                self.audit(event(
                    &Actor::user(&user_id),
                    action::USER_REGISTER,
                    "ok",
                    &ip,
                ))
                .await;
                self.send_code(&who, Purpose::Activate).await
            }
            Err(StoreError::Conflict) => {
                if !self
                    .inner
                    .accounts
                    .notice
                    .check(who.as_str(), self.now_ms())
                {
                    return Ok(());
                }
                self.notify(Notice::new(
                    who.as_str(),
                    who.channel(),
                    Purpose::AlreadyRegistered,
                    None,
                ));
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Activate with the code sent at sign-up.
    pub async fn activate_user(&self, who: Identity, code: &str, ip: Option<String>) -> Result<()> {
        self.use_code(&who, Purpose::Activate, code).await?;
        let user = self
            .store()
            .find_user(who.email(), who.phone())
            .await?
            .ok_or(Error::InvalidCode)?;
        self.store().activate_user(&user.user_id).await?;
        self.audit(event(
            &Actor::user(&user.user_id),
            action::USER_ACTIVATE,
            "ok",
            &ip,
        ))
        .await;
        Ok(())
    }

    /// Send a new activation code (`limits.codes_per_recipient` and `limits.codes_per_ip`, by
    /// default one a minute, five an hour, ten a day per recipient). Answers the same whether or
    /// not an inactive account exists.
    pub async fn resend_activation(&self, who: Identity, ip: Option<String>) -> Result<()> {
        self.limits()
            .check_code("activate", who.as_str(), ip.as_deref(), self.now_ms())?;
        if let Some(u) = self.store().find_user(who.email(), who.phone()).await? {
            if !u.active {
                self.send_code(&who, Purpose::Activate).await?;
            }
        }
        Ok(())
    }
}

mod login;
mod passwords;

#[cfg(test)]
mod tests {
    use super::lockout::*;
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn five_failures_in_window_lock() {
        let mut s = LockState::default();
        for i in 0..4 {
            let (n, locked) = after_failure(s, 1_000 + i * MIN);
            assert!(!locked);
            s = n;
        }
        assert!(!is_locked(&s, 5 * MIN));
        let (s, locked) = after_failure(s, 1_000 + 4 * MIN);
        assert!(locked);
        assert!(is_locked(&s, 1_000 + 4 * MIN + BASE_LOCK_MS - 1));
        assert!(!is_locked(&s, 1_000 + 4 * MIN + BASE_LOCK_MS));
        assert_eq!(s.lockouts, 1);
    }

    #[test]
    fn failures_outside_the_window_start_over() {
        let mut s = LockState::default();
        for i in 0..4 {
            s = after_failure(s, i * MIN).0;
        }
        // the fifth comes 16 minutes after the first: the count restarts
        let (s, locked) = after_failure(s, 16 * MIN);
        assert!(!locked);
        assert_eq!((s.failed_count, s.first_failed_at), (1, 16 * MIN));
    }

    #[test]
    fn back_off_doubles_and_is_capped() {
        let mut s = LockState::default();
        let mut now = 0;
        let mut durations = Vec::new();
        for _ in 0..15 {
            for _ in 0..MAX_FAILURES {
                let (n, locked) = after_failure(s, now);
                s = n;
                if locked {
                    durations.push(s.locked_until - now);
                    now = s.locked_until;
                }
            }
        }
        assert_eq!(&durations[..4], &[MIN, 2 * MIN, 4 * MIN, 8 * MIN]);
        assert_eq!(*durations.last().unwrap(), MAX_LOCK_MS);
        assert_eq!(after_success(), LockState::default());
    }

    #[test]
    fn a_claim_counts_as_a_failure_until_given_back() {
        let now = 10 * MIN;
        let fresh = LockState::default();
        let written = claim(fresh, now).unwrap();
        assert_eq!((written.failed_count, written.first_failed_at), (1, now));
        let c = claimed(Some(fresh), now);
        assert_eq!(
            c,
            LoginClaim::Counted {
                before: fresh,
                after: written,
                locks: false
            }
        );
        // given back while nobody else claimed since; left alone once someone did
        assert_eq!(c.refund()(written), Some(fresh));
        let later = claim(written, now + 1).unwrap();
        assert_eq!(c.refund()(later), None);
        // the fifth claim locks; a locked account is claimed by nobody and compares nothing
        let mut s = fresh;
        for _ in 0..MAX_FAILURES - 1 {
            s = claim(s, now).unwrap();
        }
        assert!(matches!(
            claimed(Some(s), now),
            LoginClaim::Counted { locks: true, .. }
        ));
        let locked = claim(s, now).unwrap();
        assert!(is_locked(&locked, now));
        assert_eq!(claim(locked, now + 1), None);
        assert_eq!(claimed(Some(locked), now + 1), LoginClaim::Locked);
        assert_eq!(claimed(None, now), LoginClaim::Locked);
    }

    /// A core over a fresh SQLite store with one app and one active user; returns the core,
    /// the app id and the temp dir keeping the database alive.
    async fn core_with_user(email: &str, pw: &str) -> (Core, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = rampart_store::Store::open_sqlite(&dir.path().join("t.db"))
            .await
            .unwrap();
        let core = Core::new(
            store,
            crate::secret::MasterKey::from_bytes(&[3; 32]),
            Default::default(),
        );
        let p = core
            .create_product(crate::device::products::NewProduct {
                name: "lamp".into(),
                identity: Default::default(),
                report_limit_per_min: 60,
                datapoints: vec![],
                enterprise_id: None,
            })
            .await
            .unwrap();
        let app = core
            .create_app(
                NewApp {
                    name: "app".into(),
                    product_keys: vec![p.product_key],
                },
                &Actor::admin(),
                None,
            )
            .await
            .unwrap();
        let who = Identity::parse_email(email).unwrap();
        core.register_user(&app.app_id, who.clone(), Secret::new(pw.into()), None)
            .await
            .unwrap();
        let u = core
            .store()
            .find_user(who.email(), None)
            .await
            .unwrap()
            .unwrap();
        core.store().activate_user(&u.user_id).await.unwrap();
        (core, app.app_id, dir)
    }

    #[tokio::test]
    async fn refresh_rotates_and_reuse_revokes_the_family() {
        let pw = "velvet tundra oxide lantern";
        let (core, app, _dir) = core_with_user("r@example.com", pw).await;
        let login = || core.login(&app, "r@example.com", Secret::new(pw.into()), None);
        let first = login().await.unwrap();
        let other = login().await.unwrap();
        let s1 = core
            .authenticate_user(first.access_token.expose())
            .await
            .unwrap();
        let second = core
            .refresh_tokens(first.refresh_token.expose(), None)
            .await
            .unwrap();
        let s2 = core
            .authenticate_user(second.access_token.expose())
            .await
            .unwrap();
        assert_eq!(s1.family_id, s2.family_id);
        let mut changes = core.subscribe_access();
        // replaying the spent token: refused, and the family is gone
        assert!(matches!(
            core.refresh_tokens(first.refresh_token.expose(), None)
                .await,
            Err(Error::InvalidToken)
        ));
        assert!(matches!(
            changes.try_recv(),
            Ok(crate::access::bindings::AccessChange::Sessions { .. })
        ));
        assert!(core
            .refresh_tokens(second.refresh_token.expose(), None)
            .await
            .is_err());
        assert!(core
            .authenticate_user(second.access_token.expose())
            .await
            .is_err());
        // the other login is untouched
        assert!(core
            .authenticate_user(other.access_token.expose())
            .await
            .is_ok());
        assert!(core
            .refresh_tokens(other.refresh_token.expose(), None)
            .await
            .is_ok());
        // tokens are stored as hashes only
        assert!(core
            .store()
            .access_session(other.access_token.expose(), core.now_ms())
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn lockout_refuses_the_right_password_like_a_wrong_one() {
        let pw = "velvet tundra oxide lantern";
        let (core, app, _dir) = core_with_user("l@example.com", pw).await;
        let wrong = || {
            core.login(
                &app,
                "l@example.com",
                Secret::new("nope nope nope".into()),
                None,
            )
        };
        for _ in 0..MAX_FAILURES {
            assert!(matches!(wrong().await, Err(Error::LoginFailed)));
        }
        assert!(matches!(
            core.login(&app, "l@example.com", Secret::new(pw.into()), None)
                .await,
            Err(Error::LoginFailed)
        ));
        assert!(matches!(
            core.login(&app, "ghost@example.com", Secret::new(pw.into()), None)
                .await,
            Err(Error::LoginFailed)
        ));
        // once the lock has passed, the right password works and clears the count
        let u = core
            .store()
            .find_user(Some("l@example.com"), None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(u.lockouts, 1);
        assert!(u.locked_until > core.now_ms());
        core.store()
            .set_lock_state(
                &u.user_id,
                LockState {
                    locked_until: core.now_ms() - 1,
                    ..LockState::default()
                },
            )
            .await
            .unwrap();
        let pair = core
            .login(&app, "l@example.com", Secret::new(pw.into()), None)
            .await
            .unwrap();
        // wrong old passwords on a password change count toward the same lockout
        let s = core
            .authenticate_user(pair.access_token.expose())
            .await
            .unwrap();
        let change = |old: &str| {
            core.change_password(
                &s,
                Secret::new(old.into()),
                Secret::new("amber gravel quiet harbor".into()),
                None,
            )
        };
        for _ in 0..MAX_FAILURES {
            assert!(matches!(
                change("guess guess").await,
                Err(Error::Forbidden(_))
            ));
        }
        assert!(matches!(change(pw).await, Err(Error::Forbidden(_))));
        assert!(matches!(
            core.login(&app, "l@example.com", Secret::new(pw.into()), None)
                .await,
            Err(Error::LoginFailed)
        ));
    }

    #[test]
    fn identities() {
        assert_eq!(
            Identity::parse_email(" Alice@Example.COM ").unwrap(),
            Identity::Email("alice@example.com".into())
        );
        for bad in [
            "", "a", "a@b", "@b.c", "a@.c", "a b@c.d", "a@b.c.", "a@b@c.d",
        ] {
            assert!(Identity::parse_email(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Identity::parse_phone("+49 151-2345 6789").unwrap(),
            Identity::Phone("+4915123456789".into())
        );
        for bad in [
            "4915123456789",
            "+0151234567",
            "+12",
            "+1234567890123456",
            "+49abc1234567",
        ] {
            assert!(Identity::parse_phone(bad).is_err(), "{bad}");
        }
        assert!(Identity::from_fields(Some("a@b.cd"), Some("+15551234567")).is_err());
        assert!(Identity::from_fields(None, None).is_err());
        assert!(matches!(
            Identity::parse_username("+15551234567").unwrap(),
            Identity::Phone(_)
        ));
    }

    #[test]
    fn tokens_are_long_random_and_never_print() {
        let a = new_token("rat_");
        let b = new_token("rat_");
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 4 + 64);
        let pair = TokenPair {
            access_token: a.clone(),
            refresh_token: b,
            expires_in: 900,
        };
        assert!(!format!("{pair:?}").contains(&a.expose()[4..]));
        assert_eq!(token_hash("x").len(), 64);
        assert_ne!(token_hash(a.expose()), a.expose());
    }
}
