//! Command payloads received on `dev/{did}/down` and acks sent on `dev/{did}/ack`.
//!
//! Owns parsing a command into [`Command`] (leniently: unknown fields are ignored) and the
//! ack wire form. Parsing never panics on any input; what cannot be understood becomes a
//! [`BadCommand`] carrying the id when one could be read, so it can still be acked.

use serde::Serialize;
use serde_json::{Map, Value};

/// Longest command id the device accepts (the cloud's limit too).
pub const MAX_ID_LEN: usize = 64;

/// Built-in device actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Reboot,
    FactoryReset,
    Wipe,
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "reboot" => Some(Action::Reboot),
            "factory_reset" => Some(Action::FactoryReset),
            "wipe" => Some(Action::Wipe),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Reboot => "reboot",
            Action::FactoryReset => "factory_reset",
            Action::Wipe => "wipe",
        }
    }
}

/// A command from the cloud.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `{"id", "set": {point: value, ..}}`
    Set {
        id: String,
        values: Map<String, Value>,
    },
    /// `{"id", "action": "reboot" | "factory_reset" | "wipe"}`
    Action { id: String, action: Action },
}

/// The desired state the cloud still wants applied (`{"desired": {...}, "version"}`, no `id`),
/// sent after a CONNECT while the device's reports differ from it. Not acknowledged: reporting the
/// values takes them out of the cloud's delta.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub values: Map<String, Value>,
    pub version: i64,
}

impl Desired {
    /// The desired-state message, if `payload` is one (an object with `desired` and no `id`).
    pub fn parse(payload: &[u8]) -> Option<Desired> {
        let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(payload) else {
            return None;
        };
        if obj.contains_key("id") {
            return None;
        }
        let Some(Value::Object(values)) = obj.remove("desired") else {
            return None;
        };
        Some(Desired {
            values,
            version: obj.get("version").and_then(Value::as_i64).unwrap_or(0),
        })
    }
}

/// A payload on the down topic that is not a valid command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadCommand {
    /// The command id, when one could be read: the command must then be acked with an error.
    pub id: Option<String>,
    pub reason: String,
}

impl Command {
    pub fn id(&self) -> &str {
        match self {
            Command::Set { id, .. } | Command::Action { id, .. } => id,
        }
    }

    /// Parse a down-topic payload.
    pub fn parse(payload: &[u8]) -> Result<Command, BadCommand> {
        let bad = |id: Option<&str>, reason: String| BadCommand {
            id: id.map(str::to_owned),
            reason,
        };
        let v: Value =
            serde_json::from_slice(payload).map_err(|e| bad(None, format!("not JSON: {e}")))?;
        let Value::Object(mut obj) = v else {
            return Err(bad(None, "command is not a JSON object".into()));
        };
        let id = match obj.get("id") {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_ID_LEN => s.clone(),
            Some(Value::String(_)) => {
                return Err(bad(None, format!("id must be 1-{MAX_ID_LEN} bytes")))
            }
            Some(_) => return Err(bad(None, "id must be a string".into())),
            None => return Err(bad(None, "missing id".into())),
        };
        match (obj.remove("set"), obj.remove("action")) {
            (Some(_), Some(_)) => Err(bad(Some(&id), "both set and action".into())),
            (Some(Value::Object(values)), None) => Ok(Command::Set { id, values }),
            (Some(_), None) => Err(bad(Some(&id), "set must be a JSON object".into())),
            (None, Some(Value::String(a))) => match Action::parse(&a) {
                Some(action) => Ok(Command::Action { id, action }),
                None => Err(bad(Some(&id), format!("unknown action `{a}`"))),
            },
            (None, Some(_)) => Err(bad(Some(&id), "action must be a string".into())),
            (None, None) => Err(bad(Some(&id), "neither set nor action".into())),
        }
    }
}

#[cfg(test)]
mod desired_tests {
    use super::*;

    #[test]
    fn the_desired_message_is_told_apart_from_commands() {
        let d = Desired::parse(br#"{"desired": {"power": true}, "version": 7}"#).unwrap();
        assert_eq!(d.version, 7);
        assert_eq!(d.values["power"], Value::Bool(true));
        assert!(Desired::parse(br#"{"id": "c1", "set": {"power": true}}"#).is_none());
        assert!(Desired::parse(br#"{"id": "c1", "desired": {"power": true}}"#).is_none());
        assert!(Desired::parse(br#"{"desired": 3}"#).is_none());
        assert!(Desired::parse(b"not json").is_none());
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AckStatus {
    Ok,
    Error,
}

/// A device's answer to a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ack {
    pub id: String,
    pub status: AckStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Ack {
    pub fn ok(id: impl Into<String>) -> Ack {
        Ack {
            id: id.into(),
            status: AckStatus::Ok,
            message: None,
        }
    }

    pub fn error(id: impl Into<String>, message: impl Into<String>) -> Ack {
        Ack {
            id: id.into(),
            status: AckStatus::Error,
            message: Some(message.into()),
        }
    }

    /// The JSON payload for `dev/{did}/ack`.
    pub fn to_payload(&self) -> Vec<u8> {
        // Serializing a struct of strings cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_set() {
        let c = Command::parse(br#"{"id":"c1","set":{"power":false}}"#).unwrap();
        let mut values = Map::new();
        values.insert("power".into(), json!(false));
        assert_eq!(
            c,
            Command::Set {
                id: "c1".into(),
                values
            }
        );
        assert_eq!(c.id(), "c1");
    }

    #[test]
    fn parses_each_action() {
        for (s, a) in [
            ("reboot", Action::Reboot),
            ("factory_reset", Action::FactoryReset),
            ("wipe", Action::Wipe),
        ] {
            let p = format!(r#"{{"id":"c2","action":"{s}","extra":1}}"#);
            assert_eq!(
                Command::parse(p.as_bytes()).unwrap(),
                Command::Action {
                    id: "c2".into(),
                    action: a
                }
            );
            assert_eq!(a.as_str(), s);
        }
    }

    #[test]
    fn malformed_commands() {
        let with_id = |p: &[u8]| Command::parse(p).unwrap_err().id;
        assert_eq!(
            with_id(br#"{"id":"c3","action":"dance"}"#),
            Some("c3".into())
        );
        assert_eq!(with_id(br#"{"id":"c4","action":7}"#), Some("c4".into()));
        assert_eq!(with_id(br#"{"id":"c5","set":[1]}"#), Some("c5".into()));
        assert_eq!(with_id(br#"{"id":"c6"}"#), Some("c6".into()));
        assert_eq!(
            with_id(br#"{"id":"c7","set":{},"action":"reboot"}"#),
            Some("c7".into())
        );
        assert_eq!(with_id(b"not json"), None);
        assert_eq!(with_id(b""), None);
        assert_eq!(with_id(br#"[1,2]"#), None);
        assert_eq!(with_id(br#"{"set":{}}"#), None);
        assert_eq!(with_id(br#"{"id":5,"action":"reboot"}"#), None);
        assert_eq!(with_id(br#"{"id":"","action":"reboot"}"#), None);
        let long = format!(r#"{{"id":"{}","action":"reboot"}}"#, "x".repeat(65));
        assert_eq!(with_id(long.as_bytes()), None);
        assert_eq!(with_id(&[0xff, 0xfe, 0x00]), None);
    }

    #[test]
    fn ack_wire_form() {
        assert_eq!(Ack::ok("c1").to_payload(), br#"{"id":"c1","status":"ok"}"#);
        assert_eq!(
            Ack::error("c2", "unknown action").to_payload(),
            br#"{"id":"c2","status":"error","message":"unknown action"}"#
        );
    }
}
