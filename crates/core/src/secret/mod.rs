//! Secret material: a zeroizing string that never prints, and the master key that seals secrets at
//! rest (AES-256-GCM envelope: `version(1) || nonce(12) || ciphertext+tag`) and keys the audit
//! chain.
//!
//! A seal is bound to its place: the associated data names the table, column and row id it is
//! stored at ([`Place`]), so a sealed value copied to another row or column does not open.
//! Version 1 envelopes (no associated data) are only opened by the one-time rewrite that binds
//! them ([`MasterKey::bind_legacy`]); everything else refuses them.

pub mod at_rest;
pub mod mask;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use rampart_store::at_rest::SealedColumn;
use rand::RngCore;
use sha2::Sha256;
use std::fmt;
use std::path::Path;
use zeroize::{Zeroize, Zeroizing};

/// A secret string: zeroized on drop, `***` in Debug and Display.
#[derive(Clone, PartialEq, Eq, Zeroize)]
#[zeroize(drop)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    /// The clear value; call only where the secret is used or shown once to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Secrets arrive in request bodies (passwords, codes, passcodes); they are wrapped at once.
impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// `n` random bytes from the OS CSPRNG as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// A random string of `n` characters from `alphabet`, without modulo bias.
pub fn random_from(alphabet: &[u8], n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rngs::OsRng;
    (0..n)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {0} is readable by group or others; chmod 600 it")]
    Permissions(String),
    #[error("key file {0} must hold 32 bytes as 64 hex characters")]
    Format(String),
    #[error("sealed value cannot be opened (wrong key or corrupted)")]
    Open,
}

/// Envelope version of seals without associated data (before seals were bound to their place).
const UNBOUND: u8 = 1;
/// Envelope version of seals bound to their [`Place`].
const BOUND: u8 = 2;

/// Where a sealed value is stored: the table, column and row id that its seal is bound to.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    column: SealedColumn,
    row: &'a str,
}

impl<'a> Place<'a> {
    pub fn new(column: SealedColumn, row: &'a str) -> Place<'a> {
        Place { column, row }
    }

    /// The associated data: a label, then table, column and row id, each length-prefixed so no
    /// two places encode alike.
    fn aad(&self) -> Vec<u8> {
        let mut out = b"rampart-seal-v2".to_vec();
        for part in [self.column.table, self.column.column, self.row] {
            out.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out
    }
}

/// The master key (32 bytes). Loaded from a 0600 file, generated on first start.
pub struct MasterKey {
    cipher: Aes256Gcm,
    /// HMAC key of the audit chain, derived from the master key with HKDF-SHA256.
    audit_key: Zeroizing<[u8; 32]>,
    /// The key itself, for keys derived from it for other purposes (backups).
    raw: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

impl MasterKey {
    pub fn from_bytes(key: &[u8; 32]) -> MasterKey {
        let mut audit_key = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's output limit, so expand cannot fail.
        let _ = hkdf::Hkdf::<Sha256>::new(None, key)
            .expand(b"rampart audit chain v2", &mut audit_key[..]);
        MasterKey {
            cipher: Aes256Gcm::new(key.into()),
            audit_key,
            raw: Zeroizing::new(*key),
        }
    }

    /// A key for one purpose (`label`) and one use (`salt`), derived with HKDF-SHA256; the master
    /// key itself never leaves this type.
    pub fn derive(&self, label: &[u8], salt: &[u8]) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's output limit, so expand cannot fail.
        let _ = hkdf::Hkdf::<Sha256>::new(Some(salt), &self.raw[..]).expand(label, &mut out[..]);
        out
    }

    /// A name for this key that reveals nothing about it (16 hex characters), so a file made
    /// with it can say which key it needs.
    pub fn key_id(&self) -> String {
        hex::encode(&self.derive(b"rampart key id v1", b"")[..8])
    }

    /// HMAC-SHA256 of `data` under the audit chain's key, lowercase hex.
    pub fn audit_mac(&self, data: &[u8]) -> String {
        // HMAC takes a key of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.audit_key[..])
            .expect("HMAC accepts any key length");
        mac.update(data);
        hex::encode(mac.finalize().into_bytes())
    }

    /// Load the key at `path`, creating it (mode 0600) when absent. Refuses a key file that group or
    /// others may read. Returns the key and whether it was created now.
    pub fn load_or_create(path: &Path) -> Result<(MasterKey, bool), KeyError> {
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        if path.exists() {
            check_private(path)?;
            let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
            let mut key = Zeroizing::new([0u8; 32]);
            hex::decode_to_slice(text.trim(), &mut key[..])
                .map_err(|_| KeyError::Format(path.display().to_string()))?;
            return Ok((MasterKey::from_bytes(&key), false));
        }
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut key[..]);
        write_private(path, hex::encode(&key[..]).as_bytes()).map_err(io)?;
        Ok((MasterKey::from_bytes(&key), true))
    }

    /// Encrypt `plain`, to be stored at `at`, with a fresh random nonce.
    pub fn seal(&self, at: Place<'_>, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = at.aad();
        // Encryption with a valid key and nonce only fails for plaintexts beyond 64 GiB.
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(13 + ct.len());
        out.push(BOUND);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Open a value read from `at`; fails for a value sealed for another place.
    pub fn open(&self, at: Place<'_>, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        if sealed.len() < 13 + 16 || sealed[0] != BOUND {
            return Err(KeyError::Open);
        }
        let aad = at.aad();
        self.cipher
            .decrypt(
                Nonce::from_slice(&sealed[1..13]),
                Payload {
                    msg: &sealed[13..],
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| KeyError::Open)
    }

    pub fn open_string(&self, at: Place<'_>, sealed: &[u8]) -> Result<Secret, KeyError> {
        let b = self.open(at, sealed)?;
        Ok(Secret(
            std::str::from_utf8(&b)
                .map_err(|_| KeyError::Open)?
                .to_owned(),
        ))
    }
}

impl MasterKey {
    /// A value sealed before seals were bound, sealed again for `at`; `None` when it is not such a
    /// value or does not open. Only for the one-time rewrite of stored values.
    pub fn bind_legacy(&self, at: Place<'_>, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < 13 + 16 || sealed[0] != UNBOUND {
            return None;
        }
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(&sealed[1..13]), &sealed[13..])
            .map(Zeroizing::new)
            .ok()?;
        Some(self.seal(at, &plain))
    }
}

#[cfg(test)]
impl MasterKey {
    /// A version 1 envelope (no associated data), as written before seals were bound.
    pub(crate) fn seal_unbound(&self, plain: &[u8]) -> Vec<u8> {
        let mut out = vec![UNBOUND];
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        out.extend_from_slice(&nonce);
        out.extend(
            self.cipher
                .encrypt(Nonce::from_slice(&nonce), plain)
                .unwrap(),
        );
        out
    }
}

/// Refuse files that group or others can read.
pub fn check_private(path: &Path) -> Result<(), KeyError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|source| KeyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(KeyError::Permissions(path.display().to_string()));
        }
    }
    Ok(())
}

/// Create `path` with mode 0600 (failing if it exists) and write `data`.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    use rampart_store::at_rest::{DEVICE_PASSCODE, DEVICE_SECRET};

    #[test]
    fn seal_open() {
        let k = MasterKey::from_bytes(&[7; 32]);
        let at = Place::new(DEVICE_SECRET, "d1");
        let s = k.seal(at, b"hello");
        assert_ne!(&s[13..18], b"hello");
        assert_eq!(&k.open(at, &s).unwrap()[..], b"hello");
        let mut bad = s.clone();
        bad[20] ^= 1;
        assert!(k.open(at, &bad).is_err());
        assert!(MasterKey::from_bytes(&[8; 32]).open(at, &s).is_err());
        assert!(k.open(at, &[1, 2]).is_err());
    }

    #[test]
    fn sealed_value_moved_to_another_row_or_column_does_not_open() {
        let k = MasterKey::from_bytes(&[7; 32]);
        let s = k.seal(Place::new(DEVICE_SECRET, "d1"), b"hello");
        assert!(k.open(Place::new(DEVICE_SECRET, "d2"), &s).is_err());
        assert!(k.open(Place::new(DEVICE_PASSCODE, "d1"), &s).is_err());
        // the row id is length-prefixed: no two places share an encoding
        assert_ne!(
            Place::new(DEVICE_SECRET, "d1").aad(),
            Place::new(DEVICE_PASSCODE, "d1").aad()
        );
    }

    #[test]
    fn unbound_seals_open_only_through_the_one_time_binding() {
        let k = MasterKey::from_bytes(&[7; 32]);
        let legacy = k.seal_unbound(b"old secret");
        let at = Place::new(DEVICE_SECRET, "d1");
        assert!(k.open(at, &legacy).is_err());
        let bound = k.bind_legacy(at, &legacy).unwrap();
        assert_eq!(&k.open(at, &bound).unwrap()[..], b"old secret");
        assert!(
            k.bind_legacy(at, &bound).is_none(),
            "bound values are left alone"
        );
    }

    #[test]
    fn audit_key_is_derived_not_the_master_key() {
        let a = MasterKey::from_bytes(&[7; 32]);
        assert_eq!(
            a.audit_mac(b"x"),
            MasterKey::from_bytes(&[7; 32]).audit_mac(b"x")
        );
        assert_ne!(
            a.audit_mac(b"x"),
            MasterKey::from_bytes(&[8; 32]).audit_mac(b"x")
        );
        let mut plain = <Hmac<Sha256> as Mac>::new_from_slice(&[7; 32]).unwrap();
        plain.update(b"x");
        assert_ne!(
            a.audit_mac(b"x"),
            hex::encode(plain.finalize().into_bytes())
        );
    }

    #[test]
    fn key_file_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("master.key");
        let (_, created) = MasterKey::load_or_create(&p).unwrap();
        assert!(created);
        let (_, created) = MasterKey::load_or_create(&p).unwrap();
        assert!(!created);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            MasterKey::load_or_create(&p),
            Err(KeyError::Permissions(_))
        ));
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s:?} {s}"), "*** ***");
    }
}
