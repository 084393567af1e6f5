//! An end user's own data: the export of everything held about them, and the deletion of their
//! account. Deleting needs proof that the account holder is at the keyboard now (the password,
//! or a login within [`FRESH_LOGIN_MS`]), so a stolen access token cannot erase an account.

use crate::access::bindings::AccessChange;
use crate::audit::{action, AuditEvent};
use crate::device::runtime::HistoryPoint;
use crate::identity::accounts::{lockout, UserSession};
use crate::secret::Secret;
use crate::{Core, Error, Result};
use rampart_store::{UserErased, UserRecords};

/// A login at most this old (Unix ms) may delete its account without typing the password again.
pub const FRESH_LOGIN_MS: i64 = 5 * 60 * 1000;
/// History entries per device in an export: the most recent ones.
pub const EXPORT_HISTORY_PER_DEVICE: i64 = 1000;

/// Everything held about one end user: their account rows, and the latest history of every
/// device they are bound to (newest first, at most [`EXPORT_HISTORY_PER_DEVICE`] entries each).
#[derive(Debug)]
pub struct UserExport {
    pub exported_at: i64,
    pub records: UserRecords,
    pub history: Vec<(String, Vec<HistoryPoint>)>,
}

impl Core {
    /// Everything held about the caller. Audited (`user.export`).
    pub async fn export_user(&self, s: &UserSession, ip: Option<String>) -> Result<UserExport> {
        let r = self
            .store()
            .user_records(&s.user_id)
            .await?
            .ok_or(Error::InvalidToken)?;
        let now = self.now_ms();
        let mut history = Vec::with_capacity(r.bindings.len());
        for b in &r.bindings {
            match self
                .device_history(&b.did, None, 0, now, EXPORT_HISTORY_PER_DEVICE)
                .await
            {
                Ok(points) => history.push((b.did.clone(), points)),
                // Deleted since the bindings were read: nothing of it is held any more.
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let out = UserExport {
            exported_at: now,
            records: r,
            history,
        };
        self.audit(
            AuditEvent::new(&s.actor(), action::USER_EXPORT, "ok")
                .target(format!("user:{}", s.user_id))
                .source_ip_opt(ip)
                .detail(format!(
                    "bindings={} devices_with_history={}",
                    out.records.bindings.len(),
                    out.history.iter().filter(|(_, h)| !h.is_empty()).count()
                )),
        )
        .await;
        Ok(out)
    }

    /// Delete the caller's account and everything tied to it (see [`rampart_store::Store::erase_user`]).
    /// Devices the user owned become unowned (their next owner binds with the passcode); their
    /// data stays with the manufacturer. With `password`, it must verify (a wrong one counts
    /// toward the login lockout); without, the session's login must be fresh. Audited
    /// (`user.delete`) under the user's id, which names nobody once the account is gone.
    pub async fn erase_user(
        &self,
        s: &UserSession,
        password: Option<Secret>,
        ip: Option<String>,
    ) -> Result<UserErased> {
        let u = self
            .store()
            .get_user(&s.user_id)
            .await?
            .ok_or(Error::InvalidToken)?;
        match password {
            Some(pw) => {
                let admission = self.passwords().admit()?;
                let claim = self.claim_user_try(&u.user_id).await?;
                let verified = claim != lockout::LoginClaim::Locked
                    && admission.verify(&pw, Some(u.password_hash.clone())).await;
                if !verified {
                    self.user_lockout(&s.actor(), claim, &ip).await;
                    self.audit(
                        AuditEvent::new(&s.actor(), action::USER_DELETE, "failed")
                            .source_ip_opt(ip)
                            .detail("wrong password or locked"),
                    )
                    .await;
                    return Err(Error::Forbidden("password is not correct".into()));
                }
                self.store()
                    .update_lock_state(&u.user_id, claim.refund())
                    .await?;
            }
            None => {
                let started = self.store().session_started_at(&s.family_id).await?;
                if started.is_none_or(|t| self.now_ms() - t > FRESH_LOGIN_MS) {
                    return Err(Error::Forbidden(format!(
                        "deleting the account needs \"password\", or a login in the last {} minutes",
                        FRESH_LOGIN_MS / 60_000
                    )));
                }
            }
        }
        let owned: Vec<String> = self
            .store()
            .user_device_roles(&u.user_id)
            .await?
            .into_iter()
            .filter(|(_, role)| role == "owner")
            .map(|(did, _)| did)
            .collect();
        let erased = self
            .store()
            .erase_user(&u.user_id)
            .await?
            .ok_or(Error::InvalidToken)?;
        for did in owned {
            self.access_changed(AccessChange::DeviceCleared { did });
        }
        // Messages kept by a local outbox name the address; they go with the account.
        for recipient in [u.email.as_deref(), u.phone.as_deref()]
            .into_iter()
            .flatten()
        {
            if let Err(e) = self.notifier().forget(recipient).await {
                tracing::error!(error = %e, "kept messages of an erased user not removed");
            }
        }
        self.sessions_changed(&u.user_id);
        self.audit(
            AuditEvent::new(&s.actor(), action::USER_DELETE, "ok")
                .target(format!("user:{}", u.user_id))
                .source_ip_opt(ip)
                .detail(format!(
                    "bindings={} shares={} grants={} sessions={} identity_links={} codes={}",
                    erased.bindings,
                    erased.shares,
                    erased.grants,
                    erased.sessions,
                    erased.identity_links,
                    erased.codes
                )),
        )
        .await;
        Ok(erased)
    }
}
