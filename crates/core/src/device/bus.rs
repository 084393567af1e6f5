//! The in-process bus between the HTTP edge and the MQTT edge: which session holds which device,
//! messages to a device's session, pending command acks, and a broadcast of device events.
//!
//! On a single node everything here is in process. A node that joined a cluster
//! ([`crate::cluster`]) keeps the same API: a command for a device held by another node is
//! forwarded there ([`Bus::deliver_anywhere`]), an ack for a command sent from another node goes
//! back to it ([`Bus::resolve_ack`]), and presence is recorded cluster-wide by `Core::set_presence`.

use bytes::Bytes;
use rampart_proto::command::Ack;
use serde::Serialize;
use std::collections::HashSet;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::{Mutex, OnceLock, RwLock};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Why a session is closed from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickReason {
    /// Another connection authenticated as the same device.
    TakenOver,
    /// The device's credentials were rotated or revoked.
    Revoked,
}

/// A message on its way to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    /// Unix ms after which the message is not delivered any more (MQTT 5 message expiry).
    pub expires_at: Option<i64>,
}

impl Message {
    /// Whole seconds left before expiry (at least 1 while not expired), `None` without an expiry,
    /// `Some(0)` once expired at `now`.
    pub fn remaining_secs(&self, now: i64) -> Option<u32> {
        self.expires_at.map(|e| {
            if e <= now {
                0
            } else {
                u32::try_from((e - now + 999) / 1000).unwrap_or(u32::MAX)
            }
        })
    }
}

/// A message to a device's session task.
#[derive(Debug)]
pub enum ToSession {
    /// Publish to the device (QoS 1).
    Publish(Message),
    Kick(KickReason),
}

/// Something that happened to a device, for live push and event streams.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DeviceEvent {
    Online {
        did: String,
        ts: i64,
    },
    Offline {
        did: String,
        ts: i64,
        reason: String,
    },
    Report {
        did: String,
        ts: i64,
        values: serde_json::Map<String, serde_json::Value>,
    },
    Ack {
        did: String,
        ts: i64,
        id: String,
        status: String,
    },
    /// A device proved itself at registration: created (`created`), or a known one registered
    /// again (its secret rotated in mode `product`).
    Registered {
        did: String,
        ts: i64,
        hardware_id: String,
        mode: String,
        created: bool,
    },
    /// A passthrough publish on `dev/{did}/raw`, base64 (not stored; operator stream only).
    Raw {
        did: String,
        ts: i64,
        payload: String,
    },
    /// Points of a stored report whose values differ from the device's previous state
    /// (`previous`: the old values, `null` for a point never reported). Operator stream only.
    Changed {
        did: String,
        ts: i64,
        values: serde_json::Map<String, serde_json::Value>,
        previous: serde_json::Map<String, serde_json::Value>,
    },
    /// Alert- or fault-class points of a stored report that were raised (`true`) or cleared
    /// (`false`). Operator stream only.
    Alarm {
        did: String,
        ts: i64,
        class: rampart_proto::model::PointClass,
        values: serde_json::Map<String, serde_json::Value>,
    },
    /// The device's shadow delta changed (a desired write, or a report that matched or moved
    /// away from a desired value): the desired points whose reported value differs, now.
    Delta {
        did: String,
        ts: i64,
        version: i64,
        delta: serde_json::Map<String, serde_json::Value>,
    },
    /// A device's part in an OTA campaign moved (a report, the cloud's `notified`, a check that
    /// completed or failed it, a timeout). Operator stream only.
    OtaStatus {
        did: String,
        ts: i64,
        campaign_id: String,
        state: String,
        reason: Option<String>,
        bytes: Option<u64>,
    },
}

/// What a device event is, named as the operator event stream and webhooks name it (`kind`),
/// and as subscriptions ask for it. The one list of those names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Online,
    Offline,
    StatusKv,
    Ack,
    StatusRaw,
    AttrAlert,
    AttrFault,
    Registered,
    DatapointChanged,
    Delta,
    OtaStatus,
}

impl EventKind {
    /// Every kind, in the order the documentation lists them.
    pub const ALL: [EventKind; 11] = [
        EventKind::Online,
        EventKind::Offline,
        EventKind::StatusKv,
        EventKind::Ack,
        EventKind::StatusRaw,
        EventKind::AttrAlert,
        EventKind::AttrFault,
        EventKind::Registered,
        EventKind::DatapointChanged,
        EventKind::Delta,
        EventKind::OtaStatus,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Online => "device_online",
            EventKind::Offline => "device_offline",
            EventKind::StatusKv => "device_status_kv",
            EventKind::Ack => "device_ack",
            EventKind::StatusRaw => "device_status_raw",
            EventKind::AttrAlert => "device_attr_alert",
            EventKind::AttrFault => "device_attr_fault",
            EventKind::Registered => "device_registered",
            EventKind::DatapointChanged => "datapoint_changed",
            EventKind::Delta => "device_delta",
            EventKind::OtaStatus => "ota_status",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Kinds found by comparing a report with the device's previous state: asking for one
    /// makes the writer track the product's devices.
    pub fn compares_previous(self) -> bool {
        matches!(
            self,
            EventKind::DatapointChanged | EventKind::AttrAlert | EventKind::AttrFault
        )
    }
}

impl DeviceEvent {
    pub fn kind(&self) -> EventKind {
        match self {
            DeviceEvent::Online { .. } => EventKind::Online,
            DeviceEvent::Offline { .. } => EventKind::Offline,
            DeviceEvent::Report { .. } => EventKind::StatusKv,
            DeviceEvent::Ack { .. } => EventKind::Ack,
            DeviceEvent::Registered { .. } => EventKind::Registered,
            DeviceEvent::Raw { .. } => EventKind::StatusRaw,
            DeviceEvent::Changed { .. } => EventKind::DatapointChanged,
            DeviceEvent::Delta { .. } => EventKind::Delta,
            DeviceEvent::OtaStatus { .. } => EventKind::OtaStatus,
            DeviceEvent::Alarm { class, .. } => match class {
                rampart_proto::model::PointClass::Alert => EventKind::AttrAlert,
                rampart_proto::model::PointClass::Fault => EventKind::AttrFault,
            },
        }
    }

    /// Whether the app WebSocket push carries this kind (the others go to the operator
    /// stream only).
    pub fn is_live(&self) -> bool {
        !matches!(
            self,
            DeviceEvent::Raw { .. }
                | DeviceEvent::Changed { .. }
                | DeviceEvent::Alarm { .. }
                | DeviceEvent::OtaStatus { .. }
        )
    }
}

/// Where device events go: the live broadcast (app WebSockets; a receiver that falls behind
/// loses events) and, once the operator event stream runs, its hub's own bounded channel, on
/// which senders wait rather than drop (at least once).
pub(crate) struct EventSink {
    live: broadcast::Sender<DeviceEvent>,
    hub: OnceLock<mpsc::Sender<DeviceEvent>>,
    /// Products for which some subscription group wants `datapoint_changed` or alarms, so their
    /// reports are compared with the previous state.
    tracked: RwLock<HashSet<String>>,
    /// Devices whose stored state was cleared (factory reset, wipe): the report writer drops the
    /// values it holds for them before its next batch.
    cleared: Mutex<Vec<String>>,
}

impl EventSink {
    /// Hand `ev` to the hub (waiting while its channel is full) and to live listeners.
    pub(crate) async fn send(&self, ev: DeviceEvent) {
        let live = ev.is_live() && self.live.receiver_count() > 0;
        match self.hub.get() {
            Some(hub) if live => {
                let _ = hub.send(ev.clone()).await;
                let _ = self.live.send(ev);
            }
            Some(hub) => {
                let _ = hub.send(ev).await;
            }
            None if live => {
                let _ = self.live.send(ev);
            }
            None => {}
        }
    }

    /// Connect the operator event stream's hub (once).
    pub(crate) fn attach_hub(&self, tx: mpsc::Sender<DeviceEvent>) {
        let _ = self.hub.set(tx);
    }

    /// Replace the products whose reports are compared with the previous state.
    pub(crate) fn set_tracked(&self, products: HashSet<String>) {
        *self.tracked.write().unwrap_or_else(|p| p.into_inner()) = products;
    }

    /// A device's stored state was cleared outside the report writer: the values it holds for
    /// comparisons are stale.
    pub(crate) fn state_cleared(&self, did: &str) {
        if self.hub.get().is_some() {
            lock(&self.cleared).push(did.to_owned());
        }
    }

    /// The devices whose state was cleared since the last call.
    pub(crate) fn take_cleared(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.cleared))
    }

    /// Whether reports of product `pk` are compared with the previous state.
    pub(crate) fn tracks(&self, pk: &str) -> bool {
        self.hub.get().is_some()
            && self
                .tracked
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains(pk)
    }
}

/// Most messages waiting in one session's inbox; a full inbox refuses more.
pub const INBOX_MAX: usize = 64;

/// Messages for one live session. Unlike a channel it allocates nothing until a message arrives,
/// and gives the memory back once drained: most sessions are idle most of the time (an idle inbox
/// is one 64-byte allocation). Whoever waits leaves a [`Waiter`]: the session's task, or, while the
/// session is set aside as idle, whatever the gateway uses to bring it back.
#[derive(Debug, Default)]
pub struct Inbox {
    state: Mutex<InboxState>,
}

#[derive(Debug, Default)]
struct InboxState {
    /// Allocated at the first message, freed once drained. Boxed on purpose: an idle inbox pays
    /// 8 bytes for it instead of a `VecDeque`'s 32, which keeps the inbox in a 64-byte block.
    #[allow(clippy::box_collection)]
    queue: Option<Box<VecDeque<ToSession>>>,
    waiter: Option<Waiter>,
}

/// Something woken with a number: lets many waiters share one object (an `Arc` clone, no
/// allocation per waiter), each telling itself apart by its tag.
pub trait TagWake: Send + Sync {
    fn wake_tag(&self, tag: u64);
}

/// Who to wake when a message arrives.
pub enum Waiter {
    Task(std::task::Waker),
    Tagged(Arc<dyn TagWake>, u64),
}

impl Waiter {
    fn wake(self) {
        match self {
            Waiter::Task(w) => w.wake(),
            Waiter::Tagged(w, tag) => w.wake_tag(tag),
        }
    }
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Waiter::Task(w) => f.debug_tuple("Task").field(w).finish(),
            Waiter::Tagged(_, tag) => f.debug_tuple("Tagged").field(tag).finish(),
        }
    }
}

impl InboxState {
    fn len(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.len())
    }

    fn pop(&mut self) -> Option<ToSession> {
        let q = self.queue.as_mut()?;
        let m = q.pop_front();
        if q.is_empty() {
            self.queue = None;
        }
        m
    }
}

impl Inbox {
    /// Queue a message (kicks always fit); false when the inbox is full.
    pub fn push(&self, msg: ToSession) -> bool {
        let mut st = lock(&self.state);
        if st.len() >= INBOX_MAX && matches!(msg, ToSession::Publish(_)) {
            return false;
        }
        st.queue.get_or_insert_with(Default::default).push_back(msg);
        let waiter = st.waiter.take();
        drop(st);
        if let Some(w) = waiter {
            w.wake();
        }
        true
    }

    /// Take the next message, if any, without waiting.
    pub fn try_recv(&self) -> Option<ToSession> {
        lock(&self.state).pop()
    }

    /// Wait for the next message.
    pub async fn recv(&self) -> ToSession {
        std::future::poll_fn(|cx| {
            let mut st = lock(&self.state);
            match st.pop() {
                Some(m) => std::task::Poll::Ready(m),
                None => {
                    let same =
                        matches!(&st.waiter, Some(Waiter::Task(w)) if w.will_wake(cx.waker()));
                    if !same {
                        st.waiter = Some(Waiter::Task(cx.waker().clone()));
                    }
                    std::task::Poll::Pending
                }
            }
        })
        .await
    }

    /// Wake `waiter` at the next push instead of whoever waited before. True when a message is
    /// already waiting (then nothing is registered and the caller should act at once).
    pub fn wake_on_push(&self, waiter: Waiter) -> bool {
        let mut st = lock(&self.state);
        if st.len() == 0 {
            st.waiter = Some(waiter);
            false
        } else {
            st.waiter = None;
            true
        }
    }

    /// Forget the registered waiter.
    pub fn clear_waker(&self) {
        lock(&self.state).waiter = None;
    }
}

/// Most messages queued for one parked session; older ones are dropped first.
pub const PARKED_QUEUE_MAX: usize = 100;

/// The state of a persistent session whose connection has gone (MQTT clean start = 0 with a session
/// expiry), kept until it expires or the device reconnects.
#[derive(Debug, Default)]
pub struct ParkedSession {
    /// Subscriptions: filter and granted QoS.
    pub subscriptions: Vec<(String, u8)>,
    /// Messages to deliver on resume (unacknowledged ones first).
    pub queue: VecDeque<Message>,
    /// Unix ms after which the session is gone.
    pub expires_at: i64,
}

/// What happened to a message for a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Handed to the live session.
    Sent,
    /// Queued in the device's parked persistent session.
    Queued,
    /// No live or parked session (or the session is saturated).
    NotDelivered,
}

/// The sessions by device id. A live session is known by its inbox alone (24 bytes an entry, one
/// per connected device): the inbox is the session's identity, unique while the session holds it,
/// which it does until it has detached.
#[derive(Default)]
struct Sessions {
    live: HashMap<Box<str>, Arc<Inbox>>,
    parked: HashMap<Box<str>, ParkedSession>,
}

pub struct Bus {
    sessions: Mutex<Sessions>,
    pending: Mutex<HashMap<(String, String), oneshot::Sender<Ack>>>,
    events: Arc<EventSink>,
    /// The cluster this node joined, if any (set once, at start).
    cluster: OnceLock<Arc<crate::cluster::Cluster>>,
    /// This node's name when alone (a cluster names it otherwise).
    node: OnceLock<String>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus {
            sessions: Default::default(),
            pending: Default::default(),
            events: Arc::new(EventSink {
                live: broadcast::channel(4096).0,
                hub: OnceLock::new(),
                tracked: RwLock::new(HashSet::new()),
                cleared: Mutex::new(Vec::new()),
            }),
            cluster: OnceLock::new(),
            node: OnceLock::new(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Bus {
    /// Register the session now holding `did`; an older session of the same device is told to
    /// close. With `resume`, a parked persistent session that has not expired is handed back;
    /// without, any parked session is discarded. The session detaches with the same inbox.
    pub fn attach(
        &self,
        did: &str,
        inbox: Arc<Inbox>,
        resume: bool,
        now: i64,
    ) -> Option<ParkedSession> {
        let mut s = lock(&self.sessions);
        let parked = s
            .parked
            .remove(did)
            .filter(|p| resume && p.expires_at > now);
        if let Some(old) = s.live.insert(did.into(), inbox) {
            old.push(ToSession::Kick(KickReason::TakenOver));
        }
        parked
    }

    /// Join a cluster (once): false when this bus is in one already.
    pub(crate) fn join(&self, cluster: Arc<crate::cluster::Cluster>) -> bool {
        self.cluster.set(cluster).is_ok()
    }

    /// The cluster this node is in, if any.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.cluster.get()
    }

    /// Name this node (once; a later name is ignored). A cluster's node id wins.
    pub fn name_node(&self, id: &str) {
        let _ = self.node.set(id.to_owned());
    }

    /// This node's name: its cluster node id, the name it was given, or one made up for this
    /// process.
    pub fn node_id(&self) -> &str {
        match self.cluster.get() {
            Some(c) => c.node_id(),
            None => self.node.get_or_init(crate::cluster::generated_node_id),
        }
    }

    /// Close the live session of `did` on this node because the device connected to another
    /// node, and forget a parked one here (the device's session lives there now).
    pub fn take_over(&self, did: &str) {
        let mut s = lock(&self.sessions);
        s.parked.remove(did);
        if let Some(inbox) = s.live.get(did) {
            inbox.push(ToSession::Kick(KickReason::TakenOver));
        }
    }

    /// Remove the session of `did` that attached with `inbox`, unless a newer one has replaced
    /// it, parking its state when given. True when this session was the device's current one.
    pub fn detach(&self, did: &str, inbox: &Arc<Inbox>, park: Option<ParkedSession>) -> bool {
        let mut s = lock(&self.sessions);
        if s.live.get(did).is_none_or(|live| !Arc::ptr_eq(live, inbox)) {
            return false;
        }
        s.live.remove(did);
        if let Some(p) = park {
            s.parked.insert(did.into(), p);
        }
        true
    }

    /// The devices with a live session on this node.
    pub(crate) fn live_dids(&self) -> Vec<String> {
        lock(&self.sessions)
            .live
            .keys()
            .map(|k| k.to_string())
            .collect()
    }

    pub fn is_attached(&self, did: &str) -> bool {
        lock(&self.sessions).live.contains_key(did)
    }

    /// Close the session of `did`, if any, and forget a parked one. In a cluster, the node
    /// holding the device's session is told as well (without waiting for it).
    pub fn kick(&self, did: &str) {
        self.kick_here(did);
        if let Some(c) = self.cluster.get() {
            let (c, did) = (c.clone(), did.to_owned());
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { c.revoke_elsewhere(&did).await });
            }
        }
    }

    /// [`Bus::kick`] on this node only.
    pub(crate) fn kick_here(&self, did: &str) {
        let mut s = lock(&self.sessions);
        s.parked.remove(did);
        if let Some(inbox) = s.live.get(did) {
            inbox.push(ToSession::Kick(KickReason::Revoked));
        }
    }

    /// Hand a message to the session holding `did`, or queue it in its parked session.
    pub fn deliver(&self, did: &str, msg: Message, now: i64) -> Delivery {
        let mut s = lock(&self.sessions);
        if let Some(inbox) = s.live.get(did) {
            return if inbox.push(ToSession::Publish(msg)) {
                Delivery::Sent
            } else {
                Delivery::NotDelivered
            };
        }
        match s.parked.get_mut(did) {
            Some(p) if p.expires_at > now => {
                if p.queue.len() >= PARKED_QUEUE_MAX {
                    p.queue.pop_front();
                }
                p.queue.push_back(msg);
                Delivery::Queued
            }
            Some(_) => {
                s.parked.remove(did);
                Delivery::NotDelivered
            }
            None => Delivery::NotDelivered,
        }
    }

    /// [`Bus::deliver`], or, when no session on this node has `did` and this node is in a
    /// cluster, hand it to the node that holds the device's session (`id`: the command's id, so
    /// its ack comes back here). A cluster that cannot be asked counts as not delivered.
    pub async fn deliver_anywhere(&self, did: &str, id: &str, msg: Message, now: i64) -> Delivery {
        let cluster = match self.cluster.get() {
            Some(c) => c,
            None => return self.deliver(did, msg, now),
        };
        match self.deliver(did, msg.clone(), now) {
            Delivery::NotDelivered => {}
            here => return here,
        }
        match cluster.forward(did, id, &msg).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, did, "command not forwarded");
                Delivery::NotDelivered
            }
        }
    }

    /// Hand a message to the live session of `did` only (a parked session does not queue it).
    /// False when the device has no live session or its inbox is full.
    pub fn deliver_live(&self, did: &str, msg: Message) -> bool {
        let s = lock(&self.sessions);
        s.live
            .get(did)
            .is_some_and(|inbox| inbox.push(ToSession::Publish(msg)))
    }

    /// Whether `did` has a live session or an unexpired parked one.
    pub fn reachable(&self, did: &str, now: i64) -> bool {
        let s = lock(&self.sessions);
        s.live.contains_key(did) || s.parked.get(did).is_some_and(|p| p.expires_at > now)
    }

    /// Drop parked sessions that have expired; returns how many.
    pub fn purge_expired(&self, now: i64) -> usize {
        let mut s = lock(&self.sessions);
        let before = s.parked.len();
        s.parked.retain(|_, p| p.expires_at > now);
        before - s.parked.len()
    }

    pub(crate) fn expect_ack(&self, did: &str, id: &str) -> oneshot::Receiver<Ack> {
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert((did.to_owned(), id.to_owned()), tx);
        rx
    }

    pub(crate) fn forget_ack(&self, did: &str, id: &str) {
        lock(&self.pending).remove(&(did.to_owned(), id.to_owned()));
    }

    /// Resolve a pending command: here, or, in a cluster, on the node that forwarded it here.
    /// False when nobody waits for it.
    pub(crate) async fn resolve_ack(&self, did: &str, ack: Ack) -> bool {
        match self.cluster.get() {
            Some(c) if !lock(&self.pending).contains_key(&(did.to_owned(), ack.id.clone())) => {
                c.ack_back(did, &ack).await
            }
            _ => self.resolve_local_ack(did, ack),
        }
    }

    /// Resolve a command pending on this node; false when nobody here waits for it.
    pub(crate) fn resolve_local_ack(&self, did: &str, ack: Ack) -> bool {
        let waiter = lock(&self.pending).remove(&(did.to_owned(), ack.id.clone()));
        match waiter {
            Some(tx) => tx.send(ack).is_ok(),
            None => false,
        }
    }

    /// Whether anyone listens for device events (so callers can skip building them).
    pub fn has_event_subscribers(&self) -> bool {
        self.events.hub.get().is_some() || self.events.live.receiver_count() > 0
    }

    /// Whether the operator event stream runs (it takes raw publishes).
    pub fn has_event_stream(&self) -> bool {
        self.events.hub.get().is_some()
    }

    /// Publish an event: to the operator event stream without loss (waiting while its queue is
    /// full) and to live listeners.
    pub async fn publish_event(&self, ev: DeviceEvent) {
        self.events.send(ev).await;
    }

    /// The sink for events published from elsewhere (the report writer, after its commit).
    pub(crate) fn event_sink(&self) -> Arc<EventSink> {
        self.events.clone()
    }

    /// Live listeners (app WebSockets) only: a receiver that falls behind loses events. Raw
    /// publishes, changes and alarms are not sent here.
    pub fn subscribe_events(&self) -> broadcast::Receiver<DeviceEvent> {
        self.events.live.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Last(AtomicU64);

    impl TagWake for Last {
        fn wake_tag(&self, tag: u64) {
            self.0.store(tag, Ordering::SeqCst);
        }
    }

    #[test]
    fn an_idle_inbox_is_one_small_allocation() {
        // With the two reference counts of its `Arc`, an idle inbox fits the allocator's 64-byte class.
        assert!(
            std::mem::size_of::<Inbox>() <= 48,
            "{}",
            std::mem::size_of::<Inbox>()
        );
    }

    #[test]
    fn a_push_wakes_the_tagged_waiter_once_and_the_queue_is_freed_when_drained() {
        let inbox = Inbox::default();
        let last = Arc::new(Last(AtomicU64::new(0)));
        assert!(!inbox.wake_on_push(Waiter::Tagged(last.clone(), 7)));
        assert!(inbox.push(ToSession::Kick(KickReason::Revoked)));
        assert_eq!(last.0.load(Ordering::SeqCst), 7);
        // The waiter was used up: a second push wakes nobody.
        last.0.store(0, Ordering::SeqCst);
        assert!(inbox.push(ToSession::Kick(KickReason::TakenOver)));
        assert_eq!(last.0.load(Ordering::SeqCst), 0);
        // A message already waiting: registering says so instead of waiting.
        assert!(inbox.wake_on_push(Waiter::Tagged(last.clone(), 8)));
        assert!(matches!(
            inbox.try_recv(),
            Some(ToSession::Kick(KickReason::Revoked))
        ));
        assert!(inbox.try_recv().is_some());
        assert!(inbox.try_recv().is_none());
        assert!(lock(&inbox.state).queue.is_none());
    }

    #[test]
    fn a_full_inbox_refuses_publishes_but_not_kicks() {
        let inbox = Inbox::default();
        let msg = || Message {
            topic: "t".into(),
            payload: Bytes::new(),
            expires_at: None,
        };
        for _ in 0..INBOX_MAX {
            assert!(inbox.push(ToSession::Publish(msg())));
        }
        assert!(!inbox.push(ToSession::Publish(msg())));
        assert!(inbox.push(ToSession::Kick(KickReason::Revoked)));
    }
}
