//! The MQTT edge's rate limits: configuration ([`MqttLimitsConfig`], the
//! `[mqtt.limits]` section) and [`ConnectLimits`], the connect rates per source IP and per device
//! and the reconnect-storm ban.
//!
//! One mechanism per device, three GCRA rates (`governor`) over the same key:
//! - every *authenticated* CONNECT attempt of a device, accepted or not, is counted against the
//!   storm rate (15 a minute); past it the device is banned for `reconnect_ban_secs` (5 minutes);
//! - an authenticated attempt is then accepted only if the device's connect rates have room
//!   (1 a second, 10 a minute); refused attempts do not use them up.
//!
//! Only a device that holds its credentials can trip its own limits: an attacker naming a did with
//! a wrong password is refused by authentication and counts for nothing here, so it cannot ban
//! the device. A banned device is refused *before* authentication ([`ConnectLimits::check_banned`]):
//! no store read, no HMAC, no audit write. Refusals by these limits are never written to the store.
//!
//! Memory: devices are keyed by a 64-bit keyed hash of the did, IPs by address (IPv6 by its /64),
//! each rate holds 8 bytes of state per key, and [`ConnectLimits::sweep`] forgets keys whose
//! state is back to full and bans that have ended. No MQTT types here: the gateway turns a
//! [`Refusal`] into CONNACK `0x9F` and its reason string.

use crate::audit::action;
use crate::limits::api::{counted, KeyedRate, LimitState, Rate, Refusal};
use crate::limits::name as limit;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;

/// The `[mqtt.limits]` section: connect rates and the report-abuse rule. The per-connection
/// sizes (packet, topic, subscriptions, inflight) are plain `[mqtt]` keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttLimitsConfig {
    /// New TCP connections per source IP (IPv6: per /64), checked at accept before any TLS work;
    /// `per_minute = 0` turns it off.
    pub connect_per_ip: Rate,
    /// Open MQTT connections per source IP (IPv6: per /64), both listeners together; a further
    /// one is closed at accept (0: no cap). Devices behind one carrier-grade NAT share an address.
    pub max_connections_per_ip: usize,
    /// Accepted CONNECTs per device per second, after the burst (0: no such limit).
    pub device_connect_per_second: u32,
    /// Accepted CONNECTs a device may make at once before `device_connect_per_second` applies
    /// (GCRA burst): a device that reconnects after a network blip, or a walk-through that
    /// connects twice in a row, is not refused; sustained flapping still is.
    pub device_connect_burst: u32,
    /// Accepted CONNECTs per device per minute (0: no such limit).
    pub device_connect_per_minute: u32,
    /// Authenticated CONNECT attempts per device per minute beyond which the device is banned
    /// (0: no ban).
    pub reconnect_storm_per_minute: u32,
    /// How long a ban lasts.
    pub reconnect_ban_secs: u64,
    /// A connection whose refused publishes amount to this many seconds of its product's report
    /// rate (they are forgiven at that rate) is closed with `0x96` (0: never).
    pub report_abuse_secs: u32,
    /// Audit entries for refused CONNECTs (bad credentials, not authorised) per source IP; the
    /// refusals beyond it are counted and named in the address's next entry, so a flood of wrong
    /// passwords cannot flood the audit log. `per_minute = 0`: an entry for every refusal.
    pub refusal_audit_per_ip: Rate,
    /// Retained topics one device may hold; a retained publish on a further topic is refused.
    pub retained_per_device: usize,
    /// Bytes (topics and payloads) of retained messages one device may hold.
    pub retained_bytes_per_device: usize,
    /// Bytes of retained messages the node holds for all devices together.
    pub retained_bytes_total: usize,
}

impl Default for MqttLimitsConfig {
    fn default() -> Self {
        MqttLimitsConfig {
            connect_per_ip: Rate {
                per_minute: 60_000,
                burst: 1_000,
            },
            max_connections_per_ip: 10_000,
            device_connect_per_second: 1,
            device_connect_burst: 5,
            device_connect_per_minute: 10,
            reconnect_storm_per_minute: 15,
            reconnect_ban_secs: 300,
            report_abuse_secs: 10,
            refusal_audit_per_ip: Rate {
                per_minute: 60,
                burst: 20,
            },
            retained_per_device: 8,
            retained_bytes_per_device: 64 * 1024,
            retained_bytes_total: 256 * 1024 * 1024,
        }
    }
}

/// The address a per-IP limit counts: IPv4 (also when mapped into IPv6) as is, IPv6 by its /64,
/// since one host may hold a whole /64.
pub fn ip_group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut o = v6.octets();
                o[8..].fill(0);
                IpAddr::V6(o.into())
            }
        },
        v4 => v4,
    }
}

/// Open connections per source address (by [`ip_group`]), for the caps on concurrent
/// connections of the MQTT and HTTP listeners. Cheap to clone (shared). An address is kept as a
/// 64-bit keyed hash of its group, so that a connection's place costs 8 bytes besides this handle.
#[derive(Clone, Default)]
pub struct OpenPerIp(std::sync::Arc<OpenInner>);

#[derive(Default)]
struct OpenInner {
    counts: Mutex<HashMap<u64, usize>>,
    hasher: std::collections::hash_map::RandomState,
}

/// One open connection's place in [`OpenPerIp`], given back when dropped.
pub struct IpSlot {
    map: OpenPerIp,
    key: u64,
}

impl OpenPerIp {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, usize>> {
        self.0.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The key `ip` is counted under.
    pub fn key(&self, ip: IpAddr) -> u64 {
        self.0.hasher.hash_one(ip_group(ip))
    }

    /// Count one more connection under `key`, unless it already holds `cap` (0: no cap).
    pub fn try_open(&self, key: u64, cap: usize) -> bool {
        let mut m = self.lock();
        let n = m.entry(key).or_insert(0);
        if cap > 0 && *n >= cap {
            return false;
        }
        *n += 1;
        true
    }

    /// Give back a place [`Self::try_open`] counted.
    pub fn close(&self, key: u64) {
        let mut m = self.lock();
        if let Some(n) = m.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&key);
            }
        }
    }

    /// A place for a connection from `ip`, or `None` when its group already holds `cap`.
    pub fn enter(&self, ip: IpAddr, cap: usize) -> Option<IpSlot> {
        let key = self.key(ip);
        self.try_open(key, cap).then(|| IpSlot {
            map: self.clone(),
            key,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        self.map.close(self.key);
    }
}

/// Run-time state of the connect limits; one per process (both MQTT listeners share it).
pub struct ConnectLimits {
    config: MqttLimitsConfig,
    ip: KeyedRate<IpAddr>,
    per_second: KeyedRate<u64>,
    per_minute: KeyedRate<u64>,
    storm: KeyedRate<u64>,
    /// Banned device keys and when their ban ends (Unix ms).
    bans: Mutex<HashMap<u64, i64>>,
    /// Keyed, so that nobody can pick dids that share a slot.
    hasher: std::collections::hash_map::RandomState,
    /// Open connections per source address.
    open: OpenPerIp,
    /// Audit entries of refused CONNECTs per source address, and the refusals left unwritten
    /// since an address's last entry.
    refusal_audit: KeyedRate<IpAddr>,
    unaudited: Mutex<HashMap<IpAddr, u64>>,
}

fn per_minute(n: u32) -> Rate {
    Rate {
        per_minute: n,
        burst: n,
    }
}

impl ConnectLimits {
    pub fn new(config: MqttLimitsConfig, clock: &crate::clock::Clock) -> ConnectLimits {
        let per_second = Rate {
            per_minute: config.device_connect_per_second.saturating_mul(60),
            burst: config
                .device_connect_burst
                .max(config.device_connect_per_second),
        };
        ConnectLimits {
            ip: KeyedRate::new(limit::MQTT_CONNECT_PER_IP, config.connect_per_ip, clock),
            per_second: KeyedRate::new(limit::MQTT_DEVICE_CONNECT_PER_SECOND, per_second, clock),
            per_minute: KeyedRate::new(
                limit::MQTT_DEVICE_CONNECT_PER_MINUTE,
                per_minute(config.device_connect_per_minute),
                clock,
            ),
            storm: KeyedRate::new(
                limit::MQTT_DEVICE_RECONNECT_STORM,
                per_minute(config.reconnect_storm_per_minute),
                clock,
            ),
            bans: Mutex::default(),
            hasher: Default::default(),
            open: OpenPerIp::default(),
            refusal_audit: KeyedRate::new(
                limit::MQTT_REFUSAL_AUDIT_PER_IP,
                config.refusal_audit_per_ip,
                clock,
            ),
            unaudited: Mutex::default(),
            config,
        }
    }

    pub fn config(&self) -> &MqttLimitsConfig {
        &self.config
    }

    fn key(&self, did: &str) -> u64 {
        self.hasher.hash_one(did)
    }

    /// A new connection from `ip` (at accept, before TLS).
    pub fn check_ip(&self, ip: IpAddr, now_ms: i64) -> Result<(), Refusal> {
        counted(self.ip.check(&ip_group(ip), now_ms)).map(|_| ())
    }

    /// Whether a refused CONNECT from `ip` gets its own audit entry: `Some(n)` with the refusals
    /// from that address left unwritten since its last entry, `None` (counted in
    /// `rampart_audit_suppressed_total`) when the address is over `refusal_audit_per_ip`.
    pub fn audit_refusal(&self, ip: Option<IpAddr>, now_ms: i64) -> Option<u64> {
        let Some(ip) = ip.map(ip_group) else {
            return Some(0);
        };
        let mut unaudited = self.unaudited.lock().unwrap_or_else(|p| p.into_inner());
        if self.refusal_audit.check(&ip, now_ms).is_ok() {
            return Some(unaudited.remove(&ip).unwrap_or(0));
        }
        *unaudited.entry(ip).or_insert(0) += 1;
        metrics::counter!(crate::telemetry::AUDIT_SUPPRESSED, "what" => action::DEVICE_CONNECT)
            .increment(1);
        None
    }

    /// Open MQTT connections per source address (both listeners), capped at
    /// `max_connections_per_ip` by the gateway at accept.
    pub fn open_per_ip(&self) -> &OpenPerIp {
        &self.open
    }

    /// Before authentication: refuse a device that is banned, at no cost. Counts nothing.
    pub fn check_banned(&self, did: &str, now_ms: i64) -> Result<(), Refusal> {
        let key = self.key(did);
        let until = {
            let bans = self.bans.lock().unwrap_or_else(|p| p.into_inner());
            bans.get(&key).copied()
        };
        match until {
            Some(until) if until > now_ms => counted(Err(self.ban_refusal(until, now_ms))),
            _ => Ok(()),
        }
    }

    fn ban_refusal(&self, until: i64, now_ms: i64) -> Refusal {
        Refusal {
            state: LimitState {
                name: limit::MQTT_DEVICE_RECONNECT_STORM,
                limit: u64::from(self.config.reconnect_storm_per_minute),
                remaining: 0,
                window_secs: 60,
                reset_at_ms: until,
            },
            retry_after_ms: u64::try_from(until - now_ms).unwrap_or(0),
        }
    }

    /// After authentication: count the attempt against the storm rate (banning the device when it
    /// has no room), then take a slot of each connect rate.
    pub fn admit_device(&self, did: &str, now_ms: i64) -> Result<(), Refusal> {
        let key = self.key(did);
        if self.storm.check(&key, now_ms).is_err() {
            let until = now_ms.saturating_add(
                i64::try_from(self.config.reconnect_ban_secs.saturating_mul(1000))
                    .unwrap_or(i64::MAX),
            );
            self.bans
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, until);
            tracing::warn!(
                did,
                ban_secs = self.config.reconnect_ban_secs,
                "device banned for a reconnect storm"
            );
            return counted(Err(self.ban_refusal(until, now_ms)));
        }
        counted(self.per_second.check(&key, now_ms))?;
        counted(self.per_minute.check(&key, now_ms))?;
        Ok(())
    }

    /// Forget keys whose rates are whole again and bans that have ended.
    pub fn sweep(&self, now_ms: i64) {
        for r in [&self.per_second, &self.per_minute, &self.storm] {
            r.sweep();
        }
        self.ip.sweep();
        self.refusal_audit.sweep();
        {
            // Counts of addresses that stopped are dropped (still in the metric) once many pile up.
            let mut unaudited = self.unaudited.lock().unwrap_or_else(|p| p.into_inner());
            if unaudited.len() > 100_000 {
                *unaudited = HashMap::new();
            }
        }
        let mut bans = self.bans.lock().unwrap_or_else(|p| p.into_inner());
        bans.retain(|_, until| *until > now_ms);
        bans.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;

    #[test]
    fn refused_connects_are_audited_at_a_bounded_rate_with_the_rest_counted() {
        let clock = Clock::system();
        let l = ConnectLimits::new(
            MqttLimitsConfig {
                refusal_audit_per_ip: Rate {
                    per_minute: 60,
                    burst: 2,
                },
                ..Default::default()
            },
            &clock,
        );
        let a: IpAddr = "192.0.2.7".parse().unwrap();
        let b: IpAddr = "192.0.2.8".parse().unwrap();
        assert_eq!(l.audit_refusal(Some(a), 0), Some(0));
        assert_eq!(l.audit_refusal(Some(a), 0), Some(0));
        for _ in 0..5 {
            assert_eq!(l.audit_refusal(Some(a), 0), None);
        }
        // another address has its own budget; no address: always written
        assert_eq!(l.audit_refusal(Some(b), 0), Some(0));
        assert_eq!(l.audit_refusal(None, 0), Some(0));
        // a second later one more entry, naming the five left out
        clock.advance(std::time::Duration::from_millis(1_000));
        assert_eq!(l.audit_refusal(Some(a), 1_100), Some(5));
        assert_eq!(l.audit_refusal(Some(a), 1_100), None);
    }

    #[test]
    fn device_rates_then_storm_ban() {
        let l = ConnectLimits::new(MqttLimitsConfig::default(), &Clock::system());
        // A burst of five at once, then one a second.
        for _ in 0..5 {
            assert!(l.admit_device("d1", 0).is_ok());
        }
        let r = l.admit_device("d1", 0).unwrap_err();
        assert_eq!(
            (r.state.name, r.state.limit),
            (limit::MQTT_DEVICE_CONNECT_PER_SECOND, 5)
        );
        assert!((900..=1_000).contains(&r.retry_after_ms), "{r:?}");
        assert!(l.admit_device("d2", 0).is_ok(), "another device");
        // After the burst, one a second.
        let clock = Clock::system();
        let l3 = ConnectLimits::new(MqttLimitsConfig::default(), &clock);
        for _ in 0..5 {
            assert!(l3.admit_device("d3", 0).is_ok());
        }
        clock.advance(std::time::Duration::from_secs(1));
        assert!(l3.admit_device("d3", 0).is_ok());
        assert!(l3.admit_device("d3", 0).is_err());
        // Refused attempts still count towards the storm: 15 attempts pass the storm rate, the
        // 16th bans the device.
        for _ in 6..15 {
            assert_eq!(
                l.admit_device("d1", 0).unwrap_err().state.name,
                limit::MQTT_DEVICE_CONNECT_PER_SECOND
            );
        }
        let r = l.admit_device("d1", 0).unwrap_err();
        assert_eq!(r.state.name, limit::MQTT_DEVICE_RECONNECT_STORM);
        assert_eq!(r.retry_after_ms, 300_000);
        // banned before authentication, until the ban ends
        assert!(l.check_banned("d1", 299_999).is_err());
        assert!(l.check_banned("d2", 1_000).is_ok());
        assert!(l.check_banned("d1", 300_000).is_ok());
        l.sweep(300_000);
        assert!(l.bans.lock().unwrap().is_empty());
    }

    #[test]
    fn ten_a_minute() {
        let l = ConnectLimits::new(
            MqttLimitsConfig {
                device_connect_per_second: 0,
                ..MqttLimitsConfig::default()
            },
            &Clock::system(),
        );
        for _ in 0..10 {
            assert!(l.admit_device("d", 0).is_ok());
        }
        let r = l.admit_device("d", 0).unwrap_err();
        assert_eq!(
            (r.state.name, r.state.limit, r.state.window_secs),
            (limit::MQTT_DEVICE_CONNECT_PER_MINUTE, 10, 60)
        );
    }

    #[test]
    fn ip_v6_by_prefix() {
        let l = ConnectLimits::new(
            MqttLimitsConfig {
                connect_per_ip: Rate {
                    per_minute: 1,
                    burst: 1,
                },
                ..MqttLimitsConfig::default()
            },
            &Clock::system(),
        );
        assert!(l.check_ip("2001:db8::1".parse().unwrap(), 0).is_ok());
        let r = l.check_ip("2001:db8::2".parse().unwrap(), 0).unwrap_err();
        assert_eq!(r.state.name, limit::MQTT_CONNECT_PER_IP);
        assert!(l.check_ip("2001:db8:0:1::1".parse().unwrap(), 0).is_ok());
        assert!(l.check_ip("10.0.0.1".parse().unwrap(), 0).is_ok());
        assert!(l.check_ip("::ffff:10.0.0.1".parse().unwrap(), 0).is_err());
    }
}
