//! Password policy (OWASP ASVS V2.1) and Argon2id hashing.
//!
//! The policy: 12 to 128 characters, no composition rules, not on the embedded list of common
//! passwords (compared lowercased), a `zxcvbn` score of at least 3, and not containing the account's
//! own e-mail local part or phone number. Passwords only ever travel as [`Secret`]; nothing here
//! logs them.
//!
//! Hashing and verification are CPU- and memory-heavy (Argon2id's defaults take 19 MiB each) and
//! run on the blocking pool, but only through a [`Hasher`]: at most `concurrency` computations at
//! once and `queue` more waiting; past that a caller is refused at once with [`Error::Busy`]
//! instead of growing the blocking pool and its memory with every concurrent login.

use crate::secret::{random_hex, Secret};
use crate::{Error, Result};
use argon2::password_hash::{rand_core::OsRng, PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::Semaphore;

/// Fewest characters accepted.
pub const MIN_LEN: usize = 12;
/// Most characters accepted (ASVS asks for at least 64).
pub const MAX_LEN: usize = 128;
/// Lowest acceptable `zxcvbn` score (0-4).
pub const MIN_SCORE: u8 = 3;

static COMMON_TEXT: &str = include_str!("../../data/common-passwords.txt");

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

/// Argon2id (default parameters) PHC string of `password`.
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

/// Whether `password` matches a stored PHC string (with `None`, a dummy hash: always false).
fn verify_sync(password: &str, stored: Option<String>) -> bool {
    let real = stored.is_some();
    let text = stored.unwrap_or_else(|| dummy_hash().to_owned());
    let ok = PasswordHash::new(&text)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false);
    ok && real
}

/// The limit's name in refusals and `rampart_limit_refusals_total{limit}`.
pub const LIMIT_NAME: &str = "password_hash";

/// Bounds the Argon2 computations of the process: `concurrency` at once on the blocking pool,
/// `queue` more waiting for a slot, every further caller refused with [`Error::Busy`].
#[derive(Debug, Clone)]
pub struct Hasher {
    inner: Arc<HasherInner>,
}

#[derive(Debug)]
struct HasherInner {
    running: Arc<Semaphore>,
    /// Admitted callers: running, or queued for a slot.
    admitted: AtomicUsize,
    max_admitted: usize,
}

impl Hasher {
    /// `concurrency` 0 means the number of cores.
    pub fn new(concurrency: usize, queue: usize) -> Hasher {
        let concurrency = if concurrency == 0 {
            std::thread::available_parallelism().map_or(1, usize::from)
        } else {
            concurrency
        };
        Hasher {
            inner: Arc::new(HasherInner {
                running: Arc::new(Semaphore::new(concurrency)),
                admitted: AtomicUsize::new(0),
                max_admitted: concurrency.saturating_add(queue),
            }),
        }
    }

    /// Take a place in the queue, or `Busy` (counted and logged) when it is full. Admit before
    /// claiming a counted try, so a refused caller has used none.
    pub fn admit(&self) -> Result<Admission> {
        let taken = self
            .inner
            .admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.inner.max_admitted).then_some(n + 1)
            });
        if taken.is_err() {
            crate::limits::api::count_refusal(LIMIT_NAME);
            tracing::info!(
                limit = LIMIT_NAME,
                admitted = self.inner.max_admitted,
                "password hashing refused: every slot and queue place is taken"
            );
            return Err(Error::Busy(
                "the server is busy checking passwords; retry shortly".into(),
            ));
        }
        Ok(Admission {
            inner: self.inner.clone(),
        })
    }

    /// Hash a new password (admitted now, or `Busy`).
    pub async fn hash(&self, password: &Secret) -> Result<String> {
        self.admit()?.hash(password).await
    }
}

/// A caller's place among the admitted; the place is given back when the computation ends (or
/// when it is dropped unused).
#[derive(Debug)]
pub struct Admission {
    inner: Arc<HasherInner>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.inner.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    /// Wait for a slot, then run `f` on the blocking pool. The slot and the place travel into
    /// the blocking task, so a caller that goes away mid-way does not free them while the
    /// computation still runs.
    async fn run<T: Send + 'static>(self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let permit = self
            .inner
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let out = f();
            drop(permit);
            drop(self);
            out
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))
    }

    /// Argon2id (default parameters) PHC string of `password`.
    pub async fn hash(self, password: &Secret) -> Result<String> {
        let pw = password.clone();
        self.run(move || hash_sync(pw.expose())).await?
    }

    /// Verify `password` against a stored PHC string (or, with `None`, against a dummy hash,
    /// always false).
    pub async fn verify(self, password: &Secret, stored: Option<String>) -> bool {
        let pw = password.clone();
        self.run(move || verify_sync(pw.expose(), stored))
            .await
            .unwrap_or(false)
    }
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
        let hasher = Hasher::new(0, 4);
        let verify = |pw: &Secret, stored: Option<String>| {
            let a = hasher.admit().unwrap();
            let pw = pw.clone();
            async move { a.verify(&pw, stored).await }
        };
        let pw = Secret::new("velvet tundra oxide lantern".into());
        let h = hasher.hash(&pw).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(&pw, Some(h.clone())).await);
        assert!(!verify(&Secret::new("velvet tundra oxide lantexn".into()), Some(h)).await);
        // the dummy path never succeeds, even for a password that happens to match nothing
        assert!(!verify(&pw, None).await);
        assert!(!verify(&pw, Some("not a phc string".into())).await);
    }

    #[tokio::test]
    async fn hashing_past_the_queue_is_refused_busy() {
        let hasher = Hasher::new(1, 2);
        let places: Vec<Admission> = (0..3).map(|_| hasher.admit().unwrap()).collect();
        assert!(matches!(hasher.admit(), Err(Error::Busy(_))));
        assert!(matches!(
            hasher.hash(&Secret::new("x".into())).await,
            Err(Error::Busy(_))
        ));
        // a place comes back when its computation ends
        let mut places = places.into_iter();
        let first = places.next().unwrap();
        assert!(!first.verify(&Secret::new("x".into()), None).await);
        let again = hasher.admit().unwrap();
        assert!(matches!(hasher.admit(), Err(Error::Busy(_))));
        drop((again, places));
        assert_eq!(hasher.inner.admitted.load(Ordering::Acquire), 0);
    }
}
