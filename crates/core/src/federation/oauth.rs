//! Rampart as an OAuth2 authorisation server (RFC 6749, PKCE RFC 7636, revocation RFC 7009) for
//! third-party platforms that control a user's devices: client registration, the authorisation
//! request and the user's approval, the code and refresh-token grants, revocation, and the
//! session behind a third-party access token.
//!
//! A grant is one user's approval of one client; its code and every token issued from it belong to
//! it, and revoking it (the user, a replayed code, a replayed refresh token) kills them all at once.
//! Codes and tokens are 256 random bits from the OS CSPRNG, shown once, stored only as SHA-256.
//! Only the authorisation-code grant with PKCE S256 exists: no implicit, password or plain PKCE.
//!
//! This module knows no HTTP: the API renders pages and maps [`AuthorizeError`] and [`TokenError`]
//! to RFC 6749 answers.

use crate::audit::action;
use crate::audit::{Actor, AuditEvent};
use crate::identity::accounts::{token_hash, Identity, UserSession};
use crate::secret::{random_from, random_hex, Secret};
use crate::{now_ms, Core, Error, Result};
use base64::Engine;
use rampart_store::{CodeUse, OAuthClientRow, OAuthCodeRow, OAuthGrantRow, OAuthGrantView};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// Default authorisation-code lifetime (`oauth.code_ttl_secs`).
pub const CODE_TTL_MS: i64 = 10 * 60_000;
/// Default refresh-token lifetime (`oauth.refresh_ttl_days`; each rotation starts a new one,
/// never past the grant's end).
pub const REFRESH_TTL_MS: i64 = 30 * 24 * 3_600_000;
/// Default absolute lifetime of a grant (`oauth.grant_ttl_days`): after it the client must ask
/// the user again.
pub const GRANT_TTL_MS: i64 = 90 * 24 * 3_600_000;
/// Prefix of third-party access tokens (users' own are `rat_`).
pub const ACCESS_PREFIX: &str = "roa_";
/// Prefix of third-party refresh tokens.
pub const REFRESH_PREFIX: &str = "ror_";
/// Prefix of authorisation codes.
pub const CODE_PREFIX: &str = "roc_";
/// Longest `state` we carry back.
const MAX_STATE: usize = 512;

const ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// The scopes a third party may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes {
    /// `devices:read`: read state and history of the user's devices, list them.
    pub read: bool,
    /// `devices:control`: send commands to devices the user may control.
    pub control: bool,
    /// `devices:admin`: the destructive commands (`factory_reset`, `wipe`) on devices the user
    /// owns.
    pub admin: bool,
}

impl Scopes {
    pub const READ: &'static str = "devices:read";
    pub const CONTROL: &'static str = "devices:control";
    pub const ADMIN: &'static str = "devices:admin";

    /// A space-separated scope list; `Err` names the first unknown scope.
    pub fn parse(s: &str) -> std::result::Result<Scopes, String> {
        let mut out = Scopes::default();
        for part in s.split(' ').filter(|p| !p.is_empty()) {
            match part {
                Self::READ => out.read = true,
                Self::CONTROL => out.control = true,
                Self::ADMIN => out.admin = true,
                other => return Err(other.chars().take(64).collect()),
            }
        }
        Ok(out)
    }

    pub fn is_empty(self) -> bool {
        !self.read && !self.control && !self.admin
    }

    /// Whether every scope of `other` is in `self`.
    pub fn covers(self, other: Scopes) -> bool {
        (self.read || !other.read)
            && (self.control || !other.control)
            && (self.admin || !other.admin)
    }

    pub fn as_string(self) -> String {
        let mut v = Vec::new();
        if self.read {
            v.push(Self::READ);
        }
        if self.control {
            v.push(Self::CONTROL);
        }
        if self.admin {
            v.push(Self::ADMIN);
        }
        v.join(" ")
    }
}

/// Whether `url` is absolute `https`, or `http` to a loopback host (127.0.0.0/8, `[::1]`,
/// `localhost`); never with a fragment or user info. Used for redirect URIs and issuers.
pub fn check_secure_url(url: &str) -> std::result::Result<url::Url, String> {
    if url.len() > 512 {
        return Err("longer than 512 characters".into());
    }
    let u = url::Url::parse(url).map_err(|e| format!("not an absolute URL ({e})"))?;
    if u.fragment().is_some() {
        return Err("must not have a fragment".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("must not carry user info".into());
    }
    let loopback = match u.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match u.scheme() {
        "https" if u.host().is_some() => Ok(u),
        "http" if loopback => Ok(u),
        _ => Err("must be https (http only for a loopback host)".into()),
    }
}

/// Whether `given` is exactly one of the registered redirect URIs (no normalisation at all).
pub fn redirect_matches(registered: &[String], given: &str) -> bool {
    registered.iter().any(|r| {
        let eq: bool = subtle::ConstantTimeEq::ct_eq(r.as_bytes(), given.as_bytes()).into();
        eq
    })
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The S256 code challenge of a PKCE verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    b64url(&Sha256::digest(verifier.as_bytes()))
}

/// A verifier as RFC 7636 §4.1 allows: 43-128 unreserved characters.
pub fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// An S256 challenge: base64url of 32 bytes, unpadded (43 characters).
pub fn valid_challenge(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// Whether `verifier` answers `challenge` (S256), in constant time.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    if !valid_verifier(verifier) {
        return false;
    }
    subtle::ConstantTimeEq::ct_eq(pkce_challenge(verifier).as_bytes(), challenge.as_bytes()).into()
}

/// `uri` with extra query parameters (an existing query is kept).
pub fn with_params(uri: &str, params: &[(&str, &str)]) -> String {
    match url::Url::parse(uri) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            u.to_string()
        }
        Err(_) => uri.to_owned(),
    }
}

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

/// The parameters of an authorisation request, as received (unknown ones are ignored, as RFC 6749
/// §3.1 wants).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AuthorizeParams {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
}

/// A checked authorisation request.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub client_id: String,
    pub client_name: String,
    pub redirect_uri: String,
    pub scopes: Scopes,
    pub state: Option<String>,
    pub code_challenge: String,
}

/// Why an authorisation request fails.
#[derive(Debug)]
pub enum AuthorizeError {
    /// Unknown client or unregistered redirect URI: never redirect; tell the user.
    BadClient(String),
    /// Send the user back to the client with an RFC 6749 §4.1.2.1 error.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
    Internal(Error),
}

impl From<Error> for AuthorizeError {
    fn from(e: Error) -> Self {
        AuthorizeError::Internal(e)
    }
}

impl From<rampart_store::StoreError> for AuthorizeError {
    fn from(e: rampart_store::StoreError) -> Self {
        AuthorizeError::Internal(e.into())
    }
}

impl AuthorizeError {
    /// The URL to send the user to, for a redirecting error.
    pub fn redirect_url(&self) -> Option<String> {
        match self {
            AuthorizeError::Redirect {
                redirect_uri,
                state,
                error,
                description,
            } => {
                let mut p = vec![
                    ("error", *error),
                    ("error_description", description.as_str()),
                ];
                if let Some(s) = state {
                    p.push(("state", s));
                }
                Some(with_params(redirect_uri, &p))
            }
            _ => None,
        }
    }
}

/// An RFC 6749 §5.2 error of the token and revocation endpoints.
#[derive(Debug)]
pub enum TokenError {
    InvalidRequest(String),
    InvalidClient,
    InvalidGrant(String),
    UnsupportedGrantType,
    InvalidScope(String),
    Internal(Error),
}

impl From<Error> for TokenError {
    fn from(e: Error) -> Self {
        TokenError::Internal(e)
    }
}

impl From<rampart_store::StoreError> for TokenError {
    fn from(e: rampart_store::StoreError) -> Self {
        TokenError::Internal(e.into())
    }
}

/// A token response (RFC 6749 §5.1); the tokens are shown once.
#[derive(Serialize)]
pub struct OAuthTokens {
    #[serde(serialize_with = "expose")]
    pub access_token: Secret,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(serialize_with = "expose")]
    pub refresh_token: Secret,
    pub scope: String,
}

fn expose<S: serde::Serializer>(s: &Secret, ser: S) -> std::result::Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose())
}

impl fmt::Debug for OAuthTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OAuthTokens(***)")
    }
}

/// The user and scopes behind a third-party access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthSession {
    pub user_id: String,
    pub client_id: String,
    pub grant_id: String,
    pub scopes: Scopes,
    pub expires_at: i64,
}

impl OAuthSession {
    /// The audit actor: the client, acting for the user.
    pub fn actor(&self) -> Actor {
        Actor {
            kind: "oauth_client",
            id: format!("{}/{}", self.client_id, self.user_id),
        }
    }
}

fn event(actor: &Actor, action: &str, outcome: &str, ip: &Option<String>) -> AuditEvent {
    let ev = AuditEvent::new(actor, action, outcome);
    match ip {
        Some(ip) => ev.source_ip(ip.clone()),
        None => ev,
    }
}

fn client_actor(client_id: &str) -> Actor {
    Actor {
        kind: "oauth_client",
        id: client_id.chars().take(64).collect(),
    }
}

fn new_secret(prefix: &str) -> Secret {
    Secret::new(format!("{prefix}{}", random_hex(32)))
}

fn client_redirects(c: &OAuthClientRow) -> Vec<String> {
    serde_json::from_str(&c.redirect_uris).unwrap_or_default()
}

impl Core {
    // ---- clients ----

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
            created_at: now_ms(),
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
        let now = now_ms();
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
            .set_oauth_client_secret(&c.client_id, &token_hash(secret.expose()), now_ms())
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

    // ---- authorisation ----

    /// Check an authorisation request (RFC 6749 §4.1.1 with PKCE S256 required).
    pub async fn check_authorize(
        &self,
        p: &AuthorizeParams,
    ) -> std::result::Result<AuthRequest, AuthorizeError> {
        let client_id = p.client_id.as_deref().unwrap_or("");
        let client = if client_id.is_empty() || client_id.len() > 64 {
            None
        } else {
            self.store().get_oauth_client(client_id).await?
        };
        let Some(client) = client else {
            return Err(AuthorizeError::BadClient("unknown client_id".into()));
        };
        let redirect_uri = p.redirect_uri.clone().unwrap_or_default();
        if !redirect_matches(&client_redirects(&client), &redirect_uri) {
            return Err(AuthorizeError::BadClient(
                "redirect_uri is not registered for this client".into(),
            ));
        }
        let state = p.state.clone().filter(|s| !s.is_empty());
        let fail = |error: &'static str, description: &str| AuthorizeError::Redirect {
            redirect_uri: redirect_uri.clone(),
            state: state.clone(),
            error,
            description: description.to_owned(),
        };
        if state.as_ref().is_some_and(|s| s.len() > MAX_STATE) {
            return Err(fail("invalid_request", "state is too long"));
        }
        match p.response_type.as_deref() {
            Some("code") => {}
            Some(_) => {
                return Err(fail(
                    "unsupported_response_type",
                    "only response_type=code is supported",
                ))
            }
            None => return Err(fail("invalid_request", "response_type is required")),
        }
        match p.code_challenge_method.as_deref() {
            Some("S256") => {}
            Some("plain") => {
                return Err(fail(
                    "invalid_request",
                    "code_challenge_method plain is not supported; use S256",
                ))
            }
            _ => {
                return Err(fail(
                    "invalid_request",
                    "PKCE is required: code_challenge_method=S256",
                ))
            }
        }
        let challenge = p.code_challenge.clone().unwrap_or_default();
        if !valid_challenge(&challenge) {
            return Err(fail(
                "invalid_request",
                "code_challenge must be the base64url SHA-256 of the verifier",
            ));
        }
        let scopes = Scopes::parse(p.scope.as_deref().unwrap_or(""))
            .map_err(|s| fail("invalid_scope", &format!("unknown scope `{s}`")))?;
        let allowed = Scopes::parse(&client.scopes).unwrap_or_default();
        if scopes.is_empty() {
            return Err(fail("invalid_scope", "scope is required"));
        }
        if !allowed.covers(scopes) {
            return Err(fail(
                "invalid_scope",
                "scope exceeds what the client was registered for",
            ));
        }
        Ok(AuthRequest {
            client_id: client.client_id,
            client_name: client.name,
            redirect_uri,
            scopes,
            state,
            code_challenge: challenge,
        })
    }

    /// The user approves (some of) the requested scopes: a grant and its code. Returns the URL to
    /// send the user to (the redirect URI with `code` and `state`).
    pub async fn approve_authorize(
        &self,
        req: &AuthRequest,
        user_id: &str,
        approved: Scopes,
        ip: Option<String>,
    ) -> Result<String> {
        if approved.is_empty() || !req.scopes.covers(approved) {
            return Err(Error::Invalid(
                "approve one or more of the requested scopes".into(),
            ));
        }
        let now = now_ms();
        let life = &self.config().lifetimes;
        if let Err(e) = self.store().purge_oauth(now).await {
            tracing::warn!(error = %e, "purging expired OAuth codes and tokens failed");
        }
        let grant_id = format!("g_{}", random_from(ID_ALPHABET, 20));
        let code = new_secret(CODE_PREFIX);
        let grant = OAuthGrantRow {
            grant_id: grant_id.clone(),
            user_id: user_id.to_owned(),
            client_id: req.client_id.clone(),
            scope: approved.as_string(),
            active: false,
            revoked: false,
            created_at: now,
            expires_at: now + life.oauth_grant_ms,
        };
        let code_row = OAuthCodeRow {
            code_hash: token_hash(code.expose()),
            grant_id: grant_id.clone(),
            client_id: req.client_id.clone(),
            redirect_uri: req.redirect_uri.clone(),
            code_challenge: req.code_challenge.clone(),
            used: false,
            expires_at: now + life.oauth_code_ms,
            created_at: now,
        };
        self.store().insert_oauth_grant(&grant, &code_row).await?;
        self.audit(
            event(&Actor::user(user_id), action::OAUTH_GRANT, "ok", &ip)
                .target(format!("client:{}", req.client_id))
                .detail(format!("grant={grant_id} scope={}", grant.scope)),
        )
        .await;
        let mut p = vec![("code", code.expose())];
        if let Some(s) = &req.state {
            p.push(("state", s));
        }
        Ok(with_params(&req.redirect_uri, &p))
    }

    /// The user refuses: the URL sending them back with `access_denied`.
    pub async fn deny_authorize(
        &self,
        req: &AuthRequest,
        user_id: Option<&str>,
        ip: Option<String>,
    ) -> String {
        let actor = match user_id {
            Some(u) => Actor::user(u),
            None => Actor::user_candidate("anonymous"),
        };
        self.audit(
            event(&actor, action::OAUTH_GRANT, "denied", &ip)
                .target(format!("client:{}", req.client_id)),
        )
        .await;
        AuthorizeError::Redirect {
            redirect_uri: req.redirect_uri.clone(),
            state: req.state.clone(),
            error: "access_denied",
            description: "the user refused".into(),
        }
        .redirect_url()
        .unwrap_or_default()
    }

    /// Check a user's password on the consent page, without starting a session for an app: the
    /// same rules, lockout and audit as `login` (one short session is made and ended at once).
    pub async fn consent_login(
        &self,
        username: &str,
        pw: Secret,
        ip: Option<String>,
    ) -> Result<String> {
        let app_id = match Identity::parse_username(username) {
            Ok(w) => self
                .store()
                .find_user(w.email(), w.phone())
                .await?
                .map(|u| u.app_id)
                .unwrap_or_default(),
            Err(_) => String::new(),
        };
        let pair = self.login(&app_id, username, pw, ip).await?;
        let s = self.authenticate_user(pair.access_token.expose()).await?;
        self.store().revoke_family(&s.family_id).await?;
        Ok(s.user_id)
    }

    // ---- tokens ----

    async fn issue_grant_tokens(
        &self,
        grant_id: &str,
        grant_expires_at: i64,
        scope: &str,
    ) -> std::result::Result<OAuthTokens, TokenError> {
        let now = now_ms();
        let life = &self.config().lifetimes;
        let access_exp = (now + life.oauth_access_ms).min(grant_expires_at);
        let refresh_exp = (now + life.oauth_refresh_ms).min(grant_expires_at);
        let (access, refresh) = (new_secret(ACCESS_PREFIX), new_secret(REFRESH_PREFIX));
        let ok = self
            .store()
            .add_oauth_tokens(
                grant_id,
                scope,
                (&token_hash(access.expose()), access_exp),
                (&token_hash(refresh.expose()), refresh_exp),
                now,
            )
            .await?;
        if !ok {
            return Err(TokenError::InvalidGrant("the grant was revoked".into()));
        }
        Ok(OAuthTokens {
            access_token: access,
            token_type: "Bearer",
            expires_in: ((access_exp - now) / 1000).max(0),
            refresh_token: refresh,
            scope: scope.to_owned(),
        })
    }

    async fn token_failed(&self, client: &OAuthClientRow, why: &str, ip: &Option<String>) {
        self.audit(
            event(
                &client_actor(&client.client_id),
                action::OAUTH_TOKEN,
                "failed",
                ip,
            )
            .detail(why),
        )
        .await;
    }

    /// The authorisation-code grant (RFC 6749 §4.1.3 with the PKCE verifier). A code presented a
    /// second time is refused and its grant revoked, with every token issued from it.
    pub async fn exchange_code(
        &self,
        client: &OAuthClientRow,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
        ip: Option<String>,
    ) -> std::result::Result<OAuthTokens, TokenError> {
        let bad = |m: &str| TokenError::InvalidGrant(m.to_owned());
        if code.len() > 128 {
            return Err(bad("invalid authorization code"));
        }
        let row = match self.store().redeem_oauth_code(&token_hash(code)).await? {
            CodeUse::Fresh(r) => r,
            CodeUse::Invalid => {
                self.token_failed(client, "unknown code", &ip).await;
                return Err(bad("invalid authorization code"));
            }
            CodeUse::Reused(r) => {
                let live = self.store().revoke_oauth_grant(&r.grant_id).await?;
                self.audit(
                    event(
                        &client_actor(&client.client_id),
                        action::OAUTH_CODE_REUSE,
                        "grant revoked",
                        &ip,
                    )
                    .detail(format!("grant={} was_live={live}", r.grant_id)),
                )
                .await;
                return Err(bad("authorization code was already used"));
            }
        };
        let checks = [
            (row.expires_at > now_ms(), "authorization code expired"),
            (
                row.client_id == client.client_id,
                "authorization code was issued to another client",
            ),
            (
                row.redirect_uri == redirect_uri,
                "redirect_uri does not match the authorization request",
            ),
            (
                redirect_matches(&client_redirects(client), redirect_uri),
                "redirect_uri is no longer registered for this client",
            ),
            (
                pkce_matches(verifier, &row.code_challenge),
                "code_verifier does not match the code_challenge",
            ),
        ];
        if let Some((_, why)) = checks.iter().find(|(ok, _)| !ok) {
            self.token_failed(client, why, &ip).await;
            return Err(bad(why));
        }
        let grant = self
            .store()
            .get_oauth_grant(&row.grant_id)
            .await?
            .filter(|g| !g.revoked && g.expires_at > now_ms());
        let Some(grant) = grant else {
            self.token_failed(client, "grant revoked", &ip).await;
            return Err(bad("the grant was revoked"));
        };
        let tokens = self
            .issue_grant_tokens(&grant.grant_id, grant.expires_at, &grant.scope)
            .await?;
        self.audit(
            event(
                &client_actor(&client.client_id),
                action::OAUTH_TOKEN,
                "issued",
                &ip,
            )
            .target(format!("user:{}", grant.user_id))
            .detail(format!(
                "grant={} grant_type=authorization_code",
                grant.grant_id
            )),
        )
        .await;
        Ok(tokens)
    }

    /// The refresh-token grant: rotation, and revocation of the grant when a spent token comes back.
    pub async fn refresh_grant(
        &self,
        client: &OAuthClientRow,
        refresh: &str,
        scope: Option<&str>,
        ip: Option<String>,
    ) -> std::result::Result<OAuthTokens, TokenError> {
        let bad = |m: &str| TokenError::InvalidGrant(m.to_owned());
        let hash = token_hash(refresh);
        let info = if refresh.starts_with(REFRESH_PREFIX) && refresh.len() <= 128 {
            self.store().oauth_token(&hash).await?
        } else {
            None
        };
        let now = now_ms();
        let Some(info) = info.filter(|i| i.kind == "refresh") else {
            self.token_failed(client, "unknown refresh token", &ip)
                .await;
            return Err(bad("invalid refresh token"));
        };
        if info.client_id != client.client_id {
            self.token_failed(client, "refresh token of another client", &ip)
                .await;
            return Err(bad("invalid refresh token"));
        }
        if info.grant_revoked || info.grant_expires_at <= now {
            self.token_failed(client, "grant revoked or expired", &ip)
                .await;
            return Err(bad("invalid refresh token"));
        }
        let held = Scopes::parse(&info.scope).unwrap_or_default();
        let wanted = match scope.filter(|s| !s.trim().is_empty()) {
            None => held,
            Some(s) => {
                let w = Scopes::parse(s)
                    .map_err(|u| TokenError::InvalidScope(format!("unknown scope `{u}`")))?;
                if !held.covers(w) || w.is_empty() {
                    return Err(TokenError::InvalidScope(
                        "scope exceeds the grant".to_owned(),
                    ));
                }
                w
            }
        };
        if self.store().spend_oauth_refresh(&hash, now).await? {
            let tokens = self
                .issue_grant_tokens(&info.grant_id, info.grant_expires_at, &wanted.as_string())
                .await?;
            self.audit(
                event(
                    &client_actor(&client.client_id),
                    action::OAUTH_TOKEN,
                    "issued",
                    &ip,
                )
                .target(format!("user:{}", info.user_id))
                .detail(format!("grant={} grant_type=refresh_token", info.grant_id)),
            )
            .await;
            return Ok(tokens);
        }
        if info.used {
            let live = self.store().revoke_oauth_grant(&info.grant_id).await?;
            self.audit(
                event(
                    &client_actor(&client.client_id),
                    action::OAUTH_TOKEN_REUSE,
                    "grant revoked",
                    &ip,
                )
                .target(format!("user:{}", info.user_id))
                .detail(format!("grant={} was_live={live}", info.grant_id)),
            )
            .await;
            return Err(bad("refresh token was already used"));
        }
        self.token_failed(client, "refresh token expired", &ip)
            .await;
        Err(bad("invalid refresh token"))
    }

    /// RFC 7009 revocation. A refresh token revokes its grant; an access token dies alone. A token
    /// that is unknown or another client's is ignored (the answer is the same).
    pub async fn revoke_oauth_token(
        &self,
        client: &OAuthClientRow,
        token: &str,
        ip: Option<String>,
    ) -> std::result::Result<(), TokenError> {
        if token.len() > 128 {
            return Ok(());
        }
        let hash = token_hash(token);
        let Some(info) = self.store().oauth_token(&hash).await? else {
            return Ok(());
        };
        if info.client_id != client.client_id {
            return Ok(());
        }
        let what = if info.kind == "refresh" {
            self.store().revoke_oauth_grant(&info.grant_id).await?;
            "grant"
        } else {
            self.store().delete_oauth_access(&hash).await?;
            "access token"
        };
        self.audit(
            event(
                &client_actor(&client.client_id),
                action::OAUTH_REVOKE,
                "ok",
                &ip,
            )
            .target(format!("user:{}", info.user_id))
            .detail(format!("grant={} revoked={what}", info.grant_id)),
        )
        .await;
        Ok(())
    }

    /// The session behind a third-party access token.
    pub async fn authenticate_oauth(&self, access: &str) -> Result<OAuthSession> {
        if !access.starts_with(ACCESS_PREFIX) || access.len() > 128 {
            return Err(Error::InvalidToken);
        }
        let i = self
            .store()
            .oauth_access(&token_hash(access), now_ms())
            .await?
            .ok_or(Error::InvalidToken)?;
        Ok(OAuthSession {
            scopes: Scopes::parse(&i.scope).unwrap_or_default(),
            user_id: i.user_id,
            client_id: i.client_id,
            grant_id: i.grant_id,
            expires_at: i.expires_at.min(i.grant_expires_at),
        })
    }

    // ---- the user's view ----

    /// A page of the user's live grants.
    pub async fn list_oauth_grants(
        &self,
        user_id: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<OAuthGrantView>, i64)> {
        Ok(self
            .store()
            .list_oauth_grants(user_id, now_ms(), offset, limit)
            .await?)
    }

    /// The user revokes one of their grants: its tokens stop working at once.
    pub async fn revoke_user_grant(
        &self,
        s: &UserSession,
        grant_id: &str,
        ip: Option<String>,
    ) -> Result<()> {
        let g = if grant_id.len() > 64 {
            None
        } else {
            self.store().get_oauth_grant(grant_id).await?
        };
        let Some(g) = g.filter(|g| g.user_id == s.user_id && !g.revoked) else {
            return Err(Error::NotFound("grant"));
        };
        self.store().revoke_oauth_grant(&g.grant_id).await?;
        self.audit(
            event(&s.actor(), action::OAUTH_GRANT_REVOKE, "ok", &ip)
                .target(format!("client:{}", g.client_id))
                .detail(format!("grant={}", g.grant_id)),
        )
        .await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_parsing() {
        let s = Scopes::parse("devices:read  devices:control").unwrap();
        assert!(s.read && s.control);
        assert_eq!(s.as_string(), "devices:read devices:control");
        assert_eq!(Scopes::parse("").unwrap(), Scopes::default());
        assert_eq!(Scopes::parse("devices:read admin").unwrap_err(), "admin");
        assert!(Scopes::parse("DEVICES:READ").is_err());
        let r = Scopes::parse("devices:read").unwrap();
        assert!(s.covers(r) && !r.covers(s) && r.covers(Scopes::default()));
    }

    #[test]
    fn redirect_uri_rules() {
        for ok in [
            "https://example.com/cb",
            "https://example.com/cb?x=1",
            "http://127.0.0.1:8080/cb",
            "http://localhost/cb",
            "http://[::1]:9/cb",
        ] {
            assert!(check_secure_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://example.com/cb",
            "https://example.com/cb#frag",
            "https://user:pw@example.com/cb",
            "/relative",
            "javascript:alert(1)",
            "ftp://example.com/",
            "http://127.0.0.1.example.com/cb",
        ] {
            assert!(check_secure_url(bad).is_err(), "{bad}");
        }
        let reg = vec!["https://a.example/cb".to_string()];
        assert!(redirect_matches(&reg, "https://a.example/cb"));
        for other in [
            "https://a.example/cb/",
            "https://a.example/cb?x=1",
            "https://A.example/cb",
            "https://a.example/c",
            "",
        ] {
            assert!(!redirect_matches(&reg, other), "{other}");
        }
    }

    #[test]
    fn pkce_s256() {
        // RFC 7636 appendix B
        let v = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let c = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert_eq!(pkce_challenge(v), c);
        assert!(valid_challenge(c));
        assert!(pkce_matches(v, c));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK",
            c
        ));
        // plain PKCE: the verifier itself as challenge never matches
        assert!(!pkce_matches(v, v));
        assert!(!pkce_matches("short", &pkce_challenge("short")));
        assert!(!valid_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c="
        ));
    }

    #[test]
    fn params_are_appended() {
        assert_eq!(
            with_params(
                "https://a.example/cb?x=1",
                &[("code", "c d"), ("state", "s&")]
            ),
            "https://a.example/cb?x=1&code=c+d&state=s%26"
        );
    }
}
