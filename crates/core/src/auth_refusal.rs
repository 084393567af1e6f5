//! Why a credential was refused, for the operator: logged and counted in one place.
//!
//! A device or a business system that fails to authenticate hears one uniform answer (bad user
//! name or password, `401`), so it learns nothing about which devices or keys exist. The operator
//! debugging a fleet needs the opposite: the exact check that failed. Every refused device
//! registration, CONNECT and signed API call goes through [`record`], which writes one `info` line
//! with the reason in words and counts `rampart_auth_refusals_total{listener,reason}`.

use std::fmt;

/// The check a credential failed, in the order the checks run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefusalReason {
    /// The credential does not parse (user name not `did|hmac-sha256|ts`, no password, a
    /// malformed `Authorization` header or registration field).
    Malformed(&'static str),
    /// The timestamp is outside the clock window; `skew_ms` is how far (positive: in the past).
    ClockSkew {
        ts: i64,
        skew_ms: i64,
        window_ms: i64,
    },
    /// No such device, product, factory serial or access key.
    Unknown(&'static str),
    /// The HMAC does not match the secret on record.
    WrongSignature,
    /// A static password that is not the device secret on record.
    WrongSecret,
    /// A timestamp or nonce already used: the CONNECT's `ts` is not newer than the last accepted
    /// one, or a registration or signed call reused its nonce.
    Replayed,
    /// The MQTT client id is not the device id.
    ClientIdMismatch,
    /// The identity is valid but may not be used: a disabled device or key, an expired key, a
    /// suspended enterprise, a product gone, an address outside the key's allowlist, a
    /// registration mode the product does not allow.
    NotAllowed(&'static str),
    /// A static password on a product that does not allow it, or over a listener without TLS.
    StaticPasswordOff(&'static str),
    /// A connect or request limit (named).
    Limit(&'static str),
    /// The device already exists and the caller proved neither its secret nor an open
    /// re-provisioning window.
    AlreadyRegistered,
    /// A client certificate that does not identify a device of the product: not issued by one
    /// of its CAs, expired or not yet valid, revoked, a key too weak, no hardware id.
    Certificate(&'static str),
    /// The server could not check (store error, unreadable sealed secret).
    Internal,
    /// An MQTT 5 Authentication Method the server does not support.
    AuthMethod,
    /// An Ed25519 challenge answered for a device pre-registered without a public key.
    NoPublicKey,
    /// An Ed25519 challenge answered with a signature the device's public key does not verify.
    WrongKeySignature,
}

impl RefusalReason {
    /// The `reason` label: a short, fixed word.
    pub fn label(&self) -> &'static str {
        match self {
            RefusalReason::Malformed(_) => "malformed",
            RefusalReason::ClockSkew { .. } => "clock_skew",
            RefusalReason::Unknown(_) => "unknown_identity",
            RefusalReason::WrongSignature => "wrong_signature",
            RefusalReason::WrongSecret => "wrong_secret",
            RefusalReason::Replayed => "replayed",
            RefusalReason::ClientIdMismatch => "client_id_mismatch",
            RefusalReason::NotAllowed(_) => "not_allowed",
            RefusalReason::StaticPasswordOff(_) => "static_password_off",
            RefusalReason::Limit(_) => "limit",
            RefusalReason::AlreadyRegistered => "already_registered",
            RefusalReason::Certificate(_) => "certificate",
            RefusalReason::Internal => "internal",
            RefusalReason::AuthMethod => "auth_method",
            RefusalReason::NoPublicKey => "no_public_key",
            RefusalReason::WrongKeySignature => "wrong_key_signature",
        }
    }

    /// `ClockSkew` for `ts` when it is outside `window_ms` of `now`, else `None`.
    pub fn clock(ts: i64, now: i64, window_ms: i64) -> Option<RefusalReason> {
        let skew_ms = now.saturating_sub(ts);
        (skew_ms.saturating_abs() > window_ms).then_some(RefusalReason::ClockSkew {
            ts,
            skew_ms,
            window_ms,
        })
    }
}

/// Whether `ts` (taken for milliseconds) reads as a time within a day of `now` once multiplied
/// by 1000: the common slip of sending Unix seconds.
fn looks_like_seconds(ts: i64, now: i64) -> bool {
    ts.checked_mul(1000)
        .is_some_and(|ms| (now - ms).abs() < 86_400_000)
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefusalReason::Malformed(what) => write!(f, "malformed: {what}"),
            RefusalReason::ClockSkew {
                ts,
                skew_ms,
                window_ms,
            } => {
                let secs = skew_ms.saturating_abs() / 1000;
                let side = if *skew_ms > 0 { "behind" } else { "ahead of" };
                write!(
                    f,
                    "timestamp {ts} is outside the window by {} s ({secs} s {side} the server's clock, window ±{} s)",
                    (skew_ms.saturating_abs() - window_ms) / 1000,
                    window_ms / 1000
                )?;
                if looks_like_seconds(*ts, ts.saturating_add(*skew_ms)) {
                    write!(
                        f,
                        "; it looks like seconds, the protocol wants milliseconds"
                    )?;
                } else if skew_ms.saturating_abs() > 86_400_000 {
                    write!(f, "; is the device's clock set (NTP)?")?;
                }
                Ok(())
            }
            RefusalReason::Unknown(what) => write!(f, "unknown {what}"),
            RefusalReason::WrongSignature => {
                write!(f, "wrong signature (not made with the secret on record)")
            }
            RefusalReason::WrongSecret => {
                write!(f, "wrong static password (not the device secret on record)")
            }
            RefusalReason::Replayed => write!(f, "replayed: timestamp or nonce already used"),
            RefusalReason::ClientIdMismatch => write!(f, "client id is not the device id"),
            RefusalReason::NotAllowed(why) => write!(f, "not allowed: {why}"),
            RefusalReason::StaticPasswordOff(why) => write!(f, "static password refused: {why}"),
            RefusalReason::Limit(limit) => write!(f, "limit {limit}"),
            RefusalReason::AlreadyRegistered => write!(
                f,
                "already registered (no proof of the device secret, no re-provisioning window)"
            ),
            RefusalReason::Certificate(why) => write!(f, "client certificate refused: {why}"),
            RefusalReason::Internal => write!(f, "internal error while checking"),
            RefusalReason::AuthMethod => write!(
                f,
                "unsupported authentication method (only `rampart-ed25519`)"
            ),
            RefusalReason::NoPublicKey => write!(f, "the device has no Ed25519 public key"),
            RefusalReason::WrongKeySignature => write!(
                f,
                "wrong signature (not made with the device's Ed25519 key over this challenge)"
            ),
        }
    }
}

/// Log one refusal at `info` and count it. `listener`: the listener's name as in
/// `listeners.json` (`mqtt_tls`, `mqtt`, `http`, `events`); `subject`: the identity the caller
/// claimed (device id, hardware id, key id; cut to 64 characters), `peer`: its address.
pub fn record(listener: &'static str, reason: &RefusalReason, subject: &str, peer: Option<&str>) {
    metrics::counter!(
        crate::telemetry::AUTH_REFUSALS,
        "listener" => listener,
        "reason" => reason.label()
    )
    .increment(1);
    let subject: String = subject
        .chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    tracing::info!(
        listener = %listener,
        subject = %subject,
        peer = %peer.unwrap_or("-"),
        reason = %reason.label(),
        "credential refused: {reason}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_765_112_400_000;

    #[test]
    fn a_timestamp_in_seconds_is_named_as_such() {
        let r = RefusalReason::clock(NOW / 1000, NOW, 300_000).unwrap();
        assert_eq!(r.label(), "clock_skew");
        let text = r.to_string();
        assert!(text.contains("looks like seconds"), "{text}");
        assert!(text.contains("behind"), "{text}");
    }

    #[test]
    fn a_clock_off_by_minutes_gives_the_excess() {
        let r = RefusalReason::clock(NOW - 420_000, NOW, 300_000).unwrap();
        let text = r.to_string();
        assert!(
            text.contains("outside the window by 120 s (420 s behind"),
            "{text}"
        );
        assert!(!text.contains("seconds, the protocol"), "{text}");
        let ahead = RefusalReason::clock(NOW + 400_000, NOW, 300_000).unwrap();
        assert!(ahead.to_string().contains("ahead of"), "{ahead}");
    }

    #[test]
    fn inside_the_window_is_no_refusal() {
        assert_eq!(RefusalReason::clock(NOW - 299_000, NOW, 300_000), None);
        assert_eq!(RefusalReason::clock(NOW + 300_000, NOW, 300_000), None);
    }

    #[test]
    fn a_years_old_clock_suggests_ntp() {
        let r = RefusalReason::clock(0, NOW, 300_000).unwrap();
        assert!(r.to_string().contains("NTP"), "{r}");
    }
}
