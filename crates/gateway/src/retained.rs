//! Retained messages, with their caps: per device a number of topics and of bytes, and a total
//! for the node. A retained publish past a cap is refused as a whole (neither kept nor
//! delivered), so a device cannot grow the server's memory by retaining on ever new subtopics.
//! Owns only the in-memory table; the session decides what a refusal is answered with.

use rampart_core::device::bus::Message;
use rampart_core::limits::connect::MqttLimitsConfig;
use rampart_core::limits::name as limit;
use rampart_proto::topic;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// The limit's name in `rampart_limit_refusals_total{limit}` and reason strings.
pub(crate) const RETAINED: &str = limit::MQTT_RETAINED;

#[derive(Default)]
pub(crate) struct Retained(Mutex<Inner>);

#[derive(Default)]
struct Inner {
    /// Topic -> (owning device, message).
    by_topic: HashMap<String, (Box<str>, Message)>,
    /// Device -> (topics, bytes) it retains.
    per_device: HashMap<Box<str>, (usize, usize)>,
    /// Bytes retained on the node.
    total: usize,
}

/// What a retained message costs against the caps: its topic and its payload.
fn cost(topic: &str, m: &Message) -> usize {
    topic.len() + m.payload.len()
}

impl Retained {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a payload of `len` bytes would fit as `topic`'s retained message for device
    /// `did`; if not, which cap it would break. Nothing is kept.
    pub(crate) fn admit(
        &self,
        did: &str,
        topic: &str,
        len: usize,
        caps: &MqttLimitsConfig,
    ) -> Result<(), String> {
        if len == 0 {
            return Ok(());
        }
        self.lock()
            .room(did, topic, topic.len() + len, caps)
            .map(|_| ())
    }

    /// Keep `m` as `topic`'s retained message for device `did` (replacing the one there), or
    /// say which cap it would break. An empty payload deletes, and is always accepted.
    pub(crate) fn put(
        &self,
        did: &str,
        topic: &str,
        m: Message,
        caps: &MqttLimitsConfig,
    ) -> Result<(), String> {
        let mut inner = self.lock();
        if m.payload.is_empty() {
            inner.remove(topic);
            return Ok(());
        }
        let (after_count, after_bytes, after_total) =
            inner.room(did, topic, cost(topic, &m), caps)?;
        inner.by_topic.insert(topic.to_owned(), (did.into(), m));
        inner
            .per_device
            .insert(did.into(), (after_count, after_bytes));
        inner.total = after_total;
        Ok(())
    }

    /// The retained messages whose topics match any of `filters`.
    pub(crate) fn matching(&self, filters: &[String]) -> Vec<Message> {
        self.lock()
            .by_topic
            .iter()
            .filter(|(t, _)| filters.iter().any(|f| topic::matches(f, t)))
            .map(|(_, (_, m))| m.clone())
            .collect()
    }

    #[cfg(test)]
    fn usage(&self, did: &str) -> (usize, usize, usize) {
        let inner = self.lock();
        let (count, bytes) = inner.per_device.get(did).copied().unwrap_or((0, 0));
        (count, bytes, inner.total)
    }
}

impl Inner {
    /// The device's topics and bytes and the node's bytes once a message costing `new` replaced
    /// what `topic` holds, or which cap that would break.
    fn room(
        &self,
        did: &str,
        topic: &str,
        new: usize,
        caps: &MqttLimitsConfig,
    ) -> Result<(usize, usize, usize), String> {
        let old = self.by_topic.get(topic).map(|(_, o)| cost(topic, o));
        let (count, bytes) = self.per_device.get(did).copied().unwrap_or((0, 0));
        let after_count = count + usize::from(old.is_none());
        let after_bytes = bytes.saturating_sub(old.unwrap_or(0)) + new;
        let after_total = self.total.saturating_sub(old.unwrap_or(0)) + new;
        if after_count > caps.retained_per_device {
            return Err(format!(
                "limit {RETAINED} exceeded: at most {} retained topics per device",
                caps.retained_per_device
            ));
        }
        if after_bytes > caps.retained_bytes_per_device {
            return Err(format!(
                "limit {RETAINED} exceeded: at most {} bytes of retained messages per device",
                caps.retained_bytes_per_device
            ));
        }
        if after_total > caps.retained_bytes_total {
            return Err(format!(
                "limit {RETAINED} exceeded: the server holds its most retained bytes ({})",
                caps.retained_bytes_total
            ));
        }
        Ok((after_count, after_bytes, after_total))
    }

    fn remove(&mut self, topic: &str) {
        let Some((did, old)) = self.by_topic.remove(topic) else {
            return;
        };
        let c = cost(topic, &old);
        self.total -= c;
        if let Some(e) = self.per_device.get_mut(&did) {
            e.0 -= 1;
            e.1 -= c;
            if e.0 == 0 {
                self.per_device.remove(&did);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(len: usize) -> Message {
        Message {
            topic: String::new(),
            payload: vec![b'x'; len].into(),
            expires_at: None,
        }
    }

    fn caps(per_device: usize, bytes: usize, total: usize) -> MqttLimitsConfig {
        MqttLimitsConfig {
            retained_per_device: per_device,
            retained_bytes_per_device: bytes,
            retained_bytes_total: total,
            ..Default::default()
        }
    }

    #[test]
    fn each_cap_refuses_and_replacing_or_deleting_frees_room() {
        let r = Retained::default();
        let c = caps(2, 100, 150);
        // "dev/a/1" is 7 bytes of topic
        assert_eq!(r.put("a", "dev/a/1", msg(40), &c), Ok(()));
        assert_eq!(r.put("a", "dev/a/2", msg(40), &c), Ok(()));
        assert_eq!(r.usage("a"), (2, 94, 94));
        // a third topic: the count cap
        let e = r.put("a", "dev/a/3", msg(1), &c).unwrap_err();
        assert!(e.contains("at most 2 retained topics per device"), "{e}");
        // replacing one in place counts its new size only: 7 + 50 + 47 = 104 > 100
        let e = r.put("a", "dev/a/1", msg(50), &c).unwrap_err();
        assert!(e.contains("at most 100 bytes"), "{e}");
        assert_eq!(r.put("a", "dev/a/1", msg(45), &c), Ok(()));
        assert_eq!(r.usage("a"), (2, 99, 99));
        // another device fills the node
        let e = r.put("b", "dev/b/1", msg(60), &c).unwrap_err();
        assert!(e.contains("most retained bytes (150)"), "{e}");
        assert_eq!(r.put("b", "dev/b/1", msg(44), &c), Ok(()));
        // an empty payload always deletes, and frees its room
        assert_eq!(r.put("a", "dev/a/1", msg(0), &c), Ok(()));
        assert_eq!(r.put("a", "dev/a/1", msg(0), &c), Ok(()));
        assert_eq!(r.usage("a"), (1, 47, 98));
        assert_eq!(r.put("a", "dev/a/3", msg(10), &c), Ok(()));
        assert_eq!(r.matching(&["dev/a/#".into()]).len(), 2);
        // a refused put changed nothing
        assert!(r.put("b", "dev/b/2", msg(100), &c).is_err());
        assert_eq!(r.matching(&["dev/b/#".into()]).len(), 1);
    }
}
