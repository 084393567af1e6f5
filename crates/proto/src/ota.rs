//! The OTA contract between the cloud and a device: the signed manifest and its canonical
//! signing form, the states a device reports, and the messages of the MQTT topics
//! `dev/{did}/ota`, `dev/{did}/ota/check`, `dev/{did}/ota/status` and `dev/{did}/ota/chunk`.
//!
//! Both sides link this module, so the bytes a signature covers are defined exactly once
//! ([`canonical_json`]). No I/O here: fetching, storing and applying images belong to the
//! server and to the device SDK.

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which processor a firmware image is for: the connectivity module or the product's MCU. The
/// two are released and sequenced apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Module,
    Mcu,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Module => "module",
            Target::Mcu => "mcu",
        }
    }

    pub fn parse(s: &str) -> Option<Target> {
        match s {
            "module" => Some(Target::Module),
            "mcu" => Some(Target::Mcu),
            _ => None,
        }
    }
}

/// Where a device stands in an update. The order is the order of a successful update;
/// `Failed` and `TimedOut` end it without success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtaState {
    Notified,
    Downloading,
    Downloaded,
    Verified,
    Applying,
    Succeeded,
    Failed,
    TimedOut,
}

impl OtaState {
    /// Every state, in the order of the `counts` of a campaign.
    pub const ALL: [OtaState; 8] = [
        OtaState::Notified,
        OtaState::Downloading,
        OtaState::Downloaded,
        OtaState::Verified,
        OtaState::Applying,
        OtaState::Succeeded,
        OtaState::Failed,
        OtaState::TimedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OtaState::Notified => "notified",
            OtaState::Downloading => "downloading",
            OtaState::Downloaded => "downloaded",
            OtaState::Verified => "verified",
            OtaState::Applying => "applying",
            OtaState::Succeeded => "succeeded",
            OtaState::Failed => "failed",
            OtaState::TimedOut => "timed_out",
        }
    }

    pub fn parse(s: &str) -> Option<OtaState> {
        OtaState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the device's part in the campaign is over.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OtaState::Succeeded | OtaState::Failed | OtaState::TimedOut
        )
    }
}

/// A semantic version `MAJOR.MINOR.PATCH[-PRE][+BUILD]`, compared by precedence (build metadata
/// ignored; a pre-release sorts before its release, identifiers compared as the specification
/// says: numeric ones numerically, lower than alphanumeric ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: Vec<String>,
    text: String,
}

impl Version {
    /// Parse a version; `None` when it is not semantic versioning 2.0.
    pub fn parse(s: &str) -> Option<Version> {
        if s.is_empty() || s.len() > 64 {
            return None;
        }
        let (core_pre, build) = match s.split_once('+') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let (core, pre) = match core_pre.split_once('-') {
            Some((a, b)) => (a, Some(b)),
            None => (core_pre, None),
        };
        let num = |p: &str| -> Option<u64> {
            if p.is_empty() || (p.len() > 1 && p.starts_with('0')) {
                return None;
            }
            if !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            p.parse().ok()
        };
        let mut parts = core.split('.');
        let major = num(parts.next()?)?;
        let minor = num(parts.next()?)?;
        let patch = num(parts.next()?)?;
        if parts.next().is_some() {
            return None;
        }
        let ident_ok =
            |i: &str| !i.is_empty() && i.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let pre: Vec<String> = match pre {
            Some(p) => {
                let ids: Vec<String> = p.split('.').map(str::to_owned).collect();
                for i in &ids {
                    if !ident_ok(i) {
                        return None;
                    }
                    if i.bytes().all(|b| b.is_ascii_digit()) && i.len() > 1 && i.starts_with('0') {
                        return None;
                    }
                }
                ids
            }
            None => Vec::new(),
        };
        if let Some(b) = build {
            if !b.split('.').all(ident_ok) {
                return None;
            }
        }
        Some(Version {
            major,
            minor,
            patch,
            pre,
            text: s.to_owned(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        use std::cmp::Ordering::*;
        let c = (self.major, self.minor, self.patch).cmp(&(other.major, other.minor, other.patch));
        if c != Equal {
            return c;
        }
        match (self.pre.is_empty(), other.pre.is_empty()) {
            (true, true) => return Equal,
            (true, false) => return Greater,
            (false, true) => return Less,
            _ => {}
        }
        for (a, b) in self.pre.iter().zip(&other.pre) {
            let an = a
                .parse::<u64>()
                .ok()
                .filter(|_| a.bytes().all(|x| x.is_ascii_digit()));
            let bn = b
                .parse::<u64>()
                .ok()
                .filter(|_| b.bytes().all(|x| x.is_ascii_digit()));
            let c = match (an, bn) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => Less,
                (None, Some(_)) => Greater,
                (None, None) => a.cmp(b),
            };
            if c != Equal {
                return c;
            }
        }
        self.pre.len().cmp(&other.pre.len())
    }
}

/// What a device is told to install. `signature` is Ed25519 (standard base64) by the product's
/// OTA key over [`Manifest::signing_bytes`]: the manifest as canonical JSON without
/// `signature`. `rollback` appears (and is signed) only when true: the one case in which a
/// device accepts a `sequence` lower than the one it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub firmware_id: String,
    pub product_key: String,
    pub target: Target,
    pub version: String,
    pub sequence: i64,
    pub size: u64,
    pub md5: String,
    pub sha256: String,
    pub url: String,
    /// Unix milliseconds after which the manifest (and its URL) is no longer good.
    pub expires_at: i64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rollback: bool,
    /// The campaign this manifest belongs to, for the device's status reports. Signed like
    /// every other field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<String>,
    #[serde(default)]
    pub signature: String,
}

/// Why a device refuses a manifest or an image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OtaError {
    #[error("the manifest is not valid JSON of the expected form: {0}")]
    Malformed(String),
    #[error("the manifest's signature does not verify with the product's OTA key")]
    BadSignature,
    #[error("the manifest is for another product or target")]
    WrongProduct,
    #[error("the manifest expired")]
    Expired,
    #[error("sequence {offered} is lower than the running {running} and the manifest is not a signed rollback")]
    Rollback { offered: i64, running: i64 },
    #[error("the image has {got} bytes, the manifest says {want}")]
    Size { got: u64, want: u64 },
    #[error("the image's {0} does not match the manifest")]
    Digest(&'static str),
}

impl Manifest {
    /// The bytes the signature covers: every field but `signature`, keys sorted, no spaces.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut v = match serde_json::to_value(self) {
            Ok(v) => v,
            Err(_) => unreachable!("a manifest always serialises"),
        };
        if let Value::Object(m) = &mut v {
            m.remove("signature");
        }
        canonical_json(&v).into_bytes()
    }

    /// Check the signature with the product's 32-byte Ed25519 public key (strict verification:
    /// no malleable or small-order signatures).
    pub fn verify(&self, public_key: &[u8; 32]) -> Result<(), OtaError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(public_key)
            .map_err(|_| OtaError::BadSignature)?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&self.signature)
            .map_err(|_| OtaError::BadSignature)?;
        let sig = ed25519_dalek::Signature::from_slice(&raw).map_err(|_| OtaError::BadSignature)?;
        key.verify_strict(&self.signing_bytes(), &sig)
            .map_err(|_| OtaError::BadSignature)
    }

    /// Whether a device running `running_sequence` may install this manifest: a lower sequence
    /// only as a signed rollback. Call after [`Manifest::verify`].
    pub fn check_sequence(&self, running_sequence: i64) -> Result<(), OtaError> {
        if self.sequence < running_sequence && !self.rollback {
            return Err(OtaError::Rollback {
                offered: self.sequence,
                running: running_sequence,
            });
        }
        Ok(())
    }
}

/// JSON with object keys sorted (by their UTF-8 bytes) at every level and no whitespace:
/// the form OTA signatures cover.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The boot-time check a device publishes on `dev/{did}/ota/check` (and the query of
/// `GET /v1/device/ota`) right after it connects: what it runs. It is also the connect-time
/// report that completes an update: a device in `applying` that comes back with the campaign's
/// `version` has succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub target: Target,
    /// The version the device runs now.
    pub version: String,
    /// The sequence of the running image, when the device knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_version: Option<String>,
}

/// A progress report on `dev/{did}/ota/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    pub campaign_id: String,
    pub state: OtaState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// Most bytes one chunk request over MQTT may ask for.
pub const CHUNK_MAX: u64 = 16 * 1024;

/// A device's request for part of the image on `dev/{did}/ota/chunk`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkRequest {
    pub firmware_id: String,
    pub offset: u64,
    pub length: u64,
}

/// The cloud's answer on `dev/{did}/ota/chunk`: the bytes (base64) and their SHA-256 (hex).
/// `data` is empty and `error` set when the request cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkAnswer {
    pub firmware_id: String,
    pub offset: u64,
    pub length: u64,
    pub data: String,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ChunkAnswer {
    /// The bytes, once their SHA-256 matches.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        use sha2::Digest;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&self.data)
            .ok()?;
        (hex::encode(sha2::Sha256::digest(&raw)) == self.sha256 && raw.len() as u64 == self.length)
            .then_some(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Signer;

    #[test]
    fn canonical_form_sorts_keys_and_drops_spaces() {
        let v: Value =
            serde_json::from_str(r#"{"b": 1, "a": {"z": [1, "x y"], "c": null}, "A": true}"#)
                .unwrap();
        assert_eq!(
            canonical_json(&v),
            r#"{"A":true,"a":{"c":null,"z":[1,"x y"]},"b":1}"#
        );
    }

    fn manifest() -> Manifest {
        Manifest {
            firmware_id: "fw_1".into(),
            product_key: "pk_1".into(),
            target: Target::Module,
            version: "1.2.0".into(),
            sequence: 3,
            size: 5,
            md5: "5d41402abc4b2a76b9719d911017c592".into(),
            sha256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".into(),
            url: "https://h/x".into(),
            expires_at: 1_700_000_000_000,
            rollback: false,
            campaign_id: None,
            signature: String::new(),
        }
    }

    #[test]
    fn signatures_cover_every_field_but_themselves() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let pk = key.verifying_key().to_bytes();
        let mut m = manifest();
        m.signature = base64::engine::general_purpose::STANDARD
            .encode(key.sign(&m.signing_bytes()).to_bytes());
        m.verify(&pk).unwrap();
        let mut forged = m.clone();
        forged.version = "9.9.9".into();
        assert_eq!(forged.verify(&pk), Err(OtaError::BadSignature));
        let mut forged = m.clone();
        forged.rollback = true;
        assert_eq!(forged.verify(&pk), Err(OtaError::BadSignature));
        assert!(!String::from_utf8(m.signing_bytes())
            .unwrap()
            .contains("rollback"));
    }

    /// The body of the fenced block of docs/ota.md whose info string ends with `tag`.
    fn doc_block(tag: &str) -> String {
        let doc = include_str!("../../../docs/ota.md");
        let start = doc
            .lines()
            .position(|l| l.starts_with("```") && l.ends_with(tag))
            .unwrap_or_else(|| panic!("no block {tag} in docs/ota.md"));
        doc.lines()
            .skip(start + 1)
            .take_while(|l| !l.starts_with("```"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_documented_test_vector_holds() {
        let key = doc_block("ota-vector-key");
        let lines: Vec<&str> = key.lines().collect();
        let seed: [u8; 32] = hex::decode(lines[0]).unwrap().try_into().unwrap();
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let public = signing.verifying_key().to_bytes();
        assert_eq!(hex::encode(public), lines[1]);
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(public),
            lines[2]
        );
        let m: Manifest = serde_json::from_str(&doc_block("ota-vector-manifest")).unwrap();
        let canonical = doc_block("ota-vector-canonical");
        assert_eq!(String::from_utf8(m.signing_bytes()).unwrap(), canonical);
        m.verify(&public).unwrap();
        // Ed25519 is deterministic: signing again gives the documented signature.
        let again = base64::engine::general_purpose::STANDARD
            .encode(signing.sign(canonical.as_bytes()).to_bytes());
        assert_eq!(again, m.signature);
        assert_eq!(m.size, 5);
        use sha2::Digest;
        assert_eq!(hex::encode(sha2::Sha256::digest(b"hello")), m.sha256);
    }

    #[test]
    fn lower_sequences_need_a_rollback() {
        let m = manifest();
        assert!(m.check_sequence(3).is_ok());
        assert!(m.check_sequence(2).is_ok());
        assert_eq!(
            m.check_sequence(4),
            Err(OtaError::Rollback {
                offered: 3,
                running: 4
            })
        );
        let mut r = m;
        r.rollback = true;
        assert!(r.check_sequence(4).is_ok());
    }

    #[test]
    fn versions_order_by_precedence() {
        let v = |s| Version::parse(s).unwrap_or_else(|| panic!("{s}"));
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.10.0",
            "2.0.0",
        ];
        for w in chain.windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
        }
        assert_eq!(v("1.0.0+b1").cmp(&v("1.0.0+b2")), std::cmp::Ordering::Equal);
        for bad in [
            "1.0", "01.0.0", "1.0.0-", "1.0.0-01", "a.b.c", "1.0.0.0", "", "1.0.0+",
        ] {
            assert!(Version::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn chunk_answers_check_their_digest() {
        use sha2::Digest;
        let data = b"hello";
        let mut a = ChunkAnswer {
            firmware_id: "f".into(),
            offset: 0,
            length: 5,
            data: base64::engine::general_purpose::STANDARD.encode(data),
            sha256: hex::encode(sha2::Sha256::digest(data)),
            error: None,
        };
        assert_eq!(a.bytes().unwrap(), data);
        a.sha256 = hex::encode(sha2::Sha256::digest(b"other"));
        assert!(a.bytes().is_none());
    }
}
