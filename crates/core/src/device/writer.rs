//! Group commit for reports and presence: sessions hand validated reports, connects and
//! disconnects (and the timestamps of accepted CONNECTs) to one writer task, which stores whatever has queued up in a single transaction and
//! then tells each waiter. Under load a batch holds hundreds of reports (or a connection storm's
//! presence changes) for one fsync; when idle a change is written alone, at once.
//!
//! A QoS 1/2 report is acknowledged only after its batch committed; a QoS 0 report does not wait.
//! Commits complete in queue order, so a session that keeps several reports in flight sees their
//! receipts resolve in the order it submitted them. The report's event reaches listeners only once
//! it is stored.
//!
//! Changes and alarms: for a product some subscription group asked for `datapoint_changed` or
//! alarms of, the writer compares each report with the device's previous values, kept in memory
//! per online device of such a product (dropped when the device goes offline or its state is
//! cleared by a factory reset or wipe). The first such
//! report after a connect reads the device's stored state once (before the batch commits, so it
//! is the state before the report); later reports cost a map lookup and a comparison per point.

use crate::device::bus::{DeviceEvent, EventSink};
use crate::device::products::ProductInfo;
use rampart_proto::model::{PointType, Values};
use rampart_store::{ConnectRow, PresenceRow, ReportRow, Store};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Most reports in one transaction.
const MAX_BATCH: usize = 1024;
/// Reports waiting for the writer before senders are made to wait (back-pressure).
const QUEUE: usize = 16 * 1024;
/// How often the store's report journal (SQLite) is moved into the history: at most this long
/// after its first report, or as soon as it holds [`COMPACT_ROWS`] reports.
const COMPACT_EVERY: Duration = Duration::from_secs(1);
const COMPACT_ROWS: usize = 20_000;

/// Whether a device has a live session at this moment.
pub(crate) type LiveCheck = Box<dyn Fn(&str) -> bool + Send + Sync>;

enum Row {
    Report(ReportRow),
    Presence(PresenceRow),
    Connect(ConnectRow),
    /// Writes nothing: its receipt resolves once everything queued before it is committed.
    Barrier,
}

struct Job {
    row: Row,
    event: Option<DeviceEvent>,
    /// Compare the report with the previous state (its product's model names the alarm points).
    track: Option<Arc<ProductInfo>>,
    done: Option<oneshot::Sender<Result<(), String>>>,
}

/// Most devices whose last values the writer keeps; beyond it the map starts again (each device
/// then reads its state once more).
const MAX_TRACKED: usize = 1_000_000;

pub(crate) struct ReportWriter {
    tx: mpsc::Sender<Job>,
}

/// Resolves once a submitted report is committed (at once for a report nobody waits for).
#[derive(Debug)]
pub struct ReportReceipt(Option<oneshot::Receiver<Result<(), String>>>);

impl ReportReceipt {
    /// Wait for the commit; `Err` carries a message fit for logs.
    pub async fn committed(self) -> Result<(), String> {
        self.await
    }
}

/// Polling by reference lets a session keep its receipts in a queue and wait on the oldest.
impl std::future::Future for ReportReceipt {
    type Output = Result<(), String>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match &mut self.0 {
            Some(rx) => std::pin::Pin::new(rx).poll(cx).map(|r| match r {
                Ok(res) => res,
                Err(_) => Err("report writer stopped".to_owned()),
            }),
            None => std::task::Poll::Ready(Ok(())),
        }
    }
}

impl ReportWriter {
    /// Start the writer task on the current runtime. `is_live` tells whether a device has a
    /// session now (see [`run`] for why the writer asks).
    pub(crate) fn start(store: Store, events: Arc<EventSink>, is_live: LiveCheck) -> ReportWriter {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, events, is_live, rx));
        ReportWriter { tx }
    }

    /// Queue a report (waiting only when the queue is full); with `durable`, the receipt resolves
    /// after the commit. With `track`, its changes and alarms are announced too.
    pub(crate) async fn submit(
        &self,
        row: ReportRow,
        event: Option<DeviceEvent>,
        track: Option<Arc<ProductInfo>>,
        durable: bool,
    ) -> Result<ReportReceipt, String> {
        self.queue(Row::Report(row), event, track, durable).await
    }

    /// Queue a presence change; its event is published after the commit, in queue order with the
    /// device's reports.
    pub(crate) async fn presence(
        &self,
        row: PresenceRow,
        event: DeviceEvent,
    ) -> Result<ReportReceipt, String> {
        self.queue(Row::Presence(row), Some(event), None, true)
            .await
    }

    /// Queue an accepted CONNECT's timestamp (nobody waits for its commit: until it lands, the
    /// in-memory replay guard refuses what the stored value will).
    pub(crate) async fn connect_ts(&self, row: ConnectRow) -> Result<(), String> {
        self.queue(Row::Connect(row), None, None, false)
            .await
            .map(|_| ())
    }

    /// Resolves once everything queued before it is committed (for an erasure, which must run
    /// after the last write of what it erases).
    pub(crate) async fn barrier(&self) -> Result<ReportReceipt, String> {
        self.queue(Row::Barrier, None, None, true).await
    }

    async fn queue(
        &self,
        row: Row,
        event: Option<DeviceEvent>,
        track: Option<Arc<ProductInfo>>,
        durable: bool,
    ) -> Result<ReportReceipt, String> {
        let (done, wait) = if durable {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let job = Job {
            row,
            event,
            track,
            done,
        };
        let job = match self.tx.try_send(job) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(job)) => Some(job),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Err("report writer stopped".to_owned())
            }
        };
        if let Some(job) = job {
            self.tx
                .send(job)
                .await
                .map_err(|_| "report writer stopped".to_owned())?;
        }
        Ok(ReportReceipt(wait))
    }
}

/// The writer task. Presence is ordered here: a session that ends queues its "offline" after it
/// left the bus, and a successor can attach and queue its "online" in between, so the late
/// "offline" would otherwise win and show a connected device as offline. An "offline" that
/// reaches the writer while the device has a live session is stale: it is neither stored nor
/// announced (the successor's "online" is, before or after it).
async fn run(
    store: Store,
    events: Arc<EventSink>,
    is_live: LiveCheck,
    mut rx: mpsc::Receiver<Job>,
) {
    let mut rows = Vec::with_capacity(64);
    let mut seen = Vec::new();
    let mut connects = Vec::new();
    let mut waiters = Vec::with_capacity(64);
    let mut evs: Vec<(DeviceEvent, Option<Arc<ProductInfo>>)> = Vec::new();
    // The last values of tracked devices (see the module's documentation).
    let mut last: HashMap<String, Values> = HashMap::new();
    // When the journal's oldest report arrived (it is due for compaction `COMPACT_EVERY` later).
    let mut journal_since: Option<Instant> = (store.journal_len() > 0).then(Instant::now);
    loop {
        let first = match journal_since {
            Some(since) => match tokio::time::timeout_at(since + COMPACT_EVERY, rx.recv()).await {
                Ok(job) => job,
                Err(_) => {
                    compact(&store, &mut journal_since).await;
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(first) = first else {
            compact(&store, &mut journal_since).await;
            break;
        };
        let mut next = Some(first);
        while let Some(job) = next.take() {
            let stale = match job.row {
                Row::Report(r) => {
                    rows.push(r);
                    false
                }
                Row::Presence(p) if !p.online && is_live(&p.did) => true,
                Row::Presence(p) => {
                    seen.push(p);
                    false
                }
                Row::Connect(c) => {
                    connects.push(c);
                    false
                }
                Row::Barrier => false,
            };
            waiters.extend(job.done);
            if stale {
                metrics::counter!(crate::telemetry::PRESENCE_STALE).increment(1);
            } else if let Some(ev) = job.event {
                evs.push((ev, job.track));
            }
            if rows.len() + seen.len() + connects.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        for did in events.take_cleared() {
            last.remove(&did);
        }
        // Before the commit, the store holds the state before this batch.
        load_previous(&store, &evs, &mut last).await;
        let n = rows.len();
        let res = store
            .record_writes(&rows, &seen, &connects)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, reports = n, presence = seen.len(),
                connects = connects.len(), "batch failed");
                "storage error".to_owned()
            });
        if n > 0 {
            metrics::histogram!(crate::telemetry::REPORT_BATCH_SIZE).record(n as f64);
        }
        if res.is_ok() {
            metrics::counter!(crate::telemetry::REPORTS).increment(n as u64);
            if n > 0 {
                crate::pulse::PULSE.add_reports(crate::pulse::PULSE.now_ms(), n as u64);
            }
            if store.journal_len() > 0 {
                journal_since.get_or_insert_with(Instant::now);
            }
        }
        // The batch's events are queued before its reports are acknowledged, so whatever the
        // device does after an ack (a raw publish, say) reaches the event stream after them.
        if res.is_ok() {
            for (ev, track) in evs.drain(..) {
                let derived = match (&ev, track) {
                    (DeviceEvent::Report { did, ts, values }, Some(product)) => {
                        compare(&mut last, did, *ts, values, &product)
                    }
                    // An untracked report (its product's groups stopped asking) makes the
                    // values held for the device stale: forget them.
                    (DeviceEvent::Offline { did, .. } | DeviceEvent::Report { did, .. }, _) => {
                        if !last.is_empty() {
                            last.remove(did);
                        }
                        Vec::new()
                    }
                    _ => Vec::new(),
                };
                events.send(ev).await;
                for d in derived {
                    events.send(d).await;
                }
            }
        } else {
            // The batch was not stored: the values it would have changed are unknown now.
            for (ev, _) in evs.drain(..) {
                if let DeviceEvent::Report { did, .. } = ev {
                    last.remove(&did);
                }
            }
        }
        for w in waiters.drain(..) {
            let _ = w.send(res.clone());
        }
        if last.len() > MAX_TRACKED {
            last = HashMap::new();
        }
        rows.clear();
        seen.clear();
        connects.clear();
        if rows.capacity() > 4 * MAX_BATCH {
            rows.shrink_to(64);
        }
        if seen.capacity() > 4 * MAX_BATCH {
            seen.shrink_to(0);
        }
        if connects.capacity() > 4 * MAX_BATCH {
            connects.shrink_to(0);
        }
        let due = journal_since.is_some_and(|t| t.elapsed() >= COMPACT_EVERY);
        if due || store.journal_len() >= COMPACT_ROWS {
            compact(&store, &mut journal_since).await;
        }
    }
}

/// Read the stored state of tracked devices of this batch that have no last values in memory
/// (each device once after it connects; one store call for the batch).
async fn load_previous(
    store: &Store,
    evs: &[(DeviceEvent, Option<Arc<ProductInfo>>)],
    last: &mut HashMap<String, Values>,
) {
    let mut missing: Vec<String> = Vec::new();
    for (ev, track) in evs {
        if let (DeviceEvent::Report { did, .. }, Some(_)) = (ev, track) {
            if !last.contains_key(did) {
                missing.push(did.clone());
            }
        }
    }
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return;
    }
    match store.device_states(&missing).await {
        Ok(states) => {
            for (did, state) in states {
                last.insert(did, serde_json::from_str(&state).unwrap_or_default());
            }
        }
        // Without the previous state, every point of these reports counts as changed.
        Err(e) => tracing::error!(error = %e, devices = missing.len(),
            "reading devices' states for changes failed"),
    }
    for did in missing {
        last.entry(did).or_default();
    }
}

/// Compare a stored report with the device's last values (and remember the new ones): a
/// `Changed` event for the points whose values differ, and an `Alarm` per class for alert and
/// fault points that were raised or cleared (a point never reported counts as cleared).
fn compare(
    last: &mut HashMap<String, Values>,
    did: &str,
    ts: i64,
    values: &Values,
    product: &ProductInfo,
) -> Vec<DeviceEvent> {
    use rampart_proto::model::PointClass;
    let prev = last.entry(did.to_owned()).or_default();
    let mut changed = Values::new();
    let mut previous = Values::new();
    let mut alerts = Values::new();
    let mut faults = Values::new();
    for (name, v) in values {
        let old = prev.get(name);
        if old == Some(v) {
            continue;
        }
        if let Some(p) = product.datapoints.point(name) {
            let was_raised = old.and_then(|o| o.as_bool()).unwrap_or(false);
            if p.kind == PointType::Bool && v.as_bool() != Some(was_raised) {
                match p.class {
                    Some(PointClass::Alert) => {
                        alerts.insert(name.clone(), v.clone());
                    }
                    Some(PointClass::Fault) => {
                        faults.insert(name.clone(), v.clone());
                    }
                    None => {}
                }
            }
        }
        previous.insert(
            name.clone(),
            old.cloned().unwrap_or(serde_json::Value::Null),
        );
        changed.insert(name.clone(), v.clone());
        prev.insert(name.clone(), v.clone());
    }
    let mut out = Vec::new();
    if !changed.is_empty() {
        out.push(DeviceEvent::Changed {
            did: did.to_owned(),
            ts,
            values: changed,
            previous,
        });
    }
    for (class, values) in [(PointClass::Alert, alerts), (PointClass::Fault, faults)] {
        if !values.is_empty() {
            out.push(DeviceEvent::Alarm {
                did: did.to_owned(),
                ts,
                class,
                values,
            });
        }
    }
    out
}

/// Move the journal into the history; on failure it stays journalled (still readable and
/// durable) and the next attempt comes one period later.
async fn compact(store: &Store, journal_since: &mut Option<Instant>) {
    match store.compact_reports().await {
        Ok(n) => {
            metrics::counter!(crate::telemetry::REPORT_COMPACTIONS).increment(1);
            tracing::debug!(reports = n, "report journal compacted");
            *journal_since = None;
        }
        Err(e) => {
            tracing::error!(error = %e, "report journal compaction failed; retrying later");
            *journal_since = Some(Instant::now());
        }
    }
}
