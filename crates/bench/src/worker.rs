//! One worker: opens its slice of the connections (one small task each), reports progress, and follows
//! the coordinator's `go` / `stop`. Runs in the coordinator's process (`--processes 1`) or as a child
//! process (`bench worker`: the spec is the first line on stdin, then `go` / `stop` lines; events are
//! JSON lines on stdout).

use crate::client::{self, now_us, Creds, Failure, Opened};
use crate::hist::Histogram;
use crate::net::{self, Target};
use crate::procfs;
use bytes::{BufMut, Bytes, BytesMut};
use rampart_proto::mqtt::{decode, Packet, ProtocolVersion, QoS};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Scenario {
    Connect,
    Ingest,
    Command,
}

impl Scenario {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::Connect => "connect",
            Scenario::Ingest => "ingest",
            Scenario::Command => "command",
        }
    }
}

/// A provisioned Rampart device.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Identity {
    pub(crate) did: String,
    /// Empty for certificate devices.
    pub(crate) secret: String,
    /// Certificate devices: the subject CN of the certificates issued for this device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) hardware_id: Option<String>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("did", &self.did)
            .finish_non_exhaustive()
    }
}

/// Everything a worker needs; serialised to a child process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WorkerSpec {
    pub(crate) worker: usize,
    pub(crate) scenario: Scenario,
    pub(crate) target: String,
    /// PEM of the CA to trust, when the MQTT connection uses TLS.
    pub(crate) ca_pem: Option<String>,
    /// Devices speak Rampart's secure-session layer (Noise) on a plain-TCP port.
    #[serde(default)]
    pub(crate) noise: bool,
    /// Mutual TLS: the CA (certificate and key, PEM) that issues each connection's certificate.
    #[serde(default)]
    pub(crate) client_ca_pem: Option<String>,
    pub(crate) mqtt_version: u8,
    pub(crate) keepalive_secs: u16,
    pub(crate) source_ips: u32,
    /// Global index of this worker's first connection.
    pub(crate) first_index: u64,
    pub(crate) count: usize,
    /// Connections across all workers.
    pub(crate) total: u64,
    /// Rampart identities, one per connection of this worker; anonymous when absent.
    pub(crate) identities: Option<Vec<Identity>>,
    /// Connections opened per second by this worker.
    pub(crate) connect_rate: f64,
    pub(crate) connect_timeout_secs: u64,
    /// Ingest: QoS of the telemetry (0 or 1).
    pub(crate) qos: u8,
    /// Ingest: messages per second, all devices together.
    pub(crate) msg_rate: f64,
    pub(crate) duration_secs: f64,
    pub(crate) payload_bytes: usize,
    /// The run's hard deadline.
    pub(crate) deadline_unix_ms: i64,
}

impl WorkerSpec {
    fn topic(&self, i: usize, leaf: &str) -> String {
        match &self.identities {
            Some(ids) => format!("dev/{}/{leaf}", ids[i].did),
            None => format!("bench/{}/{leaf}", self.first_index + i as u64),
        }
    }
}

/// Coordinator -> worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    /// Start the measured phase (ingest: publishing).
    Go,
    /// Close everything and report.
    Stop,
}

/// Worker -> coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum Event {
    Progress(Progress),
    /// Every connection attempt of the worker has ended (ready or failed).
    Connected {
        ok: u64,
        failed: u64,
        /// Global indices of the connections that are not up.
        failed_indices: Vec<u64>,
    },
    Finished {
        result: Box<WorkerResult>,
    },
    Fatal {
        message: String,
    },
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct Progress {
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    pub(crate) dropped: u64,
    pub(crate) sent: u64,
    pub(crate) acked: u64,
    pub(crate) answered: u64,
}

/// What a worker measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct WorkerResult {
    pub(crate) worker: usize,
    pub(crate) attempted: u64,
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    /// Connections lost after they were up.
    pub(crate) dropped: u64,
    /// Closed by us at the end.
    pub(crate) closed: u64,
    pub(crate) first_start_us: Option<i64>,
    pub(crate) last_ready_us: Option<i64>,
    pub(crate) connect_latency: Histogram,
    pub(crate) sent: u64,
    pub(crate) acked: u64,
    /// PUBACKs with a failure reason code.
    pub(crate) nacked: u64,
    /// QoS 1 messages never acknowledged.
    pub(crate) unacked: u64,
    pub(crate) first_send_us: Option<i64>,
    pub(crate) last_send_us: Option<i64>,
    pub(crate) last_ack_us: Option<i64>,
    pub(crate) ack_latency: Histogram,
    /// Commands answered by the devices.
    pub(crate) answered: u64,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) peak_rss_kib: Option<u64>,
    /// This process's RSS when the worker started and once its connections were up.
    pub(crate) rss_start_kib: Option<u64>,
    pub(crate) rss_up_kib: Option<u64>,
    pub(crate) cpu_secs: Option<f64>,
    pub(crate) timed_out: bool,
}

/// Shared counters of one worker's tasks.
struct Stats {
    ok: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    closed: AtomicU64,
    sent: AtomicU64,
    acked: AtomicU64,
    nacked: AtomicU64,
    unacked: AtomicU64,
    answered: AtomicU64,
    /// Devices that are up and have not finished publishing (ingest).
    pub_pending: AtomicI64,
    first_start_us: AtomicI64,
    last_ready_us: AtomicI64,
    first_send_us: AtomicI64,
    last_send_us: AtomicI64,
    last_ack_us: AtomicI64,
    inner: Mutex<StatsInner>,
}

#[derive(Default)]
struct StatsInner {
    connect_latency: Histogram,
    ack_latency: Histogram,
    errors: BTreeMap<String, u64>,
    failed_indices: Vec<u64>,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            nacked: AtomicU64::new(0),
            unacked: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            pub_pending: AtomicI64::new(0),
            first_start_us: AtomicI64::new(i64::MAX),
            last_ready_us: AtomicI64::new(0),
            first_send_us: AtomicI64::new(i64::MAX),
            last_send_us: AtomicI64::new(0),
            last_ack_us: AtomicI64::new(0),
            inner: Mutex::new(StatsInner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StatsInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn error(&self, kind: String) {
        *self.lock().errors.entry(kind).or_default() += 1;
    }

    fn fail(&self, index: u64, kind: String) {
        let mut g = self.lock();
        *g.errors.entry(kind).or_default() += 1;
        g.failed_indices.push(index);
        drop(g);
        self.failed.fetch_add(1, Relaxed);
    }

    fn progress(&self) -> Progress {
        Progress {
            ok: self.ok.load(Relaxed),
            failed: self.failed.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            sent: self.sent.load(Relaxed),
            acked: self.acked.load(Relaxed),
            answered: self.answered.load(Relaxed),
        }
    }
}

/// Phase broadcast to the connection tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Publish(Instant),
    Stop,
}

struct Ctx {
    spec: WorkerSpec,
    target: Target,
    issuer: Option<crate::certs::Issuer>,
    v: ProtocolVersion,
    stats: Stats,
}

fn opt_min(v: i64) -> Option<i64> {
    (v != i64::MAX).then_some(v)
}

fn opt_max(v: i64) -> Option<i64> {
    (v != 0).then_some(v)
}

/// Run one worker to completion; every outcome ends in a `Finished` or `Fatal` event.
pub(crate) async fn run(
    spec: WorkerSpec,
    ctl: mpsc::UnboundedReceiver<Control>,
    events: mpsc::UnboundedSender<Event>,
) {
    if let Err(message) = run_inner(spec, ctl, &events).await {
        let _ = events.send(Event::Fatal { message });
    }
}

async fn run_inner(
    spec: WorkerSpec,
    mut ctl: mpsc::UnboundedReceiver<Control>,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<(), String> {
    let rss_start = procfs::rss_kib(std::process::id());
    let deadline = Instant::now()
        + Duration::from_millis((spec.deadline_unix_ms - client::now_ms()).max(0) as u64);
    if let Some(ids) = &spec.identities {
        if ids.len() < spec.count {
            return Err(format!(
                "worker {}: {} identities for {} connections",
                spec.worker,
                ids.len(),
                spec.count
            ));
        }
    }
    let mut target = net::target(
        &spec.target,
        spec.ca_pem.as_deref().map(str::as_bytes),
        spec.source_ips,
    )
    .await?;
    target.noise = spec.noise;
    let issuer = match &spec.client_ca_pem {
        Some(pem) => Some(crate::certs::Issuer::from_pem(pem)?),
        None => None,
    };
    let count = spec.count;
    let ctx = Arc::new(Ctx {
        issuer,
        v: client::version(spec.mqtt_version),
        spec,
        target,
        stats: Stats::new(),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);

    // Ramp: connection i starts at i / rate seconds.
    let spawner = {
        let ctx = ctx.clone();
        let phase_rx = phase_rx.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let rate = ctx.spec.connect_rate.max(0.001);
            for i in 0..count {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                if due >= deadline || *phase_rx.borrow() == Phase::Stop {
                    let index = ctx.spec.first_index + i as u64;
                    ctx.stats.fail(index, "not_started".into());
                    continue;
                }
                sleep_until(due).await;
                tokio::spawn(device(ctx.clone(), i, phase_rx.clone(), done_tx.clone()));
            }
        })
    };

    let mut timed_out = false;
    let mut stop_requested = false;
    let mut go_received = false;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    // 1. Connect phase.
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let p = ctx.stats.progress();
                let _ = events.send(Event::Progress(p));
                if p.ok + p.failed >= count as u64 {
                    break;
                }
                if Instant::now() >= deadline {
                    timed_out = true;
                    break;
                }
            }
            c = ctl.recv() => match c {
                Some(Control::Go) => go_received = true,
                Some(Control::Stop) | None => { stop_requested = true; break; }
            }
        }
    }
    // Let the allocator settle on the connections' steady state before sampling.
    sleep_until((Instant::now() + Duration::from_millis(300)).min(deadline)).await;
    let rss_up = procfs::rss_kib(std::process::id());
    {
        let p = ctx.stats.progress();
        let failed_indices = std::mem::take(&mut ctx.stats.lock().failed_indices);
        let _ = events.send(Event::Connected {
            ok: p.ok,
            failed: p.failed,
            failed_indices,
        });
    }

    // 2. The measured phase.
    if !stop_requested && !timed_out {
        let scenario = ctx.spec.scenario;
        let mut publishing_since: Option<Instant> = None;
        if go_received && scenario == Scenario::Ingest {
            let now = Instant::now();
            let _ = phase_tx.send(Phase::Publish(now));
            publishing_since = Some(now);
        }
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let _ = events.send(Event::Progress(ctx.stats.progress()));
                    let now = Instant::now();
                    if now >= deadline {
                        timed_out = true;
                        break;
                    }
                    if let Some(since) = publishing_since {
                        let all_done = ctx.stats.pub_pending.load(Relaxed) <= 0;
                        // Publishing ends by itself; this bound only guards against a stuck task.
                        let limit = since + Duration::from_secs_f64(ctx.spec.duration_secs) + DRAIN + Duration::from_secs(5);
                        if all_done || now >= limit {
                            break;
                        }
                    }
                }
                c = ctl.recv() => match c {
                    Some(Control::Go) => {
                        if scenario == Scenario::Ingest && publishing_since.is_none() {
                            let now = Instant::now();
                            let _ = phase_tx.send(Phase::Publish(now));
                            publishing_since = Some(now);
                        }
                    }
                    Some(Control::Stop) | None => break,
                }
            }
        }
    }

    // 3. Close everything (bounded).
    spawner.abort();
    let _ = phase_tx.send(Phase::Stop);
    drop(phase_rx);
    let _ = tokio::time::timeout(Duration::from_secs(10), done_rx.recv()).await;

    let s = &ctx.stats;
    let p = s.progress();
    let mut g = s.lock();
    let unfinished = (count as u64).saturating_sub(p.ok + p.failed);
    if unfinished > 0 {
        *g.errors.entry("not_finished".into()).or_default() += unfinished;
    }
    let result = WorkerResult {
        worker: ctx.spec.worker,
        attempted: count as u64,
        ok: p.ok,
        failed: p.failed,
        dropped: p.dropped,
        closed: s.closed.load(Relaxed),
        first_start_us: opt_min(s.first_start_us.load(Relaxed)),
        last_ready_us: opt_max(s.last_ready_us.load(Relaxed)),
        connect_latency: g.connect_latency.clone(),
        sent: p.sent,
        acked: p.acked,
        nacked: s.nacked.load(Relaxed),
        unacked: s.unacked.load(Relaxed),
        first_send_us: opt_min(s.first_send_us.load(Relaxed)),
        last_send_us: opt_max(s.last_send_us.load(Relaxed)),
        last_ack_us: opt_max(s.last_ack_us.load(Relaxed)),
        ack_latency: g.ack_latency.clone(),
        answered: p.answered,
        errors: g.errors.clone(),
        peak_rss_kib: procfs::self_peak_rss_kib(),
        rss_start_kib: rss_start,
        rss_up_kib: rss_up,
        cpu_secs: procfs::self_cpu_secs(),
        timed_out,
    };
    drop(g);
    let _ = events.send(Event::Finished {
        result: Box::new(result),
    });
    Ok(())
}

/// How long a device waits for outstanding PUBACKs after its last publish.
const DRAIN: Duration = Duration::from_secs(10);
/// Most QoS 1 publishes a device keeps unacknowledged (also capped by the server's receive maximum).
const INFLIGHT_CAP: usize = 100;
/// Most publishes written in one go before the task yields.
const BATCH: usize = 64;

/// Publishing state of one device (ingest only; boxed, so idle devices do not carry it).
struct Pub {
    start: Instant,
    end: Instant,
    /// Seconds between two messages of this device.
    interval: f64,
    /// This device's phase offset within an interval (spreads devices evenly).
    offset: f64,
    /// Next message number.
    k: u64,
    inflight: VecDeque<(u16, Instant)>,
    cap: usize,
    next_pid: u16,
    topic: String,
    device_index: u64,
}

impl Pub {
    fn due(&self) -> Instant {
        self.start + Duration::from_secs_f64(self.offset + self.k as f64 * self.interval)
    }

    fn sending_done(&self) -> bool {
        self.due() >= self.end
    }

    /// When the task must wake for this state: the next due message, or the drain deadline.
    fn wake_at(&self, qos1: bool) -> Option<Instant> {
        if !self.sending_done() {
            if qos1 && self.inflight.len() >= self.cap {
                // Wait for PUBACKs; still give up at the drain deadline.
                return Some(self.end + DRAIN);
            }
            return Some(self.due());
        }
        if self.inflight.is_empty() {
            None
        } else {
            Some(self.end + DRAIN)
        }
    }
}

/// Payload of message `seq` of device `index`.
fn payload(rampart: bool, index: u64, seq: u64, size: usize) -> Bytes {
    if rampart {
        // Valid for the bench product's model: seq int 0..=2^31-1, temp float -1000..1000 step 0.5.
        let seq = seq % 2_147_483_648;
        let temp = (seq % 4000) as f64 * 0.5 - 1000.0;
        Bytes::from(format!("{{\"seq\":{seq},\"temp\":{temp:.1}}}"))
    } else {
        let mut b = BytesMut::with_capacity(size.max(16));
        b.put_i64(now_us());
        b.put_u32(index as u32);
        b.put_u32(seq as u32);
        b.resize(size.max(16), b'x');
        b.freeze()
    }
}

/// Send time, device and sequence of a non-Rampart payload.
pub(crate) fn parse_payload(p: &[u8]) -> Option<(i64, u32, u32)> {
    if p.len() < 16 {
        return None;
    }
    let ts = i64::from_be_bytes(p[0..8].try_into().ok()?);
    let dev = u32::from_be_bytes(p[8..12].try_into().ok()?);
    let seq = u32::from_be_bytes(p[12..16].try_into().ok()?);
    Some((ts, dev, seq))
}

#[derive(Deserialize)]
struct CommandId {
    id: String,
}

/// How a connection task ended after the connection was up.
enum Exit {
    Stopped,
    Dropped(String),
}

/// One connection, from TCP connect to close.
async fn device(
    ctx: Arc<Ctx>,
    i: usize,
    mut phase: watch::Receiver<Phase>,
    _done: mpsc::Sender<()>,
) {
    let spec = &ctx.spec;
    let s = &ctx.stats;
    let index = spec.first_index + i as u64;
    s.first_start_us.fetch_min(now_us(), Relaxed);
    let timeout = Duration::from_secs(spec.connect_timeout_secs);
    // Boxed: the handshake futures are large and an idle connection should not carry their space.
    let opened = Box::pin(async {
        let creds = match (&spec.identities, &ctx.issuer) {
            // A certificate device authenticates with its certificate: client id only.
            (Some(ids), Some(_)) => Creds::Anonymous(ids[i].did.clone()),
            (Some(ids), None) => Creds::Device {
                did: &ids[i].did,
                secret: &ids[i].secret,
            },
            (None, _) => Creds::Anonymous(format!("bench-{index}")),
        };
        let cert = match &ctx.issuer {
            Some(issuer) => {
                let cn = spec
                    .identities
                    .as_ref()
                    .and_then(|ids| ids[i].hardware_id.clone())
                    .unwrap_or_else(|| format!("bench-{index}"));
                Some(
                    issuer
                        .issue(&cn)
                        .map_err(|e| Failure::Connect(crate::net::ConnectError::ClientCert(e)))?,
                )
            }
            None => None,
        };
        let packet = client::connect_packet(ctx.v, creds, spec.keepalive_secs);
        let device = spec
            .identities
            .as_ref()
            .map(|ids| (ids[i].did.as_str(), ids[i].secret.as_str()));
        let mut o = client::open(&ctx.target, index, ctx.v, &packet, device, cert, timeout).await?;
        if spec.scenario == Scenario::Command {
            let topic = spec.topic(i, "down");
            tokio::time::timeout(timeout, subscribe(&mut o, ctx.v, &topic))
                .await
                .map_err(|_| Failure::Timeout("suback"))??;
        }
        Ok::<Opened, Failure>(o)
    })
    .await;
    let Opened {
        mut conn,
        mut buf,
        receive_maximum,
        latency,
    } = match opened {
        Ok(o) => o,
        Err(f) => {
            s.fail(index, f.kind());
            return;
        }
    };
    s.lock().connect_latency.record(latency.as_micros() as u64);
    s.last_ready_us.fetch_max(now_us(), Relaxed);
    let ingest = spec.scenario == Scenario::Ingest;
    if ingest {
        s.pub_pending.fetch_add(1, Relaxed);
    }
    s.ok.fetch_add(1, Relaxed);
    if buf.is_empty() {
        buf = BytesMut::new();
    }

    let qos1 = spec.qos == 1;
    let cap = INFLIGHT_CAP.min(usize::from(receive_maximum.unwrap_or(u16::MAX)).max(1));
    let keepalive = if spec.keepalive_secs == 0 {
        Duration::from_secs(86_400 * 365)
    } else {
        Duration::from_secs(u64::from(spec.keepalive_secs))
    };
    let mut last_tx = Instant::now();
    let mut pubs: Option<Box<Pub>> = None;
    let mut pending = ingest;
    let mut next_pid: u16 = 1;
    let mut seen = *phase.borrow_and_update();
    let exit = loop {
        match seen {
            Phase::Stop => break Exit::Stopped,
            Phase::Publish(start) if pending && pubs.is_none() => {
                let interval = spec.total as f64 / spec.msg_rate.max(1e-9);
                pubs = Some(Box::new(Pub {
                    start,
                    end: start + Duration::from_secs_f64(spec.duration_secs),
                    interval,
                    offset: interval * (index as f64 / spec.total.max(1) as f64),
                    k: 0,
                    inflight: VecDeque::new(),
                    cap,
                    next_pid: 0,
                    topic: spec.topic(i, "up"),
                    device_index: index,
                }));
            }
            _ => {}
        }
        // Finished publishing?
        if let Some(p) = &pubs {
            // Done when everything is sent and acknowledged, or at the drain deadline whatever
            // is left (a device held back by its in-flight cap stops there too).
            if (p.sending_done() && p.inflight.is_empty()) || Instant::now() >= p.end + DRAIN {
                s.unacked.fetch_add(p.inflight.len() as u64, Relaxed);
                if !p.inflight.is_empty() {
                    *s.lock().errors.entry("ack_timeout".into()).or_default() +=
                        p.inflight.len() as u64;
                }
                pubs = None;
                pending = false;
                s.pub_pending.fetch_sub(1, Relaxed);
            }
        }
        let pub_wake = pubs.as_ref().and_then(|p| p.wake_at(qos1));
        tokio::select! {
            biased;
            r = phase.changed() => {
                if r.is_err() {
                    break Exit::Stopped;
                }
                seen = *phase.borrow_and_update();
            }
            r = conn.read_into(&mut buf) => {
                match r {
                    Ok(0) => break Exit::Dropped("closed_by_server".into()),
                    Err(e) => break Exit::Dropped(format!("dropped_io_{}", net::io_kind(&e))),
                    Ok(_) => {}
                }
                let mut out = BytesMut::new();
                if let Err(kind) = incoming(&ctx, i, &mut buf, pubs.as_deref_mut(), &mut next_pid, &mut out) {
                    break Exit::Dropped(kind);
                }
                if buf.is_empty() {
                    buf = BytesMut::new();
                }
                if !out.is_empty() {
                    if let Err(e) = conn.send(&out).await {
                        break Exit::Dropped(format!("dropped_io_{}", net::io_kind(&e)));
                    }
                    last_tx = Instant::now();
                }
            }
            // One timer for both the keepalive and the publishing schedule.
            _ = sleep_until(pub_wake.map_or(last_tx + keepalive, |w| w.min(last_tx + keepalive))) => {
                let mut out = match pubs.as_deref_mut() {
                    Some(p) => pump(&ctx, p, qos1),
                    None => BytesMut::new(),
                };
                if out.is_empty() && Instant::now() >= last_tx + keepalive {
                    out.extend_from_slice(&client::PINGREQ);
                }
                if !out.is_empty() {
                    if let Err(e) = conn.send(&out).await {
                        break Exit::Dropped(format!("dropped_io_{}", net::io_kind(&e)));
                    }
                    last_tx = Instant::now();
                }
            }
        }
    };
    if let Some(p) = &pubs {
        s.unacked.fetch_add(p.inflight.len() as u64, Relaxed);
    }
    if pending {
        s.pub_pending.fetch_sub(1, Relaxed);
    }
    match exit {
        Exit::Stopped => {
            // DISCONNECT, then let the server close first so that TIME_WAIT stays on its side
            // rather than eating this machine's ephemeral ports. Boxed, like the handshake: only
            // a closing connection pays for this future.
            let _ = Box::pin(tokio::time::timeout(Duration::from_secs(2), async {
                if conn.send(&client::DISCONNECT).await.is_ok() {
                    let mut sink = BytesMut::new();
                    while let Ok(n) = conn.read_into(&mut sink).await {
                        if n == 0 {
                            break;
                        }
                        sink.clear();
                    }
                }
            }))
            .await;
            let _ = tokio::time::timeout(Duration::from_millis(200), conn.shutdown()).await;
            s.closed.fetch_add(1, Relaxed);
        }
        Exit::Dropped(kind) => {
            s.dropped.fetch_add(1, Relaxed);
            s.error(kind);
        }
    }
}

/// SUBSCRIBE to the down topic at QoS 1 and wait for the SUBACK.
async fn subscribe(o: &mut Opened, v: ProtocolVersion, topic: &str) -> Result<(), Failure> {
    let mut out = BytesMut::new();
    client::put(
        &client::subscribe_packet(1, topic, QoS::AtLeastOnce),
        v,
        &mut out,
    )
    .map_err(Failure::Io)?;
    o.conn.send(&out).await.map_err(Failure::Io)?;
    loop {
        match client::read_packet(&mut o.conn, &mut o.buf, v, "before_suback").await? {
            Packet::SubAck(a) if a.packet_id == 1 => {
                return match a.codes.first() {
                    Some(&c) if c < 0x80 => Ok(()),
                    Some(&c) => Err(Failure::SubRefused(c)),
                    None => Err(Failure::SubRefused(0x80)),
                }
            }
            Packet::Disconnect(_) => return Err(Failure::Closed("before_suback")),
            _ => continue,
        }
    }
}

/// Handle every whole packet in `buf`; replies go to `out`. An error is the reason to drop.
fn incoming(
    ctx: &Ctx,
    i: usize,
    buf: &mut BytesMut,
    mut pubs: Option<&mut Pub>,
    next_pid: &mut u16,
    out: &mut BytesMut,
) -> Result<(), String> {
    let s = &ctx.stats;
    loop {
        let p = match decode(buf, ctx.v, client::MAX_PACKET) {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(()),
            Err(_) => return Err("decode".into()),
        };
        match p {
            Packet::PubAck(r) => {
                let Some(p) = pubs.as_deref_mut() else {
                    continue;
                };
                let Some(pos) = p.inflight.iter().position(|(id, _)| *id == r.packet_id) else {
                    continue;
                };
                let (_, sent_at) = p.inflight.remove(pos).unwrap_or((0, Instant::now()));
                if r.code >= 0x80 {
                    s.nacked.fetch_add(1, Relaxed);
                    s.error(format!("puback_0x{:02x}", r.code));
                } else {
                    s.acked.fetch_add(1, Relaxed);
                    s.last_ack_us.fetch_max(now_us(), Relaxed);
                    s.lock()
                        .ack_latency
                        .record(sent_at.elapsed().as_micros() as u64);
                }
            }
            Packet::Publish(p) => {
                if let Some(pid) = p.packet_id {
                    client::put(&client::puback_packet(pid), ctx.v, out)
                        .map_err(|_| "encode".to_string())?;
                }
                if ctx.spec.scenario == Scenario::Command {
                    let Ok(cmd) = serde_json::from_slice::<CommandId>(&p.payload) else {
                        s.error("command_unparsable".into());
                        continue;
                    };
                    let body = serde_json::json!({"id": cmd.id, "status": "ok"}).to_string();
                    *next_pid = next_pid.wrapping_add(1).max(2);
                    let ack = client::publish_packet(
                        ctx.spec.topic(i, "ack"),
                        Some(*next_pid),
                        Bytes::from(body),
                    );
                    client::put(&ack, ctx.v, out).map_err(|_| "encode".to_string())?;
                    s.answered.fetch_add(1, Relaxed);
                }
            }
            Packet::Disconnect(d) => return Err(format!("server_disconnect_0x{:02x}", d.code)),
            _ => {}
        }
    }
}

/// Encode every message that is due (at most one batch).
fn pump(ctx: &Ctx, p: &mut Pub, qos1: bool) -> BytesMut {
    let s = &ctx.stats;
    let rampart = ctx.spec.identities.is_some();
    let now = Instant::now();
    let mut out = BytesMut::new();
    let mut n = 0;
    while n < BATCH && !p.sending_done() && p.due() <= now && (!qos1 || p.inflight.len() < p.cap) {
        let pid = if qos1 {
            p.next_pid = p.next_pid.wrapping_add(1).max(1);
            Some(p.next_pid)
        } else {
            None
        };
        let body = payload(rampart, p.device_index, p.k, ctx.spec.payload_bytes);
        let pkt = client::publish_packet(p.topic.clone(), pid, body);
        if client::put(&pkt, ctx.v, &mut out).is_err() {
            s.error("encode".into());
            break;
        }
        if let Some(pid) = pid {
            p.inflight.push_back((pid, now));
        }
        p.k += 1;
        n += 1;
    }
    if n > 0 {
        let t = now_us();
        s.sent.fetch_add(n as u64, Relaxed);
        s.first_send_us.fetch_min(t, Relaxed);
        s.last_send_us.fetch_max(t, Relaxed);
    }
    out
}

/// Entry point of a `bench worker` child process: spec on the first stdin line, then `go` / `stop`
/// lines; events as JSON lines on stdout. Stdin is read on a plain thread so that a pending read
/// never holds up the runtime's shutdown.
pub(crate) async fn run_process() -> Result<(), String> {
    let (spec_tx, spec_rx) = tokio::sync::oneshot::channel::<String>();
    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = std::io::stdin().lock().lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let _ = spec_tx.send(first);
        for line in lines {
            let Ok(line) = line else { break };
            let c = match line.trim() {
                "go" => Control::Go,
                "stop" => Control::Stop,
                _ => continue,
            };
            if ctl_tx.send(c).is_err() {
                return;
            }
        }
        let _ = ctl_tx.send(Control::Stop);
    });
    let first = spec_rx
        .await
        .map_err(|_| "worker: no spec on stdin".to_string())?;
    let spec: WorkerSpec =
        serde_json::from_str(&first).map_err(|e| format!("worker: bad spec on stdin: {e}"))?;
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    tokio::spawn(run(spec, ctl_rx, ev_tx));
    let mut out = tokio::io::stdout();
    while let Some(ev) = ev_rx.recv().await {
        let end = matches!(ev, Event::Finished { .. } | Event::Fatal { .. });
        let mut line = serde_json::to_string(&ev).map_err(|e| e.to_string())?;
        line.push('\n');
        out.write_all(line.as_bytes())
            .await
            .map_err(|e| format!("worker stdout: {e}"))?;
        out.flush().await.map_err(|e| e.to_string())?;
        if end {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads() {
        let p = payload(true, 3, 1, 64);
        let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
        assert_eq!(v["seq"], 1);
        assert_eq!(v["temp"].as_f64(), Some(-999.5));
        let v: serde_json::Value = serde_json::from_slice(&payload(true, 3, 3999, 64)).unwrap();
        assert_eq!(v["temp"].as_f64(), Some(999.5));
        let p = payload(false, 7, 9, 64);
        assert_eq!(p.len(), 64);
        let (ts, dev, seq) = parse_payload(&p).unwrap();
        assert!(ts > 0);
        assert_eq!((dev, seq), (7, 9));
        assert_eq!(payload(false, 1, 1, 4).len(), 16);
    }

    fn spec() -> WorkerSpec {
        WorkerSpec {
            worker: 0,
            scenario: Scenario::Ingest,
            target: "127.0.0.1:1".into(),
            ca_pem: None,
            noise: false,
            client_ca_pem: None,
            mqtt_version: 3,
            keepalive_secs: 60,
            source_ips: 1,
            first_index: 0,
            count: 1,
            total: 1,
            identities: None,
            connect_rate: 1.0,
            connect_timeout_secs: 1,
            qos: 1,
            msg_rate: 1.0,
            duration_secs: 1.0,
            payload_bytes: 64,
            deadline_unix_ms: 0,
        }
    }

    /// The state an idle connection carries is its task's future: keep it small.
    #[tokio::test]
    async fn connection_future_is_small() {
        let ctx = Arc::new(Ctx {
            spec: spec(),
            target: Target {
                addr: "127.0.0.1:1".parse().unwrap(),
                tls: None,
                roots: None,
                source_ips: 1,
                noise: false,
            },
            issuer: None,
            v: ProtocolVersion::V311,
            stats: Stats::new(),
        });
        let (_tx, rx) = watch::channel(Phase::Connecting);
        let (done, _) = mpsc::channel(1);
        let fut = device(ctx, 0, rx, done);
        let size = std::mem::size_of_val(&fut);
        println!("connection task future: {size} bytes");
        assert!(size < 1024, "{size} bytes");
    }

    #[test]
    fn events_round_trip() {
        let e = Event::Connected {
            ok: 3,
            failed: 1,
            failed_indices: vec![7],
        };
        let text = serde_json::to_string(&e).unwrap();
        assert!(text.starts_with("{\"event\":\"connected\""), "{text}");
        let back: Event = serde_json::from_str(&text).unwrap();
        assert!(matches!(back, Event::Connected { ok: 3, .. }));
        let r = Event::Finished {
            result: Box::default(),
        };
        let back: Event = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert!(matches!(back, Event::Finished { .. }));
    }
}
