//! The run report: JSON (stable field names; fields that do not apply are null), a markdown summary
//! and a short human summary.

use crate::hist::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Latency {
    pub fn from_hist(h: &Histogram) -> Latency {
        let p = |q| h.percentile(q).map(ms);
        Latency {
            count: h.count(),
            p50: p(50.0),
            p90: p(90.0),
            p99: p(99.0),
            max: (h.count() > 0).then(|| ms(h.max())),
            mean: h.mean().map(|m| m.round() / 1000.0),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ConnectReport {
    pub ok: u64,
    pub failed: u64,
    /// Connections up per second, first attempt to last CONNACK.
    pub rate_per_s: Option<f64>,
    pub latency_ms: Latency,
    /// Connections lost while they should have stayed up.
    pub dropped: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerReport {
    pub pid: Option<u32>,
    pub rss_before_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
    pub rss_per_conn_kib: Option<f64>,
    /// Server CPU seconds while the connections were coming up.
    pub cpu_secs_connect: Option<f64>,
    /// Connect scenario: server CPU during the idle hold.
    pub cpu_secs_hold: Option<f64>,
    pub cpu_per_conn_per_min_ms: Option<f64>,
    /// System-wide `Slab` of /proc/meminfo (kernel socket state of both ends over loopback).
    pub slab_delta_kib: Option<i64>,
    pub slab_per_conn_kib: Option<f64>,
    /// The same for `SUnreclaim` (socket and TCP state; not disturbed by file-system caches).
    pub slab_unreclaimable_delta_kib: Option<i64>,
    pub slab_unreclaimable_per_conn_kib: Option<f64>,
    /// Server CPU seconds during the measured phase (`cpu_phase`) of any scenario.
    pub cpu_secs_phase: Option<f64>,
    pub cpu_phase: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestReport {
    pub qos: u8,
    pub target_rate_per_s: f64,
    pub sent: u64,
    /// PUBACKs with a success code (QoS 1); null for QoS 0.
    pub acked: Option<u64>,
    /// PUBACKs with a failure reason code.
    pub nacked: Option<u64>,
    /// Never acknowledged (drain timeout, lost connection).
    pub unacked: Option<u64>,
    /// Received by the subscriber (brokers other than Rampart).
    pub received: Option<u64>,
    pub lost: Option<u64>,
    /// Acked per second for QoS 1, sent per second for QoS 0.
    pub msgs_per_s: Option<f64>,
    pub ack_latency_ms: Option<Latency>,
    pub e2e_latency_ms: Option<Latency>,
    pub duration_s: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CommandReport {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub latency_ms: Latency,
    pub rate_per_s: Option<f64>,
    /// Commands the devices answered.
    pub answered_by_devices: u64,
    /// `http` (Rampart API) or `mqtt` (controller client).
    pub path: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RegistrationReport {
    pub product_key: String,
    /// Registered during this run.
    pub devices: u64,
    pub failed: u64,
    /// Taken from the identities file.
    pub reused: u64,
    pub rate_per_s: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct GeneratorReport {
    pub processes: usize,
    /// Sum of the workers' peak RSS.
    pub peak_rss_kib: Option<u64>,
    /// RSS growth of the workers from start to "all connections up", per connection.
    pub rss_per_conn_kib: Option<f64>,
    pub cpu_secs: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub scenario: String,
    pub label: Option<String>,
    pub target: String,
    pub tls: bool,
    /// Devices spoke Rampart's secure-session layer (Noise).
    pub noise: bool,
    /// Every connection presented a client certificate (mutual TLS).
    pub client_cert: bool,
    pub mqtt_version: u8,
    pub rampart: bool,
    pub connections: u64,
    pub duration_s: f64,
    pub processes: usize,
    pub source_ips: u32,
    pub params: serde_json::Value,
    pub connect: ConnectReport,
    pub server: Option<ServerReport>,
    pub ingest: Option<IngestReport>,
    pub command: Option<CommandReport>,
    pub errors: BTreeMap<String, u64>,
    pub registration: Option<RegistrationReport>,
    pub generator: GeneratorReport,
    pub timed_out: bool,
    pub started_at_unix_ms: i64,
    pub notes: Vec<String>,
}

fn f(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) => format!("{x:.digits$}"),
        None => "-".into(),
    }
}

fn i<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |x| x.to_string())
}

fn lat(l: &Latency) -> String {
    format!(
        "p50 {} / p90 {} / p99 {} / max {} ms (n={})",
        f(l.p50, 2),
        f(l.p90, 2),
        f(l.p99, 2),
        f(l.max, 2),
        l.count
    )
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    pub fn markdown(&self) -> String {
        let mut m = String::new();
        let title = self.label.as_deref().unwrap_or(&self.scenario);
        let _ = writeln!(m, "## rampart bench: {title}\n");
        let _ = writeln!(
            m,
            "`{}` against `{}`{}, MQTT {}, {} connections, {} process(es), {} source address(es), {:.1} s{}\n",
            self.scenario,
            self.target,
            if self.tls && self.client_cert {
                " over mutual TLS (a client certificate per connection)"
            } else if self.tls {
                " over TLS"
            } else if self.noise {
                " over the secure-session layer (Noise)"
            } else {
                ""
            },
            if self.mqtt_version == 5 { "5.0" } else { "3.1.1" },
            self.connections,
            self.processes,
            self.source_ips,
            self.duration_s,
            if self.rampart { ", Rampart devices" } else { ", anonymous" },
        );
        let _ = writeln!(m, "| metric | value |\n|---|---|");
        let c = &self.connect;
        let _ = writeln!(
            m,
            "| connected | {} ok, {} failed, {} dropped |",
            c.ok, c.failed, c.dropped
        );
        let _ = writeln!(m, "| connect rate | {} /s |", f(c.rate_per_s, 1));
        let _ = writeln!(m, "| connect latency | {} |", lat(&c.latency_ms));
        if let Some(s) = &self.server {
            if let Some(pid) = s.pid {
                let _ = writeln!(
                    m,
                    "| server RSS (pid {pid}) | {} -> {} KiB, {} KiB/connection |",
                    i(s.rss_before_kib),
                    i(s.rss_after_kib),
                    f(s.rss_per_conn_kib, 2)
                );
            }
            if let Some(cpu) = s.cpu_secs_connect {
                let _ = writeln!(m, "| server CPU while connecting | {cpu:.2} s |");
            }
            if s.cpu_secs_hold.is_some() {
                let _ = writeln!(
                    m,
                    "| server CPU while idle | {} s, {} ms per connection per minute |",
                    f(s.cpu_secs_hold, 2),
                    f(s.cpu_per_conn_per_min_ms, 4)
                );
            } else if let (Some(cpu), Some(phase)) = (s.cpu_secs_phase, &s.cpu_phase) {
                let _ = writeln!(m, "| server CPU during {phase} | {cpu:.2} s |");
            }
            let _ = writeln!(
                m,
                "| kernel slab delta | {} KiB, {} KiB/connection (unreclaimable: {} KiB, {} KiB/connection) |",
                i(s.slab_delta_kib),
                f(s.slab_per_conn_kib, 2),
                i(s.slab_unreclaimable_delta_kib),
                f(s.slab_unreclaimable_per_conn_kib, 2)
            );
        }
        if let Some(r) = &self.registration {
            let _ = writeln!(
                m,
                "| registration | {} registered ({} failed, {} reused) at {} /s |",
                r.devices,
                r.failed,
                r.reused,
                f(r.rate_per_s, 1)
            );
        }
        if let Some(g) = self.ingest.as_ref() {
            let _ = writeln!(
                m,
                "| telemetry QoS {} | {} sent, {} acked, {} nacked, {} unacked; target {:.0} /s, achieved {} /s |",
                g.qos,
                g.sent,
                i(g.acked),
                i(g.nacked),
                i(g.unacked),
                g.target_rate_per_s,
                f(g.msgs_per_s, 1)
            );
            if let Some(l) = &g.ack_latency_ms {
                let _ = writeln!(m, "| PUBACK latency | {} |", lat(l));
            }
            if let Some(l) = &g.e2e_latency_ms {
                let _ = writeln!(
                    m,
                    "| end-to-end to one subscriber | {}; received {}, lost {} |",
                    lat(l),
                    i(g.received),
                    i(g.lost)
                );
            }
        }
        if let Some(cmd) = &self.command {
            let _ = writeln!(
                m,
                "| commands ({}) | {} sent, {} ok, {} failed, {} /s |",
                cmd.path,
                cmd.sent,
                cmd.ok,
                cmd.failed,
                f(cmd.rate_per_s, 1)
            );
            let _ = writeln!(m, "| command round trip | {} |", lat(&cmd.latency_ms));
        }
        let g = &self.generator;
        let _ = writeln!(
            m,
            "| generator | peak RSS {} KiB ({} KiB/connection), CPU {} s |",
            i(g.peak_rss_kib),
            f(g.rss_per_conn_kib, 2),
            f(g.cpu_secs, 2)
        );
        if !self.errors.is_empty() {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let _ = writeln!(m, "| errors | {} |", list.join(", "));
        }
        if self.timed_out {
            let _ = writeln!(
                m,
                "| timed out | the run hit its deadline; figures are partial |"
            );
        }
        if !self.notes.is_empty() {
            let _ = writeln!(m);
            for n in &self.notes {
                let _ = writeln!(m, "- {n}");
            }
        }
        m
    }

    /// A few lines for stderr.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let c = &self.connect;
        let _ = writeln!(
            s,
            "{} {}: {} ok / {} failed / {} dropped, {} conn/s, connect {}",
            self.scenario,
            self.target,
            c.ok,
            c.failed,
            c.dropped,
            f(c.rate_per_s, 1),
            lat(&c.latency_ms)
        );
        if let Some(sv) = &self.server {
            if sv.pid.is_some() {
                let _ = writeln!(
                    s,
                    "server: RSS {} -> {} KiB ({} KiB/conn), CPU {} s ({}), slab {} KiB/conn (unreclaimable {})",
                    i(sv.rss_before_kib),
                    i(sv.rss_after_kib),
                    f(sv.rss_per_conn_kib, 2),
                    f(sv.cpu_secs_phase, 2),
                    sv.cpu_phase.as_deref().unwrap_or("-"),
                    f(sv.slab_per_conn_kib, 2),
                    f(sv.slab_unreclaimable_per_conn_kib, 2)
                );
            }
        }
        if let Some(g) = &self.ingest {
            let _ = writeln!(
                s,
                "ingest: sent {}, acked {}, {} msg/s{}{}",
                g.sent,
                i(g.acked),
                f(g.msgs_per_s, 1),
                g.ack_latency_ms
                    .as_ref()
                    .map(|l| format!(", PUBACK {}", lat(l)))
                    .unwrap_or_default(),
                g.e2e_latency_ms
                    .as_ref()
                    .map(|l| format!(", e2e {} lost {}", lat(l), i(g.lost)))
                    .unwrap_or_default(),
            );
        }
        if let Some(cmd) = &self.command {
            let _ = writeln!(
                s,
                "command: {} ok / {} failed, round trip {}",
                cmd.ok,
                cmd.failed,
                lat(&cmd.latency_ms)
            );
        }
        if !self.errors.is_empty() {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(s, "errors: {}", list.join(" "));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_in_ms() {
        let mut h = Histogram::new();
        for v in [100, 200, 300] {
            h.record(v);
        }
        let l = Latency::from_hist(&h);
        assert_eq!(l.p50, Some(0.2));
        assert_eq!(l.max, Some(0.3));
        assert_eq!(l.count, 3);
        assert_eq!(Latency::from_hist(&Histogram::new()).p50, None);
    }
}
