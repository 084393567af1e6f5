//! The in-process bus between the HTTP edge and the MQTT edge: which session holds which device,
//! messages to a device's session, pending command acks, and a broadcast of device events.
//!
//! A later multi-node mode puts NATS behind the same API; callers never see the difference.

use bytes::Bytes;
use rampart_proto::command::Ack;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Why a session is closed from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickReason {
    /// Another connection authenticated as the same device.
    TakenOver,
    /// The device's credentials were rotated or revoked.
    Revoked,
}

/// A message to a device's session task.
#[derive(Debug)]
pub enum ToSession {
    /// Publish to the device (QoS 1).
    Publish {
        topic: String,
        payload: Bytes,
    },
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
}

struct SessionSlot {
    id: u64,
    tx: mpsc::Sender<ToSession>,
}

pub struct Bus {
    sessions: Mutex<HashMap<String, SessionSlot>>,
    pending: Mutex<HashMap<(String, String), oneshot::Sender<Ack>>>,
    events: broadcast::Sender<DeviceEvent>,
    next_id: AtomicU64,
}

impl Default for Bus {
    fn default() -> Self {
        Bus {
            sessions: Default::default(),
            pending: Default::default(),
            events: broadcast::channel(4096).0,
            next_id: AtomicU64::new(1),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Bus {
    /// Register the session now holding `did`; an older session of the same device is told to
    /// close. Returns the id to unregister with.
    pub fn attach(&self, did: &str, tx: mpsc::Sender<ToSession>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let old = lock(&self.sessions).insert(did.to_owned(), SessionSlot { id, tx });
        if let Some(old) = old {
            let _ = old.tx.try_send(ToSession::Kick(KickReason::TakenOver));
        }
        id
    }

    /// Remove the session `id` of `did`, unless a newer one has replaced it. True when removed.
    pub fn detach(&self, did: &str, id: u64) -> bool {
        let mut s = lock(&self.sessions);
        if s.get(did).is_some_and(|slot| slot.id == id) {
            s.remove(did);
            return true;
        }
        false
    }

    pub fn is_attached(&self, did: &str) -> bool {
        lock(&self.sessions).contains_key(did)
    }

    /// Close the session of `did`, if any.
    pub fn kick(&self, did: &str) {
        if let Some(slot) = lock(&self.sessions).get(did) {
            let _ = slot.tx.try_send(ToSession::Kick(KickReason::Revoked));
        }
    }

    /// Hand a message to the session holding `did`; false when none does or it is saturated.
    pub fn deliver(&self, did: &str, msg: ToSession) -> bool {
        let tx = match lock(&self.sessions).get(did) {
            Some(slot) => slot.tx.clone(),
            None => return false,
        };
        tx.try_send(msg).is_ok()
    }

    pub(crate) fn expect_ack(&self, did: &str, id: &str) -> oneshot::Receiver<Ack> {
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert((did.to_owned(), id.to_owned()), tx);
        rx
    }

    pub(crate) fn forget_ack(&self, did: &str, id: &str) {
        lock(&self.pending).remove(&(did.to_owned(), id.to_owned()));
    }

    /// Resolve a pending command; false when nobody waits for it.
    pub(crate) fn resolve_ack(&self, did: &str, ack: Ack) -> bool {
        let waiter = lock(&self.pending).remove(&(did.to_owned(), ack.id.clone()));
        match waiter {
            Some(tx) => tx.send(ack).is_ok(),
            None => false,
        }
    }

    pub fn publish_event(&self, ev: DeviceEvent) {
        let _ = self.events.send(ev);
    }

    pub fn subscribe_events(&self) -> broadcast::Receiver<DeviceEvent> {
        self.events.subscribe()
    }
}
