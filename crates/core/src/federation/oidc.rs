//! Login with third-party OpenID Connect providers (authorization code flow with PKCE S256, nonce
//! and state). Each provider is configured by issuer URL, client id and secret; its metadata comes
//! from discovery (`/.well-known/openid-configuration`) and its keys from its JWKS. The id token's
//! signature (ES256 or RS256) and claims (`iss`, `aud`/`azp`, `exp`, `iat`, `nonce`) are checked
//! here, with RustCrypto; the subject is then linked to a Rampart user, who gets the same token
//! pair as a password login.
//!
//! Linking: a `(provider, sub)` pair names one user for good. On a subject's first login, if the
//! provider says `email_verified: true` and the provider is configured with
//! `link_verified_email`, an existing, activated user with that e-mail is linked; otherwise a new, active
//! user is created (with the e-mail when verified and free, without one otherwise), and it has no
//! usable password. Never links on an unverified address.

use crate::audit::action;
use crate::audit::{Actor, AuditEvent};
use crate::federation::oauth::{check_secure_url, pkce_challenge, with_params};
use crate::identity::accounts::{token_hash, TokenPair};
use crate::secret::Place;
use crate::secret::{random_from, random_hex, Secret};
use crate::{Core, Error};
use base64::Engine;
use rampart_store::at_rest as col;
use rampart_store::{OidcLinkRow, OidcStateRow, StoreError, UserRow};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;

/// How long a login may stay at the provider.
pub const STATE_TTL_MS: i64 = 10 * 60_000;
/// Clock skew allowed on `exp` and `iat`.
pub const LEEWAY_S: i64 = 60;
/// Discovery and keys are fetched again after this long.
const CACHE_MS: i64 = 3_600_000;
/// Largest answer read from a provider.
const MAX_BODY: usize = 1 << 20;
/// Logins one client address may start per minute (each one stores a state).
pub const STARTS_PER_MIN: usize = 20;

/// One configured provider.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// The name in the URL (`/v1/oidc/{name}/...`).
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Scopes asked for besides `openid`.
    pub scopes: Vec<String>,
    /// Our callback as registered at the provider; empty: derived from the request's host.
    pub redirect_uri: String,
    /// Link a first login to an existing user with the same, provider-verified e-mail.
    pub link_verified_email: bool,
}

/// Why an OIDC login fails.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("unknown provider")]
    UnknownProvider,
    #[error("{0}")]
    Invalid(String),
    #[error("too many logins started from this address; wait a minute")]
    RateLimited,
    /// The login is refused (state, code, id token, claims); details are audited, not shown.
    #[error("login refused: {0}")]
    Failed(String),
    /// The provider could not be reached or answered nonsense.
    #[error("provider: {0}")]
    Provider(String),
    /// The callback came without the browser-binding cookie of the login's start, or with
    /// another one: the login was started in another browser (login CSRF) or the cookie was lost.
    #[error("this login was not started in this browser (its cookie is missing or does not match); start again")]
    BrowserMismatch,
    #[error(transparent)]
    Internal(#[from] Error),
}

impl From<StoreError> for OidcError {
    fn from(e: StoreError) -> Self {
        OidcError::Internal(e.into())
    }
}

/// A started login: where to send the user, and the browser-binding cookie's value.
pub struct OidcStart {
    pub authorize_url: String,
    /// The cookie's value (256 random bits); only its SHA-256 is stored.
    pub browser: Secret,
    /// How long the cookie should live: the state's lifetime.
    pub max_age_secs: i64,
}

impl std::fmt::Debug for OidcStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcStart")
            .field("authorize_url", &self.authorize_url)
            .field("browser", &"***")
            .finish()
    }
}

/// The providers and their cached metadata.
pub(crate) struct Providers {
    map: HashMap<String, ProviderConfig>,
    http: Option<reqwest::Client>,
    cache: tokio::sync::Mutex<HashMap<String, Cached>>,
    /// Login starts per client address.
    starts: crate::limits::SlidingWindow,
}

impl Default for Providers {
    fn default() -> Self {
        Providers {
            map: HashMap::new(),
            http: None,
            cache: Default::default(),
            starts: crate::limits::SlidingWindow::new(STARTS_PER_MIN, 60_000),
        }
    }
}

#[derive(Clone)]
struct Cached {
    at: i64,
    meta: Metadata,
    keys: Vec<Jwk>,
}

/// The discovery fields we use.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    /// Where the access token buys the claims the id token may leave out (e-mail).
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
}

/// A JSON Web Key (RFC 7517), the fields we use.
#[derive(Debug, Clone, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub alg: Option<String>,
    #[serde(default, rename = "use")]
    pub use_: Option<String>,
    #[serde(default)]
    pub crv: Option<String>,
    #[serde(default)]
    pub x: Option<String>,
    #[serde(default)]
    pub y: Option<String>,
    #[serde(default)]
    pub n: Option<String>,
    #[serde(default)]
    pub e: Option<String>,
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

/// What an id token must say.
#[derive(Debug)]
pub struct Expect<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
    /// Unix seconds.
    pub now: i64,
}

/// The checked claims of an id token.
#[derive(Debug, Clone, PartialEq)]
pub struct IdClaims {
    pub sub: String,
    pub email: Option<String>,
    pub email_verified: bool,
    /// Whether the token carried both `email` and `email_verified` (if not, ask UserInfo).
    pub has_email_claims: bool,
}

/// Why an id token is refused.
#[derive(Debug, PartialEq)]
pub enum VerifyError {
    /// No key of the set matches the token's `kid`/algorithm (fetch the keys again once).
    NoKey,
    Bad(String),
}

fn b64(s: &str) -> Result<Vec<u8>, VerifyError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| VerifyError::Bad("bad base64url".into()))
}

fn bad(m: &str) -> VerifyError {
    VerifyError::Bad(m.to_owned())
}

fn check_signature(alg: &str, key: &Jwk, input: &[u8], sig: &[u8]) -> Result<(), VerifyError> {
    match alg {
        "ES256" => {
            use p256::ecdsa::signature::Verifier;
            let (x, y) = match (&key.x, &key.y) {
                (Some(x), Some(y)) => (b64(x)?, b64(y)?),
                _ => return Err(bad("EC key without x/y")),
            };
            if x.len() != 32 || y.len() != 32 {
                return Err(bad("EC key coordinates are not 32 bytes"));
            }
            let point = p256::EncodedPoint::from_affine_coordinates(
                p256::FieldBytes::from_slice(&x),
                p256::FieldBytes::from_slice(&y),
                false,
            );
            let vk = p256::ecdsa::VerifyingKey::from_encoded_point(&point)
                .map_err(|_| bad("EC key is not a P-256 point"))?;
            let sig = p256::ecdsa::Signature::from_slice(sig)
                .map_err(|_| bad("malformed ES256 signature"))?;
            vk.verify(input, &sig).map_err(|_| bad("bad signature"))
        }
        "RS256" => {
            use rsa::signature::Verifier;
            use rsa::traits::PublicKeyParts;
            let (n, e) = match (&key.n, &key.e) {
                (Some(n), Some(e)) => (b64(n)?, b64(e)?),
                _ => return Err(bad("RSA key without n/e")),
            };
            let pk = rsa::RsaPublicKey::new(
                rsa::BigUint::from_bytes_be(&n),
                rsa::BigUint::from_bytes_be(&e),
            )
            .map_err(|_| bad("unusable RSA key"))?;
            if pk.size() < 256 {
                return Err(bad("RSA key shorter than 2048 bits"));
            }
            let vk = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(pk);
            let sig = rsa::pkcs1v15::Signature::try_from(sig)
                .map_err(|_| bad("malformed RS256 signature"))?;
            vk.verify(input, &sig).map_err(|_| bad("bad signature"))
        }
        _ => Err(bad("unsupported algorithm")),
    }
}

fn kty_of(alg: &str) -> &'static str {
    if alg == "ES256" {
        "EC"
    } else {
        "RSA"
    }
}

/// Verify an id token's signature against `keys` and its claims against `want`.
pub fn verify_id_token(jwt: &str, keys: &[Jwk], want: &Expect) -> Result<IdClaims, VerifyError> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [h, p, s] = parts[..] else {
        return Err(bad("not a signed JWT"));
    };
    let header: serde_json::Value =
        serde_json::from_slice(&b64(h)?).map_err(|_| bad("bad header"))?;
    let alg = header["alg"].as_str().unwrap_or("");
    if !matches!(alg, "ES256" | "RS256") {
        return Err(bad("algorithm not accepted (ES256 or RS256 only)"));
    }
    let kid = header["kid"].as_str();
    let candidates: Vec<&Jwk> = keys
        .iter()
        .filter(|k| k.kty == kty_of(alg))
        .filter(|k| k.alg.as_deref().is_none_or(|a| a == alg))
        .filter(|k| k.use_.as_deref().is_none_or(|u| u == "sig"))
        .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
        .collect();
    if candidates.is_empty() {
        return Err(VerifyError::NoKey);
    }
    let sig = b64(s)?;
    let input = &jwt.as_bytes()[..h.len() + 1 + p.len()];
    if !candidates
        .iter()
        .any(|k| check_signature(alg, k, input, &sig).is_ok())
    {
        return Err(bad("bad signature"));
    }
    let c: serde_json::Value = serde_json::from_slice(&b64(p)?).map_err(|_| bad("bad claims"))?;
    if c["iss"].as_str() != Some(want.issuer) {
        return Err(bad("wrong issuer"));
    }
    let aud: Vec<&str> = match &c["aud"] {
        serde_json::Value::String(a) => vec![a.as_str()],
        serde_json::Value::Array(a) => a.iter().filter_map(|v| v.as_str()).collect(),
        _ => vec![],
    };
    if !aud.contains(&want.client_id) {
        return Err(bad("wrong audience"));
    }
    if aud.len() > 1 && c["azp"].as_str() != Some(want.client_id) {
        return Err(bad("several audiences and azp is not us"));
    }
    let exp = c["exp"].as_i64().ok_or_else(|| bad("no exp"))?;
    if exp + LEEWAY_S <= want.now {
        return Err(bad("expired"));
    }
    if c["iat"]
        .as_i64()
        .is_some_and(|iat| iat > want.now + LEEWAY_S)
    {
        return Err(bad("issued in the future"));
    }
    let nonce = c["nonce"].as_str().unwrap_or("");
    let same: bool = subtle::ConstantTimeEq::ct_eq(nonce.as_bytes(), want.nonce.as_bytes()).into();
    if nonce.is_empty() || !same {
        return Err(bad("wrong nonce"));
    }
    let sub = c["sub"].as_str().unwrap_or("");
    if sub.is_empty() || sub.len() > 255 {
        return Err(bad("no usable sub"));
    }
    let email_verified = match &c["email_verified"] {
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::String(s) => s == "true",
        _ => false,
    };
    Ok(IdClaims {
        sub: sub.to_owned(),
        email: c["email"].as_str().map(|e| e.trim().to_lowercase()),
        email_verified,
        has_email_claims: c.get("email").is_some() && c.get("email_verified").is_some(),
    })
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 32
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

async fn fetch_json<T: serde::de::DeserializeOwned>(
    req: reqwest::RequestBuilder,
) -> Result<T, OidcError> {
    let mut resp = req
        .send()
        .await
        .map_err(|e| OidcError::Provider(e.without_url().to_string()))?;
    let status = resp.status();
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| OidcError::Provider(e.without_url().to_string()))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            return Err(OidcError::Provider("answer too large".into()));
        }
    }
    if !status.is_success() {
        return Err(OidcError::Provider(format!("HTTP {status}")));
    }
    serde_json::from_slice(&body).map_err(|e| OidcError::Provider(format!("bad JSON: {e}")))
}

/// The e-mail claims of a UserInfo answer.
struct UserInfo {
    email: Option<String>,
    email_verified: bool,
}

/// Ask the UserInfo endpoint (OpenID Connect Core 5.3) with the access token. Its `sub` must be
/// the id token's: otherwise the answer is about someone else and nothing of it is used (5.3.2).
async fn fetch_userinfo(
    http: &reqwest::Client,
    url: &str,
    access_token: &str,
    sub: &str,
) -> Result<UserInfo, String> {
    let v: serde_json::Value = fetch_json(
        http.get(url)
            .bearer_auth(access_token)
            .header("accept", "application/json"),
    )
    .await
    .map_err(|e| e.to_string())?;
    let same: bool =
        subtle::ConstantTimeEq::ct_eq(v["sub"].as_str().unwrap_or("").as_bytes(), sub.as_bytes())
            .into();
    if !same || sub.is_empty() {
        return Err("its sub is not the id token's".into());
    }
    Ok(UserInfo {
        email: v["email"].as_str().map(|e| e.trim().to_lowercase()),
        email_verified: match &v["email_verified"] {
            serde_json::Value::Bool(b) => *b,
            serde_json::Value::String(s) => s == "true",
            _ => false,
        },
    })
}

impl Core {
    /// Install the configured providers (the binary does, at start). Checks names and issuers.
    pub fn set_oidc_providers(&self, list: Vec<ProviderConfig>) -> Result<(), String> {
        let mut map = HashMap::new();
        for p in list {
            if !valid_name(&p.name) {
                return Err(format!(
                    "oidc provider `{}`: names are 1-32 of a-z 0-9 - _",
                    p.name
                ));
            }
            check_secure_url(&p.issuer)
                .map_err(|e| format!("oidc provider `{}`: issuer {e}", p.name))?;
            if !p.redirect_uri.is_empty() {
                check_secure_url(&p.redirect_uri)
                    .map_err(|e| format!("oidc provider `{}`: redirect_uri {e}", p.name))?;
            }
            if p.client_id.is_empty() {
                return Err(format!("oidc provider `{}`: client_id is empty", p.name));
            }
            map.insert(p.name.clone(), p);
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        *self.inner.oidc.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Providers {
            map,
            http: Some(http),
            ..Providers::default()
        });
        Ok(())
    }

    fn oidc(&self) -> Arc<Providers> {
        self.inner
            .oidc
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Discovery and keys of a provider, cached; `refresh` fetches them again.
    async fn provider_meta(
        &self,
        ps: &Providers,
        p: &ProviderConfig,
        refresh: bool,
    ) -> Result<Cached, OidcError> {
        let now = self.now_ms();
        if !refresh {
            if let Some(c) = ps.cache.lock().await.get(&p.name) {
                if now - c.at < CACHE_MS {
                    return Ok(c.clone());
                }
            }
        }
        let http = ps
            .http
            .as_ref()
            .ok_or_else(|| OidcError::Provider("no HTTP client".into()))?;
        let url = format!(
            "{}/.well-known/openid-configuration",
            p.issuer.trim_end_matches('/')
        );
        let meta: Metadata = fetch_json(http.get(url)).await?;
        if meta.issuer != p.issuer {
            return Err(OidcError::Provider("discovery names another issuer".into()));
        }
        for u in [
            &meta.authorization_endpoint,
            &meta.token_endpoint,
            &meta.jwks_uri,
        ]
        .into_iter()
        .chain(meta.userinfo_endpoint.as_ref())
        {
            check_secure_url(u).map_err(|e| OidcError::Provider(format!("endpoint {e}")))?;
        }
        let set: JwkSet = fetch_json(http.get(&meta.jwks_uri)).await?;
        let c = Cached {
            at: now,
            meta,
            keys: set.keys,
        };
        ps.cache.lock().await.insert(p.name.clone(), c.clone());
        Ok(c)
    }

    /// Start a login: the provider's authorisation URL to send the user to, and the value of the
    /// browser-binding cookie the caller must set in the user's browser (its hash is stored with
    /// the state; the callback must bring it back). `default_redirect` is our callback URL when
    /// the provider has none configured.
    pub async fn oidc_start(
        &self,
        provider: &str,
        app_id: &str,
        default_redirect: &str,
        ip: Option<&str>,
    ) -> Result<OidcStart, OidcError> {
        let ps = self.oidc();
        let p = ps.map.get(provider).ok_or(OidcError::UnknownProvider)?;
        if !ps.starts.check(ip.unwrap_or("unknown"), self.now_ms()) {
            return Err(OidcError::RateLimited);
        }
        if self.app_products(app_id).await?.is_none() {
            return Err(OidcError::Invalid(
                "missing or unknown app_id (query parameter)".into(),
            ));
        }
        let c = self.provider_meta(&ps, p, false).await?;
        let (state, nonce, verifier) = (random_hex(32), random_hex(32), random_hex(32));
        let browser = Secret::new(random_hex(32));
        let redirect_uri = if p.redirect_uri.is_empty() {
            default_redirect.to_owned()
        } else {
            p.redirect_uri.clone()
        };
        let now = self.now_ms();
        if let Err(e) = self.store().purge_oauth(now).await {
            tracing::warn!(error = %e, "purging expired OIDC states failed");
        }
        let state_hash = token_hash(&state);
        self.store()
            .insert_oidc_state(&OidcStateRow {
                verifier_enc: self.key().seal(
                    Place::new(col::OIDC_VERIFIER, &state_hash),
                    verifier.as_bytes(),
                ),
                state_hash,
                provider: p.name.clone(),
                app_id: app_id.to_owned(),
                nonce: nonce.clone(),
                redirect_uri: redirect_uri.clone(),
                expires_at: now + self.config().lifetimes.oidc_state_ms,
                created_at: now,
                browser_hash: token_hash(browser.expose()),
            })
            .await?;
        let mut scopes = vec!["openid".to_owned()];
        scopes.extend(p.scopes.iter().filter(|s| *s != "openid").cloned());
        let scope = scopes.join(" ");
        let challenge = pkce_challenge(&verifier);
        let authorize_url = with_params(
            &c.meta.authorization_endpoint,
            &[
                ("response_type", "code"),
                ("client_id", &p.client_id),
                ("redirect_uri", &redirect_uri),
                ("scope", &scope),
                ("state", &state),
                ("nonce", &nonce),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        );
        Ok(OidcStart {
            authorize_url,
            browser,
            max_age_secs: self.config().lifetimes.oidc_state_ms / 1000,
        })
    }

    async fn oidc_failed(&self, provider: &str, why: &str, ip: &Option<String>) -> OidcError {
        let mut ev = AuditEvent::new(
            &Actor {
                kind: "oidc",
                id: provider.to_owned(),
            },
            action::USER_LOGIN,
            "failed",
        )
        .detail(format!("oidc: {why}"));
        if let Some(ip) = ip {
            ev = ev.source_ip(ip.clone());
        }
        self.audit(ev).await;
        OidcError::Failed(why.to_owned())
    }

    /// Finish a login: check the state, exchange the code, verify the id token, link the subject
    /// to a user, and start a session for the app the login began in.
    ///
    /// `browser` is the value of the browser-binding cookie the request carried: without one the
    /// callback is refused before the state is looked at; with one that does not match the
    /// state's, the state is spent and the login refused (`BrowserMismatch` both times).
    pub async fn oidc_callback(
        &self,
        provider: &str,
        code: &str,
        state: &str,
        browser: Option<&str>,
        ip: Option<String>,
    ) -> Result<TokenPair, OidcError> {
        let ps = self.oidc();
        let p = ps.map.get(provider).ok_or(OidcError::UnknownProvider)?;
        let Some(browser) = browser.filter(|b| !b.is_empty() && b.len() <= 128) else {
            self.oidc_failed(provider, "no browser-binding cookie", &ip)
                .await;
            return Err(OidcError::BrowserMismatch);
        };
        let row = if state.is_empty() || state.len() > 128 {
            None
        } else {
            self.store().take_oidc_state(&token_hash(state)).await?
        };
        let Some(row) = row.filter(|r| r.provider == p.name && r.expires_at > self.now_ms()) else {
            return Err(self
                .oidc_failed(provider, "unknown or expired state", &ip)
                .await);
        };
        let same: bool = subtle::ConstantTimeEq::ct_eq(
            token_hash(browser).as_bytes(),
            row.browser_hash.as_bytes(),
        )
        .into();
        if !same || row.browser_hash.is_empty() {
            self.oidc_failed(
                provider,
                "browser-binding cookie does not match the state",
                &ip,
            )
            .await;
            return Err(OidcError::BrowserMismatch);
        }
        if code.is_empty() || code.len() > 2048 {
            return Err(self.oidc_failed(provider, "no code", &ip).await);
        }
        let verifier = self
            .key()
            .open(
                Place::new(col::OIDC_VERIFIER, &row.state_hash),
                &row.verifier_enc,
            )
            .map_err(|e| OidcError::Internal(e.into()))?;
        let verifier = String::from_utf8_lossy(&verifier).into_owned();
        let c = self.provider_meta(&ps, p, false).await?;
        let http = ps
            .http
            .as_ref()
            .ok_or_else(|| OidcError::Provider("no HTTP client".into()))?;
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", &row.redirect_uri)
            .append_pair("code_verifier", &verifier)
            .append_pair("client_id", &p.client_id)
            .finish();
        #[derive(Deserialize)]
        struct TokenAnswer {
            id_token: Option<String>,
            access_token: Option<String>,
        }
        let answer: TokenAnswer = match fetch_json(
            http.post(&c.meta.token_endpoint)
                .basic_auth(enc(&p.client_id), Some(enc(p.client_secret.expose())))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("accept", "application/json")
                .body(body),
        )
        .await
        {
            Ok(a) => a,
            Err(OidcError::Provider(m)) => {
                return Err(self
                    .oidc_failed(provider, &format!("code exchange: {m}"), &ip)
                    .await)
            }
            Err(e) => return Err(e),
        };
        let Some(id_token) = answer.id_token else {
            return Err(self.oidc_failed(provider, "no id_token", &ip).await);
        };
        let want = Expect {
            issuer: &c.meta.issuer,
            client_id: &p.client_id,
            nonce: &row.nonce,
            now: self.now_ms() / 1000,
        };
        let claims = match verify_id_token(&id_token, &c.keys, &want) {
            Err(VerifyError::NoKey) => {
                // The provider may have rotated its keys: fetch them once more.
                let fresh = self.provider_meta(&ps, p, true).await?;
                verify_id_token(&id_token, &fresh.keys, &want)
            }
            r => r,
        };
        let claims = match claims {
            Ok(c) => c,
            Err(VerifyError::NoKey) => {
                return Err(self
                    .oidc_failed(provider, "id token: no matching key", &ip)
                    .await)
            }
            Err(VerifyError::Bad(m)) => {
                return Err(self
                    .oidc_failed(provider, &format!("id token: {m}"), &ip)
                    .await)
            }
        };
        let mut claims = claims;
        if !claims.has_email_claims {
            if let (Some(url), Some(token)) = (&c.meta.userinfo_endpoint, &answer.access_token) {
                match fetch_userinfo(http, url, token, &claims.sub).await {
                    Ok(info) => {
                        claims.email = info.email;
                        claims.email_verified = info.email_verified;
                    }
                    Err(m) => {
                        return Err(self
                            .oidc_failed(provider, &format!("userinfo: {m}"), &ip)
                            .await)
                    }
                }
            }
        }
        let user_id = self.oidc_user(p, &claims, &row.app_id).await?;
        let pair = self.oidc_session(&user_id, &row.app_id).await?;
        let mut ev = AuditEvent::new(&Actor::user(&user_id), action::USER_LOGIN, "ok")
            .detail(format!("oidc={provider} app={}", row.app_id));
        if let Some(ip) = &ip {
            ev = ev.source_ip(ip.clone());
        }
        self.audit(ev).await;
        Ok(pair)
    }

    /// The user a subject names: linked before, linked now by verified e-mail, or created.
    async fn oidc_user(
        &self,
        p: &ProviderConfig,
        claims: &IdClaims,
        app_id: &str,
    ) -> Result<String, OidcError> {
        if let Some(l) = self.store().get_oidc_link(&p.name, &claims.sub).await? {
            return Ok(l.user_id);
        }
        let now = self.now_ms();
        let verified = claims
            .email
            .as_deref()
            .filter(|_| claims.email_verified)
            .and_then(|e| crate::identity::accounts::Identity::parse_email(e).ok());
        let existing = match &verified {
            Some(e) => self.store().find_user(e.email(), None).await?,
            None => None,
        };
        let link = |user_id: &str| OidcLinkRow {
            provider: p.name.clone(),
            subject: claims.sub.clone(),
            user_id: user_id.to_owned(),
            email: verified.as_ref().and_then(|e| e.email().map(str::to_owned)),
            created_at: now,
        };
        match existing {
            // Only an activated account: one never activated may be a squatter's, made with the
            // address before its owner came (pre-account takeover).
            Some(u) if p.link_verified_email && u.active => {
                self.store().insert_oidc_link(&link(&u.user_id)).await?;
                self.audit(
                    AuditEvent::new(&Actor::user(&u.user_id), action::USER_OIDC_LINK, "ok")
                        .detail(format!("provider={} by verified e-mail", p.name)),
                )
                .await;
                Ok(u.user_id)
            }
            existing => {
                let user_id = format!(
                    "u_{}",
                    random_from(b"abcdefghijklmnopqrstuvwxyz0123456789", 20)
                );
                // The e-mail goes on the new user only when verified and nobody has it.
                let email = if existing.is_none() {
                    verified.as_ref().and_then(|e| e.email().map(str::to_owned))
                } else {
                    None
                };
                let row = UserRow {
                    user_id: user_id.clone(),
                    email,
                    phone: None,
                    // Not a PHC string: no password ever verifies against it.
                    password_hash: "!oidc".into(),
                    active: true,
                    app_id: app_id.to_owned(),
                    created_at: now,
                    failed_count: 0,
                    first_failed_at: 0,
                    locked_until: 0,
                    lockouts: 0,
                };
                match self.store().insert_oidc_user(&row, &link(&user_id)).await {
                    Ok(()) => {}
                    // A concurrent first login of the same subject won: use its user.
                    Err(StoreError::Conflict) => {
                        return match self.store().get_oidc_link(&p.name, &claims.sub).await? {
                            Some(l) => Ok(l.user_id),
                            None => Err(OidcError::Internal(Error::Conflict(
                                "user creation collided; retry".into(),
                            ))),
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
                self.audit(
                    AuditEvent::new(&Actor::user(&user_id), action::USER_REGISTER, "ok")
                        .detail(format!("oidc provider={}", p.name)),
                )
                .await;
                Ok(user_id)
            }
        }
    }

    /// A session like a password login's: a new family with an access and a refresh token.
    async fn oidc_session(&self, user_id: &str, app_id: &str) -> Result<TokenPair, OidcError> {
        let now = self.now_ms();
        let family = format!("f_{}", random_hex(16));
        let access = Secret::new(format!("rat_{}", random_hex(32)));
        let refresh = Secret::new(format!("rrt_{}", random_hex(32)));
        self.store()
            .create_session(
                &family,
                user_id,
                app_id,
                (
                    &token_hash(access.expose()),
                    now + self.config().access_ttl_ms,
                ),
                (
                    &token_hash(refresh.expose()),
                    now + self.config().refresh_ttl_ms,
                ),
                now,
            )
            .await?;
        Ok(TokenPair {
            access_token: access,
            refresh_token: refresh,
            expires_in: self.config().access_ttl_ms / 1000,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::{signature::Signer, Signature, SigningKey};

    fn enc(b: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    fn jwk(sk: &SigningKey, kid: &str) -> Jwk {
        let p = sk.verifying_key().to_encoded_point(false);
        Jwk {
            kty: "EC".into(),
            kid: Some(kid.into()),
            alg: Some("ES256".into()),
            use_: Some("sig".into()),
            crv: Some("P-256".into()),
            x: p.x().map(|x| enc(x)),
            y: p.y().map(|y| enc(y)),
            n: None,
            e: None,
        }
    }

    fn sign(sk: &SigningKey, kid: &str, claims: serde_json::Value) -> String {
        let h = enc(
            serde_json::json!({"alg": "ES256", "kid": kid, "typ": "JWT"})
                .to_string()
                .as_bytes(),
        );
        let p = enc(claims.to_string().as_bytes());
        let input = format!("{h}.{p}");
        let sig: Signature = sk.sign(input.as_bytes());
        format!("{input}.{}", enc(&sig.to_bytes()))
    }

    #[test]
    fn id_token_checks() {
        let sk = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let other = SigningKey::from_slice(&[9u8; 32]).unwrap();
        let keys = vec![jwk(&sk, "k1")];
        let want = Expect {
            issuer: "https://id.example",
            client_id: "rampart",
            nonce: "n0",
            now: 1_000_000,
        };
        let good = serde_json::json!({"iss": "https://id.example", "aud": "rampart", "sub": "s1",
            "exp": 1_000_100, "iat": 999_990, "nonce": "n0", "email": "A@x.io", "email_verified": true});
        let c = verify_id_token(&sign(&sk, "k1", good.clone()), &keys, &want).unwrap();
        assert_eq!(
            c,
            IdClaims {
                sub: "s1".into(),
                email: Some("a@x.io".into()),
                email_verified: true,
                has_email_claims: true,
            }
        );
        // without the e-mail claims the callback asks UserInfo
        let mut bare = good.clone();
        bare.as_object_mut().unwrap().remove("email_verified");
        let c = verify_id_token(&sign(&sk, "k1", bare), &keys, &want).unwrap();
        assert!(!c.has_email_claims);
        let with = |k: &str, v: serde_json::Value| {
            let mut c = good.clone();
            c[k] = v;
            verify_id_token(&sign(&sk, "k1", c), &keys, &want)
        };
        assert!(with("iss", "https://evil.example".into()).is_err());
        assert!(with("aud", "someone-else".into()).is_err());
        assert!(with("aud", serde_json::json!(["rampart", "x"])).is_err());
        assert!(with("exp", 999_000.into()).is_err());
        assert!(with("iat", 2_000_000.into()).is_err());
        assert!(with("nonce", "n1".into()).is_err());
        assert!(with("sub", "".into()).is_err());
        assert!(with("aud", serde_json::json!(["x", "rampart"])).is_err());
        let mut azp = good.clone();
        azp["aud"] = serde_json::json!(["x", "rampart"]);
        azp["azp"] = "rampart".into();
        assert!(verify_id_token(&sign(&sk, "k1", azp), &keys, &want).is_ok());
        // signed by a key that is not in the set
        assert_eq!(
            verify_id_token(&sign(&other, "k1", good.clone()), &keys, &want),
            Err(VerifyError::Bad("bad signature".into()))
        );
        assert_eq!(
            verify_id_token(&sign(&sk, "k2", good.clone()), &keys, &want),
            Err(VerifyError::NoKey)
        );
        // alg none and HS256 are refused, whatever the rest
        let t = sign(&sk, "k1", good.clone());
        let (_, rest) = t.split_once('.').unwrap();
        for alg in ["none", "HS256"] {
            let h = enc(serde_json::json!({"alg": alg, "kid": "k1"})
                .to_string()
                .as_bytes());
            assert!(verify_id_token(&format!("{h}.{rest}"), &keys, &want).is_err());
        }
        assert!(verify_id_token("a.b", &keys, &want).is_err());
    }

    /// An RS256 id token signed once with `openssl dgst -sha256 -sign` (a 2048-bit key made for this
    /// fixture; generating RSA keys in a debug test would be slow). Expires in 2100.
    const RS256_JWT: &str = concat!(
        "eyJhbGciOiJSUzI1NiIsImtpZCI6InIxIiwidHlwIjoiSldUIn0.eyJpc3MiOiJodHRwczovL2lkLmV4YW1wbGUiLC",
        "JhdWQiOiJyYW1wYXJ0Iiwic3ViIjoicnMtMSIsImV4cCI6NDEwMjQ0NDgwMCwiaWF0IjoxMDAwMDAwLCJub25jZSI6",
        "Im4wIn0.c5e4gSoCR7NqwB4QN7fyCg6bGmHdNDeZKO1vsrPqw4TbXBmtlLjiEP5oRKAuJmYnpYdMUT4G5GXiUkvN7L",
        "EJEPhSrfABA38N94U9AxEdja3CKR7TQjoeBuKYoz0YvgpYjfE1GWOajV5e7tUrPg6KzOBcN9OVd4nm8MtA33r-wJ1c",
        "EqxKA4scXKnMTUmH-TEEFuQJ5EUrAeeaEQ4gm3Jd7wVBWmkGcrGmtw6REcxwMPwKRVLP7-YVyTGcccVTWbwXFqWwSX",
        "qhdmAkB2GbQM-QYUgrGNcqI3hJ0MnpGxhn6T4ET0n2g4p3DOEix0WIR6KQ5O6h-gt5HGrDwsPNByYA2g"
    );
    const RS256_N: &str = concat!(
        "tAsnbwFtKseffEDlXwezzRM6Y4IdjethzZFQTkVR8FsQzYP8eWQ9ybWL-JOkpJk1J61okinjvrjvdsy65qsDdsmVVx",
        "MzS3w1Epevt9pnbA_JJqJZJHfTzW5474ZIQchbEvJj5pMXTTf_VbuIBjCt8R32mQWVxqImizCYJF0bOJm8x0Pqca4-",
        "YZqcVq1jhOUzlTFTxYcVqsI5DPTaxJAVTIS1mFJczGjWvrwhT3Nc2Uf9oCYFmgzOjHjGG8Aaa6zhTrtplgVzl66ETQ",
        "U8gt7yg5lVTpj9D5irzpgXUCRsne071HYnxdMtHiLBP7pARLixyYAysPXqeg-kx6DVgBOZMw"
    );

    #[test]
    fn rs256_id_token() {
        let key = Jwk {
            kty: "RSA".into(),
            kid: Some("r1".into()),
            alg: Some("RS256".into()),
            use_: None,
            crv: None,
            x: None,
            y: None,
            n: Some(RS256_N.into()),
            e: Some("AQAB".into()),
        };
        let want = Expect {
            issuer: "https://id.example",
            client_id: "rampart",
            nonce: "n0",
            now: 1_000_100,
        };
        let c = verify_id_token(RS256_JWT, std::slice::from_ref(&key), &want).unwrap();
        assert_eq!((c.sub.as_str(), c.email_verified), ("rs-1", false));
        // one flipped signature byte
        let mut bad = RS256_JWT.to_owned();
        let last = if bad.ends_with('A') { "B" } else { "A" };
        bad.replace_range(bad.len() - 1.., last);
        assert!(verify_id_token(&bad, std::slice::from_ref(&key), &want).is_err());
        // the same token is refused under an EC key with that kid
        let sk = SigningKey::from_slice(&[7u8; 32]).unwrap();
        assert_eq!(
            verify_id_token(RS256_JWT, &[jwk(&sk, "r1")], &want),
            Err(VerifyError::NoKey)
        );
    }
}
