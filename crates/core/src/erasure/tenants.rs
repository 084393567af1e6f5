//! A manufacturer's own data: deleting a developer account or an enterprise with everything it
//! owns. Products go one by one through [`Core::erase_product`] (each closes its devices' sessions
//! first); the account or enterprise rows go last, in one transaction.

use crate::access::tenancy::{Act, Caller};
use crate::audit::{action, AuditEvent};
use crate::identity::developers::DeveloperSession;
use crate::secret::Secret;
use crate::{Core, Error, Result};
use rampart_store::{DeveloperErased, EnterpriseErased, StoreError};

/// A developer login at most this old (Unix ms) may delete its account without the password.
pub const FRESH_DEVELOPER_LOGIN_MS: i64 = 5 * 60 * 1000;

/// What deleting an enterprise removed.
#[derive(Debug, Clone, Default)]
pub struct EnterpriseErasure {
    pub products: u64,
    pub devices: u64,
    pub rows: EnterpriseErased,
}

/// What deleting a developer account removed.
#[derive(Debug, Clone, Default)]
pub struct DeveloperErasure {
    pub products: u64,
    pub devices: u64,
    pub rows: DeveloperErased,
}

impl Core {
    /// Delete an enterprise (its owner, or an operator) with its products and their devices,
    /// access keys, webhooks, invitations and memberships. Audited (`enterprise.delete`).
    pub async fn erase_enterprise(
        &self,
        caller: &Caller,
        enterprise_id: &str,
        source_ip: Option<String>,
    ) -> Result<EnterpriseErasure> {
        self.authorize_enterprise(caller, enterprise_id, Act::Secrets)
            .await?;
        let mut out = EnterpriseErasure::default();
        for pk in self.store().enterprise_product_keys(enterprise_id).await? {
            let p = self.erase_product(caller, &pk, source_ip.clone()).await?;
            out.products += 1;
            out.devices += p.devices;
        }
        out.rows = match self.store().erase_enterprise(enterprise_id).await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(Error::NotFound("enterprise")),
            Err(StoreError::Conflict) => {
                return Err(Error::Conflict(
                    "a product was created in the enterprise meanwhile: delete again".into(),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        self.tenancy_changed();
        let ev = AuditEvent::new(&caller.actor(), action::ENTERPRISE_DELETE, "ok")
            .target(format!("enterprise:{enterprise_id}"))
            .tenant(enterprise_id.to_owned())
            .source_ip_opt(source_ip)
            .detail(format!(
                "products={} devices={} members={} invites={} access_keys={} webhooks={}",
                out.products,
                out.devices,
                out.rows.members,
                out.rows.invites,
                out.rows.access_keys,
                out.rows.webhooks
            ));
        self.audit(ev).await;
        Ok(out)
    }

    /// Delete the caller's developer account with its personal products (and their devices),
    /// sessions, recovery codes, memberships, invitations and OAuth clients. Needs the password
    /// (a wrong one counts toward the lockout), or a login at most
    /// [`FRESH_DEVELOPER_LOGIN_MS`] old. Refused (409) while the developer is the only owner of
    /// an enterprise: delete it, or make another member owner, first. Audited
    /// (`developer.delete`, under the developer's id).
    pub async fn erase_developer(
        &self,
        s: &DeveloperSession,
        password: Option<Secret>,
        ip: Option<String>,
    ) -> Result<DeveloperErasure> {
        self.check_developer_presence(s, password, FRESH_DEVELOPER_LOGIN_MS, &ip)
            .await?;
        for m in self.store().developer_memberships(&s.developer_id).await? {
            if m.role != "owner" {
                continue;
            }
            let owners = self
                .store()
                .list_members(&m.enterprise_id)
                .await?
                .iter()
                .filter(|x| x.role == "owner")
                .count();
            if owners <= 1 {
                return Err(Error::Conflict(format!(
                    "you are the only owner of enterprise {}: delete it, or make another member \
                     owner, first",
                    m.enterprise_id
                )));
            }
        }
        let caller = Caller::Developer(s.developer_id.clone());
        let mut out = DeveloperErasure::default();
        for pk in self.store().developer_product_keys(&s.developer_id).await? {
            let p = self.erase_product(&caller, &pk, ip.clone()).await?;
            out.products += 1;
            out.devices += p.devices;
        }
        out.rows = match self.store().erase_developer(&s.developer_id).await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(Error::InvalidToken),
            Err(StoreError::Conflict) => {
                return Err(Error::Conflict(
                    "a product was created meanwhile: delete again".into(),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        self.tenancy_changed();
        self.audit(
            AuditEvent::new(&s.actor(), action::DEVELOPER_DELETE, "ok")
                .target(format!("developer:{}", s.developer_id))
                .source_ip_opt(ip)
                .detail(format!(
                    "products={} devices={} sessions={} memberships={} invites={} oauth_clients={}",
                    out.products,
                    out.devices,
                    out.rows.sessions,
                    out.rows.memberships,
                    out.rows.invites,
                    out.rows.oauth_clients
                )),
        )
        .await;
        Ok(out)
    }
}
