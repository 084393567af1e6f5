//! Uploaded files: a size cap per kind, the content type decided by the content (the
//! declared `Content-Type` must agree with it), and storage by content hash —
//! `DIR/sha256/<first two hex digits>/<64 hex digits>`, written to a temporary file, synced and
//! renamed — never under a name the client chose.
//!
//! The first kind is the allowlist file (a manufacturer's MAC/IMEI list), read whole; the
//! second is the firmware image, written to disk as it arrives ([`HashingUpload`]), so a
//! 64 MiB image never sits in memory.

use crate::audit::action;
use crate::audit::Actor;
use crate::audit::AuditEvent;
use crate::{Core, Error, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Where uploads go and how large each kind may be (the `[uploads]` section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadsConfig {
    /// The content-addressed store; `None` refuses uploads (a `Core` without a data directory).
    pub dir: Option<PathBuf>,
    /// Largest allowlist file, bytes.
    pub max_allowlist_bytes: usize,
    /// Largest firmware image, bytes (`ota.max_firmware_bytes`).
    pub max_firmware_bytes: u64,
}

impl Default for UploadsConfig {
    fn default() -> Self {
        UploadsConfig {
            dir: None,
            max_allowlist_bytes: 2 * 1024 * 1024,
            max_firmware_bytes: 64 * 1024 * 1024,
        }
    }
}

/// What the first bytes of a file say it is, whatever its declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// UTF-8 text without NUL or other control characters than tab, CR and LF.
    Text,
    /// Text that is markup a browser would run or render (HTML, SVG, XML).
    Markup,
    /// A recognised binary format, by name.
    Binary(&'static str),
    /// Neither text nor a known format.
    UnknownBinary,
}

impl std::fmt::Display for Sniffed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sniffed::Text => f.write_str("plain text"),
            Sniffed::Markup => f.write_str("HTML/XML markup"),
            Sniffed::Binary(name) => write!(f, "{name} data"),
            Sniffed::UnknownBinary => f.write_str("binary data"),
        }
    }
}

/// Magic numbers of formats worth naming in a refusal.
const MAGIC: &[(&[u8], &str)] = &[
    (b"\x1f\x8b", "gzip"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),
    (b"%PDF-", "PDF"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
    (b"\x7fELF", "ELF executable"),
    (b"MZ", "Windows executable"),
    (b"\xfe\xed\xfa", "Mach-O executable"),
    (b"\xcf\xfa\xed\xfe", "Mach-O executable"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"SQLite format 3\x00", "SQLite database"),
    (b"\xff\xfe", "UTF-16 text"),
    (b"\xfe\xff", "UTF-16 text"),
];

/// Decide what `bytes` hold by their content alone.
pub fn sniff(bytes: &[u8]) -> Sniffed {
    if let Some((_, name)) = MAGIC.iter().find(|(m, _)| bytes.starts_with(m)) {
        return Sniffed::Binary(name);
    }
    let body = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let Ok(text) = std::str::from_utf8(body) else {
        return Sniffed::UnknownBinary;
    };
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
    {
        return Sniffed::UnknownBinary;
    }
    let head = text.trim_start().get(..64).unwrap_or(text.trim_start());
    let head = head.to_ascii_lowercase();
    if [
        "<!doctype",
        "<html",
        "<script",
        "<svg",
        "<?xml",
        "<head",
        "<body",
        "<iframe",
    ]
    .iter()
    .any(|m| head.starts_with(m))
    {
        return Sniffed::Markup;
    }
    Sniffed::Text
}

/// The media type of a `Content-Type` header value, lower-cased, when its charset (if any) is
/// UTF-8 (or its ASCII subset).
fn media_type(declared: &str) -> Option<String> {
    let mut parts = declared.split(';');
    let media = parts.next()?.trim().to_ascii_lowercase();
    for p in parts {
        let (k, v) = p.split_once('=')?;
        if k.trim().eq_ignore_ascii_case("charset") {
            let v = v.trim().trim_matches('"').to_ascii_lowercase();
            if v != "utf-8" && v != "utf8" && v != "us-ascii" {
                return None;
            }
        }
    }
    Some(media)
}

/// Held while a file enters the store and its holder is recorded, and while a holder lets go
/// of a file and the file is removed if it was the last; so an upload of the same bytes cannot
/// slip between a deletion's count of the holders and its removal of the file. It is one lock
/// per process: nodes sharing one upload directory over a network file system keep a narrow
/// window between the two.
static STORE_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub(crate) async fn store_lock() -> tokio::sync::MutexGuard<'static, ()> {
    STORE_LOCK.lock().await
}

/// The store's name of an allowlist file's holder: one per product (uploading the same file to
/// the product again changes nothing).
pub(crate) fn allowlist_holder(product_key: &str) -> String {
    format!("allowlist:{product_key}")
}

/// The path of `sha256` under `dir`, when it is a hash (64 hex digits).
pub(crate) fn hashed_path(dir: &Path, sha256: &str) -> Option<PathBuf> {
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(dir.join("sha256").join(&sha256[..2]).join(sha256))
}

/// A file kept in the content-addressed store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// Lower-case hex SHA-256 of the content: its name in the store.
    pub sha256: String,
    pub size: u64,
    /// False when the same content was stored before.
    pub new: bool,
}

/// Put `bytes` in the store under `dir` by their SHA-256 (idempotent).
pub fn store_by_hash(dir: &Path, bytes: &[u8]) -> std::io::Result<StoredFile> {
    let sha256 = hex::encode(Sha256::digest(bytes));
    let sub = dir.join("sha256").join(&sha256[..2]);
    let path = sub.join(&sha256);
    let size = bytes.len() as u64;
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == size) {
        return Ok(StoredFile {
            sha256,
            size,
            new: false,
        });
    }
    std::fs::create_dir_all(&sub)?;
    let tmp = sub.join(format!(".{sha256}.{}.tmp", std::process::id()));
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    // The rename itself must survive a crash too.
    if let Ok(d) = std::fs::File::open(&sub) {
        let _ = d.sync_all();
    }
    Ok(StoredFile {
        sha256,
        size,
        new: true,
    })
}

/// A file being received: written to a temporary file in the store while its SHA-256 and MD5
/// are computed, refused past its cap, and moved under its hash by [`HashingUpload::persist`].
/// Dropped before that, it removes its temporary file.
pub struct HashingUpload {
    dir: PathBuf,
    tmp: PathBuf,
    file: Option<tokio::fs::File>,
    sha256: Sha256,
    md5: md5::Md5,
    size: u64,
    cap: u64,
    what: &'static str,
    /// The first bytes, for [`sniff`].
    head: Vec<u8>,
}

/// A file kept by [`HashingUpload::persist`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUpload {
    pub sha256: String,
    pub md5: String,
    pub size: u64,
}

const HEAD_BYTES: usize = 512;

impl HashingUpload {
    /// A new temporary file under `dir`; `what` names the kind in a refusal.
    pub async fn start(dir: &Path, cap: u64, what: &'static str) -> std::io::Result<HashingUpload> {
        let tmpdir = dir.join("tmp");
        tokio::fs::create_dir_all(&tmpdir).await?;
        let tmp = tmpdir.join(format!(
            ".upload.{}.{}.tmp",
            std::process::id(),
            crate::secret::random_hex(8)
        ));
        let mut opts = tokio::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        opts.mode(0o600);
        let file = opts.open(&tmp).await?;
        Ok(HashingUpload {
            dir: dir.to_path_buf(),
            tmp,
            file: Some(file),
            sha256: Sha256::new(),
            md5: md5::Md5::new(),
            size: 0,
            cap,
            what,
            head: Vec::new(),
        })
    }

    /// Append bytes; `TooLarge` as soon as the cap is passed.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        if self.size + chunk.len() as u64 > self.cap {
            return Err(Error::TooLarge(format!(
                "{} may hold at most {} bytes",
                self.what, self.cap
            )));
        }
        if self.head.len() < HEAD_BYTES {
            let n = (HEAD_BYTES - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..n]);
        }
        self.sha256.update(chunk);
        self.md5.update(chunk);
        self.size += chunk.len() as u64;
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| Error::Internal("upload already closed".into()))?;
        f.write_all(chunk)
            .await
            .map_err(|e| Error::Internal(format!("upload store: {e}")))
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// What the first bytes say the file is.
    pub fn sniffed(&self) -> Sniffed {
        sniff(&self.head)
    }

    /// Sync the file and move it to `sha256/<2>/<64>` (kept as it is when that content is
    /// there already).
    pub async fn persist(mut self) -> std::io::Result<StoredUpload> {
        let file = self.file.take();
        if let Some(f) = file {
            f.sync_all().await?;
        }
        let sha256 = hex::encode(std::mem::take(&mut self.sha256).finalize());
        let md5 = hex::encode(std::mem::take(&mut self.md5).finalize());
        let sub = self.dir.join("sha256").join(&sha256[..2]);
        let path = sub.join(&sha256);
        if tokio::fs::metadata(&path)
            .await
            .is_ok_and(|m| m.len() == self.size)
        {
            let _ = tokio::fs::remove_file(&self.tmp).await;
        } else {
            tokio::fs::create_dir_all(&sub).await?;
            tokio::fs::rename(&self.tmp, &path).await?;
            if let Ok(d) = tokio::fs::File::open(&sub).await {
                let _ = d.sync_all().await;
            }
        }
        // Moved or removed: nothing left for `drop`.
        self.tmp = PathBuf::new();
        Ok(StoredUpload {
            sha256,
            md5,
            size: self.size,
        })
    }
}

impl Drop for HashingUpload {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Hardware ids of an allowlist file: one per line, or the first field of a CSV line; blank
/// lines and lines starting with `#` are skipped, as is a first line naming the column
/// (`hardware_id`, `mac`, `imei`, `id`). Duplicates are dropped, first one kept. Errors name the
/// line.
pub fn parse_allowlist_file(text: &str) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut first_data_line = true;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, line) in text.lines().enumerate() {
        let field = line.split(',').next().unwrap_or("").trim();
        let field = field
            .strip_prefix('"')
            .and_then(|f| f.strip_suffix('"'))
            .unwrap_or(field);
        if field.is_empty() || field.starts_with('#') {
            continue;
        }
        let first = std::mem::replace(&mut first_data_line, false);
        if first
            && ["hardware_id", "mac", "imei", "id"]
                .iter()
                .any(|h| field.eq_ignore_ascii_case(h))
        {
            continue;
        }
        if !rampart_proto::ids::valid_hardware_id(field) {
            return Err(Error::Invalid(format!(
                "line {}: invalid hardware id `{}`: 1-64 printable ASCII, no space, `&`, `=` or `|`",
                i + 1,
                field.chars().take(80).collect::<String>()
            )));
        }
        if seen.insert(field.to_owned()) {
            ids.push(field.to_owned());
        }
    }
    if ids.is_empty() {
        return Err(Error::Invalid("the file holds no hardware id".into()));
    }
    Ok(ids)
}

/// The outcome of an allowlist upload.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AllowlistUpload {
    /// SHA-256 of the file as received: its name in the upload store and in the audit log.
    pub sha256: String,
    pub size: u64,
    /// Distinct hardware ids in the file.
    pub submitted: usize,
    /// Of those, how many were not on the allowlist before.
    pub added: u64,
}

impl Core {
    /// Add the hardware ids of an uploaded allowlist file (`declared` is its `Content-Type`:
    /// `text/csv` or `text/plain`, and the content must be plain UTF-8 text). The file is kept by
    /// its hash; the audit entry names the hash. The caller must be allowed to manage the product.
    pub async fn allowlist_upload(
        &self,
        product_key: &str,
        declared: Option<&str>,
        bytes: Vec<u8>,
        actor: &Actor,
    ) -> Result<AllowlistUpload> {
        let cfg = &self.config().uploads;
        if bytes.len() > cfg.max_allowlist_bytes {
            return Err(Error::TooLarge(format!(
                "an allowlist file may hold at most {} bytes",
                cfg.max_allowlist_bytes
            )));
        }
        let media = declared.and_then(media_type);
        if !matches!(media.as_deref(), Some("text/csv" | "text/plain")) {
            return Err(Error::UnsupportedContent(format!(
                "an allowlist file is `text/csv` or `text/plain` (UTF-8), not `{}`",
                declared.unwrap_or("(none)")
            )));
        }
        match sniff(&bytes) {
            Sniffed::Text => {}
            other => {
                return Err(Error::UnsupportedContent(format!(
                    "declared {}, but the content is {other}",
                    media.unwrap_or_default()
                )))
            }
        }
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| Error::UnsupportedContent("the content is not UTF-8".into()))?;
        let ids = parse_allowlist_file(text)?;
        if ids.len() > crate::device::registry::MAX_ALLOWLIST {
            return Err(Error::Invalid(format!(
                "at most {} hardware ids per file",
                crate::device::registry::MAX_ALLOWLIST
            )));
        }
        self.product(product_key).await?;
        let dir = cfg
            .dir
            .clone()
            .ok_or_else(|| Error::Internal("no upload directory is configured".into()))?;
        let held = store_lock().await;
        let stored = tokio::task::spawn_blocking(move || store_by_hash(&dir, &bytes))
            .await
            .map_err(|e| Error::Internal(format!("upload store: {e}")))?
            .map_err(|e| Error::Internal(format!("upload store: {e}")))?;
        self.store()
            .add_upload_ref(
                &stored.sha256,
                &allowlist_holder(product_key),
                self.now_ms(),
            )
            .await?;
        drop(held);
        let added = self
            .store()
            .allowlist_add(product_key, &ids, self.now_ms())
            .await?;
        self.audit(
            AuditEvent::new(actor, action::ALLOWLIST_UPLOAD, "ok")
                .target(format!("product:{product_key}"))
                .tenant_opt(self.product_tenant(product_key).await)
                .detail(format!(
                    "sha256={} bytes={} submitted={} new={added}",
                    stored.sha256,
                    stored.size,
                    ids.len()
                )),
        )
        .await;
        Ok(AllowlistUpload {
            sha256: stored.sha256,
            size: stored.size,
            submitted: ids.len(),
            added,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_decides_the_type() {
        assert_eq!(sniff(b"AA:BB:CC:DD:EE:FF\n"), Sniffed::Text);
        assert_eq!(sniff(b"\xef\xbb\xbfmac\r\n0011\r\n"), Sniffed::Text);
        assert_eq!(sniff(b"\x1f\x8b\x08\x00rest"), Sniffed::Binary("gzip"));
        assert_eq!(sniff(b"PK\x03\x04...."), Sniffed::Binary("zip"));
        assert_eq!(sniff(b"\x7fELF\x02\x01"), Sniffed::Binary("ELF executable"));
        assert_eq!(sniff(b"  <!DOCTYPE html><p>x"), Sniffed::Markup);
        assert_eq!(sniff(b"<script>alert(1)</script>"), Sniffed::Markup);
        assert_eq!(sniff(b"abc\x00def"), Sniffed::UnknownBinary);
        assert_eq!(sniff(b"abc\xc3\x28"), Sniffed::UnknownBinary);
        assert_eq!(sniff(b"a\x1b[31mred"), Sniffed::UnknownBinary);
    }

    #[test]
    fn declared_types_and_charsets() {
        assert_eq!(media_type("text/CSV").as_deref(), Some("text/csv"));
        assert_eq!(
            media_type("text/plain; charset=UTF-8").as_deref(),
            Some("text/plain")
        );
        assert_eq!(media_type("text/plain; charset=latin1"), None);
    }

    #[test]
    fn allowlist_files_parse_by_line_and_first_csv_field() {
        let ids = parse_allowlist_file(
            "\u{feff}mac,batch\r\n# comment\r\nAA:BB:CC:00:00:01,7\r\n\r\n\"AA:BB:CC:00:00:02\",7\r\nAA:BB:CC:00:00:01,8\r\n",
        )
        .unwrap();
        assert_eq!(ids, ["AA:BB:CC:00:00:01", "AA:BB:CC:00:00:02"]);
        let e = parse_allowlist_file("ok-1\nbad id\n").unwrap_err();
        assert!(e.to_string().starts_with("line 2:"), "{e}");
        assert!(parse_allowlist_file("mac\n# nothing\n").is_err());
        // The header is only skipped on the first data line.
        assert_eq!(parse_allowlist_file("a1\nmac\n").unwrap(), ["a1", "mac"]);
    }

    #[tokio::test]
    async fn streamed_uploads_are_hashed_capped_and_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut up = HashingUpload::start(dir.path(), 8, "a file").await.unwrap();
        up.write(b"hel").await.unwrap();
        up.write(b"lo").await.unwrap();
        assert_eq!(up.sniffed(), Sniffed::Text);
        let kept = up.persist().await.unwrap();
        assert_eq!(kept.size, 5);
        assert_eq!(kept.md5, "5d41402abc4b2a76b9719d911017c592");
        assert_eq!(
            std::fs::read(dir.path().join("sha256/2c").join(&kept.sha256)).unwrap(),
            b"hello"
        );
        let mut big = HashingUpload::start(dir.path(), 8, "a file").await.unwrap();
        big.write(b"12345").await.unwrap();
        let e = big.write(b"6789").await.unwrap_err();
        assert!(matches!(e, Error::TooLarge(_)), "{e}");
        drop(big);
        // Neither the refused upload nor the kept one left a temporary file.
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn files_are_stored_by_hash_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = store_by_hash(dir.path(), b"hello").unwrap();
        assert_eq!(
            a.sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert!(a.new);
        let path = dir.path().join("sha256/2c").join(&a.sha256);
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let b = store_by_hash(dir.path(), b"hello").unwrap();
        assert!(!b.new);
        assert_eq!(b.sha256, a.sha256);
        // No temporary file is left behind.
        assert_eq!(
            std::fs::read_dir(dir.path().join("sha256/2c"))
                .unwrap()
                .count(),
            1
        );
    }
}
