//! The fleet simulator behind `rampart device simulate`.
//!
//! Owns reading a factory batch (`serial,device_secret` CSV), registering each device in
//! mode `device`, running one small tokio task per device (no thread per device) that keeps
//! a local state of data-point values, reports it every interval (±20 %), and answers
//! commands: `set` (apply, ack, report), `reboot` (ack, disconnect, reconnect after ~1 s),
//! `factory_reset`/`wipe` (ack, reset, report). It counts what happened and returns the
//! counts when the duration elapses or on Ctrl-C. With [`SimOta`], each device also runs the
//! OTA client ([`crate::ota`]): it checks at every connect, installs what it is given into its
//! A/B slots, reboots (reconnects), commits the healthy image and reports the new version.
//! Secrets are never logged.

use std::future::Future;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{
    Backoff, ConnectOptions, DeviceClient, Event, Protocol, TlsSettings, Transport,
};
use crate::command::{Ack, Action, Command, Desired};
use crate::model::SimModel;
use crate::register::{register, RegisterMode, RegisterParams, Registration};
use crate::{Error, Secret};

/// Devices registering or making their first connection at the same time.
const STARTUP_CONCURRENCY: usize = 32;
/// Registration attempts after a transient failure (network, 429, 5xx).
const REGISTER_RETRIES: u32 = 4;
/// How long a reboot keeps the device offline (jittered by ±20 %).
const REBOOT_DELAY: Duration = Duration::from_secs(1);
/// Time given to devices to send DISCONNECT when the simulation stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// What to simulate. Built by the CLI from `rampart device simulate` flags.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// MQTT over TLS endpoint, `HOST:PORT`; `HOST` must match the server certificate.
    pub server: String,
    /// HTTPS base URL of the API, e.g. `https://cloud.example:8443`.
    pub api: String,
    /// PEM file of the CA (or the server's self-signed certificate) for both MQTT and HTTPS.
    pub ca: PathBuf,
    /// Factory batch CSV: `serial,device_secret` rows, optional header row.
    pub batch: PathBuf,
    /// How many devices (the first `count` rows of the batch).
    pub count: usize,
    /// Product key; when absent, the text before the first `-` of each serial.
    pub product: Option<String>,
    /// Data-point model JSON; when absent a built-in `power` (bool) + `temp` (float) model.
    pub model: Option<PathBuf>,
    /// Mean time between reports of one device (each wait is jittered by ±20 %).
    pub interval: Duration,
    pub protocol: Protocol,
    /// Stop after this long; `None` runs until Ctrl-C.
    pub duration: Option<Duration>,
    /// Run the OTA client too.
    pub ota: Option<SimOta>,
}

/// The OTA side of simulated devices.
#[derive(Debug, Clone)]
pub struct SimOta {
    /// The product's OTA public key (`GET /v1/products/{product_key}/ota-key`).
    pub key: [u8; 32],
    /// What the devices run at first (sequence 1 of the module target).
    pub version: String,
    /// Where each device keeps its slots (`DIR/{did}/`).
    pub dir: PathBuf,
    /// How often an online device checks again (besides at every connect).
    pub check_every: Duration,
}

/// What happened during a simulation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SimulateReport {
    /// Devices that registered.
    pub registered: u64,
    /// Devices that connected at least once.
    pub connected: u64,
    /// Reports queued for publishing.
    pub reports_sent: u64,
    /// Commands answered (including malformed ones that carried an id).
    pub commands_handled: u64,
    /// Failures: registrations, connection attempts, malformed commands, full queues.
    pub errors: u64,
    /// Firmware images installed, committed and reported (with `ota`).
    pub ota_installed: u64,
    /// Updates refused (signature, downgrade) or failed (download, checksum, slot).
    pub ota_failed: u64,
}

/// Run the simulation described by `opts` until its duration elapses or Ctrl-C.
pub async fn simulate(opts: SimulateOptions) -> Result<SimulateReport, Error> {
    if opts.count == 0 {
        return Err(Error::invalid("device count must be at least 1"));
    }
    let ca = std::fs::read(&opts.ca)
        .map_err(|e| Error::Tls(format!("CA file {}: {e}", opts.ca.display())))?;
    let tls = TlsSettings::from_ca_pem(&ca)?;
    let mut http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10));
    for cert in reqwest::Certificate::from_pem_bundle(&ca)
        .map_err(|e| Error::Tls(format!("CA file {}: {e}", opts.ca.display())))?
    {
        http = http.add_root_certificate(cert);
    }
    let http = http.build()?;

    let model = match &opts.model {
        Some(path) => SimModel::load(path)?,
        None => {
            tracing::info!("no model file given: reporting the built-in power/temp model");
            SimModel::builtin()
        }
    };
    let file = std::fs::File::open(&opts.batch)
        .map_err(|e| Error::invalid(format!("batch file {}: {e}", opts.batch.display())))?;
    let devices = read_batch(std::io::BufReader::new(file), opts.count)?;

    let duration = opts.duration;
    let stop = async move {
        let deadline = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        let ctrl_c = async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = deadline => "duration elapsed",
            _ = ctrl_c => "interrupted",
        }
    };
    let fleet = Fleet {
        server: opts.server,
        api: opts.api,
        http,
        transport: Transport::Tls(tls),
        protocol: opts.protocol,
        model,
        interval: opts.interval,
        product: opts.product,
        count: opts.count,
        backoff: Backoff::default(),
        ota: opts.ota,
    };
    run(fleet, devices, stop).await
}

/// One row of a factory batch.
pub(crate) struct BatchRow {
    pub(crate) serial: String,
    pub(crate) secret: Secret,
}

/// Read up to `limit` rows of a batch CSV (`serial,device_secret`, optional header row,
/// extra columns ignored).
pub(crate) fn read_batch(input: impl Read, limit: usize) -> Result<Vec<BatchRow>, Error> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut first = true;
    while rows.len() < limit {
        let more = reader
            .read_record(&mut record)
            .map_err(|e| Error::invalid(format!("batch file: {e}")))?;
        if !more {
            break;
        }
        let line = record.position().map_or(0, |p| p.line());
        let is_first = std::mem::take(&mut first);
        if record.iter().all(str::is_empty) {
            continue;
        }
        let (serial, secret) = (record.get(0).unwrap_or(""), record.get(1).unwrap_or(""));
        if is_first
            && serial.eq_ignore_ascii_case("serial")
            && secret.eq_ignore_ascii_case("device_secret")
        {
            continue;
        }
        if serial.is_empty() || secret.is_empty() {
            return Err(Error::invalid(format!(
                "batch file line {line}: expected `serial,device_secret`"
            )));
        }
        rows.push(BatchRow {
            serial: serial.to_owned(),
            secret: Secret::new(secret),
        });
    }
    Ok(rows)
}

/// The product key in a factory serial `{product_key}-{batch}-{index}`.
pub(crate) fn product_key_of(serial: &str) -> Result<&str, Error> {
    match serial.split_once('-') {
        Some((pk, rest)) if !pk.is_empty() && !rest.is_empty() => Ok(pk),
        _ => Err(Error::invalid(format!(
            "serial `{serial}` is not `{{product_key}}-{{batch}}-{{index}}`; give the product key"
        ))),
    }
}

/// A simulation with its I/O settled (the transport is a parameter so tests can use TCP).
pub(crate) struct Fleet {
    pub(crate) server: String,
    pub(crate) api: String,
    pub(crate) http: reqwest::Client,
    pub(crate) transport: Transport,
    pub(crate) protocol: Protocol,
    pub(crate) model: SimModel,
    pub(crate) interval: Duration,
    pub(crate) product: Option<String>,
    pub(crate) count: usize,
    pub(crate) backoff: Backoff,
    pub(crate) ota: Option<SimOta>,
}

#[derive(Default)]
struct Counters {
    registered: AtomicU64,
    connected: AtomicU64,
    reports: AtomicU64,
    commands: AtomicU64,
    errors: AtomicU64,
    ota_installed: AtomicU64,
    ota_failed: AtomicU64,
}

impl Counters {
    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> SimulateReport {
        SimulateReport {
            registered: self.registered.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Relaxed),
            reports_sent: self.reports.load(Ordering::Relaxed),
            commands_handled: self.commands.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            ota_installed: self.ota_installed.load(Ordering::Relaxed),
            ota_failed: self.ota_failed.load(Ordering::Relaxed),
        }
    }
}

/// What every device task shares.
struct Ctx {
    fleet: Fleet,
    counters: Counters,
    startup: Arc<Semaphore>,
}

/// Run `devices` until `stop` resolves (with the reason to log) or every device task ends.
pub(crate) async fn run(
    fleet: Fleet,
    devices: Vec<BatchRow>,
    stop: impl Future<Output = &'static str>,
) -> Result<SimulateReport, Error> {
    if fleet.interval.is_zero() {
        return Err(Error::invalid("report interval must be positive"));
    }
    if devices.is_empty() {
        return Err(Error::invalid("the batch file has no devices"));
    }
    if devices.len() < fleet.count {
        tracing::warn!(
            requested = fleet.count,
            available = devices.len(),
            "batch has fewer devices than requested"
        );
    }
    let mut jobs = Vec::with_capacity(devices.len());
    for row in devices {
        let pk = match &fleet.product {
            Some(pk) => pk.clone(),
            None => product_key_of(&row.serial)?.to_owned(),
        };
        jobs.push((row, pk));
    }

    let ctx = Arc::new(Ctx {
        fleet,
        counters: Counters::default(),
        startup: Arc::new(Semaphore::new(STARTUP_CONCURRENCY)),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let n = jobs.len();
    for (row, pk) in jobs {
        tasks.spawn(device_task(ctx.clone(), row, pk, stop_rx.clone()));
    }
    tracing::info!(devices = n, server = %ctx.fleet.server, "simulation started");

    tokio::pin!(stop);
    let mut progress = tokio::time::interval_at(Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    let why = loop {
        tokio::select! {
            why = &mut stop => break why,
            joined = tasks.join_next() => match joined {
                None => break "every device stopped",
                Some(Err(e)) if e.is_panic() => {
                    tracing::error!(error = %e, "device task panicked");
                    Counters::bump(&ctx.counters.errors);
                }
                Some(_) => {}
            },
            _ = progress.tick() => {
                let r = ctx.counters.snapshot();
                tracing::info!(
                    registered = r.registered, connected = r.connected, reports = r.reports_sent,
                    commands = r.commands_handled, errors = r.errors, "progress"
                );
            }
        }
    };
    tracing::info!(reason = why, "stopping simulation");
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    let report = ctx.counters.snapshot();
    tracing::info!(?report, "simulation finished");
    Ok(report)
}

/// Resolves once the simulation is told to stop (or its controller is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::thread_rng().gen_range(0.8..=1.2))
}

async fn register_retrying(
    ctx: &Ctx,
    row: &BatchRow,
    product_key: &str,
) -> Result<Registration, Error> {
    let mut failures = 0;
    loop {
        let params = RegisterParams {
            product_key: product_key.to_owned(),
            hardware_id: row.serial.clone(),
            mode: RegisterMode::Device {
                factory_secret: row.secret.clone(),
            },
            // Until it rotates, a factory device's secret is its factory secret: a run that
            // registers a serial again (a lost answer, a second run) proves it and gets a new
            // secret instead of 409 `ALREADY_REGISTERED`.
            current_secret: Some(row.secret.clone()),
        };
        match register(&ctx.fleet.http, &ctx.fleet.api, params).await {
            Err(e) if e.is_transient() && failures < REGISTER_RETRIES => {
                failures += 1;
                let wait = ctx.fleet.backoff.delay(failures, rand::random::<f64>());
                tracing::debug!(serial = %row.serial, error = %e, retry_in_ms = wait.as_millis() as u64, "registration failed, retrying");
                tokio::time::sleep(wait).await;
            }
            r => return r,
        }
    }
}

async fn device_task(
    ctx: Arc<Ctx>,
    row: BatchRow,
    product_key: String,
    mut stop: watch::Receiver<bool>,
) {
    let c = &ctx.counters;
    let serial = row.serial.as_str();
    // Registration and the first connection attempt go through a gate, so that a large
    // fleet ramps up instead of hitting the server all at once.
    let mut permit = tokio::select! {
        p = ctx.startup.clone().acquire_owned() => p.ok(),
        _ = stopped(&mut stop) => return,
    };
    let reg = tokio::select! {
        r = register_retrying(&ctx, &row, &product_key) => r,
        _ = stopped(&mut stop) => return,
    };
    let reg = match reg {
        Ok(r) => r,
        Err(e) => {
            Counters::bump(&c.errors);
            tracing::warn!(serial, error = %e, "registration failed");
            return;
        }
    };
    Counters::bump(&c.registered);
    tracing::debug!(serial, did = %reg.did, "registered");

    let mut ota = match &ctx.fleet.ota {
        Some(o) => match SimOtaDevice::new(&ctx.fleet, o, &reg, &product_key) {
            Ok(d) => Some(d),
            Err(e) => {
                Counters::bump(&c.errors);
                tracing::warn!(serial, did = %reg.did, error = %e, "cannot open the OTA slots");
                None
            }
        },
        None => None,
    };
    let mut opts = ConnectOptions::new(
        ctx.fleet.server.clone(),
        reg.did.clone(),
        reg.device_secret,
        ctx.fleet.transport.clone(),
    );
    opts.protocol = ctx.fleet.protocol;
    opts.backoff = ctx.fleet.backoff;
    let (client, mut events) = match DeviceClient::connect(opts) {
        Ok(x) => x,
        Err(e) => {
            Counters::bump(&c.errors);
            tracing::warn!(serial, did = %reg.did, error = %e, "cannot set up the connection");
            return;
        }
    };
    let mut dev = SimDevice {
        ctx: &ctx,
        client: &client,
        state: ctx.fleet.model.random_state(&mut rand::thread_rng()),
    };
    let mut online = false;
    let mut ever_connected = false;
    let mut quiet_failures = false;
    let next_report = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(next_report);
    let check_every = ctx
        .fleet
        .ota
        .as_ref()
        .map_or(Duration::from_secs(3600), |o| {
            o.check_every.max(Duration::from_millis(100))
        });
    let next_check = tokio::time::sleep(check_every);
    tokio::pin!(next_check);

    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            _ = &mut next_check, if online && ota.is_some() => {
                if let Some(o) = ota.as_mut() {
                    o.check_and_update(&ctx, &client).await;
                }
                next_check.as_mut().reset(Instant::now() + jittered(check_every));
            }
            _ = &mut next_report, if online => {
                ctx.fleet.model.refresh_readings(&mut dev.state, &mut rand::thread_rng());
                dev.report();
                next_report.as_mut().reset(Instant::now() + jittered(ctx.fleet.interval));
            }
            ev = events.next() => {
                let Some(ev) = ev else { return };
                match ev {
                    Event::Connected => {
                        permit = None;
                        online = true;
                        quiet_failures = false;
                        if !std::mem::replace(&mut ever_connected, true) {
                            Counters::bump(&c.connected);
                        }
                        tracing::debug!(serial, did = %reg.did, "connected");
                        if let Some(o) = ota.as_mut() {
                            o.check_and_update(&ctx, &client).await;
                        }
                        dev.report();
                        next_report.as_mut().reset(Instant::now() + jittered(ctx.fleet.interval));
                    }
                    Event::Disconnected { error, retry_in } => {
                        permit = None;
                        online = false;
                        if let Some(error) = error {
                            Counters::bump(&c.errors);
                            let retry_in_ms = retry_in.as_millis() as u64;
                            // One warning per outage; the retries of the same outage are debug.
                            if std::mem::replace(&mut quiet_failures, true) {
                                tracing::debug!(serial, did = %reg.did, %error, retry_in_ms, "connection failed");
                            } else {
                                tracing::warn!(serial, did = %reg.did, %error, retry_in_ms, "connection failed");
                            }
                        }
                    }
                    Event::Command(cmd) => {
                        Counters::bump(&c.commands);
                        dev.handle(cmd);
                    }
                    Event::Desired(d) => dev.apply_desired(d),
                    // The simulator updates over HTTPS; its clients do not subscribe to OTA.
                    Event::Ota(_) => {}
                    Event::BadCommand(bad) => {
                        if bad.id.is_some() {
                            Counters::bump(&c.commands);
                        }
                        Counters::bump(&c.errors);
                        tracing::debug!(serial, did = %reg.did, id = ?bad.id, reason = %bad.reason, "malformed command");
                    }
                }
            }
        }
    }
    drop(permit);
    client.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while events.next().await.is_some() {}
    })
    .await;
}

/// A simulated device's OTA client: its slots and the HTTPS side.
struct SimOtaDevice {
    http: crate::ota::HttpOta,
    slots: crate::ota::Slots,
    me: crate::ota::DeviceIdentity,
}

impl SimOtaDevice {
    fn new(
        fleet: &Fleet,
        o: &SimOta,
        reg: &Registration,
        product_key: &str,
    ) -> Result<Self, Error> {
        let slots = crate::ota::Slots::open(
            &o.dir.join(&reg.did),
            crate::ota::SlotInfo {
                version: o.version.clone(),
                sequence: 1,
            },
        )?;
        Ok(SimOtaDevice {
            http: crate::ota::HttpOta::new(
                fleet.http.clone(),
                &fleet.api,
                &reg.did,
                reg.device_secret.clone(),
            ),
            slots,
            me: crate::ota::DeviceIdentity {
                product_key: product_key.to_owned(),
                target: rampart_proto::ota::Target::Module,
                ota_key: o.key,
            },
        })
    }

    /// At every connect and every `check_every`: a trial image that came up is healthy (commit
    /// it); then the check, which reports what runs; an update it answers is installed and the
    /// device reboots.
    async fn check_and_update(&mut self, ctx: &Ctx, client: &DeviceClient) {
        let c = &ctx.counters;
        if self.slots.on_trial() {
            match self.slots.commit() {
                Ok(()) => Counters::bump(&c.ota_installed),
                Err(e) => {
                    tracing::warn!(did = %client.did(), error = %e, "cannot commit the new image")
                }
            }
        }
        let running = self.slots.running();
        let check = rampart_proto::ota::Check {
            target: self.me.target,
            version: running.version,
            sequence: Some(running.sequence),
            hardware_version: None,
        };
        let m = match self.http.check(&check).await {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => {
                Counters::bump(&c.errors);
                tracing::debug!(did = %client.did(), error = %e, "OTA check failed");
                return;
            }
        };
        let faults = crate::ota::Faults::default();
        match crate::ota::update(&self.http, &self.me, &mut self.slots, &m, &faults, 600_000).await
        {
            crate::ota::Outcome::Installed(_) => {
                tracing::info!(did = %client.did(), version = %m.version, "firmware installed; rebooting");
                if let Err(e) = client.reconnect_after(jittered(REBOOT_DELAY)) {
                    Counters::bump(&c.errors);
                    tracing::debug!(did = %client.did(), error = %e, "cannot reboot");
                }
            }
            other => {
                Counters::bump(&c.ota_failed);
                tracing::warn!(did = %client.did(), outcome = ?other, "update not installed");
            }
        }
    }
}

/// One simulated device's behaviour; its state is the map of current point values.
struct SimDevice<'a> {
    ctx: &'a Ctx,
    client: &'a DeviceClient,
    state: Map<String, Value>,
}

impl SimDevice<'_> {
    fn count(&self, r: Result<(), Error>, what: &str) -> bool {
        match r {
            Ok(()) => true,
            Err(e) => {
                Counters::bump(&self.ctx.counters.errors);
                tracing::debug!(did = %self.client.did(), error = %e, "cannot send {what}");
                false
            }
        }
    }

    fn report(&mut self) {
        if self.count(self.client.report(&self.state), "report") {
            Counters::bump(&self.ctx.counters.reports);
        }
    }

    fn ack(&mut self, ack: Ack) {
        self.count(self.client.ack(&ack), "ack");
    }

    /// Apply the cloud's desired state and report it, which clears the cloud's delta.
    fn apply_desired(&mut self, d: Desired) {
        tracing::debug!(did = %self.client.did(), version = d.version, "desired state");
        match self.ctx.fleet.model.apply_set(&mut self.state, &d.values) {
            Ok(()) => self.report(),
            Err(msg) => {
                Counters::bump(&self.ctx.counters.errors);
                tracing::debug!(did = %self.client.did(), %msg, "desired state not applied");
            }
        }
    }

    fn handle(&mut self, cmd: Command) {
        let model = &self.ctx.fleet.model;
        tracing::debug!(did = %self.client.did(), id = cmd.id(), "command");
        match cmd {
            Command::Set { id, values } => match model.apply_set(&mut self.state, &values) {
                Ok(()) => {
                    self.ack(Ack::ok(id));
                    self.report();
                }
                Err(msg) => self.ack(Ack::error(id, msg)),
            },
            Command::Action {
                id,
                action: Action::Reboot,
            } => {
                self.ack(Ack::ok(id));
                let r = self.client.reconnect_after(jittered(REBOOT_DELAY));
                self.count(r, "reboot");
            }
            Command::Action {
                id,
                action: Action::FactoryReset | Action::Wipe,
            } => {
                self.state = model.reset_state(&mut rand::thread_rng());
                self.ack(Ack::ok(id));
                self.report();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_with_and_without_header() {
        let rows = read_batch(
            &b"serial,device_secret\npk1-b1-0001,s1\npk1-b1-0002 , s2\n"[..],
            10,
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].serial, "pk1-b1-0001");
        assert_eq!(rows[0].secret.expose(), "s1");
        assert_eq!(rows[1].serial, "pk1-b1-0002");
        assert_eq!(rows[1].secret.expose(), "s2");

        let rows = read_batch(
            &b"pk1-b1-0001,s1\n\npk1-b1-0002,s2,extra\r\npk1-b1-0003,s3"[..],
            10,
        )
        .unwrap();
        assert_eq!(
            rows.iter().map(|r| r.serial.as_str()).collect::<Vec<_>>(),
            ["pk1-b1-0001", "pk1-b1-0002", "pk1-b1-0003"]
        );

        let rows = read_batch(&b"SERIAL,Device_Secret\na-1,x\nb-1,y\nc-1,z\n"[..], 2).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].serial, "b-1");

        assert!(read_batch(&b"a-1,x\nb-1\n"[..], 10).is_err());
        assert!(read_batch(&b"a-1,\n"[..], 10).is_err());
        // A header row is only a header in first position.
        assert!(read_batch(&b"a-1,x\nserial,device_secret\n"[..], 10)
            .map(|r| r.len() == 2)
            .unwrap());
        assert!(read_batch(&b""[..], 10).unwrap().is_empty());
    }

    #[test]
    fn serial_to_product_key() {
        assert_eq!(product_key_of("pk123-b7-00042").unwrap(), "pk123");
        assert_eq!(product_key_of("a-b").unwrap(), "a");
        assert!(product_key_of("nodash").is_err());
        assert!(product_key_of("-b1-1").is_err());
        assert!(product_key_of("pk-").is_err());
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_millis(1000));
            assert!(d >= Duration::from_millis(800) && d <= Duration::from_millis(1200));
        }
    }
}
