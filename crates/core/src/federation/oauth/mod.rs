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

use crate::audit::{Actor, AuditEvent};
use crate::secret::{random_hex, Secret};
use base64::Engine;
use rampart_store::OAuthClientRow;
use sha2::{Digest, Sha256};

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

mod clients;
mod grants;

pub use clients::*;
pub use grants::*;

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
