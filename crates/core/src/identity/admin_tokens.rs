//! Named admin tokens: tokens with the bootstrap admin token's power that the operator makes,
//! lists and revokes (through the API or `rampart admin token`), and mints offline with
//! `rampart admin recover` when every token is lost. Each is stored as its SHA-256 with a hint of
//! its last characters; the token itself is answered once, at creation. Every creation and
//! revocation is audited.
//!
//! The bootstrap token (`admin_token_sha256` in the settings) is checked first and stays valid;
//! named tokens carry the `rpa_` prefix, so no other token costs a store lookup here.

use super::accounts::token_hash;
use crate::audit::{action, Actor, AuditEvent};
use crate::secret::{random_hex, Secret};
use crate::{Core, Error, Result};
use rampart_store::{AdminTokenRow, StoreError};

/// The prefix of every generated admin token.
pub const PREFIX: &str = "rpa_";
/// Longest name of a token, in characters.
pub const NAME_MAX: usize = 64;
/// Characters of the token kept in clear as its hint.
const HINT_LEN: usize = 4;

/// A named admin token as listed: never its hash.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AdminTokenInfo {
    pub id: String,
    pub name: String,
    /// The token's last four characters.
    pub hint: String,
    /// Who made it: `admin:bootstrap`, `cli:local`, ...
    pub created_by: String,
    pub created_at: i64,
}

impl From<AdminTokenRow> for AdminTokenInfo {
    fn from(r: AdminTokenRow) -> AdminTokenInfo {
        AdminTokenInfo {
            id: r.id,
            name: r.name,
            hint: r.hint,
            created_by: r.created_by,
            created_at: r.created_at,
        }
    }
}

/// How a token was made, for its audit entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Minted {
    /// Asked for by an administrator (API or CLI).
    Created,
    /// `rampart admin recover`: from the data directory, without any token.
    Recovered,
}

impl Core {
    /// Make a named admin token; the answer holds the token, which is never shown again.
    pub async fn create_admin_token(
        &self,
        name: &str,
        actor: &Actor,
        how: Minted,
        ip: Option<String>,
    ) -> Result<(AdminTokenInfo, Secret)> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > NAME_MAX || name.chars().any(char::is_control)
        {
            return Err(Error::Invalid(format!(
                "name must be 1 to {NAME_MAX} characters without control characters"
            )));
        }
        let token = Secret::new(format!("{PREFIX}{}", random_hex(24)));
        let t = token.expose();
        let row = AdminTokenRow {
            id: format!("atk_{}", random_hex(8)),
            name: name.to_owned(),
            token_sha256: token_hash(t),
            hint: t[t.len() - HINT_LEN..].to_owned(),
            created_by: format!("{}:{}", actor.kind, actor.id),
            created_at: self.now_ms(),
        };
        self.store()
            .insert_admin_token(&row)
            .await
            .map_err(|e| match e {
                StoreError::Conflict => Error::Conflict("try again".into()),
                e => e.into(),
            })?;
        let act = match how {
            Minted::Created => action::ADMIN_TOKEN_CREATE,
            Minted::Recovered => action::ADMIN_TOKEN_RECOVER,
        };
        let mut ev = AuditEvent::new(actor, act, "ok")
            .target(format!("admin_token:{}", row.id))
            .detail(format!("name={}", row.name));
        if let Some(ip) = ip {
            ev = ev.source_ip(ip);
        }
        self.audit(ev).await;
        Ok((AdminTokenInfo::from(row), token))
    }

    /// Every named admin token, oldest first.
    pub async fn list_admin_tokens(&self) -> Result<Vec<AdminTokenInfo>> {
        Ok(self
            .store()
            .list_admin_tokens()
            .await?
            .into_iter()
            .map(AdminTokenInfo::from)
            .collect())
    }

    /// Revoke a named admin token: from now on it is refused.
    pub async fn revoke_admin_token(
        &self,
        id: &str,
        actor: &Actor,
        ip: Option<String>,
    ) -> Result<AdminTokenInfo> {
        if id.len() > 64 {
            return Err(Error::NotFound("admin token"));
        }
        let row = self
            .store()
            .delete_admin_token(id)
            .await?
            .ok_or(Error::NotFound("admin token"))?;
        let mut ev = AuditEvent::new(actor, action::ADMIN_TOKEN_REVOKE, "ok")
            .target(format!("admin_token:{}", row.id))
            .detail(format!("name={}", row.name));
        if let Some(ip) = ip {
            ev = ev.source_ip(ip);
        }
        self.audit(ev).await;
        Ok(AdminTokenInfo::from(row))
    }

    /// The audit actor of a presented admin token, `None` when it is none: the bootstrap token
    /// (`admin:bootstrap`, compared in constant time) or a named one that is not revoked
    /// (`admin:` and its id; one store read).
    pub async fn admin_token_actor(&self, token: &str) -> Result<Option<Actor>> {
        if self.is_bootstrap_admin_token(token).await? {
            return Ok(Some(Actor::admin()));
        }
        if !token.starts_with(PREFIX) {
            return Ok(None);
        }
        Ok(self
            .store()
            .admin_token_by_hash(&token_hash(token))
            .await?
            .map(|r| Actor {
                kind: "admin",
                id: r.id,
            }))
    }
}
