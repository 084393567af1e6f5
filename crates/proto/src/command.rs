//! Command and acknowledgement payloads on `dev/{did}/down` and `dev/{did}/ack`.

use serde::{Deserialize, Serialize};

/// Built-in device actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Reboot,
    FactoryReset,
    Wipe,
}

/// A command as sent to the device: exactly one of `set` or `action`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<crate::model::Values>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckStatus {
    Ok,
    Error,
}

/// A device's acknowledgement of a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub id: String,
    pub status: AckStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Ack {
    /// Parse an ack payload; ids are at most 64 bytes.
    pub fn parse(payload: &[u8]) -> Option<Ack> {
        let a: Ack = serde_json::from_slice(payload).ok()?;
        (a.id.len() <= 64 && !a.id.is_empty()).then_some(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms() {
        let c = Command {
            id: "c1".into(),
            set: None,
            action: Some(Action::FactoryReset),
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"id":"c1","action":"factory_reset"}"#
        );
        let a = Ack::parse(br#"{"id":"c1","status":"error","message":"busy"}"#).unwrap();
        assert_eq!(a.status, AckStatus::Error);
        assert!(Ack::parse(br#"{"id":"","status":"ok"}"#).is_none());
        assert!(Ack::parse(br#"{"id":"x","status":"maybe"}"#).is_none());
    }
}
