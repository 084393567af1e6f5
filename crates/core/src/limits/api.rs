//! The limits of the HTTP API and of one-time codes: configuration ([`LimitsConfig`],
//! the `[limits]` section), GCRA rates per IP, app id, user and access key (`governor`), window
//! quotas per access key and for codes ([`crate::limits::quotas`], persisted), and what a caller is told:
//! [`LimitState`] on success, [`Refusal`] when refused.
//!
//! No HTTP types here: the API turns these into `X-RateLimit-*` headers and 429 answers. Every
//! refusal is counted (`rampart_limit_refusals_total{limit=...}`).
//!
//! Single-node state like the bus: rates live in this process; window quotas are written to the
//! store (see [`crate::limits::quotas`] for the bound on loss at a crash).

use crate::clock::Clock;
use crate::limits::name as limit;
use crate::limits::quotas::{Quotas, Window};
use governor::clock::Clock as _;
use governor::middleware::{NoOpMiddleware, StateInformationMiddleware};
use governor::nanos::Nanos;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::Quota;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::hash::Hash;
use std::num::NonZeroU32;
use std::time::Duration;

/// A GCRA rate: `per_minute` calls a minute on average, up to `burst` at once. `per_minute = 0`
/// turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub per_minute: u32,
    pub burst: u32,
}

/// Calls per fixed window for one-time codes; 0 turns a window off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeWindows {
    pub per_minute: u64,
    pub per_hour: u64,
    pub per_day: u64,
}

/// The `[limits]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Signed calls per access key per clock hour (persisted across restarts; 0: none).
    pub access_key_per_hour: u64,
    /// Signed calls per access key per UTC day (persisted; 0: none).
    pub access_key_per_day: u64,
    /// Burst rate per access key.
    pub access_key_rate: Rate,
    /// Calls per source IP (device registration, `/healthz` and `/metrics` are not counted).
    pub ip: Rate,
    /// Calls per `X-Rampart-App-Id`.
    pub app: Rate,
    /// Calls per signed-in end user (their own tokens and third-party tokens acting for them).
    pub user: Rate,
    /// Activation and password-reset codes per recipient (e-mail or phone), per kind of code.
    pub codes_per_recipient: CodeWindows,
    /// Activation and password-reset codes requested per source IP.
    pub codes_per_ip: CodeWindows,
    /// Sign-ups per source IP (IPv6: per /64), per kind of account (end users through
    /// `POST /v1/users`, developers through `POST /v1/developers`).
    pub signups_per_ip: CodeWindows,
    /// Sign-ups of one kind of account from all addresses together.
    pub signups_global: CodeWindows,
    /// Device registrations (`POST /v1/device/register`) per source IP (IPv6: per /64).
    pub register_ip: Rate,
    /// Refused registration proofs (signature, timestamp, nonce, `device_sign`) per source IP
    /// (IPv6: per /64) and clock minute; past it every registration from the address is refused
    /// until the minute ends. 0 turns it off.
    pub register_failures_ip: u32,
    /// How often changed quota counters are written to the store; a crash loses at most this much.
    pub flush_interval_ms: u64,
    /// A socket write (MQTT, the event stream, WebSocket, HTTP) that makes no progress for this
    /// many seconds, because the peer stopped reading, closes the connection.
    pub write_timeout_s: u64,
    /// Argon2 password computations (login, sign-up, password change and reset) running at once;
    /// 0: the number of cores.
    pub password_hash_concurrency: usize,
    /// Password computations waiting for a slot; past it a call answers 503 `BUSY`.
    pub password_hash_queue: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            access_key_per_hour: 3600,
            access_key_per_day: 0,
            access_key_rate: Rate {
                per_minute: 600,
                burst: 50,
            },
            ip: Rate {
                per_minute: 60_000,
                burst: 2_000,
            },
            app: Rate {
                per_minute: 60_000,
                burst: 5_000,
            },
            user: Rate {
                per_minute: 1_200,
                burst: 200,
            },
            codes_per_recipient: CodeWindows {
                per_minute: 1,
                per_hour: 5,
                per_day: 10,
            },
            codes_per_ip: CodeWindows {
                per_minute: 5,
                per_hour: 20,
                per_day: 50,
            },
            signups_per_ip: CodeWindows {
                per_minute: 10,
                per_hour: 100,
                per_day: 500,
            },
            signups_global: CodeWindows {
                per_minute: 600,
                per_hour: 0,
                per_day: 0,
            },
            register_ip: Rate {
                per_minute: 600,
                burst: 100,
            },
            register_failures_ip: 30,
            flush_interval_ms: 1_000,
            write_timeout_s: 30,
            password_hash_concurrency: 0,
            password_hash_queue: 64,
        }
    }
}

/// A limit as a caller sees it after a call it allowed (or before one it refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitState {
    /// The limit's public name, e.g. `access_key.hourly`, `ip.rate`.
    pub name: &'static str,
    pub limit: u64,
    pub remaining: u64,
    /// The window (for a rate: the time to refill the whole burst).
    pub window_secs: u64,
    /// Unix ms at which the limit is whole again (for a window: its end).
    pub reset_at_ms: i64,
}

/// A refused call: the limit hit and how long to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub state: LimitState,
    pub retry_after_ms: u64,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.state;
        write!(
            f,
            "limit {} exceeded: {} calls per {}; retry in {} s (resets at {} Unix time)",
            s.name,
            s.limit,
            human_window(s.window_secs),
            self.retry_after_ms.div_ceil(1000).max(1),
            s.reset_at_ms.div_euclid(1000) + i64::from(s.reset_at_ms.rem_euclid(1000) > 0),
        )
    }
}

fn human_window(secs: u64) -> String {
    match secs {
        86_400 => "day".into(),
        3_600 => "hour".into(),
        60 => "minute".into(),
        s => format!("{s} s"),
    }
}

type Keyed<K> =
    governor::RateLimiter<K, DefaultKeyedStateStore<K>, Clock, StateInformationMiddleware>;

/// One GCRA rate over many keys (also the MQTT connect limits of [`crate::limits::connect`]).
pub(crate) struct KeyedRate<K: Hash + Eq + Clone = String> {
    name: &'static str,
    limiter: Option<Keyed<K>>,
}

impl<K: Hash + Eq + Clone> KeyedRate<K> {
    pub(crate) fn new(name: &'static str, r: Rate, clock: &Clock) -> KeyedRate<K> {
        let limiter = NonZeroU32::new(r.per_minute).and_then(|per_min| {
            let burst = NonZeroU32::new(r.burst.max(1))?;
            let period = Duration::from_secs(60) / per_min.get();
            let q = Quota::with_period(period)?.allow_burst(burst);
            Some(
                    governor::RateLimiter::<
                        K,
                        DefaultKeyedStateStore<K>,
                        Clock,
                        NoOpMiddleware<Nanos>,
                    >::new(q, Default::default(), clock.clone())
                    .with_middleware::<StateInformationMiddleware>(),
                )
        });
        KeyedRate { name, limiter }
    }

    pub(crate) fn check(&self, key: &K, now_ms: i64) -> Result<Option<LimitState>, Refusal> {
        let Some(l) = &self.limiter else {
            return Ok(None);
        };
        let refill = |q: Quota, missing: u64| -> i64 {
            let per = q.replenish_interval().as_millis() as i64;
            now_ms + per * missing as i64
        };
        match l.check_key(key) {
            Ok(snap) => {
                let q = snap.quota();
                let limit = u64::from(q.burst_size().get());
                let remaining = u64::from(snap.remaining_burst_capacity());
                Ok(Some(LimitState {
                    name: self.name,
                    limit,
                    remaining,
                    window_secs: q.burst_size_replenished_in().as_secs(),
                    reset_at_ms: refill(q, limit - remaining.min(limit)),
                }))
            }
            Err(not_until) => {
                let q = not_until.quota();
                let wait = not_until.wait_time_from(l.clock().now());
                let limit = u64::from(q.burst_size().get());
                Err(Refusal {
                    state: LimitState {
                        name: self.name,
                        limit,
                        remaining: 0,
                        window_secs: q.burst_size_replenished_in().as_secs(),
                        reset_at_ms: refill(q, limit),
                    },
                    retry_after_ms: wait.as_millis() as u64,
                })
            }
        }
    }

    pub(crate) fn sweep(&self) {
        if let Some(l) = &self.limiter {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

/// The run-time state of every API and code limit.
pub struct ApiLimits {
    config: LimitsConfig,
    ip: KeyedRate,
    app: KeyedRate,
    user: KeyedRate,
    key: KeyedRate,
    register_ip: KeyedRate,
    quotas: Quotas,
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// Count one refusal by the limit `name` (`rampart_limit_refusals_total{limit}`, the one metric
/// every edge's limits share).
pub fn count_refusal(name: &'static str) {
    metrics::counter!(crate::telemetry::LIMIT_REFUSALS, "limit" => name).increment(1);
    crate::pulse::PULSE.add_refusal(crate::pulse::PULSE.now_ms(), name);
}

pub(crate) fn counted<T>(r: Result<T, Refusal>) -> Result<T, Refusal> {
    if let Err(e) = &r {
        count_refusal(e.state.name);
        tracing::info!(
            limit = e.state.name,
            retry_after_ms = e.retry_after_ms,
            "call refused by a limit"
        );
    }
    r
}

/// A short, stable hash of a subject (an address or IP) for counter names in the store.
fn subject(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..12])
}

impl ApiLimits {
    pub fn new(config: LimitsConfig, clock: &Clock) -> ApiLimits {
        ApiLimits {
            ip: KeyedRate::new(limit::IP_RATE, config.ip, clock),
            app: KeyedRate::new(limit::APP_RATE, config.app, clock),
            user: KeyedRate::new(limit::USER_RATE, config.user, clock),
            key: KeyedRate::new(limit::ACCESS_KEY_RATE, config.access_key_rate, clock),
            register_ip: KeyedRate::new(limit::REGISTER_IP, config.register_ip, clock),
            quotas: Quotas::default(),
            config,
        }
    }

    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    pub fn quotas(&self) -> &Quotas {
        &self.quotas
    }

    /// Calls from one source IP (IPv6: its /64, which one host usually holds whole).
    pub fn check_ip(&self, ip: &str, now_ms: i64) -> Result<Option<LimitState>, Refusal> {
        counted(self.ip.check(&network_of(ip), now_ms))
    }

    /// Calls naming one app id.
    pub fn check_app(&self, app_id: &str, now_ms: i64) -> Result<Option<LimitState>, Refusal> {
        counted(self.app.check(&app_id.to_owned(), now_ms))
    }

    /// Calls of one end user.
    pub fn check_user(&self, user_id: &str, now_ms: i64) -> Result<Option<LimitState>, Refusal> {
        counted(self.user.check(&user_id.to_owned(), now_ms))
    }

    /// A signed call of one access key: the burst rate, then the window quotas. On success, the
    /// state of the tightest quota (for the response headers).
    pub fn check_access_key(
        &self,
        key_id: &str,
        now_ms: i64,
    ) -> Result<Option<LimitState>, Refusal> {
        let rate = counted(self.key.check(&key_id.to_owned(), now_ms))?;
        let c = &self.config;
        let windows: Vec<Window> = [
            (
                limit::ACCESS_KEY_HOURLY,
                "h",
                c.access_key_per_hour,
                HOUR_MS,
            ),
            (limit::ACCESS_KEY_DAILY, "d", c.access_key_per_day, DAY_MS),
        ]
        .into_iter()
        .filter(|w| w.2 > 0)
        .map(|(limit_name, suffix, limit, window_ms)| Window {
            limit_name,
            counter: format!("ak:{key_id}:{suffix}"),
            limit,
            window_ms,
        })
        .collect();
        let states = counted(self.quotas.take(&windows, now_ms))?;
        Ok(states.into_iter().min_by_key(|s| s.remaining).or(rate))
    }

    /// A request for a one-time code of `kind` (`activate`, `reset`, ...) to `recipient` from
    /// `ip` (IPv6: its /64): the recipient's windows and the IP's windows, all or nothing.
    pub fn check_code(
        &self,
        kind: &'static str,
        recipient: &str,
        ip: Option<&str>,
        now_ms: i64,
    ) -> Result<(), Refusal> {
        let mut windows = Vec::with_capacity(6);
        let r = subject(recipient);
        push_code_windows(
            &mut windows,
            limit::CODES_RECIPIENT,
            &format!("code:{kind}:{r}"),
            self.config.codes_per_recipient,
        );
        if let Some(ip) = ip {
            let i = subject(&network_of(ip));
            push_code_windows(
                &mut windows,
                limit::CODES_IP,
                &format!("code:ip:{i}"),
                self.config.codes_per_ip,
            );
        }
        counted(self.quotas.take(&windows, now_ms)).map(|_| ())
    }

    /// A sign-up of `kind` (`user`, `developer`) from `ip`: the address's windows and the
    /// global ones, all or nothing. An IPv6 address counts by its /64.
    pub fn check_signup(
        &self,
        kind: &'static str,
        ip: Option<&str>,
        now_ms: i64,
    ) -> Result<(), Refusal> {
        let mut windows = Vec::with_capacity(6);
        if let Some(ip) = ip {
            let i = subject(&network_of(ip));
            push_code_windows(
                &mut windows,
                limit::SIGNUP_IP,
                &format!("signup:{kind}:ip:{i}"),
                self.config.signups_per_ip,
            );
        }
        push_code_windows(
            &mut windows,
            limit::SIGNUP_GLOBAL,
            &format!("signup:{kind}:all"),
            self.config.signups_global,
        );
        counted(self.quotas.take(&windows, now_ms)).map(|_| ())
    }

    /// A device registration from `ip` (an IPv6 address counts by its /64).
    pub fn check_register_ip(&self, ip: &str, now_ms: i64) -> Result<Option<LimitState>, Refusal> {
        counted(self.register_ip.check(&network_of(ip), now_ms))
    }

    /// Forget idle rate keys (called by the flusher).
    pub fn sweep(&self) {
        for r in [
            &self.ip,
            &self.app,
            &self.user,
            &self.key,
            &self.register_ip,
        ] {
            r.sweep();
        }
    }
}

/// The network an address counts under: an IPv4 address itself, an IPv6 address's /64 (one
/// host usually holds a whole /64).
pub(crate) fn network_of(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(a)) if a.to_ipv4_mapped().is_none() => {
            let s = a.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(std::net::IpAddr::V6(a)) => a
            .to_ipv4_mapped()
            .map(|v4| v4.to_string())
            .unwrap_or_default(),
        _ => ip.to_owned(),
    }
}

fn push_code_windows(out: &mut Vec<Window>, name: &'static str, counter: &str, w: CodeWindows) {
    for (limit, window_ms, suffix) in [
        (w.per_minute, 60_000, "m"),
        (w.per_hour, HOUR_MS, "h"),
        (w.per_day, DAY_MS, "d"),
    ] {
        if limit > 0 {
            out.push(Window {
                limit_name: name,
                counter: format!("{counter}:{suffix}"),
                limit,
                window_ms,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_refuse_past_the_burst_and_name_the_limit() {
        let l = ApiLimits::new(
            LimitsConfig {
                ip: Rate {
                    per_minute: 1,
                    burst: 2,
                },
                ..LimitsConfig::default()
            },
            &Clock::system(),
        );
        let s = l.check_ip("10.0.0.1", 0).unwrap().unwrap();
        assert_eq!((s.limit, s.remaining), (2, 1));
        assert!(l.check_ip("10.0.0.1", 0).is_ok());
        let r = l.check_ip("10.0.0.1", 0).unwrap_err();
        assert_eq!((r.state.name, r.state.remaining), ("ip.rate", 0));
        assert!(r.retry_after_ms > 1_000, "one call a minute: {r:?}");
        assert!(r.to_string().contains("ip.rate"), "{r}");
        assert!(l.check_ip("10.0.0.2", 0).is_ok(), "another IP");
    }

    #[test]
    fn ipv6_sources_of_one_64_share_the_api_rate_and_code_windows() {
        let l = ApiLimits::new(
            LimitsConfig {
                ip: Rate {
                    per_minute: 1,
                    burst: 2,
                },
                ..LimitsConfig::default()
            },
            &Clock::system(),
        );
        // a host holding a /64 rotates through its addresses: still one source
        assert!(l.check_ip("2001:db8:1:2::1", 0).is_ok());
        assert!(l.check_ip("2001:db8:1:2::ffff:2", 0).is_ok());
        let r = l.check_ip("2001:db8:1:2:dead:beef:0:3", 0).unwrap_err();
        assert_eq!(r.state.name, "ip.rate");
        assert!(l.check_ip("2001:db8:1:3::1", 0).is_ok(), "another /64");
        // five codes a minute per IP by default
        for i in 0..5 {
            assert!(l
                .check_code(
                    "activate",
                    &format!("{i}@x.io"),
                    Some(&format!("2001:db8::{i}")),
                    0
                )
                .is_ok());
        }
        let r = l
            .check_code("activate", "9@x.io", Some("2001:db8::99"), 0)
            .unwrap_err();
        assert_eq!(r.state.name, "codes.ip");
    }

    #[test]
    fn codes_per_recipient_and_per_ip() {
        let l = ApiLimits::new(LimitsConfig::default(), &Clock::system());
        assert!(l
            .check_code("activate", "a@x.io", Some("1.2.3.4"), 0)
            .is_ok());
        let r = l
            .check_code("activate", "a@x.io", Some("1.2.3.4"), 1)
            .unwrap_err();
        assert_eq!((r.state.name, r.state.window_secs), ("codes.recipient", 60));
        assert!(
            l.check_code("reset", "a@x.io", Some("1.2.3.4"), 2).is_ok(),
            "another kind"
        );
        // five a minute per IP by default; two taken
        for i in 0..3 {
            assert!(l
                .check_code("activate", &format!("{i}@x.io"), Some("1.2.3.4"), 3)
                .is_ok());
        }
        let r = l
            .check_code("activate", "z@x.io", Some("1.2.3.4"), 4)
            .unwrap_err();
        assert_eq!(r.state.name, "codes.ip");
        // the recipient's minute ends; the hour allows five
        for m in 1..5 {
            assert!(l.check_code("activate", "a@x.io", None, m * 60_000).is_ok());
        }
        let r = l
            .check_code("activate", "a@x.io", None, 5 * 60_000)
            .unwrap_err();
        assert_eq!((r.state.window_secs, r.state.limit), (3600, 5));
    }

    #[test]
    fn signups_per_ip_and_global() {
        let l = ApiLimits::new(
            LimitsConfig {
                signups_per_ip: CodeWindows {
                    per_minute: 2,
                    per_hour: 0,
                    per_day: 0,
                },
                signups_global: CodeWindows {
                    per_minute: 5,
                    per_hour: 0,
                    per_day: 0,
                },
                ..LimitsConfig::default()
            },
            &Clock::system(),
        );
        assert!(l.check_signup("user", Some("10.0.0.1"), 0).is_ok());
        assert!(l.check_signup("user", Some("10.0.0.1"), 1).is_ok());
        let r = l.check_signup("user", Some("10.0.0.1"), 2).unwrap_err();
        assert_eq!((r.state.name, r.state.limit), ("signup.ip", 2));
        assert!(
            l.check_signup("developer", Some("10.0.0.1"), 3).is_ok(),
            "another kind of account"
        );
        // one /64 is one address
        assert!(l.check_signup("user", Some("2001:db8::1"), 4).is_ok());
        assert!(l.check_signup("user", Some("2001:db8::2"), 5).is_ok());
        let r = l.check_signup("user", Some("2001:db8::3"), 6).unwrap_err();
        assert_eq!(r.state.name, "signup.ip");
        assert!(l.check_signup("user", Some("10.0.0.9"), 7).is_ok());
        let r = l.check_signup("user", Some("10.0.0.10"), 8).unwrap_err();
        assert_eq!((r.state.name, r.state.limit), ("signup.global", 5));
        assert!(l.check_signup("user", Some("10.0.0.10"), 60_000).is_ok());
        assert_eq!(network_of("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(network_of("::ffff:10.1.2.3"), "10.1.2.3");
        assert_eq!(network_of("10.1.2.3"), "10.1.2.3");
    }

    #[test]
    fn access_key_quota_by_hour() {
        let l = ApiLimits::new(
            LimitsConfig {
                access_key_per_hour: 2,
                ..LimitsConfig::default()
            },
            &Clock::system(),
        );
        let s = l.check_access_key("k1", 10).unwrap().unwrap();
        assert_eq!(
            (s.name, s.remaining, s.reset_at_ms),
            ("access_key.hourly", 1, HOUR_MS)
        );
        assert!(l.check_access_key("k1", 20).is_ok());
        let r = l.check_access_key("k1", 30).unwrap_err();
        assert_eq!(
            (r.state.name, r.retry_after_ms),
            ("access_key.hourly", (HOUR_MS - 30) as u64)
        );
        assert!(l.check_access_key("k1", HOUR_MS).is_ok());
    }
}
