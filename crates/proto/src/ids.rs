//! Identifiers parsed at the edge: once a `Did` or `ProductKey` exists it is known to be well formed
//! (and therefore safe inside topics, paths and log lines).

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: must be 1-{max} characters of [A-Za-z0-9_]")]
pub struct IdError {
    kind: &'static str,
    max: usize,
}

fn check(s: &str, kind: &'static str, max: usize) -> Result<(), IdError> {
    if s.is_empty() || s.len() > max || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(IdError { kind, max });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident, $kind:literal, $max:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Box<str>);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, IdError> {
                check(s, $kind, $max)?;
                Ok(Self(s.into()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                check(&s, $kind, $max)?;
                Ok(Self(s.into_boxed_str()))
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0.into_string()
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// Cloud device id, issued at registration.
    Did, "device id", 64);
id_type!(
    /// Public product identifier.
    ProductKey, "product key", 64);

/// A hardware id (MAC, IMEI, factory serial): 1-64 printable ASCII characters other than space and
/// `&`, `=`, `|` (which the signature strings use as separators).
pub fn valid_hardware_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'&' | b'=' | b'|'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_ids() {
        assert!(Did::parse("abc123").is_ok());
        assert!(Did::parse("").is_err());
        assert!(Did::parse("a/b").is_err());
        assert!(Did::parse("a+").is_err());
        assert!(Did::parse(&"a".repeat(65)).is_err());
        assert!(serde_json::from_str::<ProductKey>("\"x#\"").is_err());
        assert!(valid_hardware_id("AA:BB:CC:DD:EE:FF"));
        assert!(valid_hardware_id("p1-b1-000001"));
        assert!(!valid_hardware_id("a&b"));
        assert!(!valid_hardware_id("a b"));
    }
}
