//! Registration and CONNECT signatures (HMAC-SHA256, lowercase hex) and their canonical strings.
//!
//! Both sides of the contract use these functions, so the strings are defined exactly once.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Allowed clock skew for signed timestamps, in milliseconds.
pub const CLOCK_WINDOW_MS: i64 = 300_000;

/// Canonical string signed at registration.
pub fn register_string(product_key: &str, hardware_id: &str, ts: i64, nonce: &str) -> String {
    format!("product_key={product_key}&hardware_id={hardware_id}&ts={ts}&nonce={nonce}")
}

/// Canonical string signed in the MQTT CONNECT password.
pub fn connect_string(did: &str, ts: i64) -> String {
    format!("did={did}&ts={ts}")
}

/// The MQTT 5 Authentication Method of the Ed25519 challenge (enhanced authentication).
pub const ED25519_METHOD: &str = "rampart-ed25519";

/// Bytes in the server's challenge nonce (sent raw as the AUTH packet's Authentication Data).
pub const ED25519_NONCE_LEN: usize = 32;

/// The message a device signs with its Ed25519 key to answer a challenge:
/// `"rampart-ed25519\n" + did + "\n" + nonce`, the nonce as its raw bytes. Naming the method and
/// the device binds the signature to this use and this identity.
pub fn ed25519_challenge(did: &str, nonce: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(ED25519_METHOD.len() + did.len() + nonce.len() + 2);
    m.extend_from_slice(ED25519_METHOD.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(did.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(nonce);
    m
}

/// Lowercase hex HMAC-SHA256 of `msg` keyed by `key`.
pub fn hmac_hex(key: &[u8], msg: &str) -> String {
    hex::encode(hmac_raw(key, msg.as_bytes()))
}

/// Raw HMAC-SHA256.
pub fn hmac_raw(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes any key length"),
    };
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// Constant-time check of a lowercase-hex HMAC-SHA256 signature.
pub fn verify_hex(key: &[u8], msg: &str, sign_hex: &str) -> bool {
    let Ok(given) = hex::decode(sign_hex) else {
        return false;
    };
    if given.len() != 32 {
        return false;
    }
    let expect = hmac_raw(key, msg.as_bytes());
    subtle::ConstantTimeEq::ct_eq(&expect[..], &given[..]).into()
}

/// The MQTT username a device presents: `{did}|hmac-sha256|{ts}`.
pub fn connect_username(did: &str, ts: i64) -> String {
    format!("{did}|hmac-sha256|{ts}")
}

/// Parsed MQTT username. Returns `(did, ts)`.
pub fn parse_connect_username(username: &str) -> Option<(&str, i64)> {
    let mut parts = username.split('|');
    let did = parts.next()?;
    let method = parts.next()?;
    let ts = parts.next()?;
    if parts.next().is_some() || method != "hmac-sha256" {
        return None;
    }
    Some((did, ts.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        // RFC 4231 test case 2.
        let mac = hmac_hex(b"Jefe", "what do ya want for nothing?");
        assert_eq!(
            mac,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(verify_hex(b"Jefe", "what do ya want for nothing?", &mac));
        assert!(!verify_hex(b"Jefe", "what do ya want for nothing!", &mac));
        assert!(!verify_hex(b"Jefe", "x", "zz"));
    }

    #[test]
    fn ed25519_challenge_layout() {
        let m = ed25519_challenge("d1", &[0, 0xff]);
        assert_eq!(m, b"rampart-ed25519\nd1\n\x00\xff".to_vec());
    }

    #[test]
    fn username_round_trip() {
        let u = connect_username("d1", 42);
        assert_eq!(parse_connect_username(&u), Some(("d1", 42)));
        assert_eq!(parse_connect_username("d1|md5|42"), None);
        assert_eq!(parse_connect_username("d1|hmac-sha256|x"), None);
        assert_eq!(parse_connect_username("d1|hmac-sha256|1|2"), None);
    }
}
