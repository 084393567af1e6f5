//! Who may use which device: bindings (owner by passcode or one-time bind token), shares to other
//! users (member: read and control; guest: read), and the access checks every device endpoint
//! makes for a user. Each change is announced on an [`AccessChange`] broadcast so live push drops a
//! device the moment access ends.
//!
//! A device the caller may not see answers `NotFound("device")`, exactly like an unknown did.

use crate::audit::action;
use crate::audit::{Actor, AuditEvent};
use crate::identity::accounts::{token_hash, Identity, UserSession};
use crate::identity::notify::{Notice, Purpose};
use crate::limits::name as limit;
use crate::secret::Place;
use crate::secret::{random_from, random_hex, Secret};
use crate::{Core, Error, Result};
use rampart_store::at_rest as col;
use rampart_store::{BindTokenRow, ShareInvitationRow, ShareRow, StoreError};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// One-time bind token lifetime.
pub const BIND_TOKEN_TTL_MS: i64 = 10 * 60_000;
/// Bind attempts per user per clock minute (counted in the store).
pub const BIND_ATTEMPTS_PER_MIN: usize = 10;

/// A user's role on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Member,
    Guest,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Member => "member",
            Role::Guest => "guest",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "owner" => Some(Role::Owner),
            "member" => Some(Role::Member),
            "guest" => Some(Role::Guest),
            _ => None,
        }
    }
    pub fn can_control(self) -> bool {
        matches!(self, Role::Owner | Role::Member)
    }
}

/// What a request needs on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Read,
    Control,
    Own,
}

/// A change of who may see a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessChange {
    /// `user` now has `role` on `did` (`None`: no access any more).
    Device {
        did: String,
        user_id: String,
        role: Option<Role>,
    },
    /// Nobody has access to `did` any more (owner unbound, factory reset).
    DeviceCleared { did: String },
    /// Some sessions of `user_id` ended; live connections recheck their token.
    Sessions { user_id: String },
}

/// Most live-push connections one user may hold at once.
pub const LIVE_PUSH_PER_USER: usize = 10;

/// Counts live-push connections per user.
#[derive(Debug, Default)]
pub(crate) struct LiveSlots {
    per_user: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

/// A held live-push slot; dropping it frees the slot.
pub struct LiveSlot {
    core: Core,
    user_id: String,
}

impl std::fmt::Debug for LiveSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSlot")
            .field("user_id", &self.user_id)
            .finish()
    }
}

impl Drop for LiveSlot {
    fn drop(&mut self) {
        let mut m = self
            .core
            .inner
            .accounts
            .live
            .per_user
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.user_id) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.user_id);
            }
        }
    }
}

/// How a bind proves the caller holds the device.
#[derive(Debug)]
pub enum BindProof {
    Passcode(Secret),
    Token(Secret),
}

#[derive(Debug, Serialize)]
pub struct BindingView {
    pub did: String,
    pub product_key: String,
    pub role: Role,
    pub bound_at: i64,
}

#[derive(Debug, Serialize)]
pub struct ShareView {
    pub share_id: String,
    pub did: String,
    pub role: Role,
    pub status: String,
    pub created_at: i64,
    pub accepted_at: Option<i64>,
}

/// A share as its owner sees it: with the invitee's e-mail or phone.
#[derive(Debug, Serialize)]
pub struct DeviceShareView {
    #[serde(flatten)]
    pub share: ShareView,
    pub user: String,
}

/// A fresh one-time bind token, shown once.
#[derive(Serialize)]
pub struct BindToken {
    #[serde(serialize_with = "expose")]
    pub token: Secret,
    pub expires_at: i64,
}

fn expose<S: serde::Serializer>(s: &Secret, ser: S) -> std::result::Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose())
}

impl std::fmt::Debug for BindToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BindToken(***)")
    }
}

fn share_view(s: ShareRow) -> ShareView {
    ShareView {
        role: Role::parse(&s.role).unwrap_or(Role::Guest),
        share_id: s.share_id,
        did: s.did,
        status: s.status,
        created_at: s.created_at,
        accepted_at: s.accepted_at,
    }
}

fn event(actor: &Actor, action: &str, outcome: &str, did: &str, ip: &Option<String>) -> AuditEvent {
    let ev = AuditEvent::new(actor, action, outcome).target(format!("device:{did}"));
    match ip {
        Some(ip) => ev.source_ip(ip.clone()),
        None => ev,
    }
}

impl Core {
    /// Subscribe to access changes (live push keeps its per-connection filter with it).
    pub fn subscribe_access(&self) -> broadcast::Receiver<AccessChange> {
        self.inner.accounts.access.subscribe()
    }

    /// Take one of the user's live-push slots; `RateLimited` when all are in use.
    pub fn live_push_slot(&self, user_id: &str) -> Result<LiveSlot> {
        let mut m = self
            .inner
            .accounts
            .live
            .per_user
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let n = m.entry(user_id.to_owned()).or_default();
        if *n >= LIVE_PUSH_PER_USER {
            return Err(Error::RateLimited(format!(
                "at most {LIVE_PUSH_PER_USER} live push connections per user"
            )));
        }
        *n += 1;
        Ok(LiveSlot {
            core: self.clone(),
            user_id: user_id.to_owned(),
        })
    }

    pub(crate) fn access_changed(&self, c: AccessChange) {
        let _ = self.inner.accounts.access.send(c);
    }

    pub(crate) fn sessions_changed(&self, user_id: &str) {
        self.access_changed(AccessChange::Sessions {
            user_id: user_id.to_owned(),
        });
    }

    /// The user's role on a device, if any.
    pub async fn device_role(&self, user_id: &str, did: &str) -> Result<Option<Role>> {
        Ok(self
            .store()
            .binding_role(did, user_id)
            .await?
            .as_deref()
            .and_then(Role::parse))
    }

    /// Every device the user may read, with the role.
    pub async fn user_devices(&self, user_id: &str) -> Result<Vec<(String, Role)>> {
        Ok(self
            .store()
            .user_device_roles(user_id)
            .await?
            .into_iter()
            .filter_map(|(d, r)| Role::parse(&r).map(|r| (d, r)))
            .collect())
    }

    /// Check the user's access to `did`: no role at all is `NotFound("device")` (as for an unknown
    /// did); a role too weak for `need` is `Forbidden`.
    pub async fn authorize_device(&self, user_id: &str, did: &str, need: Need) -> Result<Role> {
        let role = self
            .device_role(user_id, did)
            .await?
            .ok_or(Error::NotFound("device"))?;
        let ok = match need {
            Need::Read => true,
            Need::Control => role.can_control(),
            Need::Own => role == Role::Owner,
        };
        if ok {
            Ok(role)
        } else {
            Err(Error::Forbidden(format!(
                "your role on this device ({}) does not allow this",
                role.as_str()
            )))
        }
    }

    /// The device passcode (administrators and manufacturers only).
    pub async fn device_passcode(&self, did: &str) -> Result<Secret> {
        let row = self
            .store()
            .get_device(did)
            .await?
            .ok_or(Error::NotFound("device"))?;
        Ok(self
            .key()
            .open_string(Place::new(col::DEVICE_PASSCODE, did), &row.passcode_enc)?)
    }

    /// Bind the caller to a device. With a passcode the caller becomes the owner (a device that
    /// already has one answers `Conflict`); with a one-time token from the owner, a member (the
    /// owner if the device has none). Wrong proofs and unknown dids are both `NotFound("device")`.
    /// Returns the role and whether the binding is new.
    pub async fn bind(
        &self,
        s: &UserSession,
        did: &str,
        proof: BindProof,
        ip: Option<String>,
    ) -> Result<(Role, bool)> {
        let res = self.bind_inner(s, did, proof).await;
        let outcome = match &res {
            Ok((r, true)) => format!("ok role={}", r.as_str()),
            Ok((r, false)) => format!("already bound role={}", r.as_str()),
            Err(e) => format!("refused: {e}"),
        };
        self.audit(event(&s.actor(), action::DEVICE_BIND, &outcome, did, &ip))
            .await;
        if let Ok((role, true)) = &res {
            self.access_changed(AccessChange::Device {
                did: did.to_owned(),
                user_id: s.user_id.clone(),
                role: Some(*role),
            });
        }
        res
    }

    async fn bind_inner(
        &self,
        s: &UserSession,
        did: &str,
        proof: BindProof,
    ) -> Result<(Role, bool)> {
        let now = self.now_ms();
        // The try is claimed in the store (shared by every node) before any proof is compared.
        let window_start = now - now.rem_euclid(60_000);
        let counter = format!("bind:{}", s.user_id);
        if !self
            .store()
            .claim_counter(&counter, window_start, 60_000, BIND_ATTEMPTS_PER_MIN as i64)
            .await?
        {
            crate::limits::api::count_refusal(limit::BIND_USER);
            return Err(Error::RateLimited(format!(
                "at most {BIND_ATTEMPTS_PER_MIN} bind attempts per minute"
            )));
        }
        let device = self.store().get_device(did).await?;
        let app_products = self.app_products(&s.app_id).await?.unwrap_or_default();
        let proven = match (&device, &proof) {
            (Some(d), BindProof::Passcode(p)) => {
                let real = self
                    .key()
                    .open_string(Place::new(col::DEVICE_PASSCODE, &d.did), &d.passcode_enc)?;
                let a = real.expose().as_bytes();
                let b = p.expose().trim().to_ascii_uppercase();
                bool::from(subtle::ConstantTimeEq::ct_eq(a, b.as_bytes()))
            }
            (Some(_), BindProof::Token(t)) => self
                .store()
                .take_bind_token(&token_hash(t.expose()), did, now)
                .await?
                .is_some(),
            (None, _) => false,
        };
        let Some(device) = device.filter(|d| proven && app_products.contains(&d.product_key))
        else {
            return Err(Error::NotFound("device"));
        };
        if let Some(role) = self.device_role(&s.user_id, did).await? {
            return Ok((role, false));
        }
        let has_owner = self.store().device_owner(&device.did).await?.is_some();
        let role = match (&proof, has_owner) {
            (BindProof::Passcode(_), true) => {
                return Err(Error::Conflict(
                    "this device already has an owner; ask them to share it".into(),
                ))
            }
            (BindProof::Token(_), true) => Role::Member,
            (_, false) => Role::Owner,
        };
        match self
            .store()
            .insert_binding(did, &s.user_id, role.as_str(), None, now)
            .await
        {
            Ok(()) => Ok((role, true)),
            Err(StoreError::Conflict) => Err(Error::Conflict(
                "this device already has an owner; ask them to share it".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Unbind: the owner's unbind removes every binding and share of the device; anyone else
    /// removes only their own.
    pub async fn unbind(&self, s: &UserSession, did: &str, ip: Option<String>) -> Result<()> {
        let role = self.authorize_device(&s.user_id, did, Need::Read).await?;
        if role == Role::Owner {
            let users = self.store().unbind_all(did).await?;
            self.access_changed(AccessChange::DeviceCleared {
                did: did.to_owned(),
            });
            self.audit(
                event(&s.actor(), action::DEVICE_UNBIND, "ok", did, &ip)
                    .detail(format!("owner; users unbound={}", users.len())),
            )
            .await;
        } else {
            self.store().delete_binding(did, &s.user_id).await?;
            self.access_changed(AccessChange::Device {
                did: did.to_owned(),
                user_id: s.user_id.clone(),
                role: None,
            });
            self.audit(
                event(&s.actor(), action::DEVICE_UNBIND, "ok", did, &ip).detail(role.as_str()),
            )
            .await;
        }
        Ok(())
    }

    /// Remove every binding, share and bind token of a device (after a factory reset).
    pub async fn unbind_everyone(&self, did: &str, actor: &Actor, reason: &str) -> Result<()> {
        let users = self.store().unbind_all(did).await?;
        self.access_changed(AccessChange::DeviceCleared {
            did: did.to_owned(),
        });
        self.audit(
            AuditEvent::new(actor, action::DEVICE_UNBIND_ALL, "ok")
                .target(format!("device:{did}"))
                .detail(format!("{reason}; users unbound={}", users.len())),
        )
        .await;
        Ok(())
    }

    pub async fn list_bindings(
        &self,
        user_id: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<BindingView>, i64)> {
        let (rows, total) = self.store().list_bindings(user_id, offset, limit).await?;
        Ok((
            rows.into_iter()
                .map(|b| BindingView {
                    role: Role::parse(&b.role).unwrap_or(Role::Guest),
                    did: b.did,
                    product_key: b.product_key,
                    bound_at: b.created_at,
                })
                .collect(),
            total,
        ))
    }

    /// A one-time token (10 minutes) that binds another user as a member, e.g. through a QR code.
    pub async fn create_bind_token(
        &self,
        s: &UserSession,
        did: &str,
        ip: Option<String>,
    ) -> Result<BindToken> {
        self.authorize_device(&s.user_id, did, Need::Own).await?;
        let token = Secret::new(format!("rbt_{}", random_hex(32)));
        let now = self.now_ms();
        let expires_at = now + self.config().lifetimes.bind_token_ms;
        self.store()
            .insert_bind_token(&BindTokenRow {
                token_hash: token_hash(token.expose()),
                did: did.to_owned(),
                created_by: s.user_id.clone(),
                expires_at,
                created_at: now,
            })
            .await?;
        self.audit(event(&s.actor(), action::DEVICE_BIND_TOKEN, "ok", did, &ip))
            .await;
        Ok(BindToken { token, expires_at })
    }

    /// Offer a device to another user (owner only); pending until the invitee accepts.
    pub async fn create_share(
        &self,
        s: &UserSession,
        did: &str,
        invitee: Identity,
        role: Role,
        ip: Option<String>,
    ) -> Result<String> {
        self.authorize_device(&s.user_id, did, Need::Own).await?;
        if role == Role::Owner {
            return Err(Error::Invalid("role must be `member` or `guest`".into()));
        }
        let found = self
            .store()
            .find_user(invitee.email(), invitee.phone())
            .await?
            .filter(|u| u.active);
        // An address with no account gets the same answer as any other (so sharing does not tell
        // which addresses are registered) and a sign-up invitation.
        let Some(user) = found else {
            return self.invite_to_share(s, did, &invitee, role, ip).await;
        };
        if user.user_id == s.user_id {
            return Err(Error::Invalid(
                "you cannot share a device with yourself".into(),
            ));
        }
        if self.store().find_share(did, &user.user_id).await?.is_some()
            || self.device_role(&user.user_id, did).await?.is_some()
        {
            return Err(Error::Conflict(
                "this user already has or was offered access to the device".into(),
            ));
        }
        let share_id = format!(
            "sh_{}",
            random_from(b"abcdefghijklmnopqrstuvwxyz0123456789", 20)
        );
        self.store()
            .insert_share(&ShareRow {
                share_id: share_id.clone(),
                did: did.to_owned(),
                owner_id: s.user_id.clone(),
                invitee_id: user.user_id.clone(),
                role: role.as_str().to_owned(),
                status: "pending".into(),
                created_at: self.now_ms(),
                accepted_at: None,
            })
            .await?;
        self.audit(
            event(&s.actor(), action::DEVICE_SHARE, "ok", did, &ip).detail(format!(
                "share={share_id} invitee={} role={}",
                user.user_id,
                role.as_str()
            )),
        )
        .await;
        Ok(share_id)
    }

    /// A share to an address with no account: stored as an invitation (a pending share once an
    /// account with the address exists) and announced to the address. The answer is a share id
    /// like any other; the invitation message is subject to the code windows of the address and
    /// of the source IP (`share_invite`), and past them is not sent (the share still stands).
    async fn invite_to_share(
        &self,
        s: &UserSession,
        did: &str,
        invitee: &Identity,
        role: Role,
        ip: Option<String>,
    ) -> Result<String> {
        if self
            .store()
            .find_share_invitation(did, invitee.email(), invitee.phone())
            .await?
            .is_some()
        {
            return Err(Error::Conflict(
                "this user already has or was offered access to the device".into(),
            ));
        }
        let share_id = format!(
            "sh_{}",
            random_from(b"abcdefghijklmnopqrstuvwxyz0123456789", 20)
        );
        self.store()
            .insert_share_invitation(&ShareInvitationRow {
                share_id: share_id.clone(),
                did: did.to_owned(),
                owner_id: s.user_id.clone(),
                email: invitee.email().map(str::to_owned),
                phone: invitee.phone().map(str::to_owned),
                role: role.as_str().to_owned(),
                created_at: self.now_ms(),
            })
            .await?;
        let sent = self
            .limits()
            .check_code(
                "share_invite",
                invitee.as_str(),
                ip.as_deref(),
                self.now_ms(),
            )
            .is_ok();
        if sent {
            self.notify(Notice::new(
                invitee.as_str(),
                invitee.channel(),
                Purpose::ShareInvite,
                None,
            ));
        }
        self.audit(
            event(&s.actor(), action::DEVICE_SHARE, "invited", did, &ip).detail(format!(
                "share={share_id} invitee=no account role={} message={}",
                role.as_str(),
                if sent { "sent" } else { "limited" }
            )),
        )
        .await;
        Ok(share_id)
    }

    /// Turn the invitations to the caller's address into pending shares (once the address has
    /// an account, on the caller's first look at their shares).
    async fn claim_invitations(&self, user_id: &str) -> Result<()> {
        let Some(u) = self.store().get_user(user_id).await? else {
            return Ok(());
        };
        if u.email.is_none() && u.phone.is_none() {
            return Ok(());
        }
        for sh in self
            .store()
            .claim_share_invitations(user_id, u.email.as_deref(), u.phone.as_deref())
            .await?
        {
            let ev = AuditEvent::new(&Actor::user(user_id), action::DEVICE_SHARE_CLAIM, "ok")
                .target(format!("device:{}", sh.did))
                .detail(format!("share={}", sh.share_id));
            self.audit(ev).await;
        }
        Ok(())
    }

    /// Accept a share offered to the caller.
    pub async fn accept_share(
        &self,
        s: &UserSession,
        share_id: &str,
        ip: Option<String>,
    ) -> Result<ShareView> {
        self.claim_invitations(&s.user_id).await?;
        let share = self
            .store()
            .get_share(share_id)
            .await?
            .filter(|sh| sh.invitee_id == s.user_id)
            .ok_or(Error::NotFound("share"))?;
        let now = self.now_ms();
        if share.status == "pending" {
            match self.store().accept_share(&share, now).await {
                Ok(_) => {}
                Err(StoreError::Conflict) => {
                    return Err(Error::Conflict(
                        "you already have access to this device".into(),
                    ))
                }
                Err(e) => return Err(e.into()),
            }
            let role = Role::parse(&share.role).unwrap_or(Role::Guest);
            self.access_changed(AccessChange::Device {
                did: share.did.clone(),
                user_id: s.user_id.clone(),
                role: Some(role),
            });
            self.audit(
                event(
                    &s.actor(),
                    action::DEVICE_SHARE_ACCEPT,
                    "ok",
                    &share.did,
                    &ip,
                )
                .detail(format!("share={share_id} role={}", share.role)),
            )
            .await;
        }
        let share = self
            .store()
            .get_share(share_id)
            .await?
            .ok_or(Error::NotFound("share"))?;
        Ok(share_view(share))
    }

    pub async fn list_shares(
        &self,
        user_id: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<ShareView>, i64)> {
        self.claim_invitations(user_id).await?;
        let (rows, total) = self.store().list_shares_for(user_id, offset, limit).await?;
        Ok((rows.into_iter().map(share_view).collect(), total))
    }

    /// The shares of the caller's device (owner only), with the invitee's name.
    pub async fn device_shares(&self, s: &UserSession, did: &str) -> Result<Vec<DeviceShareView>> {
        self.authorize_device(&s.user_id, did, Need::Own).await?;
        let mut out = Vec::new();
        for sh in self.store().list_shares_of_device(did).await? {
            let user = self.store().get_user(&sh.invitee_id).await?;
            out.push(DeviceShareView {
                user: user.and_then(|u| u.email.or(u.phone)).unwrap_or_default(),
                share: share_view(sh),
            });
        }
        // Invitations to addresses with no account yet look like any pending share.
        for inv in self.store().list_share_invitations_of_device(did).await? {
            out.push(DeviceShareView {
                user: inv.email.or(inv.phone).unwrap_or_default(),
                share: ShareView {
                    role: Role::parse(&inv.role).unwrap_or(Role::Guest),
                    share_id: inv.share_id,
                    did: inv.did,
                    status: "pending".into(),
                    created_at: inv.created_at,
                    accepted_at: None,
                },
            });
        }
        out.sort_by_key(|v| std::cmp::Reverse(v.share.created_at));
        Ok(out)
    }

    /// Decline a share offered to the caller, or give up an accepted one.
    pub async fn decline_share(
        &self,
        s: &UserSession,
        share_id: &str,
        ip: Option<String>,
    ) -> Result<()> {
        let share = self
            .store()
            .get_share(share_id)
            .await?
            .filter(|sh| sh.invitee_id == s.user_id)
            .ok_or(Error::NotFound("share"))?;
        self.store().delete_share(share_id).await?;
        self.access_changed(AccessChange::Device {
            did: share.did.clone(),
            user_id: s.user_id.clone(),
            role: None,
        });
        self.audit(
            event(
                &s.actor(),
                action::DEVICE_SHARE_DECLINE,
                "ok",
                &share.did,
                &ip,
            )
            .detail(format!("share={share_id} status={}", share.status)),
        )
        .await;
        Ok(())
    }

    /// Revoke a share of the caller's device (owner only): the invitee loses access at once.
    pub async fn revoke_share(
        &self,
        s: &UserSession,
        did: &str,
        share_id: &str,
        ip: Option<String>,
    ) -> Result<()> {
        self.authorize_device(&s.user_id, did, Need::Own).await?;
        if self.store().delete_share_invitation(did, share_id).await? {
            self.audit(
                event(&s.actor(), action::DEVICE_SHARE_REVOKE, "ok", did, &ip)
                    .detail(format!("share={share_id} invitee=no account")),
            )
            .await;
            return Ok(());
        }
        let share = self
            .store()
            .get_share(share_id)
            .await?
            .filter(|sh| sh.did == did)
            .ok_or(Error::NotFound("share"))?;
        self.store().delete_share(share_id).await?;
        self.access_changed(AccessChange::Device {
            did: did.to_owned(),
            user_id: share.invitee_id.clone(),
            role: None,
        });
        self.audit(
            event(&s.actor(), action::DEVICE_SHARE_REVOKE, "ok", did, &ip)
                .detail(format!("share={share_id} invitee={}", share.invitee_id)),
        )
        .await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn live_push_slots_are_capped_per_user_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let store = rampart_store::Store::open_sqlite(&dir.path().join("t.db"))
            .await
            .unwrap();
        let core = Core::new(
            store,
            crate::secret::MasterKey::from_bytes(&[1; 32]),
            Default::default(),
        );
        let held: Vec<LiveSlot> = (0..LIVE_PUSH_PER_USER)
            .map(|_| core.live_push_slot("u1").unwrap())
            .collect();
        assert!(matches!(
            core.live_push_slot("u1"),
            Err(Error::RateLimited(_))
        ));
        let other = core.live_push_slot("u2").unwrap();
        drop(held);
        let again = core.live_push_slot("u1").unwrap();
        drop((other, again));
        assert!(core.inner.accounts.live.per_user.lock().unwrap().is_empty());
    }

    #[test]
    fn roles() {
        assert!(Role::Owner.can_control() && Role::Member.can_control());
        assert!(!Role::Guest.can_control());
        for r in [Role::Owner, Role::Member, Role::Guest] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("admin"), None);
    }
}
