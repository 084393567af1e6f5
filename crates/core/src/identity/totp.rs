//! The TOTP second factor of developer logins (RFC 6238 with the authenticator-app defaults:
//! HMAC-SHA-1, 6 digits, 30-second steps) and single-use recovery codes.
//!
//! [`matching_step`] is the acceptance rule, pure with the clock passed in: a code is good for
//! its own step and one step either side, and a step at or before the last one accepted is never
//! accepted again (the caller records the step atomically, `Store::use_totp_step`). Codes are
//! compared in constant time. Secrets are 160 random bits, sealed at rest by the caller.

use crate::secret::{random_from, Secret};
use crate::{Error, Result};
use totp_rs::{Algorithm, TOTP};

/// Seconds per step.
pub const STEP_SECS: u64 = 30;
/// Digits per code.
pub const DIGITS: usize = 6;
/// Steps accepted before and after the current one.
pub const SKEW_STEPS: i64 = 1;
/// Secret length in bytes (RFC 4226 recommends 160 bits).
pub const SECRET_BYTES: usize = 20;
/// Recovery codes issued when TOTP is turned on.
pub const RECOVERY_CODES: usize = 10;
/// Issuer shown by authenticator apps.
pub const ISSUER: &str = "Rampart";

/// A fresh random secret.
pub fn new_secret() -> Vec<u8> {
    let mut b = vec![0u8; SECRET_BYTES];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    b
}

fn totp(secret: &[u8], account: &str) -> Result<TOTP> {
    // `:` separates issuer and account in the URI label; an e-mail never holds one.
    let account: String = account.chars().filter(|c| *c != ':').collect();
    TOTP::new(
        Algorithm::SHA1,
        DIGITS,
        0,
        STEP_SECS,
        secret.to_vec(),
        Some(ISSUER.to_owned()),
        account,
    )
    .map_err(|e| Error::Internal(format!("totp: {e}")))
}

/// What an authenticator app needs: the base32 secret and the `otpauth://` URI (for a QR code).
pub fn enrolment(secret: &[u8], account: &str) -> Result<(Secret, Secret)> {
    let t = totp(secret, account)?;
    Ok((Secret::new(t.get_secret_base32()), Secret::new(t.get_url())))
}

/// The code for step `step` (for tests and tools).
pub fn code_at_step(secret: &[u8], step: i64) -> Result<String> {
    let t = totp(secret, "x")?;
    Ok(t.generate(u64::try_from(step).unwrap_or(0) * STEP_SECS))
}

/// The step `code` belongs to, if it is one of the steps within [`SKEW_STEPS`] of `now_secs` and
/// later than `last_used` (the last step accepted; 0 when none).
pub fn matching_step(secret: &[u8], code: &str, now_secs: u64, last_used: i64) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = totp(secret, "x").ok()?;
    let now_step = i64::try_from(now_secs / STEP_SECS).ok()?;
    let mut found = None;
    // Check every candidate step (no early exit), so timing says nothing about which matched.
    for step in (now_step - SKEW_STEPS)..=(now_step + SKEW_STEPS) {
        if step <= 0 || step <= last_used {
            continue;
        }
        let expected = t.generate(step as u64 * STEP_SECS);
        let same: bool = subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), code.as_bytes()).into();
        if same && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// Fresh recovery codes, `xxxx-xxxx-xxxx` from an unambiguous alphabet (60 bits each).
pub fn new_recovery_codes() -> Vec<Secret> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    (0..RECOVERY_CODES)
        .map(|_| {
            let raw = random_from(ALPHABET, 12);
            Secret::new(format!("{}-{}-{}", &raw[..4], &raw[4..8], &raw[8..]))
        })
        .collect()
}

/// A recovery code as typed: trimmed, lowercased, dashes and spaces removed.
pub fn normalise_recovery_code(code: &str) -> String {
    code.chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RFC 6238 appendix B test secret (SHA-1).
    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc_6238_vectors() {
        // (time, 8-digit code from the RFC): the 6-digit code is its last six digits.
        for (t, code8) in [
            (59u64, "94287082"),
            (1111111109, "07081804"),
            (1111111111, "14050471"),
            (1234567890, "89005924"),
            (2000000000, "69279037"),
        ] {
            let step = (t / STEP_SECS) as i64;
            assert_eq!(
                code_at_step(RFC_SECRET, step).unwrap(),
                &code8[2..],
                "t={t}"
            );
        }
    }

    #[test]
    fn window_is_one_step_either_side() {
        let now = 1_700_000_015u64;
        let step = (now / STEP_SECS) as i64;
        for d in [-1i64, 0, 1] {
            let code = code_at_step(RFC_SECRET, step + d).unwrap();
            assert_eq!(
                matching_step(RFC_SECRET, &code, now, 0),
                Some(step + d),
                "d={d}"
            );
        }
        for d in [-3i64, -2, 2, 3] {
            let code = code_at_step(RFC_SECRET, step + d).unwrap();
            // (a code of a far step could collide with a near one by chance; these do not)
            assert_eq!(matching_step(RFC_SECRET, &code, now, 0), None, "d={d}");
        }
    }

    #[test]
    fn a_used_step_is_never_accepted_again() {
        let now = 1_700_000_015u64;
        let step = (now / STEP_SECS) as i64;
        let code = code_at_step(RFC_SECRET, step).unwrap();
        assert_eq!(matching_step(RFC_SECRET, &code, now, step - 1), Some(step));
        // the same code once its step was recorded: refused, also a step later
        assert_eq!(matching_step(RFC_SECRET, &code, now, step), None);
        assert_eq!(matching_step(RFC_SECRET, &code, now + 30, step), None);
        // an older code after a newer one was used: refused
        let older = code_at_step(RFC_SECRET, step - 1).unwrap();
        assert_eq!(matching_step(RFC_SECRET, &older, now, step), None);
        // the next step's code is fine
        let next = code_at_step(RFC_SECRET, step + 1).unwrap();
        assert_eq!(matching_step(RFC_SECRET, &next, now, step), Some(step + 1));
    }

    #[test]
    fn malformed_codes_are_refused() {
        for bad in ["", "12345", "1234567", "12345a", "  "] {
            assert_eq!(matching_step(RFC_SECRET, bad, 1_700_000_000, 0), None);
        }
    }

    #[test]
    fn enrolment_gives_an_otpauth_uri_and_recovery_codes_are_distinct() {
        let s = new_secret();
        assert_eq!(s.len(), SECRET_BYTES);
        let (b32, uri) = enrolment(&s, "dev@example.com").unwrap();
        assert!(uri
            .expose()
            .starts_with("otpauth://totp/Rampart:dev%40example.com?secret="));
        assert!(uri.expose().contains(b32.expose()));
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let mut set: Vec<&str> = codes.iter().map(|c| c.expose()).collect();
        set.sort();
        set.dedup();
        assert_eq!(set.len(), RECOVERY_CODES);
        assert_eq!(normalise_recovery_code(" ABCD-efgh-jkmn "), "abcdefghjkmn");
    }
}
