//! Device shadows and command records: what a device is asked to be (`desired`, versioned), what
//! it says it is (`reported`: its stored state), the difference (`delta`), and each command's
//! outcome after the request that sent it was answered.
//!
//! The desired state is kept in the store (`device_shadows`); the delta is never stored but
//! computed from desired and reported. Devices whose desired state is not empty are also held in
//! memory (desired, version and the delta's point names), so a report updates the delta and a
//! CONNECT learns what the device still has to apply without reading the store; devices with no
//! desired state cost one atomic load per report. A desired point stays desired once reported
//! (it only leaves the delta), so a later report that moves away from it brings it back.
//!
//! Nothing here speaks MQTT or HTTP; `runtime` calls in from reports, commands and acks.

use crate::device::bus::{DeviceEvent, Message};
use crate::{Core, Error, Result};
use bytes::Bytes;
use rampart_proto::model::Values;
use rampart_proto::topic;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// How long a command's record is kept after it expired.
const COMMAND_RETENTION_MS: i64 = 24 * 3_600_000;
/// Tries of a desired write that lost a compare-and-set race before giving up.
const WRITE_TRIES: usize = 8;

/// A command's outcome: `queued` (waiting in a parked session), `sent` (handed to the device's
/// session), `ok` or `error` (the device's ack; `detail` its message), `expired` (no ack before
/// `expires_at`).
#[derive(Debug, Clone, Serialize)]
pub struct CommandStatus {
    pub id: String,
    pub did: String,
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A device's shadow. `version` is 0 before the first desired write.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ShadowView {
    pub desired: Values,
    pub reported: Values,
    pub delta: Values,
    pub version: i64,
}

/// The shadows with a desired state, in memory (see the module's documentation).
#[derive(Default)]
pub(crate) struct Shadows {
    loaded: tokio::sync::OnceCell<()>,
    map: Mutex<HashMap<String, Entry>>,
    /// Entries in `map`: a report of a device with nothing desired skips the lock.
    count: AtomicUsize,
}

struct Entry {
    desired: Values,
    version: i64,
    /// The desired points whose reported value differs.
    delta: BTreeSet<String>,
}

impl Entry {
    fn delta(&self) -> Values {
        self.delta
            .iter()
            .filter_map(|k| self.desired.get(k).map(|v| (k.clone(), v.clone())))
            .collect()
    }
}

impl Shadows {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keep (non-empty desired) or forget the entry of `did`.
    fn put(&self, did: &str, desired: Values, version: i64, reported: &Values) {
        let mut map = self.lock();
        if desired.is_empty() {
            map.remove(did);
        } else {
            let delta = delta_of(&desired, reported)
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            map.insert(
                did.to_owned(),
                Entry {
                    desired,
                    version,
                    delta,
                },
            );
        }
        self.count.store(map.len(), Ordering::Release);
    }
}

/// Whether a reported value matches a desired one (numbers by value: `25` and `25.0` match).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        _ => a == b,
    }
}

/// The desired points whose reported value differs (or was never reported).
pub fn delta_of(desired: &Values, reported: &Values) -> Values {
    desired
        .iter()
        .filter(|(k, v)| reported.get(*k).is_none_or(|r| !same(r, v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `desired` with `changes` merged in: a value sets its point, `null` removes it.
fn merge(desired: &Values, changes: &Values) -> Values {
    let mut out = desired.clone();
    for (k, v) in changes {
        if v.is_null() {
            out.remove(k);
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

fn parse_object(text: &str) -> Values {
    match serde_json::from_str(text) {
        Ok(Value::Object(m)) => m,
        _ => Values::new(),
    }
}

impl Core {
    fn shadows(&self) -> &Shadows {
        &self.inner.shadows
    }

    /// Fill the in-memory shadows from the store once per process.
    async fn shadows_loaded(&self) {
        let res = self
            .shadows()
            .loaded
            .get_or_try_init(|| async {
                for row in self.store().desired_shadows().await? {
                    let reported = match self.store().get_device(&row.did).await? {
                        Some(d) => parse_object(&d.state),
                        None => continue,
                    };
                    self.shadows().put(
                        &row.did,
                        parse_object(&row.desired),
                        row.version,
                        &reported,
                    );
                }
                Ok::<(), rampart_store::StoreError>(())
            })
            .await;
        if let Err(e) = res {
            tracing::error!(error = %e, "loading device shadows failed");
        }
    }

    /// The shadow of `did`, whose reported state is `reported` (the caller read the device).
    pub async fn device_shadow(&self, did: &str, reported: Values) -> Result<ShadowView> {
        let (desired, version) = match self.store().get_shadow(did).await? {
            Some(row) => (parse_object(&row.desired), row.version),
            None => (Values::new(), 0),
        };
        Ok(ShadowView {
            delta: delta_of(&desired, &reported),
            desired,
            reported,
            version,
        })
    }

    /// Merge `changes` into the desired state of `did`: a value sets its point (validated
    /// against the product model like a command's `set`), `null` removes it. The version grows
    /// by one when anything changed; a change of the delta is announced as a `Delta` event.
    /// The caller's right to control the device is checked by the caller.
    pub async fn merge_desired(&self, did: &str, changes: &Values) -> Result<ShadowView> {
        let (row, product) = self.device_and_product(did).await?;
        let set: Values = changes
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        product.datapoints.validate(&set, true)?;
        self.shadows_loaded().await;
        for _ in 0..WRITE_TRIES {
            let (old, version) = match self.store().get_shadow(did).await? {
                Some(s) => (parse_object(&s.desired), s.version),
                None => (Values::new(), 0),
            };
            let desired = merge(&old, changes);
            if desired == old {
                let reported = parse_object(&row.state);
                return Ok(ShadowView {
                    delta: delta_of(&desired, &reported),
                    desired,
                    reported,
                    version,
                });
            }
            let text =
                serde_json::to_string(&desired).map_err(|e| Error::Internal(e.to_string()))?;
            let now = self.now_ms();
            let Some(version) = self.store().write_desired(did, &text, version, now).await? else {
                continue;
            };
            // Read after the write, so a report stored meanwhile counts.
            let reported = match self.store().get_device(did).await? {
                Some(d) => parse_object(&d.state),
                None => parse_object(&row.state),
            };
            let before = delta_of(&old, &reported);
            let delta = delta_of(&desired, &reported);
            self.shadows().put(did, desired.clone(), version, &reported);
            if delta != before {
                self.bus()
                    .publish_event(DeviceEvent::Delta {
                        did: did.to_owned(),
                        ts: now,
                        version,
                        delta: delta.clone(),
                    })
                    .await;
            }
            return Ok(ShadowView {
                desired,
                reported,
                delta,
                version,
            });
        }
        Err(Error::Conflict(
            "the desired state kept changing; try again".into(),
        ))
    }

    /// A report of `did` was accepted: the points it reports leave the delta when they match the
    /// desired value and join it when they do not. A change is announced as a `Delta` event.
    pub(crate) async fn shadow_reported(&self, did: &str, values: &Values) {
        self.shadows_loaded().await;
        if self.shadows().count.load(Ordering::Acquire) == 0 {
            return;
        }
        let changed = {
            let mut map = self.shadows().lock();
            let Some(e) = map.get_mut(did) else { return };
            let mut changed = false;
            for (k, v) in values {
                let Some(want) = e.desired.get(k) else {
                    continue;
                };
                changed |= if same(v, want) {
                    e.delta.remove(k)
                } else {
                    e.delta.insert(k.clone())
                };
            }
            changed.then(|| (e.version, e.delta()))
        };
        if let Some((version, delta)) = changed {
            self.bus()
                .publish_event(DeviceEvent::Delta {
                    did: did.to_owned(),
                    ts: self.now_ms(),
                    version,
                    delta,
                })
                .await;
        }
    }

    /// The stored state of `did` was cleared (factory reset, wipe): every desired point is in
    /// the delta again.
    pub(crate) async fn shadow_state_cleared(&self, did: &str) {
        self.shadows_loaded().await;
        match self.store().get_shadow(did).await {
            Ok(Some(row)) => {
                self.shadows()
                    .put(did, parse_object(&row.desired), row.version, &Values::new());
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, did, "device shadow not refreshed"),
        }
    }

    /// The device was erased: its desired state is gone, and so is its delta.
    pub(crate) async fn shadow_forgotten(&self, did: &str) {
        self.shadows_loaded().await;
        self.shadows().put(did, Values::new(), 0, &Values::new());
    }

    /// A device's session opened (after authentication and presence). `resumed`: the messages
    /// of its parked session, about to be handed to it: the commands among them are now sent.
    /// Answers the message telling the device its delta (`{"desired": {...}, "version": N}` on
    /// `dev/{did}/down`), when the delta is not empty.
    pub async fn device_opened(&self, did: &str, resumed: &[Message]) -> Option<Message> {
        #[derive(serde::Deserialize)]
        struct Id {
            id: String,
        }
        let down = topic::down(did);
        for m in resumed.iter().filter(|m| m.topic == down) {
            if let Ok(c) = serde_json::from_slice::<Id>(&m.payload) {
                self.command_moved(did, &c.id, Some("sent"), None).await;
            }
        }
        self.shadows_loaded().await;
        if self.shadows().count.load(Ordering::Acquire) == 0 {
            return None;
        }
        let (version, delta) = {
            let map = self.shadows().lock();
            let e = map.get(did).filter(|e| !e.delta.is_empty())?;
            (e.version, e.delta())
        };
        let payload = serde_json::json!({"desired": delta, "version": version});
        Some(Message {
            topic: topic::down(did),
            payload: Bytes::from(payload.to_string()),
            expires_at: None,
        })
    }

    /// The record of command `id` sent to `did` (`NotFound("command")` for an unknown id or
    /// another device's). The caller's right to read the device is checked by the caller.
    pub async fn command_status(&self, did: &str, id: &str) -> Result<CommandStatus> {
        let row = self
            .store()
            .get_command(did, id)
            .await?
            .ok_or(Error::NotFound("command"))?;
        let open = row.status == "queued" || row.status == "sent";
        let status = if open && self.now_ms() >= row.expires_at {
            "expired".to_owned()
        } else {
            row.status
        };
        Ok(CommandStatus {
            id: row.id,
            did: row.did,
            status,
            created_at: row.created_at,
            updated_at: row.updated_at,
            expires_at: row.expires_at,
            detail: row.detail,
        })
    }

    /// Record a command as queued before it is handed to the bus (so an ack can never arrive
    /// before its record). A failed write is logged; the command still goes out.
    pub(crate) async fn record_command(&self, did: &str, id: &str, now: i64, expires_at: i64) {
        let row = rampart_store::CommandRow {
            did: did.to_owned(),
            id: id.to_owned(),
            created_at: now,
            updated_at: now,
            status: "queued".into(),
            expires_at,
            detail: None,
        };
        let purge_before = now.saturating_sub(COMMAND_RETENTION_MS);
        if let Err(e) = self.store().insert_command(&row, purge_before).await {
            tracing::error!(error = %e, did, id, "command not recorded");
        }
    }

    /// Move a recorded command forward: `sent` from `queued`; `ok`/`error` from either; `None`
    /// deletes it (it reached no session).
    pub(crate) async fn command_moved(
        &self,
        did: &str,
        id: &str,
        to: Option<&str>,
        detail: Option<&str>,
    ) {
        let res = match to {
            Some("sent") => self
                .store()
                .move_command(did, id, &["queued"], "sent", None, self.now_ms())
                .await
                .map(drop),
            Some(to) => self
                .store()
                .move_command(did, id, &["queued", "sent"], to, detail, self.now_ms())
                .await
                .map(drop),
            None => self.store().delete_command(did, id).await,
        };
        if let Err(e) = res {
            tracing::error!(error = %e, did, id, "command record not updated");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Values {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_delta_is_what_reported_lacks() {
        let desired = obj(json!({"power": true, "level": 25, "mode": "eco"}));
        let reported = obj(json!({"power": true, "level": 25.0, "mode": "boost", "temp": 20}));
        assert_eq!(delta_of(&desired, &reported), obj(json!({"mode": "eco"})));
        assert_eq!(
            delta_of(&desired, &Values::new()),
            desired,
            "never reported"
        );
    }

    #[test]
    fn a_merge_sets_and_null_removes() {
        let desired = obj(json!({"power": true, "level": 25}));
        assert_eq!(
            merge(
                &desired,
                &obj(json!({"level": null, "mode": "eco", "gone": null}))
            ),
            obj(json!({"power": true, "mode": "eco"}))
        );
    }

    #[test]
    fn reports_move_points_in_and_out_of_the_delta() {
        let s = Shadows::default();
        s.put(
            "d1",
            obj(json!({"power": true, "level": 3})),
            4,
            &obj(json!({"power": false, "level": 3})),
        );
        let map = s.lock();
        let e = map.get("d1").unwrap();
        assert_eq!(e.delta(), obj(json!({"power": true})));
        assert_eq!(e.version, 4);
        drop(map);
        s.put("d1", Values::new(), 5, &Values::new());
        assert!(s.lock().is_empty());
        assert_eq!(s.count.load(Ordering::Acquire), 0);
    }
}
