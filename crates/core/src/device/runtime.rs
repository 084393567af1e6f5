//! Devices at run time: CONNECT authentication, presence, validated reports, commands and acks.

use crate::access::tenancy::{Act, Caller};
use crate::audit::action;
use crate::audit::{Actor, AuditEvent};
use crate::auth_refusal::{self, RefusalReason};
use crate::device::bus::{Delivery, DeviceEvent, Message};
use crate::device::products::ProductInfo;
use crate::secret::random_hex;
use crate::secret::Place;
use crate::{Core, Error, Result};
use bytes::Bytes;
use rampart_proto::command::{Ack, AckStatus, Action, Command};
use rampart_proto::ids::Did;
use rampart_proto::model::{ModelError, Values};
use rampart_proto::{sign, topic};
use rampart_store::at_rest as col;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An authenticated device connection's identity: shared, small, never copied per message.
#[derive(Debug, Clone)]
pub struct DeviceAuth {
    pub did: Did,
    pub product: Arc<ProductInfo>,
}

/// Why a CONNECT was refused; each edge maps it to its protocol's code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectRefusal {
    /// Malformed username, unknown device, stale timestamp, replay or wrong signature.
    BadCredentials,
    /// Valid credentials, but this identity may not connect (client id mismatch, product gone).
    NotAuthorized,
    /// A connect limit of the device (`connect_limits`): its reconnect-storm ban, decided before
    /// any authentication work, or its connect rates, counted for authenticated attempts only.
    Limited(Box<crate::limits::api::Refusal>),
}

/// The last accepted CONNECT timestamp per device, for the moments before the store has it.
///
/// A signed CONNECT must carry a `ts` greater than the last one accepted for its device. The
/// lasting record is the device's `connect_ts` column, read with the credentials and written by
/// the group-commit writer without the CONNECT waiting for it; this guard covers the time in
/// between (a replay, or a second CONNECT, arriving before the write lands).
///
/// A device is kept as one 64-bit keyed hash of its id (SipHash with this process's random keys)
/// and its last `ts`: 16 bytes an entry, which matters with a million devices connecting within
/// one window. Two devices sharing a hash would only make one's CONNECT with an older `ts` than
/// the other's look like a replay (the device retries with a new timestamp); with keys an attacker
/// cannot know, that is a 2^-64 event per pair.
///
/// Entries are not expired one by one: they live in two generations, the current one and the one
/// before, and every `2 × window` the older generation is dropped whole. An entry is therefore
/// kept for at least `2 × window` after it was accepted, far longer than its store write takes.
#[derive(Default)]
pub(crate) struct ReplayGuard {
    inner: Mutex<ReplayState>,
    keys: std::collections::hash_map::RandomState,
}

#[derive(Default)]
struct ReplayState {
    current: HashMap<u64, i64>,
    previous: HashMap<u64, i64>,
    /// When `current` was started.
    since: i64,
}

impl ReplayGuard {
    /// [`ReplayGuard::accept`], then, in a cluster, the same rule on every node: the timestamp
    /// must be newer than any accepted for the device on any node. A cluster that cannot be
    /// asked refuses the CONNECT (the device retries), never lets a replay through.
    async fn accept_anywhere(
        &self,
        cluster: Option<&Arc<crate::cluster::Cluster>>,
        did: &str,
        ts: i64,
        stored: i64,
        now: i64,
        window: i64,
    ) -> bool {
        if !self.accept(did, ts, stored, now, window) {
            return false;
        }
        let Some(c) = cluster else { return true };
        match c.accept_connect(did, ts).await {
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::error!(error = %e, did, "the cluster's replay guard did not answer");
                false
            }
        }
    }

    /// Accept `ts` for `did` if it is greater than `stored` (the device's `connect_ts` as read
    /// with its credentials) and than any timestamp this guard accepted for it; remember it.
    fn accept(&self, did: &str, ts: i64, stored: i64, now: i64, window: i64) -> bool {
        use std::hash::BuildHasher;
        if ts <= stored {
            return false;
        }
        let key = self.keys.hash_one(did);
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let st = &mut *g;
        let age = now.saturating_sub(st.since);
        if age >= window.saturating_mul(2) {
            st.previous = if age >= window.saturating_mul(4) {
                HashMap::new()
            } else {
                std::mem::take(&mut st.current)
            };
            st.current = HashMap::new();
            st.since = now;
        }
        let last = st
            .current
            .get(&key)
            .into_iter()
            .chain(st.previous.get(&key))
            .copied()
            .max();
        if last.is_some_and(|l| ts <= l) {
            return false;
        }
        st.current.insert(key, ts);
        true
    }
}

#[derive(Debug, Serialize)]
pub struct DeviceView {
    pub did: String,
    pub product_key: String,
    pub hardware_id: String,
    pub online: bool,
    pub last_seen: Option<i64>,
    pub created_at: i64,
    pub state: serde_json::Value,
}

impl From<rampart_store::DeviceRow> for DeviceView {
    fn from(row: rampart_store::DeviceRow) -> DeviceView {
        DeviceView {
            state: serde_json::from_str(&row.state).unwrap_or_default(),
            did: row.did,
            product_key: row.product_key,
            hardware_id: row.hardware_id,
            online: row.online,
            last_seen: row.last_seen,
            created_at: row.created_at,
        }
    }
}

/// A device in a list: what [`DeviceView`] says but its state, which a list never shows (so a
/// page of devices parses no state JSON).
#[derive(Debug)]
pub struct DeviceEntry {
    pub did: String,
    pub product_key: String,
    pub hardware_id: String,
    pub online: bool,
    pub last_seen: Option<i64>,
    pub created_at: i64,
}

impl From<rampart_store::DeviceRow> for DeviceEntry {
    fn from(row: rampart_store::DeviceRow) -> DeviceEntry {
        DeviceEntry {
            did: row.did,
            product_key: row.product_key,
            hardware_id: row.hardware_id,
            online: row.online,
            last_seen: row.last_seen,
            created_at: row.created_at,
        }
    }
}

/// A command as the API accepts it: exactly one of `set` or `action`. With `desired`, a `set`
/// is also merged into the device's desired state (`shadow`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    #[serde(default)]
    pub set: Option<Values>,
    #[serde(default)]
    pub action: Option<Action>,
    #[serde(default)]
    pub desired: bool,
}

/// The result of a command.
#[derive(Debug)]
pub enum CommandOutcome {
    /// The device answered.
    Acked(Ack),
    /// The device is offline with a persistent session; the command waits in it.
    Queued { id: String },
    /// A `desired` command for a device with no session: nothing was sent, the desired state
    /// (now at `version`) reaches the device when it connects.
    Desired { version: i64 },
}

/// A passthrough message handed to a device's session: its size and SHA-256 (lowercase hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RawSent {
    pub bytes: usize,
    pub sha256: String,
}

#[derive(Debug, Serialize)]
pub struct HistoryPoint {
    pub ts: i64,
    pub point: String,
    pub value: serde_json::Value,
}

/// A CONNECT's credentials, in the form its user name announces.
#[derive(Debug, Clone, Copy)]
enum Credential<'a> {
    /// `did|hmac-sha256|ts`; the password is the hex HMAC-SHA256 of `did={did}&ts={ts}` under
    /// the device secret, single-use.
    Signed { did: &'a str, ts: i64 },
    /// The device id alone; the password is the device secret itself (products with
    /// `identity.static_password`, TLS listeners only).
    Static { did: &'a str },
}

impl<'a> Credential<'a> {
    fn parse(username: &'a str) -> Option<Credential<'a>> {
        if let Some((did, ts)) = sign::parse_connect_username(username) {
            return Some(Credential::Signed { did, ts });
        }
        (!username.contains('|')).then_some(Credential::Static { did: username })
    }

    fn did(&self) -> &'a str {
        match *self {
            Credential::Signed { did, .. } | Credential::Static { did } => did,
        }
    }
}

/// One check of a credential as [`Core::explain_credential`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckStep {
    /// What was checked, e.g. `signature`.
    pub check: &'static str,
    /// What was found: a note when it passed, the reason when it failed (the last step).
    pub outcome: std::result::Result<String, RefusalReason>,
}

/// How `authenticate_inner` runs: for a live CONNECT (it records the accepted timestamp), or
/// as a dry run that changes nothing and notes each check.
enum Run<'a> {
    Live,
    Explain(&'a mut Vec<CheckStep>),
}

impl Run<'_> {
    fn passed(&mut self, check: &'static str, note: impl FnOnce() -> String) {
        if let Run::Explain(steps) = self {
            steps.push(CheckStep {
                check,
                outcome: Ok(note()),
            });
        }
    }
}

impl Core {
    /// A device's row and its product; `NotFound` for an unknown device.
    pub(crate) async fn device_and_product(
        &self,
        did: &str,
    ) -> Result<(rampart_store::DeviceRow, Arc<ProductInfo>)> {
        let row = self
            .store()
            .get_device(did)
            .await?
            .ok_or(Error::NotFound("device"))?;
        let product = self.product(&row.product_key).await?;
        Ok((row, product))
    }

    /// Check an MQTT CONNECT's client id, username and password. `listener` names the listener
    /// it arrived on (for the operator's log and the refusal count), `tls` whether it speaks TLS.
    pub async fn authenticate_device(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&[u8]>,
        source_ip: &str,
        listener: &'static str,
        tls: bool,
    ) -> std::result::Result<DeviceAuth, ConnectRefusal> {
        let cred = username.and_then(Credential::parse);
        let limits = self.connect_limits();
        // The identity the CONNECT claims, for a refusal's log line and audit entry only.
        let claimed = || -> String {
            username
                .and_then(|u| u.split('|').next())
                .unwrap_or(client_id)
                .chars()
                .take(64)
                .collect()
        };
        // A device banned for a reconnect storm is refused first: no store read, no audit row.
        if let Some(c) = cred {
            if let Err(r) = limits.check_banned(c.did(), self.now_ms()) {
                let why = RefusalReason::Limit(r.state.name);
                auth_refusal::record(listener, &why, &claimed(), Some(source_ip));
                return Err(ConnectRefusal::Limited(Box::new(r)));
            }
        }
        let res = self
            .authenticate_inner(client_id, cred, password, tls, Run::Live)
            .await;
        if let Err((refusal, why)) = &res {
            self.connect_refused(listener, refusal, why, &claimed(), source_ip)
                .await;
        }
        let dev = res.map_err(|(r, _)| r)?;
        // The device's connect rates (and the storm rule) count authenticated attempts only, so
        // nobody can use up or ban another's device with wrong passwords.
        if let Err(r) = limits.admit_device(dev.did.as_str(), self.now_ms()) {
            let why = RefusalReason::Limit(r.state.name);
            auth_refusal::record(listener, &why, &claimed(), Some(source_ip));
            return Err(ConnectRefusal::Limited(Box::new(r)));
        }
        Ok(dev)
    }

    /// Authenticate a device's HTTPS request by the same credential as its CONNECT (user name
    /// `did|hmac-sha256|ts`, password the signature; or a static password where the product
    /// allows it), with the same checks and the same fresh-timestamp rule, but outside the MQTT
    /// connect rates: a resumed download is several requests, not a reconnect storm. Refusals
    /// are logged, counted and audited as CONNECT refusals of the listener `https`.
    pub async fn authenticate_device_request(
        &self,
        username: &str,
        password: &str,
        source_ip: &str,
    ) -> std::result::Result<DeviceAuth, ConnectRefusal> {
        let cred = Credential::parse(username);
        let client_id = cred.map(|c| c.did()).unwrap_or("");
        let res = self
            .authenticate_inner(client_id, cred, Some(password.as_bytes()), true, Run::Live)
            .await;
        match res {
            Ok(dev) => Ok(dev),
            Err((refusal, why)) => {
                let claimed: String = username
                    .split('|')
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(64)
                    .collect();
                self.connect_refused("https", &refusal, &why, &claimed, source_ip)
                    .await;
                Err(refusal)
            }
        }
    }

    /// A refused CONNECT: logged and counted (`auth_refusal`), and audited, at most
    /// `mqtt.limits.refusal_audit_per_ip` entries per address (the next entry names the
    /// refusals left out).
    pub(crate) async fn connect_refused(
        &self,
        listener: &'static str,
        refusal: &ConnectRefusal,
        why: &RefusalReason,
        claimed: &str,
        source_ip: &str,
    ) {
        auth_refusal::record(listener, why, claimed, Some(source_ip));
        let ip = source_ip.parse::<std::net::IpAddr>().ok();
        if let Some(left_out) = self.connect_limits().audit_refusal(ip, self.now_ms()) {
            let mut ev = AuditEvent::new(
                &Actor::device_candidate(claimed),
                action::DEVICE_CONNECT,
                &format!("refused: {refusal:?}"),
            )
            .source_ip(source_ip)
            .detail(format!("reason={}", why.label()));
            if left_out > 0 {
                ev = ev.detail(format!(
                    "reason={}; {left_out} more refused from this address since its last entry",
                    why.label()
                ));
            }
            self.audit(ev).await;
        }
    }

    /// Which check a CONNECT with these credentials would fail, changing nothing (no timestamp
    /// is recorded, no limit counted, no audit entry): the checks that passed, with what they
    /// found, then the one that failed. `client_id` defaults to the device id; `tls`: whether
    /// the CONNECT would come over TLS. For `rampart device explain`.
    pub async fn explain_credential(
        &self,
        client_id: Option<&str>,
        username: &str,
        password: &str,
        tls: bool,
    ) -> Vec<CheckStep> {
        let cred = Credential::parse(username);
        let client_id = client_id.or(cred.map(|c| c.did())).unwrap_or_default();
        let mut steps = Vec::new();
        let res = self
            .authenticate_inner(
                client_id,
                cred,
                Some(password.as_bytes()),
                tls,
                Run::Explain(&mut steps),
            )
            .await;
        if let Err((_, why)) = res {
            steps.push(CheckStep {
                check: match why {
                    RefusalReason::Malformed(_) => "form",
                    RefusalReason::ClockSkew { .. } => "clock window",
                    RefusalReason::Unknown(_) | RefusalReason::Internal => "device",
                    RefusalReason::WrongSignature | RefusalReason::WrongSecret => "proof",
                    RefusalReason::StaticPasswordOff(_) => "static password",
                    RefusalReason::Replayed => "fresh timestamp",
                    RefusalReason::ClientIdMismatch => "client id",
                    _ => "standing",
                },
                outcome: Err(why),
            });
        }
        steps
    }

    /// The checks of a CONNECT, in order. A refusal carries the answer for the device and the
    /// reason for the operator. `Run::Explain` notes each check and changes nothing.
    async fn authenticate_inner(
        &self,
        client_id: &str,
        cred: Option<Credential<'_>>,
        password: Option<&[u8]>,
        tls: bool,
        mut run: Run<'_>,
    ) -> std::result::Result<DeviceAuth, (ConnectRefusal, RefusalReason)> {
        use ConnectRefusal::*;
        let bad = |why| (BadCredentials, why);
        let cred = cred.ok_or_else(|| {
            bad(RefusalReason::Malformed(
                "user name is neither `did|hmac-sha256|ts` nor a device id",
            ))
        })?;
        let did = Did::parse(cred.did()).map_err(|_| bad(RefusalReason::Malformed("device id")))?;
        let password = password
            .and_then(|p| std::str::from_utf8(p).ok())
            .ok_or_else(|| bad(RefusalReason::Malformed("no password")))?;
        run.passed("form", || match cred {
            Credential::Signed { ts, .. } => format!("signed password, device {did}, ts {ts}"),
            Credential::Static { .. } => format!("static password, device {did}"),
        });
        let now = self.now_ms();
        let window = self.config().clock_window_ms;
        if let Credential::Signed { ts, .. } = cred {
            if let Some(skew) = RefusalReason::clock(ts, now, window) {
                return Err(bad(skew));
            }
            run.passed("clock window", || {
                format!(
                    "{} ms from the server's clock (window ±{} s)",
                    now - ts,
                    window / 1000
                )
            });
        }
        let row = match self.credential_lookups().get(did.as_str()).await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(bad(RefusalReason::Unknown("device"))),
            Err(e) => {
                tracing::error!(error = %e, "device lookup failed");
                return Err(bad(RefusalReason::Internal));
            }
        };
        run.passed("device", || format!("product {}", row.product_key));
        let secret = self
            .key()
            .open_string(
                Place::new(col::DEVICE_SECRET, did.as_str()),
                &row.secret_enc,
            )
            .map_err(|_| bad(RefusalReason::Internal))?;
        match cred {
            Credential::Signed { ts, .. } => {
                if !sign::verify_hex(
                    secret.expose().as_bytes(),
                    &sign::connect_string(did.as_str(), ts),
                    password,
                ) {
                    return Err(bad(RefusalReason::WrongSignature));
                }
                run.passed("proof", || "signature made with the device secret".into());
            }
            Credential::Static { .. } => {
                let same: bool =
                    subtle::ConstantTimeEq::ct_eq(secret.expose().as_bytes(), password.as_bytes())
                        .into();
                if !same {
                    return Err(bad(RefusalReason::WrongSecret));
                }
                run.passed("proof", || "the device secret".into());
            }
        }
        let product = self.product(&row.product_key).await.map_err(|_| {
            (
                NotAuthorized,
                RefusalReason::NotAllowed("the device's product is gone"),
            )
        })?;
        // Whether the product allows static passwords is told only to a caller that proved the
        // secret.
        if let Credential::Static { .. } = cred {
            if !product.identity.static_password {
                return Err((
                    NotAuthorized,
                    RefusalReason::StaticPasswordOff("the product does not allow it"),
                ));
            }
            if !tls {
                return Err((
                    NotAuthorized,
                    RefusalReason::StaticPasswordOff("accepted on TLS listeners only"),
                ));
            }
            run.passed("static password", || {
                "allowed by the product, over TLS".into()
            });
        }
        // Only the device itself (it proved its secret) learns that it is disabled.
        if row.disabled {
            return Err((
                NotAuthorized,
                RefusalReason::NotAllowed("the device is disabled"),
            ));
        }
        if let Credential::Signed { ts, .. } = cred {
            match &mut run {
                Run::Live => {
                    if !self
                        .inner
                        .replay
                        .accept_anywhere(
                            self.cluster(),
                            did.as_str(),
                            ts,
                            row.connect_ts,
                            now,
                            window,
                        )
                        .await
                    {
                        return Err(bad(RefusalReason::Replayed));
                    }
                    // Kept with the device, so the rule holds across restarts; the CONNECT
                    // does not wait.
                    let accepted = rampart_store::ConnectRow {
                        did: did.as_str().to_owned(),
                        ts,
                    };
                    if let Err(e) = self.writer().connect_ts(accepted).await {
                        tracing::error!(error = %e, did = did.as_str(), "connect timestamp not queued");
                    }
                }
                Run::Explain(_) => {
                    if ts <= row.connect_ts {
                        return Err(bad(RefusalReason::Replayed));
                    }
                    run.passed("fresh timestamp", || {
                        format!("newer than the last accepted ({})", row.connect_ts)
                    });
                }
            }
        }
        if client_id != did.as_str() {
            return Err((NotAuthorized, RefusalReason::ClientIdMismatch));
        }
        run.passed("client id", || "the device id".into());
        Ok(DeviceAuth { did, product })
    }

    /// Disable (`on`) or enable a device. A disabled device is refused at CONNECT (not
    /// authorised) and its live session, on this node, is closed at once (DISCONNECT `0x98`);
    /// its secret, bindings and history stay. Audited (`device.disable`, `device.enable`). The
    /// caller's right to manage the device is checked by the caller.
    pub async fn set_device_disabled(
        &self,
        did: &str,
        on: bool,
        actor: &crate::audit::Actor,
        source_ip: Option<String>,
    ) -> Result<()> {
        if !self.store().set_device_disabled(did, on).await? {
            return Err(crate::Error::NotFound("device"));
        }
        if on {
            self.bus().kick(did);
        }
        let tenant = match self.store().get_device(did).await? {
            Some(d) => self.product_tenant(&d.product_key).await,
            None => None,
        };
        let action = if on {
            action::DEVICE_DISABLE
        } else {
            action::DEVICE_ENABLE
        };
        let mut ev = crate::audit::AuditEvent::new(actor, action, "ok")
            .target(format!("device:{did}"))
            .tenant_opt(tenant);
        if let Some(ip) = source_ip {
            ev = ev.source_ip(ip);
        }
        self.audit(ev).await;
        Ok(())
    }

    /// Record presence (group-committed with other presence changes and reports) and announce it
    /// once stored. Returns after the commit, so a read that follows sees it.
    pub async fn set_presence(&self, did: &str, online: bool, reason: &str) {
        let ts = self.now_ms();
        metrics::gauge!(crate::telemetry::DEVICES_ONLINE).increment(if online {
            1.0
        } else {
            -1.0
        });
        if let Some(c) = self.cluster() {
            let res = if online {
                c.claim(did).await.map(|()| true)
            } else {
                c.release(did).await
            };
            match res {
                // Another node holds the device now: its presence stands.
                Ok(false) => return,
                Ok(true) => {}
                Err(e) => {
                    tracing::warn!(error = %e, did, online, "presence not shared with the cluster")
                }
            }
        }
        let event = if online {
            DeviceEvent::Online {
                did: did.to_owned(),
                ts,
            }
        } else {
            DeviceEvent::Offline {
                did: did.to_owned(),
                ts,
                reason: reason.to_owned(),
            }
        };
        let row = rampart_store::PresenceRow {
            did: did.to_owned(),
            online,
            ts,
        };
        let res = match self.writer().presence(row, event).await {
            Ok(receipt) => receipt.committed().await,
            Err(e) => Err(e),
        };
        if let Err(e) = res {
            tracing::error!(error = %e, did, online, "presence write failed");
        }
    }

    /// Validate a report against the product model and store it (latest state and history).
    /// With `durable`, return only once the report is committed (for a QoS 1/2 acknowledgement).
    pub async fn ingest_report(
        &self,
        dev: &DeviceAuth,
        payload: &[u8],
        durable: bool,
    ) -> Result<()> {
        self.submit_report(dev, payload, durable)
            .await?
            .committed()
            .await
            .map_err(Error::Internal)
    }

    /// Validate a report and queue it for the group-commit writer without waiting for the commit:
    /// a session can go on reading while its earlier reports are written, and acknowledge each
    /// when its receipt resolves (receipts resolve in submission order). The report's event is
    /// published after the commit.
    pub async fn submit_report(
        &self,
        dev: &DeviceAuth,
        payload: &[u8],
        durable: bool,
    ) -> Result<crate::ReportReceipt> {
        let values = match dev.product.datapoints.parse_report(payload) {
            Ok(v) => v,
            Err(e) => {
                metrics::counter!(crate::telemetry::REPORTS_INVALID).increment(1);
                return Err(e.into());
            }
        };
        let did = dev.did.as_str();
        let ts = self.now_ms();
        // The event copy is made only when someone listens for events.
        let event = self
            .bus()
            .has_event_subscribers()
            .then(|| DeviceEvent::Report {
                did: did.to_owned(),
                ts,
                values: values.clone(),
            });
        // Compared with the previous state (by the writer) only for products a subscription
        // group asked for changes or alarms of.
        let track = (event.is_some() && self.bus().event_sink().tracks(&dev.product.product_key))
            .then(|| dev.product.clone());
        self.shadow_reported(did, &values).await;
        let row = rampart_store::ReportRow {
            did: did.to_owned(),
            ts,
            values,
        };
        self.writer()
            .submit(row, event, track, durable)
            .await
            .map_err(Error::Internal)
    }

    /// A passthrough publish on `dev/{did}/raw`: at most [`topic::RAW_MAX`] bytes (else refused
    /// as an invalid payload), not stored, handed to the operator event stream as base64
    /// (`device_status_raw`) when it runs.
    pub async fn ingest_raw(&self, dev: &DeviceAuth, payload: &[u8]) -> Result<()> {
        if payload.len() > topic::RAW_MAX {
            return Err(Error::Model(ModelError::RawTooLarge(topic::RAW_MAX)));
        }
        if self.bus().has_event_stream() {
            use base64::Engine as _;
            self.bus()
                .publish_event(DeviceEvent::Raw {
                    did: dev.did.as_str().to_owned(),
                    ts: self.now_ms(),
                    payload: base64::engine::general_purpose::STANDARD.encode(payload),
                })
                .await;
        }
        Ok(())
    }

    /// Passthrough to a device: `payload` (at most [`topic::RAW_MAX`] bytes, else `TooLarge`)
    /// handed unchanged to the device's live session, which publishes it on
    /// `dev/{did}/raw/down` at QoS 1 if the device subscribes to it. Not stored, not queued for
    /// an offline device (`Offline`). Audited (`device.raw`) with its size and SHA-256, never
    /// its bytes. The caller's right to control the device is checked by the edge.
    pub async fn send_raw(
        &self,
        did: &str,
        payload: Bytes,
        actor: &Actor,
        source_ip: Option<String>,
    ) -> Result<RawSent> {
        use sha2::Digest as _;
        if payload.len() > topic::RAW_MAX {
            return Err(Error::TooLarge(format!(
                "a passthrough message may hold at most {} bytes",
                topic::RAW_MAX
            )));
        }
        let (_, product) = self.device_and_product(did).await?;
        let sent = RawSent {
            bytes: payload.len(),
            sha256: hex::encode(sha2::Sha256::digest(&payload)),
        };
        let msg = Message {
            topic: topic::raw_down(did),
            payload,
            expires_at: None,
        };
        let delivered = self.bus().deliver_live(did, msg);
        let mut ev = AuditEvent::new(
            actor,
            action::DEVICE_RAW,
            if delivered { "sent" } else { "offline" },
        )
        .target(format!("device:{did}"))
        .detail(format!("bytes={} sha256={}", sent.bytes, sent.sha256))
        .tenant_opt(product.enterprise_id.clone());
        if let Some(ip) = source_ip {
            ev = ev.source_ip(ip);
        }
        self.audit(ev).await;
        if !delivered {
            return Err(Error::Offline);
        }
        Ok(sent)
    }

    /// A device acknowledged a command.
    pub async fn ingest_ack(&self, dev: &DeviceAuth, payload: &[u8]) -> Result<()> {
        let ack = Ack::parse(payload).ok_or_else(|| {
            Error::Model(ModelError::Payload(
                "ack must be {\"id\",\"status\":\"ok\"|\"error\"}".into(),
            ))
        })?;
        let did = dev.did.as_str();
        // Recorded before the waiter hears of it, so a lookup after the answer sees it.
        let status = match ack.status {
            AckStatus::Ok => "ok",
            AckStatus::Error => "error",
        };
        self.command_moved(did, &ack.id, Some(status), ack.message.as_deref())
            .await;
        self.bus()
            .publish_event(DeviceEvent::Ack {
                did: did.to_owned(),
                ts: self.now_ms(),
                id: ack.id.clone(),
                status: match ack.status {
                    AckStatus::Ok => "ok".into(),
                    AckStatus::Error => "error".into(),
                },
            })
            .await;
        self.bus().resolve_ack(did, ack).await;
        Ok(())
    }

    /// Every device, and those online now: the operator's fleet at a glance.
    pub async fn fleet_counts(&self) -> Result<(i64, i64)> {
        Ok(self.store().count_devices_online().await?)
    }

    /// One page of the devices a manufacturer-side caller may see, oldest first, and the total:
    /// the operator any product's (or every device), a developer those of one product they may
    /// read, or with no product named, those of every product they may read. With `search`, only
    /// those whose did or hardware id starts with it (ASCII case ignored); the total counts those.
    pub async fn list_devices_for(
        &self,
        caller: &Caller,
        product_key: Option<&str>,
        search: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<DeviceEntry>, i64)> {
        let (rows, total) = match (caller, product_key) {
            (Caller::Developer(id), None) => {
                self.store()
                    .list_developer_devices(id, search, offset, limit)
                    .await?
            }
            (_, pk) => {
                if let (Caller::Developer(_), Some(pk)) = (caller, pk) {
                    self.authorize_product(caller, pk, Act::Read).await?;
                }
                self.store().list_devices(pk, search, offset, limit).await?
            }
        };
        Ok((rows.into_iter().map(DeviceEntry::from).collect(), total))
    }

    pub async fn device_view(&self, did: &str) -> Result<DeviceView> {
        let row = self
            .store()
            .get_device(did)
            .await?
            .ok_or(Error::NotFound("device"))?;
        let mut view = DeviceView::from(row);
        // In a cluster the stored flag may belong to a node that died: the cluster says.
        if let Some(c) = self.cluster() {
            match c.holder(did).await {
                Ok(holder) => view.online = holder.is_some(),
                Err(e) => tracing::warn!(error = %e, did, "presence not read from the cluster"),
            }
        }
        Ok(view)
    }

    pub async fn device_history(
        &self,
        did: &str,
        point: Option<&str>,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<HistoryPoint>> {
        self.store()
            .get_device(did)
            .await?
            .ok_or(Error::NotFound("device"))?;
        let rows = self.store().history(did, point, from, to, limit).await?;
        Ok(rows
            .into_iter()
            .map(|r| HistoryPoint {
                value: serde_json::from_str(&r.value).unwrap_or(serde_json::Value::Null),
                ts: r.ts,
                point: r.point,
            })
            .collect())
    }

    /// Send a command to a connected device and wait for its ack.
    pub async fn send_command(
        &self,
        did: &str,
        req: CommandRequest,
        actor: &Actor,
        source_ip: Option<String>,
    ) -> Result<CommandOutcome> {
        let (_, product) = self.device_and_product(did).await?;
        if req.desired && req.set.is_none() {
            return Err(Error::Invalid("`desired` needs `set`".into()));
        }
        match (&req.set, req.action) {
            (Some(set), None) => {
                if set.is_empty() {
                    return Err(Error::Invalid("`set` needs at least one data point".into()));
                }
                product.datapoints.validate(set, true)?;
            }
            (None, Some(_)) => {}
            _ => {
                return Err(Error::Invalid(
                    "give exactly one of `set` or `action`".into(),
                ))
            }
        }
        let desired = match (&req.set, req.desired) {
            (Some(set), true) => Some(self.merge_desired(did, set).await?.version),
            _ => None,
        };
        let now = self.now_ms();
        let cmd = Command {
            id: random_hex(8),
            set: req.set,
            action: req.action,
        };
        let payload = serde_json::to_vec(&cmd).map_err(|e| Error::Internal(e.to_string()))?;
        let expires_at = now.saturating_add(self.config().command_ttl_ms);
        self.record_command(did, &cmd.id, now, expires_at).await;
        let waiter = self.bus().expect_ack(did, &cmd.id);
        let msg = Message {
            topic: topic::down(did),
            payload: Bytes::from(payload),
            expires_at: Some(expires_at),
        };
        let delivery = self.bus().deliver_anywhere(did, &cmd.id, msg, now).await;
        match delivery {
            Delivery::Sent => self.command_moved(did, &cmd.id, Some("sent"), None).await,
            Delivery::Queued => {}
            Delivery::NotDelivered => self.command_moved(did, &cmd.id, None, None).await,
        }
        let mut ev = AuditEvent::new(
            actor,
            action::DEVICE_COMMAND,
            match delivery {
                Delivery::Sent => "sent",
                Delivery::Queued => "queued",
                Delivery::NotDelivered => "offline",
            },
        )
        .target(format!("device:{did}"))
        .detail(match cmd.action {
            Some(a) => format!("id={} action={a:?}", cmd.id),
            None => format!("id={} set", cmd.id),
        });
        if let Some(ip) = source_ip {
            ev = ev.source_ip(ip);
        }
        self.audit(ev.tenant_opt(product.enterprise_id.clone()))
            .await;
        match delivery {
            Delivery::Sent => {}
            Delivery::Queued => {
                self.bus().forget_ack(did, &cmd.id);
                return Ok(CommandOutcome::Queued { id: cmd.id });
            }
            Delivery::NotDelivered => {
                self.bus().forget_ack(did, &cmd.id);
                return match desired {
                    Some(version) => Ok(CommandOutcome::Desired { version }),
                    None => Err(Error::Offline),
                };
            }
        }
        let timeout = self.config().command_timeout_ms;
        let ack = match tokio::time::timeout(Duration::from_millis(timeout), waiter).await {
            Ok(Ok(ack)) => ack,
            Ok(Err(_)) => return Err(Error::Offline),
            Err(_) => {
                self.bus().forget_ack(did, &cmd.id);
                return Err(Error::Timeout(timeout));
            }
        };
        if ack.status == AckStatus::Ok {
            match cmd.action {
                Some(Action::FactoryReset) => {
                    self.store().clear_device_data(did, false).await?;
                    self.bus().event_sink().state_cleared(did);
                    self.shadow_state_cleared(did).await;
                    // A reset device belongs to nobody: the next owner binds with the passcode.
                    self.unbind_everyone(did, actor, "factory reset").await?;
                }
                Some(Action::Wipe) => {
                    self.store().clear_device_data(did, true).await?;
                    self.bus().event_sink().state_cleared(did);
                    self.shadow_state_cleared(did).await;
                }
                _ => {}
            }
        }
        Ok(CommandOutcome::Acked(ack))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::bus::Inbox;
    use std::sync::Arc;

    #[test]
    fn connect_timestamps_only_move_forward() {
        let g = ReplayGuard::default();
        assert!(g.accept("d", 100, 0, 100, 50));
        assert!(!g.accept("d", 100, 0, 120, 50), "the same ts again");
        assert!(!g.accept("d", 99, 0, 120, 50), "an older ts");
        assert!(g.accept("d", 101, 0, 120, 50));
        assert!(g.accept("e", 100, 0, 120, 50), "another device");
        assert!(!g.accept("e", 150, 150, 120, 50), "not after the stored ts");
        assert!(g.accept("e", 151, 150, 120, 50));
        // still remembered one generation later (at least twice the window)...
        assert!(!g.accept("d", 101, 0, 200, 50));
        // ...and two generations later only the stored ts is left to compare with
        assert!(g.accept("f", 100, 0, 300, 50));
        assert!(!g.accept("d", 101, 101, 300, 50));
        assert!(g.accept("d", 102, 101, 300, 50));
        // a long quiet spell forgets everything at once
        assert!(g.accept("f", 100, 0, 10_000, 50));
    }

    /// A signed CONNECT accepted once is refused again by a process started later on the same
    /// store (the in-memory guard is gone; the device's stored `connect_ts` is not).
    #[tokio::test]
    async fn a_connect_replayed_after_a_restart_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = crate::secret::MasterKey::from_bytes(&[1; 32]);
        let store =
            crate::test_support::store_with_devices(dir.path(), "[]", &["d1".to_owned()], |_| {
                key.seal(
                    crate::secret::Place::new(rampart_store::at_rest::DEVICE_SECRET, "d1"),
                    b"s3cret",
                )
            })
            .await;
        let connect = |core: Core, ts: i64| async move {
            let user = sign::connect_username("d1", ts);
            let pass = sign::hmac_hex(b"s3cret", &sign::connect_string("d1", ts));
            core.authenticate_device(
                "d1",
                Some(&user),
                Some(pass.as_bytes()),
                "10.0.0.1",
                "mqtt_tls",
                true,
            )
            .await
            .map(|_| ())
        };
        let mk = || crate::secret::MasterKey::from_bytes(&[1; 32]);
        let first = Core::new(store.clone(), mk(), Default::default());
        let ts = first.now_ms();
        assert_eq!(connect(first.clone(), ts).await, Ok(()));
        assert_eq!(
            connect(first.clone(), ts).await,
            Err(ConnectRefusal::BadCredentials),
            "replayed in the same process"
        );
        // The write is not waited for by the CONNECT; wait for it here.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store
            .device_credentials("d1")
            .await
            .unwrap()
            .unwrap()
            .connect_ts
            != ts
        {
            assert!(
                std::time::Instant::now() < deadline,
                "connect_ts never stored"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let second = Core::new(store.clone(), mk(), Default::default());
        assert_eq!(
            connect(second.clone(), ts).await,
            Err(ConnectRefusal::BadCredentials),
            "replayed after a restart"
        );
        assert_eq!(
            connect(second.clone(), ts - 1).await,
            Err(ConnectRefusal::BadCredentials),
            "an older timestamp after a restart"
        );
        assert_eq!(connect(second, ts + 1).await, Ok(()));
    }

    /// A session that ended queues its "offline" after leaving the bus; if a successor attached
    /// and went online in between, the late "offline" must not win.
    #[tokio::test]
    async fn a_late_offline_from_a_replaced_session_does_not_win() {
        let dir = tempfile::tempdir().unwrap();
        let core = crate::test_support::core_with_device(dir.path(), "[]").await;
        let store = core.store().clone();
        let mut events = core.bus().subscribe_events();
        let (a, b) = (Arc::new(Inbox::default()), Arc::new(Inbox::default()));
        core.bus().attach("d1", a.clone(), false, 0);
        core.set_presence("d1", true, "connect").await;
        // A leaves the bus, B attaches and goes online, then A's "offline" arrives.
        assert!(core.bus().detach("d1", &a, None));
        core.bus().attach("d1", b.clone(), false, 0);
        core.set_presence("d1", true, "connect").await;
        core.set_presence("d1", false, "closed").await;
        assert!(store.get_device("d1").await.unwrap().unwrap().online);
        let mut seen = Vec::new();
        while let Ok(ev) = events.try_recv() {
            seen.push(matches!(ev, DeviceEvent::Online { .. }));
        }
        assert_eq!(
            seen,
            [true, true],
            "no offline event after the successor's online"
        );
        // B's own end is not stale: the device goes offline.
        assert!(core.bus().detach("d1", &b, None));
        core.set_presence("d1", false, "closed").await;
        assert!(!store.get_device("d1").await.unwrap().unwrap().online);
    }
}
