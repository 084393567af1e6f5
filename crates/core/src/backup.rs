//! Backups: one encrypted file holding a consistent copy of the database and the uploaded files
//! (firmware images, allowlists), made while the server runs, and restored into a data directory
//! that holds the same master key. The key is never in the file: a backup without its key is
//! noise, and a backup of a tenant's data outlives nothing the key does not.
//!
//! The file: the line `RAMPART-BACKUP 1`, a JSON header line (`key_id` names the master key
//! without revealing it, `salt` makes this backup's key), then frames `len(u32 BE) || ciphertext`
//! of AES-256-GCM over at most [`FRAME`] plaintext bytes each. A frame's nonce is its index, its
//! associated data the header line, its index and whether it is the last, so frames cannot be
//! dropped, reordered, or cut off at the end without the restore noticing. The plaintext is a
//! sequence of entries: a JSON line `{"kind": "database"|"file", "path", "size"}` and `size` bytes.

use crate::secret::{random_hex, MasterKey};
use crate::{Core, Error, Result};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8] = b"RAMPART-BACKUP 1\n";
/// Plaintext bytes per frame.
const FRAME: usize = 1 << 20;
const KEY_LABEL: &[u8] = b"rampart backup v1";
/// The database's name inside a backup and in a data directory.
pub const DATABASE_FILE: &str = "rampart.db";

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: u32,
    key_id: String,
    salt: String,
    created_at: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    kind: String,
    path: String,
    size: u64,
}

/// What a backup or a restore copied.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    pub database_bytes: u64,
    pub files: u64,
    pub file_bytes: u64,
}

/// Encrypts what is written into frames on `out`.
struct Sealer<W: Write> {
    out: W,
    cipher: Aes256Gcm,
    aad: Vec<u8>,
    buf: Vec<u8>,
    index: u64,
}

fn frame_aad(header: &[u8], index: u64, last: bool) -> Vec<u8> {
    let mut aad = header.to_vec();
    aad.extend_from_slice(&index.to_be_bytes());
    aad.push(u8::from(last));
    aad
}

fn frame_nonce(index: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&index.to_be_bytes());
    n
}

impl<W: Write> Sealer<W> {
    fn emit(&mut self, last: bool) -> std::io::Result<()> {
        let aad = frame_aad(&self.aad, self.index, last);
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&frame_nonce(self.index)),
                Payload {
                    msg: &self.buf,
                    aad: &aad,
                },
            )
            .map_err(|_| std::io::Error::other("backup frame could not be encrypted"))?;
        let len = u32::try_from(ct.len()).map_err(std::io::Error::other)?;
        self.out.write_all(&len.to_be_bytes())?;
        self.out.write_all(&ct)?;
        self.buf.clear();
        self.index += 1;
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<W> {
        self.emit(true)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for Sealer<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = FRAME - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == FRAME {
            self.emit(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Decrypts frames from `input`; reading past the last frame gives end of file, and a file that
/// ends before its last frame is an error.
struct Opener<R: Read> {
    input: R,
    cipher: Aes256Gcm,
    aad: Vec<u8>,
    buf: Vec<u8>,
    at: usize,
    index: u64,
    done: bool,
}

impl<R: Read> Opener<R> {
    fn next_frame(&mut self) -> std::io::Result<()> {
        let mut len = [0u8; 4];
        self.input
            .read_exact(&mut len)
            .map_err(|_| bad("the backup ends before its last frame (cut off)"))?;
        let len = u32::from_be_bytes(len) as usize;
        if len > FRAME + 16 {
            return Err(bad("a frame is larger than any backup writes"));
        }
        let mut ct = vec![0u8; len];
        self.input
            .read_exact(&mut ct)
            .map_err(|_| bad("the backup ends inside a frame (cut off)"))?;
        let nonce = frame_nonce(self.index);
        for last in [false, true] {
            let aad = frame_aad(&self.aad, self.index, last);
            if let Ok(plain) = self.cipher.decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ct,
                    aad: &aad,
                },
            ) {
                self.buf = plain;
                self.at = 0;
                self.index += 1;
                self.done = last;
                return Ok(());
            }
        }
        Err(bad(
            "a frame does not decrypt: the backup was changed, or made with another key",
        ))
    }
}

fn bad(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_owned())
}

impl<R: Read> Read for Opener<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.buf.len() {
            if self.done {
                return Ok(0);
            }
            self.next_frame()?;
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn io_err(e: std::io::Error) -> Error {
    Error::Internal(format!("backup: {e}"))
}

fn write_entry(out: &mut impl Write, kind: &str, path: &str, file: &Path) -> Result<u64> {
    let mut f = std::fs::File::open(file).map_err(io_err)?;
    let size = f.metadata().map_err(io_err)?.len();
    let head = serde_json::to_string(&Entry {
        kind: kind.into(),
        path: path.into(),
        size,
    })
    .map_err(|e| Error::Internal(e.to_string()))?;
    out.write_all(head.as_bytes()).map_err(io_err)?;
    out.write_all(b"\n").map_err(io_err)?;
    let copied = std::io::copy(&mut (&mut f).take(size), out).map_err(io_err)?;
    if copied != size {
        return Err(Error::Internal(format!(
            "backup: {path} shrank while being read"
        )));
    }
    Ok(size)
}

/// Every regular file under `dir`, as paths relative to `base`.
fn files_under(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let t = entry.file_type()?;
        if t.is_dir() {
            files_under(base, &entry.path(), out)?;
        } else if t.is_file() {
            if let Ok(rel) = entry.path().strip_prefix(base) {
                out.push(rel.to_path_buf());
            }
        }
    }
    Ok(())
}

impl Core {
    /// Write an encrypted backup to `out`: a consistent copy of the database taken now (the
    /// server may keep running), then every file under `data_dir/uploads`. `scratch` is a
    /// directory for the database copy on the way (removed before this returns).
    pub async fn backup(
        &self,
        out: impl Write + Send + 'static,
        data_dir: &Path,
        scratch: &Path,
    ) -> Result<BackupSummary> {
        let copy = scratch.join(format!("backup-{}.db", random_hex(8)));
        self.store().snapshot_to(&copy).await?;
        let core = self.clone();
        let data_dir = data_dir.to_path_buf();
        let now = self.now_ms();
        let copy2 = copy.clone();
        let res = tokio::task::spawn_blocking(move || {
            write_backup(core.key(), out, &copy2, &data_dir, now)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()));
        let _ = std::fs::remove_file(&copy);
        res?
    }
}

fn write_backup(
    key: &MasterKey,
    mut out: impl Write,
    database: &Path,
    data_dir: &Path,
    now: i64,
) -> Result<BackupSummary> {
    let salt = random_hex(16);
    let header = serde_json::to_string(&Header {
        format: 1,
        key_id: key.key_id(),
        salt: salt.clone(),
        created_at: now,
    })
    .map_err(|e| Error::Internal(e.to_string()))?;
    out.write_all(MAGIC).map_err(io_err)?;
    out.write_all(header.as_bytes()).map_err(io_err)?;
    out.write_all(b"\n").map_err(io_err)?;
    let k = key.derive(KEY_LABEL, salt.as_bytes());
    let mut sealer = Sealer {
        out,
        cipher: Aes256Gcm::new((&*k).into()),
        aad: header.into_bytes(),
        buf: Vec::with_capacity(FRAME),
        index: 0,
    };
    let mut summary = BackupSummary {
        database_bytes: write_entry(&mut sealer, "database", DATABASE_FILE, database)?,
        ..Default::default()
    };
    let mut files = Vec::new();
    files_under(data_dir, &data_dir.join("uploads"), &mut files).map_err(io_err)?;
    files.sort();
    for rel in files {
        let Some(name) = rel.to_str() else { continue };
        summary.file_bytes += write_entry(&mut sealer, "file", name, &data_dir.join(&rel))?;
        summary.files += 1;
    }
    sealer.finish().map_err(io_err)?;
    Ok(summary)
}

/// Why a restore was refused.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("not a Rampart backup (it does not start with `RAMPART-BACKUP 1`)")]
    NotABackup,
    #[error(
        "this backup was made with master key {wanted}, but the data directory holds key {found}: \
         copy the master.key of the server the backup was made on into the data directory"
    )]
    WrongKey { wanted: String, found: String },
    #[error("{0} exists already: restore into a data directory without a database")]
    Exists(String),
    #[error("the backup is damaged: {0}")]
    Damaged(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Restore the backup read from `input` into `data_dir`, which must hold the master key the
/// backup was made with and no database yet. Files are written 0600; a path in the backup that
/// would leave `data_dir/uploads` is refused. Everything is written into a staging directory
/// first and moved into place only once the whole backup has been read and verified, so a
/// damaged backup leaves the data directory as it was.
pub fn restore(
    key: &MasterKey,
    input: impl Read,
    data_dir: &Path,
) -> Result<BackupSummary, RestoreError> {
    let db_path = data_dir.join(DATABASE_FILE);
    if db_path.exists() {
        return Err(RestoreError::Exists(db_path.display().to_string()));
    }
    let staging = data_dir.join(format!(".restore-{}", random_hex(8)));
    std::fs::create_dir_all(&staging)?;
    let res = restore_into(key, input, &staging).and_then(|summary| {
        let mut moved = Vec::new();
        files_under(&staging, &staging, &mut moved)?;
        for rel in moved {
            let to = data_dir.join(&rel);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::rename(staging.join(&rel), to)?;
        }
        Ok(summary)
    });
    let _ = std::fs::remove_dir_all(&staging);
    res
}

fn restore_into(
    key: &MasterKey,
    mut input: impl Read,
    data_dir: &Path,
) -> Result<BackupSummary, RestoreError> {
    let mut magic = vec![0u8; MAGIC.len()];
    input
        .read_exact(&mut magic)
        .map_err(|_| RestoreError::NotABackup)?;
    if magic != MAGIC {
        return Err(RestoreError::NotABackup);
    }
    let mut header_line = Vec::new();
    let mut b = [0u8; 1];
    while header_line.len() < 4096 {
        input.read_exact(&mut b)?;
        if b[0] == b'\n' {
            break;
        }
        header_line.push(b[0]);
    }
    let header: Header = serde_json::from_slice(&header_line)
        .map_err(|e| RestoreError::Damaged(format!("header: {e}")))?;
    if header.key_id != key.key_id() {
        return Err(RestoreError::WrongKey {
            wanted: header.key_id,
            found: key.key_id(),
        });
    }
    let db_path = data_dir.join(DATABASE_FILE);
    let k = key.derive(KEY_LABEL, header.salt.as_bytes());
    let mut opener = Opener {
        input,
        cipher: Aes256Gcm::new((&*k).into()),
        aad: header_line,
        buf: Vec::new(),
        at: 0,
        index: 0,
        done: false,
    };
    let mut summary = BackupSummary::default();
    loop {
        let mut line = Vec::new();
        loop {
            match opener.read(&mut b)? {
                0 if line.is_empty() => return finish(summary, &db_path),
                0 => return Err(RestoreError::Damaged("an entry is cut off".into())),
                _ if b[0] == b'\n' => break,
                _ if line.len() > 4096 => {
                    return Err(RestoreError::Damaged("an entry header is too long".into()))
                }
                _ => line.push(b[0]),
            }
        }
        let entry: Entry = serde_json::from_slice(&line)
            .map_err(|e| RestoreError::Damaged(format!("entry: {e}")))?;
        let target = match entry.kind.as_str() {
            "database" => db_path.clone(),
            "file" => {
                let rel = Path::new(&entry.path);
                let inside = rel.starts_with("uploads")
                    && rel
                        .components()
                        .all(|c| matches!(c, std::path::Component::Normal(_)));
                if !inside {
                    return Err(RestoreError::Damaged(format!(
                        "{} is not a path under uploads/",
                        entry.path
                    )));
                }
                data_dir.join(rel)
            }
            other => return Err(RestoreError::Damaged(format!("unknown entry kind {other}"))),
        };
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut f = create_private(&target)?;
        let n = std::io::copy(&mut (&mut opener).take(entry.size), &mut f)?;
        if n != entry.size {
            return Err(RestoreError::Damaged(format!("{} is cut off", entry.path)));
        }
        f.sync_all()?;
        if entry.kind == "database" {
            summary.database_bytes = n;
        } else {
            summary.files += 1;
            summary.file_bytes += n;
        }
    }
}

fn finish(summary: BackupSummary, db_path: &Path) -> Result<BackupSummary, RestoreError> {
    if !db_path.exists() {
        return Err(RestoreError::Damaged("it holds no database".into()));
    }
    Ok(summary)
}

fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> MasterKey {
        MasterKey::from_bytes(&[b; 32])
    }

    /// A data directory with a "database" and two uploads, backed up into bytes.
    fn backup_bytes(k: &MasterKey, db: &[u8]) -> (tempfile::TempDir, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.db");
        std::fs::write(&src, db).unwrap();
        std::fs::create_dir_all(dir.path().join("uploads/sha256/ab")).unwrap();
        std::fs::write(dir.path().join("uploads/sha256/ab/abcd"), b"firmware").unwrap();
        std::fs::write(dir.path().join("uploads/sha256/ab/abce"), b"").unwrap();
        let mut out = Vec::new();
        let s = write_backup(k, &mut out, &src, dir.path(), 1).unwrap();
        assert_eq!(
            (s.database_bytes, s.files, s.file_bytes),
            (db.len() as u64, 2, 8)
        );
        (dir, out)
    }

    #[test]
    fn a_backup_restores_what_it_holds_and_nothing_is_in_the_clear() {
        let k = key(1);
        // Over two frames, so frame order matters.
        let db: Vec<u8> = (0..FRAME + 1000).map(|i| (i % 251) as u8).collect();
        let (_src, bytes) = backup_bytes(&k, &db);
        assert!(!bytes.windows(8).any(|w| w == b"firmware"));
        let to = tempfile::tempdir().unwrap();
        let s = restore(&k, bytes.as_slice(), to.path()).unwrap();
        assert_eq!(s.files, 2);
        assert_eq!(std::fs::read(to.path().join(DATABASE_FILE)).unwrap(), db);
        assert_eq!(
            std::fs::read(to.path().join("uploads/sha256/ab/abcd")).unwrap(),
            b"firmware"
        );
        // Not over an existing database.
        assert!(matches!(
            restore(&k, bytes.as_slice(), to.path()),
            Err(RestoreError::Exists(_))
        ));
    }

    #[test]
    fn another_key_a_cut_a_change_or_a_swap_is_refused() {
        let k = key(1);
        let db: Vec<u8> = (0..FRAME + 10).map(|i| (i % 7) as u8).collect();
        let (_src, bytes) = backup_bytes(&k, &db);
        let fresh = || tempfile::tempdir().unwrap();
        assert!(matches!(
            restore(&key(2), bytes.as_slice(), fresh().path()),
            Err(RestoreError::WrongKey { .. })
        ));
        assert!(matches!(
            restore(&k, &b"PK\x03\x04 zip"[..], fresh().path()),
            Err(RestoreError::NotABackup)
        ));
        // Cut off after the first frame: the last frame is missing.
        let head_len = bytes
            .iter()
            .skip(MAGIC.len())
            .position(|b| *b == b'\n')
            .unwrap()
            + MAGIC.len()
            + 1;
        let first = u32::from_be_bytes(bytes[head_len..head_len + 4].try_into().unwrap()) as usize;
        let cut = &bytes[..head_len + 4 + first];
        let to = fresh();
        assert!(restore(&k, cut, to.path()).is_err());
        assert_eq!(
            std::fs::read_dir(to.path()).unwrap().count(),
            0,
            "a refused restore leaves nothing behind"
        );
        // One bit changed in the middle.
        let mut changed = bytes.clone();
        let mid = changed.len() / 2;
        changed[mid] ^= 1;
        assert!(restore(&k, changed.as_slice(), fresh().path()).is_err());
        // A header changed (its salt): the frames no longer open.
        let text = String::from_utf8_lossy(&bytes[..head_len])
            .replace("\"created_at\":1", "\"created_at\":2");
        let mut swapped = text.into_bytes();
        swapped.extend_from_slice(&bytes[head_len..]);
        assert!(restore(&k, swapped.as_slice(), fresh().path()).is_err());
    }
}
