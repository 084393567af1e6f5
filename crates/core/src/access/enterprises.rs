//! Enterprises: a developer creates one and becomes its owner; owners invite developers by
//! e-mail (the invitee accepts while logged in), change roles and remove members; any member may
//! leave. An enterprise always keeps at least one owner. Products owned by developers or
//! enterprises, and the operator's suspension of an enterprise, are here too.
//!
//! Access decisions are not made here but in [`crate::access::tenancy`]; this module only asks for them.

use crate::access::tenancy::{decide, Act, Caller, Decision, EntRole, OwnerSpec};
use crate::audit::action;
use crate::audit::{Actor, AuditEvent};
use crate::device::products::NewProduct;
use crate::identity::developers::DeveloperSession;
use crate::secret::Place;
use crate::secret::{random_from, random_hex, Secret};
use crate::{Core, Error, Result};
use rampart_store::at_rest as col;
use rampart_store::{EnterpriseRow, InviteRow, MemberChange, StoreError};
use serde::Serialize;

const ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// An enterprise as one of its members (or the operator) sees it.
#[derive(Debug, Serialize)]
pub struct EnterpriseView {
    pub enterprise_id: String,
    pub name: String,
    pub suspended: bool,
    /// The caller's role (none for the operator).
    pub role: Option<EntRole>,
    pub created_at: i64,
}

/// The answer to product creation by a developer or the operator.
#[derive(Serialize)]
pub struct OwnedProduct {
    pub product_key: String,
    /// Shown once, and only to a caller allowed to see secrets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_secret: Option<String>,
}

impl std::fmt::Debug for OwnedProduct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedProduct")
            .field("product_key", &self.product_key)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize)]
pub struct MemberView {
    pub developer_id: String,
    pub email: String,
    pub role: String,
    pub created_at: i64,
}

#[derive(Debug, Serialize)]
pub struct InviteView {
    pub invite_id: String,
    pub enterprise_id: String,
    pub enterprise_name: String,
    pub email: String,
    pub role: String,
    pub invited_by: String,
    pub created_at: i64,
}

fn event(actor: &Actor, action: &str, ent: &str, ip: &Option<String>) -> AuditEvent {
    let ev = AuditEvent::new(actor, action, "ok")
        .target(format!("enterprise:{ent}"))
        .tenant(ent.to_owned());
    match ip {
        Some(ip) => ev.source_ip(ip.clone()),
        None => ev,
    }
}

fn check_name(name: &str) -> Result<&str> {
    let name = name.trim();
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "name must be 1-128 printable characters".into(),
        ));
    }
    Ok(name)
}

impl Core {
    /// Create an enterprise; the developer becomes its owner.
    pub async fn create_enterprise(
        &self,
        s: &DeveloperSession,
        name: &str,
        ip: Option<String>,
    ) -> Result<EnterpriseView> {
        let name = check_name(name)?;
        let row = EnterpriseRow {
            enterprise_id: format!("ent_{}", random_from(ID_ALPHABET, 20)),
            name: name.to_owned(),
            suspended: false,
            created_by: s.developer_id.clone(),
            created_at: self.now_ms(),
        };
        self.store()
            .insert_enterprise(&row)
            .await
            .map_err(|e| match e {
                StoreError::Conflict => Error::Conflict("enterprise id collision; retry".into()),
                e => e.into(),
            })?;
        self.audit(event(
            &s.actor(),
            action::ENTERPRISE_CREATE,
            &row.enterprise_id,
            &ip,
        ))
        .await;
        Ok(EnterpriseView {
            enterprise_id: row.enterprise_id,
            name: row.name,
            suspended: false,
            role: Some(EntRole::Owner),
            created_at: row.created_at,
        })
    }

    /// The operator creates an enterprise account, with a developer as its first owner or (no
    /// owner) with no member yet: the operator then invites its owners.
    pub async fn operator_create_enterprise(
        &self,
        actor: &Actor,
        name: &str,
        owner_developer_id: Option<&str>,
        ip: Option<String>,
    ) -> Result<EnterpriseView> {
        let name = check_name(name)?;
        if let Some(owner) = owner_developer_id {
            if owner.len() > 64 {
                return Err(Error::NotFound("developer"));
            }
            self.developer_view(owner).await?;
        }
        let row = EnterpriseRow {
            enterprise_id: format!("ent_{}", random_from(ID_ALPHABET, 20)),
            name: name.to_owned(),
            suspended: false,
            created_by: owner_developer_id.unwrap_or("operator").to_owned(),
            created_at: self.now_ms(),
        };
        let inserted = match owner_developer_id {
            Some(_) => self.store().insert_enterprise(&row).await,
            None => self.store().insert_enterprise_without_owner(&row).await,
        };
        inserted.map_err(|e| match e {
            StoreError::Conflict => Error::Conflict("enterprise id collision; retry".into()),
            e => e.into(),
        })?;
        self.audit(
            event(actor, action::ENTERPRISE_CREATE, &row.enterprise_id, &ip)
                .detail(format!("owner={}", owner_developer_id.unwrap_or("none"))),
        )
        .await;
        self.enterprise_view(&Caller::operator(), &row.enterprise_id)
            .await
    }

    /// The enterprises a developer belongs to (suspended ones included, flagged).
    pub async fn my_enterprises(&self, s: &DeveloperSession) -> Result<Vec<EnterpriseView>> {
        Ok(self
            .store()
            .developer_memberships(&s.developer_id)
            .await?
            .into_iter()
            .map(|m| EnterpriseView {
                role: EntRole::parse(&m.role),
                enterprise_id: m.enterprise_id,
                name: m.name,
                suspended: m.suspended,
                created_at: m.created_at,
            })
            .collect())
    }

    /// One enterprise, for its members and the operator (others: `NotFound`). Members of a
    /// suspended enterprise still see it, flagged `suspended`.
    pub async fn enterprise_view(&self, caller: &Caller, id: &str) -> Result<EnterpriseView> {
        let standing = self.enterprise_standing(caller, id).await?;
        let role = match (caller, standing) {
            (Caller::Operator(_), _) => None,
            (_, crate::access::tenancy::Standing::Member(r)) => Some(r),
            (Caller::Developer(d), crate::access::tenancy::Standing::SuspendedMember) => self
                .store()
                .member_role(id, d)
                .await?
                .as_deref()
                .and_then(EntRole::parse),
            _ => return Err(Error::NotFound("enterprise")),
        };
        let e = self
            .store()
            .get_enterprise(id)
            .await?
            .ok_or(Error::NotFound("enterprise"))?;
        Ok(EnterpriseView {
            enterprise_id: e.enterprise_id,
            name: e.name,
            suspended: e.suspended,
            role,
            created_at: e.created_at,
        })
    }

    /// The members of an enterprise (any member may read them).
    pub async fn enterprise_members(&self, caller: &Caller, id: &str) -> Result<Vec<MemberView>> {
        self.authorize_enterprise(caller, id, Act::Read).await?;
        Ok(self
            .store()
            .list_members(id)
            .await?
            .into_iter()
            .map(|m| MemberView {
                developer_id: m.developer_id,
                email: m.email,
                role: m.role,
                created_at: m.created_at,
            })
            .collect())
    }

    /// Invite a developer by e-mail (owners only). The address need not have an account yet.
    pub async fn invite_member(
        &self,
        caller: &Caller,
        id: &str,
        email: &str,
        role: EntRole,
        ip: Option<String>,
    ) -> Result<String> {
        self.authorize_enterprise(caller, id, Act::Members).await?;
        let who = crate::identity::accounts::Identity::parse_email(email)?;
        if let Some(d) = self.store().find_developer(who.as_str()).await? {
            if self
                .store()
                .member_role(id, &d.developer_id)
                .await?
                .is_some()
            {
                return Err(Error::Conflict("already a member".into()));
            }
        }
        let invite_id = format!("inv_{}", random_hex(16));
        let by = match caller {
            Caller::Operator(_) => "operator".to_owned(),
            Caller::Developer(d) => d.clone(),
        };
        self.store()
            .insert_invite(&InviteRow {
                invite_id: invite_id.clone(),
                enterprise_id: id.to_owned(),
                email: who.as_str().to_owned(),
                role: role.as_str().to_owned(),
                invited_by: by,
                created_at: self.now_ms(),
            })
            .await
            .map_err(|e| match e {
                StoreError::Conflict => {
                    Error::Conflict("this address already has an invitation".into())
                }
                e => e.into(),
            })?;
        self.audit(
            event(&caller.actor(), action::ENTERPRISE_INVITE, id, &ip)
                .detail(format!("invite={invite_id} role={}", role.as_str())),
        )
        .await;
        self.notify(crate::identity::notify::Notice::new(
            who.as_str(),
            crate::identity::notify::Channel::Email,
            crate::identity::notify::Purpose::EnterpriseInvite,
            None,
        ));
        Ok(invite_id)
    }

    /// The invitations addressed to the developer's e-mail.
    pub async fn my_invites(&self, s: &DeveloperSession) -> Result<Vec<InviteView>> {
        let dev = self.developer_view(&s.developer_id).await?;
        let mut out = Vec::new();
        for i in self.store().invites_for_email(&dev.email).await? {
            let name = match self.store().get_enterprise(&i.enterprise_id).await? {
                Some(e) => e.name,
                None => continue,
            };
            out.push(InviteView {
                invite_id: i.invite_id,
                enterprise_id: i.enterprise_id,
                enterprise_name: name,
                email: i.email,
                role: i.role,
                invited_by: i.invited_by,
                created_at: i.created_at,
            });
        }
        Ok(out)
    }

    /// The invitation `invite_id` if it is addressed to this developer (else `NotFound`).
    async fn own_invite(&self, s: &DeveloperSession, invite_id: &str) -> Result<InviteRow> {
        let dev = self.developer_view(&s.developer_id).await?;
        match self.store().get_invite(invite_id).await? {
            Some(i) if i.email == dev.email => Ok(i),
            _ => Err(Error::NotFound("invite")),
        }
    }

    /// Accept an invitation addressed to the caller's e-mail; returns the enterprise.
    pub async fn accept_invite(
        &self,
        s: &DeveloperSession,
        invite_id: &str,
        ip: Option<String>,
    ) -> Result<EnterpriseView> {
        let inv = self.own_invite(s, invite_id).await?;
        let done = self
            .store()
            .accept_invite(invite_id, &s.developer_id, self.now_ms())
            .await
            .map_err(|e| match e {
                StoreError::Conflict => Error::Conflict("already a member".into()),
                e => e.into(),
            })?;
        if !done {
            return Err(Error::NotFound("invite"));
        }
        self.tenancy_changed();
        self.audit(
            event(
                &s.actor(),
                action::ENTERPRISE_MEMBER_ADD,
                &inv.enterprise_id,
                &ip,
            )
            .detail(format!("invite={invite_id} role={}", inv.role)),
        )
        .await;
        self.enterprise_view(
            &Caller::Developer(s.developer_id.clone()),
            &inv.enterprise_id,
        )
        .await
    }

    /// Decline an invitation addressed to the caller.
    pub async fn decline_invite(
        &self,
        s: &DeveloperSession,
        invite_id: &str,
        ip: Option<String>,
    ) -> Result<()> {
        let inv = self.own_invite(s, invite_id).await?;
        self.store().delete_invite(invite_id).await?;
        self.audit(
            event(
                &s.actor(),
                action::ENTERPRISE_INVITE_DECLINE,
                &inv.enterprise_id,
                &ip,
            )
            .detail(format!("invite={invite_id}")),
        )
        .await;
        Ok(())
    }

    /// Change a member's role (owners only); the last owner cannot be demoted.
    pub async fn set_member_role(
        &self,
        caller: &Caller,
        id: &str,
        developer_id: &str,
        role: EntRole,
        ip: Option<String>,
    ) -> Result<()> {
        self.authorize_enterprise(caller, id, Act::Members).await?;
        match self
            .store()
            .change_member(id, developer_id, Some(role.as_str()))
            .await?
        {
            MemberChange::Done => {}
            MemberChange::NotMember => return Err(Error::NotFound("member")),
            MemberChange::LastOwner => return Err(last_owner()),
        }
        self.tenancy_changed();
        self.audit(
            event(&caller.actor(), action::ENTERPRISE_ROLE_CHANGE, id, &ip)
                .detail(format!("developer={developer_id} role={}", role.as_str())),
        )
        .await;
        Ok(())
    }

    /// Remove a member (owners), or leave (any member removing themselves). The last owner can
    /// do neither.
    pub async fn remove_member(
        &self,
        caller: &Caller,
        id: &str,
        developer_id: &str,
        ip: Option<String>,
    ) -> Result<()> {
        let leaving = matches!(caller, Caller::Developer(d) if d == developer_id);
        let act = if leaving { Act::Read } else { Act::Members };
        self.authorize_enterprise(caller, id, act).await?;
        match self.store().change_member(id, developer_id, None).await? {
            MemberChange::Done => {}
            MemberChange::NotMember => return Err(Error::NotFound("member")),
            MemberChange::LastOwner => return Err(last_owner()),
        }
        self.tenancy_changed();
        let action = if leaving {
            action::ENTERPRISE_MEMBER_LEAVE
        } else {
            action::ENTERPRISE_MEMBER_REMOVE
        };
        self.audit(
            event(&caller.actor(), action, id, &ip).detail(format!("developer={developer_id}")),
        )
        .await;
        Ok(())
    }

    /// Whether enterprise `id` is suspended (an unknown one counts as suspended).
    pub async fn enterprise_suspended(&self, id: &str) -> Result<bool> {
        Ok(self
            .store()
            .get_enterprise(id)
            .await?
            .is_none_or(|e| e.suspended))
    }

    /// Resolves at the next suspension or reinstatement of any enterprise made by this process.
    pub fn suspensions(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.suspensions.subscribe()
    }

    /// The operator suspends or reinstates an enterprise: while suspended its members cannot
    /// reach its products through the API, its access keys are refused (signed requests and
    /// event stream logins: `ENTERPRISE_SUSPENDED`), its live event stream sessions are closed
    /// and its webhooks deliver nothing (events stay queued and go out after reinstatement);
    /// the devices keep working.
    pub async fn set_enterprise_suspended(
        &self,
        actor: &Actor,
        id: &str,
        on: bool,
        ip: Option<String>,
    ) -> Result<EnterpriseView> {
        if id.len() > 64 || !self.store().set_enterprise_suspended(id, on).await? {
            return Err(Error::NotFound("enterprise"));
        }
        self.inner.suspensions.send_modify(|n| *n += 1);
        self.tenancy_changed();
        let action = if on {
            action::ENTERPRISE_SUSPEND
        } else {
            action::ENTERPRISE_UNSUSPEND
        };
        self.audit(event(actor, action, id, &ip)).await;
        self.enterprise_view(&Caller::operator(), id).await
    }

    // ---- products of developers and enterprises ----

    /// Create a product for a caller. A developer's product is personal unless `owner` names an
    /// enterprise in which the developer may manage (owner or admin). The operator's product has
    /// no owner unless `owner` names an enterprise or a developer. The answer holds the product
    /// secret only for a caller who may see secrets (an enterprise admin gets the key alone).
    pub async fn create_product_as(
        &self,
        caller: &Caller,
        mut p: NewProduct,
        owner: Option<OwnerSpec>,
        ip: Option<String>,
    ) -> Result<OwnedProduct> {
        let owner = match (owner, p.enterprise_id.take()) {
            (Some(_), Some(_)) => {
                return Err(Error::Invalid(
                    "give `owner` or the older `enterprise_id`, not both".into(),
                ))
            }
            (Some(o), None) => Some(o),
            (None, Some(e)) => Some(OwnerSpec::EnterpriseId(e)),
            (None, None) => None,
        };
        let developer = match (caller, owner) {
            (Caller::Developer(d), None | Some(OwnerSpec::Personal)) => Some(d.clone()),
            (Caller::Developer(_), Some(OwnerSpec::DeveloperId(_))) => {
                return Err(Error::Invalid(
                    "a developer creates products for themselves or an enterprise".into(),
                ))
            }
            (Caller::Developer(_), Some(OwnerSpec::EnterpriseId(e))) => {
                self.authorize_enterprise(caller, &e, Act::Manage).await?;
                p.enterprise_id = Some(e);
                None
            }
            (Caller::Operator(_), None) => None,
            (Caller::Operator(_), Some(OwnerSpec::Personal)) => {
                return Err(Error::Invalid(
                    "the operator has no personal space; omit `owner`".into(),
                ))
            }
            (Caller::Operator(_), Some(OwnerSpec::EnterpriseId(e))) => {
                self.authorize_enterprise(caller, &e, Act::Manage).await?;
                p.enterprise_id = Some(e);
                None
            }
            (Caller::Operator(_), Some(OwnerSpec::DeveloperId(d))) => {
                self.developer_view(&d).await?;
                Some(d)
            }
        };
        let tenant = p.enterprise_id.clone();
        let created = self.create_product_for(p, developer.as_deref()).await?;
        let mut ev = AuditEvent::new(&caller.actor(), action::PRODUCT_CREATE, "ok")
            .target(format!("product:{}", created.product_key));
        if let Some(t) = tenant {
            ev = ev.tenant(t);
        }
        if let Some(ip) = ip {
            ev = ev.source_ip(ip);
        }
        self.audit(ev).await;
        let standing = self.product_standing(caller, &created.product_key).await?;
        let show = decide(standing, Act::Secrets) == Decision::Allow;
        Ok(OwnedProduct {
            product_key: created.product_key,
            product_secret: show.then_some(created.product_secret),
        })
    }

    /// A page of the products a caller may read.
    pub async fn list_products_as(
        &self,
        caller: &Caller,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<crate::device::products::ProductInfo>, i64)> {
        match caller {
            Caller::Operator(_) => self.list_products(offset, limit).await,
            Caller::Developer(d) => {
                let (rows, total) = self
                    .store()
                    .list_developer_products(d, offset, limit)
                    .await?;
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    out.push((*self.product(&r.product_key).await?).clone());
                }
                Ok((out, total))
            }
        }
    }

    /// The product secret (operator and owners only; audited).
    pub async fn read_product_secret(
        &self,
        caller: &Caller,
        product_key: &str,
        ip: Option<String>,
    ) -> Result<Secret> {
        self.authorize_product(caller, product_key, Act::Secrets)
            .await?;
        let secret = self
            .product_secret(product_key)
            .await?
            .ok_or(Error::NotFound("product"))?;
        let mut ev = AuditEvent::new(&caller.actor(), action::PRODUCT_SECRET_READ, "ok")
            .target(format!("product:{product_key}"));
        if let Some(ip) = ip {
            ev = ev.source_ip(ip);
        }
        self.audit(ev).await;
        Ok(secret)
    }

    /// Replace the product secret (operator and owners only; audited). Devices already
    /// registered keep their own secrets; new registrations need the new product secret.
    pub async fn rotate_product_secret(
        &self,
        caller: &Caller,
        product_key: &str,
        ip: Option<String>,
    ) -> Result<Secret> {
        self.authorize_product(caller, product_key, Act::Secrets)
            .await?;
        let secret = Secret::new(random_hex(16));
        if !self
            .store()
            .set_product_secret(
                product_key,
                &self.key().seal(
                    Place::new(col::PRODUCT_SECRET, product_key),
                    secret.expose().as_bytes(),
                ),
            )
            .await?
        {
            return Err(Error::NotFound("product"));
        }
        let mut ev = AuditEvent::new(&caller.actor(), action::PRODUCT_SECRET_ROTATE, "ok")
            .target(format!("product:{product_key}"));
        if let Some(ip) = ip {
            ev = ev.source_ip(ip);
        }
        self.audit(ev).await;
        Ok(secret)
    }

    /// Replace a product's identity modes (who may register, and whether its devices may use a
    /// static password). CONNECTs from now on see the new modes; live sessions are left alone.
    /// Audited (`product.identity`).
    pub async fn set_product_identity(
        &self,
        caller: &Caller,
        product_key: &str,
        modes: crate::device::products::IdentityModes,
        ip: Option<String>,
    ) -> Result<std::sync::Arc<crate::device::products::ProductInfo>> {
        self.authorize_product(caller, product_key, Act::Manage)
            .await?;
        modes.check()?;
        if !self
            .store()
            .set_product_identity(product_key, &modes.into())
            .await?
        {
            return Err(Error::NotFound("product"));
        }
        self.forget_product(product_key);
        let mut ev = AuditEvent::new(&caller.actor(), action::PRODUCT_IDENTITY, "ok")
            .target(format!("product:{product_key}"))
            .detail(format!("on={}", modes.describe()));
        if let Some(ip) = ip {
            ev = ev.source_ip(ip);
        }
        self.audit(ev).await;
        self.product(product_key).await
    }
}

fn last_owner() -> Error {
    Error::Conflict("an enterprise must keep at least one owner".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::tenancy::Standing;

    const PW: &str = "velvet tundra oxide lantern";

    async fn core() -> (Core, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = rampart_store::Store::open_sqlite(&dir.path().join("t.db"))
            .await
            .unwrap();
        let core = Core::new(
            store,
            crate::secret::MasterKey::from_bytes(&[5; 32]),
            Default::default(),
        );
        (core, dir)
    }

    async fn developer(core: &Core, email: &str) -> DeveloperSession {
        core.operator_create_developer(&Actor::admin(), email, Secret::new(PW.into()), None)
            .await
            .unwrap();
        let pair = core
            .developer_login(email, Secret::new(PW.into()), Default::default(), None)
            .await
            .unwrap();
        core.authenticate_developer(pair.access_token.expose())
            .await
            .unwrap()
    }

    fn lamp() -> NewProduct {
        serde_json::from_value(serde_json::json!({"name": "lamp"})).unwrap()
    }

    #[tokio::test]
    async fn membership_changes_secrets_and_suspensions_are_audited() {
        let (core, _dir) = core().await;
        let owner = developer(&core, "o@example.com").await;
        let other = developer(&core, "x@example.com").await;
        let as_owner = Caller::Developer(owner.developer_id.clone());
        let as_other = Caller::Developer(other.developer_id.clone());
        let ent = core
            .create_enterprise(&owner, "Acme", None)
            .await
            .unwrap()
            .enterprise_id;
        core.invite_member(&as_owner, &ent, "x@example.com", EntRole::Observer, None)
            .await
            .unwrap();
        let inv = core.my_invites(&other).await.unwrap().remove(0).invite_id;
        core.accept_invite(&other, &inv, None).await.unwrap();
        assert_eq!(
            core.enterprise_standing(&as_other, &ent).await.unwrap(),
            Standing::Member(EntRole::Observer)
        );
        core.set_member_role(&as_owner, &ent, &other.developer_id, EntRole::Admin, None)
            .await
            .unwrap();
        assert!(matches!(
            core.set_member_role(&as_owner, &ent, &owner.developer_id, EntRole::Admin, None)
                .await,
            Err(Error::Conflict(_))
        ));
        let p = core
            .create_product_as(
                &as_other,
                lamp(),
                Some(OwnerSpec::EnterpriseId(ent.clone())),
                None,
            )
            .await
            .unwrap();
        assert!(
            p.product_secret.is_none(),
            "an admin is not shown the secret"
        );
        assert!(matches!(
            core.read_product_secret(&as_other, &p.product_key, None)
                .await,
            Err(Error::Forbidden(_))
        ));
        core.read_product_secret(&as_owner, &p.product_key, None)
            .await
            .unwrap();
        core.rotate_product_secret(&as_owner, &p.product_key, None)
            .await
            .unwrap();
        core.remove_member(&as_owner, &ent, &other.developer_id, None)
            .await
            .unwrap();
        assert!(matches!(
            core.authorize_product(&as_other, &p.product_key, Act::Read)
                .await,
            Err(Error::NotFound("product"))
        ));
        core.totp_enrol(&owner, None).await.unwrap();
        core.set_developer_suspended(&Actor::admin(), &other.developer_id, true, None)
            .await
            .unwrap();
        core.set_enterprise_suspended(&Actor::admin(), &ent, true, None)
            .await
            .unwrap();
        assert_eq!(
            core.enterprise_standing(&as_owner, &ent).await.unwrap(),
            Standing::SuspendedMember
        );
        assert!(core
            .authenticate_developer("rdt_not_a_token")
            .await
            .is_err());
        let actions: Vec<String> = core
            .store()
            .list_audit(None, 200)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.action)
            .collect();
        for want in [
            "enterprise.create",
            "enterprise.invite",
            "enterprise.member_add",
            "enterprise.role_change",
            "enterprise.member_remove",
            "product.secret_read",
            "product.secret_rotate",
            "product.access",
            "developer.totp_enrol",
            "developer.suspend",
            "enterprise.suspend",
        ] {
            assert!(
                actions.iter().any(|a| a == want),
                "{want} not audited: {actions:?}"
            );
        }
    }
}
