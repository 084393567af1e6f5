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
use crate::{now_ms, Core, Error, Result};
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
    pub(crate) fn start(store: Store, bus: &Bus, cfg: EventsConfig) -> EventHub {
        let (tx, rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::channel(HUB_QUEUE);
        let sink = bus.event_sink();
        sink.attach_hub(events_tx);
        tokio::spawn(async move {
            let mut hub = Hub {
                store,
                sink,
                cfg,
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

// ---- the hub task ----

struct Group {
    kinds: BTreeSet<String>,
    consumers: Vec<u64>,
    /// Where round-robin resumes.
    rr: usize,
    /// The last id loaded from the store.
    cursor: i64,
    /// The store may hold events after `cursor`.
    more: bool,
    /// Loaded, not handed out (including events given back), by id.
    pending: BTreeMap<i64, QueuedEventRow>,
    /// Handed out, not acknowledged: id -> (consumer, event).
    inflight: HashMap<i64, (u64, QueuedEventRow)>,
    /// Devices with unacknowledged events: did -> (consumer, how many).
    owner: HashMap<String, (u64, usize)>,
}

impl Group {
    fn new(kinds: BTreeSet<String>) -> Group {
        Group {
            kinds,
            consumers: Vec::new(),
            rr: 0,
            cursor: 0,
            more: true,
            pending: BTreeMap::new(),
            inflight: HashMap::new(),
            owner: HashMap::new(),
        }
    }

    /// Forget what is in memory (the group has no consumer left); the queue stays in the store.
    fn reset(&mut self) {
        self.cursor = 0;
        self.more = true;
        self.pending = BTreeMap::new();
        self.inflight = HashMap::new();
        self.owner = HashMap::new();
        self.rr = 0;
    }
}

struct ConsumerState {
    tx: mpsc::UnboundedSender<Delivery>,
    kinds: HashSet<String>,
    prefetch: usize,
    held: usize,
    groups: Vec<GroupKey>,
}

struct Hub {
    store: Store,
    /// Where the hub says which products' reports to compare with the previous state.
    sink: Arc<EventSink>,
    cfg: EventsConfig,
    groups: HashMap<GroupKey, Group>,
    consumers: HashMap<u64, ConsumerState>,
    /// Handed-out delivery id -> its group.
    inflight: HashMap<i64, GroupKey>,
    /// did -> product key, filled as devices are seen.
    product_of: HashMap<String, String>,
    acks: Vec<i64>,
    new_events: Vec<DeviceEvent>,
    /// Groups whose consumers may have something to receive.
    dirty: HashSet<GroupKey>,
}

/// The kind and data of a device event.
fn describe(ev: &DeviceEvent) -> (&str, &'static str, i64, serde_json::Value) {
    use serde_json::json;
    let kind = ev.kind().as_str();
    match ev {
        DeviceEvent::Online { did, ts } => (did, kind, *ts, json!({})),
        DeviceEvent::Offline { did, ts, reason } => (did, kind, *ts, json!({ "reason": reason })),
        DeviceEvent::Report { did, ts, values } => (did, kind, *ts, json!({ "values": values })),
        DeviceEvent::Ack {
            did,
            ts,
            id,
            status,
        } => (did, kind, *ts, json!({ "id": id, "status": status })),
        DeviceEvent::Registered {
            did,
            ts,
            hardware_id,
            mode,
            created,
        } => (
            did,
            kind,
            *ts,
            json!({ "hardware_id": hardware_id, "mode": mode, "created": created }),
        ),
        DeviceEvent::Raw { did, ts, payload } => (did, kind, *ts, json!({ "payload": payload })),
        DeviceEvent::Changed {
            did,
            ts,
            values,
            previous,
        } => (
            did,
            kind,
            *ts,
            json!({ "values": values, "previous": previous }),
        ),
        DeviceEvent::Alarm {
            did, ts, values, ..
        } => (did, kind, *ts, json!({ "values": values })),
    }
}

impl Hub {
    async fn run(
        &mut self,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
        mut events: mpsc::Receiver<DeviceEvent>,
    ) {
        match self.store.list_event_groups().await {
            Ok(rows) => {
                for r in rows {
                    let kinds = r.kinds.split_whitespace().map(str::to_owned).collect();
                    self.groups
                        .insert((r.product_key, r.subkey), Group::new(kinds));
                }
            }
            Err(e) => tracing::error!(error = %e, "loading event stream groups failed"),
        }
        self.update_tracked();
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut events_open = true;
        loop {
            tokio::select! {
                biased;
                cmd = cmds.recv() => {
                    let Some(cmd) = cmd else { break };
                    self.handle(cmd).await;
                    for _ in 0..1024 {
                        match cmds.try_recv() {
                            Ok(cmd) => self.handle(cmd).await,
                            Err(_) => break,
                        }
                    }
                }
                ev = events.recv(), if events_open => {
                    match ev {
                        Some(ev) => self.new_events.push(ev),
                        None => events_open = false,
                    }
                    for _ in 0..HUB_QUEUE {
                        match events.try_recv() {
                            Ok(ev) => self.new_events.push(ev),
                            Err(_) => break,
                        }
                    }
                }
                _ = sweep.tick() => self.sweep().await,
            }
            self.flush_acks().await;
            self.record().await;
            while !self.dirty.is_empty() {
                let dirty: Vec<GroupKey> = self.dirty.drain().collect();
                for key in dirty {
                    self.fill_and_dispatch(&key).await;
                }
            }
        }
    }

    /// Tell the report path which products' reports to compare with the previous state:
    /// those with a group that asked for changes or alarms.
    fn update_tracked(&self) {
        let products = self
            .groups
            .iter()
            .filter(|(_, g)| {
                g.kinds
                    .iter()
                    .any(|k| EventKind::parse(k).is_some_and(EventKind::compares_previous))
            })
            .map(|(k, _)| k.0.clone())
            .collect();
        self.sink.set_tracked(products);
    }

    async fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Join {
                id,
                groups,
                kinds,
                prefetch,
                tx,
                done,
            } => {
                let res = self.join(&groups, &kinds).await;
                self.update_tracked();
                if res.is_ok() {
                    self.consumers.insert(
                        id,
                        ConsumerState {
                            tx,
                            kinds,
                            prefetch,
                            held: 0,
                            groups: groups.clone(),
                        },
                    );
                    for g in groups {
                        if let Some(group) = self.groups.get_mut(&g) {
                            group.consumers.push(id);
                        }
                        self.dirty.insert(g);
                    }
                }
                let _ = done.send(res);
            }
            Cmd::Leave(id) => self.leave(id),
            Cmd::Ack(delivery) => self.ack(delivery),
            Cmd::Poke(groups) => {
                for key in groups {
                    if let Some(g) = self.groups.get_mut(&key) {
                        g.more = true;
                        if !g.consumers.is_empty() {
                            self.dirty.insert(key);
                        }
                    }
                }
            }
            Cmd::Forget(groups, done) => {
                for key in &groups {
                    self.groups.remove(key);
                    self.dirty.remove(key);
                }
                self.inflight.retain(|_, k| !groups.contains(k));
                for c in self.consumers.values_mut() {
                    c.groups.retain(|k| !groups.contains(k));
                }
                self.update_tracked();
                let _ = done.send(());
            }
        }
    }

    /// Create or widen the groups (their kinds become the union of what logins asked for).
    async fn join(&mut self, groups: &[GroupKey], kinds: &HashSet<String>) -> Result<()> {
        let now = now_ms();
        for key in groups {
            let group = self
                .groups
                .entry(key.clone())
                .or_insert_with(|| Group::new(BTreeSet::new()));
            group.kinds.extend(kinds.iter().cloned());
            let row = EventGroupRow {
                product_key: key.0.clone(),
                subkey: key.1.clone(),
                kinds: group.kinds.iter().cloned().collect::<Vec<_>>().join(" "),
                last_seen: now,
            };
            self.store.upsert_event_group(&row).await?;
        }
        Ok(())
    }

    fn leave(&mut self, id: u64) {
        let Some(c) = self.consumers.remove(&id) else {
            return;
        };
        for key in c.groups {
            let Some(g) = self.groups.get_mut(&key) else {
                continue;
            };
            g.consumers.retain(|&x| x != id);
            let back: Vec<i64> = g
                .inflight
                .iter()
                .filter(|(_, (holder, _))| *holder == id)
                .map(|(d, _)| *d)
                .collect();
            for d in back {
                if let Some((_, row)) = g.inflight.remove(&d) {
                    g.pending.insert(d, row);
                }
                self.inflight.remove(&d);
            }
            g.owner.retain(|_, (holder, _)| *holder != id);
            if g.consumers.is_empty() {
                g.reset();
            } else {
                self.dirty.insert(key);
            }
        }
    }

    fn ack(&mut self, delivery: i64) {
        let Some(key) = self.inflight.remove(&delivery) else {
            return;
        };
        self.acks.push(delivery);
        let Some(g) = self.groups.get_mut(&key) else {
            return;
        };
        if let Some((holder, row)) = g.inflight.remove(&delivery) {
            if let Some(c) = self.consumers.get_mut(&holder) {
                c.held = c.held.saturating_sub(1);
                // The consumer has room again in all its groups.
                for k in &c.groups {
                    self.dirty.insert(k.clone());
                }
            }
            if let Some((_, n)) = g.owner.get_mut(&row.did) {
                *n -= 1;
                if *n == 0 {
                    g.owner.remove(&row.did);
                }
            }
        }
    }

    async fn flush_acks(&mut self) {
        if self.acks.is_empty() {
            return;
        }
        let acks = std::mem::take(&mut self.acks);
        match self.store.delete_events(&acks).await {
            Ok(_) => {
                metrics::counter!(crate::telemetry::EVENT_STREAM_ACKED).increment(acks.len() as u64)
            }
            // The events stay queued and are delivered again after a restart.
            Err(e) => tracing::error!(error = %e, "deleting acknowledged events failed"),
        }
    }

    /// Queue the new events for every group of their product that asked for their kind.
    async fn record(&mut self) {
        if self.new_events.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.new_events);
        if self.groups.is_empty() {
            return;
        }
        let unknown: Vec<String> = events
            .iter()
            .map(|e| describe(e).0)
            .filter(|d| !self.product_of.contains_key(*d))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(str::to_owned)
            .collect();
        if !unknown.is_empty() {
            if self.product_of.len() > 1_000_000 {
                self.product_of.clear();
            }
            match self.store.device_products(&unknown).await {
                Ok(pairs) => self.product_of.extend(pairs),
                Err(e) => tracing::error!(error = %e, "looking up devices' products failed"),
            }
        }
        let now = now_ms();
        let mut rows = Vec::new();
        for ev in &events {
            let (did, kind, ts, data) = describe(ev);
            let Some(pk) = self.product_of.get(did) else {
                continue;
            };
            let body = data.to_string();
            for (key, g) in &self.groups {
                if &key.0 == pk && g.kinds.contains(kind) {
                    rows.push(QueuedEventRow {
                        id: 0,
                        product_key: key.0.clone(),
                        subkey: key.1.clone(),
                        did: did.to_owned(),
                        kind: kind.to_owned(),
                        ts,
                        body: body.clone(),
                        created_at: now,
                    });
                }
            }
        }
        if rows.is_empty() {
            return;
        }
        let n = rows.len();
        match self.store.insert_events(&rows).await {
            Ok(()) => {
                metrics::counter!(crate::telemetry::EVENT_STREAM_QUEUED).increment(n as u64);
                for r in rows {
                    let key = (r.product_key, r.subkey);
                    if let Some(g) = self.groups.get_mut(&key) {
                        g.more = true;
                        if !g.consumers.is_empty() {
                            self.dirty.insert(key);
                        }
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, events = n, "queueing events failed"),
        }
    }

    /// Load a group's queue ahead of delivery and hand out what its consumers have room for.
    async fn fill_and_dispatch(&mut self, key: &GroupKey) {
        let Some(g) = self.groups.get_mut(key) else {
            return;
        };
        if g.consumers.is_empty() {
            return;
        }
        let mut loaded_full = false;
        if g.more && g.pending.len() < WINDOW {
            match self
                .store
                .load_events(&key.0, &key.1, g.cursor, WINDOW as i64)
                .await
            {
                Ok(rows) => {
                    g.more = rows.len() == WINDOW;
                    loaded_full = g.more;
                    for r in rows {
                        g.cursor = g.cursor.max(r.id);
                        g.pending.insert(r.id, r);
                    }
                }
                Err(e) => tracing::error!(error = %e, "loading queued events failed"),
            }
        }
        let mut blocked: HashSet<String> = HashSet::new();
        let mut handed: Vec<(i64, u64)> = Vec::new();
        for (id, row) in &g.pending {
            let room = |c: &u64| {
                self.consumers
                    .get(c)
                    .is_some_and(|s| s.held < s.prefetch && s.kinds.contains(&row.kind))
            };
            if !g
                .consumers
                .iter()
                .any(|c| self.consumers.get(c).is_some_and(|s| s.held < s.prefetch))
            {
                break;
            }
            if blocked.contains(&row.did) {
                continue;
            }
            // A kind no connected consumer asked for stays queued for one that does, without
            // holding up the device's other events.
            if !g.consumers.iter().any(|c| {
                self.consumers
                    .get(c)
                    .is_some_and(|s| s.kinds.contains(&row.kind))
            }) {
                continue;
            }
            let target = match g.owner.get(&row.did) {
                Some((holder, _)) => room(holder).then_some(*holder),
                None => {
                    let n = g.consumers.len();
                    let pick = (0..n)
                        .map(|i| (g.rr + i) % n)
                        .find(|&i| room(&g.consumers[i]));
                    pick.map(|i| {
                        g.rr = (i + 1) % n;
                        g.consumers[i]
                    })
                }
            };
            let Some(c) = target else {
                blocked.insert(row.did.clone());
                continue;
            };
            let Some(state) = self.consumers.get_mut(&c) else {
                blocked.insert(row.did.clone());
                continue;
            };
            if state.tx.send(Delivery::from(row.clone())).is_err() {
                // Gone; its `Leave` is on the way.
                blocked.insert(row.did.clone());
                continue;
            }
            state.held += 1;
            g.owner.entry(row.did.clone()).or_insert((c, 0)).1 += 1;
            handed.push((*id, c));
        }
        for (id, c) in handed {
            if let Some(row) = g.pending.remove(&id) {
                g.inflight.insert(id, (c, row));
                self.inflight.insert(id, key.clone());
            }
        }
        // More to load now that the window has room (after a failed load, the next event or
        // acknowledgement tries again).
        if loaded_full && g.pending.len() < WINDOW {
            self.dirty.insert(key.clone());
        }
    }

    /// Retention, and forgetting groups nobody has used for as long.
    async fn sweep(&mut self) {
        let now = now_ms();
        let before = now - self.cfg.retention_ms;
        match self
            .store
            .expire_events(before, self.cfg.max_per_group)
            .await
        {
            Ok(n) if n > 0 => {
                metrics::counter!(crate::telemetry::EVENT_STREAM_EXPIRED).increment(n);
                tracing::info!(
                    events = n,
                    "event stream retention dropped unacknowledged events"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "event stream retention failed"),
        }
        let live: Vec<GroupKey> = self
            .groups
            .iter()
            .filter(|(_, g)| !g.consumers.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        if let Err(e) = self.store.touch_event_groups(&live, now).await {
            tracing::error!(error = %e, "event stream group refresh failed");
            return;
        }
        match self.store.delete_stale_event_groups(before).await {
            Ok(n) if n > 0 => {
                if let Ok(rows) = self.store.list_event_groups().await {
                    let keep: HashSet<GroupKey> = rows
                        .into_iter()
                        .map(|r| (r.product_key, r.subkey))
                        .collect();
                    self.groups
                        .retain(|k, g| keep.contains(k) || !g.consumers.is_empty());
                    self.update_tracked();
                }
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "event stream group expiry failed"),
        }
    }
}

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
