//! Who may do what to a product and its devices: the one place where the operator, a
//! developer's personal products and enterprise roles meet.
//!
//! [`decide`] is the whole rule, a pure function of a caller's [`Standing`] toward a product (or
//! an enterprise) and the [`Act`] asked for:
//!
//! | standing | read | manage | secrets | members |
//! |---|---|---|---|---|
//! | operator (bootstrap admin token) | yes | yes | yes | yes |
//! | personal owner of the product | yes | yes | yes | (no enterprise) |
//! | enterprise owner | yes | yes | yes | yes |
//! | enterprise admin | yes | yes | 403 | 403 |
//! | enterprise observer | yes | 403 | 403 | 403 |
//! | member of a suspended enterprise | 403 | 403 | 403 | 403 |
//! | anyone else | 404 | 404 | 404 | 404 |
//!
//! "Anyone else" gets `NotFound`, the same answer as for a product, device or enterprise that does
//! not exist, so nobody learns what other tenants have. A caller who can already see the object
//! (a member) but whose role is too weak gets `Forbidden`. Consumers never reach this module:
//! their device access goes through bindings (`crate::access::bindings`).
//!
//! This module must never grant anything by itself: every `Core` method here loads the standing
//! from the store and asks [`decide`].

use crate::audit::action;
use crate::audit::{Actor, AuditEvent};
use crate::{Core, Error, Result};
use serde::{Deserialize, Serialize};

/// A developer's role in an enterprise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntRole {
    Owner,
    Admin,
    Observer,
}

impl EntRole {
    pub fn as_str(self) -> &'static str {
        match self {
            EntRole::Owner => "owner",
            EntRole::Admin => "admin",
            EntRole::Observer => "observer",
        }
    }
    pub fn parse(s: &str) -> Option<EntRole> {
        match s {
            "owner" => Some(EntRole::Owner),
            "admin" => Some(EntRole::Admin),
            "observer" => Some(EntRole::Observer),
            _ => None,
        }
    }
}

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Read a product, its devices, their state and history; list members of an enterprise.
    Read,
    /// Create products, change allowlists, command devices, read device passcodes.
    Manage,
    /// See or rotate a product secret; issue factory device secrets.
    Secrets,
    /// Invite, remove and change the role of enterprise members.
    Members,
}

/// How a caller stands toward a product or an enterprise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Operator,
    /// The developer owns the product personally.
    PersonalOwner,
    /// A member of the owning enterprise, with this role.
    Member(EntRole),
    /// A member of the owning enterprise, which the operator suspended.
    SuspendedMember,
    /// No relation: the object is invisible.
    Stranger,
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// The caller knows the object but may not do this (403).
    Forbidden,
    /// The caller may not know the object exists (404).
    Hidden,
}

/// The role matrix (see the module documentation).
pub fn decide(standing: Standing, act: Act) -> Decision {
    use Decision::*;
    match standing {
        Standing::Operator | Standing::PersonalOwner => Allow,
        Standing::Member(EntRole::Owner) => Allow,
        Standing::Member(EntRole::Admin) => match act {
            Act::Read | Act::Manage => Allow,
            Act::Secrets | Act::Members => Forbidden,
        },
        Standing::Member(EntRole::Observer) => match act {
            Act::Read => Allow,
            _ => Forbidden,
        },
        Standing::SuspendedMember => Forbidden,
        Standing::Stranger => Hidden,
    }
}

/// Who is calling a manufacturer endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The platform operator (an admin token: the bootstrap one or a named one, as its actor).
    Operator(Actor),
    /// A developer, by id.
    Developer(String),
}

impl Caller {
    /// The operator acting through the bootstrap admin token (or the server itself).
    pub fn operator() -> Caller {
        Caller::Operator(Actor::admin())
    }

    pub fn actor(&self) -> Actor {
        match self {
            Caller::Operator(a) => a.clone(),
            Caller::Developer(id) => developer_actor(id),
        }
    }
}

/// The audit actor of a developer.
pub fn developer_actor(developer_id: &str) -> Actor {
    Actor {
        kind: "developer",
        id: developer_id.to_owned(),
    }
}

/// Who a product belongs to, as asked for at creation (`owner` in `POST /v1/products`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum OwnerSpec {
    /// The calling developer (the default for developers).
    Personal,
    /// An enterprise the caller is an owner or admin of.
    EnterpriseId(String),
    /// A developer, named by the operator.
    DeveloperId(String),
}

fn refusal(standing: Standing, decision: Decision, what: &'static str, act: Act) -> Error {
    match decision {
        Decision::Hidden => Error::NotFound(what),
        _ if standing == Standing::SuspendedMember => {
            Error::Forbidden("the enterprise is suspended by the operator".into())
        }
        _ => Error::Forbidden(format!(
            "your role does not allow this ({})",
            match act {
                Act::Read => "read",
                Act::Manage => "manage",
                Act::Secrets => "secrets: enterprise owners only",
                Act::Members => "members: enterprise owners only",
            }
        )),
    }
}

impl Core {
    /// The caller's standing toward an enterprise; `NotFound("enterprise")` when it does not exist.
    pub async fn enterprise_standing(
        &self,
        caller: &Caller,
        enterprise_id: &str,
    ) -> Result<Standing> {
        if enterprise_id.is_empty() || enterprise_id.len() > 64 {
            return Err(Error::NotFound("enterprise"));
        }
        let ent = self
            .store()
            .get_enterprise(enterprise_id)
            .await?
            .ok_or(Error::NotFound("enterprise"))?;
        let dev = match caller {
            Caller::Operator(_) => return Ok(Standing::Operator),
            Caller::Developer(d) => d,
        };
        let role = self
            .store()
            .member_role(enterprise_id, dev)
            .await?
            .as_deref()
            .and_then(EntRole::parse);
        Ok(match role {
            None => Standing::Stranger,
            Some(_) if ent.suspended => Standing::SuspendedMember,
            Some(r) => Standing::Member(r),
        })
    }

    /// A number that moves whenever who may reach which product may have changed (membership,
    /// roles, enterprise and developer suspensions) or a developer's sessions were revoked
    /// (logout, password change or reset, refresh-token reuse). Live streams that cache
    /// decisions drop them, and check their token again, when it moves. Single-node state like
    /// the access-change broadcast.
    pub fn tenancy_epoch(&self) -> u64 {
        self.inner
            .tenancy_epoch
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Move the tenancy epoch (after a change of membership, role or suspension is stored).
    pub(crate) fn tenancy_changed(&self) {
        self.inner
            .tenancy_epoch
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Whether a developer may read a product and its devices' events (`decide(standing, Read)`),
    /// without auditing: for filtering a live stream, where a "no" is not a refused request.
    /// An unknown product is a no.
    pub async fn developer_reads_product(
        &self,
        developer_id: &str,
        product_key: &str,
    ) -> Result<bool> {
        match self
            .product_standing(&Caller::Developer(developer_id.to_owned()), product_key)
            .await
        {
            Ok(st) => Ok(decide(st, Act::Read) == Decision::Allow),
            Err(Error::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The product key of a device; `None` for an unknown did.
    pub async fn device_product(&self, did: &str) -> Result<Option<String>> {
        Ok(self.store().get_device(did).await?.map(|d| d.product_key))
    }

    /// The caller's standing toward a product; `NotFound("product")` when it does not exist.
    /// A product with no owner (created by the operator) is the operator's alone.
    pub async fn product_standing(&self, caller: &Caller, product_key: &str) -> Result<Standing> {
        let owner = self
            .store()
            .product_owner(product_key)
            .await?
            .ok_or(Error::NotFound("product"))?;
        let dev = match caller {
            Caller::Operator(_) => return Ok(Standing::Operator),
            Caller::Developer(d) => d,
        };
        if owner.owner_developer_id.as_deref() == Some(dev.as_str()) {
            return Ok(Standing::PersonalOwner);
        }
        match owner.enterprise_id {
            Some(e) => match self.enterprise_standing(caller, &e).await {
                Err(Error::NotFound(_)) => Ok(Standing::Stranger),
                r => r,
            },
            None => Ok(Standing::Stranger),
        }
    }

    /// Check `act` on a product; `NotFound("product")` for a caller who may not see it. Denials
    /// are audited (`product.access`).
    pub async fn authorize_product(
        &self,
        caller: &Caller,
        product_key: &str,
        act: Act,
    ) -> Result<()> {
        let standing = self.product_standing(caller, product_key).await?;
        match decide(standing, act) {
            Decision::Allow => Ok(()),
            d => {
                self.audit_denial(
                    caller,
                    action::PRODUCT_ACCESS,
                    &format!("product:{product_key}"),
                    act,
                    d,
                )
                .await;
                Err(refusal(standing, d, "product", act))
            }
        }
    }

    /// Check `act` on a device through its product; `NotFound("device")` for a caller who may
    /// not see it (the same as for an unknown did). Returns the device's product key.
    pub async fn authorize_device_for(
        &self,
        caller: &Caller,
        did: &str,
        act: Act,
    ) -> Result<String> {
        let dev = self
            .store()
            .get_device(did)
            .await?
            .ok_or(Error::NotFound("device"))?;
        let standing = match self.product_standing(caller, &dev.product_key).await {
            Err(Error::NotFound(_)) => Standing::Stranger,
            r => r?,
        };
        match decide(standing, act) {
            Decision::Allow => Ok(dev.product_key),
            d => {
                self.audit_denial(
                    caller,
                    action::DEVICE_ACCESS,
                    &format!("device:{did}"),
                    act,
                    d,
                )
                .await;
                Err(refusal(standing, d, "device", act))
            }
        }
    }

    /// Check `act` on an enterprise; returns the caller's standing.
    pub async fn authorize_enterprise(
        &self,
        caller: &Caller,
        enterprise_id: &str,
        act: Act,
    ) -> Result<Standing> {
        let standing = self.enterprise_standing(caller, enterprise_id).await?;
        match decide(standing, act) {
            Decision::Allow => Ok(standing),
            d => {
                self.audit_denial(
                    caller,
                    action::ENTERPRISE_ACCESS,
                    &format!("enterprise:{enterprise_id}"),
                    act,
                    d,
                )
                .await;
                Err(refusal(standing, d, "enterprise", act))
            }
        }
    }

    async fn audit_denial(
        &self,
        caller: &Caller,
        action: &str,
        target: &str,
        act: Act,
        d: Decision,
    ) {
        self.audit(
            AuditEvent::new(&caller.actor(), action, &format!("denied: {d:?}"))
                .target(target.to_owned())
                .detail(format!("{act:?}")),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Act::*;
    use Decision::*;

    #[test]
    fn role_matrix() {
        let acts = [Read, Manage, Secrets, Members];
        let rows: [(Standing, [Decision; 4]); 7] = [
            (Standing::Operator, [Allow, Allow, Allow, Allow]),
            (Standing::PersonalOwner, [Allow, Allow, Allow, Allow]),
            (
                Standing::Member(EntRole::Owner),
                [Allow, Allow, Allow, Allow],
            ),
            (
                Standing::Member(EntRole::Admin),
                [Allow, Allow, Forbidden, Forbidden],
            ),
            (
                Standing::Member(EntRole::Observer),
                [Allow, Forbidden, Forbidden, Forbidden],
            ),
            (
                Standing::SuspendedMember,
                [Forbidden, Forbidden, Forbidden, Forbidden],
            ),
            (Standing::Stranger, [Hidden, Hidden, Hidden, Hidden]),
        ];
        for (standing, expected) in rows {
            for (act, want) in acts.iter().zip(expected) {
                assert_eq!(decide(standing, *act), want, "{standing:?} {act:?}");
            }
        }
    }

    #[test]
    fn refusals_map_to_not_found_or_forbidden() {
        assert!(matches!(
            refusal(Standing::Stranger, Hidden, "product", Read),
            Error::NotFound("product")
        ));
        assert!(matches!(
            refusal(
                Standing::Member(EntRole::Admin),
                Forbidden,
                "product",
                Secrets
            ),
            Error::Forbidden(_)
        ));
    }

    #[test]
    fn roles_and_owner_specs_parse() {
        for r in [EntRole::Owner, EntRole::Admin, EntRole::Observer] {
            assert_eq!(EntRole::parse(r.as_str()), Some(r));
        }
        assert_eq!(EntRole::parse("guest"), None);
        let e: OwnerSpec = serde_json::from_str(r#"{"enterprise_id":"ent_1"}"#).unwrap();
        assert_eq!(e, OwnerSpec::EnterpriseId("ent_1".into()));
        let p: OwnerSpec = serde_json::from_str(r#""personal""#).unwrap();
        assert_eq!(p, OwnerSpec::Personal);
        assert!(serde_json::from_str::<OwnerSpec>(r#"{"enterprise":"x"}"#).is_err());
    }
}
