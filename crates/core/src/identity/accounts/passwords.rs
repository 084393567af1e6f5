//! Password change (ends every other session and third-party grant) and reset by a one-time
//! code sent to the account's e-mail or phone.

use super::*;

impl Core {
    /// Change the password (the old one must verify); ends the user's other sessions and every
    /// grant the user gave a third party.
    pub async fn change_password(
        &self,
        s: &UserSession,
        old: Secret,
        new: Secret,
        ip: Option<String>,
    ) -> Result<()> {
        let u = self
            .store()
            .get_user(&s.user_id)
            .await?
            .ok_or(Error::InvalidToken)?;
        // Wrong old passwords count toward the login lockout, so a stolen access token cannot be
        // used to guess the password; the try is claimed before the comparison.
        let admission = self.passwords().admit()?;
        let claim = self.claim_user_try(&u.user_id).await?;
        let verified = claim != lockout::LoginClaim::Locked
            && admission.verify(&old, Some(u.password_hash.clone())).await;
        if !verified {
            self.user_lockout(&s.actor(), claim, &ip).await;
            self.audit(
                event(&s.actor(), action::USER_PASSWORD_CHANGE, "failed", &ip)
                    .detail("wrong old password or locked"),
            )
            .await;
            return Err(Error::Forbidden("old_password is not correct".into()));
        }
        self.store()
            .update_lock_state(&u.user_id, claim.refund())
            .await?;
        password::check(new.expose(), u.email.as_deref(), u.phone.as_deref())?;
        let hash = self.passwords().hash(&new).await?;
        self.store().set_password(&u.user_id, &hash).await?;
        let n = self
            .store()
            .revoke_user_families(&u.user_id, Some(&s.family_id))
            .await?;
        // A third party's access ends with the password that allowed it.
        let grants = self.store().revoke_user_oauth_grants(&u.user_id).await?;
        self.sessions_changed(&u.user_id);
        self.audit(
            event(&s.actor(), action::USER_PASSWORD_CHANGE, "ok", &ip)
                .detail(format!("other sessions ended={n} grants ended={grants}")),
        )
        .await;
        Ok(())
    }

    /// Send a reset code when the account exists; answers the same either way.
    pub async fn request_password_reset(&self, who: Identity, ip: Option<String>) -> Result<()> {
        self.limits()
            .check_code("reset", who.as_str(), ip.as_deref(), self.now_ms())?;
        if let Some(u) = self.store().find_user(who.email(), who.phone()).await? {
            self.send_code(&who, Purpose::PasswordReset).await?;
            self.audit(event(
                &Actor::user(&u.user_id),
                action::USER_PASSWORD_RESET_REQUEST,
                "sent",
                &ip,
            ))
            .await;
        }
        Ok(())
    }

    /// Set a new password with a reset code; ends every session. Also activates the account (the
    /// code proves the address).
    pub async fn confirm_password_reset(
        &self,
        who: Identity,
        code: &str,
        new: Secret,
        ip: Option<String>,
    ) -> Result<()> {
        password::check(new.expose(), who.email(), who.phone())?;
        self.use_code(&who, Purpose::PasswordReset, code).await?;
        let u = self
            .store()
            .find_user(who.email(), who.phone())
            .await?
            .ok_or(Error::InvalidCode)?;
        let hash = self.passwords().hash(&new).await?;
        self.store().set_password(&u.user_id, &hash).await?;
        if !u.active {
            self.store().activate_user(&u.user_id).await?;
        }
        let n = self.store().revoke_user_families(&u.user_id, None).await?;
        // An account recovered by reset may have been used to grant a third party access.
        let n = n + self.store().revoke_user_oauth_grants(&u.user_id).await?;
        self.sessions_changed(&u.user_id);
        self.audit(
            event(
                &Actor::user(&u.user_id),
                action::USER_PASSWORD_RESET,
                "ok",
                &ip,
            )
            .detail(format!("sessions ended={n}")),
        )
        .await;
        Ok(())
    }
}
