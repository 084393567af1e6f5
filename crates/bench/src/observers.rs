//! The coordinator's own MQTT clients for brokers other than Rampart: a subscriber on `bench/+/up`
//! measuring end-to-end latency and loss, and a controller sending commands on `bench/{n}/down` and
//! timing the devices' answers on `bench/{n}/ack`.

use crate::client::{self, now_us, Failure, Session};
use crate::hist::Histogram;
use crate::net::Target;
use crate::rampart::CommandOutcome;
use crate::worker::parse_payload;
use bytes::Bytes;
use indicatif::ProgressBar;
use rampart_proto::mqtt::{Packet, ProtocolVersion, QoS};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

/// How long a command may wait for its ack.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub(crate) struct SubscriberResult {
    pub(crate) received: u64,
    pub(crate) latency: Histogram,
    pub(crate) error: Option<String>,
}

pub(crate) struct Subscriber {
    stop: oneshot::Sender<()>,
    join: JoinHandle<SubscriberResult>,
    pub(crate) received: Arc<AtomicU64>,
}

impl Subscriber {
    /// Connect, subscribe to `filter` and count what arrives until `finish`.
    pub(crate) async fn start(
        target: &Target,
        v: ProtocolVersion,
        qos: QoS,
        filter: &str,
        keepalive: u16,
        timeout: Duration,
    ) -> Result<Subscriber, Failure> {
        let id = format!("bench-sub-{}", std::process::id());
        let mut s = Session::open(target, v, id, keepalive, timeout).await?;
        tokio::time::timeout(timeout, s.subscribe(filter, qos))
            .await
            .map_err(|_| Failure::Timeout("suback"))??;
        let received = Arc::new(AtomicU64::new(0));
        let (stop, mut stop_rx) = oneshot::channel();
        let counter = received.clone();
        let join = tokio::spawn(async move {
            let mut r = SubscriberResult::default();
            let ka = Duration::from_secs(u64::from(keepalive.max(1)));
            let mut next_ping = Instant::now() + ka;
            loop {
                tokio::select! {
                    _ = &mut stop_rx => break,
                    _ = sleep_until(next_ping) => {
                        if let Err(e) = s.send(&Packet::PingReq).await {
                            r.error = Some(e.kind());
                            break;
                        }
                        next_ping = Instant::now() + ka;
                    }
                    p = s.next() => match p {
                        Ok(Packet::Publish(p)) => {
                            if let Some((ts, _, _)) = parse_payload(&p.payload) {
                                r.latency.record((now_us() - ts).max(0) as u64);
                            }
                            r.received += 1;
                            counter.fetch_add(1, Relaxed);
                            if let Some(pid) = p.packet_id {
                                if let Err(e) = s.send(&client::puback_packet(pid)).await {
                                    r.error = Some(e.kind());
                                    break;
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            r.error = Some(e.kind());
                            break;
                        }
                    }
                }
            }
            s.disconnect().await;
            r
        });
        Ok(Subscriber {
            stop,
            join,
            received,
        })
    }

    pub(crate) async fn finish(self) -> SubscriberResult {
        let _ = self.stop.send(());
        self.join.await.unwrap_or_else(|e| SubscriberResult {
            error: Some(format!("subscriber task: {e}")),
            ..Default::default()
        })
    }
}

/// Send `commands` commands over MQTT to random devices among `devices` (global indices) at `rate`
/// per second; each is `{"id","set":{"power":true}}` on `bench/{n}/down` (QoS 1), answered on
/// `bench/{n}/ack`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn mqtt_commands(
    target: &Target,
    v: ProtocolVersion,
    keepalive: u16,
    timeout: Duration,
    devices: Arc<Vec<u64>>,
    commands: u64,
    rate: f64,
    deadline: Instant,
    bar: &ProgressBar,
) -> Result<CommandOutcome, Failure> {
    let id = format!("bench-ctl-{}", std::process::id());
    let mut s = Session::open(target, v, id, keepalive, timeout).await?;
    tokio::time::timeout(timeout, s.subscribe("bench/+/ack", QoS::AtLeastOnce))
        .await
        .map_err(|_| Failure::Timeout("suback"))??;
    let cap = usize::from(s.receive_maximum.unwrap_or(100)).clamp(1, 100);
    let mut out = CommandOutcome::default();
    let start = Instant::now();
    let mut pending: HashMap<u64, Instant> = HashMap::new();
    // Our QoS 1 publishes not yet acknowledged by the broker.
    let mut inflight = 0usize;
    let mut k = 0u64;
    let ka = Duration::from_secs(u64::from(keepalive.max(1)));
    let mut last_tx = Instant::now();
    let mut sweep = Instant::now() + Duration::from_millis(100);
    let fail = |out: &mut CommandOutcome, kind: &str, n: u64| {
        out.failed += n;
        *out.errors.entry(kind.to_owned()).or_default() += n;
    };
    loop {
        if k >= commands && pending.is_empty() {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            fail(&mut out, "deadline", pending.len() as u64 + (commands - k));
            break;
        }
        let due = start + Duration::from_secs_f64(k as f64 / rate.max(1e-9));
        let can_send = k < commands && inflight < cap;
        tokio::select! {
            _ = sleep_until(due), if can_send => {
                let n = {
                    use rand::Rng;
                    devices[rand::thread_rng().gen_range(0..devices.len())]
                };
                let body = format!("{{\"id\":\"c{k}\",\"set\":{{\"power\":true}}}}");
                let pid = s.next_pid();
                let p = client::publish_packet(format!("bench/{n}/down"), Some(pid), Bytes::from(body));
                pending.insert(k, Instant::now());
                k += 1;
                out.sent += 1;
                inflight += 1;
                if let Err(e) = s.send(&p).await {
                    fail(&mut out, &format!("controller_{}", e.kind()), pending.len() as u64 + (commands - k));
                    break;
                }
                last_tx = Instant::now();
            }
            _ = sleep_until(sweep) => {
                let now = Instant::now();
                let before = pending.len();
                pending.retain(|_, t| now.duration_since(*t) < COMMAND_TIMEOUT);
                let expired = (before - pending.len()) as u64;
                if expired > 0 {
                    fail(&mut out, "command_timeout", expired);
                    bar.inc(expired);
                }
                sweep = now + Duration::from_millis(100);
                if now >= last_tx + ka {
                    if let Err(e) = s.send(&Packet::PingReq).await {
                        fail(&mut out, &format!("controller_{}", e.kind()), pending.len() as u64 + (commands - k));
                        break;
                    }
                    last_tx = Instant::now();
                }
            }
            p = s.next() => match p {
                Ok(Packet::PubAck(_)) => inflight = inflight.saturating_sub(1),
                Ok(Packet::Publish(p)) => {
                    if let Some(pid) = p.packet_id {
                        let _ = s.send(&client::puback_packet(pid)).await;
                    }
                    let id = serde_json::from_slice::<serde_json::Value>(&p.payload)
                        .ok()
                        .and_then(|v| v["id"].as_str()?.strip_prefix('c')?.parse::<u64>().ok());
                    if let Some(t) = id.and_then(|id| pending.remove(&id)) {
                        out.ok += 1;
                        out.latency.record(t.elapsed().as_micros() as u64);
                        bar.inc(1);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    fail(&mut out, &format!("controller_{}", e.kind()), pending.len() as u64 + (commands - k));
                    break;
                }
            }
        }
    }
    out.secs = start.elapsed().as_secs_f64();
    s.disconnect().await;
    Ok(out)
}
