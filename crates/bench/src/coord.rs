//! The coordinator: validates the run, provisions Rampart identities, starts the workers (in-process
//! or child processes), drives the phases, samples the server, aggregates and writes the report.

use crate::client::{self, now_ms};
use crate::hist::Histogram;
use crate::net;
use crate::observers::{self, Subscriber};
use crate::procfs;
use crate::progress;
use crate::rampart::{self, CommandOutcome, Provisioned};
use crate::report::*;
use crate::worker::{self, Control, Event, Identity, Progress, Scenario, WorkerResult, WorkerSpec};
use crate::{BenchCmd, Common};
use rampart_proto::mqtt::QoS;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::{sleep, Instant};

/// Settle time before the "after" server samples of `connect`.
const SETTLE: Duration = Duration::from_secs(3);
/// Open files a process needs besides its connections.
const FD_SLACK: u64 = 64;

/// A validated run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) scenario: Scenario,
    pub(crate) common: Common,
    pub(crate) count: usize,
    pub(crate) connect_rate: f64,
    pub(crate) hold_secs: u64,
    pub(crate) qos: u8,
    pub(crate) msg_rate: f64,
    pub(crate) duration_secs: u64,
    pub(crate) payload_bytes: usize,
    pub(crate) commands: u64,
    pub(crate) command_rate: f64,
    pub(crate) concurrency: usize,
}

impl Plan {
    pub(crate) fn from_cmd(cmd: BenchCmd) -> Result<Plan, String> {
        let base = |scenario, common, count, connect_rate| Plan {
            scenario,
            common,
            count,
            connect_rate,
            hold_secs: 0,
            qos: 0,
            msg_rate: 0.0,
            duration_secs: 0,
            payload_bytes: 64,
            commands: 0,
            command_rate: 0.0,
            concurrency: 64,
        };
        let plan = match cmd {
            BenchCmd::Connect(a) => Plan {
                hold_secs: a.hold_secs,
                ..base(Scenario::Connect, a.common, a.connections, a.rate)
            },
            BenchCmd::Ingest(a) => Plan {
                qos: a.qos,
                msg_rate: a.rate,
                duration_secs: a.duration_secs,
                payload_bytes: a.payload_bytes,
                ..base(Scenario::Ingest, a.common, a.devices, a.connect_rate)
            },
            BenchCmd::Command(a) => Plan {
                commands: a.commands,
                command_rate: a.rate,
                concurrency: a.concurrency,
                ..base(Scenario::Command, a.common, a.devices, a.connect_rate)
            },
            BenchCmd::Worker => return Err("`bench worker` is internal".into()),
            BenchCmd::OtaDownload(_) => {
                return Err("`bench ota-download` writes a report of its own".into())
            }
        };
        plan.validate()?;
        Ok(plan)
    }

    fn validate(&self) -> Result<(), String> {
        let c = &self.common;
        if self.count == 0 {
            return Err("need at least one connection / device".into());
        }
        if self.connect_rate.is_nan() || self.connect_rate <= 0.0 {
            return Err("--rate / --connect-rate must be positive".into());
        }
        if self.scenario == Scenario::Ingest && (self.msg_rate.is_nan() || self.msg_rate <= 0.0) {
            return Err("--rate (messages per second) must be positive".into());
        }
        if self.scenario == Scenario::Command
            && (self.command_rate.is_nan() || self.command_rate <= 0.0)
        {
            return Err("--rate (commands per second) must be positive".into());
        }
        if c.processes == 0 {
            return Err("--processes must be at least 1".into());
        }
        if c.timeout_secs == 0 {
            return Err("--timeout-secs must be positive".into());
        }
        net::split_host_port(&c.target)?;
        if c.rampart {
            if c.data.is_none() {
                return Err("--rampart needs --data DIR (the server's data directory)".into());
            }
            if self.scenario == Scenario::Command && c.admin_token.is_none() {
                return Err(
                    "command --rampart needs --admin-token (or RAMPART_ADMIN_TOKEN)".into(),
                );
            }
        }
        if c.tls && c.ca.is_none() && !c.rampart {
            return Err("--tls needs --ca FILE".into());
        }
        if c.noise && !c.rampart {
            return Err("--noise needs --rampart (devices with secrets)".into());
        }
        Ok(())
    }

    fn ca_path(&self) -> Option<PathBuf> {
        let c = &self.common;
        c.ca.clone().or_else(|| {
            c.rampart
                .then(|| c.data.as_ref().map(|d| d.join("tls").join("cert.pem")))
                .flatten()
        })
    }

    fn params(&self) -> serde_json::Value {
        let c = &self.common;
        match self.scenario {
            Scenario::Connect => serde_json::json!({
                "rate": self.connect_rate, "hold_secs": self.hold_secs,
                "keepalive_secs": c.keepalive_secs, "timeout_secs": c.timeout_secs,
            }),
            Scenario::Ingest => serde_json::json!({
                "rate": self.msg_rate, "qos": self.qos, "duration_secs": self.duration_secs,
                "payload_bytes": self.payload_bytes, "connect_rate": self.connect_rate,
                "keepalive_secs": c.keepalive_secs, "timeout_secs": c.timeout_secs,
            }),
            Scenario::Command => serde_json::json!({
                "commands": self.commands, "rate": self.command_rate,
                "concurrency": self.concurrency, "connect_rate": self.connect_rate,
                "keepalive_secs": c.keepalive_secs, "timeout_secs": c.timeout_secs,
            }),
        }
    }
}

/// What the coordinator knows of each worker.
#[derive(Default)]
struct Slot {
    progress: Progress,
    connected: Option<Vec<u64>>,
    result: Option<WorkerResult>,
    fatal: Option<String>,
    /// Its event stream ended.
    gone: bool,
}

impl Slot {
    fn ended(&self) -> bool {
        self.result.is_some() || self.fatal.is_some() || self.gone
    }
}

#[derive(Clone)]
struct Board(Arc<Mutex<Vec<Slot>>>);

impl Board {
    fn new(n: usize) -> Board {
        Board(Arc::new(Mutex::new(
            (0..n).map(|_| Slot::default()).collect(),
        )))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn apply(&self, w: usize, ev: Event) {
        let mut g = self.lock();
        let Some(s) = g.get_mut(w) else { return };
        match ev {
            Event::Progress(p) => s.progress = p,
            Event::Connected {
                ok,
                failed,
                failed_indices,
            } => {
                s.progress.ok = ok;
                s.progress.failed = failed;
                s.connected = Some(failed_indices);
            }
            Event::Finished { result } => {
                s.progress.ok = result.ok;
                s.progress.failed = result.failed;
                s.progress.sent = result.sent;
                s.progress.acked = result.acked;
                s.progress.dropped = result.dropped;
                s.result = Some(*result);
            }
            Event::Fatal { message } => s.fatal = Some(message),
        }
    }

    fn gone(&self, w: usize) {
        if let Some(s) = self.lock().get_mut(w) {
            s.gone = true;
        }
    }

    fn total(&self) -> Progress {
        let g = self.lock();
        let mut t = Progress::default();
        for s in g.iter() {
            t.ok += s.progress.ok;
            t.failed += s.progress.failed;
            t.dropped += s.progress.dropped;
            t.sent += s.progress.sent;
            t.acked += s.progress.acked;
            t.answered += s.progress.answered;
        }
        t
    }

    /// Poll until `done` holds for every slot or `until`; `tick` sees the totals. True when done.
    async fn wait(
        &self,
        until: Instant,
        done: impl Fn(&Slot) -> bool,
        mut tick: impl FnMut(&Progress),
    ) -> bool {
        loop {
            let finished = self.lock().iter().all(&done);
            tick(&self.total());
            if finished {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            sleep(Duration::from_millis(100)).await;
        }
    }
}

enum Handle {
    Local {
        ctl: mpsc::UnboundedSender<Control>,
        join: tokio::task::JoinHandle<()>,
    },
    Child {
        stdin: Option<tokio::process::ChildStdin>,
        child: Box<tokio::process::Child>,
    },
}

impl Handle {
    async fn send(&mut self, c: Control) {
        match self {
            Handle::Local { ctl, .. } => {
                let _ = ctl.send(c);
            }
            Handle::Child { stdin, .. } => {
                if let Some(s) = stdin {
                    let line: &[u8] = match c {
                        Control::Go => b"go\n",
                        Control::Stop => b"stop\n",
                    };
                    if s.write_all(line).await.is_err() || s.flush().await.is_err() {
                        *stdin = None;
                    }
                }
            }
        }
    }

    /// Wait for the worker to end (bounded), then make sure it has.
    async fn finish(self, grace: Duration) {
        match self {
            Handle::Local { join, .. } => {
                let abort = join.abort_handle();
                if tokio::time::timeout(grace, join).await.is_err() {
                    abort.abort();
                }
            }
            Handle::Child { stdin, mut child } => {
                drop(stdin);
                if tokio::time::timeout(grace, child.wait()).await.is_err() {
                    let _ = child.kill().await;
                }
            }
        }
    }
}

/// Start worker `w`: a task (one worker) or a child process.
async fn spawn_worker(spec: WorkerSpec, in_process: bool, board: &Board) -> Result<Handle, String> {
    let w = spec.worker;
    if in_process {
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
        let b = board.clone();
        tokio::spawn(async move {
            while let Some(ev) = ev_rx.recv().await {
                b.apply(w, ev);
            }
            b.gone(w);
        });
        let join = tokio::spawn(worker::run(spec, ctl_rx, ev_tx));
        return Ok(Handle::Local { ctl, join });
    }
    let exe = std::env::current_exe().map_err(|e| format!("current executable: {e}"))?;
    let mut child = tokio::process::Command::new(&exe)
        .args(["bench", "worker"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("start worker {w} ({}): {e}", exe.display()))?;
    let mut stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let mut line = serde_json::to_string(&spec).map_err(|e| e.to_string())?;
    line.push('\n');
    if let Some(s) = stdin.as_mut() {
        s.write_all(line.as_bytes())
            .await
            .map_err(|e| format!("worker {w} stdin: {e}"))?;
        s.flush().await.map_err(|e| e.to_string())?;
    }
    let b = board.clone();
    tokio::spawn(async move {
        if let Some(out) = stdout {
            let mut lines = tokio::io::BufReader::new(out).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if let Ok(ev) = serde_json::from_str::<Event>(&l) {
                    b.apply(w, ev);
                }
            }
        }
        b.gone(w);
    });
    Ok(Handle::Child {
        stdin,
        child: Box::new(child),
    })
}

fn add_errors(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

/// Max of a few RSS samples (the server's RSS settles after a burst of work).
async fn rss_max(pid: Option<u32>, samples: usize, gap: Duration) -> Option<u64> {
    let pid = pid?;
    let mut best = None;
    for k in 0..samples {
        if k > 0 {
            sleep(gap).await;
        }
        best = best.max(procfs::rss_kib(pid));
    }
    best
}

fn per_sec(n: u64, from_us: Option<i64>, to_us: Option<i64>) -> Option<f64> {
    let (a, b) = (from_us?, to_us?);
    let secs = (b - a) as f64 / 1e6;
    (secs > 0.0 && n > 0).then(|| n as f64 / secs)
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Run a plan to its report.
pub(crate) async fn run(plan: Plan) -> Result<Report, String> {
    let c = plan.common.clone();
    let started_at = now_ms();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(c.timeout_secs);
    let deadline_unix_ms = started_at + (c.timeout_secs as i64) * 1000;
    let mut errors = BTreeMap::new();
    let mut notes = Vec::new();
    let processes = c.processes.min(plan.count).max(1);
    let in_process = processes == 1;

    // Open-file limit: each process holds its share of the connections.
    let per_proc = plan.count.div_ceil(processes) as u64;
    if let Some((soft, _)) = procfs::nofile_limits() {
        if per_proc + FD_SLACK > soft {
            let need = (plan.count as u64).div_ceil(soft.saturating_sub(FD_SLACK).max(1));
            return Err(format!(
                "{per_proc} connections per process exceed the open-file limit of {soft}; use --processes {need} or more"
            ));
        }
    }

    let ca_pem = match plan.ca_path() {
        Some(p) if c.tls || c.rampart => {
            Some(std::fs::read(&p).map_err(|e| format!("CA file {}: {e}", p.display()))?)
        }
        _ => None,
    };
    let mqtt_ca = if c.tls { ca_pem.clone() } else { None };
    let client_ca = match &c.client_ca {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("client CA file {}: {e}", p.display()))?;
            let issuer = crate::certs::Issuer::from_pem(&text)?;
            Some((text, issuer))
        }
        None => None,
    };
    if let Some(pem) = &mqtt_ca {
        net::tls_config(pem)?;
    }

    // Rampart identities.
    let mut registration = None;
    let mut identities: Option<Arc<Vec<Identity>>> = None;
    let mut http = None;
    let mut api = None;
    if c.rampart {
        let data = c.data.clone().unwrap_or_default();
        let api_url = c
            .api
            .clone()
            .or_else(|| rampart::api_from_listeners(&data))
            .ok_or("--rampart needs --api URL (no listeners.json in the data directory)")?;
        let client = rampart::http_client(ca_pem.as_deref(), plan.concurrency.max(32))?;
        let ids_path = c
            .identities
            .clone()
            .unwrap_or_else(|| rampart::default_identities_path(&data, client_ca.is_some()));
        let p: Provisioned = rampart::provision(
            &data,
            c.config.as_deref(),
            &ids_path,
            &api_url,
            &client,
            plan.count,
            deadline,
            client_ca.as_ref().map(|(_, issuer)| issuer),
        )
        .await?;
        progress::line(format!(
            "identities: {} reused, {} registered, {} failed ({})",
            p.reused,
            p.registered,
            p.register_failed,
            ids_path.display()
        ));
        add_errors(&mut errors, &p.errors);
        notes.extend(p.notes.iter().cloned());
        registration = Some(RegistrationReport {
            product_key: p.product_key.clone(),
            devices: p.registered as u64,
            failed: p.register_failed as u64,
            reused: p.reused as u64,
            rate_per_s: (p.registered > 0 && p.register_secs > 0.0)
                .then(|| round2(p.registered as f64 / p.register_secs)),
        });
        if p.identities.len() < plan.count {
            notes.push(format!(
                "only {} of {} devices have identities; the run uses those",
                p.identities.len(),
                plan.count
            ));
        }
        if p.identities.is_empty() {
            return Err("no Rampart identity could be provisioned".into());
        }
        identities = Some(Arc::new(p.identities));
        http = Some(client);
        api = Some(api_url);
    }
    let count = identities
        .as_ref()
        .map_or(plan.count, |i| i.len().min(plan.count));

    // Server "before" samples.
    let pid = c.server_pid;
    let rss_before = pid.and_then(procfs::rss_kib);
    let slab_before = procfs::slab_kib();
    let sunr_before = procfs::slab_unreclaimable_kib();
    if let Some(p) = pid {
        if rss_before.is_none() {
            notes.push(format!("server pid {p}: /proc/{p}/status is not readable"));
        }
    }

    let cpu_before = pid.and_then(procfs::cpu_secs);

    // Workers.
    let run_start = Instant::now();
    let board = Board::new(processes);
    let mut handles = Vec::with_capacity(processes);
    let mut first = 0usize;
    for w in 0..processes {
        let n = count / processes + usize::from(w < count % processes);
        let spec = WorkerSpec {
            worker: w,
            scenario: plan.scenario,
            target: c.target.clone(),
            ca_pem: mqtt_ca
                .as_ref()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            noise: c.noise,
            client_ca_pem: client_ca.as_ref().map(|(text, _)| text.clone()),
            mqtt_version: c.mqtt_version,
            keepalive_secs: c.keepalive_secs,
            source_ips: c.source_ips,
            first_index: first as u64,
            count: n,
            total: count as u64,
            identities: identities
                .as_ref()
                .map(|ids| ids[first..first + n].to_vec()),
            connect_rate: plan.connect_rate * n as f64 / count as f64,
            connect_timeout_secs: c.connect_timeout_secs,
            qos: plan.qos,
            msg_rate: plan.msg_rate,
            duration_secs: plan.duration_secs as f64,
            payload_bytes: plan.payload_bytes,
            deadline_unix_ms,
        };
        first += n;
        match spawn_worker(spec, in_process, &board).await {
            Ok(h) => handles.push(h),
            Err(e) => {
                for h in handles {
                    h.finish(Duration::from_secs(1)).await;
                }
                return Err(e);
            }
        }
    }

    // Connect phase.
    let bar = progress::bar(count as u64, "connect");
    let all_up = board
        .wait(
            deadline,
            |s| s.connected.is_some() || s.ended(),
            |p| {
                bar.set_position(p.ok + p.failed);
                bar.set_message(format!("{} failed", p.failed));
            },
        )
        .await;
    bar.finish_and_clear();
    let up = board.total();
    let connect_secs = run_start.elapsed().as_secs_f64();
    progress::line(format!(
        "connect: {} up, {} failed in {:.1} s",
        up.ok, up.failed, connect_secs
    ));
    let fatal = board.lock().iter().find_map(|s| s.fatal.clone());
    if let Some(msg) = fatal {
        let all_fatal = board.lock().iter().all(|s| s.fatal.is_some());
        if all_fatal {
            for h in handles {
                h.finish(Duration::from_secs(2)).await;
            }
            return Err(msg);
        }
    }
    let mut timed_out = !all_up;
    let cpu_connect = match (cpu_before, pid.and_then(procfs::cpu_secs)) {
        (Some(a), Some(b)) => Some(round2(b - a)),
        _ => None,
    };

    let mut server = ServerReport {
        pid,
        rss_before_kib: rss_before,
        cpu_secs_connect: cpu_connect,
        ..Default::default()
    };
    let mut slab_after = None;
    let mut sunr_after = None;
    let mut ingest_extra: Option<(Option<observers::SubscriberResult>, f64)> = None;
    let mut command_out: Option<CommandOutcome> = None;
    let target = net::target(&c.target, mqtt_ca.as_deref(), c.source_ips).await?;
    let v = client::version(c.mqtt_version);
    let conn_timeout = Duration::from_secs(c.connect_timeout_secs);

    if !timed_out {
        match plan.scenario {
            Scenario::Connect => {
                sleep(SETTLE.min(deadline.saturating_duration_since(Instant::now()))).await;
                server.rss_after_kib = rss_max(pid, 3, Duration::from_millis(500)).await;
                slab_after = procfs::slab_kib();
                sunr_after = procfs::slab_unreclaimable_kib();
                let cpu0 = pid.and_then(procfs::cpu_secs);
                let hold_start = Instant::now();
                let hold_end = (hold_start + Duration::from_secs(plan.hold_secs)).min(deadline);
                let bar = progress::bar(plan.hold_secs, "hold");
                board
                    .wait(
                        hold_end,
                        |_| false,
                        |p| {
                            bar.set_position(hold_start.elapsed().as_secs());
                            bar.set_message(format!(
                                "{} up, {} dropped",
                                p.ok - p.dropped.min(p.ok),
                                p.dropped
                            ));
                        },
                    )
                    .await;
                bar.finish_and_clear();
                let held = hold_start.elapsed().as_secs_f64();
                let cpu1 = pid.and_then(procfs::cpu_secs);
                if let (Some(a), Some(b)) = (cpu0, cpu1) {
                    let cpu = round2(b - a);
                    server.cpu_secs_hold = Some(cpu);
                    server.cpu_secs_phase = Some(cpu);
                    server.cpu_phase = Some("hold".into());
                    let conns = up.ok.saturating_sub(board.total().dropped);
                    if conns > 0 && held > 0.0 {
                        server.cpu_per_conn_per_min_ms =
                            Some((b - a) * 1000.0 / conns as f64 / (held / 60.0));
                    }
                }
                progress::line(format!("hold: {held:.1} s"));
                if Instant::now() >= deadline {
                    timed_out = true;
                }
            }
            Scenario::Ingest => {
                server.rss_after_kib = rss_max(pid, 2, Duration::from_millis(300)).await;
                slab_after = procfs::slab_kib();
                sunr_after = procfs::slab_unreclaimable_kib();
                let sub = if c.rampart {
                    None
                } else {
                    let qos = if plan.qos == 1 {
                        QoS::AtLeastOnce
                    } else {
                        QoS::AtMostOnce
                    };
                    match Subscriber::start(
                        &target,
                        v,
                        qos,
                        "bench/+/up",
                        c.keepalive_secs,
                        conn_timeout,
                    )
                    .await
                    {
                        Ok(s) => Some(s),
                        Err(f) => {
                            *errors
                                .entry(format!("subscriber_{}", f.kind()))
                                .or_default() += 1;
                            notes.push(format!(
                                "the subscriber could not start ({f}); no end-to-end figures"
                            ));
                            None
                        }
                    }
                };
                let cpu0 = pid.and_then(procfs::cpu_secs);
                let go = Instant::now();
                for h in handles.iter_mut() {
                    h.send(Control::Go).await;
                }
                let expected = (plan.msg_rate * plan.duration_secs as f64) as u64;
                let bar = progress::bar(expected.max(1), "ingest");
                let limit =
                    (go + Duration::from_secs(plan.duration_secs) + Duration::from_secs(30))
                        .min(deadline);
                let finished = board
                    .wait(limit, Slot::ended, |p| {
                        bar.set_position(p.sent.min(expected));
                        bar.set_message(format!("{} acked", p.acked));
                    })
                    .await;
                bar.finish_and_clear();
                let phase_secs = go.elapsed().as_secs_f64();
                if let (Some(a), Some(b)) = (cpu0, pid.and_then(procfs::cpu_secs)) {
                    server.cpu_secs_phase = Some(round2(b - a));
                    server.cpu_phase = Some("ingest".into());
                }
                if !finished {
                    timed_out = Instant::now() >= deadline;
                }
                let sub_result = match sub {
                    Some(s) => {
                        // Let the subscriber catch up: until it has everything, or 2 s without
                        // progress, or 10 s.
                        let sent = board.total().sent;
                        let stop_at = (Instant::now() + Duration::from_secs(10)).min(deadline);
                        let mut last = s.received.load(std::sync::atomic::Ordering::Relaxed);
                        let mut last_change = Instant::now();
                        while Instant::now() < stop_at {
                            let now_n = s.received.load(std::sync::atomic::Ordering::Relaxed);
                            if now_n >= sent {
                                break;
                            }
                            if now_n != last {
                                last = now_n;
                                last_change = Instant::now();
                            } else if last_change.elapsed() >= Duration::from_secs(2) {
                                break;
                            }
                            sleep(Duration::from_millis(50)).await;
                        }
                        Some(s.finish().await)
                    }
                    None => None,
                };
                progress::line(format!("ingest: {:.1} s", phase_secs));
                ingest_extra = Some((sub_result, phase_secs));
            }
            Scenario::Command => {
                server.rss_after_kib = rss_max(pid, 2, Duration::from_millis(300)).await;
                slab_after = procfs::slab_kib();
                sunr_after = procfs::slab_unreclaimable_kib();
                let failed: std::collections::HashSet<u64> = board
                    .lock()
                    .iter()
                    .filter_map(|s| s.connected.clone())
                    .flatten()
                    .collect();
                let cpu0 = pid.and_then(procfs::cpu_secs);
                let bar = progress::bar(plan.commands, "command");
                let outcome = if let (Some(ids), Some(http), Some(api)) = (&identities, &http, &api)
                {
                    let dids: Vec<String> = ids
                        .iter()
                        .take(count)
                        .enumerate()
                        .filter(|(k, _)| !failed.contains(&(*k as u64)))
                        .map(|(_, i)| i.did.clone())
                        .collect();
                    if dids.is_empty() {
                        None
                    } else {
                        Some(
                            rampart::http_commands(
                                http,
                                api,
                                c.admin_token.as_deref().unwrap_or_default(),
                                Arc::new(dids),
                                plan.commands,
                                plan.command_rate,
                                plan.concurrency,
                                deadline,
                                &bar,
                            )
                            .await,
                        )
                    }
                } else {
                    let devices: Vec<u64> =
                        (0..count as u64).filter(|k| !failed.contains(k)).collect();
                    if devices.is_empty() {
                        None
                    } else {
                        match observers::mqtt_commands(
                            &target,
                            v,
                            c.keepalive_secs,
                            conn_timeout,
                            Arc::new(devices),
                            plan.commands,
                            plan.command_rate,
                            deadline,
                            &bar,
                        )
                        .await
                        {
                            Ok(o) => Some(o),
                            Err(f) => {
                                *errors
                                    .entry(format!("controller_{}", f.kind()))
                                    .or_default() += 1;
                                notes.push(format!("the command controller failed: {f}"));
                                None
                            }
                        }
                    }
                };
                bar.finish_and_clear();
                if let (Some(a), Some(b)) = (cpu0, pid.and_then(procfs::cpu_secs)) {
                    server.cpu_secs_phase = Some(round2(b - a));
                    server.cpu_phase = Some("command".into());
                }
                match &outcome {
                    Some(o) => progress::line(format!(
                        "command: {} ok, {} failed in {:.1} s",
                        o.ok, o.failed, o.secs
                    )),
                    None => notes.push("no device was up: no command sent".into()),
                }
                if Instant::now() >= deadline {
                    timed_out = true;
                }
                command_out = outcome;
            }
        }
    }

    // Stop and collect.
    for h in handles.iter_mut() {
        h.send(Control::Stop).await;
    }
    // Workers close their connections (bounded by their own timeouts) and report.
    let collect_until = Instant::now() + Duration::from_secs(20);
    let bar = progress::bar(processes as u64, "close");
    board
        .wait(collect_until, Slot::ended, |_| {
            bar.set_position(board.lock().iter().filter(|s| s.ended()).count() as u64)
        })
        .await;
    bar.finish_and_clear();
    for h in handles {
        h.finish(Duration::from_secs(3)).await;
    }
    let duration_s = round2(run_start.elapsed().as_secs_f64());

    // Aggregate.
    let slots = std::mem::take(&mut *board.lock());
    let mut conn_hist = Histogram::new();
    let mut ack_hist = Histogram::new();
    let mut agg = WorkerResult::default();
    let mut first_start: Option<i64> = None;
    let mut last_ready: Option<i64> = None;
    let mut first_send: Option<i64> = None;
    let mut last_send: Option<i64> = None;
    let mut last_ack: Option<i64> = None;
    let mut peak_rss: Option<u64> = None;
    let mut gen_cpu: Option<f64> = None;
    let mut gen_rss_growth: Option<i64> = None;
    for (w, s) in slots.iter().enumerate() {
        if let Some(msg) = &s.fatal {
            *errors.entry("worker_fatal".into()).or_default() += 1;
            let note = format!("worker {w}: {msg}");
            if !notes.contains(&note) {
                notes.push(note);
            }
        }
        let Some(r) = &s.result else {
            if s.fatal.is_none() {
                *errors.entry("worker_lost".into()).or_default() += 1;
                notes.push(format!("worker {w} ended without a result"));
            }
            // Count what it said last.
            agg.ok += s.progress.ok;
            agg.failed += s.progress.failed;
            continue;
        };
        timed_out |= r.timed_out;
        agg.ok += r.ok;
        agg.failed += r.failed;
        agg.dropped += r.dropped;
        agg.sent += r.sent;
        agg.acked += r.acked;
        agg.nacked += r.nacked;
        agg.unacked += r.unacked;
        agg.answered += r.answered;
        conn_hist.merge(&r.connect_latency);
        ack_hist.merge(&r.ack_latency);
        add_errors(&mut errors, &r.errors);
        let min = |a: Option<i64>, b: Option<i64>| match (a, b) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        let max = |a: Option<i64>, b: Option<i64>| a.max(b);
        first_start = min(first_start, r.first_start_us);
        last_ready = max(last_ready, r.last_ready_us);
        first_send = min(first_send, r.first_send_us);
        last_send = max(last_send, r.last_send_us);
        last_ack = max(last_ack, r.last_ack_us);
        if let (Some(a), Some(b)) = (r.rss_start_kib, r.rss_up_kib) {
            gen_rss_growth = Some(gen_rss_growth.unwrap_or(0) + b as i64 - a as i64);
        }
        if !in_process || w == 0 {
            peak_rss = Some(peak_rss.unwrap_or(0) + r.peak_rss_kib.unwrap_or(0));
            gen_cpu = Some(gen_cpu.unwrap_or(0.0) + r.cpu_secs.unwrap_or(0.0));
        }
    }

    if let (Some(a), Some(b)) = (server.rss_before_kib, server.rss_after_kib) {
        if agg.ok > 0 {
            server.rss_per_conn_kib = Some(round2((b as f64 - a as f64) / agg.ok as f64));
        }
    }
    if let (Some(a), Some(b)) = (slab_before, slab_after) {
        let d = b as i64 - a as i64;
        server.slab_delta_kib = Some(d);
        if agg.ok > 0 {
            server.slab_per_conn_kib = Some(round2(d as f64 / agg.ok as f64));
        }
    }
    if let (Some(a), Some(b)) = (sunr_before, sunr_after) {
        let d = b as i64 - a as i64;
        server.slab_unreclaimable_delta_kib = Some(d);
        if agg.ok > 0 {
            server.slab_unreclaimable_per_conn_kib = Some(round2(d as f64 / agg.ok as f64));
        }
    }
    if server.slab_delta_kib.is_some() {
        notes.push(
            "kernel Slab is system-wide: it counts both ends of each loopback connection and anything else the machine did meanwhile (its reclaimable part moves with file-system caches; SUnreclaim, where socket state lives, is steadier)".into(),
        );
    }

    let ingest = (plan.scenario == Scenario::Ingest).then(|| {
        let qos1 = plan.qos == 1;
        let (sub, phase_secs) = ingest_extra.take().unwrap_or((None, 0.0));
        let (received, lost, e2e) = match sub {
            Some(r) => {
                if let Some(e) = &r.error {
                    *errors.entry(format!("subscriber_{e}")).or_default() += 1;
                }
                (
                    Some(r.received),
                    Some(agg.sent.saturating_sub(r.received)),
                    Some(Latency::from_hist(&r.latency)),
                )
            }
            None => (None, None, None),
        };
        IngestReport {
            qos: plan.qos,
            target_rate_per_s: plan.msg_rate,
            sent: agg.sent,
            acked: qos1.then_some(agg.acked),
            nacked: qos1.then_some(agg.nacked),
            unacked: qos1.then_some(agg.unacked),
            received,
            lost,
            msgs_per_s: if qos1 {
                per_sec(agg.acked, first_send, last_ack.max(last_send))
            } else {
                per_sec(agg.sent, first_send, last_send)
            }
            .map(round2),
            ack_latency_ms: qos1.then(|| Latency::from_hist(&ack_hist)),
            e2e_latency_ms: e2e,
            duration_s: (phase_secs > 0.0).then(|| round2(phase_secs)),
        }
    });
    if plan.scenario == Scenario::Ingest && c.rampart {
        notes.push(
            "Rampart: end-to-end latency to a subscriber is not measured (devices cannot subscribe to other devices' topics and there is no WebSocket feed yet); the PUBACK latency (QoS 1) is the time until the report is committed to the database".into(),
        );
    }
    if plan.scenario == Scenario::Ingest && plan.qos == 0 {
        notes.push("QoS 0: nothing is acknowledged; msgs_per_s is the send rate".into());
    }
    if plan.scenario == Scenario::Ingest && c.rampart && plan.msg_rate / count as f64 > 1000.0 {
        notes.push(
            "more than 1000 msg/s per device exceeds the bench product's 60000/min report limit"
                .into(),
        );
    }

    let command = (plan.scenario == Scenario::Command).then(|| {
        let o = command_out.take().unwrap_or_default();
        add_errors(&mut errors, &o.errors);
        CommandReport {
            sent: o.sent,
            ok: o.ok,
            failed: o.failed,
            latency_ms: Latency::from_hist(&o.latency),
            rate_per_s: (o.secs > 0.0 && o.sent > 0).then(|| round2(o.sent as f64 / o.secs)),
            answered_by_devices: agg.answered,
            path: if c.rampart { "http" } else { "mqtt" }.into(),
        }
    });

    let report = Report {
        scenario: plan.scenario.name().into(),
        label: c.label.clone(),
        target: c.target.clone(),
        tls: c.tls,
        noise: c.noise,
        client_cert: c.client_ca.is_some(),
        mqtt_version: c.mqtt_version,
        rampart: c.rampart,
        connections: count as u64,
        duration_s,
        processes,
        source_ips: c.source_ips,
        params: plan.params(),
        connect: ConnectReport {
            ok: agg.ok,
            failed: agg.failed,
            rate_per_s: per_sec(agg.ok, first_start, last_ready).map(round2),
            latency_ms: Latency::from_hist(&conn_hist),
            dropped: agg.dropped,
        },
        server: Some(server),
        ingest,
        command,
        errors,
        registration,
        generator: GeneratorReport {
            processes,
            peak_rss_kib: peak_rss,
            rss_per_conn_kib: gen_rss_growth
                .filter(|_| agg.ok > 0)
                .map(|r| round2(r as f64 / agg.ok as f64)),
            cpu_secs: gen_cpu.map(round2),
        },
        timed_out,
        started_at_unix_ms: started_at,
        notes,
    };
    Ok(report)
}

/// Write the JSON (to `--out` or stdout), the markdown (`--md`) and the summary (stderr).
pub(crate) fn emit(c: &Common, report: &Report) -> Result<(), String> {
    let json = report.to_json();
    match &c.out {
        Some(p) => std::fs::write(p, json + "\n").map_err(|e| format!("{}: {e}", p.display()))?,
        None => println!("{json}"),
    }
    if let Some(p) = &c.md {
        std::fs::write(p, report.markdown()).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    if !progress::quiet() {
        eprint!("{}", report.summary());
    }
    Ok(())
}
