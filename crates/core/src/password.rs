//! Password policy (OWASP ASVS V2.1) and Argon2id hashing.
//!
//! The policy: 12 to 128 characters, no composition rules, not on the embedded list of common
//! passwords (compared lowercased), a `zxcvbn` score of at least 3, and not containing the account's
//! own e-mail local part or phone number. Hashing and verification are CPU-heavy and run on the
//! blocking pool. Passwords only ever travel as [`Secret`]; nothing here logs them.

use crate::secret::{random_hex, Secret};
use crate::{Error, Result};
use argon2::password_hash::{rand_core::OsRng, PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use std::collections::HashSet;
use std::sync::OnceLock;

/// Fewest characters accepted.
pub const MIN_LEN: usize = 12;
/// Most characters accepted (ASVS asks for at least 64).
pub const MAX_LEN: usize = 128;
/// Lowest acceptable `zxcvbn` score (0-4).
pub const MIN_SCORE: u8 = 3;

static COMMON_TEXT: &str = include_str!("../data/common-passwords.txt");

fn common() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| {
        COMMON_TEXT
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    })
}

/// Which rule a password breaks; the message names it for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Weakness {
    #[error("password must be at least {MIN_LEN} characters")]
    TooShort,
    #[error("password must be at most {MAX_LEN} characters")]
    TooLong,
    #[error("password is on the list of common or breached passwords")]
    Common,
    #[error("password is too easy to guess (strength {0} of 4, at least {MIN_SCORE} needed)")]
    Guessable(u8),
    #[error("password must not contain your e-mail address or phone number")]
    ContainsIdentity,
}

impl From<Weakness> for Error {
    fn from(w: Weakness) -> Error {
        Error::WeakPassword(w.to_string())
    }
}

/// Check `password` against the policy for an account with this e-mail and/or phone.
pub fn check(password: &str, email: Option<&str>, phone: Option<&str>) -> Result<(), Weakness> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Err(Weakness::TooShort);
    }
    if n > MAX_LEN {
        return Err(Weakness::TooLong);
    }
    let lower = password.to_lowercase();
    if common().contains(lower.as_str()) {
        return Err(Weakness::Common);
    }
    let mut inputs: Vec<String> = Vec::new();
    if let Some(local) = email.and_then(|e| e.split('@').next()) {
        let local = local.to_lowercase();
        if local.chars().count() >= 3 && lower.contains(&local) {
            return Err(Weakness::ContainsIdentity);
        }
        inputs.push(local);
    }
    if let Some(phone) = phone {
        let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
        let pw_digits: String = password.chars().filter(char::is_ascii_digit).collect();
        // The full number, or its last eight digits (the national part people type).
        let tail = &digits[digits.len().saturating_sub(8)..];
        if digits.len() >= 6 && (pw_digits.contains(&digits) || pw_digits.contains(tail)) {
            return Err(Weakness::ContainsIdentity);
        }
        inputs.push(digits);
    }
    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let score = u8::from(zxcvbn::zxcvbn(password, &refs).score());
    if score < MIN_SCORE {
        return Err(Weakness::Guessable(score));
    }
    Ok(())
}

/// Argon2id (default parameters) PHC string of `password`, computed on the blocking pool.
pub async fn hash(password: &Secret) -> Result<String> {
    let pw = password.clone();
    tokio::task::spawn_blocking(move || hash_sync(pw.expose()))
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
}

fn hash_sync(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("password hashing: {e}")))
}

/// A hash of a random password, to verify against when the account does not exist, so an unknown
/// user costs the same time as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_sync(&random_hex(16)).unwrap_or_default())
}

/// Verify `password` against a stored PHC string (or, with `None`, against a dummy hash, always
/// false). Runs on the blocking pool.
pub async fn verify(password: &Secret, stored: Option<String>) -> bool {
    let pw = password.clone();
    tokio::task::spawn_blocking(move || {
        let real = stored.is_some();
        let text = stored.unwrap_or_else(|| dummy_hash().to_owned());
        let ok = PasswordHash::new(&text)
            .map(|h| {
                Argon2::default()
                    .verify_password(pw.expose().as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false);
        ok && real
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_is_embedded_and_large() {
        assert!(common().len() > 5000, "{}", common().len());
        assert!(common().contains("password1234"));
    }

    #[test]
    fn policy_rules() {
        assert_eq!(check("short", None, None), Err(Weakness::TooShort));
        // eleven characters, counted as characters not bytes
        assert_eq!(check("ééééééééééé", None, None), Err(Weakness::TooShort));
        assert_eq!(check(&"x".repeat(129), None, None), Err(Weakness::TooLong));
        assert_eq!(check("Password1234", None, None), Err(Weakness::Common));
        assert_eq!(check("QWERTYUIOP123", None, None), Err(Weakness::Common));
        assert!(matches!(
            check("aaaaaaaaaaaab", None, None),
            Err(Weakness::Guessable(_))
        ));
        assert_eq!(
            check(
                "alice.smith-velvet-tundra",
                Some("alice.smith@example.com"),
                None
            ),
            Err(Weakness::ContainsIdentity)
        );
        assert_eq!(
            check("velvet tundra 55512345678", None, Some("+4955512345678")),
            Err(Weakness::ContainsIdentity)
        );
        // no composition rules: a long passphrase of lowercase words passes
        assert_eq!(check("correct horse battery staple", None, None), Ok(()));
        assert_eq!(
            check(
                "velvet tundra oxide lantern",
                Some("bob@example.com"),
                Some("+15551234567")
            ),
            Ok(())
        );
        // 128 characters are accepted
        let long: String = "velvet tundra oxide lantern "
            .repeat(5)
            .chars()
            .take(128)
            .collect();
        assert_eq!(check(&long, None, None), Ok(()));
    }

    #[tokio::test]
    async fn hash_and_verify() {
        let pw = Secret::new("velvet tundra oxide lantern".into());
        let h = hash(&pw).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(&pw, Some(h.clone())).await);
        assert!(!verify(&Secret::new("velvet tundra oxide lantexn".into()), Some(h)).await);
        // the dummy path never succeeds, even for a password that happens to match nothing
        assert!(!verify(&pw, None).await);
        assert!(!verify(&pw, Some("not a phc string".into())).await);
    }
}
