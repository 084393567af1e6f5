//! The operator event stream: durable delivery of device events to an enterprise's
//! business systems, with acknowledgements, per subscription group.
//!
//! A **group** is a (product, subkey) pair. Once a consumer has logged in with a group, every
//! event of that product of a kind the group asked for is queued for it in the store
//! (`event_queue`) until a consumer of the group acknowledges it or it outlives the retention.
//! Consumers of one group share its events round-robin; each group gets every event.
//!
//! One task (the hub) does all of it, so nothing here needs a lock: it takes `DeviceEvent`s from
//! its own bounded channel (fed after the report writer's commit and by acks, registrations and
//! raw publishes; a sender waits while it is full, so nothing is dropped), queues them in one insert per
//! batch, loads each active group's queue in id order, hands events to consumers (at most
//! `prefetch` unacknowledged each) and deletes acknowledged ones in one statement per batch.
//! Which consumer holds which event is kept in memory only: a consumer that goes away gives its
//! events back to the group, and after a restart every unacknowledged event is delivered again
//! (at least once, never lost while retained).
//!
//! Order: events of one device reach one consumer in queue order. While a consumer holds an
//! unacknowledged event of a device, that device's next events go to the same consumer (or
//! wait for it), so per-device order holds within a consumer.
//!
//! Never here: sockets, JSON message framing, login challenges (the API's `events` module).

use crate::access::access_keys::{KeySession, Scope};
use crate::audit::action;
use crate::audit::AuditEvent;
use crate::device::bus::{Bus, DeviceEvent, EventKind, EventSink};
use crate::{Core, Error, Result};
use rampart_store::{EventGroupRow, QueuedEventRow, Store};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Most products in one login.
pub const MAX_PRODUCTS: usize = 100;
/// `prefetch` bounds and default.
pub const PREFETCH_MAX: u16 = 32767;
pub const PREFETCH_DEFAULT: u16 = 50;
/// Events waiting for the hub before their senders wait (the report writer among them).
const HUB_QUEUE: usize = 4096;
/// How many events of a group are held in memory ahead of delivery.
const WINDOW: usize = 1024;
/// How often retention runs.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Retention of queued events.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// Events older than this are dropped, acknowledged or not.
    pub retention_ms: i64,
    /// Most events kept per group; the oldest go first.
    pub max_per_group: i64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            retention_ms: 24 * 3_600_000,
            max_per_group: 100_000,
        }
    }
}

/// What a consumer asks for at login (already parsed; see [`parse_subkey`] and [`parse_kinds`]).
#[derive(Debug, Clone)]
pub struct Subscription {
    pub products: Vec<String>,
    pub subkey: String,
    pub kinds: Vec<String>,
    pub prefetch: u16,
}

/// A subkey: 1-32 of `[A-Za-z0-9_]`.
pub fn parse_subkey(s: &str) -> Result<String> {
    if (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(s.to_owned())
    } else {
        Err(Error::Invalid(
            "`subkey` must be 1-32 characters of A-Z a-z 0-9 _".into(),
        ))
    }
}

/// Event kinds: each one of [`EventKind::ALL`] by name; none means all. Duplicates are dropped.
pub fn parse_kinds<S: AsRef<str>>(given: &[S]) -> Result<Vec<String>> {
    if given.is_empty() {
        return Ok(EventKind::ALL.map(|k| k.as_str().to_owned()).to_vec());
    }
    let mut out: Vec<String> = Vec::with_capacity(given.len());
    for k in given {
        let k = k.as_ref();
        if EventKind::parse(k).is_none() {
            return Err(Error::Invalid(format!(
                "unknown event kind `{}` (expected one of {})",
                k.chars().take(40).collect::<String>(),
                EventKind::ALL.map(EventKind::as_str).join(", ")
            )));
        }
        if !out.iter().any(|o| o == k) {
            out.push(k.to_owned());
        }
    }
    Ok(out)
}

/// `prefetch`: 1-32767, default 50.
pub fn parse_prefetch(p: Option<i64>) -> Result<u16> {
    match p {
        None => Ok(PREFETCH_DEFAULT),
        Some(n) if (1..=i64::from(PREFETCH_MAX)).contains(&n) => Ok(n as u16),
        Some(_) => Err(Error::Invalid("`prefetch` must be 1-32767".into())),
    }
}

/// An event handed to a consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Acknowledge with this id.
    pub delivery_id: i64,
    pub product_key: String,
    pub did: String,
    pub kind: String,
    pub ts: i64,
    /// The event's data as JSON text (an object).
    pub data: String,
}

impl From<QueuedEventRow> for Delivery {
    fn from(r: QueuedEventRow) -> Delivery {
        Delivery {
            delivery_id: r.id,
            product_key: r.product_key,
            did: r.did,
            kind: r.kind,
            ts: r.ts,
            data: r.body,
        }
    }
}

/// Why an acknowledgement was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AckError {
    #[error("no unacknowledged event with this delivery_id on this connection")]
    UnknownDelivery,
}

pub(crate) type GroupKey = (String, String);

enum Cmd {
    Join {
        id: u64,
        groups: Vec<GroupKey>,
        kinds: HashSet<String>,
        prefetch: usize,
        tx: mpsc::UnboundedSender<Delivery>,
        done: oneshot::Sender<Result<()>>,
    },
    Leave(u64),
    Ack(i64),
    /// The store holds new events for these groups (queued by someone else than the hub).
    Poke(Vec<GroupKey>),
    /// Forget these groups: record nothing more for them (their rows are the caller's to delete).
    Forget(Vec<GroupKey>, oneshot::Sender<()>),
}

/// The handle `Core` keeps to the hub task.
pub(crate) struct EventHub {
    tx: mpsc::UnboundedSender<Cmd>,
    next_id: std::sync::atomic::AtomicU64,
}

/// One logged-in consumer: events arrive through [`Consumer::next`]; dropping it gives its
/// unacknowledged events back to the group.
pub struct Consumer {
    id: u64,
    rx: mpsc::UnboundedReceiver<Delivery>,
    hub: mpsc::UnboundedSender<Cmd>,
    held: HashSet<i64>,
    /// Products of the login, with the data points hidden from the key per product.
    hidden: HashMap<String, Vec<String>>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("id", &self.id)
            .field("held", &self.held.len())
            .finish()
    }
}

impl Consumer {
    /// The next event for this consumer; `None` once the hub has stopped. Data points the key
    /// may not see are left out (an alarm or change that was only about such points is
    /// acknowledged here and not handed out).
    pub async fn next(&mut self) -> Option<Delivery> {
        loop {
            let d = self.rx.recv().await?;
            if let Some(d) = self.take(d) {
                return Some(d);
            }
        }
    }

    /// The next event if one is waiting already (no wait).
    pub fn try_next(&mut self) -> Option<Delivery> {
        loop {
            let d = self.rx.try_recv().ok()?;
            if let Some(d) = self.take(d) {
                return Some(d);
            }
        }
    }

    /// Record `d` as held and leave hidden data points out of it (`None`: nothing of it is
    /// left to see, and it was acknowledged).
    fn take(&mut self, mut d: Delivery) -> Option<Delivery> {
        self.held.insert(d.delivery_id);
        let Some(hidden) = self.hidden.get(&d.product_key).filter(|h| !h.is_empty()) else {
            return Some(d);
        };
        let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&d.data) else {
            return Some(d);
        };
        let mut emptied = false;
        for field in ["values", "previous"] {
            if let Some(vals) = v.get_mut(field).and_then(|v| v.as_object_mut()) {
                let before = vals.len();
                for h in hidden {
                    vals.remove(h);
                }
                emptied |= before > 0 && vals.is_empty();
            }
        }
        if emptied && d.kind != EventKind::StatusKv.as_str() {
            let _ = self.ack(d.delivery_id);
            return None;
        }
        d.data = v.to_string();
        Some(d)
    }

    /// Acknowledge an event this consumer holds.
    pub fn ack(&mut self, delivery_id: i64) -> Result<(), AckError> {
        if !self.held.remove(&delivery_id) {
            return Err(AckError::UnknownDelivery);
        }
        let _ = self.hub.send(Cmd::Ack(delivery_id));
        Ok(())
    }

    /// How many events this consumer holds unacknowledged.
    pub fn unacked(&self) -> usize {
        self.held.len()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.hub.send(Cmd::Leave(self.id));
    }
}

impl EventHub {
    pub(crate) fn start(
        store: Store,
        bus: &Bus,
        cfg: EventsConfig,
        clock: crate::clock::Clock,
    ) -> EventHub {
        let (tx, rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::channel(HUB_QUEUE);
        let sink = bus.event_sink();
        sink.attach_hub(events_tx);
        tokio::spawn(async move {
            let mut hub = Hub {
                store,
                sink,
                cfg,
                clock,
                groups: HashMap::new(),
                consumers: HashMap::new(),
                inflight: HashMap::new(),
                product_of: HashMap::new(),
                acks: Vec::new(),
                new_events: Vec::new(),
                dirty: HashSet::new(),
            };
            hub.run(rx, events).await;
        });
        EventHub {
            tx,
            next_id: std::sync::atomic::AtomicU64::new(1),
        }
    }
}

impl Core {
    /// Start recording events if the store holds subscription groups (the server calls this at
    /// start; otherwise the hub starts at the first login). Until then nothing listens for
    /// device events on an operator's behalf, so reports make no event copies for nobody.
    pub async fn start_event_stream(&self) -> Result<()> {
        if !self.store().list_event_groups().await?.is_empty() {
            let _ = self.event_hub();
        }
        Ok(())
    }

    /// Log a consumer in: the key needs `read`, and every product must be one of the key's and
    /// still its enterprise's (else `NotFound("product")`, like an unknown one). Audited
    /// (`event_stream.login`).
    pub async fn open_event_stream(&self, k: &KeySession, sub: Subscription) -> Result<Consumer> {
        if !k.has(Scope::Read) {
            return Err(Error::Forbidden(
                "the access key lacks the `read` scope".into(),
            ));
        }
        if sub.products.is_empty() || sub.products.len() > MAX_PRODUCTS {
            return Err(Error::Invalid("name 1-100 products".into()));
        }
        let mut hidden = HashMap::new();
        for pk in &sub.products {
            let owned =
                k.products.contains(pk) && self.enterprise_owns(&k.enterprise_id, pk).await?;
            if !owned {
                let ev = AuditEvent::new(&k.actor(), action::EVENT_STREAM_LOGIN, "denied: product")
                    .tenant(k.enterprise_id.clone())
                    .source_ip(k.source_ip.clone())
                    .target(format!(
                        "product:{}",
                        pk.chars().take(64).collect::<String>()
                    ));
                self.audit(ev).await;
                return Err(Error::NotFound("product"));
            }
            hidden.insert(pk.clone(), self.key_hidden_points(k, pk).await?);
        }
        let groups = sub
            .products
            .iter()
            .map(|p| (p.clone(), sub.subkey.clone()))
            .collect();
        let consumer = self
            .join_consumer(groups, &sub.kinds, sub.prefetch, hidden)
            .await?;
        let ev = AuditEvent::new(&k.actor(), action::EVENT_STREAM_LOGIN, "ok")
            .tenant(k.enterprise_id.clone())
            .source_ip(k.source_ip.clone())
            .target(format!("subkey:{}", sub.subkey))
            .detail(sub.products.join(" "));
        self.audit(ev).await;
        Ok(consumer)
    }

    /// Join a consumer to the groups `groups` (creating or widening them to `kinds`); `hidden`
    /// names, per product, the data points left out of its reports. The access checks are the
    /// caller's.
    pub(crate) async fn join_consumer(
        &self,
        mut groups: Vec<GroupKey>,
        kinds: &[String],
        prefetch: u16,
        hidden: HashMap<String, Vec<String>>,
    ) -> Result<Consumer> {
        let hub = self.event_hub();
        let id = hub
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        let (done, wait) = oneshot::channel();
        groups.sort();
        groups.dedup();
        hub.tx
            .send(Cmd::Join {
                id,
                groups,
                kinds: kinds.iter().cloned().collect(),
                prefetch: usize::from(prefetch.max(1)),
                tx,
                done,
            })
            .map_err(|_| Error::Internal("event hub stopped".into()))?;
        wait.await
            .map_err(|_| Error::Internal("event hub stopped".into()))??;
        Ok(Consumer {
            id,
            rx,
            hub: hub.tx.clone(),
            held: HashSet::new(),
            hidden,
        })
    }

    /// Does product `pk` belong to enterprise `enterprise_id`?
    pub(crate) async fn enterprise_owns(&self, enterprise_id: &str, pk: &str) -> Result<bool> {
        Ok(self
            .store()
            .product_owner(pk)
            .await?
            .and_then(|o| o.enterprise_id)
            .as_deref()
            == Some(enterprise_id))
    }

    /// Tell the hub that the store holds new events for `groups` (a no-op before it started).
    pub(crate) fn poke_event_groups(&self, groups: Vec<GroupKey>) {
        if let Some(hub) = self.started_event_hub() {
            let _ = hub.tx.send(Cmd::Poke(groups));
        }
    }

    /// Make the hub forget `groups` and wait until it has: from then on it queues nothing for
    /// them.
    pub(crate) async fn forget_event_groups(&self, groups: Vec<GroupKey>) {
        if let Some(hub) = self.started_event_hub() {
            let (done, wait) = oneshot::channel();
            if hub.tx.send(Cmd::Forget(groups, done)).is_ok() {
                let _ = wait.await;
            }
        }
    }
}

mod task;

use task::Hub;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subkeys_and_kinds_parse() {
        assert!(parse_subkey("ops_1").is_ok());
        assert!(parse_subkey("").is_err());
        assert!(parse_subkey(&"a".repeat(33)).is_err());
        assert!(parse_subkey("a-b").is_err());
        assert_eq!(
            parse_kinds::<&str>(&[]).unwrap().len(),
            EventKind::ALL.len()
        );
        assert_eq!(
            parse_kinds(&["device_online", "device_online"]).unwrap(),
            vec!["device_online"]
        );
        assert!(parse_kinds(&["nope"]).is_err());
        assert_eq!(parse_prefetch(None).unwrap(), 50);
        assert!(parse_prefetch(Some(0)).is_err());
        assert!(parse_prefetch(Some(32768)).is_err());
        assert_eq!(parse_prefetch(Some(32767)).unwrap(), 32767);
    }

    /// The hub used to take events from a broadcast of 4096: a burst beyond that, published
    /// without the hub getting a turn (one thread), lost the excess. Its own channel makes the
    /// publisher wait instead, so every event of a much larger burst is queued, in order.
    #[tokio::test]
    async fn a_burst_beyond_the_old_broadcast_capacity_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let core = crate::test_support::core_with_device(dir.path(), "[]").await;
        let mut c = core
            .join_consumer(
                vec![("pk".into(), "s".into())],
                &["device_ack".to_owned()],
                PREFETCH_MAX,
                HashMap::new(),
            )
            .await
            .unwrap();
        const N: usize = 10_000;
        for i in 0..N {
            core.bus()
                .publish_event(DeviceEvent::Ack {
                    did: "d1".into(),
                    ts: i as i64,
                    id: format!("c{i}"),
                    status: "ok".into(),
                })
                .await;
        }
        for i in 0..N {
            let d = tokio::time::timeout(Duration::from_secs(60), c.next())
                .await
                .expect("an event")
                .unwrap();
            assert_eq!((d.kind.as_str(), d.ts), ("device_ack", i as i64));
            let data: serde_json::Value = serde_json::from_str(&d.data).unwrap();
            assert_eq!(data["id"], format!("c{i}"));
            c.ack(d.delivery_id).unwrap();
        }
        assert!(c.try_next().is_none());
    }

    /// Changes and alarms come from real reports through the writer: the first report after
    /// start compares with the stored state, later ones with the values in memory.
    #[tokio::test]
    async fn reports_produce_changes_and_alarms_against_the_previous_state() {
        let dir = tempfile::tempdir().unwrap();
        let model = r#"[{"name":"temp","type":"int","min":0,"max":100},
            {"name":"overheat","type":"bool","class":"alert"},
            {"name":"motor","type":"bool","class":"fault"},
            {"name":"code","type":"string","sensitivity":"sensitive"}]"#;
        let core = crate::test_support::core_with_device(dir.path(), model).await;
        // A state stored before this run: temp 20.
        core.store()
            .record_batch(
                &[rampart_store::ReportRow {
                    did: "d1".into(),
                    ts: 1,
                    values: serde_json::from_str(r#"{"temp":20}"#).unwrap(),
                }],
                &[],
            )
            .await
            .unwrap();
        let kinds: Vec<String> = [
            "datapoint_changed",
            "device_attr_alert",
            "device_attr_fault",
        ]
        .map(str::to_owned)
        .to_vec();
        let mut hidden = HashMap::new();
        hidden.insert("pk".to_owned(), vec!["code".to_owned()]);
        let mut c = core
            .join_consumer(vec![("pk".into(), "s".into())], &kinds, 100, hidden)
            .await
            .unwrap();
        let dev = crate::device::runtime::DeviceAuth {
            did: rampart_proto::ids::Did::parse("d1").unwrap(),
            product: core.product("pk").await.unwrap(),
        };
        for r in [
            r#"{"temp":20,"overheat":false}"#,
            r#"{"temp":21,"overheat":true,"motor":false}"#,
            r#"{"temp":21,"overheat":true,"motor":true}"#,
            r#"{"overheat":false,"code":"E1"}"#,
            r#"{"code":"E2"}"#,
        ] {
            core.ingest_report(&dev, r.as_bytes(), true).await.unwrap();
        }
        let mut got = Vec::new();
        while got.len() < 7 {
            let d = tokio::time::timeout(Duration::from_secs(10), c.next())
                .await
                .expect("an event")
                .unwrap();
            c.ack(d.delivery_id).unwrap();
            got.push((
                d.kind,
                serde_json::from_str::<serde_json::Value>(&d.data).unwrap(),
            ));
        }
        use serde_json::json;
        let want = [
            // temp 20 was stored already; overheat false was never reported: a change, no alarm.
            (
                "datapoint_changed",
                json!({"values": {"overheat": false}, "previous": {"overheat": null}}),
            ),
            (
                "datapoint_changed",
                json!({"values": {"temp": 21, "overheat": true, "motor": false},
                "previous": {"temp": 20, "overheat": false, "motor": null}}),
            ),
            ("device_attr_alert", json!({"values": {"overheat": true}})),
            (
                "datapoint_changed",
                json!({"values": {"motor": true}, "previous": {"motor": false}}),
            ),
            ("device_attr_fault", json!({"values": {"motor": true}})),
            // The sensitive point is left out; the alert cleared.
            (
                "datapoint_changed",
                json!({"values": {"overheat": false}, "previous": {"overheat": true}}),
            ),
            ("device_attr_alert", json!({"values": {"overheat": false}})),
        ];
        for (i, (kind, data)) in want.iter().enumerate() {
            assert_eq!((got[i].0.as_str(), &got[i].1), (*kind, data), "event {i}");
        }
        // The last report changed only the hidden point, and came out as nothing at all: the
        // next event is the next report's. Then a factory reset clears the stored state: the
        // same value again is a change from nothing.
        for (cleared, want) in [
            (false, r#"{"previous":{"temp":21},"values":{"temp":22}}"#),
            (true, r#"{"previous":{"temp":null},"values":{"temp":22}}"#),
        ] {
            if cleared {
                core.store().clear_device_data("d1", false).await.unwrap();
                core.bus().event_sink().state_cleared("d1");
            }
            core.ingest_report(&dev, br#"{"temp":22}"#, true)
                .await
                .unwrap();
            let d = tokio::time::timeout(Duration::from_secs(10), c.next())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(d.data, want);
            c.ack(d.delivery_id).unwrap();
        }
    }
}
