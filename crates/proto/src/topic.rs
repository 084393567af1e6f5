//! The device topic grammar: a device lives under `dev/{did}/` and nowhere else.
//!
//! | topic | direction | payload |
//! |---|---|---|
//! | `dev/{did}/up` | device -> cloud | report: JSON object of data points, or the binary encoding |
//! | `dev/{did}/down` | cloud -> device | command: `{"id", "set": {..}}` or `{"id", "action"}` |
//! | `dev/{did}/ack` | device -> cloud | `{"id", "status": "ok"/"error", "message"?}` |
//! | `dev/{did}/raw` | device -> cloud | passthrough, opaque bytes (at most [`RAW_MAX`]) |
//! | `dev/{did}/raw/down` | cloud -> device | passthrough, opaque bytes (at most [`RAW_MAX`]), QoS 1 |
//! | `dev/{did}/ota` | cloud -> device | an OTA manifest (`ota`) |
//! | `dev/{did}/ota/check`, `ota/status`, `ota/chunk` | device -> cloud | OTA check, progress, chunk request; chunk answers come back on `ota/chunk` |
//! | `dev/{did}/...` | both | any other subtopic: allowed, stored as nothing, routed to subscribers of that device |

/// Most bytes in one passthrough publish on `dev/{did}/raw` (the event stream carries it as
/// base64, about 43 KiB, under the stream's 64 KiB line).
pub const RAW_MAX: usize = 32 * 1024;

/// What a device-published topic means to the cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceTopic {
    Report,
    Ack,
    Raw,
    /// `dev/{did}/down`, `dev/{did}/raw/down` or `dev/{did}/ota`: the cloud's own topics; a
    /// device must not publish on them.
    Down,
    /// `dev/{did}/ota/check`, `ota/status` or `ota/chunk`: for the cloud only, never routed to
    /// the device's own subscriptions.
    Ota,
    /// Another subtopic of the device's namespace.
    Other,
}

pub fn prefix(did: &str) -> String {
    format!("dev/{did}/")
}

pub fn down(did: &str) -> String {
    format!("dev/{did}/down")
}

/// The passthrough topic from the cloud to the device.
pub fn raw_down(did: &str) -> String {
    format!("dev/{did}/raw/down")
}

pub fn up(did: &str) -> String {
    format!("dev/{did}/up")
}

pub fn ack(did: &str) -> String {
    format!("dev/{did}/ack")
}

/// Classify `topic` as published by device `did`; `None` if it is outside the device's namespace or
/// not a valid topic name.
pub fn classify(did: &str, topic: &str) -> Option<DeviceTopic> {
    let rest = topic
        .strip_prefix("dev/")?
        .strip_prefix(did)?
        .strip_prefix('/')?;
    if rest.is_empty() || !valid_topic_name(topic) {
        return None;
    }
    Some(match rest {
        "up" => DeviceTopic::Report,
        "ack" => DeviceTopic::Ack,
        "raw" => DeviceTopic::Raw,
        "down" | "raw/down" | "ota" => DeviceTopic::Down,
        "ota/check" | "ota/status" | "ota/chunk" => DeviceTopic::Ota,
        _ => DeviceTopic::Other,
    })
}

/// Whether subscription filter `filter` stays inside the namespace of device `did`.
/// Wildcards are allowed only after `dev/{did}/`.
pub fn filter_allowed(did: &str, filter: &str) -> bool {
    match filter
        .strip_prefix("dev/")
        .and_then(|r| r.strip_prefix(did))
    {
        Some(rest) => rest.starts_with('/') && rest.len() > 1 && valid_topic_filter(filter),
        None => false,
    }
}

/// MQTT topic name rules: non-empty, no wildcards, no NUL, at most 65535 bytes.
pub fn valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= 65535 && !topic.contains(['+', '#', '\0'])
}

/// MQTT topic filter rules: `#` only as the whole last level, `+` only as a whole level.
pub fn valid_topic_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > 65535 || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    levels.iter().enumerate().all(|(i, l)| match *l {
        "#" => i == last,
        "+" => true,
        l => !l.contains(['+', '#']),
    })
}

/// Whether topic name `topic` matches filter `filter` (MQTT rules, `$` topics not matched by
/// leading wildcards).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_topics() {
        assert_eq!(classify("abc", "dev/abc/up"), Some(DeviceTopic::Report));
        assert_eq!(classify("abc", "dev/abc/ack"), Some(DeviceTopic::Ack));
        assert_eq!(classify("abc", "dev/abc/down"), Some(DeviceTopic::Down));
        assert_eq!(classify("abc", "dev/abc/raw/down"), Some(DeviceTopic::Down));
        assert_eq!(classify("abc", "dev/abc/raw"), Some(DeviceTopic::Raw));
        assert_eq!(classify("abc", "dev/abc/raw/x"), Some(DeviceTopic::Other));
        assert_eq!(classify("abc", "dev/abc/x/y"), Some(DeviceTopic::Other));
        assert_eq!(classify("abc", "dev/abcd/up"), None);
        assert_eq!(classify("abc", "dev/abc/"), None);
        assert_eq!(classify("abc", "dev/abc/+"), None);
        assert_eq!(classify("abc", "dev/other/up"), None);
        assert_eq!(classify("abc", "dev/abc/ota"), Some(DeviceTopic::Down));
        assert_eq!(classify("abc", "dev/abc/ota/check"), Some(DeviceTopic::Ota));
        assert_eq!(
            classify("abc", "dev/abc/ota/status"),
            Some(DeviceTopic::Ota)
        );
        assert_eq!(classify("abc", "dev/abc/ota/chunk"), Some(DeviceTopic::Ota));
        assert_eq!(
            classify("abc", "dev/abc/ota/other"),
            Some(DeviceTopic::Other)
        );
    }

    #[test]
    fn filters() {
        assert!(filter_allowed("abc", "dev/abc/down"));
        assert!(filter_allowed("abc", &raw_down("abc")));
        assert!(matches("dev/abc/raw/#", &raw_down("abc")));
        assert!(filter_allowed("abc", "dev/abc/#"));
        assert!(!filter_allowed("abc", "dev/+/down"));
        assert!(!filter_allowed("abc", "#"));
        assert!(!filter_allowed("abc", "dev/abc"));
        assert!(!filter_allowed("abc", "dev/abc/a#"));
        assert!(matches("dev/abc/#", "dev/abc/down"));
        assert!(matches("dev/+/down", "dev/abc/down"));
        assert!(!matches("dev/+/down", "dev/abc/up"));
        assert!(!matches("#", "$SYS/x"));
    }
}
