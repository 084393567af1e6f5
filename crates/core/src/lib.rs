//! Domain services shared by the MQTT and HTTP edges: products, device registry and provisioning,
//! device authentication, reports and presence, the command bus, audit, end-user accounts,
//! bindings and shares, OAuth2 grants to third parties and OpenID Connect login.
//!
//! No listeners, no HTTP or MQTT types here: the gateway and the API call [`Core`] and map its
//! [`Error`] to their own codes. State that every connection needs (product models, the session
//! map) lives here in shared structures keyed by id, never copied per connection.

pub mod access;
pub mod audit;
pub mod auth_refusal;
pub mod backup;
pub mod clock;
pub mod cluster;
pub mod device;
pub mod erasure;
mod error;
pub mod federation;
pub mod identity;
pub mod limits;
pub mod ota;
pub mod pulse;
pub mod secret;
pub mod stream;
pub mod telemetry;

pub use device::writer::ReportReceipt;

pub use error::{Error, Result};

use rampart_store::Store;
use secret::MasterKey;
use std::sync::Arc;

/// Lifetimes of codes, tokens and login states besides the end user's own token pair
/// (`CoreConfig::access_ttl_ms`, `refresh_ttl_ms`). The binary reads them from the
/// configuration file and checks their ranges; the defaults are the documented ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifetimes {
    /// Activation and password-reset codes (users and developers).
    pub code_ms: i64,
    /// One-time bind tokens (`POST /v1/devices/{did}/bind-tokens`).
    pub bind_token_ms: i64,
    /// A developer's `rdt_` access token.
    pub developer_access_ms: i64,
    /// A developer's `rdr_` refresh token.
    pub developer_refresh_ms: i64,
    /// An OAuth2 authorisation code.
    pub oauth_code_ms: i64,
    /// A third party's `roa_` access token.
    pub oauth_access_ms: i64,
    /// A third party's `ror_` refresh token (each rotation starts a new one).
    pub oauth_refresh_ms: i64,
    /// The absolute lifetime of an OAuth2 grant.
    pub oauth_grant_ms: i64,
    /// An OpenID Connect login between its start and its callback.
    pub oidc_state_ms: i64,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes {
            code_ms: identity::accounts::CODE_TTL_MS,
            bind_token_ms: access::bindings::BIND_TOKEN_TTL_MS,
            developer_access_ms: identity::accounts::ACCESS_TTL_MS,
            developer_refresh_ms: identity::accounts::REFRESH_TTL_MS,
            oauth_code_ms: federation::oauth::CODE_TTL_MS,
            oauth_access_ms: identity::accounts::ACCESS_TTL_MS,
            oauth_refresh_ms: federation::oauth::REFRESH_TTL_MS,
            oauth_grant_ms: federation::oauth::GRANT_TTL_MS,
            oidc_state_ms: federation::oidc::STATE_TTL_MS,
        }
    }
}

/// Tunables of the domain layer.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// How long `send_command` waits for the device's ack.
    pub command_timeout_ms: u64,
    /// Allowed clock skew for signed timestamps.
    pub clock_window_ms: i64,
    /// How long a command queued for an offline persistent session stays deliverable (sent to MQTT 5
    /// devices as the message expiry).
    pub command_ttl_ms: i64,
    /// End-user access-token lifetime.
    pub access_ttl_ms: i64,
    /// End-user refresh-token lifetime.
    pub refresh_ttl_ms: i64,
    /// The other lifetimes: one-time codes, bind tokens, developer tokens, OAuth2 codes, tokens
    /// and grants, OpenID Connect login states.
    pub lifetimes: Lifetimes,
    /// Retention of the operator event stream's queues.
    pub events: stream::hub::EventsConfig,
    /// Rates and quotas of the HTTP API and of one-time codes.
    pub limits: limits::api::LimitsConfig,
    /// Webhook delivery: retries, timeouts, which URLs are accepted.
    pub webhooks: stream::webhooks::WebhooksConfig,
    /// Connect rates of the MQTT edge and its report-abuse rule.
    pub mqtt_limits: limits::connect::MqttLimitsConfig,
    /// Where uploaded files are kept and how large they may be.
    pub uploads: device::uploads::UploadsConfig,
    /// The time every part of the domain layer reads.
    pub clock: clock::Clock,
    /// OTA manifests: their lifetime and download URL.
    pub ota: ota::OtaConfig,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            command_timeout_ms: 10_000,
            clock_window_ms: rampart_proto::sign::CLOCK_WINDOW_MS,
            command_ttl_ms: 3_600_000,
            access_ttl_ms: identity::accounts::ACCESS_TTL_MS,
            refresh_ttl_ms: identity::accounts::REFRESH_TTL_MS,
            lifetimes: Lifetimes::default(),
            events: Default::default(),
            limits: limits::api::LimitsConfig::default(),
            webhooks: Default::default(),
            mqtt_limits: Default::default(),
            uploads: Default::default(),
            clock: clock::Clock::system(),
            ota: Default::default(),
        }
    }
}

/// The domain layer; cheap to clone (all state behind `Arc`).
#[derive(Clone)]
pub struct Core {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    key: MasterKey,
    config: CoreConfig,
    products: device::products::ProductCache,
    bus: device::bus::Bus,
    replay: device::runtime::ReplayGuard,
    /// Devices with a desired state, in memory (`device::shadow`).
    shadows: device::shadow::Shadows,
    writer: std::sync::OnceLock<device::writer::ReportWriter>,
    /// Batched credential lookups at CONNECT, started on first use.
    credentials: std::sync::OnceLock<device::credentials::CredentialLookups>,
    events: std::sync::OnceLock<stream::hub::EventHub>,
    /// The webhooks' delivery client and tasks, made on first use (`Err`: the configuration
    /// does not build a client).
    webhooks: std::sync::OnceLock<std::result::Result<stream::webhooks::Webhooks, String>>,
    accounts: AccountsState,
    notifier: std::sync::RwLock<Arc<dyn identity::notify::Notifier>>,
    /// Configured OpenID Connect providers (`oidc`).
    oidc: std::sync::RwLock<Arc<federation::oidc::Providers>>,
    /// Serialises audit appends in this process (the store's chain head does it across processes).
    audit_lock: tokio::sync::Mutex<()>,
    /// API rates, access-key quotas and code limits.
    limits: limits::api::ApiLimits,
    /// MQTT connect rates per IP and device, and reconnect-storm bans.
    connect_limits: limits::connect::ConnectLimits,
    /// Bounds the Argon2 computations of the process.
    passwords: identity::password::Hasher,
    /// Refused device registrations per address and minute (`register.failures.ip`, and their
    /// audit entries written in aggregate).
    register_refusals: device::registry::RegisterRefusals,
    /// Counts enterprise suspensions and reinstatements made by this process, so live event
    /// stream sessions and webhook tasks notice them at once.
    suspensions: tokio::sync::watch::Sender<u64>,
    /// Moved by every change of who may reach which product (`access::tenancy::Core::tenancy_epoch`).
    tenancy_epoch: std::sync::atomic::AtomicU64,
}

/// Run-time state of the account services: rate limits and the access-change broadcast.
struct AccountsState {
    /// "Already registered" notices per recipient (repeated sign-ups must not spam an address).
    notice: limits::SlidingWindow,
    access: tokio::sync::broadcast::Sender<access::bindings::AccessChange>,
    /// Live-push connections per user.
    live: access::bindings::LiveSlots,
}

impl Default for AccountsState {
    fn default() -> Self {
        AccountsState {
            notice: limits::SlidingWindow::new(1, 3_600_000),
            access: tokio::sync::broadcast::channel(1024).0,
            live: Default::default(),
        }
    }
}

impl Core {
    pub fn new(store: Store, key: MasterKey, config: CoreConfig) -> Core {
        pulse::PULSE.follow(&config.clock);
        Core {
            inner: Arc::new(Inner {
                limits: limits::api::ApiLimits::new(config.limits.clone(), &config.clock),
                connect_limits: limits::connect::ConnectLimits::new(
                    config.mqtt_limits.clone(),
                    &config.clock,
                ),
                passwords: identity::password::Hasher::new(
                    config.limits.password_hash_concurrency,
                    config.limits.password_hash_queue,
                ),
                register_refusals: Default::default(),
                tenancy_epoch: Default::default(),
                store,
                key,
                config,
                products: Default::default(),
                bus: Default::default(),
                replay: Default::default(),
                shadows: Default::default(),
                writer: Default::default(),
                credentials: Default::default(),
                events: Default::default(),
                webhooks: Default::default(),
                accounts: Default::default(),
                notifier: std::sync::RwLock::new(Arc::new(identity::notify::Nowhere)),
                oidc: Default::default(),
                audit_lock: Default::default(),
                suspensions: tokio::sync::watch::channel(0).0,
            }),
        }
    }

    /// The store, for the domain modules only: the edges reach data through `Core`'s methods, so
    /// every read and write passes the rules here (kept so by a test in `tests/it`).
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Which backend the store runs on (`sqlite` or `postgres`), after a read that proves it
    /// answers: the health check.
    pub async fn store_health(&self) -> Result<&'static str> {
        self.inner.store.get_setting("admin_token_sha256").await?;
        Ok(self.inner.store.backend())
    }

    /// The store's schema version (its newest migration), for `rampart status`.
    pub async fn store_schema_version(&self) -> Result<i64> {
        Ok(self.inner.store.schema_version().await?)
    }

    /// Marks every device offline: presence is soft state, and a starting node has no sessions.
    /// Returns how many devices were online.
    pub async fn reset_presence(&self) -> Result<u64> {
        Ok(self.inner.store.reset_presence().await?)
    }

    /// Closes the store's connections once everything that writes has stopped.
    pub async fn close_store(&self) {
        self.inner.store.close().await
    }

    pub(crate) fn key(&self) -> &MasterKey {
        &self.inner.key
    }

    /// The clock every time-based decision of this core reads.
    pub fn clock(&self) -> &clock::Clock {
        &self.inner.config.clock
    }

    /// Unix time in milliseconds, by [`Core::clock`].
    pub fn now_ms(&self) -> i64 {
        self.inner.config.clock.now_ms()
    }

    pub fn config(&self) -> &CoreConfig {
        &self.inner.config
    }

    pub(crate) fn audit_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.inner.audit_lock
    }

    /// The API's rates and quotas and the code limits.
    pub fn limits(&self) -> &limits::api::ApiLimits {
        &self.inner.limits
    }

    /// The bounded Argon2 hasher every password check goes through.
    pub(crate) fn passwords(&self) -> &identity::password::Hasher {
        &self.inner.passwords
    }

    /// The MQTT connect limits (shared by every listener).
    pub fn connect_limits(&self) -> &limits::connect::ConnectLimits {
        &self.inner.connect_limits
    }

    /// Read the quota counters of running windows from the store (once, before serving).
    pub async fn load_quotas(&self) -> Result<usize> {
        Ok(self
            .limits()
            .quotas()
            .load(self.store(), self.now_ms())
            .await?)
    }

    /// Write the quota counters changed since the last flush.
    pub async fn flush_quotas(&self) -> Result<usize> {
        Ok(self
            .limits()
            .quotas()
            .flush(self.store(), self.now_ms())
            .await?)
    }

    /// Flush quota counters every `limits.flush_interval_ms` until `stop` resolves, then once
    /// more; also writes the aggregate audit entries of refused registrations and forgets idle
    /// rate keys. The binary runs it beside the listeners.
    pub async fn run_quota_flusher(&self, stop: impl std::future::Future<Output = ()>) {
        let every =
            std::time::Duration::from_millis(self.config().limits.flush_interval_ms.max(10));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        let mut n: u64 = 0;
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.flush_quotas().await {
                tracing::warn!(error = %e, "quota counters not written; retrying at the next tick");
            }
            self.flush_registration_refusals(false).await;
            n += 1;
            if n.is_multiple_of(60) {
                self.limits().sweep();
            }
        }
        if let Err(e) = self.flush_quotas().await {
            tracing::error!(error = %e, "quota counters not written at shutdown");
        }
        self.flush_registration_refusals(true).await;
    }

    pub fn bus(&self) -> &device::bus::Bus {
        &self.inner.bus
    }

    /// Where activation and reset codes go (the default drops them with a warning; the binary
    /// installs the configured outbox, webhook or SMTP notifier).
    pub fn set_notifier(&self, n: Arc<dyn identity::notify::Notifier>) {
        *self
            .inner
            .notifier
            .write()
            .unwrap_or_else(|p| p.into_inner()) = n;
    }

    pub(crate) fn notifier(&self) -> Arc<dyn identity::notify::Notifier> {
        self.inner
            .notifier
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The event stream's hub, started on first use (always inside the runtime).
    fn event_hub(&self) -> &stream::hub::EventHub {
        self.inner.events.get_or_init(|| {
            stream::hub::EventHub::start(
                self.inner.store.clone(),
                &self.inner.bus,
                self.inner.config.events.clone(),
                self.inner.config.clock.clone(),
            )
        })
    }

    /// The webhooks' run-time state, made on first use.
    fn webhooks_state(&self) -> &std::result::Result<stream::webhooks::Webhooks, String> {
        self.inner
            .webhooks
            .get_or_init(|| stream::webhooks::Webhooks::new(&self.inner.config.webhooks))
    }

    /// The event stream's hub if it runs.
    fn started_event_hub(&self) -> Option<&stream::hub::EventHub> {
        self.inner.events.get()
    }

    /// Batched device credential lookups, started on first use (always inside the runtime).
    fn credential_lookups(&self) -> &device::credentials::CredentialLookups {
        self.inner
            .credentials
            .get_or_init(|| device::credentials::CredentialLookups::start(self.inner.store.clone()))
    }

    /// The group-commit writer, started on first use (always inside the runtime).
    fn writer(&self) -> &device::writer::ReportWriter {
        self.inner.writer.get_or_init(|| {
            // Weak: the writer task must not keep the core alive.
            let core = Arc::downgrade(&self.inner);
            device::writer::ReportWriter::start(
                self.inner.store.clone(),
                self.inner.bus.event_sink(),
                Box::new(move |did| core.upgrade().is_some_and(|c| c.bus.is_attached(did))),
            )
        })
    }
}

/// Fixtures shared by the crate's unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use crate::Core;

    /// A fresh SQLite store (`t.db` in `dir`) with product `pk` (model `model`) and its devices
    /// `dids`, device `i`'s sealed secret being `secret(i)`.
    pub(crate) async fn store_with_devices(
        dir: &std::path::Path,
        model: &str,
        dids: &[String],
        secret: impl Fn(usize) -> Vec<u8>,
    ) -> rampart_store::Store {
        let store = rampart_store::Store::open_sqlite(&dir.join("t.db"))
            .await
            .unwrap();
        store
            .insert_product(&rampart_store::ProductRow {
                product_key: "pk".into(),
                name: "p".into(),
                secret_enc: vec![0],
                identity: rampart_store::IdentityFlags {
                    dynamic_registration: false,
                    ..Default::default()
                },
                report_limit_per_min: 60,
                model: model.into(),
                enterprise_id: None,
                created_at: 0,
            })
            .await
            .unwrap();
        for (i, did) in dids.iter().enumerate() {
            store
                .insert_device(&rampart_store::DeviceRow {
                    did: did.clone(),
                    product_key: "pk".into(),
                    hardware_id: format!("hw-{did}"),
                    mode: "device".into(),
                    secret_enc: secret(i),
                    passcode_enc: vec![0],
                    created_at: 0,
                    online: false,
                    last_seen: None,
                    state: "{}".into(),
                })
                .await
                .unwrap();
        }
        store
    }

    /// A core on a fresh SQLite store with product `pk` (model `model`) and its device `d1`.
    pub(crate) async fn core_with_device(dir: &std::path::Path, model: &str) -> Core {
        let store = store_with_devices(dir, model, &["d1".to_owned()], |_| vec![0]).await;
        Core::new(
            store,
            crate::secret::MasterKey::from_bytes(&[1; 32]),
            Default::default(),
        )
    }
}
