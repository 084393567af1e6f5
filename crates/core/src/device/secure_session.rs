//! The secure-session layer's decisions on the server: the PSK a device's Noise handshake runs
//! with, and why a session failed, logged and counted in one place.
//!
//! No sockets and no Noise state here: the gateway drives the handshake with
//! `rampart_proto::secure_session`. A failure is told to the operator in detail (one `info` line
//! and `rampart_secure_session_failures_total{reason}`), never to the peer, who only sees the
//! connection close.

use crate::secret::Place;
use crate::Core;
use rampart_proto::ids::Did;
use rampart_proto::secure_session;
use rampart_store::at_rest as col;
use std::fmt;
use zeroize::Zeroizing;

/// A handshake's pre-shared key; wiped when dropped.
pub type Psk = Zeroizing<[u8; secure_session::PSK_LEN]>;

/// Why the secure-session layer closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionFailure {
    /// Frame 0 names no known device (or is no did at all).
    UnknownDevice,
    /// The device's product does not have `identity.secure_session`.
    NotEnabled,
    /// The device is disabled.
    DeviceDisabled,
    /// The handshake did not verify with the device's PSK: a wrong secret, or altered bytes.
    BadPsk,
    /// A transport message did not decrypt: altered, replayed or out of order.
    BadTag,
    /// Bytes that are not the layer's framing (frame 0 too long or not UTF-8, a handshake
    /// message of the wrong length).
    Malformed,
    /// Frame 0 and the handshake did not complete within the connect timeout.
    Timeout,
    /// Plain MQTT on the plain-TCP listener while `mqtt.allow_unencrypted` is off.
    Unencrypted,
    /// The server could not check (store error, unreadable sealed secret).
    Internal,
}

impl SessionFailure {
    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            SessionFailure::UnknownDevice => "unknown_device",
            SessionFailure::NotEnabled => "not_enabled",
            SessionFailure::DeviceDisabled => "device_disabled",
            SessionFailure::BadPsk => "bad_psk",
            SessionFailure::BadTag => "bad_tag",
            SessionFailure::Malformed => "malformed",
            SessionFailure::Timeout => "timeout",
            SessionFailure::Unencrypted => "unencrypted",
            SessionFailure::Internal => "internal",
        }
    }
}

impl fmt::Display for SessionFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SessionFailure::UnknownDevice => "unknown device",
            SessionFailure::NotEnabled => "the device's product does not allow secure sessions",
            SessionFailure::DeviceDisabled => "the device is disabled",
            SessionFailure::BadPsk => {
                "handshake does not verify (PSK not derived from the device secret on record, or altered bytes)"
            }
            SessionFailure::BadTag => "transport message does not decrypt (altered or replayed)",
            SessionFailure::Malformed => "malformed frame",
            SessionFailure::Timeout => "handshake not done within the connect timeout",
            SessionFailure::Unencrypted => {
                "plain MQTT on the plain-TCP listener, which speaks only the secure-session layer (mqtt.allow_unencrypted is off)"
            }
            SessionFailure::Internal => "internal error while checking",
        })
    }
}

/// Log one failure at `info` and count it. `subject`: the did of frame 0 when there was one
/// (cut to 64 characters, control characters masked), `peer`: the address.
pub fn record(failure: SessionFailure, subject: Option<&str>, peer: &str) {
    metrics::counter!(crate::telemetry::SECURE_SESSION_FAILURES, "reason" => failure.label())
        .increment(1);
    let subject: String = subject
        .unwrap_or("-")
        .chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    tracing::info!(
        listener = "mqtt",
        subject = %subject,
        peer = %peer,
        reason = failure.label(),
        "secure session refused: {failure}"
    );
}

impl Core {
    /// The PSK of `did`'s secure session: when the device exists, is not disabled and its
    /// product has `identity.secure_session`. Otherwise the reason and a random PSK to run the
    /// handshake with anyway, so that an unknown did fails exactly as a wrong PSK does (the same
    /// derivation is computed either way).
    pub async fn secure_session_psk(&self, did: &str) -> Result<Psk, (SessionFailure, Psk)> {
        let refused = |why| {
            let secret = crate::secret::random_hex(16);
            (
                why,
                Zeroizing::new(secure_session::psk(secret.as_bytes(), did)),
            )
        };
        let Ok(did) = Did::parse(did) else {
            return Err(refused(SessionFailure::UnknownDevice));
        };
        let row = match self.credential_lookups().get(did.as_str()).await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(refused(SessionFailure::UnknownDevice)),
            Err(e) => {
                tracing::error!(error = %e, "device lookup failed");
                return Err(refused(SessionFailure::Internal));
            }
        };
        if row.disabled {
            return Err(refused(SessionFailure::DeviceDisabled));
        }
        match self.product(&row.product_key).await {
            Ok(p) if p.identity.secure_session => {}
            Ok(_) => return Err(refused(SessionFailure::NotEnabled)),
            Err(_) => return Err(refused(SessionFailure::UnknownDevice)),
        }
        let secret = match self.key().open_string(
            Place::new(col::DEVICE_SECRET, did.as_str()),
            &row.secret_enc,
        ) {
            Ok(s) => s,
            Err(_) => return Err(refused(SessionFailure::Internal)),
        };
        Ok(Zeroizing::new(secure_session::psk(
            secret.expose().as_bytes(),
            did.as_str(),
        )))
    }
}
