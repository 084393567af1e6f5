//! Signed requests: the `Authorization` header's grammar, the canonical string and its HMAC, and
//! the checks a request (or an event-stream challenge) passes before it becomes a [`KeySession`]:
//! clock window, key, secret (the previous one during a rotation overlap), standing, network,
//! nonce. Every refusal is audited.

use super::*;
use crate::auth_refusal::{self, RefusalReason};

/// The parts of a request that its signature covers, as received.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
    pub method: &'a str,
    /// The path, percent-encoded as received.
    pub path: &'a str,
    /// The raw query string (without `?`), empty when none.
    pub query: &'a str,
    pub body: &'a [u8],
    /// The peer address of the connection.
    pub peer: Option<IpAddr>,
}

/// Why a signed request was refused. Each has its own code (see [`KeyAuthError::code`]).
#[derive(Debug, thiserror::Error)]
pub enum KeyAuthError {
    #[error("expected `Authorization: RAMPART-HMAC-SHA256 key_id=..., ts=..., nonce=..., signature=...`")]
    Malformed,
    #[error("ts (unix milliseconds) is more than 300 s away from the server's clock")]
    StaleTimestamp,
    #[error("the signature does not match the request")]
    SignatureMismatch,
    #[error("this nonce was already used with this key")]
    NonceReused,
    #[error("the source address is not in the key's allowlist")]
    IpNotAllowed,
    #[error("the key is disabled")]
    KeyDisabled,
    #[error("the key's enterprise is suspended by the operator")]
    EnterpriseSuspended,
    #[error("the key has expired")]
    KeyExpired,
    #[error(transparent)]
    Internal(#[from] Error),
}

impl KeyAuthError {
    /// The documented error code.
    pub fn code(&self) -> &'static str {
        match self {
            KeyAuthError::Malformed => "INVALID_AUTHORIZATION",
            KeyAuthError::StaleTimestamp => "STALE_TIMESTAMP",
            KeyAuthError::SignatureMismatch => "SIGNATURE_MISMATCH",
            KeyAuthError::NonceReused => "NONCE_REUSED",
            KeyAuthError::IpNotAllowed => "IP_NOT_ALLOWED",
            KeyAuthError::KeyDisabled => "KEY_DISABLED",
            KeyAuthError::EnterpriseSuspended => "ENTERPRISE_SUSPENDED",
            KeyAuthError::KeyExpired => "KEY_EXPIRED",
            KeyAuthError::Internal(_) => "INTERNAL",
        }
    }
}

// ---- the signature ----

/// The query as signed: `k=v` pairs (a pair without `=` is `k=`) sorted by key, then value,
/// joined by `&`, percent-encoding left as received; empty pieces are dropped.
pub fn sorted_query(query: &str) -> String {
    let mut pairs: Vec<(&str, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    pairs.sort_unstable();
    let mut out = String::with_capacity(query.len() + 1);
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// `METHOD\nPATH\nSORTED_QUERY\nHEX_SHA256_OF_BODY\nTS\nNONCE`.
pub fn canonical_string(
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    ts: &str,
    nonce: &str,
) -> String {
    format!(
        "{method}\n{path}\n{}\n{}\n{ts}\n{nonce}",
        sorted_query(query),
        hex::encode(Sha256::digest(body))
    )
}

/// Lowercase hex HMAC-SHA256 of `canonical` keyed with the secret's bytes.
pub fn signature(secret: &[u8], canonical: &str) -> String {
    rampart_proto::sign::hmac_hex(secret, canonical)
}

/// Constant-time comparison with the signature given (lowercase hex, checked by the parser).
pub(crate) fn signature_matches(secret: &[u8], canonical: &str, given: &str) -> bool {
    rampart_proto::sign::verify_hex(secret, canonical, given)
}

/// The parameters of the `Authorization` header, as given (nothing here is checked against a key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthParams<'a> {
    /// 1-64 printable ASCII characters.
    pub key_id: &'a str,
    /// `ts` as sent (1-16 digits): the canonical string signs this text.
    pub ts_text: &'a str,
    pub ts: i64,
    /// 8-64 characters of `[A-Za-z0-9_-]`.
    pub nonce: &'a str,
    /// 64 lowercase hex digits.
    pub signature: &'a str,
}

/// Parse `RAMPART-HMAC-SHA256 key_id=..., ts=..., nonce=..., signature=...` (parameters in any
/// order, each exactly once, nothing else); `None` for anything else. Public for the fuzz
/// targets; the only caller that decides anything with it is [`Core::authenticate_access_key`].
pub fn parse_authorization(h: &str) -> Option<AuthParams<'_>> {
    let rest = h.strip_prefix(SCHEME)?.strip_prefix(' ')?;
    let (mut key_id, mut ts, mut nonce, mut sig) = (None, None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        let slot = match k {
            "key_id" => &mut key_id,
            "ts" => &mut ts,
            "nonce" => &mut nonce,
            "signature" => &mut sig,
            _ => return None,
        };
        if slot.replace(v).is_some() {
            return None;
        }
    }
    let (key_id, ts_text, nonce, signature) = (key_id?, ts?, nonce?, sig?);
    let ok_key =
        !key_id.is_empty() && key_id.len() <= 64 && key_id.bytes().all(|b| b.is_ascii_graphic());
    let ok_nonce = (8..=64).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let ok_sig = signature.len() == 64
        && signature
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let ok_ts = (1..=16).contains(&ts_text.len()) && ts_text.bytes().all(|b| b.is_ascii_digit());
    if !(ok_key && ok_nonce && ok_sig && ok_ts) {
        return None;
    }
    Some(AuthParams {
        key_id,
        ts_text,
        ts: ts_text.parse().ok()?,
        nonce,
        signature,
    })
}

// ---- checks of key definitions ----

impl Core {
    /// Authenticate a signed request; every refusal is audited (`access_key.auth`).
    pub async fn authenticate_access_key(
        &self,
        r: &SignedRequest<'_>,
    ) -> Result<KeySession, KeyAuthError> {
        let params = r.authorization.and_then(parse_authorization);
        let outcome = match &params {
            Some(p) => self.check_signed(r, p).await,
            None => Err(KeyAuthError::Malformed),
        };
        if let Err(e) = &outcome {
            let target = format!(
                "{} {}",
                r.method,
                r.path.chars().take(200).collect::<String>()
            );
            let claimed = params.as_ref().map_or("", |p| p.key_id);
            let ts = params.as_ref().map(|p| p.ts);
            self.audit_key_refusal("http", claimed, ts, target, r.peer, e)
                .await;
        }
        outcome
    }

    async fn check_signed(
        &self,
        r: &SignedRequest<'_>,
        p: &AuthParams<'_>,
    ) -> Result<KeySession, KeyAuthError> {
        let now = self.now_ms();
        if (now - p.ts).abs() > WINDOW_MS {
            return Err(KeyAuthError::StaleTimestamp);
        }
        let canonical = canonical_string(r.method, r.path, r.query, r.body, p.ts_text, p.nonce);
        let (row, ip, fp) = self
            .check_key(p.key_id, &canonical, p.signature, r.peer, now)
            .await?;
        self.spend_nonce(&format!("ak:{}", row.key_id), p, now)
            .await?;
        self.key_session(row, ip, fp).await
    }

    /// Spend a signed request's nonce under `scope` (one key or credential): `NonceReused` when
    /// it was spent within the clock window.
    pub(crate) async fn spend_nonce(
        &self,
        scope: &str,
        p: &AuthParams<'_>,
        now: i64,
    ) -> Result<(), KeyAuthError> {
        let fresh = self
            .store()
            .use_nonce(scope, p.nonce, p.ts.max(now) + WINDOW_MS, now)
            .await
            .map_err(Error::from)?;
        if fresh {
            Ok(())
        } else {
            Err(KeyAuthError::NonceReused)
        }
    }

    async fn key_session(
        &self,
        row: AccessKeyRow,
        ip: IpAddr,
        secret_fp: [u8; 8],
    ) -> Result<KeySession, KeyAuthError> {
        let products = self
            .store()
            .access_key_products(&row.key_id)
            .await
            .map_err(Error::from)?;
        Ok(KeySession {
            scopes: parse_scopes(&row.scopes),
            sensitive_points: words(&row.sensitive_points),
            key_id: row.key_id,
            enterprise_id: row.enterprise_id,
            products,
            source_ip: ip.to_string(),
            secret_fp,
        })
    }

    /// Whether a session opened by `k` (an event stream connection) may go on: `Ok(None)` while
    /// nothing changes, `Ok(Some(t))` until `t` (ms: the end of a rotation's overlap for a
    /// session of the old secret, or the key's expiry), `Err` once its key is deleted, disabled,
    /// expired or rotated past the secret the session proved, or its enterprise is suspended.
    pub async fn key_session_standing(&self, k: &KeySession) -> Result<Option<i64>, KeyAuthError> {
        let now = self.now_ms();
        let row = self
            .store()
            .get_access_key(&k.key_id)
            .await
            .map_err(Error::from)?
            .ok_or(KeyAuthError::SignatureMismatch)?;
        self.key_in_force(&row, now).await?;
        let (current, previous) = self.accepted_secrets(&row, now)?;
        let until = if secret_fp(&current) == k.secret_fp {
            None
        } else {
            match previous {
                Some((prev, until)) if secret_fp(&prev) == k.secret_fp => Some(until),
                _ => return Err(KeyAuthError::SignatureMismatch),
            }
        };
        Ok(match (until, row.expires_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Tell live key sessions and webhook deliveries that a key changed (they check their
    /// standing again).
    pub(super) fn key_changed(&self) {
        self.inner.suspensions.send_modify(|n| *n += 1);
    }

    /// The checks every use of a key makes, in the order that reveals nothing to a caller who
    /// does not hold the secret: the signature over `message` (current secret, or the previous
    /// one during a rotation overlap; an unknown key costs the same and answers the same), then
    /// disabled, expired, enterprise suspended, source address.
    async fn check_key(
        &self,
        key_id: &str,
        message: &str,
        given: &str,
        peer: Option<IpAddr>,
        now: i64,
    ) -> Result<(AccessKeyRow, IpAddr, [u8; 8]), KeyAuthError> {
        let Some(row) = self
            .store()
            .get_access_key(key_id)
            .await
            .map_err(Error::from)?
        else {
            // The same work as for a known key, and the same answer.
            let _ = signature_matches(b"no such key", message, given);
            return Err(KeyAuthError::SignatureMismatch);
        };
        let (current, previous) = self.accepted_secrets(&row, now)?;
        let fp = if signature_matches(&current, message, given) {
            secret_fp(&current)
        } else {
            match previous {
                Some((prev, _)) if signature_matches(&prev, message, given) => secret_fp(&prev),
                _ => return Err(KeyAuthError::SignatureMismatch),
            }
        };
        self.key_in_force(&row, now).await?;
        let ip = peer
            .map(|ip| ip.to_canonical())
            .ok_or(KeyAuthError::IpNotAllowed)?;
        let allowed = parse_networks(&row.allow_ips)
            .iter()
            .filter_map(|n| Cidr::parse(n).ok())
            .any(|c| c.contains(ip));
        if !allowed {
            return Err(KeyAuthError::IpNotAllowed);
        }
        Ok((row, ip, fp))
    }

    /// The secrets key `row` accepts at `now`: its current one, and the one a rotation replaced
    /// while the overlap lasts (with the overlap's end).
    fn accepted_secrets(
        &self,
        row: &AccessKeyRow,
        now: i64,
    ) -> Result<(Opened, Option<(Opened, i64)>), KeyAuthError> {
        let open = |column, sealed: &[u8]| {
            self.key()
                .open(Place::new(column, &row.key_id), sealed)
                .map_err(Error::from)
        };
        let current = open(col::ACCESS_KEY_SECRET, &row.secret_enc)?;
        let previous = match (&row.prev_secret_enc, row.prev_valid_until) {
            (Some(prev), Some(until)) if now < until => {
                Some((open(col::ACCESS_KEY_PREV_SECRET, prev)?, until))
            }
            _ => None,
        };
        Ok((current, previous))
    }

    /// A key is in force while it is enabled, unexpired and its enterprise not suspended.
    async fn key_in_force(&self, row: &AccessKeyRow, now: i64) -> Result<(), KeyAuthError> {
        if row.disabled {
            return Err(KeyAuthError::KeyDisabled);
        }
        if row.expires_at.is_some_and(|e| now >= e) {
            return Err(KeyAuthError::KeyExpired);
        }
        if self.enterprise_suspended(&row.enterprise_id).await? {
            return Err(KeyAuthError::EnterpriseSuspended);
        }
        Ok(())
    }

    /// Audit a refused use of key `claimed` (`access_key.auth`), with the key's tenant when it
    /// exists, and tell the operator's log which check failed (`ts`: the request's timestamp).
    async fn audit_key_refusal(
        &self,
        listener: &'static str,
        claimed: &str,
        ts: Option<i64>,
        target: String,
        peer: Option<IpAddr>,
        e: &KeyAuthError,
    ) {
        let claimed = if claimed.is_empty() { "-" } else { claimed };
        let row = self.store().get_access_key(claimed).await.ok().flatten();
        let why = match e {
            KeyAuthError::Malformed => RefusalReason::Malformed("Authorization header"),
            KeyAuthError::StaleTimestamp => ts
                .and_then(|ts| RefusalReason::clock(ts, self.now_ms(), WINDOW_MS))
                .unwrap_or(RefusalReason::ClockSkew {
                    ts: ts.unwrap_or_default(),
                    skew_ms: 0,
                    window_ms: WINDOW_MS,
                }),
            KeyAuthError::SignatureMismatch if row.is_none() => {
                RefusalReason::Unknown("access key")
            }
            KeyAuthError::SignatureMismatch => RefusalReason::WrongSignature,
            KeyAuthError::NonceReused => RefusalReason::Replayed,
            KeyAuthError::IpNotAllowed => {
                RefusalReason::NotAllowed("source address outside the key's allowlist")
            }
            KeyAuthError::KeyDisabled => RefusalReason::NotAllowed("the key is disabled"),
            KeyAuthError::EnterpriseSuspended => {
                RefusalReason::NotAllowed("the key's enterprise is suspended")
            }
            KeyAuthError::KeyExpired => RefusalReason::NotAllowed("the key has expired"),
            KeyAuthError::Internal(_) => RefusalReason::Internal,
        };
        let peer_text = peer.map(|ip| ip.to_canonical().to_string());
        auth_refusal::record(listener, &why, claimed, peer_text.as_deref());
        let mut ev = AuditEvent::new(
            &key_actor(claimed),
            action::ACCESS_KEY_AUTH,
            &format!("denied: {}", e.code()),
        )
        .target(target);
        if let Some(ip) = peer {
            ev = ev.source_ip(ip.to_canonical().to_string());
        }
        if let Some(k) = row {
            ev = ev.tenant(k.enterprise_id);
        }
        if let KeyAuthError::Internal(e) = e {
            tracing::error!(error = %e, "access key check failed");
        }
        self.audit(ev).await;
    }

    /// Authenticate a key by its answer to a server challenge (the event stream's TLS login):
    /// `answer` is lowercase hex HMAC-SHA256(secret, challenge). The challenge is the server's
    /// own random string, used once, so no nonce is stored; the other checks are those of a
    /// signed request, and every refusal is audited alike (`access_key.auth`).
    pub async fn authenticate_key_challenge(
        &self,
        key_id: &str,
        challenge: &str,
        answer: &str,
        peer: Option<IpAddr>,
    ) -> Result<KeySession, KeyAuthError> {
        let well_formed = !key_id.is_empty()
            && key_id.len() <= 64
            && answer.len() == 64
            && answer
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let outcome = if well_formed {
            match self
                .check_key(key_id, challenge, answer, peer, self.now_ms())
                .await
            {
                Ok((row, ip, fp)) => self.key_session(row, ip, fp).await,
                Err(e) => Err(e),
            }
        } else {
            Err(KeyAuthError::Malformed)
        };
        if let Err(e) = &outcome {
            self.audit_key_refusal(
                "events",
                key_id,
                None,
                "event stream login".to_owned(),
                peer,
                e,
            )
            .await;
        }
        outcome
    }
}
