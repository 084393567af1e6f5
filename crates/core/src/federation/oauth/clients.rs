//! Third-party clients: registration (confidential or public), and management by their owner
//! (the operator or a developer): list, read, update, secret rotation, deletion with their grants;
//! and client authentication at the token endpoint.

use crate::audit::action;
use crate::audit::Actor;
use crate::identity::accounts::token_hash;
use crate::secret::random_from;
use crate::{Core, Error, Result};
use rampart_store::OAuthClientRow;
use serde::{Deserialize, Serialize};
use std::fmt;

use super::*;

/// The body of client registration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    /// A public client (a native or browser app that cannot keep a secret): no secret is issued
    /// or accepted; PKCE S256 alone binds its codes (`token_endpoint_auth_method: none`).
    #[serde(default)]
    pub public: bool,
}

/// A registered client; the only time a confidential client's secret is shown.
#[derive(Serialize)]
pub struct CreatedClient {
    pub client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub public: bool,
    pub token_endpoint_auth_method: &'static str,
}

impl fmt::Debug for CreatedClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedClient")
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .finish()
    }
}

/// A client as its owner sees it (never its secret).
#[derive(Debug, Serialize)]
pub struct ClientView {
    pub client_id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub public: bool,
    pub token_endpoint_auth_method: &'static str,
    /// Who registered it (`admin:bootstrap`, `developer:dev_...`).
    pub owner: String,
    pub created_at: i64,
    /// Last change of name, redirect URIs or secret; `null` when never changed.
    pub updated_at: Option<i64>,
}

impl From<&OAuthClientRow> for ClientView {
    fn from(c: &OAuthClientRow) -> ClientView {
        ClientView {
            client_id: c.client_id.clone(),
            name: c.name.clone(),
            redirect_uris: client_redirects(c),
            scopes: scope_list(&c.scopes),
            public: c.is_public,
            token_endpoint_auth_method: auth_method(c.is_public),
            owner: c.owner.clone(),
            created_at: c.created_at,
            updated_at: (c.updated_at > 0).then_some(c.updated_at),
        }
    }
}

/// A change of a client by its owner: the fields given replace the old ones.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientUpdate {
    pub name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
}

/// A confidential client's new secret, shown once.
#[derive(Serialize)]
pub struct RotatedSecret {
    pub client_id: String,
    pub client_secret: String,
}

impl fmt::Debug for RotatedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotatedSecret")
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .finish()
    }
}

/// Who manages clients: the operator (every client) or a developer (the clients they
/// registered). The API's `ClientOwner` extractor makes one.
#[derive(Debug, Clone)]
pub struct ClientManager {
    pub actor: Actor,
    pub operator: bool,
}

impl ClientManager {
    /// The `owner` value of the clients this manager registers.
    pub fn owner(&self) -> String {
        format!("{}:{}", self.actor.kind, self.actor.id)
    }
}

fn auth_method(public: bool) -> &'static str {
    if public {
        "none"
    } else {
        "client_secret_basic"
    }
}

fn scope_list(scopes: &str) -> Vec<String> {
    scopes
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn check_client_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(Error::Invalid("name: 1-128 printable characters".into()));
    }
    Ok(name.to_owned())
}

/// 1-10 exact redirect URIs, each absolute `https` (or `http` to a loopback host), no
/// duplicates; as JSON for the store.
fn check_redirect_uris(uris: &[String]) -> Result<String> {
    if uris.is_empty() || uris.len() > 10 {
        return Err(Error::Invalid("redirect_uris: 1-10 URIs".into()));
    }
    for (i, u) in uris.iter().enumerate() {
        check_secure_url(u).map_err(|e| Error::Invalid(format!("redirect_uris: {e}")))?;
        if uris[..i].contains(u) {
            return Err(Error::Invalid(format!("redirect_uris: `{u}` given twice")));
        }
    }
    serde_json::to_string(uris).map_err(|e| Error::Internal(e.to_string()))
}

impl Core {
    /// Register a third-party client; the caller has been allowed to (see the API's owner check).
    pub async fn register_oauth_client(
        &self,
        c: NewClient,
        by: &ClientManager,
        ip: Option<String>,
    ) -> Result<CreatedClient> {
        let name = check_client_name(&c.name)?;
        let redirect_uris = check_redirect_uris(&c.redirect_uris)?;
        let scopes = Scopes::parse(&c.scopes.join(" "))
            .map_err(|s| Error::Invalid(format!("scopes: unknown scope `{s}`")))?;
        if scopes.is_empty() {
            return Err(Error::Invalid(format!(
                "scopes: one or more of `{}`, `{}`, `{}`",
                Scopes::READ,
                Scopes::CONTROL,
                Scopes::ADMIN
            )));
        }
        let client_id = format!("rcl_{}", random_from(ID_ALPHABET, 20));
        let secret = (!c.public).then(|| new_secret("rcs_"));
        let row = OAuthClientRow {
            client_id: client_id.clone(),
            name,
            secret_hash: secret
                .as_ref()
                .map(|s| token_hash(s.expose()))
                .unwrap_or_default(),
            redirect_uris,
            scopes: scopes.as_string(),
            owner: by.owner(),
            created_at: self.now_ms(),
            is_public: c.public,
            updated_at: 0,
        };
        self.store()
            .insert_oauth_client(&row)
            .await
            .map_err(|e| match e {
                rampart_store::StoreError::Conflict => {
                    Error::Conflict("client id collision; retry".into())
                }
                e => e.into(),
            })?;
        self.audit(
            event(&by.actor, action::OAUTH_CLIENT_REGISTER, "ok", &ip)
                .target(format!("client:{client_id}"))
                .detail(format!("public={}", c.public)),
        )
        .await;
        Ok(CreatedClient {
            client_id,
            client_secret: secret.map(|s| s.expose().to_owned()),
            name: row.name,
            redirect_uris: c.redirect_uris,
            scopes: scope_list(&row.scopes),
            public: c.public,
            token_endpoint_auth_method: auth_method(c.public),
        })
    }

    /// A client its manager may see: the operator every one, a developer their own. Anything
    /// else is `NotFound`, like an unknown id.
    async fn managed_client(&self, by: &ClientManager, client_id: &str) -> Result<OAuthClientRow> {
        let row = if client_id.is_empty() || client_id.len() > 64 {
            None
        } else {
            self.store().get_oauth_client(client_id).await?
        };
        row.filter(|c| by.operator || c.owner == by.owner())
            .ok_or(Error::NotFound("client"))
    }

    /// A page of the clients `by` manages, oldest first.
    pub async fn list_oauth_clients(
        &self,
        by: &ClientManager,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<ClientView>, i64)> {
        let owner = by.owner();
        let (rows, total) = self
            .store()
            .list_oauth_clients((!by.operator).then_some(owner.as_str()), offset, limit)
            .await?;
        Ok((rows.iter().map(ClientView::from).collect(), total))
    }

    /// One client `by` manages.
    pub async fn get_oauth_client(
        &self,
        by: &ClientManager,
        client_id: &str,
    ) -> Result<ClientView> {
        Ok(ClientView::from(&self.managed_client(by, client_id).await?))
    }

    /// Change a client's name or redirect URIs (each URI checked as at registration). New
    /// authorisation requests are checked against the new list at once, and a code issued for a
    /// URI that was removed can no longer be exchanged (see `exchange_code`).
    pub async fn update_oauth_client(
        &self,
        by: &ClientManager,
        client_id: &str,
        u: ClientUpdate,
        ip: Option<String>,
    ) -> Result<ClientView> {
        let mut c = self.managed_client(by, client_id).await?;
        if u.name.is_none() && u.redirect_uris.is_none() {
            return Err(Error::Invalid(
                "give `name`, `redirect_uris` or both".into(),
            ));
        }
        let mut changed = Vec::new();
        if let Some(n) = &u.name {
            c.name = check_client_name(n)?;
            changed.push("name");
        }
        if let Some(r) = &u.redirect_uris {
            c.redirect_uris = check_redirect_uris(r)?;
            changed.push("redirect_uris");
        }
        let now = self.now_ms();
        if !self
            .store()
            .update_oauth_client(&c.client_id, &c.name, &c.redirect_uris, now)
            .await?
        {
            return Err(Error::NotFound("client"));
        }
        c.updated_at = now;
        self.audit(
            event(&by.actor, action::OAUTH_CLIENT_UPDATE, "ok", &ip)
                .target(format!("client:{}", c.client_id))
                .detail(format!("changed={}", changed.join(","))),
        )
        .await;
        Ok(ClientView::from(&c))
    }

    /// A new secret for a confidential client; the old one stops working at once.
    pub async fn rotate_oauth_client_secret(
        &self,
        by: &ClientManager,
        client_id: &str,
        ip: Option<String>,
    ) -> Result<RotatedSecret> {
        let c = self.managed_client(by, client_id).await?;
        if c.is_public {
            return Err(Error::Conflict("a public client has no secret".into()));
        }
        let secret = new_secret("rcs_");
        if !self
            .store()
            .set_oauth_client_secret(&c.client_id, &token_hash(secret.expose()), self.now_ms())
            .await?
        {
            return Err(Error::NotFound("client"));
        }
        self.audit(
            event(&by.actor, action::OAUTH_CLIENT_SECRET_ROTATE, "ok", &ip)
                .target(format!("client:{}", c.client_id)),
        )
        .await;
        Ok(RotatedSecret {
            client_id: c.client_id,
            client_secret: secret.expose().to_owned(),
        })
    }

    /// Delete a client with every grant, code and token issued to it; returns how many grants
    /// were live (their tokens stop working at once).
    pub async fn delete_oauth_client(
        &self,
        by: &ClientManager,
        client_id: &str,
        ip: Option<String>,
    ) -> Result<u64> {
        let c = self.managed_client(by, client_id).await?;
        let n = self
            .store()
            .delete_oauth_client(&c.client_id)
            .await?
            .ok_or(Error::NotFound("client"))?;
        self.audit(
            event(&by.actor, action::OAUTH_CLIENT_DELETE, "ok", &ip)
                .target(format!("client:{}", c.client_id))
                .detail(format!("grants_revoked={n}")),
        )
        .await;
        Ok(n)
    }

    /// Authenticate a client: a confidential client by its secret, a public client by its id
    /// alone (it must present no secret). Every failure is `InvalidClient`.
    pub async fn authenticate_client(
        &self,
        client_id: &str,
        secret: Option<&str>,
        ip: Option<String>,
    ) -> std::result::Result<OAuthClientRow, TokenError> {
        let row = if client_id.is_empty() || client_id.len() > 64 {
            None
        } else {
            self.store().get_oauth_client(client_id).await?
        };
        let secret = secret.filter(|s| !s.is_empty());
        let given = token_hash(secret.unwrap_or(""));
        let ok = row.as_ref().is_some_and(|r| match (r.is_public, secret) {
            (true, None) => true,
            (false, Some(_)) => {
                subtle::ConstantTimeEq::ct_eq(given.as_bytes(), r.secret_hash.as_bytes()).into()
            }
            _ => false,
        });
        match row {
            Some(r) if ok => Ok(r),
            _ => {
                self.audit(event(
                    &client_actor(client_id),
                    action::OAUTH_CLIENT_AUTH,
                    "failed",
                    &ip,
                ))
                .await;
                Err(TokenError::InvalidClient)
            }
        }
    }
}
