//! Secret material: a zeroizing string that never prints, and the master key that seals secrets at
//! rest (AES-256-GCM envelope: `key_id(1) || nonce(12) || ciphertext+tag`).

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
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

const KEY_ID: u8 = 1;

/// The master key (32 bytes). Loaded from a 0600 file, generated on first start.
pub struct MasterKey {
    cipher: Aes256Gcm,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

impl MasterKey {
    pub fn from_bytes(key: &[u8; 32]) -> MasterKey {
        MasterKey {
            cipher: Aes256Gcm::new(key.into()),
        }
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

    /// Encrypt `plain` with a fresh random nonce.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        // Encryption with a valid key and nonce only fails for plaintexts beyond 64 GiB.
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain)
            .unwrap_or_default();
        let mut out = Vec::with_capacity(13 + ct.len());
        out.push(KEY_ID);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        if sealed.len() < 13 + 16 || sealed[0] != KEY_ID {
            return Err(KeyError::Open);
        }
        self.cipher
            .decrypt(Nonce::from_slice(&sealed[1..13]), &sealed[13..])
            .map(Zeroizing::new)
            .map_err(|_| KeyError::Open)
    }

    pub fn open_string(&self, sealed: &[u8]) -> Result<Secret, KeyError> {
        let b = self.open(sealed)?;
        Ok(Secret(
            std::str::from_utf8(&b)
                .map_err(|_| KeyError::Open)?
                .to_owned(),
        ))
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

    #[test]
    fn seal_open() {
        let k = MasterKey::from_bytes(&[7; 32]);
        let s = k.seal(b"hello");
        assert_ne!(&s[13..18], b"hello");
        assert_eq!(&k.open(&s).unwrap()[..], b"hello");
        let mut bad = s.clone();
        bad[20] ^= 1;
        assert!(k.open(&bad).is_err());
        assert!(MasterKey::from_bytes(&[8; 32]).open(&s).is_err());
        assert!(k.open(&[1, 2]).is_err());
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
